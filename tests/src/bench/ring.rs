//! What a backend state change costs the agent: build a weighted Maglev ring
//! of 65537 slots and install it (stage the ring, publish the VIP table),
//! measured as one isolated change, as the agent meets them, after the
//! previous flip's grace period has passed.

use std::{
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lb_common::{BACKEND_F_ALIVE, Backend, DEFAULT_RING_SIZE, VIP_KIND_SERVICE, VipKey, proto};
use lb_userspace::{
    dataplane::{Dataplane, DataplaneOptions},
    maglev,
};

use super::median;

/// Median build and build + install times, in milliseconds, for `backends`.
pub fn measure(backends: u32, rounds: usize) -> anyhow::Result<(f64, f64)> {
    let mut dp =
        Dataplane::load(DataplaneOptions { max_vips: 1, max_ring_size: DEFAULT_RING_SIZE, flows_per_cpu: 1024 })
            .context("loading the fast path")?;
    let entries: Vec<maglev::Entry> = (1..=backends)
        .map(|id| maglev::Entry {
            key: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (id >> 16) as u16, id as u16).octets(),
            weight: 1 + id % 7,
            id,
        })
        .collect();
    for &maglev::Entry { id, .. } in &entries {
        dp.set_backend(id, Backend { mac: [2, 0, 0, 0, 0, 1], flags: BACKEND_F_ALIVE, vip_index: 0 })?;
    }
    let key = VipKey { addr: [0, 0, 0, 1], port: 80u16.to_be(), proto: proto::TCP, kind: VIP_KIND_SERVICE };
    let mut builder = maglev::Builder::new();
    let mut ring = Vec::new();
    let (mut build, mut total) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // A change of weight each round, so each ring differs from the last.
        let mut changed = entries.clone();
        let n = changed.len();
        changed[round % n].weight += 1;
        // Longer than a grace period (8-16 ms here): an isolated change.
        std::thread::sleep(Duration::from_millis(40));
        let started = Instant::now();
        builder.build_into(&changed, DEFAULT_RING_SIZE, &mut ring)?;
        let built = started.elapsed();
        dp.install_vip(&[key], 0, 0, &ring)?;
        build.push(built.as_secs_f64() * 1e3);
        total.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(&build), median(&total)))
}
