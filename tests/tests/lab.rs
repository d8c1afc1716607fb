//! `lb lab`, the demo `cargo xtask run` starts, run for a short while: the
//! client's connections are answered by every backend, none by a drained
//! one (but for connections in flight at the swap), and everything the lab
//! created is gone afterwards.

use std::time::Duration;

use lb_userspace::lab::{self, LabOptions};

#[test]
fn lab_forwards_drains_and_cleans_up() {
    let report = lab::run(LabOptions {
        duration: Some(Duration::from_secs(9)),
        interval: Duration::from_secs(3),
        drain_at: Duration::from_secs(3),
        restore_at: Duration::from_secs(6),
    })
    .expect("the lab runs");
    let total: u64 = report.answers.iter().sum();
    assert!(total >= 100, "the client got answers: {report:?}");
    assert!(report.answers.iter().all(|&a| a > 0), "every backend answered: {report:?}");
    assert!(report.failed * 50 <= total, "at most 2% of connections failed: {report:?}");
    assert!(report.answers_while_drained <= 3, "a drained backend gets no new connections: {report:?}");
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
