//! `/healthz`, `/readyz` and `/metrics` over HTTP/1.1, served by hyper: parsing requests,
//! framing answers and bounding what a client may send are hyper's (already in the build
//! for kube's client), so this module only routes three paths.
//!
//! `/healthz` fails when the sync loop has shown no life for `liveness` (a stuck thread,
//! a netlink socket that never answers), so the kubelet restarts the pod; `/readyz`
//! fails until the first full sync and while kernel batches keep failing.
//!
//! GET is answered, and HEAD the same without the body (as HTTP asks of every GET
//! resource); another method on one of the three paths gets 405 (`Allow: GET, HEAD`),
//! any other path 404. One request per connection (`Connection: close`, as probes and
//! scrapers expect nothing more), each connection its own task with its own deadlines,
//! so a client that sends nothing or never reads holds its socket only, and not for long.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::metrics::Metrics;
use super::sync::{Msg, Stamped};

/// How long the endpoint waits on the sync loop and on clients.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// For a client to send its request line and headers, from when it connects.
    header: Duration,
    /// For the sync loop to read the traffic counters at a scrape (it may be in the middle
    /// of a batch); past it the page shows the totals of the last read.
    counters: Duration,
    /// For a whole connection, request to last byte of the answer: a client that sent its
    /// request but never reads a long page is cut off too.
    exchange: Duration,
}

const LIMITS: Limits = Limits {
    header: Duration::from_secs(5),
    counters: Duration::from_secs(2),
    exchange: Duration::from_secs(30),
};

const PLAIN: &str = "text/plain";
/// The Prometheus text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4";

/// What every connection's service shares.
struct Endpoint {
    metrics: Arc<Metrics>,
    liveness: Duration,
    sync: Option<std::sync::mpsc::Sender<Stamped>>,
    counters: Duration,
}

impl Endpoint {
    /// The answer to `method` on `path` (the request target's path; a query is ignored).
    async fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
            return text(StatusCode::NOT_FOUND, PLAIN, "not found\n");
        }
        if method != Method::GET && method != Method::HEAD {
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                PLAIN,
                "method not allowed\n",
            );
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        match path {
            "/healthz" => match self.metrics.since_beat() {
                quiet if quiet > self.liveness => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    format!(
                        "the sync loop has made no progress for {} s\n",
                        quiet.as_secs()
                    ),
                ),
                _ => text(StatusCode::OK, PLAIN, "ok\n"),
            },
            "/readyz" if self.metrics.ready() => text(StatusCode::OK, PLAIN, "ready\n"),
            "/readyz" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN,
                self.metrics.not_ready_reason(),
            ),
            _ => {
                if let Some(sync) = &self.sync {
                    read_counters(sync, self.counters).await;
                }
                text(StatusCode::OK, PROMETHEUS, self.metrics.render())
            }
        }
    }
}

/// Asks the sync loop to read the traffic counters, and waits for it (at most `wait`).
async fn read_counters(sync: &std::sync::mpsc::Sender<Stamped>, wait: Duration) {
    let (done, read) = tokio::sync::oneshot::channel();
    if sync.send(Stamped::now(Msg::ReadCounters(done))).is_ok() {
        let _ = tokio::time::timeout(wait, read).await;
    }
}

/// An answer of `status` with `body` as `ctype` (hyper adds its `Content-Length`).
fn text(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

/// `sync`: the sync loop's channel, asked to read the traffic counters at each scrape
/// of `/metrics` (none in tests that serve metrics alone).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    liveness: Duration,
    sync: Option<std::sync::mpsc::Sender<Stamped>>,
) {
    serve_with(listener, metrics, liveness, sync, LIMITS).await
}

async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    liveness: Duration,
    sync: Option<std::sync::mpsc::Sender<Stamped>>,
    limits: Limits,
) {
    let endpoint = Arc::new(Endpoint {
        metrics,
        liveness,
        sync,
        counters: limits.counters,
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .keep_alive(false)
        // A client that shuts down its side once it has sent the request still gets
        // the answer.
        .half_close(true);
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let endpoint = endpoint.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let endpoint = endpoint.clone();
            async move {
                let resp = endpoint.answer(req.method(), req.uri().path()).await;
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = http.serve_connection(TokioIo::new(sock), service);
        tokio::spawn(async move {
            // Dropped at the deadline, the connection closes its socket.
            match tokio::time::timeout(limits.exchange, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "health endpoint: connection failed"),
                Err(_) => tracing::debug!(
                    limit_s = limits.exchange.as_secs(),
                    "health endpoint: connection closed, over its time limit"
                ),
            }
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

