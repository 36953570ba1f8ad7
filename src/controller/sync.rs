//! The sync loop: one OS thread that owns the node's state and the dataplane.
//!
//! ```text
//! watchers --Msg--> [ apply to NodeState, coalesce ] --> model --> dataplane (full | update)
//!                              every `resync`: drifted? --> full sync
//! ```
//!
//! Nothing reaches the kernel before every kind has been listed once: the rules an earlier
//! instance left stay in force until the first full sync replaces them. After that each
//! burst of events becomes one incremental batch. A failed batch changes nothing (it is
//! atomic); the loop then retries with a full sync, with backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dataplane::{Dataplane, DataplaneError};
use super::metrics::Metrics;
use crate::index::Index;
use crate::input::{Kind, Object};
use crate::ruleset::{Ruleset, View};
use crate::state::NodeState;

/// What the watchers tell the sync loop.
#[derive(Debug)]
pub enum Msg {
    /// A (re)list of `kind` starts: the objects that follow replace what the index holds.
    Init(Kind),
    InitApply(Object),
    InitDone(Kind),
    Apply(Object),
    Delete(Kind, Option<String>, String),
    Shutdown,
}

/// A policy that could not be compiled, for the Event publisher.
#[derive(Debug, Clone)]
pub struct CompileError {
    pub namespace: String,
    pub name: String,
    pub message: String,
}

pub struct Settings {
    pub node: String,
    pub coalesce: Duration,
    pub resync: Duration,
    pub options: crate::ruleset::Options,
    /// `--keep-established`: leave the conntrack entries of revoked connections alone.
    pub keep_established: bool,
}

pub struct SyncLoop<D: Dataplane> {
    settings: Settings,
    state: NodeState,
    dataplane: D,
    metrics: Arc<Metrics>,
    errors: Box<dyn Fn(CompileError) + Send>,
    listed: BTreeSet<Kind>,
    relisting: BTreeMap<Kind, BTreeSet<(String, String)>>,
    /// What the kernel holds, as far as we know; `None` before the first full sync or
    /// after a failure that leaves the kernel state unknown.
    applied: Option<Ruleset>,
    /// Pods recomputed since the last applied batch: the next batch is the difference of
    /// these pods' objects only.
    touched: BTreeSet<(String, String)>,
    /// When the oldest event not yet in the kernel arrived.
    pending_since: Option<Instant>,
}

const ALL_KINDS: [Kind; 3] = [Kind::Namespace, Kind::Pod, Kind::NetworkPolicy];

impl<D: Dataplane> SyncLoop<D> {
    pub fn new(
        settings: Settings,
        dataplane: D,
        metrics: Arc<Metrics>,
        errors: Box<dyn Fn(CompileError) + Send>,
    ) -> Self {
        let mut state =
            NodeState::with_options(Index::new(), Some(&settings.node), settings.options.clone());
        // The initial list goes to the index only; one build follows it.
        state.set_deferred(true);
        SyncLoop {
            settings,
            state,
            dataplane,
            metrics,
            errors,
            listed: BTreeSet::new(),
            relisting: BTreeMap::new(),
            applied: None,
            touched: BTreeSet::new(),
            pending_since: None,
        }
    }

    fn apply(&mut self, obj: Object) {
        let (kind, ns, name) = (
            obj.kind(),
            obj.namespace().map(str::to_string),
            obj.name().to_string(),
        );
        let (update, error) = self.state.apply_reporting(obj);
        self.touched.extend(update.recomputed);
        if let Some(e) = error {
            tracing::warn!(kind = kind.name(), namespace = ns.as_deref().unwrap_or(""), name = %name, error = %e, "cannot compile; enforcing it fail-closed");
            self.metrics.compile_error();
            if kind == Kind::NetworkPolicy {
                (self.errors)(CompileError {
                    namespace: ns.unwrap_or_default(),
                    name,
                    message: e.to_string(),
                });
            }
        }
    }

    /// Applies one message to the state; returns false on Shutdown.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Shutdown => return false,
            // A (re)list is applied as it arrives, and what it did not mention is deleted
            // at its end; nothing is synced in between, so the kernel never sees half a
            // relist, and no list is held in memory.
            Msg::Init(kind) => {
                self.relisting.insert(kind, BTreeSet::new());
            }
            Msg::InitApply(obj) => {
                let key = (
                    obj.namespace().unwrap_or("").to_string(),
                    obj.name().to_string(),
                );
                if let Some(seen) = self.relisting.get_mut(&obj.kind()) {
                    seen.insert(key);
                }
                self.apply(obj);
            }
            Msg::InitDone(kind) => {
                let seen = self.relisting.remove(&kind).unwrap_or_default();
                for (ns, name) in self.state.index().keys(kind) {
                    if !seen.contains(&(ns.clone(), name.clone())) {
                        let ns = (kind != Kind::Namespace).then_some(ns);
                        let update = self.state.delete(kind, ns.as_deref(), &name);
                        self.touched.extend(update.recomputed);
                    }
                }
                if self.listed.insert(kind) {
                    tracing::info!(kind = kind.name(), "initial list complete");
                    if ALL_KINDS.iter().all(|k| self.listed.contains(k)) {
                        self.state.set_deferred(false);
                    }
                }
            }
            Msg::Apply(obj) => self.apply(obj),
            Msg::Delete(kind, ns, name) => {
                let update = self.state.delete(kind, ns.as_deref(), &name);
                self.touched.extend(update.recomputed);
            }
        }
        true
    }

    /// Every kind listed once, and no relist in progress.
    fn all_listed(&self) -> bool {
        ALL_KINDS.iter().all(|k| self.listed.contains(k)) && self.relisting.is_empty()
    }

    /// Brings the kernel to the model. Returns false when the batch failed.
    fn sync(&mut self) -> bool {
        let idx = self.state.index();
        self.metrics.objects(
            idx.keys(Kind::Namespace).len(),
            idx.keys(Kind::Pod).len(),
            idx.keys(Kind::NetworkPolicy).len(),
        );
        let model = self.state.model();
        let start = Instant::now();
        let (full, result) = match &self.applied {
            None => (true, self.dataplane.full_sync(model)),
            Some(_) if self.touched.is_empty() => {
                self.pending_since = None;
                return true;
            }
            Some(old) => {
                // Only the touched pods' objects (and the maps) can differ.
                let before = View::pods(old, &self.touched);
                let after = View::pods(model, &self.touched);
                if before == after {
                    self.touched.clear();
                    self.pending_since = None;
                    return true;
                }
                match self.dataplane.update(&before, &after) {
                    Err(DataplaneError::NeedsFullSync) => (true, self.dataplane.full_sync(model)),
                    other => (false, other),
                }
            }
        };
        match result {
            Ok(stats) => {
                let took = start.elapsed();
                let latency = self.pending_since.map(|t| t.elapsed());
                self.metrics.synced(full, took, stats.messages, latency);
                tracing::info!(
                    full,
                    messages = stats.messages,
                    bytes = stats.bytes,
                    took_us = took.as_micros() as u64,
                    event_to_batch_us = latency.map(|l| l.as_micros() as u64),
                    pods = self.touched.len(),
                    "synced"
                );
                match &mut self.applied {
                    Some(applied) if !full => crate::ruleset::patch(applied, model, &self.touched),
                    _ => self.applied = Some(model.clone()),
                }
                self.cut_revoked(full);
                self.touched.clear();
                self.pending_since = None;
                true
            }
            Err(e) => {
                self.metrics.sync_error();
                tracing::error!(full, error = %e, "kernel batch failed; the previous ruleset stays in force, retrying with a full sync");
                if let DataplaneError::Unknown(_) = e {
                    tracing::warn!("outcome unknown: the next sync replaces the table whole");
                }
                self.applied = None;
                self.touched.clear();
                false
            }
        }
    }

    /// Revoked means revoked: once the batch is in the kernel, the entries of connections
    /// it no longer allows are deleted (the touched pods'; every local pod's after a full
    /// sync). A failure is logged and leaves the rules as they are.
    fn cut_revoked(&mut self, full: bool) {
        if self.settings.keep_established {
            return;
        }
        let touched = (!full).then_some(&self.touched);
        let (model, index) = (self.state.model(), self.state.index());
        match self
            .dataplane
            .cut_revoked(model, index, &self.settings.node, touched)
        {
            Ok(c) => {
                self.metrics.conntrack_cut(c.cut);
                if c.cut > 0 {
                    tracing::info!(
                        examined = c.examined,
                        cut = c.cut,
                        "revoked connections cut"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot cut revoked connections"),
        }
    }

    fn check_drift(&mut self) {
        let Some(applied) = &self.applied else { return };
        match self.dataplane.drifted(applied) {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(
                    "live table differs from the model (drift); repairing with a full sync"
                );
                self.metrics.drift_repaired();
                self.applied = None;
                self.sync();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the live table back"),
        }
    }

    /// Runs until Shutdown or until every sender is gone.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut dirty_since: Option<Instant> = None;
        let mut next_resync = Instant::now() + self.settings.resync;
        let mut backoff = Duration::from_millis(250);
        let mut retry_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut deadline = next_resync;
            if let Some(t) = dirty_since {
                deadline = deadline.min(t + self.settings.coalesce);
            }
            if let Some(t) = retry_at {
                deadline = deadline.min(t);
            }
            match rx.recv_timeout(deadline.saturating_duration_since(now)) {
                Ok(msg) => {
                    if !self.handle(msg) {
                        tracing::info!("shutting down; the rules stay in place");
                        return;
                    }
                    let now = Instant::now();
                    dirty_since.get_or_insert(now);
                    self.pending_since.get_or_insert(now);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if !self.all_listed() {
                continue;
            }
            let due = dirty_since.is_some_and(|t| now >= t + self.settings.coalesce)
                || retry_at.is_some_and(|t| now >= t)
                || self.applied.is_none() && retry_at.is_none();
            if due {
                dirty_since = None;
                if self.sync() {
                    retry_at = None;
                    backoff = Duration::from_millis(250);
                } else {
                    retry_at = Some(now + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            if now >= next_resync {
                next_resync = now + self.settings.resync;
                self.check_drift();
            }
        }
    }
}
