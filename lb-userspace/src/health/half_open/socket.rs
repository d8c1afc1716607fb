//! The sockets of half-open checks, one set per address family: a raw
//! `IPPROTO_TCP` socket to send SYNs and read the replies, filtered to our
//! source ports, and [`SOURCE_PORTS`] TCP sockets bound (not listening) to
//! reserve those ports: no local connection can take them, and a SYN-ACK to
//! one finds no socket, so the kernel answers it with an RST and the
//! backend drops the half-open connection.

use std::{
    io,
    mem::{self, MaybeUninit},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd},
    ptr,
};

use tokio::io::unix::AsyncFd;

use super::packet::{CHECKSUM_OFFSET, SYN_LEN, filter_program};

/// The most segments one `sendmmsg` or `recvmmsg` takes (the kernel's
/// UIO_MAXIOV).
pub(super) const MAX_BATCH: usize = 1024;

/// Source ports reserved per family: as many probes to one backend port can
/// be in flight at once (the backend would take a second SYN from the same
/// port for a retransmission of the first).
pub(super) const SOURCE_PORTS: usize = 16;

/// Room for the replies in flight: thousands, at about a kilobyte of kernel
/// buffer each. A reply dropped for want of room is a timeout.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

#[derive(Debug)]
pub(super) struct RawSocket {
    pub fd: AsyncFd<OwnedFd>,
    pub ipv6: bool,
    pub ports: [u16; SOURCE_PORTS],
    /// Held open for as long as the ports are used.
    _reserved: Vec<OwnedFd>,
}

impl RawSocket {
    /// Needs CAP_NET_RAW and a Tokio runtime.
    pub(super) fn open(ipv6: bool) -> Result<RawSocket, (&'static str, io::Error)> {
        let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
        let mut reserved = Vec::with_capacity(SOURCE_PORTS);
        let mut ports = [0u16; SOURCE_PORTS];
        for port in &mut ports {
            let (fd, p) = reserve_port(family).map_err(|e| ("reserving a source port", e))?;
            reserved.push(fd);
            *port = p;
        }
        let raw = socket(family, libc::SOCK_RAW, libc::IPPROTO_TCP).map_err(|e| ("opening a raw TCP socket", e))?;
        let fd = raw.as_raw_fd();
        if ipv6 {
            // The kernel fills in the checksum with the source it picks.
            setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, &(CHECKSUM_OFFSET as libc::c_int))
                .map_err(|e| ("IPV6_CHECKSUM", e))?;
        }
        let program = filter_program(ipv6, &ports);
        let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog).map_err(|e| ("SO_ATTACH_FILTER", e))?;
        // FORCE passes net.core.rmem_max, for root; otherwise take what we get.
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RECEIVE_BUFFER).is_err() {
            let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RECEIVE_BUFFER);
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd, which closes it only
        // when dropped, after deregistering it.
        let fd = unsafe { AsyncFd::register(raw) }.map_err(|e| ("registering with tokio", e.into_parts().1))?;
        Ok(RawSocket { fd, ipv6, ports, _reserved: reserved })
    }

    /// Sends one segment; `WouldBlock` when the send buffer is full.
    pub(super) fn send_to(&self, dst: IpAddr, segment: &[u8]) -> io::Result<()> {
        // The port of a raw socket's destination must be 0 (IPv6 reads it
        // as the protocol).
        let (storage, len) = sockaddr(SocketAddr::new(dst, 0));
        // SAFETY: `segment` is readable for its length, `storage` holds `len` bytes.
        let n = unsafe {
            libc::sendto(
                self.fd.get_ref().as_raw_fd(),
                segment.as_ptr().cast(),
                segment.len(),
                0,
                ptr::from_ref(&storage).cast(),
                len,
            )
        };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Sends `segments` (destination, bytes) with as few system calls as
    /// the kernel allows: `Ok(n)` when the first `n` went out and the next
    /// one failed or the batch ended; the error when the first one failed.
    pub(super) fn send_batch(&self, segments: &[(IpAddr, [u8; SYN_LEN])]) -> io::Result<usize> {
        let names: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
            segments.iter().map(|(dst, _)| sockaddr(SocketAddr::new(*dst, 0))).collect();
        let mut iovs: Vec<libc::iovec> = segments
            .iter()
            .map(|(_, bytes)| libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = names
            .iter()
            .zip(iovs.iter_mut())
            .map(|((name, len), iov)| {
                // SAFETY: a zeroed msghdr is a valid empty one.
                let mut msg: libc::msghdr = unsafe { mem::zeroed() };
                msg.msg_name = ptr::from_ref(name).cast_mut().cast();
                msg.msg_namelen = *len;
                msg.msg_iov = ptr::from_mut(iov);
                msg.msg_iovlen = 1;
                libc::mmsghdr { msg_hdr: msg, msg_len: 0 }
            })
            .collect();
        let mut sent = 0;
        while sent < headers.len() {
            let batch = &mut headers[sent..];
            let count = batch.len().min(MAX_BATCH) as libc::c_uint;
            // SAFETY: every header points into `names` and `iovs`, and every
            // iovec into `segments`, all alive until the call returns.
            let n = unsafe { libc::sendmmsg(self.fd.get_ref().as_raw_fd(), batch.as_mut_ptr(), count, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if sent == 0 { Err(e) } else { Ok(sent) };
            }
            sent += n as usize;
            if (n as libc::c_uint) < count {
                break;
            }
        }
        Ok(sent)
    }

    /// Reads up to [`MAX_BATCH`] datagrams, each cut to `SLOT` bytes, in one
    /// system call; calls `each` with every one and its source. `WouldBlock`
    /// when there were none.
    pub(super) fn recv_batch(&self, mut each: impl FnMut(&[u8], IpAddr)) -> io::Result<usize> {
        const SLOT: usize = 128;
        const COUNT: usize = 64;
        let mut bufs = [[0u8; SLOT]; COUNT];
        // SAFETY: all-zero sockaddr_storage values are valid.
        let mut names: [libc::sockaddr_storage; COUNT] = unsafe { mem::zeroed() };
        let mut iovs: Vec<libc::iovec> =
            bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: SLOT }).collect();
        let mut headers: Vec<libc::mmsghdr> = names
            .iter_mut()
            .zip(iovs.iter_mut())
            .map(|(name, iov)| {
                // SAFETY: a zeroed msghdr is a valid empty one.
                let mut msg: libc::msghdr = unsafe { mem::zeroed() };
                msg.msg_name = ptr::from_mut(name).cast();
                msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                msg.msg_iov = ptr::from_mut(iov);
                msg.msg_iovlen = 1;
                libc::mmsghdr { msg_hdr: msg, msg_len: 0 }
            })
            .collect();
        // SAFETY: every header points at a live name and iovec, each iovec at
        // a live buffer of SLOT bytes.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.get_ref().as_raw_fd(),
                headers.as_mut_ptr(),
                COUNT as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, header) in headers.iter().take(n).enumerate() {
            let len = (header.msg_len as usize).min(SLOT);
            if let Some(from) = socket_addr(&names[i]) {
                each(&bufs[i][..len], from.ip());
            }
        }
        Ok(n)
    }
}

/// The local address the kernel would send from to reach `dst` (a UDP
/// socket's connect sends nothing).
pub(super) fn route_source(dst: SocketAddr) -> io::Result<Ipv4Addr> {
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
