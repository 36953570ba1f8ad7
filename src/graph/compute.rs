//! The NetworkPolicy semantics of the graph: what the policies of its namespace say about
//! one pod. Selection, isolation, peers (podSelector, namespaceSelector, both, ipBlock minus
//! except) and ports (numbers, ranges, names resolved against the destination pod) are
//! applied here and nowhere else.
//!
//! ```text
//! pod --policies of its namespace that select it--> per direction with rules:
//!   rule x peers as written -> Allow { peer, ports, origin }
//!   named port: ingress -> the pod's own port; egress -> one peer per port the name means
//! ```
//!
//! Peers go through the refresh's [`PeerCache`]; nothing here keeps state of its own
//! beyond one refresh ([`Ctx`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::ctx::Ctx;
use super::peers::peer_key;
use super::tiers::PodTiers;
use super::{
    describe_peer, Allow, Isolation, Origin, PeerId, PeerRef, PodNode, PolicyGraph, PortRange,
    Ports,
};
use crate::addr::AddrSet;
use crate::index::PodInfo;
use crate::policy::{Direction, Mode, Peer, Policy, Port, PortMatch, Protocol, Rule};

/// Where in a policy one rule sits, to name it in the allows it gives.
struct RuleAt<'p> {
    policy: &'p Policy,
    policy_id: &'p str,
    direction: Direction,
    rule: usize,
}

impl RuleAt<'_> {
    fn origin(&self, peer: Option<usize>, port_name: Option<&str>) -> Origin {
        Origin {
            policy: self.policy_id.to_string(),
            direction: self.direction,
            rule: self.rule,
            peer,
            port_name: port_name.map(str::to_string),
        }
    }
}

/// One peer of a rule: its position in `from`/`to` (`None`: the rule has none), its spec
/// and its node.
type RulePeer<'p> = (Option<usize>, Option<&'p Peer>, PeerRef);

impl PolicyGraph {
    /// Everything the policies of its namespace and the ClusterNetworkPolicies say about
    /// one pod, as enforced; and, when an audited policy would change that, the pod as it
    /// would be with the audited policies enforced too ([`PodNode::audited`]).
    pub(super) fn compute_pod(&mut self, ctx: &mut Ctx, pod: &PodInfo) -> PodNode {
        let (mut node, audited_touch) = self.compute_view(ctx, pod, Mode::Enforce);
        if audited_touch {
            let (audited, _) = self.compute_view(ctx, pod, Mode::Audit);
            if [Direction::Ingress, Direction::Egress]
                .into_iter()
                .any(|dir| node.differs(&audited, dir))
            {
                node.audited = Some(Box::new(audited));
            }
        }
        node
    }

    /// One view of a pod: with `Mode::Enforce` the enforced policies alone, with
    /// `Mode::Audit` every policy. Also says whether an audited policy selects the pod.
    fn compute_view(&mut self, ctx: &mut Ctx, pod: &PodInfo, view: Mode) -> (PodNode, bool) {
        let mut audited_touch = false;
        let mut node = PodNode {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node: pod.node.clone(),
            ips: pod.ips.clone(),
            host_ips: pod.host_ips.clone(),
            ingress: None,
            egress: None,
            tiers: PodTiers::default(),
            audited: None,
        };
        let index = ctx.index;
        for entry in index.policies_in_namespace(&pod.namespace) {
            let policy = &entry.policy;
            if !policy.pod_selector.matches(&pod.labels) {
                continue;
            }
            if policy.mode == Mode::Audit {
                audited_touch = true;
                if view == Mode::Enforce {
                    continue;
                }
            }
            let policy_id = policy.id();
            for direction in [Direction::Ingress, Direction::Egress] {
                let Some(rules) = policy.rules(direction) else {
                    continue;
                };
                let mut allows = Vec::new();
                for (rule, spec) in rules.iter().enumerate() {
                    let at = RuleAt {
                        policy,
                        policy_id: &policy_id,
                        direction,
                        rule,
                    };
                    allows.extend(self.rule_allows(ctx, pod, &at, spec));
                }
                let iso = match direction {
                    Direction::Ingress => node.ingress.get_or_insert_with(Isolation::default),
                    Direction::Egress => node.egress.get_or_insert_with(Isolation::default),
                };
                iso.isolated_by.push(policy_id.clone());
                iso.allows.extend(allows);
            }
        }
        let (tiers, tiers_touch) = self.compute_tiers(ctx, pod, view);
        node.tiers = tiers;
        (node, audited_touch || tiers_touch)
    }

    /// What one rule allows `pod`: each peer with the numbered ports, then each peer with
    /// each named port resolved.
    fn rule_allows(
        &mut self,
        ctx: &mut Ctx,
        pod: &PodInfo,
        at: &RuleAt,
        rule: &Rule,
    ) -> Vec<Allow> {
        let peers = self.rule_peers(ctx, at, rule);
        let Some(ports) = &rule.ports else {
            return peers
                .iter()
                .map(|(i, _, peer)| Allow {
                    peer: *peer,
                    ports: Ports::Any,
                    origin: at.origin(*i, None),
                })
                .collect();
        };
        let (numbered, named) = split_ports(ports);
        let mut allows = Vec::new();
        if !numbered.is_empty() {
            allows.extend(peers.iter().map(|(i, _, peer)| Allow {
                peer: *peer,
                ports: Ports::Only(numbered.clone()),
                origin: at.origin(*i, None),
            }));
        }
        for (protocol, name) in named {
            for (i, spec, peer) in &peers {
                match at.direction {
                    Direction::Ingress => allows.push(Allow {
                        peer: *peer,
                        ports: own_named_port(pod, protocol, name),
                        origin: at.origin(*i, Some(name)),
                    }),
                    Direction::Egress => {
                        let split = self.split_named(ctx, at, *spec, protocol, name);
                        allows.extend(split.into_iter().map(|(id, port)| Allow {
                            peer: PeerRef::Peer(id),
                            ports: Ports::Only(vec![PortRange::single(protocol, port)]),
                            origin: at.origin(*i, Some(name)),
                        }));
                    }
                }
            }
        }
        allows
    }

    /// A rule's peers as written, each resolved; one `Any` peer when it names none.
    fn rule_peers<'r>(&mut self, ctx: &mut Ctx, at: &RuleAt, rule: &'r Rule) -> Vec<RulePeer<'r>> {
        let Some(list) = &rule.peers else {
            return vec![(None, None, PeerRef::Any)];
        };
        list.iter()
            .enumerate()
            .map(|(i, spec)| {
                (
                    Some(i),
                    Some(spec),
                    PeerRef::Peer(self.resolve(ctx, at, spec)),
                )
            })
            .collect()
    }

    fn resolve(&mut self, ctx: &mut Ctx, at: &RuleAt, spec: &Peer) -> PeerId {
        let policy_ns = &at.policy.namespace;
        let key = peer_key(spec, policy_ns);
        let cached = ctx
            .peers
            .resolved(&key, at.policy_id, |addrs, description| {
                self.intern(addrs, || description)
            });
        if let Some(id) = cached {
            return id;
        }
        let addrs = match spec {
            Peer::Block { cidr, except } => AddrSet::from_block(cidr, except),
            Peer::Pods { .. } => AddrSet::from_ips(
                ctx.members(Some(spec), policy_ns)
                    .iter()
                    .flat_map(|p| p.ips.iter().copied()),
            ),
        };
        let id = self.intern(addrs, || describe_peer(spec, policy_ns));
        ctx.peers.insert_resolved(key, at.policy_id, id);
        id
    }

    /// Egress to a named port: the peer's pods grouped by what the name means on each.
    fn split_named(
        &mut self,
        ctx: &mut Ctx,
        at: &RuleAt,
        spec: Option<&Peer>,
        protocol: Protocol,
        name: &str,
    ) -> Vec<(PeerId, u16)> {
        let policy_ns = &at.policy.namespace;
        let key = (
            spec.map(|s| peer_key(s, policy_ns)),
            protocol,
            name.to_string(),
        );
        if let Some(split) = ctx.peers.named(&key, at.policy_id) {
            return split;
        }
        // An ipBlock holds only the pod addresses inside it (a dual-stack pod may have one
        // address in the block and the other outside).
        let block = match spec {
            Some(Peer::Block { cidr, except }) => Some(AddrSet::from_block(cidr, except)),
            _ => None,
        };
        let mut by_port: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
        for m in ctx.members(spec, policy_ns) {
            if let Some(n) = lookup_name(m, protocol, name) {
                let ips = m
                    .ips
                    .iter()
                    .copied()
                    .filter(|ip| block.as_ref().is_none_or(|b| b.contains(*ip)));
                by_port.entry(n).or_default().extend(ips);
            }
        }
        let base = spec
            .map(|s| describe_peer(s, policy_ns))
            .unwrap_or_else(|| "every pod".into());
        let split: Vec<(PeerId, u16)> = by_port
            .into_iter()
            .map(|(port, ips)| {
                let id = self.intern(AddrSet::from_ips(ips), || {
                    format!("{base}, those with {protocol} port {name:?} = {port}")
                });
                (id, port)
            })
            .collect();
        ctx.peers.insert_named(key, at.policy_id, split.clone());
        split
    }
}

/// A rule's ports: the numbered ones (sorted, without repeats) and the named ones in the
/// order written.
fn split_ports(ports: &[Port]) -> (Vec<PortRange>, Vec<(Protocol, &str)>) {
    let mut numbered = Vec::new();
    let mut named = Vec::new();
    for p in ports {
        match &p.port {
            PortMatch::Any => numbered.push(PortRange {
                protocol: p.protocol,
                start: 0,
                end: u16::MAX,
            }),
            PortMatch::Range(a, b) => numbered.push(PortRange {
                protocol: p.protocol,
                start: *a,
                end: *b,
            }),
            PortMatch::Name(n) => named.push((p.protocol, n.as_str())),
        }
    }
    numbered.sort();
    numbered.dedup();
    (numbered, named)
}

/// An ingress named port: the destination is the selected pod itself, so the name means
/// what it means there (nothing when the pod has no such port).
fn own_named_port(pod: &PodInfo, protocol: Protocol, name: &str) -> Ports {
    let port = lookup_name(pod, protocol, name);
    Ports::Only(
        port.map(|n| PortRange::single(protocol, n))
            .into_iter()
            .collect(),
    )
}

pub(super) fn lookup_name(pod: &PodInfo, protocol: Protocol, name: &str) -> Option<u16> {
    pod.ports
        .iter()
        .find(|p| p.name == name && p.protocol == protocol)
        .map(|p| p.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Protocol::{Tcp, Udp};
    use crate::selector::Labels;

    fn port(protocol: Protocol, port: PortMatch) -> Port {
        Port { protocol, port }
    }

    fn range(protocol: Protocol, start: u16, end: u16) -> PortRange {
        PortRange {
            protocol,
            start,
            end,
        }
    }

    #[test]
    fn split_ports_sorts_numbers_and_keeps_names_in_order() {
        let name = |n: &str| PortMatch::Name(n.to_string());
        // Ports as written, the numbered ones split off, the named ones.
        type Case<'a> = (Vec<Port>, Vec<PortRange>, Vec<(Protocol, &'a str)>);
        let cases: Vec<Case> = vec![
            (vec![], vec![], vec![]),
            (
                vec![port(Tcp, PortMatch::Any)],
                vec![range(Tcp, 0, u16::MAX)],
                vec![],
            ),
            (
                vec![
                    port(Udp, PortMatch::Range(53, 53)),
                    port(Tcp, PortMatch::Range(80, 81)),
                    port(Tcp, PortMatch::Range(80, 81)),
                ],
                vec![range(Tcp, 80, 81), range(Udp, 53, 53)],
                vec![],
            ),
            (
                vec![
                    port(Tcp, name("web")),
                    port(Tcp, PortMatch::Range(443, 443)),
                    port(Udp, name("dns")),
                    port(Tcp, name("web")),
                ],
                vec![range(Tcp, 443, 443)],
                vec![(Tcp, "web"), (Udp, "dns"), (Tcp, "web")],
            ),
        ];
        for (ports, numbered, named) in cases {
            assert_eq!(split_ports(&ports), (numbered, named), "{ports:?}");
        }
    }

    #[test]
    fn an_ingress_named_port_means_the_pods_own_port() {
        let pod = PodInfo {
            namespace: "x".into(),
            name: "a".into(),
            labels: Labels::default(),
            node: None,
            ips: vec![],
            host_ips: vec![],
            host_network: false,
            finished: false,
            ports: vec![crate::index::NamedPort {
                name: "web".into(),
                protocol: Tcp,
                port: 8080,
            }],
        };
        let cases = [
            (Tcp, "web", Ports::Only(vec![range(Tcp, 8080, 8080)])),
            // Same name, other protocol: nothing.
            (Udp, "web", Ports::Only(vec![])),
            (Tcp, "dns", Ports::Only(vec![])),
        ];
        for (protocol, name, want) in cases {
            assert_eq!(
                own_named_port(&pod, protocol, name),
                want,
                "{protocol} {name}"
            );
        }
    }
}
