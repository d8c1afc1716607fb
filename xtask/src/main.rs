//! Developer tasks: `cargo xtask build | lint | test | fuzz | run | bench | install | uninstall`.
//!
//! Every subcommand bootstraps what it needs (nightly + rust-src, bpf-linker, Debian
//! packages) so the README's first commands work on a fresh machine.

mod cmd_bench;
mod cmd_build;
mod cmd_fuzz;
mod cmd_install;
mod cmd_lint;
mod cmd_run;
mod cmd_test;
mod setup;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Build, test, run and benchmark the load balancer")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the agent (`lb`) with the embedded XDP program.
    Build(cmd_build::Args),
    /// Check formatting and run clippy on every crate, lb-ebpf included; fails on any warning.
    Lint(cmd_lint::Args),
    /// Run the whole test suite, including the network-namespace tests (needs root).
    Test(cmd_test::Args),
    /// Run every fuzz target (fuzz/fuzz_targets/) for a while; fails on a crash and names the input.
    Fuzz(cmd_fuzz::Args),
    /// Build and start the agent: `lb lab` without arguments, else `lb run ARGS` (needs root).
    Run(cmd_run::Args),
    /// Run the benchmark harness `lb-bench` (needs root).
    Bench(cmd_bench::Args),
    /// Install lb, its systemd unit, man pages, completions and (if none exists) /etc/lb/lb.toml.
    Install(cmd_install::Args),
    /// Remove what `install` put in place; /etc/lb/lb.toml stays.
    Uninstall(cmd_install::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Build(args) => cmd_build::main(&args),
        Cmd::Lint(args) => cmd_lint::main(&args),
        Cmd::Test(args) => cmd_test::main(&args),
        Cmd::Fuzz(args) => cmd_fuzz::main(&args),
        Cmd::Run(args) => cmd_run::main(&args),
        Cmd::Bench(args) => cmd_bench::main(&args),
        Cmd::Install(args) => cmd_install::install(&args),
        Cmd::Uninstall(args) => cmd_install::uninstall(&args),
    };
    // Printed by hand: anyhow's Debug output would add a backtrace whenever RUST_BACKTRACE
    // is set, burying the one line that says what to fix.
    result.unwrap_or_else(|err| {
        eprintln!("xtask: error: {err:#}");
        ExitCode::FAILURE
    })
}
