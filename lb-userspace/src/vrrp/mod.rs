//! VRRP, interoperable with keepalived 2.2.7: version 2 (RFC 3768) and
//! version 3 (RFC 5798), as pure code.
//!
//! - [`packet`]: advertisements to and from bytes, with the checksum rules
//!   keepalived actually follows (v3 over IPv4 with a pseudo-header).
//! - [`fsm`]: the state machine of one virtual router. Events in, actions
//!   out; timers are requested as durations and fed back as events.
//!
//! Nothing here touches a socket, a clock or netlink, so every behaviour is
//! tested deterministically under a virtual clock. The runtime that binds
//! this to raw sockets (IP protocol 112, TTL 255), timers and address
//! management is a separate layer: it decodes a packet, runs the
//! per-instance checks ([`Advertisement::check_auth`],
//! [`Advertisement::check_addresses`]), turns it into [`Event::advert`], and
//! performs the returned [`Action`]s in order.

pub mod fsm;
pub mod packet;

pub use fsm::{Action, Config, ConfigError, Counters, DiscardReason, Event, Instance, State};
pub use packet::{
    Addresses, Advertisement, Auth, Centiseconds, ChecksumKind, DecodeError, EncodeError, PseudoHeader, Version,
};
