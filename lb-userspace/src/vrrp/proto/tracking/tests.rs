use std::time::Duration;

use super::*;

fn track_script(name: &str, weight: i32, rise: u32, fall: u32) -> TrackScript {
    TrackScript {
        name: name.into(),
        command: vec!["/bin/true".into()],
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        rise,
        fall,
        weight,
        user: "nobody".into(),
    }
}

#[test]
fn rise_and_fall() {
    let mut s = ScriptState::new(&track_script("s", 0, 2, 3));
    assert!(s.ok());
    assert!(!s.record(false));
    assert!(!s.record(true), "a success resets the failure streak");
    assert!(!s.record(false));
    assert!(!s.record(false));
    assert!(s.record(false), "third consecutive failure");
    assert!(s.faults());
    assert!(!s.record(true));
    assert!(!s.record(false));
    assert!(!s.record(true));
    assert!(s.record(true), "two consecutive successes");
    assert!(!s.faults());
}

const VIP: &str = "10.0.0.100";
const OTHER_VIP: &str = "10.0.0.200";

/// What happens before the evaluation the case looks at.
enum Input {
    /// A link poll: these tracked interfaces are down.
    Down(&'static [&'static str]),
    /// A run of the script with this index.
    Script(usize, bool),
    /// The agent's report.
    FastPath(FastPathHealth),
    /// An evaluation whose result the case does not look at.
    Evaluate,
}

fn detached(ifname: &str) -> Input {
    Input::FastPath(FastPathHealth { detached: vec![ifname.into()], vips_without_backend: vec![] })
}

fn no_backend(vip: &str) -> Input {
    Input::FastPath(FastPathHealth { detached: vec![], vips_without_backend: vec![vip.parse().unwrap()] })
}

fn healthy() -> Input {
    Input::FastPath(FastPathHealth::default())
}

/// One instance's tracking: after `inputs`, an evaluation must give
/// `update`, `priority` and `reasons`.
struct Case {
    name: &'static str,
    base: u8,
    /// `(weight, rise, fall)`, named chk0, chk1, ...
    scripts: Vec<(i32, u32, u32)>,
    fast_path: Option<TrackFastPath>,
    inputs: Vec<Input>,
    update: Update,
    priority: u8,
    reasons: Vec<&'static str>,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            name: "",
            base: 100,
            scripts: vec![],
            fast_path: None,
            inputs: vec![],
            update: Update::default(),
            priority: 100,
            reasons: vec![],
        }
    }
}

const FAULT_ON_DATAPLANE: Option<TrackFastPath> = Some(TrackFastPath { weight: 0, no_live_backend: false });
const WEIGHTED_DATAPLANE: Option<TrackFastPath> = Some(TrackFastPath { weight: -60, no_live_backend: true });

fn priority(p: u8) -> Update {
    Update { priority: Some(p), ..Update::default() }
}

fn fault(on: bool) -> Update {
    Update { fault: Some(on), ..Update::default() }
}

fn cases() -> Vec<Case> {
    use Input::*;
    vec![
        Case { name: "nothing failing: the base, nothing to report", ..Case::default() },
        Case {
            name: "the instance's own interface down: FAULT",
            inputs: vec![Down(&["eth0"])],
            update: fault(true),
            reasons: vec!["interface eth0 is down"],
            ..Case::default()
        },
        Case {
            name: "still down at the next poll: reported once",
            inputs: vec![Down(&["eth1"]), Evaluate, Down(&["eth1"])],
            reasons: vec!["interface eth1 is down"],
            ..Case::default()
        },
        Case {
            name: "a tracked interface up again: FAULT left",
            inputs: vec![Down(&["eth1"]), Evaluate, Down(&[])],
            update: fault(false),
            ..Case::default()
        },
        Case {
            name: "one of two down interfaces back: still FAULT, nothing to report",
            inputs: vec![Down(&["eth0", "eth1"]), Evaluate, Down(&["eth1"])],
            reasons: vec!["interface eth1 is down"],
            ..Case::default()
        },
        Case {
            name: "weight 0 script one failure short of fall: nothing yet",
            scripts: vec![(0, 1, 2)],
            inputs: vec![Script(0, false)],
            ..Case::default()
        },
        Case {
            name: "weight 0 script failed `fall` times: FAULT",
            scripts: vec![(0, 1, 2)],
            inputs: vec![Script(0, false), Script(0, false)],
            update: fault(true),
            reasons: vec!["track_script chk0 failed"],
            ..Case::default()
        },
        Case {
            name: "weight 0 script back after `rise` successes: FAULT left",
            scripts: vec![(0, 2, 1)],
            inputs: vec![Script(0, false), Evaluate, Script(0, true), Script(0, true)],
            update: fault(false),
            ..Case::default()
        },
        Case { name: "a script result for no script: ignored", inputs: vec![Script(3, false)], ..Case::default() },
        Case {
            name: "positive weight counts while OK, from the start",
            scripts: vec![(20, 1, 1)],
            update: priority(120),
            priority: 120,
            ..Case::default()
        },
        Case {
            name: "positive weight lost when the script fails",
            scripts: vec![(20, 1, 1)],
            inputs: vec![Evaluate, Script(0, false)],
            update: priority(100),
            ..Case::default()
        },
        Case {
            name: "negative weight while failed",
            scripts: vec![(-60, 1, 1)],
            inputs: vec![Script(0, false)],
            update: priority(40),
            priority: 40,
            ..Case::default()
        },
        Case {
            name: "weights add up",
            scripts: vec![(20, 1, 1), (-60, 1, 1), (-10, 1, 1)],
            inputs: vec![Script(1, false), Script(2, false)],
            update: priority(50),
            priority: 50,
            ..Case::default()
        },
        Case {
            name: "clamped at 1",
            base: 50,
            scripts: vec![(-60, 1, 1)],
            inputs: vec![Script(0, false)],
            update: priority(1),
            priority: 1,
            ..Case::default()
        },
        Case {
            name: "clamped at 254",
            scripts: vec![(200, 1, 1)],
            update: priority(254),
            priority: 254,
            ..Case::default()
        },
        Case {
            name: "the owner's 255 never changes",
            base: 255,
            scripts: vec![(-60, 1, 1), (20, 1, 1)],
            inputs: vec![Script(0, false)],
            priority: 255,
            ..Case::default()
        },
        Case {
            name: "the owner still goes to FAULT",
            base: 255,
            scripts: vec![(0, 1, 1)],
            inputs: vec![Script(0, false)],
            update: fault(true),
            priority: 255,
            reasons: vec!["track_script chk0 failed"],
            ..Case::default()
        },
        Case {
            name: "priority and FAULT change together: both reported",
            scripts: vec![(-30, 1, 1)],
            inputs: vec![Down(&["eth0"]), Script(0, false)],
            update: Update { priority: Some(70), fault: Some(true), ..Update::default() },
            priority: 70,
            reasons: vec!["interface eth0 is down"],
            ..Case::default()
        },
        Case {
            name: "fast path: nothing reported yet counts as healthy",
            fast_path: FAULT_ON_DATAPLANE,
            ..Case::default()
        },
        Case {
            name: "fast path weight 0, XDP detached: FAULT",
            fast_path: FAULT_ON_DATAPLANE,
            inputs: vec![detached("eth0")],
            update: Update {
                fast_path: Some(vec!["fast path: XDP program not attached to eth0".into()]),
                fault: Some(true),
                ..Update::default()
            },
            reasons: vec!["fast path: XDP program not attached to eth0"],
            ..Case::default()
        },
        Case {
            name: "fast path weight 0: a VIP without backend ignored without no_live_backend",
            fast_path: FAULT_ON_DATAPLANE,
            inputs: vec![no_backend(VIP)],
            ..Case::default()
        },
        Case {
            name: "fast path weighted, no live backend for our VIP: priority only",
            fast_path: WEIGHTED_DATAPLANE,
            inputs: vec![no_backend(VIP)],
            update: Update {
                fast_path: Some(vec!["fast path: VIP 10.0.0.100 has no live backend".into()]),
                priority: Some(40),
                ..Update::default()
            },
            priority: 40,
            ..Case::default()
        },
        Case {
            name: "fast path: another VIP's backends are not ours",
            fast_path: WEIGHTED_DATAPLANE,
            inputs: vec![no_backend(OTHER_VIP)],
            ..Case::default()
        },
        Case {
            name: "fast path the same at the next report: nothing to report",
            fast_path: FAULT_ON_DATAPLANE,
            inputs: vec![detached("eth0"), Evaluate, detached("eth0")],
            reasons: vec!["fast path: XDP program not attached to eth0"],
            ..Case::default()
        },
        Case {
            name: "fast path healthy again: FAULT left",
            fast_path: FAULT_ON_DATAPLANE,
            inputs: vec![detached("eth0"), Evaluate, healthy()],
            update: Update { fast_path: Some(vec![]), fault: Some(false), ..Update::default() },
            ..Case::default()
        },
        Case { name: "a report without track_fast_path: ignored", inputs: vec![detached("eth0")], ..Case::default() },
        Case {
            name: "reasons in order: interfaces, scripts, fast path",
            scripts: vec![(0, 1, 1), (-10, 1, 1), (0, 1, 1)],
            fast_path: FAULT_ON_DATAPLANE,
            inputs: vec![
                detached("eth0"),
                Script(2, false),
                Script(1, false),
                Script(0, false),
                Down(&["eth1", "eth0"]),
            ],
            update: Update {
                fast_path: Some(vec!["fast path: XDP program not attached to eth0".into()]),
                priority: Some(90),
                fault: Some(true),
            },
            priority: 90,
            reasons: vec![
                "interface eth1 is down",
                "interface eth0 is down",
                "track_script chk0 failed",
                "track_script chk2 failed",
                "fast path: XDP program not attached to eth0",
            ],
            ..Case::default()
        },
    ]
}

#[test]
fn tracking_table() {
    for c in cases() {
        let scripts: Vec<TrackScript> = (c.scripts.iter().enumerate())
            .map(|(i, &(weight, rise, fall))| track_script(&format!("chk{i}"), weight, rise, fall))
            .collect();
        let interfaces = vec!["eth0".to_owned(), "eth1".to_owned()];
        let vips = vec![VIP.parse().unwrap()];
        let mut t = Tracking::new(c.base, interfaces, &scripts, c.fast_path, vips);
        for input in c.inputs {
            match input {
                Input::Down(down) => {
                    t.links_down(down.iter().map(|&n| n.to_owned()).collect());
                }
                Input::Script(i, success) => {
                    t.script_result(i, success);
                }
                Input::FastPath(health) => {
                    t.report_fast_path(health);
                }
                Input::Evaluate => {
                    t.evaluate();
                }
            }
        }
        assert_eq!(t.evaluate(), c.update, "{}", c.name);
        assert_eq!(t.priority(), c.priority, "{}: priority", c.name);
        assert_eq!(t.fault_reasons(), c.reasons, "{}: reasons", c.name);
        assert_eq!(t.fault(), !c.reasons.is_empty(), "{}: fault", c.name);
        assert_eq!(t.evaluate(), Update::default(), "{}: a second evaluation reports nothing", c.name);
    }
}

#[test]
fn reports_what_changed() {
    let mut t = Tracking::new(100, vec!["eth0".into(), "eth1".into()], &[track_script("chk", -10, 2, 1)], None, vec![]);
    assert_eq!(t.links_down(vec!["eth1".into()]), LinkChanges { down: vec!["eth1".into()], up: vec![] });
    assert_eq!(t.links_down(vec!["eth0".into()]), LinkChanges { down: vec!["eth0".into()], up: vec!["eth1".into()] });
    assert_eq!(t.links_down(vec!["eth0".into()]), LinkChanges::default());
    assert_eq!(t.script_result(0, false).map(ScriptState::ok), Some(false), "fall 1: failed at once");
    assert_eq!(t.script_result(0, true).map(ScriptState::ok), None, "rise 2: not yet");
    assert_eq!(t.script_result(0, true).map(ScriptState::ok), Some(true));
    assert_eq!(t.script_result(1, true).map(ScriptState::ok), None, "no such script");
    assert!(!t.report_fast_path(FastPathHealth::default()), "not tracked");
    let mut d = Tracking::new(100, vec![], &[], WEIGHTED_DATAPLANE, vec![]);
    assert!(d.report_fast_path(FastPathHealth::default()), "the first report");
    assert!(!d.report_fast_path(FastPathHealth::default()), "the same again");
}

#[test]
fn for_an_instance() {
    let toml = r#"
        [[vrrp]]
        name = "VI_1"
        interface = "eth0"
        virtual_router_id = 51
        priority = 150
        virtual_ipaddress = ["10.0.0.100/24"]
        track_interface = ["eth1", "eth0", "eth2"]
        track_fast_path = { weight = -60, no_live_backend = true }
    "#;
    let cfg = match crate::config::Config::from_str(toml, "t.toml") {
        Ok(c) => c.vrrp.into_iter().next().expect("one instance"),
        Err(e) => panic!("{e}"),
    };
    let mut t = Tracking::for_instance(&cfg);
    assert_eq!(t.interfaces(), ["eth0", "eth1", "eth2"], "its own first, once");
    assert_eq!(t.priority(), 150);
    t.report_fast_path(FastPathHealth { detached: vec![], vips_without_backend: vec![VIP.parse().unwrap()] });
    assert_eq!(t.evaluate().priority, Some(90));
}
