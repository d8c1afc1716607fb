//! Placing VIP keys in the fast path's open-addressing VIP table: pure, so
//! the rule the XDP program relies on (every key within `VIP_PROBES` slots
//! of its home, no empty slot on the way) is unit-tested here.

use lb_common::{VIP_PROBES, VipEntry, VipKey, VipMeta, hash};

/// Seeds tried in order; the first under which every key fits wins. With
/// the table at most half full a handful of tries is plenty.
const SEED_TRIES: u32 = 256;

/// Lays out `entries` in a table of `size` slots (a power of two): one
/// generation of `VIP_TABLE`. Returns the seed and the slots, or `None` when
/// no seed fits every key (only possible when the table is nearly full).
pub fn place(entries: &[(VipKey, VipMeta)], size: u32) -> Option<(u32, Vec<VipEntry>)> {
    let empty = VipEntry { key: bytemuck::Zeroable::zeroed(), meta: bytemuck::Zeroable::zeroed(), _pad: 0 };
    'seeds: for attempt in 0..SEED_TRIES {
        let seed = 0x9E37_79B9u32.wrapping_mul(attempt + 1);
        let mut table = vec![empty; size as usize];
        for (key, meta) in entries {
            let home = hash::vip_slot(&key.addr, key.port, key.proto, key.kind, seed, size);
            let free = (0..VIP_PROBES).map(|i| (home + i) & (size - 1)).find(|&s| table[s as usize].key.proto == 0);
            match free {
                Some(s) => table[s as usize] = VipEntry { key: *key, meta: *meta, _pad: 0 },
                None => continue 'seeds,
            }
        }
        return Some((seed, table));
    }
    None
}

/// The lookup the XDP program does, for tests.
pub fn lookup(table: &[VipEntry], seed: u32, key: &VipKey) -> Option<VipMeta> {
    let size = table.len() as u32;
    let home = hash::vip_slot(&key.addr, key.port, key.proto, key.kind, seed, size);
    for i in 0..VIP_PROBES {
        let e = &table[((home + i) & (size - 1)) as usize];
        if e.key.proto == 0 {
            return None;
        }
        if e.key == *key {
            return Some(e.meta);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::{MAX_VIPS, VIP_KIND_FRAGMENTS, VIP_KIND_SERVICE, VIP_TABLE_SIZE, v4_mapped};

    fn key(i: u32, kind: u8) -> VipKey {
        VipKey {
            addr: v4_mapped(u32::from_ne_bytes([10, 0, (i >> 8) as u8, i as u8])),
            port: 80u16.to_be(),
            proto: 6,
            kind,
        }
    }

    #[test]
    fn every_key_is_found_and_others_are_not() {
        // The most the agent ever asks for: every VIP with a fragments key.
        let entries: Vec<(VipKey, VipMeta)> = (0..MAX_VIPS)
            .flat_map(|i| {
                let meta = VipMeta { flags: 0, vip_index: i, ring_base: i * 7, ring_size: 7 };
                [(key(i, VIP_KIND_SERVICE), meta), (key(i, VIP_KIND_FRAGMENTS), meta)]
            })
            .collect();
        let (seed, table) = place(&entries, VIP_TABLE_SIZE).expect("a half-full table always fits");
        for (k, m) in &entries {
            assert_eq!(lookup(&table, seed, k), Some(*m));
        }
        for i in MAX_VIPS..MAX_VIPS + 1000 {
            assert_eq!(lookup(&table, seed, &key(i, VIP_KIND_SERVICE)), None);
        }
    }

    #[test]
    fn deterministic() {
        let entries: Vec<(VipKey, VipMeta)> =
            (0..50).map(|i| (key(i, 0), VipMeta { flags: 0, vip_index: i, ring_base: 0, ring_size: 7 })).collect();
        assert_eq!(place(&entries, 1024), place(&entries, 1024));
    }
}
