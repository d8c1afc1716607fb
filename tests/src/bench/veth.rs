//! Part 2: forwarding rate on a veth testbed.
//!
//! ```text
//!  gen ns              director ns                  sink ns
//!  g0 ----------------- d0  [thing under test]  d1 ---------------- s0
//!  peer_pass            (ingress)            (egress)          bench_sink
//!  BPF_PROG_TEST_RUN live frames of bench_gen, XDP_TX out of g0
//! ```
//!
//! The generator's frames go out of g0 through XDP_TX, which on a veth
//! delivers only when the peer (d0) has an XDP program: the XDP cases have
//! theirs, and the bridge and nftables cases get `peer_pass` there (frames
//! then enter the stack as skbs, as from a NIC). Everything runs on the
//! generator's CPU: XDP_TX and redirects into a veth schedule the peer's
//! NAPI on the local CPU, so the other CPU should stay idle.
//!
//! The headline is 60-byte frames on single-queue veths. The frames curve
//! repeats it with the floor, `lb`, the bridge and nftables at each size of
//! [`CURVE_SIZES`], first on one CPU, then with the director's receive
//! spread over every CPU: veths with one queue per CPU, and a generator
//! thread pinned to each CPU. A veth hands a frame to the peer's queue
//! numbered after the sending CPU and runs that queue's NAPI there, so each
//! CPU carries a whole gen -> director -> sink path of its own; the sink's
//! per-CPU counts show that every CPU forwarded its share.

use lb_userspace::netdev::Mac;
use std::{
    fs::File,
    io::Write as _,
    net::Ipv4Addr,
    os::fd::{AsFd as _, AsRawFd as _},
    process::{Command, Stdio},
    sync::Barrier,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    maps::{Array, PerCpuArray},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use lb_common::{
    BACKEND_F_ALIVE, Backend, DEFAULT_FLOOD_NEW_FLOWS_PER_SEC, DEFAULT_RING_SIZE, Settings, Stat, VIP_KIND_SERVICE,
    VipKey, proto,
};
use lb_userspace::{
    fast_path::{EBPF_BENCH_OBJECT, FastPath, FastPathOptions},
    maglev,
};

use super::{
    NOISY_OTHER_CPU_BUSY, NOISY_RUN_DELAY, median,
    sys::{CpuTimes, delay_fraction, in_ns, online_cpus, pin_to_cpu, run_delay},
};
use crate::{
    netns::{self, Netns},
    packet::{self as pkt, Ipv4, addr16},
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 100);
const VIP_PORT: u16 = 80;
/// The reference nftables rule hashes onto 16 MACs; the balancer gets as many backends.
const BACKENDS: u32 = 16;
const BATCH: u32 = 64;
/// Frames of the call that sizes a setup's measured calls (and warms the
/// balancer's flow table with every flow the generator sends).
const CALIBRATION_FRAMES: u32 = 1_000_000;
const NFT_TABLE: &str = "lbbench";

/// The headline's frames: the minimum Ethernet frame without FCS.
pub const HEADLINE_BYTES: usize = 60;
/// Frame sizes of the frames curve, in bytes from the Ethernet header to the
/// end of the payload (no FCS on a veth).
pub const CURVE_SIZES: [usize; 3] = [64, 512, 1500];
/// The largest frame the testbed carries: a veth drops frames over its MTU
/// (1500) plus the Ethernet header.
pub const MAX_FRAME_BYTES: usize = 1514;
/// What each point of the curve compares; the MAC-swap floor only explains
/// the headline.
pub const CURVE_SETUPS: [Setup; 4] = [Setup::Floor, Setup::Lb, Setup::Bridge, Setup::Nft];
/// In the spread-out case, a CPU whose sink count is under this share of an
/// even split did not carry its path: the point fails.
const MIN_CPU_SHARE: f64 = 0.5;

/// The JSON keys of the frames curve: Mpps per setup and size, single queue
/// and spread over the CPUs (`_mq`), and lb over the floor per point
/// (median of per-round ratios). Every key is listed by [`curve_key`].
pub const CURVE_KEYS: &[&str] = &[
    "veth_mpps_floor_64",
    "veth_mpps_floor_512",
    "veth_mpps_floor_1500",
    "veth_mpps_lb_64",
    "veth_mpps_lb_512",
    "veth_mpps_lb_1500",
    "veth_mpps_bridge_64",
    "veth_mpps_bridge_512",
    "veth_mpps_bridge_1500",
    "veth_mpps_nft_64",
    "veth_mpps_nft_512",
    "veth_mpps_nft_1500",
    "veth_mpps_floor_mq_64",
    "veth_mpps_floor_mq_512",
    "veth_mpps_floor_mq_1500",
    "veth_mpps_lb_mq_64",
    "veth_mpps_lb_mq_512",
    "veth_mpps_lb_mq_1500",
    "veth_mpps_bridge_mq_64",
    "veth_mpps_bridge_mq_512",
    "veth_mpps_bridge_mq_1500",
    "veth_mpps_nft_mq_64",
    "veth_mpps_nft_mq_512",
    "veth_mpps_nft_mq_1500",
    "veth_lb_vs_floor_64",
    "veth_lb_vs_floor_512",
    "veth_lb_vs_floor_1500",
    "veth_lb_vs_floor_mq_64",
    "veth_lb_vs_floor_mq_512",
    "veth_lb_vs_floor_mq_1500",
];

/// The key of figure `what` (`mpps_lb`, `lb_vs_floor`, ...) at one point.
pub fn curve_key(what: &str, bytes: usize, spread: bool) -> String {
    format!("veth_{what}_{}{bytes}", if spread { "mq_" } else { "" })
}

/// Parses a comma-separated list of frame sizes (`64,512,1500`).
pub fn parse_sizes(list: &str) -> anyhow::Result<Vec<usize>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let n: usize = s.trim().parse().with_context(|| format!("frame size {s:?}"))?;
            ensure!(
                (HEADLINE_BYTES..=MAX_FRAME_BYTES).contains(&n),
                "frame size {n}: the testbed carries {HEADLINE_BYTES} to {MAX_FRAME_BYTES} bytes"
            );
            Ok(n)
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `bench_redirect` on d0 to d1: the forwarding floor.
    Floor,
    /// `bench_redirect_swap` on d0 to d1: the floor plus a first touch of
    /// each frame (swap its MACs), as any forwarder reads its frames.
    FloorSwap,
    /// `lb_xdp` on d0, two-armed DR out of d1.
    Lb,
    /// A Linux bridge over d0 and d1 (`peer_pass` on d0 for delivery).
    Bridge,
    /// nftables netdev ingress on d0: jhash onto 16 MACs and `fwd` to d1.
    Nft,
}

impl Setup {
    pub const ALL: [Setup; 5] = [Setup::Floor, Setup::FloorSwap, Setup::Lb, Setup::Bridge, Setup::Nft];

    pub fn label(self) -> &'static str {
        match self {
            Setup::Floor => "floor (bench_redirect d0 -> d1)",
            Setup::FloorSwap => "floor + MAC swap (bench_redirect_swap d0 -> d1)",
            Setup::Lb => "lb_xdp (Maglev + flow table, redirect to d1)",
            Setup::Bridge => "Linux bridge (XDP_PASS on d0)",
            Setup::Nft => "nftables netdev jhash + fwd (XDP_PASS on d0)",
        }
    }

    /// The setup's part of a JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Setup::Floor => "floor",
            Setup::FloorSwap => "floor_swap",
            Setup::Lb => "lb",
            Setup::Bridge => "bridge",
            Setup::Nft => "nft",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub runs: usize,
    pub seconds: f64,
    pub flows: u32,
    /// Rounds per point of the frames curve; 0 leaves the curve out.
    pub curve_runs: usize,
    /// Frame sizes of the curve.
    pub sizes: Vec<usize>,
}

#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub mpps: f64,
    /// Frames that reached the sink over frames generated.
    pub delivered: f64,
    /// The least busy of the generator's CPUs.
    pub gen_cpu_busy: f64,
    /// The busiest CPU without a generator (0 when every CPU has one).
    pub other_cpu_busy: f64,
    /// Fraction of the call a generator thread waited for its CPU, the worst.
    pub run_delay: f64,
    pub wall: Duration,
    /// The sink's count on the generator CPU that counted least, over an
    /// even split of all frames counted (1 with one generator).
    pub min_cpu_share: f64,
}

/// Each setup's runs, in the order measured.
pub type Series = Vec<(Setup, Vec<Run>)>;

fn series_mpps(series: &Series, setup: Setup) -> Option<f64> {
    series.iter().find(|(s, _)| *s == setup).map(|(_, runs)| median(&runs.iter().map(|r| r.mpps).collect::<Vec<_>>()))
}

/// `a` over `b` within each round, median over rounds: the two ran
/// seconds apart, so the host's drifting speed mostly cancels.
fn series_ratio(series: &Series, a: Setup, b: Setup) -> f64 {
    let runs = |s: Setup| series.iter().find(|(x, _)| *x == s).map(|(_, r)| r.as_slice()).unwrap_or(&[]);
    median(&runs(a).iter().zip(runs(b)).map(|(x, y)| x.mpps / y.mpps).collect::<Vec<_>>())
}

/// Fastest run over slowest, per setup, the worst of them.
fn series_spread(series: &Series) -> f64 {
    series
        .iter()
        .map(|(_, runs)| {
            let max = runs.iter().map(|r| r.mpps).fold(f64::NAN, f64::max);
            let min = runs.iter().map(|r| r.mpps).fold(f64::NAN, f64::min);
            max / min
        })
        .fold(1.0, f64::max)
}

/// One point of the frames curve.
#[derive(Debug)]
pub struct Point {
    pub bytes: usize,
    /// CPUs the director's receive was spread over (1: single queue).
    pub cpus: usize,
    pub setups: Series,
    /// Why the point has no figures.
    pub failure: Option<String>,
}

impl Point {
    pub fn spread(&self) -> bool {
        self.cpus > 1
    }

    pub fn name(&self) -> String {
        if self.spread() { format!("{} B, {} CPUs", self.bytes, self.cpus) } else { format!("{} B, 1 CPU", self.bytes) }
    }

    pub fn mpps(&self, setup: Setup) -> f64 {
        series_mpps(&self.setups, setup).unwrap_or(f64::NAN)
    }

    pub fn ratio(&self, a: Setup, b: Setup) -> f64 {
        series_ratio(&self.setups, a, b)
    }
}

#[derive(Debug)]
pub struct Results {
    /// The headline: 60-byte frames, one CPU.
    pub setups: Series,
    pub warnings: Vec<String>,
}

impl Results {
    pub fn mpps(&self, setup: Setup) -> Option<f64> {
        series_mpps(&self.setups, setup)
    }

    /// `a` over `b` within each round, median over rounds.
    pub fn ratio(&self, a: Setup, b: Setup) -> f64 {
        series_ratio(&self.setups, a, b)
    }

    /// Fastest run over slowest, per setup, the worst of them.
    pub fn spread(&self) -> f64 {
        series_spread(&self.setups)
    }

    pub fn noisy(&self) -> bool {
        self.setups
            .iter()
            .flat_map(|(_, runs)| runs)
            .any(|r| r.other_cpu_busy > NOISY_OTHER_CPU_BUSY || r.run_delay > NOISY_RUN_DELAY)
    }
}

/// The frames curve: every size on one CPU, then spread over every CPU.
#[derive(Debug)]
pub struct Curve {
    pub points: Vec<Point>,
    pub warnings: Vec<String>,
}

impl Curve {
    /// The figures under their keys (NaN where a point failed).
    pub fn figures(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for p in &self.points {
            for s in CURVE_SETUPS {
                out.push((curve_key(&format!("mpps_{}", s.key()), p.bytes, p.spread()), p.mpps(s)));
            }
            out.push((curve_key("lb_vs_floor", p.bytes, p.spread()), p.ratio(Setup::Lb, Setup::Floor)));
        }
        out
    }

    /// Why points could not be measured.
    pub fn failures(&self) -> Vec<String> {
        self.points.iter().filter_map(|p| p.failure.as_ref().map(|f| format!("veth {}: {f}", p.name()))).collect()
    }
}

/// An Ethernet/IPv4/UDP frame of `bytes` bytes (at least 42), from the
/// client to the VIP, UDP checksum zero.
fn udp_frame_of(bytes: usize, dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let payload = vec![0u8; bytes.saturating_sub(14 + 20 + 8)];
    let ip = Ipv4::new(CLIENT, VIP, proto::UDP).build(&pkt::udp(1024, VIP_PORT, &payload));
    pkt::ethernet(dst_mac, src_mac, None, pkt::ETH_P_IP, &ip)
}

fn backend_mac(id: u32) -> [u8; 6] {
    [0x02, 0, 0, 0, 0xBE, id as u8]
}

fn ifindex_in(ns: &Netns, iface: &str) -> anyhow::Result<u32> {
    let text = ns.exec("cat", &[&format!("/sys/class/net/{iface}/ifindex")])?;
    text.trim().parse().with_context(|| format!("ifindex of {iface}: {text:?}"))
}

fn xdp_mut<'a>(dp: &'a mut FastPath, name: &str) -> anyhow::Result<&'a mut Xdp> {
    dp.ebpf_mut()
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

/// An attached program, detached by `Lab::detach`.
struct Attached {
    prog: &'static str,
    link: XdpLinkId,
}

struct Lab {
    // Declared first, dropped first: the Ebpf (with its links) before the namespaces.
    dp: FastPath,
    gen_ns: Netns,
    dir: Netns,
    sink: Netns,
    g0: u32,
    d1: u32,
    g0_mac: [u8; 6],
    d0_mac: [u8; 6],
    d1_mac: [u8; 6],
    s0_mac: [u8; 6],
}

impl Lab {
    /// The testbed with `queues` receive and transmit queues on every veth.
    fn new(flows: u32, queues: usize) -> anyhow::Result<Self> {
        let gen_ns = Netns::new("gen")?;
        let dir = Netns::new("dir")?;
        let sink = Netns::new("sink")?;
        for ns in [&gen_ns, &dir, &sink] {
            // No IPv6: no router solicitations or DAD frames in the counts.
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        }
        if queues == 1 {
            netns::veth(&gen_ns, "g0", &dir, "d0")?;
            netns::veth(&dir, "d1", &sink, "s0")?;
        } else {
            veth_queues(&gen_ns, "g0", &dir, "d0", queues)?;
            veth_queues(&dir, "d1", &sink, "s0", queues)?;
        }
        gen_ns.ip(&["addr", "add", "10.211.0.1/24", "dev", "g0"])?;
        sink.ip(&["addr", "add", "10.211.1.3/24", "dev", "s0"])?;

        let mut dp = FastPath::load_object(EBPF_BENCH_OBJECT, FastPathOptions::default(), None)
            .context("loading the XDP object")?;
        for name in ["peer_pass", "bench_sink", "bench_gen", "bench_redirect", "bench_redirect_swap"] {
            xdp_mut(&mut dp, name)?.load().with_context(|| format!("loading {name}"))?;
        }
        let mut lab = Self {
            g0: ifindex_in(&gen_ns, "g0")?,
            d1: ifindex_in(&dir, "d1")?,
            g0_mac: netns::mac_of(&gen_ns, "g0")?,
            d0_mac: netns::mac_of(&dir, "d0")?,
            d1_mac: netns::mac_of(&dir, "d1")?,
            s0_mac: netns::mac_of(&sink, "s0")?,
            dp,
            gen_ns,
            dir,
            sink,
        };
        {
            let mut cfg: Array<_, u32> =
                Array::try_from(lab.dp.ebpf_mut().map_mut("BENCH_CFG").context("BENCH_CFG missing")?)?;
            cfg.set(0, lab.d1, 0)?;
            cfg.set(1, flows, 0)?;
        }
        lab.setup_balancer()?;
        // These two stay for the whole bench; the namespaces' deletion detaches them.
        lab.attach_in(Where::Gen, "peer_pass", "g0")?;
        lab.attach_in(Where::Sink, "bench_sink", "s0")?;
        Ok(lab)
    }

    /// The balancer as the agent would fill it for this VIP, minus the
    /// attach, which each run does and undoes.
    fn setup_balancer(&mut self) -> anyhow::Result<()> {
        let dp = &mut self.dp;
        dp.set_iface(self.d1, self.d1_mac)?;
        dp.set_settings(Settings::new(DEFAULT_FLOOD_NEW_FLOWS_PER_SEC, self.d1))?;
        let mut entries = Vec::new();
        for id in 1..=BACKENDS {
            // Distinct MACs none of which is s0's: XDP on a veth runs before
            // any MAC filtering, so the sink counts them all (the delivered
            // fraction printed per run shows it).
            dp.set_backend(id, Backend { mac: backend_mac(id), flags: BACKEND_F_ALIVE, vip_index: 0 })?;
            let key = Ipv4Addr::new(10, 211, 1, 10 + id as u8).to_ipv6_mapped().octets();
            entries.push(maglev::Entry { key, weight: 1, id });
        }
        let ring = maglev::build(&entries, DEFAULT_RING_SIZE).context("building the Maglev ring")?;
        let key =
            VipKey { addr: addr16(VIP.into()), port: VIP_PORT.to_be(), proto: proto::UDP, kind: VIP_KIND_SERVICE };
        dp.install_vip(&[key], 0, 0, &ring)?;
        Ok(())
    }

    /// Attaches `prog` natively to `iface` from inside its namespace (the
    /// kernel resolves the ifindex in the caller's namespace).
    fn attach_in(&mut self, w: Where, prog: &'static str, iface: &str) -> anyhow::Result<Attached> {
        let ns = match w {
            Where::Gen => &self.gen_ns,
            Where::Dir => &self.dir,
            Where::Sink => &self.sink,
        };
        let dp = &mut self.dp;
        let link = in_ns(ns, || {
            let ifindex = lb_userspace::fast_path::ifindex(iface)?;
            xdp_mut(dp, prog)?
                .attach_to_if_index(ifindex, XdpMode::Driver)
                .with_context(|| format!("attaching {prog} natively to {iface}"))
        })?;
        Ok(Attached { prog, link })
    }

    fn detach(&mut self, a: Attached) -> anyhow::Result<()> {
        let dp = &mut self.dp;
        in_ns(&self.dir, || xdp_mut(dp, a.prog)?.detach(a.link).with_context(|| format!("detaching {}", a.prog)))
    }

    /// The sink's count per CPU.
    fn sink_counts(&mut self) -> anyhow::Result<Vec<u64>> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.dp.ebpf_mut().map("BENCH_COUNT").context("BENCH_COUNT missing")?)?;
        Ok(map.get(&0, 0)?.to_vec())
    }

    fn stats(&self) -> anyhow::Result<Vec<u64>> {
        Ok(self.dp.stats()?.into_iter().map(|(_, c)| c.packets).collect())
    }

    /// Puts `setup` in place on the director; returns what to undo.
    fn start(&mut self, setup: Setup) -> anyhow::Result<Option<Attached>> {
        match setup {
            Setup::Floor => Ok(Some(self.attach_in(Where::Dir, "bench_redirect", "d0")?)),
            Setup::FloorSwap => Ok(Some(self.attach_in(Where::Dir, "bench_redirect_swap", "d0")?)),
            Setup::Lb => Ok(Some(self.attach_in(Where::Dir, lb_common::names::PROGRAM, "d0")?)),
            Setup::Bridge | Setup::Nft => {
                let a = self.attach_in(Where::Dir, "peer_pass", "d0")?;
                let up = if setup == Setup::Bridge { self.bridge_up() } else { self.nft_up() };
                if let Err(e) = up {
                    // Leave the director as it was, so the next setup can start;
                    // the error that matters is the one above.
                    let _ = self.stop(setup, Some(a));
                    return Err(e);
                }
                Ok(Some(a))
            }
        }
    }

    /// A Linux bridge over d0 and d1.
    fn bridge_up(&self) -> anyhow::Result<()> {
        let dir = &self.dir;
        dir.ip(&["link", "add", "br0", "type", "bridge", "stp_state", "0"])?;
        dir.ip(&["link", "set", "d0", "master", "br0"])?;
        dir.ip(&["link", "set", "d1", "master", "br0"])?;
        dir.ip(&["link", "set", "br0", "up"])?;
        // A known unicast destination, as a switch in front of
        // backends would have learned: no flooding.
        dir.exec("bridge", &["fdb", "replace", &Mac(self.s0_mac).to_string(), "dev", "d1", "master", "static"])?;
        // Present only where br_netfilter is loaded; the namespace's own copies.
        dir.exec(
            "sh",
            &["-c", "for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e \"$f\" ] && echo 0 > \"$f\"; done; true"],
        )?;
        Ok(())
    }

    /// The nftables netdev rule on d0.
    fn nft_up(&self) -> anyhow::Result<()> {
        let map: Vec<String> = (1..=BACKENDS).map(|id| format!("{} : {}", id - 1, Mac(backend_mac(id)))).collect();
        // The rule known to work here (shared/reference/datapath.md),
        // without a VIP match, so nothing is added to nftables' cost.
        let rules = format!(
            "table netdev {NFT_TABLE} {{\n  chain ingress {{\n    type filter hook ingress device \"d0\" priority 0; policy accept;\n    \
             ether daddr set jhash ip saddr . ip daddr . udp sport . udp dport mod {BACKENDS} map {{ {} }} fwd to \"d1\"\n  }}\n}}\n",
            map.join(", ")
        );
        nft_stdin(&self.dir, &rules).context("loading the nftables ruleset")?;
        Ok(())
    }

    /// Undoes `start`; the program is detached even when the rest fails.
    fn stop(&mut self, setup: Setup, attached: Option<Attached>) -> anyhow::Result<()> {
        let torn_down = match setup {
            Setup::Bridge => self.dir.ip(&["link", "del", "br0"]).map(drop),
            Setup::Nft => self.dir.exec("nft", &["delete", "table", "netdev", NFT_TABLE]).map(drop),
            Setup::Floor | Setup::FloorSwap | Setup::Lb => Ok(()),
        };
        if let Some(a) = attached {
            self.detach(a)?;
        }
        torn_down
    }

    /// One generator call of `frames` frames on each CPU of `gen_cpus`, the
    /// calls started together: what reached the sink, and how long it took.
    fn generate(&mut self, frame: &[u8], frames: u32, gen_cpus: &[usize]) -> anyhow::Result<Run> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let md: [u32; 6] = [0, frame.len() as u32, 0, self.g0, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let ns_path = format!("/run/netns/{}", self.gen_ns.name());
        let ns_file = File::open(&ns_path).with_context(|| format!("opening {ns_path}"))?;
        let before = self.sink_counts()?;
        let prog: &Xdp = xdp_mut(&mut self.dp, "bench_gen")?;
        let start_together = Barrier::new(gen_cpus.len());
        let t0 = CpuTimes::now()?;
        let calls: Vec<(Duration, f64)> = std::thread::scope(|s| {
            let threads: Vec<_> = gen_cpus
                .iter()
                .map(|&cpu| {
                    let (ns_file, ctx, start_together) = (&ns_file, &ctx, &start_together);
                    s.spawn(move || {
                        // Every thread reaches the barrier, failed or not, so none waits forever.
                        // SAFETY: setns on an open namespace fd affects only this thread.
                        let entered = if unsafe { libc::setns(ns_file.as_fd().as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
                            Ok(())
                        } else {
                            Err(std::io::Error::last_os_error()).context("entering the generator's namespace")
                        };
                        let pinned = pin_to_cpu(cpu);
                        start_together.wait();
                        entered?;
                        pinned?;
                        let mut opts = TestRunOptions::new();
                        opts.data_in = Some(frame);
                        opts.ctx_in = Some(ctx);
                        opts.repeat = frames;
                        opts.attrs = TestRunAttrs::new().xdp_live_frames(BATCH);
                        let d0 = run_delay();
                        let start = Instant::now();
                        prog.test_run(opts).context("BPF_PROG_TEST_RUN with live frames (the generator)")?;
                        let wall = start.elapsed();
                        Ok((wall, delay_fraction(d0, run_delay(), wall)))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        let busy = CpuTimes::now()?.busy_since(&t0);
        let after = self.sink_counts()?;
        let counted: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a.saturating_sub(*b)).collect();
        let delivered: u64 = counted.iter().sum();
        let wall = calls.iter().map(|c| c.0).max().unwrap_or_default();
        // Each generator's frames are counted on its own CPU (see the module
        // comment): the rate is the sum of the CPUs' rates over their own calls.
        let mpps = if gen_cpus.len() == 1 {
            delivered as f64 / wall.as_secs_f64() / 1e6
        } else {
            gen_cpus
                .iter()
                .zip(&calls)
                .map(|(&cpu, c)| counted.get(cpu).copied().unwrap_or(0) as f64 / c.0.as_secs_f64() / 1e6)
                .sum()
        };
        let even = delivered as f64 / gen_cpus.len() as f64;
        let min_cpu_share = if gen_cpus.len() == 1 {
            1.0
        } else {
            gen_cpus.iter().map(|&c| counted.get(c).copied().unwrap_or(0) as f64 / even).fold(f64::INFINITY, f64::min)
        };
        Ok(Run {
            mpps,
            delivered: delivered as f64 / (f64::from(frames) * gen_cpus.len() as f64),
            gen_cpu_busy: gen_cpus.iter().map(|&c| busy.get(c).copied().unwrap_or(f64::NAN)).fold(f64::NAN, f64::min),
            other_cpu_busy: busy
                .iter()
                .enumerate()
                .filter(|(c, _)| !gen_cpus.contains(c))
                .map(|(_, b)| *b)
                .fold(0.0, f64::max),
            run_delay: calls.iter().map(|c| c.1).fold(0.0, f64::max),
            wall,
            min_cpu_share,
        })
    }
}

#[derive(Clone, Copy)]
enum Where {
    Gen,
    Dir,
    Sink,
}

fn nft_stdin(ns: &Netns, rules: &str) -> anyhow::Result<()> {
    let mut child: std::process::Child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning nft (Debian package nftables)")?;
    child.stdin.take().context("nft stdin")?.write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft -f failed ({}): {}\nruleset:\n{rules}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Whether `nft` can be run at all (it is a Debian package xtask installs).
pub fn nft_available() -> bool {
    Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A veth pair from `a` (`a_if`) to `b` (`b_if`) with `queues` receive and
/// transmit queues at each end, both ends up. XDP on a veth wants at least
/// as many receive queues as its peer has transmit queues.
fn veth_queues(a: &Netns, a_if: &str, b: &Netns, b_if: &str, queues: usize) -> anyhow::Result<()> {
    let q = queues.to_string();
    a.ip(&[
        "link",
        "add",
        a_if,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// What one measurement compares, and how.
struct Plan<'a> {
    setups: &'a [Setup],
    bytes: usize,
    /// A generator thread on each; the director's receive follows them.
    gen_cpus: &'a [usize],
    runs: usize,
    seconds: f64,
    /// Frames per generator in the calibration call.
    calibration_frames: u32,
    /// The fewest frames per generator in a measured call.
    min_frames: u32,
}

/// Runs every setup of `plan` `plan.runs` times, interleaved so drift hits
/// all alike, after a calibration round.
fn measure(
    lab: &mut Lab,
    plan: &Plan<'_>,
    say: &mut dyn FnMut(String),
    warnings: &mut Vec<String>,
) -> anyhow::Result<Series> {
    let setups = plan.setups;
    let frame_to_dir = udp_frame_of(plan.bytes, lab.d0_mac, lab.g0_mac);
    let frame_to_sink = udp_frame_of(plan.bytes, lab.s0_mac, lab.g0_mac);
    let cpus = plan.gen_cpus.len();
    let cpu_names = plan.gen_cpus.iter().map(|c| format!("CPU{c}")).collect::<Vec<_>>().join("+");

    let mut frames_per_call = vec![0u32; setups.len()];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); setups.len()];
    for round in 0..=plan.runs {
        // Every other round in reverse (A B C D, D C B A, ...): the host's
        // speed drifts over seconds, and a drift that favours the later of
        // two setups in one round favours the other in the next, so it
        // cancels out of the per-round ratios' median.
        let order: Vec<usize> =
            if round % 2 == 0 { (0..setups.len()).collect() } else { (0..setups.len()).rev().collect() };
        for i in order {
            let setup = setups[i];
            if super::sys::interrupted() {
                bail!("interrupted");
            }
            let frame = if setup == Setup::Bridge { &frame_to_sink } else { &frame_to_dir };
            let attached = lab.start(setup)?;
            let stats_before = lab.stats()?;
            // Round 0 sizes the calls (and warms the flow table and caches).
            let frames = if round == 0 { plan.calibration_frames } else { frames_per_call[i] };
            let result = lab.generate(frame, frames, plan.gen_cpus);
            let stats_after = lab.stats();
            lab.stop(setup, attached)?;
            let r = result?;
            let generated = u64::from(frames) * cpus as u64;
            if r.delivered < 0.001 {
                bail!("{}: {generated} frames generated, {:.4}% reached the sink", setup.label(), r.delivered * 100.0);
            }
            if cpus > 1 && r.min_cpu_share < MIN_CPU_SHARE {
                bail!(
                    "{}: the receive did not spread over {cpu_names}: the CPU that counted least got {:.0}% of an \
                     even share",
                    setup.label(),
                    r.min_cpu_share * 100.0
                );
            }
            if setup == Setup::Lb {
                let delta: Vec<u64> =
                    stats_after?.iter().zip(&stats_before).map(|(a, b)| a.saturating_sub(*b)).collect();
                check_lb(&delta, generated, round, warnings);
            }
            if round == 0 {
                let target = r.mpps * 1e6 * plan.seconds / cpus as f64;
                frames_per_call[i] = target.clamp(f64::from(plan.min_frames), f64::from(u32::MAX)) as u32;
                say(format!(
                    "  calibration {:<48} {:6.2} Mpps -> {} frames per call{}",
                    setup.label(),
                    r.mpps,
                    frames_per_call[i],
                    if cpus > 1 { " per CPU" } else { "" }
                ));
                continue;
            }
            let others = if r.other_cpu_busy > 0.0 || cpus == 1 {
                format!(", others {:3.0}%", r.other_cpu_busy * 100.0)
            } else {
                String::new()
            };
            say(format!(
                "  run {round}/{} {:<48} {:6.2} Mpps ({:5.1} ns/frame)  delivered {:5.1}%  {:.2} s  {cpu_names} {:3.0}% busy (waited {:.1}%){others}{}",
                plan.runs,
                setup.label(),
                r.mpps,
                1e3 / r.mpps,
                r.delivered * 100.0,
                r.wall.as_secs_f64(),
                r.gen_cpu_busy * 100.0,
                r.run_delay * 100.0,
                if cpus > 1 {
                    format!(", least CPU {:.0}% of an even share", r.min_cpu_share * 100.0)
                } else {
                    String::new()
                }
            ));
            if r.wall.as_secs_f64() > 3.0 * plan.seconds + 1.0 {
                warnings.push(format!(
                    "{}: a call took {:.1} s (asked for {:.1} s)",
                    setup.label(),
                    r.wall.as_secs_f64(),
                    plan.seconds
                ));
            }
            if r.gen_cpu_busy < 0.9 {
                warnings.push(format!(
                    "{}: the generator's CPU was only {:.0}% busy",
                    setup.label(),
                    r.gen_cpu_busy * 100.0
                ));
            }
            runs[i].push(r);
        }
        let last =
            |s: Setup| setups.iter().position(|&x| x == s).and_then(|i| runs[i].last()).map_or(f64::NAN, |r| r.mpps);
        if round > 0 {
            say(format!(
                "  round {round}: lb/floor {:.3}, lb/nft {:.2}",
                last(Setup::Lb) / last(Setup::Floor),
                last(Setup::Lb) / last(Setup::Nft)
            ));
        }
    }
    Ok(setups.iter().copied().zip(runs).collect())
}

/// What `lb_xdp`'s counters say about a call of `generated` frames.
fn check_lb(delta: &[u64], generated: u64, round: usize, warnings: &mut Vec<String>) {
    let tx = delta[Stat::Tx as usize];
    // Every flow is recorded in the calibration round: later rounds should
    // be flow-table hits only.
    let misses = delta[Stat::FlowMiss as usize];
    if round > 0 && misses * 100 > generated {
        let msg = format!("lb_xdp: {misses} of {generated} frames missed the flow table");
        if !warnings.contains(&msg) {
            warnings.push(msg);
        }
    }
    if tx * 100 < generated * 99 {
        let msg = format!(
            "lb_xdp forwarded {tx} of {generated} frames: {}",
            Stat::ALL
                .iter()
                .filter(|s| delta[**s as usize] != 0)
                .map(|s| format!("{}={}", s.name(), delta[*s as usize]))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if !warnings.contains(&msg) {
            warnings.push(msg);
        }
    }
}

/// The headline: 60-byte frames, one CPU, every setup.
pub fn run(opts: &Options, gen_cpu: usize, say: &mut dyn FnMut(String)) -> anyhow::Result<Results> {
    let mut warnings = Vec::new();
    let setups: Vec<Setup> = Setup::ALL
        .into_iter()
        .filter(|s| {
            let ok = *s != Setup::Nft || nft_available();
            if !ok {
                warnings.push("nft not found: the nftables setup is skipped (apt-get install nftables)".to_owned());
            }
            ok
        })
        .collect();
    let mut lab = Lab::new(opts.flows, 1)?;
    let plan = Plan {
        setups: &setups,
        bytes: HEADLINE_BYTES,
        gen_cpus: &[gen_cpu],
        runs: opts.runs,
        seconds: opts.seconds,
        calibration_frames: CALIBRATION_FRAMES,
        min_frames: 1_000_000,
    };
    let setups = measure(&mut lab, &plan, say, &mut warnings)?;
    Ok(Results { setups, warnings })
}

/// The frames curve: each size of `opts.sizes` on `gen_cpu`, then with the
/// director's receive spread over every CPU. A point that cannot be
/// measured says why in its `failure`; the others are measured still.
pub fn run_curve(opts: &Options, gen_cpu: usize, say: &mut dyn FnMut(String)) -> Curve {
    let mut curve = Curve { points: Vec::new(), warnings: Vec::new() };
    if opts.curve_runs == 0 || opts.sizes.is_empty() {
        return curve;
    }
    say(format!(
        "== veth frames curve: {} B frames, floor / lb / bridge / nft, {} x {:.1} s per setup and point; one CPU, \
         then the director's receive spread over every CPU (a queue and a generator thread per CPU)",
        opts.sizes.iter().map(ToString::to_string).collect::<Vec<_>>().join(" / "),
        opts.curve_runs,
        opts.seconds
    ));
    for spread in [false, true] {
        let gen_cpus: Vec<usize> = if spread { (0..online_cpus()).collect() } else { vec![gen_cpu] };
        let lab = if spread && gen_cpus.len() < 2 {
            Err(anyhow::anyhow!("one CPU online: nothing to spread over"))
        } else {
            Lab::new(opts.flows, gen_cpus.len())
        };
        match lab {
            Ok(mut lab) => curve_on(&mut lab, opts, &gen_cpus, say, &mut curve),
            Err(e) => {
                for &bytes in &opts.sizes {
                    let failure = Some(format!("no testbed: {e:#}"));
                    let cpus = if spread { gen_cpus.len().max(2) } else { 1 };
                    curve.points.push(Point { bytes, cpus, setups: Vec::new(), failure });
                }
            }
        }
    }
    curve
}

/// Every size of the curve on `lab`, generated from `gen_cpus`.
fn curve_on(lab: &mut Lab, opts: &Options, gen_cpus: &[usize], say: &mut dyn FnMut(String), curve: &mut Curve) {
    let nft = nft_available();
    for &bytes in &opts.sizes {
        let mut point = Point { bytes, cpus: gen_cpus.len(), setups: Vec::new(), failure: None };
        say(format!("  -- {}", point.name()));
        // Fewer frames than the headline's calibration: they only need to
        // size the calls and show the balancer every flow once.
        let plan = Plan {
            setups: &CURVE_SETUPS,
            bytes,
            gen_cpus,
            runs: opts.curve_runs,
            seconds: opts.seconds,
            calibration_frames: 300_000,
            min_frames: 100_000,
        };
        let measured = if nft {
            measure(lab, &plan, say, &mut curve.warnings)
        } else {
            Err(anyhow::anyhow!("nft not found (apt-get install nftables)"))
        };
        match measured {
            Ok(setups) => {
                point.setups = setups;
                say(format!(
                    "  {}: floor {:.2}, lb {:.2}, bridge {:.2}, nft {:.2} Mpps (medians); lb/floor {:.3}, lb/nft {:.2} \
                     (per-round ratios, medians); rounds within {:.2}x",
                    point.name(),
                    point.mpps(Setup::Floor),
                    point.mpps(Setup::Lb),
                    point.mpps(Setup::Bridge),
                    point.mpps(Setup::Nft),
                    point.ratio(Setup::Lb, Setup::Floor),
                    point.ratio(Setup::Lb, Setup::Nft),
                    series_spread(&point.setups)
                ));
            }
            Err(e) => {
                say(format!("  FAIL: {}: {e:#}", point.name()));
                point.failure = Some(format!("{e:#}"));
            }
        }
        curve.points.push(point);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_keys_are_the_figures_keys() {
        let points: Vec<Point> = [false, true]
            .into_iter()
            .flat_map(|spread| {
                CURVE_SIZES.map(|bytes| Point {
                    bytes,
                    cpus: if spread { 2 } else { 1 },
                    setups: Vec::new(),
                    failure: None,
                })
            })
            .collect();
        let curve = Curve { points, warnings: Vec::new() };
        let mut keys: Vec<String> = curve.figures().into_iter().map(|(k, _)| k).collect();
        keys.sort();
        let mut listed: Vec<String> = CURVE_KEYS.iter().map(|k| (*k).to_owned()).collect();
        listed.sort();
        assert_eq!(keys, listed);
    }

    #[test]
    fn frames_have_the_asked_size() {
        for bytes in CURVE_SIZES.into_iter().chain([HEADLINE_BYTES, MAX_FRAME_BYTES]) {
            assert_eq!(udp_frame_of(bytes, [1; 6], [2; 6]).len(), bytes);
        }
        assert!(parse_sizes("64,512,1500").is_ok());
        assert!(parse_sizes("32").is_err());
        assert!(parse_sizes("1515").is_err());
    }
}
