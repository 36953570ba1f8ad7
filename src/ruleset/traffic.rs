//! Which policy rules a kernel counter stands for: an element of a counted NetworkPolicy
//! set (the connections it allowed) and a pod chain's `counter drop` (the connections
//! its isolation denied).
//!
//! ```text
//! counted set element --(Traffic::rules_of)--> the rules of that lookup that cover it
//! pod chain drop      --(Traffic::isolating)--> the policies that isolate the pod
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
//! Pure: reads a graph and the model built from it; the controller keeps the totals.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use super::model::{Element, Field, RuleKind, Ruleset};
use super::names;
use super::options::{over_budget, Options};
use super::roles::{PairPart, SetRole};
use crate::graph::{Allow, PolicyGraph, Ports};
use crate::policy::{Direction, Protocol};

/// One NetworkPolicy rule: `spec.<direction>[rule]` of `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId {
    /// `namespace/name`.
    pub policy: String,
    pub direction: Direction,
    /// Its index in `spec.ingress` or `spec.egress`.
    pub rule: usize,
}

/// What one counted set's elements stand for.
#[derive(Debug)]
enum Counted<'g> {
    /// A lookup group's set (`any` when `ports` is false): the allows it holds.
    Group { ports: bool, allows: Vec<&'g Allow> },
    /// The ports half of one allow looked up as a pair.
    Pair(&'g Allow),
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
        let mut t = Traffic::default();
        if !opts.counters {
            return t;
        }
        let over = over_budget(graph, opts);
        for pod in graph.pods.values() {
            for dir in [Direction::Ingress, Direction::Egress] {
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
        let mut out: BTreeSet<RuleId> = BTreeSet::new();
        match self.sets.get(set) {
            None => {}
            Some(Counted::Pair(a)) => {
                out.insert(rule_id(a));
            }
            Some(Counted::Group { ports, allows }) => {
                let Some(point) = first_point(element, *ports) else {
                    return Vec::new();
                };
                for a in allows.iter().filter(|a| covers(graph, a, &point)) {
                    out.insert(rule_id(a));
                }
            }
        }
        out.into_iter().collect()
    }

    /// The direction and the policies (`namespace/name`) that isolate the pod whose
    /// chain is `chain`: what its `counter drop` is credited to.
    pub fn isolating(&self, chain: &str) -> Option<(Direction, &'g [String])> {
        self.drops.get(chain).copied()
    }
}

fn rule_id(a: &Allow) -> RuleId {
    RuleId {
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
