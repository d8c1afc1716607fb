//! What the agent's loop publishes for the HTTP listener, and what a scrape
//! makes of it: the slowly-changing state (VIPs, backends, their states and
//! weights, reloads) as of the last change, with every counter read again
//! from the maps at the time of the request.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use lb_common::{Counters, Stat};

use super::{WebError, counters::CounterSource};
use crate::{
    agent::status::{StatusReport, VrrpStatus},
    health::{StatusBoard, TargetId},
    vrrp::runtime::{InstanceStatus, StatusReader},
};

/// The agent's state as of its last change.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// What `lb status` shows, counters as they were at the change (a
    /// scrape reads them again) and without VRRP (read live from `vrrp`).
    pub report: StatusReport,
    /// Per VIP of `report`, in its order: what the maps know it by.
    pub vips: Vec<VipIds>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// A digest of the configuration in force, to tell directors apart
    /// that run different files.
    pub config_hash: u64,
    /// The largest backend id given out since the start: the forwarded
    /// packets of every backend that ever was are in ids up to it.
    pub max_backend_id: u32,
    pub vrrp: StatusReader,
}

/// A VIP's labels and index in the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipIds {
    pub index: u32,
    pub address: IpAddr,
    pub port: u16,
    pub proto: &'static str,
    /// Per backend of the report's VIP, in its order.
    pub backends: Vec<BackendIds>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendIds {
    pub id: u32,
    /// Changes of state (up, draining, down) the loop published.
    pub state_changes: u64,
}

/// A backend's last health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckInfo {
    pub took: Duration,
    /// Attempts since the check was (re)started.
    pub checks: u64,
}

/// A snapshot with everything that moves read now.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// What `lb status --json` prints.
    pub report: StatusReport,
    pub vrrp: Vec<InstanceStatus>,
    pub checks: HashMap<(u32, u32), CheckInfo>,
}

/// Reads the counters of `snapshot` from `maps`, the checks from `board`,
/// and the flow tables too when `with_flows` (they are large: the status
/// page wants them, a scrape does not). The same sums as
/// `Director::status`: a VIP's packets are those dropped at it plus its
/// backends', and `tx` is every backend's.
pub fn read(
    snapshot: &Snapshot,
    maps: &dyn CounterSource,
    board: Option<&StatusBoard>,
    with_flows: bool,
) -> Result<Live, WebError> {
    let mut report = snapshot.report.clone();
    let flow_counts = if with_flows { maps.flow_counts()? } else { HashMap::new() };
    // Every id ever given out, each read once: the backends' own counters
    // and, summed, the `tx` verdict (a backend removed keeps its packets).
    let backends = (0..=snapshot.max_backend_id).map(|id| maps.backend(id)).collect::<Result<Vec<_>, _>>()?;
    let of = |id: u32| backends.get(id as usize).copied().unwrap_or_default();
    for (v, ids) in report.vips.iter_mut().zip(&snapshot.vips) {
        let at_vip = maps.vip(ids.index)?;
        let (mut packets, mut bytes) = (at_vip.packets, at_vip.bytes);
        for (b, bid) in v.backends.iter_mut().zip(&ids.backends) {
            let c = of(bid.id);
            (b.packets, b.bytes) = (c.packets, c.bytes);
            b.flows = flow_counts.get(&bid.id).copied().unwrap_or(0);
            packets += c.packets;
            bytes += c.bytes;
        }
        (v.packets, v.bytes) = (packets, bytes);
    }
    let tx = backends
        .iter()
        .skip(1)
        .fold(Counters::default(), |a, c| Counters { packets: a.packets + c.packets, bytes: a.bytes + c.bytes });
    report.counters = Stat::ALL
        .iter()
        .map(|&s| Ok((s.name().to_owned(), if s == Stat::Tx { tx.packets } else { maps.stat(s)?.packets })))
        .collect::<Result<_, WebError>>()?;
    report.flows = flow_counts.values().sum();
    let vrrp = snapshot.vrrp.status();
    report.vrrp = vrrp.iter().map(VrrpStatus::from).collect();
    let mut checks = HashMap::new();
    for t in board.map(StatusBoard::all).unwrap_or_default() {
        if let Some(last) = &t.last {
            checks.insert(key(t.id), CheckInfo { took: last.took, checks: t.checks });
        }
    }
    Ok(Live { report, vrrp, checks })
}

/// The board's key for a backend: its VIP's index and its id.
pub fn key(id: TargetId) -> (u32, u32) {
    (id.vip, id.backend)
}
