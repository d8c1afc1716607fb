//! What VRRP costs the agent as instances grow: two agents (`lb run`, no
//! VIPs) on a veth pair, each in a namespace of its own, run 1, 10 and 100
//! VRRPv3 instances at 100 ms adverts (10 centiseconds); one is master of
//! every instance (priority 200), the other backup (priority 100). Over a
//! window in which every instance holds its role, each agent's CPU: the
//! master sends 10 adverts a second per instance, the backup receives them
//! and restarts each instance's Master_Down timer.
//!
//! Why it stays linear: each instance has a raw IP protocol 112 socket of
//! its own on the interface, and the kernel offers every advert on the
//! interface to every such socket. A classic BPF filter on each socket
//! (`vrrp/filter.rs`) drops the VRIDs the agent's other instances run, in the
//! kernel, at a cost per socket that does not depend on the instance count;
//! a VRID no instance runs still reaches them, to be counted as
//! `lb_vrrp_vrid_errors`. Without the filter a backup of N instances woke N
//! times per advert, N² a second: 10 times the instances took about 24 times
//! the backup's CPU between 10 and 100 instances, against about 7 times with it.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use crate::{
    agent_proc::{Agent, Bpffs, TempDir},
    bench::{Figures, failover, median},
    netns::{self, Netns},
};

/// Instance counts of the curve.
pub const INSTANCES: [u32; 3] = [1, 10, 100];
/// The advert interval, in VRRPv3's centiseconds.
const ADVERT_CENTISECONDS: u32 = 10;
const ROUNDS: usize = 3;
const WINDOW: Duration = Duration::from_secs(3);
/// Bound on both agents starting and every instance taking its role.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
const IF: &str = "eth0";
/// (role, address on the veth, priority)
const SIDES: [(&str, &str, u8); 2] = [("master", "10.217.0.1/24", 200), ("backup", "10.217.0.2/24", 100)];

/// Keys of this part.
pub const KEYS: &[&str] = &[
    "vrrp_cpu_pct_1",
    "vrrp_cpu_pct_10",
    "vrrp_cpu_pct_100",
    "vrrp_backup_cpu_pct_1",
    "vrrp_backup_cpu_pct_10",
    "vrrp_backup_cpu_pct_100",
];

/// The `vrrp` part of `lb-bench`.
pub fn run(say: &mut dyn FnMut(String)) -> Figures {
    let mut f = Figures::new();
    say(format!(
        "== VRRP: agent CPU (% of one core) with 1, 10 and 100 VRRPv3 instances at {} ms adverts, master and backup \
         agents on a veth pair, medians of {ROUNDS} windows of {WINDOW:?}; vrrp_cpu_pct_N (master), \
         vrrp_backup_cpu_pct_N",
        ADVERT_CENTISECONDS * 10
    ));
    for n in INSTANCES {
        match measure(n) {
            Ok([master, backup]) => {
                say(format!(
                    "  {n:>3} instances ({} adverts/s): master {master:.2}%, backup {backup:.2}%",
                    n * 100 / ADVERT_CENTISECONDS
                ));
                f.put(format!("vrrp_cpu_pct_{n}"), master, 3);
                f.put(format!("vrrp_backup_cpu_pct_{n}"), backup, 3);
            }
            Err(e) => {
                say(format!("  FAIL: {n} instances: {e:#}"));
                f.fail(&format!("vrrp_cpu_pct_{n}"), format!("{e:#}"));
                f.fail(&format!("vrrp_backup_cpu_pct_{n}"), "see vrrp_cpu_pct");
            }
        }
    }
    f.require(KEYS);
    f
}

/// One side: its namespace, files and agent (dropped in reverse: the agent
/// stops before its pins and namespace go).
struct Side {
    ns: Netns,
    dir: TempDir,
    bpffs: Bpffs,
    agent: Option<Agent>,
}

impl Side {
    fn socket(&self) -> PathBuf {
        self.dir.path.join("lb.sock")
    }

    fn log(&self) -> PathBuf {
        self.dir.path.join("agent.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.terminate(Duration::from_secs(5));
        }
    }
}

fn config(socket: &Path, pin_dir: &Path, instances: u32, priority: u8) -> String {
    let mut text =
        format!("[global]\ncontrol_socket = \"{}\"\npin_dir = \"{}\"\n", socket.display(), pin_dir.display());
    for i in 0..instances {
        text.push_str(&format!(
            "\n[[vrrp]]\nname = \"VI_{i}\"\ninterface = \"{IF}\"\nversion = 3\nvirtual_router_id = {}\n\
             priority = {priority}\nadvert_int = \"{}ms\"\nvirtual_ipaddress = [\"10.217.{}.{}/32\"]\n",
            i + 1,
            ADVERT_CENTISECONDS * 10,
            1 + i / 250,
            1 + i % 250
        ));
    }
    text
}

/// The states of the agent's instances, as `lb status` reports them.
fn states(status: &Value) -> Vec<String> {
    status["vrrp"]
        .as_array()
        .map(|a| a.iter().map(|i| i["state"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// CPU time of every thread of `pid` so far (the scheduler's own count, in
/// nanoseconds, finer than the tick-sampled `/proc/PID/stat`).
fn cpu_ns(pid: libc::pid_t) -> anyhow::Result<u64> {
    let mut total = 0;
    let tasks = format!("/proc/{pid}/task");
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let path = task?.path().join("schedstat");
        // A thread that ended since the listing took its time with it; the
        // agent's threads live as long as it does.
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("{}: {text:?}", path.display()))?;
    }
    Ok(total)
}

/// Median CPU % of one core of the master's and the backup's agent.
fn measure(instances: u32) -> anyhow::Result<[f64; 2]> {
    let lb = failover::lb_self()?;
    let mut sides = Vec::new();
    for (role, _, _) in SIDES {
        sides.push(Side {
            ns: Netns::new(&format!("vrrp{role}"))?,
            dir: TempDir::new("bench-vrrp", role)?,
            bpffs: Bpffs::new(&format!("bench-vrrp-{role}"))?,
            agent: None,
        });
    }
    netns::veth(&sides[0].ns, IF, &sides[1].ns, IF)?;
    for (side, &(role, address, priority)) in sides.iter_mut().zip(&SIDES) {
        side.ns.ip(&["addr", "add", address, "dev", IF])?;
        let path = side.dir.path.join("lb.toml");
        let text = config(&side.socket(), &side.bpffs.path().join("lb"), instances, priority);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        side.agent = Some(lb.start_agent(&side.ns, &path, &side.log()).with_context(|| format!("the {role}"))?);
    }
    // Both agents up and every instance in its role.
    let started = Instant::now();
    for (side, &(role, _, _)) in sides.iter_mut().zip(&SIDES) {
        let want = role.to_uppercase();
        loop {
            if let Some(st) = side.agent.as_mut().and_then(Agent::exited) {
                bail!("the {role}'s agent exited ({st}); its log ends:\n{}", side.log_tail());
            }
            let seen = lb.status(&side.socket()).map(|s| states(&s)).unwrap_or_default();
            if seen.len() == instances as usize && seen.iter().all(|s| *s == want) {
                break;
            }
            ensure!(
                started.elapsed() < SETTLE_LIMIT,
                "the {role}'s {instances} instances were not all {want} within {SETTLE_LIMIT:?} (states {seen:?}); \
                 its log ends:\n{}",
                side.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let pids: Vec<libc::pid_t> = sides.iter().filter_map(|s| s.agent.as_ref().map(Agent::pid)).collect();
    let mut pct = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        let before = pids.iter().map(|&p| cpu_ns(p)).collect::<anyhow::Result<Vec<_>>>()?;
        let t0 = Instant::now();
        std::thread::sleep(WINDOW);
        let after = pids.iter().map(|&p| cpu_ns(p)).collect::<anyhow::Result<Vec<_>>>()?;
        let wall = t0.elapsed().as_secs_f64() * 1e9;
        for (i, (a, b)) in after.iter().zip(&before).enumerate() {
            pct[i].push((a - b) as f64 / wall * 100.0);
        }
    }
    // The roles held over the whole window: a flap would measure elections.
    for (side, &(role, _, _)) in sides.iter_mut().zip(&SIDES) {
        let want = role.to_uppercase();
        let seen = states(&lb.status(&side.socket()).with_context(|| format!("the {role}'s status"))?);
        ensure!(
            seen.len() == instances as usize && seen.iter().all(|s| *s == want),
            "the {role}'s instances left {want} during the measurement ({seen:?}); its log ends:\n{}",
            side.log_tail()
        );
    }
    for (side, &(role, _, _)) in sides.iter_mut().zip(&SIDES) {
        if let Some(mut agent) = side.agent.take() {
            let (st, killed) = agent.terminate(Duration::from_secs(10))?;
            ensure!(!killed && st.success(), "the {role}'s agent ended with {st} (SIGKILL needed: {killed})");
        }
    }
    Ok([median(&pct[0]), median(&pct[1])])
}
