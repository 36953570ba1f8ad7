//! One node's view, kept in step change by change: the index, the policy graph of the
//! node's pods, the ruleset model built from it, and what the kernel last acknowledged.
//!
//! ```text
//! apply(object) --> impact::affected(old, new) --> graph.refresh(pods) --> ruleset::rebuild_pods(pods)
//! batch()       --> Full(model) | Update(kernel's view of the pending pods, the model's) | Nothing
//! acknowledged() / kernel_unknown() after the dataplane answered
//! ```
//!
//! Each change recomputes only the pods it can affect, so its cost follows what it
//! touches, not the size of the cluster. Pure and synchronous: the controller, the
//! harness and the benchmarks drive it; none of them has its own copy of this logic or
//! of what the kernel holds. Must not talk to the kernel itself.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::graph::PolicyGraph;
use crate::impact::{self, Change, PodKey};
use crate::index::Index;
use crate::input::{Kind, Object, ObjectData};
use crate::ruleset::{self, Ruleset, View};

#[derive(Debug, Clone)]
pub struct NodeState {
    node: Option<String>,
    options: ruleset::Options,
    /// While set, changes only reach the index; graph and model are rebuilt once when it
    /// is cleared (the initial list of a controller: one build beats thousands of updates).
    deferred: bool,
    /// Peer count after the last compaction, to know when to compact again.
    compacted_at: usize,
    index: Index,
    graph: PolicyGraph,
    model: Ruleset,
    /// What the kernel holds, as far as this state knows: the model of the last batch it
    /// acknowledged; `None` before the first one, after a failure that leaves the
    /// kernel's state unknown, or after a change that needs the table replaced whole.
    kernel: Option<Ruleset>,
    /// Pods recomputed since the kernel's last acknowledgement: only their objects (and
    /// the maps) can differ between `kernel` and `model`.
    pending: BTreeSet<PodKey>,
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
    /// Pods whose graph node and ruleset objects were recomputed.
    pub recomputed: BTreeSet<PodKey>,
}

impl NodeState {
    /// The state for `node` (every pod when `None`) from a whole index.
    pub fn new(index: Index, node: Option<&str>) -> Self {
        Self::with_options(index, node, ruleset::Options::default())
    }

    /// [`NodeState::new`] with operator options (e.g. `--default-deny-unknown`).
    pub fn with_options(index: Index, node: Option<&str>, options: ruleset::Options) -> Self {
        let graph = PolicyGraph::build_for(&index, node);
        let model = ruleset::build_with(&graph, &options);
        let compacted_at = graph.peer_count();
        NodeState {
            node: node.map(str::to_string),
            options,
            deferred: false,
            compacted_at,
            index,
            graph,
            model,
            kernel: None,
            pending: BTreeSet::new(),
        }
    }

    /// The batch that takes the kernel from what it last acknowledged to the model.
    pub fn batch(&self) -> Batch<'_> {
        let Some(kernel) = &self.kernel else {
            return Batch::Full(&self.model);
        };
        if self.pending.is_empty() {
            return Batch::Nothing;
        }
        let before = View::pods(kernel, &self.pending);
        let after = View::pods(&self.model, &self.pending);
        if before == after {
            Batch::Nothing
        } else {
            Batch::Update { before, after }
        }
    }

    /// Pods recomputed since the kernel's last acknowledgement.
    pub fn pending(&self) -> &BTreeSet<PodKey> {
        &self.pending
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

    pub fn graph(&self) -> &PolicyGraph {
        &self.graph
    }

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
        self.graph = PolicyGraph::build_for(&self.index, self.node.as_deref());
        self.model = ruleset::build_with(&self.graph, &self.options);
        self.compacted_at = self.graph.peer_count();
        self.kernel_unknown();
    }

    fn recompute(&mut self, pods: BTreeSet<PodKey>) {
        self.pending.extend(pods.iter().cloned());
        self.graph
            .refresh(&self.index, self.node.as_deref(), pods.iter().cloned());
        ruleset::rebuild_pods(&mut self.model, &self.graph, &pods, &self.options);
        if self.graph.peer_count() > 2 * self.compacted_at + 256 {
            self.graph.compact();
            self.compacted_at = self.graph.peer_count();
        }
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
        if self.deferred {
            let result = self.index.apply(obj);
            let changed = result.as_ref().map_or(true, |c| *c);
            return (
                Update {
                    changed,
                    recomputed: BTreeSet::new(),
                },
                result.err(),
            );
        }
        let node = self.node.clone();
        let node = node.as_deref();
        let (result, affected) = match &obj.data {
            ObjectData::Pod(_) => {
                let (ns, name) = (
                    obj.namespace().unwrap_or("").to_string(),
                    obj.name().to_string(),
                );
                let old = self.index.pod(&ns, &name).cloned();
                let result = self.index.apply(obj);
                let new = self.index.pod(&ns, &name).cloned();
                self.graph
                    .pod_changed(&self.index, old.as_ref(), new.as_ref());
                let change = Change::Pod {
                    old: old.as_ref(),
                    new: new.as_ref(),
                };
                (
                    result,
                    impact::affected(&self.index, &self.graph, node, change),
                )
            }
            ObjectData::Namespace(_) => {
                let name = obj.name().to_string();
                let old = self.index.namespace_labels(&name).cloned();
                let result = self.index.apply(obj);
                let new = self.index.namespace_labels(&name).cloned();
                self.graph
                    .namespace_changed(&name, old.as_ref(), new.as_ref());
                let change = Change::Namespace {
                    name: &name,
                    old: old.as_ref(),
                    new: new.as_ref(),
                };
                (
                    result,
                    impact::affected(&self.index, &self.graph, node, change),
                )
            }
            ObjectData::NetworkPolicy(_) => {
                let (ns, name) = (
                    obj.namespace().unwrap_or("").to_string(),
                    obj.name().to_string(),
                );
                let old = self.index.policy(&ns, &name).map(|e| e.policy.clone());
                let result = self.index.apply(obj);
                let new = self.index.policy(&ns, &name).map(|e| e.policy.clone());
                let change = Change::Policy {
                    old: old.as_ref(),
                    new: new.as_ref(),
                };
                (
                    result,
                    impact::affected(&self.index, &self.graph, node, change),
                )
            }
            ObjectData::ClusterNetworkPolicy(_) => {
                let name = obj.name().to_string();
                let old = self.index.cnp(&name).map(|e| e.policy.clone());
                let result = self.index.apply(obj);
                let new = self.index.cnp(&name).map(|e| e.policy.clone());
                let change = Change::ClusterPolicy {
                    old: old.as_ref(),
                    new: new.as_ref(),
                };
                (
                    result,
                    impact::affected(&self.index, &self.graph, node, change),
                )
            }
            ObjectData::Node(_) => {
                let name = obj.name().to_string();
                let old = self.index.node(&name).cloned();
                let result = self.index.apply(obj);
                let new = self.index.node(&name).cloned();
                let change = Change::Node {
                    old: old.as_ref(),
                    new: new.as_ref(),
                };
                (
                    result,
                    impact::affected(&self.index, &self.graph, node, change),
                )
            }
        };
        let changed = match &result {
            Ok(c) => *c,
            Err(_) => true,
        };
        let recomputed = if changed { affected } else { BTreeSet::new() };
        if !recomputed.is_empty() {
            self.recompute(recomputed.clone());
        }
        (
            Update {
                changed,
                recomputed,
            },
            result.err(),
        )
    }

    /// Removes an object; returns what that did.
    pub fn delete(&mut self, kind: Kind, namespace: Option<&str>, name: &str) -> Update {
        if self.deferred {
            let changed = self.index.delete(kind, namespace, name);
            return Update {
                changed,
                recomputed: BTreeSet::new(),
            };
        }
        let node = self.node.clone();
        let node = node.as_deref();
        let ns = namespace.unwrap_or("");
        let affected = match kind {
            Kind::Pod => {
                let old = self.index.pod(ns, name).cloned();
                if !self.index.delete(kind, namespace, name) {
                    return Update::default();
                }
                self.graph.pod_changed(&self.index, old.as_ref(), None);
                impact::affected(
                    &self.index,
                    &self.graph,
                    node,
                    Change::Pod {
                        old: old.as_ref(),
                        new: None,
                    },
                )
            }
            Kind::Namespace => {
                let old = self.index.namespace_labels(name).cloned();
                if !self.index.delete(kind, namespace, name) {
                    return Update::default();
                }
                self.graph.namespace_changed(name, old.as_ref(), None);
                // A namespace that still holds pods lives on with its implied labels.
                let change = Change::Namespace {
                    name,
                    old: old.as_ref(),
                    new: None,
                };
                impact::affected(&self.index, &self.graph, node, change)
            }
            Kind::NetworkPolicy => {
                let old = self.index.policy(ns, name).map(|e| e.policy.clone());
                if !self.index.delete(kind, namespace, name) {
                    return Update::default();
                }
                impact::affected(
                    &self.index,
                    &self.graph,
                    node,
                    Change::Policy {
                        old: old.as_ref(),
                        new: None,
                    },
                )
            }
            Kind::ClusterNetworkPolicy => {
                let old = self.index.cnp(name).map(|e| e.policy.clone());
                if !self.index.delete(kind, namespace, name) {
                    return Update::default();
                }
                let change = Change::ClusterPolicy {
                    old: old.as_ref(),
                    new: None,
                };
                impact::affected(&self.index, &self.graph, node, change)
            }
            Kind::Node => {
                let old = self.index.node(name).cloned();
                if !self.index.delete(kind, namespace, name) {
                    return Update::default();
                }
                let change = Change::Node {
                    old: old.as_ref(),
                    new: None,
                };
                impact::affected(&self.index, &self.graph, node, change)
            }
        };
        if !affected.is_empty() {
            self.recompute(affected.clone());
        }
        Update {
            changed: true,
            recomputed: affected,
        }
    }
}
