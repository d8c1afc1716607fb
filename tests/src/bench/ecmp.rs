//! Scale-out behind ECMP ([`crate::ecmp`]): how fast a director's
//! withdrawal reaches the router's forwarding table, and what 150
//! long-lived connections lose when a director leaves (clean stop) and
//! comes back.

use std::time::Duration;

use crate::{
    agent_proc::Lb,
    bench::median,
    ecmp::{self, DIRECTORS, EcmpLab, Outcome},
};

/// The JSON keys this part fills.
pub const KEYS: &[&str] = &["bgp_withdraw_ms", "ecmp_resets_leave", "ecmp_resets_join"];
/// From the agent's decision to withdraw to the router no longer using
/// the director.
pub const WITHDRAW_MAX_MS: f64 = 50.0;

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Withdrawals timed, round-robin over the directors.
    pub rounds: usize,
}

#[derive(Debug)]
pub struct Figures {
    /// Each round's withdrawal time, in milliseconds.
    pub withdraw_ms: Vec<f64>,
    pub leave: Outcome,
    pub join: Outcome,
}

impl Figures {
    pub fn withdraw_median_ms(&self) -> f64 {
        median(&self.withdraw_ms)
    }
}

/// Builds the lab with agents run as `lb`, times `rounds` withdrawals (a
/// SIGTERM, the instant the agent decides to withdraw, to the first route
/// change after which the router's route lacks the director), then
/// counts what the connections lose across a leave and a join.
pub fn run(lb: &Lb, o: &Options, say: &mut dyn FnMut(String)) -> anyhow::Result<Figures> {
    let mut lab = EcmpLab::new(lb.clone(), "bench")?;
    let result = measure(&mut lab, o, say);
    if result.is_err() {
        for d in 0..DIRECTORS {
            say(format!("  director {}'s agent log (tail):\n{}", lab.director(d).tag, lab.director(d).log_tail(20)));
        }
    }
    let finished = lab.finish();
    let figures = result?;
    finished?;
    Ok(figures)
}

fn measure(lab: &mut EcmpLab, o: &Options, say: &mut dyn FnMut(String)) -> anyhow::Result<Figures> {
    lab.start_all()?;
    let mut withdraw_ms = Vec::new();
    for round in 0..o.rounds {
        let d = round % DIRECTORS;
        let took = ecmp::withdraw_time(lab, d)?;
        say(format!(
            "  round {}: d{} withdrawn from the router's FIB {:.1} ms after its SIGTERM",
            round + 1,
            d + 1,
            ms(took)
        ));
        withdraw_ms.push(ms(took));
    }
    let leave = ecmp::leave(lab, 0)?;
    say(format!("  leave (d1 stops cleanly): {}", leave.figures()));
    let join = ecmp::join(lab, 0)?;
    say(format!("  join (d1 back): {}", join.figures()));
    Ok(Figures { withdraw_ms, leave, join })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
