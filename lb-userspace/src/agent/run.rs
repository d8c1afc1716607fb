//! `lb run`: the agent's one event loop. Health results, neighbour changes,
//! control requests and signals arrive as messages; the [`Director`] turns
//! each into ordered map writes. Nothing here blocks the loop for long: the
//! checks and the neighbour watcher run in their own tasks.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{debug, error, info, warn};

use super::{
    announcing::Announcer,
    control::{self, Command, ControlError, Request, Response},
    director::{Director, DirectorError, Transition},
    reload::{self, HealthTargets, NeighbourTargets, Parts, VrrpInstances},
    service::State,
    status::EventKind,
    targets::{health_targets, neighbour_targets},
};
use crate::{
    announce::drain::{self, Drain, Drained},
    config::{Config, ConfigError},
    fast_path::{FastPath, FastPathError, FastPathOptions},
    health::{HealthError, HealthEvent, Monitor, MonitorOptions, Target},
    neigh::{NeighError, NeighEvent, NeighbourHandle, NeighbourWatcher},
    netdev,
    rtnl::Rtnl,
    systemd::Notifier,
    vrrp::{
        runtime::{self as vrrp, VrrpError, VrrpHandle},
        tracking::FastPathHealth,
    },
    web::{self, CounterSource as _, Publisher, WebError},
};

/// How often the fast path's attachment is checked for `track_fast_path`:
/// the 100 ms advert interval keepalived users run, so a detached program
/// costs the master at most about one interval more than the failover itself.
const FAST_PATH_POLL: Duration = Duration::from_millis(100);
/// How long one attachment check may hold up the agent's loop. The kernel
/// answers within the request; this only runs out when the connection's
/// task is starved, well short of route netlink's own request limit.
const FAST_PATH_PROBE_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("fast path: {0}")]
    FastPath(#[from] FastPathError),
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
    #[error("{0}")]
    Web(#[from] WebError),
    #[error("installing signal handlers: {source}")]
    Signals { source: std::io::Error },
    #[error("the agent needs root (CAP_BPF and CAP_NET_ADMIN)")]
    NotRoot,
}

/// The exit status of `lb run` after `lb restart`: the fast path stays
/// pinned for the next agent, and `dist/lb.service` names this status in
/// `RestartForceExitStatus=` so that systemd starts that agent.
pub const HANDOVER_EXIT: u8 = 75;

/// How the agent stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT: VRRP left (priority 0, addresses removed), the
    /// fast path detached and its pins removed.
    Plainly,
    /// `lb restart`: the fast path left pinned and forwarding, VRRP's
    /// addresses in place, for the next agent to adopt.
    ForHandover,
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Interfaces to attach to besides those the VIPs name.
    pub interfaces: Vec<String>,
    /// The fast path's packet trace: which packets to log (`lb run --trace`).
    pub trace: Option<crate::trace::Filter>,
    /// Overrides `[global] pin_dir`.
    pub pin_dir: Option<PathBuf>,
    /// Removes a fast path pinned with another map layout instead of
    /// refusing to start.
    pub discard_pinned: bool,
}

/// Loads the configuration and the fast path, then serves until SIGINT or
/// SIGTERM (or `lb restart`). SIGHUP (or `lb reload`) re-reads the file; a
/// bad file is reported and the running configuration keeps serving.
///
/// The fast path is pinned under the pin directory; one pinned there by an
/// agent before this one is adopted: its flows, counters and rings kept,
/// this agent's program swapped in on the same links.
pub async fn run(opts: RunOptions) -> Result<Stopped, AgentError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(AgentError::NotRoot);
    }
    let started = Instant::now();
    let config = load(&opts.config)?;
    let pin_dir = opts.pin_dir.clone().unwrap_or_else(|| config.global.pin_dir.clone());
    let dp = FastPath::load_pinned(
        FastPathOptions {
            max_vips: config.global.max_vips,
            max_ring_size: config.max_ring_size(),
            flows_per_cpu: config.global.flows_per_cpu,
        },
        opts.trace.as_ref(),
        &pin_dir,
        opts.discard_pinned,
    )?;
    let adopted = dp.is_adopted();
    if adopted {
        info!(pin_dir = %pin_dir.display(), "adopting the fast path pinned by the agent before");
    }
    let mut interfaces: Vec<String> = config.vips.iter().map(|v| v.interface.clone()).collect();
    interfaces.extend(opts.interfaces.iter().cloned());
    interfaces.sort();
    interfaces.dedup();
    let mut director = Director::new(config, dp)?;
    if adopted {
        info!(took = ?started.elapsed(), "fast path adopted");
    }
    for iface in &interfaces {
        let mode = director.fast_path_mut().attach(iface)?;
        info!(interface = %iface, ?mode, "fast path attached");
    }
    // Heads-ups let the director build a ring before the verdict that needs it.
    let (mut monitor, mut health) = Monitor::new(MonitorOptions { heads_up: true, ..MonitorOptions::default() });
    monitor.sync(health_targets(director.services()))?;
    let (mut neighbours, mut macs) = NeighbourWatcher::spawn(neighbour_targets(director.services(), known_ifindex))?;
    // The fast path runs on every director all the time with the same maps;
    // VRRP only decides which one holds the VIPs (and so gets the traffic).
    let mut vrrp = start_vrrp(director.config(), adopted)?;
    let mut vrrp_changes = vrrp.as_mut().and_then(VrrpHandle::take_events);
    let probe = FastPathProbe::new(&director);
    let mut fast_path_poll = tokio::time::interval(FAST_PATH_POLL);
    fast_path_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (commands_tx, mut commands) = mpsc::channel::<Command>(64);
    let socket = director.config().global.control_socket.clone();
    let control = control::serve(&socket, commands_tx)?;
    // The HTTP listener reads what the loop publishes, and the counters
    // through its own handles on the maps: it never waits for the loop.
    let (mut publisher, snapshots) = Publisher::new();
    publisher.publish(&director, vrrp.as_ref());
    let maps = Arc::new(web::CounterMaps::open(director.fast_path_mut().ebpf_mut())?);
    let shared = web::Shared::new(snapshots, maps.clone(), Some(monitor.board()), publisher.publish_seconds());
    // With the fast path adopted the routes the agent before left stay:
    // the director kept forwarding what the routers sent it.
    let mut announcer = Announcer::start(director.config(), adopted).await;
    announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
    let mut drain_tick = tokio::time::interval(drain::SAMPLE_EVERY);
    let mut draining: Option<(Drain, tokio::sync::oneshot::Sender<Response>)> = None;
    let mut listener = web::Listener::start(director.config().global.metrics, &shared).await?;
    let signals = |kind| signal(kind).map_err(|source| AgentError::Signals { source });
    let (mut hup, mut term, mut int) =
        (signals(SignalKind::hangup())?, signals(SignalKind::terminate())?, signals(SignalKind::interrupt())?);
    info!(config = %opts.config.display(), socket = %socket.display(), vips = director.services().len(), "serving");
    let systemd = Notifier::from_env();
    systemd.ready(&serving(&director));
    // Without a watchdog the arm below is off; the period is then unused.
    let mut watchdog = tokio::time::interval(systemd.watchdog_interval().unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut stopped = Stopped::Plainly;
    loop {
        tokio::select! {
            // Health and neighbour events last: a stop, the watchdog, VRRP's
            // changes and commands are never kept waiting behind a stream of
            // them (a server shared by many VIPs failing has each VIP's ring
            // built again, one flush after another).
            biased;
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = watchdog.tick(), if systemd.watchdog_interval().is_some() => systemd.watchdog(),
            Some(change) = next_change(&mut vrrp_changes) => {
                on_vrrp_change(&mut director, vrrp.as_ref(), change);
                announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
                publisher.publish(&director, vrrp.as_ref());
            }
            () = at(announcer.deadline()) => {
                announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
            }
            _ = drain_tick.tick(), if draining.is_some() => {
                let packets = vip_packets(&director, &maps);
                let ended = draining.as_mut().and_then(|(d, _)| d.sample(Instant::now(), packets));
                if let Some(ended) = ended {
                    let message = match ended {
                        Drained::Quiet => "every VIP withdrawn and the traffic has moved away; stopping",
                        Drained::TimedOut => "every VIP withdrawn; traffic still arrived at the timeout; stopping",
                    };
                    info!("drain: {message}");
                    if let Some((_, reply)) = draining.take() {
                        let _ = reply.send(Response::ok(message));
                    }
                    break;
                }
            }
            Some(Command { request, reply }) = commands.recv() => {
                if request == Request::Restart {
                    let _ = reply.send(Response::ok("exiting; the fast path stays pinned for the next agent"));
                    stopped = Stopped::ForHandover;
                    break;
                }
                if request == Request::Status {
                    answer_status(&shared, reply);
                    continue;
                }
                if let Request::DrainDirector { timeout_ms } = request {
                    if !announcer.is_on() {
                        let _ = reply.send(Response::error(
                            "no [announce] table: nothing is announced, so there is nothing to drain; \
                             stop the agent instead",
                        ));
                    } else if draining.is_some() {
                        let _ = reply.send(Response::error("the director is draining already"));
                    } else {
                        info!(timeout_ms, "drain: withdrawing every VIP; stopping once the traffic has moved");
                        announcer.drain();
                        announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
                        let mut d = Drain::new(Instant::now(), Duration::from_millis(timeout_ms));
                        d.sample(Instant::now(), vip_packets(&director, &maps));
                        draining = Some((d, reply));
                    }
                    continue;
                }
                let response = match request {
                    Request::Reload => {
                        systemd.reloading();
                        let r = reload_file(&mut director, &mut monitor, &mut neighbours, &mut vrrp, &opts.config).await;
                        announcer.reload(director.config()).await;
                        announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
                        let r = follow_reload(&mut publisher, &mut listener, &shared, &director, vrrp.as_ref(), r).await;
                        systemd.ready(&after_reload(&director, &r));
                        vrrp_changes = vrrp_changes.or_else(|| vrrp.as_mut().and_then(VrrpHandle::take_events));
                        r
                    }
                    other => {
                        let response = director.command(&other);
                        if response.ok {
                            info!("{}", response.message.as_deref().unwrap_or_default());
                        }
                        announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
                        publisher.publish(&director, vrrp.as_ref());
                        response
                    }
                };
                let _ = reply.send(response);
            }
            _ = hup.recv() => {
                systemd.reloading();
                let r = reload_file(&mut director, &mut monitor, &mut neighbours, &mut vrrp, &opts.config).await;
                announcer.reload(director.config()).await;
                announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
                let r = follow_reload(&mut publisher, &mut listener, &shared, &director, vrrp.as_ref(), r).await;
                systemd.ready(&after_reload(&director, &r));
                vrrp_changes = vrrp_changes.or_else(|| vrrp.as_mut().and_then(VrrpHandle::take_events));
                if !r.ok {
                    warn!("reload on SIGHUP refused: {}", r.error.unwrap_or_default());
                }
            }
            _ = fast_path_poll.tick(), if announcer.is_on() || tracks_fast_path(director.config()) => {
                let health = probe.health(&director).await;
                if let Some(v) = &vrrp {
                    v.report_fast_path(&health);
                }
                announcer.set_detached(&health.detached);
                announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
            }
            Some(event) = health.recv() => {
                on_health(&mut director, event);
                take_in_and_flush(&mut director, &mut health, &mut macs);
                publisher.publish_if_installed(&director, vrrp.as_ref());
                announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
            }
            Some(event) = macs.recv() => {
                on_mac(&mut director, event);
                take_in_and_flush(&mut director, &mut health, &mut macs);
                publisher.publish_if_installed(&director, vrrp.as_ref());
                announce(&mut announcer, &mut director, vrrp.as_ref(), &mut publisher).await;
            }
        }
    }
    systemd.stopping();
    if let Some((_, reply)) = draining.take() {
        let _ = reply.send(Response::ok("stopped before the traffic had moved away"));
    }
    if stopped == Stopped::Plainly {
        // Withdrawn while the fast path still forwards, so the routers move
        // the flows to the other directors before this one stops serving.
        info!("stopping: withdrawing the announced VIPs");
        announcer.stop(&mut director).await;
    } else {
        info!("handing over: the announced VIPs stay announced");
    }
    if let Some(v) = vrrp.take() {
        if stopped == Stopped::ForHandover {
            // No priority 0 and the addresses stay: the next agent takes
            // over as master while the fast path keeps forwarding.
            info!("handing over: VRRP left as it is");
            std::mem::forget(v);
        } else {
            // Priority 0 first, so a backup takes over after skew time, not
            // after the master-down interval; then the VIPs go.
            info!("stopping: leaving VRRP");
            v.shutdown().await;
        }
    }
    control.abort();
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    monitor.shutdown().await;
    if stopped == Stopped::ForHandover {
        info!("handing over: the fast path stays pinned and forwarding");
    } else {
        info!("stopping: detaching the fast path and removing its pins");
        if let Err(e) = director.fast_path_mut().unpin() {
            error!("removing the fast path's pins: {e}");
        }
    }
    drop(director);
    Ok(stopped)
}

/// Decides the announcements again, and republishes when what `lb status`
/// shows of them changed.
async fn announce(
    announcer: &mut Announcer,
    director: &mut Director,
    vrrp: Option<&VrrpHandle>,
    publisher: &mut Publisher,
) {
    if announcer.is_idle() {
        return;
    }
    let states: Vec<_> = vrrp.map(|v| v.status().into_iter().map(|s| (s.name, s.state)).collect()).unwrap_or_default();
    if announcer.update(director, &states).await {
        publisher.set_announce(announcer.status());
        publisher.publish(director, vrrp);
    }
}

/// Whether a VRRP instance tracks the fast path's attachment.
fn tracks_fast_path(config: &Config) -> bool {
    config.vrrp.iter().any(|v| v.track_fast_path.is_some())
}

/// Resolves at `deadline`; never without one.
async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Packets to every VIP, forwarded or dropped: what the drain watches fall.
fn vip_packets(director: &Director, maps: &web::CounterMaps) -> u64 {
    let mut total = 0;
    for s in director.services() {
        total += maps.vip(s.vip_index).map_or(0, |c| c.packets);
        for b in s.backends.iter().chain(&s.sorry) {
            total += maps.backend(b.id).map_or(0, |c| c.packets);
        }
    }
    total
}

/// After a reload, taken or refused: the HTTP listener's snapshot, and its
/// address if the file changed it. A new address that cannot be bound
/// leaves the listener where it was and says so in the reply.
async fn follow_reload(
    publisher: &mut Publisher,
    listener: &mut web::Listener,
    shared: &web::Shared,
    director: &Director,
    vrrp: Option<&VrrpHandle>,
    mut response: Response,
) -> Response {
    publisher.reloaded(response.ok);
    publisher.publish(director, vrrp);
    if let Err(e) = listener.rebind(director.config().global.metrics, shared).await {
        let kept = listener.addr().map_or_else(|| "off".to_owned(), |a| a.to_string());
        error!("{e}; the HTTP listener stays {kept}");
        let message = response.message.take().unwrap_or_default();
        response.message = Some(format!("{message}; {e}: the HTTP listener stays {kept}"));
    }
    response
}

/// `lb status` off the loop, from the snapshot the loop last published and
/// the counters read now, as `/status.json` is: reading the flow tables
/// takes tens of milliseconds, and a status asked for while the loop
/// installs rings (checks flapping) must not wait behind them. Commands
/// come through the loop in order, so a status after `lb drain` sees it.
fn answer_status(shared: &web::Shared, reply: tokio::sync::oneshot::Sender<Response>) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let response = match tokio::task::spawn_blocking(move || shared.status_report()).await {
            Ok(Ok(status)) => Response { ok: true, status: Some(status), ..Response::default() },
            Ok(Err(e)) => Response::error(e.to_string()),
            Err(e) => Response::error(format!("reading the status: {e}")),
        };
        let _ = reply.send(response);
    });
}

/// The agent's line in `systemctl status`.
fn serving(director: &Director) -> String {
    format!("serving {} VIPs", director.services().len())
}

/// After a reload, refused or not, the agent is serving again.
fn after_reload(director: &Director, response: &Response) -> String {
    match &response.error {
        Some(e) => format!("{}; last reload refused: {e}", serving(director)),
        None => serving(director),
    }
}

/// What `track_fast_path` needs: whether our XDP program is still the one
/// attached to each interface we attached it to (netlink `IFLA_XDP`), and
/// which VIP addresses have no live backend.
struct FastPathProbe {
    rtnl: Option<Rtnl>,
    /// Our program's kernel id; `None` if it could not be read (then any
    /// attached program counts).
    prog_id: Option<u32>,
}

impl FastPathProbe {
    fn new(director: &Director) -> Self {
        let rtnl = Rtnl::open()
            .inspect_err(|e| warn!("track_fast_path: no route netlink socket ({e}); XDP attachment is not checked"))
            .ok();
        let prog_id = director.fast_path().program().info().ok().map(|i| i.id());
        Self { rtnl, prog_id }
    }

    /// The agent's loop waits for this, so the kernel's answers are waited
    /// for [`FAST_PATH_PROBE_TIMEOUT`] at most, all interfaces together.
    async fn health(&self, director: &Director) -> FastPathHealth {
        let mut detached = Vec::new();
        if let Some(rtnl) = &self.rtnl {
            let deadline = tokio::time::Instant::now() + FAST_PATH_PROBE_TIMEOUT;
            for (iface, _) in director.fast_path().attachments() {
                let prog_id = match netdev::index(iface) {
                    Ok(ifindex) => tokio::time::timeout_at(deadline, rtnl.xdp_prog_id(ifindex)).await,
                    Err(_) => Ok(Ok(None)),
                };
                // No answer, like a failed query, counts as detached.
                let attached = matches!(prog_id, Ok(Ok(Some(id))) if self.prog_id.is_none_or(|ours| ours == id));
                if !attached {
                    detached.push(iface.to_owned());
                }
            }
        }
        FastPathHealth { detached, vips_without_backend: vips_without_backend(director) }
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
        match director.prepare(id, up, event.weight, Instant::now()) {
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
    let iface = netdev::name(event.ifindex).unwrap_or_else(|_| format!("if{}", event.ifindex));
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

fn load(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::from_file(path)?;
    config.check_interfaces(|name| netdev::index(name).is_ok())?;
    // keepalived's enable_script_security, always on: a script root runs
    // that others can rewrite is refused, as is one that cannot run at all.
    config.check_scripts(crate::script::check_configured)?;
    for line in config.warning_lines() {
        warn!("{line}");
    }
    Ok(config)
}

fn known_ifindex(name: &str) -> Option<u32> {
    netdev::index(name).ok()
}

/// Re-reads the file into every part of the agent, or into none: a bad
/// file, or one that would need a restart, leaves the running configuration
/// serving and says why. SIGHUP and `lb reload` alike.
async fn reload_file(
    director: &mut Director,
    monitor: &mut Monitor,
    neighbours: &mut NeighbourHandle,
    vrrp: &mut Option<VrrpHandle>,
    path: &Path,
) -> Response {
    let parts = Parts { director, health: monitor, neighbours, vrrp };
    let r = reload::reload(parts, path, load, known_ifindex).await;
    let (to, reason) = match &r.error {
        None => ("reloaded", r.message.clone().unwrap_or_default()),
        Some(e) => ("refused", e.clone()),
    };
    director.events_mut().record(EventKind::Config, path.display().to_string(), "", to, reason);
    r
}

/// The next VRRP state change; never, without VRRP. A stream that ended
/// (its instances stopped) is let go.
async fn next_change(changes: &mut Option<mpsc::UnboundedReceiver<vrrp::StateChange>>) -> Option<vrrp::StateChange> {
    let Some(rx) = changes else { return std::future::pending().await };
    let change = rx.recv().await;
    if change.is_none() {
        *changes = None;
    }
    change
}

/// Records a VRRP state change, with the fault's reasons when it is one.
fn on_vrrp_change(director: &mut Director, vrrp: Option<&VrrpHandle>, change: vrrp::StateChange) {
    let faults = vrrp
        .and_then(|v| v.status().into_iter().find(|s| s.name == change.instance))
        .map(|s| s.fault_reasons.join("; "))
        .unwrap_or_default();
    let reason = if faults.is_empty() { format!("priority {}", change.priority) } else { faults };
    director.events_mut().record(EventKind::Vrrp, change.instance, change.from.name(), change.to.name(), reason);
}

impl HealthTargets for Monitor {
    fn set(&mut self, targets: Vec<Target>) -> Result<(), HealthError> {
        self.sync(targets)
    }
}

impl NeighbourTargets for NeighbourHandle {
    fn set(&mut self, targets: Vec<(u32, IpAddr)>) -> Result<(), NeighError> {
        self.set_targets(targets)
    }
}

/// Only the changed, removed and new instances are touched
/// ([`VrrpHandle::reload`]); the others keep running without a state change.
impl VrrpInstances for Option<VrrpHandle> {
    async fn set(&mut self, config: &Config) -> Result<(), VrrpError> {
        match self {
            Some(v) if !config.vrrp.is_empty() => {
                let plan = v.reload(config.vrrp.clone(), config.vrrp_sync_groups.clone()).await?;
                info!(kept = ?plan.keep, stopped = ?plan.stop, started = ?plan.start, "VRRP reloaded");
            }
            Some(_) => {
                if let Some(v) = self.take() {
                    v.shutdown().await;
                }
            }
            None => *self = start_vrrp(config, false)?,
        }
        Ok(())
    }
}

/// `fast_path_adopted`: this agent took over a pinned fast path, so an
/// instance whose VIPs are all still in place resumes as master at once.
fn start_vrrp(config: &Config, fast_path_adopted: bool) -> Result<Option<VrrpHandle>, VrrpError> {
    if config.vrrp.is_empty() {
        return Ok(None);
    }
    let handle = vrrp::spawn_after(config.vrrp.clone(), config.vrrp_sync_groups.clone(), fast_path_adopted)?;
    info!(instances = ?handle.names(), "VRRP started");
    Ok(Some(handle))
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
