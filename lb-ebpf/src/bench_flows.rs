//! Bench programs for the flow-table curves: each test-run repetition gets
//! the next flow of a pseudo-random order over N flows
//! (`lb_common::bench`), then the floor transmits it, the balancer forwards
//! it, or the kernel LRU map the balancer is compared with looks it up.
//! Built only with the `bench` feature.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_smp_processor_id,
    macros::{map, xdp},
    maps::{LruPerCpuHashMap, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{
    FLOW_WAYS, FlowEntry, FlowSet,
    bench::{FlowSequence, LruFlowKey, LruFlowValue, flow_index, flow_source},
    hash, v4_mapped,
};

use crate::{
    FLOWS,
    bench::BENCH_TAIL,
    packet::{self, Parsed},
};

#[map]
static BENCH_FLOW_SEQ: PerCpuArray<FlowSequence> = PerCpuArray::with_max_entries(1, 0);
/// One entry here: the bench sets the size it measures before it loads the
/// object, and no other user of the object needs more.
#[map]
static BENCH_LRU: LruPerCpuHashMap<LruFlowKey, LruFlowValue> = LruPerCpuHashMap::with_max_entries(1, 0);

/// Source address and port of an Ethernet/IPv4 (no options) frame.
const SADDR_OFF: usize = 14 + 12;
const SPORT_OFF: usize = 14 + 20;
/// The MACs `bench_flows_lru` writes: a backend's (recorded per flow) and the director's.
const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xB0, 1];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xD1];

/// Gives the frame the sequence's next flow; the sequence is this CPU's.
#[inline(always)]
fn next_flow(ctx: &XdpContext) -> Option<&'static mut FlowSequence> {
    let seq = BENCH_FLOW_SEQ.get_ptr_mut(0)?;
    // SAFETY: this CPU's element of a per-CPU array; XDP runs with
    // preemption off, so nothing else touches it while this program runs.
    let seq = unsafe { &mut *seq };
    let index = flow_index(seq.next, seq.mask, seq.shift);
    seq.next += 1;
    let (saddr, sport) = flow_source(seq.space, index);
    let start = ctx.data();
    if start + SPORT_OFF + 2 <= ctx.data_end() {
        // SAFETY: the check above proves bytes 26..36 lie inside the frame;
        // write_unaligned makes no alignment assumption.
        unsafe {
            core::ptr::write_unaligned((start + SADDR_OFF) as *mut [u8; 4], saddr);
            core::ptr::write_unaligned((start + SPORT_OFF) as *mut u16, sport.to_be());
        }
    }
    Some(seq)
}

/// The floor: the flow rewrite alone.
#[xdp]
pub fn bench_flows_tx(ctx: XdpContext) -> u32 {
    next_flow(&ctx);
    xdp_action::XDP_TX
}

/// The balancer on the sequence's flows.
#[xdp]
pub fn bench_flows_lb(ctx: XdpContext) -> u32 {
    next_flow(&ctx);
    // SAFETY: a tail call either jumps to lb_xdp (and never returns) or
    // returns because the slot is empty; both leave the context valid.
    unsafe { BENCH_TAIL.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// What an XDP balancer built on the kernel's LRU hash does per packet:
/// parse, look the 5-tuple up, record it on a miss (backend choice left
/// out: it only favours the LRU map), rewrite the MACs, transmit.
#[xdp]
pub fn bench_flows_lru(ctx: XdpContext) -> u32 {
    let Some(seq) = next_flow(&ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    let Ok(Parsed::V4(p)) = packet::parse(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let key = LruFlowKey {
        src: v4_mapped(p.src),
        dst: v4_mapped(p.dst),
        sport: p.sport,
        dport: p.dport,
        proto: p.proto,
        _pad0: 0,
        _pad1: 0,
    };
    // SAFETY: the value is copied out at once; a concurrent delete of this
    // key (there is none in the bench) could at worst give a stale MAC.
    let mac = match unsafe { BENCH_LRU.get(key) } {
        Some(v) => {
            seq.lru_hits += 1;
            v.mac
        }
        None => {
            seq.lru_misses += 1;
            let value = LruFlowValue { backend: 1, mac: BACKEND_MAC, _pad0: 0, _pad1: 0 };
            if BENCH_LRU.insert(key, value, 0).is_err() {
                return xdp_action::XDP_ABORTED;
            }
            BACKEND_MAC
        }
    };
    if packet::rewrite_macs(&ctx, &mac, &DIRECTOR_MAC).is_err() {
        return xdp_action::XDP_ABORTED;
    }
    xdp_action::XDP_TX
}

/// The flow table as a per-CPU array: what `FLOWS` would be with the
/// kernel's pointer per element and CPU. Sized by the bench (sets).
#[map]
static BENCH_PERCPU_FLOWS: PerCpuArray<FlowSet> = PerCpuArray::with_max_entries(1, 0);

/// The flow table's set lookup in `BENCH_PERCPU_FLOWS`.
#[xdp]
pub fn bench_flows_percpu(ctx: XdpContext) -> u32 {
    probe_table::<false>(&ctx)
}

/// The same lookup in the balancer's `FLOWS`, every CPU's sets back to back.
#[xdp]
pub fn bench_flows_flat(ctx: XdpContext) -> u32 {
    probe_table::<true>(&ctx)
}

/// Next flow, parse, the flow key, one set's four ways compared (a miss
/// overwrites one), MAC rewrite, `XDP_TX`: the two programs differ only in
/// where the set lies.
#[inline(always)]
fn probe_table<const FLAT: bool>(ctx: &XdpContext) -> u32 {
    let Some(seq) = next_flow(ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    let Ok(Parsed::V4(p)) = packet::parse(ctx) else {
        return xdp_action::XDP_PASS;
    };
    let key = hash::flow_key_v4(p.src, p.dst, p.sport, p.dport, p.proto) | 1;
    let sets = seq.sets;
    if sets == 0 {
        return xdp_action::XDP_ABORTED;
    }
    let index = (key as u32) & (sets - 1);
    let set = if FLAT {
        // SAFETY: the helper has no preconditions.
        let cpu = unsafe { bpf_get_smp_processor_id() };
        FLOWS.get_ptr_mut(cpu.wrapping_mul(sets).wrapping_add(index))
    } else {
        BENCH_PERCPU_FLOWS.get_ptr_mut(index)
    };
    let Some(set) = set else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: this CPU's set (its own element of a per-CPU array, or its own
    // range of the plain one); XDP runs with preemption off.
    let ways = unsafe { &mut (*set).ways };
    if ways.iter().any(|w| w.key == key) {
        seq.lru_hits += 1;
    } else {
        seq.lru_misses += 1;
        ways[(key >> 32) as usize & (FLOW_WAYS - 1)] = FlowEntry { key, backend: 1, vip_index: 0 };
    }
    if packet::rewrite_macs(ctx, &BACKEND_MAC, &DIRECTOR_MAC).is_err() {
        return xdp_action::XDP_ABORTED;
    }
    xdp_action::XDP_TX
}
