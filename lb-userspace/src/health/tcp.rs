//! `TCP_CHECK`: the backend is up when a connection to the port completes.

use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpStream;

use super::{CheckResult, Phase, Progress, io_reason};

pub(super) struct TcpProbe {
    pub(super) addr: SocketAddr,
    /// The reason of every success, built once rather than per attempt.
    connected: Arc<str>,
}

impl TcpProbe {
    pub(super) fn new(addr: SocketAddr) -> TcpProbe {
        TcpProbe { addr, connected: format!("connected to {addr}").into() }
    }

    pub(super) async fn attempt(&self, progress: &Progress) -> CheckResult {
        match connect(self.addr, progress).await {
            // Dropping the stream closes it with a FIN, as keepalived does: an
            // RST would show up as an error in the backend's logs.
            Ok(_stream) => CheckResult::up(self.connected.clone()),
            Err(reason) => CheckResult::down(reason),
        }
    }
}

/// Connects, with the failure as a keepalived-like reason.
pub(super) async fn connect(addr: SocketAddr, progress: &Progress) -> Result<TcpStream, String> {
    progress.set(Phase::Connecting);
    TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {}", io_reason(&e)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use crate::{
        config::CheckKind,
        health::testutil::{LOCALHOST, check, expect_event, expect_no_event, monitor, serve, serving, target},
    };

    #[tokio::test]
    async fn listener_up_closed_port_down_after_fall_back_up_after_rise() {
        let (port, server, _) = serving().await;
        let mut c = check(CheckKind::Tcp { port });
        c.fall = 3;
        c.rise = 2;
        let (mut monitor, mut rx) = monitor();
        // Starts down so that the first success shows as an event.
        monitor.start(target(1, c, false)).unwrap();
        let up = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(up.up, "{up:?}");
        assert_eq!(up.reason, format!("connected to 127.0.0.1:{port}"));

        server.abort();
        let _ = server.await;
        let down = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(!down.up, "{down:?}");
        assert_eq!(down.reason, format!("connect to 127.0.0.1:{port}: connection refused"));
        let status = monitor.board().get(down.target).unwrap();
        assert!(!status.up);
        assert!(status.consecutive_failures >= 3, "{status:?}");

        let listener = TcpListener::bind((LOCALHOST, port)).await.unwrap();
        let _server = serve(listener);
        let back = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(back.up, "{back:?}");
        let status = monitor.board().get(back.target).unwrap();
        assert!(status.consecutive_successes >= 2, "{status:?}");
        assert_eq!(status.last.as_ref().map(|l| l.ok), Some(true));
        monitor.shutdown().await;
    }

    #[tokio::test]
    async fn a_healthy_backend_sends_no_events() {
        let (port, _server, _) = serving().await;
        let (mut monitor, mut rx) = monitor();
        monitor.start(target(1, check(CheckKind::Tcp { port }), true)).unwrap();
        expect_no_event(&mut rx, Duration::from_millis(300)).await;
        let status = monitor.board().get(crate::health::testutil::id(1)).unwrap();
        assert!(status.checks >= 2, "{status:?}");
        assert!(monitor.stop(status.id));
        assert!(monitor.board().get(status.id).is_none());
        assert!(!monitor.stop(status.id));
    }
}
