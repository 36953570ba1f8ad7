#![cfg(feature = "netlink")]
//! A kernel-free nftables table (included with `#[path = "common/fake_table.rs"]`): it
//! applies a batch's operations ([`Op`], what `nftpol::netlink::diff` produces) one after
//! the other, and refuses an operation where the kernel would, with the kernel's errno:
//!
//! - a rule that looks up a set, dispatches through a map, or jumps to a chain that does
//!   not exist (yet, or any more): ENOENT; a jump to a base chain: EOPNOTSUPP;
//! - an element for a set or map that does not exist, an element deleted that is not
//!   there, a map element jumping to a chain that does not exist: ENOENT;
//! - an interval element overlapping another one, a map key already bound to another
//!   verdict: EEXIST;
//! - a set or map deleted while a rule still uses it, a chain deleted while a rule or a
//!   map element still jumps to it: EBUSY (deleting a chain drops its own rules first,
//!   as `NFT_MSG_DELCHAIN` without `NLM_F_NONREC` does);
//! - an object added again with another definition (type, flags, hook): EEXIST. Added
//!   again alike, it is left as it is, as the kernel does without `NLM_F_EXCL`.
//!
//! As in the kernel, a batch is atomic: [`FakeTable::apply`] changes the table only when
//! every operation went through. The table is a [`Ruleset`] (elements kept sorted), so
//! after a batch it compares with the model it should now be.
//!
//! Not modelled: chain loops (ELOOP), key types of lookups against the set's type, the
//! kernel's limits (chain depth, element counts).
#![allow(dead_code)]

use std::fmt;

use nftpol::netlink::Op;
use nftpol::ruleset::model::*;

/// An operation the kernel would refuse: which one (its index in the batch), the errno
/// the kernel would answer with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub index: usize,
    pub errno: &'static str,
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "operation {}: {}: {}", self.index, self.errno, self.why)
    }
}

type Check = Result<(), (&'static str, String)>;

fn refuse(errno: &'static str, why: String) -> Check {
    Err((errno, why))
}

/// The table the kernel would hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTable(pub Ruleset);

impl FakeTable {
    /// A table as a full sync leaves it; refused like [`Op::FullSync`] when the model
    /// itself refers to something it does not hold.
    pub fn load(model: &Ruleset) -> Result<FakeTable, Refused> {
        let mut t = FakeTable(Ruleset::new(model.name.clone(), model.comment.clone()));
        t.apply(&[Op::FullSync(Box::new(model.clone()))])?;
        Ok(t)
    }

    /// Applies `ops` in order, all or nothing.
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), Refused> {
        let mut next = self.clone();
        for (index, op) in ops.iter().enumerate() {
            next.op(op)
                .map_err(|(errno, why)| Refused { index, errno, why })?;
        }
        *self = next;
        Ok(())
    }

    fn op(&mut self, op: &Op) -> Check {
        match op {
            Op::FullSync(model) => self.full_sync(model),
            Op::AddSet(s) => self.add_set(s),
            Op::DelSet(name) => self.del_set(name),
            Op::AddSetElements { set, elements, .. } => self.add_set_elements(set, elements),
            Op::DelSetElements { set, elements, .. } => self.del_set_elements(set, elements),
            Op::AddMap(m) => self.add_map(m),
            Op::DelMap(name) => self.del_map(name),
            Op::AddMapElements { map, elements } => self.add_map_elements(map, elements),
            Op::DelMapElements { map, elements } => self.del_map_elements(map, elements),
            Op::AddChain(c) => self.add_chain(c),
            Op::SetRules { chain, flush } => self.set_rules(chain, *flush),
            Op::DelChain(name) => self.del_chain(name),
        }
    }

    /// The table is replaced whole, in the order the encoder fills a new one: chains
    /// (empty), sets, maps, then the rules.
    fn full_sync(&mut self, model: &Ruleset) -> Check {
        let mut fresh = FakeTable(Ruleset::new(model.name.clone(), model.comment.clone()));
        for c in model.chains() {
            fresh.add_chain(&Chain {
                rules: Vec::new(),
                ..c.clone()
            })?;
        }
        for s in model.sets() {
            fresh.add_set(s)?;
        }
        for m in model.maps() {
            fresh.add_map(m)?;
        }
        for c in model.chains() {
            fresh.set_rules(c, false)?;
        }
        *self = fresh;
        Ok(())
    }

    // === sets ===

    fn add_set(&mut self, s: &Set) -> Check {
        match self.0.set(&s.name) {
            Some(old)
                if (&old.key, old.interval, &old.comment, old.timeout)
                    != (&s.key, s.interval, &s.comment, s.timeout) =>
            {
                return refuse(
                    "EEXIST",
                    format!("set {} exists with another definition", s.name),
                )
            }
            Some(_) => {}
            None => self.0.put_set(Set {
                elements: Vec::new(),
                ..s.clone()
            }),
        }
        self.add_set_elements(&s.name, &s.elements)
    }

    fn del_set(&mut self, name: &str) -> Check {
        if self.0.set(name).is_none() {
            return refuse("ENOENT", format!("delete set {name}: no such set"));
        }
        if let Some(c) = self
            .0
            .chains()
            .iter()
            .find(|c| c.lookups().any(|s| s == name))
        {
            return refuse(
                "EBUSY",
                format!("delete set {name}: chain {} still looks it up", c.name),
            );
        }
        self.0.remove_set(name);
        Ok(())
    }

    fn add_set_elements(&mut self, name: &str, elements: &[Element]) -> Check {
        let Some(set) = self.0.set(name) else {
            return refuse("ENOENT", format!("elements of set {name}: no such set"));
        };
        let interval = set.interval;
        let mut have = set.elements.clone();
        for e in elements {
            if !interval && !e.key.is_point() {
                return refuse("EINVAL", format!("set {name}: a range {e:?} in a hash set"));
            }
            if have.binary_search(e).is_ok() {
                continue;
            }
            if let Some(clash) = have.iter().find(|h| interval && overlap(&h.key, &e.key)) {
                return refuse("EEXIST", format!("set {name}: {e:?} overlaps {clash:?}"));
            }
            let at = have.binary_search(e).unwrap_err();
            have.insert(at, *e);
        }
        *self.0.set_elements_mut(name).unwrap() = have;
        Ok(())
    }

    fn del_set_elements(&mut self, name: &str, elements: &[Element]) -> Check {
        let Some(have) = self.0.set_elements_mut(name) else {
            return refuse(
                "ENOENT",
                format!("delete elements of set {name}: no such set"),
            );
        };
        for e in elements {
            match have.binary_search(e) {
                Ok(at) => {
                    have.remove(at);
                }
                Err(_) => {
                    return refuse("ENOENT", format!("set {name}: no element {e:?} to delete"))
                }
            }
        }
        Ok(())
    }

    // === maps ===

    fn add_map(&mut self, m: &Map) -> Check {
        match self.0.map(&m.name) {
            Some(old) if (&old.key, &old.comment) != (&m.key, &m.comment) => {
                return refuse(
                    "EEXIST",
                    format!("map {} exists with another definition", m.name),
                )
            }
            Some(_) => {}
            None => self.0.put_map(Map {
                elements: Vec::new(),
                ..m.clone()
            }),
        }
        self.add_map_elements(&m.name, &m.elements)
    }

    fn del_map(&mut self, name: &str) -> Check {
        if self.0.map(name).is_none() {
            return refuse("ENOENT", format!("delete map {name}: no such map"));
        }
        if let Some(c) = self
            .0
            .chains()
            .iter()
            .find(|c| c.rules.iter().any(|r| rule_map(&r.kind) == Some(name)))
        {
            return refuse(
                "EBUSY",
                format!(
                    "delete map {name}: chain {} still dispatches through it",
                    c.name
                ),
            );
        }
        self.0.remove_map(name);
        Ok(())
    }

    fn add_map_elements(&mut self, name: &str, elements: &[MapElement]) -> Check {
        if self.0.map(name).is_none() {
            return refuse("ENOENT", format!("elements of map {name}: no such map"));
        }
        for e in elements {
            let what = format!("map {name}, element {:?}", e.key);
            self.target(verdict_target(&e.verdict), &what)?;
        }
        let have = self.0.map_elements_mut(name).unwrap();
        for e in elements {
            match have.binary_search_by(|h| h.key.cmp(&e.key)) {
                Ok(at) if have[at].verdict == e.verdict => {}
                Ok(at) => {
                    return refuse(
                        "EEXIST",
                        format!(
                            "map {name}: {:?} is bound to {:?}, not {:?}",
                            e.key, have[at].verdict, e.verdict
                        ),
                    )
                }
                Err(at) => have.insert(at, e.clone()),
            }
        }
        Ok(())
    }

    fn del_map_elements(&mut self, name: &str, elements: &[MapElement]) -> Check {
        let Some(have) = self.0.map_elements_mut(name) else {
            return refuse(
                "ENOENT",
                format!("delete elements of map {name}: no such map"),
            );
        };
        for e in elements {
            match have.binary_search_by(|h| h.key.cmp(&e.key)) {
                Ok(at) => {
                    have.remove(at);
                }
                Err(_) => {
                    return refuse(
                        "ENOENT",
                        format!("map {name}: no element {:?} to delete", e.key),
                    )
                }
            }
        }
        Ok(())
    }

    // === chains and rules ===

    fn add_chain(&mut self, c: &Chain) -> Check {
        match self.0.chain(&c.name) {
            Some(old) if (&old.base, &old.comment) != (&c.base, &c.comment) => refuse(
                "EEXIST",
                format!("chain {} exists with another definition", c.name),
            ),
            Some(_) => Ok(()),
            None => {
                self.0.put_chain(Chain {
                    rules: Vec::new(),
                    ..c.clone()
                });
                self.set_rules(c, false)
            }
        }
    }

    /// Flushes the chain first when `flush`, then appends the rules of `chain`.
    fn set_rules(&mut self, chain: &Chain, flush: bool) -> Check {
        let name = &chain.name;
        if self.0.chain(name).is_none() {
            return refuse("ENOENT", format!("rules of chain {name}: no such chain"));
        }
        for (i, r) in chain.rules.iter().enumerate() {
            let what = format!("chain {name}, rule {i}");
            for s in r.kind.sets() {
                if self.0.set(s).is_none() {
                    return refuse(
                        "ENOENT",
                        format!("{what} looks up set {s}, which is not there"),
                    );
                }
            }
            if let Some(m) = rule_map(&r.kind) {
                if self.0.map(m).is_none() {
                    return refuse(
                        "ENOENT",
                        format!("{what} dispatches through map {m}, which is not there"),
                    );
                }
            }
            self.target(rule_target(&r.kind), &what)?;
        }
        self.0.edit_chain(name, |c| {
            if flush {
                c.rules.clear();
            }
            c.rules.extend(chain.rules.iter().cloned());
        });
        Ok(())
    }

    fn del_chain(&mut self, name: &str) -> Check {
        if self.0.chain(name).is_none() {
            return refuse("ENOENT", format!("delete chain {name}: no such chain"));
        }
        if let Some(c) =
            self.0.chains().iter().find(|c| {
                c.name != name && c.rules.iter().any(|r| rule_target(&r.kind) == Some(name))
            })
        {
            return refuse(
                "EBUSY",
                format!("delete chain {name}: chain {} still jumps to it", c.name),
            );
        }
        if let Some(m) = self.0.maps().iter().find(|m| {
            m.elements
                .iter()
                .any(|e| verdict_target(&e.verdict) == Some(name))
        }) {
            return refuse(
                "EBUSY",
                format!(
                    "delete chain {name}: an element of map {} still jumps to it",
                    m.name
                ),
            );
        }
        self.0.remove_chain(name);
        Ok(())
    }

    /// A jump or goto must go to a regular chain that exists.
    fn target(&self, chain: Option<&str>, what: &str) -> Check {
        let Some(c) = chain else {
            return Ok(());
        };
        match self.0.chain(c) {
            None => refuse(
                "ENOENT",
                format!("{what} jumps to chain {c}, which is not there"),
            ),
            Some(chain) if chain.base.is_some() => {
                refuse("EOPNOTSUPP", format!("{what} jumps to base chain {c}"))
            }
            Some(_) => Ok(()),
        }
    }
}

/// The chain a verdict jumps or goes to.
fn verdict_target(verdict: &Verdict) -> Option<&str> {
    match verdict {
        Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
        _ => None,
    }
}

/// The chain a rule jumps or goes to.
fn rule_target(kind: &RuleKind) -> Option<&str> {
    match kind {
        RuleKind::Jump(c) => Some(c),
        RuleKind::Lookup { verdict, .. }
        | RuleKind::LookupPair { verdict, .. }
        | RuleKind::LearnedLookup { verdict, .. }
        | RuleKind::Verdict(verdict) => verdict_target(verdict),
        _ => None,
    }
}

/// The map a rule dispatches through.
fn rule_map(kind: &RuleKind) -> Option<&str> {
    match kind {
        RuleKind::DispatchVmap { map, .. } | RuleKind::MarkedDispatch { map, .. } => Some(map),
        _ => None,
    }
}

/// Two keys overlap when every field's ranges do.
fn overlap(a: &Key, b: &Key) -> bool {
    a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| fields_overlap(x, y))
}

fn fields_overlap(a: &Field, b: &Field) -> bool {
    match (*a, *b) {
        (Field::Ipv4(a0, a1), Field::Ipv4(b0, b1)) => a0 <= b1 && b0 <= a1,
        (Field::Ipv6(a0, a1), Field::Ipv6(b0, b1)) => a0 <= b1 && b0 <= a1,
        (Field::Proto(a0, a1), Field::Proto(b0, b1)) => a0 <= b1 && b0 <= a1,
        (Field::Port(a0, a1), Field::Port(b0, b1)) => a0 <= b1 && b0 <= a1,
        _ => false,
    }
}
