//! Helpers shared by the health tests. Every wait is bounded.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
    task::{JoinHandle, JoinSet},
    time,
};
use tokio_rustls::TlsAcceptor;

use super::{HealthEvent, Monitor, MonitorOptions, Target, TargetId, TargetStatus};
use crate::config::{Check, CheckKind};

pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A fast check: 50 ms interval and retry, 1 s timeout, fall and rise 1, no warm-up.
pub(crate) fn check(kind: CheckKind) -> Check {
    Check {
        kind,
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(1),
        fall: 1,
        rise: 1,
        delay_before_retry: Duration::from_millis(50),
        warmup: Duration::ZERO,
    }
}

pub(crate) fn id(backend: u32) -> TargetId {
    TargetId { vip: 0, backend }
}

pub(crate) fn target(backend: u32, check: Check, initially_up: bool) -> Target {
    Target { id: id(backend), address: LOCALHOST, check, initially_up }
}

pub(crate) fn monitor() -> (Monitor, mpsc::Receiver<HealthEvent>) {
    Monitor::new(MonitorOptions::default())
}

/// The next event, or a panic after `within`.
pub(crate) async fn expect_event(rx: &mut mpsc::Receiver<HealthEvent>, within: Duration) -> HealthEvent {
    match time::timeout(within, rx.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("event channel closed"),
        Err(_) => panic!("no event within {within:?}"),
    }
}

pub(crate) async fn expect_no_event(rx: &mut mpsc::Receiver<HealthEvent>, during: Duration) {
    if let Ok(Some(event)) = time::timeout(during, rx.recv()).await {
        panic!("unexpected event {event:?}");
    }
}

/// Polls the board until `f` holds for `id`'s status, or panics after `within`.
pub(crate) async fn wait_status(
    monitor: &Monitor,
    id: TargetId,
    within: Duration,
    f: impl Fn(&TargetStatus) -> bool,
) -> TargetStatus {
    let deadline = time::Instant::now() + within;
    loop {
        let status = monitor.board().get(id).expect("target is running");
        if f(&status) {
            return status;
        }
        assert!(time::Instant::now() < deadline, "condition not met within {within:?}: {status:?}");
        time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts and drops connections on `listener` until the returned task is
/// aborted; counts what it accepted.
pub(crate) fn serve(listener: TcpListener) -> (JoinHandle<()>, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    (task, accepted)
}

/// A loopback listener served by [`serve`]: its port, task and count.
pub(crate) async fn serving() -> (u16, JoinHandle<()>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("a loopback port");
    let port = listener.local_addr().expect("a bound listener").port();
    let (task, accepted) = serve(listener);
    (port, task, accepted)
}

/// How a test HTTP server answers every request.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// Sent whole, then the connection is closed.
    Bytes(Vec<u8>),
    /// Reads the request and never answers.
    Silent,
    /// One byte at a time.
    Trickle { bytes: Vec<u8>, every: Duration },
    /// `head`, then `len` bytes of body as fast as the client takes them.
    Huge { head: Vec<u8>, len: usize },
}

/// A local HTTP(S) server; stops when dropped.
pub(crate) struct HttpServer {
    pub(crate) port: u16,
    /// Every request received, as text.
    pub(crate) requests: mpsc::UnboundedReceiver<String>,
    /// The most body bytes handed to the kernel on one connection ([`Reply::Huge`]).
    pub(crate) most_sent: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn http_server(reply: Reply, tls: Option<TlsAcceptor>) -> HttpServer {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, requests) = mpsc::unbounded_channel();
    let most_sent = Arc::new(AtomicUsize::new(0));
    let sent = most_sent.clone();
    let task = tokio::spawn(async move {
        // Connection tasks are aborted with the server (JoinSet drops them).
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (reply, tx, tls, sent) = (reply.clone(), tx.clone(), tls.clone(), sent.clone());
            connections.spawn(async move {
                match tls {
                    None => answer(stream, reply, tx, sent).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream, reply, tx, sent).await;
                        }
                    }
                }
            });
            while connections.try_join_next().is_some() {}
        }
    });
    HttpServer { port, requests, most_sent, task }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    reply: Reply,
    requests: mpsc::UnboundedSender<String>,
    most_sent: Arc<AtomicUsize>,
) {
    let mut request = Vec::new();
    let mut buf = [0; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let _ = requests.send(String::from_utf8_lossy(&request).into_owned());
    match reply {
        Reply::Bytes(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Reply::Silent => time::sleep(Duration::from_secs(3600)).await,
        Reply::Trickle { bytes, every } => {
            for byte in bytes {
                if stream.write_all(&[byte]).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                time::sleep(every).await;
            }
        }
        Reply::Huge { head, len } => {
            if stream.write_all(&head).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < len {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
                most_sent.fetch_max(sent, Ordering::Relaxed);
            }
            let _ = stream.shutdown().await;
        }
    }
}

/// A complete response with a Content-Length.
pub(crate) fn response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut r =
        format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

/// A TLS acceptor with a fresh self-signed certificate for "localhost".
pub(crate) fn tls_acceptor() -> TlsAcceptor {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![String::from("localhost")]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}
