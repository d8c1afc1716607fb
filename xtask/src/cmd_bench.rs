//! `cargo xtask bench`: the `lb-bench` harness from the lb-tests package.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::{setup, workspace};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Write each scaling curve as an SVG chart into DIR (docs/bench for the
    /// benchmarks document).
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Chart the results saved in FILE (lb-bench's output or its JSON line)
    /// instead of measuring; needs --plot.
    #[arg(long, value_name = "FILE", requires = "plot")]
    plot_from: Option<PathBuf>,
    /// Passed on to `lb-bench`.
    #[arg(last = true)]
    extra: Vec<String>,
}

pub fn main(args: &Args) -> anyhow::Result<ExitCode> {
    // Charting saved results measures nothing: no root, no bench tools.
    let measuring = args.plot_from.is_none();
    if measuring {
        setup::require_root("bench")?;
    }
    setup::ensure_toolchain()?;
    if measuring {
        let packages: Vec<&str> = setup::TEST_PACKAGES.iter().chain(setup::BENCH_PACKAGES).copied().collect();
        setup::ensure_packages(&packages)?;
    }

    let mut cmd = workspace::cargo(["run", "--release", "-p", "lb-tests", "--bin", "lb-bench", "--"]);
    if args.json {
        cmd.arg("--json");
    }
    // cargo runs from the workspace root: paths relative to where xtask was
    // started would land elsewhere.
    if let Some(dir) = &args.plot {
        cmd.arg("--plot").arg(std::path::absolute(dir).with_context(|| format!("--plot {}", dir.display()))?);
    }
    if let Some(file) = &args.plot_from {
        cmd.arg("--plot-from")
            .arg(std::path::absolute(file).with_context(|| format!("--plot-from {}", file.display()))?);
    }
    cmd.args(&args.extra);
    let status = workspace::status(&mut cmd)?;
    Ok(workspace::exit_code(status))
}
