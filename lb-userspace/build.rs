//! Builds the XDP program (`lb-ebpf`) for `bpfel-unknown-none` with the
//! nightly toolchain and bpf-linker, and leaves the object in OUT_DIR for
//! `include_bytes_aligned!`. `cargo xtask` installs what this needs; where
//! bpf-linker is missing (a plain `cargo check`), an empty object is embedded
//! and the agent says so when it starts.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir.parent().context("workspace root")?.to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").context("OUT_DIR")?);
    let object = out_dir.join("lb.bpf.o");
    for dir in ["lb-ebpf/src", "lb-ebpf/Cargo.toml", "lb-common/src", "lb-common/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=LB_EBPF_OBJECT");

    if let Some(prebuilt) = env::var_os("LB_EBPF_OBJECT") {
        std::fs::copy(&prebuilt, &object)
            .with_context(|| format!("copying LB_EBPF_OBJECT {}", Path::new(&prebuilt).display()))?;
        return Ok(());
    }

    let home = env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cargo_bin = env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".cargo")).join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    dirs.push(cargo_bin);
    if !dirs.iter().any(|d| d.join("bpf-linker").is_file()) {
        println!(
            "cargo:warning=bpf-linker not found: embedding an empty eBPF object. \
             Run `cargo xtask build` (it installs the toolchain) for a working agent."
        );
        std::fs::write(&object, []).context("writing empty eBPF object")?;
        return Ok(());
    }

    // A target dir of its own that outlives this build, so `cargo build` and
    // `cargo test` share one eBPF build instead of a minute each.
    let target_dir = workspace.join("target").join("ebpf");
    let mut cmd = Command::new("rustup");
    cmd.current_dir(&workspace)
        .args(["run", "nightly", "cargo", "build", "--package", "lb-ebpf", "--release"])
        .args(["-Z", "build-std=core", "--target", "bpfel-unknown-none", "--target-dir"])
        .arg(&target_dir)
        .env("PATH", env::join_paths(&dirs).context("PATH")?)
        // v3 gives 32-bit ALU and jumps. Not `allows-misaligned-mem-access`:
        // LLVM then also merges stack stores at unaligned offsets, which the
        // verifier always rejects.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["-Ctarget-cpu=v3", "-Ctarget-feature=+allows-misaligned-mem-access"].join("\x1f"),
        );
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().context("running `rustup run nightly cargo build` for lb-ebpf")?;
    if !status.success() {
        bail!("building lb-ebpf failed ({status}); `cargo xtask build` installs what it needs");
    }
    let built = target_dir.join("bpfel-unknown-none/release/lb-ebpf");
    std::fs::copy(&built, &object).with_context(|| format!("copying {}", built.display()))?;
    Ok(())
}
