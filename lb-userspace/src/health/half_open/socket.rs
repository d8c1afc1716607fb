//! The sockets of half-open checks, one set per address family: a raw
//! `IPPROTO_TCP` socket to send SYNs and read the replies, filtered to our
//! source ports, and [`SOURCE_PORTS`] TCP sockets bound (not listening) to
//! reserve those ports: no local connection can take them, and a SYN-ACK to
//! one finds no socket, so the kernel answers it with an RST and the
//! backend drops the half-open connection.

use std::{
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, OwnedFd},
    ptr,
};

use tokio::{io::unix::AsyncFd, net::TcpSocket};

use super::packet::{CHECKSUM_OFFSET, SYN_LEN, filter_program};
use crate::sock::{setsockopt, sockaddr, socket, socket_addr};

/// Why half-open checks could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SetupError {
    what: &'static str,
    source: io::Error,
}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> SetupError {
    move |source| SetupError { what, source }
}

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
    _reserved: Vec<TcpSocket>,
}

impl RawSocket {
    /// Needs CAP_NET_RAW and a Tokio runtime.
    pub(super) fn open(ipv6: bool) -> Result<RawSocket, SetupError> {
        let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
        let mut reserved = Vec::with_capacity(SOURCE_PORTS);
        let mut ports = [0u16; SOURCE_PORTS];
        for port in &mut ports {
            let (socket, p) = reserve_port(ipv6).map_err(setup("reserving a source port"))?;
            reserved.push(socket);
            *port = p;
        }
        let raw = socket(family, libc::SOCK_RAW, libc::IPPROTO_TCP).map_err(setup("opening a raw TCP socket"))?;
        let fd = raw.as_raw_fd();
        if ipv6 {
            // The kernel fills in the checksum with the source it picks.
            setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, &(CHECKSUM_OFFSET as libc::c_int))
                .map_err(setup("IPV6_CHECKSUM"))?;
        }
        let program = filter_program(ipv6, &ports);
        let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog).map_err(setup("SO_ATTACH_FILTER"))?;
        // FORCE passes net.core.rmem_max, for root; otherwise take what we get.
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RECEIVE_BUFFER).is_err() {
            let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RECEIVE_BUFFER);
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd, which closes it only
        // when dropped, after deregistering it.
        let fd = unsafe { AsyncFd::register(raw) }.map_err(|e| setup("registering with tokio")(e.into_parts().1))?;
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

/// A TCP socket bound (not listening) to a free port of the wildcard
/// address, and the port. Without SO_REUSEADDR nothing else can bind it.
fn reserve_port(ipv6: bool) -> io::Result<(TcpSocket, u16)> {
    let (socket, any) = if ipv6 {
        (TcpSocket::new_v6()?, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
    } else {
        (TcpSocket::new_v4()?, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    };
    socket.bind(any)?;
    let port = socket.local_addr()?.port();
    Ok((socket, port))
}
