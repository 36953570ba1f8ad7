//! `/healthz`, `/readyz` and `/metrics` over plain HTTP/1.1. Small on purpose: three
//! fixed GET routes need no framework.
//!
//! `/healthz` fails when the sync loop has shown no life for `liveness` (a stuck thread,
//! a netlink socket that never answers), so the kubelet restarts the pod; `/readyz`
//! fails until the first full sync and while kernel batches keep failing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::metrics::Metrics;
use super::sync::{Msg, Stamped};

/// How long a scrape waits for the sync loop to read the traffic counters (it may be in
/// the middle of a batch); past it the page shows the totals of the last read.
const COUNTERS_WAIT: Duration = Duration::from_secs(2);

/// Asks the sync loop to read the traffic counters, and waits for it (at most
/// [`COUNTERS_WAIT`]).
async fn read_counters(sync: &std::sync::mpsc::Sender<Stamped>) {
    let (done, read) = tokio::sync::oneshot::channel();
    if sync.send(Stamped::now(Msg::ReadCounters(done))).is_ok() {
        let _ = tokio::time::timeout(COUNTERS_WAIT, read).await;
    }
}

/// `sync`: the sync loop's channel, asked to read the traffic counters at each scrape
/// of `/metrics` (none in tests that serve metrics alone).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    liveness: Duration,
    sync: Option<std::sync::mpsc::Sender<Stamped>>,
) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let sync = sync.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            if let (Some(sync), "/metrics") = (&sync, path) {
                read_counters(sync).await;
            }
            let (status, ctype, body) = match path {
                "/healthz" => match metrics.since_beat() {
                    quiet if quiet > liveness => (
                        "503 Service Unavailable",
                        "text/plain",
                        format!(
                            "the sync loop has made no progress for {} s\n",
                            quiet.as_secs()
                        ),
                    ),
                    _ => ("200 OK", "text/plain", "ok\n".to_string()),
                },
                "/readyz" if metrics.ready() => ("200 OK", "text/plain", "ready\n".to_string()),
                "/readyz" => (
                    "503 Service Unavailable",
                    "text/plain",
                    metrics.not_ready_reason().to_string(),
                ),
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// The endpoint's listener: `given` (bound by the caller) if any, else `addr` bound.
pub async fn bind(
    addr: SocketAddr,
    given: Option<&std::net::TcpListener>,
) -> std::io::Result<TcpListener> {
    match given {
        Some(l) => {
            // A handle of our own: the caller's stays valid, the socket is the same.
            let l = l.try_clone()?;
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        }
        None => TcpListener::bind(addr).await,
    }
}
