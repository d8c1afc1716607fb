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
    /// The last state changes, oldest first ([`super::events::EventLog`]).
    #[serde(default)]
    pub events: Vec<StatusEvent>,
    /// `[announce] table`; `None`: nothing is announced.
    #[serde(default)]
    pub announce_table: Option<u32>,
    /// Per VIP address, whether its route is in the announce table.
    #[serde(default)]
    pub announced: Vec<AnnounceStatus>,
    /// Addresses announced or withdrawn since the agent started.
    #[serde(default)]
    pub announce_changes: u64,
}

/// One VIP address in the announce table, or why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceStatus {
    pub address: IpAddr,
    pub announced: bool,
    /// Why it is withdrawn; empty while announced.
    pub why: String,
}

/// One state change: of what, from what to what, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub kind: EventKind,
    /// A backend as `ADDRESS on VIP`, a VIP by name, a VRRP instance by
    /// name, or the configuration file.
    pub subject: String,
    pub from: String,
    pub to: String,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Backend,
    Vip,
    Vrrp,
    /// A reload, taken or refused.
    Config,
    /// A VIP address announced to or withdrawn from the BGP daemon.
    Announce,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Backend => "backend",
            EventKind::Vip => "VIP",
            EventKind::Vrrp => "VRRP",
            EventKind::Config => "config",
            EventKind::Announce => "announce",
        }
    }
}

/// Changes `lb status` shows; the page and `--json` have them all.
const EVENTS_SHOWN: usize = 5;

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
            if let Some(table) = self.announce_table {
                let address = v.name.split('/').next().and_then(|a| a.parse::<std::net::SocketAddr>().ok());
                let found = self.announced.iter().find(|a| Some(a.address) == address.map(|a| a.ip()));
                let _ = match found {
                    Some(a) if a.announced => writeln!(out, "  BGP: announced (table {table})"),
                    Some(a) => writeln!(out, "  BGP: not announced: {}", a.why),
                    None => writeln!(out, "  BGP: not announced"),
                };
            }
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
        if !self.events.is_empty() {
            let _ = writeln!(out, "\nlast changes:");
            for e in self.events.iter().rev().take(EVENTS_SHOWN).rev() {
                let from = if e.from.is_empty() { String::new() } else { format!("{} -> ", e.from) };
                let reason = if e.reason.is_empty() { String::new() } else { format!(": {}", e.reason) };
                let _ = writeln!(
                    out,
                    "  {} {} {} {from}{}{reason}",
                    utc_time_of_day(e.time_ms),
                    e.kind.name(),
                    e.subject,
                    e.to
                );
            }
        }
        out
    }
}

/// `HH:MM:SS UTC`: the changes shown are recent, so the time of day places
/// them; a date-time crate for this alone would be more than it saves.
fn utc_time_of_day(unix_ms: u64) -> String {
    let s = unix_ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time_ms: u64, subject: &str) -> StatusEvent {
        StatusEvent {
            time_ms,
            kind: EventKind::Backend,
            subject: subject.to_owned(),
            from: "up".to_owned(),
            to: "down".to_owned(),
            reason: "check failed: connection refused".to_owned(),
        }
    }

    #[test]
    fn render_shows_the_last_changes() {
        let events = (0..8).map(|i| event(3_723_000 + i, &format!("10.0.0.{i} on 10.0.0.100:80/tcp"))).collect();
        let text = StatusReport { events, ..StatusReport::default() }.render();
        assert!(text.contains(
            "  01:02:03 UTC backend 10.0.0.7 on 10.0.0.100:80/tcp up -> down: check failed: connection refused\n"
        ));
        assert!(text.contains("10.0.0.3 on"));
        assert!(!text.contains("10.0.0.2 on"), "only the last {EVENTS_SHOWN}");
    }

    #[test]
    fn render_says_whether_each_vip_is_announced() {
        let vip = |name: &str| VipStatus { name: name.to_owned(), ..VipStatus::default() };
        let announced = |address: &str, yes: bool, why: &str| AnnounceStatus {
            address: address.parse().unwrap(),
            announced: yes,
            why: why.to_owned(),
        };
        let report = StatusReport {
            vips: vec![vip("10.0.0.1:80/tcp"), vip("[2001:db8::1]:443/tcp"), vip("10.0.0.3:53/udp")],
            announce_table: Some(200),
            announced: vec![announced("10.0.0.1", true, ""), announced("2001:db8::1", false, "quorum lost")],
            ..StatusReport::default()
        };
        let text = report.render();
        assert!(
            text.contains(
                "  BGP: announced (table 200)
"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  BGP: not announced: quorum lost
"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  BGP: not announced
"
            ),
            "{text}"
        );
        assert!(!StatusReport { vips: vec![vip("10.0.0.1:80/tcp")], ..report.clone() }.render().is_empty());
        let without = StatusReport { announce_table: None, ..report }.render();
        assert!(!without.contains("BGP"), "nothing about BGP without [announce]");
    }

    #[test]
    fn a_report_without_events_still_reads() {
        let json = r#"{"vips":[],"attached":[],"counters":[],"flows":0}"#;
        let r: StatusReport = serde_json::from_str(json).unwrap();
        assert!(r.events.is_empty());
        let e = serde_json::to_value(event(1, "x")).unwrap();
        assert_eq!(e["kind"], "backend");
    }
}
