//! keepalived's `virtual_routes`: routes that belong to the master, added
//! over route netlink (`RTM_NEWROUTE`) after the VIPs when an instance
//! becomes master (a route's `src` may be one of them) and removed
//! (`RTM_DELROUTE`) before them when it stops being master, as keepalived's
//! `vrrp_restore_interface` does. They go through the instance's
//! [`Rtnl`](crate::rtnl::Rtnl) connection, so they land in the same
//! namespace as its VIPs.
//!
//! Routes are tagged `proto keepalived` (18) as keepalived tags them, so an
//! operator's `ip route show proto keepalived` finds them after migrating.

use std::io;

use netlink_packet_route::route::{RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use rtnetlink::RouteMessageBuilder;

#[cfg(test)]
use crate::config::TABLE_MAIN;
use crate::{
    config::{RouteKind, Scope, VirtualRoute},
    rtnl,
};

fn route_type(kind: RouteKind) -> RouteType {
    match kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
    }
}

fn route_scope(scope: Scope) -> RouteScope {
    match scope {
        Scope::Global => RouteScope::Universe,
        Scope::Site => RouteScope::Site,
        Scope::Link => RouteScope::Link,
        Scope::Host => RouteScope::Host,
        Scope::Nowhere => RouteScope::NoWhere,
    }
}

/// The `RTM_NEWROUTE` / `RTM_DELROUTE` body for `route`, `oif` being its
/// `dev`'s index. Deletion sends the same body, so the kernel removes this
/// route and not another one to the same prefix (another metric, table or
/// protocol). A route whose addresses are not all of one family is refused
/// here, with the address at fault.
pub fn route_message(route: &VirtualRoute, oif: Option<u32>) -> io::Result<RouteMessage> {
    // Attributes go in the order iproute2 sends them.
    let mut builder = RouteMessageBuilder::<std::net::IpAddr>::new()
        .table_id(route.table)
        .destination_prefix(route.to, route.prefix_len)
        .map_err(invalid(route))?;
    if let Some(src) = route.src {
        builder = builder.pref_source(src).map_err(invalid(route))?;
    }
    if let Some(via) = route.via {
        builder = builder.gateway(via).map_err(invalid(route))?;
    }
    if let Some(oif) = oif {
        builder = builder.output_interface(oif);
    }
    if let Some(metric) = route.metric {
        builder = builder.priority(metric);
    }
    if route.onlink {
        builder = builder.onlink();
    }
    let mut msg = builder
        .protocol(RouteProtocol::KeepAlived)
        .scope(route_scope(route.effective_scope()))
        .kind(route_type(route.kind))
        .build();
    if route.table > u32::from(u8::MAX) {
        // rtm_table is one byte: iproute2 leaves it unspecified when
        // RTA_TABLE carries the id (the builder leaves it at main).
        msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    }
    Ok(msg)
}

/// The builder's refusal, with the route it refused.
fn invalid<E: std::fmt::Display>(route: &VirtualRoute) -> impl FnOnce(E) -> io::Error + '_ {
    move |e| io::Error::new(io::ErrorKind::InvalidInput, format!("route {route}: {e}"))
}

impl rtnl::Rtnl {
    /// `ip route replace ROUTE`: added, or an existing route with the same
    /// key (prefix, table, metric) overwritten, as keepalived does, so a
    /// route left by a crashed run or added by hand does not fail the add.
    pub async fn add_route(&self, route: &VirtualRoute, oif: Option<u32>) -> io::Result<()> {
        let request = self.handle().route().add(route_message(route, oif)?).replace();
        rtnl::within(request.execute()).await
    }

    /// `ip route del ROUTE`. `Ok(false)` when it was not there: the kernel
    /// already dropped it with its `src` address or its interface.
    pub async fn del_route(&self, route: &VirtualRoute, oif: Option<u32>) -> io::Result<bool> {
        let request = self.handle().route().del(route_message(route, oif)?);
        match rtnl::within(request.execute()).await {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ENODEV | libc::ENOENT)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable as _;
    use netlink_packet_route::route::RouteFlags;

    use super::*;

    fn route(to: &str, prefix_len: u8) -> VirtualRoute {
        VirtualRoute {
            kind: RouteKind::Unicast,
            to: to.parse().unwrap(),
            prefix_len,
            via: None,
            src: None,
            dev: None,
            metric: None,
            table: TABLE_MAIN,
            scope: None,
            onlink: false,
        }
    }

    /// The message as it goes on the wire after the netlink header.
    fn bytes(msg: &RouteMessage) -> Vec<u8> {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    fn rta(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        b.resize(b.len().next_multiple_of(4), 0);
        b
    }

    const RTA_DST: u16 = 1;
    const RTA_OIF: u16 = 4;
    const RTA_GATEWAY: u16 = 5;
    const RTA_PRIORITY: u16 = 6;
    const RTA_PREFSRC: u16 = 7;
    const RTA_TABLE: u16 = 15;

    #[test]
    fn unicast_route_bytes_match_what_iproute2_sends() {
        // ip route replace 192.0.2.0/24 via 10.0.0.1 dev #3 src 10.0.0.100 metric 10 table 100 proto keepalived
        let r = VirtualRoute {
            via: Some("10.0.0.1".parse().unwrap()),
            src: Some("10.0.0.100".parse().unwrap()),
            dev: Some("eth1".into()),
            metric: Some(10),
            table: 100,
            ..route("192.0.2.0", 24)
        };
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
        let mut want = vec![libc::AF_INET as u8, 24, 0, 0, 100, 18, 0, 1];
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend(rta(RTA_DST, &[192, 0, 2, 0]));
        want.extend(rta(RTA_PREFSRC, &[10, 0, 0, 100]));
        want.extend(rta(RTA_GATEWAY, &[10, 0, 0, 1]));
        want.extend(rta(RTA_OIF, &3u32.to_ne_bytes()));
        want.extend(rta(RTA_PRIORITY, &10u32.to_ne_bytes()));
        assert_eq!(bytes(&route_message(&r, Some(3)).unwrap()), want);
    }

    #[test]
    fn blackhole_ipv6_and_big_tables() {
        // ip -6 route del blackhole 2001:db8::/32 table 1000 proto keepalived
        let r = VirtualRoute { kind: RouteKind::Blackhole, table: 1000, ..route("2001:db8::", 32) };
        // Table 1000 does not fit rtm_table: RT_TABLE_UNSPEC there, RTA_TABLE carries it. Type 6 = RTN_BLACKHOLE.
        let mut want = vec![libc::AF_INET6 as u8, 32, 0, 0, 0, 18, 0, 6];
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend(rta(RTA_TABLE, &1000u32.to_ne_bytes()));
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        want.extend(rta(RTA_DST, &dst));
        assert_eq!(bytes(&route_message(&r, None).unwrap()), want);
    }

    #[test]
    fn mixed_families_are_refused_before_the_kernel() {
        let r = VirtualRoute { src: Some("2001:db8::1".parse().unwrap()), ..route("192.0.2.0", 24) };
        let e = route_message(&r, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("192.0.2.0/24"), "{e}");
    }

    #[test]
    fn scope_defaults_follow_ip_route() {
        let dev_only = VirtualRoute { dev: Some("eth0".into()), ..route("192.0.2.0", 24) };
        assert_eq!(dev_only.effective_scope(), Scope::Link, "no gateway: on the link");
        assert_eq!(route_message(&dev_only, Some(2)).unwrap().header.scope, RouteScope::Link);
        let via = VirtualRoute { via: Some("10.0.0.1".parse().unwrap()), ..route("192.0.2.0", 24) };
        assert_eq!(via.effective_scope(), Scope::Global);
        let black = VirtualRoute { kind: RouteKind::Blackhole, ..route("192.0.2.0", 24) };
        assert_eq!(black.effective_scope(), Scope::Global);
        let v6 = VirtualRoute { dev: Some("eth0".into()), ..route("2001:db8::", 32) };
        assert_eq!(v6.effective_scope(), Scope::Global, "IPv6 routes are global");
        let set = VirtualRoute { scope: Some(Scope::Host), ..dev_only.clone() };
        assert_eq!(set.effective_scope(), Scope::Host);
        let onlink = VirtualRoute { onlink: true, ..via };
        assert_eq!(route_message(&onlink, None).unwrap().header.flags, RouteFlags::Onlink);
    }

    #[test]
    fn display_reads_like_ip_route() {
        let r = VirtualRoute {
            via: Some("10.0.0.1".parse().unwrap()),
            dev: Some("eth1".into()),
            src: Some("10.0.0.100".parse().unwrap()),
            metric: Some(5),
            table: 100,
            ..route("198.51.100.0", 24)
        };
        assert_eq!(r.to_string(), "198.51.100.0/24 via 10.0.0.1 dev eth1 src 10.0.0.100 metric 5 table 100");
        let b = VirtualRoute { kind: RouteKind::Blackhole, ..route("203.0.113.0", 24) };
        assert_eq!(b.to_string(), "blackhole 203.0.113.0/24");
    }
}
