//! The fast path's maps as the director and the installer write and read
//! them: one trait, implemented by the loaded program ([`FastPath`]) and by
//! an in-memory model of the same maps (`memory_maps`, for unit tests), so
//! that every decision about rings, regions and flips is tested without a
//! kernel.

use std::collections::HashMap;

use lb_common::{Backend, BackendRecord, Counters, Settings, Stat, VipKey};

use crate::fast_path::{AttachMode, FastPath, FastPathError, FastPathOptions};

/// The map operations of [`FastPath`] the agent's decisions use; see there
/// for what each does. Generic callers are monomorphized: nothing on the
/// path from a verdict to the fast path goes through a vtable.
pub trait FastPathMaps {
    /// Sizes fixed when the program was loaded.
    fn options(&self) -> FastPathOptions;
    fn set_settings(&mut self, settings: Settings) -> Result<(), FastPathError>;
    fn set_backend(&mut self, id: u32, backend: Backend) -> Result<(), FastPathError>;
    fn stage_vip(
        &mut self,
        keys: &[VipKey],
        vip_index: u32,
        flags: u32,
        ring: &[u32],
        tag: Option<u64>,
    ) -> Result<(), FastPathError>;
    fn preload_vip(&mut self, vip_index: u32, ring: &[u32], tag: u64) -> Result<bool, FastPathError>;
    fn unstage_vip(&mut self, vip_index: u32);
    fn publish(&mut self) -> Result<(), FastPathError>;
    fn stats(&self) -> Result<Vec<(Stat, Counters)>, FastPathError>;
    fn vip_counters(&self, vip_index: u32) -> Result<Counters, FastPathError>;
    fn backend_counters(&self, id: u32) -> Result<Counters, FastPathError>;
    fn flow_counts(&self) -> Result<HashMap<u32, u64>, FastPathError>;
    /// Where the program is attached, for the status report.
    fn attachments(&self) -> Vec<(String, AttachMode)>;
    /// Records what backend `id` stands for, where it survives the agent.
    fn set_record(&mut self, id: u32, record: BackendRecord) -> Result<(), FastPathError>;
    /// The records of the ids in use, left by the agent before this one.
    fn records(&self) -> Result<Vec<(u32, BackendRecord)>, FastPathError>;
    /// Backend `id`'s entry as the fast path reads it.
    fn backend(&self, id: u32) -> Result<Backend, FastPathError>;
    /// VIP indexes published by the agent before this one, not staged since.
    fn adopted_vips(&self) -> Vec<u32>;
}

impl FastPathMaps for FastPath {
    fn options(&self) -> FastPathOptions {
        FastPath::options(self)
    }

    fn set_settings(&mut self, settings: Settings) -> Result<(), FastPathError> {
        FastPath::set_settings(self, settings)
    }

    fn set_backend(&mut self, id: u32, backend: Backend) -> Result<(), FastPathError> {
        FastPath::set_backend(self, id, backend)
    }

    fn stage_vip(
        &mut self,
        keys: &[VipKey],
        vip_index: u32,
        flags: u32,
        ring: &[u32],
        tag: Option<u64>,
    ) -> Result<(), FastPathError> {
        FastPath::stage_vip(self, keys, vip_index, flags, ring, tag)
    }

    fn preload_vip(&mut self, vip_index: u32, ring: &[u32], tag: u64) -> Result<bool, FastPathError> {
        FastPath::preload_vip(self, vip_index, ring, tag)
    }

    fn unstage_vip(&mut self, vip_index: u32) {
        FastPath::unstage_vip(self, vip_index);
    }

    fn publish(&mut self) -> Result<(), FastPathError> {
        FastPath::publish(self)
    }

    fn stats(&self) -> Result<Vec<(Stat, Counters)>, FastPathError> {
        FastPath::stats(self)
    }

    fn vip_counters(&self, vip_index: u32) -> Result<Counters, FastPathError> {
        FastPath::vip_counters(self, vip_index)
    }

    fn backend_counters(&self, id: u32) -> Result<Counters, FastPathError> {
        FastPath::backend_counters(self, id)
    }

    fn flow_counts(&self) -> Result<HashMap<u32, u64>, FastPathError> {
        FastPath::flow_counts(self)
    }

    fn attachments(&self) -> Vec<(String, AttachMode)> {
        FastPath::attachments(self).map(|(iface, mode)| (iface.to_owned(), mode)).collect()
    }

    fn set_record(&mut self, id: u32, record: BackendRecord) -> Result<(), FastPathError> {
        FastPath::set_record(self, id, record)
    }

    fn records(&self) -> Result<Vec<(u32, BackendRecord)>, FastPathError> {
        FastPath::records(self)
    }

    fn backend(&self, id: u32) -> Result<Backend, FastPathError> {
        FastPath::backend(self, id)
    }

    fn adopted_vips(&self) -> Vec<u32> {
        FastPath::adopted_vips(self)
    }
}
