//! `tcp-half-open`: one SYN to the backend's port; a SYN-ACK is up, an RST
//! (connection refused) is down, silence is a timeout. The director's kernel
//! answers the SYN-ACK with an RST, as nothing here listens on the source
//! port, so the backend drops the half-open connection at once and its
//! application never sees it (F5's `tcp_half_open`, a SYN scan).
//!
//! A TCP connect check costs a socket, a three-way handshake, a close with
//! its FIN exchange and the epoll registration of each socket; here a check
//! is one `sendto` on a raw socket shared by every target and one datagram
//! read, which is what makes thousands of backends a second cheap.
//!
//! One [`HalfOpen`] per address family, made when the first check of that
//! family starts: a raw `IPPROTO_TCP` socket, with a classic BPF filter so it
//! is woken only for segments to our source ports, and [`SOURCE_PORTS`] TCP
//! sockets bound (not listening) to reserve those ports: no local connection
//! can take them, and a SYN-ACK to them finds no socket, so the kernel resets
//! it. Two probes in flight to the same backend port use different source
//! ports, since the backend would take the second SYN for a retransmission
//! of the first.

use std::{
    collections::HashMap,
    io,
    mem::{self, MaybeUninit},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd},
    ptr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
};

use tokio::{io::unix::AsyncFd, sync::oneshot};

use super::{AbortOnDrop, CheckResult, Phase, Progress, io_reason, lock, random_u64};

/// Source ports reserved per family: as many probes to one backend port can
/// be in flight at once.
pub(super) const SOURCE_PORTS: usize = 16;

/// The SYN we send: a 20-byte TCP header and one option, the MSS, as any
/// stack puts in a SYN (a bare SYN looks like a scan to some firewalls).
const SYN_LEN: usize = 24;
const MSS: u16 = 1460;
const WINDOW: u16 = 64240;

/// Room for the replies in flight: a few thousand at a kilobyte of kernel
/// buffer each.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// What the backend answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    SynAck,
    Reset,
}

/// A probe in flight: the backend's address and port and our source port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    addr: IpAddr,
    port: u16,
    source_port: u16,
}

struct Waiting {
    /// Which registration this is: once a reply has taken an entry out,
    /// another probe may register the same key before the first one's
    /// [`Pending`] is dropped, and that drop must leave the new entry alone.
    token: u64,
    /// The SYN's sequence number + 1: what a reply to it acknowledges.
    ack: u32,
    reply: oneshot::Sender<Reply>,
}

/// The raw socket of one family and the probes waiting on it.
pub(super) struct HalfOpen {
    shared: Arc<Shared>,
    /// Reads replies until the monitor drops this.
    _reader: AbortOnDrop,
}

impl std::fmt::Debug for HalfOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HalfOpen").field("ipv6", &self.shared.ipv6).field("ports", &self.shared.ports).finish()
    }
}

struct Shared {
    raw: AsyncFd<OwnedFd>,
    ipv6: bool,
    ports: [u16; SOURCE_PORTS],
    /// Held open for as long as the ports are used.
    _reserved: Vec<OwnedFd>,
    waiting: Mutex<HashMap<Key, Waiting>>,
    /// Spreads probes over the source ports.
    next_port: AtomicU32,
    next_token: AtomicU64,
}

/// Why a family's half-open prober could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SetupError {
    what: &'static str,
    source: io::Error,
}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> SetupError {
    move |source| SetupError { what, source }
}

impl HalfOpen {
    /// The prober of `ipv6`'s family. Needs CAP_NET_RAW and a Tokio runtime.
    pub(super) fn open(ipv6: bool) -> Result<HalfOpen, SetupError> {
        let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
        let mut reserved = Vec::with_capacity(SOURCE_PORTS);
        let mut ports = [0u16; SOURCE_PORTS];
        for port in &mut ports {
            let (fd, p) = reserve_port(family).map_err(setup("reserving a source port for half-open checks"))?;
            reserved.push(fd);
            *port = p;
        }
        let raw = socket(family, libc::SOCK_RAW, libc::IPPROTO_TCP)
            .map_err(setup("opening a raw TCP socket for half-open checks"))?;
        if ipv6 {
            // The kernel fills the checksum with the source it picks.
            setsockopt(raw.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, &16)
                .map_err(setup("IPV6_CHECKSUM on the half-open socket"))?;
        }
        attach_filter(raw.as_raw_fd(), ipv6, &ports).map_err(setup("filtering the half-open socket"))?;
        // Replies of a tick's worth of checks arrive together; a reply
        // dropped for want of room would be a timeout for its backend. FORCE
        // passes net.core.rmem_max, for root; otherwise take what we get.
        if setsockopt(raw.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RECEIVE_BUFFER).is_err() {
            let _ = setsockopt(raw.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &RECEIVE_BUFFER);
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd, which closes it only
        // when dropped, after deregistering it.
        let raw = unsafe { AsyncFd::register(raw) }
            .map_err(|e| setup("registering the half-open socket with tokio")(e.into_parts().1))?;
        let shared = Arc::new(Shared {
            raw,
            ipv6,
            ports,
            _reserved: reserved,
            waiting: Mutex::new(HashMap::new()),
            next_port: AtomicU32::new(random_u64() as u32),
            next_token: AtomicU64::new(0),
        });
        let reader = AbortOnDrop(tokio::spawn(read_replies(shared.clone())));
        Ok(HalfOpen { shared, _reader: reader })
    }

    pub(super) fn probe(&self, addr: SocketAddr) -> HalfOpenProbe {
        HalfOpenProbe {
            shared: self.shared.clone(),
            addr,
            source: Mutex::new(None),
            answered: format!("SYN-ACK from {addr}").into(),
            refused: format!("connect to {addr}: connection refused").into(),
        }
    }
}

/// The check of one backend.
pub(super) struct HalfOpenProbe {
    shared: Arc<Shared>,
    pub(super) addr: SocketAddr,
    /// The IPv4 source the route to the backend takes, for the checksum;
    /// looked up again after an attempt without a reply (the route may have
    /// changed). IPv6 leaves this to the kernel.
    source: Mutex<Option<Ipv4Addr>>,
    answered: Arc<str>,
    refused: Arc<str>,
}

impl HalfOpenProbe {
    pub(super) async fn attempt(&self, progress: &Progress) -> CheckResult {
        progress.set(Phase::SynAck);
        let seq = random_u64() as u32;
        let Some((pending, reply)) = self.shared.wait_for(self.addr, seq) else {
            return CheckResult::down(format!("{} half-open checks to {} already in flight", SOURCE_PORTS, self.addr));
        };
        let segment = match self.segment(pending.key.source_port, seq) {
            Ok(s) => s,
            Err(e) => return CheckResult::down(format!("no route to {}: {}", self.addr.ip(), io_reason(&e))),
        };
        if let Err(e) = self.shared.send(self.addr.ip(), &segment).await {
            *lock(&self.source) = None;
            return CheckResult::down(format!("sending a SYN to {}: {}", self.addr, io_reason(&e)));
        }
        let result = match reply.await {
            Ok(Reply::SynAck) => CheckResult::up(self.answered.clone()),
            Ok(Reply::Reset) => CheckResult::down(self.refused.clone()),
            Err(_) => CheckResult::down("checker shutting down"),
        };
        drop(pending);
        result
    }

    fn segment(&self, source_port: u16, seq: u32) -> io::Result<[u8; SYN_LEN]> {
        let checksum_of = match self.addr {
            SocketAddr::V4(dst) => {
                let mut source = lock(&self.source);
                let src = match *source {
                    Some(src) => src,
                    None => {
                        let src = route_source(self.addr)?;
                        *source = Some(src);
                        src
                    }
                };
                // Forgotten until a reply proves the route still holds.
                Some((src, *dst.ip()))
            }
            SocketAddr::V6(_) => None,
        };
        let mut s = syn(source_port, self.addr.port(), seq);
        if let Some((src, dst)) = checksum_of {
            let sum = checksum_v4(src, dst, &s);
            s[16..18].copy_from_slice(&sum.to_be_bytes());
        }
        Ok(s)
    }
}

/// Removes its probe from the waiting list when the attempt ends, also when
/// its timeout drops it.
struct Pending {
    shared: Arc<Shared>,
    key: Key,
    token: u64,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut waiting = lock(&self.shared.waiting);
        if waiting.get(&self.key).is_some_and(|w| w.token == self.token) {
            waiting.remove(&self.key);
        }
    }
}

impl Shared {
    /// Registers a probe of `addr` with sequence number `seq` on a source
    /// port that has no probe of `addr` in flight.
    fn wait_for(self: &Arc<Self>, addr: SocketAddr, seq: u32) -> Option<(Pending, oneshot::Receiver<Reply>)> {
        let start = self.next_port.fetch_add(1, Ordering::Relaxed) as usize;
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let mut waiting = lock(&self.waiting);
        for i in 0..SOURCE_PORTS {
            let key = Key { addr: addr.ip(), port: addr.port(), source_port: self.ports[(start + i) % SOURCE_PORTS] };
            if let std::collections::hash_map::Entry::Vacant(slot) = waiting.entry(key) {
                let (tx, rx) = oneshot::channel();
                slot.insert(Waiting { token, ack: seq.wrapping_add(1), reply: tx });
                return Some((Pending { shared: self.clone(), key, token }, rx));
            }
        }
        None
    }

    async fn send(&self, dst: IpAddr, segment: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.raw.writable().await?;
            match guard.try_io(|fd| send_to(fd.get_ref().as_raw_fd(), dst, segment)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Hands a received segment to the probe it answers, if any.
    fn deliver(&self, from: IpAddr, packet: &[u8]) {
        let Some(reply) = parse_reply(self.ipv6, packet) else { return };
        let key = Key { addr: from, port: reply.source_port, source_port: reply.dest_port };
        let mut waiting = lock(&self.waiting);
        // A reply to an earlier SYN of the same ports (after a timeout)
        // acknowledges another sequence number: not this probe's answer.
        if waiting.get(&key).is_some_and(|w| w.ack == reply.ack)
            && let Some(w) = waiting.remove(&key)
        {
            let _ = w.reply.send(reply.kind);
        }
    }
}

async fn read_replies(shared: Arc<Shared>) {
    // Headers are all we read; the rest of a segment is cut off.
    let mut buf = [0u8; 128];
    loop {
        let Ok(mut guard) = shared.raw.readable().await else { return };
        loop {
            match recv_from(shared.raw.get_ref().as_raw_fd(), &mut buf) {
                Ok((n, from)) => shared.deliver(from, &buf[..n.min(buf.len())]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                // A reply lost to a full buffer is a timeout for its probe.
                Err(_) => {}
            }
        }
    }
}

/// The parts of a segment that make it an answer to a SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ParsedReply {
    source_port: u16,
    dest_port: u16,
    ack: u32,
    kind: Reply,
}

/// An IPv4 raw socket delivers the IP header; an IPv6 one starts at TCP.
fn parse_reply(ipv6: bool, packet: &[u8]) -> Option<ParsedReply> {
    let tcp = if ipv6 {
        packet
    } else {
        let first = *packet.first()?;
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 || packet.get(9) != Some(&(libc::IPPROTO_TCP as u8)) {
            return None;
        }
        packet.get(ihl..)?
    };
    let header = tcp.get(..20)?;
    let flags = header[13];
    let kind = if flags & TCP_RST != 0 {
        Reply::Reset
    } else if flags & (TCP_SYN | TCP_ACK | TCP_FIN) == TCP_SYN | TCP_ACK {
        Reply::SynAck
    } else {
        return None;
    };
    // Only a segment that acknowledges our SYN answers it (an RST with no
    // ACK bit acknowledges nothing).
    if flags & TCP_ACK == 0 {
        return None;
    }
    Some(ParsedReply {
        source_port: u16::from_be_bytes([header[0], header[1]]),
        dest_port: u16::from_be_bytes([header[2], header[3]]),
        ack: u32::from_be_bytes([header[8], header[9], header[10], header[11]]),
        kind,
    })
}

/// A SYN with the MSS option; the checksum is left 0.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Source Port          |       Destination Port        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        Sequence Number                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Acknowledgment Number (0)                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Off=6 |  Rsrvd  |    SYN    |            Window               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Checksum            |        Urgent Pointer (0)     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Kind=2 (MSS) |   Length=4    |          MSS (1460)           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
fn syn(source_port: u16, dest_port: u16, seq: u32) -> [u8; SYN_LEN] {
    let mut s = [0u8; SYN_LEN];
    s[0..2].copy_from_slice(&source_port.to_be_bytes());
    s[2..4].copy_from_slice(&dest_port.to_be_bytes());
    s[4..8].copy_from_slice(&seq.to_be_bytes());
    s[12] = ((SYN_LEN / 4) as u8) << 4;
    s[13] = TCP_SYN;
    s[14..16].copy_from_slice(&WINDOW.to_be_bytes());
    s[20] = 2;
    s[21] = 4;
    s[22..24].copy_from_slice(&MSS.to_be_bytes());
    s
}

/// The TCP checksum over the IPv4 pseudo-header (RFC 793 section 3.1).
fn checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&lo| u32::from(lo));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, libc::IPPROTO_TCP as u8]);
    add(&(segment.len() as u16).to_be_bytes());
    add(segment);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The local address the kernel would send from to reach `dst` (a UDP
/// socket's connect sends nothing).
fn route_source(dst: SocketAddr) -> io::Result<Ipv4Addr> {
    let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    udp.connect(dst)?;
    match udp.local_addr()?.ip() {
        IpAddr::V4(src) => Ok(src),
        IpAddr::V6(_) => Err(io::Error::from(io::ErrorKind::AddrNotAvailable)),
    }
}

fn socket(family: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live T and the length passed is its size.
    let rc = unsafe { libc::setsockopt(fd, level, name, ptr::from_ref(value).cast(), mem::size_of::<T>() as u32) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A TCP socket bound to a free port of the wildcard address, and the port.
fn reserve_port(family: libc::c_int) -> io::Result<(OwnedFd, u16)> {
    let fd = socket(family, libc::SOCK_STREAM, 0)?;
    let addr = if family == libc::AF_INET6 {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    };
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), ptr::from_ref(&storage).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut bound = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut bound_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `bound` is writable for `bound_len` bytes.
    if unsafe { libc::getsockname(fd.as_raw_fd(), bound.as_mut_ptr().cast(), &raw mut bound_len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed, then filled by the kernel: valid either way.
    let bound = unsafe { bound.assume_init() };
    let port = socket_addr(&bound).map(|a| a.port()).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok((fd, port))
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { ptr::write(ptr::from_mut(&mut storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { ptr::write(ptr::from_mut(&mut storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)), u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::from((Ipv6Addr::from(sin6.sin6_addr.s6_addr), u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}

fn send_to(fd: RawFd, dst: IpAddr, segment: &[u8]) -> io::Result<()> {
    // The port of a raw socket's destination must be 0 (IPv6 takes it as
    // the protocol).
    let (storage, len) = sockaddr(SocketAddr::new(dst, 0));
    // SAFETY: `segment` is readable for its length, `storage` holds `len` bytes.
    let n = unsafe { libc::sendto(fd, segment.as_ptr().cast(), segment.len(), 0, ptr::from_ref(&storage).cast(), len) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// One datagram (cut to `buf`) and its source.
fn recv_from(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, IpAddr)> {
    let mut from = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut from_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `buf` and `from` are writable for the lengths given.
    let n = unsafe {
        libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), 0, from.as_mut_ptr().cast(), &raw mut from_len)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed, then filled by the kernel: valid either way.
    let from = unsafe { from.assume_init() };
    let from = socket_addr(&from).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok((n as usize, from.ip()))
}

/// Lets through only TCP segments to one of `ports`: a raw TCP socket is
/// otherwise handed a copy of every TCP segment the host receives.
fn attach_filter(fd: RawFd, ipv6: bool, ports: &[u16; SOURCE_PORTS]) -> io::Result<()> {
    let program = filter_program(ipv6, ports);
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

fn filter_program(ipv6: bool, ports: &[u16; SOURCE_PORTS]) -> Vec<libc::sock_filter> {
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_H_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND
    const LDX_B_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH: X = 4 * (P[k] & 0xf)
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let mut p = Vec::with_capacity(SOURCE_PORTS + 4);
    if ipv6 {
        p.push(op(LD_H_ABS, 0, 0, 2));
    } else {
        p.push(op(LDX_B_MSH, 0, 0, 0));
        p.push(op(LD_H_IND, 0, 0, 2));
    }
    // The i-th compare jumps to the accept at the end on a match.
    for (i, port) in ports.iter().enumerate() {
        let to_accept = (SOURCE_PORTS - i) as u8;
        p.push(op(JEQ_K, to_accept, 0, u32::from(*port)));
    }
    p.push(op(RET_K, 0, 0, 0));
    p.push(op(RET_K, 0, 0, u32::MAX));
    p
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;
    use crate::{
        config::CheckKind,
        health::testutil::{LOCALHOST, check, expect_event, id, monitor, target},
    };

    /// A SYN-ACK from 10.0.0.2:80 to port 40000 acknowledging 0x01020304,
    /// with its IPv4 header (5 words) as a raw socket hands it over.
    const SYN_ACK_V4: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 0, 0, 2, 10, 0, 0, 1, //
        0x00, 0x50, 0x9c, 0x40, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x02, 0x03, 0x04, 0x50, 0x12, 0xfa, 0xf0, 0, 0, 0, 0,
    ];

    #[test]
    fn syn_bytes_and_checksum() {
        let s = syn(40000, 80, 0x0102_0304);
        assert_eq!(
            s,
            [
                0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0, 0x60, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, 2, 4,
                0x05, 0xb4
            ]
        );
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut with_sum = s;
        with_sum[16..18].copy_from_slice(&checksum_v4(src, dst, &s).to_be_bytes());
        // A segment with its checksum in place sums to zero.
        assert_eq!(checksum_v4(src, dst, &with_sum), 0);
    }

    #[test]
    fn replies_are_parsed_and_everything_else_ignored() {
        let reply = parse_reply(false, &SYN_ACK_V4).unwrap();
        assert_eq!(reply, ParsedReply { source_port: 80, dest_port: 40000, ack: 0x0102_0304, kind: Reply::SynAck });
        let mut rst = SYN_ACK_V4;
        rst[33] = TCP_RST | TCP_ACK;
        assert_eq!(parse_reply(false, &rst).unwrap().kind, Reply::Reset);
        assert_eq!(parse_reply(true, &SYN_ACK_V4[20..]).unwrap().kind, Reply::SynAck);
        let mut bare_rst = SYN_ACK_V4;
        bare_rst[33] = TCP_RST;
        let mut syn_only = SYN_ACK_V4;
        syn_only[33] = TCP_SYN;
        let mut fin = SYN_ACK_V4;
        fin[33] = TCP_SYN | TCP_ACK | TCP_FIN;
        let mut udp = SYN_ACK_V4;
        udp[9] = 17;
        let mut options = SYN_ACK_V4;
        options[0] = 0x46;
        for bad in [&bare_rst[..], &syn_only, &fin, &udp, &options, &SYN_ACK_V4[..39], &[], &[0x45]] {
            assert_eq!(parse_reply(false, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_filter_accepts_only_our_ports() {
        let mut ports = [0u16; SOURCE_PORTS];
        for (i, p) in ports.iter_mut().enumerate() {
            *p = 40000 + i as u16;
        }
        for ipv6 in [false, true] {
            let prog = filter_program(ipv6, &ports);
            let n = prog.len();
            for (i, insn) in prog.iter().enumerate().filter(|(_, insn)| insn.code == 0x15) {
                assert_eq!(i + 1 + usize::from(insn.jt), n - 1, "compare {i} must jump to the accept");
            }
            assert_eq!((prog[n - 2].k, prog[n - 1].k), (0, u32::MAX));
        }
    }

    /// Accepts and drops connections until the listener's task is aborted.
    fn serve(listener: TcpListener) -> (tokio::task::JoinHandle<()>, Arc<AtomicU32>) {
        let accepted = Arc::new(AtomicU32::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                drop(stream);
            }
        });
        (task, accepted)
    }

    #[tokio::test]
    async fn up_on_syn_ack_down_on_reset_and_the_backend_never_accepts() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (server, accepted) = serve(listener);
        let mut c = check(CheckKind::TcpHalfOpen { port });
        c.fall = 2;
        let (mut monitor, mut rx) = monitor();
        monitor.start(target(1, c.clone(), false)).unwrap();
        let up = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(up.up, "{up:?}");
        assert_eq!(up.reason, format!("SYN-ACK from 127.0.0.1:{port}"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = monitor.board().get(id(1)).unwrap();
        assert!(status.checks >= 3 && status.up, "{status:?}");
        // Reset by our kernel before the handshake completed: nothing to accept.
        assert_eq!(accepted.load(Ordering::Relaxed), 0);

        server.abort();
        let _ = server.await;
        let down = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(!down.up, "{down:?}");
        assert_eq!(down.reason, format!("connect to 127.0.0.1:{port}: connection refused"));
        monitor.shutdown().await;
    }

    #[tokio::test]
    async fn many_probes_of_one_port_at_once_get_their_own_answers() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (_server, _) = serve(listener);
        let prober = HalfOpen::open(false).unwrap();
        let probe = Arc::new(prober.probe(SocketAddr::new(LOCALHOST, port)));
        let attempts: Vec<_> = (0..SOURCE_PORTS)
            .map(|_| {
                let probe = probe.clone();
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_secs(2), probe.attempt(&Progress::default())).await
                })
            })
            .collect();
        for a in attempts {
            let result = a.await.unwrap().expect("an answer within 2 s");
            assert!(result.ok, "{result:?}");
        }
        assert!(lock(&probe.shared.waiting).is_empty());
    }

    #[tokio::test]
    async fn a_finished_probe_leaves_the_next_registration_of_its_key_alone() {
        let prober = HalfOpen::open(false).unwrap();
        let addr = SocketAddr::new(LOCALHOST, 9);
        let (first, _rx) = prober.shared.wait_for(addr, 1).unwrap();
        // A reply takes the first probe's entry out before its task ends...
        lock(&prober.shared.waiting).remove(&first.key);
        // ...and another target of the same address takes the same key.
        let mut second = None;
        for _ in 0..SOURCE_PORTS {
            let (p, rx) = prober.shared.wait_for(addr, 2).unwrap();
            if p.key == first.key {
                second = Some((p, rx));
                break;
            }
        }
        let (second, _second_rx) = second.expect("the key is free again");
        drop(first);
        assert!(lock(&prober.shared.waiting).get(&second.key).is_some_and(|w| w.token == second.token));
    }

    #[tokio::test]
    async fn ipv6_up_and_refused() {
        let Ok(listener) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await else {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        let (server, _) = serve(listener);
        let prober = HalfOpen::open(true).unwrap();
        let probe = prober.probe(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port));
        let ok = tokio::time::timeout(Duration::from_secs(2), probe.attempt(&Progress::default())).await.unwrap();
        assert!(ok.ok, "{ok:?}");
        server.abort();
        let _ = server.await;
        let refused = tokio::time::timeout(Duration::from_secs(2), probe.attempt(&Progress::default())).await.unwrap();
        assert_eq!(&*refused.reason, format!("connect to [::1]:{port}: connection refused"));
    }

    #[tokio::test]
    async fn an_attempt_cut_by_its_timeout_leaves_nothing_waiting() {
        // The timeout drops the attempt while it waits for its answer.
        let prober = HalfOpen::open(false).unwrap();
        let probe = prober.probe(SocketAddr::new(LOCALHOST, 9));
        let progress = Progress::default();
        let _ = tokio::time::timeout(Duration::ZERO, probe.attempt(&progress)).await;
        assert!(lock(&probe.shared.waiting).is_empty());
    }
}
