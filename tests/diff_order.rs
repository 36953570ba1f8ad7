#![cfg(feature = "netlink")]
//! The order of a batch's operations, checked without a kernel. The diff
//! (src/netlink/diff.rs) orders its operations so that no reference dangles at any point
//! of the batch; tests/netlink_incremental.rs checks that against a real kernel, as root.
//! Here a fake table (common/fake_table.rs) applies the operations in order and refuses
//! what the kernel would refuse:
//! - the fake refuses each kind of dangling reference, so that its passes mean something;
//! - the two faults it found, each in one hand-made case: a chain rebound around a
//!   replaced set whose new rules look up a set new in the batch, and a pair-ports set
//!   looked up by no rule (no model may hold a set no rule looks up: no incremental
//!   batch would ever carry it);
//! - between the models of two random clusters, `diff(a, b)` applied to `a` gives `b`;
//! - change by change, the controller's batches (`diff_views` of the recomputed pods'
//!   views, or a full sync where it asks for one) move the table it holds to the next
//!   model.

#[path = "common/changes.rs"]
mod changes;
mod common;
#[path = "common/fake_table.rs"]
mod fake_table;
#[path = "common/netlink.rs"]
mod util;

use changes::{cluster_with_nodes, mutate, obj};
use fake_table::{FakeTable, Refused};
use nftpol::index::Index;
use nftpol::netlink::{diff, diff_views, Op};
use nftpol::ruleset::model::*;
use nftpol::ruleset::{LogOptions, Options, SetKind};
use nftpol::state::{Batch, NodeState};
use nftpol::synth::Rng;
use proptest::prelude::*;
use util::{chain, el, empty_ruleset, forward, host4, lookup, map, set, v4, verdict, vmap};

// === the fake refuses what the kernel refuses ===

const POD_IP: &str = "10.244.1.11";

/// The dispatch of a node: `forward` jumps to `policy`, which dispatches through
/// `ingress4`.
fn node() -> Ruleset {
    let mut rs = empty_ruleset("nftpol");
    rs.put_chain(forward(vec![Rule::new(RuleKind::Jump("policy".into()))]));
    rs.put_chain(chain(
        "policy",
        None,
        vec![vmap(IpFamily::V4, Addr::Daddr, "ingress4")],
    ));
    rs.put_map(map("ingress4", KeyType::Ipv4Addr, vec![]));
    rs
}

/// [`node`] with pod x/a: its peer set, its chain and its dispatch element.
fn node_with_pod() -> Ruleset {
    let mut rs = node();
    rs.put_set(set(
        "ingress/x/a/any4",
        vec![KeyType::Ipv4Addr],
        true,
        None,
        vec![el(vec![v4("10.1.0.0", "10.1.255.255")])],
    ));
    rs.put_chain(chain(
        "ingress/x/a",
        None,
        vec![
            lookup(
                IpFamily::V4,
                Addr::Saddr,
                false,
                "ingress/x/a/any4",
                Verdict::Accept,
            ),
            verdict(Verdict::Drop),
        ],
    ));
    rs.put_map(map(
        "ingress4",
        KeyType::Ipv4Addr,
        vec![(host4(POD_IP), Verdict::Jump("ingress/x/a".into()))],
    ));
    rs
}

fn refused(table: &Ruleset, ops: &[Op]) -> Refused {
    let mut t = FakeTable::load(table).expect("a consistent model");
    let before = t.clone();
    let r = t
        .apply(ops)
        .expect_err("the fake table must refuse this batch");
    assert_eq!(t, before, "a refused batch changes nothing: {r}");
    r
}

fn map_element(ip: &str, verdict: Verdict) -> MapElement {
    MapElement {
        key: [host4(ip)].into(),
        verdict,
    }
}

#[test]
fn the_diff_adds_a_pod_in_an_order_the_fake_accepts_and_reversed_it_refuses() {
    let (a, b) = (node(), node_with_pod());
    let ops = diff(&a, &b);
    let mut t = FakeTable::load(&a).unwrap();
    t.apply(&ops).unwrap();
    assert_eq!(t.0, b);
    // And back: the entry goes before the chain, the chain before its set.
    t.apply(&diff(&b, &a)).unwrap();
    assert_eq!(t.0, a);
    // The same operations in the reverse order: the dispatch element would jump to a
    // chain not yet there.
    let reversed: Vec<Op> = ops.into_iter().rev().collect();
    let r = refused(&a, &reversed);
    assert_eq!((r.index, r.errno), (0, "ENOENT"), "{r}");
    let back: Vec<Op> = diff(&b, &a).into_iter().rev().collect();
    let r = refused(&b, &back);
    assert_eq!(r.errno, "EBUSY", "{r}");
}

#[test]
fn the_fake_refuses_what_the_kernel_refuses() {
    let rs = node_with_pod();
    let pod_chain = rs.chain("ingress/x/a").unwrap().clone();
    let set_of_pod = rs.set("ingress/x/a/any4").unwrap().clone();
    let empty = |c: &Chain| Chain {
        rules: Vec::new(),
        ..c.clone()
    };
    let new_chain = chain(
        "ingress/x/b",
        None,
        vec![lookup(
            IpFamily::V4,
            Addr::Saddr,
            false,
            "ingress/x/b/any4",
            Verdict::Accept,
        )],
    );
    let cases: Vec<(&str, Vec<Op>, &str)> = vec![
        (
            "a rule looking up a set not yet added",
            vec![
                Op::AddChain(empty(&new_chain)),
                Op::SetRules {
                    chain: new_chain.clone(),
                    flush: false,
                },
            ],
            "ENOENT",
        ),
        (
            "rules for a chain not yet added",
            vec![Op::SetRules {
                chain: new_chain.clone(),
                flush: false,
            }],
            "ENOENT",
        ),
        (
            "a set deleted while a rule looks it up",
            vec![Op::DelSet(set_of_pod.name.clone())],
            "EBUSY",
        ),
        (
            "a rule looking up a set already deleted",
            vec![
                Op::SetRules {
                    chain: empty(&pod_chain),
                    flush: true,
                },
                Op::DelSet(set_of_pod.name.clone()),
                Op::SetRules {
                    chain: pod_chain.clone(),
                    flush: false,
                },
            ],
            "ENOENT",
        ),
        (
            "elements for a set that is not there",
            vec![Op::AddSetElements {
                set: "ingress/x/b/any4".into(),
                role: SetRole::NpAllow(SetKind::Any4),
                key: vec![KeyType::Ipv4Addr],
                interval: true,
                elements: vec![el(vec![host4("10.2.0.1")])],
                from_empty: true,
            }],
            "ENOENT",
        ),
        (
            "an element deleted that is not there",
            vec![Op::DelSetElements {
                set: set_of_pod.name.clone(),
                key: vec![KeyType::Ipv4Addr],
                interval: true,
                elements: vec![el(vec![host4("10.2.0.1")])],
            }],
            "ENOENT",
        ),
        (
            "an interval overlapping another",
            vec![Op::AddSetElements {
                set: set_of_pod.name.clone(),
                role: set_of_pod.role,
                key: vec![KeyType::Ipv4Addr],
                interval: true,
                elements: vec![el(vec![v4("10.1.2.0", "10.2.0.0")])],
                from_empty: false,
            }],
            "EEXIST",
        ),
        (
            "a dispatch element jumping to a chain that is not there",
            vec![Op::AddMapElements {
                map: "ingress4".into(),
                elements: vec![map_element(
                    "10.244.1.12",
                    Verdict::Jump("ingress/x/b".into()),
                )],
            }],
            "ENOENT",
        ),
        (
            "a dispatch element clashing with one of another verdict",
            vec![Op::AddMapElements {
                map: "ingress4".into(),
                elements: vec![map_element(POD_IP, Verdict::Drop)],
            }],
            "EEXIST",
        ),
        (
            "a chain deleted while a dispatch element jumps to it",
            vec![Op::DelChain("ingress/x/a".into())],
            "EBUSY",
        ),
        (
            "a chain deleted while a rule jumps to it",
            vec![Op::DelChain("policy".into())],
            "EBUSY",
        ),
        (
            "a map deleted while a rule dispatches through it",
            vec![
                Op::DelMapElements {
                    map: "ingress4".into(),
                    elements: vec![map_element(POD_IP, Verdict::Jump("ingress/x/a".into()))],
                },
                Op::DelMap("ingress4".into()),
            ],
            "EBUSY",
        ),
        (
            "a jump to a base chain",
            vec![Op::SetRules {
                chain: chain(
                    "ingress/x/a",
                    None,
                    vec![Rule::new(RuleKind::Jump("forward".into()))],
                ),
                flush: true,
            }],
            "EOPNOTSUPP",
        ),
        (
            "a set added again with another definition",
            vec![Op::AddSet(Set {
                interval: false,
                ..set_of_pod.clone()
            })],
            "EEXIST",
        ),
    ];
    for (what, ops, errno) in cases {
        let r = refused(&rs, &ops);
        assert_eq!(r.errno, errno, "{what}: {r}");
        assert_eq!(
            r.index,
            ops.len() - 1,
            "{what}: the last operation fails: {r}"
        );
    }
    // The same kinds of operation in a safe order go through.
    let mut t = FakeTable::load(&rs).unwrap();
    t.apply(&[
        Op::AddSet(set(
            "ingress/x/b/any4",
            vec![KeyType::Ipv4Addr],
            true,
            None,
            vec![],
        )),
        Op::AddChain(empty(&new_chain)),
        Op::SetRules {
            chain: new_chain.clone(),
            flush: false,
        },
        Op::AddMapElements {
            map: "ingress4".into(),
            elements: vec![map_element(
                "10.244.1.12",
                Verdict::Jump("ingress/x/b".into()),
            )],
        },
        Op::DelMapElements {
            map: "ingress4".into(),
            elements: vec![map_element(POD_IP, Verdict::Jump("ingress/x/a".into()))],
        },
        Op::DelChain("ingress/x/a".into()),
        Op::DelSet(set_of_pod.name.clone()),
    ])
    .unwrap();
}

/// A set replaced whole (a concatenated interval set losing more than a few elements) is
/// unbound from the chains looking it up, which get their rules back later in the batch:
/// after the sets the batch adds, which their new rules may look up too.
#[test]
fn a_chain_rebound_around_a_replaced_set_may_look_up_a_new_set() {
    let ports = |n: u16| {
        let elements = (0..n)
            .map(|i| {
                util::port_el(
                    v4("10.1.0.0", "10.1.0.255"),
                    6,
                    (1000 + 10 * i, 1000 + 10 * i + 5),
                )
            })
            .collect();
        set(
            "ingress/x/a/ports4",
            util::ports_key(IpFamily::V4),
            true,
            None,
            elements,
        )
    };
    let accept =
        |set: &str, ports: bool| lookup(IpFamily::V4, Addr::Saddr, ports, set, Verdict::Accept);
    let mut a = node();
    a.put_set(ports(12));
    a.put_chain(chain(
        "ingress/x/a",
        None,
        vec![accept("ingress/x/a/ports4", true), verdict(Verdict::Drop)],
    ));
    let mut b = node();
    b.put_set(ports(1));
    b.put_set(set(
        "np/ingress/0123/any4",
        vec![KeyType::Ipv4Addr],
        true,
        None,
        vec![el(vec![host4("10.2.0.1")])],
    ));
    b.put_chain(chain(
        "ingress/x/a",
        None,
        vec![
            accept("ingress/x/a/ports4", true),
            accept("np/ingress/0123/any4", false),
            verdict(Verdict::Drop),
        ],
    ));
    let ops = diff(&a, &b);
    assert!(
        ops.iter()
            .any(|o| matches!(o, Op::DelSet(n) if n == "ingress/x/a/ports4")),
        "the set is replaced: {ops:?}"
    );
    let mut t = FakeTable::load(&a).unwrap();
    t.apply(&ops)
        .unwrap_or_else(|r| panic!("{r}: {:?}", ops[r.index]));
    assert_eq!(t.0, b);
}

/// The sets of `model` that no rule looks up: an incremental batch (the views of the
/// pods it recomputes) never carries them, so a model must hold none.
fn unreferenced_sets(model: &Ruleset) -> Vec<String> {
    let used: std::collections::BTreeSet<&str> =
        model.chains().iter().flat_map(|c| c.lookups()).collect();
    model
        .sets()
        .iter()
        .filter(|s| !used.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect()
}

/// An allow with ports whose peers hold no address, looked up as a pair (as every allow
/// with ports is, once one of them does not fit the concatenated budget): no rule, and no
/// set either.
#[test]
fn a_pair_with_no_address_gives_no_set() {
    use common::{index, netpol, ns, pod};
    let rules = serde_json::json!([
        {"from": [{"podSelector": {"matchLabels": {"app": "nobody"}}}],
         "ports": [{"protocol": "TCP", "port": 80}]},
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
         "ports": [{"protocol": "TCP", "port": 443}]},
    ]);
    let objects = vec![
        ns("x"),
        pod("x", "a").label("app", "a").node("n1").ip("10.244.1.11"),
        netpol("x", "p").selecting("app", "a").ingress(rules),
    ];
    let graph = nftpol::graph::PolicyGraph::build_for(&index(objects), Some("n1"));
    let model = nftpol::ruleset::build_with(&graph, &options(false, false, Some(0), true));
    let chain = model.chain("ingress/x/a").expect("a is isolated");
    let pairs = chain
        .rules
        .iter()
        .filter(|r| matches!(r.kind, RuleKind::LookupPair { .. }));
    assert_eq!(pairs.count(), 1, "a pair lookup for the ipBlock: {chain:?}");
    assert_eq!(unreferenced_sets(&model), Vec::<String>::new());
}

// === the diff's order, on random models ===

/// The model a node holds for `seed`'s cluster, built up object by object.
fn model(seed: u64, node: Option<&str>, options: &Options) -> Ruleset {
    let mut state = NodeState::with_options(Index::new(), node, options.clone());
    for v in &cluster_with_nodes(seed).objects {
        state.apply_reporting(obj(v));
    }
    state.model().clone()
}

fn options(
    deny_unknown: bool,
    logs: bool,
    concat_budget: Option<usize>,
    counters: bool,
) -> Options {
    Options {
        pod_cidrs: if deny_unknown {
            vec!["10.0.0.0/23".parse().unwrap()]
        } else {
            vec![]
        },
        log: if logs {
            LogOptions {
                denied: true,
                allowed: true,
                ..LogOptions::default()
            }
        } else {
            LogOptions::OFF
        },
        concat_budget,
        max_elements: None,
        counters,
        dns: None,
    }
}

fn options_strategy() -> impl Strategy<Value = Options> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(None), (0usize..6).prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(|(d, l, b, c)| options(d, l, b, c))
}

fn node_strategy() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![Just(Some("n1")), Just(Some("n2")), Just(None)]
}

/// `diff(a, b)` applied to `a` in the fake table; the table must then be `b`.
fn check_diff(a: &Ruleset, b: &Ruleset) -> Result<Vec<Op>, TestCaseError> {
    let mut t = FakeTable::load(a).map_err(|r| TestCaseError::fail(format!("loading a: {r}")))?;
    let ops = diff(a, b);
    if let Err(r) = t.apply(&ops) {
        return Err(TestCaseError::fail(format!(
            "{r}\noperation: {:?}",
            ops[r.index]
        )));
    }
    prop_assert_eq!(&t.0, b);
    prop_assert_eq!(unreferenced_sets(b), Vec::<String>::new());
    Ok(ops)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Two unrelated clusters: most of each model goes and comes (chains, sets, maps,
    /// their elements), with the same options, so nothing asks for a full sync.
    #[test]
    fn the_diff_between_two_clusters_applies_in_order(seed_a in any::<u64>(), seed_b in any::<u64>(), node in node_strategy(), options in options_strategy()) {
        let (a, b) = (model(seed_a, node, &options), model(seed_b, node, &options));
        let ops = check_diff(&a, &b)?;
        prop_assert!(!ops.iter().any(|o| matches!(o, Op::FullSync(_))), "a full sync between models of the same options");
        check_diff(&b, &a)?;
    }

    /// One cluster under two sets of options: the logging rules, the pairs and the
    /// unknown-address drops come and go (a full sync where a definition changes).
    #[test]
    fn the_diff_between_two_options_applies_in_order(seed in any::<u64>(), node in node_strategy(), x in options_strategy(), y in options_strategy()) {
        let (a, b) = (model(seed, node, &x), model(seed, node, &y));
        check_diff(&a, &b)?;
        check_diff(&b, &a)?;
    }

    /// The controller's batches, change by change, on the table it holds.
    #[test]
    fn the_controllers_batches_apply_in_order(seed in any::<u64>(), node in node_strategy(), options in options_strategy(), max_elements in prop_oneof![Just(None), (1usize..12).prop_map(Some)]) {
        let options = Options { max_elements, ..options };
        controller_batches(seed, node, &options)?;
    }
}

/// How many batches [`controller_batches`] sent: incremental ones, and full syncs.
#[derive(Debug, Default)]
struct Sent {
    updates: usize,
    full: usize,
    ops: usize,
}

/// Follows the controller's sync loop (src/controller/sync.rs): a state that batches,
/// built up from the generated cluster and loaded whole, then random changes with a
/// batch now and then; each batch applied to the fake table.
fn controller_batches(
    seed: u64,
    node: Option<&str>,
    options: &Options,
) -> Result<Sent, TestCaseError> {
    let c = cluster_with_nodes(seed);
    let mut state = NodeState::with_options(Index::new(), node, options.clone());
    state.set_batching(true);
    for v in &c.objects {
        state.apply_reporting(obj(v));
    }
    prop_assert!(matches!(state.batch(), Batch::Full(_)));
    let mut table = FakeTable::load(state.model())
        .map_err(|r| TestCaseError::fail(format!("seed {seed}: loading: {r}")))?;
    state.acknowledged(true);
    let mut live = c.objects.clone();
    let mut rng = Rng::new(seed ^ 0x0de7);
    let mut sent = Sent::default();
    for step in 0..24 {
        mutate(&mut rng, &mut state, &mut live, step);
        if !rng.chance(40) && step != 23 {
            continue;
        }
        prop_assert_eq!(
            Some(&table.0),
            state.kernel(),
            "seed {} step {}: the table is what the state says the kernel holds",
            seed,
            step
        );
        // `None`: a full sync, as the controller falls back to one.
        let ops = match state.batch() {
            Batch::Nothing => Some(Vec::new()),
            Batch::Full(_) => None,
            Batch::Update { before, after } => diff_views(&before, &after),
        };
        let full = ops.is_none();
        let ops = ops.unwrap_or_else(|| vec![Op::FullSync(Box::new(state.model().clone()))]);
        if let Err(r) = table.apply(&ops) {
            return Err(TestCaseError::fail(format!(
                "seed {seed} step {step}: {r}\noperation: {:?}",
                ops[r.index]
            )));
        }
        if full {
            sent.full += 1;
        } else if !ops.is_empty() {
            sent.updates += 1;
            sent.ops += ops.len();
        }
        state.acknowledged(full);
        prop_assert_eq!(&table.0, state.model(), "seed {} step {}", seed, step);
        prop_assert_eq!(
            unreferenced_sets(state.model()),
            Vec::<String>::new(),
            "seed {} step {}",
            seed,
            step
        );
    }
    Ok(sent)
}

/// The property above must exercise incremental batches, not only full syncs.
#[test]
fn the_controllers_batches_are_mostly_incremental() {
    let mut total = Sent::default();
    for seed in 0..40 {
        let s = controller_batches(seed, Some("n1"), &Options::default())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        total.updates += s.updates;
        total.full += s.full;
        total.ops += s.ops;
    }
    assert!(
        total.updates > 10 * total.full.max(1) && total.ops > total.updates,
        "{total:?}"
    );
}
