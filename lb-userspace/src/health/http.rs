//! `HTTP_GET` and `SSL_GET`: one `GET`, judged on the status code and
//! optionally on the body (a substring, or keepalived's MD5 `digest`).
//!
//! A small HTTP/1.1 client rather than hyper: a check needs one request per
//! connection, hard caps on everything the backend sends (a broken backend
//! may answer with anything, or forever) and nothing else. Plain and TLS
//! connections share the code through `AsyncRead + AsyncWrite`.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use md5::{Digest, Md5};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        Resumption,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::{CheckResult, HealthError, Phase, Progress, io_reason, tcp::connect, udp::contains};
use crate::config::{BodyMatch, HttpCheck, StatusCodes, Tls};

/// Read size, and so the most buffered per connection besides the caps below.
const READ_CHUNK: usize = 8 * 1024;
/// Longest status, header or chunk-size line.
const MAX_LINE: usize = 8 * 1024;
/// All response headers together.
const MAX_HEADERS: usize = 64 * 1024;
/// Interim (1xx) responses skipped before the real one.
const MAX_INTERIM: usize = 4;
/// TLS sessions remembered for resumption: one per backend spares backends a
/// full handshake every interval.
const TLS_SESSIONS: usize = 8192;

pub(super) struct HttpProbe {
    pub(super) addr: SocketAddr,
    request: Box<[u8]>,
    status: StatusCodes,
    body: BodyMatch,
    tls: Option<TlsTarget>,
    body_cap: usize,
}

pub(super) struct TlsTarget {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl HttpProbe {
    pub(super) fn new(
        address: IpAddr,
        check: &HttpCheck,
        tls: Option<TlsTarget>,
        body_cap: usize,
    ) -> Result<HttpProbe, HealthError> {
        let addr = SocketAddr::new(address, check.port);
        let default_port = if tls.is_some() { 443 } else { 80 };
        let host = match &check.host {
            Some(host) => host.clone(),
            None => {
                let ip = match address {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                };
                if check.port == default_port { ip } else { format!("{ip}:{}", check.port) }
            }
        };
        // Validation already refuses these; a hand-built Check must not be
        // able to smuggle a header or a second request either.
        for (what, value) in [("path", &check.path), ("host", &host)] {
            if value.is_empty() || value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err(HealthError::InvalidRequest { what, value: value.clone() });
            }
        }
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lb-healthcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            check.path
        );
        Ok(HttpProbe {
            addr,
            request: request.into_bytes().into_boxed_slice(),
            status: check.status.clone(),
            body: check.body.clone(),
            tls,
            body_cap,
        })
    }

    pub(super) async fn attempt(&self, progress: &Progress) -> CheckResult {
        let stream = match connect(self.addr, progress).await {
            Ok(stream) => stream,
            Err(reason) => return CheckResult::down(reason),
        };
        // Requests are written in one piece; do not hold them back for an ACK.
        // (Only here: a TCP check writes nothing, so it skips the syscall.)
        let _ = stream.set_nodelay(true);
        let result = match &self.tls {
            None => self.exchange(stream, progress).await,
            Some(tls) => {
                progress.set(Phase::TlsHandshake);
                match tls.connector.connect(tls.name.clone(), stream).await {
                    Ok(stream) => self.exchange(stream, progress).await,
                    Err(e) => Err(format!("TLS handshake with {}: {}", self.addr, io_reason(&e))),
                }
            }
        };
        match result {
            Ok(reason) => CheckResult::up(reason),
            Err(reason) => CheckResult::down(reason),
        }
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        progress: &Progress,
    ) -> Result<String, String> {
        progress.set(Phase::Sending);
        let sent = async {
            stream.write_all(&self.request).await?;
            stream.flush().await
        };
        sent.await.map_err(|e| format!("sending the request to {}: {}", self.addr, io_reason(&e)))?;
        progress.set(Phase::Headers);
        let mut reader = Reader::new(stream, progress, self.addr);
        let head = read_head(&mut reader).await?;
        if !self.status.contains(head.status) {
            return Err(format!("HTTP status {} not in {}", head.status, show_codes(&self.status)));
        }
        progress.set(Phase::Body);
        // A status-only check stops here: the rest of the body, however big,
        // is never read; dropping the connection ends it.
        match &self.body {
            BodyMatch::Any => Ok(format!("HTTP status {}", head.status)),
            BodyMatch::Contains(text) => {
                let mut body = Body::new(&mut reader, head.framing);
                let needle = text.as_bytes();
                // The needle may straddle two reads: keep its length less one
                // byte of the previous read in front of the next.
                let mut window: Vec<u8> = Vec::with_capacity(READ_CHUNK + needle.len());
                let mut read = 0;
                while let Some(chunk) = body.next().await? {
                    read += chunk.len();
                    window.extend_from_slice(chunk);
                    if contains(&window, needle) {
                        return Ok(format!("HTTP status {}, body contains {text:?}", head.status));
                    }
                    if read >= self.body_cap {
                        return Err(format!(
                            "body does not contain {text:?} in its first {}",
                            show_size(self.body_cap)
                        ));
                    }
                    let keep = needle.len().saturating_sub(1);
                    if window.len() > keep {
                        window.drain(..window.len() - keep);
                    }
                }
                Err(format!("body does not contain {text:?}"))
            }
            BodyMatch::Md5(expected) => {
                if let Framing::Length(n) = head.framing
                    && n > self.body_cap as u64
                {
                    return Err(format!("body larger than {} (Content-Length: {n})", show_size(self.body_cap)));
                }
                let mut body = Body::new(&mut reader, head.framing);
                let mut md5 = Md5::new();
                let mut read = 0;
                while let Some(chunk) = body.next().await? {
                    read += chunk.len();
                    if read > self.body_cap {
                        return Err(format!("body larger than {}", show_size(self.body_cap)));
                    }
                    md5.update(chunk);
                }
                let got: [u8; 16] = md5.finalize().into();
                if got == *expected {
                    Ok(format!("HTTP status {}, body MD5 {}", head.status, hex(&got)))
                } else {
                    Err(format!("body MD5 {} != expected {}", hex(&got), hex(expected)))
                }
            }
        }
    }
}

/// What `check` makes of `response`, as if a backend at 127.0.0.1 had sent
/// it: the whole exchange over an in-memory stream, for the fuzz target.
#[doc(hidden)]
pub(crate) fn judge_response(check: &HttpCheck, response: &[u8]) -> Result<String, String> {
    let probe = HttpProbe::new(IpAddr::from([127, 0, 0, 1]), check, None, 64 * 1024).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    runtime.block_on(probe.exchange(tokio::io::join(response, tokio::io::sink()), &Progress::default()))
}

/// "200-299", "200,301-302".
fn show_codes(codes: &StatusCodes) -> String {
    let parts: Vec<String> = codes
        .ranges
        .iter()
        .map(|r| if r.start() == r.end() { r.start().to_string() } else { format!("{}-{}", r.start(), r.end()) })
        .collect();
    parts.join(",")
}

fn show_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A buffered reader with hard limits, over a plain or TLS stream.
struct Reader<'p, S> {
    stream: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    progress: &'p Progress,
    addr: SocketAddr,
}

impl<'p, S: AsyncRead + Unpin> Reader<'p, S> {
    fn new(stream: S, progress: &'p Progress, addr: SocketAddr) -> Self {
        Reader { stream, buf: vec![0; READ_CHUNK].into_boxed_slice(), start: 0, end: 0, eof: false, progress, addr }
    }

    /// Makes at least one unread byte available; false at end of stream.
    async fn fill(&mut self) -> Result<bool, String> {
        if self.start < self.end {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.start = 0;
        self.end = 0;
        match self.stream.read(&mut self.buf).await {
            Ok(0) => self.eof = true,
            Ok(n) => {
                self.end = n;
                self.progress.received(n);
            }
            // Many TLS servers close without close_notify; for a health
            // check that is an ordinary end of the response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => self.eof = true,
            Err(e) => return Err(format!("reading the response from {}: {}", self.addr, io_reason(&e))),
        }
        Ok(!self.eof)
    }

    /// Takes up to `max` buffered bytes (call after a successful `fill`).
    fn take(&mut self, max: usize) -> &[u8] {
        let n = max.min(self.end - self.start);
        let taken = &self.buf[self.start..self.start + n];
        self.start += n;
        taken
    }

    /// Reads one line into `line`, without its CRLF (or bare LF).
    async fn read_line(&mut self, line: &mut Vec<u8>, what: &str) -> Result<(), String> {
        line.clear();
        loop {
            if !self.fill().await? {
                return Err(format!("connection closed by {} while reading {what}", self.addr));
            }
            let available = &self.buf[self.start..self.end];
            let (part, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1),
                None => (available, available.len()),
            };
            if line.len() + part.len() > MAX_LINE {
                return Err(format!("{what} longer than {}", show_size(MAX_LINE)));
            }
            line.extend_from_slice(part);
            let complete = done > part.len();
            self.start += done;
            if complete {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(());
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    Close,
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    framing: Framing,
}

async fn read_head<S: AsyncRead + Unpin>(reader: &mut Reader<'_, S>) -> Result<Head, String> {
    let mut line = Vec::with_capacity(256);
    for _ in 0..=MAX_INTERIM {
        reader.read_line(&mut line, "the status line").await?;
        let status = parse_status_line(&line)?;
        let mut total = line.len();
        let mut length = None;
        let mut chunked = false;
        loop {
            reader.read_line(&mut line, "the response headers").await?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            if total > MAX_HEADERS {
                return Err(format!("response headers larger than {}", show_size(MAX_HEADERS)));
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                let parsed = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
                length = Some(parsed.ok_or_else(|| format!("bad Content-Length {:?}", shown(value)))?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // The last coding decides whether the message is chunked.
                chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let framing = if chunked {
            Framing::Chunked
        } else if status == 204 || status == 304 {
            Framing::Length(0)
        } else {
            length.map_or(Framing::Close, Framing::Length)
        };
        return Ok(Head { status, framing });
    }
    Err(format!("more than {MAX_INTERIM} interim (1xx) responses"))
}

fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if version.starts_with(b"HTTP/") && code.len() == 3 && code.iter().all(u8::is_ascii_digit) {
        Ok(code.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')))
    } else {
        Err(format!("malformed status line {:?}", shown(line)))
    }
}

/// The start of untrusted bytes, printable in a log line.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned()
}

/// The body of a response, decoded from its framing.
struct Body<'r, 'p, S> {
    reader: &'r mut Reader<'p, S>,
    state: BodyState,
    line: Vec<u8>,
}

enum BodyState {
    Length(u64),
    Close,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Done,
}

impl<'r, 'p, S: AsyncRead + Unpin> Body<'r, 'p, S> {
    fn new(reader: &'r mut Reader<'p, S>, framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::ChunkSize,
            Framing::Close => BodyState::Close,
        };
        Body { reader, state, line: Vec::new() }
    }

    /// The next piece of the body; `None` at its end.
    async fn next(&mut self) -> Result<Option<&[u8]>, String> {
        loop {
            match self.state {
                BodyState::Done | BodyState::Length(0) => return Ok(None),
                BodyState::Length(remaining) => {
                    if !self.reader.fill().await? {
                        return Err(format!("connection closed {remaining} bytes before the end of the body"));
                    }
                    let piece = self.reader.take(remaining.min(READ_CHUNK as u64) as usize);
                    self.state = BodyState::Length(remaining - piece.len() as u64);
                    return Ok(Some(piece));
                }
                BodyState::Close => {
                    if !self.reader.fill().await? {
                        self.state = BodyState::Done;
                        return Ok(None);
                    }
                    return Ok(Some(self.reader.take(READ_CHUNK)));
                }
                BodyState::ChunkSize => {
                    self.reader.read_line(&mut self.line, "a chunk size").await?;
                    let digits = self.line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| u64::from_str_radix(d, 16).ok())
                        .ok_or_else(|| format!("bad chunk size {:?}", shown(&self.line)))?;
                    if size == 0 {
                        // Trailer fields, up to the empty line.
                        for _ in 0..64 {
                            self.reader.read_line(&mut self.line, "the trailer").await?;
                            if self.line.is_empty() {
                                self.state = BodyState::Done;
                                break;
                            }
                        }
                        if !matches!(self.state, BodyState::Done) {
                            return Err(String::from("too many trailer fields"));
                        }
                    } else {
                        self.state = BodyState::ChunkData(size);
                    }
                }
                BodyState::ChunkData(remaining) => {
                    if !self.reader.fill().await? {
                        return Err(String::from("connection closed inside a chunk"));
                    }
                    let piece = self.reader.take(remaining.min(READ_CHUNK as u64) as usize);
                    let left = remaining - piece.len() as u64;
                    self.state = if left == 0 { BodyState::ChunkEnd } else { BodyState::ChunkData(left) };
                    return Ok(Some(piece));
                }
                BodyState::ChunkEnd => {
                    self.reader.read_line(&mut self.line, "a chunk end").await?;
                    if !self.line.is_empty() {
                        return Err(String::from("chunk longer than its size"));
                    }
                    self.state = BodyState::ChunkSize;
                }
            }
        }
    }
}

/// The two client configurations, built on first use and shared by every
/// HTTPS target (loading the web PKI roots once, sharing one session cache).
#[derive(Debug, Default)]
pub(super) struct TlsConfigs {
    verifying: Option<Arc<ClientConfig>>,
    trusting: Option<Arc<ClientConfig>>,
}

impl TlsConfigs {
    pub(super) fn target(&mut self, address: IpAddr, tls: &Tls) -> Result<TlsTarget, HealthError> {
        let slot = if tls.verify { &mut self.verifying } else { &mut self.trusting };
        let config = match slot {
            Some(config) => config.clone(),
            None => slot.insert(client_config(tls.verify)?).clone(),
        };
        // Without `sni` the handshake names the address: rustls then sends
        // no SNI, and verification checks the certificate's IP addresses.
        let name = match &tls.sni {
            Some(sni) => {
                ServerName::try_from(sni.clone()).map_err(|_| HealthError::InvalidServerName { name: sni.clone() })?
            }
            None => ServerName::IpAddress(address.into()),
        };
        Ok(TlsTarget { connector: TlsConnector::from(config), name })
    }
}

fn client_config(verify: bool) -> Result<Arc<ClientConfig>, HealthError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| HealthError::Tls { source })?;
    let mut config = if verify {
        let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::in_memory_sessions(TLS_SESSIONS);
    Ok(Arc::new(config))
}

/// Accepts any certificate, as keepalived's `SSL_GET` does unless told to
/// verify: backends commonly serve self-signed or internal-CA certificates
/// under names that are not their addresses, and the check asks "does the
/// service answer", not "is this the server it claims to be". The handshake
/// signatures are still checked, so the server must hold the key of the
/// certificate it sent.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        config::{Check, CheckKind},
        health::{
            Monitor,
            testutil::{LOCALHOST, Reply, check, expect_event, http_server, monitor, response, target, tls_acceptor},
        },
    };

    fn http(port: u16, body: BodyMatch) -> HttpCheck {
        HttpCheck { port, path: String::from("/health"), host: None, status: StatusCodes::default(), body }
    }

    fn https(port: u16, verify: bool) -> CheckKind {
        CheckKind::Https { http: http(port, BodyMatch::Any), tls: Tls { sni: None, verify } }
    }

    async fn once(monitor: &mut Monitor, check: &Check) -> CheckResult {
        monitor.probe_once(LOCALHOST, check).await.unwrap()
    }

    #[tokio::test]
    async fn sends_a_minimal_get_and_accepts_a_listed_status() {
        let mut server = http_server(Reply::Bytes(response("200 OK", b"fine")), None).await;
        let (mut monitor, _rx) = monitor();
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, BodyMatch::Any)))).await;
        assert_eq!(result, CheckResult::up("HTTP status 200"));
        let request = server.requests.recv().await.unwrap();
        assert_eq!(
            request,
            format!(
                "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: lb-healthcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                server.port
            )
        );
    }

    #[tokio::test]
    async fn a_status_outside_the_list_is_down() {
        let server = http_server(Reply::Bytes(response("503 Service Unavailable", b"")), None).await;
        let (mut monitor, _rx) = monitor();
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, BodyMatch::Any)))).await;
        assert_eq!(result, CheckResult::down("HTTP status 503 not in 200-299"));
        let mut listed = http(server.port, BodyMatch::Any);
        listed.status = StatusCodes { ranges: vec![200..=200, 500..=503] };
        assert_eq!(once(&mut monitor, &check(CheckKind::Http(listed))).await, CheckResult::up("HTTP status 503"));
        let mut other = http(server.port, BodyMatch::Any);
        other.status = StatusCodes { ranges: vec![200..=200, 301..=302] };
        assert_eq!(
            once(&mut monitor, &check(CheckKind::Http(other))).await,
            CheckResult::down("HTTP status 503 not in 200,301-302")
        );
    }

    #[tokio::test]
    async fn body_substring() {
        let server = http_server(Reply::Bytes(response("200 OK", b"status: all good\n")), None).await;
        let (mut monitor, _rx) = monitor();
        let found = BodyMatch::Contains(String::from("all good"));
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, found)))).await;
        assert_eq!(result, CheckResult::up("HTTP status 200, body contains \"all good\""));
        let missing = BodyMatch::Contains(String::from("degraded"));
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, missing)))).await;
        assert_eq!(result, CheckResult::down("body does not contain \"degraded\""));
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded_and_needles_found_across_chunks() {
        let reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nall g\r\n3\r\nood\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let server = http_server(Reply::Bytes(reply.to_vec()), None).await;
        let (mut monitor, _rx) = monitor();
        let found = BodyMatch::Contains(String::from("all good"));
        assert!(once(&mut monitor, &check(CheckKind::Http(http(server.port, found)))).await.ok);
        let digest = BodyMatch::Md5(Md5::digest(b"all good").into());
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, digest)))).await;
        assert!(result.ok, "{result:?}");
    }

    #[tokio::test]
    async fn md5_digest_of_the_body() {
        let body = b"<html>keepalived digest</html>\n";
        let expected: [u8; 16] = Md5::digest(body).into();
        let server = http_server(Reply::Bytes(response("200 OK", body)), None).await;
        let (mut monitor, _rx) = monitor();
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, BodyMatch::Md5(expected))))).await;
        assert_eq!(result, CheckResult::up(format!("HTTP status 200, body MD5 {}", hex(&expected))));
        let wrong = [0xcd; 16];
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, BodyMatch::Md5(wrong))))).await;
        assert_eq!(result, CheckResult::down(format!("body MD5 {} != expected {}", hex(&expected), hex(&wrong))));
    }

    #[tokio::test]
    async fn md5_digest_of_a_body_ended_by_close() {
        let body = b"no length, the end is the close";
        let mut reply = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        reply.extend_from_slice(body);
        let server = http_server(Reply::Bytes(reply), None).await;
        let (mut monitor, _rx) = monitor();
        let digest = BodyMatch::Md5(Md5::digest(body).into());
        assert!(once(&mut monitor, &check(CheckKind::Http(http(server.port, digest)))).await.ok);
    }

    #[tokio::test]
    async fn a_truncated_body_fails_the_digest() {
        let server =
            http_server(Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec()), None).await;
        let (mut monitor, _rx) = monitor();
        let digest = BodyMatch::Md5([0; 16]);
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, digest)))).await;
        assert_eq!(result, CheckResult::down("connection closed 95 bytes before the end of the body"));
    }

    #[tokio::test]
    async fn garbage_instead_of_http_is_down() {
        let server = http_server(Reply::Bytes(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()), None).await;
        let (mut monitor, _rx) = monitor();
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, BodyMatch::Any)))).await;
        assert_eq!(result, CheckResult::down("malformed status line \"SSH-2.0-OpenSSH_9.6\""));
    }

    #[tokio::test]
    async fn interim_responses_are_skipped() {
        let mut reply = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n".to_vec();
        reply.extend_from_slice(&response("204 No Content", b""));
        let server = http_server(Reply::Bytes(reply), None).await;
        let (mut monitor, _rx) = monitor();
        let result = once(&mut monitor, &check(CheckKind::Http(http(server.port, BodyMatch::Any)))).await;
        assert_eq!(result, CheckResult::up("HTTP status 204"));
    }

    #[tokio::test]
    async fn https_with_verification_off_accepts_a_self_signed_certificate() {
        let body = b"tls ok";
        let server = http_server(Reply::Bytes(response("200 OK", body)), Some(tls_acceptor())).await;
        let (mut monitor, mut rx) = monitor();
        let mut c = check(https(server.port, false));
        if let CheckKind::Https { http, .. } = &mut c.kind {
            http.body = BodyMatch::Md5(Md5::digest(body).into());
        }
        monitor.start(target(1, c, false)).unwrap();
        let up = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(up.up, "{up:?}");
        monitor.shutdown().await;
    }

    #[tokio::test]
    async fn https_with_verification_on_refuses_a_self_signed_certificate() {
        let server = http_server(Reply::Bytes(response("200 OK", b"")), Some(tls_acceptor())).await;
        let (mut monitor, _rx) = monitor();
        let result = once(&mut monitor, &check(https(server.port, true))).await;
        assert!(!result.ok);
        assert!(result.reason.starts_with(&format!("TLS handshake with 127.0.0.1:{}: ", server.port)), "{result:?}");
        assert!(result.reason.contains("certificate"), "{result:?}");
    }

    #[tokio::test]
    async fn https_sends_sni_when_configured() {
        let mut server = http_server(Reply::Bytes(response("200 OK", b"")), Some(tls_acceptor())).await;
        let (mut monitor, _rx) = monitor();
        let mut c = check(CheckKind::Https {
            http: http(server.port, BodyMatch::Any),
            tls: Tls { sni: Some(String::from("localhost")), verify: false },
        });
        assert!(once(&mut monitor, &c).await.ok);
        assert!(server.requests.recv().await.unwrap().contains(&format!("Host: 127.0.0.1:{}\r\n", server.port)));
        c.kind = CheckKind::Https {
            http: http(server.port, BodyMatch::Any),
            tls: Tls { sni: Some(String::from("bad name!")), verify: false },
        };
        let err = monitor.probe_once(LOCALHOST, &c).await.unwrap_err();
        assert_eq!(err.to_string(), "TLS server name \"bad name!\" is not a valid DNS name or address");
    }

    #[test]
    fn the_request_names_the_virtual_host_and_refuses_injection() {
        let mut check = http(80, BodyMatch::Any);
        let probe = HttpProbe::new(LOCALHOST, &check, None, 1024).unwrap();
        assert!(std::str::from_utf8(&probe.request).unwrap().contains("\r\nHost: 127.0.0.1\r\n"));
        check.host = Some(String::from("www.example.com"));
        let probe = HttpProbe::new(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), &check, None, 1024).unwrap();
        assert!(std::str::from_utf8(&probe.request).unwrap().contains("\r\nHost: www.example.com\r\n"));
        check.host = None;
        let probe = HttpProbe::new(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), &check, None, 1024).unwrap();
        assert!(std::str::from_utf8(&probe.request).unwrap().contains("\r\nHost: [::1]\r\n"));
        check.path = String::from("/x HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET /");
        assert!(matches!(HttpProbe::new(LOCALHOST, &check, None, 1024), Err(HealthError::InvalidRequest { .. })));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 404"), Ok(404));
        assert!(parse_status_line(b"HTTP/1.1 20 OK").is_err());
        assert!(parse_status_line(b"ICY 200 OK").is_err());
        assert_eq!(show_size(1 << 20), "1 MiB");
        assert_eq!(show_size(64 * 1024), "64 KiB");
        assert_eq!(show_size(1000), "1000 bytes");
    }
}
