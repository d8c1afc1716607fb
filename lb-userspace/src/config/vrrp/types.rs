//! The VRRP sections as validated: plain typed data, every default applied.

use std::{fmt, net::IpAddr, time::Duration};

use super::route::VirtualRoute;
use crate::config::types::Position;
use crate::vrrp::packet::{Auth, Centiseconds, ChecksumKind, Version};

/// A tracking weight moves the priority by at most this much (keepalived: -253..=253).
pub const MAX_TRACK_WEIGHT: i32 = 253;

/// keepalived's `vrrp_garp_master_delay` default.
pub const DEFAULT_GARP_MASTER_DELAY: Duration = Duration::from_secs(5);
/// keepalived's `vrrp_garp_master_repeat` default.
pub const DEFAULT_GARP_MASTER_REPEAT: u32 = 5;

/// One VRRP instance (a `[[vrrp]]` table), defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpInstance {
    /// Unique; what `notify` scripts and `lb status` call it.
    pub name: String,
    /// Adverts are sent and received here.
    pub interface: String,
    pub version: Version,
    /// 1..=255.
    pub vrid: u8,
    /// Base priority, 1..=255 (255 = address owner).
    pub priority: u8,
    /// Whole seconds for v2; 1..=4095 cs for v3.
    pub advert_interval: Centiseconds,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// v2 `PASS` authentication; always [`Auth::None`] in v3.
    pub auth: Auth,
    /// The VIPs, all of the instance's family, in advert order.
    pub virtual_addresses: Vec<VirtualAddress>,
    /// keepalived's `virtual_routes`: present while master, after the VIPs.
    /// Either family, whatever the instance's.
    pub virtual_routes: Vec<VirtualRoute>,
    /// Source of adverts; the interface's primary address (IPv4) or its
    /// link-local address (IPv6) when `None`.
    pub unicast_src: Option<IpAddr>,
    /// Non-empty: adverts go to each peer by unicast, only peers are heard,
    /// and no multicast group is joined.
    pub unicast_peers: Vec<IpAddr>,
    /// 224.0.0.18 or ff02::12 unless configured.
    pub mcast_group: IpAddr,
    pub garp: Garp,
    pub notify: Notify,
    /// Any of these down puts the instance in FAULT (the instance's own
    /// interface is always tracked, as keepalived does).
    pub track_interfaces: Vec<String>,
    pub track_scripts: Vec<TrackScript>,
    /// Track the director's own fast path (`[vrrp.track_fast_path]`).
    pub track_fast_path: Option<TrackFastPath>,
    /// How v3-over-IPv4 adverts are checksummed on send (all forms are accepted).
    pub checksum: ChecksumKind,
    /// keepalived's `lower_prio_no_advert`.
    pub lower_prio_no_advert: bool,
    /// The peer's priority, a hint for `lb check` only: the file says
    /// nothing else about the other director.
    pub peer_priority: Option<u8>,
    /// Where the table starts, for messages that come later (`lb check`'s interface checks).
    pub at: Position,
}

impl VrrpInstance {
    /// Whether this instance runs over IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.virtual_addresses.first().is_some_and(|v| v.address.is_ipv6())
    }
}

/// keepalived's `vrrp_sync_group` (a `[[vrrp_sync_group]]` table): instances
/// that change state together, see [`crate::vrrp::sync`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpSyncGroup {
    pub name: String,
    /// Names of `[[vrrp]]` instances, each in one group at most. A group of
    /// one is kept but does nothing (keepalived removes it with a warning).
    pub members: Vec<String>,
    /// Run on the group's state changes, `notify` with `GROUP name STATE 0`.
    pub notify: Notify,
    pub at: Position,
}

/// A virtual address with its prefix, as `ip addr add ADDR/PREFIX dev DEV label LABEL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The interface it goes on; the instance's when `None`.
    pub dev: Option<String>,
    /// IPv4 only; starts with the interface's name.
    pub label: Option<String>,
}

impl fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Gratuitous ARP / unsolicited NA timing (keepalived's `garp_master_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Garp {
    /// A second burst this long after becoming master; zero = none.
    pub master_delay: Duration,
    /// Announcements per VIP in each burst (at least 1).
    pub master_repeat: u32,
    /// Re-announce this often while master; zero = never.
    pub master_refresh: Duration,
}

impl Default for Garp {
    fn default() -> Self {
        Garp {
            master_delay: DEFAULT_GARP_MASTER_DELAY,
            master_repeat: DEFAULT_GARP_MASTER_REPEAT,
            master_refresh: Duration::ZERO,
        }
    }
}

/// keepalived's notify scripts; each an argv run without a shell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
    /// Run after the state's own script with `INSTANCE name STATE priority` appended.
    pub any: Option<Vec<String>>,
    /// Who they run as.
    pub user: String,
}

/// keepalived's `vrrp_script` + `track_script`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackScript {
    pub name: String,
    /// argv; `command[0]` is an absolute path.
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Successes needed to leave the failed state.
    pub rise: u32,
    /// Failures needed to enter it.
    pub fall: u32,
    /// 0: FAULT while failed. > 0: added while OK. < 0: added while failed.
    pub weight: i32,
    pub user: String,
}

/// `[vrrp.track_fast_path]`: the fast path counts as unhealthy while its XDP
/// program is not attached to an interface it was attached to, and, with
/// `no_live_backend`, while one of the instance's VIPs has no backend in its
/// ring. The weight works as a script's: 0 puts the instance in FAULT (as
/// keepalived's weight 0), W < 0 is added while unhealthy, W > 0 while healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackFastPath {
    pub weight: i32,
    pub no_live_backend: bool,
}
