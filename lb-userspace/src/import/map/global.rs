//! `global_defs` (the defaults VRRP instances and scripts take) and
//! `vrrp_script` (the scripts instances track).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use super::{
    Cx,
    command::{self, Script, User},
};
use crate::import::{diag::Pos, tree::Node};

pub(super) const KEYWORDS: &[&str] = &[
    "global_defs",
    "vrrp_script",
    "router_id",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_helo_name",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_version",
    "script_user",
    "enable_script_security",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_strict",
    "script",
    "interval",
    "timeout",
    "weight",
    "rise",
    "fall",
    "user",
    "init_fail",
];

const MAIL: &[&str] = &[
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_helo_name",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "no_email_faults",
    "email_faults",
];

/// What `global_defs` sets for the rest of the file.
#[derive(Debug, Default)]
pub(super) struct GlobalDefs {
    pub router_id: Option<String>,
    pub mcast4: Option<Ipv4Addr>,
    pub mcast6: Option<Ipv6Addr>,
    /// keepalived's default is 2.
    pub version: Option<(u8, Pos)>,
    pub script_user: Option<(String, Pos)>,
    pub script_security: bool,
    pub garp_delay: Option<Duration>,
    pub garp_repeat: Option<u32>,
    pub garp_refresh: Option<Duration>,
    /// `vrrp_min_garp`: one gratuitous ARP, no second burst.
    pub min_garp: bool,
    pub strict: Option<Pos>,
    pub default_interface: Option<String>,
}

pub(super) fn global_defs(cx: &mut Cx<'_>, node: &Node, defs: &mut GlobalDefs) {
    cx.extra_args(node, 0);
    let mut mail_said = false;
    for n in cx.block(node) {
        let key = n.name();
        if MAIL.contains(&key) {
            if !mail_said {
                cx.report.warn(
                    n.at(),
                    "e-mail settings are not imported: lb sends no e-mail (its notify scripts can, as keepalived's do)",
                );
                mail_said = true;
            }
            continue;
        }
        cx.no_block(n);
        match key {
            "router_id" => {
                defs.router_id = cx.arg(n, 0, "a name").map(|w| w.text.clone());
                cx.extra_args(n, 1);
            }
            "vrrp_mcast_group4" | "vrrp_mcast_group6" => {
                let Some(w) = cx.arg(n, 0, "a multicast address") else { continue };
                cx.extra_args(n, 1);
                match (key, cx.address(w, key)) {
                    (_, None) => {}
                    ("vrrp_mcast_group4", Some(IpAddr::V4(ip))) if ip.is_multicast() => defs.mcast4 = Some(ip),
                    ("vrrp_mcast_group6", Some(IpAddr::V6(ip))) if ip.is_multicast() => defs.mcast6 = Some(ip),
                    (_, Some(ip)) => cx
                        .report
                        .error(w.at, format!("{key} {ip} is not a multicast address of its family: not imported")),
                }
            }
            "vrrp_version" => {
                if let Some(v) = cx.number_arg(n, 2..=3) {
                    defs.version = Some((v as u8, n.at()));
                }
            }
            "script_user" => {
                let Some(user) = cx.arg(n, 0, "a user name") else { continue };
                if let Some(group) = n.args.get(1) {
                    cx.report.warn(
                        group.at,
                        format!("group {}: lb runs scripts with the user's own group: not imported", group.text),
                    );
                }
                cx.extra_args(n, 2);
                defs.script_user = Some((user.text.clone(), user.at));
            }
            "enable_script_security" => defs.script_security = cx.flag(n),
            "vrrp_garp_master_delay" => defs.garp_delay = cx.timer_arg(n),
            "vrrp_garp_master_repeat" => defs.garp_repeat = cx.number_arg(n, 1..=1000).map(|r| r as u32),
            "vrrp_garp_master_refresh" => defs.garp_refresh = cx.timer_arg(n),
            "vrrp_min_garp" => defs.min_garp = cx.flag(n),
            "vrrp_strict" => {
                cx.extra_args(n, 0);
                defs.strict = Some(n.at());
                cx.report.warn(
                    n.at(),
                    "vrrp_strict: imported as keepalived applies it (no authentication, no preempt_delay); its no_accept \
                     (nftables rules dropping traffic to the VIPs) has no equivalent: lb's fast path serves the virtual \
                     servers and the kernel the rest",
                );
            }
            "default_interface" => {
                defs.default_interface = cx.arg(n, 0, "an interface").map(|w| w.text.clone());
                cx.extra_args(n, 1);
            }
            "vrrp_garp_lower_prio_delay"
            | "vrrp_garp_lower_prio_repeat"
            | "vrrp_garp_interval"
            | "vrrp_gna_interval"
            | "vrrp_garp_master_refresh_repeat"
            | "vrrp_garp_extra_if" => cx.ignored(
                n,
                "lb sends gratuitous ARPs with garp_master_delay, garp_master_repeat and garp_master_refresh only",
            ),
            "lvs_sync_daemon"
            | "lvs_timeouts"
            | "lvs_flush"
            | "lvs_flush_on_stop"
            | "lvs_notify_fifo"
            | "lvs_notify_fifo_script" => cx.ignored(n, "lb does not use IPVS: its flows live in the XDP fast path"),
            _ => cx.unknown(n, "global_defs"),
        }
    }
}

/// The user scripts run as, and a note for the file; none without scripts.
pub(super) fn script_user(cx: &mut Cx<'_>, defs: &GlobalDefs) -> Option<(String, String)> {
    if let Some((user, _)) = &defs.script_user {
        return Some((user.clone(), "keepalived's script_user".to_owned()));
    }
    // keepalived_script does not exist on most directors, and a script that
    // ran as root may not work as anyone else (`killall -0` on root's nginx).
    let note = "keepalived runs scripts as keepalived_script if that user exists, else as root: imported as root";
    cx.scripts_used.then(|| ("root".to_owned(), note.to_owned()))
}

/// A `vrrp_script`, to be copied into each instance that tracks it.
#[derive(Clone, Debug)]
pub(super) struct ScriptDef {
    pub name: String,
    pub at: Pos,
    pub script: Option<Script>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub weight: Option<i64>,
    pub reverse: bool,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub user: Option<String>,
}

pub(super) fn vrrp_script(cx: &mut Cx<'_>, node: &Node) -> Option<ScriptDef> {
    let name = cx.arg(node, 0, "a name")?.text.clone();
    cx.extra_args(node, 1);
    let mut def = ScriptDef {
        name,
        at: node.at(),
        script: None,
        interval: None,
        timeout: None,
        weight: None,
        reverse: false,
        rise: None,
        fall: None,
        user: None,
    };
    for n in cx.block(node) {
        cx.no_block(n);
        match n.name() {
            "script" => def.script = command::script(cx, n, User::NotTaken),
            "interval" => def.interval = cx.timer_arg(n),
            "timeout" => def.timeout = cx.timer_arg(n),
            "weight" => {
                let Some(w) = cx.arg(n, 0, "a weight") else { continue };
                def.weight = cx.number(w, "weight", -253..=253);
                match n.args.get(1).map(|w| w.text.as_str()) {
                    Some("reverse") => {
                        def.reverse = true;
                        cx.extra_args(n, 2);
                    }
                    _ => cx.extra_args(n, 1),
                }
            }
            "rise" => def.rise = cx.number_arg(n, 1..=1000),
            "fall" => def.fall = cx.number_arg(n, 1..=1000),
            "user" => {
                let Some(user) = cx.arg(n, 0, "a user name") else { continue };
                if let Some(group) = n.args.get(1) {
                    cx.report.warn(
                        group.at,
                        format!("group {}: lb runs scripts with the user's own group: not imported", group.text),
                    );
                }
                cx.extra_args(n, 2);
                def.user = Some(user.text.clone());
            }
            "init_fail" => cx.ignored(n, "lb starts a tracked script as succeeding until it first fails"),
            _ => cx.unknown(n, "vrrp_script"),
        }
    }
    if def.script.is_none() {
        cx.report.warn(
            node.at(),
            format!("vrrp_script {} has no usable script: instances that track it will not", def.name),
        );
    }
    Some(def)
}
