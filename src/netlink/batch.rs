//! The netfilter socket: send one batch in one `sendmsg`, read every acknowledgement,
//! map errors back to the object that caused them; run dump requests for read-back.
//!
//! Owns: socket buffer sizing, sequence numbers, the ack loop and its failure modes
//! (kernel error, ENOBUFS = outcome unknown, missing acks), parsing of netlink headers.
//! Must not: build nf_tables objects (encode.rs) or interpret dumped objects (readback.rs).

use std::io;
use std::time::Instant;

use tracing::{debug, warn};

use super::abi::{
    NLA_TYPE_MASK, NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN,
    NLM_F_ACK_TLVS, NLM_F_CAPPED,
};
use super::encode::Batch;
use super::sys::{RecvBuf, Socket};
use super::{KernelError, NetlinkError, SyncStats};

/// Seconds to wait for the next ack before declaring them missing.
const ACK_TIMEOUT_SECS: u64 = 30;

/// A parsed netlink message header plus its payload.
pub(crate) struct NlMsg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Split a received datagram into messages.
pub(crate) fn messages(mut b: &[u8]) -> Result<Vec<NlMsg<'_>>, NetlinkError> {
    let mut out = Vec::new();
    while b.len() >= NLMSG_HDRLEN {
        let len = u32_at(b, 0) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(NetlinkError::Protocol(format!("bad message length {len}")));
        }
        out.push(NlMsg {
            ty: u16_at(b, 4),
            flags: u16_at(b, 6),
            seq: u32_at(b, 8),
            payload: &b[NLMSG_HDRLEN..len],
        });
        let adv = len.div_ceil(4) * 4;
        b = &b[adv.min(b.len())..];
    }
    Ok(out)
}

/// Netlink attributes: (type without flags, value).
pub(crate) fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16_at(b, 0) as usize;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((u16_at(b, 2) & NLA_TYPE_MASK, &b[4..len]));
        let adv = len.div_ceil(4) * 4;
        b = &b[adv.min(b.len())..];
    }
    out
}

/// An NLMSG_ERROR payload: errno (0 = ack) and the extended-ack text if any.
fn parse_error(m: &NlMsg) -> Result<(i32, Option<String>, Option<u32>), NetlinkError> {
    if m.payload.len() < 4 + NLMSG_HDRLEN {
        return Err(NetlinkError::Protocol("short NLMSG_ERROR".into()));
    }
    let err = u32_at(m.payload, 0) as i32;
    let mut text = None;
    let mut offset = None;
    if m.flags & NLM_F_ACK_TLVS != 0 {
        let mut skip = 4 + NLMSG_HDRLEN;
        if m.flags & NLM_F_CAPPED == 0 {
            // The kernel echoed the whole request; its length is in the echoed header.
            skip = 4 + u32_at(m.payload, 4) as usize;
        }
        if skip <= m.payload.len() {
            for (ty, v) in attrs(&m.payload[skip..]) {
                match ty {
                    NLMSGERR_ATTR_MSG => {
                        let s = v.split(|&c| c == 0).next().unwrap_or(&[]);
                        text = Some(String::from_utf8_lossy(s).into_owned());
                    }
                    NLMSGERR_ATTR_OFFS if v.len() >= 4 => offset = Some(u32_at(v, 0)),
                    _ => {}
                }
            }
        }
    }
    Ok((-err, text, offset))
}

/// One open netfilter socket in the network namespace of the thread that opened it.
pub(crate) struct Conn {
    sock: Socket,
    seq: u32,
    buf: RecvBuf,
    /// Fault injection: a receive buffer this small makes the kernel drop acks (ENOBUFS).
    recv_cap: Option<usize>,
}

impl Conn {
    pub fn open() -> Result<Self, NetlinkError> {
        let sock = Socket::open().map_err(NetlinkError::Socket)?;
        sock.set_recv_timeout(ACK_TIMEOUT_SECS);
        // Start from a fixed number: batches are numbered from here, and a fresh socket
        // never sees replies to another socket's requests.
        Ok(Conn {
            sock,
            seq: 1,
            buf: RecvBuf::new(1 << 20),
            recv_cap: None,
        })
    }

    /// Caps the receive buffer (see the field); tests use it to force ENOBUFS.
    pub fn cap_recv_buffer(&mut self, bytes: usize) {
        self.recv_cap = Some(bytes);
    }

    /// Waits at most `secs` for each receive from now on.
    pub fn set_recv_timeout(&mut self, secs: u64) {
        self.sock.set_recv_timeout(secs);
    }

    /// Room for `bytes` of replies or unsolicited messages queued before they are read.
    pub fn size_recv_buffer(&mut self, bytes: usize) {
        self.sock.size_buffers(1 << 16, bytes);
    }

    /// One datagram, or `None` when the receive timeout passed with nothing; ENOBUFS is
    /// [`NetlinkError::OutcomeUnknown`] (the kernel dropped messages).
    pub fn recv_datagram(&mut self) -> Result<Option<&[u8]>, NetlinkError> {
        match self.recv() {
            Ok(n) => Ok(Some(&self.buf.bytes()[..n])),
            Err(NetlinkError::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One datagram if one is queued now; `None` otherwise.
    pub fn recv_datagram_nowait(&mut self) -> Result<Option<&[u8]>, NetlinkError> {
        match self.sock.recv_nowait(&mut self.buf) {
            Ok(n) => Ok(Some(&self.buf.bytes()[..n])),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Err(NetlinkError::OutcomeUnknown),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(NetlinkError::Recv(e)),
        }
    }

    /// Reserve `n` sequence numbers; returns the first.
    pub fn reserve(&mut self, n: usize) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(n as u32 + 1);
        first
    }

    fn recv(&mut self) -> Result<usize, NetlinkError> {
        loop {
            match self.sock.recv(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(NetlinkError::OutcomeUnknown)
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(NetlinkError::Timeout)
                }
                Err(e) => return Err(NetlinkError::Recv(e)),
            }
        }
    }

    /// Send `batch` in one `sendmsg` and collect the ack of every message in it.
    pub fn send_batch(&mut self, batch: &Batch) -> Result<SyncStats, NetlinkError> {
        let start = Instant::now();
        let n = batch.acked.len();
        // Acks are queued by the kernel until the whole batch is processed; each costs an
        // skb (~1 KiB of truesize), so the receive buffer must hold all of them at once.
        let rcv = (n + 16) * 2048 + (1 << 20);
        self.sock.size_buffers(
            batch.bytes.len() + 65536,
            self.recv_cap.map_or(rcv, |cap| cap.min(rcv)),
        );
        let sent = self
            .sock
            .send(&batch.bytes)
            .map_err(|e| NetlinkError::Send {
                bytes: batch.bytes.len(),
                source: e,
            })?;
        if sent != batch.bytes.len() {
            return Err(NetlinkError::ShortSend {
                sent,
                len: batch.bytes.len(),
            });
        }
        debug!(
            bytes = sent,
            messages = batch.messages,
            "batch sent in one sendmsg"
        );
        let first = batch.begin_seq.wrapping_add(1);
        let mut acks = Acks {
            acked: vec![false; n],
            remaining: n,
            errors: Vec::new(),
        };
        while acks.remaining > 0 {
            let len = match self.recv() {
                Ok(len) => len,
                Err(NetlinkError::Timeout) => {
                    let first_missing = acks.acked.iter().position(|a| !a).unwrap_or(0);
                    return Err(NetlinkError::MissingAcks {
                        missing: acks.remaining,
                        first: batch.acked[first_missing].1.clone(),
                    });
                }
                Err(e) => return Err(e),
            };
            acks.read(batch, &self.buf.bytes()[..len])?;
        }
        let mut errors = acks.errors;
        let stats = SyncStats {
            messages: batch.messages,
            bytes: batch.bytes.len(),
            acked: n,
            elapsed: start.elapsed(),
        };
        if errors.is_empty() {
            debug!(?stats, "batch committed");
            Ok(stats)
        } else {
            errors.sort_by_key(|e| e.seq.wrapping_sub(first));
            let first_err = errors.remove(0);
            warn!(error = %first_err, others = errors.len(), "kernel refused the batch");
            Err(NetlinkError::Kernel {
                first: Box::new(first_err),
                others: errors,
            })
        }
    }

    /// Send one dump request (built with `seq`) and return the payloads of its replies
    /// (each starting with the nfgenmsg header). ENOENT yields an empty list.
    pub fn dump(&mut self, request: &[u8], seq: u32) -> Result<Vec<Vec<u8>>, NetlinkError> {
        Ok(self.dump_found(request, seq)?.unwrap_or_default())
    }

    /// [`dump`](Self::dump), telling ENOENT (no such object: `None`) from an empty dump.
    pub fn dump_found(
        &mut self,
        request: &[u8],
        seq: u32,
    ) -> Result<Option<Vec<Vec<u8>>>, NetlinkError> {
        self.sock.send(request).map_err(|e| NetlinkError::Send {
            bytes: request.len(),
            source: e,
        })?;
        let mut out = Vec::new();
        loop {
            let len = self.recv()?;
            let bytes = &self.buf.bytes()[..len];
            for m in messages(bytes)? {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => return Ok(Some(out)),
                    NLMSG_ERROR => {
                        let (errno, text, _) = parse_error(&m)?;
                        if errno == 0 {
                            return Ok(Some(out));
                        }
                        if errno == libc::ENOENT {
                            return Ok(None);
                        }
                        return Err(NetlinkError::Dump {
                            source: io::Error::from_raw_os_error(errno),
                            message: text,
                        });
                    }
                    _ => out.push(m.payload.to_vec()),
                }
            }
        }
    }
}

/// The acks of one batch collected so far.
struct Acks {
    acked: Vec<bool>,
    remaining: usize,
    errors: Vec<KernelError>,
}

impl Acks {
    /// Takes the acks in one read of the socket; an error for the batch's begin message
    /// is the kernel refusing the whole batch.
    fn read(&mut self, batch: &Batch, bytes: &[u8]) -> Result<(), NetlinkError> {
        let first = batch.begin_seq.wrapping_add(1);
        for m in messages(bytes)? {
            if m.ty != NLMSG_ERROR {
                continue;
            }
            let (errno, text, offset) = parse_error(&m)?;
            if m.seq == batch.begin_seq {
                // The kernel refused the whole batch (e.g. EPERM, or the commit
                // failed); per-message acks were discarded.
                return Err(NetlinkError::BatchRejected {
                    source: io::Error::from_raw_os_error(errno),
                    message: text,
                });
            }
            let idx = m.seq.wrapping_sub(first) as usize;
            if idx >= self.acked.len() {
                warn!(seq = m.seq, "ack for a sequence number outside the batch");
                continue;
            }
            if !self.acked[idx] {
                self.acked[idx] = true;
                self.remaining -= 1;
            }
            if errno != 0 {
                self.errors.push(KernelError {
                    seq: m.seq,
                    object: batch.acked[idx].1.clone(),
                    errno,
                    message: text,
                    offset,
                });
            }
        }
        Ok(())
    }
}
