//! `nftpol replay`: the recorded connections (verdict records, as `nftpol run --log-format
//! json` writes them, target `nftpol::verdict`) whose verdict would change under a state.
//!
//! ```text
//! JSON lines -> Record (one end: pod, direction, peer address, protocol, port, verdict)
//!   -> judged again: explain::end_of on the state's whole-cluster graph, same end
//!   -> grouped by (pod, direction, peer, protocol, port): count, first and last time
//! ```
//!
//! A record is of one end (the chain that logged it), so it is judged again at that end.
//! One that cannot be judged is reported as such, never guessed: the pod is gone or holds
//! another address, the peer's address now belongs to another pod, or the packet had no
//! port of a protocol policy speaks of.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use super::Verdict;
use crate::explain::end_of;
use crate::graph::PolicyGraph;
use crate::index::Index;
use crate::policy::{Direction, Protocol};

/// The tracing target of verdict records.
pub const TARGET: &str = "nftpol::verdict";

/// One verdict record, as the controller logs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    pub time: Option<String>,
    pub allowed: bool,
    pub direction: Direction,
    pub namespace: String,
    pub pod: String,
    pub pod_ip: IpAddr,
    pub peer: String,
    pub peer_ip: IpAddr,
    pub protocol: String,
    pub port: Option<u16>,
}

/// Reads one JSON log line; `None` for a line that is no verdict record (another target,
/// another shape).
pub fn parse_line(line: &str) -> Option<Record> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    if v.get("target").and_then(Value::as_str) != Some(TARGET) {
        return None;
    }
    let f = v.get("fields")?;
    let s = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
    let direction = match s("direction")?.as_str() {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => return None,
    };
    Some(Record {
        time: v.get("timestamp").and_then(Value::as_str).map(String::from),
        // What the kernel did: an audit record's connection was allowed (would-deny) or
        // denied (would-allow) as enforced.
        allowed: match s("verdict")?.as_str() {
            "allowed" | "would-deny" => true,
            "denied" | "would-allow" => false,
            _ => return None,
        },
        direction,
        namespace: s("namespace")?,
        pod: s("pod")?,
        pod_ip: s("pod_ip")?.parse().ok()?,
        peer: s("peer")?,
        peer_ip: s("peer_ip")?.parse().ok()?,
        protocol: s("protocol")?,
        port: s("port").and_then(|p| p.parse().ok()),
    })
}

/// Recorded connections of one (pod, direction, peer, protocol, port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Replayed {
    /// `namespace/pod` whose chain logged them.
    pub pod: String,
    pub direction: Direction,
    /// `namespace/pod` or the address, as recorded.
    pub peer: String,
    pub peer_ip: IpAddr,
    pub protocol: String,
    pub port: Option<u16>,
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// As recorded.
    pub before: Verdict,
    /// Under the state; `None` when they cannot be judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Verdict>,
    /// explain's reasons under the state, or why they cannot be judged.
    pub because: Vec<String>,
}

/// What replaying records under a state gives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Replay {
    /// Recorded connections whose verdict would change.
    pub changes: Vec<Replayed>,
    /// Recorded connections that cannot be judged under the state.
    pub unjudged: Vec<Replayed>,
}

impl Replay {
    pub fn opened(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.after == Some(Verdict::Allowed))
            .count()
    }

    pub fn closed(&self) -> usize {
        self.changes.len() - self.opened()
    }
}

/// Why a record cannot be judged under the state, if it cannot.
fn unjudgeable(index: &Index, graph: &PolicyGraph, r: &Record) -> Option<String> {
    let id = format!("{}/{}", r.namespace, r.pod);
    let Some(pod) = graph.pod(&r.namespace, &r.pod) else {
        return Some(format!(
            "pod {id} is not a running pod with an address in the state"
        ));
    };
    if !pod.ips.contains(&r.pod_ip) {
        return Some(format!("pod {id} no longer holds {}", r.pod_ip));
    }
    let now = index
        .policy_pod_with_ip(r.peer_ip)
        .map(|p| format!("{}/{}", p.namespace, p.name));
    let was = r.peer.contains('/').then(|| r.peer.clone());
    if now != was {
        let now = now.unwrap_or_else(|| "no pod".into());
        return Some(format!(
            "{} is now {now}'s, recorded as {}",
            r.peer_ip, r.peer
        ));
    }
    if Protocol::parse_lower(&r.protocol).is_none() || r.port.is_none() {
        return Some(format!(
            "{} without a port: no policy judges it",
            r.protocol
        ));
    }
    None
}

/// Judges every record again under the state; groups them.
pub fn replay(index: &Index, records: impl IntoIterator<Item = Record>) -> Replay {
    let graph = PolicyGraph::build(index);
    type Key = (Record, bool);
    let mut groups: BTreeMap<Key, (u64, Option<String>, Option<String>)> = BTreeMap::new();
    for r in records {
        let time = r.time.clone();
        let key = (Record { time: None, ..r }, r.allowed);
        let g = groups.entry(key).or_default();
        g.0 += 1;
        if let Some(t) = time {
            if g.1.as_ref().is_none_or(|f| t < *f) {
                g.1 = Some(t.clone());
            }
            if g.2.as_ref().is_none_or(|l| t > *l) {
                g.2 = Some(t);
            }
        }
    }
    let mut out = Replay::default();
    for ((record, allowed), (count, first, last)) in groups {
        let mut item = Replayed {
            pod: format!("{}/{}", record.namespace, record.pod),
            direction: record.direction,
            peer: record.peer.clone(),
            peer_ip: record.peer_ip,
            protocol: record.protocol.clone(),
            port: record.port,
            count,
            first,
            last,
            before: Verdict::of(allowed),
            after: None,
            because: Vec::new(),
        };
        if let Some(why) = unjudgeable(index, &graph, &record) {
            item.because.push(why);
            out.unjudged.push(item);
            continue;
        }
        let node = graph.pod(&record.namespace, &record.pod);
        let (Some(node), Some(protocol), Some(port)) =
            (node, Protocol::parse_lower(&record.protocol), record.port)
        else {
            continue;
        };
        let end = end_of(
            index,
            &graph,
            node,
            record.direction,
            record.peer_ip,
            protocol,
            port,
        );
        if end.allowed != allowed {
            item.after = Some(Verdict::of(end.allowed));
            item.because = end.allowed_by();
            item.because.extend(end.tier_lines());
            if item.because.is_empty() {
                item.because.push(match &end.side {
                    crate::explain::Side::Denied { isolated_by, .. } => format!(
                        "isolated by {}, and no rule of theirs allows it",
                        isolated_by.join(", ")
                    ),
                    crate::explain::Side::NotIsolated { reason } => reason.clone(),
                    _ => "its own node".into(),
                });
            }
            out.changes.push(item);
        }
    }
    out
}

impl std::fmt::Display for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::text::Escaped;
        writeln!(
            f,
            "{} recorded connections change: {} closed, {} opened; {} cannot be judged",
            self.changes.len(),
            self.closed(),
            self.opened(),
            self.unjudged.len()
        )?;
        for (title, items) in [
            ("changes", &self.changes),
            ("cannot be judged", &self.unjudged),
        ] {
            for r in items.iter() {
                let port = r.port.map(|p| format!("/{p}")).unwrap_or_default();
                let after = r.after.map_or("?", |v| {
                    if v == Verdict::Allowed {
                        "allowed"
                    } else {
                        "denied"
                    }
                });
                let before = if r.before == Verdict::Allowed {
                    "allowed"
                } else {
                    "denied"
                };
                writeln!(
                    f,
                    "{title}: {} of {} with {} ({}) {}{port}: {before} -> {after}, {} records{}",
                    r.direction,
                    Escaped(&r.pod),
                    Escaped(&r.peer),
                    r.peer_ip,
                    Escaped(&r.protocol),
                    r.count,
                    match (&r.first, &r.last) {
                        (Some(a), Some(b)) => format!(" from {} to {}", Escaped(a), Escaped(b)),
                        _ => String::new(),
                    }
                )?;
                for b in &r.because {
                    writeln!(f, "  {}", Escaped(b))?;
                }
            }
        }
        Ok(())
    }
}
