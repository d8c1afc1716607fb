//! Two directors running the real agent (`lb run`) with VRRP, for the
//! failover test and the failover benchmark: directors A and B share a VIP
//! and its backends plus a `[[vrrp]]` instance, so the master holds the VIP
//! on its eth0 and answers ARP for it; XDP forwards on both all the time.
//!
//! ```text
//!   client     .2  eth0 ── c0 ┐
//!   director A .1  eth0 ── pa ┤
//!   director B .3  eth0 ── pb ┤ br0 (namespace "sw")
//!   backend i  .1i eth0 ── bi ┘   each backend holds the VIP on lo
//! ```
//!
//! Every wait is bounded; dropping the pair stops the agents (a frozen one
//! is continued first), the servers and the bridge-side programs, and
//! deletes the namespaces and files, also when a caller fails halfway.

use lb_userspace::netdev::Mac;
use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::ExitStatus,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_userspace::fast_path::PeerPass;
use serde_json::Value;

pub use crate::agent_proc::{Lb, our_namespaces};
use crate::{
    agent_proc::{Agent, TempDir, kthreads, pin_napi},
    backend::{PORT, Server},
    lab::{self as dr},
    netns::{self, Netns},
    traffic,
};

/// Every namespace's veth except the switch's.
pub const IF: &str = "eth0";
/// The VIP, on the master's eth0 and on every backend's lo.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 216, 0, 100);
pub const BACKENDS: usize = 3;
/// Director indices.
pub const A: usize = 0;
pub const B: usize = 1;
/// Bound on any state change (checks, election) on a loaded machine.
pub const STATE_LIMIT: Duration = Duration::from_secs(15);
/// Bridge ports of the directors, in the switch namespace.
const DIRECTOR_PORTS: [&str; 2] = ["pa", "pb"];
const DIRECTOR_TAGS: [&str; 2] = ["a", "b"];
/// Linux bridge port states (`bridge link set dev PORT state N`).
const BR_STATE_DISABLED: &str = "0";
const BR_STATE_FORWARDING: &str = "3";

/// 10.216.0.`last`.
pub fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 216, 0, last))
}

pub fn client_addr() -> IpAddr {
    addr(2)
}

pub fn director_addr(d: usize) -> IpAddr {
    addr([1, 3][d])
}

pub fn backend_addr(i: usize) -> IpAddr {
    addr(11 + i as u8)
}

/// The `[[vrrp]]` instance both directors run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vrrp {
    /// 2 or 3.
    pub version: u8,
    /// Whole seconds for v2, 10 ms steps for v3.
    pub advert_int: Duration,
}

impl Vrrp {
    pub const V3_100MS: Self = Self { version: 3, advert_int: Duration::from_millis(100) };
    pub const V2_1S: Self = Self { version: 2, advert_int: Duration::from_secs(1) };

    /// RFC 3768/5798 Skew_Time of a backup with `priority`.
    pub fn skew(self, priority: u8) -> Duration {
        self.advert_int.mul_f64(f64::from(256 - u16::from(priority)) / 256.0)
    }

    /// RFC 3768/5798 Master_Down_Interval of a backup with `priority`.
    pub fn master_down(self, priority: u8) -> Duration {
        self.advert_int * 3 + self.skew(priority)
    }
}

/// The state of VRRP instance 0 in a status.
pub fn vrrp_state(s: &Value) -> String {
    s["vrrp"][0]["state"].as_str().unwrap_or_default().to_owned()
}

/// The VIP `VIP:port/protocol` in a status.
pub fn vip<'a>(s: &'a Value, port: u16, protocol: &str) -> Option<&'a Value> {
    let name = format!("{VIP}:{port}/{protocol}");
    s["vips"].as_array()?.iter().find(|v| v["name"] == name.as_str())
}

/// A backend of the TCP VIP (port 80) in a status.
pub fn backend(s: &Value, address: IpAddr) -> Option<&Value> {
    let address = address.to_string();
    vip(s, PORT, "tcp")?["backends"].as_array()?.iter().find(|b| b["address"] == address.as_str())
}

/// Whether every backend of every VIP is up.
pub fn all_up(s: &Value) -> bool {
    s["vips"].as_array().is_some_and(|vips| {
        !vips.is_empty()
            && vips.iter().all(|v| {
                v["backends"].as_array().is_some_and(|b| b.len() == BACKENDS && b.iter().all(|b| b["state"] == "up"))
            })
    })
}

pub fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// One director: its agent and files.
#[derive(Debug)]
pub struct Director {
    pub tag: &'static str,
    agent: Option<Agent>,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    /// Set between [`DirectorPair::freeze`] and [`DirectorPair::thaw`].
    frozen: bool,
}

impl Director {
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.iter().rev().map(|l| format!("  {l}\n")).collect()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.agent.as_mut().and_then(Agent::exited)
    }
}

/// What the directors serve besides the TCP VIP on port 80.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Names the temporary directory.
    pub tag: &'static str,
    /// A UDP VIP on this port too, with no health check.
    pub udp_port: Option<u16>,
}

/// Fields drop in order: agents first (they detach their XDP and drop the
/// VIP), then servers, the bridge-side pass programs, the namespaces and
/// the directory.
#[derive(Debug)]
pub struct DirectorPair {
    directors: Vec<Director>,
    servers: Vec<Server>,
    peers: Vec<PeerPass>,
    switch: Netns,
    client: Netns,
    director_ns: Vec<Netns>,
    backends: Vec<Netns>,
    dir: TempDir,
    lb: Lb,
    options: Options,
}

impl DirectorPair {
    /// The namespaces, the bridge, the backends' HTTP servers; no agent yet.
    pub fn new(lb: Lb, options: Options) -> anyhow::Result<Self> {
        let dir = TempDir::new("director-pair", options.tag)?;
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
        let plug = |ns: &Netns, port: &str, address: IpAddr| -> anyhow::Result<()> {
            netns::veth(ns, IF, &switch, port)?;
            switch.ip(&["link", "set", port, "master", "br0"])?;
            ns.ip(&["addr", "add", &format!("{address}/24"), "dev", IF])?;
            Ok(())
        };
        plug(&client, "c0", client_addr())?;
        for (d, ns) in director_ns.iter().enumerate() {
            plug(ns, DIRECTOR_PORTS[d], director_addr(d))?;
        }
        for (i, b) in backends.iter().enumerate() {
            plug(b, &format!("b{}", i + 1), backend_addr(i))?;
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
        // veth XDP_TX only delivers to a peer that has an XDP program.
        let peers = DIRECTOR_PORTS
            .iter()
            .map(|p| switch.run_in(|| Ok(PeerPass::attach(p)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let directors = DIRECTOR_TAGS
            .into_iter()
            .map(|tag| Director {
                tag,
                agent: None,
                config: dir.path.join(format!("lb-{tag}.toml")),
                socket: dir.path.join(format!("lb-{tag}.sock")),
                log: dir.path.join(format!("agent-{tag}.log")),
                frozen: false,
            })
            .collect();
        Ok(Self { directors, servers, peers, switch, client, director_ns, backends, dir, lb, options })
    }

    pub fn director(&self, d: usize) -> &Director {
        &self.directors[d]
    }

    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// Traffic from the client to the VIP (long-lived connections and a
    /// loop of requests), once it flows.
    pub fn start_traffic(&self, options: &traffic::Options) -> anyhow::Result<traffic::Traffic> {
        let vip = std::net::SocketAddr::new(VIP.into(), PORT);
        let t = traffic::Traffic::start(&self.client, client_addr(), vip, options)?;
        let flowing = netns::wait_for(Duration::from_secs(5), || {
            let (lines, requests) = t.progress();
            (lines > 0 && requests > 0).then_some(())
        });
        ensure!(flowing.is_some(), "no traffic through the VIP within 5 s: {:?}", t.progress());
        Ok(t)
    }

    /// Director `d`'s namespace, for a program other than the agent (a
    /// keepalived peer).
    pub fn director_ns(&self, d: usize) -> &Netns {
        &self.director_ns[d]
    }

    /// The pair's temporary directory, removed on drop.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir.path
    }

    pub fn backend_ns(&self, i: usize) -> &Netns {
        &self.backends[i]
    }

    /// Director `d`'s MAC, as `ip neigh` prints it.
    pub fn mac(&self, d: usize) -> anyhow::Result<String> {
        Ok(Mac(netns::mac_of(&self.director_ns[d], IF)?).to_string())
    }

    fn config_text(&self, priority: u8, vrrp: Vrrp) -> String {
        let mut text = format!(
            "[[vip]]\naddress = \"{VIP}\"\nport = {PORT}\nprotocol = \"tcp\"\n\
             interface = \"{IF}\"\n\n[vip.check]\ntype = \"http\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
             fall = 2\nrise = 1\ndelay_before_retry = \"300ms\"\nwarmup = \"100ms\"\n",
        );
        let backends: String = (0..BACKENDS)
            .map(|i| format!("\n[[vip.backend]]\naddress = \"{}\"\nweight = 1\n", backend_addr(i)))
            .collect();
        text.push_str(&backends);
        if let Some(port) = self.options.udp_port {
            text.push_str(&format!(
                "\n[[vip]]\naddress = \"{VIP}\"\nport = {port}\nprotocol = \"udp\"\ninterface = \"{IF}\"\n\n\
                 [vip.check]\ntype = \"none\"\n"
            ));
            text.push_str(&backends);
        }
        text.push_str(&format!(
            "\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"{IF}\"\nversion = {}\nvirtual_router_id = 61\n\
             priority = {priority}\nadvert_int = \"{}ms\"\nvirtual_ipaddress = [\"{VIP}/24\"]\n\
             garp_master_delay = \"500ms\"\ngarp_master_repeat = 1\n",
            vrrp.version,
            vrrp.advert_int.as_millis(),
        ));
        text
    }

    /// Starts director `d`'s agent, waits for its control socket with XDP
    /// attached, and pins its veth's NAPI thread to CPU 0; how long it took.
    pub fn start_agent(&mut self, d: usize, priority: u8, vrrp: Vrrp) -> anyhow::Result<Duration> {
        let text = self.config_text(priority, vrrp);
        self.start_agent_with(d, &text)
    }

    /// [`Self::start_agent`] with a configuration of the caller's; its
    /// `[global]` table gets the director's control socket.
    pub fn start_agent_with(&mut self, d: usize, config: &str) -> anyhow::Result<Duration> {
        ensure!(self.directors[d].agent.is_none(), "director {}'s agent is running already", self.directors[d].tag);
        let socket = format!("control_socket = \"{}\"\n", self.directors[d].socket.display());
        let text = match config.find("[global]\n") {
            Some(at) => format!("{}{socket}{}", &config[..at + "[global]\n".len()], &config[at + "[global]\n".len()..]),
            None => format!("[global]\n{socket}\n{config}"),
        };
        let dirr = &self.directors[d];
        fs::write(&dirr.config, text).with_context(|| format!("writing {}", dirr.config.display()))?;
        let before = kthreads(&format!("napi/{IF}-"));
        let agent = self.lb.start_agent(&self.director_ns[d], &dirr.config, &dirr.log)?;
        let dirr = &mut self.directors[d];
        dirr.agent = Some(agent);
        let start = Instant::now();
        loop {
            if let Ok(s) = self.lb.status(&dirr.socket)
                && s["attached"].as_array().is_some_and(|a| !a.is_empty())
            {
                break;
            }
            if let Some(st) = dirr.exited() {
                bail!("director {}'s agent exited ({st}):\n{}", dirr.tag, dirr.log_tail(40));
            }
            ensure!(start.elapsed() < STATE_LIMIT, "director {}'s agent did not attach in time", dirr.tag);
            thread::sleep(Duration::from_millis(50));
        }
        pin_napi(&self.director_ns[d], IF, &before)?;
        Ok(start.elapsed())
    }

    /// Whether director `d` has an agent that has not exited.
    pub fn running(&mut self, d: usize) -> bool {
        self.directors[d].agent.is_some() && self.directors[d].exited().is_none()
    }

    /// Director `d`'s `lb status --json`.
    pub fn status(&mut self, d: usize) -> anyhow::Result<Value> {
        let dirr = &mut self.directors[d];
        ensure!(dirr.agent.is_some(), "director {} has no agent", dirr.tag);
        if let Some(st) = dirr.exited() {
            bail!("director {}'s agent exited ({st})", dirr.tag);
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
                    if !self.running(d) {
                        bail!("waiting for {what}: {last}");
                    }
                }
            }
            ensure!(start.elapsed() <= limit, "waiting for {what}: not within {limit:?}; last status: {last}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends director `d`'s agent SIGTERM and returns at once.
    pub fn signal_term(&mut self, d: usize) -> anyhow::Result<()> {
        let dirr = &mut self.directors[d];
        dirr.agent.as_mut().with_context(|| format!("director {} has no agent", dirr.tag))?.signal(libc::SIGTERM)
    }

    /// Stops director `d`'s agent (SIGTERM, up to `limit`, then SIGKILL):
    /// its exit status and whether SIGKILL was needed.
    /// A frozen director gets its link back first.
    pub fn terminate(&mut self, d: usize, limit: Duration) -> anyhow::Result<(ExitStatus, bool)> {
        if self.directors[d].frozen {
            self.port_state(d, BR_STATE_FORWARDING)?;
            self.directors[d].frozen = false;
        }
        let dirr = &mut self.directors[d];
        let mut agent = dirr.agent.take().with_context(|| format!("director {} has no agent", dirr.tag))?;
        agent.terminate(limit)
    }

    /// Freezes director `d` as a hung machine would be: SIGSTOP its agent
    /// and at once cut it off the link (its bridge port disabled, so
    /// neither its XDP program's frames nor its kernel's get through, while
    /// its own link stays up as a frozen machine's would). Stopping only the
    /// agent would leave its XDP program forwarding and its VIP answering.
    /// Returns when both are done.
    pub fn freeze(&mut self, d: usize) -> anyhow::Result<()> {
        let dirr = &mut self.directors[d];
        ensure!(!dirr.frozen, "director {} is frozen already", dirr.tag);
        dirr.agent.as_mut().with_context(|| format!("director {} has no agent", dirr.tag))?.signal(libc::SIGSTOP)?;
        dirr.frozen = true;
        self.port_state(d, BR_STATE_DISABLED)
    }

    /// Undoes [`Self::freeze`]: the link back, then SIGCONT.
    pub fn thaw(&mut self, d: usize) -> anyhow::Result<()> {
        self.port_state(d, BR_STATE_FORWARDING)?;
        let dirr = &mut self.directors[d];
        dirr.agent.as_mut().with_context(|| format!("director {} has no agent", dirr.tag))?.signal(libc::SIGCONT)?;
        dirr.frozen = false;
        Ok(())
    }

    fn port_state(&self, d: usize, state: &str) -> anyhow::Result<()> {
        let port = DIRECTOR_PORTS[d];
        // `ip link set ... type bridge_slave state` leaves a port forwarding
        // (iproute2 6.1 on kernel 6.18); `bridge link` sets it.
        self.switch
            .exec("bridge", &["link", "set", "dev", port, "state", state])
            .with_context(|| format!("setting bridge port {port} to state {state}"))?;
        let shown = self.switch.ip(&["-d", "link", "show", "dev", port])?;
        let want = if state == BR_STATE_DISABLED { "state disabled" } else { "state forwarding" };
        ensure!(shown.contains(want), "bridge port {port} is not in {want}: {shown}");
        Ok(())
    }

    /// The MAC the client's neighbour table has for the VIP.
    pub fn client_neighbour(&self) -> Option<String> {
        let out = self.client.ip(&["neigh", "show", &VIP.to_string(), "dev", IF]).ok()?;
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return words.next().map(str::to_owned);
            }
        }
        None
    }

    /// Forgets the client's neighbour entry for the VIP, so its next packet
    /// asks by ARP (and the master answers).
    pub fn flush_client_neighbour(&self) -> anyhow::Result<()> {
        self.client.ip(&["neigh", "flush", "to", &VIP.to_string(), "dev", IF])?;
        Ok(())
    }

    /// Stops everything and checks that no namespace of this process is left.
    pub fn finish(mut self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        for d in 0..self.directors.len() {
            if self.directors[d].agent.is_none() {
                continue;
            }
            let tag = self.directors[d].tag;
            match self.terminate(d, Duration::from_secs(10)) {
                Ok((st, false)) if st.success() => {}
                Ok((st, killed)) => {
                    problems.push(format!("director {tag}'s agent ended with {st} (SIGKILL: {killed})"));
                }
                Err(e) => problems.push(format!("stopping director {tag}: {e:#}")),
            }
        }
        let Self { directors: _, servers, peers, switch, client, director_ns, backends, dir, lb: _, options: _ } = self;
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

/// What the chaos tests need to reach one agent directly.
impl DirectorPair {
    /// Director `d`'s agent's pid, while it runs.
    pub fn agent_pid(&self, d: usize) -> Option<libc::pid_t> {
        self.directors[d].agent.as_ref().map(Agent::pid)
    }

    /// How the agents are run, to change between two starts.
    pub fn lb_mut(&mut self) -> &mut Lb {
        &mut self.lb
    }

    /// Director `d`'s configuration file (written by [`Self::start_agent`]).
    pub fn config_path(&self, d: usize) -> &std::path::Path {
        &self.directors[d].config
    }

    /// Director `d`'s control socket.
    pub fn socket_path(&self, d: usize) -> &std::path::Path {
        &self.directors[d].socket
    }

    /// Director `d`'s agent log, of its latest start.
    pub fn log_path(&self, d: usize) -> &std::path::Path {
        &self.directors[d].log
    }
}
