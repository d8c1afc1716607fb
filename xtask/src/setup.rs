//! Bootstrap of everything the build and the tests need beyond stable Rust.
//!
//! Each step checks first and only acts when something is missing, printing one
//! `xtask: installing X (why)` line when it does, so running it again is cheap and quiet.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail, ensure};

use crate::workspace;

/// Debian packages `cargo xtask test` and `cargo xtask run` need.
pub const TEST_PACKAGES: &[&str] = &[
    // `ip netns` / `ip link add type veth`: the lab and the integration tests build their
    // network namespaces with it.
    "iproute2",
    // Turns off veth offloads (GRO/TSO, checksum) that would otherwise hand XDP packets
    // it never sees on real NICs.
    "ethtool",
    // The VRRP tests drop multicast with an nftables rule to test unicast peers.
    "nftables",
    // The VRRP interop tests run keepalived 2.2.7 beside our agent.
    "keepalived",
    // Wireshark's dissector is the second opinion on the VRRP adverts we send
    // (tests/tests/integration/vrrp_tshark.rs).
    "tshark",
    // The fast-path tracking test detaches the agent's XDP link as an operator
    // would (tests/tests/integration/vrrp.rs).
    "bpftool",
    // The unit in dist/ is checked with `systemd-analyze verify`; the man pages
    // `lb man` writes are rendered with man/groff (tests/tests/integration/ops.rs).
    "systemd",
    "man-db",
    // promtool checks the agent's /metrics exposition (tests/tests/integration/metrics.rs).
    "prometheus",
    // Headless Chromium draws the status page the agent serves and the tests read its DOM
    // (tests/tests/integration/status_page.rs).
    "chromium",
    // BIRD 2 announces the VIPs over BGP: it learns the agent's announce table in a
    // namespace (tests/tests/integration/announce.rs), and runs on every director and
    // the router of the ECMP lab (`lb lab --ecmp`), its tests (tests/tests/integration/ecmp.rs)
    // and the ECMP bench.
    "bird2",
];

/// Debian packages `cargo xtask bench` needs on top of [`TEST_PACKAGES`]
/// (nftables, the baseline forwarder, is already there).
pub const BENCH_PACKAGES: &[&str] = &[];

/// The bpf-linker release lb-ebpf is built with; it must use the LLVM of our nightly.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// What `bpf-linker --version` prints for any 0.13.x.
const BPF_LINKER_VERSION_PREFIX: &str = "bpf-linker 0.13";
/// The LLVM major of current nightlies; bpf-linker must be built for the same one.
const LLVM_FEATURE: &str = "llvm-22";
const LIBLLVM_PREFIX: &str = "libLLVM.so.22.1-rust-";
const LIBLLVM_SUFFIX: &str = "-nightly";
/// Set to `1` to reinstall bpf-linker even if a working one is found (tests the
/// install path).
const FORCE_BPF_LINKER_ENV: &str = "LB_XTASK_FORCE_BPF_LINKER_INSTALL";

/// Nightly with rust-src (lb-ebpf is built with `-Z build-std=core`) and bpf-linker.
pub fn ensure_toolchain() -> anyhow::Result<()> {
    ensure_nightly().context("setting up the nightly toolchain")?;
    ensure_bpf_linker().context("setting up bpf-linker")?;
    Ok(())
}

/// Fails early with a clear message unless we run as root.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    ensure!(
        is_root()?,
        "`cargo xtask {what}` must run as root: it loads XDP programs and creates network \
         namespaces (CAP_BPF, CAP_NET_ADMIN); try `sudo -E cargo xtask {what}`"
    );
    Ok(())
}

/// Installs whichever of `packages` are missing with apt-get.
pub fn ensure_packages(packages: &[&str]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for &pkg in packages {
        if !package_installed(pkg)? {
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root()? {
        bail!(
            "missing Debian packages: {list}; run as root so xtask can install them, or \
             `sudo apt-get install {list}`"
        );
    }
    println!("xtask: installing {list} (Debian packages the tests need)");

    // Fresh containers ship without package lists; refreshing them once per run is enough.
    static UPDATED: AtomicBool = AtomicBool::new(false);
    if !UPDATED.swap(true, Ordering::Relaxed) {
        workspace::run(apt_get().arg("update")).context("apt-get update")?;
    }
    workspace::run(apt_get().args(["install", "-y", "--no-install-recommends"]).args(&missing))
        .with_context(|| format!("apt-get install {list}"))?;

    for &pkg in &missing {
        ensure!(package_installed(pkg)?, "{pkg} is still not installed after apt-get install");
    }
    Ok(())
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

fn package_installed(pkg: &str) -> anyhow::Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .context("running dpkg-query (xtask's package set-up needs a Debian-based system)")?;
    // dpkg-query fails for packages it has never heard of; that just means "missing".
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

fn is_root() -> anyhow::Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    // "Uid: real effective saved fs"; the effective uid is what the kernel checks.
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no Uid line in /proc/self/status")?;
    Ok(euid == "0")
}

fn ensure_nightly() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).context(
        "running rustup (lb-ebpf needs a nightly toolchain managed by rustup; install rustup \
         from https://rustup.rs)",
    )?;
    let host = host_triple()?;
    let nightly = format!("nightly-{host}");
    let have_nightly = toolchains.lines().any(|l| l.split_whitespace().next() == Some(nightly.as_str()));
    if !have_nightly {
        println!("xtask: installing the nightly toolchain (lb-ebpf needs -Z build-std)");
        workspace::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }

    ensure_component(Some("nightly"), "rust-src", "-Z build-std=core builds core for BPF")
}

/// Installs the rustup component `name` (`clippy`, `rust-src`...) into `toolchain`, or into
/// the toolchain running xtask when `None`, unless it is there; `why` goes in the message.
pub fn ensure_component(toolchain: Option<&str>, name: &str, why: &str) -> anyhow::Result<()> {
    let with_toolchain = |cmd: &mut Command| {
        if let Some(toolchain) = toolchain {
            cmd.args(["--toolchain", toolchain]);
        }
    };
    let mut list = Command::new("rustup");
    list.args(["component", "list", "--installed"]);
    with_toolchain(&mut list);
    let installed = output(&mut list).context("running rustup (the toolchain must be managed by rustup)")?;
    // Listed as `rust-src` or with the host triple: `clippy-x86_64-unknown-linux-gnu`.
    let have =
        installed.lines().map(str::trim).any(|l| l == name || l.strip_prefix(name).is_some_and(|t| t.starts_with('-')));
    if have {
        return Ok(());
    }
    let which = toolchain.unwrap_or("the current toolchain");
    println!("xtask: installing {name} for {which} ({why})");
    let mut add = Command::new("rustup");
    add.args(["component", "add", name]);
    with_toolchain(&mut add);
    workspace::run(&mut add)
}

fn host_triple() -> anyhow::Result<String> {
    let vv = output(Command::new("rustc").arg("-vV"))?;
    vv.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .context("`rustc -vV` printed no host triple")
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let forced = std::env::var_os(FORCE_BPF_LINKER_ENV).is_some_and(|v| v == "1");
    let candidate = bpf_linker_path();
    if !forced {
        match &candidate {
            Some(path) if bpf_linker_works(path) => return Ok(()),
            _ => {}
        }
    }

    let why = if forced {
        format!("{FORCE_BPF_LINKER_ENV}=1")
    } else {
        match &candidate {
            Some(path) => format!("{} is not a working {BPF_LINKER_VERSION_PREFIX}", path.display()),
            None => "not found".to_owned(),
        }
    };
    println!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} ({why}; lb-ebpf links with it; \
         building it against nightly's LLVM takes one to two minutes)"
    );
    install_bpf_linker()?;

    // The build script looks on PATH before ~/.cargo/bin, so check what it will find.
    let path = bpf_linker_path().context("bpf-linker is still not found after installing it")?;
    let installed = workspace::cargo_home()?.join("bin/bpf-linker");
    if bpf_linker_works(&path) {
        return Ok(());
    }
    if path != installed && bpf_linker_works(&installed) {
        bail!(
            "installed a working {}, but the build will use {} (earlier on PATH), which is              not a working {BPF_LINKER_VERSION_PREFIX}; remove it or put {} first on PATH",
            installed.display(),
            path.display(),
            installed.parent().unwrap_or(&installed).display()
        );
    }
    bail!("bpf-linker at {} still does not run after installing it; see `{} --version`", path.display(), path.display())
}

/// The bpf-linker lb-userspace's build script will use: the first on PATH, else the one in
/// cargo's bin directory.
fn bpf_linker_path() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("bpf-linker")).find(|p| p.is_file()));
    on_path.or_else(|| {
        let p = workspace::cargo_home().ok()?.join("bin/bpf-linker");
        p.is_file().then_some(p)
    })
}

fn bpf_linker_works(path: &Path) -> bool {
    // A bpf-linker whose libLLVM went away with a nightly update fails to start here.
    Command::new(path).arg("--version").output().is_ok_and(|o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim_start().starts_with(BPF_LINKER_VERSION_PREFIX)
    })
}

fn install_bpf_linker() -> anyhow::Result<()> {
    // bpf-linker links against nightly's own libLLVM rather than a system LLVM. Its build
    // wants LLVM_PREFIX/lib/libLLVM.so, and the binary keeps LLVM_PREFIX/lib as RUNPATH
    // and asks for the library by its full versioned name at run time, so that directory
    // must outlive the build and hold both names.
    let prefix = workspace::cargo_home()?.join("lb-bpf-llvm");
    let lib_dir = prefix.join("lib");
    std::fs::create_dir_all(&lib_dir).with_context(|| format!("creating {}", lib_dir.display()))?;

    let libllvm = nightly_libllvm()?;
    let name = libllvm.file_name().context("libLLVM path has no file name")?.to_owned();
    // Symlinks from older nightlies would dangle; drop them so the directory stays honest.
    for entry in std::fs::read_dir(&lib_dir).with_context(|| format!("reading {}", lib_dir.display()))? {
        let entry = entry?;
        let is_link = entry.file_type()?.is_symlink();
        if is_link && entry.file_name().to_string_lossy().starts_with("libLLVM") {
            std::fs::remove_file(entry.path()).with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    for link_name in [OsString::from("libLLVM.so"), name] {
        let link = lib_dir.join(&link_name);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("symlinking {} -> {}", link.display(), libllvm.display()))?;
    }

    // `--force`: we only get here when the installed bpf-linker is missing or broken, and
    // without it cargo skips a version it has already recorded, broken or not.
    let mut cmd = workspace::cargo([
        "install",
        "--force",
        "bpf-linker",
        "--locked",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
        LLVM_FEATURE,
    ]);
    cmd.env("LLVM_PREFIX", &prefix);
    // `cargo install` puts the binary in $CARGO_HOME/bin; pin it to the directory we
    // derived the prefix from, and keep an inherited install root from redirecting it.
    cmd.env("CARGO_HOME", workspace::cargo_home()?).env_remove("CARGO_INSTALL_ROOT");
    println!("xtask: LLVM_PREFIX={}", prefix.display());
    workspace::run(&mut cmd).context("cargo install bpf-linker")
}

/// The libLLVM shipped in nightly's sysroot, e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`.
fn nightly_libllvm() -> anyhow::Result<PathBuf> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(LIBLLVM_PREFIX) && name.ends_with(LIBLLVM_SUFFIX)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no {LIBLLVM_PREFIX}*{LIBLLVM_SUFFIX} in {}: bpf-linker {BPF_LINKER_VERSION} is \
             built for LLVM 22, but this nightly ships a different LLVM; update \
             BPF_LINKER_VERSION/LLVM_FEATURE in xtask/src/setup.rs",
            lib.display()
        ),
        many => bail!("several libLLVM candidates in {}: {many:?}; cannot tell which one rustc uses", lib.display()),
    }
}

/// Runs `cmd` and returns its stdout; an error with its stderr if it fails.
fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().with_context(|| format!("failed to start {program}"))?;
    ensure!(out.status.success(), "{program} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8(out.stdout).with_context(|| format!("{program} printed non-UTF-8"))
}
