//! What the health checks and the neighbour watcher watch, derived from the
//! director's services: at start-up, and for a reload from the services it
//! plans, before anything switches.

use std::net::IpAddr;

use super::service::Service;
use crate::health::{Target, TargetId};

/// One health target per checked backend, keyed by its fast-path id. A
/// target starts in the state the director holds for its backend: the
/// monitor reports transitions only, so a check restarted by a reload (its
/// settings changed) that started up for a backend the director holds down
/// would never report it up again.
pub fn health_targets(services: &[Service]) -> Vec<Target> {
    let mut out = Vec::new();
    for s in services {
        for (b, cfg) in s.backends.iter().zip(&s.vip.backends) {
            if let Some(check) = &cfg.check {
                let id = TargetId { vip: s.vip_index, backend: b.id };
                out.push(Target { initially_up: b.healthy, ..Target::new(id, b.address, check.clone()) });
            }
        }
    }
    out
}

/// Every backend's address on its VIP's interface (by `ifindex`, which
/// resolves a name; VIPs on an interface it does not know are left out): DR
/// needs their MACs there.
pub fn neighbour_targets(services: &[Service], ifindex: impl Fn(&str) -> Option<u32>) -> Vec<(u32, IpAddr)> {
    let mut out = Vec::new();
    for s in services {
        let Some(ifindex) = ifindex(&s.vip.interface) else { continue };
        out.extend(s.backends.iter().chain(&s.sorry).map(|b| (ifindex, b.address)));
    }
    out.sort();
    out.dedup();
    out
}
