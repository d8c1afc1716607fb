//! Where the workspace lives and how to call cargo in it.

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::Context;

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
