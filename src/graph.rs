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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use crate::addr::AddrSet;
use crate::index::{Index, PodInfo};
use crate::policy::{Direction, Peer as PeerSpec, PortMatch, Protocol};
use crate::selector::{Labels, Selector};

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
    Some(Vec<PortRange>),
}

impl Ports {
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Some(list) => list.iter().any(|r| r.contains(protocol, port)),
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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyGraph {
    pub peers: Vec<Peer>,
    /// Every pod that policy applies to (has an address, not finished, not hostNetwork)
    /// within the scope the graph was built for.
    pub pods: BTreeMap<(String, String), PodNode>,
}

/// Interns peers by address set, so equal sets are one node.
#[derive(Default)]
struct Peers {
    list: Vec<Peer>,
    by_addrs: HashMap<AddrSet, PeerId>,
}

impl Peers {
    fn intern(&mut self, addrs: AddrSet, description: impl FnOnce() -> String) -> PeerId {
        if let Some(&id) = self.by_addrs.get(&addrs) {
            return id;
        }
        let id = self.list.len();
        self.list.push(Peer {
            addrs: addrs.clone(),
            description: description(),
        });
        self.by_addrs.insert(addrs, id);
        id
    }
}

/// A peer as resolved against the cluster: its node and the pods in it (for named ports).
#[derive(Clone)]
struct Resolved {
    peer: PeerRef,
    /// Indices into the pod list of the builder.
    members: Vec<usize>,
}

struct Builder<'a> {
    namespaces: BTreeMap<String, Labels>,
    pods: Vec<&'a PodInfo>,
    by_ns: BTreeMap<&'a str, Vec<usize>>,
    peers: Peers,
    pod_peer_cache: HashMap<(Option<Selector>, String, Selector), Resolved>,
}

impl<'a> Builder<'a> {
    fn pods_in(&self, ns: &str, sel: &Selector) -> Vec<usize> {
        self.by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| sel.matches(&self.pods[i].labels))
            .collect()
    }

    fn resolve(&mut self, spec: &PeerSpec, policy_ns: &str) -> Resolved {
        match spec {
            PeerSpec::Pods { namespaces, pods } => {
                // The policy's namespace matters only when there is no namespaceSelector.
                let scope_ns = if namespaces.is_some() { String::new() } else { policy_ns.to_string() };
                let key = (namespaces.clone(), scope_ns, pods.clone());
                if let Some(r) = self.pod_peer_cache.get(&key) {
                    return r.clone();
                }
                let ns_names: Vec<String> = match namespaces {
                    None => vec![policy_ns.to_string()],
                    Some(sel) => self
                        .namespaces
                        .iter()
                        .filter(|(_, labels)| sel.matches(labels))
                        .map(|(n, _)| n.clone())
                        .collect(),
                };
                let mut members: Vec<usize> =
                    ns_names.iter().flat_map(|ns| self.pods_in(ns, pods)).collect();
                members.sort_unstable();
                let addrs = AddrSet::from_ips(members.iter().flat_map(|&i| self.pods[i].ips.iter().copied()));
                let id = self.peers.intern(addrs, || describe_peer(spec, policy_ns));
                let r = Resolved {
                    peer: PeerRef::Peer(id),
                    members,
                };
                self.pod_peer_cache.insert(key, r.clone());
                r
            }
            PeerSpec::Block { cidr, except } => {
                let addrs = AddrSet::from_block(cidr, except);
                let members = (0..self.pods.len())
                    .filter(|&i| self.pods[i].ips.iter().any(|ip| addrs.contains(*ip)))
                    .collect();
                let id = self.peers.intern(addrs, || describe_peer(spec, policy_ns));
                Resolved {
                    peer: PeerRef::Peer(id),
                    members,
                }
            }
        }
    }

    fn all_pods(&self) -> Resolved {
        Resolved {
            peer: PeerRef::Any,
            members: (0..self.pods.len()).collect(),
        }
    }
}

/// A peer of a policy as a person would say it: `pods {app=db} in namespaces {team=a}`.
pub fn describe_peer(spec: &PeerSpec, policy_ns: &str) -> String {
    match spec {
        PeerSpec::Pods { namespaces: None, pods } => format!("pods {{{pods}}} in namespace {policy_ns}"),
        PeerSpec::Pods { namespaces: Some(ns), pods } => format!("pods {{{pods}}} in namespaces {{{ns}}}"),
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

impl PolicyGraph {
    /// The graph for the whole cluster.
    pub fn build(index: &Index) -> PolicyGraph {
        Self::build_for(index, None)
    }

    /// The graph for the pods on `node` (every pod when `None`); peers always span the
    /// whole cluster.
    pub fn build_for(index: &Index, node: Option<&str>) -> PolicyGraph {
        let pods: Vec<&PodInfo> = index.pods().filter(|p| p.is_policy_pod()).collect();
        let mut by_ns: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, p) in pods.iter().enumerate() {
            by_ns.entry(p.namespace.as_str()).or_default().push(i);
        }
        let mut b = Builder {
            namespaces: index.namespaces(),
            pods,
            by_ns,
            peers: Peers::default(),
            pod_peer_cache: HashMap::new(),
        };
        let in_scope = |p: &PodInfo| node.is_none() || p.node.as_deref() == node;
        let mut out: BTreeMap<(String, String), PodNode> = b
            .pods
            .iter()
            .filter(|p| in_scope(p))
            .map(|p| {
                (
                    p.key(),
                    PodNode {
                        namespace: p.namespace.clone(),
                        name: p.name.clone(),
                        node: p.node.clone(),
                        ips: p.ips.clone(),
                        host_ips: p.host_ips.clone(),
                        ingress: None,
                        egress: None,
                    },
                )
            })
            .collect();

        for entry in index.policies() {
            let policy = &entry.policy;
            let selected: Vec<usize> = b
                .pods_in(&policy.namespace, &policy.pod_selector)
                .into_iter()
                .filter(|&i| in_scope(b.pods[i]))
                .collect();
            if selected.is_empty() {
                continue;
            }
            for dir in [Direction::Ingress, Direction::Egress] {
                let Some(rules) = policy.rules(dir) else {
                    continue;
                };
                // (pod index or None for every selected pod, allow)
                let mut allows: Vec<(Option<usize>, Allow)> = Vec::new();
                for (ri, rule) in rules.iter().enumerate() {
                    let peers: Vec<(Option<usize>, Resolved)> = match &rule.peers {
                        None => vec![(None, b.all_pods())],
                        Some(list) => list
                            .iter()
                            .enumerate()
                            .map(|(pi, spec)| (Some(pi), b.resolve(spec, &policy.namespace)))
                            .collect(),
                    };
                    let origin = |peer: Option<usize>, port_name: Option<String>| Origin {
                        policy: policy.id(),
                        direction: dir,
                        rule: ri,
                        peer,
                        port_name,
                    };
                    let Some(ports) = &rule.ports else {
                        for (pi, r) in &peers {
                            allows.push((None, Allow { peer: r.peer, ports: Ports::Any, origin: origin(*pi, None) }));
                        }
                        continue;
                    };
                    let mut numbered = Vec::new();
                    let mut named = Vec::new();
                    for p in ports {
                        match &p.port {
                            PortMatch::Any => numbered.push(PortRange { protocol: p.protocol, start: 0, end: u16::MAX }),
                            PortMatch::Range(s, e) => numbered.push(PortRange { protocol: p.protocol, start: *s, end: *e }),
                            PortMatch::Name(n) => named.push((p.protocol, n.clone())),
                        }
                    }
                    numbered.sort();
                    numbered.dedup();
                    if !numbered.is_empty() {
                        for (pi, r) in &peers {
                            allows.push((None, Allow { peer: r.peer, ports: Ports::Some(numbered.clone()), origin: origin(*pi, None) }));
                        }
                    }
                    for (protocol, name) in named {
                        match dir {
                            Direction::Ingress => {
                                // The destination is the selected pod itself.
                                for &s in &selected {
                                    let ports = lookup_name(b.pods[s], protocol, &name)
                                        .map(|n| vec![PortRange { protocol, start: n, end: n }])
                                        .unwrap_or_default();
                                    for (pi, r) in &peers {
                                        allows.push((Some(s), Allow { peer: r.peer, ports: Ports::Some(ports.clone()), origin: origin(*pi, Some(name.clone())) }));
                                    }
                                }
                            }
                            Direction::Egress => {
                                for (pi, r) in &peers {
                                    let mut by_port: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
                                    for &m in &r.members {
                                        if let Some(n) = lookup_name(b.pods[m], protocol, &name) {
                                            by_port.entry(n).or_default().extend(b.pods[m].ips.iter().copied());
                                        }
                                    }
                                    for (port, ips) in by_port {
                                        let base = match r.peer {
                                            PeerRef::Any => "every pod".to_string(),
                                            PeerRef::Peer(id) => b.peers.list[id].description.clone(),
                                        };
                                        let id = b.peers.intern(AddrSet::from_ips(ips), || {
                                            format!("{base}, those with {protocol} port {name:?} = {port}")
                                        });
                                        allows.push((None, Allow {
                                            peer: PeerRef::Peer(id),
                                            ports: Ports::Some(vec![PortRange { protocol, start: port, end: port }]),
                                            origin: origin(*pi, Some(name.clone())),
                                        }));
                                    }
                                }
                            }
                        }
                    }
                }
                for &s in &selected {
                    let node = out.get_mut(&b.pods[s].key()).expect("selected pods are in scope");
                    let iso = match dir {
                        Direction::Ingress => node.ingress.get_or_insert_with(Isolation::default),
                        Direction::Egress => node.egress.get_or_insert_with(Isolation::default),
                    };
                    iso.isolated_by.push(policy.id());
                    iso.allows.extend(
                        allows
                            .iter()
                            .filter(|(only, _)| only.is_none() || *only == Some(s))
                            .map(|(_, a)| a.clone()),
                    );
                }
            }
        }
        PolicyGraph {
            peers: b.peers.list,
            pods: out,
        }
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
                                Ports::Some(l) => l.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(","),
                            };
                            writeln!(f, "    allow {peer} {ports} <- {}", a.origin)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
