//! From the sweep's cells to changes a person reads: adjacent port pieces merged into
//! ranges, destinations then sources that change alike gathered (classes of the same
//! behaviour pair only, so one reason holds for the group), addresses named, external
//! runs written as CIDRs, and the two families joined where all else is equal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::space::{Space, State};
use super::sweep::{Raw, Sweep};
use super::{Change, Diff, Verdict};
use crate::explain::{end_allowed, end_of, End, Side, StepTier};
use crate::policy::{Direction, Protocol};

type Ports = Vec<[u16; 2]>;
type Loose = (Option<u32>, Option<u32>);
type Key = (
    Vec<String>,
    Vec<String>,
    usize,
    Ports,
    bool,
    bool,
    Vec<String>,
);

pub(super) struct Grouper<'a> {
    states: [&'a State<'a>; 2],
    sweep: &'a Sweep<'a>,
    out: BTreeMap<Key, BTreeSet<&'static str>>,
}

impl<'a> Grouper<'a> {
    pub fn new(states: [&'a State<'a>; 2], sweep: &'a Sweep<'a>) -> Self {
        Grouper {
            states,
            sweep,
            out: BTreeMap::new(),
        }
    }

    /// One family's cells (sorted, as the sweep gives them).
    pub fn add(&mut self, space: &Space, raws: &[Raw]) {
        // Port pieces of one (source, destination, protocol, verdicts) into ranges.
        let mut cells: BTreeMap<(u32, u32, usize, bool, bool), Ports> = BTreeMap::new();
        for r in raws {
            let ports = cells
                .entry((r.src, r.dst, r.proto, r.before, r.after))
                .or_default();
            match ports.last_mut() {
                Some(last) if last[1] as u32 + 1 == r.lo as u32 => last[1] = r.hi,
                _ => ports.push([r.lo, r.hi]),
            }
        }
        let ingress = |c: u32| self.sweep.loose(1, space.classes[c as usize].ingress);
        let egress = |c: u32| self.sweep.loose(0, space.classes[c as usize].egress);
        // Destinations alike for one source.
        type DstKey = (u32, usize, Ports, bool, bool, Loose);
        let mut by_src: BTreeMap<DstKey, Vec<u32>> = BTreeMap::new();
        for ((src, dst, proto, b, a), ports) in cells {
            by_src
                .entry((src, proto, ports, b, a, ingress(dst)))
                .or_default()
                .push(dst);
        }
        // Sources alike for those destinations.
        type SrcKey = (Vec<u32>, usize, Ports, bool, bool, Loose);
        let mut by_dsts: BTreeMap<SrcKey, Vec<u32>> = BTreeMap::new();
        for ((src, proto, ports, b, a, _), dsts) in by_src {
            by_dsts
                .entry((dsts, proto, ports, b, a, egress(src)))
                .or_default()
                .push(src);
        }
        let family = if space.is6 { "ipv6" } else { "ipv4" };
        for ((dsts, proto, ports, b, a, _), srcs) in by_dsts {
            let because = self.because(space, &srcs, &dsts, proto, ports[0][0]);
            let key = (
                self.labels(space, &srcs),
                self.labels(space, &dsts),
                proto,
                ports,
                b,
                a,
                because,
            );
            self.out.entry(key).or_default().insert(family);
        }
    }

    pub fn finish(self) -> Diff {
        let mut changes: Vec<Change> = self
            .out
            .into_iter()
            .map(
                |((sources, destinations, proto, ports, b, a, because), fams)| Change {
                    sources,
                    destinations,
                    protocol: Protocol::ALL[proto].name().to_ascii_uppercase(),
                    ports,
                    families: fams.into_iter().map(String::from).collect(),
                    before: Verdict::of(b),
                    after: Verdict::of(a),
                    because,
                },
            )
            .collect();
        changes.sort();
        Diff { changes }
    }

    /// Names of the addresses of `classes`: pods, nodes, then CIDRs of the rest.
    fn labels(&self, space: &Space, classes: &[u32]) -> Vec<String> {
        let mut atoms: Vec<u32> = classes
            .iter()
            .flat_map(|&c| space.classes[c as usize].atoms.iter().copied())
            .collect();
        atoms.sort_unstable();
        let mut names = BTreeSet::new();
        let mut cidrs = Vec::new();
        let mut run: Option<(u32, u32)> = None;
        let flush = |run: &mut Option<(u32, u32)>, cidrs: &mut Vec<String>| {
            if let Some((first, last)) = run.take() {
                to_cidrs(
                    space.is6,
                    space.starts[first as usize],
                    space.end(last),
                    cidrs,
                );
            }
        };
        for a in atoms {
            if let Some(name) = self.name(space, a) {
                flush(&mut run, &mut cidrs);
                names.insert(name);
                continue;
            }
            match &mut run {
                Some((_, last)) if *last + 1 == a => *last = a,
                _ => {
                    flush(&mut run, &mut cidrs);
                    run = Some((a, a));
                }
            }
        }
        flush(&mut run, &mut cidrs);
        names.into_iter().chain(cidrs).collect()
    }

    /// A pod's (after, else before) or a node's name for an atom.
    fn name(&self, space: &Space, a: u32) -> Option<String> {
        for s in [1, 0] {
            if let Some(p) = space.owner[s][a as usize] {
                return Some(self.states[s].pod(p).id());
            }
        }
        space.node[a as usize].clone()
    }

    /// explain's reasons, before and after, for one connection of a group: each end
    /// whose verdict changed.
    fn because(
        &self,
        space: &Space,
        srcs: &[u32],
        dsts: &[u32],
        proto: usize,
        port: u16,
    ) -> Vec<String> {
        let atoms = |cs: &[u32]| -> Vec<u32> {
            cs.iter()
                .flat_map(|&c| space.classes[c as usize].atoms.iter().take(2).copied())
                .take(4)
                .collect()
        };
        let (sa, da) = (atoms(srcs), atoms(dsts));
        let Some((s, d)) = sa
            .iter()
            .flat_map(|&s| da.iter().map(move |&d| (s, d)))
            .find(|(s, d)| s != d)
        else {
            return Vec::new();
        };
        let (saddr, daddr) = (space.addr(s), space.addr(d));
        let protocol = Protocol::ALL[proto];
        let mut out = Vec::new();
        for (dir, atom, other) in [
            (Direction::Egress, s, daddr),
            (Direction::Ingress, d, saddr),
        ] {
            let pod = |st: usize| space.owner[st][atom as usize].map(|p| self.states[st].pod(p));
            // The verdicts first (cheap); the reasons only for an end that changed.
            let allowed = |st: usize| {
                pod(st).is_none_or(|p| {
                    end_allowed(self.states[st].graph, p, dir, other, protocol, port)
                })
            };
            if allowed(0) == allowed(1) {
                continue;
            }
            let ends: Vec<Option<End>> = (0..2)
                .map(|st| {
                    let state = self.states[st];
                    Some(end_of(
                        state.index,
                        state.graph,
                        pod(st)?,
                        dir,
                        other,
                        protocol,
                        port,
                    ))
                })
                .collect();
            let who = self
                .name(space, atom)
                .unwrap_or_else(|| space.addr(atom).to_string());
            for (when, end) in ["before", "after"].iter().zip(&ends) {
                out.push(format!(
                    "{when}: {dir} of {who}: {}",
                    describe(end.as_ref())
                ));
            }
        }
        out
    }
}

/// One end as explain judges it, in a line.
fn describe(end: Option<&End>) -> String {
    let Some(end) = end else {
        return "allowed (not a pod then: no policy applies)".into();
    };
    let side = match &end.side {
        Side::NotIsolated { reason } => format!("not isolated ({reason})"),
        Side::OwnNode => "allowed (its own node)".into(),
        Side::Allowed { by, .. } => format!("allowed by {}", by.join("; ")),
        Side::Denied { isolated_by, .. } => format!(
            "denied: isolated by {}, and no rule of theirs allows it",
            isolated_by.join(", ")
        ),
    };
    match end.tiers.last() {
        Some(step) if step.tier != StepTier::NetworkPolicy => {
            let v = if end.allowed { "allowed" } else { "denied" };
            format!("{v} ({step})")
        }
        _ => side,
    }
}

/// `[lo, hi]` as the fewest CIDRs.
fn to_cidrs(is6: bool, mut lo: u128, hi: u128, out: &mut Vec<String>) {
    let bits: u32 = if is6 { 128 } else { 32 };
    loop {
        let mut k = lo.trailing_zeros().min(bits);
        let end = |k: u32| {
            if k >= 128 {
                u128::MAX
            } else {
                lo | ((1u128 << k) - 1)
            }
        };
        while end(k) > hi {
            k -= 1;
        }
        let addr: IpAddr = if is6 {
            IpAddr::V6(crate::addr::v6(lo))
        } else {
            IpAddr::V4(crate::addr::v4(lo))
        };
        out.push(format!("{addr}/{}", bits - k));
        let e = end(k);
        if e >= hi {
            break;
        }
        lo = e + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::to_cidrs;

    #[test]
    fn ranges_as_cidrs() {
        let mut out = Vec::new();
        to_cidrs(false, 0, u32::MAX as u128, &mut out);
        assert_eq!(out, ["0.0.0.0/0"]);
        out.clear();
        // 10.0.0.0 - 10.0.0.9
        to_cidrs(false, 0x0a00_0000, 0x0a00_0009, &mut out);
        assert_eq!(out, ["10.0.0.0/29", "10.0.0.8/31"]);
        out.clear();
        to_cidrs(true, 0, u128::MAX, &mut out);
        assert_eq!(out, ["::/0"]);
        out.clear();
        to_cidrs(true, 1, u128::MAX, &mut out);
        assert_eq!(out.len(), 128);
        assert_eq!(out[0], "::1/128");
    }
}
