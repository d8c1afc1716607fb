//! Small programs for `cargo xtask bench`: floors to measure the fast path
//! against, a traffic generator and a sink. They share the object with the
//! balancer so one build serves both; the agent never loads them.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

/// [0]: ifindex for `bench_redirect`; [1]: flows for `bench_gen` (source
/// ports cycled through), 0 = leave the frame alone.
#[map]
static BENCH_CFG: Array<u32> = Array::with_max_entries(2, 0);
/// [0]: packets seen by `bench_sink`; [1]: frames sent by `bench_gen`.
#[map]
static BENCH_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

#[inline(always)]
fn bump(index: u32) -> u64 {
    match BENCH_COUNT.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a per-CPU array; XDP runs with
        // preemption off, so nothing else writes it concurrently.
        Some(c) => unsafe {
            *c += 1;
            *c
        },
        None => 0,
    }
}

#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The floor for BPF_PROG_TEST_RUN: the cheapest program that transmits.
#[xdp]
pub fn bench_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// The forwarding floor of the veth testbed: redirect every packet.
#[xdp]
pub fn bench_redirect(_ctx: XdpContext) -> u32 {
    let ifindex = BENCH_CFG.get(0).copied().unwrap_or(0);
    // SAFETY: a plain helper call returning an XDP verdict.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}

/// The sink: count and drop.
#[xdp]
pub fn bench_sink(_ctx: XdpContext) -> u32 {
    bump(0);
    xdp_action::XDP_DROP
}

/// Generator, run with BPF_PROG_TEST_RUN live frames on the generator's
/// veth: cycle the UDP source port of an Ethernet/IPv4/UDP frame through
/// `BENCH_CFG[1]` flows and transmit. The UDP checksum is zero (none).
#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let flows = BENCH_CFG.get(1).copied().unwrap_or(0);
    let n = bump(1);
    if flows != 0 {
        const SPORT_OFF: usize = 14 + 20;
        let start = ctx.data();
        if start + SPORT_OFF + 2 <= ctx.data_end() {
            let port = (1024 + (n % u64::from(flows)) as u16).to_be();
            // SAFETY: the check above proves the two bytes are inside the
            // frame; write_unaligned makes no alignment assumption.
            unsafe { core::ptr::write_unaligned((start + SPORT_OFF) as *mut u16, port) };
        }
    }
    xdp_action::XDP_TX
}
