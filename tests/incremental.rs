//! Property test: keeping a node's state change by change (`NodeState::apply/delete`,
//! which recompute only the pods `impact` names) gives exactly the ruleset a full build
//! from the same index gives, after every change of a random sequence; and the same
//! ClusterNetworkPolicy tiers for every pod (peers compared by their addresses). The mix
//! includes ClusterNetworkPolicies (some invalid, enforced fail-closed) and Nodes.

use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::{object_from_value, Kind};
use nftpol::ruleset::{build_with, Options};
use nftpol::state::{Batch, NodeState};
use nftpol::synth::small::{self, cluster, cluster_policy as cnp, labels, node as node_obj, pick};
use nftpol::synth::Rng;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn track(touched: &mut BTreeSet<(String, String)>, u: nftpol::state::Update) {
    touched.extend(u.recomputed);
}

fn obj(v: &Value) -> nftpol::input::Object {
    object_from_value(v.clone(), "gen").unwrap().unwrap()
}

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

/// One random change to the cluster, applied to the state.
fn mutate(
    rng: &mut Rng,
    state: &mut NodeState,
    live: &mut Vec<Value>,
    step: usize,
) -> BTreeSet<(String, String)> {
    let mut touched = BTreeSet::new();
    let pods: Vec<usize> = (0..live.len())
        .filter(|&i| live[i]["kind"] == "Pod")
        .collect();
    let policies: Vec<usize> = (0..live.len())
        .filter(|&i| live[i]["kind"] == "NetworkPolicy")
        .collect();
    match rng.below(12) {
        0 | 1 if !pods.is_empty() => {
            // Relabel a pod.
            let i = pods[rng.below(pods.len())];
            live[i]["metadata"]["labels"] = labels(rng);
            track(&mut touched, state.apply_reporting(obj(&live[i])).0);
        }
        2 if !pods.is_empty() => {
            // Delete a pod; sometimes a new pod takes its addresses with other labels.
            let i = pods[rng.below(pods.len())];
            let old = live.remove(i);
            let ns = old["metadata"]["namespace"].as_str().unwrap().to_string();
            let name = old["metadata"]["name"].as_str().unwrap().to_string();
            touched.extend(state.delete(Kind::Pod, Some(&ns), &name).recomputed);
            if rng.chance(50) {
                let mut new = old.clone();
                new["metadata"]["name"] = json!(format!("reuse{step}"));
                new["metadata"]["namespace"] = json!(pick(rng, &["x", "y"]));
                new["metadata"]["labels"] = labels(rng);
                track(&mut touched, state.apply_reporting(obj(&new)).0);
                live.push(new);
            }
        }
        3 if !pods.is_empty() => {
            // Named ports change.
            let i = pods[rng.below(pods.len())];
            let port = 80 + rng.below(3) as i64;
            live[i]["spec"]["containers"][0]["ports"] = json!([{"name": pick(rng, &small::PORT_NAMES), "containerPort": port, "protocol": pick(rng, &["TCP", "UDP"])}]);
            track(&mut touched, state.apply_reporting(obj(&live[i])).0);
        }
        4 => {
            // Relabel or delete a namespace.
            let ns = pick(rng, &["x", "y"]);
            if rng.chance(30) {
                live.retain(|v| !(v["kind"] == "Namespace" && v["metadata"]["name"] == ns));
                touched.extend(state.delete(Kind::Namespace, None, ns).recomputed);
            } else {
                let v = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels(rng)}});
                live.retain(|o| !(o["kind"] == "Namespace" && o["metadata"]["name"] == ns));
                track(&mut touched, state.apply_reporting(obj(&v)).0);
                live.push(v);
            }
        }
        5 | 6 => {
            // Add or replace a policy.
            let name = format!("np{}", rng.below(4));
            let p = small::policy(rng, &name);
            let key = (
                p["metadata"]["namespace"].clone(),
                p["metadata"]["name"].clone(),
            );
            live.retain(|o| {
                !(o["kind"] == "NetworkPolicy"
                    && (
                        o["metadata"]["namespace"].clone(),
                        o["metadata"]["name"].clone(),
                    ) == key)
            });
            track(&mut touched, state.apply_reporting(obj(&p)).0);
            live.push(p);
        }
        7 if !policies.is_empty() => {
            let i = policies[rng.below(policies.len())];
            let old = live.remove(i);
            touched.extend(
                state
                    .delete(
                        Kind::NetworkPolicy,
                        old["metadata"]["namespace"].as_str(),
                        old["metadata"]["name"].as_str().unwrap(),
                    )
                    .recomputed,
            );
        }
        8 | 10 => {
            // A ClusterNetworkPolicy added, changed (priority, tier, rules), or deleted;
            // or a Node added, relabelled, readdressed or deleted.
            let name = format!("cnp{}", rng.below(3));
            let live_cnp = live.iter().position(|o| {
                o["kind"] == "ClusterNetworkPolicy" && o["metadata"]["name"] == name.as_str()
            });
            match rng.below(4) {
                0 if live_cnp.is_some() => {
                    live.remove(live_cnp.unwrap());
                    touched.extend(
                        state
                            .delete(Kind::ClusterNetworkPolicy, None, &name)
                            .recomputed,
                    );
                }
                0 | 1 => {
                    let v = cnp(rng, &name, 10);
                    if let Some(i) = live_cnp {
                        live.remove(i);
                    }
                    track(&mut touched, state.apply_reporting(obj(&v)).0);
                    live.push(v);
                }
                2 => {
                    let n = 1 + rng.below(2);
                    let v = node_obj(rng, n);
                    live.retain(|o| {
                        !(o["kind"] == "Node" && o["metadata"]["name"] == v["metadata"]["name"])
                    });
                    track(&mut touched, state.apply_reporting(obj(&v)).0);
                    live.push(v);
                }
                _ => {
                    let n = format!("n{}", 1 + rng.below(2));
                    live.retain(|o| !(o["kind"] == "Node" && o["metadata"]["name"] == n.as_str()));
                    touched.extend(state.delete(Kind::Node, None, &n).recomputed);
                }
            }
        }
        9 if !pods.is_empty() => {
            // A new pod claims a live pod's addresses while the old one is still listed
            // (a deletion not yet seen): two pods, one address, perhaps other labels.
            let i = pods[rng.below(pods.len())];
            let mut new = live[i].clone();
            new["metadata"]["name"] = json!(format!("dup{step}"));
            new["metadata"]["namespace"] = json!(pick(rng, &["x", "y"]));
            new["metadata"]["labels"] = labels(rng);
            track(&mut touched, state.apply_reporting(obj(&new)).0);
            live.push(new);
        }
        _ if !pods.is_empty() => {
            // Move a pod to the other node (a new incarnation with new addresses).
            let i = pods[rng.below(pods.len())];
            let node = if live[i]["spec"]["nodeName"] == "n1" {
                2
            } else {
                1
            };
            live[i]["spec"]["nodeName"] = json!(format!("n{node}"));
            live[i]["status"]["podIPs"] =
                json!([{"ip": format!("10.0.{}.{}", node - 1, 100 + step)}]);
            live[i]["status"]["hostIP"] = json!(format!("192.168.100.{node}"));
            live[i]["status"]["hostIPs"] = json!([{"ip": format!("192.168.100.{node}")}]);
            track(&mut touched, state.apply_reporting(obj(&live[i])).0);
        }
        _ => {}
    }
    touched
}

/// The generated cluster of `seed`, with its two Nodes and up to two
/// ClusterNetworkPolicies.
fn cluster_with_nodes(seed: u64) -> small::Cluster {
    let mut c = cluster(seed);
    let mut gen = Rng::new(seed ^ 0xc1a5);
    for n in 1..=2 {
        c.objects.push(node_obj(&mut gen, n));
    }
    for i in 0..gen.below(3) {
        c.objects.push(cnp(&mut gen, &format!("cnp{i}"), 10));
    }
    c
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
    obj(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app, "version": version.to_string()}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]}
    }))
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
