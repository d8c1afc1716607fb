//! Director failover with VRRP, end to end: two directors A (priority 150)
//! and B (priority 100) run `lb run` with the same VIP and backends plus a
//! `[[vrrp]]` instance (v3, 100 ms), so the master holds the VIP on its
//! eth0 and answers ARP for it. A client holds a TCP connection through A;
//! A's agent is stopped with SIGTERM (priority 0, VIP removed), B takes
//! over and announces the VIP by gratuitous ARP, and the same connection
//! goes on through B to the same backend (Maglev is deterministic across
//! directors), as do new connections from the same source ports. Needs
//! root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW).
//!
//! ```text
//!   client     .2  eth0 ── c0 ┐
//!   director A .1  eth0 ── pa ┤
//!   director B .3  eth0 ── pb ┤ br0 (namespace "sw")
//!   backend i  .1i eth0 ── bi ┘   each backend holds the VIP on lo
//! ```
//!
//! Every wait is bounded; guards stop the agents, the servers and the
//! client's echo thread and delete the namespaces, also when the test fails.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File},
    io::{self, BufRead as _, BufReader, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::programs::{Xdp, XdpMode};
use lb_tests::{
    backend::{CONNECT_TIMEOUT, PORT, Server, http_get},
    lab::{self as dr, format_mac},
    netns::{self, Netns},
};
use lb_userspace::dataplane::{Dataplane, DataplaneOptions};
use serde_json::Value;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
const IF: &str = "eth0";
const SUBNET: &str = "10.216.0";
const VIP: &str = "10.216.0.100";
const BACKENDS: usize = 3;
/// The held connection's reads and writes: long enough to ride out the
/// failover on TCP retransmissions.
const HELD_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on any state change (checks, election) on a loaded machine.
const STATE_LIMIT: Duration = Duration::from_secs(15);
/// B must be master this soon after A's SIGTERM (skew time ~61 ms, plus slack).
const TAKEOVER_LIMIT: Duration = Duration::from_millis(1500);
const SHORT_CONNECTIONS: u16 = 30;
const FIRST_SHORT_PORT: u16 = 41000;
const HELD_PORT: u16 = 40999;

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 216, 0, last))
}

fn backend_addr(i: usize) -> IpAddr {
    addr(11 + i as u8)
}

// ---------------------------------------------------------------------------
// Backends: HTTP with the server's name as body, and HOLD/echo.

/// The long-lived connection: the HOLD/echo protocol.
#[derive(Debug)]
struct Held {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Held {
    fn exchange(&mut self, line: &str) -> anyhow::Result<String> {
        self.writer.write_all(format!("{line}\n").as_bytes()).context("sending on the held connection")?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer).context("reading on the held connection")?;
        ensure!(answer.ends_with('\n'), "the held connection was closed (read {answer:?})");
        Ok(answer.trim().to_owned())
    }

    fn echo(&mut self, line: &str) -> anyhow::Result<()> {
        let answer = self.exchange(line)?;
        ensure!(answer == line, "the held connection echoed {answer:?} for {line:?}");
        Ok(())
    }
}

/// Echoes on the held connection every 10 ms on a thread of its own,
/// recording when each echo came back, until stopped or an echo fails.
/// What the echo thread hands back: the connection, when each echo came
/// back, and the error that ended it early, if any.
type Echoed = (Held, Vec<Instant>, Option<String>);

#[derive(Debug)]
struct Echoer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Echoed>>,
}

impl Echoer {
    fn start(mut held: Held) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("echoer".into())
            .spawn(move || {
                let mut times = Vec::new();
                let mut n = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    if let Err(e) = held.echo(&format!("echo {n}")) {
                        return (held, times, Some(format!("echo {n}: {e:#}")));
                    }
                    times.push(Instant::now());
                    n += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                (held, times, None)
            })
            .context("spawning the echo thread")?;
        Ok(Self { stop, thread: Some(thread) })
    }

    fn finish(mut self) -> anyhow::Result<Echoed> {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().context("echo thread already joined")?;
        t.join().map_err(|_| anyhow::anyhow!("the echo thread panicked"))
    }
}

impl Drop for Echoer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The agents and the `lb` command line.

#[derive(Debug)]
struct Agent {
    child: Child,
}

impl Agent {
    fn start(ns: &Netns, config: &Path, log: &Path) -> anyhow::Result<Self> {
        let log = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = ns
            .command(LB)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the agent")?;
        Ok(Self { child })
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn signal_term(&mut self) {
        if self.exited().is_none() {
            // SAFETY: our own child, not reaped yet (try_wait just said so).
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// SIGTERM, wait up to `limit`, then SIGKILL: the exit status and whether SIGKILL was needed.
    fn terminate(&mut self, limit: Duration) -> anyhow::Result<(ExitStatus, bool)> {
        self.signal_term();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Ok((status, false));
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().context("killing the agent")?;
        Ok((self.child.wait()?, true))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.terminate(Duration::from_secs(5));
    }
}

fn lb(args: &[&str]) -> anyhow::Result<Output> {
    let child = Command::new(LB)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running lb {args:?}"))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => Ok(out?),
        Err(_) => {
            // SAFETY: our child, not reaped while wait_with_output runs.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            bail!("lb {args:?} did not finish within 20 s")
        }
    }
}

fn status(socket: &Path) -> anyhow::Result<Value> {
    let socket = socket.to_str().context("socket path")?;
    let out = lb(&["status", "--json", "--socket", socket])?;
    ensure!(out.status.success(), "lb status failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).with_context(|| format!("parsing the status: {text}"))
}

fn vrrp_state(s: &Value) -> String {
    s["vrrp"][0]["state"].as_str().unwrap_or_default().to_owned()
}

fn backend(s: &Value, address: IpAddr) -> Option<&Value> {
    let address = address.to_string();
    s["vips"][0]["backends"].as_array()?.iter().find(|b| b["address"] == address.as_str())
}

fn all_up(s: &Value) -> bool {
    (0..BACKENDS).all(|i| backend(s, backend_addr(i)).is_some_and(|b| b["state"] == "up"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The world.

/// One director: its namespace, agent and files.
#[derive(Debug)]
struct Director {
    tag: &'static str,
    agent: Option<Agent>,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl Director {
    fn status(&mut self) -> anyhow::Result<Value> {
        if let Some(st) = self.agent.as_mut().and_then(Agent::exited) {
            bail!("director {}'s agent exited ({st})", self.tag);
        }
        status(&self.socket)
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.iter().rev().map(|l| format!("  {l}\n")).collect()
    }
}

/// Fields drop in order: agents first (they detach their XDP and drop the
/// VIP), then servers, the bridge-side pass programs, the namespaces and
/// the directory.
#[derive(Debug)]
struct World {
    directors: Vec<Director>,
    servers: Vec<Server>,
    peers: Vec<Dataplane>,
    switch: Netns,
    client: Netns,
    director_ns: Vec<Netns>,
    backends: Vec<Netns>,
    dir: TempDir,
}

/// A trivial XDP program on a bridge port (see `DrLab::attach_peer_pass`):
/// veth XDP_TX only delivers to a peer that has an XDP program.
fn attach_peer_pass(switch: &Netns, port: &'static str) -> anyhow::Result<Dataplane> {
    switch.run_in(move || {
        const NAME: &str = "bench_pass";
        let mut dp = Dataplane::load(DataplaneOptions { max_vips: 1, max_ring_size: 7, flows_per_cpu: 16 })
            .context("loading the object for bench_pass")?;
        let prog: &mut Xdp = dp
            .ebpf_mut()
            .program_mut(NAME)
            .with_context(|| format!("{NAME} is missing from the object"))?
            .try_into()?;
        prog.load()?;
        let ifindex = lb_userspace::dataplane::ifindex(port)?;
        prog.attach_to_if_index(ifindex, XdpMode::Driver).with_context(|| format!("attaching {NAME} to {port}"))?;
        Ok(dp)
    })
}

impl World {
    fn new() -> anyhow::Result<Self> {
        let dir = TempDir::new("failover")?;
        let switch = Netns::new("sw")?;
        let client = Netns::new("cl")?;
        let director_ns = vec![Netns::new("da")?, Netns::new("db")?];
        let backends = (1..=BACKENDS).map(|i| Netns::new(&format!("b{i}"))).collect::<anyhow::Result<Vec<_>>>()?;
        for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"] {
            let _ = switch.sysctl(&format!("net.bridge.{key}"), "0");
        }
        let bridge = "link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0";
        switch.ip(&bridge.split(' ').collect::<Vec<_>>())?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let plug = |ns: &Netns, port: &str, last: u8| -> anyhow::Result<()> {
            netns::veth(ns, IF, &switch, port)?;
            switch.ip(&["link", "set", port, "master", "br0"])?;
            ns.ip(&["addr", "add", &format!("{SUBNET}.{last}/24"), "dev", IF])?;
            Ok(())
        };
        plug(&client, "c0", 2)?;
        plug(&director_ns[0], "pa", 1)?;
        plug(&director_ns[1], "pb", 3)?;
        for (i, b) in backends.iter().enumerate() {
            plug(b, &format!("b{}", i + 1), 11 + i as u8)?;
            b.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            for dev in ["all", IF] {
                b.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                b.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
            }
        }
        // XDP_TX loses CHECKSUM_PARTIAL: the client's stack must fill sums in.
        client.run_in(|| dr::disable_tx_checksum(IF))?;
        let servers = backends
            .iter()
            .enumerate()
            .map(|(i, ns)| Server::start(ns, &format!("b{}", i + 1)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let peers = vec![attach_peer_pass(&switch, "pa")?, attach_peer_pass(&switch, "pb")?];
        let directors = ["a", "b"]
            .into_iter()
            .map(|tag| Director {
                tag,
                agent: None,
                config: dir.path.join(format!("lb-{tag}.toml")),
                socket: dir.path.join(format!("lb-{tag}.sock")),
                log: dir.path.join(format!("agent-{tag}.log")),
            })
            .collect();
        Ok(Self { directors, servers, peers, switch, client, director_ns, backends, dir })
    }

    fn config_text(&self, d: usize, priority: u8) -> String {
        let mut text = format!(
            "[global]\ncontrol_socket = \"{}\"\n\n[[vip]]\naddress = \"{VIP}\"\nport = {PORT}\nprotocol = \"tcp\"\n\
             interface = \"{IF}\"\n\n[vip.check]\ntype = \"http\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
             fall = 2\nrise = 1\ndelay_before_retry = \"300ms\"\nwarmup = \"100ms\"\n",
            self.directors[d].socket.display(),
        );
        for i in 0..BACKENDS {
            text.push_str(&format!("\n[[vip.backend]]\naddress = \"{}\"\nweight = 1\n", backend_addr(i)));
        }
        text.push_str(&format!(
            "\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"{IF}\"\nversion = 3\nvirtual_router_id = 61\n\
             priority = {priority}\nadvert_int = \"100ms\"\nvirtual_ipaddress = [\"{VIP}/24\"]\n\
             garp_master_delay = \"500ms\"\ngarp_master_repeat = 1\n"
        ));
        text
    }

    /// Starts director `d`'s agent, waits for its control socket with XDP
    /// attached, and pins its veth's NAPI thread to CPU 0.
    fn start_agent(&mut self, d: usize, priority: u8) -> anyhow::Result<()> {
        let text = self.config_text(d, priority);
        let dirr = &self.directors[d];
        fs::write(&dirr.config, text).with_context(|| format!("writing {}", dirr.config.display()))?;
        let before = kthreads(&format!("napi/{IF}-"));
        let agent = Agent::start(&self.director_ns[d], &dirr.config, &dirr.log)?;
        let dirr = &mut self.directors[d];
        dirr.agent = Some(agent);
        let start = Instant::now();
        loop {
            if let Ok(s) = dirr.status()
                && s["attached"].as_array().is_some_and(|a| !a.is_empty())
            {
                break;
            }
            if let Some(st) = dirr.agent.as_mut().and_then(Agent::exited) {
                bail!("director {}'s agent exited ({st}):\n{}", dirr.tag, dirr.log_tail(40));
            }
            ensure!(start.elapsed() < STATE_LIMIT, "director {}'s agent did not attach in time", dirr.tag);
            thread::sleep(Duration::from_millis(100));
        }
        pin_napi(&self.director_ns[d], &before)?;
        println!("[failover] director {} serving after {:?}", self.directors[d].tag, start.elapsed());
        Ok(())
    }

    /// Polls director `d`'s status every 20 ms until `ready`, for at most `limit`.
    fn wait(
        &mut self,
        d: usize,
        what: &str,
        limit: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut last;
        loop {
            match self.directors[d].status() {
                Ok(s) if ready(&s) => return Ok(start.elapsed()),
                Ok(s) => last = s.to_string(),
                Err(e) => {
                    last = format!("{e:#}");
                    if self.directors[d].agent.as_mut().and_then(Agent::exited).is_some() {
                        bail!("waiting for {what}: {last}");
                    }
                }
            }
            ensure!(start.elapsed() <= limit, "waiting for {what}: not within {limit:?}; last status: {last}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// One HTTP request per source port, in order; (port, backend or error).
    fn short_connections(&self) -> anyhow::Result<BTreeMap<u16, Result<String, String>>> {
        let (client, vip) = (addr(2), SocketAddr::new(addr(100), PORT));
        self.client.run_in(move || {
            Ok((FIRST_SHORT_PORT..FIRST_SHORT_PORT + SHORT_CONNECTIONS)
                .map(|port| (port, http_get(SocketAddr::new(client, port), vip).map_err(|e| e.to_string())))
                .collect())
        })
    }

    fn hold(&self) -> anyhow::Result<(String, Held)> {
        let (client, vip) = (addr(2), SocketAddr::new(addr(100), PORT));
        let stream = self.client.run_in(move || {
            let s = dr::connect_from(SocketAddr::new(client, HELD_PORT), vip, CONNECT_TIMEOUT)?;
            s.set_read_timeout(Some(HELD_TIMEOUT))?;
            s.set_write_timeout(Some(HELD_TIMEOUT))?;
            Ok(s)
        })?;
        let mut held = Held { reader: BufReader::new(stream.try_clone()?), writer: stream };
        let name = held.exchange("HOLD")?;
        Ok((name, held))
    }

    fn client_neighbour(&self) -> Option<String> {
        let out = self.client.ip(&["neigh", "show", VIP, "dev", IF]).ok()?;
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return words.next().map(str::to_owned);
            }
        }
        None
    }

    /// Stops everything and checks that no namespace of this process is left.
    fn finish(mut self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        for d in &mut self.directors {
            if let Some(mut agent) = d.agent.take() {
                match agent.terminate(Duration::from_secs(10)) {
                    Ok((st, false)) if st.success() => {}
                    Ok((st, killed)) => {
                        problems.push(format!("director {}'s agent ended with {st} (SIGKILL: {killed})", d.tag));
                    }
                    Err(e) => problems.push(format!("stopping director {}: {e:#}", d.tag)),
                }
            }
        }
        let Self { directors: _, servers, peers, switch, client, director_ns, backends, dir } = self;
        drop(servers);
        drop(peers);
        drop((switch, client, director_ns, backends));
        drop(dir);
        match our_namespaces() {
            Ok(left) if left.is_empty() => {}
            Ok(left) => problems.push(format!("namespaces left behind: {left:?}")),
            Err(e) => problems.push(format!("{e:#}")),
        }
        ensure!(problems.is_empty(), "cleaning up: {}", problems.join("; "));
        Ok(())
    }
}

#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(tag: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("lb-failover-test-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn our_namespaces() -> anyhow::Result<Vec<String>> {
    let out = netns::run(Command::new("ip").args(["netns", "list"]))?;
    let prefix = format!("lbt{}-", std::process::id());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect())
}

/// Threaded NAPI for the director's veth, its kthread pinned to CPU 0, so
/// every packet meets the same per-CPU flow table (see agent.rs).
fn pin_napi(director: &Netns, before: &BTreeSet<libc::pid_t>) -> anyhow::Result<()> {
    let prefix = format!("napi/{IF}-");
    director.exec("sh", &["-c", &format!("echo 1 > /sys/class/net/{IF}/threaded")])?;
    let start = Instant::now();
    let new: Vec<libc::pid_t> = loop {
        let new: Vec<libc::pid_t> = kthreads(&prefix).difference(before).copied().collect();
        if !new.is_empty() {
            break new;
        }
        ensure!(start.elapsed() < Duration::from_secs(5), "no {prefix}* thread appeared after enabling threaded NAPI");
        thread::sleep(Duration::from_millis(20));
    };
    for pid in new {
        // SAFETY: a zeroed cpu_set_t is valid, CPU_SET(0) writes inside it,
        // and sched_setaffinity reads that many bytes of it.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error()).with_context(|| format!("pinning NAPI thread {pid} to CPU 0"));
        }
    }
    Ok(())
}

fn kthreads(prefix: &str) -> BTreeSet<libc::pid_t> {
    let Ok(dir) = fs::read_dir("/proc") else { return BTreeSet::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(prefix)))
        .collect()
}

// ---------------------------------------------------------------------------
// The test.

#[test]
fn established_flow_survives_director_failover() -> anyhow::Result<()> {
    let mut world = World::new()?;
    let result = scenario(&mut world);
    if result.is_err() {
        for d in &world.directors {
            println!("[failover] director {}'s agent log (tail):\n{}", d.tag, d.log_tail(40));
        }
    }
    let finished = world.finish();
    result?;
    finished
}

fn scenario(w: &mut World) -> anyhow::Result<()> {
    const A: usize = 0;
    const B: usize = 1;
    let started = Instant::now();
    let a_mac = format_mac(netns::mac_of(&w.director_ns[A], IF)?);
    let b_mac = format_mac(netns::mac_of(&w.director_ns[B], IF)?);

    w.start_agent(A, 150)?;
    w.wait(A, "A MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
    w.start_agent(B, 100)?;
    w.wait(B, "B BACKUP", STATE_LIMIT, |s| vrrp_state(s) == "BACKUP")?;
    w.wait(A, "A's backends up", STATE_LIMIT, all_up)?;
    w.wait(B, "B's backends up", STATE_LIMIT, all_up)?;
    // Settled: A master, B backup, and both still so.
    thread::sleep(Duration::from_millis(300));
    let (sa, sb) = (w.directors[A].status()?, w.directors[B].status()?);
    ensure!(vrrp_state(&sa) == "MASTER" && vrrp_state(&sb) == "BACKUP", "A {} / B {}", sa["vrrp"], sb["vrrp"]);
    println!("[failover] A MASTER, B BACKUP, all backends up on both after {:?}", started.elapsed());

    // The held connection, through A (the client ARPs for the VIP).
    let (name, mut held) = w.hold()?;
    for k in 0..3 {
        held.echo(&format!("before {k}"))?;
    }
    let i: usize = name.strip_prefix('b').and_then(|n| n.parse().ok()).context("a backend's name")?;
    let held_backend = backend_addr(i - 1);
    ensure!(
        w.client_neighbour().as_deref() == Some(a_mac.as_str()),
        "the VIP resolves to {:?}, not A's {a_mac}",
        w.client_neighbour()
    );
    println!("[failover] held connection on {name} ({held_backend}); the client's VIP entry is A's MAC {a_mac}");

    let before = w.short_connections()?;
    let failed: Vec<_> = before.iter().filter(|(_, r)| r.is_err()).collect();
    ensure!(failed.is_empty(), "short connections through A failed: {failed:?}");
    let spread: BTreeSet<&String> = before.values().filter_map(|r| r.as_ref().ok()).collect();
    println!("[failover] {SHORT_CONNECTIONS} short connections through A: {spread:?}");

    let sb = w.directors[B].status()?;
    ensure!(u64_of(&sb["vips"][0], "packets") == 0, "B saw VIP packets before the failover: {}", sb["vips"][0]);
    let sa = w.directors[A].status()?;
    let b = backend(&sa, held_backend).context("held backend in A's status")?;
    ensure!(u64_of(b, "packets") > 0, "A carried nothing to {name}: {b}");

    // Echo continuously, then stop A's agent.
    let echoer = Echoer::start(held)?;
    thread::sleep(Duration::from_millis(300));
    let term = Instant::now();
    w.directors[A].agent.as_mut().context("A's agent")?.signal_term();
    let took = w.wait(B, "B MASTER", TAKEOVER_LIMIT, |s| vrrp_state(s) == "MASTER")?;
    println!("[failover] B MASTER {took:?} after A's SIGTERM");
    let (st, killed) = w.directors[A].agent.take().context("A's agent")?.terminate(Duration::from_secs(10))?;
    ensure!(st.success() && !killed, "A's agent ended with {st} (SIGKILL: {killed})");
    println!("[failover] A's agent exited {:?} after SIGTERM", term.elapsed());
    let moved = netns::wait_for(Duration::from_secs(3), || (w.client_neighbour()? == b_mac).then_some(()));
    ensure!(moved.is_some(), "the client's VIP entry did not move to B's MAC {b_mac}: {:?}", w.client_neighbour());
    // Let echoes run through B for a while.
    thread::sleep(Duration::from_millis(500));
    let (mut held, times, error) = echoer.finish()?;
    if let Some(e) = error {
        bail!("the held connection broke during the failover: {e}");
    }
    let before_term = times.iter().filter(|&&t| t < term).count();
    ensure!(before_term > 0, "no echo before the SIGTERM");
    let (gap_at, gap) =
        times.windows(2).map(|p| (p[0], p[1] - p[0])).max_by_key(|&(_, g)| g).context("too few echoes")?;
    let after_gap = times.iter().filter(|&&t| t > gap_at).count();
    ensure!(after_gap >= 5, "only {after_gap} echoes after the largest gap");
    // Signed: where the gap starts relative to the SIGTERM, in ms.
    let gap_from_term =
        if gap_at >= term { (gap_at - term).as_secs_f64() * 1000.0 } else { -(term - gap_at).as_secs_f64() * 1000.0 };
    println!(
        "[failover] {} echoes ({before_term} before SIGTERM); failover time (last echo via A -> first echo via B): \
         {gap:?}, the last echo via A {gap_from_term:+.1} ms after the SIGTERM",
        times.len(),
    );
    for k in 0..3 {
        held.echo(&format!("after {k}"))?;
    }

    // B carried the held connection to the same backend (or it would have
    // been reset), and has a flow for it now.
    let sb = w.directors[B].status()?;
    let b = backend(&sb, held_backend).context("held backend in B's status")?;
    ensure!(u64_of(b, "packets") > 0 && u64_of(b, "flows") >= 1, "B did not carry the held connection to {name}: {b}");
    ensure!(w.client_neighbour().as_deref() == Some(b_mac.as_str()), "the VIP's entry: {:?}", w.client_neighbour());

    // The same source ports reach the same backends through B.
    let after = w.short_connections()?;
    let mut differ = Vec::new();
    for (port, was) in &before {
        let now = &after[port];
        if now.as_ref().ok() != was.as_ref().ok() {
            differ.push(format!("port {port}: {was:?} then {now:?}"));
        }
    }
    ensure!(differ.is_empty(), "short connections through B differ from A's: {}", differ.join("; "));
    let sb = w.directors[B].status()?;
    ensure!(u64_of(&sb["vips"][0], "packets") > 0, "B's VIP counters: {}", sb["vips"][0]);
    println!(
        "[failover] all {SHORT_CONNECTIONS} short connections map to the same backends through B; total {:?}",
        started.elapsed()
    );
    Ok(())
}
