//! Verdict logs: what a packet logged by a pod chain means, in the words of `explain`.
//!
//! ```text
//! sync loop --(after an applied batch, while records are wanted)--> Board::publish: generation g
//! NFLOG packet (prefix "d ingress/x/a", 5-tuple) --Board::record--> Record
//!     prefix -> chain (verdict, direction, pod), through the published graph's pods
//!     explain::end_of(pod, direction, peer, port) in generation g; if the kernel's
//!     verdict disagrees, in g-1 (the packet was judged before the last batch landed)
//! ```
//!
//! Owns: mapping prefixes back to chains, naming the peer (a pod of the cluster from the
//! index, or the address), and choosing which published generation explains a packet.
//! Must not: read sockets or write logs (the controller's `nflog` does), or decide
//! semantics of its own: the reasons are `explain`'s, from the same graph the ruleset
//! was built from.
//!
//! A packet is judged by the rules in the kernel when it arrives; the record is made a
//! little later, and a batch may have landed in between. The board keeps the last two
//! generations: a record is explained by the newest one whose verdict agrees with the
//! kernel's, and says which (`generation`, `judged_by`); when neither agrees, it says the
//! policy changed rather than give a reason that did not apply.
//!
//! Publishing copies the node's index and graph (milliseconds at 10,000 pods), so the
//! sync loop publishes only while records are wanted: the reader asks before it explains
//! a drain of records ([`Board::fresh`]), which wakes an idle loop to publish at once, and
//! for [`DEMAND`] after each ask every applied batch is published, so that a packet judged
//! just before a batch still finds the generation that judged it. A node whose pods see
//! no logged traffic pays nothing.

use crate::index::PodKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::explain;
use crate::graph::PolicyGraph;
use crate::index::Index;
use crate::policy::{Direction, Protocol};
use crate::ruleset::names::{self, LogVerdict};

/// One generation of the node's state, as the kernel held it after a batch.
pub struct Snapshot {
    pub generation: u64,
    index: Index,
    graph: PolicyGraph,
    /// Log prefix -> (verdict, direction, pod key).
    chains: HashMap<String, (LogVerdict, Direction, PodKey)>,
}

impl Snapshot {
    pub fn new(generation: u64, index: Index, graph: PolicyGraph) -> Self {
        let mut chains = HashMap::new();
        for (key, pod) in &graph.pods {
            for dir in [Direction::Ingress, Direction::Egress] {
                if pod.isolation(dir).is_none() && pod.tiers.side(dir).is_empty() {
                    continue;
                }
                let chain = names::pod_chain(dir, &pod.namespace, &pod.name);
                for v in [LogVerdict::Denied, LogVerdict::Allowed] {
                    chains.insert(names::log_prefix(v, &chain), (v, dir, key.clone()));
                }
            }
        }
        Snapshot {
            generation,
            index,
            graph,
            chains,
        }
    }
}

/// A logged packet, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub prefix: &'a str,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// Which generation explains a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgedBy {
    /// The newest published generation agrees with the kernel's verdict.
    Current,
    /// Only the one before it agrees: the packet was judged before the last batch.
    Previous,
    /// Neither agrees: policy changed while the packet was in flight; no reason given.
    Changed,
}

impl JudgedBy {
    pub fn name(self) -> &'static str {
        match self {
            JudgedBy::Current => "current",
            JudgedBy::Previous => "previous",
            JudgedBy::Changed => "changed",
        }
    }
}

/// One verdict record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub verdict: LogVerdict,
    pub direction: Direction,
    /// The pod of this node whose chain logged the packet.
    pub namespace: String,
    pub pod: String,
    pub pod_ip: IpAddr,
    /// The other side: `ns/name` of a pod of the cluster, else the address.
    pub peer: String,
    pub peer_ip: IpAddr,
    /// `tcp`, `udp`, `sctp`, or the protocol number.
    pub protocol: String,
    pub port: Option<u16>,
    /// The client's port (the pod's for egress, the peer's for ingress): with the
    /// addresses and `port`, the connection's 5-tuple.
    pub src_port: Option<u16>,
    pub isolated_by: Vec<String>,
    /// For an allowed connection: each rule that allows it (`ns/policy ingress[0].from[1]
    /// (peer: ...)`), as `explain` names them.
    pub allowed_by: Vec<String>,
    /// The ClusterNetworkPolicy tiers' walk for this end, as `explain` prints it
    /// (`Admin: no-y-into-x ingress[1] deny-y: Deny`); empty when no tier selects the pod.
    pub tiers: Vec<String>,
    /// The generation whose graph gave the reasons.
    pub generation: u64,
    pub judged_by: JudgedBy,
}

/// Why a packet gave no record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmapped {
    #[error("no state published yet")]
    NoState,
    #[error("log prefix {0:?} names no chain of this node")]
    UnknownPrefix(String),
}

/// (newest, the one before it).
type Generations = (Option<Arc<Snapshot>>, Option<Arc<Snapshot>>);

/// How long after the reader's last ask the sync loop keeps publishing every batch.
pub const DEMAND: Duration = Duration::from_secs(10);

/// The last two published generations, shared by the sync loop and the reader.
#[derive(Default)]
pub struct Board {
    inner: Mutex<Generations>,
    published: Condvar,
    /// Batches the kernel has acknowledged; a generation is the count when it was published.
    applied: AtomicU64,
    /// When the reader last asked ([`Board::fresh`]).
    asked: Mutex<Option<Instant>>,
    /// Wakes the sync loop to publish (the controller's channel); none in tests.
    wake: Option<Box<dyn Fn() + Send + Sync>>,
}

fn protocol_of(n: u8) -> Option<Protocol> {
    Protocol::ALL.into_iter().find(|p| p.number() == n)
}

/// What a generation says of a logged packet.
struct Judged {
    allowed: bool,
    isolated_by: Vec<String>,
    allowed_by: Vec<String>,
    /// The ClusterNetworkPolicy tiers' walk, as `explain` prints it.
    tiers: Vec<String>,
}

/// What `snap` says of `pkt` in the chain's direction, or `None` when the chain is not in
/// `snap`.
fn judge(snap: &Snapshot, pkt: &Packet, dir: Direction, key: &PodKey) -> Option<Judged> {
    let pod = snap.graph.pods.get(key)?;
    if pod.isolation(dir).is_none() && pod.tiers.side(dir).is_empty() {
        return None;
    }
    let isolated_by = pod
        .isolation(dir)
        .map(|i| i.isolated_by.clone())
        .unwrap_or_default();
    let other = match dir {
        Direction::Egress => pkt.dst,
        Direction::Ingress => pkt.src,
    };
    let (Some(protocol), Some(port)) = (protocol_of(pkt.protocol), pkt.dport) else {
        // No port to match: NetworkPolicy allows only TCP, UDP and SCTP, on ports; a
        // tier rule for every protocol may have decided it, which explain (protocol and
        // port) cannot walk: such a record then says the policy changed.
        return Some(Judged {
            allowed: false,
            isolated_by,
            allowed_by: Vec::new(),
            tiers: Vec::new(),
        });
    };
    let end = explain::end_of(&snap.index, &snap.graph, pod, dir, other, protocol, port);
    Some(Judged {
        allowed: end.allowed,
        isolated_by,
        allowed_by: end.allowed_by(),
        tiers: end.tier_lines(),
    })
}

impl Board {
    /// A board whose [`Board::fresh`] calls `wake` to ask the sync loop for a generation.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Board {
            wake: Some(Box::new(wake)),
            ..Board::default()
        }
    }

    /// A batch landed (the sync loop, after each one the kernel acknowledged).
    pub fn applied(&self) {
        self.applied.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the reader has asked for state within [`DEMAND`]: the sync loop then
    /// publishes after every batch.
    pub fn wanted(&self) -> bool {
        let asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.is_some_and(|t| t.elapsed() < DEMAND)
    }

    /// `index` and `graph` are what the kernel now enforces (the sync loop, after a batch
    /// or when woken while nothing is pending).
    pub fn publish(&self, index: Index, graph: PolicyGraph) {
        let generation = self.applied.load(Ordering::SeqCst);
        let snap = Arc::new(Snapshot::new(generation, index, graph));
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let previous = g.0.take();
        *g = (Some(snap), previous);
        self.published.notify_all();
    }

    /// The reader, before it explains what it drained: asks for the generation the
    /// kernel holds and waits up to `timeout` for it (a sync loop in the middle of a
    /// batch publishes when the batch lands). On timeout the records are explained
    /// with what is there, and say so when it disagrees with the kernel.
    pub fn fresh(&self, timeout: Duration) {
        *self.asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let behind = |g: &Generations| {
            let applied = self.applied.load(Ordering::SeqCst);
            g.0.as_ref().is_none_or(|s| s.generation < applied)
        };
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !behind(&g) {
            return;
        }
        if let Some(wake) = &self.wake {
            wake();
        }
        let _ = self
            .published
            .wait_timeout_while(g, timeout, |g| behind(g))
            .unwrap_or_else(|e| e.into_inner());
    }

    /// The newest generation, if any.
    pub fn generation(&self) -> Option<u64> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.as_ref().map(|s| s.generation)
    }

    /// The pods (namespace, name) of the newest generation.
    pub fn pods(&self) -> Vec<PodKey> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.as_ref()
            .map(|s| s.graph.pods.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The record of one logged packet.
    pub fn record(&self, pkt: &Packet) -> Result<Record, Unmapped> {
        let (current, previous) = {
            let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            (g.0.clone(), g.1.clone())
        };
        let current = current.ok_or(Unmapped::NoState)?;
        let (verdict, dir, key) = current
            .chains
            .get(pkt.prefix)
            .or_else(|| previous.as_ref().and_then(|p| p.chains.get(pkt.prefix)))
            .cloned()
            .ok_or_else(|| Unmapped::UnknownPrefix(pkt.prefix.to_string()))?;
        let kernel_allowed = verdict == LogVerdict::Allowed;
        let mut found = None;
        // Only the generation right before the newest can have judged a packet the
        // newest did not; an older one (nothing was published in between) is not asked.
        let previous = previous.filter(|p| p.generation + 1 == current.generation);
        for (snap, by) in [
            (Some(&current), JudgedBy::Current),
            (previous.as_ref(), JudgedBy::Previous),
        ] {
            let Some(snap) = snap else { continue };
            if let Some(j) = judge(snap, pkt, dir, &key) {
                if j.allowed == kernel_allowed {
                    found = Some((snap.generation, by, j));
                    break;
                }
            }
        }
        let (generation, judged_by, judged) = found.unwrap_or((
            current.generation,
            JudgedBy::Changed,
            Judged {
                allowed: kernel_allowed,
                isolated_by: Vec::new(),
                allowed_by: Vec::new(),
                tiers: Vec::new(),
            },
        ));
        let (pod_ip, peer_ip) = match dir {
            Direction::Egress => (pkt.src, pkt.dst),
            Direction::Ingress => (pkt.dst, pkt.src),
        };
        let peer = current
            .index
            .pods()
            .find(|p| !p.host_network && p.ips.contains(&peer_ip))
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .unwrap_or_else(|| peer_ip.to_string());
        Ok(Record {
            verdict,
            direction: dir,
            namespace: key.0,
            pod: key.1,
            pod_ip,
            peer,
            peer_ip,
            protocol: protocol_of(pkt.protocol)
                .map(|p| p.to_string())
                .unwrap_or_else(|| pkt.protocol.to_string()),
            port: pkt.dport,
            src_port: pkt.sport,
            isolated_by: judged.isolated_by,
            allowed_by: judged.allowed_by,
            tiers: judged.tiers,
            generation,
            judged_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_str;

    const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {kubernetes.io/metadata.name: x}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: web, labels: {app: web}}
spec: {nodeName: n1}
status: {podIPs: [{ip: 10.0.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: db, labels: {app: db}}
spec: {nodeName: n1}
status: {podIPs: [{ip: 10.0.0.2}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: db-from-web}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
"#;

    fn board(text: &str) -> Board {
        let index = Index::from_objects(parse_str(text, "t").unwrap()).unwrap();
        let graph = PolicyGraph::build_for(&index, Some("n1"));
        let b = Board::default();
        b.applied();
        b.publish(index, graph);
        b
    }

    fn pkt(prefix: &str, src: &str, dst: &str, port: u16) -> Packet<'static> {
        Packet {
            prefix: Box::leak(prefix.to_string().into_boxed_str()),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: 6,
            sport: Some(40000),
            dport: Some(port),
        }
    }

    #[test]
    fn a_denied_packet_names_pod_peer_port_and_isolating_policies() {
        let b = board(CLUSTER);
        let r = b
            .record(&pkt("d ingress/x/db", "10.0.0.1", "10.0.0.2", 80))
            .unwrap();
        assert_eq!((r.namespace.as_str(), r.pod.as_str()), ("x", "db"));
        assert_eq!(r.peer, "x/web");
        assert_eq!((r.protocol.as_str(), r.port), ("tcp", Some(80)));
        assert_eq!(r.isolated_by, vec!["x/db-from-web".to_string()]);
        assert_eq!((r.generation, r.judged_by), (1, JudgedBy::Current));
        let r = b
            .record(&pkt("d ingress/x/db", "192.0.2.9", "10.0.0.2", 5432))
            .unwrap();
        assert_eq!(r.peer, "192.0.2.9");
    }

    #[test]
    fn an_allowed_packet_names_the_rule_explain_names() {
        let b = board(CLUSTER);
        let r = b
            .record(&pkt("a ingress/x/db", "10.0.0.1", "10.0.0.2", 5432))
            .unwrap();
        assert_eq!(r.verdict, LogVerdict::Allowed);
        assert_eq!(r.allowed_by.len(), 1);
        assert!(
            r.allowed_by[0].starts_with("x/db-from-web ingress[0].from[0]"),
            "{:?}",
            r.allowed_by
        );
    }

    #[test]
    fn a_packet_judged_before_the_last_batch_is_explained_by_the_generation_that_judged_it() {
        let b = board(CLUSTER);
        // The policy now allows port 80 as well.
        let wider = CLUSTER.replace("ports: [{port: 5432}]", "ports: [{port: 5432}, {port: 80}]");
        let index = Index::from_objects(parse_str(&wider, "t").unwrap()).unwrap();
        b.applied();
        b.publish(index.clone(), PolicyGraph::build_for(&index, Some("n1")));
        let denied = pkt("d ingress/x/db", "10.0.0.1", "10.0.0.2", 80);
        let r = b.record(&denied).unwrap();
        assert_eq!((r.generation, r.judged_by), (1, JudgedBy::Previous));
        assert_eq!(r.isolated_by, vec!["x/db-from-web".to_string()]);
        // One more batch: generation 1 is gone, and nothing left says why it was denied.
        b.applied();
        b.publish(index.clone(), PolicyGraph::build_for(&index, Some("n1")));
        let r = b.record(&denied).unwrap();
        assert_eq!((r.generation, r.judged_by), (3, JudgedBy::Changed));
        assert!(r.isolated_by.is_empty());
    }

    #[test]
    fn a_generation_not_published_in_between_is_not_asked() {
        let b = board(CLUSTER);
        let wider = CLUSTER.replace("ports: [{port: 5432}]", "ports: [{port: 5432}, {port: 80}]");
        let index = Index::from_objects(parse_str(&wider, "t").unwrap()).unwrap();
        // Two batches, the first not published (nothing wanted records then): generation
        // 1 agrees with the kernel's denial but may not be what judged the packet.
        b.applied();
        b.applied();
        b.publish(index.clone(), PolicyGraph::build_for(&index, Some("n1")));
        let r = b
            .record(&pkt("d ingress/x/db", "10.0.0.1", "10.0.0.2", 80))
            .unwrap();
        assert_eq!((r.generation, r.judged_by), (3, JudgedBy::Changed));
    }

    #[test]
    fn asking_wakes_the_loop_until_the_kernel_generation_is_published() {
        use std::sync::atomic::AtomicUsize;
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        let b = Arc::new(Board::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        assert!(!b.wanted());
        // Nothing applied yet, nothing published: asking wakes and waits out its timeout.
        b.fresh(Duration::from_millis(1));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(b.wanted());
        let index = Index::from_objects(parse_str(CLUSTER, "t").unwrap()).unwrap();
        b.applied();
        let (b2, i2) = (b.clone(), index.clone());
        let publisher = std::thread::spawn(move || {
            b2.publish(i2.clone(), PolicyGraph::build_for(&i2, Some("n1")));
        });
        b.fresh(Duration::from_secs(30));
        publisher.join().unwrap();
        assert_eq!(b.generation(), Some(1));
        // Up to date: asking again does not wake the loop.
        let before = woken.load(Ordering::SeqCst);
        b.fresh(Duration::from_secs(30));
        assert_eq!(woken.load(Ordering::SeqCst), before);
    }

    #[test]
    fn a_packet_a_tier_decided_names_the_tier_rule() {
        let cnp = r#"
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: no-db-to-web}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress:
    - name: deny-db
      action: Deny
      from: [{pods: {podSelector: {matchLabels: {app: db}}}}]
"#;
        // x/web is isolated by no NetworkPolicy: its chain is the tier's alone.
        let b = board(&format!("{CLUSTER}{cnp}"));
        let r = b
            .record(&pkt("d ingress/x/web", "10.0.0.2", "10.0.0.1", 80))
            .unwrap();
        assert_eq!(
            (r.verdict, r.judged_by),
            (LogVerdict::Denied, JudgedBy::Current)
        );
        assert!(r.isolated_by.is_empty(), "{r:?}");
        assert_eq!(r.tiers.len(), 1, "{:?}", r.tiers);
        assert!(
            r.tiers[0].starts_with("Admin: no-db-to-web ingress[0] deny-db")
                && r.tiers[0].ends_with("Deny"),
            "{:?}",
            r.tiers
        );
    }

    #[test]
    fn prefixes_of_other_chains_are_not_guessed() {
        assert_eq!(
            Board::default().record(&pkt("d ingress/x/db", "10.0.0.1", "10.0.0.2", 1)),
            Err(Unmapped::NoState)
        );
        let b = board(CLUSTER);
        // x/web is not isolated: it has no chain.
        assert!(matches!(
            b.record(&pkt("d ingress/x/web", "10.0.0.2", "10.0.0.1", 1)),
            Err(Unmapped::UnknownPrefix(_))
        ));
    }
}
