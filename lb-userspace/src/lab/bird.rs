//! BIRD 2 configurations for an ECMP lab, and reading the router's
//! forwarding table: what `lb lab --ecmp` and the ECMP tests share.
//!
//! The router peers with every director over eBGP and merges their equal
//! routes into one multipath kernel route. Each director's BIRD learns the
//! routes the agent puts in its announce table (kernel protocol, `learn`)
//! and exports them to the router with itself as the next hop. All
//! directors announce with identical attributes (same AS, no MED, no
//! communities), or the router would pick one of them instead of merging.

use std::net::{IpAddr, Ipv4Addr};

/// The router's AS; the directors share another, so their paths are equal.
pub const ROUTER_AS: u32 = 65000;
pub const DIRECTOR_AS: u32 = 65001;

/// BGP timers short enough that a lab comes up in a second or two: a
/// refused connection (the peer's BIRD not started yet) is retried after
/// one second rather than BIRD's default two minutes.
const TIMERS: &str = "    hold time 3;\n    keepalive time 1;\n    connect delay time 1;\n    \
                      connect retry time 1;\n    error wait time 1, 5;\n";

/// The router's configuration: one BGP session per director (named
/// `d1`, `d2`, ... in order) and a kernel protocol that installs the
/// merged multipath route.
pub fn router_config(router_id: Ipv4Addr, directors: &[Ipv4Addr]) -> String {
    let mut c = format!(
        "# Written by lb: the lab's upstream router.\nrouter id {router_id};\n\
         protocol device {{ scan time 10; }}\n\
         protocol kernel {{\n    ipv4 {{ import none; export all; }};\n    merge paths on;\n}}\n"
    );
    for (i, d) in directors.iter().enumerate() {
        c.push_str(&format!(
            "protocol bgp d{} {{\n    local as {ROUTER_AS};\n    neighbor {d} as {DIRECTOR_AS};\n{TIMERS}    \
             ipv4 {{ import all; export none; }};\n}}\n",
            i + 1
        ));
    }
    c
}

/// A director's configuration: learn the routes in kernel table `table`
/// (the agent's announce table) into a table of their own and export
/// exactly those to the router, with `local` as the next hop.
///
/// The kernel protocol learns a change through netlink as the agent makes
/// it; `scan time` only bounds how late a missed notification is noticed.
pub fn director_config(local: Ipv4Addr, router: Ipv4Addr, table: u32) -> String {
    format!(
        "# Written by lb: a director announcing what its agent puts in table {table}.\n\
         router id {local};\nprotocol device {{ scan time 10; }}\nipv4 table announced;\n\
         protocol kernel {{\n    kernel table {table};\n    learn;\n    scan time 1;\n    \
         ipv4 {{ table announced; import all; export none; }};\n}}\n\
         protocol bgp upstream {{\n    local {local} as {DIRECTOR_AS};\n    neighbor {router} as {ROUTER_AS};\n\
         {TIMERS}    ipv4 {{ table announced; import none; export all; next hop self; }};\n}}\n"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("`ip -j route show` printed something that is not its JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("`ip -j route show` printed a gateway that is not an address: {0:?}")]
    Gateway(String),
}

/// The next hops of the routes in `ip -j route show PREFIX` output: one
/// route's `gateway`, or a multipath route's `nexthops`. Empty when there
/// is no route.
pub fn next_hops(json: &str) -> Result<Vec<IpAddr>, RouteError> {
    let routes: Vec<serde_json::Value> = serde_json::from_str(json.trim())?;
    let mut hops = Vec::new();
    for route in &routes {
        let gateways = match route["nexthops"].as_array() {
            Some(nexthops) => nexthops.iter().map(|h| &h["gateway"]).collect(),
            None => vec![&route["gateway"]],
        };
        for g in gateways.into_iter().filter_map(serde_json::Value::as_str) {
            hops.push(g.parse().map_err(|_| RouteError::Gateway(g.to_owned()))?);
        }
    }
    Ok(hops)
}

/// The `via ADDRESS` of one `ip route get` answer.
pub fn via(route_get: &str) -> Option<IpAddr> {
    let mut words = route_get.split_whitespace();
    while let Some(w) = words.next() {
        if w == "via" {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: [Ipv4Addr; 3] = [Ipv4Addr::new(10, 1, 0, 11), Ipv4Addr::new(10, 1, 0, 12), Ipv4Addr::new(10, 1, 0, 13)];

    #[test]
    fn router_peers_with_every_director_in_the_same_as_and_merges() {
        let c = router_config(Ipv4Addr::new(10, 1, 0, 1), &D);
        assert!(c.contains("merge paths on;"), "{c}");
        for (i, d) in D.iter().enumerate() {
            assert!(c.contains(&format!("protocol bgp d{} {{", i + 1)), "{c}");
            assert!(c.contains(&format!("neighbor {d} as {DIRECTOR_AS};")), "{c}");
        }
        // eBGP in BIRD 2 takes nothing and sends nothing without a policy.
        assert_eq!(c.matches("import all; export none;").count(), D.len(), "{c}");
        assert_eq!(c.matches('{').count(), c.matches('}').count(), "{c}");
    }

    #[test]
    fn director_learns_the_announce_table_and_exports_only_it() {
        let c = director_config(D[0], Ipv4Addr::new(10, 1, 0, 1), 200);
        assert!(c.contains("kernel table 200;\n    learn;"), "{c}");
        assert!(c.contains("table announced; import all; export none;"), "{c}");
        assert!(c.contains("table announced; import none; export all; next hop self;"), "{c}");
        assert!(c.contains(&format!("local {} as {DIRECTOR_AS};", D[0])), "{c}");
        assert_eq!(c.matches('{').count(), c.matches('}').count(), "{c}");
    }

    #[test]
    fn next_hops_of_a_multipath_route_a_single_one_and_none() {
        let multi = r#"[{"dst":"10.2.0.100","protocol":"bird","metric":32,"flags":[],"nexthops":[
            {"gateway":"10.1.0.11","dev":"eth1","weight":1,"flags":[]},
            {"gateway":"10.1.0.13","dev":"eth1","weight":1,"flags":[]}]}]"#;
        assert_eq!(next_hops(multi).unwrap(), vec![IpAddr::V4(D[0]), IpAddr::V4(D[2])]);
        let single = r#"[{"dst":"10.2.0.100","gateway":"10.1.0.12","dev":"eth1","protocol":"bird","flags":[]}]"#;
        assert_eq!(next_hops(single).unwrap(), vec![IpAddr::V4(D[1])]);
        assert!(next_hops("[]\n").unwrap().is_empty());
        assert!(next_hops("Error: any valid prefix is expected").is_err());
        assert!(next_hops(r#"[{"gateway":"nope"}]"#).is_err());
    }

    #[test]
    fn via_of_a_route_get_answer() {
        let answer = "10.2.0.100 from 10.0.0.2 via 10.1.0.12 dev eth1 \n    cache iif eth0 \n";
        assert_eq!(via(answer), Some(IpAddr::V4(D[1])));
        assert_eq!(via("10.2.0.100 dev eth1 src 10.1.0.1"), None);
    }
}
