//! `explain`: is a connection allowed, and why. The verdict comes from the policy graph
//! only, so what it says is what the ruleset enforces (the harness checks that the kernel
//! agrees); for a denied direction, [`miss`] says why each rule of each isolating policy
//! did not allow it. Where ClusterNetworkPolicies select a pod, each end is walked
//! through the tiers ([`crate::graph::tiers::TierSide::decide`]: Admin, NetworkPolicy,
//! Baseline, allow) and each tier's say is printed the way policy-assistant prints it
//! (`Admin: no-y-into-x ingress[1] deny-y from[0]: Deny`). Text (Display) and JSON
//! (Serialize) carry the same content; the text escapes the object strings it quotes
//! ([`Escaped`]), so no name can forge a line.

mod audit;
pub mod domains;
mod np;
mod shared;
use np::np_allows;
use shared::ambiguous;
pub use shared::shared_addresses;
pub mod miss;
mod query;
mod steps;

pub use audit::{audited_end, is_audited, AuditedEnd};
pub use query::{parse_port, EndProblem, ExplainError, Family, Query, Target, Which};
pub use steps::{Outcome, StepTier, TierStep};

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::cnp::Tier;
use crate::graph::tiers::{Decision, TierSide};
use crate::graph::{PodNode, PolicyGraph};
use crate::index::Index;
use crate::policy::{Direction, Protocol};
use crate::text::Escaped;

/// One side of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Endpoint {
    /// A pod that policy applies to, and the address used.
    Pod { id: String, ip: IpAddr },
    /// Anything else: a node, an external host, a hostNetwork pod.
    Host { ip: IpAddr, note: Option<String> },
}

impl Endpoint {
    pub fn ip(&self) -> IpAddr {
        match self {
            Endpoint::Pod { ip, .. } | Endpoint::Host { ip, .. } => *ip,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pod { id, ip } => write!(f, "pod {} ({ip})", Escaped(id)),
            Endpoint::Host { ip, note: None } => write!(f, "{ip}"),
            Endpoint::Host { ip, note: Some(n) } => write!(f, "{ip} ({})", Escaped(n)),
        }
    }
}

/// The verdict on one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Side {
    /// The pod's side is not isolated, or the side is not a pod.
    NotIsolated { reason: String },
    /// Traffic between a pod and its own node is always allowed.
    OwnNode,
    Allowed {
        isolated_by: Vec<String>,
        by: Vec<String>,
    },
    Denied {
        isolated_by: Vec<String>,
        /// Why each isolating policy's rules did not allow it.
        why: Vec<miss::PolicyCheck>,
    },
}

impl Side {
    pub fn allows(&self) -> bool {
        !matches!(self, Side::Denied { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub allowed: bool,
    pub from: Endpoint,
    pub to: Endpoint,
    pub protocol: Protocol,
    pub port: u16,
    /// The NetworkPolicy tier's account of the source's egress.
    pub egress: Side,
    /// The NetworkPolicy tier's account of the destination's ingress.
    pub ingress: Side,
    /// The tiers' walk for the source's egress; empty when no ClusterNetworkPolicy
    /// selects it (NetworkPolicy alone then decides, as `egress` says).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress_tiers: Vec<TierStep>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress_tiers: Vec<TierStep>,
    /// Where audited policies (`nftpol.io/mode: audit`) would change the verdict: the
    /// connection as they would judge it, and which of them make the difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audited: Option<Box<Audited>>,
}

/// The connection as the audited policies would judge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audited {
    /// The audited policies that make the difference, for each end where they do.
    pub policies: Vec<String>,
    pub explanation: Explanation,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_verdict(f)?;
        if let Some(a) = &self.audited {
            let verdict = if a.explanation.allowed {
                "allow"
            } else {
                "deny"
            };
            writeln!(
                f,
                "\naudited (nftpol.io/mode: audit): would {verdict}, because of {}",
                Escaped(&a.policies.join(", "))
            )?;
            a.explanation.write_verdict(f)?;
        }
        Ok(())
    }
}

impl Explanation {
    fn write_verdict(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", if self.allowed { "allowed" } else { "denied" })?;
        writeln!(
            f,
            "connection: {} -> {} {}/{}",
            self.from, self.to, self.protocol, self.port
        )?;
        for (dir, side, who) in [
            (Direction::Egress, &self.egress, &self.from),
            (Direction::Ingress, &self.ingress, &self.to),
        ] {
            let steps = match dir {
                Direction::Egress => &self.egress_tiers,
                Direction::Ingress => &self.ingress_tiers,
            };
            if !steps.is_empty() {
                write_steps(f, dir, who, side, steps)?;
                continue;
            }
            write!(f, "{dir} of {who}: ")?;
            match side {
                Side::NotIsolated { reason } => writeln!(f, "allowed ({})", Escaped(reason))?,
                Side::OwnNode => writeln!(
                    f,
                    "allowed (traffic between a pod and its own node is always allowed)"
                )?,
                Side::Allowed { isolated_by, by } => {
                    writeln!(f, "allowed")?;
                    writeln!(f, "  isolated by: {}", Escaped(&isolated_by.join(", ")))?;
                    for b in by {
                        writeln!(f, "  allowed by: {}", Escaped(b))?;
                    }
                }
                Side::Denied { isolated_by, why } => {
                    writeln!(f, "denied")?;
                    writeln!(f, "  isolated by: {}", Escaped(&isolated_by.join(", ")))?;
                    writeln!(f, "  no rule of these policies allows this peer and port:")?;
                    for policy in why {
                        miss::write_policy(f, "    ", dir, policy)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One end walked through the tiers: each step on its line, the NetworkPolicy tier's
/// account under its step when it was consulted.
fn write_steps(
    f: &mut fmt::Formatter<'_>,
    dir: Direction,
    who: &Endpoint,
    side: &Side,
    steps: &[TierStep],
) -> fmt::Result {
    let allowed = steps.last().and_then(|s| s.decides).unwrap_or(true);
    writeln!(
        f,
        "{dir} of {who}: {}",
        if allowed { "allowed" } else { "denied" }
    )?;
    for step in steps {
        writeln!(f, "  {step}")?;
        for m in &step.near_misses {
            writeln!(f, "    near miss: {m}")?;
        }
        if step.tier != StepTier::NetworkPolicy {
            continue;
        }
        match side {
            Side::Allowed { isolated_by, by } => {
                writeln!(f, "    isolated by: {}", Escaped(&isolated_by.join(", ")))?;
                for b in by {
                    writeln!(f, "    allowed by: {}", Escaped(b))?;
                }
            }
            Side::Denied { isolated_by, why } => {
                writeln!(f, "    isolated by: {}", Escaped(&isolated_by.join(", ")))?;
                writeln!(
                    f,
                    "    no rule of these policies allows this peer and port:"
                )?;
                for policy in why {
                    miss::write_policy(f, "      ", dir, policy)?;
                }
            }
            Side::NotIsolated { .. } | Side::OwnNode => {}
        }
    }
    Ok(())
}

/// The connection as one end's tiers see it.
struct Probe {
    dir: Direction,
    /// The other end's address.
    other: IpAddr,
    other_is_pod: bool,
    protocol: Protocol,
    port: u16,
    /// What counts as learned for the end's `domainNames` rules (`--resolved`).
    learned: crate::fqdn::facts::Learned,
}

impl Probe {
    fn new(index: &Index, dir: Direction, other: IpAddr, protocol: Protocol, port: u16) -> Self {
        Probe {
            dir,
            other,
            // The index, not the graph: a node's graph holds only its own pods, and the
            // peer may run elsewhere.
            other_is_pod: index.policy_pod_with_ip(other).is_some(),
            protocol,
            port,
            learned: Default::default(),
        }
    }
}

/// One tier's step: the rule that matched (Pass included), or that none did.
fn tier_step(
    graph: &PolicyGraph,
    side: &TierSide,
    tier: Tier,
    matched: Option<&crate::graph::tiers::TierRule>,
    probe: &Probe,
) -> TierStep {
    let rules = side.tier(tier);
    let near_misses = miss::tier_misses(graph, rules, probe.other, probe.protocol, probe.port);
    match matched {
        Some(r) => TierStep {
            tier: StepTier::of(tier),
            rule: Some(r.origin.clone()),
            outcome: Outcome::of(r.action),
            note: None,
            near_misses,
            decides: None,
        },
        None => {
            let mut note = format!("policies: {}", rules.policies.join(", "));
            if probe.dir == Direction::Ingress && !probe.other_is_pod {
                note.push_str(&format!(
                    "; {} is not a pod, and ingress peers are pods only",
                    probe.other
                ));
            }
            TierStep {
                tier: StepTier::of(tier),
                rule: None,
                outcome: Outcome::NoMatch,
                note: Some(note),
                near_misses,
                decides: None,
            }
        }
    }
}

/// Walks one end through the tiers; empty when no ClusterNetworkPolicy selects it. It
/// reads in the order the tiers decide (Admin, NetworkPolicy, Baseline, default), each
/// step returning early where the decision falls: split, it would hide that order.
fn tier_steps(
    graph: &PolicyGraph,
    pod: Option<&PodNode>,
    np: &Side,
    probe: &Probe,
) -> Vec<TierStep> {
    let (dir, other, protocol, port) = (probe.dir, probe.other, probe.protocol, probe.port);
    let Some(pod) = pod else {
        return Vec::new();
    };
    let side = pod.tiers.side(dir);
    if side.is_empty() {
        return Vec::new();
    }
    // A pod talking to itself is not subject to ClusterNetworkPolicy (the hairpin).
    if pod.ips.contains(&other) {
        return Vec::new();
    }
    let np_verdict = match np {
        Side::NotIsolated { .. } => None,
        Side::OwnNode | Side::Allowed { .. } => Some(true),
        Side::Denied { .. } => Some(false),
    };
    let matches = |r: &crate::graph::tiers::TierRule| {
        graph.peer_contains(r.peer, other) && r.ports.contains(protocol, port)
    };
    let admits = |d: &_| domains::admits(d, &probe.learned, other, protocol, port);
    let decision = side.decide_learned(np_verdict, matches, admits);
    let step = |tier, matched| tier_step(graph, side, tier, matched, probe);
    let mut steps = Vec::new();
    if !side.admin.is_empty() {
        steps.push(step(Tier::Admin, side.admin.first_match(matches)));
        domains::admin_step(graph, pod, probe, (&decision, &mut steps));
    }
    if let Decision::Admin(_) | Decision::Domain(_) = decision {
        return finish(steps, decision);
    }
    let (outcome, note) = match np {
        Side::NotIsolated { reason } => (Outcome::NotIsolated, reason.clone()),
        Side::OwnNode => (
            Outcome::Allowed,
            "traffic between a pod and its own node is always allowed by NetworkPolicy".into(),
        ),
        Side::Allowed { .. } => (Outcome::Allowed, "a rule allows it".into()),
        Side::Denied { .. } => (Outcome::Denied, "no rule allows it".into()),
    };
    steps.push(TierStep {
        tier: StepTier::NetworkPolicy,
        rule: None,
        outcome,
        note: Some(note),
        near_misses: Vec::new(),
        decides: None,
    });
    if let Decision::NetworkPolicy(_) = decision {
        return finish(steps, decision);
    }
    if !side.baseline.is_empty() {
        steps.push(step(Tier::Baseline, side.baseline.first_match(matches)));
    }
    if let Decision::Default = decision {
        steps.push(TierStep {
            tier: StepTier::Default,
            rule: None,
            outcome: Outcome::Allowed,
            note: None,
            near_misses: Vec::new(),
            decides: None,
        });
    }
    finish(steps, decision)
}

/// Marks the last step as the one that decided, with the walk's verdict.
fn finish(mut steps: Vec<TierStep>, decision: Decision) -> Vec<TierStep> {
    if let Some(last) = steps.last_mut() {
        last.decides = Some(decision.allowed());
    }
    steps
}

fn resolve(
    index: &Index,
    graph: &PolicyGraph,
    target: &Target,
    family: Option<Family>,
    which: Which,
) -> Result<Endpoint, ExplainError> {
    let err = |problem| ExplainError::End { which, problem };
    let (ns, name) = match target {
        Target::Addr(ip) => {
            let ip = *ip;
            if let Some(pods) = ambiguous(index, ip) {
                return Err(err(EndProblem::Ambiguous { ip, pods }));
            }
            if let Some(pod) = graph.pod_by_ip(ip) {
                return Ok(Endpoint::Pod { id: pod.id(), ip });
            }
            return Ok(Endpoint::Host { ip, note: None });
        }
        Target::Pod { namespace, name } => (namespace.as_str(), name.as_str()),
    };
    let target = || target.clone();
    let want_v6 = family == Some(Family::V6);
    let pick = |ips: &[IpAddr]| -> Option<IpAddr> {
        ips.iter()
            .copied()
            .find(|ip| ip.is_ipv6() == want_v6)
            .or_else(|| {
                if family.is_none() {
                    ips.first().copied()
                } else {
                    None
                }
            })
    };
    if let Some(pod) = graph.pod(ns, name) {
        let ip = pick(&pod.ips)
            .ok_or_else(|| err(EndProblem::NoAddressOfFamily { target: target() }))?;
        return Ok(Endpoint::Pod { id: pod.id(), ip });
    }
    match index.pod(ns, name) {
        None => Err(err(EndProblem::NoPod { target: target() })),
        Some(p) if p.host_network => {
            let ip = pick(&p.ips)
                .or_else(|| pick(&p.host_ips))
                .ok_or_else(|| err(EndProblem::HostNetworkWithoutAddress { target: target() }))?;
            Ok(Endpoint::Host {
                ip,
                note: Some(format!(
                    "hostNetwork pod {ns}/{name}: not subject to policy"
                )),
            })
        }
        Some(p) if p.finished => Err(err(EndProblem::Finished { target: target() })),
        Some(_) => Err(err(EndProblem::NoAddressYet { target: target() })),
    }
}

/// The rule's own words for the peer an allow entry came from (the graph's peer node may
/// have been created by another rule that selects the same addresses).
fn peer_words(index: &Index, origin: &crate::graph::Origin) -> String {
    let Some(p) = origin.peer else {
        return "every address".into();
    };
    let Some((ns, name)) = origin.policy.split_once('/') else {
        return String::new();
    };
    index
        .policies()
        .find(|e| e.policy.namespace == ns && e.policy.name == name)
        .and_then(|e| {
            e.policy
                .rules(origin.direction)?
                .get(origin.rule)?
                .peers
                .as_ref()?
                .get(p)
                .cloned()
        })
        .map(|spec| crate::graph::describe_peer(&spec, ns))
        .unwrap_or_default()
}

fn side(
    index: &Index,
    graph: &PolicyGraph,
    pod: Option<&PodNode>,
    dir: Direction,
    other: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Side {
    let Some(pod) = pod else {
        return Side::NotIsolated {
            reason: "not a pod: no policy applies".into(),
        };
    };
    let Some(iso) = pod.isolation(dir) else {
        return Side::NotIsolated {
            reason: format!("no policy isolates it for {dir}"),
        };
    };
    if pod.host_ips.contains(&other) {
        return Side::OwnNode;
    }
    let by: Vec<String> = iso
        .allows
        .iter()
        .filter(|a| graph.peer_contains(a.peer, other) && a.ports.contains(protocol, port))
        .map(|a| format!("{} (peer: {})", a.origin, peer_words(index, &a.origin)))
        .collect();
    if by.is_empty() {
        let why = index
            .pod(&pod.namespace, &pod.name)
            .map(|info| miss::check(index, info, &iso.isolated_by, dir, other, protocol, port))
            .unwrap_or_default();
        Side::Denied {
            isolated_by: iso.isolated_by.clone(),
            why,
        }
    } else {
        Side::Allowed {
            isolated_by: iso.isolated_by.clone(),
            by,
        }
    }
}

/// Whether one end allows: the tiers' last step when a ClusterNetworkPolicy selects the
/// pod, else the NetworkPolicy tier's account.
fn end_allows(tiers: &[TierStep], side: &Side) -> bool {
    match tiers.last() {
        None => side.allows(),
        Some(s) => s.decides.unwrap_or(true),
    }
}

/// One end of a connection as `explain` judges it: the NetworkPolicy tier's account, the
/// tiers' walk (empty when no ClusterNetworkPolicy selects the pod) and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub side: Side,
    pub tiers: Vec<TierStep>,
    pub allowed: bool,
}

impl End {
    /// Whether the pod's chain logs the connection's first packet (with `--log-allowed`
    /// for an allowed one): a tier rule that accepted or denied it, a Baseline Deny, or
    /// NetworkPolicy deciding by its rules. The own-node allowance, a Baseline Accept and
    /// the default (nothing decided) let it through the chain unlogged.
    pub fn logged(&self) -> bool {
        let by_rules = matches!(self.side, Side::Allowed { .. } | Side::Denied { .. });
        match self.tiers.last() {
            None => by_rules,
            Some(step) => match step.tier {
                StepTier::Admin => true,
                StepTier::NetworkPolicy => by_rules,
                StepTier::Baseline => step.decides == Some(false),
                StepTier::Default => false,
            },
        }
    }

    /// What allowed it: NetworkPolicy's rules when that tier decided (or no tier
    /// selects the pod), else the tier rule that accepted it; empty when denied or
    /// allowed by default.
    pub fn allowed_by(&self) -> Vec<String> {
        match (self.tiers.last(), &self.side) {
            (Some(step), _) if step.tier != StepTier::NetworkPolicy => {
                match (&step.rule, step.decides) {
                    (Some(rule), Some(true)) => vec![rule.to_string()],
                    _ => Vec::new(),
                }
            }
            (_, Side::Allowed { by, .. }) => by.clone(),
            _ => Vec::new(),
        }
    }

    /// The tiers' walk as `explain` prints it, one step each.
    pub fn tier_lines(&self) -> Vec<String> {
        self.tiers.iter().map(ToString::to_string).collect()
    }
}

/// Direction `dir` of `pod` for a connection with `other` on `port`, through every tier:
/// what `explain` says of that end, for readers that already know the pod (verdict logs,
/// the harness's record check).
pub fn end_of(
    index: &Index,
    graph: &PolicyGraph,
    pod: &PodNode,
    dir: Direction,
    other: IpAddr,
    protocol: Protocol,
    port: u16,
) -> End {
    let learned = Default::default();
    end_of_learned(index, graph, pod, (dir, other, protocol, port), &learned)
}

/// [`end_of`], with `learned` what the node's `domainNames` rules have learned (the
/// controller's verdict records).
pub fn end_of_learned(
    index: &Index,
    graph: &PolicyGraph,
    pod: &PodNode,
    (dir, other, protocol, port): (Direction, IpAddr, Protocol, u16),
    learned: &crate::fqdn::facts::Learned,
) -> End {
    let side = side(index, graph, Some(pod), dir, other, protocol, port);
    let mut probe = Probe::new(index, dir, other, protocol, port);
    probe.learned = learned.clone();
    let tiers = tier_steps(graph, Some(pod), &side, &probe);
    let allowed = end_allows(&tiers, &side);
    End {
        side,
        tiers,
        allowed,
    }
}

/// Explains a connection from `from` to `to` (each `ns/pod` or an IP address) on `port`
/// (`tcp/80`). When both sides are pods named `ns/pod`, IPv4 is used if both have it.
pub fn explain(
    index: &Index,
    from: &str,
    to: &str,
    port: &str,
) -> Result<Explanation, ExplainError> {
    let query = Query::parse(from, to, port, None)?;
    explain_in(index, &PolicyGraph::build(index), &query)
}

/// The family for ends named as pods: the query's, else an address's, else IPv4 when
/// both pods have it.
fn family_of(graph: &PolicyGraph, q: &Query) -> Family {
    let addr = [&q.from, &q.to].into_iter().find_map(|t| match t {
        Target::Addr(ip) => Some(*ip),
        Target::Pod { .. } => None,
    });
    if let Some(f) = q
        .family
        .or(addr.map(|ip| if ip.is_ipv6() { Family::V6 } else { Family::V4 }))
    {
        return f;
    }
    let has_v4 = |t: &Target| match t {
        Target::Pod { namespace, name } => graph
            .pod(namespace, name)
            .is_none_or(|p| p.ips.iter().any(IpAddr::is_ipv4)),
        Target::Addr(ip) => ip.is_ipv4(),
    };
    if has_v4(&q.from) && has_v4(&q.to) {
        Family::V4
    } else {
        Family::V6
    }
}

/// [`explain`] on a graph already built.
pub fn explain_in(
    index: &Index,
    graph: &PolicyGraph,
    q: &Query,
) -> Result<Explanation, ExplainError> {
    explain_resolved(index, graph, q, &[])
}

/// [`explain_in`], the source having resolved names to addresses (`--resolved`).
pub fn explain_resolved(
    index: &Index,
    graph: &PolicyGraph,
    q: &Query,
    resolved: &[domains::Resolution],
) -> Result<Explanation, ExplainError> {
    let (protocol, port) = (q.protocol, q.port);
    let family = Some(family_of(graph, q));
    let from_ep = resolve(index, graph, &q.from, family, Which::From)?;
    let to_ep = resolve(index, graph, &q.to, family, Which::To)?;
    if from_ep.ip().is_ipv4() != to_ep.ip().is_ipv4() {
        return Err(ExplainError::Families {
            from: from_ep.ip(),
            to: to_ep.ip(),
        });
    }
    let pod_of = |e: &Endpoint| match e {
        Endpoint::Pod { ip, .. } => graph.pod_by_ip(*ip),
        Endpoint::Host { .. } => None,
    };
    let (from_pod, to_pod) = (pod_of(&from_ep), pod_of(&to_ep));
    let ends = (&from_ep, &to_ep, resolved);
    let mut enforced = judge_ends(index, graph, [from_pod, to_pod], ends, q);
    // The audited view of each end, where audited policies change that end.
    let views = [
        from_pod.map(|p| p.audited_in(Direction::Egress).unwrap_or(p)),
        to_pod.map(|p| p.audited_in(Direction::Ingress).unwrap_or(p)),
    ];
    let changed = from_pod.is_some_and(|p| p.audited_in(Direction::Egress).is_some())
        || to_pod.is_some_and(|p| p.audited_in(Direction::Ingress).is_some());
    if changed {
        let audited = judge_ends(index, graph, views, ends, q);
        if audited.allowed != enforced.allowed {
            let mut policies = Vec::new();
            for (pod, dir, other) in [
                (from_pod, Direction::Egress, to_ep.ip()),
                (to_pod, Direction::Ingress, from_ep.ip()),
            ] {
                let Some(pod) = pod else { continue };
                let enforced_end = end_of(index, graph, pod, dir, other, protocol, port);
                if let Some(a) = audited_end(
                    index,
                    graph,
                    pod,
                    dir,
                    other,
                    protocol,
                    port,
                    enforced_end.allowed,
                ) {
                    policies.extend(a.policies);
                }
            }
            enforced.audited = Some(Box::new(Audited {
                policies,
                explanation: audited,
            }));
        }
    }
    Ok(enforced)
}

/// Both ends of a connection judged with `pods` (the source's and the destination's
/// view, `None` for an end that is no pod).
fn judge_ends(
    index: &Index,
    graph: &PolicyGraph,
    [from_pod, to_pod]: [Option<&PodNode>; 2],
    (from_ep, to_ep, resolved): (&Endpoint, &Endpoint, &[domains::Resolution]),
    q: &Query,
) -> Explanation {
    let (protocol, port) = (q.protocol, q.port);
    let egress = side(
        index,
        graph,
        from_pod,
        Direction::Egress,
        to_ep.ip(),
        protocol,
        port,
    );
    let ingress = side(
        index,
        graph,
        to_pod,
        Direction::Ingress,
        from_ep.ip(),
        protocol,
        port,
    );
    let mut egress_probe = Probe::new(index, Direction::Egress, to_ep.ip(), protocol, port);
    egress_probe.learned =
        from_pod.map_or_else(Default::default, |p| domains::learned_for(p, resolved));
    let egress_tiers = tier_steps(graph, from_pod, &egress, &egress_probe);
    let ingress_probe = Probe::new(index, Direction::Ingress, from_ep.ip(), protocol, port);
    let ingress_tiers = tier_steps(graph, to_pod, &ingress, &ingress_probe);
    Explanation {
        allowed: end_allows(&egress_tiers, &egress) && end_allows(&ingress_tiers, &ingress),
        from: from_ep.clone(),
        to: to_ep.clone(),
        protocol,
        port,
        egress,
        ingress,
        egress_tiers,
        ingress_tiers,
        audited: None,
    }
}

/// Whether direction `dir` of `pod` allows a connection with `other` on `port`: the verdict
/// [`end_of`] gives (`End::allowed`), without gathering its reasons, for readers that judge
/// many connections (`change`, which compares two states). Same walk: NetworkPolicy's
/// isolation, the own-node allowance and the allows' peers and ports, then the tiers
/// ([`TierSide::decide`]), which a pod's traffic to itself skips.
pub fn end_allowed(
    graph: &PolicyGraph,
    pod: &PodNode,
    dir: Direction,
    other: IpAddr,
    protocol: Protocol,
    port: u16,
) -> bool {
    let np = np_allows(graph, pod, dir, other, protocol, port);
    let side = pod.tiers.side(dir);
    if side.is_empty() || pod.ips.contains(&other) {
        return np.unwrap_or(true);
    }
    side.decide(np, |r| {
        graph.peer_contains(r.peer, other) && r.ports.contains(protocol, port)
    })
    .allowed()
}
