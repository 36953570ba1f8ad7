//! Traffic for the data-path benchmark: a TCP server that accepts and closes, and
//! clients that connect and close as fast as they can for a fixed window, one thread per
//! client pod, each with its sockets made inside its pod's namespace. Clients close with
//! `SO_LINGER 0` (a reset): no TIME_WAIT, so ephemeral ports never run out however many
//! windows run. Every loop is bounded by the window or a timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

use crate::netns;

/// A listening server; stops when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Serves `addr` in namespace `ns`: accepts every connection and closes it at once.
pub fn serve(ns: &str, addr: SocketAddr) -> Result<Server> {
    let sock = {
        let _in = netns::enter(ns)?;
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.bind(&addr.into())
            .with_context(|| format!("binding {addr} in {ns}"))?;
        s.listen(4096)?;
        // accept() returns every 100 ms, so the thread notices `stop`.
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        s
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("bench server".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Ok((conn, _)) = sock.accept() {
                    drop(conn);
                }
            }
        })
        .context("starting the server thread")?;
    Ok(Server {
        stop,
        thread: Some(thread),
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Makes a client socket in the calling thread's namespace.
fn client_socket() -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_linger(Some(Duration::ZERO))?;
    Ok(s)
}

/// One connection attempt from namespace `ns`: whether it completed within `timeout`.
pub fn probe(ns: &str, dst: SocketAddr, timeout: Duration) -> Result<bool> {
    let s = {
        let _in = netns::enter(ns)?;
        client_socket()?
    };
    Ok(s.connect_timeout(&dst.into(), timeout).is_ok())
}

/// What one window measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Connections completed (handshake done) in the window.
    pub connections: u64,
    /// Attempts that failed or timed out.
    pub failures: u64,
    pub seconds: f64,
}

impl Window {
    pub fn rate(&self) -> f64 {
        self.connections as f64 / self.seconds
    }
}

/// Every client namespace connects to `dst` and closes, as fast as it can, for `seconds`.
pub fn run_window(clients: &[&str], dst: SocketAddr, seconds: f64) -> Result<Window> {
    // Threads enter their namespaces first; the window starts for all at once.
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(seconds);
    let results: Vec<Result<(u64, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter()
            .map(|ns| {
                scope.spawn(move || -> Result<(u64, u64)> {
                    let _in = netns::enter(ns)?;
                    std::thread::sleep(start.saturating_duration_since(Instant::now()));
                    let (mut ok, mut failed) = (0u64, 0u64);
                    loop {
                        let left = end.saturating_duration_since(Instant::now());
                        if left < Duration::from_millis(1) {
                            break;
                        }
                        let s = client_socket()?;
                        // A lost SYN would otherwise wait for retransmissions past the end.
                        match s.connect_timeout(&dst.into(), left.min(Duration::from_secs(1))) {
                            Ok(()) if Instant::now() <= end => ok += 1,
                            Ok(()) => {}
                            Err(_) => failed += 1,
                        }
                    }
                    Ok((ok, failed))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut w = Window {
        seconds,
        ..Window::default()
    };
    for r in results {
        let (ok, failed) = r?;
        w.connections += ok;
        w.failures += failed;
    }
    Ok(w)
}
