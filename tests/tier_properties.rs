//! Property tests for ClusterNetworkPolicy tiers in the ruleset: random Admin and
//! Baseline rule lists (Accept, Deny, Pass; peers of random addresses; every protocol or
//! port ranges) and random NetworkPolicy isolation on the pods of a small random cluster.
//! The model evaluator's verdict must equal `TierSide::decide` for every packet tried,
//! both directions, both families, TCP, UDP, SCTP, ICMP and ICMPv6, on the forward hook
//! and (pod -> its own node) on the input hook; and an incremental update must equal the
//! full build.

use std::collections::BTreeSet;
use std::net::IpAddr;

use nftpol::addr::AddrSet;
use nftpol::cnp::{Action, Tier};
use nftpol::graph::tiers::{PodTiers, TierOrigin, TierRule, TierRules, TierSide};
use nftpol::graph::{PeerNode, PeerRef, PodNode, PolicyGraph, PortRange, Ports};
use nftpol::index::Index;
use nftpol::input::{object_from_value, Object};
use nftpol::policy::{Direction, Protocol};
use nftpol::ruleset::eval::{forward_accepts, input_accepts, Packet};
use nftpol::synth::small::{cluster, EXT};
use proptest::prelude::*;

mod common;
#[path = "common/tiers.rs"]
mod tier_util;

/// splitmix64: the test's own randomness, from proptest's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

const NODES: [&str; 4] = [
    "192.168.100.1",
    "192.168.100.2",
    "fd00:100::1",
    "fd00:100::2",
];
const BLOCKS: [&str; 5] = [
    "10.0.0.0/24",
    "fd00::/16",
    "192.168.100.0/24",
    "0.0.0.0/0",
    "::/0",
];
const PROTOS: [u8; 5] = [6, 17, 132, 1, 58];
const PORTS: [u16; 6] = [0, 79, 80, 81, 443, 65535];

fn index_of(seed: u64) -> (Index, Vec<IpAddr>) {
    let c = cluster(seed);
    let objs: Vec<Object> = c
        .objects
        .iter()
        .map(|v| object_from_value(v.clone(), "gen").unwrap().unwrap())
        .collect();
    let mut addrs: Vec<IpAddr> = c
        .pods
        .iter()
        .flat_map(|(_, _, ips)| ips.iter().map(|ip| ip.parse().unwrap()))
        .collect();
    addrs.extend(
        EXT.iter()
            .chain(&NODES)
            .map(|a| a.parse::<IpAddr>().unwrap()),
    );
    (Index::from_objects(objs).unwrap(), addrs)
}

fn random_ports(rng: &mut Rng) -> Ports {
    if rng.chance(40) {
        return Ports::Any;
    }
    let n = 1 + rng.below(2);
    Ports::Only(
        (0..n)
            .map(|_| {
                let start = PORTS[rng.below(PORTS.len())];
                let end = match rng.below(3) {
                    0 => start,
                    1 => start.saturating_add(1),
                    _ => u16::MAX,
                };
                PortRange {
                    protocol: Protocol::ALL[rng.below(3)],
                    start,
                    end,
                }
            })
            .collect(),
    )
}

fn random_tier(rng: &mut Rng, tier: Tier, dir: Direction, peers: &[usize]) -> TierRules {
    let n = rng.below(4);
    let rules: Vec<TierRule> = (0..n)
        .map(|i| TierRule {
            action: [Action::Accept, Action::Deny, Action::Pass][rng.below(3)],
            peer: if rng.chance(10) {
                PeerRef::Any
            } else {
                PeerRef::Peer(peers[rng.below(peers.len())])
            },
            ports: random_ports(rng),
            origin: TierOrigin {
                policy: format!("cnp-{i}"),
                tier,
                priority: i as i32,
                direction: dir,
                rule: Some(0),
                rule_name: None,
                peer: Some(0),
                port_name: None,
            },
        })
        .collect();
    // Now and then a policy that selects the pod with no rule that matches anything.
    let policies = if n > 0 || rng.chance(20) {
        vec!["cnp-0".to_string()]
    } else {
        vec![]
    };
    TierRules {
        policies,
        rules,
        domains: Vec::new(),
    }
}

/// The cluster of `seed` with random peers, random tiers and some pods' NetworkPolicy
/// isolation taken away; and the addresses to try.
fn tiered_graph(seed: u64) -> (PolicyGraph, PolicyGraph, Vec<IpAddr>) {
    let (index, addrs) = index_of(seed);
    let plain = PolicyGraph::build(&index);
    let mut g = plain.clone();
    let mut rng = Rng(seed);
    let mut peers = Vec::new();
    for k in 0..5 {
        let picked = addrs.iter().copied().filter(|_| rng.chance(35));
        let mut set = AddrSet::from_ips(picked);
        if rng.chance(30) {
            let block = BLOCKS[rng.below(BLOCKS.len())].parse().unwrap();
            set = set.union(&AddrSet::from_block(&block, &[]));
        }
        peers.push(g.peers.len());
        g.peers.push(PeerNode {
            addrs: set,
            description: format!("random peer {k}"),
        });
    }
    for pod in g.pods.values_mut() {
        if rng.chance(25) {
            pod.ingress = None;
        }
        if rng.chance(25) {
            pod.egress = None;
        }
        if rng.chance(20) {
            continue;
        }
        let mut side = |dir| TierSide {
            admin: random_tier(&mut rng, Tier::Admin, dir, &peers),
            baseline: random_tier(&mut rng, Tier::Baseline, dir, &peers),
        };
        pod.tiers = PodTiers {
            ingress: side(Direction::Ingress),
            egress: side(Direction::Egress),
        };
    }
    (plain, g, addrs)
}

fn ports_match(ports: &Ports, l4: u8, port: u16) -> bool {
    match ports {
        Ports::Any => true,
        Ports::Only(list) => Protocol::ALL
            .into_iter()
            .find(|p| p.number() == l4)
            .is_some_and(|p| list.iter().any(|r| r.contains(p, port))),
    }
}

/// What the graph says of one end: `own_node` for the input hook, where NetworkPolicy
/// counts as allow.
fn side_allows(
    g: &PolicyGraph,
    pod: &PodNode,
    dir: Direction,
    remote: IpAddr,
    (l4, port): (u8, u16),
    own_node: bool,
) -> bool {
    let np = pod.isolation(dir).map(|iso| {
        own_node
            || iso
                .allows
                .iter()
                .any(|a| g.peer_contains(a.peer, remote) && ports_match(&a.ports, l4, port))
    });
    pod.tiers
        .side(dir)
        .decide(np, |r| {
            g.peer_contains(r.peer, remote) && ports_match(&r.ports, l4, port)
        })
        .allowed()
}

fn probes(rng: &mut Rng) -> Vec<(u8, u16)> {
    (0..3)
        .map(|_| {
            (
                PROTOS[rng.below(PROTOS.len())],
                PORTS[rng.below(PORTS.len())],
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_model_decides_as_the_tiers_do(seed in any::<u64>()) {
        let (_, g, addrs) = tiered_graph(seed);
        let rs = nftpol::ruleset::build(&g);
        let mut rng = Rng(seed ^ 0x5eed);
        let mut tried = 0;
        for &src in &addrs {
            for &dst in &addrs {
                if src == dst || src.is_ipv4() != dst.is_ipv4() {
                    continue;
                }
                let (from, to) = (g.pod_by_ip(src), g.pod_by_ip(dst));
                if from.is_none() && to.is_none() {
                    continue;
                }
                for probe in probes(&mut rng) {
                    let want = from.is_none_or(|p| side_allows(&g, p, Direction::Egress, dst, probe, false))
                        && to.is_none_or(|p| side_allows(&g, p, Direction::Ingress, src, probe, false));
                    let pkt = Packet { saddr: src, daddr: dst, l4proto: probe.0, dport: probe.1 };
                    prop_assert_eq!(forward_accepts(&rs, &pkt).unwrap(), want, "seed {} forward {:?}", seed, pkt);
                    tried += 1;
                }
            }
        }
        prop_assert!(tried > 0 || g.pods.is_empty());
        // Pod -> its own node, on the input hook.
        for pod in g.pods.values() {
            for &node in NODES.iter().chain(&EXT) {
                let node: IpAddr = node.parse().unwrap();
                for &src in pod.ips.iter().filter(|ip| ip.is_ipv4() == node.is_ipv4()) {
                    for probe in probes(&mut rng) {
                        let want = side_allows(&g, pod, Direction::Egress, node, probe, true);
                        let pkt = Packet { saddr: src, daddr: node, l4proto: probe.0, dport: probe.1 };
                        prop_assert_eq!(input_accepts(&rs, &pkt).unwrap(), want, "seed {} input {:?}", seed, pkt);
                    }
                }
            }
        }
    }

    #[test]
    fn an_update_with_tiers_equals_the_full_build(seed in any::<u64>()) {
        let (plain, g, _) = tiered_graph(seed);
        let opts = nftpol::ruleset::Options::default();
        let all: BTreeSet<(String, String)> = g.pods.keys().cloned().collect();
        // Tiers come, then go again.
        let mut model = nftpol::ruleset::build_with(&plain, &opts);
        nftpol::ruleset::rebuild_pods(&mut model, &g, &all, &opts);
        prop_assert_eq!(&model, &nftpol::ruleset::build_with(&g, &opts));
        nftpol::ruleset::rebuild_pods(&mut model, &plain, &all, &opts);
        prop_assert_eq!(&model, &nftpol::ruleset::build_with(&plain, &opts));
        // One pod at a time.
        let mut model = nftpol::ruleset::build_with(&plain, &opts);
        let mut half = plain.clone();
        for key in all.iter().take(all.len() / 2 + 1) {
            half.pods.insert(key.clone(), g.pods[key].clone());
            half.peers = g.peers.clone();
            nftpol::ruleset::rebuild_pods(&mut model, &half, &BTreeSet::from([key.clone()]), &opts);
            prop_assert_eq!(&model, &nftpol::ruleset::build_with(&half, &opts));
        }
    }
}

/// `c`'s tiers with `n` ClusterNetworkPolicies' worth of rules in each tier and
/// direction: the scenario's first, then `n - 1` policies of three rules each (Deny,
/// Accept, Pass, on their own addresses and ports) that the probes never hit.
fn with_cnps(n: usize) -> PolicyGraph {
    use tier_util::*;
    let mut g = scenario();
    let b = peer(&mut g, &[&addr("b")]);
    let other = peer(&mut g, &["10.9.0.0/16"]);
    add_rules(
        &mut g,
        "c",
        Direction::Ingress,
        Tier::Admin,
        vec![rule(
            Tier::Admin,
            Direction::Ingress,
            "cnp-0",
            Action::Accept,
            b,
            tcp(80),
        )],
    );
    add_rules(
        &mut g,
        "c",
        Direction::Ingress,
        Tier::Baseline,
        vec![rule(
            Tier::Baseline,
            Direction::Ingress,
            "cnp-0",
            Action::Deny,
            other,
            Ports::Any,
        )],
    );
    add_rules(
        &mut g,
        "c",
        Direction::Egress,
        Tier::Admin,
        vec![rule(
            Tier::Admin,
            Direction::Egress,
            "cnp-0",
            Action::Deny,
            other,
            tcp(443),
        )],
    );
    add_rules(
        &mut g,
        "c",
        Direction::Egress,
        Tier::Baseline,
        vec![rule(
            Tier::Baseline,
            Direction::Egress,
            "cnp-0",
            Action::Deny,
            other,
            Ports::Any,
        )],
    );
    for i in 1..n {
        let p = peer(&mut g, &[&format!("10.9.{}.{}", i / 200, i % 200 + 1)]);
        let name = format!("cnp-{i}");
        for dir in [Direction::Ingress, Direction::Egress] {
            for tier in [Tier::Admin, Tier::Baseline] {
                let rules = [Action::Deny, Action::Accept, Action::Pass]
                    .into_iter()
                    .enumerate()
                    .map(|(k, a)| rule(tier, dir, &name, a, p, tcp(1000 + (i * 3 + k) as u16)))
                    .collect();
                add_rules(&mut g, "c", dir, tier, rules);
            }
        }
    }
    g
}

/// What `policy-tests`' traverse bench counts (the evaluator's rules walked per new
/// connection) is the same with 1 and with 200 ClusterNetworkPolicies, for each way a
/// tiered pod's connection can be decided.
#[test]
fn rules_walked_do_not_grow_with_the_number_of_cnps() {
    use nftpol::ruleset::eval::{forward_walk, input_walk};
    use tier_util::addr;
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    // (what, source, destination, protocol, port, allowed)
    let probes = [
        ("Admin Accept into c", addr("b"), addr("c"), 6, 80, true),
        ("Admin Deny into c", addr("a"), addr("c"), 6, 80, false),
        ("Admin Deny into c, ICMP", addr("a"), addr("c"), 1, 0, false),
        (
            "no tier decides: allowed",
            addr("b"),
            addr("c"),
            17,
            53,
            true,
        ),
        (
            "c out, Admin Pass into b, NetworkPolicy denies",
            addr("c"),
            addr("b"),
            6,
            80,
            false,
        ),
        (
            "c to the node (input hook)",
            addr("c"),
            tier_util::NODE_ADDR.to_string(),
            6,
            22,
            true,
        ),
    ];
    let mut walked = Vec::new();
    for n in [1, 200] {
        let g = with_cnps(n);
        let side = &g.pods[&("x".to_string(), "c".to_string())].tiers.ingress;
        assert_eq!(
            side.admin.policies.len(),
            n + 1,
            "the scenario's and n more"
        );
        let rs = nftpol::ruleset::build(&g);
        let mut counts = Vec::new();
        for (what, src, dst, l4, port, allowed) in &probes {
            let pkt = Packet {
                saddr: ip(src),
                daddr: ip(dst),
                l4proto: *l4,
                dport: *port,
            };
            let w = if dst == tier_util::NODE_ADDR {
                input_walk(&rs, &pkt).unwrap()
            } else {
                forward_walk(&rs, &pkt).unwrap()
            };
            assert_eq!(w.accepted, *allowed, "{n} CNPs: {what}");
            counts.push(w.rules);
        }
        eprintln!("rules walked with {n} CNPs: {counts:?}");
        walked.push(counts);
    }
    assert_eq!(
        walked[0], walked[1],
        "rules walked per new connection, 1 vs 200 CNPs"
    );
}
