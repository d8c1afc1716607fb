//! The flow hash, one function for the XDP program and the agent.
//!
//! Both directors of a pair (and a restarted one) must map a flow to the same
//! ring slot, so the hash has no per-host seed. It is MurmurHash3's 32-bit
//! block mix over whole words: cheap in BPF (no loops over bytes, no helper
//! calls) and well mixed in every output bit, which `% ring_size` needs.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;
/// Fixed seed: part of the wire contract between directors; never change it
/// without changing every director at once.
pub const SEED: u32 = 0x4c42_3031; // "LB01"

#[inline(always)]
const fn mix(h: u32, w: u32) -> u32 {
    let k = w.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn finish(mut h: u32, len_words: u32) -> u32 {
    h ^= len_words * 4;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
const fn mix4(h: u32, a: &[u32; 4]) -> u32 {
    mix(mix(mix(mix(h, a[0]), a[1]), a[2]), a[3])
}

/// Hash of the full 5-tuple. Ports are as on the wire (network order).
#[inline(always)]
pub const fn flow_5tuple(src: &[u32; 4], dst: &[u32; 4], sport: u16, dport: u16, proto: u8) -> u32 {
    let h = mix4(mix4(SEED, src), dst);
    let h = mix(h, (sport as u32) | ((dport as u32) << 16));
    finish(mix(h, proto as u32), 10)
}

/// Hash of addresses and protocol: for fragments and L3-hashed VIPs.
#[inline(always)]
pub const fn flow_l3(src: &[u32; 4], dst: &[u32; 4], proto: u8) -> u32 {
    finish(mix(mix4(mix4(SEED, src), dst), proto as u32), 9)
}

/// Hash of the source address alone: source-IP persistence.
#[inline(always)]
pub const fn flow_src(src: &[u32; 4]) -> u32 {
    finish(mix4(SEED, src), 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4_mapped;

    #[test]
    fn stable_values() {
        // Pinned: a change here breaks agreement between directors of different versions.
        let src = v4_mapped(u32::from_ne_bytes([10, 0, 0, 1]));
        let dst = v4_mapped(u32::from_ne_bytes([10, 0, 0, 100]));
        let h = flow_5tuple(&src, &dst, 1234u16.to_be(), 80u16.to_be(), 6);
        assert_eq!(h, flow_5tuple(&src, &dst, 1234u16.to_be(), 80u16.to_be(), 6));
        assert_ne!(h, flow_5tuple(&src, &dst, 1235u16.to_be(), 80u16.to_be(), 6));
        assert_ne!(flow_l3(&src, &dst, 6), flow_l3(&src, &dst, 17));
        assert_ne!(flow_src(&src), flow_src(&dst));
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
            let h = flow_5tuple(&src, &dst, ((i % 50_000) as u16).to_be(), 80u16.to_be(), 6);
            let slot = h % 65537;
            buckets[(slot * 16 / 65537) as usize] += 1;
        }
        let share = n / 16;
        for b in buckets {
            assert!(b.abs_diff(share) < share / 20, "{buckets:?}");
        }
    }
}
