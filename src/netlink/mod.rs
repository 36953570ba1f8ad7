//! Netlink backend: programs a [`Ruleset`] into the kernel in one atomic batch, updates it
//! incrementally, and reads it back to detect drift.
//!
//! ```text
//! Ruleset --encode--> Batch (one buffer) --batch::Conn--> one sendmsg, every seq acked
//! (old, new) --diff--> [Op] --encode--> Batch --> ...
//! kernel --readback--> LiveTable --drift(model)--> Option<description>
//! ```
//!
//! This module owns the public API and the error type. It must not know about
//! Kubernetes, and it must not split a batch: a batch sent in several `sendmsg` calls is
//! not one transaction. A kernel error aborts the whole batch, so the previous ruleset
//! stays in place. All unsafe code lives in `sys.rs`; every kernel number (message types,
//! attributes, flags, hooks, registers, ctnetlink) is named once, in `abi.rs`.
//!
//! A netlink socket belongs to the network namespace of the thread that opened it:
//! [`in_netns`] runs a closure on a fresh thread moved into another namespace; open the
//! [`Backend`] inside that closure.

mod abi;
mod batch;
mod conntrack;
mod counters;
mod diff;
mod encode;
mod exprs;
mod learned;
mod nflog;
mod readback;
mod sys;

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

pub use conntrack::{Conntrack, CtEntry};
pub use counters::Counters;
pub use diff::{diff, diff_views, Op};
pub use encode::Batch;
pub use learned::{alive_batch, learned_batch, HeldAddr, LearnedElem};
pub use nflog::{LoggedPacket, Nflog, Received};
pub use readback::{drift, LiveChain, LiveElem, LiveRule, LiveSet, LiveTable};

use crate::ruleset::model::Ruleset;

/// What one batch cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Netlink messages in the batch, batch begin and end included.
    pub messages: usize,
    /// Bytes handed to the one `sendmsg`.
    pub bytes: usize,
    /// Acknowledgements read: one per message between batch begin and end.
    pub acked: usize,
    /// From `sendmsg` to the last ack.
    pub elapsed: Duration,
}

/// One message the kernel refused.
#[derive(Debug)]
pub struct KernelError {
    pub seq: u32,
    /// What the message was, e.g. `elements of set ingress/x/a/any4`.
    pub object: String,
    pub errno: i32,
    /// The kernel's extended-ack text, when it gives one.
    pub message: Option<String>,
    /// Byte offset of the offending attribute in the message, when given.
    pub offset: Option<u32>,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (seq {}): {}",
            self.object,
            self.seq,
            io::Error::from_raw_os_error(self.errno)
        )?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening the netfilter netlink socket")]
    Socket(#[source] io::Error),
    #[error("entering network namespace {path}")]
    Netns { path: String, source: io::Error },
    #[error("sending a batch of {bytes} bytes")]
    Send { bytes: usize, source: io::Error },
    #[error("sendmsg sent {sent} of {len} bytes")]
    ShortSend { sent: usize, len: usize },
    #[error("receiving acknowledgements")]
    Recv(#[source] io::Error),
    /// ENOBUFS while reading acks: the kernel dropped replies, so whether the batch was
    /// committed is unknown. Read the table back and resync.
    #[error("netlink receive buffer overflowed (ENOBUFS): outcome unknown, read back and resync")]
    OutcomeUnknown,
    #[error("timed out waiting for a netlink reply")]
    Timeout,
    #[error("{missing} messages were never acknowledged (first: {first})")]
    MissingAcks { missing: usize, first: String },
    /// The kernel refused the batch as a whole (permission, or the commit failed).
    #[error("the kernel rejected the batch{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    BatchRejected {
        source: io::Error,
        message: Option<String>,
    },
    /// One or more messages failed; nothing of the batch was applied.
    #[error("kernel refused {first}{}", if others.is_empty() { String::new() } else { format!(" (and {} more errors)", others.len()) })]
    Kernel {
        first: Box<KernelError>,
        others: Vec<KernelError>,
    },
    #[error("dump request failed{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Dump {
        source: io::Error,
        message: Option<String>,
    },
    #[error("listing the network namespace's addresses")]
    Addrs(#[source] io::Error),
    #[error("malformed netlink data: {0}")]
    Protocol(String),
}

/// An open netfilter socket in the network namespace of the calling thread.
pub struct Backend {
    conn: batch::Conn,
}

impl Backend {
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(Backend {
            conn: batch::Conn::open()?,
        })
    }

    /// Replace the table whole with `ruleset`, in one atomic batch. The elements of its
    /// learned sets and liveness set (the DNS proxy's and the controller's, never the
    /// model's) are read first and added again in the same batch, with the timeout they
    /// had left; one the proxy adds between the read and the batch is lost (and learned
    /// again from the next answer).
    pub fn full_sync(&mut self, ruleset: &Ruleset) -> Result<SyncStats, NetlinkError> {
        let kept = learned::kept_elements(&mut self.conn, ruleset)?;
        // Encode once to learn the message count, then with the reserved numbers; both
        // encodings are pure, so the second is the first renumbered.
        let then = |b: &mut encode::Builder| learned::add_kept(b, &kept);
        let n = encode::full_batch_then(ruleset, 0, then).messages;
        let first = self.conn.reserve(n);
        let batch = encode::full_batch_then(ruleset, first, then);
        self.conn.send_batch(&batch)
    }

    /// Apply `ops` (from [`diff`]) to table `table` in one atomic batch.
    pub fn apply_ops(&mut self, table: &str, ops: &[Op]) -> Result<SyncStats, NetlinkError> {
        let n = encode_ops(table, ops, 0).messages;
        if n == 2 {
            // Nothing but batch begin and end.
            return Ok(SyncStats {
                messages: 0,
                bytes: 0,
                acked: 0,
                elapsed: Duration::ZERO,
            });
        }
        let first = self.conn.reserve(n);
        let batch = encode_ops(table, ops, first);
        self.conn.send_batch(&batch)
    }

    /// Holds cut connections (see [`crate::flow::Flow::held`]) in table `table`'s held
    /// sets, in one batch; with `add` false, lets them go (every one must be held: the
    /// kernel refuses the batch for an element it does not have).
    pub fn hold(
        &mut self,
        table: &str,
        held: &[crate::flow::Held],
        add: bool,
    ) -> Result<SyncStats, NetlinkError> {
        if held.is_empty() {
            return Ok(SyncStats {
                messages: 0,
                bytes: 0,
                acked: 0,
                elapsed: Duration::ZERO,
            });
        }
        let n = encode::held_batch(table, held, add, 0).messages;
        let first = self.conn.reserve(n);
        self.conn
            .send_batch(&encode::held_batch(table, held, add, first))
    }

    /// Fault injection for tests: caps the socket's receive buffer at `bytes`, so that a
    /// large batch's acks overflow it and the kernel reports ENOBUFS (outcome unknown).
    #[doc(hidden)]
    pub fn cap_recv_buffer(&mut self, bytes: usize) {
        self.conn.cap_recv_buffer(bytes);
    }

    /// Send an already encoded batch (tests use it to plant failures).
    pub fn send(&mut self, batch: &Batch) -> Result<SyncStats, NetlinkError> {
        self.conn.send_batch(batch)
    }

    /// Dump table `inet <name>`: None when it does not exist.
    pub fn read_table(&mut self, name: &str) -> Result<Option<LiveTable>, NetlinkError> {
        readback::read_table(&mut self.conn, name)
    }
}

/// Encode the full-sync batch of `ruleset` numbered from `first_seq` (pure).
pub fn encode_full(ruleset: &Ruleset, first_seq: u32) -> Batch {
    encode::full_batch(ruleset, first_seq)
}

/// Encode `ops` as one batch numbered from `first_seq` (pure).
pub fn encode_ops(table: &str, ops: &[Op], first_seq: u32) -> Batch {
    if let Some(Op::FullSync(rs)) = ops.iter().find(|o| matches!(o, Op::FullSync(_))) {
        return encode::full_batch(rs, first_seq);
    }
    let mut b = encode::Builder::new(table, first_seq);
    let no_ids = |_: &str| None;
    for op in ops {
        match op {
            Op::FullSync(_) => unreachable!(),
            Op::AddSet(s) => {
                b.add_set(s);
            }
            Op::DelSet(n) => b.del_set(n, "set"),
            Op::AddSetElements {
                set,
                key,
                interval,
                elements,
                from_empty,
                ..
            } => {
                let e = encode::set_elems(key, *interval, elements, *from_empty);
                b.set_elements(set, "set", true, e);
            }
            Op::DelSetElements {
                set,
                key,
                interval,
                elements,
            } => {
                let e = encode::set_elems(key, *interval, elements, false);
                b.set_elements(set, "set", false, e);
            }
            Op::AddMap(m) => {
                b.add_map(m);
            }
            Op::DelMap(n) => b.del_set(n, "map"),
            Op::AddMapElements { map, elements } => {
                b.set_elements(map, "map", true, encode::map_elems(elements))
            }
            Op::DelMapElements { map, elements } => {
                b.set_elements(map, "map", false, encode::map_elems(elements))
            }
            Op::AddChain(c) => b.add_chain(c),
            Op::SetRules { chain, flush } => {
                if *flush {
                    b.flush_chain(&chain.name);
                }
                b.add_rules(chain, &no_ids);
            }
            Op::DelChain(n) => b.del_chain(n),
        }
    }
    b.finish()
}

/// Full sync in the calling thread's network namespace.
pub fn full_sync(ruleset: &Ruleset) -> Result<SyncStats, NetlinkError> {
    Backend::open()?.full_sync(ruleset)
}

/// Incremental update in the calling thread's network namespace.
pub fn apply_ops(table: &str, ops: &[Op]) -> Result<SyncStats, NetlinkError> {
    Backend::open()?.apply_ops(table, ops)
}

/// Read table `inet <name>` back from the calling thread's network namespace.
pub fn read_table(name: &str) -> Result<Option<LiveTable>, NetlinkError> {
    Backend::open()?.read_table(name)
}

/// Run `f` on a new thread inside the network namespace at `netns_path`
/// (e.g. `/run/netns/NAME`). Sockets opened inside `f` belong to that namespace; the
/// calling thread's namespace is untouched.
pub fn in_netns<T: Send>(
    netns_path: &Path,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetlinkError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            sys::enter_netns(netns_path).map_err(|e| NetlinkError::Netns {
                path: netns_path.display().to_string(),
                source: e,
            })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// True when running as root (tests skip loudly otherwise).
pub fn is_root() -> bool {
    sys::is_root()
}

/// The addresses of the calling thread's network namespace (the node's own).
pub fn local_addrs() -> Result<Vec<std::net::IpAddr>, NetlinkError> {
    sys::local_addrs().map_err(NetlinkError::Addrs)
}
