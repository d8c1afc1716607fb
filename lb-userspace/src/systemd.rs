//! Telling systemd how `lb run` is doing (sd_notify(3), `Type=notify`):
//! ready once serving, reloading around a re-read of the file, stopping on
//! the way out, and the watchdog's keep-alive. Without `NOTIFY_SOCKET`
//! (not started by systemd) every call does nothing.
//!
//! A failed notification is logged and otherwise ignored: the agent keeps
//! forwarding whether or not its manager hears about it.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;

/// The agent's line to its service manager.
#[derive(Clone, Debug)]
pub struct Notifier {
    /// systemd's `WatchdogSec=`, when set for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC` (and `WATCHDOG_PID`) once; `NOTIFY_SOCKET` is
    /// read at each notification.
    pub fn from_env() -> Self {
        Self { watchdog: sd_notify::watchdog_enabled() }
    }

    /// How often to send the keep-alive: half the watchdog's timeout, as
    /// sd_watchdog_enabled(3) recommends, so one late tick does not kill the
    /// agent. `None` when no watchdog is set.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| (timeout / 2).max(Duration::from_millis(1)))
    }

    /// Serving: systemd's start job finishes and units ordered after `lb`
    /// start.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// One line for `systemctl status`.
    pub fn status(&self, status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    /// A reload has begun; [`Notifier::ready`] ends it. The monotonic time
    /// lets systemd tell this reload from an earlier one (it requires it for
    /// `Type=notify-reload`).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("reloading")]),
            Err(e) => {
                warn!("systemd notification: reading the monotonic clock: {e}");
                send(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
            }
        }
    }

    /// Stopping: systemd no longer expects the agent to be ready.
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// The watchdog's keep-alive: the event loop is still turning.
    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("systemd notification failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::net::UnixDatagram, process::Command, time::Duration};

    use super::Notifier;

    /// Set in the child process that sends; its parent listens.
    const CHILD: &str = "LB_SYSTEMD_TEST_CHILD";

    /// The notification reaches the socket `NOTIFY_SOCKET` names. The
    /// environment is process-wide and setting it while other tests run is
    /// unsound, so the test runs itself again as a child process with the
    /// variable set, and the child sends.
    #[test]
    fn ready_reaches_notify_socket() {
        if std::env::var_os(CHILD).is_some() {
            Notifier::from_env().ready("serving 1 VIP");
            return;
        }
        let dir = std::env::temp_dir().join(format!("lb-systemd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "systemd::tests::ready_reaches_notify_socket", "--test-threads=1"])
            .env(CHILD, "1")
            .env("NOTIFY_SOCKET", &path)
            .output();
        let mut buf = [0u8; 512];
        let received = socket.recv(&mut buf);
        let _ = std::fs::remove_dir_all(&dir);
        let output = output.unwrap();
        assert!(output.status.success(), "the child failed: {}", String::from_utf8_lossy(&output.stdout));
        let message = std::str::from_utf8(&buf[..received.unwrap()]).unwrap().to_owned();
        assert_eq!(message.lines().collect::<Vec<_>>(), ["READY=1", "STATUS=serving 1 VIP"]);
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout() {
        let n = Notifier { watchdog: Some(Duration::from_secs(10)) };
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
        assert_eq!(Notifier { watchdog: None }.watchdog_interval(), None);
    }
}
