//! The routes and the listener, over a fixed snapshot and counters.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use lb_common::{Counters, Stat};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::watch,
};

use super::{CounterSource, Listener, Shared, WebError, metrics, router};

/// Counters from a table: `vips` by index, `backends` by id.
#[derive(Default)]
pub(crate) struct Fixed {
    pub stats: HashMap<u32, u64>,
    pub vips: HashMap<u32, Counters>,
    pub backends: HashMap<u32, Counters>,
    pub flows: HashMap<u32, u64>,
}

impl CounterSource for Fixed {
    fn stat(&self, stat: Stat) -> Result<Counters, WebError> {
        Ok(Counters { packets: self.stats.get(&(stat as u32)).copied().unwrap_or(0), bytes: 0 })
    }

    fn vip(&self, index: u32) -> Result<Counters, WebError> {
        Ok(self.vips.get(&index).copied().unwrap_or_default())
    }

    fn backend(&self, id: u32) -> Result<Counters, WebError> {
        Ok(self.backends.get(&id).copied().unwrap_or_default())
    }

    fn flow_counts(&self) -> Result<HashMap<u32, u64>, WebError> {
        Ok(self.flows.clone())
    }
}

fn shared() -> Shared {
    let (snapshot, fixed, _) = metrics::tests::scrape();
    let (_tx, rx) = watch::channel(snapshot);
    let histogram = prometheus_client::metrics::histogram::Histogram::new([0.001]);
    Shared::new(rx, Arc::new(fixed), None, histogram)
}

/// One HTTP/1.0 request: status code, lower-cased headers, body.
async fn get(addr: SocketAddr, path: &str, accept: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nAccept: {accept}\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn routes() {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(socket, router(shared())).await });
    let (code, head, body) = get(addr, "/metrics", "*/*").await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
    assert!(body.contains("lb_packets_total{reason=\"tx\"} 15\n"), "{body}");
    let (code, head, body) = get(addr, "/metrics", "application/openmetrics-text; version=1.0.0").await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"), "{head}");
    assert!(body.ends_with("# EOF\n"));
    let (code, head, body) = get(addr, "/status.json", "*/*").await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let report: crate::agent::status::StatusReport = serde_json::from_str(&body).unwrap();
    assert_eq!((report.vips.len(), report.flows), (2, 3));
    assert_eq!(get(addr, "/assets/no-such-file", "*/*").await.0, 404);
    assert_eq!(get(addr, "/nowhere", "*/*").await.0, 404);
    server.abort();
}

#[tokio::test]
async fn a_taken_address_is_refused_by_name_and_the_listener_stays() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Listener::start(Some(addr), &shared()).await.unwrap_err();
    assert!(e.to_string().starts_with(&format!("HTTP listener: cannot listen on {addr}: ")), "{e}");
    let mut off = Listener::start(None, &shared()).await.unwrap();
    assert!(off.rebind(Some(addr), &shared()).await.is_err());
    assert_eq!(off.addr(), None, "a refused address leaves the listener where it was");
}
