#![cfg(feature = "netlink")]
//! The learned sets of `domainNames` rules and the DNS proxy's liveness set hold elements
//! that are not the model's (the proxy adds them with `Backend::learn`, the controller
//! with `Backend::keep_alive`): an incremental batch, a full sync (resync) and the drift
//! check leave them as they are while the rule stands; the batch that removes the rule
//! deletes its sets. On `examples/domain-names.yaml`, in a scratch network namespace.

#[path = "common/netlink.rs"]
mod util;

use std::net::IpAddr;
use std::time::Duration;

use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::netlink::{diff, drift, LearnedElem, LiveTable};
use nftpol::ruleset::{self, names, DnsSteering, Options, Ruleset};
use util::*;

const T: &str = names::TABLE;

fn objects(extra: &str, without_cnp: bool) -> Ruleset {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/domain-names.yaml");
    let mut text = std::fs::read_to_string(path).unwrap();
    if without_cnp {
        // The example's ClusterNetworkPolicy is its one document of that kind.
        text = text
            .split("\n---\n")
            .filter(|d| !d.contains("kind: ClusterNetworkPolicy"))
            .collect::<Vec<_>>()
            .join("\n---\n");
    }
    text.push_str(extra);
    let index =
        Index::from_objects(nftpol::input::parse_str(&text, "domain-names.yaml").unwrap()).unwrap();
    let graph = PolicyGraph::build_for(&index, Some("node-1"));
    let opts = Options {
        dns: Some(DnsSteering {
            servers: vec![
                "10.96.0.10/32".parse().unwrap(),
                "fd00:96::a/128".parse().unwrap(),
            ],
            ..Default::default()
        }),
        ..Options::default()
    };
    ruleset::build_with(&graph, &opts)
}

const WEB_1: &str = "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\nspec: {nodeName: node-1}\nstatus: {phase: Running, podIP: 10.244.1.12, podIPs: [{ip: 10.244.1.12}]}\n";

fn elements(live: &LiveTable, set: &str) -> Option<Vec<Vec<u8>>> {
    let s = live.sets.iter().find(|s| s.name == set)?;
    Some(s.elements.iter().map(|e| e.key.clone()).collect())
}

#[test]
#[ignore = "needs root: programs nftables over netlink in a scratch network namespace"]
fn learned_and_alive_elements_survive_batches_and_resyncs() {
    require_root_and_nft("learned_and_alive_elements_survive_batches_and_resyncs");
    let learned4 = names::learned_set("shop-egress", 2, false);
    let (a, b, c) = (objects("", false), objects(WEB_1, false), objects("", true));
    assert!(a.set(&learned4).is_some() && c.set(&learned4).is_none());
    let ns = Netns::create();
    let addr: IpAddr = "93.184.216.34".parse().unwrap();
    let read = |ns: &Netns| ns.with(|be| be.read_table(T)).unwrap().unwrap();
    ns.with(|be| {
        be.full_sync(&a).unwrap();
        let elem = LearnedElem {
            set: learned4.clone(),
            addr,
            timeout: Duration::from_secs(600),
        };
        be.learn(T, &[elem]).unwrap();
        be.keep_alive(T, names::DNS_ALIVE_SET, 53, Duration::from_secs(600))
            .unwrap();
    });
    let want_learned = Some(vec![vec![93, 184, 216, 34]]);
    let want_alive = Some(vec![53u16.to_be_bytes().to_vec()]);
    let live = read(&ns);
    assert_eq!(elements(&live, &learned4), want_learned);
    assert_eq!(
        drift(&a, Some(&live)),
        None,
        "the proxy's elements are no drift"
    );

    // An incremental batch (a pod more, in the set of steered pods): kept.
    let ops = diff(&a, &b);
    assert!(!ops.is_empty());
    ns.with(|be| be.apply_ops(T, &ops)).unwrap();
    let live = read(&ns);
    assert_eq!(elements(&live, &learned4), want_learned);
    assert_eq!(elements(&live, names::DNS_ALIVE_SET), want_alive);
    assert_eq!(drift(&b, Some(&live)), None);

    // A resync (the table replaced whole): kept, with the time they had left.
    ns.with(|be| be.full_sync(&b)).unwrap();
    let live = read(&ns);
    assert_eq!(elements(&live, &learned4), want_learned);
    assert_eq!(elements(&live, names::DNS_ALIVE_SET), want_alive);
    let left = live
        .sets
        .iter()
        .find(|s| s.name == learned4)
        .unwrap()
        .elements[0]
        .expires_ms
        .unwrap();
    assert!(left > 0 && left <= 600_000, "{left}");
    assert_eq!(drift(&b, Some(&live)), None);

    // The rule goes: its sets and the steering go with it.
    ns.with(|be| be.apply_ops(T, &diff(&b, &c))).unwrap();
    let live = read(&ns);
    assert_eq!(elements(&live, &learned4), None);
    assert_eq!(elements(&live, names::DNS_ALIVE_SET), None);
    assert_eq!(drift(&c, Some(&live)), None);
}
