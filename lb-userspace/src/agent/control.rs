//! The control socket: a Unix stream socket (root only, mode 0600) that
//! takes one JSON request per line and answers with one JSON line. `lb
//! status`, `lb drain`, `lb weight` and `lb reload` are its clients.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::IpAddr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    net::UnixListener,
    sync::{mpsc, oneshot},
};

use super::status::StatusReport;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Socket { path: PathBuf, source: std::io::Error },
    #[error("cannot reach the agent at {path}: {source} (is `lb run` running?)")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("talking to the agent at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the agent's answer is not understood: {source}")]
    Decode { source: serde_json::Error },
    #[error("{message}")]
    Refused { message: String },
}

/// What a client may ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// No new flows for the backend; established flows stay.
    Drain {
        vip: String,
        backend: IpAddr,
    },
    Undrain {
        vip: String,
        backend: IpAddr,
    },
    /// Overrides the configured weight until the next reload or restart.
    Weight {
        vip: String,
        backend: IpAddr,
        weight: u32,
    },
    /// Re-read the configuration file; a bad file leaves the old one serving.
    Reload,
    /// Exit leaving the fast path pinned and forwarding, VRRP's addresses
    /// in place and no priority 0 sent, for the next agent to adopt.
    Restart,
    /// Withdraw every VIP from BGP, wait until the flows have moved away
    /// (or `timeout_ms`), then stop cleanly; answered when done.
    DrainDirector {
        timeout_ms: u64,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
}

impl Response {
    pub fn ok(message: impl Into<String>) -> Self {
        Self { ok: true, message: Some(message.into()), ..Self::default() }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self { ok: false, error: Some(message.into()), ..Self::default() }
    }
}

/// A request on its way to the agent's loop, with where to send the answer.
#[derive(Debug)]
pub struct Command {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Longest request line accepted; a status request is a few bytes.
const MAX_REQUEST: usize = 64 * 1024;

/// Binds the socket (replacing a stale one), root-only, and serves it until
/// the returned task is dropped or aborted.
pub fn serve(path: &Path, commands: mpsc::Sender<Command>) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let err = |source| ControlError::Socket { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let commands = commands.clone();
            // One task per client so a slow client never holds up the agent.
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                // A cap on everything a client sends: requests are tiny, and an
                // endless line must not grow a buffer without bound.
                let mut lines = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64)).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let response = match serde_json::from_str::<Request>(&line) {
                        Ok(request) => {
                            let (tx, rx) = oneshot::channel();
                            if commands.send(Command { request, reply: tx }).await.is_err() {
                                Response::error("the agent is shutting down")
                            } else {
                                rx.await.unwrap_or_else(|_| Response::error("the agent dropped the request"))
                            }
                        }
                        Err(e) => Response::error(format!("bad request: {e}")),
                    };
                    let mut text = serde_json::to_string(&response).unwrap_or_default();
                    text.push('\n');
                    if write.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }))
}

/// Sends one request and waits (bounded) for the answer. Blocking: for the
/// `lb` command line.
pub fn request(path: &Path, request: &Request) -> Result<Response, ControlError> {
    request_within(path, request, Duration::from_secs(30))
}

/// [`request`], waiting up to `wait` for the answer: for a command that
/// answers when it is done, such as `drain_director`.
pub fn request_within(path: &Path, request: &Request, wait: Duration) -> Result<Response, ControlError> {
    let io = |source| ControlError::Io { path: path.to_owned(), source };
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|source| ControlError::Connect { path: path.to_owned(), source })?;
    stream.set_read_timeout(Some(wait)).map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(|source| ControlError::Decode { source })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    let response: Response = serde_json::from_str(&answer).map_err(|source| ControlError::Decode { source })?;
    if !response.ok {
        return Err(ControlError::Refused { message: response.error.unwrap_or_else(|| "refused".to_owned()) });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json_lines() {
        let r = Request::Weight { vip: "10.0.0.100:80/tcp".into(), backend: "10.0.0.11".parse().unwrap(), weight: 3 };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"cmd":"weight","vip":"10.0.0.100:80/tcp","backend":"10.0.0.11","weight":3}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        assert_eq!(serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(), Request::Status);
    }

    #[tokio::test]
    async fn serves_requests_over_the_socket() {
        let dir = std::env::temp_dir().join(format!("lb-control-test-{}", std::process::id()));
        let path = dir.join("lb.sock");
        let (tx, mut rx) = mpsc::channel(4);
        let server = serve(&path, tx).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "root only");
        let agent = tokio::spawn(async move {
            let cmd: Command = rx.recv().await.unwrap();
            assert_eq!(cmd.request, Request::Reload);
            let _ = cmd.reply.send(Response::error("line 3: bad"));
        });
        let client_path = path.clone();
        let answer = tokio::task::spawn_blocking(move || request(&client_path, &Request::Reload)).await.unwrap();
        assert!(matches!(answer, Err(ControlError::Refused { message }) if message == "line 3: bad"));
        agent.await.unwrap();
        server.abort();
        let _ = std::fs::remove_dir_all(dir);
    }
}
