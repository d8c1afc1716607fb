//! The agent's HTTP listener end to end: `lb run` in the director's
//! namespace of a [`DrLab`] with two HTTP backends, some connections
//! through the fast path, then `/metrics` scraped from inside the namespace
//! (the listener is on its loopback): a few values, `promtool check
//! metrics` on the exposition, `/status.json` against `lb status --json`,
//! and a reload that moves the listener. Needs root and the `prometheus`
//! Debian package (for promtool).
//!
//! Every wait is bounded; the agent, the servers and the namespaces are
//! torn down by guards also when the test fails.

use std::{
    fs,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_tests::{
    agent_proc::{Agent, Lb, TempDir, our_namespaces},
    backend::{PORT, Server, http_get},
    lab::{self, Addrs, DrLab},
    netns::Netns,
    privileges,
};
use serde_json::Value;

use crate::support;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
/// The bound on any state change the agent should make, on a loaded 2-core machine.
const STATE_LIMIT: Duration = Duration::from_secs(15);
const CONNECTIONS: u16 = 40;
const LISTEN: &str = "127.0.0.1:9650";
const MOVED: &str = "127.0.0.1:9651";

/// 10.215.0.0/24: client .2, director .1, VIP .100, backends .11 and .12.
fn addrs() -> Addrs {
    let a = |last| IpAddr::V4(Ipv4Addr::new(10, 215, 0, last));
    Addrs { client: a(2), director: a(1), vip: a(100), backends: vec![a(11), a(12)], prefix_len: 24 }
}

fn config(socket: &Path, vip: IpAddr, backends: &[IpAddr], listen: &str) -> String {
    let mut text = format!(
        "[global]\ncontrol_socket = \"{}\"\nmetrics = \"{listen}\"\n\n[[vip]]\naddress = \"{vip}\"\nport = {PORT}\n\
         interface = \"{}\"\n\n[vip.check]\ntype = \"tcp\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\nfall = 2\n\
         rise = 1\nwarmup = \"100ms\"\n",
        socket.display(),
        lab::IF,
    );
    for b in backends {
        text.push_str(&format!("\n[[vip.backend]]\naddress = \"{b}\"\n"));
    }
    text
}

/// One HTTP/1.0 GET from inside `ns`: status code, headers, body.
fn get(ns: &Netns, addr: &str, path: &str) -> anyhow::Result<(u16, String, String)> {
    let (addr, path) = (addr.parse::<SocketAddr>()?, path.to_owned());
    ns.run_in(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("no end of headers: {text:?}"))?;
        let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).with_context(|| format!("no status: {head}"))?;
        Ok((code, head.to_ascii_lowercase(), body.to_owned()))
    })
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(exposition: &str, series: &str) -> anyhow::Result<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .with_context(|| format!("no {series} in:\n{exposition}"))?
        .parse()
        .with_context(|| format!("the value of {series}"))
}

fn promtool(exposition: &str) -> anyhow::Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool (Debian package prometheus; `cargo xtask test` installs it)")?;
    child.stdin.take().context("promtool's stdin")?.write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Polls until `ready` holds, for at most [`STATE_LIMIT`].
fn wait(what: &str, mut ready: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < STATE_LIMIT {
        match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("waiting for {what}: not within {STATE_LIMIT:?} {last}")
}

/// The lab and everything in it; fields drop in order, the agent first.
struct World {
    agent: Option<Agent>,
    _servers: Vec<Server>,
    _peer: lb_userspace::fast_path::PeerPass,
    lab: DrLab,
    dir: TempDir,
}

#[test]
fn scrape_a_running_agent() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let dir = TempDir::new("metrics-test", "scrape")?;
    let lab = DrLab::new(addrs())?;
    let servers =
        lab.backends.iter().zip(["b1", "b2"]).map(|(ns, n)| Server::start(ns, n)).collect::<Result<_, _>>()?;
    let peer = lab.attach_peer_pass()?;
    let mut world = World { agent: None, _servers: servers, _peer: peer, lab, dir };
    let result = scrape(&mut world);
    if result.is_err() {
        let log = fs::read_to_string(world.dir.path.join("agent.log")).unwrap_or_default();
        println!("[metrics] agent log:\n{log}");
    }
    let stopped = world.agent.take().map(|mut a| a.terminate(Duration::from_secs(10)));
    drop(world);
    result?;
    if let Some(stopped) = stopped {
        let (status, killed) = stopped?;
        ensure!(status.success() && !killed, "the agent ended with {status} (SIGKILL needed: {killed})");
    }
    let left = our_namespaces()?;
    ensure!(left.is_empty(), "namespaces left behind: {left:?}");
    Ok(())
}

fn scrape(world: &mut World) -> anyhow::Result<()> {
    let lab = &world.lab;
    let (socket, config_path) = (world.dir.path.join("lb.sock"), world.dir.path.join("lb.toml"));
    let backends = lab.addrs.backends.clone();
    fs::write(&config_path, config(&socket, lab.addrs.vip, &backends, LISTEN))?;
    let lb = Lb::new(LB);
    world.agent = Some(lb.start_agent(&lab.director, &config_path, &world.dir.path.join("agent.log"))?);
    wait("both backends up", || {
        let status = lb.status(&socket)?;
        Ok(status["vips"][0]["backends"].as_array().is_some_and(|b| b.iter().all(|b| b["state"] == "up")))
    })?;

    // Traffic: connections from the client, each from its own port.
    let (client, vip) = (lab.addrs.client, SocketAddr::new(lab.addrs.vip, PORT));
    let answered = lab.client.run_in(move || {
        Ok((0..CONNECTIONS).filter(|i| http_get(SocketAddr::new(client, 21000 + i), vip).is_ok()).count())
    })?;
    ensure!(answered == usize::from(CONNECTIONS), "{answered} of {CONNECTIONS} connections answered");

    let (code, head, text) = get(&lab.director, LISTEN, "/metrics")?;
    ensure!(code == 200, "GET /metrics: {code}\n{head}");
    ensure!(head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
    let labels = |b: &IpAddr| format!("vip=\"{}\",port=\"{PORT}\",proto=\"tcp\",backend=\"{b}\"", lab.addrs.vip);
    let mut forwarded = 0.0;
    for b in &backends {
        ensure!(sample(&text, &format!("lb_backend_up{{{}}}", labels(b)))? == 1.0, "{b} up");
        ensure!(sample(&text, &format!("lb_backend_weight{{{}}}", labels(b)))? == 1.0, "{b} weight");
        forwarded += sample(&text, &format!("lb_backend_packets_total{{{}}}", labels(b)))?;
    }
    // Each connection: at least the SYN, the ACK and the request.
    ensure!(forwarded >= f64::from(3 * CONNECTIONS), "{forwarded} packets forwarded for {CONNECTIONS} connections");
    ensure!(sample(&text, "lb_packets_total{reason=\"tx\"}")? == forwarded, "tx is the backends' sum");
    let vip_labels = format!("vip=\"{}\",port=\"{PORT}\",proto=\"tcp\"", lab.addrs.vip);
    ensure!(sample(&text, &format!("lb_vip_packets_total{{{vip_labels}}}"))? >= forwarded);
    ensure!(sample(&text, &format!("lb_fast_path_attached{{interface=\"{}\",mode=\"native\"}}", lab::IF))? == 1.0);
    ensure!(sample(&text, "lb_reloads_total{result=\"ok\"}")? == 0.0);
    ensure!(text.contains("lb_build_info{version=\""), "build info");
    promtool(&text)?;

    // The same counters as `lb status --json`, from the same snapshot.
    let (code, head, json) = get(&lab.director, LISTEN, "/status.json")?;
    ensure!(code == 200 && head.contains("content-type: application/json"), "GET /status.json: {code}\n{head}");
    let ours: Value = serde_json::from_str(&json)?;
    let theirs = lb.status(&socket)?;
    ensure!(ours["attached"] == theirs["attached"], "{ours}\n{theirs}");
    let listed = |s: &Value| s["vips"][0]["backends"].as_array().cloned().unwrap_or_default();
    let (a, b) = (listed(&ours), listed(&theirs));
    ensure!(a.len() == 2 && a.len() == b.len(), "{ours}\n{theirs}");
    for (a, b) in a.iter().zip(&b) {
        ensure!(a["address"] == b["address"] && a["state"] == b["state"] && a["slots"] == b["slots"], "{a}\n{b}");
        // `lb status` was read second: a late packet may have joined since.
        let packets = |v: &Value| v["packets"].as_u64().unwrap_or(0);
        ensure!(packets(a) > 0 && packets(a) <= packets(b), "{a}\n{b}");
    }
    ensure!(ours["vips"][0]["packets"].as_f64().unwrap_or(0.0) >= forwarded, "{ours}");
    let (code, ..) = get(&lab.director, LISTEN, "/assets/no-such-file")?;
    ensure!(code == 404, "GET /assets/no-such-file: {code}");

    // A reload that moves the listener: the new address answers, the old one no more.
    fs::write(&config_path, config(&socket, lab.addrs.vip, &backends, MOVED))?;
    lb.ok(&["reload", "--socket", socket.to_str().context("socket path")?])?;
    let (code, _, text) = get(&lab.director, MOVED, "/metrics")?;
    ensure!(code == 200, "GET /metrics on {MOVED}: {code}");
    ensure!(sample(&text, "lb_reloads_total{result=\"ok\"}")? == 1.0, "the reload counted");
    ensure!(get(&lab.director, LISTEN, "/metrics").is_err(), "{LISTEN} still answers after the move");
    Ok(())
}
