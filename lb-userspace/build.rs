//! Builds the XDP program (`lb-ebpf`) for `bpfel-unknown-none` with the
//! nightly toolchain and bpf-linker, twice: the agent's object, and with the
//! `bench` feature the object the bench and the tests load (the same
//! programs plus the bench programs). Both land in OUT_DIR for
//! `include_bytes_aligned!`. `cargo xtask` installs what this needs; where
//! bpf-linker is missing (a plain `cargo check`), empty objects are embedded
//! and the agent says so when it starts.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// An object to build: the file in OUT_DIR, the lb-ebpf features, and the
/// variable that names a prebuilt one instead.
struct Object {
    file: &'static str,
    features: &'static [&'static str],
    prebuilt: &'static str,
}

const OBJECTS: [Object; 2] = [
    Object { file: "lb.bpf.o", features: &[], prebuilt: "LB_EBPF_OBJECT" },
    Object { file: "lb-bench.bpf.o", features: &["bench"], prebuilt: "LB_EBPF_BENCH_OBJECT" },
];

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir.parent().context("workspace root")?.to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").context("OUT_DIR")?);
    for dir in ["lb-ebpf/src", "lb-ebpf/Cargo.toml", "lb-ebpf/build_env.rs", "lb-common/src", "lb-common/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    for object in &OBJECTS {
        println!("cargo:rerun-if-env-changed={}", object.prebuilt);
    }

    if env::var_os(OBJECTS[0].prebuilt).is_some() {
        for object in &OBJECTS {
            let out = out_dir.join(object.file);
            match env::var_os(object.prebuilt) {
                Some(prebuilt) => {
                    std::fs::copy(&prebuilt, &out)
                        .with_context(|| format!("copying {} {}", object.prebuilt, Path::new(&prebuilt).display()))?;
                }
                None => {
                    println!("cargo:warning={} not set: embedding an empty {}", object.prebuilt, object.file);
                    std::fs::write(&out, []).with_context(|| format!("writing empty {}", object.file))?;
                }
            }
        }
        return Ok(());
    }

    let home = env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cargo_bin = env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".cargo")).join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    dirs.push(cargo_bin);
    if !dirs.iter().any(|d| d.join("bpf-linker").is_file()) {
        println!(
            "cargo:warning=bpf-linker not found: embedding empty eBPF objects. \
             Run `cargo xtask build` (it installs the toolchain) for a working agent."
        );
        for object in &OBJECTS {
            std::fs::write(out_dir.join(object.file), []).context("writing an empty eBPF object")?;
        }
        return Ok(());
    }

    // A target dir of its own that outlives this build, so `cargo build` and
    // `cargo test` share one eBPF build instead of a minute each. Both
    // objects build in it: the second compiles only lb-ebpf again, and
    // cargo keeps each feature set's build, so neither undoes the other.
    let target_dir = workspace.join("target").join("ebpf");
    let path = env::join_paths(&dirs).context("PATH")?;
    for object in &OBJECTS {
        build(&workspace, &target_dir, &path, object.features)?;
        let built = target_dir.join("bpfel-unknown-none/release/lb-ebpf");
        let out = out_dir.join(object.file);
        std::fs::copy(&built, &out).with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    }
    Ok(())
}

include!("../lb-ebpf/build_env.rs");

fn build(workspace: &Path, target_dir: &Path, path: &OsString, features: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(workspace)
        .args(["run", "nightly", "cargo", "build", "--package", "lb-ebpf", "--release"])
        .args(["-Z", "build-std=core", "--target", "bpfel-unknown-none", "--target-dir"])
        .arg(target_dir)
        .env("PATH", path)
        .env("CARGO_ENCODED_RUSTFLAGS", EBPF_RUSTFLAGS);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    for var in EBPF_CLEARED_ENV {
        cmd.env_remove(var);
    }
    let status = cmd.status().context("running `rustup run nightly cargo build` for lb-ebpf")?;
    if !status.success() {
        bail!("building lb-ebpf (features {features:?}) failed ({status}); `cargo xtask build` installs what it needs");
    }
    Ok(())
}
