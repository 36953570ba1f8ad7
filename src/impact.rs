//! Which pods a change can affect: the bridge from "an object changed" to "recompute
//! these pods of the policy graph", so that a one-pod change costs work in proportion to
//! what it touches, not to the size of the cluster.
//!
//! Every function over-approximates (a pod named here may come out unchanged) and never
//! under-approximates: a pod whose graph node could differ after the change is always
//! named. The property test `incremental_equals_full` checks that.

use std::collections::BTreeSet;

use crate::graph::PolicyGraph;
use crate::index::{Index, PodInfo, NAME_LABEL};
use crate::policy::{Direction, Peer, Policy, PortMatch, Rule};
use crate::selector::Labels;

pub type PodKey = (String, String);

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

fn namespace_labels(index: &Index, ns: &str) -> Labels {
    index
        .namespace_labels(ns)
        .cloned()
        .unwrap_or_else(|| [(NAME_LABEL.to_string(), ns.to_string())].into())
}

/// The pods in scope whose graph node may change through `change`. `index` may hold the
/// state before or after the change: both versions of the object are in `change`.
pub fn affected(
    index: &Index,
    graph: &PolicyGraph,
    node: Option<&str>,
    change: Change,
) -> BTreeSet<PodKey> {
    let mut out = BTreeSet::new();
    // Namespaces that hold pods in scope: policies elsewhere cannot select them.
    let local_ns: BTreeSet<&str> = graph.pods.keys().map(|(ns, _)| ns.as_str()).collect();
    match change {
        Change::Policy { old, new } => {
            for p in [old, new].into_iter().flatten() {
                selected_by(index, node, p, &mut out);
            }
        }
        Change::Pod { old, new } => {
            for p in [old, new].into_iter().flatten() {
                if in_scope(p, node) {
                    out.insert(p.key());
                }
            }
            let versions: Vec<(&PodInfo, Labels)> = [old, new]
                .into_iter()
                .flatten()
                .filter(|p| p.is_policy_pod())
                .map(|p| (p, namespace_labels(index, &p.namespace)))
                .collect();
            if versions.is_empty() {
                return out;
            }
            for ns in &local_ns {
                for entry in index.policies_in_namespace(ns) {
                    let policy = &entry.policy;
                    let touches = [Direction::Ingress, Direction::Egress]
                        .into_iter()
                        .any(|dir| {
                            policy.rules(dir).into_iter().flatten().any(|rule| {
                                versions.iter().any(|(p, labels)| {
                                    rule_could_hold(rule, dir, &policy.namespace, p, labels)
                                })
                            })
                        });
                    if touches {
                        selected_by(index, node, policy, &mut out);
                    }
                }
            }
        }
        Change::Namespace { name, old, new } => {
            let implied: Labels = [(NAME_LABEL.to_string(), name.to_string())].into();
            let versions: Vec<&Labels> = [old.unwrap_or(&implied), new.unwrap_or(&implied)].into();
            for ns in &local_ns {
                for entry in index.policies_in_namespace(ns) {
                    let policy = &entry.policy;
                    let touches = [Direction::Ingress, Direction::Egress].into_iter().any(|dir| {
                        policy.rules(dir).into_iter().flatten().flat_map(|r| r.peers.iter().flatten()).any(|peer| {
                            matches!(peer, Peer::Pods { namespaces: Some(sel), .. } if versions.iter().any(|l| sel.matches(l)))
                        })
                    });
                    if touches {
                        selected_by(index, node, policy, &mut out);
                    }
                }
            }
        }
    }
    out
}
