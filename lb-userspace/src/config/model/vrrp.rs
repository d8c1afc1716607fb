//! The `[[vrrp]]` and `[[vrrp_sync_group]]` tables as written.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, Visitor, value::MapAccessDeserializer},
};
use toml::Spanned;

use super::value::{RawCommand, RawDuration};

/// How adverts are checksummed (v3 over IPv4 only; see
/// [`ChecksumKind`](crate::vrrp::packet::ChecksumKind)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawChecksum {
    /// With the IPv4 pseudo-header, as keepalived 2.2.7 always does.
    Keepalived,
    /// The message alone (RFC 9568; keepalived 2.2.8's `v3_checksum_as_v2`).
    Rfc9568,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVrrp {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
    pub version: Option<Spanned<i64>>,
    pub virtual_router_id: Spanned<i64>,
    pub priority: Option<Spanned<i64>>,
    pub advert_int: Option<Spanned<RawDuration>>,
    pub preempt: Option<Spanned<bool>>,
    pub nopreempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<RawDuration>>,
    pub auth_pass: Option<Spanned<String>>,
    #[serde(default)]
    pub virtual_ipaddress: Option<Spanned<Vec<Spanned<RawVipAddr>>>>,
    #[serde(default)]
    pub virtual_routes: Vec<Spanned<RawRoute>>,
    pub unicast_src: Option<Spanned<String>>,
    #[serde(default)]
    pub unicast_peers: Vec<Spanned<String>>,
    pub mcast_group: Option<Spanned<String>>,
    pub garp_master_delay: Option<Spanned<RawDuration>>,
    pub garp_master_repeat: Option<Spanned<i64>>,
    pub garp_master_refresh: Option<Spanned<RawDuration>>,
    pub notify_master: Option<Spanned<RawCommand>>,
    pub notify_backup: Option<Spanned<RawCommand>>,
    pub notify_fault: Option<Spanned<RawCommand>>,
    pub notify_stop: Option<Spanned<RawCommand>>,
    pub notify: Option<Spanned<RawCommand>>,
    pub notify_user: Option<Spanned<String>>,
    #[serde(default)]
    pub track_interface: Vec<Spanned<String>>,
    #[serde(default)]
    pub track_script: Vec<Spanned<RawTrackScript>>,
    pub checksum: Option<Spanned<RawChecksum>>,
    pub lower_prio_no_advert: Option<bool>,
    /// `track_dataplane` is its former name, still read.
    #[serde(alias = "track_dataplane")]
    pub track_fast_path: Option<Spanned<RawTrackFastPath>>,
    pub peer_priority: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrackFastPath {
    pub weight: Option<Spanned<i64>>,
    pub no_live_backend: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSyncGroup {
    pub name: Spanned<String>,
    pub group: Spanned<Vec<Spanned<String>>>,
    pub notify_master: Option<Spanned<RawCommand>>,
    pub notify_backup: Option<Spanned<RawCommand>>,
    pub notify_fault: Option<Spanned<RawCommand>>,
    pub notify_stop: Option<Spanned<RawCommand>>,
    pub notify: Option<Spanned<RawCommand>>,
    pub notify_user: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrackScript {
    pub name: Spanned<String>,
    pub command: Spanned<RawCommand>,
    pub interval: Option<Spanned<RawDuration>>,
    pub timeout: Option<Spanned<RawDuration>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
    pub user: Option<Spanned<String>>,
}

/// `"10.0.0.100/24"` or `{ address = "10.0.0.100/24", dev = "eth1", label = "eth1:vip" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawVipAddr {
    pub address: String,
    pub dev: Option<String>,
    pub label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVipTable {
    address: String,
    dev: Option<String>,
    label: Option<String>,
}

impl<'de> Deserialize<'de> for RawVipAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawVipAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "\"10.0.0.100/24\" or { address = \"10.0.0.100/24\", dev = \"eth1\", label = \"eth1:vip\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawVipAddr, E> {
                Ok(RawVipAddr { address: v.to_owned(), dev: None, label: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawVipAddr, A::Error> {
                let t = RawVipTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawVipAddr { address: t.address, dev: t.dev, label: t.label })
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A `virtual_routes` entry: keepalived's line as a string
/// (`"src 10.0.0.100 192.0.2.0/24 via 10.0.0.1 dev eth1 metric 10"`) or an
/// inline table (`{ to = "192.0.2.0/24", via = "10.0.0.1", dev = "eth1" }`).
#[derive(Debug)]
pub(crate) enum RawRoute {
    Text(String),
    Table(Box<RawRouteTable>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteTable {
    pub to: Spanned<String>,
    /// "unicast" (default), "blackhole", "unreachable", "prohibit".
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    #[serde(alias = "gw")]
    pub via: Option<Spanned<String>>,
    pub src: Option<Spanned<String>>,
    pub dev: Option<Spanned<String>>,
    pub metric: Option<Spanned<i64>>,
    pub table: Option<Spanned<i64>>,
    pub scope: Option<Spanned<String>>,
    pub onlink: Option<bool>,
}

impl<'de> Deserialize<'de> for RawRoute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRoute;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"192.0.2.0/24 via 10.0.0.1 dev eth1\" or { to = \"192.0.2.0/24\", via = \"10.0.0.1\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRoute, E> {
                Ok(RawRoute::Text(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRoute, A::Error> {
                Ok(RawRoute::Table(Box::new(RawRouteTable::deserialize(MapAccessDeserializer::new(map))?)))
            }
        }
        deserializer.deserialize_any(V)
    }
}
