//! The `[[vrrp]]` tables: one VRRP instance each, keepalived's
//! `vrrp_instance` with its `vrrp_script`s inlined.
//!
//! ```toml
//! [[vrrp]]
//! name = "VI_1"
//! interface = "eth0"               # where adverts go; VIPs too unless they name a `dev`
//! version = 3                      # 2 or 3
//! virtual_router_id = 51           # 1..=255
//! priority = 150                   # 1..=255; 255 = address owner
//! # peer_priority = 100            # the peer's priority: `lb check` warns about weights that cannot fail over
//! advert_int = "1s"                # v2: whole seconds; v3: 10ms steps up to 40.95s
//! preempt = true                   # or nopreempt = true
//! preempt_delay = "0s"
//! # auth_pass = "secret"           # v2 only: keepalived's auth_type PASS
//! virtual_ipaddress = ["10.0.0.100/24", { address = "10.0.1.100/24", dev = "eth1", label = "eth1:vip" }]
//! # unicast_src = "10.0.0.2"       # with unicast_peers: no multicast at all
//! # unicast_peers = ["10.0.0.3"]
//! # mcast_group = "224.0.0.18"
//! garp_master_delay = "5s"         # second burst of gratuitous ARPs; "0s" = none
//! garp_master_repeat = 5           # ARPs per VIP in each burst
//! garp_master_refresh = "0s"       # periodic re-announcement while master; "0s" = off
//! # notify_master = "/etc/lb/notify.sh master"      # split on spaces, no shell; or an argv list
//! # notify = ["/etc/lb/notify.sh"]                  # + INSTANCE name STATE priority
//! # notify_user = "nobody"         # default: global.script_user
//! track_interface = ["eth1"]
//! # keepalived's virtual_routes: added after the VIPs on becoming master, removed when leaving it
//! virtual_routes = ["src 10.0.0.100 192.0.2.0/24 via 10.0.0.1 dev eth1 metric 10", "blackhole 203.0.113.0/24",
//!                   { to = "198.51.100.0/24", via = "10.0.0.1", table = 100 }]
//! checksum = "keepalived"          # v3 over IPv4: "keepalived" (pseudo-header) or "rfc9568"
//!
//! [[vrrp.track_script]]
//! name = "chk_nginx"
//! command = ["/usr/local/bin/chk_nginx"]
//! interval = "1s"
//! weight = -60                     # 0 = FAULT after `fall` failures
//!
//! [vrrp.track_dataplane]           # this director's XDP fast path
//! weight = 0                       # 0 = FAULT while unhealthy; < 0 = added while unhealthy
//! no_live_backend = false          # true: a VIP of the instance without a live backend is unhealthy too
//!
//! [[vrrp_sync_group]]              # keepalived's vrrp_sync_group
//! name = "G1"
//! group = ["VI_1", "VI_2"]         # change state together
//! # notify = ["/etc/lb/notify.sh"] # + GROUP name STATE 0; also notify_master and so on
//! ```

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use toml::Spanned;

use super::route::{RouteKind, Scope, TABLE_MAIN, VirtualRoute};
use super::{
    duration,
    fields::{MAX_INTERFACE_NAME, fall_rise, int_in, interface_name},
    model::{RawChecksum, RawCommand, RawDuration, RawRoute, RawRouteTable, RawSyncGroup, RawVipAddr, RawVrrp},
    span::{Problems, Span, position},
};
use crate::vrrp::packet::{
    Auth, Centiseconds, ChecksumKind, MAX_ADDRESSES, MAX_V3_INTERVAL, MULTICAST_V4, MULTICAST_V6, Version,
};

/// keepalived's limit for `preempt_delay`.
const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);
/// A tracking weight moves the priority by at most this much (keepalived: -253..=253).
pub const MAX_TRACK_WEIGHT: i32 = 253;
/// Up to a thousand repeats covers any sane use; more is a typo.
const MAX_GARP_REPEAT: i64 = 1000;

/// keepalived's `vrrp_garp_master_delay` default.
pub const DEFAULT_GARP_MASTER_DELAY: Duration = Duration::from_secs(5);
/// keepalived's `vrrp_garp_master_repeat` default.
pub const DEFAULT_GARP_MASTER_REPEAT: u32 = 5;

/// One VRRP instance (a `[[vrrp]]` table), defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpInstance {
    /// Unique; what `notify` scripts and `lb status` call it.
    pub name: String,
    /// Adverts are sent and received here.
    pub interface: String,
    pub version: Version,
    /// 1..=255.
    pub vrid: u8,
    /// Base priority, 1..=255 (255 = address owner).
    pub priority: u8,
    /// Whole seconds for v2; 1..=4095 cs for v3.
    pub advert_interval: Centiseconds,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// v2 `PASS` authentication; always [`Auth::None`] in v3.
    pub auth: Auth,
    /// The VIPs, all of the instance's family, in advert order.
    pub virtual_addresses: Vec<VirtualAddress>,
    /// keepalived's `virtual_routes`: present while master, after the VIPs.
    /// Either family, whatever the instance's.
    pub virtual_routes: Vec<VirtualRoute>,
    /// Source of adverts; the interface's primary address (IPv4) or its
    /// link-local address (IPv6) when `None`.
    pub unicast_src: Option<IpAddr>,
    /// Non-empty: adverts go to each peer by unicast, only peers are heard,
    /// and no multicast group is joined.
    pub unicast_peers: Vec<IpAddr>,
    /// 224.0.0.18 or ff02::12 unless configured.
    pub mcast_group: IpAddr,
    pub garp: Garp,
    pub notify: Notify,
    /// Any of these down puts the instance in FAULT (the instance's own
    /// interface is always tracked, as keepalived does).
    pub track_interfaces: Vec<String>,
    pub track_scripts: Vec<TrackScript>,
    /// Track the director's own fast path (`[vrrp.track_dataplane]`).
    pub track_dataplane: Option<TrackDataplane>,
    /// How v3-over-IPv4 adverts are checksummed on send (all forms are accepted).
    pub checksum: ChecksumKind,
    /// keepalived's `lower_prio_no_advert`.
    pub lower_prio_no_advert: bool,
    /// The peer's priority, a hint for `lb check` only: the file says
    /// nothing else about the other director.
    pub peer_priority: Option<u8>,
    /// Where the table starts, for messages that come later (`lb check`'s interface checks).
    pub at: super::Position,
}

impl VrrpInstance {
    /// Whether this instance runs over IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.virtual_addresses.first().is_some_and(|v| v.address.is_ipv6())
    }
}

/// keepalived's `vrrp_sync_group` (a `[[vrrp_sync_group]]` table): instances
/// that change state together, see [`crate::vrrp::sync`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpSyncGroup {
    pub name: String,
    /// Names of `[[vrrp]]` instances, each in one group at most. A group of
    /// one is kept but does nothing (keepalived removes it with a warning).
    pub members: Vec<String>,
    /// Run on the group's state changes, `notify` with `GROUP name STATE 0`.
    pub notify: Notify,
    pub at: super::Position,
}

/// A virtual address with its prefix, as `ip addr add ADDR/PREFIX dev DEV label LABEL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The interface it goes on; the instance's when `None`.
    pub dev: Option<String>,
    /// IPv4 only; starts with the interface's name.
    pub label: Option<String>,
}

impl fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Gratuitous ARP / unsolicited NA timing (keepalived's `garp_master_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Garp {
    /// A second burst this long after becoming master; zero = none.
    pub master_delay: Duration,
    /// Announcements per VIP in each burst (at least 1).
    pub master_repeat: u32,
    /// Re-announce this often while master; zero = never.
    pub master_refresh: Duration,
}

impl Default for Garp {
    fn default() -> Self {
        Garp {
            master_delay: DEFAULT_GARP_MASTER_DELAY,
            master_repeat: DEFAULT_GARP_MASTER_REPEAT,
            master_refresh: Duration::ZERO,
        }
    }
}

/// keepalived's notify scripts; each an argv run without a shell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
    /// Run after the state's own script with `INSTANCE name STATE priority` appended.
    pub any: Option<Vec<String>>,
    /// Who they run as.
    pub user: String,
}

/// keepalived's `vrrp_script` + `track_script`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackScript {
    pub name: String,
    /// argv; `command[0]` is an absolute path.
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Successes needed to leave the failed state.
    pub rise: u32,
    /// Failures needed to enter it.
    pub fall: u32,
    /// 0: FAULT while failed. > 0: added while OK. < 0: added while failed.
    pub weight: i32,
    pub user: String,
}

/// `[vrrp.track_dataplane]`: the fast path counts as unhealthy while its XDP
/// program is not attached to an interface it was attached to, and, with
/// `no_live_backend`, while one of the instance's VIPs has no backend in its
/// ring. The weight works as a script's: 0 puts the instance in FAULT (as
/// keepalived's weight 0), W < 0 is added while unhealthy, W > 0 while healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackDataplane {
    pub weight: i32,
    pub no_live_backend: bool,
}

/// Validates every `[[vrrp]]` table; `script_user` is `global.script_user`.
pub(crate) fn validate(
    raw: &[Spanned<RawVrrp>],
    script_user: &str,
    text: &str,
    problems: &mut Problems,
) -> Vec<VrrpInstance> {
    let mut out = Vec::new();
    let mut names: HashMap<String, Span> = HashMap::new();
    // keepalived allows one VRID per interface and family: v4 and v6 are
    // separate protocols on the wire.
    let mut vrids: HashMap<(String, u8, bool), Span> = HashMap::new();
    for r in raw {
        let (inst, vrid_ok) = instance(r, script_user, text, problems);
        let v = r.get_ref();
        if let Some(first) = names.get(&inst.name) {
            let line = position(text, first.start).line;
            problems
                .push(v.name.span(), format!("duplicate VRRP instance name \"{}\": already at line {line}", inst.name));
        } else {
            names.insert(inst.name.clone(), v.name.span());
        }
        let key = (inst.interface.clone(), inst.vrid, inst.is_ipv6());
        if let Some(first) = vrids.get(&key).filter(|_| vrid_ok) {
            let line = position(text, first.start).line;
            problems.push(
                v.virtual_router_id.span(),
                format!(
                    "duplicate virtual_router_id {} on interface {} ({}): already used at line {line}",
                    inst.vrid,
                    inst.interface,
                    if inst.is_ipv6() { "IPv6" } else { "IPv4" }
                ),
            );
        } else if vrid_ok {
            vrids.insert(key, v.virtual_router_id.span());
        }
        out.push(inst);
    }
    out
}

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

/// The notify keys, which an instance and a sync group share.
struct NotifyKeys<'a> {
    master: &'a Option<Spanned<RawCommand>>,
    backup: &'a Option<Spanned<RawCommand>>,
    fault: &'a Option<Spanned<RawCommand>>,
    stop: &'a Option<Spanned<RawCommand>>,
    any: &'a Option<Spanned<RawCommand>>,
    user: &'a Option<Spanned<String>>,
}

fn notify(k: NotifyKeys<'_>, script_user: &str, problems: &mut Problems) -> Notify {
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

/// The instance, and whether its VRID is valid (for the duplicate check).
/// As for the whole configuration, the instance is only meaningful when no
/// problem was recorded.
fn instance(r: &Spanned<RawVrrp>, script_user: &str, text: &str, problems: &mut Problems) -> (VrrpInstance, bool) {
    let v = r.get_ref();
    let name = v.name.get_ref().clone();
    if name.trim().is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push(
            v.name.span(),
            format!("bad VRRP instance name \"{}\": expected a word without spaces", name.escape_debug()),
        );
    }
    interface_name(&v.interface, problems);
    let version = match v.version.as_ref().map(|s| (*s.get_ref(), s.span())) {
        None | Some((3, _)) => Version::V3,
        Some((2, _)) => Version::V2,
        Some((n, span)) => {
            problems.push(span, format!("version {n} is not a VRRP version: expected 2 or 3"));
            Version::V3
        }
    };
    let vrid = int_in::<u8>(&v.virtual_router_id, "virtual_router_id", 1..=255, problems);
    let vrid_ok = vrid.is_some();
    let vrid = vrid.unwrap_or(1);
    let priority =
        v.priority.as_ref().map_or(Some(100), |p| int_in::<u8>(p, "priority", 1..=255, problems)).unwrap_or(100);
    let advert_interval = advert_int(v.advert_int.as_ref(), version, problems);
    let preempt = match (&v.preempt, &v.nopreempt) {
        (Some(p), Some(n)) if *p.get_ref() == *n.get_ref() => {
            problems.push(n.span(), "preempt and nopreempt contradict each other: keep one of them");
            true
        }
        (Some(p), _) => *p.get_ref(),
        (None, Some(n)) => !*n.get_ref(),
        (None, None) => true,
    };
    let preempt_delay = duration::spanned(&v.preempt_delay, "preempt_delay", false, problems).unwrap_or_default();
    if preempt_delay > MAX_PREEMPT_DELAY
        && let Some(p) = &v.preempt_delay
    {
        problems.push(p.span(), format!("preempt_delay must be at most {}s", MAX_PREEMPT_DELAY.as_secs()));
    }
    let auth = match (&v.auth_pass, version) {
        (None, _) => Auth::None,
        (Some(p), Version::V3) => {
            problems.push(
                p.span(),
                "auth_pass is VRRPv2 only: version 3 has no authentication (set version = 2 or drop it)",
            );
            Auth::None
        }
        (Some(p), Version::V2) if p.get_ref().is_empty() => {
            problems.push(p.span(), "auth_pass is empty");
            Auth::None
        }
        (Some(p), Version::V2) => {
            if p.get_ref().len() > 8 {
                tracing::debug!("auth_pass longer than 8 bytes: only the first 8 are used, as in keepalived");
            }
            Auth::pass(p.get_ref())
        }
    };

    // Addresses and their family.
    let mut vips = Vec::new();
    match &v.virtual_ipaddress {
        None => problems.push(r.span().start..r.span().start + 1, "VRRP instance has no virtual_ipaddress"),
        Some(list) if list.get_ref().is_empty() => {
            problems.push(list.span(), "virtual_ipaddress is empty: a VRRP instance needs at least one VIP")
        }
        Some(list) => {
            if list.get_ref().len() > MAX_ADDRESSES {
                problems.push(
                    list.span(),
                    format!("more than {MAX_ADDRESSES} virtual addresses: an advert lists at most {MAX_ADDRESSES}"),
                );
            }
            let mut seen: HashMap<IpAddr, Span> = HashMap::new();
            for item in list.get_ref() {
                let Some(vip) = vip_addr(item, v.interface.get_ref(), problems) else { continue };
                if let Some(first) = seen.get(&vip.address) {
                    let line = position(text, first.start).line;
                    problems.push(
                        item.span(),
                        format!("duplicate virtual address {}: already at line {line}", vip.address),
                    );
                    continue;
                }
                seen.insert(vip.address, item.span());
                vips.push((vip, item.span()));
            }
        }
    }
    let ipv6 = vips.first().is_some_and(|(v, _)| v.address.is_ipv6());
    let family = |ip: IpAddr| if ip.is_ipv6() { "IPv6" } else { "IPv4" };
    for (vip, span) in &vips[..] {
        if vip.address.is_ipv6() != ipv6 {
            problems.push(
                span.clone(),
                format!(
                    "virtual address {} is {} but the instance's first one is {}: one family per instance (use two instances)",
                    vip.address,
                    family(vip.address),
                    family(vips[0].0.address)
                ),
            );
        }
    }
    if ipv6
        && version == Version::V2
        && let Some((_, span)) = vips.first()
    {
        problems.push(span.clone(), "VRRPv2 is IPv4 only: use version = 3 for IPv6 addresses");
    }
    let same_family = |s: &Spanned<String>, what: &str, problems: &mut Problems| -> Option<IpAddr> {
        let ip = unicast_addr(s, what, problems)?;
        if !vips.is_empty() && ip.is_ipv6() != ipv6 {
            problems.push(
                s.span(),
                format!(
                    "{what} {ip} is {} but the virtual addresses are {}",
                    family(ip),
                    if ipv6 { "IPv6" } else { "IPv4" }
                ),
            );
            return None;
        }
        Some(ip)
    };
    let mut virtual_routes: Vec<VirtualRoute> = Vec::new();
    for item in &v.virtual_routes {
        let Some(route) = virtual_route(item, ipv6, text, problems) else { continue };
        // The kernel keys a route by prefix, table and metric (and TOS): a
        // second one with the same key would replace the first.
        let same_key = |r: &VirtualRoute| {
            (r.to, r.prefix_len, r.table, r.metric) == (route.to, route.prefix_len, route.table, route.metric)
        };
        if virtual_routes.iter().any(same_key) {
            problems.push(
                item.span(),
                format!(
                    "duplicate virtual route {}/{} (same table and metric): the second would replace the first",
                    route.to, route.prefix_len
                ),
            );
            continue;
        }
        virtual_routes.push(route);
    }
    let unicast_src = v.unicast_src.as_ref().and_then(|s| same_family(s, "unicast_src", problems));
    let mut unicast_peers = Vec::new();
    for p in &v.unicast_peers {
        if let Some(ip) = same_family(p, "unicast peer", problems) {
            if unicast_peers.contains(&ip) {
                problems.push(p.span(), format!("duplicate unicast peer {ip}"));
            } else if Some(ip) == unicast_src {
                problems.push(p.span(), format!("unicast peer {ip} is unicast_src itself"));
            } else {
                unicast_peers.push(ip);
            }
        }
    }
    let mcast_group = match &v.mcast_group {
        None => {
            if ipv6 {
                IpAddr::V6(MULTICAST_V6)
            } else {
                IpAddr::V4(MULTICAST_V4)
            }
        }
        Some(g) => match g.get_ref().parse::<IpAddr>() {
            Ok(ip) if ip.is_multicast() && ip.is_ipv6() == ipv6 => ip,
            Ok(ip) if ip.is_multicast() => {
                problems
                    .push(g.span(), format!("mcast_group {ip} is {} but the virtual addresses are not", family(ip)));
                ip
            }
            _ => {
                problems.push(
                    g.span(),
                    format!("mcast_group \"{}\" is not a multicast address", g.get_ref().escape_debug()),
                );
                IpAddr::V4(MULTICAST_V4)
            }
        },
    };

    let garp = Garp {
        master_delay: duration::spanned(&v.garp_master_delay, "garp_master_delay", false, problems)
            .unwrap_or(DEFAULT_GARP_MASTER_DELAY),
        master_repeat: v
            .garp_master_repeat
            .as_ref()
            .map_or(Some(DEFAULT_GARP_MASTER_REPEAT), |n| {
                int_in(n, "garp_master_repeat", 1..=MAX_GARP_REPEAT, problems)
            })
            .unwrap_or(DEFAULT_GARP_MASTER_REPEAT),
        master_refresh: duration::spanned(&v.garp_master_refresh, "garp_master_refresh", false, problems)
            .unwrap_or_default(),
    };
    let user = |u: &Option<Spanned<String>>, problems: &mut Problems| match u {
        Some(u) if u.get_ref().trim().is_empty() => {
            problems.push(u.span(), "user is empty");
            script_user.to_owned()
        }
        Some(u) => u.get_ref().clone(),
        None => script_user.to_owned(),
    };
    let keys = NotifyKeys {
        master: &v.notify_master,
        backup: &v.notify_backup,
        fault: &v.notify_fault,
        stop: &v.notify_stop,
        any: &v.notify,
        user: &v.notify_user,
    };
    let notify = notify(keys, script_user, problems);
    let mut track_interfaces = Vec::new();
    for t in &v.track_interface {
        if interface_name(t, problems) && !track_interfaces.contains(t.get_ref()) {
            track_interfaces.push(t.get_ref().clone());
        }
    }
    let mut track_scripts: Vec<TrackScript> = Vec::new();
    // Every weight that was written, for the warnings below.
    let mut weights: Vec<(i32, Span, String)> = Vec::new();
    for t in &v.track_script {
        let ts = t.get_ref();
        let interval = duration::spanned(&ts.interval, "interval", true, problems).unwrap_or(Duration::from_secs(1));
        let timeout = duration::spanned(&ts.timeout, "timeout", true, problems).unwrap_or(interval);
        let count = |v: &Option<Spanned<i64>>, key, problems: &mut Problems| {
            v.as_ref().map_or(Some(1), |v| fall_rise(v, key, problems)).unwrap_or(1)
        };
        let rise = count(&ts.rise, "rise", problems);
        let fall = count(&ts.fall, "fall", problems);
        let weight = weight(&ts.weight, problems);
        if let Some(w) = &ts.weight {
            weights.push((weight, w.span(), format!("track_script {}", ts.name.get_ref())));
        }
        let name = ts.name.get_ref().clone();
        if name.trim().is_empty() {
            problems.push(ts.name.span(), "track_script name is empty");
        } else if track_scripts.iter().any(|s| s.name == name) {
            problems.push(ts.name.span(), format!("duplicate track_script \"{name}\" in this instance"));
        }
        let Some(command) = argv(&ts.command, "command", false, problems) else { continue };
        track_scripts.push(TrackScript {
            name,
            command,
            interval,
            timeout,
            rise,
            fall,
            weight,
            user: user(&ts.user, problems),
        });
    }
    let track_dataplane = v.track_dataplane.as_ref().map(|t| {
        let t = t.get_ref();
        let w = weight(&t.weight, problems);
        if let Some(at) = &t.weight {
            weights.push((w, at.span(), "track_dataplane".to_owned()));
        }
        TrackDataplane { weight: w, no_live_backend: t.no_live_backend.unwrap_or(false) }
    });
    let peer_priority = v.peer_priority.as_ref().and_then(|p| int_in::<u8>(p, "peer_priority", 1..=255, problems));
    weight_warnings(priority, peer_priority.zip(v.peer_priority.as_ref().map(Spanned::span)), &weights, problems);
    let checksum = match v.checksum.as_ref().map(|c| *c.get_ref()) {
        None | Some(RawChecksum::Keepalived) => ChecksumKind::PseudoHeader,
        Some(RawChecksum::Rfc9568) => ChecksumKind::MessageOnly,
    };
    let inst = VrrpInstance {
        name,
        interface: v.interface.get_ref().clone(),
        version,
        vrid,
        priority,
        advert_interval,
        preempt,
        preempt_delay,
        auth,
        virtual_addresses: vips.into_iter().map(|(v, _)| v).collect(),
        virtual_routes,
        unicast_src,
        unicast_peers,
        mcast_group,
        garp,
        notify,
        track_interfaces,
        track_scripts,
        track_dataplane,
        checksum,
        lower_prio_no_advert: v.lower_prio_no_advert.unwrap_or(false),
        peer_priority,
        at: position(text, r.span().start),
    };
    (inst, vrid_ok)
}

/// What operators trip on most with keepalived's weights (the reference's
/// item 4): a weight too small to cross the priority gap to the peer never
/// causes a failover, and an address owner's 255 never moves at all. Only
/// warnings: the file is legal, and the peer's priority is a hint
/// (`peer_priority`) the operator may have got wrong.
///
/// With the peer at P and our healthy priority H (the base plus positive
/// weights, at most 254) above it, the peer's backup takes over only when
/// our advertised priority drops below P: a backup accepts an equal one
/// (RFC 5798 section 6.4.2). A weight W fails over iff H - |W| < P.
fn weight_warnings(priority: u8, peer: Option<(u8, Span)>, weights: &[(i32, Span, String)], problems: &mut Problems) {
    let nonzero = || weights.iter().filter(|(w, _, _)| *w != 0);
    if priority == super::super::vrrp::packet::PRIORITY_OWNER {
        for (w, span, what) in nonzero() {
            problems.warn(
                span.clone(),
                format!(
                    "{what}: weight {w} has no effect: priority 255 (address owner) never changes, so this director \
                     stays master; use weight 0 (FAULT) or a priority below 255"
                ),
            );
        }
        return;
    }
    let Some((peer, peer_span)) = peer else { return };
    let healthy = (i32::from(priority) + nonzero().map(|(w, _, _)| (*w).max(0)).sum::<i32>()).min(254);
    let peer = i32::from(peer);
    if healthy <= peer {
        // The peer is master while we are healthy: our weights decide nothing about failing over from us.
        return;
    }
    let mut useless = 0;
    for (w, span, what) in nonzero() {
        let failing = (healthy - w.abs()).max(1);
        if failing >= peer {
            useless += 1;
            problems.warn(
                span.clone(),
                format!(
                    "{what}: weight {w} can never cause a failover: {healthy} - {} = {failing} is not below \
                     peer_priority {peer} (needs a magnitude of at least {}, or weight 0 for FAULT)",
                    w.abs(),
                    healthy - peer + 1
                ),
            );
        }
    }
    let all = (healthy - nonzero().map(|(w, _, _)| w.abs()).sum::<i32>()).max(1);
    if useless >= 2 && useless == nonzero().count() && all >= peer {
        problems.warn(
            peer_span,
            format!(
                "even all tracked objects failing together leave priority {all}, not below peer_priority {peer}: \
                 tracking can never move the VIPs to the peer"
            ),
        );
    }
}

/// A tracking weight, keepalived's -253..=253; 0 (FAULT) when absent.
fn weight(w: &Option<Spanned<i64>>, problems: &mut Problems) -> i32 {
    w.as_ref()
        .map_or(Some(0), |w| int_in(w, "weight", -i64::from(MAX_TRACK_WEIGHT)..=i64::from(MAX_TRACK_WEIGHT), problems))
        .unwrap_or(0)
}

fn advert_int(v: Option<&Spanned<RawDuration>>, version: Version, problems: &mut Problems) -> Centiseconds {
    let Some(v) = v else { return Centiseconds::DEFAULT_INTERVAL };
    let Some(d) = duration::spanned(&Some(v.clone()), "advert_int", true, problems) else {
        return Centiseconds::DEFAULT_INTERVAL;
    };
    let millis = d.as_millis();
    match version {
        Version::V2 => {
            if !millis.is_multiple_of(1000) {
                problems.push(
                    v.span(),
                    format!(
                        "advert_int {}ms is not a whole number of seconds: VRRPv2 carries seconds only (use version = 3 for sub-second intervals)",
                        millis
                    ),
                );
            } else if millis / 1000 > 255 {
                problems.push(v.span(), "advert_int must be at most 255s in VRRPv2");
            } else {
                return Centiseconds::from_secs((millis / 1000) as u8);
            }
        }
        Version::V3 => {
            if !millis.is_multiple_of(10) {
                problems.push(
                    v.span(),
                    format!("advert_int {millis}ms is not a multiple of 10ms: VRRPv3 counts centiseconds"),
                );
            } else if millis / 10 > u128::from(MAX_V3_INTERVAL.0) {
                problems.push(v.span(), format!("advert_int must be at most {MAX_V3_INTERVAL} in VRRPv3"));
            } else {
                return Centiseconds((millis / 10) as u16);
            }
        }
    }
    Centiseconds::DEFAULT_INTERVAL
}

/// A command as keepalived writes it (one string, split on whitespace, no
/// shell) or an argv list; either way `argv[0]` must be an absolute path.
fn argv(c: &Spanned<RawCommand>, key: &str, split_text: bool, problems: &mut Problems) -> Option<Vec<String>> {
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

fn vip_addr(item: &Spanned<RawVipAddr>, interface: &str, problems: &mut Problems) -> Option<VirtualAddress> {
    let raw = item.get_ref();
    let (addr, prefix) = match raw.address.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (raw.address.as_str(), None),
    };
    let Ok(address) = addr.parse::<IpAddr>() else {
        problems.push(
            item.span(),
            format!(
                "bad virtual address \"{}\": expected an address with a prefix such as \"10.0.0.100/24\"",
                raw.address.escape_debug()
            ),
        );
        return None;
    };
    let max = if address.is_ipv6() { 128 } else { 32 };
    let prefix_len = match prefix.map(str::parse::<u8>) {
        None => max,
        Some(Ok(p)) if p <= max => p,
        Some(_) => {
            problems.push(item.span(), format!("bad prefix length in \"{}\": expected 0..={max}", raw.address));
            return None;
        }
    };
    let unusable = match address {
        _ if address.is_unspecified() => Some("unspecified"),
        _ if address.is_loopback() => Some("a loopback address"),
        _ if address.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST => Some("the broadcast address"),
        _ => None,
    };
    if let Some(why) = unusable {
        problems.push(item.span(), format!("virtual address {address} is {why}"));
        return None;
    }
    if let Some(dev) = &raw.dev {
        let s = Spanned::new(item.span(), dev.clone());
        if !interface_name(&s, problems) {
            return None;
        }
    }
    let dev_name = raw.dev.as_deref().unwrap_or(interface);
    if let Some(label) = &raw.label {
        if address.is_ipv6() {
            problems.push(item.span(), "labels are IPv4 only (the kernel keeps none for IPv6 addresses)");
            return None;
        }
        if !label.starts_with(dev_name) || label.len() > MAX_INTERFACE_NAME {
            problems.push(
                item.span(),
                format!(
                    "label \"{}\" must start with the interface name \"{dev_name}\" and be at most {MAX_INTERFACE_NAME} bytes, e.g. \"{dev_name}:vip\"",
                    label.escape_debug()
                ),
            );
            return None;
        }
    }
    Some(VirtualAddress { address, prefix_len, dev: raw.dev.clone(), label: raw.label.clone() })
}

fn unicast_addr(s: &Spanned<String>, what: &str, problems: &mut Problems) -> Option<IpAddr> {
    match s.get_ref().parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() => {
            problems.push(s.span(), format!("{what} {ip} must be a unicast address of a peer on the link"));
            None
        }
        Ok(ip) => Some(ip),
        Err(_) => {
            let hint = if s.get_ref().contains('/') { ": write it without a prefix length" } else { "" };
            problems.push(s.span(), format!("bad {what} \"{}\"{hint}", s.get_ref().escape_debug()));
            None
        }
    }
}

/// The largest routing table id (`rtm_table` is widened by `RTA_TABLE` to 32 bits).
const MAX_TABLE: i64 = u32::MAX as i64;

/// One field of a virtual route as written, and where (a word of a string
/// entry, or a value of a table entry).
type Field = (String, Span);

/// A virtual route's fields, from either form, before their values are checked.
#[derive(Default)]
struct RouteParts {
    kind: Option<(RouteKind, Span)>,
    to: Option<Field>,
    via: Option<Field>,
    src: Option<Field>,
    dev: Option<Field>,
    metric: Option<Field>,
    table: Option<Field>,
    scope: Option<Field>,
    onlink: bool,
}

const ROUTE_KEYWORDS: &str =
    "[blackhole|unreachable|prohibit] [to] PREFIX, src, via (or gw), dev, metric, table, scope, onlink";

/// keepalived route options this implementation does not carry: named in the
/// error so an operator translating a keepalived.conf knows it is not a typo.
const UNSUPPORTED_ROUTE_OPTIONS: &[&str] = &[
    "from",
    "tos",
    "dsfield",
    "proto",
    "protocol",
    "mtu",
    "advmss",
    "rtt",
    "rttvar",
    "reordering",
    "window",
    "cwnd",
    "ssthresh",
    "realms",
    "rto_min",
    "initcwnd",
    "initrwnd",
    "features",
    "quickack",
    "congctl",
    "pref",
    "fastopen_no_cookie",
    "nexthop",
    "encap",
    "expires",
    "ttl-propagate",
    "as",
    "no_track",
    "track_group",
    "throw",
    "nat",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "hoplimit",
    "lock",
];

fn route_kind(word: &str) -> Option<RouteKind> {
    Some(match word {
        "unicast" => RouteKind::Unicast,
        "blackhole" => RouteKind::Blackhole,
        "unreachable" => RouteKind::Unreachable,
        "prohibit" => RouteKind::Prohibit,
        _ => return None,
    })
}

/// keepalived's `virtual_routes` line, the syntax of `ip route add` (which
/// keepalived's parser follows): `[TYPE] [src ADDR] [to] PREFIX [via|gw ADDR]
/// [dev IF] [metric N] [table ID] [scope S] [onlink]`, keywords in any order.
/// Spans point at the word when the string has no escapes, else at the entry.
fn route_words(line: &str, item: &Span, text: &str, problems: &mut Problems) -> Option<RouteParts> {
    // The string's bytes sit one quote after the entry's start when it is
    // written without escapes (the usual case); else point at the entry.
    let quoted = text.get(item.clone()).is_some_and(|t| t.len() == line.len() + 2 && &t[1..t.len() - 1] == line);
    let span_of = |word: &str| -> Span {
        if quoted {
            let off = word.as_ptr() as usize - line.as_ptr() as usize;
            item.start + 1 + off..item.start + 1 + off + word.len()
        } else {
            item.clone()
        }
    };
    let mut parts = RouteParts::default();
    let mut ok = true;
    let mut words = line.split_whitespace().peekable();
    while let Some(word) = words.next() {
        let at = span_of(word);
        let slot = match word {
            "to" => Some(&mut parts.to),
            "src" => Some(&mut parts.src),
            "via" | "gw" => Some(&mut parts.via),
            "dev" | "oif" => Some(&mut parts.dev),
            "metric" | "priority" | "preference" => Some(&mut parts.metric),
            "table" => Some(&mut parts.table),
            "scope" => Some(&mut parts.scope),
            _ => None,
        };
        if let Some(slot) = slot {
            let Some(value) = words.next() else {
                problems.push(at, format!("virtual route: \"{word}\" needs a value"));
                return None;
            };
            if slot.is_some() {
                problems.push(at, format!("virtual route: \"{word}\" given twice"));
                ok = false;
            }
            *slot = Some((value.to_owned(), span_of(value)));
            continue;
        }
        if word == "onlink" {
            parts.onlink = true;
        } else if let Some(kind) = route_kind(word) {
            if parts.kind.is_some() || parts.to.is_some() {
                problems.push(at, format!("virtual route: the type \"{word}\" goes once, before the destination"));
                ok = false;
            }
            parts.kind = Some((kind, span_of(word)));
        } else if word == "or" {
            // keepalived's `via A or B` is a multipath route.
            problems.push(at, "virtual route: multipath (\"or\") is not supported: one gateway per route");
            ok = false;
            words.next();
        } else if parts.to.is_none() && (word == "default" || word.parse::<IpAddr>().is_ok() || word.contains('/')) {
            parts.to = Some((word.to_owned(), at));
        } else if UNSUPPORTED_ROUTE_OPTIONS.contains(&word) {
            problems
                .push(at, format!("virtual route: keepalived's \"{word}\" is not supported here ({ROUTE_KEYWORDS})"));
            return None;
        } else {
            problems.push(
                at,
                format!("virtual route: unknown keyword \"{}\": expected {ROUTE_KEYWORDS}", word.escape_debug()),
            );
            return None;
        }
    }
    ok.then_some(parts)
}

fn route_table_parts(t: &RawRouteTable, problems: &mut Problems) -> Option<RouteParts> {
    let field = |v: &Option<Spanned<String>>| v.as_ref().map(|s| (s.get_ref().clone(), s.span()));
    let number = |v: &Option<Spanned<i64>>| v.as_ref().map(|s| (s.get_ref().to_string(), s.span()));
    let kind = match &t.kind {
        None => None,
        Some(k) => match route_kind(k.get_ref()) {
            Some(kind) => Some((kind, k.span())),
            None => {
                problems.push(
                    k.span(),
                    format!(
                        "virtual route type \"{}\": expected unicast, blackhole, unreachable or prohibit",
                        k.get_ref().escape_debug()
                    ),
                );
                return None;
            }
        },
    };
    Some(RouteParts {
        kind,
        to: Some((t.to.get_ref().clone(), t.to.span())),
        via: field(&t.via),
        src: field(&t.src),
        dev: field(&t.dev),
        metric: number(&t.metric),
        table: number(&t.table),
        scope: field(&t.scope),
        onlink: t.onlink.unwrap_or(false),
    })
}

/// One `virtual_routes` entry, checked: `ipv6` is the instance's family,
/// which a bare `default` takes when no gateway or source says otherwise.
fn virtual_route(item: &Spanned<RawRoute>, ipv6: bool, text: &str, problems: &mut Problems) -> Option<VirtualRoute> {
    let parts = match item.get_ref() {
        RawRoute::Text(line) => route_words(line, &item.span(), text, problems)?,
        RawRoute::Table(t) => route_table_parts(t, problems)?,
    };
    let mut ok = true;
    let Some((to_text, to_span)) = parts.to else {
        problems.push(item.span(), "virtual route without a destination: expected e.g. \"192.0.2.0/24 via 10.0.0.1\"");
        return None;
    };
    let mut addr = |f: &Option<Field>, what: &str, problems: &mut Problems| -> Option<(IpAddr, Span)> {
        let (value, span) = f.as_ref()?;
        match value.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                problems.push(span.clone(), format!("virtual route: {what} {ip} must be a unicast address"));
                ok = false;
                None
            }
            Ok(ip) => Some((ip, span.clone())),
            Err(_) => {
                problems.push(
                    span.clone(),
                    format!(
                        "virtual route: bad {what} address \"{}\": expected an address without a prefix",
                        value.escape_debug()
                    ),
                );
                ok = false;
                None
            }
        }
    };
    let via = addr(&parts.via, "via", problems);
    let src = addr(&parts.src, "src", problems);
    let kind = parts.kind.as_ref().map_or(RouteKind::Unicast, |(k, _)| *k);

    // The destination: "default" takes the family of the gateway or source, else the instance's.
    let (to, prefix_len) = if to_text == "default" {
        let v6 = via.as_ref().or(src.as_ref()).map_or(ipv6, |(ip, _)| ip.is_ipv6());
        (if v6 { IpAddr::from([0u16; 8]) } else { IpAddr::from([0u8; 4]) }, 0)
    } else {
        let (a, p) = match to_text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (to_text.as_str(), None),
        };
        let Ok(to) = a.parse::<IpAddr>() else {
            problems.push(
                to_span,
                format!(
                    "virtual route: bad prefix \"{}\": expected e.g. \"192.0.2.0/24\" or \"default\"",
                    to_text.escape_debug()
                ),
            );
            return None;
        };
        let max = if to.is_ipv6() { 128 } else { 32 };
        let prefix_len = match p.map(str::parse::<u8>) {
            None => max,
            Some(Ok(p)) if p <= max => p,
            Some(_) => {
                problems
                    .push(to_span, format!("virtual route: bad prefix length in \"{to_text}\": expected 0..={max}"));
                return None;
            }
        };
        let network = network(to, prefix_len);
        if network != to {
            // The kernel refuses it (EINVAL, "Invalid prefix for given prefix length").
            problems.push(
                to_span.clone(),
                format!("virtual route: {to_text} has host bits set: did you mean {network}/{prefix_len}?"),
            );
            ok = false;
        }
        (to, prefix_len)
    };
    let family = |ip: IpAddr| if ip.is_ipv6() { "IPv6" } else { "IPv4" };
    for (what, f) in [("via", &via), ("src", &src)] {
        if let Some((ip, span)) = f
            && ip.is_ipv6() != to.is_ipv6()
        {
            problems.push(
                span.clone(),
                format!(
                    "virtual route: {what} {ip} is {} but the destination {to}/{prefix_len} is {}: one family per route",
                    family(*ip),
                    family(to)
                ),
            );
            ok = false;
        }
    }
    let dev = parts.dev.as_ref().and_then(|(name, span)| {
        let s = Spanned::new(span.clone(), name.clone());
        if interface_name(&s, problems) {
            Some(name.clone())
        } else {
            ok = false;
            None
        }
    });
    match kind {
        RouteKind::Unicast if via.is_none() && parts.dev.is_none() && parts.via.is_none() => {
            problems.push(
                item.span(),
                format!(
                    "virtual route to {to}/{prefix_len} has no dev and no via: say where it goes (\"via GATEWAY\" or \"dev IF\"), or make it a blackhole"
                ),
            );
            ok = false;
        }
        RouteKind::Unicast => {}
        _ => {
            // The kernel refuses a gateway or device on these types.
            if let Some((_, span)) = parts.via.as_ref().or(parts.dev.as_ref()) {
                problems.push(
                    span.clone(),
                    format!("virtual route: a {} route takes no via or dev: it goes nowhere", kind.keyword()),
                );
                ok = false;
            }
        }
    }
    let number = |f: &Option<Field>, key: &str, range: std::ops::RangeInclusive<i64>, problems: &mut Problems| {
        let (value, span) = f.as_ref()?;
        match value.parse::<i64>() {
            Ok(n) if range.contains(&n) => u32::try_from(n).ok(),
            Ok(n) => {
                problems.push(span.clone(), format!("{key} {n} out of range {}..={}", range.start(), range.end()));
                None
            }
            Err(_) => {
                problems.push(
                    span.clone(),
                    format!("virtual route: bad {key} \"{}\": expected a number", value.escape_debug()),
                );
                None
            }
        }
    };
    let metric = number(&parts.metric, "metric", 0..=i64::from(u32::MAX), problems);
    ok &= parts.metric.is_none() || metric.is_some();
    let table = match parts.table.as_ref().map(|(t, _)| t.as_str()) {
        None => Some(TABLE_MAIN),
        // iproute2's names from /etc/iproute2/rt_tables that every system has.
        Some("main") => Some(TABLE_MAIN),
        Some("local") => Some(255),
        Some("default") => Some(253),
        Some(_) => number(&parts.table, "table", 1..=MAX_TABLE, problems),
    };
    ok &= table.is_some();
    let scope = match &parts.scope {
        None => None,
        Some((word, span)) => match Scope::from_keyword(word) {
            Some(s) => Some(s),
            None => {
                problems.push(
                    span.clone(),
                    format!(
                        "virtual route: scope \"{}\": expected global, site, link, host or nowhere",
                        word.escape_debug()
                    ),
                );
                ok = false;
                None
            }
        },
    };
    ok.then(|| VirtualRoute {
        kind,
        to,
        prefix_len,
        via: via.map(|(ip, _)| ip),
        src: src.map(|(ip, _)| ip),
        dev,
        metric,
        table: table.unwrap_or(TABLE_MAIN),
        scope,
        onlink: parts.onlink,
    })
}

/// `ip` with the bits past `prefix_len` cleared.
fn network(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    fn parse(text: &str) -> Vec<VrrpInstance> {
        match Config::from_str(text, "lb.toml") {
            Ok(c) => c.vrrp,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    fn error(text: &str) -> String {
        match Config::from_str(text, "lb.toml") {
            Ok(c) => panic!("expected an error, got {:#?}", c.vrrp),
            Err(e) => e.to_string(),
        }
    }

    const MIN: &str = "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"10.0.0.100/24\"]\n";

    #[test]
    fn defaults() {
        let v = &parse(MIN)[0];
        assert_eq!((v.version, v.vrid, v.priority), (Version::V3, 51, 100));
        assert_eq!(v.advert_interval, Centiseconds(100));
        assert!(v.preempt);
        assert_eq!(v.preempt_delay, Duration::ZERO);
        assert_eq!(v.auth, Auth::None);
        assert_eq!(v.mcast_group, IpAddr::V4(MULTICAST_V4));
        assert_eq!(v.garp, Garp::default());
        assert_eq!(v.notify.user, "nobody");
        assert_eq!(v.checksum, ChecksumKind::PseudoHeader);
        assert_eq!(
            v.virtual_addresses,
            vec![VirtualAddress { address: "10.0.0.100".parse().unwrap(), prefix_len: 24, dev: None, label: None }]
        );
        assert_eq!(v.at, crate::config::Position { line: 1, column: 1 });
    }

    #[test]
    fn everything() {
        let v = &parse(
            "[global]\nscript_user = \"lbscript\"\n\
             [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nversion = 2\nvirtual_router_id = 7\npriority = 255\n\
             advert_int = \"2s\"\nnopreempt = true\npreempt_delay = \"3s\"\nauth_pass = \"secret123\"\n\
             virtual_ipaddress = [\"10.0.0.100/24\", { address = \"10.0.1.1/32\", dev = \"eth1\", label = \"eth1:v\" }]\n\
             unicast_src = \"10.0.0.2\"\nunicast_peers = [\"10.0.0.3\", \"10.0.0.4\"]\n\
             garp_master_delay = \"0s\"\ngarp_master_repeat = 2\ngarp_master_refresh = \"30s\"\n\
             notify_master = \"/bin/n master\"\nnotify = [\"/bin/n\"]\nnotify_user = \"u\"\n\
             track_interface = [\"eth1\"]\nchecksum = \"rfc9568\"\n\
             [[vrrp.track_script]]\nname = \"chk\"\ncommand = [\"/bin/true\"]\ninterval = \"2s\"\nfall = 3\nrise = 2\nweight = -20\n",
        )[0];
        assert_eq!((v.version, v.vrid, v.priority, v.advert_interval), (Version::V2, 7, 255, Centiseconds(200)));
        assert!(!v.preempt);
        assert_eq!(v.auth, Auth::pass("secret12"));
        assert_eq!(v.virtual_addresses[1].dev.as_deref(), Some("eth1"));
        assert_eq!(v.virtual_addresses[1].label.as_deref(), Some("eth1:v"));
        assert_eq!(v.unicast_peers.len(), 2);
        assert_eq!(
            v.garp,
            Garp { master_delay: Duration::ZERO, master_repeat: 2, master_refresh: Duration::from_secs(30) }
        );
        assert_eq!(v.notify.master, Some(vec!["/bin/n".into(), "master".into()]));
        assert_eq!(v.notify.user, "u");
        assert_eq!(v.checksum, ChecksumKind::MessageOnly);
        let t = &v.track_scripts[0];
        assert_eq!(
            (t.interval, t.timeout, t.rise, t.fall, t.weight),
            (Duration::from_secs(2), Duration::from_secs(2), 2, 3, -20)
        );
        assert_eq!(t.user, "lbscript");
    }

    #[test]
    fn errors_point_at_the_value() {
        let text = "[[vrrp]]\nname = \"A\"\ninterface = \"eth0\"\nversion = 2\nvirtual_router_id = 0\npriority = 256\n\
                    advert_int = \"1500ms\"\nvirtual_ipaddress = []\n\
                    [[vrrp]]\nname = \"B\"\ninterface = \"eth0\"\nvirtual_router_id = 9\nauth_pass = \"x\"\nvirtual_ipaddress = [\"10.0.0.1/24\"]\n\
                    [[vrrp]]\nname = \"C\"\ninterface = \"eth0\"\nvirtual_router_id = 9\nvirtual_ipaddress = [\"10.0.0.2/24\"]\n";
        assert_eq!(
            error(text),
            "lb.toml:5:21: virtual_router_id 0 out of range 1..=255\n\
             lb.toml:6:12: priority 256 out of range 1..=255\n\
             lb.toml:7:14: advert_int 1500ms is not a whole number of seconds: VRRPv2 carries seconds only (use version = 3 for sub-second intervals)\n\
             lb.toml:8:21: virtual_ipaddress is empty: a VRRP instance needs at least one VIP\n\
             lb.toml:13:13: auth_pass is VRRPv2 only: version 3 has no authentication (set version = 2 or drop it)\n\
             lb.toml:18:21: duplicate virtual_router_id 9 on interface eth0 (IPv4): already used at line 12"
        );
        let dup = "[[vrrp]]\nname = \"B\"\ninterface = \"eth0\"\nvirtual_router_id = 9\nvirtual_ipaddress = [\"10.0.0.1/24\"]\n\
                   [[vrrp]]\nname = \"C\"\ninterface = \"eth0\"\nvirtual_router_id = 9\nvirtual_ipaddress = [\"10.0.0.2/24\"]\n";
        assert_eq!(
            error(dup),
            "lb.toml:9:21: duplicate virtual_router_id 9 on interface eth0 (IPv4): already used at line 4"
        );
        // Same VRID on another interface, or another family, is fine.
        let ok = dup.replacen("virtual_ipaddress = [\"10.0.0.2/24\"]", "virtual_ipaddress = [\"fd00::2/64\"]", 1);
        assert_eq!(parse(&ok).len(), 2);
        let missing = "[[vrrp]]\nname = \"B\"\ninterface = \"eth0\"\nvirtual_router_id = 9\n";
        assert_eq!(error(missing), "lb.toml:1:1: VRRP instance has no virtual_ipaddress");
    }

    #[test]
    fn more_errors() {
        let e = error(&format!("{MIN}unicast_peers = [\"fd00::1\"]\nmcast_group = \"10.0.0.1\"\n"));
        assert!(e.contains("lb.toml:6:18: unicast peer fd00::1 is IPv6 but the virtual addresses are IPv4"), "{e}");
        assert!(e.contains("lb.toml:7:15: mcast_group \"10.0.0.1\" is not a multicast address"), "{e}");
        let e = error(&MIN.replace(
            "[\"10.0.0.100/24\"]",
            "[\"10.0.0.100/33\", \"fd00::1/64\", { address = \"10.0.0.5\", label = \"eth1:x\" }]",
        ));
        assert!(e.contains("bad prefix length in \"10.0.0.100/33\""), "{e}");
        assert!(e.contains("label \"eth1:x\" must start with the interface name \"eth0\""), "{e}");
        let e = error(&format!("{MIN}version = 2\nadvert_int = \"100ms\"\n"));
        assert!(e.contains("lb.toml:7:14: advert_int 100ms is not a whole number of seconds"), "{e}");
        let e = error(&format!("{MIN}advert_int = \"105ms\"\nchecksum = \"rfc\"\n"));
        assert!(e.contains("lb.toml:7:12: unknown variant `rfc`"), "{e}");
        let e = error(&format!("{MIN}notify_master = \"notify.sh master\"\n"));
        assert!(e.contains("notify_master: \"notify.sh\" must be an absolute path"), "{e}");
        let e = error(&format!("{MIN}[[vrrp.track_script]]\nname = \"x\"\ncommand = [\"/bin/true\"]\nweight = 254\n"));
        assert!(e.contains("lb.toml:9:10: weight 254 out of range -253..=253"), "{e}");
        let e = error(&format!("{MIN}preempt = true\nnopreempt = true\n"));
        assert!(e.contains("preempt and nopreempt contradict"), "{e}");
    }

    #[test]
    fn track_dataplane() {
        assert_eq!(parse(MIN)[0].track_dataplane, None);
        let v = &parse(&format!("{MIN}[vrrp.track_dataplane]\n"))[0];
        assert_eq!(v.track_dataplane, Some(TrackDataplane { weight: 0, no_live_backend: false }), "weight 0 = FAULT");
        let v = &parse(&format!("{MIN}[vrrp.track_dataplane]\nweight = -60\nno_live_backend = true\n"))[0];
        assert_eq!(v.track_dataplane, Some(TrackDataplane { weight: -60, no_live_backend: true }));
        let e = error(&format!("{MIN}[vrrp.track_dataplane]\nweight = -300\n"));
        assert!(e.contains("lb.toml:7:10: weight -300 out of range -253..=253"), "{e}");
        let e = error(&format!("{MIN}[vrrp.track_dataplane]\nxdp = true\n"));
        assert!(e.contains("lb.toml:7:1: unknown field `xdp`"), "{e}");
    }

    fn routes(list: &str) -> Vec<VirtualRoute> {
        parse(&format!("{MIN}virtual_routes = {list}\n")).remove(0).virtual_routes
    }

    fn route_error(list: &str) -> String {
        error(&format!("{MIN}virtual_routes = {list}\n"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn virtual_routes_as_keepalived_writes_them() {
        assert!(parse(MIN)[0].virtual_routes.is_empty());
        let r = routes(
            "[\"src 10.0.0.100 to 192.0.2.0/24 via 10.0.0.1 dev eth1 metric 10 table 100\", \
             \"192.0.2.128/25 gw 10.0.0.1\", \"198.51.100.0/24 dev eth1 scope link\", \
             \"blackhole 203.0.113.0/24\", \"unreachable 203.0.113.0/25 metric 7 table main\", \
             \"default via 10.0.0.1 table 200 onlink\", \"2001:db8::/32 via fd00::1 preference 5\", \
             \"prohibit 2001:db8:1::/48\"]",
        );
        let base = VirtualRoute {
            kind: RouteKind::Unicast,
            to: ip("192.0.2.0"),
            prefix_len: 24,
            via: Some(ip("10.0.0.1")),
            src: Some(ip("10.0.0.100")),
            dev: Some("eth1".into()),
            metric: Some(10),
            table: 100,
            scope: None,
            onlink: false,
        };
        assert_eq!(r[0], base);
        assert_eq!(
            r[1],
            VirtualRoute {
                to: ip("192.0.2.128"),
                prefix_len: 25,
                src: None,
                dev: None,
                metric: None,
                table: 254,
                ..base.clone()
            }
        );
        assert_eq!(r[2].scope, Some(Scope::Link));
        assert_eq!((r[2].via, r[2].dev.as_deref()), (None, Some("eth1")));
        assert_eq!(
            (r[3].kind, r[3].to, r[3].prefix_len, r[3].table),
            (RouteKind::Blackhole, ip("203.0.113.0"), 24, 254)
        );
        assert_eq!((r[4].kind, r[4].metric, r[4].table), (RouteKind::Unreachable, Some(7), 254));
        assert_eq!((r[5].to, r[5].prefix_len, r[5].table, r[5].onlink), (ip("0.0.0.0"), 0, 200, true));
        assert_eq!((r[6].to, r[6].via, r[6].metric), (ip("2001:db8::"), Some(ip("fd00::1")), Some(5)));
        assert_eq!((r[7].kind, r[7].prefix_len), (RouteKind::Prohibit, 48));
        // A host route when the prefix is left out, as `ip route` does.
        assert_eq!(routes("[\"192.0.2.7 dev eth0\"]")[0].prefix_len, 32);
    }

    #[test]
    fn virtual_routes_as_tables() {
        let r = routes(
            "[{ to = \"198.51.100.0/24\", via = \"10.0.0.1\", dev = \"eth1\", src = \"10.0.0.100\", metric = 5, table = 100 }, \
             { to = \"203.0.113.0/24\", type = \"blackhole\" }, { to = \"default\", gw = \"fd00::1\", scope = \"global\" }]",
        );
        assert_eq!(
            r[0],
            VirtualRoute {
                kind: RouteKind::Unicast,
                to: ip("198.51.100.0"),
                prefix_len: 24,
                via: Some(ip("10.0.0.1")),
                src: Some(ip("10.0.0.100")),
                dev: Some("eth1".into()),
                metric: Some(5),
                table: 100,
                scope: None,
                onlink: false,
            }
        );
        assert_eq!(r[1].kind, RouteKind::Blackhole);
        // `default` takes the gateway's family, not the (IPv4) instance's.
        assert_eq!((r[2].to, r[2].prefix_len, r[2].scope), (ip("::"), 0, Some(Scope::Global)));
        // The same route both ways is the same value (so a reload that rewrites one as the other changes nothing).
        assert_eq!(routes("[\"src 10.0.0.100 198.51.100.0/24 via 10.0.0.1 dev eth1 metric 5 table 100\"]")[0], r[0]);
    }

    #[test]
    fn virtual_route_errors_point_at_the_word() {
        // MIN is lines 1-5; `virtual_routes = [` puts the first string's quote at column 19.
        let cases: &[(&str, &str)] = &[
            (
                "[\"192.0.2.0/33 via 10.0.0.1\"]",
                "lb.toml:6:20: virtual route: bad prefix length in \"192.0.2.0/33\": expected 0..=32",
            ),
            ("[\"192.0.2.x/24 dev eth0\"]", "lb.toml:6:20: virtual route: bad prefix \"192.0.2.x/24\""),
            ("[\"nope/24 dev eth0\"]", "lb.toml:6:20: virtual route: bad prefix \"nope/24\""),
            (
                "[\"192.0.2.1/24 dev eth0\"]",
                "lb.toml:6:20: virtual route: 192.0.2.1/24 has host bits set: did you mean 192.0.2.0/24?",
            ),
            (
                "[\"192.0.2.0/24 via 10.0.0.1 weight 3\"]",
                "lb.toml:6:46: virtual route: unknown keyword \"weight\": expected",
            ),
            (
                "[\"192.0.2.0/24 via 10.0.0.1 mtu 1400\"]",
                "lb.toml:6:46: virtual route: keepalived's \"mtu\" is not supported here",
            ),
            (
                "[\"192.0.2.0/24 via fd00::1\"]",
                "lb.toml:6:37: virtual route: via fd00::1 is IPv6 but the destination 192.0.2.0/24 is IPv4: one family per route",
            ),
            (
                "[\"src fd00::5 192.0.2.0/24 dev eth0\"]",
                "lb.toml:6:24: virtual route: src fd00::5 is IPv6 but the destination 192.0.2.0/24 is IPv4",
            ),
            (
                "[\"2001:db8::/32 via 10.0.0.1\"]",
                "lb.toml:6:38: virtual route: via 10.0.0.1 is IPv4 but the destination 2001:db8::/32 is IPv6",
            ),
            ("[\"192.0.2.0/24 via 10.0.0.1 table 0\"]", "lb.toml:6:52: table 0 out of range 1..=4294967295"),
            (
                "[\"192.0.2.0/24 via 10.0.0.1 table 4294967296\"]",
                "lb.toml:6:52: table 4294967296 out of range 1..=4294967295",
            ),
            (
                "[\"192.0.2.0/24 via 10.0.0.1 table mgmt\"]",
                "lb.toml:6:52: virtual route: bad table \"mgmt\": expected a number",
            ),
            ("[\"192.0.2.0/24 via 10.0.0.1 metric -1\"]", "lb.toml:6:53: metric -1 out of range 0..=4294967295"),
            ("[\"192.0.2.0/24\"]", "lb.toml:6:19: virtual route to 192.0.2.0/24 has no dev and no via"),
            ("[\"192.0.2.0/24 src 10.0.0.100\"]", "lb.toml:6:19: virtual route to 192.0.2.0/24 has no dev and no via"),
            (
                "[\"blackhole 192.0.2.0/24 via 10.0.0.1\"]",
                "lb.toml:6:47: virtual route: a blackhole route takes no via or dev",
            ),
            (
                "[\"192.0.2.0/24 via 10.0.0.1 or 10.0.0.2\"]",
                "lb.toml:6:46: virtual route: multipath (\"or\") is not supported",
            ),
            ("[\"192.0.2.0/24 via\"]", "lb.toml:6:33: virtual route: \"via\" needs a value"),
            ("[\"192.0.2.0/24 via 10.0.0.1 via 10.0.0.2\"]", "lb.toml:6:46: virtual route: \"via\" given twice"),
            (
                "[\"192.0.2.0/24 via 10.0.0.1 scope galaxy\"]",
                "lb.toml:6:52: virtual route: scope \"galaxy\": expected global",
            ),
            ("[\"192.0.2.0/24 dev eth0:1\"]", "lb.toml:6:37: bad interface name \"eth0:1\""),
            ("[\"192.0.2.0/24 via 10.0.0/8\"]", "lb.toml:6:37: virtual route: bad via address \"10.0.0/8\""),
            ("[\"via 10.0.0.1\"]", "lb.toml:6:19: virtual route without a destination"),
            (
                "[\"192.0.2.0/24 via 10.0.0.1\", \"192.0.2.0/24 dev eth0\"]",
                "lb.toml:6:48: duplicate virtual route 192.0.2.0/24 (same table and metric)",
            ),
            // Table entries point at the value.
            (
                "[{ to = \"192.0.2.0/24\", via = \"10.0.0.1\", table = 0 }]",
                "lb.toml:6:68: table 0 out of range 1..=4294967295",
            ),
            ("[{ to = \"192.0.2.0/24\", via = \"fd00::1\" }]", "lb.toml:6:48: virtual route: via fd00::1 is IPv6"),
            (
                "[{ to = \"192.0.2.0/24\", type = \"nat\" }]",
                "lb.toml:6:49: virtual route type \"nat\": expected unicast, blackhole",
            ),
            ("[{ to = \"192.0.2.0/24\", weight = 1 }]", "lb.toml:6:42: unknown field `weight`"),
            ("[{ to = \"192.0.2.0/24\" }]", "lb.toml:6:19: virtual route to 192.0.2.0/24 has no dev and no via"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(list, want)| (list, want, route_error(list)))
            .filter(|(_, want, e)| !e.starts_with(*want))
            .map(|(list, want, e)| format!("{list}:\n got  {e}\n want {want}..."))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // A string with an escape has no word positions: the error points at the entry.
        let e = route_error("[\"192.0.2.0/24\\tvia 10.0.0.1 bogus\"]");
        assert!(e.starts_with("lb.toml:6:19: virtual route: unknown keyword \"bogus\""), "{e}");
        // The same prefix in another table, or with another metric, is another route.
        assert_eq!(routes("[\"192.0.2.0/24 via 10.0.0.1\", \"192.0.2.0/24 via 10.0.0.2 table 7\", \"192.0.2.0/24 via 10.0.0.2 metric 9\"]").len(), 3);
    }

    /// The warnings of a file that must be valid.
    fn warnings(text: &str) -> Vec<String> {
        match Config::from_str(text, "lb.toml") {
            Ok(c) => c.warning_lines(),
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    #[test]
    fn weights_that_cannot_fail_over_are_warned_about() {
        let script = |w: i32| {
            format!("[[vrrp.track_script]]\nname = \"s{}\"\ncommand = [\"/bin/true\"]\nweight = {w}\n", w.abs())
        };
        let dp = |w: i32| format!("[vrrp.track_dataplane]\nweight = {w}\n");
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
            Case {
                name: "no peer_priority: nothing to compare with",
                text: inst(150, None, &script(-20)),
                want: vec![],
            },
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
                    "lb.toml:9:10: warning: track_dataplane: weight -50 can never cause a failover: 150 - 50 = 100 is not below peer_priority 100 (needs a magnitude of at least 51, or weight 0 for FAULT)",
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
                    "lb.toml:13:10: warning: track_dataplane: weight -40 can never cause a failover: 200 - 40 = 160 is not below peer_priority 100 (needs a magnitude of at least 101, or weight 0 for FAULT)",
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
        assert_eq!(g.at, crate::config::Position { line: 11, column: 1 });
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn sync_group_errors_and_warnings() {
        let base = two("VI_1", "VI_2");
        let group =
            |name: &str, members: &str| format!("[[vrrp_sync_group]]\nname = \"{name}\"\ngroup = [{members}]\n");
        // Lines 11-13: G1; 14-16: G2.
        let text =
            format!("{base}{}{}", group("G1", "\"VI_1\", \"VI_3\", \"VI_1\""), group("G2", "\"VI_2\", \"VI_1\""));
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
}
