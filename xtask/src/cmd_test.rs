//! `cargo xtask test`: unit, golden-packet and network-namespace tests.

use std::process::ExitCode;

use crate::{setup, workspace};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Passed to the test binaries (after `--`), e.g. a test-name filter or `--nocapture`.
    #[arg(last = true)]
    extra: Vec<String>,
}

pub fn main(args: &Args) -> anyhow::Result<ExitCode> {
    setup::require_root("test")?;
    setup::ensure_toolchain()?;
    setup::ensure_packages(setup::TEST_PACKAGES)?;

    println!(
        "xtask: testing the workspace in release mode (the network-namespace tests push real \
         packets through XDP)"
    );
    // No `--workspace`: lb-ebpf is not a default member and only builds for BPF.
    let mut cmd = workspace::cargo(["test", "--release", "--"]);
    cmd.args(&args.extra).env("RUST_BACKTRACE", "1");
    let status = workspace::status(&mut cmd)?;
    Ok(workspace::exit_code(status))
}
