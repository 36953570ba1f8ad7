//! Property tests on random small clusters:
//! - compile output is deterministic (twice the same bytes; input order does not matter);
//! - `explain` (which reads the policy graph) agrees with the ruleset model run packet by
//!   packet through the in-memory evaluator, node by node as the kernel would see it.

use std::net::IpAddr;

use nftpol::explain::{explain_in, Family};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::{object_from_value, Object};
use nftpol::ruleset::eval::{forward_accepts, Packet};
use nftpol::synth::Rng;
use proptest::prelude::*;
use serde_json::{json, Value};

const LABELS: [&str; 2] = ["app", "tier"];
const VALUES: [&str; 3] = ["a", "b", "c"];
const PORT_NAMES: [&str; 2] = ["web", "dns"];
const EXT: [&str; 2] = ["192.168.100.100", "fd00:100::100"];

fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len())]
}

fn labels(rng: &mut Rng) -> Value {
    let mut m = serde_json::Map::new();
    for k in LABELS {
        if rng.chance(60) {
            m.insert(k.into(), json!(pick(rng, &VALUES)));
        }
    }
    Value::Object(m)
}

fn selector(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => json!({}),
        1 | 2 => json!({"matchLabels": {pick(rng, &LABELS): pick(rng, &VALUES)}}),
        _ => {
            let op = pick(rng, &["In", "NotIn", "Exists", "DoesNotExist"]);
            let key = pick(rng, &LABELS);
            if op == "In" || op == "NotIn" {
                json!({"matchExpressions": [{"key": key, "operator": op, "values": [pick(rng, &VALUES)]}]})
            } else {
                json!({"matchExpressions": [{"key": key, "operator": op}]})
            }
        }
    }
}

fn peer(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => json!({"podSelector": selector(rng)}),
        1 => json!({"namespaceSelector": selector(rng)}),
        2 => json!({"namespaceSelector": selector(rng), "podSelector": selector(rng)}),
        3 => json!({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}),
        _ => json!({"ipBlock": {"cidr": pick(rng, &["fd00::/16", "192.168.100.0/24", "0.0.0.0/0"])}}),
    }
}

fn port(rng: &mut Rng) -> Value {
    let proto = pick(rng, &["TCP", "UDP"]);
    match rng.below(4) {
        0 => json!({"protocol": proto, "port": 80}),
        1 => json!({"protocol": proto, "port": 80, "endPort": 81}),
        2 => json!({"protocol": proto, "port": pick(rng, &PORT_NAMES)}),
        _ => json!({"protocol": proto}),
    }
}

fn rules(rng: &mut Rng, peers_key: &str) -> Value {
    let n = rng.below(3);
    Value::Array(
        (0..n)
            .map(|_| {
                let mut r = serde_json::Map::new();
                if rng.chance(70) {
                    r.insert(peers_key.into(), Value::Array((0..1 + rng.below(2)).map(|_| peer(rng)).collect()));
                }
                if rng.chance(60) {
                    r.insert("ports".into(), Value::Array((0..1 + rng.below(2)).map(|_| port(rng)).collect()));
                }
                Value::Object(r)
            })
            .collect(),
    )
}

struct Cluster {
    objects: Vec<Value>,
    /// (id, node, ips)
    pods: Vec<(String, String, Vec<String>)>,
}

fn cluster(seed: u64) -> Cluster {
    let mut rng = Rng::new(seed);
    let mut objects = Vec::new();
    let namespaces = ["x", "y"];
    for ns in namespaces {
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels(&mut rng)}}));
    }
    let mut pods = Vec::new();
    for i in 0..1 + rng.below(5) {
        let ns = pick(&mut rng, &namespaces);
        let node = 1 + rng.below(2);
        let ip4 = format!("10.0.{}.{}", node - 1 + rng.below(2) * 0, 10 + i);
        let ip6 = format!("fd00::{}:{}", node, 10 + i);
        let mut ports = Vec::new();
        for (k, name) in PORT_NAMES.iter().enumerate() {
            if rng.chance(50) {
                let proto = pick(&mut rng, &["TCP", "UDP"]);
                ports.push(json!({"name": name, "containerPort": 80 + k as i32 + rng.below(2) as i32 * 10, "protocol": proto}));
            }
        }
        let name = format!("p{i}");
        let host4 = format!("192.168.100.{node}");
        let finished = rng.chance(10);
        objects.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels(&mut rng)},
            "spec": {"nodeName": format!("n{node}"), "containers": [{"name": "c", "ports": ports}]},
            "status": {"phase": if finished { "Succeeded" } else { "Running" }, "podIPs": [{"ip": ip4}, {"ip": ip6}],
                       "hostIP": host4, "hostIPs": [{"ip": host4}, {"ip": format!("fd00:100::{node}")}]}
        }));
        if !finished {
            pods.push((format!("{ns}/{name}"), format!("n{node}"), vec![ip4, ip6]));
        }
    }
    for i in 0..rng.below(4) {
        let ns = pick(&mut rng, &namespaces);
        let mut spec = serde_json::Map::new();
        spec.insert("podSelector".into(), selector(&mut rng));
        match rng.below(4) {
            0 => {}
            1 => {
                spec.insert("policyTypes".into(), json!(["Ingress"]));
            }
            2 => {
                spec.insert("policyTypes".into(), json!(["Egress"]));
            }
            _ => {
                spec.insert("policyTypes".into(), json!(["Ingress", "Egress"]));
            }
        }
        spec.insert("ingress".into(), rules(&mut rng, "from"));
        spec.insert("egress".into(), rules(&mut rng, "to"));
        objects.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                            "metadata": {"name": format!("np{i}"), "namespace": ns}, "spec": spec}));
    }
    Cluster { objects, pods }
}

fn index_of(values: &[Value]) -> Index {
    let objs: Vec<Object> = values
        .iter()
        .map(|v| object_from_value(v.clone(), "gen").unwrap().unwrap())
        .collect();
    Index::from_objects(objs).unwrap()
}

fn render_all(index: &Index) -> Vec<String> {
    [None, Some("n1"), Some("n2")]
        .into_iter()
        .map(|n| nftpol::script::render(&nftpol::compile(index, n)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn compile_is_deterministic(seed in any::<u64>()) {
        let c = cluster(seed);
        let a = render_all(&index_of(&c.objects));
        let b = render_all(&index_of(&c.objects));
        prop_assert_eq!(&a, &b);
        let mut reversed = c.objects.clone();
        reversed.reverse();
        prop_assert_eq!(&a, &render_all(&index_of(&reversed)));
    }

    #[test]
    fn explain_agrees_with_the_ruleset(seed in any::<u64>()) {
        let c = cluster(seed);
        let index = index_of(&c.objects);
        let graph = PolicyGraph::build(&index);
        let n1 = nftpol::compile(&index, Some("n1"));
        let n2 = nftpol::compile(&index, Some("n2"));
        let ruleset_of = |node: &str| if node == "n1" { &n1 } else { &n2 };
        // Endpoints: (name for explain, node if a pod, address) per family.
        for (fam, v6) in [(Family::V4, false), (Family::V6, true)] {
            let mut ends: Vec<(String, Option<String>, IpAddr)> = c.pods.iter()
                .map(|(id, node, ips)| (id.clone(), Some(node.clone()), ips[v6 as usize].parse().unwrap()))
                .collect();
            ends.push((EXT[v6 as usize].to_string(), None, EXT[v6 as usize].parse().unwrap()));
            let other_node = if v6 { "fd00:100::2" } else { "192.168.100.2" };
            ends.push((other_node.to_string(), None, other_node.parse().unwrap()));
            for (from, from_node, saddr) in &ends {
                for (to, to_node, daddr) in &ends {
                    if from == to || (from_node.is_none() && to_node.is_none()) {
                        continue;
                    }
                    // A pod and its own node never meet on the forward hook.
                    if (from_node.as_deref() == Some("n2") && to == other_node) || (to_node.as_deref() == Some("n2") && from == other_node) {
                        continue;
                    }
                    for (proto, l4, p) in [("tcp", 6u8, 80u16), ("udp", 17, 81), ("tcp", 90, 90)] {
                        let p = if l4 == 90 { 90 } else { p };
                        let l4 = if l4 == 90 { 6 } else { l4 };
                        let e = explain_in(&index, &graph, from, to, &format!("{proto}/{p}"), Some(fam)).unwrap();
                        let pkt = Packet { saddr: *saddr, daddr: *daddr, l4proto: l4, dport: p };
                        let mut kernel = true;
                        if let Some(n) = from_node { kernel &= forward_accepts(ruleset_of(n), &pkt); }
                        if let Some(n) = to_node {
                            if from_node.as_ref() != Some(n) { kernel &= forward_accepts(ruleset_of(n), &pkt); }
                        }
                        prop_assert_eq!(e.allowed, kernel, "seed {} {} -> {} {}/{}\n{}\n{}", seed, from, to, proto, p, e, PolicyGraph::build(&index));
                    }
                }
            }
        }
    }
}
