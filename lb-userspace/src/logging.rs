//! Where log lines go: to the journal with their priority when systemd
//! started us with stderr connected to it, else to stderr as text.
//!
//! The journal's priority is what `journalctl -p warning` and alerting on
//! the journal filter on; plain text on a journal stream would arrive as
//! priority 6 (info) whatever its level. tracing-journald maps ERROR to 3
//! (err), WARN to 4 (warning), INFO to 5 (notice), DEBUG to 6, TRACE to 7.

use std::{io::IsTerminal as _, os::unix::fs::MetadataExt as _};

use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Sets the process-wide subscriber, which also carries the `log` records
/// of aya and rtnetlink; the level comes from `RUST_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if stderr_is_journal()
        && let Ok(journal) = tracing_journald::layer()
    {
        // The target (`lb_userspace::agent::run`) says nothing to an operator
        // reading `journalctl -u lb`; the identifier is the unit's program.
        registry.with(journal.with_syslog_identifier("lb".to_owned())).init();
        return;
    }
    registry
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()))
        .init();
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for a unit whose output goes to
/// the journal; it holds for us only if stderr is still that stream (not
/// redirected by a wrapper script or a test harness).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else { return false };
    parse_journal_stream(&stream.to_string_lossy()) == Some((meta.dev(), meta.ino()))
}

fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_journal_stream;

    #[test]
    fn journal_stream_is_device_and_inode() {
        assert_eq!(parse_journal_stream("8:1234"), Some((8, 1234)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }
}
