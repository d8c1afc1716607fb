//! A one-armed direct-routing lab in network namespaces, for end-to-end
//! tests: real TCP from a client, through the XDP director, to backends
//! that answer the client themselves.
//!
//! ```text
//!   client    .2  eth0 ── c0 ┐
//!   director  .1  eth0 ── d0 ┤ br0 (namespace "sw")
//!   backend i .1i eth0 ── bi ┘   each backend holds the VIP on lo
//! ```
//!
//! The client reaches the VIP through a permanent neighbour entry that
//! points at the director's MAC, as if the director answered ARP/ND for it;
//! the director itself never holds the VIP, so only the XDP program can
//! get a client's packet to a backend.

use lb_userspace::netdev::Mac;
use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lb_userspace::fast_path::{FastPath, FastPathOptions, PeerPass};

use crate::netns::{self, Netns};

/// The interface name of every namespace's veth except the switch's.
pub const IF: &str = "eth0";
/// The director's port on the bridge.
pub const DIRECTOR_PORT: &str = "d0";

/// Addresses of one lab; all on one on-link prefix.
#[derive(Clone, Debug)]
pub struct Addrs {
    pub client: IpAddr,
    pub director: IpAddr,
    pub vip: IpAddr,
    pub backends: Vec<IpAddr>,
    pub prefix_len: u8,
}

impl Addrs {
    /// 10.210.0.0/24: client .2, director .1, VIP .100, backends .11 on.
    pub fn v4(backends: u8) -> Self {
        let a = |last| IpAddr::V4(Ipv4Addr::new(10, 210, 0, last));
        Self {
            client: a(2),
            director: a(1),
            vip: a(100),
            backends: (0..backends).map(|i| a(11 + i)).collect(),
            prefix_len: 24,
        }
    }

    /// fd00:210::/64, numbered as in [`Addrs::v4`].
    pub fn v6(backends: u8) -> Self {
        let a = |last: u16| IpAddr::V6(Ipv6Addr::new(0xfd00, 0x210, 0, 0, 0, 0, 0, last));
        Self {
            client: a(2),
            director: a(1),
            vip: a(0x100),
            backends: (0..u16::from(backends)).map(|i| a(0x11 + i)).collect(),
            prefix_len: 64,
        }
    }
}

/// The namespaces and wiring; everything is deleted on drop.
#[derive(Debug)]
pub struct DrLab {
    pub addrs: Addrs,
    pub switch: Netns,
    pub client: Netns,
    pub director: Netns,
    pub backends: Vec<Netns>,
    pub director_mac: [u8; 6],
    pub backend_macs: Vec<[u8; 6]>,
}

impl DrLab {
    pub fn new(addrs: Addrs) -> anyhow::Result<Self> {
        let switch = Netns::new("sw")?;
        let client = Netns::new("cl")?;
        let director = Netns::new("dir")?;
        let backends =
            (1..=addrs.backends.len()).map(|i| Netns::new(&format!("b{i}"))).collect::<anyhow::Result<Vec<_>>>()?;

        // Tentative addresses are unusable as sources for about a second;
        // nothing in a lab can collide, so skip DAD. Must precede the veths,
        // which take the namespace's defaults when created.
        for ns in [&client, &director].into_iter().chain(&backends) {
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        }
        // With br_netfilter loaded, bridged frames would cross this
        // namespace's iptables; the lab wants a plain switch. Absent when the
        // module is not loaded, which is just as good.
        for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"] {
            let _ = switch.sysctl(&format!("net.bridge.{key}"), "0");
        }
        // No STP, no forward delay: ports forward as soon as they are up.
        // No multicast snooping: ND must be flooded without an MLD querier.
        let bridge = "link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0";
        switch.ip(&bridge.split(' ').collect::<Vec<_>>())?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let plug = |ns: &Netns, port: &str| -> anyhow::Result<()> {
            netns::veth(ns, IF, &switch, port)?;
            switch.ip(&["link", "set", port, "master", "br0"])?;
            Ok(())
        };
        plug(&client, "c0")?;
        plug(&director, DIRECTOR_PORT)?;
        for (i, b) in backends.iter().enumerate() {
            plug(b, &format!("b{}", i + 1))?;
        }

        let cidr = |a: IpAddr| format!("{a}/{}", addrs.prefix_len);
        let family = if addrs.vip.is_ipv4() { "-4" } else { "-6" };
        let add_addr = |ns: &Netns, addr: String, dev: &str| -> anyhow::Result<()> {
            let mut args = vec![family, "addr", "add", &addr, "dev", dev];
            if family == "-6" {
                args.push("nodad");
            }
            ns.ip(&args).map(drop)
        };
        add_addr(&client, cidr(addrs.client), IF)?;
        add_addr(&director, cidr(addrs.director), IF)?;
        let host_len = if addrs.vip.is_ipv4() { 32 } else { 128 };
        for (b, &addr) in backends.iter().zip(&addrs.backends) {
            add_addr(b, cidr(addr), IF)?;
            add_addr(b, format!("{}/{host_len}", addrs.vip), "lo")?;
            // DR: the VIP on lo must not be announced or answered for on
            // the wire, or the client would bypass the director.
            for dev in ["all", IF] {
                b.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                b.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
            }
        }

        // veth never completes a checksum the stack left to "hardware": the
        // frame carries a partial sum and a flag saying so. XDP_TX turns the
        // frame into a bare xdp_frame, the flag is lost, and the backend
        // drops the segment (TcpInCsumErrors). A real NIC fills the sum in on
        // the wire; here the client's stack must.
        client.run_in(|| disable_tx_checksum(IF))?;

        let director_mac = netns::mac_of(&director, IF)?;
        let backend_macs = backends.iter().map(|b| netns::mac_of(b, IF)).collect::<anyhow::Result<Vec<_>>>()?;
        client.ip(&[
            family,
            "neigh",
            "add",
            &addrs.vip.to_string(),
            "lladdr",
            &Mac(director_mac).to_string(),
            "dev",
            IF,
            "nud",
            "permanent",
        ])?;
        Ok(Self { addrs, switch, client, director, backends, director_mac, backend_macs })
    }

    /// Loads the balancer and attaches it to the director's interface, from
    /// inside the director's namespace (attach resolves the interface and
    /// its MAC there).
    pub fn attach_director(&self, opts: FastPathOptions) -> anyhow::Result<FastPath> {
        self.director.run_in(move || {
            let mut dp = FastPath::load(opts).context("loading the balancer")?;
            let mode = dp.attach(IF).context("attaching the balancer")?;
            log::debug!("director attached in {mode:?} mode");
            Ok(dp)
        })
    }

    /// A trivial XDP program on the bridge side of the director's veth.
    /// veth's XDP_TX hands frames to the peer's XDP receive path, which only
    /// exists while the peer has a program of its own: without one GRO takes
    /// the first 256 frames and every later XDP_TX is dropped. The program is
    /// detached when the returned value is dropped.
    pub fn attach_peer_pass(&self) -> anyhow::Result<PeerPass> {
        self.switch.run_in(|| Ok(PeerPass::attach(DIRECTOR_PORT)?))
    }

    /// Starts a [`NameServer`] on VIP:`port` in every backend, answering
    /// `b1`, `b2`, ... The listeners exist when this returns.
    pub fn start_name_servers(&self, port: u16) -> anyhow::Result<Vec<NameServer>> {
        let vip = SocketAddr::new(self.addrs.vip, port);
        self.backends.iter().enumerate().map(|(i, ns)| NameServer::start(ns, vip, &format!("b{}", i + 1))).collect()
    }
}

/// `ethtool -K IFACE tx off` in the calling thread's namespace, without
/// needing the ethtool binary.
pub fn disable_tx_checksum(iface: &str) -> anyhow::Result<()> {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    if iface.len() >= libc::IFNAMSIZ {
        bail!("interface name {iface} too long");
    }
    // SAFETY: plain socket creation; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket for SIOCETHTOOL");
    }
    // SAFETY: fd was just returned by socket() and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut value = EthtoolValue { cmd: ETHTOOL_STXCSUM, data: 0 };
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: SIOCETHTOOL reads the NUL-terminated name and the ethtool_value
    // that ifru_data points at, both alive for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut req) } < 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("turning off tx checksumming on {iface}"));
    }
    Ok(())
}

/// A TCP server that answers every connection with its name and a newline,
/// then closes. Stops (and is joined) on drop.
#[derive(Debug)]
pub struct NameServer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
}

/// A server outlives no test by more than this, even if nobody stops it.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

impl NameServer {
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str) -> anyhow::Result<Self> {
        // The socket belongs to the namespace it was created in, so only the
        // bind needs to happen there; serving can be done from any thread.
        let listener = ns.run_in(move || {
            let l = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })?;
        let reply = format!("{name}\n").into_bytes();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(format!("serve-{name}"))
            .spawn(move || serve(&listener, &reply, &flag))
            .context("spawning a server thread")?;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops the server; returns how many connections it answered.
    pub fn stop(mut self) -> u64 {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn serve(listener: &TcpListener, reply: &[u8], stop: &AtomicBool) -> u64 {
    let deadline = Instant::now() + SERVER_LIFETIME;
    let mut served = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        // Wait for a connection, but wake often enough to notice `stop`.
        let _ = poll_fd(listener.as_raw_fd(), libc::POLLIN, Duration::from_millis(20));
        while let Ok((mut s, _)) = listener.accept() {
            let _ = s.set_nonblocking(false);
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            if s.write_all(reply).is_ok() {
                served += 1;
            }
        }
    }
    served
}

/// Waits up to `timeout` for `events` on `fd`; Ok(false) on timeout.
fn poll_fd(fd: i32, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: one valid pollfd, and the count says one.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        match n {
            0 => return Ok(false),
            n if n > 0 => return Ok(true),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted || left.is_zero() {
                    return Err(e);
                }
            }
        }
    }
}

/// Connects from a chosen local address and port (std cannot bind before
/// connecting), giving up after `timeout`. Call it on a thread inside the
/// namespace that owns `local`.
pub fn connect_from(local: SocketAddr, remote: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let domain = if remote.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket creation; the fd is owned right below.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (sa, len) = sockaddr(local);
    // SAFETY: `sa` is a sockaddr of `len` valid bytes for this family.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (sa, len) = sockaddr(remote);
    // SAFETY: as for bind.
    if unsafe { libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), len) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        if !poll_fd(fd.as_raw_fd(), libc::POLLOUT, timeout)? {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
    }
    let stream = TcpStream::from(fd);
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Connects from `local`, reads the whole answer, and returns it trimmed.
pub fn ask(local: SocketAddr, remote: SocketAddr, timeout: Duration) -> io::Result<String> {
    let mut s = connect_from(local, remote, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer.trim().to_owned())
}

/// One counter of the namespace's `/proc/net/snmp` (`"Ip"`, `"InReceives"`)
/// or `/proc/net/snmp6` (`""`, `"Ip6InReceives"`).
pub fn snmp(ns: &Netns, table: &str, field: &str) -> anyhow::Result<u64> {
    if table.is_empty() {
        let text = ns.exec("cat", &["/proc/net/snmp6"])?;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some(field) {
                return Ok(words.next().context("snmp6 line without a value")?.parse()?);
            }
        }
        bail!("{field} not in /proc/net/snmp6");
    }
    // Pairs of lines: "Ip: Forwarding DefaultTTL ..." then "Ip: 2 64 ...".
    let text = ns.exec("cat", &["/proc/net/snmp"])?;
    let prefix = format!("{table}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if let Some(i) = names.split_whitespace().position(|n| n == field) {
            return Ok(values.split_whitespace().nth(i).context("short snmp line")?.parse()?);
        }
    }
    bail!("{table}:{field} not in /proc/net/snmp");
}
