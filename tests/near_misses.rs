//! `explain`'s near misses: for a denied direction, why each rule of each isolating policy
//! did not allow it. One table row per kind of miss over the semantics cases' cluster,
//! then a check that the per-rule evaluation agrees with the graph's verdict on every
//! pair of endpoints and port of several clusters (examples/cluster.yaml among them).

mod common;

use std::net::IpAddr;

use common::*;
use nftpol::explain::miss::{self, PeerCheck, PeerReason, PolicyCheck, PortCheck, RulePort};
use nftpol::explain::Side;
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::policy::{Direction, Protocol};
use serde_json::json;

/// The near misses of the denied direction `dir` of `from -> to` on `port`.
fn why(idx: &Index, from: &str, to: &str, port: &str, dir: Direction) -> Vec<PolicyCheck> {
    let e = explain(idx, from, to, port);
    assert!(!e.allowed, "{from} -> {to} {port} should be denied:\n{e}");
    let side = match dir {
        Direction::Ingress => &e.ingress,
        Direction::Egress => &e.egress,
    };
    match side {
        Side::Denied { why, .. } => why.clone(),
        other => panic!("{dir} of {from} -> {to} {port} is {other:?}:\n{e}"),
    }
}

/// The one rule check of a one-policy, one-rule direction.
fn only_rule(checks: &[PolicyCheck]) -> &miss::RuleCheck {
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].rules.len(), 1, "{checks:?}");
    &checks[0].rules[0]
}

/// The reasons of a rule whose port matched and whose one peer did not.
fn peer_reasons(check: &miss::RuleCheck) -> Vec<PeerReason> {
    assert!(
        matches!(check.port, PortCheck::Matched | PortCheck::Any),
        "port should match: {check:?}"
    );
    match &check.peer {
        PeerCheck::Missed { peers } => {
            assert_eq!(peers.len(), 1, "{peers:?}");
            peers[0].reasons.clone()
        }
        other => panic!("peer should miss: {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// x/a isolated for ingress by x/p with these rules.
fn ingress_of_a(rules: serde_json::Value) -> Index {
    cluster_with(vec![netpol("x", "p").selecting("pod", "a").ingress(rules)])
}

/// y/c isolated for egress by y/p with these rules.
fn egress_of_c(rules: serde_json::Value) -> Index {
    cluster_with(vec![netpol("y", "p")
        .selecting("pod", "c")
        .policy_types(&["Egress"])
        .egress(rules)])
}

// === one test per kind of miss ===

#[test]
fn peer_matched_port_did_not_lists_the_ports_the_rule_allows() {
    let idx = ingress_of_a(json!([{
        "from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
        "ports": [{"port": 80}, {"protocol": "UDP", "port": 5000, "endPort": 5010}, {"protocol": "SCTP"}],
    }]));
    let checks = why(&idx, "x/b", "x/a", "tcp/81", Direction::Ingress);
    let r = only_rule(&checks);
    assert_eq!(r.peer, PeerCheck::Matched { index: 0 });
    let PortCheck::Missed {
        allowed: rule_ports,
    } = &r.port
    else {
        panic!("{r:?}")
    };
    let shown: Vec<String> = rule_ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(shown, ["tcp/80", "udp/5000-5010", "sctp/*"]);
    let text = explain(&idx, "x/b", "x/a", "tcp/81").to_string();
    assert!(
        text.contains("x/p ingress[0]: peer matches (from[0]); port does not match: it allows tcp/80, udp/5000-5010, sctp/*"),
        "{text}"
    );
}

#[test]
fn pod_labels_against_the_pod_selector() {
    let idx = ingress_of_a(json!([{
        "from": [{"podSelector": {
            "matchLabels": {"pod": "b"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "web"]}],
        }}],
    }]));
    let reasons = peer_reasons(only_rule(&why(
        &idx,
        "x/b",
        "x/a",
        "tcp/80",
        Direction::Ingress,
    )));
    assert_eq!(
        reasons,
        [PeerReason::PodLabels {
            pod: "x/b".into(),
            selector: "pod=b,tier in (db,web)".into(),
            unmet: strings(&["tier in (db,web)"]),
        }]
    );
    let text = explain(&idx, "x/b", "x/a", "tcp/80").to_string();
    assert!(
        text.contains("from[0] pods {pod=b,tier in (db,web)} in namespace x: pod x/b's labels do not match podSelector {pod=b,tier in (db,web)} (unmet: tier in (db,web))"),
        "{text}"
    );
}

#[test]
fn pod_selector_alone_and_a_pod_of_another_namespace() {
    let idx = ingress_of_a(json!([{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]));
    let reasons = peer_reasons(only_rule(&why(
        &idx,
        "y/c",
        "x/a",
        "tcp/80",
        Direction::Ingress,
    )));
    // The labels match; only the namespace fails.
    assert_eq!(
        reasons,
        [PeerReason::OtherNamespace {
            pod: "y/c".into(),
            namespace: "y".into(),
            policy_namespace: "x".into(),
        }]
    );
}

#[test]
fn namespace_labels_against_the_namespace_selector() {
    // team=y holds only namespace y; z/d has the right pod label but the wrong namespace.
    let idx = ingress_of_a(json!([{"from": [{
        "namespaceSelector": {"matchLabels": {"team": "y"}},
        "podSelector": {"matchLabels": {"pod": "d"}},
    }]}]));
    let reasons = peer_reasons(only_rule(&why(
        &idx,
        "z/d",
        "x/a",
        "tcp/80",
        Direction::Ingress,
    )));
    assert_eq!(
        reasons,
        [PeerReason::NamespaceLabels {
            namespace: "z".into(),
            selector: "team=y".into(),
            unmet: strings(&["team=y"]),
        }]
    );
    // y/c: the namespace matches, the pod's labels do not.
    let reasons = peer_reasons(only_rule(&why(
        &idx,
        "y/c",
        "x/a",
        "tcp/80",
        Direction::Ingress,
    )));
    assert!(
        matches!(&reasons[..], [PeerReason::PodLabels { pod, unmet, .. }] if pod == "y/c" && unmet == &strings(&["pod=d"])),
        "{reasons:?}"
    );
    // x/b: both fail, both are said.
    let reasons = peer_reasons(only_rule(&why(
        &idx,
        "x/b",
        "x/a",
        "tcp/80",
        Direction::Ingress,
    )));
    assert!(
        matches!(
            &reasons[..],
            [
                PeerReason::NamespaceLabels { .. },
                PeerReason::PodLabels { .. }
            ]
        ),
        "{reasons:?}"
    );
}

#[test]
fn address_outside_the_ip_block() {
    let idx = egress_of_c(json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]));
    let reasons = peer_reasons(only_rule(&why(
        &idx,
        "y/c",
        "8.8.8.8",
        "tcp/443",
        Direction::Egress,
    )));
    assert_eq!(
        reasons,
        [PeerReason::OutsideCidr {
            address: ip("8.8.8.8"),
            cidr: "10.0.0.0/8".into()
        }]
    );
}

#[test]
fn address_in_the_ip_blocks_except() {
    let idx = egress_of_c(
        json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16", "10.9.0.0/16"]}}]}]),
    );
    let reasons = peer_reasons(only_rule(&why(
        &idx,
        "y/c",
        "x/a",
        "tcp/443",
        Direction::Egress,
    )));
    assert_eq!(
        reasons,
        [PeerReason::InExcept {
            address: ip("10.244.1.11"),
            cidr: "10.0.0.0/8".into(),
            except: "10.244.0.0/16".into(),
        }]
    );
    let text = explain(&idx, "y/c", "x/a", "tcp/443").to_string();
    assert!(
        text.contains("10.244.1.11 is inside cidr 10.0.0.0/8 but in its except 10.244.0.0/16"),
        "{text}"
    );
}

#[test]
fn an_address_that_is_no_pod_against_a_pod_selector() {
    // The node's address, and a hostNetwork pod's, are not pods for selectors.
    let idx = cluster_with(vec![
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{"namespaceSelector": {}}]}])),
        pod("x", "h")
            .label("pod", "h")
            .node("n2")
            .ip("192.168.100.2")
            .host_ip("192.168.100.2")
            .host_network(),
    ]);
    for from in ["192.168.100.2", "x/h", "203.0.113.9"] {
        let reasons = peer_reasons(only_rule(&why(
            &idx,
            from,
            "x/a",
            "tcp/80",
            Direction::Ingress,
        )));
        assert!(
            matches!(&reasons[..], [PeerReason::NotAPod { .. }]),
            "{from}: {reasons:?}"
        );
    }
}

#[test]
fn named_port_the_destination_does_not_declare_on_ingress() {
    // x/a declares "http" for TCP only: UDP "http" resolves to nothing on it.
    let mut objs = cluster();
    objs[3] = objs[3].clone().port("http", 8080, "TCP");
    objs.push(
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"ports": [
                {"port": "http"}, {"protocol": "UDP", "port": "http"}, {"port": "metrics"},
            ]}])),
    );
    let idx = index(objs);
    let r = only_rule(&why(&idx, "x/b", "x/a", "tcp/80", Direction::Ingress)).clone();
    assert_eq!(r.peer, PeerCheck::Any);
    let PortCheck::Missed {
        allowed: rule_ports,
    } = &r.port
    else {
        panic!("{r:?}")
    };
    let on = Some(Some("x/a".to_string()));
    assert_eq!(
        rule_ports,
        &[
            RulePort {
                protocol: Protocol::Tcp,
                port: "http".into(),
                on: on.clone(),
                number: Some(Some(8080))
            },
            RulePort {
                protocol: Protocol::Udp,
                port: "http".into(),
                on: on.clone(),
                number: Some(None)
            },
            RulePort {
                protocol: Protocol::Tcp,
                port: "metrics".into(),
                on,
                number: Some(None)
            },
        ]
    );
    let text = explain(&idx, "x/b", "x/a", "tcp/80").to_string();
    assert!(
        text.contains(r#"it allows tcp/"http" (= 8080 on x/a), udp/"http" (not declared by x/a), tcp/"metrics" (not declared by x/a)"#),
        "{text}"
    );
    // The port it does resolve to is allowed.
    assert!(allowed(&idx, "x/b", "x/a", "tcp/8080"));
}

#[test]
fn named_port_on_egress_resolves_on_the_destination_or_not_at_all() {
    let mut objs = cluster();
    objs[3] = objs[3].clone().port("https", 8443, "TCP");
    objs.push(
        netpol("y", "p")
            .selecting("pod", "c")
            .policy_types(&["Egress"])
            .egress(json!([{"ports": [{"port": "https"}]}])),
    );
    let idx = index(objs);
    // x/b declares no "https".
    let r = only_rule(&why(&idx, "y/c", "x/b", "tcp/8443", Direction::Egress)).clone();
    let PortCheck::Missed {
        allowed: rule_ports,
    } = &r.port
    else {
        panic!("{r:?}")
    };
    assert_eq!(rule_ports[0].on, Some(Some("x/b".into())));
    assert_eq!(rule_ports[0].number, Some(None));
    // An external address has no named ports at all.
    let r = only_rule(&why(&idx, "y/c", "8.8.8.8", "tcp/8443", Direction::Egress)).clone();
    let PortCheck::Missed {
        allowed: rule_ports,
    } = &r.port
    else {
        panic!("{r:?}")
    };
    assert_eq!(rule_ports[0].on, Some(None));
    let text = explain(&idx, "y/c", "8.8.8.8", "tcp/8443").to_string();
    assert!(text.contains("the destination is not a pod"), "{text}");
    // x/a declares it: allowed on 8443 only.
    assert!(allowed(&idx, "y/c", "x/a", "tcp/8443"));
    let r = only_rule(&why(&idx, "y/c", "x/a", "tcp/443", Direction::Egress)).clone();
    assert!(
        matches!(&r.port, PortCheck::Missed { allowed } if allowed[0].number == Some(Some(8443)))
    );
}

#[test]
fn neither_peer_nor_port_and_several_rules_and_policies() {
    let idx = cluster_with(vec![
        netpol("x", "p1").selecting("pod", "a").ingress(json!([
            {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 443}]},
            {"from": [{"ipBlock": {"cidr": "10.9.0.0/16"}}, {"podSelector": {"matchLabels": {"pod": "zz"}}}], "ports": [{"port": 80}]},
        ])),
        netpol("x", "p2").selecting("pod", "a"),
    ]);
    let checks = why(&idx, "x/b", "x/a", "tcp/80", Direction::Ingress);
    assert_eq!(
        checks.iter().map(|c| c.policy.as_str()).collect::<Vec<_>>(),
        ["x/p1", "x/p2"]
    );
    let rules = &checks[0].rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].peer, PeerCheck::Matched { index: 0 });
    assert!(matches!(rules[0].port, PortCheck::Missed { .. }));
    assert_eq!(rules[1].port, PortCheck::Matched);
    let PeerCheck::Missed { peers } = &rules[1].peer else {
        panic!("{:?}", rules[1])
    };
    assert_eq!(peers.len(), 2, "every peer of the rule says why");
    assert!(matches!(
        peers[0].reasons[..],
        [PeerReason::OutsideCidr { .. }]
    ));
    assert!(matches!(
        peers[1].reasons[..],
        [PeerReason::PodLabels { .. }]
    ));
    // A policy without rules for the direction allows nothing.
    assert!(checks[1].rules.is_empty());
    let text = explain(&idx, "x/b", "x/a", "tcp/80").to_string();
    assert!(
        text.contains("x/p2: no ingress rules, allows nothing"),
        "{text}"
    );
    // Both mismatch: y/c on udp/53.
    let checks = why(&idx, "y/c", "x/a", "udp/53", Direction::Ingress);
    assert!(checks[0]
        .rules
        .iter()
        .all(|r| matches!(r.peer, PeerCheck::Missed { .. })
            && matches!(r.port, PortCheck::Missed { .. })));
}

#[test]
fn a_policy_that_cannot_be_compiled_says_so() {
    let mut idx = cluster_with(vec![]);
    let bad = netpol("x", "bad").selecting("pod", "a").ingress(
        json!([{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]),
    );
    assert!(idx.apply(bad.object()).is_err(), "enforced fail-closed");
    let checks = why(&idx, "x/b", "x/a", "tcp/80", Direction::Ingress);
    assert_eq!(checks.len(), 1);
    assert!(checks[0].rules.is_empty());
    let error = checks[0].error.as_deref().expect("the error is kept");
    assert!(error.contains("11.0.0.0/16"), "{error}");
    let text = explain(&idx, "x/b", "x/a", "tcp/80").to_string();
    assert!(text.contains("x/bad: could not be compiled"), "{text}");
}

#[test]
fn the_first_line_stays_the_verdict_and_json_carries_the_same_content() {
    let idx = ingress_of_a(
        json!([{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]}]),
    );
    let e = explain(&idx, "x/b", "x/a", "tcp/81");
    assert_eq!(e.to_string().lines().next(), Some("denied"));
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["ingress"]["verdict"], "denied");
    let rule = &v["ingress"]["why"][0]["rules"][0];
    assert_eq!(rule["peer"], json!({"result": "matched", "index": 0}));
    assert_eq!(
        rule["port"],
        json!({"result": "missed", "allowed": [{"protocol": "tcp", "port": "80"}]})
    );
    assert_eq!(v["egress"]["verdict"], "not_isolated");
}

// === agreement with the graph ===

/// Every endpoint worth asking about: each pod's addresses, each node address, and a few
/// outside ones.
fn endpoints(idx: &Index) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = idx
        .pods()
        .flat_map(|p| p.ips.iter().chain(&p.host_ips).copied())
        .collect();
    v.extend(["8.8.8.8", "10.9.9.9", "fd00::99", "2001:db8::1"].map(ip));
    v.sort();
    v.dedup();
    v
}

/// Every port named anywhere (container ports and rule ports), and one nobody names.
fn ports(idx: &Index) -> Vec<(Protocol, u16)> {
    let mut v: Vec<(Protocol, u16)> = idx
        .pods()
        .flat_map(|p| p.ports.iter().map(|n| (n.protocol, n.port)))
        .collect();
    for e in idx.policies() {
        for dir in [Direction::Ingress, Direction::Egress] {
            for r in e.policy.rules(dir).unwrap_or_default() {
                for p in r.ports.iter().flatten() {
                    if let nftpol::policy::PortMatch::Range(a, b) = p.port {
                        v.extend([(p.protocol, a), (p.protocol, b)]);
                    }
                }
            }
        }
    }
    for proto in Protocol::ALL {
        v.push((proto, 31337));
    }
    v.sort();
    v.dedup();
    v
}

/// For every isolated pod, direction, endpoint and port: some rule's check allows exactly
/// when the graph allows (the own node aside, which no rule decides).
fn assert_agrees_with_graph(idx: &Index) -> usize {
    let graph = PolicyGraph::build(idx);
    let (eps, ports) = (endpoints(idx), ports(idx));
    let mut checked = 0;
    for node in graph.pods.values() {
        let info = idx.pod(&node.namespace, &node.name).unwrap();
        for dir in [Direction::Ingress, Direction::Egress] {
            let Some(iso) = node.isolation(dir) else {
                continue;
            };
            for &other in &eps {
                if node.host_ips.contains(&other) {
                    continue;
                }
                for &(proto, port) in &ports {
                    let by_graph = iso.allows.iter().any(|a| {
                        graph.peer_contains(a.peer, other) && a.ports.contains(proto, port)
                    });
                    let checks = miss::check(idx, info, &iso.isolated_by, dir, other, proto, port);
                    let by_rules = checks.iter().flat_map(|c| &c.rules).any(|r| r.allows());
                    assert_eq!(
                        by_graph,
                        by_rules,
                        "{dir} of {} with {other} {proto}/{port}: graph {by_graph}, rules {checks:#?}",
                        node.id()
                    );
                    checked += 1;
                }
            }
        }
    }
    checked
}

#[test]
fn rule_checks_agree_with_the_graph_on_the_example_cluster() {
    let text = std::fs::read_to_string("examples/cluster.yaml").unwrap();
    let objs = nftpol::input::parse_str(&text, "examples/cluster.yaml").unwrap();
    let idx = Index::from_objects(objs).unwrap();
    let n = assert_agrees_with_graph(&idx);
    assert!(n > 10_000, "checked {n}");
}

#[test]
fn rule_checks_agree_with_the_graph_on_mixed_policies() {
    let mut objs = cluster();
    objs[3] = objs[3].clone().port("http", 8080, "TCP").ip6("fd00::11");
    objs[5] = objs[5]
        .clone()
        .port("http", 9090, "TCP")
        .port("dns", 53, "UDP");
    objs.extend([
        netpol("x", "in").selecting("pod", "a").ingress(json!([
            {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": "http"}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}, "podSelector": {}}], "ports": [{"port": 80, "endPort": 90}]},
            {"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}}], "ports": [{"protocol": "UDP"}]},
            {"from": [{"ipBlock": {"cidr": "fd00::/64"}}]},
        ])),
        netpol("y", "out").selecting("pod", "c").policy_types(&["Egress"]).egress(json!([
            {"to": [{"podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["c"]}]}, "namespaceSelector": {}}], "ports": [{"port": "http"}]},
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}], "ports": [{"protocol": "UDP", "port": 53}]},
            {"ports": [{"protocol": "UDP", "port": "dns"}]},
        ])),
        netpol("z", "deny").policy_types(&["Ingress", "Egress"]),
    ]);
    let idx = index(objs);
    let n = assert_agrees_with_graph(&idx);
    assert!(n > 200, "checked {n}");
}
