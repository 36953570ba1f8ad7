//! The verdict-record check (issue 14): after a step's probes, for a sample of its cells,
//! the records the node controllers wrote (tracing target `nftpol::verdict`, captured in
//! this process) must be exactly what `explain` says of each end of the connection.
//!
//! For each sampled cell, per side (the client's egress on its node, the server's ingress
//! on its node):
//! - the side is a pod that policy isolates in that direction and the packet got there:
//!   exactly one record, `denied` naming the pod, the peer, the protocol and port and the
//!   isolating policies, or `allowed` (the controllers run with `--log-allowed`) naming
//!   also the rules `explain` names;
//! - otherwise (not isolated, not a pod, its own node, or the other side dropped the
//!   packet first): no record at all;
//! - and where audited policies (`nftpol.io/mode: audit`, all of a case's policies under
//!   `--audit`) would judge the side otherwise: exactly one `would-deny` or
//!   `would-allow` record more, naming the audited policies `explain` names. Each side is
//!   judged on its own: a connection both ends' audited policies would deny gives one
//!   record per end (enforced, nothing stops it at the first).
//!
//! Only the controller backend reads verdict logs; the others report the check skipped.
//! Owns: capturing records, sampling cells, the comparison. Must not: decide semantics of
//! its own (the expectations are `explain`'s, from the harness's own index).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nftpol::explain;
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::policy::{Direction, Protocol};
use tracing_subscriber::layer::SubscriberExt;

use crate::longlived::Tally;

/// Cells checked per step by default (half denied, half allowed, where the step has them).
pub const DEFAULT_PER_STEP: u16 = 4;

/// The tracing target the controller writes records on.
const TARGET: &str = nftpol::controller::nflog::TARGET;

/// The longest records may take to arrive after the probes (the reader waits for the sync
/// loop to publish its state first). A bound, not a wait: the check ends as soon as every
/// expected record is there. 5 s was once too short with two controller cells loading
/// the 2-core CI machine (a rehearsal's one failure in 832 checks, passing alone 3 of 3).
const SETTLE: Duration = Duration::from_secs(30);

pub type Fields = BTreeMap<String, String>;

/// Every verdict record written in this process so far.
fn records() -> &'static Arc<Mutex<Vec<Fields>>> {
    static RECORDS: OnceLock<Arc<Mutex<Vec<Fields>>>> = OnceLock::new();
    RECORDS.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

/// Installs the capturing subscriber (once, before any controller starts). Nothing else
/// of the controllers' logs is kept.
pub fn install() {
    let subscriber = tracing_subscriber::registry().with(Capture(records().clone()));
    // Another subscriber already installed (a test) keeps its own: records then are not
    // captured, and the check finds none, which fails rather than passes.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

struct Capture(Arc<Mutex<Vec<Fields>>>);

struct Visit<'a>(&'a mut Fields);

impl tracing::field::Visit for Visit<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.to_string());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != TARGET || *meta.level() != tracing::Level::INFO {
            return;
        }
        let mut fields = Fields::new();
        event.record(&mut Visit(&mut fields));
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fields);
    }
}

/// Where the records of the probes about to be sent begin.
pub fn mark() -> usize {
    records().lock().unwrap_or_else(|e| e.into_inner()).len()
}

fn since(mark: usize) -> Vec<Fields> {
    let all = records().lock().unwrap_or_else(|e| e.into_inner());
    all.get(mark..).map(<[Fields]>::to_vec).unwrap_or_default()
}

/// One probed cell, as the check needs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// How the failure report names it (`x/a -> y/b tcp/80 ipv4`).
    pub label: String,
    /// `ns/name` of the client and server when they are pods.
    pub from_pod: Option<String>,
    pub to_pod: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    /// The client socket's port: tells this probe's records from another connection's
    /// between the same ends (a held one, a late record of an earlier step).
    pub src_port: Option<u16>,
    /// What the case says enforcement does (`X`: denied): only cells whose outcome
    /// matched the case are sampled. Under `--audit` the kernel connects every cell, and
    /// this is still what the sample mixes.
    pub denied_as_written: bool,
}

/// How long after a probe the same UDP 5-tuple may be taken by the reader for a resend
/// of it: its window (120 s), with room for the time between the harness and the reader.
const REPEAT_WINDOW: Duration = Duration::from_secs(130);

/// A UDP probe's 5-tuple (the protocol implied). Within [`REPEAT_WINDOW`] the same key
/// with the same verdict is a resend to the reader, and gets no record; with the other
/// verdict it may meet the hold of a connection cut in between (dropped unlogged).
type FlowKey = (IpAddr, u16, IpAddr, u16);

fn probed() -> &'static Mutex<BTreeMap<FlowKey, Instant>> {
    static PROBED: OnceLock<Mutex<BTreeMap<FlowKey, Instant>>> = OnceLock::new();
    PROBED.get_or_init(Mutex::default)
}

/// The cells whose records can be told apart from an earlier probe's: the reader records
/// one connection once, and takes a UDP datagram on the 5-tuple of one it recorded within
/// its window for a resend (UDP carries nothing like TCP's initial sequence number). A
/// UDP probe whose ephemeral port happens to repeat an earlier probe's between the same
/// ends (a step or case before) may therefore get no record of its own, rightly; such a
/// cell is left out of the sample. Every cell given is remembered for the next steps.
pub fn distinguishable(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let now = Instant::now();
    let mut probed = probed().lock().unwrap_or_else(|e| e.into_inner());
    probed.retain(|_, t| now.duration_since(*t) < REPEAT_WINDOW);
    let key = |c: &Candidate| {
        (c.protocol == Protocol::Udp)
            .then_some(c.src_port)
            .flatten()
            .map(|p| (c.src, p, c.dst, c.port))
    };
    let mut kept = Vec::with_capacity(candidates.len());
    for c in candidates {
        match key(&c) {
            Some(k) => {
                if probed.insert(k, now).is_none() {
                    kept.push(c);
                }
            }
            None => kept.push(c),
        }
    }
    kept
}

/// Up to `n` cells, half of them denied, spread over the step's matrix.
pub fn sample(candidates: &[Candidate], n: usize) -> Vec<Candidate> {
    let (denied, allowed): (Vec<_>, Vec<_>) = candidates.iter().partition(|c| c.denied_as_written);
    let spread = |list: &[&Candidate], k: usize| -> Vec<Candidate> {
        if list.is_empty() || k == 0 {
            return Vec::new();
        }
        let k = k.min(list.len());
        (0..k).map(|i| list[i * list.len() / k].clone()).collect()
    };
    // Half denied, or more when there are too few allowed cells to fill the rest.
    let d = denied
        .len()
        .min((n / 2).max(n.saturating_sub(allowed.len())));
    let mut out = spread(&denied, d);
    out.extend(spread(&allowed, n - out.len()));
    out
}

/// The records one side must give: none, or one per verdict listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    direction: Direction,
    /// `ns/name` of the pod whose chain logs.
    pod: String,
    peer_ip: IpAddr,
    /// Empty: no record for this side.
    records: Vec<Want>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    verdict: &'static str,
    peer: String,
    isolated_by: String,
    allowed_by: String,
    tiers: String,
    audit_policies: String,
}

fn side_expectation(
    index: &Index,
    graph: &PolicyGraph,
    pod: &str,
    dir: Direction,
    other: (IpAddr, Option<&String>),
    c: &Candidate,
) -> (Expected, bool) {
    let key = pod
        .split_once('/')
        .map(|(n, p)| (n.to_string(), p.to_string()));
    let node = key.and_then(|k| graph.pods.get(&k));
    let mut expected = Expected {
        direction: dir,
        pod: pod.to_string(),
        peer_ip: other.0,
        records: Vec::new(),
    };
    let Some(node) = node else {
        return (expected, true);
    };
    let peer = other.1.cloned().unwrap_or_else(|| other.0.to_string());
    let end = explain::end_of(index, graph, node, dir, other.0, c.protocol, c.port);
    let has_chain = node.isolation(dir).is_some() || !node.tiers.side(dir).is_empty();
    if has_chain && end.logged() {
        expected.records.push(Want {
            verdict: if end.allowed { "allowed" } else { "denied" },
            peer: peer.clone(),
            isolated_by: isolated_by(node, dir),
            allowed_by: end.allowed_by().join("; "),
            tiers: end.tier_lines().join("; "),
            audit_policies: String::new(),
        });
    }
    let audited = explain::audited_end(
        index,
        graph,
        node,
        dir,
        other.0,
        c.protocol,
        c.port,
        end.allowed,
    );
    if let Some(a) = audited.filter(|a| !a.policies.is_empty()) {
        let view = node.audited_in(dir).unwrap_or(node);
        expected.records.push(Want {
            verdict: if end.allowed {
                "would-deny"
            } else {
                "would-allow"
            },
            peer,
            isolated_by: isolated_by(view, dir),
            allowed_by: a.end.allowed_by().join("; "),
            tiers: a.end.tier_lines().join("; "),
            audit_policies: a.policies.join(", "),
        });
    }
    (expected, end.allowed)
}

fn isolated_by(node: &nftpol::graph::PodNode, dir: Direction) -> String {
    node.isolation(dir)
        .map(|i| i.isolated_by.join(", "))
        .unwrap_or_default()
}

/// What each side of `c` must log: the client's egress, then (if that let it through)
/// the server's ingress.
fn expectations(index: &Index, graph: &PolicyGraph, c: &Candidate) -> Vec<Expected> {
    let mut out = Vec::new();
    if let Some(pod) = &c.from_pod {
        let (e, passed) = side_expectation(
            index,
            graph,
            pod,
            Direction::Egress,
            (c.dst, c.to_pod.as_ref()),
            c,
        );
        out.push(e);
        if !passed {
            if let Some(to) = &c.to_pod {
                out.push(Expected {
                    direction: Direction::Ingress,
                    pod: to.clone(),
                    peer_ip: c.src,
                    records: Vec::new(),
                });
            }
            return out;
        }
    }
    if let Some(pod) = &c.to_pod {
        let (e, _) = side_expectation(
            index,
            graph,
            pod,
            Direction::Ingress,
            (c.src, c.from_pod.as_ref()),
            c,
        );
        out.push(e);
    }
    out
}

fn matching<'a>(records: &'a [Fields], e: &Expected, c: &Candidate) -> Vec<&'a Fields> {
    let (ns, name) = e.pod.split_once('/').unwrap_or(("", ""));
    let port = c.port.to_string();
    let dir = e.direction.to_string();
    let peer_ip = e.peer_ip.to_string();
    let src_port = c.src_port.map(|p| p.to_string());
    let get = |r: &'a Fields, k: &str| r.get(k).map(String::as_str);
    records
        .iter()
        .filter(|r| {
            get(r, "direction") == Some(dir.as_str())
                && get(r, "namespace") == Some(ns)
                && get(r, "pod") == Some(name)
                && get(r, "peer_ip") == Some(peer_ip.as_str())
                && get(r, "protocol") == Some(c.protocol.name())
                && get(r, "port") == Some(port.as_str())
                && src_port
                    .as_deref()
                    .is_none_or(|p| get(r, "src_port") == Some(p))
        })
        .collect()
}

/// Compares one side's records with what it must give; `None` when they agree.
fn compare(records: &[Fields], e: &Expected, c: &Candidate) -> Option<String> {
    let got = matching(records, e, c);
    let verdict = |r: &Fields| r.get("verdict").cloned().unwrap_or_default();
    let unwanted: Vec<_> = got
        .iter()
        .filter(|r| !e.records.iter().any(|w| verdict(r) == w.verdict))
        .collect();
    if !unwanted.is_empty() {
        let wanted: Vec<_> = e.records.iter().map(|w| w.verdict).collect();
        return Some(format!(
            "{} {} of {}: records expected {wanted:?}, got also {}: {:?}",
            c.label,
            e.direction,
            e.pod,
            unwanted.len(),
            unwanted
        ));
    }
    e.records.iter().find_map(|w| {
        let of_verdict: Vec<_> = got.iter().filter(|r| verdict(r) == w.verdict).collect();
        let [r] = of_verdict.as_slice() else {
            return Some(format!(
                "{} {} of {}: one {} record expected, got {}: {:?}",
                c.label,
                e.direction,
                e.pod,
                w.verdict,
                of_verdict.len(),
                of_verdict
            ));
        };
        let field = |k: &str| r.get(k).cloned().unwrap_or_default();
        let seen = [
            field("verdict"),
            field("peer"),
            field("isolated_by"),
            field("allowed_by"),
            field("tiers"),
            field("audit_policies"),
        ];
        let wanted = [
            w.verdict.to_string(),
            w.peer.clone(),
            w.isolated_by.clone(),
            w.allowed_by.clone(),
            w.tiers.clone(),
            w.audit_policies.clone(),
        ];
        (seen != wanted).then(|| {
            format!(
                "{} {} of {}: record {seen:?} (verdict, peer, isolated_by, allowed_by, tiers, audit_policies), explain says {wanted:?}",
                c.label, e.direction, e.pod
            )
        })
    })
}

/// Waits for the records of `sample` (those that must come) and checks every side.
/// Returns the tally and one line per failed cell.
pub fn check(mark: usize, index: &Index, sample: &[Candidate]) -> (Tally, Vec<String>) {
    let graph = PolicyGraph::build(index);
    let plans: Vec<Vec<Expected>> = sample
        .iter()
        .map(|c| expectations(index, &graph, c))
        .collect();
    let due: usize = plans.iter().flatten().map(|e| e.records.len()).sum();
    let deadline = Instant::now() + SETTLE;
    let mut records = since(mark);
    while Instant::now() < deadline {
        let present = plans
            .iter()
            .zip(sample)
            .flat_map(|(p, c)| p.iter().map(move |e| (e, c)))
            .map(|(e, c)| {
                let got = matching(&records, e, c);
                e.records
                    .iter()
                    .filter(|w| {
                        got.iter()
                            .any(|r| r.get("verdict").map(String::as_str) == Some(w.verdict))
                    })
                    .count()
            })
            .sum::<usize>();
        if present >= due {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        records = since(mark);
    }
    // Whatever else was on its way (a second record that must not be there).
    std::thread::sleep(Duration::from_millis(300));
    records = since(mark);
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for (plan, c) in plans.iter().zip(sample) {
        let wrong: Vec<String> = plan
            .iter()
            .filter_map(|e| compare(&records, e, c))
            .collect();
        if wrong.is_empty() {
            tally.passed += 1;
        } else {
            tally.failed += 1;
            failures.extend(wrong);
        }
    }
    (tally, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(connected: bool, i: usize) -> Candidate {
        Candidate {
            label: format!("c{i}"),
            from_pod: None,
            to_pod: None,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 80,
            src_port: Some(40000),
            denied_as_written: !connected,
        }
    }

    /// A UDP probe on the 5-tuple of an earlier one is left out, whatever its verdict:
    /// the reader takes it for a resend. TCP and another source port stay.
    #[test]
    fn a_udp_probe_repeating_an_earlier_5_tuple_is_not_sampled() {
        let udp = |sport: u16, connected: bool| Candidate {
            src: "10.99.0.1".parse().unwrap(),
            dst: "10.99.0.2".parse().unwrap(),
            protocol: Protocol::Udp,
            src_port: Some(sport),
            ..cand(connected, sport as usize)
        };
        let tcp = Candidate {
            src: "10.99.0.1".parse().unwrap(),
            dst: "10.99.0.2".parse().unwrap(),
            ..cand(false, 0)
        };
        let labels = |v: Vec<Candidate>| v.into_iter().map(|c| c.label).collect::<Vec<_>>();
        assert_eq!(
            labels(distinguishable(vec![udp(50000, false), tcp.clone()])),
            ["c50000", "c0"]
        );
        assert_eq!(
            labels(distinguishable(vec![
                udp(50000, false),
                udp(50001, false),
                udp(50000, true),
                udp(50001, false),
                tcp
            ])),
            ["c50001", "c0"]
        );
    }

    #[test]
    fn the_sample_mixes_denied_and_allowed_cells_and_fills_from_either() {
        let list: Vec<_> = (0..10).map(|i| cand(i % 3 == 0, i)).collect();
        let s = sample(&list, 4);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|c| !c.denied_as_written).count(), 2);
        // Only denied cells: the sample takes them all up to n.
        let denied: Vec<_> = (0..3).map(|i| cand(false, i)).collect();
        assert_eq!(sample(&denied, 4).len(), 3);
        assert!(sample(&[], 4).is_empty());
    }

    #[test]
    fn a_missing_an_extra_or_a_wrong_record_is_reported() {
        let c = Candidate {
            from_pod: Some("x/a".into()),
            to_pod: Some("x/b".into()),
            ..cand(false, 0)
        };
        let e = Expected {
            direction: Direction::Ingress,
            pod: "x/b".into(),
            peer_ip: c.src,
            records: vec![Want {
                verdict: "denied",
                peer: "x/a".into(),
                isolated_by: "x/p".into(),
                allowed_by: String::new(),
                tiers: String::new(),
                audit_policies: String::new(),
            }],
        };
        let rec = |verdict: &str, iso: &str| -> Fields {
            [
                ("direction", "ingress"),
                ("namespace", "x"),
                ("pod", "b"),
                ("peer_ip", "10.0.0.1"),
                ("peer", "x/a"),
                ("protocol", "tcp"),
                ("port", "80"),
                ("src_port", "40000"),
                ("verdict", verdict),
                ("isolated_by", iso),
                ("allowed_by", ""),
                ("tiers", ""),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        assert_eq!(compare(&[rec("denied", "x/p")], &e, &c), None);
        assert!(compare(&[], &e, &c).is_some(), "missing");
        assert!(compare(&[rec("denied", "x/p"), rec("denied", "x/p")], &e, &c).is_some());
        assert!(
            compare(&[rec("denied", "x/q")], &e, &c).is_some(),
            "wrong policy"
        );
        let none = Expected {
            records: Vec::new(),
            ..e.clone()
        };
        assert!(
            compare(&[rec("denied", "x/p")], &none, &c).is_some(),
            "unexpected"
        );
        assert_eq!(compare(&[], &none, &c), None);
        // An audited side: the enforced record and one would-allow record naming the
        // audited policy; a would-allow record alone is missing the denied one.
        let mut would_allow = rec("would-allow", "x/p, x/q");
        would_allow.insert("audit_policies".into(), "x/q".into());
        let mut audited = e.clone();
        audited.records.push(Want {
            verdict: "would-allow",
            isolated_by: "x/p, x/q".into(),
            audit_policies: "x/q".into(),
            ..e.records[0].clone()
        });
        let both = [rec("denied", "x/p"), would_allow.clone()];
        assert_eq!(compare(&both, &audited, &c), None);
        assert!(compare(&[would_allow.clone()], &audited, &c).is_some());
        assert!(
            compare(&both, &e, &c).is_some(),
            "an audit record not expected"
        );
        assert!(compare(
            &[rec("denied", "x/p"), would_allow.clone(), would_allow],
            &audited,
            &c
        )
        .is_some());
    }
}
