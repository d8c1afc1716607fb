//! Taking over a fast path another agent left running: what it published,
//! read back from the maps, and whether a VIP's install would change it.
//! Pure, shared by the loaded program and the in-memory model, so the rule
//! "what is published already is not flipped again" is unit-tested.

use std::collections::BTreeMap;

use lb_common::{VIP_TABLE_SIZE, VipCtl, VipEntry, VipKey, VipMeta};

/// One VIP as the table in use shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedVip {
    pub meta: VipMeta,
    /// Its keys, sorted.
    pub keys: Vec<VipKey>,
}

/// The VIP table generation in use, by VIP index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// 0 or 1.
    pub generation: u32,
    pub vips: BTreeMap<u32, PublishedVip>,
}

/// Reads what `ctl` and `table` (both generations) publish.
pub fn read(ctl: &VipCtl, table: &[VipEntry]) -> Published {
    let generation = ctl.active & 1;
    let size = VIP_TABLE_SIZE as usize;
    let start = generation as usize * size;
    let mut vips: BTreeMap<u32, PublishedVip> = BTreeMap::new();
    for e in table.get(start..start + size).unwrap_or_default().iter().filter(|e| e.key.proto != 0) {
        let v = vips.entry(e.meta.vip_index).or_insert_with(|| PublishedVip { meta: e.meta, keys: Vec::new() });
        v.keys.push(e.key);
    }
    for v in vips.values_mut() {
        v.keys.sort_by_key(|k| bytemuck::bytes_of(k).to_vec());
    }
    Published { generation, vips }
}

/// Whether staging (`keys`, `flags`, `ring`) for a VIP that `published`
/// shows with `published_ring` in its active region would change nothing a
/// packet meets: then the agent adopts it as it is, without a flip.
pub fn unchanged(published: &PublishedVip, published_ring: &[u32], keys: &[VipKey], flags: u32, ring: &[u32]) -> bool {
    let mut keys = keys.to_vec();
    keys.sort_by_key(|k| bytemuck::bytes_of(k).to_vec());
    keys.dedup();
    published.meta.flags == flags
        && published.meta.ring_size as usize == ring.len()
        && published.keys == keys
        && published_ring == ring
}

/// The region (0 or 1) a published meta points at.
pub fn active_region(meta: &VipMeta, max_ring_size: u32) -> u32 {
    (meta.ring_base / max_ring_size) % 2
}

#[cfg(test)]
mod tests {
    use bytemuck::Zeroable as _;

    use super::*;

    fn key(last: u32, port: u16) -> VipKey {
        VipKey { addr: [0, 0, 0, last], port, proto: 6, kind: 0 }
    }

    fn published() -> (VipCtl, Vec<VipEntry>) {
        let mut table = vec![VipEntry::zeroed(); VIP_TABLE_SIZE as usize * 2];
        let meta = VipMeta { flags: 0, vip_index: 3, ring_base: 7 * 5, ring_size: 5 };
        // Generation 1 is in use; generation 0 holds a stale table.
        table[VIP_TABLE_SIZE as usize + 9] = VipEntry { key: key(1, 80), meta, _pad: 0 };
        table[VIP_TABLE_SIZE as usize + 2] = VipEntry { key: key(1, 0), meta, _pad: 0 };
        table[4] = VipEntry { key: key(2, 80), meta: VipMeta { vip_index: 1, ..meta }, _pad: 0 };
        (VipCtl { active: 1, ..VipCtl::zeroed() }, table)
    }

    #[test]
    fn reads_the_generation_in_use_by_vip() {
        let (ctl, table) = published();
        let p = read(&ctl, &table);
        assert_eq!(p.generation, 1);
        assert_eq!(p.vips.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(p.vips[&3].keys.len(), 2);
        assert_eq!(active_region(&p.vips[&3].meta, 5), 1, "ring_base 35 = (3 * 2 + 1) * 5");
    }

    #[test]
    fn the_same_vip_is_unchanged_and_any_difference_is_not() {
        let (ctl, table) = published();
        let p = read(&ctl, &table);
        let v = &p.vips[&3];
        let ring = [1, 2, 1, 2, 3];
        let keys = [key(1, 0), key(1, 80)];
        assert!(unchanged(v, &ring, &keys, 0, &ring), "same: adopted without a flip");
        assert!(unchanged(v, &ring, &[key(1, 80), key(1, 0)], 0, &ring), "key order does not matter");
        assert!(!unchanged(v, &ring, &keys, 0, &[1, 2, 1, 2, 1]), "another ring");
        assert!(!unchanged(v, &ring, &keys, 1, &ring), "other flags");
        assert!(!unchanged(v, &ring, &keys[..1], 0, &ring), "a key less");
        assert!(!unchanged(v, &ring[..4], &keys, 0, &ring[..4]), "another size");
    }
}
