//! The ruleset model: the nftables objects nftpol programs, as plain data.
//!
//! ```text
//! policy graph --(ruleset::build)--> Ruleset --+--> script::render  (nft -f text)
//!                                              +--> netlink backend (one atomic batch)
//!                                              +--> diff (old, new) -> incremental batch
//! ```
//!
//! The model knows nothing of Kubernetes and nothing of how it is sent to the kernel. It
//! holds one table; every list in it is kept sorted by name (elements by key), so two
//! models built from the same input are equal and render to identical bytes. Rules are a
//! closed set of shapes ([`Rule`]) rather than a general expression language: every
//! backend must encode each shape exactly as `nft` would, and a short list keeps that
//! promise checkable.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The one table nftpol owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Always `inet`: one table sees IPv4 and IPv6.
    pub family: Family,
    pub name: String,
    pub comment: Option<String>,
    /// Sorted by name.
    pub sets: Vec<Set>,
    /// Sorted by name.
    pub maps: Vec<Map>,
    /// Base chains first (in [`Hook`] order), then regular chains sorted by name.
    pub chains: Vec<Chain>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Inet,
}

/// The type of one field of a set or map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyType {
    /// `ipv4_addr`, 4 bytes.
    Ipv4Addr,
    /// `ipv6_addr`, 16 bytes.
    Ipv6Addr,
    /// `inet_proto`, 1 byte (padded to 4 in a concatenation).
    InetProto,
    /// `inet_service`, 2 bytes big endian (padded to 4 in a concatenation).
    InetService,
}

/// One field of an element key: an inclusive range; a single value has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Ipv4(Ipv4Addr, Ipv4Addr),
    Ipv6(Ipv6Addr, Ipv6Addr),
    Proto(u8, u8),
    Port(u16, u16),
}

impl Field {
    /// The range holds one value.
    pub fn is_point(&self) -> bool {
        match *self {
            Field::Ipv4(a, b) => a == b,
            Field::Ipv6(a, b) => a == b,
            Field::Proto(a, b) => a == b,
            Field::Port(a, b) => a == b,
        }
    }
}

/// A named set. With `interval`, each field of an element is a range (for a concatenated
/// key this is a pipapo set, `NFT_SET_CONCAT | NFT_SET_INTERVAL`); elements never overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub key: Vec<KeyType>,
    pub interval: bool,
    pub comment: Option<String>,
    /// Sorted, disjoint; for a one-field interval set also never adjacent.
    pub elements: Vec<Element>,
    /// `flags timeout; timeout <n>s`: a set whose elements are the controller's, not the
    /// model's (the flows it has cut, held for `n` seconds). The model declares it empty;
    /// what the kernel holds in it is never compared with the model.
    pub timeout: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    pub key: Key,
}

/// The most fields a key has: `address . protocol . port`.
pub const MAX_KEY_FIELDS: usize = 3;

/// An element key: up to [`MAX_KEY_FIELDS`] fields, stored inline. Sets hold hundreds of
/// thousands of elements and every incremental update copies a pod's worth of them, so a
/// key is plain `Copy` data rather than a heap allocation. It reads as a slice of fields
/// and orders, compares and hashes exactly like one.
#[derive(Clone, Copy)]
pub struct Key {
    len: u8,
    fields: [Field; MAX_KEY_FIELDS],
}

impl Key {
    /// Panics on more than [`MAX_KEY_FIELDS`] fields: no nftpol set has such a key.
    pub fn new(fields: &[Field]) -> Key {
        assert!(
            fields.len() <= MAX_KEY_FIELDS,
            "a key has at most {MAX_KEY_FIELDS} fields, got {}",
            fields.len()
        );
        let mut out = Key {
            len: fields.len() as u8,
            fields: [Field::Proto(0, 0); MAX_KEY_FIELDS],
        };
        out.fields[..fields.len()].copy_from_slice(fields);
        out
    }

    /// Every field is a single value (an element a hash set can hold).
    pub fn is_point(&self) -> bool {
        self.iter().all(Field::is_point)
    }
}

impl std::ops::Deref for Key {
    type Target = [Field];
    fn deref(&self) -> &[Field] {
        &self.fields[..self.len as usize]
    }
}

impl<const N: usize> From<[Field; N]> for Key {
    fn from(fields: [Field; N]) -> Key {
        Key::new(&fields)
    }
}

impl From<Vec<Field>> for Key {
    fn from(fields: Vec<Field>) -> Key {
        Key::new(&fields)
    }
}

impl<'a> IntoIterator for &'a Key {
    type Item = &'a Field;
    type IntoIter = std::slice::Iter<'a, Field>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        **self == **other
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A named verdict map (`type <key> : verdict`), exact keys, no intervals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    pub name: String,
    pub key: Vec<KeyType>,
    pub comment: Option<String>,
    /// Sorted by key; keys are unique.
    pub elements: Vec<MapElement>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapElement {
    pub key: Key,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Forward,
    Output,
    /// Traffic to this node's own addresses; only when some pod has egress tiers.
    Input,
}

/// What makes a chain a base chain: `type filter hook <hook> priority <priority>; policy <policy>;`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    /// 0 is `filter`.
    pub priority: i32,
    /// `Accept` or `Drop`.
    pub policy: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub comment: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

/// Which address of the packet a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    Saddr,
    Daddr,
}

/// One rule; each variant lists the `nft` text it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: RuleKind,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// `ct state established,related accept`
    CtEstablishedAccept,
    /// `icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit,
    /// nd-neighbor-advert, nd-redirect } accept`
    Icmpv6NdAccept,
    /// `fib saddr type local accept`: the packet was sent by this host itself.
    FibSaddrLocalAccept,
    /// `jump <chain>`
    Jump(String),
    /// `ip saddr vmap @<map>` (`ip6` for V6; `daddr` for Daddr).
    DispatchVmap {
        family: IpFamily,
        addr: Addr,
        map: String,
    },
    /// `ip saddr @<set> <verdict>`, or with ports
    /// `ip saddr . meta l4proto . th dport @<set> <verdict>`.
    Lookup {
        family: IpFamily,
        addr: Addr,
        key: LookupKey,
        set: String,
        verdict: Verdict,
        /// `... @<set> log prefix "<prefix>" group <group> <verdict>` (`--log-allowed`):
        /// every connection this lookup allows is logged, with no rate limit (only a
        /// connection's first packet reaches these chains) and no extra rule to walk.
        log: Option<LogTarget>,
    },
    /// `ip saddr @<cidrs> ip saddr != @<known> drop`: an address in this node's pod CIDRs
    /// that is not (yet) a known pod (`--default-deny-unknown`).
    DropUnknown {
        family: IpFamily,
        addr: Addr,
        cidrs: String,
        known: String,
    },
    /// `ip saddr . ip daddr . meta l4proto . th sport . th dport @<set> drop` (`ip6` for
    /// V6): a packet of a connection the controller has cut, in either direction. It sits
    /// after `ct state established,related accept`, so only a packet that would open a new
    /// entry pays the lookup: a segment still in flight, a retransmission or a reply that
    /// conntrack would otherwise pick up as a new connection (in the reverse direction,
    /// which policy may allow) and so resurrect the cut one.
    HeldDrop { family: IpFamily, set: String },
    /// `ct state new counter limit rate <rate>/second burst <burst> packets log prefix
    /// "<prefix>" group <group>`: the first packet of a connection about to be dropped goes
    /// to the NFLOG group (`--log-denied`), at most `rate` a second after a burst of
    /// `burst`, per chain. No verdict: the `drop` after it decides. `ct state new` keeps
    /// invalid and untracked stragglers (which reach these chains too) out of the log. The
    /// counter, before the limit, counts every denied connection: the reader tells from it
    /// how many the limit kept out of the log.
    LogDenied {
        prefix: String,
        group: u16,
        rate: u32,
        burst: u32,
    },
    /// A bare verdict: `drop`.
    Verdict(Verdict),
}

/// Where a logging rule sends its packets: an NFLOG group, with a prefix naming the chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogTarget {
    pub prefix: String,
    pub group: u16,
}

/// What a [`RuleKind::Lookup`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupKey {
    /// The address alone.
    Addr,
    /// Address, protocol and destination port. `ranges`: the set is a concatenated
    /// interval set (for which nft puts the protocol in network byte order), not a hash
    /// set of single points.
    Ports { ranges: bool },
}

impl LookupKey {
    pub fn has_ports(self) -> bool {
        matches!(self, LookupKey::Ports { .. })
    }
}

impl Rule {
    pub fn new(kind: RuleKind) -> Self {
        Rule {
            kind,
            comment: None,
        }
    }

    pub fn with_comment(kind: RuleKind, comment: impl Into<String>) -> Self {
        Rule {
            kind,
            comment: Some(comment.into()),
        }
    }
}

impl Ruleset {
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.sets[i])
    }

    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.maps[i])
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}
