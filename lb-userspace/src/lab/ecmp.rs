//! `lb lab --ecmp`: the scale-out form of the lab. Three directors are all
//! active behind a router that spreads the client's connections over them
//! by ECMP; each runs `lb run` (this program) with the same VIP and
//! backends and announces the VIP over BGP through its own BIRD 2. Midway
//! one director stops cleanly: its agent withdraws the route, the router
//! moves its connections to the other two, whose Maglev rings send them to
//! the same backends, and no connection breaks. Later it starts again and
//! takes its share back, again without a break.
//!
//! ```text
//!   client 10.225.0.2 ── 10.225.0.1 router (BIRD: merge paths, 5-tuple hash)
//!                        10.226.0.1 ──┐
//!   d1 10.226.0.11 (lb run + BIRD) ───┤
//!   d2 10.226.0.12 (lb run + BIRD) ───┤ br0 (namespace "sw")
//!   d3 10.226.0.13 (lb run + BIRD) ───┤
//!   b1..b3 10.226.0.21-23 ────────────┘ VIP 10.227.0.100 on lo, answer via the router
//! ```

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use super::{Agent, LabError, PREFIX, STOP, WorkDir, bird, install_signal_handlers, io};
use crate::{
    agent::control::{self, Request},
    fast_path::PeerPass,
    netns::{self, Netns, NetnsError},
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 225, 0, 2);
const ROUTER_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 225, 0, 1);
const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(10, 226, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 227, 0, 100);
const VIP_PORT: u16 = 80;
/// The kernel table each agent announces its VIP in, and its BIRD learns.
const TABLE: u32 = 200;
const DIRECTORS: usize = 3;
const BACKENDS: usize = 3;
/// The director that leaves.
const LEAVER: usize = 1;
/// Between two lines of one connection; an echo later than `ECHO_TIMEOUT`
/// breaks it.
const LINE_INTERVAL: Duration = Duration::from_millis(100);
const ECHO_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on the lab coming up: agents attached, backends up, BGP
/// established, the router using every director.
const READY_LIMIT: Duration = Duration::from_secs(30);

fn director_addr(d: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 226, 0, 11 + d as u8)
}

fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 226, 0, 21 + i as u8)
}

#[derive(Clone, Debug)]
pub struct EcmpOptions {
    /// The `lb` program to run as the agents (this program, for `lb lab`).
    pub agent: PathBuf,
    /// Long-lived connections from the client.
    pub connections: usize,
    /// When the director leaves, from the start of the traffic.
    pub leave_at: Duration,
    /// When it starts again; None: it stays away.
    pub rejoin_at: Option<Duration>,
    /// Stop after this long; None: until Ctrl-C.
    pub duration: Option<Duration>,
    /// Time between tables.
    pub interval: Duration,
}

impl EcmpOptions {
    pub fn new(agent: PathBuf) -> Self {
        Self {
            agent,
            connections: 60,
            leave_at: Duration::from_secs(8),
            rejoin_at: Some(Duration::from_secs(16)),
            duration: None,
            interval: Duration::from_secs(2),
        }
    }

    /// A run of a few seconds, for the lab's test.
    pub fn short(agent: PathBuf) -> Self {
        Self {
            connections: 30,
            leave_at: Duration::from_secs(3),
            rejoin_at: None,
            duration: Some(Duration::from_secs(7)),
            ..Self::new(agent)
        }
    }
}

/// What an ECMP lab run saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EcmpReport {
    /// Connections per director (d1, d2, d3) before the director left.
    pub spread: Vec<usize>,
    /// Connections per director once it had left.
    pub away: Vec<usize>,
    /// Connections per director at the end.
    pub after: Vec<usize>,
    /// Connections the router moved to another director when it left.
    pub moved: usize,
    /// Connections that broke (reset, or an echo that never came).
    pub broken: usize,
    pub echoes: u64,
    /// From the leaving agent's SIGTERM to the router no longer using it.
    pub withdraw_ms: Option<u128>,
    /// From its start again to the router using it again.
    pub rejoin_ms: Option<u128>,
}

/// A BIRD in the foreground in a namespace; killed on drop.
struct Bird(Child);

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Everything the lab created. Fields drop in order: agents (each withdraws
/// and detaches), BIRDs, bridge-side programs, namespaces, the directory.
struct Lab {
    agents: Vec<Option<Agent>>,
    _birds: Vec<Bird>,
    _peers: Vec<PeerPass>,
    router: Netns,
    client: Netns,
    directors: Vec<Netns>,
    backends: Vec<Netns>,
    _switch: Netns,
    sockets: Vec<PathBuf>,
    configs: Vec<PathBuf>,
    agent_exe: PathBuf,
    dir: WorkDir,
}

/// Fails with a clear message unless BIRD 2's `bird` and `birdc` run.
fn require_bird() -> Result<(), LabError> {
    for program in ["bird", "birdc"] {
        let found = Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Err(LabError::BirdMissing { program });
        }
    }
    Ok(())
}

fn agent_config(socket: &Path) -> String {
    let mut c = format!(
        "# Written by `lb lab --ecmp`.\n[global]\ncontrol_socket = \"{}\"\n\n[announce]\ntable = {TABLE}\n\n\
         [[vip]]\naddress = \"{VIP}\"\nport = {VIP_PORT}\nprotocol = \"tcp\"\ninterface = \"eth0\"\n\n\
         [vip.check]\ntype = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\nfall = 2\nrise = 1\n",
        socket.display()
    );
    for i in 0..BACKENDS {
        c.push_str(&format!("\n[[vip.backend]]\naddress = \"{}\"\nweight = 1\n", backend_addr(i)));
    }
    c
}

fn start_bird(ns: &Netns, dir: &Path, tag: &str, config: &str) -> Result<Bird, LabError> {
    let conf = dir.join(format!("bird-{tag}.conf"));
    std::fs::write(&conf, config).map_err(io(format!("writing {}", conf.display())))?;
    let log = File::create(dir.join(format!("bird-{tag}.log"))).map_err(io("creating BIRD's log"))?;
    let child = ns
        .command("bird")
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(dir.join(format!("bird-{tag}.ctl")))
        .arg("-P")
        .arg(dir.join(format!("bird-{tag}.pid")))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("BIRD's log"))?)
        .stderr(log)
        .spawn()
        .map_err(io("starting bird"))?;
    Ok(Bird(child))
}

impl Lab {
    fn build(agent_exe: &Path) -> Result<Self, LabError> {
        for name in netns::remove_stale(PREFIX) {
            println!("lab: removed {name}, left over from an earlier run");
        }
        let dir = WorkDir(std::env::temp_dir().join(format!("{PREFIX}-ecmp-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).map_err(io(format!("creating {}", dir.0.display())))?;

        let switch = Netns::new(PREFIX, "sw")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        for key in ["call-iptables", "call-ip6tables", "call-arptables"] {
            // Only present with br_netfilter loaded; bridged frames must not
            // detour through the host's firewall.
            let _ = switch.sysctl(&format!("net.bridge.bridge-nf-{key}"), "0");
        }
        let port = |ns: &Netns, inner: &str, outer: &str, addr: Ipv4Addr| -> Result<(), NetnsError> {
            netns::veth(ns, inner, &switch, outer)?;
            switch.ip(&["link", "set", outer, "master", "br0"])?;
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", inner]).map(drop)
        };

        let router = Netns::new(PREFIX, "router")?;
        let client = Netns::new(PREFIX, "client")?;
        netns::veth(&client, "eth0", &router, "eth0")?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"])?;
        client.ip(&["route", "add", "default", "via", &ROUTER_CLIENT_SIDE.to_string()])?;
        // veth leaves checksums to "hardware" and XDP_TX drops that note; a
        // real NIC computes them, in the lab the client's stack must.
        client.exec("ethtool", &["-K", "eth0", "tx", "off"])?;
        router.ip(&["addr", "add", &format!("{ROUTER_CLIENT_SIDE}/24"), "dev", "eth0"])?;
        port(&router, "eth1", "r0", ROUTER_LAN)?;
        router.sysctl("net.ipv4.ip_forward", "1")?;
        // Hash each packet's addresses, protocol and ports: policy 1 would
        // reuse the hash the client's socket put on the packet.
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "3")?;
        router.sysctl("net.ipv4.fib_multipath_hash_fields", "0x0037")?;

        let mut directors = Vec::new();
        for d in 0..DIRECTORS {
            let ns = Netns::new(PREFIX, &format!("d{}", d + 1))?;
            port(&ns, "eth0", &format!("d{}", d + 1), director_addr(d))?;
            directors.push(ns);
        }
        let mut backends = Vec::new();
        for i in 0..BACKENDS {
            let ns = Netns::new(PREFIX, &format!("b{}", i + 1))?;
            port(&ns, "eth0", &format!("b{}", i + 1), backend_addr(i))?;
            ns.ip(&["route", "add", "default", "via", &ROUTER_LAN.to_string()])?;
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            // DR real-server settings: never answer ARP for the VIP on lo.
            for scope in ["all", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_ignore"), "1")?;
                ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_announce"), "2")?;
            }
            backends.push(ns);
        }
        let mut peers = Vec::new();
        for d in 1..=DIRECTORS {
            peers.push(switch.run_in(move || PeerPass::attach(&format!("d{d}")))??);
        }

        let addrs: Vec<Ipv4Addr> = (0..DIRECTORS).map(director_addr).collect();
        let mut birds = vec![start_bird(&router, &dir.0, "router", &bird::router_config(ROUTER_LAN, &addrs))?];
        let mut sockets = Vec::new();
        let mut configs = Vec::new();
        for (d, ns) in directors.iter().enumerate() {
            let tag = format!("d{}", d + 1);
            let config = bird::director_config(director_addr(d), ROUTER_LAN, TABLE);
            birds.push(start_bird(ns, &dir.0, &tag, &config)?);
            let socket = dir.0.join(format!("lb-{tag}.sock"));
            let config_path = dir.0.join(format!("lb-{tag}.toml"));
            std::fs::write(&config_path, agent_config(&socket)).map_err(io("writing an agent's configuration"))?;
            sockets.push(socket);
            configs.push(config_path);
        }
        let mut lab = Self {
            agents: (0..DIRECTORS).map(|_| None).collect(),
            _birds: birds,
            _peers: peers,
            router,
            client,
            directors,
            backends,
            _switch: switch,
            sockets,
            configs,
            agent_exe: agent_exe.to_owned(),
            dir,
        };
        for d in 0..DIRECTORS {
            lab.start_agent(d)?;
        }
        println!(
            "lab: started `{} run` and BIRD on d1, d2, d3 and BIRD on the router; configurations and logs in {}",
            agent_exe.display(),
            lab.dir.0.display()
        );
        Ok(lab)
    }

    /// Starts director `d`'s agent, its output to `agent-dN.log`.
    fn start_agent(&mut self, d: usize) -> Result<(), LabError> {
        let exe = &self.agent_exe;
        let log =
            File::create(self.dir.0.join(format!("agent-d{}.log", d + 1))).map_err(io("creating an agent's log"))?;
        let child = self.directors[d]
            .command(&exe.display().to_string())
            .args(["run", "--config"])
            .arg(&self.configs[d])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("an agent's log"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("starting the agent {}", exe.display())))?;
        self.agents[d] = Some(Agent(child));
        Ok(())
    }

    /// Director `d`'s forwarded-frame counter, if its agent answers.
    fn forwarded(&self, d: usize) -> Option<u64> {
        let status = control::request(&self.sockets[d], &Request::Status).ok()?.status?;
        status.counters.iter().find(|(k, _)| k == "tx").map(|(_, n)| *n)
    }

    /// The directors the router's route to the VIP uses now.
    fn next_hops(&self) -> Result<Vec<usize>, LabError> {
        let json = self.router.ip(&["-j", "route", "show", &format!("{VIP}/32")])?;
        Ok(bird::next_hops(&json)?.into_iter().filter_map(director_of).collect())
    }

    /// Waits until every agent is up with its backends and the router
    /// spreads the VIP over all three directors.
    fn wait_ready(&mut self) -> Result<(), LabError> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < READY_LIMIT {
            for agent in self.agents.iter_mut().flatten() {
                if let Ok(Some(status)) = agent.0.try_wait() {
                    return Err(LabError::AgentExited { status });
                }
            }
            let hops = self.next_hops()?;
            if hops.len() == DIRECTORS {
                return Ok(());
            }
            last = format!("the router's route to {VIP} uses {} of the {DIRECTORS} directors", hops.len());
            if STOP.load(Ordering::SeqCst) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(LabError::NotSpread { secs: READY_LIMIT.as_secs(), state: last, dir: self.dir.0.display().to_string() })
    }

    /// Which director the router sends each connection (by client port) to.
    fn directors_of(&self, ports: &[u16]) -> Result<BTreeMap<u16, usize>, LabError> {
        let batch: String = ports
            .iter()
            .map(|p| format!("route get {VIP} from {CLIENT} iif eth0 ipproto tcp sport {p} dport {VIP_PORT}\n"))
            .collect();
        let mut child = self
            .router
            .command("ip")
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("running ip -batch in the router"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(batch.as_bytes()).map_err(io("writing to ip -batch"))?;
        }
        let out = child.wait_with_output().map_err(io("reading ip -batch"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let head = format!("{VIP} from");
        let answers = text.split(&head).skip(1);
        Ok(ports.iter().zip(answers).filter_map(|(&p, a)| Some((p, director_of(bird::via(a)?)?))).collect())
    }
}

fn director_of(addr: IpAddr) -> Option<usize> {
    (0..DIRECTORS).find(|&d| IpAddr::V4(director_addr(d)) == addr)
}

/// A backend's server: for every connection its name on a line, then every
/// line it sends echoed back. A thread per connection.
fn serve(name: String, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, VIP_PORT)))?;
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                let (name, stop) = (name.clone(), Arc::clone(&stop));
                thread::spawn(move || echo(conn, &name, &stop));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn echo(conn: TcpStream, name: &str, stop: &AtomicBool) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut writer = conn.try_clone()?;
    writer.write_all(format!("{name}\n").as_bytes())?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.ends_with('\n') => {
                writer.write_all(line.as_bytes())?;
                line.clear();
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The client's connections: each sends a line every [`LINE_INTERVAL`] and
/// waits for its echo; one that fails counts as broken and ends.
struct Client {
    ports: Vec<u16>,
    echoes: Arc<AtomicU64>,
    broken: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Client {
    fn start(ns: &Netns, connections: usize, stop: &Arc<AtomicBool>) -> Result<Self, LabError> {
        let streams = ns.run_in(move || {
            (0..connections)
                .map(|_| {
                    let s = TcpStream::connect_timeout(&SocketAddr::from((VIP, VIP_PORT)), ECHO_TIMEOUT)?;
                    s.set_read_timeout(Some(ECHO_TIMEOUT))?;
                    s.set_write_timeout(Some(ECHO_TIMEOUT))?;
                    Ok(s)
                })
                .collect::<std::io::Result<Vec<_>>>()
        })?;
        let streams = streams.map_err(io(format!("connecting to {VIP}:{VIP_PORT}")))?;
        let echoes = Arc::new(AtomicU64::new(0));
        let broken = Arc::new(AtomicUsize::new(0));
        let mut ports = Vec::new();
        let mut threads = Vec::new();
        for s in streams {
            ports.push(s.local_addr().map_err(io("a connection's address"))?.port());
            let (echoes, broken, stop) = (Arc::clone(&echoes), Arc::clone(&broken), Arc::clone(stop));
            threads.push(thread::spawn(move || {
                if hold(s, &echoes, &stop).is_err() {
                    broken.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        Ok(Self { ports, echoes, broken, threads })
    }
}

fn hold(conn: TcpStream, echoes: &AtomicU64, stop: &AtomicBool) -> std::io::Result<()> {
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let sent = format!("line {n}\n");
        writer.write_all(sent.as_bytes())?;
        line.clear();
        reader.read_line(&mut line)?;
        if line != sent {
            return Err(std::io::Error::other(format!("echoed {line:?} for {sent:?}")));
        }
        echoes.fetch_add(1, Ordering::Relaxed);
        n += 1;
        thread::sleep(LINE_INTERVAL);
    }
    Ok(())
}

pub fn run(opts: &EcmpOptions) -> Result<EcmpReport, LabError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    require_bird()?;
    install_signal_handlers()?;
    let mut lab = Lab::build(&opts.agent)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    for (i, ns) in lab.backends.iter().enumerate() {
        let (name, stop) = (format!("b{}", i + 1), Arc::clone(&stop));
        servers.push(ns.spawn(move || serve(name, stop))?);
    }
    let result = lab.wait_ready().and_then(|()| drive(&mut lab, opts, &stop));
    stop.store(true, Ordering::SeqCst);
    for s in servers {
        let _ = s.join();
    }
    println!("lab: stopped; stopping the agents and BIRD and removing the namespaces");
    drop(lab);
    result
}

fn drive(lab: &mut Lab, opts: &EcmpOptions, stop: &Arc<AtomicBool>) -> Result<EcmpReport, LabError> {
    let client = Client::start(&lab.client, opts.connections, stop)?;
    println!(
        "lab: {} connections from the client {CLIENT} to {VIP}:{VIP_PORT}, a line every {} ms each; the router \
         spreads them over d1 d2 d3 by a hash of each packet's 5-tuple",
        opts.connections,
        LINE_INTERVAL.as_millis()
    );
    println!("lab: Ctrl-C ends the lab and removes everything it created");
    let spread = |m: &BTreeMap<u16, usize>| {
        let mut n = vec![0; DIRECTORS];
        m.values().for_each(|&d| n[d] += 1);
        n
    };
    let before = lab.directors_of(&client.ports)?;
    let mut report = EcmpReport { spread: spread(&before), ..EcmpReport::default() };
    let started = Instant::now();
    let mut next_print = started;
    let mut last_tx: Vec<Option<u64>> = (0..DIRECTORS).map(|d| lab.forwarded(d)).collect();
    let mut left = false;
    let result = loop {
        if STOP.load(Ordering::SeqCst) || opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break Ok(());
        }
        if !left && started.elapsed() >= opts.leave_at {
            left = true;
            match leave(lab) {
                Ok(ms) => report.withdraw_ms = Some(ms),
                Err(e) => break Err(e),
            }
            let away = lab.directors_of(&client.ports)?;
            report.moved = before.iter().filter(|(p, d)| away.get(p).is_some_and(|a| a != *d)).count();
            report.away = spread(&away);
        }
        if left && lab.agents[LEAVER].is_none() && opts.rejoin_at.is_some_and(|at| started.elapsed() >= at) {
            match rejoin(lab) {
                Ok(ms) => report.rejoin_ms = Some(ms),
                Err(e) => break Err(e),
            }
        }
        if Instant::now() >= next_print {
            next_print += opts.interval;
            let now = lab.directors_of(&client.ports)?;
            let tx: Vec<Option<u64>> = (0..DIRECTORS).map(|d| lab.forwarded(d)).collect();
            print_table(lab, started.elapsed(), &spread(&now), &tx, &last_tx, &client)?;
            last_tx = tx;
        }
        thread::sleep(Duration::from_millis(50));
    };
    report.after = spread(&lab.directors_of(&client.ports)?);
    stop.store(true, Ordering::SeqCst);
    for t in client.threads {
        let _ = t.join();
    }
    report.echoes = client.echoes.load(Ordering::Relaxed);
    report.broken = client.broken.load(Ordering::Relaxed);
    println!(
        "\nlab: connections per director (d1, d2, d3): {:?} before d{} left, {:?} once it had, {:?} at the end; \
         its leaving moved {} to another director; {} broke; {} echoes",
        report.spread,
        LEAVER + 1,
        report.away,
        report.after,
        report.moved,
        report.broken,
        report.echoes
    );
    result.map(|()| report)
}

/// Stops the leaving director's agent cleanly and waits until the router no
/// longer uses it: how long that took, in milliseconds.
fn leave(lab: &mut Lab) -> Result<u128, LabError> {
    let name = format!("d{}", LEAVER + 1);
    println!("\nlab: stopping {name}'s agent (SIGTERM): it withdraws its route, then detaches");
    let agent = lab.agents[LEAVER].take();
    let sent = Instant::now();
    if let Some(a) = &agent {
        // SAFETY: kill on our own child's pid, not reaped yet.
        unsafe { libc::kill(a.0.id() as libc::pid_t, libc::SIGTERM) };
    }
    let gone = netns::wait_for(READY_LIMIT, || {
        let hops = lab.next_hops().ok()?;
        (!hops.contains(&LEAVER)).then(|| sent.elapsed())
    });
    if let Some(mut a) = agent {
        // Its own clean stop, bounded; dropping it then kills it if need be.
        let _ = netns::wait_for(Duration::from_secs(10), || a.0.try_wait().ok().flatten());
    }
    let took = gone.ok_or_else(|| LabError::NotWithdrawn { director: name.clone(), secs: READY_LIMIT.as_secs() })?;
    println!("lab: the router stopped using {name} {} ms after the SIGTERM", took.as_millis());
    Ok(took.as_millis())
}

fn print_table(
    lab: &Lab,
    elapsed: Duration,
    spread: &[usize],
    tx: &[Option<u64>],
    last_tx: &[Option<u64>],
    client: &Client,
) -> Result<(), LabError> {
    let hops = lab.next_hops()?;
    println!("\n--- t={:.1}s ---", elapsed.as_secs_f64());
    println!("{:<9}{:<14}{:<10}{:>12}{:>18}", "director", "address", "announced", "connections", "frames forwarded");
    for d in 0..DIRECTORS {
        let frames = match (tx[d], last_tx[d]) {
            (Some(now), Some(then)) => format!("+{}", now.saturating_sub(then)),
            (Some(now), None) => format!("{now}"),
            _ => "(stopped)".to_owned(),
        };
        let announced = if hops.contains(&d) { "yes" } else { "no" };
        println!(
            "{:<9}{:<14}{:<10}{:>12}{:>18}",
            format!("d{}", d + 1),
            director_addr(d),
            announced,
            spread[d],
            frames
        );
    }
    println!(
        "client: {} connections, {} echoes, {} broken",
        client.ports.len(),
        client.echoes.load(Ordering::Relaxed),
        client.broken.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Starts the director that left again and waits until the router uses it:
/// how long that took, in milliseconds.
fn rejoin(lab: &mut Lab) -> Result<u128, LabError> {
    let name = format!("d{}", LEAVER + 1);
    println!("\nlab: starting {name}'s agent again: it announces once it forwards and its backends are up");
    let started = Instant::now();
    lab.start_agent(LEAVER)?;
    let back = netns::wait_for(READY_LIMIT, || {
        let hops = lab.next_hops().ok()?;
        hops.contains(&LEAVER).then(|| started.elapsed())
    });
    let took = back.ok_or_else(|| LabError::NotSpread {
        secs: READY_LIMIT.as_secs(),
        state: format!("{name} not announced again"),
        dir: lab.dir.0.display().to_string(),
    })?;
    println!("lab: the router uses {name} again, {} ms after its start", took.as_millis());
    Ok(took.as_millis())
}
