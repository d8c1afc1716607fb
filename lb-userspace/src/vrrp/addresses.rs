//! Virtual addresses on and off their interfaces (`RTM_NEWADDR` /
//! `RTM_DELADDR` over route netlink), and what the runtime needs to know
//! about an interface (index, MAC, link state, primary address) through
//! ioctls on a socket.
//!
//! Both sockets are opened at spawn time, in the calling thread's network
//! namespace, and keep it: the instance task may later run on any thread.

use std::{
    ffi::CString,
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope},
    link::{LinkAttribute, LinkMessage, LinkXdp},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// How long a netlink request may take before it counts as failed. The
/// kernel answers address requests within the send call, so this only
/// matters if something is badly wrong.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;

/// A blocking route netlink socket for address and route requests. Each request waits
/// for its acknowledgement, which the kernel sends before `sendmsg` returns,
/// so calling this from an async task does not stall it.
#[derive(Debug)]
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        let tv = libc::timeval { tv_sec: ACK_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
        // SAFETY: SO_RCVTIMEO reads one timeval.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                mem::size_of::<libc::timeval>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { socket, seq: 0 })
    }

    /// `ip addr add ADDR/PREFIX dev IFINDEX [label LABEL]` (IPv6: `nodad`).
    /// `Ok(false)` when it was already there.
    pub fn add_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8, label: Option<&str>) -> io::Result<bool> {
        let mut msg = address_message(ifindex, addr, prefix_len);
        if let Some(label) = label {
            msg.attributes.push(AddressAttribute::Label(label.to_owned()));
        }
        if addr.is_ipv6() {
            // Adverts already settled who owns the address; duplicate address
            // detection would only keep it unusable for a second (keepalived
            // adds IPv6 VIPs with nodad too).
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.request(flags, RouteNetlinkMessage::NewAddress(msg)) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip addr del ADDR/PREFIX dev IFINDEX`. `Ok(false)` when it was not there.
    pub fn del_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<bool> {
        let msg = address_message(ifindex, addr, prefix_len);
        match self.request(NLM_F_REQUEST | NLM_F_ACK, RouteNetlinkMessage::DelAddress(msg)) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENODEV | libc::ENOENT)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The id of the XDP program attached to `ifindex` in any mode (`ip link
    /// show` prints it as `prog/xdp id N`); `None` when there is none.
    pub fn xdp_prog_id(&mut self, ifindex: u32) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let buf = crate::rtnl::encode(NLM_F_REQUEST, seq, RouteNetlinkMessage::GetLink(msg));
        self.socket.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
        let mut rx = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut rx[..], 0)?;
            let mut off = 0;
            while off < n.min(rx.len()) {
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = parsed.header.length as usize;
                if parsed.header.sequence_number == seq {
                    match parsed.payload {
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                            return Ok(xdp_prog_id(&link));
                        }
                        NetlinkPayload::Error(e) => {
                            let code = e.code.map_or(0, |c| c.get().abs());
                            return Err(io::Error::from_raw_os_error(code));
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len.next_multiple_of(4);
            }
        }
    }

    /// Sends one request and waits for its acknowledgement; the kernel's
    /// error comes back as the `io::Error` (shared with [`super::routes`]).
    pub(super) fn request(&mut self, flags: u16, payload: RouteNetlinkMessage) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let buf = crate::rtnl::encode(flags, seq, payload);
        self.socket.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
        let mut rx = vec![0u8; 16 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut rx[..], 0)?;
            if let Some(errno) = find_ack(&rx[..n.min(rx.len())], seq) {
                return if errno == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(errno)) };
            }
        }
    }
}

/// The program id from `IFLA_XDP`, whichever mode it is attached in.
fn xdp_prog_id(link: &LinkMessage) -> Option<u32> {
    let xdp = link.attributes.iter().find_map(|a| if let LinkAttribute::Xdp(x) = a { Some(x) } else { None })?;
    xdp.iter()
        .find_map(|x| match x {
            LinkXdp::ProgId(id) | LinkXdp::DrvProgId(id) | LinkXdp::SkbProgId(id) | LinkXdp::HwProgId(id) => Some(*id),
            _ => None,
        })
        .filter(|&id| id != 0)
}

fn address_message(ifindex: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = if addr.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    msg.header.prefix_len = prefix_len;
    msg.header.index = ifindex;
    msg.header.scope = AddressScope::Universe;
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes.push(AddressAttribute::Address(addr));
    msg
}

/// The errno of the acknowledgement of request `seq` in `datagram`, if there is one.
fn find_ack(datagram: &[u8], seq: u32) -> Option<i32> {
    let mut off = 0;
    while datagram.len().saturating_sub(off) >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(datagram[off..off + 4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > datagram.len() - off {
            return None;
        }
        let kind = u16::from_ne_bytes([datagram[off + 4], datagram[off + 5]]);
        let msg_seq = u32::from_ne_bytes(datagram[off + 8..off + 12].try_into().ok()?);
        if kind == NLMSG_ERROR && msg_seq == seq && len >= NLMSG_HDRLEN + 4 {
            let code = i32::from_ne_bytes(datagram[off + 16..off + 20].try_into().ok()?);
            return Some(code.abs());
        }
        off += len.next_multiple_of(4);
    }
    None
}

/// `struct ifreq`: a name and a 24-byte union, read and written as bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
        }
        let mut req = Self { name: [0; libc::IFNAMSIZ], data: [0; 24] };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }
}

/// Interface queries (`SIOCGIF*`) on a datagram socket of the namespace it
/// was opened in.
#[derive(Debug)]
pub struct IfCtl {
    fd: OwnedFd,
}

/// An interface's link state as tracking sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Administratively up and running (carrier, operstate up).
    Up,
    /// Down, no carrier, or gone.
    Down,
}

impl IfCtl {
    /// Opens the query socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn ioctl(&self, request: libc::c_ulong, name: &str) -> io::Result<IfReq> {
        let mut req = IfReq::new(name)?;
        // SAFETY: the SIOCGIF* requests used here read the name and write at
        // most the 24-byte union of a `struct ifreq`, which `IfReq` mirrors.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, &raw mut req) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(req) }
    }

    /// The interface's index.
    pub fn index(&self, name: &str) -> io::Result<u32> {
        let req = self.ioctl(libc::SIOCGIFINDEX, name)?;
        Ok(i32::from_ne_bytes(req.data[..4].try_into().expect("4 bytes")) as u32)
    }

    /// The interface's hardware address (`SIOCGIFHWADDR`).
    pub fn mac(&self, name: &str) -> io::Result<[u8; 6]> {
        let req = self.ioctl(libc::SIOCGIFHWADDR, name)?;
        // struct sockaddr: family (2 bytes), then the address.
        Ok(req.data[2..8].try_into().expect("6 bytes"))
    }

    /// Up, running and present.
    pub fn link(&self, name: &str) -> Link {
        match self.ioctl(libc::SIOCGIFFLAGS, name) {
            Ok(req) => {
                let flags = libc::c_int::from(i16::from_ne_bytes([req.data[0], req.data[1]]));
                if flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0 { Link::Up } else { Link::Down }
            }
            Err(_) => Link::Down,
        }
    }

    /// The interface's primary IPv4 address (`SIOCGIFADDR`).
    pub fn ipv4(&self, name: &str) -> io::Result<Ipv4Addr> {
        let req = self.ioctl(libc::SIOCGIFADDR, name)?;
        // struct sockaddr_in: family (2), port (2), address (4).
        Ok(Ipv4Addr::new(req.data[4], req.data[5], req.data[6], req.data[7]))
    }
}

/// The first IPv6 link-local address of `ifname`, from `getifaddrs` (which
/// asks the calling thread's namespace).
pub fn ipv6_link_local(ifname: &str) -> io::Result<Option<Ipv6Addr>> {
    let want = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut cur = head;
    // SAFETY: walking the list getifaddrs returned, until its end; every
    // non-null `ifa_addr` of family AF_INET6 is a sockaddr_in6.
    unsafe {
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null()
                && libc::c_int::from((*ifa.ifa_addr).sa_family) == libc::AF_INET6
                && std::ffi::CStr::from_ptr(ifa.ifa_name) == want.as_c_str()
            {
                let sin6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                if is_link_local(&ip) {
                    found = Some(ip);
                    break;
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    Ok(found)
}

/// fe80::/10.
pub fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks() {
        // nlmsghdr (len 36, NLMSG_ERROR, flags 0, seq 7, pid 0) + errno -17 + the request's header.
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-17i32).to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        assert_eq!(find_ack(&m, 7), Some(17));
        assert_eq!(find_ack(&m, 8), None);
        assert_eq!(find_ack(&m[..10], 7), None);
    }

    #[test]
    fn link_local() {
        assert!(is_link_local(&"fe80::1".parse().unwrap()));
        assert!(is_link_local(&"febf::1".parse().unwrap()));
        assert!(!is_link_local(&"fec0::1".parse().unwrap()));
        assert!(!is_link_local(&"fd00::1".parse().unwrap()));
    }
}
