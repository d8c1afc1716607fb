//! The tests' view of [`lb_userspace::netns`]: `anyhow` errors, closures
//! that return `anyhow::Result`, and one name prefix (`lbt`) for everything
//! the tests create, so a leftover is easy to spot.

use std::{
    process::{Command, Output},
    thread,
};

use anyhow::Context as _;
use lb_userspace::netns as inner;

pub use inner::wait_for;

/// A network namespace that lives as long as this value (deleted on drop,
/// also when a test panics; processes inside are killed first).
#[derive(Debug)]
pub struct Netns(inner::Netns);

/// Runs a command and fails with its stderr when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    Ok(inner::run(cmd)?)
}

impl Netns {
    /// A new, empty namespace `lbt{pid}-{n}-{tag}` with `lo` up.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        Ok(Self(inner::Netns::new("lbt", tag)?))
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        Ok(self.0.ip(args)?)
    }

    /// A command to run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        self.0.command(program)
    }

    /// Runs a program inside the namespace and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        Ok(self.0.exec(program, args)?)
    }

    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        Ok(self.0.sysctl(key, value)?)
    }

    /// Runs `f` on a fresh thread inside the namespace.
    pub fn spawn<F, R>(&self, f: F) -> anyhow::Result<thread::JoinHandle<anyhow::Result<R>>>
    where
        F: FnOnce() -> anyhow::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let entry = self.0.entry()?;
        thread::Builder::new()
            .name(format!("in-{}", self.name()))
            .spawn(move || {
                entry.enter()?;
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

/// A veth pair from `a` (`a_if`) to `b` (`b_if`), both ends up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> anyhow::Result<()> {
    Ok(inner::veth(&a.0, a_if, &b.0, b_if)?)
}

/// MAC address of `iface` inside `ns`.
pub fn mac_of(ns: &Netns, iface: &str) -> anyhow::Result<[u8; 6]> {
    Ok(ns.0.mac(iface)?)
}
