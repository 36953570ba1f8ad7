//! `nftpol run`: the DaemonSet controller.
//!
//! ```text
//! kube watchers (tokio) --Msg--> sync loop (OS thread: NodeState + Dataplane)
//!  (ClusterNetworkPolicies:          |-- compile errors --> Kubernetes Events
//!   by discovery)
//! HTTP /healthz /readyz /metrics <-- Metrics
//! ```
//!
//! The compile semantics live in the library (`state`, `graph`, `ruleset`); this module
//! only wires watchers, the sync loop, Events, metrics and signals.

pub mod board;
pub mod cnp_watch;
pub mod dataplane;
pub mod dns_bridges;
pub mod dns_node;
pub mod dns_proxy;
mod events;
pub mod http;
pub mod metrics;
pub mod nflog;
pub mod revoker;
pub mod schedule;
pub mod sync;
pub mod tracker;
pub mod traffic;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;

use dataplane::Dataplane;
use metrics::Metrics;
use sync::{CompileError, Msg, Settings, SyncLoop};

#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    pub metrics_addr: SocketAddr,
    /// A listener already bound for /healthz, /readyz and /metrics, served instead of
    /// binding `metrics_addr`: a caller that binds port 0 itself knows the port and never
    /// lets go of it, so nothing else can take it in between (tests, benches).
    pub metrics_listener: Option<Arc<std::net::TcpListener>>,
    pub coalesce: Duration,
    pub resync: Duration,
    /// Program the nftables of this network namespace instead of our own (tests).
    pub netns: Option<std::path::PathBuf>,
    /// `--default-deny-unknown`: this node's pod CIDRs (empty: off, unless
    /// `pod_cidrs_from_node`).
    pub options: crate::ruleset::Options,
    /// `--default-deny-unknown` without `--pod-cidr`: take the CIDRs from this node's
    /// Node object (`spec.podCIDRs`), and follow their changes.
    pub pod_cidrs_from_node: bool,
    /// `/healthz` fails when the sync loop has made no progress for this long.
    pub liveness: Duration,
    /// `--keep-established`: do not cut the tracked connections a batch revokes.
    pub keep_established: bool,
    /// How often discovery is asked again which ClusterNetworkPolicy version is served
    /// (a CRD installed, upgraded or removed while the controller runs).
    pub discovery_every: Duration,
    /// Where the sync loop publishes the state the kernel holds while someone asks for it
    /// ([`board::Board::fresh`]): the verdict reader's board (made here when verdict logs
    /// are on and none is given), or a test watching what the node enforces.
    pub board: Option<Arc<board::Board>>,
    /// The DNS proxy for `domainNames` rules (`None`: `--no-dns-proxy`; their learned
    /// sets stay empty). Its steering is `options.dns`.
    pub dns: Option<dns_node::DnsConfig>,
}

impl Config {
    /// `nftpol run`'s defaults for `node`; tests and benches change what they need with
    /// struct update syntax, so a new setting does not touch every caller.
    pub fn new(node: impl Into<String>) -> Self {
        Config {
            node: node.into(),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9309)),
            metrics_listener: None,
            coalesce: Duration::from_millis(20),
            resync: Duration::from_secs(300),
            netns: None,
            options: Default::default(),
            pod_cidrs_from_node: false,
            liveness: Duration::from_secs(60),
            keep_established: false,
            discovery_every: Duration::from_secs(30),
            board: None,
            dns: None,
        }
    }
}

/// Why the controller stopped. The variants that wrap an error name only what failed;
/// the cause is their `source()` (main prints the chain), not repeated in the text.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("metrics endpoint {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the sync thread")]
    SyncThread(#[source] std::io::Error),
    /// The sync loop could not start (no netlink socket, no network namespace): nothing
    /// would ever be programmed, so the process exits instead of looking alive.
    #[error("cannot open the dataplane")]
    Dataplane(#[source] dataplane::DataplaneError),
    #[error("cannot enter the network namespace {path:?}")]
    Netns {
        path: PathBuf,
        #[source]
        source: crate::netlink::NetlinkError,
    },
    /// The sync loop returned before a shutdown was asked for.
    #[error("the sync loop ended")]
    SyncLoopEnded,
}

async fn publish_errors(
    client: Client,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<CompileError>,
    node: String,
) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "nftpol".into(),
            instance: Some(node),
        },
    );
    while let Some(e) = rx.recv().await {
        let reference = ObjectReference {
            api_version: Some(e.api_version.clone()),
            kind: Some(e.kind.name().into()),
            namespace: e.namespace.clone(),
            name: Some(e.name.clone()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: e.reason.into(),
            note: Some(e.message.chars().take(1000).collect()),
            action: "Compile".into(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &reference).await {
            tracing::warn!(kind = e.kind.name(), namespace = e.namespace.as_deref().unwrap_or(""), name = %e.name, error = %crate::error::Chain(&err), "cannot publish Event");
        }
    }
}

/// Runs the controller until `shutdown` resolves. The rules stay in place on return.
/// `dataplane` is called on the sync thread (inside `config.netns` when set), so the
/// netlink socket it opens belongs to the right network namespace.
pub async fn run<D, F>(
    config: Config,
    client: Client,
    dataplane: F,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ControllerError>
where
    D: Dataplane + 'static,
    F: FnOnce() -> Result<D, dataplane::DataplaneError> + Send + 'static,
{
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let http = serve_health(&config, metrics.clone(), tx.clone()).await?;
    let (err_tx, err_rx) = tokio::sync::mpsc::unbounded_channel();
    let events = tokio::spawn(publish_errors(client.clone(), err_rx, config.node.clone()));
    let errors: Box<dyn Fn(CompileError) + Send> = Box::new(move |e| {
        let _ = err_tx.send(e);
    });

    let log = config.options.log;
    let logs = log.denied || log.allowed;
    let board = verdict_board(&config, &tx);
    let reader = match &board {
        Some(b) if logs => Some(
            nflog::spawn(log.group, config.netns.clone(), b.clone(), metrics.clone())
                .map_err(ControllerError::SyncThread)?,
        ),
        _ => None,
    };
    let mut config = config;
    let dns = match config.dns.clone() {
        Some(c) => match dns_node::DnsNode::start(c, config.netns.clone()) {
            Ok(node) => {
                metrics.dns(node.stats());
                Some(Arc::new(node))
            }
            // Enforcement of everything else must not depend on the proxy, and DNS must
            // keep working: without it nothing is steered, and domainNames rules admit
            // nothing (said here, and per policy by Event).
            Err(e) => {
                tracing::error!(error = %crate::error::Chain(&e), "DNS proxy off: domainNames rules admit nothing on this node");
                config.options.dns = None;
                None
            }
        },
        None => None,
    };
    let sync = SyncThread {
        settings: settings(&config),
        dns,
        metrics,
        errors,
        board,
        netns: config.netns.clone(),
    };
    let (worker, done_rx) = sync.spawn(dataplane, rx)?;
    let watchers = watch::spawn(client, &config.node, config.discovery_every, tx.clone());

    let failed = until_stopped(shutdown, done_rx).await;
    tracing::info!("stopping watchers");
    for w in &watchers {
        w.abort();
    }
    let _ = tx.send(sync::Stamped::now(Msg::Shutdown));
    drop(tx);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = worker.join();
        if let Some(r) = reader {
            r.stop();
        }
    })
    .await;
    http.abort();
    events.abort();
    stopped(failed)
}

/// Waits for `shutdown`, or for the sync thread to end first: that means it failed, and
/// why is returned.
async fn until_stopped(
    shutdown: impl std::future::Future<Output = ()>,
    done: tokio::sync::oneshot::Receiver<Result<(), ControllerError>>,
) -> Option<ControllerError> {
    tokio::select! {
        _ = shutdown => None,
        r = done => Some(match r {
            Ok(Err(e)) => e,
            Ok(Ok(())) | Err(_) => ControllerError::SyncLoopEnded,
        }),
    }
}

/// Binds the health and metrics endpoint and serves it.
async fn serve_health(
    config: &Config,
    metrics: Arc<Metrics>,
    sync: std::sync::mpsc::Sender<sync::Stamped>,
) -> Result<tokio::task::JoinHandle<()>, ControllerError> {
    let given = config.metrics_listener.as_deref();
    let listener = http::bind(config.metrics_addr, given)
        .await
        .map_err(|source| ControllerError::Bind {
            addr: given
                .and_then(|l| l.local_addr().ok())
                .unwrap_or(config.metrics_addr),
            source,
        })?;
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), node = %config.node, "serving /healthz /readyz /metrics");
    Ok(tokio::spawn(http::serve(
        listener,
        metrics,
        config.liveness,
        Some(sync),
    )))
}

/// The sync loop's settings from the controller's.
fn settings(config: &Config) -> Settings {
    Settings {
        node: config.node.clone(),
        coalesce: config.coalesce,
        resync: config.resync,
        options: config.options.clone(),
        pod_cidrs_from_node: config.pod_cidrs_from_node,
        keep_established: config.keep_established,
    }
}

/// The board the sync loop publishes on: the one `config` gives, else one for the
/// verdict reader when verdict logs are on, whose asking wakes the loop through `tx`.
fn verdict_board(
    config: &Config,
    tx: &std::sync::mpsc::Sender<sync::Stamped>,
) -> Option<Arc<board::Board>> {
    let log = config.options.log;
    config.board.clone().or_else(|| {
        (log.denied || log.allowed).then(|| {
            // The channel is unbounded: asking never blocks the reader.
            let wake = tx.clone();
            Arc::new(board::Board::new(move || {
                let _ = wake.send(sync::Stamped::now(Msg::VerdictState));
            }))
        })
    })
}

/// What the sync thread is started with.
struct SyncThread {
    settings: Settings,
    dns: Option<Arc<dns_node::DnsNode>>,
    metrics: Arc<Metrics>,
    errors: Box<dyn Fn(CompileError) + Send>,
    board: Option<Arc<board::Board>>,
    netns: Option<PathBuf>,
}

/// The sync thread's handle, and how it says that it ended (before a shutdown, that it
/// failed).
type Spawned = (
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Receiver<Result<(), ControllerError>>,
);

impl SyncThread {
    /// Starts the sync loop on its own OS thread (inside the network namespace, when
    /// set), with the dataplane `dataplane` opens there.
    fn spawn<D, F>(
        self,
        dataplane: F,
        rx: std::sync::mpsc::Receiver<sync::Stamped>,
    ) -> Result<Spawned, ControllerError>
    where
        D: Dataplane + 'static,
        F: FnOnce() -> Result<D, dataplane::DataplaneError> + Send + 'static,
    {
        let SyncThread {
            settings,
            dns,
            metrics,
            errors,
            board,
            netns,
        } = self;
        let body = move || match dataplane() {
            Ok(dp) => {
                let mut sync = SyncLoop::new(settings, dp, metrics, errors);
                if let Some(d) = dns {
                    sync = sync.with_dns(d);
                }
                match board {
                    Some(b) => sync.with_board(b).run(rx),
                    None => sync.run(rx),
                }
                Ok(())
            }
            Err(e) => Err(ControllerError::Dataplane(e)),
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), ControllerError>>();
        let worker = std::thread::Builder::new()
            .name("nftpol-sync".into())
            .spawn(move || {
                let result = match netns {
                    Some(path) => crate::netlink::in_netns(&path, body)
                        .map_err(|source| ControllerError::Netns { path, source })
                        .and_then(|r| r),
                    None => body(),
                };
                let _ = done_tx.send(result);
            })
            .map_err(ControllerError::SyncThread)?;
        Ok((worker, done_rx))
    }
}

/// How the controller ends: `failed` is why the sync loop stopped before a shutdown.
fn stopped(failed: Option<ControllerError>) -> Result<(), ControllerError> {
    match failed {
        Some(why) => {
            tracing::error!(error = %crate::error::Chain(&why), "sync loop stopped; exiting");
            Err(why)
        }
        None => Ok(()),
    }
}
