//! `cargo xtask lint`: rustfmt and clippy over every crate, lb-ebpf included on its BPF
//! target. Any warning fails it.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context as _;
use serde_json::Value;

use crate::{setup, workspace};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: &Args) -> anyhow::Result<ExitCode> {
    setup::ensure_component(None, "rustfmt", "cargo xtask lint checks the formatting")?;
    setup::ensure_component(None, "clippy", "cargo xtask lint runs clippy")?;
    setup::ensure_toolchain()?;
    setup::ensure_component(Some("nightly"), "clippy", "cargo xtask lint runs clippy on lb-ebpf")?;

    // Every step runs, so that one run shows everything there is to fix.
    let mut failed = Vec::new();

    let fmt = workspace::status(&mut workspace::cargo(["fmt", "--all", "--check"]))?;
    if !fmt.success() {
        failed.push("rustfmt: files not formatted (`cargo fmt --all` formats them)".to_owned());
    }

    // Lints are capped at warnings and counted, rather than denied with `-D warnings`:
    // a crate that fails stops cargo from checking the crates that depend on it, and one
    // run should show every crate's warnings, not the first crate's.
    let default_members = workspace::cargo(["clippy", "--release", "--all-targets", "--message-format=json"]);
    failed.extend(clippy("clippy", default_members)?);

    // lb-ebpf only builds for BPF with nightly (see lb-userspace/build.rs), in a target
    // directory of its own so that clippy's results do not replace the build's.
    let target_dir = workspace::target_dir().join("ebpf-clippy");
    // Twice: the agent's object, and the bench object whose programs only exist with
    // the `bench` feature.
    for (features, what) in
        [(None, "clippy (lb-ebpf for bpfel-unknown-none)"), (Some("bench"), "clippy (lb-ebpf, bench object)")]
    {
        let mut ebpf = workspace::ebpf_cargo(["clippy", "--package", "lb-ebpf", "--release", "-Z", "build-std=core"])?;
        ebpf.args(["--target", "bpfel-unknown-none", "--message-format=json", "--target-dir"]).arg(&target_dir);
        if let Some(f) = features {
            ebpf.args(["--features", f]);
        }
        failed.extend(clippy(what, ebpf)?);
    }

    if failed.is_empty() {
        println!("xtask: lint: clean");
        return Ok(ExitCode::SUCCESS);
    }
    for line in &failed {
        println!("xtask: lint: {line}");
    }
    Ok(ExitCode::FAILURE)
}

/// Runs `cmd` (`cargo clippy --message-format=json`), printing each diagnostic as rustc
/// renders it; a line per package with warnings or errors, if any.
fn clippy(what: &str, mut cmd: Command) -> anyhow::Result<Vec<String>> {
    cmd.args(["--", "--cap-lints", "warn"]).stdout(Stdio::piped());
    workspace::announce(&cmd);
    let mut child = cmd.spawn().with_context(|| format!("failed to start {what}"))?;
    let stdout = child.stdout.take().context("clippy's stdout")?;
    let mut counts = Counts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading clippy's output")?;
        if let Some(rendered) = counts.add(&line) {
            print!("{rendered}");
        }
    }
    let status = child.wait().with_context(|| format!("waiting for {what}"))?;
    let mut failed: Vec<String> = counts
        .per_package
        .iter()
        .map(|(package, &(warnings, errors))| {
            format!("{what}: {package}: {}, {}", plural(warnings, "warning"), plural(errors, "error"))
        })
        .collect();
    if failed.is_empty() && !status.success() {
        failed.push(format!("{what} failed ({status}) without a diagnostic; see its output above"));
    }
    Ok(failed)
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// Warnings and errors per package in cargo's JSON messages.
#[derive(Debug, Default)]
struct Counts {
    per_package: BTreeMap<String, (u64, u64)>,
    /// A crate's library is checked twice with `--all-targets` (as itself and as its unit
    /// tests) and says the same things both times; cargo shows them once, and so do we.
    seen: HashSet<(String, String)>,
}

impl Counts {
    /// Counts one line of cargo's output; returns the diagnostic to show, if it is new.
    fn add(&mut self, line: &str) -> Option<String> {
        let msg: Value = serde_json::from_str(line).ok()?;
        if msg["reason"] != "compiler-message" {
            return None;
        }
        let diagnostic = &msg["message"];
        let rendered = diagnostic["rendered"].as_str()?.to_owned();
        let level = diagnostic["level"].as_str()?;
        let is_summary = diagnostic["spans"].as_array().is_some_and(Vec::is_empty)
            && diagnostic["code"].is_null()
            && diagnostic["message"]
                .as_str()
                .is_some_and(|m| m.ends_with(" emitted") || m.starts_with("aborting due to"));
        // Not a lint: rustc says this of every crate built with the BPF target's
        // `+allows-misaligned-mem-access` (see lb-userspace/build.rs), and no attribute
        // can silence it.
        let is_target_feature_note = diagnostic["code"].is_null()
            && diagnostic["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("unstable feature specified for `-Ctarget-feature`"));
        let package = package_name(msg["package_id"].as_str()?).to_owned();
        if is_summary || is_target_feature_note || !self.seen.insert((package.clone(), rendered.clone())) {
            return None;
        }
        let (warnings, errors) = self.per_package.entry(package).or_default();
        match level {
            "warning" => *warnings += 1,
            "error" => *errors += 1,
            _ => {}
        }
        Some(rendered)
    }
}

/// The package's name in a cargo package id: `path+file:///src/lb-tests#0.1.0`, or
/// `path+file:///src/tests#lb-tests@0.1.0` where the directory has another name.
fn package_name(id: &str) -> &str {
    let (url, fragment) = id.rsplit_once('#').unwrap_or(("", id));
    match fragment.split_once('@') {
        Some((name, _)) => name,
        None => url.rsplit('/').next().unwrap_or(url),
    }
}

#[cfg(test)]
mod tests {
    use super::{Counts, package_name};

    #[test]
    fn names_packages_in_both_id_forms() {
        assert_eq!(package_name("path+file:///w/tests#lb-tests@0.1.0"), "lb-tests");
        assert_eq!(package_name("path+file:///w/xtask#0.1.0"), "xtask");
    }

    #[test]
    fn counts_each_diagnostic_once_and_skips_summaries() {
        let message = |level: &str, text: &str, spans: &str| {
            format!(
                r#"{{"reason":"compiler-message","package_id":"path+file:///w/lb-common#0.1.0","message":{{"level":"{level}","message":"{text}","code":null,"spans":{spans},"rendered":"{level}: {text}\n"}}}}"#
            )
        };
        let span = r#"[{"file_name":"src/lib.rs"}]"#;
        let mut counts = Counts::default();
        assert_eq!(counts.add(&message("warning", "unused", span)).as_deref(), Some("warning: unused\n"));
        assert_eq!(counts.add(&message("warning", "unused", span)), None);
        assert!(counts.add(&message("error", "mismatched types", span)).is_some());
        assert_eq!(counts.add(&message("warning", "1 warning emitted", "[]")), None);
        assert_eq!(counts.add(r#"{"reason":"compiler-artifact"}"#), None);
        assert_eq!(counts.add("not json"), None);
        assert_eq!(counts.per_package.get("lb-common"), Some(&(1, 1)));
    }
}
