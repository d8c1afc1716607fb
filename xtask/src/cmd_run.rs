//! `cargo xtask run`: build the agent and start it.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::Context;

use crate::{cmd_build, setup, workspace};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Arguments for `lb run` (e.g. `--config FILE --iface IF`); without any, starts
    /// `lb lab`, a self-contained demo in network namespaces; `--ecmp` (and any `lb lab`
    /// options after it) starts its scale-out form, `lb lab --ecmp`.
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn main(args: &Args) -> anyhow::Result<ExitCode> {
    setup::require_root("run")?;
    setup::ensure_toolchain()?;
    setup::ensure_packages(setup::TEST_PACKAGES)?;
    let lb = cmd_build::build(true)?;

    let mut cmd = Command::new(&lb);
    if args.args.is_empty() {
        cmd.arg("lab");
    } else if args.args[0] == "--ecmp" {
        // bird2 (BIRD 2, one per director and the router) is among TEST_PACKAGES.
        cmd.arg("lab").args(&args.args);
    } else {
        cmd.arg("run").args(&args.args);
    }
    workspace::announce(&cmd);
    // Replacing xtask with lb makes Ctrl-C reach lb directly, so it can detach its XDP
    // program and tear down its namespaces itself; exec only returns on failure.
    let err = cmd.exec();
    Err(err).with_context(|| format!("executing {}", lb.display()))
}
