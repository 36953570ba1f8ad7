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

use super::dataplane::{BatchStats, Dataplane, DataplaneError};
use super::metrics::{Metrics, Stage};
use super::revoker::{Applied, Revoker};
use super::schedule::{CatchUp, Schedule};
use super::traffic::{Scope, Totals};
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
    /// A scrape: read the traffic counters into the metrics now, then answer (see
    /// [`super::traffic`]).
    ReadCounters(tokio::sync::oneshot::Sender<()>),
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
/// The Event reason of a ClusterNetworkPolicy with `domainNames` peers on a node whose
/// DNS proxy is off (they match nothing).
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
    lists: Lists,
    pending: Pending,
    /// Where each applied generation goes for the verdict reader (with verdict logs on).
    board: Option<Arc<super::board::Board>>,
    /// The traffic counters' last readings.
    traffic: Totals,
    /// The node's DNS proxy (`domainNames` rules), told the rules after each batch.
    dns: Option<Arc<super::dns_node::DnsNode>>,
    /// The node's `domainNames` rules as of the last batch.
    domain_rules: Vec<crate::graph::domains::DomainRule>,
}

/// Which lists are complete: nothing is synced before every kind has been listed once
/// (and this node, when its pod CIDRs are needed), nor while a relist is in progress.
#[derive(Default)]
struct Lists {
    listed: BTreeSet<Kind>,
    relist: Relist,
    /// This node's Node object has been listed (only waited for with `pod_cidrs_from_node`).
    node_listed: bool,
}

impl Lists {
    fn all_listed(&self, need_node: bool) -> bool {
        ALL_KINDS.iter().all(|k| self.listed.contains(k))
            && !self.relist.in_progress()
            && (self.node_listed || !need_node)
    }
}

/// The events not yet in the kernel, for the latency metrics and the `synced` line.
#[derive(Default)]
struct Pending {
    /// When the watcher yielded the oldest of them (its latency includes any time it
    /// waited in the channel behind a busy loop).
    since: Option<Instant>,
    /// When the loop took the first of them (the coalescing window's start, for the wait
    /// stage).
    received: Option<Instant>,
    /// Time spent applying them to the state.
    state: Duration,
    /// The longest watch stage among them.
    watch: Duration,
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
            lists: Lists::default(),
            pending: Pending::default(),
            board: None,
            traffic: Totals::default(),
            dns: None,
            domain_rules: Vec::new(),
        }
    }

    /// Tells `dns` the node's `domainNames` rules after each batch (and that the table
    /// was replaced, after a full one).
    pub fn with_dns(mut self, dns: Arc<super::dns_node::DnsNode>) -> Self {
        self.dns = Some(dns);
        self
    }

    /// After a batch the kernel took (or a change that needed none: a rule's names can
    /// change without a set doing so): the learner's rules are the index's now.
    fn domains_applied(&mut self) {
        let idx = self.state.index();
        // Cheap for the usual cluster: no policy has domainNames peers.
        self.domain_rules = if idx.cnps().any(|e| e.policy.has_domain_names()) {
            crate::graph::domains::domain_rules(idx, Some(&self.settings.node))
        } else {
            Vec::new()
        };
        if let Some(dns) = &self.dns {
            dns.rules(&self.domain_rules);
        }
    }

    /// What the kernel's learned sets admit now, for the revoker (named by the domain the
    /// proxy learned each address from, when it remembers); `None` without domain rules.
    fn learned_facts(&mut self) -> Option<crate::fqdn::facts::Learned> {
        use crate::ruleset::names::learned_set;
        if self.domain_rules.is_empty() {
            return None;
        }
        let mut owner = std::collections::HashMap::new();
        for r in &self.domain_rules {
            for v6 in [false, true] {
                owner.insert(
                    learned_set(&r.policy, r.rule, v6),
                    (r.policy.clone(), r.rule),
                );
            }
        }
        let sets: Vec<String> = owner.keys().cloned().collect();
        let table = self.state.model().name.clone();
        let held = match self.dataplane.learned(&table, &sets) {
            Ok(h) => h,
            Err(e) => {
                // Judged without them, every connection to a learned address would be cut.
                tracing::warn!(error = %crate::error::Chain(&e), "cannot read the learned sets; judging as if all were learned");
                return None;
            }
        };
        let domains = self.dns.as_ref().map(|d| d.domains()).unwrap_or_default();
        let mut facts = crate::fqdn::facts::Learned::new();
        for (set, addr) in held {
            if let Some((policy, rule)) = owner.get(&set) {
                let domain = domains.get(&(set.clone(), addr)).map_or("", String::as_str);
                facts.add(policy, *rule, addr, domain);
            }
        }
        Some(facts)
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
        board.publish_learned(self.state.index().clone(), graph, self.remembered());
    }

    /// What the DNS proxy remembers learning (for the records; the revoker reads the
    /// kernel instead, see [`Self::learned_facts`]).
    fn remembered(&self) -> crate::fqdn::facts::Learned {
        use crate::ruleset::names::learned_set;
        let mut facts = crate::fqdn::facts::Learned::new();
        let Some(dns) = self.dns.as_ref().filter(|_| !self.domain_rules.is_empty()) else {
            return facts;
        };
        let domains = dns.domains();
        for r in &self.domain_rules {
            for v6 in [false, true] {
                let set = learned_set(&r.policy, r.rule, v6);
                for ((s, addr), domain) in &domains {
                    if *s == set {
                        facts.add(&r.policy, r.rule, *addr, domain);
                    }
                }
            }
        }
        facts
    }

    /// Takes this node's pod CIDRs for `--default-deny-unknown`; a change rebuilds the
    /// model and replaces the table whole (chains change, not only elements).
    fn node_cidrs(&mut self, cidrs: Vec<ipnet::IpNet>) {
        self.lists.node_listed = true;
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
                tracing::warn!(kind = kind.name(), namespace = ns.as_deref().unwrap_or(""), name = %name, error = %crate::error::Chain(&e), "cannot compile; enforcing it fail-closed");
                (self.errors)(CompileError {
                    reason: COMPILE_ERROR,
                    kind,
                    api_version,
                    namespace: ns,
                    name,
                    message: e.to_string(),
                });
            } else {
                tracing::warn!(kind = kind.name(), namespace = ns.as_deref().unwrap_or(""), name = %name, error = %crate::error::Chain(&e), "cannot read the object; its previous version, if any, stays");
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
        let unsupported = self.dns.is_none()
            && self
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
                message: "domainNames peers match nothing on this node: its DNS proxy is off (--no-dns-proxy, or it could not start: see the controller log), so no address is learned (they can only Accept, so nothing is opened by them)".into(),
            });
        }
    }

    /// Applies one message to the state; returns false on Shutdown.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Shutdown => return false,
            // The batch being made publishes it (the board is wanted now).
            Msg::VerdictState => {}
            Msg::ReadCounters(done) => {
                self.read_counters(Scope::All);
                let _ = done.send(());
            }
            // A (re)list is applied as it arrives, and what it did not mention is deleted
            // at its end; nothing is synced in between, so the kernel never sees half a
            // relist, and no list is held in memory.
            Msg::Init(kind) => self.lists.relist.begin(kind),
            Msg::InitApply(obj) => {
                self.lists.relist.saw(&obj);
                self.apply(obj);
            }
            Msg::InitDone(kind) => {
                let seen = self.lists.relist.end(kind);
                self.state.reset(kind, &seen);
                if self.lists.listed.insert(kind) {
                    tracing::info!(kind = kind.name(), "initial list complete");
                    if ALL_KINDS.iter().all(|k| self.lists.listed.contains(k)) {
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
        self.lists.all_listed(self.settings.pod_cidrs_from_node)
    }

    /// Reads the traffic counters `scope` covers into the metrics; a failure is logged
    /// (what they counted since the last read is then credited at the next one, unless
    /// the batch that follows removes them).
    fn read_counters(&mut self, scope: Scope) {
        let read = self
            .traffic
            .read(&mut self.dataplane, &self.state, scope, &self.metrics);
        if let Err(e) = read {
            tracing::warn!(error = %crate::error::Chain(&e), "cannot read the traffic counters");
        }
    }

    /// After a batch: the counters of what it touched start a new baseline (every one,
    /// after a full sync: they all restarted at 0): those it replaced are forgotten when
    /// it says which, else read again.
    fn rebase_counters(&mut self, full: bool, covered: &BTreeSet<PodKey>, stats: &BatchStats) {
        if full {
            self.traffic.restarted();
            return;
        }
        if covered.is_empty() || !self.state.options().counters {
            return;
        }
        if let Some(replaced) = &stats.replaced {
            self.traffic.forget(replaced);
            return;
        }
        let read = self
            .traffic
            .rebase(&mut self.dataplane, &self.state, Scope::Pods(covered));
        if let Err(e) = read {
            tracing::warn!(error = %crate::error::Chain(&e), "cannot read the traffic counters after a batch");
        }
    }

    /// Brings the kernel to the model. Returns false when the batch failed.
    fn sync(&mut self) -> bool {
        let begun = Instant::now();
        // Before the pods it touches are recomputed: the graph and the kernel's model
        // still say what the counters of their objects stand for.
        if !self.state.dirty().is_empty() {
            let dirty = self.state.dirty().clone();
            self.read_counters(Scope::Pods(&dirty));
        }
        if self.state.settle() {
            let took = begun.elapsed();
            self.metrics.stage(Stage::State, took);
            self.pending.state += took;
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
                self.domains_applied();
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
                self.report_synced(full, &stats, [begun, start], pods);
                let covered = self.state.acknowledged(full);
                self.domains_applied();
                self.rebase_counters(full, &covered, &stats);
                self.applied_to_board();
                self.cut_revoked(full, &covered, stats.only_allows_more);
                self.settled();
                true
            }
            Err(e) => {
                self.metrics.sync_error();
                tracing::error!(full, error = %crate::error::Chain(&e), "kernel batch failed; the previous ruleset stays in force, retrying with a full sync");
                if let DataplaneError::Unknown(_) = e {
                    tracing::warn!("outcome unknown: the next sync replaces the table whole");
                }
                self.state.kernel_unknown();
                false
            }
        }
    }

    /// Metrics and the `synced` line of a batch the kernel took: `begun` when the batch
    /// began to be made (its wait stage ends there), `sent` when it went to the dataplane.
    fn report_synced(
        &self,
        full: bool,
        stats: &BatchStats,
        [begun, sent]: [Instant; 2],
        pods: usize,
    ) {
        let took = sent.elapsed();
        let latency = self.pending.since.map(|t| t.elapsed());
        let wait = self
            .pending
            .received
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
            watch_us = self.pending.watch.as_micros() as u64,
            state_us = self.pending.state.as_micros() as u64,
            wait_us = wait.map(|w| w.as_micros() as u64),
            diff_us = diff.as_micros() as u64,
            kernel_us = stats.kernel.as_micros() as u64,
            pods,
            "synced"
        );
    }

    /// Revoked means revoked: once the batch is in the kernel, the entries of connections
    /// it no longer allows are deleted (the touched pods'; every local pod's after a full
    /// sync). A failure is logged and leaves the rules as they are.
    fn cut_revoked(&mut self, full: bool, covered: &BTreeSet<PodKey>, only_allows_more: bool) {
        if self.settings.keep_established {
            return;
        }
        let learned = self.learned_facts();
        if learned.is_none() && !self.domain_rules.is_empty() {
            // The learned sets could not be read: cutting now could cut what they admit.
            return;
        }
        let batch = Applied {
            learned: learned.as_ref(),
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
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), "cannot cut revoked connections")
            }
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
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), "cannot read the live table back")
            }
        }
    }

    /// The kernel holds every pending change: nothing is pending any more.
    fn settled(&mut self) {
        self.pending = Pending::default();
    }

    /// Takes one message off the channel: its watch and state stages are measured here.
    fn receive(&mut self, stamped: Stamped) -> bool {
        let now = Instant::now();
        let watch = now.saturating_duration_since(stamped.at);
        self.metrics.stage(Stage::Watch, watch);
        self.pending.watch = self.pending.watch.max(watch);
        let alive = self.handle(stamped.msg);
        let took = now.elapsed();
        self.metrics.stage(Stage::State, took);
        self.pending.state += took;
        self.pending.since = Some(self.pending.since.map_or(stamped.at, |t| t.min(stamped.at)));
        self.pending.received.get_or_insert(now);
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
        // A scrape is no event: it schedules no batch.
        if let Msg::ReadCounters(done) = stamped.msg {
            self.read_counters(Scope::All);
            let _ = done.send(());
            return true;
        }
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
#[path = "sync_tests.rs"]
mod tests;
