//! The sweep: every (source class, destination class, protocol, port piece) whose verdict
//! differs between the states, found without visiting the pairs that cannot differ.
//!
//! A connection's verdict is its source's egress end and its destination's ingress end
//! (`explain::end_allowed`, each a function of the other end's address and the port). A
//! pair can change only if one end's function changed, so the sweep runs twice: once from
//! each source whose egress may differ (`space::may_differ`), over every destination;
//! once from each destination whose ingress may differ, over the sources whose egress
//! did not change there (the first run has those). Each subject's function is constant
//! over the regions its peers draw (membership in each, and its own node's addresses),
//! so it is judged once per region, and the other end only where it differs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::space::{self, Pair, Pairs, Space, Starts, State};
use crate::graph::{PeerRef, PodNode};
use crate::policy::{Direction, Protocol};

/// One cell of the answer: a source class, a destination class, a port piece of one
/// protocol, and the verdicts before and after (which differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Raw {
    pub src: u32,
    pub dst: u32,
    pub proto: usize,
    pub lo: u16,
    pub hi: u16,
    pub before: bool,
    pub after: bool,
}

/// What the sweep knows of one direction's pair.
pub(super) struct PairInfo {
    pub changed: bool,
    pub starts: Starts,
    /// Peers of its rules, per state.
    peers: [Vec<PeerRef>; 2],
    hosts: Vec<IpAddr>,
}

pub(super) struct Sweep<'a> {
    pub states: [&'a State<'a>; 2],
    /// `[state][0: egress, 1: ingress]`.
    pub behaviours: &'a [[space::Behaviours; 2]; 2],
    pub pairs: &'a [Pairs; 2],
    pub info: [Vec<PairInfo>; 2],
}

/// Marks reused from one subject to the next: which classes its peers hold (`stamp` equal
/// to the subject's generation), and by which peers.
struct Scratch {
    generation: u32,
    stamp: Vec<u32>,
    keys: Vec<Vec<u32>>,
    touched: Vec<u32>,
    /// The classes each peer holds, per state, worked out when first needed.
    peer_classes: [Vec<Option<Vec<u32>>>; 2],
}

impl Scratch {
    fn new(classes: usize, peers: [usize; 2]) -> Self {
        Scratch {
            generation: 0,
            stamp: vec![0; classes],
            keys: vec![Vec::new(); classes],
            touched: Vec::new(),
            peer_classes: peers.map(|n| vec![None; n]),
        }
    }

    fn next(&mut self) {
        self.generation += 1;
        self.touched.clear();
    }

    fn mark(&mut self, c: u32, j: u32) {
        let c = c as usize;
        if self.stamp[c] != self.generation {
            self.stamp[c] = self.generation;
            self.keys[c].clear();
            self.touched.push(c as u32);
        }
        if self.keys[c].last() != Some(&j) {
            self.keys[c].push(j);
        }
    }

    fn held(&self, c: u32) -> bool {
        self.stamp[c as usize] == self.generation
    }
}

pub(super) const DIRS: [Direction; 2] = [Direction::Egress, Direction::Ingress];

impl<'a> Sweep<'a> {
    pub fn new(
        states: [&'a State<'a>; 2],
        behaviours: &'a [[space::Behaviours; 2]; 2],
        pairs: &'a [Pairs; 2],
    ) -> Self {
        let info = std::array::from_fn(|d| {
            pairs[d]
                .list
                .iter()
                .map(|p| {
                    let pods = [p.before, p.after];
                    let reps: [Option<&PodNode>; 2] = std::array::from_fn(|s| {
                        pods[s].map(|b| states[s].pod(behaviours[s][d].reps[b as usize][0]))
                    });
                    let rules: [_; 2] = reps.map(|r| r.map(|p| space::rules_of(p, DIRS[d])));
                    let ports = rules
                        .iter()
                        .flatten()
                        .flat_map(|(_, ports)| ports.iter().copied());
                    PairInfo {
                        changed: space::may_differ(
                            states[0].graph,
                            reps[0],
                            states[1].graph,
                            reps[1],
                            DIRS[d],
                        ),
                        starts: space::starts_of(ports),
                        peers: std::array::from_fn(|s| {
                            rules[s]
                                .as_ref()
                                .map(|(p, _)| p.clone())
                                .unwrap_or_default()
                        }),
                        hosts: reps
                            .iter()
                            .flatten()
                            .flat_map(|p| p.host_ips.clone())
                            .collect(),
                    }
                })
                .collect()
        });
        Sweep {
            states,
            behaviours,
            pairs,
            info,
        }
    }

    /// One end's verdict in state `s`: direction `d` of pair `pair`'s pod, with `other`.
    /// `None` when every pod of that behaviour holds `other` (the pod itself).
    fn judge(
        &self,
        d: usize,
        pair: Pair,
        s: usize,
        other: IpAddr,
        proto: Protocol,
        port: u16,
    ) -> Option<bool> {
        let b = if s == 0 { pair.before } else { pair.after };
        let Some(b) = b else { return Some(true) };
        let st = self.states[s];
        let pod = self.behaviours[s][d].reps[b as usize]
            .iter()
            .map(|&i| st.pod(i))
            .find(|p| !p.ips.contains(&other))?;
        Some(crate::explain::end_allowed(
            st.graph, pod, DIRS[d], other, proto, port,
        ))
    }

    /// Pair `id` of direction `d` with node addresses left out, for grouping.
    pub fn loose(&self, d: usize, id: u32) -> (Option<u32>, Option<u32>) {
        let p = self.pairs[d].list[id as usize];
        (
            p.before.map(|b| self.behaviours[0][d].loose[b as usize]),
            p.after.map(|b| self.behaviours[1][d].loose[b as usize]),
        )
    }

    /// Both states' verdicts of one end.
    fn judge2(
        &self,
        d: usize,
        pair: Pair,
        other: IpAddr,
        proto: Protocol,
        port: u16,
    ) -> Option<(bool, bool)> {
        Some((
            self.judge(d, pair, 0, other, proto, port)?,
            self.judge(d, pair, 1, other, proto, port)?,
        ))
    }

    /// Every changed cell of one family, sorted.
    pub fn run(&self, space: &Space) -> Vec<Raw> {
        let mut by_pair: [Vec<Vec<u32>>; 2] =
            std::array::from_fn(|d| vec![Vec::new(); self.pairs[d].list.len()]);
        for (c, class) in space.classes.iter().enumerate() {
            by_pair[0][class.egress as usize].push(c as u32);
            by_pair[1][class.ingress as usize].push(c as u32);
        }
        let mut out = Vec::new();
        let peers = self.states.map(|st| st.graph.peers.len());
        let mut scratch = Scratch::new(space.classes.len(), peers);
        for (d, subjects_of) in by_pair.iter().enumerate() {
            for (p, subjects) in subjects_of.iter().enumerate() {
                if self.info[d][p].changed && !subjects.is_empty() {
                    self.sweep_subject(space, d, p, subjects, &mut scratch, &mut out);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The regions pair `p`'s rules draw over the other ends' classes: classes keyed by
    /// which of its peers (and node addresses) hold them; the classes no peer holds are
    /// left out (`scratch.held` is false for them: the caller takes them as the rest).
    fn regions(
        &self,
        space: &Space,
        d: usize,
        p: usize,
        scratch: &mut Scratch,
    ) -> BTreeMap<Vec<u32>, Vec<u32>> {
        let info = &self.info[d][p];
        scratch.next();
        let mut j = 0u32;
        for s in 0..2 {
            for peer in &info.peers[s] {
                if let PeerRef::Peer(id) = *peer {
                    let classes = scratch.peer_classes[s][id].get_or_insert_with(|| {
                        let addrs = &self.states[s].graph.peers[id].addrs;
                        let r = if space.is6 { &addrs.v6 } else { &addrs.v4 };
                        let mut cs: Vec<u32> = r
                            .ranges()
                            .iter()
                            .flat_map(|&(lo, hi)| space.atoms_in(lo, hi))
                            .map(|a| space.class_of[a as usize])
                            .collect();
                        cs.sort_unstable();
                        cs.dedup();
                        cs
                    });
                    let classes = std::mem::take(classes);
                    for &c in &classes {
                        scratch.mark(c, j);
                    }
                    scratch.peer_classes[s][id] = Some(classes);
                }
                j += 1;
            }
        }
        for ip in &info.hosts {
            let (is6, v) = crate::addr::ip_value(*ip);
            if is6 == space.is6 {
                scratch.mark(space.class_of[space.atom(v) as usize], j);
            }
            j += 1;
        }
        let mut regions: BTreeMap<Vec<u32>, Vec<u32>> = BTreeMap::new();
        for &c in &scratch.touched {
            regions
                .entry(scratch.keys[c as usize].clone())
                .or_default()
                .push(c);
        }
        for r in regions.values_mut() {
            r.sort_unstable();
        }
        regions
    }

    /// Where pair `p`'s function differs over one region: (protocol, piece, before, after).
    fn differs_over(
        &self,
        space: &Space,
        d: usize,
        p: usize,
        pair: Pair,
        region: &[u32],
    ) -> Vec<(usize, u16, u16, bool, bool)> {
        let starts = &self.info[d][p].starts;
        // A representative of the region that is not the subject itself.
        for &c in region.iter().take(4) {
            for &a in space.classes[c as usize].atoms.iter().take(2) {
                let other = space.addr(a);
                let mut diffs = Vec::new();
                let mut ok = true;
                'outer: for (pi, proto) in Protocol::ALL.iter().enumerate() {
                    for (lo, hi) in space::pieces(&starts[pi]) {
                        match self.judge2(d, pair, other, *proto, lo) {
                            None => {
                                ok = false;
                                break 'outer;
                            }
                            Some((b, a)) if b != a => diffs.push((pi, lo, hi, b, a)),
                            Some(_) => {}
                        }
                    }
                }
                if ok {
                    return diffs;
                }
            }
        }
        Vec::new()
    }

    fn sweep_subject(
        &self,
        space: &Space,
        d: usize,
        p: usize,
        subjects: &[u32],
        scratch: &mut Scratch,
        out: &mut Vec<Raw>,
    ) {
        let pair = self.pairs[d].list[p];
        let regions = self.regions(space, d, p, scratch);
        for region in regions.values() {
            let diffs = self.differs_over(space, d, p, pair, region);
            if diffs.is_empty() {
                continue;
            }
            for &o in region {
                for &s in subjects {
                    self.cell(space, d, s, o, &diffs, out);
                }
            }
        }
        // The rest (no peer of the subject holds them): judged on a few of them first,
        // listed whole only when the subject's function differs there.
        let all = 0..space.classes.len() as u32;
        let reps: Vec<u32> = all.clone().filter(|&c| !scratch.held(c)).take(4).collect();
        if reps.is_empty() {
            return;
        }
        let diffs = self.differs_over(space, d, p, pair, &reps);
        if diffs.is_empty() {
            return;
        }
        for o in all.filter(|&c| !scratch.held(c)) {
            for &s in subjects {
                self.cell(space, d, s, o, &diffs, out);
            }
        }
    }

    /// Subject class `s` (direction `d`) and other class `o`, over the pieces where the
    /// subject's function differs: the full verdicts, with the other end's.
    fn cell(
        &self,
        space: &Space,
        d: usize,
        s: u32,
        o: u32,
        diffs: &[(usize, u16, u16, bool, bool)],
        out: &mut Vec<Raw>,
    ) {
        let (sc, oc) = (&space.classes[s as usize], &space.classes[o as usize]);
        let s_atom = sc.atoms[0];
        let Some(&o_atom) = oc.atoms.iter().find(|&&a| a != s_atom) else {
            return;
        };
        let (s_addr, o_addr) = (space.addr(s_atom), space.addr(o_atom));
        let od = 1 - d;
        let opair_id = if od == 0 { oc.egress } else { oc.ingress } as usize;
        let opair = self.pairs[od].list[opair_id];
        let ostarts = &self.info[od][opair_id].starts;
        let spair_id = if d == 0 { sc.egress } else { sc.ingress } as usize;
        let spair = self.pairs[d].list[spair_id];
        for &(pi, lo, hi, _, _) in diffs {
            let proto = Protocol::ALL[pi];
            let mut sub: Vec<u16> = ostarts[pi]
                .iter()
                .copied()
                .filter(|&c| c > lo && c <= hi)
                .collect();
            sub.insert(0, lo);
            for (i, &slo) in sub.iter().enumerate() {
                let shi = sub.get(i + 1).map_or(hi, |&n| n - 1);
                // The subject end, judged with this member as the other end.
                let Some((sb, sa)) = self.judge2(d, spair, o_addr, proto, slo) else {
                    continue;
                };
                let Some((ob, oa)) = self.judge2(od, opair, s_addr, proto, slo) else {
                    continue;
                };
                // From a destination: the sources whose egress changed here were swept
                // from their side.
                if d == 1 && ob != oa {
                    continue;
                }
                let (before, after) = (sb && ob, sa && oa);
                if before != after {
                    let (src, dst) = if d == 0 { (s, o) } else { (o, s) };
                    out.push(Raw {
                        src,
                        dst,
                        proto: pi,
                        lo: slo,
                        hi: shi,
                        before,
                        after,
                    });
                }
            }
        }
    }
}
