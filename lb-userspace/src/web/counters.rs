//! The fast path's counters as the HTTP listener reads them: its own handles
//! on the per-CPU counter maps and the flow table, so a scrape never waits for the agent's loop (nor
//! the loop for a scrape). The loaded program's maps are shared by file
//! descriptor; nothing here writes to them.

use std::collections::HashMap;

use aya::{
    Ebpf,
    maps::{Array, Map, MapData, PerCpuArray, PerCpuValues},
};
use lb_common::{Counters, FlowSet, Stat, names};

use super::WebError;

/// Where a scrape reads the counters: the loaded maps, or a fixed set in
/// tests.
pub trait CounterSource: Send + Sync {
    /// One `STATS` entry, all CPUs.
    fn stat(&self, stat: Stat) -> Result<Counters, WebError>;
    /// VIP `index`'s counters (the packets dropped at the VIP).
    fn vip(&self, index: u32) -> Result<Counters, WebError>;
    /// Backend `id`'s counters (the packets forwarded to it).
    fn backend(&self, id: u32) -> Result<Counters, WebError>;
    /// Flow-table entries per backend id, all CPUs. Reads the whole table.
    fn flow_counts(&self) -> Result<HashMap<u32, u64>, WebError>;
}

/// Read-only handles on the loaded program's counter maps.
pub struct CounterMaps {
    stats: PerCpuArray<MapData, Counters>,
    vips: PerCpuArray<MapData, Counters>,
    backends: PerCpuArray<MapData, Counters>,
    flows: Array<MapData, FlowSet>,
}

impl std::fmt::Debug for CounterMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CounterMaps")
    }
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> WebError {
    move |source| WebError::Map { name, source: Box::new(source) }
}

/// A second handle on map `name` of `ebpf`: a duplicate of its descriptor.
fn share<V: aya::Pod>(ebpf: &Ebpf, name: &'static str) -> Result<PerCpuArray<MapData, V>, WebError> {
    let Some(Map::PerCpuArray(data)) = ebpf.map(name) else { return Err(WebError::MissingMap { name }) };
    PerCpuArray::try_from(Map::PerCpuArray(duplicate(data, name)?)).map_err(map_err(name))
}

/// [`share`] for a plain array.
fn share_array<V: aya::Pod>(ebpf: &Ebpf, name: &'static str) -> Result<Array<MapData, V>, WebError> {
    let Some(Map::Array(data)) = ebpf.map(name) else { return Err(WebError::MissingMap { name }) };
    Array::try_from(Map::Array(duplicate(data, name)?)).map_err(map_err(name))
}

fn duplicate(data: &MapData, name: &'static str) -> Result<MapData, WebError> {
    let fd =
        std::os::fd::AsFd::as_fd(data.fd()).try_clone_to_owned().map_err(|source| WebError::Share { name, source })?;
    MapData::from_fd(fd).map_err(map_err(name))
}

impl CounterMaps {
    /// Handles on the counter maps of the loaded `ebpf`.
    pub fn open(ebpf: &Ebpf) -> Result<Self, WebError> {
        Ok(Self {
            stats: share(ebpf, names::STATS)?,
            vips: share(ebpf, names::VIP_STATS)?,
            backends: share(ebpf, names::BACKEND_STATS)?,
            flows: share_array(ebpf, names::FLOWS)?,
        })
    }
}

fn sum(values: &PerCpuValues<Counters>) -> Counters {
    values
        .iter()
        .fold(Counters::default(), |a, c| Counters { packets: a.packets + c.packets, bytes: a.bytes + c.bytes })
}

impl CounterSource for CounterMaps {
    fn stat(&self, stat: Stat) -> Result<Counters, WebError> {
        Ok(sum(&self.stats.get(&(stat as u32), 0).map_err(map_err(names::STATS))?))
    }

    fn vip(&self, index: u32) -> Result<Counters, WebError> {
        Ok(sum(&self.vips.get(&index, 0).map_err(map_err(names::VIP_STATS))?))
    }

    fn backend(&self, id: u32) -> Result<Counters, WebError> {
        Ok(sum(&self.backends.get(&id, 0).map_err(map_err(names::BACKEND_STATS))?))
    }

    fn flow_counts(&self) -> Result<HashMap<u32, u64>, WebError> {
        let mut counts = HashMap::new();
        for set in self.flows.iter() {
            let set = set.map_err(map_err(names::FLOWS))?;
            for way in set.ways.iter().filter(|w| w.key != 0) {
                *counts.entry(way.backend).or_default() += 1;
            }
        }
        Ok(counts)
    }
}
