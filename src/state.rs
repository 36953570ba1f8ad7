//! One node's view, kept in step change by change: the index, the policy graph of the
//! node's pods, the ruleset model built from it, and what the kernel last acknowledged.
//!
//! ```text
//! apply(object) --> peer cache told --> impact::affected(old, new) --> graph.refresh(pods) --> ruleset::rebuild_pods(pods)
//! batch()       --> Full(model) | Update(kernel's view of the pending pods, the model's) | Nothing
//! acknowledged() / kernel_unknown() after the dataplane answered
//! ```
//!
//! Each change recomputes only the pods it can affect, so its cost follows what it
//! touches, not the size of the cluster. Pure and synchronous: the controller, the
//! harness and the benchmarks drive it; none of them has its own copy of this logic or
//! of what the kernel holds. Must not talk to the kernel itself.

use std::collections::{BTreeMap, BTreeSet};

use crate::cnp::ClusterPolicy;
use crate::error::Result;
use crate::graph::{PeerCache, PolicyGraph};
use crate::impact::{self, Change, PodKey};
use crate::index::{Index, NodeInfo, PodInfo};
use crate::input::{Kind, Object};
use crate::policy::Policy;
use crate::ruleset::{self, PodObjects, Ruleset, View};
use crate::selector::Labels;

#[derive(Debug, Clone)]
pub struct NodeState {
    node: Option<String>,
    options: ruleset::Options,
    /// While set, changes only reach the index; graph and model are rebuilt once when it
    /// is cleared (the initial list of a controller: one build beats thousands of updates).
    deferred: bool,
    /// While set, a change reaches the index and the peer cache at once, and the pods it
    /// affects are recomputed once, at the next [`NodeState::batch`] (a controller under a
    /// stream of events: pods that many events touch are recomputed once per batch).
    batching: bool,
    /// Pods affected since the last recompute, while batching.
    dirty: BTreeSet<PodKey>,
    /// Peer count after the last compaction, to know when to compact again.
    compacted_at: usize,
    index: Index,
    graph: PolicyGraph,
    /// The peers `graph` resolved, told of every change of `index` (see `follow`).
    peers: PeerCache,
    model: Ruleset,
    /// What the kernel holds, as far as this state knows: the model of the last batch it
    /// acknowledged; `None` before the first one, after a failure that leaves the
    /// kernel's state unknown, or after a change that needs the table replaced whole.
    kernel: Option<Ruleset>,
    /// Pods recomputed since the kernel's last acknowledgement: only their objects (and
    /// the maps) can differ between `kernel` and `model`.
    pending: BTreeSet<PodKey>,
    /// The NetworkPolicies over the element budget in `graph` (`ruleset::over_budget`),
    /// with their size: when one goes over or back under, its pods are recomputed too.
    over_budget: BTreeMap<String, usize>,
}

/// The relists in progress, kind by kind, and the objects each has named so far: at its
/// end, what it did not name is deleted ([`NodeState::reset`], [`Index::reset`]). A
/// relist is applied as it arrives, so no list is held in memory, only its keys.
#[derive(Debug, Clone, Default)]
pub struct Relist {
    seen: BTreeMap<Kind, BTreeSet<(String, String)>>,
}

impl Relist {
    /// A relist of `kind` begins (or begins again).
    pub fn begin(&mut self, kind: Kind) {
        self.seen.insert(kind, BTreeSet::new());
    }

    /// `obj` was listed: noted when a relist of its kind is in progress.
    pub fn saw(&mut self, obj: &Object) {
        if let Some(seen) = self.seen.get_mut(&obj.kind()) {
            seen.insert((
                obj.namespace().unwrap_or("").to_string(),
                obj.name().to_string(),
            ));
        }
    }

    /// Whether any relist is in progress.
    pub fn in_progress(&self) -> bool {
        !self.seen.is_empty()
    }

    /// The relist of `kind` ends: the keys it named (none if it never began).
    pub fn end(&mut self, kind: Kind) -> BTreeSet<(String, String)> {
        self.seen.remove(&kind).unwrap_or_default()
    }
}

/// What takes the kernel from what it holds to the model.
#[derive(Debug)]
pub enum Batch<'a> {
    /// The kernel holds the model already.
    Nothing,
    /// Replace the table whole, in one atomic batch.
    Full(&'a Ruleset),
    /// Only the pending pods' objects and the maps differ: the kernel's view of them and
    /// the model's.
    Update { before: View<'a>, after: View<'a> },
}

/// What one change did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// The index changed in a way enforcement reads.
    pub changed: bool,
    /// Pods whose graph node and ruleset objects were recomputed (while batching: are
    /// to be, at the next batch).
    pub recomputed: BTreeSet<PodKey>,
}

impl NodeState {
    /// The state for `node` (every pod when `None`) from a whole index.
    pub fn new(index: Index, node: Option<&str>) -> Self {
        Self::with_options(index, node, ruleset::Options::default())
    }

    /// [`NodeState::new`] with operator options (e.g. `--default-deny-unknown`).
    pub fn with_options(index: Index, node: Option<&str>, options: ruleset::Options) -> Self {
        let mut peers = PeerCache::default();
        let graph = PolicyGraph::build_keeping(&index, node, &mut peers);
        let model = ruleset::build_with(&graph, &options);
        let compacted_at = graph.peer_count();
        let over_budget = ruleset::over_budget(&graph, &options);
        NodeState {
            over_budget,
            node: node.map(str::to_string),
            options,
            deferred: false,
            batching: false,
            dirty: BTreeSet::new(),
            compacted_at,
            index,
            graph,
            peers,
            model,
            kernel: None,
            pending: BTreeSet::new(),
        }
    }

    /// The batch that takes the kernel from what it last acknowledged to the model
    /// (recomputing first what batching left dirty).
    pub fn batch(&mut self) -> Batch<'_> {
        self.settle();
        let Some(kernel) = &self.kernel else {
            return Batch::Full(&self.model);
        };
        if self.pending.is_empty() {
            return Batch::Nothing;
        }
        let objects = PodObjects::of(&self.pending, &[kernel, &self.model]);
        let before = View::pods(kernel, &objects);
        let after = View::pods(&self.model, &objects);
        if before == after {
            Batch::Nothing
        } else {
            Batch::Update { before, after }
        }
    }

    /// Recomputes the pods that changes left dirty while batching; [`NodeState::batch`]
    /// does it first. Returns whether there were any.
    pub fn settle(&mut self) -> bool {
        if self.dirty.is_empty() {
            return false;
        }
        let dirty = std::mem::take(&mut self.dirty);
        self.recompute(&dirty);
        true
    }

    /// Batching on or off (see the field); turning it off settles.
    pub fn set_batching(&mut self, batching: bool) {
        self.batching = batching;
        if !batching {
            self.settle();
        }
    }

    /// Pods recomputed since the kernel's last acknowledgement (not yet those that
    /// batching left dirty: see [`NodeState::settle`]).
    pub fn pending(&self) -> &BTreeSet<PodKey> {
        &self.pending
    }

    /// Pods that changes touched while batching, to be recomputed at the next
    /// [`NodeState::settle`]: until then their graph nodes and objects are as the kernel
    /// last took them (when it did).
    pub fn dirty(&self) -> &BTreeSet<PodKey> {
        &self.dirty
    }

    /// What the kernel holds, as far as this state knows (for drift checks).
    pub fn kernel(&self) -> Option<&Ruleset> {
        self.kernel.as_ref()
    }

    /// The kernel applied the model (`full`: the table was replaced whole, else the
    /// pending pods' batch). Returns the pods that batch covered.
    pub fn acknowledged(&mut self, full: bool) -> BTreeSet<PodKey> {
        let pods = std::mem::take(&mut self.pending);
        match &mut self.kernel {
            Some(_) if !full && pods.is_empty() => {}
            Some(kernel) if !full => ruleset::copy_pods(kernel, &self.model, &pods),
            _ => self.kernel = Some(self.model.clone()),
        }
        pods
    }

    /// The kernel's state is unknown (a failed or unanswered batch, drift): the next
    /// batch replaces the table whole.
    pub fn kernel_unknown(&mut self) {
        self.kernel = None;
        self.pending.clear();
    }

    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The graph; while batching, as of the last [`NodeState::settle`].
    pub fn graph(&self) -> &PolicyGraph {
        &self.graph
    }

    /// The model; while batching, as of the last [`NodeState::settle`].
    pub fn model(&self) -> &Ruleset {
        &self.model
    }

    pub fn options(&self) -> &ruleset::Options {
        &self.options
    }

    /// Replaces the operator options (this node's pod CIDRs can change with its Node
    /// object); a change rebuilds the model. Returns whether anything changed.
    pub fn set_options(&mut self, options: ruleset::Options) -> bool {
        if options == self.options {
            return false;
        }
        self.options = options;
        if !self.deferred {
            self.rebuild();
        }
        true
    }

    /// Rebuilds graph and model from the index (drops peers nothing uses any more).
    /// The next batch replaces the table whole: which pods differ is not tracked here.
    pub fn rebuild(&mut self) {
        self.peers = PeerCache::default();
        self.graph = PolicyGraph::build_keeping(&self.index, self.node.as_deref(), &mut self.peers);
        self.model = ruleset::build_with(&self.graph, &self.options);
        self.over_budget = ruleset::over_budget(&self.graph, &self.options);
        self.compacted_at = self.graph.peer_count();
        self.dirty.clear();
        self.kernel_unknown();
    }

    /// Recomputes `pods` (and returns the other pods it had to recompute: those of a
    /// policy that went over the element budget or back under it).
    fn recompute(&mut self, pods: &BTreeSet<PodKey>) -> BTreeSet<PodKey> {
        self.pending.extend(pods.iter().cloned());
        let node = self.node.as_deref();
        self.graph
            .refresh(&mut self.peers, &self.index, node, pods.iter().cloned());
        let over = ruleset::over_budget(&self.graph, &self.options);
        let mut others = BTreeSet::new();
        if over != self.over_budget {
            // A policy that went over the budget or back under it changes the chains of
            // every pod that holds its allows, not only of the pods this change touched.
            others = self.pods_with_allows_of(&over);
            others.retain(|p| !pods.contains(p));
            self.over_budget = over;
            self.pending.extend(others.iter().cloned());
            ruleset::rebuild_pods(&mut self.model, &self.graph, &others, &self.options);
        }
        ruleset::rebuild_pods(&mut self.model, &self.graph, pods, &self.options);
        if self.graph.peer_count() > 2 * self.compacted_at + 256 {
            let renumbering = self.graph.compact();
            self.peers.renumber(&renumbering);
            self.compacted_at = self.graph.peer_count();
        }
        others
    }

    /// The local pods with an allow of a policy whose budget state differs between
    /// `over` and the last one.
    fn pods_with_allows_of(&self, over: &BTreeMap<String, usize>) -> BTreeSet<PodKey> {
        let changed: BTreeSet<&str> = over
            .keys()
            .chain(self.over_budget.keys())
            .filter(|p| over.contains_key(*p) != self.over_budget.contains_key(*p))
            .map(String::as_str)
            .collect();
        self.graph
            .pods
            .iter()
            .filter(|(_, pod)| {
                pod.ingress
                    .iter()
                    .chain(&pod.egress)
                    .flat_map(|iso| &iso.allows)
                    .any(|a| changed.contains(a.origin.policy.as_str()))
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The NetworkPolicies over `--max-policy-elements` on this node, with their size.
    pub fn over_budget(&self) -> &BTreeMap<String, usize> {
        &self.over_budget
    }

    /// Defers graph and model updates (see the field); clearing it rebuilds them.
    pub fn set_deferred(&mut self, deferred: bool) {
        if self.deferred && !deferred {
            self.deferred = false;
            self.rebuild();
        }
        self.deferred = deferred;
    }

    /// Adds or replaces an object. An invalid NetworkPolicy or ClusterNetworkPolicy is
    /// enforced fail-closed and its error returned; the state is updated either way.
    pub fn apply(&mut self, obj: Object) -> Result<Update> {
        match self.apply_reporting(obj) {
            (update, None) => Ok(update),
            (_, Some(e)) => Err(e),
        }
    }

    /// Adds or replaces an object, and says what that did and, for an object that cannot
    /// be compiled (enforced fail-closed), why.
    pub fn apply_reporting(&mut self, obj: Object) -> (Update, Option<crate::Error>) {
        let kind = obj.kind();
        let (ns, name) = (
            obj.namespace().unwrap_or("").to_string(),
            obj.name().to_string(),
        );
        let old = (!self.deferred).then(|| Held::read(&self.index, kind, &ns, &name));
        let result = self.index.apply(obj);
        let changed = result.as_ref().map_or(true, |c| *c);
        let recomputed = match old {
            Some(old) if changed => self.follow(kind, &ns, &name, old),
            _ => BTreeSet::new(),
        };
        let update = Update {
            changed,
            recomputed,
        };
        (update, result.err())
    }

    /// The end of a relist of `kind` whose objects were applied as they came: deletes
    /// every object of `kind` that `seen` does not name ([`Index::stale`]), each as a
    /// change of its own.
    pub fn reset(&mut self, kind: Kind, seen: &BTreeSet<(String, String)>) {
        for (ns, name) in self.index.stale(kind, seen) {
            self.delete(kind, ns.as_deref(), &name);
        }
    }

    /// Removes an object; returns what that did.
    pub fn delete(&mut self, kind: Kind, namespace: Option<&str>, name: &str) -> Update {
        let ns = namespace.unwrap_or("");
        let old = (!self.deferred).then(|| Held::read(&self.index, kind, ns, name));
        if !self.index.delete(kind, namespace, name) {
            return Update::default();
        }
        let recomputed = match old {
            Some(old) => self.follow(kind, ns, name, old),
            None => BTreeSet::new(),
        };
        Update {
            changed: true,
            recomputed,
        }
    }

    /// The index took a change of one object (`old`: that object as the index held it
    /// before). Tells the peer cache, then recomputes the pods the change can affect (or,
    /// while batching, marks them dirty); returns them.
    fn follow(&mut self, kind: Kind, ns: &str, name: &str, old: Held) -> BTreeSet<PodKey> {
        let new = Held::read(&self.index, kind, ns, name);
        let change = Held::change(name, &old, &new);
        match change {
            Change::Pod { old, new } => {
                self.peers
                    .pod_changed(&self.graph.peers, &self.index, old, new)
            }
            Change::Namespace { name, old, new } => self.peers.namespace_changed(name, old, new),
            Change::Policy { old, new } => self.peers.policy_changed(old, new),
            // Their resolutions live for one refresh only.
            Change::ClusterPolicy { .. } | Change::Node { .. } => {}
        }
        let node = self.node.as_deref();
        let affected = impact::affected(&self.index, &self.graph, node, change);
        if self.batching {
            self.dirty.extend(affected.iter().cloned());
            affected
        } else if !affected.is_empty() {
            let mut recomputed = self.recompute(&affected);
            recomputed.extend(affected);
            recomputed
        } else {
            affected
        }
    }
}

/// One object as the index holds it (reduced), or `None` when it holds none.
enum Held {
    Pod(Option<PodInfo>),
    Namespace(Option<Labels>),
    Policy(Option<Policy>),
    ClusterPolicy(Option<ClusterPolicy>),
    Node(Option<NodeInfo>),
}

impl Held {
    fn read(index: &Index, kind: Kind, ns: &str, name: &str) -> Held {
        match kind {
            Kind::Pod => Held::Pod(index.pod(ns, name).cloned()),
            Kind::Namespace => Held::Namespace(index.namespace_labels(name).cloned()),
            Kind::NetworkPolicy => Held::Policy(index.policy(ns, name).map(|e| e.policy.clone())),
            Kind::ClusterNetworkPolicy => {
                Held::ClusterPolicy(index.cnp(name).map(|e| e.policy.clone()))
            }
            Kind::Node => Held::Node(index.node(name).cloned()),
        }
    }

    /// The change from `old` to `new`, two readings of the same object (`name`).
    fn change<'a>(name: &'a str, old: &'a Held, new: &'a Held) -> Change<'a> {
        match (old, new) {
            (Held::Pod(old), Held::Pod(new)) => Change::Pod {
                old: old.as_ref(),
                new: new.as_ref(),
            },
            (Held::Namespace(old), Held::Namespace(new)) => Change::Namespace {
                name,
                old: old.as_ref(),
                new: new.as_ref(),
            },
            (Held::Policy(old), Held::Policy(new)) => Change::Policy {
                old: old.as_ref(),
                new: new.as_ref(),
            },
            (Held::ClusterPolicy(old), Held::ClusterPolicy(new)) => Change::ClusterPolicy {
                old: old.as_ref(),
                new: new.as_ref(),
            },
            (Held::Node(old), Held::Node(new)) => Change::Node {
                old: old.as_ref(),
                new: new.as_ref(),
            },
            _ => unreachable!("two readings of one object have one kind"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::object_from_value;
    use serde_json::{json, Value};

    fn apply(state: &mut NodeState, v: Value) {
        let obj = object_from_value(v, "test").unwrap().unwrap();
        state.apply(obj).unwrap();
    }

    fn policy(from: Value) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "p", "namespace": "x"},
               "spec": {"podSelector": {}, "ingress": [{"from": from}],
                        "egress": [{"to": from, "ports": [{"port": "http"}]}]}})
    }

    fn pod(name: &str, ip: &str, app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "x", "labels": {"app": app}},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
               "status": {"phase": "Running", "podIPs": [{"ip": ip}]}})
    }

    /// What a policy alone used leaves the cache when the policy changes or goes: a pod
    /// change later walks only what live policies use.
    #[test]
    fn the_peer_cache_forgets_what_a_policy_left_behind() {
        let mut state = NodeState::new(Index::new(), Some("n1"));
        apply(&mut state, pod("a", "10.0.0.1", "a"));
        let a = json!([{"podSelector": {"matchLabels": {"app": "a"}}}]);
        let b = json!([{"podSelector": {"matchLabels": {"app": "b"}}}]);
        apply(&mut state, policy(a.clone()));
        // The peer, and the egress split of its named port.
        assert_eq!(state.peers.len(), 2);
        apply(&mut state, policy(b));
        assert_eq!(state.peers.len(), 2, "the new peers replace the old ones");
        apply(
            &mut state,
            policy(json!([{"podSelector": {"matchLabels": {"app": "b"}}}, a[0]])),
        );
        assert_eq!(state.peers.len(), 4);
        state.delete(Kind::NetworkPolicy, Some("x"), "p");
        assert_eq!(state.peers.len(), 0);
    }

    /// The end of a relist deletes what it did not name, and only of its kind; the
    /// model follows as if each had been deleted.
    #[test]
    fn a_relist_deletes_what_it_did_not_name() {
        let mut state = NodeState::new(Index::new(), Some("n1"));
        let ns =
            |n: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}});
        apply(&mut state, ns("x"));
        apply(&mut state, ns("y"));
        apply(&mut state, pod("a", "10.0.0.1", "a"));
        apply(&mut state, pod("b", "10.0.0.2", "b"));
        apply(&mut state, policy(json!([{"podSelector": {}}])));
        let mut relist = Relist::default();
        relist.begin(Kind::Pod);
        let listed = object_from_value(pod("b", "10.0.0.2", "b"), "t")
            .unwrap()
            .unwrap();
        relist.saw(&listed);
        assert!(relist.in_progress());
        state.apply(listed).unwrap();
        let seen = relist.end(Kind::Pod);
        assert!(!relist.in_progress());
        state.reset(Kind::Pod, &seen);
        assert_eq!(
            state.index().keys(Kind::Pod),
            vec![("x".into(), "b".into())]
        );
        assert_eq!(
            state.index().count(Kind::Namespace),
            2,
            "other kinds untouched"
        );
        assert!(state.index().policy("x", "p").is_some());
        let mut fresh = state.index().clone();
        fresh.reset(Kind::Namespace, &[(String::new(), "x".to_string())].into());
        assert_eq!(
            fresh.keys(Kind::Namespace),
            vec![(String::new(), "x".into())]
        );
        assert_eq!(state.model(), &crate::compile(state.index(), Some("n1")));
    }
}
