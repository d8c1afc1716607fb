//! The flow hash and the VIP table hash, one definition for the XDP program
//! and the agent.
//!
//! Both directors of a pair (and a restarted one) must map a flow to the same
//! ring slot, so the flow hash has no per-host seed: it is part of the
//! contract between directors: the high half of a flow's 64-bit digest
//! picks its ring slot. The flow table, local to one director, is keyed by
//! a cheaper 64-bit hash for IPv4 ([`flow_key_v4`]) and by the digest for
//! IPv6 (8 bytes to compare instead of 40; two flows sharing a key, about 1
//! in 2^64, would only share a backend).
//!
//! Words are mixed constant-first: for IPv4 (stored IPv4-mapped) the first
//! six words are the same for every packet, so the compiler folds them away.

/// Fixed seed: part of the contract between directors; never change it
/// without changing every director at once.
pub const SEED: u64 = 0x4c42_3032_6466_6c6f; // "LB02dflo"

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// One step of the digest: 64 bits in, a multiply and a rotate. Addresses
/// go in as two 64-bit halves, so an IPv6 5-tuple is five steps.
#[inline(always)]
const fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(K).rotate_left(29)
}

/// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit,
/// which `% ring_size` on the high half needs.
#[inline(always)]
const fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Words 0-1 and 2-3 of an address as 64-bit halves (native order, as
/// they lie in memory).
#[inline(always)]
const fn lo(a: &[u32; 4]) -> u64 {
    (a[0] as u64) | ((a[1] as u64) << 32)
}

#[inline(always)]
const fn hi(a: &[u32; 4]) -> u64 {
    (a[2] as u64) | ((a[3] as u64) << 32)
}

/// The high half of an IPv4-mapped address: `ffff` and the IPv4 address.
#[inline(always)]
const fn hi_v4(addr_ne: u32) -> u64 {
    (crate::V4_MAPPED_PREFIX[2] as u64) | ((addr_ne as u64) << 32)
}

#[inline(always)]
const fn ports_proto(sport: u16, dport: u16, proto: u8) -> u64 {
    (sport as u64) | ((dport as u64) << 16) | ((proto as u64) << 32)
}

/// The low halves go first: for IPv4-mapped addresses they are zero, so the
/// state after them is a constant (`V4_*`) and IPv4 costs three steps.
#[inline(always)]
const fn start(tag: u64, src_lo: u64, dst_lo: u64) -> u64 {
    mix(mix(SEED ^ tag, src_lo), dst_lo)
}

const TAG_5TUPLE: u64 = 5;
const TAG_L3: u64 = 3;
const TAG_SRC: u64 = 1;
const V4_5TUPLE: u64 = start(TAG_5TUPLE, 0, 0);
const V4_L3: u64 = start(TAG_L3, 0, 0);
const V4_SRC: u64 = mix(SEED ^ TAG_SRC, 0);

/// Digest of the full 5-tuple. Ports are as on the wire (network order).
#[inline(always)]
pub const fn digest_5tuple(src: &[u32; 4], dst: &[u32; 4], sport: u16, dport: u16, proto: u8) -> u64 {
    let h = start(TAG_5TUPLE, lo(src), lo(dst));
    finish(mix(mix(mix(h, hi(src)), hi(dst)), ports_proto(sport, dport, proto)))
}

/// [`digest_5tuple`] of IPv4-mapped addresses, from the IPv4 addresses
/// (as they lie in memory): the same value in three steps.
#[inline(always)]
pub const fn digest_5tuple_v4(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u64 {
    finish(mix(mix(mix(V4_5TUPLE, hi_v4(src)), hi_v4(dst)), ports_proto(sport, dport, proto)))
}

/// The flow table's key for an IPv4 5-tuple (addresses as they lie in
/// memory, ports as on the wire). The table is local to one director and one
/// CPU, so unlike [`digest_5tuple`] this is no contract between directors,
/// and it is on the path of every established flow's packets: two
/// independent multiplies and one more, not five in a chain. Collisions
/// need two flows that differ in both addresses and ports in a particular
/// way; a colliding pair would share a backend, as two flows with one
/// digest would.
#[inline(always)]
pub const fn flow_key_v4(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u64 {
    const K1: u64 = 0xff51_afd7_ed55_8ccd;
    const K2: u64 = 0xc4ce_b9fe_1a85_ec53;
    let a = ((src as u64) << 32 | dst as u64).wrapping_mul(K1);
    let b = (ports_proto(sport, dport, proto) ^ SEED).wrapping_mul(K2);
    let h = a ^ b.rotate_left(32);
    // The set index is the low bits: fold the high half (which every input
    // bit reaches) down, then spread it once more.
    let h = (h ^ (h >> 32)).wrapping_mul(K);
    h ^ (h >> 29)
}

/// Digest of addresses and protocol: for fragments and L3-hashed VIPs.
#[inline(always)]
pub const fn digest_l3(src: &[u32; 4], dst: &[u32; 4], proto: u8) -> u64 {
    let h = start(TAG_L3, lo(src), lo(dst));
    finish(mix(mix(mix(h, hi(src)), hi(dst)), proto as u64))
}

/// [`digest_l3`] of IPv4-mapped addresses.
#[inline(always)]
pub const fn digest_l3_v4(src: u32, dst: u32, proto: u8) -> u64 {
    finish(mix(mix(mix(V4_L3, hi_v4(src)), hi_v4(dst)), proto as u64))
}

/// Digest of the source address alone: source-IP persistence.
#[inline(always)]
pub const fn digest_src(src: &[u32; 4]) -> u64 {
    finish(mix(mix(SEED ^ TAG_SRC, lo(src)), hi(src)))
}

/// [`digest_src`] of an IPv4-mapped address.
#[inline(always)]
pub const fn digest_src_v4(src: u32) -> u64 {
    finish(mix(V4_SRC, hi_v4(src)))
}

/// The ring slot a digest picks in a ring of `ring_size` slots.
#[inline(always)]
pub const fn ring_slot(digest: u64, ring_size: u32) -> u32 {
    ((digest >> 32) as u32) % ring_size
}

/// The slot of retry `attempt` (1, 2, ...) for a digest whose slot names a
/// backend that is no longer alive. The agent marks a failed backend dead at
/// once (microseconds) and publishes the ring without it when it is built
/// (milliseconds); in between, new flows of the dead backend's slots try
/// these slots instead. Seedless, as `ring_slot`: two directors that agree
/// on which backends are dead agree on every retry.
#[inline(always)]
pub const fn ring_retry_slot(digest: u64, attempt: u32, ring_size: u32) -> u32 {
    ring_slot(finish(mix(digest, attempt as u64)), ring_size)
}

/// Home slot of a VIP key in a VIP table of `size` (a power of two) slots.
/// The seed is the agent's: it picks one under which every key lands within
/// `VIP_PROBES` slots of home.
#[inline(always)]
pub const fn vip_slot(addr: &[u32; 4], port: u16, proto: u8, kind: u8, seed: u32, size: u32) -> u32 {
    let h = mix(mix(mix(seed as u64, lo(addr)), hi(addr)), port_proto_kind(port, proto, kind));
    ((h ^ (h >> 32)) as u32) & (size - 1)
}

/// [`vip_slot`] of an IPv4-mapped address.
#[inline(always)]
pub const fn vip_slot_v4(addr_ne: u32, port: u16, proto: u8, kind: u8, seed: u32, size: u32) -> u32 {
    let h = mix(mix(mix(seed as u64, 0), hi_v4(addr_ne)), port_proto_kind(port, proto, kind));
    ((h ^ (h >> 32)) as u32) & (size - 1)
}

#[inline(always)]
const fn port_proto_kind(port: u16, proto: u8, kind: u8) -> u64 {
    (port as u64) | ((proto as u64) << 16) | ((kind as u64) << 24)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4_mapped;

    #[test]
    fn stable_and_distinct() {
        let src = v4_mapped(u32::from_ne_bytes([10, 0, 0, 1]));
        let dst = v4_mapped(u32::from_ne_bytes([10, 0, 0, 100]));
        let d = digest_5tuple(&src, &dst, 1234u16.to_be(), 80u16.to_be(), 6);
        assert_eq!(d, digest_5tuple(&src, &dst, 1234u16.to_be(), 80u16.to_be(), 6));
        assert_ne!(d, digest_5tuple(&src, &dst, 1235u16.to_be(), 80u16.to_be(), 6));
        assert_ne!(d, digest_5tuple(&dst, &src, 1234u16.to_be(), 80u16.to_be(), 6));
        assert_ne!(digest_l3(&src, &dst, 6), digest_l3(&src, &dst, 17));
        assert_ne!(digest_src(&src), digest_src(&dst));
        assert_ne!(digest_l3(&src, &dst, 6), d);
        // Pinned: a change here breaks agreement between directors of
        // different versions.
        assert_eq!(d, 0x4b63_a99a_c1c3_f53e, "{d:#018x}");
    }

    #[test]
    fn ipv4_shortcuts_agree() {
        for i in 0..1000u32 {
            let (s, d) = (i.wrapping_mul(2654435761), !i);
            let (sm, dm) = (v4_mapped(s), v4_mapped(d));
            let (sp, dp) = ((i as u16).to_be(), 443u16.to_be());
            assert_eq!(digest_5tuple_v4(s, d, sp, dp, 6), digest_5tuple(&sm, &dm, sp, dp, 6));
            assert_eq!(digest_l3_v4(s, d, 17), digest_l3(&sm, &dm, 17));
            assert_eq!(digest_src_v4(s), digest_src(&sm));
            assert_eq!(vip_slot_v4(d, dp, 6, 1, i, 2048), vip_slot(&dm, dp, 6, 1, i, 2048));
        }
    }

    #[test]
    fn spreads_over_a_prime_ring() {
        // 65537 slots, 200k flows differing only in source port and address:
        // every bucket of 16 equal ranges gets its share within 5%.
        let dst = v4_mapped(u32::from_ne_bytes([10, 0, 0, 100]));
        let mut buckets = [0u32; 16];
        let n = 200_000u32;
        for i in 0..n {
            let src = v4_mapped(u32::from_ne_bytes([10, 1, (i >> 8) as u8, i as u8]));
            let d = digest_5tuple(&src, &dst, ((i % 50_000) as u16).to_be(), 80u16.to_be(), 6);
            buckets[(ring_slot(d, 65537) * 16 / 65537) as usize] += 1;
        }
        let share = n / 16;
        for b in buckets {
            assert!(b.abs_diff(share) < share / 20, "{buckets:?}");
        }
    }

    #[test]
    fn retry_slots_are_fresh_and_spread() {
        // Each retry is a new, independent slot: for flows whose own slot is
        // in one sixteenth of a 65537-slot ring, the first retry lands in
        // every sixteenth evenly, and no attempt repeats an earlier one
        // more often than chance would.
        let dst = v4_mapped(u32::from_ne_bytes([10, 0, 0, 100]));
        let mut buckets = [0u32; 16];
        let (mut flows, mut repeats) = (0u32, 0u32);
        for i in 0..400_000u32 {
            let src = v4_mapped(u32::from_ne_bytes([10, 2, (i >> 8) as u8, i as u8]));
            let d = digest_5tuple(&src, &dst, ((i % 40_000) as u16).to_be(), 80u16.to_be(), 6);
            let home = ring_slot(d, 65537);
            if home * 16 / 65537 != 0 {
                continue;
            }
            flows += 1;
            let slots: [u32; 5] =
                core::array::from_fn(|a| if a == 0 { home } else { ring_retry_slot(d, a as u32, 65537) });
            buckets[(slots[1] * 16 / 65537) as usize] += 1;
            repeats += (1..5).filter(|&a| slots[..a].contains(&slots[a])).count() as u32;
        }
        let share = flows / 16;
        for b in buckets {
            assert!(b.abs_diff(share) < share / 10, "{buckets:?}");
        }
        // Chance alone: about 10 / 65537 per flow, 4 in these flows.
        assert!(repeats < 15, "{repeats} repeated slots in {flows} flows");
        // Pinned, as the digest: every director must retry the same slots.
        let pinned: [u32; 4] = core::array::from_fn(|a| ring_retry_slot(0x0123_4567_89ab_cdef, a as u32 + 1, 65537));
        assert_eq!(pinned, [54600, 5902, 43799, 7895], "{pinned:?}");
    }

    #[test]
    fn no_digest_collisions_in_a_million_flows() {
        let dst = v4_mapped(u32::from_ne_bytes([10, 0, 0, 100]));
        let mut seen = std::collections::HashSet::new();
        for i in 0..1_000_000u32 {
            let src = v4_mapped(u32::from_ne_bytes([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]));
            assert!(seen.insert(digest_5tuple(&src, &dst, (i as u16).to_be(), 443u16.to_be(), 6)));
        }
    }

    /// The flow-table key: no collision among a million clients of one VIP
    /// (one port each, one client on many ports, many clients on one
    /// port), and its set index (the low bits) spread as a random one
    /// would be (Poisson: within 3.5 standard deviations, 24% here).
    #[test]
    fn flow_keys_are_distinct_and_spread_over_the_sets() {
        const SETS: usize = 4096;
        let dst = u32::from_ne_bytes([10, 0, 0, 100]);
        let one_client = u32::from_ne_bytes([172, 16, 0, 1]);
        let mut keys = std::collections::HashSet::new();
        let mut per_set = [0u32; SETS];
        for i in 0..1_000_000u32 {
            let src = u32::from_ne_bytes([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let key = flow_key_v4(src, dst, (i as u16).to_be(), 443u16.to_be(), 6);
            assert!(keys.insert(key), "flow {i}");
            per_set[(key as usize) & (SETS - 1)] += 1;
            assert!(keys.insert(flow_key_v4(src, dst, 40000u16.to_be(), 80u16.to_be(), 6)), "client {i}");
            if i < 65536 {
                assert!(keys.insert(flow_key_v4(one_client, dst, (i as u16).to_be(), 80u16.to_be(), 17)), "port {i}");
            }
        }
        let mean = 1_000_000.0 / SETS as f64;
        let (lo, hi) = (per_set.iter().min().copied().unwrap(), per_set.iter().max().copied().unwrap());
        assert!(f64::from(lo) > mean * 0.7 && f64::from(hi) < mean * 1.3, "sets hold {lo}..{hi} flows, mean {mean}");
    }
}
