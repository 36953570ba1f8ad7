//! The running totals behind `nftpol_rule_connections_total` and
//! `nftpol_policy_denied_connections_total`: the kernel's counters (elements of the
//! NetworkPolicy and ClusterNetworkPolicy tier sets, pod chains' `counter drop`) read
//! and credited to rules through
//! [`crate::ruleset::traffic`], as increments since the last read.
//!
//! ```text
//! read (scrape, or before a batch) --> increments since last read --> rules / policies --> Metrics
//! ```
//!
//! Kernel counters die with their element, set or rule: a batch that removes an element,
//! drops a set or rewrites a pod chain would lose what they counted since the last read.
//! So the sync loop reads, before each batch, the counters of everything the batch can
//! touch (the objects of the pods it recomputes), while the graph and the kernel's model
//! still describe what the kernel holds. After the batch, the counters of what it
//! removed or replaced (a rewritten chain's drop, a set replaced whole, an element
//! removed and added back) are new ones, indistinguishable from old ones by value: the
//! batch says which they are ([`Replaced`], read off its operations) and their last
//! readings are forgotten, so the next read counts them from 0
//! ([`Totals::forget`]); without that list (a dataplane that does not give it) they are
//! read again as the new baseline, crediting nothing. After a full sync (every counter
//! restarts at 0) it forgets the last readings. What is lost: connections counted on the touched objects between
//! the two reads (one batch's time), and everything since the last read when the kernel's
//! state is unknown (a failed batch: the full sync that follows replaces every counter).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::dataplane::{Dataplane, DataplaneError, Replaced};
use super::metrics::{DeniedKey, Metrics};
use crate::index::PodKey;
use crate::ruleset::model::{Element, Key, Set};
use crate::ruleset::names;
use crate::ruleset::traffic::{PolicyKind, RuleId, Traffic};
use crate::state::NodeState;

/// The kernel counters' values at the last read, to take increments from.
#[derive(Debug, Default)]
pub struct Totals {
    sets: HashMap<String, HashMap<Key, u64>>,
    drops: HashMap<String, u64>,
}

/// Which counters a read covers.
pub enum Scope<'a> {
    /// Every counted set and every pod chain (a scrape).
    All,
    /// The objects of these pods (what a batch recomputing them can remove).
    Pods(&'a BTreeSet<PodKey>),
}

/// `now` counted, `before` at the last read: the increment. A counter below its last
/// value is a new one (its element was removed and added again): all of it is new.
fn increment(now: u64, before: Option<u64>) -> u64 {
    match before {
        Some(b) if now >= b => now - b,
        _ => now,
    }
}

impl Totals {
    /// Every kernel counter restarted at 0 (the table was replaced whole).
    pub fn restarted(&mut self) {
        self.sets.clear();
        self.drops.clear();
    }

    /// A batch ended the counters of `replaced`: their successors (if any) start at 0,
    /// and count from there at the next read.
    pub fn forget(&mut self, replaced: &Replaced) {
        for set in &replaced.sets {
            self.sets.remove(set);
        }
        for (set, keys) in &replaced.elements {
            if let Some(last) = self.sets.get_mut(set) {
                for k in keys {
                    last.remove(k);
                }
            }
        }
        for chain in &replaced.chains {
            self.drops.remove(chain);
        }
    }

    /// Reads the counters `scope` covers and credits their increments in `metrics`;
    /// nothing when the kernel's state is unknown.
    pub fn read(
        &mut self,
        dataplane: &mut dyn Dataplane,
        state: &NodeState,
        scope: Scope,
        metrics: &Metrics,
    ) -> Result<(), DataplaneError> {
        self.take(dataplane, state, scope, Some(metrics))
    }

    /// Reads the counters `scope` covers as the baseline of the next read, crediting
    /// nothing: after a batch that touched them (see the module).
    pub fn rebase(
        &mut self,
        dataplane: &mut dyn Dataplane,
        state: &NodeState,
        scope: Scope,
    ) -> Result<(), DataplaneError> {
        self.take(dataplane, state, scope, None)
    }

    /// [`Totals::read`], crediting in `metrics` when given.
    fn take(
        &mut self,
        dataplane: &mut dyn Dataplane,
        state: &NodeState,
        scope: Scope,
        metrics: Option<&Metrics>,
    ) -> Result<(), DataplaneError> {
        let Some(kernel) = state.kernel() else {
            return Ok(());
        };
        if !state.options().counters {
            return Ok(());
        }
        let graph = state.graph();
        let traffic = match &scope {
            Scope::All => Traffic::new(graph, kernel, state.options()),
            Scope::Pods(pods) => {
                let over = state.over_budget();
                Traffic::of_pods(graph, kernel, state.options(), pods, over)
            }
        };
        let (sets, chains) = covered(kernel, &traffic, &scope);
        // A set the kernel holds empty has no counter to read (a round trip saved per
        // set: most pods have no IPv6 elements, say).
        let sets: Vec<&Set> = sets
            .into_iter()
            .filter_map(|s| kernel.set(s))
            .filter(|s| !s.elements.is_empty())
            .collect();
        let readings = dataplane.counters(&kernel.name, &sets, chains.as_ref())?;
        let (rules, mut denied) = self.credit_sets(&traffic, graph, readings.sets);
        for (p, n) in self.credit_drops(&traffic, chains.as_ref(), readings.drops) {
            *denied.entry(p).or_default() += n;
        }
        if let Scope::All = scope {
            // A set or chain the kernel no longer holds restarts from 0 if it comes back.
            let read: BTreeSet<&str> = sets.iter().map(|s| s.name.as_str()).collect();
            self.sets.retain(|s, _| read.contains(s.as_str()));
            self.drops.retain(|c, _| kernel.chain(c).is_some());
        }
        if let Some(metrics) = metrics {
            // The series of every rule at 0 come with the scrape's read of everything.
            let seen = match scope {
                Scope::All => seen_rules(state, &traffic),
                Scope::Pods(_) => Default::default(),
            };
            metrics.traffic(seen, rules, denied);
        }
        Ok(())
    }

    /// The increments of the elements read, by rule and by denying policy (a tier Deny
    /// set's); the readings become the last ones.
    fn credit_sets(
        &mut self,
        traffic: &Traffic,
        graph: &crate::graph::PolicyGraph,
        read: BTreeMap<String, Vec<(Element, u64)>>,
    ) -> (BTreeMap<RuleId, u64>, BTreeMap<DeniedKey, u64>) {
        let mut rules: BTreeMap<RuleId, u64> = BTreeMap::new();
        let mut denied: BTreeMap<DeniedKey, u64> = BTreeMap::new();
        let mut unattributed = 0;
        for (set, elements) in read {
            let last = self.sets.remove(&set).unwrap_or_default();
            let mut now = HashMap::with_capacity(elements.len());
            for (e, packets) in elements {
                let n = increment(packets, last.get(&e.key).copied());
                now.insert(e.key, packets);
                if n == 0 {
                    continue;
                }
                let credited = traffic.credit(graph, &set, &e);
                if credited.rules.is_empty() && credited.denied.is_empty() {
                    unattributed += n;
                }
                for r in credited.rules {
                    *rules.entry(r).or_default() += n;
                }
                for p in credited.denied {
                    *denied.entry(p).or_default() += n;
                }
            }
            self.sets.insert(set, now);
        }
        if unattributed > 0 {
            tracing::debug!(
                packets = unattributed,
                "counted connections no rule of the kernel's state covers"
            );
        }
        (rules, denied)
    }

    /// The increments of the drops read (of `chains` only, when given), by isolating
    /// policy; the readings become the last ones.
    fn credit_drops(
        &mut self,
        traffic: &Traffic,
        chains: Option<&BTreeSet<String>>,
        read: BTreeMap<String, u64>,
    ) -> BTreeMap<DeniedKey, u64> {
        let mut denied: BTreeMap<DeniedKey, u64> = BTreeMap::new();
        for (chain, packets) in read {
            if !chains.is_none_or(|c| c.contains(&chain)) {
                continue;
            }
            let n = increment(packets, self.drops.insert(chain.clone(), packets));
            let Some((dir, policies)) = traffic.isolating(&chain) else {
                continue;
            };
            for p in policies.iter().filter(|_| n > 0) {
                let key = (PolicyKind::NetworkPolicy, p.clone(), dir);
                *denied.entry(key).or_default() += n;
            }
        }
        denied
    }
}

/// The counted sets and the pod chains a read of `scope` covers (`None`: every chain).
fn covered<'a>(
    kernel: &'a crate::ruleset::Ruleset,
    traffic: &'a Traffic,
    scope: &Scope,
) -> (BTreeSet<&'a str>, Option<BTreeSet<String>>) {
    match scope {
        Scope::All => (traffic.sets().collect(), None),
        Scope::Pods(pods) => {
            let mut sets = BTreeSet::new();
            let mut chains = BTreeSet::new();
            for (ns, pod) in pods.iter() {
                for name in names::pod_chains(ns, pod) {
                    if let Some(chain) = kernel.chain(&name) {
                        sets.extend(chain.lookups().filter(|s| traffic.knows(s)));
                        chains.insert(name);
                    }
                }
            }
            (sets, Some(chains))
        }
    }
}

/// Every rule and isolating policy of this node's pods, and every ClusterNetworkPolicy
/// rule and denying policy of their counted tier sets: their series exist from the
/// start (at 0), so a rule that never allowed anything is one query away.
fn seen_rules(state: &NodeState, traffic: &Traffic) -> (BTreeSet<RuleId>, BTreeSet<DeniedKey>) {
    let (mut rules, mut policies) = traffic.tier_rules();
    for pod in state.graph().pods.values() {
        for dir in [
            crate::policy::Direction::Ingress,
            crate::policy::Direction::Egress,
        ] {
            let Some(iso) = pod.isolation(dir) else {
                continue;
            };
            let kind = PolicyKind::NetworkPolicy;
            policies.extend(iso.isolated_by.iter().map(|p| (kind, p.clone(), dir)));
            rules.extend(iso.allows.iter().map(|a| RuleId {
                kind,
                policy: a.origin.policy.clone(),
                direction: a.origin.direction,
                rule: a.origin.rule,
            }));
        }
    }
    (rules, policies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::dataplane::{BatchStats, Readings};
    use crate::index::Index;
    use crate::ruleset::{Ruleset, View};
    use serde_json::json;

    /// Returns the readings it is given.
    struct Fake(Readings);

    impl Dataplane for Fake {
        fn full_sync(&mut self, _: &Ruleset) -> Result<BatchStats, DataplaneError> {
            Ok(BatchStats::default())
        }
        fn update(&mut self, _: &View, _: &View) -> Result<BatchStats, DataplaneError> {
            Ok(BatchStats::default())
        }
        fn drifted(&mut self, _: &Ruleset) -> Result<bool, DataplaneError> {
            Ok(false)
        }
        fn counters(
            &mut self,
            _: &str,
            _: &[&Set],
            _: Option<&BTreeSet<String>>,
        ) -> Result<Readings, DataplaneError> {
            Ok(self.0.clone())
        }
    }

    /// x/b on n1, isolated for ingress by x/deny (no rules), as the kernel holds it.
    fn state() -> NodeState {
        let mut index = Index::new();
        for v in [
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"namespace": "x", "name": "b", "labels": {"app": "b"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": "10.244.1.20", "podIPs": [{"ip": "10.244.1.20"}]}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"namespace": "x", "name": "deny"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        ] {
            let o = crate::input::object_from_value(v, "test").unwrap().unwrap();
            index.apply(o).unwrap();
        }
        let counted = crate::ruleset::Options {
            counters: true,
            ..Default::default()
        };
        let mut state = NodeState::with_options(index, Some("n1"), counted);
        state.acknowledged(true);
        state
    }

    fn denied(m: &Metrics) -> String {
        m.render()
            .lines()
            .find(|l| l.starts_with("nftpol_policy_denied_connections_total{"))
            .unwrap_or_default()
            .to_string()
    }

    /// The drop of a rewritten chain restarts at 0: read again after the batch, its
    /// next count is all new, even above the old chain's last value.
    #[test]
    fn a_counter_replaced_by_a_batch_counts_from_its_new_start() {
        let state = state();
        let chain = names::pod_chain(crate::policy::Direction::Ingress, "x", "b");
        let pods: BTreeSet<PodKey> = [("x".to_string(), "b".to_string())].into();
        let m = Metrics::default();
        let mut totals = Totals::default();
        let reading = |n| {
            Fake(Readings {
                drops: [(chain.clone(), n)].into(),
                ..Readings::default()
            })
        };
        totals
            .read(&mut reading(3), &state, Scope::All, &m)
            .unwrap();
        assert!(
            denied(&m).ends_with("direction=\"ingress\"} 3"),
            "{}",
            denied(&m)
        );
        // Before the batch: 1 more; the batch rewrites the chain (its drop back at 0).
        totals
            .read(&mut reading(4), &state, Scope::Pods(&pods), &m)
            .unwrap();
        totals
            .rebase(&mut reading(0), &state, Scope::Pods(&pods))
            .unwrap();
        totals
            .read(&mut reading(5), &state, Scope::All, &m)
            .unwrap();
        assert!(
            denied(&m).ends_with("direction=\"ingress\"} 9"),
            "{}",
            denied(&m)
        );
        // A full sync: every counter starts again at 0.
        totals.restarted();
        totals
            .read(&mut reading(2), &state, Scope::All, &m)
            .unwrap();
        assert!(
            denied(&m).ends_with("direction=\"ingress\"} 11"),
            "{}",
            denied(&m)
        );
    }

    /// A batch that says it flushed the chain: its drop's last reading is forgotten, so
    /// the new drop's count is all new, with no read after the batch; one it did not
    /// touch keeps its reading.
    #[test]
    fn what_a_batch_replaced_counts_from_0_without_a_read() {
        let state = state();
        let chain = names::pod_chain(crate::policy::Direction::Ingress, "x", "b");
        let m = Metrics::default();
        let mut totals = Totals::default();
        let reading = |n| {
            Fake(Readings {
                drops: [(chain.clone(), n)].into(),
                ..Readings::default()
            })
        };
        totals
            .read(&mut reading(3), &state, Scope::All, &m)
            .unwrap();
        totals.forget(&Replaced::default());
        totals
            .read(&mut reading(5), &state, Scope::All, &m)
            .unwrap();
        assert!(denied(&m).ends_with("} 5"), "{}", denied(&m));
        totals.forget(&Replaced {
            chains: [chain.clone()].into(),
            ..Replaced::default()
        });
        totals
            .read(&mut reading(2), &state, Scope::All, &m)
            .unwrap();
        assert!(denied(&m).ends_with("} 7"), "{}", denied(&m));
    }

    #[test]
    fn increments_count_from_the_last_reading_or_from_a_restart() {
        assert_eq!(increment(7, None), 7, "a counter not read before");
        assert_eq!(increment(7, Some(5)), 2);
        assert_eq!(increment(5, Some(5)), 0);
        assert_eq!(
            increment(3, Some(5)),
            3,
            "below its last value: a new counter"
        );
    }
}
