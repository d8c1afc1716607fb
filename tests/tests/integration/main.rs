//! The integration tests, one binary: the agent and the fast path in network
//! namespaces, VRRP against itself, keepalived and Wireshark, and `lb check`.
//! Tests that need privileges skip without them under a plain `cargo test`
//! and fail without them under `cargo xtask test` (see
//! `lb_tests::privileges`); each module's tests run beside each other but
//! not beside another module's (see [`support::start`]).

mod agent;
mod announce;
mod chaos;
mod cli_check;
mod director;
mod e2e_dr;
mod ecmp;
mod failover;
mod golden;
mod import;
mod import_corpus;
mod import_pair;
mod keepalived;
mod lab;
mod metrics;
mod neigh;
mod ops;
mod restart;
mod restart_vrrp;
mod status_page;
mod support;
mod vrrp;
mod vrrp_tshark;
mod xdp_fuzz;
