//! ClusterNetworkPolicy semantics, one point of the evaluation order per test (the
//! digest's section 3: ../shared/clusternetworkpolicy.md), checked through `explain` and
//! the policy graph's tiers. Expected results follow the API text and the upstream
//! conformance tests, not the implementation.

mod common;

use common::*;
use nftpol::cnp::{Action, Tier};
use nftpol::graph::{PeerRef, Ports};
use nftpol::index::Index;
use serde_json::{json, Value};

/// A ClusterNetworkPolicy of `tier` and `priority` whose subject is the namespace
/// labelled `kubernetes.io/metadata.name=<subject_ns>`.
fn cnp(name: &str, tier: &str, priority: i64, subject_ns: &str) -> Obj {
    Obj(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "tier": tier,
            "priority": priority,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": subject_ns}}},
        },
    }))
}

fn node(name: &str, addr: &str) -> Obj {
    Obj(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"addresses": [{"type": "InternalIP", "address": addr}, {"type": "Hostname", "address": name}]},
    }))
}

/// A peer: every pod of namespace `ns`.
fn ns_peer(ns: &str) -> Value {
    json!({"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": ns}}})
}

fn tcp(port: u16) -> Value {
    json!({"tcp": {"destinationPort": {"number": port}}})
}

fn rule(action: &str, peers: Value, protocols: Option<Value>) -> Value {
    let mut r = json!({"action": action, "to": peers.clone(), "from": peers});
    if let Some(p) = protocols {
        r["protocols"] = p;
    }
    r
}

/// An ingress rule (drops the `to` [`rule`] also wrote).
fn ing(action: &str, peers: Value, protocols: Option<Value>) -> Value {
    let mut r = rule(action, peers, protocols);
    r.as_object_mut().unwrap().remove("to");
    r
}

fn eg(action: &str, peers: Value, protocols: Option<Value>) -> Value {
    let mut r = rule(action, peers, protocols);
    r.as_object_mut().unwrap().remove("from");
    r
}

/// The test cluster plus the nodes n1 (192.168.100.1) and n2 (192.168.100.2).
fn nodes_cluster(extra: Vec<Obj>) -> Index {
    let mut all = cluster();
    all.push(node("n1", "192.168.100.1"));
    all.push(node("n2", "192.168.100.2").label("role", "infra"));
    all.extend(extra);
    index(all)
}

/// The tier lines explain prints for one end (`ingress` or `egress`).
fn steps(idx: &Index, from: &str, to: &str, port: &str, dir: &str) -> Vec<String> {
    let e = explain(idx, from, to, port);
    let s = if dir == "ingress" {
        &e.ingress_tiers
    } else {
        &e.egress_tiers
    };
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn admin_decides_before_networkpolicy_and_baseline_after() {
    // Admin Deny from y into x beats an NP that allows everything; Baseline Deny from z
    // is not consulted for x/a, whose NP decides; x/b has no NP, so Baseline decides.
    let idx = nodes_cluster(vec![
        netpol("x", "allow-all")
            .selecting("pod", "a")
            .ingress(json!([{}])),
        cnp("no-y-into-x", "Admin", 10, "x").set(
            &["spec"],
            "ingress",
            json!([ing("Deny", json!([ns_peer("y")]), None)]),
        ),
        cnp("no-z-into-x", "Baseline", 10, "x").set(
            &["spec"],
            "ingress",
            json!([ing("Deny", json!([ns_peer("z")]), None)]),
        ),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", false),
            ("z/d", "x/a", "tcp/80", true),
            ("z/d", "x/b", "tcp/80", false),
            ("x/b", "x/a", "tcp/80", true),
        ],
    );
    assert_eq!(
        steps(&idx, "y/c", "x/a", "tcp/80", "ingress"),
        ["Admin: no-y-into-x ingress[0] from[0]: Deny"]
    );
    assert_eq!(
        steps(&idx, "z/d", "x/a", "tcp/80", "ingress"),
        [
            "Admin: no match (policies: no-y-into-x)",
            "NetworkPolicy: allowed (a rule allows it)"
        ]
    );
    assert_eq!(
        steps(&idx, "z/d", "x/b", "tcp/80", "ingress"),
        [
            "Admin: no match (policies: no-y-into-x)",
            "NetworkPolicy: not isolated (no policy isolates it for ingress)",
            "Baseline: no-z-into-x ingress[0] from[0]: Deny"
        ]
    );
}

#[test]
fn admin_accept_overrides_a_networkpolicy_deny() {
    let idx = nodes_cluster(vec![
        netpol("x", "deny-all"),
        cnp("y-into-x", "Admin", 1, "x").set(
            &["spec"],
            "ingress",
            json!([ing("Accept", json!([ns_peer("y")]), None)]),
        ),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            ("z/d", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn first_matching_rule_of_a_policy_wins() {
    let rules = |first: Value, second: Value| {
        cnp("p", "Admin", 10, "x").set(&["spec"], "ingress", json!([first, second]))
    };
    let accept80 = ing("Accept", json!([ns_peer("y")]), Some(json!([tcp(80)])));
    let deny = ing("Deny", json!([ns_peer("y")]), None);
    let idx = nodes_cluster(vec![
        netpol("x", "deny-all"),
        rules(accept80.clone(), deny.clone()),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            ("y/c", "x/a", "tcp/81", false),
        ],
    );
    // Swapped (the upstream "swap rules" steps): the Deny comes first and wins.
    let idx = nodes_cluster(vec![netpol("x", "deny-all"), rules(deny, accept80)]);
    assert_verdicts(&idx, &[("y/c", "x/a", "tcp/80", false)]);
}

#[test]
fn pass_skips_the_rest_of_its_tier() {
    // Admin: Pass (priority 1) before Deny (priority 2): Deny is skipped, NP decides.
    let admin = vec![
        cnp("a-pass", "Admin", 1, "x").set(
            &["spec"],
            "ingress",
            json!([ing("Pass", json!([ns_peer("y")]), None)]),
        ),
        cnp("b-deny", "Admin", 2, "x").set(
            &["spec"],
            "ingress",
            json!([ing("Deny", json!([ns_peer("y")]), None)]),
        ),
    ];
    let mut with_np = admin.clone();
    with_np.push(
        netpol("x", "allow-y")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}]}])),
    );
    let idx = nodes_cluster(with_np);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            ("y/c", "x/b", "tcp/80", true),
        ],
    );
    // Without NetworkPolicy, Baseline Deny decides after an Admin Pass.
    let mut with_baseline = admin;
    with_baseline.push(cnp("base", "Baseline", 5, "x").set(
        &["spec"],
        "ingress",
        json!([ing("Deny", json!([ns_peer("y")]), None)]),
    ));
    let idx = nodes_cluster(with_baseline);
    assert_verdicts(&idx, &[("y/c", "x/a", "tcp/80", false)]);
    // Baseline Pass hands over to the default (allow), past a later Baseline Deny.
    let idx = nodes_cluster(vec![
        cnp("base-pass", "Baseline", 1, "x").set(
            &["spec"],
            "ingress",
            json!([ing("Pass", json!([ns_peer("y")]), None)]),
        ),
        cnp("base-deny", "Baseline", 2, "x").set(
            &["spec"],
            "ingress",
            json!([ing("Deny", json!([ns_peer("y")]), None)]),
        ),
    ]);
    assert_verdicts(&idx, &[("y/c", "x/a", "tcp/80", true)]);
    assert_eq!(
        steps(&idx, "y/c", "x/a", "tcp/80", "ingress"),
        [
            "NetworkPolicy: not isolated (no policy isolates it for ingress)",
            "Baseline: base-pass ingress[0] from[0]: Pass",
            "Default: allowed"
        ]
    );
}

#[test]
fn lower_priority_value_goes_first() {
    // CNPAdminTierPriorityField: Deny@50 beats Pass@60; priority 60 -> 40 lets Pass win,
    // and the Baseline Accept applies.
    let make = |pass_priority: i64| {
        nodes_cluster(vec![
            cnp("deny", "Admin", 50, "x").set(
                &["spec"],
                "egress",
                json!([eg("Deny", json!([ns_peer("y")]), None)]),
            ),
            cnp("pass", "Admin", pass_priority, "x").set(
                &["spec"],
                "egress",
                json!([eg("Pass", json!([ns_peer("y")]), None)]),
            ),
            cnp("base-accept", "Baseline", 5, "x").set(
                &["spec"],
                "egress",
                json!([eg("Accept", json!([ns_peer("y")]), None)]),
            ),
        ])
    };
    assert_verdicts(&make(60), &[("x/a", "y/c", "tcp/80", false)]);
    let idx = make(40);
    assert_verdicts(&idx, &[("x/a", "y/c", "tcp/80", true)]);
    assert_eq!(
        steps(&idx, "x/a", "y/c", "tcp/80", "egress"),
        [
            "Admin: pass egress[0] to[0]: Pass",
            "NetworkPolicy: not isolated (no policy isolates it for egress)",
            "Baseline: base-accept egress[0] to[0]: Accept"
        ]
    );
}

#[test]
fn equal_priority_is_decided_by_name() {
    // The API leaves it to the implementation; nftpol orders by name (documented in
    // src/tiers.rs and src/graph/tiers.rs).
    let make = |deny_name: &str, accept_name: &str| {
        nodes_cluster(vec![
            netpol("x", "deny-all"),
            cnp(deny_name, "Admin", 7, "x").set(
                &["spec"],
                "ingress",
                json!([ing("Deny", json!([ns_peer("y")]), None)]),
            ),
            cnp(accept_name, "Admin", 7, "x").set(
                &["spec"],
                "ingress",
                json!([ing("Accept", json!([ns_peer("y")]), None)]),
            ),
        ])
    };
    assert_verdicts(&make("a", "b"), &[("y/c", "x/a", "tcp/80", false)]);
    assert_verdicts(&make("b", "a"), &[("y/c", "x/a", "tcp/80", true)]);
    let g = graph(&make("b", "a"));
    assert_eq!(
        g.pod("x", "a").unwrap().tiers.ingress.admin.policies,
        ["a", "b"]
    );
}

#[test]
fn networkpolicy_skips_baseline_only_in_the_direction_it_isolates() {
    // x/a has an Ingress-only NP. Its ingress: NP decides (Baseline Deny not consulted).
    // Its egress: not isolated by NP, so the Baseline Deny applies (per-direction
    // reading; the digest's open point 1).
    let idx = nodes_cluster(vec![
        netpol("x", "allow-all-in")
            .selecting("pod", "a")
            .ingress(json!([{}])),
        cnp("base", "Baseline", 1, "x")
            .set(
                &["spec"],
                "ingress",
                json!([ing("Deny", json!([ns_peer("y")]), None)]),
            )
            .set(
                &["spec"],
                "egress",
                json!([eg("Deny", json!([ns_peer("y")]), None)]),
            ),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", true),
            ("x/a", "y/c", "tcp/80", false),
        ],
    );
}

#[test]
fn named_ports_resolve_on_the_destination_pod_in_both_directions() {
    let mut objs = vec![
        node("n1", "192.168.100.1"),
        cnp("web-in", "Admin", 1, "x").set(
            &["spec"],
            "ingress",
            json!([
                ing(
                    "Accept",
                    json!([ns_peer("z")]),
                    Some(json!([{"destinationNamedPort": "web"}]))
                ),
                ing("Deny", json!([ns_peer("z")]), None)
            ]),
        ),
        cnp("dns-out", "Admin", 2, "y").set(
            &["spec"],
            "egress",
            json!([
                eg(
                    "Accept",
                    json!([ns_peer("x")]),
                    Some(json!([{"destinationNamedPort": "dns"}]))
                ),
                eg("Deny", json!([ns_peer("x")]), None)
            ]),
        ),
    ];
    let mut all = cluster();
    for o in all.iter_mut() {
        let v = &o.0;
        if v["metadata"]["name"] == "a" {
            *o = o.clone().port("web", 8080, "TCP").port("dns", 5353, "UDP");
        } else if v["metadata"]["name"] == "b" {
            *o = o.clone().port("dns", 53, "UDP");
        }
    }
    all.append(&mut objs);
    let idx = index(all);
    assert_verdicts(
        &idx,
        &[
            // Ingress into x/a: web is TCP 8080 there.
            ("z/d", "x/a", "tcp/8080", true),
            ("z/d", "x/a", "tcp/80", false),
            ("z/d", "x/a", "udp/8080", false),
            // Ingress into x/b: it has no web port, so only the Deny matches.
            ("z/d", "x/b", "tcp/8080", false),
            // Egress of y/c: dns is UDP 5353 on x/a and UDP 53 on x/b.
            ("y/c", "x/a", "udp/5353", true),
            ("y/c", "x/b", "udp/53", true),
            ("y/c", "x/b", "udp/5353", false),
            ("y/c", "x/a", "udp/53", false),
        ],
    );
    let eg_steps = steps(&idx, "y/c", "x/b", "udp/53", "egress");
    assert_eq!(
        eg_steps,
        ["Admin: dns-out egress[0] to[0] port \"dns\": Accept"]
    );
    let eg_steps = steps(&idx, "y/c", "x/b", "udp/5353", "egress");
    assert_eq!(eg_steps, ["Admin: dns-out egress[1] to[0]: Deny"]);
    let eg_steps = steps(&idx, "y/c", "x/a", "udp/5353", "egress");
    assert_eq!(
        eg_steps,
        ["Admin: dns-out egress[0] to[0] port \"dns\": Accept"]
    );
}

#[test]
fn networks_match_pod_addresses_too() {
    // CNPAdminTierEgressInlineCIDRPeers: Deny 0.0.0.0/0 denies pod-to-pod traffic; an
    // Accept of one pod's /32 inserted first lets that pod through.
    let deny_all = eg("Deny", json!([{"networks": ["0.0.0.0/0", "::/0"]}]), None);
    let idx = nodes_cluster(vec![cnp("cidr", "Admin", 1, "x").set(
        &["spec"],
        "egress",
        json!([deny_all.clone()]),
    )]);
    assert_verdicts(
        &idx,
        &[
            ("x/a", "y/c", "tcp/80", false),
            ("x/a", "8.8.8.8", "udp/53", false),
            ("y/c", "x/a", "tcp/80", true),
        ],
    );
    let idx = nodes_cluster(vec![cnp("cidr", "Admin", 1, "x").set(
        &["spec"],
        "egress",
        json!([
            eg("Accept", json!([{"networks": ["10.244.2.21/32"]}]), None),
            deny_all
        ]),
    )]);
    assert_verdicts(
        &idx,
        &[
            ("x/a", "y/c", "tcp/80", true),
            ("x/a", "z/d", "tcp/80", false),
        ],
    );
}

#[test]
fn nodes_peer_matches_node_addresses_own_node_included() {
    // x/a runs on n1 (192.168.100.1). No own-node exception for CNP.
    let idx = nodes_cluster(vec![cnp("nodes", "Admin", 1, "x").set(
        &["spec"],
        "egress",
        json!([
            eg("Accept", json!([{"nodes": {"matchLabels": {"role": "infra"}}}]), Some(json!([tcp(6443)]))),
            eg("Deny", json!([{"nodes": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "Exists"}]}}]), None)
        ]),
    )]);
    assert_verdicts(
        &idx,
        &[
            ("x/a", "192.168.100.2", "tcp/6443", true),
            ("x/a", "192.168.100.2", "tcp/22", false),
            ("x/a", "192.168.100.1", "tcp/22", false),
            ("x/a", "192.168.100.3", "tcp/22", true),
            ("x/a", "y/c", "tcp/22", true),
        ],
    );
    assert_eq!(
        steps(&idx, "x/a", "192.168.100.1", "tcp/22", "egress"),
        ["Admin: nodes egress[1] to[0]: Deny"]
    );
}

#[test]
fn own_node_is_allowed_by_networkpolicy_when_that_tier_decides() {
    // The NP tier keeps its own-node allowance; the tiers walk says so.
    let idx = nodes_cluster(vec![
        netpol("x", "deny-all").policy_types(&["Egress"]),
        cnp("pass", "Admin", 1, "x").set(
            &["spec"],
            "egress",
            json!([eg("Pass", json!([{"networks": ["0.0.0.0/0"]}]), None)]),
        ),
    ]);
    assert_verdicts(
        &idx,
        &[
            ("x/a", "192.168.100.1", "tcp/22", true),
            ("x/a", "192.168.100.2", "tcp/22", false),
        ],
    );
    let s = steps(&idx, "x/a", "192.168.100.1", "tcp/22", "egress");
    assert_eq!(s[1], "NetworkPolicy: allowed (traffic between a pod and its own node is always allowed by NetworkPolicy)");
}

#[test]
fn ingress_rules_never_match_nodes_or_outside_addresses() {
    // Admin Deny from every namespace: pods are denied, nodes and outside hosts are not
    // (ingress peers are pods only).
    let idx = nodes_cluster(vec![cnp("deny-in", "Admin", 1, "x").set(
        &["spec"],
        "ingress",
        json!([ing("Deny", json!([{"namespaces": {}}]), None)]),
    )]);
    assert_verdicts(
        &idx,
        &[
            ("y/c", "x/a", "tcp/80", false),
            ("192.168.100.1", "x/a", "tcp/80", true),
            ("192.168.100.2", "x/a", "tcp/80", true),
            ("8.8.8.8", "x/a", "tcp/80", true),
        ],
    );
    let s = steps(&idx, "8.8.8.8", "x/a", "tcp/80", "ingress");
    assert!(
        s[0].contains("8.8.8.8 is not a pod, and ingress peers are pods only"),
        "{s:?}"
    );
}

#[test]
fn pods_peer_without_namespace_selector_is_every_namespace() {
    let idx = nodes_cluster(vec![cnp("p", "Admin", 1, "x").set(
        &["spec"],
        "ingress",
        json!([ing(
            "Deny",
            json!([{"pods": {"podSelector": {"matchLabels": {"pod": "d"}}}}]),
            None
        )]),
    )]);
    assert_verdicts(
        &idx,
        &[
            ("z/d", "x/a", "tcp/80", false),
            ("y/c", "x/a", "tcp/80", true),
        ],
    );
}

#[test]
fn host_network_pods_are_neither_subjects_nor_peers() {
    let mut all = cluster();
    all.push(
        pod("x", "h")
            .label("pod", "h")
            .node("n1")
            .ip("192.168.100.1")
            .host_ip("192.168.100.1")
            .host_network(),
    );
    all.push(
        cnp("all-x", "Admin", 1, "x")
            .set(
                &["spec"],
                "egress",
                json!([eg("Deny", json!([ns_peer("y")]), None)]),
            )
            .set(
                &["spec"],
                "ingress",
                json!([ing("Deny", json!([ns_peer("x")]), None)]),
            ),
    );
    let idx = index(all);
    let g = graph(&idx);
    assert!(
        g.pod("x", "h").is_none(),
        "a host-network pod is not a subject"
    );
    assert_verdicts(
        &idx,
        &[
            ("x/h", "y/c", "tcp/80", true),
            ("x/h", "x/a", "tcp/80", true),
            ("x/b", "x/a", "tcp/80", false),
        ],
    );
}

#[test]
fn domain_names_match_nothing() {
    let idx = nodes_cluster(vec![cnp("dns", "Admin", 1, "x").set(
        &["spec"],
        "egress",
        json!([eg(
            "Accept",
            json!([{"domainNames": ["example.com", "*.example.org"]}]),
            None
        )]),
    )]);
    let g = graph(&idx);
    let a = g.pod("x", "a").unwrap();
    assert_eq!(a.tiers.egress.admin.policies, ["dns"]);
    assert!(a.tiers.egress.admin.rules.is_empty());
}

#[test]
fn a_policy_that_cannot_be_compiled_denies_its_subjects_at_its_tier() {
    // Port 0 is invalid. The index keeps the policy as a Deny of everything, egress only
    // (it has no ingress rules), for x's pods, at Baseline priority 3: NP still decides
    // first for pods it isolates.
    let bad = cnp("bad", "Baseline", 3, "x").set(
        &["spec"],
        "egress",
        json!([eg("Accept", json!([ns_peer("y")]), Some(json!([tcp(0)])))]),
    );
    let mut idx = Index::new();
    let mut errors = Vec::new();
    let mut all = cluster();
    all.push(bad);
    all.push(
        netpol("x", "allow-out-a")
            .selecting("pod", "a")
            .policy_types(&["Egress"])
            .egress(json!([{}])),
    );
    for o in all {
        if let Err(e) = idx.apply(o.object()) {
            errors.push(e.to_string());
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("ClusterNetworkPolicy bad"), "{errors:?}");
    assert!(
        errors[0].contains("spec.egress[0].protocols[0].tcp.destinationPort.number"),
        "{errors:?}"
    );
    let g = graph(&idx);
    let b = g.pod("x", "b").unwrap();
    let rules = &b.tiers.egress.baseline.rules;
    assert_eq!(rules.len(), 1);
    assert_eq!(
        (
            rules[0].action,
            rules[0].peer,
            &rules[0].ports,
            rules[0].origin.rule
        ),
        (Action::Deny, PeerRef::Any, &Ports::Any, None)
    );
    assert_eq!(rules[0].origin.tier, Tier::Baseline);
    assert!(b.tiers.ingress.is_empty());
    assert_verdicts(
        &idx,
        &[
            ("x/b", "y/c", "tcp/80", false),
            ("x/b", "8.8.8.8", "udp/53", false),
            ("x/a", "y/c", "tcp/80", true),
            ("y/c", "x/b", "tcp/80", true),
        ],
    );
}

#[test]
fn an_unreadable_policy_denies_every_pod_at_admin_priority_0() {
    // Neither tier, priority nor subject can be read: Admin, 0, every pod, in both
    // directions it has (unreadable) rules for.
    let bad = Obj(json!({
        "apiVersion": "policy.networking.k8s.io/v1beta1",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "garbled"},
        "spec": {"tier": "Middle", "priority": "high", "subject": {"everything": true},
                 "ingress": "all of it", "egress": [{"action": "Drop"}]},
    }));
    let mut all = cluster();
    all.push(cnp("accept", "Admin", 0, "y").set(
        &["spec"],
        "ingress",
        json!([ing("Accept", json!([ns_peer("x")]), None)]),
    ));
    let mut idx = Index::new();
    for o in all {
        idx.apply(o.object()).unwrap();
    }
    assert!(idx.apply(bad.object()).is_err());
    let g = graph(&idx);
    for p in g.pods.values() {
        for side in [&p.tiers.ingress, &p.tiers.egress] {
            assert!(
                side.admin.policies.contains(&"garbled".to_string()),
                "{}",
                p.id()
            );
        }
    }
    // "accept" sorts before "garbled" at priority 0: its Accept decides y/c's ingress.
    assert_verdicts(
        &idx,
        &[
            ("x/a", "y/c", "tcp/80", false),
            ("x/a", "z/d", "tcp/80", false),
        ],
    );
    let s = steps(&idx, "x/a", "y/c", "tcp/80", "egress");
    assert_eq!(
        s,
        ["Admin: garbled egress (fail-closed: the policy could not be compiled): Deny"]
    );
}

#[test]
fn both_api_versions_read_the_same() {
    let spec = json!([ing("Deny", json!([ns_peer("y")]), None)]);
    let a = cnp("p", "Admin", 1, "x").set(&["spec"], "ingress", spec.clone());
    let b = a
        .clone()
        .set(&[], "apiVersion", "policy.networking.k8s.io/v1beta1");
    let ga = graph(&nodes_cluster(vec![a]));
    let gb = graph(&nodes_cluster(vec![b]));
    assert_eq!(ga, gb);
    assert!(!ga.pod("x", "a").unwrap().tiers.is_empty());
}

#[test]
fn explain_json_and_graph_json_carry_the_tiers() {
    let idx = nodes_cluster(vec![cnp("no-y-into-x", "Admin", 3, "x").set(
        &["spec"],
        "ingress",
        json!([
            {"name": "web", "action": "Pass", "from": [ns_peer("y")], "protocols": [tcp(80)]},
            {"name": "deny-y", "action": "Deny", "from": [ns_peer("y")]}
        ]),
    )]);
    let e = serde_json::to_value(explain(&idx, "y/c", "x/a", "tcp/81")).unwrap();
    assert_eq!(e["allowed"], false);
    let step = &e["ingress_tiers"][0];
    assert_eq!(step["tier"], "Admin");
    assert_eq!(step["rule"], "Admin: no-y-into-x ingress[1] deny-y from[0]");
    assert_eq!(step["outcome"], "Deny");
    assert_eq!(step["decides"], false);
    assert_eq!(
        step["near_misses"][0]["rule"],
        "Admin: no-y-into-x ingress[0] web from[0]"
    );
    assert_eq!(step["near_misses"][0]["ports"], json!(["tcp/80"]));
    assert!(e.get("egress_tiers").is_none(), "y/c has no tiers: {e}");
    let g: serde_json::Value =
        serde_json::from_str(&nftpol::graph_json::render(&graph(&idx))).unwrap();
    let a = g["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "a")
        .unwrap();
    let rules = &a["tiers"]["ingress"]["admin"]["rules"];
    assert_eq!(rules[0]["action"], "Pass");
    assert_eq!(rules[0]["ports"], json!(["tcp/80"]));
    assert_eq!(rules[1]["action"], "Deny");
    assert_eq!(rules[1]["rule"], 1);
    assert_eq!(rules[1]["rule_name"], "deny-y");
    assert_eq!(rules[1]["priority"], 3);
    let peer = rules[1]["peer"].as_u64().unwrap() as usize;
    assert_eq!(g["peers"][peer]["addresses"], json!(["10.244.2.21"]));
    let c = g["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "c")
        .unwrap();
    assert!(c.get("tiers").is_none(), "no CNP selects y/c: {c}");
}
