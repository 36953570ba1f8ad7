//! Which policy rules a kernel counter stands for: an element of a counted NetworkPolicy
//! set (the connections it allowed), an element of a counted ClusterNetworkPolicy tier
//! set (the connections its rule decided) and a pod chain's `counter drop` (the
//! connections its isolation denied).
//!
//! ```text
//! NetworkPolicy set element --(Traffic::credit)--> the rules of that lookup that cover it
//! tier set element          --(Traffic::credit)--> the one rule that decided it (and, for
//!                                                   a Deny, its policy's denied count)
//! pod chain drop            --(Traffic::isolating)--> the policies that isolate the pod
//! ```
//!
//! Attribution. Pod chains see only a connection's first packet, and the first lookup
//! that matches decides it: addresses allowed on any port (`any`), then the (address,
//! protocol, port) sets of the rules with ports (`exact`, `ports`), then each allow
//! looked up as a pair, in the order of the pod's allows. A connection is credited to
//! every rule of the lookup that allowed it whose peer and ports cover it. NetworkPolicy
//! rules are an unordered union, so within one lookup no rule comes "first": crediting
//! each one keeps a rule's count independent of what other policies exist. The element
//! counters make that exact: with counting on, every element is cut where each allow
//! of its set starts and ends (`np_elements`), so it lies wholly inside or outside each
//! rule. What a lookup earlier in the chain allowed never reaches a later one: a rule
//! with ports whose connections are also allowed on any port by another rule is not
//! credited for them, and of two allows looked up as pairs only the first that matches
//! is (a pair's counter is on its ports, which say nothing of the address).
//!
//! ClusterNetworkPolicy rules are ordered (tier, priority, policy name, rule index, as
//! `graph::tiers` walks them) and the first match decides, so a connection is credited
//! to exactly one rule: the first of its tier whose peer and ports match it. The tier
//! sets of a pod direction (Admin Accept, Admin Deny, Baseline Deny) are cut so that
//! every element lies in one rule's region (`regions`, [`super::regions::Regions::counted`]),
//! and the element's counter is that rule's. A connection an Admin or Baseline Deny
//! rule drops is credited to that rule and counted as denied by its policy. Pass rules
//! and Baseline Accept rules compile to no lookup (what they match goes on to a later
//! tier, which decides it and is credited), so they count nothing; nor does the deny-all
//! entry of a policy enforced fail-closed (no rule of its own), whose drops count as
//! denied by the policy only.
//!
//! Pure: reads a graph and the model built from it; the controller keeps the totals.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use super::model::{Element, Field, RuleKind, Ruleset};
use super::names;
use super::options::{over_budget, Options};
use super::roles::{PairPart, SetKind, SetRole, TierSet};
use crate::cnp::Action;
use crate::graph::tiers::{TierRule, TierRules};
use crate::graph::{Allow, PodNode, PolicyGraph, Ports};
use crate::index::PodKey;
use crate::policy::{Direction, Protocol};

/// The kind of policy a rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    NetworkPolicy,
    ClusterNetworkPolicy,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
        }
    }
}

/// One policy rule: `spec.<direction>[rule]` of a NetworkPolicy `namespace/name` or of a
/// ClusterNetworkPolicy `name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId {
    pub kind: PolicyKind,
    /// `namespace/name` (NetworkPolicy) or `name` (ClusterNetworkPolicy).
    pub policy: String,
    pub direction: Direction,
    /// Its index in `spec.ingress` or `spec.egress`.
    pub rule: usize,
}

/// A policy (as in [`RuleId`]) and the direction in which it denied connections.
pub type DeniedBy = (PolicyKind, String, Direction);

/// What the connections one element counted are credited to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Credit {
    /// The rules that allowed (NetworkPolicy) or decided (ClusterNetworkPolicy) them.
    pub rules: Vec<RuleId>,
    /// The ClusterNetworkPolicy whose Deny rule dropped them.
    pub denied: Vec<DeniedBy>,
}

/// What one counted set's elements stand for.
#[derive(Debug)]
enum Counted<'g> {
    /// A lookup group's set (`any` when `ports` is false): the allows it holds.
    Group { ports: bool, allows: Vec<&'g Allow> },
    /// The ports half of one allow looked up as a pair.
    Pair(&'g Allow),
    /// A tier set of a pod direction: the tier's rules, in order, and the verdict of
    /// the set (Accept or Deny).
    Tier {
        rules: &'g TierRules,
        verdict: Action,
        dir: Direction,
    },
}

/// The attribution of a graph's counters (see the module).
#[derive(Debug, Default)]
pub struct Traffic<'g> {
    sets: HashMap<String, Counted<'g>>,
    /// Pod chain name -> the direction and the policies that isolate the pod in it.
    drops: HashMap<String, (Direction, &'g [String])>,
}

impl<'g> Traffic<'g> {
    /// The attribution of `model`, built from `graph` with `opts`; empty without
    /// [`Options::counters`].
    pub fn new(graph: &'g PolicyGraph, model: &Ruleset, opts: &Options) -> Traffic<'g> {
        Traffic::build(graph, model, opts, None, &over_budget(graph, opts))
    }

    /// [`Traffic::new`] for the chains and sets of `pods` only (what a read before a batch
    /// covers), with the policies [`over_budget`] already known: the cost follows the
    /// pods, not the node.
    pub fn of_pods(
        graph: &'g PolicyGraph,
        model: &Ruleset,
        opts: &Options,
        pods: &BTreeSet<PodKey>,
        over: &BTreeMap<String, usize>,
    ) -> Traffic<'g> {
        Traffic::build(graph, model, opts, Some(pods), over)
    }

    fn build(
        graph: &'g PolicyGraph,
        model: &Ruleset,
        opts: &Options,
        pods: Option<&BTreeSet<PodKey>>,
        over: &BTreeMap<String, usize>,
    ) -> Traffic<'g> {
        let mut t = Traffic::default();
        if !opts.counters {
            return t;
        }
        let chosen: Box<dyn Iterator<Item = &'g PodNode>> = match pods {
            None => Box::new(graph.pods.values()),
            Some(pods) => Box::new(pods.iter().filter_map(|k| graph.pods.get(k))),
        };
        for pod in chosen {
            for dir in [Direction::Ingress, Direction::Egress] {
                t.add_tiers(model, pod, dir);
                let Some(iso) = pod.isolation(dir) else {
                    continue;
                };
                let chain_name = names::pod_chain(dir, &pod.namespace, &pod.name);
                let Some(chain) = model.chain(&chain_name) else {
                    continue;
                };
                t.drops.insert(chain_name, (dir, &iso.isolated_by));
                let allows: Vec<&Allow> = iso
                    .allows
                    .iter()
                    .filter(|a| !over.contains_key(&a.origin.policy))
                    .collect();
                t.add_chain(model, chain, dir, &allows);
            }
        }
        t
    }

    /// The counted tier sets of `pod` in `dir` that `model` holds.
    fn add_tiers(&mut self, model: &Ruleset, pod: &'g PodNode, dir: Direction) {
        let side = pod.tiers.side(dir);
        for tier in TierSet::ALL {
            let (rules, verdict) = match tier {
                TierSet::AdminAccept => (&side.admin, Action::Accept),
                TierSet::AdminDeny => (&side.admin, Action::Deny),
                TierSet::BaselineDeny => (&side.baseline, Action::Deny),
            };
            for kind in SetKind::ALL {
                let name = names::pod_set(dir, &pod.namespace, &pod.name, tier, kind);
                if model.set(&name).is_some_and(|s| s.counter) {
                    let tier = Counted::Tier {
                        rules,
                        verdict,
                        dir,
                    };
                    self.sets.insert(name, tier);
                }
            }
        }
    }

    fn add_chain(
        &mut self,
        model: &Ruleset,
        chain: &super::model::Chain,
        dir: Direction,
        allows: &[&'g Allow],
    ) {
        let pair_set = |a: &Allow| {
            let mut key = String::new();
            super::build::allow_key_of(a, &mut key);
            names::np_pair_set(dir, &key, PairPart::Ports)
        };
        let pairs: HashMap<String, &'g Allow> = allows.iter().map(|&a| (pair_set(a), a)).collect();
        let mut looked_up_as_pairs: BTreeSet<&str> = BTreeSet::new();
        for rule in &chain.rules {
            if let RuleKind::LookupPair { ports, .. } = &rule.kind {
                if let Some(&a) = pairs.get(ports) {
                    looked_up_as_pairs.insert(ports);
                    self.sets.insert(ports.clone(), Counted::Pair(a));
                }
            }
        }
        for rule in &chain.rules {
            let RuleKind::Lookup { set, .. } = &rule.kind else {
                continue;
            };
            let Some(s) = model.set(set).filter(|s| s.counter) else {
                continue;
            };
            let SetRole::NpAllow(kind) = s.role else {
                continue;
            };
            if self.sets.contains_key(set) {
                continue;
            }
            let ports = kind.with_ports();
            let group = allows
                .iter()
                .copied()
                .filter(|&a| (a.ports != Ports::Any) == ports)
                .filter(|&a| !looked_up_as_pairs.contains(pair_set(a).as_str()))
                .collect();
            self.sets.insert(
                set.clone(),
                Counted::Group {
                    ports,
                    allows: group,
                },
            );
        }
    }

    /// Whether counted set `set` is one this attribution knows.
    pub fn knows(&self, set: &str) -> bool {
        self.sets.contains_key(set)
    }

    /// The counted sets (by name) this attribution knows.
    pub fn sets(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    /// The pod chains whose `counter drop` this attribution knows.
    pub fn chains(&self) -> impl Iterator<Item = &str> {
        self.drops.keys().map(String::as_str)
    }

    /// The rules a connection that matched `element` of set `set` is credited to (see
    /// the module), sorted, each once; empty for a set or element it does not know.
    pub fn rules_of(&self, graph: &PolicyGraph, set: &str, element: &Element) -> Vec<RuleId> {
        self.credit(graph, set, element).rules
    }

    /// What a connection that matched `element` of set `set` is credited to (see the
    /// module): rules sorted, each once; empty for a set or element it does not know.
    pub fn credit(&self, graph: &PolicyGraph, set: &str, element: &Element) -> Credit {
        let mut out: BTreeSet<RuleId> = BTreeSet::new();
        match self.sets.get(set) {
            None => {}
            Some(Counted::Pair(a)) => {
                out.insert(rule_id(a));
            }
            Some(Counted::Group { ports, allows }) => {
                let Some(point) = first_point(element, *ports) else {
                    return Credit::default();
                };
                for a in allows.iter().filter(|a| covers(graph, a, &point)) {
                    out.insert(rule_id(a));
                }
            }
            Some(&Counted::Tier {
                rules,
                verdict,
                dir,
            }) => return tier_credit(graph, rules, verdict, dir, element),
        }
        Credit {
            rules: out.into_iter().collect(),
            denied: Vec::new(),
        }
    }

    /// The ClusterNetworkPolicy rules and denying policies of the counted tier sets:
    /// every rule a tier set's elements can be credited to (those with the set's
    /// verdict), and the policies of its Deny rules.
    pub fn tier_rules(&self) -> (BTreeSet<RuleId>, BTreeSet<DeniedBy>) {
        let mut rules = BTreeSet::new();
        let mut denied = BTreeSet::new();
        for c in self.sets.values() {
            let &Counted::Tier {
                rules: tier,
                verdict,
                dir,
            } = c
            else {
                continue;
            };
            for r in tier.rules.iter().filter(|r| r.action == verdict) {
                rules.extend(tier_rule_id(r));
                if verdict == Action::Deny {
                    let kind = PolicyKind::ClusterNetworkPolicy;
                    denied.insert((kind, r.origin.policy.clone(), dir));
                }
            }
        }
        (rules, denied)
    }

    /// The direction and the policies (`namespace/name`) that isolate the pod whose
    /// chain is `chain`: what its `counter drop` is credited to.
    pub fn isolating(&self, chain: &str) -> Option<(Direction, &'g [String])> {
        self.drops.get(chain).copied()
    }
}

fn rule_id(a: &Allow) -> RuleId {
    RuleId {
        kind: PolicyKind::NetworkPolicy,
        policy: a.origin.policy.clone(),
        direction: a.origin.direction,
        rule: a.origin.rule,
    }
}

/// The first address, and with `ports` the first protocol and port, of an element. An
/// element lies wholly inside or outside each allow of its set (it was cut where they
/// start and end), so its first point stands for all of it.
fn first_point(e: &Element, ports: bool) -> Option<(IpAddr, Option<(Protocol, u16)>)> {
    let addr = match e.key.first()? {
        Field::Ipv4(lo, _) => IpAddr::V4(*lo),
        Field::Ipv6(lo, _) => IpAddr::V6(*lo),
        _ => return None,
    };
    if !ports {
        return Some((addr, None));
    }
    let (Some(Field::Proto(p, _)), Some(Field::Port(port, _))) = (e.key.get(1), e.key.get(2))
    else {
        return None;
    };
    let proto = Protocol::ALL.into_iter().find(|x| x.number() == *p)?;
    Some((addr, Some((proto, *port))))
}

fn covers(graph: &PolicyGraph, a: &Allow, point: &(IpAddr, Option<(Protocol, u16)>)) -> bool {
    let (addr, port) = *point;
    let ports = match port {
        None => true,
        Some((proto, port)) => a.ports.contains(proto, port),
    };
    ports && graph.peer_contains(a.peer, addr)
}

/// The rule of a tier entry; `None` for a fail-closed policy's deny-all entry.
fn tier_rule_id(r: &TierRule) -> Option<RuleId> {
    Some(RuleId {
        kind: PolicyKind::ClusterNetworkPolicy,
        policy: r.origin.policy.clone(),
        direction: r.origin.direction,
        rule: r.origin.rule?,
    })
}

/// Whether tier entry `r` matches (address, protocol number, port): a protocol without
/// ports only by a rule on every protocol.
fn tier_matches(graph: &PolicyGraph, r: &TierRule, addr: IpAddr, proto: u8, port: u16) -> bool {
    let ports = match Protocol::ALL.into_iter().find(|p| p.number() == proto) {
        Some(p) => r.ports.contains(p, port),
        None => r.ports == Ports::Any,
    };
    ports && graph.peer_contains(r.peer, addr)
}

/// The (protocol, port) points at which the first match of `rules` can change: port 0
/// and every rule's port edges, per protocol with ports, and one protocol without
/// ports (ICMP).
fn plane_points(rules: &TierRules) -> Vec<(u8, u16)> {
    let mut out = vec![(1, 0)];
    for p in Protocol::ALL {
        out.push((p.number(), 0));
        for r in &rules.rules {
            let Ports::Only(list) = &r.ports else {
                continue;
            };
            for pr in list.iter().filter(|pr| pr.protocol == p) {
                out.push((p.number(), pr.start));
                out.extend(pr.end.checked_add(1).map(|e| (p.number(), e)));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The credit of an element of a tier set with `verdict`: the first rule of the tier
/// matching the element's first point (for an address-only element, the first point of
/// the plane where the tier's first match has the set's verdict; a Deny set's address
/// may be accepted elsewhere in the plane, by the Accept lookups before it).
fn tier_credit(
    graph: &PolicyGraph,
    rules: &TierRules,
    verdict: Action,
    dir: Direction,
    element: &Element,
) -> Credit {
    let addr = match element.key.first() {
        Some(Field::Ipv4(lo, _)) => IpAddr::V4(*lo),
        Some(Field::Ipv6(lo, _)) => IpAddr::V6(*lo),
        _ => return Credit::default(),
    };
    let points = match (element.key.get(1), element.key.get(2)) {
        (Some(Field::Proto(p, _)), Some(Field::Port(port, _))) => vec![(*p, *port)],
        _ => plane_points(rules),
    };
    let decider = points.into_iter().find_map(|(proto, port)| {
        rules
            .first_match(|r| tier_matches(graph, r, addr, proto, port))
            .filter(|r| r.action == verdict)
    });
    let Some(r) = decider else {
        return Credit::default();
    };
    let denied = match verdict {
        Action::Deny => vec![(
            PolicyKind::ClusterNetworkPolicy,
            r.origin.policy.clone(),
            dir,
        )],
        _ => Vec::new(),
    };
    Credit {
        rules: tier_rule_id(r).into_iter().collect(),
        denied,
    }
}
