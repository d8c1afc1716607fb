//! Network namespaces for the lab, the tests and the bench: created with
//! `ip netns add`, named with a caller's prefix plus this process's pid so
//! parallel runs never collide, and deleted on drop (processes inside are
//! killed first), also while unwinding from a panic.

use std::{
    fs::File,
    os::fd::{AsFd as _, AsRawFd as _},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("could not run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed { cmd: String, status: std::process::ExitStatus, stderr: String },
    #[error("opening namespace {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("entering namespace {name}: {source}")]
    Setns { name: String, source: std::io::Error },
    #[error("starting a thread: {source}")]
    Thread { source: std::io::Error },
    #[error("MAC address of {iface}: {source}")]
    Mac { iface: String, source: crate::netdev::MacError },
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command and fails with its stderr when it fails.
pub fn run(cmd: &mut Command) -> Result<Output, NetnsError> {
    let out = cmd.output().map_err(|source| NetnsError::Spawn { cmd: format!("{cmd:?}"), source })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            cmd: format!("{cmd:?}"),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// A network namespace that lives as long as this value.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new, empty namespace named `{prefix}{pid}-{n}-{tag}`, with `lo` up.
    pub fn new(prefix: &str, tag: &str) -> Result<Self, NetnsError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}{}-{n}-{tag}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`, returning stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let out = run(Command::new("ip").arg("-n").arg(&self.name).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A command that runs inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a program inside the namespace and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, NetnsError> {
        let out = run(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")]).map(drop)
    }

    /// MAC address of `iface` in this namespace.
    pub fn mac(&self, iface: &str) -> Result<[u8; 6], NetnsError> {
        // sysfs as `ip netns exec` mounts it shows the namespace's own interfaces.
        let text = self.exec("cat", &[&format!("/sys/class/net/{iface}/address")])?;
        let mac: crate::netdev::Mac =
            text.trim().parse().map_err(|source| NetnsError::Mac { iface: iface.to_owned(), source })?;
        Ok(mac.0)
    }

    /// Runs `f` on a fresh thread that has entered the namespace: sockets,
    /// netlink and ioctls made there belong to it.
    pub fn spawn<F, R>(&self, f: F) -> Result<thread::JoinHandle<Result<R, NetnsError>>, NetnsError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let entry = self.entry()?;
        thread::Builder::new()
            .name(format!("in-{}", self.name))
            .spawn(move || {
                entry.enter()?;
                Ok(f())
            })
            .map_err(|source| NetnsError::Thread { source })
    }

    /// A handle to enter the namespace from a thread of the caller's own
    /// (for callers that want their own thread's result type).
    pub fn entry(&self) -> Result<Entry, NetnsError> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|source| NetnsError::Open { path, source })?;
        Ok(Entry { file, name: self.name.clone() })
    }

    /// Runs `f` inside the namespace and waits for it.
    pub fn run_in<F, R>(&self, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        match self.spawn(f)?.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// An open namespace, to enter from a thread (see [`Netns::entry`]).
#[derive(Debug)]
pub struct Entry {
    file: File,
    name: String,
}

impl Entry {
    /// Moves the calling thread into the namespace, for good: only on a
    /// thread that will not go back to work elsewhere.
    pub fn enter(&self) -> Result<(), NetnsError> {
        // SAFETY: setns on an open namespace fd changes only the calling
        // thread's network namespace.
        if unsafe { libc::setns(self.file.as_fd().as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(NetnsError::Setns { name: self.name.clone(), source: std::io::Error::last_os_error() });
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

fn delete(name: &str) {
    // Processes left inside would keep the namespace, and any XDP program
    // attached in it, alive after `ip netns del`.
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}

/// Deletes namespaces named `{prefix}{pid}-...` whose process is gone: what a
/// run killed with SIGKILL left behind.
pub fn remove_stale(prefix: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete(name);
            removed.push(name.to_owned());
        }
    }
    removed
}

/// A veth pair from `a` (interface `a_if`) to `b` (`b_if`), each end created
/// directly in its namespace so names never meet in the root namespace.
/// Both ends are left up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<(), NetnsError> {
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name()])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
