//! Stable, deterministic nftables names for nftpol's objects.
//!
//! Pod objects are named after the pod (`ingress/x/web-0`, `ingress/x/web-0/admin-deny-any4`):
//! namespaces and pod names never contain `/`, so the name is unambiguous, and nft accepts
//! `/`, `.` and `-` in identifiers. The NetworkPolicy sets are shared by every pod whose
//! allows are the same and are named after those allows (`np/ingress/<hash>/exact4`).
//!
//! Every name must load through `nft -f` unquoted (nft 1.0.6 takes no quoted chain or set
//! names) and through netlink as-is, so both backends share it: an identifier of ASCII
//! letters, digits, `/`, `.`, `-` and `_`, at most 255 bytes (the kernel's
//! NFT_CHAIN_MAXNAMELEN and NFT_SET_MAXNAMELEN are 256 with the NUL). API-valid names
//! (DNS-1123 labels and subdomains) hold only lowercase letters, digits, `.` and `-`, so
//! a pod's name is spelt out unchanged when it fits. One that does not fit, or whose
//! namespace or pod name holds any other character (the API server refuses those), has
//! every such character replaced by `_`, is cut, and ends in `_` and a hash of the exact
//! namespace and pod name: as `_` never occurs in an API-valid name, such a name cannot
//! meet a spelt-out one, and the hash keeps it unique and stable.

use super::roles::{PairPart, SetKind, TierSet};
use crate::graph::PodKey;
use crate::policy::Direction;

/// The kernel's NFT_NAME_MAXLEN is 256 with the terminating NUL.
pub const MAX_NAME: usize = 255;

pub const TABLE: &str = "nftpol";
pub const CHAIN_FORWARD: &str = "forward";
pub const CHAIN_OUTPUT: &str = "output";
pub const CHAIN_DISPATCH: &str = "dispatch";
/// This node's pod CIDRs (`--default-deny-unknown`): the one kind of set whose elements
/// drop traffic rather than allow it.
pub const POD_CIDR_SETS: [&str; 2] = ["pod-cidrs4", "pod-cidrs6"];
/// The sets of cut connections, IPv4 and IPv6 (see `RuleKind::HeldDrop`).
pub const HELD_SETS: [&str; 2] = ["held4", "held6"];
/// How long a cut connection stays held: long enough for every segment in flight and for
/// a peer's retransmissions over two minutes of backoff. A held 5-tuple cannot open a new
/// connection for that time; a client reusing its exact source port is that rare.
pub const HELD_TIMEOUT_SECS: u32 = 120;

/// FNV-1a, 64 bits: stable across runs and platforms (unlike std's hasher).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// FNV-1a, 128 bits: names a shared set after its contents' key, where two keys must
/// not collide in any one table.
fn fnv1a_128(s: &str) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in s.bytes() {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// Whether a namespace or pod name can be spelt out in a name: what DNS-1123 allows (in
/// either case), never `_` (the mark of a name made to fit) nor `/` (the separator).
fn plain(part: &str) -> bool {
    part.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `<head>/<namespace>/<pod><suffix>`, spelt out when both parts are [`plain`] and it fits
/// in [`MAX_NAME`]; otherwise made to fit (see the module doc). `head` and `suffix` are
/// nftpol's own words, plain already.
fn pod_name(head: &str, namespace: &str, pod: &str, suffix: &str) -> String {
    let full = format!("{head}/{namespace}/{pod}");
    if plain(namespace) && plain(pod) && full.len() + suffix.len() <= MAX_NAME {
        return full + suffix;
    }
    // A long plain name keeps the hash it had (of the whole name); a name with other
    // characters is hashed with its parts' lengths, so `a/b`+`c` and `a`+`b/c` differ.
    let key = if plain(namespace) && plain(pod) {
        full.clone()
    } else {
        format!("{head}/{}:{namespace}/{}:{pod}", namespace.len(), pod.len())
    };
    let hash = format!("_{:016x}", fnv1a(&key));
    let safe: String = full
        .chars()
        .take(MAX_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cut = (MAX_NAME - suffix.len() - hash.len()).min(safe.len());
    format!("{}{hash}{suffix}", &safe[..cut])
}

/// `ingress/<ns>/<pod>` or `egress/<ns>/<pod>`.
pub fn pod_chain(dir: Direction, namespace: &str, pod: &str) -> String {
    pod_name(dir.name(), namespace, pod, "")
}

/// The DNS proxy's steering chain (ClusterNetworkPolicy `domainNames`): a prerouting
/// chain, before kube-proxy's DNAT, that tproxies the DNS of the pods in
/// [`DNS_POD_SETS`] to the controller while [`DNS_ALIVE_SET`] holds the DNS port.
pub const CHAIN_DNS_STEER: &str = "dns-steer";
/// The DNS proxy's held connections: a prerouting chain after kube-proxy's DNAT that
/// keeps the packets of a TCP connection the proxy's transparent socket holds with it
/// (found by the address DNAT chose, which the socket has).
pub const CHAIN_DNS_HELD: &str = "dns-held";
/// The DNS proxy's liveness: an `inet_service` set with `flags timeout` that the
/// controller keeps the DNS port in (see `controller::dns_proxy::liveness`); its
/// elements are the controller's, never the compiled model's.
pub const DNS_ALIVE_SET: &str = "dns/alive";
/// This node's pods whose DNS goes through the proxy (the subjects of the node's
/// `domainNames` rules), IPv4 and IPv6.
pub const DNS_POD_SETS: [&str; 2] = ["dns/pods4", "dns/pods6"];
/// The trusted DNS servers (`--dns-server`), IPv4 and IPv6: only queries addressed to
/// them are steered.
pub const DNS_SERVER_SETS: [&str; 2] = ["dns/servers4", "dns/servers6"];

/// `fqdn/<policy>/<rule>/4` (or `/6`): the addresses learned for egress rule `rule` of
/// ClusterNetworkPolicy `policy` from DNS answers (`flags timeout`; the elements are the
/// DNS proxy's, never the compiled model's). One pair per rule, so two rules never share
/// what they learned.
pub fn learned_set(policy: &str, rule: usize, v6: bool) -> String {
    pod_name(
        "fqdn",
        policy,
        &rule.to_string(),
        if v6 { "/6" } else { "/4" },
    )
}

/// What every shared NetworkPolicy set's name starts with.
pub const NP_SET_PREFIX: &str = "np/";

/// `np/<dir>/<hash>/<kind>`: one of the six sets ([`SetKind`]) of every pod direction
/// whose allows have the canonical key `allows` (see `build::allows_key`). The pods the
/// same policies select share it, so a peer's change edits one set, not one per pod.
pub fn np_set(dir: Direction, allows: &str, kind: SetKind) -> String {
    np_name(dir, allows, kind.name())
}

/// `np/<dir>/<hash>/pair-addr4` (or `pair-addr6`, `pair-ports`): one half of the single
/// allow with key `allows` looked up as a pair.
pub fn np_pair_set(dir: Direction, allows: &str, part: PairPart) -> String {
    np_name(dir, allows, part.name())
}

fn np_name(dir: Direction, allows: &str, kind: &str) -> String {
    format!(
        "{NP_SET_PREFIX}{}/{:032x}/{kind}",
        dir.name(),
        fnv1a_128(allows)
    )
}

/// `<dir>/<ns>/<pod>/<tier>-<kind>` (`ingress/x/web-0/admin-deny-any4`): one of a pod
/// direction's own tier sets.
pub fn pod_set(dir: Direction, namespace: &str, pod: &str, tier: TierSet, kind: SetKind) -> String {
    let suffix = format!("/{}-{}", tier.name(), kind.name());
    pod_name(dir.name(), namespace, pod, &suffix)
}

/// `egress/<ns>/<pod>/fqdn<i>-<kind>`: where the pod's `i`th `domainNames` rule (in
/// evaluation order) decides (see `domain_rules`); `kind` is `Any4`, `Ports4`, `Any6` or
/// `Ports6`. `audit-fqdn<i>-<kind>` in the pod's audited view.
pub fn domain_open_set(
    namespace: &str,
    pod: &str,
    i: usize,
    kind: SetKind,
    audited: bool,
) -> String {
    let view = if audited { "audit-" } else { "" };
    let suffix = format!("/{view}fqdn{i}-{}", kind.name());
    pod_name(Direction::Egress.name(), namespace, pod, &suffix)
}

/// `<dir>/<ns>/<pod>/audit-<tier>-<kind>`: one of the tier sets of a pod direction's
/// audited view (see `audit_chain`).
pub fn audit_pod_set(
    dir: Direction,
    namespace: &str,
    pod: &str,
    tier: TierSet,
    kind: SetKind,
) -> String {
    let suffix = format!("/audit-{}-{}", tier.name(), kind.name());
    pod_name(dir.name(), namespace, pod, &suffix)
}

/// The chains that audit a pod chain's decision (see `audit_chain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuditChain {
    /// The enforced view allowed: judge again with the audited policies.
    Allowed,
    /// The enforced view denied: judge again with the audited policies.
    Denied,
    /// The audited view would deny what is allowed: log, then allow.
    WouldDeny,
    /// The audited view would allow what is denied: log, then drop.
    WouldAllow,
}

impl AuditChain {
    pub const ALL: [AuditChain; 4] = [
        AuditChain::Allowed,
        AuditChain::Denied,
        AuditChain::WouldDeny,
        AuditChain::WouldAllow,
    ];

    fn suffix(self) -> &'static str {
        match self {
            AuditChain::Allowed => "/audit-allowed",
            AuditChain::Denied => "/audit-denied",
            AuditChain::WouldDeny => "/would-deny",
            AuditChain::WouldAllow => "/would-allow",
        }
    }
}

/// `input/<ns>/<pod>/audit-allowed` (or `audit-denied`): the input hook's judging
/// chains of a pod whose egress audited policies change.
pub fn pod_input_audit_chain(namespace: &str, pod: &str, which: AuditChain) -> String {
    pod_name("input", namespace, pod, which.suffix())
}

/// `egress/<ns>/<pod>/audit-allowed` and the other [`AuditChain`]s.
pub fn pod_audit_chain(dir: Direction, namespace: &str, pod: &str, which: AuditChain) -> String {
    pod_name(dir.name(), namespace, pod, which.suffix())
}

/// Every tier set of a pod direction: each tier verdict's six kinds.
pub fn tier_sets() -> impl Iterator<Item = (TierSet, SetKind)> {
    TierSet::ALL
        .into_iter()
        .flat_map(|t| SetKind::ALL.into_iter().map(move |k| (t, k)))
}

/// `egress/<ns>/<pod>/drop`: where a pod chain's tier Deny lookups go (`goto`), so the
/// drop of a connection a ClusterNetworkPolicy denies is logged by one rule per chain.
pub fn pod_drop_chain(dir: Direction, namespace: &str, pod: &str) -> String {
    pod_name(dir.name(), namespace, pod, "/drop")
}

/// The input hook's base chain: traffic to this node's own addresses.
pub const CHAIN_INPUT: &str = "input";
/// Pod address -> its input chain, IPv4 and IPv6.
pub const INPUT_MAPS: [&str; 2] = ["input4", "input6"];

/// `input/<ns>/<pod>`: the pod's egress tiers judging its traffic to this node.
pub fn pod_input_chain(namespace: &str, pod: &str) -> String {
    pod_name("input", namespace, pod, "")
}

/// `ingress4`, `egress6`, ...: the dispatch verdict maps.
pub fn dispatch_map(dir: Direction, v6: bool) -> String {
    format!("{}{}", dir.name(), if v6 { 6 } else { 4 })
}

/// The longest NFLOG prefix nftpol writes, in bytes. nf_tables takes 127, but the
/// `NFLOG` target of iptables and most readers of the group stop at 64 with the NUL.
pub const MAX_LOG_PREFIX: usize = 63;

/// What a logging rule saw happen to the packet: the first word of its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogVerdict {
    Denied,
    Allowed,
    /// Allowed, but the audited policies would deny it.
    WouldDeny,
    /// Denied, but the audited policies would allow it.
    WouldAllow,
}

impl LogVerdict {
    pub fn name(self) -> &'static str {
        match self {
            LogVerdict::Denied => "denied",
            LogVerdict::Allowed => "allowed",
            LogVerdict::WouldDeny => "would-deny",
            LogVerdict::WouldAllow => "would-allow",
        }
    }

    /// The first word of the prefix.
    pub fn tag(self) -> &'static str {
        match self {
            LogVerdict::Denied => "d",
            LogVerdict::Allowed => "a",
            LogVerdict::WouldDeny => "wd",
            LogVerdict::WouldAllow => "wa",
        }
    }

    /// What the kernel did with the packet.
    pub fn kernel_allowed(self) -> bool {
        matches!(self, LogVerdict::Allowed | LogVerdict::WouldDeny)
    }
}

/// The NFLOG prefix of a chain's logging rules: `d ingress/x/web-0` (denied) or
/// `a ingress/x/web-0` (allowed). A chain name too long for [`MAX_LOG_PREFIX`] is cut and
/// ends in a hash of the whole name, so the prefix still names one chain; the reader maps
/// a prefix back to its chain by computing this for the chains of its model.
pub fn log_prefix(verdict: LogVerdict, chain: &str) -> String {
    let full = format!("{} {chain}", verdict.tag());
    if full.len() <= MAX_LOG_PREFIX {
        return full;
    }
    let hash = format!("~{:016x}", fnv1a(chain));
    let mut cut = MAX_LOG_PREFIX - hash.len();
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{hash}", &full[..cut])
}

/// nft comments are at most 128 bytes and cannot hold a double quote; the object names
/// they quote have their control characters escaped (see [`crate::text`]), so a comment
/// stays on its line of the script.
pub fn comment(text: &str) -> String {
    let mut s: String = crate::text::escape(text).replace('"', "'");
    if s.len() > 127 {
        let mut cut = 124;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// The addresses of this node's pods, IPv4 and IPv6 (`--default-deny-unknown` drops the
/// other addresses of the pod CIDRs).
pub const KNOWN_PODS: [&str; 2] = ["known-pods4", "known-pods6"];

/// The chains a pod can have: input, and per direction its chain, drop tail and audit
/// chains.
pub fn pod_chains(namespace: &str, pod: &str) -> Vec<String> {
    let mut out = vec![pod_input_chain(namespace, pod)];
    for which in [AuditChain::Allowed, AuditChain::Denied] {
        out.push(pod_input_audit_chain(namespace, pod, which));
    }
    for dir in [Direction::Ingress, Direction::Egress] {
        out.push(pod_chain(dir, namespace, pod));
        out.push(pod_drop_chain(dir, namespace, pod));
        out.extend(
            AuditChain::ALL
                .into_iter()
                .map(|which| pod_audit_chain(dir, namespace, pod, which)),
        );
    }
    out
}

/// Every chain and set name the given pods' own objects can have: their chains and tier
/// sets. The shared NetworkPolicy sets they look up are not theirs (see
/// `view::PodObjects`).
pub fn pod_object_names(
    pods: &std::collections::BTreeSet<PodKey>,
) -> std::collections::HashSet<String> {
    let mut names = std::collections::HashSet::new();
    for (ns, pod) in pods {
        names.extend(pod_chains(ns, pod));
        for dir in [Direction::Ingress, Direction::Egress] {
            for (tier, kind) in tier_sets() {
                names.insert(pod_set(dir, ns, pod, tier, kind));
                names.insert(audit_pod_set(dir, ns, pod, tier, kind));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_readable() {
        assert_eq!(pod_chain(Direction::Ingress, "x", "a"), "ingress/x/a");
        assert_eq!(
            pod_set(
                Direction::Egress,
                "x",
                "web-0.db",
                TierSet::AdminDeny,
                SetKind::Ports6
            ),
            "egress/x/web-0.db/admin-deny-ports6"
        );
    }

    #[test]
    fn long_names_fit_and_stay_unique() {
        let long_a = "a".repeat(253);
        let mut long_b = "a".repeat(252);
        long_b.push('b');
        let ns = "n".repeat(63);
        let a = pod_set(
            Direction::Ingress,
            &ns,
            &long_a,
            TierSet::AdminAccept,
            SetKind::Ports4,
        );
        let b = pod_set(
            Direction::Ingress,
            &ns,
            &long_b,
            TierSet::AdminAccept,
            SetKind::Ports4,
        );
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME);
        assert_ne!(a, b);
        assert!(a.ends_with("/admin-accept-ports4"));
        assert_eq!(
            a,
            pod_set(
                Direction::Ingress,
                &ns,
                &long_a,
                TierSet::AdminAccept,
                SetKind::Ports4
            )
        );
        let c = pod_chain(Direction::Ingress, &ns, &long_a);
        assert!(c.len() <= MAX_NAME);
    }

    #[test]
    fn log_prefixes_fit_and_name_one_chain() {
        let short = pod_chain(Direction::Egress, "x", "web-0");
        assert_eq!(log_prefix(LogVerdict::Denied, &short), "d egress/x/web-0");
        assert_eq!(log_prefix(LogVerdict::Allowed, &short), "a egress/x/web-0");
        let ns = "n".repeat(63);
        let a = pod_chain(Direction::Ingress, &ns, &"p".repeat(60));
        let b = pod_chain(Direction::Ingress, &ns, &"p".repeat(61));
        let (pa, pb) = (
            log_prefix(LogVerdict::Denied, &a),
            log_prefix(LogVerdict::Denied, &b),
        );
        assert!(pa.len() <= MAX_LOG_PREFIX && pb.len() <= MAX_LOG_PREFIX);
        assert_ne!(pa, pb);
        assert!(pa.starts_with("d ingress/nnn"));
    }

    #[test]
    fn np_set_names_fit_and_follow_the_key() {
        let a = np_set(Direction::Ingress, "x/p\u{1f}0", SetKind::Ports6);
        assert!(
            a.starts_with("np/ingress/") && a.ends_with("/ports6"),
            "{a}"
        );
        assert!(a.len() <= MAX_NAME);
        assert_eq!(a, np_set(Direction::Ingress, "x/p\u{1f}0", SetKind::Ports6));
        assert_ne!(a, np_set(Direction::Ingress, "x/p\u{1f}1", SetKind::Ports6));
        let pair = np_pair_set(Direction::Ingress, "x/p\u{1f}0", PairPart::Ports);
        assert_eq!(pair, a.replace("/ports6", "/pair-ports"));
    }

    #[test]
    fn comments_fit() {
        let c = comment(&format!("say \"{}\"", "x".repeat(300)));
        assert!(c.len() <= 127 && !c.contains('"'));
        let c = comment("allowed by x/evil\n\tcomment \"x\"\r");
        assert_eq!(c, "allowed by x/evil\\n\\tcomment 'x'\\r");
    }

    /// Whether nft's scanner reads `name` as one unquoted identifier (scanner.l's
    /// `string`: a letter, `_` or `.`, then letters, digits, `/`, `-`, `_`, `.`).
    fn nft_identifier(name: &str) -> bool {
        let mut b = name.bytes();
        b.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'.')
            && b.all(|c| c.is_ascii_alphanumeric() || b"/-_.".contains(&c))
    }

    #[test]
    fn names_at_the_api_limits_are_identifiers_that_fit() {
        let ns = "n".repeat(63);
        for pod in [
            "p".repeat(222),
            "p".repeat(253),
            format!("{}.q", "p".repeat(250)),
        ] {
            for name in pod_chains(&ns, &pod)
                .into_iter()
                .chain(tier_sets().map(|(t, k)| pod_set(Direction::Egress, &ns, &pod, t, k)))
            {
                assert!(name.len() <= MAX_NAME, "{} bytes: {name}", name.len());
                assert!(nft_identifier(&name), "{name}");
            }
        }
    }

    #[test]
    fn names_the_api_refuses_become_identifiers_and_stay_apart() {
        let odd = [
            "web 0", "web\"0", "web\n0", "wéb", "a/b", "web_0", "{x}", "a;b",
        ];
        let mut seen = std::collections::HashSet::new();
        for pod in odd {
            let c = pod_chain(Direction::Ingress, "x", pod);
            assert!(nft_identifier(&c) && c.len() <= MAX_NAME, "{c}");
            assert!(c.starts_with("ingress/x/"), "{c}");
            assert!(seen.insert(c));
        }
        assert_ne!(
            pod_chain(Direction::Ingress, "a/b", "c"),
            pod_chain(Direction::Ingress, "a", "b/c")
        );
        // `_` marks a made-to-fit name: no spelt-out name can equal one.
        assert!(!seen.contains(&pod_chain(Direction::Ingress, "x", "web-0")));
    }
}
