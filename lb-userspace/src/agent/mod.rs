//! The agent: configuration, health, neighbours and the operator in; the
//! fast path's maps out.

pub mod announcing;
pub mod control;
pub mod director;
pub mod events;
pub mod ids;
pub mod install;
pub mod maps;
#[cfg(test)]
pub mod memory_maps;
mod reload;
pub mod run;
pub mod service;
pub mod status;
pub mod targets;
