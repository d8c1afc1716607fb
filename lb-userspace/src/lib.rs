//! The agent: loads the XDP program and keeps its maps current.

pub mod agent;
pub mod announce;
pub mod cli;
pub mod config;
pub mod fast_path;
pub mod fuzzing;
pub mod health;
pub mod import;
pub mod lab;
pub mod logging;
pub mod maglev;
pub mod neigh;
pub mod netdev;
pub mod netns;
pub mod rtnl;
pub mod script;
mod sock;
pub mod systemd;
pub mod task;
pub mod testing;
pub mod trace;
pub mod vrrp;
pub mod web;
