//! Runs a packet through the ruleset model in memory: what the kernel would do on the
//! forward hook (or the input hook, for a pod's packet to its own node) with this table
//! loaded. Used by tests to check the model against the
//! policy graph without a kernel; it follows the same rule shapes the backends encode.

use std::net::IpAddr;

use super::model::*;

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

enum Flow {
    Continue,
    Verdict(Verdict),
}

fn run_chain(rs: &Ruleset, name: &str, p: &Packet, depth: usize, count: &mut usize) -> Flow {
    assert!(depth < 16, "jump loop at chain {name}");
    let chain = rs.chain(name).unwrap_or_else(|| panic!("no chain {name}"));
    for rule in &chain.rules {
        *count += 1;
        let verdict = match &rule.kind {
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
            RuleKind::DispatchVmap { family, addr, map } => {
                let a = match addr {
                    Addr::Saddr => p.saddr,
                    Addr::Daddr => p.daddr,
                };
                if a.is_ipv4() != (*family == IpFamily::V4) {
                    None
                } else {
                    let m = rs.map(map).unwrap_or_else(|| panic!("no map {map}"));
                    m.elements
                        .iter()
                        .find(|e| key_has(&e.key, &[FieldValue::Addr(a)]))
                        .map(|e| e.verdict.clone())
                }
            }
            RuleKind::Lookup {
                family,
                addr,
                key,
                set,
                verdict,
                log: _,
            } => {
                let a = match addr {
                    Addr::Saddr => p.saddr,
                    Addr::Daddr => p.daddr,
                };
                if a.is_ipv4() != (*family == IpFamily::V4) {
                    None
                } else {
                    let s = rs.set(set).unwrap_or_else(|| panic!("no set {set}"));
                    let values: Vec<FieldValue> = if key.has_ports() {
                        vec![
                            FieldValue::Addr(a),
                            FieldValue::Proto(p.l4proto),
                            FieldValue::Port(p.dport),
                        ]
                    } else {
                        vec![FieldValue::Addr(a)]
                    };
                    s.elements
                        .iter()
                        .any(|e| key_has(&e.key, &values))
                        .then(|| verdict.clone())
                }
            }
            RuleKind::LookupPair {
                family,
                addr,
                addrs,
                ports,
                verdict,
                ..
            } => {
                let a = match addr {
                    Addr::Saddr => p.saddr,
                    Addr::Daddr => p.daddr,
                };
                let has = |name: &str, values: &[FieldValue]| {
                    let s = rs.set(name).unwrap_or_else(|| panic!("no set {name}"));
                    s.elements.iter().any(|e| key_has(&e.key, values))
                };
                (a.is_ipv4() == (*family == IpFamily::V4)
                    && has(addrs, &[FieldValue::Addr(a)])
                    && has(
                        ports,
                        &[FieldValue::Proto(p.l4proto), FieldValue::Port(p.dport)],
                    ))
                .then(|| verdict.clone())
            }
            RuleKind::DropUnknown {
                family,
                addr,
                cidrs,
                known,
            } => {
                let a = match addr {
                    Addr::Saddr => p.saddr,
                    Addr::Daddr => p.daddr,
                };
                let has = |name: &str| {
                    let s = rs.set(name).unwrap_or_else(|| panic!("no set {name}"));
                    s.elements
                        .iter()
                        .any(|e| key_has(&e.key, &[FieldValue::Addr(a)]))
                };
                (a.is_ipv4() == (*family == IpFamily::V4) && has(cidrs) && !has(known))
                    .then_some(Verdict::Drop)
            }
            RuleKind::Verdict(v) => Some(v.clone()),
        };
        match verdict {
            None => continue,
            Some(Verdict::Jump(c)) => match run_chain(rs, &c, p, depth + 1, count) {
                Flow::Continue => continue,
                Flow::Verdict(Verdict::Return) => continue,
                v => return v,
            },
            Some(Verdict::Goto(c)) => return run_chain(rs, &c, p, depth + 1, count),
            Some(v) => return Flow::Verdict(v),
        }
    }
    Flow::Continue
}

/// What the forward hook does with a packet: the verdict, and how many rules it
/// evaluated on the way (a verdict-map or set lookup is one rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    pub rules: usize,
    pub accepted: bool,
}

/// Walks `p` through the forward hook of this table.
pub fn forward_walk(rs: &Ruleset, p: &Packet) -> Walk {
    hook_walk(rs, Hook::Forward, p)
}

/// Walks `p` through the input hook of this table: a pod's packet to an address of this
/// node. A table without an input chain (no pod has egress tiers) accepts it.
pub fn input_walk(rs: &Ruleset, p: &Packet) -> Walk {
    hook_walk(rs, Hook::Input, p)
}

/// Whether `p` passes the input hook of this table.
pub fn input_accepts(rs: &Ruleset, p: &Packet) -> bool {
    input_walk(rs, p).accepted
}

fn hook_walk(rs: &Ruleset, hook: Hook, p: &Packet) -> Walk {
    let Some(base) = rs
        .chains()
        .iter()
        .find(|c| c.base.as_ref().is_some_and(|b| b.hook == hook))
    else {
        return Walk {
            rules: 0,
            accepted: true,
        };
    };
    let policy = base
        .base
        .as_ref()
        .map(|b| b.policy.clone())
        .unwrap_or(Verdict::Accept);
    let mut rules = 0;
    let accepted = match run_chain(rs, &base.name, p, 0, &mut rules) {
        Flow::Verdict(Verdict::Drop) => false,
        Flow::Verdict(Verdict::Accept) => true,
        _ => policy == Verdict::Accept,
    };
    Walk { rules, accepted }
}

/// Whether `p` passes the forward hook of this table.
pub fn forward_accepts(rs: &Ruleset, p: &Packet) -> bool {
    forward_walk(rs, p).accepted
}
