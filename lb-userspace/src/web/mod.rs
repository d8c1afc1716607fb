//! The agent's HTTP listener (`[global] metrics`): `GET /metrics` (the
//! Prometheus exposition), `GET /status.json` (what `lb status --json`
//! prints) and the status page (`GET /`, `GET /assets/NAME`).
//!
//! It never waits for the agent's loop: the loop publishes a [`Snapshot`]
//! of what changes slowly after each change ([`Publisher`]), and a request
//! reads the counters it needs from the maps itself, on a blocking thread,
//! through its own handles ([`CounterMaps`]).
//!
//! Layers, bottom-up: `page`, `counters`, `snapshot`, `metrics`, `publish`,
//! then this file (routes and the listener).

pub mod counters;
pub mod metrics;
pub mod page;
pub mod publish;
pub mod snapshot;
#[cfg(test)]
mod tests;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::watch;
use tracing::{error, info, warn};

pub use counters::{CounterMaps, CounterSource};
pub use publish::Publisher;
pub use snapshot::Snapshot;

use crate::{health::StatusBoard, task::AbortOnDrop};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("HTTP listener: cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: Box<aya::maps::MapError> },
    #[error("map {name}: sharing its descriptor: {source}")]
    Share { name: &'static str, source: std::io::Error },
    #[error("map {name} is missing from the eBPF object")]
    MissingMap { name: &'static str },
}

/// What every request reads.
#[derive(Clone)]
pub struct Shared {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    maps: Arc<dyn CounterSource>,
    board: Option<StatusBoard>,
    publish_seconds: Histogram,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// `snapshots` from a [`Publisher`], whose `publish_seconds` it shows;
    /// the counters from `maps`; the last checks from `board`.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        maps: Arc<dyn CounterSource>,
        board: Option<StatusBoard>,
        publish_seconds: Histogram,
    ) -> Self {
        Self { snapshots, maps, board, publish_seconds }
    }

    /// What `lb status --json` and `/status.json` show: the latest
    /// snapshot with its counters and flow tables read now. Blocks on map
    /// reads: call it off the runtime's workers.
    pub fn status_report(&self) -> Result<crate::agent::status::StatusReport, WebError> {
        Ok(self.live(true)?.1.report)
    }

    /// The latest snapshot with its counters read now.
    fn live(&self, with_flows: bool) -> Result<(Arc<Snapshot>, snapshot::Live), WebError> {
        let snap = Arc::clone(&self.snapshots.borrow());
        let live = snapshot::read(&snap, &*self.maps, self.board.as_ref(), with_flows)?;
        Ok((snap, live))
    }
}

/// The routes over `shared`.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status.json", get(status))
        .route("/", get(page))
        .route("/assets/{*file}", get(page))
        .with_state(shared)
}

/// Runs `f` on a blocking thread: the maps are read by system calls, one per
/// entry, which must not hold up a runtime worker.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, Response> {
    let failed = |e: String| {
        error!("HTTP listener: {e}");
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
    };
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(e)),
        Err(e) => Err(failed(e.to_string())),
    }
}

async fn metrics(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = blocking(move || {
        let (snapshot, live) = shared.live(false).map_err(|e| e.to_string())?;
        let scrape = metrics::Scrape { snapshot, live, publish_seconds: shared.publish_seconds.clone() };
        scrape.encode(openmetrics).map_err(|_| "encoding the metrics failed".to_owned())
    })
    .await;
    match body {
        Ok(body) => {
            let kind = if openmetrics { metrics::OPENMETRICS } else { metrics::PROMETHEUS_TEXT };
            ([(header::CONTENT_TYPE, kind)], body).into_response()
        }
        Err(r) => r,
    }
}

async fn status(State(shared): State<Shared>) -> Response {
    let body = blocking(move || {
        let (_, live) = shared.live(true).map_err(|e| e.to_string())?;
        serde_json::to_vec(&live.report).map_err(|e| e.to_string())
    })
    .await;
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(r) => r,
    }
}

async fn page(uri: Uri) -> Response {
    match page::asset(uri.path()) {
        Some(a) => ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// The listener, on the address the configuration names (or none).
#[derive(Debug, Default)]
pub struct Listener {
    addr: Option<SocketAddr>,
    task: Option<AbortOnDrop>,
}

impl Listener {
    /// Listens on `addr` (nothing for `None`) and serves `shared`. An
    /// address it cannot bind is an error that names it.
    pub async fn start(addr: Option<SocketAddr>, shared: &Shared) -> Result<Self, WebError> {
        let mut listener = Self::default();
        listener.rebind(addr, shared).await?;
        Ok(listener)
    }

    /// The address it listens on.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Moves to `addr` if that is another address: the new one is bound
    /// before the old one closes, so a refused address leaves the listener
    /// where it was.
    pub async fn rebind(&mut self, addr: Option<SocketAddr>, shared: &Shared) -> Result<(), WebError> {
        if addr == self.addr && (addr.is_none() || self.task.is_some()) {
            return Ok(());
        }
        let Some(addr) = addr else {
            self.task = None;
            self.addr = None;
            info!("HTTP listener off");
            return Ok(());
        };
        let socket = tokio::net::TcpListener::bind(addr).await.map_err(|source| WebError::Bind { addr, source })?;
        let bound = socket.local_addr().unwrap_or(addr);
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(socket, app).await {
                error!("HTTP listener on {bound}: {e}");
            }
        });
        self.task = Some(AbortOnDrop(task));
        self.addr = Some(addr);
        if addr.ip().is_loopback() {
            info!(address = %bound, "HTTP listener: /metrics, /status.json, /");
        } else {
            warn!(address = %bound, "HTTP listener on a non-loopback address, reachable from the network: /metrics, /status.json, /");
        }
        Ok(())
    }
}
