//! What the agent costs to run: CPU for health-checking many backends (TCP
//! connect or half-open checks every second against loopback listeners
//! served by a child process, so that only the checking side is counted),
//! against a floor in the same run, and the resident memory of a running
//! `lb run`.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lb_userspace::{
    config::{Check, CheckKind},
    health::{Monitor, MonitorOptions, Target, TargetId},
    netns::{self, Netns},
};

use crate::bench::{
    median,
    sys::{online_cpus, pin_to_cpu},
};

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

/// CPU as percent of one core over a wall-clock window.
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

/// Entry point of the listener child: binds [`LISTENERS`] loopback listeners,
/// prints their ports on one line, then accepts and closes connections until
/// its stdin closes (the bench ended or died).
pub fn serve_listeners() -> anyhow::Result<()> {
    // lb-bench pins itself to the last CPU; accepting on another one keeps
    // the listeners from taking turns with the checker being measured.
    if online_cpus() > 1 {
        pin_to_cpu(0)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut ports = Vec::new();
        for _ in 0..LISTENERS {
            let l = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
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
    fn spawn() -> anyhow::Result<Listeners> {
        let exe = std::env::current_exe().context("finding lb-bench to re-run it")?;
        let mut child = Command::new(exe)
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

    fn addr(&self, i: u32) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports[i as usize % self.ports.len()]))
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Health-checks `targets` backends every second (TCP connect, keepalived's
/// `TCP_CHECK`) for `rounds` windows of `window` each, and after each window
/// runs the floor at the same rate against the same listeners. The agent's
/// CPU is this process's (the listeners are another); the floor's is its
/// thread's.
pub fn healthcheck_cpu(
    targets: u32,
    flavor: Flavor,
    window: Duration,
    rounds: usize,
) -> anyhow::Result<Vec<HealthcheckRound>> {
    let listeners = Listeners::spawn()?;
    let mut out = Vec::new();
    for _ in 0..rounds {
        let (agent, checks_per_sec) = agent_window(&listeners, targets, flavor, window)?;
        // The agent's runtime is gone: only this thread runs now.
        let floor = match flavor {
            Flavor::Connect => Some(floor_window(&listeners, targets, window)?),
            Flavor::HalfOpen => None,
        };
        out.push(HealthcheckRound { agent, floor, checks_per_sec });
    }
    Ok(out)
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
        let (cpu0, t0) = (Cpu::now(libc::RUSAGE_SELF), Instant::now());
        tokio::time::sleep(window).await;
        let (cpu, wall) = (Cpu::now(libc::RUSAGE_SELF).since(cpu0), t0.elapsed());
        let done = checks() - n0;
        let all = board.all();
        let down: Vec<_> = all.iter().filter(|s| !s.up).collect();
        let why = down.first().and_then(|s| s.last.as_ref()).map(|l| l.reason.to_string()).unwrap_or_default();
        let down = down.len();
        monitor.shutdown().await;
        drain.abort();
        if down > 0 {
            bail!("{down} of {targets} targets went down ({why}): the measurement is not of healthy checks");
        }
        Ok((CpuPct::over(cpu, wall), done as f64 / wall.as_secs_f64()))
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    result
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

/// Resident memory (MB) of `lb run` serving one VIP with `backends`
/// backends, after it settled, in a namespace of its own.
pub fn agent_rss_mb(lb: &Path, backends: u32) -> anyhow::Result<f64> {
    let ns = Netns::new("lbbench", "rss")?;
    netns::veth(&ns, "d0", &ns, "d1")?;
    ns.ip(&["addr", "add", "10.215.0.1/16", "dev", "d0"])?;
    let dir = std::env::temp_dir().join(format!("lb-bench-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut config = format!(
        "[global]\ncontrol_socket = \"{}\"\n[[vip]]\naddress = \"10.215.255.1\"\nport = 80\ninterface = \"d0\"\n",
        dir.join("lb.sock").display()
    );
    for i in 0..backends {
        config.push_str(&format!("[[vip.backend]]\naddress = \"10.215.{}.{}\"\n", 1 + i / 250, 1 + i % 250));
    }
    let path = dir.join("lb.toml");
    std::fs::write(&path, config)?;
    let mut child = ns
        .command(&lb.display().to_string())
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting lb run")?;
    std::thread::sleep(Duration::from_secs(4));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let status = status.context("reading the agent's /proc status (did it exit?)")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kb / 1024.0)
}
