//! The fast path's maps as the director and the installer write and read
//! them: one trait, implemented by the loaded program ([`Dataplane`]) and by
//! an in-memory model of the same maps (`memory_maps`, for unit tests), so
//! that every decision about rings, regions and flips is tested without a
//! kernel.

use std::collections::HashMap;

use lb_common::{Backend, Counters, Settings, Stat, VipKey};

use crate::dataplane::{AttachMode, Dataplane, DataplaneError, DataplaneOptions};

/// The map operations of [`Dataplane`] the agent's decisions use; see there
/// for what each does. Generic callers are monomorphized: nothing on the
/// path from a verdict to the fast path goes through a vtable.
pub trait FastPathMaps {
    /// Sizes fixed when the program was loaded.
    fn options(&self) -> DataplaneOptions;
    fn set_settings(&mut self, settings: Settings) -> Result<(), DataplaneError>;
    fn set_backend(&mut self, id: u32, backend: Backend) -> Result<(), DataplaneError>;
    fn stage_vip(
        &mut self,
        keys: &[VipKey],
        vip_index: u32,
        flags: u32,
        ring: &[u32],
        tag: Option<u64>,
    ) -> Result<(), DataplaneError>;
    fn preload_vip(&mut self, vip_index: u32, ring: &[u32], tag: u64) -> Result<bool, DataplaneError>;
    fn unstage_vip(&mut self, vip_index: u32);
    fn publish(&mut self) -> Result<(), DataplaneError>;
    fn stats(&self) -> Result<Vec<(Stat, Counters)>, DataplaneError>;
    fn vip_counters(&self, vip_index: u32) -> Result<Counters, DataplaneError>;
    fn backend_counters(&self, id: u32) -> Result<Counters, DataplaneError>;
    fn flow_counts(&self) -> Result<HashMap<u32, u64>, DataplaneError>;
    /// Where the program is attached, for the status report.
    fn attachments(&self) -> Vec<(String, AttachMode)>;
}

impl FastPathMaps for Dataplane {
    fn options(&self) -> DataplaneOptions {
        Dataplane::options(self)
    }

    fn set_settings(&mut self, settings: Settings) -> Result<(), DataplaneError> {
        Dataplane::set_settings(self, settings)
    }

    fn set_backend(&mut self, id: u32, backend: Backend) -> Result<(), DataplaneError> {
        Dataplane::set_backend(self, id, backend)
    }

    fn stage_vip(
        &mut self,
        keys: &[VipKey],
        vip_index: u32,
        flags: u32,
        ring: &[u32],
        tag: Option<u64>,
    ) -> Result<(), DataplaneError> {
        Dataplane::stage_vip(self, keys, vip_index, flags, ring, tag)
    }

    fn preload_vip(&mut self, vip_index: u32, ring: &[u32], tag: u64) -> Result<bool, DataplaneError> {
        Dataplane::preload_vip(self, vip_index, ring, tag)
    }

    fn unstage_vip(&mut self, vip_index: u32) {
        Dataplane::unstage_vip(self, vip_index);
    }

    fn publish(&mut self) -> Result<(), DataplaneError> {
        Dataplane::publish(self)
    }

    fn stats(&self) -> Result<Vec<(Stat, Counters)>, DataplaneError> {
        Dataplane::stats(self)
    }

    fn vip_counters(&self, vip_index: u32) -> Result<Counters, DataplaneError> {
        Dataplane::vip_counters(self, vip_index)
    }

    fn backend_counters(&self, id: u32) -> Result<Counters, DataplaneError> {
        Dataplane::backend_counters(self, id)
    }

    fn flow_counts(&self) -> Result<HashMap<u32, u64>, DataplaneError> {
        Dataplane::flow_counts(self)
    }

    fn attachments(&self) -> Vec<(String, AttachMode)> {
        Dataplane::attachments(self).map(|(iface, mode)| (iface.to_owned(), mode)).collect()
    }
}
