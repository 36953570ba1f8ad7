//! Which pods a ClusterNetworkPolicy-related change recomputes (`NodeState` through
//! `impact`): all the pods whose tiers can change, and no others. That it is at least
//! those is the property test's (incremental.rs); these pin the "no more" side.

mod common;

use std::collections::BTreeSet;

use common::*;
use nftpol::input::Kind;
use nftpol::state::NodeState;
use serde_json::json;

fn cnp(name: &str, priority: i64, subject: serde_json::Value, egress: serde_json::Value) -> Obj {
    Obj(json!({
        "apiVersion": "policy.networking.k8s.io/v1beta1",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"tier": "Admin", "priority": priority, "subject": subject, "egress": egress},
    }))
}

fn ns_subject(ns: &str) -> serde_json::Value {
    json!({"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": ns}}})
}

fn node(name: &str, addr: &str, role: &str) -> Obj {
    Obj(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"role": role}},
        "spec": {"podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": addr}]},
    }))
}

fn keys(list: &[&str]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|k| {
            let (ns, name) = k.split_once('/').unwrap();
            (ns.to_string(), name.to_string())
        })
        .collect()
}

fn state(extra: Vec<Obj>) -> NodeState {
    let mut all = cluster();
    all.push(node("n1", "192.168.100.1", "worker"));
    all.push(node("n2", "192.168.100.2", "worker"));
    all.extend(extra);
    NodeState::new(index(all), None)
}

fn apply(s: &mut NodeState, o: Obj) -> BTreeSet<(String, String)> {
    let (u, e) = s.apply_reporting(o.object());
    assert!(e.is_none(), "{e:?}");
    u.recomputed
}

#[test]
fn a_cnp_add_change_and_delete_recompute_its_subjects_only() {
    let mut s = state(vec![]);
    let deny_y =
        json!([{"action": "Deny", "to": [{"namespaces": {"matchLabels": {"team": "y"}}}]}]);
    let p = cnp("p", 5, ns_subject("x"), deny_y.clone());
    assert_eq!(apply(&mut s, p.clone()), keys(&["x/a", "x/b"]));
    assert_eq!(apply(&mut s, p.clone()), keys(&[]), "the same object again");
    let moved = cnp("p", 6, ns_subject("x"), deny_y.clone());
    assert_eq!(apply(&mut s, moved), keys(&["x/a", "x/b"]));
    // A subject change recomputes the pods it selected and those it selects now.
    let other = cnp("p", 6, ns_subject("z"), deny_y);
    assert_eq!(apply(&mut s, other), keys(&["x/a", "x/b", "z/d"]));
    let u = s.delete(Kind::ClusterNetworkPolicy, None, "p");
    assert_eq!(u.recomputed, keys(&["z/d"]));
}

#[test]
fn a_node_change_recomputes_the_subjects_of_policies_with_a_matching_nodes_peer() {
    let mut s = state(vec![
        cnp(
            "to-infra",
            1,
            ns_subject("x"),
            json!([{"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]),
        ),
        cnp(
            "to-y",
            1,
            ns_subject("y"),
            json!([{"action": "Deny", "to": [{"namespaces": {}}]}]),
        ),
    ]);
    // n2 becomes infra: x's pods gain its address.
    assert_eq!(
        apply(&mut s, node("n2", "192.168.100.2", "infra")),
        keys(&["x/a", "x/b"])
    );
    // Readdressed while selected.
    assert_eq!(
        apply(&mut s, node("n2", "192.168.100.9", "infra")),
        keys(&["x/a", "x/b"])
    );
    // n1 relabelled between two labels no selector picks: nothing.
    assert_eq!(apply(&mut s, node("n1", "192.168.100.1", "gpu")), keys(&[]));
    // Only the pod CIDR changes (no peer reads it): nothing.
    let cidr =
        node("n1", "192.168.100.1", "gpu").set(&["spec"], "podCIDRs", json!(["10.244.9.0/24"]));
    assert_eq!(apply(&mut s, cidr), keys(&[]));
    assert_eq!(
        s.delete(Kind::Node, None, "n2").recomputed,
        keys(&["x/a", "x/b"])
    );
}

#[test]
fn a_namespace_relabel_recomputes_new_and_old_subjects_and_peer_holders() {
    let mut s = state(vec![
        cnp(
            "team-y",
            1,
            json!({"namespaces": {"matchLabels": {"team": "y"}}}),
            json!([{"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}]),
        ),
        cnp(
            "to-blue",
            1,
            ns_subject("x"),
            json!([{"action": "Deny", "to": [{"namespaces": {"matchLabels": {"colour": "blue"}}}]}]),
        ),
    ]);
    // z joins team y: its pod becomes a subject; no peer reads "team".
    assert_eq!(apply(&mut s, ns("z").label("team", "y")), keys(&["z/d"]));
    // z turns blue: x's pods gain z/d as a peer (z stays in team y: z/d unchanged).
    assert_eq!(
        apply(&mut s, ns("z").labels(&[("team", "y"), ("colour", "blue")])),
        keys(&["x/a", "x/b"])
    );
    // A label nothing reads.
    assert_eq!(
        apply(
            &mut s,
            ns("z").labels(&[("team", "y"), ("colour", "blue"), ("cost", "1")])
        ),
        keys(&[])
    );
}

#[test]
fn a_pod_change_recomputes_itself_and_the_subjects_whose_peers_it_joins_or_leaves() {
    let mut s = state(vec![cnp(
        "y-to-web",
        1,
        ns_subject("y"),
        json!([{"action": "Accept", "to": [{"pods": {"podSelector": {"matchLabels": {"role": "web"}}}}]}]),
    )]);
    // x/b becomes web: y/c's peer gains it.
    let b = pod("x", "b")
        .labels(&[("pod", "b"), ("role", "web")])
        .node("n1")
        .ip("10.244.1.12")
        .host_ip("192.168.100.1");
    assert_eq!(apply(&mut s, b.clone()), keys(&["x/b", "y/c"]));
    // Another label on it: membership unchanged, only itself.
    assert_eq!(apply(&mut s, b.label("tier", "front")), keys(&["x/b"]));
    // A pod no peer holds: only itself.
    let d = pod("z", "d")
        .label("pod", "d")
        .label("x", "1")
        .node("n2")
        .ip("10.244.2.31")
        .host_ip("192.168.100.2");
    assert_eq!(apply(&mut s, d), keys(&["z/d"]));
}
