//! Long-lived connections across the steps of a case (issue 12: revoked means revoked).
//!
//! After a step's probes, a deterministic sample of the TCP cells the step allows (and the
//! kernel connected) each get one connection that stays open into the next step. Once
//! the next step is in the kernel and the cut has had its bounded time, each connection
//! must carry data both ways when its cell is `.` in the new step, and none either way
//! when it is `X`.
//!
//! ```text
//! step i:   program, flush conntrack, probe ──> sample ──> open + one byte each way
//! step i+1: program (the controller cuts) ──> wait for the cut ──> write, count ──> verdicts
//!           then flush conntrack and probe as usual
//! ```
//!
//! Owns: the sample, the connections (client sockets, and the server ends the servers
//! hand over through [`Handoff`]), the timing of the check and its verdicts. Must not
//! program nodes, flush conntrack, or decide which backends cut (the backend says so).

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use socket2::Socket;

use crate::case::Step;
use crate::cluster::Cluster;
use crate::netns;
use crate::proto::{socket_for, Family, Probe, Proto};

/// Default number of connections held per step (`--long-lived`).
pub const DEFAULT_PER_STEP: u16 = 6;
/// The longest a connection may take to open and be handed over, or to carry its first
/// byte each way, in the step that allows it.
const OPEN_TIMEOUT: Duration = Duration::from_millis(1000);
/// The longest the cut may take to show in the backend's counter after the step's rules
/// are in the kernel (it follows the batch in the same turn of the sync loop).
const CUT_WAIT: Duration = Duration::from_secs(3);
/// After the counter moved: another node's controller, or a second batch of the step,
/// may still be cutting.
const SETTLE: Duration = Duration::from_millis(200);
/// Bytes written each way per connection after the cut, one per tick.
const WRITES: usize = 3;
const TICK: Duration = Duration::from_millis(100);
/// After the last write: delivery on a clean path takes well under a millisecond; this
/// covers the scheduling of this thread, not retransmissions.
const GRACE: Duration = Duration::from_millis(400);

/// Accepted connections the servers hand over: a server that accepts from a peer this
/// registry expects keeps the connection here instead of closing it.
#[derive(Clone, Default)]
pub struct Handoff(Arc<Mutex<HashMap<SocketAddr, Option<Socket>>>>);

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Option<Socket>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expect(&self, peer: SocketAddr) {
        self.lock().insert(peer, None);
    }

    /// Called by a server for every connection it accepts; one nobody expects is closed.
    pub fn offer(&self, peer: Option<SocketAddr>, conn: Socket) {
        let Some(peer) = peer else { return };
        if let Some(slot @ None) = self.lock().get_mut(&peer) {
            *slot = Some(conn);
        }
    }

    fn claim(&self, peer: SocketAddr) -> Option<Socket> {
        let mut map = self.lock();
        let conn = map.get_mut(&peer)?.take()?;
        map.remove(&peer);
        Some(conn)
    }

    fn forget(&self, peer: SocketAddr) {
        self.lock().remove(&peer);
    }
}

/// A probed TCP cell that connected where its step allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub from: String,
    pub to: String,
    pub probe: Probe,
    pub family: Family,
    /// The client's namespace, the address it binds, where it connects (the pod, or its
    /// Service address).
    pub netns: String,
    pub bind: IpAddr,
    pub dst: SocketAddr,
}

impl Candidate {
    fn name(&self) -> String {
        format!(
            "{} -> {} {} {}",
            self.from, self.to, self.probe, self.family
        )
    }
}

/// A sampled cell and its verdict in the next step (`true`: `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampled {
    pub cell: Candidate,
    pub kept: bool,
}

/// The cell's verdict in `step`, if that step probes it.
fn verdict_in(step: &Step, c: &Candidate) -> Option<bool> {
    step.expect
        .iter()
        .filter(|e| e.family == c.family && e.probes.contains(&c.probe))
        .find_map(|e| {
            let r = e.matrix.rows.iter().position(|n| *n == c.from)?;
            let col = e.matrix.cols.iter().position(|n| *n == c.to)?;
            e.matrix.cells[r][col].expected()
        })
}

/// Whether endpoint `name` keeps its namespace from `now` to `next` (a pod moved or
/// readdressed is rebuilt, and its connections with it).
fn stays(now: &Cluster, next: &Cluster, name: &str) -> bool {
    if !name.contains('/') {
        return true;
    }
    match (now.pods.get(name), next.pods.get(name)) {
        (Some(a), Some(b)) => a.node == b.node && a.ips == b.ips,
        _ => false,
    }
}

/// FNV-1a: a hash that is the same in every run and on every machine.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Up to `n` of the candidates (TCP cells only), those the next step judges and whose
/// endpoints survive into it: half revoked by the next step where it revokes any (the
/// cells the check is about), the rest kept, each group in the order of a stable hash.
pub fn sample(candidates: &[Candidate], now: &Cluster, next: &Step, n: usize) -> Vec<Sampled> {
    let mut seen = std::collections::BTreeSet::new();
    let (mut revoked, mut kept): (Vec<Sampled>, Vec<Sampled>) = candidates
        .iter()
        .filter(|c| c.probe.proto == Proto::Tcp)
        .filter(|c| stays(now, &next.cluster, &c.from) && stays(now, &next.cluster, &c.to))
        .filter(|c| seen.insert(c.name()))
        .filter_map(|c| {
            verdict_in(next, c).map(|kept| Sampled {
                cell: c.clone(),
                kept,
            })
        })
        .partition(|s| !s.kept);
    for group in [&mut revoked, &mut kept] {
        group.sort_by_key(|s| (stable_hash(&s.cell.name()), s.cell.name()));
    }
    let take_revoked = revoked.len().min(n - n.min(kept.len()).min(n / 2));
    let mut out: Vec<Sampled> = revoked.into_iter().take(take_revoked).collect();
    let room = n - out.len();
    out.extend(kept.into_iter().take(room));
    out
}

/// Long-lived checks of a run, counted apart from the probes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

/// What one case's long-lived checks found.
#[derive(Debug, Default)]
pub struct Report {
    pub tally: Tally,
    /// Skips by reason.
    pub skips: BTreeMap<String, usize>,
    /// One line per failed check, naming the step, the cell and what was seen.
    pub failures: Vec<String>,
}

impl Report {
    pub fn skip(&mut self, reason: &str, n: usize) {
        if n > 0 {
            self.tally.skipped += n;
            *self.skips.entry(reason.to_string()).or_default() += n;
        }
    }

    fn fail(&mut self, line: String) {
        self.tally.failed += 1;
        self.failures.push(line);
    }

    /// ` (2 long-lived checks skipped: why)`, or nothing.
    /// ` (N <what> checks skipped: why)` for each reason.
    pub fn note(&self, what: &str) -> String {
        self.skips
            .iter()
            .map(|(why, n)| format!(" ({n} {what} checks skipped: {why})"))
            .collect()
    }
}

/// One held connection: the client's socket and the server's accepted one.
struct Conn {
    cell: Sampled,
    client: TcpStream,
    server: TcpStream,
}

/// The connections opened in one step, checked in the next.
pub struct Held {
    /// The step they were opened in (1-based).
    step: usize,
    conns: Vec<Conn>,
}

/// Bytes read and how the stream ended, if it did.
#[derive(Debug, Default)]
struct Seen {
    bytes: usize,
    end: Option<String>,
}

fn drain(s: &mut TcpStream) -> Seen {
    let mut out = Seen::default();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                out.end = Some("closed by the peer".into());
                return out;
            }
            Ok(n) => out.bytes += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return out,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                out.end = Some(e.to_string());
                return out;
            }
        }
    }
}

/// Starts one connection; returns the client socket and the peer address the server
/// will see.
fn connect(c: &Candidate, handoff: &Handoff) -> Result<(Socket, SocketAddr)> {
    let _in = netns::enter(&c.netns)?;
    let s = socket_for(Proto::Tcp, c.dst.ip())?;
    // Bound first, so the registry knows the peer before the server can accept it.
    s.bind(&SocketAddr::new(c.bind, 0).into())?;
    s.set_nonblocking(true)?;
    let peer = s
        .local_addr()?
        .as_socket()
        .context("a bound socket has an address")?;
    handoff.expect(peer);
    match s.connect(&c.dst.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(e) => {
            handoff.forget(peer);
            return Err(e.into());
        }
    }
    Ok((s, peer))
}

/// Waits for the server side of each opened connection (the serving thread hands it
/// over); one not accepted within [`OPEN_TIMEOUT`] is a failure.
fn accepted(
    mut pending: Vec<(Sampled, Socket, SocketAddr)>,
    step: usize,
    handoff: &Handoff,
    report: &mut Report,
) -> Vec<(Sampled, Socket, Socket)> {
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let mut conns = Vec::new();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (cell, s, peer) in pending {
            match handoff.claim(peer) {
                Some(server) => conns.push((cell, s, server)),
                None => still.push((cell, s, peer)),
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(5));
    }
    for (cell, _, peer) in pending {
        handoff.forget(peer);
        report.fail(format!(
            "long-lived step {step}: {}: not accepted within {} ms, though its probe connected",
            cell.cell.name(),
            OPEN_TIMEOUT.as_millis()
        ));
    }
    conns
}

/// Opens the sampled connections and checks each carries one byte each way. A cell
/// that cannot is a failure: its step allows it and its probe connected.
pub fn open(sampled: Vec<Sampled>, step: usize, handoff: &Handoff, report: &mut Report) -> Held {
    let mut pending = Vec::new();
    for cell in sampled {
        match connect(&cell.cell, handoff) {
            Ok((s, peer)) => pending.push((cell, s, peer)),
            Err(e) => report.fail(format!(
                "long-lived step {step}: {}: cannot open: {e:#}",
                cell.cell.name()
            )),
        }
    }
    let conns = accepted(pending, step, handoff, report);
    let mut held = Held {
        step,
        conns: Vec::new(),
    };
    for (cell, client, server) in conns {
        let (client, server): (TcpStream, TcpStream) = (client.into(), server.into());
        if let Err(e) = server.set_nonblocking(true) {
            report.fail(format!(
                "long-lived step {step}: {}: the accepted socket: {e}",
                cell.cell.name()
            ));
            continue;
        }
        held.conns.push(Conn {
            cell,
            client,
            server,
        });
    }
    let seen = exchange(&mut held.conns, 1, Instant::now() + OPEN_TIMEOUT, |_| true);
    let mut ok = Vec::new();
    for (conn, (to_server, to_client)) in held.conns.drain(..).zip(seen) {
        if to_server.bytes == 1 && to_client.bytes == 1 {
            ok.push(conn);
        } else {
            report.fail(format!(
                "long-lived step {step}: {}: allowed, yet carried {} of 1 byte client->server \
                 and {} of 1 server->client within {} ms{}",
                conn.cell.cell.name(),
                to_server.bytes,
                to_client.bytes,
                OPEN_TIMEOUT.as_millis(),
                ends(&to_server, &to_client)
            ));
        }
    }
    held.conns = ok;
    held
}

fn ends(a: &Seen, b: &Seen) -> String {
    match (&a.end, &b.end) {
        (None, None) => String::new(),
        (x, y) => format!(
            " (server end: {}; client end: {})",
            x.as_deref().unwrap_or("open"),
            y.as_deref().unwrap_or("open")
        ),
    }
}

/// Writes `writes` bytes each way on every connection, one per tick, then reads until
/// `until`, or earlier once every connection `may_stop_early` admits has all its bytes.
/// Returns per connection (read by the server, read by the client).
fn exchange(
    conns: &mut [Conn],
    writes: usize,
    until: Instant,
    may_stop_early: impl Fn(&Conn) -> bool,
) -> Vec<(Seen, Seen)> {
    let mut seen: Vec<(Seen, Seen)> = conns.iter().map(|_| Default::default()).collect();
    for i in 0..writes {
        for c in conns.iter_mut() {
            // A failed write shows as missing bytes; a reset as the stream's end.
            let _ = c.client.write(b"c");
            let _ = c.server.write(b"s");
        }
        if i + 1 < writes {
            std::thread::sleep(TICK);
        }
    }
    loop {
        for (c, (to_server, to_client)) in conns.iter_mut().zip(seen.iter_mut()) {
            let (a, b) = (drain(&mut c.server), drain(&mut c.client));
            to_server.bytes += a.bytes;
            to_client.bytes += b.bytes;
            to_server.end = to_server.end.take().or(a.end);
            to_client.end = to_client.end.take().or(b.end);
        }
        let done = conns
            .iter()
            .zip(&seen)
            .all(|(c, (s, k))| may_stop_early(c) && s.bytes >= writes && k.bytes >= writes);
        if done || Instant::now() >= until {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How the harness learns that the cut happened: the backend's count of cut conntrack
/// entries, summed over the nodes (`None`: the backend does not count).
pub struct CutCounter<'a> {
    pub before: Option<u64>,
    pub now: &'a mut dyn FnMut() -> Option<u64>,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Checks every connection once the next step (`self.step + 1`) is in the kernel.
    /// `rebuilt`: pods whose namespace was rebuilt for that step.
    pub fn check(mut self, rebuilt: &[String], cut: CutCounter<'_>, report: &mut Report) {
        let next = self.step + 1;
        let before = self.conns.len();
        self.conns
            .retain(|c| !rebuilt.contains(&c.cell.cell.from) && !rebuilt.contains(&c.cell.cell.to));
        report.skip(
            "a pod of the cell was rebuilt between the steps",
            before - self.conns.len(),
        );
        if self.conns.is_empty() {
            return;
        }
        let revoked = self.conns.iter().filter(|c| !c.cell.kept).count() as u64;
        let cut_rose = wait_for_cut(cut, revoked);
        std::thread::sleep(SETTLE);
        for c in &mut self.conns {
            // Whatever arrived before the cut does not count.
            drain(&mut c.server);
            drain(&mut c.client);
        }
        let until = Instant::now() + TICK * (WRITES as u32 - 1) + GRACE;
        let seen = exchange(&mut self.conns, WRITES, until, |c| c.cell.kept);
        for (c, (to_server, to_client)) in self.conns.iter().zip(seen) {
            let name = c.cell.cell.name();
            let want = if c.cell.kept { WRITES } else { 0 };
            if to_server.bytes == want && to_client.bytes == want {
                report.tally.passed += 1;
            } else if c.cell.kept {
                report.fail(format!(
                    "long-lived step {next}: {name}: `.` in step {next}, yet after its rules \
                     were in the kernel the connection from step {} carried {} of {WRITES} bytes \
                     client->server and {} of {WRITES} server->client{}",
                    self.step,
                    to_server.bytes,
                    to_client.bytes,
                    ends(&to_server, &to_client)
                ));
            } else {
                report.fail(format!(
                    "long-lived step {next}: {name}: `X` in step {next}, yet after its rules were \
                     in the kernel the connection from step {} carried {} of {WRITES} bytes \
                     client->server and {} of {WRITES} server->client (cut conntrack entries: {})",
                    self.step, to_server.bytes, to_client.bytes, cut_rose
                ));
            }
        }
    }
}

/// Waits (at most [`CUT_WAIT`]) until the counter rose by `revoked` (each revoked
/// connection is at least one entry on some node); says what it saw, for failures.
fn wait_for_cut(cut: CutCounter<'_>, revoked: u64) -> String {
    let Some(before) = cut.before else {
        return "not counted: the backend gave no count before the step".into();
    };
    let deadline = Instant::now() + CUT_WAIT;
    loop {
        let rose = (cut.now)().unwrap_or(before).saturating_sub(before);
        if rose >= revoked {
            return format!("{rose} on the nodes, at least {revoked} wanted");
        }
        if Instant::now() >= deadline {
            return format!(
                "{rose} on the nodes after {} s, at least {revoked} wanted",
                CUT_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(text: &str) -> Step {
        let case = crate::case::parse(text, "t").expect("case");
        case.steps.into_iter().nth(1).expect("two steps")
    }

    const CASE: &str = r#"
name: t
steps:
  - expect:
      - probes: [tcp/80, udp/80]
        matrix: |
          from\to x/a x/b y/a
          x/a     -   .   .
          x/b     .   -   .
          y/a     .   .   -
  - cluster: {pods: {y/a: {labels: {pod: a}, ip: [10.244.1.99]}}}
    expect:
      - probes: [tcp/80]
        matrix: |
          from\to x/a x/b y/a
          x/a     -   X   -
          x/b     .   -   .
          y/a     .   -   -
"#;

    fn cand(from: &str, to: &str, proto: Proto) -> Candidate {
        Candidate {
            from: from.into(),
            to: to.into(),
            probe: Probe { proto, port: 80 },
            family: Family::V4,
            netns: "ns".into(),
            bind: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2:80".parse().unwrap(),
        }
    }

    fn all() -> Vec<Candidate> {
        let mut out = Vec::new();
        for (f, t) in [
            ("x/a", "x/b"),
            ("x/b", "x/a"),
            ("x/a", "y/a"),
            ("y/a", "x/a"),
        ] {
            out.push(cand(f, t, Proto::Tcp));
            out.push(cand(f, t, Proto::Udp));
        }
        out
    }

    #[test]
    fn sample_keeps_tcp_cells_the_next_step_judges_on_surviving_pods() {
        let next = step(CASE);
        let now = Cluster::standard();
        let got = sample(&all(), &now, &next, 10);
        let names: Vec<(String, bool)> = got.iter().map(|s| (s.cell.name(), s.kept)).collect();
        // y/a is readdressed (rebuilt): none of its cells; udp never; x/b -> x/a kept.
        assert_eq!(
            names,
            vec![
                ("x/a -> x/b tcp/80 ipv4".to_string(), false),
                ("x/b -> x/a tcp/80 ipv4".to_string(), true),
            ]
        );
    }

    #[test]
    fn sample_is_stable_and_takes_revoked_cells_first() {
        let mut next = step(CASE);
        next.cluster = Cluster::standard();
        let now = Cluster::standard();
        let one = sample(&all(), &now, &next, 1);
        assert_eq!(one.len(), 1);
        assert!(
            !one[0].kept,
            "the one revoked cell is the one worth holding"
        );
        let mut reversed = all();
        reversed.reverse();
        assert_eq!(
            sample(&reversed, &now, &next, 3),
            sample(&all(), &now, &next, 3)
        );
        let two = sample(&all(), &now, &next, 2);
        assert_eq!(two.iter().filter(|s| s.kept).count(), 1);
    }

    #[test]
    fn handoff_keeps_only_expected_peers() {
        let h = Handoff::default();
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let sock = || socket_for(Proto::Tcp, peer.ip()).unwrap();
        h.offer(Some(other), sock());
        assert!(h.claim(other).is_none(), "not expected: closed");
        h.expect(peer);
        assert!(h.claim(peer).is_none(), "not yet accepted");
        h.offer(Some(peer), sock());
        assert!(h.claim(peer).is_some());
        assert!(h.claim(peer).is_none(), "claimed once");
    }

    #[test]
    fn report_counts_skips_by_reason() {
        let mut r = Report::default();
        r.skip("why", 2);
        r.skip("why", 0);
        r.skip("why", 1);
        assert_eq!(r.tally.skipped, 3);
        assert_eq!(r.note("long-lived"), " (3 long-lived checks skipped: why)");
    }
}
