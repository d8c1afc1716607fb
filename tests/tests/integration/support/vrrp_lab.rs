//! A link for VRRP tests: a bridge in a "switch" namespace, directors and a
//! client each in a namespace of their own on a veth port of it, and our
//! VRRP runtime run inside a director's namespace on a thread with a
//! current-thread tokio runtime. Shared by the `vrrp`, `keepalived` and
//! `vrrp_tshark` tests. Everything lives in namespaces that are deleted on
//! drop.

use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    sync::mpsc as std_mpsc,
    thread,
    time::{Duration, Instant},
};

use lb_userspace::{
    config::{Config, VrrpInstance, VrrpSyncGroup},
    netns::{self, Netns},
    vrrp::{
        State,
        reload::ReloadPlan,
        runtime::{self, InstanceStatus, StateChange},
    },
};
use tokio::sync::mpsc;

/// 10.214.0.0/24 and fd00:214::/64 inside the lab's namespaces only.
pub const SUBNET: &str = "10.214.0";
pub const VIP: &str = "10.214.0.100";

pub fn config_with_groups(toml: &str) -> (Vec<VrrpInstance>, Vec<VrrpSyncGroup>) {
    match Config::from_str(toml, "vrrp-test.toml") {
        Ok(c) => (c.vrrp, c.vrrp_sync_groups),
        Err(e) => panic!("test configuration:\n{e}"),
    }
}

/// The switch and the hosts on it.
pub struct Lab {
    /// The bridge's namespace, only kept so that it goes with the lab.
    _switch: Netns,
    pub hosts: Vec<Netns>,
}

impl Lab {
    /// Hosts named by `tags`; host i gets 10.214.0.(i+1)/24 on eth0 and the
    /// IPv6 fd00:214::(i+1)/64, with DAD off so link-locals are usable at once.
    pub fn new(prefix: &str, tags: &[&str]) -> Lab {
        netns::remove_stale(prefix);
        let switch = Netns::new(prefix, "sw").expect("switch namespace");
        switch.ip(&["link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]).expect("bridge");
        switch.ip(&["link", "set", "br0", "up"]).expect("bridge up");
        let mut hosts = Vec::new();
        for (i, tag) in tags.iter().enumerate() {
            let host = Netns::new(prefix, tag).expect("host namespace");
            for key in ["net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"] {
                host.sysctl(key, "0").expect("accept_dad");
            }
            let port = format!("p{i}");
            netns::veth(&host, "eth0", &switch, &port).expect("veth");
            switch.ip(&["link", "set", &port, "master", "br0"]).expect("bridge port");
            host.ip(&["addr", "add", &format!("{SUBNET}.{}/24", i + 1), "dev", "eth0"]).expect("IPv4");
            host.ip(&["addr", "add", &format!("fd00:214::{}/64", i + 1), "dev", "eth0", "nodad"]).expect("IPv6");
            hosts.push(host);
        }
        Lab { _switch: switch, hosts }
    }

    pub fn addr(&self, i: usize) -> String {
        format!("{SUBNET}.{}", i + 1)
    }
}

/// Whether `ns` has `addr` (without prefix) on eth0.
pub fn has_addr(ns: &Netns, addr: &str) -> bool {
    let out = ns.ip(&["addr", "show", "dev", "eth0"]).expect("ip addr");
    out.split_whitespace().any(|w| w.split('/').next() == Some(addr))
}

/// The lines of `ip [-6] route show table TABLE` in `ns` that start with
/// `prefix` (after a route type such as `blackhole`, when given).
pub fn routes_to(ns: &Netns, ipv6: bool, table: &str, prefix: &str) -> Vec<String> {
    let mut args = vec!["route", "show", "table", table];
    if ipv6 {
        args.insert(0, "-6");
    }
    // The kernel drops an IPv6 table with its last route, and then says so.
    let out = match ns.ip(&args) {
        Ok(out) => out,
        Err(e) if format!("{e:?}").contains("FIB table does not exist") => String::new(),
        Err(e) => panic!("ip route show: {e:?}"),
    };
    out.lines()
        .filter(|l| {
            let mut words = l.split_whitespace();
            let first = words.next();
            first == Some(prefix) || words.next() == Some(prefix)
        })
        .map(str::to_owned)
        .collect()
}

/// The MAC `ns` has for `addr` in its neighbour table, if any.
pub fn neighbour(ns: &Netns, addr: &str) -> Option<String> {
    let out = ns.ip(&["neigh", "show", addr, "dev", "eth0"]).ok()?;
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "lladdr" {
            return words.next().map(str::to_owned);
        }
    }
    None
}

/// Makes `ns` reach `addr`: a TCP connection to a closed port is refused by
/// whoever holds the address, which proves it answers ARP and IP (no ping
/// needed). True when refused (reached).
pub fn reach(ns: &Netns, addr: &str) -> bool {
    let target = SocketAddr::new(is_ip(addr), 9);
    ns.run_in(move || match TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(_) => true,
    })
    .expect("thread in namespace")
}

pub fn wait_for<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    netns::wait_for(limit, f)
}

enum Ctl {
    Status(std_mpsc::Sender<Vec<InstanceStatus>>),
    Reload(String, std_mpsc::Sender<Result<ReloadPlan, String>>),
    Shutdown,
    Abort,
}

/// Our VRRP runtime running inside a namespace.
pub struct Director {
    pub name: String,
    control: mpsc::UnboundedSender<Ctl>,
    events: std_mpsc::Receiver<(Instant, StateChange)>,
    /// Every event seen, for failure messages.
    pub seen: Vec<(Instant, StateChange)>,
    thread: Option<thread::JoinHandle<Result<(), netns::NetnsError>>>,
}

impl Director {
    /// Starts the instances of `toml` inside `ns`.
    pub fn start(name: &str, ns: &Netns, toml: &str) -> Director {
        let (instances, groups) = config_with_groups(toml);
        let (event_tx, events) = std_mpsc::channel();
        let (control, mut control_rx) = mpsc::unbounded_channel::<Ctl>();
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<(), String>>();
        let thread = ns
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async move {
                    let mut handle = match runtime::spawn_with_groups(instances, groups) {
                        Ok(h) => h,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let mut changes = handle.take_events().expect("events");
                    loop {
                        tokio::select! {
                            Some(ev) = changes.recv() => { let _ = event_tx.send((Instant::now(), ev)); }
                            ctl = control_rx.recv() => match ctl {
                                Some(Ctl::Status(tx)) => { let _ = tx.send(handle.status()); }
                                Some(Ctl::Reload(toml, tx)) => {
                                    let (instances, groups) = config_with_groups(&toml);
                                    let r = handle.reload(instances, groups).await.map_err(|e| e.to_string());
                                    let _ = tx.send(r);
                                }
                                Some(Ctl::Shutdown) | None => {
                                    handle.shutdown().await;
                                    while let Ok(ev) = changes.try_recv() {
                                        let _ = event_tx.send((Instant::now(), ev));
                                    }
                                    return;
                                }
                                Some(Ctl::Abort) => {
                                    handle.abort();
                                    return;
                                }
                            },
                        }
                    }
                });
            })
            .expect("director thread");
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{name}: VRRP runtime did not start: {e}"),
            Err(e) => panic!("{name}: VRRP runtime did not report: {e}"),
        }
        Director { name: name.to_owned(), control, events, seen: Vec::new(), thread: Some(thread) }
    }

    /// Waits until an instance enters `state`; returns when (as seen by the
    /// director's thread).
    pub fn wait_state(&mut self, state: State, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (at, ev) = self.events.recv_timeout(left).ok()?;
            eprintln!("[{}] {} {:?} -> {:?} (priority {})", self.name, ev.instance, ev.from, ev.to, ev.priority);
            self.seen.push((at, ev.clone()));
            if ev.to == state {
                return Some(at);
            }
        }
    }

    /// Waits until `instance` is in `state` (already, or by a change within `limit`).
    pub fn wait_instance(&mut self, instance: &str, state: State, limit: Duration) -> Option<Instant> {
        // What already happened first, so "already in it" means now, not before the last wait.
        while let Ok((at, ev)) = self.events.try_recv() {
            eprintln!("[{}] {} {:?} -> {:?} (priority {})", self.name, ev.instance, ev.from, ev.to, ev.priority);
            self.seen.push((at, ev));
        }
        if let Some((at, e)) = self.seen.iter().rev().find(|(_, e)| e.instance == instance)
            && e.to == state
        {
            return Some(*at);
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (at, ev) = self.events.recv_timeout(left).ok()?;
            eprintln!("[{}] {} {:?} -> {:?} (priority {})", self.name, ev.instance, ev.from, ev.to, ev.priority);
            self.seen.push((at, ev.clone()));
            if ev.instance == instance && ev.to == state {
                return Some(at);
            }
        }
    }

    /// Panics unless `instance` is (or gets) in `state` within `limit`.
    pub fn expect_instance(&mut self, instance: &str, state: State, limit: Duration) -> Instant {
        match self.wait_instance(instance, state, limit) {
            Some(at) => at,
            None => panic!("{}: {instance} not in {state:?} within {limit:?}; status {:?}", self.name, self.statuses()),
        }
    }

    /// Applies a new configuration as the agent does on SIGHUP; returns the plan.
    pub fn reload(&self, toml: &str) -> ReloadPlan {
        let (tx, rx) = std_mpsc::channel();
        self.control.send(Ctl::Reload(toml.to_owned(), tx)).expect("director alive");
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(plan)) => plan,
            Ok(Err(e)) => panic!("{}: reload failed: {e}", self.name),
            Err(e) => panic!("{}: reload did not answer: {e}", self.name),
        }
    }

    /// The state changes that arrive within `d` (also kept in `seen`).
    pub fn events_for(&mut self, d: Duration) -> Vec<StateChange> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok((at, ev)) = self.events.recv_timeout(left) else { break };
            eprintln!("[{}] {} {:?} -> {:?} (priority {})", self.name, ev.instance, ev.from, ev.to, ev.priority);
            self.seen.push((at, ev.clone()));
            out.push(ev);
        }
        out
    }

    /// Every instance's status, in configuration order.
    pub fn statuses(&self) -> Vec<InstanceStatus> {
        let (tx, rx) = std_mpsc::channel();
        self.control.send(Ctl::Status(tx)).expect("director alive");
        rx.recv_timeout(Duration::from_secs(2)).expect("status")
    }

    /// Panics unless `state` is entered within `limit`.
    pub fn expect_state(&mut self, state: State, limit: Duration) -> Instant {
        match self.wait_state(state, limit) {
            Some(at) => at,
            None => panic!("{} did not enter {state:?} within {limit:?}; status {:?}", self.name, self.status()),
        }
    }

    pub fn status(&self) -> InstanceStatus {
        let (tx, rx) = std_mpsc::channel();
        self.control.send(Ctl::Status(tx)).expect("director alive");
        rx.recv_timeout(Duration::from_secs(2)).expect("status").remove(0)
    }

    /// Graceful stop: priority 0, VIPs removed. Returns when done.
    pub fn shutdown(mut self) -> Vec<(Instant, StateChange)> {
        let _ = self.control.send(Ctl::Shutdown);
        self.join();
        self.seen.extend(self.events.try_iter());
        std::mem::take(&mut self.seen)
    }

    /// As if the process died: no priority 0, VIPs left in place.
    pub fn abort(mut self) {
        let _ = self.control.send(Ctl::Abort);
        self.join();
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(r) => r.expect("setns"),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        let _ = self.control.send(Ctl::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `[[vrrp]]` table for the lab's eth0.
pub fn instance(version: u8, priority: u8, advert_int: &str, extra: &str) -> String {
    format!(
        "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nversion = {version}\nvirtual_router_id = 51\n\
         priority = {priority}\nadvert_int = \"{advert_int}\"\nvirtual_ipaddress = [\"{VIP}/24\"]\n\
         garp_master_repeat = 2\n{extra}"
    )
}

pub fn is_ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}
