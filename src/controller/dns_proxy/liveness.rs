//! The proxy's liveness in the kernel: the steering rules send DNS to the proxy only
//! while the liveness set holds the DNS port, and this loop keeps it there, each
//! refresh with a short timeout. When the controller stops (or this loop stalls), the
//! element expires and the pods' DNS goes straight to its server: DNS fails open, only
//! learning stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::netlink::Backend;

/// Where and how often.
#[derive(Debug, Clone)]
pub struct Liveness {
    pub table: String,
    pub set: String,
    /// The element: the DNS port the steering rules match (53).
    pub port: u16,
    /// How long one refresh holds (a few refresh periods).
    pub timeout: Duration,
    pub every: Duration,
}

impl Default for Liveness {
    /// 53 held for 3 s, refreshed every second: DNS fails open within 3 s of a stop.
    fn default() -> Liveness {
        Liveness {
            table: "nftpol".into(),
            set: "dns/alive".into(),
            port: 53,
            timeout: Duration::from_secs(3),
            every: Duration::from_secs(1),
        }
    }
}

/// Refreshes the element until the task is dropped. A failed refresh is logged and
/// retried at the next period (the element may expire meanwhile: DNS then bypasses the
/// proxy, which is the safe direction).
pub async fn keep_alive(backend: Backend, l: Liveness) {
    let backend = Arc::new(Mutex::new(backend));
    let mut tick = tokio::time::interval(l.every);
    loop {
        tick.tick().await;
        refresh(&backend, &l).await;
    }
}

/// [`keep_alive`] while `active` holds (the node has `domainNames` rules, so the
/// liveness set exists) and `ready` does (every listener a steered query may need is
/// open), refreshing at once when `now` is notified (rules appeared, or the table was
/// replaced): the controller's form.
pub async fn keep_alive_while(
    backend: Backend,
    l: Liveness,
    active: tokio::sync::watch::Receiver<bool>,
    ready: Arc<AtomicBool>,
    now: Arc<tokio::sync::Notify>,
) {
    let backend = Arc::new(Mutex::new(backend));
    loop {
        if *active.borrow() && ready.load(Ordering::SeqCst) {
            refresh(&backend, &l).await;
        }
        // Whichever first: the period, or a wake-up.
        let _ = tokio::time::timeout(l.every, now.notified()).await;
    }
}

/// One refresh, off the runtime's threads (a netlink round trip blocks).
async fn refresh(backend: &Arc<Mutex<Backend>>, l: &Liveness) {
    let (b, l2) = (backend.clone(), l.clone());
    let done = tokio::task::spawn_blocking(move || {
        b.lock()
            .expect("liveness backend")
            .keep_alive(&l2.table, &l2.set, l2.port, l2.timeout)
    })
    .await;
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::Chain(&e), set = %l.set, "DNS proxy liveness not refreshed")
        }
        Err(e) => {
            tracing::warn!(error = %crate::error::Chain(&e), "DNS proxy liveness task failed")
        }
    }
}
