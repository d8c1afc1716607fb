//! VRRP failover time as a client sees it: two directors running the real
//! agent ([`crate::director_pair`]), both at priority 100, and a client
//! that sends a UDP probe through the VIP every 2 ms. Backends answer it
//! directly (DR) and say in the answer which director's MAC the probe came
//! from, so the figure is exactly "last reply through the old master to
//! first reply through the new one", with no TCP retransmission timer in it.
//!
//! - clean stop: SIGTERM to the master's agent (it sends priority 0, drops
//!   the VIP and detaches XDP); bound: the backup's Skew_Time.
//! - frozen master: SIGSTOP to the master's agent and, at the same instant,
//!   its bridge port disabled. A frozen director is a frozen machine: with
//!   only the agent stopped, its kernel would keep the VIP and its XDP
//!   program would keep forwarding, and the client would see no gap at all.
//!   Bound: the backup's Master_Down_Interval (counted from the last advert,
//!   which went out up to one interval before the freeze).
//!
//! Both directors have the same priority, so whoever is backup is a
//! priority-100 backup and the roles simply alternate: a stopped agent is
//! started again as a backup, a thawed one finds the other master (one of
//! them steps down at once, by address) and no round waits for preemption.

use std::{
    ffi::OsString,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_userspace::netdev::Mac;
use serde_json::Value;

use crate::{
    bench::{median, sys::interrupted},
    director_pair::{self as pair, DirectorPair, IF, Lb, STATE_LIMIT, VIP, Vrrp, all_up, vrrp_state},
    netns::Netns,
};

/// Set in the environment of a child `lb-bench`, it makes that child the
/// `lb` program (see `lb-bench`'s `main`): the agents run from the very
/// binary being benchmarked, with nothing else to build.
pub const AS_LB_ENV: &str = "LB_BENCH_AS_LB";
/// The probe's UDP VIP port.
pub const PROBE_PORT: u16 = 9000;
/// One probe this often: the figure's resolution.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);
/// The backup's priority the bounds are for (both directors have it).
pub const PRIORITY: u8 = 100;
/// Replies through the master before the event, so the path is known good.
const STEADY_REPLIES: usize = 20;
/// Replies through the new master before a round is over.
const AFTER_REPLIES: usize = 10;
/// No probe thread or responder outlives a run by much, even one nobody stops.
const THREAD_LIFETIME: Duration = Duration::from_secs(300);

/// `lb-bench` itself as `lb` (see [`AS_LB_ENV`]).
pub fn lb_self() -> anyhow::Result<Lb> {
    let program = std::env::current_exe().context("finding lb-bench's own path")?;
    Ok(Lb { program, env: vec![(OsString::from(AS_LB_ENV), OsString::from("1"))], run_args: Vec::new() })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stop,
    Frozen,
}

/// One figure: a VRRP version and interval, and how the master goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub vrrp: Vrrp,
    pub kind: Kind,
}

impl Case {
    pub const ALL: [Case; 4] = [
        Case { vrrp: Vrrp::V3_100MS, kind: Kind::Stop },
        Case { vrrp: Vrrp::V3_100MS, kind: Kind::Frozen },
        Case { vrrp: Vrrp::V2_1S, kind: Kind::Stop },
        Case { vrrp: Vrrp::V2_1S, kind: Kind::Frozen },
    ];

    /// `v3_stop`, `v2_frozen`, ...: the middle of the JSON keys.
    pub fn key(self) -> String {
        let kind = match self.kind {
            Kind::Stop => "stop",
            Kind::Frozen => "frozen",
        };
        format!("v{}_{kind}", self.vrrp.version)
    }

    pub fn label(self) -> String {
        let kind = match self.kind {
            Kind::Stop => "clean stop (SIGTERM)",
            Kind::Frozen => "frozen master",
        };
        format!("v{} advert_int {:?}, {kind}", self.vrrp.version, self.vrrp.advert_int)
    }

    /// The RFC's bound for a backup of [`PRIORITY`]: Skew_Time after a
    /// priority-0 advert, Master_Down_Interval after the last advert.
    pub fn bound(self) -> Duration {
        match self.kind {
            Kind::Stop => self.vrrp.skew(PRIORITY),
            Kind::Frozen => self.vrrp.master_down(PRIORITY),
        }
    }

    pub fn bound_name(self) -> &'static str {
        match self.kind {
            Kind::Stop => "Skew_Time",
            Kind::Frozen => "Master_Down_Interval",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub rounds: usize,
}

/// One measured failover.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    /// Last reply through the old master to the first through the new one.
    pub gap: Duration,
    /// When the last reply through the old master came, from the event
    /// (SIGTERM, or SIGSTOP plus the cut); negative when before it.
    pub last_old_ms: f64,
    /// Probes sent during the round that got no reply.
    pub lost: u64,
}

#[derive(Clone, Debug)]
pub struct Figure {
    pub case: Case,
    pub rounds: Vec<Round>,
    pub errors: Vec<String>,
}

impl Figure {
    /// Median over the rounds, in seconds; NaN when none succeeded.
    pub fn median_s(&self) -> f64 {
        median(&self.rounds_s())
    }

    pub fn rounds_s(&self) -> Vec<f64> {
        self.rounds.iter().map(|r| r.gap.as_secs_f64()).collect()
    }
}

#[derive(Debug, Default)]
pub struct Results {
    pub figures: Vec<Figure>,
    pub warnings: Vec<String>,
}

/// Runs `opts.rounds` rounds of every [`Case`], stop and frozen rounds
/// interleaved, v3 first; one line per round through `say`.
pub fn run(opts: &Options, say: &mut dyn FnMut(String)) -> anyhow::Result<Results> {
    // lb-bench pins itself to one CPU, and children inherit that: two agents,
    // the probe and the backends on one CPU would measure the scheduler.
    let _all_cpus = AllCpus::enter()?;
    let mut pair = DirectorPair::new(lb_self()?, pair::Options { tag: "failover-bench", udp_port: Some(PROBE_PORT) })?;
    let responders =
        (0..pair::BACKENDS).map(|i| Responder::start(pair.backend_ns(i))).collect::<anyhow::Result<Vec<_>>>();
    let result = responders.and_then(|responders| {
        let r = measure(&mut pair, opts, say);
        drop(responders);
        r
    });
    if result.is_err() {
        for d in [pair::A, pair::B] {
            let d = pair.director(d);
            say(format!("  director {}'s agent log (tail):\n{}", d.tag, d.log_tail(20)));
        }
    }
    let finished = pair.finish();
    let results = result?;
    finished?;
    Ok(results)
}

fn measure(pair: &mut DirectorPair, opts: &Options, say: &mut dyn FnMut(String)) -> anyhow::Result<Results> {
    let mut results = Results::default();
    for vrrp in [Vrrp::V3_100MS, Vrrp::V2_1S] {
        let started = Instant::now();
        cold_start(pair, vrrp)?;
        say(format!("  v{} at {:?}: A master, B backup after {:.1} s", vrrp.version, vrrp.advert_int, secs(started)));
        let cases: Vec<Case> = Case::ALL.into_iter().filter(|c| c.vrrp == vrrp).collect();
        let mut figures: Vec<Figure> =
            cases.iter().map(|&case| Figure { case, rounds: Vec::new(), errors: Vec::new() }).collect();
        for r in 0..opts.rounds {
            for f in &mut figures {
                ensure!(!interrupted(), "interrupted");
                let started = Instant::now();
                match round(pair, f.case) {
                    Ok((round, how)) => {
                        say(format!(
                            "    {} round {}: {:.3} s ({how}; last reply via the old master {:+.1} ms from the \
                             event; {} probes lost; round took {:.1} s)",
                            f.case.key(),
                            r + 1,
                            round.gap.as_secs_f64(),
                            round.last_old_ms,
                            round.lost,
                            secs(started),
                        ));
                        f.rounds.push(round);
                    }
                    Err(e) => {
                        say(format!(
                            "    {} round {}: FAILED: {e:#}; starting both agents afresh",
                            f.case.key(),
                            r + 1
                        ));
                        f.errors.push(format!("{e:#}"));
                        cold_start(pair, vrrp).context("starting afresh after a failed round")?;
                    }
                }
            }
        }
        for f in &figures {
            if !f.errors.is_empty() {
                results.warnings.push(format!(
                    "failover {}: {} of {} rounds failed",
                    f.case.key(),
                    f.errors.len(),
                    opts.rounds
                ));
            }
        }
        results.figures.extend(figures);
    }
    Ok(results)
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// Both agents (re)started with `vrrp`: A first, so A is master, then B as backup.
fn cold_start(pair: &mut DirectorPair, vrrp: Vrrp) -> anyhow::Result<()> {
    for d in [pair::B, pair::A] {
        if pair.running(d) {
            pair.terminate(d, Duration::from_secs(10))?;
        }
    }
    pair.start_agent(pair::A, PRIORITY, vrrp)?;
    pair.wait(pair::A, "A MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
    pair.start_agent(pair::B, PRIORITY, vrrp)?;
    pair.wait(pair::B, "B BACKUP", STATE_LIMIT, |s| vrrp_state(s) == "BACKUP")?;
    for d in [pair::A, pair::B] {
        pair.wait(d, "every backend up", STATE_LIMIT, all_up)?;
    }
    Ok(())
}

/// Which director is master, checking that the other is backup and that
/// both see every backend up.
fn roles(pair: &mut DirectorPair) -> anyhow::Result<(usize, usize)> {
    let (sa, sb) = (pair.status(pair::A)?, pair.status(pair::B)?);
    let (a, b) = (vrrp_state(&sa), vrrp_state(&sb));
    ensure!(all_up(&sa) && all_up(&sb), "not every backend is up on both directors");
    match (a.as_str(), b.as_str()) {
        ("MASTER", "BACKUP") => Ok((pair::A, pair::B)),
        ("BACKUP", "MASTER") => Ok((pair::B, pair::A)),
        _ => bail!("expected one MASTER and one BACKUP; A is {a}, B is {b}"),
    }
}

/// One failover of `case`: what the client saw, and who is master after.
fn round(pair: &mut DirectorPair, case: Case) -> anyhow::Result<(Round, String)> {
    let (old, new) = roles(pair)?;
    let (old_mac, new_mac) = (mac_bytes(&pair.mac(old)?)?, mac_bytes(&pair.mac(new)?)?);
    // The client's entry for the VIP may still name the other director (a
    // thawed master reclaims the VIP without a gratuitous ARP); asking
    // again by ARP gets the master.
    if pair.client_neighbour().and_then(|m| mac_bytes(&m).ok()) != Some(old_mac) {
        pair.flush_client_neighbour()?;
    }
    let prober = Prober::start(pair.client())?;
    let steady = prober.wait(Duration::from_secs(3), |r| {
        r.len() >= STEADY_REPLIES && r[r.len() - STEADY_REPLIES..].iter().all(|x| x.via == old_mac)
    });
    ensure!(steady, "no steady replies through the master before the event ({})", prober.summary());

    let event = Instant::now();
    match case.kind {
        Kind::Stop => pair.signal_term(old)?,
        Kind::Frozen => pair.freeze(old)?,
    }
    let limit = case.bound() * 2 + Duration::from_secs(3);
    let took_over =
        prober.wait(limit, |r| r.iter().filter(|x| x.via == new_mac).count() >= AFTER_REPLIES || interrupted());
    let (replies, sent) = prober.finish()?;
    let outcome = gap(&replies, sent, event, old_mac, new_mac);

    let how = match case.kind {
        Kind::Stop => {
            pair.wait(new, "the new MASTER", STATE_LIMIT, |s| vrrp_state(s) == "MASTER")?;
            let (st, killed) = pair.terminate(old, Duration::from_secs(10))?;
            ensure!(st.success() && !killed, "the stopped agent ended with {st} (SIGKILL: {killed})");
            pair.start_agent(old, PRIORITY, case.vrrp)?;
            pair.wait(old, "the restarted agent BACKUP", STATE_LIMIT, |s| vrrp_state(s) == "BACKUP")?;
            pair.wait(old, "every backend up", STATE_LIMIT, all_up)?;
            format!("{} took over; {} restarted as backup", pair.director(new).tag, pair.director(old).tag)
        }
        Kind::Frozen => {
            let s = pair.status(new);
            pair.thaw(old)?;
            let s = s?;
            ensure!(
                vrrp_state(&s) == "MASTER",
                "{} is {} while the master was frozen",
                pair.director(new).tag,
                vrrp_state(&s)
            );
            let limit = case.vrrp.advert_int * 4 + Duration::from_secs(3);
            let start = Instant::now();
            let (master, _) = loop {
                match roles(pair) {
                    Ok(r) => break r,
                    Err(e) => ensure!(start.elapsed() < limit, "after the thaw, within {limit:?}: {e:#}"),
                }
                thread::sleep(Duration::from_millis(20));
            };
            format!("{} took over; after the thaw one master: {}", pair.director(new).tag, pair.director(master).tag)
        }
    };
    ensure!(!interrupted(), "interrupted");
    ensure!(took_over, "fewer than {AFTER_REPLIES} replies through the new master within {limit:?}");
    Ok((outcome?, how))
}

/// The failover in the probe's replies: the first reply through the new
/// master and the last through the old one before it.
fn gap(replies: &[Reply], sent: u64, event: Instant, old: [u8; 6], new: [u8; 6]) -> anyhow::Result<Round> {
    let first_new = replies.iter().position(|r| r.via == new).context("no reply through the new master")?;
    let last_old =
        replies[..first_new].iter().rposition(|r| r.via == old).context("no reply through the old master")?;
    let (old_at, new_at) = (replies[last_old].at, replies[first_new].at);
    let last_old_ms =
        if old_at >= event { (old_at - event).as_secs_f64() * 1e3 } else { -(event - old_at).as_secs_f64() * 1e3 };
    let answered: std::collections::BTreeSet<u64> = replies.iter().map(|r| r.seq).collect();
    Ok(Round { gap: new_at - old_at, last_old_ms, lost: sent.saturating_sub(answered.len() as u64) })
}

fn mac_bytes(text: &str) -> anyhow::Result<[u8; 6]> {
    Ok(text.parse::<Mac>()?.0)
}

/// What the bench reports for the JSON: `failover_<case>_s`, its bound and
/// its rounds, and `target_failover_<case>_pass` (from `judge`).
pub fn json(f: &Figure, ok: Option<bool>, num: impl Fn(f64, i32) -> Value) -> Vec<(String, Value)> {
    let key = f.case.key();
    vec![
        (format!("failover_{key}_s"), num(f.median_s(), 4)),
        (format!("failover_{key}_bound_s"), num(f.case.bound().as_secs_f64(), 4)),
        (
            format!("failover_{key}_rounds_s"),
            Value::from(f.rounds_s().into_iter().map(|x| num(x, 4)).collect::<Vec<_>>()),
        ),
        (format!("target_failover_{key}_pass"), Value::from(ok)),
    ]
}

// ---------------------------------------------------------------------------
// The probe: the client's sender and the backends' responders.

/// One reply: when it came, to which probe, and which director's MAC the
/// backend saw the probe come from.
#[derive(Clone, Copy, Debug)]
struct Reply {
    at: Instant,
    seq: u64,
    via: [u8; 6],
}

/// Sends a numbered UDP probe to the VIP every [`PROBE_INTERVAL`] from the
/// client's namespace, on a thread of its own, recording the replies.
struct Prober {
    stop: Arc<AtomicBool>,
    replies: Arc<Mutex<Vec<Reply>>>,
    thread: Option<thread::JoinHandle<anyhow::Result<u64>>>,
}

impl Prober {
    fn start(client: &Netns) -> anyhow::Result<Self> {
        let socket = client.run_in(|| {
            let s = UdpSocket::bind((pair::client_addr(), 0)).context("binding the probe socket")?;
            s.connect(SocketAddr::new(IpAddr::V4(VIP), PROBE_PORT)).context("connecting the probe socket")?;
            s.set_nonblocking(true)?;
            // The kernel stamps each reply on arrival: a probe thread that
            // waits for its CPU then reads the true time, not its own.
            let on: libc::c_int = 1;
            // SAFETY: setsockopt reads an int from a valid pointer of the given size.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&raw const on).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error()).context("SO_TIMESTAMPNS on the probe socket");
            }
            Ok(s)
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(Mutex::new(Vec::new()));
        let (flag, out) = (Arc::clone(&stop), Arc::clone(&replies));
        let thread = thread::Builder::new()
            .name("failover-probe".into())
            .spawn(move || probe_loop(&socket, &flag, &out))
            .context("spawning the probe thread")?;
        Ok(Self { stop, replies, thread: Some(thread) })
    }

    /// Polls the replies every 2 ms until `done` says so or `limit` passes.
    fn wait(&self, limit: Duration, done: impl Fn(&[Reply]) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if done(&self.replies.lock().unwrap_or_else(|e| e.into_inner())) {
                return true;
            }
            if self.thread.as_ref().is_none_or(thread::JoinHandle::is_finished) {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        false
    }

    fn summary(&self) -> String {
        let r = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        let vias: std::collections::BTreeSet<String> = r.iter().map(|x| Mac(x.via).to_string()).collect();
        format!("{} replies, through {vias:?}", r.len())
    }

    /// Stops the thread: the replies and how many probes went out.
    fn finish(mut self) -> anyhow::Result<(Vec<Reply>, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().context("probe thread already joined")?;
        let sent = t.join().map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
        let replies = std::mem::take(&mut *self.replies.lock().unwrap_or_else(|e| e.into_inner()));
        Ok((replies, sent))
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn probe_loop(socket: &UdpSocket, stop: &AtomicBool, out: &Mutex<Vec<Reply>>) -> anyhow::Result<u64> {
    let deadline = Instant::now() + THREAD_LIFETIME;
    let mut seq = 0u64;
    let mut next = Instant::now();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let now = Instant::now();
        if now >= next {
            // Unreachable VIPs and ICMP errors are part of a failover: a
            // send that fails is a probe that got no reply.
            let _ = socket.send(&seq.to_be_bytes());
            seq += 1;
            next += PROBE_INTERVAL;
            if next < now {
                // Late (the machine stalled): keep the pace from now rather than bursting.
                next = now + PROBE_INTERVAL;
            }
        }
        let wait = next.saturating_duration_since(Instant::now());
        let ts = libc::timespec { tv_sec: 0, tv_nsec: wait.subsec_nanos().into() };
        let mut pfd = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd and a valid timespec; no signal mask.
        unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        loop {
            match recv_stamped(socket, &mut buf) {
                Ok((n, at)) if n >= 14 => {
                    let seq = u64::from_be_bytes(buf[..8].try_into()?);
                    let via = buf[8..14].try_into()?;
                    out.lock().unwrap_or_else(|e| e.into_inner()).push(Reply { at, seq, via });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors surface on the next call: not a reply, go on.
                Err(_) => {}
            }
        }
    }
    Ok(seq)
}

/// One datagram and when the kernel received it (SO_TIMESTAMPNS, wall
/// clock), as an `Instant` on this process's monotonic clock.
fn recv_stamped(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, Instant)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // u64s, so the control buffer is aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: msg points to one iovec over `buf` and to `control`, both alive
    // and writable for the lengths given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    let (now, wall) = (Instant::now(), std::time::SystemTime::now());
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut at = now;
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled in,
    // within msg_controllen; SCM_TIMESTAMPNS carries one timespec.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                let stamped = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                let wall = wall.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                at = now.checked_sub(wall.saturating_sub(stamped)).unwrap_or(now);
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
    }
    Ok((n as usize, at))
}

/// A backend's probe answerer. A UDP socket cannot tell which director's
/// MAC a datagram came from, so the probes are read from a packet socket
/// on eth0 and answered from a UDP socket on VIP:[`PROBE_PORT`], which also
/// keeps the kernel from answering with ICMP port unreachable.
struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Responder {
    fn start(ns: &Netns) -> anyhow::Result<Self> {
        let (packet, udp) = ns.run_in(|| {
            let udp = UdpSocket::bind((VIP, PROBE_PORT)).context("binding the VIP's probe port")?;
            udp.set_nonblocking(true)?;
            Ok((packet_socket(IF)?, udp))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("failover-responder".into())
            .spawn(move || respond_loop(&packet, &udp, &flag))
            .context("spawning a responder thread")?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An AF_PACKET socket for IPv4 frames on `iface`, non-blocking.
fn packet_socket(iface: &str) -> anyhow::Result<OwnedFd> {
    let ifindex = lb_userspace::fast_path::ifindex(iface)?;
    let proto = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto.into())
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("opening a packet socket");
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: binding our socket to a sockaddr_ll of the stated size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("binding a packet socket to {iface}"));
    }
    Ok(fd)
}

fn respond_loop(packet: &OwnedFd, udp: &UdpSocket, stop: &AtomicBool) {
    let deadline = Instant::now() + THREAD_LIFETIME;
    let mut frame = [0u8; 2048];
    let mut sink = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut pfd = libc::pollfd { fd: packet.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, and the count says one.
        unsafe { libc::poll(&mut pfd, 1, 20) };
        // The UDP socket's copies are never read otherwise: drop them.
        while udp.recv(&mut sink).is_ok() {}
        loop {
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: the buffers and their lengths are ours and valid.
            let n = unsafe {
                libc::recvfrom(
                    packet.as_raw_fd(),
                    frame.as_mut_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw mut from).cast::<libc::sockaddr>(),
                    &mut len,
                )
            };
            let Ok(n) = usize::try_from(n) else { break };
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if let Some((to, reply)) = probe_reply(&frame[..n]) {
                let _ = udp.send_to(&reply, to);
            }
        }
    }
}

/// For an Ethernet frame carrying a probe (UDP to VIP:[`PROBE_PORT`]): where
/// to answer, and the answer (the probe's number, then the frame's source
/// MAC, the director's).
fn probe_reply(frame: &[u8]) -> Option<(SocketAddr, [u8; 14])> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
    let udp = ip.get(ihl..)?;
    let header = udp.get(..8)?;
    let (sport, dport) = (u16::from_be_bytes([header[0], header[1]]), u16::from_be_bytes([header[2], header[3]]));
    if dst != VIP || dport != PROBE_PORT {
        return None;
    }
    let mut reply = [0u8; 14];
    reply[..8].copy_from_slice(udp.get(8..16)?);
    reply[8..].copy_from_slice(&frame[6..12]);
    Some((SocketAddr::new(IpAddr::V4(src), sport), reply))
}

/// This thread's CPU affinity widened to every online CPU until dropped
/// (threads and processes started meanwhile inherit it).
struct AllCpus {
    saved: libc::cpu_set_t,
}

impl AllCpus {
    fn enter() -> anyhow::Result<Self> {
        // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
        let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid 0 is this thread; the set is valid for its size.
        if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut saved) } != 0 {
            return Err(io::Error::last_os_error()).context("reading the CPU affinity");
        }
        // SAFETY: as above.
        let mut all: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for cpu in 0..crate::bench::sys::online_cpus() {
            // SAFETY: CPU_SET writes one bit inside `all`.
            unsafe { libc::CPU_SET(cpu, &mut all) };
        }
        // SAFETY: pid 0 is this thread; the set is valid for its size.
        if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &all) } != 0 {
            return Err(io::Error::last_os_error()).context("widening the CPU affinity");
        }
        Ok(Self { saved })
    }
}

impl Drop for AllCpus {
    fn drop(&mut self) {
        // SAFETY: pid 0 is this thread; the set is valid for its size.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.saved) };
    }
}
