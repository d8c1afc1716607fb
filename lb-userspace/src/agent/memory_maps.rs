//! The fast path's maps in memory, for unit tests of the director: the
//! rings array with two regions per VIP, the VIP table's two generations
//! and the control word that flips between them, the backend array and the
//! settings, written by the rules [`FastPath`](crate::fast_path::FastPath)
//! follows and read as the XDP program reads them ([`MemoryMaps::lookup`]).
//! Every write is logged ([`MemoryMaps::writes`]) so tests can check order
//! and cost. Grace periods end only when a test says time has passed
//! ([`MemoryMaps::end_grace`]).

use std::collections::HashMap;

use bytemuck::Zeroable as _;
use lb_common::{
    Backend, BackendRecord, Counters, MAX_BACKENDS, Settings, Stat, VIP_TABLE_SIZE, VipCtl, VipEntry, VipKey, VipMeta,
};

use super::maps::FastPathMaps;
use crate::fast_path::{AttachMode, FastPathError, FastPathOptions, adopt, spare_region, vip_table};

/// Possible CPUs of the machine the maps model: the flow table's regions
/// (`Settings::flow_cpus`).
pub const CPUS: u32 = 2;

/// One write to the maps, or a wait, in the order it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Settings,
    Backend {
        id: u32,
        alive: bool,
    },
    /// A ring copied into one of a VIP's regions, by a stage or a preload.
    Ring {
        vip_index: u32,
        region: usize,
        preload: bool,
    },
    /// A VIP's keys and meta staged for the next publish.
    Stage {
        vip_index: u32,
    },
    Unstage {
        vip_index: u32,
    },
    /// The VIP table flipped to its other generation.
    Flip,
    /// A wait for the grace period of the last flip.
    GraceWait,
}

/// What the agent side of the real maps remembers of a VIP.
#[derive(Clone, Copy, Debug)]
struct Slot {
    active_region: Option<u32>,
    meta: VipMeta,
    regions: [Option<u64>; 2],
    /// Published before a restart and not staged since.
    adopted: bool,
}

/// What a packet for one VIP key meets: for comparing the fast path before
/// and after, wherever its rings happen to sit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub key: VipKey,
    pub flags: u32,
    pub vip_index: u32,
    pub ring: Vec<u32>,
    /// The backend entry of every id the ring names, by id.
    pub backends: Vec<(u32, Backend)>,
}

#[derive(Debug)]
pub struct MemoryMaps {
    opts: FastPathOptions,
    backends: Vec<Backend>,
    rings: Vec<u32>,
    /// Both generations, `VIP_TABLE_SIZE` slots each.
    table: Vec<VipEntry>,
    ctl: VipCtl,
    vips: HashMap<u32, Slot>,
    keys: HashMap<VipKey, u32>,
    dirty: bool,
    grace_running: bool,
    fail_next_publish: bool,
    writes: Vec<Write>,
    /// The agent's backend records, which survive a restart with the maps.
    records: HashMap<u32, BackendRecord>,
}

impl MemoryMaps {
    pub fn new(opts: FastPathOptions) -> Self {
        let mut maps = Self {
            opts,
            backends: vec![Backend::zeroed(); MAX_BACKENDS as usize],
            rings: vec![0; (opts.max_vips * 2 * opts.max_ring_size) as usize],
            table: vec![VipEntry::zeroed(); VIP_TABLE_SIZE as usize * 2],
            ctl: VipCtl::zeroed(),
            vips: HashMap::new(),
            keys: HashMap::new(),
            dirty: false,
            grace_running: false,
            fail_next_publish: false,
            writes: Vec::new(),
            records: HashMap::new(),
        };
        // As `FastPath::load` does.
        maps.ctl.settings.flow_sets = lb_common::flow_sets(opts.flows_per_cpu);
        maps.ctl.settings.flow_cpus = CPUS;
        maps
    }

    /// The maps as the next agent finds them after this one stopped
    /// without cleaning up (a crash, or a handover): the maps and records
    /// as they are, what the agent remembered beside them gone and read
    /// back from the table in use.
    pub fn restarted(&self) -> Self {
        let mut maps = Self {
            opts: self.opts,
            backends: self.backends.clone(),
            rings: self.rings.clone(),
            table: self.table.clone(),
            ctl: self.ctl,
            vips: HashMap::new(),
            keys: HashMap::new(),
            dirty: false,
            grace_running: false,
            fail_next_publish: false,
            writes: Vec::new(),
            records: self.records.clone(),
        };
        for (index, v) in adopt::read(&maps.ctl, &maps.table).vips {
            let active = adopt::active_region(&v.meta, maps.opts.max_ring_size);
            maps.vips
                .insert(index, Slot { active_region: Some(active), meta: v.meta, regions: [None; 2], adopted: true });
            for key in v.keys {
                maps.keys.insert(key, index);
            }
        }
        maps
    }

    /// The record of backend `id`, if in use.
    pub fn record(&self, id: u32) -> Option<BackendRecord> {
        self.records.get(&id).copied().filter(|r| r.in_use != 0)
    }

    /// The grace period of the last flip has ended: time has passed.
    pub fn end_grace(&mut self) {
        self.grace_running = false;
    }

    /// The next publish fails, as a full VIP table would make it.
    pub fn fail_next_publish(&mut self) {
        self.fail_next_publish = true;
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// Forgets the writes so far, so a test counts from here.
    pub fn clear_writes(&mut self) {
        self.writes.clear();
    }

    /// Writes of `what` kind so far.
    pub fn count(&self, what: impl Fn(&Write) -> bool) -> usize {
        self.writes.iter().filter(|w| what(w)).count()
    }

    pub fn settings(&self) -> Settings {
        self.ctl.settings
    }

    pub fn backend(&self, id: u32) -> Backend {
        self.backends[id as usize]
    }

    /// What the XDP program finds for `key`: the active generation of the
    /// table, and the ring its meta points at.
    pub fn lookup(&self, key: &VipKey) -> Option<(VipMeta, &[u32])> {
        let generation = (self.ctl.active & 1) as usize;
        let size = VIP_TABLE_SIZE as usize;
        let table = &self.table[generation * size..(generation + 1) * size];
        let meta = vip_table::lookup(table, self.ctl.seeds[generation], key)?;
        let ring = &self.rings[meta.ring_base as usize..(meta.ring_base + meta.ring_size) as usize];
        Some((meta, ring))
    }

    /// Everything a packet can meet, by key.
    pub fn seen(&self) -> Vec<Seen> {
        let generation = (self.ctl.active & 1) as usize;
        let size = VIP_TABLE_SIZE as usize;
        let mut keys: Vec<VipKey> = self.table[generation * size..(generation + 1) * size]
            .iter()
            .filter(|e| e.key.proto != 0)
            .map(|e| e.key)
            .collect();
        keys.sort_by_key(|k| bytemuck::bytes_of(k).to_vec());
        keys.iter()
            .filter_map(|key| {
                let (meta, ring) = self.lookup(key)?;
                let mut ids: Vec<u32> = ring.iter().copied().filter(|&id| id != 0).collect();
                ids.sort_unstable();
                ids.dedup();
                Some(Seen {
                    key: *key,
                    flags: meta.flags,
                    vip_index: meta.vip_index,
                    ring: ring.to_vec(),
                    backends: ids.into_iter().map(|id| (id, self.backend(id))).collect(),
                })
            })
            .collect()
    }

    fn wait_grace(&mut self) {
        if self.grace_running {
            self.grace_running = false;
            self.writes.push(Write::GraceWait);
        }
    }
}

impl FastPathMaps for MemoryMaps {
    fn options(&self) -> FastPathOptions {
        self.opts
    }

    fn set_settings(&mut self, settings: Settings) -> Result<(), FastPathError> {
        self.ctl.settings =
            Settings { flow_sets: lb_common::flow_sets(self.opts.flows_per_cpu), flow_cpus: CPUS, ..settings };
        self.writes.push(Write::Settings);
        Ok(())
    }

    fn set_backend(&mut self, id: u32, backend: Backend) -> Result<(), FastPathError> {
        crate::fast_path::check_backend_id(id)?;
        self.backends[id as usize] = backend;
        self.writes.push(Write::Backend { id, alive: backend.flags & lb_common::BACKEND_F_ALIVE != 0 });
        Ok(())
    }

    fn stage_vip(
        &mut self,
        keys: &[VipKey],
        vip_index: u32,
        flags: u32,
        ring: &[u32],
        tag: Option<u64>,
    ) -> Result<(), FastPathError> {
        self.opts.check_vip_index(vip_index)?;
        self.opts.check_ring(ring)?;
        if let Some(slot) = self.vips.get_mut(&vip_index).filter(|s| s.adopted) {
            slot.adopted = false;
            let meta = slot.meta;
            let mut keys_now: Vec<VipKey> =
                self.keys.iter().filter(|(_, i)| **i == vip_index).map(|(k, _)| *k).collect();
            keys_now.sort_by_key(|k| bytemuck::bytes_of(k).to_vec());
            let published = adopt::PublishedVip { meta, keys: keys_now };
            let base = meta.ring_base as usize;
            if adopt::unchanged(&published, &self.rings[base..base + meta.ring_size as usize], keys, flags, ring) {
                let slot = self.vips.get_mut(&vip_index).expect("found above");
                if let Some(active) = slot.active_region {
                    slot.regions[active as usize] = tag;
                }
                return Ok(());
            }
        }
        let slot = self.vips.get(&vip_index);
        let active = slot.and_then(|v| v.active_region);
        let mut regions = slot.map_or([None; 2], |v| v.regions);
        let (spare, base) = spare_region(self.opts.max_ring_size, vip_index, active);
        if tag.is_none() || regions[spare] != tag {
            self.wait_grace();
            self.rings[base as usize..base as usize + ring.len()].copy_from_slice(ring);
            regions[spare] = tag;
            self.writes.push(Write::Ring { vip_index, region: spare, preload: false });
        }
        let meta = VipMeta { flags, vip_index, ring_base: base, ring_size: ring.len() as u32 };
        self.vips.insert(vip_index, Slot { active_region: active, meta, regions, adopted: false });
        self.keys.retain(|_, v| *v != vip_index);
        for key in keys {
            self.keys.insert(*key, vip_index);
        }
        self.dirty = true;
        self.writes.push(Write::Stage { vip_index });
        Ok(())
    }

    fn preload_vip(&mut self, vip_index: u32, ring: &[u32], tag: u64) -> Result<bool, FastPathError> {
        self.opts.check_ring(ring)?;
        if self.dirty || self.grace_running {
            return Ok(false);
        }
        let Some(slot) = self.vips.get_mut(&vip_index) else { return Ok(false) };
        let (spare, base) = spare_region(self.opts.max_ring_size, vip_index, slot.active_region);
        if slot.regions[spare] != Some(tag) {
            self.rings[base as usize..base as usize + ring.len()].copy_from_slice(ring);
            slot.regions[spare] = Some(tag);
            self.writes.push(Write::Ring { vip_index, region: spare, preload: true });
        }
        Ok(true)
    }

    fn unstage_vip(&mut self, vip_index: u32) {
        self.vips.remove(&vip_index);
        self.keys.retain(|_, v| *v != vip_index);
        self.dirty = true;
        self.writes.push(Write::Unstage { vip_index });
    }

    fn publish(&mut self) -> Result<(), FastPathError> {
        if !self.dirty {
            return Ok(());
        }
        let entries: Vec<(VipKey, VipMeta)> =
            self.keys.iter().filter_map(|(k, i)| self.vips.get(i).map(|v| (*k, v.meta))).collect();
        if std::mem::take(&mut self.fail_next_publish) {
            return Err(FastPathError::VipTableFull { keys: entries.len() });
        }
        let (seed, table) =
            vip_table::place(&entries, VIP_TABLE_SIZE).ok_or(FastPathError::VipTableFull { keys: entries.len() })?;
        self.wait_grace();
        let spare = self.ctl.active ^ 1;
        let at = (spare * VIP_TABLE_SIZE) as usize;
        self.table[at..at + table.len()].copy_from_slice(&table);
        self.ctl.seeds[spare as usize] = seed;
        self.ctl.active = spare;
        self.grace_running = true;
        for v in self.vips.values_mut() {
            v.active_region = Some((v.meta.ring_base / self.opts.max_ring_size) % 2);
        }
        self.dirty = false;
        self.writes.push(Write::Flip);
        Ok(())
    }

    fn stats(&self) -> Result<Vec<(Stat, Counters)>, FastPathError> {
        Ok(Stat::ALL.iter().map(|&s| (s, Counters::default())).collect())
    }

    fn vip_counters(&self, _vip_index: u32) -> Result<Counters, FastPathError> {
        Ok(Counters::default())
    }

    fn backend_counters(&self, _id: u32) -> Result<Counters, FastPathError> {
        Ok(Counters::default())
    }

    fn flow_counts(&self) -> Result<HashMap<u32, u64>, FastPathError> {
        Ok(HashMap::new())
    }

    fn attachments(&self) -> Vec<(String, AttachMode)> {
        Vec::new()
    }

    fn set_record(&mut self, id: u32, record: BackendRecord) -> Result<(), FastPathError> {
        crate::fast_path::check_backend_id(id)?;
        self.records.insert(id, record);
        Ok(())
    }

    fn records(&self) -> Result<Vec<(u32, BackendRecord)>, FastPathError> {
        let mut v: Vec<(u32, BackendRecord)> =
            self.records.iter().filter(|(_, r)| r.in_use != 0).map(|(i, r)| (*i, *r)).collect();
        v.sort_by_key(|(i, _)| *i);
        Ok(v)
    }

    fn backend(&self, id: u32) -> Result<Backend, FastPathError> {
        crate::fast_path::check_backend_id(id)?;
        Ok(self.backends[id as usize])
    }

    fn adopted_vips(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.vips.iter().filter(|(_, s)| s.adopted).map(|(i, _)| *i).collect();
        v.sort_unstable();
        v
    }
}
