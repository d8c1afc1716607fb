//! Where the fast path lives in bpffs, so that it outlives the agent: every
//! map and each interface's XDP link are pinned under
//! `<pin_dir>/<layout>/`, and the next agent that finds them adopts them
//! instead of loading its own (flows, counters and rings kept; the new
//! program replaces the old one on the same link in one update).
//!
//! `<layout>` names the maps' layout: the hand-bumped
//! [`LAYOUT_VERSION`] and a hash of every key and value size and every
//! capacity, those the configuration sets included. aya opens a pinned map
//! without checking its sizes, so an agent whose maps differ must never
//! find the old ones under the name it looks for.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use lb_common::{
    Backend, BackendRecord, Counters, FloodState, FlowSet, Iface, LAYOUT_VERSION, MAX_BACKENDS, MAX_IFINDEX, MAX_VIPS,
    Stat, VIP_TABLE_SIZE, VipCtl, VipEntry, names,
};

use super::{AttachMode, FastPathOptions};

/// Where bpffs is mounted on a systemd machine; the agent mounts it there
/// when nothing is (as systemd and Cilium do).
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// statfs's f_type of a bpf filesystem (linux/magic.h).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// The maps that are pinned: every map the balancer's programs share. The
/// packet trace's ring and the bench's maps belong to one process.
pub const PINNED_MAPS: [&str; 10] = [
    names::VIP_TABLE,
    names::VIP_CTL,
    names::RINGS,
    names::BACKENDS,
    names::FLOWS,
    names::IFACES,
    names::FLOOD,
    names::STATS,
    names::VIP_STATS,
    names::BACKEND_STATS,
];

/// The agent's own map, beside the program's: which VIP and address each
/// backend id stands for ([`BackendRecord`]).
pub const BACKEND_RECORDS: &str = "BACKEND_RECORDS";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "{dir} is not on a bpf filesystem, so the fast path cannot be pinned there: mount one (`mount -t bpf bpf DIR`) or set [global] pin_dir under {BPFFS_ROOT}"
    )]
    NotBpffs { dir: PathBuf },
    #[error("mounting bpffs at {BPFFS_ROOT}: {source}")]
    Mount { source: std::io::Error },
    #[error(
        "{dir} holds a fast path pinned with another map layout ({found}; this agent's is {ours}): it is never reused. Restart with `lb run --discard-pinned` to detach it and start afresh (established flows are re-hashed), or remove the directory"
    )]
    OtherLayout { dir: PathBuf, found: String, ours: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PinError + '_ {
    move |source| PinError::Io { path: path.to_owned(), source }
}

/// The name of the maps' layout for `opts` on `cpus` possible CPUs:
/// `v<LAYOUT_VERSION>-<hash>`. Pure: the same sizes always give the same
/// name, in every build.
pub fn layout_name(opts: &FastPathOptions, cpus: u32) -> String {
    let ring_slots = u64::from(opts.max_vips) * 2 * u64::from(opts.max_ring_size);
    let sizes: [u64; 21] = [
        size_of::<VipEntry>() as u64,
        size_of::<VipCtl>() as u64,
        size_of::<Backend>() as u64,
        size_of::<FlowSet>() as u64,
        size_of::<Iface>() as u64,
        size_of::<FloodState>() as u64,
        size_of::<Counters>() as u64,
        size_of::<BackendRecord>() as u64,
        VIP_TABLE_SIZE.into(),
        MAX_BACKENDS.into(),
        MAX_IFINDEX.into(),
        MAX_VIPS.into(),
        Stat::COUNT.into(),
        // RINGS: two slots per element; a VIP's regions start at multiples
        // of the largest ring, so that size matters as well as the total.
        ring_slots,
        opts.max_ring_size.into(),
        opts.max_vips.into(),
        // FLOWS: each CPU's sets back to back.
        lb_common::flow_sets(opts.flows_per_cpu).into(),
        cpus.into(),
        PINNED_MAPS.len() as u64,
        size_of::<[u32; 2]>() as u64,
        LAYOUT_VERSION.into(),
    ];
    format!("v{LAYOUT_VERSION}-{:08x}", fnv1a(&sizes) as u32)
}

/// FNV-1a over the words' little-endian bytes. Written out rather than
/// std's hasher, whose output may change between Rust releases: the name
/// must be the same for the agent that pinned and the one that adopts.
fn fnv1a(words: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in words.iter().flat_map(|w| w.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The pin directory of one layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pins {
    /// `<pin_dir>/<layout>`.
    dir: PathBuf,
}

impl Pins {
    /// Prepares `<pin_dir>/<layout of opts and cpus>`: bpffs mounted (at
    /// [`BPFFS_ROOT`] by the agent, when `pin_dir` is under it and nothing
    /// is mounted there), no pins of another layout (removed first when
    /// `discard` says so, which detaches them), the directory made.
    pub fn prepare(pin_dir: &Path, opts: &FastPathOptions, cpus: u32, discard: bool) -> Result<Self, PinError> {
        ensure_bpffs(pin_dir)?;
        let layout = layout_name(opts, cpus);
        std::fs::create_dir_all(pin_dir).map_err(io_err(pin_dir))?;
        for entry in std::fs::read_dir(pin_dir).map_err(io_err(pin_dir))? {
            let entry = entry.map_err(io_err(pin_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == layout {
                continue;
            }
            if !discard {
                return Err(PinError::OtherLayout { dir: pin_dir.to_owned(), found: name, ours: layout });
            }
            let path = entry.path();
            log::warn!("discarding the fast path pinned at {} (another layout)", path.display());
            remove_tree(&path)?;
        }
        let dir = pin_dir.join(&layout);
        for sub in ["maps", "links"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join("maps").join(name)
    }

    /// Whether a fast path is pinned here already (its control word is).
    pub fn holds_fast_path(&self) -> bool {
        self.map(names::VIP_CTL).exists()
    }

    /// The pin of the link on `iface` attached in `mode`.
    pub fn link(&self, iface: &str, mode: AttachMode) -> PathBuf {
        let mode = match mode {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        };
        self.dir.join("links").join(format!("{mode}-{}", pin_name(iface)))
    }

    /// The link pinned for `iface`, whatever its mode.
    pub fn find_link(&self, iface: &str) -> Option<(PathBuf, AttachMode)> {
        [AttachMode::Native, AttachMode::Generic]
            .into_iter()
            .map(|m| (self.link(iface, m), m))
            .find(|(p, _)| p.exists())
    }

    /// Removes every pin and the directories: what a plain stop does. The
    /// links go first, which detaches the program.
    pub fn remove(&self) -> Result<(), PinError> {
        remove_tree(&self.dir.join("links"))?;
        remove_tree(&self.dir)?;
        // The pin_dir itself, when nothing else is left in it.
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}

/// `name` as a bpffs entry: bpffs refuses names with a dot (reserved for
/// the kernel's own files), which interface names such as `eth0.100` have.
pub fn pin_name(name: &str) -> String {
    name.replace('%', "%25").replace('.', "%2E")
}

/// Removes a directory of pins (bpffs: pins and directories only).
fn remove_tree(path: &Path) -> Result<(), PinError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PinError::Io { path: path.to_owned(), source: e }),
        _ => Ok(()),
    }
}

/// The f_type of the filesystem `path` is on, or of its nearest existing
/// ancestor.
fn fs_type(path: &Path) -> Result<u32, PinError> {
    let mut at = path;
    while !at.exists() {
        at = at.parent().unwrap_or(Path::new("/"));
    }
    let c = CString::new(at.as_os_str().as_bytes())
        .map_err(|e| PinError::Io { path: at.to_owned(), source: std::io::Error::other(e) })?;
    // SAFETY: statfs is plain data; all zeros is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(PinError::Io { path: at.to_owned(), source: std::io::Error::last_os_error() });
    }
    // The magic is 32 bits; f_type's type differs between architectures.
    Ok(st.f_type as u32)
}

fn ensure_bpffs(pin_dir: &Path) -> Result<(), PinError> {
    if fs_type(pin_dir)? == BPF_FS_MAGIC {
        return Ok(());
    }
    let root = Path::new(BPFFS_ROOT);
    if pin_dir.starts_with(root) && fs_type(root)? != BPF_FS_MAGIC {
        mount_bpffs(root)?;
        log::info!("mounted bpffs at {BPFFS_ROOT}");
        if fs_type(pin_dir)? == BPF_FS_MAGIC {
            return Ok(());
        }
    }
    Err(PinError::NotBpffs { dir: pin_dir.to_owned() })
}

fn mount_bpffs(at: &Path) -> Result<(), PinError> {
    let c = |s: &[u8]| CString::new(s).expect("no NUL inside");
    let (source, target, fstype, data) = (c(b"bpf"), c(at.as_os_str().as_bytes()), c(b"bpf"), c(b"mode=0700"));
    // SAFETY: every argument is a NUL-terminated string that lives across
    // the call.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, data.as_ptr().cast()) };
    if rc != 0 {
        return Err(PinError::Mount { source: std::io::Error::last_os_error() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_every_size_the_configuration_sets() {
        let base = FastPathOptions::default();
        let name = layout_name(&base, 2);
        assert_eq!(name, layout_name(&base, 2), "pure");
        assert_ne!(layout_name(&base, 4), name, "FLOWS has a region per CPU");
        assert!(name.starts_with(&format!("v{LAYOUT_VERSION}-")), "{name}");
        for other in [
            FastPathOptions { max_vips: base.max_vips + 1, ..base },
            FastPathOptions { max_ring_size: 251, ..base },
            FastPathOptions { flows_per_cpu: base.flows_per_cpu * 2, ..base },
        ] {
            assert_ne!(layout_name(&other, 2), name, "{other:?}");
        }
        // The same flow sets, the same maps.
        let rounded = FastPathOptions { flows_per_cpu: base.flows_per_cpu - 1, ..base };
        assert_eq!(layout_name(&rounded, 2), name);
    }

    #[test]
    fn pin_names_have_no_dot() {
        assert_eq!(pin_name("eth0.100"), "eth0%2E100");
        assert_eq!(pin_name("a%2E"), "a%252E", "no two interfaces share a name");
        let pins = Pins { dir: PathBuf::from("/x") };
        assert_eq!(pins.link("eth0.7", AttachMode::Native), Path::new("/x/links/native-eth0%2E7"));
    }

    #[test]
    fn a_plain_directory_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("lb-pins-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = Pins::prepare(&dir, &FastPathOptions::default(), 2, false).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(err, PinError::NotBpffs { .. }), "{err}");
        assert!(err.to_string().contains(&dir.display().to_string()), "{err}");
    }
}
