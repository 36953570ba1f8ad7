//! The endpoint space two states are compared over, cut into equivalence classes.
//!
//! ```text
//! one address family:
//!   atoms:     the address space cut at every boundary any peer of either graph draws,
//!              every pod address and every node address (so those are single atoms)
//!   behaviour: per state and direction, pods whose rules, tiers and node addresses are
//!              equal (one class: one function of the other end's address and port)
//!   pair:      (behaviour before, behaviour after) of an atom's owner, per direction
//!   class:     atoms with the same egress pair, ingress pair, membership in every peer
//!              of both graphs, and node address: any two members meet every other
//!              endpoint with the same verdicts, before and after
//! ```

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use crate::addr::{ip_value, v4, v6, Intervals};
use crate::graph::tiers::TierSide;
use crate::graph::{PeerRef, PodNode, PolicyGraph, Ports};
use crate::index::Index;
use crate::policy::{Direction, Protocol};

/// One state (before or after): its index, whole-cluster graph and policy pods.
pub(super) struct State<'a> {
    pub index: &'a Index,
    pub graph: &'a PolicyGraph,
    pub pods: Vec<&'a PodNode>,
}

impl<'a> State<'a> {
    pub fn new(index: &'a Index, graph: &'a PolicyGraph) -> Self {
        State {
            index,
            graph,
            pods: graph.pods.values().collect(),
        }
    }

    pub fn pod(&self, i: u32) -> &PodNode {
        self.pods[i as usize]
    }
}

/// Pods of one state grouped by what one direction of them does.
#[derive(Default)]
pub(super) struct Behaviours {
    /// Up to two member pods of each behaviour (two: one whose address is not the
    /// other end's, for a pod never judges traffic to itself).
    pub reps: Vec<Vec<u32>>,
    /// Behaviour of each pod.
    pub of_pod: Vec<u32>,
    /// Each behaviour's class when node addresses are left out (the same rules on
    /// another node): what a person calls "treated alike", for grouping.
    pub loose: Vec<u32>,
}

fn hash_ports(h: &mut impl Hasher, p: &Ports) {
    p.hash(h);
}

fn behaviour_hash(pod: &PodNode, dir: Direction, with_node: bool) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match pod.isolation(dir) {
        None => 0u8.hash(&mut h),
        Some(iso) => {
            1u8.hash(&mut h);
            for a in &iso.allows {
                a.peer.hash(&mut h);
                hash_ports(&mut h, &a.ports);
                a.origin.hash(&mut h);
            }
            if with_node {
                pod.host_ips.hash(&mut h);
            }
        }
    }
    let side = pod.tiers.side(dir);
    for r in side.admin.rules.iter().chain(&side.baseline.rules) {
        r.action.hash(&mut h);
        r.peer.hash(&mut h);
        hash_ports(&mut h, &r.ports);
        r.origin.hash(&mut h);
    }
    h.finish()
}

fn same_behaviour(a: &PodNode, b: &PodNode, dir: Direction, with_node: bool) -> bool {
    a.isolation(dir) == b.isolation(dir)
        && a.tiers.side(dir) == b.tiers.side(dir)
        && (!with_node || a.isolation(dir).is_none() || a.host_ips == b.host_ips)
}

impl Behaviours {
    pub fn of(state: &State, dir: Direction) -> Behaviours {
        let mut out = Behaviours::default();
        let mut buckets: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, pod) in state.pods.iter().enumerate() {
            let bucket = buckets.entry(behaviour_hash(pod, dir, true)).or_default();
            let found = bucket
                .iter()
                .copied()
                .find(|&b| same_behaviour(state.pod(out.reps[b as usize][0]), pod, dir, true));
            let id = match found {
                Some(b) => b,
                None => {
                    out.reps.push(Vec::new());
                    let b = (out.reps.len() - 1) as u32;
                    bucket.push(b);
                    b
                }
            };
            let reps = &mut out.reps[id as usize];
            if reps.len() < 2 {
                reps.push(i as u32);
            }
            out.of_pod.push(id);
        }
        let mut loose: HashMap<u64, Vec<(u32, u32)>> = HashMap::new();
        for b in 0..out.reps.len() {
            let pod = state.pod(out.reps[b][0]);
            let bucket = loose.entry(behaviour_hash(pod, dir, false)).or_default();
            let found = bucket
                .iter()
                .find(|(first, _)| {
                    same_behaviour(state.pod(out.reps[*first as usize][0]), pod, dir, false)
                })
                .map(|&(_, id)| id);
            let id = found.unwrap_or(b as u32);
            if found.is_none() {
                bucket.push((b as u32, id));
            }
            out.loose.push(id);
        }
        out
    }
}

/// Whether one direction of a pod allows everything (no isolation, no tier).
fn allows_all(pod: &PodNode, dir: Direction) -> bool {
    pod.isolation(dir).is_none() && pod.tiers.side(dir).is_empty()
}

fn peer_set(g: &PolicyGraph, p: PeerRef) -> Option<&crate::addr::AddrSet> {
    match p {
        PeerRef::Any => None,
        PeerRef::Peer(id) => Some(&g.peers[id].addrs),
    }
}

fn same_tiers(gb: &PolicyGraph, b: &TierSide, ga: &PolicyGraph, a: &TierSide) -> bool {
    let same = |x: &crate::graph::tiers::TierRules, y: &crate::graph::tiers::TierRules| {
        x.rules.len() == y.rules.len()
            && x.rules.iter().zip(&y.rules).all(|(r, s)| {
                r.action == s.action
                    && r.ports == s.ports
                    && r.origin == s.origin
                    && peer_set(gb, r.peer) == peer_set(ga, s.peer)
            })
    };
    same(&b.admin, &a.admin) && same(&b.baseline, &a.baseline)
}

/// Whether direction `dir` of `b` (in graph `gb`) and of `a` (in `ga`) may judge some
/// connection differently. `false` only when both are the same function of the other
/// end's address and port: the same rules over the same addresses.
pub(super) fn may_differ(
    gb: &PolicyGraph,
    b: Option<&PodNode>,
    ga: &PolicyGraph,
    a: Option<&PodNode>,
    dir: Direction,
) -> bool {
    match (b, a) {
        (None, None) => false,
        (Some(p), None) | (None, Some(p)) => !allows_all(p, dir),
        (Some(b), Some(a)) => {
            let same_np = match (b.isolation(dir), a.isolation(dir)) {
                (None, None) => true,
                (Some(x), Some(y)) => {
                    b.host_ips == a.host_ips
                        && x.allows.len() == y.allows.len()
                        && x.allows.iter().zip(&y.allows).all(|(p, q)| {
                            p.ports == q.ports
                                && p.origin == q.origin
                                && peer_set(gb, p.peer) == peer_set(ga, q.peer)
                        })
                }
                _ => false,
            };
            !(same_np && same_tiers(gb, b.tiers.side(dir), ga, a.tiers.side(dir)))
        }
    }
}

/// The peers a direction of a pod looks its other end up in, and the ports it cuts.
pub(super) fn rules_of(pod: &PodNode, dir: Direction) -> (Vec<PeerRef>, Vec<&Ports>) {
    let mut peers = Vec::new();
    let mut ports = Vec::new();
    if let Some(iso) = pod.isolation(dir) {
        for a in &iso.allows {
            peers.push(a.peer);
            ports.push(&a.ports);
        }
    }
    let side = pod.tiers.side(dir);
    for r in side.admin.rules.iter().chain(&side.baseline.rules) {
        peers.push(r.peer);
        ports.push(&r.ports);
    }
    (peers, ports)
}

/// Port cut points per protocol (index of [`Protocol::ALL`]): each piece starts at one
/// and runs to the next (the last to 65535).
pub(super) type Starts = [Vec<u16>; 3];

pub(super) fn proto_index(p: Protocol) -> usize {
    Protocol::ALL.iter().position(|&q| q == p).unwrap_or(0)
}

pub(super) fn starts_of<'p>(ports: impl IntoIterator<Item = &'p Ports>) -> Starts {
    let mut cuts: [BTreeSet<u32>; 3] = Default::default();
    for c in cuts.iter_mut() {
        c.insert(1);
    }
    for p in ports {
        if let Ports::Only(list) = p {
            for r in list {
                let c = &mut cuts[proto_index(r.protocol)];
                c.insert(r.start.max(1) as u32);
                c.insert(r.end as u32 + 1);
            }
        }
    }
    cuts.map(|c| {
        c.into_iter()
            .filter(|&v| v <= 65535)
            .map(|v| v as u16)
            .collect()
    })
}

/// The pieces `[lo, hi]` the cut points give.
pub(super) fn pieces(starts: &[u16]) -> impl Iterator<Item = (u16, u16)> + '_ {
    starts.iter().enumerate().map(move |(i, &lo)| {
        let hi = starts.get(i + 1).map_or(65535, |&n| n - 1);
        (lo, hi)
    })
}

/// One direction's (behaviour before, behaviour after) of an atom's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Pair {
    pub before: Option<u32>,
    pub after: Option<u32>,
}

/// The atoms of one address family and their classes.
pub(super) struct Space {
    pub is6: bool,
    /// Atom `i` is `[starts[i], starts[i + 1] - 1]` (the last runs to the family's end).
    pub starts: Vec<u128>,
    /// The policy pod holding the atom's address, per state (`[before, after]`).
    pub owner: [Vec<Option<u32>>; 2],
    /// The node holding the atom's address, when it is a node's.
    pub node: Vec<Option<String>>,
    /// Class of each atom.
    pub class_of: Vec<u32>,
    pub classes: Vec<Class>,
}

pub(super) struct Class {
    pub egress: u32,
    pub ingress: u32,
    pub atoms: Vec<u32>,
}

/// Interned pairs of one direction, with what the sweep needs of each.
#[derive(Default)]
pub(super) struct Pairs {
    pub list: Vec<Pair>,
    ids: HashMap<Pair, u32>,
}

impl Pairs {
    pub fn intern(&mut self, p: Pair) -> u32 {
        *self.ids.entry(p).or_insert_with(|| {
            self.list.push(p);
            (self.list.len() - 1) as u32
        })
    }
}

fn family_max(is6: bool) -> u128 {
    if is6 {
        u128::MAX
    } else {
        u32::MAX as u128
    }
}

fn ranges(s: &crate::addr::AddrSet, is6: bool) -> &Intervals {
    if is6 {
        &s.v6
    } else {
        &s.v4
    }
}

/// The nodes' addresses of one family (Node objects' and pods' `status.hostIPs`), each
/// with the name it is shown by. An address claimed under two names (a Node object's and a
/// pod's spec.nodeName) takes the first; a node with more than one address of the family
/// is named with the address, as its addresses may be judged apart (own node).
fn node_addresses(states: [&State; 2], is6: bool) -> Vec<(u128, String)> {
    let mut nodes: Vec<(u128, String)> = Vec::new();
    for st in states {
        for p in st.index.pods() {
            for ip in &p.host_ips {
                let (f, v) = ip_value(*ip);
                if f == is6 {
                    nodes.push((v, p.node.clone().unwrap_or_else(|| ip.to_string())));
                }
            }
        }
        for n in st.index.nodes() {
            for ip in &n.addresses {
                let (f, v) = ip_value(*ip);
                if f == is6 {
                    nodes.push((v, n.name.clone()));
                }
            }
        }
    }
    nodes.sort();
    nodes.dedup_by_key(|(v, _)| *v);
    let mut count: HashMap<String, usize> = HashMap::new();
    for (_, name) in &nodes {
        *count.entry(name.clone()).or_default() += 1;
    }
    nodes
        .into_iter()
        .map(|(v, name)| {
            let addr = if is6 {
                IpAddr::V6(v6(v))
            } else {
                IpAddr::V4(v4(v))
            };
            match count[&name] {
                1 => (v, name),
                _ => (v, format!("{name} ({addr})")),
            }
        })
        .collect()
}

/// Where one family's address space is cut: every peer's range ends, every pod's and
/// node's address as an atom of its own. Sorted, from 0.
fn cuts(states: [&State; 2], is6: bool, nodes: &[(u128, String)]) -> Vec<u128> {
    let max = family_max(is6);
    let mut cuts: Vec<u128> = vec![0];
    let mut single = |v: u128| {
        cuts.push(v);
        if v < max {
            cuts.push(v + 1);
        }
    };
    for st in states {
        for pod in &st.pods {
            for ip in &pod.ips {
                let (f, v) = ip_value(*ip);
                if f == is6 {
                    single(v);
                }
            }
        }
    }
    for (v, _) in nodes {
        single(*v);
    }
    for st in states {
        for peer in &st.graph.peers {
            for &(lo, hi) in ranges(&peer.addrs, is6).ranges() {
                cuts.push(lo);
                if hi < max {
                    cuts.push(hi + 1);
                }
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

impl Space {
    pub fn addr(&self, atom: u32) -> IpAddr {
        let v = self.starts[atom as usize];
        if self.is6 {
            IpAddr::V6(v6(v))
        } else {
            IpAddr::V4(v4(v))
        }
    }

    pub fn end(&self, atom: u32) -> u128 {
        self.starts
            .get(atom as usize + 1)
            .map_or(family_max(self.is6), |n| n - 1)
    }

    /// The atom holding value `v`.
    pub fn atom(&self, v: u128) -> u32 {
        (self.starts.partition_point(|&s| s <= v) - 1) as u32
    }

    /// The atoms `[first, last]` covering `[lo, hi]`.
    pub fn atoms_in(&self, lo: u128, hi: u128) -> std::ops::RangeInclusive<u32> {
        self.atom(lo)..=self.atom(hi)
    }

    /// Cuts one family of the address space for `states`, and classes its atoms.
    pub fn build(
        is6: bool,
        states: [&State; 2],
        behaviours: &[[Behaviours; 2]; 2],
        pairs: &mut [Pairs; 2],
    ) -> Space {
        let nodes = node_addresses(states, is6);
        let cuts = cuts(states, is6, &nodes);
        let n = cuts.len();
        let mut space = Space {
            is6,
            starts: cuts,
            owner: [vec![None; n], vec![None; n]],
            node: vec![None; n],
            class_of: vec![0; n],
            classes: Vec::new(),
        };
        for (v, name) in nodes {
            let a = space.atom(v) as usize;
            space.node[a] = Some(name);
        }
        for (s, st) in states.iter().enumerate() {
            for (i, pod) in st.pods.iter().enumerate() {
                for ip in &pod.ips {
                    let (f, v) = ip_value(*ip);
                    if f == is6 {
                        let a = space.atom(v) as usize;
                        space.owner[s][a].get_or_insert(i as u32);
                    }
                }
            }
        }
        space.classify(states, behaviours, pairs);
        space
    }

    /// Membership of every atom in every peer of both graphs, then the classes.
    fn classify(
        &mut self,
        states: [&State; 2],
        behaviours: &[[Behaviours; 2]; 2],
        pairs: &mut [Pairs; 2],
    ) {
        let n = self.starts.len();
        let mut member: [Vec<Vec<u32>>; 2] = [vec![Vec::new(); n], vec![Vec::new(); n]];
        for (s, st) in states.iter().enumerate() {
            for (id, peer) in st.graph.peers.iter().enumerate() {
                for &(lo, hi) in ranges(&peer.addrs, self.is6).ranges() {
                    for a in self.atoms_in(lo, hi) {
                        member[s][a as usize].push(id as u32);
                    }
                }
            }
        }
        type Key = (u32, u32, Vec<u32>, Vec<u32>, Option<u128>);
        let mut ids: HashMap<Key, u32> = HashMap::new();
        let [member_b, member_a] = &mut member;
        for (a, (mb, ma)) in member_b.iter_mut().zip(member_a.iter_mut()).enumerate() {
            let pair = |dir: usize| Pair {
                before: self.owner[0][a].map(|p| behaviours[0][dir].of_pod[p as usize]),
                after: self.owner[1][a].map(|p| behaviours[1][dir].of_pod[p as usize]),
            };
            let egress = pairs[0].intern(pair(0));
            let ingress = pairs[1].intern(pair(1));
            let host = self.node[a].is_some().then_some(self.starts[a]);
            let key = (
                egress,
                ingress,
                std::mem::take(mb),
                std::mem::take(ma),
                host,
            );
            let next = self.classes.len() as u32;
            let c = *ids.entry(key).or_insert(next);
            if c == next {
                self.classes.push(Class {
                    egress,
                    ingress,
                    atoms: Vec::new(),
                });
            }
            self.classes[c as usize].atoms.push(a as u32);
            self.class_of[a] = c;
        }
    }
}
