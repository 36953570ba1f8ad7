//! Builds the [`Ruleset`] for the pods of a [`PolicyGraph`]: base chains, dispatch maps,
//! and for every pod and direction that NetworkPolicy isolates or ClusterNetworkPolicy
//! tiers select one chain and its sets (the tier part in `tier_chain`, the input hook in
//! `input_hook`, the maps in `dispatch`). Pure: the same graph always gives an equal
//! model.

use super::audit_chain;
use super::base::{base_chains, held_sets};
use super::dispatch::{dispatch_maps, patch_dispatch_maps};
use super::domain_rules;
use super::input_hook;
use super::memo::Memo;
use super::model::*;
use super::names::{self, KNOWN_PODS};
use super::np_elements::{self, one_field_elements, split_exact, Pair};
use super::options::{over_budget, LogOptions, Options};
use super::roles::{PairPart, SetKind};
use super::tier_chain::{self, Ends, View};
use crate::addr::AddrSet;
use crate::graph::PodKey;
use crate::graph::{Allow, Isolation, PeerRef, PodNode, PolicyGraph, Ports};
use crate::policy::Direction;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

/// The policies behind a pod direction's `any` sets and behind its `ports` sets (the
/// allows looked up as pairs have their own sets and rules).
fn allowed_by<'a>(iso: &'a Isolation, pairs: &[Pair]) -> [std::collections::BTreeSet<&'a str>; 2] {
    let mut by: [std::collections::BTreeSet<&str>; 2] = Default::default();
    for (i, a) in iso.allows.iter().enumerate() {
        if pairs.iter().any(|p| p.allow == i) {
            continue;
        }
        by[usize::from(a.ports != Ports::Any)].insert(a.origin.policy.as_str());
    }
    by
}

/// The elements of a pod direction's six NetworkPolicy sets, in [`SetKind::ALL`] order,
/// and the allows it looks up as pairs.
struct PodElements {
    sets: [Vec<Element>; 6],
    pairs: Vec<Pair>,
}

/// What a pod direction's set elements depend on: its allows' peers and ports, in order.
type AllowKey = Vec<(PeerRef, Ports)>;

/// Set elements computed once per build for every pod direction the same policies
/// select: the box arithmetic grows with the peers' addresses (thousands of elements for
/// a pod), and the pods that share their policies are many. Only valid for one graph:
/// it lives as long as one build or rebuild.
#[derive(Default)]
struct AllowedCache(Memo<AllowKey, PodElements>);

impl AllowedCache {
    fn elements(
        &self,
        graph: &PolicyGraph,
        iso: &Isolation,
        budget: Option<usize>,
        counted: bool,
    ) -> Rc<PodElements> {
        let key: AllowKey = iso
            .allows
            .iter()
            .map(|a| (a.peer, a.ports.clone()))
            .collect();
        self.0.get_or_compute(key, || {
            let a = np_elements::allowed(graph, iso, budget, counted);
            let any4 = np_elements::any_elements(iso, graph, &a, false, counted);
            let any6 = np_elements::any_elements(iso, graph, &a, true, counted);
            let (exact4, ranges4) = split_exact(a.ports4);
            let (exact6, ranges6) = split_exact(a.ports6);
            PodElements {
                sets: [any4, exact4, ranges4, any6, exact6, ranges6],
                pairs: a.pairs,
            }
        })
    }
}

/// The canonical text of what a pod direction's NetworkPolicy sets hold, named in
/// [`names::np_set`]: each allow's origin (policy, rule, peer, port name) and its resolved
/// ports. In one cluster state the origin fixes the peer's addresses (an egress named port
/// split by its port), so pods with the same key have the same elements, and a key stays
/// the same while its peers' addresses change: those edit the shared set in place.
pub(super) fn allows_key(iso: &Isolation) -> String {
    let mut key = String::new();
    for a in &iso.allows {
        allow_key(a, &mut key);
    }
    key
}

/// [`allow_key`], for the attribution of counters (`traffic`), which finds a pair's
/// sets by it.
pub(super) fn allow_key_of(a: &Allow, key: &mut String) {
    allow_key(a, key)
}

/// One allow's part of [`allows_key`]; alone, the name of its pair sets, which every pod
/// direction with this allow shares whatever its other allows.
fn allow_key(a: &Allow, key: &mut String) {
    use std::fmt::Write;
    let o = &a.origin;
    let _ = write!(
        key,
        "{}\u{1f}{}\u{1f}{}\u{1f}",
        o.policy,
        o.direction.name(),
        o.rule
    );
    match o.peer {
        Some(p) => {
            let _ = write!(key, "{p}");
        }
        None => key.push('*'),
    }
    key.push('\u{1f}');
    key.push_str(o.port_name.as_deref().unwrap_or(""));
    key.push('\u{1f}');
    match &a.ports {
        Ports::Any => key.push('*'),
        Ports::Only(list) => {
            for r in list {
                let _ = write!(key, "{}:{}-{},", r.protocol.number(), r.start, r.end);
            }
        }
    }
    key.push('\u{1e}');
}

/// Where a pod chain is: what its logging rules need of the operator's options.
struct PodCtx<'a> {
    graph: &'a PolicyGraph,
    log: &'a LogOptions,
    /// Tier regions already computed in this build (pods selected by the same policies).
    tiers: tier_chain::Cache,
    /// NetworkPolicy set elements already computed in this build, likewise.
    allowed: AllowedCache,
    /// [`Options::concat_budget`].
    concat_budget: Option<usize>,
    /// The policies [`over_budget`]: their allows are left out.
    over_budget: BTreeMap<String, usize>,
    /// The shared sets already given in this build or rebuild (see [`emit_shared`]).
    emitted: RefCell<HashSet<String>>,
    /// [`Options::counters`].
    counters: bool,
}

/// The chain of `pod` in `dir` (when it has one, see [`tier_chain::has_chain`]), its
/// sets and its drop tail: Admin lookups, then the NetworkPolicy part when NetworkPolicy
/// isolates the pod, then Baseline Deny lookups; what falls through is allowed. When
/// audited policies change the pod in `dir`, its decisions go to the audit chains
/// instead (see `audit_chain`).
fn pod_objects(
    ctx: &PodCtx,
    pod: &PodNode,
    dir: Direction,
    sets: &mut Vec<Set>,
    chains: &mut Vec<Chain>,
) {
    if !tier_chain::has_chain(pod, dir) {
        return;
    }
    let audited = pod.audited_in(dir);
    let allow = audit_chain::final_allow(dir);
    let mut ends = Ends::enforced(pod, dir, allow.clone(), ctx.log);
    if audited.is_some() {
        (ends.allow, ends.deny) = audit_chain::enforced_ends(pod, dir);
    }
    sets.extend(tier_chain::tier_sets(
        ctx.graph,
        &ctx.tiers,
        View::Enforced,
        pod,
        dir,
    ));
    let mut rules = view_rules(ctx, pod, dir, View::Enforced, &ends, sets);
    match (pod.isolation(dir), audited) {
        (Some(iso), None) => rules.extend(np_deny(ctx, pod, dir, iso)),
        (Some(iso), Some(_)) => rules.push(Rule::with_comment(
            // Counted as the drop it stands for (the traffic counters read it as one).
            match ctx.counters {
                true => RuleKind::Counted(ends.deny.clone()),
                false => RuleKind::Verdict(ends.deny.clone()),
            },
            names::comment(&format!("isolated by {}", iso.isolated_by.join(", "))),
        )),
        (None, Some(_)) => rules.push(Rule::new(RuleKind::Verdict(ends.allow.clone()))),
        (None, None) => {}
    }
    let id = pod.id();
    chains.push(Chain {
        name: names::pod_chain(dir, &pod.namespace, &pod.name),
        base: None,
        comment: Some(names::comment(&format!("pod {id} {dir}"))),
        rules,
    });
    chains.extend(tier_chain::drop_tail(pod, dir, ctx.log));
    if let Some(audited) = audited {
        sets.extend(tier_chain::tier_sets(
            ctx.graph,
            &ctx.tiers,
            View::Audited,
            audited,
            dir,
        ));
        let judged = audit_chain::judge_ends(pod, dir).map(|ends| {
            let rules = view_rules(ctx, audited, dir, View::Audited, &ends, sets);
            (ends, rules)
        });
        chains.extend(audit_chain::chains(pod, audited, dir, judged, ctx.log));
    }
}

/// The rules of one view of a pod direction up to its end: tier lookups and the
/// NetworkPolicy allow lookups (whose shared sets go to `sets`; the view's tier sets are
/// the caller's), each doing what `ends` says.
fn view_rules(
    ctx: &PodCtx,
    pod: &PodNode,
    dir: Direction,
    view: View,
    ends: &Ends,
    sets: &mut Vec<Set>,
) -> Vec<Rule> {
    let tiers = tier_chain::tier_rules(pod, dir, view, ends);
    let mut rules = tiers.admin;
    if let Some(iso) = pod.isolation(dir) {
        let over = |a: &Allow| ctx.over_budget.contains_key(&a.origin.policy);
        if iso.allows.iter().any(over) {
            let within = Isolation {
                isolated_by: iso.isolated_by.clone(),
                allows: iso.allows.iter().filter(|a| !over(a)).cloned().collect(),
            };
            rules.extend(np_rules(ctx, dir, &within, ends, sets));
        } else {
            rules.extend(np_rules(ctx, dir, iso, ends, sets));
        }
    }
    rules.extend(tiers.baseline);
    rules
}

/// The end of a chain NetworkPolicy isolates: the denied log rule and the drop.
fn np_deny(ctx: &PodCtx, pod: &PodNode, dir: Direction, iso: &Isolation) -> Vec<Rule> {
    let chain = names::pod_chain(dir, &pod.namespace, &pod.name);
    let mut rules = Vec::new();
    if ctx.log.denied {
        rules.push(Rule::new(RuleKind::LogDenied {
            prefix: names::log_prefix(names::LogVerdict::Denied, &chain),
            group: ctx.log.group,
            rate: ctx.log.rate,
            burst: ctx.log.burst,
        }));
    }
    // Counted (the traffic counters credit it to the isolating policies).
    let drop = match ctx.counters {
        true => RuleKind::Counted(Verdict::Drop),
        false => RuleKind::Verdict(Verdict::Drop),
    };
    rules.push(Rule::with_comment(
        drop,
        names::comment(&format!("isolated by {}", iso.isolated_by.join(", "))),
    ));
    rules
}

/// The NetworkPolicy allow lookups of a pod direction and their (shared) sets, each
/// doing `ends.allow`.
fn np_rules(
    ctx: &PodCtx,
    dir: Direction,
    iso: &Isolation,
    ends: &Ends,
    sets: &mut Vec<Set>,
) -> Vec<Rule> {
    let graph = ctx.graph;
    let elements = ctx
        .allowed
        .elements(graph, iso, ctx.concat_budget, ctx.counters);
    let [any_by, ports_by] = allowed_by(iso, &elements.pairs);
    let addr = match dir {
        Direction::Egress => Addr::Daddr,
        Direction::Ingress => Addr::Saddr,
    };
    let lookup = PairLookup {
        counters: ctx.counters,
        emitted: &ctx.emitted,
        dir,
        addr,
        verdict: &ends.allow,
        log: &ends.log_allowed,
    };
    let allows = allows_key(iso);
    let policies: std::collections::BTreeSet<&str> = iso
        .allows
        .iter()
        .map(|a| a.origin.policy.as_str())
        .collect();
    let policies = policies.into_iter().collect::<Vec<_>>().join(", ");
    let mut rules = Vec::new();
    for (kind, elements) in SetKind::ALL.into_iter().zip(elements.sets.iter()) {
        let by = if kind.with_ports() {
            &ports_by
        } else {
            &any_by
        };
        let set = SharedSet {
            kind,
            elements,
            allows: &allows,
            policies: &policies,
        };
        rules.push(np_lookup(&lookup, set, by, sets));
    }
    for p in &elements.pairs {
        pair_objects(&lookup, p, &iso.allows[p.allow], sets, &mut rules);
    }
    rules
}

/// One of a pod direction's six shared NetworkPolicy sets, before it is emitted.
struct SharedSet<'a> {
    kind: SetKind,
    elements: &'a [Element],
    /// The canonical key of the allows it serves (its name follows it).
    allows: &'a str,
    /// The policies behind the key, for the set's comment.
    policies: &'a str,
}

/// The lookup of one shared NetworkPolicy set, giving the set once per build; `by` names
/// the policies behind this lookup's allows for the rule's comment.
fn np_lookup(
    l: &PairLookup,
    s: SharedSet,
    by: &std::collections::BTreeSet<&str>,
    sets: &mut Vec<Set>,
) -> Rule {
    let (kind, dir) = (s.kind, l.dir);
    let (family, addr_type) = match kind.v6() {
        false => (IpFamily::V4, KeyType::Ipv4Addr),
        true => (IpFamily::V6, KeyType::Ipv6Addr),
    };
    let (ports, interval) = (kind.with_ports(), kind.interval());
    let key = match ports {
        false => vec![addr_type],
        true => vec![addr_type, KeyType::InetProto, KeyType::InetService],
    };
    let set = names::np_set(dir, s.allows, kind);
    let what = match (ports, interval) {
        (false, _) => "on any port",
        (true, false) => "on listed ports (single)",
        (true, true) => "on listed ports (ranges)",
    };
    let peer_word = match dir {
        Direction::Ingress => "sources",
        Direction::Egress => "destinations",
    };
    // A set's comment cannot change in place: it names what its name stands for (the
    // policies behind its key), and the rule's comment those behind this lookup.
    emit_shared(l.emitted, sets, &set, || Set {
        name: set.clone(),
        role: SetRole::NpAllow(kind),
        key,
        interval,
        comment: Some(names::comment(&format!(
            "{dir} {peer_word} allowed {what} by {}",
            s.policies
        ))),
        elements: s.elements.to_vec(),
        timeout: None,
        counter: l.counters,
    });
    let rule = RuleKind::Lookup {
        family,
        addr: l.addr,
        key: match ports {
            true => LookupKey::Ports { ranges: interval },
            false => LookupKey::Addr,
        },
        set,
        verdict: l.verdict.clone(),
        log: l.log.clone(),
    };
    if by.is_empty() {
        return Rule::new(rule);
    }
    let by = by.iter().copied().collect::<Vec<_>>().join(", ");
    Rule::with_comment(rule, names::comment(&format!("allowed by {by}")))
}

/// Gives the shared set `name` once per build: every pod direction with the same allows
/// looks it up, and a copy per pod (its elements: thousands, for a large peer) would make
/// the build's memory grow with pods x elements before the duplicates are dropped.
fn emit_shared(
    emitted: &RefCell<HashSet<String>>,
    sets: &mut Vec<Set>,
    name: &str,
    make: impl FnOnce() -> Set,
) {
    if emitted.borrow_mut().insert(name.to_string()) {
        sets.push(make());
    }
}

/// Where a pod direction's pair lookups go: the direction and the rule's verdict.
struct PairLookup<'a> {
    /// Sets that count what they allow get a counter per element.
    counters: bool,
    emitted: &'a RefCell<HashSet<String>>,
    dir: Direction,
    addr: Addr,
    verdict: &'a Verdict,
    log: &'a Option<LogTarget>,
}

/// The sets and rules of one allow looked up as a pair (see `np_elements`): per family
/// with addresses, `ip saddr @<addrs> meta l4proto . th dport @<ports> <verdict>`. The
/// sets are named after the allow alone, so a large allow has one copy on the node
/// however many different allow lists it is part of.
fn pair_objects(
    l: &PairLookup,
    p: &Pair,
    allow: &Allow,
    sets: &mut Vec<Set>,
    rules: &mut Vec<Rule>,
) {
    // No address in either family (peers that hold no pod yet): no lookup, so no ports
    // set either. One given anyway would be in the model but looked up by no chain, so no
    // pod's view would carry it: the incremental batches would never create or delete it.
    if p.addrs4.is_empty() && p.addrs6.is_empty() {
        return;
    }
    let mut key = String::new();
    allow_key(allow, &mut key);
    let policy = &allow.origin.policy;
    let ports = names::np_pair_set(l.dir, &key, PairPart::Ports);
    let comment = |what: &str| {
        Some(names::comment(&format!(
            "{} allowed by {policy}: {what}",
            l.dir
        )))
    };
    emit_shared(l.emitted, sets, &ports, || Set {
        name: ports.clone(),
        role: SetRole::NpPair(PairPart::Ports),
        key: vec![KeyType::InetProto, KeyType::InetService],
        interval: p.ranges,
        comment: comment("ports"),
        elements: p.ports.clone(),
        timeout: None,
        // The ports half decides: it is looked up only once the addresses matched.
        counter: l.counters,
    });
    let families = [
        (IpFamily::V4, KeyType::Ipv4Addr, &p.addrs4),
        (IpFamily::V6, KeyType::Ipv6Addr, &p.addrs6),
    ];
    for (family, key_type, elements) in families {
        if elements.is_empty() {
            continue;
        }
        let part = if family == IpFamily::V4 {
            PairPart::Addrs4
        } else {
            PairPart::Addrs6
        };
        let addrs = names::np_pair_set(l.dir, &key, part);
        emit_shared(l.emitted, sets, &addrs, || Set {
            name: addrs.clone(),
            role: SetRole::NpPair(part),
            key: vec![key_type],
            interval: true,
            comment: comment("peers"),
            elements: elements.clone(),
            timeout: None,
            counter: false,
        });
        rules.push(Rule::with_comment(
            RuleKind::LookupPair {
                family,
                addr: l.addr,
                addrs,
                ports: ports.clone(),
                ranges: p.ranges,
                verdict: l.verdict.clone(),
                log: l.log.clone(),
            },
            names::comment(&format!("allowed by {policy}")),
        ));
    }
}

fn known_pods(graph: &PolicyGraph, v6: bool) -> Set {
    let set = AddrSet::from_ips(graph.pods.values().flat_map(|p| p.ips.iter().copied()));
    Set {
        name: KNOWN_PODS[v6 as usize].into(),
        role: SetRole::KnownPods,
        key: vec![if v6 {
            KeyType::Ipv6Addr
        } else {
            KeyType::Ipv4Addr
        }],
        interval: true,
        comment: Some("addresses of the pods this node knows".into()),
        elements: one_field_elements(v6, if v6 { &set.v6 } else { &set.v4 }),
        timeout: None,
        counter: false,
    }
}

fn unknown_sets(graph: &PolicyGraph, opts: &Options) -> Vec<Set> {
    let cidrs = opts.pod_cidrs.iter().fold(AddrSet::default(), |acc, n| {
        acc.union(&AddrSet::from_block(n, &[]))
    });
    let mut out = Vec::new();
    for v6 in [false, true] {
        out.push(Set {
            name: names::POD_CIDR_SETS[v6 as usize].into(),
            role: SetRole::PodCidrs,
            key: vec![if v6 {
                KeyType::Ipv6Addr
            } else {
                KeyType::Ipv4Addr
            }],
            interval: true,
            comment: Some("this node's pod CIDRs (--default-deny-unknown)".into()),
            elements: one_field_elements(v6, if v6 { &cidrs.v6 } else { &cidrs.v4 }),
            timeout: None,
            counter: false,
        });
        out.push(known_pods(graph, v6));
    }
    out
}

/// The dispatch chain, for a connection's first packet. IPv4 comes first and whole
/// (unknown-pod drops, then the egress and ingress maps), then IPv6 behind neighbour
/// discovery: a new IPv4 connection walks two rules here, an IPv6 one five, and ND is
/// accepted before any IPv6 rule can drop it.
fn dispatch_chain(opts: &Options) -> Chain {
    // Established traffic was accepted in the base chains already.
    let mut rules = Vec::new();
    for (v6, family) in [(false, IpFamily::V4), (true, IpFamily::V6)] {
        if v6 {
            rules.push(Rule::with_comment(
                RuleKind::Icmpv6NdAccept,
                "IPv6 neighbour discovery always passes",
            ));
        }
        if !opts.pod_cidrs.is_empty() {
            for addr in [Addr::Saddr, Addr::Daddr] {
                rules.push(Rule::with_comment(
                    RuleKind::DropUnknown {
                        family,
                        addr,
                        cidrs: names::POD_CIDR_SETS[v6 as usize].into(),
                        known: KNOWN_PODS[v6 as usize].into(),
                    },
                    "a pod whose rules are not in place yet",
                ));
            }
        }
        for (dir, addr) in [
            (Direction::Egress, Addr::Saddr),
            (Direction::Ingress, Addr::Daddr),
        ] {
            rules.push(Rule::new(RuleKind::DispatchVmap {
                family,
                addr,
                map: names::dispatch_map(dir, v6),
            }));
        }
    }
    Chain {
        name: names::CHAIN_DISPATCH.into(),
        base: None,
        comment: Some(
            "dispatch to the chain of the pod sending (egress) and receiving (ingress)".into(),
        ),
        rules,
    }
}

/// The ruleset for every pod in `graph` (build the graph for one node to get that node's).
pub fn build(graph: &PolicyGraph) -> Ruleset {
    build_with(graph, &Options::default())
}

/// [`build`] with operator options.
pub fn build_with(graph: &PolicyGraph, opts: &Options) -> Ruleset {
    let mut sets = Vec::new();
    let mut chains = Vec::new();
    let ctx = PodCtx {
        graph,
        log: &opts.log,
        tiers: tier_chain::Cache::new(opts.counters),
        allowed: AllowedCache::default(),
        concat_budget: opts.concat_budget,
        over_budget: over_budget(graph, opts),
        emitted: RefCell::default(),
        counters: opts.counters,
    };
    for pod in graph.pods.values() {
        for dir in [Direction::Ingress, Direction::Egress] {
            pod_objects(&ctx, pod, dir, &mut sets, &mut chains);
        }
        chains.extend(input_hook::pod_chains(pod, &opts.log));
    }
    // The pods with the same allows each gave their shared sets (equal, by their name).
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    sets.dedup_by(|a, b| a.name == b.name);
    if !opts.pod_cidrs.is_empty() {
        sets.extend(unknown_sets(graph, opts));
    }
    sets.extend(held_sets());
    chains.push(dispatch_chain(opts));
    chains.extend(base_chains());
    let comment = "managed by nftpol: NetworkPolicy enforcement; do not edit";
    let maps = dispatch_maps(graph);
    let mut model = Ruleset::from_parts(names::TABLE, Some(comment.into()), sets, maps, chains);
    input_hook::place(&mut model, graph);
    domain_rules::place(&mut model, graph, opts);
    model
}

/// Brings `model` (built from an earlier state of `graph`) up to date for `pods`, whose
/// graph nodes were just refreshed: their sets and chains are replaced or removed, and
/// the dispatch maps rebuilt. Equal to `build_with(graph, opts)` when `pods` names every
/// pod whose node changed (and `model` was built with `opts`).
pub fn rebuild_pods(
    model: &mut Ruleset,
    graph: &PolicyGraph,
    pods: &std::collections::BTreeSet<PodKey>,
    opts: &Options,
) {
    let ctx = PodCtx {
        graph,
        log: &opts.log,
        tiers: tier_chain::Cache::new(opts.counters),
        allowed: AllowedCache::default(),
        concat_budget: opts.concat_budget,
        over_budget: over_budget(graph, opts),
        emitted: RefCell::default(),
        counters: opts.counters,
    };
    // The shared sets the old chains looked up: dropped below unless a chain still does.
    let mut unused: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for (ns, name) in pods {
        // A pod's own sets (its tier sets) are the ones its chains look up, but shared.
        let mut own = Vec::new();
        for chain in names::pod_chains(ns, name) {
            if let Some(old) = model.remove_chain(&chain) {
                for set in old.lookups() {
                    match model.set(set).map(|s| s.role) {
                        Some(role) if role.shared() => {
                            unused.insert(set.to_string());
                        }
                        Some(role) if role.pod_own() => own.push(set.to_string()),
                        _ => {}
                    }
                }
            }
        }
        for set in own {
            model.remove_set(&set);
        }
        let Some(pod) = graph.pods.get(&(ns.clone(), name.clone())) else {
            continue;
        };
        let mut sets = Vec::new();
        let mut chains = Vec::new();
        for dir in [Direction::Ingress, Direction::Egress] {
            pod_objects(&ctx, pod, dir, &mut sets, &mut chains);
        }
        chains.extend(input_hook::pod_chains(pod, &opts.log));
        sets.into_iter().for_each(|set| model.put_set(set));
        chains.into_iter().for_each(|chain| model.put_chain(chain));
    }
    drop_unused_np_sets(model, unused);
    if !patch_dispatch_maps(model, graph, pods) {
        model.set_maps(dispatch_maps(graph));
    }
    input_hook::place(model, graph);
    domain_rules::place(model, graph, opts);
    for v6 in [false, true] {
        if model.set(KNOWN_PODS[v6 as usize]).is_some() {
            model.put_set(known_pods(graph, v6));
        }
    }
}

/// Removes the shared sets of `candidates` that no chain of `model` looks up any more.
fn drop_unused_np_sets(model: &mut Ruleset, mut candidates: std::collections::BTreeSet<String>) {
    if candidates.is_empty() {
        return;
    }
    for chain in model.regular_chains() {
        for set in chain.lookups() {
            candidates.remove(set);
        }
        if candidates.is_empty() {
            return;
        }
    }
    for set in candidates {
        model.remove_set(&set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn el(lo: [u8; 4], hi: [u8; 4], ports: (u16, u16)) -> Element {
        Element {
            key: Key::from([
                Field::Ipv4(Ipv4Addr::from(lo), Ipv4Addr::from(hi)),
                Field::Proto(6, 6),
                Field::Port(ports.0, ports.1),
            ]),
        }
    }

    /// Small boxes go to the hash set as points; long address or port ranges stay ranges.
    #[test]
    fn small_boxes_are_spelled_out_as_points() {
        let (exact, ranges) = split_exact(vec![
            el([10, 0, 0, 1], [10, 0, 0, 1], (80, 80)),
            el([10, 0, 0, 4], [10, 0, 0, 6], (80, 80)),
            el([10, 1, 0, 0], [10, 1, 0, 63], (80, 80)),
            el([10, 2, 0, 0], [10, 2, 0, 64], (80, 80)),
            el([10, 3, 0, 1], [10, 3, 0, 1], (80, 81)),
            el([10, 4, 0, 1], [10, 4, 0, 1], (1000, 1064)),
        ]);
        assert_eq!(exact.len(), 1 + 3 + 64 + 2);
        assert!(exact.iter().all(|e| e.key.is_point()));
        assert!(
            exact.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert_eq!(
            ranges,
            [
                el([10, 2, 0, 0], [10, 2, 0, 64], (80, 80)),
                el([10, 4, 0, 1], [10, 4, 0, 1], (1000, 1064))
            ]
        );
    }
}
