//! The XDP program and its maps, as the agent sees them.
//!
//! Everything the fast path reads is written here, and the order of writes
//! is what keeps updates atomic: a VIP's new ring goes into its spare ring
//! region and the new VIP table into its spare generation, then one atomic
//! store flips the fast path to the new table. What a flip retires is not
//! overwritten until a grace period has passed.

pub mod adopt;
mod mmap;
pub mod pins;
pub mod vip_table;

use std::{
    collections::HashMap as StdHashMap,
    path::Path,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, PerCpuValues},
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::{
    Backend, BackendRecord, Counters, DEFAULT_FLOWS_PER_CPU, DEFAULT_RING_SIZE, FlowKey, FlowSet, IFACE_F_ACTIVE,
    Iface, MAX_BACKENDS, MAX_IFINDEX, MAX_VIPS, Settings, Stat, VIP_TABLE_SIZE, VipCtl, VipEntry, VipKey, VipMeta,
    names,
};
use mmap::MmapArray;
use pins::Pins;

use crate::trace;

/// The eBPF object built by `build.rs`: the balancer and `PeerPass`'s program.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb.bpf.o"));
/// The same plus the bench programs and their maps (lb-ebpf's `bench`
/// feature), for the bench and the tests: [`FastPath::load_object`].
pub static EBPF_BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-bench.bpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    #[error(
        "this binary was built without its eBPF object (bpf-linker was missing); build it with `cargo xtask build`"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {source}")]
    Load { source: Box<aya::EbpfError> },
    #[error("program {name}: {source}")]
    Program { name: &'static str, source: Box<ProgramError> },
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: Box<aya::maps::MapError> },
    #[error("map {name} is missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("mapping the ring array into memory failed: {source}")]
    Mmap { source: std::io::Error },
    #[error("interface {name} not found")]
    UnknownInterface { name: String },
    #[error("reading the MAC address of {name}: {source}")]
    InterfaceMac { name: String, source: std::io::Error },
    #[error("attaching XDP to {iface} failed in both native and generic mode: native: {native}; generic: {generic}")]
    Attach { iface: String, native: Box<ProgramError>, generic: Box<ProgramError> },
    #[error("VIP index {index} out of range (at most {max} VIPs)")]
    VipIndex { index: u32, max: u32 },
    #[error("ring of {size} slots does not fit the ring regions of {max} slots")]
    RingTooLarge { size: usize, max: u32 },
    #[error("backend id {id} out of range (1..{max})")]
    BackendId { id: u32, max: u32 },
    #[error("ifindex {ifindex} is too large for the fast path's interface table (at most {max})")]
    IfindexTooLarge { ifindex: u32, max: u32 },
    #[error("no layout of the VIP table fits its {keys} keys")]
    VipTableFull { keys: usize },
    #[error("reading the possible CPUs: {what}: {source}")]
    PossibleCpus { what: &'static str, source: std::io::Error },
    #[error("flows_per_cpu {flows_per_cpu} on {cpus} possible CPUs is more than one map can hold; lower flows_per_cpu")]
    FlowTableTooLarge { flows_per_cpu: u32, cpus: u32 },
    #[error("packet trace: {0}")]
    Trace(#[from] trace::TraceError),
    #[error(transparent)]
    Pin(#[from] pins::PinError),
    #[error("the XDP link pinned at {path}: {source}")]
    Link { path: std::path::PathBuf, source: Box<LinkError> },
    #[error("pinning the XDP link on {iface} at {path}: {source}")]
    PinLink { iface: String, path: std::path::PathBuf, source: Box<aya::pin::PinError> },
}

/// Sizes fixed when the program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPathOptions {
    /// VIPs (services) the ring array has room for; each gets two regions.
    pub max_vips: u32,
    /// Largest ring any VIP may use; the size of one region.
    pub max_ring_size: u32,
    /// Flow-table entries per CPU.
    pub flows_per_cpu: u32,
}

impl FastPathOptions {
    /// A VIP index the maps have room for. One rule for the loaded maps and
    /// for the agent's in-memory model of them.
    pub fn check_vip_index(&self, index: u32) -> Result<(), FastPathError> {
        let max = self.max_vips.min(MAX_VIPS);
        if index >= max {
            return Err(FastPathError::VipIndex { index, max });
        }
        Ok(())
    }

    /// A ring that fits a VIP's region.
    pub fn check_ring(&self, ring: &[u32]) -> Result<(), FastPathError> {
        if ring.len() > self.max_ring_size as usize {
            return Err(FastPathError::RingTooLarge { size: ring.len(), max: self.max_ring_size });
        }
        Ok(())
    }
}

/// A backend id the maps have room for. Ids start at 1: a ring slot of 0
/// means none.
pub fn check_backend_id(id: u32) -> Result<(), FastPathError> {
    if id == 0 || id >= MAX_BACKENDS {
        return Err(FastPathError::BackendId { id, max: MAX_BACKENDS });
    }
    Ok(())
}

impl Default for FastPathOptions {
    fn default() -> Self {
        Self { max_vips: 16, max_ring_size: DEFAULT_RING_SIZE, flows_per_cpu: DEFAULT_FLOWS_PER_CPU }
    }
}

/// How the program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

/// Where a VIP's ring lives, published and staged.
#[derive(Debug, Clone, Copy)]
struct VipSlot {
    /// The region (0 or 1 of the VIP's two) the published table points at;
    /// `None` before the first publish.
    active_region: Option<u32>,
    meta: VipMeta,
    /// The tag of the ring each region holds, when its writer gave one.
    regions: [Option<u64>; 2],
    /// Published by the agent before this one and not staged since: the
    /// first stage that would change nothing keeps it as it is.
    adopted: bool,
}

/// Grace periods (RCU) after flips, run in the background by one helper
/// thread: until the one after a flip ends, an XDP program that read the old
/// generation may still be reading what the flip retired, so nothing
/// retired may be overwritten. One long-lived thread, not one per flip:
/// starting a thread took tens of microseconds on the way from a check's
/// verdict to the fast path.
#[derive(Default)]
struct Grace {
    shared: Arc<GraceShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct GraceShared {
    state: Mutex<GraceState>,
    changed: Condvar,
}

/// Grace periods asked for and ended, counted: the helper ends the latest
/// asked for, which ends every earlier one with it.
#[derive(Default)]
struct GraceState {
    asked: u64,
    ended: u64,
    stop: bool,
}

impl GraceShared {
    fn lock(&self) -> MutexGuard<'_, GraceState> {
        // The state is three counters written in single statements: a panic
        // elsewhere cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        loop {
            let target = {
                let mut state = self.lock();
                while state.asked == state.ended && !state.stop {
                    state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                if state.asked == state.ended {
                    return;
                }
                state.asked
            };
            synchronize();
            self.lock().ended = target;
            self.changed.notify_all();
        }
    }
}

/// The region (0 or 1) of VIP `vip_index`'s two that the published table
/// does not point at (`active`), and its first word in the rings array.
pub fn spare_region(max_ring_size: u32, vip_index: u32, active: Option<u32>) -> (usize, u32) {
    let spare = active.map_or(0, |r| (r + 1) % 2);
    (spare as usize, (vip_index * 2 + spare) * max_ring_size)
}

/// Returns after a grace period: membarrier(MEMBARRIER_CMD_GLOBAL) returns
/// after synchronize_rcu(), when every XDP program that started before it
/// has finished.
fn synchronize() {
    // SAFETY: a plain syscall with no pointer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc != 0 {
        // Without it (nohz_full kernels refuse), wait far longer than any
        // XDP program runs.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl Grace {
    /// Starts a grace period now (the helper thread the first time).
    fn start(&mut self) {
        if self.thread.is_none() {
            let shared = Arc::clone(&self.shared);
            match std::thread::Builder::new().name("lb-grace".into()).spawn(move || shared.run()) {
                Ok(thread) => self.thread = Some(thread),
                // No thread: this grace period passes here instead.
                Err(_) => return synchronize(),
            }
        }
        self.shared.lock().asked += 1;
        self.shared.changed.notify_all();
    }

    /// Whether every grace period started so far has ended.
    fn is_over(&self) -> bool {
        let state = self.shared.lock();
        state.ended >= state.asked
    }

    /// Returns once every grace period started so far has ended.
    fn wait(&self) {
        let mut state = self.shared.lock();
        while state.ended < state.asked {
            state = self.shared.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Grace {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The loaded program and typed access to its maps.
pub struct FastPath {
    // Field order matters: the mappings go before the maps they map.
    rings: MmapArray,
    vip_table: MmapArray,
    vip_ctl: MmapArray,
    ebpf: Ebpf,
    opts: FastPathOptions,
    /// CPUs `FLOWS` has a region for (`Settings::flow_cpus`).
    flow_cpus: u32,
    /// Per VIP index: its ring regions and meta.
    vips: StdHashMap<u32, VipSlot>,
    /// The keys of the table, published or staged.
    keys: StdHashMap<VipKey, u32>,
    /// The generation of the VIP table in use (0 or 1).
    generation: u32,
    grace: Grace,
    /// Something was staged since the last publish.
    dirty: bool,
    links: Vec<Attached>,
    /// Where the maps and links are pinned; `None` for a fast path that
    /// lives only as long as this process (the bench, the tests).
    pins: Option<Pins>,
    /// The agent's record of each backend id, pinned beside the maps.
    records: Option<Array<MapData, BackendRecord>>,
    /// The maps were pinned by an agent before this one.
    adopted: bool,
    /// The program loaded: `lb_xdp`, or `lb_xdp_traced` for the packet trace.
    program: &'static str,
    /// Logs the packet trace, when the program was loaded with it.
    trace: Option<trace::Printer>,
}

/// The program on one interface.
struct Attached {
    iface: String,
    mode: AttachMode,
    /// The link when it is pinned: held open here, attached while its pin
    /// lasts. Otherwise the program holds it and detaches it when dropped.
    _pinned: Option<XdpLink>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath").field("opts", &self.opts).finish_non_exhaustive()
    }
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> FastPathError {
    move |source| FastPathError::Map { name, source: Box::new(source) }
}

fn prog_err(name: &'static str) -> impl FnOnce(ProgramError) -> FastPathError {
    move |source| FastPathError::Program { name, source: Box::new(source) }
}

fn load_err(source: aya::EbpfError) -> FastPathError {
    FastPathError::Load { source: Box::new(source) }
}

/// The CPUs the kernel may ever run the program on (`/sys/devices/system/cpu/possible`,
/// as the kernel sizes its per-CPU maps): `FLOWS` has a region for each.
pub fn possible_cpus() -> Result<u32, FastPathError> {
    let cpus = aya::util::nr_cpus().map_err(|(what, source)| FastPathError::PossibleCpus { what, source })?;
    Ok(u32::try_from(cpus).unwrap_or(u32::MAX))
}

/// Elements of `FLOWS` for `opts` on `cpus` CPUs (see `lb_common::flow_table_len`).
pub fn flow_table_len(opts: &FastPathOptions, cpus: u32) -> Result<u32, FastPathError> {
    lb_common::flow_table_len(lb_common::flow_sets(opts.flows_per_cpu), cpus)
        .ok_or(FastPathError::FlowTableTooLarge { flows_per_cpu: opts.flows_per_cpu, cpus })
}

impl FastPath {
    /// Loads the balancer program into the kernel (not attached anywhere).
    pub fn load(opts: FastPathOptions) -> Result<Self, FastPathError> {
        Self::load_traced(opts, None)
    }

    /// As [`load`](Self::load), with the packet trace on when `trace` is
    /// given: a record for each packet it matches, logged (target
    /// `lb::trace`) until the fast_path is dropped.
    pub fn load_traced(opts: FastPathOptions, trace: Option<&trace::Filter>) -> Result<Self, FastPathError> {
        let mut dp = Self::load_object(EBPF_OBJECT, opts, trace)?;
        if let Some(filter) = trace {
            dp.trace = Some(trace::Printer::start(&mut dp.ebpf, filter)?);
        }
        Ok(dp)
    }

    /// As [`load_traced`](Self::load_traced), with every map pinned under
    /// `pin_dir` (see [`pins`]): a fast path pinned there already with the
    /// same layout is adopted (its maps reused as they are; what it
    /// publishes read back, so that installing the same again flips
    /// nothing), and [`attach`](Self::attach) takes over its links. Pins of
    /// another layout are an error, or removed first when `discard` says so.
    pub fn load_pinned(
        opts: FastPathOptions,
        trace: Option<&trace::Filter>,
        pin_dir: &Path,
        discard: bool,
    ) -> Result<Self, FastPathError> {
        let pins = Pins::prepare(pin_dir, &opts, possible_cpus()?, discard)?;
        let mut dp = Self::load_with(EBPF_OBJECT, opts, trace, Some(pins))?;
        if let Some(filter) = trace {
            dp.trace = Some(trace::Printer::start(&mut dp.ebpf, filter)?);
        }
        Ok(dp)
    }

    /// Loads the balancer from `object` ([`EBPF_OBJECT`] or
    /// [`EBPF_BENCH_OBJECT`]), the program with the packet trace when
    /// `trace` is given; its records are the caller's to read
    /// (`trace::Reader`).
    pub fn load_object(
        object: &[u8],
        opts: FastPathOptions,
        trace: Option<&trace::Filter>,
    ) -> Result<Self, FastPathError> {
        Self::load_with(object, opts, trace, None)
    }

    fn load_with(
        object: &[u8],
        opts: FastPathOptions,
        trace: Option<&trace::Filter>,
        pins: Option<Pins>,
    ) -> Result<Self, FastPathError> {
        if object.is_empty() {
            return Err(FastPathError::NoObject);
        }
        let ring_slots = opts.max_vips * 2 * opts.max_ring_size;
        let flow_cpus = possible_cpus()?;
        let flow_len = flow_table_len(&opts, flow_cpus)?;
        let globals = trace::Globals::new(trace);
        let mut loader = EbpfLoader::new();
        globals.apply(&mut loader);
        let adopted = pins.as_ref().is_some_and(Pins::holds_fast_path);
        let pin_paths: Vec<(&str, std::path::PathBuf)> =
            pins.iter().flat_map(|p| pins::PINNED_MAPS.iter().map(move |&name| (name, p.map(name)))).collect();
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.clone());
        }
        let mut ebpf = loader
            // Two slots per array element (see RINGS in lb-ebpf).
            .map_max_entries(names::RINGS, ring_slots.div_ceil(2))
            .map_max_entries(names::FLOWS, flow_len)
            .load(object)
            .map_err(load_err)?;
        // The traced program is the balancer plus the trace; the other has
        // no trace code at all.
        let program = if trace.is_some() { names::PROGRAM_TRACED } else { names::PROGRAM };
        let prog: &mut Xdp = ebpf
            .program_mut(program)
            .ok_or_else(|| prog_err(program)(ProgramError::NotLoaded))?
            .try_into()
            .map_err(prog_err(program))?;
        prog.load().map_err(prog_err(program))?;
        let mapped = |name: &'static str, elements: u32, value_size: usize| {
            let Some(aya::maps::Map::Array(data)) = ebpf.map(name) else {
                return Err(FastPathError::MissingMap { name });
            };
            MmapArray::new(data, elements, value_size)
        };
        let rings = mapped(names::RINGS, ring_slots.div_ceil(2), 8)?;
        let vip_table = mapped(names::VIP_TABLE, VIP_TABLE_SIZE * 2, size_of::<VipEntry>())?;
        let vip_ctl = mapped(names::VIP_CTL, 1, size_of::<VipCtl>())?;
        let records = match &pins {
            Some(p) => Some(open_records(&p.map(pins::BACKEND_RECORDS))?),
            None => None,
        };
        let mut dp = Self {
            rings,
            vip_table,
            vip_ctl,
            ebpf,
            opts,
            flow_cpus,
            vips: StdHashMap::new(),
            keys: StdHashMap::new(),
            generation: 0,
            grace: Grace::default(),
            dirty: false,
            links: Vec::new(),
            pins,
            records,
            adopted,
            program,
            trace: None,
        };
        if adopted {
            dp.read_published();
        }
        // The table's shape the program needs; set_settings keeps it.
        dp.set_settings(Settings::new(0, 0))?;
        Ok(dp)
    }

    pub fn options(&self) -> FastPathOptions {
        self.opts
    }

    /// The loaded program, for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> &Xdp {
        let prog = self.ebpf.program(self.program).expect("loaded in FastPath::load");
        prog.try_into().expect("an XDP program")
    }

    /// The whole object, for the bench programs that share it.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Attaches to `iface` in native mode, or in generic mode with a warning
    /// where the driver has none. Records the interface's MAC as the source
    /// MAC for frames it transmits. Detached when `self` is dropped.
    ///
    /// Pinned ([`load_pinned`](Self::load_pinned)), the link is pinned and
    /// outlives this process; a link pinned there before is taken over: this
    /// program replaces the one attached, in one update, so no packet meets
    /// no program. A pinned link whose interface went away is replaced by a
    /// new one.
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, FastPathError> {
        let ifindex = ifindex(iface)?;
        let mac = interface_mac(iface)?;
        self.set_iface(ifindex, mac)?;
        if let Some((path, mode)) = self.pins.as_ref().and_then(|p| p.find_link(iface)) {
            if self.take_over(&path)? {
                self.links.push(Attached { iface: iface.to_owned(), mode, _pinned: None });
                return Ok(mode);
            }
            log::info!("{iface}: the pinned XDP link is gone; attaching anew");
            std::fs::remove_file(&path).map_err(|source| pins::PinError::Io { path, source })?;
        }
        let prog: &mut Xdp =
            self.ebpf.program_mut(self.program).expect("loaded in FastPath::load").try_into().expect("an XDP program");
        let (link, mode) = match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
            Ok(link) => (link, AttachMode::Native),
            Err(native) => match prog.attach_to_if_index(ifindex, XdpMode::Skb) {
                Ok(link) => {
                    log::warn!(
                        "{iface}: the driver has no native XDP ({native}); attached in generic mode, which is several times slower"
                    );
                    (link, AttachMode::Generic)
                }
                Err(generic) => {
                    return Err(FastPathError::Attach {
                        iface: iface.to_owned(),
                        native: Box::new(native),
                        generic: Box::new(generic),
                    });
                }
            },
        };
        let pinned = match &self.pins {
            Some(pins) => {
                let path = pins.link(iface, mode);
                let link = prog.take_link(link).map_err(prog_err(self.program))?;
                Some(pin_link(link, iface, &path)?)
            }
            None => None,
        };
        self.links.push(Attached { iface: iface.to_owned(), mode, _pinned: pinned });
        Ok(mode)
    }

    /// Puts this program on the link pinned at `path`; false when the link
    /// is gone (its interface was removed: ENOLINK).
    fn take_over(&mut self, path: &Path) -> Result<bool, FastPathError> {
        let link_err = |source| FastPathError::Link { path: path.to_owned(), source: Box::new(source) };
        let fd_link: FdLink = PinnedLink::from_pin(path).map_err(link_err)?.into();
        let link = XdpLink::try_from(fd_link).map_err(link_err)?;
        let prog: &mut Xdp =
            self.ebpf.program_mut(self.program).expect("loaded in FastPath::load").try_into().expect("an XDP program");
        match prog.attach_to_link(link) {
            Ok(_) => Ok(true),
            Err(ProgramError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOLINK) => Ok(false),
            Err(e) => Err(prog_err(self.program)(e)),
        }
    }

    /// Whether the maps were pinned by an agent before this one.
    pub fn is_adopted(&self) -> bool {
        self.adopted
    }

    /// Where the fast path is pinned, if it is.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pins.as_ref().map(Pins::dir)
    }

    /// Removes every pin (links first): once this value is dropped the
    /// program is detached and the maps freed. What a plain stop does; a
    /// handover or a crash leaves them.
    pub fn unpin(&mut self) -> Result<(), FastPathError> {
        if let Some(pins) = self.pins.take() {
            pins.remove()?;
        }
        Ok(())
    }

    /// Reads back what the agent before this one published: the table in
    /// use, and each VIP's meta and keys. What its last flip retired (the
    /// spare generation, the spare regions) is free to overwrite at once:
    /// no program that started before that flip is still running after a
    /// restart, which takes far longer than a grace period.
    fn read_published(&mut self) {
        let ctl: VipCtl = self.vip_ctl.read(0, 1)[0];
        let table: Vec<VipEntry> = self.vip_table.read(0, (VIP_TABLE_SIZE * 2) as usize);
        let published = adopt::read(&ctl, &table);
        self.generation = published.generation;
        for (index, v) in published.vips {
            let active = adopt::active_region(&v.meta, self.opts.max_ring_size);
            self.vips.insert(
                index,
                VipSlot { active_region: Some(active), meta: v.meta, regions: [None; 2], adopted: true },
            );
            for key in v.keys {
                self.keys.insert(key, index);
            }
        }
    }

    /// The VIP indexes the agent before this one published and nothing
    /// has staged since.
    pub fn adopted_vips(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.vips.iter().filter(|(_, s)| s.adopted).map(|(i, _)| *i).collect();
        v.sort_unstable();
        v
    }

    /// Records what backend `id` stands for (pinned fast paths only):
    /// written before any map names the id.
    pub fn set_record(&mut self, id: u32, record: BackendRecord) -> Result<(), FastPathError> {
        check_backend_id(id)?;
        match &mut self.records {
            Some(map) => map.set(id, record, 0).map_err(map_err(pins::BACKEND_RECORDS)),
            None => Ok(()),
        }
    }

    /// The records of the ids in use, by id.
    pub fn records(&self) -> Result<Vec<(u32, BackendRecord)>, FastPathError> {
        let Some(map) = &self.records else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for (id, r) in map.iter().enumerate() {
            let r = r.map_err(map_err(pins::BACKEND_RECORDS))?;
            if r.in_use != 0 {
                out.push((id as u32, r));
            }
        }
        Ok(out)
    }

    /// Backend `id`'s entry as the fast path reads it.
    pub fn backend(&self, id: u32) -> Result<Backend, FastPathError> {
        check_backend_id(id)?;
        let map: Array<_, Backend> = self.map(names::BACKENDS)?;
        map.get(&id, 0).map_err(map_err(names::BACKENDS))
    }

    pub fn set_iface(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<(), FastPathError> {
        if ifindex >= MAX_IFINDEX {
            return Err(FastPathError::IfindexTooLarge { ifindex, max: MAX_IFINDEX });
        }
        let mut map: Array<_, Iface> = self.map_mut(names::IFACES)?;
        map.set(ifindex, Iface { mac, flags: IFACE_F_ACTIVE }, 0).map_err(map_err(names::IFACES))
    }

    /// Writes the fast path's settings (`flow_sets` and `flow_cpus` are the
    /// loader's own).
    pub fn set_settings(&mut self, cfg: Settings) -> Result<(), FastPathError> {
        // Each field is one atomic store: the fast path reads them while
        // they change, and each is meaningful on its own.
        let at = |field: usize| std::mem::offset_of!(VipCtl, settings) + field;
        self.vip_ctl
            .store_release(at(std::mem::offset_of!(Settings, max_new_flows_per_sec)), cfg.max_new_flows_per_sec);
        self.vip_ctl.store_release(at(std::mem::offset_of!(Settings, tx_ifindex)), cfg.tx_ifindex);
        self.vip_ctl.store_release(
            at(std::mem::offset_of!(Settings, flow_sets)),
            lb_common::flow_sets(self.opts.flows_per_cpu),
        );
        self.vip_ctl.store_release(at(std::mem::offset_of!(Settings, flow_cpus)), self.flow_cpus);
        Ok(())
    }

    /// Writes backend `id`. Ids start at 1: a ring slot of 0 means none.
    pub fn set_backend(&mut self, id: u32, backend: Backend) -> Result<(), FastPathError> {
        check_backend_id(id)?;
        let mut map: Array<_, Backend> = self.map_mut(names::BACKENDS)?;
        map.set(id, backend, 0).map_err(map_err(names::BACKENDS))
    }

    /// Installs `ring` for VIP number `vip_index` under every key in `keys`
    /// and publishes it: [`stage_vip`](Self::stage_vip) + [`publish`](Self::publish).
    pub fn install_vip(
        &mut self,
        keys: &[VipKey],
        vip_index: u32,
        flags: u32,
        ring: &[u32],
    ) -> Result<(), FastPathError> {
        self.stage_vip(keys, vip_index, flags, ring, None)?;
        self.publish()
    }

    /// Writes `ring` into VIP `vip_index`'s spare region and records its
    /// keys; nothing changes for packets until [`publish`](Self::publish).
    /// Staging many VIPs and publishing once makes one flip of them all.
    ///
    /// `tag`, if given, names the ring's content (one tag, one ring, always):
    /// when the spare region already holds that ring (a VIP going back to
    /// the ring it had before the last flip, as when a backend fails and
    /// returns) nothing is copied and no grace period is waited for.
    pub fn stage_vip(
        &mut self,
        keys: &[VipKey],
        vip_index: u32,
        flags: u32,
        ring: &[u32],
        tag: Option<u64>,
    ) -> Result<(), FastPathError> {
        self.opts.check_vip_index(vip_index)?;
        self.opts.check_ring(ring)?;
        if self.keep_adopted(keys, vip_index, flags, ring, tag) {
            return Ok(());
        }
        let slot = self.vips.get(&vip_index);
        let active = slot.and_then(|v| v.active_region);
        let mut regions = slot.map_or([None; 2], |v| v.regions);
        let (spare, base) = spare_region(self.opts.max_ring_size, vip_index, active);
        if tag.is_none() || regions[spare] != tag {
            // The spare region was retired by an earlier flip; a program that
            // read the table before that flip may still be reading it.
            self.grace.wait();
            self.rings.write_words(base as usize, ring);
            regions[spare] = tag;
        }
        let meta = VipMeta { flags, vip_index, ring_base: base, ring_size: ring.len() as u32 };
        self.vips.insert(vip_index, VipSlot { active_region: active, meta, regions, adopted: false });
        self.keys.retain(|_, v| *v != vip_index);
        for key in keys {
            self.keys.insert(*key, vip_index);
        }
        self.dirty = true;
        Ok(())
    }

    /// The first stage of a VIP the agent before this one published: true
    /// (and nothing to publish) when what it published is what this stage
    /// would, so adopting a fast path flips nothing.
    fn keep_adopted(&mut self, keys: &[VipKey], vip_index: u32, flags: u32, ring: &[u32], tag: Option<u64>) -> bool {
        let Some(slot) = self.vips.get_mut(&vip_index).filter(|s| s.adopted) else { return false };
        slot.adopted = false;
        let meta = slot.meta;
        let mut published_keys: Vec<VipKey> =
            self.keys.iter().filter(|(_, i)| **i == vip_index).map(|(k, _)| *k).collect();
        published_keys.sort_by_key(|k| bytemuck::bytes_of(k).to_vec());
        let published = adopt::PublishedVip { meta, keys: published_keys };
        let ring_now = self.rings.read_words(meta.ring_base as usize, meta.ring_size as usize);
        if !adopt::unchanged(&published, &ring_now, keys, flags, ring) {
            return false;
        }
        let slot = self.vips.get_mut(&vip_index).expect("found above");
        if let Some(active) = slot.active_region {
            slot.regions[active as usize] = tag;
        }
        true
    }

    /// Writes `ring`, named by `tag`, into VIP `vip_index`'s spare region
    /// ahead of the [`stage_vip`](Self::stage_vip) that will name it, which
    /// then copies nothing. Nothing changes for packets, and nothing a
    /// publish would show. Does nothing (returns false) for a VIP never
    /// staged, or while a stage waits for its publish: the spare region is
    /// spoken for then, nor while the last flip's grace period runs: this
    /// is an optimization, not worth a wait.
    pub fn preload_vip(&mut self, vip_index: u32, ring: &[u32], tag: u64) -> Result<bool, FastPathError> {
        self.opts.check_ring(ring)?;
        if self.dirty || !self.grace.is_over() {
            return Ok(false);
        }
        let Some(slot) = self.vips.get_mut(&vip_index) else { return Ok(false) };
        let (spare, base) = spare_region(self.opts.max_ring_size, vip_index, slot.active_region);
        if slot.regions[spare] != Some(tag) {
            // Retired by the last flip, whose grace period is over: no
            // program reads it any more.
            self.rings.write_words(base as usize, ring);
            slot.regions[spare] = Some(tag);
        }
        Ok(true)
    }

    /// Removes VIP `vip_index` and its keys (at the next publish).
    pub fn unstage_vip(&mut self, vip_index: u32) {
        self.vips.remove(&vip_index);
        self.keys.retain(|_, v| *v != vip_index);
        self.dirty = true;
    }

    /// Writes the VIP table's spare generation from what is staged and
    /// flips to it with one atomic store: every VIP changed since the last
    /// publish switches at once, and a packet sees the whole old table or
    /// the whole new one.
    pub fn publish(&mut self) -> Result<(), FastPathError> {
        if !self.dirty {
            return Ok(());
        }
        let entries: Vec<(VipKey, VipMeta)> =
            self.keys.iter().filter_map(|(k, i)| self.vips.get(i).map(|v| (*k, v.meta))).collect();
        let (seed, table) =
            vip_table::place(&entries, VIP_TABLE_SIZE).ok_or(FastPathError::VipTableFull { keys: entries.len() })?;
        self.grace.wait();
        let spare = self.generation ^ 1;
        self.vip_table.write((spare * VIP_TABLE_SIZE) as usize, &table);
        let seed_offset = std::mem::offset_of!(VipCtl, seeds) + 4 * spare as usize;
        self.vip_ctl.store_release(seed_offset, seed);
        self.vip_ctl.store_release(std::mem::offset_of!(VipCtl, active), spare);
        self.generation = spare;
        self.grace.start();
        for v in self.vips.values_mut() {
            v.active_region = Some((v.meta.ring_base / self.opts.max_ring_size) % 2);
        }
        self.dirty = false;
        Ok(())
    }

    /// Removes a VIP and publishes.
    pub fn remove_vip(&mut self, vip_index: u32) -> Result<(), FastPathError> {
        self.unstage_vip(vip_index);
        self.publish()
    }

    /// Per-verdict and per-event counters, summed over CPUs. The Tx verdict
    /// is the sum of the backends' counters (the fast path counts a
    /// forwarded packet only at its backend).
    pub fn stats(&self) -> Result<Vec<(Stat, Counters)>, FastPathError> {
        let map: PerCpuArray<_, Counters> = self.map(names::STATS)?;
        let backends: PerCpuArray<_, Counters> = self.map(names::BACKEND_STATS)?;
        let mut tx = Counters::default();
        for c in backends.iter().filter_map(Result::ok) {
            let c = sum(&c);
            tx.packets += c.packets;
            tx.bytes += c.bytes;
        }
        Stat::ALL
            .iter()
            .map(|&s| {
                if s == Stat::Tx {
                    return Ok((s, tx));
                }
                Ok((s, sum(&map.get(&(s as u32), 0).map_err(map_err(names::STATS))?)))
            })
            .collect()
    }

    pub fn vip_counters(&self, vip_index: u32) -> Result<Counters, FastPathError> {
        let map: PerCpuArray<_, Counters> = self.map(names::VIP_STATS)?;
        Ok(sum(&map.get(&vip_index, 0).map_err(map_err(names::VIP_STATS))?))
    }

    pub fn backend_counters(&self, id: u32) -> Result<Counters, FastPathError> {
        let map: PerCpuArray<_, Counters> = self.map(names::BACKEND_STATS)?;
        Ok(sum(&map.get(&id, 0).map_err(map_err(names::BACKEND_STATS))?))
    }

    /// The backend recorded for `key`, if any CPU's flow table has it.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<u32>, FastPathError> {
        let table_key = key.table_key();
        let sets = lb_common::flow_sets(self.opts.flows_per_cpu);
        let map: Array<_, FlowSet> = self.map(names::FLOWS)?;
        let set = (table_key as u32) & (sets - 1);
        for cpu in 0..self.flow_cpus {
            let set = map.get(&(cpu * sets + set), 0).map_err(map_err(names::FLOWS))?;
            if let Some(way) = set.ways.iter().find(|w| w.key == table_key) {
                return Ok(Some(way.backend));
            }
        }
        Ok(None)
    }

    /// Flow-table entries per backend id (all CPUs). Reads the whole table:
    /// for status, never for anything per packet.
    pub fn flow_counts(&self) -> Result<StdHashMap<u32, u64>, FastPathError> {
        let map: Array<_, FlowSet> = self.map(names::FLOWS)?;
        let mut counts = StdHashMap::new();
        for set in map.iter().filter_map(Result::ok) {
            for way in set.ways {
                if way.key != 0 {
                    *counts.entry(way.backend).or_default() += 1;
                }
            }
        }
        Ok(counts)
    }

    fn map<'a, T>(&'a self, name: &'static str) -> Result<T, FastPathError>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map(name).ok_or(FastPathError::MissingMap { name })?;
        T::try_from(map).map_err(map_err(name))
    }

    fn map_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T, FastPathError>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or(FastPathError::MissingMap { name })?;
        T::try_from(map).map_err(map_err(name))
    }

    /// Where the program is attached.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, AttachMode)> {
        self.links.iter().map(|a| (a.iface.as_str(), a.mode))
    }
}

/// Opens the agent's record map pinned at `path`, or creates and pins it.
fn open_records(path: &Path) -> Result<Array<MapData, BackendRecord>, FastPathError> {
    let err = map_err(pins::BACKEND_RECORDS);
    if path.exists() {
        let data = MapData::from_pin(path).map_err(map_err(pins::BACKEND_RECORDS))?;
        return Array::try_from(aya::maps::Map::Array(data)).map_err(err);
    }
    let map = Array::<MapData, BackendRecord>::create(MAX_BACKENDS, 0).map_err(map_err(pins::BACKEND_RECORDS))?;
    map.pin(path)
        .map_err(|e| err(aya::maps::MapError::PinError { name: Some(pins::BACKEND_RECORDS.into()), error: e }))?;
    // Pinning consumed the handle; the pin is the map now.
    let data = MapData::from_pin(path).map_err(map_err(pins::BACKEND_RECORDS))?;
    Array::try_from(aya::maps::Map::Array(data)).map_err(map_err(pins::BACKEND_RECORDS))
}

/// Pins `link` (attached to `iface`) at `path` and returns it, held open.
fn pin_link(link: XdpLink, iface: &str, path: &Path) -> Result<XdpLink, FastPathError> {
    let link_err = |source| FastPathError::Link { path: path.to_owned(), source: Box::new(source) };
    let fd_link = FdLink::try_from(link).map_err(link_err)?;
    let pinned = fd_link.pin(path).map_err(|source| FastPathError::PinLink {
        iface: iface.to_owned(),
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    XdpLink::try_from(FdLink::from(pinned)).map_err(link_err)
}

fn sum(values: &PerCpuValues<Counters>) -> Counters {
    values
        .iter()
        .fold(Counters::default(), |acc, c| Counters { packets: acc.packets + c.packets, bytes: acc.bytes + c.bytes })
}

/// Index of `iface` in the calling thread's network namespace
/// ([`crate::netdev::index`]).
pub fn ifindex(iface: &str) -> Result<u32, FastPathError> {
    crate::netdev::index(iface).map_err(|_| FastPathError::UnknownInterface { name: iface.to_owned() })
}

/// MAC of `iface` in the calling thread's network namespace
/// ([`crate::netdev::mac`]).
pub fn interface_mac(iface: &str) -> Result<[u8; 6], FastPathError> {
    crate::netdev::mac(iface).map_err(|source| FastPathError::InterfaceMac { name: iface.to_owned(), source })
}

/// A trivial XDP_PASS program attached to one interface, for as long as this
/// value lives. veth delivers frames sent with `XDP_TX` only when the peer
/// has an XDP program of its own (without one, GRO takes the first 256 frames
/// and then every send fails), so labs and tests put this on the peer of the
/// director's veth.
pub struct PeerPass {
    _ebpf: Ebpf,
}

impl std::fmt::Debug for PeerPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerPass")
    }
}

impl PeerPass {
    /// Attaches in native mode to `iface` in the calling thread's namespace.
    pub fn attach(iface: &str) -> Result<Self, FastPathError> {
        const NAME: &str = names::PEER_PASS;
        if EBPF_OBJECT.is_empty() {
            return Err(FastPathError::NoObject);
        }
        let ifindex = ifindex(iface)?;
        // Small maps: this copy of the object only runs the pass program.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::RINGS, 1)
            .map_max_entries(names::FLOWS, 64)
            .load(EBPF_OBJECT)
            .map_err(load_err)?;
        let prog: &mut Xdp = ebpf
            .program_mut(NAME)
            .ok_or_else(|| prog_err(NAME)(ProgramError::NotLoaded))?
            .try_into()
            .map_err(prog_err(NAME))?;
        prog.load().map_err(prog_err(NAME))?;
        prog.attach_to_if_index(ifindex, XdpMode::Driver).map_err(prog_err(NAME))?;
        Ok(Self { _ebpf: ebpf })
    }
}
