//! keepalived's `virtual_routes`: routes that belong to the master, added
//! over route netlink (`RTM_NEWROUTE`) after the VIPs when an instance
//! becomes master (a route's `src` may be one of them) and removed
//! (`RTM_DELROUTE`) before them when it stops being master, as keepalived's
//! `vrrp_restore_interface` does. They go through the instance's
//! [`Rtnl`] socket, so they land in the same namespace as its VIPs.
//!
//! Routes are tagged `proto keepalived` (18) as keepalived tags them, so an
//! operator's `ip route show proto keepalived` finds them after migrating.

use std::io;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
    },
};

use super::addresses::Rtnl;
#[cfg(test)]
use crate::config::TABLE_MAIN;
use crate::config::{RouteKind, Scope, VirtualRoute};

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
/// protocol).
pub fn route_message(route: &VirtualRoute, oif: Option<u32>) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if route.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    msg.header.destination_prefix_length = route.prefix_len;
    msg.header.protocol = RouteProtocol::KeepAlived;
    msg.header.scope = route_scope(route.effective_scope());
    msg.header.kind = route_type(route.kind);
    if route.onlink {
        msg.header.flags = RouteFlags::Onlink;
    }
    // rtm_table is one byte: larger ids go in RTA_TABLE, as iproute2 sends them.
    match u8::try_from(route.table) {
        Ok(t) => msg.header.table = t,
        Err(_) => {
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
            msg.attributes.push(RouteAttribute::Table(route.table));
        }
    }
    msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(route.to)));
    if let Some(src) = route.src {
        msg.attributes.push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if let Some(via) = route.via {
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::from(via)));
    }
    if let Some(oif) = oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(metric) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    msg
}

impl Rtnl {
    /// `ip route replace ROUTE`: added, or an existing route with the same
    /// key (prefix, table, metric) overwritten, as keepalived does, so a
    /// route left by a crashed run or added by hand does not fail the add.
    pub fn add_route(&mut self, route: &VirtualRoute, oif: Option<u32>) -> io::Result<()> {
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        self.request(flags, RouteNetlinkMessage::NewRoute(route_message(route, oif)))
    }

    /// `ip route del ROUTE`. `Ok(false)` when it was not there: the kernel
    /// already dropped it with its `src` address or its interface.
    pub fn del_route(&mut self, route: &VirtualRoute, oif: Option<u32>) -> io::Result<bool> {
        match self.request(NLM_F_REQUEST | NLM_F_ACK, RouteNetlinkMessage::DelRoute(route_message(route, oif))) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ENODEV | libc::ENOENT)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {

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

    fn nlmsghdr(len: u32, kind: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b
    }

    fn rta(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        b.resize(b.len().next_multiple_of(4), 0);
        b
    }

    const RTM_NEWROUTE: u16 = 24;
    const RTM_DELROUTE: u16 = 25;
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
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        let got = crate::rtnl::encode(flags, 7, RouteNetlinkMessage::NewRoute(route_message(&r, Some(3))));
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
        let mut body = vec![libc::AF_INET as u8, 24, 0, 0, 100, 18, 0, 1];
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend(rta(RTA_DST, &[192, 0, 2, 0]));
        body.extend(rta(RTA_PREFSRC, &[10, 0, 0, 100]));
        body.extend(rta(RTA_GATEWAY, &[10, 0, 0, 1]));
        body.extend(rta(RTA_OIF, &3u32.to_ne_bytes()));
        body.extend(rta(RTA_PRIORITY, &10u32.to_ne_bytes()));
        // NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, as `ip route replace` sends.
        let mut want = nlmsghdr(16 + body.len() as u32, RTM_NEWROUTE, 0x0001 | 0x0004 | 0x0400 | 0x0100, 7);
        want.extend(body);
        assert_eq!(got, want);
    }

    #[test]
    fn blackhole_ipv6_and_big_tables() {
        // ip -6 route del blackhole 2001:db8::/32 table 1000 proto keepalived
        let r = VirtualRoute { kind: RouteKind::Blackhole, table: 1000, ..route("2001:db8::", 32) };
        let got =
            crate::rtnl::encode(NLM_F_REQUEST | NLM_F_ACK, 1, RouteNetlinkMessage::DelRoute(route_message(&r, None)));
        // Table 1000 does not fit rtm_table: RT_TABLE_UNSPEC there, RTA_TABLE carries it. Type 6 = RTN_BLACKHOLE.
        let mut body = vec![libc::AF_INET6 as u8, 32, 0, 0, 0, 18, 0, 6];
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend(rta(RTA_TABLE, &1000u32.to_ne_bytes()));
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        body.extend(rta(RTA_DST, &dst));
        let mut want = nlmsghdr(16 + body.len() as u32, RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, 1);
        want.extend(body);
        assert_eq!(got, want);
    }

    #[test]
    fn scope_defaults_follow_ip_route() {
        let dev_only = VirtualRoute { dev: Some("eth0".into()), ..route("192.0.2.0", 24) };
        assert_eq!(dev_only.effective_scope(), Scope::Link, "no gateway: on the link");
        assert_eq!(route_message(&dev_only, Some(2)).header.scope, RouteScope::Link);
        let via = VirtualRoute { via: Some("10.0.0.1".parse().unwrap()), ..route("192.0.2.0", 24) };
        assert_eq!(via.effective_scope(), Scope::Global);
        let black = VirtualRoute { kind: RouteKind::Blackhole, ..route("192.0.2.0", 24) };
        assert_eq!(black.effective_scope(), Scope::Global);
        let v6 = VirtualRoute { dev: Some("eth0".into()), ..route("2001:db8::", 32) };
        assert_eq!(v6.effective_scope(), Scope::Global, "IPv6 routes are global");
        let set = VirtualRoute { scope: Some(Scope::Host), ..dev_only.clone() };
        assert_eq!(set.effective_scope(), Scope::Host);
        let onlink = VirtualRoute { onlink: true, ..via };
        assert_eq!(route_message(&onlink, None).header.flags, RouteFlags::Onlink);
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
