//! What the audited policies (`nftpol.io/mode: audit`) would change about one end of a
//! connection: the end as the audited view judges it, and, where that differs from the
//! enforced verdict, the audited policies that make the difference.
//!
//! Owns naming those policies. Must not judge anything itself: both verdicts are
//! [`end_of`]'s, on the graph's two views of the pod.

use std::net::IpAddr;

use super::{end_of, End};
use crate::graph::{PodNode, PolicyGraph};
use crate::index::Index;
use crate::policy::{Direction, Mode, Protocol};

/// One end as the audited view judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedEnd {
    pub end: End,
    /// When the audited verdict differs from the enforced one: the audited policies
    /// that make the difference (`ns/name` for a NetworkPolicy, the name of a
    /// ClusterNetworkPolicy); empty when the verdicts agree.
    pub policies: Vec<String>,
}

/// Whether `id` names an audited policy: `ns/name` a NetworkPolicy, a bare name a
/// ClusterNetworkPolicy (whose names cannot hold `/`).
pub fn is_audited(index: &Index, id: &str) -> bool {
    match id.split_once('/') {
        Some((ns, name)) => index.policy(ns, name).map(|p| p.policy.mode) == Some(Mode::Audit),
        None => index.cnp(id).map(|c| c.policy.mode) == Some(Mode::Audit),
    }
}

/// The end of `pod` in `dir` as its audited view judges it, when audited policies change
/// the pod in that direction; `enforced_allowed` is the enforced verdict.
#[allow(clippy::too_many_arguments)]
pub fn audited_end(
    index: &Index,
    graph: &PolicyGraph,
    pod: &PodNode,
    dir: Direction,
    other: IpAddr,
    protocol: Protocol,
    port: u16,
    enforced_allowed: bool,
) -> Option<AuditedEnd> {
    let audited = pod.audited_in(dir)?;
    let end = end_of(index, graph, audited, dir, other, protocol, port);
    let policies = match end.allowed == enforced_allowed {
        true => Vec::new(),
        false => difference(index, graph, audited, &end, dir, other, protocol, port),
    };
    Some(AuditedEnd { end, policies })
}

/// The audited policies behind the audited verdict `end`: the audited ClusterNetworkPolicy
/// whose rule decided, else (NetworkPolicy decided) the audited policies that allow it
/// (an allow) or isolate the pod (a deny); failing both, every audited policy that
/// selects the pod in `dir`.
#[allow(clippy::too_many_arguments)]
fn difference(
    index: &Index,
    graph: &PolicyGraph,
    audited: &PodNode,
    end: &End,
    dir: Direction,
    other: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Vec<String> {
    let audit = |id: &&str| is_audited(index, id);
    let decided_by = end.tiers.last().and_then(|s| s.rule.as_ref());
    if let Some(rule) = decided_by.filter(|r| audit(&r.policy.as_str())) {
        return vec![rule.policy.clone()];
    }
    let iso = audited.isolation(dir);
    let mut out: Vec<&str> = match (end.allowed, iso) {
        (true, Some(iso)) => iso
            .allows
            .iter()
            .filter(|a| graph.peer_contains(a.peer, other) && a.ports.contains(protocol, port))
            .map(|a| a.origin.policy.as_str())
            .filter(audit)
            .collect(),
        (false, Some(iso)) => iso
            .isolated_by
            .iter()
            .map(String::as_str)
            .filter(audit)
            .collect(),
        (_, None) => Vec::new(),
    };
    if out.is_empty() {
        let side = audited.tiers.side(dir);
        out = iso
            .iter()
            .flat_map(|i| i.isolated_by.iter())
            .chain(side.admin.policies.iter())
            .chain(side.baseline.policies.iter())
            .map(String::as_str)
            .filter(audit)
            .collect();
    }
    out.sort_unstable();
    out.dedup();
    out.into_iter().map(str::to_string).collect()
}
