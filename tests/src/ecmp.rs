//! Three active directors behind an ECMP router, for the scale-out tests and
//! the ECMP bench: every director runs the real agent (`lb run`) with the
//! same VIP and backends and `[announce] table = TABLE`, and a BIRD 2 that
//! learns that table and announces it over eBGP to the router; the router's
//! BIRD merges the three equal routes into one multipath route (hash over
//! the 5-tuple), so every director carries a share of the client's flows.
//!
//! ```text
//!   client .2 eth0 ── eth0 .1 router (BIRD, merge paths)
//!   10.230.0.0/24          .1 eth1 ── r0 ┐
//!   director i  .1i eth0 ──────────── di ┤ br0 (namespace "sw")
//!   backend i   .2i eth0 ──────────── bi ┘  10.231.0.0/24
//!   VIP 10.232.0.100: announced by the directors, on every backend's lo
//! ```
//!
//! Backends answer the client directly (DR) through the router. The fourth
//! backend runs from the start but is in the directors' configuration only
//! after [`EcmpLab::add_backend`]. Each director pins its fast path in a
//! bpffs of its own, so a SIGKILLed agent leaves it forwarding (and its
//! route announced) as on a real machine. Every wait is bounded; dropping
//! the lab stops the agents, the BIRDs, the servers and the bridge-side
//! programs, and deletes the namespaces and files, also when a caller fails
//! halfway.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File},
    io::{BufRead as _, BufReader, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_userspace::{fast_path::PeerPass, lab::bird};
use serde_json::Value;

use crate::{
    agent_proc::{Agent, Bpffs, Lb, TempDir, kthreads, our_namespaces, pin_napi},
    backend::{PORT, Server},
    lab as dr,
    netns::{self, Netns},
    traffic::{self, Report, Traffic},
};

/// Every namespace's first veth; the router's LAN side is [`ROUTER_LAN_IF`].
pub const IF: &str = "eth0";
const ROUTER_LAN_IF: &str = "eth1";
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 232, 0, 100);
/// The kernel routing table each agent announces its VIPs in.
pub const TABLE: u32 = 200;
pub const DIRECTORS: usize = 3;
/// Backends with a server; the last is configured only by [`EcmpLab::add_backend`].
pub const BACKENDS: usize = 4;
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 230, 0, 2);
const ROUTER_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 230, 0, 1);
const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 1);
/// Bound on any state change (an agent up, checks passing, a route moving).
pub const STATE_LIMIT: Duration = Duration::from_secs(15);

pub fn director_addr(d: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 231, 0, 11 + d as u8)
}

pub fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 231, 0, 21 + i as u8)
}

/// The name of backend `i`'s server (`b1`, ...), as connections report it.
pub fn backend_name(i: usize) -> String {
    format!("b{}", i + 1)
}

/// A BIRD running in a namespace, in the foreground as our child; killed
/// on drop.
#[derive(Debug)]
struct Bird {
    child: Child,
    socket: PathBuf,
}

impl Bird {
    fn start(ns: &Netns, dir: &std::path::Path, tag: &str, config: &str) -> anyhow::Result<Self> {
        let conf = dir.join(format!("bird-{tag}.conf"));
        let socket = dir.join(format!("bird-{tag}.ctl"));
        let pid = dir.join(format!("bird-{tag}.pid"));
        let log = dir.join(format!("bird-{tag}.log"));
        fs::write(&conf, config).with_context(|| format!("writing {}", conf.display()))?;
        let log = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = ns
            .command("bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting bird (Debian package bird2)")?;
        Ok(Self { child, socket })
    }

    /// `birdc -s SOCKET ARGS`.
    fn birdc(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = netns::run(Command::new("birdc").arg("-s").arg(&self.socket).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether every BGP session this BIRD has is established.
    fn established(&self) -> bool {
        self.birdc(&["show", "protocols"]).is_ok_and(|t| {
            let bgp: Vec<&str> = t.lines().filter(|l| l.split_whitespace().nth(1) == Some("BGP")).collect();
            !bgp.is_empty() && bgp.iter().all(|l| l.contains("Established"))
        })
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One director: its agent, BIRD, files and pins. Fields drop in order: the
/// agent (a clean stop withdraws and detaches), then BIRD, then the bpffs.
#[derive(Debug)]
pub struct Director {
    pub tag: String,
    agent: Option<Agent>,
    bird: Bird,
    pins: Bpffs,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl Director {
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.iter().rev().map(|l| format!("  {l}\n")).collect()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.agent.as_mut().and_then(Agent::exited)
    }
}

/// The lab; see the module doc. Fields drop in order: directors (agents,
/// then BIRDs), the router's BIRD, servers, bridge-side programs,
/// namespaces, the directory.
#[derive(Debug)]
pub struct EcmpLab {
    directors: Vec<Director>,
    router_bird: Bird,
    servers: Vec<Server>,
    peers: Vec<PeerPass>,
    switch: Netns,
    router: Netns,
    client: Netns,
    director_ns: Vec<Netns>,
    backend_ns: Vec<Netns>,
    dir: TempDir,
    lb: Lb,
    /// How many of [`BACKENDS`] the directors' configuration lists.
    configured: usize,
}

impl EcmpLab {
    /// The namespaces, the wiring, the backends' servers and every BIRD,
    /// with the router's sessions established; no agent yet.
    pub fn new(lb: Lb, tag: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("ecmp", tag)?;
        let switch = Netns::new("sw")?;
        let router = Netns::new("rt")?;
        let client = Netns::new("cl")?;
        let director_ns = (1..=DIRECTORS).map(|i| Netns::new(&format!("d{i}"))).collect::<anyhow::Result<Vec<_>>>()?;
        let backend_ns = (1..=BACKENDS).map(|i| Netns::new(&format!("b{i}"))).collect::<anyhow::Result<Vec<_>>>()?;
        for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"] {
            let _ = switch.sysctl(&format!("net.bridge.{key}"), "0");
        }
        let bridge = "link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0";
        switch.ip(&bridge.split(' ').collect::<Vec<_>>())?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let plug = |ns: &Netns, inner: &str, port: &str, address: Ipv4Addr| -> anyhow::Result<()> {
            netns::veth(ns, inner, &switch, port)?;
            switch.ip(&["link", "set", port, "master", "br0"])?;
            ns.ip(&["addr", "add", &format!("{address}/24"), "dev", inner])?;
            Ok(())
        };

        netns::veth(&client, IF, &router, IF)?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", IF])?;
        client.ip(&["route", "add", "default", "via", &ROUTER_CLIENT_SIDE.to_string()])?;
        router.ip(&["addr", "add", &format!("{ROUTER_CLIENT_SIDE}/24"), "dev", IF])?;
        plug(&router, ROUTER_LAN_IF, "r0", ROUTER_LAN)?;
        router.sysctl("net.ipv4.ip_forward", "1")?;
        // Policy 3 with these fields hashes each packet's addresses, protocol
        // and ports; policy 1 would reuse the hash a local socket put on the
        // skb, which veth carries across namespaces, and hide a moved flow.
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "3")?;
        router.sysctl("net.ipv4.fib_multipath_hash_fields", "0x0037")?;
        // XDP_TX loses CHECKSUM_PARTIAL: the client's stack must fill sums in.
        client.run_in(|| dr::disable_tx_checksum(IF))?;

        for (d, ns) in director_ns.iter().enumerate() {
            plug(ns, IF, &format!("d{}", d + 1), director_addr(d))?;
        }
        for (i, b) in backend_ns.iter().enumerate() {
            plug(b, IF, &format!("b{}", i + 1), backend_addr(i))?;
            b.ip(&["route", "add", "default", "via", &ROUTER_LAN.to_string()])?;
            b.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            for dev in ["all", IF] {
                b.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                b.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
            }
        }
        let servers = backend_ns
            .iter()
            .enumerate()
            .map(|(i, ns)| Server::start(ns, &backend_name(i)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // veth XDP_TX only delivers to a peer that has an XDP program.
        let peers = (1..=DIRECTORS)
            .map(|d| switch.run_in(move || Ok(PeerPass::attach(&format!("d{d}"))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;

        let addrs: Vec<Ipv4Addr> = (0..DIRECTORS).map(director_addr).collect();
        let router_bird = Bird::start(&router, &dir.path, "router", &bird::router_config(ROUTER_LAN, &addrs))?;
        let directors = director_ns
            .iter()
            .enumerate()
            .map(|(d, ns)| {
                let tag = format!("d{}", d + 1);
                let config = bird::director_config(director_addr(d), ROUTER_LAN, TABLE);
                Ok(Director {
                    bird: Bird::start(ns, &dir.path, &tag, &config)?,
                    pins: Bpffs::new(&format!("ecmp-{tag}"))?,
                    agent: None,
                    config: dir.path.join(format!("lb-{tag}.toml")),
                    socket: dir.path.join(format!("lb-{tag}.sock")),
                    log: dir.path.join(format!("agent-{tag}.log")),
                    tag,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let lab = Self {
            directors,
            router_bird,
            servers,
            peers,
            switch,
            router,
            client,
            director_ns,
            backend_ns,
            dir,
            lb,
            configured: BACKENDS - 1,
        };
        let up = netns::wait_for(STATE_LIMIT, || {
            (lab.router_bird.established() && lab.directors.iter().all(|d| d.bird.established())).then_some(())
        });
        if up.is_none() {
            let shown = lab.router_bird.birdc(&["show", "protocols"]).unwrap_or_else(|e| format!("{e:#}"));
            bail!("the router's BGP sessions did not come up within {STATE_LIMIT:?}:\n{shown}");
        }
        Ok(lab)
    }

    pub fn client(&self) -> &Netns {
        &self.client
    }

    pub fn router(&self) -> &Netns {
        &self.router
    }

    pub fn director(&self, d: usize) -> &Director {
        &self.directors[d]
    }

    /// The directors' configuration: one TCP VIP with an HTTP check, the
    /// first `backends` backends, announced in [`TABLE`].
    fn config_text(&self, d: usize, backends: usize) -> String {
        let mut text = format!(
            "[global]\ncontrol_socket = \"{}\"\n\n[announce]\ntable = {TABLE}\n\n\
             [[vip]]\naddress = \"{VIP}\"\nport = {PORT}\nprotocol = \"tcp\"\ninterface = \"{IF}\"\n\n\
             [vip.check]\ntype = \"http\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\nfall = 2\nrise = 1\n\
             delay_before_retry = \"300ms\"\nwarmup = \"100ms\"\n",
            self.directors[d].socket.display()
        );
        for i in 0..backends {
            text.push_str(&format!("\n[[vip.backend]]\naddress = \"{}\"\nweight = 1\n", backend_addr(i)));
        }
        text
    }

    /// Starts director `d`'s agent and waits until its fast path is attached
    /// and every configured backend is up; how long that took.
    pub fn start_agent(&mut self, d: usize) -> anyhow::Result<Duration> {
        ensure!(self.directors[d].agent.is_none(), "director {}'s agent is running already", self.directors[d].tag);
        let text = self.config_text(d, self.configured);
        let dirr = &self.directors[d];
        fs::write(&dirr.config, text).with_context(|| format!("writing {}", dirr.config.display()))?;
        let before = kthreads(&format!("napi/{IF}-"));
        let mut lb = self.lb.clone();
        lb.run_args.extend(["--pin-dir".into(), dirr.pins.path().join("lb").into_os_string()]);
        let agent = lb.start_agent(&self.director_ns[d], &dirr.config, &dirr.log)?;
        self.directors[d].agent = Some(agent);
        let start = Instant::now();
        let configured = self.configured;
        self.wait(d, "attached with every backend up", STATE_LIMIT, |s| {
            s["attached"].as_array().is_some_and(|a| !a.is_empty()) && up_backends(s) == configured
        })?;
        self.pin_napi(d, &before)?;
        Ok(start.elapsed())
    }

    /// The director's veth NAPI poll on CPU 0, as [`pin_napi`] explains. An
    /// agent that adopted a fast path, or attached again after a clean stop,
    /// finds threaded NAPI on: its poll thread (new or not) is one of the
    /// `napi/eth0-*` threads, all pinned to CPU 0 alike.
    fn pin_napi(&self, d: usize, before: &BTreeSet<libc::pid_t>) -> anyhow::Result<()> {
        let threaded = format!("/sys/class/net/{IF}/threaded");
        if self.director_ns[d].exec("cat", &[&threaded])?.trim() != "1" {
            return pin_napi(&self.director_ns[d], IF, before);
        }
        for pid in kthreads(&format!("napi/{IF}-")) {
            // SAFETY: a zeroed cpu_set_t is valid, CPU_SET(0) writes inside
            // it, and sched_setaffinity reads that many bytes of it.
            let rc = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set)
            };
            ensure!(rc == 0, "pinning NAPI thread {pid} to CPU 0: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Starts every director's agent, one after the other (each one's NAPI
    /// thread is told apart by starting alone), and waits until the router
    /// spreads the VIP over all of them.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for d in 0..DIRECTORS {
            self.start_agent(d)?;
        }
        self.wait_next_hops(&[0, 1, 2], STATE_LIMIT).map(drop)
    }

    /// Director `d`'s `lb status --json`.
    pub fn status(&mut self, d: usize) -> anyhow::Result<Value> {
        let dirr = &mut self.directors[d];
        ensure!(dirr.agent.is_some(), "director {} has no agent", dirr.tag);
        if let Some(st) = dirr.exited() {
            bail!("director {}'s agent exited ({st}):\n{}", dirr.tag, dirr.log_tail(30));
        }
        self.lb.status(&dirr.socket)
    }

    /// Polls director `d`'s status every 20 ms until `ready`, for at most `limit`.
    pub fn wait(
        &mut self,
        d: usize,
        what: &str,
        limit: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut last;
        loop {
            match self.status(d) {
                Ok(s) if ready(&s) => return Ok(start.elapsed()),
                Ok(s) => last = s.to_string(),
                Err(e) => {
                    last = format!("{e:#}");
                    if self.directors[d].exited().is_some() {
                        bail!("director {}: waiting for {what}: {last}", self.directors[d].tag);
                    }
                }
            }
            ensure!(
                start.elapsed() <= limit,
                "director {}: waiting for {what}: not within {limit:?}; last status: {last}",
                self.directors[d].tag
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The fast path's `tx` counter on director `d` (frames it forwarded).
    pub fn forwarded(&mut self, d: usize) -> anyhow::Result<u64> {
        let s = self.status(d)?;
        Ok(counter(&s, "tx"))
    }

    /// SIGTERM to director `d`'s agent, returning at once with the instant
    /// it was sent: the agent's decision to withdraw.
    pub fn signal_term(&mut self, d: usize) -> anyhow::Result<Instant> {
        let dirr = &mut self.directors[d];
        let agent = dirr.agent.as_mut().with_context(|| format!("director {} has no agent", dirr.tag))?;
        agent.signal(libc::SIGTERM)?;
        Ok(Instant::now())
    }

    /// Waits for director `d`'s agent to end after [`Self::signal_term`]
    /// (SIGKILL after `limit`): Ok if it stopped cleanly in time.
    pub fn reap(&mut self, d: usize, limit: Duration) -> anyhow::Result<()> {
        let dirr = &mut self.directors[d];
        let mut agent = dirr.agent.take().with_context(|| format!("director {} has no agent", dirr.tag))?;
        let (status, killed) = agent.terminate(limit)?;
        ensure!(
            status.success() && !killed,
            "director {}'s agent ended with {status} (SIGKILL needed: {killed}):\n{}",
            dirr.tag,
            dirr.log_tail(30)
        );
        Ok(())
    }

    /// A clean stop of director `d`'s agent: SIGTERM, and its exit.
    pub fn stop_agent(&mut self, d: usize) -> anyhow::Result<()> {
        self.signal_term(d)?;
        self.reap(d, STATE_LIMIT)
    }

    /// SIGKILL to director `d`'s agent, as a crash: its fast path (pinned)
    /// and its announced route stay.
    pub fn kill_agent(&mut self, d: usize) -> anyhow::Result<()> {
        let dirr = &mut self.directors[d];
        let mut agent = dirr.agent.take().with_context(|| format!("director {} has no agent", dirr.tag))?;
        agent.signal(libc::SIGKILL)?;
        let start = Instant::now();
        while agent.exited().is_none() {
            ensure!(start.elapsed() < STATE_LIMIT, "director {}'s agent outlived SIGKILL", dirr.tag);
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Adds the last backend to every running director's configuration and
    /// reloads it; returns once every one of them has it up.
    pub fn add_backend(&mut self) -> anyhow::Result<()> {
        ensure!(self.configured < BACKENDS, "every backend is configured already");
        self.configured = BACKENDS;
        for d in 0..DIRECTORS {
            if self.directors[d].agent.is_none() {
                continue;
            }
            let text = self.config_text(d, self.configured);
            let dirr = &self.directors[d];
            fs::write(&dirr.config, text).with_context(|| format!("writing {}", dirr.config.display()))?;
            let socket = dirr.socket.to_str().context("socket path")?.to_owned();
            self.lb.ok(&["reload", "--socket", &socket])?;
        }
        for d in 0..DIRECTORS {
            if self.directors[d].agent.is_some() {
                self.wait(d, "the added backend up", STATE_LIMIT, |s| up_backends(s) == BACKENDS)?;
            }
        }
        Ok(())
    }

    /// The directors (indices) the router's route to the VIP uses now.
    pub fn next_hops(&self) -> anyhow::Result<Vec<usize>> {
        let json = self.router.ip(&["-j", "route", "show", &format!("{VIP}/32")])?;
        let hops = bird::next_hops(&json)?;
        hops.iter().map(|h| director_of(*h).with_context(|| format!("next hop {h} is no director"))).collect()
    }

    /// Waits until the router's route uses exactly `directors`; how long
    /// that took.
    pub fn wait_next_hops(&self, directors: &[usize], limit: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let want: BTreeSet<usize> = directors.iter().copied().collect();
        loop {
            let now = self.next_hops()?;
            if now.iter().copied().collect::<BTreeSet<_>>() == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                let bgp = self.router_bird.birdc(&["show", "route", "all"]).unwrap_or_else(|e| format!("{e:#}"));
                bail!("the router's route uses directors {now:?}, not {directors:?}, after {limit:?}; BIRD:\n{bgp}");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Which director the router sends each of the client's connections
    /// (from `ports` to the VIP's port) to now, as its FIB answers for
    /// exactly that 5-tuple arriving from the client.
    pub fn director_of_ports(&self, ports: &[u16]) -> anyhow::Result<BTreeMap<u16, usize>> {
        let mut batch: String = ports
            .iter()
            .map(|p| format!("route get {VIP} from {CLIENT} iif {IF} ipproto tcp sport {p} dport {PORT}\n"))
            .collect();
        batch.push('\n');
        let mut child = self
            .router
            .command("ip")
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running ip -batch in the router")?;
        child.stdin.take().context("ip's stdin")?.write_all(batch.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "ip route get: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        // One answer per request, each starting with the VIP.
        let answers: Vec<&str> = text.split(&format!("{VIP} from")).skip(1).collect();
        ensure!(answers.len() == ports.len(), "{} answers to {} route requests: {text}", answers.len(), ports.len());
        ports
            .iter()
            .zip(answers)
            .map(|(&p, a)| {
                let hop = bird::via(a).with_context(|| format!("no next hop for port {p}: {a}"))?;
                Ok((p, director_of(hop).with_context(|| format!("next hop {hop} is no director"))?))
            })
            .collect()
    }

    /// The directors whose agent runs.
    pub fn running(&self) -> Vec<usize> {
        (0..DIRECTORS).filter(|&d| self.directors[d].agent.is_some()).collect()
    }

    /// Traffic from the client to the VIP, once it flows.
    pub fn start_traffic(&self, options: &traffic::Options) -> anyhow::Result<Traffic> {
        let vip = SocketAddr::new(VIP.into(), PORT);
        let t = Traffic::start(&self.client, CLIENT.into(), vip, options)?;
        let flowing = netns::wait_for(Duration::from_secs(5), || {
            let (lines, requests) = t.progress();
            (lines > 0 && requests > 0).then_some(())
        });
        ensure!(flowing.is_some(), "no traffic through the VIP within 5 s: {:?}", t.progress());
        Ok(t)
    }

    /// Watches the router's routing table from now on (see [`RouteWatch`]).
    pub fn watch_routes(&self) -> anyhow::Result<RouteWatch> {
        RouteWatch::start(&self.router)
    }

    /// Stops every agent cleanly and everything else, and checks that no
    /// namespace of this process is left.
    pub fn finish(mut self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        for d in 0..DIRECTORS {
            if self.directors[d].agent.is_some()
                && let Err(e) = self.stop_agent(d)
            {
                problems.push(format!("{e:#}"));
            }
        }
        let Self {
            directors,
            router_bird,
            servers,
            peers,
            switch,
            router,
            client,
            director_ns,
            backend_ns,
            dir,
            lb: _,
            configured: _,
        } = self;
        drop((directors, router_bird, servers, peers));
        drop((switch, router, client, director_ns, backend_ns));
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

/// Which director has `addr` on the LAN.
fn director_of(addr: IpAddr) -> Option<usize> {
    (0..DIRECTORS).find(|&d| IpAddr::V4(director_addr(d)) == addr)
}

/// Backends of the VIP whose state is `up` in a status.
pub fn up_backends(s: &Value) -> usize {
    s["vips"]
        .as_array()
        .and_then(|v| v.first())
        .and_then(|v| v["backends"].as_array())
        .map_or(0, |b| b.iter().filter(|b| b["state"] == "up").count())
}

/// One of the fast path's counters in a status (`counters` is a list of
/// `[name, value]` pairs).
pub fn counter(s: &Value, name: &str) -> u64 {
    s["counters"].as_array().and_then(|c| c.iter().find(|p| p[0] == name)).and_then(|p| p[1].as_u64()).unwrap_or(0)
}

/// The router's route changes as `ip monitor route` prints them, each
/// stamped when it was read, so a test can time when the router stopped
/// using a director without polling. The monitor is killed on drop.
#[derive(Debug)]
pub struct RouteWatch {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    router: String,
}

impl RouteWatch {
    fn start(router: &Netns) -> anyhow::Result<Self> {
        let mut child = router
            .command("ip")
            .args(["monitor", "route"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("running ip monitor route in the router")?;
        let stdout: ChildStdout = child.stdout.take().context("ip monitor's stdout")?;
        let (tx, lines) = mpsc::channel();
        thread::Builder::new()
            .name("route-watch".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            })
            .context("spawning the route watcher")?;
        let watch = Self { child, lines, router: router.name().to_owned() };
        // `ip monitor` subscribes before it prints anything; a moment for it
        // to start, then nothing seen so far counts.
        thread::sleep(Duration::from_millis(100));
        while watch.lines.try_recv().is_ok() {}
        Ok(watch)
    }

    /// When, after `since`, the router's route to the VIP stopped using
    /// director `d`: the instant the first route change was read after
    /// which the route no longer has it. Errors if that does not happen
    /// within `limit` of `since`.
    pub fn wait_without(&self, d: usize, since: Instant, limit: Duration) -> anyhow::Result<Instant> {
        let gone = || -> anyhow::Result<bool> {
            let out =
                netns::run(Command::new("ip").args(["-n", &self.router, "-j", "route", "show"]).arg(VIP.to_string()))?;
            let hops = bird::next_hops(&String::from_utf8_lossy(&out.stdout))?;
            Ok(!hops.contains(&IpAddr::V4(director_addr(d))))
        };
        let deadline = since + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // A multipath route continues on indented lines; only the
                // first line of a change is news.
                Ok((at, line)) if !line.starts_with(char::is_whitespace) => {
                    if at >= since && gone()? {
                        return Ok(at);
                    }
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the router still uses director {} after {limit:?}", d + 1)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("ip monitor route ended"),
            }
        }
    }
}

impl Drop for RouteWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The traffic of the ECMP tests and bench: 150 long-lived connections,
/// each echoing a line every 40 ms, and a request loop.
pub fn traffic_options() -> traffic::Options {
    traffic::Options {
        connections: 150,
        line_interval: Duration::from_millis(40),
        request_interval: Duration::from_millis(50),
        io_timeout: Duration::from_secs(5),
        lifetime: Duration::from_secs(90),
    }
}

/// A connection whose echoes stopped for longer than this stalled.
pub const STALL: Duration = Duration::from_secs(1);
/// Traffic before a change, and after it before the count.
const STEADY: Duration = Duration::from_secs(1);
const SETTLE: Duration = Duration::from_secs(2);

/// What the long-lived connections saw across one change of the directors.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// Connections broken (reset, or an echo that never came).
    pub resets: usize,
    /// Connections that went on but waited longer than [`STALL`] for an echo.
    pub stalls: usize,
    /// The router's director per connection before the change and after.
    pub before: BTreeMap<u16, usize>,
    pub after: BTreeMap<u16, usize>,
    /// Frames each running director's fast path forwarded in the second of
    /// traffic before the change (None: no agent).
    pub forwarded: Vec<Option<u64>>,
}

impl Outcome {
    /// Connections per director before the change.
    pub fn spread(&self) -> [usize; DIRECTORS] {
        let mut n = [0; DIRECTORS];
        for &d in self.before.values() {
            n[d] += 1;
        }
        n
    }

    /// Connections the router sends to another director after the change.
    pub fn moved(&self) -> usize {
        self.before.iter().filter(|(p, d)| self.after.get(p).is_some_and(|a| a != *d)).count()
    }

    /// `key=value` figures for a test's or the bench's summary line.
    pub fn figures(&self) -> String {
        format!(
            "resets={} stalls={} moved={} spread={:?} forwarded={:?} longest_gap_ms={} {}",
            self.resets,
            self.stalls,
            self.moved(),
            self.spread(),
            self.forwarded,
            self.report.longest_line_gap().as_millis(),
            self.report.figures()
        )
    }
}

/// Runs [`traffic_options`] traffic, lets it flow for a second, applies
/// `change`, lets things settle, and reports what the connections saw.
pub fn across(lab: &mut EcmpLab, change: impl FnOnce(&mut EcmpLab) -> anyhow::Result<()>) -> anyhow::Result<Outcome> {
    let traffic = lab.start_traffic(&traffic_options())?;
    let ports: Vec<u16> = traffic.connections().iter().map(|(p, _)| *p).collect();
    let before = lab.director_of_ports(&ports)?;
    let tx0 = forwarded_all(lab);
    thread::sleep(STEADY);
    let tx1 = forwarded_all(lab);
    let forwarded =
        tx0.iter().zip(&tx1).map(|(a, b)| Some(b.as_ref().ok()?.saturating_sub(*a.as_ref().ok()?))).collect();
    change(lab)?;
    thread::sleep(SETTLE);
    let after = lab.director_of_ports(&ports)?;
    let report = traffic.stop()?;
    let resets = report.connections_broken;
    let stalls = report.connections.iter().filter(|c| c.broken.is_none() && c.longest_gap > STALL).count();
    Ok(Outcome { report, resets, stalls, before, after, forwarded })
}

fn forwarded_all(lab: &mut EcmpLab) -> Vec<anyhow::Result<u64>> {
    (0..DIRECTORS).map(|d| lab.forwarded(d)).collect()
}

/// Director `d` leaves by a clean stop under traffic: its agent withdraws
/// the route, then detaches; the router moves its flows to the others.
pub fn leave(lab: &mut EcmpLab, d: usize) -> anyhow::Result<Outcome> {
    let others: Vec<usize> = lab.running().into_iter().filter(|&o| o != d).collect();
    across(lab, |lab| {
        lab.stop_agent(d)?;
        lab.wait_next_hops(&others, STATE_LIMIT).map(drop)
    })
}

/// Director `d` comes back under traffic: its agent announces once its
/// fast path is attached and its backends are up, and the router moves
/// some flows to it.
pub fn join(lab: &mut EcmpLab, d: usize) -> anyhow::Result<Outcome> {
    let all: Vec<usize> = lab.running().into_iter().chain([d]).collect();
    across(lab, |lab| {
        lab.start_agent(d)?;
        lab.wait_next_hops(&all, STATE_LIMIT).map(drop)
    })
}

/// From director `d`'s SIGTERM (the agent's decision to withdraw) to the
/// router's route no longer using it, as `ip monitor route` in the router
/// sees it; the agent is started again and announced afterwards.
pub fn withdraw_time(lab: &mut EcmpLab, d: usize) -> anyhow::Result<Duration> {
    let all = lab.running();
    let watch = lab.watch_routes()?;
    let sent = lab.signal_term(d)?;
    let gone = watch.wait_without(d, sent, STATE_LIMIT);
    lab.reap(d, STATE_LIMIT)?;
    let took = gone?.saturating_duration_since(sent);
    lab.start_agent(d)?;
    lab.wait_next_hops(&all, STATE_LIMIT)?;
    Ok(took)
}
