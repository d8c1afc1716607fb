//! `cargo xtask bench`: the `lb-bench` harness from the lb-tests package.

use std::process::ExitCode;

use crate::{setup, workspace};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Passed on to `lb-bench`.
    #[arg(last = true)]
    extra: Vec<String>,
}

pub fn main(args: &Args) -> anyhow::Result<ExitCode> {
    setup::require_root("bench")?;
    setup::ensure_toolchain()?;
    let packages: Vec<&str> = setup::TEST_PACKAGES.iter().chain(setup::BENCH_PACKAGES).copied().collect();
    setup::ensure_packages(&packages)?;

    let mut cmd = workspace::cargo(["run", "--release", "-p", "lb-tests", "--bin", "lb-bench", "--"]);
    if args.json {
        cmd.arg("--json");
    }
    cmd.args(&args.extra);
    let status = workspace::status(&mut cmd)?;
    Ok(workspace::exit_code(status))
}
