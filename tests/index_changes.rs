//! Changes through the index: deleting a policy or a pod, relabelling a pod or a
//! namespace, a pod added later. After each change the graph and `explain` must say what
//! NetworkPolicy semantics (semantics.rs) says of the objects the index now holds.

mod common;

use common::*;
use nftpol::input::Kind;
use serde_json::json;

#[test]
fn deleting_a_policy_removes_isolation() {
    let mut idx = cluster_with(vec![netpol("x", "p").selecting("pod", "a")]);
    assert!(!allowed(&idx, "x/b", "x/a", "tcp/80"));
    assert!(idx.delete(Kind::NetworkPolicy, Some("x"), "p"));
    assert!(graph(&idx).pod("x", "a").unwrap().ingress.is_none());
    assert!(allowed(&idx, "x/b", "x/a", "tcp/80"));
    assert!(!idx.delete(Kind::NetworkPolicy, Some("x"), "p"));
}

#[test]
fn relabelling_a_pod_moves_it_into_and_out_of_a_policy() {
    let c_as = |label: &str| {
        pod("x", "c")
            .label("pod", label)
            .node("n1")
            .ip("10.244.1.13")
            .host_ip("192.168.100.1")
    };
    let mut idx = cluster_with(vec![
        c_as("other"),
        netpol("x", "p")
            .selecting("role", "db")
            .ingress(json!([{"from": [from_pod("b")]}])),
    ]);
    assert!(graph(&idx).pod("x", "c").unwrap().ingress.is_none());
    // In: relabelled to role=db.
    assert!(idx
        .apply(c_as("other").label("role", "db").object())
        .unwrap());
    assert_eq!(
        graph(&idx)
            .pod("x", "c")
            .unwrap()
            .ingress
            .as_ref()
            .unwrap()
            .isolated_by,
        ["x/p"]
    );
    assert_verdicts(
        &idx,
        &[
            ("x/a", "x/c", "tcp/80", false),
            ("x/b", "x/c", "tcp/80", true),
        ],
    );
    // As a peer: b becomes pod=bb, no longer allowed.
    assert!(idx
        .apply(
            pod("x", "b")
                .label("pod", "bb")
                .node("n1")
                .ip("10.244.1.12")
                .host_ip("192.168.100.1")
                .object()
        )
        .unwrap());
    assert!(!allowed(&idx, "x/b", "x/c", "tcp/80"));
    // Out again.
    assert!(idx.apply(c_as("other").object()).unwrap());
    assert!(graph(&idx).pod("x", "c").unwrap().ingress.is_none());
    assert!(allowed(&idx, "x/a", "x/c", "tcp/80"));
    // Applying the same object again changes nothing.
    assert!(!idx.apply(c_as("other").object()).unwrap());
}

#[test]
fn a_pod_added_later_is_isolated_by_an_existing_policy_and_becomes_a_peer() {
    let mut idx = cluster_with(vec![
        netpol("x", "deny-all"),
        netpol("x", "allow-b")
            .selecting("pod", "a")
            .ingress(json!([{"from": [from_pod("b")]}])),
    ]);
    let b2 = pod("x", "b2")
        .label("pod", "b")
        .node("n1")
        .ip("10.244.1.20")
        .host_ip("192.168.100.1");
    assert!(idx.apply(b2.object()).unwrap());
    let g = graph(&idx);
    assert_eq!(
        g.pod("x", "b2")
            .unwrap()
            .ingress
            .as_ref()
            .unwrap()
            .isolated_by,
        ["x/deny-all"]
    );
    assert_verdicts(
        &idx,
        &[
            ("x/b2", "x/a", "tcp/80", true),
            ("x/a", "x/b2", "tcp/80", false),
        ],
    );
}

#[test]
fn deleting_a_pod_removes_it_from_peers() {
    let mut idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .ingress(json!([{"from": [from_pod("b")]}]))]);
    assert!(idx.delete(Kind::Pod, Some("x"), "b"));
    let g = graph(&idx);
    assert!(g.pod("x", "b").is_none());
    let allow = &g.pod("x", "a").unwrap().ingress.as_ref().unwrap().allows[0];
    assert!(!g.peer_contains(allow.peer, ip("10.244.1.12")));
    assert_verdicts(&idx, &[("10.244.1.12", "x/a", "tcp/80", false)]);
}

#[test]
fn relabelling_a_namespace_moves_its_pods_into_and_out_of_a_peer() {
    let mut idx = cluster_with(vec![netpol("x", "p").selecting("pod", "a").ingress(
        json!([{
            "from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}],
        }]),
    )]);
    assert!(!allowed(&idx, "z/d", "x/a", "tcp/80"));
    assert!(idx.apply(ns("z").label("team", "y").object()).unwrap());
    assert!(allowed(&idx, "z/d", "x/a", "tcp/80"));
    assert!(idx.apply(ns("y").object()).unwrap());
    assert!(!allowed(&idx, "y/c", "x/a", "tcp/80"));
}
