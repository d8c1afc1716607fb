//! The last state changes, for `lb status` and the status page: a bounded
//! list that forgets the oldest, so a flapping backend costs memory once.

use std::{
    collections::{HashMap, VecDeque},
    time::{SystemTime, UNIX_EPOCH},
};

use super::status::{EventKind, StatusEvent};

/// How many changes the agent keeps: a few screens of history, enough to
/// see what led up to an outage without a log.
pub const KEPT: usize = 50;

/// Where the time of a change comes from: the system clock in the agent,
/// a fixed one in tests.
pub type Clock = fn() -> SystemTime;

/// The last [`KEPT`] changes, oldest first.
#[derive(Clone, Debug)]
pub struct EventLog {
    events: VecDeque<StatusEvent>,
    capacity: usize,
    clock: Clock,
    /// The last state [`observe`](Self::observe) saw per subject, so only
    /// changes are recorded.
    seen: HashMap<(EventKind, String), String>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(KEPT, SystemTime::now)
    }
}

impl EventLog {
    /// Keeps the last `capacity` changes (at least one), stamped by `clock`.
    pub fn new(capacity: usize, clock: Clock) -> Self {
        let capacity = capacity.max(1);
        Self { events: VecDeque::with_capacity(capacity), capacity, clock, seen: HashMap::new() }
    }

    /// Records a change, dropping the oldest when full.
    pub fn push(&mut self, event: StatusEvent) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Records a change of `subject` from `from` to `to` now.
    pub fn record(
        &mut self,
        kind: EventKind,
        subject: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
        reason: impl Into<String>,
    ) {
        let event = StatusEvent {
            time_ms: unix_ms((self.clock)()),
            kind,
            subject: subject.into(),
            from: from.into(),
            to: to.into(),
            reason: reason.into(),
        };
        self.push(event);
    }

    /// Records `subject`'s `state` if it differs from the one seen last; the
    /// first state seen is where it starts, not a change.
    pub fn observe(&mut self, kind: EventKind, subject: &str, state: &str, reason: &str) {
        let key = (kind, subject.to_owned());
        match self.seen.insert(key, state.to_owned()) {
            Some(before) if before != state => self.record(kind, subject, before, state, reason),
            _ => {}
        }
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &StatusEvent> {
        self.events.iter()
    }

    pub fn to_vec(&self) -> Vec<StatusEvent> {
        self.events.iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Milliseconds since the Unix epoch; 0 for a clock set before it.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at_1000s() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1000)
    }

    fn log(capacity: usize) -> EventLog {
        EventLog::new(capacity, at_1000s)
    }

    fn subjects(log: &EventLog) -> Vec<&str> {
        log.iter().map(|e| e.subject.as_str()).collect()
    }

    #[test]
    fn keeps_the_last_changes_oldest_first() {
        let mut l = log(3);
        for s in ["a", "b", "c", "d", "e"] {
            l.record(EventKind::Backend, s, "up", "down", "check failed");
        }
        assert_eq!(subjects(&l), ["c", "d", "e"]);
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn stamps_with_its_clock() {
        let mut l = log(2);
        l.record(EventKind::Vrrp, "VI_1", "BACKUP", "MASTER", "");
        let e = l.iter().next().unwrap();
        assert_eq!(e.time_ms, 1_000_000);
        assert_eq!((e.from.as_str(), e.to.as_str()), ("BACKUP", "MASTER"));
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_last() {
        let mut l = log(0);
        l.record(EventKind::Config, "lb.toml", "", "reloaded", "");
        l.record(EventKind::Config, "lb.toml", "", "refused", "line 3: bad");
        assert_eq!(l.to_vec().len(), 1);
        assert_eq!(l.iter().next().unwrap().reason, "line 3: bad");
    }

    #[test]
    fn observe_records_changes_only() {
        let mut l = log(10);
        l.observe(EventKind::Vip, "10.0.0.1:80/tcp", "up", "");
        l.observe(EventKind::Vip, "10.0.0.1:80/tcp", "up", "");
        assert!(l.is_empty(), "the first state is where it starts");
        l.observe(EventKind::Vip, "10.0.0.1:80/tcp", "quorum lost", "live weight 0 of 1");
        l.observe(EventKind::Vip, "10.0.0.2:80/tcp", "quorum lost", "");
        l.observe(EventKind::Vip, "10.0.0.1:80/tcp", "quorum lost", "");
        let e: Vec<_> = l.to_vec();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].from.as_str(), e[0].to.as_str()), ("up", "quorum lost"));
        assert_eq!(e[0].reason, "live weight 0 of 1");
    }

    #[test]
    fn unix_ms_before_the_epoch_is_zero() {
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
    }
}
