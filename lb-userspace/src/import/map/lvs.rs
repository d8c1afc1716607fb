//! `virtual_server` to `[[vip]]` and `real_server` to `[[vip.backend]]`.
//! lb forwards as LVS's direct routing does (`lb_kind DR`): the backend
//! gets the client's packet unchanged but for the MAC, holds the VIP on
//! `lo` and answers the client itself.

use std::{collections::BTreeMap, net::IpAddr};

use super::{
    Cx,
    checker::{self, Defaults},
};
use crate::import::{
    diag::Pos,
    emit::{Table, Value},
    tree::Node,
};

pub(super) const KEYWORDS: &[&str] = &[
    "virtual_server",
    "real_server",
    "delay_loop",
    "lb_algo",
    "lvs_sched",
    "lb_kind",
    "lvs_method",
    "protocol",
    "persistence_timeout",
    "persistence_granularity",
    "quorum",
    "hysteresis",
    "sorry_server",
    "inhibit_on_failure",
    "alpha",
    "omega",
    "ha_suspend",
    "virtualhost",
    "notify_up",
    "notify_down",
];

/// What virtual servers need from the rest of the file.
pub(super) struct Context<'a> {
    /// Each VRRP address and the interface it is on.
    pub interfaces: &'a BTreeMap<IpAddr, String>,
    /// The interface for a virtual server no instance holds the address of.
    pub interface: Option<&'a str>,
}

#[derive(Debug)]
pub(super) struct VirtualServer {
    pub title: String,
    pub at: Pos,
    pub key: (IpAddr, u16, &'static str),
    pub table: Table,
}

/// A `virtual_server_group`: the addresses and ports one `virtual_server
/// group NAME` serves, each of which becomes a `[[vip]]` of its own with
/// the same real servers and checks.
#[derive(Debug)]
pub(super) struct Group {
    pub name: String,
    pub members: Vec<(IpAddr, i64)>,
}

/// Why a firewall mark cannot be carried over.
const FWMARK: &str = "fwmark: lb matches a virtual server by address, port and protocol in XDP, before the kernel's \
     firewall could mark anything: write one virtual_server (or group entry) per address and port the mark selected";

/// Most addresses one group may expand to: as many VIPs as lb can hold.
const MAX_GROUP_MEMBERS: usize = lb_common::MAX_VIPS as usize;

#[derive(Clone, Debug)]
struct Backend {
    address: IpAddr,
    weight: i64,
    inhibit: bool,
    check: Option<Table>,
    at: Pos,
}

pub(super) fn virtual_server(
    cx: &mut Cx<'_>,
    node: &Node,
    lvs: &Context<'_>,
    groups: &[Group],
    before: &[VirtualServer],
) -> Vec<VirtualServer> {
    let Some(first) = cx.arg(node, 0, "an address and a port") else { return Vec::new() };
    let (title, endpoints) = match first.text.as_str() {
        "fwmark" => {
            cx.refuse(node, format!("virtual_server {FWMARK}"));
            return Vec::new();
        }
        "group" => {
            let Some(name) = cx.arg(node, 1, "a group name") else { return Vec::new() };
            cx.extra_args(node, 2);
            let Some(group) = groups.iter().find(|g| g.name == name.text) else {
                cx.refuse(node, format!("no virtual_server_group {} (or it was not imported)", name.text));
                return Vec::new();
            };
            if group.members.is_empty() {
                cx.refuse(node, format!("virtual_server_group {} has no address and port lb can serve", name.text));
                return Vec::new();
            }
            (format!("virtual_server group {}", name.text), group.members.clone())
        }
        _ => {
            let Some(address) = cx.address(first, "virtual_server address") else { return Vec::new() };
            let Some(port) = node.args.get(1) else {
                cx.refuse(node, "virtual_server needs a port after its address (0 for every port)");
                return Vec::new();
            };
            let Some(port) = cx.number(port, "virtual_server port", 0..=65535) else { return Vec::new() };
            cx.extra_args(node, 2);
            (format!("virtual_server {address} {port}"), vec![(address, port)])
        }
    };
    let (address, port) = endpoints[0];
    // A check writes its port out unless it is the VIP's; with group members
    // on different ports, always.
    let check_vip_port = if endpoints.iter().all(|e| e.1 == port) { port } else { 0 };

    let mut defaults = Defaults::default();
    let mut protocol = "tcp";
    let mut source_hash = false;
    let mut round_robin = false;
    let mut kind: Option<(&str, Pos)> = None;
    let mut quorum: i64 = 1;
    let mut hysteresis: Option<(i64, Pos)> = None;
    let mut sorry: Option<IpAddr> = None;
    let mut inhibit = false;
    let mut backends: Vec<Backend> = Vec::new();
    let mut refused = false;

    let block = cx.block(node);
    // Checker defaults first: keepalived applies them whatever their place.
    for n in block {
        if n.block.is_none() {
            defaults.read(cx, n);
        }
    }
    for n in block {
        let key = n.name();
        if key != "real_server" {
            cx.no_block(n);
        }
        match key {
            "delay_loop" | "connect_timeout" | "retry" | "delay_before_retry" | "warmup" | "virtualhost" => {}
            "lb_algo" | "lvs_sched" => {
                let Some(w) = cx.arg(n, 0, "a scheduler") else { continue };
                cx.extra_args(n, 1);
                match w.text.as_str() {
                    "wrr" => {}
                    "rr" => round_robin = true,
                    "sh" | "mh" => source_hash = true,
                    "lc" | "wlc" | "sed" | "nq" | "lblc" | "lblcr" | "dh" | "fo" | "ovf" => cx.report.warn(
                        w.at,
                        format!(
                            "lb_algo {}: lb spreads new connections by weighted Maglev hashing, not by connection counts \
                             or destinations: long-lived connections may sit unevenly; imported as weighted hashing",
                            w.text
                        ),
                    ),
                    other => cx.report.warn(w.at, format!("lb_algo {other}: unknown scheduler: imported as weighted hashing")),
                }
            }
            "lb_kind" | "lvs_method" => {
                if let Some(w) = cx.arg(n, 0, "DR, NAT or TUN") {
                    kind = Some((w.text.as_str(), w.at));
                }
                cx.extra_args(n, 1);
            }
            "protocol" => {
                let Some(w) = cx.arg(n, 0, "TCP or UDP") else { continue };
                cx.extra_args(n, 1);
                match w.text.as_str() {
                    "TCP" => protocol = "tcp",
                    "UDP" => protocol = "udp",
                    other => {
                        cx.refuse(n, format!("protocol {other}: lb balances TCP and UDP only"));
                        refused = true;
                    }
                }
            }
            "persistence_timeout" => {
                if cx.number_arg(n, 0..=i64::from(u32::MAX)).is_some_and(|t| t > 0) {
                    source_hash = true;
                    cx.report.warn(
                        n.at(),
                        "persistence_timeout: imported as source-IP hashing: a client keeps its backend while the \
                         set of live backends stays the same, with no timeout (and nothing lost on failover)",
                    );
                }
            }
            "persistence_granularity" | "persistence_engine" => {
                cx.ignored(n, "lb's source-IP hashing takes the whole client address")
            }
            "quorum" => quorum = cx.number_arg(n, 1..=i64::from(u32::MAX)).unwrap_or(1),
            "hysteresis" => hysteresis = cx.number_arg(n, 0..=i64::from(u32::MAX)).map(|h| (h, n.at())),
            "quorum_up" | "quorum_down" => cx.ignored(n, "lb runs no script when quorum changes"),
            "sorry_server" => {
                if let Some(w) = cx.arg(n, 0, "an address and a port") {
                    sorry = cx.address(w, "sorry_server");
                }
                cx.extra_args(n, 2);
            }
            "sorry_server_inhibit" | "sorry_server_lvs_method" => {
                cx.ignored(n, "lb sends to the sorry server by direct routing, as to every backend")
            }
            "inhibit_on_failure" => inhibit = cx.flag(n),
            "alpha" => cx.ignored(
                n,
                "lb starts real servers up before their first check (as keepalived without alpha); with alpha keepalived \
                 started them down until a check passed",
            ),
            "omega" => cx.ignored(n, "lb runs no notify_down or quorum_down script on shutdown"),
            "ha_suspend" => cx.ignored(n, "lb checks real servers on both directors, master or backup"),
            "smtp_alert" => cx.ignored(n, "lb sends no e-mail"),
            "ip_family" | "ops" | "mh-port" | "mh-fallback" | "sh-port" | "sh-fallback" | "flag-1" | "flag-2"
            | "flag-3" => cx.ignored(n, "lb has no equivalent"),
            "real_server" => {
                if let Some(b) = real_server(cx, n, address, port, check_vip_port, &defaults, inhibit) {
                    if backends.iter().any(|x| x.address == b.address) {
                        cx.refuse(n, format!("real_server {} is already in this virtual_server", b.address));
                    } else {
                        backends.push(b);
                    }
                }
            }
            _ => cx.unknown(n, "virtual_server"),
        }
    }
    match kind {
        Some(("DR", _)) => {}
        Some((other @ ("NAT" | "TUN"), _)) => {
            cx.refuse(
                node,
                format!(
                    "lb_kind {other}: lb forwards by direct routing only (the backend gets the packet unchanged and \
                     answers the client itself); {} needs the director to {}",
                    other,
                    if other == "NAT" {
                        "rewrite addresses and see the replies"
                    } else {
                        "encapsulate packets in IP-in-IP"
                    }
                ),
            );
            return Vec::new();
        }
        Some((other, at)) => {
            cx.report.error(at, format!("lb_kind {other}: keepalived knows DR, NAT and TUN: not imported"));
            cx.left_out.push(format!("{title}: lb_kind {other}"));
            return Vec::new();
        }
        None => {
            cx.refuse(
                node,
                "no lb_kind: keepalived's default is NAT, which lb cannot do; if the real servers hold the VIP on lo \
                 (direct routing), write lb_kind DR",
            );
            return Vec::new();
        }
    }
    if refused {
        cx.left_out.push(format!("{title}: see the errors above"));
        return Vec::new();
    }
    let written = node.block.as_ref().is_some_and(|b| b.nodes.iter().any(|n| n.name() == "real_server"));
    if written && backends.is_empty() {
        cx.refuse(node, "every real server of this virtual_server was left out: it would have none");
        return Vec::new();
    }
    if round_robin {
        let weighted: Vec<&Backend> = backends.iter().filter(|b| b.weight > 1).collect();
        if let Some(b) = weighted.first() {
            cx.report.warn(
                b.at,
                "lb_algo rr ignores weights: imported with weight 1 for each real server (0 still drains); use wrr to weigh them",
            );
        }
        for b in &mut backends {
            b.weight = b.weight.min(1);
        }
    }

    let hysteresis = match hysteresis {
        Some((h, at)) if h >= quorum => {
            cx.report.warn(
                at,
                format!(
                    "hysteresis {h} is not below quorum {quorum}: quorum could never be lost: imported as {}",
                    quorum - 1
                ),
            );
            quorum - 1
        }
        Some((h, _)) => h,
        None => 0,
    };
    let endpoints_len = endpoints.len();
    let mut out: Vec<VirtualServer> = Vec::new();
    for (address, port) in endpoints {
        let vs_title = if endpoints_len > 1 { format!("{title}: {address} {port}") } else { title.clone() };
        if backends.first().is_some_and(|b| b.address.is_ipv6() != address.is_ipv6()) {
            cx.refuse(
                node,
                format!(
                    "{vs_title}: the real servers are of the other address family: direct routing cannot reach them"
                ),
            );
            continue;
        }
        let done: Vec<&VirtualServer> = before.iter().chain(out.iter()).collect();
        if done.iter().any(|v| v.key == (address, port as u16, protocol)) {
            cx.refuse(node, format!("a second virtual_server {address} {port} {protocol}"));
            continue;
        }
        let interface = match (lvs.interfaces.get(&address), lvs.interface) {
            (Some(i), _) => i.clone(),
            (None, Some(i)) => i.to_owned(),
            (None, None) => {
                cx.refuse(
                    node,
                    format!(
                        "no vrrp_instance holds {address}, so which interface receives its traffic is not known: \
                         give it with `lb import --interface IFACE`"
                    ),
                );
                continue;
            }
        };
        let mut t = Table::new("vip", true);
        t.comments.push(format!("{vs_title} ({}:{})", cx.report.path(node.at().file).display(), node.at().line));
        t.set("address", Value::str(address.to_string()));
        t.set("port", Value::Int(port));
        t.set("protocol", Value::str(protocol));
        t.set("interface", Value::str(&interface));
        if source_hash {
            t.set("hash", Value::str("source-ip"));
        }
        if quorum != 1 {
            t.set("quorum", Value::Int(quorum));
        }
        if hysteresis != 0 {
            t.set("hysteresis", Value::Int(hysteresis));
        }
        if let Some(s) = sorry {
            t.set("sorry_server", Value::str(s.to_string()));
        }
        // One check shared by every backend goes in [vip.check], as an operator would write it.
        let first = backends.first().and_then(|b| b.check.clone());
        let shared = first.filter(|c| backends.iter().all(|b| b.check.as_ref() == Some(c)));
        let mut backends = backends.clone();
        if let Some(mut c) = shared {
            c.name = "vip.check";
            t.children.push(c);
            for b in &mut backends {
                b.check = None;
            }
        }
        for b in backends {
            let mut bt = Table::new("vip.backend", true);
            bt.set("address", Value::str(b.address.to_string()));
            bt.set("weight", Value::Int(b.weight));
            if b.inhibit {
                bt.set("inhibit_on_failure", Value::Bool(true));
            }
            if let Some(c) = b.check {
                bt.children.push(c);
            }
            t.children.push(bt);
        }
        out.push(VirtualServer { title: vs_title, at: node.at(), key: (address, port as u16, protocol), table: t });
    }
    out
}

fn real_server(
    cx: &mut Cx<'_>,
    node: &Node,
    vip: IpAddr,
    vip_port: i64,
    check_vip_port: i64,
    vs_defaults: &Defaults,
    vs_inhibit: bool,
) -> Option<Backend> {
    let addr = cx.arg(node, 0, "an address and a port")?;
    let address = cx.address(addr, "real_server address")?;
    let port = match node.args.get(1) {
        Some(p) => cx.number(p, "real_server port", 0..=65535)?,
        None => vip_port,
    };
    cx.extra_args(node, 2);
    if address.is_ipv6() != vip.is_ipv6() {
        cx.refuse(
            node,
            format!(
                "real_server {address} and the VIP {vip} are of different families: direct routing cannot reach it"
            ),
        );
        return None;
    }
    let mut defaults = vs_defaults.clone();
    let mut weight: i64 = 1;
    let mut inhibit = vs_inhibit;
    let mut checks: Vec<&Node> = Vec::new();
    let block = cx.block(node);
    for n in block {
        if n.block.is_none() {
            defaults.read(cx, n);
        }
    }
    for n in block {
        let key = n.name();
        if checker::KINDS.contains(&key) {
            checks.push(n);
            continue;
        }
        cx.no_block(n);
        match key {
            "delay_loop" | "connect_timeout" | "retry" | "delay_before_retry" | "warmup" | "virtualhost" => {}
            "weight" => weight = cx.number_arg(n, 0..=1_000_000).unwrap_or(1),
            "inhibit_on_failure" => inhibit = cx.flag(n),
            "notify_up" | "notify_down" => {
                cx.ignored(n, "lb runs no script when a real server changes state (lb status shows it)")
            }
            "uthreshold" | "lthreshold" => cx.ignored(n, "lb does not count connections per real server"),
            "lvs_method" | "lb_kind" => {
                if let Some(w) = cx.arg(n, 0, "DR, NAT or TUN")
                    && w.text != "DR"
                {
                    cx.refuse(node, format!("real_server lvs_method {}: lb forwards by direct routing only", w.text));
                    return None;
                }
            }
            "smtp_alert" => cx.ignored(n, "lb sends no e-mail"),
            "alpha" => cx.ignored(n, "lb starts real servers up before their first check"),
            _ => cx.unknown(n, "real_server"),
        }
    }
    let mut check: Option<Table> = None;
    for (i, n) in checks.iter().enumerate() {
        match checker::check(cx, n, &defaults, address, port, check_vip_port) {
            Err(why) => {
                cx.refuse(n, why);
                cx.left_out.push(format!("real_server {address} (its checker {} is not supported)", n.name()));
                return None;
            }
            Ok(None) => {}
            Ok(Some(t)) if i == 0 => check = Some(t),
            Ok(Some(_)) => cx.report.warn(
                n.at(),
                format!(
                    "{}: lb runs one check per real server: only the first is imported, so the real server stays up \
                     when only this one would fail",
                    n.name()
                ),
            ),
        }
    }
    Some(Backend { address, weight, inhibit, check, at: node.at() })
}

/// A `virtual_server_group`: lines of `ADDRESS PORT` or `ADDRESS-LAST PORT`
/// (a range of the last byte, or of the last group of an IPv6 address);
/// `fwmark N` lines are refused.
pub(super) fn group(cx: &mut Cx<'_>, node: &Node, before: &[Group]) -> Option<Group> {
    let name = cx.arg(node, 0, "a name")?.text.clone();
    cx.extra_args(node, 1);
    if before.iter().any(|g| g.name == name) {
        cx.refuse(node, format!("a second virtual_server_group {name}"));
        return None;
    }
    let mut members: Vec<(IpAddr, i64)> = Vec::new();
    for n in cx.block(node) {
        cx.no_block(n);
        if n.name() == "fwmark" {
            cx.refuse(n, FWMARK);
            continue;
        }
        let addresses = match address_range(n.name()) {
            Ok(a) => a,
            Err(why) => {
                cx.refuse(n, format!("{}: {why}", n.name()));
                continue;
            }
        };
        let Some(port) = n.args.first() else {
            cx.refuse(n, format!("{} needs a port (0 for every port)", n.name()));
            continue;
        };
        let Some(port) = cx.number(port, "virtual_server_group port", 0..=65535) else { continue };
        cx.extra_args(n, 1);
        for ip in addresses {
            if members.len() == MAX_GROUP_MEMBERS {
                cx.refuse(n, format!("more than {MAX_GROUP_MEMBERS} addresses and ports, as many VIPs as lb holds"));
                break;
            }
            if !members.contains(&(ip, port)) {
                members.push((ip, port));
            }
        }
    }
    Some(Group { name, members })
}

/// `10.0.0.1`, or `10.0.0.1-9` for .1 to .9 (keepalived's ranges change
/// the last byte, or the last 16-bit group of an IPv6 address, in hex).
fn address_range(text: &str) -> Result<Vec<IpAddr>, String> {
    let (first, last) = match text.rsplit_once('-') {
        Some((first, last)) => (first, Some(last)),
        None => (text, None),
    };
    let first: IpAddr = first.parse().map_err(|_| "not an address or a range such as 10.0.0.1-9".to_owned())?;
    let Some(last) = last else { return Ok(vec![first]) };
    let bad = || format!("range end {last:?} is not a number from the address's last part up");
    match first {
        IpAddr::V4(a) => {
            let o = a.octets();
            let end: u8 = last.parse().map_err(|_| bad())?;
            if end < o[3] {
                return Err(bad());
            }
            Ok((o[3]..=end).map(|b| IpAddr::from([o[0], o[1], o[2], b])).collect())
        }
        IpAddr::V6(a) => {
            let mut g = a.segments();
            let end = u16::from_str_radix(last, 16).map_err(|_| bad())?;
            if end < g[7] {
                return Err(bad());
            }
            let start = g[7];
            Ok((start..=end)
                .map(|x| {
                    g[7] = x;
                    IpAddr::from(g)
                })
                .collect())
        }
    }
}

/// `delay_loop` and friends as defaults for the checkers below them.
impl Defaults {
    pub(super) fn read(&mut self, cx: &mut Cx<'_>, n: &Node) {
        match n.name() {
            "delay_loop" => self.delay_loop = cx.timer_arg(n).or(self.delay_loop),
            "connect_timeout" => self.connect_timeout = cx.timer_arg(n).or(self.connect_timeout),
            "retry" => self.retry = cx.number_arg(n, 0..=999).or(self.retry),
            "delay_before_retry" => self.delay_before_retry = cx.timer_arg(n).or(self.delay_before_retry),
            "warmup" => self.warmup = cx.timer_arg(n).or(self.warmup),
            "virtualhost" => {
                self.virtualhost = cx.arg(n, 0, "a host name").map(|w| w.text.clone()).or(self.virtualhost.take());
                cx.extra_args(n, 1);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::address_range as range;

    #[test]
    fn address_ranges_change_the_last_part() {
        assert_eq!(range("10.0.0.1").unwrap().len(), 1);
        assert_eq!(range("10.0.0.250-255").unwrap().len(), 6);
        assert!(range("10.0.0.9-3").is_err());
        assert!(range("10.0.0.9-256").is_err());
        let v6 = range("2001:db8::a-f").unwrap();
        assert_eq!((v6.len(), v6[5].to_string()), (6, "2001:db8::f".to_owned()));
        assert!(range("web-1").is_err());
    }
}
