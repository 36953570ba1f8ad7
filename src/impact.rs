//! Which pods a change can affect: the bridge from "an object changed" to "recompute
//! these pods of the policy graph", so that a one-pod change costs work in proportion to
//! what it touches, not to the size of the cluster.
//!
//! Every function over-approximates (a pod named here may come out unchanged) and never
//! under-approximates: a pod whose graph node could differ after the change is always
//! named. The property test `incremental_equals_full` checks that.

use std::collections::BTreeSet;

use crate::cnp::{self, ClusterPolicy};
use crate::graph::PolicyGraph;
use crate::index::{Index, NodeInfo, PodInfo, NAME_LABEL};
use crate::policy::{Direction, Peer, Policy, PortMatch, Rule};
use crate::selector::Labels;

pub use crate::index::PodKey;

/// One change, with the object before and after (reduced as the index holds it).
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Pod {
        old: Option<&'a PodInfo>,
        new: Option<&'a PodInfo>,
    },
    Namespace {
        name: &'a str,
        old: Option<&'a Labels>,
        new: Option<&'a Labels>,
    },
    Policy {
        old: Option<&'a Policy>,
        new: Option<&'a Policy>,
    },
    ClusterPolicy {
        old: Option<&'a ClusterPolicy>,
        new: Option<&'a ClusterPolicy>,
    },
    Node {
        old: Option<&'a NodeInfo>,
        new: Option<&'a NodeInfo>,
    },
}

fn in_scope(p: &PodInfo, node: Option<&str>) -> bool {
    node.is_none() || p.node.as_deref() == node
}

/// Pods in scope that `policy` selects, now.
fn selected_by(index: &Index, node: Option<&str>, policy: &Policy, out: &mut BTreeSet<PodKey>) {
    for p in index.pods_in_namespace(&policy.namespace) {
        if in_scope(p, node) && policy.pod_selector.matches(&p.labels) {
            out.insert(p.key());
        }
    }
}

fn has_named_port(rule: &Rule) -> bool {
    rule.ports
        .iter()
        .flatten()
        .any(|p| matches!(p.port, PortMatch::Name(_)))
}

/// Whether a pod (with its namespace's labels) could be a member of a rule's peers.
fn rule_could_hold(
    rule: &Rule,
    dir: Direction,
    policy_ns: &str,
    pod: &PodInfo,
    ns_labels: &Labels,
) -> bool {
    let named_egress = dir == Direction::Egress && has_named_port(rule);
    match &rule.peers {
        // Every address: pod membership only matters for named egress ports.
        None => named_egress,
        Some(peers) => peers.iter().any(|peer| match peer {
            Peer::Pods { namespaces, pods } => {
                let ns_ok = match namespaces {
                    None => pod.namespace == policy_ns,
                    Some(sel) => sel.matches(ns_labels),
                };
                ns_ok && pods.matches(&pod.labels)
            }
            Peer::Block { .. } => named_egress,
        }),
    }
}

/// A namespace relabel, for ClusterNetworkPolicies: its pods become or stop being
/// subjects of a policy whose subject reads namespace labels, and the subjects of a
/// policy whose peer picks namespaces by label gain or lose its pods.
fn namespace_cnps(
    index: &Index,
    node: Option<&str>,
    name: &str,
    old: &Labels,
    new: &Labels,
    out: &mut BTreeSet<PodKey>,
) {
    let flips = |sel: &crate::selector::Selector| sel.matches(old) != sel.matches(new);
    // Only a namespace that holds policy pods can change a peer's members.
    let holds_pods = index.pods_in_namespace(name).any(PodInfo::is_policy_pod);
    for e in index.cnps() {
        let c = &e.policy;
        let subject_flips = match &c.subject {
            cnp::Subject::Namespaces(sel) => flips(sel),
            cnp::Subject::Pods { namespaces, .. } => flips(namespaces),
        };
        if subject_flips && (!c.ingress.is_empty() || !c.egress.is_empty()) {
            for p in index.pods_in_namespace(name) {
                if in_scope(p, node) && p.is_policy_pod() {
                    out.insert(p.key());
                }
            }
        }
        let peer_flips = holds_pods
            && c.ingress
                .iter()
                .chain(&c.egress)
                .flat_map(|r| &r.peers)
                .any(|p| match p {
                    cnp::Peer::Namespaces(sel) => flips(sel),
                    cnp::Peer::Pods { namespaces, .. } => flips(namespaces),
                    _ => false,
                });
        if peer_flips {
            subjects_of(index, node, c, out);
        }
    }
}

fn namespace_labels(index: &Index, ns: &str) -> Labels {
    index
        .namespace_labels(ns)
        .cloned()
        .unwrap_or_else(|| [(NAME_LABEL.to_string(), ns.to_string())].into())
}

/// Pods in scope that a ClusterNetworkPolicy's subject selects, now (host-network pods
/// never are; pods without an address are not in the graph at all).
fn subjects_of(index: &Index, node: Option<&str>, cnp: &ClusterPolicy, out: &mut BTreeSet<PodKey>) {
    if cnp.ingress.is_empty() && cnp.egress.is_empty() {
        return;
    }
    for p in index.pods() {
        if in_scope(p, node)
            && p.is_policy_pod()
            && crate::graph::subject_selects(&cnp.subject, p, &index.effective_labels(&p.namespace))
        {
            out.insert(p.key());
        }
    }
}

/// Whether a pod (a policy pod, with its namespace's labels) is a member of a
/// ClusterNetworkPolicy peer. Only namespaces and pods peers hold pods by who they are;
/// networks hold addresses whatever owns them, nodes hold Node addresses.
fn cnp_peer_holds(peer: &cnp::Peer, pod: &PodInfo, ns_labels: &Labels) -> bool {
    match peer {
        cnp::Peer::Namespaces(sel) => sel.matches(ns_labels),
        cnp::Peer::Pods { namespaces, pods } => {
            namespaces.matches(ns_labels) && pods.matches(&pod.labels)
        }
        cnp::Peer::Networks(_) | cnp::Peer::Nodes(_) | cnp::Peer::DomainNames(_) => false,
    }
}

fn has_named(rule: &cnp::Rule) -> bool {
    rule.ports
        .iter()
        .flatten()
        .any(|p| matches!(p, cnp::Port::Named(_)))
}

/// The ClusterNetworkPolicies whose tiers can change when one pod goes from `old` to
/// `new`: a peer gains or loses it, or holds it and its addresses (or, for an egress
/// named port, its container ports) changed.
fn cnps_touched_by_pod<'i>(
    index: &'i Index,
    old: Option<&PodInfo>,
    new: Option<&PodInfo>,
) -> Vec<&'i ClusterPolicy> {
    let version = |p: Option<&PodInfo>| {
        p.filter(|p| p.is_policy_pod())
            .map(|p| (p.clone(), namespace_labels(index, &p.namespace)))
    };
    let (old, new) = (version(old), version(new));
    if old.is_none() && new.is_none() {
        return Vec::new();
    }
    let holds = |peer: &cnp::Peer, v: &Option<(PodInfo, Labels)>| {
        v.as_ref().is_some_and(|(p, l)| cnp_peer_holds(peer, p, l))
    };
    let same_ips = old.as_ref().map(|v| &v.0.ips) == new.as_ref().map(|v| &v.0.ips);
    let same_ports = old.as_ref().map(|v| &v.0.ports) == new.as_ref().map(|v| &v.0.ports);
    index
        .cnps()
        .map(|e| &e.policy)
        .filter(|c| {
            let rules = c.ingress.iter().map(|r| (r, false));
            let rules = rules.chain(c.egress.iter().map(|r| (r, true)));
            rules.into_iter().any(|(r, egress)| {
                r.peers.iter().any(|peer| {
                    let (was, is) = (holds(peer, &old), holds(peer, &new));
                    was != is || (was && (!same_ips || (egress && has_named(r) && !same_ports)))
                })
            })
        })
        .collect()
}

/// The pods in scope whose graph node may change through `change`. `index` may hold the
/// state before or after the change: both versions of the object are in `change`.
/// `graph` may lag behind the index by pods already named (a batching `NodeState`):
/// a pod in scope that it does not hold is one of those, so no one else is missed.
pub fn affected(
    index: &Index,
    graph: &PolicyGraph,
    node: Option<&str>,
    change: Change,
) -> BTreeSet<PodKey> {
    let mut out = BTreeSet::new();
    match change {
        Change::Policy { old, new } => {
            for p in [old, new].into_iter().flatten() {
                selected_by(index, node, p, &mut out);
            }
        }
        Change::ClusterPolicy { old, new } => {
            for p in [old, new].into_iter().flatten() {
                subjects_of(index, node, p, &mut out);
            }
        }
        Change::Node { old, new } => node_changed(index, node, old, new, &mut out),
        Change::Pod { old, new } => pod_changed(index, graph, node, old, new, &mut out),
        Change::Namespace { name, old, new } => {
            // An absent version is the namespace the index implies for its pods.
            let implied = crate::index::implied_labels(name);
            let versions = [old.unwrap_or(&implied), new.unwrap_or(&implied)];
            namespace_cnps(index, node, name, versions[0], versions[1], &mut out);
            let selects = |peer: &Peer| matches!(peer, Peer::Pods { namespaces: Some(sel), .. } if versions.iter().any(|l| sel.matches(l)));
            policies_touched(index, graph, node, &mut out, |_, _, rule| {
                rule.peers.iter().flatten().any(selects)
            });
        }
    }
    out
}

/// The subjects of ClusterNetworkPolicies whose node peers select the node before or
/// after, when its labels or addresses changed.
fn node_changed(
    index: &Index,
    node: Option<&str>,
    old: Option<&NodeInfo>,
    new: Option<&NodeInfo>,
    out: &mut BTreeSet<PodKey>,
) {
    let same_addrs = old.map(|n| &n.addresses) == new.map(|n| &n.addresses);
    let same_labels = old.map(|n| &n.labels) == new.map(|n| &n.labels);
    if same_addrs && same_labels {
        return;
    }
    for e in index.cnps() {
        let touched = e.policy.egress.iter().flat_map(|r| &r.peers).any(|peer| {
            let cnp::Peer::Nodes(sel) = peer else {
                return false;
            };
            let (was, is) = (
                old.is_some_and(|n| sel.matches(&n.labels)),
                new.is_some_and(|n| sel.matches(&n.labels)),
            );
            was != is || (was && !same_addrs)
        });
        if touched {
            subjects_of(index, node, &e.policy, out);
        }
    }
}

/// The pod itself (in scope), the subjects of ClusterNetworkPolicies whose peers it
/// joins or leaves, and the pods selected by NetworkPolicies whose rules could hold
/// either version of it.
fn pod_changed(
    index: &Index,
    graph: &PolicyGraph,
    node: Option<&str>,
    old: Option<&PodInfo>,
    new: Option<&PodInfo>,
    out: &mut BTreeSet<PodKey>,
) {
    for p in [old, new].into_iter().flatten() {
        if in_scope(p, node) {
            out.insert(p.key());
        }
    }
    for c in cnps_touched_by_pod(index, old, new) {
        subjects_of(index, node, c, out);
    }
    let versions: Vec<(&PodInfo, Labels)> = [old, new]
        .into_iter()
        .flatten()
        .filter(|p| p.is_policy_pod())
        .map(|p| (p, namespace_labels(index, &p.namespace)))
        .collect();
    if versions.is_empty() {
        return;
    }
    policies_touched(index, graph, node, out, |ns, dir, rule| {
        versions
            .iter()
            .any(|(p, labels)| rule_could_hold(rule, dir, ns, p, labels))
    });
}

/// Adds the pods selected by each NetworkPolicy in a namespace that holds pods in scope
/// (policies elsewhere cannot select them) with a rule that `touches` (given the policy's
/// namespace and the rule's direction).
fn policies_touched(
    index: &Index,
    graph: &PolicyGraph,
    node: Option<&str>,
    out: &mut BTreeSet<PodKey>,
    touches: impl Fn(&str, Direction, &crate::policy::Rule) -> bool,
) {
    let local_ns: BTreeSet<&str> = graph.pods.keys().map(|(ns, _)| ns.as_str()).collect();
    for ns in &local_ns {
        for entry in index.policies_in_namespace(ns) {
            let policy = &entry.policy;
            let hit = [Direction::Ingress, Direction::Egress]
                .into_iter()
                .any(|dir| {
                    let mut rules = policy.rules(dir).into_iter().flatten();
                    rules.any(|rule| touches(&policy.namespace, dir, rule))
                });
            if hit {
                selected_by(index, node, policy, out);
            }
        }
    }
}
