//! `nftpol diff` against brute force: on small random clusters and a random change of
//! them (policies added, dropped or replaced, a namespace, pod or node relabelled, a pod
//! finished or started, ClusterNetworkPolicies added or dropped), the diff's changes,
//! expanded, are exactly the connections whose verdict `explain` gives differently before
//! and after: every ordered
//! pair of distinct endpoints (pods, nodes, outside addresses in and out of every ipBlock),
//! every port the policies mention and one they do not, each protocol and family.

use std::collections::BTreeMap;
use std::net::IpAddr;

use nftpol::change::{diff, Diff, Verdict};
use nftpol::explain::{explain_in, Query};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::{object_from_value, Object};
use nftpol::synth::small::{cluster, cluster_policy, labels, node, policy, EXT};
use nftpol::synth::Rng;
use proptest::prelude::*;
use serde_json::Value;

fn index_of(values: &[Value]) -> Index {
    let objs: Vec<Object> = values
        .iter()
        .map(|v| object_from_value(v.clone(), "gen").unwrap().unwrap())
        .collect();
    Index::from_objects(objs).unwrap()
}

/// A random state and a random change of it.
fn states(seed: u64) -> (Vec<Value>, Vec<Value>) {
    let mut before = cluster(seed).objects;
    let mut rng = Rng::new(seed ^ 0xd1ff);
    if rng.chance(50) {
        for n in 1..=2 {
            before.push(node(&mut rng, n));
        }
    }
    if rng.chance(40) {
        for i in 0..1 + rng.below(2) {
            before.push(cluster_policy(&mut rng, &format!("cnp{i}"), 0));
        }
    }
    let mut after = Vec::new();
    for obj in &before {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let mut obj = obj.clone();
        match kind {
            "NetworkPolicy" | "ClusterNetworkPolicy" if rng.chance(30) => continue,
            "NetworkPolicy" if rng.chance(30) => {
                let ns = obj["metadata"]["namespace"].clone();
                obj = policy(&mut rng, obj["metadata"]["name"].as_str().unwrap());
                obj["metadata"]["namespace"] = ns;
            }
            "Namespace" | "Pod" | "Node" if rng.chance(20) => {
                obj["metadata"]["labels"] = labels(&mut rng);
            }
            // A pod that finishes: its address is no pod's after.
            "Pod" if rng.chance(10) => {
                obj["status"]["phase"] = "Succeeded".into();
            }
            _ => {}
        }
        after.push(obj);
    }
    for i in 0..rng.below(3) {
        after.push(policy(&mut rng, &format!("new{i}")));
    }
    // A pod that starts, at an address no pod held before.
    if rng.chance(20) {
        after.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "new", "namespace": "x", "labels": labels(&mut rng)},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 90, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.99"}, {"ip": "fd00::1:99"}],
                       "hostIP": "192.168.100.1", "hostIPs": [{"ip": "192.168.100.1"}, {"ip": "fd00:100::1"}]}
        }));
    }
    if rng.chance(25) {
        after.push(cluster_policy(&mut rng, "cnp-new", 0));
    }
    (before, after)
}

/// What the diff calls an address: its pod (after, else before), its node (the node's
/// name, or `name (address)` for a node with more than one address of the family), else
/// `None` (a CIDR must hold it).
fn label(states: &[(&Index, &PolicyGraph); 2], ip: IpAddr) -> Option<String> {
    for (_, g) in states.iter().rev() {
        if let Some(p) = g.pod_by_ip(ip) {
            return Some(p.id());
        }
    }
    // Every (address, node name) claim of the family: Node objects and pods' hostIPs.
    let mut claims: Vec<(IpAddr, String)> = Vec::new();
    for (index, _) in states {
        for n in index.nodes() {
            claims.extend(n.addresses.iter().map(|a| (*a, n.name.clone())));
        }
        for p in index.pods() {
            let name = |a: &IpAddr| p.node.clone().unwrap_or_else(|| a.to_string());
            claims.extend(p.host_ips.iter().map(|a| (*a, name(a))));
        }
    }
    claims.retain(|(a, _)| a.is_ipv6() == ip.is_ipv6());
    claims.sort();
    claims.dedup_by_key(|(a, _)| *a);
    let name = claims.iter().find(|(a, _)| *a == ip)?.1.clone();
    let addresses = claims.iter().filter(|(_, n)| *n == name).count();
    Some(if addresses == 1 {
        name
    } else {
        format!("{name} ({ip})")
    })
}

fn covers(items: &[String], label: &Option<String>, ip: IpAddr) -> bool {
    match label {
        Some(l) => items.contains(l),
        None => items.iter().any(|c| {
            c.parse::<ipnet::IpNet>()
                .is_ok_and(|net: ipnet::IpNet| net.contains(&ip))
        }),
    }
}

const V4: [&str; 10] = [
    "192.168.100.1",
    "192.168.100.2",
    "192.168.100.11",
    "192.168.100.12",
    EXT[0],
    "192.168.100.200",
    "10.0.1.77",
    "10.0.0.200",
    "10.0.2.5",
    "8.8.8.8",
];
const V6: [&str; 6] = [
    "fd00:100::1",
    "fd00:100::2",
    EXT[1],
    "fd00::1:99",
    "fd00:1::5",
    "2001:db8::1",
];

fn check(seed: u64) -> Result<(), TestCaseError> {
    let (b, a) = states(seed);
    let (ib, ia) = (index_of(&b), index_of(&a));
    let (gb, ga) = (PolicyGraph::build(&ib), PolicyGraph::build(&ia));
    let d: Diff = diff(&ib, &ia);
    let both = [(&ib, &gb), (&ia, &ga)];
    // The JSON is what tools read: check the parsed JSON, not the structs.
    let json: Value = serde_json::to_value(&d).unwrap();
    let d2: Vec<Value> = json["changes"].as_array().unwrap().clone();
    prop_assert_eq!(d2.len(), d.changes.len());
    for (fam, probes) in [("ipv4", &V4[..]), ("ipv6", &V6[..])] {
        let mut ends: Vec<IpAddr> = probes.iter().map(|s| s.parse().unwrap()).collect();
        for g in [&gb, &ga] {
            for p in g.pods.values() {
                ends.extend(p.ips.iter().filter(|ip| ip.is_ipv6() == (fam == "ipv6")));
            }
        }
        ends.sort();
        ends.dedup();
        let labels: BTreeMap<IpAddr, Option<String>> =
            ends.iter().map(|&ip| (ip, label(&both, ip))).collect();
        // No CIDR of a change holds a pod's or a node's address.
        for c in &d.changes {
            for ip in &ends {
                if labels[ip].is_some() {
                    prop_assert!(
                        !covers(&c.sources, &None, *ip) && !covers(&c.destinations, &None, *ip),
                        "seed {seed}: a CIDR of {c:?} holds {ip}"
                    );
                }
            }
        }
        for &s in &ends {
            for &t in &ends {
                if s == t {
                    continue;
                }
                for proto in ["tcp", "udp", "sctp"] {
                    for port in [80u16, 81, 90, 91, 1234] {
                        let verdict = |(index, graph): (&Index, &PolicyGraph)| {
                            let q = Query::parse(
                                &s.to_string(),
                                &t.to_string(),
                                &format!("{proto}/{port}"),
                                None,
                            )
                            .unwrap();
                            explain_in(index, graph, &q).unwrap().allowed
                        };
                        let (vb, va) = (verdict(both[0]), verdict(both[1]));
                        let hits: Vec<_> = d
                            .changes
                            .iter()
                            .filter(|c| {
                                c.families.iter().any(|f| f == fam)
                                    && c.protocol.eq_ignore_ascii_case(proto)
                                    && c.ports.iter().any(|[lo, hi]| (*lo..=*hi).contains(&port))
                                    && covers(&c.sources, &labels[&s], s)
                                    && covers(&c.destinations, &labels[&t], t)
                            })
                            .collect();
                        prop_assert!(
                            hits.len() <= 1,
                            "seed {seed}: {s} -> {t} {proto}/{port} in {} changes: {hits:?}",
                            hits.len()
                        );
                        match hits.first() {
                            None => prop_assert_eq!(
                                vb,
                                va,
                                "seed {}: {} -> {} {}/{} changed ({} -> {}) but no change lists it\n{}",
                                seed, s, t, proto, port, vb, va, d
                            ),
                            Some(c) => {
                                prop_assert!(
                                    vb != va
                                        && c.before == verdict_of(vb)
                                        && c.after == verdict_of(va),
                                    "seed {seed}: {s} -> {t} {proto}/{port} is {vb} -> {va}, listed as {c:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn verdict_of(allowed: bool) -> Verdict {
    if allowed {
        Verdict::Allowed
    } else {
        Verdict::Denied
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn diff_equals_brute_force(seed in any::<u64>()) {
        check(seed)?;
    }
}

#[test]
fn no_change_is_no_change() {
    for seed in 0..20 {
        let (b, _) = states(seed);
        let i = index_of(&b);
        assert!(diff(&i, &i).is_empty(), "seed {seed}");
    }
}
