use std::{
    collections::{BTreeMap, VecDeque},
    net::Ipv4Addr,
};

use super::*;

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn cfg(version: Version, priority: u8, last: u8) -> RouterParams {
    RouterParams { priority, ..RouterParams::new(version, 51, addr(last)) }
}

fn v3(priority: u8, last: u8, interval_cs: u16) -> RouterParams {
    RouterParams { advert_interval: Centiseconds(interval_cs), ..cfg(Version::V3, priority, last) }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}

fn advert(from: u8, priority: u8, cs: u16) -> Event {
    Event::AdvertReceived { from: addr(from), priority, max_adver_int: Centiseconds(cs) }
}

/// v2 at priority 100: 3 s + 156/256 s.
const MD_V2_100: Duration = Duration::from_nanos(3_609_375_000);
/// v2 at priority 150: 3 s + 106/256 s.
const MD_V2_150: Duration = Duration::from_nanos(3_414_062_500);
/// v2 skew at priority 100: 156/256 s; measured 0.610 s from keepalived.
const SKEW_V2_100: Duration = Duration::from_nanos(609_375_000);
const ONE_S: Duration = Duration::from_secs(1);

fn become_master(priority: u8) -> Vec<Action> {
    vec![
        Action::CancelTimers,
        Action::SendAdvert { priority },
        Action::AddVips,
        Action::Announce,
        Action::StartAdverTimer(ONE_S),
        Action::Notify(State::Master),
    ]
}

#[test]
fn timer_formulas() {
    let inst = Instance::new(cfg(Version::V2, 100, 1)).unwrap();
    assert_eq!(inst.skew_time(), SKEW_V2_100);
    assert_eq!(inst.master_down_interval(), MD_V2_100);
    // v3 at 0.1 s: skew = 156 * 10 cs / 256 = 6.09375 cs; master-down 30 + 6.09375 cs.
    let inst = Instance::new(v3(100, 1, 10)).unwrap();
    assert_eq!(inst.skew_time(), nanos(60_937_500));
    assert_eq!(inst.master_down_interval(), nanos(360_937_500));
    let owner = Instance::new(cfg(Version::V2, 255, 1)).unwrap();
    assert_eq!(owner.skew_time(), nanos(3_906_250));
}

#[test]
fn params_validation() {
    let ok = cfg(Version::V2, 100, 1);
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(RouterParams { vrid: 0, ..ok.clone() }.validate(), Err(ParamsError::ZeroVrid));
    assert_eq!(RouterParams { priority: 0, ..ok.clone() }.validate(), Err(ParamsError::ZeroPriority));
    assert_eq!(
        RouterParams { advert_interval: Centiseconds(150), ..ok.clone() }.validate(),
        Err(ParamsError::IntervalNotWholeSeconds { interval: Centiseconds(150) })
    );
    assert!(matches!(
        RouterParams { advert_interval: Centiseconds(10), ..ok.clone() }.validate(),
        Err(ParamsError::IntervalOutOfRange { .. })
    ));
    assert!(matches!(v3(100, 1, 4096).validate(), Err(ParamsError::IntervalOutOfRange { .. })));
    assert!(matches!(v3(100, 1, 0).validate(), Err(ParamsError::IntervalOutOfRange { .. })));
    assert_eq!(v3(100, 1, 1).validate(), Ok(()));
    let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    assert_eq!(
        RouterParams { primary_address: v6, ..ok.clone() }.validate(),
        Err(ParamsError::V2NeedsIpv4 { primary: v6 })
    );
    assert!(Instance::new(RouterParams { vrid: 0, ..ok }).is_err());
}

/// One transition: from the state `before` leads to, `event` must give
/// exactly `actions` and end in `state`.
struct Case {
    name: &'static str,
    params: RouterParams,
    before: Vec<Event>,
    event: Event,
    actions: Vec<Action>,
    state: State,
}

fn cases() -> Vec<Case> {
    use Action::*;
    use Event::*;
    let v2 = |p| cfg(Version::V2, p, 5);
    let synced = |p| RouterParams { sync_group: true, ..cfg(Version::V2, p, 5) };
    let backup = || vec![Startup];
    let master = || vec![Startup, MasterDownTimerFired];
    let discard = |reason| vec![Discarded(reason)];
    vec![
        Case {
            name: "6.4.1 startup: non-owner waits a master-down interval in Backup",
            params: v2(100),
            before: vec![],
            event: Startup,
            actions: vec![CancelTimers, StartMasterDownTimer(MD_V2_100), Notify(State::Backup)],
            state: State::Backup,
        },
        Case {
            name: "6.4.1 startup v3 0.1 s: master-down 0.3 s + 6.09 cs",
            params: v3(100, 5, 10),
            before: vec![],
            event: Startup,
            actions: vec![CancelTimers, StartMasterDownTimer(nanos(360_937_500)), Notify(State::Backup)],
            state: State::Backup,
        },
        Case {
            name: "6.4.1 startup: owner is master at once",
            params: v2(255),
            before: vec![],
            event: Startup,
            actions: become_master(255),
            state: State::Master,
        },
        Case {
            name: "startup while a tracked object is down goes to Fault",
            params: v2(100),
            before: vec![FaultDetected],
            event: Startup,
            actions: vec![CancelTimers, Notify(State::Fault)],
            state: State::Fault,
        },
        Case {
            name: "startup twice is ignored",
            params: v2(100),
            before: backup(),
            event: Startup,
            actions: vec![],
            state: State::Backup,
        },
        Case {
            name: "resume after a handover: Master at once, advert first",
            params: v2(100),
            before: vec![],
            event: Resume,
            actions: become_master(100),
            state: State::Master,
        },
        Case {
            name: "resume while a tracked object is down goes to Fault",
            params: v2(100),
            before: vec![FaultDetected],
            event: Resume,
            actions: vec![CancelTimers, Notify(State::Fault)],
            state: State::Fault,
        },
        Case {
            name: "resume after startup is ignored",
            params: v2(100),
            before: backup(),
            event: Resume,
            actions: vec![],
            state: State::Backup,
        },
        Case {
            name: "6.4.2 master-down timer fires: Backup -> Master",
            params: v2(100),
            before: backup(),
            event: MasterDownTimerFired,
            actions: become_master(100),
            state: State::Master,
        },
        Case {
            name: "6.4.2 priority 0 received: master-down := skew time",
            params: v2(100),
            before: backup(),
            event: advert(9, 0, 100),
            actions: vec![StartMasterDownTimer(SKEW_V2_100)],
            state: State::Backup,
        },
        Case {
            name: "6.4.2 higher priority: reset master-down",
            params: v2(100),
            before: backup(),
            event: advert(9, 150, 100),
            actions: vec![StartMasterDownTimer(MD_V2_100)],
            state: State::Backup,
        },
        Case {
            name: "6.4.2 equal priority, lower address: still accepted in Backup",
            params: v2(100),
            before: backup(),
            event: advert(1, 100, 100),
            actions: vec![StartMasterDownTimer(MD_V2_100)],
            state: State::Backup,
        },
        Case {
            name: "6.4.2 lower priority with preempt: ignored, so the timer preempts",
            params: v2(150),
            before: backup(),
            event: advert(9, 100, 100),
            actions: vec![],
            state: State::Backup,
        },
        Case {
            name: "6.4.2 lower priority with nopreempt: accepted",
            params: RouterParams { preempt: false, ..v2(150) },
            before: backup(),
            event: advert(9, 100, 100),
            actions: vec![StartMasterDownTimer(MD_V2_150)],
            state: State::Backup,
        },
        Case {
            name: "preempt_delay: lower priority accepted while the delay runs",
            params: RouterParams { preempt_delay: secs(30.0), ..v2(150) },
            before: backup(),
            event: advert(9, 100, 100),
            actions: vec![StartMasterDownTimer(MD_V2_150)],
            state: State::Backup,
        },
        Case {
            name: "preempt_delay: lower priority ignored once the delay is over",
            params: RouterParams { preempt_delay: secs(30.0), ..v2(150) },
            before: vec![Startup, PreemptDelayTimerFired],
            event: advert(9, 100, 100),
            actions: vec![],
            state: State::Backup,
        },
        Case {
            name: "preempt_delay: entering Backup starts the delay timer",
            params: RouterParams { preempt_delay: secs(30.0), ..v2(150) },
            before: vec![],
            event: Startup,
            actions: vec![
                CancelTimers,
                StartMasterDownTimer(MD_V2_150),
                StartPreemptDelayTimer(secs(30.0)),
                Notify(State::Backup),
            ],
            state: State::Backup,
        },
        Case {
            name: "v2 (RFC 3768 7.1, keepalived): interval mismatch discarded in Backup",
            params: v2(100),
            before: backup(),
            event: advert(9, 150, 200),
            actions: discard(DiscardReason::IntervalMismatch { ours: Centiseconds(100), theirs: Centiseconds(200) }),
            state: State::Backup,
        },
        Case {
            name: "v2: interval mismatch discarded in Master too",
            params: v2(100),
            before: master(),
            event: advert(9, 150, 300),
            actions: discard(DiscardReason::IntervalMismatch { ours: Centiseconds(100), theirs: Centiseconds(300) }),
            state: State::Master,
        },
        Case {
            name: "v3 6.4.2: Backup adopts the master's interval",
            params: v3(100, 5, 100),
            before: backup(),
            // 3 * 50 cs + 156 * 50 / 256 cs = 150 + 30.46875 cs
            event: advert(9, 150, 50),
            actions: vec![StartMasterDownTimer(nanos(1_804_687_500))],
            state: State::Backup,
        },
        Case {
            name: "own advert (looped back) is discarded",
            params: v2(100),
            before: backup(),
            event: advert(5, 150, 100),
            actions: discard(DiscardReason::OwnAdvert),
            state: State::Backup,
        },
        Case {
            name: "adverts before startup are discarded",
            params: v2(100),
            before: vec![],
            event: advert(9, 150, 100),
            actions: discard(DiscardReason::NotParticipating { state: State::Initialize }),
            state: State::Initialize,
        },
        Case {
            name: "6.4.3 adver timer fires: advertise and restart",
            params: v2(100),
            before: master(),
            event: AdverTimerFired,
            actions: vec![SendAdvert { priority: 100 }, StartAdverTimer(ONE_S)],
            state: State::Master,
        },
        Case {
            name: "6.4.3 priority 0 received: advertise at once, reset the timer",
            params: v2(100),
            before: master(),
            event: advert(9, 0, 100),
            actions: vec![SendAdvert { priority: 100 }, StartAdverTimer(ONE_S)],
            state: State::Master,
        },
        Case {
            name: "6.4.3 higher priority: Master -> Backup, VIPs go",
            params: v2(100),
            before: master(),
            event: advert(9, 150, 100),
            actions: vec![
                SendAdvert { priority: 100 },
                CancelTimers,
                RemoveVips,
                StartMasterDownTimer(MD_V2_100),
                Notify(State::Backup),
            ],
            state: State::Backup,
        },
        Case {
            name: "6.4.3 v3 higher priority: the new master's interval is adopted",
            params: v3(100, 5, 100),
            before: master(),
            event: advert(9, 150, 50),
            actions: vec![
                SendAdvert { priority: 100 },
                CancelTimers,
                RemoveVips,
                StartMasterDownTimer(nanos(1_804_687_500)),
                Notify(State::Backup),
            ],
            state: State::Backup,
        },
        Case {
            name: "6.4.3 equal priority, higher address: Master -> Backup",
            params: v2(100),
            before: master(),
            event: advert(9, 100, 100),
            actions: vec![
                SendAdvert { priority: 100 },
                CancelTimers,
                RemoveVips,
                StartMasterDownTimer(MD_V2_100),
                Notify(State::Backup),
            ],
            state: State::Backup,
        },
        Case {
            name: "6.4.3 equal priority, lower address: keepalived answers",
            params: v2(100),
            before: master(),
            event: advert(1, 100, 100),
            actions: vec![SendAdvert { priority: 100 }, Announce],
            state: State::Master,
        },
        Case {
            name: "keepalived: lower priority is answered with an advert and GARP",
            params: v2(150),
            before: master(),
            event: advert(9, 100, 100),
            actions: vec![SendAdvert { priority: 150 }, Announce],
            state: State::Master,
        },
        Case {
            name: "keepalived lower_prio_no_advert: lower priority ignored",
            params: RouterParams { lower_prio_no_advert: true, ..v2(150) },
            before: master(),
            event: advert(9, 100, 100),
            actions: vec![],
            state: State::Master,
        },
        Case {
            name: "6.4.3 shutdown: Master resigns with priority 0",
            params: v2(100),
            before: master(),
            event: Shutdown,
            actions: vec![SendAdvert { priority: 0 }, CancelTimers, RemoveVips, Notify(State::Initialize)],
            state: State::Initialize,
        },
        Case {
            name: "6.4.2 shutdown: Backup just stops",
            params: v2(100),
            before: backup(),
            event: Shutdown,
            actions: vec![CancelTimers, Notify(State::Initialize)],
            state: State::Initialize,
        },
        Case {
            name: "fault in Master: resign with priority 0, then drop the VIPs",
            params: v2(100),
            before: master(),
            event: FaultDetected,
            actions: vec![SendAdvert { priority: 0 }, CancelTimers, RemoveVips, Notify(State::Fault)],
            state: State::Fault,
        },
        Case {
            name: "fault in Backup",
            params: v2(100),
            before: backup(),
            event: FaultDetected,
            actions: vec![CancelTimers, Notify(State::Fault)],
            state: State::Fault,
        },
        Case {
            name: "fault cleared: Backup",
            params: v2(100),
            before: vec![Startup, FaultDetected],
            event: FaultCleared,
            actions: vec![CancelTimers, StartMasterDownTimer(MD_V2_100), Notify(State::Backup)],
            state: State::Backup,
        },
        Case {
            name: "fault cleared: owner goes straight to Master",
            params: v2(255),
            before: vec![Startup, FaultDetected],
            event: FaultCleared,
            actions: become_master(255),
            state: State::Master,
        },
        Case {
            name: "Fault ignores adverts",
            params: v2(100),
            before: vec![Startup, FaultDetected],
            event: advert(9, 0, 100),
            actions: discard(DiscardReason::NotParticipating { state: State::Fault }),
            state: State::Fault,
        },
        Case {
            name: "Fault ignores timers",
            params: v2(100),
            before: vec![Startup, FaultDetected],
            event: MasterDownTimerFired,
            actions: vec![],
            state: State::Fault,
        },
        Case {
            name: "shutdown from Fault",
            params: v2(100),
            before: vec![Startup, FaultDetected],
            event: Shutdown,
            actions: vec![CancelTimers, Notify(State::Initialize)],
            state: State::Initialize,
        },
        Case {
            name: "stale master-down fire in Master is ignored",
            params: v2(100),
            before: master(),
            event: MasterDownTimerFired,
            actions: vec![],
            state: State::Master,
        },
        Case {
            name: "stale adver timer fire in Backup is ignored",
            params: v2(100),
            before: backup(),
            event: AdverTimerFired,
            actions: vec![],
            state: State::Backup,
        },
        Case {
            name: "priority change goes out with the next advert",
            params: v2(150),
            before: vec![Startup, MasterDownTimerFired, PriorityChanged { effective: 130 }],
            event: AdverTimerFired,
            actions: vec![SendAdvert { priority: 130 }, StartAdverTimer(ONE_S)],
            state: State::Master,
        },
        Case {
            name: "effective priority is clamped to 1..=254",
            params: v2(150),
            before: vec![Startup, MasterDownTimerFired, PriorityChanged { effective: 0 }],
            event: AdverTimerFired,
            actions: vec![SendAdvert { priority: 1 }, StartAdverTimer(ONE_S)],
            state: State::Master,
        },
        Case {
            name: "an owner's priority never changes",
            params: v2(255),
            before: vec![Startup, PriorityChanged { effective: 100 }],
            event: AdverTimerFired,
            actions: vec![SendAdvert { priority: 255 }, StartAdverTimer(ONE_S)],
            state: State::Master,
        },
        Case {
            name: "sync group: master-down asks the group, re-arms, stays Backup",
            params: synced(100),
            before: backup(),
            event: MasterDownTimerFired,
            actions: vec![StartMasterDownTimer(MD_V2_100), WantsMaster(true)],
            state: State::Backup,
        },
        Case {
            name: "sync group: asking again does not repeat the wish",
            params: synced(100),
            before: vec![Startup, MasterDownTimerFired],
            event: MasterDownTimerFired,
            actions: vec![StartMasterDownTimer(MD_V2_100)],
            state: State::Backup,
        },
        Case {
            name: "sync group: a master heard again withdraws the wish",
            params: synced(100),
            before: vec![Startup, MasterDownTimerFired],
            event: advert(9, 150, 100),
            actions: vec![StartMasterDownTimer(MD_V2_100), WantsMaster(false)],
            state: State::Backup,
        },
        Case {
            name: "sync group: a resignation shortens the wait but asks the group too",
            params: synced(100),
            before: vec![Startup, advert(9, 0, 100)],
            event: MasterDownTimerFired,
            actions: vec![StartMasterDownTimer(MD_V2_100), WantsMaster(true)],
            state: State::Backup,
        },
        Case {
            name: "vrrp_sync_master: Backup -> Master at once",
            params: synced(100),
            before: vec![Startup, MasterDownTimerFired],
            event: SyncMaster,
            actions: become_master(100),
            state: State::Master,
        },
        Case {
            name: "vrrp_sync_master in Fault is ignored",
            params: synced(100),
            before: vec![Startup, FaultDetected],
            event: SyncMaster,
            actions: vec![],
            state: State::Fault,
        },
        Case {
            name: "vrrp_sync_backup: Master resigns with priority 0 and becomes Backup",
            params: synced(100),
            before: vec![Startup, MasterDownTimerFired, SyncMaster],
            event: SyncBackup,
            actions: vec![
                SendAdvert { priority: 0 },
                CancelTimers,
                RemoveVips,
                StartMasterDownTimer(MD_V2_100),
                Notify(State::Backup),
            ],
            state: State::Backup,
        },
        Case {
            name: "vrrp_sync_backup in Backup is ignored",
            params: synced(100),
            before: backup(),
            event: SyncBackup,
            actions: vec![],
            state: State::Backup,
        },
        Case {
            name: "vrrp_sync_fault in Master: resign, then Fault",
            params: synced(100),
            before: vec![Startup, MasterDownTimerFired, SyncMaster],
            event: SyncFault { on: true },
            actions: vec![SendAdvert { priority: 0 }, CancelTimers, RemoveVips, Notify(State::Fault)],
            state: State::Fault,
        },
        Case {
            name: "group fault cleared: Backup",
            params: synced(100),
            before: vec![Startup, SyncFault { on: true }],
            event: SyncFault { on: false },
            actions: vec![CancelTimers, StartMasterDownTimer(MD_V2_100), Notify(State::Backup)],
            state: State::Backup,
        },
        Case {
            name: "group fault cleared while the own tracking is down: stays Fault",
            params: synced(100),
            before: vec![Startup, FaultDetected, SyncFault { on: true }],
            event: SyncFault { on: false },
            actions: vec![],
            state: State::Fault,
        },
        Case {
            name: "own fault cleared while the group is in fault: stays Fault",
            params: synced(100),
            before: vec![Startup, SyncFault { on: true }, FaultDetected],
            event: FaultCleared,
            actions: vec![],
            state: State::Fault,
        },
        Case {
            name: "startup during a group fault goes to Fault",
            params: synced(100),
            before: vec![SyncFault { on: true }],
            event: Startup,
            actions: vec![CancelTimers, Notify(State::Fault)],
            state: State::Fault,
        },
        Case {
            name: "a backup's skew follows its effective priority",
            params: v2(100),
            before: vec![Startup, PriorityChanged { effective: 200 }],
            event: advert(9, 0, 100),
            actions: vec![StartMasterDownTimer(nanos(218_750_000))],
            state: State::Backup,
        },
    ]
}

#[test]
fn transitions() {
    for case in cases() {
        let mut inst = Instance::new(case.params).unwrap();
        for ev in case.before {
            inst.handle(ev);
        }
        assert_eq!(inst.handle(case.event), case.actions, "{}", case.name);
        assert_eq!(inst.state(), case.state, "{}", case.name);
    }
}

#[test]
fn state_names() {
    let names = [State::Initialize, State::Backup, State::Master, State::Fault].map(State::name);
    assert_eq!(names, ["STOP", "BACKUP", "MASTER", "FAULT"]);
}

#[test]
fn counters() {
    let mut inst = Instance::new(cfg(Version::V2, 100, 5)).unwrap();
    inst.handle(advert(9, 150, 100));
    inst.handle(Event::Startup);
    inst.handle(advert(9, 150, 200));
    inst.handle(advert(5, 150, 100));
    inst.handle(advert(9, 0, 100));
    inst.handle(Event::MasterDownTimerFired);
    inst.handle(Event::Shutdown);
    assert_eq!(
        *inst.counters(),
        Counters {
            adverts_received: 4,
            adverts_sent: 2,
            priority_zero_received: 1,
            priority_zero_sent: 1,
            became_master: 1,
            released_master: 1,
            discarded_not_participating: 1,
            discarded_own_advert: 1,
            discarded_interval_mismatch: 1,
        }
    );
}

#[test]
fn advertisement_for_sending() {
    let inst = Instance::new(v3(100, 5, 10)).unwrap();
    let vips = Addresses::V4(vec![Ipv4Addr::new(10, 0, 0, 100)]);
    let adv = inst.advertisement(0, Auth::pass("ignored"), vips.clone());
    assert_eq!(
        adv,
        Advertisement {
            version: Version::V3,
            vrid: 51,
            priority: 0,
            interval: Centiseconds(10),
            auth: Auth::None,
            addresses: vips
        }
    );
    let from = addr(9);
    assert_eq!(Event::advert(from, &adv), Event::AdvertReceived { from, priority: 0, max_adver_int: Centiseconds(10) });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Adver,
    MasterDown,
    PreemptDelay,
}

impl Timer {
    const fn fired(self) -> Event {
        match self {
            Self::Adver => Event::AdverTimerFired,
            Self::MasterDown => Event::MasterDownTimerFired,
            Self::PreemptDelay => Event::PreemptDelayTimerFired,
        }
    }
}

struct Node {
    inst: Instance,
    /// Deadlines of the pending timers.
    timers: BTreeMap<Timer, Duration>,
    /// SIGSTOPped: neither timers nor packets reach it.
    frozen: bool,
    vips: bool,
}

/// What a node did, and when.
#[derive(Clone, Copy, Debug)]
struct Record {
    at: Duration,
    node: usize,
    action: Action,
}

/// Routers on one segment under a virtual clock. Adverts arrive without
/// delay, but after the sender's current batch of actions; timers due at
/// the same instant fire in node order, then timer order, so every run is
/// the same.
struct Sim {
    now: Duration,
    nodes: Vec<Node>,
    queue: VecDeque<(usize, Event)>,
    log: Vec<Record>,
    /// Multicast filtered: adverts are lost, the classic split brain.
    partitioned: bool,
}

impl Sim {
    fn new(params: Vec<RouterParams>) -> Self {
        let nodes = params
            .into_iter()
            .map(|c| Node { inst: Instance::new(c).unwrap(), timers: BTreeMap::new(), frozen: false, vips: false })
            .collect();
        Self { now: Duration::ZERO, nodes, queue: VecDeque::new(), log: vec![], partitioned: false }
    }

    /// Starts all nodes now.
    fn started(params: Vec<RouterParams>) -> Self {
        let mut sim = Self::new(params);
        for i in 0..sim.nodes.len() {
            sim.event(i, Event::Startup);
        }
        sim
    }

    fn event(&mut self, node: usize, event: Event) {
        self.queue.push_back((node, event));
        while let Some((i, ev)) = self.queue.pop_front() {
            if self.nodes[i].frozen {
                continue;
            }
            for action in self.nodes[i].inst.handle(ev) {
                self.apply(i, action);
            }
        }
    }

    fn apply(&mut self, i: usize, action: Action) {
        self.log.push(Record { at: self.now, node: i, action });
        let node = &mut self.nodes[i];
        match action {
            Action::StartAdverTimer(d) => _ = node.timers.insert(Timer::Adver, self.now + d),
            Action::StartMasterDownTimer(d) => _ = node.timers.insert(Timer::MasterDown, self.now + d),
            Action::StartPreemptDelayTimer(d) => _ = node.timers.insert(Timer::PreemptDelay, self.now + d),
            Action::CancelTimers => node.timers.clear(),
            Action::AddVips => node.vips = true,
            Action::RemoveVips => node.vips = false,
            Action::SendAdvert { priority } => {
                let from = node.inst.params().primary_address;
                let max_adver_int = node.inst.params().advert_interval;
                if !self.partitioned {
                    for j in (0..self.nodes.len()).filter(|&j| j != i) {
                        self.queue.push_back((j, Event::AdvertReceived { from, priority, max_adver_int }));
                    }
                }
            }
            Action::Announce | Action::Notify(_) | Action::Discarded(_) | Action::WantsMaster(_) => {}
        }
    }

    /// Runs the clock forward by `d`, firing timers as they come due.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = (self.nodes.iter().enumerate())
                .filter(|(_, n)| !n.frozen)
                .flat_map(|(i, n)| n.timers.iter().map(move |(&t, &at)| (at, i, t)))
                .min();
            match next {
                Some((at, i, timer)) if at <= end => {
                    self.now = at;
                    self.nodes[i].timers.remove(&timer);
                    self.event(i, timer.fired());
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn advance_secs(&mut self, s: f64) {
        self.advance(secs(s));
    }

    fn state(&self, i: usize) -> State {
        self.nodes[i].inst.state()
    }

    /// When node `i` last entered `state`.
    fn entered(&self, i: usize, state: State) -> Option<Duration> {
        self.log.iter().rev().find(|r| r.node == i && matches!(r.action, Action::Notify(s) if s == state)).map(|r| r.at)
    }

    /// When node `i` last sent an advert.
    fn last_advert(&self, i: usize) -> Option<Duration> {
        self.log.iter().rev().find(|r| r.node == i && matches!(r.action, Action::SendAdvert { .. })).map(|r| r.at)
    }

    /// Every state change of node `i`, with its time.
    fn history(&self, i: usize) -> Vec<(Duration, State)> {
        (self.log.iter())
            .filter(|r| r.node == i)
            .filter_map(|r| match r.action {
                Action::Notify(s) => Some((r.at, s)),
                _ => None,
            })
            .collect()
    }

    /// Node `i`'s state changes from `from` on.
    fn history_since(&self, i: usize, from: Duration) -> Vec<(Duration, State)> {
        self.history(i).into_iter().filter(|&(at, _)| at >= from).collect()
    }

    /// The nodes holding the VIPs; more than one is split brain.
    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].vips).collect()
    }
}

#[test]
fn cold_start_waits_the_master_down_interval() {
    let mut sim = Sim::started(vec![cfg(Version::V2, 100, 1)]);
    sim.advance_secs(10.0);
    assert_eq!(sim.history(0), vec![(Duration::ZERO, State::Backup), (MD_V2_100, State::Master)]);
    assert_eq!(sim.holders(), vec![0]);
    // Advertising every second from then on.
    let sent = sim.log.iter().filter(|r| matches!(r.action, Action::SendAdvert { priority: 100 })).count();
    assert_eq!(sent, 7, "at 3.61, 4.61, ..., 9.61 s");
}

#[test]
fn cold_start_v3_fast_interval() {
    let mut sim = Sim::started(vec![v3(100, 1, 10)]);
    sim.advance_secs(1.0);
    assert_eq!(sim.entered(0, State::Master), Some(nanos(360_937_500)));
}

#[test]
fn owner_is_master_at_once_and_takes_over() {
    // A priority-100 router has been master alone; the owner starts.
    let mut sim = Sim::started(vec![cfg(Version::V2, 100, 1), cfg(Version::V2, 255, 2)]);
    sim.event(1, Event::Shutdown);
    sim.advance_secs(5.0);
    assert_eq!(sim.state(0), State::Master);
    sim.event(1, Event::Startup);
    assert_eq!(sim.entered(1, State::Master), Some(secs(5.0)));
    assert_eq!(sim.entered(0, State::Backup), Some(secs(5.0)), "stepped down on the owner's first advert");
    assert_eq!(sim.holders(), vec![1]);
    sim.advance_secs(30.0);
    assert_eq!((sim.state(0), sim.state(1)), (State::Backup, State::Master));
}

/// Starts A (priority 150) and B (priority 100) together, v2 1 s, and
/// returns once A is master.
fn pair(a: RouterParams, b: RouterParams) -> Sim {
    let mut sim = Sim::started(vec![a, b]);
    sim.advance_secs(5.0);
    assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
    sim
}

#[test]
fn frozen_master_is_replaced_after_the_master_down_interval() {
    let mut sim = pair(cfg(Version::V2, 150, 1), cfg(Version::V2, 100, 2));
    assert_eq!(sim.entered(0, State::Master), Some(MD_V2_150));
    sim.nodes[0].frozen = true;
    let last = sim.last_advert(0).unwrap();
    sim.advance_secs(10.0);
    // keepalived measured 3.610 s after the last advert.
    assert_eq!(sim.entered(1, State::Master), Some(last + MD_V2_100));
    assert_eq!(sim.holders(), vec![0, 1], "the frozen one still has them: the reason for fencing");
}

#[test]
fn clean_stop_hands_over_after_skew_time() {
    let mut sim = pair(cfg(Version::V2, 150, 1), cfg(Version::V2, 100, 2));
    sim.advance_secs(0.3);
    let stop = sim.now;
    sim.event(0, Event::Shutdown);
    sim.advance_secs(5.0);
    assert_eq!(sim.entered(1, State::Master), Some(stop + SKEW_V2_100), "keepalived: 0.610 s");
    assert_eq!(sim.holders(), vec![1]);
    assert_eq!(sim.state(0), State::Initialize);
}

#[test]
fn clean_stop_v3() {
    let mut sim = pair(v3(150, 1, 10), v3(100, 2, 10));
    let stop = sim.now;
    sim.event(0, Event::Shutdown);
    sim.advance_secs(1.0);
    // 156 * 10 cs / 256 = 60.9 ms; keepalived measured 64 ms.
    assert_eq!(sim.entered(1, State::Master), Some(stop + nanos(60_937_500)));
}

#[test]
fn higher_priority_backup_preempts() {
    let mut sim = Sim::started(vec![cfg(Version::V2, 100, 1)]);
    sim.nodes.push(Node {
        inst: Instance::new(cfg(Version::V2, 150, 2)).unwrap(),
        timers: BTreeMap::new(),
        frozen: false,
        vips: false,
    });
    sim.advance_secs(10.0);
    sim.event(1, Event::Startup);
    sim.advance_secs(10.0);
    // B ignores A's lower-priority adverts, so its timer runs out.
    let takeover = secs(10.0) + MD_V2_150;
    assert_eq!(sim.entered(1, State::Master), Some(takeover));
    assert_eq!(sim.entered(0, State::Backup), Some(takeover), "A steps down on B's first advert");
    assert_eq!(sim.holders(), vec![1]);
}

fn late_joiner(b: RouterParams, run: f64) -> Sim {
    let mut sim = Sim::new(vec![cfg(Version::V2, 100, 1), b]);
    sim.event(0, Event::Startup);
    sim.advance_secs(10.0);
    sim.event(1, Event::Startup);
    sim.advance_secs(run);
    sim
}

#[test]
fn nopreempt_keeps_the_lower_priority_master() {
    let sim = late_joiner(RouterParams { preempt: false, ..cfg(Version::V2, 150, 2) }, 100.0);
    assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
    assert_eq!(sim.holders(), vec![0]);
}

#[test]
fn preempt_delay_postpones_preemption() {
    let delay = secs(10.0);
    let sim = late_joiner(RouterParams { preempt_delay: delay, ..cfg(Version::V2, 150, 2) }, 30.0);
    // A advertises at 3.609375 + k s. B (started at 10 s) accepts them
    // until its delay ends at 20 s; the last it accepts is at 19.609375 s.
    let last_accepted = MD_V2_100 + 16 * ONE_S;
    assert_eq!(sim.entered(1, State::Master), Some(last_accepted + MD_V2_150));
    assert!(last_accepted + MD_V2_150 > secs(10.0) + delay);
    assert_eq!((sim.state(0), sim.state(1)), (State::Backup, State::Master));
}

#[test]
fn preempt_delay_restarts_on_entering_backup() {
    let mut inst = Instance::new(RouterParams { preempt_delay: secs(5.0), ..cfg(Version::V2, 150, 5) }).unwrap();
    inst.handle(Event::Startup);
    inst.handle(Event::PreemptDelayTimerFired);
    inst.handle(Event::MasterDownTimerFired);
    let actions = inst.handle(advert(9, 200, 100));
    assert!(actions.contains(&Action::StartPreemptDelayTimer(secs(5.0))), "{actions:?}");
    assert_eq!(inst.handle(advert(9, 100, 100)), vec![Action::StartMasterDownTimer(MD_V2_150)]);
}

#[test]
fn equal_priority_split_brain_heals_to_the_higher_address() {
    let mut sim = Sim::new(vec![cfg(Version::V2, 100, 1), cfg(Version::V2, 100, 2)]);
    sim.partitioned = true;
    sim.event(0, Event::Startup);
    sim.event(1, Event::Startup);
    sim.advance_secs(5.0);
    assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Master));
    assert_eq!(sim.holders(), vec![0, 1]);
    sim.partitioned = false;
    sim.advance_secs(5.0);
    // Both advertise at 5.609375 s; 10.0.0.2 wins the tie-break.
    let heal = MD_V2_100 + 2 * ONE_S;
    assert_eq!(sim.entered(0, State::Backup), Some(heal));
    assert_eq!((sim.state(0), sim.state(1)), (State::Backup, State::Master));
    assert_eq!(sim.holders(), vec![1]);
    // The winner answered the loser's advert at once (keepalived).
    let answered = sim.log.iter().any(|r| r.node == 1 && r.at == heal && r.action == Action::Announce);
    assert!(answered);
}

/// A partition heals with the winner's advert crossing first: the loser
/// steps down without the winner ever hearing a lower priority from it as
/// master. Its last advert still makes the winner announce again, so hosts
/// that followed the loser's gratuitous ARPs come back. Both orders of the
/// first adverts after the heal end the same.
#[test]
fn healed_partition_winner_announces_whichever_advert_crosses_first() {
    // B starts just after A (its adverts trail A's: A's crosses first), or
    // just before the next second (B's cross first).
    for b_late in [0.05, 0.95] {
        let mut sim = Sim::new(vec![cfg(Version::V2, 150, 1), cfg(Version::V2, 100, 2)]);
        sim.partitioned = true;
        sim.event(0, Event::Startup);
        sim.advance_secs(b_late);
        sim.event(1, Event::Startup);
        sim.advance_secs(6.0);
        assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Master), "{b_late}");
        sim.partitioned = false;
        let healed = sim.now;
        sim.advance_secs(2.0);
        assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup), "{b_late}");
        assert_eq!(sim.holders(), vec![0], "{b_late}");
        let stepped_down = sim.entered(1, State::Backup).expect("B stepped down");
        let announced = sim.log.iter().any(|r| r.node == 0 && r.at == stepped_down && r.action == Action::Announce);
        assert!(announced, "A announced when B stepped down ({b_late}): {:?}", &sim.log[sim.log.len() - 12..]);
        assert!(stepped_down - healed <= ONE_S, "{b_late}");
    }
}

#[test]
fn equal_priority_start_together_settles_without_a_tie_break() {
    let mut sim = Sim::started(vec![cfg(Version::V2, 100, 1), cfg(Version::V2, 100, 2)]);
    sim.advance_secs(20.0);
    // Both timers expire together; the first to advertise is master and the
    // other, in Backup, accepts an equal priority.
    assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
    assert_eq!(sim.holders(), vec![0]);
}

#[test]
fn v3_backup_adopts_the_masters_interval() {
    let mut sim = pair(v3(200, 1, 50), v3(100, 2, 100));
    assert_eq!(sim.nodes[1].inst.master_adver_interval(), Centiseconds(50));
    sim.nodes[0].frozen = true;
    let last = sim.last_advert(0).unwrap();
    sim.advance_secs(5.0);
    // 3 * 0.5 s + 156 * 50 / 256 cs, not the 3.61 s its own 1 s would give.
    assert_eq!(sim.entered(1, State::Master), Some(last + nanos(1_804_687_500)));
    // As master it advertises its own interval again.
    sim.advance_secs(1.0);
    assert!(sim.log.iter().any(|r| r.node == 1 && r.action == Action::StartAdverTimer(ONE_S)));
}

#[test]
fn v2_interval_mismatch_is_split_brain_like_keepalived() {
    let a = RouterParams { advert_interval: Centiseconds::from_secs(2), ..cfg(Version::V2, 150, 1) };
    let mut sim = Sim::started(vec![a, cfg(Version::V2, 100, 2)]);
    sim.advance_secs(20.0);
    assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Master));
    assert!(sim.nodes[1].inst.counters().discarded_interval_mismatch > 0);
    assert!(sim.nodes[0].inst.counters().discarded_interval_mismatch > 0);
}

/// A (150) was master of B (100) at 0.1 s; its agent exits with no
/// priority 0 and the VIPs left in place, and a new one starts `gap` later.
fn handed_over(gap: f64, start: Event) -> (Sim, Duration) {
    let mut sim = pair(v3(150, 1, 10), v3(100, 2, 10));
    sim.nodes[0].frozen = true;
    sim.advance_secs(gap);
    let restart = sim.now;
    sim.nodes[0] =
        Node { inst: Instance::new(v3(150, 1, 10)).unwrap(), timers: BTreeMap::new(), frozen: false, vips: true };
    sim.event(0, start);
    sim.advance_secs(5.0);
    (sim, restart)
}

#[test]
fn resumed_master_stays_master_across_a_handover() {
    let (sim, restart) = handed_over(0.2, Event::Resume);
    assert_eq!(sim.history_since(0, restart), vec![(restart, State::Master)], "Master at once, no Backup on the way");
    assert_eq!(sim.entered(1, State::Master), None, "B never took over");
    assert_eq!(sim.holders(), vec![0]);
    let first = sim
        .log
        .iter()
        .find(|r| r.node == 0 && r.at >= restart && matches!(r.action, Action::SendAdvert { .. }))
        .unwrap();
    assert_eq!(first.at, restart, "advertises at once");
}

#[test]
fn cold_start_after_a_handover_moves_the_vips_twice() {
    let (sim, restart) = handed_over(0.2, Event::Startup);
    // B's master-down interval (0.36 s) runs out before A's (0.34 s from its start).
    let b = sim.history_since(1, restart).into_iter().filter(|&(_, s)| s == State::Master).count();
    assert_eq!(b, 1, "B took over: {:?}", sim.history(1));
    assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup), "then A preempted it back");
}

#[test]
fn resume_yields_to_a_higher_priority_master() {
    // B (150) became master while A (100) was away; A resumes.
    let mut sim = Sim::started(vec![v3(100, 1, 10), v3(150, 2, 10)]);
    sim.advance_secs(2.0);
    assert_eq!((sim.state(0), sim.state(1)), (State::Backup, State::Master));
    sim.nodes[0] =
        Node { inst: Instance::new(v3(100, 1, 10)).unwrap(), timers: BTreeMap::new(), frozen: false, vips: true };
    let restart = sim.now;
    sim.event(0, Event::Resume);
    sim.advance_secs(2.0);
    assert_eq!(
        sim.history_since(0, restart),
        vec![(restart, State::Master), (restart, State::Backup)],
        "stepped down on B's answer"
    );
    assert_eq!(sim.state(1), State::Master);
    assert_eq!(sim.holders(), vec![1]);
}

#[test]
fn fault_in_and_out() {
    let mut sim = pair(cfg(Version::V2, 150, 1), cfg(Version::V2, 100, 2));
    let fault = sim.now;
    sim.event(0, Event::FaultDetected);
    sim.advance_secs(10.0);
    assert_eq!(sim.state(0), State::Fault);
    assert_eq!(sim.entered(1, State::Master), Some(fault + SKEW_V2_100), "A resigned with priority 0");
    assert_eq!(sim.holders(), vec![1]);

    let clear = sim.now;
    sim.event(0, Event::FaultCleared);
    sim.advance_secs(10.0);
    // Back to Backup, then A preempts B's lower priority on its own timer.
    assert_eq!(sim.entered(0, State::Backup), Some(clear));
    assert_eq!(sim.entered(0, State::Master), Some(clear + MD_V2_150));
    assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
    assert_eq!(sim.holders(), vec![0]);
}

#[test]
fn weight_smaller_than_the_gap_never_fails_over() {
    let mut sim = pair(cfg(Version::V2, 150, 1), cfg(Version::V2, 100, 2));
    // `weight -20` on a failing script: 130 is still above 100.
    sim.event(0, Event::PriorityChanged { effective: 130 });
    sim.advance_secs(60.0);
    assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
    // `weight -60`: 90 is below 100, so B stops accepting A's adverts and preempts.
    let change = sim.now;
    sim.event(0, Event::PriorityChanged { effective: 90 });
    sim.advance_secs(10.0);
    let takeover = sim.entered(1, State::Master).unwrap();
    assert!(takeover > change && takeover <= change + MD_V2_100, "{takeover:?}");
    assert_eq!((sim.state(0), sim.state(1)), (State::Backup, State::Master));
    assert_eq!(sim.holders(), vec![1]);
}

/// A long random schedule of events on three routers never breaks the
/// invariants: VIPs held exactly in Master, no timers outside Backup and
/// Master, and only one master once the network is whole and quiet.
#[test]
fn random_schedules_converge() {
    let mut seed: u64 = 0x0112_5798;
    let mut rand = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for _ in 0..50 {
        let params = vec![
            RouterParams { preempt: rand(3) != 0, ..cfg(Version::V2, 100 + rand(60) as u8, 1) },
            RouterParams { preempt_delay: secs(rand(3) as f64), ..cfg(Version::V2, 100 + rand(60) as u8, 2) },
            cfg(Version::V2, if rand(4) == 0 { 255 } else { 50 }, 3),
        ];
        let mut sim = Sim::started(params);
        for _ in 0..40 {
            let node = rand(3) as usize;
            let event = match rand(8) {
                0 => Event::Shutdown,
                1 => Event::Startup,
                2 => Event::FaultDetected,
                3 => Event::FaultCleared,
                4 => Event::PriorityChanged { effective: rand(256) as u8 },
                5 => {
                    sim.partitioned = !sim.partitioned;
                    continue;
                }
                _ => {
                    sim.advance(Duration::from_millis(rand(5000)));
                    continue;
                }
            };
            sim.event(node, event);
            for n in &sim.nodes {
                assert_eq!(n.vips, n.inst.state() == State::Master);
                if matches!(n.inst.state(), State::Initialize | State::Fault) {
                    assert!(n.timers.is_empty());
                }
            }
        }
        sim.partitioned = false;
        for i in 0..3 {
            sim.event(i, Event::FaultCleared);
            sim.event(i, Event::Startup);
        }
        sim.advance_secs(30.0);
        assert_eq!(sim.holders().len(), 1, "{:?}", (0..3).map(|i| sim.history(i)).collect::<Vec<_>>());
    }
}
