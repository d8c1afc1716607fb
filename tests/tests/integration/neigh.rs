//! The neighbour watcher against a real kernel: a director namespace and a
//! backend namespace on a veth pair. The watcher runs in the director's
//! namespace and must learn the backend's MAC with no traffic from the test,
//! follow it to a new MAC although the backend announces nothing, report an
//! address nobody answers for as unresolved with a reason, and do the same
//! for IPv6 targets added by a reload. Needs root (CAP_NET_ADMIN).

use lb_tests::privileges;

use crate::support;
use std::{
    net::IpAddr,
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use lb_userspace::{
    neigh::{NeighEvent, NeighbourWatcher},
    netdev::Mac,
    netns::{self, Netns},
};
use tokio::sync::mpsc;

const PREFIX: &str = "lbneigh";
const NEW_MAC: [u8; 6] = [0x02, 0x12, 0, 0, 0, 0x11];

enum Control {
    SetTargets(Vec<(u32, IpAddr)>),
    Snapshot(std_mpsc::Sender<Vec<NeighEvent>>),
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Waits until each of `targets` has had an event that `pred` accepts, for
/// at most `limit` in all; returns those events, in `targets`' order, with
/// when each arrived. Every event read is also kept in `seen` for failure
/// messages.
fn wait_events(
    rx: &std_mpsc::Receiver<(Instant, NeighEvent)>,
    seen: &mut Vec<NeighEvent>,
    targets: &[IpAddr],
    limit: Duration,
    mut pred: impl FnMut(&NeighEvent) -> bool,
) -> Option<Vec<(NeighEvent, Instant)>> {
    let deadline = Instant::now() + limit;
    let mut found: Vec<Option<(NeighEvent, Instant)>> = vec![None; targets.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (at, ev) = rx.recv_timeout(left).ok()?;
        eprintln!("event: {} on {}: {:?} ({})", ev.target, ev.ifindex, ev.mac.map(|m| Mac(m).to_string()), ev.reason);
        seen.push(ev.clone());
        if let Some(i) = targets.iter().position(|t| *t == ev.target)
            && found[i].is_none()
            && pred(&ev)
        {
            found[i] = Some((ev, at));
        }
    }
    Some(found.into_iter().flatten().collect())
}

/// [`wait_events`] for one target.
fn wait_event(
    rx: &std_mpsc::Receiver<(Instant, NeighEvent)>,
    seen: &mut Vec<NeighEvent>,
    target: IpAddr,
    limit: Duration,
    pred: impl FnMut(&NeighEvent) -> bool,
) -> Option<(NeighEvent, Instant)> {
    wait_events(rx, seen, &[target], limit, pred)?.pop()
}

#[test]
fn watcher_resolves_follows_and_reports_failures() {
    let Some(_turn) = support::start(module_path!(), privileges::NETNS) else { return };
    netns::remove_stale(PREFIX);
    let director = Netns::new(PREFIX, "dir").expect("director namespace");
    let backend = Netns::new(PREFIX, "be").expect("backend namespace");
    netns::veth(&director, "eth0", &backend, "eth0").expect("veth pair");
    director.ip(&["addr", "add", "10.212.0.1/24", "dev", "eth0"]).expect("director IPv4");
    director.ip(&["addr", "add", "fd00:212::1/64", "dev", "eth0", "nodad"]).expect("director IPv6");
    backend.ip(&["addr", "add", "10.212.0.11/24", "dev", "eth0"]).expect("backend IPv4");
    backend.ip(&["addr", "add", "fd00:212::11/64", "dev", "eth0", "nodad"]).expect("backend IPv6");
    // The MAC change below must be found by probing, not announced.
    backend.sysctl("net.ipv4.conf.eth0.arp_notify", "0").expect("arp_notify");
    backend.sysctl("net.ipv6.conf.eth0.ndisc_notify", "0").expect("ndisc_notify");
    let ifindex: u32 = director
        .exec("cat", &["/sys/class/net/eth0/ifindex"])
        .expect("director ifindex")
        .trim()
        .parse()
        .expect("numeric ifindex");
    let old_mac = backend.mac("eth0").expect("backend MAC");
    assert_ne!(old_mac, NEW_MAC);

    let (v4, dead, v6, dead6) = (ip("10.212.0.11"), ip("10.212.0.99"), ip("fd00:212::11"), ip("fd00:212::99"));
    let (event_tx, event_rx) = std_mpsc::channel();
    let (control, mut control_rx) = mpsc::unbounded_channel::<Control>();
    let started = Instant::now();
    let thread = director
        .spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let (handle, mut events) =
                    NeighbourWatcher::spawn(vec![(ifindex, v4), (ifindex, dead)]).map_err(|e| e.to_string())?;
                loop {
                    tokio::select! {
                        ev = events.recv() => match ev {
                            Some(ev) => { let _ = event_tx.send((Instant::now(), ev)); }
                            None => return Err("the watcher stopped".to_owned()),
                        },
                        c = control_rx.recv() => match c {
                            Some(Control::SetTargets(t)) => handle.set_targets(t).map_err(|e| e.to_string())?,
                            Some(Control::Snapshot(tx)) => { let _ = tx.send(handle.snapshot()); }
                            // The test is over (or failed): stop the watcher.
                            None => return Ok(()),
                        },
                    }
                }
            })
        })
        .expect("thread in the director namespace");
    let snapshot = |control: &mpsc::UnboundedSender<Control>| {
        let (tx, rx) = std_mpsc::channel();
        control.send(Control::Snapshot(tx)).expect("watcher thread alive");
        rx.recv_timeout(Duration::from_secs(2)).expect("snapshot")
    };

    let mut seen = Vec::new();
    // (1) Learned with no traffic from the test: the watcher made the
    // kernel resolve it.
    let (ev, at) = wait_event(&event_rx, &mut seen, v4, Duration::from_secs(5), |e| e.mac.is_some())
        .unwrap_or_else(|| panic!("{v4} resolved within 5 s: {seen:?}"));
    eprintln!("{v4} resolved after {:?}", at - started);
    assert_eq!(ev.mac, Some(old_mac), "{ev:?}");
    assert_eq!(ev.reason, "resolved on eth0");

    // (3) Nobody answers for .99.
    let (ev, at) = wait_event(&event_rx, &mut seen, dead, Duration::from_secs(10), |e| e.mac.is_none())
        .unwrap_or_else(|| panic!("{dead} reported unresolved within 10 s: {seen:?}"));
    eprintln!("{dead} reported unresolved after {:?}: {}", at - started, ev.reason);
    assert!(ev.reason.starts_with("no ARP reply from 10.212.0.99 on eth0"), "{ev:?}");

    // (4) IPv6 targets added by a reload; the IPv4 ones stay as they are.
    let reload = Instant::now();
    control
        .send(Control::SetTargets(vec![(ifindex, v4), (ifindex, dead), (ifindex, v6), (ifindex, dead6)]))
        .expect("watcher thread alive");
    let (ev, at) = wait_event(&event_rx, &mut seen, v6, Duration::from_secs(8), |e| e.mac.is_some())
        .unwrap_or_else(|| panic!("{v6} resolved within 8 s: {seen:?}"));
    eprintln!("{v6} resolved {:?} after the reload", at - reload);
    assert_eq!(ev.mac, Some(old_mac), "{ev:?}");
    let (ev, at) = wait_event(&event_rx, &mut seen, dead6, Duration::from_secs(10), |e| e.mac.is_none())
        .unwrap_or_else(|| panic!("{dead6} reported unresolved within 10 s: {seen:?}"));
    eprintln!("{dead6} reported unresolved {:?} after the reload: {}", at - reload, ev.reason);
    assert!(ev.reason.starts_with("no neighbour advertisement from fd00:212::99 on eth0"), "{ev:?}");
    let snap = snapshot(&control);
    let find = |snap: &[NeighEvent], t: IpAddr| snap.iter().find(|s| s.target == t).cloned();
    assert_eq!(snap.len(), 4, "{snap:?}");
    assert_eq!(find(&snap, v4).and_then(|s| s.mac), Some(old_mac), "{snap:?}");
    assert_eq!(find(&snap, v6).and_then(|s| s.mac), Some(old_mac), "{snap:?}");
    assert_eq!(find(&snap, dead).map(|s| s.mac), Some(None), "{snap:?}");

    // (2) The backend moves to another MAC and says nothing: the periodic
    // probe finds out, and the backend is never reported down meanwhile.
    let moved = Instant::now();
    backend.ip(&["link", "set", "eth0", "address", &Mac(NEW_MAC).to_string()]).expect("change the backend's MAC");
    let mut lost = Vec::new();
    let found = wait_events(&event_rx, &mut seen, &[v4, v6], Duration::from_secs(12), |e| {
        if e.mac.is_none() && (e.target == v4 || e.target == v6) {
            lost.push(e.clone());
        }
        e.mac == Some(NEW_MAC)
    });
    let found = found.unwrap_or_else(|| panic!("both followed to the new MAC within 12 s: {seen:?}"));
    for (ev, at) in found {
        eprintln!("{} followed to {} after {:?}: {}", ev.target, Mac(NEW_MAC), at - moved, ev.reason);
        assert_eq!(ev.reason, format!("moved from {} on eth0", Mac(old_mac)));
    }
    assert!(lost.is_empty(), "a backend that only moved was reported down: {lost:?}");
    let snap = snapshot(&control);
    assert_eq!(find(&snap, v4).and_then(|s| s.mac), Some(NEW_MAC), "{snap:?}");
    assert_eq!(find(&snap, v6).and_then(|s| s.mac), Some(NEW_MAC), "{snap:?}");

    // The backend goes away: unicast probes and then a broadcast resolution
    // fail, and it is reported down with the reason.
    let gone = Instant::now();
    backend.ip(&["addr", "del", "10.212.0.11/24", "dev", "eth0"]).expect("remove the backend's IPv4 address");
    backend.ip(&["addr", "del", "fd00:212::11/64", "dev", "eth0"]).expect("remove the backend's IPv6 address");
    let found = wait_events(&event_rx, &mut seen, &[v4, v6], Duration::from_secs(15), |e| e.mac.is_none())
        .unwrap_or_else(|| panic!("both reported down within 15 s: {seen:?}"));
    for ((ev, at), what) in found.into_iter().zip(["no ARP reply from", "no neighbour advertisement from"]) {
        eprintln!("{} reported down after {:?}: {}", ev.target, at - gone, ev.reason);
        assert!(ev.reason.starts_with(&format!("{what} {} on eth0", ev.target)), "{ev:?}");
    }

    // Stopping: the thread ends once its control channel closes.
    drop(control);
    let stopped = netns::wait_for(Duration::from_secs(5), || thread.is_finished().then_some(()));
    assert!(stopped.is_some(), "the watcher thread ended");
    thread.join().expect("no panic").expect("entered the namespace").expect("the watcher ran until stopped");
}
