//! `[announce]` and each VIP's `announce`: which VIPs the agent offers to
//! a BGP daemon through a kernel routing table of its own.

use toml::Spanned;

use super::{
    fields::int_in,
    model::RawAnnounce,
    span::Problems,
    types::Announce,
    vrrp::{TABLE_MAIN, VrrpInstance},
};

/// The tables `ip route` names `default`, `main` and `local`: the kernel
/// and every tool treat them as the host's own, so routes the agent adds
/// and removes there would change forwarding on the director.
const RESERVED_TABLES: [(u32, &str); 3] = [(253, "default"), (TABLE_MAIN, "main"), (255, "local")];

/// The largest table id; `u32::MAX` is refused by the kernel's `RTA_TABLE`
/// handling in iproute2 and leaves no room for "unspecified".
const MAX_TABLE: i64 = 0xFFFF_FFFE;

/// The validated `[announce]` table, `None` when absent or invalid (the
/// problem is recorded then).
pub(crate) fn announce(
    raw: Option<&Spanned<RawAnnounce>>,
    vrrp: &[VrrpInstance],
    problems: &mut Problems,
) -> Option<Announce> {
    let raw = raw?.get_ref();
    let table = int_in::<u32>(&raw.table, "announce table", 1..=MAX_TABLE, problems).and_then(|table| {
        match RESERVED_TABLES.iter().find(|(id, _)| *id == table) {
            Some((_, name)) => {
                problems.push(
                    raw.table.span(),
                    format!(
                        "announce table {table} is the kernel's \"{name}\" table: the agent adds and removes \
                         routes in its table, so give it one of its own (for example 200)"
                    ),
                );
                None
            }
            None => Some(table),
        }
    });
    let metric =
        raw.metric.as_ref().map_or(Some(0), |m| int_in::<u32>(m, "announce metric", 0..=i64::from(u32::MAX), problems));
    let table = table?;
    // A VRRP route in the agent's table would be exported with the VIPs
    // and taken for one of them.
    for v in vrrp {
        if v.virtual_routes.iter().any(|r| r.table == table) {
            problems.push(
                raw.table.span(),
                format!(
                    "announce table {table} is also a table of [[vrrp]] {}'s virtual_routes: the announce table \
                     holds only the agent's VIP routes",
                    v.name
                ),
            );
        }
    }
    Some(Announce { table, metric: metric? })
}

/// A VIP's `announce`: true by default when the file has `[announce]`.
/// `announce = true` without `[announce]` is an error, not a no-op: the
/// operator asked for announcements that would never happen.
pub(crate) fn vip_announce(raw: Option<&Spanned<bool>>, has_announce: bool, problems: &mut Problems) -> bool {
    match raw {
        None => has_announce,
        Some(a) if *a.get_ref() && !has_announce => {
            problems.push(
                a.span(),
                "announce = true but the file has no [announce] table: add one (`[announce]` with \
                 `table = N`) or remove this key",
            );
            false
        }
        Some(a) => *a.get_ref() && has_announce,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Announce, Config};

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_str(text, "lb.toml").map_err(|e| e.to_string())
    }

    const VIP: &str = "[[vip]]\naddress = \"10.0.0.1\"\nport = 80\ninterface = \"eth0\"\n";

    #[test]
    fn absent_announces_nothing() {
        let config = parse(VIP).unwrap();
        assert_eq!(config.announce, None);
        assert!(!config.vips[0].announce);
        // false without [announce] says what happens anyway: accepted.
        assert!(!parse(&format!("{VIP}announce = false\n")).unwrap().vips[0].announce);
    }

    #[test]
    fn every_vip_is_announced_unless_it_says_no() {
        let text =
            format!("[announce]\ntable = 200\nmetric = 7\n{VIP}{}", VIP.replace("80", "443") + "announce = false\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.announce, Some(Announce { table: 200, metric: 7 }));
        assert!(config.vips[0].announce);
        assert!(!config.vips[1].announce);
        assert_eq!(parse("[announce]\ntable = 4294967294\n").unwrap().announce.unwrap().metric, 0);
    }

    #[test]
    fn announce_true_without_the_table_is_an_error() {
        assert_eq!(
            parse(&format!("{VIP}announce = true\n")).unwrap_err(),
            "lb.toml:5:12: announce = true but the file has no [announce] table: add one (`[announce]` with \
             `table = N`) or remove this key"
        );
    }

    #[test]
    fn bad_tables_name_their_place() {
        assert_eq!(
            parse("[announce]\ntable = 0\n").unwrap_err(),
            "lb.toml:2:9: announce table 0 out of range 1..=4294967294"
        );
        assert_eq!(
            parse("[announce]\ntable = 4294967295\n").unwrap_err(),
            "lb.toml:2:9: announce table 4294967295 out of range 1..=4294967294"
        );
        for (table, name) in [(253, "default"), (254, "main"), (255, "local")] {
            assert_eq!(
                parse(&format!("[announce]\ntable = {table}\n")).unwrap_err(),
                format!(
                    "lb.toml:2:9: announce table {table} is the kernel's \"{name}\" table: the agent adds and \
                     removes routes in its table, so give it one of its own (for example 200)"
                )
            );
        }
        assert_eq!(
            parse("[announce]\ntable = 200\nmetric = -1\n").unwrap_err(),
            "lb.toml:3:10: announce metric -1 out of range 0..=4294967295"
        );
        assert!(parse("[announce]\nmetric = 1\n").unwrap_err().starts_with("lb.toml:1:1: missing field `table`"));
        assert!(
            parse("[announce]\ntable = 200\ncommunity = 1\n").unwrap_err().starts_with("lb.toml:3:1: unknown field")
        );
        // A bad table is reported once, not again at every VIP.
        let errors = parse(&format!("[announce]\ntable = 254\n{VIP}announce = true\n")).unwrap_err();
        assert_eq!(errors.lines().count(), 1, "{errors}");
    }

    #[test]
    fn a_vrrp_route_in_the_announce_table_is_refused() {
        let text = "[announce]\ntable = 200\n\
                    [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\n\
                    virtual_ipaddress = [\"10.0.0.1/24\"]\nvirtual_routes = [\"blackhole 10.9.0.0/16 table 200\"]\n";
        let error = parse(text).unwrap_err();
        assert!(error.starts_with("lb.toml:2:9: announce table 200 is also a table of [[vrrp]] VI_1's"), "{error}");
    }
}
