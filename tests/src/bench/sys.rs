//! What the bench needs from the system beyond aya: CPU pinning and load,
//! and entering a namespace from a scoped thread.

use std::{
    fs::File,
    os::fd::{AsFd as _, AsRawFd as _},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, bail};

use crate::netns::Netns;

/// Pins the calling thread to `cpu`. BPF_PROG_TEST_RUN runs the program on
/// the calling CPU (`BPF_F_TEST_RUN_ON_CPU` is refused for XDP), and a thread
/// that migrates mid-measurement mixes two CPUs' caches and loads.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; cpu < CPU_SETSIZE is checked by the caller's CPU count.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the set is valid for its size.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("pinning to CPU {cpu}"));
    }
    Ok(())
}

/// Online CPUs, from the kernel (not the affinity mask, which pinning narrows).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Per-CPU jiffies from `/proc/stat`: (busy, total) for each `cpuN` line.
#[derive(Clone, Debug)]
pub struct CpuTimes(Vec<(u64, u64)>);

impl CpuTimes {
    pub fn now() -> anyhow::Result<Self> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let mut cpus = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("cpu") else { continue };
            // The aggregate line is "cpu  ..."; per-CPU lines are "cpuN ...".
            if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            let fields: Vec<u64> = rest.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
            // already counted in user, so only the first eight add up to the total.
            let total: u64 = fields.iter().take(8).sum();
            let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
            cpus.push((total - idle, total));
        }
        if cpus.is_empty() {
            bail!("no per-CPU lines in /proc/stat");
        }
        Ok(Self(cpus))
    }

    /// Busy fraction of each CPU between `earlier` and `self`.
    pub fn busy_since(&self, earlier: &Self) -> Vec<f64> {
        self.0
            .iter()
            .zip(&earlier.0)
            .map(|(&(b1, t1), &(b0, t0))| {
                let dt = t1.saturating_sub(t0);
                if dt == 0 { 0.0 } else { b1.saturating_sub(b0) as f64 / dt as f64 }
            })
            .collect()
    }
}

/// Runs `f` on a thread that has entered `ns`, and waits for it.
/// `Netns::spawn` wants a `'static` closure; this one may borrow (the
/// programs and maps live in the caller's `Ebpf`), hence a scoped thread.
/// The thread inherits the caller's CPU affinity.
pub fn in_ns<R: Send>(ns: &Netns, f: impl FnOnce() -> anyhow::Result<R> + Send) -> anyhow::Result<R> {
    let path = format!("/run/netns/{}", ns.name());
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::scope(|s| {
        let handle = s.spawn(move || {
            // SAFETY: setns on an open namespace fd affects only this thread.
            if unsafe { libc::setns(file.as_fd().as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| format!("entering {}", ns.name()));
            }
            f()
        });
        handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Time the calling thread has spent runnable but waiting for its CPU
/// (`/proc/thread-self/schedstat`, second field). For a thread pinned to
/// one CPU this is time other tasks took from it on that CPU, which the
/// `/proc/stat` figures of the other CPUs cannot show.
pub fn run_delay() -> Option<std::time::Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

/// Fraction of `wall` that `run_delay` grew by between `before` and `after`.
pub fn delay_fraction(
    before: Option<std::time::Duration>,
    after: Option<std::time::Duration>,
    wall: std::time::Duration,
) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) if !wall.is_zero() => a.saturating_sub(b).as_secs_f64() / wall.as_secs_f64(),
        _ => 0.0,
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Turns SIGINT and SIGTERM into an error on the way out instead of an
/// instant death, so namespaces and XDP programs are cleaned up: a test run
/// in progress returns EINTR, and the loops check [`interrupted`].
pub fn catch_interrupts() -> anyhow::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; all-zero is "no flags, empty mask".
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_interrupt as *const () as libc::sighandler_t;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("installing a signal handler");
        }
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
