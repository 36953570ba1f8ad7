//! `nftpol diff`: which connections a change of policy (or of the cluster) opens and
//! closes, exactly, from the same verdicts `explain` gives.
//!
//! ```text
//! Index before, Index after
//!   -> whole-cluster PolicyGraph of each
//!   -> space: per family, the address space cut into atoms (every peer boundary, every
//!             pod and node address) and atoms into classes (same behaviour pairs, same
//!             membership in every peer of both graphs)
//!   -> sweep: from every end whose function may have changed, over the regions its
//!             peers draw: the (source class, destination class, protocol, port piece)
//!             cells whose verdict differs (explain::end_allowed on representatives)
//!   -> group: cells merged into changes people read (port ranges, pods treated alike,
//!             CIDRs), each with explain's reasons before and after
//! ```
//!
//! A change's `sources` x `destinations` x `ports` x `families` is exactly the set of
//! connections whose verdict went from `before` to `after`, leaving out a pod's
//! connections to itself (they never leave its network namespace). An address is named
//! by the pod that holds it (after the change, else before), by its node, or else falls
//! in a CIDR, which never covers a pod's or a node's address.

mod dot;
mod group;
pub mod replay;
mod space;
mod sweep;
mod text;

use serde::Serialize;

use crate::graph::PolicyGraph;
use crate::index::Index;
use crate::policy::Protocol;

/// A verdict on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allowed,
    Denied,
}

impl Verdict {
    fn of(allowed: bool) -> Verdict {
        if allowed {
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
    }
}

/// A group of connections whose verdict changed the same way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    /// `namespace/pod`, a node's name, or a CIDR.
    pub sources: Vec<String>,
    pub destinations: Vec<String>,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Inclusive port ranges, ascending.
    pub ports: Vec<[u16; 2]>,
    /// `ipv4`, `ipv6`.
    pub families: Vec<String>,
    pub before: Verdict,
    pub after: Verdict,
    /// `explain`'s reasons for a connection of the group, for each end whose verdict
    /// changed: `before: ...` then `after: ...`.
    pub because: Vec<String>,
}

impl Change {
    /// Whether the change opens connections (denied before, allowed after).
    pub fn opens(&self) -> bool {
        self.after == Verdict::Allowed
    }

    pub fn protocol(&self) -> Option<Protocol> {
        Protocol::parse_k8s(&self.protocol)
    }
}

/// Every connection whose verdict differs between two states, grouped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn opened(&self) -> usize {
        self.changes.iter().filter(|c| c.opens()).count()
    }

    pub fn closed(&self) -> usize {
        self.changes.len() - self.opened()
    }
}

/// Compares the verdict of every connection in `before` with its verdict in `after`.
/// Both are judged on the whole cluster (every pod, as `compile` without `--node`).
pub fn diff(before: &Index, after: &Index) -> Diff {
    let graphs = [PolicyGraph::build(before), PolicyGraph::build(after)];
    diff_graphs([before, after], [&graphs[0], &graphs[1]])
}

/// Every connection `graph` (the whole-cluster graph of `index`) allows that involves a
/// pod, as the changes from a state where every pod is isolated both ways and allowed
/// nothing (so a pod's traffic with its own node, always allowed, is left out): what
/// `graph --output dot` draws.
pub fn allowed(index: &Index, graph: &PolicyGraph) -> Diff {
    let mut none = graph.clone();
    for pod in none.pods.values_mut() {
        pod.ingress = Some(Default::default());
        pod.egress = Some(Default::default());
        pod.tiers = Default::default();
    }
    diff_graphs([index, index], [&none, graph])
}

/// [`diff`] on graphs already built (`graphs[i]` the whole-cluster graph of
/// `indexes[i]`).
pub fn diff_graphs(indexes: [&Index; 2], graphs: [&PolicyGraph; 2]) -> Diff {
    let states = [
        space::State::new(indexes[0], graphs[0]),
        space::State::new(indexes[1], graphs[1]),
    ];
    let behaviours: [[space::Behaviours; 2]; 2] =
        std::array::from_fn(|s| sweep::DIRS.map(|d| space::Behaviours::of(&states[s], d)));
    let mut pairs: [space::Pairs; 2] = Default::default();
    let spaces: Vec<space::Space> = [false, true]
        .into_iter()
        .map(|is6| space::Space::build(is6, [&states[0], &states[1]], &behaviours, &mut pairs))
        .collect();
    let sweep = sweep::Sweep::new([&states[0], &states[1]], &behaviours, &pairs);
    let mut grouper = group::Grouper::new([&states[0], &states[1]], &sweep);
    for space in &spaces {
        let raws = sweep.run(space);
        grouper.add(space, &raws);
    }
    grouper.finish()
}
