//! The node's DNS proxy as `nftpol run` starts it, for ClusterNetworkPolicy
//! `domainNames` rules: the policy routing tproxy needs, the UDP and TCP listeners, the
//! learner and its netlink socket, the liveness refresher, on one thread of their own
//! (inside `--netns` when set, so that every socket belongs to the node's namespace).
//!
//! ```text
//! sync loop --after each batch: rules(domain rules)--> DnsNode --> SetLearner::set_rules
//!                                                             \--> liveness on/off
//! /metrics <-- ProxyStats
//! ```
//!
//! Owns the wiring only: what an answer teaches is `dns_proxy::learner`'s, the rules
//! that steer DNS and look learned addresses up are the compiler's (`ruleset`), and what
//! a rule is comes from `graph::domains`. The liveness element is refreshed only while
//! the node has `domainNames` rules (the compiled liveness set exists only then), and at
//! once when they appear and the bridge listeners they need are open
//! (`dns_bridges`), so a pod's first lookup after its policy arrives already goes
//! through the proxy.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ipnet::IpNet;

use super::dns_bridges::{BridgeError, BridgeListeners};
use super::dns_proxy::learner::{DomainRule, KernelSink, SetLearner};
use super::dns_proxy::liveness::Liveness;
use super::dns_proxy::{serve_both, ProxyConfig, ProxyStats};
use crate::fqdn::Ttl;
use crate::graph::domains;
use crate::ruleset::{names, DnsSteering};

/// `nftpol run`'s DNS flags.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Also `options.dns`: the steering rules send the proxy only queries addressed to
    /// `steering.servers`.
    pub steering: DnsSteering,
    /// `--dns-min-ttl` (and the ceiling).
    pub ttl: Ttl,
    /// `--dns-route-table`: the routing table of the `local` default route that delivers
    /// marked packets to the proxy.
    pub route_table: u32,
}

/// Why the proxy could not start (the controller then exits: a node that enforces
/// `domainNames` rules without learning would admit nothing through them, silently).
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot start the DNS proxy thread")]
    Thread(#[source] std::io::Error),
    #[error("cannot enter the network namespace")]
    Netns(#[source] crate::netlink::NetlinkError),
    #[error("cannot open a netlink socket for the DNS proxy")]
    Netlink(#[source] crate::netlink::NetlinkError),
    #[error("cannot set up the DNS proxy's policy routing ({what})")]
    Route {
        what: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot listen on {addr} for the DNS proxy")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the DNS proxy thread stopped while starting")]
    Gone,
    /// A bridge that br_netfilter filters has ports, and its listeners could not be
    /// opened (see [`super::dns_bridges`]).
    #[error("cannot serve the pods on the node's filtered bridges")]
    Bridges(#[source] BridgeError),
}

/// The running proxy, as the sync loop and `/metrics` see it.
pub struct DnsNode {
    learner: Arc<SetLearner>,
    stats: Arc<ProxyStats>,
    /// Whether the node has `domainNames` rules (the liveness set exists), for the
    /// liveness and the bridge listeners.
    active: tokio::sync::watch::Sender<bool>,
    /// Whether the bridge listeners are in step with `active` (see `dns_bridges`).
    ready: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsNode {
    /// Starts the proxy's thread and returns once it listens (or failed to).
    pub fn start(config: DnsConfig, netns: Option<PathBuf>) -> Result<DnsNode, DnsError> {
        let stats = Arc::new(ProxyStats::default());
        let ready = Arc::new(AtomicBool::new(true));
        let (active, active_rx) = tokio::sync::watch::channel(false);
        let refresh = Arc::new(tokio::sync::Notify::new());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let parts = Parts {
            config,
            stats: stats.clone(),
            active: active_rx,
            ready: ready.clone(),
            refresh,
        };
        let thread = std::thread::Builder::new()
            .name("nftpol-dns".into())
            .spawn(move || {
                let failed = ready_tx.clone();
                let body = move || parts.serve(stop_rx, ready_tx);
                match netns {
                    Some(path) => {
                        if let Err(e) = crate::netlink::in_netns(&path, body) {
                            let _ = failed.send(Err(DnsError::Netns(e)));
                        }
                    }
                    None => body(),
                }
            })
            .map_err(DnsError::Thread)?;
        let learner = match ready_rx.recv() {
            Ok(Ok(learner)) => learner,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(DnsError::Gone),
        };
        Ok(DnsNode {
            learner,
            stats,
            active,
            ready,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    pub fn learner(&self) -> Arc<SetLearner> {
        self.learner.clone()
    }

    /// The node's `domainNames` rules after a batch the kernel took: their learned sets
    /// exist now (and those of rules gone are deleted).
    pub fn rules(&self, rules: &[domains::DomainRule]) {
        let learned = rules
            .iter()
            .map(|r| DomainRule {
                id: r.id(),
                patterns: r.patterns.clone(),
                set4: names::learned_set(&r.policy, r.rule, false),
                set6: names::learned_set(&r.policy, r.rule, true),
            })
            .collect();
        self.learner.set_rules(learned);
        let now = !rules.is_empty();
        if now && !*self.active.borrow() {
            // No steering until the bridges' listeners are open: the bridge task sets
            // `ready` and wakes the liveness then.
            self.ready.store(false, Ordering::SeqCst);
        }
        self.active
            .send_if_modified(|b| std::mem::replace(b, now) != now);
    }

    /// (learned set, address) -> the domain the proxy learned it from, for what it
    /// still holds.
    pub fn domains(&self) -> std::collections::HashMap<(String, std::net::IpAddr), String> {
        self.learner
            .learned()
            .into_iter()
            .map(|(k, g)| (k, g.domain))
            .collect()
    }
}

impl Drop for DnsNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the proxy's thread is started with.
struct Parts {
    config: DnsConfig,
    stats: Arc<ProxyStats>,
    active: tokio::sync::watch::Receiver<bool>,
    ready: Arc<AtomicBool>,
    refresh: Arc<tokio::sync::Notify>,
}

type Ready = std::sync::mpsc::Sender<Result<Arc<SetLearner>, DnsError>>;

impl Parts {
    /// The proxy's thread: its own runtime, until `stop`.
    fn serve(self, stop: tokio::sync::oneshot::Receiver<()>, ready: Ready) {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nftpol-dns")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(DnsError::Thread(e)));
                return;
            }
        };
        rt.block_on(async move {
            match self.listen().await {
                Ok(learner) => {
                    let _ = ready.send(Ok(learner));
                    let _ = stop.await;
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        });
    }

    /// Routing, learner, listeners and liveness; returns the learner once all run.
    async fn listen(&self) -> Result<Arc<SetLearner>, DnsError> {
        let c = &self.config;
        policy_routing(c.steering.mark, c.route_table).await?;
        let backend = crate::netlink::Backend::open().map_err(DnsError::Netlink)?;
        let sink = KernelSink {
            table: names::TABLE.to_string(),
            backend,
        };
        // The kernel steers only queries addressed to a trusted server, matched before
        // kube-proxy's DNAT; the proxy sees them after it (addressed to the endpoint DNAT
        // chose), so it cannot check the server again by address, and need not.
        // (Ipv4Net's and Ipv6Net's defaults are 0.0.0.0/0 and ::/0: every server.)
        let steered = vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())];
        let learner = Arc::new(SetLearner::new(steered, c.ttl, Box::new(sink)));
        let port = c.steering.proxy_port;
        for addr in [
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        ] {
            // Served until the runtime ends (the handles are not needed to stop them).
            serve_both(
                addr,
                ProxyConfig::default(),
                learner.clone(),
                self.stats.clone(),
            )
            .map_err(|source| DnsError::Listen { addr, source })?;
        }
        // The bridge listeners, while the node has domain rules; the liveness waits for
        // them (`ready`), so no query is steered before its listener exists.
        let bridges =
            BridgeListeners::new(c.steering.dns_port, learner.clone(), self.stats.clone());
        let events = super::dns_bridges::watch_links().map_err(DnsError::Bridges)?;
        tokio::spawn(super::dns_bridges::follow(
            bridges,
            events,
            self.active.clone(),
            self.ready.clone(),
            self.refresh.clone(),
        ));
        let backend = crate::netlink::Backend::open().map_err(DnsError::Netlink)?;
        let liveness = Liveness {
            table: names::TABLE.into(),
            set: names::DNS_ALIVE_SET.into(),
            port: c.steering.dns_port,
            ..Liveness::default()
        };
        tokio::spawn(super::dns_proxy::liveness::keep_alive_while(
            backend,
            liveness,
            self.active.clone(),
            self.ready.clone(),
            self.refresh.clone(),
        ));
        tracing::info!(port, servers = ?c.steering.servers, min_ttl = c.ttl.min, "DNS proxy listening");
        Ok(learner)
    }
}

/// `ip rule add fwmark <mark>/<mark> lookup <table>` and `ip route add local default dev
/// lo table <table>`, both families; already there is fine (a restart).
async fn policy_routing(mark: u32, table: u32) -> Result<(), DnsError> {
    use rtnetlink::packet_route::route::{RouteScope, RouteType};
    use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
    use rtnetlink::RouteMessageBuilder;
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| DnsError::Route {
        what: "rtnetlink socket",
        source: rtnetlink::Error::NamespaceError(e.to_string()),
    })?;
    tokio::spawn(conn);
    let route = |what: &'static str| move |source| DnsError::Route { what, source };
    for v6 in [false, true] {
        let rule = handle.rule().add().fw_mark(mark).table_id(table);
        let mut rule = rule.action(RuleAction::ToTable);
        rule.message_mut()
            .attributes
            .push(RuleAttribute::FwMask(mark));
        let added = if v6 {
            rule.v6().execute().await
        } else {
            rule.v4().execute().await
        };
        exists_ok(added).map_err(route("fwmark rule"))?;
        // The loopback device is index 1 in every network namespace.
        let msg = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
                .kind(RouteType::Local)
                .scope(RouteScope::Host)
                .table_id(table)
                .output_interface(1)
                .build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .kind(RouteType::Local)
                .scope(RouteScope::Host)
                .table_id(table)
                .output_interface(1)
                .build()
        };
        let added = handle.route().add(msg).execute().await;
        exists_ok(added).map_err(route("local route"))?;
    }
    Ok(())
}

/// EEXIST is success: the rule or route is there from an earlier run.
fn exists_ok(r: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match r {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
        other => other,
    }
}
