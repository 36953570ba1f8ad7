//! The smallest list of operations that turns one model into another. Pure: no I/O.
//!
//! Owns: which objects change between two [`Ruleset`]s and the order of the operations,
//! chosen so that no reference dangles at any point of the batch and so that a pod's
//! sets and chain exist before its verdict-map entry, and its entry is gone before its
//! chain and sets are deleted:
//!
//! ```text
//! [replaced sets: flush the chains using them, delete, add again]
//!   -> add sets (with elements) -> set elements (deletes, then adds) -> add chains (empty)
//!   -> add maps (with elements) -> rules of new, changed and flushed chains
//!   -> map elements (deletes, then adds) -> delete chains -> delete maps -> delete sets
//! ```
//!
//! A change that cannot be made in place (table comment, a set's or map's type, flags or
//! comment, a chain's hook, priority, policy or comment) yields a single
//! [`Op::FullSync`], which replaces the table whole, still in one atomic batch.
//!
//! Must not: encode messages (encode.rs) or look at the kernel.

use std::collections::{BTreeMap, BTreeSet};

use crate::ruleset::model::*;
use crate::ruleset::View;

/// One step of an incremental update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Replace the whole table with this model.
    FullSync(Box<Ruleset>),
    /// Create a set with its elements.
    AddSet(Set),
    DelSet(String),
    AddSetElements {
        set: String,
        /// The set's role: adding to a set that denies can revoke connections.
        role: SetRole,
        key: Vec<KeyType>,
        interval: bool,
        elements: Vec<Element>,
        /// The set had no elements before: nft then sends its interval-end pad at 0.
        from_empty: bool,
    },
    DelSetElements {
        set: String,
        key: Vec<KeyType>,
        interval: bool,
        elements: Vec<Element>,
    },
    /// Create a verdict map with its elements.
    AddMap(Map),
    DelMap(String),
    AddMapElements {
        map: String,
        elements: Vec<MapElement>,
    },
    DelMapElements {
        map: String,
        elements: Vec<MapElement>,
    },
    /// Create a chain without rules ([`Op::SetRules`] adds them).
    AddChain(Chain),
    /// Give a chain the rules of `chain`: flush the old ones first when `flush`.
    SetRules {
        chain: Chain,
        flush: bool,
    },
    DelChain(String),
}

/// Elements only in `old`, and elements only in `new`, each in order. Model lists are
/// sorted, so this is one merge pass; unsorted input (a hand-made model) is sorted first.
fn sorted_diff<T: Ord + Clone>(old: &[T], new: &[T]) -> (Vec<T>, Vec<T>) {
    let strictly_sorted = |v: &[T]| v.windows(2).all(|w| w[0] < w[1]);
    if !(strictly_sorted(old) && strictly_sorted(new)) {
        let (mut o, mut n) = (old.to_vec(), new.to_vec());
        o.sort();
        o.dedup();
        n.sort();
        n.dedup();
        return sorted_diff(&o, &n);
    }
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        match old[i].cmp(&new[j]) {
            std::cmp::Ordering::Less => {
                removed.push(old[i].clone());
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                added.push(new[j].clone());
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    removed.extend_from_slice(&old[i..]);
    added.extend_from_slice(&new[j..]);
    (removed, added)
}

fn full(new: &Ruleset) -> Vec<Op> {
    vec![Op::FullSync(Box::new(new.clone()))]
}

/// Removing elements from a concatenated interval set (pipapo) costs the kernel work in
/// proportion to the set's size for every element removed: measured here, deleting 10,000
/// of 20,000 elements took minutes, while creating a set of 20,000 takes a tenth of a
/// second. Past this many removals the set is replaced whole instead.
const REPLACE_AFTER_REMOVALS: usize = 8;

/// The chain a rule jumps or goes to, if any.
fn rule_target(kind: &RuleKind) -> Option<&str> {
    let verdict = match kind {
        RuleKind::Jump(c) => return Some(c),
        RuleKind::Lookup { verdict, .. }
        | RuleKind::LookupPair { verdict, .. }
        | RuleKind::LearnedLookup { verdict, .. }
        | RuleKind::Verdict(verdict)
        | RuleKind::Counted(verdict) => verdict,
        _ => return None,
    };
    match verdict {
        Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
        _ => None,
    }
}

/// The operations that turn `old` (what the kernel holds) into `new`.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Vec<Op> {
    diff_views(&View::whole(old), &View::whole(new)).unwrap_or_else(|| full(new))
}

/// The operations that turn the objects of `old` into those of `new`: two views of the
/// same kind (whole models, or the same pods' parts of two models). `None` when the
/// change cannot be made in place and the table must be replaced whole.
pub fn diff_views(old: &View, new: &View) -> Option<Vec<Op>> {
    if old.family != new.family || old.name != new.name || old.comment != new.comment {
        return None;
    }
    let sets = diff_sets(&old.sets, &new.sets)?;
    let maps = diff_maps(&old.maps, &new.maps)?;
    let replaced = replace_sets(&sets.replace, &old.chains, &new.chains);
    let chains = diff_chains(&old.chains, &new.chains, &replaced.rebound)?;
    let mut ops = replaced.unbind;
    ops.extend(sets.add);
    ops.extend(sets.elements);
    ops.extend(chains.add);
    ops.extend(maps.add);
    // The rebound chains' rules may look up sets and jump to chains this batch adds.
    ops.extend(replaced.rebind);
    ops.extend(chains.rules);
    ops.extend(maps.elements);
    ops.extend(chains.delete);
    ops.extend(maps.delete);
    ops.extend(sets.delete);
    Some(ops)
}

/// What becomes of the sets: each list in the order it goes into the batch.
#[derive(Debug, Default)]
struct SetOps<'a> {
    add: Vec<Op>,
    elements: Vec<Op>,
    delete: Vec<Op>,
    /// Sets to delete and create again (see [`REPLACE_AFTER_REMOVALS`]).
    replace: Vec<&'a Set>,
}

fn by_name<'a, T>(objects: &[&'a T], name: impl Fn(&T) -> &str) -> BTreeMap<&'a str, &'a T> {
    objects.iter().map(|o| (name(o), *o)).collect()
}

fn diff_sets<'a>(old: &[&'a Set], new: &[&'a Set]) -> Option<SetOps<'a>> {
    let old_sets = by_name(old, |s| s.name.as_str());
    let new_sets = by_name(new, |s| s.name.as_str());
    let mut ops = SetOps::default();
    for (name, s) in &new_sets {
        match old_sets.get(name) {
            None => ops.add.push(Op::AddSet((*s).clone())),
            // A set's counter cannot be added or removed in place either.
            Some(o)
                if o.key != s.key
                    || o.interval != s.interval
                    || o.comment != s.comment
                    || o.counter != s.counter =>
            {
                return None
            }
            Some(o) => {
                let (removed, added) = sorted_diff(&o.elements, &s.elements);
                // A shared set is looked up by chains outside a pods' view, which a
                // replacement would have to flush too: it changes in place. Its pipapo
                // part holds only true ranges (ipBlocks, long port ranges), which rarely do.
                if s.key.len() > 1
                    && s.interval
                    && removed.len() > REPLACE_AFTER_REMOVALS
                    && !s.role.shared()
                {
                    ops.replace.push(*s);
                    continue;
                }
                ops.elements.extend(set_element_ops(o, s, removed, added));
            }
        }
    }
    for name in old_sets.keys() {
        if !new_sets.contains_key(name) {
            ops.delete.push(Op::DelSet(name.to_string()));
        }
    }
    Some(ops)
}

/// The element changes of one set (`old` to `new`): deletes, then adds.
fn set_element_ops(old: &Set, new: &Set, removed: Vec<Element>, added: Vec<Element>) -> Vec<Op> {
    let mut ops = Vec::new();
    if !removed.is_empty() {
        ops.push(Op::DelSetElements {
            set: new.name.clone(),
            key: new.key.clone(),
            interval: new.interval,
            elements: removed,
        });
    }
    if !added.is_empty() {
        ops.push(Op::AddSetElements {
            set: new.name.clone(),
            role: new.role,
            key: new.key.clone(),
            interval: new.interval,
            elements: added,
            from_empty: old.elements.is_empty(),
        });
    }
    ops
}

#[derive(Debug, Default)]
struct MapOps {
    add: Vec<Op>,
    elements: Vec<Op>,
    delete: Vec<Op>,
}

fn diff_maps(old: &[&Map], new: &[&Map]) -> Option<MapOps> {
    let old_maps = by_name(old, |m| m.name.as_str());
    let new_maps = by_name(new, |m| m.name.as_str());
    let mut ops = MapOps::default();
    for (name, m) in &new_maps {
        match old_maps.get(name) {
            None => ops.add.push(Op::AddMap((*m).clone())),
            Some(o) if o.key != m.key || o.comment != m.comment => return None,
            Some(o) => {
                let (removed, added) = sorted_diff(&o.elements, &m.elements);
                if !removed.is_empty() {
                    ops.elements.push(Op::DelMapElements {
                        map: m.name.clone(),
                        elements: removed,
                    });
                }
                if !added.is_empty() {
                    ops.elements.push(Op::AddMapElements {
                        map: m.name.clone(),
                        elements: added,
                    });
                }
            }
        }
    }
    for (name, m) in &old_maps {
        if !new_maps.contains_key(name) {
            // Its elements jump to chains this batch may delete: they go first, with the
            // other map elements, before any chain does.
            if !m.elements.is_empty() {
                ops.elements.push(Op::DelMapElements {
                    map: m.name.clone(),
                    elements: m.elements.clone(),
                });
            }
            ops.delete.push(Op::DelMap(name.to_string()));
        }
    }
    Some(ops)
}

/// Replacing sets: what goes first in the batch, and what goes with the other rules.
struct Replaced<'a> {
    /// Flush the chains whose rules look the sets up, delete the sets, create them again
    /// with the new elements.
    unbind: Vec<Op>,
    /// Give those chains their (new) rules back: after the sets and chains the batch
    /// adds, which the new rules may use.
    rebind: Vec<Op>,
    /// The chains rebound (which get no other rule operation).
    rebound: BTreeSet<&'a str>,
}

/// Replacing a set: unbind it (flush the chains whose rules look it up), delete it,
/// create it again with the new elements, and give the chains their rules back; all in
/// this one batch, so no packet sees the chain empty.
fn replace_sets<'a>(replace: &[&Set], old: &[&Chain], new: &[&'a Chain]) -> Replaced<'a> {
    let replaced: BTreeSet<&str> = replace.iter().map(|s| s.name.as_str()).collect();
    let existed: BTreeSet<&str> = old.iter().map(|c| c.name.as_str()).collect();
    let rebound: Vec<&Chain> = new
        .iter()
        .copied()
        .filter(|c| existed.contains(c.name.as_str()))
        .filter(|c| {
            c.rules
                .iter()
                .any(|r| r.kind.sets().any(|n| replaced.contains(&n)))
        })
        .collect();
    let mut unbind = Vec::new();
    for c in &rebound {
        unbind.push(Op::SetRules {
            chain: Chain {
                rules: Vec::new(),
                ..(*c).clone()
            },
            flush: true,
        });
    }
    for s in replace {
        unbind.push(Op::DelSet(s.name.clone()));
        unbind.push(Op::AddSet((*s).clone()));
    }
    let rebind = rebound
        .iter()
        .map(|c| Op::SetRules {
            chain: (*c).clone(),
            flush: false,
        })
        .collect();
    Replaced {
        unbind,
        rebind,
        rebound: rebound.iter().map(|c| c.name.as_str()).collect(),
    }
}

#[derive(Debug, Default)]
struct ChainOps {
    add: Vec<Op>,
    rules: Vec<Op>,
    delete: Vec<Op>,
}

fn diff_chains(old: &[&Chain], new: &[&Chain], rebound: &BTreeSet<&str>) -> Option<ChainOps> {
    let old_chains = by_name(old, |c| c.name.as_str());
    let new_chains = by_name(new, |c| c.name.as_str());
    let mut ops = ChainOps::default();
    // Keep the model's chain order (base chains first) for determinism.
    for c in new {
        match old_chains.get(c.name.as_str()) {
            None => {
                ops.add.push(Op::AddChain(Chain {
                    rules: Vec::new(),
                    ..(*c).clone()
                }));
                if !c.rules.is_empty() {
                    ops.rules.push(Op::SetRules {
                        chain: (*c).clone(),
                        flush: false,
                    });
                }
            }
            Some(o) if o.base != c.base || o.comment != c.comment => return None,
            Some(_) if rebound.contains(c.name.as_str()) => {}
            Some(o) if o.rules != c.rules => ops.rules.push(Op::SetRules {
                chain: (*c).clone(),
                flush: true,
            }),
            Some(_) => {}
        }
    }
    let gone = old
        .iter()
        .copied()
        .filter(|c| !new_chains.contains_key(c.name.as_str()));
    ops.delete = deletion_order(gone.collect());
    Some(ops)
}

/// A chain cannot go while a rule still jumps to it (EBUSY): a deleted chain goes after
/// every deleted chain that jumps or goes to it (a pod chain's drop tail after its
/// direction's chain, its input chain and its audit chains; an audit chain after the pod
/// chain). Chains are deleted in rounds: each round, in the given order, those no chain
/// still to go refers to. The model's jumps form no cycle; were there one, its chains
/// would go last, in order.
fn deletion_order(gone: Vec<&Chain>) -> Vec<Op> {
    let targets = |c: &Chain| -> BTreeSet<String> {
        c.rules
            .iter()
            .filter_map(|r| rule_target(&r.kind))
            .map(str::to_string)
            .collect()
    };
    let mut left: Vec<(&Chain, BTreeSet<String>)> =
        gone.into_iter().map(|c| (c, targets(c))).collect();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let referred: BTreeSet<&str> = left
            .iter()
            .flat_map(|(_, t)| t.iter().map(String::as_str))
            .collect();
        let (ready, rest): (Vec<_>, Vec<_>) = left
            .iter()
            .partition(|(c, _)| !referred.contains(c.name.as_str()));
        let (ready, rest) = match ready.is_empty() {
            true => (rest, Vec::new()),
            false => (ready, rest),
        };
        out.extend(ready.iter().map(|(c, _)| Op::DelChain(c.name.clone())));
        left = rest.into_iter().cloned().collect();
    }
    out
}

#[cfg(test)]
mod tests {
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
        assert!(
            matches!(&ops[0], Op::SetRules { chain, flush: true } if chain.name == "ingress/x/b")
        );
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
}
