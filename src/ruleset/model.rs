//! The ruleset model: the nftables objects nftpol programs, as plain data.
//!
//! ```text
//! policy graph --(ruleset::build)--> Ruleset --+--> script::render  (nft -f text)
//!                                              +--> netlink backend (one atomic batch)
//!                                              +--> diff (old, new) -> incremental batch
//! ```
//!
//! The model knows nothing of Kubernetes and nothing of how it is sent to the kernel. It
//! holds one table, which keeps its lists sorted by name itself (they change only through
//! [`Ruleset`]'s methods; elements are kept sorted by key), so two models built from the
//! same input are equal and render to identical bytes. Rules are a
//! closed set of shapes ([`Rule`]) rather than a general expression language: every
//! backend must encode each shape exactly as `nft` would, and a short list keeps that
//! promise checkable.

use std::net::{Ipv4Addr, Ipv6Addr};

pub use super::roles::SetRole;

/// The one table nftpol owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Always `inet`: one table sees IPv4 and IPv6.
    pub family: Family,
    pub name: String,
    pub comment: Option<String>,
    /// Sorted by name.
    sets: Vec<Set>,
    /// Sorted by name.
    maps: Vec<Map>,
    /// Base chains first (in [`Hook`] order), then regular chains sorted by name.
    chains: Vec<Chain>,
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
    /// What its elements mean and who owns it; the name is spelt from it.
    pub role: SetRole,
    pub key: Vec<KeyType>,
    pub interval: bool,
    pub comment: Option<String>,
    /// Sorted, disjoint; for a one-field interval set also never adjacent, except in a
    /// set with `counter` (whose elements are cut where each allow starts and ends).
    pub elements: Vec<Element>,
    /// `flags timeout; timeout <n>s`: a set whose elements are the controller's, not the
    /// model's (the flows it has cut, held for `n` seconds). The model declares it empty;
    /// what the kernel holds in it is never compared with the model. `Some(0)`: `flags
    /// timeout` with no default timeout (each element brings its own: learned addresses,
    /// the DNS proxy's liveness).
    pub timeout: Option<u32>,
    /// `counter`: every element carries its own packet and byte counter, which counts
    /// each packet whose lookup matched it (see `ruleset::traffic`, which tells which
    /// policy rules an element's counter stands for).
    pub counter: bool,
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
    /// Every packet as it arrives, before routing and NAT: the DNS steering chain (at
    /// priority mangle, -150, before kube-proxy's DNAT at dstnat).
    Prerouting,
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

impl Chain {
    /// The sets the chain's rules look up.
    pub fn lookups(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().flat_map(|r| r.kind.sets())
    }
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
    /// `ip saddr @<addrs> meta l4proto . th dport @<ports> <verdict>`: a peer and a port
    /// list looked up one after the other. It costs addresses + ports elements where the
    /// concatenated `address . protocol . port` set of [`RuleKind::Lookup`] costs their
    /// product; the builder takes it when that product would be large (see
    /// `ruleset::build`). `addrs` is a one-field interval set, `ports` an
    /// `inet_proto . inet_service` set: of single points (hash), or with `ranges` a
    /// concatenated interval set (for which nft puts the protocol in network byte order).
    LookupPair {
        family: IpFamily,
        addr: Addr,
        addrs: String,
        ports: String,
        ranges: bool,
        verdict: Verdict,
        /// As for [`RuleKind::Lookup`].
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
    /// `ip daddr @<open> ip daddr @<learned> <verdict>`, or with ports
    /// `ip daddr . meta l4proto . th dport @<open> ip daddr @<learned> <verdict>`: a
    /// `domainNames` rule (egress, Admin Accept) where it decides (`open`: its ports less
    /// what earlier Admin rules claim) for the addresses learned for it (`learned`, the
    /// DNS proxy's timeout set). See `ruleset::domain_rules`.
    LearnedLookup {
        family: IpFamily,
        key: LookupKey,
        open: String,
        learned: String,
        verdict: Verdict,
        /// As for [`RuleKind::Lookup`].
        log: Option<LogTarget>,
    },
    /// `meta l4proto tcp socket transparent 1 meta mark set meta mark or <mark> accept`:
    /// a TCP packet of a connection the DNS proxy's transparent socket holds stays with it.
    SteerTransparent { mark: u32 },
    /// `ip saddr @<pods> ip daddr @<servers> udp dport @<alive> tproxy ip to :<port> meta
    /// mark set meta mark or <mark> accept` (`tcp`, with `tcp flags & (syn | ack) == syn`:
    /// only a SYN goes to the listener; `ip6`): a DNS query of a pod with
    /// `domainNames` rules to a trusted server, to the DNS proxy, while `alive` holds the
    /// DNS port. The server is matched here, before kube-proxy's DNAT: what the pod
    /// addressed (the cluster DNS Service), not the endpoint DNAT picks.
    SteerDns {
        family: IpFamily,
        protocol: crate::policy::Protocol,
        pods: String,
        servers: String,
        alive: String,
        port: u16,
        mark: u32,
    },
    /// `meta mark & <mark> == <mark> ip saddr vmap @<map>` (`ip6`): a packet the DNS
    /// steering delivered to this node (its destination is not the node's) is judged by
    /// its pod's egress chain, as on the forward path.
    MarkedDispatch {
        family: IpFamily,
        mark: u32,
        map: String,
    },
    /// A bare verdict: `drop`.
    Verdict(Verdict),
    /// `counter <verdict>`: the default deny of a pod chain isolated by NetworkPolicy,
    /// counted (every packet that reaches it: a new connection's first packet and its
    /// retransmissions, and the rare invalid or untracked straggler). `drop`, or `goto`
    /// the audit chain that judges the deny again (see `audit_chain`), which ends in it.
    Counted(Verdict),
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

impl RuleKind {
    /// The sets this rule looks up (no allocation: walked for every chain of a batch).
    pub fn sets(&self) -> impl Iterator<Item = &str> {
        let (a, b, c) = match self {
            RuleKind::Lookup { set, .. } | RuleKind::HeldDrop { set, .. } => {
                (Some(set), None, None)
            }
            RuleKind::DropUnknown { cidrs, known, .. } => (Some(cidrs), Some(known), None),
            RuleKind::LookupPair { addrs, ports, .. } => (Some(addrs), Some(ports), None),
            RuleKind::LearnedLookup { open, learned, .. } => (Some(open), Some(learned), None),
            RuleKind::SteerDns {
                pods,
                servers,
                alive,
                ..
            } => (Some(pods), Some(servers), Some(alive)),
            _ => (None, None, None),
        };
        a.into_iter().chain(b).chain(c).map(String::as_str)
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

/// The order of the chain list: base chains by hook, then regular chains by name.
fn chain_order(c: &Chain) -> (bool, Option<Hook>, &str) {
    (c.base.is_none(), c.base.as_ref().map(|b| b.hook), &c.name)
}

/// Where an object named `name` is, or would go, in a list sorted by name.
fn position<T>(list: &[T], name: &str, name_of: impl Fn(&T) -> &str) -> Result<usize, usize> {
    list.binary_search_by(|o| name_of(o).cmp(name))
}

/// The table keeps its lists in order itself (every lookup here, and the views and
/// builds that read them, binary-search by name), so its lists are read through slices
/// and changed only through these methods; elements are changed in place by name.
impl Ruleset {
    /// An empty table.
    pub fn new(name: impl Into<String>, comment: Option<String>) -> Self {
        Ruleset {
            family: Family::Inet,
            name: name.into(),
            comment,
            sets: Vec::new(),
            maps: Vec::new(),
            chains: Vec::new(),
        }
    }

    /// A table holding these objects, in any order (one of each name).
    pub fn from_parts(
        name: impl Into<String>,
        comment: Option<String>,
        mut sets: Vec<Set>,
        mut maps: Vec<Map>,
        mut chains: Vec<Chain>,
    ) -> Self {
        sets.sort_by(|a, b| a.name.cmp(&b.name));
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        chains.sort_by(|a, b| chain_order(a).cmp(&chain_order(b)));
        Ruleset {
            sets,
            maps,
            chains,
            ..Ruleset::new(name, comment)
        }
    }

    pub fn sets(&self) -> &[Set] {
        &self.sets
    }

    pub fn maps(&self) -> &[Map] {
        &self.maps
    }

    /// Base chains first, then regular chains by name.
    pub fn chains(&self) -> &[Chain] {
        &self.chains
    }

    /// The base chains (the first of [`Ruleset::chains`]).
    pub fn base_chains(&self) -> &[Chain] {
        &self.chains[..self.base_count()]
    }

    /// The regular chains, by name.
    pub fn regular_chains(&self) -> &[Chain] {
        &self.chains[self.base_count()..]
    }

    fn base_count(&self) -> usize {
        self.chains.iter().take_while(|c| c.base.is_some()).count()
    }

    pub fn set(&self, name: &str) -> Option<&Set> {
        let i = position(&self.sets, name, |s| &s.name).ok()?;
        Some(&self.sets[i])
    }

    pub fn map(&self, name: &str) -> Option<&Map> {
        let i = position(&self.maps, name, |m| &m.name).ok()?;
        Some(&self.maps[i])
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        let regular = self.regular_chains();
        match position(regular, name, |c| &c.name) {
            Ok(i) => Some(&regular[i]),
            Err(_) => self.base_chains().iter().find(|c| c.name == name),
        }
    }

    /// The elements of set `name`, to change in place (kept sorted by key).
    pub fn set_elements_mut(&mut self, name: &str) -> Option<&mut Vec<Element>> {
        let i = position(&self.sets, name, |s| &s.name).ok()?;
        Some(&mut self.sets[i].elements)
    }

    /// The elements of map `name`, to change in place (kept sorted by key).
    pub fn map_elements_mut(&mut self, name: &str) -> Option<&mut Vec<MapElement>> {
        let i = position(&self.maps, name, |m| &m.name).ok()?;
        Some(&mut self.maps[i].elements)
    }

    /// Changes set `name` through `edit` (which may even rename it); false when there
    /// is no such set.
    pub fn edit_set(&mut self, name: &str, edit: impl FnOnce(&mut Set)) -> bool {
        let Some(mut set) = self.remove_set(name) else {
            return false;
        };
        edit(&mut set);
        self.put_set(set);
        true
    }

    /// [`Ruleset::edit_set`] for maps.
    pub fn edit_map(&mut self, name: &str, edit: impl FnOnce(&mut Map)) -> bool {
        let Some(mut map) = self.remove_map(name) else {
            return false;
        };
        edit(&mut map);
        self.put_map(map);
        true
    }

    /// [`Ruleset::edit_set`] for chains.
    pub fn edit_chain(&mut self, name: &str, edit: impl FnOnce(&mut Chain)) -> bool {
        let Some(mut chain) = self.remove_chain(name) else {
            return false;
        };
        edit(&mut chain);
        self.put_chain(chain);
        true
    }

    /// Adds `set`, or replaces the one of its name.
    pub fn put_set(&mut self, set: Set) {
        match position(&self.sets, &set.name, |s| &s.name) {
            Ok(i) => self.sets[i] = set,
            Err(i) => self.sets.insert(i, set),
        }
    }

    /// Adds `map`, or replaces the one of its name.
    pub fn put_map(&mut self, map: Map) {
        match position(&self.maps, &map.name, |m| &m.name) {
            Ok(i) => self.maps[i] = map,
            Err(i) => self.maps.insert(i, map),
        }
    }

    /// Adds `chain`, or replaces the one of its name, in its place in the order.
    pub fn put_chain(&mut self, chain: Chain) {
        self.remove_chain(&chain.name);
        let key = chain_order(&chain);
        let i = self
            .chains
            .binary_search_by(|c| chain_order(c).cmp(&key))
            .unwrap_or_else(|i| i);
        self.chains.insert(i, chain);
    }

    pub fn remove_set(&mut self, name: &str) -> Option<Set> {
        let i = position(&self.sets, name, |s| &s.name).ok()?;
        Some(self.sets.remove(i))
    }

    pub fn remove_map(&mut self, name: &str) -> Option<Map> {
        let i = position(&self.maps, name, |m| &m.name).ok()?;
        Some(self.maps.remove(i))
    }

    pub fn remove_chain(&mut self, name: &str) -> Option<Chain> {
        let base = self.base_count();
        let i = match position(&self.chains[base..], name, |c| &c.name) {
            Ok(i) => base + i,
            Err(_) => self.chains[..base].iter().position(|c| c.name == name)?,
        };
        Some(self.chains.remove(i))
    }

    /// Replaces every map (in any order).
    pub fn set_maps(&mut self, mut maps: Vec<Map>) {
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        self.maps = maps;
    }

    /// The elements of every map, by map name, to change in place (kept sorted by key).
    pub fn maps_elements_mut(&mut self) -> impl Iterator<Item = (&str, &mut Vec<MapElement>)> {
        self.maps
            .iter_mut()
            .map(|m| (m.name.as_str(), &mut m.elements))
    }

    pub fn retain_sets(&mut self, keep: impl FnMut(&Set) -> bool) {
        self.sets.retain(keep);
    }

    pub fn retain_maps(&mut self, keep: impl FnMut(&Map) -> bool) {
        self.maps.retain(keep);
    }

    pub fn retain_chains(&mut self, keep: impl FnMut(&Chain) -> bool) {
        self.chains.retain(keep);
    }

    /// Adds many sets at once (one sort, not one insertion each); a set of a name the
    /// table holds replaces it.
    pub fn merge_sets(&mut self, sets: Vec<Set>) {
        merge(&mut self.sets, sets, |a, b| a.name.cmp(&b.name));
    }

    /// [`Ruleset::merge_sets`] for maps.
    pub fn merge_maps(&mut self, maps: Vec<Map>) {
        merge(&mut self.maps, maps, |a, b| a.name.cmp(&b.name));
    }

    /// [`Ruleset::merge_sets`] for chains, each put in its place in the order.
    pub fn merge_chains(&mut self, chains: Vec<Chain>) {
        merge(&mut self.chains, chains, |a, b| {
            chain_order(a).cmp(&chain_order(b))
        });
    }
}

/// `list` (sorted by `order`, one of each) with `new` added; of two equal under `order`,
/// the new one stays.
fn merge<T>(list: &mut Vec<T>, new: Vec<T>, order: impl Fn(&T, &T) -> std::cmp::Ordering) {
    if new.is_empty() {
        return;
    }
    list.extend(new);
    // Stable: of equals, the old one comes first; reversed, the new one does, and it is
    // the one `dedup_by` keeps.
    list.sort_by(&order);
    list.reverse();
    list.dedup_by(|later, kept| order(later, kept).is_eq());
    list.reverse();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str) -> Set {
        Set {
            name: name.into(),
            role: SetRole::KnownPods,
            key: vec![KeyType::Ipv4Addr],
            interval: false,
            comment: None,
            elements: vec![],
            timeout: None,
            counter: false,
        }
    }

    fn chain(name: &str, hook: Option<Hook>) -> Chain {
        Chain {
            name: name.into(),
            base: hook.map(|hook| BaseChain {
                hook,
                priority: 0,
                policy: Verdict::Accept,
            }),
            comment: None,
            rules: vec![],
        }
    }

    fn names<T>(list: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
        list.iter().map(name).collect()
    }

    #[test]
    fn the_table_keeps_its_lists_in_order_whatever_the_changes() {
        let mut rs = Ruleset::from_parts(
            "t",
            None,
            vec![set("c"), set("a")],
            vec![],
            vec![
                chain("z", None),
                chain("input", Some(Hook::Input)),
                chain("b", None),
                chain("forward", Some(Hook::Forward)),
            ],
        );
        assert_eq!(names(rs.sets(), |s| &s.name), ["a", "c"]);
        assert_eq!(
            names(rs.chains(), |c| &c.name),
            ["forward", "input", "b", "z"]
        );
        rs.put_set(set("b"));
        rs.put_chain(chain("output", Some(Hook::Output)));
        rs.put_chain(chain("a", None));
        assert_eq!(names(rs.sets(), |s| &s.name), ["a", "b", "c"]);
        assert_eq!(
            names(rs.chains(), |c| &c.name),
            ["forward", "output", "input", "a", "b", "z"]
        );
        // A merge replaces what it names and adds the rest.
        let mut commented = set("c");
        commented.comment = Some("new".into());
        rs.merge_sets(vec![commented, set("0")]);
        assert_eq!(names(rs.sets(), |s| &s.name), ["0", "a", "b", "c"]);
        assert_eq!(rs.set("c").unwrap().comment.as_deref(), Some("new"));
        // An edit that renames moves the object to its new place.
        assert!(rs.edit_set("0", |s| s.name = "d".into()));
        assert!(rs.edit_chain("forward", |c| c.name = "y".into()));
        assert_eq!(names(rs.sets(), |s| &s.name), ["a", "b", "c", "d"]);
        assert_eq!(
            names(rs.chains(), |c| &c.name),
            ["y", "output", "input", "a", "b", "z"]
        );
        assert_eq!(
            rs.remove_chain("input").map(|c| c.name),
            Some("input".into())
        );
        assert_eq!(rs.remove_chain("b").map(|c| c.name), Some("b".into()));
        assert!(rs.remove_chain("b").is_none());
        assert_eq!(names(rs.base_chains(), |c| &c.name), ["y", "output"]);
        assert_eq!(names(rs.regular_chains(), |c| &c.name), ["a", "z"]);
        assert!(rs.chain("y").is_some() && rs.chain("z").is_some());
    }
}
