//! The verdict reader: one OS thread, in the node's network namespace, that reads the
//! NFLOG group the pod chains log to and writes one record per logged connection.
//!
//! ```text
//! kernel (log group G) --Nflog::recv--> LoggedPacket --Board::record--> Record
//!     --> tracing (target nftpol::verdict) + metrics (connections per pod, losses)
//! sync loop --Board::publish (after each applied batch)--^
//! ```
//!
//! Owns: the thread, the socket's lifetime, seq-gap accounting, the record's fields.
//! Must not: block or lock the sync loop (it only reads the board's last two
//! generations, a mutex held for two `Arc` clones), or explain anything itself.
//!
//! A reader that cannot bind its group (another process holds it) logs an error and
//! ends: enforcement does not depend on it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::metrics::Metrics;
use crate::netlink::{LoggedPacket, Nflog};
use crate::verdict_log::{Board, Packet, Record, Unmapped};

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
                        tracing::error!(error = %e, "verdict logs: cannot enter the network namespace");
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
            tracing::error!(group, error = %e, "verdict logs are off: cannot bind the NFLOG group");
            return;
        }
    };
    tracing::info!(group = nflog.group(), "reading verdict logs");
    let mut last_seq: Option<u32> = None;
    // Records lost since the last one written: reported in the next.
    let mut lost: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let got = match nflog.recv() {
            Ok(got) => got,
            Err(e) => {
                tracing::error!(group, error = %e, "reading verdict logs");
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
        for p in &got.packets {
            if let (Some(last), Some(seq)) = (last_seq, p.seq) {
                let gap = u64::from(seq.wrapping_sub(last).wrapping_sub(1));
                // A huge gap is the counter restarting (a new instance), not a loss.
                if gap < 1 << 31 {
                    lost += gap;
                    metrics.verdicts_lost(gap);
                }
            }
            last_seq = p.seq.or(last_seq);
            match board.record(&packet(p)) {
                Ok(r) => {
                    metrics.verdict(&r.namespace, &r.pod, r.direction, r.verdict);
                    write(&r, lost);
                    lost = 0;
                }
                Err(Unmapped::NoState) => metrics.verdict_unmapped(),
                Err(e @ Unmapped::UnknownPrefix(_)) => {
                    metrics.verdict_unmapped();
                    tracing::debug!(target: TARGET, error = %e, "logged packet of no chain of this node");
                }
            }
        }
    }
}

fn packet(p: &LoggedPacket) -> Packet<'_> {
    Packet {
        prefix: &p.prefix,
        src: p.src,
        dst: p.dst,
        protocol: p.protocol,
        dport: p.ports.map(|(_, d)| d),
    }
}

/// One record, with `lost` records the reader missed before it.
fn write(r: &Record, lost: u64) {
    let port = r.port.map(|p| p.to_string()).unwrap_or_default();
    tracing::info!(
        target: TARGET,
        verdict = r.verdict.name(),
        direction = %r.direction,
        namespace = %r.namespace,
        pod = %r.pod,
        pod_ip = %r.pod_ip,
        peer = %r.peer,
        peer_ip = %r.peer_ip,
        protocol = %r.protocol,
        port = %port,
        isolated_by = %r.isolated_by.join(", "),
        allowed_by = %r.allowed_by.join("; "),
        generation = r.generation,
        judged_by = r.judged_by.name(),
        lost_before = lost,
        "connection {} ({} of {}/{})",
        r.verdict.name(),
        r.direction,
        r.namespace,
        r.pod
    );
}
