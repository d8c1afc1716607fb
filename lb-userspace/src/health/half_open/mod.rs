//! `tcp-half-open`: one SYN to the backend's port; a SYN-ACK is up, an RST
//! (connection refused) is down, silence is a timeout. The director's kernel
//! answers the SYN-ACK with an RST, as nothing here listens on the source
//! port, so the backend drops the half-open connection at once and its
//! application never sees it (F5's `tcp_half_open`, a SYN scan).
//!
//! Built for thousands of backends a second. A TCP connect check costs a
//! socket, a handshake, a close with its FIN exchange, an epoll registration
//! and a task with two timers; here one task, the [`Engine`], drives every
//! half-open target: on each tick it sends the SYNs that are due from one raw
//! socket per family, reads the replies as they come, and expires the
//! attempts whose timeout passed. The targets' state is in the engine's
//! tables, not in a task each, and the results go through the same tracker,
//! board and events as every other check (`record`).

pub(crate) mod packet;
mod socket;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::Future,
    hash::{BuildHasherDefault, Hasher},
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::{
    sync::{mpsc, oneshot},
    time::{self, Instant, MissedTickBehavior},
};

use super::{
    AbortOnDrop, CheckResult, Checked, HealthEvent, Slot, TICK, Tracker, io_reason, on_tick, random_u64, record,
    show_duration,
};
use packet::{Reply, SYN_LEN, fill_checksum_v4, parse_reply, syn};
pub use socket::SetupError;
use socket::{RawSocket, SOURCE_PORTS, route_source};

/// The monitor's side of the engine task; dropping it stops the task.
#[derive(Debug)]
pub(super) struct Engine {
    handle: EngineHandle,
    /// Which families have their socket (IPv4, IPv6).
    opened: [bool; 2],
    _task: AbortOnDrop,
}

/// What a probe needs to reach the engine.
#[derive(Clone, Debug)]
pub(super) struct EngineHandle {
    commands: mpsc::UnboundedSender<Command>,
    serials: Arc<AtomicU64>,
}

/// Keeps a target in the engine; dropping it removes the target.
#[derive(Debug)]
pub(super) struct Registration {
    commands: mpsc::UnboundedSender<Command>,
    serial: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The engine is gone only when the monitor is: nothing to remove then.
        let _ = self.commands.send(Command::Remove(self.serial));
    }
}

/// One target of the schedule, as the monitor hands it over.
pub(super) struct NewTarget {
    pub target: Checked,
    pub addr: SocketAddr,
    pub timeout: Duration,
    pub tracker: Tracker,
    pub status: Slot,
    pub first: Instant,
}

#[derive(Debug)]
enum Command {
    Socket(Box<RawSocket>),
    Add(u64, Box<Entry>),
    Remove(u64),
}

impl Engine {
    /// Starts the engine task, which reports state changes on `events`.
    /// Must be called within a Tokio runtime.
    pub(super) fn start(events: mpsc::Sender<HealthEvent>) -> Engine {
        let (commands, rx) = mpsc::unbounded_channel();
        let state = State {
            sockets: [None, None],
            entries: Vec::new(),
            free: Vec::new(),
            slots: HashMap::default(),
            next_generation: 0,
            due: Timeline::default(),
            deadlines: Timeline::default(),
            waiting: HashMap::default(),
            events,
            unsent: VecDeque::new(),
            next_port: random_u64() as usize,
            answers: Vec::new(),
        };
        let task = AbortOnDrop(tokio::spawn(state.run(rx)));
        Engine {
            handle: EngineHandle { commands, serials: Arc::new(AtomicU64::new(0)) },
            opened: [false, false],
            _task: task,
        }
    }

    /// Opens the sockets of `ipv6`'s family unless they are open. Needs
    /// CAP_NET_RAW.
    pub(super) fn open(&mut self, ipv6: bool) -> Result<EngineHandle, SetupError> {
        let family = usize::from(ipv6);
        if !self.opened[family] {
            let socket = RawSocket::open(ipv6)?;
            let _ = self.handle.commands.send(Command::Socket(Box::new(socket)));
            self.opened[family] = true;
        }
        Ok(self.handle.clone())
    }
}

impl EngineHandle {
    /// Puts a target on the schedule until the registration is dropped.
    pub(super) fn add(&self, new: NewTarget) -> Registration {
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let addr = new.addr;
        let job = Job::Scheduled(Scheduled {
            target: new.target,
            tracker: new.tracker,
            status: new.status,
            answered: answered(addr),
            refused: refused(addr),
        });
        let entry =
            Entry { addr, timeout: new.timeout, job, source: None, in_flight: None, next: new.first, generation: 0 };
        let _ = self.commands.send(Command::Add(serial, Box::new(entry)));
        Registration { commands: self.commands.clone(), serial }
    }

    /// One attempt now, outside any schedule.
    pub(super) fn once(&self, addr: SocketAddr, timeout: Duration) -> impl Future<Output = CheckResult> + use<> {
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let job = Job::Once(Box::new(Some(tx)));
        let entry = Entry { addr, timeout, job, source: None, in_flight: None, next: Instant::now(), generation: 0 };
        let sent = self.commands.send(Command::Add(serial, Box::new(entry)));
        async move {
            if sent.is_err() {
                return CheckResult::down("checker shutting down");
            }
            rx.await.unwrap_or_else(|_| CheckResult::down("checker shutting down"))
        }
    }
}

/// A probe in flight: the backend's address and port and our source port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    addr: IpAddr,
    port: u16,
    source_port: u16,
}

#[derive(Debug)]
struct Entry {
    addr: SocketAddr,
    timeout: Duration,
    job: Job,
    /// The IPv4 source the route to the backend takes, for the checksum;
    /// looked up again after an attempt without a reply (the route may have
    /// changed). IPv6 leaves the checksum to the kernel.
    source: Option<Ipv4Addr>,
    in_flight: Option<InFlight>,
    /// When the next attempt is due; `due` entries that differ are stale.
    next: Instant,
    /// Tells this entry from earlier ones of its slot (see [`Ref`]).
    generation: u32,
}

/// Scheduled targets' state lives in the entry itself, not behind a box:
/// finishing an attempt touches it, and a second pointer to follow was the
/// engine's costliest cache miss.
#[derive(Debug)]
enum Job {
    Scheduled(Scheduled),
    Once(Box<Option<oneshot::Sender<CheckResult>>>),
}

#[derive(Debug)]
struct Scheduled {
    target: Checked,
    tracker: Tracker,
    status: Slot,
    /// The results of a success and a refusal, built once.
    answered: CheckResult,
    refused: CheckResult,
}

#[derive(Debug)]
struct InFlight {
    key: Key,
    /// The SYN's sequence number + 1: what a reply to it acknowledges.
    ack: u32,
    at: SystemTime,
    started: Instant,
    deadline: Instant,
}

/// An entry's place in [`State::entries`] and its generation: a reference
/// left in a timeline or in `waiting` after its entry went (and the slot
/// was reused) names an older generation and is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ref {
    slot: u32,
    generation: u32,
}

/// The engine task's tables. Entries sit in one vector, reached by slot
/// from the timelines and from `waiting`: a tick touches thousands of them,
/// and a dense array lets their cache misses overlap (see `touch`) where a
/// hash map's buckets would be looked up one after another. `due` and
/// `deadlines` hold references by the tick they fall on (every instant here
/// is on the tick grid, so a second of schedule is about a hundred keys,
/// whatever the number of targets) and are cleaned lazily: a reference
/// whose entry is gone or has moved on is skipped.
struct State {
    sockets: [Option<RawSocket>; 2],
    entries: Vec<Option<Entry>>,
    /// Empty slots of `entries`, reused first.
    free: Vec<u32>,
    /// Where each registered target's entry is (for `Remove`).
    slots: HashMap<u64, Ref, Fast>,
    next_generation: u32,
    due: Timeline,
    deadlines: Timeline,
    waiting: HashMap<Key, Ref, Fast>,
    events: mpsc::Sender<HealthEvent>,
    /// Events the agent has no room for yet, in order.
    unsent: VecDeque<HealthEvent>,
    next_port: usize,
    /// [`deliver`](Self::deliver)'s matches, kept for their allocation.
    answers: Vec<(Ref, Reply)>,
}

impl State {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (mut replies_v4, mut replies_v6) = (Vec::new(), Vec::new());
        // A permit borrows its sender: this one, so that the handlers may borrow `self`.
        let events = self.events.clone();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                _ = tick.tick() => self.tick(Instant::now()),
                () = drain(self.sockets[0].as_ref(), &mut replies_v4) => self.deliver(&mut replies_v4),
                () = drain(self.sockets[1].as_ref(), &mut replies_v6) => self.deliver(&mut replies_v6),
                permit = events.reserve(), if !self.unsent.is_empty() => match permit {
                    Ok(permit) => permit.send(self.unsent.pop_front().expect("not empty")),
                    // The agent is shutting down.
                    Err(_) => self.unsent.clear(),
                },
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Socket(socket) => {
                let family = usize::from(socket.ipv6);
                self.sockets[family] = Some(*socket);
            }
            Command::Add(serial, entry) => {
                let once = matches!(entry.job, Job::Once(_));
                let r = self.insert(*entry);
                if once {
                    // A one-off attempt should not wait for the next tick.
                    let now = Instant::now();
                    let mut batch = Batch::default();
                    self.start(r, now, &mut batch);
                    self.flush(batch, now);
                } else {
                    self.slots.insert(serial, r);
                }
            }
            Command::Remove(serial) => {
                if let Some(r) = self.slots.remove(&serial) {
                    self.remove(r);
                }
            }
        }
    }

    /// Puts an entry in a free slot and on the schedule.
    fn insert(&mut self, mut entry: Entry) -> Ref {
        self.next_generation = self.next_generation.wrapping_add(1);
        entry.generation = self.next_generation;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(None);
                u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 targets")
            }
        };
        let r = Ref { slot, generation: entry.generation };
        self.due.add(entry.next, r);
        self.entries[slot as usize] = Some(entry);
        r
    }

    fn remove(&mut self, r: Ref) {
        if self.get(r).is_none() {
            return;
        }
        let entry = self.entries[r.slot as usize].take();
        if let Some(f) = entry.and_then(|e| e.in_flight) {
            self.waiting.remove(&f.key);
        }
        self.free.push(r.slot);
    }

    fn get(&self, r: Ref) -> Option<&Entry> {
        self.entries.get(r.slot as usize)?.as_ref().filter(|e| e.generation == r.generation)
    }

    fn get_mut(&mut self, r: Ref) -> Option<&mut Entry> {
        entry_mut(&mut self.entries, r)
    }

    /// Loads every entry of `refs` (and, for finishing, its board slot)
    /// before they are worked on one by one: the loads do not depend on
    /// each other, so the CPU overlaps their cache misses, where the work
    /// on each would otherwise wait for its own in turn.
    fn touch(&self, refs: impl Iterator<Item = Ref>, status: bool) {
        for r in refs {
            if let Some(entry) = self.get(r) {
                std::hint::black_box(entry.next);
                if status && let Job::Scheduled(s) = &entry.job {
                    std::hint::black_box(s.status.is_poisoned());
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        // Timeouts first: they free source ports.
        while let Some((deadline, refs)) = self.deadlines.take_due(now) {
            for r in refs {
                let Some(entry) = self.get_mut(r) else { continue };
                if entry.in_flight.as_ref().is_some_and(|f| f.deadline == deadline) {
                    entry.source = None;
                    let reason = format!(
                        "timeout after {} waiting for a SYN-ACK from {}",
                        show_duration(entry.timeout),
                        entry.addr
                    );
                    self.finish(r, CheckResult::down(reason), now);
                }
            }
        }
        let mut batch = Batch::default();
        while let Some((due, refs)) = self.due.take_due(now) {
            self.touch(refs.iter().copied(), false);
            for r in refs {
                if self.get(r).is_some_and(|e| e.next == due && e.in_flight.is_none()) {
                    self.start(r, now, &mut batch);
                }
            }
        }
        self.flush(batch, now);
    }

    /// Puts the SYN of an attempt into `batch`, puts the attempt off to the
    /// next tick, or finishes it at once when it cannot be sent.
    fn start(&mut self, r: Ref, now: Instant, batch: &mut Batch) {
        match self.prepare(r, now) {
            Ok(Some((family, dst, segment))) => batch.0[family].push((r, dst, segment)),
            Ok(None) => self.defer(r, now),
            Err(failed) => self.finish(r, failed, now),
        }
    }

    /// Not now: the next tick tries again.
    fn defer(&mut self, r: Ref, now: Instant) {
        if let Some(entry) = self.get_mut(r) {
            let in_flight = entry.in_flight.take();
            entry.next = on_tick(now + TICK);
            let next = entry.next;
            if let Some(f) = in_flight {
                self.waiting.remove(&f.key);
            }
            self.due.add(next, r);
        }
    }

    /// Sends what [`start`](Self::start) prepared, one system call per family
    /// for the lot (as long as the kernel takes them).
    fn flush(&mut self, batch: Batch, now: Instant) {
        for (family, segments) in batch.0.into_iter().enumerate() {
            let mut rest = &segments[..];
            while !rest.is_empty() {
                let Some(socket) = &self.sockets[family] else { return };
                let wire: Vec<(IpAddr, [u8; SYN_LEN])> = rest.iter().map(|(_, dst, seg)| (*dst, *seg)).collect();
                match socket.send_batch(&wire) {
                    Ok(n) if n == rest.len() => break,
                    // Segment n failed: find out why on its own.
                    Ok(n) => rest = &rest[n..],
                    Err(_) => {}
                }
                let (r, dst, segment) = rest[0];
                match socket.send_to(dst, &segment) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.defer(r, now),
                    Err(e) => {
                        let addr = self.get_mut(r).map(|entry| {
                            entry.source = None;
                            entry.addr
                        });
                        if let Some(addr) = addr {
                            let reason = format!("sending a SYN to {addr}: {}", io_reason(&e));
                            self.finish(r, CheckResult::down(reason), now);
                        }
                    }
                }
                rest = &rest[1..];
            }
        }
    }

    /// The family, destination and SYN of an attempt, registered as in
    /// flight; `None`: not now (no free source port).
    fn prepare(&mut self, r: Ref, now: Instant) -> Result<Option<(usize, IpAddr, [u8; SYN_LEN])>, CheckResult> {
        let start = self.next_port;
        self.next_port = self.next_port.wrapping_add(1);
        let Some(entry) = entry_mut(&mut self.entries, r) else {
            return Ok(None);
        };
        let Some(socket) = &self.sockets[usize::from(entry.addr.is_ipv6())] else {
            return Err(CheckResult::down("half-open checks of this address family are not set up"));
        };
        let ip = entry.addr.ip();
        // Every source port busy with this backend port (more targets of
        // it than ports, all due at once): wait for the next tick.
        let Some(key) = (0..SOURCE_PORTS)
            .map(|i| Key { addr: ip, port: entry.addr.port(), source_port: socket.ports[(start + i) % SOURCE_PORTS] })
            .find(|k| !self.waiting.contains_key(k))
        else {
            return Ok(None);
        };
        let seq = random_u64() as u32;
        let mut segment = syn(key.source_port, key.port, seq);
        if let SocketAddr::V4(dst) = entry.addr {
            let src = match entry.source {
                Some(src) => src,
                None => {
                    let src = route_source(entry.addr)
                        .map_err(|e| CheckResult::down(format!("no route to {ip}: {}", io_reason(&e))))?;
                    entry.source = Some(src);
                    src
                }
            };
            fill_checksum_v4(src, *dst.ip(), &mut segment);
        }
        // On the grid, as everything the engine schedules: at most a tick late.
        let deadline = on_tick(now + entry.timeout);
        entry.in_flight =
            Some(InFlight { key, ack: seq.wrapping_add(1), at: SystemTime::now(), started: now, deadline });
        let family = usize::from(entry.addr.is_ipv6());
        self.waiting.insert(key, r);
        self.deadlines.add(deadline, r);
        Ok(Some((family, ip, segment)))
    }

    fn deliver(&mut self, replies: &mut Vec<(IpAddr, packet::ParsedReply)>) {
        let now = Instant::now();
        // Matched first, finished after: the matching loads every entry the
        // batch answers, overlapping their misses (see `touch`).
        let mut answers = std::mem::take(&mut self.answers);
        for (from, reply) in replies.drain(..) {
            let key = Key { addr: from, port: reply.source_port, source_port: reply.dest_port };
            let Some(&r) = self.waiting.get(&key) else { continue };
            // A reply to an earlier SYN of the same ports (after a timeout)
            // acknowledges another sequence number: not this attempt's answer.
            if self.get(r).and_then(|e| e.in_flight.as_ref()).is_none_or(|f| f.ack != reply.ack) {
                continue;
            }
            answers.push((r, reply.kind));
        }
        self.touch(answers.iter().map(|(r, _)| *r), true);
        for (r, kind) in answers.drain(..) {
            let outcome = match kind {
                Reply::SynAck => Outcome::SynAck,
                Reply::Reset => Outcome::Refused,
            };
            self.finish(r, outcome, now);
        }
        self.answers = answers;
    }

    /// Ends the attempt in flight (if any).
    fn finish(&mut self, r: Ref, outcome: impl Into<Outcome>, now: Instant) {
        let outcome = outcome.into();
        let Some(entry) = entry_mut(&mut self.entries, r) else {
            return;
        };
        let (at, took) = match entry.in_flight.take() {
            Some(f) => {
                self.waiting.remove(&f.key);
                (f.at, now - f.started)
            }
            None => (SystemTime::now(), Duration::ZERO),
        };
        match &mut entry.job {
            Job::Once(reply) => {
                let result = match outcome {
                    Outcome::SynAck => answered(entry.addr),
                    Outcome::Refused => refused(entry.addr),
                    Outcome::Failed(result) => result,
                };
                if let Some(reply) = reply.take() {
                    let _ = reply.send(result);
                }
                self.remove(r);
            }
            Job::Scheduled(Scheduled { target, tracker, status, answered, refused }) => {
                let failed;
                // The shared results of a target: the board keeps the same
                // reason, untouched, while the answers stay the same.
                let result = match outcome {
                    Outcome::SynAck => &*answered,
                    Outcome::Refused => &*refused,
                    Outcome::Failed(result) => {
                        failed = result;
                        &failed
                    }
                };
                let (step, event) = record(*target, tracker, status, result, at, took);
                entry.next = on_tick(now + step.next);
                self.due.add(entry.next, r);
                if let Some(event) = event {
                    if !self.unsent.is_empty() {
                        self.unsent.push_back(event);
                    } else if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event) {
                        self.unsent.push_back(event);
                    }
                }
            }
        }
    }
}

/// [`State::get_mut`] for a caller that also borrows other tables.
fn entry_mut(entries: &mut [Option<Entry>], r: Ref) -> Option<&mut Entry> {
    entries.get_mut(r.slot as usize)?.as_mut().filter(|e| e.generation == r.generation)
}

/// A SYN-ACK's result.
fn answered(addr: SocketAddr) -> CheckResult {
    CheckResult::up(format!("SYN-ACK from {addr}"))
}

/// An RST's result, worded as a connect check's refusal.
fn refused(addr: SocketAddr) -> CheckResult {
    CheckResult::down(format!("connect to {addr}: connection refused"))
}

/// How an attempt ended.
#[derive(Debug)]
enum Outcome {
    SynAck,
    Refused,
    Failed(CheckResult),
}

impl From<CheckResult> for Outcome {
    fn from(result: CheckResult) -> Self {
        Outcome::Failed(result)
    }
}

/// SYNs to send at the end of a tick, per family: entry, destination, bytes.
#[derive(Default)]
struct Batch([Vec<(Ref, IpAddr, [u8; SYN_LEN])>; 2]);

/// Entries by the instant they are due.
#[derive(Debug, Default)]
struct Timeline(BTreeMap<Instant, Vec<Ref>>);

impl Timeline {
    fn add(&mut self, at: Instant, r: Ref) {
        self.0.entry(at).or_default().push(r);
    }

    /// The earliest instant not after `now` and its entries, taken out.
    fn take_due(&mut self, now: Instant) -> Option<(Instant, Vec<Ref>)> {
        let entry = self.0.first_entry()?;
        if *entry.key() > now {
            return None;
        }
        Some(entry.remove_entry())
    }
}

/// Multiply-rotate hashing for the engine's maps: their keys are serials and
/// addresses we chose or checked ourselves, so SipHash's defence against
/// chosen keys buys nothing and costs a third of a lookup.
type Fast = BuildHasherDefault<FastHasher>;

#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// Waits until `socket` is readable and reads every segment it holds into
/// `replies`; never ready without a socket.
async fn drain(socket: Option<&RawSocket>, replies: &mut Vec<(IpAddr, packet::ParsedReply)>) {
    let Some(socket) = socket else { return std::future::pending().await };
    let Ok(mut guard) = socket.fd.readable().await else { return std::future::pending().await };
    loop {
        let read = socket.recv_batch(|segment, from| {
            if let Some(reply) = parse_reply(socket.ipv6, segment) {
                replies.push((from, reply));
            }
        });
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock: all read. Anything else: a reply lost, which is a
            // timeout for its probe; wait for the next readiness either way.
            Err(_) => {
                guard.clear_ready();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
