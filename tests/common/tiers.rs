//! Shared helpers for the tests of ClusterNetworkPolicy tiers in the ruleset (included
//! with `#[path = "common/tiers.rs"]`): until the parser fills `PodNode.tiers`, graphs get their tiers by
//! hand. Pods a, b, c in namespace x at 10.244.1.10/.20/.30 on node n1, whose address on
//! the pods' side is 10.244.1.1 (the routed topology's gateway); NetworkPolicy
//! `b-from-a` isolates b's ingress and allows a.
#![allow(dead_code)]

use nftpol::addr::AddrSet;
use nftpol::cnp::{Action, Tier};
use nftpol::graph::tiers::{TierOrigin, TierRule, TierRules};
use nftpol::graph::{PeerNode, PeerRef, PolicyGraph, PortRange, Ports};
use nftpol::index::Index;
use nftpol::input::object_from_value;
use nftpol::policy::{Direction, Protocol};
use serde_json::Value;

pub const NODE_ADDR: &str = "10.244.1.1";
pub const PORT: u16 = 8080;

pub fn addr(pod: &str) -> String {
    let last = match pod {
        "a" => 10,
        "b" => 20,
        "c" => 30,
        _ => panic!("no pod {pod}"),
    };
    format!("10.244.1.{last}")
}

fn pod(name: &str) -> Value {
    let ip = addr(name);
    let ip6 = format!("fd00:10:244:1::{}", &ip[9..]);
    crate::common::routed_pod(name, &ip).ip6(&ip6).value()
}

pub fn index() -> Index {
    let policy = crate::common::admit_only("b", "a").value();
    let objects = [pod("a"), pod("b"), pod("c"), policy]
        .into_iter()
        .map(|v| object_from_value(v, "test").unwrap().unwrap())
        .collect();
    Index::from_objects(objects).unwrap()
}

/// A new peer of `g` holding `addrs` (addresses or CIDRs).
pub fn peer(g: &mut PolicyGraph, addrs: &[&str]) -> PeerRef {
    let mut set = AddrSet::default();
    for a in addrs {
        let net = if a.contains('/') {
            a.parse().unwrap()
        } else {
            let ip: std::net::IpAddr = a.parse().unwrap();
            ipnet::IpNet::from(ip)
        };
        set = set.union(&AddrSet::from_block(&net, &[]));
    }
    g.peers.push(PeerNode {
        addrs: set,
        description: format!("test peer {addrs:?}"),
    });
    PeerRef::Peer(g.peers.len() - 1)
}

pub fn tcp(port: u16) -> Ports {
    Ports::Only(vec![PortRange {
        protocol: Protocol::Tcp,
        start: port,
        end: port,
    }])
}

pub fn rule(
    tier: Tier,
    dir: Direction,
    policy: &str,
    action: Action,
    peer: PeerRef,
    ports: Ports,
) -> TierRule {
    TierRule {
        action,
        peer,
        ports,
        origin: TierOrigin {
            policy: policy.into(),
            tier,
            priority: 10,
            direction: dir,
            rule: Some(0),
            rule_name: None,
            peer: Some(0),
            port_name: None,
        },
    }
}

/// Appends `rules` to the tier of pod `x/<name>` in `dir`.
pub fn add_rules(
    g: &mut PolicyGraph,
    name: &str,
    dir: Direction,
    tier: Tier,
    rules: Vec<TierRule>,
) {
    let pod = g
        .pods
        .get_mut(&("x".to_string(), name.to_string()))
        .unwrap();
    let side = match dir {
        Direction::Ingress => &mut pod.tiers.ingress,
        Direction::Egress => &mut pod.tiers.egress,
    };
    let t: &mut TierRules = match tier {
        Tier::Admin => &mut side.admin,
        Tier::Baseline => &mut side.baseline,
    };
    for r in rules {
        if !t.policies.contains(&r.origin.policy) {
            t.policies.push(r.origin.policy.clone());
        }
        t.rules.push(r);
    }
}

/// The scenario of the kernel test:
/// - c ingress, Admin: Deny from a on every protocol (TCP and ICMP dropped);
/// - b ingress, Admin: Pass from c (NetworkPolicy then denies it: it allows only a);
///   Baseline: Deny from a (never applies: NetworkPolicy isolates b's ingress);
/// - a ingress, Baseline: Deny from b (a is not isolated: b -> a dropped);
/// - a egress, Admin: Deny to the node on TCP/PORT (pod -> own node, the input hook).
pub fn scenario() -> PolicyGraph {
    use Action::*;
    use Direction::*;
    use Tier::*;
    let mut g = PolicyGraph::build_for(&index(), Some("n1"));
    let (pa, pb, pc) = (
        peer(&mut g, &[&addr("a")]),
        peer(&mut g, &[&addr("b")]),
        peer(&mut g, &[&addr("c")]),
    );
    let node = peer(&mut g, &[NODE_ADDR, "192.168.100.1"]);
    add_rules(
        &mut g,
        "c",
        Ingress,
        Admin,
        vec![rule(Admin, Ingress, "no-a-into-c", Deny, pa, Ports::Any)],
    );
    add_rules(
        &mut g,
        "b",
        Ingress,
        Admin,
        vec![rule(Admin, Ingress, "pass-c", Pass, pc, Ports::Any)],
    );
    add_rules(
        &mut g,
        "b",
        Ingress,
        Baseline,
        vec![rule(
            Baseline,
            Ingress,
            "default-deny-a",
            Deny,
            pa,
            Ports::Any,
        )],
    );
    add_rules(
        &mut g,
        "a",
        Ingress,
        Baseline,
        vec![rule(
            Baseline,
            Ingress,
            "default-deny-b",
            Deny,
            pb,
            Ports::Any,
        )],
    );
    add_rules(
        &mut g,
        "a",
        Egress,
        Admin,
        vec![rule(Admin, Egress, "no-node-port", Deny, node, tcp(PORT))],
    );
    g
}

/// [`scenario`] and more shapes for the backends: port ranges, IPv6, Pass shadowing,
/// an Accept on every protocol after a Deny on one port (boxes over protocol ranges),
/// and a Baseline with Accepts before its Deny.
pub fn rich() -> PolicyGraph {
    use Action::*;
    use Direction::*;
    use Tier::*;
    let mut g = scenario();
    let wide = peer(&mut g, &["10.0.0.0/8", "fd00::/16"]);
    let one = peer(&mut g, &["10.1.2.3", "fd00::7"]);
    let range = Ports::Only(vec![
        PortRange {
            protocol: Protocol::Tcp,
            start: 80,
            end: 90,
        },
        PortRange {
            protocol: Protocol::Udp,
            start: 53,
            end: 53,
        },
    ]);
    add_rules(
        &mut g,
        "c",
        Egress,
        Admin,
        vec![
            rule(Admin, Egress, "a1", Deny, one, tcp(443)),
            rule(Admin, Egress, "a1", Accept, one, Ports::Any),
            rule(Admin, Egress, "a2", Pass, wide, tcp(22)),
            rule(Admin, Egress, "a2", Accept, wide, range.clone()),
            rule(Admin, Egress, "a3", Deny, wide, Ports::Any),
        ],
    );
    add_rules(
        &mut g,
        "c",
        Egress,
        Baseline,
        vec![
            rule(Baseline, Egress, "b1", Accept, one, range),
            rule(Baseline, Egress, "b1", Deny, wide, Ports::Any),
        ],
    );
    g
}
