#![cfg(feature = "netlink")]
//! The traps of programming nftables over netlink, one test each: interval flag,
//! concatenated keys, verdict-map data, lookup dreg, a batch larger than a page going in
//! one sendmsg atomically, every sequence number acked, an error mapped to its object,
//! ENOBUFS (acks lost: outcome unknown, a full sync repairs),
//! and deterministic encoding.

#[path = "common/netlink.rs"]
mod util;

use nftpol::netlink::{encode_full, NetlinkError};
use nftpol::ruleset::model::*;
use util::*;

const T: &str = "nftpol";

fn pod_model(peers: Vec<Element>) -> Ruleset {
    let mut rs = empty_ruleset(T);
    rs.put_set(set(
        "ingress/x/a/any4",
        addr_key(IpFamily::V4),
        true,
        None,
        peers,
    ));
    rs.put_set(set(
        "ingress/x/a/ports4",
        ports_key(IpFamily::V4),
        true,
        None,
        vec![port_el(v4("10.0.0.0", "10.255.255.255"), 6, (80, 90))],
    ));
    rs.put_map(map(
        "ingress4",
        KeyType::Ipv4Addr,
        vec![(host4("10.244.1.11"), Verdict::Jump("ingress/x/a".into()))],
    ));
    let accept = |ports, set: &str| lookup(IpFamily::V4, Addr::Saddr, ports, set, Verdict::Accept);
    rs.merge_chains(vec![
        forward(vec![vmap(IpFamily::V4, Addr::Daddr, "ingress4")]),
        chain(
            "ingress/x/a",
            None,
            vec![
                accept(false, "ingress/x/a/any4"),
                accept(true, "ingress/x/a/ports4"),
                verdict(Verdict::Drop),
            ],
        ),
    ]);
    normalize(&mut rs);
    rs
}

/// `n` disjoint, non-adjacent /32s starting at 11.0.0.0 (every other address).
fn many_peers(n: u32) -> Vec<Element> {
    (0..n)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0b00_0000 + 2 * i);
            el(vec![Field::Ipv4(a, a)])
        })
        .collect()
}

#[test]
fn encoding_is_deterministic() {
    let rs = pod_model(many_peers(1000));
    let a = encode_full(&rs, 7);
    let b = encode_full(&rs.clone(), 7);
    assert_eq!(
        a.bytes, b.bytes,
        "same model, same first sequence number: same bytes"
    );
    assert_eq!(a.acked, b.acked);
    // Every message but batch begin/end asks for an ack, numbered consecutively.
    assert_eq!(a.acked.len(), a.messages - 2);
    for (i, (seq, _)) in a.acked.iter().enumerate() {
        assert_eq!(*seq, 8 + i as u32);
    }
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn interval_concat_vmap_and_dreg_reach_the_kernel() {
    require_root_and_nft("interval_concat_vmap_and_dreg_reach_the_kernel");
    let rs = pod_model(vec![el(vec![v4("192.168.1.1", "192.168.1.9")])]);
    let ns = Netns::create();
    ns.with(|b| b.full_sync(&rs)).expect("full sync");
    let live = ns
        .with(|b| b.read_table(T))
        .expect("read back")
        .expect("table exists");
    let any4 = live
        .sets
        .iter()
        .find(|s| s.name == "ingress/x/a/any4")
        .unwrap();
    assert_eq!(any4.flags, 0x4, "interval flag (NFT_SET_INTERVAL)");
    // rbtree: start element and interval-end element at end + 1, plus nft's pad at 0.
    assert_eq!(any4.elements.len(), 3);
    assert!(any4
        .elements
        .iter()
        .any(|e| e.key == [192, 168, 1, 10] && e.flags == 1));
    let ports = live
        .sets
        .iter()
        .find(|s| s.name == "ingress/x/a/ports4")
        .unwrap();
    assert_eq!(ports.flags, 0x84, "NFT_SET_CONCAT | NFT_SET_INTERVAL");
    assert_eq!(ports.key_len, 12, "each field padded to a 32-bit register");
    assert_eq!(
        ports.elements[0].key_end.as_deref(),
        Some(&[10, 255, 255, 255, 6, 0, 0, 0, 0, 90, 0, 0][..])
    );
    let map = live.sets.iter().find(|s| s.name == "ingress4").unwrap();
    assert_eq!(map.flags, 0x8, "NFT_SET_MAP");
    assert_eq!(
        map.elements[0].verdict,
        Some((-3i32 as u32, Some("ingress/x/a".to_string())))
    );
    let listing = ns.listing(T);
    assert!(
        listing.contains("ip daddr vmap @ingress4"),
        "lookup with dreg 0 lists as a vmap:\n{listing}"
    );
    assert!(listing.contains("192.168.1.1-192.168.1.9"), "{listing}");
    assert!(ns
        .debug_listing(T)
        .contains("lookup reg 1 set ingress4 dreg 0"));
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn huge_batch_is_one_sendmsg_and_atomic() {
    require_root_and_nft("huge_batch_is_one_sendmsg_and_atomic");
    let ns = Netns::create();
    let before = pod_model(vec![el(vec![v4("192.168.1.1", "192.168.1.9")])]);
    ns.with(|b| b.full_sync(&before)).expect("first sync");
    let before_listing = ns.listing(T);

    // 50,000 elements (100,000 rbtree elements on the wire), then a last rule that jumps
    // to a chain that does not exist: the last message of the batch fails.
    let mut broken = pod_model(many_peers(50_000));
    let last = broken.chains().last().unwrap().name.clone();
    assert!(broken.edit_chain(&last, |c| c
        .rules
        .push(Rule::new(RuleKind::Jump("no-such-chain".into())))));
    let batch = encode_full(&broken, 1000);
    assert!(
        batch.bytes.len() > 1 << 20,
        "batch is {} bytes, want > 1 MiB",
        batch.bytes.len()
    );
    let err = ns.with(|b| b.full_sync(&broken)).expect_err("must fail");
    match &err {
        NetlinkError::Kernel { first, .. } => {
            assert_eq!(first.errno, libc_enoent(), "{err}");
            assert!(
                first.object.contains("chain ingress/x/a")
                    && first.object.contains("no-such-chain"),
                "{err}"
            );
            let last = &batch.acked.last().unwrap().1;
            assert_eq!(
                &first.object, last,
                "the failing message is the last one: {err}"
            );
        }
        other => panic!("want a kernel error, got {other}"),
    }
    assert_eq!(
        ns.listing(T),
        before_listing,
        "nothing of the failed batch applied"
    );

    // The same batch without the bad rule goes through whole, in one sendmsg, every
    // message acked.
    let good = pod_model(many_peers(50_000));
    let stats = ns.with(|b| b.full_sync(&good)).expect("big sync");
    let enc = encode_full(&good, 1);
    assert_eq!(stats.bytes, enc.bytes.len());
    assert_eq!(stats.acked, enc.messages - 2, "every sequence number acked");
    eprintln!(
        "50,000 elements: {} messages, {} bytes, {:?}",
        stats.messages, stats.bytes, stats.elapsed
    );
    let live = ns.with(|b| b.read_table(T)).unwrap();
    assert_eq!(nftpol::netlink::drift(&good, live.as_ref()), None);
}

fn libc_enoent() -> i32 {
    2
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn refused_element_is_reported_against_its_set() {
    require_root_and_nft("refused_element_is_reported_against_its_set");
    let ns = Netns::create();
    let good = pod_model(vec![el(vec![v4("192.168.1.1", "192.168.1.9")])]);
    ns.with(|b| b.full_sync(&good)).expect("first sync");
    let before = ns.listing(T);
    // Overlapping ranges in a pipapo set: the kernel refuses the element message.
    let mut bad = good.clone();
    let ports = bad.set_elements_mut("ingress/x/a/ports4").unwrap();
    ports.push(port_el(v4("10.1.0.0", "10.1.255.255"), 6, (85, 95)));
    ports.sort();
    let err = ns
        .with(|b| b.full_sync(&bad))
        .expect_err("overlap must be refused");
    match &err {
        NetlinkError::Kernel { first, .. } => {
            assert_eq!(first.object, "elements of set ingress/x/a/ports4", "{err}");
        }
        other => panic!("want a kernel error, got {other}"),
    }
    eprintln!("refused as expected: {err}");
    assert_eq!(ns.listing(T), before, "previous ruleset still in place");
}

/// ENOBUFS: when the kernel cannot queue the acks (here: a receive buffer capped far below
/// what a large batch's acks take), the batch may or may not have applied. The backend
/// says so (`OutcomeUnknown`) instead of guessing; the table is whole either way (a batch
/// is atomic whatever happens to its acks), and a full sync brings it to the model.
#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn enobufs_is_an_unknown_outcome_and_a_full_sync_repairs() {
    require_root_and_nft("enobufs_is_an_unknown_outcome_and_a_full_sync_repairs");
    let ns = Netns::create();
    let before = pod_model(vec![el(vec![v4("192.168.1.1", "192.168.1.9")])]);
    ns.with(|b| b.full_sync(&before)).expect("first sync");

    // A model of many pods: thousands of messages, each acked.
    let objects = nftpol::synth::cluster(&nftpol::synth::Params::new(1_000, 100))
        .into_iter()
        .map(|v| {
            nftpol::input::object_from_value(v, "synth")
                .unwrap()
                .unwrap()
        })
        .collect();
    let index = nftpol::index::Index::from_objects(objects).unwrap();
    let mut model = nftpol::compile(&index, Some("node-5"));
    model.name = T.to_string();
    let messages = encode_full(&model, 1).messages;
    assert!(
        messages > 200,
        "want a large batch, got {messages} messages"
    );

    let err = ns
        .with(|b| {
            b.cap_recv_buffer(4096);
            b.full_sync(&model)
        })
        .expect_err("acks must overflow a 4 KiB receive buffer");
    assert!(
        matches!(err, NetlinkError::OutcomeUnknown),
        "want OutcomeUnknown, got {err}"
    );
    eprintln!("{messages} messages into a 4 KiB receive buffer: {err}");
    let live = ns.with(|b| b.read_table(T)).unwrap();
    let whole = nftpol::netlink::drift(&model, live.as_ref()).is_none()
        || nftpol::netlink::drift(&before, live.as_ref()).is_none();
    assert!(whole, "the table must be the old one or the new one, whole");

    ns.with(|b| b.full_sync(&model))
        .expect("repairing full sync");
    let live = ns.with(|b| b.read_table(T)).unwrap();
    assert_eq!(nftpol::netlink::drift(&model, live.as_ref()), None);
}
