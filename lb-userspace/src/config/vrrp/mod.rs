//! The `[[vrrp]]` tables: one VRRP instance each, keepalived's
//! `vrrp_instance` with its `vrrp_script`s inlined.
//!
//! ```toml
//! [[vrrp]]
//! name = "VI_1"
//! interface = "eth0"               # where adverts go; VIPs too unless they name a `dev`
//! version = 3                      # 2 or 3
//! virtual_router_id = 51           # 1..=255
//! priority = 150                   # 1..=255; 255 = address owner
//! # peer_priority = 100            # the peer's priority: `lb check` warns about weights that cannot fail over
//! advert_int = "1s"                # v2: whole seconds; v3: 10ms steps up to 40.95s
//! preempt = true                   # or nopreempt = true
//! preempt_delay = "0s"
//! # auth_pass = "secret"           # v2 only: keepalived's auth_type PASS
//! virtual_ipaddress = ["10.0.0.100/24", { address = "10.0.1.100/24", dev = "eth1", label = "eth1:vip" }]
//! # unicast_src = "10.0.0.2"       # with unicast_peers: no multicast at all
//! # unicast_peers = ["10.0.0.3"]
//! # mcast_group = "224.0.0.18"
//! garp_master_delay = "5s"         # second burst of gratuitous ARPs; "0s" = none
//! garp_master_repeat = 5           # ARPs per VIP in each burst
//! garp_master_refresh = "0s"       # periodic re-announcement while master; "0s" = off
//! # notify_master = "/etc/lb/notify.sh master"      # split on spaces, no shell; or an argv list
//! # notify = ["/etc/lb/notify.sh"]                  # + INSTANCE name STATE priority
//! # notify_user = "nobody"         # default: global.script_user
//! track_interface = ["eth1"]
//! # keepalived's virtual_routes: added after the VIPs on becoming master, removed when leaving it
//! virtual_routes = ["src 10.0.0.100 192.0.2.0/24 via 10.0.0.1 dev eth1 metric 10", "blackhole 203.0.113.0/24",
//!                   { to = "198.51.100.0/24", via = "10.0.0.1", table = 100 }]
//! checksum = "keepalived"          # v3 over IPv4: "keepalived" (pseudo-header) or "rfc9568"
//!
//! [[vrrp.track_script]]
//! name = "chk_nginx"
//! command = ["/usr/local/bin/chk_nginx"]
//! interval = "1s"
//! weight = -60                     # 0 = FAULT after `fall` failures
//!
//! [vrrp.track_fast_path]           # this director's XDP fast path
//! weight = 0                       # 0 = FAULT while unhealthy; < 0 = added while unhealthy
//! no_live_backend = false          # true: a VIP of the instance without a live backend is unhealthy too
//!
//! [[vrrp_sync_group]]              # keepalived's vrrp_sync_group
//! name = "G1"
//! group = ["VI_1", "VI_2"]         # change state together
//! # notify = ["/etc/lb/notify.sh"] # + GROUP name STATE 0; also notify_master and so on
//! ```

mod command;
mod instance;
mod route;
mod sync_group;
#[cfg(test)]
mod tests;
mod types;
mod virtual_ipaddress;
mod virtual_routes;
mod warnings;

pub(crate) use instance::validate;
pub use route::{RouteKind, Scope, TABLE_MAIN, VirtualRoute};
pub(crate) use sync_group::validate_sync_groups;
pub use types::{Garp, Notify, TrackFastPath, TrackScript, VirtualAddress, VrrpInstance, VrrpSyncGroup};
