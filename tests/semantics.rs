//! NetworkPolicy semantics, one rule per test, checked on the policy graph and through
//! `explain`. Expected results follow the Kubernetes NetworkPolicy API reference and the
//! upstream e2e suite, not the implementation. How the index follows changes is in
//! index_changes.rs, what the ruleset makes of the graph in ruleset.rs; ports and named
//! ports in semantics_ports.rs; ipBlock, scope and the graph in semantics_scope.rs.

mod common;

use std::collections::BTreeSet;

use common::*;
use nftpol::explain::Side;
use nftpol::graph::{PeerRef, Ports};
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Isolation and policyTypes
// ---------------------------------------------------------------------------------------

#[test]
fn isolation_only_by_policies_in_the_pods_own_namespace() {
    // A deny-all in y selects every pod *of y*; x/a has the label nothing cares about.
    let idx = cluster_with(vec![netpol("y", "deny-all")]);
    let g = graph(&idx);
    assert!(g.pod("x", "a").unwrap().ingress.is_none());
    assert!(g.pod("z", "d").unwrap().ingress.is_none());
    let c = g.pod("y", "c").unwrap().ingress.as_ref().unwrap();
    assert_eq!(c.isolated_by, ["y/deny-all"]);
    assert!(c.allows.is_empty());
    assert_verdicts(
        &idx,
        &[
            ("x/a", "y/c", "tcp/80", false),
            ("y/c", "x/a", "tcp/80", true),
            ("x/a", "z/d", "tcp/80", true),
        ],
    );
}

#[test]
fn policy_selecting_matching_labels_in_another_namespace_does_not_isolate() {
    // The policy in x selects pod=c, but c lives in y.
    let idx = cluster_with(vec![netpol("x", "p").selecting("pod", "c")]);
    let g = graph(&idx);
    assert!(g
        .pods
        .values()
        .all(|p| p.ingress.is_none() && p.egress.is_none()));
}

#[test]
fn policy_types_omitted_means_ingress_only() {
    let idx = cluster_with(vec![netpol("x", "p").selecting("pod", "a")]);
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    assert!(a.ingress.is_some());
    assert!(a.egress.is_none());
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", false),
            ("x/a", "x/b", "tcp/80", true),
            ("x/a", "8.8.8.8", "udp/53", true),
        ],
    );
}

#[test]
fn policy_types_omitted_with_egress_rules_adds_egress() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .egress(json!([{"to": [from_pod("b")]}]))]);
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    // Ingress too: the default always includes Ingress.
    assert_eq!(a.ingress.as_ref().unwrap().allows, []);
    assert_eq!(a.egress.as_ref().unwrap().isolated_by, ["x/p"]);
    assert_verdicts(
        &idx,
        &[
            ("x/a", "x/b", "tcp/80", true),
            ("x/a", "y/c", "tcp/80", false),
            ("x/b", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn empty_egress_list_without_policy_types_does_not_isolate_egress() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .egress(json!([]))]);
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    assert!(a.ingress.is_some());
    assert!(
        a.egress.is_none(),
        "egress: [] alone must not isolate egress"
    );
    assert!(allowed(&idx, "x/a", "y/c", "tcp/80"));
}

#[test]
fn explicit_egress_policy_type_alone_leaves_ingress_open() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .policy_types(&["Egress"])
        // Ingress rules of a policy whose types leave Ingress out are ignored.
        .ingress(json!([{"from": [from_pod("b")]}]))]);
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    assert!(a.ingress.is_none());
    assert_eq!(a.egress.as_ref().unwrap().allows, []);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            ("x/a", "x/b", "tcp/80", false),
            ("x/a", "8.8.8.8", "udp/53", false),
        ],
    );
}

#[test]
fn explicit_ingress_policy_type_alone_ignores_egress_rules() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .policy_types(&["Ingress"])
        .egress(json!([{"to": [from_pod("b")]}]))]);
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    assert!(a.egress.is_none());
    assert_eq!(a.ingress.unwrap().allows, []);
    assert_verdicts(&idx, &[("x/a", "y/c", "tcp/80", true)]);
}

#[test]
fn explicit_ingress_and_egress_types_isolate_both_even_without_rules() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .policy_types(&["Ingress", "Egress"])]);
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    assert_eq!(a.ingress.unwrap().allows, []);
    assert_eq!(a.egress.unwrap().allows, []);
}

#[test]
fn isolated_pod_with_no_allowing_rule_is_denied() {
    // A rule exists, but its peer selects no pod at all.
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .ingress(json!([{"from": [from_pod("nobody")]}]))]);
    let e = explain(&idx, "x/b", "x/a", "tcp/80");
    assert!(!e.allowed);
    match &e.ingress {
        Side::Denied { isolated_by, .. } => assert_eq!(isolated_by, &["x/p"]),
        other => panic!("expected denied, got {other:?}"),
    }
    assert!(e.egress.allows());
}

#[test]
fn policies_are_a_union() {
    let idx = cluster_with(vec![
        netpol("x", "web")
            .selecting("pod", "a")
            .ingress(json!([{"from": [from_pod("b")], "ports": [{"port": 80}]}])),
        netpol("x", "tls").selecting("pod", "a").ingress(
            json!([{"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}], "ports": [{"port": 443}]}]),
        ),
        // A deny-all never subtracts from what others allow.
        netpol("x", "deny-all"),
    ]);
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    assert_eq!(
        a.ingress.unwrap().isolated_by,
        ["x/deny-all", "x/tls", "x/web"]
    );
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", true),
            ("x/b", "x/a", "tcp/443", false),
            ("y/c", "x/a", "tcp/443", true),
            ("y/c", "x/a", "tcp/80", false),
            ("z/d", "x/a", "tcp/443", false),
        ],
    );
}

#[test]
fn both_the_client_egress_and_the_server_ingress_must_allow() {
    let idx = cluster_with(vec![
        // x/a may only send to y/c.
        netpol("x", "a-out")
            .selecting("pod", "a")
            .policy_types(&["Egress"])
            .egress(json!([{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "c"}}}]}])),
        // y/c accepts only from z.
        netpol("y", "c-in").ingress(json!([{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}])),
    ]);
    let e = explain(&idx, "x/a", "y/c", "tcp/80");
    assert!(!e.allowed);
    assert!(e.egress.allows(), "egress of x/a allows y/c: {e}");
    assert!(!e.ingress.allows(), "ingress of y/c refuses x/a: {e}");
    let e = explain(&idx, "x/a", "z/d", "tcp/80");
    assert!(!e.allowed);
    assert!(!e.egress.allows());
    assert!(e.ingress.allows());
    assert_verdicts(&idx, &[("z/d", "y/c", "tcp/80", true)]);
}

// ---------------------------------------------------------------------------------------
// Rules, peers
// ---------------------------------------------------------------------------------------

#[test]
fn empty_rule_allows_everything() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .policy_types(&["Ingress", "Egress"])
        .ingress(json!([{}]))
        .egress(json!([{}]))]);
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    for iso in [a.ingress.unwrap(), a.egress.unwrap()] {
        assert_eq!(iso.allows.len(), 1);
        assert_eq!(iso.allows[0].peer, PeerRef::Any);
        assert_eq!(iso.allows[0].ports, Ports::Any);
    }
    assert_verdicts(
        &idx,
        &[
            ("203.0.113.7", "x/a", "udp/53", true),
            ("y/c", "x/a", "sctp/9", true),
            ("x/a", "203.0.113.7", "tcp/65535", true),
        ],
    );
}

/// `from` on ingress and `to` on egress mirror each other: absent or empty, the rule
/// admits every peer, pods and external addresses alike, on the rule's ports only.
#[test]
fn absent_or_empty_peers_mean_all_peers_including_external() {
    type Verdicts = &'static [(&'static str, &'static str, &'static str, bool)];
    let table: [(&str, &str, serde_json::Value, Verdicts); 2] = [
        (
            "ingress",
            "from",
            json!([{"port": 80}]),
            &[
                ("203.0.113.7", "x/a", "tcp/80", true),
                ("y/c", "x/a", "tcp/80", true),
                ("192.168.100.2", "x/a", "tcp/80", true),
                ("203.0.113.7", "x/a", "tcp/81", false),
            ],
        ),
        (
            "egress",
            "to",
            json!([{"port": 443}]),
            &[
                ("x/a", "203.0.113.7", "tcp/443", true),
                ("x/a", "z/d", "tcp/443", true),
                ("x/a", "203.0.113.7", "tcp/80", false),
            ],
        ),
    ];
    for (direction, peers, ports, verdicts) in table {
        for rule in [json!({"ports": ports}), json!({peers: [], "ports": ports})] {
            let policy = netpol("x", "p").selecting("pod", "a");
            let policy = match direction {
                "ingress" => policy.ingress(json!([rule])),
                _ => policy.egress(json!([rule])),
            };
            assert_verdicts(&cluster_with(vec![policy]), verdicts);
        }
    }
}

#[test]
fn absent_or_empty_ports_means_all_ports_and_protocols() {
    for rule in [
        json!({"from": [from_pod("b")]}),
        json!({"from": [from_pod("b")], "ports": []}),
    ] {
        let idx = cluster_with(vec![netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([rule.clone()]))]);
        let a = graph(&idx).pod("x", "a").cloned().unwrap();
        assert_eq!(a.ingress.unwrap().allows[0].ports, Ports::Any);
        assert_verdicts(
            &idx,
            &[
                ("x/b", "x/a", "tcp/1", true),
                ("x/b", "x/a", "tcp/65535", true),
                ("x/b", "x/a", "udp/53", true),
                ("x/b", "x/a", "sctp/9", true),
                ("y/c", "x/a", "tcp/80", false),
            ],
        );
    }
}

#[test]
fn pod_selector_peer_selects_in_the_policys_namespace_only() {
    let idx = cluster_with(vec![
        // y/b2 has the label pod=b too, but lives in y.
        pod("y", "b2")
            .label("pod", "b")
            .node("n2")
            .ip("10.244.2.22"),
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [from_pod("b")]}])),
        netpol("x", "q")
            .selecting("pod", "b")
            .ingress(json!([{"from": [{"podSelector": {}}]}])),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", true),
            ("y/b2", "x/a", "tcp/80", false),
            // podSelector {} = every pod of x, none elsewhere, no external address.
            ("x/a", "x/b", "tcp/80", true),
            ("y/c", "x/b", "tcp/80", false),
            ("203.0.113.7", "x/b", "tcp/80", false),
        ],
    );
}

#[test]
fn namespace_selector_alone_selects_every_pod_of_matching_namespaces() {
    let idx = cluster_with(vec![
        pod("y", "e").node("n2").ip("10.244.2.23"),
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}]}])),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            // A pod without any label in a matching namespace.
            ("y/e", "x/a", "tcp/80", true),
            // Not the policy's own namespace unless it matches.
            ("x/b", "x/a", "tcp/80", false),
            ("z/d", "x/a", "tcp/80", false),
            ("203.0.113.7", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn empty_namespace_selector_selects_all_pods_in_all_namespaces_but_no_external_address() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .ingress(json!([{"from": [{"namespaceSelector": {}}]}]))]);
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", true),
            ("y/c", "x/a", "tcp/80", true),
            ("z/d", "x/a", "udp/53", true),
            ("203.0.113.7", "x/a", "tcp/80", false),
            ("192.168.100.2", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn pod_and_namespace_selector_in_one_peer_are_anded() {
    let idx = cluster_with(vec![
        pod("y", "c2")
            .label("pod", "other")
            .node("n2")
            .ip("10.244.2.22"),
        pod("z", "c3")
            .label("pod", "c")
            .node("n2")
            .ip("10.244.2.32"),
        pod("x", "c4")
            .label("pod", "c")
            .node("n1")
            .ip("10.244.1.14"),
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{
                "namespaceSelector": {"matchLabels": {"team": "y"}},
                "podSelector": {"matchLabels": {"pod": "c"}},
            }]}])),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            ("y/c2", "x/a", "tcp/80", false),
            ("z/c3", "x/a", "tcp/80", false),
            ("x/c4", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn pod_and_namespace_selector_in_two_peers_are_ored() {
    let idx = cluster_with(vec![
        pod("y", "c2")
            .label("pod", "other")
            .node("n2")
            .ip("10.244.2.22"),
        pod("x", "e").label("pod", "e").node("n1").ip("10.244.1.15"),
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [
                {"namespaceSelector": {"matchLabels": {"team": "y"}}},
                {"podSelector": {"matchLabels": {"pod": "b"}}},
            ]}])),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            ("y/c2", "x/a", "tcp/80", true),
            ("x/b", "x/a", "tcp/80", true),
            ("x/e", "x/a", "tcp/80", false),
            ("z/d", "x/a", "tcp/80", false),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Selectors
// ---------------------------------------------------------------------------------------

/// x/db (tier=db), x/web (tier=web), x/bare (no tier label); which are isolated by a
/// policy whose podSelector is `expr`.
fn isolated_by_expression(expr: serde_json::Value) -> BTreeSet<String> {
    let idx = index(vec![
        ns("x"),
        pod("x", "db").label("tier", "db").ip("10.244.1.1"),
        pod("x", "web").label("tier", "web").ip("10.244.1.2"),
        pod("x", "bare").ip("10.244.1.3"),
        netpol("x", "p").pod_selector(json!({"matchExpressions": [expr]})),
    ]);
    graph(&idx)
        .pods
        .values()
        .filter(|p| p.ingress.is_some())
        .map(|p| p.name.clone())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn match_expression_in() {
    assert_eq!(
        isolated_by_expression(json!({"key": "tier", "operator": "In", "values": ["db", "cache"]})),
        names(&["db"])
    );
}

#[test]
fn match_expression_not_in_also_matches_pods_lacking_the_key() {
    assert_eq!(
        isolated_by_expression(json!({"key": "tier", "operator": "NotIn", "values": ["db"]})),
        names(&["bare", "web"])
    );
}

#[test]
fn match_expression_exists() {
    assert_eq!(
        isolated_by_expression(json!({"key": "tier", "operator": "Exists"})),
        names(&["db", "web"])
    );
}

#[test]
fn match_expression_does_not_exist() {
    assert_eq!(
        isolated_by_expression(json!({"key": "tier", "operator": "DoesNotExist"})),
        names(&["bare"])
    );
}

#[test]
fn match_labels_and_expressions_are_anded() {
    let idx = index(vec![
        pod("x", "a")
            .labels(&[("app", "s"), ("tier", "db")])
            .ip("10.244.1.1"),
        pod("x", "b")
            .labels(&[("app", "s"), ("tier", "web")])
            .ip("10.244.1.2"),
        pod("x", "c")
            .labels(&[("app", "t"), ("tier", "db")])
            .ip("10.244.1.3"),
        netpol("x", "p").pod_selector(json!({
            "matchLabels": {"app": "s"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}],
        })),
    ]);
    let isolated: Vec<String> = graph(&idx)
        .pods
        .values()
        .filter(|p| p.ingress.is_some())
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(isolated, ["a"]);
}

#[test]
fn namespace_selector_match_expressions_on_peers() {
    let idx = cluster_with(vec![netpol("x", "p").selecting("pod", "a").ingress(json!([{"from": [{
        "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["y"]}]},
    }]}]))]);
    assert_verdicts(
        &idx,
        &[
            // x and z have no team label: NotIn matches them.
            ("x/b", "x/a", "tcp/80", true),
            ("z/d", "x/a", "tcp/80", true),
            ("y/c", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn namespace_name_label_is_implied_for_given_namespaces() {
    // ns y is given with its own labels; the API server adds the name label anyway.
    let idx = cluster_with(vec![netpol("x", "p").selecting("pod", "a").ingress(
        json!([{"from": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
        }]}]),
    )]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            ("z/d", "x/a", "tcp/80", false),
            ("x/b", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn namespace_name_label_is_implied_for_namespaces_not_given() {
    // No Namespace objects at all: the pods' namespaces still carry their name label.
    let idx = index(vec![
        pod("x", "a").label("pod", "a").ip("10.244.1.11"),
        pod("w", "v").ip("10.244.3.1"),
        pod("q", "r").ip("10.244.3.2"),
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{
                "namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["w"]},
                ]},
            }]}])),
    ]);
    assert_eq!(
        idx.implied_namespaces(),
        ["q", "w", "x"].iter().map(|s| s.to_string()).collect()
    );
    assert_verdicts(
        &idx,
        &[
            ("w/v", "x/a", "tcp/80", true),
            ("q/r", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn namespace_name_label_cannot_be_overridden_by_given_labels() {
    // The API server always sets kubernetes.io/metadata.name to the namespace's name.
    let idx = cluster_with(vec![
        ns("v").label("kubernetes.io/metadata.name", "y"),
        pod("v", "e").node("n2").ip("10.244.2.40"),
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
            }]}])),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            ("v/e", "x/a", "tcp/80", false),
        ],
    );
}
