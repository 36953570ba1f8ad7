//! The node's DNS proxy for ClusterNetworkPolicy `domainNames` rules: the pods' DNS
//! queries, steered here by the kernel (tproxy, keeping their original destination), are
//! forwarded to that destination; the answer is read, handed to a [`Learner`] (which puts
//! what it teaches into the kernel and completes when the kernel acknowledged it), and
//! only then returned to the pod. So a pod that connects as soon as its lookup returns
//! finds the address already allowed: there is no first-packet race.
//!
//! ```text
//! pod --query--> [tproxy] --> udp / tcp listener --forward--> original destination
//!                                                        <--answer--
//!                             exchange: parse (hickory-proto), check it answers the query,
//!                                       learner.learn(answer).await (bounded), stats
//! pod <--answer, byte for byte, from the original destination's address--
//! ```
//!
//! What is never done here: deciding what an answer allows (the learner's job, on
//! `crate::fqdn`), filtering DNS (an answer is always returned, learned or not: NPEP-133
//! forbids DNS filtering), or answering for the server (no cache, no synthesised
//! answers). A reply that does not parse, or does not answer the query it came back for,
//! is passed through unlearned; a learner that fails or is slow delays the answer by at
//! most [`ProxyConfig::learn_timeout`] and is counted as a failure.

mod exchange;
pub mod learner;
pub mod liveness;
pub mod stats;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hickory_proto::op::Message;

pub use stats::ProxyStats;

pub use tcp::TcpProxy;
pub use udp::UdpProxy;

/// Where a query is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Where the pod sent it: the tproxied socket's original destination. Production.
    Original,
    /// One server, whatever the query's destination: for tests on loopback, where there
    /// is no tproxy to keep one.
    Fixed(SocketAddr),
}

/// How steered queries reach a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// tproxy hands each query to the listener on the proxy's own port (pods attached by
    /// routes: ptp, routed veth; bridges without br_netfilter): a query addressed to
    /// that port was not steered, and forwarding it would send it back here.
    Tproxy,
    /// Pods on this bridge, which br_netfilter filters: there the kernel drops the socket
    /// tproxy assigned (`ip_rcv`), and the steered query, routed to this node by its
    /// mark, reaches the socket bound to the bridge on the query's own destination port.
    /// The answer leaves that socket from the query's destination (IP_PKTINFO): a second
    /// socket bound to that address would take the pod's next query meanwhile.
    Bridge(String),
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub destination: Destination,
    pub delivery: Delivery,
    /// Open the listeners transparent (IP_TRANSPARENT), receive UDP's original
    /// destination and answer from it. Needs CAP_NET_ADMIN and the tproxy rules.
    pub transparent: bool,
    /// How long the server has to answer one query; the pod's resolver retries after
    /// its own timeout (5 s in glibc) anyway.
    pub upstream_timeout: Duration,
    /// How long an answer waits for the learner before it is returned unlearned.
    pub learn_timeout: Duration,
    /// Queries (UDP) or connections (TCP) served at once per listener; past it a query is
    /// dropped (the pod's resolver retries) rather than memory growing without bound.
    pub max_in_flight: usize,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            destination: Destination::Original,
            delivery: Delivery::Tproxy,
            transparent: true,
            upstream_timeout: Duration::from_secs(5),
            learn_timeout: Duration::from_secs(2),
            max_in_flight: 4096,
        }
    }
}

/// Binds a UDP and a TCP listener on `addr` (both or neither) and serves each in a task
/// of its own, whose end is logged; aborting the handles closes them.
pub fn serve_both(
    addr: SocketAddr,
    config: ProxyConfig,
    learner: Arc<dyn Learner>,
    stats: Arc<ProxyStats>,
) -> std::io::Result<[tokio::task::JoinHandle<()>; 2]> {
    let delivery = config.delivery.clone();
    let udp = UdpProxy::bind(addr, config.clone(), learner.clone(), stats.clone())?;
    let tcp = TcpProxy::bind(addr, config, learner, stats)?;
    let end = move |proto: &'static str, run: std::io::Result<()>| {
        if let Err(e) = run {
            tracing::error!(proto, %addr, ?delivery, error = %crate::error::Chain(&e), "DNS proxy listener stopped");
        }
    };
    let (end_udp, end_tcp) = (end.clone(), end);
    Ok([
        tokio::spawn(async move { end_udp("udp", udp.run().await) }),
        tokio::spawn(async move { end_tcp("tcp", tcp.run().await) }),
    ])
}

/// One answer that parsed and answers its query, for the learner.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The pod's address and port.
    pub client: SocketAddr,
    /// Where the query went (and the answer came from).
    pub server: SocketAddr,
    pub answer: Message,
}

/// Why learning failed (logged and counted; the answer is returned anyway).
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("the kernel refused the learned addresses")]
    Kernel(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the sync loop is gone")]
    Gone,
}

/// What the proxy calls for each answer before returning it.
pub trait Learner: Send + Sync + 'static {
    /// Completes when what `lookup` teaches is in the kernel (or when it teaches
    /// nothing), with the number of addresses added or refreshed.
    fn learn(&self, lookup: Lookup) -> BoxFuture<'static, Result<usize, LearnError>>;
}

/// What the listeners share.
pub(crate) struct Shared {
    pub config: ProxyConfig,
    pub learner: Arc<dyn Learner>,
    pub stats: Arc<ProxyStats>,
    /// The port the listener is bound to.
    pub listen_port: u16,
    /// One permit per query or connection in flight.
    pub slots: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    pub(crate) fn new(
        config: ProxyConfig,
        learner: Arc<dyn Learner>,
        stats: Arc<ProxyStats>,
        listen_port: u16,
    ) -> Shared {
        let slots = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1)));
        Shared {
            config,
            learner,
            stats,
            listen_port,
            slots,
        }
    }

    /// A permit for one more query or connection, or `None` (counted) when all are taken.
    pub(crate) fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.slots.clone().try_acquire_owned().ok();
        if permit.is_none() {
            use std::sync::atomic::Ordering::Relaxed;
            self.stats.overloaded.fetch_add(1, Relaxed);
        }
        permit
    }

    /// Where a query goes, given its original destination; `None` when it has none, or
    /// when it was sent to the tproxy listener's own port rather than steered to it
    /// (forwarding that would send the proxy its own query, again and again). A bridge
    /// listener listens on the DNS port itself; what it forwards leaves this node's own
    /// stack, never through the bridge it is bound to, so it cannot come back to it.
    pub(crate) fn server(&self, original: Option<SocketAddr>) -> Option<SocketAddr> {
        use std::sync::atomic::Ordering::Relaxed;
        match (self.config.destination, original) {
            (Destination::Fixed(s), _) => Some(s),
            (Destination::Original, Some(s))
                if s.port() != self.listen_port
                    || matches!(self.config.delivery, Delivery::Bridge(_)) =>
            {
                Some(s)
            }
            (Destination::Original, _) => {
                self.stats.refused.fetch_add(1, Relaxed);
                None
            }
        }
    }
}
