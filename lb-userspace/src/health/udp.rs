//! `UDP_CHECK`: send one datagram, expect a reply (containing given bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::{CheckResult, Phase, Progress, io_reason};
use crate::config::UdpCheck;

/// Bytes of a reply looked at. Health replies are short; a fixed buffer keeps
/// a thousand attempts in flight at a few MiB.
const REPLY_BUFFER: usize = 4096;

pub(super) struct UdpProbe {
    pub(super) addr: SocketAddr,
    payload: Vec<u8>,
    expect: Option<Vec<u8>>,
}

impl UdpProbe {
    pub(super) fn new(address: IpAddr, check: &UdpCheck) -> UdpProbe {
        UdpProbe {
            addr: SocketAddr::new(address, check.port),
            payload: check.payload.clone(),
            expect: check.expect.clone(),
        }
    }

    pub(super) async fn attempt(&self, progress: &Progress) -> CheckResult {
        match self.exchange(progress).await {
            Ok(result) => result,
            Err(reason) => CheckResult::down(reason),
        }
    }

    async fn exchange(&self, progress: &Progress) -> Result<CheckResult, String> {
        let addr = self.addr;
        let fail = |what: &str, e: std::io::Error| format!("{what} {addr}: {}", io_reason(&e));
        let socket = connected(addr, "udp").await?;
        socket.send(&self.payload).await.map_err(|e| fail("udp send to", e))?;
        progress.set(Phase::Reply);
        let mut reply = vec![0; REPLY_BUFFER];
        let n = socket.recv(&mut reply).await.map_err(|e| fail("udp reply from", e))?;
        let reply = &reply[..n];
        Ok(match &self.expect {
            None => CheckResult::up(format!("udp reply of {n} bytes from {addr}")),
            Some(expect) if contains(reply, expect) => CheckResult::up(format!("udp reply from {addr} matches")),
            Some(_) => {
                let shown = String::from_utf8_lossy(&reply[..n.min(40)]).into_owned();
                CheckResult::down(format!("udp reply from {addr} does not contain the expected bytes (got {shown:?})"))
            }
        })
    }
}

/// A UDP socket connected to `addr`, so that only the backend's datagrams
/// are received and an ICMP port unreachable fails the attempt at once
/// (ECONNREFUSED) instead of waiting for the timeout. Errors name `check`.
pub(super) async fn connected(addr: SocketAddr, check: &str) -> Result<UdpSocket, String> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let fail = |what: &str, e: std::io::Error| format!("{check} {what} {addr}: {}", io_reason(&e));
    let socket = UdpSocket::bind(local).await.map_err(|e| fail("socket for", e))?;
    socket.connect(addr).await.map_err(|e| fail("connect to", e))?;
    Ok(socket)
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::UdpSocket;

    use crate::{
        config::{CheckKind, UdpCheck},
        health::testutil::{LOCALHOST, check, expect_event, monitor, target},
    };

    /// Answers "pong <request>" to every datagram, until aborted.
    async fn responder() -> (u16, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut buf = [0; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let mut reply = b"pong ".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, peer).await;
            }
        });
        (port, task)
    }

    fn udp(port: u16, expect: Option<&[u8]>) -> CheckKind {
        CheckKind::Udp(UdpCheck { port, payload: b"ping".to_vec(), expect: expect.map(<[u8]>::to_vec) })
    }

    #[tokio::test]
    async fn expected_reply_is_up_other_reply_is_down() {
        let (port, _task) = responder().await;
        let (mut monitor, _rx) = monitor();
        let ok = monitor.probe_once(LOCALHOST, &check(udp(port, Some(b"pong ping")))).await.unwrap();
        assert!(ok.ok, "{ok:?}");
        let any = monitor.probe_once(LOCALHOST, &check(udp(port, None))).await.unwrap();
        assert!(any.ok, "{any:?}");
        let wrong = monitor.probe_once(LOCALHOST, &check(udp(port, Some(b"hello")))).await.unwrap();
        assert!(!wrong.ok, "{wrong:?}");
        assert!(wrong.reason.contains("does not contain the expected bytes"), "{wrong:?}");
    }

    #[tokio::test]
    async fn silence_is_down_after_the_timeout() {
        // Bound but never answering: no ICMP error either, only the timeout.
        let silent = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let mut c = check(udp(port, None));
        c.timeout = Duration::from_millis(300);
        let (mut monitor, mut rx) = monitor();
        let started = tokio::time::Instant::now();
        monitor.start(target(1, c, true)).unwrap();
        let down = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(!down.up);
        assert_eq!(down.reason, format!("timeout after 300ms waiting for a reply from 127.0.0.1:{port}"));
        assert!(started.elapsed() >= Duration::from_millis(300));
        drop(silent);
    }

    #[tokio::test]
    async fn closed_port_fails_fast_on_port_unreachable() {
        let closed = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let mut c = check(udp(port, None));
        c.timeout = Duration::from_secs(5);
        let (mut monitor, _rx) = monitor();
        let started = tokio::time::Instant::now();
        let result = monitor.probe_once(LOCALHOST, &c).await.unwrap();
        assert!(!result.ok);
        assert_eq!(*result.reason, format!("udp reply from 127.0.0.1:{port}: connection refused"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
