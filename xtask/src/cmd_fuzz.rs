//! `cargo xtask fuzz`: every cargo-fuzz target under `fuzz/` for a while each,
//! starting from the seeds in `fuzz/corpus/TARGET/` and the saved crashes in
//! `fuzz/regressions/TARGET/`.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::SystemTime,
};

use anyhow::{Context as _, bail, ensure};

use crate::workspace;

/// What the stable cargo that runs xtask set for itself, which must not reach
/// the nightly cargo that cargo-fuzz drives.
const CLEARED_ENV: [&str; 9] = [
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTUP_TOOLCHAIN",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
];

/// Longest one input may run before libFuzzer calls it a hang.
const INPUT_TIMEOUT_SECS: u32 = 10;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 30)]
    time: u32,
    /// Only this target (a file name under fuzz/fuzz_targets/, without `.rs`).
    target: Option<String>,
}

pub fn main(args: &Args) -> anyhow::Result<ExitCode> {
    ensure!(args.time > 0, "--time must be at least one second");
    let fuzz = workspace::root().join("fuzz");
    let mut targets = targets(&fuzz)?;
    if let Some(only) = &args.target {
        ensure!(targets.contains(only), "no fuzz target {only}; there are: {}", targets.join(", "));
        targets.retain(|t| t == only);
    }
    let toolchain = nightly()?;
    ensure_cargo_fuzz()?;

    // The fuzz targets need none of the XDP program, and building it with the
    // fuzzing flags would only cost time: embed empty objects instead.
    let scratch = fuzz.join("target");
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let empty = scratch.join("empty.bpf.o");
    std::fs::write(&empty, []).with_context(|| format!("writing {}", empty.display()))?;
    let fuzz_cargo = |args: &[&str]| {
        let mut cmd = Command::new("rustup");
        cmd.args(["run", &toolchain, "cargo", "fuzz"]).args(args).current_dir(&fuzz);
        for var in CLEARED_ENV {
            cmd.env_remove(var);
        }
        cmd.env("LB_EBPF_OBJECT", &empty).env("LB_EBPF_BENCH_OBJECT", &empty);
        cmd
    };

    // No sanitizer: the parsers are safe Rust, so a bug shows as a panic,
    // and AddressSanitizer would slow both the build and the runs severalfold.
    workspace::run(&mut fuzz_cargo(&["build", "--sanitizer", "none"])).context("building the fuzz targets")?;

    let mut crashed = Vec::new();
    for target in &targets {
        let work = scratch.join("corpus").join(target);
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let artifacts = fuzz.join("artifacts").join(target);
        std::fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
        let started = SystemTime::now();

        // New inputs go into the first directory, a scratch one, so the seeds
        // in the repository stay as they are.
        let mut run_args = vec!["run".to_owned(), "--sanitizer".into(), "none".into(), target.clone()];
        run_args.push(work.display().to_string());
        for dir in ["corpus", "regressions"] {
            let seeds = fuzz.join(dir).join(target);
            if seeds.is_dir() {
                run_args.push(seeds.display().to_string());
            }
        }
        run_args.push("--".into());
        run_args.push(format!("-max_total_time={}", args.time));
        // An input that takes this long is a hang worth a report, not a
        // reason to wait for libFuzzer's default of twenty minutes.
        run_args.push(format!("-timeout={INPUT_TIMEOUT_SECS}"));
        run_args.push(format!("-artifact_prefix={}/", artifacts.display()));
        let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
        let status = workspace::status(&mut fuzz_cargo(&run_args))?;
        if !status.success() {
            let inputs = written_since(&artifacts, started)?;
            crashed.push((target.clone(), inputs));
        }
    }

    if crashed.is_empty() {
        println!("xtask: {} fuzz target(s) ran {} s each without a crash", targets.len(), args.time);
        return Ok(ExitCode::SUCCESS);
    }
    for (target, inputs) in &crashed {
        if inputs.is_empty() {
            eprintln!("xtask: fuzz target {target} failed without writing an input; see its output above");
            continue;
        }
        eprintln!("xtask: fuzz target {target} crashed");
        for input in inputs {
            eprintln!("xtask:   crashing input: {}", input.display());
        }
        eprintln!(
            "xtask:   keep it as a regression: cp INPUT fuzz/regressions/{target}/ (then `cargo test -p lb-userspace \
             --lib fuzzing` replays it)"
        );
    }
    bail!("{} of {} fuzz target(s) failed", crashed.len(), targets.len())
}

/// The targets: the files in `fuzz/fuzz_targets/`, sorted.
fn targets(fuzz: &Path) -> anyhow::Result<Vec<String>> {
    let dir = fuzz.join("fuzz_targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem()
        {
            names.push(stem.to_string_lossy().into_owned());
        }
    }
    names.sort();
    ensure!(!names.is_empty(), "no fuzz targets in {}", dir.display());
    Ok(names)
}

/// The installed nightly toolchain (cargo-fuzz needs nightly's `-Z` flags).
fn nightly() -> anyhow::Result<String> {
    let out = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("running rustup (cargo fuzz needs a nightly toolchain managed by rustup)")?;
    ensure!(out.status.success(), "rustup toolchain list failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    let list = String::from_utf8_lossy(&out.stdout);
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|name| name.starts_with("nightly"))
        .map(str::to_owned)
        .context(
            "no nightly toolchain installed; `cargo xtask build` installs one, or `rustup toolchain install nightly`",
        )
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let works = Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if works {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz (runs the libFuzzer targets under fuzz/)");
    workspace::run(&mut workspace::cargo(["install", "cargo-fuzz", "--locked"])).context("cargo install cargo-fuzz")
}

/// Files in `dir` modified at or after `since`: what libFuzzer wrote there.
fn written_since(dir: &Path, since: SystemTime) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let modified = entry.metadata()?.modified()?;
        if modified >= since {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}
