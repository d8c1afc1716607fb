//! The watcher's decisions, kept free of sockets so they can be tested: what
//! a neighbour entry says about a target, which request makes the kernel
//! (re)check it, and when a target's MAC counts as resolved, changed or lost.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use super::NeighEvent;
use crate::netdev::Mac;

// NUD_* from include/uapi/linux/neighbour.h. Kept as raw bits because the
// kernel's state is a bit set and netlink-packet-route maps any combination
// it does not know to `Other`.
pub(crate) const NUD_INCOMPLETE: u16 = 0x01;
pub(crate) const NUD_REACHABLE: u16 = 0x02;
pub(crate) const NUD_STALE: u16 = 0x04;
pub(crate) const NUD_DELAY: u16 = 0x08;
pub(crate) const NUD_PROBE: u16 = 0x10;
pub(crate) const NUD_FAILED: u16 = 0x20;
pub(crate) const NUD_NOARP: u16 = 0x40;
pub(crate) const NUD_PERMANENT: u16 = 0x80;
pub(crate) const NUD_NONE: u16 = 0x00;

const NUD_USABLE: u16 = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;

/// What one neighbour entry says about its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The entry holds a unicast Ethernet address that frames can be sent to.
    Resolved([u8; 6]),
    /// The kernel is resolving (INCOMPLETE) or has not started (NONE).
    Resolving,
    /// The kernel gave up: no reply to its solicitations.
    Failed,
    /// The entry is valid but its link-layer address is of no use for
    /// rewriting an Ethernet destination.
    Unusable(&'static str),
}

/// Classifies a neighbour entry by its NUD state bits and link-layer address.
///
/// REACHABLE, STALE, DELAY, PROBE, PERMANENT and NOARP entries with a 6-byte
/// unicast address are resolved: STALE, DELAY and PROBE still hold the last
/// confirmed address while the kernel re-checks it, and forwarding to it in
/// the meantime is what the kernel itself does. FAILED is a failure;
/// INCOMPLETE and NONE are still in progress.
pub fn classify(state: u16, lladdr: Option<&[u8]>) -> Resolution {
    if state & NUD_FAILED != 0 {
        return Resolution::Failed;
    }
    if state & NUD_USABLE == 0 {
        return Resolution::Resolving;
    }
    match lladdr {
        None | Some([]) => Resolution::Unusable("the neighbour entry has no link-layer address"),
        Some(&[a, b, c, d, e, f]) => {
            let mac = [a, b, c, d, e, f];
            if mac == [0; 6] {
                Resolution::Unusable("the neighbour entry's MAC is all zeroes")
            } else if a & 1 != 0 {
                Resolution::Unusable("the neighbour entry's MAC is a multicast or broadcast address")
            } else {
                Resolution::Resolved(mac)
            }
        }
        Some(_) => Resolution::Unusable("the neighbour entry's link-layer address is not an Ethernet MAC"),
    }
}

/// What to ask of the kernel about a target on a periodic re-check, given the
/// state of its entry (`None`: there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// `RTM_NEWNEIGH` with `NTF_USE`: resolve as if a packet were waiting,
    /// which broadcasts (ARP) or multicasts (ND) solicitations.
    Use,
    /// Set the entry to PROBE: unicast solicitations to the MAC it holds, so
    /// a backend that moved to another MAC fails them within a few seconds,
    /// even one that is REACHABLE and would otherwise stay so for up to
    /// 45 s on the strength of earlier replies.
    Probe,
    /// Nothing: the kernel is resolving already, or the entry is static.
    /// `NTF_USE` on a PERMANENT entry would turn it into a dynamic one.
    Nothing,
}

/// The re-check for an entry in `state`.
pub fn recheck(state: Option<u16>) -> Recheck {
    match state {
        None => Recheck::Use,
        Some(s) if s & (NUD_PERMANENT | NUD_NOARP) != 0 => Recheck::Nothing,
        Some(s) if s & (NUD_INCOMPLETE | NUD_PROBE) != 0 => Recheck::Nothing,
        Some(s) if s & (NUD_REACHABLE | NUD_STALE | NUD_DELAY) != 0 => Recheck::Probe,
        // FAILED, NONE, or bits this code does not know.
        Some(_) => Recheck::Use,
    }
}

/// The name of a NUD state for reasons and logs.
pub fn state_name(state: u16) -> String {
    const NAMES: [(u16, &str); 8] = [
        (NUD_INCOMPLETE, "INCOMPLETE"),
        (NUD_REACHABLE, "REACHABLE"),
        (NUD_STALE, "STALE"),
        (NUD_DELAY, "DELAY"),
        (NUD_PROBE, "PROBE"),
        (NUD_FAILED, "FAILED"),
        (NUD_NOARP, "NOARP"),
        (NUD_PERMANENT, "PERMANENT"),
    ];
    if state == NUD_NONE {
        return "NONE".to_owned();
    }
    let names: Vec<&str> = NAMES.iter().filter(|(bit, _)| state & bit != 0).map(|(_, n)| *n).collect();
    if names.is_empty() { format!("{state:#x}") } else { names.join("|") }
}

/// A target: the interface the backend is reached through, and its address.
pub type Key = (u32, IpAddr);

/// A request for the kernel that a decision calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `RTM_NEWNEIGH` with `NTF_USE` for the target.
    Use(Key),
    /// `RTM_NEWNEIGH` setting the target's entry to PROBE.
    Probe(Key),
}

/// What the watcher knows of a target's kernel entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelView {
    /// Not known until the first dump of the table completes.
    Unknown,
    Absent,
    State(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Being resolved for the first time.
    Pending,
    Resolved([u8; 6]),
    Unresolved,
}

#[derive(Debug)]
struct Track {
    kernel: KernelView,
    status: Status,
    reason: String,
    /// A resolution was triggered since the entry last resolved, so the next
    /// failure is final. The first failure of a known MAC (its unicast
    /// probes went unanswered) only leads to a broadcast solicitation: the
    /// backend may be up behind another MAC.
    attempted: bool,
    /// When a pending resolution or a re-check of a lost MAC is given up on
    /// even if the kernel never reports FAILED.
    deadline: Option<Instant>,
}

/// The targets and what is known of each, changed only through the methods
/// below, which return the kernel requests the change calls for and queue
/// the events it causes.
#[derive(Debug)]
pub struct Tracker {
    targets: BTreeMap<Key, Track>,
    names: HashMap<u32, String>,
    resolve_timeout: Duration,
    events: Vec<NeighEvent>,
    changed: bool,
}

impl Tracker {
    pub fn new(resolve_timeout: Duration) -> Self {
        Self { targets: BTreeMap::new(), names: HashMap::new(), resolve_timeout, events: Vec::new(), changed: false }
    }

    /// Replaces the target set. New targets are pending until the next dump
    /// of the neighbour table says what the kernel has for them (the caller
    /// starts one); targets that stay keep their state.
    pub fn set_targets(&mut self, keys: impl IntoIterator<Item = Key>, now: Instant) {
        let keys: BTreeSet<Key> = keys.into_iter().collect();
        self.targets.retain(|k, _| keys.contains(k));
        for key in keys {
            self.targets.entry(key).or_insert_with(|| Track {
                kernel: KernelView::Unknown,
                status: Status::Pending,
                reason: "resolving".to_owned(),
                attempted: false,
                deadline: Some(now + self.resolve_timeout),
            });
        }
        self.changed = true;
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.targets.contains_key(key)
    }

    /// The interfaces the targets are on.
    pub fn ifindexes(&self) -> BTreeSet<u32> {
        self.targets.keys().map(|(i, _)| *i).collect()
    }

    /// Interfaces of targets whose name is not known yet.
    pub fn unnamed_ifindexes(&self) -> BTreeSet<u32> {
        self.ifindexes().into_iter().filter(|i| !self.names.contains_key(i)).collect()
    }

    /// Records an interface's name, used in reasons.
    pub fn set_name(&mut self, ifindex: u32, name: String) {
        self.names.insert(ifindex, name);
    }

    fn iface(&self, ifindex: u32) -> String {
        self.names.get(&ifindex).cloned().unwrap_or_else(|| format!("ifindex {ifindex}"))
    }

    /// The kernel reported the target's entry (a dump line or a change).
    pub fn on_entry(&mut self, key: Key, state: u16, lladdr: Option<&[u8]>, now: Instant) -> Vec<Action> {
        let Some(track) = self.targets.get_mut(&key) else { return Vec::new() };
        track.kernel = KernelView::State(state);
        match classify(state, lladdr) {
            Resolution::Resolved(mac) => {
                self.resolved(key, mac);
                Vec::new()
            }
            Resolution::Resolving => Vec::new(),
            Resolution::Failed => {
                let reason = self.no_reply(key, &format!("neighbour entry {}", state_name(state)));
                self.failed(key, reason, now)
            }
            Resolution::Unusable(why) => {
                let reason = format!("{why} ({} on {}, {})", key.1, self.iface(key.0), state_name(state));
                self.unresolved(key, reason);
                Vec::new()
            }
        }
    }

    /// The kernel deleted the target's entry (flushed by hand, the link went
    /// down, garbage-collected). The MAC it held is kept until a new
    /// resolution fails: a flush alone says nothing about the backend.
    pub fn on_deleted(&mut self, key: Key, now: Instant) -> Vec<Action> {
        let Some(track) = self.targets.get_mut(&key) else { return Vec::new() };
        track.kernel = KernelView::Absent;
        if track.attempted {
            return Vec::new();
        }
        self.attempt(key, now)
    }

    /// A dump of the neighbour table ended; `seen` holds the targets it (or a
    /// change that arrived meanwhile) reported. The others have no entry and
    /// the kernel is asked to resolve them.
    pub fn on_dump_done(&mut self, seen: &BTreeSet<Key>, now: Instant) -> Vec<Action> {
        let absent: Vec<Key> = self.targets.keys().filter(|k| !seen.contains(k)).copied().collect();
        let mut actions = Vec::new();
        for key in absent {
            if let Some(track) = self.targets.get_mut(&key) {
                track.kernel = KernelView::Absent;
                actions.extend(self.attempt(key, now));
            }
        }
        actions
    }

    /// The kernel refused to resolve the target (`NTF_USE` answered with an
    /// error, e.g. the interface is gone): nothing will resolve it.
    pub fn on_use_failed(&mut self, key: Key, error: &std::io::Error) {
        if !self.targets.contains_key(&key) {
            return;
        }
        let reason = format!("the kernel refused to resolve {} on {}: {error}", key.1, self.iface(key.0));
        self.unresolved(key, reason);
    }

    /// The periodic re-check: probes resolved entries, resolves missing and
    /// failed ones again, and gives up on resolutions past their deadline.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut expired = Vec::new();
        let mut actions = Vec::new();
        for (&key, track) in &self.targets {
            if track.deadline.is_some_and(|d| now >= d) {
                expired.push(key);
                continue;
            }
            let state = match track.kernel {
                KernelView::Unknown => continue,
                KernelView::Absent => None,
                KernelView::State(s) => Some(s),
            };
            match recheck(state) {
                Recheck::Use => actions.push(Action::Use(key)),
                Recheck::Probe => actions.push(Action::Probe(key)),
                Recheck::Nothing => {}
            }
        }
        for key in expired {
            let secs = self.resolve_timeout.as_secs_f32();
            let reason = self.no_reply(key, &format!("not resolved within {secs:.0} s"));
            self.unresolved(key, reason);
        }
        for action in &actions {
            if let Action::Use(key) = action {
                self.mark_attempted(*key, now);
            }
        }
        actions
    }

    /// Events queued since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<NeighEvent> {
        std::mem::take(&mut self.events)
    }

    /// Whether any target's state changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Every target's current state, ordered by interface and address.
    pub fn snapshot(&self) -> Vec<NeighEvent> {
        self.targets
            .iter()
            .map(|(&(ifindex, target), t)| NeighEvent {
                target,
                ifindex,
                mac: match t.status {
                    Status::Resolved(mac) => Some(mac),
                    Status::Pending | Status::Unresolved => None,
                },
                reason: t.reason.clone(),
            })
            .collect()
    }

    fn no_reply(&self, (ifindex, addr): Key, detail: &str) -> String {
        let what = match addr {
            IpAddr::V4(_) => "no ARP reply",
            IpAddr::V6(_) => "no neighbour advertisement",
        };
        format!("{what} from {addr} on {} ({detail})", self.iface(ifindex))
    }

    fn attempt(&mut self, key: Key, now: Instant) -> Vec<Action> {
        self.mark_attempted(key, now);
        vec![Action::Use(key)]
    }

    fn mark_attempted(&mut self, key: Key, now: Instant) {
        let timeout = self.resolve_timeout;
        if let Some(track) = self.targets.get_mut(&key) {
            track.attempted = true;
            if track.status != Status::Unresolved && track.deadline.is_none() {
                track.deadline = Some(now + timeout);
            }
        }
    }

    fn failed(&mut self, key: Key, reason: String, now: Instant) -> Vec<Action> {
        let Some(track) = self.targets.get(&key) else { return Vec::new() };
        if track.attempted {
            self.unresolved(key, reason);
            Vec::new()
        } else {
            self.attempt(key, now)
        }
    }

    fn resolved(&mut self, key: Key, mac: [u8; 6]) {
        let iface = self.iface(key.0);
        let Some(track) = self.targets.get_mut(&key) else { return };
        track.attempted = false;
        track.deadline = None;
        if track.status == Status::Resolved(mac) {
            return;
        }
        track.reason = match track.status {
            Status::Resolved(old) => format!("moved from {} on {iface}", Mac(old)),
            Status::Pending | Status::Unresolved => format!("resolved on {iface}"),
        };
        track.status = Status::Resolved(mac);
        self.changed = true;
        self.events.push(NeighEvent { target: key.1, ifindex: key.0, mac: Some(mac), reason: track.reason.clone() });
    }

    fn unresolved(&mut self, key: Key, reason: String) {
        let Some(track) = self.targets.get_mut(&key) else { return };
        track.attempted = false;
        track.deadline = None;
        if track.status == Status::Unresolved && track.reason == reason {
            return;
        }
        track.status = Status::Unresolved;
        track.reason = reason;
        self.changed = true;
        self.events.push(NeighEvent { target: key.1, ifindex: key.0, mac: None, reason: track.reason.clone() });
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
    const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];

    fn key() -> Key {
        (2, "10.0.0.11".parse().unwrap())
    }

    #[test]
    fn resolved_states_need_a_unicast_mac() {
        for state in [NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE, NUD_PERMANENT, NUD_NOARP] {
            assert_eq!(classify(state, Some(&MAC)), Resolution::Resolved(MAC), "{}", state_name(state));
            assert!(matches!(classify(state, None), Resolution::Unusable(_)), "{}", state_name(state));
        }
        assert!(matches!(classify(NUD_REACHABLE, Some(&[0; 6])), Resolution::Unusable(_)));
        assert!(matches!(classify(NUD_NOARP, Some(&[0xff; 6])), Resolution::Unusable(_)));
        assert!(matches!(classify(NUD_REACHABLE, Some(&[1, 2, 3, 4])), Resolution::Unusable(_)));
    }

    #[test]
    fn failed_and_incomplete_are_unresolved() {
        assert_eq!(classify(NUD_FAILED, None), Resolution::Failed);
        // A FAILED entry may still carry the address it last had.
        assert_eq!(classify(NUD_FAILED, Some(&MAC)), Resolution::Failed);
        assert_eq!(classify(NUD_INCOMPLETE, None), Resolution::Resolving);
        assert_eq!(classify(NUD_NONE, None), Resolution::Resolving);
    }

    #[test]
    fn rechecks_by_state() {
        assert_eq!(recheck(None), Recheck::Use);
        assert_eq!(recheck(Some(NUD_FAILED)), Recheck::Use);
        assert_eq!(recheck(Some(NUD_NONE)), Recheck::Use);
        for s in [NUD_REACHABLE, NUD_STALE, NUD_DELAY] {
            assert_eq!(recheck(Some(s)), Recheck::Probe, "{}", state_name(s));
        }
        for s in [NUD_INCOMPLETE, NUD_PROBE, NUD_PERMANENT, NUD_NOARP, NUD_PERMANENT | NUD_NOARP] {
            assert_eq!(recheck(Some(s)), Recheck::Nothing, "{}", state_name(s));
        }
    }

    #[test]
    fn state_names() {
        assert_eq!(state_name(NUD_NONE), "NONE");
        assert_eq!(state_name(NUD_STALE), "STALE");
        assert_eq!(state_name(NUD_NOARP | NUD_PERMANENT), "NOARP|PERMANENT");
        assert_eq!(state_name(0x100), "0x100");
    }

    fn tracker(now: Instant) -> Tracker {
        let mut t = Tracker::new(Duration::from_secs(10));
        t.set_targets([key()], now);
        t.set_name(2, "eth0".to_owned());
        t
    }

    #[test]
    fn absent_from_the_dump_is_resolved_then_followed() {
        let now = Instant::now();
        let mut t = tracker(now);
        assert_eq!(t.tick(now), vec![], "nothing is asked before the dump says what the kernel has");
        assert_eq!(t.on_dump_done(&BTreeSet::new(), now), vec![Action::Use(key())]);
        assert_eq!(t.on_entry(key(), NUD_INCOMPLETE, None, now), vec![]);
        assert!(t.take_events().is_empty());
        t.on_entry(key(), NUD_REACHABLE, Some(&MAC), now);
        let ev = t.take_events();
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].mac, ev[0].reason.as_str()), (Some(MAC), "resolved on eth0"));
        // STALE and back says nothing new.
        t.on_entry(key(), NUD_STALE, Some(&MAC), now);
        t.on_entry(key(), NUD_REACHABLE, Some(&MAC), now);
        assert!(t.take_events().is_empty());
        // The periodic re-check probes the MAC it holds.
        assert_eq!(t.tick(now), vec![Action::Probe(key())]);
        t.on_entry(key(), NUD_PROBE, Some(&MAC), now);
        assert_eq!(t.tick(now), vec![], "a probe in flight is left alone");
        // The unicast probes fail: broadcast before declaring it lost.
        assert_eq!(t.on_entry(key(), NUD_FAILED, None, now), vec![Action::Use(key())]);
        assert!(t.take_events().is_empty(), "one failed unicast probe is not a loss");
        t.on_entry(key(), NUD_REACHABLE, Some(&MAC2), now);
        let ev = t.take_events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].mac, Some(MAC2));
        assert_eq!(ev[0].reason, "moved from 02:00:00:00:00:11 on eth0");
        assert_eq!(t.snapshot()[0].mac, Some(MAC2));
    }

    #[test]
    fn lost_after_unicast_and_broadcast_fail() {
        let now = Instant::now();
        let mut t = tracker(now);
        t.on_entry(key(), NUD_REACHABLE, Some(&MAC), now);
        t.take_events();
        assert_eq!(t.on_entry(key(), NUD_FAILED, None, now), vec![Action::Use(key())]);
        assert_eq!(t.on_entry(key(), NUD_FAILED, None, now), vec![]);
        let ev = t.take_events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].mac, None);
        assert_eq!(ev[0].reason, "no ARP reply from 10.0.0.11 on eth0 (neighbour entry FAILED)");
        // Retried on every tick, but the same failure is not reported again.
        assert_eq!(t.tick(now), vec![Action::Use(key())]);
        t.on_entry(key(), NUD_FAILED, None, now);
        assert!(t.take_events().is_empty());
        // It comes back.
        t.on_entry(key(), NUD_REACHABLE, Some(&MAC), now);
        assert_eq!(t.take_events()[0].reason, "resolved on eth0");
    }

    #[test]
    fn a_stale_failed_entry_is_retried_before_it_counts() {
        let now = Instant::now();
        let mut t = tracker(now);
        // An old FAILED entry found by the first dump.
        assert_eq!(t.on_entry(key(), NUD_FAILED, None, now), vec![Action::Use(key())]);
        assert!(t.take_events().is_empty());
        t.on_entry(key(), NUD_FAILED, None, now);
        assert_eq!(t.take_events()[0].mac, None);
    }

    #[test]
    fn deadline_without_a_kernel_verdict() {
        let now = Instant::now();
        let mut t = tracker(now);
        t.on_dump_done(&BTreeSet::new(), now);
        t.tick(now + Duration::from_secs(11));
        let ev = t.take_events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].reason, "no ARP reply from 10.0.0.11 on eth0 (not resolved within 10 s)");
    }

    #[test]
    fn deleted_entry_keeps_its_mac_until_resolution_fails() {
        let now = Instant::now();
        let mut t = tracker(now);
        t.on_entry(key(), NUD_REACHABLE, Some(&MAC), now);
        t.take_events();
        assert_eq!(t.on_deleted(key(), now), vec![Action::Use(key())]);
        assert_eq!(t.snapshot()[0].mac, Some(MAC));
        t.on_entry(key(), NUD_FAILED, None, now);
        assert_eq!(t.take_events()[0].mac, None);
    }

    #[test]
    fn refused_resolution_and_unusable_entries() {
        let now = Instant::now();
        let v6: Key = (3, IpAddr::V6(Ipv6Addr::new(0xfd00, 0x212, 0, 0, 0, 0, 0, 0x11)));
        let mut t = Tracker::new(Duration::from_secs(10));
        t.set_targets([key(), v6], now);
        t.on_use_failed(key(), &std::io::Error::from_raw_os_error(libc::ENODEV));
        let ev = t.take_events();
        assert!(ev[0].reason.starts_with("the kernel refused to resolve 10.0.0.11 on ifindex 2: "), "{ev:?}");
        t.on_entry(v6, NUD_NOARP, None, now);
        let ev = t.take_events();
        assert_eq!(ev[0].mac, None);
        assert!(ev[0].reason.contains("no link-layer address"), "{ev:?}");
        // Permanent entries are resolved and never touched.
        t.on_entry(v6, NUD_PERMANENT, Some(&MAC), now);
        assert_eq!(t.take_events()[0].mac, Some(MAC));
        assert!(!t.tick(now).contains(&Action::Use(v6)));
        assert!(!t.tick(now).contains(&Action::Probe(v6)));
    }

    #[test]
    fn set_targets_keeps_known_and_drops_removed() {
        let now = Instant::now();
        let mut t = tracker(now);
        t.on_entry(key(), NUD_REACHABLE, Some(&MAC), now);
        let other: Key = (2, "10.0.0.12".parse().unwrap());
        t.set_targets([key(), other], now);
        let snap = t.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].mac, Some(MAC));
        assert_eq!((snap[1].mac, snap[1].reason.as_str()), (None, "resolving"));
        t.set_targets([other], now);
        assert_eq!(t.snapshot().len(), 1);
        assert_eq!(t.on_entry(key(), NUD_FAILED, None, now), vec![], "removed targets are ignored");
    }
}
