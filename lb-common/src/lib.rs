//! Types shared by the XDP program (`lb-ebpf`) and the agent (`lb-userspace`).
//!
//! Every map key and value is `#[repr(C)]` with explicit padding fields; the
//! `bytemuck` derives prove there is no hidden padding, and the size asserts
//! keep the kernel's and userspace's view of each map identical.
#![no_std]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(test)]
extern crate std;

pub mod bench;
pub mod hash;
pub mod trace;

use bytemuck::{Pod, Zeroable};

/// Names of the maps, programs and globals in the eBPF object.
pub mod names {
    pub const PROGRAM: &str = "lb_xdp";
    pub const VIP_TABLE: &str = "VIP_TABLE";
    pub const VIP_CTL: &str = "VIP_CTL";
    pub const RINGS: &str = "RINGS";
    pub const BACKENDS: &str = "BACKENDS";
    pub const FLOWS: &str = "FLOWS";
    pub const IFACES: &str = "IFACES";
    pub const FLOOD: &str = "FLOOD";
    pub const STATS: &str = "STATS";
    pub const VIP_STATS: &str = "VIP_STATS";
    pub const BACKEND_STATS: &str = "BACKEND_STATS";
    /// `PROGRAM` plus the packet trace (`trace`), and its filter, a global.
    pub const PROGRAM_TRACED: &str = "lb_xdp_traced";
    pub const TRACE_FILTER: &str = "TRACE_FILTER";
    /// XDP_PASS, for the peer of a veth the balancer transmits on
    /// (`fast_path::PeerPass` in the agent).
    pub const PEER_PASS: &str = "peer_pass";
}

/// The maps' layout, for the agent's pins in bpffs (`<pin_dir>/v<N>-...`):
/// bump it by hand whenever a map's meaning changes without its sizes
/// changing (a field reused, a flag moved). Size changes are caught without
/// it: the agent hashes every key and value size and every capacity into the
/// directory's name too.
pub const LAYOUT_VERSION: u32 = 3;

/// Capacity of the VIP table; `VipMeta::vip_index` is below this.
pub const MAX_VIPS: u32 = 1024;
/// Slots in one generation of the VIP table (a power of two): at most
/// 2 x MAX_VIPS keys (a service key and a fragments key each), so the table
/// is never more than half full.
pub const VIP_TABLE_SIZE: u32 = 4096;
/// Slots the fast path probes from a key's home slot; the agent picks a
/// seed under which every key lands within this many.
pub const VIP_PROBES: u32 = 4;
/// Capacity of the backend array. Index 0 is reserved: a ring slot holding 0 means "none".
/// Room for 1000 VIPs of 100 backends; per CPU its counters take 2 MiB.
pub const MAX_BACKENDS: u32 = 131072;
/// Default Maglev ring size (prime), as Katran and the Maglev paper use.
pub const DEFAULT_RING_SIZE: u32 = 65537;
/// Other ring slots a new flow tries when its slot names a dead backend
/// (see `hash::ring_retry_slot`): with a quarter of the slots dead, 1 flow in
/// 4^5 finds no live one and is dropped until the new ring is published.
pub const RING_RETRIES: u32 = 4;
/// Default flow-table entries per CPU.
pub const DEFAULT_FLOWS_PER_CPU: u32 = 65536;
/// Ways per set of the flow table: one set is one 64-byte cache line.
pub const FLOW_WAYS: usize = 4;
/// Default flood guard: new flows per second per CPU above which the fast
/// path stops inserting into the flow table (Katran uses 125,000).
pub const DEFAULT_FLOOD_NEW_FLOWS_PER_SEC: u32 = 125_000;
/// `IFACES` is an array indexed by ifindex (an array lookup costs no hashing
/// on the packet path); interfaces with a larger ifindex cannot be used.
pub const MAX_IFINDEX: u32 = 65536;

/// First three words of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), as
/// they lie in memory. IPv4 addresses are stored in this form so one key type
/// serves both families without the two ever colliding.
pub const V4_MAPPED_PREFIX: [u32; 3] = [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff])];

/// An IP address as 16 bytes in network order, read as four native words.
#[inline(always)]
pub const fn v4_mapped(addr_ne: u32) -> [u32; 4] {
    [V4_MAPPED_PREFIX[0], V4_MAPPED_PREFIX[1], V4_MAPPED_PREFIX[2], addr_ne]
}

/// Whether `addr` is an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
pub const fn is_v4_mapped(addr: &[u32; 4]) -> bool {
    addr[0] == V4_MAPPED_PREFIX[0] && addr[1] == V4_MAPPED_PREFIX[1] && addr[2] == V4_MAPPED_PREFIX[2]
}

/// Protocol numbers the fast path understands.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// Key of `VIPS`: a virtual service. `port` is in network byte order; 0
/// matches every port of (`addr`, `proto`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct VipKey {
    pub addr: [u32; 4],
    pub port: u16,
    pub proto: u8,
    /// `VIP_KIND_SERVICE`, or `VIP_KIND_FRAGMENTS` for the entry that says
    /// which service of (`addr`, `proto`) receives IP fragments: a non-first
    /// fragment carries no port, so it cannot be matched by port.
    pub kind: u8,
}
pub const VIP_KIND_SERVICE: u8 = 0;
pub const VIP_KIND_FRAGMENTS: u8 = 1;
const _: () = assert!(size_of::<VipKey>() == 20);

/// `VipMeta::flags`: hash only the client's source address (persistence).
pub const VIP_F_SRC_HASH: u32 = 1 << 0;
/// `VipMeta::flags`: hash addresses and protocol, never ports, so that every
/// fragment of a datagram and every unfragmented packet of a flow agree.
pub const VIP_F_L3_HASH: u32 = 1 << 1;

/// A VIP's service parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct VipMeta {
    pub flags: u32,
    /// Index into `VIP_STATS`, and the owner tag in `Backend::vip_index`.
    pub vip_index: u32,
    /// First slot of this VIP's ring in `RINGS`.
    pub ring_base: u32,
    /// Number of slots (a prime); 0 means the VIP has no ring yet (drop).
    pub ring_size: u32,
}
const _: () = assert!(size_of::<VipMeta>() == 16);

/// `Backend::flags`: the backend may receive packets. Cleared when a backend
/// is removed, so flows recorded for it are re-hashed instead of black-holed.
pub const BACKEND_F_ALIVE: u16 = 1 << 0;

/// Value of `BACKENDS`, indexed by backend id (ids are per VIP and backend).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Backend {
    pub mac: [u8; 6],
    pub flags: u16,
    /// The VIP this id belongs to: a recorded flow whose backend id now
    /// belongs to another VIP is re-hashed.
    pub vip_index: u32,
}
const _: () = assert!(size_of::<Backend>() == 12);

/// The agent's record of what a backend id stands for, in its own pinned
/// array (never read by the XDP program): a flow-table entry names its
/// backend by id, so an agent that adopts a running fast path must give
/// each backend the id it had. Addresses are IPv4-mapped like `VipKey`'s.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BackendRecord {
    pub vip_addr: [u8; 16],
    pub backend_addr: [u8; 16],
    pub vip_port: u16,
    pub vip_proto: u8,
    /// 1 when the id is in use; 0 for a free id.
    pub in_use: u8,
    /// The VIP's index (`VipMeta::vip_index`).
    pub vip_index: u32,
}
const _: () = assert!(size_of::<BackendRecord>() == 40);

/// One slot of `VIP_TABLE`: an open-addressing hash table that the agent
/// builds whole and the fast path probes with plain array reads (no kernel
/// hashing per packet). An all-zero slot is empty (protocol 0 is no VIP's).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct VipEntry {
    pub key: VipKey,
    pub meta: VipMeta,
    pub _pad: u32,
}
const _: () = assert!(size_of::<VipEntry>() == 40);

/// The one element of `VIP_CTL`. `VIP_TABLE` holds two generations of
/// `VIP_TABLE_SIZE` slots; the agent writes the inactive one, then flips
/// `active` with one atomic store, so the fast path sees one whole table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct VipCtl {
    /// 0 or 1: the generation in use.
    pub active: u32,
    pub _pad: u32,
    /// The `hash::vip_slot` seed of each generation.
    pub seeds: [u32; 2],
    /// The agent's settings: one array read per packet gives the table
    /// generation and the settings together.
    pub settings: Settings,
}
const _: () = assert!(size_of::<VipCtl>() == 32);

/// A flow as the agent and the tests name it; the ring slot comes from its
/// 64-bit digest (`FlowKey::digest`), the flow table is keyed by
/// `FlowKey::table_key`. Ports are as on the wire; for L3-hashed VIPs and
/// fragments they are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl FlowKey {
    pub const fn digest(&self) -> u64 {
        hash::digest_5tuple(&self.src, &self.dst, self.sport, self.dport, self.proto)
    }

    /// The flow table's key, as the XDP program computes it: the cheaper
    /// `hash::flow_key_v4` for IPv4, the digest for IPv6.
    pub const fn table_key(&self) -> u64 {
        let key = if is_v4_mapped(&self.src) && is_v4_mapped(&self.dst) {
            hash::flow_key_v4(self.src[3], self.dst[3], self.sport, self.dport, self.proto)
        } else {
            self.digest()
        };
        if key == 0 { 1 } else { key }
    }
}

/// One remembered flow: its table key (0 = empty way), backend, and the VIP it
/// was recorded for (an established flow is found before the VIP table is
/// read; the backend must still belong to that VIP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowEntry {
    pub key: u64,
    pub backend: u32,
    pub vip_index: u32,
}
const _: () = assert!(size_of::<FlowEntry>() == 16);

/// Element of the `FLOWS` array: a set of `FLOW_WAYS` flows, most recently
/// used first. One set is one cache line, so every CPU's region of the
/// table (a whole number of sets) starts on a cache line too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowSet {
    pub ways: [FlowEntry; FLOW_WAYS],
}
const _: () = assert!(size_of::<FlowSet>() == 64);

/// Sets per CPU for a flow table of (at least) `flows` entries per CPU: a
/// power of two, so the set index is a mask of the digest.
pub const fn flow_sets(flows: u32) -> u32 {
    let sets = flows.div_ceil(FLOW_WAYS as u32);
    if sets <= 1 { 1 } else { sets.next_power_of_two() }
}

/// Elements of `FLOWS`: `sets` sets for each of `cpus` CPUs, back to back
/// (CPU `c`'s set `s` is element `c * sets + s`). `None` if that does not
/// fit a map's `u32` capacity.
pub const fn flow_table_len(sets: u32, cpus: u32) -> Option<u32> {
    sets.checked_mul(cpus)
}

/// Value of `IFACES`, indexed by ifindex: the MAC the director transmits
/// from. `flags` is `IFACE_F_ACTIVE` once the agent configured it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Iface {
    pub mac: [u8; 6],
    pub flags: u16,
}
pub const IFACE_F_ACTIVE: u16 = 1;
const _: () = assert!(size_of::<Iface>() == 8);

/// The agent's settings for the fast path, in `VipCtl::settings`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Settings {
    /// Flood guard: at most this many flow-table inserts per second per CPU;
    /// 0 disables the guard.
    pub max_new_flows_per_sec: u32,
    /// 0: transmit back out of the ingress interface (`XDP_TX`, one-armed
    /// DR). Otherwise redirect to this ifindex (two-armed DR: clients on one
    /// NIC, backends on another).
    pub tx_ifindex: u32,
    /// Sets per CPU in `FLOWS` (a power of two; the loader's `flow_sets`).
    /// The agent always writes it; 0 (never configured) passes everything.
    pub flow_sets: u32,
    /// CPUs `FLOWS` has a region for (the loader's count of possible CPUs).
    /// A CPU at or beyond it finds no flow and records none.
    pub flow_cpus: u32,
}
const _: () = assert!(size_of::<Settings>() == 16);

impl Settings {
    /// The agent's settings; the loader fills in `flow_sets` and `flow_cpus`.
    pub const fn new(max_new_flows_per_sec: u32, tx_ifindex: u32) -> Self {
        Self { max_new_flows_per_sec, tx_ifindex, flow_sets: 0, flow_cpus: 0 }
    }
}

/// Value of the one-element per-CPU `FLOOD` array: the guard's window.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FloodState {
    pub window_start_ns: u64,
    pub inserts: u64,
}
const _: () = assert!(size_of::<FloodState>() == 16);

/// Packets and bytes; the value of the per-CPU counter arrays.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<Counters>() == 16);

/// Index into `STATS`: why the program returned what it returned, plus a few
/// events on the way. Every packet counts in exactly one verdict reason.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Verdict XDP_PASS: not IPv4/IPv6.
    PassNotIp = 0,
    /// Verdict XDP_PASS: IP, but not for any VIP.
    PassNotVip = 1,
    /// Verdict XDP_PASS: the ingress interface is not configured.
    PassNoIface = 2,
    /// Verdict XDP_TX (or redirect): forwarded to a backend. Not counted
    /// here per packet: the agent adds up the backends' counters, which
    /// saves a counter update on every forwarded packet.
    Tx = 3,
    /// Verdict XDP_DROP: the VIP has no live backend.
    DropNoBackend = 4,
    /// Verdict XDP_DROP: headers truncated or inconsistent, in a packet for
    /// a VIP.
    DropMalformed = 5,
    /// Event: flow not in the table (or a TCP SYN), chosen from the ring.
    /// (Hits are not counted: one counter less per packet; they are the
    /// forwarded packets that were not misses.)
    FlowMiss = 6,
    /// Event: recorded backend was removed; flow re-hashed.
    FlowStale = 7,
    /// Event: flood guard skipped a flow-table insert.
    FloodSkip = 8,
    /// Event: an IP fragment was forwarded (hashed on addresses only).
    Fragment = 9,
    /// Event: an ICMP error about a VIP flow was forwarded to its backend.
    IcmpError = 10,
    /// Event: a new flow's ring slot named a backend already marked dead
    /// (the ring without it not yet published); another slot was taken.
    RingRetry = 11,
    /// Verdict XDP_PASS: headers truncated or inconsistent, in a packet not
    /// known to be for a VIP: the kernel judges it.
    PassMalformed = 12,
}

impl Stat {
    pub const COUNT: u32 = 13;
    pub const ALL: [Stat; Self::COUNT as usize] = [
        Stat::PassNotIp,
        Stat::PassNotVip,
        Stat::PassNoIface,
        Stat::Tx,
        Stat::DropNoBackend,
        Stat::DropMalformed,
        Stat::FlowMiss,
        Stat::FlowStale,
        Stat::FloodSkip,
        Stat::Fragment,
        Stat::IcmpError,
        Stat::RingRetry,
        Stat::PassMalformed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Stat::PassNotIp => "pass_not_ip",
            Stat::PassNotVip => "pass_not_vip",
            Stat::PassNoIface => "pass_no_iface",
            Stat::Tx => "tx",
            Stat::DropNoBackend => "drop_no_backend",
            Stat::DropMalformed => "drop_malformed",
            Stat::FlowMiss => "flow_miss",
            Stat::FlowStale => "flow_stale",
            Stat::FloodSkip => "flood_skip",
            Stat::Fragment => "fragment",
            Stat::IcmpError => "icmp_error",
            Stat::RingRetry => "ring_retry",
            Stat::PassMalformed => "pass_malformed",
        }
    }
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: each type is Pod per bytemuck's derive, which proves it has no padding
    // and every bit pattern is valid, which is what aya::Pod requires.
    unsafe impl aya::Pod for VipKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipMeta {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Backend {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowSet {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipCtl {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Iface {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Settings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FloodState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Counters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BackendRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::trace::Filter {}
}
