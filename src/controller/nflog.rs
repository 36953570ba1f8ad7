//! The verdict reader: one OS thread, in the node's network namespace, that reads the
//! NFLOG group the pod chains log to and writes one record per logged connection.
//!
//! ```text
//! kernel (log group G) --Nflog::recv--> LoggedPacket --Board::record--> Record
//!     --> tracing (target nftpol::verdict) + metrics (connections per pod, losses)
//! sync loop --Board::publish (after each applied batch)--^
//! ```
//!
//! Owns: the thread, the socket's lifetime, seq-gap accounting, counting what the rate
//! limit kept out of the log, the record's fields.
//!
//! The kernel's `limit` drops silently, so each denied logging rule carries a counter
//! before its limit (every denied new connection of the chain). The reader takes every
//! record queued, then reads the counter of each chain they name, once: what it grew by,
//! less the records got for the chain meanwhile, is what the limit suppressed, reported
//! in the chain's last record of the lot (`suppressed_before`; its other records say 0).
//! A record logged between the drain and the counter read is counted as suppressed once
//! and taken back from the next report, so totals settle to what the kernel counted; a
//! chain rewritten (its counter back to zero) starts over.
//! Must not: block or lock the sync loop (it only reads the board's last two
//! generations, a mutex held for two `Arc` clones), or explain anything itself.
//!
//! One record per connection, not per packet: a client resends the first packet of a
//! connection that gets no answer (TCP retransmits its SYN, a UDP client its datagram),
//! and a dropped packet leaves no conntrack entry, so each resend is `ct state new` again
//! and is logged again. The reader remembers the 5-tuples it recorded for
//! [`REPEAT_WINDOW`], with what tells a resend from a new connection on the same 5-tuple
//! (a retransmitted SYN keeps its sequence number, an SCTP INIT its initiate tag; UDP has
//! nothing of the kind), and counts a repeat (`nftpol_verdict_records_repeated_total`)
//! instead of writing it; packets without ports (ICMP) each count as a connection.
//!
//! A reader that cannot bind its group (another process holds it) logs an error and
//! ends: enforcement does not depend on it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::board::Board;
use super::metrics::Metrics;
use crate::netlink::{Counters, LoggedPacket, Nflog};
use crate::ruleset::names::{self, AuditChain, LogVerdict};
use crate::verdict_log::{Packet, Record};

/// The tracing target of verdict records (filter with `RUST_LOG=nftpol::verdict=info`).
pub const TARGET: &str = "nftpol::verdict";

/// A running reader; [`VerdictReader::stop`] ends it within a receive timeout.
pub struct VerdictReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VerdictReader {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long the reader waits for the sync loop to publish the state the kernel holds; a
/// loop in the middle of a long batch takes longer, and the records then say whether the
/// older state they were explained with agrees with the kernel.
const FRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts the reader of `group`, inside `netns` when given.
pub fn spawn(
    group: u16,
    netns: Option<PathBuf>,
    board: Arc<Board>,
    metrics: Arc<Metrics>,
) -> std::io::Result<VerdictReader> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("nftpol-verdicts".into())
        .spawn(move || {
            let body = || read(group, &board, &metrics, &flag);
            match netns {
                Some(path) => {
                    if let Err(e) = crate::netlink::in_netns(&path, body) {
                        tracing::error!(error = %crate::error::Chain(&e), "verdict logs: cannot enter the network namespace");
                    }
                }
                None => body(),
            }
        })?;
    Ok(VerdictReader {
        stop,
        thread: Some(thread),
    })
}

fn read(group: u16, board: &Board, metrics: &Metrics, stop: &AtomicBool) {
    let mut nflog = match Nflog::open(group) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(group, error = %crate::error::Chain(&e), "verdict logs are off: cannot bind the NFLOG group");
            return;
        }
    };
    tracing::info!(group = nflog.group(), "reading verdict logs");
    let mut reader = Reader {
        suppressed: Suppressed::open(),
        repeats: Repeats::default(),
        carried: Carried::default(),
        last_seq: None,
        lost: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        let got = match nflog.recv() {
            Ok(got) => got,
            Err(e) => {
                tracing::error!(group, error = %crate::error::Chain(&e), "reading verdict logs");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if got.overflowed {
            // How many is known from the next seq number.
            tracing::warn!(
                group,
                "verdict log socket overflowed: the kernel dropped records"
            );
        }
        for _ in 0..got.undecoded {
            metrics.verdict_unmapped();
        }
        reader.count_lost(&got.packets, metrics);
        if !got.packets.is_empty() {
            board.fresh(FRESH_TIMEOUT);
        }
        reader.write_records(&got.packets, board, metrics);
    }
}

/// What the reader remembers from one drain of the socket to the next.
struct Reader {
    suppressed: Suppressed,
    repeats: Repeats,
    carried: Carried,
    last_seq: Option<u32>,
    /// Records lost since the last one written: reported in the next.
    lost: u64,
}

impl Reader {
    /// Counts the records the kernel dropped before `packets`, from the gaps in their
    /// sequence numbers.
    fn count_lost(&mut self, packets: &[LoggedPacket], metrics: &Metrics) {
        for p in packets {
            if let (Some(last), Some(seq)) = (self.last_seq, p.seq) {
                let gap = u64::from(seq.wrapping_sub(last).wrapping_sub(1));
                // A huge gap is the counter restarting (a new instance), not a loss.
                if gap < 1 << 31 {
                    self.lost += gap;
                    metrics.verdicts_lost(gap);
                }
            }
            self.last_seq = p.seq.or(self.last_seq);
        }
    }

    /// Explains `packets` with the board and writes their records, but for those kept out
    /// (over a pod's rate) and repeats of a connection already recorded.
    fn write_records(&mut self, packets: &[LoggedPacket], board: &Board, metrics: &Metrics) {
        let (logged, records): (Vec<&LoggedPacket>, Vec<Record>) = packets
            .iter()
            .filter_map(|p| match board.record(&packet(p)) {
                Ok(r) => Some((p, r)),
                Err(e) => {
                    metrics.verdict_unmapped();
                    tracing::debug!(target: TARGET, error = %crate::error::Chain(&e), "logged packet of no chain of this node");
                    None
                }
            })
            .unzip();
        let kept_out = self.suppressed.account(&records);
        let now = Instant::now();
        for ((p, r), k) in logged.into_iter().zip(&records).zip(kept_out) {
            if let Some(n) = k {
                metrics.verdicts_suppressed(n);
            }
            if self.repeats.repeat(p, now) {
                metrics.verdict_repeated();
                self.carried.add(&p.prefix, k);
                continue;
            }
            // An audit outcome counts the connections the limit kept out too: the
            // metric is exact, the records sampled.
            let n = match r.verdict {
                LogVerdict::WouldDeny | LogVerdict::WouldAllow => 1 + k.unwrap_or(0),
                _ => 1,
            };
            metrics.verdicts(&r.namespace, &r.pod, r.direction, r.verdict, n);
            write(r, self.lost, self.carried.take(&p.prefix, k));
            self.lost = 0;
        }
    }
}

/// How long a recorded connection's 5-tuple is remembered: TCP gives up resending a SYN
/// after about 127 s (`tcp_syn_retries` 6).
const REPEAT_WINDOW: Duration = Duration::from_secs(120);

/// The most 5-tuples remembered; past it the oldest are forgotten first (a repeat then
/// gives a second record, never a lost one).
const REPEAT_MAX: usize = 1 << 16;

/// (log prefix, source, destination, protocol, ports, opening number).
type Connection = (String, IpAddr, IpAddr, u8, (u16, u16), Option<u32>);

/// The connections recorded within [`REPEAT_WINDOW`], oldest first.
#[derive(Default)]
struct Repeats {
    seen: HashMap<Connection, Instant>,
    order: VecDeque<(Instant, Connection)>,
}

impl Repeats {
    /// Whether `p` resends the first packet of a connection recorded within the window;
    /// remembers it when not.
    fn repeat(&mut self, p: &LoggedPacket, now: Instant) -> bool {
        let Some(ports) = p.ports else { return false };
        while let Some((t, _)) = self.order.front() {
            if now.saturating_duration_since(*t) < REPEAT_WINDOW && self.order.len() < REPEAT_MAX {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        let key = (p.prefix.clone(), p.src, p.dst, p.protocol, ports, p.opening);
        if self.seen.contains_key(&key) {
            return true;
        }
        self.seen.insert(key.clone(), now);
        self.order.push_back((now, key));
        false
    }
}

/// Suppressed counts a repeat would have reported, carried to its chain's next record.
#[derive(Default)]
struct Carried(HashMap<String, u64>);

impl Carried {
    fn add(&mut self, prefix: &str, suppressed: Option<u64>) {
        if let Some(n) = suppressed.filter(|n| *n > 0) {
            *self.0.entry(prefix.to_string()).or_default() += n;
        }
    }

    /// `suppressed` with what earlier repeats of the chain carried; a record that has no
    /// count of its own (an allowed one) carries nothing.
    fn take(&mut self, prefix: &str, suppressed: Option<u64>) -> Option<u64> {
        let n = suppressed?;
        Some(n + self.0.remove(prefix).unwrap_or(0))
    }
}

/// Per denied chain: its counter at the last read, and suppressed connections reported
/// beyond what it counted (records that were still queued at a read).
struct Suppressed {
    counters: Option<Counters>,
    chains: HashMap<String, (u64, u64)>,
}

impl Suppressed {
    fn open() -> Self {
        let counters = Counters::open()
            .map_err(|e| tracing::warn!(error = %crate::error::Chain(&e), "cannot read rule counters: suppressed records are not counted"))
            .ok();
        Suppressed {
            counters,
            chains: HashMap::new(),
        }
    }

    /// For each record: the denied connections of its chain the limit kept out of the log
    /// (on the chain's last record here; 0 on its others), `None` for allowed records or
    /// when the counter is unreadable.
    fn account(&mut self, records: &[Record]) -> Vec<Option<u64>> {
        let mut out = vec![None; records.len()];
        // chain -> (records here, index of its last record, its drop tail)
        let mut here: HashMap<String, (u64, usize, String)> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let (ns, pod, dir) = (&r.namespace, &r.pod, r.direction);
            // The chains whose counters count this verdict's connections (a drop tail or
            // audit chain missing counts 0).
            let counted = match r.verdict {
                LogVerdict::Allowed => None,
                LogVerdict::Denied => Some((
                    names::pod_chain(dir, ns, pod),
                    names::pod_drop_chain(dir, ns, pod),
                )),
                LogVerdict::WouldDeny => Some((
                    names::pod_audit_chain(dir, ns, pod, AuditChain::WouldDeny),
                    String::new(),
                )),
                LogVerdict::WouldAllow => Some((
                    names::pod_audit_chain(dir, ns, pod, AuditChain::WouldAllow),
                    String::new(),
                )),
            };
            if let Some((chain, tail)) = counted {
                let e = here.entry(chain).or_insert((0, i, tail));
                (e.0, e.1) = (e.0 + 1, i);
                out[i] = Some(0);
            }
        }
        let mut chains: Vec<_> = here.into_iter().collect();
        chains.sort();
        for (chain, (got, last_record, tail)) in chains {
            let Some(counters) = self.counters.as_mut() else {
                out[last_record] = None;
                continue;
            };
            // The pod chain's denied log rule and its drop tail's (ClusterNetworkPolicy
            // denies) log with one prefix: their counters are summed (0 for a missing tail).
            let tail_packets = |c: &mut Counters| match tail.is_empty() {
                true => Ok(0),
                false => c.chain_packets(names::TABLE, &tail),
            };
            let counted = match counters
                .chain_packets(names::TABLE, &chain)
                .and_then(|n| Ok(n + tail_packets(counters)?))
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(chain, error = %crate::error::Chain(&e), "reading the chain's counter");
                    out[last_record] = None;
                    continue;
                }
            };
            let (last, ahead) = self.chains.entry(chain).or_insert((0, 0));
            if counted < *last {
                // The chain was rewritten: its counter started again from zero.
                (*last, *ahead) = (0, 0);
            }
            // Signed: more records than the counter grew by takes back an earlier excess.
            let grew = (counted - *last) as i128 - got as i128 - *ahead as i128;
            *last = counted;
            *ahead = (-grew).max(0) as u64;
            out[last_record] = Some(grew.max(0) as u64);
        }
        out
    }
}

fn packet(p: &LoggedPacket) -> Packet<'_> {
    Packet {
        prefix: &p.prefix,
        src: p.src,
        dst: p.dst,
        protocol: p.protocol,
        sport: p.ports.map(|(s, _)| s),
        dport: p.ports.map(|(_, d)| d),
    }
}

/// One record, with `lost` records the reader missed before it and `suppressed` the rate
/// limit kept out of the log.
fn write(r: &Record, lost: u64, suppressed: Option<u64>) {
    let port = r.port.map(|p| p.to_string()).unwrap_or_default();
    let src_port = r.src_port.map(|p| p.to_string()).unwrap_or_default();
    let suppressed = suppressed.map(|n| n.to_string()).unwrap_or_default();
    let tiers: Vec<String> = r.tiers.iter().map(ToString::to_string).collect();
    let tiers = tiers.join("; ");
    tracing::info!(
        target: TARGET,
        verdict = r.verdict.name(),
        direction = %r.direction,
        namespace = %r.namespace,
        pod = %r.pod,
        pod_ip = %r.pod_ip,
        peer = %r.peer_name(),
        peer_ip = %r.peer_ip,
        protocol = %r.protocol_name(),
        port = %port,
        src_port = %src_port,
        isolated_by = %r.isolated_by.join(", "),
        allowed_by = %r.allowed_by.join("; "),
        tiers = %tiers,
        audit_policies = %r.audit_policies.join(", "),
        generation = r.generation,
        judged_by = r.judged_by.name(),
        lost_before = lost,
        suppressed_before = %suppressed,
        "connection {} ({} of {}/{})",
        r.verdict.name(),
        r.direction,
        r.namespace,
        r.pod
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(prefix: &str, sport: Option<u16>) -> LoggedPacket {
        LoggedPacket {
            prefix: prefix.into(),
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: if sport.is_some() { 6 } else { 1 },
            ports: sport.map(|s| (s, 80)),
            opening: sport.map(|_| 7),
            seq: None,
        }
    }

    #[test]
    fn a_resent_first_packet_is_a_repeat_within_the_window_only() {
        let mut r = Repeats::default();
        let t = Instant::now();
        assert!(!r.repeat(&logged("d ingress/x/a", Some(40000)), t));
        assert!(r.repeat(
            &logged("d ingress/x/a", Some(40000)),
            t + Duration::from_secs(1)
        ));
        // Another source port, another chain: other connections.
        assert!(!r.repeat(&logged("d ingress/x/a", Some(40001)), t));
        assert!(!r.repeat(&logged("d egress/x/b", Some(40000)), t));
        // The same 5-tuple with another initial sequence number: a new connection.
        let mut again = logged("d ingress/x/a", Some(40000));
        again.opening = Some(8);
        assert!(!r.repeat(&again, t + Duration::from_secs(2)));
        // ICMP has no ports: every echo is a connection of its own.
        assert!(!r.repeat(&logged("d ingress/x/a", None), t));
        assert!(!r.repeat(&logged("d ingress/x/a", None), t));
        // Past the window the same 5-tuple is recorded again.
        let later = t + REPEAT_WINDOW + Duration::from_secs(1);
        assert!(!r.repeat(&logged("d ingress/x/a", Some(40000)), later));
        assert!(
            r.seen.len() <= 4,
            "expired tuples are forgotten: {}",
            r.seen.len()
        );
    }

    #[test]
    fn a_repeat_carries_its_suppressed_count_to_the_chain_next_record() {
        let mut c = Carried::default();
        c.add("d ingress/x/a", Some(5));
        c.add("d ingress/x/a", Some(0));
        c.add("d ingress/x/a", None);
        assert_eq!(c.take("d egress/x/a", Some(1)), Some(1));
        assert_eq!(c.take("d ingress/x/a", None), None);
        assert_eq!(c.take("d ingress/x/a", Some(2)), Some(7));
        assert_eq!(c.take("d ingress/x/a", Some(2)), Some(2));
    }
}
