//! The validated configuration of VIPs, backends and health checks: plain
//! typed data, every default applied. Nothing here can hold a value that
//! validation would refuse, except by building it by hand.

use std::{net::IpAddr, ops::RangeInclusive, path::PathBuf, time::Duration};

use serde::Deserialize;

/// The `[global]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    /// Flow-table entries per CPU.
    pub flows_per_cpu: u32,
    /// Flood guard: flow-table inserts per second per CPU; 0 = off.
    pub max_new_flows_per_sec: u32,
    /// Who script checks run as when a check names no `user`.
    pub script_user: String,
    pub control_socket: PathBuf,
    /// VIPs the ring array is sized for (two ring regions each).
    pub max_vips: u32,
    /// Where the fast path is pinned in bpffs so that it outlives the
    /// agent (`<pin_dir>/<layout>/`).
    pub pin_dir: PathBuf,
    /// Where the HTTP listener (`/metrics`, `/status.json`, the status
    /// page) listens; `None` turns it off.
    pub metrics: Option<std::net::SocketAddr>,
}

/// One virtual service (a `[[vip]]` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub address: IpAddr,
    /// 0 = every port of (`address`, `protocol`).
    pub port: u16,
    pub protocol: Protocol,
    /// The interface the fast path is attached to for this VIP.
    pub interface: String,
    /// Where `interface` was written, for `Config::check_interfaces`.
    pub interface_at: Position,
    /// Maglev ring slots; a prime.
    pub ring_size: u32,
    pub hash: HashMode,
    /// This VIP receives the IP fragments sent to (`address`, `protocol`).
    pub fragments: bool,
    /// Live weight (sum of the weights of healthy backends) needed to serve.
    pub quorum: u64,
    /// Quorum is lost below `quorum - hysteresis` and regained at
    /// `quorum + hysteresis`, so a flapping backend does not flap the VIP.
    pub hysteresis: u64,
    /// Receives every new flow while quorum is lost.
    pub sorry_server: Option<IpAddr>,
    pub backends: Vec<Backend>,
    /// Whether the agent puts this VIP's route in the `[announce]` table
    /// while it can serve it; always false without `[announce]`.
    pub announce: bool,
}

/// The `[announce]` table: the agent keeps one route per VIP it can serve
/// in a kernel routing table of its own, which a BGP daemon (BIRD, FRR)
/// exports to the routers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announce {
    /// The kernel routing table the agent owns; nothing else may write it.
    pub table: u32,
    /// The routes' metric (`RTA_PRIORITY`): BIRD reads it as `krt_metric`,
    /// FRR's zebra as the route's metric; a daemon can filter on it.
    pub metric: u32,
}

/// One real server (a `[[vip.backend]]` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Same family as the VIP's. In DR mode the backend receives packets for
    /// the VIP's own address and port: there is no backend port.
    pub address: IpAddr,
    /// 0..=[`MAX_WEIGHT`]. 0 = drain: no new flows, established flows stay.
    pub weight: u32,
    /// `None`: no checker; the backend is always up (as in keepalived).
    pub check: Option<Check>,
    /// On failure set the weight to 0 (drain) instead of removing the backend,
    /// so established flows keep going to it.
    pub inhibit_on_failure: bool,
}

/// Largest backend weight. Weights are relative; a million leaves room for
/// fine ratios while the Maglev weighting arithmetic stays far from overflow.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// A 1-based line and character column in the configuration file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lb_common::proto::TCP,
            Protocol::Udp => lb_common::proto::UDP,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// What the Maglev hash is computed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
pub enum HashMode {
    /// Addresses, ports and protocol.
    #[default]
    #[serde(rename = "5tuple")]
    FiveTuple,
    /// The client's address only: every connection of a client goes to one
    /// backend (LVS's `persistence_timeout`, without the timeout).
    #[serde(rename = "source-ip")]
    SourceIp,
}

/// A health check with its timing, after inheritance and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    /// Time between checks (keepalived's `delay_loop`).
    pub interval: Duration,
    /// Per attempt (keepalived's `connect_timeout`).
    pub timeout: Duration,
    /// Consecutive failures before the backend is down (keepalived's `retry` + 1).
    pub fall: u32,
    /// Consecutive successes before it is up again.
    pub rise: u32,
    /// Pause before retrying after a failure, while not yet down.
    pub delay_before_retry: Duration,
    /// The first check runs after a random delay in `0..warmup`, so checks of
    /// many backends do not start in lockstep.
    pub warmup: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connect to `port`.
    Tcp {
        port: u16,
    },
    /// A SYN to `port`: up on a SYN-ACK, down on an RST; the director's
    /// kernel resets the half-open connection. No socket, no handshake to
    /// finish or close: the cheapest check for thousands of backends.
    TcpHalfOpen {
        port: u16,
    },
    Http(HttpCheck),
    Https {
        http: HttpCheck,
        tls: Tls,
    },
    Udp(UdpCheck),
    Dns(DnsCheck),
    Script(ScriptCheck),
}

impl CheckKind {
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::TcpHalfOpen { .. } => "tcp-half-open",
            CheckKind::Http(_) => "http",
            CheckKind::Https { .. } => "https",
            CheckKind::Udp(_) => "udp",
            CheckKind::Dns(_) => "dns",
            CheckKind::Script(_) => "script",
        }
    }
}

/// A `GET` request; up when the status is in `status` and the body matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    pub port: u16,
    pub path: String,
    /// The `Host` header (keepalived's `virtualhost`); the backend's address when `None`.
    pub host: Option<String>,
    pub status: StatusCodes,
    pub body: BodyMatch,
}

/// Expected HTTP status codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCodes {
    pub ranges: Vec<RangeInclusive<u16>>,
}

impl StatusCodes {
    pub fn contains(&self, code: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(&code))
    }
}

impl Default for StatusCodes {
    /// keepalived's default: any 2xx.
    fn default() -> Self {
        StatusCodes { ranges: vec![200..=299] }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BodyMatch {
    #[default]
    Any,
    /// The body contains this text.
    Contains(String),
    /// MD5 of the whole body (keepalived's `digest`).
    Md5([u8; 16]),
}

/// TLS options of an `https` check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// Server name sent in the handshake; none when `None`.
    pub sni: Option<String>,
    /// Verify the certificate chain, and that it names `sni` (or the
    /// backend's address without `sni`). Off by default, as in keepalived's
    /// `SSL_GET`: backends often carry self-signed certificates.
    pub verify: bool,
}

/// Send one datagram; up when a reply arrives that contains `expect` (any
/// reply when `expect` is `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpCheck {
    pub port: u16,
    pub payload: Vec<u8>,
    pub expect: Option<Vec<u8>>,
}

/// One query (recursion desired, class IN) over UDP, as keepalived's
/// DNS_CHECK: up on a reply with the query's id and RCODE NOERROR, whatever
/// its answers; down on any other RCODE, an ICMP error or the timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsCheck {
    pub port: u16,
    pub query_type: DnsType,
    /// Without the trailing dot; "" is the root.
    pub query_name: String,
}

/// The query types keepalived's DNS_CHECK knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsType {
    A,
    Ns,
    Cname,
    Soa,
    Mx,
    Txt,
    Aaaa,
}

impl DnsType {
    pub const ALL: [DnsType; 7] =
        [DnsType::A, DnsType::Ns, DnsType::Cname, DnsType::Soa, DnsType::Mx, DnsType::Txt, DnsType::Aaaa];

    /// The QTYPE on the wire (RFC 1035, RFC 3596).
    pub fn code(self) -> u16 {
        match self {
            DnsType::A => 1,
            DnsType::Ns => 2,
            DnsType::Cname => 5,
            DnsType::Soa => 6,
            DnsType::Mx => 15,
            DnsType::Txt => 16,
            DnsType::Aaaa => 28,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DnsType::A => "A",
            DnsType::Ns => "NS",
            DnsType::Cname => "CNAME",
            DnsType::Soa => "SOA",
            DnsType::Mx => "MX",
            DnsType::Txt => "TXT",
            DnsType::Aaaa => "AAAA",
        }
    }

    /// By name, in any case (keepalived compares without case).
    pub fn from_name(name: &str) -> Option<DnsType> {
        DnsType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// Run a program: exit 0 = up, 1 = down; with `dynamic_weight`, exit
/// 2..=255 = up with weight `status - 2` (keepalived's `misc_dynamic`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptCheck {
    pub command: ScriptCommand,
    pub user: String,
    pub dynamic_weight: bool,
    /// Where `command` was written, for `Config::check_scripts`.
    pub command_at: Position,
}

impl ScriptCommand {
    /// The program that is executed: `argv[0]`, or `/bin/sh` for a shell line.
    pub fn program(&self) -> &str {
        match self {
            ScriptCommand::Argv(argv) => argv.first().map_or("", String::as_str),
            ScriptCommand::Shell(_) => "/bin/sh",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptCommand {
    /// Executed directly; `argv[0]` is an absolute path.
    Argv(Vec<String>),
    /// Run as `/bin/sh -c` with this string (`shell = true`).
    Shell(String),
}
