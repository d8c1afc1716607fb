//! Tests of the monitor as a whole: reloads, hostile backends next to
//! healthy ones, and a scale smoke test. Every wait is bounded.

use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

use tokio::{
    net::TcpListener,
    task::JoinHandle,
    time::{self, Instant},
};

use super::{
    Monitor, MonitorOptions, Target,
    testutil::{LOCALHOST, Reply, check, expect_event, http_server, id, monitor, response, target, wait_status},
};
use crate::config::{BodyMatch, CheckKind, HttpCheck, StatusCodes};

/// Accepts and drops connections until aborted.
async fn tcp_listener() -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    (port, task)
}

fn http(port: u16, body: BodyMatch) -> CheckKind {
    CheckKind::Http(HttpCheck { port, path: String::from("/"), host: None, status: StatusCodes::default(), body })
}

#[tokio::test]
async fn sync_keeps_unchanged_targets_restarts_changed_ones_and_stops_missing_ones() {
    let (port, _listener) = tcp_listener().await;
    let (other_port, _other) = tcp_listener().await;
    let (mut monitor, _rx) = monitor();
    let targets: Vec<Target> = (1..=3).map(|b| target(b, check(CheckKind::Tcp { port }), true)).collect();
    monitor.sync(targets.clone()).unwrap();
    for b in 1..=3 {
        wait_status(&monitor, id(b), Duration::from_secs(5), |s| s.checks >= 3).await;
    }

    let mut changed = targets[1].clone();
    changed.check.kind = CheckKind::Tcp { port: other_port };
    monitor.sync([targets[0].clone(), changed]).unwrap();
    let kept = monitor.board().get(id(1)).unwrap();
    assert!(kept.checks >= 3, "unchanged target keeps its counters: {kept:?}");
    let restarted = monitor.board().get(id(2)).unwrap();
    assert!(restarted.checks < 3, "changed target starts over: {restarted:?}");
    assert!(monitor.board().get(id(3)).is_none());
    assert_eq!(monitor.targets().count(), 2);

    let reason = format!("connected to 127.0.0.1:{other_port}");
    wait_status(&monitor, id(2), Duration::from_secs(5), |s| s.last.as_ref().is_some_and(|l| *l.reason == reason))
        .await;

    // A bad target refuses the whole reload.
    let mut bad = targets[0].clone();
    bad.check.kind = CheckKind::Script(crate::config::ScriptCheck {
        command: crate::config::ScriptCommand::Argv(vec![String::from("/bin/true")]),
        user: String::from("no-such-user-lb-test"),
        dynamic_weight: false,
        command_at: Default::default(),
    });
    assert!(monitor.sync([bad]).is_err());
    assert_eq!(monitor.targets().count(), 2);
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_backends_fail_within_their_timeout_without_delaying_others() {
    const TIMEOUT: Duration = Duration::from_millis(400);
    const HUGE: usize = 64 << 20;
    let silent = http_server(Reply::Silent, None).await;
    let trickle = http_server(
        Reply::Trickle { bytes: response("200 OK", b"slow but fine"), every: Duration::from_millis(100) },
        None,
    )
    .await;
    let huge_head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    let huge = http_server(Reply::Huge { head: huge_head, len: HUGE }, None).await;
    let (healthy_port, _healthy) = tcp_listener().await;

    let hostile = |backend, kind| {
        let mut c = check(kind);
        c.timeout = TIMEOUT;
        c.interval = Duration::from_millis(200);
        target(backend, c, true)
    };
    let (mut monitor, mut rx) = Monitor::new(MonitorOptions::default());
    monitor.start(hostile(1, http(silent.port, BodyMatch::Any))).unwrap();
    monitor.start(hostile(2, http(trickle.port, BodyMatch::Any))).unwrap();
    monitor.start(hostile(3, http(huge.port, BodyMatch::Md5([0; 16])))).unwrap();
    monitor.start(hostile(4, http(huge.port, BodyMatch::Any))).unwrap();
    // Fast and healthy: its cadence must not suffer from the others.
    monitor.start(target(5, check(CheckKind::Tcp { port: healthy_port }), true)).unwrap();
    let started = Instant::now();

    let mut downs = HashMap::new();
    while downs.len() < 3 {
        let event = expect_event(&mut rx, Duration::from_secs(3)).await;
        assert!(!event.up, "{event:?}");
        downs.insert(event.target.backend, (event.reason, started.elapsed()));
    }
    for backend in [1, 2, 3] {
        let (reason, at) = &downs[&backend];
        // One timeout, plus generous slack for a loaded machine; never stuck.
        assert!(*at < TIMEOUT + Duration::from_secs(1), "backend {backend} decided after {at:?}: {reason}");
    }
    let silent_port = silent.port;
    assert_eq!(
        downs[&1].0,
        format!("timeout after 400ms waiting for the response headers from 127.0.0.1:{silent_port} (0 bytes received)")
    );
    assert!(downs[&2].0.starts_with("timeout after 400ms waiting for the response headers"), "{}", downs[&2].0);
    assert_eq!(downs[&3].0, "body larger than 1 MiB");

    // Let the round go on for a while, then look at the cadence.
    time::sleep_until(started + Duration::from_secs(2)).await;
    let elapsed = started.elapsed();
    let healthy = monitor.board().get(id(5)).unwrap();
    // 50 ms interval: ~40 attempts in 2 s; half of that is already a stall.
    assert!(healthy.checks >= 20, "healthy check ran only {} times in {elapsed:?}", healthy.checks);
    assert!(healthy.up);
    let status_only = monitor.board().get(id(4)).unwrap();
    assert!(status_only.up, "{status_only:?}");
    let last = status_only.last.unwrap();
    assert!(last.ok && last.took < TIMEOUT, "{last:?}");
    // Neither the status-only check nor the digest check downloaded the body:
    // what the server got rid of is the cap plus socket buffers, not 64 MiB.
    let sent = huge.most_sent.load(Ordering::Relaxed);
    assert!(sent < HUGE / 2, "server sent {sent} bytes on one connection");
    assert!(rx.try_recv().is_err(), "no other state change");
    monitor.shutdown().await;
}

#[tokio::test]
async fn a_declared_oversized_body_fails_the_digest_without_reading_it() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n".to_vec();
    let server = http_server(Reply::Huge { head, len: 64 << 20 }, None).await;
    let (mut monitor, _rx) = monitor();
    let result = monitor.probe_once(LOCALHOST, &check(http(server.port, BodyMatch::Md5([0; 16])))).await.unwrap();
    assert_eq!(&*result.reason, "body larger than 1 MiB (Content-Length: 67108864)");
}

/// Not a benchmark: 2000 targets at a 1 s interval for ~3 s must run
/// without a single failure against local listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_smoke_two_thousand_targets() {
    const TARGETS: u32 = 2000;
    let mut listeners = Vec::new();
    for _ in 0..4 {
        listeners.push(tcp_listener().await);
    }
    let web = http_server(Reply::Bytes(response("200 OK", b"ok")), None).await;
    let targets = (0..TARGETS).map(|b| {
        let kind = if b % 10 == 0 {
            http(web.port, BodyMatch::Contains(String::from("ok")))
        } else {
            CheckKind::Tcp { port: listeners[b as usize % listeners.len()].0 }
        };
        let mut c = check(kind);
        c.interval = Duration::from_secs(1);
        c.delay_before_retry = Duration::from_secs(1);
        c.timeout = Duration::from_secs(2);
        c.warmup = Duration::from_secs(1);
        target(b, c, true)
    });
    let (mut monitor, mut rx) = monitor();
    let started = Instant::now();
    monitor.sync(targets).unwrap();
    let board = monitor.board();
    let first_round = loop {
        if board.all().iter().all(|s| s.checks >= 1) {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "first round did not finish");
        time::sleep(Duration::from_millis(20)).await;
    };
    time::sleep_until(started + Duration::from_secs(3)).await;
    let all = board.all();
    let elapsed = started.elapsed();
    let checks: u64 = all.iter().map(|s| s.checks).sum();
    let slowest = all.iter().filter_map(|s| s.last.as_ref().map(|l| l.took)).max().unwrap_or_default();
    eprintln!(
        "{TARGETS} targets: first round (1 s warm-up) done after {first_round:?}; {checks} checks in {elapsed:?} \
         ({:.0}/s); slowest last attempt {slowest:?}",
        checks as f64 / elapsed.as_secs_f64()
    );
    let failed: Vec<_> = all.iter().filter(|s| s.last.as_ref().is_some_and(|l| !l.ok)).take(5).collect();
    assert!(failed.is_empty(), "failures: {failed:?}");
    assert!(rx.try_recv().is_err(), "no state change expected");
    monitor.shutdown().await;
}
