//! What installing `lb` uses: the shell completions and manual pages it
//! generates, and the systemd unit in `dist/`. Runs the real program
//! (`lb-under-test`); needs no privileges. A tool that is not installed
//! (groff, man, systemd-analyze) skips its check with a message, or fails
//! it under `cargo xtask test`, which installs them.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");

/// Every subcommand `lb --help` lists.
const SUBCOMMANDS: [&str; 14] = [
    "run",
    "status",
    "drain",
    "undrain",
    "weight",
    "reload",
    "restart",
    "check",
    "example-config",
    "import",
    "lab",
    "completions",
    "man",
    "help",
];

/// A directory of this test's own, removed when it is dropped, also when
/// the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lb-ops-{name}-{}-{call}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lb(args: &[&str]) -> Output {
    let out = Command::new(LB).args(args).output().expect("running lb");
    assert!(out.status.success(), "lb {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Whether `tool` runs at all; says so when it does not.
fn installed(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os(lb_tests::privileges::REQUIRE_ENV).is_none_or(|v| v != "1"),
            "{tool} is not installed (`cargo xtask test` installs it with the test packages)"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

#[test]
fn bash_completions_name_every_subcommand() {
    let out = lb(&["completions", "bash"]);
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F"), "not a bash completion script:\n{script}");
    for name in SUBCOMMANDS {
        assert!(script.contains(name), "bash completions lack {name}");
    }
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = lb(&["completions", shell]);
        assert!(String::from_utf8(out.stdout).unwrap().contains("example-config"), "{shell}");
    }
}

#[test]
fn unknown_shell_is_refused() {
    let out = Command::new(LB).args(["completions", "tcsh"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

#[test]
fn man_pages_are_written_and_render() {
    let dir = TempDir::new("man");
    let pages = dir.0.join("man1");
    lb(&["man", pages.to_str().unwrap()]);
    for name in SUBCOMMANDS.iter().filter(|n| **n != "help") {
        assert!(pages.join(format!("lb-{name}.1")).is_file(), "no lb-{name}.1");
    }
    let lb1 = pages.join("lb.1");
    let run1 = pages.join("lb-run.1");
    let stdout = String::from_utf8(lb(&["man"]).stdout).unwrap();
    assert_eq!(std::fs::read_to_string(&lb1).unwrap(), stdout, "lb man and lb man DIR differ");
    assert!(!stdout.contains("lb\\-help"), "lb.1 points to a page lb man does not write");
    let mut rendered = false;
    for page in [&lb1, &run1] {
        if installed("man") {
            check_render(page, Command::new("man").env("MANPAGER", "cat").env("MANWIDTH", "80").arg("-l").arg(page));
            rendered = true;
        }
        if installed("groff") {
            check_render(page, Command::new("groff").args(["-man", "-Tutf8", "-ww"]).arg(page));
            rendered = true;
        }
    }
    if !rendered {
        eprintln!("skipped: the pages were written but not rendered");
    }
}

/// The page renders with no warning, and its text names the page's command.
fn check_render(page: &Path, command: &mut Command) {
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{command:?}: {stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    let name = page.file_stem().unwrap().to_str().unwrap();
    // groff may set the hyphen in lb-run as U+2010.
    let named = text.contains(name) || text.contains(&name.replace('-', "\u{2010}"));
    assert!(named, "{} renders without its name:\n{text}", page.display());
}

#[test]
fn systemd_unit_verifies() {
    if !installed("systemd-analyze") {
        return;
    }
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/lb.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/lb run -c /etc/lb/lb.toml"), "{unit}");
    // systemd-analyze wants the program to exist: the one under test
    // stands in for the installed one.
    let dir = TempDir::new("unit");
    let path = dir.0.join("lb.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/lb ", &format!("{LB} "))).unwrap();
    // --man=no: the pages are not installed on the machine that tests.
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}
