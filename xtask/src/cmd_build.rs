//! `cargo xtask build`: the agent with its embedded XDP program.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::{setup, workspace};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build the debug profile instead of release.
    #[arg(long)]
    debug: bool,
}

pub fn main(args: &Args) -> anyhow::Result<ExitCode> {
    setup::ensure_toolchain()?;
    let lb = build(!args.debug)?;
    println!("xtask: built {}", lb.display());
    Ok(ExitCode::SUCCESS)
}

/// Builds every binary of the default members and returns the path of `lb`.
pub fn build(release: bool) -> anyhow::Result<PathBuf> {
    // No `--workspace`: that would add lb-ebpf, which only builds for bpfel-unknown-none;
    // lb-userspace's build script builds it from the default members.
    let mut cmd = workspace::cargo(["build", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    workspace::run(&mut cmd).context("building the workspace")?;

    let profile = if release { "release" } else { "debug" };
    let lb = workspace::target_dir().join(profile).join("lb");
    anyhow::ensure!(lb.is_file(), "the build succeeded but {} does not exist", lb.display());
    Ok(lb)
}
