//! Random changes to a node's state, for the property tests that follow a cluster change
//! by change (tests/incremental.rs, tests/diff_order.rs; included with
//! `#[path = "common/changes.rs"]`): the generated clusters of `nftpol::synth::small`,
//! with Nodes and ClusterNetworkPolicies, and one random change at a time, applied to a
//! [`NodeState`] and to the list of live objects.
#![allow(dead_code)]

use std::collections::BTreeSet;

use nftpol::input::{object_from_value, Kind};
use nftpol::state::NodeState;
use nftpol::synth::small::{self, cluster, cluster_policy as cnp, labels, node as node_obj, pick};
use nftpol::synth::Rng;
use serde_json::{json, Value};

pub fn track(touched: &mut BTreeSet<(String, String)>, u: nftpol::state::Update) {
    touched.extend(u.recomputed);
}

pub fn obj(v: &Value) -> nftpol::input::Object {
    object_from_value(v.clone(), "gen").unwrap().unwrap()
}

/// One random change to the cluster, applied to the state.
pub fn mutate(
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
            let mut p = small::policy(rng, &name);
            audit_sometimes(rng, &mut p);
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
                    let mut v = cnp(rng, &name, 10);
                    audit_sometimes(rng, &mut v);
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

/// Puts a policy in audit mode (`nftpol.io/mode: audit`) one time in three, so that a
/// policy also changes by entering or leaving audit mode.
fn audit_sometimes(rng: &mut Rng, policy: &mut Value) {
    if rng.chance(33) {
        policy["metadata"]["annotations"] = json!({"nftpol.io/mode": "audit"});
    }
}

/// The generated cluster of `seed`, with its two Nodes and up to two
/// ClusterNetworkPolicies.
pub fn cluster_with_nodes(seed: u64) -> small::Cluster {
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
