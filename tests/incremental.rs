//! Property test: keeping a node's state change by change (`NodeState::apply/delete`,
//! which recompute only the pods `impact` names) gives exactly the ruleset a full build
//! from the same index gives, after every change of a random sequence; and the same
//! ClusterNetworkPolicy tiers for every pod (peers compared by their addresses). The mix
//! includes ClusterNetworkPolicies (some invalid, enforced fail-closed) and Nodes.

#[path = "common/changes.rs"]
mod changes;
mod common;

use changes::{cluster_with_nodes, mutate, obj};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::Kind;
use nftpol::ruleset::{build_with, Options};
use nftpol::state::{Batch, NodeState};
use nftpol::synth::Rng;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeSet;

/// Every pod's tiers with each peer replaced by its addresses: comparable across graphs
/// whose peer ids differ.
fn tiers_of(g: &PolicyGraph) -> Vec<String> {
    g.pods
        .values()
        .map(|p| {
            let t = &p.tiers;
            let sides = [
                &t.ingress.admin,
                &t.ingress.baseline,
                &t.egress.admin,
                &t.egress.baseline,
            ];
            let text: Vec<String> = sides
                .iter()
                .map(|r| {
                    let rules: Vec<String> = r
                        .rules
                        .iter()
                        .map(|r| {
                            let addrs = match r.peer {
                                nftpol::graph::PeerRef::Any => "any".to_string(),
                                nftpol::graph::PeerRef::Peer(id) => {
                                    format!("{:?}", g.peers[id].addrs)
                                }
                            };
                            format!("{} {addrs} {:?} {}", r.action, r.ports, r.origin)
                        })
                        .collect();
                    format!("{:?} {rules:?}", r.policies)
                })
                .collect();
            format!("{}: {text:?}", p.id())
        })
        .collect()
}

fn full(state: &NodeState, options: &Options) -> nftpol::ruleset::Ruleset {
    build_with(
        &PolicyGraph::build_for(state.index(), state.node()),
        options,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full(seed in any::<u64>(), node in prop_oneof![Just(Some("n1")), Just(Some("n2")), Just(None)], deny_unknown in any::<bool>(), max_elements in prop_oneof![Just(None), (1usize..12).prop_map(Some)]) {
        let c = cluster_with_nodes(seed);
        // A small element budget: policies go over it and back under as pods and peers
        // change, and the pods they select must follow (fail-closed, then allowed again).
        let options = Options { pod_cidrs: if deny_unknown { vec!["10.0.0.0/23".parse().unwrap()] } else { vec![] }, max_elements, ..Default::default() };
        // Built up object by object from nothing, as watch events arrive.
        let mut state = NodeState::with_options(Index::new(), node, options.clone());
        for v in &c.objects {
            let (_, error) = state.apply_reporting(obj(v));
            prop_assert!(error.is_none() || v["kind"] == "ClusterNetworkPolicy", "{:?}", error);
            prop_assert_eq!(state.model(), &full(&state, &options), "seed {} after adding {}", seed, v["metadata"]);
            prop_assert_eq!(tiers_of(state.graph()), tiers_of(&PolicyGraph::build_for(state.index(), state.node())), "seed {} after adding {}", seed, v["metadata"]);
        }
        let mut live = c.objects.clone();
        let mut rng = Rng::new(seed ^ 0x5eed);
        // The kernel holds the built-up model; from here each step is one batch.
        prop_assert!(matches!(state.batch(), Batch::Full(_)));
        state.acknowledged(true);
        for step in 0..12 {
            let recomputed = mutate(&mut rng, &mut state, &mut live, step);
            prop_assert_eq!(state.pending(), &recomputed, "seed {} step {}: pending", seed, step);
            prop_assert_eq!(state.model(), &full(&state, &options), "seed {} step {}", seed, step);
            prop_assert_eq!(tiers_of(state.graph()), tiers_of(&PolicyGraph::build_for(state.index(), state.node())), "seed {} step {}: tiers", seed, step);
            // What the controller sends and keeps: only the recomputed pods' objects differ,
            // and once the kernel acknowledges the batch it holds the new model.
            let nothing = matches!(state.batch(), Batch::Nothing);
            let was = state.kernel().cloned().unwrap();
            state.acknowledged(false);
            prop_assert_eq!(state.kernel(), Some(state.model()), "seed {} step {}: acknowledged", seed, step);
            if nothing {
                prop_assert_eq!(&was, state.model(), "seed {} step {}: no batch, yet the model moved", seed, step);
            }
            // Compacting the graph (dropping stale peers) changes no rule.
            let mut compacted = state.graph().clone();
            compacted.compact();
            prop_assert!(compacted.peer_count() <= state.graph().peer_count());
            prop_assert_eq!(&build_with(&compacted, &options), state.model(), "seed {} step {}: compact", seed, step);
            prop_assert_eq!(tiers_of(&compacted), tiers_of(state.graph()), "seed {} step {}: compact tiers", seed, step);
        }
    }
}

fn pod_obj(ns: &str, name: &str, node: &str, ip: &str, app: &str) -> nftpol::input::Object {
    versioned_pod(ns, name, node, ip, app, 0)
}

fn versioned_pod(
    ns: &str,
    name: &str,
    node: &str,
    ip: &str,
    app: &str,
    version: u32,
) -> nftpol::input::Object {
    common::pod(ns, name)
        .labels(&[("app", app), ("version", &version.to_string())])
        .node(node)
        .ip(ip)
        .port("http", 80, "TCP")
        .object()
}

/// A node's state compacts its graph once peers pile up, and the peer cache it keeps
/// follows the renumbering: every step after a compaction still equals a full build.
/// Remote pods come and go with fresh addresses, so each step interns new peers (the
/// plain peer and the egress named-port split) until the state compacts; then the local
/// pod is relabelled, which recomputes it from what the cache kept (the change cannot
/// touch its peers).
#[test]
fn compaction_keeps_cached_peers_right() {
    let mut state = NodeState::new(Index::new(), Some("n1"));
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "web", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
                 "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}]}
    });
    state
        .apply(obj(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
        ))
        .unwrap();
    state.apply(obj(&policy)).unwrap();
    state
        .apply(pod_obj("x", "web", "n1", "10.0.0.2", "web"))
        .unwrap();
    let mut compacted = 0;
    let mut peers = state.graph().peer_count();
    for i in 0..700u32 {
        let name = format!("c{i}");
        let ip = format!("10.1.{}.{}", i / 200, i % 200 + 1);
        state
            .apply(pod_obj("x", &name, "n2", &ip, "client"))
            .unwrap();
        if i % 3 == 0 {
            // Keep the peer growing but not without end; a relabel takes it out too.
            let gone = format!("c{}", i / 2);
            state
                .apply(pod_obj("x", &gone, "n2", "10.9.9.9", "other"))
                .unwrap();
            state.delete(Kind::Pod, Some("x"), &gone);
        }
        state
            .apply(versioned_pod("x", "web", "n1", "10.0.0.2", "web", i))
            .unwrap();
        let now = state.graph().peer_count();
        if now < peers {
            compacted += 1;
        }
        peers = now;
        assert_eq!(
            state.model(),
            &full(&state, &Options::default()),
            "step {i}"
        );
    }
    assert!(compacted >= 1, "the state never compacted its graph");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// A batching state (the controller's: events reach the index at once, the pods they
    /// touch are recomputed at the next batch) gives the full build's model at every
    /// batch, whatever the changes between two batches, and its batch covers exactly
    /// the pods those changes named.
    #[test]
    fn batched_equals_full(seed in any::<u64>(), node in prop_oneof![Just(Some("n1")), Just(Some("n2")), Just(None)]) {
        let c = cluster_with_nodes(seed);
        let options = Options::default();
        let mut state = NodeState::with_options(Index::new(), node, options.clone());
        state.set_batching(true);
        for v in &c.objects {
            state.apply_reporting(obj(v));
        }
        prop_assert!(matches!(state.batch(), Batch::Full(_)));
        prop_assert_eq!(state.model(), &full(&state, &options), "seed {} built up", seed);
        state.acknowledged(true);
        let mut live = c.objects.clone();
        let mut rng = Rng::new(seed ^ 0xba7c);
        let mut touched = BTreeSet::new();
        for step in 0..24 {
            touched.extend(mutate(&mut rng, &mut state, &mut live, step));
            if !rng.chance(35) && step != 23 {
                continue;
            }
            let nothing = matches!(state.batch(), Batch::Nothing);
            prop_assert_eq!(state.pending(), &touched, "seed {} step {}: pending", seed, step);
            prop_assert_eq!(state.model(), &full(&state, &options), "seed {} step {}", seed, step);
            let was = state.kernel().cloned().unwrap();
            state.acknowledged(false);
            prop_assert_eq!(state.kernel(), Some(state.model()), "seed {} step {}: acknowledged", seed, step);
            if nothing {
                prop_assert_eq!(&was, state.model(), "seed {} step {}: no batch, yet the model moved", seed, step);
            }
            touched.clear();
        }
    }
}
