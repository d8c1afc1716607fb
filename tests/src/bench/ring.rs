//! What a backend state change costs the agent: build a weighted Maglev ring
//! of 65537 slots and install it (stage the ring, publish the VIP table),
//! measured as one isolated change, as the agent meets them, after the
//! previous flip's grace period has passed; and, through the agent's own
//! `Director`, how long a failed check takes to reach the fast path (the
//! backend marked dead, before its ring is rebuilt) and a passing one to
//! put the backend back.

use std::{
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lb_common::{BACKEND_F_ALIVE, Backend, DEFAULT_RING_SIZE, VIP_KIND_SERVICE, VipKey, proto};
use lb_userspace::{
    agent::director::Director,
    config::Config,
    fast_path::{FastPath, FastPathOptions},
    maglev,
};

use super::median;

/// Median build and build + install times, in milliseconds, for `backends`.
pub fn measure(backends: u32, rounds: usize) -> anyhow::Result<(f64, f64)> {
    let mut dp = FastPath::load(FastPathOptions { max_vips: 1, max_ring_size: DEFAULT_RING_SIZE, flows_per_cpu: 1024 })
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

/// One backend of `backends` fails its check and later passes it again, in
/// the agent's `Director`, `rounds` times: how long from the failed verdict
/// to the backend marked dead in the fast path (`Director::on_health` and the
/// withdraw step of `flush`) and to the whole update (ring rebuilt and
/// published), and from the passing verdict to its ring published again.
pub fn decision(backends: u32, rounds: usize) -> anyhow::Result<Decision> {
    let mut toml = String::from(
        "[[vip]]\naddress = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\ninterface = \"lo\"\n\n[vip.check]\ntype = \"tcp\"\n",
    );
    for i in 0..backends {
        toml.push_str(&format!(
            "\n[[vip.backend]]\naddress = \"10.1.{}.{}\"\nweight = {}\n",
            i / 250,
            1 + i % 250,
            1 + i % 7
        ));
    }
    let config = Config::from_str(&toml, "bench.toml").context("the bench's configuration")?;
    let dp = FastPath::load(FastPathOptions { max_vips: 1, max_ring_size: DEFAULT_RING_SIZE, flows_per_cpu: 1024 })
        .context("loading the fast path")?;
    let mut director = Director::new(config, dp)?;
    let addresses: Vec<_> = director.services()[0].backends.iter().map(|b| (b.id, b.address)).collect();
    for (i, &(_, address)) in addresses.iter().enumerate() {
        director.on_mac("lo", address, Some([2, 0, 0, 1, (i >> 8) as u8, i as u8]), "bench")?;
    }
    for &(id, _) in &addresses {
        director.on_health(id, true, None, "bench")?;
    }
    director.flush()?;
    let (mut withdraw, mut total, mut back, mut ahead) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (id, _) = addresses[round * 7 % addresses.len()];
        std::thread::sleep(Duration::from_millis(40));
        let started = Instant::now();
        director.on_health(id, false, None, "bench: check failed")?;
        let decided = started.elapsed();
        let t = director.flush()?.context("a failed backend changes the fast path")?;
        withdraw.push((decided + t.withdraw).as_secs_f64() * 1e6);
        total.push((decided + t.total).as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(40));
        let started = Instant::now();
        director.on_health(id, true, None, "bench")?;
        director.flush()?.context("a returning backend changes the fast path")?;
        back.push(started.elapsed().as_secs_f64() * 1e3);
        // Another backend fails with a fall of 2: its first failure's
        // heads-up builds the ring ahead (untimed; the agent does it a
        // delay_before_retry before the verdict), then the verdict.
        let (id, _) = addresses[(round * 7 + 3) % addresses.len()];
        std::thread::sleep(Duration::from_millis(40));
        director.prepare(id, false, None, Instant::now())?;
        std::thread::sleep(Duration::from_millis(40));
        let started = Instant::now();
        director.on_health(id, false, None, "bench: check failed")?;
        director.flush()?.context("a failed backend changes the fast path")?;
        ahead.push(started.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(40));
        director.on_health(id, true, None, "bench")?;
        director.flush()?.context("a returning backend changes the fast path")?;
    }
    Ok(Decision {
        withdraw_us: median(&withdraw),
        ring_ms: median(&total),
        back_ms: median(&back),
        ahead_ms: median(&ahead),
    })
}

/// What [`decision`] measured, medians.
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    /// A failed check to the backend marked dead in the fast path.
    pub withdraw_us: f64,
    /// To the ring without it published.
    pub ring_ms: f64,
    /// The backend passes its check again: to the ring with it published
    /// (the ring it had before, kept by the installer).
    pub back_ms: f64,
    /// A failed verdict whose ring was built ahead on the heads-up of the
    /// failure before it (`fall` 2 or more): to the ring without it published.
    pub ahead_ms: f64,
}
