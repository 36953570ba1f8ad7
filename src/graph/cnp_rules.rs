//! The graph's ClusterNetworkPolicy part: fills [`PodNode::tiers`] for one pod from the
//! policies whose subject selects it, resolving their peers to the graph's shared peer
//! nodes and their named ports to numbers. Owns CNP selection and peer semantics; the
//! order and the walk are [`super::tiers`]'s, and nothing here knows nftables.
//!
//! ```text
//! CNPs sorted (tier, priority, name) --subject selects pod?--> per direction with rules:
//!   rules as written x peers as written -> TierRule { action, peer, ports, origin }
//!   (fail-closed policy: one TierRule { Deny, Any, Any, rule: None })
//! ```
//!
//! Resolutions are cached for one refresh only ([`CnpCache`] lives in the refresh's
//! context), so no change of pods, namespaces or nodes can leave one stale.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::ctx::Ctx;
use super::tiers::{DomainEntry, PodTiers, TierOrigin, TierRule, TierRules};
use super::{PeerId, PeerRef, PodNode, PolicyGraph, PortRange, Ports};
use crate::addr::AddrSet;
use crate::cnp::{Action, Tier};
use crate::cnp::{ClusterPolicy, Peer, Port, Rule, Subject};
use crate::index::{CnpEntry, PodInfo};
use crate::policy::{Direction, Mode, Protocol};
use crate::selector::{Labels, Selector};

/// Whether a subject selects a pod living in a namespace labelled `ns_labels`. The caller
/// checks that the pod is a policy pod (host-network pods are never subjects).
pub fn subject_selects(subject: &Subject, pod: &PodInfo, ns_labels: &Labels) -> bool {
    match subject {
        Subject::Namespaces(sel) => sel.matches(ns_labels),
        Subject::Pods { namespaces, pods } => {
            namespaces.matches(ns_labels) && pods.matches(&pod.labels)
        }
    }
}

/// A rule's numbered ports (sorted, without repeats) and its named ones, as written.
fn split_ports(rule: &Rule) -> (Vec<PortRange>, Vec<&str>) {
    let mut numbered: Vec<PortRange> = Vec::new();
    let mut named: Vec<&str> = Vec::new();
    for p in rule.ports.iter().flatten() {
        match p {
            Port::Range(protocol, start, end) => numbered.push(PortRange {
                protocol: *protocol,
                start: *start,
                end: *end,
            }),
            Port::Named(n) => named.push(n),
        }
    }
    numbered.sort();
    numbered.dedup();
    (numbered, named)
}

fn describe(peer: &Peer) -> String {
    let ns = |s: &Selector| {
        if s.is_everything() {
            "every namespace".to_string()
        } else {
            format!("namespaces {{{s}}}")
        }
    };
    match peer {
        Peer::Namespaces(s) => format!("pods in {}", ns(s)),
        Peer::Pods { namespaces, pods } => format!("pods {{{pods}}} in {}", ns(namespaces)),
        Peer::Networks(nets) => {
            let n: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
            format!("networks {}", n.join(", "))
        }
        Peer::Nodes(s) => format!("nodes {{{s}}}"),
        Peer::DomainNames(d) => format!("domainNames {}", d.join(", ")),
    }
}

/// Every `domainNames` pattern of a rule, sorted, without repeats.
fn domain_patterns(rule: &Rule) -> Vec<String> {
    let mut all: Vec<String> = rule
        .peers
        .iter()
        .filter_map(|p| match p {
            Peer::DomainNames(d) => Some(d),
            _ => None,
        })
        .flatten()
        .cloned()
        .collect();
    all.sort();
    all.dedup();
    all
}

impl<'a> Ctx<'a, '_> {
    fn cnp_order(&mut self) -> Vec<&'a CnpEntry> {
        let index = self.index;
        self.cnp
            .order
            .get_or_insert_with(|| {
                let mut v: Vec<&CnpEntry> = index.cnps().collect();
                v.sort_by(|a, b| {
                    let key = |e: &'a CnpEntry| (e.policy.tier, e.policy.priority, &e.policy.name);
                    key(a).cmp(&key(b))
                });
                v
            })
            .clone()
    }

    /// The policy pods a namespaces or pods peer holds.
    fn cnp_members(&self, peer: &Peer) -> Vec<&'a PodInfo> {
        let (namespaces, pods) = match peer {
            Peer::Namespaces(s) => (s, None),
            Peer::Pods { namespaces, pods } => (namespaces, Some(pods)),
            _ => return Vec::new(),
        };
        let index = self.index;
        self.namespaces
            .get_or_init(|| index.namespaces_borrowed().collect())
            .iter()
            .filter(|(_, labels)| namespaces.matches(labels))
            .flat_map(|(ns, _)| index.pods_in_namespace(ns))
            .filter(|p| p.is_policy_pod() && pods.is_none_or(|s| s.matches(&p.labels)))
            .collect()
    }
}

impl PolicyGraph {
    /// The peer node of a CNP peer; `None` for one that matches nothing by definition
    /// (domainNames).
    fn cnp_peer(&mut self, ctx: &mut Ctx, peer: &Peer) -> Option<PeerId> {
        if let Some(id) = ctx.cnp.peers.get(peer) {
            return *id;
        }
        let addrs = match peer {
            Peer::Namespaces(_) | Peer::Pods { .. } => Some(AddrSet::from_ips(
                ctx.cnp_members(peer)
                    .iter()
                    .flat_map(|p| p.ips.iter().copied()),
            )),
            Peer::Networks(nets) => Some(nets.iter().fold(AddrSet::default(), |acc, n| {
                acc.union(&AddrSet::from_block(n, &[]))
            })),
            Peer::Nodes(sel) => Some(AddrSet::from_ips(
                ctx.index
                    .nodes()
                    .filter(|n| sel.matches(&n.labels))
                    .flat_map(|n| n.addresses.iter().copied()),
            )),
            Peer::DomainNames(_) => None,
        };
        let id = addrs.map(|a| self.intern(a, || describe(peer)));
        ctx.cnp.peers.insert(peer.clone(), id);
        id
    }

    /// Egress to a named port: the peer's pods grouped by what the name means on each
    /// (protocol and number come from the container port).
    fn cnp_split_named(
        &mut self,
        ctx: &mut Ctx,
        peer: &Peer,
        name: &str,
    ) -> Vec<(PeerId, PortRange)> {
        let key = (peer.clone(), name.to_string());
        if let Some(v) = ctx.cnp.named.get(&key) {
            return v.clone();
        }
        let mut by_port: BTreeMap<(Protocol, u16), Vec<IpAddr>> = BTreeMap::new();
        for m in ctx.cnp_members(peer) {
            for p in m.ports.iter().filter(|p| p.name == name) {
                by_port
                    .entry((p.protocol, p.port))
                    .or_default()
                    .extend(m.ips.iter().copied());
            }
        }
        let base = describe(peer);
        let out: Vec<(PeerId, PortRange)> = by_port
            .into_iter()
            .map(|((protocol, port), ips)| {
                let id = self.intern(AddrSet::from_ips(ips), || {
                    format!("{base}, those with port {name:?} = {protocol}/{port}")
                });
                let range = PortRange::single(protocol, port);
                (id, range)
            })
            .collect();
        ctx.cnp.named.insert(key, out.clone());
        out
    }

    /// The tier entries of one rule, peers as written; each peer's numbered ports first,
    /// then its named ones.
    #[allow(clippy::too_many_arguments)]
    fn cnp_rule(
        &mut self,
        ctx: &mut Ctx,
        pod: &PodInfo,
        policy: &ClusterPolicy,
        dir: Direction,
        ri: usize,
        rule: &Rule,
        (out, domains): (&mut Vec<TierRule>, &mut Vec<DomainEntry>),
    ) {
        let origin = |peer: usize, port_name: Option<String>| TierOrigin {
            policy: policy.name.clone(),
            tier: policy.tier,
            priority: policy.priority,
            direction: dir,
            rule: Some(ri),
            rule_name: rule.name.clone(),
            peer: Some(peer),
            port_name,
        };
        let (numbered, named) = split_ports(rule);
        for (pi, peer) in rule.peers.iter().enumerate() {
            let Some(id) = self.cnp_peer(ctx, peer) else {
                let admin_egress = policy.tier == Tier::Admin && dir == Direction::Egress;
                let first = domains.last().is_none_or(|d| d.origin.rule != Some(ri));
                if admin_egress && rule.action == Action::Accept && first {
                    domains.push(DomainEntry {
                        origin: origin(pi, None),
                        patterns: domain_patterns(rule),
                        ports: match rule.ports {
                            None => Ports::Any,
                            Some(_) => Ports::Only(numbered.clone()),
                        },
                        position: out.len(),
                    });
                }
                continue;
            };
            let entry = |peer: PeerRef, ports: Ports, port_name: Option<String>| TierRule {
                action: rule.action,
                peer,
                ports,
                origin: origin(pi, port_name),
            };
            if rule.ports.is_none() {
                out.push(entry(PeerRef::Peer(id), Ports::Any, None));
                continue;
            }
            if !numbered.is_empty() {
                out.push(entry(
                    PeerRef::Peer(id),
                    Ports::Only(numbered.clone()),
                    None,
                ));
            }
            for name in &named {
                let entry = |peer, ports| entry(peer, ports, Some(name.to_string()));
                out.extend(self.named_entries(ctx, pod, dir, (peer, id), name, entry));
            }
        }
    }

    /// The entries of one named port of a peer: on ingress the subject pod's own ports
    /// of that name; on egress one per port the name means on the peer's pods, each with
    /// the peer split to those pods.
    fn named_entries(
        &mut self,
        ctx: &mut Ctx,
        pod: &PodInfo,
        dir: Direction,
        (peer, id): (&Peer, PeerId),
        name: &str,
        entry: impl Fn(PeerRef, Ports) -> TierRule,
    ) -> Vec<TierRule> {
        match dir {
            // The destination is the subject pod itself.
            Direction::Ingress => {
                let ports: Vec<PortRange> = pod
                    .ports
                    .iter()
                    .filter(|p| p.name == name)
                    .map(|p| PortRange {
                        protocol: p.protocol,
                        start: p.port,
                        end: p.port,
                    })
                    .collect();
                vec![entry(PeerRef::Peer(id), Ports::Only(ports))]
            }
            Direction::Egress => self
                .cnp_split_named(ctx, peer, name)
                .into_iter()
                .map(|(split, range)| entry(PeerRef::Peer(split), Ports::Only(vec![range])))
                .collect(),
        }
    }

    /// Everything ClusterNetworkPolicies say about one policy pod.
    pub(super) fn compute_tiers(
        &mut self,
        ctx: &mut Ctx,
        pod: &PodInfo,
        view: Mode,
    ) -> (PodTiers, bool) {
        let mut tiers = PodTiers::default();
        let mut audited_touch = false;
        let ns_labels = ctx.index.effective_labels(&pod.namespace).into_owned();
        for entry in ctx.cnp_order() {
            let policy = &entry.policy;
            if !subject_selects(&policy.subject, pod, &ns_labels) {
                continue;
            }
            if policy.mode == Mode::Audit {
                audited_touch = true;
                if view == Mode::Enforce {
                    continue;
                }
            }
            for dir in [Direction::Ingress, Direction::Egress] {
                let rules = policy.rules(dir);
                if rules.is_empty() {
                    continue;
                }
                let mut out = Vec::new();
                let mut domains = Vec::new();
                if policy.fail_closed {
                    out.push(TierRule {
                        action: Action::Deny,
                        peer: PeerRef::Any,
                        ports: Ports::Any,
                        origin: TierOrigin {
                            policy: policy.name.clone(),
                            tier: policy.tier,
                            priority: policy.priority,
                            direction: dir,
                            rule: None,
                            rule_name: None,
                            peer: None,
                            port_name: None,
                        },
                    });
                } else {
                    for (ri, rule) in rules.iter().enumerate() {
                        let lists = (&mut out, &mut domains);
                        self.cnp_rule(ctx, pod, policy, dir, ri, rule, lists);
                    }
                }
                let side = match dir {
                    Direction::Ingress => &mut tiers.ingress,
                    Direction::Egress => &mut tiers.egress,
                };
                let tier: &mut TierRules = match policy.tier {
                    Tier::Admin => &mut side.admin,
                    Tier::Baseline => &mut side.baseline,
                };
                tier.policies.push(policy.name.clone());
                // Positions count the tier's entries, earlier policies' included.
                let before = tier.rules.len();
                tier.domains.extend(domains.into_iter().map(|mut d| {
                    d.position += before;
                    d
                }));
                tier.rules.extend(out);
            }
        }
        (tiers, audited_touch)
    }
}

/// Every peer a pod's tier rules refer to, for compaction.
pub(super) fn tier_peers_mut(node: &mut PodNode) -> impl Iterator<Item = &mut PeerRef> {
    let t = &mut node.tiers;
    [
        &mut t.ingress.admin,
        &mut t.ingress.baseline,
        &mut t.egress.admin,
        &mut t.egress.baseline,
    ]
    .into_iter()
    .flat_map(|r| r.rules.iter_mut().map(|r| &mut r.peer))
}
