//! VRRP, interoperable with keepalived 2.2.7: version 2 (RFC 3768) and
//! version 3 (RFC 5798), as pure code.
//!
//! - [`packet`]: advertisements to and from bytes, with the checksum rules
//!   keepalived actually follows (v3 over IPv4 with a pseudo-header).
//! - [`fsm`]: the state machine of one virtual router. Events in, actions
//!   out; timers are requested as durations and fed back as events.
//!
//! Those two touch no socket, clock or netlink, so every behaviour is
//! tested deterministically under a virtual clock. The runtime binds them
//! to the machine:
//!
//! - [`runtime`]: [`runtime::spawn`] starts one task per configured
//!   instance and returns a [`runtime::VrrpHandle`] (status, state-change
//!   events, shutdown). Each task decodes packets, runs the per-instance
//!   checks ([`Advertisement::check_auth`],
//!   [`Advertisement::check_addresses`]), turns them into [`Event::advert`],
//!   and performs the returned [`Action`]s in order.
//! - [`socket`]: raw IP protocol 112 sockets (TTL 255, multicast or unicast).
//! - [`addresses`]: VIPs on and off interfaces over rtnetlink; interface queries.
//! - [`routes`]: keepalived's `virtual_routes`, added and removed with the VIPs.
//! - [`announce`]: gratuitous ARP and unsolicited neighbour advertisements.
//! - [`notify`]: keepalived's notify scripts; [`track`]: tracked interfaces and scripts.
//! - [`sync`]: keepalived's `vrrp_sync_group`, as pure code like [`fsm`].
//! - [`reload`]: which instances a configuration reload restarts (only what changed).

pub mod addresses;
pub mod announce;
pub mod notify;
pub mod proto;
pub mod routes;
pub mod runtime;
pub mod socket;
pub mod track;

pub use proto::{fsm, packet, receive, reload, sync, tracking};

pub use fsm::{Action, Counters, DiscardReason, Event, Instance, ParamsError, RouterParams, State};
pub use packet::{
    Addresses, Advertisement, Auth, Centiseconds, ChecksumKind, DecodeError, EncodeError, PseudoHeader, Version,
};
