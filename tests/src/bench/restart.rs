//! The agent restarted under load, as a client sees it: one director
//! ([`crate::director_pair`], director A alone, VRRP v3 at 100 ms) with
//! real TCP traffic through the VIP ([`crate::traffic`]: long-lived
//! connections echoing a line every 30 ms and a loop of short HTTP
//! requests), while its agent is SIGKILLed and started again (restart), or
//! handed over with `lb restart` to an agent that loads the other program,
//! `lb run --trace` (upgrade). The figures are what the traffic lost: failed
//! requests and broken connections (a flow moved to another backend is
//! reset by it, so it counts here too).
//!
//! And how long adopting a fast path serving 1000 backends takes: from
//! loading the program over the pinned maps to the director in charge of
//! them (every VIP kept as published, nothing flipped), in this process.

use std::{
    ffi::OsString,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use lb_userspace::{
    agent::director::Director,
    config::Config,
    fast_path::{FastPath, FastPathOptions},
};

use crate::{
    agent_proc::Bpffs,
    backend::PORT,
    director_pair::{A, DirectorPair, Lb, Options, STATE_LIMIT, VIP, Vrrp, all_up, client_addr, vrrp_state},
    netns,
    traffic::{self, Report, Traffic},
};

const VRRP: Vrrp = Vrrp::V3_100MS;
const PRIORITY: u8 = 150;
/// Traffic before and after the restart.
const STEADY: Duration = Duration::from_millis(1500);
/// The fast path with no agent at all, after a SIGKILL.
const ORPHANED: Duration = Duration::from_millis(500);
/// The exit status of `lb run` after `lb restart`.
const HANDOVER_EXIT: i32 = 75;

/// How the agent goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// SIGKILL, then the same `lb run` again.
    Kill,
    /// `lb restart`, then `lb run --trace`: another program.
    Upgrade,
}

/// What the traffic lost across one restart.
#[derive(Clone, Debug)]
pub struct Lost {
    pub report: Report,
    /// The fast path's tx counter before the restart and after it.
    pub tx: (u64, u64),
}

#[derive(Clone, Debug)]
pub struct Figures {
    pub restart: Lost,
    pub upgrade: Lost,
    pub adopt_ms_1000: f64,
}

/// `lb run` arguments that pin under `pins`, and `more`.
pub fn run_args(pins: &Bpffs, more: &[&str]) -> Vec<OsString> {
    let mut args = vec![OsString::from("--pin-dir"), pins.path().join("lb").into_os_string()];
    args.extend(more.iter().map(OsString::from));
    args
}

fn start(w: &mut DirectorPair) -> anyhow::Result<()> {
    w.start_agent(A, PRIORITY, VRRP)?;
    w.wait(A, "A MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
    w.wait(A, "A's backends up", STATE_LIMIT, all_up)?;
    Ok(())
}

fn tx(w: &mut DirectorPair) -> anyhow::Result<u64> {
    let s = w.status(A)?;
    let counters = s["counters"].as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(counters.iter().find(|c| c[0] == "tx").and_then(|c| c[1].as_u64()).unwrap_or(0))
}

/// Director A's agent (run as `lb`) pinning under `pins`, traffic through
/// the VIP, the restart `how`, more traffic: what was lost. `lb` runs the
/// agents; the pair is torn down before this returns, also on failure.
pub fn restart_under_load(lb: Lb, pins: &Bpffs, tag: &'static str, how: How) -> anyhow::Result<Lost> {
    let lb = Lb { run_args: run_args(pins, &[]), ..lb };
    let client = lb.clone();
    let mut w = DirectorPair::new(lb, Options { tag, udp_port: None })?;
    let result = (|| {
        start(&mut w)?;
        let vip = SocketAddr::new(VIP.into(), PORT);
        let t = Traffic::start(w.client(), client_addr(), vip, &traffic::Options::default())?;
        let flowing = netns::wait_for(Duration::from_secs(5), || {
            let (lines, requests) = t.progress();
            (lines > 0 && requests > 0).then_some(())
        });
        ensure!(flowing.is_some(), "no traffic through the VIP within 5 s: {:?}", t.progress());
        thread::sleep(STEADY);
        let before = tx(&mut w)?;
        match how {
            How::Kill => {
                let pid = w.agent_pid(A).context("A's agent")?;
                // SAFETY: our child's pid, reaped by `terminate` below.
                ensure!(unsafe { libc::kill(pid, libc::SIGKILL) } == 0, "SIGKILL: {}", std::io::Error::last_os_error());
                w.terminate(A, Duration::from_secs(5))?;
                thread::sleep(ORPHANED);
            }
            How::Upgrade => {
                let socket = w.socket_path(A).to_str().context("socket path")?.to_owned();
                client.ok(&["restart", "--socket", &socket])?;
                let deadline = Instant::now() + Duration::from_secs(10);
                while w.running(A) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
                let (status, killed) = w.terminate(A, Duration::from_secs(1))?;
                ensure!(
                    !killed && status.code() == Some(HANDOVER_EXIT),
                    "lb restart: the agent ended with {status} (SIGKILL: {killed})"
                );
                w.lb_mut().run_args = run_args(pins, &["--trace"]);
            }
        }
        start(&mut w)?;
        thread::sleep(STEADY);
        let after = tx(&mut w)?;
        Ok(Lost { report: t.stop()?, tx: (before, after) })
    })();
    if result.is_err() {
        let log = w.config_path(A).with_file_name("agent-a.log");
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("[{tag}] director A's agent log (tail):\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    let finished = w.finish();
    let lost = result?;
    finished?;
    Ok(lost)
}

/// A configuration of one VIP on `lo` with `backends` backends.
fn config_of(backends: u32) -> anyhow::Result<Config> {
    let mut text = String::from("[[vip]]\naddress = \"10.250.0.1\"\nport = 80\ninterface = \"lo\"\n");
    for i in 0..backends {
        let a = Ipv4Addr::from(0x0afb_0000 + i + 1);
        text.push_str(&format!("\n[[vip.backend]]\naddress = \"{a}\"\n"));
    }
    Ok(Config::from_str(&text, "bench.toml")?)
}

/// Milliseconds from loading the program over the pins of a fast path
/// serving `backends` backends to a director in charge of it, nothing
/// flipped. In this process; attached nowhere.
pub fn adopt_ms(backends: u32) -> anyhow::Result<f64> {
    let pins = Bpffs::new("adopt")?;
    let dir = pins.path().join("lb");
    let config = config_of(backends)?;
    let opts = FastPathOptions {
        max_vips: config.global.max_vips,
        max_ring_size: config.max_ring_size(),
        flows_per_cpu: config.global.flows_per_cpu,
    };
    {
        let dp = FastPath::load_pinned(opts, None, &dir, false)?;
        let mut first = Director::new(config.clone(), dp)?;
        let addresses: Vec<IpAddr> = config.vips[0].backends.iter().map(|b| b.address).collect();
        for (i, a) in addresses.into_iter().enumerate() {
            first.on_mac("lo", a, Some([2, 0, 0, 0, (i >> 8) as u8, i as u8]), "bench")?;
        }
        first.flush()?;
        // Dropped without unpinning: as a crash leaves it.
    }
    let started = Instant::now();
    let dp = FastPath::load_pinned(opts, None, &dir, false)?;
    let mut adopted = Director::new(config, dp)?;
    let took = started.elapsed();
    ensure!(adopted.fast_path().is_adopted(), "the second load did not find the pinned fast path");
    let up = adopted.services()[0].backends.iter().filter(|b| b.is_up()).count();
    ensure!(up == backends as usize, "{up} of {backends} backends up after adopting");
    adopted.fast_path_mut().unpin()?;
    Ok(took.as_secs_f64() * 1000.0)
}

/// Both restarts and the adopt time.
pub fn run(lb: &Lb, say: &mut dyn FnMut(String)) -> anyhow::Result<Figures> {
    let pins = Bpffs::new("bench-restart")?;
    let restart = restart_under_load(lb.clone(), &pins, "bench-restart", How::Kill).context("restart (SIGKILL)")?;
    say(format!("  restart (SIGKILL): {}", restart.report.figures()));
    let pins = Bpffs::new("bench-upgrade")?;
    let upgrade = restart_under_load(lb.clone(), &pins, "bench-upgrade", How::Upgrade).context("upgrade")?;
    say(format!("  upgrade (lb restart, then lb run --trace): {}", upgrade.report.figures()));
    let adopt_ms_1000 = adopt_ms(1000).context("adopting 1000 backends")?;
    say(format!("  adopting a fast path serving 1000 backends: {adopt_ms_1000:.1} ms"));
    Ok(Figures { restart, upgrade, adopt_ms_1000 })
}
