//! The controller's metrics, rendered in the Prometheus text format. Plain counters and
//! fixed-bucket histograms behind one mutex: updates are rare (per sync, not per packet).

use crate::index::PodKey;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::input::Kind;
use crate::policy::Direction;
use crate::ruleset::names::LogVerdict;
use crate::ruleset::traffic::{PolicyKind, RuleId};

/// A policy that denied connections: an isolating NetworkPolicy (`namespace/name`) or a
/// ClusterNetworkPolicy with a Deny rule (`name`), and the direction.
pub type DeniedKey = crate::ruleset::traffic::DeniedBy;

const SECONDS_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const SIZE_BUCKETS: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0, 10000.0, 100000.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Where the time from a watch event to its kernel acknowledgement goes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// From the watcher yielding the decoded object to the sync loop taking it (slimming
    /// and the channel).
    Watch,
    /// Applying the change to the node's state (index and peer cache), per event; and
    /// per batch, recomputing the graph and model of the pods its events touched.
    State,
    /// From the event reaching the sync loop to its batch starting (coalescing).
    Wait,
    /// Views of the touched pods, their diff and the batch's encoding.
    Diff,
    /// From `sendmsg` to the last acknowledgement.
    Kernel,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Watch,
        Stage::State,
        Stage::Wait,
        Stage::Diff,
        Stage::Kernel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Watch => "watch",
            Stage::State => "state",
            Stage::Wait => "wait",
            Stage::Diff => "diff",
            Stage::Kernel => "kernel",
        }
    }
}

/// The kinds the controller watches, for the per-kind series (each present from start).
const WATCHED: [Kind; 5] = [
    Kind::Namespace,
    Kind::Pod,
    Kind::NetworkPolicy,
    Kind::ClusterNetworkPolicy,
    Kind::Node,
];

/// `nftpol_watched_objects`' label values (as before Nodes and ClusterNetworkPolicies).
fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Namespace => "namespaces",
        Kind::Pod => "pods",
        Kind::NetworkPolicy => "networkpolicies",
        Kind::ClusterNetworkPolicy => "clusternetworkpolicies",
        Kind::Node => "nodes",
    }
}

#[derive(Debug)]
struct Inner {
    stages: [Histogram; 5],
    /// The sync loop's last sign of life (it beats at least every second when idle).
    heartbeat: Instant,
    /// Turns of the sync loop: far above the event rate means it spins.
    wakeups: u64,
    /// The last kernel batch failed (and no later one succeeded).
    failing: bool,
    sync_full: Histogram,
    sync_incremental: Histogram,
    event_to_batch: Histogram,
    batch_messages: Histogram,
    /// By kind: what the index holds, and the objects that could not be compiled (or read).
    objects: BTreeMap<&'static str, u64>,
    compile_errors: BTreeMap<&'static str, u64>,
    sync_errors: u64,
    drift_repairs: u64,
    conntrack_cut: u64,
    /// The DNS proxy's counters (`nftpol_dns_*`), when it runs.
    dns: Option<std::sync::Arc<super::dns_proxy::ProxyStats>>,
    last_sync: Option<f64>,
    ready: bool,
    /// Verdict records per (namespace, pod, direction, verdict), this node's pods only.
    verdicts: BTreeMap<(String, String, Direction, LogVerdict), u64>,
    /// Records the kernel made that the reader never got (socket overflow, seq gaps).
    verdicts_lost: u64,
    /// Logged packets that named no chain of this node or could not be decoded.
    verdicts_unmapped: u64,
    /// Denied connections the rate limit kept out of the log (from the chains' counters).
    verdicts_suppressed: u64,
    verdicts_repeated: u64,
    /// NetworkPolicies over `--max-elements` (enforced fail-closed), with their size.
    over_budget: BTreeMap<String, usize>,
    /// New connections each NetworkPolicy rule allowed on this node (`controller::traffic`).
    rule_connections: BTreeMap<RuleId, u64>,
    /// New connections denied by default, by isolating policy and direction.
    policy_denied: BTreeMap<DeniedKey, u64>,
}

#[derive(Debug)]
pub struct Metrics(Mutex<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Metrics(Mutex::new(Inner {
            stages: std::array::from_fn(|_| Histogram::new(&SECONDS_BUCKETS)),
            heartbeat: Instant::now(),
            wakeups: 0,
            failing: false,
            sync_full: Histogram::new(&SECONDS_BUCKETS),
            sync_incremental: Histogram::new(&SECONDS_BUCKETS),
            event_to_batch: Histogram::new(&SECONDS_BUCKETS),
            batch_messages: Histogram::new(&SIZE_BUCKETS),
            objects: WATCHED.iter().map(|k| (plural(*k), 0)).collect(),
            compile_errors: WATCHED.iter().map(|k| (k.name(), 0)).collect(),
            sync_errors: 0,
            drift_repairs: 0,
            conntrack_cut: 0,
            dns: None,
            last_sync: None,
            ready: false,
            verdicts: BTreeMap::new(),
            verdicts_lost: 0,
            verdicts_unmapped: 0,
            verdicts_suppressed: 0,
            verdicts_repeated: 0,
            over_budget: BTreeMap::new(),
            rule_connections: BTreeMap::new(),
            policy_denied: BTreeMap::new(),
        }))
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    pub fn synced(
        &self,
        full: bool,
        took: Duration,
        messages: usize,
        event_to_batch: Option<Duration>,
    ) {
        self.with(|m| {
            if let Some(l) = event_to_batch {
                m.event_to_batch.observe(l.as_secs_f64());
            }
            if full {
                m.sync_full.observe(took.as_secs_f64());
            } else {
                m.sync_incremental.observe(took.as_secs_f64());
            }
            m.batch_messages.observe(messages as f64);
            m.last_sync = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64());
            m.ready = true;
            m.failing = false;
        })
    }

    pub fn stage(&self, stage: Stage, took: Duration) {
        self.with(|m| m.stages[stage as usize].observe(took.as_secs_f64()))
    }

    /// The sync loop is alive: called on every turn of its loop.
    pub fn beat(&self) {
        self.with(|m| m.heartbeat = Instant::now())
    }

    /// A turn of the sync loop (a message, a timeout): a beat, counted.
    pub fn wakeup(&self) {
        self.with(|m| {
            m.heartbeat = Instant::now();
            m.wakeups += 1;
        })
    }

    /// Turns of the sync loop so far.
    pub fn wakeups(&self) -> u64 {
        self.with(|m| m.wakeups)
    }

    /// How long since the sync loop last showed life.
    pub fn since_beat(&self) -> Duration {
        self.with(|m| m.heartbeat.elapsed())
    }

    /// How many objects of each kind the index holds.
    pub fn objects(&self, counts: impl IntoIterator<Item = (Kind, usize)>) {
        self.with(|m| {
            for (kind, n) in counts {
                m.objects.insert(plural(kind), n as u64);
            }
        })
    }

    /// Records the NetworkPolicies over `--max-elements` now; returns those that were not
    /// over it at the last call (each to be reported once, as it goes over).
    pub fn over_budget(&self, now: &BTreeMap<String, usize>) -> Vec<(String, usize)> {
        self.with(|m| {
            let new = now
                .iter()
                .filter(|(p, _)| !m.over_budget.contains_key(*p))
                .map(|(p, n)| (p.clone(), *n))
                .collect();
            m.over_budget.clone_from(now);
            new
        })
    }

    pub fn compile_error(&self, kind: Kind) {
        self.with(|m| *m.compile_errors.entry(kind.name()).or_default() += 1)
    }

    pub fn sync_error(&self) {
        self.with(|m| {
            m.sync_errors += 1;
            m.failing = true;
        })
    }

    pub fn drift_repaired(&self) {
        self.with(|m| m.drift_repairs += 1)
    }

    pub fn conntrack_cut(&self, entries: usize) {
        self.with(|m| m.conntrack_cut += entries as u64)
    }

    /// One verdict record of a pod of this node.
    pub fn verdict(&self, namespace: &str, pod: &str, dir: Direction, verdict: LogVerdict) {
        self.verdicts(namespace, pod, dir, verdict, 1)
    }

    /// `n` connections of one verdict: a record and those the limit kept out of the log
    /// before it (for the audit outcomes, whose count is exact this way).
    pub fn verdicts(
        &self,
        namespace: &str,
        pod: &str,
        dir: Direction,
        verdict: LogVerdict,
        n: u64,
    ) {
        self.with(|m| {
            *m.verdicts
                .entry((namespace.into(), pod.into(), dir, verdict))
                .or_default() += n
        })
    }

    pub fn verdicts_lost(&self, n: u64) {
        self.with(|m| m.verdicts_lost += n)
    }

    pub fn verdicts_suppressed(&self, n: u64) {
        self.with(|m| m.verdicts_suppressed += n)
    }

    /// A logged packet that repeated a connection already recorded (a resent first packet).
    pub fn verdict_repeated(&self) {
        self.with(|m| m.verdicts_repeated += 1)
    }

    pub fn verdict_unmapped(&self) {
        self.with(|m| m.verdicts_unmapped += 1)
    }

    /// Credits traffic: `seen` are every rule and isolating policy of this node's pods
    /// (shown from the start, at 0); `rules` and `denied` the increments of one read.
    /// Totals only grow: a rule or policy that goes away keeps its series.
    pub fn traffic(
        &self,
        seen: (
            std::collections::BTreeSet<RuleId>,
            std::collections::BTreeSet<DeniedKey>,
        ),
        rules: BTreeMap<RuleId, u64>,
        denied: BTreeMap<DeniedKey, u64>,
    ) {
        self.with(|m| {
            for r in seen.0 {
                m.rule_connections.entry(r).or_default();
            }
            for p in seen.1 {
                m.policy_denied.entry(p).or_default();
            }
            for (r, n) in rules {
                *m.rule_connections.entry(r).or_default() += n;
            }
            for (p, n) in denied {
                *m.policy_denied.entry(p).or_default() += n;
            }
        })
    }

    /// Drops the verdict series of pods no longer on this node.
    pub fn retain_verdict_pods(&self, pods: &std::collections::BTreeSet<PodKey>) {
        self.with(|m| {
            m.verdicts
                .retain(|(ns, pod, _, _), _| pods.contains(&(ns.clone(), pod.clone())))
        })
    }

    /// Ready once the first full sync has been applied, and not while the kernel refuses
    /// batches (from a failed batch until the next one succeeds).
    pub fn ready(&self) -> bool {
        self.with(|m| m.ready && !m.failing)
    }

    /// Why `/readyz` fails, for its body.
    pub fn not_ready_reason(&self) -> &'static str {
        self.with(|m| {
            if !m.ready {
                "waiting for the first full sync\n"
            } else {
                "the last kernel batch failed; retrying\n"
            }
        })
    }

    /// Serves the DNS proxy's counters with the rest.
    pub fn dns(&self, stats: std::sync::Arc<super::dns_proxy::ProxyStats>) {
        self.with(|m| m.dns = Some(stats));
    }

    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            out.push_str("# HELP nftpol_sync_duration_seconds Time to compute and apply a kernel batch.\n# TYPE nftpol_sync_duration_seconds histogram\n");
            m.sync_full.render(&mut out, "nftpol_sync_duration_seconds", "kind=\"full\"");
            m.sync_incremental.render(&mut out, "nftpol_sync_duration_seconds", "kind=\"incremental\"");
            out.push_str("# HELP nftpol_event_to_batch_seconds From the watcher yielding an event to its kernel batch acknowledged (queueing and coalescing included).\n# TYPE nftpol_event_to_batch_seconds histogram\n");
            m.event_to_batch.render(&mut out, "nftpol_event_to_batch_seconds", "");
            out.push_str("# HELP nftpol_event_stage_seconds The parts of event_to_batch: watch (watcher to sync loop), state (per event, and the per-batch recompute of the pods the events touched), wait (coalescing), diff (views, diff, encoding), kernel (send to last ack).\n# TYPE nftpol_event_stage_seconds histogram\n");
            for stage in Stage::ALL {
                let labels = format!("stage=\"{}\"", stage.name());
                m.stages[stage as usize].render(&mut out, "nftpol_event_stage_seconds", &labels);
            }
            out.push_str("# HELP nftpol_batch_messages Netlink messages per applied batch.\n# TYPE nftpol_batch_messages histogram\n");
            m.batch_messages.render(&mut out, "nftpol_batch_messages", "");
            out.push_str("# HELP nftpol_watched_objects Objects held in the index.\n# TYPE nftpol_watched_objects gauge\n");
            for (k, v) in &m.objects {
                let _ = writeln!(out, "nftpol_watched_objects{{kind=\"{k}\"}} {v}");
            }
            out.push_str("# HELP nftpol_policy_over_budget_elements Set elements of each NetworkPolicy over --max-elements on this node (enforced fail-closed: it isolates and allows nothing).\n# TYPE nftpol_policy_over_budget_elements gauge\n");
            for (p, n) in &m.over_budget {
                let (ns, name) = p.split_once('/').unwrap_or(("", p));
                let _ = writeln!(out, "nftpol_policy_over_budget_elements{{namespace=\"{ns}\",policy=\"{name}\"}} {n}");
            }
            out.push_str("# HELP nftpol_compile_errors_total Objects that could not be compiled (policies, enforced fail-closed) or read (Nodes), by kind.\n# TYPE nftpol_compile_errors_total counter\n");
            for (k, v) in &m.compile_errors {
                let _ = writeln!(out, "nftpol_compile_errors_total{{kind=\"{k}\"}} {v}");
            }
            let _ = write!(
                out,
                "\
                 # HELP nftpol_sync_errors_total Kernel batches that failed.\n# TYPE nftpol_sync_errors_total counter\nnftpol_sync_errors_total {}\n\
                 # HELP nftpol_drift_repairs_total Full syncs made because the live table differed from the model.\n# TYPE nftpol_drift_repairs_total counter\nnftpol_drift_repairs_total {}\n",
                m.sync_errors, m.drift_repairs
            );
            let _ = write!(
                out,
                "# HELP nftpol_sync_loop_wakeups_total Turns of the sync loop (a message taken, or a timeout); a rate far above the event rate means it spins.\n# TYPE nftpol_sync_loop_wakeups_total counter\nnftpol_sync_loop_wakeups_total {}\n",
                m.wakeups
            );
            let _ = write!(
                out,
                "# HELP nftpol_conntrack_entries_cut_total Conntrack entries deleted because policy no longer allows their connection.\n# TYPE nftpol_conntrack_entries_cut_total counter\nnftpol_conntrack_entries_cut_total {}\n",
                m.conntrack_cut
            );
            render_verdicts(&mut out, m);
            render_traffic(&mut out, m);
            if let Some(dns) = &m.dns {
                dns.render(&mut out);
            }
            if let Some(t) = m.last_sync {
                let _ = write!(out, "# HELP nftpol_last_sync_timestamp_seconds Unix time of the last successful sync.\n# TYPE nftpol_last_sync_timestamp_seconds gauge\nnftpol_last_sync_timestamp_seconds {t}\n");
            }
            out
        })
    }
}

/// `nftpol_connections_total{namespace,pod,direction,verdict}` and the reader's losses.
fn render_verdicts(out: &mut String, m: &Inner) {
    out.push_str("# HELP nftpol_connections_total New connections of this node's pods logged by their chains (denied: up to --log-rate per pod and direction; allowed: with --log-allowed).\n# TYPE nftpol_connections_total counter\n");
    let audit = |v: &LogVerdict| matches!(v, LogVerdict::WouldDeny | LogVerdict::WouldAllow);
    for ((ns, pod, dir, verdict), n) in m.verdicts.iter().filter(|(k, _)| !audit(&k.3)) {
        let _ = writeln!(
            out,
            "nftpol_connections_total{{namespace=\"{ns}\",pod=\"{pod}\",direction=\"{dir}\",verdict=\"{}\"}} {n}",
            verdict.name()
        );
    }
    out.push_str("# HELP nftpol_audit_connections_total New connections of this node's pods that the audited policies (nftpol.io/mode: audit) would judge otherwise: would-deny (allowed now) or would-allow (denied now); every one, logged or kept out of the log by --log-rate.\n# TYPE nftpol_audit_connections_total counter\n");
    for ((ns, pod, dir, verdict), n) in m.verdicts.iter().filter(|(k, _)| audit(&k.3)) {
        let _ = writeln!(
            out,
            "nftpol_audit_connections_total{{namespace=\"{ns}\",pod=\"{pod}\",direction=\"{dir}\",outcome=\"{}\"}} {n}",
            verdict.name()
        );
    }
    let _ = write!(
        out,
        "# HELP nftpol_verdict_records_lost_total Verdict records the kernel sent that the reader never received (its socket overflowed).\n# TYPE nftpol_verdict_records_lost_total counter\nnftpol_verdict_records_lost_total {}\n\
         # HELP nftpol_verdict_records_unmapped_total Logged packets that named no chain of this node or could not be decoded.\n# TYPE nftpol_verdict_records_unmapped_total counter\nnftpol_verdict_records_unmapped_total {}\n\
         # HELP nftpol_verdict_records_suppressed_total Denied connections the --log-rate limit kept out of the log (reported with the next record of their chain).\n# TYPE nftpol_verdict_records_suppressed_total counter\nnftpol_verdict_records_suppressed_total {}\n\
         # HELP nftpol_verdict_records_repeated_total Logged packets that resent the first packet of a connection already recorded (a SYN retransmitted, a datagram sent again): no second record.\n# TYPE nftpol_verdict_records_repeated_total counter\nnftpol_verdict_records_repeated_total {}\n",
        m.verdicts_lost, m.verdicts_unmapped, m.verdicts_suppressed, m.verdicts_repeated
    );
}

/// `nftpol_rule_connections_total` and `nftpol_policy_denied_connections_total`.
fn render_traffic(out: &mut String, m: &Inner) {
    out.push_str("# HELP nftpol_rule_connections_total New connections on this node each NetworkPolicy rule allowed (every rule of the lookup that allowed it whose peer and ports cover it) or each ClusterNetworkPolicy rule decided (the first that matched); a resent first packet counts again.\n# TYPE nftpol_rule_connections_total counter\n");
    for (r, n) in &m.rule_connections {
        let (ns, name) = namespaced(r.kind, &r.policy);
        let _ = writeln!(
            out,
            "nftpol_rule_connections_total{{kind=\"{}\",namespace=\"{ns}\",policy=\"{name}\",direction=\"{}\",rule=\"{}\"}} {n}",
            r.kind.name(), r.direction, r.rule
        );
    }
    out.push_str("# HELP nftpol_policy_denied_connections_total New connections on this node denied by default, credited to each NetworkPolicy that isolates the pod in that direction, or dropped by a ClusterNetworkPolicy's Deny rule (a resent first packet counts again).\n# TYPE nftpol_policy_denied_connections_total counter\n");
    for ((kind, policy, dir), n) in &m.policy_denied {
        let (ns, name) = namespaced(*kind, policy);
        let _ = writeln!(
            out,
            "nftpol_policy_denied_connections_total{{kind=\"{}\",namespace=\"{ns}\",policy=\"{name}\",direction=\"{dir}\"}} {n}",
            kind.name()
        );
    }
}

/// The namespace (empty for a cluster-scoped ClusterNetworkPolicy) and name of a policy.
fn namespaced(kind: PolicyKind, policy: &str) -> (&str, &str) {
    match kind {
        PolicyKind::NetworkPolicy => policy.split_once('/').unwrap_or(("", policy)),
        PolicyKind::ClusterNetworkPolicy => ("", policy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule seen shows from the start at 0; increments add up; a rule gone keeps
    /// its total.
    #[test]
    fn traffic_totals_start_at_zero_and_only_grow() {
        let m = Metrics::default();
        let rule = |i| RuleId {
            kind: PolicyKind::NetworkPolicy,
            policy: "x/allow".into(),
            direction: Direction::Ingress,
            rule: i,
        };
        let seen = (
            [rule(0), rule(1)].into(),
            [(
                PolicyKind::NetworkPolicy,
                "x/allow".to_string(),
                Direction::Ingress,
            )]
            .into(),
        );
        m.traffic(seen, BTreeMap::new(), BTreeMap::new());
        let zero = "nftpol_rule_connections_total{kind=\"NetworkPolicy\",namespace=\"x\",policy=\"allow\",direction=\"ingress\",rule=\"1\"} 0\n";
        assert!(m.render().contains(zero), "{}", m.render());
        m.traffic(
            Default::default(),
            [(rule(1), 3)].into(),
            [(
                (
                    PolicyKind::NetworkPolicy,
                    "x/allow".to_string(),
                    Direction::Ingress,
                ),
                2,
            )]
            .into(),
        );
        m.traffic(Default::default(), [(rule(1), 4)].into(), BTreeMap::new());
        let page = m.render();
        assert!(
            page.contains("direction=\"ingress\",rule=\"1\"} 7\n"),
            "{page}"
        );
        assert!(
            page.contains("direction=\"ingress\",rule=\"0\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("nftpol_policy_denied_connections_total{kind=\"NetworkPolicy\",namespace=\"x\",policy=\"allow\",direction=\"ingress\"} 2\n"),
            "{page}"
        );
    }

    /// A ClusterNetworkPolicy is cluster-scoped: its series have an empty namespace and
    /// its whole name as the policy.
    #[test]
    fn cluster_network_policy_series_have_no_namespace() {
        let m = Metrics::default();
        let kind = PolicyKind::ClusterNetworkPolicy;
        let rule = RuleId {
            kind,
            policy: "no-db".into(),
            direction: Direction::Egress,
            rule: 2,
        };
        let denied = (kind, "no-db".to_string(), Direction::Egress);
        m.traffic(Default::default(), [(rule, 5)].into(), [(denied, 5)].into());
        let page = m.render();
        assert!(
            page.contains("nftpol_rule_connections_total{kind=\"ClusterNetworkPolicy\",namespace=\"\",policy=\"no-db\",direction=\"egress\",rule=\"2\"} 5\n"),
            "{page}"
        );
        assert!(
            page.contains("nftpol_policy_denied_connections_total{kind=\"ClusterNetworkPolicy\",namespace=\"\",policy=\"no-db\",direction=\"egress\"} 5\n"),
            "{page}"
        );
    }

    /// A policy over the budget is reported once, as it goes over, and shown with its
    /// size while it stays over; gone from the page once it fits again.
    #[test]
    fn a_policy_over_the_budget_is_reported_once_and_shown_while_over() {
        let m = Metrics::default();
        let over: BTreeMap<String, usize> = [("t/big".to_string(), 75)].into();
        assert_eq!(m.over_budget(&over), vec![("t/big".to_string(), 75)]);
        assert_eq!(m.over_budget(&over), vec![]);
        let line = "nftpol_policy_over_budget_elements{namespace=\"t\",policy=\"big\"} 75\n";
        assert!(m.render().contains(line), "{}", m.render());
        assert_eq!(m.over_budget(&BTreeMap::new()), vec![]);
        assert!(!m.render().contains(line));
        assert_eq!(m.over_budget(&over).len(), 1, "over again: said again");
    }
}
