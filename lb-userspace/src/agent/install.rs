//! Puts a service's state into the fast path's maps, in an order that never
//! shows a packet a half-made decision: backends that become usable are
//! written before the ring that names them, the ring is swapped in one
//! update, and backends that stop being usable are marked dead only after
//! the ring no longer names them.

use std::{collections::HashMap, time::Duration};

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

    /// Writes `service`'s backends and ring.
    pub fn install(&mut self, dp: &mut Dataplane, service: &Service) -> Result<InstallTime, InstallError> {
        let started = std::time::Instant::now();
        let vip = || service.name();
        let maps = |source| InstallError::Maps { vip: vip(), source };
        let (mut rising, mut falling) = (Vec::new(), Vec::new());
        for (id, entry) in service.entries() {
            match self.written.get(&id) {
                Some(old) if *old == entry => {}
                Some(old) if old.flags & lb_common::BACKEND_F_ALIVE != 0 && entry.flags & lb_common::BACKEND_F_ALIVE == 0 => {
                    falling.push((id, entry));
                }
                _ => rising.push((id, entry)),
            }
        }
        for &(id, entry) in &rising {
            dp.set_backend(id, entry).map_err(maps)?;
            self.written.insert(id, entry);
        }
        self.builder
            .build_into(&service.ring_entries(), service.vip.ring_size, &mut self.ring)
            .map_err(|source| InstallError::Ring { vip: vip(), source })?;
        let build = started.elapsed();
        self.slots.clear();
        for &id in &self.ring {
            *self.slots.entry(id).or_default() += 1;
        }
        dp.install_vip(&service.keys(), service.vip_index, service.flags(), &self.ring).map_err(maps)?;
        for &(id, entry) in &falling {
            dp.set_backend(id, entry).map_err(maps)?;
            self.written.insert(id, entry);
        }
        Ok(InstallTime { build, total: started.elapsed() })
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
