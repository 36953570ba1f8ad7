//! NetworkPolicy semantics, continued from semantics.rs: ipBlock, which pods a policy
//! applies to, and the graph itself. Expected results follow the Kubernetes
//! NetworkPolicy API reference and the upstream e2e suite, not the implementation.

mod common;

use std::collections::BTreeSet;

use common::*;
use nftpol::explain::{Family, Side};
use nftpol::graph::{Origin, PeerRef};
use nftpol::policy::Direction;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// ipBlock
// ---------------------------------------------------------------------------------------

#[test]
fn ip_block_with_except_v4() {
    let idx = cluster_with(vec![netpol("x", "p").selecting("pod", "a").ingress(
        json!([{"from": [{
            "ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.9.9.0/24"]},
        }]}]),
    )]);
    assert_verdicts(
        &idx,
        &[
            ("10.0.0.0", "x/a", "tcp/80", true),
            ("10.0.255.255", "x/a", "tcp/80", true),
            ("10.1.0.0", "x/a", "tcp/80", false),
            ("10.1.200.3", "x/a", "tcp/80", false),
            ("10.1.255.255", "x/a", "tcp/80", false),
            ("10.2.0.0", "x/a", "tcp/80", true),
            ("10.9.9.9", "x/a", "tcp/80", false),
            ("10.9.10.0", "x/a", "tcp/80", true),
            ("10.255.255.255", "x/a", "tcp/80", true),
            ("11.0.0.0", "x/a", "tcp/80", false),
            ("9.255.255.255", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn ip_block_with_except_v6() {
    let mut objs = dual_stack();
    objs.push(
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{
                "ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]},
            }]}])),
    );
    let idx = index(objs);
    assert_verdicts(
        &idx,
        &[
            ("2001:db8::1", "x/a", "tcp/80", true),
            ("2001:db8:0:ffff:ffff:ffff:ffff:ffff", "x/a", "tcp/80", true),
            ("2001:db8:1::", "x/a", "tcp/80", false),
            ("2001:db8:1:ffff::5", "x/a", "tcp/80", false),
            ("2001:db8:2::", "x/a", "tcp/80", true),
            ("2001:db9::1", "x/a", "tcp/80", false),
            // An IPv6 block says nothing about IPv4.
            ("10.0.0.1", "x/a", "tcp/80", false),
        ],
    );
    // The explanation used a's IPv6 address.
    let e = explain(&idx, "2001:db8::1", "x/a", "tcp/80");
    assert_eq!(e.to.ip(), ip("fd00:10:244:1::11"));
}

#[test]
fn ip_block_matches_pod_addresses() {
    let idx = cluster_with(vec![netpol("x", "p").selecting("pod", "a").ingress(
        json!([{"from": [
            {"ipBlock": {"cidr": "10.244.1.12/32"}},
            {"ipBlock": {"cidr": "10.244.2.0/24", "except": ["10.244.2.16/29"]}},
        ]}]),
    )]);
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", true),
            // 10.244.2.31 is outside the except.
            ("z/d", "x/a", "tcp/80", true),
            // 10.244.2.21 is inside 10.244.2.16/29 (.16 to .23).
            ("y/c", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn ip_block_on_egress_for_dual_stack_pod_uses_the_family_asked() {
    let mut objs = dual_stack();
    objs.push(
        netpol("x", "p")
            .selecting("pod", "a")
            .policy_types(&["Egress"])
            .egress(json!([{"to": [{"ipBlock": {"cidr": "fd00:10:244:1::12/128"}}]}])),
    );
    let idx = index(objs);
    assert!(explain_family(&idx, "x/a", "x/b", "tcp/80", Family::V6).allowed);
    assert!(!explain_family(&idx, "x/a", "x/b", "tcp/80", Family::V4).allowed);
}

// ---------------------------------------------------------------------------------------
// Which pods policy applies to
// ---------------------------------------------------------------------------------------

#[test]
fn host_network_pods_are_never_selected_and_are_not_pod_peers() {
    let idx = index(vec![
        ns("x"),
        pod("x", "a")
            .label("pod", "a")
            .node("n1")
            .ip("10.244.1.11")
            .host_ip("192.168.100.1"),
        // A hostNetwork pod on n2 with the same label: its address is its node's.
        pod("x", "h")
            .label("pod", "a")
            .node("n2")
            .host_network()
            .ip("192.168.100.2")
            .host_ip("192.168.100.2"),
        netpol("x", "p").ingress(json!([{"from": [{"podSelector": {}}]}])),
    ]);
    let g = graph(&idx);
    assert!(
        g.pod("x", "h").is_none(),
        "a hostNetwork pod is not in the graph"
    );
    assert!(g.pod("x", "a").unwrap().ingress.is_some());
    // The peer "every pod of x" does not include the hostNetwork pod's address.
    let allow = &g.pod("x", "a").unwrap().ingress.as_ref().unwrap().allows[0];
    assert!(!g.peer_contains(allow.peer, ip("192.168.100.2")));
    assert!(g.peer_contains(allow.peer, ip("10.244.1.11")));
    assert_verdicts(
        &idx,
        &[
            ("x/h", "x/a", "tcp/80", false),
            // Not isolated: the deny-all-but-pods policy does not select it.
            ("x/a", "x/h", "tcp/80", true),
        ],
    );
}

#[test]
fn pods_without_an_address_are_neither_enforced_nor_peers() {
    let idx = cluster_with(vec![
        pod("x", "pending").label("pod", "a").node("n1"),
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{"podSelector": {}}]}])),
    ]);
    let g = graph(&idx);
    assert!(g.pod("x", "pending").is_none());
    assert!(g.pod("x", "a").unwrap().ingress.is_some());
    assert_eq!(g.pods.len(), 4);
}

#[test]
fn finished_pods_are_neither_enforced_nor_peers() {
    for phase in ["Succeeded", "Failed"] {
        let idx = cluster_with(vec![
            // Its address may already belong to someone else.
            pod("x", "done")
                .label("pod", "a")
                .node("n1")
                .ip("10.244.1.99")
                .phase(phase),
            netpol("x", "p")
                .selecting("pod", "a")
                .ingress(json!([{"from": [{"podSelector": {}}]}])),
        ]);
        let g = graph(&idx);
        assert!(g.pod("x", "done").is_none(), "{phase}");
        let allow = &g.pod("x", "a").unwrap().ingress.as_ref().unwrap().allows[0];
        assert!(!g.peer_contains(allow.peer, ip("10.244.1.99")), "{phase}");
        assert_verdicts(
            &idx,
            &[
                ("10.244.1.99", "x/a", "tcp/80", false),
                ("x/b", "x/a", "tcp/80", true),
            ],
        );
        assert!(nftpol::explain::explain(&idx, "x/done", "x/a", "tcp/80").is_err());
    }
}

#[test]
fn traffic_between_a_pod_and_its_own_node_is_always_allowed() {
    let idx = cluster_with(vec![netpol("x", "deny-all")
        .selecting("pod", "a")
        .policy_types(&["Ingress", "Egress"])]);
    assert_verdicts(
        &idx,
        &[
            ("192.168.100.1", "x/a", "tcp/80", true),
            ("x/a", "192.168.100.1", "tcp/10250", true),
            // Another node follows the rules.
            ("192.168.100.2", "x/a", "tcp/80", false),
            ("x/a", "192.168.100.2", "tcp/10250", false),
        ],
    );
    let e = explain(&idx, "192.168.100.1", "x/a", "tcp/80");
    assert_eq!(e.ingress, Side::OwnNode);
}

#[test]
fn another_nodes_address_is_allowed_only_by_a_rule() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .ingress(json!([{"from": [{"ipBlock": {"cidr": "192.168.100.2/32"}}]}]))]);
    assert_verdicts(
        &idx,
        &[
            ("192.168.100.2", "x/a", "tcp/80", true),
            ("192.168.100.3", "x/a", "tcp/80", false),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// The graph itself
// ---------------------------------------------------------------------------------------

#[test]
fn peers_selecting_the_same_addresses_are_one_graph_node() {
    let idx = cluster_with(vec![
        netpol("x", "p1").selecting("pod", "a").ingress(json!([{"from": [from_pod("b")]}])),
        netpol("x", "p2")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{"ipBlock": {"cidr": "10.244.1.12/32"}}]}])),
        netpol("x", "p3").selecting("pod", "a").ingress(json!([{"from": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}},
            "podSelector": {"matchLabels": {"pod": "b"}},
        }]}])),
        // Selecting the same pod, from another policy on another pod.
        netpol("y", "p4").ingress(json!([{"from": [{
            "namespaceSelector": {},
            "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]},
        }]}])),
    ]);
    let g = graph(&idx);
    assert_eq!(g.peers.len(), 1, "{g}");
    let a = g.pod("x", "a").unwrap().ingress.clone().unwrap();
    let c = g.pod("y", "c").unwrap().ingress.clone().unwrap();
    let peers: BTreeSet<PeerRef> = a.allows.iter().chain(&c.allows).map(|x| x.peer).collect();
    assert_eq!(peers.len(), 1);
    assert_eq!(a.allows.len(), 3);
    // The distinct address sets of the graph's peers are all different.
    let distinct: BTreeSet<_> = g.peers.iter().map(|p| p.addrs.clone()).collect();
    assert_eq!(distinct.len(), g.peers.len());
}

#[test]
fn distinct_address_sets_are_distinct_graph_nodes() {
    let idx = cluster_with(vec![netpol("x", "p").selecting("pod", "a").ingress(
        json!([
            {"from": [from_pod("b"), {"ipBlock": {"cidr": "10.0.0.0/8"}}]},
            {"from": [from_pod("b")], "ports": [{"port": 80}]},
        ]),
    )]);
    let g = graph(&idx);
    assert_eq!(g.peers.len(), 2, "{g}");
    let distinct: BTreeSet<_> = g.peers.iter().map(|p| p.addrs.clone()).collect();
    assert_eq!(distinct.len(), 2);
}

#[test]
fn allows_trace_back_to_policy_rule_and_peer() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .policy_types(&["Ingress", "Egress"])
        .ingress(json!([
            {"from": [from_pod("nobody")], "ports": [{"port": 22}]},
            {"from": [from_pod("nobody"), from_pod("nobody2"), from_pod("b")], "ports": [{"port": 80}]},
        ]))
        .egress(json!([{"ports": [{"port": 53, "protocol": "UDP"}]}]))]);
    let g = graph(&idx);
    let a = g.pod("x", "a").unwrap();
    let by_b: Vec<&Origin> = a
        .ingress
        .as_ref()
        .unwrap()
        .allows
        .iter()
        .filter(|al| g.peer_contains(al.peer, ip("10.244.1.12")))
        .map(|al| &al.origin)
        .collect();
    assert_eq!(
        by_b,
        [&Origin {
            policy: "x/p".into(),
            direction: Direction::Ingress,
            rule: 1,
            peer: Some(2),
            port_name: None,
        }]
    );
    let eg = &a.egress.as_ref().unwrap().allows;
    assert_eq!(eg.len(), 1);
    assert_eq!(
        eg[0].origin,
        Origin {
            policy: "x/p".into(),
            direction: Direction::Egress,
            rule: 0,
            peer: None,
            port_name: None,
        }
    );
    let e = explain(&idx, "x/b", "x/a", "tcp/80");
    match &e.ingress {
        Side::Allowed { isolated_by, by } => {
            assert_eq!(isolated_by, &["x/p"]);
            assert_eq!(by.len(), 1);
            assert!(by[0].contains("x/p ingress[1].from[2]"), "{by:?}");
        }
        other => panic!("expected allowed, got {other:?}"),
    }
}
