#![cfg(feature = "netlink")]
//! `nft list` after a netlink full sync equals `nft list` after `nft -f` of the rendered
//! script, for hand-built models covering every RuleKind and set shape, and for the
//! compiled examples. Each side is loaded into its own fresh network namespace.

mod common;
#[path = "common/tiers.rs"]
mod tiers;
#[path = "common/netlink.rs"]
mod util;

use nftpol::ruleset::model::*;
use util::*;

const T: &str = "nftpol";

/// Every RuleKind, one- and multi-field interval sets, IPv4 and IPv6, empty sets,
/// address-space edges, ports 0-65535, comments, verdict maps with jump/goto/accept/drop.
pub fn kitchen_sink() -> Ruleset {
    let mut rs = empty_ruleset(T);
    rs.comment = Some("nftpol test table".into());
    use KeyType::*;
    rs.merge_sets(vec![
        set(
            "e4/edges/any4",
            vec![Ipv4Addr],
            true,
            Some("edges v4"),
            vec![
                el(vec![v4("0.0.0.0", "0.255.255.255")]),
                el(vec![v4("10.0.0.0", "10.255.255.255")]),
                el(vec![v4("192.168.1.1", "192.168.1.9")]),
                el(vec![v4("255.255.255.0", "255.255.255.255")]),
            ],
        ),
        set(
            "e4/all/any4",
            vec![Ipv4Addr],
            true,
            None,
            vec![el(vec![v4("0.0.0.0", "255.255.255.255")])],
        ),
        set(
            "e6/all/any6",
            vec![Ipv6Addr],
            true,
            None,
            vec![el(vec![v6(
                "::",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            )])],
        ),
        set(
            "e6/x/a/any6",
            vec![Ipv6Addr],
            true,
            Some("pod x/a"),
            vec![
                el(vec![v6(
                    "2001:db8::",
                    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                )]),
                el(vec![v6("fd00::1", "fd00::1")]),
            ],
        ),
        set("e4/x/a/empty4", vec![Ipv4Addr], true, Some("empty"), vec![]),
        set(
            "e4/x/a/ports4",
            vec![Ipv4Addr, InetProto, InetService],
            true,
            Some("ports"),
            vec![
                port_el(v4("10.0.0.0", "10.255.255.255"), 6, (80, 90)),
                port_el(host4("10.244.1.11"), 17, (53, 53)),
                port_el(v4("0.0.0.0", "255.255.255.255"), 132, (0, 65535)),
            ],
        ),
        set(
            "e6/x/a/ports6",
            vec![Ipv6Addr, InetProto, InetService],
            true,
            None,
            vec![
                port_el(
                    v6("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                    6,
                    (0, 65535),
                ),
                port_el(v6("fd00::", "fd00::ffff"), 17, (443, 443)),
            ],
        ),
        set(
            "e6/x/a/emptyports6",
            vec![Ipv6Addr, InetProto, InetService],
            true,
            None,
            vec![],
        ),
        set(
            "plain4",
            vec![Ipv4Addr],
            false,
            Some("exact"),
            vec![
                el(vec![v4("1.2.3.4", "1.2.3.4")]),
                el(vec![v4("5.6.7.8", "5.6.7.8")]),
            ],
        ),
    ]);
    rs.merge_maps(vec![
        map(
            "egress4",
            Ipv4Addr,
            vec![(
                v4("10.244.1.11", "10.244.1.11"),
                Verdict::Jump("egress/x/a".into()),
            )],
        ),
        map(
            "egress6",
            Ipv6Addr,
            vec![(
                v6("fd00::11", "fd00::11"),
                Verdict::Goto("egress/x/a".into()),
            )],
        ),
        map(
            "ingress4",
            Ipv4Addr,
            vec![
                (
                    v4("10.244.1.11", "10.244.1.11"),
                    Verdict::Jump("ingress/x/a".into()),
                ),
                (v4("10.244.1.12", "10.244.1.12"), Verdict::Accept),
                (v4("10.244.1.13", "10.244.1.13"), Verdict::Drop),
            ],
        ),
        map("ingress6", Ipv6Addr, vec![]),
    ]);
    let second = rs.maps()[1].name.clone();
    assert!(rs.edit_map(&second, |m| m.comment = Some("egress v6".into())));
    rs.merge_chains(vec![
        forward(vec![Rule::new(RuleKind::Jump("dispatch".into()))]),
        Chain {
            comment: Some("host traffic".into()),
            ..base_chain(
                "output",
                Hook::Output,
                -10,
                Verdict::Accept,
                vec![
                    Rule::new(RuleKind::FibSaddrLocalAccept),
                    Rule::new(RuleKind::Jump("dispatch".into())),
                ],
            )
        },
        chain(
            "dispatch",
            None,
            vec![
                Rule::new(RuleKind::CtEstablishedAccept),
                Rule::with_comment(RuleKind::Icmpv6NdAccept, "neighbour discovery"),
                vmap(IpFamily::V4, Addr::Saddr, "egress4"),
                vmap(IpFamily::V6, Addr::Saddr, "egress6"),
                vmap(IpFamily::V4, Addr::Daddr, "ingress4"),
                vmap(IpFamily::V6, Addr::Daddr, "ingress6"),
            ],
        ),
        chain(
            "egress/x/a",
            Some("pod x/a"),
            vec![
                lookup(
                    IpFamily::V4,
                    Addr::Daddr,
                    false,
                    "e4/all/any4",
                    Verdict::Return,
                ),
                lookup(
                    IpFamily::V6,
                    Addr::Daddr,
                    false,
                    "e6/all/any6",
                    Verdict::Return,
                ),
                lookup(IpFamily::V4, Addr::Daddr, false, "plain4", Verdict::Accept),
                verdict(Verdict::Drop),
            ],
        ),
        chain(
            "ingress/x/a",
            Some("pod x/a"),
            vec![
                lookup(
                    IpFamily::V4,
                    Addr::Saddr,
                    false,
                    "e4/edges/any4",
                    Verdict::Accept,
                ),
                Rule {
                    comment: Some("allow x/web . tcp/80".into()),
                    ..lookup(
                        IpFamily::V4,
                        Addr::Saddr,
                        true,
                        "e4/x/a/ports4",
                        Verdict::Accept,
                    )
                },
                lookup(
                    IpFamily::V4,
                    Addr::Saddr,
                    false,
                    "e4/x/a/empty4",
                    Verdict::Accept,
                ),
                lookup(
                    IpFamily::V6,
                    Addr::Saddr,
                    false,
                    "e6/x/a/any6",
                    Verdict::Accept,
                ),
                lookup(
                    IpFamily::V6,
                    Addr::Saddr,
                    true,
                    "e6/x/a/ports6",
                    Verdict::Accept,
                ),
                lookup(
                    IpFamily::V6,
                    Addr::Daddr,
                    true,
                    "e6/x/a/emptyports6",
                    Verdict::Drop,
                ),
                verdict(Verdict::Drop),
            ],
        ),
        chain("zz-empty", None, vec![]),
    ]);
    normalize(&mut rs);
    rs
}

/// Load `rs` both ways and compare; returns the script listing for further checks.
fn assert_equivalent(label: &str, rs: &Ruleset) -> String {
    let script = nftpol::script::render(rs);
    let by_script = Netns::create();
    by_script.load_script(&script).unwrap_or_else(|e| {
        panic!("{label}: nft -f of the rendered script failed:\n{e}\n--- script ---\n{script}")
    });
    let by_netlink = Netns::create();
    let stats = by_netlink
        .with(|b| b.full_sync(rs))
        .unwrap_or_else(|e| panic!("{label}: netlink full sync failed: {e}"));
    eprintln!(
        "{label}: netlink batch {} messages, {} bytes, {:?}",
        stats.messages, stats.bytes, stats.elapsed
    );
    let want = by_script.listing(T);
    let got = by_netlink.listing(T);
    assert!(!want.is_empty());
    assert_same(label, "nft list", &got, &want);
    let want_dbg = by_script.debug_listing(T);
    let got_dbg = by_netlink.debug_listing(T);
    assert_same(label, "nft --debug=netlink list", &got_dbg, &want_dbg);
    // Read-back agrees with the model on both sides.
    let live = by_netlink.with(|b| b.read_table(T)).expect("read back");
    assert_eq!(
        nftpol::netlink::drift(rs, live.as_ref()),
        None,
        "{label}: drift after netlink sync"
    );
    let live = by_script.with(|b| b.read_table(T)).expect("read back");
    assert_eq!(
        nftpol::netlink::drift(rs, live.as_ref()),
        None,
        "{label}: drift after nft -f"
    );
    want
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn kitchen_sink_lists_identically() {
    require_root_and_nft("kitchen_sink_lists_identically");
    let listing = assert_equivalent("kitchen sink", &kitchen_sink());
    // The traps, checked in the listing itself.
    assert!(listing.contains("flags interval"), "interval flag lost");
    assert!(
        listing.contains("type ipv4_addr . inet_proto . inet_service"),
        "concatenated key lost"
    );
    assert!(
        listing.contains("10.244.1.11 : jump ingress/x/a"),
        "verdict map data lost"
    );
    assert!(
        listing.contains("ip daddr vmap @ingress4"),
        "lookup dreg lost"
    );
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn empty_table_and_minimal_models() {
    require_root_and_nft("empty_table_and_minimal_models");
    assert_equivalent("empty table", &empty_ruleset(T));
    let mut rs = empty_ruleset(T);
    rs.put_chain(base_chain(
        "forward",
        Hook::Forward,
        5,
        Verdict::Drop,
        vec![verdict(Verdict::Accept)],
    ));
    assert_equivalent("one base chain", &rs);
}

/// Every example and conformance case the compile path can turn into a model.
#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn compiled_examples_list_identically() {
    require_root_and_nft("compiled_examples_list_identically");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<_> = std::fs::read_dir(format!("{root}/examples"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples/*.yaml");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let objects =
            nftpol::input::parse_str(&text, &f.display().to_string()).expect("parse example");
        let index = nftpol::index::Index::from_objects(objects).expect("index example");
        let rs = nftpol::compile(&index, None);
        assert_equivalent(&f.display().to_string(), &rs);
        // With --default-deny-unknown (its negated lookups) for one node.
        let graph = nftpol::graph::PolicyGraph::build_for(&index, Some("node-1"));
        let opts = nftpol::ruleset::Options {
            pod_cidrs: vec![
                "10.244.1.0/24".parse().unwrap(),
                "fd00:10:244:1::/64".parse().unwrap(),
            ],
            // And --log-allowed: a log expression in every allowing lookup.
            log: nftpol::ruleset::LogOptions {
                allowed: true,
                rate: 3,
                burst: 7,
                group: 17,
                ..Default::default()
            },
            // And the DNS steering of domainNames rules (examples/domain-names.yaml).
            dns: Some(nftpol::ruleset::DnsSteering {
                servers: vec![
                    "10.96.0.10/32".parse().unwrap(),
                    "fd00:96::a/128".parse().unwrap(),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let rs = nftpol::ruleset::build_with(&graph, &opts);
        assert!(rs.chains().iter().any(|c| c
            .rules
            .iter()
            .any(|r| matches!(r.kind, nftpol::ruleset::RuleKind::DropUnknown { .. }))));
        assert_equivalent(&format!("{} node-1 default-deny-unknown", f.display()), &rs);
        // Every allow with ports looked up as a pair (addresses, then ports), logged.
        let opts = nftpol::ruleset::Options {
            concat_budget: Some(0),
            ..opts
        };
        let rs = nftpol::ruleset::build_with(&graph, &opts);
        let pairs = rs
            .chains()
            .iter()
            .flat_map(|c| &c.rules)
            .filter(|r| matches!(r.kind, nftpol::ruleset::RuleKind::LookupPair { .. }))
            .count();
        if f.ends_with("cluster.yaml") {
            assert!(pairs > 0, "{}: no pair lookups", f.display());
        }
        assert_equivalent(&format!("{} node-1 pairs", f.display()), &rs);
    }
}

/// ~100 pods, each with an ingress and an egress chain and four sets of realistic size
/// (a few dozen peer ranges, a dozen port entries). Checks equivalence and prints the
/// time of a netlink full sync next to `nft -f` of the same script.
fn hundred_pods() -> Ruleset {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use IpFamily::{V4, V6};
    let mut rs = empty_ruleset(T);
    let mut maps: Vec<Map> = ["egress4", "egress6", "ingress4", "ingress6"]
        .iter()
        .map(|n| {
            let key = if n.ends_with('4') {
                KeyType::Ipv4Addr
            } else {
                KeyType::Ipv6Addr
            };
            map(n, key, vec![])
        })
        .collect();
    for p in 0..100u32 {
        let ip4 = Ipv4Addr::from(0x0af4_0000 + 256 * (p / 50) + 10 + p % 50);
        let ip6 = Ipv6Addr::from(0xfd00_0010_0244_0000_0000_0000_0000_0000u128 + p as u128 + 0x10);
        for dir in ["egress", "ingress"] {
            let chain_name = format!("{dir}/ns{}/pod-{p}", p % 7);
            let (addr, rule_verdict) = if dir == "egress" {
                (Addr::Daddr, Verdict::Return)
            } else {
                (Addr::Saddr, Verdict::Accept)
            };
            let any4 = (0..40u32)
                .map(|i| {
                    let a = 0x0a00_0000 + (i * 97 + p) % 4000 * 1024;
                    el(vec![Field::Ipv4(
                        Ipv4Addr::from(a),
                        Ipv4Addr::from(a + 255 + (i % 3) * 256),
                    )])
                })
                .collect::<Vec<Element>>();
            let mut any4 = any4;
            any4.sort();
            any4.dedup_by(|b, a| match (&a.key[0], &b.key[0]) {
                (Field::Ipv4(_, ae), Field::Ipv4(bs, _)) => u32::from(*bs) <= u32::from(*ae) + 1,
                _ => false,
            });
            let ports4 = (0..12u32)
                .map(|i| {
                    let a = Ipv4Addr::from(0x0af4_0000 + i * 7 + p % 3);
                    let port = 8000 + i as u16;
                    port_el(Field::Ipv4(a, a), 6, (port, port))
                })
                .collect();
            let any6 = (0..8u128)
                .map(|i| {
                    el(vec![Field::Ipv6(
                        Ipv6Addr::from((0x2001_0db8u128 << 96) + (i << 64) + ((p as u128) << 32)),
                        Ipv6Addr::from(
                            (0x2001_0db8u128 << 96) + (i << 64) + ((p as u128) << 32) + 0xffff,
                        ),
                    )])
                })
                .collect();
            let ports6 = (0..6u128)
                .map(|i| {
                    let a = Ipv6Addr::from((0xfd00u128 << 112) + i);
                    port_el(Field::Ipv6(a, a), 17, (53, 53 + i as u16))
                })
                .collect();
            let names = ["any4", "ports4", "any6", "ports6"].map(|k| format!("{chain_name}/{k}"));
            rs.put_set(set(&names[0], addr_key(V4), true, None, any4));
            rs.put_set(set(&names[1], ports_key(V4), true, None, ports4));
            rs.put_set(set(&names[2], addr_key(V6), true, None, any6));
            rs.put_set(set(&names[3], ports_key(V6), true, None, ports6));
            let check = |family, ports, set: &String| {
                lookup(family, addr, ports, set, rule_verdict.clone())
            };
            let comment = format!("pod ns{}/pod-{p} {dir}", p % 7);
            rs.put_chain(chain(
                &chain_name,
                Some(&comment),
                vec![
                    check(V4, false, &names[0]),
                    check(V4, true, &names[1]),
                    check(V6, false, &names[2]),
                    check(V6, true, &names[3]),
                    Rule::with_comment(
                        RuleKind::Verdict(Verdict::Drop),
                        format!("{dir} of pod-{p} not allowed"),
                    ),
                ],
            ));
            let m = if dir == "egress" { 0 } else { 2 };
            maps[m].elements.push(MapElement {
                key: [Field::Ipv4(ip4, ip4)].into(),
                verdict: Verdict::Jump(chain_name.clone()),
            });
            maps[m + 1].elements.push(MapElement {
                key: [Field::Ipv6(ip6, ip6)].into(),
                verdict: Verdict::Jump(chain_name),
            });
        }
    }
    rs.merge_maps(maps);
    let mut base = kitchen_sink();
    base.retain_chains(|c| c.base.is_some() || c.name == "dispatch");
    rs.merge_chains(base.chains().to_vec());
    normalize(&mut rs);
    rs
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn hundred_pods_equivalent_and_timed() {
    require_root_and_nft("hundred_pods_equivalent_and_timed");
    let rs = hundred_pods();
    assert_equivalent("100 pods", &rs);
    let script = nftpol::script::render(&rs);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.nft");
    std::fs::write(&path, &script).unwrap();
    let (mut nl, mut nf) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let ns = Netns::create();
        let t = std::time::Instant::now();
        ns.with(|b| b.full_sync(&rs)).unwrap();
        nl.push(t.elapsed());
        let t = std::time::Instant::now();
        let (ok, _, err) = ns.nft_raw(&["-f", path.to_str().unwrap()]);
        nf.push(t.elapsed());
        assert!(ok, "{err}");
    }
    nl.sort();
    nf.sort();
    let elems: usize = rs.sets().iter().map(|s| s.elements.len()).sum();
    eprintln!(
        "100 pods ({} chains, {} sets, {elems} set elements): netlink full sync median {:?} (min {:?}); `ip netns exec .. nft -f` median {:?} (min {:?}); script {} bytes, batch {} bytes",
        rs.chains().len(),
        rs.sets().len(),
        nl[2],
        nl[0],
        nf[2],
        nf[0],
        script.len(),
        nftpol::netlink::encode_full(&rs, 1).bytes.len()
    );
}

/// ClusterNetworkPolicy tiers: tier sets (address-only, hash and concatenated interval,
/// boxes over protocol ranges), `goto` drop tails, the input hook and its maps, with and
/// without the logging options.
#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn tiered_models_list_identically() {
    require_root_and_nft("tiered_models_list_identically");
    let g = tiers::rich();
    let rs = nftpol::ruleset::build(&g);
    assert!(rs.chain("input").is_some() && rs.chain("egress/x/c/drop").is_some());
    let boxes = rs
        .sets()
        .iter()
        .flat_map(|s| &s.elements)
        .filter(|e| matches!(e.key.get(1), Some(Field::Proto(a, b)) if a != b))
        .count();
    assert!(boxes > 0, "no element over a protocol range");
    let listing = assert_equivalent("tiers", &rs);
    assert!(listing.contains("hook input"), "input hook lost");
    assert!(listing.contains("goto egress/x/c/drop"), "goto lost");
    let opts = nftpol::ruleset::Options {
        log: nftpol::ruleset::LogOptions {
            allowed: true,
            ..Default::default()
        },
        ..Default::default()
    };
    assert_equivalent(
        "tiers, log allowed",
        &nftpol::ruleset::build_with(&g, &opts),
    );
    let opts = nftpol::ruleset::Options {
        log: nftpol::ruleset::LogOptions::OFF,
        ..Default::default()
    };
    assert_equivalent("tiers, no logs", &nftpol::ruleset::build_with(&g, &opts));
}
