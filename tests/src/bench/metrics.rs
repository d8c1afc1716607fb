//! What a Prometheus scrape costs the agent: `lb run` with one VIP of many
//! backends in a namespace of its own, `/metrics` fetched from inside it
//! (the time of one scrape, median), and the agent's loop's longest stall
//! while another thread scrapes without pause, seen as the latency of
//! `lb status` requests over the control socket against the same requests
//! without scrapes.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_userspace::{
    agent::control::{self, Request},
    netns::{self, Netns},
};

use crate::bench::median;

/// Where the agent listens, inside its namespace.
const LISTEN: &str = "127.0.0.1:9650";
/// The bound on the agent coming up, and on each request.
const LIMIT: Duration = Duration::from_secs(20);

/// The figures of [`run`].
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    /// Median of one scrape, ms.
    pub scrape_ms: f64,
    /// The longest `lb status` while scraping, over the median without, ms.
    pub loop_stall_ms: f64,
    /// Median `lb status` without scrapes, ms.
    pub status_ms: f64,
    /// Longest `lb status` while scraping, ms.
    pub status_max_ms: f64,
    /// Size of the exposition, bytes.
    pub exposition_bytes: usize,
}

/// The agent and its files; stopped (SIGTERM, then SIGKILL) and removed when dropped.
struct Running {
    child: Child,
    dir: PathBuf,
    ns: Netns,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET /metrics` over HTTP/1.0 from the calling thread (inside the
/// namespace): the body.
fn scrape_once() -> anyhow::Result<String> {
    let addr: SocketAddr = LISTEN.parse()?;
    let mut s = TcpStream::connect_timeout(&addr, LIMIT)?;
    s.set_read_timeout(Some(LIMIT))?;
    write!(s, "GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    ensure!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "GET /metrics: {head}");
    Ok(body.to_owned())
}

/// `lb status` over the control socket: its latency, ms.
fn status_ms(socket: &Path) -> anyhow::Result<f64> {
    let t = Instant::now();
    control::request(socket, &Request::Status).context("lb status")?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// Starts `lb` (the agent binary) with one VIP of `backends` backends and
/// measures `scrapes` scrapes, then `probes` status requests without and
/// with scrapes running.
pub fn run(lb: &Path, backends: u32, scrapes: usize, probes: usize) -> anyhow::Result<Figures> {
    let ns = Netns::new("lbbench", "metrics")?;
    netns::veth(&ns, "d0", &ns, "d1")?;
    ns.ip(&["addr", "add", "10.216.0.1/16", "dev", "d0"])?;
    let dir = std::env::temp_dir().join(format!("lb-bench-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("lb.sock");
    // A small flow table: `lb status` walks it, and its cost is not the
    // stall being measured.
    let mut config = format!(
        "[global]\ncontrol_socket = \"{}\"\nmetrics = \"{LISTEN}\"\nflows_per_cpu = 1024\n\
         [[vip]]\naddress = \"10.216.255.1\"\nport = 80\ninterface = \"d0\"\nring_size = 65537\n",
        socket.display()
    );
    for i in 0..backends {
        config.push_str(&format!("[[vip.backend]]\naddress = \"10.216.{}.{}\"\n", 1 + i / 250, 1 + i % 250));
    }
    let path = dir.join("lb.toml");
    std::fs::write(&path, config)?;
    let child = ns
        .command(&lb.display().to_string())
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting lb run")?;
    let mut running = Running { child, dir, ns };

    // Up: the control socket answers and the listener serves every backend.
    let start = Instant::now();
    let exposition = loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            bail!("lb run exited ({status})");
        }
        let body = running.ns.run_in(|| scrape_once().ok())?;
        if let Some(body) = body.filter(|b| b.matches("lb_backend_up{").count() == backends as usize)
            && status_ms(&socket).is_ok()
        {
            break body;
        }
        if start.elapsed() > LIMIT {
            bail!("the agent did not serve /metrics with {backends} backends within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    let times = running.ns.run_in(move || {
        (0..scrapes)
            .map(|_| {
                let t = Instant::now();
                scrape_once()?;
                Ok(t.elapsed().as_secs_f64() * 1000.0)
            })
            .collect::<anyhow::Result<Vec<f64>>>()
    })??;
    let scrape_ms = median(&times);

    let quiet = (0..probes).map(|_| status_ms(&socket)).collect::<anyhow::Result<Vec<f64>>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let stop = Arc::clone(&stop);
        running.ns.spawn(move || -> anyhow::Result<u64> {
            let mut n = 0u64;
            let deadline = Instant::now() + LIMIT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                scrape_once()?;
                n += 1;
            }
            Ok(n)
        })?
    };
    // Let the scrapes get going, then probe the loop while they run.
    std::thread::sleep(Duration::from_millis(100));
    let busy = (0..probes).map(|_| status_ms(&socket)).collect::<anyhow::Result<Vec<f64>>>();
    stop.store(true, Ordering::Relaxed);
    let scraped = scraper.join().map_err(|_| anyhow::anyhow!("the scraping thread panicked"))???;
    let busy = busy?;
    ensure!(scraped > 0, "no scrape finished while probing the loop");
    let status_ms = median(&quiet);
    let status_max_ms = busy.iter().copied().fold(0.0, f64::max);
    Ok(Figures {
        scrape_ms,
        loop_stall_ms: (status_max_ms - status_ms).max(0.0),
        status_ms,
        status_max_ms,
        exposition_bytes: exposition.len(),
    })
}
