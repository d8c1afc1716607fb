//! The status page in a real browser: headless Chromium loads it, runs its
//! script and the test reads the DOM it drew (`--dump-dom`).
//!
//! Two ways: over a static copy of the page and status reports built here
//! (no privileges; a tiny HTTP server on the host's loopback hands out one
//! report after another, so the page must follow a change without being
//! reloaded, and must say so when the agent stops answering), and from the
//! agent itself in a namespace of a [`DrLab`] (root: real health checks, a
//! backend's server stopped, the page showing it down).
//!
//! Chromium's virtual time (`--virtual-time-budget`) runs the page's
//! two-second polls without waiting for them in real time; it stands still
//! while a request is in flight. Every run of Chromium and every wait is
//! bounded, and everything is removed also when a test fails.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_tests::{
    agent_proc::{Agent, Lb, TempDir},
    backend::{PORT, Server},
    lab::{self, Addrs, DrLab},
    netns::Netns,
    privileges::{self, REQUIRE_ENV},
};
use lb_userspace::{
    agent::status::{BackendStatus, EventKind, StatusEvent, StatusReport, VipStatus, VrrpStatus},
    web::page,
};

use crate::support;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
/// Where the agent serves the page, inside the director's namespace.
const PAGE_ADDR: &str = "127.0.0.1:9650";
/// The page's poll period (`POLL_MS` in app.js).
const POLL: Duration = Duration::from_secs(2);
/// The bound on one run of Chromium, start-up included, on a loaded machine.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);
/// The bound on a change the agent should make (a check noticing a server).
const STATE_LIMIT: Duration = Duration::from_secs(15);
const CHECK: &str = r#"[vip.check]
type = "http"
interval = "300ms"
timeout = "300ms"
fall = 2
rise = 1
delay_before_retry = "300ms"
warmup = "100ms"
"#;

// ---------------------------------------------------------------------------
// Chromium.

/// Why Chromium cannot run here, or `None`.
fn chromium_missing() -> Option<String> {
    match Command::new("chromium").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        other => Some(format!(
            "chromium is needed ({other:?}): `cargo xtask test` installs it, or `apt-get install chromium`"
        )),
    }
}

/// Whether a test that needs Chromium goes on: without it a plain `cargo
/// test` skips with a line on stderr, and `cargo xtask test` fails.
fn have_chromium() -> bool {
    let Some(why) = chromium_missing() else { return true };
    assert!(std::env::var(REQUIRE_ENV).as_deref() != Ok("1"), "{why}");
    eprintln!("skipped: {why}");
    false
}

/// The DOM of `url` after `budget` of the page's virtual time, loaded by
/// headless Chromium (in `ns` when given) with a profile of its own under
/// `dir`.
fn dump_dom(ns: Option<&Netns>, dir: &Path, url: &str, budget: Duration) -> anyhow::Result<String> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let profile = dir.join(format!("chromium-{}", RUNS.fetch_add(1, Ordering::Relaxed)));
    // `timeout` ends a browser that hangs, and its helpers with it.
    let mut cmd = match ns {
        Some(ns) => ns.command("timeout"),
        None => Command::new("timeout"),
    };
    let out = cmd
        .args(["--kill-after=5", &format!("{}", BROWSER_LIMIT.as_secs()), "chromium"])
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={}", budget.as_millis()))
        .args(["--dump-dom", url])
        .env("HOME", dir)
        .stdin(Stdio::null())
        .output()
        .context("running chromium")?;
    let _ = fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success() && dom.contains("</html>"),
        "chromium --dump-dom {url} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).lines().rev().take(10).collect::<Vec<_>>().join(" | ")
    );
    Ok(dom)
}

// ---------------------------------------------------------------------------
// Reading the dumped DOM: the page marks what matters with data attributes.

/// The table row (`<tr ...>...</tr>`) whose opening tag has `attr="value"`.
fn row<'a>(dom: &'a str, attr: &str, value: &str) -> Option<&'a str> {
    let at = dom.find(&format!(" {attr}=\"{value}\""))?;
    let start = dom[..at].rfind("<tr")?;
    let end = at + dom[at..].find("</tr>")?;
    Some(&dom[start..end])
}

/// The value of `attr` in the first tag of `html`.
fn attr<'a>(html: &'a str, attr: &str) -> Option<&'a str> {
    let tag = &html[..html.find('>')?];
    let rest = &tag[tag.find(&format!(" {attr}=\""))? + attr.len() + 3..];
    Some(&rest[..rest.find('"')?])
}

/// The state the page shows for backend `address`.
fn shown_state<'a>(dom: &'a str, address: &str) -> Option<&'a str> {
    row(dom, "data-backend", address).and_then(|r| attr(r, "data-state"))
}

/// The poll line's state: `ok`, `unreachable` or `loading`.
fn poll_state(dom: &str) -> Option<&str> {
    let at = dom.find("id=\"poll\"")?;
    let start = dom[..at].rfind('<')?;
    attr(&dom[start..], "data-state")
}

// ---------------------------------------------------------------------------
// The page without the agent: a static copy and reports built here.

/// Serves the page's files and, for `/status.json`, the answers of
/// `reports` in turn (the last one again and again); `None` answers 503,
/// as an agent that cannot say. Stops when dropped.
struct PageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PageServer {
    fn start(reports: Vec<Option<String>>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the page server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new().name("page-server".to_owned()).spawn(move || {
            // No server outlives its test by much, even one nobody stops.
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut polls = 0;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, &reports, &mut polls);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        })?;
        Ok(Self { addr, stop, thread: Some(thread) })
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request, one answer, then the connection closes.
fn answer(mut stream: TcpStream, reports: &[Option<String>], polls: &mut usize) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let (status, content_type, body): (&str, &str, Vec<u8>) = if path == "/status.json" {
        let report = reports.get(*polls).or(reports.last()).cloned().flatten();
        *polls += 1;
        match report {
            Some(json) => ("200 OK", "application/json", json.into_bytes()),
            None => ("503 Service Unavailable", "text/plain", b"unavailable".to_vec()),
        }
    } else {
        match page::asset(&path) {
            Some(a) => ("200 OK", a.content_type, a.body.to_vec()),
            None => ("404 Not Found", "text/plain", b"not found".to_vec()),
        }
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    stream.write_all(&body)?;
    Ok(())
}

/// What a backend's reason may hold: operator input, drawn as text.
const HOSTILE: &str = "check failed: <img src=x onerror=alert(1)>";

fn backend(address: &str, state: &str, why: &str, packets: u64) -> BackendStatus {
    let up = state == "up";
    BackendStatus {
        address: address.parse().expect("a test address"),
        sorry: false,
        state: state.to_owned(),
        why: why.to_owned(),
        mac: Some("02:00:00:00:00:0b".to_owned()),
        configured_weight: 1,
        effective_weight: u32::from(up),
        slots: if up { 128 } else { 0 },
        share: if up { 50.0 } else { 0.0 },
        packets,
        bytes: packets * 100,
        flows: 1,
    }
}

/// A report with one VIP of three backends, `down` of them down, and the
/// backends' packet counts at `packets`.
fn report(down: &[&str], packets: u64) -> String {
    let addresses = ["10.0.0.11", "10.0.0.12", "10.0.0.13"];
    let backends: Vec<BackendStatus> = addresses
        .iter()
        .map(|a| if down.contains(a) { backend(a, "down", HOSTILE, packets) } else { backend(a, "up", "", packets) })
        .collect();
    let events = down
        .iter()
        .map(|a| StatusEvent {
            time_ms: 1_764_960_000_000,
            kind: EventKind::Backend,
            subject: format!("{a} on 10.0.0.100:80/tcp"),
            from: "up".to_owned(),
            to: "down".to_owned(),
            reason: HOSTILE.to_owned(),
        })
        .collect();
    let status = StatusReport {
        vips: vec![VipStatus {
            name: "10.0.0.100:80/tcp".to_owned(),
            interface: "eth0".to_owned(),
            hash: "5tuple".to_owned(),
            ring_size: 251,
            quorum: 1,
            live_weight: (addresses.len() - down.len()) as u64,
            quorum_up: true,
            sorry_active: false,
            packets: packets * 3,
            bytes: packets * 300,
            backends,
        }],
        attached: vec![("eth0".to_owned(), "driver".to_owned())],
        counters: vec![("tx".to_owned(), packets * 3)],
        flows: 3,
        vrrp: vec![VrrpStatus {
            name: "VI_1".to_owned(),
            interface: "eth0".to_owned(),
            vrid: 51,
            state: "MASTER".to_owned(),
            priority: 150,
            effective_priority: 150,
            master: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
            ..VrrpStatus::default()
        }],
        events,
        ..StatusReport::default()
    };
    serde_json::to_string(&status).expect("a report serializes")
}

#[test]
fn the_page_draws_every_backend_and_follows_a_change_without_a_reload() -> anyhow::Result<()> {
    if !have_chromium() {
        return Ok(());
    }
    let dir = TempDir::new("status-page", "follows")?;
    // The first poll: all up; every later one: 10.0.0.12 down, and 2000
    // more packets per backend. A server per browser run: each starts over.
    let reports = vec![Some(report(&[], 1000)), Some(report(&["10.0.0.12"], 3000))];
    let server = PageServer::start(reports.clone())?;

    // The first poll only.
    let dom = dump_dom(None, &dir.path, &server.url(), POLL / 2)?;
    for a in ["10.0.0.11", "10.0.0.12", "10.0.0.13"] {
        ensure!(shown_state(&dom, a) == Some("up"), "{a} after the first poll: {:?}\n{dom}", shown_state(&dom, a));
    }
    ensure!(poll_state(&dom) == Some("ok"), "poll line: {:?}", poll_state(&dom));
    ensure!(row(&dom, "data-instance", "VI_1").is_some_and(|r| r.contains("MASTER")), "no VRRP row:\n{dom}");
    ensure!(dom.contains("eth0 (driver)"), "the attachment is not shown:\n{dom}");

    // Within two polls of a change the page shows it, with the reason as
    // text and the rate from the two polls (2000 packets in about 2 s).
    let server = PageServer::start(reports)?;
    let fresh = dump_dom(None, &dir.path, &server.url(), POLL + POLL / 2)?;
    ensure!(shown_state(&fresh, "10.0.0.12") == Some("down"), "10.0.0.12 is not shown down:\n{fresh}");
    let down = row(&fresh, "data-backend", "10.0.0.12").unwrap_or_default();
    ensure!(down.contains("check failed: &lt;img src=x onerror=alert(1)&gt;"), "the reason, as text: {down}");
    ensure!(!fresh.contains("<img"), "a reason became markup:\n{fresh}");
    ensure!(shown_state(&fresh, "10.0.0.11") == Some("up"), "10.0.0.11:\n{fresh}");
    let up = row(&fresh, "data-backend", "10.0.0.11").unwrap_or_default();
    ensure!(up.contains("kpkt/s") || up.contains(" pkt/s"), "no packet rate: {up}");
    ensure!(!up.contains(">0.0 pkt/s<") && !up.contains(">–<"), "the rate is not from two polls: {up}");
    ensure!(row(&fresh, "data-kind", "backend").is_some_and(|r| r.contains("up → down")), "no event:\n{fresh}");
    Ok(())
}

#[test]
fn the_page_says_when_the_agent_does_not_answer() -> anyhow::Result<()> {
    if !have_chromium() {
        return Ok(());
    }
    let dir = TempDir::new("status-page", "unreachable")?;
    let server = PageServer::start(vec![Some(report(&[], 1000)), None])?;
    let dom = dump_dom(None, &dir.path, &server.url(), POLL + POLL / 2)?;
    ensure!(poll_state(&dom) == Some("unreachable"), "poll line: {:?}\n{dom}", poll_state(&dom));
    ensure!(dom.contains("agent unreachable (HTTP 503)"), "no unreachable notice:\n{dom}");
    ensure!(dom.contains("class=\"unreachable\""), "the page is not marked stale:\n{dom}");
    ensure!(shown_state(&dom, "10.0.0.11") == Some("up"), "the last data is no longer shown:\n{dom}");
    Ok(())
}

#[test]
fn the_page_says_when_it_cannot_read_the_answer() -> anyhow::Result<()> {
    if !have_chromium() {
        return Ok(());
    }
    let dir = TempDir::new("status-page", "invalid")?;
    let server = PageServer::start(vec![Some(report(&[], 1000)), Some(r#"{"vips":3}"#.to_owned())])?;
    let dom = dump_dom(None, &dir.path, &server.url(), POLL + POLL / 2)?;
    ensure!(poll_state(&dom) == Some("invalid"), "poll line: {:?}\n{dom}", poll_state(&dom));
    ensure!(dom.contains("status not understood"), "no notice:\n{dom}");
    ensure!(shown_state(&dom, "10.0.0.11") == Some("up"), "the last data is no longer shown:\n{dom}");
    Ok(())
}

// ---------------------------------------------------------------------------
// The page from the agent.

/// 10.217.0.0/24: client .2, director .1, VIP .100, backends .11 and .12.
fn addrs() -> Addrs {
    let a = |last| IpAddr::V4(Ipv4Addr::new(10, 217, 0, last));
    Addrs { client: a(2), director: a(1), vip: a(100), backends: vec![a(11), a(12)], prefix_len: 24 }
}

/// The lab, its servers and the agent. Fields drop in order: the agent
/// first (it detaches the fast path), then the servers, the namespaces and
/// the directory.
struct Env {
    agent: Option<Agent>,
    servers: Vec<Option<Server>>,
    lab: DrLab,
    dir: TempDir,
    socket: PathBuf,
    log: PathBuf,
}

impl Env {
    fn new() -> anyhow::Result<Self> {
        let dir = TempDir::new("status-page", "agent")?;
        let lab = DrLab::new(addrs())?;
        let servers = lab
            .backends
            .iter()
            .zip(["b1", "b2"])
            .map(|(ns, name)| Server::start(ns, name).map(Some))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (socket, log) = (dir.path.join("lb.sock"), dir.path.join("agent.log"));
        Ok(Self { agent: None, servers, lab, dir, socket, log })
    }

    fn start_agent(&mut self) -> anyhow::Result<()> {
        let mut text = format!(
            "[global]\ncontrol_socket = \"{}\"\nmetrics = \"{PAGE_ADDR}\"\n\n[[vip]]\naddress = \"{}\"\nport = {PORT}\n\
             protocol = \"tcp\"\ninterface = \"{}\"\n\n{CHECK}",
            self.socket.display(),
            self.lab.addrs.vip,
            lab::IF,
        );
        for a in &self.lab.addrs.backends {
            text.push_str(&format!("\n[[vip.backend]]\naddress = \"{a}\"\n"));
        }
        let config = self.dir.path.join("lb.toml");
        fs::write(&config, text).context("writing the configuration")?;
        self.agent = Some(Lb::new(LB).start_agent(&self.lab.director, &config, &self.log)?);
        Ok(())
    }

    fn addr(&self, i: usize) -> String {
        self.lab.addrs.backends[i].to_string()
    }

    /// Loads the page in the director's namespace until `ready` holds for
    /// its DOM, for at most `limit`; fails with the last DOM (or error).
    fn wait_page(&mut self, what: &str, limit: Duration, ready: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let start = Instant::now();
        let url = format!("http://{PAGE_ADDR}/");
        loop {
            if let Some(status) = self.agent.as_mut().and_then(Agent::exited) {
                bail!("the agent exited ({status})");
            }
            // Two polls: the one at load and the next.
            let last = match dump_dom(Some(&self.lab.director), &self.dir.path, &url, POLL + POLL / 2) {
                Ok(dom) if ready(&dom) => return Ok(dom),
                Ok(dom) => dom,
                Err(e) => format!("{e:#}"),
            };
            if start.elapsed() > limit {
                bail!("waiting for the page to show {what}: not within {limit:?}; last: {last}");
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn the_agent_serves_the_page_and_it_shows_a_backend_going_down() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    ensure!(chromium_missing().is_none(), "{}", chromium_missing().unwrap_or_default());
    let mut env = Env::new()?;
    let result = (|| {
        env.start_agent()?;
        let (b1, b2) = (env.addr(0), env.addr(1));
        let both_up = |dom: &str| shown_state(dom, &b1) == Some("up") && shown_state(dom, &b2) == Some("up");
        env.wait_page("both backends up", STATE_LIMIT, both_up)?;

        // b2's server stops: the checks take it out within interval x fall
        // + 1 s, and a page loaded since shows it down within two polls.
        env.servers[1] = None;
        let stopped = Instant::now();
        let dom = env.wait_page("b2 down", STATE_LIMIT, |dom| shown_state(dom, &b2) == Some("down"))?;
        println!("[status_page] b2 shown down {:?} after its server stopped", stopped.elapsed());
        let row = row(&dom, "data-backend", &b2).unwrap_or_default();
        ensure!(row.contains("check failed"), "b2's reason is not shown: {row}");
        ensure!(shown_state(&dom, &b1) == Some("up"), "b1:\n{dom}");
        ensure!(dom.contains(&format!("{b2} on ")) && dom.contains("up → down"), "no event for b2:\n{dom}");
        ensure!(poll_state(&dom) == Some("ok"), "poll line: {:?}", poll_state(&dom));
        Ok(())
    })();
    if result.is_err() {
        let log = fs::read_to_string(&env.log).unwrap_or_default();
        for line in log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev() {
            println!("  {line}");
        }
    }
    let stopped = match env.agent.take() {
        Some(mut agent) => agent.terminate(Duration::from_secs(10)),
        None => return result,
    };
    result?;
    let (status, killed) = stopped?;
    ensure!(status.success() && !killed, "the agent ended with {status} (SIGKILL needed: {killed})");
    Ok(())
}
