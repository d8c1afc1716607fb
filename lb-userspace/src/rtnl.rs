//! What the route-netlink users (neighbour table, VRRP addresses and
//! routes) share: a request as the bytes that go on the socket.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;

/// `payload` behind a netlink header with `flags` and `seq`, lengths filled in.
pub fn encode(flags: u16, seq: u32, payload: RouteNetlinkMessage) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}
