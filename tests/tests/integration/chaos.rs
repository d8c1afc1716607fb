//! Chaos under load: what production does to a director (checks that flap,
//! a VRRP partition, a frozen master, a SYN flood, a backend that comes back
//! with another MAC), with real TCP traffic through the VIP all along
//! ([`lb_tests::traffic`]: long-lived connections echoing a line every
//! 30 ms, and a loop of short HTTP requests), counting what is lost.
//!
//! The world is [`lb_tests::director_pair`]: one or two directors running
//! `lb run` with VRRP (v3, 100 ms). Each test prints its figures on stderr
//! as one line `chaos: NAME key=value ...`. Every wait is bounded, and the
//! pair's guards stop agents, servers and traffic and delete the namespaces
//! (prefix `lbt{pid}-`), also when a test fails. Needs root (CAP_BPF,
//! CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN) and nftables.

use std::{
    fs, io,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use lb_tests::{
    backend::{CONNECT_TIMEOUT, PORT, http_get},
    director_pair::{
        A, B, DirectorPair, IF, Lb, Options, STATE_LIMIT, VIP, Vrrp, all_up, backend, backend_addr, client_addr,
        director_addr, vip, vrrp_state,
    },
    lab, netns, privileges,
    traffic::{self},
};
use lb_userspace::{
    agent::control::{self, Request},
    netdev::Mac,
};
use serde_json::Value;

use crate::support;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
const VRRP: Vrrp = Vrrp::V3_100MS;
const PRIORITY_A: u8 = 150;
const PRIORITY_B: u8 = 100;

/// The tests of this module one at a time: each times failovers and
/// latencies that a second lab would disturb on a small machine, and a
/// pair's cleanup counts every namespace of the process as its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn vip_socket() -> SocketAddr {
    SocketAddr::new(VIP.into(), PORT)
}

/// Builds a pair, runs `scenario`, prints the agents' logs if it failed,
/// and tears everything down (also after a failure).
fn with_pair(tag: &'static str, scenario: impl FnOnce(&mut DirectorPair) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let mut w = DirectorPair::new(Lb::new(LB), Options { tag, udp_port: None })?;
    let result = scenario(&mut w);
    if result.is_err() {
        for d in [A, B] {
            let d = w.director(d);
            eprintln!("[{tag}] director {}'s agent log (tail):\n{}", d.tag, d.log_tail(40));
        }
    }
    let finished = w.finish();
    result?;
    finished
}

/// Director A alone: master, every backend up.
fn start_a(w: &mut DirectorPair) -> anyhow::Result<()> {
    w.start_agent(A, PRIORITY_A, VRRP)?;
    w.wait(A, "A MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
    w.wait(A, "A's backends up", STATE_LIMIT, all_up)?;
    Ok(())
}

/// A master, B backup, every backend up on both.
fn start_both(w: &mut DirectorPair) -> anyhow::Result<()> {
    start_a(w)?;
    w.start_agent(B, PRIORITY_B, VRRP)?;
    w.wait(B, "B BACKUP", STATE_LIMIT, |s| vrrp_state(s) == "BACKUP")?;
    w.wait(B, "B's backends up", STATE_LIMIT, all_up)?;
    let (sa, sb) = (w.status(A)?, w.status(B)?);
    ensure!(vrrp_state(&sa) == "MASTER" && vrrp_state(&sb) == "BACKUP", "A {} / B {}", sa["vrrp"], sb["vrrp"]);
    Ok(())
}
/// The VRRP states of A and B, "-" for one that does not answer.
fn states(w: &mut DirectorPair) -> [String; 2] {
    [A, B].map(|d| w.status(d).map_or_else(|_| "-".to_owned(), |s| vrrp_state(&s)))
}

/// Polls both directors every 20 ms until A is the only master, for at
/// most `limit`; how long it took.
fn wait_only_a_master(w: &mut DirectorPair, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let s = states(w);
        if s[0] == "MASTER" && s[1] == "BACKUP" {
            return Ok(start.elapsed());
        }
        ensure!(start.elapsed() <= limit, "A is not the only master within {limit:?}: A {} / B {}", s[0], s[1]);
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the client's entry for the VIP is director `d`'s MAC.
fn wait_client_on(w: &DirectorPair, d: usize, since: Instant, limit: Duration) -> anyhow::Result<Duration> {
    let mac = w.mac(d)?;
    let moved = netns::wait_for(limit, || (w.client_neighbour()? == mac).then_some(()));
    ensure!(
        moved.is_some(),
        "the client's VIP entry is {:?}, not director {}'s {mac}, {limit:?} on",
        w.client_neighbour(),
        w.director(d).tag
    );
    Ok(since.elapsed())
}

/// A counter of `lb status` (`counters`: [name, value] pairs).
fn counter(s: &Value, name: &str) -> u64 {
    s["counters"].as_array().and_then(|c| c.iter().find(|p| p[0] == name)).and_then(|p| p[1].as_u64()).unwrap_or(0)
}

/// nftables in `ns`: one command.
fn nft(ns: &netns::Netns, command: &str) -> anyhow::Result<()> {
    ns.exec("nft", &[command]).with_context(|| format!("nft {command}"))?;
    Ok(())
}

/// A table `chaos` with an input and an output chain in `ns`.
fn nft_table(ns: &netns::Netns) -> anyhow::Result<()> {
    nft(ns, "add table inet chaos")?;
    nft(ns, "add chain inet chaos input { type filter hook input priority 0; policy accept; }")?;
    nft(ns, "add chain inet chaos output { type filter hook output priority 0; policy accept; }")
}

// ---------------------------------------------------------------------------
// Flapping checks.

/// How long the checks of one backend flap.
const FLAP_FOR: Duration = Duration::from_secs(60);
/// Half a period of the 10 Hz square wave.
const FLAP_HALF: Duration = Duration::from_millis(50);
/// The agent's memory is taken as warmed up this long into the flapping.
const RSS_WARMUP: Duration = Duration::from_secs(10);
/// Allowed growth of the agent's resident memory after warm-up.
const RSS_GROWTH_LIMIT_KIB: u64 = 4 * 1024;
const STATUS_EVERY: Duration = Duration::from_millis(200);
/// What `lb status` should answer within, throughout: it is answered off
/// the agent's loop (14 ms median, 49 ms at most while checks flapped, on
/// the shared 2-CPU machine). A figure, reported in the line; the test
/// fails only on [`STATUS_LIMIT`], so a loaded CI machine does not make it
/// flaky.
const STATUS_TARGET: Duration = Duration::from_millis(100);
/// An agent slower than this to answer is stuck, not merely slow.
const STATUS_LIMIT: Duration = Duration::from_millis(500);

/// VmRSS of `pid`, in KiB.
fn vm_rss_kib(pid: libc::pid_t) -> anyhow::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS without a value")?.parse()?)
}

/// The flapping backend's checks (HTTP from the director's address) are
/// reset by nftables in its namespace every other [`FLAP_HALF`]; the
/// clients' traffic (from the client's address to the VIP) is untouched.
#[test]
fn flapping_checks_leave_the_agent_responsive_and_steady_flows_untouched() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    with_pair("chaos-flap", |w| {
        start_a(w)?;
        let flapping = 2;
        let steady = ["b1", "b2"];
        let ns = w.backend_ns(flapping);
        nft_table(ns)?;
        let traffic = w.start_traffic(&traffic::Options::default())?;
        let socket = w.socket_path(A).to_owned();
        let pid = w.agent_pid(A).context("A's agent pid")?;

        // What `lb status` costs at rest: it reads the whole flow table, one
        // bpf() call per set and CPU.
        let mut at_rest = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            control::request(&socket, &Request::Status).context("lb status at rest")?;
            at_rest.push(t.elapsed());
            thread::sleep(STATUS_EVERY);
        }
        at_rest.sort();
        let rest_median = at_rest[at_rest.len() / 2];

        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let reset =
            format!("add rule inet chaos input ip saddr {} tcp dport {PORT} reject with tcp reset", director_addr(A));
        let ns_name = ns.name().to_owned();
        let flapper = thread::spawn(move || -> anyhow::Result<u64> {
            let mut toggles = 0;
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) && started.elapsed() < FLAP_FOR {
                let command = if toggles % 2 == 0 { reset.as_str() } else { "flush chain inet chaos input" };
                lb_tests::netns::run(
                    std::process::Command::new("ip").args(["netns", "exec", &ns_name, "nft", command]),
                )?;
                toggles += 1;
                next += FLAP_HALF;
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(toggles)
        });

        // Sample the agent while it flaps.
        let mut latencies = Vec::new();
        let (mut rss_warm, mut rss_max, mut rss_first) = (None, 0, 0);
        let (mut downs, mut last_state) = (0u64, String::new());
        let sampled = (|| -> anyhow::Result<()> {
            while started.elapsed() < FLAP_FOR {
                let t = Instant::now();
                let response = control::request(&socket, &Request::Status).context("lb status")?;
                latencies.push(t.elapsed());
                let status = serde_json::to_value(response.status.context("a status without a report")?)?;
                if let Some(b) = backend(&status, backend_addr(flapping)) {
                    let state = b["state"].as_str().unwrap_or_default().to_owned();
                    if state != last_state && last_state == "up" {
                        downs += 1;
                    }
                    last_state = state;
                }
                let rss = vm_rss_kib(pid)?;
                if rss_first == 0 {
                    rss_first = rss;
                }
                if started.elapsed() >= RSS_WARMUP {
                    rss_warm.get_or_insert(rss);
                    rss_max = rss_max.max(rss);
                }
                thread::sleep(STATUS_EVERY.saturating_sub(t.elapsed()));
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let toggles = flapper.join().map_err(|_| anyhow::anyhow!("the flapper panicked"))??;
        nft(ns, "flush chain inet chaos input")?;
        sampled?;
        let report = traffic.stop()?;

        latencies.sort();
        let max = latencies.last().copied().unwrap_or_default();
        let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or_default();
        let median = latencies.get(latencies.len() / 2).copied().unwrap_or_default();
        let slow = latencies.iter().filter(|&&l| l > STATUS_LIMIT).count();
        let over_target = latencies.iter().filter(|&&l| l > STATUS_TARGET).count();
        let rss_warm = rss_warm.context("no RSS sample after warm-up")?;
        let growth = rss_max.saturating_sub(rss_warm);
        let on_steady = report.connections.iter().filter(|c| steady.contains(&c.backend.as_str())).count();
        let broken_steady = report.broken_on(&steady);
        eprintln!(
            "chaos: flapping_checks seconds={} toggles={toggles} went_down={downs} status_samples={} \
             status_rest_median_ms={:.1} status_median_ms={:.1} status_max_ms={:.1} status_p99_ms={:.1} \
             status_over_100ms={over_target} status_over_500ms={slow} rss_start_kib={rss_first} \
             rss_warm_kib={rss_warm} rss_max_kib={rss_max} rss_growth_kib={growth} steady_connections={on_steady} \
             steady_broken={broken_steady} {}",
            FLAP_FOR.as_secs(),
            latencies.len(),
            rest_median.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            report.figures(),
        );
        ensure!(downs >= 5, "the flapping backend went down only {downs} times: the checks did not flap");
        ensure!(slow == 0, "lb status took over {STATUS_LIMIT:?} {slow} times (max {max:?}, {rest_median:?} at rest)");
        ensure!(growth <= RSS_GROWTH_LIMIT_KIB, "the agent grew by {growth} KiB after warm-up");
        ensure!(on_steady > 0, "no long-lived connection reached a steady backend: {report}");
        ensure!(broken_steady == 0, "connections to steady backends broke: {report}");
        ensure!(report.requests_ok > 0, "{report}");
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// VRRP partition.

/// How long adverts between the directors are cut.
const PARTITION_FOR: Duration = Duration::from_secs(5);
/// After the adverts flow again: one master, and the client on it.
const HEAL_LIMIT: Duration = Duration::from_secs(1);

#[test]
fn vrrp_partition_heals_to_one_master_that_the_client_reaches() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    with_pair("chaos-partition", |w| {
        start_both(w)?;
        let traffic = w.start_traffic(&traffic::Options::default())?;
        thread::sleep(Duration::from_millis(300));

        // Adverts cut both ways, on A's side only.
        let cut = Instant::now();
        nft_table(w.director_ns(A))?;
        nft(w.director_ns(A), "add rule inet chaos input ip protocol vrrp drop")?;
        nft(w.director_ns(A), "add rule inet chaos output ip protocol vrrp drop")?;
        let split = w.wait(B, "B MASTER while cut off", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
        let during = states(w);
        ensure!(during[0] == "MASTER", "A left MASTER during the partition: {during:?}");
        thread::sleep(PARTITION_FOR.saturating_sub(cut.elapsed()));
        let during = states(w);
        ensure!(during == ["MASTER", "MASTER"], "not both masters after {PARTITION_FOR:?}: {during:?}");

        nft(w.director_ns(A), "delete table inet chaos")?;
        let restored = Instant::now();
        let one_master = wait_only_a_master(w, HEAL_LIMIT)?;
        let client_on_a = wait_client_on(w, A, restored, HEAL_LIMIT)?;
        // Still one master a while later.
        thread::sleep(Duration::from_millis(500));
        let after = states(w);
        ensure!(after == ["MASTER", "BACKUP"], "A {} / B {} after healing", after[0], after[1]);

        // New connections go through A.
        let a_packets = |w: &mut DirectorPair| -> anyhow::Result<u64> {
            let s = w.status(A)?;
            Ok(vip(&s, PORT, "tcp").map_or(0, |v| v["packets"].as_u64().unwrap_or(0)))
        };
        let before = a_packets(w)?;
        let (client, target) = (client_addr(), vip_socket());
        w.client().run_in(move || Ok(http_get(SocketAddr::new(client, 0), target)?))?;
        let through_a = a_packets(w)? - before;
        let report = traffic.stop()?;
        eprintln!(
            "chaos: vrrp_partition cut_s={} b_master_after_ms={} one_master_after_ms={} client_on_a_after_ms={} \
             a_vip_packets_over_one_request={through_a} {}",
            PARTITION_FOR.as_secs(),
            split.as_millis(),
            one_master.as_millis(),
            client_on_a.as_millis(),
            report.figures(),
        );
        ensure!(through_a > 0, "a request after healing did not go through A");
        ensure!(report.connections_broken == 0, "{report}");
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Master frozen.

/// How long the master stays frozen.
const FROZEN_FOR: Duration = Duration::from_secs(3);

#[test]
fn frozen_master_loses_nothing_beyond_the_takeover() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    with_pair("chaos-frozen", |w| {
        start_both(w)?;
        let traffic = w.start_traffic(&traffic::Options::default())?;
        thread::sleep(Duration::from_millis(500));

        let master_down = VRRP.master_down(PRIORITY_B);
        // A SIGSTOPped agent whose machine is cut off the link, see
        // `DirectorPair::freeze`.
        let frozen = Instant::now();
        w.freeze(A)?;
        let takeover = w.wait(B, "B MASTER", master_down + Duration::from_secs(1), |s| vrrp_state(s) == "MASTER")?;
        let client_on_b = wait_client_on(w, B, frozen, Duration::from_secs(1))?;
        thread::sleep(FROZEN_FOR.saturating_sub(frozen.elapsed()));

        w.thaw(A)?;
        let thawed = Instant::now();
        let one_master = wait_only_a_master(w, HEAL_LIMIT)?;
        let client_on_a = wait_client_on(w, A, thawed, HEAL_LIMIT)?;
        thread::sleep(Duration::from_millis(500));
        let after = states(w);
        ensure!(after == ["MASTER", "BACKUP"], "A {} / B {} after the thaw", after[0], after[1]);
        let report = traffic.stop()?;

        // A request in flight when A froze loses its SYN: one retransmission
        // (1 s) after the takeover, or the connect timeout, ends it. A held
        // connection's segment is retransmitted at 200, 600, 1400 ms...
        let request_gap_limit = master_down + CONNECT_TIMEOUT + Duration::from_millis(500);
        let line_gap_limit = master_down + Duration::from_millis(1500);
        let requests_failed_limit = 3;
        eprintln!(
            "chaos: master_frozen frozen_s={} master_down_ms={} takeover_ms={} client_on_b_ms={} \
             one_master_after_thaw_ms={} client_on_a_after_thaw_ms={} {}",
            FROZEN_FOR.as_secs(),
            master_down.as_millis(),
            takeover.as_millis(),
            client_on_b.as_millis(),
            one_master.as_millis(),
            client_on_a.as_millis(),
            report.figures(),
        );
        ensure!(report.connections_broken == 0, "{report}");
        ensure!(report.requests_failed <= requests_failed_limit, "over {requests_failed_limit} failed: {report}");
        ensure!(
            report.longest_request_gap <= request_gap_limit,
            "requests stopped over {request_gap_limit:?}: {report}"
        );
        ensure!(report.longest_line_gap() <= line_gap_limit, "lines stopped over {line_gap_limit:?}: {report}");
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// SYN flood.

const FLOOD_FOR: Duration = Duration::from_secs(10);
/// The flood guard's limit for this test, low enough that the generator
/// exceeds it on any machine.
const FLOOD_GUARD: u32 = 2000;
/// SYNs a second. In this lab the generator, the director's kernel, its
/// agent and the backends share two CPUs: at the 450-600k a second the
/// generator reaches unpaced, the director's own ARP to its backends went
/// unanswered and its kernel dropped the test's connections, which is CPU
/// starvation of the whole lab rather than anything the fast path does (on
/// a director the flood arrives on a NIC, not from a process beside it).
/// 100k a second is still 50 times the flood guard's threshold.
const FLOOD_RATE: u32 = 100_000;
/// A port the director itself listens on, for non-VIP traffic.
const DIRECTOR_PORT: u16 = 9000;
/// A connection to the director's own address: long enough for two SYN
/// retransmissions (at 1 s and 3 s): the flood shares the lab's two CPUs
/// with the director's kernel, whose backlog may drop a SYN or two on the
/// way; the question is whether it is answered, not how fast.
const PROBE_TIMEOUT: Duration = Duration::from_millis(4500);

/// One Ethernet + IPv4 + TCP SYN frame to the VIP.
fn syn_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, sport: u16) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&VIP.octets());
    let sum = checksum(0, &f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&u32::from(sport).wrapping_mul(2_654_435_761).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = 0u32;
    for w in [&src.octets()[..], &VIP.octets()[..]] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]])) + u32::from(u16::from_be_bytes([w[2], w[3]]));
    }
    pseudo += 6 + 20;
    let sum = checksum(pseudo, &f[34..54]);
    f[50..52].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The Internet checksum of `bytes`, starting from `sum`.
fn checksum(mut sum: u32, bytes: &[u8]) -> u16 {
    for c in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends SYNs from random sources in 198.18.0.0/15 (not routed anywhere in
/// the lab, so nobody answers them) out of `IF` until `stop` or `limit`;
/// how many went out. Call it on a thread inside the client's namespace.
fn flood(dst_mac: [u8; 6], stop: &AtomicBool, limit: Duration) -> anyhow::Result<u64> {
    let src_mac = lb_userspace::netdev::mac(IF)?;
    let ifindex = lb_userspace::netdev::index(IF)?;
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket creation; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: fd was just returned by socket() and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dst_mac);
    let one: libc::c_int = 1;
    // SAFETY: an int option of the right size. Skipping the qdisc is what a
    // packet generator does; failing to is no reason to stop.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let started = Instant::now();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let (mut sent, mut errors) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        // Paced to FLOOD_RATE: see there.
        let due = Duration::from_secs_f64(sent as f64 / f64::from(FLOOD_RATE));
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            thread::sleep(ahead);
        }
        for _ in 0..256 {
            // xorshift: a new source address and port for every SYN.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let src = Ipv4Addr::from(0xc612_0000 | (seed as u32 & 0x0001_ffff));
            let frame = syn_frame(dst_mac, src_mac, src, (seed >> 32) as u16 | 1024);
            // SAFETY: the frame and the address are valid for the call.
            let n = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const sll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if n < 0 {
                // A full device queue: yield a moment rather than spin.
                errors += 1;
                thread::sleep(Duration::from_micros(50));
            } else {
                sent += 1;
            }
        }
    }
    log::debug!("flood: {sent} sent, {errors} refused");
    Ok(sent)
}

#[test]
fn syn_flood_breaks_no_connection_and_the_director_still_answers() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    with_pair("chaos-flood", |w| {
        start_a(w)?;
        // A low guard, so that the flood trips it. And checks as a director
        // in production has them rather than the pair's 300 ms, fall 2 (made
        // for quick failovers): a flood that saturates this lab's CPUs
        // delays a check's SYN by more than 300 ms, and a backend marked
        // down has its established flows re-hashed (reset by another
        // backend), which would measure the lab, not the guard.
        let config = fs::read_to_string(w.config_path(A))?;
        let config = config
            .replacen("[global]\n", &format!("[global]\nmax_new_flows_per_sec = {FLOOD_GUARD}\n"), 1)
            .replacen("timeout = \"300ms\"\nfall = 2\n", "timeout = \"3s\"\nfall = 3\n", 1);
        ensure!(config.contains("timeout = \"3s\"\nfall = 3\n"), "the check section changed:\n{config}");
        fs::write(w.config_path(A), config)?;
        control::request(w.socket_path(A), &Request::Reload).context("lb reload")?;
        // Non-VIP traffic: a TCP listener on the director's own address.
        let director = SocketAddr::new(director_addr(A), DIRECTOR_PORT);
        let listener = w.director_ns(A).run_in(move || Ok(TcpListener::bind(director)?))?;
        listener.set_nonblocking(true)?;
        let before = w.status(A)?;
        // The flood saturates this lab's CPUs, and the director's receive
        // queue drops segments of established connections too: TCP backs off
        // (200 ms doubling: a segment lost near the flood's end may wait
        // 12.8 s for its next try) and recovers once the flood ends. A
        // connection counts as broken if it is reset, or not back within this.
        let options =
            traffic::Options { io_timeout: FLOOD_FOR + Duration::from_secs(20), ..traffic::Options::default() };
        let traffic = w.start_traffic(&options)?;

        let dst_mac = netns::mac_of(w.director_ns(A), IF)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let flood_started = Instant::now();
        let generator = w.client().spawn(move || flood(dst_mac, &flag, FLOOD_FOR))?;
        // Connect to the director every 100 ms while it floods.
        let client = client_addr();
        let probes = w.client().spawn(move || {
            let (mut ok, mut failed, mut worst) = (0u32, 0u32, Duration::ZERO);
            while flood_started.elapsed() < FLOOD_FOR {
                let t = Instant::now();
                match lab::connect_from(SocketAddr::new(client, 0), director, PROBE_TIMEOUT) {
                    Ok(_) => {
                        ok += 1;
                        worst = worst.max(t.elapsed());
                    }
                    Err(_) => failed += 1,
                }
                thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
            }
            Ok((ok, failed, worst))
        })?;
        let probed = probes.join().map_err(|_| anyhow::anyhow!("the probe thread panicked"))?;
        stop.store(true, Ordering::Relaxed);
        let sent = generator.join().map_err(|_| anyhow::anyhow!("the generator panicked"))??;
        let flooded = flood_started.elapsed();
        let (probes_ok, probes_failed, probe_worst) = probed?;
        // Accept what the probes queued, so none is left half-open.
        while listener.accept().is_ok() {}
        thread::sleep(Duration::from_millis(500));
        let report = traffic.stop()?;
        let after = w.status(A)?;
        let skipped = counter(&after, "flood_skip") - counter(&before, "flood_skip");
        eprintln!(
            "chaos: syn_flood seconds={:.1} syns_sent={sent} syns_per_s={:.0} flood_guard_per_s={FLOOD_GUARD} \
             flood_skip={skipped} director_connects_ok={probes_ok} director_connects_failed={probes_failed} \
             director_connect_worst_ms={:.1} {}",
            flooded.as_secs_f64(),
            sent as f64 / flooded.as_secs_f64(),
            probe_worst.as_secs_f64() * 1e3,
            report.figures(),
        );
        ensure!(sent > 0, "the generator sent nothing");
        ensure!(skipped > 0, "the flood guard reports no skipped insert (status counters: {})", after["counters"]);
        ensure!(report.connections_broken == 0, "{report}");
        ensure!(
            probes_ok > 0 && probes_failed == 0,
            "the director's own address: {probes_ok} ok, {probes_failed} failed"
        );
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// A backend with a new MAC.

const NEW_MAC: [u8; 6] = [0x02, 0x16, 0, 0, 0, 0x99];
/// The neighbour watcher's re-probe interval
/// (`lb_userspace::neigh::NeighbourOptions::default().reprobe_interval`,
/// 3 s) plus the kernel's unicast probes of a moved MAC (3, 1 s apart)
/// and a broadcast resolution: a backend that comes back with another MAC
/// and announces nothing is followed within this.
const FOLLOW_LIMIT: Duration = Duration::from_secs(8);

#[test]
fn backend_with_a_new_mac_is_followed_and_keeps_its_flows() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    with_pair("chaos-mac", |w| {
        start_a(w)?;
        // Long enough to ride out the time the director sends to the old MAC.
        let options = traffic::Options { io_timeout: Duration::from_secs(20), ..traffic::Options::default() };
        let traffic = w.start_traffic(&options)?;
        let name = traffic.connections().first().context("no long-lived connection")?.1.clone();
        let i: usize = name.strip_prefix('b').and_then(|n| n.parse().ok()).context("a backend's name")?;
        let (ns, address) = (w.backend_ns(i - 1), backend_addr(i - 1));
        let old_mac = netns::mac_of(ns, IF)?;
        thread::sleep(Duration::from_millis(500));

        // Down, a new MAC, up: a replaced card or a moved VM that says
        // nothing (no gratuitous ARP).
        ns.sysctl(&format!("net.ipv4.conf.{IF}.arp_notify"), "0")?;
        let moved = Instant::now();
        ns.ip(&["link", "set", IF, "down"])?;
        ns.ip(&["link", "set", IF, "address", &Mac(NEW_MAC).to_string()])?;
        ns.ip(&["link", "set", IF, "up"])?;
        let new = Mac(NEW_MAC).to_string();
        let followed = w.wait(A, "the new MAC in A's status", FOLLOW_LIMIT, |s| {
            backend(s, address).is_some_and(|b| b["mac"].as_str() == Some(new.as_str()))
        })?;
        w.wait(A, "the backend up again", STATE_LIMIT, all_up)?;
        let up_again = moved.elapsed();
        // The held connections on it echo again.
        let (lines, _) = traffic.progress();
        let flowing = netns::wait_for(Duration::from_secs(5), || (traffic.progress().0 > lines + 20).then_some(()));
        ensure!(flowing.is_some(), "lines stopped after the move");
        thread::sleep(Duration::from_millis(500));
        let diagnostics = [
            ("backend ss", w.backend_ns(i - 1).exec("ss", &["-tinoe"]).unwrap_or_default()),
            ("backend neigh", w.backend_ns(i - 1).ip(&["neigh"]).unwrap_or_default()),
            ("backend route", w.backend_ns(i - 1).ip(&["route"]).unwrap_or_default()),
            ("client ss", w.client().exec("ss", &["-tinoe"]).unwrap_or_default()),
            ("director neigh", w.director_ns(A).ip(&["neigh"]).unwrap_or_default()),
        ];
        let report = traffic.stop()?;
        if report.connections_broken > 0 {
            for (what, text) in diagnostics {
                eprintln!("[chaos-mac] {what}:\n{text}");
            }
        }
        let on_moved: Vec<_> = report.connections.iter().filter(|c| c.backend == name).collect();
        let gap = on_moved.iter().map(|c| c.longest_gap).max().unwrap_or_default();
        eprintln!(
            "chaos: backend_new_mac backend={name} old_mac={} new_mac={new} followed_ms={} up_again_ms={} \
             connections_on_it={} their_line_gap_ms={} {}",
            Mac(old_mac),
            followed.as_millis(),
            up_again.as_millis(),
            on_moved.len(),
            gap.as_millis(),
            report.figures(),
        );
        ensure!(report.connections_broken == 0, "{report}");
        // Retransmissions back off (200 ms doubling), so the first one after
        // the follow can come up to about as late again.
        ensure!(gap <= 2 * FOLLOW_LIMIT, "the moved backend's flows stopped for {gap:?}: {report}");
        Ok(())
    })
}
