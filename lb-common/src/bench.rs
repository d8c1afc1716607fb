//! What the flow-table bench programs (lb-ebpf's `bench` feature) and the
//! bench that drives them share: the per-CPU control of the flow sequence,
//! the kernel LRU map's key and value, and the sequence itself.
//!
//! BPF_PROG_TEST_RUN replays one frame; these programs give each repetition
//! the next flow of a pseudo-random order over `N` flows (a power of two),
//! so a run visits the flows as production traffic does, in no order the
//! CPU's caches or prefetchers could follow.

use bytemuck::{Pod, Zeroable};

/// Names in the bench object.
pub mod names {
    /// Per-CPU [`FlowSequence`], one element.
    pub const FLOW_SEQUENCE: &str = "BENCH_FLOW_SEQ";
    /// The kernel LRU map compared with the flow table: `BPF_MAP_TYPE_LRU_PERCPU_HASH`
    /// of [`LruFlowKey`](super::LruFlowKey) to [`LruFlowValue`](super::LruFlowValue).
    /// The object declares it with one entry; the bench sizes it when it loads.
    pub const LRU: &str = "BENCH_LRU";
    /// The next flow, then `XDP_TX`: the floor.
    pub const FLOOR: &str = "bench_flows_tx";
    /// The next flow, then a tail call into the balancer (`BENCH_TAIL[0]`).
    pub const BALANCER: &str = "bench_flows_lb";
    /// The next flow, then parse, LRU map lookup (insert on a miss), MAC rewrite, `XDP_TX`.
    pub const LRU_PROGRAM: &str = "bench_flows_lru";
    /// The flow table's set lookup alone, in [`PERCPU_FLOWS`] and in the
    /// balancer's plain `FLOWS`, to weigh a per-CPU array's indirection.
    pub const PERCPU_TABLE_PROGRAM: &str = "bench_flows_percpu";
    pub const FLAT_TABLE_PROGRAM: &str = "bench_flows_flat";
    /// A per-CPU array of `FlowSet`: each element reached through its own
    /// per-CPU pointer.
    pub const PERCPU_FLOWS: &str = "BENCH_PERCPU_FLOWS";
}

/// Per-CPU state of the flow sequence: repetition `n` sends flow
/// `flow_index(next + n, mask, shift)` from source space `space`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowSequence {
    /// Position in the sequence; the programs advance it.
    pub next: u64,
    /// `bench_flows_lru`'s lookups that found the flow, and those that inserted it.
    pub lru_hits: u64,
    pub lru_misses: u64,
    /// `N - 1`, `N` a power of two (`u32::MAX` for 2^32 flows).
    pub mask: u32,
    /// Half the bits of `mask`, at least 1 (see [`flow_index`]).
    pub shift: u32,
    /// Second octet of the source address: disjoint sets of flows (hits in
    /// one space, misses in another) never meet.
    pub space: u32,
    /// Sets of the tables `bench_flows_percpu` and `bench_flows_flat` probe
    /// (a power of two).
    pub sets: u32,
}
const _: () = assert!(size_of::<FlowSequence>() == 40);

impl FlowSequence {
    /// A sequence over `2^bits` flows (`bits` in 1..=32) in source space `space`.
    pub const fn new(bits: u32, space: u8) -> Self {
        let mask = if bits >= 32 { u32::MAX } else { (1u32 << bits) - 1 };
        let shift = if bits / 2 == 0 { 1 } else { bits / 2 };
        Self { next: 0, lru_hits: 0, lru_misses: 0, mask, shift, space: space as u32, sets: 0 }
    }
}

/// Position `n` of a fixed pseudo-random permutation of `0..=mask`. Each
/// step is a bijection on `mask`'s bits (an odd multiplier modulo a power
/// of two; a right xor-shift of a value that fits the bits), so the first
/// `mask + 1` positions visit every flow exactly once: four ALU operations
/// and no table, so the floor stays cheap.
#[inline(always)]
pub const fn flow_index(n: u64, mask: u32, shift: u32) -> u32 {
    let mut x = (n as u32) & mask;
    x = x.wrapping_mul(0x9E37_79B1) & mask;
    x ^= x >> shift;
    x = x.wrapping_mul(0x85EB_CA6B) & mask;
    x ^ (x >> shift)
}

/// Source address (network order, as it lies in the frame) and source port
/// (host order) of flow `index` in source space `space`: `10.space.i3.i2`,
/// port `i1 i0`.
#[inline(always)]
pub const fn flow_source(space: u32, index: u32) -> ([u8; 4], u16) {
    ([10, space as u8, (index >> 24) as u8, (index >> 16) as u8], index as u16)
}

/// Key of `BENCH_LRU`: the 5-tuple as Katran keys its LRU map, addresses in
/// 16 bytes (IPv4-mapped for IPv4), ports as on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LruFlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    // Scalars, not a byte array: a zeroed array becomes a call to a
    // byte-by-byte memset in BPF.
    pub _pad0: u8,
    pub _pad1: u16,
}
const _: () = assert!(size_of::<LruFlowKey>() == 40);

/// Value of `BENCH_LRU`: what the flow table's entry gives the fast path
/// (a backend id), plus the MAC the fast path reads from `BACKENDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LruFlowValue {
    pub backend: u32,
    pub mac: [u8; 6],
    pub _pad0: u16,
    pub _pad1: u32,
}
const _: () = assert!(size_of::<LruFlowValue>() == 16);

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: each type is Pod per bytemuck's derive, which proves it has no padding
    // and every bit pattern is valid, which is what aya::Pod requires.
    unsafe impl aya::Pod for FlowSequence {}
    // SAFETY: as above.
    unsafe impl aya::Pod for LruFlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for LruFlowValue {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn the_sequence_visits_every_flow_once() {
        for bits in [1, 2, 5, 10, 16] {
            let s = FlowSequence::new(bits, 1);
            let n = 1u64 << bits;
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let x = flow_index(i, s.mask, s.shift);
                assert!(!seen[x as usize], "{bits} bits: {x} twice");
                seen[x as usize] = true;
            }
            // And wraps around to the same order.
            assert_eq!(flow_index(n + 3, s.mask, s.shift), flow_index(3, s.mask, s.shift));
        }
    }

    #[test]
    fn the_order_is_not_sequential() {
        let s = FlowSequence::new(16, 1);
        let steps = (0..1000u64).filter(|&i| flow_index(i + 1, s.mask, s.shift) == flow_index(i, s.mask, s.shift) + 1);
        assert!(steps.count() < 10);
    }

    #[test]
    fn sources_differ_by_space_and_index() {
        assert_eq!(flow_source(1, 0x0102_0304), ([10, 1, 1, 2], 0x0304));
        assert_ne!(flow_source(1, 7), flow_source(2, 7));
    }
}
