//! Tests of `diff`: what each change of the model becomes in a batch.
#[test]
fn sorted_diff_is_set_difference() {
    // Sorted and unsorted, with and without duplicates, against BTreeSet semantics.
    let cases: Vec<(Vec<u32>, Vec<u32>)> = vec![
        (vec![], vec![]),
        (vec![1, 2, 3], vec![]),
        (vec![], vec![4, 5]),
        (vec![1, 3, 5, 7], vec![2, 3, 4, 7, 9]),
        (vec![9, 1, 5, 5], vec![5, 2, 2, 9]),
        (vec![1, 1, 2], vec![1]),
    ];
    for (old, new) in cases {
        let o: std::collections::BTreeSet<u32> = old.iter().copied().collect();
        let n: std::collections::BTreeSet<u32> = new.iter().copied().collect();
        let want = (
            o.difference(&n).copied().collect::<Vec<_>>(),
            n.difference(&o).copied().collect::<Vec<_>>(),
        );
        assert_eq!(super::sorted_diff(&old, &new), want, "{old:?} -> {new:?}");
    }
}

use super::*;
use std::net::Ipv4Addr;

fn v4(a: [u8; 4], b: [u8; 4]) -> Element {
    Element {
        key: [Field::Ipv4(Ipv4Addr::from(a), Ipv4Addr::from(b))].into(),
    }
}

fn pod(rs: &mut Ruleset, name: &str, ip: [u8; 4], peers: Vec<Element>) {
    let set = format!("ingress/x/{name}/any4");
    rs.put_set(Set {
        name: set.clone(),
        role: SetRole::KnownPods,
        key: vec![KeyType::Ipv4Addr],
        interval: true,
        comment: None,
        elements: peers,
        timeout: None,
        counter: false,
    });
    let chain = format!("ingress/x/{name}");
    rs.put_chain(Chain {
        name: chain.clone(),
        base: None,
        comment: None,
        rules: vec![
            Rule::new(RuleKind::Lookup {
                family: IpFamily::V4,
                addr: Addr::Saddr,
                key: LookupKey::Addr,
                set,
                verdict: Verdict::Accept,
                log: None,
            }),
            Rule::new(RuleKind::Verdict(Verdict::Drop)),
        ],
    });
    let elements = rs.map_elements_mut("ingress4").unwrap();
    elements.push(MapElement {
        key: [Field::Ipv4(ip.into(), ip.into())].into(),
        verdict: Verdict::Jump(chain),
    });
    elements.sort();
}

fn base() -> Ruleset {
    Ruleset::from_parts(
        "nftpol",
        None,
        vec![],
        vec![Map {
            name: "ingress4".into(),
            key: vec![KeyType::Ipv4Addr],
            comment: None,
            elements: vec![],
        }],
        vec![Chain {
            name: "policy".into(),
            base: None,
            comment: None,
            rules: vec![Rule::new(RuleKind::DispatchVmap {
                family: IpFamily::V4,
                addr: Addr::Daddr,
                map: "ingress4".into(),
            })],
        }],
    )
}

fn kind(op: &Op) -> &'static str {
    match op {
        Op::FullSync(_) => "full",
        Op::AddSet(_) => "addset",
        Op::DelSet(_) => "delset",
        Op::AddSetElements { .. } => "addelem",
        Op::DelSetElements { .. } => "delelem",
        Op::AddMap(_) => "addmap",
        Op::DelMap(_) => "delmap",
        Op::AddMapElements { .. } => "addmapelem",
        Op::DelMapElements { .. } => "delmapelem",
        Op::AddChain(_) => "addchain",
        Op::SetRules { .. } => "rules",
        Op::DelChain(_) => "delchain",
    }
}

fn plain_chain(name: &str, targets: &[&str]) -> Chain {
    Chain {
        name: name.into(),
        base: None,
        comment: None,
        rules: targets
            .iter()
            .map(|t| Rule::new(RuleKind::Verdict(Verdict::Goto(t.to_string()))))
            .collect(),
    }
}

#[test]
fn chains_that_others_jump_to_are_deleted_last() {
    // Deleted chains with the chains their rules jump to, and the order of deletion.
    type Case<'a> = (Vec<(&'a str, Vec<&'a str>)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (vec![], vec![]),
        (vec![("a", vec![]), ("b", vec![])], vec!["a", "b"]),
        (
            vec![
                ("drop", vec![]),
                ("in", vec!["drop"]),
                ("out", vec!["drop"]),
            ],
            vec!["in", "out", "drop"],
        ),
        // A target that stays (not deleted) changes nothing.
        (vec![("in", vec!["kept"])], vec!["in"]),
        // Audit chains: pod -> audit-denied -> would-allow -> drop, three levels.
        (
            vec![
                ("drop", vec![]),
                ("pod", vec!["audit-allowed", "audit-denied"]),
                ("would-allow", vec!["drop"]),
                ("audit-denied", vec!["would-allow", "drop"]),
                ("audit-allowed", vec!["would-deny"]),
                ("would-deny", vec![]),
            ],
            vec![
                "pod",
                "audit-denied",
                "audit-allowed",
                "would-allow",
                "would-deny",
                "drop",
            ],
        ),
    ];
    for (gone, want) in cases {
        let chains: Vec<Chain> = gone.iter().map(|(n, t)| plain_chain(n, t)).collect();
        let ops = deletion_order(chains.iter().collect());
        let names: Vec<&str> = ops
            .iter()
            .map(|op| match op {
                Op::DelChain(n) => n.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, want, "{gone:?}");
    }
}

#[test]
fn set_elements_are_deleted_before_added() {
    let set = |elements: Vec<Element>| Set {
        name: "s".into(),
        role: SetRole::KnownPods,
        key: vec![KeyType::Ipv4Addr],
        interval: true,
        comment: None,
        elements,
        timeout: None,
        counter: false,
    };
    let (a, b) = (
        v4([10, 0, 0, 1], [10, 0, 0, 1]),
        v4([10, 0, 0, 2], [10, 0, 0, 2]),
    );
    // (old elements, new elements, op kinds, from_empty of the add)
    let cases = [
        (vec![], vec![], vec![], None),
        (vec![], vec![a], vec!["addelem"], Some(true)),
        (vec![a], vec![], vec!["delelem"], None),
        (vec![a], vec![b], vec!["delelem", "addelem"], Some(false)),
        (vec![a], vec![a, b], vec!["addelem"], Some(false)),
    ];
    for (old, new, kinds, from_empty) in cases {
        let (o, n) = (set(old), set(new));
        let (removed, added) = sorted_diff(&o.elements, &n.elements);
        let ops = set_element_ops(&o, &n, removed, added);
        assert_eq!(ops.iter().map(kind).collect::<Vec<_>>(), kinds, "{ops:?}");
        let add = ops.iter().find_map(|op| match op {
            Op::AddSetElements { from_empty, .. } => Some(*from_empty),
            _ => None,
        });
        assert_eq!(add, from_empty);
    }
}

#[test]
fn same_model_no_ops() {
    let mut a = base();
    pod(
        &mut a,
        "a",
        [10, 0, 0, 1],
        vec![v4([10, 1, 0, 0], [10, 1, 255, 255])],
    );
    assert!(diff(&a, &a).is_empty());
}

#[test]
fn new_pod_creates_set_and_chain_before_map_entry() {
    let a = base();
    let mut b = base();
    pod(
        &mut b,
        "a",
        [10, 0, 0, 1],
        vec![v4([10, 1, 0, 0], [10, 1, 255, 255])],
    );
    let ops = diff(&a, &b);
    let kinds: Vec<_> = ops.iter().map(kind).collect();
    assert_eq!(kinds, ["addset", "addchain", "rules", "addmapelem"]);
    assert!(matches!(&ops[2], Op::SetRules { flush: false, .. }));
}

#[test]
fn removed_pod_loses_map_entry_before_chain_and_set() {
    let a = base();
    let mut b = base();
    pod(&mut b, "a", [10, 0, 0, 1], vec![]);
    let kinds: Vec<_> = diff(&b, &a).iter().map(kind).collect();
    assert_eq!(kinds, ["delmapelem", "delchain", "delset"]);
}

/// A drop tail goes after the chain that `goto`s it (in name order it would go
/// before: the kernel refuses with EBUSY), and a deleted map loses its elements,
/// which jump to deleted chains, before any chain goes.
#[test]
fn referenced_chains_and_deleted_maps_go_in_a_safe_order() {
    let a = base();
    let mut b = base();
    let chain = |name: &str, rules: Vec<Rule>| Chain {
        name: name.into(),
        base: None,
        comment: None,
        rules,
    };
    b.put_chain(chain(
        "a",
        vec![Rule::new(RuleKind::Verdict(Verdict::Goto("a/drop".into())))],
    ));
    b.put_chain(chain(
        "a/drop",
        vec![Rule::new(RuleKind::Verdict(Verdict::Drop))],
    ));
    b.put_chain(chain(
        "input/a",
        vec![Rule::new(RuleKind::Verdict(Verdict::Goto("a/drop".into())))],
    ));
    b.put_map(Map {
        name: "input4".into(),
        key: vec![KeyType::Ipv4Addr],
        comment: None,
        elements: vec![MapElement {
            key: Key::from([Field::Ipv4([10, 0, 0, 1].into(), [10, 0, 0, 1].into())]),
            verdict: Verdict::Jump("input/a".into()),
        }],
    });
    let ops = diff(&b, &a);
    let names: Vec<String> = ops
        .iter()
        .map(|o| match o {
            Op::DelChain(c) => format!("delchain {c}"),
            Op::DelMap(m) => format!("delmap {m}"),
            Op::DelMapElements { map, .. } => format!("delmapelem {map}"),
            o => kind(o).to_string(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "delmapelem input4",
            "delchain a",
            "delchain input/a",
            "delchain a/drop",
            "delmap input4"
        ]
    );
}

#[test]
fn element_change_deletes_and_adds_in_one_list() {
    let mut a = base();
    pod(
        &mut a,
        "a",
        [10, 0, 0, 1],
        vec![
            v4([1, 0, 0, 0], [1, 0, 0, 255]),
            v4([3, 0, 0, 0], [3, 0, 0, 0]),
        ],
    );
    let mut b = base();
    pod(
        &mut b,
        "a",
        [10, 0, 0, 1],
        vec![
            v4([2, 0, 0, 0], [2, 0, 0, 9]),
            v4([3, 0, 0, 0], [3, 0, 0, 0]),
        ],
    );
    let ops = diff(&a, &b);
    assert_eq!(ops.len(), 2);
    match (&ops[0], &ops[1]) {
        (
            Op::DelSetElements { elements: d, .. },
            Op::AddSetElements {
                elements: ad,
                from_empty,
                ..
            },
        ) => {
            assert_eq!(d, &vec![v4([1, 0, 0, 0], [1, 0, 0, 255])]);
            assert_eq!(ad, &vec![v4([2, 0, 0, 0], [2, 0, 0, 9])]);
            assert!(!from_empty);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn rule_change_replaces_only_that_chain() {
    let mut a = base();
    pod(&mut a, "a", [10, 0, 0, 1], vec![]);
    pod(&mut a, "b", [10, 0, 0, 2], vec![]);
    let mut b = a.clone();
    assert!(b.edit_chain("ingress/x/b", |c| {
        c.rules.pop();
    }));
    let ops = diff(&a, &b);
    assert_eq!(ops.len(), 1);
    assert!(matches!(&ops[0], Op::SetRules { chain, flush: true } if chain.name == "ingress/x/b"));
}

#[test]
fn changed_verdict_is_delete_then_add() {
    let mut a = base();
    pod(&mut a, "a", [10, 0, 0, 1], vec![]);
    let mut b = a.clone();
    b.map_elements_mut("ingress4").unwrap()[0].verdict = Verdict::Drop;
    let kinds: Vec<_> = diff(&a, &b).iter().map(kind).collect();
    assert_eq!(kinds, ["delmapelem", "addmapelem"]);
}

#[test]
fn definition_change_falls_back_to_full_sync() {
    let mut a = base();
    pod(&mut a, "a", [10, 0, 0, 1], vec![]);
    let mut b = a.clone();
    let first = b.sets()[0].name.clone();
    assert!(b.edit_set(&first, |s| s.comment = Some("now commented".into())));
    assert!(matches!(diff(&a, &b).as_slice(), [Op::FullSync(_)]));
    let mut c = a.clone();
    c.comment = Some("t".into());
    assert!(matches!(diff(&a, &c).as_slice(), [Op::FullSync(_)]));
}
