//! The ruleset a node gets from the policy graph: chains only for its isolated pods,
//! disjoint set elements, sets that admit exactly what the graph allows, no dispatch of
//! host-network or finished pods, and output that does not depend on input order.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::*;
use nftpol::addr::ip_value;
use nftpol::policy::{Direction, Protocol};
use nftpol::ruleset::{Field, Ruleset, Set, Verdict};
use serde_json::json;

fn small_cluster() -> Vec<Obj> {
    vec![
        ns("x"),
        ns("y"),
        pod("x", "a")
            .label("pod", "a")
            .node("n1")
            .ip("10.244.1.11")
            .ip6("fd00:10:244:1::11")
            .host_ip("192.168.100.1")
            .port("http", 8080, "TCP"),
        pod("x", "b")
            .label("pod", "b")
            .node("n1")
            .ip("10.244.1.12")
            .host_ip("192.168.100.1")
            .port("http", 9000, "TCP"),
        pod("y", "c")
            .label("pod", "c")
            .node("n2")
            .ip("10.244.2.21")
            .ip6("fd00:10:244:2::21")
            .host_ip("192.168.100.2"),
        pod("y", "d")
            .label("pod", "d")
            .node("n1")
            .ip("10.244.1.31")
            .host_ip("192.168.100.1"),
        // x/a: ingress (overlapping ports and addresses), egress to y.
        netpol("x", "a-in").selecting("pod", "a").ingress(json!([
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": 80, "endPort": 90}]},
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/12"}}], "ports": [{"port": 85, "endPort": 100}, {"port": 53, "protocol": "UDP"}]},
            {"from": [{"ipBlock": {"cidr": "10.2.3.0/24"}}]},
            {"from": [from_pod("b")], "ports": [{"port": "http"}]},
            {"from": [{"ipBlock": {"cidr": "fd00::/8", "except": ["fd00:10:244:2::/64"]}}], "ports": [{"port": 443}]},
            {"from": [{"ipBlock": {"cidr": "fd00:10::/32"}}], "ports": [{"protocol": "SCTP"}]},
        ])),
        netpol("x", "a-out")
            .selecting("pod", "a")
            .policy_types(&["Egress"])
            .egress(json!([
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]},
                {"to": [{"podSelector": {}}], "ports": [{"port": "http"}]},
            ])),
        // y/c (on n2): isolated both ways.
        netpol("y", "c-all")
            .selecting("pod", "c")
            .policy_types(&["Ingress", "Egress"]),
    ]
}

fn chain_names(rs: &Ruleset) -> Vec<&str> {
    rs.chains().iter().map(|c| c.name.as_str()).collect()
}

fn map_keys(rs: &Ruleset, map: &str) -> Vec<(Field, Verdict)> {
    rs.map(map)
        .unwrap_or_else(|| panic!("map {map}"))
        .elements
        .iter()
        .map(|e| {
            assert_eq!(e.key.len(), 1);
            (e.key[0], e.verdict.clone())
        })
        .collect()
}

#[test]
fn ruleset_for_a_node_has_chains_only_for_its_isolated_pods() {
    let idx = index(small_cluster());
    let rs = nftpol::compile(&idx, Some("n1"));
    let chains = chain_names(&rs);
    let pod_chains: Vec<&str> = chains
        .iter()
        .copied()
        .filter(|c| c.starts_with("ingress/") || c.starts_with("egress/"))
        .collect();
    assert_eq!(pod_chains, ["egress/x/a", "ingress/x/a"], "{chains:?}");
    let a4 = Field::Ipv4(ip4("10.244.1.11"), ip4("10.244.1.11"));
    let a6 = Field::Ipv6(ip6("fd00:10:244:1::11"), ip6("fd00:10:244:1::11"));
    assert_eq!(
        map_keys(&rs, "ingress4"),
        [(a4, Verdict::Jump("ingress/x/a".into()))]
    );
    assert_eq!(
        map_keys(&rs, "ingress6"),
        [(a6, Verdict::Jump("ingress/x/a".into()))]
    );
    assert_eq!(
        map_keys(&rs, "egress4"),
        [(a4, Verdict::Jump("egress/x/a".into()))]
    );
    assert_eq!(
        map_keys(&rs, "egress6"),
        [(a6, Verdict::Jump("egress/x/a".into()))]
    );
    // Every set is looked up by a chain of this node, but the held sets of cut connections.
    let looked_up: BTreeSet<&str> = rs
        .regular_chains()
        .iter()
        .filter(|c| c.name.ends_with("/x/a"))
        .flat_map(|c| c.lookups())
        .collect();
    for s in rs.sets().iter().filter(|s| s.timeout.is_none()) {
        assert!(looked_up.contains(s.name.as_str()), "{}", s.name);
    }
    // x/a's two directions have different allows, so they share no set.
    let shared = |c: &str| -> BTreeSet<&str> { rs.chain(c).unwrap().lookups().collect() };
    assert!(shared("ingress/x/a").is_disjoint(&shared("egress/x/a")));
    // The other node gets y/c only.
    let rs2 = nftpol::compile(&idx, Some("n2"));
    let pod_chains2: Vec<&str> = chain_names(&rs2)
        .into_iter()
        .filter(|c| c.starts_with("ingress/") || c.starts_with("egress/"))
        .collect();
    assert_eq!(pod_chains2, ["egress/y/c", "ingress/y/c"]);
    // Peers span the cluster: x/a's egress set on n1 holds y/c, which runs on n2.
    assert!(sets_admit(
        &rs,
        "egress/x/a",
        ip("10.244.2.21"),
        Protocol::Tcp,
        80
    ));
    assert!(sets_admit(
        &rs,
        "egress/x/a",
        ip("fd00:10:244:2::21"),
        Protocol::Udp,
        53
    ));
    // A node with no pods: base chains, the (empty) held sets and empty maps.
    let rs3 = nftpol::compile(&idx, Some("n3"));
    let names: Vec<&str> = rs3.sets().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["held4", "held6"]);
    assert!(rs3.sets().iter().all(|s| s.elements.is_empty()));
    assert!(rs3.maps().iter().all(|m| m.elements.is_empty()));
}

fn ip4(s: &str) -> std::net::Ipv4Addr {
    s.parse().unwrap()
}

fn ip6(s: &str) -> std::net::Ipv6Addr {
    s.parse().unwrap()
}

/// Each field as an inclusive (lo, hi) range of u128.
fn field_range(f: &Field) -> (u128, u128) {
    match *f {
        Field::Ipv4(a, b) => (u32::from(a) as u128, u32::from(b) as u128),
        Field::Ipv6(a, b) => (u128::from(a), u128::from(b)),
        Field::Proto(a, b) => (a as u128, b as u128),
        Field::Port(a, b) => (a as u128, b as u128),
    }
}

fn elements_overlap(a: &[Field], b: &[Field]) -> bool {
    a.iter().zip(b).all(|(x, y)| {
        let (xl, xh) = field_range(x);
        let (yl, yh) = field_range(y);
        xl <= yh && yl <= xh
    })
}

fn assert_disjoint(set: &Set) {
    for (i, a) in set.elements.iter().enumerate() {
        assert_eq!(a.key.len(), set.key.len(), "{}", set.name);
        for f in &a.key {
            let (lo, hi) = field_range(f);
            assert!(lo <= hi, "{}: reversed range {f:?}", set.name);
        }
        for b in &set.elements[i + 1..] {
            assert!(
                !elements_overlap(&a.key, &b.key),
                "{}: {:?} overlaps {:?}",
                set.name,
                a.key,
                b.key
            );
        }
    }
}

/// The shared NetworkPolicy set of `kind` that a pod direction's chain looks up.
fn np_set_of<'a>(rs: &'a Ruleset, chain: &str, kind: &str) -> &'a Set {
    let c = rs
        .chain(chain)
        .unwrap_or_else(|| panic!("no chain {chain}"));
    let mut found = c
        .lookups()
        .filter(|s| s.starts_with("np/") && s.ends_with(&format!("/{kind}")));
    let name = found
        .next()
        .unwrap_or_else(|| panic!("{chain} looks up no np set {kind}"));
    assert!(found.next().is_none(), "{chain} looks up two {kind} sets");
    rs.set(name)
        .unwrap_or_else(|| panic!("{chain} looks up {name}, not in the ruleset"))
}

/// Whether the sets of one pod direction admit (peer, proto, port).
fn sets_admit(rs: &Ruleset, chain: &str, peer: IpAddr, proto: Protocol, port: u16) -> bool {
    let (is6, v) = ip_value(peer);
    let fam = if is6 { "6" } else { "4" };
    let any = np_set_of(rs, chain, &format!("any{fam}"));
    let exact = np_set_of(rs, chain, &format!("exact{fam}"));
    let ranges = np_set_of(rs, chain, &format!("ports{fam}"));
    // Single points go to the hash set, true ranges to the interval set.
    assert!(!exact.interval && exact.elements.iter().all(|e| e.key.is_point()));
    assert!(ranges.interval && ranges.elements.iter().all(|e| !e.key.is_point()));
    let in_range = |f: &Field, x: u128| {
        let (lo, hi) = field_range(f);
        lo <= x && x <= hi
    };
    any.elements.iter().any(|e| in_range(&e.key[0], v))
        || exact.elements.iter().chain(&ranges.elements).any(|e| {
            in_range(&e.key[0], v)
                && in_range(&e.key[1], proto.number() as u128)
                && in_range(&e.key[2], port as u128)
        })
}

#[test]
fn ruleset_sets_have_disjoint_elements() {
    let idx = index(small_cluster());
    let rs = nftpol::compile(&idx, None);
    assert!(!rs.sets().is_empty());
    let mut non_empty = 0;
    for s in rs.sets() {
        assert_disjoint(s);
        non_empty += usize::from(!s.elements.is_empty());
    }
    assert!(non_empty >= 4, "the test cluster should fill several sets");
    for m in rs.maps() {
        let keys: BTreeSet<_> = m.elements.iter().map(|e| e.key).collect();
        assert_eq!(
            keys.len(),
            m.elements.len(),
            "map {} has duplicate keys",
            m.name
        );
    }
}

#[test]
fn ruleset_sets_agree_with_the_graph() {
    let idx = index(small_cluster());
    let g = graph(&idx);
    let rs = nftpol::compile(&idx, None);
    let peers = [
        "10.0.0.1",
        "10.1.0.5",
        "10.2.3.4",
        "10.15.255.255",
        "10.16.0.0",
        "10.244.1.11",
        "10.244.1.12",
        "10.244.1.31",
        "10.244.2.21",
        "11.0.0.1",
        "fd00::1",
        "fd00:10:244:1::11",
        "fd00:10:244:2::21",
        "fd00:10:1::1",
        "fe80::1",
    ];
    let probes = [
        (Protocol::Tcp, 1),
        (Protocol::Tcp, 79),
        (Protocol::Tcp, 80),
        (Protocol::Tcp, 84),
        (Protocol::Tcp, 85),
        (Protocol::Tcp, 90),
        (Protocol::Tcp, 91),
        (Protocol::Tcp, 100),
        (Protocol::Tcp, 101),
        (Protocol::Tcp, 443),
        (Protocol::Tcp, 8080),
        (Protocol::Tcp, 9000),
        (Protocol::Tcp, 65535),
        (Protocol::Udp, 53),
        (Protocol::Udp, 80),
        (Protocol::Sctp, 7),
    ];
    let mut wrong = Vec::new();
    let mut checked = 0;
    for pod in g.pods.values() {
        for dir in [Direction::Ingress, Direction::Egress] {
            let Some(iso) = pod.isolation(dir) else {
                continue;
            };
            let chain = format!("{}/{}/{}", dir.name(), pod.namespace, pod.name);
            for p in peers {
                for (proto, port) in probes {
                    let want = iso.allows.iter().any(|al| {
                        g.peer_contains(al.peer, ip(p)) && al.ports.contains(proto, port)
                    });
                    let got = sets_admit(&rs, &chain, ip(p), proto, port);
                    checked += 1;
                    if want != got {
                        wrong.push(format!(
                            "{chain}: {p} {proto}/{port}: graph {want}, sets {got}"
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4 * peers.len() * probes.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Spot checks by the spec, independent of the graph.
    let ing = "ingress/x/a";
    assert!(sets_admit(&rs, ing, ip("10.0.0.1"), Protocol::Tcp, 95));
    assert!(!sets_admit(&rs, ing, ip("10.1.0.5"), Protocol::Tcp, 80));
    assert!(sets_admit(&rs, ing, ip("10.1.0.5"), Protocol::Tcp, 99));
    assert!(sets_admit(&rs, ing, ip("10.2.3.4"), Protocol::Udp, 9));
    assert!(sets_admit(&rs, ing, ip("10.244.1.12"), Protocol::Tcp, 8080));
    assert!(!sets_admit(
        &rs,
        ing,
        ip("fd00:10:244:2::21"),
        Protocol::Tcp,
        443
    ));
    assert!(sets_admit(
        &rs,
        ing,
        ip("fd00:10:244:2::21"),
        Protocol::Sctp,
        7
    ));
    let eg = "egress/x/a";
    assert!(sets_admit(&rs, eg, ip("10.244.2.21"), Protocol::Udp, 9));
    assert!(sets_admit(
        &rs,
        eg,
        ip("fd00:10:244:2::21"),
        Protocol::Tcp,
        1
    ));
    assert!(!sets_admit(&rs, eg, ip("10.244.1.12"), Protocol::Tcp, 80));
    // Egress named port "http": 9000 on x/b, 8080 on x/a itself.
    assert!(sets_admit(&rs, eg, ip("10.244.1.12"), Protocol::Tcp, 9000));
    assert!(!sets_admit(&rs, eg, ip("10.244.1.12"), Protocol::Tcp, 8080));
    assert!(sets_admit(&rs, eg, ip("10.244.1.11"), Protocol::Tcp, 8080));
    assert!(sets_admit(
        &rs,
        eg,
        ip("fd00:10:244:1::11"),
        Protocol::Tcp,
        8080
    ));
    // y/d is in y: every port.
    assert!(sets_admit(&rs, eg, ip("10.244.1.31"), Protocol::Tcp, 9000));
    assert!(!sets_admit(
        &rs,
        "ingress/y/c",
        ip("10.244.1.11"),
        Protocol::Tcp,
        80
    ));
}

#[test]
fn ruleset_never_dispatches_host_network_or_finished_pods() {
    let idx = cluster_with(vec![
        pod("x", "h")
            .label("pod", "a")
            .node("n1")
            .host_network()
            .ip("192.168.100.1")
            .host_ip("192.168.100.1"),
        pod("x", "done")
            .label("pod", "a")
            .node("n1")
            .ip("10.244.1.99")
            .phase("Failed"),
        netpol("x", "deny-all").policy_types(&["Ingress", "Egress"]),
    ]);
    let rs = nftpol::compile(&idx, Some("n1"));
    let keys: Vec<Field> = rs
        .maps()
        .iter()
        .flat_map(|m| m.elements.iter().map(|e| e.key[0]))
        .collect();
    for bad in ["192.168.100.1", "10.244.1.99"] {
        let f = Field::Ipv4(ip4(bad), ip4(bad));
        assert!(!keys.contains(&f), "{bad} must not be dispatched: {keys:?}");
    }
    let pod_chains: Vec<&str> = chain_names(&rs)
        .into_iter()
        .filter(|c| c.starts_with("ingress/") || c.starts_with("egress/"))
        .collect();
    assert_eq!(
        pod_chains,
        ["egress/x/a", "egress/x/b", "ingress/x/a", "ingress/x/b"]
    );
}

#[test]
fn compile_is_deterministic() {
    let objs = small_cluster();
    let idx = index(objs.clone());
    let one = nftpol::script::render(&nftpol::compile(&idx, None));
    let two = nftpol::script::render(&nftpol::compile(&idx, None));
    assert_eq!(one, two);
    // Another index from the same objects, in other orders.
    let mut reversed = objs.clone();
    reversed.reverse();
    let mut rotated = objs.clone();
    rotated.rotate_left(3);
    let mut interleaved: Vec<Obj> = objs.iter().step_by(2).cloned().collect();
    interleaved.extend(objs.iter().skip(1).step_by(2).cloned());
    for order in [reversed, rotated, interleaved] {
        let other = nftpol::script::render(&nftpol::compile(&index(order), None));
        assert_eq!(one, other);
    }
    for node in ["n1", "n2"] {
        let a = nftpol::script::render(&nftpol::compile(&idx, Some(node)));
        let mut rev = objs.clone();
        rev.reverse();
        let b = nftpol::script::render(&nftpol::compile(&index(rev), Some(node)));
        assert_eq!(a, b, "node {node}");
    }
}
