#![cfg(feature = "netlink")]
//! Incremental updates: random sequences of models; the first is loaded by full sync,
//! each next one by `apply_ops(diff(prev, next))` in one batch. After every step the
//! kernel's listing equals a full sync of that step's model in a fresh namespace, and
//! read-back finds no drift. Also: drift detection and repair after `nft` tampering.

mod common;
#[path = "common/tiers.rs"]
mod tiers;
#[path = "common/netlink.rs"]
mod util;

use std::net::{Ipv4Addr, Ipv6Addr};

use nftpol::netlink::{diff, drift, Op};
use nftpol::ruleset::model::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use util::*;

const T: &str = "nftpol";
const PODS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// What one pod looks like in a generated model.
#[derive(Debug, Clone)]
struct PodSpec {
    /// Indices of /16 blocks 10.(2k).0.0 (k < 16) with the /24 count in each.
    any4: Vec<(u8, u8)>,
    /// Whether to add the address-space edges 0.0.0.0/8 and 255.0.0.0/8.
    edges: bool,
    /// (block k, proto tcp?, port start, port len) for the ports4 pipapo set.
    ports4: Vec<(u8, bool, u16, u16)>,
    /// fd00:k::/32 blocks for any6.
    any6: Vec<u8>,
    /// A comment on the final drop rule (rule changes exercise chain replacement).
    drop_comment: bool,
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        prop::collection::btree_map(0u8..16, 0u8..=255, 0..5),
        any::<bool>(),
        prop::collection::btree_map(0u8..16, (any::<bool>(), 0u16..65000, 0u16..600), 0..4),
        prop::collection::btree_set(0u8..8, 0..3),
        any::<bool>(),
    )
        .prop_map(|(any4, edges, ports4, any6, drop_comment)| PodSpec {
            any4: any4.into_iter().collect(),
            edges,
            ports4: ports4
                .into_iter()
                .map(|(k, (tcp, p, l))| (k, tcp, p, l))
                .collect(),
            any6: any6.into_iter().collect(),
            drop_comment,
        })
}

fn model_strategy() -> impl Strategy<Value = Ruleset> {
    prop::collection::vec(prop::option::of(pod_spec()), PODS.len()).prop_map(|pods| build(&pods))
}

fn build(pods: &[Option<PodSpec>]) -> Ruleset {
    use IpFamily::{V4, V6};
    let mut rs = empty_ruleset(T);
    let (mut map4, mut map6) = (Vec::new(), Vec::new());
    for (i, spec) in pods.iter().enumerate() {
        let Some(p) = spec else { continue };
        let pod = PODS[i];
        let chain_name = format!("ingress/x/{pod}");
        let mut any4: Vec<Element> = p
            .any4
            .iter()
            .map(|&(k, n)| {
                el(vec![Field::Ipv4(
                    Ipv4Addr::new(10, 2 * k, 0, 0),
                    Ipv4Addr::new(10, 2 * k, n, 255),
                )])
            })
            .collect();
        if p.edges {
            any4.push(el(vec![v4("0.0.0.0", "0.255.255.255")]));
            any4.push(el(vec![v4("255.0.0.0", "255.255.255.255")]));
        }
        let ports4 = p
            .ports4
            .iter()
            .map(|&(k, tcp, port, len)| {
                let block = Field::Ipv4(
                    Ipv4Addr::new(10, 2 * k, 0, 0),
                    Ipv4Addr::new(10, 2 * k, 255, 255),
                );
                let proto = if tcp { 6 } else { 17 };
                port_el(block, proto, (port, port.saturating_add(len)))
            })
            .collect();
        let any6 = p
            .any6
            .iter()
            .map(|&k| {
                let a = Ipv6Addr::new(0xfd00, k as u16, 0, 0, 0, 0, 0, 0);
                let b = Ipv6Addr::new(
                    0xfd00, k as u16, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
                );
                el(vec![Field::Ipv6(a, b)])
            })
            .collect();
        let sname = |k: &str| format!("{chain_name}/{k}");
        rs.put_set(set(&sname("any4"), addr_key(V4), true, None, any4));
        rs.put_set(set(&sname("ports4"), ports_key(V4), true, None, ports4));
        rs.put_set(set(
            &sname("any6"),
            addr_key(V6),
            true,
            Some("v6 peers"),
            any6,
        ));
        let accept =
            |family, ports, k: &str| lookup(family, Addr::Saddr, ports, &sname(k), Verdict::Accept);
        let drop = if p.drop_comment {
            Rule::with_comment(
                RuleKind::Verdict(Verdict::Drop),
                format!("ingress of x/{pod} not allowed"),
            )
        } else {
            verdict(Verdict::Drop)
        };
        let comment = format!("pod x/{pod}");
        rs.put_chain(chain(
            &chain_name,
            Some(&comment),
            vec![
                accept(V4, false, "any4"),
                accept(V4, true, "ports4"),
                accept(V6, false, "any6"),
                drop,
            ],
        ));
        let ip4 = Ipv4Addr::new(10, 244, 1, 11 + i as u8);
        let ip6 = Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 0x11 + i as u16);
        map4.push((Field::Ipv4(ip4, ip4), Verdict::Jump(chain_name.clone())));
        map6.push((Field::Ipv6(ip6, ip6), Verdict::Jump(chain_name)));
    }
    rs.merge_maps(vec![
        map("ingress4", KeyType::Ipv4Addr, map4),
        map("ingress6", KeyType::Ipv6Addr, map6),
    ]);
    rs.put_chain(forward(vec![Rule::new(RuleKind::Jump("dispatch".into()))]));
    rs.put_chain(chain(
        "dispatch",
        None,
        vec![
            Rule::new(RuleKind::CtEstablishedAccept),
            Rule::new(RuleKind::Icmpv6NdAccept),
            vmap(IpFamily::V4, Addr::Daddr, "ingress4"),
            vmap(IpFamily::V6, Addr::Daddr, "ingress6"),
        ],
    ));
    normalize(&mut rs);
    rs
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn incremental_batches_match_full_sync() {
    require_root_and_nft("incremental_batches_match_full_sync");
    let cases: u32 = std::env::var("NLT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop::collection::vec(model_strategy(), 2..6);
    let steps_total = std::cell::Cell::new(0usize);
    let ops_total = std::cell::Cell::new(0usize);
    runner
        .run(&strategy, |models| {
            let live = Netns::create();
            live.with(|b| b.full_sync(&models[0]))
                .map_err(|e| TestCaseError::fail(format!("full sync: {e}")))?;
            for w in models.windows(2) {
                let (prev, next) = (&w[0], &w[1]);
                let ops = diff(prev, next);
                prop_assert!(
                    !ops.iter().any(|o| matches!(o, Op::FullSync(_))),
                    "generator only makes in-place changes"
                );
                ops_total.set(ops_total.get() + ops.len());
                steps_total.set(steps_total.get() + 1);
                live.with(|b| b.apply_ops(T, &ops))
                    .map_err(|e| TestCaseError::fail(format!("apply_ops {ops:#?}: {e}")))?;
                let fresh = Netns::create();
                fresh
                    .with(|b| b.full_sync(next))
                    .map_err(|e| TestCaseError::fail(format!("fresh sync: {e}")))?;
                let (got, want) = (live.canonical_listing(T), fresh.canonical_listing(T));
                prop_assert_eq!(
                    &got,
                    &want,
                    "listing after incremental update differs; ops: {:#?}",
                    ops
                );
                let rb = live
                    .with(|b| b.read_table(T))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(drift(next, rb.as_ref()), None);
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "incremental: {cases} sequences, {} incremental batches, {} ops, all equal to full sync",
        steps_total.get(),
        ops_total.get()
    );
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn no_change_sends_nothing() {
    require_root_and_nft("no_change_sends_nothing");
    let m = build(&[None, None, None, None, None]);
    let ns = Netns::create();
    ns.with(|b| b.full_sync(&m)).unwrap();
    let stats = ns.with(|b| b.apply_ops(T, &diff(&m, &m))).unwrap();
    assert_eq!(stats.messages, 0);
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn drift_is_detected_and_repaired() {
    require_root_and_nft("drift_is_detected_and_repaired");
    let spec = PodSpec {
        any4: vec![(1, 3), (5, 0)],
        edges: true,
        ports4: vec![(2, true, 80, 10)],
        any6: vec![1],
        drop_comment: true,
    };
    let m = build(&[Some(spec.clone()), None, Some(spec), None, None]);
    let ns = Netns::create();
    ns.with(|b| b.full_sync(&m)).unwrap();
    let live = ns.with(|b| b.read_table(T)).unwrap();
    assert_eq!(drift(&m, live.as_ref()), None);

    // Someone deletes one element with nft.
    ns.nft(&[
        "delete",
        "element",
        "inet",
        T,
        "ingress/x/a/any4",
        "{ 10.2.0.0-10.2.3.255 }",
    ]);
    let live = ns.with(|b| b.read_table(T)).unwrap();
    let d = drift(&m, live.as_ref()).expect("element deletion must be seen");
    eprintln!("drift seen: {d}");
    assert!(d.contains("ingress/x/a/any4"), "{d}");
    ns.with(|b| b.full_sync(&m)).unwrap();
    assert_eq!(
        drift(&m, ns.with(|b| b.read_table(T)).unwrap().as_ref()),
        None,
        "repaired"
    );

    // A map entry removed.
    ns.nft(&[
        "delete",
        "element",
        "inet",
        T,
        "ingress4",
        "{ 10.244.1.13 }",
    ]);
    let d = drift(&m, ns.with(|b| b.read_table(T)).unwrap().as_ref()).expect("map drift");
    assert!(d.contains("ingress4"), "{d}");

    // A rule added by hand.
    ns.with(|b| b.full_sync(&m)).unwrap();
    ns.nft(&["add", "rule", "inet", T, "dispatch", "accept"]);
    let d = drift(&m, ns.with(|b| b.read_table(T)).unwrap().as_ref()).expect("rule drift");
    assert!(d.contains("dispatch"), "{d}");

    // Everything flushed.
    ns.nft(&["flush", "ruleset"]);
    let live = ns.with(|b| b.read_table(T)).unwrap();
    assert!(live.is_none());
    assert!(drift(&m, live.as_ref()).is_some());
    ns.with(|b| b.full_sync(&m)).unwrap();
    assert_eq!(
        drift(&m, ns.with(|b| b.read_table(T)).unwrap().as_ref()),
        None,
        "repaired after flush"
    );
}

/// A concatenated interval set that loses many elements is replaced whole (unbind, delete,
/// create, rebind in one batch) instead of deleting elements one by one, which pipapo makes
/// quadratic. The kernel ends up exactly where a full sync would put it.
#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn big_removals_replace_the_set() {
    require_root_and_nft("big_removals_replace_the_set");
    let ports = |n: u32, skip_odd: bool| -> Ruleset {
        let elements: Vec<Element> = (0..n)
            .filter(|i| !(skip_odd && i % 2 == 1))
            .map(|i| {
                let a = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
                port_el(host4(&a), 6, (80, 80))
            })
            .collect();
        let mut rs = empty_ruleset(T);
        rs.put_set(set(
            "ingress/x/a/ports4",
            ports_key(IpFamily::V4),
            true,
            None,
            elements,
        ));
        rs.put_chain(chain(
            "ingress/x/a",
            None,
            vec![
                lookup(
                    IpFamily::V4,
                    Addr::Saddr,
                    true,
                    "ingress/x/a/ports4",
                    Verdict::Accept,
                ),
                verdict(Verdict::Drop),
            ],
        ));
        rs
    };
    let before = ports(4000, false);
    let after = ports(4000, true);
    let ops = diff(&before, &after);
    assert!(
        ops.iter()
            .any(|o| matches!(o, Op::DelSet(n) if n == "ingress/x/a/ports4")),
        "{ops:?}"
    );
    assert!(!ops.iter().any(|o| matches!(o, Op::DelSetElements { .. })));
    let ns = Netns::create();
    ns.with(|b| b.full_sync(&before)).unwrap();
    ns.with(|b| b.apply_ops(T, &ops)).unwrap();
    let fresh = Netns::create();
    fresh.with(|b| b.full_sync(&after)).unwrap();
    assert_eq!(ns.canonical_listing(T), fresh.canonical_listing(T));
}

/// ClusterNetworkPolicy steps, each sent as the controller sends it (a diff of the pods'
/// views, base chains included): no tiers -> tiers (the input hook appears) -> more tiers
/// -> a peer gains an address (set elements only) -> no tiers (the input hook goes). After
/// every step the listing equals a full sync of the step's model and nothing drifts.
#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn tier_changes_are_incremental() {
    require_root_and_nft("tier_changes_are_incremental");
    let plain = nftpol::graph::PolicyGraph::build_for(&tiers::index(), Some("n1"));
    let scenario = tiers::scenario();
    let mut grown = scenario.clone();
    // The first peer (pod a) gains an address: the peers' sets change, no rule does.
    let first = grown.peers.len() - 4;
    grown.peers[first].addrs = grown.peers[first]
        .addrs
        .union(&nftpol::addr::AddrSet::from_ips(["10.244.1.40"
            .parse()
            .unwrap()]));
    let steps = [plain.clone(), scenario, tiers::rich(), grown.clone(), plain];
    let models: Vec<Ruleset> = steps.iter().map(nftpol::ruleset::build).collect();
    let pods: std::collections::BTreeSet<(String, String)> =
        steps[0].pods.keys().cloned().collect();
    let live = Netns::create();
    live.with(|b| b.full_sync(&models[0])).unwrap();
    for (i, w) in models.windows(2).enumerate() {
        let (prev, next) = (&w[0], &w[1]);
        let objects = nftpol::ruleset::PodObjects::of(&pods, &[prev, next]);
        let ops = nftpol::netlink::diff_views(
            &nftpol::ruleset::View::pods(prev, &objects),
            &nftpol::ruleset::View::pods(next, &objects),
        )
        .unwrap_or_else(|| panic!("step {i}: tier change needs a full sync"));
        live.with(|b| b.apply_ops(T, &ops))
            .unwrap_or_else(|e| panic!("step {i}: apply_ops {ops:#?}: {e}"));
        let fresh = Netns::create();
        fresh.with(|b| b.full_sync(next)).unwrap();
        assert_same(
            &format!("tier step {i}"),
            "nft list",
            &live.canonical_listing(T),
            &fresh.canonical_listing(T),
        );
        let rb = live.with(|b| b.read_table(T)).unwrap();
        assert_eq!(drift(next, rb.as_ref()), None, "tier step {i}: drift");
    }
    // A peer change alone is set elements, nothing else.
    let ops = diff(&models[1], &nftpol::ruleset::build(&grown));
    assert!(!ops.is_empty());
    assert!(
        ops.iter()
            .all(|o| matches!(o, Op::AddSetElements { .. } | Op::DelSetElements { .. })),
        "a tier peer change must be set elements only: {ops:#?}"
    );
}
