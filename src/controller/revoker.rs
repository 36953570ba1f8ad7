//! Revoked means revoked, on the controller's side: after each batch, which tracked
//! connections to cut, holding them first; the dataplane only dumps, holds and deletes.
//!
//! ```text
//! batch applied --Tracker::scope--> Scope --Dataplane::flows--> [CtEntry]
//!   --revoke::Judge--> revoked --Dataplane::hold (both ways)--> Dataplane::delete_flows
//! held connections a later model allows again --Dataplane::hold(release)
//! ```
//!
//! Owns: the memory between batches (the tracker, the held connections and when the
//! kernel lets each go, whether the last cut failed). The judging is the library's
//! ([`crate::revoke`]); talking to the kernel is the dataplane's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::dataplane::{CutStats, Dataplane, DataplaneError};
use super::tracker::Tracker;
use crate::flow::Flow;
use crate::index::{Index, PodKey};
use crate::revoke::{Decision, Judge, Scope};
use crate::ruleset::names::HELD_TIMEOUT_SECS;
use crate::ruleset::Ruleset;

/// How close to its expiry a hold is left to expire rather than let go.
const RELEASE_MARGIN: Duration = Duration::from_secs(2);

/// The batch the kernel just took, as the revoker needs it.
pub struct Applied<'a> {
    /// The model now in the kernel.
    pub model: &'a Ruleset,
    pub index: &'a Index,
    pub node: &'a str,
    /// The pods the batch recomputed; `None` after a full sync: every local pod.
    pub touched: Option<&'a BTreeSet<PodKey>>,
    /// The batch only added elements to allowing sets
    /// ([`super::dataplane::BatchStats::only_allows_more`]): it revoked nothing.
    pub only_allows_more: bool,
    /// What the kernel's learned sets (`domainNames`) admit now: without it, every
    /// connection to a learned address would be judged denied and cut.
    pub learned: Option<&'a crate::fqdn::facts::Learned>,
}

/// Decides which connections a batch revokes, and has the dataplane cut them.
#[derive(Debug, Default)]
pub struct Revoker {
    tracker: Tracker,
    /// The last cut failed: the next judges every local pod's connections.
    rejudge_all: bool,
    /// The connections in the held sets, with when the kernel lets each go.
    held: BTreeMap<Flow, Instant>,
}

impl Revoker {
    /// After a batch: cuts the conntrack entries of this node's pods that the model now in
    /// the kernel no longer allows, and those of pods that are gone.
    pub fn cut(
        &mut self,
        dataplane: &mut impl Dataplane,
        batch: Applied,
    ) -> Result<CutStats, DataplaneError> {
        if batch.touched.is_none() {
            // The table was replaced whole, its held sets empty.
            self.held.clear();
        }
        // After a failed cut, every local pod's connections wait to be judged again.
        let touched = if self.rejudge_all {
            None
        } else {
            batch.touched
        };
        let scope = self.tracker.scope(batch.index, batch.node, touched);
        self.release_allowed(dataplane, &batch, &scope);
        // After a batch that only allows more, only the connections of pods that are
        // gone can have to go.
        let scope = if !batch.only_allows_more || touched.is_none() {
            scope
        } else {
            Scope {
                judge: Default::default(),
                ..scope
            }
        };
        self.rejudge_all = true;
        let stats = self.cut_scope(dataplane, &batch, &scope)?;
        self.rejudge_all = false;
        Ok(stats)
    }

    /// Lets go of the held connections of `scope` that `model` allows again (a change
    /// reversed within the hold): a new connection that happens to reuse a cut one's
    /// 5-tuple must not stay dropped once policy allows it. A hold about to expire is
    /// left to expire: deleting an element the kernel has just dropped fails the batch.
    fn release_allowed(&mut self, dataplane: &mut impl Dataplane, batch: &Applied, scope: &Scope) {
        let now = Instant::now();
        self.held.retain(|_, until| *until > now);
        if self.held.is_empty() || scope.judge.is_empty() {
            return;
        }
        let host = match dataplane.host_addresses() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), "cannot list the node's addresses; held connections stay held");
                return;
            }
        };
        let mut judge = judge(batch, scope, &host);
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
        match dataplane.hold(&batch.model.name, &keys, false) {
            Ok(()) => tracing::debug!(
                flows = allowed.len(),
                "held connections allowed again, let go"
            ),
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), flows = allowed.len(), "cannot let go of held connections; they expire on their own")
            }
        }
        // Either way they are no longer ours to release: gone, or left to expire.
        for flow in &allowed {
            self.held.remove(flow);
        }
    }

    /// Dumps the entries of `scope`, holds and deletes those the judge cuts.
    fn cut_scope(
        &mut self,
        dataplane: &mut impl Dataplane,
        batch: &Applied,
        scope: &Scope,
    ) -> Result<CutStats, DataplaneError> {
        if scope.is_empty() {
            return Ok(CutStats::default());
        }
        let t0 = Instant::now();
        let entries = dataplane.flows(&scope.addresses())?;
        if entries.is_empty() {
            return Ok(CutStats::default());
        }
        let t1 = Instant::now();
        let host = dataplane.host_addresses()?;
        let t2 = Instant::now();
        let mut judge = judge(batch, scope, &host);
        let revoked: Vec<_> = entries
            .iter()
            .filter(|e| judge.decide(&e.flow).cut())
            .collect();
        let t3 = Instant::now();
        // Held before the entries go: a packet of a cut connection still in flight (or
        // retransmitted) would otherwise open a new entry, in the reverse direction if
        // policy allows that one, and carry the cut connection on as its replies.
        let held: Vec<_> = revoked
            .iter()
            .filter_map(|e| e.flow.held())
            .flatten()
            .collect();
        match dataplane.hold(&batch.model.name, &held, true) {
            Ok(()) => {
                let until = Instant::now() + Duration::from_secs(HELD_TIMEOUT_SECS.into());
                for e in &revoked {
                    if e.flow.held().is_some() {
                        self.held.entry(e.flow).or_insert(until);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), flows = revoked.len(), "cannot hold cut connections; cutting them anyway")
            }
        }
        let cut = dataplane.delete_flows(&revoked)?;
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

/// The judge of `batch`'s model, with what its learned sets admit.
fn judge<'a>(
    batch: &Applied<'a>,
    scope: &'a Scope,
    host: &'a BTreeSet<std::net::IpAddr>,
) -> Judge<'a> {
    let judge = Judge::new(batch.model, scope, host);
    match batch.learned {
        Some(l) => judge.with_learned(l),
        None => judge,
    }
}
