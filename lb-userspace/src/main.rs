//! `lb`: the load balancer's agent.

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lb_userspace::lab;

#[derive(Debug, Parser)]
#[command(name = "lb", version, about = "XDP layer-4 load balancer (DR mode) and its agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a self-contained lab in network namespaces: a client, a director
    /// running the fast path, and three HTTP backends.
    Lab {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Seconds between status tables.
        #[arg(long, default_value_t = 2)]
        interval: u64,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Lab { duration, interval } => lab::run(lab::LabOptions {
            duration: duration.map(Duration::from_secs),
            interval: Duration::from_secs(interval.max(1)),
            ..lab::LabOptions::default()
        })
        .map(drop)
        .context("lab"),
    }
}
