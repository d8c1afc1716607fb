//! The VRRP runtime: each configured instance's [`fsm::Instance`] bound to a
//! raw socket, tokio timers, rtnetlink, gratuitous ARP, notify scripts and
//! tracking, one task per instance.
//!
//! ```no_run
//! # async fn f(config: lb_userspace::config::Config) -> Result<(), lb_userspace::vrrp::runtime::VrrpError> {
//! use lb_userspace::vrrp::runtime;
//!
//! let mut vrrp = runtime::spawn_with_groups(config.vrrp.clone(), config.vrrp_sync_groups.clone())?;
//! let mut changes = vrrp.take_events().expect("first call");
//! # let _ = &mut changes;
//! for s in vrrp.status() {
//!     println!("{} {} priority {} master {:?}", s.name, s.state.name(), s.effective_priority, s.master);
//! }
//! // A reloaded file: only what changed restarts.
//! let plan = vrrp.reload(config.vrrp.clone(), config.vrrp_sync_groups.clone()).await?;
//! # let _ = plan;
//! vrrp.shutdown().await; // priority 0 from masters, VIPs removed, notify_stop run
//! # Ok(())
//! # }
//! ```
//!
//! # Network namespaces
//!
//! [`spawn`] opens every socket (raw VRRP, packet, route netlink, ioctl) on
//! the calling thread, so they all belong to that thread's network
//! namespace for good, wherever tokio later polls the tasks. It must be
//! called within a tokio runtime with IO and time enabled.
//!
//! # Per instance
//!
//! One `tokio::select!` loop owns the state machine. Its three protocol
//! timers are deadlines (`Option<Instant>`): a `Start*Timer` action
//! overwrites the deadline, `CancelTimers` clears them, and each loop turn
//! sleeps on the current values only, so a replaced or cancelled timer can
//! never fire. Received packets go through [`receive::accept`]; each
//! refusal is counted in [`Rejected`] and logged, repeats of one kind at
//! most every `LOG_EVERY`.
//!
//! The actions of one decision are performed in the order the state machine
//! returned them, each netlink request awaited before the next action: the
//! VIPs are on the interfaces before the routes that may use them as `src`,
//! and an instance that stops sends priority 0 before it removes anything.
//! The route netlink connection's task runs on the same runtime, so a
//! single-threaded one serves both.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use tokio::{
    io::unix::AsyncFd,
    sync::mpsc,
    task::JoinHandle,
    time::{self, Instant},
};

use super::{
    announce::{PacketSocket, garp_frame, unsolicited_na_frame},
    fsm::{self, Action, Counters, DiscardReason, Event, Instance, State},
    notify::{NOTIFY_TIMEOUT, Notifier, commands_for, group_commands},
    packet::{Addresses, PseudoHeader, Version},
    receive::{self, Filter, IpHeader, Reason, Reject, Rejected},
    reload::{self, ReloadPlan},
    socket::VrrpSocket,
    sync::{self, SyncGroup},
    track::spawn_script,
    tracking::{FastPathHealth, Tracking},
};
use crate::{
    config::{Notify, VirtualAddress, VirtualRoute, VrrpInstance, VrrpSyncGroup},
    netdev::{IfCtl, Link, ipv6_link_local},
    rtnl::Rtnl,
    script::{Account, resolve_user},
    task::AbortOnDrop,
};

/// How often tracked interfaces are polled.
pub const LINK_POLL: Duration = Duration::from_millis(200);
/// A repeated log line (a rejected advert every 100 ms) is written at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Packets read per wake-up before the loop looks at its timers again.
const RECV_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    #[error("the VRRP runtime runs on tokio and was started outside a runtime: {source}")]
    NoRuntime { source: tokio::runtime::TryCurrentError },
    #[error("VRRP instance {instance}: {what}: {source}")]
    Io {
        instance: String,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("VRRP instance {instance}: {message}")]
    Setup { instance: String, message: String },
    #[error("VRRP instance {instance}: {source}")]
    Params {
        instance: String,
        #[source]
        source: fsm::ParamsError,
    },
}

/// One instance as `lb status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: Version,
    pub state: State,
    /// The configured priority.
    pub base_priority: u8,
    /// After tracking weights.
    pub effective_priority: u8,
    /// Our advert source.
    pub primary_address: IpAddr,
    /// The master as last seen: ourselves in Master, the sender of the
    /// adverts we accept in Backup, `None` when not known.
    pub master: Option<IpAddr>,
    /// Why the instance is in FAULT ("interface eth1 is down", "track_script chk failed").
    pub fault_reasons: Vec<String>,
    /// What the state machine counted.
    pub counters: Counters,
    /// Adverts dropped before the state machine, by reason.
    pub rejected: Rejected,
    /// Adverts seen on the interface for a VRID none of our instances on it
    /// runs (ignored, not errors); the socket's filter keeps out the others.
    pub other_vrid: u64,
    /// `virtual_routes` the kernel refused to add or remove (each logged
    /// with its error); the instance carries on without them.
    pub route_errors: u64,
    /// When the state last changed.
    pub since: Option<SystemTime>,
}

/// The instances' status as [`VrrpHandle::status`] gives it, readable from
/// another task without the handle.
#[derive(Clone, Debug, Default)]
pub struct StatusReader(Vec<Arc<Mutex<InstanceStatus>>>);

impl StatusReader {
    /// Every instance's current status, in configuration order.
    pub fn status(&self) -> Vec<InstanceStatus> {
        self.0.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone()).collect()
    }
}

/// A state change, as the event channel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub instance: String,
    pub from: State,
    pub to: State,
    /// The effective priority at the change.
    pub priority: u8,
}

#[derive(Debug)]
enum Command {
    Shutdown,
    /// From the instance's sync group.
    Sync(Event),
    /// From the agent (`track_fast_path`).
    FastPath(FastPathHealth),
    /// From a reload that changed the VRIDs beside the instance's: keep out
    /// the adverts of these.
    FilterVrids(Vec<u8>),
}

/// What a member task tells its sync group's task.
type GroupTx = mpsc::UnboundedSender<(usize, sync::Input)>;
type GroupRx = mpsc::UnboundedReceiver<(usize, sync::Input)>;

/// A member's way to its group.
#[derive(Debug, Clone)]
struct GroupLink {
    /// Its index in the group.
    member: usize,
    tx: GroupTx,
}

#[derive(Debug)]
struct GroupHandle {
    cfg: VrrpSyncGroup,
    task: Option<JoinHandle<()>>,
}

/// Instances ready to run (sockets open, users resolved) and the
/// coordinators of their sync groups, not started yet.
struct Prepared {
    tasks: Vec<(Task, AsyncFd<VrrpSocket>, Vec<u8>)>,
    groups: Vec<(VrrpSyncGroup, GroupRx, Option<Account>)>,
}

#[derive(Debug)]
struct InstanceHandle {
    name: String,
    /// What it runs with.
    cfg: VrrpInstance,
    tracks_fast_path: bool,
    /// The VRIDs its socket's filter keeps out ([`vrids_beside`]).
    vrids_beside: Vec<u8>,
    commands: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<InstanceStatus>>,
    task: Option<JoinHandle<()>>,
}

/// The running instances. Dropping it shuts them down as [`Self::shutdown`]
/// does, without waiting (as long as the runtime keeps running).
#[derive(Debug)]
pub struct VrrpHandle {
    runtime: tokio::runtime::Handle,
    instances: Vec<InstanceHandle>,
    groups: Vec<GroupHandle>,
    /// For the instances a reload starts.
    events_tx: mpsc::UnboundedSender<StateChange>,
    events: Option<mpsc::UnboundedReceiver<StateChange>>,
}

impl VrrpHandle {
    /// Every instance's current status, in configuration order.
    pub fn status(&self) -> Vec<InstanceStatus> {
        self.instances.iter().map(|i| i.status.lock().unwrap_or_else(PoisonError::into_inner).clone()).collect()
    }

    /// A reader of the instances' status that another task keeps: it
    /// follows the instances running now, not those a later reload starts.
    pub fn status_reader(&self) -> StatusReader {
        StatusReader(self.instances.iter().map(|i| Arc::clone(&i.status)).collect())
    }

    /// The stream of state changes, all instances together; `None` after the first call.
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<StateChange>> {
        self.events.take()
    }

    /// Reports the fast path's health to every instance that tracks it
    /// (`track_fast_path`). The agent calls this on every poll; an instance
    /// only acts on a change. Until the first report the fast path counts
    /// as healthy.
    pub fn report_fast_path(&self, health: &FastPathHealth) {
        for i in &self.instances {
            if i.tracks_fast_path {
                let _ = i.commands.send(Command::FastPath(health.clone()));
            }
        }
    }

    /// The names of the instances, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.instances.iter().map(|i| i.name.clone()).collect()
    }

    /// Applies a reloaded configuration without touching what did not change
    /// ([`super::reload`]): unchanged instances keep running (no state
    /// change, no gap in adverts, no VIP flap); changed ones restart, removed
    /// ones stop cleanly (priority 0 from a master), new ones start. The new
    /// instances are prepared before anything stops, so one that cannot
    /// start (an interface that is gone) leaves everything as it was.
    pub async fn reload(
        &mut self,
        instances: Vec<VrrpInstance>,
        groups: Vec<VrrpSyncGroup>,
    ) -> Result<ReloadPlan, VrrpError> {
        let old: Vec<VrrpInstance> = self.instances.iter().map(|i| i.cfg.clone()).collect();
        let old_groups: Vec<VrrpSyncGroup> = self.groups.iter().map(|g| g.cfg.clone()).collect();
        let plan = reload::plan(&old, &old_groups, &instances, &groups);
        let to_start: Vec<VrrpInstance> = instances.iter().filter(|n| plan.start.contains(&n.name)).cloned().collect();
        // Whatever the agent adopted at its start, an instance a reload
        // starts is a new one: it starts cold.
        let prepared = self.prepare_all(to_start, &instances, &groups, false)?;

        let (stopping, staying): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.instances).into_iter().partition(|i| plan.stop.contains(&i.name));
        self.instances = staying;
        for i in &stopping {
            let _ = i.commands.send(Command::Shutdown);
        }
        for mut i in stopping {
            if let Some(task) = i.task.take() {
                let _ = task.await;
            }
        }
        // A group with a stopped member stopped whole (the plan restarts all
        // members together); its task ends after its members.
        let (ended, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.groups)
            .into_iter()
            .partition(|g| g.cfg.members.iter().any(|m| plan.stop.contains(m)));
        self.groups = kept;
        for mut g in ended {
            if let Some(task) = g.task.take() {
                let _ = task.await;
            }
        }
        // Kept ones take the new tables: only a position or a hint differs.
        // Their filters follow the instances started and stopped beside them.
        for i in &mut self.instances {
            if let Some(n) = instances.iter().find(|n| n.name == i.name) {
                i.cfg = n.clone();
            }
            let beside = vrids_beside(&i.cfg, &instances);
            if beside != i.vrids_beside {
                let _ = i.commands.send(Command::FilterVrids(beside.clone()));
                i.vrids_beside = beside;
            }
        }
        for g in &mut self.groups {
            if let Some(n) = groups.iter().find(|n| n.name == g.cfg.name) {
                g.cfg = n.clone();
            }
        }
        self.launch(prepared);
        self.instances.sort_by_key(|i| instances.iter().position(|n| n.name == i.name));
        Ok(plan)
    }

    /// Opens everything the instances need, in the calling thread's network
    /// namespace, with a channel for each of their sync groups (those of two
    /// or more members, all of them among `instances`). `all` is every
    /// instance that will run, `instances` among them: their sockets'
    /// filters keep out the adverts of the others.
    fn prepare_all(
        &self,
        instances: Vec<VrrpInstance>,
        all: &[VrrpInstance],
        groups: &[VrrpSyncGroup],
        fast_path_adopted: bool,
    ) -> Result<Prepared, VrrpError> {
        let groups: Vec<VrrpSyncGroup> = (groups.iter())
            .filter(|g| g.members.len() >= 2 && g.members.iter().all(|m| instances.iter().any(|i| &i.name == m)))
            .cloned()
            .collect();
        let mut accounts = Vec::with_capacity(groups.len());
        for g in &groups {
            accounts.push(
                notify_account(&g.notify)
                    .map_err(|message| VrrpError::Setup { instance: format!("(sync group {})", g.name), message })?,
            );
        }
        let (txs, rxs): (Vec<GroupTx>, Vec<_>) =
            groups.iter().map(|_| mpsc::unbounded_channel::<(usize, sync::Input)>()).unzip();
        let mut tasks = Vec::with_capacity(instances.len());
        for cfg in instances {
            let link = groups.iter().zip(&txs).find_map(|(group, tx)| {
                let member = group.members.iter().position(|m| *m == cfg.name)?;
                Some(GroupLink { member, tx: tx.clone() })
            });
            let beside = vrids_beside(&cfg, all);
            let _guard = self.runtime.enter();
            tasks.push(prepare(cfg, beside, self.events_tx.clone(), link, fast_path_adopted)?);
        }
        let groups = groups.into_iter().zip(rxs).zip(accounts).map(|((g, rx), a)| (g, rx, a)).collect();
        Ok(Prepared { tasks, groups })
    }

    /// Starts what [`Self::prepare_all`] prepared.
    fn launch(&mut self, prepared: Prepared) {
        for (task, socket, vrids_beside) in prepared.tasks {
            let (commands_tx, commands_rx) = mpsc::unbounded_channel();
            let status = Arc::clone(&task.shared);
            let name = task.cfg.name.clone();
            let cfg = task.cfg.clone();
            let tracks_fast_path = task.cfg.track_fast_path.is_some();
            let join = self.runtime.spawn(task.run(socket, commands_rx));
            self.instances.push(InstanceHandle {
                name,
                cfg,
                tracks_fast_path,
                vrids_beside,
                commands: commands_tx,
                status,
                task: Some(join),
            });
        }
        for (group, rx, account) in prepared.groups {
            let members: Vec<mpsc::UnboundedSender<Command>> = (group.members.iter())
                .filter_map(|m| self.instances.iter().find(|h| &h.name == m).map(|h| h.commands.clone()))
                .collect();
            let task = self.runtime.spawn(run_group(group.clone(), members, rx, account));
            self.groups.push(GroupHandle { cfg: group, task: Some(task) });
        }
    }

    /// Stops every instance: a master sends priority 0 (so a backup takes
    /// over after its skew time) and removes its VIPs; `notify_stop` runs
    /// (waited for up to its timeout). Returns when all have stopped.
    pub async fn shutdown(mut self) {
        for i in &self.instances {
            let _ = i.commands.send(Command::Shutdown);
        }
        for i in &mut self.instances {
            if let Some(task) = i.task.take() {
                let _ = task.await;
            }
        }
        // Each group's task ends once its members have, after its STOP scripts.
        for g in &mut self.groups {
            if let Some(task) = g.task.take() {
                let _ = task.await;
            }
        }
    }

    /// Stops every instance at once with no goodbye: no priority 0, VIPs
    /// left in place, as if the process had died. For tests of a frozen or
    /// crashed master; a later [`spawn`] removes the VIPs left behind.
    pub fn abort(mut self) {
        for i in &mut self.instances {
            if let Some(task) = i.task.take() {
                task.abort();
            }
        }
        for g in &mut self.groups {
            if let Some(task) = g.task.take() {
                task.abort();
            }
        }
    }
}

impl Drop for VrrpHandle {
    fn drop(&mut self) {
        for i in &self.instances {
            if i.task.is_some() {
                let _ = i.commands.send(Command::Shutdown);
            }
        }
    }
}

/// Starts every instance; see the [module documentation](self). Nothing is
/// started unless all of them can be: the error names the instance and
/// what failed (an interface that does not exist, no address to send from,
/// an unknown script user, a socket the kernel refused).
pub fn spawn(instances: Vec<VrrpInstance>) -> Result<VrrpHandle, VrrpError> {
    spawn_with_groups(instances, Vec::new())
}

/// [`spawn`] with keepalived's sync groups: the members of each group of two
/// or more change state together ([`super::sync`]). A group's notify
/// scripts run on its task, as `notify_user`.
pub fn spawn_with_groups(instances: Vec<VrrpInstance>, groups: Vec<VrrpSyncGroup>) -> Result<VrrpHandle, VrrpError> {
    spawn_after(instances, groups, false)
}

/// [`spawn_with_groups`] for an agent that may have taken over from another
/// one: `fast_path_adopted` says it adopted a pinned fast path (a handover
/// or a crash, not a cold start). Then an instance that finds every one of
/// its VIPs still on its interface resumes as master at once
/// ([`Event::Resume`]) instead of waiting a master-down interval in Backup.
pub fn spawn_after(
    instances: Vec<VrrpInstance>,
    groups: Vec<VrrpSyncGroup>,
    fast_path_adopted: bool,
) -> Result<VrrpHandle, VrrpError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|source| VrrpError::NoRuntime { source })?;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut handle =
        VrrpHandle { runtime, instances: Vec::new(), groups: Vec::new(), events_tx, events: Some(events_rx) };
    let all = instances.clone();
    let prepared = handle.prepare_all(instances, &all, &groups, fast_path_adopted)?;
    handle.launch(prepared);
    Ok(handle)
}

/// The account notify scripts run as, when there are any.
fn notify_account(n: &Notify) -> Result<Option<Account>, String> {
    if n.master.is_some() || n.backup.is_some() || n.fault.is_some() || n.stop.is_some() || n.any.is_some() {
        resolve_user(&n.user).map(Some).map_err(|e| format!("script user: {e}"))
    } else {
        Ok(None)
    }
}

/// One sync group: member reports in, `Sync*` events out. Ends when every
/// member task has ended (their senders are gone), after the group's STOP
/// scripts.
async fn run_group(
    group: VrrpSyncGroup,
    members: Vec<mpsc::UnboundedSender<Command>>,
    mut rx: GroupRx,
    account: Option<Account>,
) {
    let notifier = Notifier::spawn(group.name.clone(), account);
    let mut logic = SyncGroup::new(members.len());
    while let Some((_, input)) = rx.recv().await {
        for out in logic.handle(input) {
            match out {
                sync::Output::Deliver { member, event } => {
                    tracing::debug!(group = group.name, member = group.members[member], ?event, "sync group");
                    if let Some(tx) = members.get(member) {
                        let _ = tx.send(Command::Sync(event));
                    }
                }
                sync::Output::Notify(state) => {
                    tracing::info!(group = group.name, "VRRP sync group {}: {}", group.name, state.name());
                    notifier.run(group_commands(&group.notify, &group.name, state));
                }
            }
        }
    }
    notifier.finish(NOTIFY_TIMEOUT).await;
}

/// The index of a route's `dev`, looked up each time: the interface may
/// come (or come back) after the instance started.
fn route_oif(ifctl: &IfCtl, route: &VirtualRoute) -> io::Result<Option<u32>> {
    route.dev.as_deref().map(|dev| ifctl.index(dev)).transpose()
}

/// A VIP with where it goes.
#[derive(Debug)]
struct VipTarget {
    vip: VirtualAddress,
    dev: String,
    ifindex: u32,
    mac: [u8; 6],
}

/// The VRIDs of the instances in `all` other than `cfg` on its interface
/// and family, sorted: those its socket's filter keeps out.
fn vrids_beside(cfg: &VrrpInstance, all: &[VrrpInstance]) -> Vec<u8> {
    let mut vrids: Vec<u8> = (all.iter())
        .filter(|o| o.name != cfg.name && o.interface == cfg.interface && o.is_ipv6() == cfg.is_ipv6())
        .map(|o| o.vrid)
        .filter(|&vrid| vrid != cfg.vrid)
        .collect();
    vrids.sort_unstable();
    vrids.dedup();
    vrids
}

/// Sets the filter of `socket`. A failure costs only CPU (the instance
/// still drops other VRIDs itself), so it is logged and the instance runs.
fn filter_vrids(name: &str, socket: &VrrpSocket, mine: u8, beside: &[u8]) {
    if let Err(e) = socket.filter_vrids(mine, beside) {
        tracing::warn!(
            instance = name,
            error = %e,
            "could not filter the VRRP socket by VRID; the instance receives every VRID's adverts"
        );
    }
}

fn prepare(
    cfg: VrrpInstance,
    vrids_beside: Vec<u8>,
    events: mpsc::UnboundedSender<StateChange>,
    group: Option<GroupLink>,
    fast_path_adopted: bool,
) -> Result<(Task, AsyncFd<VrrpSocket>, Vec<u8>), VrrpError> {
    let name = cfg.name.clone();
    let io_err = |what: String| {
        let instance = name.clone();
        move |source: io::Error| VrrpError::Io { instance, what, source }
    };
    let setup = |message: String| VrrpError::Setup { instance: name.clone(), message };
    let ifctl = IfCtl::open().map_err(io_err("opening an ioctl socket".into()))?;
    let ifindex = ifctl.index(&cfg.interface).map_err(io_err(format!("interface {}", cfg.interface)))?;
    let ipv6 = cfg.is_ipv6();
    let src: IpAddr = match cfg.unicast_src {
        Some(src) => src,
        None if ipv6 => ipv6_link_local(&cfg.interface)
            .map_err(io_err(format!("addresses of {}", cfg.interface)))?
            .map(IpAddr::V6)
            .ok_or_else(|| {
                setup(format!("interface {} has no IPv6 link-local address to send adverts from", cfg.interface))
            })?,
        None => ifctl.ipv4(&cfg.interface).map(IpAddr::V4).map_err(|e| {
            setup(format!(
                "interface {} has no IPv4 address to send adverts from ({e}): add one or set unicast_src",
                cfg.interface
            ))
        })?,
    };
    let unicast = !cfg.unicast_peers.is_empty();
    let socket = match (src, cfg.mcast_group) {
        (IpAddr::V4(_), IpAddr::V4(group)) => VrrpSocket::open_v4(&cfg.interface, ifindex, (!unicast).then_some(group)),
        (IpAddr::V6(_), IpAddr::V6(group)) => VrrpSocket::open_v6(&cfg.interface, ifindex, (!unicast).then_some(group)),
        _ => return Err(setup(format!("advert source {src} and group {} are of different families", cfg.mcast_group))),
    }
    .map_err(io_err(format!("raw VRRP socket on {}", cfg.interface)))?;
    // Before the socket is polled, so that it queues no advert of theirs.
    filter_vrids(&name, &socket, cfg.vrid, &vrids_beside);
    // SAFETY: `VrrpSocket` owns its descriptor, closes it only when dropped,
    // and always returns that one from `as_raw_fd`.
    let socket =
        unsafe { AsyncFd::register(socket) }.map_err(|e| io_err("registering with tokio".into())(e.into_parts().1))?;
    let rtnl = Rtnl::open().map_err(io_err("opening a route netlink socket".into()))?;
    let packet = PacketSocket::open().map_err(io_err("opening a packet socket for gratuitous ARP".into()))?;
    let mut vips = Vec::with_capacity(cfg.virtual_addresses.len());
    for vip in &cfg.virtual_addresses {
        let dev = vip.dev.clone().unwrap_or_else(|| cfg.interface.clone());
        let ifindex = ifctl.index(&dev).map_err(io_err(format!("interface {dev} of VIP {vip}")))?;
        let mac = ifctl.mac(&dev).map_err(io_err(format!("MAC address of {dev}")))?;
        vips.push(VipTarget { vip: vip.clone(), dev, ifindex, mac });
    }
    let addresses = if ipv6 {
        Addresses::V6(
            vips.iter().filter_map(|v| if let IpAddr::V6(a) = v.vip.address { Some(a) } else { None }).collect(),
        )
    } else {
        Addresses::V4(
            vips.iter().filter_map(|v| if let IpAddr::V4(a) = v.vip.address { Some(a) } else { None }).collect(),
        )
    };
    let user = |user: &str| resolve_user(user).map_err(|e| setup(format!("script user: {e}")));
    let notify_account = notify_account(&cfg.notify).map_err(setup)?;
    let mut script_accounts: Vec<Account> = Vec::with_capacity(cfg.track_scripts.len());
    for s in &cfg.track_scripts {
        script_accounts.push(user(&s.user)?);
    }
    let params = fsm::RouterParams {
        version: cfg.version,
        vrid: cfg.vrid,
        priority: cfg.priority,
        advert_interval: cfg.advert_interval,
        preempt: cfg.preempt,
        preempt_delay: cfg.preempt_delay,
        lower_prio_no_advert: cfg.lower_prio_no_advert,
        primary_address: src,
        sync_group: group.is_some(),
    };
    let fsm = Instance::new(params).map_err(|source| VrrpError::Params { instance: name.clone(), source })?;
    let destinations = if unicast { cfg.unicast_peers.clone() } else { vec![cfg.mcast_group] };
    let router =
        ipv6 && std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").is_ok_and(|s| s.trim() == "1");
    let status = InstanceStatus {
        name: cfg.name.clone(),
        interface: cfg.interface.clone(),
        vrid: cfg.vrid,
        version: cfg.version,
        state: State::Initialize,
        base_priority: cfg.priority,
        effective_priority: cfg.priority,
        primary_address: src,
        master: None,
        fault_reasons: Vec::new(),
        counters: Counters::default(),
        rejected: Rejected::default(),
        other_vrid: 0,
        route_errors: 0,
        since: None,
    };
    let task = Task {
        fsm,
        src,
        destinations,
        filter: Filter {
            version: cfg.version,
            vrid: cfg.vrid,
            auth: cfg.auth,
            addresses,
            unicast_peers: cfg.unicast_peers.clone(),
        },
        rtnl,
        packet,
        ifctl,
        vips,
        router,
        tracking: Tracking::for_instance(&cfg),
        script_accounts,
        timers: Timers::default(),
        shared: Arc::new(Mutex::new(status.clone())),
        status,
        events,
        notify_account,
        logged: HashMap::new(),
        group,
        fast_path_adopted,
        cfg,
    };
    Ok((task, socket, vrids_beside))
}

#[derive(Clone, Copy, Debug, Default)]
struct Timers {
    adver: Option<Instant>,
    master_down: Option<Instant>,
    preempt: Option<Instant>,
    /// The second burst of gratuitous ARPs (`garp_master_delay`).
    garp_burst: Option<Instant>,
    /// The next periodic one (`garp_master_refresh`).
    garp_refresh: Option<Instant>,
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[derive(Debug)]
struct Task {
    cfg: VrrpInstance,
    fsm: Instance,
    /// Our advert source.
    src: IpAddr,
    /// The group, or the unicast peers.
    destinations: Vec<IpAddr>,
    /// What it accepts, and the VIP list its adverts carry.
    filter: Filter,
    rtnl: Rtnl,
    packet: PacketSocket,
    ifctl: IfCtl,
    vips: Vec<VipTarget>,
    /// Set the router flag in unsolicited NAs.
    router: bool,
    tracking: Tracking,
    script_accounts: Vec<Account>,
    timers: Timers,
    status: InstanceStatus,
    shared: Arc<Mutex<InstanceStatus>>,
    events: mpsc::UnboundedSender<StateChange>,
    notify_account: Option<Account>,
    /// Rate limit of repeated log lines: when each kind was last written.
    logged: HashMap<&'static str, Instant>,
    /// The sync group, when the instance is in one.
    group: Option<GroupLink>,
    /// The agent adopted a pinned fast path: see [`Task::resumes_master`].
    fast_path_adopted: bool,
}

impl Task {
    async fn run(mut self, socket: AsyncFd<VrrpSocket>, mut commands: mpsc::UnboundedReceiver<Command>) {
        let notifier = Notifier::spawn(self.cfg.name.clone(), self.notify_account);
        let (script_tx, mut script_rx) = mpsc::channel::<(usize, bool)>(64);
        let _script_tasks: Vec<AbortOnDrop> = (self.cfg.track_scripts.iter().cloned().enumerate())
            .map(|(i, s)| {
                AbortOnDrop(spawn_script(self.cfg.name.clone(), i, s, self.script_accounts[i], script_tx.clone()))
            })
            .collect();
        let sock = socket.get_ref();
        let resume = self.resumes_master().await;
        if !resume {
            self.remove_stale_routes().await;
            self.remove_stale_vips().await;
        }
        self.poll_links();
        self.reevaluate(sock, &notifier).await;
        self.handle(if resume { Event::Resume } else { Event::Startup }, sock, &notifier).await;
        self.publish();
        let mut links = time::interval(LINK_POLL);
        links.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; 4096];
        loop {
            let t = self.timers;
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(Command::Sync(event)) => self.handle(event, sock, &notifier).await,
                    Some(Command::FastPath(health)) => {
                        if self.tracking.report_fast_path(health) {
                            self.reevaluate(sock, &notifier).await;
                        }
                    }
                    Some(Command::FilterVrids(beside)) => filter_vrids(&self.cfg.name, sock, self.cfg.vrid, &beside),
                },
                ready = socket.readable() => match ready {
                    Ok(mut guard) => self.read(&mut guard, &mut buf, &notifier).await,
                    Err(e) => {
                        let name = &self.cfg.name;
                        tracing::error!(instance = name, error = %e, "VRRP socket failed; stopping the instance");
                        break;
                    }
                },
                () = sleep_opt(t.master_down) => {
                    self.timers.master_down = None;
                    self.handle(Event::MasterDownTimerFired, sock, &notifier).await;
                }
                () = sleep_opt(t.adver) => {
                    self.timers.adver = None;
                    self.handle(Event::AdverTimerFired, sock, &notifier).await;
                }
                () = sleep_opt(t.preempt) => {
                    self.timers.preempt = None;
                    self.handle(Event::PreemptDelayTimerFired, sock, &notifier).await;
                }
                () = sleep_opt(t.garp_burst) => {
                    self.timers.garp_burst = None;
                    self.announce();
                }
                () = sleep_opt(t.garp_refresh) => {
                    self.timers.garp_refresh = Some(Instant::now() + self.cfg.garp.master_refresh);
                    self.announce();
                }
                _ = links.tick() => {
                    self.poll_links();
                    self.reevaluate(sock, &notifier).await;
                }
                Some((index, success)) = script_rx.recv() => {
                    if let Some(s) = self.tracking.script_result(index, success) {
                        tracing::info!(
                            instance = self.cfg.name,
                            script = s.name,
                            "track_script {} is now {}", s.name, if s.ok() { "OK" } else { "failed" }
                        );
                        self.reevaluate(sock, &notifier).await;
                    }
                }
            }
            self.publish();
        }
        drop(script_tx);
        self.handle(Event::Shutdown, sock, &notifier).await;
        // Whatever the state machine did, nothing of ours stays on the interfaces.
        self.remove_routes().await;
        self.remove_vips().await;
        self.publish();
        notifier.finish(NOTIFY_TIMEOUT).await;
        tracing::info!(instance = self.cfg.name, "VRRP instance stopped");
    }

    async fn read(
        &mut self,
        guard: &mut tokio::io::unix::AsyncFdReadyGuard<'_, VrrpSocket>,
        buf: &mut [u8],
        notifier: &Notifier,
    ) {
        for _ in 0..RECV_BATCH {
            let info = match guard.try_io(|s| s.get_ref().recv(buf)) {
                Err(_would_block) => return,
                Ok(Ok(Some(info))) => info,
                Ok(Ok(None)) => {
                    self.status.rejected.add(Reason::Malformed);
                    continue;
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => {
                    if self.should_log("recv") {
                        tracing::warn!(instance = self.cfg.name, error = %e, "receiving VRRP packets");
                    }
                    return;
                }
            };
            let Some(payload) = buf.get(info.offset..info.offset + info.len) else { continue };
            let payload = payload.to_vec();
            self.on_packet(&info.header, &payload, guard.get_ref().get_ref(), notifier).await;
        }
    }

    async fn on_packet(&mut self, ip: &IpHeader, payload: &[u8], socket: &VrrpSocket, notifier: &Notifier) {
        let advert = match receive::accept(&self.filter, ip, payload) {
            Ok(advert) => advert,
            Err(Reject::OtherVrid { .. }) => {
                self.status.other_vrid += 1;
                return;
            }
            Err(reject) => {
                match self.status.rejected.count(&reject) {
                    Some(reason) => self.log_reject(reason, &reject),
                    None => tracing::debug!(instance = self.cfg.name, "ignored {reject}"),
                }
                return;
            }
        };
        self.handle(Event::advert(ip.src, &advert), socket, notifier).await;
        if self.fsm.state() == State::Backup {
            self.status.master = (advert.priority != 0).then_some(ip.src);
        }
    }

    fn log_reject(&mut self, reason: Reason, reject: &Reject) {
        if self.should_log(reason.name()) {
            tracing::warn!(
                instance = self.cfg.name,
                "rejected {reject} (repeats are counted, logged every {LOG_EVERY:?})"
            );
        } else {
            tracing::debug!(instance = self.cfg.name, "rejected {reject}");
        }
    }

    fn should_log(&mut self, key: &'static str) -> bool {
        let now = Instant::now();
        match self.logged.get(key) {
            Some(&at) if now.duration_since(at) < LOG_EVERY => false,
            _ => {
                self.logged.insert(key, now);
                true
            }
        }
    }

    async fn handle(&mut self, event: Event, socket: &VrrpSocket, notifier: &Notifier) {
        for action in self.fsm.handle(event) {
            self.perform(action, socket, notifier).await;
        }
    }

    async fn perform(&mut self, action: Action, socket: &VrrpSocket, notifier: &Notifier) {
        let now = Instant::now();
        match action {
            Action::SendAdvert { priority } => self.send_advert(priority, socket),
            // keepalived adds the routes after the addresses (a route's
            // `src` may be a VIP) and removes them first, in reverse.
            Action::AddVips => {
                self.add_vips().await;
                self.add_routes().await;
            }
            Action::RemoveVips => {
                self.remove_routes().await;
                self.remove_vips().await;
            }
            Action::Announce => self.announce(),
            Action::StartAdverTimer(d) => self.timers.adver = Some(now + d),
            Action::StartMasterDownTimer(d) => self.timers.master_down = Some(now + d),
            Action::StartPreemptDelayTimer(d) => self.timers.preempt = Some(now + d),
            Action::CancelTimers => {
                self.timers.adver = None;
                self.timers.master_down = None;
                self.timers.preempt = None;
            }
            Action::Notify(state) => {
                self.entered(state, notifier);
                self.tell_group(sync::Input::State { member: 0, state });
            }
            Action::WantsMaster(wants) => self.tell_group(sync::Input::WantsMaster { member: 0, wants }),
            Action::Discarded(reason) => {
                let (key, message) = match reason {
                    DiscardReason::NotParticipating { .. } | DiscardReason::OwnAdvert => {
                        tracing::trace!(instance = self.cfg.name, ?reason, "advert discarded");
                        return;
                    }
                    DiscardReason::IntervalMismatch { ours, theirs } => (
                        "interval",
                        format!("advert with interval {theirs}, ours is {ours}: VRRPv2 peers must agree (split brain)"),
                    ),
                };
                if self.should_log(key) {
                    tracing::warn!(instance = self.cfg.name, "discarded {message}");
                }
            }
        }
    }

    fn send_advert(&mut self, priority: u8, socket: &VrrpSocket) {
        let advert = self.fsm.advertisement(priority, self.cfg.auth, self.filter.addresses.clone());
        for dst in self.destinations.clone() {
            let Some(ph) = PseudoHeader::new(self.src, dst) else { continue };
            let sent = advert
                .encode(&ph, self.cfg.checksum)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
                .and_then(|bytes| socket.send(self.src, dst, &bytes));
            if let Err(e) = sent
                && self.should_log("send")
            {
                tracing::warn!(instance = self.cfg.name, %dst, error = %e, "sending an advert failed");
            }
        }
    }

    async fn add_vips(&mut self) {
        for t in &self.vips {
            match self.rtnl.add_address(t.ifindex, t.vip.address, t.vip.prefix_len, t.vip.label.as_deref()).await {
                Ok(_) => tracing::debug!(instance = self.cfg.name, vip = %t.vip, dev = t.dev, "VIP added"),
                Err(e) => {
                    let name = &self.cfg.name;
                    tracing::error!(instance = name, vip = %t.vip, dev = t.dev, error = %e, "adding a VIP failed");
                }
            }
        }
    }

    async fn remove_vips(&mut self) {
        for t in &self.vips {
            match self.rtnl.del_address(t.ifindex, t.vip.address, t.vip.prefix_len).await {
                Ok(true) => tracing::debug!(instance = self.cfg.name, vip = %t.vip, dev = t.dev, "VIP removed"),
                Ok(false) => {}
                Err(e) => {
                    let name = &self.cfg.name;
                    tracing::error!(instance = name, vip = %t.vip, dev = t.dev, error = %e, "removing a VIP failed");
                }
            }
        }
    }

    /// keepalived's `virtual_routes`, once the VIPs are there. A route the
    /// kernel refuses (a gateway not on any link, a `src` not local, a
    /// missing `dev`) is logged with its error and counted; the other routes
    /// and the instance go on, as in keepalived, rather than fail over for a
    /// route.
    async fn add_routes(&mut self) {
        for route in &self.cfg.virtual_routes {
            let added = match route_oif(&self.ifctl, route) {
                Ok(oif) => self.rtnl.add_route(route, oif).await,
                Err(e) => Err(e),
            };
            match added {
                Ok(()) => tracing::debug!(instance = self.cfg.name, %route, "virtual route added"),
                Err(e) => {
                    self.status.route_errors += 1;
                    let name = &self.cfg.name;
                    tracing::error!(instance = name, %route, error = %e, "adding a virtual route failed");
                }
            }
        }
    }

    async fn remove_routes(&mut self) {
        for route in &self.cfg.virtual_routes {
            // An interface that is gone took its routes with it.
            let Ok(oif) = route_oif(&self.ifctl, route) else { continue };
            match self.rtnl.del_route(route, oif).await {
                Ok(true) => tracing::debug!(instance = self.cfg.name, %route, "virtual route removed"),
                Ok(false) => {}
                Err(e) => {
                    self.status.route_errors += 1;
                    let name = &self.cfg.name;
                    tracing::error!(instance = name, %route, error = %e, "removing a virtual route failed");
                }
            }
        }
    }

    /// Routes left by a run that died without cleaning up would pull
    /// traffic here while this one is Backup; the same rule as for VIPs.
    async fn remove_stale_routes(&mut self) {
        if self.cfg.priority == super::packet::PRIORITY_OWNER {
            return;
        }
        for route in &self.cfg.virtual_routes {
            let Ok(oif) = route_oif(&self.ifctl, route) else { continue };
            if let Ok(true) = self.rtnl.del_route(route, oif).await {
                let name = &self.cfg.name;
                tracing::info!(instance = name, %route, "removed a virtual route left by an earlier run");
            }
        }
    }

    /// Whether to start in Master ([`Event::Resume`]): the agent adopted a
    /// pinned fast path and every VIP is still where it goes, so the agent
    /// before was master and handed over (`lb restart`) or died. Without
    /// an adopted fast path this is a cold start, whatever is on the
    /// interface; with some VIPs missing the interface changed since: both
    /// start in Backup, removing what was left. An address that cannot be
    /// checked counts as missing.
    ///
    /// Not with `nopreempt` (or a `preempt_delay`): a peer that took over
    /// while the agent was away (a crash restarted after the master-down
    /// interval) would be preempted at once, which is what the operator
    /// asked never to happen; such an instance starts in Backup as after
    /// any start.
    async fn resumes_master(&self) -> bool {
        if !self.fast_path_adopted || self.vips.is_empty() || !self.cfg.preempt || !self.cfg.preempt_delay.is_zero() {
            return false;
        }
        for t in &self.vips {
            match self.rtnl.has_address(t.ifindex, t.vip.address, t.vip.prefix_len).await {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    let name = &self.cfg.name;
                    tracing::warn!(instance = name, vip = %t.vip, dev = t.dev, error = %e, "checking a VIP failed");
                    return false;
                }
            }
        }
        tracing::info!(instance = self.cfg.name, "VIPs found in place after a handover: resuming as master");
        true
    }

    /// VIPs left by a run that died without cleaning up would answer ARP
    /// while this one is Backup. An owner's addresses are its own: kept.
    async fn remove_stale_vips(&mut self) {
        if self.cfg.priority == super::packet::PRIORITY_OWNER {
            return;
        }
        for t in &self.vips {
            if let Ok(true) = self.rtnl.del_address(t.ifindex, t.vip.address, t.vip.prefix_len).await {
                let name = &self.cfg.name;
                tracing::info!(instance = name, vip = %t.vip, dev = t.dev, "removed a VIP left by an earlier run");
            }
        }
    }

    /// One burst: `garp_master_repeat` announcements per VIP.
    fn announce(&mut self) {
        for _ in 0..self.cfg.garp.master_repeat.max(1) {
            for t in &self.vips {
                let frame = match t.vip.address {
                    IpAddr::V4(ip) => garp_frame(t.mac, ip),
                    IpAddr::V6(ip) => unsolicited_na_frame(t.mac, ip, self.router),
                };
                if let Err(e) = self.packet.send(t.ifindex, &frame)
                    && self.logged.get("garp").is_none_or(|at| at.elapsed() >= LOG_EVERY)
                {
                    self.logged.insert("garp", Instant::now());
                    tracing::warn!(
                        instance = self.cfg.name,
                        vip = %t.vip,
                        dev = t.dev,
                        error = %e,
                        "announcing a VIP failed"
                    );
                }
            }
        }
    }

    fn entered(&mut self, state: State, notifier: &Notifier) {
        let from = self.status.state;
        let now = Instant::now();
        let priority = self.fsm.priority();
        match state {
            State::Master => {
                self.status.master = Some(self.src);
                let garp = self.cfg.garp;
                self.timers.garp_burst = (!garp.master_delay.is_zero()).then(|| now + garp.master_delay);
                self.timers.garp_refresh = (!garp.master_refresh.is_zero()).then(|| now + garp.master_refresh);
            }
            State::Backup | State::Fault | State::Initialize => {
                self.status.master = None;
                self.timers.garp_burst = None;
                self.timers.garp_refresh = None;
            }
        }
        self.status.state = state;
        self.status.since = Some(SystemTime::now());
        tracing::info!(
            instance = self.cfg.name,
            vrid = self.cfg.vrid,
            priority,
            "VRRP instance {}: {} -> {}",
            self.cfg.name,
            from.name(),
            state.name()
        );
        let _ = self.events.send(StateChange { instance: self.cfg.name.clone(), from, to: state, priority });
        notifier.run(commands_for(&self.cfg.notify, &self.cfg.name, state, priority));
    }

    fn poll_links(&mut self) {
        let down = (self.tracking.interfaces().iter()).filter(|n| self.ifctl.link(n) == Link::Down).cloned().collect();
        let changes = self.tracking.links_down(down);
        for name in &changes.down {
            tracing::warn!(instance = self.cfg.name, interface = name, "tracked interface is down");
        }
        for name in &changes.up {
            tracing::info!(instance = self.cfg.name, interface = name, "tracked interface is up again");
        }
    }

    /// Feeds tracking into the state machine: the priority first, so that
    /// leaving FAULT starts with the right one.
    async fn reevaluate(&mut self, socket: &VrrpSocket, notifier: &Notifier) {
        let update = self.tracking.evaluate();
        if let Some(problems) = update.fast_path {
            if problems.is_empty() {
                tracing::info!(instance = self.cfg.name, "fast path healthy again");
            } else {
                let weight = self.cfg.track_fast_path.map(|t| t.weight);
                tracing::warn!(instance = self.cfg.name, weight, "{}", problems.join(", "));
            }
        }
        if let Some(effective) = update.priority {
            tracing::info!(
                instance = self.cfg.name,
                from = self.fsm.priority(),
                to = effective,
                "effective priority changed"
            );
            self.handle(Event::PriorityChanged { effective }, socket, notifier).await;
        }
        if let Some(fault) = update.fault {
            if fault {
                tracing::warn!(instance = self.cfg.name, "FAULT: {}", self.tracking.fault_reasons().join(", "));
                self.handle(Event::FaultDetected, socket, notifier).await;
            } else {
                tracing::info!(instance = self.cfg.name, "tracking healthy again; leaving FAULT");
                self.handle(Event::FaultCleared, socket, notifier).await;
            }
            self.tell_group(sync::Input::Tracking { member: 0, faulty: fault });
        }
        self.status.fault_reasons = self.tracking.fault_reasons().to_vec();
    }

    /// Reports to the sync group; `member` in `input` is filled in here.
    fn tell_group(&self, input: sync::Input) {
        let Some(link) = &self.group else { return };
        let input = match input {
            sync::Input::State { state, .. } => sync::Input::State { member: link.member, state },
            sync::Input::WantsMaster { wants, .. } => sync::Input::WantsMaster { member: link.member, wants },
            sync::Input::Tracking { faulty, .. } => sync::Input::Tracking { member: link.member, faulty },
        };
        let _ = link.tx.send((link.member, input));
    }

    fn publish(&mut self) {
        self.status.effective_priority = self.fsm.priority();
        self.status.counters = *self.fsm.counters();
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.clone_from(&self.status);
    }
}
