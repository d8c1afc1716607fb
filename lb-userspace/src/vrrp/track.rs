//! Tracking with keepalived's semantics: interfaces and scripts that put an
//! instance in FAULT or move its priority.
//!
//! - A tracked interface that is down, not running or gone: FAULT. The
//!   instance's own interface is always tracked.
//! - A script goes to failed after `fall` consecutive failures and back to
//!   OK after `rise` consecutive successes; it starts OK, so one success at
//!   startup is enough. Weight 0: FAULT while failed. Weight W > 0: W is
//!   added while OK. W < 0: W is added while failed.
//! - The effective priority is the base plus those weights, clamped to
//!   1..=254; a base of 255 (address owner) never changes.

use std::time::Duration;

use tokio::{sync::mpsc, task::JoinHandle, time};

use super::{
    notify::{describe, run_as},
    packet::PRIORITY_OWNER,
};
use crate::{config::TrackScript, health::Account};

/// One script's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptState {
    pub name: String,
    pub weight: i32,
    rise: u32,
    fall: u32,
    ok: bool,
    /// Consecutive results against the current state.
    streak: u32,
}

impl ScriptState {
    pub fn new(script: &TrackScript) -> Self {
        Self {
            name: script.name.clone(),
            weight: script.weight,
            rise: script.rise.max(1),
            fall: script.fall.max(1),
            ok: true,
            streak: 0,
        }
    }

    /// Whether the script is in its OK state.
    pub fn ok(&self) -> bool {
        self.ok
    }

    /// Records one run; true when the state changed.
    pub fn record(&mut self, success: bool) -> bool {
        if success == self.ok {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if self.ok { self.fall } else { self.rise };
        if self.streak >= needed {
            self.ok = success;
            self.streak = 0;
            return true;
        }
        false
    }

    /// Puts the instance in FAULT: weight 0 and failed.
    pub fn faults(&self) -> bool {
        self.weight == 0 && !self.ok
    }

    /// What it adds to the priority now.
    pub fn contribution(&self) -> i32 {
        match (self.weight, self.ok) {
            (w, true) if w > 0 => w,
            (w, false) if w < 0 => w,
            _ => 0,
        }
    }
}

/// The effective priority from the base and the scripts.
pub fn effective_priority(base: u8, scripts: &[ScriptState]) -> u8 {
    if base == PRIORITY_OWNER {
        return base;
    }
    let sum: i32 = i32::from(base) + scripts.iter().map(ScriptState::contribution).sum::<i32>();
    sum.clamp(1, i32::from(PRIORITY_OWNER) - 1) as u8
}

/// Runs one script every `interval` and reports `(index, success)`.
pub fn spawn_script(
    instance: String,
    index: usize,
    script: TrackScript,
    account: Account,
    results: mpsc::Sender<(usize, bool)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = time::interval(script.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let success = match run_as(&script.command, account, script.timeout).await {
                Ok(status) if status.success() => true,
                Ok(status) => {
                    tracing::debug!(instance, script = script.name, "track script failed: {}", describe(status));
                    false
                }
                Err(e) => {
                    tracing::debug!(instance, script = script.name, "track script: {e}");
                    false
                }
            };
            if results.send((index, success)).await.is_err() {
                return;
            }
        }
    })
}

/// Aborts the task when dropped, so script runners end with their instance.
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(weight: i32, rise: u32, fall: u32) -> ScriptState {
        ScriptState::new(&TrackScript {
            name: "s".into(),
            command: vec!["/bin/true".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise,
            fall,
            weight,
            user: "nobody".into(),
        })
    }

    #[test]
    fn rise_and_fall() {
        let mut s = script(0, 2, 3);
        assert!(s.ok());
        assert!(!s.record(false));
        assert!(!s.record(true), "a success resets the failure streak");
        assert!(!s.record(false));
        assert!(!s.record(false));
        assert!(s.record(false), "third consecutive failure");
        assert!(s.faults());
        assert!(!s.record(true));
        assert!(!s.record(false));
        assert!(!s.record(true));
        assert!(s.record(true), "two consecutive successes");
        assert!(!s.faults());
    }

    #[test]
    fn weights_as_keepalived() {
        let mut up = script(20, 1, 1);
        let mut down = script(-60, 1, 1);
        assert_eq!(effective_priority(100, &[up.clone(), down.clone()]), 120);
        down.record(false);
        assert_eq!(effective_priority(100, &[up.clone(), down.clone()]), 60);
        up.record(false);
        assert_eq!(effective_priority(100, &[up.clone(), down.clone()]), 40);
        assert_eq!(effective_priority(50, &[down.clone()]), 1, "clamped at 1");
        let big = script(200, 1, 1);
        assert_eq!(effective_priority(100, &[big]), 254, "clamped at 254");
        assert_eq!(effective_priority(255, &[down]), 255, "the owner never changes");
    }
}
