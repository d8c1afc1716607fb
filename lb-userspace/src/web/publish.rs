//! The agent's side of the snapshot: after each change the loop hands the
//! director to [`Publisher::publish`], which copies what the HTTP listener
//! shows (no map is read: that is the listener's job, at request time) and
//! sends it over a `watch` channel, the latest replacing the one before.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use md5::{Digest, Md5};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::watch;
use tracing::warn;

use super::snapshot::{BackendIds, Snapshot, VipIds};
use crate::{
    agent::{director::Director, maps::FastPathMaps},
    vrrp::runtime::VrrpHandle,
};

/// Keeps what the loop publishes, and what it counts between publishes.
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<Arc<Snapshot>>,
    /// Per (VIP, backend): its state when last published, and its changes.
    states: HashMap<(String, IpAddr), (&'static str, u64)>,
    reloads_ok: u64,
    reloads_failed: u64,
    max_backend_id: u32,
    /// The last install seen, to count each one once.
    last_install: Option<(Duration, Duration, Duration)>,
    publish_seconds: Histogram,
    /// What the announcer said last: table, per address, changes.
    announce: (Option<u32>, Vec<crate::agent::status::AnnounceStatus>, u64),
}

impl Publisher {
    /// A publisher with nothing published yet, and the receiving end.
    pub fn new() -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let publisher = Self {
            tx,
            states: HashMap::new(),
            reloads_ok: 0,
            reloads_failed: 0,
            max_backend_id: 0,
            last_install: None,
            // 50 us to 0.4 s: a flip of one VIP to a rebuild of hundreds.
            publish_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 14)),
            announce: (None, Vec::new(), 0),
        };
        (publisher, rx)
    }

    /// How long the fast path's publishes took (the installs the loop saw).
    pub fn publish_seconds(&self) -> Histogram {
        self.publish_seconds.clone()
    }

    /// What the next publish shows of the announce table
    /// ([`crate::agent::announcing::Announcer::status`]).
    pub fn set_announce(&mut self, status: (Option<u32>, Vec<crate::agent::status::AnnounceStatus>, u64)) {
        self.announce = status;
    }

    /// Counts a reload, taken or refused.
    pub fn reloaded(&mut self, ok: bool) {
        if ok {
            self.reloads_ok += 1;
        } else {
            self.reloads_failed += 1;
        }
    }

    /// Publishes the director's state if an install happened since the last
    /// call: what health and neighbour events change reaches the fast path
    /// through one.
    pub fn publish_if_installed<M: FastPathMaps>(&mut self, director: &Director<M>, vrrp: Option<&VrrpHandle>) {
        if director.last_install.map(|t| (t.withdraw, t.build, t.total)) != self.last_install {
            self.publish(director, vrrp);
        }
    }

    /// Publishes the director's state and the running VRRP instances.
    pub fn publish<M: FastPathMaps>(&mut self, director: &Director<M>, vrrp: Option<&VrrpHandle>) {
        let install = director.last_install.map(|t| (t.withdraw, t.build, t.total));
        if install != self.last_install
            && let Some(t) = director.last_install
        {
            self.publish_seconds.observe(t.total.as_secs_f64());
        }
        self.last_install = install;
        let mut report = match director.layout() {
            Ok(report) => report,
            Err(e) => return warn!("the HTTP listener's snapshot was not updated: {e}"),
        };
        let mut states = HashMap::new();
        let mut vips = Vec::new();
        for (s, v) in director.services().iter().zip(&report.vips) {
            let mut backends = Vec::new();
            for (b, shown) in s.backends.iter().chain(&s.sorry).zip(&v.backends) {
                let state = b.state().name();
                let changes = match self.states.get(&(v.name.clone(), b.address)) {
                    Some(&(before, n)) => n + u64::from(before != state),
                    None => 0,
                };
                states.insert((v.name.clone(), shown.address), (state, changes));
                backends.push(BackendIds { id: b.id, state_changes: changes });
                self.max_backend_id = self.max_backend_id.max(b.id);
            }
            vips.push(VipIds {
                index: s.vip_index,
                address: s.vip.address,
                port: s.vip.port,
                proto: s.vip.protocol.name(),
                backends,
            });
        }
        self.states = states;
        (report.announce_table, report.announced, report.announce_changes) = self.announce.clone();
        let snapshot = Snapshot {
            report,
            vips,
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            config_hash: config_hash(director.config()),
            max_backend_id: self.max_backend_id,
            vrrp: vrrp.map(VrrpHandle::status_reader).unwrap_or_default(),
        };
        self.tx.send_replace(Arc::new(snapshot));
    }
}

/// The first 48 bits of an MD5 digest of the validated configuration: a
/// gauge holds them exactly, and two directors running one file agree.
/// Hand-written over the `Debug` form: the configuration is not
/// `Serialize`, and a digest of the file's text would differ for a comment.
fn config_hash(config: &crate::config::Config) -> u64 {
    let text = format!("{:?}", (&config.global, &config.vips, &config.vrrp, &config.vrrp_sync_groups));
    let digest = Md5::digest(text.as_bytes());
    digest[..6].iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}
