//! The director's state and every change to it: health results, resolved
//! MACs, operator commands and reloads come in; ordered map writes go out.
//! Synchronous and free of sockets and timers, so the agent's event loop
//! stays a thin `select!` and tests can drive this directly: the maps come
//! in as a [`FastPathMaps`] (the loaded program, or an in-memory model) and
//! the time as an argument.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_common::{BACKEND_F_ALIVE, BackendRecord, MAX_BACKENDS, Settings as FastPathSettings};

use super::{
    control::{Request, Response},
    events::EventLog,
    ids::{self, Ids},
    install::{InstallError, InstallTime, Installer},
    maps::FastPathMaps,
    service::{Service, State},
    status::{BackendStatus, EventKind, StatusReport, VipStatus},
};
use crate::{
    config::{Config, HashMode},
    fast_path::{FastPath, FastPathError},
};

#[derive(Debug, thiserror::Error)]
pub enum DirectorError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("{vip}: {source}")]
    Prepare { vip: String, source: super::install::PrepareError },
    #[error(transparent)]
    FastPath(#[from] FastPathError),
    #[error("out of backend ids: at most {max} backends in all")]
    Ids { max: u32 },
    #[error("{what} cannot change without a restart (loaded with {loaded}, the new file wants {wanted})")]
    NeedsRestart { what: &'static str, loaded: u64, wanted: u64 },
    #[error("{failed}; putting the previous configuration back failed too: {restoring}")]
    Restore { failed: Box<DirectorError>, restoring: Box<DirectorError> },
}

/// What changed for a backend, for the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub vip: String,
    pub backend: IpAddr,
    pub from: State,
    pub to: State,
}

/// The director over the maps `M` it writes: the loaded program in the
/// agent, [`memory_maps`](super::memory_maps) in unit tests.
pub struct Director<M = FastPath> {
    config: Config,
    dp: M,
    services: Vec<Service>,
    installer: Installer,
    ids: Ids,
    /// Services (by position) whose state changed since the last flush.
    dirty: BTreeSet<usize>,
    /// How long the last flush took, for logs and the bench.
    pub last_install: Option<InstallTime>,
    /// Rings built ahead ([`prepare`](Self::prepare)) in the current second:
    /// when it started, and how many.
    prepared: Option<(Instant, u32)>,
    /// The last state changes, for the status report.
    events: EventLog,
}

/// A configuration with the services and backend ids worked out from it:
/// what [`Director::plan`] proposes and [`Director::snapshot`] keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    config: Config,
    services: Vec<Service>,
    ids: Ids,
}

impl Setup {
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn services(&self) -> &[Service] {
        &self.services
    }
}

/// Rings [`Director::prepare`] builds a second at most: a burst of
/// heads-ups (a switch failing under many backends) costs a few
/// milliseconds, and the installs build the rest as they would anyway.
const PREPARES_PER_SEC: u32 = 8;

impl<M> std::fmt::Debug for Director<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Director").field("services", &self.services.len()).finish_non_exhaustive()
    }
}

impl<M: FastPathMaps> Director<M> {
    /// Builds the services of `config` and installs them into `dp`. When
    /// `dp` holds a fast path an agent before this one left running (its
    /// backend records), that fast path is adopted instead
    /// ([`adopt`](Self::adopt)).
    pub fn new(config: Config, mut dp: M) -> Result<Self, DirectorError> {
        dp.set_settings(FastPathSettings::new(config.global.max_new_flows_per_sec, 0))?;
        let records = dp.records()?;
        if !records.is_empty() || !dp.adopted_vips().is_empty() {
            return Self::adopt(config, dp, records);
        }
        let mut ids = Ids::new(MAX_BACKENDS);
        let mut services = Vec::new();
        for (index, vip) in config.vips.iter().enumerate() {
            services.push(new_service(vip.clone(), index as u32, &mut ids)?);
        }
        Self::start(config, dp, services, ids)
    }

    /// The director over `services`, their ids recorded and every VIP
    /// installed (a fresh start) or checked against what is published (an
    /// adoption: the flush publishes only for a change).
    fn start(config: Config, dp: M, services: Vec<Service>, ids: Ids) -> Result<Self, DirectorError> {
        let dirty = (0..services.len()).collect();
        let mut d = Self {
            config,
            dp,
            services,
            installer: Installer::new(),
            ids,
            dirty,
            last_install: None,
            prepared: None,
            events: EventLog::default(),
        };
        d.write_records()?;
        d.flush()?;
        Ok(d)
    }

    /// Takes over the fast path in `dp`, which `records` describe: every
    /// backend the configuration still has keeps its id (so no recorded
    /// flow moves to another backend) and its VIP its index; a backend the
    /// fast path holds alive keeps its MAC and stays in the ring until its
    /// own checks say otherwise; one it holds dead waits for its first
    /// check to come back. A VIP whose ring and keys come out as published
    /// is kept without a flip. Recorded backends the configuration no
    /// longer has are marked dead, so their flows are re-hashed.
    fn adopt(config: Config, mut dp: M, records: Vec<(u32, BackendRecord)>) -> Result<Self, DirectorError> {
        let mut ids = Ids::with_taken(MAX_BACKENDS, records.iter().map(|(id, _)| *id));
        let mut unclaimed: HashMap<u32, BackendRecord> = records.iter().copied().collect();
        let max_vips = dp.options().max_vips;
        let recorded_index =
            |vip: &crate::config::Vip| records.iter().find(|(_, r)| ids::is_of(r, vip)).map(|(_, r)| r.vip_index);
        let kept: Vec<u32> = config.vips.iter().filter_map(recorded_index).collect();
        let mut free_indexes = (0..max_vips).filter(|i| !kept.contains(i));
        let mut services = Vec::new();
        for vip in &config.vips {
            let index = match recorded_index(vip) {
                Some(i) => i,
                None => free_indexes.next().ok_or(DirectorError::NeedsRestart {
                    what: "the number of VIPs (max_vips)",
                    loaded: max_vips.into(),
                    wanted: config.vips.len() as u64,
                })?,
            };
            let addresses = vip.backends.iter().map(|b| b.address).chain(vip.sorry_server);
            let mut wanted = Vec::new();
            let mut adopted = Vec::new();
            for address in addresses {
                let id = match unclaimed.iter().find(|(_, r)| ids::names(r, vip, address)).map(|(id, _)| *id) {
                    Some(id) => {
                        unclaimed.remove(&id);
                        adopted.push(id);
                        id
                    }
                    None => ids.take().ok_or(DirectorError::Ids { max: MAX_BACKENDS - 1 })?,
                };
                wanted.push(id);
            }
            let mut it = wanted.into_iter();
            let mut s = Service::new(vip.clone(), index, || it.next().expect("one id per backend"));
            let checked: HashSet<std::net::IpAddr> =
                vip.backends.iter().filter(|b| b.check.is_some()).map(|b| b.address).collect();
            for b in s.backends.iter_mut().chain(s.sorry.as_mut()).filter(|b| adopted.contains(&b.id)) {
                let checked = checked.contains(&b.address);
                let entry = dp.backend(b.id)?;
                if entry.flags & BACKEND_F_ALIVE != 0 {
                    b.mac = Some(entry.mac);
                    b.mac_reason = "as the running fast path had it".to_owned();
                } else if checked {
                    b.healthy = false;
                    b.health_reason = "down before the agent restarted; waiting for its check".to_owned();
                }
            }
            s.quorum_up = true;
            s.update_quorum();
            services.push(s);
        }
        let indexes: HashSet<u32> = services.iter().map(|s| s.vip_index).collect();
        for index in dp.adopted_vips() {
            if !indexes.contains(&index) {
                dp.unstage_vip(index);
            }
        }
        // Withdrawn before anything is installed, as a failure is.
        for (id, _) in unclaimed {
            let entry = dp.backend(id)?;
            dp.set_backend(id, lb_common::Backend { flags: 0, ..entry })?;
            dp.set_record(id, BackendRecord::default())?;
            ids.give_back(id);
        }
        let mut d = Self::start(config, dp, services, ids)?;
        // Published VIPs that went: the flush publishes only for a change.
        d.dp.publish()?;
        Ok(d)
    }

    /// Records every backend id in use, before any map names it.
    fn write_records(&mut self) -> Result<(), DirectorError> {
        for s in &self.services {
            for b in s.backends.iter().chain(&s.sorry) {
                self.dp.set_record(b.id, ids::record(&s.vip, s.vip_index, b.address))?;
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn services(&self) -> &[Service] {
        &self.services
    }

    pub fn fast_path(&self) -> &M {
        &self.dp
    }

    pub fn fast_path_mut(&mut self) -> &mut M {
        &mut self.dp
    }

    /// The last state changes; the agent adds those of VRRP and reloads.
    pub fn events_mut(&mut self) -> &mut EventLog {
        &mut self.events
    }

    /// Writes every changed service to the fast path in one publish: the
    /// agent's loop calls this after taking in all the events at hand, so a
    /// burst of changes costs one flip.
    pub fn flush(&mut self) -> Result<Option<InstallTime>, DirectorError> {
        if self.dirty.is_empty() {
            return Ok(None);
        }
        // Measured for logs and the bench only: no decision reads it.
        let started = Instant::now();
        let dirty = std::mem::take(&mut self.dirty);
        // Every failure reaches the fast path before any ring is built.
        for &i in &dirty {
            let s = &mut self.services[i];
            s.update_quorum();
            let (state, why) = vip_state(s);
            self.events.observe(EventKind::Vip, &s.name(), state, &why);
            self.installer.withdraw(&mut self.dp, s)?;
        }
        let withdraw = started.elapsed();
        let mut build = Duration::ZERO;
        for &i in &dirty {
            build += self.installer.stage(&mut self.dp, &self.services[i])?;
        }
        self.dp.publish()?;
        let t = InstallTime { withdraw, build, total: started.elapsed() };
        self.last_install = Some(t);
        Ok(Some(t))
    }

    /// Marks every service changed, for the bench: the next flush rebuilds
    /// and reinstalls them all.
    pub fn touch_all(&mut self) {
        self.dirty.extend(0..self.services.len());
    }

    /// Applies `f` to every backend with `address` (on VIPs matching
    /// `vip`, if given) and reinstalls the services whose state changed.
    fn update(
        &mut self,
        vip: Option<&str>,
        address: IpAddr,
        f: impl FnMut(&mut super::service::Backend),
    ) -> Result<(usize, Vec<Transition>), DirectorError> {
        self.update_where(|s| vip.is_none_or(|v| vip_matches(s, v)), address, f)
    }

    /// [`update`](Self::update) on the services `select` picks, in one pass:
    /// a neighbour change on an interface of a thousand VIPs must not name
    /// every VIP for each of them.
    fn update_where(
        &mut self,
        select: impl Fn(&Service) -> bool,
        address: IpAddr,
        mut f: impl FnMut(&mut super::service::Backend),
    ) -> Result<(usize, Vec<Transition>), DirectorError> {
        let mut matched = 0;
        let mut transitions = Vec::new();
        let mut dirty = Vec::new();
        for (i, s) in self.services.iter_mut().enumerate() {
            if !select(s) {
                continue;
            }
            let name = s.name();
            let quorum_before = s.quorum_up;
            let Some(b) = s.backend_mut(address) else { continue };
            matched += 1;
            let (before, weight_before, mac_before) = (b.state(), b.effective_weight(), b.mac);
            f(b);
            let (after, weight_after) = (b.state(), b.effective_weight());
            // A backend that moved to another MAC keeps its state and weight,
            // but its entry must be rewritten, or its packets go to the old MAC.
            let changed = before != after || weight_before != weight_after || mac_before != b.mac;
            if before != after {
                transitions.push(Transition { vip: name, backend: address, from: before, to: after });
            }
            s.update_quorum();
            if changed || quorum_before != s.quorum_up {
                dirty.push(i);
            }
        }
        self.dirty.extend(dirty);
        for t in &transitions {
            record(&mut self.events, t, "");
        }
        Ok((matched, transitions))
    }

    /// A health check's verdict on backend `id`.
    pub fn on_health(
        &mut self,
        id: u32,
        up: bool,
        weight: Option<u32>,
        reason: &str,
    ) -> Result<Vec<Transition>, DirectorError> {
        let Some(address) = self.address_of(id) else { return Ok(Vec::new()) };
        let mut transitions = Vec::new();
        for (i, s) in self.services.iter_mut().enumerate() {
            let name = s.name();
            let Some(b) = s.backends.iter_mut().chain(s.sorry.as_mut()).find(|b| b.id == id) else { continue };
            let (before, w) = (b.state(), b.effective_weight());
            b.healthy = up;
            b.health_reason = reason.to_owned();
            if weight.is_some() {
                b.dynamic_weight = weight;
            }
            let (after, w2) = (b.state(), b.effective_weight());
            if before != after {
                let t = Transition { vip: name, backend: address, from: before.clone(), to: after.clone() };
                record(&mut self.events, &t, reason);
                transitions.push(t);
            }
            if before != after || w != w2 {
                self.dirty.insert(i);
            }
            break;
        }
        Ok(transitions)
    }

    /// A heads-up from the health checks: backend `id` is one result from
    /// `up` (with `weight`, a script's dynamic weight). Builds the ring its
    /// VIP will need then, so that the install after the verdict only
    /// copies it (a fall or rise of 2, keepalived's default `retry 1`, gives
    /// a `delay_before_retry` of warning). Returns whether a ring was built:
    /// not when it is kept already or the budget of the second (counted
    /// from the first prepare at or after `now` minus a second) is spent.
    pub fn prepare(&mut self, id: u32, up: bool, weight: Option<u32>, now: Instant) -> Result<bool, DirectorError> {
        let Some(s) = self.services.iter().find(|s| s.backends.iter().chain(&s.sorry).any(|b| b.id == id)) else {
            return Ok(false);
        };
        let second = match self.prepared {
            Some((start, built)) if now.saturating_duration_since(start) < Duration::from_secs(1) => (start, built),
            _ => (now, 0),
        };
        self.prepared = Some(second);
        if second.1 >= PREPARES_PER_SEC {
            return Ok(false);
        }
        // The service as it will be, on a copy: nothing of it is installed.
        let mut next = s.clone();
        if let Some(b) = next.backends.iter_mut().chain(next.sorry.as_mut()).find(|b| b.id == id) {
            b.healthy = up;
            if weight.is_some() {
                b.dynamic_weight = weight;
            }
        }
        next.update_quorum();
        let (vip_index, ring_size) = (next.vip_index, next.vip.ring_size);
        let built = self
            .installer
            .prepare(&mut self.dp, vip_index, next.ring_entries(), ring_size)
            .map_err(|source| DirectorError::Prepare { vip: next.name(), source })?;
        self.prepared = Some((second.0, second.1 + u32::from(built)));
        Ok(built)
    }

    /// Rings built so far (installs and [`prepare`](Self::prepare)).
    pub fn ring_builds(&self) -> u64 {
        self.installer.builds()
    }

    fn address_of(&self, id: u32) -> Option<IpAddr> {
        self.services.iter().flat_map(|s| s.backends.iter().chain(&s.sorry)).find(|b| b.id == id).map(|b| b.address)
    }

    /// The neighbour table's answer for `address` on `interface`.
    pub fn on_mac(
        &mut self,
        interface: &str,
        address: IpAddr,
        mac: Option<[u8; 6]>,
        reason: &str,
    ) -> Result<Vec<Transition>, DirectorError> {
        let (_, all) = self.update_where(
            |s| s.vip.interface == interface,
            address,
            |b| {
                b.mac = mac;
                b.mac_reason = reason.to_owned();
            },
        )?;
        Ok(all)
    }

    /// Operator commands; `Reload` and `Status` are answered by the caller,
    /// which owns the file and the flow-table walk.
    pub fn command(&mut self, request: &Request) -> Response {
        let (vip, backend, what, result) = match request {
            Request::Drain { vip, backend } => {
                (vip, backend, "drained", self.update(Some(vip), *backend, |b| b.admin_drained = true))
            }
            Request::Undrain { vip, backend } => {
                (vip, backend, "undrained", self.update(Some(vip), *backend, |b| b.admin_drained = false))
            }
            Request::Weight { vip, backend, weight } => {
                if *weight > crate::config::MAX_WEIGHT {
                    return Response::error(format!("weight {weight} out of range 0..={}", crate::config::MAX_WEIGHT));
                }
                (vip, backend, "weight set", self.update(Some(vip), *backend, |b| b.admin_weight = Some(*weight)))
            }
            Request::Status | Request::Reload | Request::Restart | Request::DrainDirector { .. } => {
                return Response::error("not handled here");
            }
        };
        match result.and_then(|r| self.flush().map(|_| r)) {
            Ok((0, _)) => Response::error(format!("no backend {backend} on a VIP matching {vip:?}")),
            Ok((n, _)) => Response::ok(format!("{backend}: {what} on {n} VIP(s)")),
            Err(e) => Response::error(e.to_string()),
        }
    }

    /// Replaces the configuration: [`plan`](Self::plan), then
    /// [`apply`](Self::apply). On error nothing has changed.
    pub fn reload(&mut self, config: Config) -> Result<(), DirectorError> {
        let next = self.plan(config)?;
        self.apply(next)
    }

    /// Works out the services of `config` against the running ones, changing
    /// nothing. Backends that stay keep their id, health, MAC and operator
    /// drain, but not an operator weight (`lb weight` lasts until the next
    /// reload); new ones start as a fresh start would. A VIP that stays keeps
    /// its index (and so its flows' counters and its rings).
    pub fn plan(&self, config: Config) -> Result<Setup, DirectorError> {
        let loaded = self.dp.options();
        if config.max_ring_size() > loaded.max_ring_size {
            return Err(DirectorError::NeedsRestart {
                what: "the largest ring_size",
                loaded: loaded.max_ring_size.into(),
                wanted: config.max_ring_size().into(),
            });
        }
        if config.vips.len() as u32 > loaded.max_vips {
            return Err(DirectorError::NeedsRestart {
                what: "the number of VIPs (max_vips)",
                loaded: loaded.max_vips.into(),
                wanted: config.vips.len() as u64,
            });
        }
        let mut ids = self.ids.clone();
        let mut old: HashMap<String, Service> = self.services.iter().map(|s| (s.name(), s.clone())).collect();
        let kept: Vec<u32> =
            config.vips.iter().filter_map(|v| old.get(&Service::name_of(v)).map(|s| s.vip_index)).collect();
        let mut free_indexes = (0..loaded.max_vips).filter(|i| !kept.contains(i));
        let mut services = Vec::new();
        for vip in &config.vips {
            let service = match old.remove(&Service::name_of(vip)) {
                Some(prev) => carry_over(prev, vip.clone(), &mut ids)?,
                None => {
                    let index = free_indexes.next().expect("max_vips checked above");
                    new_service(vip.clone(), index, &mut ids)?
                }
            };
            services.push(service);
        }
        // Given back after the new services took theirs, in a fixed order:
        // ids are reused as late as possible.
        for gone in self.services.iter().filter(|s| old.contains_key(&s.name())) {
            for id in gone.ids() {
                ids.give_back(id);
            }
        }
        Ok(Setup { config, services, ids })
    }

    /// Switches to `next` (from [`plan`](Self::plan)) in one publish. The
    /// backends of VIPs that go are marked dead once no table names them,
    /// before their ids can be reused, so flows recorded for them are
    /// re-hashed. On error the previous setup is put back.
    pub fn apply(&mut self, next: Setup) -> Result<(), DirectorError> {
        let staying: HashSet<String> = next.services.iter().map(Service::name).collect();
        let retired = dead_entries(self.services.iter().filter(|s| !staying.contains(&s.name())), |_| true);
        let previous = self.snapshot();
        match self.switch_to(next, retired) {
            Ok(()) => Ok(()),
            Err(failed) => match self.restore(previous) {
                Ok(()) => Err(failed),
                Err(restoring) => {
                    Err(DirectorError::Restore { failed: Box::new(failed), restoring: Box::new(restoring) })
                }
            },
        }
    }

    /// The running setup, to go back to with [`restore`](Self::restore).
    pub fn snapshot(&self) -> Setup {
        Setup { config: self.config.clone(), services: self.services.clone(), ids: self.ids.clone() }
    }

    /// Goes back to `previous` (from [`snapshot`](Self::snapshot)): its
    /// services as they were then, in one publish. Backends `previous` does
    /// not have are marked dead: they were never part of a configuration in
    /// force.
    pub fn restore(&mut self, previous: Setup) -> Result<(), DirectorError> {
        let named: HashSet<u32> = previous.services.iter().flat_map(Service::ids).collect();
        let retired = dead_entries(self.services.iter(), |id| !named.contains(&id));
        self.switch_to(previous, retired)
    }

    /// Installs every service of `next`, publishes, then writes `retired`.
    fn switch_to(&mut self, next: Setup, retired: Vec<(u32, lb_common::Backend)>) -> Result<(), DirectorError> {
        let staying: HashSet<u32> = next.services.iter().map(|s| s.vip_index).collect();
        for s in &self.services {
            if !staying.contains(&s.vip_index) {
                self.dp.unstage_vip(s.vip_index);
            }
        }
        let Setup { config, services, ids } = next;
        self.dp.set_settings(FastPathSettings::new(config.global.max_new_flows_per_sec, 0))?;
        let before: HashSet<u32> = self.services.iter().flat_map(Service::ids).collect();
        self.config = config;
        self.services = services;
        self.ids = ids;
        self.write_records()?;
        self.dirty = (0..self.services.len()).collect();
        self.flush()?;
        // The flush publishes only when a service is left to install.
        self.dp.publish()?;
        for (id, entry) in retired {
            self.installer.forget(id);
            self.dp.set_backend(id, entry)?;
        }
        let now: HashSet<u32> = self.services.iter().flat_map(Service::ids).collect();
        for &id in before.difference(&now) {
            self.dp.set_record(id, BackendRecord::default())?;
        }
        Ok(())
    }

    /// The status report, counters read from the fast path now.
    pub fn status(&self, with_flows: bool) -> Result<StatusReport, DirectorError> {
        self.report(Some(with_flows))
    }

    /// The status report with every counter zero, reading no map: what
    /// changes only with the director's state. The HTTP listener reads the
    /// counters into it itself.
    pub fn layout(&self) -> Result<StatusReport, DirectorError> {
        self.report(None)
    }

    /// `counters`: read them (and the flow tables too if `Some(true)`).
    fn report(&self, counters: Option<bool>) -> Result<StatusReport, DirectorError> {
        let flow_counts = if counters == Some(true) { self.dp.flow_counts()? } else { HashMap::new() };
        let mut vips = Vec::new();
        for s in &self.services {
            let c = if counters.is_some() { self.dp.vip_counters(s.vip_index)? } else { Default::default() };
            let ring = u64::from(s.vip.ring_size);
            let mut backends = Vec::new();
            for (b, sorry) in s.backends.iter().map(|b| (b, false)).chain(s.sorry.iter().map(|b| (b, true))) {
                let bc = if counters.is_some() { self.dp.backend_counters(b.id)? } else { Default::default() };
                let slots = self.installer.slots_of(b.id);
                let state = b.state();
                backends.push(BackendStatus {
                    address: b.address,
                    sorry,
                    state: state.name().to_owned(),
                    why: state.why().to_owned(),
                    mac: b.mac.map(|m| crate::netdev::Mac(m).to_string()),
                    configured_weight: b.configured_weight,
                    effective_weight: b.effective_weight(),
                    slots,
                    share: f64::from(slots) * 100.0 / ring as f64,
                    packets: bc.packets,
                    bytes: bc.bytes,
                    flows: flow_counts.get(&b.id).copied().unwrap_or(0),
                });
            }
            vips.push(VipStatus {
                name: s.name(),
                interface: s.vip.interface.clone(),
                hash: match s.vip.hash {
                    HashMode::FiveTuple => "5tuple",
                    HashMode::SourceIp => "source-ip",
                }
                .to_owned(),
                ring_size: s.vip.ring_size,
                quorum: s.vip.quorum,
                live_weight: s.live_weight(),
                quorum_up: s.quorum_up,
                sorry_active: s.sorry_active(),
                // The fast path counts forwarded packets at their backend and
                // only drops at the VIP.
                packets: c.packets + backends.iter().map(|b| b.packets).sum::<u64>(),
                bytes: c.bytes + backends.iter().map(|b| b.bytes).sum::<u64>(),
                backends,
            });
        }
        let counters = match counters {
            Some(_) => self.dp.stats()?.into_iter().map(|(s, c)| (s.name().to_owned(), c.packets)).collect(),
            None => Vec::new(),
        };
        let attached = self.dp.attachments().into_iter().map(|(i, m)| (i, format!("{m:?}").to_lowercase())).collect();
        let flows = flow_counts.values().sum();
        Ok(StatusReport {
            vips,
            attached,
            counters,
            flows,
            vrrp: Vec::new(),
            events: self.events.to_vec(),
            ..StatusReport::default()
        })
    }
}

/// Records a backend's change: why it left the ring, or what brought it
/// back (`came_up`, the check's word, or else the cause that cleared).
fn record(events: &mut EventLog, t: &Transition, came_up: &str) {
    let reason = match &t.to {
        State::Up if !came_up.is_empty() => came_up.to_owned(),
        State::Up => format!("no longer {}", t.from.why()),
        to => to.why().to_owned(),
    };
    events.record(EventKind::Backend, format!("{} on {}", t.backend, t.vip), t.from.name(), t.to.name(), reason);
}

/// A VIP's state as the status page names it, and why.
fn vip_state(s: &Service) -> (&'static str, String) {
    let weight = format!("live weight {} of quorum {}", s.live_weight(), s.vip.quorum);
    if s.sorry_active() {
        ("sorry server", weight)
    } else if s.quorum_up {
        ("up", weight)
    } else {
        ("quorum lost", weight)
    }
}

/// The entries that mark dead the backends of `services` whose id `retire`
/// picks.
fn dead_entries<'a>(
    services: impl Iterator<Item = &'a Service>,
    retire: impl Fn(u32) -> bool,
) -> Vec<(u32, lb_common::Backend)> {
    let mut out = Vec::new();
    for s in services {
        for b in s.backends.iter().chain(&s.sorry).filter(|b| retire(b.id)) {
            out.push((b.id, lb_common::Backend { flags: 0, ..b.entry(s.vip_index) }));
        }
    }
    out
}

fn new_service(vip: crate::config::Vip, index: u32, ids: &mut Ids) -> Result<Service, DirectorError> {
    let needed = vip.backends.len() + usize::from(vip.sorry_server.is_some());
    let mut taken = Vec::with_capacity(needed);
    for _ in 0..needed {
        match ids.take() {
            Some(id) => taken.push(id),
            None => {
                for id in taken {
                    ids.give_back(id);
                }
                return Err(DirectorError::Ids { max: MAX_BACKENDS - 1 });
            }
        }
    }
    let mut it = taken.into_iter();
    Ok(Service::new(vip, index, || it.next().expect("counted above")))
}

/// The new configuration of a VIP that stays, keeping what is known of the
/// backends that stay.
fn carry_over(prev: Service, vip: crate::config::Vip, ids: &mut Ids) -> Result<Service, DirectorError> {
    let mut old: HashMap<IpAddr, super::service::Backend> =
        prev.backends.into_iter().chain(prev.sorry).map(|b| (b.address, b)).collect();
    let mut fresh = |address: IpAddr, weight: u32, inhibit: bool| {
        let id = ids.take().ok_or(DirectorError::Ids { max: MAX_BACKENDS - 1 })?;
        Ok::<_, DirectorError>(super::service::Backend::new(address, id, weight, inhibit))
    };
    let mut backends = Vec::with_capacity(vip.backends.len());
    for b in &vip.backends {
        backends.push(match old.remove(&b.address) {
            Some(mut kept) => {
                kept.configured_weight = b.weight;
                kept.inhibit_on_failure = b.inhibit_on_failure;
                // `lb weight` lasts until the next reload (as `lb weight
                // --help` and the README say); a drain stays.
                kept.admin_weight = None;
                kept
            }
            None => fresh(b.address, b.weight, b.inhibit_on_failure)?,
        });
    }
    let sorry = match vip.sorry_server {
        Some(a) => Some(match old.remove(&a) {
            Some(kept) => kept,
            None => fresh(a, 1, false)?,
        }),
        None => None,
    };
    for (_, gone) in old {
        ids.give_back(gone.id);
    }
    let mut s = Service { vip, vip_index: prev.vip_index, backends, sorry, quorum_up: prev.quorum_up };
    s.update_quorum();
    Ok(s)
}

/// `lb drain VIP ...` names a VIP as `addr:port/proto`, `addr:port` or `addr`.
fn vip_matches(s: &Service, v: &str) -> bool {
    let name = s.name();
    if v == name {
        return true;
    }
    let addr_port = std::net::SocketAddr::new(s.vip.address, s.vip.port).to_string();
    v == addr_port || v.parse::<IpAddr>().is_ok_and(|a| a == s.vip.address)
}

#[cfg(test)]
mod tests;
