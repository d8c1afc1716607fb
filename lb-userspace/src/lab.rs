//! `lb lab`: a self-contained lab in network namespaces, so anyone can watch
//! the real agent forward real traffic without a spare NIC.
//!
//! ```text
//!   client 10.220.0.2 ──┐
//!   director 10.220.0.1 ┤ br0 (namespace "sw")     `lb run` on the director
//!   b1 10.220.0.11 ─────┤   backends hold the VIP 10.220.0.100 on lo
//!   b2 10.220.0.12 ─────┤   and answer the client directly (DR)
//!   b3 10.220.0.13 ─────┘
//! ```
//!
//! The director holds the VIP on its interface (as a VRRP master would) so it
//! answers ARP for it, and runs `lb run` (this same program) with a
//! configuration the lab writes: three backends with weights 1, 2, 3 and an
//! HTTP health check. The client opens HTTP connections to the VIP; the lab
//! prints the agent's status table and who answered. Midway it stops b2's
//! HTTP server: the health check takes b2 out and traffic moves to b1 and b3;
//! then it starts the server again and b2 comes back.
//!
//! `lb lab --ecmp` is the scale-out form ([`ecmp`]): three active directors
//! behind a router that spreads flows over them, each announcing the VIP
//! over BGP through BIRD 2 ([`bird`]).

pub mod bird;
pub mod ecmp;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    agent::{
        control::{self, ControlError, Request},
        status::StatusReport,
    },
    fast_path::{FastPathError, PeerPass},
    netns::{self, Netns, NetnsError},
};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab set-up: {0}")]
    Netns(#[from] NetnsError),
    #[error("fast path: {0}")]
    FastPath(#[from] FastPathError),
    #[error("talking to the agent: {0}")]
    Control(#[from] ControlError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("the agent did not bring the backends up within {secs} s; its status: {status}")]
    AgentNotReady { secs: u64, status: String },
    #[error("the agent exited early ({status})")]
    AgentExited { status: std::process::ExitStatus },
    #[error("installing the Ctrl-C handler: {source}")]
    Signal { source: std::io::Error },
    #[error("the lab needs root (CAP_NET_ADMIN and CAP_BPF); try `cargo xtask run`")]
    NotRoot,
    #[error(
        "the ECMP lab runs BIRD 2 on its router and directors, and `{program}` is not installed: \
         `apt-get install bird2`, or start the lab with `cargo xtask run -- --ecmp`, which installs it"
    )]
    BirdMissing { program: &'static str },
    #[error("the router's routing table: {0}")]
    Route(#[from] bird::RouteError),
    #[error("the directors were not all announced within {secs} s ({state}); see the logs in {dir}")]
    NotSpread { secs: u64, state: String, dir: String },
    #[error("the router still used {director} {secs} s after its agent was stopped")]
    NotWithdrawn { director: String, secs: u64 },
}

/// Prefix of every namespace the lab creates.
pub const PREFIX: &str = "lblab";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 220, 0, 100);
const VIP_PORT: u16 = 80;
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 220, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 220, 0, 2);
/// (name, address, weight).
const BACKENDS: [(&str, Ipv4Addr, u32); 3] = [
    ("b1", Ipv4Addr::new(10, 220, 0, 11), 1),
    ("b2", Ipv4Addr::new(10, 220, 0, 12), 2),
    ("b3", Ipv4Addr::new(10, 220, 0, 13), 3),
];
/// The backend the lab stops and starts again.
const VICTIM: usize = 1;
/// The health check the lab configures: a backend is out after
/// `fall` failures `delay_before_retry` apart, so within about a second.
const CHECK: &str = r#"type = "http"
path = "/"
interval = "500ms"
timeout = "400ms"
fall = 2
rise = 1
delay_before_retry = "200ms"
warmup = "200ms""#;
/// How long a stopped backend may still get new connections: the check's
/// interval x fall + 1 s, as the agent's tests hold it to.
const DETECTION: Duration = Duration::from_millis(500 * 2 + 1000);

#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Stop after this long; None: until Ctrl-C.
    pub duration: Option<Duration>,
    /// Time between status tables.
    pub interval: Duration,
    /// When to stop b2's server and when to start it again, from the start.
    pub stop_at: Duration,
    pub restart_at: Duration,
    /// The `lb` program to run as the agent (this program, for `lb lab`).
    pub agent: PathBuf,
}

impl LabOptions {
    pub fn new(agent: PathBuf) -> Self {
        Self {
            duration: None,
            interval: Duration::from_secs(2),
            stop_at: Duration::from_secs(10),
            restart_at: Duration::from_secs(20),
            agent,
        }
    }
}

/// What a lab run saw, for `lb lab`'s caller and the lab's own test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabReport {
    /// Answers per backend (b1, b2, b3).
    pub answers: Vec<u64>,
    pub failed: u64,
    /// Connections that failed later than the health check's detection time
    /// after b2 stopped, while it was stopped: none should.
    pub failed_after_detection: u64,
    /// Answers from b2 after it was started again.
    pub answers_after_restart: u64,
    /// Packets the fast path forwarded, as the agent reports them.
    pub forwarded: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> Result<(), LabError> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; sigaction is given a fully initialised struct.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(LabError::Signal { source: std::io::Error::last_os_error() });
        }
    }
    Ok(())
}

/// The agent process; stopped (SIGTERM, then SIGKILL) on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        // Reaped already: its pid may be another process's by now.
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        // SAFETY: kill on our own child's pid, not reaped (just checked).
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Everything the lab created. Fields drop in order: the agent first (it
/// detaches its fast path), then the namespaces, then the work directory.
struct Lab {
    agent: Agent,
    _peer_pass: PeerPass,
    client: Netns,
    _director: Netns,
    backends: Vec<Netns>,
    _switch: Netns,
    socket: PathBuf,
    dir: WorkDir,
}

struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// The agent's configuration for the lab.
fn config(socket: &Path) -> String {
    let mut c = format!(
        "# Written by `lb lab`.\n[global]\ncontrol_socket = \"{}\"\n\n[[vip]]\naddress = \"{VIP}\"\nport = {VIP_PORT}\n\
         protocol = \"tcp\"\ninterface = \"eth0\"\n\n[vip.check]\n{CHECK}\n",
        socket.display()
    );
    for (_, addr, weight) in BACKENDS {
        c.push_str(&format!("\n[[vip.backend]]\naddress = \"{addr}\"\nweight = {weight}\n"));
    }
    c
}

impl Lab {
    fn build(agent_exe: &Path) -> Result<Self, LabError> {
        for name in netns::remove_stale(PREFIX) {
            println!("lab: removed {name}, left over from an earlier run");
        }
        let dir = WorkDir(std::env::temp_dir().join(format!("{PREFIX}-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).map_err(io(format!("creating {}", dir.0.display())))?;
        let socket = dir.0.join("lb.sock");
        let config_path = dir.0.join("lb.toml");
        std::fs::write(&config_path, config(&socket)).map_err(io("writing the lab's configuration"))?;

        let switch = Netns::new(PREFIX, "sw")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        for key in ["call-iptables", "call-ip6tables", "call-arptables"] {
            // Only present with br_netfilter loaded; bridged frames must not
            // detour through the host's firewall.
            let _ = switch.sysctl(&format!("net.bridge.bridge-nf-{key}"), "0");
        }
        let port = |ns: &Netns, inner: &str, outer: &str| -> Result<(), NetnsError> {
            netns::veth(ns, inner, &switch, outer)?;
            switch.ip(&["link", "set", outer, "master", "br0"])?;
            Ok(())
        };

        let director = Netns::new(PREFIX, "director")?;
        port(&director, "eth0", "d0")?;
        director.ip(&["addr", "add", &format!("{DIRECTOR}/24"), "dev", "eth0"])?;
        director.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])?;

        let client = Netns::new(PREFIX, "client")?;
        port(&client, "eth0", "c0")?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"])?;
        // veth leaves checksums to "hardware" (CHECKSUM_PARTIAL) and XDP_TX
        // drops that note, so a backend would get segments whose checksum
        // was never filled in. A real NIC computes it; in the lab the
        // client's stack must.
        client.exec("ethtool", &["-K", "eth0", "tx", "off"])?;

        let mut backends = Vec::new();
        for (i, (name, addr, _)) in BACKENDS.iter().enumerate() {
            let ns = Netns::new(PREFIX, name)?;
            port(&ns, "eth0", &format!("b{i}"))?;
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            // DR real-server settings: never answer ARP for the VIP on lo,
            // never use it as an ARP source.
            for scope in ["all", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_ignore"), "1")?;
                ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_announce"), "2")?;
            }
            backends.push(ns);
        }

        let peer_pass = switch.run_in(|| PeerPass::attach("d0"))??;
        let child = director
            .command(&agent_exe.display().to_string())
            .args(["run", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .spawn()
            .map_err(io(format!("starting the agent {}", agent_exe.display())))?;
        println!(
            "lab: started the agent on the director: {} run --config {}",
            agent_exe.display(),
            config_path.display()
        );
        Ok(Self {
            agent: Agent(child),
            _peer_pass: peer_pass,
            client,
            _director: director,
            backends,
            _switch: switch,
            socket,
            dir,
        })
    }

    fn status(&self) -> Result<StatusReport, LabError> {
        Ok(control::request(&self.socket, &Request::Status)?.status.unwrap_or_default())
    }

    /// Waits until the agent is up and reports every backend up.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), LabError> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.agent.0.try_wait() {
                return Err(LabError::AgentExited { status });
            }
            if let Ok(s) = self.status() {
                let states: Vec<&str> = s.vips.iter().flat_map(|v| &v.backends).map(|b| b.state.as_str()).collect();
                if states.len() == BACKENDS.len() && states.iter().all(|s| *s == "up") {
                    return Ok(());
                }
                last = format!("{states:?}");
            }
            if STOP.load(Ordering::SeqCst) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(LabError::AgentNotReady { secs: limit.as_secs(), status: last })
    }
}

/// A tiny HTTP server on port 80 of every address of a backend (the VIP on
/// `lo` for clients, its own address for the health check). While `serving`
/// is false it closes its socket, so connections are refused.
fn serve(name: &'static str, serving: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let body = format!("served by {name}\n");
    let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    while !stop.load(Ordering::Relaxed) {
        if !serving.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, VIP_PORT)))?;
        listener.set_nonblocking(true)?;
        while serving.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(reply.as_bytes());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Responses per backend and failures, as the client saw them.
#[derive(Clone, Debug, Default)]
struct Tally {
    by_backend: [u64; BACKENDS.len()],
    failed: u64,
    failed_after_detection: u64,
    answers_after_restart: u64,
    /// When b2 was stopped and when it was started again.
    stopped_at: Option<Instant>,
    restarted_at: Option<Instant>,
}

fn one_request() -> Option<usize> {
    let addr = SocketAddr::from((VIP, VIP_PORT));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    BACKENDS.iter().position(|(name, _, _)| text.contains(&format!("served by {name}\n")))
}

/// The client: about `rate` new connections a second until stopped.
fn client_loop(rate: u32, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>) {
    let gap = Duration::from_secs(1) / rate;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = one_request();
        if let Ok(mut t) = tally.lock() {
            match result {
                Some(i) => {
                    t.by_backend[i] += 1;
                    if i == VICTIM && t.restarted_at.is_some() {
                        t.answers_after_restart += 1;
                    }
                }
                None => {
                    t.failed += 1;
                    if t.restarted_at.is_none() && t.stopped_at.is_some_and(|s| started >= s + DETECTION) {
                        t.failed_after_detection += 1;
                    }
                }
            }
        }
        if let Some(rest) = gap.checked_sub(started.elapsed()) {
            thread::sleep(rest);
        }
    }
}

pub fn run(opts: LabOptions) -> Result<LabReport, LabError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    install_signal_handlers()?;
    let mut lab = Lab::build(&opts.agent)?;
    let stop = Arc::new(AtomicBool::new(false));
    let serving: Vec<Arc<AtomicBool>> = BACKENDS.iter().map(|_| Arc::new(AtomicBool::new(true))).collect();
    let mut servers = Vec::new();
    for (((name, _, _), ns), on) in BACKENDS.iter().zip(&lab.backends).zip(&serving) {
        let (on, stop) = (Arc::clone(on), Arc::clone(&stop));
        servers.push(ns.spawn(move || serve(name, on, stop))?);
    }
    let ready = lab.wait_ready(Duration::from_secs(30));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let client = {
        let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
        lab.client.spawn(move || client_loop(50, tally, stop))?
    };
    println!(
        "lab: client {CLIENT} -> VIP {VIP}:{VIP_PORT} -> director {DIRECTOR} (lb, XDP, DR) -> backends {}",
        BACKENDS.iter().map(|(n, a, w)| format!("{n} {a} weight {w}")).collect::<Vec<_>>().join(", ")
    );
    println!("lab: Ctrl-C ends the lab and removes everything it created");

    let started = Instant::now();
    let mut next_print = started + opts.interval;
    let mut stopped = false;
    let mut restarted = false;
    let mut last = Tally::default();
    let result = ready.and_then(|()| {
        loop {
            if STOP.load(Ordering::SeqCst) || opts.duration.is_some_and(|d| started.elapsed() >= d) {
                break Ok(());
            }
            if let Ok(Some(status)) = lab.agent.0.try_wait() {
                break Err(LabError::AgentExited { status });
            }
            let (name, addr, _) = BACKENDS[VICTIM];
            if !stopped && started.elapsed() >= opts.stop_at {
                stopped = true;
                serving[VICTIM].store(false, Ordering::SeqCst);
                if let Ok(mut t) = tally.lock() {
                    t.stopped_at = Some(Instant::now());
                }
                println!("\nlab: stopped {name}'s HTTP server ({addr}): its health check will fail and take it out");
            }
            if stopped && !restarted && started.elapsed() >= opts.restart_at {
                restarted = true;
                serving[VICTIM].store(true, Ordering::SeqCst);
                if let Ok(mut t) = tally.lock() {
                    t.restarted_at = Some(Instant::now());
                }
                println!("\nlab: started {name}'s HTTP server again: one good check brings it back");
            }
            if Instant::now() >= next_print {
                next_print += opts.interval;
                let now = tally.lock().map(|t| t.clone()).unwrap_or_default();
                print_status(&lab, started.elapsed(), &now, &last);
                last = now;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    stop.store(true, Ordering::SeqCst);
    let _ = client.join();
    for s in servers {
        let _ = s.join();
    }
    let t = tally.lock().map(|t| t.clone()).unwrap_or_default();
    let forwarded =
        lab.status().map(|s| s.counters.iter().find(|(k, _)| k == "tx").map_or(0, |(_, n)| *n)).unwrap_or_default();
    println!("lab: stopped; stopping the agent and removing the namespaces");
    let _ = &lab.dir;
    drop(lab);
    result?;
    Ok(LabReport {
        answers: t.by_backend.to_vec(),
        failed: t.failed,
        failed_after_detection: t.failed_after_detection,
        answers_after_restart: t.answers_after_restart,
        forwarded,
    })
}

fn print_status(lab: &Lab, elapsed: Duration, now: &Tally, last: &Tally) {
    println!("\n--- t={:.1}s: `lb status` on the director ---", elapsed.as_secs_f64());
    match lab.status() {
        Ok(s) => print!("{}", s.render()),
        Err(e) => println!("(no status: {e})"),
    }
    let answers: Vec<String> = BACKENDS
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| format!("{name} {} (+{})", now.by_backend[i], now.by_backend[i] - last.by_backend[i]))
        .collect();
    println!("client: answers {}; failed connections {}", answers.join(", "), now.failed);
}
