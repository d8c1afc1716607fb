//! The fast path's packet trace, userspace side: which packets to trace
//! (`lb run --trace [VIP]`), the globals of a traced load, and its records,
//! read back through aya-log.
//!
//! The trace is a program of its own, `lb_xdp_traced`, which the agent
//! loads instead of `lb_xdp` when started with `--trace`; `lb_xdp` has no
//! trace code, so the trace costs nothing when off. aya-log-ebpf 0.2 gates
//! each statement on `AYA_LOG_LEVEL`, a read-only global set at load, and the
//! verifier removes a statement the level turns off; but the removed
//! statement still keeps what it would log alive across the fast path,
//! which costs spills there (measured: about 200 more instructions and 40%
//! more stack accesses in `lb_xdp` as the kernel ran it). Hence two
//! programs.
//!
//! So a second process cannot switch the trace on in a running agent
//! (aya-log could read the running program's ring, found by program id,
//! but `lb_xdp` writes nothing to it): the agent is started with the trace,
//! and logs the records itself.
//!
//! The filter runs in the program, not here: records of other VIPs would
//! otherwise crowd the one asked about out of the 128 KiB ring, and each
//! would cost the fast path a record it then throws away.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd as _,
    str::FromStr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::{Ebpf, EbpfLoader};
use aya_log::EbpfLogger;
use lb_common::{Stat, names, proto, trace as wire, trace::Lookup};

/// The log target of the records the agent logs.
pub const TARGET: &str = "lb::trace";
/// How often the reader thread looks whether it should stop.
const STOP_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{input:?} is not a VIP: ADDR, ADDR:PORT or [ADDR]:PORT, optionally followed by /tcp or /udp")]
    BadVip { input: String },
    #[error("reading the trace from the fast path: {0}")]
    Logger(#[from] aya_log::Error),
    #[error("a trace record this agent cannot read: {message:?}")]
    BadRecord { message: String },
    #[error("starting the trace reader: {0}")]
    Thread(std::io::Error),
}

/// Which packets get a record: those to an address, further narrowed by
/// port and protocol when given. The default takes every packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
    pub proto: Option<u8>,
}

impl Filter {
    /// The filter as the program's `TRACE_FILTER` global holds it.
    pub fn to_wire(&self) -> wire::Filter {
        wire::Filter {
            addr: match self.addr {
                None => [0; 4],
                Some(IpAddr::V4(a)) => lb_common::v4_mapped(u32::from_ne_bytes(a.octets())),
                Some(IpAddr::V6(a)) => bytemuck::cast(a.octets()),
            },
            port: self.port.map_or(0, u16::to_be),
            proto: self.proto.unwrap_or(0),
            _pad: 0,
        }
    }
}

impl FromStr for Filter {
    type Err = TraceError;

    /// `ADDR`, `ADDR:PORT` or `[ADDR]:PORT`, each optionally followed by
    /// `/tcp` or `/udp`.
    fn from_str(input: &str) -> Result<Self, TraceError> {
        let bad = || TraceError::BadVip { input: input.to_owned() };
        let (target, proto) = match input.rsplit_once('/') {
            Some((target, "tcp")) => (target, Some(proto::TCP)),
            Some((target, "udp")) => (target, Some(proto::UDP)),
            Some(_) => return Err(bad()),
            None => (input, None),
        };
        let (addr, port) = match (target.parse::<IpAddr>(), target.parse::<SocketAddr>()) {
            (Ok(addr), _) => (addr, None),
            (_, Ok(sa)) if sa.port() != 0 => (sa.ip(), Some(sa.port())),
            _ => return Err(bad()),
        };
        Ok(Self { addr: Some(addr.to_canonical()), port, proto })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (None, _) => f.write_str("every packet")?,
            (Some(addr), None) => write!(f, "{addr}")?,
            (Some(addr), Some(port)) => write!(f, "{}", SocketAddr::new(addr, port))?,
        }
        match self.proto {
            Some(p) => write!(f, "/{}", proto_name(p)),
            None => Ok(()),
        }
    }
}

fn proto_name(p: u8) -> String {
    match p {
        proto::TCP => "tcp".to_owned(),
        proto::UDP => "udp".to_owned(),
        other => other.to_string(),
    }
}

/// The program's globals for a load with the trace (`Some`) or without.
/// The loader borrows them: keep them until it has loaded the object.
#[derive(Debug)]
pub struct Globals {
    filter: wire::Filter,
    log_level: u8,
}

impl Globals {
    pub fn new(trace: Option<&Filter>) -> Self {
        match trace {
            Some(filter) => Self { filter: filter.to_wire(), log_level: aya_log::Level::Info as u8 },
            // aya-log's switch off, so that a log statement of the
            // untraced program stays off too.
            None => Self { filter: wire::Filter::ANY, log_level: 0 },
        }
    }

    pub fn apply<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader.override_global(names::TRACE_FILTER, &self.filter, true).override_global(
            aya_log::LEVEL,
            &self.log_level,
            true,
        );
    }
}

/// One record: what the fast path decided for a packet, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// None for a packet whose headers did not parse.
    pub packet: Option<Packet>,
    /// The verdict's reason.
    pub reason: Stat,
}

/// A traced packet's flow (client side first; for an ICMP error, the flow
/// it is about) and where its backend came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: u8,
    pub lookup: Lookup,
    /// The VIP's index in the fast path's tables, when it found one.
    pub vip_index: Option<u32>,
    /// Backend id and MAC, when one was chosen.
    pub backend: Option<(u32, [u8; 6])>,
}

/// The fast path's "none" for indexes.
const NONE: u32 = u32::MAX;

impl Record {
    /// Parses the text of a record as aya-log formats it (`key=value ...`,
    /// the format in lb-ebpf's `trace.rs`).
    pub fn parse(message: &str) -> Result<Self, TraceError> {
        let bad = || TraceError::BadRecord { message: message.to_owned() };
        let fields: Vec<(&str, &str)> =
            message.split_whitespace().map(|kv| kv.split_once('=').ok_or_else(bad)).collect::<Result<_, _>>()?;
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).ok_or_else(bad);
        let num = |key: &str| get(key)?.parse::<u32>().map_err(|_| bad());
        let reason = num("reason")?;
        let reason = Stat::ALL.into_iter().find(|s| *s as u32 == reason).ok_or_else(bad)?;
        if fields.len() == 1 {
            return Ok(Self { packet: None, reason });
        }
        let addr = |key: &str| get(key)?.parse::<Ipv6Addr>().map(|a| a.to_canonical()).map_err(|_| bad());
        let port = |key: &str| get(key)?.parse::<u16>().map_err(|_| bad());
        let lookup = num("lookup")?;
        let lookup = Lookup::ALL.into_iter().find(|l| *l as u32 == lookup).ok_or_else(bad)?;
        let some = |n: u32| (n != NONE).then_some(n);
        let backend = match some(num("backend")?) {
            Some(id) => Some((id, get("mac")?.parse::<crate::netdev::Mac>().map_err(|_| bad())?.0)),
            None => None,
        };
        Ok(Self {
            packet: Some(Packet {
                src: SocketAddr::new(addr("src")?, port("sport")?),
                dst: SocketAddr::new(addr("dst")?, port("dport")?),
                proto: u8::try_from(num("proto")?).map_err(|_| bad())?,
                lookup,
                vip_index: some(num("vip")?),
                backend,
            }),
            reason,
        })
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason.name();
        let Some(p) = &self.packet else {
            return write!(f, "{reason}: headers did not parse");
        };
        write!(f, "{reason}: {} -> {}/{} flow={}", p.src, p.dst, proto_name(p.proto), p.lookup.name())?;
        if let Some(i) = p.vip_index {
            write!(f, " vip_index={i}")?;
        }
        if let Some((id, m)) = p.backend {
            write!(f, " backend={id} mac={}", crate::netdev::Mac(m))?;
        }
        Ok(())
    }
}

/// aya-log hands each record to a `log::Log`; this one keeps their text.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

impl Collect {
    fn take(&self) -> Vec<String> {
        // A push is one statement: a panic elsewhere leaves the list whole.
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl log::Log for Collect {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(record.args().to_string());
    }

    fn flush(&self) {}
}

/// Reads the records of a program loaded with the trace.
pub struct Reader {
    logger: EbpfLogger<Collect>,
    collected: Collect,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reader")
    }
}

impl Reader {
    /// Takes the record ring out of `ebpf`: one reader per program.
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, TraceError> {
        let collected = Collect::default();
        let logger = EbpfLogger::init_with_logger(ebpf, collected.clone())?;
        Ok(Self { logger, collected })
    }

    /// The records written since the last call, oldest first.
    pub fn read(&mut self) -> Vec<Result<Record, TraceError>> {
        self.logger.flush();
        self.collected.take().iter().map(|m| Record::parse(m)).collect()
    }

    /// Waits at most `timeout` for records; whether there are any.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut fd = libc::pollfd { fd: self.logger.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fd` is one valid pollfd that outlives the call; the
        // ring's descriptor stays open while `self` lives.
        unsafe { libc::poll(&mut fd, 1, ms) > 0 }
    }
}

/// Logs every record of a traced program (target [`TARGET`], level info)
/// from a thread of its own, until dropped.
pub struct Printer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Printer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Printer")
    }
}

impl Printer {
    pub fn start(ebpf: &mut Ebpf, filter: &Filter) -> Result<Self, TraceError> {
        let mut reader = Reader::new(ebpf)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("lb-trace".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    if !reader.wait(STOP_POLL) {
                        continue;
                    }
                    for record in reader.read() {
                        match record {
                            Ok(r) => tracing::info!(target: TARGET, "{r}"),
                            Err(e) => tracing::warn!(target: TARGET, "{e}"),
                        }
                    }
                }
            })
            .map_err(TraceError::Thread)?;
        tracing::info!(target: TARGET, "packet trace on: {filter}");
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_print_back() {
        for (input, shown) in [
            ("10.0.0.100", "10.0.0.100"),
            ("10.0.0.100:80", "10.0.0.100:80"),
            ("10.0.0.100:80/tcp", "10.0.0.100:80/tcp"),
            ("10.0.0.100/udp", "10.0.0.100/udp"),
            ("fd00::100", "fd00::100"),
            ("[fd00::100]:443/tcp", "[fd00::100]:443/tcp"),
            ("::ffff:10.0.0.100", "10.0.0.100"),
        ] {
            assert_eq!(input.parse::<Filter>().unwrap().to_string(), shown, "{input}");
        }
        assert_eq!(Filter::default().to_string(), "every packet");
        for bad in ["", "vip", "10.0.0.100:", "10.0.0.100:0", "10.0.0.100:80/sctp", "10.0.0.300", "fd00::100:443/tcp:"]
        {
            assert!(matches!(bad.parse::<Filter>(), Err(TraceError::BadVip { .. })), "{bad:?}");
        }
    }

    #[test]
    fn the_program_sees_the_filter_as_a_vip_key() {
        let f: Filter = "10.0.0.100:80/tcp".parse().unwrap();
        let vip = lb_common::v4_mapped(u32::from_ne_bytes([10, 0, 0, 100]));
        let w = f.to_wire();
        assert_eq!(w, wire::Filter { addr: vip, port: 80u16.to_be(), proto: proto::TCP, _pad: 0 });
        assert!(w.matches(&vip, 80u16.to_be(), proto::TCP));
        assert!(!w.matches(&vip, 80u16.to_be(), proto::UDP));
        assert_eq!(Filter::default().to_wire(), wire::Filter::ANY);
        let v6: Filter = "fd00::100".parse().unwrap();
        let octets = "fd00::100".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(v6.to_wire().addr, bytemuck::cast::<[u8; 16], [u32; 4]>(octets));
    }

    #[test]
    fn records_parse_from_the_programs_text() {
        let hit = "src=::ffff:10.1.0.7 sport=40000 dst=::ffff:10.0.0.100 dport=80 proto=17 lookup=1 vip=0 \
                   backend=3 mac=02:00:00:00:b0:03 reason=3";
        let r = Record::parse(hit).unwrap();
        assert_eq!(
            r,
            Record {
                packet: Some(Packet {
                    src: "10.1.0.7:40000".parse().unwrap(),
                    dst: "10.0.0.100:80".parse().unwrap(),
                    proto: proto::UDP,
                    lookup: Lookup::Hit,
                    vip_index: Some(0),
                    backend: Some((3, [2, 0, 0, 0, 0xb0, 3])),
                }),
                reason: Stat::Tx,
            }
        );
        assert_eq!(
            r.to_string(),
            "tx: 10.1.0.7:40000 -> 10.0.0.100:80/udp flow=hit vip_index=0 backend=3 mac=02:00:00:00:b0:03"
        );
        let not_vip = "src=fd00:1::7 sport=1 dst=fd00::200 dport=443 proto=6 lookup=0 vip=4294967295 \
                       backend=4294967295 mac=00:00:00:00:00:00 reason=1";
        assert_eq!(
            Record::parse(not_vip).unwrap().to_string(),
            "pass_not_vip: [fd00:1::7]:1 -> [fd00::200]:443/tcp flow=skipped"
        );
        assert_eq!(Record::parse("reason=5").unwrap().to_string(), "drop_malformed: headers did not parse");
        for bad in ["", "reason=99", "reason=3 src=x", "src=10.1.0.7 reason=3 sport=1", "garbage"] {
            assert!(matches!(Record::parse(bad), Err(TraceError::BadRecord { .. })), "{bad:?}");
        }
    }
}
