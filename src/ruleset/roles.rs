//! What each set is for, as data: every [`Set`](super::model::Set) carries a [`SetRole`],
//! and the diff, the dataplane and the pod views match on it instead of parsing names.
//! The names (`names.rs`) are spelt from these roles, never the other way round.
//!
//! ```text
//! SetRole
//!   NpAllow(SetKind)          np/<dir>/<hash>/any4 ...       shared, allow
//!   NpPair(PairPart)          np/<dir>/<hash>/pair-addr4 ... shared, allow
//!   Tier(TierSet, SetKind)    <dir>/<ns>/<pod>/admin-deny-any4 ...  a pod's own
//!   AuditTier(TierSet, SetKind) <dir>/<ns>/<pod>/audit-admin-deny-any4 ... a pod's own
//!   PodCidrs | KnownPods | Held                              the table's own
//!   DomainOpen(SetKind)       egress/<ns>/<pod>/fqdn<i>-any4 ...    a pod's own
//!   Learned                   fqdn/<policy>/<rule>/4          shared, the DNS proxy's elements
//!   DnsPods | DnsServers | DnsAlive  dns/pods4, dns/servers4, dns/alive  the steering chain's
//! ```
//!
//! Must not: know names, graphs or the kernel.

/// The six sets of one lookup group (a pod direction's NetworkPolicy allows, or one tier
/// verdict's regions), in the order of the chain's rules: per family, addresses on any
/// port (interval), single (address, protocol, port) points (hash), and (address,
/// protocol, port) ranges (concatenated interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    Any4,
    Exact4,
    Ports4,
    Any6,
    Exact6,
    Ports6,
}

impl SetKind {
    /// In the order of the chain's rules.
    pub const ALL: [SetKind; 6] = [
        SetKind::Any4,
        SetKind::Exact4,
        SetKind::Ports4,
        SetKind::Any6,
        SetKind::Exact6,
        SetKind::Ports6,
    ];

    /// The last word of the set's name.
    pub fn name(self) -> &'static str {
        match self {
            SetKind::Any4 => "any4",
            SetKind::Exact4 => "exact4",
            SetKind::Ports4 => "ports4",
            SetKind::Any6 => "any6",
            SetKind::Exact6 => "exact6",
            SetKind::Ports6 => "ports6",
        }
    }

    pub fn v6(self) -> bool {
        matches!(self, SetKind::Any6 | SetKind::Exact6 | SetKind::Ports6)
    }

    /// Keyed by address, protocol and port (rather than by address alone).
    pub fn with_ports(self) -> bool {
        !matches!(self, SetKind::Any4 | SetKind::Any6)
    }

    /// An interval set (the hash sets hold single points).
    pub fn interval(self) -> bool {
        !matches!(self, SetKind::Exact4 | SetKind::Exact6)
    }
}

/// The tier verdicts that have sets. Baseline needs no Accept sets: a Baseline accept is
/// the default, so its regions only shadow later Baseline rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TierSet {
    AdminAccept,
    AdminDeny,
    BaselineDeny,
}

impl TierSet {
    pub const ALL: [TierSet; 3] = [
        TierSet::AdminAccept,
        TierSet::AdminDeny,
        TierSet::BaselineDeny,
    ];

    /// The first words of the set's kind (`admin-accept-any4`).
    pub fn name(self) -> &'static str {
        match self {
            TierSet::AdminAccept => "admin-accept",
            TierSet::AdminDeny => "admin-deny",
            TierSet::BaselineDeny => "baseline-deny",
        }
    }

    pub fn denies(self) -> bool {
        !matches!(self, TierSet::AdminAccept)
    }
}

/// The halves of a NetworkPolicy allow looked up as a pair: addresses, then ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PairPart {
    Addrs4,
    Addrs6,
    Ports,
}

impl PairPart {
    pub fn name(self) -> &'static str {
        match self {
            PairPart::Addrs4 => "pair-addr4",
            PairPart::Addrs6 => "pair-addr6",
            PairPart::Ports => "pair-ports",
        }
    }
}

/// What a set's elements mean to the rules that look it up, and who owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetRole {
    /// NetworkPolicy allows, shared by every pod direction with the same allows.
    NpAllow(SetKind),
    /// One half of a NetworkPolicy allow looked up as a pair, shared like [`NpAllow`].
    ///
    /// [`NpAllow`]: SetRole::NpAllow
    NpPair(PairPart),
    /// A pod direction's own ClusterNetworkPolicy regions of one tier verdict.
    Tier(TierSet, SetKind),
    /// The same, of the pod direction's audited view (looked up by its audit chains).
    AuditTier(TierSet, SetKind),
    /// This node's pod CIDRs (`--default-deny-unknown`): addresses dropped unless known.
    PodCidrs,
    /// The addresses of the pods this node knows.
    KnownPods,
    /// Connections cut since policy revoked them: the controller's elements, with a
    /// timeout; never compared with the model.
    Held,
    /// Where a pod's `domainNames` rule is the first Admin rule to match (`Any4`,
    /// `Ports4`, `Any6`, `Ports6` only): its ports, less what earlier Admin rules claim.
    /// A pod's own, like [`Tier`](SetRole::Tier).
    DomainOpen(SetKind),
    /// The addresses learned for one `domainNames` rule (`fqdn/<policy>/<rule>/4`):
    /// looked up by the chains of every pod its policy selects, deleted when none does;
    /// the elements are the DNS proxy's (each with its own timeout), never the model's.
    Learned,
    /// The pods whose DNS the steering chain sends to the proxy (model-owned elements).
    DnsPods,
    /// The trusted DNS servers (`--dns-server`): only queries to them are steered.
    DnsServers,
    /// The DNS proxy's liveness (`dns/alive`): the controller's element, with a timeout.
    DnsAlive,
}

impl SetRole {
    /// Whether adding elements can revoke connections rather than only allow more: the
    /// tiers' Deny regions and the pod CIDRs (held sets are the controller's, not a
    /// policy's).
    pub fn denies(self) -> bool {
        match self {
            SetRole::Tier(t, _) => t.denies(),
            // An audit chain's sets only choose what it logs: the kernel's verdict is the
            // enforced chain's.
            SetRole::AuditTier(..) => false,
            SetRole::PodCidrs => true,
            SetRole::NpAllow(_) | SetRole::NpPair(_) | SetRole::KnownPods | SetRole::Held => false,
            // They only ever admit more (a domain rule is an Accept).
            SetRole::DomainOpen(_)
            | SetRole::Learned
            | SetRole::DnsPods
            | SetRole::DnsServers
            | SetRole::DnsAlive => false,
        }
    }

    /// Looked up by the chains of every pod direction with the same allows: changed in
    /// place (never replaced whole), deleted when no chain looks it up.
    pub fn shared(self) -> bool {
        matches!(
            self,
            SetRole::NpAllow(_) | SetRole::NpPair(_) | SetRole::Learned
        )
    }

    /// A set of the base chains that a pod chain may look up too: not a pod's to copy.
    pub fn base(self) -> bool {
        matches!(
            self,
            SetRole::Held
                | SetRole::PodCidrs
                | SetRole::DnsPods
                | SetRole::DnsServers
                | SetRole::DnsAlive
        )
    }

    /// A pod direction's own set: its chains alone look it up, it goes with them.
    pub fn pod_own(self) -> bool {
        matches!(
            self,
            SetRole::Tier(..) | SetRole::AuditTier(..) | SetRole::DomainOpen(_)
        )
    }

    /// Whose elements are someone else's (the controller's or the DNS proxy's): the
    /// model declares the set empty, and no diff, resync or drift check compares, deletes
    /// or flushes what the kernel holds in it while the set stands.
    pub fn foreign_elements(self) -> bool {
        matches!(self, SetRole::Held | SetRole::Learned | SetRole::DnsAlive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_the_chain_order_and_their_shapes() {
        let names: Vec<&str> = SetKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            ["any4", "exact4", "ports4", "any6", "exact6", "ports6"]
        );
        let shape: Vec<(bool, bool, bool)> = SetKind::ALL
            .iter()
            .map(|k| (k.v6(), k.with_ports(), k.interval()))
            .collect();
        assert_eq!(
            shape,
            [
                (false, false, true),
                (false, true, false),
                (false, true, true),
                (true, false, true),
                (true, true, false),
                (true, true, true),
            ]
        );
    }

    #[test]
    fn only_deny_regions_and_pod_cidrs_deny() {
        let deny: Vec<SetRole> = [
            SetRole::NpAllow(SetKind::Any4),
            SetRole::NpPair(PairPart::Ports),
            SetRole::Tier(TierSet::AdminAccept, SetKind::Exact6),
            SetRole::Tier(TierSet::AdminDeny, SetKind::Exact6),
            SetRole::Tier(TierSet::BaselineDeny, SetKind::Any4),
            SetRole::PodCidrs,
            SetRole::KnownPods,
            SetRole::Held,
        ]
        .into_iter()
        .filter(|r| r.denies())
        .collect();
        assert_eq!(
            deny,
            [
                SetRole::Tier(TierSet::AdminDeny, SetKind::Exact6),
                SetRole::Tier(TierSet::BaselineDeny, SetKind::Any4),
                SetRole::PodCidrs,
            ]
        );
    }
}
