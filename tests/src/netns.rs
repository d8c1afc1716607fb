//! Network namespaces for tests and the bench: created with `ip netns add`,
//! named with a per-process prefix so parallel runs never collide, and
//! deleted on drop (processes inside are killed first), also when a test
//! panics.

use std::{
    fs::File,
    os::fd::AsFd as _,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace that lives as long as this value.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// Runs a command and fails with its stderr when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

impl Netns {
    /// A new, empty namespace with `lo` up. `tag` is for humans reading
    /// `ip netns list` while a test runs.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("lbt{}-{n}-{tag}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = run(Command::new("ip").arg("-n").arg(&self.name).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A command to run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a program inside the namespace and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = run(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")]).map(drop)
    }

    /// Runs `f` on a fresh thread that has entered the namespace; sockets,
    /// netlink and ioctls made there belong to it.
    pub fn spawn<F, R>(&self, f: F) -> anyhow::Result<thread::JoinHandle<anyhow::Result<R>>>
    where
        F: FnOnce() -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        let name = self.name.clone();
        thread::Builder::new()
            .name(format!("in-{}", self.name))
            .spawn(move || {
                nix_setns(&file).with_context(|| format!("entering namespace {name}"))?;
                f()
            })
            .context("spawning a thread")
    }

    /// Runs `f` inside the namespace and waits for it.
    pub fn run_in<F, R>(&self, f: F) -> anyhow::Result<R>
    where
        F: FnOnce() -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        match self.spawn(f)?.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn nix_setns(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setns on an open namespace fd affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_fd().as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes left inside would keep the namespace (and its XDP
        // programs) alive after `ip netns del`.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A veth pair from `a` (interface `a_if`) to `b` (interface `b_if`), both
/// created directly inside their namespaces so names never meet in the root
/// namespace. Both ends are left up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> anyhow::Result<()> {
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name()])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// MAC address of `iface` inside `ns`.
pub fn mac_of(ns: &Netns, iface: &str) -> anyhow::Result<[u8; 6]> {
    let text = ns.exec("cat", &[&format!("/sys/class/net/{iface}/address")])?;
    lb_userspace::dataplane::parse_mac(text.trim()).with_context(|| format!("parsing MAC of {iface}: {text:?}"))
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
