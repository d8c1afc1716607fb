//! Puts a service's state into the fast path's maps, in an order that never
//! shows a packet a half-made decision: backends that stop being usable are
//! marked dead first (one array write each, so a failure reaches the fast
//! path in microseconds; it sends the dead backend's flows and slots to
//! other slots of the ring, `hash::ring_retry_slot`), backends that become
//! usable are written before the ring that names them, and the ring is
//! swapped in one update.
//!
//! Rings are kept for a while after they are replaced: a backend that fails
//! and comes back (the usual flap), or one drained and undrained, gets its
//! old ring back without a build (a ring is a pure function of what it is
//! built from).

use std::{collections::VecDeque, time::Duration};

use lb_common::BACKEND_F_ALIVE;

use super::{maps::FastPathMaps, service::Service};
use crate::{
    fast_path::FastPathError,
    maglev::{self, MaglevError},
};

/// Why [`Installer::prepare`] could not build or place a ring ahead.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("building a ring ahead: {source}")]
    Ring {
        #[from]
        source: MaglevError,
    },
    #[error("placing a ring ahead: {source}")]
    Maps {
        #[from]
        source: FastPathError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("building the ring of {vip}: {source}")]
    Ring { vip: String, source: MaglevError },
    #[error("writing the maps for {vip}: {source}")]
    Maps { vip: String, source: FastPathError },
}

/// Rings kept, most recently used first: 256 KB each at the default size.
const RING_CACHE: usize = 8;

/// A ring and what it was built from.
#[derive(Debug)]
struct CachedRing {
    ring_size: u32,
    entries: Vec<maglev::Entry>,
    ring: Vec<u32>,
    /// Slots per backend id, counted once.
    slots: Vec<(u32, u32)>,
    /// Names this ring's content for the fast path (`FastPathMaps::stage_vip`).
    tag: u64,
}

/// Slots per backend id in `ring` (ids are small and dense).
fn count_slots(ring: &[u32]) -> Vec<(u32, u32)> {
    let mut counts: Vec<u32> = Vec::new();
    for &id in ring {
        let i = id as usize;
        if counts.len() <= i {
            counts.resize(i + 1, 0);
        }
        counts[i] += 1;
    }
    counts.iter().enumerate().skip(1).filter(|(_, c)| **c > 0).map(|(id, c)| (id as u32, *c)).collect()
}

/// Remembers what the maps hold, so only changes are written.
#[derive(Debug, Default)]
pub struct Installer {
    builder: maglev::Builder,
    rings: VecDeque<CachedRing>,
    /// By backend id (ids are small and dense): no hashing on the path
    /// from a failed check to the fast path.
    written: Vec<Option<lb_common::Backend>>,
    /// Slots per backend id (ids are small and dense) in its service's
    /// current ring.
    slots: Vec<u32>,
    /// The tag the next ring built gets; also how many rings were built.
    next_tag: u64,
}

/// How long an install took, for logs and the bench.
#[derive(Clone, Copy, Debug, Default)]
pub struct InstallTime {
    /// Until every backend that stopped being usable was marked dead: from
    /// then on the fast path sends it nothing.
    pub withdraw: Duration,
    pub build: Duration,
    pub total: Duration,
}

impl Installer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks dead, now, the backends of `service` that stop being usable;
    /// returns how many. The fast path stops sending them anything (new
    /// flows and recorded ones alike) before their ring is rebuilt.
    pub fn withdraw(&mut self, dp: &mut impl FastPathMaps, service: &Service) -> Result<usize, InstallError> {
        let mut withdrawn = 0;
        for (id, entry) in service.entries() {
            if let Some(old) = self.written(id)
                && old.flags & BACKEND_F_ALIVE != 0
                && entry.flags & BACKEND_F_ALIVE == 0
            {
                dp.set_backend(id, entry).map_err(|source| InstallError::Maps { vip: service.name(), source })?;
                self.record(id, entry);
                withdrawn += 1;
            }
        }
        Ok(withdrawn)
    }

    /// Writes every changed backend entry (those that become usable before
    /// the ring that names them; those that fail at once, if
    /// [`withdraw`](Self::withdraw) has not) and stages the new ring; returns
    /// how long getting the ring took. Nothing else changes for packets until
    /// the caller publishes.
    pub fn stage(&mut self, dp: &mut impl FastPathMaps, service: &Service) -> Result<Duration, InstallError> {
        let started = std::time::Instant::now();
        let vip = || service.name();
        let maps = |source| InstallError::Maps { vip: vip(), source };
        for (id, entry) in service.entries() {
            if self.written(id) != Some(entry) {
                dp.set_backend(id, entry).map_err(maps)?;
                self.record(id, entry);
            }
        }
        let (entries, ring_size) = (service.ring_entries(), service.vip.ring_size);
        match self.cached(&entries, ring_size) {
            Some(i) => {
                let cached = self.rings.remove(i).expect("position is in range");
                self.rings.push_front(cached);
            }
            None => self.build(entries, ring_size).map_err(|source| InstallError::Ring { vip: vip(), source })?,
        }
        let current = &self.rings[0];
        let build = started.elapsed();
        // The ring names only the service's own ids.
        let ids = service.ids();
        let grow = ids.iter().max().map_or(0, |&id| id as usize + 1);
        if self.slots.len() < grow {
            self.slots.resize(grow, 0);
        }
        for &id in &ids {
            self.slots[id as usize] = 0;
        }
        for &(id, n) in &current.slots {
            self.slots[id as usize] = n;
        }
        let (keys, index, flags) = (service.keys(), service.vip_index, service.flags());
        dp.stage_vip(&keys, index, flags, &current.ring, Some(current.tag)).map_err(maps)?;
        Ok(build)
    }

    /// Builds the ring for `entries` ahead of its install, unless it is kept
    /// already, and writes it into VIP `vip_index`'s spare region; returns
    /// whether it built one. The agent calls this when a health check is one
    /// result from changing a backend's state: the install that follows
    /// finds the ring built and in place, and only flips.
    pub fn prepare(
        &mut self,
        dp: &mut impl FastPathMaps,
        vip_index: u32,
        entries: Vec<maglev::Entry>,
        ring_size: u32,
    ) -> Result<bool, PrepareError> {
        let (i, built) = match self.cached(&entries, ring_size) {
            Some(i) => (i, false),
            None => {
                self.build(entries, ring_size)?;
                (0, true)
            }
        };
        let ring = &self.rings[i];
        dp.preload_vip(vip_index, &ring.ring, ring.tag)?;
        Ok(built)
    }

    /// Rings built so far.
    pub fn builds(&self) -> u64 {
        self.next_tag
    }

    fn cached(&self, entries: &[maglev::Entry], ring_size: u32) -> Option<usize> {
        self.rings.iter().position(|c| c.ring_size == ring_size && c.entries == entries)
    }

    /// Builds a ring and keeps it first (at index 0).
    fn build(&mut self, entries: Vec<maglev::Entry>, ring_size: u32) -> Result<(), MaglevError> {
        // The least recently used ring's memory is reused.
        let mut ring = if self.rings.len() >= RING_CACHE {
            self.rings.pop_back().map(|c| c.ring).unwrap_or_default()
        } else {
            Vec::new()
        };
        self.builder.build_into(&entries, ring_size, &mut ring)?;
        let slots = count_slots(&ring);
        self.next_tag += 1;
        self.rings.push_front(CachedRing { ring_size, entries, ring, slots, tag: self.next_tag });
        Ok(())
    }

    fn written(&self, id: u32) -> Option<lb_common::Backend> {
        self.written.get(id as usize).copied().flatten()
    }

    fn record(&mut self, id: u32, entry: lb_common::Backend) {
        let i = id as usize;
        if self.written.len() <= i {
            self.written.resize(i + 1, None);
        }
        self.written[i] = Some(entry);
    }

    /// Slots backend `id` got in the ring last built.
    pub fn slots_of(&self, id: u32) -> u32 {
        self.slots.get(id as usize).copied().unwrap_or(0)
    }

    /// Forgets what was written for backend `id`, removed (its id may be
    /// reused).
    pub fn forget(&mut self, id: u32) {
        if let Some(w) = self.written.get_mut(id as usize) {
            *w = None;
        }
    }
}
