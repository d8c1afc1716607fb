//! Health checks of real servers with keepalived's semantics (`TCP_CHECK`,
//! `HTTP_GET`, `SSL_GET`, `UDP_CHECK`, `MISC_CHECK`), as tokio tasks.
//!
//! The agent owns a [`Monitor`]: it [starts](Monitor::start) one task per
//! checked backend, [stops](Monitor::stop) it when the backend leaves the
//! configuration (or [syncs](Monitor::sync) the whole set on reload), and
//! reads [`HealthEvent`]s from the channel returned by [`Monitor::new`]. An
//! event is sent only when a backend changes state (up, down, or a new dynamic
//! weight), never for every result; the latest result of every target is
//! kept on a [`StatusBoard`] for `lb status`.
//!
//! Each task sleeps, runs one attempt under the check's `timeout`, feeds the
//! result to a [`Tracker`] (fall/rise/delay_before_retry, in [`state`]) and
//! sleeps again. Network attempts share one [`Semaphore`] and scripts another,
//! so thousands of backends at a 1 s interval cost a few tasks' worth of
//! memory and a bounded number of sockets or processes at a time.

pub(crate) mod dns;
pub(crate) mod half_open;
pub(crate) mod http;
#[cfg(test)]
mod monitor_tests;
mod script;
pub mod state;
mod tcp;
#[cfg(test)]
mod testutil;
mod udp;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    sync::{Semaphore, mpsc},
    time::{self, Instant},
};

use crate::{
    config::{Check, CheckKind},
    task::AbortOnDrop,
};

pub use state::{Step, Timing, Tracker, Transition};

/// Which backend a check belongs to: its position in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId {
    pub vip: u32,
    pub backend: u32,
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vip {} backend {}", self.vip, self.backend)
    }
}

/// One backend to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub id: TargetId,
    pub address: IpAddr,
    pub check: Check,
    /// The state before the first result. keepalived starts real servers up
    /// (unless `alpha` is set), so that starting the director does not empty
    /// every pool until the first round of checks is in.
    pub initially_up: bool,
}

impl Target {
    /// A target that starts up, as in keepalived without `alpha`.
    pub fn new(id: TargetId, address: IpAddr, check: Check) -> Target {
        Target { id, address, check, initially_up: true }
    }
}

/// A backend changed state.
///
/// Events of a target that was just stopped or replaced may still be in the
/// channel: the agent should act only on targets it still expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub target: TargetId,
    pub up: bool,
    /// The last dynamic weight a script check reported (`misc_dynamic`);
    /// `None` means "the configured weight".
    pub weight: Option<u32>,
    /// The result that caused the change, e.g. "HTTP status 503 not in 200-299".
    pub reason: String,
    /// Not a change yet: the next result like this one makes `up` the
    /// target's state (`fall` or `rise` is one away). Sent only when
    /// [`MonitorOptions::heads_up`] asks for it, once per approach, so that
    /// the agent can build the ring of the coming state before it comes.
    pub heads_up: bool,
}

/// The result of one check attempt.
///
/// The reason is shared rather than copied: a healthy target's result is
/// the same text every time (built once per target for TCP checks), and the
/// board keeps it on every attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub ok: bool,
    /// A dynamic weight carried by a successful script check.
    pub weight: Option<u32>,
    pub reason: Arc<str>,
}

impl CheckResult {
    fn up(reason: impl Into<Arc<str>>) -> CheckResult {
        CheckResult { ok: true, weight: None, reason: reason.into() }
    }

    fn down(reason: impl Into<Arc<str>>) -> CheckResult {
        CheckResult { ok: false, weight: None, reason: reason.into() }
    }
}

/// What `lb status` shows about one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetStatus {
    pub id: TargetId,
    pub address: IpAddr,
    /// "tcp", "tcp-half-open", "http", "https", "udp", "dns" or "script".
    pub kind: &'static str,
    pub up: bool,
    pub weight: Option<u32>,
    /// When the target entered its current state (or was started).
    pub since: SystemTime,
    /// `None` until the first attempt has finished.
    pub last: Option<LastCheck>,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    /// Attempts finished since the target was started.
    pub checks: u64,
}

impl TargetStatus {
    /// A target as it starts: no attempt finished yet.
    pub fn starting(id: TargetId, address: IpAddr, kind: &'static str, up: bool) -> Self {
        Self {
            id,
            address,
            kind,
            up,
            weight: None,
            since: SystemTime::now(),
            last: None,
            consecutive_successes: 0,
            consecutive_failures: 0,
            checks: 0,
        }
    }
}

/// The latest finished attempt of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastCheck {
    pub ok: bool,
    pub reason: Arc<str>,
    pub at: SystemTime,
    /// How long the attempt took, waiting for a connection slot excluded.
    pub took: Duration,
}

/// The latest status of every running target; cheap to clone and to share
/// with the control socket.
///
/// Each task writes its own slot, so thousands of tasks finishing attempts
/// do not queue on one lock or hash their id every time; the map is touched
/// only when targets start and stop, and by readers. A task that was stopped
/// or replaced keeps writing a slot the map no longer holds, which nobody
/// reads.
#[derive(Clone, Debug, Default)]
pub struct StatusBoard {
    entries: Arc<Mutex<HashMap<TargetId, Slot>>>,
}

type Slot = Arc<Mutex<TargetStatus>>;

/// Locks ignoring poison: the map and every status are consistent after each
/// statement that touches them, so a panic while holding the lock leaves
/// nothing half-done.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StatusBoard {
    pub fn get(&self, id: TargetId) -> Option<TargetStatus> {
        let slot = lock(&self.entries).get(&id).cloned()?;
        Some(lock(&slot).clone())
    }

    /// Every target, ordered by id.
    pub fn all(&self) -> Vec<TargetStatus> {
        let slots: Vec<Slot> = lock(&self.entries).values().cloned().collect();
        let mut all: Vec<TargetStatus> = slots.iter().map(|slot| lock(slot).clone()).collect();
        all.sort_by_key(|s| s.id);
        all
    }

    fn insert(&self, status: TargetStatus) -> Slot {
        let slot = Arc::new(Mutex::new(status));
        let id = lock(&slot).id;
        lock(&self.entries).insert(id, slot.clone());
        slot
    }

    fn remove(&self, id: TargetId) {
        lock(&self.entries).remove(&id);
    }
}

/// Limits shared by every task of a [`Monitor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitorOptions {
    /// Network check attempts (TCP, HTTP(S), UDP) in flight at once.
    pub max_connections: usize,
    /// Script checks running at once.
    pub max_scripts: usize,
    /// Capacity of the event channel. Tasks wait (without blocking one
    /// another's timers) when the agent falls this far behind.
    pub event_capacity: usize,
    /// The most of an HTTP body read for a `body` or `digest` match.
    pub body_cap: usize,
    /// Also send [`HealthEvent::heads_up`] events.
    pub heads_up: bool,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        MonitorOptions {
            max_connections: 1024,
            max_scripts: 32,
            event_capacity: 1024,
            body_cap: 1 << 20,
            heads_up: false,
        }
    }
}

/// Why a target could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    User(#[from] crate::script::UserError),
    #[error("script command is empty")]
    EmptyCommand {},
    #[error("TLS server name \"{name}\" is not a valid DNS name or address")]
    InvalidServerName { name: String },
    #[error("building the TLS client configuration: {source}")]
    Tls { source: rustls::Error },
    #[error("HTTP {what} \"{value}\" cannot be sent in a request line or header")]
    InvalidRequest { what: &'static str, value: String },
    #[error("half-open checks: {source}")]
    HalfOpen { source: half_open::SetupError },
}

/// Runs the checks; see the [module documentation](self).
///
/// Dropping the monitor aborts every task (killing any script still
/// running); [`Monitor::shutdown`] also waits for them.
#[derive(Debug)]
pub struct Monitor {
    options: MonitorOptions,
    events: mpsc::Sender<HealthEvent>,
    board: StatusBoard,
    connections: Arc<Semaphore>,
    scripts: Arc<Semaphore>,
    tls: http::TlsConfigs,
    /// The one task of every half-open check, started with the first.
    half_open: Option<half_open::Engine>,
    running: HashMap<TargetId, Running>,
}

#[derive(Debug)]
struct Running {
    target: Target,
    task: Handle,
}

/// What keeps a target checked; dropping it stops the checks.
#[derive(Debug)]
enum Handle {
    Task(AbortOnDrop),
    /// A target of the half-open engine.
    Engine(
        #[expect(dead_code, reason = "held for its Drop, which takes the target out of the engine")]
        half_open::Registration,
    ),
}

impl Monitor {
    pub fn new(options: MonitorOptions) -> (Monitor, mpsc::Receiver<HealthEvent>) {
        let (events, rx) = mpsc::channel(options.event_capacity.max(1));
        let monitor = Monitor {
            options,
            events,
            board: StatusBoard::default(),
            connections: Arc::new(Semaphore::new(options.max_connections.max(1))),
            scripts: Arc::new(Semaphore::new(options.max_scripts.max(1))),
            tls: http::TlsConfigs::default(),
            half_open: None,
            running: HashMap::new(),
        };
        (monitor, rx)
    }

    /// A handle on the latest status of every target.
    pub fn board(&self) -> StatusBoard {
        self.board.clone()
    }

    /// The targets being checked, in no particular order.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.running.values().map(|r| &r.target)
    }

    /// Starts checking `target`, replacing (and restarting) any target with
    /// the same id. Must be called within a Tokio runtime.
    ///
    /// Fails, leaving everything as it was, when the check cannot be set up:
    /// a script user that does not exist, an unusable TLS name.
    pub fn start(&mut self, target: Target) -> Result<(), HealthError> {
        let probe = self.arm(target.address, &target.check)?;
        self.spawn(target, probe);
        Ok(())
    }

    /// Stops checking `id`; false when it was not being checked. A script
    /// still running for it is killed.
    pub fn stop(&mut self, id: TargetId) -> bool {
        self.board.remove(id);
        // Dropping `Running` aborts the task.
        self.running.remove(&id).is_some()
    }

    /// Makes the running set equal to `targets` (a reload): targets whose
    /// address and check did not change keep running with their state and
    /// counters, changed ones restart, missing ones stop. All or nothing: on
    /// error nothing was changed.
    ///
    /// A restarted target starts from its `initially_up`; to carry a state
    /// over, set it from [`StatusBoard::get`] before the call.
    pub fn sync(&mut self, targets: impl IntoIterator<Item = Target>) -> Result<(), HealthError> {
        let mut wanted = HashSet::new();
        let mut fresh = Vec::new();
        for target in targets {
            let unchanged = self
                .running
                .get(&target.id)
                .is_some_and(|r| r.target.address == target.address && r.target.check == target.check);
            if !unchanged {
                let probe = self.arm(target.address, &target.check)?;
                fresh.push((target.clone(), probe));
            }
            wanted.insert(target.id);
        }
        let gone: Vec<TargetId> = self.running.keys().filter(|id| !wanted.contains(id)).copied().collect();
        for id in gone {
            self.stop(id);
        }
        for (target, probe) in fresh {
            self.spawn(target, probe);
        }
        Ok(())
    }

    /// Runs one attempt of `check` against `address` now, outside any
    /// schedule (for `lb` to test a check by hand, and for tests).
    pub async fn probe_once(&mut self, address: IpAddr, check: &Check) -> Result<CheckResult, HealthError> {
        let probe = self.arm(address, check)?;
        Ok(probe.run().await)
    }

    /// Stops every task and waits until they are gone (and their scripts killed).
    pub async fn shutdown(mut self) {
        // Engine targets go with their registrations.
        let mut tasks: Vec<AbortOnDrop> = self
            .running
            .drain()
            .filter_map(|(_, running)| match running.task {
                Handle::Task(task) => Some(task),
                Handle::Engine(_) => None,
            })
            .collect();
        for task in &tasks {
            task.0.abort();
        }
        for task in &mut tasks {
            // Cancelled (or panicked): either way nothing is left to clean up.
            let _ = (&mut task.0).await;
        }
    }

    fn arm(&mut self, address: IpAddr, check: &Check) -> Result<Armed, HealthError> {
        let probe = match &check.kind {
            CheckKind::Tcp { port } => Probe::Net(Net::Tcp(tcp::TcpProbe::new(SocketAddr::new(address, *port)))),
            CheckKind::TcpHalfOpen { port } => {
                let events = &self.events;
                let engine = self.half_open.get_or_insert_with(|| half_open::Engine::start(events.clone()));
                let engine = engine.open(address.is_ipv6()).map_err(|source| HealthError::HalfOpen { source })?;
                Probe::HalfOpen { addr: SocketAddr::new(address, *port), engine }
            }
            CheckKind::Http(http) => {
                Probe::Net(Net::Http(http::HttpProbe::new(address, http, None, self.options.body_cap)?))
            }
            CheckKind::Https { http, tls } => {
                let tls = self.tls.target(address, tls)?;
                Probe::Net(Net::Http(http::HttpProbe::new(address, http, Some(tls), self.options.body_cap)?))
            }
            CheckKind::Udp(udp) => Probe::Net(Net::Udp(udp::UdpProbe::new(address, udp))),
            CheckKind::Dns(dns) => Probe::Net(Net::Dns(dns::DnsProbe::new(address, dns))),
            CheckKind::Script(script) => Probe::Script(script::ScriptProbe::new(script)?),
        };
        Ok(Armed {
            probe,
            timeout: check.timeout,
            connections: self.connections.clone(),
            scripts: self.scripts.clone(),
        })
    }

    fn spawn(&mut self, target: Target, probe: Armed) {
        // Replacing aborts the old task first, so it ends before the new one
        // starts; whatever it still writes goes to its own, unlisted slot.
        self.stop(target.id);
        let tracker = Tracker::new(Timing::from(&target.check), target.initially_up);
        let status = self.board.insert(TargetStatus::starting(
            target.id,
            target.address,
            target.check.kind.name(),
            target.initially_up,
        ));
        let supervisor = Supervisor {
            target: Checked {
                id: target.id,
                address: target.address,
                kind: target.check.kind.name(),
                heads_up: self.options.heads_up,
            },
            probe,
            tracker,
            events: self.events.clone(),
            status,
            next: on_tick(Instant::now() + warmup_delay(target.check.warmup)),
        };
        let task = match supervisor.probe.probe {
            Probe::HalfOpen { addr, ref engine } => Handle::Engine(engine.add(half_open::NewTarget {
                target: supervisor.target,
                addr,
                timeout: supervisor.probe.timeout,
                tracker: supervisor.tracker,
                status: supervisor.status,
                first: supervisor.next,
            })),
            _ => Handle::Task(AbortOnDrop(tokio::spawn(supervisor.run()))),
        };
        self.running.insert(target.id, Running { target, task });
    }
}

/// One attempt of something; the task loop is generic over it so that its
/// timing can be tested with scripted results.
trait Attempt: Send + Sync + 'static {
    fn run(&self) -> impl Future<Output = CheckResult> + Send;
}

enum Probe {
    Net(Net),
    Script(script::ScriptProbe),
    /// Scheduled by the engine; an [`Armed`] of it runs only for
    /// [`Monitor::probe_once`].
    HalfOpen {
        addr: SocketAddr,
        engine: half_open::EngineHandle,
    },
}

/// Checks that use one socket.
enum Net {
    Tcp(tcp::TcpProbe),
    Http(http::HttpProbe),
    Udp(udp::UdpProbe),
    Dns(dns::DnsProbe),
}

impl Net {
    fn addr(&self) -> SocketAddr {
        match self {
            Net::Tcp(p) => p.addr,
            Net::Http(p) => p.addr,
            Net::Udp(p) => p.addr,
            Net::Dns(p) => p.addr,
        }
    }

    async fn attempt(&self, progress: &Progress) -> CheckResult {
        match self {
            Net::Tcp(p) => p.attempt(progress).await,
            // Boxed: its TLS and parsing state is kilobytes, which every
            // attempt of every kind would otherwise carry and copy as its
            // future moves (a TCP check's own state is a few dozen bytes).
            Net::Http(p) => Box::pin(p.attempt(progress)).await,
            Net::Udp(p) => p.attempt(progress).await,
            Net::Dns(p) => p.attempt(progress).await,
        }
    }
}

/// A probe with its timeout and the shared concurrency limits.
struct Armed {
    probe: Probe,
    timeout: Duration,
    connections: Arc<Semaphore>,
    scripts: Arc<Semaphore>,
}

impl Attempt for Armed {
    async fn run(&self) -> CheckResult {
        match &self.probe {
            // The engine times the attempt out itself.
            Probe::HalfOpen { addr, engine } => engine.once(*addr, self.timeout).await,
            Probe::Script(script) => {
                // The script's timeout runs inside: it has to kill the process group.
                let Ok(_permit) = self.scripts.acquire().await else {
                    return CheckResult::down("checker shutting down");
                };
                // Boxed for the same reason as HTTP attempts.
                Box::pin(script.run(self.timeout)).await
            }
            Probe::Net(net) => {
                // The timeout starts once a slot is free: a queue of attempts
                // is the director's own congestion, not the backend's fault.
                let Ok(_permit) = self.connections.acquire().await else {
                    return CheckResult::down("checker shutting down");
                };
                let progress = Progress::default();
                match time::timeout(self.timeout, net.attempt(&progress)).await {
                    Ok(result) => result,
                    Err(_) => CheckResult::down(format!(
                        "timeout after {} {}",
                        show_duration(self.timeout),
                        progress.describe(net.addr())
                    )),
                }
            }
        }
    }
}

/// The long-lived task of one target.
struct Supervisor<A> {
    target: Checked,
    probe: A,
    tracker: Tracker,
    events: mpsc::Sender<HealthEvent>,
    /// This target's entry on the board.
    status: Slot,
    /// When the next attempt starts.
    next: Instant,
}

impl<A: Attempt> Supervisor<A> {
    /// Runs until aborted; aborting drops the timer and the attempt in flight.
    async fn run(mut self) {
        loop {
            self.cycle().await;
        }
    }

    /// Sleeps until the next attempt, runs it and reports the result.
    async fn cycle(&mut self) {
        time::sleep_until(self.next).await;
        let at = SystemTime::now();
        let started = Instant::now();
        let result = self.probe.run().await;
        let ended = Instant::now();
        let (step, event) = record(self.target, &mut self.tracker, &self.status, &result, at, ended - started);
        let Some(event) = event else {
            self.next = on_tick(ended + step.next);
            return;
        };
        // An agent that dropped its receiver is shutting down; the board
        // stays current until it stops the tasks.
        let _ = self.events.send(event).await;
        // The send may have waited for a slow agent: the delay counts from now.
        self.next = on_tick(Instant::now() + step.next);
    }
}

/// Which target an attempt was of, for the board and the logs.
#[derive(Clone, Copy, Debug)]
struct Checked {
    id: TargetId,
    address: IpAddr,
    kind: &'static str,
    /// Whether to send heads-up events ([`MonitorOptions::heads_up`]).
    heads_up: bool,
}

/// Feeds a finished attempt to the target's tracker and board, logs a change
/// of state, and returns the step and the event to send for it.
fn record(
    target: Checked,
    tracker: &mut Tracker,
    status: &Slot,
    result: &CheckResult,
    at: SystemTime,
    took: Duration,
) -> (Step, Option<HealthEvent>) {
    let step = tracker.observe(result.ok, result.weight);
    let (up, weight) = (tracker.is_up(), tracker.weight());
    {
        let mut s = lock(status);
        s.up = up;
        s.weight = weight;
        if step.transition.is_some() {
            s.since = at;
        }
        match &mut s.last {
            // The same reason as last time (a target's shared success text):
            // keep it rather than touch its reference count.
            Some(last) if Arc::ptr_eq(&last.reason, &result.reason) => {
                last.ok = result.ok;
                last.at = at;
                last.took = took;
            }
            last => *last = Some(LastCheck { ok: result.ok, reason: result.reason.clone(), at, took }),
        }
        s.consecutive_successes = tracker.consecutive_successes();
        s.consecutive_failures = tracker.consecutive_failures();
        s.checks += 1;
    }
    let Some(transition) = step.transition else {
        let event = match step.heads_up {
            Some(next) if target.heads_up => {
                let reason = result.reason.to_string();
                Some(HealthEvent { target: target.id, up: next, weight: tracker.weight(), reason, heads_up: true })
            }
            _ => None,
        };
        return (step, event);
    };
    let Checked { id, address: backend, kind: check, heads_up: _ } = target;
    let reason = &*result.reason;
    match transition {
        Transition::Down => tracing::warn!(%id, %backend, check, reason, "backend down"),
        Transition::Up => tracing::info!(%id, %backend, check, reason, ?weight, "backend up"),
        Transition::Weight => tracing::info!(%id, %backend, check, reason, ?weight, "backend weight changed"),
    }
    (step, Some(HealthEvent { target: id, up, weight, reason: result.reason.to_string(), heads_up: false }))
}

/// Where an attempt was when its timeout fired, for the failure reason.
#[derive(Debug, Default)]
struct Progress {
    phase: AtomicU8,
    received: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Connecting = 0,
    TlsHandshake,
    Sending,
    Headers,
    Body,
    Reply,
}

impl Progress {
    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn received(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn describe(&self, addr: SocketAddr) -> String {
        let received = self.received.load(Ordering::Relaxed);
        match self.phase.load(Ordering::Relaxed) {
            p if p == Phase::TlsHandshake as u8 => format!("in the TLS handshake with {addr}"),
            p if p == Phase::Sending as u8 => format!("sending the request to {addr}"),
            p if p == Phase::Headers as u8 => {
                format!("waiting for the response headers from {addr} ({received} bytes received)")
            }
            p if p == Phase::Body as u8 => format!("reading the body from {addr} ({received} bytes received)"),
            p if p == Phase::Reply as u8 => format!("waiting for a reply from {addr}"),
            _ => format!("connecting to {addr}"),
        }
    }
}

/// "5s", "1500ms": how keepalived-minded operators write durations.
fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

/// An I/O error as a short lowercase phrase ("connection refused"), without
/// Rust's "(os error 111)".
fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind as K;
    let text = match e.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset by peer",
        K::ConnectionAborted => "connection aborted",
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        K::AddrNotAvailable => "address not available",
        K::UnexpectedEof => "connection closed early",
        K::BrokenPipe => "connection closed by the backend",
        K::TimedOut => "timed out",
        _ => {
            let text = e.to_string();
            let text = match text.find(" (os error") {
                Some(i) => &text[..i],
                None => &text,
            };
            let mut chars = text.chars();
            return match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::from("unknown error"),
            };
        }
    };
    text.to_owned()
}

/// The grid attempts start on. Thousands of checks spread over a second
/// would otherwise each wake the runtime on their own millisecond; on a
/// common grid the ones due in the same tick start in one wake-up, and
/// their connections complete in the same few epoll waits. 10 ms late at
/// most is noise next to keepalived's second-granular intervals.
const TICK: Duration = Duration::from_millis(10);

/// `t` rounded up to the next [`TICK`] boundary, counted from the first
/// instant this process rounded.
fn on_tick(t: Instant) -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    on_grid(*BASE.get_or_init(|| t), t)
}

/// `t` rounded up to a [`TICK`] boundary counted from `base`; `t` itself
/// when it is before `base`.
fn on_grid(base: Instant, t: Instant) -> Instant {
    let Some(since) = t.checked_duration_since(base) else { return t };
    let tick = TICK.as_nanos();
    let rounded = since.as_nanos().div_ceil(tick) * tick;
    base + Duration::from_nanos(rounded.min(u128::from(u64::MAX)) as u64)
}

/// A uniform delay in `0..warmup`, so that checks configured together do
/// not all fire in the same millisecond.
fn warmup_delay(warmup: Duration) -> Duration {
    let nanos = warmup.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 { Duration::ZERO } else { Duration::from_nanos(random_u64() % nanos) }
}

/// splitmix64 over a process-wide counter seeded from the clock and the pid:
/// spreading timers needs no cryptographic quality, only different values
/// per call and per process.
fn random_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut seed = STATE.load(Ordering::Relaxed);
    if seed == 0 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        seed = (now ^ (u64::from(std::process::id()) << 32)) | 1;
        // Another thread may have seeded first; either seed is as good.
        let _ = STATE.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE.fetch_add(GOLDEN, Ordering::Relaxed).wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::health::testutil::{check, expect_event, expect_no_event};

    /// Plays back scripted results and records when each attempt started.
    #[derive(Clone, Default)]
    struct Scripted {
        results: Arc<Mutex<VecDeque<bool>>>,
        starts: Arc<Mutex<Vec<Instant>>>,
    }

    impl Attempt for Scripted {
        async fn run(&self) -> CheckResult {
            self.starts.lock().unwrap().push(Instant::now());
            let ok = self.results.lock().unwrap().pop_front().unwrap_or(true);
            if ok { CheckResult::up("fine") } else { CheckResult::down("broken") }
        }
    }

    fn supervise(
        scripted: &Scripted,
        check: &Check,
        up: bool,
        heads_up: bool,
    ) -> (mpsc::Receiver<HealthEvent>, AbortOnDrop) {
        let (events, rx) = mpsc::channel(16);
        let id = TargetId { vip: 0, backend: 0 };
        let address = IpAddr::from([127, 0, 0, 1]);
        let status = StatusBoard::default().insert(TargetStatus::starting(id, address, "scripted", up));
        let supervisor = Supervisor {
            target: Checked { id, address, kind: "scripted", heads_up },
            probe: scripted.clone(),
            tracker: Tracker::new(Timing::from(check), up),
            events,
            status,
            next: Instant::now() + warmup_delay(check.warmup),
        };
        (rx, AbortOnDrop(tokio::spawn(supervisor.run())))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_after_delay_before_retry_then_follows_the_interval() {
        let mut c = check(CheckKind::Tcp { port: 1 });
        c.interval = Duration::from_secs(6);
        c.delay_before_retry = Duration::from_secs(2);
        c.fall = 3;
        c.warmup = Duration::ZERO;
        let scripted = Scripted::default();
        scripted.results.lock().unwrap().extend([true, false, false, false, false, true]);
        let t0 = Instant::now();
        let (mut rx, _stop) = supervise(&scripted, &c, true, false);
        let down = expect_event(&mut rx, Duration::from_secs(60)).await;
        assert!(!down.up);
        assert_eq!(down.reason, "broken");
        let up = expect_event(&mut rx, Duration::from_secs(60)).await;
        assert!(up.up);
        let offsets: Vec<u64> = scripted.starts.lock().unwrap().iter().map(|t| (*t - t0).as_secs()).collect();
        // ok at 0, fail at 6, retries at 8 and 10 (down), then the interval again.
        assert_eq!(offsets, [0, 6, 8, 10, 16, 22]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_heads_up_comes_one_result_before_each_change_when_asked_for() {
        let mut c = check(CheckKind::Tcp { port: 1 });
        (c.fall, c.rise, c.warmup) = (2, 2, Duration::ZERO);
        let scripted = Scripted::default();
        scripted.results.lock().unwrap().extend([false, false, true, true]);
        let (mut rx, _stop) = supervise(&scripted, &c, true, true);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let e = expect_event(&mut rx, Duration::from_secs(60)).await;
            seen.push((e.up, e.heads_up, e.reason));
        }
        let broken = || "broken".to_owned();
        let fine = || "fine".to_owned();
        assert_eq!(
            seen,
            [(false, true, broken()), (false, false, broken()), (true, true, fine()), (true, false, fine())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn warmup_delays_the_first_attempt_within_its_bound() {
        let mut c = check(CheckKind::Tcp { port: 1 });
        c.warmup = Duration::from_secs(10);
        c.interval = Duration::from_secs(100);
        let scripted = Scripted::default();
        let t0 = Instant::now();
        let (_rx, _stop) = supervise(&scripted, &c, true, false);
        time::sleep(Duration::from_secs(11)).await;
        let starts = scripted.starts.lock().unwrap().clone();
        assert_eq!(starts.len(), 1);
        assert!(starts[0] - t0 < Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_cancels_the_timer() {
        let mut c = check(CheckKind::Tcp { port: 1 });
        c.interval = Duration::from_secs(5);
        let scripted = Scripted::default();
        scripted.results.lock().unwrap().extend([false; 10]);
        let (mut rx, stop) = supervise(&scripted, &c, true, false);
        expect_event(&mut rx, Duration::from_secs(1)).await;
        drop(stop);
        time::sleep(Duration::from_secs(60)).await;
        assert_eq!(scripted.starts.lock().unwrap().len(), 1);
        expect_no_event(&mut rx, Duration::from_secs(1)).await;
    }

    #[test]
    fn attempts_start_on_the_tick_grid_and_never_early() {
        let t0 = Instant::now();
        assert_eq!(on_grid(t0 + Duration::from_millis(5), t0), t0);
        for ms in [0, 1, 9, 10, 11, 999, 1000, 1001] {
            let t = t0 + Duration::from_millis(ms);
            let r = on_grid(t0, t);
            assert!(r >= t && r - t < TICK, "{ms} ms rounded to {:?}", r - t0);
            assert_eq!((r - t0).as_nanos() % TICK.as_nanos(), 0, "{ms} ms rounded to {:?}", r - t0);
        }
    }

    #[test]
    fn warmup_delay_stays_below_its_bound_and_varies() {
        let bound = Duration::from_millis(1000);
        let delays: Vec<Duration> = (0..1000).map(|_| warmup_delay(bound)).collect();
        assert!(delays.iter().all(|d| *d < bound));
        assert!(delays.iter().any(|d| *d < bound / 4) && delays.iter().any(|d| *d > bound * 3 / 4));
        assert_eq!(warmup_delay(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn io_errors_read_like_keepalived_logs() {
        assert_eq!(io_reason(&io::Error::from(io::ErrorKind::ConnectionRefused)), "connection refused");
        assert_eq!(io_reason(&io::Error::from_raw_os_error(libc::EACCES)), "permission denied");
        assert_eq!(show_duration(Duration::from_secs(5)), "5s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
    }
}
