//! What the agent costs to run: CPU for health-checking many backends (TCP
//! connect or half-open checks every second against listeners served by a
//! child process, so that only the checking side is counted), against a
//! floor in the same run, and the resident memory of a running `lb run`.
//!
//! Each health-check figure runs in a network namespace of its own, with a
//! distinct loopback address per backend (all of 127.0.0.0/8 is local on
//! `lo`): a real pool has one address per backend, and with one address the
//! connect checks would exhaust the ephemeral ports of its few 4-tuples
//! within a minute (28k ports each, every one held 60 s in TIME_WAIT). A
//! fresh namespace also starts without the TIME_WAIT sockets an earlier
//! figure left, which slow every TCP lookup; they go with the namespace.
//!
//! Limits met on the way to 50000 checks a second, and why they do not bite:
//! - file descriptors: at most `MonitorOptions::max_connections` (1024)
//!   checks are in flight at once, and the soft limit is raised to the hard
//!   one ([`raise_fd_limit`]);
//! - conntrack: not loaded in a fresh namespace without rules;
//! - neighbour table (`gc_thresh3`, 1024 by default): loopback needs none;
//! - ephemeral ports: one address per backend, so one connect per second per
//!   4-tuple;
//! - socket buffers: the half-open checks' raw socket asks for 4 MiB, room
//!   for thousands of replies; a failed figure prints its drops;
//! - TIME_WAIT: none expires within a figure's few seconds, so at 50000
//!   connects a second the namespace may reach `tcp_max_tw_buckets` (half
//!   its established hash); past it the kernel closes without TIME_WAIT
//!   ("time wait bucket table overflow"), which only makes closes cheaper.
//!
//! The shape measured: CPU per check falls from 1000 to 10000 backends
//! (half-open about 15 to 7 us, connect about 37 to 24 us), because the
//! checker's fixed cost (a 10 ms tick, the runtime's wake-ups) is spread over
//! more checks; from 10000 to 50000 it stays flat (half-open 6-8 us, connect
//! about 21 us). A connect check costs about three half-open ones, most of
//! it the kernel's (a connect, a close, the listener's accept): 50000
//! backends of connect checks take more than one core.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_userspace::{
    config::{Check, CheckKind},
    health::{Monitor, MonitorOptions, Target, TargetId},
};

use crate::{
    agent_proc::{Bpffs, TempDir},
    bench::{
        Figures, failover, median,
        sys::{online_cpus, pin_to_cpu},
    },
    netns::Netns,
};

/// Backend counts of the health-check curves.
pub const BACKENDS: [u32; 3] = [1000, 10000, 50000];
/// Health-checking 10000 backends at 1 s within this share of one core.
pub const HEALTHCHECK_MAX_PCT: f64 = 5.0;
/// The agent's resident memory (one VIP of 100 backends).
pub const AGENT_MAX_RSS_MB: f64 = 50.0;
/// Rounds per health-check figure, and the window of each.
const ROUNDS: usize = 3;
const WINDOW: Duration = Duration::from_secs(4);
/// The connect floor is one blocking thread; past this rate it cannot keep
/// up on one core and would measure only itself running flat out.
const FLOOR_MAX_RATE: u32 = 10000;
/// A window whose checks ran below this share of the rate due did not
/// measure the load asked for.
const MIN_RATE: f64 = 0.9;
/// Bound on an agent's start (maps loaded, VIPs installed) on a busy machine.
const AGENT_START_LIMIT: Duration = Duration::from_secs(60);
/// Then this long for start-up allocations to settle.
const AGENT_SETTLE: Duration = Duration::from_secs(2);

/// Keys of this part beyond the ones `lb-bench` always listed.
pub const KEYS: &[&str] = &[
    "healthcheck_cpu_pct_50000",
    "healthcheck_connect_cpu_pct_50000",
    "healthcheck_us_per_check_1000",
    "healthcheck_us_per_check_10000",
    "healthcheck_us_per_check_50000",
    "healthcheck_connect_us_per_check_1000",
    "healthcheck_connect_us_per_check_10000",
    "healthcheck_connect_us_per_check_50000",
    "agent_rss_mb_1000x100",
    "target_healthcheck_pass",
    "target_agent_rss_pass",
];

/// The hidden first argument that makes `lb-bench` serve the listeners
/// instead of benchmarking (see [`serve_listeners`]).
pub const LISTENERS_SUBCOMMAND: &str = "__agent-listeners";

/// Listening ports the checks are spread over: a real pool has as many
/// addresses as backends, and one port for all would make every connect
/// search the same ephemeral-port hash chain.
const LISTENERS: usize = 64;

/// User and system CPU time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub user: Duration,
    pub system: Duration,
}

impl Cpu {
    /// `who` is `RUSAGE_SELF` (every thread of this process) or `RUSAGE_THREAD`.
    fn now(who: libc::c_int) -> Cpu {
        // SAFETY: rusage is plain data; all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage only writes the struct it is given.
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Cpu { user: tv(ru.ru_utime), system: tv(ru.ru_stime) }
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu { user: self.user - earlier.user, system: self.system - earlier.system }
    }
}

/// CPU as percent of one core over a wall-clock window (above 100 when
/// more than one core was busy).
#[derive(Clone, Copy, Debug)]
pub struct CpuPct {
    pub user: f64,
    pub system: f64,
}

impl CpuPct {
    fn over(cpu: Cpu, wall: Duration) -> CpuPct {
        let pct = |d: Duration| d.as_secs_f64() / wall.as_secs_f64() * 100.0;
        CpuPct { user: pct(cpu.user), system: pct(cpu.system) }
    }

    pub fn total(&self) -> f64 {
        self.user + self.system
    }
}

/// Which check the targets get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `type = "tcp"`: a full connect and close, keepalived's `TCP_CHECK`.
    Connect,
    /// `type = "tcp-half-open"`: a SYN from a shared raw socket.
    HalfOpen,
}

/// One round of [`healthcheck_cpu`]: the agent's checks and the floor.
#[derive(Clone, Copy, Debug)]
pub struct HealthcheckRound {
    /// The process running a [`Monitor`] over the targets.
    pub agent: CpuPct,
    /// A bare blocking loop doing the same connects per second (connect
    /// checks only).
    pub floor: Option<CpuPct>,
    /// Checks finished per second during the agent's window.
    pub checks_per_sec: f64,
}

/// Medians over the rounds of [`healthcheck_cpu`].
#[derive(Clone, Copy, Debug)]
pub struct Medians {
    pub agent: Split,
    pub checks_per_sec: f64,
    /// The floor, and the agent's CPU over it within each round (connect
    /// checks only).
    pub floor: Option<(Split, f64)>,
}

/// Medians of a CPU share: of the totals, and of each part.
#[derive(Clone, Copy, Debug)]
pub struct Split {
    pub total: f64,
    pub user: f64,
    pub system: f64,
}

impl Medians {
    pub fn of(rounds: &[HealthcheckRound]) -> Medians {
        let med = |f: &dyn Fn(&HealthcheckRound) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        let split = |cpu: &dyn Fn(&HealthcheckRound) -> CpuPct| Split {
            total: med(&|r| cpu(r).total()),
            user: med(&|r| cpu(r).user),
            system: med(&|r| cpu(r).system),
        };
        let floor = rounds.iter().all(|r| r.floor.is_some()).then(|| {
            let floor_of = |r: &HealthcheckRound| r.floor.unwrap_or(CpuPct { user: 0.0, system: 0.0 });
            (split(&floor_of), med(&|r| r.agent.total() / floor_of(r).total()))
        });
        Medians { agent: split(&|r| r.agent), checks_per_sec: med(&|r| r.checks_per_sec), floor }
    }
}

/// The agent part of `lb-bench`: health-check CPU (half-open checks first:
/// connect checks leave TIME_WAIT sockets behind), then resident memory.
pub fn run(say: &mut dyn FnMut(String)) -> Figures {
    let mut f = Figures::new();
    if let Err(e) = raise_fd_limit() {
        say(format!("WARNING: {e:#}"));
    }
    say(format!(
        "== agent: health-check CPU every 1 s against listeners in a child process, one loopback address per \
         backend, each figure in a namespace of its own; medians of {ROUNDS} rounds of {WINDOW:?}; CPU % of one \
         core and CPU us per check"
    ));
    say("  tcp-half-open checks (type = \"tcp-half-open\", the check for pools this large: one task sends the SYNs \
         due in each 10 ms tick from a raw socket, SYN-ACK up, RST down); healthcheck_cpu_pct_N"
        .to_owned());
    for n in BACKENDS {
        let (pct_key, per_key) = (format!("healthcheck_cpu_pct_{n}"), format!("healthcheck_us_per_check_{n}"));
        match healthcheck_cpu(n, Flavor::HalfOpen, WINDOW, ROUNDS) {
            Ok(rounds) => {
                let m = Medians::of(&rounds);
                let (pct, user, sys, rate) = (m.agent.total, m.agent.user, m.agent.system, m.checks_per_sec);
                let per_check = us_per_check(&rounds);
                say(format!(
                    "  {n:>5} backends ({rate:.0} checks/s): agent {pct:.1}% of one core (user {user:.1}, sys \
                     {sys:.1}; rounds {}), {per_check:.2} us per check",
                    rounds.iter().map(|r| format!("{:.1}", r.agent.total())).collect::<Vec<_>>().join(" / ")
                ));
                f.put(pct_key, pct, 2);
                f.put(per_key, per_check, 3);
                if n == 10000 {
                    let ok = pct <= HEALTHCHECK_MAX_PCT;
                    let verdict = f.judge(ok);
                    say(format!(
                        "  target: 10000 backends within {HEALTHCHECK_MAX_PCT}% of a core (tcp-half-open): {verdict}"
                    ));
                    f.keys.push(("target_healthcheck_pass".into(), ok.into()));
                }
            }
            Err(e) => {
                say(format!("  FAIL: {n} backends, half-open: {e:#}"));
                f.fail(&pct_key, format!("{e:#}"));
                f.fail(&per_key, "see its CPU %");
            }
        }
    }
    // The headline keys name the check they were measured with.
    f.keys.push(("healthcheck_cpu_check".into(), "tcp-half-open".into()));
    say(format!(
        "  tcp (connect) checks, keepalived's TCP_CHECK; floor (up to {FLOOR_MAX_RATE} backends): a blocking \
         connect+close loop at the same rate; healthcheck_connect_cpu_pct_N"
    ));
    for n in BACKENDS {
        let (pct_key, per_key) =
            (format!("healthcheck_connect_cpu_pct_{n}"), format!("healthcheck_connect_us_per_check_{n}"));
        match healthcheck_cpu(n, Flavor::Connect, WINDOW, ROUNDS) {
            Ok(rounds) => {
                let m = Medians::of(&rounds);
                let (pct, user, sys, rate) = (m.agent.total, m.agent.user, m.agent.system, m.checks_per_sec);
                let per_check = us_per_check(&rounds);
                let floor = match m.floor {
                    Some((fl, ratio)) => {
                        f.put(format!("healthcheck_connect_floor_pct_{n}"), fl.total, 2);
                        if n == 10000 {
                            f.put("healthcheck_connect_vs_floor", ratio, 2);
                        }
                        format!(
                            "; floor {:.1}% (user {:.1}, sys {:.1}); agent/floor {ratio:.2}x",
                            fl.total, fl.user, fl.system
                        )
                    }
                    None => String::new(),
                };
                say(format!(
                    "  {n:>5} backends ({rate:.0} checks/s): agent {pct:.1}% of one core (user {user:.1}, sys \
                     {sys:.1}), {per_check:.2} us per check{floor}"
                ));
                f.put(pct_key, pct, 2);
                f.put(per_key, per_check, 3);
                f.put(format!("healthcheck_connect_user_pct_{n}"), user, 2);
                f.put(format!("healthcheck_connect_sys_pct_{n}"), sys, 2);
            }
            Err(e) => {
                say(format!("  FAIL: {n} backends, connect: {e:#}"));
                f.fail(&pct_key, format!("{e:#}"));
                f.fail(&per_key, "see its CPU %");
            }
        }
    }
    for (vips, backends, key) in [(1, 100, "agent_rss_mb"), (1000, 100, "agent_rss_mb_1000x100")] {
        match agent_rss_mb(vips, backends) {
            Ok(Rss { mb, start, stop }) => {
                say(format!(
                    "  lb run, {vips} VIP(s) of {backends} backends: {mb:.1} MB resident (started in {:.1} s)",
                    start.as_secs_f64()
                ));
                if let Some(stop) = stop {
                    say(format!("  WARNING: {stop}"));
                }
                f.put(key, mb, 1);
                if vips == 1 {
                    let ok = mb <= AGENT_MAX_RSS_MB;
                    let verdict = f.judge(ok);
                    say(format!("  target: one VIP of 100 backends within {AGENT_MAX_RSS_MB} MB: {verdict}"));
                    f.keys.push(("target_agent_rss_pass".into(), ok.into()));
                }
            }
            Err(e) => {
                say(format!("  FAIL: agent memory, {vips} VIP(s) of {backends} backends: {e:#}"));
                f.fail(key, format!("{e:#}"));
            }
        }
    }
    f.require(KEYS);
    f
}

/// CPU microseconds per finished check, median over the rounds.
fn us_per_check(rounds: &[HealthcheckRound]) -> f64 {
    let per: Vec<f64> = rounds.iter().map(|r| r.agent.total() / 100.0 * 1e6 / r.checks_per_sec).collect();
    median(&per)
}

/// Entry point of the listener child: binds [`LISTENERS`] listeners on every
/// address of its namespace, prints their ports on one line, then accepts
/// and closes connections until its stdin closes (the bench ended or died).
pub fn serve_listeners() -> anyhow::Result<()> {
    // lb-bench pins itself to the last CPU; the listeners keep to the
    // first, so that at least one CPU is left wholly to the checker.
    if online_cpus() > 1 {
        pin_to_cpu(0)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut ports = Vec::new();
        for _ in 0..LISTENERS {
            let l = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await?;
            ports.push(l.local_addr()?.port().to_string());
            tokio::spawn(async move {
                loop {
                    // A full accept queue (EMFILE and the like) clears itself
                    // as connections are closed; keep serving.
                    if let Ok((conn, _)) = l.accept().await {
                        drop(conn);
                    }
                }
            });
        }
        println!("{}", ports.join(" "));
        tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 64];
            while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        })
        .await?;
        anyhow::Ok(())
    })
}

/// The listener child; killed when dropped.
struct Listeners {
    child: Child,
    ports: Vec<u16>,
}

impl Listeners {
    fn spawn(ns: &Netns) -> anyhow::Result<Listeners> {
        let exe = std::env::current_exe().context("finding lb-bench to re-run it")?;
        let exe = exe.to_str().context("lb-bench's path is not UTF-8")?;
        let mut child = ns
            .command(exe)
            .arg(LISTENERS_SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the listener process")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("listener stdout")?;
        BufReader::new(stdout).read_line(&mut line).context("reading the listener ports")?;
        let ports: Vec<u16> = line.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        let listeners = Listeners { child, ports };
        if listeners.ports.len() != LISTENERS {
            bail!("the listener process printed {line:?}, not {LISTENERS} ports");
        }
        Ok(listeners)
    }

    /// Backend `i`: an address of its own in 127.1.0.0/16 and up, one of the
    /// listeners' ports.
    fn addr(&self, i: u32) -> SocketAddr {
        let ip = Ipv4Addr::new(127, 1 + (i / 62500) as u8, (i / 250 % 250) as u8, (1 + i % 250) as u8);
        SocketAddr::from((ip, self.ports[i as usize % self.ports.len()]))
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Health-checks `targets` backends every second for `rounds` windows of
/// `window` each, in a namespace of its own, and after each window of
/// connect checks runs the floor at the same rate against the same
/// listeners (up to [`FLOOR_MAX_RATE`]). The agent's CPU is this process's
/// (the listeners are another); the floor's is its thread's.
pub fn healthcheck_cpu(
    targets: u32,
    flavor: Flavor,
    window: Duration,
    rounds: usize,
) -> anyhow::Result<Vec<HealthcheckRound>> {
    let ns = Netns::new("hc")?;
    let listeners = Listeners::spawn(&ns)?;
    ns.run_in(move || {
        // The checker may use every CPU, as `lb run` does: connect checks of
        // 50000 backends take more than one core (about 20 us each).
        unpin()?;
        let mut out = Vec::new();
        for _ in 0..rounds {
            let (agent, checks_per_sec) = agent_window(&listeners, targets, flavor, window)?;
            // The agent's runtime is gone: only this thread runs now.
            let floor = match flavor {
                Flavor::Connect if targets <= FLOOR_MAX_RATE => Some(floor_window(&listeners, targets, window)?),
                Flavor::Connect | Flavor::HalfOpen => None,
            };
            out.push(HealthcheckRound { agent, floor, checks_per_sec });
        }
        Ok(out)
    })
}

/// Lets the calling thread (and the threads it starts) run on any CPU.
fn unpin() -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..online_cpus().min(libc::CPU_SETSIZE as usize) {
        // SAFETY: CPU_SET writes one bit inside `set`; cpu < CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; the set is valid for its size.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error()).context("letting the checker run on every CPU");
    }
    Ok(())
}

/// The soft limit on open files raised to the hard one, as a service
/// manager would run the agent (`LimitNOFILE`).
pub fn raise_fd_limit() -> anyhow::Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
    }
    Ok(())
}

fn agent_window(
    listeners: &Listeners,
    targets: u32,
    flavor: Flavor,
    window: Duration,
) -> anyhow::Result<(CpuPct, f64)> {
    // As `lb run` builds it.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(async move {
        let (mut monitor, mut events) = Monitor::new(MonitorOptions::default());
        for i in 0..targets {
            let addr = listeners.addr(i);
            let kind = match flavor {
                Flavor::Connect => CheckKind::Tcp { port: addr.port() },
                Flavor::HalfOpen => CheckKind::TcpHalfOpen { port: addr.port() },
            };
            let check = Check {
                kind,
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                fall: 2,
                rise: 1,
                delay_before_retry: Duration::from_secs(1),
                warmup: Duration::from_secs(1),
            };
            monitor.start(Target::new(TargetId { vip: 0, backend: i }, addr.ip(), check))?;
        }
        let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
        // The warm-up spreads the first checks over 1 s; one more second
        // lets the start-up allocations settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let board = monitor.board();
        let checks = || board.all().iter().map(|s| s.checks).sum::<u64>();
        let n0 = checks();
        let (cpu0, waited0, t0) = (Cpu::now(libc::RUSAGE_SELF), waited(), Instant::now());
        tokio::time::sleep(window).await;
        let (cpu, wall) = (Cpu::now(libc::RUSAGE_SELF).since(cpu0), t0.elapsed());
        let waited = (waited().saturating_sub(waited0)).as_secs_f64() / wall.as_secs_f64() * 100.0;
        let done = checks() - n0;
        let rate = done as f64 / wall.as_secs_f64();
        let all = board.all();
        let down: Vec<_> = all.iter().filter(|s| !s.up).collect();
        let why = down.first().and_then(|s| s.last.as_ref()).map(|l| l.reason.to_string()).unwrap_or_default();
        let down = down.len();
        monitor.shutdown().await;
        drain.abort();
        if down > 0 {
            bail!(
                "{down} of {targets} targets went down ({why}): the measurement is not of healthy checks; the \
                 namespace's drop counters: {}; the checker's threads waited for a CPU {waited:.0}% of the window \
                 (taken by other tasks)",
                kernel_drops()
            );
        }
        // Checks that fell behind their interval would show less CPU than
        // the load asked for.
        let pct = CpuPct::over(cpu, wall);
        ensure!(
            rate >= f64::from(targets) * MIN_RATE,
            "{rate:.0} checks/s of the {targets} due: the checker fell behind (its threads waited for a CPU \
             {waited:.0}% of the window, taken by other tasks); at that rate {:.1}% of one core, {:.2} us per check",
            pct.total(),
            pct.total() / 100.0 * 1e6 / rate
        );
        Ok((pct, rate))
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

/// How long this process's threads have waited for a CPU, runnable but not
/// running (`schedstat`'s second field, summed over threads).
fn waited() -> Duration {
    let mut ns = 0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += text.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

/// The calling thread's namespace's counters of packets dropped on the way
/// to a socket (nonzero ones), and the drops of its raw sockets: why a check
/// that should pass timed out.
fn kernel_drops() -> String {
    let mut out = Vec::new();
    // thread-self: /proc/net follows the main thread's namespace, not ours.
    let netstat = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = netstat.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()).skip(1) {
            let wanted = ["Drop", "Overflow", "Cookies", "Full", "Prune"].iter().any(|w| name.contains(w));
            if wanted && value != "0" {
                out.push(format!("{name} {value}"));
            }
        }
    }
    let raw = std::fs::read_to_string("/proc/thread-self/net/raw").unwrap_or_default();
    let raw_drops: u64 =
        raw.lines().skip(1).filter_map(|l| l.split_whitespace().last().and_then(|d| d.parse::<u64>().ok())).sum();
    out.push(format!("raw socket drops {raw_drops}"));
    out.join(", ")
}

/// The kernel's own cost of the same checks: one thread connecting and
/// closing in a blocking loop, `rate` times a second, sleeping between
/// bursts of 10 ms worth of connects.
fn floor_window(listeners: &Listeners, rate: u32, window: Duration) -> anyhow::Result<CpuPct> {
    const BURST: Duration = Duration::from_millis(10);
    let (cpu0, t0) = (Cpu::now(libc::RUSAGE_THREAD), Instant::now());
    let mut done: u64 = 0;
    while t0.elapsed() < window {
        let due = (t0.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while done < due {
            let addr = listeners.addr(done as u32 % rate.max(1));
            // Dropped at once: a close with a FIN, as the check does it.
            TcpStream::connect(addr).with_context(|| format!("floor: connecting to {addr}"))?;
            done += 1;
        }
        std::thread::sleep(BURST);
    }
    Ok(CpuPct::over(Cpu::now(libc::RUSAGE_THREAD).since(cpu0), t0.elapsed()))
}

/// What [`agent_rss_mb`] measured.
#[derive(Clone, Debug)]
pub struct Rss {
    pub mb: f64,
    /// From `lb run` to every VIP reported.
    pub start: Duration,
    /// How the agent's stop went wrong, if it did.
    pub stop: Option<String>,
}

/// Resident memory (MB) of `lb run` serving `vips` VIPs of the same
/// `backends` backends (many services on one pool of servers; each VIP's
/// backends still take ids, slots and state of their own; one neighbour
/// entry per server, as the kernel's table allows only about a thousand),
/// with checks of `type = "none"` (the figure is the agent's tables, not
/// sockets to backends that do not exist), after it started and
/// settled, in a namespace of its own. The agent is `lb-bench` itself (see
/// [`failover::lb_self`]): a binary beside it may be missing or stale, since
/// `cargo run --bin lb-bench` builds only lb-bench.
pub fn agent_rss_mb(vips: u32, backends: u32) -> anyhow::Result<Rss> {
    let lb = failover::lb_self()?;
    let ns = Netns::new("rss")?;
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"])?;
    for dev in ["d0", "d1"] {
        ns.ip(&["link", "set", dev, "up"])?;
    }
    // On-link for every backend below.
    ns.ip(&["addr", "add", "10.100.255.1/16", "dev", "d0"])?;
    let dir = TempDir::new("bench-rss", &format!("{vips}x{backends}"))?;
    // Pins of its own: never an earlier agent's maps to adopt or refuse.
    let bpffs = Bpffs::new("bench-rss")?;
    let socket = dir.path.join("lb.sock");
    let mut config = format!(
        "[global]\ncontrol_socket = \"{}\"\npin_dir = \"{}\"\nmax_vips = {}\n",
        socket.display(),
        bpffs.path().join("lb").display(),
        vips.max(16)
    );
    for v in 0..vips {
        config.push_str(&format!(
            "\n[[vip]]\naddress = \"10.214.{}.{}\"\nport = 80\ninterface = \"d0\"\n[vip.check]\ntype = \"none\"\n",
            v / 250,
            1 + v % 250
        ));
        for b in 0..backends {
            config.push_str(&format!("[[vip.backend]]\naddress = \"10.100.{}.{}\"\n", b / 250, 1 + b % 250));
        }
    }
    let path = dir.path.join("lb.toml");
    std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
    let log = dir.path.join("agent.log");
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let mut agent = lb.start_agent(&ns, &path, &log)?;
    let started = Instant::now();
    loop {
        if let Some(st) = agent.exited() {
            bail!("the agent exited ({st}) while starting; its log ends:\n{}", tail());
        }
        // Started: every VIP installed and reported.
        if let Ok(s) = lb.status(&socket)
            && s["vips"].as_array().is_some_and(|v| v.len() == vips as usize)
        {
            break;
        }
        ensure!(
            started.elapsed() < AGENT_START_LIMIT,
            "the agent did not report its {vips} VIPs within {AGENT_START_LIMIT:?}; its log ends:\n{}",
            tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = started.elapsed();
    std::thread::sleep(AGENT_SETTLE);
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()));
    if let Some(st) = agent.exited() {
        bail!("the agent exited ({st}) before its memory was read; its log ends:\n{}", tail());
    }
    let status = status.context("reading the agent's /proc status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in the agent's /proc status:\n{status}"))?;
    let (st, killed) = agent.terminate(Duration::from_secs(10))?;
    // Not the figure's failure: said beside it.
    let stop = (killed || !st.success()).then(|| format!("the agent ended with {st} (SIGKILL needed: {killed})"));
    Ok(Rss { mb: kb / 1024.0, start, stop })
}
