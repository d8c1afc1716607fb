//! `cargo xtask install` / `cargo xtask uninstall`: the release binary, the
//! systemd unit, a commented configuration, completions and man pages in the
//! places a distribution's package would put them, under `--prefix`
//! (default `/usr/local`) and `--destdir` (for building a package).
//!
//! Everything installed is listed in a manifest, so uninstall removes
//! exactly that, even after an upgrade renamed or added a man page. The
//! configuration is never overwritten and never removed: it is the
//! operator's.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail, ensure};

use crate::{cmd_build, setup, workspace};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Root of the installed tree: PREFIX/bin/lb, PREFIX/share/man, ...
    #[arg(long, default_value = "/usr/local")]
    prefix: PathBuf,
    /// Stage everything under this directory instead of / (for packaging).
    #[arg(long)]
    destdir: Option<PathBuf>,
}

/// Where each installed thing goes, as seen on the target system (before
/// `--destdir`).
#[derive(Debug)]
struct Layout {
    prefix: PathBuf,
}

impl Layout {
    fn binary(&self) -> PathBuf {
        self.prefix.join("bin/lb")
    }
    /// systemd reads units from PREFIX/lib/systemd/system for both /usr and
    /// /usr/local.
    fn unit(&self) -> PathBuf {
        self.prefix.join("lib/systemd/system/lb.service")
    }
    fn man1(&self) -> PathBuf {
        self.prefix.join("share/man/man1")
    }
    fn completions(&self) -> [(&'static str, PathBuf); 3] {
        [
            ("bash", self.prefix.join("share/bash-completion/completions/lb")),
            ("zsh", self.prefix.join("share/zsh/site-functions/_lb")),
            ("fish", self.prefix.join("share/fish/vendor_completions.d/lb.fish")),
        ]
    }
    fn manifest(&self) -> PathBuf {
        self.prefix.join("share/lb/installed-files")
    }
    fn config() -> PathBuf {
        PathBuf::from("/etc/lb/lb.toml")
    }
}

/// `path` (absolute on the target system) under `destdir`.
fn staged(destdir: Option<&Path>, path: &Path) -> PathBuf {
    match destdir {
        Some(d) => d.join(path.strip_prefix("/").unwrap_or(path)),
        None => path.to_owned(),
    }
}

pub fn install(args: &Args) -> anyhow::Result<ExitCode> {
    check_prefix(&args.prefix)?;
    setup::ensure_toolchain()?;
    let lb = cmd_build::build(true)?;
    let installed = install_from(&lb, &args.prefix, args.destdir.as_deref())?;
    for path in &installed {
        println!("xtask: installed {}", path.display());
    }
    if args.destdir.is_none() {
        systemctl(&["daemon-reload"]);
        println!(
            "xtask: next: edit {} (`lb check -c {0}` validates it), then `systemctl enable --now lb`",
            Layout::config().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall(args: &Args) -> anyhow::Result<ExitCode> {
    check_prefix(&args.prefix)?;
    if args.destdir.is_none() {
        // A running agent would keep the removed binary's fast path attached.
        systemctl(&["disable", "--now", "lb.service"]);
    }
    let removed = uninstall_from(&args.prefix, args.destdir.as_deref())?;
    for path in &removed {
        println!("xtask: removed {}", path.display());
    }
    if args.destdir.is_none() {
        systemctl(&["daemon-reload"]);
    }
    println!("xtask: kept {} (the operator's configuration)", Layout::config().display());
    Ok(ExitCode::SUCCESS)
}

/// `systemctl ARGS` when systemd runs this machine; what it says is shown,
/// a failure (no such unit yet) is not an error.
fn systemctl(args: &[&str]) {
    if !Path::new("/run/systemd/system").is_dir() {
        return;
    }
    let mut cmd = Command::new("systemctl");
    cmd.args(args);
    workspace::announce(&cmd);
    if let Err(e) = cmd.status() {
        println!("xtask: systemctl: {e}");
    }
}

fn check_prefix(prefix: &Path) -> anyhow::Result<()> {
    ensure!(prefix.is_absolute(), "--prefix must be an absolute path, not {}", prefix.display());
    Ok(())
}

/// Installs the program `lb` (already built) and what it generates; returns
/// the paths written, as on the target system.
fn install_from(lb: &Path, prefix: &Path, destdir: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let layout = Layout { prefix: prefix.to_owned() };
    let mut files = Vec::new();
    let mut put = |path: PathBuf, contents: &[u8], mode: u32| -> anyhow::Result<()> {
        let target = staged(destdir, &path);
        write_file(&target, contents, mode)?;
        files.push(path);
        Ok(())
    };

    let binary = fs::read(lb).with_context(|| format!("reading {}", lb.display()))?;
    put(layout.binary(), &binary, 0o755)?;
    put(layout.unit(), unit_for(&layout.binary())?.as_bytes(), 0o644)?;
    for (shell, path) in layout.completions() {
        put(path, &output(lb, &["completions", shell])?, 0o644)?;
    }
    let pages = tempdir()?;
    run_ok(Command::new(lb).arg("man").arg(&pages))?;
    let mut names: Vec<_> = fs::read_dir(&pages)?.collect::<Result<Vec<_>, _>>()?;
    names.sort_by_key(fs::DirEntry::file_name);
    for entry in names {
        let page = fs::read(entry.path())?;
        put(layout.man1().join(entry.file_name()), &page, 0o644)?;
    }
    let _ = fs::remove_dir_all(&pages);

    // The manifest lists itself last, so uninstall removes it too.
    let manifest = layout.manifest();
    let mut listing: String = files.iter().map(|p| format!("{}\n", p.display())).collect();
    listing.push_str(&format!("{}\n", manifest.display()));
    write_file(&staged(destdir, &manifest), listing.as_bytes(), 0o644)?;
    files.push(manifest);

    let config = staged(destdir, &Layout::config());
    if config.exists() {
        println!("xtask: keeping the existing {}", config.display());
    } else {
        // 0640: the file may name check scripts' users and VRRP passwords.
        write_file(&config, &output(lb, &["example-config"])?, 0o640)?;
        files.push(Layout::config());
    }
    Ok(files)
}

/// Removes what the manifest lists and the directories that become empty;
/// returns what it removed.
fn uninstall_from(prefix: &Path, destdir: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let layout = Layout { prefix: prefix.to_owned() };
    let manifest = staged(destdir, &layout.manifest());
    let listing = match fs::read_to_string(&manifest) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("nothing to uninstall: {} does not exist (was lb installed with this --prefix?)", manifest.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", manifest.display())),
    };
    let mut removed = Vec::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty()) {
        let path = PathBuf::from(line);
        ensure!(
            path.starts_with(prefix),
            "{} lists {}, which is outside {}: refusing to remove it",
            manifest.display(),
            path.display(),
            prefix.display()
        );
        let target = staged(destdir, &path);
        match fs::remove_file(&target) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", target.display())),
        }
        // Directories we may have created (share/lb, ...), only while empty;
        // never the prefix itself.
        let mut dir = target.parent();
        while let Some(d) = dir {
            if d == staged(destdir, prefix) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    Ok(removed)
}

/// The shipped unit with ExecStart pointing at the installed binary.
fn unit_for(binary: &Path) -> anyhow::Result<String> {
    let shipped = workspace::root().join("dist/lb.service");
    let unit = fs::read_to_string(&shipped).with_context(|| format!("reading {}", shipped.display()))?;
    Ok(rewrite_unit(&unit, binary))
}

fn rewrite_unit(unit: &str, binary: &Path) -> String {
    unit.lines()
        .map(|line| match line.strip_prefix("ExecStart=/usr/local/bin/lb") {
            Some(rest) => format!("ExecStart={}{rest}\n", binary.display()),
            None => format!("{line}\n"),
        })
        .collect()
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn output(lb: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(lb).args(args).output().with_context(|| format!("running {}", lb.display()))?;
    ensure!(out.status.success(), "`lb {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(out.stdout)
}

fn run_ok(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("lb-install-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for `lb` that answers the three commands install runs.
    fn fake_lb(dir: &Path) -> PathBuf {
        let lb = dir.join("lb");
        let script = "#!/bin/sh\ncase \"$1\" in\n  completions) echo \"# $2 completions\";;\n  man) echo page > \"$2/lb.1\"; echo page > \"$2/lb-run.1\";;\n  example-config) echo '# example';;\n  *) exit 2;;\nesac\n";
        write_file(&lb, script.as_bytes(), 0o755).unwrap();
        lb
    }

    #[test]
    fn install_then_uninstall_leaves_only_the_configuration() {
        let root = std::env::temp_dir().join(format!("xtask-install-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let lb = fake_lb(&root.join("build"));
        let dest = root.join("dest");
        let prefix = Path::new("/opt/lb");

        let files = install_from(&lb, prefix, Some(&dest)).unwrap();
        for want in [
            "/opt/lb/bin/lb",
            "/opt/lb/lib/systemd/system/lb.service",
            "/opt/lb/share/man/man1/lb.1",
            "/opt/lb/share/man/man1/lb-run.1",
            "/opt/lb/share/bash-completion/completions/lb",
            "/opt/lb/share/zsh/site-functions/_lb",
            "/opt/lb/share/fish/vendor_completions.d/lb.fish",
            "/etc/lb/lb.toml",
        ] {
            assert!(files.contains(&PathBuf::from(want)), "{want} not installed: {files:?}");
            assert!(staged(Some(&dest), Path::new(want)).is_file(), "{want} missing");
        }
        let unit = fs::read_to_string(dest.join("opt/lb/lib/systemd/system/lb.service")).unwrap();
        assert!(unit.contains("ExecStart=/opt/lb/bin/lb run -c /etc/lb/lb.toml"), "{unit}");

        // A second install keeps the operator's edits.
        fs::write(dest.join("etc/lb/lb.toml"), "# mine\n").unwrap();
        install_from(&lb, prefix, Some(&dest)).unwrap();
        assert_eq!(fs::read_to_string(dest.join("etc/lb/lb.toml")).unwrap(), "# mine\n");

        uninstall_from(prefix, Some(&dest)).unwrap();
        assert!(!dest.join("opt/lb/bin").exists() && !dest.join("opt/lb/share").exists());
        assert_eq!(fs::read_to_string(dest.join("etc/lb/lb.toml")).unwrap(), "# mine\n");
        assert!(uninstall_from(prefix, Some(&dest)).is_err(), "a second uninstall has nothing to remove");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_unit_runs_the_installed_binary() {
        let unit =
            "[Service]\nExecStart=/usr/local/bin/lb run -c /etc/lb/lb.toml\nExecReload=/bin/kill -HUP $MAINPID\n";
        let out = rewrite_unit(unit, Path::new("/usr/bin/lb"));
        assert!(out.contains("ExecStart=/usr/bin/lb run -c /etc/lb/lb.toml\n"));
        assert!(out.contains("ExecReload=/bin/kill -HUP $MAINPID\n"));
    }
}
