//! NetworkPolicy semantics of ports, one rule per test, checked on the policy graph and
//! through `explain`: numbers, ranges, protocols, and named ports resolved against each
//! selected pod (ingress) or each destination pod (egress). The rest of the semantics is in
//! semantics.rs.

mod common;

use common::*;
use nftpol::explain::Family;
use nftpol::index::Index;
use serde_json::json;

fn ports_policy(ports: serde_json::Value) -> Index {
    cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .ingress(json!([{"from": [from_pod("b")], "ports": ports}]))])
}

#[test]
fn port_by_number_defaults_to_tcp() {
    let idx = ports_policy(json!([{"port": 80}]));
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", true),
            ("x/b", "x/a", "tcp/81", false),
            ("x/b", "x/a", "tcp/79", false),
            ("x/b", "x/a", "udp/80", false),
            ("x/b", "x/a", "sctp/80", false),
        ],
    );
}

#[test]
fn end_port_range_is_inclusive_at_both_ends() {
    let idx = ports_policy(json!([{"port": 8000, "endPort": 8080}]));
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/7999", false),
            ("x/b", "x/a", "tcp/8000", true),
            ("x/b", "x/a", "tcp/8040", true),
            ("x/b", "x/a", "tcp/8080", true),
            ("x/b", "x/a", "tcp/8081", false),
            ("x/b", "x/a", "udp/8000", false),
        ],
    );
}

#[test]
fn end_port_equal_to_port_is_one_port() {
    let idx = ports_policy(json!([{"port": 53, "endPort": 53, "protocol": "UDP"}]));
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "udp/53", true),
            ("x/b", "x/a", "udp/54", false),
            ("x/b", "x/a", "udp/52", false),
        ],
    );
}

#[test]
fn protocol_without_port_means_every_port_of_that_protocol() {
    let idx = ports_policy(json!([{"protocol": "UDP"}]));
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "udp/1", true),
            ("x/b", "x/a", "udp/53", true),
            ("x/b", "x/a", "udp/65535", true),
            ("x/b", "x/a", "tcp/53", false),
            ("x/b", "x/a", "sctp/53", false),
        ],
    );
}

#[test]
fn port_entry_with_neither_port_nor_protocol_means_every_tcp_port() {
    let idx = ports_policy(json!([{}]));
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/1", true),
            ("x/b", "x/a", "tcp/65535", true),
            ("x/b", "x/a", "udp/53", false),
        ],
    );
}

#[test]
fn sctp_ports() {
    let idx = ports_policy(json!([{"protocol": "SCTP", "port": 9}]));
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "sctp/9", true),
            ("x/b", "x/a", "sctp/10", false),
            ("x/b", "x/a", "tcp/9", false),
            ("x/b", "x/a", "udp/9", false),
        ],
    );
}

#[test]
fn several_ports_in_one_rule_are_a_union() {
    let idx = ports_policy(json!([
        {"port": 80},
        {"port": 53, "protocol": "UDP"},
        {"port": 9000, "endPort": 9002, "protocol": "SCTP"},
    ]));
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", true),
            ("x/b", "x/a", "udp/53", true),
            ("x/b", "x/a", "sctp/9001", true),
            ("x/b", "x/a", "tcp/53", false),
            ("x/b", "x/a", "udp/80", false),
            ("x/b", "x/a", "tcp/9001", false),
        ],
    );
}

#[test]
fn ports_and_peers_of_one_rule_are_anded_across_rules_ored() {
    let idx = cluster_with(vec![netpol("x", "p").selecting("pod", "a").ingress(json!([
        {"from": [from_pod("b")], "ports": [{"port": 80}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}], "ports": [{"port": 443}]},
    ]))]);
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", true),
            ("x/b", "x/a", "tcp/443", false),
            ("y/c", "x/a", "tcp/443", true),
            ("y/c", "x/a", "tcp/80", false),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Named ports
// ---------------------------------------------------------------------------------------

#[test]
fn named_port_on_ingress_resolves_against_each_selected_pod() {
    let idx = index(vec![
        ns("x"),
        pod("x", "a")
            .label("app", "web")
            .ip("10.244.1.11")
            .port("http", 80, "TCP"),
        pod("x", "b")
            .label("app", "web")
            .ip("10.244.1.12")
            .port("http", 8080, "TCP"),
        pod("x", "c").label("app", "client").ip("10.244.1.13"),
        netpol("x", "p")
            .selecting("app", "web")
            .ingress(json!([{"ports": [{"port": "http"}]}])),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("x/c", "x/a", "tcp/80", true),
            ("x/c", "x/a", "tcp/8080", false),
            ("x/c", "x/b", "tcp/8080", true),
            ("x/c", "x/b", "tcp/80", false),
            // The source may be anything: the name is a property of the destination.
            ("203.0.113.7", "x/b", "tcp/8080", true),
        ],
    );
    let g = graph(&idx);
    let a = &g.pod("x", "a").unwrap().ingress.as_ref().unwrap().allows;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].origin.port_name.as_deref(), Some("http"));
}

#[test]
fn named_port_on_ingress_needs_the_protocol_of_the_container_port() {
    let base = || {
        vec![
            ns("x"),
            pod("x", "a")
                .label("pod", "a")
                .ip("10.244.1.11")
                .port("dns", 53, "UDP"),
            pod("x", "b").label("pod", "b").ip("10.244.1.12"),
        ]
    };
    // protocol defaults to TCP; the container port "dns" is UDP: nothing resolves.
    let mut objs = base();
    objs.push(
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"ports": [{"port": "dns"}]}])),
    );
    let idx = index(objs);
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/53", false),
            ("x/b", "x/a", "udp/53", false),
        ],
    );
    let mut objs = base();
    objs.push(
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"ports": [{"port": "dns", "protocol": "UDP"}]}])),
    );
    let idx = index(objs);
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "udp/53", true),
            ("x/b", "x/a", "tcp/53", false),
        ],
    );
}

#[test]
fn named_port_missing_on_the_selected_pod_allows_nothing_but_still_isolates() {
    let idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .ingress(json!([{"ports": [{"port": "http"}]}]))]);
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    assert!(a.ingress.is_some());
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", false),
            ("x/b", "x/a", "tcp/8080", false),
        ],
    );
}

#[test]
fn named_port_on_egress_resolves_per_destination_pod() {
    let idx = index(vec![
        ns("x"),
        pod("x", "a").label("app", "client").ip("10.244.1.11"),
        pod("x", "b").label("app", "web").ip("10.244.1.12").port("http", 80, "TCP"),
        pod("x", "c").label("app", "web").ip("10.244.1.13").port("http", 8080, "TCP"),
        pod("x", "d").label("app", "web").ip("10.244.1.14"),
        netpol("x", "p")
            .selecting("app", "client")
            .policy_types(&["Egress"])
            .egress(json!([{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]}])),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("x/a", "x/b", "tcp/80", true),
            ("x/a", "x/b", "tcp/8080", false),
            ("x/a", "x/c", "tcp/8080", true),
            ("x/a", "x/c", "tcp/80", false),
            ("x/a", "x/d", "tcp/80", false),
            ("x/a", "x/d", "tcp/8080", false),
        ],
    );
    let g = graph(&idx);
    let allows = &g.pod("x", "a").unwrap().egress.as_ref().unwrap().allows;
    // One allow per resolved number, each to a different peer node.
    assert_eq!(allows.len(), 2, "{allows:?}");
    assert_ne!(allows[0].peer, allows[1].peer);
    for a in allows {
        assert_eq!(a.origin.port_name.as_deref(), Some("http"));
        assert_eq!(a.origin.peer, Some(0));
    }
}

#[test]
fn named_port_on_egress_never_matches_an_external_address() {
    let idx = index(vec![
        ns("x"),
        pod("x", "a").label("app", "client").ip("10.244.1.11"),
        pod("x", "b")
            .label("app", "web")
            .ip("10.244.1.12")
            .port("http", 80, "TCP"),
        netpol("x", "p")
            .selecting("app", "client")
            .policy_types(&["Egress"])
            .egress(json!([
                {"ports": [{"port": "http"}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": "http"}]},
            ])),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("x/a", "x/b", "tcp/80", true),
            ("x/a", "203.0.113.7", "tcp/80", false),
            ("x/a", "192.168.100.2", "tcp/80", false),
        ],
    );
}

#[test]
fn named_port_on_egress_needs_the_protocol_of_the_container_port() {
    let idx = index(vec![
        ns("x"),
        pod("x", "a").label("app", "client").ip("10.244.1.11"),
        pod("x", "b")
            .label("app", "dns")
            .ip("10.244.1.12")
            .port("dns", 53, "UDP"),
        pod("x", "c")
            .label("app", "dns")
            .ip("10.244.1.13")
            .port("dns", 5353, "TCP"),
        netpol("x", "p")
            .selecting("app", "client")
            .policy_types(&["Egress"])
            .egress(json!([{"ports": [{"port": "dns", "protocol": "UDP"}]}])),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("x/a", "x/b", "udp/53", true),
            ("x/a", "x/b", "tcp/53", false),
            ("x/a", "x/c", "tcp/5353", false),
            ("x/a", "x/c", "udp/5353", false),
        ],
    );
}

#[test]

fn named_port_on_egress_to_an_ip_block_allows_only_the_addresses_in_the_block() {
    // x/b is dual-stack; the block holds only its IPv4 address. The named port must not
    // open b's IPv6 address, which no peer of the rule selects.
    let mut objs = dual_stack();
    objs[2] = objs[2].clone().port("http", 80, "TCP");
    objs.push(
        netpol("x", "p")
            .selecting("pod", "a")
            .policy_types(&["Egress"])
            .egress(json!([{"to": [{"ipBlock": {"cidr": "10.244.1.12/32"}}], "ports": [{"port": "http"}]}])),
    );
    let idx = index(objs);
    assert!(explain_family(&idx, "x/a", "x/b", "tcp/80", Family::V4).allowed);
    let e = explain_family(&idx, "x/a", "x/b", "tcp/80", Family::V6);
    assert!(!e.allowed, "{e}");
}

#[test]
fn named_port_on_egress_to_an_ip_block_with_except_skips_excepted_addresses() {
    let mut objs = dual_stack();
    objs[2] = objs[2].clone().port("http", 80, "TCP");
    objs.push(
        netpol("x", "p")
            .selecting("pod", "a")
            .policy_types(&["Egress"])
            .egress(json!([{"to": [{"ipBlock": {"cidr": "fd00::/8", "except": ["fd00:10:244:1::12/128"]}}], "ports": [{"port": "http"}]}])),
    );
    let idx = index(objs);
    assert!(!explain_family(&idx, "x/a", "x/b", "tcp/80", Family::V6).allowed);
    assert!(!explain_family(&idx, "x/a", "x/b", "tcp/80", Family::V4).allowed);
}
