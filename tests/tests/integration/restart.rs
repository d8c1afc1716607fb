//! The fast path across agent restarts, under load: real TCP traffic
//! through the VIP all along ([`lb_tests::traffic`]: long-lived connections
//! echoing a line every 30 ms and a loop of short HTTP requests) while the
//! agent of a director without a peer is SIGKILLed and started again, or
//! handed over with `lb restart` to an agent that loads the other program
//! (`lb run --trace`). Nothing may be lost: no failed request, no broken
//! connection (a flow moved to another backend would be reset by it), and
//! the counters go on from where they were. A plain stop (SIGTERM) removes
//! every pin and detaches.
//!
//! Each test pins into a bpffs of its own, mounted in a temporary
//! directory and unmounted at the end, also when the test fails. Figures go
//! to stderr as one line `restart: NAME key=value ...`. Needs root.

use std::{
    sync::{Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use lb_tests::{
    agent_proc::{Bpffs, xdp_on},
    bench::restart::run_args,
    director_pair::{A, DirectorPair, IF, Lb, Options, STATE_LIMIT, Vrrp, all_up, vrrp_state},
    privileges,
    traffic::{self, Report},
};
use serde_json::Value;

use crate::support;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
const VRRP: Vrrp = Vrrp::V3_100MS;
const PRIORITY: u8 = 150;
/// How long traffic runs before and after the restart, and how long the
/// fast path runs with no agent at all.
const STEADY: Duration = Duration::from_millis(1500);
const ORPHANED: Duration = Duration::from_millis(500);

/// One pair at a time: a pair's cleanup counts every namespace of the
/// process as its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A pair whose director A pins into `pins`; runs `scenario`, prints the
/// agent's log if it failed, tears everything down.
fn with_director(
    tag: &'static str,
    pins: &Bpffs,
    scenario: impl FnOnce(&mut DirectorPair) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let lb = Lb { run_args: run_args(pins, &[]), ..Lb::new(LB) };
    let mut w = DirectorPair::new(lb, Options { tag, udp_port: None })?;
    let result = scenario(&mut w);
    if result.is_err() {
        let log = log(&w);
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("[{tag}] director A's agent log (tail):\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    let finished = w.finish();
    result?;
    finished
}

/// Starts A's agent and waits until it is master with every backend up.
fn start(w: &mut DirectorPair) -> anyhow::Result<Duration> {
    let took = w.start_agent(A, PRIORITY, VRRP)?;
    w.wait(A, "A MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
    w.wait(A, "A's backends up", STATE_LIMIT, all_up)?;
    Ok(took)
}
/// Forwarded packets, from `lb status`'s counters (name, packets).
fn tx(s: &Value) -> u64 {
    let counters = s["counters"].as_array().map(Vec::as_slice).unwrap_or_default();
    counters.iter().find(|c| c[0] == "tx").and_then(|c| c[1].as_u64()).unwrap_or(0)
}

/// Director A's agent log, whatever bytes the trace wrote into it.
fn log(w: &DirectorPair) -> String {
    let path = w.config_path(A).with_file_name("agent-a.log");
    String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned()
}

/// What every restart must keep: no request failed, no connection broke,
/// traffic went on after it, and the forwarded-packet counter went on from
/// where it was.
fn check_nothing_lost(
    report: &Report,
    tx_before: u64,
    tx_after: u64,
    progress_at_restart: (u64, u64),
) -> anyhow::Result<()> {
    ensure!(report.requests_failed == 0, "requests failed: {report}");
    ensure!(report.connections_broken == 0, "connections broke: {report}");
    ensure!(
        report.lines_ok > progress_at_restart.0 && report.requests_ok > progress_at_restart.1,
        "no traffic after the restart: {report}"
    );
    ensure!(tx_after > tx_before, "the tx counter did not go on (before {tx_before}, after {tx_after})");
    Ok(())
}

#[test]
fn agent_sigkilled_under_load_on_a_director_without_a_peer_loses_nothing() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let pins = Bpffs::new("sigkill")?;
    with_director("restart-kill", &pins, |w| {
        start(w)?;
        let traffic = w.start_traffic(&traffic::Options::default())?;
        thread::sleep(STEADY);
        let tx_before = tx(&w.status(A)?);
        let pid = w.agent_pid(A).context("A's agent")?;
        // SAFETY: our child's pid; it is reaped below, not before.
        ensure!(unsafe { libc::kill(pid, libc::SIGKILL) } == 0, "SIGKILL: {}", std::io::Error::last_os_error());
        let (status, _) = w.terminate(A, Duration::from_secs(5))?;
        ensure!(status.code().is_none(), "the agent was not killed: {status}");
        let progress_at_restart = traffic.progress();
        ensure!(!pins.pins().is_empty(), "SIGKILL left no pins");
        ensure!(xdp_on(w.director_ns(A), IF)?.is_some(), "the program went with the agent");
        thread::sleep(ORPHANED);
        let restarted = Instant::now();
        let took = start(w)?;
        let ready = restarted.elapsed();
        thread::sleep(STEADY);
        let tx_after = tx(&w.status(A)?);
        let report = traffic.stop()?;
        let log = log(w);
        eprintln!(
            "restart: sigkill {} attach_ms={} ready_ms={} tx_before={tx_before} tx_after={tx_after}",
            report.figures(),
            took.as_millis(),
            ready.as_millis()
        );
        ensure!(log.contains("fast path adopted"), "the new agent did not adopt the fast path:\n{log}");
        check_nothing_lost(&report, tx_before, tx_after, progress_at_restart)
    })?;
    ensure!(pins.pins().is_empty(), "pins left after the final stop: {:?}", pins.pins());
    Ok(())
}

#[test]
fn handover_to_an_agent_with_another_program_loses_nothing() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let pins = Bpffs::new("upgrade")?;
    with_director("restart-upgrade", &pins, |w| {
        start(w)?;
        let traffic = w.start_traffic(&traffic::Options::default())?;
        thread::sleep(STEADY);
        let tx_before = tx(&w.status(A)?);
        let socket = w.socket_path(A).to_str().context("socket path")?.to_owned();
        Lb::new(LB).ok(&["restart", "--socket", &socket])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.running(A) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let (status, killed) = w.terminate(A, Duration::from_secs(1))?;
        ensure!(!killed && status.code() == Some(75), "lb restart: the agent ended with {status} (SIGKILL: {killed})");
        let progress_at_restart = traffic.progress();
        ensure!(xdp_on(w.director_ns(A), IF)?.is_some(), "the handover detached the program");
        // The new build: the traced program in place of the plain one.
        w.lb_mut().run_args = run_args(&pins, &["--trace"]);
        let took = start(w)?;
        thread::sleep(STEADY);
        let tx_after = tx(&w.status(A)?);
        let report = traffic.stop()?;
        let log = log(w);
        eprintln!(
            "restart: upgrade {} attach_ms={} tx_before={tx_before} tx_after={tx_after}",
            report.figures(),
            took.as_millis()
        );
        ensure!(log.contains("fast path adopted"), "the new agent did not adopt the fast path:\n{log}");
        ensure!(log.contains("lb::trace"), "the traced program is not the one running:\n{log}");
        check_nothing_lost(&report, tx_before, tx_after, progress_at_restart)
    })?;
    ensure!(pins.pins().is_empty(), "pins left after the final stop: {:?}", pins.pins());
    Ok(())
}

#[test]
fn a_plain_stop_removes_the_pins_and_detaches() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let pins = Bpffs::new("stop")?;
    with_director("restart-stop", &pins, |w| {
        start(w)?;
        let pinned = pins.pins();
        ensure!(pinned.iter().any(|p| p.to_string_lossy().contains("links/")), "no link pinned: {pinned:?}");
        ensure!(pinned.iter().any(|p| p.ends_with("VIP_CTL")), "no map pinned: {pinned:?}");
        let (status, killed) = w.terminate(A, Duration::from_secs(10))?;
        ensure!(status.success() && !killed, "SIGTERM: the agent ended with {status} (SIGKILL: {killed})");
        ensure!(pins.pins().is_empty(), "pins left after SIGTERM: {:?}", pins.pins());
        ensure!(xdp_on(w.director_ns(A), IF)?.is_none(), "still attached after SIGTERM");
        Ok(())
    })
}
