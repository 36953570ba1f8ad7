//! Verdict logs: what a packet logged by a pod chain means, in the words of `explain`.
//!
//! ```text
//! controller's board --(after an applied batch)--> Generations::publish(Snapshot g)
//! NFLOG packet (prefix "d ingress/x/a", 5-tuple) --Generations::record--> Record
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
//! little later, and a batch may have landed in between. [`Generations`] keeps the last
//! two: a record is explained by the newest one whose verdict agrees with the
//! kernel's, and says which (`generation`, `judged_by`); when neither agrees, it says the
//! policy changed rather than give a reason that did not apply.
//!
//! When to publish, and sharing the generations between the sync loop and the reader
//! (a lock, a wake-up), is the controller's (`controller::board`); this module is pure.

use crate::index::PodKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::explain::{self, TierStep};
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
    /// What the node's DNS proxy had learned for `domainNames` rules when published:
    /// records of connections to those addresses name the rule and the domain.
    learned: crate::fqdn::facts::Learned,
}

impl Snapshot {
    pub fn new(generation: u64, index: Index, graph: PolicyGraph) -> Self {
        let mut chains = HashMap::new();
        for (key, pod) in &graph.pods {
            for dir in [Direction::Ingress, Direction::Egress] {
                let audited = pod.audited_in(dir).is_some();
                if pod.isolation(dir).is_none() && pod.tiers.side(dir).is_empty() && !audited {
                    continue;
                }
                let chain = names::pod_chain(dir, &pod.namespace, &pod.name);
                let mut verdicts = vec![LogVerdict::Denied, LogVerdict::Allowed];
                if audited {
                    verdicts.extend([LogVerdict::WouldDeny, LogVerdict::WouldAllow]);
                }
                for v in verdicts {
                    chains.insert(names::log_prefix(v, &chain), (v, dir, key.clone()));
                }
            }
        }
        Snapshot {
            generation,
            index,
            graph,
            chains,
            learned: Default::default(),
        }
    }

    /// With what the DNS proxy has learned (see [`Snapshot::learned`]).
    pub fn with_learned(mut self, learned: crate::fqdn::facts::Learned) -> Self {
        self.learned = learned;
        self
    }

    /// The index of this generation: what the kernel enforced.
    pub fn index(&self) -> &Index {
        &self.index
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
    /// The other side when it is a pod of the cluster (`None`: an address only).
    pub peer: Option<PodKey>,
    pub peer_ip: IpAddr,
    /// The IP protocol number ([`Record::protocol_name`] says it in words).
    pub protocol: u8,
    pub port: Option<u16>,
    /// The client's port (the pod's for egress, the peer's for ingress): with the
    /// addresses and `port`, the connection's 5-tuple.
    pub src_port: Option<u16>,
    pub isolated_by: Vec<String>,
    /// For an allowed connection: each rule that allows it (`ns/policy ingress[0].from[1]
    /// (peer: ...)`), as `explain` names them.
    pub allowed_by: Vec<String>,
    /// The ClusterNetworkPolicy tiers' walk for this end, as `explain` gives it (printed
    /// `Admin: no-y-into-x ingress[1] deny-y: Deny`); empty when no tier selects the pod.
    /// For a `would-deny` or `would-allow` record these three say what the audited
    /// view would do, and why.
    pub tiers: Vec<TierStep>,
    /// For a `would-deny` or `would-allow` record: the audited policies that make the
    /// difference (see `explain::audited_end`); empty otherwise.
    pub audit_policies: Vec<String>,
    /// The generation whose graph gave the reasons.
    pub generation: u64,
    pub judged_by: JudgedBy,
}

impl Record {
    /// `tcp`, `udp`, `sctp`, or the protocol number.
    pub fn protocol_name(&self) -> String {
        protocol_of(self.protocol)
            .map(|p| p.to_string())
            .unwrap_or_else(|| self.protocol.to_string())
    }

    /// `ns/name` of the peer pod, else its address.
    pub fn peer_name(&self) -> String {
        match &self.peer {
            Some((ns, name)) => format!("{ns}/{name}"),
            None => self.peer_ip.to_string(),
        }
    }
}

/// Why a packet gave no record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmapped {
    #[error("no state published yet")]
    NoState,
    #[error("log prefix {0:?} names no chain of this node")]
    UnknownPrefix(String),
}

/// The last two published generations: the newest, and the one before it.
#[derive(Default, Clone)]
pub struct Generations {
    current: Option<Arc<Snapshot>>,
    previous: Option<Arc<Snapshot>>,
}

fn protocol_of(n: u8) -> Option<Protocol> {
    Protocol::ALL.into_iter().find(|p| p.number() == n)
}

/// What a generation says of a logged packet.
struct Judged {
    allowed: bool,
    isolated_by: Vec<String>,
    allowed_by: Vec<String>,
    /// The ClusterNetworkPolicy tiers' walk, as `explain` gives it.
    tiers: Vec<TierStep>,
    audit: Vec<String>,
}

/// What `snap` says of `pkt` in the chain's direction, or `None` when the chain is not in
/// `snap`. For a would-deny or would-allow packet, `allowed` is the enforced verdict, and
/// the reasons are the audited view's; `None` also when the audited view agrees with the
/// enforced one (the generation did not log this).
fn judge(
    snap: &Snapshot,
    pkt: &Packet,
    dir: Direction,
    key: &PodKey,
    verdict: LogVerdict,
) -> Option<Judged> {
    let pod = snap.graph.pods.get(key)?;
    let audit = matches!(verdict, LogVerdict::WouldDeny | LogVerdict::WouldAllow);
    if audit && pod.audited_in(dir).is_none() {
        return None;
    }
    if pod.isolation(dir).is_none() && pod.tiers.side(dir).is_empty() && !audit {
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
            audit: Vec::new(),
        });
    };
    let (index, graph) = (&snap.index, &snap.graph);
    let end = explain::end_of_learned(
        index,
        graph,
        pod,
        (dir, other, protocol, port),
        &snap.learned,
    );
    if !audit {
        return Some(Judged {
            allowed: end.allowed,
            isolated_by,
            allowed_by: end.allowed_by(),
            tiers: end.tiers,
            audit: Vec::new(),
        });
    }
    let a = explain::audited_end(index, graph, pod, dir, other, protocol, port, end.allowed)?;
    if a.policies.is_empty() {
        return None;
    }
    let audited = pod.audited_in(dir)?;
    Some(Judged {
        allowed: end.allowed,
        isolated_by: audited
            .isolation(dir)
            .map(|i| i.isolated_by.clone())
            .unwrap_or_default(),
        allowed_by: a.end.allowed_by(),
        tiers: a.end.tiers,
        audit: a.policies,
    })
}

impl Generations {
    /// `snap` becomes the newest; the newest before it, the previous.
    pub fn publish(&mut self, snap: Snapshot) {
        self.previous = self.current.replace(Arc::new(snap));
    }

    /// The newest snapshot, if any.
    pub fn newest(&self) -> Option<&Arc<Snapshot>> {
        self.current.as_ref()
    }

    /// The newest generation, if any.
    pub fn generation(&self) -> Option<u64> {
        self.current.as_ref().map(|s| s.generation)
    }

    /// The pods (namespace, name) of the newest generation.
    pub fn pods(&self) -> Vec<PodKey> {
        self.current
            .as_ref()
            .map(|s| s.graph.pods.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The record of one logged packet.
    pub fn record(&self, pkt: &Packet) -> Result<Record, Unmapped> {
        let current = self.current.clone().ok_or(Unmapped::NoState)?;
        let previous = self.previous.clone();
        let (verdict, dir, key) = current
            .chains
            .get(pkt.prefix)
            .or_else(|| previous.as_ref().and_then(|p| p.chains.get(pkt.prefix)))
            .cloned()
            .ok_or_else(|| Unmapped::UnknownPrefix(pkt.prefix.to_string()))?;
        let kernel_allowed = verdict.kernel_allowed();
        let mut found = None;
        // Only the generation right before the newest can have judged a packet the
        // newest did not; an older one (nothing was published in between) is not asked.
        let previous = previous.filter(|p| p.generation + 1 == current.generation);
        for (snap, by) in [
            (Some(&current), JudgedBy::Current),
            (previous.as_ref(), JudgedBy::Previous),
        ] {
            let Some(snap) = snap else { continue };
            if let Some(j) = judge(snap, pkt, dir, &key, verdict) {
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
                audit: Vec::new(),
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
            .map(|p| p.key());
        Ok(Record {
            verdict,
            direction: dir,
            namespace: key.0,
            pod: key.1,
            pod_ip,
            peer,
            peer_ip,
            protocol: pkt.protocol,
            port: pkt.dport,
            src_port: pkt.sport,
            isolated_by: judged.isolated_by,
            allowed_by: judged.allowed_by,
            tiers: judged.tiers,
            audit_policies: judged.audit,
            generation,
            judged_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{Outcome, StepTier};
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

    fn board(text: &str) -> Generations {
        let index = Index::from_objects(parse_str(text, "t").unwrap()).unwrap();
        let graph = PolicyGraph::build_for(&index, Some("n1"));
        let mut b = Generations::default();
        b.publish(Snapshot::new(1, index, graph));
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
        assert_eq!(r.peer_name(), "x/web");
        assert_eq!((r.protocol_name().as_str(), r.port), ("tcp", Some(80)));
        assert_eq!(r.isolated_by, vec!["x/db-from-web".to_string()]);
        assert_eq!((r.generation, r.judged_by), (1, JudgedBy::Current));
        let r = b
            .record(&pkt("d ingress/x/db", "192.0.2.9", "10.0.0.2", 5432))
            .unwrap();
        assert_eq!(r.peer_name(), "192.0.2.9");
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
        let mut b = board(CLUSTER);
        // The policy now allows port 80 as well.
        let wider = CLUSTER.replace("ports: [{port: 5432}]", "ports: [{port: 5432}, {port: 80}]");
        let index = Index::from_objects(parse_str(&wider, "t").unwrap()).unwrap();
        b.publish(Snapshot::new(
            2,
            index.clone(),
            PolicyGraph::build_for(&index, Some("n1")),
        ));
        let denied = pkt("d ingress/x/db", "10.0.0.1", "10.0.0.2", 80);
        let r = b.record(&denied).unwrap();
        assert_eq!((r.generation, r.judged_by), (1, JudgedBy::Previous));
        assert_eq!(r.isolated_by, vec!["x/db-from-web".to_string()]);
        // One more batch: generation 1 is gone, and nothing left says why it was denied.
        b.publish(Snapshot::new(
            3,
            index.clone(),
            PolicyGraph::build_for(&index, Some("n1")),
        ));
        let r = b.record(&denied).unwrap();
        assert_eq!((r.generation, r.judged_by), (3, JudgedBy::Changed));
        assert!(r.isolated_by.is_empty());
    }

    #[test]
    fn a_generation_not_published_in_between_is_not_asked() {
        let mut b = board(CLUSTER);
        let wider = CLUSTER.replace("ports: [{port: 5432}]", "ports: [{port: 5432}, {port: 80}]");
        let index = Index::from_objects(parse_str(&wider, "t").unwrap()).unwrap();
        // Two batches, the first not published (nothing wanted records then): generation
        // 1 agrees with the kernel's denial but may not be what judged the packet.
        b.publish(Snapshot::new(
            3,
            index.clone(),
            PolicyGraph::build_for(&index, Some("n1")),
        ));
        let r = b
            .record(&pkt("d ingress/x/db", "10.0.0.1", "10.0.0.2", 80))
            .unwrap();
        assert_eq!((r.generation, r.judged_by), (3, JudgedBy::Changed));
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
        let step = &r.tiers[0];
        assert_eq!((step.tier, step.outcome), (StepTier::Admin, Outcome::Deny));
        let line = step.to_string();
        assert!(
            line.starts_with("Admin: no-db-to-web ingress[0] deny-db") && line.ends_with("Deny"),
            "{line}"
        );
    }

    #[test]
    fn prefixes_of_other_chains_are_not_guessed() {
        assert_eq!(
            Generations::default().record(&pkt("d ingress/x/db", "10.0.0.1", "10.0.0.2", 1)),
            Err(Unmapped::NoState)
        );
        let b = board(CLUSTER);
        // x/web is not isolated: it has no chain.
        assert!(matches!(
            b.record(&pkt("d ingress/x/web", "10.0.0.2", "10.0.0.1", 1)),
            Err(Unmapped::UnknownPrefix(_))
        ));
    }

    #[test]
    fn a_connection_to_a_learned_address_names_its_domain() {
        let text = format!(
            "{CLUSTER}---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: vendors}}\nspec:\n  tier: Admin\n  priority: 5\n  subject: {{namespaces: {{}}}}\n  egress:\n  - action: Accept\n    to: [{{domainNames: [\"*.vendor.example\"]}}]\n  - action: Deny\n    to: [{{networks: [203.0.113.0/24]}}]\n"
        );
        let index = Index::from_objects(parse_str(&text, "t").unwrap()).unwrap();
        let graph = PolicyGraph::build_for(&index, Some("n1"));
        let mut learned = crate::fqdn::facts::Learned::new();
        learned.add(
            "vendors",
            0,
            "203.0.113.7".parse().unwrap(),
            "api.vendor.example",
        );
        let mut b = Generations::default();
        b.publish(Snapshot::new(1, index, graph).with_learned(learned));
        let r = b
            .record(&pkt("a egress/x/web", "10.0.0.1", "203.0.113.7", 443))
            .unwrap();
        let said = format!("{:?}", r.tiers);
        assert!(said.contains("api.vendor.example"), "{said}");
        // Not learned: the Deny rule decides.
        let r = b
            .record(&pkt("d egress/x/web", "10.0.0.1", "203.0.113.8", 443))
            .unwrap();
        assert!(!format!("{:?}", r.tiers).contains("api.vendor.example"));
        assert!(format!("{:?}", r.tiers).contains("Deny"));
    }
}
