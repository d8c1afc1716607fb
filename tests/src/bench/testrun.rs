//! Part 1: cost per packet under BPF_PROG_TEST_RUN, on one pinned CPU.
//!
//! Every XDP test run with repeat > 1 pays a fixed 15-20 ms (the program is
//! swapped into the dispatcher and the kernel waits for RCU), so each figure
//! comes from calls with millions of repeats, two ways: the kernel's own
//! per-repeat average (`duration`, whole nanoseconds, rounded down) and the
//! wall-clock slope between two repeat counts, which cancels the fixed cost.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    maps::ProgramArray,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::{BACKEND_F_ALIVE, Backend, Settings, Stat, VIP_KIND_SERVICE, VipKey, proto};
use lb_userspace::{
    fast_path::{EBPF_BENCH_OBJECT, FastPath, FastPathOptions},
    maglev,
};

use super::{
    median, syn_frame,
    sys::{self, CpuTimes},
    udp_frame,
};
use crate::packet::addr16;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// Test runs arrive on loopback.
const LO_IFINDEX: u32 = 1;
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xD1];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xC1];
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const NOT_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
const VIP_PORT: u16 = 80;
const BACKENDS: u32 = 16;
const RING_SIZE: u32 = lb_common::DEFAULT_RING_SIZE;
/// Low enough that the flood guard is always over its limit once a second's
/// first insert is done.
const GUARD_LIMIT: u32 = 1;
/// Repeats of the call that sizes the measured ones.
const CALIBRATION_REPEAT: u32 = 200_000;
/// New flows sent before anything is measured: three times one CPU's region
/// of the default flow table (each CPU fills only its own), so the region is
/// full and every later insert evicts, as in steady state.
const FILL_FLOWS: u32 = 3 * lb_common::DEFAULT_FLOWS_PER_CPU;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// `bench_tx`: the cheapest program that transmits.
    Floor,
    /// `lb_xdp`, one UDP flow over and over: a flow-table hit.
    Hit,
    /// `lb_xdp`, UDP to an address that is no VIP: parse, VIP lookup (port,
    /// then any port), pass. Katran's figure for this is on record.
    NotVip,
    /// `bench_miss`: a UDP flow never seen before on every packet, tail-called
    /// into `lb_xdp` with a full default-size flow table: lookup miss, ring
    /// pick, insert with LRU eviction.
    Miss,
    /// As `Miss` with the flood guard over its limit: lookup miss, ring pick, no insert.
    MissGuard,
    /// `bench_mutate_tx`: `bench_miss`'s rewrite of the frame without the
    /// balancer, what `Miss` pays on top of it.
    MutateFloor,
    /// `lb_xdp`, one TCP 5-tuple, every packet a SYN: skips the lookup, ring
    /// pick, insert over the same key (no eviction).
    MissSyn,
    /// As `MissSyn` with the flood guard over its limit: ring pick, no insert.
    MissSynGuard,
}

impl Case {
    pub const ALL: [Case; 8] = [
        Case::Floor,
        Case::Hit,
        Case::NotVip,
        Case::Miss,
        Case::MissGuard,
        Case::MutateFloor,
        Case::MissSyn,
        Case::MissSynGuard,
    ];

    /// Name for `--cases`, the per-round lines and the JSON keys.
    pub fn name(self) -> &'static str {
        match self {
            Case::Floor => "floor",
            Case::Hit => "hit",
            Case::NotVip => "not_vip",
            Case::Miss => "miss",
            Case::MissGuard => "miss_floodguard",
            Case::MutateFloor => "mutate_floor",
            Case::MissSyn => "miss_syn",
            Case::MissSynGuard => "miss_syn_floodguard",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Case::Floor => "floor (bench_tx, XDP_TX)",
            Case::Hit => "hit (UDP, same flow, flow-table hit)",
            Case::NotVip => "not for a VIP (UDP, passed)",
            Case::Miss => "new flow per packet (bench_miss, full table)",
            Case::MissGuard => "new flow per packet, flood guard over limit",
            Case::MutateFloor => "bench_mutate_tx (new-flow rewrite, no balancer)",
            Case::MissSyn => "TCP SYN, same 5-tuple (ring + update)",
            Case::MissSynGuard => "TCP SYN, same 5-tuple, flood guard over limit",
        }
    }

    /// The program the test run calls.
    fn program(self) -> &'static str {
        match self {
            Case::Floor => "bench_tx",
            Case::Miss | Case::MissGuard => "bench_miss",
            Case::MutateFloor => "bench_mutate_tx",
            Case::Hit | Case::NotVip | Case::MissSyn | Case::MissSynGuard => lb_common::names::PROGRAM,
        }
    }

    fn flood_guard(self) -> bool {
        matches!(self, Case::MissGuard | Case::MissSynGuard)
    }

    fn verdict(self) -> u32 {
        if self == Case::NotVip { XDP_PASS } else { XDP_TX }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub rounds: usize,
    /// Only these cases (for profiling one path); None: all.
    pub cases: Option<Vec<Case>>,
    /// Wall time the longer call of each pair aims at.
    pub target_call: Duration,
}

/// Medians over rounds.
#[derive(Clone, Copy, Debug)]
pub struct Figure {
    /// Kernel-reported average per repeat (whole ns per call, median over rounds).
    pub kernel_ns: f64,
    /// Wall-clock slope between the two repeat counts.
    pub wall_ns: f64,
    /// Kernel figure over the floor's in the same round, median over rounds:
    /// this VM's speed drifts by tens of percent over seconds (the host is
    /// shared), and a ratio of two figures taken moments apart cancels most
    /// of that, where a ratio of two medians would not.
    pub vs_floor: f64,
    /// Slowest round over fastest (kernel figures): how steady the machine was.
    pub spread: f64,
}

impl Figure {
    /// Whether the two methods agree within 1.5 ns or 20%, whichever is
    /// looser: the kernel's figure is truncated to whole nanoseconds.
    pub fn agrees(&self) -> bool {
        let diff = (self.kernel_ns - self.wall_ns).abs();
        diff <= 1.5 || diff <= 0.2 * self.wall_ns.max(self.kernel_ns)
    }
}

#[derive(Debug)]
pub struct Results {
    pub figures: Vec<(Case, Figure)>,
    /// Largest busy fraction of any CPU other than the pinned one, per round.
    pub other_cpu_busy: Vec<f64>,
    /// Fraction of each round the measuring thread waited for its CPU.
    pub run_delay: Vec<f64>,
    /// Counter checks that failed (the measurement did not do what it says).
    pub failed_checks: Vec<String>,
    pub warnings: Vec<String>,
    /// Whether `Miss` (a new flow per packet) was measured; else only the SYN method was.
    pub has_miss: bool,
}

impl Results {
    pub fn get(&self, case: Case) -> Option<Figure> {
        self.figures.iter().find(|(c, _)| *c == case).map(|(_, f)| *f)
    }
}

struct Bench {
    dp: FastPath,
    /// Whether the object has `bench_miss` and `bench_mutate_tx`.
    has_miss: bool,
    udp: Vec<u8>,
    syn: Vec<u8>,
    not_vip: Vec<u8>,
}

/// One call: kernel ns per repeat, wall time.
struct Call {
    kernel: Duration,
    wall: Duration,
}

fn stat_packets(dp: &FastPath) -> anyhow::Result<[u64; Stat::COUNT as usize]> {
    let mut out = [0u64; Stat::COUNT as usize];
    for (s, c) in dp.stats().context("reading STATS")? {
        out[s as usize] = c.packets;
    }
    Ok(out)
}

/// A loaded program of the object. FastPath lends the object only
/// mutably, so the borrow is exclusive even though the use is a read.
fn xdp<'a>(dp: &'a mut FastPath, name: &str) -> anyhow::Result<&'a Xdp> {
    let prog = dp.ebpf_mut().program(name).with_context(|| format!("program {name} missing from the object"))?;
    prog.try_into().with_context(|| format!("{name} is not an XDP program"))
}

impl Bench {
    fn new() -> anyhow::Result<Self> {
        let mut dp = FastPath::load_object(EBPF_BENCH_OBJECT, FastPathOptions::default(), None)
            .context("loading the XDP object")?;
        dp.set_iface(LO_IFINDEX, DIRECTOR_MAC)?;
        dp.set_settings(Settings::new(0, 0))?;
        let mut entries = Vec::new();
        for id in 1..=BACKENDS {
            let mac = [0x02, 0, 0, 0, 0xB0, id as u8];
            dp.set_backend(id, Backend { mac, flags: BACKEND_F_ALIVE, vip_index: 0 })?;
            let key = Ipv4Addr::new(10, 0, 1, id as u8).to_ipv6_mapped().octets();
            entries.push(maglev::Entry { key, weight: 1, id });
        }
        let ring = maglev::build(&entries, RING_SIZE).context("building the Maglev ring")?;
        let keys = [proto::UDP, proto::TCP].map(|p| VipKey {
            addr: addr16(VIP.into()),
            port: VIP_PORT.to_be(),
            proto: p,
            kind: VIP_KIND_SERVICE,
        });
        dp.install_vip(&keys, 0, 0, &ring)?;
        for name in ["bench_tx", "bench_miss", "bench_mutate_tx"] {
            if let Some(prog) = dp.ebpf_mut().program_mut(name) {
                let prog: &mut Xdp = prog.try_into().with_context(|| format!("{name} is not an XDP program"))?;
                prog.load().with_context(|| format!("loading {name}"))?;
            }
        }
        let has_miss = ["bench_miss", "bench_mutate_tx"].iter().all(|n| dp.ebpf_mut().program(n).is_some())
            && dp.ebpf_mut().map("BENCH_TAIL").is_some();
        if has_miss {
            let target = dp.program().fd()?.try_clone().context("duplicating lb_xdp's fd")?;
            let mut tail = ProgramArray::try_from(dp.ebpf_mut().map_mut("BENCH_TAIL").context("BENCH_TAIL")?)?;
            tail.set(0, &target, 0).context("putting lb_xdp into BENCH_TAIL")?;
        }
        let udp = udp_frame(DIRECTOR_MAC, CLIENT_MAC, CLIENT, VIP, 40000, VIP_PORT);
        let syn = syn_frame(DIRECTOR_MAC, CLIENT_MAC, CLIENT, VIP, 40000, VIP_PORT);
        let not_vip = udp_frame(DIRECTOR_MAC, CLIENT_MAC, CLIENT, NOT_VIP, 40000, VIP_PORT);
        Ok(Self { dp, has_miss, udp, syn, not_vip })
    }

    fn call(&mut self, case: Case, repeat: u32) -> anyhow::Result<Call> {
        let max_new_flows_per_sec = if case.flood_guard() { GUARD_LIMIT } else { 0 };
        self.dp.set_settings(Settings::new(max_new_flows_per_sec, 0))?;
        let prog = xdp(&mut self.dp, case.program())?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(match case {
            Case::MissSyn | Case::MissSynGuard => &self.syn,
            Case::NotVip => &self.not_vip,
            _ => &self.udp,
        });
        opts.repeat = repeat;
        let start = Instant::now();
        let res = prog.test_run(opts).with_context(|| format!("BPF_PROG_TEST_RUN of {}", case.program()))?;
        let wall = start.elapsed();
        if res.return_value != case.verdict() {
            bail!("{}: verdict {}, want {}", case.label(), res.return_value, case.verdict());
        }
        Ok(Call { kernel: res.duration, wall })
    }

    /// Checks that `delta` (STATS over a call of `n` packets) is what `case` claims to measure.
    fn check(case: Case, n: u64, delta: &[u64]) -> Option<String> {
        let at = |s: Stat| delta[s as usize];
        let most = |x: u64| x * 100 >= n * 99;
        let few = |x: u64| x * 100 <= n;
        let ok = match case {
            Case::Floor | Case::MutateFloor => return None,
            Case::NotVip => {
                return (!most(at(Stat::PassNotVip))).then(|| format!("{}: not passed as not-a-VIP", case.label()));
            }
            // Hits are the forwarded packets that were not misses.
            Case::Hit => few(at(Stat::FlowMiss)),
            Case::MissSyn | Case::Miss => most(at(Stat::FlowMiss)) && few(at(Stat::FloodSkip)),
            Case::MissSynGuard | Case::MissGuard => most(at(Stat::FlowMiss)) && most(at(Stat::FloodSkip)),
        } && most(at(Stat::Tx));
        (!ok).then(|| {
            let shown: Vec<String> = Stat::ALL
                .iter()
                .filter(|s| delta[**s as usize] != 0)
                .map(|s| format!("{}={}", s.name(), delta[*s as usize]))
                .collect();
            format!("{}: counters over {n} packets do not match: {}", case.label(), shown.join(" "))
        })
    }
}

/// Runs every case `opts.rounds` times, interleaved so drift hits all alike.
pub fn run(opts: &Options, pinned_cpu: usize, say: &mut dyn FnMut(String)) -> anyhow::Result<Results> {
    let mut b = Bench::new()?;
    let cases: Vec<Case> = Case::ALL
        .into_iter()
        .filter(|c| opts.cases.as_ref().is_none_or(|only| only.contains(c)))
        .filter(|c| b.has_miss || !matches!(c, Case::Miss | Case::MissGuard | Case::MutateFloor))
        .collect();

    if b.has_miss {
        b.call(Case::Miss, FILL_FLOWS).context("filling the flow table")?;
    }
    // Size each case's calls from one short call, so the longer call of each
    // pair takes about `target_call` whatever the program costs.
    let mut repeats = Vec::new();
    for &case in &cases {
        let cal = b.call(case, CALIBRATION_REPEAT)?;
        let per = cal.kernel.as_nanos().max(1) as f64;
        let r2 = (opts.target_call.as_nanos() as f64 / per).clamp(1e5, 2e9) as u32;
        repeats.push((r2 / 5, r2));
    }

    let mut samples: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); cases.len()];
    let mut other_cpu_busy = Vec::new();
    let mut run_delay = Vec::new();
    let mut failed_checks = Vec::new();
    for round in 0..opts.rounds {
        if sys::interrupted() {
            bail!("interrupted");
        }
        let t0 = CpuTimes::now()?;
        let (d0, w0) = (sys::run_delay(), Instant::now());
        // Every other round in reverse, so a drift in the host's speed that
        // favours later cases in one round favours earlier ones in the next.
        let order: Vec<usize> =
            if round % 2 == 0 { (0..cases.len()).collect() } else { (0..cases.len()).rev().collect() };
        for i in order {
            let case = cases[i];
            let (r1, r2) = repeats[i];
            let short = b.call(case, r1)?;
            let before = stat_packets(&b.dp)?;
            let long = b.call(case, r2)?;
            let after = stat_packets(&b.dp)?;
            let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a.saturating_sub(b)).collect();
            if let Some(msg) = Bench::check(case, u64::from(r2), &delta)
                && !failed_checks.contains(&msg)
            {
                failed_checks.push(msg);
            }
            let wall = (long.wall.as_nanos() as f64 - short.wall.as_nanos() as f64) / f64::from(r2 - r1);
            samples[i].0.push(long.kernel.as_nanos() as f64);
            samples[i].1.push(wall);
        }
        let delay = sys::delay_fraction(d0, sys::run_delay(), w0.elapsed());
        run_delay.push(delay);
        let busy = CpuTimes::now()?.busy_since(&t0);
        let other = busy.iter().enumerate().filter(|(c, _)| *c != pinned_cpu).map(|(_, b)| *b).fold(0.0, f64::max);
        other_cpu_busy.push(other);
        say(format!(
            "  round {}/{}: {} (other CPUs busy {:.0}%, waited for CPU {:.1}%)",
            round + 1,
            opts.rounds,
            cases
                .iter()
                .zip(&samples)
                .map(|(c, s)| format!(
                    "{} {:.0}/{:.1}",
                    c.name(),
                    s.0.last().unwrap_or(&f64::NAN),
                    s.1.last().unwrap_or(&f64::NAN)
                ))
                .collect::<Vec<_>>()
                .join(", "),
            other * 100.0,
            delay * 100.0
        ));
    }
    let floor = cases.iter().position(|&c| c == Case::Floor).map(|i| samples[i].0.clone());
    let figures = cases
        .iter()
        .zip(&samples)
        .map(|(&c, (k, w))| {
            let vs_floor = match &floor {
                Some(f) => median(&k.iter().zip(f).map(|(x, f)| x / f).collect::<Vec<_>>()),
                None => f64::NAN,
            };
            let max = k.iter().copied().fold(f64::NAN, f64::max);
            let min = k.iter().copied().fold(f64::NAN, f64::min);
            (c, Figure { kernel_ns: median(k), wall_ns: median(w), vs_floor, spread: max / min })
        })
        .collect();
    let warnings = if b.has_miss {
        Vec::new()
    } else {
        vec!["the object has no bench_miss/bench_mutate_tx: no new-flow-per-packet figures; the miss figure is the TCP SYN method".to_owned()]
    };
    Ok(Results { figures, other_cpu_busy, run_delay, failed_checks, warnings, has_miss: b.has_miss })
}
