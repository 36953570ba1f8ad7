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
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // Out of descriptors (EMFILE) stays so until connections close: back
                // off rather than spin on the error.
                tracing::warn!(error = %e, "metrics endpoint: cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Limits no test can reach, so no outcome depends on how fast the machine is.
    const PATIENT: Limits = Limits {
        header: Duration::from_secs(3600),
        counters: Duration::from_secs(3600),
        exchange: Duration::from_secs(3600),
    };

    /// Serves `metrics` on a free port of 127.0.0.1 with `limits`; the port.
    async fn start(
        metrics: Arc<Metrics>,
        sync: Option<std::sync::mpsc::Sender<Stamped>>,
        limits: Limits,
    ) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let liveness = Duration::from_secs(3600);
        tokio::spawn(serve_with(listener, metrics, liveness, sync, limits));
        port
    }

    /// Sends `request` as is and reads the answer until the server closes.
    async fn exchange(port: u16, request: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    async fn get(port: u16, path: &str) -> String {
        exchange(port, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await
    }

    /// Status line, then the body after the blank line.
    fn split(answer: &str) -> (&str, &str, &str) {
        let (head, body) = answer.split_once("\r\n\r\n").expect("a complete head");
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status, headers, body)
    }

    fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
        headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn routes_answer_with_their_status_type_and_body() {
        let port = start(Arc::new(Metrics::default()), None, PATIENT).await;

        let answer = get(port, "/healthz").await;
        let (status, headers, body) = split(&answer);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(header(headers, "content-type"), Some("text/plain"));
        assert_eq!(header(headers, "content-length"), Some("3"));
        assert_eq!(header(headers, "connection"), Some("close"));
        assert_eq!(body, "ok\n");

        let answer = get(port, "/readyz").await;
        let (status, _, body) = split(&answer);
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(body, "waiting for the first full sync\n");

        let answer = get(port, "/metrics").await;
        let (status, headers, body) = split(&answer);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            header(headers, "content-type"),
            Some("text/plain; version=0.0.4")
        );
        assert!(
            body.contains("\nnftpol_conntrack_entries_cut_total 0\n"),
            "{body}"
        );

        let answer = get(port, "/nope").await;
        let (status, headers, body) = split(&answer);
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert_eq!(header(headers, "content-type"), Some("text/plain"));
        assert_eq!(body, "not found\n");
    }

    #[tokio::test]
    async fn head_answers_without_a_body_and_other_methods_get_405() {
        let port = start(Arc::new(Metrics::default()), None, PATIENT).await;

        let answer = exchange(port, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (status, headers, body) = split(&answer);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(header(headers, "content-length"), Some("3"));
        assert_eq!(body, "");

        let post = "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
        let answer = exchange(port, post).await;
        let (status, headers, body) = split(&answer);
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(header(headers, "allow"), Some("GET, HEAD"));
        assert_eq!(body, "method not allowed\n");

        let answer = exchange(port, "DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(split(&answer).0, "HTTP/1.1 405 Method Not Allowed");

        // No such resource, whatever the method.
        let answer = exchange(port, "POST /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(split(&answer).0, "HTTP/1.1 404 Not Found");
    }

    /// The sync loop is asked to read the counters, and the page shows what it read.
    #[tokio::test]
    async fn metrics_reads_the_counters_before_rendering() {
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = std::sync::mpsc::channel::<Stamped>();
        let loop_metrics = metrics.clone();
        let sync_loop = std::thread::spawn(move || match rx.recv().unwrap().msg {
            Msg::ReadCounters(done) => {
                loop_metrics.conntrack_cut(7);
                done.send(()).unwrap();
            }
            other => panic!("expected ReadCounters, got {other:?}"),
        });
        let port = start(metrics, Some(tx), PATIENT).await;

        let answer = get(port, "/metrics").await;
        let body = split(&answer).2;
        assert!(
            body.contains("\nnftpol_conntrack_entries_cut_total 7\n"),
            "{body}"
        );
        sync_loop.join().unwrap();
    }

    /// A client that connects and sends nothing has its own task: another client is
    /// answered in full while the first is still connected and unanswered.
    #[tokio::test]
    async fn a_silent_client_does_not_hold_up_another() {
        // A server that took connections one at a time would close the silent one at
        // this limit and only then answer the other: the test fails then, at the
        // `silent.read` arm, instead of hanging. No working server gets near it.
        let limits = Limits {
            header: Duration::from_secs(60),
            ..PATIENT
        };
        let port = start(Arc::new(Metrics::default()), None, limits).await;
        // Connected first, so accepted first.
        let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();

        let mut byte = [0u8; 1];
        tokio::select! {
            biased;
            read = silent.read(&mut byte) => {
                panic!("the silent client was answered or closed first: {read:?}");
            }
            answer = get(port, "/healthz") => {
                let (status, _, body) = split(&answer);
                assert_eq!((status, body), ("HTTP/1.1 200 OK", "ok\n"));
            }
        }
        // Still open: nothing to read, and no end of stream.
        match silent.try_read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the silent client's connection changed: {other:?}"),
        }
    }
}
