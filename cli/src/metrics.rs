//! `listen --metrics ADDR`: the node's statistics as Prometheus text over HTTP.
//!
//! The Prometheus recorder of `metrics-exporter-prometheus` formats; the listener is ours,
//! because the exporter's own HTTP listener cannot say which port it bound, and port 0 (what
//! tests and ad-hoc runs use) needs that. Serving is tiny: one `GET` per connection, answered
//! with the whole text and closed. Each scrape first has the node record its statistics, so
//! what is served is exact, not up to an interval old.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use networkio::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Largest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most scrapes served at once; more wait to be accepted.
const MAX_CLIENTS: usize = 16;
/// Wait after a failed accept, doubling up to the maximum.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Installs the Prometheus recorder, binds `addr` and serves scrapes in the background for as
/// long as the runtime runs. Returns the bound address (with the port the OS picked for 0).
pub(crate) async fn serve(addr: &str, node: Node) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not serve metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("could not install the metrics recorder")?;
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
    tokio::spawn(async move {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            // Bounded: a flood of scrapers waits here instead of growing tasks.
            let Ok(permit) = clients.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    stream
                }
                Err(e) => {
                    // Out of file descriptors, typically: retrying at once would spin.
                    tracing::debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            let (handle, node) = (handle.clone(), node.clone());
            tokio::spawn(async move {
                let answer = tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, &handle, &node));
                if let Ok(Err(e)) = answer.await {
                    tracing::debug!(error = %e, "metrics request failed");
                }
                drop(permit);
            });
        }
    });
    Ok(bound)
}

/// Reads one request head and answers it: `GET /metrics` (or `/`) with the text, anything else
/// with 404 or 405.
async fn answer(
    mut stream: TcpStream,
    handle: &PrometheusHandle,
    node: &Node,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST {
            return respond(&mut stream, "431 Request Header Fields Too Large", "").await;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics" | b"/")) => {
            node.publish_metrics();
            handle.run_upkeep();
            respond(&mut stream, "200 OK", &handle.render()).await
        }
        (Some(b"GET"), _) => respond(&mut stream, "404 Not Found", "").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
