//! The file as serde reads it. Values that are checked after reading keep
//! their [`Spanned`] position so that a problem found later still points at
//! the right line and column. Integers are read as `i64` so that "70000" and
//! "-1" get our range message, not serde's "expected u16".

mod check;
mod value;
mod vrrp;

use serde::Deserialize;
use toml::Spanned;

pub(crate) use check::{CheckType, RawCheck, RawStatus, StatusItem};
pub(crate) use value::{RawCommand, RawDuration};
pub(crate) use vrrp::{RawChecksum, RawRoute, RawRouteTable, RawSyncGroup, RawVipAddr, RawVrrp};

use super::types::{HashMode, Protocol};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub global: RawGlobal,
    #[serde(default, rename = "vip")]
    pub vips: Vec<Spanned<RawVip>>,
    #[serde(default)]
    pub vrrp: Vec<Spanned<RawVrrp>>,
    #[serde(default)]
    pub vrrp_sync_group: Vec<Spanned<RawSyncGroup>>,
    pub announce: Option<Spanned<RawAnnounce>>,
}

/// `[announce]`: the kernel routing table a BGP daemon exports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnnounce {
    pub table: Spanned<i64>,
    pub metric: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    pub flows_per_cpu: Option<Spanned<i64>>,
    pub max_new_flows_per_sec: Option<Spanned<i64>>,
    pub script_user: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub max_vips: Option<Spanned<i64>>,
    pub pin_dir: Option<Spanned<String>>,
    pub metrics: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVip {
    pub address: Spanned<String>,
    /// Required: "every port" should be written down, not fallen into.
    pub port: Spanned<i64>,
    pub protocol: Option<Protocol>,
    pub interface: Spanned<String>,
    pub ring_size: Option<Spanned<i64>>,
    pub hash: Option<HashMode>,
    pub fragments: Option<Spanned<bool>>,
    pub quorum: Option<Spanned<i64>>,
    pub hysteresis: Option<Spanned<i64>>,
    pub sorry_server: Option<Spanned<String>>,
    pub check: Option<Spanned<RawCheck>>,
    pub announce: Option<Spanned<bool>>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<Spanned<RawBackend>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub inhibit_on_failure: Option<bool>,
    pub check: Option<Spanned<RawCheck>>,
}
