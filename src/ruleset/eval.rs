//! Runs a packet through the ruleset model in memory: what the kernel would do on the
//! forward hook (or the input hook, for a pod's packet to its own node) with this table
//! loaded. It follows the same rule shapes the backends encode.
//!
//! This is a production evaluator: the controller judges every tracked connection with it
//! after a batch that can revoke (`revoke`), and tests check the model against the policy
//! graph with it. So it never panics: a reference the model does not hold (which a built
//! model never has; the diff's order test checks the same for batches) or a jump loop is
//! an [`EvalError`]. Lookups use the model's order (set elements and map keys sorted): a
//! binary search finds the candidates, so a lookup costs O(log n) in a one-field set, a
//! set of points or a verdict map, and a concatenated range set is scanned only up to the
//! packet's first field.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::model::*;
use super::names;
use crate::fqdn::facts::Learned;

/// A new connection's first packet (conntrack state NEW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    /// IP protocol number.
    pub l4proto: u8,
    pub dport: u16,
}

fn field_has(f: &Field, v: FieldValue) -> bool {
    match (f, v) {
        (Field::Ipv4(a, b), FieldValue::Addr(IpAddr::V4(x))) => *a <= x && x <= *b,
        (Field::Ipv6(a, b), FieldValue::Addr(IpAddr::V6(x))) => *a <= x && x <= *b,
        (Field::Proto(a, b), FieldValue::Proto(x)) => *a <= x && x <= *b,
        (Field::Port(a, b), FieldValue::Port(x)) => *a <= x && x <= *b,
        _ => false,
    }
}

#[derive(Debug, Clone, Copy)]
enum FieldValue {
    Addr(IpAddr),
    Proto(u8),
    Port(u16),
}

fn key_has(key: &[Field], values: &[FieldValue]) -> bool {
    key.len() == values.len() && key.iter().zip(values).all(|(f, v)| field_has(f, *v))
}

/// A field's first value, and a packet's value, on one scale (fields of one key position
/// are all of one type, so only the order within a type matters).
fn field_start(f: &Field) -> u128 {
    match f {
        Field::Ipv4(a, _) => u32::from(*a) as u128,
        Field::Ipv6(a, _) => u128::from(*a),
        Field::Proto(a, _) => *a as u128,
        Field::Port(a, _) => *a as u128,
    }
}

fn value_of(v: FieldValue) -> u128 {
    match v {
        FieldValue::Addr(IpAddr::V4(a)) => u32::from(a) as u128,
        FieldValue::Addr(IpAddr::V6(a)) => u128::from(a),
        FieldValue::Proto(p) => p as u128,
        FieldValue::Port(p) => p as u128,
    }
}

/// The elements (sorted by key) whose first field starts at or before the packet's value:
/// the only ones that can match.
fn candidates<'a, T>(
    elements: &'a [T],
    key: impl Fn(&T) -> &Key,
    values: &[FieldValue],
) -> &'a [T] {
    let Some(v0) = values.first().map(|v| value_of(*v)) else {
        return &[];
    };
    let end = elements.partition_point(|e| key(e).first().is_some_and(|f| field_start(f) <= v0));
    &elements[..end]
}

/// Whether `set` holds an element that matches `values`.
fn set_has(set: &Set, values: &[FieldValue]) -> bool {
    let cands = candidates(&set.elements, |e| &e.key, values);
    let v0 = value_of(values[0]);
    if set.key.len() == 1 {
        // One field: disjoint ranges (or points), so only the last candidate can match.
        return cands.last().is_some_and(|e| key_has(&e.key, values));
    }
    if !set.interval {
        // Points: the matches start exactly at the value.
        return cands
            .iter()
            .rev()
            .take_while(|e| field_start(&e.key[0]) == v0)
            .any(|e| key_has(&e.key, values));
    }
    cands.iter().rev().any(|e| key_has(&e.key, values))
}

/// The verdict a map (unique point keys) gives `values`.
fn map_get<'a>(map: &'a Map, values: &[FieldValue]) -> Option<&'a Verdict> {
    let cands = candidates(&map.elements, |e| &e.key, values);
    let v0 = value_of(values[0]);
    cands
        .iter()
        .rev()
        .take_while(|e| e.key.first().is_some_and(|f| field_start(f) == v0))
        .find(|e| key_has(&e.key, values))
        .map(|e| &e.verdict)
}

/// Why a packet could not be walked through a model: a reference it does not hold, or
/// jumps nested deeper than the kernel allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("the model has no chain {0}")]
    NoChain(String),
    #[error("the model has no set {0}")]
    NoSet(String),
    #[error("the model has no map {0}")]
    NoMap(String),
    #[error("jumps nested more than {MAX_DEPTH} deep at chain {0}")]
    TooDeep(String),
}

/// The kernel's limit on nested jumps (NFT_JUMP_STACK_SIZE).
const MAX_DEPTH: usize = 16;

enum Flow {
    Continue,
    Verdict(Verdict),
}

fn pick(addr: &Addr, p: &Packet) -> IpAddr {
    match addr {
        Addr::Saddr => p.saddr,
        Addr::Daddr => p.daddr,
    }
}

fn same_family(a: IpAddr, family: &IpFamily) -> bool {
    a.is_ipv4() == (*family == IpFamily::V4)
}

fn set<'a>(rs: &'a Ruleset, name: &str) -> Result<&'a Set, EvalError> {
    rs.set(name).ok_or_else(|| EvalError::NoSet(name.into()))
}

/// What one rule does with the packet: `None` to go on to the next rule. One arm per rule
/// shape, like the netlink encoder's `rule_exprs`: the table is checked against it whole.
fn rule_verdict(w: &Walker, kind: &RuleKind, p: &Packet) -> Result<Option<Verdict>, EvalError> {
    let rs = w.rs;
    let addr_only = |a| [FieldValue::Addr(a)];
    let with_ports = |a| {
        [
            FieldValue::Addr(a),
            FieldValue::Proto(p.l4proto),
            FieldValue::Port(p.dport),
        ]
    };
    Ok(match kind {
        // The packet is the first of its connection: never established.
        RuleKind::CtEstablishedAccept => None,
        // Pods are not host-local addresses on the forward path.
        RuleKind::FibSaddrLocalAccept => None,
        RuleKind::Icmpv6NdAccept => None,
        // Held flows are the controller's, not the model's: a first packet judged
        // against the model never matches one.
        RuleKind::HeldDrop { .. } => None,
        // Logging sees the packet and lets it go on to the rule after it.
        RuleKind::LogDenied { .. } => None,
        RuleKind::Jump(c) => Some(Verdict::Jump(c.clone())),
        RuleKind::Verdict(v) => Some(v.clone()),
        RuleKind::Counted(v) => Some(v.clone()),
        RuleKind::DispatchVmap { family, addr, map } => {
            let a = pick(addr, p);
            let m = rs.map(map).ok_or_else(|| EvalError::NoMap(map.clone()))?;
            match same_family(a, family) {
                true => map_get(m, &addr_only(a)).cloned(),
                false => None,
            }
        }
        RuleKind::Lookup {
            family,
            addr,
            key,
            set: name,
            verdict,
            ..
        } => {
            let a = pick(addr, p);
            let s = set(rs, name)?;
            let hit = match key.has_ports() {
                true => set_has(s, &with_ports(a)),
                false => set_has(s, &addr_only(a)),
            };
            (same_family(a, family) && hit).then(|| verdict.clone())
        }
        RuleKind::LookupPair {
            family,
            addr,
            addrs,
            ports,
            verdict,
            ..
        } => {
            let a = pick(addr, p);
            let (addrs, ports) = (set(rs, addrs)?, set(rs, ports)?);
            let port = [FieldValue::Proto(p.l4proto), FieldValue::Port(p.dport)];
            (same_family(a, family) && set_has(addrs, &addr_only(a)) && set_has(ports, &port))
                .then(|| verdict.clone())
        }
        RuleKind::LearnedLookup {
            family,
            key,
            open,
            learned,
            verdict,
            ..
        } => {
            let a = p.daddr;
            let s = set(rs, open)?;
            let hit = match key.has_ports() {
                true => set_has(s, &with_ports(a)),
                false => set_has(s, &addr_only(a)),
            };
            let taught = set_has(set(rs, learned)?, &addr_only(a))
                || w.learned
                    .get(learned.as_str())
                    .is_some_and(|l| l.contains(&a));
            (same_family(a, family) && hit && taught).then(|| verdict.clone())
        }
        // The prerouting hook's: the evaluator walks the forward and input hooks.
        RuleKind::SteerTransparent { .. } | RuleKind::SteerDns { .. } => None,
        RuleKind::MarkedDispatch { family, map, .. } => {
            let m = rs.map(map).ok_or_else(|| EvalError::NoMap(map.clone()))?;
            match w.steered && same_family(p.saddr, family) {
                true => map_get(m, &addr_only(p.saddr)).cloned(),
                false => None,
            }
        }
        RuleKind::DropUnknown {
            family,
            addr,
            cidrs,
            known,
        } => {
            let a = pick(addr, p);
            let (cidrs, known) = (set(rs, cidrs)?, set(rs, known)?);
            let unknown = set_has(cidrs, &addr_only(a)) && !set_has(known, &addr_only(a));
            (same_family(a, family) && unknown).then_some(Verdict::Drop)
        }
    })
}

/// One walk's context: the table, what counts as learned (by learned set name), and
/// whether the packet carries the DNS steering's mark.
struct Walker<'a> {
    rs: &'a Ruleset,
    learned: BTreeMap<String, BTreeSet<IpAddr>>,
    steered: bool,
}

impl<'a> Walker<'a> {
    fn new(rs: &'a Ruleset, learned: Option<&Learned>, steered: bool) -> Walker<'a> {
        let mut sets: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for (policy, rule, addrs) in learned.into_iter().flat_map(Learned::rules) {
            for a in addrs.keys() {
                let name = names::learned_set(policy, rule, a.is_ipv6());
                sets.entry(name).or_default().insert(*a);
            }
        }
        Walker {
            rs,
            learned: sets,
            steered,
        }
    }
}

fn run_chain(
    w: &Walker,
    name: &str,
    p: &Packet,
    depth: usize,
    count: &mut usize,
) -> Result<Flow, EvalError> {
    if depth >= MAX_DEPTH {
        return Err(EvalError::TooDeep(name.into()));
    }
    let chain =
        w.rs.chain(name)
            .ok_or_else(|| EvalError::NoChain(name.into()))?;
    for rule in &chain.rules {
        *count += 1;
        match rule_verdict(w, &rule.kind, p)? {
            None => continue,
            Some(Verdict::Jump(c)) => match run_chain(w, &c, p, depth + 1, count)? {
                Flow::Continue | Flow::Verdict(Verdict::Return) => continue,
                v => return Ok(v),
            },
            Some(Verdict::Goto(c)) => return run_chain(w, &c, p, depth + 1, count),
            Some(v) => return Ok(Flow::Verdict(v)),
        }
    }
    Ok(Flow::Continue)
}

/// What the forward hook does with a packet: the verdict, and how many rules it
/// evaluated on the way (a verdict-map or set lookup is one rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    pub rules: usize,
    pub accepted: bool,
}

/// Walks `p` through the forward hook of this table.
pub fn forward_walk(rs: &Ruleset, p: &Packet) -> Result<Walk, EvalError> {
    hook_walk(&Walker::new(rs, None, false), Hook::Forward, p)
}

/// [`forward_walk`], with `learned` counting as held by the learned sets (as the DNS
/// proxy would have added them).
pub fn forward_walk_learned(
    rs: &Ruleset,
    learned: &Learned,
    p: &Packet,
) -> Result<Walk, EvalError> {
    hook_walk(&Walker::new(rs, Some(learned), false), Hook::Forward, p)
}

/// [`input_walk`], with `learned` counting as held by the learned sets.
pub fn input_walk_learned(rs: &Ruleset, learned: &Learned, p: &Packet) -> Result<Walk, EvalError> {
    hook_walk(&Walker::new(rs, Some(learned), false), Hook::Input, p)
}

/// Walks a DNS query the steering chain sent to the proxy (`tproxy`, marked) through the
/// input hook: it is delivered to this node with its original destination, and must be
/// judged as the forward path would judge it.
pub fn steered_input_walk(rs: &Ruleset, learned: &Learned, p: &Packet) -> Result<Walk, EvalError> {
    hook_walk(&Walker::new(rs, Some(learned), true), Hook::Input, p)
}

/// Walks `p` through the input hook of this table: a pod's packet to an address of this
/// node. A table without an input chain (no pod has egress tiers) accepts it.
pub fn input_walk(rs: &Ruleset, p: &Packet) -> Result<Walk, EvalError> {
    hook_walk(&Walker::new(rs, None, false), Hook::Input, p)
}

/// Whether `p` passes the input hook of this table.
pub fn input_accepts(rs: &Ruleset, p: &Packet) -> Result<bool, EvalError> {
    Ok(input_walk(rs, p)?.accepted)
}

fn hook_walk(w: &Walker, hook: Hook, p: &Packet) -> Result<Walk, EvalError> {
    let Some(base) =
        w.rs.chains()
            .iter()
            .find(|c| c.base.as_ref().is_some_and(|b| b.hook == hook))
    else {
        return Ok(Walk {
            rules: 0,
            accepted: true,
        });
    };
    let policy = base
        .base
        .as_ref()
        .map(|b| b.policy.clone())
        .unwrap_or(Verdict::Accept);
    let mut rules = 0;
    let accepted = match run_chain(w, &base.name, p, 0, &mut rules)? {
        Flow::Verdict(Verdict::Drop) => false,
        Flow::Verdict(Verdict::Accept) => true,
        _ => policy == Verdict::Accept,
    };
    Ok(Walk { rules, accepted })
}

/// Whether `p` passes the forward hook of this table.
pub fn forward_accepts(rs: &Ruleset, p: &Packet) -> Result<bool, EvalError> {
    Ok(forward_walk(rs, p)?.accepted)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// A small deterministic generator: the test needs spread, not secrecy.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: u32) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % below as u64) as u32
        }
    }

    fn set_of(mut keys: Vec<Key>, interval: bool, fields: usize) -> Set {
        keys.sort();
        keys.dedup();
        Set {
            name: "s".into(),
            role: SetRole::KnownPods,
            key: vec![KeyType::Ipv4Addr; fields],
            interval,
            comment: None,
            elements: keys.into_iter().map(|key| Element { key }).collect(),
            timeout: None,
            counter: false,
        }
    }

    fn v4(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(n)
    }

    /// The binary searches find exactly what a scan of every element finds, in each shape
    /// a built model has: disjoint one-field ranges, points, concatenated ranges.
    #[test]
    fn indexed_lookups_agree_with_a_scan() {
        let mut r = Lcg(7);
        for round in 0..300 {
            let n = 1 + r.next(40);
            // One field, disjoint ranges: consecutive cut points of a line.
            let mut cuts: Vec<u32> = (0..2 * n).map(|_| r.next(200)).collect();
            cuts.sort();
            cuts.dedup();
            let one: Vec<Key> = cuts
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| Key::new(&[Field::Ipv4(v4(c[0]), v4(c[1] - 1).max(v4(c[0])))]))
                .collect();
            let points: Vec<Key> = (0..n)
                .map(|_| {
                    let (a, p) = (r.next(30), r.next(5) as u8);
                    Key::new(&[
                        Field::Ipv4(v4(a), v4(a)),
                        Field::Proto(p, p),
                        Field::Port(80, 80),
                    ])
                })
                .collect();
            let ranges: Vec<Key> = (0..n)
                .map(|_| {
                    let (a, w, p) = (r.next(30), r.next(20), r.next(100) as u16);
                    let ports = Field::Port(p, p + r.next(50) as u16);
                    Key::new(&[Field::Ipv4(v4(a), v4(a + w)), Field::Proto(6, 6), ports])
                })
                .collect();
            let shapes = [
                (set_of(one, true, 1), 1),
                (set_of(points, false, 3), 3),
                (set_of(ranges, true, 3), 3),
            ];
            for (set, fields) in &shapes {
                for _ in 0..40 {
                    let a = FieldValue::Addr(IpAddr::V4(v4(r.next(220))));
                    let values = match fields {
                        1 => vec![a],
                        _ => vec![
                            a,
                            FieldValue::Proto(r.next(8) as u8),
                            FieldValue::Port(r.next(160) as u16),
                        ],
                    };
                    let scan = set.elements.iter().any(|e| key_has(&e.key, &values));
                    assert_eq!(
                        set_has(set, &values),
                        scan,
                        "round {round}: {values:?} in {set:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_model_missing_what_a_rule_names_is_an_error_not_a_panic() {
        let mut rs = Ruleset::new("t", None);
        rs.put_chain(Chain {
            name: "forward".into(),
            base: Some(BaseChain {
                hook: Hook::Forward,
                priority: 0,
                policy: Verdict::Accept,
            }),
            comment: None,
            rules: vec![Rule::new(RuleKind::Jump("gone".into()))],
        });
        let p = Packet {
            saddr: "10.0.0.1".parse().unwrap(),
            daddr: "10.0.0.2".parse().unwrap(),
            l4proto: 6,
            dport: 80,
        };
        assert_eq!(
            forward_accepts(&rs, &p),
            Err(EvalError::NoChain("gone".into()))
        );
        rs.put_chain(Chain {
            name: "gone".into(),
            base: None,
            comment: None,
            rules: vec![Rule::new(RuleKind::Jump("gone".into()))],
        });
        assert_eq!(
            forward_accepts(&rs, &p),
            Err(EvalError::TooDeep("gone".into()))
        );
    }
}
