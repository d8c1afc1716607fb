//! A `[[vrrp]]` table: one VRRP instance, keepalived's `vrrp_instance` with
//! its `vrrp_script`s inlined, and the rules across instances.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use toml::Spanned;

use super::{
    command::{NotifyKeys, argv, notify},
    route::VirtualRoute,
    types::{
        DEFAULT_GARP_MASTER_DELAY, DEFAULT_GARP_MASTER_REPEAT, Garp, MAX_TRACK_WEIGHT, TrackFastPath, TrackScript,
        VrrpInstance,
    },
    virtual_ipaddress::vip_addr,
    virtual_routes::virtual_route,
    warnings::weight_warnings,
};
use crate::config::{
    duration,
    fields::{fall_rise, int_in, interface_name},
    model::{RawChecksum, RawDuration, RawVrrp},
    span::{Problems, Span, position},
};
use crate::vrrp::packet::{
    Auth, Centiseconds, ChecksumKind, MAX_ADDRESSES, MAX_V3_INTERVAL, MULTICAST_V4, MULTICAST_V6, Version,
};

/// keepalived's limit for `preempt_delay`.
const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);
/// Up to a thousand repeats covers any sane use; more is a typo.
const MAX_GARP_REPEAT: i64 = 1000;

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
    let track_fast_path = v.track_fast_path.as_ref().map(|t| {
        let t = t.get_ref();
        let w = weight(&t.weight, problems);
        if let Some(at) = &t.weight {
            weights.push((w, at.span(), "track_fast_path".to_owned()));
        }
        TrackFastPath { weight: w, no_live_backend: t.no_live_backend.unwrap_or(false) }
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
        track_fast_path,
        checksum,
        lower_prio_no_advert: v.lower_prio_no_advert.unwrap_or(false),
        peer_priority,
        at: position(text, r.span().start),
    };
    (inst, vrid_ok)
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
