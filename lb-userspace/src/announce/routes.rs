//! The announce table in the kernel: one blackhole route per announced VIP
//! address (/32 or /128), tagged with [`PROTOCOL`] so the agent finds
//! exactly its own routes again after a crash, and nothing else's.
//!
//! A blackhole in a table no `ip rule` looks up never changes forwarding on
//! the director; it needs no interface (a route via `lo` would follow
//! lo's index), and BIRD's kernel protocol (`learn`) and FRR's zebra
//! (`ip import-table`) both learn it.

use std::{collections::BTreeSet, io, net::IpAddr};

use futures::TryStreamExt as _;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{IpVersion, RouteMessageBuilder};

use crate::rtnl::{self, Rtnl};

/// `proto 250` in `ip route`: a number no routing daemon uses (BIRD is 12,
/// zebra 11, FRR's daemons 186..=198, keepalived 18), so BIRD takes the
/// routes for another program's ("alien") and FRR's zebra for kernel routes,
/// and the agent removes none of theirs.
pub const PROTOCOL: u8 = 250;

/// One route the agent owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub address: IpAddr,
    pub table: u32,
    pub metric: u32,
}

impl Route {
    /// The `RTM_NEWROUTE` / `RTM_DELROUTE` body.
    pub fn message(&self) -> RouteMessage {
        let prefix = if self.address.is_ipv4() { 32 } else { 128 };
        let mut msg = RouteMessageBuilder::<IpAddr>::new()
            .table_id(self.table)
            .destination_prefix(self.address, prefix)
            .expect("an address with its own family's full length")
            .priority(self.metric)
            .protocol(RouteProtocol::Other(PROTOCOL))
            .scope(RouteScope::Universe)
            .kind(RouteType::BlackHole)
            .build();
        if self.table > u32::from(u8::MAX) {
            // rtm_table is one byte: RTA_TABLE carries the id.
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
        }
        msg
    }

    /// `msg` as one of ours: a host blackhole of [`PROTOCOL`] in `table`.
    pub fn parse(msg: &RouteMessage, table: u32) -> Option<Route> {
        let h = &msg.header;
        let full = if h.address_family == netlink_packet_route::AddressFamily::Inet { 32 } else { 128 };
        if u8::from(h.protocol) != PROTOCOL || h.destination_prefix_length != full {
            return None;
        }
        let mut in_table = u32::from(h.table);
        let (mut address, mut metric) = (None, 0);
        for a in &msg.attributes {
            match a {
                RouteAttribute::Table(t) => in_table = *t,
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Destination(RouteAddress::Inet(v4)) => address = Some(IpAddr::V4(*v4)),
                RouteAttribute::Destination(RouteAddress::Inet6(v6)) => address = Some(IpAddr::V6(*v6)),
                _ => {}
            }
        }
        (in_table == table).then_some(Route { address: address?, table, metric })
    }
}

/// What to change to go from `present` to `wanted`: deletions first, so a
/// route whose metric changed is replaced, not doubled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub delete: Vec<Route>,
    pub add: Vec<Route>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.add.is_empty()
    }
}

pub fn plan(present: &BTreeSet<Route>, wanted: &BTreeSet<Route>) -> Plan {
    Plan { delete: present.difference(wanted).copied().collect(), add: wanted.difference(present).copied().collect() }
}

/// The announce table over route netlink.
#[derive(Debug, Clone)]
pub struct Table {
    rtnl: Rtnl,
}

impl Table {
    pub fn new(rtnl: Rtnl) -> Self {
        Self { rtnl }
    }

    /// The agent's routes in `table` now, both families.
    pub async fn read(&self, table: u32) -> io::Result<BTreeSet<Route>> {
        let mut found = BTreeSet::new();
        for version in [IpVersion::V4, IpVersion::V6] {
            let mut query = match version {
                IpVersion::V4 => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
                IpVersion::V6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
            };
            // A dump of every table: the kernel filters by table only
            // under strict checking, so the filter is `Route::parse`'s.
            query.header.table = RouteHeader::RT_TABLE_UNSPEC;
            let dump = self.rtnl.handle().route().get(query).execute();
            let routes: Vec<RouteMessage> = rtnl::within(dump.try_collect()).await?;
            found.extend(routes.iter().filter_map(|m| Route::parse(m, table)));
        }
        Ok(found)
    }

    /// Makes `table` hold exactly `wanted` of the agent's routes. `known`:
    /// what the table held after the last sync that succeeded; without it
    /// the table is read first. A read dumps every table of the namespace
    /// (the kernel filters dumps only under strict checking), which costs on
    /// a director that also carries a full routing table: hence `known`.
    /// Every change is tried; the first failure is returned.
    pub async fn sync(
        &self,
        table: u32,
        known: Option<&BTreeSet<Route>>,
        wanted: &BTreeSet<Route>,
    ) -> io::Result<Plan> {
        let read;
        let present = match known {
            Some(known) => known,
            None => {
                read = self.read(table).await?;
                &read
            }
        };
        let plan = plan(present, wanted);
        let mut first_error = None;
        for r in &plan.delete {
            let request = self.rtnl.handle().route().del(r.message());
            match rtnl::within(request.execute()).await {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    first_error.get_or_insert(io::Error::new(e.kind(), format!("removing {}: {e}", r.address)));
                }
            }
        }
        for r in &plan.add {
            let request = self.rtnl.handle().route().add(r.message()).replace();
            if let Err(e) = rtnl::within(request.execute()).await {
                first_error.get_or_insert(io::Error::new(e.kind(), format!("adding {}: {e}", r.address)));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(plan),
        }
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable as _, Parseable as _};

    use super::*;

    fn route(address: &str, metric: u32) -> Route {
        Route { address: address.parse().unwrap(), table: 200, metric }
    }

    #[test]
    fn plan_adds_what_is_missing_and_deletes_the_rest() {
        let present: BTreeSet<Route> = [route("10.0.0.1", 0), route("10.0.0.2", 0), route("10.0.0.3", 5)].into();
        let wanted: BTreeSet<Route> = [route("10.0.0.1", 0), route("10.0.0.3", 0), route("2001:db8::1", 0)].into();
        let p = plan(&present, &wanted);
        assert_eq!(p.delete, [route("10.0.0.2", 0), route("10.0.0.3", 5)]);
        assert_eq!(p.add, [route("10.0.0.3", 0), route("2001:db8::1", 0)]);
        assert!(plan(&wanted, &wanted).is_empty(), "idempotent");
    }

    /// The message as the kernel sends it back (emitted, parsed again).
    fn round_trip(r: Route) -> RouteMessage {
        let msg = r.message();
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        RouteMessage::parse(buf.as_slice()).unwrap()
    }

    #[test]
    fn messages_parse_back_as_ours() {
        for r in [route("10.0.0.1", 0), route("2001:db8::1", 7), Route { table: 100_000, ..route("10.0.0.2", 1) }] {
            let msg = round_trip(r);
            assert_eq!(msg.header.kind, RouteType::BlackHole);
            assert_eq!(Route::parse(&msg, r.table), Some(r));
            assert_eq!(Route::parse(&msg, r.table + 1), None, "another table");
        }
    }

    #[test]
    fn others_routes_are_not_ours() {
        let mut msg = round_trip(route("10.0.0.1", 0));
        msg.header.protocol = RouteProtocol::Bird;
        assert_eq!(Route::parse(&msg, 200), None);
        let mut msg = round_trip(route("10.0.0.1", 0));
        msg.header.destination_prefix_length = 24;
        assert_eq!(Route::parse(&msg, 200), None);
    }
}
