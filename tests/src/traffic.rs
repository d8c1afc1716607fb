//! Client traffic through a VIP that counts what is lost: a few long-lived
//! TCP connections, each sending a line every [`Options::line_interval`]
//! and checking its echo, plus a loop of short HTTP requests, a new
//! connection each. Both run against the servers of [`crate::backend`],
//! which name themselves, so the report says which backend every
//! long-lived connection reached and which backends answered the requests.
//!
//! ```no_run
//! # fn demo(client: &lb_tests::netns::Netns) -> anyhow::Result<()> {
//! use lb_tests::traffic::{Options, Traffic};
//! let vip = "10.216.0.100:80".parse()?;
//! let traffic = Traffic::start(client, "10.216.0.2".parse()?, vip, &Options::default())?;
//! // ... do something to the director ...
//! let report = traffic.stop()?;
//! anyhow::ensure!(report.connections_broken == 0 && report.requests_failed == 0, "{report}");
//! # Ok(()) }
//! ```
//!
//! Every thread runs inside the client's namespace, sleeps between
//! exchanges (no busy loop), and ends by itself after
//! [`Options::lifetime`], so traffic nobody stops cannot outlive a test by
//! much; dropping a [`Traffic`] stops and joins it.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    backend::{Held, http_get},
    lab,
    netns::Netns,
};

/// What to send; [`Options::default`] is what the chaos tests use.
#[derive(Clone, Debug)]
pub struct Options {
    /// Long-lived connections, opened one after another by
    /// [`Traffic::start`].
    pub connections: usize,
    /// Between two lines of one long-lived connection.
    pub line_interval: Duration,
    /// Between two short requests (after the previous one ended).
    pub request_interval: Duration,
    /// Bound on a long-lived connection's connect, and on each of its reads
    /// and writes: a line not echoed within it breaks the connection. Long
    /// enough to ride out a failover on TCP retransmissions.
    pub io_timeout: Duration,
    /// Every thread stops by itself this long after the start.
    pub lifetime: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connections: 6,
            line_interval: Duration::from_millis(30),
            request_interval: Duration::from_millis(20),
            io_timeout: Duration::from_secs(5),
            lifetime: Duration::from_secs(150),
        }
    }
}

/// One long-lived connection, as [`Traffic::stop`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The client's port.
    pub port: u16,
    /// The name of the backend that answered when it opened (`b1`, ...).
    /// Every later line is echoed by the same socket, so a flow moved to
    /// another backend shows as a broken connection (that backend resets
    /// it), never as a second name.
    pub backend: String,
    pub lines_ok: u64,
    /// Why it broke, and when (since the start); `None` if it lasted.
    pub broken: Option<(Duration, String)>,
    /// Longest time between two echoes (or the start and the first echo).
    pub longest_gap: Duration,
}

/// What the traffic lost, and what got through.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// How long the traffic ran.
    pub ran: Duration,
    pub connections_broken: usize,
    pub lines_ok: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Answered requests per backend name.
    pub requests_by_backend: BTreeMap<String, u64>,
    /// The first few failed requests: when (since the start) and why.
    pub request_errors: Vec<(Duration, String)>,
    /// Longest time between two answered requests (or the start and the
    /// first answer, or the last answer and the stop): the client-visible
    /// outage of new connections.
    pub longest_request_gap: Duration,
    pub connections: Vec<Connection>,
}

impl Report {
    /// Broken connections among those that reached one of `backends`.
    pub fn broken_on(&self, backends: &[&str]) -> usize {
        self.connections.iter().filter(|c| c.broken.is_some() && backends.contains(&c.backend.as_str())).count()
    }

    /// Longest echo gap of any connection.
    pub fn longest_line_gap(&self) -> Duration {
        self.connections.iter().map(|c| c.longest_gap).max().unwrap_or_default()
    }

    /// `key=value` pairs for a test's summary line.
    pub fn figures(&self) -> String {
        format!(
            "connections={} connections_broken={} lines_ok={} requests_ok={} requests_failed={} \
             request_gap_ms={} line_gap_ms={}",
            self.connections.len(),
            self.connections_broken,
            self.lines_ok,
            self.requests_ok,
            self.requests_failed,
            self.longest_request_gap.as_millis(),
            self.longest_line_gap().as_millis(),
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} over {:?}; by backend {:?}", self.figures(), self.ran, self.requests_by_backend)?;
        for c in &self.connections {
            write!(f, "; port {} on {}: {} lines, gap {:?}", c.port, c.backend, c.lines_ok, c.longest_gap)?;
            if let Some((at, why)) = &c.broken {
                write!(f, ", broken at {at:?}: {why}")?;
            }
        }
        for (at, why) in &self.request_errors {
            write!(f, "; request failed at {at:?}: {why}")?;
        }
        Ok(())
    }
}

/// How many failed requests a report describes one by one.
const REQUEST_ERRORS_KEPT: usize = 10;

/// Traffic running from a client namespace to a VIP; see the module doc.
#[derive(Debug)]
pub struct Traffic {
    started: Instant,
    /// (port, backend) of each long-lived connection, as it opened.
    opened: Vec<(u16, String)>,
    stop: Arc<AtomicBool>,
    lines_ok: Arc<AtomicU64>,
    requests_ok: Arc<AtomicU64>,
    held: Vec<thread::JoinHandle<anyhow::Result<Connection>>>,
    requests: Option<thread::JoinHandle<anyhow::Result<Requests>>>,
}

#[derive(Debug, Default)]
struct Requests {
    ok: u64,
    failed: u64,
    by_backend: BTreeMap<String, u64>,
    errors: Vec<(Duration, String)>,
    longest_gap: Duration,
}

impl Traffic {
    /// Opens the long-lived connections from `local` (an address of
    /// `client`, ports chosen by the kernel) to `vip`, fails if one cannot be
    /// opened, then starts the lines and the request loop.
    pub fn start(client: &Netns, local: IpAddr, vip: SocketAddr, options: &Options) -> anyhow::Result<Self> {
        let started = Instant::now();
        let deadline = started + options.lifetime;
        let stop = Arc::new(AtomicBool::new(false));
        let lines_ok = Arc::new(AtomicU64::new(0));
        let requests_ok = Arc::new(AtomicU64::new(0));
        let mut traffic =
            Self { started, opened: Vec::new(), stop, lines_ok, requests_ok, held: Vec::new(), requests: None };
        for k in 0..options.connections {
            let timeout = options.io_timeout;
            let (port, backend, held) = client
                .run_in(move || {
                    let s = lab::connect_from(SocketAddr::new(local, 0), vip, timeout)?;
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    let port = s.local_addr()?.port();
                    let (backend, held) = Held::open(s)?;
                    Ok((port, backend, held))
                })
                .with_context(|| format!("opening long-lived connection {k} to {vip}"))?;
            traffic.opened.push((port, backend.clone()));
            let (stop, lines_ok, interval) =
                (Arc::clone(&traffic.stop), Arc::clone(&traffic.lines_ok), options.line_interval);
            let t = thread::Builder::new()
                .name(format!("held-{port}"))
                .spawn(move || Ok(hold(held, port, backend, started, deadline, interval, &stop, &lines_ok)))
                .context("spawning a connection's thread")?;
            traffic.held.push(t);
        }
        let (stop, ok, interval) =
            (Arc::clone(&traffic.stop), Arc::clone(&traffic.requests_ok), options.request_interval);
        let t = client.spawn(move || Ok(request_loop(local, vip, started, deadline, interval, &stop, &ok)))?;
        traffic.requests = Some(t);
        Ok(traffic)
    }

    /// Echoed lines and answered requests so far, to see that traffic flows.
    pub fn progress(&self) -> (u64, u64) {
        (self.lines_ok.load(Ordering::Relaxed), self.requests_ok.load(Ordering::Relaxed))
    }

    /// The client port and backend name of each long-lived connection, as
    /// they opened.
    pub fn connections(&self) -> &[(u16, String)] {
        &self.opened
    }

    /// Stops every thread, waits for them (each within one I/O timeout),
    /// and reports.
    pub fn stop(mut self) -> anyhow::Result<Report> {
        self.stop.store(true, Ordering::Relaxed);
        let ran = self.started.elapsed();
        let mut report = Report { ran, ..Report::default() };
        for t in self.held.drain(..) {
            let c = t.join().map_err(|_| anyhow::anyhow!("a connection's thread panicked"))??;
            report.lines_ok += c.lines_ok;
            report.connections_broken += usize::from(c.broken.is_some());
            report.connections.push(c);
        }
        let r = self.requests.take().context("the request loop was joined already")?;
        let r = r.join().map_err(|_| anyhow::anyhow!("the request loop panicked"))??;
        report.requests_ok = r.ok;
        report.requests_failed = r.failed;
        report.requests_by_backend = r.by_backend;
        report.request_errors = r.errors;
        report.longest_request_gap = r.longest_gap;
        Ok(report)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.held.drain(..) {
            let _ = t.join();
        }
        if let Some(t) = self.requests.take() {
            let _ = t.join();
        }
    }
}

/// Sleeps `interval`, or less if `stop` is set meanwhile: the threads check
/// the flag every 10 ms at most, so a stop is prompt.
fn pause(interval: Duration, stop: &AtomicBool) {
    let until = Instant::now() + interval;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        thread::sleep(left.min(Duration::from_millis(10)));
    }
}

#[expect(clippy::too_many_arguments, reason = "a thread body; its arguments are the thread's whole state")]
fn hold(
    mut held: Held,
    port: u16,
    backend: String,
    started: Instant,
    deadline: Instant,
    interval: Duration,
    stop: &AtomicBool,
    lines_ok: &AtomicU64,
) -> Connection {
    let mut c = Connection { port, backend, lines_ok: 0, broken: None, longest_gap: Duration::ZERO };
    let mut last = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if let Err(e) = held.echo(&format!("line {n}")) {
            c.broken = Some((started.elapsed(), format!("line {n}: {e:#}")));
            break;
        }
        let now = Instant::now();
        c.longest_gap = c.longest_gap.max(now - last);
        last = now;
        c.lines_ok += 1;
        lines_ok.fetch_add(1, Ordering::Relaxed);
        n += 1;
        pause(interval, stop);
    }
    c
}

fn request_loop(
    local: IpAddr,
    vip: SocketAddr,
    started: Instant,
    deadline: Instant,
    interval: Duration,
    stop: &AtomicBool,
    ok: &AtomicU64,
) -> Requests {
    let mut r = Requests::default();
    let mut last_ok = started;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match http_get(SocketAddr::new(local, 0), vip) {
            Ok(name) => {
                let now = Instant::now();
                r.longest_gap = r.longest_gap.max(now - last_ok);
                last_ok = now;
                r.ok += 1;
                ok.fetch_add(1, Ordering::Relaxed);
                *r.by_backend.entry(name).or_default() += 1;
            }
            Err(e) => {
                r.failed += 1;
                if r.errors.len() < REQUEST_ERRORS_KEPT {
                    r.errors.push((started.elapsed(), e.to_string()));
                }
            }
        }
        pause(interval, stop);
    }
    r.longest_gap = r.longest_gap.max(last_ok.elapsed());
    r
}
