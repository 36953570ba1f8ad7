//! The policy graph: what is allowed, independent of nftables.
//!
//! ```text
//! PolicyGraph
//!   peers: [Peer { addrs: AddrSet, description }]     one node per distinct address set
//!   pods:  (ns, name) -> PodNode
//!            ingress / egress: None (not isolated)
//!                              Some { isolated_by: [policy], allows: [Allow] }
//!            Allow { peer: Any | Peer(id), ports: Any | [proto start-end], origin }
//! ```
//!
//! Every semantic rule of NetworkPolicy is applied here and nowhere else: selection,
//! isolation, peers (podSelector, namespaceSelector, both, ipBlock minus except), ports
//! (numbers, ranges, names resolved against the destination pod). Named ports leave the
//! graph as numbers: an ingress name is resolved against the selected pod itself; an
//! egress name is resolved per destination pod, which splits the peer into one node per
//! resolved port. The ruleset and `explain` both read this graph and nothing else.
//!
//! ClusterNetworkPolicies fill each pod's [`PodNode::tiers`] ([`tiers`]); their peers
//! are peer nodes like any other.

mod tiers;

pub use tiers::subject_selects;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use crate::addr::AddrSet;
use crate::index::{Index, PodInfo};
use crate::policy::{Direction, Peer as PeerSpec, PortMatch, Protocol};
use crate::selector::Labels;
use crate::tiers::PodTiers;

pub type PeerId = usize;

/// A set of addresses that some rule allows; shared by every rule that selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addrs: AddrSet,
    /// What selected it first, e.g. `pods {pod=a} in namespaces {ns=y}`.
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerRef {
    /// Every address (a rule without `from`/`to`).
    Any,
    Peer(PeerId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub protocol: Protocol,
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && (self.start..=self.end).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == 0 && self.end == u16::MAX {
            write!(f, "{}/*", self.protocol)
        } else if self.start == self.end {
            write!(f, "{}/{}", self.protocol, self.start)
        } else {
            write!(f, "{}/{}-{}", self.protocol, self.start, self.end)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ports {
    /// Every protocol and port (a rule without `ports`).
    Any,
    /// These only; may be empty when a named port resolved to nothing.
    Only(Vec<PortRange>),
}

impl Ports {
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Only(list) => list.iter().any(|r| r.contains(protocol, port)),
        }
    }
}

/// Where an allow entry comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// `namespace/name` of the policy.
    pub policy: String,
    pub direction: Direction,
    /// Index of the rule in `spec.ingress` or `spec.egress`.
    pub rule: usize,
    /// Index of the peer in `from`/`to`; `None` when the rule has none (every peer).
    pub peer: Option<usize>,
    /// The port name this entry was resolved from.
    pub port_name: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = match self.direction {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        write!(f, "{} {}[{}]", self.policy, self.direction, self.rule)?;
        if let Some(p) = self.peer {
            write!(f, ".{list}[{p}]")?;
        }
        if let Some(n) = &self.port_name {
            write!(f, " port {n:?}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub peer: PeerRef,
    pub ports: Ports,
    pub origin: Origin,
}

/// One direction of an isolated pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    /// `namespace/name` of every policy that isolates the pod in this direction, sorted.
    pub isolated_by: Vec<String>,
    pub allows: Vec<Allow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNode {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub ips: Vec<IpAddr>,
    pub host_ips: Vec<IpAddr>,
    /// `None`: not isolated for ingress, everything may connect.
    pub ingress: Option<Isolation>,
    pub egress: Option<Isolation>,
    /// What ClusterNetworkPolicies say about the pod; empty when none selects it.
    pub tiers: PodTiers,
}

impl PodNode {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn isolation(&self, dir: Direction) -> Option<&Isolation> {
        match dir {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PolicyGraph {
    pub peers: Vec<Peer>,
    /// Every pod that policy applies to (has an address, not finished, not hostNetwork)
    /// within the scope the graph was built for.
    pub pods: BTreeMap<(String, String), PodNode>,
    peer_ids: HashMap<AddrSet, PeerId>,
    /// Peers resolved against the cluster, kept across refreshes so that a one-pod change
    /// does not walk every namespace again for every policy of the pods it touches. Only
    /// pods and namespaces decide what a peer holds, and the caller reports each change of
    /// those ([`PolicyGraph::pod_changed`], [`PolicyGraph::namespace_changed`]) before it
    /// refreshes.
    resolved: HashMap<PeerKey, PeerId>,
    /// Egress named ports: (peer or None for every pod, protocol, name) -> [(peer, port)].
    named: HashMap<NamedKey, Vec<(PeerId, u16)>>,
}

/// Two graphs are equal when they hold the same peers and pods; caches do not count.
impl PartialEq for PolicyGraph {
    fn eq(&self, other: &Self) -> bool {
        self.peers == other.peers && self.pods == other.pods
    }
}

impl Eq for PolicyGraph {}

/// A policy's peer: its spec, and the policy's namespace when the spec is a podSelector
/// alone (empty otherwise: the rest does not depend on where the policy lives).
type PeerKey = (PeerSpec, String);
type NamedKey = (Option<PeerKey>, Protocol, String);

/// Whether `pod`, in a namespace labelled `ns_labels`, is (or may be) among the pods the
/// peer holds. `static_blocks`: an ipBlock's addresses never depend on pods.
fn may_hold(key: &PeerKey, pod: &PodInfo, ns_labels: &Labels, static_blocks: bool) -> bool {
    match &key.0 {
        PeerSpec::Block { cidr, except } => {
            !static_blocks && {
                let addrs = AddrSet::from_block(cidr, except);
                pod.ips.iter().any(|ip| addrs.contains(*ip))
            }
        }
        PeerSpec::Pods {
            namespaces: None,
            pods,
        } => key.1 == pod.namespace && pods.matches(&pod.labels),
        PeerSpec::Pods {
            namespaces: Some(sel),
            pods,
        } => sel.matches(ns_labels) && pods.matches(&pod.labels),
    }
}

/// What one build or refresh computes at most once: the namespaces and their labels.
struct Ctx<'a> {
    index: &'a Index,
    /// Filled on first use: most refreshes never resolve a namespaceSelector.
    namespaces: std::cell::OnceCell<Vec<(&'a str, std::borrow::Cow<'a, Labels>)>>,
    /// ClusterNetworkPolicy order and resolutions, for this refresh only.
    cnp: tiers::CnpCache<'a>,
}

impl<'a> Ctx<'a> {
    fn new(index: &'a Index) -> Self {
        Ctx {
            index,
            namespaces: std::cell::OnceCell::new(),
            cnp: tiers::CnpCache::default(),
        }
    }

    /// The policy pods a peer holds.
    fn members(&self, spec: Option<&PeerSpec>, policy_ns: &str) -> Vec<&'a PodInfo> {
        match spec {
            None => self.index.pods().filter(|p| p.is_policy_pod()).collect(),
            Some(PeerSpec::Pods { namespaces, pods }) => {
                let ns_names: Vec<&str> = match namespaces {
                    None => vec![policy_ns],
                    Some(sel) => self
                        .namespaces
                        .get_or_init(|| self.index.namespaces_borrowed().collect())
                        .iter()
                        .filter(|(_, labels)| sel.matches(labels))
                        .map(|(n, _)| *n)
                        .collect(),
                };
                let index = self.index;
                ns_names
                    .into_iter()
                    .flat_map(|ns| index.pods_in_namespace(ns))
                    .filter(|p| p.is_policy_pod() && pods.matches(&p.labels))
                    .collect()
            }
            Some(PeerSpec::Block { cidr, except }) => {
                let addrs = AddrSet::from_block(cidr, except);
                self.index
                    .pods()
                    .filter(|p| p.is_policy_pod() && p.ips.iter().any(|ip| addrs.contains(*ip)))
                    .collect()
            }
        }
    }
}

impl PolicyGraph {
    fn intern(&mut self, addrs: AddrSet, description: impl FnOnce() -> String) -> PeerId {
        if let Some(&id) = self.peer_ids.get(&addrs) {
            return id;
        }
        let id = self.peers.len();
        self.peers.push(Peer {
            addrs: addrs.clone(),
            description: description(),
        });
        self.peer_ids.insert(addrs, id);
        id
    }

    fn resolve(&mut self, ctx: &mut Ctx, spec: &PeerSpec, policy_ns: &str) -> PeerId {
        // The policy's namespace matters only for a podSelector without namespaceSelector.
        let scope = match spec {
            PeerSpec::Pods {
                namespaces: None, ..
            } => policy_ns.to_string(),
            _ => String::new(),
        };
        let key = (spec.clone(), scope);
        if let Some(&id) = self.resolved.get(&key) {
            return id;
        }
        let addrs = match spec {
            PeerSpec::Block { cidr, except } => AddrSet::from_block(cidr, except),
            PeerSpec::Pods { .. } => AddrSet::from_ips(
                ctx.members(Some(spec), policy_ns)
                    .iter()
                    .flat_map(|p| p.ips.iter().copied()),
            ),
        };
        let id = self.intern(addrs, || describe_peer(spec, policy_ns));
        self.resolved.insert(key, id);
        id
    }

    /// Egress to a named port: the peer's pods grouped by what the name means on each.
    fn split_named(
        &mut self,
        ctx: &mut Ctx,
        spec: Option<&PeerSpec>,
        policy_ns: &str,
        protocol: Protocol,
        name: &str,
    ) -> Vec<(PeerId, u16)> {
        let peer_key = spec.map(|s| {
            let scope = match s {
                PeerSpec::Pods {
                    namespaces: None, ..
                } => policy_ns.to_string(),
                _ => String::new(),
            };
            (s.clone(), scope)
        });
        let key = (peer_key, protocol, name.to_string());
        if let Some(v) = self.named.get(&key) {
            return v.clone();
        }
        // An ipBlock holds only the pod addresses inside it (a dual-stack pod may have one
        // address in the block and the other outside).
        let block = match spec {
            Some(PeerSpec::Block { cidr, except }) => Some(AddrSet::from_block(cidr, except)),
            _ => None,
        };
        let mut by_port: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
        for m in ctx.members(spec, policy_ns) {
            if let Some(n) = lookup_name(m, protocol, name) {
                let ips = m
                    .ips
                    .iter()
                    .copied()
                    .filter(|ip| block.as_ref().is_none_or(|b| b.contains(*ip)));
                by_port.entry(n).or_default().extend(ips);
            }
        }
        let base = spec
            .map(|s| describe_peer(s, policy_ns))
            .unwrap_or_else(|| "every pod".into());
        let out: Vec<(PeerId, u16)> = by_port
            .into_iter()
            .map(|(port, ips)| {
                let id = self.intern(AddrSet::from_ips(ips), || {
                    format!("{base}, those with {protocol} port {name:?} = {port}")
                });
                (id, port)
            })
            .collect();
        self.named.insert(key, out.clone());
        out
    }

    /// Everything the policies of its namespace say about one pod.
    fn compute_pod(&mut self, ctx: &mut Ctx, pod: &PodInfo) -> PodNode {
        let mut node = PodNode {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node: pod.node.clone(),
            ips: pod.ips.clone(),
            host_ips: pod.host_ips.clone(),
            ingress: None,
            egress: None,
            tiers: PodTiers::default(),
        };
        let index = ctx.index;
        for entry in index.policies_in_namespace(&pod.namespace) {
            let policy = &entry.policy;
            if !policy.pod_selector.matches(&pod.labels) {
                continue;
            }
            for dir in [Direction::Ingress, Direction::Egress] {
                let Some(rules) = policy.rules(dir) else {
                    continue;
                };
                let mut allows = Vec::new();
                for (ri, rule) in rules.iter().enumerate() {
                    let origin = |peer: Option<usize>, port_name: Option<String>| Origin {
                        policy: policy.id(),
                        direction: dir,
                        rule: ri,
                        peer,
                        port_name,
                    };
                    let specs: Vec<(Option<usize>, Option<&PeerSpec>)> = match &rule.peers {
                        None => vec![(None, None)],
                        Some(list) => list
                            .iter()
                            .enumerate()
                            .map(|(i, p)| (Some(i), Some(p)))
                            .collect(),
                    };
                    let peers: Vec<(Option<usize>, Option<&PeerSpec>, PeerRef)> = specs
                        .into_iter()
                        .map(|(i, spec)| {
                            let r = match spec {
                                None => PeerRef::Any,
                                Some(s) => PeerRef::Peer(self.resolve(ctx, s, &policy.namespace)),
                            };
                            (i, spec, r)
                        })
                        .collect();
                    let Some(ports) = &rule.ports else {
                        for (pi, _, r) in &peers {
                            allows.push(Allow {
                                peer: *r,
                                ports: Ports::Any,
                                origin: origin(*pi, None),
                            });
                        }
                        continue;
                    };
                    let mut numbered = Vec::new();
                    let mut named = Vec::new();
                    for p in ports {
                        match &p.port {
                            PortMatch::Any => numbered.push(PortRange {
                                protocol: p.protocol,
                                start: 0,
                                end: u16::MAX,
                            }),
                            PortMatch::Range(a, b) => numbered.push(PortRange {
                                protocol: p.protocol,
                                start: *a,
                                end: *b,
                            }),
                            PortMatch::Name(n) => named.push((p.protocol, n.clone())),
                        }
                    }
                    numbered.sort();
                    numbered.dedup();
                    if !numbered.is_empty() {
                        for (pi, _, r) in &peers {
                            allows.push(Allow {
                                peer: *r,
                                ports: Ports::Only(numbered.clone()),
                                origin: origin(*pi, None),
                            });
                        }
                    }
                    for (protocol, name) in named {
                        for (pi, spec, r) in &peers {
                            match dir {
                                // The destination is the selected pod itself.
                                Direction::Ingress => {
                                    let ports = lookup_name(pod, protocol, &name)
                                        .map(|n| {
                                            vec![PortRange {
                                                protocol,
                                                start: n,
                                                end: n,
                                            }]
                                        })
                                        .unwrap_or_default();
                                    allows.push(Allow {
                                        peer: *r,
                                        ports: Ports::Only(ports),
                                        origin: origin(*pi, Some(name.clone())),
                                    });
                                }
                                Direction::Egress => {
                                    for (id, port) in self.split_named(
                                        ctx,
                                        *spec,
                                        &policy.namespace,
                                        protocol,
                                        &name,
                                    ) {
                                        allows.push(Allow {
                                            peer: PeerRef::Peer(id),
                                            ports: Ports::Only(vec![PortRange {
                                                protocol,
                                                start: port,
                                                end: port,
                                            }]),
                                            origin: origin(*pi, Some(name.clone())),
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
                let iso = match dir {
                    Direction::Ingress => node.ingress.get_or_insert_with(Isolation::default),
                    Direction::Egress => node.egress.get_or_insert_with(Isolation::default),
                };
                iso.isolated_by.push(policy.id());
                iso.allows.extend(allows);
            }
        }
        node.tiers = self.compute_tiers(ctx, pod);
        node
    }

    /// The graph for the whole cluster.
    pub fn build(index: &Index) -> PolicyGraph {
        Self::build_for(index, None)
    }

    /// The graph for the pods on `node` (every pod when `None`); peers always span the
    /// whole cluster.
    pub fn build_for(index: &Index, node: Option<&str>) -> PolicyGraph {
        let mut graph = PolicyGraph::default();
        let keys: Vec<(String, String)> = index
            .pods()
            .filter(|p| p.is_policy_pod() && (node.is_none() || p.node.as_deref() == node))
            .map(|p| p.key())
            .collect();
        graph.refresh(index, node, keys);
        graph
    }

    /// Recomputes the given pods from the index (adding, replacing or removing each), and
    /// leaves every other pod as it was. Crate-private, like the cache hooks below: only
    /// `NodeState` keeps a graph in step, and calls them in the order they need. The caller names every pod a change can affect
    /// (see `impact`); a graph refreshed that way equals a fresh build for what the
    /// ruleset reads.
    pub(crate) fn refresh(
        &mut self,
        index: &Index,
        node: Option<&str>,
        pods: impl IntoIterator<Item = (String, String)>,
    ) {
        let mut ctx = Ctx::new(index);
        for key in pods {
            match index.pod(&key.0, &key.1) {
                Some(p) if p.is_policy_pod() && (node.is_none() || p.node.as_deref() == node) => {
                    let n = self.compute_pod(&mut ctx, p);
                    self.pods.insert(key, n);
                }
                _ => {
                    self.pods.remove(&key);
                }
            }
        }
    }

    /// Brings the cached peers up to date with a change of one pod, from `old` to `new`
    /// (either may be absent; the index already holds `new`). A peer that gains the pod
    /// gains its addresses and one that loses it loses them, in place; only when another
    /// pod claims an address it gave up (an address being reused may have two owners for
    /// a while) is the peer resolved again from scratch. Egress named-port splits that
    /// may hold the pod are forgotten (they depend on its ports as well). Call it before
    /// refreshing.
    pub(crate) fn pod_changed(
        &mut self,
        index: &Index,
        old: Option<&PodInfo>,
        new: Option<&PodInfo>,
    ) {
        let Some(namespace) = old.or(new).map(|p| p.namespace.as_str()) else {
            return;
        };
        if self.resolved.is_empty() && self.named.is_empty() {
            return;
        }
        let ns_labels = index.effective_labels(namespace);
        let holds = |key: Option<&PeerKey>, pod: Option<&PodInfo>, static_blocks: bool| {
            pod.is_some_and(|p| {
                p.is_policy_pod() && key.is_none_or(|k| may_hold(k, p, &ns_labels, static_blocks))
            })
        };
        let same_ips = old.map(|p| &p.ips) == new.map(|p| &p.ips);
        let same_pod = old == new;

        // (key, Some(new addresses)) to update in place, (key, None) to forget.
        let mut updates: Vec<(PeerKey, Option<AddrSet>, PeerId)> = Vec::new();
        for (key, &id) in &self.resolved {
            let (was, is) = (holds(Some(key), old, true), holds(Some(key), new, true));
            if was == is && (!was || same_ips) {
                continue;
            }
            let kept: &[IpAddr] = match new {
                Some(n) if is => &n.ips,
                _ => &[],
            };
            let gone: Vec<IpAddr> = old
                .filter(|_| was)
                .map(|o| {
                    o.ips
                        .iter()
                        .copied()
                        .filter(|ip| !kept.contains(ip))
                        .collect()
                })
                .unwrap_or_default();
            if gone.iter().any(|ip| index.claims(*ip) > 0) {
                // Another pod claims an address this one gave up; whether it belongs to
                // this peer takes a look at that pod: resolve the peer again.
                updates.push((key.clone(), None, id));
                continue;
            }
            let mut addrs = self.peers[id].addrs.subtract(&AddrSet::from_ips(gone));
            addrs = addrs.union(&AddrSet::from_ips(kept.iter().copied()));
            updates.push((key.clone(), Some(addrs), id));
        }
        for (key, addrs, id) in updates {
            match addrs {
                Some(addrs) => {
                    let description = self.peers[id].description.clone();
                    let new_id = self.intern(addrs, || description);
                    self.resolved.insert(key, new_id);
                }
                None => {
                    self.resolved.remove(&key);
                }
            }
        }
        self.named.retain(|(key, _, _), _| {
            let (was, is) = (
                holds(key.as_ref(), old, false),
                holds(key.as_ref(), new, false),
            );
            was == is && (!was || same_pod)
        });
    }

    /// Forgets the cached peers whose namespaceSelector selects namespace `name` with its
    /// labels as they were (`old`) but not as they are (`new`), or the other way round; a
    /// namespace not given counts with only its name label.
    pub(crate) fn namespace_changed(
        &mut self,
        name: &str,
        old: Option<&Labels>,
        new: Option<&Labels>,
    ) {
        let implied = crate::index::implied_labels(name);
        let (old, new) = (old.unwrap_or(&implied), new.unwrap_or(&implied));
        let changes = |key: &PeerKey| match &key.0 {
            PeerSpec::Pods {
                namespaces: Some(sel),
                ..
            } => sel.matches(old) != sel.matches(new),
            _ => false,
        };
        self.resolved.retain(|key, _| !changes(key));
        self.named
            .retain(|(key, _, _), _| !key.as_ref().is_some_and(changes));
    }

    /// Peers no pod refers to any more are kept until [`PolicyGraph::compact`].
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Drops peers no pod refers to and renumbers the rest. Refreshes intern a new peer
    /// whenever a peer's addresses change, so a long-lived graph needs this now and then.
    pub fn compact(&mut self) {
        let mut remap: Vec<Option<PeerId>> = vec![None; self.peers.len()];
        let mut peers = Vec::new();
        for pod in self.pods.values_mut() {
            for iso in [pod.ingress.as_mut(), pod.egress.as_mut()]
                .into_iter()
                .flatten()
            {
                for a in &mut iso.allows {
                    if let PeerRef::Peer(id) = a.peer {
                        let new = *remap[id].get_or_insert_with(|| {
                            peers.push(self.peers[id].clone());
                            peers.len() - 1
                        });
                        a.peer = PeerRef::Peer(new);
                    }
                }
            }
            for peer in tiers::tier_peers_mut(pod) {
                if let PeerRef::Peer(id) = *peer {
                    let new = *remap[id].get_or_insert_with(|| {
                        peers.push(self.peers[id].clone());
                        peers.len() - 1
                    });
                    *peer = PeerRef::Peer(new);
                }
            }
        }
        // Cached resolutions hold old ids; they are recomputed on demand.
        self.resolved.clear();
        self.named.clear();
        self.peer_ids = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.addrs.clone(), i))
            .collect();
        self.peers = peers;
    }
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodNode> {
        self.pods.get(&(namespace.to_string(), name.to_string()))
    }

    /// The pod that owns `ip`, if any.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&PodNode> {
        self.pods.values().find(|p| p.ips.contains(&ip))
    }

    pub fn peer_contains(&self, peer: PeerRef, ip: IpAddr) -> bool {
        match peer {
            PeerRef::Any => true,
            PeerRef::Peer(id) => self.peers[id].addrs.contains(ip),
        }
    }

    pub fn peer_description(&self, peer: PeerRef) -> &str {
        match peer {
            PeerRef::Any => "every address",
            PeerRef::Peer(id) => &self.peers[id].description,
        }
    }
}

impl fmt::Display for PolicyGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.peers.iter().enumerate() {
            writeln!(f, "peer {i}: {}", p.description)?;
        }
        for pod in self.pods.values() {
            writeln!(f, "pod {}:", pod.id())?;
            for dir in [Direction::Ingress, Direction::Egress] {
                match pod.isolation(dir) {
                    None => writeln!(f, "  {dir}: not isolated")?,
                    Some(iso) => {
                        writeln!(f, "  {dir}: isolated by {}", iso.isolated_by.join(", "))?;
                        for a in &iso.allows {
                            let peer = match a.peer {
                                PeerRef::Any => "any".to_string(),
                                PeerRef::Peer(id) => format!("peer {id}"),
                            };
                            let ports = match &a.ports {
                                Ports::Any => "any port".to_string(),
                                Ports::Only(l) => l
                                    .iter()
                                    .map(|r| r.to_string())
                                    .collect::<Vec<_>>()
                                    .join(","),
                            };
                            writeln!(f, "    allow {peer} {ports} <- {}", a.origin)?;
                        }
                    }
                }
            }
            tiers::write_tiers(f, &pod.tiers)?;
        }
        Ok(())
    }
}

/// A peer of a policy as a person would say it: `pods {app=db} in namespaces {team=a}`.
pub fn describe_peer(spec: &PeerSpec, policy_ns: &str) -> String {
    match spec {
        PeerSpec::Pods {
            namespaces: None,
            pods,
        } => format!("pods {{{pods}}} in namespace {policy_ns}"),
        PeerSpec::Pods {
            namespaces: Some(ns),
            pods,
        } => format!("pods {{{pods}}} in namespaces {{{ns}}}"),
        PeerSpec::Block { cidr, except } if except.is_empty() => format!("ipBlock {cidr}"),
        PeerSpec::Block { cidr, except } => {
            let ex: Vec<String> = except.iter().map(|e| e.to_string()).collect();
            format!("ipBlock {cidr} except {}", ex.join(", "))
        }
    }
}

fn lookup_name(pod: &PodInfo, protocol: Protocol, name: &str) -> Option<u16> {
    pod.ports
        .iter()
        .find(|p| p.name == name && p.protocol == protocol)
        .map(|p| p.port)
}
