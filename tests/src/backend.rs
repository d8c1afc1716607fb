//! Backends for the agent's end-to-end tests: an HTTP server on port 80 of
//! every address of a backend's namespace (the VIP on `lo` for clients, its
//! own address for the health check) that answers with its name, and keeps a
//! `HOLD` connection open, echoing lines; and the client's HTTP request.

use std::{
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{lab, netns::Netns};

/// The port every backend serves.
pub const PORT: u16 = 80;
/// Per connection attempt, and per read or write, of a client request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A server on 0.0.0.0:80 in a backend's namespace, so it answers on the
/// VIP (on lo) and on the backend's own address (the health check's
/// target). A connection that starts with `GET` gets an HTTP response whose
/// body is the server's name; one that starts with `HOLD` gets the name on
/// a line, then every line it sends echoed back until it closes. Each
/// connection has a thread of its own. Stopping closes the listener, so new
/// connections are refused while established ones go on.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

/// No server outlives a test by much, even one nobody stops.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

impl Server {
    pub fn start(ns: &Netns, name: &str) -> anyhow::Result<Self> {
        let listener = ns.run_in(|| {
            let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).context("binding 0.0.0.0:80")?;
            l.set_nonblocking(true)?;
            Ok(l)
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let name = name.to_owned();
        let thread = thread::Builder::new()
            .name(format!("serve-{name}"))
            .spawn(move || accept_loop(&listener, &name, &flag))
            .context("spawning a server thread")?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, name: &str, stop: &AtomicBool) {
    let deadline = Instant::now() + SERVER_LIFETIME;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        // Sleep until a connection comes, waking often enough to see `stop`.
        let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, and the count says one.
        unsafe { libc::poll(&mut pfd, 1, 20) };
        while let Ok((conn, _)) = listener.accept() {
            let name = name.to_owned();
            let _ = thread::Builder::new().name(format!("conn-{name}")).spawn(move || {
                let _ = serve_one(conn, &name);
            });
        }
    }
}

fn serve_one(conn: TcpStream, name: &str) -> io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.starts_with("GET ") {
        // The rest of the request head, up to its empty line.
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
        }
        let body = format!("{name}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        writer.write_all(response.as_bytes())?;
    } else if line.starts_with("HOLD") {
        writer.write_all(format!("{name}\n").as_bytes())?;
        reader.get_ref().set_read_timeout(Some(SERVER_LIFETIME))?;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            writer.write_all(line.as_bytes())?;
        }
    }
    Ok(())
}

/// One HTTP request from `local` to `remote`; the response's body, trimmed.
/// Call it on a thread inside the client's namespace.
pub fn http_get(local: SocketAddr, remote: SocketAddr) -> io::Result<String> {
    let mut s = lab::connect_from(local, remote, CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {}\r\n\r\n", remote.ip()).as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => Ok(body.trim().to_owned()),
        _ => Err(io::Error::other(format!("not an HTTP 200 response: {answer:?}"))),
    }
}

/// A `HOLD` connection to a [`Server`]: the server answers with its name,
/// then echoes every line.
#[derive(Debug)]
pub struct Held {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Held {
    /// Sends `HOLD` on `stream` (connected, timeouts set): the server's name
    /// and the connection.
    pub fn open(stream: TcpStream) -> anyhow::Result<(String, Self)> {
        let mut held = Self { reader: BufReader::new(stream.try_clone()?), writer: stream };
        let name = held.exchange("HOLD")?;
        Ok((name, held))
    }

    /// Sends a line, returns the line that comes back (trimmed).
    pub fn exchange(&mut self, line: &str) -> anyhow::Result<String> {
        self.writer.write_all(format!("{line}\n").as_bytes()).context("sending on the held connection")?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer).context("reading on the held connection")?;
        anyhow::ensure!(answer.ends_with('\n'), "the held connection was closed (read {answer:?})");
        Ok(answer.trim().to_owned())
    }

    pub fn echo(&mut self, line: &str) -> anyhow::Result<()> {
        let answer = self.exchange(line)?;
        anyhow::ensure!(answer == line, "the held connection echoed {answer:?} for {line:?}");
        Ok(())
    }
}
