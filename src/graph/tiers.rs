//! The cluster administrator's tiers of the policy graph (ClusterNetworkPolicy): for each
//! pod and direction, the Admin and Baseline rules whose subject selects the pod, in
//! evaluation order, as plain data.
//!
//! ```text
//! PodNode.tiers
//!   ingress / egress: TierSide
//!     admin:    [TierRule { action, peer, ports, origin }]   evaluation order
//!     baseline: [TierRule { ... }]
//! ```
//!
//! Evaluation order is ascending priority, then policy name (the API leaves equal
//! priorities to the implementation; by name is what kube-network-policies does), then
//! each policy's rules as written. The first rule whose peer and ports match decides its
//! tier: Accept and Deny are final, Pass skips the rest of the tier. Peers and ports are
//! the graph's own ([`PeerRef`], [`Ports`]): named ports leave the graph as numbers, as
//! for NetworkPolicy. This module holds the shapes and the one walk every reader shares
//! ([`TierSide::decide`]); the graph fills them and must not be bypassed.

use std::fmt;

use super::{PeerRef, Ports};
use crate::cnp::{Action, Tier};
use crate::policy::Direction;

/// Where a tier rule comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TierOrigin {
    /// `metadata.name` of the ClusterNetworkPolicy (cluster-scoped: no namespace).
    pub policy: String,
    pub tier: Tier,
    pub priority: i32,
    pub direction: Direction,
    /// Index of the rule in `spec.ingress` or `spec.egress`; `None` for the deny-all rule
    /// a policy that failed to compile is enforced with.
    pub rule: Option<usize>,
    /// The rule's `name`, when it has one.
    pub rule_name: Option<String>,
    /// Index of the peer in `from`/`to`; `None` for the fail-closed rule.
    pub peer: Option<usize>,
    /// The `destinationNamedPort` this entry was resolved from.
    pub port_name: Option<String>,
}

impl fmt::Display for TierOrigin {
    /// `Admin: no-y-into-x ingress[1] deny-y`, the way policy-assistant names a rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} {}", self.tier, self.policy, self.direction)?;
        match self.rule {
            Some(r) => write!(f, "[{r}]")?,
            None => write!(f, " (fail-closed: the policy could not be compiled)")?,
        }
        if let Some(n) = &self.rule_name {
            write!(f, " {n}")?;
        }
        if let Some(p) = self.peer {
            let list = match self.direction {
                Direction::Ingress => "from",
                Direction::Egress => "to",
            };
            write!(f, " {list}[{p}]")?;
        }
        if let Some(n) = &self.port_name {
            write!(f, " port {n:?}")?;
        }
        Ok(())
    }
}

/// One (peer, ports) entry of a rule. A rule with several peers gives one entry per peer,
/// all with the rule's action, consecutive in evaluation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRule {
    pub action: Action,
    /// The remote end: for ingress the source, for egress the destination. CNP peers are
    /// pods, namespaces, networks and nodes, never "every address" except for the
    /// fail-closed rule of a policy that could not be compiled ([`PeerRef::Any`]).
    pub peer: PeerRef,
    /// [`Ports::Any`] for a rule without `protocols` (every protocol, ICMP included).
    pub ports: Ports,
    pub origin: TierOrigin,
}

/// A `domainNames` rule of the Admin tier (egress, Accept): it admits, on its ports, the
/// addresses learned at run time from answers to names matching its patterns, where it
/// is the first rule that matches. Its other peers, if any, are ordinary [`TierRule`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEntry {
    /// The rule (`peer`: its first `domainNames` peer).
    pub origin: TierOrigin,
    /// Every `domainNames` pattern of the rule, sorted, without repeats: the rule, not
    /// the peer, owns what is learned.
    pub patterns: Vec<String>,
    /// [`Ports::Any`] for a rule without `protocols`.
    pub ports: Ports,
    /// Its place in evaluation order: the number of entries of [`TierRules::rules`] that
    /// come before it (what they decide, they decide first).
    pub position: usize,
}

/// The rules of one tier for one pod and direction, in evaluation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierRules {
    /// Names of the policies of this tier whose subject selects the pod and that have
    /// rules in this direction, in evaluation order.
    pub policies: Vec<String>,
    pub rules: Vec<TierRule>,
    /// The `domainNames` rules among them (Admin egress only), in evaluation order.
    pub domains: Vec<DomainEntry>,
}

impl TierRules {
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.rules.is_empty()
    }

    /// The first rule that matches, given a test of its peer and ports; `None` when no
    /// rule does (the tier has no opinion, like Pass).
    pub fn first_match(&self, mut matches: impl FnMut(&TierRule) -> bool) -> Option<&TierRule> {
        self.rules.iter().find(|r| matches(r))
    }

    /// [`first_match`](Self::first_match) with the `domainNames` rules in their places:
    /// `learned` says whether one admits the connection (the address learned for it, on
    /// its ports).
    pub fn first_hit(
        &self,
        mut matches: impl FnMut(&TierRule) -> bool,
        mut learned: impl FnMut(&DomainEntry) -> bool,
    ) -> Option<Hit<'_>> {
        let mut domains = self.domains.iter().peekable();
        for (i, r) in self.rules.iter().enumerate() {
            while let Some(d) = domains.next_if(|d| d.position <= i) {
                if learned(d) {
                    return Some(Hit::Domain(d));
                }
            }
            if matches(r) {
                return Some(Hit::Rule(r));
            }
        }
        domains.find(|d| learned(d)).map(Hit::Domain)
    }
}

/// What decided in a tier: a rule, or a `domainNames` rule through a learned address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit<'a> {
    Rule(&'a TierRule),
    Domain(&'a DomainEntry),
}

/// Both tiers for one pod and direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierSide {
    pub admin: TierRules,
    pub baseline: TierRules,
}

impl TierSide {
    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.baseline.is_empty()
    }

    pub fn tier(&self, tier: Tier) -> &TierRules {
        match tier {
            Tier::Admin => &self.admin,
            Tier::Baseline => &self.baseline,
        }
    }
}

/// The tiers of one pod, per direction. Empty (the default) when no ClusterNetworkPolicy
/// selects the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodTiers {
    pub ingress: TierSide,
    pub egress: TierSide,
}

impl PodTiers {
    pub fn is_empty(&self) -> bool {
        self.ingress.is_empty() && self.egress.is_empty()
    }

    pub fn side(&self, dir: Direction) -> &TierSide {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// How one end of a connection was decided, tier by tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// An Admin rule accepted or denied; NetworkPolicy and Baseline were not consulted.
    Admin(&'a TierRule),
    /// An Admin `domainNames` rule accepted a learned address.
    Domain(&'a DomainEntry),
    /// NetworkPolicy isolates the pod in this direction and decided (`true`: allowed).
    NetworkPolicy(bool),
    /// A Baseline rule accepted or denied.
    Baseline(&'a TierRule),
    /// Nothing decided (or only Pass rules matched): allowed.
    Default,
}

impl Decision<'_> {
    pub fn allowed(&self) -> bool {
        match self {
            Decision::Admin(r) | Decision::Baseline(r) => r.action == Action::Accept,
            Decision::NetworkPolicy(allowed) => *allowed,
            Decision::Domain(_) | Decision::Default => true,
        }
    }
}

impl TierSide {
    /// The one walk every reader shares: Admin (first match; Pass falls through), then
    /// NetworkPolicy when `np` is `Some` (the pod is isolated in this direction; the value
    /// says whether an NP rule allows), then Baseline, then allow. `matches` tests one
    /// rule's peer and ports against the connection.
    pub fn decide(&self, np: Option<bool>, matches: impl FnMut(&TierRule) -> bool) -> Decision<'_> {
        self.decide_learned(np, matches, |_| false)
    }

    /// [`decide`](Self::decide), with the Admin `domainNames` rules admitting what
    /// `learned` says they do (what the node's DNS proxy learned, given as facts).
    pub fn decide_learned(
        &self,
        np: Option<bool>,
        mut matches: impl FnMut(&TierRule) -> bool,
        learned: impl FnMut(&DomainEntry) -> bool,
    ) -> Decision<'_> {
        match self.admin.first_hit(&mut matches, learned) {
            Some(Hit::Domain(d)) => return Decision::Domain(d),
            Some(Hit::Rule(r)) if r.action != Action::Pass => return Decision::Admin(r),
            _ => {}
        }
        if let Some(allowed) = np {
            return Decision::NetworkPolicy(allowed);
        }
        if let Some(r) = self.baseline.first_match(&mut matches) {
            if r.action != Action::Pass {
                return Decision::Baseline(r);
            }
        }
        Decision::Default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tier: Tier, action: Action, peer: PeerRef, n: usize) -> TierRule {
        TierRule {
            action,
            peer,
            ports: Ports::Any,
            origin: TierOrigin {
                policy: format!("p{n}"),
                tier,
                priority: n as i32,
                direction: Direction::Ingress,
                rule: Some(0),
                rule_name: None,
                peer: Some(0),
                port_name: None,
            },
        }
    }

    fn side(admin: Vec<TierRule>, baseline: Vec<TierRule>) -> TierSide {
        let names = |r: &[TierRule]| r.iter().map(|r| r.origin.policy.clone()).collect();
        TierSide {
            admin: TierRules {
                policies: names(&admin),
                rules: admin,
                domains: Vec::new(),
            },
            baseline: TierRules {
                policies: names(&baseline),
                rules: baseline,
                domains: Vec::new(),
            },
        }
    }

    /// (admin, np, baseline, the peer that matches, allowed, the tier that decided)
    type Case = (
        Vec<TierRule>,
        Option<bool>,
        Vec<TierRule>,
        PeerRef,
        bool,
        &'static str,
    );

    #[test]
    fn decide_walks_admin_then_networkpolicy_then_baseline() {
        use Action::*;
        let p = PeerRef::Peer(0);
        let q = PeerRef::Peer(1);
        let cases: Vec<Case> = vec![
            (vec![], None, vec![], p, true, "default"),
            (
                vec![rule(Tier::Admin, Deny, p, 1)],
                Some(true),
                vec![],
                p,
                false,
                "admin",
            ),
            (
                vec![rule(Tier::Admin, Accept, p, 1)],
                Some(false),
                vec![],
                p,
                true,
                "admin",
            ),
            (
                vec![rule(Tier::Admin, Pass, p, 1)],
                Some(false),
                vec![],
                p,
                false,
                "np",
            ),
            (
                vec![rule(Tier::Admin, Pass, p, 1), rule(Tier::Admin, Deny, p, 2)],
                None,
                vec![],
                p,
                true,
                "default",
            ),
            (
                vec![rule(Tier::Admin, Deny, q, 1)],
                None,
                vec![rule(Tier::Baseline, Deny, p, 1)],
                p,
                false,
                "baseline",
            ),
            (
                vec![],
                Some(true),
                vec![rule(Tier::Baseline, Deny, p, 1)],
                p,
                true,
                "np",
            ),
            (
                vec![],
                None,
                vec![
                    rule(Tier::Baseline, Pass, p, 1),
                    rule(Tier::Baseline, Deny, p, 2),
                ],
                p,
                true,
                "default",
            ),
            (
                vec![],
                None,
                vec![
                    rule(Tier::Baseline, Accept, p, 1),
                    rule(Tier::Baseline, Deny, p, 2),
                ],
                p,
                true,
                "baseline",
            ),
        ];
        for (i, (admin, np, baseline, peer, allowed, by)) in cases.into_iter().enumerate() {
            let s = side(admin, baseline);
            let d = s.decide(np, |r| r.peer == peer);
            let got = match d {
                Decision::Admin(_) | Decision::Domain(_) => "admin",
                Decision::NetworkPolicy(_) => "np",
                Decision::Baseline(_) => "baseline",
                Decision::Default => "default",
            };
            assert_eq!((d.allowed(), got), (allowed, by), "case {i}");
        }
    }

    /// A `domainNames` rule decides in its place: after the rules before it, before
    /// those after it.
    #[test]
    fn a_domain_rule_admits_where_it_is_first() {
        use Action::*;
        let p = PeerRef::Peer(0);
        let mut s = side(
            vec![rule(Tier::Admin, Pass, p, 1), rule(Tier::Admin, Deny, p, 2)],
            vec![],
        );
        let entry = |position| DomainEntry {
            origin: rule(Tier::Admin, Accept, p, 9).origin,
            patterns: vec!["example.com".into()],
            ports: Ports::Any,
            position,
        };
        let walk = |s: &TierSide, peer_matches: bool, learned: bool| {
            let d = s.decide_learned(Some(false), |_| peer_matches, |_| learned);
            (matches!(d, Decision::Domain(_)), d.allowed())
        };
        for (position, peer_matches, learned, want) in [
            // First: a learned address is admitted whatever comes after.
            (0, true, true, (true, true)),
            // After the Pass: the Pass decides (NetworkPolicy denies here).
            (1, true, true, (false, false)),
            // After both, where they do not match: admitted.
            (2, false, true, (true, true)),
            // Not learned: as if it were not there.
            (0, true, false, (false, false)),
            (2, false, false, (false, false)),
        ] {
            s.admin.domains = vec![entry(position)];
            let got = walk(&s, peer_matches, learned);
            assert_eq!(
                got, want,
                "at {position}, peer {peer_matches}, learned {learned}"
            );
        }
    }

    #[test]
    fn origin_reads_like_policy_assistant() {
        let mut r = rule(Tier::Admin, Action::Deny, PeerRef::Peer(0), 1);
        r.origin.policy = "no-y-into-x".into();
        r.origin.rule = Some(1);
        r.origin.rule_name = Some("deny-y".into());
        assert_eq!(
            r.origin.to_string(),
            "Admin: no-y-into-x ingress[1] deny-y from[0]"
        );
    }
}
