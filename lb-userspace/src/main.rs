//! `lb`: the load balancer's agent.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lb_userspace::{config::Config, dataplane, lab};

#[derive(Debug, Parser)]
#[command(name = "lb", version, about = "XDP layer-4 load balancer (DR mode) and its agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration file and exit: every problem is reported as
    /// file:line:column; the exit status is non-zero if there is any.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Skip checking that the VIPs' interfaces exist on this machine
        /// (for checking a director's file elsewhere).
        #[arg(long)]
        no_interfaces: bool,
    },
    /// Print a commented example configuration.
    ExampleConfig,
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
        Command::Check { config, no_interfaces } => check(&config, !no_interfaces),
        Command::ExampleConfig => {
            print!("{}", lb_userspace::config::EXAMPLE);
            Ok(())
        }
        Command::Lab { duration, interval } => lab::run(lab::LabOptions {
            duration: duration.map(Duration::from_secs),
            interval: Duration::from_secs(interval.max(1)),
            ..lab::LabOptions::default()
        })
        .map(drop)
        .context("lab"),
    }
}

fn check(path: &std::path::Path, interfaces: bool) -> anyhow::Result<()> {
    // The diagnostics are the message; anyhow's "error:" prefix would only
    // bury the file:line:column an editor jumps to.
    let config = match Config::from_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            anyhow::bail!("{} is not valid", path.display());
        }
    };
    if interfaces && let Err(e) = config.check_interfaces(|name| dataplane::ifindex(name).is_ok()) {
        eprintln!("{e}");
        anyhow::bail!("{} names interfaces this machine does not have", path.display());
    }
    let backends: usize = config.vips.iter().map(|v| v.backends.len()).sum();
    println!("{}: OK ({} VIPs, {backends} backends)", path.display(), config.vips.len());
    Ok(())
}
