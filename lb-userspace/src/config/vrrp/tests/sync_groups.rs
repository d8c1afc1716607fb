//! `[[vrrp_sync_group]]`: members, names, and a group of one.

use super::{MIN, error};
use crate::config::{Config, Position};

fn two(name1: &str, name2: &str) -> String {
    format!("{}{}", MIN.replace("VI_1", name1), MIN.replace("VI_1", name2).replace("= 51", "= 52"))
}

#[test]
fn sync_groups() {
    let text = format!(
        "{}[[vrrp_sync_group]]\nname = \"G1\"\ngroup = [\"VI_1\", \"VI_2\"]\nnotify = \"/bin/n group\"\nnotify_user = \"u\"\n",
        two("VI_1", "VI_2")
    );
    let c = Config::from_str(&text, "lb.toml").unwrap();
    let g = &c.vrrp_sync_groups[0];
    assert_eq!((g.name.as_str(), g.members.clone()), ("G1", vec!["VI_1".to_owned(), "VI_2".to_owned()]));
    assert_eq!(g.notify.any, Some(vec!["/bin/n".to_owned(), "group".to_owned()]));
    assert_eq!(g.notify.user, "u");
    assert_eq!(g.at, Position { line: 11, column: 1 });
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn sync_group_errors_and_warnings() {
    let base = two("VI_1", "VI_2");
    let group = |name: &str, members: &str| format!("[[vrrp_sync_group]]\nname = \"{name}\"\ngroup = [{members}]\n");
    // Lines 11-13: G1; 14-16: G2.
    let text = format!("{base}{}{}", group("G1", "\"VI_1\", \"VI_3\", \"VI_1\""), group("G2", "\"VI_2\", \"VI_1\""));
    assert_eq!(
        error(&text),
        "lb.toml:13:18: sync group G1: no [[vrrp]] instance is called \"VI_3\"\n\
         lb.toml:13:26: sync group G1: instance VI_1 is listed twice\n\
         lb.toml:16:18: instance VI_1 is already in sync group G1 (line 13): an instance belongs to one group at most"
    );
    let e = error(&format!("{base}{}{}", group("G1", ""), group("G1", "\"VI_2\", \"VI_1\"")));
    assert!(e.contains("lb.toml:13:9: sync group G1 is empty"), "{e}");
    assert!(e.contains("lb.toml:15:8: duplicate sync group name \"G1\": already at line 12"), "{e}");
    // A group of one: keepalived removes it with a warning; so do we, as a warning.
    let c = Config::from_str(&format!("{base}{}", group("G1", "\"VI_2\"")), "lb.toml").unwrap();
    assert_eq!(
        c.warning_lines(),
        vec![
            "lb.toml:13:9: warning: sync group G1 has only one instance: it does nothing (keepalived removes such a group)"
        ]
    );
}
