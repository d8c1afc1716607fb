//! Director failover with VRRP, end to end: two directors A (priority 150)
//! and B (priority 100) run `lb run` with the same VIP and backends plus a
//! `[[vrrp]]` instance (v3, 100 ms), so the master holds the VIP on its
//! eth0 and answers ARP for it. A client holds a TCP connection through A;
//! A's agent is stopped with SIGTERM (priority 0, VIP removed), B takes
//! over and announces the VIP by gratuitous ARP, and the same connection
//! goes on through B to the same backend (Maglev is deterministic across
//! directors), as do new connections from the same source ports. Needs
//! root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW).
//!
//! The world (namespaces, bridge, agents) is `lb_tests::director_pair`;
//! every wait is bounded; guards stop the agents, the servers and the
//! client's echo thread and delete the namespaces, also when the test fails.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_tests::{
    backend::{CONNECT_TIMEOUT, Held, PORT, http_get},
    director_pair::{
        A, B, DirectorPair, Lb, Options, STATE_LIMIT, VIP, Vrrp, all_up, backend, backend_addr, client_addr, u64_of,
        vip, vrrp_state,
    },
    lab as dr, netns, privileges,
};

use crate::support;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
/// The held connection's reads and writes: long enough to ride out the
/// failover on TCP retransmissions.
const HELD_TIMEOUT: Duration = Duration::from_secs(5);
/// B must be master this soon after A's SIGTERM (skew time ~61 ms, plus slack).
const TAKEOVER_LIMIT: Duration = Duration::from_millis(1500);
const SHORT_CONNECTIONS: u16 = 30;
const FIRST_SHORT_PORT: u16 = 41000;
const HELD_PORT: u16 = 40999;

// ---------------------------------------------------------------------------
// Backends: HTTP with the server's name as body, and HOLD/echo.

/// Echoes on the held connection every 10 ms on a thread of its own,
/// recording when each echo came back, until stopped or an echo fails.
/// What the echo thread hands back: the connection, when each echo came
/// back, and the error that ended it early, if any.
type Echoed = (Held, Vec<Instant>, Option<String>);

#[derive(Debug)]
struct Echoer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Echoed>>,
}

impl Echoer {
    fn start(mut held: Held) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("echoer".into())
            .spawn(move || {
                let mut times = Vec::new();
                let mut n = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    if let Err(e) = held.echo(&format!("echo {n}")) {
                        return (held, times, Some(format!("echo {n}: {e:#}")));
                    }
                    times.push(Instant::now());
                    n += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                (held, times, None)
            })
            .context("spawning the echo thread")?;
        Ok(Self { stop, thread: Some(thread) })
    }

    fn finish(mut self) -> anyhow::Result<Echoed> {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().context("echo thread already joined")?;
        t.join().map_err(|_| anyhow::anyhow!("the echo thread panicked"))
    }
}

impl Drop for Echoer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The client's side.

/// One HTTP request per source port, in order; (port, backend or error).
fn short_connections(w: &DirectorPair) -> anyhow::Result<BTreeMap<u16, Result<String, String>>> {
    let (client, vip) = (client_addr(), SocketAddr::new(VIP.into(), PORT));
    w.client().run_in(move || {
        Ok((FIRST_SHORT_PORT..FIRST_SHORT_PORT + SHORT_CONNECTIONS)
            .map(|port| (port, http_get(SocketAddr::new(client, port), vip).map_err(|e| e.to_string())))
            .collect())
    })
}

fn hold(w: &DirectorPair) -> anyhow::Result<(String, Held)> {
    let (client, vip) = (client_addr(), SocketAddr::new(VIP.into(), PORT));
    let stream = w.client().run_in(move || {
        let s = dr::connect_from(SocketAddr::new(client, HELD_PORT), vip, CONNECT_TIMEOUT)?;
        s.set_read_timeout(Some(HELD_TIMEOUT))?;
        s.set_write_timeout(Some(HELD_TIMEOUT))?;
        Ok(s)
    })?;
    Held::open(stream)
}

// ---------------------------------------------------------------------------
// The test.

#[test]
fn established_flow_survives_director_failover() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let mut world = DirectorPair::new(Lb::new(LB), Options { tag: "failover-test", udp_port: None })?;
    let result = scenario(&mut world);
    if result.is_err() {
        for d in [A, B] {
            let d = world.director(d);
            println!("[failover] director {}'s agent log (tail):\n{}", d.tag, d.log_tail(40));
        }
    }
    let finished = world.finish();
    result?;
    finished
}

fn scenario(w: &mut DirectorPair) -> anyhow::Result<()> {
    let started = Instant::now();
    let a_mac = w.mac(A)?;
    let b_mac = w.mac(B)?;

    let took = w.start_agent(A, 150, Vrrp::V3_100MS)?;
    println!("[failover] director a serving after {took:?}");
    w.wait(A, "A MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
    let took = w.start_agent(B, 100, Vrrp::V3_100MS)?;
    println!("[failover] director b serving after {took:?}");
    w.wait(B, "B BACKUP", STATE_LIMIT, |s| vrrp_state(s) == "BACKUP")?;
    w.wait(A, "A's backends up", STATE_LIMIT, all_up)?;
    w.wait(B, "B's backends up", STATE_LIMIT, all_up)?;
    // Settled: A master, B backup, and both still so.
    thread::sleep(Duration::from_millis(300));
    let (sa, sb) = (w.status(A)?, w.status(B)?);
    ensure!(vrrp_state(&sa) == "MASTER" && vrrp_state(&sb) == "BACKUP", "A {} / B {}", sa["vrrp"], sb["vrrp"]);
    println!("[failover] A MASTER, B BACKUP, all backends up on both after {:?}", started.elapsed());

    // The held connection, through A (the client ARPs for the VIP).
    let (name, mut held) = hold(w)?;
    for k in 0..3 {
        held.echo(&format!("before {k}"))?;
    }
    let i: usize = name.strip_prefix('b').and_then(|n| n.parse().ok()).context("a backend's name")?;
    let held_backend = backend_addr(i - 1);
    ensure!(
        w.client_neighbour().as_deref() == Some(a_mac.as_str()),
        "the VIP resolves to {:?}, not A's {a_mac}",
        w.client_neighbour()
    );
    println!("[failover] held connection on {name} ({held_backend}); the client's VIP entry is A's MAC {a_mac}");

    let before = short_connections(w)?;
    let failed: Vec<_> = before.iter().filter(|(_, r)| r.is_err()).collect();
    ensure!(failed.is_empty(), "short connections through A failed: {failed:?}");
    let spread: BTreeSet<&String> = before.values().filter_map(|r| r.as_ref().ok()).collect();
    println!("[failover] {SHORT_CONNECTIONS} short connections through A: {spread:?}");

    let sb = w.status(B)?;
    let b_vip = vip(&sb, PORT, "tcp").context("the VIP in B's status")?;
    ensure!(u64_of(b_vip, "packets") == 0, "B saw VIP packets before the failover: {b_vip}");
    let sa = w.status(A)?;
    let b = backend(&sa, held_backend).context("held backend in A's status")?;
    ensure!(u64_of(b, "packets") > 0, "A carried nothing to {name}: {b}");

    // Echo continuously, then stop A's agent.
    let echoer = Echoer::start(held)?;
    thread::sleep(Duration::from_millis(300));
    let term = Instant::now();
    w.signal_term(A)?;
    let took = w.wait(B, "B MASTER", TAKEOVER_LIMIT, |s| vrrp_state(s) == "MASTER")?;
    println!("[failover] B MASTER {took:?} after A's SIGTERM");
    let (st, killed) = w.terminate(A, Duration::from_secs(10))?;
    ensure!(st.success() && !killed, "A's agent ended with {st} (SIGKILL: {killed})");
    println!("[failover] A's agent exited {:?} after SIGTERM", term.elapsed());
    let moved = netns::wait_for(Duration::from_secs(3), || (w.client_neighbour()? == b_mac).then_some(()));
    ensure!(moved.is_some(), "the client's VIP entry did not move to B's MAC {b_mac}: {:?}", w.client_neighbour());
    // Let echoes run through B for a while.
    thread::sleep(Duration::from_millis(500));
    let (mut held, times, error) = echoer.finish()?;
    if let Some(e) = error {
        bail!("the held connection broke during the failover: {e}");
    }
    let before_term = times.iter().filter(|&&t| t < term).count();
    ensure!(before_term > 0, "no echo before the SIGTERM");
    let (gap_at, gap) =
        times.windows(2).map(|p| (p[0], p[1] - p[0])).max_by_key(|&(_, g)| g).context("too few echoes")?;
    let after_gap = times.iter().filter(|&&t| t > gap_at).count();
    ensure!(after_gap >= 5, "only {after_gap} echoes after the largest gap");
    // Signed: where the gap starts relative to the SIGTERM, in ms.
    let gap_from_term =
        if gap_at >= term { (gap_at - term).as_secs_f64() * 1000.0 } else { -(term - gap_at).as_secs_f64() * 1000.0 };
    println!(
        "[failover] {} echoes ({before_term} before SIGTERM); failover time (last echo via A -> first echo via B): \
         {gap:?}, the last echo via A {gap_from_term:+.1} ms after the SIGTERM",
        times.len(),
    );
    for k in 0..3 {
        held.echo(&format!("after {k}"))?;
    }

    // B carried the held connection to the same backend (or it would have
    // been reset), and has a flow for it now.
    let sb = w.status(B)?;
    let b = backend(&sb, held_backend).context("held backend in B's status")?;
    ensure!(u64_of(b, "packets") > 0 && u64_of(b, "flows") >= 1, "B did not carry the held connection to {name}: {b}");
    ensure!(w.client_neighbour().as_deref() == Some(b_mac.as_str()), "the VIP's entry: {:?}", w.client_neighbour());

    // The same source ports reach the same backends through B.
    let after = short_connections(w)?;
    let mut differ = Vec::new();
    for (port, was) in &before {
        let now = &after[port];
        if now.as_ref().ok() != was.as_ref().ok() {
            differ.push(format!("port {port}: {was:?} then {now:?}"));
        }
    }
    ensure!(differ.is_empty(), "short connections through B differ from A's: {}", differ.join("; "));
    let sb = w.status(B)?;
    let b_vip = vip(&sb, PORT, "tcp").context("the VIP in B's status")?;
    ensure!(u64_of(b_vip, "packets") > 0, "B's VIP counters: {b_vip}");
    println!(
        "[failover] all {SHORT_CONNECTIONS} short connections map to the same backends through B; total {:?}",
        started.elapsed()
    );
    Ok(())
}
