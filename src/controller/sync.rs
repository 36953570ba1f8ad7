//! The sync loop: one OS thread that owns the node's state and the dataplane.
//!
//! ```text
//! watchers --Msg--> [ apply to NodeState, coalesce ] --> model --> dataplane (full | update)
//!                              every `resync`: drifted? --> full sync
//! ```
//!
//! Nothing reaches the kernel before every kind has been listed once: the rules an earlier
//! instance left stay in force until the first full sync replaces them. After that the
//! events of each coalescing window become one incremental batch: a batch starts at most
//! `coalesce` after the first event it holds, however fast events keep coming (the
//! window is a maximum delay, not a quiet period). A failed batch changes nothing (it is
//! atomic); the loop then retries with a full sync, with backoff.
//!
//! Every turn of the loop beats the liveness heartbeat (at least once a second when
//! idle), and the time of each event is split into stages (see [`Stage`]).

use crate::index::PodKey;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dataplane::{Dataplane, DataplaneError};
use super::metrics::{Metrics, Stage};
use crate::index::Index;
use crate::input::{Kind, Object, ObjectData};
use crate::state::{Batch, NodeState};

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

/// The most time a batch spends taking in a backlog before it is made. Above the time a
/// batch costs (tens of milliseconds on a large node), so that when the loop falls
/// behind, each batch takes many events and it catches up; below a liveness period.
const CATCH_UP_LIMIT: Duration = Duration::from_millis(250);

/// What [`SyncLoop::catch_up`] ended with.
enum CatchUp {
    /// The channel is empty.
    Done,
    /// A message that arrived after the batch's time: it opens the next window.
    Later(Box<Stamped>),
    Shutdown,
}

/// The longest the loop sleeps without beating the heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);

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
    metrics: Arc<Metrics>,
    errors: Box<dyn Fn(CompileError) + Send>,
    listed: BTreeSet<Kind>,
    relisting: BTreeMap<Kind, BTreeSet<(String, String)>>,
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
            metrics,
            errors,
            listed: BTreeSet::new(),
            relisting: BTreeMap::new(),
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
                        let ns = (!kind.cluster_scoped()).then_some(ns);
                        self.state.delete(kind, ns.as_deref(), &name);
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
            && self.relisting.is_empty()
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
                self.cut_revoked(full, &covered);
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
    fn cut_revoked(&mut self, full: bool, covered: &BTreeSet<PodKey>) {
        if self.settings.keep_established {
            return;
        }
        let touched = (!full).then_some(covered);
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

    /// Takes off the channel every message that reached it by `until`, for the batch about
    /// to be made: behind a busy loop that is a backlog, and taking it whole is what lets
    /// the loop catch up (one batch, not one per handful of events). Bounded by the time of
    /// arrival, so a producer faster than the loop cannot starve the kernel: the first
    /// message that arrived later is handed back to open the next window; and by
    /// [`CATCH_UP_LIMIT`] of work, so that even a loop that cannot keep up at all (events
    /// cost more to handle than the time between them) still programs the kernel.
    fn catch_up(&mut self, rx: &Receiver<Stamped>, until: Instant) -> CatchUp {
        let stop = Instant::now() + CATCH_UP_LIMIT;
        while Instant::now() < stop {
            match rx.try_recv() {
                Ok(stamped) if stamped.at <= until => {
                    self.metrics.beat();
                    if !self.receive(stamped) {
                        return CatchUp::Shutdown;
                    }
                }
                Ok(later) => return CatchUp::Later(Box::new(later)),
                Err(_) => return CatchUp::Done,
            }
        }
        CatchUp::Done
    }

    /// Runs until Shutdown or until every sender is gone.
    pub fn run(mut self, rx: Receiver<Stamped>) {
        let mut window: Option<Instant> = None;
        let mut later: Option<Stamped> = None;
        let mut next_resync = Instant::now() + self.settings.resync;
        let mut backoff = Duration::from_millis(250);
        let mut retry_at: Option<Instant> = None;
        loop {
            self.metrics.wakeup();
            let now = Instant::now();
            let mut deadline = next_resync.min(now + HEARTBEAT);
            // While a list is incomplete nothing is synced, so neither the window nor a
            // retry may wake the loop: once past, they would make every wait zero and
            // the loop would spin beside the watcher decoding the list.
            if self.all_listed() {
                if let Some(t) = window {
                    deadline = deadline.min(t + self.settings.coalesce);
                }
                if let Some(t) = retry_at {
                    deadline = deadline.min(t);
                }
            }
            // No `continue` after a message: a window that has run out is synced now,
            // even while more messages wait (else a steady stream would starve the kernel).
            let next = match later.take() {
                Some(stamped) => Ok(stamped),
                None => rx.recv_timeout(deadline.saturating_duration_since(now)),
            };
            match next {
                Ok(Stamped {
                    msg: Msg::VerdictState,
                    ..
                }) => {
                    // Nothing pending: the state is what the kernel holds.
                    if window.is_none() && self.state.kernel().is_some() {
                        self.publish();
                    }
                }
                Ok(stamped) => {
                    // The window opens when the first event of the batch arrived, not
                    // when its handling ended: `--coalesce-ms` bounds the delay from the
                    // event, whatever handling it cost.
                    let arrived = stamped.at;
                    if !self.receive(stamped) {
                        tracing::info!("shutting down; the rules stay in place");
                        return;
                    }
                    window.get_or_insert(arrived);
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if !self.all_listed() {
                continue;
            }
            let due = window.is_some_and(|t| now >= t + self.settings.coalesce)
                || retry_at.is_some_and(|t| now >= t)
                || self.state.kernel().is_none() && retry_at.is_none();
            if due {
                match self.catch_up(&rx, now) {
                    CatchUp::Shutdown => {
                        tracing::info!("shutting down; the rules stay in place");
                        return;
                    }
                    CatchUp::Later(stamped) => later = Some(*stamped),
                    CatchUp::Done => {}
                }
                // The backlog may have begun a relist: the kernel never sees half of one.
                if !self.all_listed() {
                    continue;
                }
                window = None;
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Mutex;

    use serde_json::{json, Value};

    use super::*;
    use crate::controller::dataplane::BatchStats;
    use crate::ruleset::{Ruleset, View};

    /// Counts batches (full syncs and updates); never fails.
    struct Counting(Arc<Mutex<Vec<Instant>>>);

    impl Dataplane for Counting {
        fn full_sync(&mut self, _: &Ruleset) -> Result<BatchStats, DataplaneError> {
            self.0.lock().unwrap().push(Instant::now());
            Ok(BatchStats::default())
        }
        fn update(&mut self, _: &View, _: &View) -> Result<BatchStats, DataplaneError> {
            self.0.lock().unwrap().push(Instant::now());
            Ok(BatchStats::default())
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

    fn list(tx: &Sender<Stamped>, kind: Kind, objects: Vec<Object>) {
        tx.send(Stamped::now(Msg::Init(kind))).unwrap();
        for o in objects {
            tx.send(Stamped::now(Msg::InitApply(o))).unwrap();
        }
        tx.send(Stamped::now(Msg::InitDone(kind))).unwrap();
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

    /// A list that is slow to complete (a large cluster decoding on a busy node) must not
    /// make the loop spin: the window its first objects opened is past long before the
    /// list ends, and nothing may be synced until it does. Then the batch comes at once.
    #[test]
    fn a_list_in_progress_does_not_spin_the_loop() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Metrics::default());
        let sync = SyncLoop::new(
            settings(),
            Counting(batches.clone()),
            metrics.clone(),
            Box::new(|_| {}),
        );
        let (tx, rx) = channel();
        list(&tx, Kind::Namespace, vec![]);
        tx.send(Stamped::now(Msg::Init(Kind::Pod))).unwrap();
        tx.send(Stamped::now(Msg::InitApply(pod(false)))).unwrap();
        let sent = 5;
        let worker = std::thread::spawn(move || sync.run(rx));
        // Ten coalescing windows, well under the heartbeat: a loop that waits wakes once
        // per message (and maybe once more); one that spins wakes thousands of times.
        std::thread::sleep(Duration::from_millis(300));
        let idle = metrics.wakeups();
        assert!(
            idle <= sent + 2,
            "{idle} turns of the loop for {sent} messages while the pod list was held back"
        );
        assert!(
            batches.lock().unwrap().is_empty(),
            "a sync before the lists"
        );
        tx.send(Stamped::now(Msg::InitDone(Kind::Pod))).unwrap();
        list(&tx, Kind::NetworkPolicy, vec![]);
        list(&tx, Kind::ClusterNetworkPolicy, vec![]);
        list(&tx, Kind::Node, vec![]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while batches.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        tx.send(Stamped::now(Msg::Shutdown)).unwrap();
        worker.join().unwrap();
        assert_eq!(
            batches.lock().unwrap().len(),
            1,
            "the first sync, once listed"
        );
    }

    /// Events arriving faster than the loop handles them (a rollout, a drain, the relist
    /// of a large cluster: the channel never empties) must reach the kernel window by
    /// window while they keep coming, each batch taking the whole backlog that arrived
    /// before it, not once the stream stops.
    #[test]
    fn a_stream_faster_than_the_loop_is_batched_while_it_lasts() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let sync = SyncLoop::new(
            settings(),
            Counting(batches.clone()),
            Arc::new(Metrics::default()),
            Box::new(|_| {}),
        );
        let (tx, rx) = channel();
        list(
            &tx,
            Kind::Namespace,
            vec![object(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "labels": {"ns": "x"}}}))],
        );
        list(&tx, Kind::Pod, vec![pod(false)]);
        list(
            &tx,
            Kind::NetworkPolicy,
            vec![object(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": "x", "name": "only-web"},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"]}}))],
        );
        list(&tx, Kind::ClusterNetworkPolicy, vec![]);
        list(&tx, Kind::Node, vec![]);
        let worker = std::thread::spawn(move || sync.run(rx));
        // Every event flips whether the policy isolates x/a: each batch has a change. A
        // clone costs far less than handling an event, so the channel never empties.
        let versions = [pod(true), pod(false)];
        let count = || batches.lock().unwrap().len();
        // The first sync (the lists) before the stream, so that what follows counts only
        // batches of the stream; on a loaded machine the loop's thread may start late.
        let deadline = Instant::now() + Duration::from_secs(10);
        while count() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = count();
        assert_eq!(before, 1, "the first sync");
        // The stream lasts until a batch of it lands, or 10 s: a loop that syncs only when
        // the channel is empty applies none while the stream lasts, so it fails.
        let start = Instant::now();
        let mut sent = 0usize;
        while count() == before && start.elapsed() < Duration::from_secs(10) {
            for _ in 0..100 {
                tx.send(Stamped::now(Msg::Apply(versions[sent % 2].clone())))
                    .unwrap();
                sent += 1;
            }
        }
        let stopped = Instant::now();
        tx.send(Stamped::now(Msg::Shutdown)).unwrap();
        worker.join().unwrap();
        let times = batches.lock().unwrap().clone();
        let during = times.iter().filter(|t| **t < stopped).count() - before;
        assert!(
            during >= 1,
            "no batch while {sent} events streamed in for {:?} (5 ms windows); {} in all",
            stopped - start,
            times.len()
        );
    }
}
