//! Interop with keepalived 2.2.7 (Debian's package): our runtime and
//! keepalived in the same virtual router on one bridge, VRRPv2 and VRRPv3,
//! each in turn the higher priority. The right one is master, failover works
//! both ways (clean stops with priority 0, a frozen keepalived), and
//! keepalived's log has no complaint about our adverts.
//!
//! keepalived is installed with apt-get when missing (the test says so);
//! without apt the test fails with a message saying what to install. Needs
//! root (CAP_NET_ADMIN, CAP_NET_RAW).

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use lb_tests::privileges;
use lb_userspace::{netns::Netns, vrrp::State};

use crate::support::{
    self,
    vrrp_lab::{Director, Lab, VIP, has_addr, instance, is_ip, wait_for},
};

const PREFIX: &str = "lbka";
/// keepalived's name for the instance in its log.
const KA_INSTANCE: &str = "VI_KA";

/// Installs keepalived once per test process if it is missing.
pub(crate) fn ensure_keepalived() {
    static DONE: OnceLock<Result<String, String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let version = || {
            Command::new("keepalived")
                .arg("--version")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or_default().to_owned())
                .filter(|v| v.starts_with("Keepalived"))
        };
        if let Some(v) = version() {
            return Ok(v);
        }
        eprintln!("keepalived is not installed: installing Debian's package with apt-get (once)");
        if Command::new("apt-get").arg("--version").stdout(Stdio::null()).status().is_err() {
            return Err("keepalived is missing and apt-get is not available: install keepalived 2.2.x".to_owned());
        }
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "keepalived"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            if !install() {
                return Err("`apt-get install -y keepalived` failed: install keepalived 2.2.x by hand".to_owned());
            }
        }
        version().ok_or_else(|| "keepalived was installed but `keepalived --version` does not run".to_owned())
    });
    match result {
        Ok(v) => eprintln!("using {v}"),
        Err(e) => panic!("{e}"),
    }
}

/// A keepalived running VRRP only in a namespace, logging to a file; killed on drop.
struct Keepalived {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

impl Keepalived {
    fn start(ns: &Netns, tag: &str, version: u8, priority: u8, advert_int: &str) -> Keepalived {
        Self::start_with(ns, tag, version, priority, advert_int, &format!("{VIP}/24 dev eth0 label eth0:vip"), "")
    }

    /// `vip` is one line of keepalived's `virtual_ipaddress` block; `extra`
    /// goes into the `vrrp_instance` block.
    fn start_with(
        ns: &Netns,
        tag: &str,
        version: u8,
        priority: u8,
        advert_int: &str,
        vip: &str,
        extra: &str,
    ) -> Keepalived {
        let dir = std::env::temp_dir().join(format!("lbka-{}-{}-{tag}", std::process::id(), ns.name()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("keepalived dir");
        let conf = dir.join("ka.conf");
        fs::write(
            &conf,
            format!(
                "global_defs {{\n    router_id ka_{tag}\n    enable_script_security\n    script_user root\n    \
                 vrrp_version {version}\n    vrrp_garp_master_delay 0\n    vrrp_garp_master_repeat 1\n}}\n\
                 vrrp_instance {KA_INSTANCE} {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
                 priority {priority}\n    advert_int {advert_int}\n    {extra}\n    virtual_ipaddress {{\n        \
                 {vip}\n    }}\n}}\n"
            ),
        )
        .expect("keepalived config");
        let check = Command::new("keepalived").args(["-t", "-f"]).arg(&conf).output().expect("keepalived -t");
        if !check.status.success() {
            let _ = fs::remove_dir_all(&dir);
        }
        assert!(
            check.status.success(),
            "keepalived -t refused the test configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.join("ka.log");
        let out = fs::File::create(&log).expect("keepalived log");
        let err = out.try_clone().expect("log fd");
        let child = ns
            .command("keepalived")
            .args(["-n", "-l", "-D", "-P", "-G", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join("ka.pid"))
            .arg("-r")
            .arg(dir.join("ka_vrrp.pid"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("keepalived starts");
        Keepalived { child: Some(child), dir, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for keepalived to log entering `state` ("MASTER", "BACKUP") `n` times in all.
    fn wait_logged(&self, state: &str, n: usize, limit: Duration) -> bool {
        let line = format!("({KA_INSTANCE}) Entering {state} STATE");
        wait_for(limit, || (self.log().matches(&line).count() >= n).then_some(())).is_some()
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
        }
    }

    /// Signals the VRRP child process, the one that sends adverts.
    fn signal_vrrp(&self, sig: &str) {
        let pid = fs::read_to_string(self.dir.join("ka_vrrp.pid")).expect("keepalived's VRRP pid file");
        let status = Command::new("kill").args([sig, pid.trim()]).status().expect("kill");
        assert!(status.success(), "kill {sig} {}", pid.trim());
    }

    /// SIGTERM: keepalived resigns with priority 0 and removes its VIPs.
    fn stop(&mut self) -> String {
        self.signal("-TERM");
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.log()
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// keepalived's complaints about received adverts (vrrp_check_packet and
/// friends in 2.2.7), matched case-insensitively.
const COMPLAINTS: &[&str] = &[
    "checksum",
    "ttl",
    "not present",
    "invalid",
    "mismatch",
    "wrong",
    "bad ",
    "unknown",
    "error",
    "too short",
    "discard",
];

/// What keepalived logs while working as designed, though the words match:
/// a backup with preemption ignoring a lower-priority master's adverts.
const BENIGN: &[&str] = &["received lower priority"];

pub(crate) fn assert_no_complaints(log: &str) {
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            COMPLAINTS.iter().any(|c| l.contains(c)) && !BENIGN.iter().any(|b| l.contains(b))
        })
        .collect();
    assert!(bad.is_empty(), "keepalived complained:\n{}\n--- whole log ---\n{log}", bad.join("\n"));
}

/// Waits until `ns` holds the VIP or not.
fn vip_on(ns: &Netns, want: bool, limit: Duration) -> bool {
    wait_for(limit, || (has_addr(ns, VIP) == want).then_some(())).is_some()
}

/// One version: (1) keepalived higher, (2) ours higher.
/// `auth`: a v2 `PASS` password both sides use.
fn interop(version: u8, ours_int: &str, ka_int: &str, timer: Duration, auth: Option<&str>) {
    let ka_extra = auth
        .map(|p| format!("authentication {{\n        auth_type PASS\n        auth_pass {p}\n    }}"))
        .unwrap_or_default();
    let ours_extra = auth.map(|p| format!("auth_pass = \"{p}\"\n")).unwrap_or_default();
    let ka_start = |ns: &Netns, tag: &str, priority: u8| {
        Keepalived::start_with(
            ns,
            tag,
            version,
            priority,
            ka_int,
            &format!("{VIP}/24 dev eth0 label eth0:vip"),
            &ka_extra,
        )
    };
    ensure_keepalived();
    let lab = Lab::new(PREFIX, &["ka", "us"]);
    let (ka_ns, us_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let ka_addr = is_ip(&lab.addr(0));
    let us_addr = is_ip(&lab.addr(1));
    // Long enough for a cold start (master-down interval) and then some.
    let settle = timer * 5 + Duration::from_secs(2);

    // (1) keepalived 150, ours 100: keepalived is master.
    let mut ka = ka_start(ka_ns, "hi", 150);
    let mut us = Director::start("us", us_ns, &instance(version, 100, ours_int, &ours_extra));
    us.expect_state(State::Backup, settle);
    assert!(ka.wait_logged("MASTER", 1, settle), "keepalived became master:\n{}", ka.log());
    assert!(vip_on(ka_ns, true, settle), "VIP on keepalived's side");
    std::thread::sleep(timer * 2);
    let s = us.status();
    assert_eq!(s.state, State::Backup, "{s:?}\n{}", ka.log());
    assert_eq!(s.master, Some(ka_addr));
    assert!(!has_addr(us_ns, VIP));
    assert_eq!(s.rejected.total(), 0, "we rejected keepalived's adverts: {:?}", s.rejected);
    assert!(s.counters.adverts_received > 0);

    // keepalived stops (priority 0): we take over within the skew time.
    let stop = Instant::now();
    let log = ka.stop();
    let took = us.expect_state(State::Master, settle) - stop;
    eprintln!("v{version}: keepalived stopped -> our takeover after {took:?}");
    assert!(took < timer, "takeover after keepalived's priority 0 took {took:?}");
    assert!(vip_on(us_ns, true, Duration::from_secs(1)) && !has_addr(ka_ns, VIP));
    assert_no_complaints(&log);

    // keepalived comes back and preempts us.
    let restart = Instant::now();
    let mut ka = ka_start(ka_ns, "hi2", 150);
    us.expect_state(State::Backup, settle);
    eprintln!("v{version}: keepalived restarted -> we are backup after {:?}", restart.elapsed());
    assert!(ka.wait_logged("MASTER", 1, settle), "{}", ka.log());
    assert!(vip_on(us_ns, false, Duration::from_secs(1)) && vip_on(ka_ns, true, Duration::from_secs(1)));
    std::thread::sleep(timer * 2);
    assert_eq!(us.status().state, State::Backup);
    assert_no_complaints(&ka.stop());
    us.shutdown();
    vip_on(ka_ns, false, Duration::from_secs(2));

    // (2) ours 150, keepalived 100: we are master, keepalived backup.
    let mut ka = ka_start(ka_ns, "lo", 100);
    let mut us = Director::start("us", us_ns, &instance(version, 150, ours_int, &ours_extra));
    us.expect_state(State::Master, settle);
    assert!(ka.wait_logged("BACKUP", 1, settle), "{}", ka.log());
    std::thread::sleep(timer * 3);
    assert_eq!(us.status().state, State::Master, "{}", ka.log());
    assert!(!ka.log().contains("Entering MASTER STATE"), "keepalived took over from us:\n{}", ka.log());
    assert!(has_addr(us_ns, VIP) && !has_addr(ka_ns, VIP));

    // We stop (priority 0): keepalived takes over after its skew time.
    let stop = Instant::now();
    us.shutdown();
    assert!(vip_on(ka_ns, true, settle), "keepalived took the VIP:\n{}", ka.log());
    eprintln!("v{version}: we stopped -> keepalived holds the VIP after {:?}", stop.elapsed());
    assert!(stop.elapsed() < timer + Duration::from_millis(500), "{:?}", stop.elapsed());
    assert!(ka.wait_logged("MASTER", 1, Duration::from_secs(1)));

    // We come back and preempt keepalived.
    let restart = Instant::now();
    let mut us = Director::start("us", us_ns, &instance(version, 150, ours_int, &ours_extra));
    us.expect_state(State::Master, settle);
    assert!(ka.wait_logged("BACKUP", 2, settle), "keepalived stepped down:\n{}", ka.log());
    assert!(vip_on(ka_ns, false, Duration::from_secs(1)), "keepalived removed the VIP");
    eprintln!("v{version}: we restarted -> keepalived backup after {:?}", restart.elapsed());
    std::thread::sleep(timer * 2);
    let s = us.status();
    assert_eq!(s.state, State::Master);
    assert!(has_addr(us_ns, VIP) && !has_addr(ka_ns, VIP));
    assert_eq!(s.rejected.total(), 0, "{:?}", s.rejected);
    us.shutdown();
    let log = ka.stop();
    assert_no_complaints(&log);
    eprintln!("--- keepalived v{version} log (last run) ---\n{log}");
    let _ = us_addr;
}

#[test]
fn keepalived_v2_interop() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    interop(2, "1s", "1", Duration::from_secs(1), Some("s3cret"));
}

#[test]
fn keepalived_v3_interop() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    interop(3, "100ms", "0.1", Duration::from_millis(100), None);
}

/// A keepalived master frozen with SIGSTOP is replaced within the
/// master-down interval; thawed, it reasserts itself and we step back.
#[test]
fn frozen_keepalived_master() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    ensure_keepalived();
    let lab = Lab::new(PREFIX, &["ka", "us"]);
    let (ka_ns, us_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let mut ka = Keepalived::start(ka_ns, "frozen", 3, 150, "0.1");
    let mut us = Director::start("us", us_ns, &instance(3, 100, "100ms", ""));
    us.expect_state(State::Backup, Duration::from_secs(3));
    assert!(ka.wait_logged("MASTER", 1, Duration::from_secs(3)), "{}", ka.log());
    std::thread::sleep(Duration::from_millis(300));

    let frozen = Instant::now();
    ka.signal_vrrp("-STOP");
    let took = us.expect_state(State::Master, Duration::from_secs(3)) - frozen;
    eprintln!("frozen keepalived -> our takeover after {took:?} (master-down 0.361 s)");
    assert!(took < Duration::from_millis(361 + 250), "{took:?}");
    assert!(vip_on(us_ns, true, Duration::from_secs(1)));
    ka.signal_vrrp("-CONT");
    us.expect_state(State::Backup, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(us.status().state, State::Backup);
    assert!(vip_on(us_ns, false, Duration::from_secs(1)) && has_addr(ka_ns, VIP));
    us.shutdown();
    assert_no_complaints(&ka.stop());
}

/// The negative control for the log check: RFC 9568 checksums (no
/// pseudo-header) are what keepalived 2.2.7 does not accept for v3 over
/// IPv4, and it says so; so a clean log above means something.
#[test]
fn keepalived_complains_about_rfc9568_checksums() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    ensure_keepalived();
    let lab = Lab::new(PREFIX, &["ka", "us"]);
    let (ka_ns, us_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let mut ka = Keepalived::start(ka_ns, "rfc", 3, 100, "0.1");
    let mut us = Director::start("us", us_ns, &instance(3, 150, "100ms", "checksum = \"rfc9568\"\n"));
    us.expect_state(State::Master, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(800));
    let log = ka.stop();
    us.shutdown();
    let complaints = log.lines().filter(|l| l.to_ascii_lowercase().contains("checksum")).count();
    eprintln!("keepalived logged {complaints} checksum complaints");
    assert!(complaints > 0, "keepalived accepted RFC 9568 checksums?\n{log}");
}

/// VRRPv3 over IPv6 (link-local sources, the kernel's IPv6 checksum) with
/// keepalived: it is master, then we are, and neither complains.
#[test]
fn keepalived_v3_ipv6_interop() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    ensure_keepalived();
    let lab = Lab::new(PREFIX, &["ka", "us"]);
    let (ka_ns, us_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let vip6 = "fd00:214::100";
    let ours = |priority: u8| {
        format!(
            "[[vrrp]]\nname = \"VI_6\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {priority}\n\
             advert_int = \"100ms\"\nvirtual_ipaddress = [\"{vip6}/64\"]\ngarp_master_repeat = 1\n"
        )
    };
    let has6 = |ns: &Netns, want: bool| wait_for(Duration::from_secs(2), || (has_addr(ns, vip6) == want).then_some(()));
    let mut ka = Keepalived::start_with(ka_ns, "v6hi", 3, 150, "0.1", &format!("{vip6}/64 dev eth0"), "");
    let mut us = Director::start("us", us_ns, &ours(100));
    us.expect_state(State::Backup, Duration::from_secs(3));
    assert!(ka.wait_logged("MASTER", 1, Duration::from_secs(3)), "{}", ka.log());
    std::thread::sleep(Duration::from_millis(300));
    let s = us.status();
    assert_eq!(s.state, State::Backup, "{s:?}\n{}", ka.log());
    assert!(s.master.is_some_and(|m| m.to_string().starts_with("fe80:")), "{s:?}");
    assert_eq!(s.rejected.total(), 0, "{:?}", s.rejected);
    assert!(s.counters.adverts_received > 0);
    assert!(has6(ka_ns, true).is_some() && has6(us_ns, false).is_some());
    let stop = Instant::now();
    assert_no_complaints(&ka.stop());
    let took = us.expect_state(State::Master, Duration::from_secs(3)) - stop;
    eprintln!("v3/IPv6: keepalived stopped -> our takeover after {took:?}");
    assert!(has6(us_ns, true).is_some());

    // Now ours is the higher priority (150) and keepalived (100) joins as backup.
    us.shutdown();
    let mut us = Director::start("us", us_ns, &ours(150));
    us.expect_state(State::Master, Duration::from_secs(3));
    let mut ka = Keepalived::start_with(ka_ns, "v6lo", 3, 100, "0.1", &format!("{vip6}/64 dev eth0"), "");
    assert!(ka.wait_logged("BACKUP", 1, Duration::from_secs(3)), "{}", ka.log());
    std::thread::sleep(Duration::from_millis(800));
    assert!(!ka.log().contains("Entering MASTER STATE"), "keepalived did not hear us:\n{}", ka.log());
    assert!(has6(us_ns, true).is_some() && has6(ka_ns, false).is_some());
    let stop = Instant::now();
    us.shutdown();
    assert!(has6(ka_ns, true).is_some(), "keepalived took over:\n{}", ka.log());
    eprintln!("v3/IPv6: we stopped -> keepalived holds the VIP after {:?}", stop.elapsed());
    assert!(ka.wait_logged("MASTER", 1, Duration::from_secs(1)));
    assert_no_complaints(&ka.stop());
}
