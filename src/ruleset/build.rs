//! Builds the [`Ruleset`] for the pods of a [`PolicyGraph`]: base chains, dispatch maps,
//! and for every pod and direction that NetworkPolicy isolates or ClusterNetworkPolicy
//! tiers select one chain and its sets (the tier part in `tier_chain`, the input hook in
//! `input_hook`, the maps in `dispatch`). Pure: the same graph always gives an equal
//! model.

use super::boxes;
use super::dispatch::{dispatch_maps, patch_dispatch_maps};
use super::input_hook;
use super::memo::Memo;
use super::model::*;
use super::names::{self, KNOWN_PODS};
use super::regions::addr_field;
use super::tier_chain;
use crate::addr::{AddrSet, Intervals};
use crate::graph::PodKey;
use crate::graph::{Isolation, PeerRef, PodNode, PolicyGraph, Ports};
use crate::policy::{Direction, Protocol};
use std::rc::Rc;

/// What one pod direction allows: addresses allowed on any port, and (address, protocol,
/// port) boxes, per family (split into the pod's sets by [`split_exact`]).
#[derive(Debug, Default)]
struct Allowed {
    any: AddrSet,
    ports4: Vec<Element>,
    ports6: Vec<Element>,
}

/// The policies behind a pod direction's `any` sets and behind its `ports` sets.
fn allowed_by(iso: &Isolation) -> [std::collections::BTreeSet<&str>; 2] {
    let mut by: [std::collections::BTreeSet<&str>; 2] = Default::default();
    for a in &iso.allows {
        by[usize::from(a.ports != Ports::Any)].insert(a.origin.policy.as_str());
    }
    by
}

/// The elements of a pod direction's six NetworkPolicy sets, in [`names::NP_SETS`] order.
type PodElements = [Vec<Element>; 6];

/// What a pod direction's set elements depend on: its allows' peers and ports, in order.
type AllowKey = Vec<(PeerRef, Ports)>;

/// Set elements computed once per build for every pod direction the same policies
/// select: the box arithmetic grows with the peers' addresses (thousands of elements for
/// a pod), and the pods that share their policies are many. Only valid for one graph:
/// it lives as long as one build or rebuild.
#[derive(Default)]
struct AllowedCache(Memo<AllowKey, PodElements>);

impl AllowedCache {
    fn elements(&self, graph: &PolicyGraph, iso: &Isolation) -> Rc<PodElements> {
        let key: AllowKey = iso
            .allows
            .iter()
            .map(|a| (a.peer, a.ports.clone()))
            .collect();
        self.0.get_or_compute(key, || {
            let a = allowed(graph, iso);
            let (exact4, ranges4) = split_exact(a.ports4);
            let (exact6, ranges6) = split_exact(a.ports6);
            [
                one_field_elements(false, &a.any.v4),
                exact4,
                ranges4,
                one_field_elements(true, &a.any.v6),
                exact6,
                ranges6,
            ]
        })
    }
}

/// The canonical text of what a pod direction's NetworkPolicy sets hold, named in
/// [`names::np_set`]: each allow's origin (policy, rule, peer, port name) and its resolved
/// ports. In one cluster state the origin fixes the peer's addresses (an egress named port
/// split by its port), so pods with the same key have the same elements, and a key stays
/// the same while its peers' addresses change: those edit the shared set in place.
pub(super) fn allows_key(iso: &Isolation) -> String {
    use std::fmt::Write;
    let mut key = String::new();
    for a in &iso.allows {
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
    key
}

fn allowed(graph: &PolicyGraph, iso: &Isolation) -> Allowed {
    let everything = AddrSet::everything();
    let addrs_of = |peer: PeerRef| -> &AddrSet {
        match peer {
            PeerRef::Any => &everything,
            PeerRef::Peer(id) => &graph.peers[id].addrs,
        }
    };
    let mut any = AddrSet::default();
    let mut out = Allowed::default();
    for a in iso.allows.iter().filter(|a| a.ports == Ports::Any) {
        any = any.union(addrs_of(a.peer));
    }
    for is6 in [false, true] {
        let minus: &Intervals = if is6 { &any.v6 } else { &any.v4 };
        let mut elements = Vec::new();
        for proto in Protocol::ALL {
            let mut rects: Vec<(&Intervals, u16, u16)> = Vec::new();
            for a in &iso.allows {
                let Ports::Only(list) = &a.ports else {
                    continue;
                };
                let addrs = addrs_of(a.peer);
                let fam = if is6 { &addrs.v6 } else { &addrs.v4 };
                if fam.is_empty() {
                    continue;
                }
                for r in list.iter().filter(|r| r.protocol == proto) {
                    rects.push((fam, r.start, r.end));
                }
            }
            for (addrs, lo, hi) in boxes::disjoint(&rects, minus) {
                for &(alo, ahi) in addrs.ranges() {
                    elements.push(Element {
                        key: Key::from([
                            addr_field(is6, alo, ahi),
                            Field::Proto(proto.number(), proto.number()),
                            Field::Port(lo, hi),
                        ]),
                    });
                }
            }
        }
        elements.sort();
        if is6 {
            out.ports6 = elements;
        } else {
            out.ports4 = elements;
        }
    }
    out.any = any;
    out
}

/// Splits (address, protocol, port) boxes into single points (one address, one port),
/// for a hash set, and true ranges, for a concatenated interval set. A hash set adds and
/// removes an element in constant time; the kernel's concatenated interval sets
/// (pipapo) rebuild their lookup tables on every change, at a cost that grows with the
/// set, and the points are most of the elements (peers chosen by labels are scattered
/// single addresses). A lookup in each keeps the verdict of the one set they replace.
///
/// Neighbouring pods' addresses merge into short ranges, which change whenever one of
/// those pods does, and a pod peer on a short port range (`endPort`) is a range too: a box
/// of at most [`EXPAND_MAX`] (address, port) points is spelled out as points, so pod churn
/// stays in the hash set and pipapo holds only what rarely changes (long port ranges,
/// ipBlocks).
pub(super) fn split_exact(elements: Vec<Element>) -> (Vec<Element>, Vec<Element>) {
    let mut exact = Vec::new();
    let mut ranges = Vec::new();
    for e in elements {
        match expand(&e) {
            Some(points) => exact.extend(points),
            None => ranges.push(e),
        }
    }
    exact.sort();
    (exact, ranges)
}

/// The most points [`split_exact`] spells a box out into.
const EXPAND_MAX: u128 = 64;

/// `e` as single points, when its protocol is single and it holds at most
/// [`EXPAND_MAX`] (address, port) points; None otherwise.
fn expand(e: &Element) -> Option<Vec<Element>> {
    let [addr, proto, Field::Port(plo, phi)] = *e.key else {
        return None;
    };
    if !proto.is_point() {
        return None;
    }
    let ports = u128::from(phi - plo) + 1;
    let addrs = match addr {
        Field::Ipv4(lo, hi) => u128::from(u32::from(hi) - u32::from(lo)) + 1,
        Field::Ipv6(lo, hi) => (u128::from(hi) - u128::from(lo)).saturating_add(1),
        _ => return None,
    };
    if addrs.saturating_mul(ports) > EXPAND_MAX {
        return None;
    }
    let points = |a: Field| {
        (plo..=phi).map(move |p| Element {
            key: Key::from([a, proto, Field::Port(p, p)]),
        })
    };
    Some(match addr {
        Field::Ipv4(lo, hi) => (u32::from(lo)..=u32::from(hi))
            .flat_map(|a| points(Field::Ipv4(a.into(), a.into())))
            .collect(),
        Field::Ipv6(lo, hi) => (u128::from(lo)..=u128::from(hi))
            .flat_map(|a| points(Field::Ipv6(a.into(), a.into())))
            .collect(),
        _ => unreachable!("checked above"),
    })
}

pub(super) fn one_field_elements(is6: bool, set: &Intervals) -> Vec<Element> {
    set.ranges()
        .iter()
        .map(|&(lo, hi)| Element {
            key: Key::from([addr_field(is6, lo, hi)]),
        })
        .collect()
}

/// Where a pod chain is: what its logging rules need of the operator's options.
struct PodCtx<'a> {
    graph: &'a PolicyGraph,
    log: &'a LogOptions,
    /// Tier regions already computed in this build (pods selected by the same policies).
    tiers: tier_chain::Cache,
    /// NetworkPolicy set elements already computed in this build, likewise.
    allowed: AllowedCache,
}

/// The chain of `pod` in `dir` (when it has one, see [`tier_chain::has_chain`]), its
/// sets and its drop tail: Admin lookups, then the NetworkPolicy part when NetworkPolicy
/// isolates the pod, then Baseline Deny lookups; what falls through is allowed.
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
    let allow = match dir {
        // Egress returns to the policy chain, which then checks the destination's ingress.
        Direction::Egress => Verdict::Return,
        Direction::Ingress => Verdict::Accept,
    };
    let tiers = tier_chain::tier_rules(pod, dir, allow, ctx.log);
    sets.extend(tier_chain::tier_sets(ctx.graph, &ctx.tiers, pod, dir));
    let mut rules = tiers.admin;
    if let Some(iso) = pod.isolation(dir) {
        rules.extend(np_rules(ctx, pod, dir, iso, sets));
    }
    rules.extend(tiers.baseline);
    let id = pod.id();
    chains.push(Chain {
        name: names::pod_chain(dir, &pod.namespace, &pod.name),
        base: None,
        comment: Some(names::comment(&format!("pod {id} {dir}"))),
        rules,
    });
    chains.extend(tier_chain::drop_tail(pod, dir, ctx.log));
}

/// The NetworkPolicy part of a pod chain and its six (shared) sets: the allow lookups,
/// the denied log rule and the drop.
fn np_rules(
    ctx: &PodCtx,
    pod: &PodNode,
    dir: Direction,
    iso: &Isolation,
    sets: &mut Vec<Set>,
) -> Vec<Rule> {
    let graph = ctx.graph;
    let chain = names::pod_chain(dir, &pod.namespace, &pod.name);
    let log_allowed = ctx.log.allowed.then(|| LogTarget {
        prefix: names::log_prefix(names::LogVerdict::Allowed, &chain),
        group: ctx.log.group,
    });
    let elements = ctx.allowed.elements(graph, iso);
    let [any_by, ports_by] = allowed_by(iso);
    let (addr, verdict) = match dir {
        // Egress returns to the policy chain, which then checks the destination's ingress.
        Direction::Egress => (Addr::Daddr, Verdict::Return),
        Direction::Ingress => (Addr::Saddr, Verdict::Accept),
    };
    let peer_word = match dir {
        Direction::Ingress => "sources",
        Direction::Egress => "destinations",
    };
    let mut rules = Vec::new();
    let key4 = vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService];
    let key6 = vec![KeyType::Ipv6Addr, KeyType::InetProto, KeyType::InetService];
    // (family, key, with ports, interval), in rule order: the order of names::NP_SETS.
    let shapes = [
        (IpFamily::V4, vec![KeyType::Ipv4Addr], false, true),
        (IpFamily::V4, key4.clone(), true, false),
        (IpFamily::V4, key4, true, true),
        (IpFamily::V6, vec![KeyType::Ipv6Addr], false, true),
        (IpFamily::V6, key6.clone(), true, false),
        (IpFamily::V6, key6, true, true),
    ];
    let allows = allows_key(iso);
    let policies: std::collections::BTreeSet<&str> = iso
        .allows
        .iter()
        .map(|a| a.origin.policy.as_str())
        .collect();
    let policies = policies.into_iter().collect::<Vec<_>>().join(", ");
    let parts = names::NP_SETS.into_iter().zip(shapes).zip(elements.iter());
    for ((kind, (family, key, ports, interval)), elements) in parts {
        let set = names::np_set(dir, &allows, kind);
        let (what, by) = match (ports, interval) {
            (false, _) => ("on any port", &any_by),
            (true, false) => ("on listed ports (single)", &ports_by),
            (true, true) => ("on listed ports (ranges)", &ports_by),
        };
        // A set's comment cannot change in place: it names what its name stands for (the
        // policies behind its key), and the rule's comment those behind this lookup.
        sets.push(Set {
            name: set.clone(),
            key,
            interval,
            comment: Some(names::comment(&format!(
                "{dir} {peer_word} allowed {what} by {policies}"
            ))),
            elements: elements.clone(),
            timeout: None,
        });
        let kind = RuleKind::Lookup {
            family,
            addr,
            key: if ports {
                LookupKey::Ports { ranges: interval }
            } else {
                LookupKey::Addr
            },
            set,
            verdict: verdict.clone(),
            log: log_allowed.clone(),
        };
        rules.push(if by.is_empty() {
            Rule::new(kind)
        } else {
            let by = by.iter().copied().collect::<Vec<_>>().join(", ");
            Rule::with_comment(kind, names::comment(&format!("allowed by {by}")))
        });
    }
    if ctx.log.denied {
        rules.push(Rule::new(RuleKind::LogDenied {
            prefix: names::log_prefix(names::LogVerdict::Denied, &chain),
            group: ctx.log.group,
            rate: ctx.log.rate,
            burst: ctx.log.burst,
        }));
    }
    rules.push(Rule::with_comment(
        RuleKind::Verdict(Verdict::Drop),
        names::comment(&format!("isolated by {}", iso.isolated_by.join(", "))),
    ));
    rules
}

/// The first rule of every base chain.
pub(super) fn established() -> Rule {
    Rule::with_comment(
        RuleKind::CtEstablishedAccept,
        "replies and related traffic of allowed connections",
    )
}

/// The held-connection drop of every base chain, after [`established`].
pub(super) fn held(family: IpFamily) -> Rule {
    Rule::with_comment(
        RuleKind::HeldDrop {
            family,
            set: names::HELD_SETS[(family == IpFamily::V6) as usize].into(),
        },
        "packets of connections cut since policy revoked them",
    )
}

/// Every packet of an established connection stops at the first rule of its base chain,
/// as it would in a table holding only that rule: the per-packet cost of nftpol beyond
/// conntrack itself is nothing, and only a connection's first packet goes further.
fn base_chains() -> Vec<Chain> {
    let policy = names::CHAIN_DISPATCH.to_string();
    vec![
        Chain {
            name: names::CHAIN_FORWARD.into(),
            base: Some(BaseChain {
                hook: Hook::Forward,
                priority: 0,
                policy: Verdict::Accept,
            }),
            comment: Some("routed and bridged (br_netfilter) pod traffic".into()),
            rules: vec![
                established(),
                held(IpFamily::V4),
                held(IpFamily::V6),
                Rule::new(RuleKind::Jump(policy.clone())),
            ],
        },
        Chain {
            name: names::CHAIN_OUTPUT.into(),
            base: Some(BaseChain {
                hook: Hook::Output,
                priority: 0,
                policy: Verdict::Accept,
            }),
            comment: Some("IPVS sends Service traffic to its backend from here".into()),
            rules: vec![
                established(),
                held(IpFamily::V4),
                held(IpFamily::V6),
                Rule::with_comment(
                    RuleKind::FibSaddrLocalAccept,
                    "the node itself may reach its pods",
                ),
                Rule::new(RuleKind::Jump(policy)),
            ],
        },
    ]
}

/// The held sets (see `RuleKind::HeldDrop`): declared empty, filled by the controller.
fn held_sets() -> Vec<Set> {
    [KeyType::Ipv4Addr, KeyType::Ipv6Addr]
        .into_iter()
        .zip(names::HELD_SETS)
        .map(|(addr, name)| Set {
            name: name.into(),
            key: vec![
                addr,
                addr,
                KeyType::InetProto,
                KeyType::InetService,
                KeyType::InetService,
            ],
            interval: false,
            comment: Some("connections cut since policy revoked them, both directions".into()),
            elements: vec![],
            timeout: Some(names::HELD_TIMEOUT_SECS),
        })
        .collect()
}

/// Choices that are the operator's, not the policies'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--default-deny-unknown`: traffic to or from an address in these CIDRs (this node's
    /// pod CIDRs) that is not a known pod is dropped until its rules are in place.
    pub pod_cidrs: Vec<ipnet::IpNet>,
    /// Verdict logs: which first packets the pod chains send to an NFLOG group.
    pub log: LogOptions,
}

/// `--log-denied`, `--log-allowed`, `--log-rate`, `--log-burst`, `--log-group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Log the first packet of each denied connection (rate limited per chain).
    pub denied: bool,
    /// Log the first packet of every allowed connection (not rate limited).
    pub allowed: bool,
    /// Denied records per second and chain (pod and direction), after `burst`.
    pub rate: u32,
    pub burst: u32,
    /// The NFLOG group (nfnetlink_log) the controller reads.
    pub group: u16,
}

impl LogOptions {
    /// No logging rules at all.
    pub const OFF: LogOptions = LogOptions {
        denied: false,
        allowed: false,
        ..LogOptions::DEFAULT
    };
    pub const DEFAULT: LogOptions = LogOptions {
        denied: true,
        allowed: false,
        rate: 10,
        burst: 20,
        // Not 0 (the default of tools that log) nor 100 (kube-router's): a group has one
        // reader, and binding one another tool reads takes its records away.
        group: 9309,
    };
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions::DEFAULT
    }
}

fn known_pods(graph: &PolicyGraph, v6: bool) -> Set {
    let set = AddrSet::from_ips(graph.pods.values().flat_map(|p| p.ips.iter().copied()));
    Set {
        name: KNOWN_PODS[v6 as usize].into(),
        key: vec![if v6 {
            KeyType::Ipv6Addr
        } else {
            KeyType::Ipv4Addr
        }],
        interval: true,
        comment: Some("addresses of the pods this node knows".into()),
        elements: one_field_elements(v6, if v6 { &set.v6 } else { &set.v4 }),
        timeout: None,
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
            key: vec![if v6 {
                KeyType::Ipv6Addr
            } else {
                KeyType::Ipv4Addr
            }],
            interval: true,
            comment: Some("this node's pod CIDRs (--default-deny-unknown)".into()),
            elements: one_field_elements(v6, if v6 { &cidrs.v6 } else { &cidrs.v4 }),
            timeout: None,
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
        tiers: tier_chain::Cache::default(),
        allowed: AllowedCache::default(),
    };
    for pod in graph.pods.values() {
        for dir in [Direction::Ingress, Direction::Egress] {
            pod_objects(&ctx, pod, dir, &mut sets, &mut chains);
        }
        chains.extend(input_hook::pod_chain(pod, &opts.log));
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
        tiers: tier_chain::Cache::default(),
        allowed: AllowedCache::default(),
    };
    // The shared sets the old chains looked up: dropped below unless a chain still does.
    let mut unused: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for (ns, name) in pods {
        // A pod's own sets (its tier sets) are the ones its chains look up, but shared.
        let mut own = Vec::new();
        for chain in names::pod_chains(ns, name) {
            if let Some(old) = model.remove_chain(&chain) {
                for set in old.lookups() {
                    if names::is_np_set(set) {
                        unused.insert(set.to_string());
                    } else {
                        own.push(set.to_string());
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
        chains.extend(input_hook::pod_chain(pod, &opts.log));
        sets.into_iter().for_each(|set| model.put_set(set));
        chains.into_iter().for_each(|chain| model.put_chain(chain));
    }
    drop_unused_np_sets(model, unused);
    if !patch_dispatch_maps(model, graph, pods) {
        model.set_maps(dispatch_maps(graph));
    }
    input_hook::place(model, graph);
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
