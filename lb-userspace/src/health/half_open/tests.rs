//! Half-open checks against loopback listeners, through the monitor.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpSocket},
    time::Instant,
};

use super::{Engine, NewTarget};
use crate::{
    config::CheckKind,
    health::{
        Checked, Slot, TargetStatus, Timing, Tracker,
        testutil::{LOCALHOST, check, expect_event, id, monitor, serve, serving, target},
    },
    testing::{Privilege, privileged},
};

#[tokio::test]
async fn up_on_syn_ack_down_on_reset_and_the_backend_never_accepts() {
    if !privileged(&[Privilege::NetRaw]) {
        return;
    }
    let (port, server, accepted) = serving().await;
    let mut c = check(CheckKind::TcpHalfOpen { port });
    c.fall = 2;
    let (mut monitor, mut rx) = monitor();
    monitor.start(target(1, c, false)).unwrap();
    let up = expect_event(&mut rx, Duration::from_secs(5)).await;
    assert!(up.up, "{up:?}");
    assert_eq!(up.reason, format!("SYN-ACK from 127.0.0.1:{port}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = monitor.board().get(id(1)).unwrap();
    assert!(status.checks >= 3 && status.up, "{status:?}");
    // Reset by our kernel before the handshake completed: nothing to accept.
    assert_eq!(accepted.load(Ordering::Relaxed), 0);

    server.abort();
    let _ = server.await;
    let down = expect_event(&mut rx, Duration::from_secs(5)).await;
    assert!(!down.up, "{down:?}");
    assert_eq!(down.reason, format!("connect to 127.0.0.1:{port}: connection refused"));
    let status = monitor.board().get(id(1)).unwrap();
    assert!(status.consecutive_failures >= 2, "{status:?}");
    monitor.shutdown().await;
}

#[tokio::test]
async fn many_targets_of_one_port_each_get_their_own_answer() {
    if !privileged(&[Privilege::NetRaw]) {
        return;
    }
    let (port, _server, _) = serving().await;
    let (mut monitor, mut rx) = monitor();
    // More targets than source ports, all due in the same tick.
    let n = 40;
    for b in 0..n {
        let mut c = check(CheckKind::TcpHalfOpen { port });
        c.interval = Duration::from_millis(20);
        monitor.start(target(b, c, false)).unwrap();
    }
    let mut up = std::collections::HashSet::new();
    while up.len() < n as usize {
        let event = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(event.up, "{event:?}");
        up.insert(event.target);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in monitor.board().all() {
        assert!(s.up && s.checks >= 5, "{s:?}");
    }
    monitor.shutdown().await;
}

fn register(handle: &super::EngineHandle, backend: u32, port: u16) -> (super::Registration, Slot) {
    let status: Slot = Arc::new(Mutex::new(TargetStatus::starting(id(backend), LOCALHOST, "tcp-half-open", true)));
    let c = check(CheckKind::TcpHalfOpen { port });
    let registration = handle.add(NewTarget {
        target: Checked { id: id(backend), address: LOCALHOST, kind: "tcp-half-open", heads_up: false },
        addr: SocketAddr::new(LOCALHOST, port),
        timeout: c.timeout,
        tracker: Tracker::new(Timing::from(&c), true),
        status: status.clone(),
        first: Instant::now(),
    });
    (registration, status)
}

#[tokio::test]
async fn a_dropped_registration_stops_its_checks_and_its_slot_serves_the_next() {
    if !privileged(&[Privilege::NetRaw]) {
        return;
    }
    let (port, _server, _) = serving().await;
    let (events, _rx) = tokio::sync::mpsc::channel(16);
    let mut engine = Engine::start(events);
    let handle = engine.open(false).unwrap();
    let (registration, status) = register(&handle, 1, port);
    let checks = |s: &Slot| s.lock().unwrap().checks;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(checks(&status) >= 3, "{:?}", status.lock().unwrap());
    drop(registration);
    // The next target takes the freed slot while the first one's schedule
    // and deadline are still on the timelines: they must not drive it.
    let (_next, next) = register(&handle, 2, port);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped_at = checks(&status);
    let next_from = checks(&next);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(checks(&status), stopped_at);
    // Every 50 ms: about 10 in 500 ms, not twice that.
    let done = checks(&next) - next_from;
    assert!((2..=13).contains(&done), "{done} checks in 500 ms");
}

#[tokio::test]
async fn a_backend_that_never_answers_times_out() {
    if !privileged(&[Privilege::NetRaw]) {
        return;
    }
    // A listener whose accept queue is full drops every SYN.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(LOCALHOST, 0)).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let (mut monitor, _rx) = monitor();
    let mut c = check(CheckKind::TcpHalfOpen { port: addr.port() });
    c.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let result = monitor.probe_once(LOCALHOST, &c).await.unwrap();
    assert!(!result.ok, "{result:?}");
    assert_eq!(&*result.reason, format!("timeout after 300ms waiting for a SYN-ACK from {addr}"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn ipv6_up_and_refused() {
    if !privileged(&[Privilege::NetRaw]) {
        return;
    }
    let Ok(listener) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let (server, _) = serve(listener);
    let (mut monitor, _rx) = monitor();
    let c = check(CheckKind::TcpHalfOpen { port });
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let ok = monitor.probe_once(v6, &c).await.unwrap();
    assert!(ok.ok, "{ok:?}");
    assert_eq!(&*ok.reason, format!("SYN-ACK from [::1]:{port}"));
    server.abort();
    let _ = server.await;
    let refused = monitor.probe_once(v6, &c).await.unwrap();
    assert_eq!(&*refused.reason, format!("connect to [::1]:{port}: connection refused"));
}
