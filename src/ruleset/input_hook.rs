//! Pod -> its own node: the input hook, which judges what this node's pods send to the
//! node's own addresses by their egress tiers (ClusterNetworkPolicy has no own-node
//! exception, so an Admin or Baseline Deny drops it).
//!
//! ```text
//! chain input (hook input): ct state established,related accept; held drops;
//!                           ip saddr vmap @input4; icmpv6 nd accept; ip6 saddr vmap @input6
//! chain input/<ns>/<pod>:   Admin Accept lookups accept; Admin Deny lookups goto
//!                           egress/<ns>/<pod>/drop; accept when NetworkPolicy isolates the
//!                           pod's egress (it keeps its own-node allowance); else Baseline
//!                           Deny lookups goto the same drop tail; falls through: accepted
//! ```
//!
//! The lookups are the pod's egress tier sets (they are keyed on the destination, which
//! here is the node), so the input chain adds no sets. Only pods with egress tiers are in
//! the input maps, and the input chain and maps exist only when some pod has egress tiers:
//! a NetworkPolicy-only cluster gets the same table as before, with nothing on the input
//! hook, and its pods keep reaching their own node whatever NetworkPolicy says.
//!
//! Owns the input hook's objects only; the tier lookups themselves are `tier_chain`'s.

use super::audit_chain;
use super::base::{established, held};
use super::model::*;
use super::names;
use super::names::AuditChain;
use super::options::LogOptions;
use super::tier_chain::{self, View};
use crate::graph::{PodNode, PolicyGraph};
use crate::policy::Direction;

/// Whether `pod` is dispatched to the input hook: it has egress tiers, or its audited
/// view has and differs from it in egress.
pub(super) fn dispatched(pod: &PodNode) -> bool {
    !pod.tiers.egress.is_empty()
        || pod
            .audited_in(Direction::Egress)
            .is_some_and(|a| !a.tiers.egress.is_empty())
}

/// Whether the table has an input hook at all: some pod has egress tiers.
pub(super) fn wanted(graph: &PolicyGraph) -> bool {
    graph.pods.values().any(dispatched)
}

/// The input base chain.
pub(super) fn base_chain() -> Chain {
    let vmap = |family, map: &str| {
        Rule::new(RuleKind::DispatchVmap {
            family,
            addr: Addr::Saddr,
            map: map.into(),
        })
    };
    Chain {
        name: names::CHAIN_INPUT.into(),
        base: Some(BaseChain {
            hook: Hook::Input,
            priority: 0,
            policy: Verdict::Accept,
        }),
        comment: Some("pods with ClusterNetworkPolicy egress rules -> this node".into()),
        rules: vec![
            established(),
            held(IpFamily::V4),
            held(IpFamily::V6),
            vmap(IpFamily::V4, names::INPUT_MAPS[0]),
            Rule::with_comment(
                RuleKind::Icmpv6NdAccept,
                "IPv6 neighbour discovery always passes",
            ),
            vmap(IpFamily::V6, names::INPUT_MAPS[1]),
        ],
    }
}

/// The input maps: every dispatched pod's addresses to its input chain.
pub(super) fn maps(graph: &PolicyGraph) -> Vec<Map> {
    let mut out: Vec<Map> = names::INPUT_MAPS
        .iter()
        .zip([KeyType::Ipv4Addr, KeyType::Ipv6Addr])
        .map(|(name, key)| Map {
            name: (*name).into(),
            key: vec![key],
            comment: Some("pod address -> its input chain".into()),
            elements: Vec::new(),
        })
        .collect();
    for pod in graph.pods.values().filter(|p| dispatched(p)) {
        let chain = names::pod_input_chain(&pod.namespace, &pod.name);
        for ip in &pod.ips {
            let field = match ip {
                std::net::IpAddr::V4(a) => Field::Ipv4(*a, *a),
                std::net::IpAddr::V6(a) => Field::Ipv6(*a, *a),
            };
            out[ip.is_ipv6() as usize].elements.push(MapElement {
                key: Key::from([field]),
                verdict: Verdict::Jump(chain.clone()),
            });
        }
    }
    for m in &mut out {
        m.elements.sort();
        // Two pods claiming one address: keep the first, as the dispatch maps do.
        m.elements.dedup_by(|b, a| a.key == b.key);
    }
    out
}

/// The input chain of `pod`, when it is dispatched; and when audited policies change
/// its egress, the two chains that judge each decision again with its audited view
/// (`input/<ns>/<pod>/audit-allowed` and `…/audit-denied`, which end in the egress audit
/// chains and drop tail, so the records name the egress chain as the forward path's do).
pub(super) fn pod_chains(pod: &PodNode, log: &LogOptions) -> Vec<Chain> {
    if !dispatched(pod) {
        return Vec::new();
    }
    let dir = Direction::Egress;
    let (ns, name) = (&pod.namespace, &pod.name);
    let audited = pod.audited_in(dir);
    let mut ends = tier_chain::Ends::enforced(pod, dir, Verdict::Accept, log);
    let judge = |which| Verdict::Goto(names::pod_input_audit_chain(ns, name, which));
    if audited.is_some() {
        ends.allow = judge(AuditChain::Allowed);
        ends.deny = judge(AuditChain::Denied);
    }
    let end = audited.map(|_| ends.allow.clone());
    let comment = format!("pod {} -> this node", pod.id());
    let mut out = vec![input_chain(
        pod,
        View::Enforced,
        &ends,
        end,
        names::pod_input_chain(ns, name),
        comment,
    )];
    let Some(audited) = audited else {
        return out;
    };
    let [mut allowed, denied] = audit_chain::judge_ends(pod, dir);
    allowed.allow = Verdict::Accept;
    for (ends, which) in [(allowed, AuditChain::Allowed), (denied, AuditChain::Denied)] {
        let comment = format!(
            "pod {} -> this node: as the audited policies would judge it",
            pod.id()
        );
        let end = Some(ends.allow.clone());
        let chain = names::pod_input_audit_chain(ns, name, which);
        out.push(input_chain(
            audited,
            View::Audited,
            &ends,
            end,
            chain,
            comment,
        ));
    }
    out
}

/// One input chain of `pod` (in `view`): Admin lookups, NetworkPolicy's own-node
/// allowance when it isolates the pod's egress, Baseline Deny lookups, then `end` if any
/// (else what falls through is accepted by the hook's policy).
fn input_chain(
    pod: &PodNode,
    view: View,
    ends: &tier_chain::Ends,
    end: Option<Verdict>,
    name: String,
    comment: String,
) -> Chain {
    let tiers = tier_chain::tier_rules(pod, Direction::Egress, view, ends);
    let mut rules = tiers.admin;
    if let Some(iso) = pod.isolation(Direction::Egress) {
        rules.push(Rule::with_comment(
            RuleKind::Verdict(ends.allow.clone()),
            names::comment(&format!(
                "NetworkPolicy lets a pod reach its own node ({})",
                iso.isolated_by.join(", ")
            )),
        ));
    }
    rules.extend(tiers.baseline);
    rules.extend(end.map(|v| Rule::new(RuleKind::Verdict(v))));
    Chain {
        name,
        base: None,
        comment: Some(names::comment(&comment)),
        rules,
    }
}

/// Puts the input objects of `graph` into `model`: the base chain and the maps when
/// wanted, neither when not. Pod input chains are the caller's (per pod).
pub(super) fn place(model: &mut Ruleset, graph: &PolicyGraph) {
    model.retain_chains(|c| c.base.as_ref().is_none_or(|b| b.hook != Hook::Input));
    model.retain_maps(|m| !names::INPUT_MAPS.contains(&m.name.as_str()));
    if wanted(graph) {
        model.put_chain(base_chain());
        model.merge_maps(maps(graph));
    }
}
