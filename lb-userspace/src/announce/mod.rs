//! Scale-out behind ECMP: the agent offers each VIP it can serve to a BGP
//! daemon by keeping a route to it in a kernel table of its own, which the
//! daemon (BIRD, FRR) exports. `lb` speaks no BGP.
//!
//! Layers, bottom-up: [`decide`] (which addresses, a pure function of the
//! agent's state), [`routes`] (the table: the pure difference and the route
//! netlink edge that applies it), [`drain`] (when the flows have moved away
//! after `lb drain-director`).

pub mod decide;
pub mod drain;
pub mod routes;

pub use decide::{Decision, Mode, Service, Vrrp, Withdrawn, decide, wanted};
pub use routes::{PROTOCOL, Plan, Route, Table};
