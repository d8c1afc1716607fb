//! Tracking with keepalived's semantics: interfaces and scripts that put an
//! instance in FAULT or move its priority.
//!
//! - A tracked interface that is down, not running or gone: FAULT. The
//!   instance's own interface is always tracked.
//! - A script goes to failed after `fall` consecutive failures and back to
//!   OK after `rise` consecutive successes; it starts OK, so one success at
//!   startup is enough. Weight 0: FAULT while failed. Weight W > 0: W is
//!   added while OK. W < 0: W is added while failed.
//! - The director's own fast path (`track_dataplane`): unhealthy while the
//!   XDP program is off an interface it was attached to or, with
//!   `no_live_backend`, while a VIP of the instance has no live backend. Its
//!   weight works as a script's. The agent reports [`DataplaneHealth`].
//! - The effective priority is the base plus those weights, clamped to
//!   1..=254; a base of 255 (address owner) never changes.

use std::{net::IpAddr, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle, time};

use super::{
    notify::{describe, run_as},
    packet::PRIORITY_OWNER,
};
use crate::{
    config::{TrackDataplane, TrackScript},
    script::Account,
};

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
        contribution(self.weight, self.ok)
    }
}

/// keepalived's rule for any tracked object: W > 0 is added while OK, W < 0
/// while failed; 0 adds nothing (it means FAULT instead).
pub fn contribution(weight: i32, ok: bool) -> i32 {
    match (weight, ok) {
        (w, true) if w > 0 => w,
        (w, false) if w < 0 => w,
        _ => 0,
    }
}

/// The effective priority from the base, the scripts and any other
/// contribution (the data plane's).
pub fn effective_priority(base: u8, scripts: &[ScriptState], extra: i32) -> u8 {
    if base == PRIORITY_OWNER {
        return base;
    }
    let sum: i32 = i32::from(base) + scripts.iter().map(ScriptState::contribution).sum::<i32>() + extra;
    sum.clamp(1, i32::from(PRIORITY_OWNER) - 1) as u8
}

/// What the agent knows about its fast path, reported every poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneHealth {
    /// Interfaces the XDP program was attached to and is not any more
    /// (detached, or replaced by another program).
    pub detached: Vec<String>,
    /// Configured VIP addresses none of whose services has a live backend.
    pub vips_without_backend: Vec<IpAddr>,
}

/// Why the data plane is unhealthy for an instance with `vips`; empty when
/// healthy (or nothing was reported yet: it starts healthy, as scripts do).
pub fn dataplane_problems(track: TrackDataplane, health: Option<&DataplaneHealth>, vips: &[IpAddr]) -> Vec<String> {
    let Some(health) = health else { return Vec::new() };
    let mut out: Vec<String> =
        health.detached.iter().map(|i| format!("data plane: XDP program not attached to {i}")).collect();
    if track.no_live_backend {
        out.extend(
            (vips.iter())
                .filter(|v| health.vips_without_backend.contains(v))
                .map(|v| format!("data plane: VIP {v} has no live backend")),
        );
    }
    out
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
    fn dataplane_health() {
        let vip: IpAddr = "10.0.0.100".parse().unwrap();
        let other: IpAddr = "10.0.0.200".parse().unwrap();
        let fault = TrackDataplane { weight: 0, no_live_backend: false };
        let strict = TrackDataplane { weight: -60, no_live_backend: true };
        let detached = DataplaneHealth { detached: vec!["eth0".into()], vips_without_backend: vec![] };
        let empty_vip = DataplaneHealth { detached: vec![], vips_without_backend: vec![vip] };
        let empty_other = DataplaneHealth { detached: vec![], vips_without_backend: vec![other] };
        struct Case<'a> {
            name: &'a str,
            track: TrackDataplane,
            health: Option<&'a DataplaneHealth>,
            problems: Vec<&'a str>,
        }
        let cases = [
            Case { name: "nothing reported yet: healthy", track: fault, health: None, problems: vec![] },
            Case {
                name: "XDP detached",
                track: fault,
                health: Some(&detached),
                problems: vec!["data plane: XDP program not attached to eth0"],
            },
            Case {
                name: "no live backend ignored without no_live_backend",
                track: fault,
                health: Some(&empty_vip),
                problems: vec![],
            },
            Case {
                name: "no live backend on one of ours",
                track: strict,
                health: Some(&empty_vip),
                problems: vec!["data plane: VIP 10.0.0.100 has no live backend"],
            },
            Case {
                name: "another VIP's backends are not ours",
                track: strict,
                health: Some(&empty_other),
                problems: vec![],
            },
        ];
        for c in cases {
            assert_eq!(dataplane_problems(c.track, c.health, &[vip]), c.problems, "{}", c.name);
        }
        // The weight as for scripts: -60 while unhealthy; 0 contributes nothing (it means FAULT).
        assert_eq!(effective_priority(150, &[], contribution(-60, false)), 90);
        assert_eq!(effective_priority(150, &[], contribution(-60, true)), 150);
        assert_eq!(effective_priority(150, &[], contribution(0, false)), 150);
        assert_eq!(effective_priority(100, &[], contribution(20, true)), 120);
        assert_eq!(effective_priority(255, &[], contribution(-60, false)), 255);
    }

    #[test]
    fn weights_as_keepalived() {
        let mut up = script(20, 1, 1);
        let mut down = script(-60, 1, 1);
        assert_eq!(effective_priority(100, &[up.clone(), down.clone()], 0), 120);
        down.record(false);
        assert_eq!(effective_priority(100, &[up.clone(), down.clone()], 0), 60);
        up.record(false);
        assert_eq!(effective_priority(100, &[up.clone(), down.clone()], 0), 40);
        assert_eq!(effective_priority(50, &[down.clone()], 0), 1, "clamped at 1");
        let big = script(200, 1, 1);
        assert_eq!(effective_priority(100, &[big], 0), 254, "clamped at 254");
        assert_eq!(effective_priority(255, &[down], 0), 255, "the owner never changes");
    }
}
