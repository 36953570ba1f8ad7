//! The DNS proxy's listeners for pods on bridges that br_netfilter filters (flannel's
//! `cni0`, the bridge plugin with kube-proxy; by the namespace's `bridge-nf-call-iptables`
//! or the bridge's own `nf_call_iptables`): one UDP and one TCP listener per family on
//! the DNS port, bound to the bridge, while the node has `domainNames` rules: opened
//! when such a bridge gets ports (following the kernel's link events) or the rules
//! come, closed when it goes or they do.
//!
//! Why they are needed: with br_netfilter the IP prerouting hooks run in the bridge's
//! context, before the frame is passed up to IP, and `ip_rcv` then drops the socket
//! tproxy assigned ("must drop socket now because of tproxy"). The steering rule's mark
//! still routes the query to this node (the fwmark rule's `local` route), where the
//! ordinary socket lookup delivers it by its destination port: to the socket that
//! listens on that port on the device it came in on. Bound to the bridge, these sockets
//! take nothing the node's own DNS servers listen for elsewhere; on the bridge, a query
//! to one of the node's own addresses on the DNS port reaches them too (forwarded there
//! unchanged, as the tproxy listener forwards what it is given).
//!
//! Owns the listeners and the link watch only: how a query is proxied is
//! `dns_proxy`'s, when the proxy runs at all is `dns_node`'s. A bridge whose listeners
//! cannot be bound (the port taken on it) is reported through `ready`, which stops the
//! proxy's liveness: steering then ends within the liveness timeout and DNS goes straight
//! to its servers, so it never leads into a socket that is not there.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use futures::TryStreamExt;

use super::dns_proxy::{serve_both, Delivery, Learner, ProxyConfig, ProxyStats};

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot watch the network devices")]
    Watch(#[source] std::io::Error),
    #[error("cannot list the network devices")]
    Links(#[source] rtnetlink::Error),
    #[error("cannot listen on {addr} on bridge {bridge} for the DNS proxy")]
    Listen {
        bridge: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The listeners of every filtered bridge with ports, kept in step with the links.
pub struct BridgeListeners {
    port: u16,
    learner: Arc<dyn Learner>,
    stats: Arc<ProxyStats>,
    open: BTreeMap<String, Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for BridgeListeners {
    fn drop(&mut self) {
        for task in self.open.values().flatten() {
            task.abort();
        }
    }
}

impl BridgeListeners {
    pub fn new(port: u16, learner: Arc<dyn Learner>, stats: Arc<ProxyStats>) -> Self {
        BridgeListeners {
            port,
            learner,
            stats,
            open: BTreeMap::new(),
        }
    }

    /// Closes every listener (the node has no `domainNames` rules any more).
    pub fn close_all(&mut self) {
        for task in std::mem::take(&mut self.open).into_values().flatten() {
            task.abort();
        }
        self.stats.bridges.store(0, Ordering::Relaxed);
    }

    /// Opens listeners on the filtered bridges that have none, closes those of bridges
    /// gone (or no longer filtered). On error the bridges done so far keep theirs.
    pub async fn rescan(&mut self) -> Result<(), BridgeError> {
        let now = filtered_bridges().await?;
        self.open.retain(|name, tasks| {
            let keep = now.contains(name);
            if !keep {
                tasks.iter().for_each(|t| t.abort());
                tracing::info!(bridge = %name, "DNS proxy: bridge gone, its listeners closed");
            }
            keep
        });
        let mut result = Ok(());
        for bridge in now {
            if !self.open.contains_key(&bridge) {
                match self.listen(&bridge) {
                    Ok(tasks) => {
                        tracing::info!(%bridge, port = self.port, "DNS proxy listening on a filtered bridge");
                        self.open.insert(bridge, tasks);
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        let n = self.open.len() as u64;
        self.stats.bridges.store(n, Ordering::Relaxed);
        result
    }

    fn listen(&self, bridge: &str) -> Result<Vec<tokio::task::JoinHandle<()>>, BridgeError> {
        let mut tasks = Vec::new();
        for addr in [
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.port)),
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, self.port)),
        ] {
            let cfg = ProxyConfig {
                delivery: Delivery::Bridge(bridge.to_string()),
                ..ProxyConfig::default()
            };
            match serve_both(addr, cfg, self.learner.clone(), self.stats.clone()) {
                Ok(both) => tasks.extend(both),
                Err(source) => {
                    tasks.iter().for_each(tokio::task::JoinHandle::abort);
                    return Err(BridgeError::Listen {
                        bridge: bridge.to_string(),
                        addr,
                        source,
                    });
                }
            }
        }
        Ok(tasks)
    }
}

/// Subscribes to link events (before any scan, so that no change is missed).
pub fn watch_links() -> Result<LinkEvents, BridgeError> {
    use rtnetlink::MulticastGroup;
    let (conn, _, events) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link]).map_err(BridgeError::Watch)?;
    tokio::spawn(conn);
    Ok(LinkEvents(events))
}

/// The link events [`watch_links`] subscribed to.
pub struct LinkEvents(
    futures::channel::mpsc::UnboundedReceiver<(
        rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
);

/// Keeps the listeners in step, until `active`'s sender goes: while `active` holds (the
/// node has `domainNames` rules) every filtered bridge with ports has them, rescanned
/// after each link event; otherwise none has (port 53 stays free on nodes that do not
/// need it). `ready` says the listeners are in step: it is set after each rescan that
/// succeeded (and `wake`, the liveness, is woken), cleared when one failed, so the
/// proxy's liveness stops and steering ends rather than lead into no socket.
pub async fn follow(
    mut listeners: BridgeListeners,
    mut events: LinkEvents,
    mut active: tokio::sync::watch::Receiver<bool>,
    ready: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut linked = true;
    loop {
        tokio::select! {
            event = events.0.next(), if linked => {
                if event.is_none() {
                    tracing::warn!("DNS proxy: link events ended; bridges added from now on get no listener");
                    linked = false;
                    continue;
                }
                // A burst of events (a veth pair, its master, its address) needs one scan.
                while events.0.try_recv().is_ok() {}
                if !*active.borrow() {
                    continue;
                }
            }
            changed = active.changed() => {
                if changed.is_err() {
                    return;
                }
                if !*active.borrow_and_update() {
                    listeners.close_all();
                    ready.store(true, Ordering::SeqCst);
                    continue;
                }
            }
        }
        match listeners.rescan().await {
            Ok(()) => {
                ready.store(true, Ordering::SeqCst);
                wake.notify_one();
            }
            Err(e) => {
                ready.store(false, Ordering::SeqCst);
                tracing::error!(error = %crate::error::Chain(&e), "DNS proxy off until the bridges' listeners can be bound: steering stops when its liveness expires");
            }
        }
    }
}

/// The bridges with ports whose traffic br_netfilter filters: every bridge while the
/// per-namespace `bridge-nf-call-iptables` is 1, else those with their own
/// `nf_call_iptables` option on (`ip link set cni0 type bridge nf_call_iptables 1`).
pub async fn filtered_bridges() -> Result<Vec<String>, BridgeError> {
    let all = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1");
    let (conn, handle, _) = rtnetlink::new_connection().map_err(BridgeError::Watch)?;
    tokio::spawn(conn);
    let links: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(BridgeError::Links)?;
    Ok(with_ports(&links, all))
}

/// The names of the filtered bridges among `links` that are some link's controller.
fn with_ports(links: &[rtnetlink::packet_route::link::LinkMessage], all: bool) -> Vec<String> {
    use rtnetlink::packet_route::link::{InfoBridge, InfoData, InfoKind, LinkAttribute, LinkInfo};
    let bridges: BTreeMap<u32, String> = links
        .iter()
        .filter_map(|l| {
            let infos = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i),
                _ => None,
            })?;
            if !infos.contains(&LinkInfo::Kind(InfoKind::Bridge)) {
                return None;
            }
            let own = infos.iter().any(|i| {
                matches!(i, LinkInfo::Data(InfoData::Bridge(o))
                    if o.contains(&InfoBridge::NfCallIpTables(true)))
            });
            let name = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })?;
            (all || own).then_some((l.header.index, name))
        })
        .collect();
    let mut out: Vec<String> = links
        .iter()
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(m) => bridges.get(m).cloned(),
                _ => None,
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
