//! What the agent costs to run: CPU for health-checking many backends (TCP
//! connect checks every second against listeners on loopback, in this
//! process), and the resident memory of a running `lb run`.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lb_userspace::{
    config::{Check, CheckKind},
    health::{Monitor, MonitorOptions, Target, TargetId},
    netns::{self, Netns},
};

/// CPU time of this process so far (user + system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF covers every thread of the process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Percent of one core used while checking `targets` backends every second
/// (TCP connect) for `window`, after the warm-up has spread them out. The
/// listeners run in this process too, so this is an upper bound.
pub fn healthcheck_cpu_pct(targets: u32, window: Duration) -> anyhow::Result<f64> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let mut ports = Vec::new();
        let mut listeners = Vec::new();
        for _ in 0..64 {
            let l = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
            ports.push(l.local_addr()?.port());
            listeners.push(tokio::spawn(async move {
                loop {
                    if let Ok((conn, _)) = l.accept().await {
                        drop(conn);
                    }
                }
            }));
        }
        let (mut monitor, mut events) = Monitor::new(MonitorOptions::default());
        for i in 0..targets {
            let check = Check {
                kind: CheckKind::Tcp { port: ports[i as usize % ports.len()] },
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                fall: 2,
                rise: 1,
                delay_before_retry: Duration::from_secs(1),
                warmup: Duration::from_secs(1),
            };
            monitor.start(Target::new(TargetId { vip: 0, backend: i }, IpAddr::V4(Ipv4Addr::LOCALHOST), check))?;
        }
        let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (cpu0, t0) = (cpu_time(), Instant::now());
        tokio::time::sleep(window).await;
        let pct = (cpu_time() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0;
        let board = monitor.board();
        let down = board.all().iter().filter(|s| !s.up).count();
        monitor.shutdown().await;
        drain.abort();
        for l in listeners {
            l.abort();
        }
        if down > 0 {
            bail!("{down} of {targets} targets went down: the measurement is not of healthy checks");
        }
        Ok(pct)
    })
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
