//! The ClusterNetworkPolicy objects of one pod direction: its tier sets, the tier rules
//! of its pod chain, and the small drop tail those rules `goto`.
//!
//! ```text
//! chain egress/<ns>/<pod>
//!   Admin Accept: ip daddr @…/admin-accept-any4 return       (6 lookups, both families)
//!   Admin Deny:   ip daddr @…/admin-deny-any4 goto …/drop     (6 lookups)
//!   NetworkPolicy, when it isolates the pod (build.rs): lookups return; log; drop
//!   Baseline Deny, when it does not: ip daddr @…/baseline-deny-any4 goto …/drop (6)
//!   (falls through: allowed)
//! chain egress/<ns>/<pod>/drop: [ct state new … log prefix "d egress/<ns>/<pod>"]; drop
//! ```
//!
//! A tier's rules become sets through [`super::regions`], so a pod chain has the same
//! rules whatever the number of policies and rules: a change is set elements (and rule
//! comments). Owns the tier part of pod chains only; the NetworkPolicy part, the chain
//! itself and the dispatch entries stay in `build.rs`. The `domainNames` lookups between
//! Admin Accept and Admin Deny are `domain_rules`'s.

use std::rc::Rc;

use super::domain_rules;
use super::memo::Memo;
use super::model::*;
use super::names;
use super::np_elements::split_exact;
use super::options::LogOptions;
use super::regions::{Lookups, RegionRule, Regions};
use super::roles::{SetKind, TierSet};
use crate::addr::AddrSet;
use crate::cnp::{Action, Tier};
use crate::graph::tiers::TierRules;
use crate::graph::{PeerRef, PodNode, PolicyGraph, Ports};
use crate::policy::Direction;

/// The tier part of one pod direction, to be placed around its NetworkPolicy rules.
pub(super) struct TierPart {
    /// Admin Accept then Admin Deny lookups.
    pub admin: Vec<Rule>,
    /// Baseline Deny lookups; empty when NetworkPolicy isolates the pod (it decides).
    pub baseline: Vec<Rule>,
}

/// Whether `pod` has a chain in `dir`: NetworkPolicy isolates it there, a
/// ClusterNetworkPolicy selects it with rules in that direction, or audited policies
/// would change it there.
pub(super) fn has_chain(pod: &PodNode, dir: Direction) -> bool {
    pod.isolation(dir).is_some() || !pod.tiers.side(dir).is_empty() || pod.audited_in(dir).is_some()
}

/// The tiers the chain of `pod` in `dir` looks up: Admin when it has policies, Baseline
/// when it has policies and NetworkPolicy does not isolate the pod.
fn tiers_in_chain(pod: &PodNode, dir: Direction) -> (bool, bool) {
    let side = pod.tiers.side(dir);
    (
        !side.admin.is_empty(),
        !side.baseline.is_empty() && pod.isolation(dir).is_none(),
    )
}

/// Whether the chain of `pod` in `dir` has tier Deny lookups (and so a drop tail).
pub(super) fn has_drop_tail(pod: &PodNode, dir: Direction) -> bool {
    let (admin, baseline) = tiers_in_chain(pod, dir);
    admin || baseline
}

/// What a tier's region arithmetic depends on: the tier and its rules' actions, peers and
/// ports, in order, and when counted which policy rule each comes from ([`owners`]).
type CacheKey = (Tier, Vec<(Action, PeerRef, Ports)>, Vec<usize>);

/// The lookups of one tier, per family: (accept, deny); Baseline has no accept.
type TierLookups = (Option<[Lookups; 2]>, [Lookups; 2]);

/// Tier lookups computed once per build for every pod the same policies select: the
/// region arithmetic grows with the rules and their port edges, the pods sharing them
/// are many.
#[derive(Default)]
pub(super) struct Cache {
    memo: Memo<CacheKey, TierLookups>,
    /// [`super::Options::counters`]: the enforced tier sets count per element, each cut
    /// to lie in one policy rule's region.
    counted: bool,
    /// The open regions of domain rules (`domain_rules`).
    domains: domain_rules::Cache,
}

impl Cache {
    pub(super) fn new(counted: bool) -> Cache {
        Cache {
            memo: Memo::default(),
            counted,
            domains: Default::default(),
        }
    }

    fn lookups(&self, graph: &PolicyGraph, tier: Tier, rules: &TierRules) -> Rc<TierLookups> {
        let owned = match self.counted {
            true => owners(rules),
            false => Vec::new(),
        };
        let key: CacheKey = (
            tier,
            rules
                .rules
                .iter()
                .map(|r| (r.action, r.peer, r.ports.clone()))
                .collect(),
            owned,
        );
        self.memo.get_or_compute(key, || {
            let r = regions(graph, rules, self.counted.then(|| owners(rules)));
            match tier {
                Tier::Admin => (
                    Some([r.v4.accept(), r.v6.accept()]),
                    [r.v4.deny(true), r.v6.deny(true)],
                ),
                Tier::Baseline => (None, [r.v4.deny(false), r.v6.deny(false)]),
            }
        })
    }
}

/// The owner of each rule entry: entries of one policy rule (one per peer) share one.
fn owners(rules: &TierRules) -> Vec<usize> {
    let mut seen: Vec<(&str, Option<usize>)> = Vec::new();
    let mut out = Vec::with_capacity(rules.rules.len());
    for r in &rules.rules {
        let id = (r.origin.policy.as_str(), r.origin.rule);
        let i = seen.iter().position(|s| *s == id).unwrap_or_else(|| {
            seen.push(id);
            seen.len() - 1
        });
        out.push(i);
    }
    out
}

fn regions(graph: &PolicyGraph, rules: &TierRules, owners: Option<Vec<usize>>) -> Regions {
    let everything = AddrSet::everything();
    let list: Vec<RegionRule> = rules
        .rules
        .iter()
        .map(|r| RegionRule {
            action: r.action,
            addrs: match r.peer {
                PeerRef::Any => &everything,
                PeerRef::Peer(id) => &graph.peers[id].addrs,
            },
            ports: &r.ports,
        })
        .collect();
    match owners {
        Some(owners) => Regions::counted(&list, &owners),
        None => Regions::new(&list),
    }
}

/// The six sets of one tier verdict ([`SetKind::ALL`]) from its lookups per family.
fn verdict_sets(
    counted: bool,
    view: View,
    pod: &PodNode,
    dir: Direction,
    tier: TierSet,
    what: &str,
    [v4, v6]: &[Lookups; 2],
) -> Vec<Set> {
    let key = |addr: KeyType| vec![addr, KeyType::InetProto, KeyType::InetService];
    let mut out = Vec::with_capacity(6);
    for (f, (l, addr)) in [(v4, KeyType::Ipv4Addr), (v6, KeyType::Ipv6Addr)]
        .into_iter()
        .enumerate()
    {
        let is6 = f == 1;
        let (exact, ranges) = split_exact(l.boxes.clone());
        let parts = [
            (vec![addr], true, l.any_elements(is6), "on any port"),
            (key(addr), false, exact, "on listed ports (single)"),
            (key(addr), true, ranges, "on listed ports (ranges)"),
        ];
        for (i, (key, interval, elements, on)) in parts.into_iter().enumerate() {
            let kind = SetKind::ALL[f * 3 + i];
            out.push(Set {
                name: view.pod_set(dir, pod, tier, kind),
                role: view.role(tier, kind),
                key,
                interval,
                comment: Some(names::comment(&format!(
                    "pod {} {dir}: {what} {on}",
                    pod.id()
                ))),
                elements,
                timeout: None,
                counter: counted,
            });
        }
    }
    out
}

/// The tier sets of `pod` in `dir`, for the tiers its chain looks up.
pub(super) fn tier_sets(
    graph: &PolicyGraph,
    cache: &Cache,
    view: View,
    pod: &PodNode,
    dir: Direction,
) -> Vec<Set> {
    let (admin, baseline) = tiers_in_chain(pod, dir);
    let side = pod.tiers.side(dir);
    // Counted: the enforced view's sets (the audited view's decide nothing).
    let counted = cache.counted && view == View::Enforced;
    let mut out = Vec::new();
    if admin {
        let l = cache.lookups(graph, Tier::Admin, &side.admin);
        if let Some(accept) = &l.0 {
            let tier = TierSet::AdminAccept;
            out.extend(verdict_sets(
                counted,
                view,
                pod,
                dir,
                tier,
                "Admin accepts",
                accept,
            ));
        }
        let tier = TierSet::AdminDeny;
        out.extend(verdict_sets(
            counted,
            view,
            pod,
            dir,
            tier,
            "Admin denies",
            &l.1,
        ));
        if dir == Direction::Egress {
            let audited = view == View::Audited;
            out.extend(domain_rules::sets(graph, &cache.domains, pod, audited));
        }
    }
    if baseline {
        let l = cache.lookups(graph, Tier::Baseline, &side.baseline);
        let tier = TierSet::BaselineDeny;
        out.extend(verdict_sets(
            counted,
            view,
            pod,
            dir,
            tier,
            "Baseline denies",
            &l.1,
        ));
    }
    out
}

/// Six lookups of one tier verdict, each with `verdict`; the rules' comment names the
/// tier's policies (it changes with them; the set comments never do).
fn lookups(
    view: View,
    pod: &PodNode,
    dir: Direction,
    tier: TierSet,
    verdict: Verdict,
    log: Option<LogTarget>,
    comment: &str,
) -> Vec<Rule> {
    let addr = match dir {
        Direction::Egress => Addr::Daddr,
        Direction::Ingress => Addr::Saddr,
    };
    SetKind::ALL
        .into_iter()
        .map(|kind| {
            let family = if kind.v6() {
                IpFamily::V6
            } else {
                IpFamily::V4
            };
            let key = match (kind.with_ports(), kind.interval()) {
                (false, _) => LookupKey::Addr,
                (true, ranges) => LookupKey::Ports { ranges },
            };
            Rule::with_comment(
                RuleKind::Lookup {
                    family,
                    addr,
                    key,
                    set: view.pod_set(dir, pod, tier, kind),
                    verdict: verdict.clone(),
                    log: log.clone(),
                },
                comment.to_string(),
            )
        })
        .collect()
}

fn tier_comment(tier: Tier, verdict: &str, rules: &TierRules) -> String {
    names::comment(&format!("{tier} {verdict}: {}", rules.policies.join(", ")))
}

/// What the rules of one pod chain (or audit chain) do when they decide.
pub(super) struct Ends {
    /// What an allow does: `return` in the egress chain, `accept` in the ingress and
    /// input chains; a `goto` in the chains that audit a decision.
    pub allow: Verdict,
    /// What a deny does: `goto` the drop tail, or an audit chain.
    pub deny: Verdict,
    /// `--log-allowed`: the allow lookups log (in the enforced view only).
    pub log_allowed: Option<LogTarget>,
}

impl Ends {
    /// The ends of `pod`'s own chain in `dir`: `allow`, the drop tail, and its log.
    pub(super) fn enforced(
        pod: &PodNode,
        dir: Direction,
        allow: Verdict,
        log: &LogOptions,
    ) -> Ends {
        let chain = names::pod_chain(dir, &pod.namespace, &pod.name);
        Ends {
            allow,
            deny: Verdict::Goto(names::pod_drop_chain(dir, &pod.namespace, &pod.name)),
            log_allowed: log.allowed.then(|| LogTarget {
                prefix: names::log_prefix(names::LogVerdict::Allowed, &chain),
                group: log.group,
            }),
        }
    }
}

/// Which view of a pod a chain part is built from: its own sets are named after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    Enforced,
    Audited,
}

impl View {
    fn pod_set(self, dir: Direction, pod: &PodNode, tier: TierSet, kind: SetKind) -> String {
        match self {
            View::Enforced => names::pod_set(dir, &pod.namespace, &pod.name, tier, kind),
            View::Audited => names::audit_pod_set(dir, &pod.namespace, &pod.name, tier, kind),
        }
    }

    fn role(self, tier: TierSet, kind: SetKind) -> SetRole {
        match self {
            View::Enforced => SetRole::Tier(tier, kind),
            View::Audited => SetRole::AuditTier(tier, kind),
        }
    }
}

/// The tier rules of `pod`'s chain in `dir` (in `view`): Admin Accept lookups do
/// `ends.allow`, Deny lookups `ends.deny`.
pub(super) fn tier_rules(pod: &PodNode, dir: Direction, view: View, ends: &Ends) -> TierPart {
    let (admin, baseline) = tiers_in_chain(pod, dir);
    let side = pod.tiers.side(dir);
    let mut part = TierPart {
        admin: Vec::new(),
        baseline: Vec::new(),
    };
    if admin {
        part.admin = lookups(
            view,
            pod,
            dir,
            TierSet::AdminAccept,
            ends.allow.clone(),
            ends.log_allowed.clone(),
            &tier_comment(Tier::Admin, "accept", &side.admin),
        );
        if dir == Direction::Egress {
            let audited = view == View::Audited;
            part.admin.extend(domain_rules::rules(
                pod,
                &ends.allow,
                &ends.log_allowed,
                audited,
            ));
        }
        part.admin.extend(lookups(
            view,
            pod,
            dir,
            TierSet::AdminDeny,
            ends.deny.clone(),
            None,
            &tier_comment(Tier::Admin, "deny", &side.admin),
        ));
    }
    if baseline {
        part.baseline = lookups(
            view,
            pod,
            dir,
            TierSet::BaselineDeny,
            ends.deny.clone(),
            None,
            &tier_comment(Tier::Baseline, "deny", &side.baseline),
        );
    }
    part
}

/// The drop tail of `pod`'s chain in `dir`, when its chain has tier Deny lookups: the
/// denied log rule (with the pod chain's prefix, so the verdict reader names the pod
/// chain) and the drop.
pub(super) fn drop_tail(pod: &PodNode, dir: Direction, log: &LogOptions) -> Option<Chain> {
    if !has_drop_tail(pod, dir) && pod.audited_in(dir).is_none() {
        return None;
    }
    let chain = names::pod_chain(dir, &pod.namespace, &pod.name);
    let mut rules = Vec::new();
    if log.denied {
        rules.push(Rule::new(RuleKind::LogDenied {
            prefix: names::log_prefix(names::LogVerdict::Denied, &chain),
            group: log.group,
            rate: log.rate,
            burst: log.burst,
        }));
    }
    // With audit chains every enforced deny ends here, NetworkPolicy's too.
    let by = match pod.audited_in(dir) {
        None => "ClusterNetworkPolicy",
        Some(_) => "policy",
    };
    rules.push(Rule::with_comment(
        RuleKind::Verdict(Verdict::Drop),
        format!("denied by a {by}"),
    ));
    Some(Chain {
        name: names::pod_drop_chain(dir, &pod.namespace, &pod.name),
        base: None,
        comment: Some(names::comment(&format!(
            "pod {} {dir}: {by} drops",
            pod.id()
        ))),
        rules,
    })
}
