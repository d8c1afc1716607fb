// The environment the XDP program is compiled in, shared by lb-userspace's
// build script (the build) and xtask (clippy on lb-ebpf), so that both see
// the same code. Included with `include!`: neither may depend on the other.

/// `CARGO_ENCODED_RUSTFLAGS` for nightly's cargo. v3 gives 32-bit ALU and
/// jumps. `allows-misaligned-mem-access` makes the unaligned header reads
/// (packet.rs) single loads, which the verifier accepts on packet data; LLVM
/// may then also merge stack stores at unaligned offsets, which it always
/// rejects: a program refused for a misaligned stack access comes from this.
const EBPF_RUSTFLAGS: &str = "-Ctarget-cpu=v3\x1f-Ctarget-feature=+allows-misaligned-mem-access";

/// What the stable cargo that runs the build script or xtask set for itself,
/// which must not reach nightly's.
const EBPF_CLEARED_ENV: [&str; 8] = [
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "RUSTUP_TOOLCHAIN",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
];
