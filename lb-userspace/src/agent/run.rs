//! `lb run`: the agent's one event loop. Health results, neighbour changes,
//! control requests and signals arrive as messages; the [`Director`] turns
//! each into ordered map writes. Nothing here blocks the loop for long: the
//! checks and the neighbour watcher run in their own tasks.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{debug, error, info, warn};

use super::{
    control::{self, Command, ControlError, Request, Response},
    director::{Director, DirectorError, Transition},
    service::State,
};
use crate::{
    config::{Config, ConfigError},
    dataplane::{self, Dataplane, DataplaneError, DataplaneOptions},
    health::{HealthError, HealthEvent, Monitor, MonitorOptions, Target, TargetId},
    neigh::{NeighError, NeighEvent, NeighborHandle, NeighborWatcher},
    vrrp::{
        addresses::Rtnl,
        runtime::{self as vrrp, VrrpError, VrrpHandle},
        track::DataplaneHealth,
    },
};

/// How often the fast path's attachment is checked for `track_dataplane`:
/// the 100 ms advert interval keepalived users run, so a detached program
/// costs the master at most about one interval more than the failover itself.
const DATAPLANE_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("fast path: {0}")]
    Dataplane(#[from] DataplaneError),
    #[error("{0}")]
    Director(#[from] DirectorError),
    #[error("health checks: {0}")]
    Health(#[from] HealthError),
    #[error("{0}")]
    Control(#[from] ControlError),
    #[error("neighbour table: {0}")]
    Neigh(#[from] NeighError),
    #[error("VRRP: {0}")]
    Vrrp(#[from] VrrpError),
    #[error("installing signal handlers: {source}")]
    Signals { source: std::io::Error },
    #[error("the agent needs root (CAP_BPF and CAP_NET_ADMIN)")]
    NotRoot,
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Interfaces to attach to besides those the VIPs name.
    pub interfaces: Vec<String>,
    /// The fast path's packet trace: which packets to log (`lb run --trace`).
    pub trace: Option<crate::trace::Filter>,
}

/// Loads the configuration and the fast path, then serves until SIGINT or
/// SIGTERM. SIGHUP (or `lb reload`) re-reads the file; a bad file is
/// reported and the running configuration keeps serving.
pub async fn run(opts: RunOptions) -> Result<(), AgentError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(AgentError::NotRoot);
    }
    let config = load(&opts.config)?;
    let dp = Dataplane::load_traced(
        DataplaneOptions {
            max_vips: config.global.max_vips,
            max_ring_size: config.max_ring_size(),
            flows_per_cpu: config.global.flows_per_cpu,
        },
        opts.trace.as_ref(),
    )?;
    let mut interfaces: Vec<String> = config.vips.iter().map(|v| v.interface.clone()).collect();
    interfaces.extend(opts.interfaces.iter().cloned());
    interfaces.sort();
    interfaces.dedup();
    let mut director = Director::new(config, dp)?;
    for iface in &interfaces {
        let mode = director.dataplane_mut().attach(iface)?;
        info!(interface = %iface, ?mode, "fast path attached");
    }
    // Heads-ups let the director build a ring before the verdict that needs it.
    let (mut monitor, mut health) = Monitor::new(MonitorOptions { heads_up: true, ..MonitorOptions::default() });
    monitor.sync(targets(&director))?;
    let (neighbors, mut macs) = NeighborWatcher::spawn(neighbor_targets(&director))?;
    // The fast path runs on every director all the time with the same maps;
    // VRRP only decides which one holds the VIPs (and so gets the traffic).
    let mut vrrp = start_vrrp(director.config())?;
    let mut probe = DataplaneProbe::new(&director);
    let mut dataplane_poll = tokio::time::interval(DATAPLANE_POLL);
    dataplane_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (commands_tx, mut commands) = mpsc::channel::<Command>(64);
    let socket = director.config().global.control_socket.clone();
    let control = control::serve(&socket, commands_tx)?;
    let signals = |kind| signal(kind).map_err(|source| AgentError::Signals { source });
    let (mut hup, mut term, mut int) =
        (signals(SignalKind::hangup())?, signals(SignalKind::terminate())?, signals(SignalKind::interrupt())?);
    info!(config = %opts.config.display(), socket = %socket.display(), vips = director.services().len(), "serving");

    loop {
        tokio::select! {
            Some(event) = health.recv() => {
                on_health(&mut director, event);
                take_in_and_flush(&mut director, &mut health, &mut macs);
            }
            Some(event) = macs.recv() => {
                on_mac(&mut director, event);
                take_in_and_flush(&mut director, &mut health, &mut macs);
            }
            Some(Command { request, reply }) = commands.recv() => {
                let response = match request {
                    Request::Status => match director.status(true) {
                        Ok(mut status) => {
                            status.vrrp = vrrp_status(vrrp.as_ref());
                            Response { ok: true, status: Some(status), ..Response::default() }
                        }
                        Err(e) => Response::error(e.to_string()),
                    },
                    Request::Reload => {
                        let before = vrrp_part(director.config());
                        let r = reload(&mut director, &mut monitor, &neighbors, &opts.config);
                        if r.ok && vrrp_part(director.config()) != before {
                            restart_vrrp(&mut vrrp, director.config()).await;
                        }
                        r
                    }
                    other => {
                        let response = director.command(&other);
                        if response.ok {
                            info!("{}", response.message.as_deref().unwrap_or_default());
                        }
                        response
                    }
                };
                let _ = reply.send(response);
            }
            _ = hup.recv() => {
                let before = vrrp_part(director.config());
                let r = reload(&mut director, &mut monitor, &neighbors, &opts.config);
                if !r.ok {
                    warn!("reload on SIGHUP refused: {}", r.error.unwrap_or_default());
                } else if vrrp_part(director.config()) != before {
                    restart_vrrp(&mut vrrp, director.config()).await;
                }
            }
            _ = dataplane_poll.tick(), if director.config().vrrp.iter().any(|v| v.track_dataplane.is_some()) => {
                if let Some(v) = &vrrp {
                    v.report_dataplane(&probe.health(&director));
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    if let Some(v) = vrrp.take() {
        // Priority 0 first, so a backup takes over after skew time, not
        // after the master-down interval; then the VIPs go.
        info!("stopping: leaving VRRP");
        v.shutdown().await;
    }
    info!("stopping: detaching the fast path");
    control.abort();
    let _ = std::fs::remove_file(&socket);
    monitor.shutdown().await;
    drop(director);
    Ok(())
}

/// What `track_dataplane` needs: whether our XDP program is still the one
/// attached to each interface we attached it to (netlink `IFLA_XDP`), and
/// which VIP addresses have no live backend.
struct DataplaneProbe {
    rtnl: Option<Rtnl>,
    /// Our program's kernel id; `None` if it could not be read (then any
    /// attached program counts).
    prog_id: Option<u32>,
}

impl DataplaneProbe {
    fn new(director: &Director) -> Self {
        let rtnl = Rtnl::open()
            .inspect_err(|e| warn!("track_dataplane: no route netlink socket ({e}); XDP attachment is not checked"))
            .ok();
        let prog_id = director.dataplane().program().info().ok().map(|i| i.id());
        Self { rtnl, prog_id }
    }

    fn health(&mut self, director: &Director) -> DataplaneHealth {
        let mut detached = Vec::new();
        if let Some(rtnl) = &mut self.rtnl {
            for (iface, _) in director.dataplane().attachments() {
                let attached = dataplane::ifindex(iface)
                    .ok()
                    .and_then(|ifindex| rtnl.xdp_prog_id(ifindex).ok().flatten())
                    .is_some_and(|id| self.prog_id.is_none_or(|ours| ours == id));
                if !attached {
                    detached.push(iface.to_owned());
                }
            }
        }
        DataplaneHealth { detached, vips_without_backend: vips_without_backend(director) }
    }
}

/// VIP addresses none of whose services has a backend in its ring.
fn vips_without_backend(director: &Director) -> Vec<IpAddr> {
    let mut live: Vec<(IpAddr, bool)> = Vec::new();
    for s in director.services() {
        let any = s.backends.iter().any(|b| b.effective_weight() > 0);
        match live.iter_mut().find(|(a, _)| *a == s.vip.address) {
            Some((_, l)) => *l |= any,
            None => live.push((s.vip.address, any)),
        }
    }
    live.into_iter().filter(|(_, l)| !l).map(|(a, _)| a).collect()
}

fn on_health(director: &mut Director, event: HealthEvent) {
    if event.heads_up {
        let (id, up) = (event.target.backend, event.up);
        match director.prepare(id, up, event.weight) {
            Ok(built) => debug!(%id, up, built, reason = event.reason, "one check from a change: ring built ahead"),
            Err(e) => warn!("building a ring ahead: {e}"),
        }
        return;
    }
    match director.on_health(event.target.backend, event.up, event.weight, &event.reason) {
        Ok(transitions) => log_transitions(&transitions),
        Err(e) => error!("applying a health change: {e}"),
    }
}

fn on_mac(director: &mut Director, event: NeighEvent) {
    let iface = interface_name(event.ifindex);
    match director.on_mac(&iface, event.target, event.mac, &event.reason) {
        Ok(transitions) => log_transitions(&transitions),
        Err(e) => error!("applying a neighbour change: {e}"),
    }
}

/// Takes in every event already waiting, then writes the fast path once: a
/// burst (every MAC resolving at start-up, a switch failing under many
/// backends) costs one flip, not one per backend.
fn take_in_and_flush(
    director: &mut Director,
    health: &mut mpsc::Receiver<HealthEvent>,
    macs: &mut mpsc::Receiver<NeighEvent>,
) {
    loop {
        let mut any = false;
        while let Ok(e) = health.try_recv() {
            on_health(director, e);
            any = true;
        }
        while let Ok(e) = macs.try_recv() {
            on_mac(director, e);
            any = true;
        }
        if !any {
            break;
        }
    }
    match director.flush() {
        Ok(Some(t)) => debug!(
            "fast path updated in {:?} (failed backends withdrawn after {:?}, rings built in {:?})",
            t.total, t.withdraw, t.build
        ),
        Ok(None) => {}
        Err(e) => error!("updating the fast path: {e}"),
    }
}

fn load(path: &Path) -> Result<Config, AgentError> {
    let config = Config::from_file(path)?;
    config.check_interfaces(|name| dataplane::ifindex(name).is_ok())?;
    // keepalived's enable_script_security, always on: a script root runs
    // that others can rewrite is refused, as is one that cannot run at all.
    config.check_scripts(crate::script::check_configured)?;
    for line in config.warning_lines() {
        warn!("{line}");
    }
    Ok(config)
}

/// A bad file, or one that would need a restart, leaves the running
/// configuration serving and says why.
fn reload(director: &mut Director, monitor: &mut Monitor, neighbors: &NeighborHandle, path: &Path) -> Response {
    let config = match load(path) {
        Ok(c) => c,
        Err(e) => return Response::error(format!("{e}\nthe running configuration stays in force")),
    };
    let previous = director.config().clone();
    if let Err(e) = director.reload(config) {
        return Response::error(format!("{e}\nthe running configuration stays in force"));
    }
    if let Err(e) = monitor.sync(targets(director)) {
        // The checks could not be set up (a script user that does not
        // exist, say): put the previous file back so nothing is half applied.
        // It was serving a moment ago, so it goes back in.
        if let Err(back) = director.reload(previous) {
            error!("restoring the previous configuration after a failed reload: {back}");
        }
        return Response::error(format!("health checks: {e}\nthe running configuration stays in force"));
    }
    if let Err(e) = neighbors.set_targets(neighbor_targets(director)) {
        return Response::error(format!("neighbour table: {e}"));
    }
    info!(config = %path.display(), "configuration reloaded");
    Response::ok(format!("reloaded {}", path.display()))
}

/// One health target per checked backend, keyed by its fast-path id. A
/// target starts in the state the director holds for its backend: the
/// monitor reports transitions only, so a check restarted by a reload (its
/// settings changed) that started up for a backend the director holds down
/// would never report it up again.
fn targets(director: &Director) -> Vec<Target> {
    let mut out = Vec::new();
    for s in director.services() {
        for (b, cfg) in s.backends.iter().zip(&s.vip.backends) {
            if let Some(check) = &cfg.check {
                let id = TargetId { vip: s.vip_index, backend: b.id };
                out.push(Target { initially_up: b.healthy, ..Target::new(id, b.address, check.clone()) });
            }
        }
    }
    out
}

type VrrpPart = (Vec<crate::config::VrrpInstance>, Vec<crate::config::VrrpSyncGroup>);

/// What the VRRP runtime is started from.
fn vrrp_part(config: &Config) -> VrrpPart {
    (config.vrrp.clone(), config.vrrp_sync_groups.clone())
}

fn start_vrrp(config: &Config) -> Result<Option<VrrpHandle>, AgentError> {
    if config.vrrp.is_empty() {
        return Ok(None);
    }
    let handle = vrrp::spawn_with_groups(config.vrrp.clone(), config.vrrp_sync_groups.clone())?;
    info!(instances = ?handle.names(), "VRRP started");
    Ok(Some(handle))
}

/// VRRP instances changed in a reload: only the changed, removed and new
/// ones are touched ([`VrrpHandle::reload`]); the others keep running without
/// a state change. A failure to start is logged and leaves VRRP as it was;
/// the director keeps forwarding either way.
async fn restart_vrrp(vrrp: &mut Option<VrrpHandle>, config: &Config) {
    match vrrp {
        Some(v) if !config.vrrp.is_empty() => {
            match v.reload(config.vrrp.clone(), config.vrrp_sync_groups.clone()).await {
                Ok(plan) => info!(kept = ?plan.keep, stopped = ?plan.stop, started = ?plan.start, "VRRP reloaded"),
                Err(e) => error!("reloading VRRP: {e}; the instances run as before"),
            }
        }
        Some(_) => {
            if let Some(v) = vrrp.take() {
                v.shutdown().await;
            }
        }
        None => match start_vrrp(config) {
            Ok(v) => *vrrp = v,
            Err(e) => error!("starting VRRP after a reload: {e}"),
        },
    }
}

fn vrrp_status(vrrp: Option<&VrrpHandle>) -> Vec<super::status::VrrpStatus> {
    let Some(v) = vrrp else { return Vec::new() };
    v.status()
        .into_iter()
        .map(|s| super::status::VrrpStatus {
            name: s.name,
            interface: s.interface,
            vrid: s.vrid,
            state: format!("{:?}", s.state).to_uppercase(),
            priority: s.base_priority,
            effective_priority: s.effective_priority,
            master: s.master,
            fault_reasons: s.fault_reasons,
            rejected: s
                .rejected
                .by_reason()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
            route_errors: s.route_errors,
        })
        .collect()
}

/// Every backend's address on its VIP's interface: DR needs their MACs there.
fn neighbor_targets(director: &Director) -> Vec<(u32, std::net::IpAddr)> {
    let mut out = Vec::new();
    for s in director.services() {
        let Ok(ifindex) = dataplane::ifindex(&s.vip.interface) else { continue };
        out.extend(s.backends.iter().chain(&s.sorry).map(|b| (ifindex, b.address)));
    }
    out.sort();
    out.dedup();
    out
}

fn interface_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes, NUL included,
    // into a buffer of that size.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{ifindex}");
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

fn log_transitions(transitions: &[Transition]) {
    for t in transitions {
        match &t.to {
            State::Up => {
                info!(vip = %t.vip, backend = %t.backend, "backend up (was {}: {})", t.from.name(), t.from.why())
            }
            State::Draining { why } => {
                warn!(vip = %t.vip, backend = %t.backend, "backend draining: {why}");
            }
            State::Down { why } => warn!(vip = %t.vip, backend = %t.backend, "backend down: {why}"),
        }
    }
}
