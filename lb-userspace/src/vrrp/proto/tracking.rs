//! Tracking with keepalived's semantics: interfaces, scripts and the fast
//! path that put an instance in FAULT or move its priority, aggregated into
//! what the state machine is told.
//!
//! - A tracked interface that is down, not running or gone: FAULT. The
//!   instance's own interface is always tracked.
//! - A script goes to failed after `fall` consecutive failures and back to
//!   OK after `rise` consecutive successes; it starts OK, so one success at
//!   startup is enough. Weight 0: FAULT while failed. Weight W > 0: W is
//!   added while OK. W < 0: W is added while failed.
//! - The director's own fast path (`track_fast_path`): unhealthy while the
//!   XDP program is off an interface it was attached to or, with
//!   `no_live_backend`, while a VIP of the instance has no live backend. Its
//!   weight works as a script's. The agent reports [`FastPathHealth`].
//! - The effective priority is the base plus those weights, clamped to
//!   1..=254; a base of 255 (address owner) never changes.
//!
//! [`Tracking`] holds the inputs as they arrive (link polls, script
//! results, fast-path reports) and, on [`Tracking::evaluate`], says what
//! changed since it last did: the effective priority
//! ([`Event::PriorityChanged`](super::fsm::Event::PriorityChanged)) and
//! FAULT ([`Event::FaultDetected`](super::fsm::Event::FaultDetected) /
//! [`Event::FaultCleared`](super::fsm::Event::FaultCleared)). Running the
//! scripts and polling the links is the caller's.

use std::net::IpAddr;

use super::packet::PRIORITY_OWNER;
use crate::config::{TrackFastPath, TrackScript, VrrpInstance};

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
fn contribution(weight: i32, ok: bool) -> i32 {
    match (weight, ok) {
        (w, true) if w > 0 => w,
        (w, false) if w < 0 => w,
        _ => 0,
    }
}

/// What the agent knows about its fast path, reported every poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FastPathHealth {
    /// Interfaces the XDP program was attached to and is not any more
    /// (detached, or replaced by another program).
    pub detached: Vec<String>,
    /// Configured VIP addresses none of whose services has a live backend.
    pub vips_without_backend: Vec<IpAddr>,
}

/// Why the fast path is unhealthy for an instance with `vips`; empty when
/// healthy (or nothing was reported yet: it starts healthy, as scripts do).
fn fast_path_problems(track: TrackFastPath, health: Option<&FastPathHealth>, vips: &[IpAddr]) -> Vec<String> {
    let Some(health) = health else { return Vec::new() };
    let mut out: Vec<String> =
        health.detached.iter().map(|i| format!("fast path: XDP program not attached to {i}")).collect();
    if track.no_live_backend {
        out.extend(
            (vips.iter())
                .filter(|v| health.vips_without_backend.contains(v))
                .map(|v| format!("fast path: VIP {v} has no live backend")),
        );
    }
    out
}

/// `track_fast_path` of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FastPath {
    track: TrackFastPath,
    /// The instance's VIPs, for `no_live_backend`.
    vips: Vec<IpAddr>,
    /// The agent's last report; `None` = healthy.
    health: Option<FastPathHealth>,
    /// The problems at the last evaluation.
    problems: Vec<String>,
}

/// Tracked interfaces whose link changed with a poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkChanges {
    pub down: Vec<String>,
    pub up: Vec<String>,
}

/// What changed since the last [`Tracking::evaluate`], for the state machine
/// in this order (the priority first, so that leaving FAULT starts with the
/// right one) and for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// The fast path's problems, when they changed (empty: healthy again).
    pub fast_path: Option<Vec<String>>,
    /// The new effective priority.
    pub priority: Option<u8>,
    /// FAULT entered (`true`) or left (`false`).
    pub fault: Option<bool>,
}

/// Everything one instance tracks, and what it last made of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracking {
    base: u8,
    /// Interfaces whose link is tracked, the instance's own first.
    interfaces: Vec<String>,
    links_down: Vec<String>,
    scripts: Vec<ScriptState>,
    fast_path: Option<FastPath>,
    /// The effective priority at the last evaluation (the base before).
    priority: u8,
    /// Why the instance is in FAULT, at the last evaluation.
    fault_reasons: Vec<String>,
}

impl Tracking {
    /// `interfaces` in the order they are reported down; `vips` for the
    /// fast path's `no_live_backend`.
    pub fn new(
        base: u8,
        interfaces: Vec<String>,
        scripts: &[TrackScript],
        fast_path: Option<TrackFastPath>,
        vips: Vec<IpAddr>,
    ) -> Self {
        Self {
            base,
            interfaces,
            links_down: Vec::new(),
            scripts: scripts.iter().map(ScriptState::new).collect(),
            fast_path: fast_path.map(|track| FastPath { track, vips, health: None, problems: Vec::new() }),
            priority: base,
            fault_reasons: Vec::new(),
        }
    }

    /// What an instance tracks: its own interface first, then its
    /// `track_interface`s, its scripts and `track_fast_path`.
    pub fn for_instance(cfg: &VrrpInstance) -> Self {
        let mut interfaces = vec![cfg.interface.clone()];
        for t in &cfg.track_interfaces {
            if !interfaces.contains(t) {
                interfaces.push(t.clone());
            }
        }
        let vips = cfg.virtual_addresses.iter().map(|v| v.address).collect();
        Self::new(cfg.priority, interfaces, &cfg.track_scripts, cfg.track_fast_path, vips)
    }

    /// The interfaces to poll.
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// A poll's result: which tracked interfaces are down now.
    pub fn links_down(&mut self, down: Vec<String>) -> LinkChanges {
        let changes = LinkChanges {
            down: down.iter().filter(|n| !self.links_down.contains(n)).cloned().collect(),
            up: self.links_down.iter().filter(|n| !down.contains(n)).cloned().collect(),
        };
        self.links_down = down;
        changes
    }

    /// One run of script `index`; the script when its state changed.
    pub fn script_result(&mut self, index: usize, success: bool) -> Option<&ScriptState> {
        let s = self.scripts.get_mut(index)?;
        s.record(success).then_some(&*s)
    }

    /// The agent's report; true when it differs from the last one. Ignored
    /// without `track_fast_path`.
    pub fn report_fast_path(&mut self, health: FastPathHealth) -> bool {
        let Some(d) = &mut self.fast_path else { return false };
        if d.health.as_ref() == Some(&health) {
            return false;
        }
        d.health = Some(health);
        true
    }

    /// The effective priority and the FAULT reasons from the current inputs,
    /// and what changed since the last call.
    pub fn evaluate(&mut self) -> Update {
        let mut update = Update::default();
        let mut extra = 0;
        let mut fast_path_reasons = Vec::new();
        if let Some(d) = &mut self.fast_path {
            let problems = fast_path_problems(d.track, d.health.as_ref(), &d.vips);
            if problems != d.problems {
                d.problems.clone_from(&problems);
                update.fast_path = Some(problems.clone());
            }
            extra = contribution(d.track.weight, problems.is_empty());
            if d.track.weight == 0 {
                fast_path_reasons = problems;
            }
        }
        let priority = effective_priority(self.base, &self.scripts, extra);
        if priority != self.priority {
            self.priority = priority;
            update.priority = Some(priority);
        }
        let mut reasons: Vec<String> = self.links_down.iter().map(|n| format!("interface {n} is down")).collect();
        reasons.extend(self.scripts.iter().filter(|s| s.faults()).map(|s| format!("track_script {} failed", s.name)));
        reasons.extend(fast_path_reasons);
        let fault = !reasons.is_empty();
        if fault != self.fault() {
            update.fault = Some(fault);
        }
        self.fault_reasons = reasons;
        update
    }

    /// The effective priority at the last evaluation.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Why the instance is in FAULT, at the last evaluation; empty when it
    /// is not.
    pub fn fault_reasons(&self) -> &[String] {
        &self.fault_reasons
    }

    /// Whether tracking puts the instance in FAULT, at the last evaluation.
    pub fn fault(&self) -> bool {
        !self.fault_reasons.is_empty()
    }
}

/// The effective priority from the base, the scripts and any other
/// contribution (the fast path's).
fn effective_priority(base: u8, scripts: &[ScriptState], extra: i32) -> u8 {
    if base == PRIORITY_OWNER {
        return base;
    }
    let sum: i32 = i32::from(base) + scripts.iter().map(ScriptState::contribution).sum::<i32>() + extra;
    sum.clamp(1, i32::from(PRIORITY_OWNER) - 1) as u8
}

#[cfg(test)]
mod tests;
