//! `vrrp_instance` to `[[vrrp]]` (with the `vrrp_script`s it tracks as
//! `[[vrrp.track_script]]`), and `vrrp_sync_group` to `[[vrrp_sync_group]]`.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use super::{
    Cx,
    command::{self, Script, User},
    global::{GlobalDefs, ScriptDef},
};
use crate::import::{
    diag::Pos,
    emit::{Table, Value},
    probe,
    tree::Node,
    words::Word,
};

pub(super) const KEYWORDS: &[&str] = &[
    "vrrp_instance",
    "vrrp_sync_group",
    "state",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "nopreempt",
    "preempt_delay",
    "authentication",
    "auth_type",
    "auth_pass",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "virtual_routes",
    "unicast_src_ip",
    "unicast_peer",
    "mcast_src_ip",
    "track_interface",
    "track_script",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_master_refresh",
    "smtp_alert",
    "group",
    "dont_track_primary",
    "use_vmac",
];

/// An imported instance.
#[derive(Debug)]
pub(super) struct Instance {
    pub name: String,
    pub at: Pos,
    pub table: Table,
    /// Its addresses and the interface each is on, for virtual servers.
    pub addresses: Vec<(IpAddr, String)>,
    pub interface: String,
    pub vrid: u8,
    pub ipv6: bool,
}

/// A `virtual_ipaddress` line.
#[derive(Debug)]
struct Vip {
    address: IpAddr,
    prefix: u8,
    dev: Option<String>,
    label: Option<String>,
}

const NOTIFY: [&str; 5] = ["notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"];

pub(super) fn instance(
    cx: &mut Cx<'_>,
    node: &Node,
    defs: &GlobalDefs,
    scripts: &BTreeMap<String, ScriptDef>,
    before: &[Instance],
) -> Option<Instance> {
    let name = cx.arg(node, 0, "a name")?.text.clone();
    cx.extra_args(node, 1);
    if before.iter().any(|i| i.name == name) {
        cx.refuse(node, format!("a second vrrp_instance {name}: names must differ"));
        return None;
    }
    let mut state: Option<&Word> = None;
    let mut interface: Option<String> = None;
    let mut vrid: Option<u8> = None;
    let mut priority: u8 = 100;
    let mut advert: Option<(Duration, Pos)> = None;
    let mut version: Option<(u8, Pos)> = None;
    let mut nopreempt: Option<Pos> = None;
    let mut preempt_delay: Option<(Duration, Pos)> = None;
    let mut auth: Option<(String, Pos)> = None;
    let mut vips: Vec<Vip> = Vec::new();
    let mut routes: Vec<(String, Pos)> = Vec::new();
    let mut src: Option<(IpAddr, Pos)> = None;
    let mut peers: Vec<IpAddr> = Vec::new();
    let mut track_interfaces: Vec<String> = Vec::new();
    let mut tracks: Vec<(&Node, Option<i64>, bool)> = Vec::new();
    let mut notify: Vec<(&'static str, Script, Pos)> = Vec::new();
    let mut garp_delay = defs.garp_delay.or(defs.min_garp.then_some(Duration::ZERO));
    let mut garp_repeat = defs.garp_repeat.or(defs.min_garp.then_some(1));
    let mut garp_refresh = defs.garp_refresh;
    let mut lower_prio_no_advert = false;
    let mut refused = false;

    for n in cx.block(node) {
        let key = n.name();
        let takes_block =
            matches!(key, "authentication" | "virtual_ipaddress" | "virtual_ipaddress_excluded" | "virtual_routes")
                || matches!(key, "unicast_peer" | "track_interface" | "track_script" | "virtual_rules")
                || matches!(key, "track_file" | "track_process" | "track_bfd");
        if !takes_block {
            cx.no_block(n);
        }
        match key {
            "state" => {
                state = cx.arg(n, 0, "MASTER or BACKUP");
                cx.extra_args(n, 1);
                if let Some(s) = state
                    && s.text != "MASTER"
                    && s.text != "BACKUP"
                {
                    cx.report.warn(s.at, format!("state {}: keepalived knows MASTER and BACKUP; taken as BACKUP", s.text));
                }
            }
            "interface" => {
                interface = cx.arg(n, 0, "an interface").map(|w| w.text.clone());
                cx.extra_args(n, 1);
            }
            "virtual_router_id" => vrid = cx.number_arg(n, 1..=255).map(|v| v as u8),
            "priority" => priority = cx.number_arg(n, 1..=255).map_or(priority, |p| p as u8),
            "advert_int" => advert = cx.timer_arg(n).map(|d| (d, n.at())),
            "version" => version = cx.number_arg(n, 2..=3).map(|v| (v as u8, n.at())),
            "nopreempt" => {
                cx.extra_args(n, 0);
                nopreempt = Some(n.at());
            }
            "preempt" => {
                cx.extra_args(n, 0);
                nopreempt = None;
            }
            "preempt_delay" => preempt_delay = cx.timer_arg(n).map(|d| (d, n.at())),
            "authentication" => match authentication(cx, n) {
                Ok(a) => auth = a,
                Err(()) => refused = true,
            },
            "virtual_ipaddress" => vips.extend(cx.block(n).iter().filter_map(|a| vip(cx, a))),
            "virtual_ipaddress_excluded" => {
                cx.report.warn(
                    n.at(),
                    "virtual_ipaddress_excluded: lb has no excluded addresses, so these join virtual_ipaddress and \
                     the adverts list them; a keepalived peer then discards the adverts (\"ip address associated with \
                     VRID not present in MASTER advert\"): move both directors to lb together, or leave these out",
                );
                vips.extend(cx.block(n).iter().filter_map(|a| vip(cx, a)));
            }
            "virtual_routes" => {
                for r in cx.block(n) {
                    let words: Vec<&str> =
                        std::iter::once(r.name()).chain(r.args.iter().map(|w| w.text.as_str())).collect();
                    routes.push((words.join(" "), r.at()));
                }
            }
            "unicast_src_ip" | "mcast_src_ip" => {
                let Some(w) = cx.arg(n, 0, "an address") else { continue };
                cx.extra_args(n, 1);
                src = cx.address(w, key).map(|ip| (ip, w.at));
            }
            "unicast_peer" => {
                for p in cx.block(n) {
                    if let Some(ip) = cx.address(&p.keyword, "unicast peer") {
                        if !p.args.is_empty() {
                            cx.report.warn(p.args[0].at, "unicast peer options (min_ttl, max_ttl) are not imported: lb checks no TTL on unicast adverts");
                        }
                        peers.push(ip);
                    }
                }
            }
            "track_interface" => {
                for t in cx.block(n) {
                    if let Some(w) = t.args.iter().position(|a| a.text == "weight")
                        && t.args.get(w + 1).is_some_and(|v| v.text != "0")
                    {
                        cx.report.warn(
                            t.args[w].at,
                            format!(
                                "track_interface {} weight: lb puts the instance in FAULT while the interface is down \
                                 (weights on interfaces are not supported); keepalived lowered the priority instead",
                                t.name()
                            ),
                        );
                    }
                    if !track_interfaces.contains(&t.keyword.text) {
                        track_interfaces.push(t.keyword.text.clone());
                    }
                }
            }
            "track_script" => {
                for t in cx.block(n) {
                    let weight = match t.args.first().map(|w| w.text.as_str()) {
                        Some("weight") => t.args.get(1).and_then(|w| cx.number(w, "weight", -253..=253)),
                        Some(_) => {
                            cx.extra_args(t, 0);
                            None
                        }
                        None => None,
                    };
                    let reverse = t.args.get(2).is_some_and(|w| w.text == "reverse");
                    tracks.push((t, weight, reverse));
                }
            }
            k if NOTIFY.contains(&k) => {
                if let Some(s) = command::script(cx, n, User::Taken) {
                    notify.push((NOTIFY.iter().find(|x| **x == k).copied().unwrap_or("notify"), s, n.at()));
                }
            }
            "garp_master_delay" => garp_delay = cx.timer_arg(n),
            "garp_master_repeat" => garp_repeat = cx.number_arg(n, 1..=1000).map(|r| r as u32),
            "garp_master_refresh" => garp_refresh = cx.timer_arg(n),
            "lower_prio_no_advert" => lower_prio_no_advert = cx.flag(n),
            "smtp_alert" => cx.ignored(n, "lb sends no e-mail (its notify scripts can)"),
            "garp_master_refresh_repeat" | "garp_lower_prio_delay" | "garp_lower_prio_repeat" | "garp_interval"
            | "gna_interval" | "garp_extra_if" => cx.ignored(
                n,
                "lb sends gratuitous ARPs with garp_master_delay, garp_master_repeat and garp_master_refresh only",
            ),
            "use_vmac" | "vmac_xmit_base" => cx.ignored(
                n,
                "lb does not use a virtual MAC: the VIPs move with gratuitous ARPs (unsolicited neighbour \
                 advertisements) from the interface's own MAC",
            ),
            "virtual_rules" => cx.ignored(n, "lb does not manage policy routing rules"),
            "track_file" | "track_process" | "track_bfd" => {
                cx.ignored(n, "lb tracks interfaces, scripts and its own fast path only: this instance no longer fails over on it")
            }
            "accept" | "no_accept" | "strict_mode" => cx.ignored(
                n,
                "lb's fast path serves the virtual servers' traffic and the kernel the rest; no filtering rules are added",
            ),
            "dont_track_primary" | "skip_check_adv_addr" | "check_unicast_src" | "unicast_ttl" | "native_ipv6"
            | "debug" | "lvs_sync_daemon_interface" | "kernel_rx_buf_size" | "higher_prio_send_advert"
            | "notify_master_rx_lower_pri" | "notify_deleted" | "unicast_fault_no_peer" | "down_timer_adverts" => {
                cx.ignored(n, "lb has no equivalent")
            }
            _ => cx.unknown(n, "vrrp_instance"),
        }
    }

    let Some(interface) = interface.or_else(|| defs.default_interface.clone()) else {
        cx.refuse(node, format!("vrrp_instance {name} has no interface"));
        return None;
    };
    let Some(vrid) = vrid else {
        cx.refuse(node, format!("vrrp_instance {name} has no virtual_router_id"));
        return None;
    };
    if vips.is_empty() {
        cx.refuse(node, format!("vrrp_instance {name} has no virtual_ipaddress"));
        return None;
    }
    if refused {
        cx.left_out.push(format!("vrrp_instance {name}: see the errors about its authentication"));
        return None;
    }
    let ipv6 = vips[0].address.is_ipv6();
    let version = match (version, defs.version) {
        (Some((v, at)), _) | (None, Some((v, at))) if ipv6 && v == 2 => {
            cx.report.warn(
                at,
                format!("vrrp_instance {name}: IPv6 needs VRRP version 3: imported as version 3, as keepalived does"),
            );
            3
        }
        (Some((v, _)), _) | (None, Some((v, _))) => v,
        (None, None) if ipv6 => 3,
        (None, None) => 2,
    };
    if before.iter().any(|i| i.interface == interface && i.vrid == vrid && i.ipv6 == ipv6) {
        cx.refuse(node, format!("virtual_router_id {vrid} is already used on {interface} by another instance"));
        return None;
    }
    let master = state.is_some_and(|s| s.text == "MASTER");
    if master && let Some(at) = nopreempt.take() {
        cx.report.warn(
            at,
            "nopreempt with state MASTER: keepalived 2.2.7 clears nopreempt then (\"nopreempt will not work with \
             initial state MASTER\"), so it preempts: imported so; for no preemption write state BACKUP",
        );
    }
    if master && let Some((_, at)) = preempt_delay.take() {
        cx.report.warn(at, "preempt_delay with state MASTER: keepalived 2.2.7 clears it then: not imported (write state BACKUP to keep it)");
    }
    if let Some(strict) = defs.strict {
        if let Some((_, at)) = auth.take() {
            cx.report.warn(
                at,
                format!(
                    "authentication with vrrp_strict (line {}): keepalived ignores it then: not imported",
                    strict.line
                ),
            );
        }
        if let Some((_, at)) = preempt_delay.take() {
            cx.report.warn(
                at,
                format!(
                    "preempt_delay with vrrp_strict (line {}): keepalived resets it then: not imported",
                    strict.line
                ),
            );
        }
    }
    if version == 3
        && let Some((_, at)) = auth.take()
    {
        cx.report
            .warn(at, "authentication with VRRP version 3: version 3 has none, keepalived ignores it: not imported");
    }

    let mut t = Table::new("vrrp", true);
    t.comments.push(format!("vrrp_instance {name} ({}:{})", cx.report.path(node.at().file).display(), node.at().line));
    t.set("name", Value::str(&name));
    t.set("interface", Value::str(&interface));
    t.set("version", Value::Int(i64::from(version)));
    t.set("virtual_router_id", Value::Int(i64::from(vrid)));
    t.set("priority", Value::Int(i64::from(priority)));
    let advert = advert.map(|(d, at)| advert_int(cx, d, version, at)).unwrap_or(Duration::from_secs(1));
    t.set("advert_int", Value::duration(advert));
    if nopreempt.is_some() {
        t.set("nopreempt", Value::Bool(true));
    }
    if let Some((d, _)) = preempt_delay {
        t.set("preempt_delay", Value::duration(d));
    }
    if let Some((pass, _)) = auth {
        t.set("auth_pass", Value::str(pass));
    }
    let addresses: Vec<Value> = vips
        .iter()
        .map(|v| {
            let cidr = Value::str(format!("{}/{}", v.address, v.prefix));
            match (&v.dev, &v.label) {
                (None, None) => cidr,
                (dev, label) => {
                    let mut fields = vec![("address", cidr)];
                    fields.extend(dev.as_ref().map(|d| ("dev", Value::str(d))));
                    fields.extend(label.as_ref().map(|l| ("label", Value::str(l))));
                    Value::Inline(fields)
                }
            }
        })
        .collect();
    t.set("virtual_ipaddress", Value::Array(addresses));
    let first_vip = format!("{}/{}", vips[0].address, vips[0].prefix);
    let routes: Vec<String> =
        routes.into_iter().filter_map(|(r, at)| route(cx, r, at, &first_vip, &interface)).collect();
    if !routes.is_empty() {
        t.set("virtual_routes", Value::strings(routes));
    }
    if peers.is_empty() {
        if let Some((ip, at)) = src {
            cx.report.warn(
                at,
                format!(
                    "{ip} as the source of multicast adverts: lb sends them from the interface's primary address \
                     (make {ip} the primary address of {interface} if peers filter on it)"
                ),
            );
        }
        let group = if ipv6 { defs.mcast6.map(IpAddr::V6) } else { defs.mcast4.map(IpAddr::V4) };
        if let Some(g) = group {
            t.set("mcast_group", Value::str(g.to_string()));
        }
    } else {
        if let Some((ip, _)) = src {
            t.set("unicast_src", Value::str(ip.to_string()));
        }
        t.set("unicast_peers", Value::strings(peers.iter().map(ToString::to_string)));
    }
    if let Some(d) = garp_delay {
        t.set("garp_master_delay", Value::duration(d));
    }
    if let Some(r) = garp_repeat {
        t.set("garp_master_repeat", Value::Int(i64::from(r)));
    }
    if let Some(d) = garp_refresh {
        t.set("garp_master_refresh", Value::duration(d));
    }
    if lower_prio_no_advert {
        t.set("lower_prio_no_advert", Value::Bool(true));
    }
    notify_fields(cx, &mut t, &notify, defs);
    if !track_interfaces.is_empty() {
        t.set("track_interface", Value::strings(track_interfaces));
    }
    for (n, weight, reverse) in tracks {
        if let Some(child) = track_script(cx, n, weight, reverse, scripts) {
            t.children.push(child);
        }
    }
    let addresses = vips.iter().map(|v| (v.address, v.dev.clone().unwrap_or_else(|| interface.clone()))).collect();
    Some(Instance { name, at: node.at(), table: t, addresses, interface, vrid, ipv6 })
}

/// `Ok(None)`: no authentication; `Err`: refused (the instance with it).
fn authentication(cx: &mut Cx<'_>, node: &Node) -> Result<Option<(String, Pos)>, ()> {
    let mut kind: Option<&Word> = None;
    let mut pass: Option<&Word> = None;
    for n in cx.block(node) {
        cx.no_block(n);
        match n.name() {
            "auth_type" => {
                kind = cx.arg(n, 0, "PASS or AH");
                cx.extra_args(n, 1);
            }
            "auth_pass" => {
                pass = cx.arg(n, 0, "a password");
                cx.extra_args(n, 1);
            }
            _ => cx.unknown(n, "authentication"),
        }
    }
    match (kind.map(|k| k.text.as_str()), pass) {
        (Some("AH"), _) => {
            cx.refuse(
                node,
                "auth_type AH (IPsec AH, HMAC-MD5-96) is not supported: lb speaks VRRP with PASS or no \
                 authentication; drop it on both directors (RFC 3768 removed VRRP authentication) or keep keepalived",
            );
            Err(())
        }
        (Some("PASS"), Some(p)) => Ok(Some((p.text.clone(), p.at))),
        (Some("PASS"), None) => {
            cx.report.warn(
                node.at(),
                "authentication without auth_pass: keepalived 2.2.7 ignores it (\"Authentication specified but no \
                 password given\"): imported without authentication",
            );
            Ok(None)
        }
        (Some(other), _) => {
            cx.refuse(node, format!("auth_type {other}: keepalived knows PASS and AH"));
            Err(())
        }
        (None, _) => {
            cx.report.warn(node.at(), "authentication without auth_type: imported without authentication");
            Ok(None)
        }
    }
}

/// One `virtual_ipaddress` line: `ADDRESS[/LEN] [dev IF] [label L] [brd B] ...`.
fn vip(cx: &mut Cx<'_>, node: &Node) -> Option<Vip> {
    let text = &node.keyword.text;
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text.as_str(), None),
    };
    let Ok(address) = addr.parse::<IpAddr>() else {
        let why =
            if addr.contains('-') { ": address ranges are not supported, write one line per address" } else { "" };
        cx.report.error(node.at(), format!("virtual address \"{text}\"{why}: not imported"));
        return None;
    };
    let max = if address.is_ipv6() { 128 } else { 32 };
    let prefix = match prefix.map(str::parse::<u8>) {
        None => max,
        Some(Ok(p)) if p <= max => p,
        Some(_) => {
            cx.report.error(node.at(), format!("virtual address \"{text}\": bad prefix length: not imported"));
            return None;
        }
    };
    let mut v = Vip { address, prefix, dev: None, label: None };
    let mut args = node.args.iter();
    while let Some(opt) = args.next() {
        let value = |args: &mut std::slice::Iter<'_, Word>| args.next().map(|w| w.text.clone());
        match opt.text.as_str() {
            "dev" => v.dev = value(&mut args),
            "label" => v.label = value(&mut args),
            "brd" | "broadcast" | "scope" | "preferred_lft" | "track_group" => {
                let _ = value(&mut args);
                cx.report.warn(
                    opt.at,
                    format!(
                        "virtual address option `{}` is not imported: lb adds the address with the kernel's defaults",
                        opt.text
                    ),
                );
            }
            other if other.split('/').next().is_some_and(|a| a.parse::<IpAddr>().is_ok()) => cx.report.warn(
                opt.at,
                format!(
                    "{other} is read as an option of {text}, not as an address: keepalived takes one address per \
                     line: not imported (write it on a line of its own)"
                ),
            ),
            _ => cx
                .report
                .warn(opt.at, format!("virtual address option `{}` is not imported: lb has no equivalent", opt.text)),
        }
    }
    if let Some(label) = &v.label
        && (address.is_ipv6() || label.len() > 15 || v.dev.as_ref().is_some_and(|d| !label.starts_with(d.as_str())))
    {
        cx.report.warn(node.at(), format!("label {label} is not imported: a label is IPv4 only, starts with its interface's name and has at most 15 bytes"));
        v.label = None;
    }
    Some(v)
}

/// A `virtual_routes` line as lb reads it (keepalived's syntax), if lb takes it.
fn route(cx: &mut Cx<'_>, line: String, at: Pos, vip: &str, interface: &str) -> Option<String> {
    let mut t = Table::new("vrrp", true);
    t.set("name", Value::str("probe"));
    t.set("interface", Value::str(interface));
    t.set("version", Value::Int(3));
    t.set("virtual_router_id", Value::Int(1));
    t.set("virtual_ipaddress", Value::strings([vip]));
    t.set("virtual_routes", Value::strings([line.as_str()]));
    match probe::check(&[&t]) {
        Ok(()) => Some(line),
        Err(problems) => {
            cx.report.error(at, format!("virtual route \"{line}\": {}: not imported", problems.join("; ")));
            cx.left_out.push(format!("virtual route \"{line}\" ({}:{})", cx.report.path(at.file).display(), at.line));
            None
        }
    }
}

fn advert_int(cx: &mut Cx<'_>, d: Duration, version: u8, at: Pos) -> Duration {
    let ms = d.as_millis() as u64;
    let fixed =
        if version == 2 { ((ms + 500) / 1000).clamp(1, 255) * 1000 } else { ((ms + 5) / 10).clamp(1, 4095) * 10 };
    if fixed != ms {
        let unit =
            if version == 2 { "whole seconds in VRRP version 2" } else { "centiseconds up to 40.95s in version 3" };
        cx.report.warn(at, format!("advert_int {ms}ms: adverts carry {unit}: imported as {fixed}ms"));
    }
    Duration::from_millis(fixed)
}

fn notify_fields(cx: &mut Cx<'_>, t: &mut Table, notify: &[(&'static str, Script, Pos)], defs: &GlobalDefs) {
    let mut user: Option<(&str, Pos)> = None;
    for (key, script, at) in notify {
        if *key == "notify" && matches!(script.command, command::Command::Shell(_)) {
            cx.report.warn(
                *at,
                "notify through /bin/sh -c: the four arguments lb adds (INSTANCE name STATE priority) reach the shell \
                 line as $0..$3, not as its script's arguments",
            );
        }
        t.set(key, script.command.value());
        if let Some(u) = &script.user {
            match user {
                Some((first, _)) if first != u => cx.report.warn(
                    *at,
                    format!("{key} runs as {u}, another notify script as {first}: lb runs an instance's notify scripts as one user ({first})"),
                ),
                Some(_) => {}
                None => user = Some((u, *at)),
            }
        }
    }
    let default = defs.script_user.as_ref().map(|(u, _)| u.as_str());
    if let Some((u, _)) = user
        && Some(u) != default
    {
        t.set("notify_user", Value::str(u));
    }
}

fn track_script(
    cx: &mut Cx<'_>,
    node: &Node,
    weight: Option<i64>,
    reverse: bool,
    scripts: &BTreeMap<String, ScriptDef>,
) -> Option<Table> {
    let name = node.name();
    let Some(def) = scripts.get(name) else {
        cx.report.warn(node.at(), format!("track_script {name}: no vrrp_script {name}: ignored, as keepalived does"));
        return None;
    };
    let script = def.script.as_ref()?;
    if reverse || (def.reverse && weight.is_none()) {
        cx.refuse(
            node,
            format!(
                "track_script {name}: `reverse` weights are not supported (lb adds a positive weight while the \
                 script succeeds and a negative one while it fails)"
            ),
        );
        return None;
    }
    let mut t = Table::new("vrrp.track_script", true);
    t.comments.push(format!("vrrp_script {name} ({}:{})", cx.report.path(def.at.file).display(), def.at.line));
    t.set("name", Value::str(name));
    t.set("command", script.command.value());
    t.set("interval", Value::duration(def.interval.unwrap_or(Duration::from_secs(1))));
    if let Some(d) = def.timeout {
        t.set("timeout", Value::duration(d));
    }
    if let Some(r) = def.rise {
        t.set("rise", Value::Int(r));
    }
    if let Some(f) = def.fall {
        t.set("fall", Value::Int(f));
    }
    if let Some(w) = weight.or(def.weight) {
        t.set("weight", Value::Int(w));
    }
    if let Some(u) = &def.user {
        t.set("user", Value::str(u));
    }
    Some(t)
}

/// An imported sync group.
#[derive(Debug)]
pub(super) struct Group {
    pub name: String,
    pub at: Pos,
    pub members: Vec<String>,
    pub table: Table,
}

pub(super) fn sync_group(cx: &mut Cx<'_>, node: &Node, instances: &[Instance], before: &[Group]) -> Option<Group> {
    let name = cx.arg(node, 0, "a name")?.text.clone();
    cx.extra_args(node, 1);
    let mut members: Vec<String> = Vec::new();
    let mut notify: Vec<(&'static str, Script, Pos)> = Vec::new();
    for n in cx.block(node) {
        let key = n.name();
        if key != "group" && !key.starts_with("track_") {
            cx.no_block(n);
        }
        match key {
            "group" => {
                for m in cx.block(n) {
                    for w in std::iter::once(&m.keyword).chain(&m.args) {
                        if !instances.iter().any(|i| i.name == w.text) {
                            cx.report.warn(
                                w.at,
                                format!(
                                    "sync group {name}: no imported vrrp_instance {}: left out of the group",
                                    w.text
                                ),
                            );
                        } else if let Some(g) = before.iter().find(|g| g.members.contains(&w.text)) {
                            cx.report.warn(
                                w.at,
                                format!(
                                    "sync group {name}: {} is already in sync group {}: left out of this one",
                                    w.text, g.name
                                ),
                            );
                        } else if !members.contains(&w.text) {
                            members.push(w.text.clone());
                        }
                    }
                }
            }
            k if NOTIFY.contains(&k) => {
                if let Some(s) = command::script(cx, n, User::Taken) {
                    notify.push((NOTIFY.iter().find(|x| **x == k).copied().unwrap_or("notify"), s, n.at()));
                }
            }
            "smtp_alert" => cx.ignored(n, "lb sends no e-mail (its notify scripts can)"),
            "track_interface"
            | "track_script"
            | "track_file"
            | "track_process"
            | "track_bfd"
            | "global_tracking"
            | "sync_group_tracking_weight" => cx.ignored(
                n,
                "lb tracks per instance: put the tracking in each vrrp_instance of the group (a failure of one \
                 member moves the whole group)",
            ),
            _ => cx.unknown(n, "vrrp_sync_group"),
        }
    }
    if members.len() < 2 {
        cx.report.warn(
            node.at(),
            format!("sync group {name} has fewer than two instances: keepalived removes such a group: not imported"),
        );
        return None;
    }
    let mut t = Table::new("vrrp_sync_group", true);
    t.comments.push(format!(
        "vrrp_sync_group {name} ({}:{})",
        cx.report.path(node.at().file).display(),
        node.at().line
    ));
    t.set("name", Value::str(&name));
    t.set("group", Value::strings(members.iter().cloned()));
    let mut user: Option<String> = None;
    for (key, script, _) in &notify {
        t.set(key, script.command.value());
        user = user.or_else(|| script.user.clone());
    }
    if let Some(u) = user {
        t.set("notify_user", Value::str(u));
    }
    Some(Group { name, at: node.at(), members, table: t })
}
