//! What the sync loop needs from the kernel side, as a trait: replace the table, move it
//! from one model to the next, tell whether the live table drifted, and cut the tracked
//! connections a new model revokes. The netlink backend implements it for real; tests may
//! implement it to inject failures.

use crate::index::PodKey;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::tracker::Tracker;
use crate::flow::Flow;
use crate::index::Index;
use crate::netlink::NetlinkError;
use crate::revoke::{Decision, Judge, Scope};
use crate::ruleset::names::HELD_TIMEOUT_SECS;
use crate::ruleset::{Ruleset, View};

/// What cutting revoked connections did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutStats {
    /// Conntrack entries dumped and judged.
    pub examined: usize,
    /// Entries deleted.
    pub cut: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Netlink messages in the batch (begin and end markers excluded).
    pub messages: usize,
    pub bytes: usize,
    /// From handing the batch to the kernel to its last acknowledgement; the rest of a
    /// call is diffing and encoding.
    pub kernel: std::time::Duration,
}

/// A dataplane failure, sorted by what the sync loop must do next; each carries the
/// netlink error that caused it, so the chain reaches the log whole.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The kernel refused the batch; nothing of it applied.
    #[error("kernel refused the batch: {0}")]
    Refused(#[source] NetlinkError),
    /// The outcome is unknown (ENOBUFS, a lost acknowledgement): read back and resync.
    #[error("batch outcome unknown: {0}")]
    Unknown(#[source] NetlinkError),
    /// Anything else: the socket, a dump, the namespace's addresses.
    #[error("netlink: {0}")]
    Io(#[source] NetlinkError),
    /// The change cannot be made in place (an object's type or flags changed): the caller
    /// must replace the table whole. Nothing was sent.
    #[error("the change needs a full sync")]
    NeedsFullSync,
}

pub trait Dataplane: Send {
    /// Replaces the table whole with `model`, in one atomic batch.
    fn full_sync(&mut self, model: &Ruleset) -> Result<BatchStats, DataplaneError>;
    /// Moves the kernel from `old` (what it holds) to `new` in one atomic batch, touching
    /// only what differs: two views of the same kind (the same pods' parts of two models).
    fn update(&mut self, old: &View, new: &View) -> Result<BatchStats, DataplaneError>;
    /// Whether the live table differs from `model` (a missing table differs).
    fn drifted(&mut self, model: &Ruleset) -> Result<bool, DataplaneError>;
    /// After a batch: deletes the conntrack entries of this node's pods that `model` (now
    /// in the kernel) no longer allows, and those of pods that are gone. `touched` are the
    /// pods the batch recomputed; `None` after a full sync: every local pod. The default
    /// does nothing (test fakes have no connections).
    fn cut_revoked(
        &mut self,
        _model: &Ruleset,
        _index: &Index,
        _node: &str,
        _touched: Option<&BTreeSet<PodKey>>,
    ) -> Result<CutStats, DataplaneError> {
        Ok(CutStats::default())
    }
}

/// The real dataplane: netlink batches in the network namespace of the thread that opens it.
pub struct NetlinkDataplane {
    backend: crate::netlink::Backend,
    /// Opened with the backend, so it lives in the same network namespace.
    conntrack: crate::netlink::Conntrack,
    tracker: Tracker,
    /// Whether the last batch may have revoked anything (see [`only_allows_more`]).
    revocable: bool,
    /// The last cut failed: the next judges every local pod's connections.
    rejudge_all: bool,
    /// The connections in the held sets, with when the kernel lets each go.
    held: BTreeMap<Flow, Instant>,
}

/// How close to its expiry a hold is left to expire rather than let go.
const RELEASE_MARGIN: Duration = Duration::from_secs(2);

/// Whether applying `op` can only allow more: adding elements to a set whose elements
/// allow (every set but the tiers' Deny regions and the pod CIDRs of
/// `--default-deny-unknown`, [`crate::ruleset::names::set_denies`]). A batch of nothing
/// else (a pod elsewhere starting: its address joins its peers' sets) revokes nothing, so
/// its connections need no judging.
fn only_allows_more(op: &crate::netlink::Op) -> bool {
    match op {
        crate::netlink::Op::AddSetElements { set, .. } => !crate::ruleset::names::set_denies(set),
        _ => false,
    }
}

impl NetlinkDataplane {
    pub fn open() -> Result<Self, DataplaneError> {
        Ok(NetlinkDataplane {
            backend: crate::netlink::Backend::open().map_err(map_err)?,
            conntrack: crate::netlink::Conntrack::open().map_err(map_err)?,
            tracker: Tracker::default(),
            revocable: true,
            rejudge_all: false,
            held: BTreeMap::new(),
        })
    }
}

/// Sorts a netlink error by what the sync loop must do next, keeping it as the source.
fn map_err(e: NetlinkError) -> DataplaneError {
    use NetlinkError as E;
    match e {
        E::Kernel { .. } | E::BatchRejected { .. } => DataplaneError::Refused(e),
        E::OutcomeUnknown | E::MissingAcks { .. } | E::Timeout => DataplaneError::Unknown(e),
        other => DataplaneError::Io(other),
    }
}

impl Dataplane for NetlinkDataplane {
    fn full_sync(&mut self, model: &Ruleset) -> Result<BatchStats, DataplaneError> {
        self.revocable = true;
        let s = self.backend.full_sync(model).map_err(map_err)?;
        // The table was replaced whole, its held sets empty.
        self.held.clear();
        Ok(BatchStats {
            messages: s.messages,
            bytes: s.bytes,
            kernel: s.elapsed,
        })
    }

    fn update(&mut self, old: &View, new: &View) -> Result<BatchStats, DataplaneError> {
        // `None`: the change cannot be made in place; a table-level replacement of a view
        // would drop everything outside it, so ask for a real full sync instead.
        let ops = crate::netlink::diff_views(old, new).ok_or(DataplaneError::NeedsFullSync)?;
        self.revocable = !ops.iter().all(only_allows_more);
        if ops.is_empty() {
            return Ok(BatchStats::default());
        }
        let s = self.backend.apply_ops(new.name, &ops).map_err(map_err)?;
        Ok(BatchStats {
            messages: s.messages,
            bytes: s.bytes,
            kernel: s.elapsed,
        })
    }

    fn drifted(&mut self, model: &Ruleset) -> Result<bool, DataplaneError> {
        let live = self.backend.read_table(&model.name).map_err(map_err)?;
        match crate::netlink::drift(model, live.as_ref()) {
            None => Ok(false),
            Some(what) => {
                tracing::warn!(drift = %what, "live table differs from the model");
                Ok(true)
            }
        }
    }

    fn cut_revoked(
        &mut self,
        model: &Ruleset,
        index: &Index,
        node: &str,
        touched: Option<&BTreeSet<PodKey>>,
    ) -> Result<CutStats, DataplaneError> {
        // After a failed cut, every local pod's connections wait to be judged again.
        let touched = if self.rejudge_all { None } else { touched };
        let scope = self.tracker.scope(index, node, touched);
        self.release_allowed(model, &scope);
        // After a batch that only allows more, only the connections of pods that are
        // gone can have to go.
        let scope = if self.revocable || touched.is_none() {
            scope
        } else {
            Scope {
                judge: Default::default(),
                ..scope
            }
        };
        self.rejudge_all = true;
        let stats = self.cut(model, &scope)?;
        self.rejudge_all = false;
        Ok(stats)
    }
}

impl NetlinkDataplane {
    /// Lets go of the held connections of `scope` that `model` allows again (a change
    /// reversed within the hold): a new connection that happens to reuse a cut one's
    /// 5-tuple must not stay dropped once policy allows it. A hold about to expire is
    /// left to expire: deleting an element the kernel has just dropped fails the batch.
    fn release_allowed(&mut self, model: &Ruleset, scope: &Scope) {
        let now = Instant::now();
        self.held.retain(|_, until| *until > now);
        if self.held.is_empty() || scope.judge.is_empty() {
            return;
        }
        let host: BTreeSet<_> = match crate::netlink::local_addrs() {
            Ok(a) => a.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the node's addresses; held connections stay held");
                return;
            }
        };
        let mut judge = Judge::new(model, scope, &host);
        let margin = now + RELEASE_MARGIN;
        let allowed: Vec<Flow> = self
            .held
            .iter()
            .filter(|(flow, until)| **until > margin && judge.decide(flow) == Decision::Keep)
            .map(|(flow, _)| *flow)
            .collect();
        if allowed.is_empty() {
            return;
        }
        let keys: Vec<_> = allowed.iter().filter_map(Flow::held).flatten().collect();
        match self.backend.hold(&model.name, &keys, false) {
            Ok(_) => tracing::debug!(
                flows = allowed.len(),
                "held connections allowed again, let go"
            ),
            Err(e) => {
                tracing::warn!(error = %e, flows = allowed.len(), "cannot let go of held connections; they expire on their own")
            }
        }
        // Either way they are no longer ours to release: gone, or left to expire.
        for flow in &allowed {
            self.held.remove(flow);
        }
    }

    /// Dumps the entries of `scope`, holds and deletes those the judge cuts.
    fn cut(&mut self, model: &Ruleset, scope: &Scope) -> Result<CutStats, DataplaneError> {
        if scope.is_empty() {
            return Ok(CutStats::default());
        }
        let t0 = std::time::Instant::now();
        // Asks the kernel's count first: no walk at all when the namespace holds nothing.
        let entries = self
            .conntrack
            .dump_involving(&scope.addresses())
            .map_err(map_err)?;
        if entries.is_empty() {
            return Ok(CutStats::default());
        }
        let t1 = std::time::Instant::now();
        let host: BTreeSet<_> = crate::netlink::local_addrs()
            .map_err(map_err)?
            .into_iter()
            .collect();
        let t2 = std::time::Instant::now();
        let mut judge = Judge::new(model, scope, &host);
        let revoked: Vec<_> = entries
            .iter()
            .filter(|e| judge.decide(&e.flow).cut())
            .collect();
        let t3 = std::time::Instant::now();
        // Held before the entries go: a packet of a cut connection still in flight (or
        // retransmitted) would otherwise open a new entry, in the reverse direction if
        // policy allows that one, and carry the cut connection on as its replies.
        let held: Vec<_> = revoked
            .iter()
            .filter_map(|e| e.flow.held())
            .flatten()
            .collect();
        match self.backend.hold(&model.name, &held, true) {
            Ok(_) => {
                let until = Instant::now() + Duration::from_secs(HELD_TIMEOUT_SECS.into());
                for e in &revoked {
                    if e.flow.held().is_some() {
                        self.held.entry(e.flow).or_insert(until);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, flows = revoked.len(), "cannot hold cut connections; cutting them anyway")
            }
        }
        let cut = self.conntrack.delete(&revoked).map_err(map_err)?;
        tracing::debug!(
            addresses = scope.addresses().len(),
            examined = entries.len(),
            cut,
            dump_us = (t1 - t0).as_micros() as u64,
            addrs_us = (t2 - t1).as_micros() as u64,
            judge_us = (t3 - t2).as_micros() as u64,
            hold_and_delete_us = t3.elapsed().as_micros() as u64,
            "judged connections"
        );
        Ok(CutStats {
            examined: entries.len(),
            cut,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Op;
    use crate::ruleset::model::KeyType;

    fn add(set: &str) -> Op {
        Op::AddSetElements {
            set: set.into(),
            key: vec![KeyType::Ipv4Addr],
            interval: true,
            elements: vec![],
            from_empty: false,
        }
    }

    /// Only element additions to allowing sets skip the judge; anything that can take
    /// something away (a deletion, a rule, a dispatch entry, a pod CIDR) does not.
    #[test]
    fn only_additions_to_allowing_sets_revoke_nothing() {
        assert!(only_allows_more(&add("ingress/x/a/any4")));
        assert!(only_allows_more(&add("known-pods4")));
        assert!(!only_allows_more(&add("pod-cidrs4")));
        // A ClusterNetworkPolicy's Deny regions restrict; its Accept regions allow.
        assert!(!only_allows_more(&add("ingress/x/a/admin-deny-any4")));
        assert!(!only_allows_more(&add("egress/x/a/baseline-deny-ports6")));
        assert!(only_allows_more(&add("ingress/x/a/admin-accept-exact4")));
        assert!(!only_allows_more(&Op::DelSetElements {
            set: "ingress/x/a/any4".into(),
            key: vec![KeyType::Ipv4Addr],
            interval: true,
            elements: vec![],
        }));
        assert!(!only_allows_more(&Op::AddMapElements {
            map: "ingress4".into(),
            elements: vec![],
        }));
        assert!(!only_allows_more(&Op::DelChain("ingress/x/a".into())));
    }
}
