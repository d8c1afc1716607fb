//! Scale-out behind ECMP ([`lb_tests::ecmp`]): three active directors,
//! each announcing the VIP over BGP through its BIRD, a router spreading
//! 150 long-lived TCP connections over them by a 5-tuple hash, and a
//! director leaving and joining. Every director builds the same Maglev
//! ring, so a flow the router moves to another director still reaches its
//! backend: nothing breaks when the backends stay the same.
//!
//! Figures go to stderr as one line per case, `ecmp: CASE key=value ...`.
//! Needs root and BIRD 2 (Debian bird2, which `cargo xtask test` installs).

use std::{
    sync::{Mutex, PoisonError},
    thread,
    time::Duration,
};

use anyhow::ensure;
use lb_tests::{
    agent_proc::Lb,
    ecmp::{self, DIRECTORS, EcmpLab, Outcome, STATE_LIMIT},
    privileges,
};
use lb_userspace::lab;

use crate::support;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");

/// One lab at a time: both tests here build three directors, more than a
/// 2-CPU machine carries twice, and a lab's cleanup counts every namespace
/// of the process as its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn say(case: &str, o: &Outcome) {
    eprintln!("ecmp: {case} {}", o.figures());
}

/// Traffic spread over every director: each got connections by the
/// router's hash and forwarded frames in the second before the change.
fn check_spread(o: &Outcome) -> anyhow::Result<()> {
    ensure!(o.spread().iter().all(|&n| n > 0), "the router did not spread the connections: {}", o.figures());
    ensure!(o.forwarded.iter().all(|f| f.is_some_and(|n| n > 0)), "a director forwarded nothing: {}", o.figures());
    Ok(())
}

#[test]
fn directors_leave_and_join_behind_ecmp() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let mut lab = EcmpLab::new(Lb::new(LB), "leave-join")?;
    let result = scenario(&mut lab);
    if result.is_err() {
        for d in 0..DIRECTORS {
            eprintln!("director {}'s agent log (tail):\n{}", lab.director(d).tag, lab.director(d).log_tail(40));
        }
    }
    let finished = lab.finish();
    result?;
    finished
}

fn scenario(lab: &mut EcmpLab) -> anyhow::Result<()> {
    lab.start_all()?;

    // 1. A clean stop withdraws the route before the fast path goes: the
    // router moves the director's flows to the others, whose rings send
    // them to the same backends.
    let leave = ecmp::leave(lab, 0)?;
    say("leave", &leave);
    check_spread(&leave)?;
    ensure!(leave.moved() > 0, "no connection changed director: {}", leave.figures());
    ensure!(leave.resets == 0 && leave.stalls == 0, "a clean stop broke or stalled connections: {}", leave.figures());

    // 2. The director back: it announces once its fast path is attached
    // and its backends are up, and takes flows it has no state for.
    let join = ecmp::join(lab, 0)?;
    say("join", &join);
    ensure!(join.moved() > 0, "no connection changed director: {}", join.figures());
    ensure!(join.resets == 0, "a director joining reset connections: {}", join.figures());

    // 3. The agent SIGKILLed: its route stays in the kernel table, so BIRD
    // keeps announcing it, and its pinned fast path keeps forwarding with
    // its flow table and ring as they were. Expected: 0 resets and 0
    // stalls. A director whose fast path went too (the machine lost) would
    // be withdrawn only when the router's BGP hold time (3 s here) expires,
    // and its flows would stall that long; a dead agent also no longer
    // withdraws on a backend failure, until systemd starts it again.
    let killed = ecmp::across(lab, |lab| {
        lab.kill_agent(2)?;
        thread::sleep(Duration::from_secs(1));
        let hops = lab.next_hops()?;
        ensure!(hops.len() == DIRECTORS, "the killed agent's route went: the router uses {hops:?}");
        Ok(())
    })?;
    say("kill", &killed);
    eprintln!(
        "ecmp: kill: {} reset, {} stalled beyond {:?} (expected 0 and 0)",
        killed.resets,
        killed.stalls,
        ecmp::STALL
    );
    lab.start_agent(2)?;
    lab.wait_next_hops(&[0, 1, 2], STATE_LIMIT)?;

    // 4. A backend added on every director while the connections run, then
    // a director withdrawn. Each director keeps its flows on their old
    // backends (flow table), but the flows the router moves land on a
    // director that never saw them and whose ring is the new one: those
    // whose ring answer changed (about a quarter, the new backend's share)
    // are sent to another backend, which resets them. Only flows that
    // changed director can break. What would remove them: syncing flow
    // state between directors (each learns the others' flows), or a second
    // lookup in the ring as it was before the change for packets that are
    // not SYNs, as Katran's and GLB's second-chance lookups do.
    let added = ecmp::across(lab, |lab| {
        lab.add_backend()?;
        thread::sleep(Duration::from_secs(1));
        lab.stop_agent(1)?;
        lab.wait_next_hops(&[0, 2], STATE_LIMIT).map(drop)
    })?;
    say("add-then-leave", &added);
    eprintln!(
        "ecmp: add-then-leave: {} of {} moved connections reset (the director that left had {})",
        added.resets,
        added.moved(),
        added.spread()[1]
    );
    ensure!(added.resets <= added.moved(), "more resets than connections that changed director: {}", added.figures());
    Ok(())
}

/// `lb lab --ecmp`, as `cargo xtask run -- --ecmp` starts it, in its short
/// form: connections spread over three directors, one leaves, none breaks,
/// and everything the lab created is gone afterwards.
#[test]
fn lab_ecmp_spreads_and_loses_nothing_when_a_director_leaves() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let report = lab::ecmp::run(&lab::ecmp::EcmpOptions::short(LB.into()))?;
    ensure!(report.spread.iter().all(|&n| n > 0), "connections on every director: {report:?}");
    ensure!(report.broken == 0, "no connection broke: {report:?}");
    ensure!(report.moved > 0, "the leaving director's connections moved: {report:?}");
    let prefix = format!("{}{}-", lab::PREFIX, std::process::id());
    let left: Vec<String> =
        String::from_utf8_lossy(&std::process::Command::new("ip").args(["netns", "list"]).output()?.stdout)
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_owned)
            .collect();
    ensure!(left.is_empty(), "the lab removed its namespaces: {left:?}");
    Ok(())
}
