//! How many rules a new connection's first packet traverses in nftpol's ruleset: the
//! forward base chain, the dispatch chain up to the verdict map that jumps, and the pod
//! chain up to the lookup that accepts (or its final drop). Counted on the model, with
//! the same rule shapes the kernel evaluates; a verdict-map or set lookup is one rule.

use std::net::IpAddr;

use nftpol::ruleset::eval::Packet;
use nftpol::ruleset::model::*;

/// Rules evaluated, and whether the packet is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    pub rules: usize,
    pub accepted: bool,
}

fn field_has(f: &Field, v: Value) -> bool {
    match (f, v) {
        (Field::Ipv4(a, b), Value::Addr(IpAddr::V4(x))) => *a <= x && x <= *b,
        (Field::Ipv6(a, b), Value::Addr(IpAddr::V6(x))) => *a <= x && x <= *b,
        (Field::Proto(a, b), Value::Proto(x)) => *a <= x && x <= *b,
        (Field::Port(a, b), Value::Port(x)) => *a <= x && x <= *b,
        _ => false,
    }
}

#[derive(Debug, Clone, Copy)]
enum Value {
    Addr(IpAddr),
    Proto(u8),
    Port(u16),
}

fn key_has(key: &[Field], values: &[Value]) -> bool {
    key.len() == values.len() && key.iter().zip(values).all(|(f, v)| field_has(f, *v))
}

enum Flow {
    Continue,
    Done(Verdict),
}

fn chain(rs: &Ruleset, name: &str, p: &Packet, count: &mut usize, depth: usize) -> Flow {
    let Some(c) = rs.chain(name) else {
        return Flow::Continue;
    };
    if depth > 16 {
        return Flow::Continue;
    }
    for rule in &c.rules {
        *count += 1;
        let pick = |addr: &Addr| match addr {
            Addr::Saddr => p.saddr,
            Addr::Daddr => p.daddr,
        };
        let family_ok = |f: &IpFamily, a: IpAddr| a.is_ipv4() == (*f == IpFamily::V4);
        let verdict = match &rule.kind {
            RuleKind::CtEstablishedAccept
            | RuleKind::FibSaddrLocalAccept
            | RuleKind::Icmpv6NdAccept => None,
            RuleKind::Jump(c) => Some(Verdict::Jump(c.clone())),
            RuleKind::DispatchVmap { family, addr, map } => {
                let a = pick(addr);
                rs.map(map).filter(|_| family_ok(family, a)).and_then(|m| {
                    m.elements
                        .iter()
                        .find(|e| key_has(&e.key, &[Value::Addr(a)]))
                        .map(|e| e.verdict.clone())
                })
            }
            RuleKind::Lookup {
                family,
                addr,
                ports,
                set,
                verdict,
            } => {
                let a = pick(addr);
                let values = if *ports {
                    vec![
                        Value::Addr(a),
                        Value::Proto(p.l4proto),
                        Value::Port(p.dport),
                    ]
                } else {
                    vec![Value::Addr(a)]
                };
                let hit = family_ok(family, a)
                    && rs
                        .set(set)
                        .is_some_and(|s| s.elements.iter().any(|e| key_has(&e.key, &values)));
                hit.then(|| verdict.clone())
            }
            RuleKind::DropUnknown {
                family,
                addr,
                cidrs,
                known,
            } => {
                let a = pick(addr);
                let has = |name: &str| {
                    rs.set(name).is_some_and(|s| {
                        s.elements
                            .iter()
                            .any(|e| key_has(&e.key, &[Value::Addr(a)]))
                    })
                };
                (family_ok(family, a) && has(cidrs) && !has(known)).then_some(Verdict::Drop)
            }
            RuleKind::Verdict(v) => Some(v.clone()),
        };
        match verdict {
            None => {}
            Some(Verdict::Jump(c)) => match chain(rs, &c, p, count, depth + 1) {
                Flow::Continue | Flow::Done(Verdict::Return) => {}
                done => return done,
            },
            Some(Verdict::Goto(c)) => return chain(rs, &c, p, count, depth + 1),
            Some(v) => return Flow::Done(v),
        }
    }
    Flow::Continue
}

/// Walks `p` (conntrack state new) through the forward hook of `rs`.
pub fn forward(rs: &Ruleset, p: &Packet) -> Walk {
    let Some(base) = rs
        .chains
        .iter()
        .find(|c| c.base.as_ref().is_some_and(|b| b.hook == Hook::Forward))
    else {
        return Walk {
            rules: 0,
            accepted: true,
        };
    };
    let policy = base.base.as_ref().map(|b| b.policy.clone());
    let mut count = 0;
    let accepted = match chain(rs, &base.name, p, &mut count, 0) {
        Flow::Done(Verdict::Drop) => false,
        Flow::Done(Verdict::Accept) => true,
        _ => policy != Some(Verdict::Drop),
    };
    Walk {
        rules: count,
        accepted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::scenario::{build, PORT};

    #[test]
    fn nftpol_first_packet_is_a_few_rules_whatever_the_policies() {
        let mut counts = Vec::new();
        for policies in [50, 400] {
            let s = build(1000, policies, 2);
            let (_, rs) = s.compile().unwrap();
            let p = Packet {
                saddr: s.clients[1].into(),
                daddr: s.server.into(),
                l4proto: 6,
                dport: PORT,
            };
            let w = forward(&rs, &p);
            assert!(w.accepted);
            // forward: jump; dispatch: ct, icmpv6, egress4, egress6, ingress4 vmap;
            // pod chain: any4, ports4.
            assert_eq!(w.rules, 8);
            counts.push(w.rules);
            let intruder = Packet {
                saddr: s.intruder.into(),
                ..p
            };
            let w = forward(&rs, &intruder);
            assert!(!w.accepted);
            assert_eq!(w.rules, 11, "any4, ports4, any6, ports6, drop");
        }
        assert_eq!(counts[0], counts[1]);
    }
}
