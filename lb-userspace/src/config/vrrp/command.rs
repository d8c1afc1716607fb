//! The programs a VRRP instance or sync group runs: notify scripts and
//! track scripts' commands, written as keepalived writes them.

use toml::Spanned;

use super::types::Notify;
use crate::config::{model::RawCommand, span::Problems};

/// The notify keys, which an instance and a sync group share.
pub(crate) struct NotifyKeys<'a> {
    pub(crate) master: &'a Option<Spanned<RawCommand>>,
    pub(crate) backup: &'a Option<Spanned<RawCommand>>,
    pub(crate) fault: &'a Option<Spanned<RawCommand>>,
    pub(crate) stop: &'a Option<Spanned<RawCommand>>,
    pub(crate) any: &'a Option<Spanned<RawCommand>>,
    pub(crate) user: &'a Option<Spanned<String>>,
}

pub(crate) fn notify(k: NotifyKeys<'_>, script_user: &str, problems: &mut Problems) -> Notify {
    let user = match k.user {
        Some(u) if u.get_ref().trim().is_empty() => {
            problems.push(u.span(), "notify_user is empty");
            script_user.to_owned()
        }
        Some(u) => u.get_ref().clone(),
        None => script_user.to_owned(),
    };
    let mut cmd = |c: &Option<Spanned<RawCommand>>, key: &str| c.as_ref().and_then(|c| argv(c, key, true, problems));
    Notify {
        master: cmd(k.master, "notify_master"),
        backup: cmd(k.backup, "notify_backup"),
        fault: cmd(k.fault, "notify_fault"),
        stop: cmd(k.stop, "notify_stop"),
        any: cmd(k.any, "notify"),
        user,
    }
}

/// A command as keepalived writes it (one string, split on whitespace, no
/// shell) or an argv list; either way `argv[0]` must be an absolute path.
pub(crate) fn argv(
    c: &Spanned<RawCommand>,
    key: &str,
    split_text: bool,
    problems: &mut Problems,
) -> Option<Vec<String>> {
    let argv: Vec<String> = match c.get_ref() {
        RawCommand::Argv(a) => a.clone(),
        RawCommand::Text(t) if split_text => t.split_whitespace().map(str::to_owned).collect(),
        RawCommand::Text(_) => {
            problems.push(c.span(), format!("{key} is an argv list such as [\"/usr/local/bin/check\", \"--quick\"]"));
            return None;
        }
    };
    match argv.first() {
        None => {
            problems.push(c.span(), format!("{key} is empty"));
            None
        }
        Some(p) if !p.starts_with('/') => {
            problems.push(
                c.span(),
                format!("{key}: \"{p}\" must be an absolute path: scripts run without a shell or $PATH"),
            );
            None
        }
        Some(_) => Some(argv),
    }
}
