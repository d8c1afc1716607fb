//! `[announce]` end to end: the agent of a director without a peer keeps
//! one blackhole route per VIP address it can serve in its announce table,
//! which a BGP daemon would export. The table holds exactly the VIPs with
//! quorum (none of a VIP with `announce = false`, none the agent before
//! left for a fast path that is gone, and another program's route stays);
//! losing quorum withdraws; SIGKILL leaves the routes, and the restarted
//! agent, adopting the pinned fast path, keeps them without a withdrawal;
//! SIGTERM withdraws before it detaches the fast path; a reload with
//! `announce = false` and `lb drain-director` withdraw too. BIRD 2, where
//! installed, runs in the director's namespace with the kernel protocol the
//! README shows and learns and forgets the route. Needs root.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use lb_tests::{
    agent_proc::{Bpffs, xdp_on},
    bench::restart::run_args,
    director_pair::{A, BACKENDS, DirectorPair, IF, Lb, Options, STATE_LIMIT, VIP, all_up, backend_addr},
    netns::Netns,
    privileges,
};

use crate::support;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
/// A table number no test elsewhere uses.
const TABLE: &str = "4242";
/// A second VIP address, kept out of BGP.
const QUIET_VIP: &str = "10.216.0.101";

fn config() -> String {
    let check = "[vip.check]\ntype = \"http\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\nfall = 2\nrise = 1\n\
                 delay_before_retry = \"300ms\"\nwarmup = \"100ms\"\n";
    let backends: String =
        (0..BACKENDS).map(|i| format!("\n[[vip.backend]]\naddress = \"{}\"\nweight = 1\n", backend_addr(i))).collect();
    format!(
        "[announce]\ntable = {TABLE}\nmetric = 5\n\n\
         [[vip]]\naddress = \"{VIP}\"\nport = 80\ninterface = \"{IF}\"\nquorum = 2\n{check}{backends}\n\
         [[vip]]\naddress = \"{QUIET_VIP}\"\nport = 80\ninterface = \"{IF}\"\nannounce = false\n{check}{backends}"
    )
}

/// The addresses of the agent's routes (`proto 250`) in the table, and
/// whether every one is a host blackhole with the configured metric.
fn ours(w: &DirectorPair) -> anyhow::Result<BTreeSet<String>> {
    let text = w.director_ns(A).ip(&["route", "show", "table", TABLE])?;
    let mut found = BTreeSet::new();
    for line in text.lines().filter(|l| l.contains("proto 250")) {
        ensure!(line.starts_with("blackhole ") && line.contains("metric 5"), "not the route expected: {line}");
        found.insert(line.split_whitespace().nth(1).unwrap_or_default().to_owned());
    }
    Ok(found)
}

/// Polls the table every 20 ms until it holds `want`, for at most `limit`.
fn wait_routes(w: &DirectorPair, want: &[&str], limit: Duration) -> anyhow::Result<Duration> {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    let start = Instant::now();
    loop {
        let got = ours(w)?;
        if got == want {
            return Ok(start.elapsed());
        }
        ensure!(start.elapsed() <= limit, "table {TABLE}: want {want:?}, have {got:?} after {limit:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn log(w: &DirectorPair) -> String {
    std::fs::read_to_string(w.config_path(A).with_file_name("agent-a.log")).unwrap_or_default()
}

/// Sets every backend's weight of the announced VIP.
fn weights(lb: &Lb, w: &DirectorPair, weight: u32) -> anyhow::Result<()> {
    let socket = w.socket_path(A).to_str().context("socket path")?.to_owned();
    for i in 0..BACKENDS {
        let backend = backend_addr(i).to_string();
        lb.ok(&["weight", &format!("{VIP}:80"), &backend, &weight.to_string(), "--socket", &socket])?;
    }
    Ok(())
}

/// BIRD 2 in the director's namespace, learning the announce table as the
/// README's configuration does; killed on drop, also when the test fails.
struct Bird {
    child: Child,
    socket: PathBuf,
}

impl Bird {
    /// `None` where BIRD is not installed.
    fn start(ns: &Netns, dir: &Path) -> anyhow::Result<Option<Self>> {
        let installed = std::process::Command::new("bird").arg("--version").stderr(Stdio::null()).status();
        if !installed.is_ok_and(|s| s.success()) {
            eprintln!("announce: BIRD is not installed; its part is skipped");
            return Ok(None);
        }
        let config = dir.join("bird.conf");
        let socket = dir.join("bird.ctl");
        std::fs::write(
            &config,
            format!(
                "router id 192.0.2.1;
ipv4 table lb_vips;
protocol kernel lb_vips_kernel {{
  ipv4 {{ table                  lb_vips; import where krt_source = 250; export none; }};
  kernel table {TABLE};
  learn;
}}
"
            ),
        )?;
        let child = ns
            .command("bird")
            .arg("-f")
            .arg("-c")
            .arg(&config)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting BIRD")?;
        Ok(Some(Self { child, socket }))
    }

    /// Polls `birdc show route` every 20 ms until the VIP is in it or not
    /// (`learned`), for at most `limit`.
    fn wait(&self, ns: &Netns, learned: bool, limit: Duration) -> anyhow::Result<Duration> {
        let socket = self.socket.to_str().context("BIRD's socket path")?;
        let prefix = format!("{VIP}/32");
        let start = Instant::now();
        loop {
            let routes = ns.exec("birdc", &["-s", socket, "show", "route", "table", "lb_vips"]).unwrap_or_default();
            if routes.contains(&prefix) == learned {
                return Ok(start.elapsed());
            }
            ensure!(start.elapsed() <= limit, "BIRD: {prefix} learned {learned} not within {limit:?}: {routes}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn announce_table_follows_quorum_restarts_and_stops() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let pins = Bpffs::new("announce")?;
    let lb = Lb { run_args: run_args(&pins, &[]), ..Lb::new(LB) };
    let mut w = DirectorPair::new(lb, Options { tag: "announce", udp_port: None })?;
    let result = scenario(&mut w);
    if result.is_err() {
        eprintln!("[announce] agent log:\n{}", log(&w));
    }
    let finished = w.finish();
    result?;
    finished?;
    ensure!(pins.pins().is_empty(), "pins left after the final stop: {:?}", pins.pins());
    Ok(())
}

fn scenario(w: &mut DirectorPair) -> anyhow::Result<()> {
    let ns = w.director_ns(A);
    // Another program's route, and one of ours for a fast path that is gone.
    ns.ip(&["route", "add", "blackhole", "10.9.9.9/32", "table", TABLE])?;
    ns.ip(&["route", "add", "blackhole", "10.216.0.200/32", "table", TABLE, "proto", "250", "metric", "5"])?;
    let vip = VIP.to_string();
    let cli = Lb::new(LB);

    w.start_agent_with(A, &config())?;
    w.wait(A, "backends up", STATE_LIMIT, all_up)?;
    let took = wait_routes(w, &[&vip], STATE_LIMIT)?;
    eprintln!("announce: announced {took:?} after the backends were up");
    let status = w.status(A)?;
    ensure!(status["announce_table"] == 4242, "announce_table: {}", status["announce_table"]);
    let announced = status["announced"].as_array().context("announced")?;
    let of = |a: &str| announced.iter().find(|e| e["address"] == a).cloned().unwrap_or_default();
    ensure!(of(&vip)["announced"] == true, "{announced:?}");
    ensure!(of(QUIET_VIP)["announced"] == false && of(QUIET_VIP)["why"] == "announce = false", "{announced:?}");

    let bird = Bird::start(w.director_ns(A), w.config_path(A).parent().context("the test's directory")?)?;
    if let Some(bird) = &bird {
        let took = bird.wait(w.director_ns(A), true, Duration::from_secs(10))?;
        eprintln!("announce: BIRD learned the VIP {took:?} after it started");
    }

    // Below quorum (2): withdrawn; back: announced again.
    weights(&cli, w, 0)?;
    let took = wait_routes(w, &[], STATE_LIMIT)?;
    eprintln!("announce: withdrawn {took:?} after the weights went to 0");
    if let Some(bird) = bird {
        let took = bird.wait(w.director_ns(A), false, Duration::from_secs(5))?;
        eprintln!("announce: BIRD forgot the VIP {took:?} after the kernel did");
    }
    let status = w.status(A)?;
    let why = status["announced"].as_array().and_then(|a| a.iter().find(|e| e["address"] == vip.as_str()).cloned());
    ensure!(why.as_ref().is_some_and(|e| e["why"] == "quorum lost"), "{why:?}");
    ensure!(status["announce_changes"].as_u64() >= Some(2), "announce_changes: {}", status["announce_changes"]);
    weights(&cli, w, 1)?;
    wait_routes(w, &[&vip], STATE_LIMIT)?;

    // A reload that keeps the VIP out of BGP withdraws it; back, announced.
    let socket = w.socket_path(A).to_str().context("socket path")?.to_owned();
    let path = w.config_path(A).to_owned();
    let running = std::fs::read_to_string(&path)?;
    let quiet = running.replacen("quorum = 2\n", "quorum = 2\nannounce = false\n", 1);
    ensure!(quiet != running, "the configuration has no `quorum = 2` line to follow");
    std::fs::write(&path, &quiet)?;
    cli.ok(&["reload", "--socket", &socket])?;
    wait_routes(w, &[], STATE_LIMIT)?;
    std::fs::write(&path, &running)?;
    cli.ok(&["reload", "--socket", &socket])?;
    wait_routes(w, &[&vip], STATE_LIMIT)?;

    // SIGKILL: the fast path forwards on, and its routes stay.
    let pid = w.agent_pid(A).context("A's agent")?;
    // SAFETY: our child's pid; it is reaped by terminate below, not before.
    ensure!(unsafe { libc::kill(pid, libc::SIGKILL) } == 0, "SIGKILL: {}", std::io::Error::last_os_error());
    let (status, _) = w.terminate(A, Duration::from_secs(5))?;
    ensure!(status.code().is_none(), "the agent was not killed: {status}");
    ensure!(ours(w)? == BTreeSet::from([vip.clone()]), "SIGKILL took the route: {:?}", ours(w)?);
    ensure!(xdp_on(w.director_ns(A), IF)?.is_some(), "the program went with the agent");

    // The next agent adopts the fast path and keeps the route all along.
    w.start_agent_with(A, &config())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        ensure!(ours(w)? == BTreeSet::from([vip.clone()]), "the restarted agent withdrew: {:?}", ours(w)?);
        thread::sleep(Duration::from_millis(20));
    }
    w.wait(A, "backends up after the restart", STATE_LIMIT, all_up)?;
    let restarted = log(w);
    ensure!(restarted.contains("keeping the routes left in the table"), "{restarted}");
    ensure!(!restarted.contains("withdrawn"), "the restarted agent withdrew:\n{restarted}");

    // SIGTERM: withdrawn, and before the fast path was detached.
    let (status, killed) = w.terminate(A, Duration::from_secs(10))?;
    ensure!(status.success() && !killed, "the agent's stop: {status} (SIGKILL: {killed})");
    ensure!(ours(w)?.is_empty(), "SIGTERM left routes: {:?}", ours(w)?);
    let stopped = log(w);
    let withdrawn = stopped.find("withdrawn: agent stopping").context("no withdrawal in the log")?;
    let detached = stopped.find("detaching the fast path").context("no detach in the log")?;
    ensure!(withdrawn < detached, "withdrawn after the detach:\n{stopped}");
    let foreign = w.director_ns(A).ip(&["route", "show", "table", TABLE])?;
    ensure!(foreign.contains("10.9.9.9"), "another program's route went: {foreign}");

    // drain-director: withdrawn at once, the agent stops once the VIPs'
    // packet counters stay flat (no traffic here: after the quiet period).
    w.start_agent_with(A, &config())?;
    wait_routes(w, &[&vip], STATE_LIMIT)?;
    let socket = w.socket_path(A).to_str().context("socket path")?.to_owned();
    let asked = Instant::now();
    let said = cli.ok(&["drain-director", "--timeout", "10", "--socket", &socket])?;
    let took = asked.elapsed();
    ensure!(said.contains("traffic has moved away"), "drain-director said: {said}");
    ensure!(ours(w)?.is_empty(), "drained, but routes are left: {:?}", ours(w)?);
    let (status, killed) = w.terminate(A, Duration::from_secs(10))?;
    ensure!(status.success() && !killed, "the drained agent's exit: {status} (SIGKILL: {killed})");
    eprintln!("announce: drain-director answered after {took:?}");
    Ok(())
}
