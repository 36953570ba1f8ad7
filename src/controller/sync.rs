//! The sync loop: one OS thread that owns the node's state and the dataplane.
//!
//! ```text
//! watchers --Msg--> [ apply to NodeState, coalesce ] --> model --> dataplane (full | update)
//!                              every `resync`: drifted? --> full sync
//! ```
//!
//! Nothing reaches the kernel before every kind has been listed once: the rules an earlier
//! instance left stay in force until the first full sync replaces them. After that the
//! events of each coalescing window become one incremental batch. A failed batch changes
//! nothing (it is atomic); the loop then retries with a full sync, with backoff. When
//! each of these happens is [`super::schedule`]'s (pure, tested with made-up instants);
//! this module is the driver that does it, on any [`Source`] of messages and time.
//!
//! Every turn of the loop beats the liveness heartbeat (at least once a second when
//! idle), and the time of each event is split into stages (see [`Stage`]).

use crate::index::PodKey;
use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dataplane::{Dataplane, DataplaneError};
use super::metrics::{Metrics, Stage};
use super::revoker::{Applied, Revoker};
use super::schedule::{CatchUp, Schedule};
use crate::index::Index;
use crate::input::{Kind, Object, ObjectData};
use crate::state::{Batch, NodeState, Relist};

/// What the watchers tell the sync loop.
#[derive(Debug)]
pub enum Msg {
    /// A (re)list of `kind` starts: the objects that follow replace what the index holds.
    Init(Kind),
    InitApply(Object),
    InitDone(Kind),
    Apply(Object),
    Delete(Kind, Option<String>, String),
    /// This node's pod CIDRs (`spec.podCIDRs` of its Node object), first when its list
    /// completes, then on every change.
    NodeCidrs(Vec<ipnet::IpNet>),
    /// The verdict reader wants the state the kernel holds ([`super::board::Board`]):
    /// published at once when nothing is pending, else when the pending batch lands.
    VerdictState,
    Shutdown,
}

/// A message and the moment its watcher yielded it.
#[derive(Debug)]
pub struct Stamped {
    pub at: Instant,
    pub msg: Msg,
}

impl Stamped {
    pub fn now(msg: Msg) -> Self {
        Stamped {
            at: Instant::now(),
            msg,
        }
    }
}

/// Where the loop's messages and time come from: the watchers' channel and the clock,
/// or a script with made-up instants in tests.
pub trait Source {
    fn now(&mut self) -> Instant;
    /// Waits for the next message until `deadline`.
    fn recv_until(&mut self, deadline: Instant) -> Result<Stamped, RecvTimeoutError>;
    /// The next message already there, if any.
    fn try_next(&mut self) -> Option<Stamped>;
}

impl Source for Receiver<Stamped> {
    fn now(&mut self) -> Instant {
        Instant::now()
    }
    fn recv_until(&mut self, deadline: Instant) -> Result<Stamped, RecvTimeoutError> {
        self.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    }
    fn try_next(&mut self) -> Option<Stamped> {
        self.try_recv().ok()
    }
}

/// What [`SyncLoop::catch_up`] ended with.
enum CatchUpEnd {
    /// The channel is empty, or the time for it ran out.
    Done,
    /// A message that arrived after the batch's time: it opens the next window.
    Later(Box<Stamped>),
    Shutdown,
}

/// A policy (NetworkPolicy or ClusterNetworkPolicy) that could not be compiled, or
/// that holds what nftpol does not enforce, for the Event publisher (a Warning Event).
#[derive(Debug, Clone)]
pub struct CompileError {
    /// The Event's reason: [`COMPILE_ERROR`] or [`UNSUPPORTED`].
    pub reason: &'static str,
    pub kind: Kind,
    /// As served (the ClusterNetworkPolicy version watched).
    pub api_version: String,
    /// `None` for a cluster-scoped policy.
    pub namespace: Option<String>,
    pub name: String,
    pub message: String,
}

/// The Event reason of a policy that cannot be compiled (enforced fail-closed).
pub const COMPILE_ERROR: &str = "CompileError";
/// The Event reason of a ClusterNetworkPolicy with `domainNames` peers (they match nothing).
pub const UNSUPPORTED: &str = "Unsupported";
/// The Event reason of a NetworkPolicy over `--max-elements` (enforced fail-closed).
pub const OVER_BUDGET: &str = "OverBudget";

pub struct Settings {
    pub node: String,
    pub coalesce: Duration,
    pub resync: Duration,
    pub options: crate::ruleset::Options,
    /// `--default-deny-unknown` without `--pod-cidr`: the pod CIDRs come from this node's
    /// Node object, and nothing is applied before it has been listed.
    pub pod_cidrs_from_node: bool,
    /// `--keep-established`: leave the conntrack entries of revoked connections alone.
    pub keep_established: bool,
}

pub struct SyncLoop<D: Dataplane> {
    settings: Settings,
    state: NodeState,
    dataplane: D,
    /// Decides which connections each batch revokes (with `keep_established` off).
    revoker: Revoker,
    metrics: Arc<Metrics>,
    errors: Box<dyn Fn(CompileError) + Send>,
    listed: BTreeSet<Kind>,
    relist: Relist,
    /// When the watcher yielded the oldest event not yet in the kernel (its latency
    /// includes any time it waited in the channel behind a busy loop), and when the loop
    /// took the first of them (the coalescing window's start, for the wait stage).
    pending_since: Option<Instant>,
    pending_received: Option<Instant>,
    /// Time spent applying the pending events to the state, and the longest watch stage
    /// among them, for the `synced` log line.
    pending_state: Duration,
    pending_watch: Duration,
    /// This node's Node object has been listed (only waited for with `pod_cidrs_from_node`).
    node_listed: bool,
    /// Where each applied generation goes for the verdict reader (with verdict logs on).
    board: Option<Arc<super::board::Board>>,
}

/// Nothing is synced before each has been listed once. ClusterNetworkPolicies count as
/// listed (empty) when the API server does not serve them.
const ALL_KINDS: [Kind; 5] = [
    Kind::Namespace,
    Kind::Pod,
    Kind::NetworkPolicy,
    Kind::ClusterNetworkPolicy,
    Kind::Node,
];

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
        // Events recompute the pods they touch once per batch, however many touch them.
        state.set_batching(true);
        SyncLoop {
            settings,
            state,
            dataplane,
            revoker: Revoker::default(),
            metrics,
            errors,
            listed: BTreeSet::new(),
            relist: Relist::default(),
            pending_since: None,
            pending_received: None,
            pending_state: Duration::ZERO,
            pending_watch: Duration::ZERO,
            node_listed: false,
            board: None,
        }
    }

    /// Publishes the index and graph of every applied batch to `board`, for the verdict
    /// reader (a copy of both per batch: only with verdict logs on).
    pub fn with_board(mut self, board: Arc<super::board::Board>) -> Self {
        self.board = Some(board);
        self
    }

    /// After each applied batch, and after a change that needed none: counts a
    /// generation, and publishes while records are wanted.
    fn applied_to_board(&self) {
        let Some(board) = &self.board else { return };
        board.applied();
        if board.wanted() {
            self.publish();
        }
    }

    fn publish(&self) {
        let Some(board) = &self.board else { return };
        let graph = self.state.graph().clone();
        self.metrics
            .retain_verdict_pods(&graph.pods.keys().cloned().collect());
        board.publish(self.state.index().clone(), graph);
    }

    /// Takes this node's pod CIDRs for `--default-deny-unknown`; a change rebuilds the
    /// model and replaces the table whole (chains change, not only elements).
    fn node_cidrs(&mut self, cidrs: Vec<ipnet::IpNet>) {
        self.node_listed = true;
        if !self.settings.pod_cidrs_from_node {
            return;
        }
        if cidrs.is_empty() {
            tracing::warn!(node = %self.settings.node, "--default-deny-unknown: the Node object has no spec.podCIDRs; unknown addresses cannot be dropped (set --pod-cidr)");
        }
        let options = crate::ruleset::Options {
            pod_cidrs: cidrs,
            ..self.state.options().clone()
        };
        // A change rebuilds the model: the state then asks for a full sync.
        if self.state.set_options(options) {
            tracing::info!(node = %self.settings.node, pod_cidrs = ?self.state.options().pod_cidrs, "pod CIDRs from the Node object");
        }
    }

    fn apply(&mut self, obj: Object) {
        let (kind, ns, name) = (
            obj.kind(),
            obj.namespace().map(str::to_string),
            obj.name().to_string(),
        );
        let api_version = match &obj.data {
            ObjectData::ClusterNetworkPolicy(c) => c.value["apiVersion"].as_str(),
            _ => Some("networking.k8s.io/v1"),
        }
        .unwrap_or_default()
        .to_string();
        let (update, error) = self.state.apply_reporting(obj);
        if kind == Kind::ClusterNetworkPolicy && update.changed {
            self.domain_names_event(&name, &api_version);
        }
        if let Some(e) = error {
            self.metrics.compile_error(kind);
            if matches!(kind, Kind::NetworkPolicy | Kind::ClusterNetworkPolicy) {
                tracing::warn!(kind = kind.name(), namespace = ns.as_deref().unwrap_or(""), name = %name, error = %e, "cannot compile; enforcing it fail-closed");
                (self.errors)(CompileError {
                    reason: COMPILE_ERROR,
                    kind,
                    api_version,
                    namespace: ns,
                    name,
                    message: e.to_string(),
                });
            } else {
                tracing::warn!(kind = kind.name(), namespace = ns.as_deref().unwrap_or(""), name = %name, error = %e, "cannot read the object; its previous version, if any, stays");
            }
        }
    }

    /// A Warning Event, once, for each NetworkPolicy that went over `--max-elements`.
    fn report_over_budget(&self) {
        let max = self.state.options().max_elements.unwrap_or(usize::MAX);
        for (policy, elements) in self.metrics.over_budget(self.state.over_budget()) {
            let (ns, name) = policy.split_once('/').unwrap_or(("", &policy));
            let message = format!("its rules come to {elements} set elements on this node, over --max-elements {max}: enforced fail-closed (it isolates the pods it selects and allows nothing)");
            tracing::warn!(
                namespace = ns,
                name,
                elements,
                max,
                "NetworkPolicy over the element budget; enforcing it fail-closed"
            );
            (self.errors)(CompileError {
                reason: OVER_BUDGET,
                kind: Kind::NetworkPolicy,
                api_version: "networking.k8s.io/v1".into(),
                namespace: Some(ns.to_string()),
                name: name.to_string(),
                message,
            });
        }
    }

    /// A Warning Event for a ClusterNetworkPolicy with `domainNames` peers; called when
    /// it changed, so said once per version of the policy, as the index logs it.
    fn domain_names_event(&self, name: &str, api_version: &str) {
        let unsupported = self
            .state
            .index()
            .cnp(name)
            .is_some_and(|e| e.policy.has_domain_names());
        if unsupported {
            (self.errors)(CompileError {
                reason: UNSUPPORTED,
                kind: Kind::ClusterNetworkPolicy,
                api_version: api_version.to_string(),
                namespace: None,
                name: name.to_string(),
                message: "domainNames peers are not supported: they match nothing (they can only Accept, so nothing is opened by them)".into(),
            });
        }
    }

    /// Applies one message to the state; returns false on Shutdown.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Shutdown => return false,
            // The batch being made publishes it (the board is wanted now).
            Msg::VerdictState => {}
            // A (re)list is applied as it arrives, and what it did not mention is deleted
            // at its end; nothing is synced in between, so the kernel never sees half a
            // relist, and no list is held in memory.
            Msg::Init(kind) => self.relist.begin(kind),
            Msg::InitApply(obj) => {
                self.relist.saw(&obj);
                self.apply(obj);
            }
            Msg::InitDone(kind) => {
                let seen = self.relist.end(kind);
                self.state.reset(kind, &seen);
                if self.listed.insert(kind) {
                    tracing::info!(kind = kind.name(), "initial list complete");
                    if ALL_KINDS.iter().all(|k| self.listed.contains(k)) {
                        self.state.set_deferred(false);
                    }
                }
            }
            Msg::Apply(obj) => self.apply(obj),
            Msg::Delete(kind, ns, name) => {
                self.state.delete(kind, ns.as_deref(), &name);
            }
            Msg::NodeCidrs(cidrs) => self.node_cidrs(cidrs),
        }
        true
    }

    /// Every kind listed once (and this node, when its pod CIDRs are needed), and no
    /// relist in progress.
    fn all_listed(&self) -> bool {
        ALL_KINDS.iter().all(|k| self.listed.contains(k))
            && !self.relist.in_progress()
            && (self.node_listed || !self.settings.pod_cidrs_from_node)
    }

    /// Brings the kernel to the model. Returns false when the batch failed.
    fn sync(&mut self) -> bool {
        let begun = Instant::now();
        if self.state.settle() {
            let took = begun.elapsed();
            self.metrics.stage(Stage::State, took);
            self.pending_state += took;
        }
        self.report_over_budget();
        let idx = self.state.index();
        self.metrics.objects(ALL_KINDS.map(|k| (k, idx.count(k))));
        let start = Instant::now();
        let pods = self.state.pending().len();
        let (full, result) = match self.state.batch() {
            Batch::Full(model) => (true, self.dataplane.full_sync(model)),
            Batch::Nothing => {
                // Nothing for the kernel, but the state may have moved (a policy renamed,
                // one that changes no rule): records must be explained by the new state.
                self.state.acknowledged(false);
                self.applied_to_board();
                self.settled();
                return true;
            }
            Batch::Update { before, after } => match self.dataplane.update(&before, &after) {
                Err(DataplaneError::NeedsFullSync) => {
                    (true, self.dataplane.full_sync(self.state.model()))
                }
                other => (false, other),
            },
        };
        match result {
            Ok(stats) => {
                let took = start.elapsed();
                let latency = self.pending_since.map(|t| t.elapsed());
                let wait = self
                    .pending_received
                    .map(|t| begun.saturating_duration_since(t));
                let diff = took.saturating_sub(stats.kernel);
                self.metrics.synced(full, took, stats.messages, latency);
                if let Some(wait) = wait {
                    self.metrics.stage(Stage::Wait, wait);
                    self.metrics.stage(Stage::Diff, diff);
                    self.metrics.stage(Stage::Kernel, stats.kernel);
                }
                tracing::info!(
                    full,
                    messages = stats.messages,
                    bytes = stats.bytes,
                    took_us = took.as_micros() as u64,
                    event_to_batch_us = latency.map(|l| l.as_micros() as u64),
                    watch_us = self.pending_watch.as_micros() as u64,
                    state_us = self.pending_state.as_micros() as u64,
                    wait_us = wait.map(|w| w.as_micros() as u64),
                    diff_us = diff.as_micros() as u64,
                    kernel_us = stats.kernel.as_micros() as u64,
                    pods,
                    "synced"
                );
                let covered = self.state.acknowledged(full);
                self.applied_to_board();
                self.cut_revoked(full, &covered, stats.only_allows_more);
                self.settled();
                true
            }
            Err(e) => {
                self.metrics.sync_error();
                tracing::error!(full, error = %e, "kernel batch failed; the previous ruleset stays in force, retrying with a full sync");
                if let DataplaneError::Unknown(_) = e {
                    tracing::warn!("outcome unknown: the next sync replaces the table whole");
                }
                self.state.kernel_unknown();
                false
            }
        }
    }

    /// Revoked means revoked: once the batch is in the kernel, the entries of connections
    /// it no longer allows are deleted (the touched pods'; every local pod's after a full
    /// sync). A failure is logged and leaves the rules as they are.
    fn cut_revoked(&mut self, full: bool, covered: &BTreeSet<PodKey>, only_allows_more: bool) {
        if self.settings.keep_established {
            return;
        }
        let batch = Applied {
            model: self.state.model(),
            index: self.state.index(),
            node: &self.settings.node,
            touched: (!full).then_some(covered),
            only_allows_more,
        };
        match self.revoker.cut(&mut self.dataplane, batch) {
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
        let Some(kernel) = self.state.kernel() else {
            return;
        };
        match self.dataplane.drifted(kernel) {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(
                    "live table differs from the model (drift); repairing with a full sync"
                );
                self.metrics.drift_repaired();
                self.state.kernel_unknown();
                self.sync();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the live table back"),
        }
    }

    /// The kernel holds every pending change: nothing is pending any more.
    fn settled(&mut self) {
        self.pending_since = None;
        self.pending_received = None;
        self.pending_state = Duration::ZERO;
        self.pending_watch = Duration::ZERO;
    }

    /// Takes one message off the channel: its watch and state stages are measured here.
    fn receive(&mut self, stamped: Stamped) -> bool {
        let now = Instant::now();
        let watch = now.saturating_duration_since(stamped.at);
        self.metrics.stage(Stage::Watch, watch);
        self.pending_watch = self.pending_watch.max(watch);
        let alive = self.handle(stamped.msg);
        let took = now.elapsed();
        self.metrics.stage(Stage::State, took);
        self.pending_state += took;
        self.pending_since = Some(self.pending_since.map_or(stamped.at, |t| t.min(stamped.at)));
        self.pending_received.get_or_insert(now);
        alive
    }

    /// Takes off the channel every message that reached it by `until`, for the batch
    /// about to be made, within the bounds of a [`CatchUp`].
    fn catch_up(&mut self, src: &mut impl Source, until: Instant) -> CatchUpEnd {
        let bounds = CatchUp::new(until, src.now());
        while bounds.working(src.now()) {
            match src.try_next() {
                Some(stamped) if bounds.takes(stamped.at) => {
                    self.metrics.beat();
                    if !self.receive(stamped) {
                        return CatchUpEnd::Shutdown;
                    }
                }
                Some(later) => return CatchUpEnd::Later(Box::new(later)),
                None => return CatchUpEnd::Done,
            }
        }
        CatchUpEnd::Done
    }

    /// Runs until Shutdown or until every sender is gone.
    pub fn run(self, mut rx: Receiver<Stamped>) {
        self.run_from(&mut rx)
    }

    /// [`SyncLoop::run`] on any [`Source`]: each turn waits for a message until the
    /// schedule's deadline, takes it in, then makes the batch and the drift check that
    /// are due. No `continue` after a message: a window that has run out is synced now,
    /// even while more messages wait (else a steady stream would starve the kernel).
    pub fn run_from(mut self, src: &mut impl Source) {
        let mut schedule = Schedule::new(src.now(), self.settings.coalesce, self.settings.resync);
        let mut later: Option<Stamped> = None;
        loop {
            self.metrics.wakeup();
            let now = src.now();
            let next = match later.take() {
                Some(stamped) => Ok(stamped),
                None => src.recv_until(schedule.next_deadline(now, self.all_listed())),
            };
            match next {
                Ok(stamped) => {
                    if !self.take(&mut schedule, stamped) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = src.now();
            // While a list is incomplete nothing is synced (nor checked for drift).
            if !self.all_listed() {
                continue;
            }
            if schedule.batch_due(now, self.state.kernel().is_some()) {
                match self.catch_up(src, now) {
                    CatchUpEnd::Shutdown => break,
                    CatchUpEnd::Later(stamped) => later = Some(*stamped),
                    CatchUpEnd::Done => {}
                }
                // The backlog may have begun a relist: the kernel never sees half of one.
                if !self.all_listed() {
                    continue;
                }
                let ok = self.sync();
                schedule.on_applied(now, ok);
            }
            if schedule.drift_due(now) {
                self.check_drift();
            }
        }
        tracing::info!("shutting down; the rules stay in place");
    }

    /// Takes one message in; false on Shutdown.
    fn take(&mut self, schedule: &mut Schedule, stamped: Stamped) -> bool {
        if let Msg::VerdictState = stamped.msg {
            // Nothing pending: the state is what the kernel holds.
            if !schedule.pending() && self.state.kernel().is_some() {
                self.publish();
            }
            return true;
        }
        let arrived = stamped.at;
        if !self.receive(stamped) {
            return false;
        }
        schedule.on_event(arrived);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use serde_json::{json, Value};

    use super::*;
    use crate::controller::dataplane::BatchStats;
    use crate::ruleset::{Ruleset, View};

    /// The messages still to come, shared by the source and the dataplane.
    type Queue = Arc<Mutex<VecDeque<Stamped>>>;

    /// A scripted watcher on a made-up clock: each message arrives at its stamp, and
    /// handling one costs `cost` of the loop's time. The loop sees nothing else of time.
    struct Scripted {
        clock: Instant,
        queue: Queue,
        cost: Duration,
        turns: usize,
    }

    impl Scripted {
        fn pop(&mut self) -> Stamped {
            let m = self.queue.lock().unwrap().pop_front().unwrap();
            self.clock = self.clock.max(m.at) + self.cost;
            m
        }
        fn front(&self) -> Option<Instant> {
            self.queue.lock().unwrap().front().map(|m| m.at)
        }
    }

    impl Source for Scripted {
        fn now(&mut self) -> Instant {
            self.clock
        }
        fn recv_until(&mut self, deadline: Instant) -> Result<Stamped, RecvTimeoutError> {
            self.turns += 1;
            assert!(self.turns < 100_000, "the loop spins");
            match self.front() {
                None => Err(RecvTimeoutError::Disconnected),
                Some(at) if at <= deadline.max(self.clock) => Ok(self.pop()),
                Some(_) => {
                    self.clock = self.clock.max(deadline);
                    Err(RecvTimeoutError::Timeout)
                }
            }
        }
        fn try_next(&mut self) -> Option<Stamped> {
            match self.front() {
                Some(at) if at <= self.clock => Some(self.pop()),
                _ => None,
            }
        }
    }

    /// Counts batches (full syncs and updates), noting how many messages were still to
    /// come at each; never fails.
    struct Counting {
        queue: Queue,
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl Counting {
        fn batch(&mut self) -> Result<BatchStats, DataplaneError> {
            let left = self.queue.lock().unwrap().len();
            self.batches.lock().unwrap().push(left);
            Ok(BatchStats::default())
        }
    }

    impl Dataplane for Counting {
        fn full_sync(&mut self, _: &Ruleset) -> Result<BatchStats, DataplaneError> {
            self.batch()
        }
        fn update(&mut self, _: &View, _: &View) -> Result<BatchStats, DataplaneError> {
            self.batch()
        }
        fn drifted(&mut self, _: &Ruleset) -> Result<bool, DataplaneError> {
            Ok(false)
        }
    }

    fn object(v: Value) -> Object {
        crate::input::object_from_value(v, "test").unwrap().unwrap()
    }

    /// Pod x/a on node n1; `db` decides whether policy `only-web` isolates it.
    fn pod(db: bool) -> Object {
        let labels = if db {
            json!({"pod": "a", "role": "db"})
        } else {
            json!({"pod": "a"})
        };
        object(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "x", "name": "a", "labels": labels},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.11", "podIPs": [{"ip": "10.244.1.11"}]}}))
    }

    fn at(at: Instant, msg: Msg) -> Stamped {
        Stamped { at, msg }
    }

    fn list(out: &mut VecDeque<Stamped>, t: Instant, kind: Kind, objects: Vec<Object>) {
        out.push_back(at(t, Msg::Init(kind)));
        for o in objects {
            out.push_back(at(t, Msg::InitApply(o)));
        }
        out.push_back(at(t, Msg::InitDone(kind)));
    }

    fn settings() -> Settings {
        Settings {
            node: "n1".into(),
            coalesce: Duration::from_millis(5),
            resync: Duration::from_secs(3600),
            options: Default::default(),
            pod_cidrs_from_node: false,
            keep_established: true,
        }
    }

    /// Runs a loop over `script` on a clock starting at `t0`, handling each message in
    /// `cost`; returns the messages left at each batch, and the loop's turns.
    fn run(t0: Instant, script: VecDeque<Stamped>, cost: Duration) -> (Vec<usize>, u64) {
        let queue: Queue = Arc::new(Mutex::new(script));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Metrics::default());
        let dataplane = Counting {
            queue: queue.clone(),
            batches: batches.clone(),
        };
        let sync = SyncLoop::new(settings(), dataplane, metrics.clone(), Box::new(|_| {}));
        let mut src = Scripted {
            clock: t0,
            queue,
            cost,
            turns: 0,
        };
        sync.run_from(&mut src);
        let batches = batches.lock().unwrap().clone();
        (batches, metrics.wakeups())
    }

    /// A list that is slow to complete (a large cluster decoding on a busy node) must not
    /// make the loop spin: the window its first objects opened is past long before the
    /// list ends, and nothing may be synced until it does. Then the batch comes at once.
    #[test]
    fn a_list_in_progress_does_not_spin_the_loop() {
        let t0 = Instant::now();
        let mut script = VecDeque::new();
        list(&mut script, t0, Kind::Namespace, vec![]);
        script.push_back(at(t0, Msg::Init(Kind::Pod)));
        script.push_back(at(t0, Msg::InitApply(pod(false))));
        // The pod list ends 300 ms later: sixty windows, well under the heartbeat.
        let t1 = t0 + Duration::from_millis(300);
        script.push_back(at(t1, Msg::InitDone(Kind::Pod)));
        list(&mut script, t1, Kind::NetworkPolicy, vec![]);
        list(&mut script, t1, Kind::ClusterNetworkPolicy, vec![]);
        list(&mut script, t1, Kind::Node, vec![]);
        script.push_back(at(t1 + Duration::from_millis(100), Msg::Shutdown));
        let sent = script.len() as u64;
        let (batches, turns) = run(t0, script, Duration::ZERO);
        // A loop that waits wakes at most once per message; one that spins never ends
        // (the source panics).
        assert!(
            turns <= sent,
            "{turns} turns of the loop for {sent} messages"
        );
        assert_eq!(
            batches,
            vec![1],
            "the first sync, once listed, before Shutdown"
        );
    }

    /// Events arriving faster than the loop handles them (a rollout, a drain, the relist
    /// of a large cluster: the channel never empties) must reach the kernel window by
    /// window while they keep coming, not once the stream stops. Here the producer sends
    /// an event every millisecond and each costs the loop two: the channel never empties
    /// until the stream ends, so a loop that syncs only on an empty channel makes one
    /// batch, at the end.
    #[test]
    fn a_stream_faster_than_the_loop_is_batched_while_it_lasts() {
        let t0 = Instant::now();
        let mut script = VecDeque::new();
        let ns = object(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "labels": {"ns": "x"}}}));
        list(&mut script, t0, Kind::Namespace, vec![ns]);
        list(&mut script, t0, Kind::Pod, vec![pod(false)]);
        let policy = object(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": "x", "name": "only-web"},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"]}}));
        list(&mut script, t0, Kind::NetworkPolicy, vec![policy]);
        list(&mut script, t0, Kind::ClusterNetworkPolicy, vec![]);
        list(&mut script, t0, Kind::Node, vec![]);
        // Every event is a new pod the policy isolates: each batch has a change.
        let start = t0 + Duration::from_secs(1);
        let events = 2000u32;
        for i in 0..events {
            let t = start + Duration::from_millis(i.into());
            let ip = format!("10.244.{}.{}", 100 + i / 200, 10 + i % 200);
            let db = object(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"namespace": "x", "name": format!("db-{i}"), "labels": {"role": "db"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}));
            script.push_back(at(t, Msg::Apply(db)));
        }
        let end = start + Duration::from_millis(events.into());
        script.push_back(at(end, Msg::Shutdown));
        let (batches, _) = run(t0, script, Duration::from_millis(2));
        assert_eq!(
            batches.first(),
            Some(&(events as usize + 1)),
            "the first sync, before the stream"
        );
        // Each batch stops taking in at the events that arrived after it was due, or after
        // the catch-up's time: 2000 events of 2 ms, about 125 a batch.
        let during = batches[1..].iter().filter(|left| **left > 1).count();
        assert!(
            during >= 10,
            "{during} batches while {events} events streamed in (5 ms windows): {batches:?}"
        );
        assert!(
            batches.len() < 40,
            "a batch per handful of events, not per backlog: {batches:?}"
        );
    }
}
