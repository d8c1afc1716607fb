//! The agent as the end-to-end tests and the benches run it: the `lb`
//! program (with a bound on one-shot commands), `lb run` as a child process
//! that is stopped on drop, and the chores around it (a temporary directory,
//! the director's NAPI thread pinned to one CPU, what is left behind).
//!
//! Each agent pins its fast path in bpffs. `ip netns exec` gives every agent
//! a /sys of its own, so the default pin directory (/sys/fs/bpf/lb) is the
//! agent's alone: it mounts a bpffs there that goes with it, and no two
//! tests can meet there. A test that restarts an agent and needs the pins to
//! outlive it mounts a bpffs of its own ([`Bpffs`]) and names it with
//! `--pin-dir` ([`Lb::run_args`]).

use std::{
    collections::BTreeSet,
    ffi::OsString,
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use crate::netns::{self, Netns};

/// Bounds `lb status` and other one-shot `lb` commands.
const LB_COMMAND_LIMIT: Duration = Duration::from_secs(20);

/// How to run the `lb` program: the tests name `lb-under-test`; the bench
/// runs itself with an environment variable that makes it `lb`, so it needs
/// no second binary built beside it.
#[derive(Clone, Debug)]
pub struct Lb {
    pub program: PathBuf,
    pub env: Vec<(OsString, OsString)>,
    /// More arguments for `lb run` ([`Lb::start_agent`]).
    pub run_args: Vec<OsString>,
}

impl Lb {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into(), env: Vec::new(), run_args: Vec::new() }
    }

    /// The program, in `ns` when given (`ip netns exec` execs it, so a
    /// spawned child is the program itself).
    pub fn command(&self, ns: Option<&Netns>) -> anyhow::Result<Command> {
        let program = self.program.to_str().context("the lb program's path is not UTF-8")?;
        let mut cmd = match ns {
            Some(ns) => ns.command(program),
            None => Command::new(program),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }

    /// `lb ARGS` on the host, bounded in time (a stuck client is killed); its
    /// output whatever its exit status.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let child = self
            .command(None)?
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running lb {args:?}"))?;
        let pid = child.id() as libc::pid_t;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(LB_COMMAND_LIMIT) {
            Ok(out) => Ok(out?),
            Err(_) => {
                // SAFETY: our child, not reaped while wait_with_output runs.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                bail!("lb {args:?} did not finish within {LB_COMMAND_LIMIT:?}")
            }
        }
    }

    /// `lb ARGS`, which must succeed: its standard output.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args)?;
        ensure!(
            out.status.success(),
            "lb {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `lb status --json` of the agent behind `socket`.
    pub fn status(&self, socket: &Path) -> anyhow::Result<Value> {
        let socket = socket.to_str().context("socket path")?;
        let text = self.ok(&["status", "--json", "--socket", socket])?;
        serde_json::from_str(&text).with_context(|| format!("parsing the status: {text}"))
    }

    /// `lb run --config CONFIG` in `ns`, its output to `log`.
    pub fn start_agent(&self, ns: &Netns, config: &Path, log: &Path) -> anyhow::Result<Agent> {
        let log = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = self
            .command(Some(ns))?
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(&self.run_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the agent")?;
        Ok(Agent { child })
    }
}

/// `lb run` as a child process. Dropping it stops it: SIGTERM, then SIGKILL
/// if it has not exited within a bound.
#[derive(Debug)]
pub struct Agent {
    child: Child,
}

impl Agent {
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// The exit status if the agent is no longer running.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Signals the agent, unless it has exited.
    pub fn signal(&mut self, sig: libc::c_int) -> anyhow::Result<()> {
        ensure!(self.exited().is_none(), "the agent has exited");
        // SAFETY: our own child, not reaped yet (try_wait just said so), so
        // the pid is still ours.
        if unsafe { libc::kill(self.pid(), sig) } != 0 {
            return Err(io::Error::last_os_error()).context("signalling the agent");
        }
        Ok(())
    }

    /// SIGTERM (and SIGCONT, as a stopped agent would never see the
    /// SIGTERM), wait up to `limit`, then SIGKILL: the exit status and
    /// whether SIGKILL was needed.
    pub fn terminate(&mut self, limit: Duration) -> anyhow::Result<(ExitStatus, bool)> {
        if let Some(status) = self.exited() {
            return Ok((status, false));
        }
        let _ = self.signal(libc::SIGTERM);
        let _ = self.signal(libc::SIGCONT);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Ok((status, false));
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().context("killing the agent")?;
        Ok((self.child.wait()?, true))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.terminate(Duration::from_secs(5));
    }
}

/// A directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    /// `lb-KIND-PID-TAG`, emptied first.
    pub fn new(kind: &str, tag: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("lb-{kind}-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A bpf filesystem of one test's own, mounted on a directory of its own
/// and unmounted on drop, which frees whatever is still pinned in it (an
/// XDP link pinned there detaches).
#[derive(Debug)]
pub struct Bpffs {
    dir: TempDir,
}

impl Bpffs {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("bpffs", tag)?;
        let out = Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir.path).output().context("running mount")?;
        ensure!(out.status.success(), "mount -t bpf: {}", String::from_utf8_lossy(&out.stderr));
        Ok(Self { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    /// Everything pinned under the mount, as paths relative to it.
    pub fn pins(&self) -> Vec<PathBuf> {
        fn walk(at: &Path, root: &Path, out: &mut Vec<PathBuf>) {
            for e in fs::read_dir(at).into_iter().flatten().flatten() {
                let p = e.path();
                // The kernel's own files (`maps.debug`, ...): bpffs keeps
                // names with a dot for them.
                if e.file_name().to_string_lossy().contains('.') {
                    continue;
                }
                out.push(p.strip_prefix(root).unwrap_or(&p).to_owned());
                if p.is_dir() {
                    walk(&p, root, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), self.path(), &mut out);
        out.sort();
        out
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let Ok(c) = std::ffi::CString::new(self.dir.path.as_os_str().as_encoded_bytes()) else { return };
        // SAFETY: a NUL-terminated path that lives across the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The namespaces this process created (see [`Netns::new`]) that still exist.
pub fn our_namespaces() -> anyhow::Result<Vec<String>> {
    let out = netns::run(Command::new("ip").args(["netns", "list"]))?;
    let prefix = format!("lbt{}-", std::process::id());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect())
}

/// The `ip link` line of `iface` in `ns` that shows an XDP program, if any.
pub fn xdp_on(ns: &Netns, iface: &str) -> anyhow::Result<Option<String>> {
    let text = ns.ip(&["link", "show", "dev", iface])?;
    Ok(text.lines().find(|l| l.contains("xdp")).map(|l| l.trim().to_owned()))
}

/// Pids of the threads whose name starts with `prefix` (`napi/IFACE-` for a
/// device's threaded NAPI).
pub fn kthreads(prefix: &str) -> BTreeSet<libc::pid_t> {
    let Ok(dir) = fs::read_dir("/proc") else { return BTreeSet::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(prefix)))
        .collect()
}

/// Threaded NAPI for `iface` in `director`, its new kthreads (those not in
/// `before`, taken with [`kthreads`] before the agent attached) pinned to
/// CPU 0.
///
/// Why: the director's XDP program runs in its veth's NAPI poll, on
/// whichever CPU scheduled it: mostly the CPU that sent the packet, so the
/// client's, a backend's or a timer's, and they differ from packet to packet
/// of one connection. The flow table is per CPU (as Katran's: a real NIC's
/// RSS keeps a connection on one queue and CPU), so a packet of an
/// established connection handled on a CPU that never saw it falls back to
/// the ring, which after a drain or a failure names another backend: that
/// would break established connections for a reason no real director has.
/// One pinned poll thread is what one RSS queue would be. The veth has its
/// NAPI only while an XDP program is attached, so this follows the attach.
pub fn pin_napi(director: &Netns, iface: &str, before: &BTreeSet<libc::pid_t>) -> anyhow::Result<()> {
    let prefix = format!("napi/{iface}-");
    // `ip netns exec` mounts the namespace's own /sys.
    let threaded = format!("/sys/class/net/{iface}/threaded");
    if director.exec("cat", &[&threaded])?.trim() == "1" {
        // An agent before this one left its program attached (a restart
        // that kept the fast path): the thread is there, pinned already.
        return Ok(());
    }
    director.exec("sh", &["-c", &format!("echo 1 > {threaded}")])?;
    let start = Instant::now();
    let new: Vec<libc::pid_t> = loop {
        let new: Vec<libc::pid_t> = kthreads(&prefix).difference(before).copied().collect();
        if !new.is_empty() {
            break new;
        }
        ensure!(start.elapsed() < Duration::from_secs(5), "no {prefix}* thread appeared after enabling threaded NAPI");
        thread::sleep(Duration::from_millis(20));
    };
    for pid in new {
        // SAFETY: a zeroed cpu_set_t is valid, CPU_SET(0) writes inside it,
        // and sched_setaffinity reads that many bytes of it.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error()).with_context(|| format!("pinning NAPI thread {pid} to CPU 0"));
        }
    }
    Ok(())
}
