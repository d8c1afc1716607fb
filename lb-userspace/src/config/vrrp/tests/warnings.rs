//! Tracking weights that can never cause a failover.

use super::{MIN, error};
use crate::config::Config;

/// The warnings of a file that must be valid.
fn warnings(text: &str) -> Vec<String> {
    match Config::from_str(text, "lb.toml") {
        Ok(c) => c.warning_lines(),
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

#[test]
fn weights_that_cannot_fail_over_are_warned_about() {
    let script =
        |w: i32| format!("[[vrrp.track_script]]\nname = \"s{}\"\ncommand = [\"/bin/true\"]\nweight = {w}\n", w.abs());
    let dp = |w: i32| format!("[vrrp.track_fast_path]\nweight = {w}\n");
    // MIN is lines 1-5; `priority` and `peer_priority` are lines 6-7, tracking from line 8.
    let inst = |prio: u8, peer: Option<u8>, tracking: &str| {
        let peer = peer.map_or("\n".to_owned(), |p| format!("peer_priority = {p}\n"));
        format!("{MIN}priority = {prio}\n{peer}{tracking}")
    };
    struct Case {
        name: &'static str,
        text: String,
        want: Vec<&'static str>,
    }
    let cases = [
        Case { name: "no peer_priority: nothing to compare with", text: inst(150, None, &script(-20)), want: vec![] },
        Case { name: "big enough: 150 - 60 < 100", text: inst(150, Some(100), &script(-60)), want: vec![] },
        Case {
            name: "too small: 150 - 20 = 130",
            text: inst(150, Some(100), &script(-20)),
            want: vec![
                "lb.toml:11:10: warning: track_script s20: weight -20 can never cause a failover: 150 - 20 = 130 is not below peer_priority 100 (needs a magnitude of at least 51, or weight 0 for FAULT)",
            ],
        },
        Case {
            name: "equal is not enough: the backup accepts an equal priority",
            text: inst(150, Some(100), &dp(-50)),
            want: vec![
                "lb.toml:9:10: warning: track_fast_path: weight -50 can never cause a failover: 150 - 50 = 100 is not below peer_priority 100 (needs a magnitude of at least 51, or weight 0 for FAULT)",
            ],
        },
        Case { name: "weight 0 is FAULT: always fails over", text: inst(150, Some(100), &dp(0)), want: vec![] },
        Case {
            name: "a positive weight lost on failure: 100 + 20 = 120, failing 100 < 110",
            text: inst(100, Some(110), &script(20)),
            want: vec![],
        },
        Case {
            name: "a positive weight too small: 120 - 20 = 100, not below 90",
            text: inst(100, Some(90), &script(20)),
            want: vec![
                "lb.toml:11:10: warning: track_script s20: weight 20 can never cause a failover: 120 - 20 = 100 is not below peer_priority 90 (needs a magnitude of at least 31, or weight 0 for FAULT)",
            ],
        },
        Case {
            name: "we are the backup: our weights move nothing",
            text: inst(100, Some(150), &script(-20)),
            want: vec![],
        },
        Case {
            name: "two small weights, neither alone nor together enough",
            text: inst(200, Some(100), &format!("{}{}", script(-30), dp(-40))),
            want: vec![
                "lb.toml:7:17: warning: even all tracked objects failing together leave priority 130, not below peer_priority 100: tracking can never move the VIPs to the peer",
                "lb.toml:11:10: warning: track_script s30: weight -30 can never cause a failover: 200 - 30 = 170 is not below peer_priority 100 (needs a magnitude of at least 101, or weight 0 for FAULT)",
                "lb.toml:13:10: warning: track_fast_path: weight -40 can never cause a failover: 200 - 40 = 160 is not below peer_priority 100 (needs a magnitude of at least 101, or weight 0 for FAULT)",
            ],
        },
        Case {
            name: "the owner's 255 never changes, peer_priority or not",
            text: inst(255, None, &format!("{}{}", script(-100), dp(0))),
            want: vec![
                "lb.toml:11:10: warning: track_script s100: weight -100 has no effect: priority 255 (address owner) never changes, so this director stays master; use weight 0 (FAULT) or a priority below 255",
            ],
        },
    ];
    for c in cases {
        assert_eq!(warnings(&c.text), c.want, "{}", c.name);
    }
    let e = error(&inst(150, Some(0), ""));
    assert!(e.contains("lb.toml:7:17: peer_priority 0 out of range 1..=255"), "{e}");
}
