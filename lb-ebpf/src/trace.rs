//! The packet trace (`lb run --trace`): an aya-log record for each packet
//! the filter matches, saying what the fast path decided and why. Only
//! `lb_xdp_traced` writes it; `lb_xdp` has no trace code at all.
//!
//! The filter is a read-only global fixed at load, which the verifier reads
//! as a constant. aya-log's own switch (`AYA_LOG_LEVEL`, another such
//! global) is on only in a traced load.

use aya_ebpf::{Global, programs::XdpContext};
use aya_log_ebpf::info;
use lb_common::{
    Stat,
    trace::{Filter, Lookup},
};

#[unsafe(no_mangle)]
static TRACE_FILTER: Global<Filter> = Global::new(Filter::ANY);

#[inline(always)]
pub fn filter() -> Filter {
    TRACE_FILTER.load()
}

/// What one record says. Addresses as in a VIP key, ports as on the wire.
///
/// Laid out by hand, 8-aligned: LLVM merges the stores that fill it into
/// wider ones (`allows-misaligned-mem-access`), and the verifier rejects a
/// stack store that is not aligned to its size.
#[repr(C, align(8))]
pub struct Record {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub lookup: Lookup,
    pub vip_index: u32,
    pub backend: u32,
    /// The backend's MAC; zero when there is no backend.
    pub mac: [u8; 6],
    pub reason: Stat,
}

/// The agent parses these records back (`lb_userspace::trace`): the two
/// formats change together. Not inlined: the record is built on a stack
/// frame of its own, not on the balancer's.
#[inline(never)]
pub fn packet(ctx: &XdpContext, r: &Record) {
    let src: [u8; 16] = bytemuck::cast(r.src);
    let dst: [u8; 16] = bytemuck::cast(r.dst);
    info!(
        ctx,
        "src={:i} sport={} dst={:i} dport={} proto={} lookup={} vip={} backend={} mac={:mac} reason={}",
        src,
        u16::from_be(r.sport),
        dst,
        u16::from_be(r.dport),
        r.proto,
        r.lookup as u8,
        r.vip_index,
        r.backend,
        r.mac,
        r.reason as u32
    );
}

/// A record for a packet that did not parse: only its verdict is known, and
/// no VIP, so it is recorded only when the filter takes every packet.
#[inline(never)]
pub fn unparsed(ctx: &XdpContext, reason: Stat) {
    if filter() == Filter::ANY {
        info!(ctx, "reason={}", reason as u32);
    }
}
