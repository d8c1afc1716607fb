//! Which VRRP instances a configuration reload must touch. An instance that
//! is restarted for nothing costs a state change, a gap in its adverts and,
//! on a master, a VIP flap with the peer taking over for a moment; so only
//! what changed restarts.
//!
//! - Unchanged: the same `[[vrrp]]` table, where it sits in the file aside
//!   (`at`), and `peer_priority` aside (a hint for `lb check` only), and the
//!   same sync group (or none). Keeps running untouched.
//! - Changed (any field, `virtual_routes` included): restarted (priority 0
//!   from a master, then started afresh), so a master's routes are the new ones.
//! - Removed: stopped cleanly (priority 0, VIPs removed, `notify_stop`).
//! - New: started.
//!
//! A sync group's members move together, so when any member of a group
//! restarts (or the group itself changed), all of its members restart with
//! it, in the old configuration and the new one.

use std::collections::BTreeSet;

use crate::config::{Position, VrrpInstance, VrrpSyncGroup};

/// What a reload does, by instance name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Untouched, in the new configuration's order.
    pub keep: Vec<String>,
    /// Stopped: removed, or restarted (then also in `start`). Old order.
    pub stop: Vec<String>,
    /// Started: new, or restarted. New order.
    pub start: Vec<String>,
}

impl ReloadPlan {
    /// Whether the reload changes nothing that runs.
    pub fn is_empty(&self) -> bool {
        self.stop.is_empty() && self.start.is_empty()
    }
}

/// The instance as it runs: without what does not change how it runs.
fn running_part(i: &VrrpInstance) -> VrrpInstance {
    VrrpInstance { at: Position { line: 0, column: 0 }, peer_priority: None, ..i.clone() }
}

fn running_group(g: &VrrpSyncGroup) -> VrrpSyncGroup {
    VrrpSyncGroup { at: Position { line: 0, column: 0 }, ..g.clone() }
}

/// The group that `name` is a member of, when it is one that acts (two or
/// more members: a group of one does nothing).
fn group_of<'a>(groups: &'a [VrrpSyncGroup], name: &str) -> Option<&'a VrrpSyncGroup> {
    groups.iter().find(|g| g.members.len() >= 2 && g.members.iter().any(|m| m == name))
}

/// Compares the running configuration with the reloaded one.
pub fn plan(
    old: &[VrrpInstance],
    old_groups: &[VrrpSyncGroup],
    new: &[VrrpInstance],
    new_groups: &[VrrpSyncGroup],
) -> ReloadPlan {
    let same = |n: &VrrpInstance| {
        old.iter().find(|o| o.name == n.name).is_some_and(|o| {
            running_part(o) == running_part(n)
                && group_of(old_groups, &o.name).map(running_group) == group_of(new_groups, &n.name).map(running_group)
        })
    };
    // Removed, new, or changed.
    let removed = old.iter().filter(|o| !new.iter().any(|n| n.name == o.name));
    let mut restart: BTreeSet<String> =
        removed.chain(new.iter().filter(|n| !same(n))).map(|i| i.name.clone()).collect();
    // Removed or changed, the rest of its group (old and new) goes with it.
    loop {
        let mut more = Vec::new();
        for name in &restart {
            for g in [group_of(old_groups, name), group_of(new_groups, name)].into_iter().flatten() {
                more.extend(g.members.iter().filter(|m| !restart.contains(*m)).cloned());
            }
        }
        if more.is_empty() {
            break;
        }
        restart.extend(more);
    }
    let keep: Vec<String> = new.iter().filter(|n| !restart.contains(&n.name)).map(|n| n.name.clone()).collect();
    ReloadPlan {
        stop: old.iter().filter(|o| !keep.contains(&o.name)).map(|o| o.name.clone()).collect(),
        start: new.iter().filter(|n| !keep.contains(&n.name)).map(|n| n.name.clone()).collect(),
        keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn instance(name: &str, vrid: u8, priority: u8) -> String {
        format!(
            "[[vrrp]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\npriority = {priority}\n\
             virtual_ipaddress = [\"10.0.0.{vrid}/24\"]\n"
        )
    }

    fn group(name: &str, members: &[&str]) -> String {
        let members: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
        format!("[[vrrp_sync_group]]\nname = \"{name}\"\ngroup = [{}]\n", members.join(", "))
    }

    fn parse(text: &str) -> (Vec<VrrpInstance>, Vec<VrrpSyncGroup>) {
        let c = Config::from_str(text, "lb.toml").unwrap_or_else(|e| panic!("{e}"));
        (c.vrrp, c.vrrp_sync_groups)
    }

    struct Case {
        name: &'static str,
        old: String,
        new: String,
        keep: &'static [&'static str],
        stop: &'static [&'static str],
        start: &'static [&'static str],
    }

    #[test]
    fn plans() {
        let (a, b, c) = (instance("A", 1, 150), instance("B", 2, 150), instance("C", 3, 150));
        let g = group("G", &["A", "B"]);
        let cases = [
            Case {
                name: "nothing changed",
                old: a.clone() + &b,
                new: a.clone() + &b,
                keep: &["A", "B"],
                stop: &[],
                start: &[],
            },
            Case {
                name: "only another instance changed",
                old: a.clone() + &b,
                new: a.clone() + &instance("B", 2, 160),
                keep: &["A"],
                stop: &["B"],
                start: &["B"],
            },
            Case {
                name: "moved down the file, and a peer_priority hint: not a change",
                old: a.clone() + &b,
                new: format!("# a comment\n\n{b}{}peer_priority = 100\n", a),
                keep: &["B", "A"],
                stop: &[],
                start: &[],
            },
            Case {
                name: "removed: stopped",
                old: a.clone() + &b,
                new: a.clone(),
                keep: &["A"],
                stop: &["B"],
                start: &[],
            },
            Case { name: "new: started", old: a.clone(), new: a.clone() + &c, keep: &["A"], stop: &[], start: &["C"] },
            Case {
                name: "renamed: the old one stops, the new one starts",
                old: a.clone(),
                new: instance("A2", 1, 150),
                keep: &[],
                stop: &["A"],
                start: &["A2"],
            },
            Case {
                name: "a member changed: its whole group restarts, others stay",
                old: a.clone() + &b + &c + &g,
                new: instance("A", 1, 140) + &b + &c + &g,
                keep: &["C"],
                stop: &["A", "B"],
                start: &["A", "B"],
            },
            Case {
                name: "the group's notify changed: its members restart",
                old: a.clone() + &b + &c + &g,
                new: a.clone() + &b + &c + &g + "notify = \"/bin/n\"\n",
                keep: &["C"],
                stop: &["A", "B"],
                start: &["A", "B"],
            },
            Case {
                name: "a member moves to another group: both groups restart",
                old: a.clone() + &b + &c + &g,
                new: a.clone() + &b + &c + &group("G", &["A", "C"]),
                keep: &[],
                stop: &["A", "B", "C"],
                start: &["A", "B", "C"],
            },
            Case {
                name: "virtual_routes changed: restarted, so the master's routes are the new ones",
                old: a.clone() + "virtual_routes = [\"192.0.2.0/24 via 10.0.0.1\"]\n" + &b,
                new: a.clone() + "virtual_routes = [\"192.0.2.0/24 via 10.0.0.1 metric 5\"]\n" + &b,
                keep: &["B"],
                stop: &["A"],
                start: &["A"],
            },
            Case {
                name: "virtual_routes written as a table instead of a string: the same routes, not a change",
                old: a.clone() + "virtual_routes = [\"192.0.2.0/24 via 10.0.0.1\"]\n" + &b,
                new: a.clone() + "virtual_routes = [{ to = \"192.0.2.0/24\", gw = \"10.0.0.1\" }]\n" + &b,
                keep: &["A", "B"],
                stop: &[],
                start: &[],
            },
            Case {
                name: "a group of one does nothing: adding it changes nothing",
                old: a.clone() + &b,
                new: a.clone() + &b + &group("G1", &["A"]),
                keep: &["A", "B"],
                stop: &[],
                start: &[],
            },
        ];
        for c in cases {
            let (old, old_groups) = parse(&c.old);
            let (new, new_groups) = parse(&c.new);
            let plan = plan(&old, &old_groups, &new, &new_groups);
            let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
            assert_eq!(
                plan,
                ReloadPlan { keep: names(c.keep), stop: names(c.stop), start: names(c.start) },
                "{}",
                c.name
            );
        }
    }
}
