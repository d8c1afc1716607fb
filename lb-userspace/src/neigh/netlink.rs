//! The watcher's route netlink: a connection subscribed to neighbour
//! changes, the requests it sends, and the messages it reads back reduced
//! to what it uses.

use std::{io, net::IpAddr};

use futures::StreamExt as _;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
};
use rtnetlink::MulticastGroup;

use super::{
    NeighError,
    state::{Key, NUD_PROBE},
};
use crate::rtnl::{self, Messages, Rtnl};

/// Receive queue asked for, so a burst of changes (a link flapping under
/// thousands of entries) is less likely to overrun it; an overrun is
/// survived anyway by dumping the table again.
const RCVBUF: usize = 4 << 20;

/// A connection in the calling thread's network namespace, driven on
/// `runtime`, with the neighbour changes of every family coming out of the
/// [`Messages`] (`RTNLGRP_NEIGH` carries ARP and IPv6 ND alike).
pub fn connect(runtime: &tokio::runtime::Handle) -> Result<(Rtnl, Messages), NeighError> {
    Rtnl::open_on(runtime, &[MulticastGroup::Neigh], Some(RCVBUF))
        .map_err(|source| NeighError::Socket { op: "opening a route netlink connection", source })
}

/// Dumps both families' neighbour tables. Sent without rtnetlink's dump
/// request, whose stream keeps neither the order of the dump's lines among
/// the changes nor their `NLM_F_DUMP_INTR`: the lines come out of the
/// [`Messages`], in socket order, told apart by their sequence number.
pub fn request_dump(rtnl: &Rtnl) -> io::Result<()> {
    let mut msg = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()));
    msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    rtnl.handle().clone().notify(msg).map_err(rtnl::io_error)
}

/// `ip neigh replace ADDR dev IF nud none use`: creates the entry if
/// there is none and makes the kernel resolve it as if a packet were
/// waiting for it (NONE or FAILED start a new resolution, STALE starts
/// the DELAY/PROBE re-check; other states are left alone).
pub async fn request_use(rtnl: &Rtnl, (ifindex, addr): Key) -> Result<(), rtnetlink::Error> {
    let request = rtnl.handle().neighbours().add(ifindex, addr);
    request.state(NeighbourState::None).flags(NeighbourFlags::Use).replace().execute().await
}

/// `ip neigh change ADDR dev IF nud probe`: keeps the entry's MAC and
/// makes the kernel confirm it with unicast solicitations; unanswered,
/// the entry turns FAILED (after `ucast_probes` × `retrans_time`,
/// 3 × 1 s by default). Built by hand: rtnetlink's neighbour request always
/// sets `NLM_F_CREATE`, and a probe must not create an entry.
pub async fn request_probe(rtnl: &Rtnl, key: Key) -> Result<(), rtnetlink::Error> {
    let msg = neigh_message(key, NeighbourState::from(NUD_PROBE), NeighbourFlags::empty());
    let mut msg = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(msg));
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE;
    let mut answers = rtnl.handle().clone().request(msg)?;
    while let Some(answer) = answers.next().await {
        if let NetlinkPayload::Error(e) = answer.payload {
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

fn neigh_message((ifindex, addr): Key, state: NeighbourState, flags: NeighbourFlags) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.ifindex = ifindex;
    msg.header.state = state;
    msg.header.flags = flags;
    msg.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::from(addr)));
    msg
}

/// One message read from the connection, reduced to what the watcher uses.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// RTM_NEWNEIGH (a dump line or a change) or RTM_DELNEIGH.
    Neigh { deleted: bool, key: Key, state: u16, lladdr: Option<Vec<u8>>, proxy: bool },
    /// The end of a dump.
    Done,
    /// A request's error.
    Error { errno: i32 },
    /// The receive queue overflowed: changes were lost.
    Overrun,
    /// Anything else (neighbour messages of other families, for one).
    Other,
}

/// A message and the header fields the watcher matches on.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    /// 0 for a change; the dump's sequence number for its lines.
    pub seq: u32,
    pub flags: u16,
    pub what: Incoming,
}

impl Received {
    /// Part of the answer to a request rather than a change.
    pub fn is_answer(&self) -> bool {
        self.seq != 0
    }

    pub fn dump_interrupted(&self) -> bool {
        self.flags & NLM_F_DUMP_INTR != 0
    }
}

/// What `msg` says, for the watcher.
pub fn received(msg: NetlinkMessage<RouteNetlinkMessage>) -> Received {
    let (seq, flags) = (msg.header.sequence_number, msg.header.flags);
    let what = match msg.payload {
        NetlinkPayload::Done(_) => Incoming::Done,
        // Saturating: a message may carry i32::MIN, which has no positive counterpart.
        NetlinkPayload::Error(e) => Incoming::Error { errno: e.raw_code().saturating_abs() },
        NetlinkPayload::Overrun(_) => Incoming::Overrun,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m)) => neigh(m, false),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(m)) => neigh(m, true),
        _ => Incoming::Other,
    };
    Received { seq, flags, what }
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

#[cfg(test)]
mod tests {
    use netlink_packet_core::{DoneMessage, ErrorMessage, NetlinkHeader};

    use super::*;
    use crate::neigh::state::{NUD_NONE, NUD_REACHABLE};

    /// `payload` as the kernel sends it and the connection parses it back.
    fn wire(seq: u32, flags: u16, payload: NetlinkPayload<RouteNetlinkMessage>) -> NetlinkMessage<RouteNetlinkMessage> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        header.flags = flags;
        let mut msg = NetlinkMessage::new(header, payload);
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        NetlinkMessage::deserialize(&buf).unwrap()
    }

    #[test]
    fn neighbour_messages() {
        let key: Key = (7, "10.212.0.11".parse().unwrap());
        let mut m = neigh_message(key, NeighbourState::from(NUD_REACHABLE), NeighbourFlags::empty());
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 0x11]));
        let line = received(wire(5, 0x2 | NLM_F_DUMP_INTR, RouteNetlinkMessage::NewNeighbour(m).into()));
        assert_eq!(
            line,
            Received {
                seq: 5,
                flags: 0x2 | NLM_F_DUMP_INTR,
                what: Incoming::Neigh {
                    deleted: false,
                    key,
                    state: NUD_REACHABLE,
                    lladdr: Some(vec![2, 0, 0, 0, 0, 0x11]),
                    proxy: false
                }
            }
        );
        assert!(line.is_answer() && line.dump_interrupted());
        let v6: Key = (7, "fd00:212::11".parse().unwrap());
        let gone = neigh_message(v6, NeighbourState::from(NUD_NONE), NeighbourFlags::Proxy);
        let change = received(wire(0, 0, RouteNetlinkMessage::DelNeighbour(gone).into()));
        assert_eq!(
            change,
            Received {
                seq: 0,
                flags: 0,
                what: Incoming::Neigh { deleted: true, key: v6, state: 0, lladdr: None, proxy: true }
            }
        );
        assert!(!change.is_answer());
    }

    #[test]
    fn dump_end_errors_and_overruns() {
        assert_eq!(received(wire(9, 0x2, NetlinkPayload::Done(DoneMessage::default()))).what, Incoming::Done);
        let mut e = ErrorMessage::default();
        e.code = std::num::NonZeroI32::new(-libc::EBUSY);
        assert_eq!(received(wire(9, 0, NetlinkPayload::Error(e))).what, Incoming::Error { errno: libc::EBUSY });
        assert_eq!(
            received(NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::Overrun(Vec::new()))).what,
            Incoming::Overrun
        );
    }
}
