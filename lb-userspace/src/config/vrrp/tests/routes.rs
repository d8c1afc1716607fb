//! `virtual_routes` in both forms, and where each mistake is reported.

use std::net::IpAddr;

use super::{MIN, error, parse};
use crate::config::{RouteKind, Scope, VirtualRoute};

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
    assert_eq!((r[3].kind, r[3].to, r[3].prefix_len, r[3].table), (RouteKind::Blackhole, ip("203.0.113.0"), 24, 254));
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
