//! What `lb status` shows: per VIP its backends with state and why,
//! configured and effective weight, share of ring slots, packets, bytes and
//! active flows, laid out the way `ipvsadm -Ln --stats` users read it.

use std::{fmt::Write as _, net::IpAddr};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub vips: Vec<VipStatus>,
    /// Interfaces the fast path is attached to, with the mode.
    pub attached: Vec<(String, String)>,
    /// Per-verdict and per-event counters of the fast path.
    pub counters: Vec<(String, u64)>,
    /// Entries in the flow tables, all CPUs.
    pub flows: u64,
    /// VRRP instances.
    #[serde(default)]
    pub vrrp: Vec<VrrpStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// keepalived's name of the state ([`crate::vrrp::State::name`]):
    /// MASTER, BACKUP, FAULT, or STOP before it started.
    pub state: String,
    pub priority: u8,
    pub effective_priority: u8,
    pub master: Option<IpAddr>,
    pub fault_reasons: Vec<String>,
    /// Adverts refused before the state machine, by reason (only non-zero).
    pub rejected: Vec<(String, u64)>,
    /// `virtual_routes` the kernel refused (each is logged with its error).
    #[serde(default)]
    pub route_errors: u64,
}

impl From<&crate::vrrp::runtime::InstanceStatus> for VrrpStatus {
    fn from(s: &crate::vrrp::runtime::InstanceStatus) -> Self {
        Self {
            name: s.name.clone(),
            interface: s.interface.clone(),
            vrid: s.vrid,
            state: s.state.name().to_owned(),
            priority: s.base_priority,
            effective_priority: s.effective_priority,
            master: s.master,
            fault_reasons: s.fault_reasons.clone(),
            rejected: s
                .rejected
                .by_reason()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
            route_errors: s.route_errors,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VipStatus {
    pub name: String,
    pub interface: String,
    pub hash: String,
    pub ring_size: u32,
    pub quorum: u64,
    pub live_weight: u64,
    pub quorum_up: bool,
    pub sorry_active: bool,
    pub packets: u64,
    pub bytes: u64,
    pub backends: Vec<BackendStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub address: IpAddr,
    pub sorry: bool,
    pub state: String,
    pub why: String,
    pub mac: Option<String>,
    pub configured_weight: u32,
    pub effective_weight: u32,
    pub slots: u32,
    /// Share of the ring's slots, in percent.
    pub share: f64,
    pub packets: u64,
    pub bytes: u64,
    /// Flows recorded for this backend in the flow tables.
    pub flows: u64,
}

impl StatusReport {
    /// The human table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let attached: Vec<String> = self.attached.iter().map(|(i, m)| format!("{i} ({m})")).collect();
        let _ = writeln!(out, "fast path: attached to {}; {} flows recorded", attached.join(", "), self.flows);
        for v in &self.vips {
            let quorum = if v.sorry_active {
                "quorum lost: sorry server serving".to_owned()
            } else if v.quorum_up {
                format!("quorum {}/{}", v.live_weight, v.quorum)
            } else {
                format!("quorum LOST {}/{}", v.live_weight, v.quorum)
            };
            let _ = writeln!(
                out,
                "\nVIP {} on {}  hash {}  ring {}  {quorum}  {} pkts {} bytes",
                v.name, v.interface, v.hash, v.ring_size, v.packets, v.bytes
            );
            let _ = writeln!(
                out,
                "  {:<28} {:<9} {:>6} {:>6} {:>7} {:>12} {:>14} {:>8}  why",
                "backend", "state", "weight", "eff", "share", "packets", "bytes", "flows"
            );
            for b in &v.backends {
                let name = if b.sorry { format!("{} (sorry)", b.address) } else { b.address.to_string() };
                let _ = writeln!(
                    out,
                    "  {:<28} {:<9} {:>6} {:>6} {:>6.2}% {:>12} {:>14} {:>8}  {}",
                    name, b.state, b.configured_weight, b.effective_weight, b.share, b.packets, b.bytes, b.flows, b.why
                );
            }
        }
        for v in &self.vrrp {
            let master = v.master.map_or_else(|| "unknown".to_owned(), |m| m.to_string());
            let rejected: Vec<String> = v.rejected.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(
                out,
                "\nVRRP {} on {} vrid {}: {}  priority {} (effective {})  master {master}{}{}{}",
                v.name,
                v.interface,
                v.vrid,
                v.state,
                v.priority,
                v.effective_priority,
                if v.fault_reasons.is_empty() {
                    String::new()
                } else {
                    format!("  fault: {}", v.fault_reasons.join("; "))
                },
                if rejected.is_empty() {
                    String::new()
                } else {
                    format!("  rejected adverts: {}", rejected.join(", "))
                },
                if v.route_errors == 0 {
                    String::new()
                } else {
                    format!("  refused routes: {} (see the log)", v.route_errors)
                },
            );
        }
        if !self.counters.is_empty() {
            let c: Vec<String> =
                self.counters.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(out, "\ncounters: {}", c.join("  "));
        }
        out
    }
}
