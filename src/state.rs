//! One node's view, kept in step change by change: the index, the policy graph of the
//! node's pods and the ruleset model built from it.
//!
//! ```text
//! apply(object) --> impact::affected(old, new) --> graph.refresh(pods) --> ruleset::update(pods)
//! ```
//!
//! Each change recomputes only the pods it can affect, so its cost follows what it
//! touches, not the size of the cluster. Pure and synchronous: the controller, the
//! harness and the benchmarks drive it; none of them has its own copy of this logic.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::graph::PolicyGraph;
use crate::impact::{self, Change, PodKey};
use crate::index::Index;
use crate::input::{Kind, Object, ObjectData};
use crate::ruleset::{self, Ruleset};

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
        }
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
    pub fn rebuild(&mut self) {
        self.graph = PolicyGraph::build_for(&self.index, self.node.as_deref());
        self.model = ruleset::build_with(&self.graph, &self.options);
        self.compacted_at = self.graph.peer_count();
    }

    fn recompute(&mut self, pods: BTreeSet<PodKey>) {
        self.graph
            .refresh(&self.index, self.node.as_deref(), pods.iter().cloned());
        ruleset::update(&mut self.model, &self.graph, &pods, &self.options);
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

    /// Adds or replaces an object. An invalid NetworkPolicy is enforced fail-closed and
    /// its error returned; the state is updated either way.
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
