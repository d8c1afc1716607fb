//! `cargo xtask test`: unit, golden-packet and network-namespace tests.

use std::io::{BufRead as _, BufReader};
use std::process::{ExitCode, Stdio};

use anyhow::Context as _;

use crate::{setup, workspace};

/// Read by `lb_userspace::testing`, which xtask does not depend on.
const REQUIRE_PRIVILEGES_ENV: &str = "LB_TEST_REQUIRE_PRIVILEGES";

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
    // `--no-fail-fast`: one failing test binary must not hide how the others fare.
    let mut cmd = workspace::cargo(["test", "--release", "--no-fail-fast", "--"]);
    cmd.args(&args.extra).env("RUST_BACKTRACE", "1").stdout(Stdio::piped());
    // Here a test that lacks a capability fails: a plain `cargo test` skips it, and a
    // suite that skips would pass without testing anything.
    cmd.env(REQUIRE_PRIVILEGES_ENV, "1");
    workspace::announce(&cmd);
    let mut child = cmd.spawn().context("failed to start cargo test")?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    // Pass every line through and add up the per-binary summaries, so the run
    // ends with one line for the whole workspace: cargo's last line is the
    // summary of whichever binary ran last (often an empty doc-test run).
    let mut totals = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!("xtask: {} passed, {} failed, {} ignored", totals.passed, totals.failed, totals.ignored);
    Ok(workspace::exit_code(status))
}

#[derive(Debug, Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Reads libtest's `test result: ok. 3 passed; 0 failed; 1 ignored; ...`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else { return };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn adds_up_libtest_summaries() {
        let mut t = Totals::default();
        t.add("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.02s");
        t.add("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s");
        t.add("running 3 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (15, 2, 1));
    }
}
