//! Raw sockets for IP protocol 112, one per instance, made in the calling
//! thread's network namespace (a socket keeps the namespace it was made in).
//!
//! - IPv4: `socket(AF_INET, SOCK_RAW, 112)` without `IP_HDRINCL`. Received
//!   packets come with their IP header, which gives the TTL, source and
//!   destination. TTL 255 (unicast and multicast), TOS 0xc0 (network
//!   control, as keepalived), bound to the interface, no multicast loopback,
//!   and only the groups this socket joined (`IP_MULTICAST_ALL` off).
//! - IPv6: `socket(AF_INET6, SOCK_RAW, 112)` with `IPV6_CHECKSUM` at offset 6,
//!   so the kernel fills and verifies the checksum with the pseudo-header
//!   (an advert with a bad checksum never reaches us: it is not counted),
//!   hop limit 255, and the hop limit and destination of each packet
//!   delivered as ancillary data.
//!
//! Each socket carries a [`filter`](super::filter) on the VRID, so that it
//! is not woken for the adverts of the other instances on its interface.
//!
//! The advert source is set per packet with `IP_PKTINFO` / `IPV6_PKTINFO`
//! rather than `bind()`: a raw socket bound to an address would no longer
//! receive packets sent to the multicast group.

use std::{
    ffi::CString,
    io,
    mem::{self, MaybeUninit},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, OwnedFd, RawFd},
    ptr,
};

use super::{
    filter::{self, Layout},
    packet::{IP_PROTO_VRRP, TTL},
    receive::IpHeader,
};
use crate::sock::setsockopt;

/// Traffic class / TOS of adverts: DSCP CS6 (network control), as keepalived sends.
pub const TOS_NETWORK_CONTROL: libc::c_int = 0xc0;

/// A raw VRRP socket on one interface.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: OwnedFd,
    ipv6: bool,
    ifindex: u32,
}

/// What came with a received advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvInfo {
    pub header: IpHeader,
    /// Where the VRRP message is in the buffer (after the IPv4 header).
    pub offset: usize,
    /// Its length.
    pub len: usize,
}

impl AsRawFd for VrrpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn with_op(op: &'static str) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{op}: {e}"))
}

/// Binds `fd` to the interface `ifname` (SO_BINDTODEVICE).
pub(crate) fn bind_to_device(fd: RawFd, ifname: &str) -> io::Result<()> {
    let name = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = name.as_bytes_with_nul();
    // SAFETY: the option value is the NUL-terminated name, `bytes.len()` long.
    let rc = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, bytes.as_ptr().cast(), bytes.len() as u32)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn raw_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    crate::sock::socket(family, libc::SOCK_RAW, libc::c_int::from(IP_PROTO_VRRP))
}

impl VrrpSocket {
    /// An IPv4 socket on `ifname`; joins `group` when given (multicast mode).
    pub fn open_v4(ifname: &str, ifindex: u32, group: Option<Ipv4Addr>) -> io::Result<Self> {
        let fd = raw_socket(libc::AF_INET).map_err(with_op("socket(AF_INET, SOCK_RAW, 112)"))?;
        let raw = fd.as_raw_fd();
        bind_to_device(raw, ifname).map_err(with_op("SO_BINDTODEVICE"))?;
        let ttl = libc::c_int::from(TTL);
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_TTL, &ttl).map_err(with_op("IP_TTL"))?;
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &ttl).map_err(with_op("IP_MULTICAST_TTL"))?;
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_TOS, &TOS_NETWORK_CONTROL).map_err(with_op("IP_TOS"))?;
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &0 as &libc::c_int)
            .map_err(with_op("IP_MULTICAST_LOOP"))?;
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, &0 as &libc::c_int)
            .map_err(with_op("IP_MULTICAST_ALL"))?;
        let mreqn = |group: Ipv4Addr| libc::ip_mreqn {
            imr_multiaddr: libc::in_addr { s_addr: u32::from(group).to_be() },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: ifindex as libc::c_int,
        };
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn(Ipv4Addr::UNSPECIFIED))
            .map_err(with_op("IP_MULTICAST_IF"))?;
        if let Some(group) = group {
            setsockopt(raw, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreqn(group))
                .map_err(with_op("IP_ADD_MEMBERSHIP"))?;
        }
        Ok(Self { fd, ipv6: false, ifindex })
    }

    /// An IPv6 socket on `ifname`; joins `group` when given (multicast mode).
    pub fn open_v6(ifname: &str, ifindex: u32, group: Option<Ipv6Addr>) -> io::Result<Self> {
        let fd = raw_socket(libc::AF_INET6).map_err(with_op("socket(AF_INET6, SOCK_RAW, 112)"))?;
        let raw = fd.as_raw_fd();
        bind_to_device(raw, ifname).map_err(with_op("SO_BINDTODEVICE"))?;
        let offset: libc::c_int = super::packet::CHECKSUM_OFFSET as libc::c_int;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, &offset).map_err(with_op("IPV6_CHECKSUM"))?;
        let hops = libc::c_int::from(TTL);
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &hops).map_err(with_op("IPV6_UNICAST_HOPS"))?;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &hops)
            .map_err(with_op("IPV6_MULTICAST_HOPS"))?;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &TOS_NETWORK_CONTROL).map_err(with_op("IPV6_TCLASS"))?;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &0 as &libc::c_int)
            .map_err(with_op("IPV6_MULTICAST_LOOP"))?;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_ALL, &0 as &libc::c_int)
            .map_err(with_op("IPV6_MULTICAST_ALL"))?;
        let index = ifindex as libc::c_int;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &index).map_err(with_op("IPV6_MULTICAST_IF"))?;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &1 as &libc::c_int)
            .map_err(with_op("IPV6_RECVHOPLIMIT"))?;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &1 as &libc::c_int)
            .map_err(with_op("IPV6_RECVPKTINFO"))?;
        if let Some(group) = group {
            let mreq = libc::ipv6_mreq {
                ipv6mr_multiaddr: libc::in6_addr { s6_addr: group.octets() },
                ipv6mr_interface: ifindex,
            };
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)
                .map_err(with_op("IPV6_ADD_MEMBERSHIP"))?;
        }
        Ok(Self { fd, ipv6: true, ifindex })
    }

    /// Lets through only adverts for `mine` or for none of `others` (the
    /// VRIDs of the other instances on the interface and family), replacing
    /// the filter set before. On error the previous filter (or none) stays.
    pub fn filter_vrids(&self, mine: u8, others: &[u8]) -> io::Result<()> {
        let layout = if self.ipv6 { Layout::Ipv6 } else { Layout::Ipv4 };
        let mut prog = filter::program(layout, mine, others);
        let len = u16::try_from(prog.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let fprog = libc::sock_fprog { len, filter: prog.as_mut_ptr() };
        // The kernel copies the program during the call.
        setsockopt(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
            .map_err(with_op("SO_ATTACH_FILTER"))
    }

    /// Sends one VRRP message from `src` to `dst`. Non-blocking: a full
    /// queue is `WouldBlock`.
    pub fn send(&self, src: IpAddr, dst: IpAddr, payload: &[u8]) -> io::Result<()> {
        let mut iov = libc::iovec { iov_base: payload.as_ptr().cast_mut().cast(), iov_len: payload.len() };
        // Aligned storage for one cmsg of either family.
        let mut control = [0u64; 8];
        // SAFETY: an all-zero msghdr is a valid empty header (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        // SAFETY: an all-zero sockaddr_in is valid (AF_UNSPEC, address 0), filled in below.
        let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
        // SAFETY: likewise for sockaddr_in6.
        let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
        let (level, kind, data_len) = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(dst)) if !self.ipv6 => {
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr = libc::in_addr { s_addr: u32::from(dst).to_be() };
                msg.msg_name = (&raw mut sin).cast();
                msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as u32;
                (libc::IPPROTO_IP, libc::IP_PKTINFO, mem::size_of::<libc::in_pktinfo>())
            }
            (IpAddr::V6(_), IpAddr::V6(dst)) if self.ipv6 => {
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr = libc::in6_addr { s6_addr: dst.octets() };
                sin6.sin6_scope_id = self.ifindex;
                msg.msg_name = (&raw mut sin6).cast();
                msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as u32;
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, mem::size_of::<libc::in6_pktinfo>())
            }
            _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "address family does not match the socket")),
        };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len as u32) } as usize;
        debug_assert!(msg.msg_controllen <= mem::size_of_val(&control));
        // SAFETY: msg_control points to `control`, large enough for one cmsg
        // of `data_len` bytes (checked above); CMSG_FIRSTHDR returns a
        // pointer into it, and the data written is exactly `data_len` bytes.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = level;
            (*cmsg).cmsg_type = kind;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len as u32) as usize;
            match src {
                IpAddr::V4(src) => {
                    let info = libc::in_pktinfo {
                        ipi_ifindex: self.ifindex as libc::c_int,
                        ipi_spec_dst: libc::in_addr { s_addr: u32::from(src).to_be() },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in_pktinfo>(), info);
                }
                IpAddr::V6(src) => {
                    let info = libc::in6_pktinfo {
                        ipi6_addr: libc::in6_addr { s6_addr: src.octets() },
                        ipi6_ifindex: self.ifindex,
                    };
                    ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>(), info);
                }
            }
        }
        // SAFETY: every pointer in `msg` refers to live locals above.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &raw const msg, libc::MSG_DONTWAIT) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Reads one packet into `buf`; `WouldBlock` when there is none.
    /// `Ok(None)`: something that is not a usable IP packet (counted by the caller as malformed).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<RecvInfo>> {
        if self.ipv6 { self.recv_v6(buf) } else { self.recv_v4(buf) }
    }

    fn recv_v4(&self, buf: &mut [u8]) -> io::Result<Option<RecvInfo>> {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(parse_ipv4(&buf[..n as usize]))
    }

    fn recv_v6(&self, buf: &mut [u8]) -> io::Result<Option<RecvInfo>> {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut control = [0u64; 16];
        let mut from = MaybeUninit::<libc::sockaddr_in6>::zeroed();
        // SAFETY: a zeroed msghdr is a valid empty one.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = from.as_mut_ptr().cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as u32;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control);
        // SAFETY: every pointer in `msg` refers to live, writable locals.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel filled `from` (zeroed before, so valid either way).
        let from = unsafe { from.assume_init() };
        let src = Ipv6Addr::from(from.sin6_addr.s6_addr);
        let (mut ttl, mut dst) = (None, None);
        // SAFETY: walking the control buffer the kernel filled, with the
        // CMSG_* helpers and `msg` as returned by recvmsg.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                let data = libc::CMSG_DATA(cmsg);
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                        ttl = Some(ptr::read_unaligned(data.cast::<libc::c_int>()));
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let info = ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                        dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        let (Some(ttl), Some(dst)) = (ttl, dst) else { return Ok(None) };
        Ok(Some(RecvInfo {
            header: IpHeader { src: IpAddr::V6(src), dst: IpAddr::V6(dst), ttl: u8::try_from(ttl).unwrap_or(0) },
            offset: 0,
            len: n as usize,
        }))
    }
}

/// The IPv4 header of a packet from a raw socket: TTL, addresses, and where
/// the payload is (trimmed to the header's total length). `None` when it is
/// not an IPv4 packet of protocol 112 or is cut short.
pub fn parse_ipv4(pkt: &[u8]) -> Option<RecvInfo> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if ihl < 20 || total < ihl || total > pkt.len() || pkt[9] != IP_PROTO_VRRP {
        return None;
    }
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    let header = IpHeader { src: IpAddr::V4(src), dst: IpAddr::V4(dst), ttl: pkt[8] };
    Some(RecvInfo { header, offset: ihl, len: total - ihl })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header() {
        let mut pkt = vec![0x45, 0xc0, 0, 40, 0, 0, 0, 0, 255, 112, 0, 0, 10, 203, 0, 2, 224, 0, 0, 18];
        pkt.extend_from_slice(&[0x21, 0x33, 0x64, 0x01, 0, 1, 0x6f, 0x9b, 10, 203, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0]);
        let info = parse_ipv4(&pkt).unwrap();
        assert_eq!(info.header.src, IpAddr::V4(Ipv4Addr::new(10, 203, 0, 2)));
        assert_eq!(info.header.dst, IpAddr::V4(super::super::packet::MULTICAST_V4));
        assert_eq!((info.header.ttl, info.offset, info.len), (255, 20, 20));
        // Ethernet padding past the total length is not payload.
        let mut padded = pkt.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_ipv4(&padded).unwrap().len, 20);
        let mut wrong = pkt.clone();
        wrong[9] = 6;
        assert_eq!(parse_ipv4(&wrong), None);
        assert_eq!(parse_ipv4(&pkt[..30]), None);
        let mut options = pkt.clone();
        options[0] = 0x46;
        options[3] = 40;
        assert_eq!(parse_ipv4(&options).unwrap().offset, 24);
    }
}
