//! VRRP across an agent restart: directors A (priority 150, master) and B
//! (priority 100) run VRRP v3 at 100 ms, each pinning its fast path into a
//! directory of its own in a bpffs of the test's. With `lb restart` A's
//! agent exits leaving the fast path and the VIP in place; the new agent
//! adopts the fast path, finds the VIP and resumes as master at once, so B
//! never takes over and the client's traffic goes on. After a plain stop
//! (SIGTERM: priority 0, pins and VIP removed) the new agent starts cold:
//! B takes over, then A preempts it back, two changes of master.
//!
//! Figures go to stderr as one line `restart_vrrp: NAME master_changes=N
//! gap_ms=M ...`. Needs root.

use std::{
    ffi::OsString,
    sync::{Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use lb_tests::{
    agent_proc::Bpffs,
    director_pair::{A, B, DirectorPair, Lb, Options, STATE_LIMIT, Vrrp, all_up, vrrp_state},
    privileges,
    traffic::{self, Report},
};

use crate::support;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
const VRRP: Vrrp = Vrrp::V3_100MS;
const PRIORITIES: [u8; 2] = [150, 100];
/// How long traffic runs before and after the restart.
const STEADY: Duration = Duration::from_millis(1500);

/// One pair at a time: a pair's cleanup counts every namespace of the
/// process as its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `lb run` arguments that pin director `d`'s fast path into its own
/// directory of `pins`.
fn pin_args(pins: &Bpffs, d: usize) -> Vec<OsString> {
    vec![OsString::from("--pin-dir"), pins.path().join(["a", "b"][d]).into_os_string()]
}

/// A pair with A master and B backup, both agents running; runs
/// `scenario`, prints both agents' logs if it failed, tears everything down.
fn with_pair(
    tag: &'static str,
    pins: &Bpffs,
    scenario: impl FnOnce(&mut DirectorPair) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let mut w = DirectorPair::new(Lb::new(LB), Options { tag, udp_port: None })?;
    let result = start(&mut w, pins, A).and_then(|()| {
        w.wait(A, "A MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
        start(&mut w, pins, B)?;
        w.wait(B, "B BACKUP", STATE_LIMIT, |s| vrrp_state(s) == "BACKUP")?;
        w.wait(A, "A's backends up", STATE_LIMIT, all_up)?;
        scenario(&mut w)
    });
    if result.is_err() {
        for d in [A, B] {
            let log = log(&w, d);
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            eprintln!("[{tag}] director {}'s agent log (tail):\n{tail}", ["A", "B"][d]);
        }
    }
    let finished = w.finish();
    result?;
    finished?;
    ensure!(pins.pins().is_empty(), "pins left after the final stop: {:?}", pins.pins());
    Ok(())
}

/// Starts director `d`'s agent with its own pin directory (no waiting for a state).
fn start(w: &mut DirectorPair, pins: &Bpffs, d: usize) -> anyhow::Result<()> {
    w.lb_mut().run_args = pin_args(pins, d);
    w.start_agent(d, PRIORITIES[d], VRRP)?;
    Ok(())
}

fn log(w: &DirectorPair, d: usize) -> String {
    String::from_utf8_lossy(&std::fs::read(w.log_path(d)).unwrap_or_default()).into_owned()
}

/// How often director `d`'s instance entered MASTER in the log of its latest start.
fn became_master(w: &DirectorPair, d: usize) -> usize {
    log(w, d).lines().filter(|l| l.contains("-> MASTER")).count()
}
/// The longest the client saw nothing: between answered requests or echoed lines.
fn gap(report: &Report) -> Duration {
    report.longest_request_gap.max(report.longest_line_gap())
}

#[test]
fn handover_keeps_the_master() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let pins = Bpffs::new("vrrp-handover")?;
    with_pair("restart-vrrp-handover", &pins, |w| {
        let traffic = w.start_traffic(&traffic::Options::default())?;
        thread::sleep(STEADY);
        let socket = w.socket_path(A).to_str().context("socket path")?.to_owned();
        Lb::new(LB).ok(&["restart", "--socket", &socket])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.running(A) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let (status, killed) = w.terminate(A, Duration::from_secs(1))?;
        ensure!(!killed && status.code() == Some(75), "lb restart: the agent ended with {status} (SIGKILL: {killed})");
        let restarted = Instant::now();
        start(w, &pins, A)?;
        let attached = restarted.elapsed();
        w.wait(A, "A MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
        thread::sleep(STEADY);
        ensure!(vrrp_state(&w.status(B)?) == "BACKUP", "B is not BACKUP at the end");
        let report = traffic.stop()?;
        let b = became_master(w, B);
        eprintln!(
            "restart_vrrp: handover master_changes={} gap_ms={} attach_ms={} {}",
            2 * b,
            gap(&report).as_millis(),
            attached.as_millis(),
            report.figures()
        );
        let a_log = log(w, A);
        ensure!(a_log.contains("fast path adopted"), "the new agent did not adopt the fast path");
        ensure!(a_log.contains("resuming as master"), "the new agent did not resume as master");
        ensure!(b == 0, "B became master {b} time(s)");
        ensure!(report.requests_failed == 0, "requests failed: {report}");
        ensure!(report.connections_broken == 0, "connections broke: {report}");
        Ok(())
    })
}

#[test]
fn plain_stop_and_start_moves_the_master_twice() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let pins = Bpffs::new("vrrp-cold")?;
    with_pair("restart-vrrp-cold", &pins, |w| {
        let traffic = w.start_traffic(&traffic::Options::default())?;
        thread::sleep(STEADY);
        let (status, killed) = w.terminate(A, Duration::from_secs(10))?;
        ensure!(!killed && status.success(), "SIGTERM: the agent ended with {status} (SIGKILL: {killed})");
        w.wait(B, "B MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
        start(w, &pins, A)?;
        w.wait(A, "A MASTER again", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
        w.wait(B, "B BACKUP again", STATE_LIMIT, |s| vrrp_state(s) == "BACKUP")?;
        thread::sleep(STEADY);
        let report = traffic.stop()?;
        let b = became_master(w, B);
        eprintln!(
            "restart_vrrp: cold master_changes={} gap_ms={} {}",
            2 * b,
            gap(&report).as_millis(),
            report.figures()
        );
        ensure!(!log(w, A).contains("resuming as master"), "a cold start resumed as master");
        ensure!(b == 1, "B became master {b} time(s), not once");
        Ok(())
    })
}
