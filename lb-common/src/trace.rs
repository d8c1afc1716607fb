//! The packet trace (`lb run --trace`): what the XDP program is told when it
//! is loaded, and the values its records carry.
//!
//! The trace is a program of its own, `lb_xdp_traced`: the balancer plus a
//! record per packet, which the agent loads instead of `lb_xdp` when asked
//! to trace. Which packets get a record is a global of the eBPF object
//! (`.rodata`), fixed when the program is loaded.

use bytemuck::{Pod, Zeroable};

/// Value of the `TRACE_FILTER` global: which packets get a record. A zero
/// field matches anything, so the all-zero filter matches every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Filter {
    /// Destination address as in `VipKey::addr` (IPv4-mapped for IPv4).
    pub addr: [u32; 4],
    /// Destination port, network order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<Filter>() == 20);

impl Filter {
    pub const ANY: Self = Self { addr: [0; 4], port: 0, proto: 0, _pad: 0 };

    /// Whether a packet to `dst`, `dport` (network order) and `proto` gets a record.
    #[inline(always)]
    pub fn matches(&self, dst: &[u32; 4], dport: u16, proto: u8) -> bool {
        (self.addr == [0; 4] || self.addr == *dst)
            && (self.port == 0 || self.port == dport)
            && (self.proto == 0 || self.proto == proto)
    }
}

/// Where a traced packet's backend came from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No backend was looked for: not for a VIP, or not parsed.
    Skipped = 0,
    /// The flow table knew the flow.
    Hit = 1,
    /// Chosen from the VIP's ring: the flow table did not know the flow (or
    /// it was a TCP SYN, which skips the table).
    Miss = 2,
}

impl Lookup {
    pub const ALL: [Lookup; 3] = [Lookup::Skipped, Lookup::Hit, Lookup::Miss];

    pub const fn name(self) -> &'static str {
        match self {
            Lookup::Skipped => "skipped",
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4_mapped;

    #[test]
    fn a_zero_field_matches_anything() {
        let vip = v4_mapped(u32::from_ne_bytes([10, 0, 0, 100]));
        let other = v4_mapped(u32::from_ne_bytes([10, 0, 0, 200]));
        let (http, dns) = (80u16.to_be(), 53u16.to_be());
        assert!(Filter::ANY.matches(&other, dns, 17));
        let addr = Filter { addr: vip, ..Filter::ANY };
        assert!(addr.matches(&vip, http, 6) && addr.matches(&vip, dns, 17));
        assert!(!addr.matches(&other, http, 6));
        let service = Filter { addr: vip, port: http, proto: 6, _pad: 0 };
        assert!(service.matches(&vip, http, 6));
        assert!(!service.matches(&vip, http, 17), "another protocol");
        assert!(!service.matches(&vip, dns, 6), "another port");
    }
}
