//! Where the workspace lives and how to call cargo in it.

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::Context;

/// Cargo's home: where `cargo install` puts binaries.
pub fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// The workspace root: xtask sits one level below it. Taken at compile time so xtask
/// works whatever directory `cargo xtask` is started from.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask's manifest dir has a parent")
}

/// Cargo's target directory for this workspace.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        // Cargo resolves a relative CARGO_TARGET_DIR against its working directory, which
        // for the cargo we spawn is the workspace root.
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// A `cargo` command in the workspace root, using the cargo that started xtask so the
/// toolchain stays the same.
pub fn cargo<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(root());
    cmd
}

/// Prints the command line, so logs show exactly what xtask ran.
pub fn announce(cmd: &Command) {
    let args: Vec<_> = std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(OsStr::to_string_lossy).collect();
    println!("xtask: running: {}", args.join(" "));
}

/// Runs `cmd` to completion; an error if it could not start.
pub fn status(cmd: &mut Command) -> anyhow::Result<ExitStatus> {
    announce(cmd);
    cmd.status().with_context(|| format!("failed to start {}", cmd.get_program().to_string_lossy()))
}

/// Runs `cmd` and fails unless it succeeds.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let st = status(cmd)?;
    anyhow::ensure!(st.success(), "{} failed: {st}", cmd.get_program().to_string_lossy());
    Ok(())
}

/// The exit code a shell would report for `st`, so CI sees the child's own status.
pub fn exit_code(st: ExitStatus) -> ExitCode {
    let code = match (st.code(), st.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

include!("../../lb-ebpf/build_env.rs");

/// `rustup run nightly cargo ARGS` for lb-ebpf, in the environment lb-userspace's build
/// script builds it in (lb-ebpf/build_env.rs, shared with lb-userspace/build.rs), so that tasks
/// that run cargo on lb-ebpf themselves see the same code.
pub fn ebpf_cargo<I, S>(args: I) -> anyhow::Result<Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]).args(args).current_dir(root());
    // The build script finds bpf-linker on PATH or in cargo's bin directory.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(cargo_home()?.join("bin"));
    cmd.env("PATH", std::env::join_paths(dirs).context("PATH")?);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", EBPF_RUSTFLAGS);
    for var in EBPF_CLEARED_ENV {
        cmd.env_remove(var);
    }
    Ok(cmd)
}
