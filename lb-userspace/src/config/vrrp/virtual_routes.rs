//! `virtual_routes` entries, as keepalived's `ip route` line or as a TOML
//! table, refused here when the kernel would refuse the route.

use std::net::{IpAddr, Ipv4Addr};

use toml::Spanned;

use super::route::{RouteKind, Scope, TABLE_MAIN, VirtualRoute};
use crate::config::{
    fields::interface_name,
    model::{RawRoute, RawRouteTable},
    span::{Problems, Span},
};

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
pub(crate) fn virtual_route(
    item: &Spanned<RawRoute>,
    ipv6: bool,
    text: &str,
    problems: &mut Problems,
) -> Option<VirtualRoute> {
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
