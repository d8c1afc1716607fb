//! VRRP, interoperable with keepalived 2.2.7: version 2 (RFC 3768) and
//! version 3 (RFC 5798).
//!
//! The protocol, in [`proto`], decides; it touches no socket, clock, task
//! or netlink, so every behaviour is tested deterministically, under a
//! virtual clock where time matters. Its modules are also reachable here,
//! as `vrrp::packet` and so on:
//!
//! - [`packet`]: advertisements to and from bytes, with the checksum rules
//!   keepalived actually follows (v3 over IPv4 with a pseudo-header).
//! - [`receive`]: which received packets reach the state machine (TTL,
//!   peers, version, authentication, address list), and why not.
//! - [`fsm`]: the state machine of one virtual router. Events in, actions
//!   out; timers are requested as durations and fed back as events.
//! - [`tracking`]: tracked interfaces, scripts and the fast path, turned
//!   into an effective priority and FAULT.
//! - [`sync`]: keepalived's `vrrp_sync_group`, members in, events out.
//! - [`reload`]: which instances a configuration reload restarts (only what changed).
//!
//! The I/O binds them to the machine:
//!
//! - [`runtime`]: [`runtime::spawn`] starts one task per configured
//!   instance and returns a [`runtime::VrrpHandle`] (status, state-change
//!   events, shutdown). Each task owns the sockets and timers, feeds what
//!   arrives through the protocol's decisions, performs the returned
//!   [`Action`]s in order, and logs and counts.
//! - [`socket`]: raw IP protocol 112 sockets (TTL 255, multicast or unicast).
//! - [`addresses`]: VIPs on and off interfaces over rtnetlink; interface queries.
//! - [`routes`]: keepalived's `virtual_routes`, added and removed with the VIPs.
//! - [`announce`]: gratuitous ARP and unsolicited neighbour advertisements.
//! - [`notify`]: keepalived's notify scripts; [`track`]: the track scripts' runs.

pub mod addresses;
pub mod announce;
pub mod filter;
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
