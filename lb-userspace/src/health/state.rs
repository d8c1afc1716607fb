//! keepalived's up/down bookkeeping for one checked backend, without I/O or
//! clocks, so the rules can be tested by feeding results.
//!
//! The rules (keepalived's checkers, plus `rise`):
//! - an up backend goes down after `fall` consecutive failures; between those
//!   failures the next attempt comes after `delay_before_retry`, not after the
//!   interval, so a dead backend is noticed in `fall * delay_before_retry`
//!   rather than `fall * interval`;
//! - a down backend comes back after `rise` consecutive successes;
//! - every other attempt follows after `interval`;
//! - a success may carry a dynamic weight (`misc_dynamic`), which sticks
//!   until a later success carries another one.

use std::time::Duration;

use crate::config::Check;

/// The part of a [`Check`] that decides transitions and delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub delay_before_retry: Duration,
    pub fall: u32,
    pub rise: u32,
}

impl From<&Check> for Timing {
    fn from(check: &Check) -> Timing {
        Timing {
            interval: check.interval,
            delay_before_retry: check.delay_before_retry,
            fall: check.fall,
            rise: check.rise,
        }
    }
}

/// What an attempt's result changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
    /// Still up, with a new dynamic weight.
    Weight,
}

/// The outcome of feeding one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub transition: Option<Transition>,
    /// Wait this long, counted from the end of the attempt, before the next one.
    pub next: Duration,
    /// No change yet, but the next result like this one changes the state
    /// to this (`false`: down, `true`: up); said once, when the target gets
    /// there, so that the ring for the new state can be built before it is
    /// needed.
    pub heads_up: Option<bool>,
}

/// Up/down state with its consecutive counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    timing: Timing,
    up: bool,
    successes: u32,
    failures: u32,
    weight: Option<u32>,
}

impl Tracker {
    /// `up` is the state before any attempt: keepalived starts real servers
    /// up unless `alpha` is set.
    pub fn new(timing: Timing, up: bool) -> Tracker {
        Tracker { timing, up, successes: 0, failures: 0, weight: None }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The last dynamic weight reported by a success, if any.
    pub fn weight(&self) -> Option<u32> {
        self.weight
    }

    pub fn consecutive_successes(&self) -> u32 {
        self.successes
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// Feeds one attempt's result; `weight` is a dynamic weight carried by a
    /// success (ignored on failure).
    pub fn observe(&mut self, ok: bool, weight: Option<u32>) -> Step {
        // Validation refuses 0, but a hand-built Check could carry it; 0 and 1
        // both mean "the first result decides".
        let fall = self.timing.fall.max(1);
        let rise = self.timing.rise.max(1);
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            let weight_changed = weight.is_some() && weight != self.weight;
            if weight.is_some() {
                self.weight = weight;
            }
            let transition = if !self.up && self.successes >= rise {
                self.up = true;
                Some(Transition::Up)
            } else if self.up && weight_changed {
                Some(Transition::Weight)
            } else {
                None
            };
            let heads_up = (!self.up && self.successes + 1 == rise).then_some(true);
            Step { transition, next: self.timing.interval, heads_up }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if !self.up {
                return Step { transition: None, next: self.timing.interval, heads_up: None };
            }
            if self.failures >= fall {
                self.up = false;
                Step { transition: Some(Transition::Down), next: self.timing.interval, heads_up: None }
            } else {
                let heads_up = (self.failures + 1 == fall).then_some(false);
                Step { transition: None, next: self.timing.delay_before_retry, heads_up }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(6);
    const RETRY: Duration = Duration::from_secs(3);

    fn timing(fall: u32, rise: u32) -> Timing {
        Timing { interval: INTERVAL, delay_before_retry: RETRY, fall, rise }
    }

    fn step(transition: Option<Transition>, next: Duration) -> Step {
        Step { transition, next, heads_up: None }
    }

    /// A step without its heads-up, which `heads_up_once_one_result_before_a_change` checks.
    fn plain(s: Step) -> Step {
        Step { heads_up: None, ..s }
    }

    #[test]
    fn heads_up_once_one_result_before_a_change() {
        let mut t = Tracker::new(timing(3, 2), true);
        let heads = |t: &mut Tracker, ok| t.observe(ok, None).heads_up;
        assert_eq!(heads(&mut t, false), None);
        assert_eq!(heads(&mut t, false), Some(false), "one failure from down");
        let down = t.observe(false, None);
        assert_eq!((down.transition, down.heads_up), (Some(Transition::Down), None));
        assert_eq!(heads(&mut t, false), None);
        assert_eq!(heads(&mut t, true), Some(true), "one success from up");
        let up = t.observe(true, None);
        assert_eq!((up.transition, up.heads_up), (Some(Transition::Up), None));
        // fall = 1 and rise = 1 change at once: nothing to say first.
        let mut t = Tracker::new(timing(1, 1), true);
        assert_eq!(heads(&mut t, false), None);
        assert_eq!(heads(&mut t, true), None);
    }

    #[test]
    fn successes_while_up_change_nothing() {
        let mut t = Tracker::new(timing(3, 2), true);
        for _ in 0..5 {
            assert_eq!(plain(t.observe(true, None)), step(None, INTERVAL));
        }
        assert!(t.is_up());
        assert_eq!(t.consecutive_successes(), 5);
    }

    #[test]
    fn goes_down_after_fall_failures_spaced_by_delay_before_retry() {
        let mut t = Tracker::new(timing(3, 1), true);
        assert_eq!(plain(t.observe(false, None)), step(None, RETRY));
        assert_eq!(plain(t.observe(false, None)), step(None, RETRY));
        assert_eq!(plain(t.observe(false, None)), step(Some(Transition::Down), INTERVAL));
        assert!(!t.is_up());
        // Once down, keepalived goes back to its delay_loop.
        assert_eq!(plain(t.observe(false, None)), step(None, INTERVAL));
        assert_eq!(t.consecutive_failures(), 4);
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let mut t = Tracker::new(timing(2, 1), true);
        assert_eq!(plain(t.observe(false, None)), step(None, RETRY));
        assert_eq!(plain(t.observe(true, None)), step(None, INTERVAL));
        assert_eq!(plain(t.observe(false, None)), step(None, RETRY));
        assert_eq!(plain(t.observe(false, None)), step(Some(Transition::Down), INTERVAL));
    }

    #[test]
    fn fall_one_goes_down_at_once() {
        let mut t = Tracker::new(timing(1, 1), true);
        assert_eq!(plain(t.observe(false, None)), step(Some(Transition::Down), INTERVAL));
    }

    #[test]
    fn comes_back_after_rise_successes() {
        let mut t = Tracker::new(timing(1, 3), false);
        assert_eq!(plain(t.observe(true, None)), step(None, INTERVAL));
        assert_eq!(plain(t.observe(true, None)), step(None, INTERVAL));
        assert_eq!(plain(t.observe(false, None)), step(None, INTERVAL));
        assert_eq!(plain(t.observe(true, None)), step(None, INTERVAL));
        assert_eq!(plain(t.observe(true, None)), step(None, INTERVAL));
        assert_eq!(plain(t.observe(true, None)), step(Some(Transition::Up), INTERVAL));
        assert!(t.is_up());
    }

    #[test]
    fn zero_counts_behave_as_one() {
        let mut t = Tracker::new(timing(0, 0), true);
        assert_eq!(t.observe(false, None).transition, Some(Transition::Down));
        assert_eq!(t.observe(true, None).transition, Some(Transition::Up));
    }

    #[test]
    fn dynamic_weight_changes_are_reported_while_up() {
        let mut t = Tracker::new(timing(1, 1), true);
        assert_eq!(t.observe(true, Some(5)), step(Some(Transition::Weight), INTERVAL));
        assert_eq!(t.observe(true, Some(5)), step(None, INTERVAL));
        // Exit 0 under misc_dynamic leaves the weight alone, as in keepalived.
        assert_eq!(plain(t.observe(true, None)), step(None, INTERVAL));
        assert_eq!(t.weight(), Some(5));
        assert_eq!(t.observe(true, Some(7)).transition, Some(Transition::Weight));
        assert_eq!(t.weight(), Some(7));
    }

    #[test]
    fn weight_learned_while_down_is_carried_by_the_up_transition() {
        let mut t = Tracker::new(timing(1, 2), false);
        assert_eq!(plain(t.observe(true, Some(3))), step(None, INTERVAL));
        assert_eq!(plain(t.observe(true, None)), step(Some(Transition::Up), INTERVAL));
        assert_eq!(t.weight(), Some(3));
    }

    #[test]
    fn failures_ignore_weights() {
        let mut t = Tracker::new(timing(2, 1), true);
        t.observe(false, Some(9));
        assert_eq!(t.weight(), None);
    }
}
