//! `DNS_CHECK`: one query over UDP; up on a reply that answers it with
//! RCODE NOERROR, as keepalived decides.
//!
//! The message is built and read by hand: the check needs the 12-byte
//! header and one question out, and the header's id, QR bit and RCODE
//! back. A DNS library (hickory-proto) would bring dozens of crates for
//! these forty lines.

use std::{
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicU16, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use super::{CheckResult, Phase, Progress, io_reason};
use crate::config::{DnsCheck, DnsType};

/// A reply larger than this is cut; only its header is read.
const REPLY_BUFFER: usize = 512;
const HEADER: usize = 12;
/// Recursion desired, as keepalived asks.
const FLAG_RD: u16 = 0x0100;
const FLAG_QR: u16 = 0x8000;
const CLASS_IN: u16 = 1;

pub(super) struct DnsProbe {
    pub(super) addr: SocketAddr,
    check: DnsCheck,
}

/// What a datagram from the server says about our query.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Not an answer to it (another id, a query, too short): keep waiting,
    /// as keepalived does.
    Unrelated,
    Answered {
        rcode: u8,
    },
}

impl DnsProbe {
    pub(super) fn new(address: IpAddr, check: &DnsCheck) -> DnsProbe {
        DnsProbe { addr: SocketAddr::new(address, check.port), check: check.clone() }
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
        let socket = super::udp::connected(addr, "dns").await?;
        let id = next_id();
        let query = query(id, self.check.query_type, &self.check.query_name);
        socket.send(&query).await.map_err(|e| fail("dns query to", e))?;
        progress.set(Phase::Reply);
        let mut buf = [0; REPLY_BUFFER];
        let what = || format!("{} {}", self.check.query_type.name(), shown(&self.check.query_name));
        loop {
            let n = socket.recv(&mut buf).await.map_err(|e| fail("dns reply from", e))?;
            match read_reply(id, &buf[..n]) {
                Reply::Unrelated => continue,
                Reply::Answered { rcode: 0 } => {
                    return Ok(CheckResult::up(format!("dns {} answered by {addr}", what())));
                }
                Reply::Answered { rcode } => {
                    return Ok(CheckResult::down(format!(
                        "dns {} from {addr}: {} (rcode {rcode})",
                        what(),
                        rcode_name(rcode)
                    )));
                }
            }
        }
    }
}

/// Ids differ from one query to the next and from one run to the next, so a
/// late reply to an earlier attempt is not taken for this one's.
fn next_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    NEXT.fetch_add(1, Ordering::Relaxed) ^ (seed as u16)
}

/// The query: header with one question, then QNAME, QTYPE, QCLASS IN.
/// `name` is valid (labels of 1..=63 bytes; the configuration checked it);
/// "" is the root.
pub(super) fn query(id: u16, qtype: DnsType, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&FLAG_RD.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT 1, no other records
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.code().to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

pub(crate) fn read_reply(id: u16, reply: &[u8]) -> Reply {
    let Some(header) = reply.get(..HEADER) else { return Reply::Unrelated };
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if u16::from_be_bytes([header[0], header[1]]) != id || flags & FLAG_QR == 0 {
        return Reply::Unrelated;
    }
    Reply::Answered { rcode: (flags & 0x000f) as u8 }
}

/// RFC 1035 4.1.1 and RFC 6895's registry, for the reason shown.
fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "error",
    }
}

fn shown(name: &str) -> &str {
    if name.is_empty() { "." } else { name }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::UdpSocket;

    use super::*;
    use crate::{
        config::CheckKind,
        health::testutil::{LOCALHOST, check},
    };

    #[test]
    fn query_is_header_then_one_question() {
        let q = query(0x1234, DnsType::A, "www.example.org");
        assert_eq!(&q[..12], &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x03www\x07example\x03org\x00\x00\x01\x00\x01");
        let root = query(7, DnsType::Soa, "");
        assert_eq!(&root[12..], &[0, 0, 6, 0, 1]);
    }

    #[test]
    fn only_an_answer_to_our_id_counts() {
        let mut reply = query(9, DnsType::A, "a");
        assert_eq!(read_reply(9, &reply), Reply::Unrelated, "our own query echoed back is no answer");
        reply[2] |= 0x80;
        assert_eq!(read_reply(9, &reply), Reply::Answered { rcode: 0 });
        assert_eq!(read_reply(10, &reply), Reply::Unrelated);
        reply[3] |= 3;
        assert_eq!(read_reply(9, &reply), Reply::Answered { rcode: 3 });
        assert_eq!(read_reply(9, &reply[..11]), Reply::Unrelated);
        assert_eq!(read_reply(9, &[]), Reply::Unrelated);
    }

    /// Answers every query with `rcode`, after a datagram that answers
    /// nothing (another id), until aborted.
    async fn server(rcode: u8) -> (u16, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut buf = [0; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80;
                reply[3] |= rcode;
                let mut stray = reply.clone();
                stray[0] ^= 0xff;
                let _ = socket.send_to(&stray, peer).await;
                let _ = socket.send_to(&reply, peer).await;
            }
        });
        (port, task)
    }

    fn dns(port: u16) -> CheckKind {
        CheckKind::Dns(DnsCheck { port, query_type: DnsType::Soa, query_name: String::new() })
    }

    #[tokio::test]
    async fn noerror_is_up_an_error_rcode_is_down() {
        let (mut monitor, _rx) = crate::health::testutil::monitor();
        let (ok_port, _ok) = server(0).await;
        let up = monitor.probe_once(LOCALHOST, &check(dns(ok_port))).await.unwrap();
        assert!(up.ok, "{up:?}");
        assert_eq!(*up.reason, format!("dns SOA . answered by 127.0.0.1:{ok_port}"));
        let (bad_port, _bad) = server(2).await;
        let down = monitor.probe_once(LOCALHOST, &check(dns(bad_port))).await.unwrap();
        assert!(!down.ok);
        assert_eq!(*down.reason, format!("dns SOA . from 127.0.0.1:{bad_port}: SERVFAIL (rcode 2)"));
    }

    #[tokio::test]
    async fn silence_is_down_after_the_timeout() {
        let silent = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let mut c = check(dns(port));
        c.timeout = Duration::from_millis(200);
        let (mut monitor, _rx) = crate::health::testutil::monitor();
        let result = monitor.probe_once(LOCALHOST, &c).await.unwrap();
        assert!(!result.ok);
        assert!(result.reason.starts_with("timeout after 200ms"), "{result:?}");
        drop(silent);
    }
}
