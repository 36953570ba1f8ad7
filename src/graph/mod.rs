//! The policy graph: what is allowed, independent of nftables.
//!
//! ```text
//! PolicyGraph
//!   peers: [PeerNode { addrs: AddrSet, description }] one node per distinct address set
//!   pods:  (ns, name) -> PodNode
//!            ingress / egress: None (not isolated)
//!                              Some { isolated_by: [policy], allows: [Allow] }
//!            Allow { peer: Any | Peer(id), ports: Any | [proto start-end], origin }
//! ```
//!
//! The graph is plain data (this file: its types, building it, reading it). Where the
//! rest lives:
//! - `compute.rs`: every semantic rule of NetworkPolicy (selection, isolation, peers,
//!   ports, named ports), applied there and nowhere else. Named ports leave the graph as
//!   numbers: an ingress name is resolved against the selected pod itself; an egress name
//!   per destination pod, which splits the peer into one node per resolved port.
//! - `tiers.rs`: ClusterNetworkPolicies, which fill each pod's [`PodNode::tiers`]; their
//!   peers are peer nodes like any other.
//! - `peers.rs`: the `PeerCache` that a long-lived graph's owner keeps across refreshes
//!   (the graph itself holds no cache).
//! - `display.rs`: how it prints.
//!
//! The ruleset and `explain` both read this graph and nothing else.

mod cnp_rules;
mod compute;
mod ctx;
mod display;
pub mod domains;
mod peers;
pub mod tiers;

pub use cnp_rules::subject_selects;
pub use display::{describe_peer, WithLearned};
pub(crate) use peers::PeerCache;

pub use crate::index::PodKey;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::addr::AddrSet;
use crate::index::Index;
use crate::policy::{Direction, Protocol};
use tiers::PodTiers;

pub type PeerId = usize;

/// A set of addresses that some rule allows; shared by every rule that selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNode {
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
    /// One port of one protocol.
    pub fn single(protocol: Protocol, port: u16) -> Self {
        PortRange {
            protocol,
            start: port,
            end: port,
        }
    }

    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && (self.start..=self.end).contains(&port)
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
    /// The pod as it would be with the audited policies (`nftpol.io/mode: audit`)
    /// enforced too; `None` when no audited policy changes it in either direction.
    /// Never itself has `audited`.
    pub audited: Option<Box<PodNode>>,
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

    /// Whether `other` (the same pod, another view) can judge a connection otherwise in
    /// `dir`: isolation, allows or tier rules differ (one more isolating policy that
    /// allows nothing new, on a pod isolated already, changes no verdict).
    pub fn differs(&self, other: &PodNode, dir: Direction) -> bool {
        fn allows(p: &PodNode, dir: Direction) -> Option<&Vec<Allow>> {
            p.isolation(dir).map(|iso| &iso.allows)
        }
        allows(self, dir) != allows(other, dir) || self.tiers.side(dir) != other.tiers.side(dir)
    }

    /// The audited view of the pod in `dir`, when audited policies change that direction.
    pub fn audited_in(&self, dir: Direction) -> Option<&PodNode> {
        self.audited.as_deref().filter(|a| self.differs(a, dir))
    }
}

/// The graph: peers (address sets, shared by every rule that names the same addresses)
/// and the pods policy applies to. Plain data: two graphs are equal when they hold the
/// same peers and pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyGraph {
    pub peers: Vec<PeerNode>,
    /// Every pod that policy applies to (has an address, not finished, not hostNetwork)
    /// within the scope the graph was built for.
    pub pods: BTreeMap<PodKey, PodNode>,
    /// Which peer holds which addresses: `peers` read backwards.
    peer_ids: HashMap<AddrSet, PeerId>,
}

impl PolicyGraph {
    /// The graph for the whole cluster.
    pub fn build(index: &Index) -> PolicyGraph {
        Self::build_for(index, None)
    }

    /// The graph for the pods on `node` (every pod when `None`); peers always span the
    /// whole cluster.
    pub fn build_for(index: &Index, node: Option<&str>) -> PolicyGraph {
        Self::build_keeping(index, node, &mut PeerCache::default())
    }

    /// [`PolicyGraph::build_for`], leaving what it resolved in `peers` (which must be
    /// empty) for later refreshes.
    pub(crate) fn build_keeping(
        index: &Index,
        node: Option<&str>,
        peers: &mut PeerCache,
    ) -> PolicyGraph {
        let mut graph = PolicyGraph::default();
        let keys: Vec<PodKey> = index
            .pods()
            .filter(|p| p.is_policy_pod() && (node.is_none() || p.node.as_deref() == node))
            .map(|p| p.key())
            .collect();
        graph.refresh(peers, index, node, keys);
        graph
    }

    /// Recomputes the given pods from the index (adding, replacing or removing each), and
    /// leaves every other pod as it was. `peers` must have been told of every change of
    /// the index since it was last used with this graph (`NodeState` does that; a fresh
    /// cache is always right). The caller names every pod a change can affect (see
    /// `impact`); a graph refreshed that way equals a fresh build for what the ruleset
    /// reads.
    pub(crate) fn refresh(
        &mut self,
        peers: &mut PeerCache,
        index: &Index,
        node: Option<&str>,
        pods: impl IntoIterator<Item = PodKey>,
    ) {
        let mut ctx = ctx::Ctx::new(index, peers);
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

    /// The peer holding `addrs`, added if no peer does.
    fn intern(&mut self, addrs: AddrSet, description: impl FnOnce() -> String) -> PeerId {
        if let Some(&id) = self.peer_ids.get(&addrs) {
            return id;
        }
        let id = self.peers.len();
        self.peers.push(PeerNode {
            addrs: addrs.clone(),
            description: description(),
        });
        self.peer_ids.insert(addrs, id);
        id
    }

    /// Peers no pod refers to any more are kept until [`PolicyGraph::compact`].
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Drops peers no pod refers to and renumbers the rest; returns the renumbering
    /// (`[old id] = new id`, `None`: dropped). Refreshes intern a new peer whenever a
    /// peer's addresses change, so a long-lived graph needs this now and then.
    pub fn compact(&mut self) -> Vec<Option<PeerId>> {
        let mut renumbering: Vec<Option<PeerId>> = vec![None; self.peers.len()];
        let mut peers = Vec::new();
        let mut renumber = |peer: &mut PeerRef| {
            if let PeerRef::Peer(id) = *peer {
                let new = *renumbering[id].get_or_insert_with(|| {
                    peers.push(self.peers[id].clone());
                    peers.len() - 1
                });
                *peer = PeerRef::Peer(new);
            }
        };
        for pod in self.pods.values_mut() {
            let mut renumber_view = |view: &mut PodNode| {
                for iso in [view.ingress.as_mut(), view.egress.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    iso.allows.iter_mut().for_each(|a| renumber(&mut a.peer));
                }
                cnp_rules::tier_peers_mut(view).for_each(&mut renumber);
            };
            renumber_view(pod);
            if let Some(audited) = pod.audited.as_deref_mut() {
                renumber_view(audited);
            }
        }
        self.peer_ids = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.addrs.clone(), i))
            .collect();
        self.peers = peers;
        renumbering
    }

    /// How many set elements each policy's allows come to in this graph, at most: for
    /// every distinct allow (origin and resolved ports) of its pods, its peer's address
    /// ranges plus its port ranges, which is what the allow costs looked up as a pair
    /// (`ruleset::np_elements`). The measure behind `ruleset::Options::max_elements`.
    pub fn policy_elements(&self) -> BTreeMap<&str, usize> {
        let mut seen: std::collections::HashSet<(&Origin, &Ports)> = Default::default();
        let mut out: BTreeMap<&str, usize> = BTreeMap::new();
        // The audited view's allows are programmed too (in the pod's audit chains).
        let allows = self
            .pods
            .values()
            .flat_map(|p| std::iter::once(p).chain(p.audited.as_deref()))
            .flat_map(|p| p.ingress.iter().chain(&p.egress))
            .flat_map(|iso| &iso.allows);
        for a in allows {
            if !seen.insert((&a.origin, &a.ports)) {
                continue;
            }
            let addrs = match a.peer {
                PeerRef::Any => 1,
                PeerRef::Peer(id) => {
                    let s = &self.peers[id].addrs;
                    s.v4.ranges().len() + s.v6.ranges().len()
                }
            };
            let ports = match &a.ports {
                Ports::Any => 0,
                Ports::Only(list) => list.len(),
            };
            *out.entry(a.origin.policy.as_str()).or_default() += addrs + ports;
        }
        out
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
