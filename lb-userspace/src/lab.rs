//! `lb lab`: a self-contained lab in network namespaces, so anyone can watch
//! the balancer forward real traffic without a spare NIC.
//!
//! ```text
//!   client 10.220.0.2 ──┐
//!   director 10.220.0.1 ┤ br0 (namespace "sw")
//!   b1 10.220.0.11 ─────┤   backends hold the VIP 10.220.0.100 on lo
//!   b2 10.220.0.12 ─────┤   and answer the client directly (DR)
//!   b3 10.220.0.13 ─────┘
//! ```
//!
//! The director holds the VIP on its interface (as a VRRP master would) so it
//! answers ARP for it; the XDP program takes every VIP packet before the
//! director's own stack sees it. The client opens HTTP connections to the VIP
//! and the lab prints who answered and what the fast path counted. Midway the
//! lab drains a backend (its slots leave the ring in one atomic swap) and
//! brings it back, to show traffic moving away and back.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use lb_common::{BACKEND_F_ALIVE, Backend, Config, Stat, VIP_KIND_SERVICE, VipKey, proto};

use crate::{
    dataplane::{Dataplane, DataplaneError, DataplaneOptions, PeerPass},
    maglev,
    netns::{self, Netns, NetnsError},
};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab set-up: {0}")]
    Netns(#[from] NetnsError),
    #[error("fast path: {0}")]
    Dataplane(#[from] DataplaneError),
    #[error("building the ring: {0}")]
    Maglev(#[from] maglev::MaglevError),
    #[error("installing the Ctrl-C handler: {source}")]
    Signal { source: std::io::Error },
    #[error("the lab needs root (CAP_NET_ADMIN and CAP_BPF); try `cargo xtask run`")]
    NotRoot,
}

/// Prefix of every namespace the lab creates.
pub const PREFIX: &str = "lblab";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 220, 0, 100);
const VIP_PORT: u16 = 80;
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 220, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 220, 0, 2);
const RING_SIZE: u32 = 65537;
/// (name, address, weight).
const BACKENDS: [(&str, Ipv4Addr, u32); 3] = [
    ("b1", Ipv4Addr::new(10, 220, 0, 11), 1),
    ("b2", Ipv4Addr::new(10, 220, 0, 12), 2),
    ("b3", Ipv4Addr::new(10, 220, 0, 13), 3),
];

#[derive(Clone, Copy, Debug)]
pub struct LabOptions {
    /// Stop after this long; None: until Ctrl-C.
    pub duration: Option<Duration>,
    /// Time between status tables.
    pub interval: Duration,
    /// When to drain b2 and when to restore it, from the start.
    pub drain_at: Duration,
    pub restore_at: Duration,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            duration: None,
            interval: Duration::from_secs(2),
            drain_at: Duration::from_secs(8),
            restore_at: Duration::from_secs(16),
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> Result<(), LabError> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; sigaction is given a fully initialised struct.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(LabError::Signal { source: std::io::Error::last_os_error() });
        }
    }
    Ok(())
}

/// Everything the lab created; dropping it removes it all (fields drop in
/// order: the fast path first, then the namespaces).
struct Lab {
    dataplane: Dataplane,
    _peer_pass: PeerPass,
    backend_ids: Vec<u32>,
    backend_macs: Vec<[u8; 6]>,
    client: Netns,
    _director: Netns,
    backends: Vec<Netns>,
    _switch: Netns,
}

fn ipv4_key(addr: Ipv4Addr) -> [u8; 16] {
    addr.to_ipv6_mapped().octets()
}

fn vip_key() -> VipKey {
    VipKey {
        addr: lb_common::v4_mapped(u32::from_ne_bytes(VIP.octets())),
        port: VIP_PORT.to_be(),
        proto: proto::TCP,
        kind: VIP_KIND_SERVICE,
    }
}

impl Lab {
    fn build() -> Result<Self, LabError> {
        for name in netns::remove_stale(PREFIX) {
            println!("lab: removed {name}, left over from an earlier run");
        }
        let switch = Netns::new(PREFIX, "sw")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        for key in ["call-iptables", "call-ip6tables", "call-arptables"] {
            // Only present with br_netfilter loaded; bridged frames must not
            // detour through the host's firewall.
            let _ = switch.sysctl(&format!("net.bridge.bridge-nf-{key}"), "0");
        }
        let port = |ns: &Netns, inner: &str, outer: &str| -> Result<(), NetnsError> {
            netns::veth(ns, inner, &switch, outer)?;
            switch.ip(&["link", "set", outer, "master", "br0"])?;
            Ok(())
        };

        let director = Netns::new(PREFIX, "director")?;
        port(&director, "eth0", "d0")?;
        director.ip(&["addr", "add", &format!("{DIRECTOR}/24"), "dev", "eth0"])?;
        director.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])?;

        let client = Netns::new(PREFIX, "client")?;
        port(&client, "eth0", "c0")?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"])?;
        // veth leaves checksums to "hardware" (CHECKSUM_PARTIAL) and XDP_TX
        // drops that note, so a backend would get segments whose checksum
        // was never filled in. A real NIC computes it; in the lab the
        // client's stack must.
        client.exec("ethtool", &["-K", "eth0", "tx", "off"])?;

        let mut backends = Vec::new();
        let mut backend_macs = Vec::new();
        for (i, (name, addr, _)) in BACKENDS.iter().enumerate() {
            let ns = Netns::new(PREFIX, name)?;
            port(&ns, "eth0", &format!("b{i}"))?;
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            // DR real-server settings: never answer ARP for the VIP on lo,
            // never use it as an ARP source.
            for scope in ["all", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_ignore"), "1")?;
                ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_announce"), "2")?;
            }
            backend_macs.push(ns.mac("eth0")?);
            backends.push(ns);
        }

        let peer_pass = switch.run_in(|| PeerPass::attach("d0"))??;
        let mut dataplane = director.run_in(|| -> Result<Dataplane, DataplaneError> {
            let mut dp =
                Dataplane::load(DataplaneOptions { max_vips: 2, max_ring_size: RING_SIZE, ..Default::default() })?;
            let mode = dp.attach("eth0")?;
            println!("lab: XDP attached to the director's eth0 ({mode:?} mode)");
            Ok(dp)
        })??;
        dataplane
            .set_config(Config::new(lb_common::DEFAULT_FLOOD_NEW_FLOWS_PER_SEC, 0))?;
        let backend_ids: Vec<u32> = (1..=BACKENDS.len() as u32).collect();
        for (&id, mac) in backend_ids.iter().zip(&backend_macs) {
            dataplane.set_backend(id, Backend { mac: *mac, flags: BACKEND_F_ALIVE, vip_index: 0 })?;
        }
        let mut lab = Self {
            dataplane,
            _peer_pass: peer_pass,
            backend_ids,
            backend_macs,
            client,
            _director: director,
            backends,
            _switch: switch,
        };
        lab.install_ring(&[true; BACKENDS.len()])?;
        Ok(lab)
    }

    /// Rebuilds the VIP's ring from the backends marked in service and swaps
    /// it in: what the agent does when a health check changes state.
    fn install_ring(&mut self, in_service: &[bool]) -> Result<(), LabError> {
        let entries: Vec<maglev::Entry> = BACKENDS
            .iter()
            .zip(&self.backend_ids)
            .zip(in_service)
            .map(|(((_, addr, weight), &id), &up)| maglev::Entry {
                key: ipv4_key(*addr),
                weight: if up { *weight } else { 0 },
                id,
            })
            .collect();
        let ring = maglev::build(&entries, RING_SIZE)?;
        self.dataplane.install_vip(&[vip_key()], 0, 0, &ring)?;
        Ok(())
    }
}

/// A tiny HTTP server on VIP:80 inside a backend's namespace.
fn serve(name: &'static str, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, VIP_PORT)))?;
    listener.set_nonblocking(true)?;
    let body = format!("served by {name}\n");
    let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut conn, _)) => {
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(reply.as_bytes());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Responses per backend and failures, as the client saw them.
#[derive(Clone, Debug, Default)]
struct Tally {
    by_backend: [u64; BACKENDS.len()],
    failed: u64,
    /// Answers from a backend while it was drained (in service = false).
    while_drained: u64,
    /// Which backends are in service, as the client loop sees it.
    in_service: [bool; BACKENDS.len()],
}

/// What a lab run saw, for `lb lab`'s caller and the lab's own test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabReport {
    /// Answers per backend (b1, b2, b3).
    pub answers: Vec<u64>,
    pub failed: u64,
    /// Answers a drained backend gave while drained: connections already in
    /// flight when the ring was swapped, so a handful at most.
    pub answers_while_drained: u64,
    /// Packets the fast path transmitted to backends.
    pub forwarded: u64,
}

fn one_request() -> Option<usize> {
    let addr = SocketAddr::from((VIP, VIP_PORT));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    BACKENDS.iter().position(|(name, _, _)| text.contains(&format!("served by {name}\n")))
}

/// The client: about `rate` new connections a second until stopped.
fn client_loop(rate: u32, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>) {
    let gap = Duration::from_secs(1) / rate;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = one_request();
        if let Ok(mut t) = tally.lock() {
            match result {
                Some(i) => {
                    t.by_backend[i] += 1;
                    if !t.in_service[i] {
                        t.while_drained += 1;
                    }
                }
                None => t.failed += 1,
            }
        }
        if let Some(rest) = gap.checked_sub(started.elapsed()) {
            thread::sleep(rest);
        }
    }
}

/// The lab's script: what happens when.
enum Step {
    Drain(usize),
    Restore(usize),
}

pub fn run(opts: LabOptions) -> Result<LabReport, LabError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    install_signal_handlers()?;
    let mut lab = Lab::build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    for ((name, _, _), ns) in BACKENDS.iter().zip(&lab.backends) {
        let stop = Arc::clone(&stop);
        servers.push(ns.spawn(move || serve(name, stop))?);
    }
    let tally = Arc::new(Mutex::new(Tally { in_service: [true; BACKENDS.len()], ..Tally::default() }));
    let client = {
        let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
        lab.client.spawn(move || client_loop(50, tally, stop))?
    };
    println!(
        "lab: client {CLIENT} -> VIP {VIP}:{VIP_PORT} -> director {DIRECTOR} (XDP, DR) -> backends {}",
        BACKENDS.iter().map(|(n, a, w)| format!("{n} {a} weight {w}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "lab: backend MACs {}; Ctrl-C ends the lab and removes everything it created",
        lab.backend_macs.iter().map(format_mac).collect::<Vec<_>>().join(", ")
    );

    let started = Instant::now();
    let mut in_service = [true; BACKENDS.len()];
    let script = [(opts.drain_at, Step::Drain(1)), (opts.restore_at, Step::Restore(1))];
    let mut script = script.iter().peekable();
    let mut last = Tally::default();
    let mut next_print = started + opts.interval;
    let result = loop {
        if STOP.load(Ordering::SeqCst) || opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break Ok(());
        }
        if let Some((at, step)) = script.peek()
            && started.elapsed() >= *at
        {
            let (i, up) = match step {
                Step::Drain(i) => (*i, false),
                Step::Restore(i) => (*i, true),
            };
            in_service[i] = up;
            if let Ok(mut t) = tally.lock() {
                t.in_service = in_service;
            }
            let t = Instant::now();
            if let Err(e) = lab.install_ring(&in_service) {
                break Err(e);
            }
            println!(
                "lab: {} {} (new ring of {RING_SIZE} slots built and swapped in {:.2} ms)",
                if up { "restored" } else { "drained" },
                BACKENDS[i].0,
                t.elapsed().as_secs_f64() * 1e3
            );
            script.next();
        }
        if Instant::now() >= next_print {
            next_print += opts.interval;
            let now = tally.lock().map(|t| t.clone()).unwrap_or_default();
            if let Err(e) = print_status(&lab, started.elapsed(), &in_service, &now, &last) {
                break Err(e);
            }
            last = now;
        }
        thread::sleep(Duration::from_millis(50));
    };
    stop.store(true, Ordering::SeqCst);
    let _ = client.join();
    for s in servers {
        let _ = s.join();
    }
    let t = tally.lock().map(|t| t.clone()).unwrap_or_default();
    let forwarded = lab.dataplane.stats().map(|s| s.iter().find(|(k, _)| *k == Stat::Tx).map_or(0, |(_, c)| c.packets));
    println!("lab: stopped; removing namespaces");
    drop(lab);
    result?;
    Ok(LabReport {
        answers: t.by_backend.to_vec(),
        failed: t.failed,
        answers_while_drained: t.while_drained,
        forwarded: forwarded?,
    })
}

fn format_mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn print_status(lab: &Lab, elapsed: Duration, in_service: &[bool], now: &Tally, last: &Tally) -> Result<(), LabError> {
    println!();
    println!("t={:>4.1}s  VIP {VIP}:{VIP_PORT}/tcp", elapsed.as_secs_f64());
    println!(
        "  {:<4} {:<13} {:>6} {:<9} {:>10} {:>10} {:>12} {:>12}",
        "", "backend", "weight", "state", "answers", "last", "packets", "bytes"
    );
    for (i, (name, addr, weight)) in BACKENDS.iter().enumerate() {
        let c = lab.dataplane.backend_counters(lab.backend_ids[i])?;
        println!(
            "  {:<4} {:<13} {:>6} {:<9} {:>10} {:>10} {:>12} {:>12}",
            name,
            addr.to_string(),
            weight,
            if in_service[i] { "up" } else { "drained" },
            now.by_backend[i],
            now.by_backend[i] - last.by_backend[i],
            c.packets,
            c.bytes
        );
    }
    let stats = lab.dataplane.stats()?;
    let get = |s: Stat| stats.iter().find(|(k, _)| *k == s).map_or(0, |(_, c)| c.packets);
    println!(
        "  fast path: tx {}  pass {}  drop(no backend) {}  drop(malformed) {}  new flows {}  | client failures {}",
        get(Stat::Tx),
        get(Stat::PassNotIp) + get(Stat::PassNotVip) + get(Stat::PassNoIface),
        get(Stat::DropNoBackend),
        get(Stat::DropMalformed),
        get(Stat::FlowMiss),
        now.failed
    );
    Ok(())
}
