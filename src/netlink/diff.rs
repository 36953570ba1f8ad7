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
#[path = "diff_tests.rs"]
mod tests;
