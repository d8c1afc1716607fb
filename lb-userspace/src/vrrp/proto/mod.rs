//! The protocol: VRRP's decisions as plain types and functions that touch
//! no socket, clock, task or netlink, driven by events and inputs and
//! tested under a virtual clock.

pub mod fsm;
pub mod packet;
pub mod receive;
pub mod reload;
pub mod sync;
pub mod tracking;
