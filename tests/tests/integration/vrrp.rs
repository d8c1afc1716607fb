//! Our VRRP runtime between two directors on one link, against a real
//! kernel: A (priority 150) and B (priority 100), VRRPv3 at 100 ms, one VIP,
//! and a client on the same bridge. Needs root (CAP_NET_ADMIN, CAP_NET_RAW).
//!
//! - election, the VIP on the master only, reachable from the client at
//!   the master's MAC;
//! - a clean stop (priority 0) hands over within the skew time, moves the
//!   VIP and the client's neighbour entry (gratuitous ARP); the restarted
//!   higher priority preempts back; notify scripts run with keepalived's
//!   arguments;
//! - a master that dies silently is replaced within the master-down
//!   interval, and when it comes back there is exactly one master again;
//! - `nopreempt`; unicast peers with multicast dropped by nftables;
//! - a sync group of two instances moves as a whole when one member's
//!   tracked interface goes down, with the group's notify script;
//! - `track_fast_path`: two real agents (`lb run`); detaching the master's
//!   XDP program makes it resign and the backup take over;
//! - a reload that changes or removes one instance leaves the other one
//!   running: no state change on either director, the VIP never leaves;
//! - `virtual_routes` (IPv4 with a VIP as `src`, a blackhole, IPv6 in
//!   another table) are in the master's tables only and follow it through a
//!   clean stop and a preemption; a route the kernel refuses is counted and
//!   the instance stays master.

use lb_userspace::netdev::Mac;
use std::{
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use lb_tests::privileges;
use lb_userspace::vrrp::State;

use crate::support::{
    self,
    vrrp_lab::{Director, Lab, SUBNET, VIP, has_addr, instance, is_ip, neighbour, reach, routes_to, wait_for},
};

const PREFIX: &str = "lbvrrp";
/// Generous bound for anything that should take one advert interval or so.
const SETTLE: Duration = Duration::from_secs(3);
/// Scheduling slack on top of a protocol timer (a loaded CI machine).
const MARGIN: Duration = Duration::from_millis(250);
/// v3 at 100 ms, priority 100: 3 x 100 ms + 156/256 x 100 ms.
const MASTER_DOWN_100: Duration = Duration::from_nanos(360_937_500);
/// The skew time of priority 100 at 100 ms.
const SKEW_100: Duration = Duration::from_nanos(60_937_500);

fn a_config(extra: &str) -> String {
    instance(3, 150, "100ms", extra)
}

fn b_config(extra: &str) -> String {
    instance(3, 100, "100ms", extra)
}

/// A directory nobody can write a notify log to, with a script that appends its arguments.
fn notify_script(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("lbvrrp-notify-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("notify dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let script = dir.join("notify.sh");
    let log = dir.join("notify.log");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$(id -un) $*\" >> {}\n", log.display())).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, log)
}

#[test]
fn election_clean_failover_garp_and_preemption() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b", "client"]);
    let (a_ns, b_ns, client) = (&lab.hosts[0], &lab.hosts[1], &lab.hosts[2]);
    let (script, log) = notify_script("clean");
    let notify = format!("notify = [\"{}\"]\nnotify_master = \"{} master-hook\"\n", script.display(), script.display());
    let mut b = Director::start("B", b_ns, &b_config(&notify));
    let mut a = Director::start("A", a_ns, &a_config(&notify));

    let a_master = a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Backup, SETTLE);
    // B started first and may have been master before A's first advert: let it settle.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.status().state, State::Master);
    assert_eq!(b.status().state, State::Backup);
    assert!(has_addr(a_ns, VIP), "VIP on A");
    assert!(!has_addr(b_ns, VIP), "no VIP on B");
    let (a_mac, b_mac) = (Mac(a_ns.mac("eth0").unwrap()).to_string(), Mac(b_ns.mac("eth0").unwrap()).to_string());
    assert!(reach(client, VIP), "the client reaches the VIP");
    assert_eq!(neighbour(client, VIP).as_deref(), Some(a_mac.as_str()), "the VIP resolves to A's MAC");
    let b_status = b.status();
    assert_eq!(b_status.master, Some(is_ip(&lab.addr(0))), "B knows A is master");
    assert_eq!(b_status.rejected.total(), 0, "{:?}", b_status.rejected);
    assert!(b_status.counters.adverts_received > 0);
    eprintln!("A master {:?} after start", a_master.elapsed());

    // Clean stop: priority 0, B takes over after its skew time.
    let stop = Instant::now();
    let a_events = a.shutdown();
    assert!(a_events.iter().any(|(_, e)| e.to == State::Initialize), "A reported STOP: {a_events:?}");
    let b_master = b.expect_state(State::Master, SETTLE);
    let took = b_master - stop;
    eprintln!("clean failover took {took:?} (skew time {SKEW_100:?})");
    assert!(took <= SKEW_100 + MARGIN + Duration::from_millis(100), "took {took:?}");
    assert!(!has_addr(a_ns, VIP), "A removed the VIP");
    assert!(wait_for(Duration::from_secs(1), || has_addr(b_ns, VIP).then_some(())).is_some(), "VIP on B");
    // Gratuitous ARP moved the client's entry without any traffic.
    let moved = wait_for(Duration::from_secs(2), || (neighbour(client, VIP)? == b_mac).then_some(()));
    assert!(moved.is_some(), "the client's entry follows to B: {:?}", neighbour(client, VIP));
    assert!(reach(client, VIP));

    // A comes back and preempts: B keeps advertising, A ignores the lower priority until its timer runs out.
    let restart = Instant::now();
    let mut a = Director::start("A", a_ns, &a_config(&notify));
    let a_master = a.expect_state(State::Master, SETTLE);
    let b_backup = b.expect_state(State::Backup, SETTLE);
    eprintln!("A preempted {:?} after restarting; B backup after {:?}", a_master - restart, b_backup - restart);
    assert!(a_master - restart <= Duration::from_millis(341) + MARGIN + Duration::from_millis(100));
    assert!(wait_for(Duration::from_secs(1), || (!has_addr(b_ns, VIP)).then_some(())).is_some(), "B gave it up");
    assert!(has_addr(a_ns, VIP));
    let back = wait_for(Duration::from_secs(2), || (neighbour(client, VIP)? == a_mac).then_some(()));
    assert!(back.is_some(), "the client's entry is back at A: {:?}", neighbour(client, VIP));

    drop(a);
    drop(b);
    let notified = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("notify log:\n{notified}");
    assert!(notified.contains("nobody INSTANCE VI_1 MASTER 150"), "{notified}");
    assert!(notified.contains("nobody INSTANCE VI_1 BACKUP 100"), "{notified}");
    assert!(notified.contains("nobody INSTANCE VI_1 STOP 150"), "{notified}");
    assert!(notified.contains("nobody master-hook"), "{notified}");
    let _ = std::fs::remove_dir_all(log.parent().unwrap());
}

#[test]
fn frozen_master_is_replaced_and_comes_back_as_the_only_master() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b"]);
    let (a_ns, b_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let mut a = Director::start("A", a_ns, &a_config(""));
    let mut b = Director::start("B", b_ns, &b_config(""));
    a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Backup, SETTLE);
    std::thread::sleep(Duration::from_millis(300));

    // A dies without a word: its VIP stays, its adverts stop.
    let died = Instant::now();
    a.abort();
    let b_master = b.expect_state(State::Master, SETTLE);
    let took = b_master - died;
    eprintln!("takeover after a silent master: {took:?} (master-down interval {MASTER_DOWN_100:?})");
    assert!(took <= MASTER_DOWN_100 + MARGIN, "took {took:?}");
    assert!(took >= MASTER_DOWN_100 - Duration::from_millis(150), "not before the master-down interval: {took:?}");
    assert!(has_addr(b_ns, VIP));
    assert!(has_addr(a_ns, VIP), "the dead master's VIP is still there, as after a crash");

    // A comes back: it clears what it left, waits as backup, then preempts.
    let mut a = Director::start("A", a_ns, &a_config(""));
    a.expect_state(State::Backup, SETTLE);
    assert!(!has_addr(a_ns, VIP), "stale VIP removed on start");
    a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Backup, SETTLE);
    // Several intervals later, still exactly one master and one VIP holder.
    std::thread::sleep(Duration::from_millis(500));
    let (sa, sb) = (a.status(), b.status());
    assert_eq!((sa.state, sb.state), (State::Master, State::Backup));
    assert_eq!([has_addr(a_ns, VIP), has_addr(b_ns, VIP)], [true, false], "exactly one holder of the VIP");
    assert_eq!(sb.master, Some(is_ip(&lab.addr(0))));
    assert_eq!(sa.counters.became_master, 1);
}

#[test]
fn nopreempt_keeps_the_current_master() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b"]);
    let (a_ns, b_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let mut b = Director::start("B", b_ns, &b_config(""));
    b.expect_state(State::Master, SETTLE);
    let mut a = Director::start("A", a_ns, &a_config("nopreempt = true\n"));
    a.expect_state(State::Backup, SETTLE);
    // Many master-down intervals: A, higher but nopreempt, stays backup.
    assert!(a.wait_state(State::Master, Duration::from_millis(1500)).is_none(), "A preempted: {:?}", a.seen);
    assert_eq!(b.status().state, State::Master);
    assert_eq!(a.status().master, Some(is_ip(&lab.addr(1))));
    assert!(has_addr(b_ns, VIP) && !has_addr(a_ns, VIP));
    // When B goes, A takes over.
    let stop = Instant::now();
    b.shutdown();
    a.expect_state(State::Master, SETTLE);
    eprintln!("nopreempt backup took over {:?} after the master stopped", stop.elapsed());
}

#[test]
fn preempt_delay_holds_off_preemption_then_preempts() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    const DELAY: Duration = Duration::from_millis(1200);
    let lab = Lab::new(PREFIX, &["a", "b"]);
    let (a_ns, b_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let mut b = Director::start("B", b_ns, &b_config(""));
    b.expect_state(State::Master, SETTLE);
    let started = Instant::now();
    let mut a = Director::start("A", a_ns, &a_config(&format!("preempt_delay = \"{}ms\"\n", DELAY.as_millis())));
    let backup = a.expect_state(State::Backup, SETTLE);
    // keepalived's preempt_delay: for DELAY after entering Backup, A (150)
    // accepts B (100) as master; only then does it preempt.
    let early = DELAY.saturating_sub(MARGIN);
    let left = early.saturating_sub(backup.elapsed());
    assert!(a.wait_state(State::Master, left).is_none(), "A preempted within its preempt_delay: {:?}", a.seen);
    assert_eq!(b.status().state, State::Master, "B stays master during A's preempt_delay");
    let master = a.expect_state(State::Master, DELAY + SETTLE);
    b.expect_state(State::Backup, SETTLE);
    let after = master - backup;
    eprintln!(
        "A preempted {after:?} after entering Backup ({:?} after start; preempt_delay {DELAY:?})",
        master - started
    );
    assert!(after >= early, "A preempted after {after:?}, before its preempt_delay of {DELAY:?}");
    // Once the delay is over, B's adverts no longer reset A's master-down timer.
    let bound = DELAY + MASTER_DOWN_100 + MARGIN;
    assert!(after <= bound, "A preempted after {after:?}, later than preempt_delay + master-down ({bound:?})");
    assert!(wait_for(Duration::from_secs(1), || has_addr(a_ns, VIP).then_some(())).is_some(), "the VIP moved to A");
    assert!(wait_for(Duration::from_secs(1), || (!has_addr(b_ns, VIP)).then_some(())).is_some(), "B gave it up");
}

/// Drops VRRP multicast in and out of a director, as a filtering switch or
/// cloud network does.
fn drop_multicast(ns: &lb_userspace::netns::Netns) {
    let rules = "table inet novrrp {\n\
                 chain in { type filter hook input priority 0; ip daddr 224.0.0.18 drop; }\n\
                 chain out { type filter hook output priority 0; ip daddr 224.0.0.18 drop; }\n}\n";
    let dir = std::env::temp_dir().join(format!("lbvrrp-nft-{}-{}", std::process::id(), ns.name()));
    std::fs::write(&dir, rules).expect("nft rules");
    ns.exec("nft", &["-f", dir.to_str().unwrap()]).expect("nft -f");
    let _ = std::fs::remove_file(dir);
}

#[test]
fn unicast_peers_work_where_multicast_is_dropped() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b"]);
    let (a_ns, b_ns) = (&lab.hosts[0], &lab.hosts[1]);
    drop_multicast(a_ns);
    drop_multicast(b_ns);

    // Multicast: both become master (split brain), proving the filter bites.
    let mut a = Director::start("A", a_ns, &a_config(""));
    let mut b = Director::start("B", b_ns, &b_config(""));
    a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Master, SETTLE);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((a.status().state, b.status().state), (State::Master, State::Master));
    a.shutdown();
    b.shutdown();

    // Unicast peers: one master.
    let unicast = |me: usize, peer: usize| {
        format!("unicast_src = \"{}\"\nunicast_peers = [\"{}\"]\n", lab.addr(me), lab.addr(peer))
    };
    let mut b = Director::start("B", b_ns, &b_config(&unicast(1, 0)));
    let mut a = Director::start("A", a_ns, &a_config(&unicast(0, 1)));
    a.expect_state(State::Master, SETTLE);
    std::thread::sleep(Duration::from_millis(500));
    let (sa, sb) = (a.status(), b.status());
    assert_eq!((sa.state, sb.state), (State::Master, State::Backup), "{sa:?}\n{sb:?}");
    assert_eq!(sb.master, Some(is_ip(&lab.addr(0))));
    assert!(has_addr(a_ns, VIP) && !has_addr(b_ns, VIP));
    assert_eq!(sb.rejected.total(), 0, "{:?}", sb.rejected);
    let stop = Instant::now();
    a.shutdown();
    let b_master = b.expect_state(State::Master, SETTLE);
    eprintln!("unicast clean failover took {:?}", b_master - stop);
    assert!(b_master - stop <= SKEW_100 + MARGIN + Duration::from_millis(100));
    assert!(wait_for(Duration::from_secs(1), || has_addr(b_ns, VIP).then_some(())).is_some());
}

#[test]
fn ipv6_failover_moves_the_vip_and_the_neighbour_entry() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b", "client"]);
    let (a_ns, b_ns, client) = (&lab.hosts[0], &lab.hosts[1], &lab.hosts[2]);
    let vip6 = "fd00:214::100";
    let v6 = |priority: u8| {
        format!(
            "[[vrrp]]\nname = \"VI_6\"\ninterface = \"eth0\"\nvirtual_router_id = 61\npriority = {priority}\n\
             advert_int = \"100ms\"\nvirtual_ipaddress = [\"{vip6}/64\"]\ngarp_master_repeat = 2\n"
        )
    };
    let mut a = Director::start("A", a_ns, &v6(150));
    let mut b = Director::start("B", b_ns, &v6(100));
    a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Backup, SETTLE);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((a.status().state, b.status().state), (State::Master, State::Backup));
    assert!(has_addr(a_ns, vip6) && !has_addr(b_ns, vip6));
    assert!(reach(client, vip6), "the client reaches the IPv6 VIP");
    let (a_mac, b_mac) = (Mac(a_ns.mac("eth0").unwrap()).to_string(), Mac(b_ns.mac("eth0").unwrap()).to_string());
    assert_eq!(neighbour(client, vip6).as_deref(), Some(a_mac.as_str()));
    let sb = b.status();
    assert!(sb.master.is_some_and(|m| m.to_string().starts_with("fe80:")), "link-local master address: {sb:?}");
    assert_eq!(sb.rejected.total(), 0, "{:?}", sb.rejected);

    let stop = Instant::now();
    a.shutdown();
    let took = b.expect_state(State::Master, SETTLE) - stop;
    eprintln!("IPv6 clean failover took {took:?}");
    assert!(took <= SKEW_100 + MARGIN + Duration::from_millis(100));
    assert!(wait_for(Duration::from_secs(1), || has_addr(b_ns, vip6).then_some(())).is_some());
    let moved = wait_for(Duration::from_secs(2), || (neighbour(client, vip6)? == b_mac).then_some(()));
    assert!(moved.is_some(), "unsolicited NA moved the client's entry: {:?}", neighbour(client, vip6));
}

#[test]
fn tracked_interface_faults_and_script_weight_moves_the_master() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b"]);
    let (a_ns, b_ns) = (&lab.hosts[0], &lab.hosts[1]);
    // A veth pair inside A: taking the far end down drops trk0's carrier.
    a_ns.ip(&["link", "add", "trk0", "type", "veth", "peer", "name", "trk1"]).expect("veth inside A");
    a_ns.ip(&["link", "set", "trk0", "up"]).expect("trk0 up");
    a_ns.ip(&["link", "set", "trk1", "up"]).expect("trk1 up");
    let dir = std::env::temp_dir().join(format!("lbvrrp-track-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("track dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let flag = dir.join("healthy");
    std::fs::write(&flag, "").expect("flag");
    let a_extra = format!(
        "track_interface = [\"trk0\"]\n\
         [[vrrp.track_script]]\nname = \"chk\"\ncommand = [\"/usr/bin/test\", \"-e\", \"{}\"]\n\
         interval = \"100ms\"\nweight = -60\n",
        flag.display()
    );
    let mut a = Director::start("A", a_ns, &a_config(&a_extra));
    let mut b = Director::start("B", b_ns, &b_config(""));
    a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Backup, SETTLE);

    // The tracked link goes down: A resigns (priority 0) and B takes over at once.
    let down = Instant::now();
    a_ns.ip(&["link", "set", "trk1", "down"]).expect("carrier lost");
    a.expect_state(State::Fault, SETTLE);
    let took = b.expect_state(State::Master, SETTLE) - down;
    eprintln!("tracked interface down -> B master after {took:?} (poll every 200 ms + skew)");
    assert!(took <= Duration::from_millis(200) + SKEW_100 + MARGIN + Duration::from_millis(100), "{took:?}");
    let sa = a.status();
    assert_eq!(sa.fault_reasons, vec!["interface trk0 is down".to_owned()]);
    assert!(!has_addr(a_ns, VIP));
    a_ns.ip(&["link", "set", "trk1", "up"]).expect("carrier back");
    a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Backup, SETTLE);

    // The script fails: 150 - 60 = 90 < 100, so B preempts A.
    std::fs::remove_file(&flag).expect("flag gone");
    b.expect_state(State::Master, SETTLE);
    a.expect_state(State::Backup, SETTLE);
    assert_eq!(a.status().effective_priority, 90);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!((a.status().state, b.status().state), (State::Backup, State::Master));
    // It passes again: 150, A preempts back.
    std::fs::write(&flag, "").expect("flag back");
    a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Backup, SETTLE);
    assert_eq!(a.status().effective_priority, 150);
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two instances (VRIDs 51 and 52, one VIP each) in sync group G1; A also
/// tracks `trk0` on VI_1 only.
fn grouped(priority: u8, extra_vi1: &str, notify: &str) -> String {
    let vi = |name: &str, vrid: u8, vip: &str, extra: &str| {
        format!(
            "[[vrrp]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\npriority = {priority}\n\
             advert_int = \"100ms\"\nvirtual_ipaddress = [\"{vip}/24\"]\ngarp_master_repeat = 1\n{extra}"
        )
    };
    format!(
        "{}{}[[vrrp_sync_group]]\nname = \"G1\"\ngroup = [\"VI_1\", \"VI_2\"]\n{notify}",
        vi("VI_1", 51, VIP, extra_vi1),
        vi("VI_2", 52, VIP2, "")
    )
}

const VIP2: &str = "10.214.0.101";

#[test]
fn sync_group_moves_both_instances_when_one_tracked_interface_fails() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b"]);
    let (a_ns, b_ns) = (&lab.hosts[0], &lab.hosts[1]);
    a_ns.ip(&["link", "add", "trk0", "type", "veth", "peer", "name", "trk1"]).expect("veth inside A");
    a_ns.ip(&["link", "set", "trk0", "up"]).expect("trk0 up");
    a_ns.ip(&["link", "set", "trk1", "up"]).expect("trk1 up");
    let (script, log) = notify_script("group");
    let notify = format!("notify = [\"{}\"]\n", script.display());
    let mut a = Director::start("A", a_ns, &grouped(150, "track_interface = [\"trk0\"]\n", &notify));
    let mut b = Director::start("B", b_ns, &grouped(100, "", ""));
    for vi in ["VI_1", "VI_2"] {
        a.expect_instance(vi, State::Master, SETTLE);
        b.expect_instance(vi, State::Backup, SETTLE);
    }
    std::thread::sleep(Duration::from_millis(300));
    let holders = |ns| [has_addr(ns, VIP), has_addr(ns, VIP2)];
    assert_eq!((holders(a_ns), holders(b_ns)), ([true, true], [false, false]));

    // Only VI_1 tracks trk0; the group takes VI_2 along to FAULT, and B takes both.
    let down = Instant::now();
    a_ns.ip(&["link", "set", "trk1", "down"]).expect("carrier lost");
    for vi in ["VI_1", "VI_2"] {
        a.expect_instance(vi, State::Fault, SETTLE);
        let took = b.expect_instance(vi, State::Master, SETTLE) - down;
        eprintln!("{vi}: B master {took:?} after trk0 went down (poll 200 ms + skew)");
        assert!(took <= Duration::from_millis(200) + SKEW_100 + MARGIN + Duration::from_millis(100), "{took:?}");
    }
    let sa = a.statuses();
    assert_eq!(sa[0].fault_reasons, vec!["interface trk0 is down".to_owned()]);
    assert!(sa[1].fault_reasons.is_empty(), "VI_2 is in FAULT for its group only: {:?}", sa[1]);
    assert!(wait_for(SETTLE, || (holders(b_ns) == [true, true]).then_some(())).is_some(), "both VIPs on B");
    assert_eq!(holders(a_ns), [false, false]);

    // The link comes back: both leave FAULT together and A preempts both back.
    a_ns.ip(&["link", "set", "trk1", "up"]).expect("carrier back");
    for vi in ["VI_1", "VI_2"] {
        a.expect_instance(vi, State::Master, SETTLE);
        b.expect_instance(vi, State::Backup, SETTLE);
    }
    assert!(wait_for(SETTLE, || (holders(a_ns) == [true, true]).then_some(())).is_some(), "both VIPs back on A");
    assert_eq!(holders(b_ns), [false, false]);
    drop(a);
    drop(b);
    let notified = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("group notify log:\n{notified}");
    for state in ["MASTER", "FAULT", "STOP"] {
        assert!(notified.contains(&format!("nobody GROUP G1 {state} 0")), "{state}: {notified}");
    }
    let _ = std::fs::remove_dir_all(log.parent().unwrap());
}

// ---------------------------------------------------------------------------
// Real agents (`lb run`), for what only the agent knows: its XDP program.

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
/// How often the agent checks its XDP attachment (agent/run.rs).
const FAST_PATH_POLL: Duration = Duration::from_millis(100);

/// `lb run` inside a namespace. Dropping it stops it: SIGTERM, then SIGKILL
/// after a bound.
struct Agent {
    child: std::process::Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Agent {
    fn start(ns: &lb_userspace::netns::Netns, dir: &std::path::Path, tag: &str, toml: &str) -> Agent {
        let socket = dir.join(format!("{tag}.sock"));
        let config = dir.join(format!("{tag}.toml"));
        let log = dir.join(format!("{tag}.log"));
        let text = format!("[global]\ncontrol_socket = \"{}\"\n{toml}", socket.display());
        std::fs::write(&config, text).expect("agent config");
        let out = std::fs::File::create(&log).expect("agent log");
        let child = ns
            .command(LB)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("starting the agent");
        let agent = Agent { child, socket, log };
        let up = wait_for(Duration::from_secs(10), || agent.socket.exists().then_some(()));
        assert!(up.is_some(), "{tag}: no control socket; log:\n{}", agent.log_text());
        agent
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first VRRP instance of `lb status --json`.
    fn vrrp(&self) -> serde_json::Value {
        let out = std::process::Command::new(LB)
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .expect("lb status");
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["vrrp"][0].clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, not yet reaped (wait below reaps it).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let exited = wait_for(Duration::from_secs(5), || self.child.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Takes the XDP program off `eth0` in `ns` as an operator or a crashed
/// tool would. The agent attaches through a bpf_link where the kernel has
/// them, which `ip link set dev eth0 xdp off` may not remove: detach the link.
fn detach_xdp(ns: &lb_userspace::netns::Netns) {
    let link: serde_json::Value =
        serde_json::from_str(&ns.ip(&["-j", "link", "show", "dev", "eth0"]).expect("ip -j link"))
            .expect("ip -j output");
    let prog = link[0]["xdp"]["prog"]["id"].as_u64().expect("an XDP program on eth0");
    let links = std::process::Command::new("bpftool").args(["-j", "link", "show"]).output().expect("bpftool link show");
    let links: serde_json::Value = serde_json::from_slice(&links.stdout).unwrap_or_default();
    let id =
        links.as_array().into_iter().flatten().find(|l| l["prog_id"].as_u64() == Some(prog)).map(|l| l["id"].clone());
    match id {
        Some(id) => {
            let out = std::process::Command::new("bpftool")
                .args(["link", "detach", "id", &id.to_string()])
                .output()
                .expect("bpftool link detach");
            assert!(out.status.success(), "bpftool link detach: {}", String::from_utf8_lossy(&out.stderr));
        }
        None => _ = ns.ip(&["link", "set", "dev", "eth0", "xdp", "off"]).expect("ip link set xdp off"),
    }
    let left: serde_json::Value =
        serde_json::from_str(&ns.ip(&["-j", "link", "show", "dev", "eth0"]).expect("ip -j link")).expect("ip -j");
    assert!(left[0]["xdp"].is_null(), "still attached: {left}");
}

#[test]
fn detached_xdp_program_hands_the_vip_to_the_peer() {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return };
    let lab = Lab::new(PREFIX, &["a", "b"]);
    let (a_ns, b_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let dir = std::env::temp_dir().join(format!("lbvrrp-dp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("agent dir");
    // One VIP with one backend (no check); VRRP tracks the fast path with weight 0.
    let toml = |priority: u8| {
        format!(
            "[[vip]]\naddress = \"{VIP}\"\nport = 80\ninterface = \"eth0\"\n\
             [[vip.backend]]\naddress = \"10.214.0.50\"\n\
             {}[vrrp.track_fast_path]\nweight = 0\n",
            instance(3, priority, "100ms", "")
        )
    };
    let a = Agent::start(a_ns, &dir, "a", &toml(150));
    let b = Agent::start(b_ns, &dir, "b", &toml(100));
    let a_master = wait_for(SETTLE, || (a.vrrp()["state"] == "MASTER" && has_addr(a_ns, VIP)).then_some(()));
    assert!(a_master.is_some(), "A not master: {}\n{}", a.vrrp(), a.log_text());
    let b_backup = wait_for(SETTLE, || (b.vrrp()["state"] == "BACKUP").then_some(()));
    assert!(b_backup.is_some(), "B not backup: {}\n{}", b.vrrp(), b.log_text());
    assert!(!has_addr(b_ns, VIP));

    let detached = Instant::now();
    detach_xdp(a_ns);
    let moved = wait_for(SETTLE, || has_addr(b_ns, VIP).then_some(()));
    let took = detached.elapsed();
    assert!(moved.is_some(), "B did not take the VIP: A {}\nB {}\n{}", a.vrrp(), b.vrrp(), a.log_text());
    eprintln!("XDP detached -> VIP on B after {took:?} (poll {FAST_PATH_POLL:?} + skew {SKEW_100:?})");
    // The poll, A's resignation (priority 0), B's skew time, and polling `ip addr` here.
    assert!(took <= FAST_PATH_POLL + SKEW_100 + MARGIN + Duration::from_millis(300), "{took:?}");
    let sa = a.vrrp();
    assert_eq!(sa["state"], "FAULT", "{sa}");
    assert_eq!(sa["fault_reasons"][0], "fast path: XDP program not attached to eth0", "{sa}");
    assert!(!has_addr(a_ns, VIP), "A gave the VIP up");
    assert_eq!(b.vrrp()["state"], "MASTER");
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reload_restarts_only_what_changed() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b"]);
    let (a_ns, b_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let vi = |name: &str, vrid: u8, vip: &str, priority: u8| {
        format!(
            "[[vrrp]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\npriority = {priority}\n\
             advert_int = \"100ms\"\nvirtual_ipaddress = [\"{vip}/24\"]\ngarp_master_repeat = 1\n"
        )
    };
    let both = |p1: u8, p2: u8| format!("{}{}", vi("VI_1", 51, VIP, p1), vi("VI_2", 52, VIP2, p2));
    let mut a = Director::start("A", a_ns, &both(150, 150));
    let mut b = Director::start("B", b_ns, &both(100, 100));
    for name in ["VI_1", "VI_2"] {
        a.expect_instance(name, State::Master, SETTLE);
        b.expect_instance(name, State::Backup, SETTLE);
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = a.statuses()[0].clone();

    // Watch A's VI_1 VIP the whole time: it must never leave.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (watching, ns_name) = (std::sync::Arc::clone(&watching), a_ns.name().to_owned());
        std::thread::spawn(move || {
            let mut gone = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            while watching.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns_name, "ip", "addr", "show", "dev", "eth0"])
                    .output()
                    .expect("ip addr");
                if !String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/")) {
                    gone += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            gone
        })
    };

    // VI_2 changes (priority 160): only VI_2 restarts, and preempts back.
    let since = Instant::now();
    let plan = a.reload(&both(150, 160));
    assert_eq!((plan.keep, plan.stop, plan.start), (vec!["VI_1".into()], vec!["VI_2".into()], vec!["VI_2".into()]));
    a.expect_instance("VI_2", State::Master, SETTLE);
    // VI_2 is removed: it stops cleanly and B takes it.
    let plan = a.reload(&vi("VI_1", 51, VIP, 150));
    assert_eq!((plan.keep, plan.stop, plan.start), (vec!["VI_1".into()], vec!["VI_2".into()], vec![]));
    b.expect_instance("VI_2", State::Master, SETTLE);
    assert!(wait_for(SETTLE, || (has_addr(b_ns, VIP2) && !has_addr(a_ns, VIP2)).then_some(())).is_some());
    // A few more intervals, then nothing may have happened to VI_1 anywhere.
    a.events_for(Duration::from_millis(300));
    b.events_for(Duration::from_millis(300));
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let gone = watcher.join().expect("watcher");
    assert_eq!(gone, 0, "A's VI_1 VIP left during the reloads");
    let vi1_changes = |d: &Director, since: Instant| {
        d.seen.iter().filter(|(at, e)| *at > since && e.instance == "VI_1").map(|(_, e)| e.clone()).collect::<Vec<_>>()
    };
    assert!(vi1_changes(&a, since).is_empty(), "A's VI_1 changed state: {:?}", a.seen);
    assert!(vi1_changes(&b, since).is_empty(), "B's VI_1 changed state: {:?}", b.seen);
    let after = a.statuses();
    assert_eq!(after.len(), 1);
    let vi1 = &after[0];
    assert_eq!((vi1.name.as_str(), vi1.state), ("VI_1", State::Master));
    assert_eq!(vi1.counters.became_master, before.counters.became_master, "never left Master");
    assert_eq!(vi1.counters.priority_zero_sent, 0, "never resigned");
    assert!(vi1.counters.adverts_sent > before.counters.adverts_sent, "kept advertising");
    assert_eq!(b.statuses()[0].state, State::Backup);
}

#[test]
fn virtual_routes_follow_the_master() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b", "client"]);
    let (a_ns, b_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let client = lab.addr(2);
    // The gateway of the last one is on no link: the kernel refuses it (ENETUNREACH).
    let routes = format!(
        "virtual_routes = [\"src {VIP} 192.0.2.0/24 via {client} dev eth0 metric 10\", \"blackhole 198.51.100.0/24\", \
         {{ to = \"2001:db8:214::/48\", via = \"fd00:214::3\", table = 100 }}, \"203.0.113.0/24 via 172.31.255.1\"]\n"
    );
    // [the route via the client, the blackhole, the IPv6 one in table 100]
    let present = |ns: &lb_userspace::netns::Netns| {
        [
            routes_to(ns, false, "main", "192.0.2.0/24"),
            routes_to(ns, false, "main", "198.51.100.0/24"),
            routes_to(ns, true, "100", "2001:db8:214::/48"),
        ]
        .map(|lines| !lines.is_empty())
    };
    let holder = |on: &lb_userspace::netns::Netns, off: &lb_userspace::netns::Netns| {
        wait_for(SETTLE, || (present(on) == [true; 3] && present(off) == [false; 3]).then_some(()))
    };
    let mut b = Director::start("B", b_ns, &b_config(&routes));
    let mut a = Director::start("A", a_ns, &a_config(&routes));
    a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Backup, SETTLE);
    assert!(holder(a_ns, b_ns).is_some(), "routes on A only: A {:?}, B {:?}", present(a_ns), present(b_ns));
    let line = routes_to(a_ns, false, "main", "192.0.2.0/24").remove(0);
    eprintln!("A: {line}");
    for part in [format!("via {client} dev eth0"), format!("src {VIP}"), "metric 10".into(), "proto keepalived".into()]
    {
        assert!(line.contains(&part), "{part:?} in {line:?}");
    }
    let black = routes_to(a_ns, false, "main", "198.51.100.0/24").remove(0);
    assert!(black.starts_with("blackhole 198.51.100.0/24"), "{black}");
    let v6 = routes_to(a_ns, true, "100", "2001:db8:214::/48").remove(0);
    assert!(v6.contains("via fd00:214::3 dev eth0"), "{v6}");
    assert!(routes_to(a_ns, false, "main", "203.0.113.0/24").is_empty(), "the unreachable gateway's route");
    // The refused route is counted, and A is master all the same.
    let sa = a.status();
    assert_eq!(sa.state, State::Master);
    assert!(sa.route_errors >= 1, "{sa:?}");

    // A's clean stop: priority 0, its routes go with its VIP, and B's come up.
    a.shutdown();
    b.expect_state(State::Master, SETTLE);
    assert!(holder(b_ns, a_ns).is_some(), "routes on B only: A {:?}, B {:?}", present(a_ns), present(b_ns));
    assert!(!has_addr(a_ns, VIP));

    // A comes back and preempts: the routes move back.
    let mut a = Director::start("A", a_ns, &a_config(&routes));
    a.expect_state(State::Master, SETTLE);
    b.expect_state(State::Backup, SETTLE);
    assert!(holder(a_ns, b_ns).is_some(), "routes back on A only: A {:?}, B {:?}", present(a_ns), present(b_ns));
    // Stopping B (backup) leaves A's routes alone; stopping A removes them.
    b.shutdown();
    assert_eq!(present(a_ns), [true; 3]);
    a.shutdown();
    assert_eq!(present(a_ns), [false; 3], "nothing left after the last stop");
}

/// Several instances on one interface: each socket's filter keeps out the
/// adverts of the others (IPv4 and IPv6), lets through those of a VRID no
/// instance runs, and follows a reload that stops one of them.
#[test]
fn each_instance_sees_only_its_own_vrid_and_unknown_ones() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    let lab = Lab::new(PREFIX, &["a", "b", "c"]);
    let (a_ns, b_ns, c_ns) = (&lab.hosts[0], &lab.hosts[1], &lab.hosts[2]);
    let vi = |vrid: u8, priority: u8| {
        let vip = if vrid >= 70 { format!("fd00:214::{vrid}/64") } else { format!("{SUBNET}.{vrid}/24") };
        format!(
            "[[vrrp]]\nname = \"VI_{vrid}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\npriority = {priority}\n\
             advert_int = \"100ms\"\nvirtual_ipaddress = [\"{vip}\"]\ngarp_master_repeat = 1\n"
        )
    };
    let config = |vrids: &[u8], priority: u8| vrids.iter().map(|&v| vi(v, priority)).collect::<String>();
    // 61-63 over IPv4, 71-72 over IPv6.
    let all = [61, 62, 63, 71, 72];
    let mut a = Director::start("A", a_ns, &config(&all, 150));
    let mut b = Director::start("B", b_ns, &config(&all, 100));
    for vrid in all {
        a.expect_instance(&format!("VI_{vrid}"), State::Master, SETTLE);
        b.expect_instance(&format!("VI_{vrid}"), State::Backup, SETTLE);
    }
    std::thread::sleep(Duration::from_millis(500));
    let other_vrid = |d: &Director| d.statuses().iter().map(|s| (s.vrid, s.other_vrid)).collect::<Vec<_>>();
    let none = |vrids: &[u8]| vrids.iter().map(|&v| (v, 0)).collect::<Vec<_>>();
    assert_eq!(other_vrid(&a), none(&all), "A's instances saw another instance's adverts");
    assert_eq!(other_vrid(&b), none(&all), "B's instances saw another instance's adverts");
    assert!(b.statuses().iter().all(|s| s.counters.adverts_received > 0), "B heard A: {:?}", b.statuses());

    // A stops VI_63 and B takes it over: A's IPv4 instances now see its
    // adverts as an unknown VRID, its IPv6 ones still see nothing.
    let kept = [61, 62, 71, 72];
    a.reload(&config(&kept, 150));
    b.expect_instance("VI_63", State::Master, SETTLE);
    let counted = wait_for(SETTLE, || {
        let seen = other_vrid(&a);
        seen.iter().filter(|(v, _)| *v < 70).all(|(_, n)| *n > 0).then_some(seen)
    });
    let seen = counted.unwrap_or_else(|| panic!("A's IPv4 instances never counted VRID 63: {:?}", other_vrid(&a)));
    assert!(seen.iter().filter(|(v, _)| *v >= 70).all(|(_, n)| *n == 0), "{seen:?}");

    // A third director with VRIDs nobody else runs: every instance of the
    // family counts them, as before any filter.
    let _c = Director::start("C", c_ns, &config(&[69, 79], 100));
    let counted = wait_for(SETTLE, || {
        let seen = other_vrid(&b);
        seen.iter().all(|(_, n)| *n > 0).then_some(())
    });
    assert!(counted.is_some(), "B's instances did not all count C's VRIDs: {:?}", other_vrid(&b));
}
