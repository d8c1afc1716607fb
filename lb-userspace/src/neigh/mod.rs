//! Backends' MAC addresses from the kernel's neighbour table, for DR mode,
//! where the director rewrites a packet's destination MAC to its backend's.
//!
//! A [`NeighbourWatcher`] follows a set of targets, each a backend address on
//! the interface it is reached through, over one route netlink socket:
//!
//! - it dumps the ARP and IPv6 ND tables (`RTM_GETNEIGH`) at start and
//!   whenever the target set changes, and follows their changes
//!   (`RTNLGRP_NEIGH`, which carries both families);
//! - for a target with no entry, or a FAILED one, it makes the kernel
//!   resolve it (`RTM_NEWNEIGH` with `NTF_USE`, as `ip neigh replace ADDR
//!   dev IF nud none use`), so no traffic is needed to learn a MAC;
//! - every [`NeighbourOptions::reprobe_interval`] it sets resolved entries to
//!   PROBE: the kernel then confirms the MAC it holds with unicast
//!   solicitations. A backend that moved to another MAC does not answer
//!   them; the entry turns FAILED (3 unanswered probes, 1 s apart, with the
//!   kernel's defaults) and the watcher asks for a broadcast resolution,
//!   which learns the new MAC. A move is so followed within about
//!   `reprobe_interval` + 3 s even when the backend sends no gratuitous ARP
//!   and its entry is REACHABLE (which the kernel would otherwise keep for up
//!   to 45 s). A gratuitous ARP or unsolicited NA is followed at once;
//! - a target whose broadcast resolution fails too, or that the kernel
//!   refuses to resolve (its interface is gone), is reported with no MAC and
//!   the reason, so its backend can be taken out of service.
//!
//! PERMANENT and NOARP entries (`ip neigh add ... nud permanent`) count as
//! resolved and are never touched: `NTF_USE` would turn a static entry into a
//! dynamic one.
//!
//! # Network namespaces
//!
//! A netlink socket belongs to the network namespace of the thread that
//! created it, for its whole life. [`NeighbourWatcher::spawn`] creates the
//! socket on the calling thread, so the watcher follows the neighbour table
//! of that thread's namespace, wherever the runtime later polls its task.
//! Interface indexes are that namespace's too.
//!
//! # Example
//!
//! ```no_run
//! # async fn f() -> Result<(), lb_userspace::neigh::NeighError> {
//! use lb_userspace::neigh::NeighbourWatcher;
//!
//! let eth0 = lb_userspace::netdev::index("eth0").expect("eth0");
//! let (handle, mut events) = NeighbourWatcher::spawn(vec![(eth0, "10.0.0.11".parse().unwrap())])?;
//! while let Some(ev) = events.recv().await {
//!     // Some(mac): point the backend's entry at it; None: take it out.
//!     println!("{} on {}: {:?} ({})", ev.target, ev.ifindex, ev.mac, ev.reason);
//! }
//! # drop(handle);
//! # Ok(())
//! # }
//! ```

pub(crate) mod netlink;
pub(crate) mod state;

use std::{
    collections::{BTreeSet, VecDeque},
    io,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{StreamExt as _, future::BoxFuture, stream::FuturesUnordered};
use tokio::{
    sync::mpsc,
    time::{Instant, MissedTickBehavior},
};

pub use self::state::{Recheck, Resolution, classify, recheck, state_name};
use self::{
    netlink::Incoming,
    state::{Action, Key, Tracker},
};
use crate::{
    netdev::Mac,
    rtnl::{self, Messages, Rtnl},
};

/// A target's resolution: sent whenever its MAC is learned, changes or is
/// lost, and (from [`NeighbourHandle::snapshot`]) its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighEvent {
    /// The backend's address.
    pub target: IpAddr,
    /// The interface it is reached through.
    pub ifindex: u32,
    /// Its MAC; `None` while it cannot be resolved (or, in a snapshot, is
    /// still being resolved for the first time).
    pub mac: Option<[u8; 6]>,
    /// Why, for people: "resolved on eth0", "moved from 02:…:11 on eth0",
    /// "no ARP reply from 10.0.0.11 on eth0 (neighbour entry FAILED)".
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    #[error("{op}: {source}")]
    Socket { op: &'static str, source: io::Error },
    #[error("the neighbour watcher runs on tokio and was started outside a runtime: {source}")]
    NoRuntime { source: tokio::runtime::TryCurrentError },
    #[error("the neighbour watcher has stopped")]
    Stopped,
}

/// How the watcher re-checks its targets.
#[derive(Debug, Clone)]
pub struct NeighbourOptions {
    /// How often resolved entries are probed and unresolved ones resolved
    /// again. Each probe costs one unicast ARP request or neighbour
    /// solicitation per backend; a backend's move to another MAC is noticed
    /// within this plus the kernel's unicast probing (3 s by default).
    pub reprobe_interval: Duration,
    /// How long a resolution may take when the kernel reports no outcome:
    /// a target is declared unresolved past it. The kernel normally reports
    /// FAILED well before (3 s with default sysctls).
    pub resolve_timeout: Duration,
    /// Capacity of the event channel. A slow reader never stalls the
    /// watcher: undelivered events are kept, the latest per target.
    pub event_capacity: usize,
}

impl Default for NeighbourOptions {
    fn default() -> Self {
        Self {
            reprobe_interval: Duration::from_secs(3),
            resolve_timeout: Duration::from_secs(10),
            event_capacity: 1024,
        }
    }
}

/// Starts watchers; see the [module documentation](self).
#[derive(Debug)]
pub struct NeighbourWatcher;

impl NeighbourWatcher {
    /// [`NeighbourWatcher::spawn_with`] with the default options.
    pub fn spawn(targets: Vec<(u32, IpAddr)>) -> Result<(NeighbourHandle, mpsc::Receiver<NeighEvent>), NeighError> {
        Self::spawn_with(targets, NeighbourOptions::default())
    }

    /// Opens a route netlink connection in the calling thread's network
    /// namespace and spawns the watcher's task on the current tokio runtime,
    /// which needs its IO and time drivers. The task runs until the handle is
    /// dropped; the event channel closes when it ends.
    pub fn spawn_with(
        targets: Vec<(u32, IpAddr)>,
        options: NeighbourOptions,
    ) -> Result<(NeighbourHandle, mpsc::Receiver<NeighEvent>), NeighError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|source| NeighError::NoRuntime { source })?;
        let (rtnl, messages) = netlink::connect(&runtime)?;
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let mut tracker = Tracker::new(options.resolve_timeout);
        tracker.set_targets(targets, std::time::Instant::now());
        let shared = Arc::new(Mutex::new(tracker.snapshot()));
        let watcher = Watcher {
            tracker,
            dump: None,
            dump_wanted: false,
            dump_backoff: None,
            queue: VecDeque::new(),
            outbox: VecDeque::new(),
            shared: Arc::clone(&shared),
        };
        let requests = Requests { rtnl, in_flight: FuturesUnordered::new(), naming: BTreeSet::new() };
        runtime.spawn(watcher.run(requests, messages, events_tx, commands_rx, options));
        Ok((NeighbourHandle { commands: commands_tx, shared }, events_rx))
    }
}

/// Controls a running watcher; dropping it stops the watcher.
#[derive(Debug)]
pub struct NeighbourHandle {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Mutex<Vec<NeighEvent>>>,
}

impl NeighbourHandle {
    /// Replaces the targets, as on a configuration reload. Targets that stay
    /// keep their state; new ones are resolved; removed ones are forgotten
    /// without an event. Takes effect once the watcher's task runs.
    pub fn set_targets(&self, targets: Vec<(u32, IpAddr)>) -> Result<(), NeighError> {
        self.commands.send(Command::SetTargets(targets)).map_err(|_| NeighError::Stopped)
    }

    /// Every target's current state, ordered by interface and address. A
    /// target not resolved yet has no MAC and the reason "resolving".
    pub fn snapshot(&self) -> Vec<NeighEvent> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[derive(Debug)]
enum Command {
    SetTargets(Vec<(u32, IpAddr)>),
}

/// What a request was, to act on its answer. The dump is not one of them:
/// its answer comes with the changes.
#[derive(Debug, Clone, Copy)]
enum Request {
    Link(u32),
    Use(Key),
    Probe(Key),
}

/// What came back for a request.
#[derive(Debug)]
enum Answer {
    /// Done; a link's answer carries the interface's name.
    Done(Option<String>),
    Failed(io::Error),
    /// Nothing within [`PENDING_TTL`]: lost to a receive-queue overrun.
    Lost,
}

#[derive(Debug)]
struct Dump {
    started: Instant,
    /// Targets the dump, or a change that arrived during it, reported.
    seen: BTreeSet<Key>,
    interrupted: bool,
}

/// Requests sent before the connection's messages are read again, so a
/// large target set does not hold up what the kernel reports.
const SEND_BATCH: usize = 64;
/// Messages read before the other work gets a turn.
const RECV_BATCH: usize = 256;
/// An answer lost to a receive-queue overrun is not waited for longer.
const PENDING_TTL: Duration = Duration::from_secs(30);

/// The connection and the requests in flight on it.
struct Requests {
    rtnl: Rtnl,
    in_flight: FuturesUnordered<BoxFuture<'static, (Request, Answer)>>,
    /// Interfaces whose name has been asked for.
    naming: BTreeSet<u32>,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests").field("in_flight", &self.in_flight.len()).field("naming", &self.naming).finish()
    }
}

impl Requests {
    fn send(&mut self, request: Request) {
        let connection = self.rtnl.clone();
        self.in_flight.push(Box::pin(async move {
            let answer = tokio::time::timeout(PENDING_TTL, async {
                match request {
                    Request::Link(ifindex) => connection.link_name(ifindex).await.map(Some),
                    Request::Use(key) => {
                        netlink::request_use(&connection, key).await.map(|()| None).map_err(rtnl::io_error)
                    }
                    Request::Probe(key) => {
                        netlink::request_probe(&connection, key).await.map(|()| None).map_err(rtnl::io_error)
                    }
                }
            });
            let answer = match answer.await {
                Ok(Ok(name)) => Answer::Done(name),
                // A link's own, shorter wait ran out (not an errno from the kernel).
                Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut && e.raw_os_error().is_none() => Answer::Lost,
                Ok(Err(e)) => Answer::Failed(e),
                Err(_) => Answer::Lost,
            };
            (request, answer)
        }));
    }
}

#[derive(Debug)]
struct Watcher {
    tracker: Tracker,
    dump: Option<Dump>,
    /// Dump again once the current dump ends (or at the next tick if it
    /// could not be started).
    dump_wanted: bool,
    /// No dump is started before then, after one could not be.
    dump_backoff: Option<Instant>,
    queue: VecDeque<Action>,
    outbox: VecDeque<NeighEvent>,
    shared: Arc<Mutex<Vec<NeighEvent>>>,
}

impl Watcher {
    async fn run(
        mut self,
        mut requests: Requests,
        mut messages: Messages,
        events: mpsc::Sender<NeighEvent>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        options: NeighbourOptions,
    ) {
        let mut reader_gone = false;
        let period = options.reprobe_interval.max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.request_names(&mut requests);
        self.start_dump(&requests);
        let failure = loop {
            // A dump asked for while another ran starts once that one ended.
            if self.dump_wanted && self.dump.is_none() && self.dump_backoff.is_none_or(|t| Instant::now() >= t) {
                self.start_dump(&requests);
            }
            self.flush(&mut requests);
            self.publish();
            let deliver = !self.outbox.is_empty() && !reader_gone;
            tokio::select! {
                biased;
                // Answers first: an interface's name, asked for before the
                // dump, is known before the dump's lines are reported.
                Some((request, answer)) = requests.in_flight.next(), if !requests.in_flight.is_empty() => {
                    self.on_answer(&mut requests, request, answer);
                }
                message = messages.next() => {
                    let Some((message, _)) = message else {
                        break Some("its route netlink connection closed");
                    };
                    self.handle(netlink::received(message));
                    for _ in 1..RECV_BATCH {
                        let Ok((message, _)) = messages.try_recv() else { break };
                        self.handle(netlink::received(message));
                    }
                }
                command = commands.recv() => match command {
                    None => break None,
                    Some(Command::SetTargets(targets)) => {
                        tracing::info!(count = targets.len(), "neighbour watcher: new target set");
                        self.tracker.set_targets(targets, std::time::Instant::now());
                        self.request_names(&mut requests);
                        if self.dump.is_some() {
                            self.dump_wanted = true;
                        } else {
                            self.start_dump(&requests);
                        }
                    }
                },
                _ = tick.tick() => self.tick(&mut requests),
                permit = events.reserve(), if deliver => match permit {
                    Ok(permit) => {
                        if let Some(ev) = self.outbox.pop_front() {
                            permit.send(ev);
                        }
                    }
                    Err(_) => {
                        tracing::debug!("neighbour events are no longer read; the snapshot still is");
                        reader_gone = true;
                        self.outbox.clear();
                    }
                },
                () = std::future::ready(()), if !self.queue.is_empty() => {}
            }
        };
        if let Some(e) = failure {
            tracing::error!(error = %e, "neighbour watcher stopped");
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            for s in shared.iter_mut() {
                s.reason = format!("neighbour watcher stopped ({e}); last known: {}", s.reason);
            }
        }
    }

    fn start_dump(&mut self, requests: &Requests) {
        match netlink::request_dump(&requests.rtnl) {
            Ok(()) => {
                self.dump = Some(Dump { started: Instant::now(), seen: BTreeSet::new(), interrupted: false });
                self.dump_wanted = false;
                self.dump_backoff = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot dump the neighbour table; retrying");
                self.dump_wanted = true;
                self.dump_backoff = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    fn request_names(&mut self, requests: &mut Requests) {
        for ifindex in self.tracker.unnamed_ifindexes() {
            if requests.naming.insert(ifindex) {
                requests.send(Request::Link(ifindex));
            }
        }
    }

    fn tick(&mut self, requests: &mut Requests) {
        let now = Instant::now();
        if self.dump.as_ref().is_some_and(|d| now.duration_since(d.started) >= PENDING_TTL) {
            // The dump's end was lost to an overrun.
            self.dump = None;
            self.dump_wanted = true;
        }
        self.request_names(requests);
        let actions = self.tracker.tick(now.into_std());
        self.queue.extend(actions);
    }

    /// Sends up to a batch of queued requests.
    fn flush(&mut self, requests: &mut Requests) {
        for _ in 0..SEND_BATCH {
            let Some(action) = self.queue.pop_front() else { break };
            let request = match action {
                Action::Use(key) => Request::Use(key),
                Action::Probe(key) => Request::Probe(key),
            };
            tracing::trace!(?request, "neighbour request sent");
            requests.send(request);
        }
    }

    fn on_answer(&mut self, requests: &mut Requests, request: Request, answer: Answer) {
        if let Request::Link(ifindex) = request {
            requests.naming.remove(&ifindex);
        }
        match answer {
            Answer::Done(Some(name)) => {
                if let Request::Link(ifindex) = request {
                    self.tracker.set_name(ifindex, name);
                }
            }
            Answer::Done(None) => {}
            Answer::Failed(e) => self.request_failed(request, &e),
            Answer::Lost => tracing::debug!(?request, "no answer to a neighbour request; not waiting longer"),
        }
    }

    fn request_failed(&mut self, request: Request, error: &io::Error) {
        match request {
            Request::Use(key) => self.tracker.on_use_failed(key, error),
            Request::Probe((ifindex, addr)) => {
                // The entry changed under the request (turned FAILED, was
                // deleted): the change itself is what counts.
                tracing::debug!(%addr, ifindex, error = %error, "probing a neighbour entry failed");
            }
            Request::Link(ifindex) => tracing::debug!(ifindex, error = %error, "no name for interface"),
        }
    }

    fn dump_failed(&mut self, error: &io::Error) {
        tracing::warn!(error = %error, "dumping the neighbour table failed; retrying");
        self.dump = None;
        self.dump_wanted = true;
        self.dump_backoff = Some(Instant::now() + Duration::from_secs(1));
    }

    fn handle(&mut self, msg: netlink::Received) {
        let now = std::time::Instant::now();
        // The dump is the only request answered here; changes come with 0.
        let in_dump = msg.is_answer() && self.dump.is_some();
        if in_dump
            && msg.dump_interrupted()
            && let Some(dump) = &mut self.dump
        {
            dump.interrupted = true;
        }
        match msg.what {
            Incoming::Neigh { proxy: true, .. } | Incoming::Other => {}
            Incoming::Neigh { deleted, key, state, lladdr, proxy: false } => {
                if let Some(dump) = &mut self.dump {
                    dump.seen.insert(key);
                }
                if !self.tracker.contains(&key) {
                    return;
                }
                tracing::debug!(
                    addr = %key.1, ifindex = key.0, deleted, state = %state_name(state), ?lladdr,
                    "neighbour entry"
                );
                let actions = if deleted {
                    self.tracker.on_deleted(key, now)
                } else {
                    self.tracker.on_entry(key, state, lladdr.as_deref(), now)
                };
                self.queue.extend(actions);
            }
            Incoming::Done if in_dump => {
                let Some(dump) = self.dump.take() else { return };
                if dump.interrupted {
                    // Entries may be missing from it: an absence proves nothing.
                    self.dump_wanted = true;
                } else {
                    let actions = self.tracker.on_dump_done(&dump.seen, now);
                    self.queue.extend(actions);
                }
            }
            Incoming::Done => {}
            Incoming::Error { errno } if in_dump && errno != 0 => {
                self.dump_failed(&io::Error::from_raw_os_error(errno));
            }
            Incoming::Error { .. } => {}
            Incoming::Overrun => {
                tracing::warn!("the neighbour watcher's netlink queue overran; dumping the table again");
                match &mut self.dump {
                    Some(dump) => dump.interrupted = true,
                    None => self.dump_wanted = true,
                }
            }
        }
    }

    /// Passes the tracker's news on: logs, the event queue, the snapshot.
    fn publish(&mut self) {
        for ev in self.tracker.take_events() {
            match ev.mac {
                Some(mac) => {
                    tracing::info!(addr = %ev.target, ifindex = ev.ifindex, mac = %Mac(mac), reason = %ev.reason, "backend MAC")
                }
                None => {
                    tracing::warn!(addr = %ev.target, ifindex = ev.ifindex, reason = %ev.reason, "backend MAC unresolved")
                }
            }
            // Only a target's latest state matters to the reader.
            self.outbox.retain(|e| (e.ifindex, e.target) != (ev.ifindex, ev.target));
            self.outbox.push_back(ev);
        }
        if self.tracker.take_changed() {
            *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = self.tracker.snapshot();
        }
    }
}
