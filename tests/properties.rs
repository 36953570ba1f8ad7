//! Property tests on random small clusters:
//! - compile output is deterministic (twice the same bytes; input order does not matter);
//! - `explain` (which reads the policy graph) agrees with the ruleset model run packet by
//!   packet through the in-memory evaluator, node by node as the kernel would see it;
//!   also with ClusterNetworkPolicies (both tiers, every peer kind) and Node objects;
//! - one end judged on a node's graph (what the controller's verdict reader holds: only the
//!   node's pods) says what it says on the whole cluster's graph.

use std::net::IpAddr;

use nftpol::explain::{end_of, explain_in, Family, Query};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::{object_from_value, Object};
use nftpol::policy::{Direction, Protocol};
use nftpol::ruleset::eval::{forward_accepts, Packet};
use nftpol::synth::small::{cluster, cluster_policy, node, Cluster, EXT};
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
        explain_matches_the_kernel(&cluster(seed), seed)?;
    }

    /// The same with allows looked up as pairs (addresses, then ports): all of them
    /// (budget 0), or those that do not fit a tiny concatenated budget beside the rest.
    #[test]
    fn explain_agrees_with_the_ruleset_in_pairs(seed in any::<u64>(), budget in prop_oneof![Just(0usize), 1usize..6]) {
        explain_matches_the_ruleset(&cluster(seed), seed, Some(budget))?;
    }

    #[test]
    fn explain_agrees_with_the_ruleset_under_cluster_policies(seed in any::<u64>()) {
        let mut c = cluster(seed);
        let mut rng = Rng::new(seed ^ 0x7153);
        for n in 1..=2 {
            c.objects.push(node(&mut rng, n));
        }
        for i in 0..1 + rng.below(3) {
            c.objects.push(cluster_policy(&mut rng, &format!("cnp{i}"), 0));
        }
        explain_matches_the_kernel(&c, seed)?;
        a_node_graph_judges_its_pods_alike(&c, seed)?;
    }
}

/// Every pod's ends, judged on its node's graph and on the whole cluster's, for every
/// other endpoint in both directions.
fn a_node_graph_judges_its_pods_alike(c: &Cluster, seed: u64) -> Result<(), TestCaseError> {
    let index = index_of(&c.objects);
    let whole = PolicyGraph::build(&index);
    let mut others: Vec<IpAddr> = c
        .pods
        .iter()
        .flat_map(|(_, _, ips)| ips.iter().map(|ip| ip.parse().unwrap()))
        .collect();
    others.extend(EXT.iter().map(|ip| ip.parse::<IpAddr>().unwrap()));
    for node in ["n1", "n2"] {
        let mine = PolicyGraph::build_for(&index, Some(node));
        for (key, pod) in &mine.pods {
            let full = whole
                .pod(&key.0, &key.1)
                .expect("a node's pod is the cluster's");
            for &other in &others {
                for dir in [Direction::Ingress, Direction::Egress] {
                    for (protocol, port) in [(Protocol::Tcp, 80), (Protocol::Udp, 81)] {
                        let here = end_of(&index, &mine, pod, dir, other, protocol, port);
                        let there = end_of(&index, &whole, full, dir, other, protocol, port);
                        prop_assert_eq!(
                            &here,
                            &there,
                            "seed {} {}/{} {:?} {} {:?}/{}",
                            seed,
                            key.0,
                            key.1,
                            dir,
                            other,
                            protocol,
                            port
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// `explain` against the model evaluator for every pair of endpoints, families and three
/// probes, node by node as the kernel would see them.
fn explain_matches_the_kernel(c: &Cluster, seed: u64) -> Result<(), TestCaseError> {
    explain_matches_the_ruleset(c, seed, None)
}

/// As [`explain_matches_the_kernel`], with the ruleset built under `concat_budget` (see
/// `ruleset::Options`): `Some(0)` looks every allow with ports up as a pair.
fn explain_matches_the_ruleset(
    c: &Cluster,
    seed: u64,
    concat_budget: Option<usize>,
) -> Result<(), TestCaseError> {
    let index = index_of(&c.objects);
    let graph = PolicyGraph::build(&index);
    let opts = nftpol::ruleset::Options {
        concat_budget,
        ..Default::default()
    };
    let compile =
        |node| nftpol::ruleset::build_with(&PolicyGraph::build_for(&index, Some(node)), &opts);
    let (n1, n2) = (compile("n1"), compile("n2"));
    let ruleset_of = |node: &str| if node == "n1" { &n1 } else { &n2 };
    // Endpoints: (name for explain, node if a pod, address) per family.
    for (fam, v6) in [(Family::V4, false), (Family::V6, true)] {
        let mut ends: Vec<(String, Option<String>, IpAddr)> = c
            .pods
            .iter()
            .map(|(id, node, ips)| {
                (
                    id.clone(),
                    Some(node.clone()),
                    ips[v6 as usize].parse().unwrap(),
                )
            })
            .collect();
        ends.push((
            EXT[v6 as usize].to_string(),
            None,
            EXT[v6 as usize].parse().unwrap(),
        ));
        let other_node = if v6 { "fd00:100::2" } else { "192.168.100.2" };
        ends.push((other_node.to_string(), None, other_node.parse().unwrap()));
        for (from, from_node, saddr) in &ends {
            for (to, to_node, daddr) in &ends {
                if from == to || (from_node.is_none() && to_node.is_none()) {
                    continue;
                }
                // A pod and its own node never meet on the forward hook.
                if (from_node.as_deref() == Some("n2") && to == other_node)
                    || (to_node.as_deref() == Some("n2") && from == other_node)
                {
                    continue;
                }
                for (proto, l4, p) in [("tcp", 6u8, 80u16), ("udp", 17, 81), ("tcp", 90, 90)] {
                    let p = if l4 == 90 { 90 } else { p };
                    let l4 = if l4 == 90 { 6 } else { l4 };
                    let q = Query::parse(from, to, &format!("{proto}/{p}"), Some(fam)).unwrap();
                    let e = explain_in(&index, &graph, &q).unwrap();
                    let pkt = Packet {
                        saddr: *saddr,
                        daddr: *daddr,
                        l4proto: l4,
                        dport: p,
                    };
                    let mut kernel = true;
                    if let Some(n) = from_node {
                        kernel &= forward_accepts(ruleset_of(n), &pkt).unwrap();
                    }
                    if let Some(n) = to_node {
                        if from_node.as_ref() != Some(n) {
                            kernel &= forward_accepts(ruleset_of(n), &pkt).unwrap();
                        }
                    }
                    prop_assert_eq!(
                        e.allowed,
                        kernel,
                        "seed {} {} -> {} {}/{}\n{}\n{}",
                        seed,
                        from,
                        to,
                        proto,
                        p,
                        e,
                        PolicyGraph::build(&index)
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// Audit mode (issue 27): with a random part of the policies annotated
    /// `nftpol.io/mode: audit`, the ruleset (its audit chains included) enforces exactly
    /// what the other policies alone enforce; and `explain`'s audited verdict, where it
    /// gives one, is what enforcing every policy would give.
    #[test]
    fn audited_policies_change_no_verdict_and_explain_their_own(seed in any::<u64>()) {
        let mut c = cluster(seed);
        let mut rng = Rng::new(seed ^ 0xa0d1);
        for n in 1..=2 {
            c.objects.push(node(&mut rng, n));
        }
        for i in 0..rng.below(3) {
            c.objects.push(cluster_policy(&mut rng, &format!("cnp{i}"), 0));
        }
        let all_enforced = index_of(&c.objects);
        let mut audited = Cluster { objects: c.objects.clone(), pods: c.pods.clone() };
        let mut without = Cluster { objects: Vec::new(), pods: c.pods.clone() };
        for v in &mut audited.objects {
            let policy = matches!(v["kind"].as_str(), Some("NetworkPolicy" | "ClusterNetworkPolicy"));
            if policy && rng.chance(40) {
                v["metadata"]["annotations"] = serde_json::json!({"nftpol.io/mode": "audit"});
                continue;
            }
            without.objects.push(v.clone());
        }
        // The kernel's verdicts are explain's (enforced) on the annotated cluster ...
        explain_matches_the_kernel(&audited, seed)?;
        // ... which are those of the cluster without the audited policies; and the
        // audited verdict is that of every policy enforced.
        let (audited_index, without_index) = (index_of(&audited.objects), index_of(&without.objects));
        let graphs = [&audited_index, &without_index, &all_enforced].map(PolicyGraph::build);
        let ends: Vec<&String> = c.pods.iter().map(|(id, _, _)| id).collect();
        for from in &ends {
            for to in &ends {
                if from == to {
                    continue;
                }
                let q = Query::parse(from, to, "tcp/80", Some(Family::V4)).unwrap();
                let e = explain_in(&audited_index, &graphs[0], &q).unwrap();
                let w = explain_in(&without_index, &graphs[1], &q).unwrap();
                let all = explain_in(&all_enforced, &graphs[2], &q).unwrap();
                prop_assert_eq!(e.allowed, w.allowed, "seed {} {} -> {}: enforced\n{}", seed, from, to, e);
                let audited_verdict = e.audited.as_ref().map_or(e.allowed, |a| a.explanation.allowed);
                prop_assert_eq!(audited_verdict, all.allowed, "seed {} {} -> {}: audited\n{}\n{}", seed, from, to, e, all);
                if let Some(a) = &e.audited {
                    prop_assert!(!a.policies.is_empty(), "seed {} {} -> {}: names no policy\n{}", seed, from, to, e);
                }
            }
        }
    }
}
