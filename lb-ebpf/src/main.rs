//! The XDP fast path: direct-routing (DR) forwarding with weighted Maglev.
//!
//! Per packet: parse Ethernet (one optional 802.1Q/802.1ad tag), IPv4/IPv6
//! and TCP/UDP; find the VIP; pick the backend from the per-CPU flow table or
//! the VIP's Maglev ring; rewrite the MAC addresses and transmit. L3 and L4
//! bytes are never touched, so backends see the client's packet as sent.
//! Everything that is not for a VIP is passed to the kernel byte for byte,
//! malformed or not: only a broken packet for a VIP is dropped here.
//!
//! With the `bench` feature the object also holds the bench programs; the
//! agent's object is built without it.
#![no_std]
#![no_main]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "bench")]
mod bench_flows;
mod packet;
mod peer;
mod trace;

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, xdp_action},
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_coarse_ns, bpf_redirect},
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{
    BACKEND_F_ALIVE, Backend, Counters, DEFAULT_FLOWS_PER_CPU, DEFAULT_RING_SIZE, FLOW_WAYS, FloodState, FlowEntry,
    FlowSet, IFACE_F_ACTIVE, Iface, MAX_BACKENDS, MAX_IFINDEX, MAX_VIPS, RING_RETRIES, Settings, Stat,
    V4_MAPPED_PREFIX, VIP_F_L3_HASH, VIP_F_SRC_HASH, VIP_KIND_FRAGMENTS, VIP_KIND_SERVICE, VIP_PROBES, VIP_TABLE_SIZE,
    VipCtl, VipEntry, VipMeta, hash, trace::Lookup,
};
use packet::{Error, Family, Packet, Parsed};

/// Two generations of an open-addressing table of VIP keys, probed with
/// plain array reads: no kernel hashing on the packet path. The agent
/// writes the inactive generation and flips `VIP_CTL.active`.
#[map]
static VIP_TABLE: Array<VipEntry> = Array::with_max_entries(VIP_TABLE_SIZE * 2, BPF_F_MMAPABLE);
#[map]
static VIP_CTL: Array<VipCtl> = Array::with_max_entries(1, BPF_F_MMAPABLE);
/// All rings, back to back; the loader sizes it. Each VIP owns two regions
/// and the agent flips `VipMeta::ring_base` between them. Mappable, so the
/// agent writes a ring with one memcpy. Slot `i` is `RINGS[i / 2][i % 2]`:
/// array elements are 8-byte aligned, and two 4-byte slots per element keep
/// the ring dense in memory and in the agent's mapping.
#[map]
static RINGS: Array<[u32; 2]> = Array::with_max_entries(DEFAULT_RING_SIZE, BPF_F_MMAPABLE);
#[map]
static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);
/// The flow table: per CPU, sets of `FLOW_WAYS` (flow key -> backend)
/// entries, indexed by the key's low bits, least recently used way
/// replaced. A kernel LRU hash map costs a helper call, a hash and a bucket
/// walk per packet, and list surgery per insert; this is one cache line
/// read with plain array access, and an insert is one store.
///
/// One plain array holding every CPU's sets back to back (CPU `c`'s set `s`
/// is element `c * flow_sets + s`; the loader sizes it and writes
/// `flow_sets` and `flow_cpus`) rather than a per-CPU array: the kernel
/// reaches a per-CPU array's element through a pointer of its own, so a hit
/// there is two dependent random reads (the pointer, then the set), here
/// one. Mappable for the alignment, not for mapping: the kernel then puts
/// element 0 on a page boundary, where a plain array's elements follow the
/// map's header with only 8-byte alignment and a set could straddle two
/// cache lines. A set is one cache line and a region a whole number of
/// sets, so every set and every CPU's region starts on a cache line and no
/// two CPUs write one line. Each CPU reads and writes only its own region
/// and XDP runs with preemption off: no locks.
#[map]
pub(crate) static FLOWS: Array<FlowSet> =
    Array::with_max_entries(DEFAULT_FLOWS_PER_CPU / FLOW_WAYS as u32, BPF_F_MMAPABLE);
#[map]
static IFACES: Array<Iface> = Array::with_max_entries(MAX_IFINDEX, 0);
#[map]
static FLOOD: PerCpuArray<FloodState> = PerCpuArray::with_max_entries(1, 0);
#[map]
static STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(Stat::COUNT, 0);
#[map]
static VIP_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_VIPS, 0);
#[map]
static BACKEND_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    balance::<false>(ctx)
}

/// `lb_xdp` that also writes the packet trace (`trace`); the agent loads
/// it instead of `lb_xdp` when asked to trace. Two programs rather than a
/// switch in one: a trace statement in `lb_xdp`, even one the verifier
/// removes, keeps what it would record alive across the fast path, and in
/// BPF's four callee-saved registers that costs spills on every packet.
#[xdp]
pub fn lb_xdp_traced(ctx: XdpContext) -> u32 {
    balance::<true>(ctx)
}

#[inline(always)]
fn balance<const TRACE: bool>(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    // Every field is set on every path: an enum with per-variant payloads
    // lets LLVM spill undefined registers, which the verifier rejects.
    let mut out = Outcome {
        action: xdp_action::XDP_PASS,
        reason: Stat::PassNotVip,
        vip_index: NONE,
        backend: NONE,
        lookup: Lookup::Skipped,
    };
    // Written out rather than as a method on Outcome: in this form LLVM
    // gives `lb_xdp` about a hundred instructions fewer.
    match try_lb_xdp(&ctx, &mut out) {
        Ok(()) => {}
        Err(Error::Malformed) => out.reason = Stat::PassMalformed,
        Err(Error::NoBackend { vip_index }) => {
            out.action = xdp_action::XDP_DROP;
            out.reason = Stat::DropNoBackend;
            out.vip_index = vip_index;
            // The ring was consulted and named no live backend.
            out.lookup = Lookup::Miss;
        }
    }
    if TRACE {
        trace_packet(XdpContext::new(ctx.ctx), out.reason, out.vip_index, out.backend, out.lookup);
    }
    // Forwarded packets count once, at their backend: the agent adds up a
    // VIP's (and the Tx verdict's) from its backends. VIP_STATS holds only
    // what was dropped for a VIP.
    if out.backend != NONE {
        count(&BACKEND_STATS, out.backend, len);
    } else {
        if out.vip_index != NONE {
            count(&VIP_STATS, out.vip_index, len);
        }
        count(&STATS, out.reason as u32, len);
    }
    out.action
}

const NONE: u32 = u32::MAX;

struct Outcome {
    action: u32,
    reason: Stat,
    vip_index: u32,
    backend: u32,
    /// For the trace: where the backend came from. Never read in `lb_xdp`,
    /// so the compiler drops it there.
    lookup: Lookup,
}

#[inline(always)]
fn count(map: &PerCpuArray<Counters>, index: u32, bytes: u64) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array; XDP runs
        // with preemption off, so nothing else writes it concurrently.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}

#[inline(always)]
fn event(stat: Stat) {
    count(&STATS, stat as u32, 0);
}

#[inline(always)]
fn try_lb_xdp(ctx: &XdpContext, out: &mut Outcome) -> Result<(), Error> {
    // One copy of the path per family: IPv4 addresses stay scalars in
    // registers instead of IPv4-mapped arrays spilled to the stack.
    match packet::parse(ctx)? {
        Parsed::NotIp => {
            out.reason = Stat::PassNotIp;
            Ok(())
        }
        Parsed::Other => Ok(()),
        Parsed::V4(p) => forward(ctx, &p, out),
        Parsed::V6(p) => forward(ctx, &p, out),
    }
}

/// A trace record of the packet that got this outcome, if the trace's
/// filter wants it. The headers are parsed again (the MAC rewrite left
/// them as they were), in a frame of its own: the balancer's stays as in
/// `lb_xdp`.
#[inline(never)]
fn trace_packet(ctx: XdpContext, reason: Stat, vip_index: u32, backend: u32, lookup: Lookup) {
    match packet::parse(&ctx) {
        Ok(Parsed::V4(p)) => trace_parsed(&ctx, &p, reason, vip_index, backend, lookup),
        Ok(Parsed::V6(p)) => trace_parsed(&ctx, &p, reason, vip_index, backend, lookup),
        Ok(Parsed::NotIp | Parsed::Other) => {}
        Err(_) => trace::unparsed(&ctx, reason),
    }
}

#[inline(always)]
fn trace_parsed<A: Addr>(ctx: &XdpContext, p: &Packet<A>, reason: Stat, vip_index: u32, backend: u32, lookup: Lookup) {
    let dst = p.dst.mapped();
    if !trace::filter().matches(&dst, p.dport, p.proto) {
        return;
    }
    // NONE is no index of BACKENDS.
    let mac = BACKENDS.get(backend).map_or([0; 6], |b| b.mac);
    trace::packet(
        ctx,
        &trace::Record {
            src: p.src.mapped(),
            dst,
            sport: p.sport,
            dport: p.dport,
            proto: p.proto,
            lookup,
            vip_index,
            backend,
            mac,
            reason,
        },
    );
}

#[inline(always)]
fn forward<A: Addr>(ctx: &XdpContext, p: &Packet<A>, out: &mut Outcome) -> Result<(), Error> {
    let Some(ctl) = VIP_CTL.get(0) else {
        return Ok(());
    };
    if p.malformed {
        return judge_malformed(ctl, p, out);
    }
    let cfg = &ctl.settings;
    // Established flows of 5-tuple VIPs (nearly all packets) are found by
    // their flow key before the VIP table is read: the key covers the
    // VIP's address, port and protocol, the entry names its VIP, and the
    // agent marks a removed VIP's backends dead, so a hit is this flow of a
    // configured VIP (two flows sharing a 64-bit key aside). The key is the
    // director's own; the ring's digest, the contract between directors, is
    // computed only for flows the table does not know.
    let key5 = nonzero(A::flow_key(p.src, p.dst, p.sport, p.dport, p.proto));
    let mut probed = 0;
    if !p.syn
        && !p.fragment
        && !p.icmp_error
        && let Some(flows) = Flows::new(key5, cfg)
    {
        if let Some(e) = flows.get(key5) {
            if let Some(b) = live_backend(e.backend, e.vip_index) {
                out.lookup = Lookup::Hit;
                return transmit(ctx, cfg, e.backend, e.vip_index, b, out);
            }
            event(Stat::FlowStale);
        }
        probed = key5;
    }
    let Some(meta) = classify(ctl, p) else {
        return Ok(());
    };
    // Persistence and L3 hashing key the table by their ring digest: every
    // flow of a client (or every fragment) is one entry.
    let (key, digest) = if meta.flags & VIP_F_SRC_HASH != 0 {
        let d = nonzero(A::digest_src(p.src));
        (d, d)
    } else if meta.flags & VIP_F_L3_HASH != 0 || p.fragment {
        let d = nonzero(A::digest_l3(p.src, p.dst, p.proto));
        (d, d)
    } else if A::KEY_IS_DIGEST {
        (key5, key5)
    } else {
        (key5, A::digest_5tuple(p.src, p.dst, p.sport, p.dport, p.proto))
    };
    let Some(flows) = Flows::new(key, cfg) else {
        return Ok(());
    };
    // A SYN starts a new connection; a key probed above missed already.
    let skip_table = p.syn || key == probed;
    let (id, backend, lookup) = pick_backend(&meta, key, digest, skip_table, &flows, cfg.max_new_flows_per_sec)?;
    out.lookup = lookup;
    transmit(ctx, cfg, id, meta.vip_index, backend, out)
}

/// 0 marks an empty way; a key of 0 (one in 2^64) becomes 1.
#[inline(always)]
fn nonzero(digest: u64) -> u64 {
    if digest == 0 { 1 } else { digest }
}

/// DR: the backend's MAC as destination, the interface's as source, out of
/// the interface the packet came in on (or the configured one).
#[inline(always)]
fn transmit(
    ctx: &XdpContext,
    cfg: &Settings,
    backend_id: u32,
    vip_index: u32,
    backend: &Backend,
    out: &mut Outcome,
) -> Result<(), Error> {
    let out_if = if cfg.tx_ifindex != 0 { cfg.tx_ifindex } else { ctx.ingress_ifindex() as u32 };
    let iface = match IFACES.get(out_if) {
        Some(i) if i.flags & IFACE_F_ACTIVE != 0 => i,
        _ => {
            out.reason = Stat::PassNoIface;
            return Ok(());
        }
    };
    packet::rewrite_macs(ctx, &backend.mac, &iface.mac)?;
    out.action = if cfg.tx_ifindex != 0 {
        // SAFETY: a plain helper call; the verdict it returns is XDP_REDIRECT
        // or XDP_ABORTED, both valid XDP return codes.
        unsafe { bpf_redirect(cfg.tx_ifindex, 0) as u32 }
    } else {
        xdp_action::XDP_TX
    };
    out.reason = Stat::Tx;
    out.vip_index = vip_index;
    out.backend = backend_id;
    Ok(())
}

/// An address family's keys and hashes. IPv4 VIP keys are stored
/// IPv4-mapped, and the IPv4 digests equal those of the mapped addresses,
/// so both families share one VIP table and one ring contract.
trait Addr: Family {
    /// Whether `key` (16 bytes) is this address.
    fn is(self, key: &[u32; 4]) -> bool;
    /// The address as a VIP key holds it (IPv4-mapped for IPv4).
    fn mapped(self) -> [u32; 4];
    fn vip_slot(self, port: u16, proto: u8, kind: u8, seed: u32) -> u32;
    fn digest_5tuple(src: Self, dst: Self, sport: u16, dport: u16, proto: u8) -> u64;
    /// The flow table's key of a 5-tuple (`FlowKey::table_key`).
    fn flow_key(src: Self, dst: Self, sport: u16, dport: u16, proto: u8) -> u64;
    /// Whether `flow_key` is `digest_5tuple` (made non-zero): then a miss
    /// need not hash the 5-tuple again.
    const KEY_IS_DIGEST: bool;
    fn digest_l3(src: Self, dst: Self, proto: u8) -> u64;
    fn digest_src(src: Self) -> u64;
}

impl Addr for u32 {
    const KEY_IS_DIGEST: bool = false;

    #[inline(always)]
    fn is(self, key: &[u32; 4]) -> bool {
        key[3] == self && key[2] == V4_MAPPED_PREFIX[2] && key[1] == 0 && key[0] == 0
    }

    #[inline(always)]
    fn mapped(self) -> [u32; 4] {
        lb_common::v4_mapped(self)
    }

    #[inline(always)]
    fn vip_slot(self, port: u16, proto: u8, kind: u8, seed: u32) -> u32 {
        hash::vip_slot_v4(self, port, proto, kind, seed, VIP_TABLE_SIZE)
    }

    #[inline(always)]
    fn digest_5tuple(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u64 {
        hash::digest_5tuple_v4(src, dst, sport, dport, proto)
    }

    #[inline(always)]
    fn flow_key(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u64 {
        hash::flow_key_v4(src, dst, sport, dport, proto)
    }

    #[inline(always)]
    fn digest_l3(src: u32, dst: u32, proto: u8) -> u64 {
        hash::digest_l3_v4(src, dst, proto)
    }

    #[inline(always)]
    fn digest_src(src: u32) -> u64 {
        hash::digest_src_v4(src)
    }
}

impl Addr for [u32; 4] {
    const KEY_IS_DIGEST: bool = true;

    #[inline(always)]
    fn is(self, key: &[u32; 4]) -> bool {
        *key == self
    }

    #[inline(always)]
    fn mapped(self) -> [u32; 4] {
        self
    }

    #[inline(always)]
    fn vip_slot(self, port: u16, proto: u8, kind: u8, seed: u32) -> u32 {
        hash::vip_slot(&self, port, proto, kind, seed, VIP_TABLE_SIZE)
    }

    #[inline(always)]
    fn digest_5tuple(src: Self, dst: Self, sport: u16, dport: u16, proto: u8) -> u64 {
        hash::digest_5tuple(&src, &dst, sport, dport, proto)
    }

    /// IPv6 keys the table by the digest itself.
    #[inline(always)]
    fn flow_key(src: Self, dst: Self, sport: u16, dport: u16, proto: u8) -> u64 {
        hash::digest_5tuple(&src, &dst, sport, dport, proto)
    }

    #[inline(always)]
    fn digest_l3(src: Self, dst: Self, proto: u8) -> u64 {
        hash::digest_l3(&src, &dst, proto)
    }

    #[inline(always)]
    fn digest_src(src: Self) -> u64 {
        hash::digest_src(&src)
    }
}

/// Probes the active generation of the VIP table from the key's home slot.
/// Linear probing over a table rebuilt whole: an empty slot ends the search.
#[inline(always)]
fn lookup_vip<A: Addr>(ctl: &VipCtl, addr: A, port: u16, proto: u8, kind: u8) -> Option<VipMeta> {
    let generation = ctl.active & 1;
    let seed = if generation == 0 { ctl.seeds[0] } else { ctl.seeds[1] };
    let home = addr.vip_slot(port, proto, kind, seed);
    let base = generation * VIP_TABLE_SIZE;
    for i in 0..VIP_PROBES {
        let e = VIP_TABLE.get(base + ((home + i) & (VIP_TABLE_SIZE - 1)))?;
        if e.key.proto == 0 {
            return None;
        }
        if addr.is(&e.key.addr) && e.key.port == port && e.key.proto == proto && e.key.kind == kind {
            return Some(e.meta);
        }
    }
    None
}

/// Finds the VIP. Fragments and ICMP errors are keyed by the flow they
/// belong to, so they reach that flow's backend.
#[inline(always)]
fn classify<A: Addr>(ctl: &VipCtl, p: &Packet<A>) -> Option<VipMeta> {
    if p.fragment {
        // A non-first fragment has no ports: only the (address, protocol)
        // entry of the VIP that takes fragments can claim it.
        let meta = lookup_vip(ctl, p.dst, 0, p.proto, VIP_KIND_FRAGMENTS)?;
        event(Stat::Fragment);
        Some(meta)
    } else {
        let meta = lookup_vip(ctl, p.dst, p.dport, p.proto, VIP_KIND_SERVICE)
            .or_else(|| lookup_vip(ctl, p.dst, 0, p.proto, VIP_KIND_SERVICE))?;
        if p.icmp_error {
            event(Stat::IcmpError);
        }
        Some(meta)
    }
}

/// A packet with broken headers is dropped only when it is a VIP's: the
/// kernel judges everything else, as it would without the balancer (the
/// director's own SSH, BGP, VRRP and health-check traffic among it). It is
/// a VIP's when its (address, port, protocol) names a service, port as read
/// (0 when the transport header is cut before it), or its (address,
/// protocol) names an all-ports service or the one taking fragments. So a
/// transport header cut before the ports, to a port-specific VIP that takes
/// no fragments, is passed: the VIP table has no key by address alone.
#[inline(always)]
fn judge_malformed<A: Addr>(ctl: &VipCtl, p: &Packet<A>, out: &mut Outcome) -> Result<(), Error> {
    out.reason = Stat::PassMalformed;
    let meta = lookup_vip(ctl, p.dst, p.dport, p.proto, VIP_KIND_SERVICE)
        .or_else(|| lookup_vip(ctl, p.dst, 0, p.proto, VIP_KIND_SERVICE))
        .or_else(|| lookup_vip(ctl, p.dst, 0, p.proto, VIP_KIND_FRAGMENTS));
    if let Some(meta) = meta {
        out.action = xdp_action::XDP_DROP;
        out.reason = Stat::DropMalformed;
        out.vip_index = meta.vip_index;
    }
    Ok(())
}

/// Backend `id` if it may receive this VIP's packets.
#[inline(always)]
fn live_backend(id: u32, vip_index: u32) -> Option<&'static Backend> {
    match BACKENDS.get(id) {
        Some(b) if b.flags & BACKEND_F_ALIVE != 0 && b.vip_index == vip_index => Some(b),
        _ => None,
    }
}

/// Flow table first (by `key`, unless `skip_table`), then the ring (by
/// `digest`). A TCP SYN skips the table (as Katran does): a new connection
/// that reuses a 5-tuple follows the current ring.
#[inline(always)]
fn pick_backend(
    meta: &VipMeta,
    key: u64,
    digest: u64,
    skip_table: bool,
    flows: &Flows,
    max_new_flows_per_sec: u32,
) -> Result<(u32, &'static Backend, Lookup), Error> {
    if !skip_table && let Some(e) = flows.get(key) {
        if let Some(b) = live_backend(e.backend, meta.vip_index) {
            return Ok((e.backend, b, Lookup::Hit));
        }
        event(Stat::FlowStale);
    }
    event(Stat::FlowMiss);
    let no_backend = Error::NoBackend { vip_index: meta.vip_index };
    if meta.ring_size == 0 {
        return Err(no_backend);
    }
    let mut id = ring_at(meta, hash::ring_slot(digest, meta.ring_size));
    if id == 0 {
        return Err(no_backend);
    }
    let mut found = live_backend(id, meta.vip_index);
    // A failed backend is marked dead before the ring without it is built;
    // until that ring is published its slots send new flows elsewhere.
    let mut attempt = 1;
    while found.is_none() && attempt <= RING_RETRIES {
        id = ring_at(meta, hash::ring_retry_slot(digest, attempt, meta.ring_size));
        found = live_backend(id, meta.vip_index);
        attempt += 1;
    }
    let Some(backend) = found else {
        return Err(no_backend);
    };
    if attempt > 1 {
        event(Stat::RingRetry);
    }
    if flood_guard_allows_insert(max_new_flows_per_sec) {
        flows.insert(key, id, meta.vip_index);
    } else {
        event(Stat::FloodSkip);
    }
    Ok((id, backend, Lookup::Miss))
}

/// The backend id in slot `slot` of the VIP's active ring (0: none).
#[inline(always)]
fn ring_at(meta: &VipMeta, slot: u32) -> u32 {
    let slot = meta.ring_base.wrapping_add(slot);
    match RINGS.get(slot / 2) {
        Some(pair) => pair[(slot % 2) as usize],
        None => 0,
    }
}

/// This CPU's set of the flow table for one key. The ways of a set are
/// kept in recency order, most recent first: a hit moves its way to the
/// front (nothing to write for a flow already there, the steady case), an
/// insert takes the front and drops the last way, the least recently used.
struct Flows {
    /// Null when this CPU has no region in the table.
    set: *mut FlowSet,
}

impl Flows {
    /// `None` when the table is not configured (`flow_sets` 0): the caller
    /// passes the packet. A CPU beyond the configured count (the loader
    /// sizes the table for every possible CPU, so only a stale or foreign
    /// setting gets here) treats every packet as a table miss and inserts
    /// nothing: forwarding still works through the ring, and no CPU ever
    /// writes another's region.
    #[inline(always)]
    fn new(key: u64, cfg: &Settings) -> Option<Self> {
        let sets = cfg.flow_sets;
        if sets == 0 {
            return None;
        }
        // SAFETY: the helper has no preconditions.
        let cpu = unsafe { bpf_get_smp_processor_id() };
        let set = if cpu < cfg.flow_cpus {
            // The lookup refuses an index beyond the table, whatever the
            // settings say; the loader checks that the product fits a u32.
            FLOWS.get_ptr_mut(cpu.wrapping_mul(sets).wrapping_add((key as u32) & (sets - 1)))
        } else {
            None
        };
        Some(Self { set: set.unwrap_or(core::ptr::null_mut()) })
    }

    #[inline(always)]
    fn get(&self, key: u64) -> Option<FlowEntry> {
        if self.set.is_null() {
            return None;
        }
        // SAFETY: a set in this CPU's region of the table, which no other
        // CPU touches; XDP runs with preemption off, so only this program
        // on this CPU touches it now.
        let set = unsafe { &mut *self.set };
        let ways = &mut set.ways;
        if ways[0].key == key {
            return Some(ways[0]);
        }
        for k in 1..FLOW_WAYS {
            if ways[k].key == key {
                let hit = ways[k];
                shift_down(ways, k);
                ways[0] = hit;
                return Some(hit);
            }
        }
        None
    }

    /// Records the flow at the front. A way already holding the key (a
    /// stale or re-hashed flow) is reused, so a key is never in a set twice.
    #[inline(always)]
    fn insert(&self, key: u64, backend: u32, vip_index: u32) {
        if self.set.is_null() {
            return;
        }
        // SAFETY: as in `get`.
        let set = unsafe { &mut *self.set };
        let ways = &mut set.ways;
        let last = ways.iter().position(|w| w.key == key).unwrap_or(FLOW_WAYS - 1);
        shift_down(ways, last);
        ways[0] = FlowEntry { key, backend, vip_index };
    }
}

const _: () = assert!(FLOW_WAYS == 4, "shift_down is unrolled for four ways");

/// Moves ways `0..upto` one place back, dropping way `upto`. Written out as
/// whole-entry copies: the loop form is recognised as a `memmove`, which BPF
/// has no inline expansion for, so it became a call to a byte-by-byte copy
/// loop (about 400 instructions for three ways, on every insert).
#[inline(always)]
fn shift_down(ways: &mut [FlowEntry; FLOW_WAYS], upto: usize) {
    if upto >= 3 {
        ways[3] = ways[2];
    }
    if upto >= 2 {
        ways[2] = ways[1];
    }
    if upto >= 1 {
        ways[1] = ways[0];
    }
}

/// Above the configured rate of inserts per second on this CPU, stop filling
/// the flow table: a flood of new flows would otherwise evict every
/// established flow. The ring gives the same backend without the table.
#[inline(always)]
fn flood_guard_allows_insert(limit: u32) -> bool {
    if limit == 0 {
        return true;
    }
    let Some(st) = FLOOD.get_ptr_mut(0) else {
        return true;
    };
    // The coarse clock (jiffies resolution) is plenty for a one-second
    // window and far cheaper than reading the TSC, which in a VM may trap.
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: this CPU's slot of a per-CPU array; XDP runs with preemption
    // off, so no one else writes it concurrently.
    let st = unsafe { &mut *st };
    if now.wrapping_sub(st.window_start_ns) >= 1_000_000_000 {
        st.window_start_ns = now;
        st.inserts = 0;
    }
    if st.inserts >= u64::from(limit) {
        return false;
    }
    st.inserts += 1;
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; this only
    // satisfies no_std.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
