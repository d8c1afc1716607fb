//! Puts a service's state into the fast path's maps, in an order that never
//! shows a packet a half-made decision: backends that become usable are
//! written before the ring that names them, the ring is swapped in one
//! update, and backends that stop being usable are marked dead only after
//! the ring no longer names them.

use std::{collections::HashMap, time::Duration};

use lb_common::BACKEND_F_ALIVE;

use super::service::Service;
use crate::{
    dataplane::{Dataplane, DataplaneError},
    maglev::{self, MaglevError},
};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("building the ring of {vip}: {source}")]
    Ring { vip: String, source: MaglevError },
    #[error("writing the maps for {vip}: {source}")]
    Maps { vip: String, source: DataplaneError },
}

/// Remembers what the maps hold, so only changes are written.
#[derive(Debug, Default)]
pub struct Installer {
    builder: maglev::Builder,
    ring: Vec<u32>,
    written: HashMap<u32, lb_common::Backend>,
    /// Slots per backend id in the ring last built.
    slots: HashMap<u32, u32>,
}

/// A staged service: what to do after the publish.
#[derive(Debug)]
pub struct Staged {
    falling: Vec<(u32, lb_common::Backend)>,
    build: Duration,
    started: std::time::Instant,
    vip: String,
}

/// How long an install took, for logs and the bench.
#[derive(Clone, Copy, Debug, Default)]
pub struct InstallTime {
    pub build: Duration,
    pub total: Duration,
}

impl Installer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the backends of `service` that become usable and stages its
    /// new ring; returns the backend entries to write after the publish (the
    /// ones that stop being usable). Nothing changes for packets until the
    /// caller publishes.
    pub fn stage(&mut self, dp: &mut Dataplane, service: &Service) -> Result<Staged, InstallError> {
        let started = std::time::Instant::now();
        let vip = || service.name();
        let maps = |source| InstallError::Maps { vip: vip(), source };
        let mut falling = Vec::new();
        for (id, entry) in service.entries() {
            match self.written.get(&id) {
                Some(old) if *old == entry => {}
                Some(old) if old.flags & BACKEND_F_ALIVE != 0 && entry.flags & BACKEND_F_ALIVE == 0 => {
                    falling.push((id, entry));
                }
                _ => {
                    dp.set_backend(id, entry).map_err(maps)?;
                    self.written.insert(id, entry);
                }
            }
        }
        self.builder
            .build_into(&service.ring_entries(), service.vip.ring_size, &mut self.ring)
            .map_err(|source| InstallError::Ring { vip: vip(), source })?;
        let build = started.elapsed();
        for &id in &service.ids() {
            self.slots.insert(id, 0);
        }
        for &id in &self.ring {
            if id != 0 {
                *self.slots.entry(id).or_default() += 1;
            }
        }
        dp.stage_vip(&service.keys(), service.vip_index, service.flags(), &self.ring).map_err(maps)?;
        Ok(Staged { falling, build, started, vip: service.name() })
    }

    /// After the publish: marks dead the backends the new rings no longer
    /// name, so flows recorded for them are re-hashed.
    pub fn finish(&mut self, dp: &mut Dataplane, staged: Staged) -> Result<InstallTime, InstallError> {
        for (id, entry) in staged.falling {
            dp.set_backend(id, entry).map_err(|source| InstallError::Maps { vip: staged.vip.clone(), source })?;
            self.written.insert(id, entry);
        }
        Ok(InstallTime { build: staged.build, total: staged.started.elapsed() })
    }

    /// Stage, publish and finish one service.
    pub fn install(&mut self, dp: &mut Dataplane, service: &Service) -> Result<InstallTime, InstallError> {
        let staged = self.stage(dp, service)?;
        dp.publish().map_err(|source| InstallError::Maps { vip: service.name(), source })?;
        self.finish(dp, staged)
    }

    /// Slots backend `id` got in the ring last built.
    pub fn slots_of(&self, id: u32) -> u32 {
        self.slots.get(&id).copied().unwrap_or(0)
    }

    /// Forgets a removed service's backends (their ids may be reused).
    pub fn forget(&mut self, service: &Service) {
        for (id, _) in service.entries() {
            self.written.remove(&id);
        }
    }
}
