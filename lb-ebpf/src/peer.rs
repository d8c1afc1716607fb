//! The pass program for the peer of a veth the balancer transmits on: veth
//! delivers `XDP_TX` frames only when the peer runs an XDP program of its
//! own. `lb lab` and the tests attach it (`PeerPass` in the agent), so it
//! is part of the agent's object.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn peer_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
