//! `lb lab`, the demo `cargo xtask run` starts, run for a short while with
//! the real agent: every backend answers, the stopped one is taken out by
//! its health check within interval x fall + 1 s and comes back when it
//! returns, and everything the lab created is gone afterwards.

use std::time::Duration;

use lb_tests::privileges;
use lb_userspace::lab::{self, LabOptions};

use crate::support;

#[test]
fn lab_forwards_fails_over_and_cleans_up() {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return };
    let report = lab::run(LabOptions {
        duration: Some(Duration::from_secs(12)),
        interval: Duration::from_secs(3),
        stop_at: Duration::from_secs(3),
        restart_at: Duration::from_secs(7),
        ..LabOptions::new(env!("CARGO_BIN_EXE_lb-under-test").into())
    })
    .expect("the lab runs");
    let total: u64 = report.answers.iter().sum();
    assert!(total >= 150, "the client got answers: {report:?}");
    assert!(report.answers.iter().all(|&a| a > 0), "every backend answered: {report:?}");
    assert_eq!(report.failed_after_detection, 0, "no connection failed once the check took b2 out: {report:?}");
    assert!(report.answers_after_restart > 0, "b2 came back: {report:?}");
    assert!(report.forwarded >= total * 3, "the fast path forwarded the client's packets: {report:?}");
    let left: Vec<String> = String::from_utf8_lossy(
        &std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip netns list").stdout,
    )
    .lines()
    .filter(|l| l.starts_with(&format!("{}{}-", lab::PREFIX, std::process::id())))
    .map(str::to_owned)
    .collect();
    assert!(left.is_empty(), "the lab removed its namespaces: {left:?}");
}
