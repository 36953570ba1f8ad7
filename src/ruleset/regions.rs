//! One tier's ordered rules resolved, at compile time, into disjoint regions of
//! (address, protocol, port) per family, each with the action of the first rule that
//! covers it; and from those regions the set contents a pod chain looks up, so the kernel
//! does a constant number of lookups per tier however many rules the tier has.
//!
//! ```text
//! rules (first match wins)         cells of the (protocol, port) plane, per family
//!   Deny  peer B  tcp/80             tcp 0-79 | tcp 80 | tcp 81-65535 | udp * | sctp * | other
//!   Accept peer A any                  each cell: claimed, accept, deny address intervals
//!   Pass  peer C  tcp/80-90          (a Pass region is claimed, in neither verdict)
//! ```
//!
//! "Other" is every protocol without ports (ICMP, ICMPv6, ...): only a rule on every
//! protocol ([`Ports::Any`]) covers it. Addresses whose whole plane has one verdict go to
//! an address-only set (it matches any packet, ICMP too); the rest become (address,
//! protocol range, port range) boxes. A box of the "other" cell spans the protocol ranges
//! between TCP, UDP and SCTP and every port: `th dport` then reads the first transport
//! bytes of the packet (for ICMP its checksum), which any port range matches. Such boxes
//! appear only when an address's protocols without ports and some of its ports have
//! different verdicts (a Deny on one port before an Accept on every protocol, say); a
//! packet of such a protocol with fewer than 4 bytes after its IP header has no
//! `th dport` to read, so the lookup misses it (an ICMP or ICMPv6 header is 8 bytes).
//! The common cases (Deny or Accept on every protocol) are address-only and read no
//! transport header.
//!
//! Counted ([`Regions::counted`], with `--counters`): each rule belongs to an owner (the
//! policy rule it comes from), and every element is cut so that it lies wholly in one
//! owner's region: an address-only element only where one owner decides every cell of
//! the address, boxes never joined across cells (cells are cut at every rule's port
//! edges), and every address range cut where any rule's addresses start and end (between
//! two such edges, every cell has one first match). An element's counter then counts
//! the connections of exactly one deciding rule (`ruleset::traffic`).
//!
//! Pure: owns the region arithmetic only, knows nothing of set names or chains.

use crate::addr::{v4, v6, AddrSet, Intervals};
use crate::cnp::Action;
use crate::graph::Ports;
use crate::policy::Protocol;

use super::model::{Element, Field, Key};

/// One rule of a tier, as the region arithmetic sees it.
#[derive(Debug, Clone, Copy)]
pub struct RegionRule<'a> {
    pub action: Action,
    pub addrs: &'a AddrSet,
    pub ports: &'a Ports,
}

/// A cell of the (protocol, port) plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// A protocol with ports and an inclusive port segment.
    Ports(Protocol, u16, u16),
    /// Every protocol that has no ports.
    Other,
}

/// Who owns which addresses of one cell.
#[derive(Debug, Clone, Default)]
struct Owners {
    /// Covered by some earlier rule (any action, Pass included).
    claimed: Intervals,
    accept: Intervals,
    deny: Intervals,
    /// Counted: the Accept and Deny addresses of each owner (`accept` and `deny` split).
    owned: Vec<(usize, Action, Intervals)>,
}

/// The regions of one tier for one family.
#[derive(Debug, Clone)]
pub struct FamilyRegions {
    is6: bool,
    cells: Vec<(Cell, Owners)>,
    /// Counted: where every rule's addresses start and end (`lo`, `hi + 1`), sorted.
    cuts: Option<Vec<u128>>,
}

/// The regions of one tier, per family.
#[derive(Debug, Clone)]
pub struct Regions {
    pub v4: FamilyRegions,
    pub v6: FamilyRegions,
}

/// What one verdict's lookups hold for one family: addresses on every protocol and port,
/// and (address, protocol, port) boxes, disjoint, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    pub any: Intervals,
    pub boxes: Vec<Element>,
    /// Counted: where `any` is cut into elements (see [`Lookups::any_elements`]).
    pub any_cuts: Vec<u128>,
}

/// The protocol numbers without ports, as inclusive ranges: everything between TCP, UDP
/// and SCTP.
fn other_protocols() -> Vec<(u8, u8)> {
    let mut nums: Vec<u8> = Protocol::ALL.iter().map(|p| p.number()).collect();
    nums.sort_unstable();
    let mut out = Vec::new();
    let mut lo: u16 = 0;
    for n in nums {
        if u16::from(n) > lo {
            out.push((lo as u8, n - 1));
        }
        lo = u16::from(n) + 1;
    }
    if lo <= 255 {
        out.push((lo as u8, 255));
    }
    out
}

/// `lo..=hi` cut at every point of `cuts` inside it.
pub(super) fn cut(lo: u128, hi: u128, cuts: &[u128]) -> Vec<(u128, u128)> {
    let first = cuts.partition_point(|&c| c <= lo);
    let mut out = Vec::new();
    let mut start = lo;
    for &c in cuts[first..].iter().take_while(|&&c| c <= hi) {
        out.push((start, c - 1));
        start = c;
    }
    out.push((start, hi));
    out
}

/// An address range as a key field of its family.
pub(super) fn addr_field(is6: bool, lo: u128, hi: u128) -> Field {
    if is6 {
        Field::Ipv6(v6(lo), v6(hi))
    } else {
        Field::Ipv4(v4(lo), v4(hi))
    }
}

/// (protocol range, port range, addresses): one box before it is split into elements.
type Part = ((u8, u8), (u16, u16), Intervals);

fn intersect(a: &Intervals, b: &Intervals) -> Intervals {
    a.subtract(&a.subtract(b))
}

fn covers(ports: &Ports, cell: Cell) -> bool {
    match (ports, cell) {
        (Ports::Any, _) => true,
        (Ports::Only(_), Cell::Other) => false,
        (Ports::Only(list), Cell::Ports(proto, lo, hi)) => list
            .iter()
            .any(|r| r.protocol == proto && r.start <= lo && hi <= r.end),
    }
}

/// The cells: every protocol's port axis cut at every rule edge, then "other".
fn cells(rules: &[RegionRule]) -> Vec<Cell> {
    let mut out = Vec::new();
    for proto in Protocol::ALL {
        let mut cuts: Vec<u32> = vec![0, 1 << 16];
        for r in rules {
            if let Ports::Only(list) = r.ports {
                for pr in list.iter().filter(|pr| pr.protocol == proto) {
                    cuts.push(pr.start.into());
                    cuts.push(u32::from(pr.end) + 1);
                }
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        for w in cuts.windows(2) {
            out.push(Cell::Ports(proto, w[0] as u16, (w[1] - 1) as u16));
        }
    }
    out.push(Cell::Other);
    out
}

impl Regions {
    /// First match wins: each rule takes what no earlier rule covered.
    pub fn new(rules: &[RegionRule]) -> Regions {
        Regions::build(rules, None)
    }

    /// [`Regions::new`], with `owners[i]` the owner (the policy rule) of `rules[i]`, its
    /// lookups cut so that each element lies in one owner's region (see the module).
    pub fn counted(rules: &[RegionRule], owners: &[usize]) -> Regions {
        assert_eq!(rules.len(), owners.len(), "one owner per rule");
        Regions::build(rules, Some(owners))
    }

    fn build(rules: &[RegionRule], owners: Option<&[usize]>) -> Regions {
        let cells = cells(rules);
        let family = |is6: bool| {
            let mut owned: Vec<(Cell, Owners)> =
                cells.iter().map(|&c| (c, Owners::default())).collect();
            for (i, r) in rules.iter().enumerate() {
                let addrs = if is6 { &r.addrs.v6 } else { &r.addrs.v4 };
                if addrs.is_empty() {
                    continue;
                }
                for (_, o) in owned.iter_mut().filter(|(c, _)| covers(r.ports, *c)) {
                    let fresh = addrs.subtract(&o.claimed);
                    if fresh.is_empty() {
                        continue;
                    }
                    o.claimed = o.claimed.union(&fresh);
                    match r.action {
                        Action::Accept => o.accept = o.accept.union(&fresh),
                        Action::Deny => o.deny = o.deny.union(&fresh),
                        Action::Pass => continue,
                    }
                    if let Some(owners) = owners {
                        o.own(owners[i], r.action, fresh);
                    }
                }
            }
            let cuts = owners.map(|_| address_edges(rules, is6));
            FamilyRegions {
                is6,
                cells: owned,
                cuts,
            }
        };
        Regions {
            v4: family(false),
            v6: family(true),
        }
    }
}

impl Owners {
    /// Adds `fresh` to what `owner` (deciding with `action`) holds in this cell.
    fn own(&mut self, owner: usize, action: Action, fresh: Intervals) {
        match self.owned.iter_mut().find(|(o, _, _)| *o == owner) {
            Some((_, _, held)) => *held = held.union(&fresh),
            None => self.owned.push((owner, action, fresh)),
        }
    }
}

/// Where the rules' addresses of one family start and end (`lo`, `hi + 1`), sorted.
fn address_edges(rules: &[RegionRule], is6: bool) -> Vec<u128> {
    let mut out = Vec::new();
    for r in rules {
        let addrs = if is6 { &r.addrs.v6 } else { &r.addrs.v4 };
        for &(lo, hi) in addrs.ranges() {
            out.push(lo);
            out.extend(hi.checked_add(1));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

impl FamilyRegions {
    /// The action that decides (address value, protocol number, port); `None` where no
    /// rule covers the point (Pass: a Pass rule does). What the tests check the lookups
    /// against.
    #[cfg(test)]
    pub fn action_at(&self, addr: u128, proto: u8, port: u16) -> Option<Action> {
        let (_, o) = self.cells.iter().find(|(c, _)| match *c {
            Cell::Ports(p, lo, hi) => p.number() == proto && lo <= port && port <= hi,
            Cell::Other => Protocol::ALL.iter().all(|p| p.number() != proto),
        })?;
        if o.accept.contains(addr) {
            Some(Action::Accept)
        } else if o.deny.contains(addr) {
            Some(Action::Deny)
        } else if o.claimed.contains(addr) {
            Some(Action::Pass)
        } else {
            None
        }
    }

    /// Counted: the owner whose rule decides (address value, protocol number, port) with
    /// Accept or Deny; `None` elsewhere. What the tests check the elements against.
    #[cfg(test)]
    fn owner_at(&self, addr: u128, proto: u8, port: u16) -> Option<usize> {
        let (_, o) = self.cells.iter().find(|(c, _)| match *c {
            Cell::Ports(p, lo, hi) => p.number() == proto && lo <= port && port <= hi,
            Cell::Other => Protocol::ALL.iter().all(|p| p.number() != proto),
        })?;
        o.owned
            .iter()
            .find(|(_, _, a)| a.contains(addr))
            .map(|(owner, _, _)| *owner)
    }

    /// Exactly the Accept region.
    pub fn accept(&self) -> Lookups {
        let any = match self.cuts {
            None => self.every_cell(|o| o.accept.clone()),
            Some(_) => self.one_owner_everywhere(Action::Accept, |_, mine| mine.clone()),
        };
        self.lookups(any, |o| &o.accept, &Intervals::new())
    }

    /// The Deny region. With `after_accept` (the chain looks up the Accept sets first) the
    /// lookups may also cover Accept points, which lets an address whose plane is Accept
    /// and Deny only go to the address-only set; without it, exactly the Deny region.
    pub fn deny(&self, after_accept: bool) -> Lookups {
        if after_accept {
            let accept_any = self.every_cell(|o| o.accept.clone());
            let any = match self.cuts {
                None => self.every_cell(|o| o.accept.union(&o.deny)),
                Some(_) => self.one_owner_everywhere(Action::Deny, |o, mine| o.accept.union(mine)),
            };
            let mut out = self.lookups(any, |o| &o.deny, &accept_any);
            out.any = out.any.subtract(&accept_any);
            out
        } else {
            let any = match self.cuts {
                None => self.every_cell(|o| o.deny.clone()),
                Some(_) => self.one_owner_everywhere(Action::Deny, |_, mine| mine.clone()),
            };
            self.lookups(any, |o| &o.deny, &Intervals::new())
        }
    }

    /// Counted: the addresses where, for one owner deciding with `action`, `cover` (of a
    /// cell and that owner's addresses in it) holds in every cell; the union over owners.
    fn one_owner_everywhere(
        &self,
        action: Action,
        cover: impl Fn(&Owners, &Intervals) -> Intervals,
    ) -> Intervals {
        let mut owners: Vec<usize> = self
            .cells
            .iter()
            .flat_map(|(_, o)| o.owned.iter())
            .filter(|(_, a, _)| *a == action)
            .map(|(o, _, _)| *o)
            .collect();
        owners.sort_unstable();
        owners.dedup();
        let none = Intervals::new();
        let mut out = Intervals::new();
        for owner in owners {
            out = out.union(&self.every_cell(|o| {
                let mine = o.owned.iter().find(|(x, _, _)| *x == owner);
                cover(o, mine.map_or(&none, |(_, _, m)| m))
            }));
        }
        out
    }

    /// Addresses that `cover` holds in every cell.
    fn every_cell(&self, cover: impl Fn(&Owners) -> Intervals) -> Intervals {
        let mut it = self.cells.iter();
        let Some((_, first)) = it.next() else {
            return Intervals::new();
        };
        it.fold(cover(first), |acc, (_, o)| intersect(&acc, &cover(o)))
    }

    /// `any` (less `minus`) as given; boxes: what `region` holds beyond `any` and
    /// `minus`, neighbouring port segments with equal addresses joined (not when counted:
    /// two segments may have different owners).
    fn lookups(
        &self,
        any: Intervals,
        region: impl Fn(&Owners) -> &Intervals,
        minus: &Intervals,
    ) -> Lookups {
        let gone = any.union(minus);
        let join = self.cuts.is_none();
        // Joined along the port axis.
        let mut parts: Vec<Part> = Vec::new();
        for (cell, o) in &self.cells {
            let addrs = region(o).subtract(&gone);
            if addrs.is_empty() {
                continue;
            }
            match *cell {
                Cell::Ports(proto, lo, hi) => {
                    let n = proto.number();
                    match parts.last_mut() {
                        Some((p, ports, a))
                            if join
                                && *p == (n, n)
                                && u32::from(ports.1) + 1 == u32::from(lo)
                                && *a == addrs =>
                        {
                            ports.1 = hi
                        }
                        _ => parts.push(((n, n), (lo, hi), addrs)),
                    }
                }
                Cell::Other => {
                    for p in other_protocols() {
                        parts.push((p, (0, u16::MAX), addrs.clone()));
                    }
                }
            }
        }
        let cuts = self.cuts.clone().unwrap_or_default();
        let mut boxes = Vec::new();
        for ((plo, phi), (lo, hi), addrs) in parts {
            for &(alo, ahi) in addrs.ranges() {
                for (alo, ahi) in cut(alo, ahi, &cuts) {
                    boxes.push(Element {
                        key: Key::from([
                            addr_field(self.is6, alo, ahi),
                            Field::Proto(plo, phi),
                            Field::Port(lo, hi),
                        ]),
                    });
                }
            }
        }
        boxes.sort();
        Lookups {
            any,
            boxes,
            any_cuts: cuts,
        }
    }
}

impl Lookups {
    /// `any` as one-field elements of family `is6`, cut at `any_cuts` (counted).
    pub fn any_elements(&self, is6: bool) -> Vec<Element> {
        let mut out = Vec::new();
        for &(lo, hi) in self.any.ranges() {
            for (lo, hi) in cut(lo, hi, &self.any_cuts) {
                out.push(Element {
                    key: Key::from([addr_field(is6, lo, hi)]),
                });
            }
        }
        out
    }

    /// Whether the lookups match (address value, protocol number, port).
    #[cfg(test)]
    pub fn matches(&self, addr: u128, proto: u8, port: u16) -> bool {
        if self.any.contains(addr) {
            return true;
        }
        self.boxes.iter().any(|e| {
            let [a, Field::Proto(plo, phi), Field::Port(lo, hi)] = *e.key else {
                return false;
            };
            let (alo, ahi) = match a {
                Field::Ipv4(l, h) => (u128::from(u32::from(l)), u128::from(u32::from(h))),
                Field::Ipv6(l, h) => (u128::from(l), u128::from(h)),
                _ => return false,
            };
            (alo..=ahi).contains(&addr) && (plo..=phi).contains(&proto) && (lo..=hi).contains(&port)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::PortRange;
    use std::collections::BTreeSet;
    use Action::*;

    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const ICMP: u8 = 1;

    fn addrs(r: &[(u128, u128)]) -> AddrSet {
        AddrSet {
            v4: Intervals::from_ranges(r.to_vec()),
            v6: Intervals::new(),
        }
    }

    fn tcp(lo: u16, hi: u16) -> Ports {
        Ports::Only(vec![PortRange {
            protocol: Protocol::Tcp,
            start: lo,
            end: hi,
        }])
    }

    /// (rules as (action, addresses, ports), probes as (addr, proto, port, the action that
    /// must decide)).
    type Case = (
        Vec<(Action, AddrSet, Ports)>,
        Vec<(u128, u8, u16, Option<Action>)>,
    );

    fn cases() -> Vec<Case> {
        vec![
            // Nothing: no opinion anywhere.
            (vec![], vec![(1, TCP, 80, None), (1, ICMP, 0, None)]),
            // Deny on any port: every protocol, ICMP too.
            (
                vec![(Deny, addrs(&[(1, 5)]), Ports::Any)],
                vec![
                    (1, TCP, 80, Some(Deny)),
                    (5, ICMP, 0, Some(Deny)),
                    (6, TCP, 80, None),
                ],
            ),
            // An earlier Accept on one port shadows a later Deny everywhere.
            (
                vec![
                    (Accept, addrs(&[(1, 1)]), tcp(80, 80)),
                    (Deny, addrs(&[(1, 2)]), Ports::Any),
                ],
                vec![
                    (1, TCP, 80, Some(Accept)),
                    (1, TCP, 81, Some(Deny)),
                    (1, UDP, 80, Some(Deny)),
                    (1, ICMP, 8, Some(Deny)),
                    (2, TCP, 80, Some(Deny)),
                ],
            ),
            // Pass shadows later rules and yields nothing.
            (
                vec![
                    (Pass, addrs(&[(1, 1)]), tcp(0, 1000)),
                    (Deny, addrs(&[(1, 1)]), Ports::Any),
                    (Accept, addrs(&[(1, 3)]), Ports::Any),
                ],
                vec![
                    (1, TCP, 80, Some(Pass)),
                    (1, TCP, 1001, Some(Deny)),
                    (1, ICMP, 0, Some(Deny)),
                    (2, ICMP, 0, Some(Accept)),
                    (3, TCP, 80, Some(Accept)),
                ],
            ),
            // A Deny on a port before an Accept on everything: ICMP is Accept.
            (
                vec![
                    (Deny, addrs(&[(1, 1)]), tcp(80, 80)),
                    (Accept, addrs(&[(1, 1)]), Ports::Any),
                ],
                vec![
                    (1, TCP, 80, Some(Deny)),
                    (1, TCP, 79, Some(Accept)),
                    (1, ICMP, 0, Some(Accept)),
                    (1, 255, 0, Some(Accept)),
                ],
            ),
            // Overlapping port ranges: the first rule keeps its part.
            (
                vec![
                    (Accept, addrs(&[(1, 10)]), tcp(80, 90)),
                    (Deny, addrs(&[(5, 20)]), tcp(85, 100)),
                ],
                vec![
                    (5, TCP, 85, Some(Accept)),
                    (15, TCP, 85, Some(Deny)),
                    (5, TCP, 95, Some(Deny)),
                    (5, TCP, 101, None),
                    (5, UDP, 85, None),
                    (5, ICMP, 0, None),
                ],
            ),
        ]
    }

    #[test]
    fn regions_follow_the_first_match() {
        for (i, (rules, probes)) in cases().into_iter().enumerate() {
            let rr: Vec<RegionRule> = rules
                .iter()
                .map(|(a, s, p)| RegionRule {
                    action: *a,
                    addrs: s,
                    ports: p,
                })
                .collect();
            let owners: Vec<usize> = (0..rr.len()).collect();
            for (f, counted) in [
                (Regions::new(&rr).v4, false),
                (Regions::counted(&rr, &owners).v4, true),
            ] {
                check_probes(&f, &probes, &format!("case {i} counted {counted}"));
            }
        }
    }

    fn check_probes(f: &FamilyRegions, probes: &[(u128, u8, u16, Option<Action>)], case: &str) {
        let accept = f.accept();
        let exact_deny = f.deny(false);
        let deny_after = f.deny(true);
        for &(addr, proto, port, want) in probes {
            let ctx = format!("{case}: {addr} {proto}/{port}");
            assert_eq!(f.action_at(addr, proto, port), want, "{ctx}");
            assert_eq!(
                accept.matches(addr, proto, port),
                want == Some(Accept),
                "{ctx} accept"
            );
            assert_eq!(
                exact_deny.matches(addr, proto, port),
                want == Some(Deny),
                "{ctx} deny"
            );
            // Accept first, then the looser deny lookups.
            let after = if accept.matches(addr, proto, port) {
                Some(Accept)
            } else if deny_after.matches(addr, proto, port) {
                Some(Deny)
            } else {
                None
            };
            let want_after = want.filter(|a| *a != Pass);
            assert_eq!(after, want_after, "{ctx} accept then deny");
        }
    }

    /// The points of an element to check: every address (the tests' are few), and the
    /// first port of every cell its protocol and port ranges reach.
    fn element_points(f: &FamilyRegions, e: &Element) -> Vec<(u128, u8, u16)> {
        let (alo, ahi) = match e.key[0] {
            Field::Ipv4(l, h) => (u128::from(u32::from(l)), u128::from(u32::from(h))),
            _ => unreachable!("the tests are IPv4"),
        };
        let (plo, phi, lo, hi) = match e.key.get(1..3) {
            Some([Field::Proto(plo, phi), Field::Port(lo, hi)]) => (*plo, *phi, *lo, *hi),
            _ => (0, 255, 0, u16::MAX),
        };
        let mut planes = Vec::new();
        for (c, _) in &f.cells {
            match *c {
                Cell::Ports(p, clo, chi) => {
                    let n = p.number();
                    if (plo..=phi).contains(&n) && clo <= hi && lo <= chi {
                        planes.push((n, clo.max(lo)));
                        planes.push((n, chi.min(hi)));
                    }
                }
                Cell::Other => {
                    for (olo, ohi) in other_protocols() {
                        if olo <= phi && plo <= ohi {
                            planes.push((olo.max(plo), lo));
                            planes.push((ohi.min(phi), hi));
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        for a in alo..=ahi {
            out.extend(planes.iter().map(|&(p, port)| (a, p, port)));
        }
        out
    }

    /// Counted: every element of every lookup lies in one owner's region (its points of
    /// the lookup's verdict all have that owner), so its counter is that rule's.
    #[test]
    fn counted_elements_lie_in_one_owner_each() {
        let mut all = cases();
        // Neighbours of two Accept rules, one address Accepted on a port by one rule and
        // on everything by another, two Deny rules on one address.
        all.push((
            vec![
                (Accept, addrs(&[(1, 1)]), tcp(80, 80)),
                (Accept, addrs(&[(1, 2)]), Ports::Any),
                (Accept, addrs(&[(3, 4)]), Ports::Any),
                (Deny, addrs(&[(5, 5)]), tcp(80, 80)),
                (Deny, addrs(&[(5, 6)]), Ports::Any),
            ],
            vec![],
        ));
        for (i, (rules, _)) in all.into_iter().enumerate() {
            let rr: Vec<RegionRule> = rules
                .iter()
                .map(|(a, s, p)| RegionRule {
                    action: *a,
                    addrs: s,
                    ports: p,
                })
                .collect();
            let owners: Vec<usize> = (0..rr.len()).collect();
            let f = Regions::counted(&rr, &owners).v4;
            for (what, l, verdict) in [
                ("accept", f.accept(), Accept),
                ("deny after accept", f.deny(true), Deny),
                ("exact deny", f.deny(false), Deny),
            ] {
                let elements = l.any_elements(false).into_iter().chain(l.boxes.clone());
                for e in elements {
                    let mut seen = BTreeSet::new();
                    for (a, p, port) in element_points(&f, &e) {
                        let action = f.action_at(a, p, port);
                        if action == Some(verdict) {
                            seen.insert(f.owner_at(a, p, port));
                        } else {
                            // Only the Deny lookups after Accept may hold other points:
                            // accepted ones, which never reach them.
                            assert_eq!((what, action), ("deny after accept", Some(Accept)));
                        }
                    }
                    assert_eq!(seen.len(), 1, "case {i} {what}: {e:?} has owners {seen:?}");
                    assert!(!seen.contains(&None), "case {i} {what}: {e:?}");
                }
            }
        }
    }

    /// Boxes in one set never overlap (the kernel refuses overlapping interval elements).
    #[test]
    fn boxes_are_disjoint_and_the_common_case_is_address_only() {
        let rules = [
            (Accept, addrs(&[(1, 1)]), tcp(80, 80)),
            (Deny, addrs(&[(1, 2)]), Ports::Any),
        ];
        let rr: Vec<RegionRule> = rules
            .iter()
            .map(|(a, s, p)| RegionRule {
                action: *a,
                addrs: s,
                ports: p,
            })
            .collect();
        let f = Regions::new(&rr).v4;
        let deny = f.deny(true);
        // Accept is looked up first, so both addresses deny on the address alone.
        assert_eq!(deny.any, Intervals::from_ranges(vec![(1, 2)]));
        assert!(deny.boxes.is_empty());
        let exact = f.deny(false);
        assert_eq!(exact.any, Intervals::from_ranges(vec![(2, 2)]));
        for (i, a) in exact.boxes.iter().enumerate() {
            for b in &exact.boxes[i + 1..] {
                let overlap = a.key.iter().zip(b.key.iter()).all(|(x, y)| {
                    let r = |f: &Field| match *f {
                        Field::Ipv4(l, h) => (u128::from(u32::from(l)), u128::from(u32::from(h))),
                        Field::Proto(l, h) => (l.into(), h.into()),
                        Field::Port(l, h) => (l.into(), h.into()),
                        Field::Ipv6(l, h) => (l.into(), h.into()),
                    };
                    let (x, y) = (r(x), r(y));
                    x.0 <= y.1 && y.0 <= x.1
                });
                assert!(!overlap, "{a:?} overlaps {b:?}");
            }
        }
        assert_eq!(
            other_protocols(),
            vec![(0, 5), (7, 16), (18, 131), (133, 255)]
        );
    }
}
