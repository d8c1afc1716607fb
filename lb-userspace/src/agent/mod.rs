//! The agent: configuration, health, neighbours and the operator in; the
//! fast path's maps out.

pub mod service;
pub mod install;
pub mod control;
pub mod status;
pub mod director;
pub mod ids;
pub mod run;
