//! `[[vrrp_sync_group]]` tables: instances that change state together.

use std::collections::HashMap;

use toml::Spanned;

use super::{
    command::{NotifyKeys, notify},
    types::{VrrpInstance, VrrpSyncGroup},
};
use crate::config::{
    model::RawSyncGroup,
    span::{Problems, Span, position},
};

/// Validates the `[[vrrp_sync_group]]` tables against the instances.
/// keepalived only logs an unknown member or one already in another group
/// and goes on without it, which silently splits what the operator meant to
/// keep together: here both are errors. A group of one is what keepalived
/// warns about and removes: a warning.
pub(crate) fn validate_sync_groups(
    raw: &[Spanned<RawSyncGroup>],
    instances: &[VrrpInstance],
    script_user: &str,
    text: &str,
    problems: &mut Problems,
) -> Vec<VrrpSyncGroup> {
    let mut out = Vec::new();
    let mut names: HashMap<String, Span> = HashMap::new();
    // Instance -> the group that has it, and where.
    let mut taken: HashMap<String, (String, Span)> = HashMap::new();
    for r in raw {
        let g = r.get_ref();
        let name = g.name.get_ref().clone();
        if name.trim().is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(
                g.name.span(),
                format!("bad sync group name \"{}\": expected a word without spaces", name.escape_debug()),
            );
        } else if let Some(first) = names.get(&name) {
            let line = position(text, first.start).line;
            problems.push(g.name.span(), format!("duplicate sync group name \"{name}\": already at line {line}"));
        } else {
            names.insert(name.clone(), g.name.span());
        }
        let mut members: Vec<String> = Vec::new();
        for m in g.group.get_ref() {
            let member = m.get_ref();
            if !instances.iter().any(|i| &i.name == member) {
                problems.push(m.span(), format!("sync group {name}: no [[vrrp]] instance is called \"{member}\""));
            } else if members.contains(member) {
                problems.push(m.span(), format!("sync group {name}: instance {member} is listed twice"));
            } else if let Some((other, at)) = taken.get(member) {
                let line = position(text, at.start).line;
                problems.push(
                    m.span(),
                    format!(
                        "instance {member} is already in sync group {other} (line {line}): an instance belongs to one group at most"
                    ),
                );
            } else {
                taken.insert(member.clone(), (name.clone(), m.span()));
                members.push(member.clone());
            }
        }
        if g.group.get_ref().is_empty() {
            problems.push(g.group.span(), format!("sync group {name} is empty: list the instances that move together"));
        } else if g.group.get_ref().len() == 1 {
            problems.warn(
                g.group.span(),
                format!("sync group {name} has only one instance: it does nothing (keepalived removes such a group)"),
            );
        }
        let keys = NotifyKeys {
            master: &g.notify_master,
            backup: &g.notify_backup,
            fault: &g.notify_fault,
            stop: &g.notify_stop,
            any: &g.notify,
            user: &g.notify_user,
        };
        let notify = notify(keys, script_user, problems);
        out.push(VrrpSyncGroup { name, members, notify, at: position(text, r.span().start) });
    }
    out
}
