//! Part `flows`: how a packet's cost grows with the number of active flows,
//! next to the kernel's `BPF_MAP_TYPE_LRU_PERCPU_HASH` keyed by the same
//! 5-tuple (what most XDP balancers keep their flows in), and with the
//! number of VIPs, under BPF_PROG_TEST_RUN on one pinned CPU.
//!
//! The test run replays one frame; the bench programs (lb-ebpf's
//! `bench_flows`) give each repetition the next flow of a pseudo-random
//! order over N flows, so the flows' entries are visited as production
//! traffic visits them, out of cache once they outgrow it. The floor does
//! that rewrite and transmits; the balancer and the LRU program do the same
//! rewrite first, so each differs from the floor by its own work only.
//!
//! The LRU map gets N entries; the balancer's table `TABLE_HEADROOM` x N
//! (the keys' figures), and N exactly (a second series), for the reason
//! given at `TABLE_HEADROOM`. One pass over the N flows in the measured
//! order leaves a table in the steady state of that order: the tables the
//! misses reach get that pass before the hits of every round, the others
//! once. The misses send flows never seen, so every one replaces an entry
//! of a full table. Figures are the kernel's per-repetition averages,
//! medians over rounds; ratios are taken within a round and their median
//! reported.

use std::{
    net::Ipv4Addr,
    os::fd::{AsFd as _, AsRawFd as _},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, PerCpuArray, PerCpuValues, ProgramArray},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::{
    BACKEND_F_ALIVE, Backend, FLOW_WAYS, FlowSet, Settings, Stat, VIP_KIND_SERVICE, VIP_TABLE_SIZE, VipCtl, VipEntry,
    VipKey,
    bench::{FlowSequence, names as bench},
    hash, names, proto,
};
use lb_userspace::{
    fast_path::{EBPF_BENCH_OBJECT, FastPath, FastPathOptions},
    maglev,
};
use serde_json::{Map as JsonMap, Value};

use super::{
    median,
    sys::{self, CpuTimes},
    udp_frame,
};
use crate::packet::addr16;

/// Active flows per CPU: label for the keys, and log2 of the count.
pub const SIZES: [(&str, u32); 4] = [("1k", 10), ("64k", 16), ("1m", 20), ("4m", 22)];
/// VIPs in the VIP table for the VIP curve.
pub const VIP_COUNTS: [u32; 3] = [1, 100, 1000];

/// Keys this part writes: always present in the JSON, null when the part did not run.
pub const KEYS: &[&str] = &[
    "flows_floor_ns_1k",
    "flows_floor_ns_64k",
    "flows_floor_ns_1m",
    "flows_floor_ns_4m",
    "fastpath_hit_ns_1k",
    "fastpath_hit_ns_64k",
    "fastpath_hit_ns_1m",
    "fastpath_hit_ns_4m",
    "fastpath_miss_ns_1k",
    "fastpath_miss_ns_64k",
    "fastpath_miss_ns_1m",
    "fastpath_miss_ns_4m",
    "lrumap_hit_ns_1k",
    "lrumap_hit_ns_64k",
    "lrumap_hit_ns_1m",
    "lrumap_hit_ns_4m",
    "lrumap_miss_ns_1k",
    "lrumap_miss_ns_64k",
    "lrumap_miss_ns_1m",
    "lrumap_miss_ns_4m",
    "fastpath_hit_fraction_1k",
    "fastpath_hit_fraction_64k",
    "fastpath_hit_fraction_1m",
    "fastpath_hit_fraction_4m",
    "lrumap_hit_fraction_1k",
    "lrumap_hit_fraction_64k",
    "lrumap_hit_fraction_1m",
    "lrumap_hit_fraction_4m",
    "flow_bytes_per_flow",
    "lrumap_bytes_per_flow",
    "lrumap_bytes_per_entry",
    "fastpath_hit_ns_1k_table1x",
    "fastpath_hit_fraction_1k_table1x",
    "fastpath_hit_ns_64k_table1x",
    "fastpath_hit_fraction_64k_table1x",
    "fastpath_hit_ns_1m_table1x",
    "fastpath_hit_fraction_1m_table1x",
    "fastpath_hit_ns_4m_table1x",
    "fastpath_hit_fraction_4m_table1x",
    "flow_bytes_per_active_flow",
    "flowtable_percpu_ns_1k",
    "flowtable_flat_ns_1k",
    "flowtable_percpu_ns_64k",
    "flowtable_flat_ns_64k",
    "flowtable_percpu_ns_1m",
    "flowtable_flat_ns_1m",
    "flowtable_percpu_ns_4m",
    "flowtable_flat_ns_4m",
    "fastpath_hit_ns_vips_1",
    "fastpath_hit_ns_vips_100",
    "fastpath_hit_ns_vips_1000",
    "fastpath_miss_ns_vips_1",
    "fastpath_miss_ns_vips_100",
    "fastpath_miss_ns_vips_1000",
    "vip_probe_len_1",
    "vip_probe_len_100",
    "vip_probe_len_1000",
    "target_flows_vs_lrumap_pass",
    "target_flows_hit_1m_pass",
];

/// The balancer's table is sized `flows_per_cpu = TABLE_HEADROOM x N` for
/// N active flows: its sets of four ways fill unevenly (a set's share of N
/// random flows is Poisson with mean 4 at 1x), and a set asked for more
/// flows than it has ways keeps only the latest. At 1x, visiting every flow
/// in turn, only the flows of sets that got at most four find their entry
/// (43%; the 1x series shows it); at 4x, 98%.
const TABLE_HEADROOM: u32 = 4;

/// Goals: at every size our hit and miss at most this share of the LRU
/// map's, and at 1M flows a hit within this many floors.
const MAX_VS_LRU: f64 = 0.5;
const HIT_1M_MAX_VS_FLOOR: f64 = 3.0;

const XDP_TX: u32 = 3;
/// Test runs arrive on loopback.
const LO_IFINDEX: u32 = 1;
/// The director's MAC; `bench_flows_lru` writes the same.
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xD1];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xC1];
/// The bench programs overwrite the source of every frame.
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const VIP_PORT: u16 = 80;
const BACKENDS: u32 = 16;
/// Source spaces (second octet) of the flows that are filled and hit, and
/// of those sent once each as misses: disjoint.
const HIT_SPACE: u8 = 1;
const MISS_SPACE: u8 = 2;
/// A miss sequence over 2^32 flows: none repeats within a run.
const MISS_BITS: u32 = 32;
/// Ring size for the VIP curve: a thousand VIPs of 65537 slots in two
/// regions each would take half a gigabyte, and the ring's size does not
/// change the VIP table's probe.
const VIP_RING_SIZE: u32 = 251;

#[derive(Clone, Debug)]
pub struct Options {
    pub rounds: usize,
    /// Repetitions of each timed call, at least (a hit call covers every
    /// flow at least once whatever this says).
    pub repeat: u32,
}

/// Median over rounds of the kernel's per-repetition figure, and the
/// slowest round over the fastest.
#[derive(Clone, Copy, Debug)]
pub struct Figure {
    pub ns: f64,
    pub spread: f64,
}

impl Figure {
    fn of(samples: &[f64]) -> Self {
        let max = samples.iter().copied().fold(f64::NAN, f64::max);
        let min = samples.iter().copied().fold(f64::NAN, f64::min);
        Self { ns: median(samples), spread: max / min }
    }
}

/// One flow count.
#[derive(Clone, Debug)]
pub struct Point {
    pub label: &'static str,
    pub flows: u32,
    pub floor: Figure,
    pub hit: Figure,
    pub miss: Figure,
    pub lru_hit: Figure,
    pub lru_miss: Figure,
    /// Within-round ratios, medians.
    pub hit_vs_floor: f64,
    pub hit_vs_lru: f64,
    pub miss_vs_lru: f64,
    /// Share of the "hit" repetitions that found their flow in the table.
    pub hit_fraction: f64,
    pub lru_hit_fraction: f64,
    /// The same with the table sized for exactly N flows (`flows_per_cpu = N`).
    pub hit1: Figure,
    pub hit_fraction1: f64,
    /// The set lookup alone in a per-CPU array and in a plain array of
    /// every CPU's sets (as `FLOWS`).
    pub percpu: Figure,
    pub flat: Figure,
    /// Kernel-reported memory (`memlock` in fdinfo) per flow of capacity:
    /// the flow table's per entry and CPU, the LRU map's per entry (an
    /// entry holds a value for every possible CPU).
    pub flow_bytes: f64,
    /// Per active flow at `TABLE_HEADROOM`.
    pub flow_bytes_active: f64,
    pub lru_bytes: f64,
    pub cpus: usize,
}

/// One VIP count.
#[derive(Clone, Debug)]
pub struct VipPoint {
    pub vips: u32,
    pub hit: Figure,
    pub miss: Figure,
    /// Mean probe length over the table's keys, and the measured VIP's.
    pub probe_mean: f64,
    pub probe_measured: u32,
}

#[derive(Debug, Default)]
pub struct Results {
    pub points: Vec<Point>,
    pub vips: Vec<VipPoint>,
    pub failed_checks: Vec<String>,
    pub other_cpu_busy: Vec<f64>,
    pub run_delay: Vec<f64>,
}

/// What the caller folds into the run's verdicts.
pub struct Verdict {
    pub all_pass: bool,
    pub spread: f64,
    pub noisy: bool,
    /// Figures that could not be measured: the run must fail.
    pub missing: Vec<String>,
}

/// A program of `ebpf`, loaded on first use.
fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the bench object (built without `bench_flows`?)"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("loading {name}"))?;
    }
    Ok(prog)
}

/// One test run of `name` over `frame`: the kernel's time per repetition, in ns.
fn call(ebpf: &mut Ebpf, name: &str, frame: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let prog = program(ebpf, name)?;
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.repeat = repeat;
    let res = prog.test_run(opts).with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
    if res.return_value != XDP_TX {
        bail!("{name}: verdict {}, want XDP_TX ({XDP_TX})", res.return_value);
    }
    Ok(res.duration.as_nanos() as f64)
}

/// Sets the flow sequence of every CPU of `ebpf`'s object.
fn set_sequence(ebpf: &mut Ebpf, seq: FlowSequence) -> anyhow::Result<()> {
    let map = ebpf.map_mut(bench::FLOW_SEQUENCE).context("the flow sequence map")?;
    let mut arr: PerCpuArray<_, FlowSequence> = PerCpuArray::try_from(map)?;
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    arr.set(0, PerCpuValues::try_from(vec![seq; cpus])?, 0).context("setting the flow sequence")?;
    Ok(())
}

/// The flow sequence, summed over CPUs (only the pinned one runs).
fn sequence(ebpf: &Ebpf) -> anyhow::Result<FlowSequence> {
    let map = ebpf.map(bench::FLOW_SEQUENCE).context("the flow sequence map")?;
    let arr: PerCpuArray<_, FlowSequence> = PerCpuArray::try_from(map)?;
    let values = arr.get(&0, 0).context("reading the flow sequence")?;
    Ok(values.iter().fold(FlowSequence::default(), |a, s| FlowSequence {
        lru_hits: a.lru_hits + s.lru_hits,
        lru_misses: a.lru_misses + s.lru_misses,
        ..a
    }))
}

/// `memlock:` of a map, from the kernel's fdinfo.
fn memlock(map: &Map) -> anyhow::Result<u64> {
    let data = match map {
        Map::PerCpuLruHashMap(d) | Map::PerCpuArray(d) | Map::Array(d) => d,
        other => bail!("memlock of an unexpected map kind {other:?}"),
    };
    let fd = data.fd().as_fd().as_raw_fd();
    let path = format!("/proc/self/fdinfo/{fd}");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .with_context(|| format!("no memlock line in {path}"))?
        .trim()
        .parse()
        .with_context(|| format!("memlock in {path}"))
}

fn stat_packets(dp: &FastPath) -> anyhow::Result<[u64; Stat::COUNT as usize]> {
    let mut out = [0u64; Stat::COUNT as usize];
    for (s, c) in dp.stats().context("reading STATS")? {
        out[s as usize] = c.packets;
    }
    Ok(out)
}

/// STATS moved by `f`: (forwarded, flow-table misses, flood-guard skips).
fn counted(dp: &mut FastPath, f: impl FnOnce(&mut FastPath) -> anyhow::Result<f64>) -> anyhow::Result<(f64, [u64; 3])> {
    let before = stat_packets(dp)?;
    let ns = f(dp)?;
    let after = stat_packets(dp)?;
    let d = |s: Stat| after[s as usize].saturating_sub(before[s as usize]);
    Ok((ns, [d(Stat::Tx), d(Stat::FlowMiss), d(Stat::FloodSkip)]))
}

/// The balancer with one VIP of `BACKENDS` backends, a flow table for
/// `flows_per_cpu`, the bench programs loaded and `lb_xdp` in their tail
/// call slot.
fn load_balancer(opts: FastPathOptions) -> anyhow::Result<FastPath> {
    let mut dp = FastPath::load_object(EBPF_BENCH_OBJECT, opts, None).context("loading the XDP object")?;
    dp.set_iface(LO_IFINDEX, DIRECTOR_MAC)?;
    // No flood guard: the misses measure the insert.
    dp.set_settings(Settings::new(0, 0))?;
    let target = dp.program().fd()?.try_clone().context("duplicating lb_xdp's fd")?;
    let mut tail = ProgramArray::try_from(dp.ebpf_mut().map_mut("BENCH_TAIL").context("BENCH_TAIL")?)?;
    tail.set(0, &target, 0).context("putting lb_xdp into BENCH_TAIL")?;
    for name in [bench::FLOOR, bench::BALANCER] {
        program(dp.ebpf_mut(), name)?;
    }
    Ok(dp)
}

fn backends_and_ring(dp: &mut FastPath, vip_index: u32, ring_size: u32) -> anyhow::Result<Vec<u32>> {
    let mut entries = Vec::new();
    for id in 1..=BACKENDS {
        let mac = [0x02, 0, 0, 0, 0xB0, id as u8];
        dp.set_backend(id, Backend { mac, flags: BACKEND_F_ALIVE, vip_index })?;
        let key = Ipv4Addr::new(10, 0, 1, id as u8).to_ipv6_mapped().octets();
        entries.push(maglev::Entry { key, weight: 1, id });
    }
    maglev::build(&entries, ring_size).context("building the Maglev ring")
}

fn vip_key(addr: Ipv4Addr) -> VipKey {
    VipKey { addr: addr16(addr.into()), port: VIP_PORT.to_be(), proto: proto::UDP, kind: VIP_KIND_SERVICE }
}

/// The bench object again, for the LRU program alone, its map sized for
/// `entries` (and the balancer's big maps at their smallest).
/// The flow-table probes get `sets` sets per CPU, as the balancer's table.
fn load_lru(entries: u32, sets: u32) -> anyhow::Result<Ebpf> {
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(bench::LRU, entries)
        .map_max_entries(names::FLOWS, sets * cpus as u32)
        .map_max_entries(bench::PERCPU_FLOWS, sets)
        .map_max_entries(names::RINGS, 1)
        .load(EBPF_BENCH_OBJECT)
        .context("loading the bench object for the LRU map")?;
    for name in [bench::LRU_PROGRAM, bench::PERCPU_TABLE_PROGRAM, bench::FLAT_TABLE_PROGRAM] {
        program(&mut ebpf, name)?;
    }
    Ok(ebpf)
}

/// Where each flow sequence of a size stands, so that every program sees
/// the same order and each call continues where the last left off.
#[derive(Default)]
struct Positions {
    floor: u64,
    hit: u64,
    lru_hit: u64,
    miss: u64,
    lru_miss: u64,
    hit1: u64,
    percpu: u64,
    flat: u64,
}

/// Runs `name` of `ebpf` on `repeat` flows of `seq` from `*next`.
fn run_sequence(
    ebpf: &mut Ebpf,
    name: &str,
    frame: &[u8],
    seq: FlowSequence,
    next: &mut u64,
    repeat: u32,
) -> anyhow::Result<f64> {
    set_sequence(ebpf, FlowSequence { next: *next, ..seq })?;
    let ns = call(ebpf, name, frame, repeat)?;
    *next += u64::from(repeat);
    Ok(ns)
}

#[derive(Default)]
struct Samples {
    floor: Vec<f64>,
    hit: Vec<f64>,
    miss: Vec<f64>,
    lru_hit: Vec<f64>,
    lru_miss: Vec<f64>,
    hit1: Vec<f64>,
    percpu: Vec<f64>,
    flat: Vec<f64>,
    hit_vs_floor: Vec<f64>,
    hit_vs_lru: Vec<f64>,
    miss_vs_lru: Vec<f64>,
}

fn measure_size(
    opts: &Options,
    label: &'static str,
    bits: u32,
    results: &mut Results,
    pinned_cpu: usize,
    say: &mut dyn FnMut(String),
) -> anyhow::Result<Point> {
    let flows = 1u32 << bits;
    let balancer = |flows_per_cpu: u32| -> anyhow::Result<FastPath> {
        let mut dp = load_balancer(FastPathOptions { flows_per_cpu, ..FastPathOptions::default() })?;
        let ring = backends_and_ring(&mut dp, 0, lb_common::DEFAULT_RING_SIZE)?;
        dp.install_vip(&[vip_key(VIP)], 0, 0, &ring)?;
        Ok(dp)
    };
    let mut dp = balancer(flows * TABLE_HEADROOM)?;
    let mut dp1 = balancer(flows)?;
    let sets = lb_common::flow_sets(flows * TABLE_HEADROOM);
    let mut lru = load_lru(flows, sets).with_context(|| format!("an LRU map of {flows} entries"))?;
    let frame = udp_frame(DIRECTOR_MAC, CLIENT_MAC, CLIENT, VIP, 40000, VIP_PORT);
    let hits = FlowSequence { sets, ..FlowSequence::new(bits, HIT_SPACE) };
    let misses = FlowSequence::new(MISS_BITS, MISS_SPACE);
    // Every hit call covers every flow at least once.
    let repeat = opts.repeat.max(flows);
    let miss_repeat = opts.repeat;
    let mut pos = Positions::default();
    let mut s = Samples::default();
    let (mut hit_found, mut hit_total, mut lru_found, mut lru_total) = (0u64, 0u64, 0u64, 0u64);
    let (mut found1, mut total1) = (0u64, 0u64);
    // Tables only hits reach: one pass now leaves them in the steady state
    // of the order, and every later call keeps them there.
    run_sequence(dp1.ebpf_mut(), bench::BALANCER, &frame, hits, &mut pos.hit1, flows)?;
    for name in [bench::PERCPU_TABLE_PROGRAM, bench::FLAT_TABLE_PROGRAM] {
        let next = if name == bench::FLAT_TABLE_PROGRAM { &mut pos.flat } else { &mut pos.percpu };
        run_sequence(&mut lru, name, &frame, hits, next, flows)?;
    }

    for round in 0..opts.rounds {
        if sys::interrupted() {
            bail!("interrupted");
        }
        let t0 = CpuTimes::now()?;
        let (d0, w0) = (sys::run_delay(), std::time::Instant::now());
        // The steady state of the order: one pass leaves in each table
        // what cycling through the flows leaves there, whatever the
        // misses of the round before replaced.
        run_sequence(dp.ebpf_mut(), bench::BALANCER, &frame, hits, &mut pos.hit, flows)?;
        run_sequence(&mut lru, bench::LRU_PROGRAM, &frame, hits, &mut pos.lru_hit, flows)?;

        let floor = run_sequence(dp.ebpf_mut(), bench::FLOOR, &frame, hits, &mut pos.floor, repeat)?;
        // Every other round the LRU map first, so a drift in the host's
        // speed favours neither.
        let hit_lb = |dp: &mut FastPath, pos: &mut Positions| {
            counted(dp, |dp| run_sequence(dp.ebpf_mut(), bench::BALANCER, &frame, hits, &mut pos.hit, repeat))
        };
        let hit_lru = |lru: &mut Ebpf, pos: &mut Positions| -> anyhow::Result<(f64, FlowSequence)> {
            let ns = run_sequence(lru, bench::LRU_PROGRAM, &frame, hits, &mut pos.lru_hit, repeat)?;
            Ok((ns, sequence(lru)?))
        };
        let ((hit, hit_stats), (lru_hit, lru_seq)) = if round % 2 == 0 {
            let a = hit_lb(&mut dp, &mut pos)?;
            (a, hit_lru(&mut lru, &mut pos)?)
        } else {
            let b = hit_lru(&mut lru, &mut pos)?;
            (hit_lb(&mut dp, &mut pos)?, b)
        };
        let (miss, miss_stats) = counted(&mut dp, |dp| {
            run_sequence(dp.ebpf_mut(), bench::BALANCER, &frame, misses, &mut pos.miss, miss_repeat)
        })?;
        let lru_miss = run_sequence(&mut lru, bench::LRU_PROGRAM, &frame, misses, &mut pos.lru_miss, miss_repeat)?;
        let lru_after = sequence(&lru)?;
        let (hit1, [tx1, missed1, _]) =
            counted(&mut dp1, |dp| run_sequence(dp.ebpf_mut(), bench::BALANCER, &frame, hits, &mut pos.hit1, repeat))?;
        found1 += tx1.saturating_sub(missed1);
        total1 += tx1;
        // The set lookup alone, per-CPU array against plain array.
        let percpu = run_sequence(&mut lru, bench::PERCPU_TABLE_PROGRAM, &frame, hits, &mut pos.percpu, repeat)?;
        let flat = run_sequence(&mut lru, bench::FLAT_TABLE_PROGRAM, &frame, hits, &mut pos.flat, repeat)?;

        let [tx, missed, _] = hit_stats;
        if tx < u64::from(repeat) * 99 / 100 {
            results.failed_checks.push(format!("{label} flows, hits: {tx} of {repeat} packets forwarded"));
        }
        hit_found += tx.saturating_sub(missed);
        hit_total += tx;
        let [tx, missed, skipped] = miss_stats;
        if missed < u64::from(miss_repeat) * 99 / 100 || skipped != 0 || tx < u64::from(miss_repeat) * 99 / 100 {
            results.failed_checks.push(format!(
                "{label} flows, misses: {tx} forwarded, {missed} missed, {skipped} not inserted of {miss_repeat}"
            ));
        }
        // The LRU program's own counters, which every call starts from zero.
        lru_found += lru_seq.lru_hits;
        lru_total += u64::from(repeat);
        if lru_after.lru_misses < u64::from(miss_repeat) * 99 / 100 {
            results
                .failed_checks
                .push(format!("{label} flows, LRU misses: only {} of {miss_repeat} missed", lru_after.lru_misses));
        }

        s.floor.push(floor);
        s.hit.push(hit);
        s.miss.push(miss);
        s.lru_hit.push(lru_hit);
        s.lru_miss.push(lru_miss);
        s.hit1.push(hit1);
        s.percpu.push(percpu);
        s.flat.push(flat);
        s.hit_vs_floor.push(hit / floor);
        s.hit_vs_lru.push(hit / lru_hit);
        s.miss_vs_lru.push(miss / lru_miss);
        let delay = sys::delay_fraction(d0, sys::run_delay(), w0.elapsed());
        results.run_delay.push(delay);
        let busy = CpuTimes::now()?.busy_since(&t0);
        let other = busy.iter().enumerate().filter(|(c, _)| *c != pinned_cpu).map(|(_, b)| *b).fold(0.0, f64::max);
        results.other_cpu_busy.push(other);
        say(format!(
            "  {label:>3} flows, round {}/{}: floor {floor:.0}, hit {hit:.0}, lru hit {lru_hit:.0}, miss {miss:.0}, \
             lru miss {lru_miss:.0} ns (other CPUs busy {:.0}%, waited for CPU {:.1}%)",
            round + 1,
            opts.rounds,
            other * 100.0,
            delay * 100.0
        ));
    }

    let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    let flow_map = dp.ebpf_mut().map(names::FLOWS).context("the FLOWS map")?;
    let capacity = u64::from(lb_common::flow_sets(flows * TABLE_HEADROOM)) * FLOW_WAYS as u64;
    let flow_bytes = memlock(flow_map)? as f64 / (capacity * cpus as u64) as f64;
    let flow_bytes_active = flow_bytes * f64::from(TABLE_HEADROOM);
    debug_assert!(flow_bytes >= (size_of::<FlowSet>() / FLOW_WAYS) as f64);
    let lru_bytes = memlock(lru.map(bench::LRU).context("the LRU map")?)? as f64 / f64::from(flows);
    Ok(Point {
        label,
        flows,
        floor: Figure::of(&s.floor),
        hit: Figure::of(&s.hit),
        miss: Figure::of(&s.miss),
        lru_hit: Figure::of(&s.lru_hit),
        lru_miss: Figure::of(&s.lru_miss),
        hit_vs_floor: median(&s.hit_vs_floor),
        hit_vs_lru: median(&s.hit_vs_lru),
        miss_vs_lru: median(&s.miss_vs_lru),
        hit_fraction: hit_found as f64 / hit_total.max(1) as f64,
        lru_hit_fraction: lru_found as f64 / lru_total.max(1) as f64,
        hit1: Figure::of(&s.hit1),
        hit_fraction1: found1 as f64 / total1.max(1) as f64,
        percpu: Figure::of(&s.percpu),
        flat: Figure::of(&s.flat),
        flow_bytes,
        flow_bytes_active,
        lru_bytes,
        cpus,
    })
}

/// Each key of the published VIP table with its probe length: how many
/// slots from its home the fast path reads to find it.
fn probe_lengths(dp: &mut FastPath) -> anyhow::Result<Vec<(VipKey, u32)>> {
    let ebpf = dp.ebpf_mut();
    let ctl: Array<_, VipCtl> = Array::try_from(ebpf.map(names::VIP_CTL).context("VIP_CTL")?)?;
    let ctl = ctl.get(&0, 0).context("reading VIP_CTL")?;
    let table: Array<_, VipEntry> = Array::try_from(ebpf.map(names::VIP_TABLE).context("VIP_TABLE")?)?;
    let generation = ctl.active & 1;
    let seed = ctl.seeds[generation as usize];
    let mut out = Vec::new();
    for slot in 0..VIP_TABLE_SIZE {
        let e = table.get(&(generation * VIP_TABLE_SIZE + slot), 0).context("reading VIP_TABLE")?;
        if e.key.proto == 0 {
            continue;
        }
        let home = hash::vip_slot(&e.key.addr, e.key.port, e.key.proto, e.key.kind, seed, VIP_TABLE_SIZE);
        out.push((e.key, (slot.wrapping_sub(home) & (VIP_TABLE_SIZE - 1)) + 1));
    }
    Ok(out)
}

fn measure_vips(opts: &Options, vips: u32, say: &mut dyn FnMut(String)) -> anyhow::Result<VipPoint> {
    let max_vips = lb_common::MAX_VIPS;
    let mut dp =
        load_balancer(FastPathOptions { max_vips, max_ring_size: VIP_RING_SIZE, ..FastPathOptions::default() })?;
    // VIP i is 10.2.i/256.i%256; more VIPs than VIP indexes share indexes
    // (a VIP index is a service; its keys are what the table holds).
    let addr = |i: u32| Ipv4Addr::new(10, 2, (i >> 8) as u8, i as u8);
    // The measured VIP is the one with the longest probe: known only once
    // the table is laid out, so its index's backends are set after.
    let ring = backends_and_ring(&mut dp, 0, VIP_RING_SIZE)?;
    for index in 0..vips.min(max_vips) {
        let keys: Vec<VipKey> = (index..vips).step_by(max_vips as usize).map(|i| vip_key(addr(i))).collect();
        dp.stage_vip(&keys, index, 0, &ring, None)?;
    }
    dp.publish()?;
    let lengths = probe_lengths(&mut dp)?;
    if lengths.len() != vips as usize {
        bail!("{} keys in the published VIP table, want {vips}", lengths.len());
    }
    let probe_mean = lengths.iter().map(|(_, l)| f64::from(*l)).sum::<f64>() / f64::from(vips);
    let (longest, probe_measured) = (0..vips)
        .map(|i| (i, lengths.iter().find(|(k, _)| *k == vip_key(addr(i))).map_or(0, |(_, l)| *l)))
        .max_by_key(|(_, l)| *l)
        .context("no VIPs")?;
    let measured = addr(longest);
    backends_and_ring(&mut dp, longest % max_vips, VIP_RING_SIZE)?;
    let frame = udp_frame(DIRECTOR_MAC, CLIENT_MAC, CLIENT, measured, 40000, VIP_PORT);
    let mut next = 0;
    let (mut hit, mut miss) = (Vec::new(), Vec::new());
    for _ in 0..opts.rounds {
        // The frame's one flow: the first call inserts it.
        let (ns, [tx, missed, _]) = counted(&mut dp, |dp| call(dp.ebpf_mut(), names::PROGRAM, &frame, opts.repeat))?;
        if tx < u64::from(opts.repeat) || missed > 1 {
            bail!("{vips} VIPs, hit: {tx} forwarded, {missed} missed of {}", opts.repeat);
        }
        hit.push(ns);
        let (ns, [tx, missed, _]) = counted(&mut dp, |dp| {
            let misses = FlowSequence::new(MISS_BITS, MISS_SPACE);
            run_sequence(dp.ebpf_mut(), bench::BALANCER, &frame, misses, &mut next, opts.repeat)
        })?;
        if tx < u64::from(opts.repeat) || missed < u64::from(opts.repeat) {
            bail!("{vips} VIPs, new flows: {tx} forwarded, {missed} missed of {}", opts.repeat);
        }
        miss.push(ns);
    }
    let p = VipPoint { vips, hit: Figure::of(&hit), miss: Figure::of(&miss), probe_mean, probe_measured };
    say(format!(
        "  {vips:>4} VIPs: hit {:.1} ns, new flow {:.1} ns; mean probe {:.3} slots, the measured VIP's {}",
        p.hit.ns, p.miss.ns, p.probe_mean, p.probe_measured
    ));
    Ok(p)
}

/// Runs every flow count, then every VIP count.
pub fn run(opts: &Options, pinned_cpu: usize, say: &mut dyn FnMut(String)) -> anyhow::Result<Results> {
    let mut results = Results::default();
    for (label, bits) in SIZES {
        let p = measure_size(opts, label, bits, &mut results, pinned_cpu, say)
            .with_context(|| format!("{label} flows per CPU"))?;
        results.points.push(p);
    }
    for vips in VIP_COUNTS {
        let p = measure_vips(opts, vips, say).with_context(|| format!("{vips} VIPs"))?;
        results.vips.push(p);
    }
    Ok(results)
}

/// Prints the figures and goals and writes the keys into `out`; `num`
/// rounds a figure for the JSON (NaN becomes null).
pub fn report(
    r: &Results,
    say: &mut dyn FnMut(String),
    out: &mut JsonMap<String, Value>,
    num: fn(f64, i32) -> Value,
    noisy_busy: f64,
    noisy_delay: f64,
) -> Verdict {
    say(format!(
        "  flow table sized {TABLE_HEADROOM}x the active flows (flows_per_cpu = {TABLE_HEADROOM}N), LRU map N entries"
    ));
    say(format!(
        "  {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}  {:>9} {:>8} {:>8}  {:>6} {:>6}",
        "flows", "floor", "hit", "lru hit", "miss", "lru miss", "hit/floor", "hit/lru", "miss/lru", "found", "lru"
    ));
    for p in &r.points {
        say(format!(
            "  {:>6} {:8.1} {:8.1} {:8.1} {:8.1} {:8.1}  {:8.2}x {:7.2}x {:7.2}x  {:5.1}% {:5.1}%",
            p.label,
            p.floor.ns,
            p.hit.ns,
            p.lru_hit.ns,
            p.miss.ns,
            p.lru_miss.ns,
            p.hit_vs_floor,
            p.hit_vs_lru,
            p.miss_vs_lru,
            p.hit_fraction * 100.0,
            p.lru_hit_fraction * 100.0
        ));
        out.insert(format!("flows_floor_ns_{}", p.label), num(p.floor.ns, 2));
        out.insert(format!("fastpath_hit_ns_{}", p.label), num(p.hit.ns, 2));
        out.insert(format!("fastpath_miss_ns_{}", p.label), num(p.miss.ns, 2));
        out.insert(format!("lrumap_hit_ns_{}", p.label), num(p.lru_hit.ns, 2));
        out.insert(format!("lrumap_miss_ns_{}", p.label), num(p.lru_miss.ns, 2));
        out.insert(format!("fastpath_hit_fraction_{}", p.label), num(p.hit_fraction, 4));
        out.insert(format!("lrumap_hit_fraction_{}", p.label), num(p.lru_hit_fraction, 4));
    }
    say("  (kernel ns per packet, medians over rounds; ratios within a round, medians; found: share of the hit \
         repetitions whose flow was in the table)"
        .to_owned());
    say("  the same hits with the flow table sized for exactly N flows (flows_per_cpu = N)".to_owned());
    for p in &r.points {
        say(format!("  {:>6} flows: found {:5.1}%, {:7.1} ns", p.label, p.hit_fraction1 * 100.0, p.hit1.ns,));
        out.insert(format!("fastpath_hit_ns_{}_table1x", p.label), num(p.hit1.ns, 2));
        out.insert(format!("fastpath_hit_fraction_{}_table1x", p.label), num(p.hit_fraction1, 4));
    }
    say("  the set lookup alone (next flow, parse, flow key, one set compared, MAC rewrite), in a per-CPU array, \
         and in one plain array of every CPU's sets as the flow table is: the per-CPU array reaches each element \
         through a pointer of its own"
        .to_owned());
    for p in &r.points {
        say(format!("  {:>6} flows: per-CPU array {:7.1} ns, plain array {:7.1} ns", p.label, p.percpu.ns, p.flat.ns));
        out.insert(format!("flowtable_percpu_ns_{}", p.label), num(p.percpu.ns, 2));
        out.insert(format!("flowtable_flat_ns_{}", p.label), num(p.flat.ns, 2));
    }
    let mut missing = Vec::new();
    if let Some(p) = r.points.iter().find(|p| p.label == "1m").or(r.points.last()) {
        // Per flow and CPU for both: a flow table entry is one CPU's; an LRU
        // map entry holds a value for every possible CPU, though a flow
        // (steered to one CPU) uses one, so a flow it holds costs the whole
        // entry (printed too).
        let lru_per_cpu = p.lru_bytes / p.cpus as f64;
        say(format!(
            "  memory per flow and CPU (kernel memlock, {} flows): flow table {:.1} bytes per entry ({:.1} per active \
             flow at {TABLE_HEADROOM}x); LRU map {lru_per_cpu:.1} bytes per entry and CPU, {:.1} per entry (a value \
             for each of {} possible CPUs)",
            p.flows, p.flow_bytes, p.flow_bytes_active, p.lru_bytes, p.cpus,
        ));
        out.insert("flow_bytes_per_flow".into(), num(p.flow_bytes, 1));
        out.insert("flow_bytes_per_active_flow".into(), num(p.flow_bytes_active, 1));
        out.insert("lrumap_bytes_per_flow".into(), num(lru_per_cpu, 1));
        out.insert("lrumap_bytes_per_entry".into(), num(p.lru_bytes, 1));
    }
    for v in &r.vips {
        out.insert(format!("fastpath_hit_ns_vips_{}", v.vips), num(v.hit.ns, 2));
        out.insert(format!("fastpath_miss_ns_vips_{}", v.vips), num(v.miss.ns, 2));
        out.insert(format!("vip_probe_len_{}", v.vips), num(v.probe_mean, 3));
    }
    say("  (VIPs: a hit is found in the flow table before the VIP table is read; a new flow probes the VIP table)"
        .to_owned());

    let vs_lru = r.points.iter().all(|p| p.hit_vs_lru <= MAX_VS_LRU && p.miss_vs_lru <= MAX_VS_LRU);
    let vs_lru = (r.points.len() == SIZES.len()).then_some(vs_lru);
    let worst = r.points.iter().map(|p| p.hit_vs_lru.max(p.miss_vs_lru)).fold(f64::NAN, f64::max);
    say(format!(
        "  target: hit and miss at most {MAX_VS_LRU}x the LRU map's at every flow count: worst {worst:.2}x {}",
        verdict(vs_lru)
    ));
    let hit_1m = r.points.iter().find(|p| p.label == "1m").map(|p| p.hit_vs_floor);
    let hit_1m_ok = hit_1m.map(|x| x <= HIT_1M_MAX_VS_FLOOR);
    say(format!(
        "  target: hit at 1M flows within {HIT_1M_MAX_VS_FLOOR}x the floor: {:.2}x {}",
        hit_1m.unwrap_or(f64::NAN),
        verdict(hit_1m_ok)
    ));
    out.insert("target_flows_vs_lrumap_pass".into(), Value::from(vs_lru));
    out.insert("target_flows_hit_1m_pass".into(), Value::from(hit_1m_ok));
    for c in &r.failed_checks {
        say(format!("  CHECK FAILED: {c}"));
    }
    for key in KEYS {
        if out.get(*key).is_none_or(Value::is_null) {
            missing.push(format!("{key} not measured"));
        }
    }
    let spread = r
        .points
        .iter()
        .flat_map(|p| [p.floor, p.hit, p.miss, p.lru_hit, p.lru_miss, p.hit1, p.percpu, p.flat])
        .chain(r.vips.iter().flat_map(|v| [v.hit, v.miss]))
        .map(|f| f.spread)
        .fold(1.0, f64::max);
    let busiest = r.other_cpu_busy.iter().copied().fold(0.0, f64::max);
    let waited = r.run_delay.iter().copied().fold(0.0, f64::max);
    let noisy = busiest > noisy_busy || waited > noisy_delay;
    if noisy {
        say(format!(
            "  NOISY: in the worst rounds another CPU was {:.0}% busy and other tasks took {:.1}% of the pinned CPU",
            busiest * 100.0,
            waited * 100.0
        ));
    }
    Verdict {
        all_pass: vs_lru != Some(false) && hit_1m_ok != Some(false) && r.failed_checks.is_empty(),
        spread,
        noisy,
        missing,
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "not measured",
    }
}
