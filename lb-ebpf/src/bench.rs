//! Small programs for `cargo xtask bench`: floors to measure the fast path
//! against, a traffic generator and a sink. Built only with the `bench`
//! feature, into the object the bench and the tests load: `bench_miss`
//! tail-calls the balancer, so they share its object and maps.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::XdpContext,
};

/// [0]: ifindex for `bench_redirect`; [1]: flows for `bench_gen` (source
/// ports cycled through), 0 = leave the frame alone.
#[map]
static BENCH_CFG: Array<u32> = Array::with_max_entries(2, 0);
/// [0]: packets seen by `bench_sink`; [1]: frames sent by `bench_gen`.
#[map]
static BENCH_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// [0]: `lb_xdp`, for `bench_miss` to chain into.
#[map]
pub(crate) static BENCH_TAIL: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Source port of an Ethernet/IPv4 (no options) TCP or UDP frame.
const SPORT_OFF: usize = 14 + 20;

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

/// The floor a forwarder that reads its frames starts from: swap the
/// Ethernet addresses (xdp-bench's `swap-macs`), then redirect. The bare
/// redirect never touches the frame; this pays the first touch of its data.
#[xdp]
pub fn bench_redirect_swap(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 12 <= ctx.data_end() {
        let macs = start as *mut [u8; 6];
        // SAFETY: the check above proves bytes 0..12 lie inside the frame;
        // the unaligned reads and writes make no alignment assumption.
        unsafe {
            let (dst, src) = (core::ptr::read_unaligned(macs), core::ptr::read_unaligned(macs.add(1)));
            core::ptr::write_unaligned(macs, src);
            core::ptr::write_unaligned(macs.add(1), dst);
        }
    }
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
        set_sport(&ctx, (1024 + (n % u64::from(flows)) as u16).to_be());
    }
    xdp_action::XDP_TX
}

#[inline(always)]
fn set_sport(ctx: &XdpContext, port: u16) {
    let start = ctx.data();
    if start + SPORT_OFF + 2 <= ctx.data_end() {
        // SAFETY: the check above proves the two bytes are inside the frame;
        // write_unaligned makes no alignment assumption.
        unsafe { core::ptr::write_unaligned((start + SPORT_OFF) as *mut u16, port) };
    }
}

/// A new flow every packet for BPF_PROG_TEST_RUN, whose repeat loop reuses
/// one buffer: give the frame a new source port, then run the balancer on it
/// by tail call. `bench_mutate_tx` is the same minus the balancer, so the
/// difference is the balancer's cost on a miss.
#[xdp]
pub fn bench_miss(ctx: XdpContext) -> u32 {
    new_flow(&ctx, bump(1));
    // SAFETY: a tail call either jumps to lb_xdp (and never returns) or
    // returns because the slot is empty; both leave the context valid.
    unsafe { BENCH_TAIL.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

#[xdp]
pub fn bench_mutate_tx(ctx: XdpContext) -> u32 {
    new_flow(&ctx, bump(1));
    xdp_action::XDP_TX
}

/// Packet `n` gets source port `n mod 2^16` and the low half of its source
/// address from `n / 2^16`: billions of flows before one repeats, far more
/// than any flow table holds, so every packet misses.
#[inline(always)]
fn new_flow(ctx: &XdpContext, n: u64) {
    const SADDR_LOW_OFF: usize = 14 + 12 + 2;
    let start = ctx.data();
    if start + SPORT_OFF + 2 <= ctx.data_end() {
        // SAFETY: the check above proves both 2-byte fields (at 28 and 34)
        // lie inside the frame; write_unaligned makes no alignment assumption.
        unsafe {
            core::ptr::write_unaligned((start + SADDR_LOW_OFF) as *mut u16, ((n >> 16) as u16).to_be());
            core::ptr::write_unaligned((start + SPORT_OFF) as *mut u16, (n as u16).to_be());
        }
    }
}
