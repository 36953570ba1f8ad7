//! ClusterNetworkPolicy `domainNames` rules as the graph judges them: given what was
//! learned ([`Learned`] facts: which addresses count as learned for which rule), an Admin
//! `domainNames` rule admits a learned address on its ports where it is the first Admin
//! rule to match, exactly as the compiled lookups do (the tests compare this with the
//! ruleset evaluator given the same facts). `--resolved NAME=ADDR` ("the source pod
//! resolved NAME and got ADDR") turns into facts for the rules whose patterns match NAME,
//! for one pod (`explain`) or for every pod of a graph (`graph`).
//!
//! Reads the graph; never the ruleset.

use std::net::IpAddr;

use hickory_proto::rr::Name;

use crate::fqdn::facts::Learned;
use crate::fqdn::DomainPattern;
use crate::graph::tiers::{Decision, DomainEntry};
use crate::graph::{PodNode, PolicyGraph};
use crate::policy::{Direction, Protocol};

/// One `--resolved NAME=ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub name: String,
    pub addr: IpAddr,
}

/// Why a `--resolved` value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: {problem} (expected NAME=ADDR, like api.example.com=192.0.2.10)")]
pub struct ResolutionError {
    pub text: String,
    pub problem: String,
}

impl Resolution {
    pub fn parse(text: &str) -> Result<Resolution, ResolutionError> {
        let bad = |problem: &str| ResolutionError {
            text: text.to_string(),
            problem: problem.to_string(),
        };
        let (name, addr) = text.split_once('=').ok_or_else(|| bad("no '='"))?;
        Name::from_ascii(name).map_err(|_| bad("not a domain name"))?;
        if name.is_empty() {
            return Err(bad("not a domain name"));
        }
        let addr = addr.parse().map_err(|_| bad("not an IP address"))?;
        Ok(Resolution {
            name: name.to_string(),
            addr,
        })
    }
}

/// Whether one of `d`'s patterns matches `name`.
pub fn rule_matches(d: &DomainEntry, name: &str) -> bool {
    let Ok(name) = Name::from_ascii(name) else {
        return false;
    };
    d.patterns
        .iter()
        .filter_map(|p| DomainPattern::parse(p).ok())
        .any(|p| p.matches(&name))
}

/// The facts `resolved` gives for `pod`'s egress: each address counts as learned for
/// every `domainNames` rule of the pod whose patterns match its name.
pub fn learned_for(pod: &PodNode, resolved: &[Resolution]) -> Learned {
    let mut out = Learned::new();
    add_for(&mut out, pod, resolved);
    out
}

/// The facts `resolved` gives for the `domainNames` rules of every pod of `graph`
/// (enforced and audited views), as [`learned_for`] gives them for one: what `graph
/// --resolved` lists.
pub fn learned_in(graph: &PolicyGraph, resolved: &[Resolution]) -> Learned {
    let mut out = Learned::new();
    for pod in graph.pods.values() {
        for view in std::iter::once(pod).chain(pod.audited.as_deref()) {
            add_for(&mut out, view, resolved);
        }
    }
    out
}

fn add_for(out: &mut Learned, pod: &PodNode, resolved: &[Resolution]) {
    for d in &pod.tiers.egress.admin.domains {
        for r in resolved.iter().filter(|r| rule_matches(d, &r.name)) {
            out.add(
                &d.origin.policy,
                d.origin.rule.unwrap_or(0),
                r.addr,
                &r.name,
            );
        }
    }
}

/// Whether `d` admits a connection to `other` on `port` given `learned`.
pub fn admits(d: &DomainEntry, learned: &Learned, other: IpAddr, p: Protocol, port: u16) -> bool {
    let rule = d.origin.rule.unwrap_or(0);
    d.ports.contains(p, port) && learned.domain(&d.origin.policy, rule, other).is_some()
}

/// [`super::end_allowed`] with `learned` facts for the `domainNames` rules: the same walk
/// ([`crate::graph::tiers::TierSide::decide_learned`]).
pub fn end_allowed_learned(
    graph: &PolicyGraph,
    pod: &PodNode,
    dir: Direction,
    other: IpAddr,
    (protocol, port): (Protocol, u16),
    learned: &Learned,
) -> bool {
    let side = pod.tiers.side(dir);
    if side.admin.domains.is_empty() || pod.ips.contains(&other) {
        return super::end_allowed(graph, pod, dir, other, protocol, port);
    }
    let np = super::np_allows(graph, pod, dir, other, protocol, port);
    let matches = |r: &crate::graph::tiers::TierRule| {
        graph.peer_contains(r.peer, other) && r.ports.contains(protocol, port)
    };
    side.decide_learned(np, matches, |d| admits(d, learned, other, protocol, port))
        .allowed()
}

/// What explain says of `pod`'s `domainNames` rules for a connection to `other`: the
/// patterns of the rule that admitted it through a learned address and the name it was
/// learned from, or each rule before the one that decided as a near miss that only run
/// time can decide.
pub fn notes(
    graph: &PolicyGraph,
    pod: &PodNode,
    other: IpAddr,
    (protocol, port): (Protocol, u16),
    learned: &Learned,
) -> Vec<String> {
    let side = &pod.tiers.egress;
    let matches = |r: &crate::graph::tiers::TierRule| {
        graph.peer_contains(r.peer, other) && r.ports.contains(protocol, port)
    };
    let admit = |d: &DomainEntry| admits(d, learned, other, protocol, port);
    if let Decision::Domain(d) = side.decide_learned(None, matches, admit) {
        let rule = d.origin.rule.unwrap_or(0);
        let name = learned.domain(&d.origin.policy, rule, other).unwrap_or("");
        return vec![format!(
            "domainNames {}: {other} was learned from {name}",
            d.patterns.join(", ")
        )];
    }
    // The domain rules before the rule that decided (if one did).
    let decided = side.admin.rules.iter().position(matches);
    side.admin
        .domains
        .iter()
        .filter(|d| decided.is_none_or(|i| d.position <= i))
        .filter(|d| d.ports.contains(protocol, port))
        .map(|d| {
            format!(
                "{} admits addresses learned from names matching {} at run time",
                d.origin,
                d.patterns.join(", ")
            )
        })
        .collect()
}

/// Explain's Admin step for the egress of `pod` (the last of `steps`): when a
/// `domainNames` rule decided, the step names it and the name the address was learned
/// from; otherwise each domain rule on the port is noted as a near miss for run time.
pub(super) fn admin_step(
    graph: &PolicyGraph,
    pod: &PodNode,
    probe: &super::Probe,
    (decision, steps): (&Decision, &mut [super::steps::TierStep]),
) {
    let Some(step) = steps.last_mut() else {
        return;
    };
    if probe.dir != Direction::Egress || pod.tiers.egress.admin.domains.is_empty() {
        return;
    }
    let port = (probe.protocol, probe.port);
    let said = notes(graph, pod, probe.other, port, &probe.learned);
    if let Decision::Domain(d) = decision {
        step.rule = Some(d.origin.clone());
        step.outcome = super::steps::Outcome::of(crate::cnp::Action::Accept);
        step.note = said.into_iter().next();
        return;
    }
    if said.is_empty() {
        return;
    }
    let words = said.join("; ");
    step.note = Some(match step.note.take() {
        Some(n) => format!("{n}; {words}"),
        None => words,
    });
}
