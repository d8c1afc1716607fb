//! The agent's side of `[announce]`: gathers what the decision needs from
//! the director, VRRP and the fast-path probe, keeps the announce table in
//! step ([`crate::announce::Table`]) and retries when the kernel refuses.
//! The loop calls [`Announcer::update`] after every change; it touches the
//! kernel only when the routes wanted differ from those last put there.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{
    maps::FastPathMaps,
    service::Service,
    status::{AnnounceStatus, EventKind},
};
use crate::{
    announce::{self, Decision, Mode, Route, Table, Vrrp, Withdrawn},
    config::{Announce, Config},
    rtnl::Rtnl,
    vrrp::State as VrrpState,
};

/// How long after start quorum and VRRP are not trusted yet: MACs resolve
/// and the first checks answer within it, and an adopted VRRP master
/// resumes at once. Routes left by the agent before stay meanwhile.
pub const SETTLE: Duration = Duration::from_secs(3);
/// How soon a refused change is tried again.
pub const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Announcer {
    settings: Option<Announce>,
    table: Option<Table>,
    mode: Mode,
    started: Instant,
    /// Interfaces the probe found without our program.
    detached: BTreeSet<String>,
    /// Addresses whose route the agent before left, kept while starting.
    left: BTreeSet<IpAddr>,
    decision: Decision,
    /// What the table held after the last successful sync; `None`: unknown
    /// (never synced, or the last sync failed), so the next update syncs.
    synced: Option<BTreeSet<Route>>,
    retry_at: Option<Instant>,
    /// Announce and withdraw changes since the start.
    changes: u64,
}

impl Announcer {
    /// Takes over the table of `config`'s `[announce]`. With `keep` (the
    /// fast path was adopted, so it kept forwarding), the routes the agent
    /// before left stay while starting; otherwise they are removed now:
    /// they announced a fast path that is gone.
    pub async fn start(config: &Config, keep: bool) -> Self {
        let mut a = Self {
            settings: config.announce,
            table: None,
            mode: Mode::Starting,
            started: Instant::now(),
            detached: BTreeSet::new(),
            left: BTreeSet::new(),
            decision: Decision::new(),
            synced: None,
            retry_at: None,
            changes: 0,
        };
        let Some(settings) = a.settings else { return a };
        a.open();
        let Some(table) = &a.table else { return a };
        match table.read(settings.table).await {
            Ok(routes) if keep => {
                a.left = routes.iter().map(|r| r.address).collect();
                if !a.left.is_empty() {
                    info!(
                        table = settings.table,
                        routes = a.left.len(),
                        "announce: keeping the routes left in the table"
                    );
                }
                a.synced = Some(routes);
            }
            Ok(routes) => {
                if !routes.is_empty() {
                    info!(
                        table = settings.table,
                        routes = routes.len(),
                        "announce: removing routes of a fast path that is gone"
                    );
                }
                match table.sync(settings.table, Some(&routes), &BTreeSet::new()).await {
                    Ok(_) => a.synced = Some(BTreeSet::new()),
                    Err(e) => warn!("announce: clearing table {}: {e}", settings.table),
                }
            }
            Err(e) => warn!("announce: reading table {}: {e}", settings.table),
        }
        a
    }

    fn open(&mut self) {
        if self.table.is_none() {
            match Rtnl::open() {
                Ok(rtnl) => self.table = Some(Table::new(rtnl)),
                Err(e) => warn!("announce: no route netlink socket ({e}); retrying"),
            }
        }
    }

    /// Whether `[announce]` is configured.
    pub fn is_on(&self) -> bool {
        self.settings.is_some()
    }

    /// Nothing configured and nothing shown: updates have nothing to do.
    pub fn is_idle(&self) -> bool {
        self.settings.is_none() && self.decision.is_empty()
    }

    /// The probe's latest answer: interfaces without our program.
    pub fn set_detached(&mut self, detached: &[String]) {
        self.detached = detached.iter().cloned().collect();
    }

    /// `lb drain-director`.
    pub fn drain(&mut self) {
        self.mode = Mode::Draining;
    }

    /// When the loop should call [`update`](Self::update) even if nothing
    /// changed: at the end of the settle time, or to retry.
    pub fn deadline(&self) -> Option<Instant> {
        let settle = (self.mode == Mode::Starting && self.is_on()).then(|| self.started + SETTLE);
        match (settle, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A reload: a new table or none. The old table's routes are removed
    /// first, so the daemon never exports them from two tables.
    pub async fn reload(&mut self, config: &Config) {
        let old = self.settings.map(|s| s.table);
        self.settings = config.announce;
        if old.is_some() && old != self.settings.map(|s| s.table) {
            if let (Some(old), Some(table)) = (old, &self.table) {
                match table.sync(old, None, &BTreeSet::new()).await {
                    Ok(_) => info!(table = old, "announce: left the old table"),
                    Err(e) => warn!("announce: clearing the old table {old}: {e}"),
                }
            }
            self.synced = None;
        }
    }

    /// Decides again and applies the difference. `services`, `attached`
    /// and `vrrp` are the director's and VRRP's state now.
    /// Returns whether what [`status`](Self::status) shows changed.
    pub async fn update<M: FastPathMaps>(
        &mut self,
        director: &mut super::director::Director<M>,
        vrrp: &[(String, VrrpState)],
    ) -> bool {
        let Some(settings) = self.settings else {
            // Turned off by a reload: nothing to show any more.
            let shown = !self.decision.is_empty();
            self.decision.clear();
            self.retry_at = None;
            return shown;
        };
        if self.mode == Mode::Starting && self.started.elapsed() >= SETTLE {
            self.mode = Mode::Serving;
        }
        let attached: BTreeSet<String> = director
            .fast_path()
            .attachments()
            .into_iter()
            .map(|(i, _)| i)
            .filter(|i| !self.detached.contains(i))
            .collect();
        let inputs = inputs(director.config(), director.services(), &attached, vrrp);
        let decision = announce::decide(self.mode, &inputs, |a| self.left.contains(&a));
        for (address, verdict) in &decision {
            let before = self.decision.get(address);
            if before.is_some_and(|b| b.is_ok() != verdict.is_ok()) || (before.is_none() && verdict.is_ok()) {
                self.changes += 1;
            }
            let (state, why) = match verdict {
                Ok(()) => ("announced", String::new()),
                Err(w) => ("withdrawn", w.to_string()),
            };
            director.events_mut().observe(EventKind::Announce, &address.to_string(), state, &why);
        }
        // An address no longer configured was withdrawn too.
        self.changes += self.decision.iter().filter(|(a, v)| v.is_ok() && !decision.contains_key(a)).count() as u64;
        let shown = self.decision != decision;
        self.decision = decision;
        let wanted: BTreeSet<Route> = announce::wanted(&self.decision)
            .map(|address| Route { address, table: settings.table, metric: settings.metric })
            .collect();
        if self.synced.as_ref() == Some(&wanted) {
            return shown;
        }
        self.open();
        let Some(table) = &self.table else {
            self.retry_at = Some(Instant::now() + RETRY);
            return shown;
        };
        match table.sync(settings.table, self.synced.as_ref(), &wanted).await {
            Ok(plan) => {
                for r in &plan.add {
                    info!(vip = %r.address, table = r.table, "announced");
                }
                for r in &plan.delete {
                    let why = self.decision.get(&r.address).and_then(|v| v.clone().err());
                    let why = why.map_or_else(|| "no longer configured".to_owned(), |w| w.to_string());
                    info!(vip = %r.address, table = r.table, "withdrawn: {why}");
                }
                self.synced = Some(wanted);
                self.retry_at = None;
            }
            Err(e) => {
                warn!("announce: table {}: {e}; retrying in {RETRY:?}", settings.table);
                self.synced = None;
                self.retry_at = Some(Instant::now() + RETRY);
            }
        }
        shown
    }

    /// A clean stop: every route withdrawn, before the fast path goes.
    pub async fn stop<M: FastPathMaps>(&mut self, director: &mut super::director::Director<M>) {
        self.mode = Mode::Stopping;
        self.update(director, &[]).await;
        if self.settings.is_some() && self.synced.as_ref().is_none_or(|s| !s.is_empty()) {
            warn!("announce: the routes could not all be withdrawn; the BGP daemon may still announce them");
        }
    }

    /// What `lb status` and the metrics show.
    pub fn status(&self) -> (Option<u32>, Vec<AnnounceStatus>, u64) {
        let per_address = self
            .decision
            .iter()
            .map(|(address, v)| AnnounceStatus {
                address: *address,
                announced: v.is_ok(),
                why: v.as_ref().err().map(Withdrawn::to_string).unwrap_or_default(),
            })
            .collect();
        (self.settings.map(|s| s.table), per_address, self.changes)
    }
}

/// The decision's inputs: one per configured service. `attached`: the
/// interfaces our program is on now; `vrrp`: each instance's state by name.
pub fn inputs(
    config: &Config,
    services: &[Service],
    attached: &BTreeSet<String>,
    vrrp: &[(String, VrrpState)],
) -> Vec<announce::Service> {
    let states: HashMap<&str, VrrpState> = vrrp.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    services
        .iter()
        .map(|s| {
            let instance = config.vrrp.iter().find(|v| v.virtual_addresses.iter().any(|a| a.address == s.vip.address));
            let vrrp = match instance {
                None => Vrrp::None,
                Some(i) => match states.get(i.name.as_str()) {
                    Some(VrrpState::Master) => Vrrp::Master,
                    state => Vrrp::NotMaster {
                        instance: i.name.clone(),
                        state: state.map_or("not running", |s| s.name()).to_owned(),
                    },
                },
            };
            announce::Service {
                address: s.vip.address,
                announce: s.vip.announce,
                interface: s.vip.interface.clone(),
                attached: attached.contains(&s.vip.interface),
                quorum_up: s.quorum_up,
                vrrp,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[announce]\ntable = 200\n\
        [[vip]]\naddress = \"10.0.0.1\"\nport = 80\ninterface = \"eth0\"\n\
        [[vip.backend]]\naddress = \"10.1.0.1\"\n\
        [[vip]]\naddress = \"10.0.0.2\"\nport = 80\ninterface = \"eth1\"\nannounce = false\n\
        [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\n\
        virtual_ipaddress = [\"10.0.0.1/24\"]\n";

    fn services(config: &Config) -> Vec<Service> {
        let mut id = 0;
        config
            .vips
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Service::new(v.clone(), i as u32, || {
                    id += 1;
                    id
                })
            })
            .collect()
    }

    #[test]
    fn inputs_join_the_director_vrrp_and_the_probe() {
        let config = Config::from_str(TEXT, "lb.toml").unwrap();
        let services = services(&config);
        let attached: BTreeSet<String> = ["eth0".to_owned()].into();
        let got = inputs(&config, &services, &attached, &[("VI_1".to_owned(), VrrpState::Master)]);
        assert_eq!(got[0].vrrp, Vrrp::Master);
        assert!(got[0].attached && got[0].announce);
        // No MAC resolved yet: the backend is down, quorum lost.
        assert!(!got[0].quorum_up);
        assert_eq!(got[1].vrrp, Vrrp::None);
        assert!(!got[1].attached && !got[1].announce);

        let got = inputs(&config, &services, &attached, &[("VI_1".to_owned(), VrrpState::Backup)]);
        assert_eq!(got[0].vrrp, Vrrp::NotMaster { instance: "VI_1".to_owned(), state: "BACKUP".to_owned() });
        let got = inputs(&config, &services, &attached, &[]);
        assert_eq!(got[0].vrrp, Vrrp::NotMaster { instance: "VI_1".to_owned(), state: "not running".to_owned() });
    }
}
