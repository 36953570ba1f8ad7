//! What one pod direction's NetworkPolicy allows come to as set elements: addresses
//! allowed on any port, (address, protocol, port) boxes for the concatenated sets, and,
//! where the boxes would be many, pairs (a peer's addresses, then its ports) looked up one
//! after the other.
//!
//! ```text
//! allows (peer, ports)  --concatenated-->  address . protocol . port    A x P elements
//!                       --pairs--------->  address   +   protocol . port   A + P elements
//! ```
//!
//! A rule that admits a namespace's A scattered pods on P listed ports costs A x P
//! concatenated elements (400 pods on 2,000 ports: 800,000), and the tenant who writes it
//! chooses both numbers. The concatenated form is still the better one while it is small:
//! one lookup per set kind whatever the number of allows. So it is tried first with a
//! budget proportional to the allows' own size; past it the largest allows, then all
//! allows with ports, become pairs, whose cost follows the input (A + P per allow).
//!
//! Pure: owns the element arithmetic only; names, sets and rules are `build`'s.

use super::boxes;
use super::model::{Element, Field, Key};
use super::regions::{addr_field, cut};
use crate::addr::{AddrSet, Intervals};
use crate::graph::{Isolation, PeerRef, PolicyGraph, PortRange, Ports};
use crate::policy::Protocol;

/// What one pod direction allows, per family.
#[derive(Debug, Default)]
pub(super) struct Allowed {
    /// Addresses allowed on any port.
    pub any: AddrSet,
    /// (address, protocol, port) boxes, sorted.
    pub ports4: Vec<Element>,
    pub ports6: Vec<Element>,
    /// Allows looked up as pairs, in the order of `Isolation::allows`.
    pub pairs: Vec<Pair>,
}

/// Where the allows' address and port ranges start and end (each range `lo..=hi` gives
/// `lo` and `hi + 1`), sorted: cutting an element at these points leaves pieces that lie
/// wholly inside or wholly outside each allow, so a piece's counter stands for a known
/// set of rules (`ruleset::traffic`). Without the cuts an element can join two rules'
/// addresses (neighbouring pods) and its counter could not tell them apart.
#[derive(Debug, Default)]
struct Cuts {
    addrs: [Vec<u128>; 2],
    ports: Vec<u128>,
}

impl Cuts {
    fn of<'a>(allows: impl Iterator<Item = (&'a AddrSet, Option<&'a [PortRange]>)>) -> Cuts {
        let mut c = Cuts::default();
        let edges = |out: &mut Vec<u128>, lo: u128, hi: u128| {
            out.push(lo);
            out.extend(hi.checked_add(1));
        };
        for (addrs, ports) in allows {
            for (i, fam) in [&addrs.v4, &addrs.v6].into_iter().enumerate() {
                for &(lo, hi) in fam.ranges() {
                    edges(&mut c.addrs[i], lo, hi);
                }
            }
            for r in ports.unwrap_or_default() {
                edges(&mut c.ports, r.start.into(), r.end.into());
            }
        }
        for v in c.addrs.iter_mut().chain([&mut c.ports]) {
            v.sort_unstable();
            v.dedup();
        }
        c
    }
}

/// The addresses allowed on any port as one-field elements of family `is6`; with
/// `counted`, cut where each allow's addresses start and end (see [`Cuts`]).
pub(super) fn any_elements(
    iso: &Isolation,
    graph: &PolicyGraph,
    a: &Allowed,
    is6: bool,
    counted: bool,
) -> Vec<Element> {
    let fam = if is6 { &a.any.v6 } else { &a.any.v4 };
    if !counted {
        return one_field_elements(is6, fam);
    }
    let everything = AddrSet::everything();
    let cuts = Cuts::of(
        iso.allows
            .iter()
            .filter(|x| x.ports == Ports::Any)
            .map(|x| {
                let addrs = match x.peer {
                    PeerRef::Any => &everything,
                    PeerRef::Peer(id) => &graph.peers[id].addrs,
                };
                (addrs, None)
            }),
    );
    let mut out = Vec::new();
    for &(lo, hi) in fam.ranges() {
        for (lo, hi) in cut(lo, hi, &cuts.addrs[usize::from(is6)]) {
            out.push(Element {
                key: Key::from([addr_field(is6, lo, hi)]),
            });
        }
    }
    out
}

/// `elements` (`address . protocol . port` boxes of family `is6`) cut where each allow
/// with ports starts and ends, in addresses and in ports (see [`Cuts`]); sorted.
fn cut_boxes(elements: Vec<Element>, cuts: &Cuts, is6: bool) -> Vec<Element> {
    let mut out = Vec::with_capacity(elements.len());
    for e in elements {
        let [addr, proto, Field::Port(plo, phi)] = *e.key else {
            out.push(e);
            continue;
        };
        let (alo, ahi) = match addr {
            Field::Ipv4(lo, hi) => (u32::from(lo).into(), u32::from(hi).into()),
            Field::Ipv6(lo, hi) => (u128::from(lo), u128::from(hi)),
            _ => (0, 0),
        };
        for (alo, ahi) in cut(alo, ahi, &cuts.addrs[usize::from(is6)]) {
            for (plo, phi) in cut(plo.into(), phi.into(), &cuts.ports) {
                out.push(Element {
                    key: Key::from([
                        addr_field(is6, alo, ahi),
                        proto,
                        Field::Port(plo as u16, phi as u16),
                    ]),
                });
            }
        }
    }
    out.sort();
    out
}

/// One allow looked up as a pair: its peer's addresses, then its protocols and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pair {
    /// The allow's index in `Isolation::allows`.
    pub allow: usize,
    /// One-field elements per family (either may be empty: no rule for that family).
    pub addrs4: Vec<Element>,
    pub addrs6: Vec<Element>,
    /// `protocol . port` elements, sorted and disjoint.
    pub ports: Vec<Element>,
    /// Some port element is a true range: the set is a concatenated interval set.
    pub ranges: bool,
}

/// The fewest elements the concatenated sets of one pod direction may always take.
const CONCAT_MIN: usize = 4096;

/// Past this many times the allows' own size (their addresses plus their ports), the
/// concatenated sets of a pod direction give way to pairs.
const CONCAT_FACTOR: usize = 4;

/// An allow whose own concatenated cost is above this is the first to become a pair.
const PAIR_MIN: usize = 256;

/// The most points [`split_exact`] spells a box out into.
const EXPAND_MAX: u128 = 64;

/// An allow with ports: its index, its peer's addresses, its ports.
type Ported<'a> = (usize, &'a AddrSet, &'a [PortRange]);

/// `budget`: the most concatenated elements, instead of the default (see the module).
/// `counted`: the boxes are cut where each allow starts and ends (see [`Cuts`]).
pub(super) fn allowed(
    graph: &PolicyGraph,
    iso: &Isolation,
    budget: Option<usize>,
    counted: bool,
) -> Allowed {
    let everything = AddrSet::everything();
    let addrs_of = |peer: PeerRef| -> &AddrSet {
        match peer {
            PeerRef::Any => &everything,
            PeerRef::Peer(id) => &graph.peers[id].addrs,
        }
    };
    let mut any = AddrSet::default();
    for a in iso.allows.iter().filter(|a| a.ports == Ports::Any) {
        any = any.union(addrs_of(a.peer));
    }
    let ported: Vec<Ported> = iso
        .allows
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match &a.ports {
            Ports::Only(list) => Some((i, addrs_of(a.peer), list.as_slice())),
            Ports::Any => None,
        })
        .collect();
    let size: usize = ported
        .iter()
        .map(|(_, addrs, ports)| addrs.v4.ranges().len() + addrs.v6.ranges().len() + ports.len())
        .sum();
    let budget = budget.unwrap_or(CONCAT_MIN.max(CONCAT_FACTOR.saturating_mul(size)));
    // First everything concatenated; then the allows that cost most alone as pairs; then
    // every allow with ports as pairs (which always fits: nothing is left to concatenate).
    let big = |&(_, addrs, ports): &Ported| {
        (addrs.v4.ranges().len() + addrs.v6.ranges().len()).saturating_mul(ports.len()) > PAIR_MIN
    };
    let attempts: [&dyn Fn(&Ported) -> bool; 3] = [&|_| false, &big, &|_| true];
    for as_pair in attempts {
        let (pairs, concat): (Vec<_>, Vec<_>) = ported.iter().partition(|p| as_pair(p));
        let Some((mut ports4, mut ports6)) = concatenated(&concat, &any, budget) else {
            continue;
        };
        if counted {
            let cuts = Cuts::of(
                concat
                    .iter()
                    .map(|&&(_, addrs, ports)| (addrs, Some(ports))),
            );
            ports4 = cut_boxes(ports4, &cuts, false);
            ports6 = cut_boxes(ports6, &cuts, true);
        }
        return Allowed {
            ports4,
            ports6,
            pairs: pairs
                .iter()
                .map(|&&(i, addrs, ports)| pair(i, addrs, ports))
                .collect(),
            any,
        };
    }
    unreachable!("the last attempt concatenates nothing")
}

/// The (address, protocol, port) elements of `allows` outside `any`, per family, or
/// `None` once they would be more than `budget`.
fn concatenated(
    allows: &[&Ported],
    any: &AddrSet,
    budget: usize,
) -> Option<(Vec<Element>, Vec<Element>)> {
    let mut left = budget;
    let mut out: [Vec<Element>; 2] = Default::default();
    for is6 in [false, true] {
        let minus: &Intervals = if is6 { &any.v6 } else { &any.v4 };
        let mut elements = Vec::new();
        for proto in Protocol::ALL {
            let mut rects: Vec<(&Intervals, u16, u16)> = Vec::new();
            for &&(_, addrs, ports) in allows {
                let fam = if is6 { &addrs.v6 } else { &addrs.v4 };
                if fam.is_empty() {
                    continue;
                }
                for r in ports.iter().filter(|r| r.protocol == proto) {
                    rects.push((fam, r.start, r.end));
                }
            }
            for (addrs, lo, hi) in boxes::disjoint(&rects, minus, left)? {
                for &(alo, ahi) in addrs.ranges() {
                    let cost = points(ahi - alo, hi - lo).unwrap_or(1) as usize;
                    left = left.checked_sub(cost)?;
                    elements.push(Element {
                        key: Key::from([
                            addr_field(is6, alo, ahi),
                            Field::Proto(proto.number(), proto.number()),
                            Field::Port(lo, hi),
                        ]),
                    });
                }
            }
        }
        elements.sort();
        out[usize::from(is6)] = elements;
    }
    let [v4, v6] = out;
    Some((v4, v6))
}

/// How many (address, port) points a box of `addr_span + 1` addresses and
/// `port_span + 1` ports is spelled out into by [`split_exact`]; `None` when it stays a
/// range.
fn points(addr_span: u128, port_span: u16) -> Option<u128> {
    let n = addr_span
        .saturating_add(1)
        .saturating_mul(u128::from(port_span) + 1);
    (n <= EXPAND_MAX).then_some(n)
}

fn pair(allow: usize, addrs: &AddrSet, ports: &[PortRange]) -> Pair {
    let mut ranges: Vec<(u8, u16, u16)> = ports
        .iter()
        .map(|r| (r.protocol.number(), r.start, r.end))
        .collect();
    ranges.sort_unstable();
    // Disjoint (an interval set refuses overlaps) and joined where they touch.
    let mut merged: Vec<(u8, u16, u16)> = Vec::with_capacity(ranges.len());
    for (p, lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if last.0 == p && u32::from(lo) <= u32::from(last.2) + 1 => {
                last.2 = last.2.max(hi)
            }
            _ => merged.push((p, lo, hi)),
        }
    }
    Pair {
        allow,
        addrs4: one_field_elements(false, &addrs.v4),
        addrs6: one_field_elements(true, &addrs.v6),
        ranges: merged.iter().any(|&(_, lo, hi)| lo != hi),
        ports: merged
            .into_iter()
            .map(|(p, lo, hi)| Element {
                key: Key::from([Field::Proto(p, p), Field::Port(lo, hi)]),
            })
            .collect(),
    }
}

/// Splits (address, protocol, port) boxes into single points (one address, one port),
/// for a hash set, and true ranges, for a concatenated interval set. A hash set adds and
/// removes an element in constant time; the kernel's concatenated interval sets
/// (pipapo) rebuild their lookup tables on every change, at a cost that grows with the
/// set, and the points are most of the elements (peers chosen by labels are scattered
/// single addresses). A lookup in each keeps the verdict of the one set they replace.
///
/// Neighbouring pods' addresses merge into short ranges, which change whenever one of
/// those pods does, and a pod peer on a short port range (`endPort`) is a range too: a box
/// of at most [`EXPAND_MAX`] (address, port) points is spelled out as points, so pod churn
/// stays in the hash set and pipapo holds only what rarely changes (long port ranges,
/// ipBlocks).
pub(super) fn split_exact(elements: Vec<Element>) -> (Vec<Element>, Vec<Element>) {
    let mut exact = Vec::new();
    let mut ranges = Vec::new();
    for e in elements {
        match expand(&e) {
            Some(points) => exact.extend(points),
            None => ranges.push(e),
        }
    }
    exact.sort();
    (exact, ranges)
}

/// `e` as single points, when its protocol is single and it holds at most
/// [`EXPAND_MAX`] (address, port) points; None otherwise.
fn expand(e: &Element) -> Option<Vec<Element>> {
    let [addr, proto, Field::Port(plo, phi)] = *e.key else {
        return None;
    };
    if !proto.is_point() {
        return None;
    }
    let span = match addr {
        Field::Ipv4(lo, hi) => u128::from(u32::from(hi) - u32::from(lo)),
        Field::Ipv6(lo, hi) => u128::from(hi) - u128::from(lo),
        _ => return None,
    };
    points(span, phi - plo)?;
    let points = |a: Field| {
        (plo..=phi).map(move |p| Element {
            key: Key::from([a, proto, Field::Port(p, p)]),
        })
    };
    Some(match addr {
        Field::Ipv4(lo, hi) => (u32::from(lo)..=u32::from(hi))
            .flat_map(|a| points(Field::Ipv4(a.into(), a.into())))
            .collect(),
        Field::Ipv6(lo, hi) => (u128::from(lo)..=u128::from(hi))
            .flat_map(|a| points(Field::Ipv6(a.into(), a.into())))
            .collect(),
        _ => unreachable!("checked above"),
    })
}

pub(super) fn one_field_elements(is6: bool, set: &Intervals) -> Vec<Element> {
    set.ranges()
        .iter()
        .map(|&(lo, hi)| Element {
            key: Key::from([addr_field(is6, lo, hi)]),
        })
        .collect()
}
