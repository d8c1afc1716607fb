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

use lb_userspace::netdev::Mac;
use std::{
    io::Write as _,
    net::Ipv4Addr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
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
    sys::{CpuTimes, delay_fraction, in_ns, run_delay},
    udp_frame,
};
use crate::{
    netns::{self, Netns},
    packet::addr16,
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
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub runs: usize,
    pub seconds: f64,
    pub flows: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub mpps: f64,
    /// Frames that reached the sink over frames generated.
    pub delivered: f64,
    pub gen_cpu_busy: f64,
    pub other_cpu_busy: f64,
    /// Fraction of the call the generator thread waited for its CPU.
    pub run_delay: f64,
    pub wall: Duration,
}

#[derive(Debug)]
pub struct Results {
    pub setups: Vec<(Setup, Vec<Run>)>,
    pub warnings: Vec<String>,
}

impl Results {
    pub fn mpps(&self, setup: Setup) -> Option<f64> {
        self.setups
            .iter()
            .find(|(s, _)| *s == setup)
            .map(|(_, runs)| median(&runs.iter().map(|r| r.mpps).collect::<Vec<_>>()))
    }

    /// `a` over `b` within each round, median over rounds: the two ran
    /// seconds apart, so the host's drifting speed mostly cancels.
    pub fn ratio(&self, a: Setup, b: Setup) -> f64 {
        let runs = |s: Setup| self.setups.iter().find(|(x, _)| *x == s).map(|(_, r)| r.as_slice()).unwrap_or(&[]);
        median(&runs(a).iter().zip(runs(b)).map(|(x, y)| x.mpps / y.mpps).collect::<Vec<_>>())
    }

    /// Fastest run over slowest, per setup, the worst of them.
    pub fn spread(&self) -> f64 {
        self.setups
            .iter()
            .map(|(_, runs)| {
                let max = runs.iter().map(|r| r.mpps).fold(f64::NAN, f64::max);
                let min = runs.iter().map(|r| r.mpps).fold(f64::NAN, f64::min);
                max / min
            })
            .fold(1.0, f64::max)
    }

    pub fn noisy(&self) -> bool {
        self.setups
            .iter()
            .flat_map(|(_, runs)| runs)
            .any(|r| r.other_cpu_busy > NOISY_OTHER_CPU_BUSY || r.run_delay > NOISY_RUN_DELAY)
    }
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
    fn new(flows: u32) -> anyhow::Result<Self> {
        let gen_ns = Netns::new("gen")?;
        let dir = Netns::new("dir")?;
        let sink = Netns::new("sink")?;
        for ns in [&gen_ns, &dir, &sink] {
            // No IPv6: no router solicitations or DAD frames in the counts.
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        }
        netns::veth(&gen_ns, "g0", &dir, "d0")?;
        netns::veth(&dir, "d1", &sink, "s0")?;
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

    fn sink_count(&mut self) -> anyhow::Result<u64> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.dp.ebpf_mut().map("BENCH_COUNT").context("BENCH_COUNT missing")?)?;
        Ok(map.get(&0, 0)?.iter().sum())
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
            Setup::Bridge => {
                let a = self.attach_in(Where::Dir, "peer_pass", "d0")?;
                let dir = &self.dir;
                dir.ip(&["link", "add", "br0", "type", "bridge", "stp_state", "0"])?;
                dir.ip(&["link", "set", "d0", "master", "br0"])?;
                dir.ip(&["link", "set", "d1", "master", "br0"])?;
                dir.ip(&["link", "set", "br0", "up"])?;
                // A known unicast destination, as a switch in front of
                // backends would have learned: no flooding.
                dir.exec(
                    "bridge",
                    &["fdb", "replace", &Mac(self.s0_mac).to_string(), "dev", "d1", "master", "static"],
                )?;
                // Present only where br_netfilter is loaded; the namespace's own copies.
                dir.exec(
                    "sh",
                    &["-c", "for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e \"$f\" ] && echo 0 > \"$f\"; done; true"],
                )?;
                Ok(Some(a))
            }
            Setup::Nft => {
                let a = self.attach_in(Where::Dir, "peer_pass", "d0")?;
                let map: Vec<String> =
                    (1..=BACKENDS).map(|id| format!("{} : {}", id - 1, Mac(backend_mac(id)))).collect();
                // The rule known to work here (shared/reference/datapath.md),
                // without a VIP match, so nothing is added to nftables' cost.
                let rules = format!(
                    "table netdev {NFT_TABLE} {{\n  chain ingress {{\n    type filter hook ingress device \"d0\" priority 0; policy accept;\n    \
                     ether daddr set jhash ip saddr . ip daddr . udp sport . udp dport mod {BACKENDS} map {{ {} }} fwd to \"d1\"\n  }}\n}}\n",
                    map.join(", ")
                );
                nft_stdin(&self.dir, &rules).context("loading the nftables ruleset")?;
                Ok(Some(a))
            }
        }
    }

    fn stop(&mut self, setup: Setup, attached: Option<Attached>) -> anyhow::Result<()> {
        match setup {
            Setup::Bridge => {
                self.dir.ip(&["link", "del", "br0"])?;
            }
            Setup::Nft => {
                self.dir.exec("nft", &["delete", "table", "netdev", NFT_TABLE])?;
            }
            Setup::Floor | Setup::FloorSwap | Setup::Lb => {}
        }
        if let Some(a) = attached {
            self.detach(a)?;
        }
        Ok(())
    }

    /// One generator call of `frames` frames: what reached the sink, and how long it took.
    fn generate(&mut self, frame: &[u8], frames: u32, gen_cpu: usize) -> anyhow::Result<Run> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let md: [u32; 6] = [0, frame.len() as u32, 0, self.g0, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let before = self.sink_count()?;
        let gen_ns = &self.gen_ns;
        let dp = &mut self.dp;
        let (wall, busy, delay) = in_ns(gen_ns, || {
            let prog: &Xdp = xdp_mut(dp, "bench_gen")?;
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(frame);
            opts.ctx_in = Some(&ctx);
            opts.repeat = frames;
            opts.attrs = TestRunAttrs::new().xdp_live_frames(BATCH);
            let t0 = CpuTimes::now()?;
            let d0 = run_delay();
            let start = Instant::now();
            prog.test_run(opts).context("BPF_PROG_TEST_RUN with live frames (the generator)")?;
            let wall = start.elapsed();
            let delay = delay_fraction(d0, run_delay(), wall);
            Ok((wall, CpuTimes::now()?.busy_since(&t0), delay))
        })?;
        let delivered = self.sink_count()?.saturating_sub(before);
        let other = busy.iter().enumerate().filter(|(c, _)| *c != gen_cpu).map(|(_, b)| *b).fold(0.0, f64::max);
        Ok(Run {
            mpps: delivered as f64 / wall.as_secs_f64() / 1e6,
            delivered: delivered as f64 / f64::from(frames),
            gen_cpu_busy: busy.get(gen_cpu).copied().unwrap_or(f64::NAN),
            other_cpu_busy: other,
            run_delay: delay,
            wall,
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

/// Runs every setup `opts.runs` times, interleaved so drift hits all alike.
pub fn run(opts: &Options, gen_cpu: usize, say: &mut dyn FnMut(String)) -> anyhow::Result<Results> {
    let mut lab = Lab::new(opts.flows)?;
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
    let frame_to_dir = udp_frame(lab.d0_mac, lab.g0_mac, CLIENT, VIP, 1024, VIP_PORT);
    let frame_to_sink = udp_frame(lab.s0_mac, lab.g0_mac, CLIENT, VIP, 1024, VIP_PORT);

    let mut frames_per_call = vec![0u32; setups.len()];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); setups.len()];
    for round in 0..=opts.runs {
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
            let frames = if round == 0 { CALIBRATION_FRAMES } else { frames_per_call[i] };
            let result = lab.generate(frame, frames, gen_cpu);
            let stats_after = lab.stats();
            lab.stop(setup, attached)?;
            let r = result?;
            if r.delivered < 0.001 {
                bail!("{}: {} frames generated, {:.4}% reached the sink", setup.label(), frames, r.delivered * 100.0);
            }
            if setup == Setup::Lb {
                let delta: Vec<u64> =
                    stats_after?.iter().zip(&stats_before).map(|(a, b)| a.saturating_sub(*b)).collect();
                let tx = delta[Stat::Tx as usize];
                // Every flow is recorded in the calibration round: later
                // rounds should be flow-table hits only.
                let misses = delta[Stat::FlowMiss as usize];
                if round > 0 && misses * 100 > u64::from(frames) {
                    let msg = format!("lb_xdp: {misses} of {frames} frames missed the flow table");
                    if !warnings.contains(&msg) {
                        warnings.push(msg);
                    }
                }
                if tx * 100 < u64::from(frames) * 99 {
                    let msg = format!(
                        "lb_xdp forwarded {tx} of {frames} frames: {}",
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
            if round == 0 {
                let target = r.mpps * 1e6 * opts.seconds;
                frames_per_call[i] = target.clamp(1e6, f64::from(u32::MAX)) as u32;
                say(format!(
                    "  calibration {:<48} {:6.2} Mpps -> {} frames per call",
                    setup.label(),
                    r.mpps,
                    frames_per_call[i]
                ));
                continue;
            }
            say(format!(
                "  run {round}/{} {:<48} {:6.2} Mpps ({:5.1} ns/frame)  delivered {:5.1}%  {:.2} s  CPU{gen_cpu} {:3.0}% busy (waited {:.1}%), others {:3.0}%",
                opts.runs,
                setup.label(),
                r.mpps,
                1e3 / r.mpps,
                r.delivered * 100.0,
                r.wall.as_secs_f64(),
                r.gen_cpu_busy * 100.0,
                r.run_delay * 100.0,
                r.other_cpu_busy * 100.0
            ));
            if r.wall.as_secs_f64() > 3.0 * opts.seconds + 1.0 {
                warnings.push(format!(
                    "{}: a call took {:.1} s (asked for {:.1} s)",
                    setup.label(),
                    r.wall.as_secs_f64(),
                    opts.seconds
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
    Ok(Results { setups: setups.into_iter().zip(runs).collect(), warnings })
}
