//! The policy graph as JSON, for tools (`nftpol graph --output json`): the same content
//! as the graph's text form (peers with their addresses, then every pod's isolation and
//! allows traced to policy, rule and peer, and the ClusterNetworkPolicy tiers of pods
//! they select). A plain serializable view built from the graph; no evaluation here.
//! With a [`Listing`] (`graph --resolved`, `--learned`), each `domainNames` rule lists
//! the addresses it holds (`learned`); without one, that key is absent.

use serde::Serialize;

use crate::addr::range_text;
use crate::fqdn::facts::{Listing, Seen};
use crate::graph::tiers::{PodTiers, TierRules};
use crate::graph::{PeerRef, PolicyGraph, Ports};
use crate::policy::Direction;

#[derive(Serialize)]
struct GraphView<'a> {
    peers: Vec<PeerView<'a>>,
    pods: Vec<PodView<'a>>,
}

#[derive(Serialize)]
struct PeerView<'a> {
    id: usize,
    description: &'a str,
    /// Addresses as nft writes them: `10.0.0.0/8`, `10.0.0.1-10.0.0.5`, `fd00::1`.
    addresses: Vec<String>,
}

#[derive(Serialize)]
struct PodView<'a> {
    namespace: &'a str,
    name: &'a str,
    node: Option<&'a str>,
    ips: &'a [std::net::IpAddr],
    /// `null`: not isolated in that direction.
    ingress: Option<IsolationView<'a>>,
    egress: Option<IsolationView<'a>>,
    /// Omitted when no ClusterNetworkPolicy selects the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    tiers: Option<TiersView<'a>>,
    /// The pod as it would be with the audited policies (`nftpol.io/mode: audit`)
    /// enforced too; omitted when they change nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    audited: Option<Box<PodView<'a>>>,
}

#[derive(Serialize)]
struct TiersView<'a> {
    ingress: SideView<'a>,
    egress: SideView<'a>,
}

#[derive(Serialize)]
struct SideView<'a> {
    /// Evaluation order: ascending priority, then name, then rules as written.
    admin: TierView<'a>,
    baseline: TierView<'a>,
}

#[derive(Serialize)]
struct TierView<'a> {
    policies: &'a [String],
    rules: Vec<TierRuleView<'a>>,
    /// The `domainNames` rules (Admin egress): absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    domain_rules: Vec<DomainRuleView<'a>>,
}

#[derive(Serialize)]
struct DomainRuleView<'a> {
    /// The patterns of every `domainNames` peer of the rule.
    patterns: &'a [String],
    ports: Option<Vec<String>>,
    policy: &'a str,
    priority: i32,
    rule: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_name: Option<&'a str>,
    /// How many of `rules` come before it in evaluation order.
    position: usize,
    /// The addresses it holds, by address; only with `--resolved` or `--learned`.
    #[serde(skip_serializing_if = "Option::is_none")]
    learned: Option<Vec<LearnedView<'a>>>,
}

#[derive(Serialize)]
struct LearnedView<'a> {
    address: std::net::IpAddr,
    /// `resolved` (`--resolved`) or `kernel` (the node's learned set).
    source: &'static str,
    /// The name it was learned from; `null` from the kernel, which keeps none.
    name: Option<&'a str>,
    /// Milliseconds until the kernel expires it; `null` for `--resolved`, or an element
    /// without a timeout.
    expires_in_ms: Option<u64>,
}

fn learned_view<'a>(
    learned: &'a Listing,
    origin: &crate::graph::tiers::TierOrigin,
) -> Vec<LearnedView<'a>> {
    learned
        .rule(&origin.policy, origin.rule.unwrap_or(0))
        .map(|(address, seen)| match seen {
            Seen::Resolved { name } => LearnedView {
                address,
                source: "resolved",
                name: Some(name),
                expires_in_ms: None,
            },
            Seen::Kernel { left } => LearnedView {
                address,
                source: "kernel",
                name: None,
                expires_in_ms: left.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            },
        })
        .collect()
}

#[derive(Serialize)]
struct TierRuleView<'a> {
    /// `Accept`, `Deny` or `Pass`.
    action: &'static str,
    /// A peer id, or `null` for every address (only the fail-closed rule).
    peer: Option<usize>,
    ports: Option<Vec<String>>,
    policy: &'a str,
    priority: i32,
    /// Index in `spec.ingress`/`spec.egress`; `null` for the fail-closed rule of a
    /// policy that could not be compiled.
    rule: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_name: Option<&'a str>,
    rule_peer: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port_name: Option<&'a str>,
}

fn peer_id(peer: PeerRef) -> Option<usize> {
    match peer {
        PeerRef::Any => None,
        PeerRef::Peer(id) => Some(id),
    }
}

fn ports_view(ports: &Ports) -> Option<Vec<String>> {
    match ports {
        Ports::Any => None,
        Ports::Only(list) => Some(list.iter().map(|r| r.to_string()).collect()),
    }
}

fn tier_view<'a>(rules: &'a TierRules, learned: Option<&'a Listing>) -> TierView<'a> {
    TierView {
        policies: &rules.policies,
        rules: rules
            .rules
            .iter()
            .map(|r| TierRuleView {
                action: r.action.name(),
                peer: peer_id(r.peer),
                ports: ports_view(&r.ports),
                policy: &r.origin.policy,
                priority: r.origin.priority,
                rule: r.origin.rule,
                rule_name: r.origin.rule_name.as_deref(),
                rule_peer: r.origin.peer,
                port_name: r.origin.port_name.as_deref(),
            })
            .collect(),
        domain_rules: rules
            .domains
            .iter()
            .map(|d| DomainRuleView {
                patterns: &d.patterns,
                ports: ports_view(&d.ports),
                policy: &d.origin.policy,
                priority: d.origin.priority,
                rule: d.origin.rule,
                rule_name: d.origin.rule_name.as_deref(),
                position: d.position,
                learned: learned.map(|l| learned_view(l, &d.origin)),
            })
            .collect(),
    }
}

fn tiers<'a>(t: &'a PodTiers, learned: Option<&'a Listing>) -> Option<TiersView<'a>> {
    if t.is_empty() {
        return None;
    }
    let side = |s: &'a crate::graph::tiers::TierSide| SideView {
        admin: tier_view(&s.admin, learned),
        baseline: tier_view(&s.baseline, learned),
    };
    Some(TiersView {
        ingress: side(&t.ingress),
        egress: side(&t.egress),
    })
}

#[derive(Serialize)]
struct IsolationView<'a> {
    isolated_by: &'a [String],
    allows: Vec<AllowView<'a>>,
}

#[derive(Serialize)]
struct AllowView<'a> {
    /// A peer id, or `null` for every address.
    peer: Option<usize>,
    /// `null`: every port of every protocol; else `tcp/80`, `udp/1000-2000`, `sctp/*`.
    ports: Option<Vec<String>>,
    policy: &'a str,
    direction: Direction,
    rule: usize,
    /// Index in `from`/`to`; `null` when the rule has none.
    rule_peer: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port_name: Option<&'a str>,
}

fn isolation<'a>(iso: Option<&'a crate::graph::Isolation>) -> Option<IsolationView<'a>> {
    let iso = iso?;
    Some(IsolationView {
        isolated_by: &iso.isolated_by,
        allows: iso
            .allows
            .iter()
            .map(|a| AllowView {
                peer: match a.peer {
                    PeerRef::Any => None,
                    PeerRef::Peer(id) => Some(id),
                },
                ports: match &a.ports {
                    Ports::Any => None,
                    Ports::Only(list) => Some(list.iter().map(|r| r.to_string()).collect()),
                },
                policy: &a.origin.policy,
                direction: a.origin.direction,
                rule: a.origin.rule,
                rule_peer: a.origin.peer,
                port_name: a.origin.port_name.as_deref(),
            })
            .collect(),
    })
}

fn pod_view<'a>(p: &'a crate::graph::PodNode, learned: Option<&'a Listing>) -> PodView<'a> {
    PodView {
        namespace: &p.namespace,
        name: &p.name,
        node: p.node.as_deref(),
        ips: &p.ips,
        ingress: isolation(p.ingress.as_ref()),
        egress: isolation(p.egress.as_ref()),
        tiers: tiers(&p.tiers, learned),
        audited: p.audited.as_deref().map(|a| Box::new(pod_view(a, learned))),
    }
}

/// The graph as one pretty-printed JSON document, with a trailing newline.
pub fn render(graph: &PolicyGraph) -> String {
    render_with(graph, None)
}

/// [`render`], with each `domainNames` rule's addresses in `learned` when given.
pub fn render_with(graph: &PolicyGraph, learned: Option<&Listing>) -> String {
    let view = GraphView {
        peers: graph
            .peers
            .iter()
            .enumerate()
            .map(|(id, p)| PeerView {
                id,
                description: &p.description,
                addresses: p
                    .addrs
                    .v4
                    .ranges()
                    .iter()
                    .map(|&(lo, hi)| range_text(false, lo, hi))
                    .chain(
                        p.addrs
                            .v6
                            .ranges()
                            .iter()
                            .map(|&(lo, hi)| range_text(true, lo, hi)),
                    )
                    .collect(),
            })
            .collect(),
        pods: graph.pods.values().map(|p| pod_view(p, learned)).collect(),
    };
    let mut text = serde_json::to_string_pretty(&view).expect("a graph view serializes");
    text.push('\n');
    text
}
