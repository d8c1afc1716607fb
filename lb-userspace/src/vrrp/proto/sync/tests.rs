use std::{
    collections::{BTreeMap, VecDeque},
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use super::*;
use crate::vrrp::{Action, Instance, RouterParams, Version, packet::Centiseconds};

// ---- The group's rules, one input at a time.

struct Case {
    name: &'static str,
    /// Member states and wishes before, fed as inputs.
    before: Vec<Input>,
    input: Input,
    out: Vec<Output>,
}

fn st(member: usize, state: State) -> Input {
    Input::State { member, state }
}

fn wants(member: usize, wants: bool) -> Input {
    Input::WantsMaster { member, wants }
}

fn deliver(member: usize, event: Event) -> Output {
    Output::Deliver { member, event }
}

fn cases() -> Vec<Case> {
    use State::*;
    let backups = || vec![st(0, Backup), st(1, Backup), st(2, Backup)];
    let masters = || vec![st(0, Master), st(1, Master), st(2, Master)];
    vec![
        Case {
            name: "the first member to start makes the group BACKUP",
            before: vec![],
            input: st(0, Backup),
            out: vec![Output::Notify(Backup)],
        },
        Case {
            name: "vrrp_sync_can_goto_master: not while another member hears a master",
            before: backups(),
            input: wants(0, true),
            out: vec![],
        },
        Case {
            name: "vrrp_sync_can_goto_master: not while only some want it",
            before: [backups(), vec![wants(1, true)]].concat(),
            input: wants(0, true),
            out: vec![],
        },
        Case {
            name: "vrrp_sync_can_goto_master: the last one to want it goes first",
            before: [backups(), vec![wants(1, true), wants(2, true)]].concat(),
            input: wants(0, true),
            out: vec![deliver(0, Event::SyncMaster)],
        },
        Case {
            name: "a withdrawn wish counts no more",
            before: [backups(), vec![wants(1, true), wants(2, true), wants(2, false)]].concat(),
            input: wants(0, true),
            out: vec![],
        },
        Case {
            name: "vrrp_sync_master: a member that became master takes the backups along",
            before: [backups(), vec![wants(1, true), wants(2, true), wants(0, true)]].concat(),
            input: st(0, Master),
            out: vec![deliver(1, Event::SyncMaster), deliver(2, Event::SyncMaster), Output::Notify(Master)],
        },
        Case {
            name: "with a master in the group, a member's wish is granted at once",
            before: vec![st(0, Master), st(1, Master), st(2, Backup)],
            input: wants(2, true),
            out: vec![deliver(2, Event::SyncMaster)],
        },
        Case {
            name: "vrrp_sync_backup: a master stepping down takes the others' mastership",
            before: masters(),
            input: st(1, Backup),
            out: vec![deliver(0, Event::SyncBackup), deliver(2, Event::SyncBackup)],
        },
        Case {
            name: "the last master stepping down makes the group BACKUP",
            before: vec![st(0, Master), st(1, Backup), st(2, Backup)],
            input: st(0, Backup),
            out: vec![Output::Notify(Backup)],
        },
        Case {
            name: "vrrp_sync_fault: one member's tracking down puts the others in FAULT",
            before: masters(),
            input: Input::Tracking { member: 1, faulty: true },
            out: vec![deliver(0, Event::SyncFault { on: true }), deliver(2, Event::SyncFault { on: true })],
        },
        Case {
            name: "the first member in FAULT makes the group FAULT",
            before: [masters(), vec![Input::Tracking { member: 1, faulty: true }]].concat(),
            input: st(1, Fault),
            out: vec![Output::Notify(Fault)],
        },
        Case {
            name: "a second faulty member puts the first in group fault too",
            before: [backups(), vec![Input::Tracking { member: 1, faulty: true }]].concat(),
            input: Input::Tracking { member: 2, faulty: true },
            out: vec![deliver(1, Event::SyncFault { on: true })],
        },
        Case {
            name: "recovery: the others leave FAULT when no member is faulty",
            before: [backups(), vec![Input::Tracking { member: 1, faulty: true }]].concat(),
            input: Input::Tracking { member: 1, faulty: false },
            out: vec![deliver(0, Event::SyncFault { on: false }), deliver(2, Event::SyncFault { on: false })],
        },
        Case {
            name: "recovery of one of two faulty members changes nothing for the third",
            before: [
                backups(),
                vec![Input::Tracking { member: 1, faulty: true }, Input::Tracking { member: 2, faulty: true }],
            ]
            .concat(),
            input: Input::Tracking { member: 1, faulty: false },
            out: vec![deliver(2, Event::SyncFault { on: false })],
        },
        Case {
            name: "all stopped: STOP",
            before: vec![st(0, Backup), st(1, Backup), st(2, Initialize)],
            input: st(0, Initialize),
            out: vec![],
        },
    ]
}

#[test]
fn rules() {
    for case in cases() {
        let mut group = SyncGroup::new(3);
        for input in case.before {
            group.handle(input);
        }
        assert_eq!(group.handle(case.input), case.out, "{}", case.name);
    }
}

#[test]
fn stop_notified_when_the_last_member_stops() {
    let mut group = SyncGroup::new(2);
    group.handle(st(0, State::Backup));
    group.handle(st(1, State::Backup));
    assert_eq!(group.handle(st(0, State::Initialize)), vec![]);
    assert_eq!(group.handle(st(1, State::Initialize)), vec![Output::Notify(State::Initialize)]);
}

// ---- Two directors, each with VI_1 and VI_2 in one group, under a virtual clock.

const A: usize = 0;
const B: usize = 1;

struct Node {
    director: usize,
    member: usize,
    inst: Instance,
    timers: BTreeMap<u8, Duration>,
    vips: bool,
}

enum Msg {
    Event(usize, Event),
    Group(usize, Input),
}

struct Sim {
    now: Duration,
    nodes: Vec<Node>,
    groups: Vec<SyncGroup>,
    queue: VecDeque<Msg>,
    /// (time, director, group state) for every group notify.
    group_log: Vec<(Duration, usize, State)>,
}

impl Sim {
    /// Director A has priority `a` on both instances, B has `b`; v3 at 100 ms.
    fn new(a: u8, b: u8) -> Sim {
        let mut nodes = Vec::new();
        for (director, priority) in [(A, a), (B, b)] {
            for member in 0..2 {
                let primary = IpAddr::V4(Ipv4Addr::new(10, 0, member as u8, director as u8 + 1));
                let params = RouterParams {
                    priority,
                    advert_interval: Centiseconds(10),
                    sync_group: true,
                    ..RouterParams::new(Version::V3, member as u8 + 1, primary)
                };
                nodes.push(Node {
                    director,
                    member,
                    inst: Instance::new(params).unwrap(),
                    timers: BTreeMap::new(),
                    vips: false,
                });
            }
        }
        Sim {
            now: Duration::ZERO,
            nodes,
            groups: vec![SyncGroup::new(2); 2],
            queue: VecDeque::new(),
            group_log: vec![],
        }
    }

    fn node(&self, director: usize, member: usize) -> usize {
        self.nodes.iter().position(|n| n.director == director && n.member == member).unwrap()
    }

    fn send(&mut self, msg: Msg) {
        self.queue.push_back(msg);
        while let Some(msg) = self.queue.pop_front() {
            match msg {
                Msg::Event(i, ev) => {
                    for action in self.nodes[i].inst.handle(ev) {
                        self.apply(i, action);
                    }
                }
                Msg::Group(d, input) => {
                    for out in self.groups[d].handle(input) {
                        match out {
                            Output::Deliver { member, event } => {
                                let i = self.node(d, member);
                                self.queue.push_back(Msg::Event(i, event));
                            }
                            Output::Notify(state) => self.group_log.push((self.now, d, state)),
                        }
                    }
                }
            }
        }
    }

    fn apply(&mut self, i: usize, action: Action) {
        let (d, member) = (self.nodes[i].director, self.nodes[i].member);
        let node = &mut self.nodes[i];
        match action {
            Action::StartAdverTimer(t) => _ = node.timers.insert(0, self.now + t),
            Action::StartMasterDownTimer(t) => _ = node.timers.insert(1, self.now + t),
            Action::StartPreemptDelayTimer(t) => _ = node.timers.insert(2, self.now + t),
            Action::CancelTimers => node.timers.clear(),
            Action::AddVips => node.vips = true,
            Action::RemoveVips => node.vips = false,
            Action::SendAdvert { priority } => {
                let from = node.inst.params().primary_address;
                let max_adver_int = node.inst.params().advert_interval;
                let peer = self.node(1 - d, member);
                self.queue.push_back(Msg::Event(peer, Event::AdvertReceived { from, priority, max_adver_int }));
            }
            Action::Notify(state) => self.queue.push_back(Msg::Group(d, Input::State { member, state })),
            Action::WantsMaster(wants) => self.queue.push_back(Msg::Group(d, Input::WantsMaster { member, wants })),
            Action::Announce | Action::Discarded(_) => {}
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = (self.nodes.iter().enumerate())
                .flat_map(|(i, n)| n.timers.iter().map(move |(&t, &at)| (at, i, t)))
                .min();
            match next {
                Some((at, i, timer)) if at <= end => {
                    self.now = at;
                    self.nodes[i].timers.remove(&timer);
                    let ev = [Event::AdverTimerFired, Event::MasterDownTimerFired, Event::PreemptDelayTimerFired];
                    self.send(Msg::Event(i, ev[usize::from(timer)]));
                }
                _ => break,
            }
        }
        self.now = end;
    }

    /// Own tracking of one member changes: what the runtime does.
    fn tracking(&mut self, director: usize, member: usize, faulty: bool) {
        let i = self.node(director, member);
        self.send(Msg::Event(i, if faulty { Event::FaultDetected } else { Event::FaultCleared }));
        self.send(Msg::Group(director, Input::Tracking { member, faulty }));
    }

    fn states(&self, director: usize) -> [State; 2] {
        [0, 1].map(|m| self.nodes[self.node(director, m)].inst.state())
    }

    fn holders(&self) -> Vec<(usize, usize)> {
        self.nodes.iter().filter(|n| n.vips).map(|n| (n.director, n.member)).collect()
    }

    fn group_entered(&self, director: usize, state: State) -> Option<Duration> {
        self.group_log.iter().rev().find(|&&(_, d, s)| d == director && s == state).map(|&(at, _, _)| at)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A (150) and B (100) started together; A holds both.
fn settled() -> Sim {
    let mut sim = Sim::new(150, 100);
    for i in 0..sim.nodes.len() {
        sim.send(Msg::Event(i, Event::Startup));
    }
    sim.advance(ms(2000));
    assert_eq!(sim.states(A), [State::Master; 2]);
    assert_eq!(sim.states(B), [State::Backup; 2]);
    assert_eq!(sim.holders(), vec![(A, 0), (A, 1)]);
    sim
}

#[test]
fn both_start_and_the_higher_director_takes_the_whole_group() {
    let sim = settled();
    // A's members both ran out of master-down (3 x 100 ms + skew 41 ms), the second one's wish completed the group.
    assert_eq!(sim.group_entered(A, State::Master), Some(Duration::from_nanos(341_406_250)));
    assert_eq!(sim.group_entered(B, State::Backup), Some(Duration::ZERO));
    assert_eq!(sim.group_entered(B, State::Master), None, "B never took over");
}

#[test]
fn one_member_fault_moves_the_whole_group_to_the_peer_and_back() {
    let mut sim = settled();
    let down = sim.now;
    sim.tracking(A, 0, true);
    assert_eq!(sim.states(A), [State::Fault; 2], "the other member followed into FAULT");
    sim.advance(ms(1000));
    assert_eq!(sim.states(B), [State::Master; 2]);
    assert_eq!(sim.holders(), vec![(B, 0), (B, 1)]);
    // Both of A's members resigned with priority 0: B takes over after its skew time (156 x 10 cs / 256).
    assert_eq!(sim.group_entered(B, State::Master), Some(down + Duration::from_nanos(60_937_500)));
    assert_eq!(sim.group_entered(A, State::Fault), Some(down));

    let up = sim.now;
    sim.tracking(A, 0, false);
    assert_eq!(sim.states(A), [State::Backup; 2], "both left FAULT together");
    sim.advance(ms(1000));
    assert_eq!(sim.states(A), [State::Master; 2], "and preempted back together");
    assert_eq!(sim.states(B), [State::Backup; 2]);
    assert_eq!(sim.holders(), vec![(A, 0), (A, 1)]);
    let back = sim.group_entered(A, State::Master).unwrap();
    assert!(back > up && back <= up + ms(400), "{back:?}");
}

#[test]
fn a_weight_on_one_member_does_not_split_the_group() {
    let mut sim = settled();
    // VI_1 on A drops below B's 100: B's VI_1 wants master, but B's VI_2
    // still hears A's healthy 150, so the group prefers backup (keepalived).
    let i = sim.node(A, 0);
    sim.send(Msg::Event(i, Event::PriorityChanged { effective: 90 }));
    sim.advance(ms(5000));
    assert_eq!(sim.states(A), [State::Master; 2]);
    assert_eq!(sim.states(B), [State::Backup; 2]);
    assert_eq!(sim.holders(), vec![(A, 0), (A, 1)], "never split across directors");
    // The same drop on both members moves the group.
    let j = sim.node(A, 1);
    sim.send(Msg::Event(j, Event::PriorityChanged { effective: 90 }));
    sim.advance(ms(2000));
    assert_eq!(sim.states(B), [State::Master; 2]);
    assert_eq!(sim.states(A), [State::Backup; 2]);
    assert_eq!(sim.holders(), vec![(B, 0), (B, 1)]);
}

#[test]
fn a_master_stepping_down_takes_the_other_member_along() {
    let mut sim = settled();
    // B's VI_1 is reconfigured to the owner's 255 and restarts: A's VI_1
    // steps down on its first advert, and vrrp_sync_backup resigns VI_2.
    let i = sim.node(B, 0);
    let mut cfg = sim.nodes[i].inst.params().clone();
    cfg.priority = 255;
    sim.nodes[i].inst = Instance::new(cfg).unwrap();
    sim.groups[B] = SyncGroup::new(2);
    sim.send(Msg::Group(B, Input::State { member: 1, state: State::Backup }));
    sim.send(Msg::Event(i, Event::Startup));
    sim.advance(ms(2000));
    assert_eq!(sim.states(B), [State::Master; 2], "the owner took B's other member along");
    assert_eq!(sim.states(A), [State::Backup; 2]);
    assert_eq!(sim.holders(), vec![(B, 0), (B, 1)]);
}
