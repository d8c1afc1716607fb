//! The Prometheus exposition: a [`Collector`] over one [`Snapshot`] and the
//! counters read for it ([`Live`]), encoded at scrape time, so each value
//! comes from the one place that counts it. Names follow the exporters
//! operators already run: per-VIP and per-backend traffic like the LVS
//! exporters', VRRP like keepalived's (`lb_vrrp_state` 0 INIT, 1 BACKUP,
//! 2 MASTER, 3 FAULT, the same counters under `lb_vrrp_`).

use std::fmt;

use lb_common::Stat;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge, histogram::Histogram},
    registry::Registry,
};

use super::snapshot::{Live, Snapshot};
use crate::vrrp::State as VrrpState;

/// `Content-Type` of the OpenMetrics text, for scrapers that ask for it.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the Prometheus text format (0.0.4), the default.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;

/// One value of a family.
#[derive(Clone, Copy, Debug)]
enum Value {
    Count(u64),
    Gauge(i64),
    Seconds(f64),
}

/// The whole exposition of one scrape.
#[derive(Debug)]
pub struct Scrape {
    pub snapshot: std::sync::Arc<Snapshot>,
    pub live: Live,
    /// How long the fast path's publishes took.
    pub publish_seconds: Histogram,
}

impl Scrape {
    /// The exposition: OpenMetrics text when `openmetrics`, else the
    /// Prometheus text format.
    pub fn encode(self, openmetrics: bool) -> Result<String, fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        }
        Ok(out)
    }
}

/// Writes one family; counters get their `_total` from the encoder.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels, Value)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        let sample = metric.encode_family(&labels)?;
        match value {
            Value::Count(n) => ConstCounter::new(n).encode(sample)?,
            Value::Gauge(n) => ConstGauge::new(n).encode(sample)?,
            Value::Seconds(s) => ConstGauge::new(s).encode(sample)?,
        }
    }
    Ok(())
}

/// keepalived's encoding of a VRRP state.
pub fn vrrp_state_number(state: VrrpState) -> i64 {
    match state {
        VrrpState::Initialize => 0,
        VrrpState::Backup => 1,
        VrrpState::Master => 2,
        VrrpState::Fault => 3,
    }
}

/// Verdicts (every packet counts in one) and events, apart: their sums
/// mean different things.
fn is_verdict(stat: Stat) -> bool {
    match stat {
        Stat::PassNotIp
        | Stat::PassNotVip
        | Stat::PassNoIface
        | Stat::Tx
        | Stat::DropNoBackend
        | Stat::DropMalformed
        | Stat::PassMalformed => true,
        Stat::FlowMiss | Stat::FlowStale | Stat::FloodSkip | Stat::Fragment | Stat::IcmpError | Stat::RingRetry => {
            false
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        use Value::{Count, Gauge as G, Seconds};
        let (snap, live) = (&*self.snapshot, &self.live);
        let report = &live.report;

        // Traffic per VIP and backend.
        let vip_labels = |i: usize| -> Labels {
            let v = &snap.vips[i];
            vec![("vip", v.address.to_string()), ("port", v.port.to_string()), ("proto", v.proto.to_owned())]
        };
        let vips: Vec<(Labels, &crate::agent::status::VipStatus)> = report
            .vips
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < snap.vips.len())
            .map(|(i, v)| (vip_labels(i), v))
            .collect();
        // (labels, backend status, ids), one per (VIP, backend address): a
        // sorry server that is also a backend is shown once.
        let mut backends = Vec::new();
        for (i, (labels, v)) in vips.iter().enumerate() {
            let mut seen = Vec::new();
            for (b, ids) in v.backends.iter().zip(&snap.vips[i].backends) {
                if seen.contains(&b.address) {
                    continue;
                }
                seen.push(b.address);
                let mut l = labels.clone();
                l.push(("backend", b.address.to_string()));
                backends.push((l, b, *ids, snap.vips[i].index));
            }
        }
        family(
            &mut e,
            "lb_vip_packets",
            "Packets to the VIP: forwarded to its backends or dropped at it.",
            Counter,
            vips.iter().map(|(l, v)| (l.clone(), Count(v.packets))),
        )?;
        family(
            &mut e,
            "lb_vip_bytes",
            "Bytes to the VIP: forwarded to its backends or dropped at it.",
            Counter,
            vips.iter().map(|(l, v)| (l.clone(), Count(v.bytes))),
        )?;
        family(
            &mut e,
            "lb_backend_packets",
            "Packets forwarded to the backend.",
            Counter,
            backends.iter().map(|(l, b, ..)| (l.clone(), Count(b.packets))),
        )?;
        family(
            &mut e,
            "lb_backend_bytes",
            "Bytes forwarded to the backend.",
            Counter,
            backends.iter().map(|(l, b, ..)| (l.clone(), Count(b.bytes))),
        )?;
        let stats = |verdicts: bool| {
            let key = if verdicts { "reason" } else { "event" };
            Stat::ALL.iter().filter(move |s| is_verdict(**s) == verdicts).filter_map(move |s| {
                let n = report.counters.iter().find(|(k, _)| k == s.name())?.1;
                Some((vec![(key, s.name().to_owned())], Count(n)))
            })
        };
        family(
            &mut e,
            "lb_packets",
            "Packets the fast path saw, by verdict reason: each packet counts once.",
            Counter,
            stats(true),
        )?;
        family(
            &mut e,
            "lb_fast_path_events",
            "Events on the fast path (flow-table misses, stale flows, flood guard, ring retries, ...).",
            Counter,
            stats(false),
        )?;

        // VIP and backend state.
        family(
            &mut e,
            "lb_vip_announced",
            "1 while the VIP address's route is in the announce table, so the BGP daemon announces it.",
            Gauge,
            report.announced.iter().map(|a| (vec![("vip", a.address.to_string())], G(a.announced.into()))),
        )?;
        family(
            &mut e,
            "lb_announce_changes",
            "VIP addresses announced or withdrawn since the agent started.",
            Counter,
            report.announce_table.map(|_| (Vec::new(), Count(report.announce_changes))),
        )?;
        family(
            &mut e,
            "lb_vip_quorum_up",
            "1 while the VIP's live weight meets its quorum.",
            Gauge,
            vips.iter().map(|(l, v)| (l.clone(), G(v.quorum_up.into()))),
        )?;
        family(
            &mut e,
            "lb_vip_sorry_active",
            "1 while the sorry server takes the VIP's new flows.",
            Gauge,
            vips.iter().map(|(l, v)| (l.clone(), G(v.sorry_active.into()))),
        )?;
        family(
            &mut e,
            "lb_vip_live_weight",
            "Sum of the weights of the VIP's live backends.",
            Gauge,
            vips.iter().map(|(l, v)| (l.clone(), G(i64::try_from(v.live_weight).unwrap_or(i64::MAX)))),
        )?;
        family(
            &mut e,
            "lb_backend_up",
            "1 when the backend is up (in the ring).",
            Gauge,
            backends.iter().map(|(l, b, ..)| (l.clone(), G((b.state == "up").into()))),
        )?;
        family(
            &mut e,
            "lb_backend_drained",
            "1 when the backend is draining: no new flows, established ones stay.",
            Gauge,
            backends.iter().map(|(l, b, ..)| (l.clone(), G((b.state == "draining").into()))),
        )?;
        family(
            &mut e,
            "lb_backend_weight",
            "The backend's configured weight.",
            Gauge,
            backends.iter().map(|(l, b, ..)| (l.clone(), G(b.configured_weight.into()))),
        )?;
        family(
            &mut e,
            "lb_backend_effective_weight",
            "The backend's weight in the ring now (health, drain and operator weight applied).",
            Gauge,
            backends.iter().map(|(l, b, ..)| (l.clone(), G(b.effective_weight.into()))),
        )?;
        family(
            &mut e,
            "lb_backend_state_changes",
            "Changes of the backend's state (up, draining, down).",
            Counter,
            backends.iter().map(|(l, _, ids, _)| (l.clone(), Count(ids.state_changes))),
        )?;
        let checked: Vec<_> = backends
            .iter()
            .filter_map(|(l, _, ids, vip)| live.checks.get(&(*vip, ids.id)).map(|c| (l.clone(), *c)))
            .collect();
        family(
            &mut e,
            "lb_backend_check_duration_seconds",
            "How long the backend's last health check took.",
            Gauge,
            checked.iter().map(|(l, c)| (l.clone(), Seconds(c.took.as_secs_f64()))),
        )?;
        family(
            &mut e,
            "lb_backend_checks",
            "Health checks of the backend since its check (re)started.",
            Counter,
            checked.iter().map(|(l, c)| (l.clone(), Count(c.checks))),
        )?;

        // VRRP, as keepalived's exporter names it.
        let vrrp: Vec<(Labels, &crate::vrrp::runtime::InstanceStatus)> = live
            .vrrp
            .iter()
            .map(|s| (vec![("iname", s.name.clone()), ("intf", s.interface.clone()), ("vrid", s.vrid.to_string())], s))
            .collect();
        family(
            &mut e,
            "lb_vrrp_state",
            "VRRP state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.",
            Gauge,
            vrrp.iter().map(|(l, s)| (l.clone(), G(vrrp_state_number(s.state)))),
        )?;
        family(
            &mut e,
            "lb_vrrp_priority",
            "The instance's effective priority (tracking applied).",
            Gauge,
            vrrp.iter().map(|(l, s)| (l.clone(), G(s.effective_priority.into()))),
        )?;
        type Read = fn(&crate::vrrp::runtime::InstanceStatus) -> u64;
        let counters: [(&str, &str, Read); 18] = [
            ("lb_vrrp_advertisements_received", "Adverts received that reached the state machine.", |s| {
                s.counters.adverts_received
            }),
            ("lb_vrrp_advertisements_sent", "Adverts sent, priority 0 included.", |s| s.counters.adverts_sent),
            ("lb_vrrp_become_master", "Transitions to MASTER.", |s| s.counters.became_master),
            ("lb_vrrp_release_master", "Transitions out of MASTER.", |s| s.counters.released_master),
            ("lb_vrrp_priority_zero_received", "Adverts with priority 0 received.", |s| {
                s.counters.priority_zero_received
            }),
            ("lb_vrrp_priority_zero_sent", "Adverts with priority 0 sent.", |s| s.counters.priority_zero_sent),
            ("lb_vrrp_advertisements_interval_errors", "Adverts whose interval is not ours (VRRPv2).", |s| {
                s.counters.discarded_interval_mismatch
            }),
            ("lb_vrrp_authentication_invalid", "Adverts refused for an unknown authentication type.", |s| {
                s.rejected.auth_invalid
            }),
            ("lb_vrrp_authentication_mismatch", "Adverts refused for another authentication type than ours.", |s| {
                s.rejected.auth_mismatch
            }),
            ("lb_vrrp_authentication_failure", "Adverts refused for a wrong password.", |s| {
                s.rejected.bad_auth.saturating_sub(s.rejected.auth_invalid + s.rejected.auth_mismatch)
            }),
            ("lb_vrrp_ip_ttl_errors", "Adverts refused for a TTL or hop limit other than 255.", |s| s.rejected.bad_ttl),
            ("lb_vrrp_address_list_errors", "Adverts refused for an address list unlike ours.", |s| {
                s.rejected.address_mismatch
            }),
            ("lb_vrrp_packet_length_errors", "Adverts refused for their length.", |s| s.rejected.bad_length),
            ("lb_vrrp_version_errors", "Adverts refused for their VRRP version.", |s| s.rejected.bad_version),
            ("lb_vrrp_checksum_errors", "Adverts refused for their checksum.", |s| s.rejected.bad_checksum),
            (
                "lb_vrrp_invalid_type_received",
                "Packets refused as malformed (not an advert, VRID or interval 0).",
                |s| s.rejected.malformed,
            ),
            ("lb_vrrp_unknown_peer_errors", "Adverts refused from an address that is not a unicast peer.", |s| {
                s.rejected.unknown_peer
            }),
            ("lb_vrrp_vrid_errors", "Adverts for a VRID none of the agent's instances on the interface runs.", |s| {
                s.other_vrid
            }),
        ];
        for (name, help, read) in counters {
            family(&mut e, name, help, Counter, vrrp.iter().map(|(l, s)| (l.clone(), Count(read(s)))))?;
        }

        // The agent.
        family(
            &mut e,
            "lb_build_info",
            "The agent's version.",
            Gauge,
            [(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], G(1))],
        )?;
        family(
            &mut e,
            "lb_config_hash",
            "A digest of the configuration in force (48 bits).",
            Gauge,
            [(Labels::new(), G(i64::try_from(snap.config_hash).unwrap_or(0)))],
        )?;
        family(
            &mut e,
            "lb_reloads",
            "Configuration reloads, by result.",
            Counter,
            [
                (vec![("result", "ok".to_owned())], Count(snap.reloads_ok)),
                (vec![("result", "failed".to_owned())], Count(snap.reloads_failed)),
            ],
        )?;
        family(
            &mut e,
            "lb_fast_path_attached",
            "1 per interface the fast path is attached to, with the mode.",
            Gauge,
            report.attached.iter().map(|(i, m)| (vec![("interface", i.clone()), ("mode", m.clone())], G(1))),
        )?;
        let publish = e.encode_descriptor(
            "lb_ring_publish_duration_seconds",
            "How long each publish of new rings and VIP table to the fast path took.",
            None,
            self.publish_seconds.metric_type(),
        )?;
        self.publish_seconds.encode(publish)
    }
}

#[cfg(test)]
pub(crate) mod tests;
