//! The policy graph as JSON, for tools (`nftpol graph --output json`): the same content
//! as the graph's text form (peers with their addresses, then every pod's isolation and
//! allows traced to policy, rule and peer). A plain serializable view built from the
//! graph; no evaluation here.

use serde::Serialize;

use crate::addr::range_text;
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
                    Ports::Some(list) => Some(list.iter().map(|r| r.to_string()).collect()),
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

/// The graph as one pretty-printed JSON document, with a trailing newline.
pub fn render(graph: &PolicyGraph) -> String {
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
        pods: graph
            .pods
            .values()
            .map(|p| PodView {
                namespace: &p.namespace,
                name: &p.name,
                node: p.node.as_deref(),
                ips: &p.ips,
                ingress: isolation(p.ingress.as_ref()),
                egress: isolation(p.egress.as_ref()),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&view).expect("a graph view serializes");
    text.push('\n');
    text
}
