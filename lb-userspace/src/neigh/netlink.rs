//! The route netlink socket: requests the watcher sends and the messages it
//! reads back, neighbour messages through netlink-packet-route.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd as _, RawFd},
};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    NlasIterator,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::{
    NeighError,
    state::{Key, NUD_NONE, NUD_PROBE},
};

/// Big enough for any datagram the kernel sends on a route socket: dumps
/// fill at most 32 KiB per datagram.
pub const RECV_BUFFER: usize = 64 * 1024;

/// Receive queue asked for, so a burst of changes (a link flapping under
/// thousands of entries) is less likely to overrun it; an overrun is
/// survived anyway by dumping the table again.
const RCVBUF: usize = 4 << 20;

const IFINFOMSG_LEN: usize = 16;
const NLMSG_HDRLEN: usize = 16;

/// A route netlink socket subscribed to neighbour changes.
pub struct NlSocket {
    socket: Socket,
}

impl std::fmt::Debug for NlSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NlSocket").field("fd", &self.socket.as_raw_fd()).finish()
    }
}

impl std::os::fd::AsRawFd for NlSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

fn sock_err(op: &'static str) -> impl FnOnce(io::Error) -> NeighError {
    move |source| NeighError::Socket { op, source }
}

impl NlSocket {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NeighError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(sock_err("creating a route netlink socket"))?;
        socket.bind_auto().map_err(sock_err("binding the netlink socket"))?;
        // RTNLGRP_NEIGH carries the changes of every family's neighbour
        // table, ARP and IPv6 ND alike: there is no separate IPv6 group.
        socket.add_membership(libc::RTNLGRP_NEIGH).map_err(sock_err("joining RTNLGRP_NEIGH"))?;
        if force_rcvbuf(socket.as_raw_fd(), RCVBUF).is_err() {
            // Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
            socket.set_rx_buf_sz(RCVBUF).map_err(sock_err("sizing the receive queue"))?;
        }
        socket.set_non_blocking(true).map_err(sock_err("making the netlink socket non-blocking"))?;
        Ok(Self { socket })
    }

    fn send(&self, seq: u32, flags: u16, payload: RouteNetlinkMessage) -> io::Result<()> {
        let buf = crate::rtnl::encode(flags, seq, payload);
        // The kernel handles a request within sendmsg(), so a non-blocking
        // send does not come back with EAGAIN.
        self.socket.send_to(&buf, &SocketAddr::new(0, 0), 0).map(drop)
    }

    /// Dumps both families' neighbour tables.
    pub fn request_dump(&self, seq: u32) -> io::Result<()> {
        self.send(seq, NLM_F_REQUEST | NLM_F_DUMP, RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()))
    }

    /// Asks for one link, for its name.
    pub fn request_link(&self, seq: u32, ifindex: u32) -> io::Result<()> {
        let mut msg = netlink_packet_route::link::LinkMessage::default();
        msg.header.index = ifindex;
        self.send(seq, NLM_F_REQUEST | NLM_F_ACK, RouteNetlinkMessage::GetLink(msg))
    }

    /// `ip neigh replace ADDR dev IF nud none use`: creates the entry if
    /// there is none and makes the kernel resolve it as if a packet were
    /// waiting for it (NONE or FAILED start a new resolution, STALE starts
    /// the DELAY/PROBE re-check; other states are left alone).
    pub fn request_use(&self, seq: u32, key: Key) -> io::Result<()> {
        let msg = neigh_message(key, NUD_NONE, NeighbourFlags::Use);
        self.send(seq, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, RouteNetlinkMessage::NewNeighbour(msg))
    }

    /// `ip neigh change ADDR dev IF nud probe`: keeps the entry's MAC and
    /// makes the kernel confirm it with unicast solicitations; unanswered,
    /// the entry turns FAILED (after `ucast_probes` × `retrans_time`,
    /// 3 × 1 s by default).
    pub fn request_probe(&self, seq: u32, key: Key) -> io::Result<()> {
        let msg = neigh_message(key, NUD_PROBE, NeighbourFlags::empty());
        self.send(seq, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE, RouteNetlinkMessage::NewNeighbour(msg))
    }

    /// Reads one datagram into `buf`; `WouldBlock` when there is none.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.recv(&mut &mut buf[..], 0)
    }
}

fn neigh_message((ifindex, addr): Key, state: u16, flags: NeighbourFlags) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.ifindex = ifindex;
    msg.header.state = NeighbourState::from(state);
    msg.header.flags = flags;
    msg.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::from(addr)));
    msg
}

fn force_rcvbuf(fd: RawFd, size: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads exactly `optlen` bytes from a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// One message read from the socket, reduced to what the watcher uses.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// RTM_NEWNEIGH (a dump line or a change) or RTM_DELNEIGH.
    Neigh { deleted: bool, key: Key, state: u16, lladdr: Option<Vec<u8>>, proxy: bool },
    /// RTM_NEWLINK, for the interface's name.
    Link { ifindex: u32, name: String },
    /// The end of a dump.
    Done,
    /// A request's acknowledgement (`errno` 0) or error.
    Ack { errno: i32 },
    /// Anything else (neighbour messages of other families, for one).
    Other,
}

/// A message and the header fields the watcher matches on.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    pub seq: u32,
    pub flags: u16,
    pub what: Incoming,
}

impl Received {
    pub fn dump_interrupted(&self) -> bool {
        self.flags & NLM_F_DUMP_INTR != 0
    }
}

/// Splits a datagram into messages. A message that does not parse is
/// returned as an error and the others still are.
pub fn parse(datagram: &[u8]) -> Vec<Result<Received, String>> {
    let mut out = Vec::new();
    let mut off = 0;
    while datagram.len() - off >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(datagram[off..off + 4].try_into().unwrap_or_default()) as usize;
        if len < NLMSG_HDRLEN || len > datagram.len() - off {
            out.push(Err(format!(
                "netlink message of length {len} at offset {off} overruns a {}-byte datagram",
                datagram.len()
            )));
            break;
        }
        out.push(parse_one(&datagram[off..off + len]));
        off += len.next_multiple_of(4);
    }
    out
}

fn parse_one(bytes: &[u8]) -> Result<Received, String> {
    let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
    let flags = u16::from_ne_bytes([bytes[6], bytes[7]]);
    let seq = u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    // Link messages are read by hand: only the name is needed, and the
    // crate's full parse of every link attribute is more likely to trip
    // on what a newer kernel adds.
    if kind == libc::RTM_NEWLINK {
        return Ok(Received { seq, flags, what: parse_link(&bytes[NLMSG_HDRLEN..]).unwrap_or(Incoming::Other) });
    }
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| format!("{e}"))?;
    let what = match msg.payload {
        NetlinkPayload::Done(_) => Incoming::Done,
        NetlinkPayload::Error(e) => Incoming::Ack { errno: e.raw_code().abs() },
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m)) => neigh(m, false),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(m)) => neigh(m, true),
        _ => Incoming::Other,
    };
    Ok(Received { seq, flags, what })
}

fn neigh(m: NeighbourMessage, deleted: bool) -> Incoming {
    let mut addr = None;
    let mut lladdr = None;
    for attr in m.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => addr = Some(IpAddr::V4(a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => addr = Some(IpAddr::V6(a)),
            NeighbourAttribute::LinkLayerAddress(l) => lladdr = Some(l),
            _ => {}
        }
    }
    let Some(addr) = addr else { return Incoming::Other };
    Incoming::Neigh {
        deleted,
        key: (m.header.ifindex, addr),
        state: m.header.state.into(),
        lladdr,
        proxy: m.header.flags.contains(NeighbourFlags::Proxy),
    }
}

fn parse_link(payload: &[u8]) -> Option<Incoming> {
    let ifindex = u32::from_ne_bytes(payload.get(4..8)?.try_into().ok()?);
    let attrs = payload.get(IFINFOMSG_LEN..)?;
    for nla in NlasIterator::new(attrs) {
        let nla = nla.ok()?;
        if nla.kind() == libc::IFLA_IFNAME {
            let value = nla.value();
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            return Some(Incoming::Link { ifindex, name: String::from_utf8_lossy(&value[..end]).into_owned() });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable as _;

    use super::*;

    fn datagram(seq: u32, payload: RouteNetlinkMessage) -> Vec<u8> {
        crate::rtnl::encode(0, seq, payload)
    }

    #[test]
    fn neighbour_messages_round_trip() {
        let key: Key = (7, "10.212.0.11".parse().unwrap());
        let mut m = neigh_message(key, super::super::state::NUD_REACHABLE, NeighbourFlags::empty());
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 0x11]));
        let mut bytes = datagram(5, RouteNetlinkMessage::NewNeighbour(m));
        let v6: Key = (7, "fd00:212::11".parse().unwrap());
        bytes
            .extend(datagram(0, RouteNetlinkMessage::DelNeighbour(neigh_message(v6, NUD_NONE, NeighbourFlags::Proxy))));
        let got = parse(&bytes);
        assert_eq!(
            got,
            vec![
                Ok(Received {
                    seq: 5,
                    flags: 0,
                    what: Incoming::Neigh {
                        deleted: false,
                        key,
                        state: 0x02,
                        lladdr: Some(vec![2, 0, 0, 0, 0, 0x11]),
                        proxy: false
                    }
                }),
                Ok(Received {
                    seq: 0,
                    flags: 0,
                    what: Incoming::Neigh { deleted: true, key: v6, state: 0, lladdr: None, proxy: true }
                }),
            ]
        );
    }

    #[test]
    fn link_name_and_truncation() {
        let mut link = netlink_packet_route::link::LinkMessage::default();
        link.header.index = 9;
        link.attributes.push(netlink_packet_route::link::LinkAttribute::IfName("eth0".into()));
        let mut payload = vec![0; link.buffer_len()];
        link.emit(&mut payload);
        let mut bytes = vec![0; NLMSG_HDRLEN];
        bytes[0..4].copy_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        bytes[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
        bytes.extend(payload);
        assert_eq!(
            parse(&bytes),
            vec![Ok(Received { seq: 0, flags: 0, what: Incoming::Link { ifindex: 9, name: "eth0".into() } })]
        );
        bytes.truncate(bytes.len() - 4);
        assert!(parse(&bytes)[0].is_err());
    }
}
