//! The amplification shapes of issue 25 and the element budget:
//! - a rule admitting many scattered pods on many ports costs addresses + ports elements
//!   (pair lookups), not their product, and still judges packets as the graph does;
//! - a NetworkPolicy over `--max-elements` is refused by `compile` (exit 2, naming it and
//!   its size, the output file untouched) and, in a node's state, enforced fail-closed:
//!   its pods stay isolated and nothing it allows gets through, until it fits again.

#[path = "common/cli.rs"]
mod cli_util;
mod common;

use cli_util::*;
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::object_from_value;
use nftpol::ruleset::eval::{forward_accepts, Packet};
use nftpol::ruleset::{Options, RuleKind};
use nftpol::state::NodeState;
use serde_json::{json, Value};

/// Pod t/p`i`, labelled `app=a`, at the `i`th of every other address of 10.1.0.0/16.
fn amplification_pod(i: usize, node: &str) -> Value {
    let ip = format!("10.1.{}.{}", i / 120, (i % 120) * 2 + 1);
    common::pod("t", &format!("p{i}"))
        .label("app", "a")
        .node(node)
        .ip(&ip)
        .value()
}

/// Namespace `t`: `pods` pods at every other address (as a real cluster's are scattered),
/// the first two on node n1; one policy admitting them all on `ports` TCP ports
/// (1000, 1002, ...).
fn amplification(pods: usize, ports: usize) -> Vec<Value> {
    let mut objs =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}})];
    for i in 0..pods {
        objs.push(amplification_pod(i, if i < 2 { "n1" } else { "n2" }));
    }
    let list: Vec<Value> = (0..ports)
        .map(|j| json!({"protocol": "TCP", "port": 1000 + 2 * j}))
        .collect();
    objs.push(policy(list));
    objs
}

fn policy(ports: Vec<Value>) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "big", "namespace": "t"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {}}], "ports": ports}]}})
}

fn index_of(objs: &[Value]) -> Index {
    Index::from_objects(
        objs.iter()
            .map(|v| object_from_value(v.clone(), "gen").unwrap().unwrap())
            .collect(),
    )
    .unwrap()
}

fn tcp(from: &str, to: &str, port: u16) -> Packet {
    Packet {
        saddr: from.parse().unwrap(),
        daddr: to.parse().unwrap(),
        l4proto: 6,
        dport: port,
    }
}

fn elements(rs: &nftpol::ruleset::Ruleset) -> usize {
    rs.sets().iter().map(|s| s.elements.len()).sum()
}

/// 300 pods x 1,000 ports: the concatenated form would hold 300,000 elements; the pairs
/// hold about 1,300, and the verdicts are those of the policy.
#[test]
fn a_peer_on_many_ports_costs_its_sum_not_its_product() {
    let index = index_of(&amplification(300, 1000));
    let rs = nftpol::compile(&index, Some("n1"));
    let n = elements(&rs);
    assert!(n < 2 * (300 + 1000), "{n} elements");
    assert!(rs
        .chains()
        .iter()
        .flat_map(|c| &c.rules)
        .any(|r| matches!(r.kind, RuleKind::LookupPair { .. })));
    // p0 (10.1.0.1) is on n1; p299 (10.1.2.119) a peer.
    assert!(forward_accepts(&rs, &tcp("10.1.2.119", "10.1.0.1", 1000)).unwrap());
    assert!(forward_accepts(&rs, &tcp("10.1.2.119", "10.1.0.1", 2998)).unwrap());
    assert!(!forward_accepts(&rs, &tcp("10.1.2.119", "10.1.0.1", 1001)).unwrap());
    assert!(!forward_accepts(&rs, &tcp("10.1.2.119", "10.1.0.1", 3000)).unwrap());
    assert!(!forward_accepts(&rs, &tcp("10.9.0.1", "10.1.0.1", 1000)).unwrap());
}

/// `compile` refuses a policy over `--max-elements`: exit 2, the policy and its size
/// named, the output file untouched; 0 lifts the limit, and the default lets it through.
/// So do `explain` and `graph`.
#[test]
fn compile_refuses_a_policy_over_the_budget() {
    let d = Dir::new();
    let text: String = amplification(50, 100)
        .iter()
        .map(|v| format!("---\n{}\n", serde_json::to_string(v).unwrap()))
        .collect();
    d.write("in.yaml", &text);
    d.write("out.nft", "before\n");
    let o = d.run(&[
        "compile",
        "--node",
        "n1",
        "--max-elements",
        "149",
        "--output-file",
        "out.nft",
        "in.yaml",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("NetworkPolicy t/big"), "{e}");
    assert!(e.contains("150 set elements"), "{e}");
    assert!(e.contains("--max-elements 149"), "{e}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("out.nft")).unwrap(),
        "before\n"
    );
    for budget in ["150", "0"] {
        let o = d.run(&[
            "compile",
            "--node",
            "n1",
            "--max-elements",
            budget,
            "in.yaml",
        ]);
        assert_eq!(code(&o), 0, "{budget}: {}", stderr(&o));
    }
    let o = d.run(&["compile", "--node", "n1", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // explain and graph judge by the graph: they refuse rather than explain an allow the
    // node would not enforce.
    let explain = [
        "explain", "--from", "t/p1", "--to", "t/p0", "--port", "tcp/1000",
    ];
    for args in [&explain[..], &["graph"]] {
        let mut args = args.to_vec();
        args.extend(["--max-elements", "149", "in.yaml"]);
        let o = d.run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("NetworkPolicy t/big"), "{}", stderr(&o));
        args.retain(|a| *a != "149" && *a != "--max-elements");
        let o = d.run(&args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
}

/// In a node's state the policy goes over the budget as its peer grows, and its pods are
/// then isolated with nothing allowed; as the peer shrinks it fits again and allows. The
/// incremental model equals a full build at every step.
#[test]
fn a_node_enforces_a_policy_over_the_budget_fail_closed_and_recovers() {
    let objs = amplification(40, 10);
    let options = Options {
        max_elements: Some(70),
        ..Default::default()
    };
    let mut state = NodeState::with_options(index_of(&objs), Some("n1"), options.clone());
    let full = |s: &NodeState| {
        nftpol::ruleset::build_with(&PolicyGraph::build_for(s.index(), s.node()), &options)
    };
    let allowed =
        |s: &NodeState| forward_accepts(s.model(), &tcp("10.1.0.79", "10.1.0.1", 1000)).unwrap();
    // 40 addresses + 10 ports: within the budget.
    assert!(state.over_budget().is_empty());
    assert!(allowed(&state));
    // 25 more pods: 65 + 10 > 70.
    for i in 40..65 {
        let v = amplification_pod(i, "n2");
        state
            .apply(object_from_value(v, "gen").unwrap().unwrap())
            .unwrap();
        assert_eq!(state.model(), &full(&state), "after adding p{i}");
    }
    assert_eq!(state.over_budget().get("t/big"), Some(&75));
    assert!(
        !allowed(&state),
        "over the budget, the policy allows nothing"
    );
    assert!(
        !forward_accepts(state.model(), &tcp("10.9.0.1", "10.1.0.1", 1000)).unwrap(),
        "and its pods stay isolated"
    );
    // Fewer ports: 65 + 1 fits again.
    let v = policy(vec![json!({"protocol": "TCP", "port": 1000})]);
    state
        .apply(object_from_value(v, "gen").unwrap().unwrap())
        .unwrap();
    assert_eq!(state.model(), &full(&state));
    assert!(state.over_budget().is_empty());
    assert!(allowed(&state));
}
