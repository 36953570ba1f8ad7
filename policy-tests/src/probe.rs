//! Probes: many connection attempts at once, each from a socket made in the client's
//! namespace, all driven by one `poll` loop. TCP and SCTP succeed when the connection is
//! accepted; UDP when the echo of the datagram comes back (resent while waiting). On a
//! kernel without SCTP sockets, SCTP succeeds when the INIT ACK answering a raw INIT
//! comes back ([`crate::sctp`]; the INIT is resent while waiting, as UDP is).
//! Refused, unreachable and no answer before the deadline all count as blocked.
//!
//! A probe of a name first resolves it at the cluster DNS from inside the client's
//! namespace ([`crate::dns_server::lookup`]) and connects to the first address of the
//! answer at once, before the next probe's lookup: the first connection after an answer
//! is what a `domainNames` rule must admit.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags};
use socket2::Socket;

use crate::netns;
use crate::proto::{sctp_mode, socket_for, Proto, SctpMode};
use crate::sctp;

/// One connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The client's namespace.
    pub netns: String,
    /// Source address to bind (nodes and ext use their underlay address).
    pub bind: Option<IpAddr>,
    /// The server; for a probe of a name, the address the case's records give (the
    /// lookup decides where the probe goes).
    pub dst: SocketAddr,
    pub proto: Proto,
    /// Resolve this name first, and connect to its first address.
    pub lookup: Option<Lookup>,
}

/// The lookup before a probe of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub name: String,
    pub family: crate::proto::Family,
    /// Over TCP (else UDP).
    pub tcp: bool,
}

/// What the probes of a step did.
#[derive(Debug, Default)]
pub struct Probed {
    /// Whether each attempt got through.
    pub connected: Vec<bool>,
    /// The source port each attempt's first packet carried (`None`: never got one), so
    /// that what the nodes logged can be told apart by 5-tuple.
    pub src_ports: Vec<Option<u16>>,
    /// For a probe of a name, the address its lookup gave, or why it gave none.
    pub resolved: Vec<Option<Result<IpAddr, String>>>,
}

/// How long a probe may take.
pub const TIMEOUT: Duration = Duration::from_millis(1000);
/// How often an unanswered UDP datagram or raw SCTP INIT is sent again.
const UDP_RESEND: Duration = Duration::from_millis(300);

enum Sock {
    Stream(Socket),
    Dgram(UdpSocket, Vec<u8>),
    RawSctp(sctp::Client),
}

impl Sock {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Stream(s) => s.as_fd(),
            Sock::Dgram(s, _) => s.as_fd(),
            Sock::RawSctp(c) => c.socket().as_fd(),
        }
    }
}

/// Whether an attempt goes through a raw SCTP socket rather than a socket of its own
/// protocol.
fn raw_sctp(a: &Attempt) -> bool {
    a.proto == Proto::Sctp && *sctp_mode() == SctpMode::Raw
}

struct Pending {
    index: usize,
    sock: Sock,
}

fn open(a: &Attempt, dst: SocketAddr) -> std::io::Result<Socket> {
    let s = socket_for(a.proto, dst.ip())?;
    if let Some(ip) = a.bind {
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Runs every attempt concurrently (a probe of a name starts once its lookup answered).
/// An error means the harness itself could not probe (a socket it cannot make or bind).
pub fn run(attempts: &[Attempt]) -> Result<Probed> {
    let mut out = Probed {
        connected: vec![false; attempts.len()],
        src_ports: vec![None; attempts.len()],
        resolved: vec![None; attempts.len()],
    };
    let pending = open_all(attempts, &mut out)?;
    wait_all(pending, &mut out.connected)?;
    Ok(out)
}

/// Makes every attempt's socket in its namespace (each entered once) and starts it: a
/// connection (TCP, SCTP), a datagram (UDP) or a raw INIT; those that wait for an answer
/// are returned. A probe of a name resolves it right before.
fn open_all(attempts: &[Attempt], out: &mut Probed) -> Result<Vec<Pending>> {
    let mut by_ns: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, a) in attempts.iter().enumerate() {
        by_ns.entry(&a.netns).or_default().push(i);
    }
    let mut pending = Vec::new();
    let mut sockets = Vec::new();
    for (ns, indexes) in by_ns {
        let _in = netns::enter(ns)?;
        for i in indexes {
            let a = &attempts[i];
            let dst = match &a.lookup {
                None => a.dst,
                Some(l) => {
                    // The query id: any, as long as this probe's answer is told apart.
                    let id = (i as u16).wrapping_add(1);
                    let got = crate::dns_server::lookup(&l.name, l.family, l.tcp, id);
                    out.resolved[i] = Some(got.clone());
                    match got {
                        Ok(ip) => SocketAddr::new(ip, a.dst.port()),
                        Err(_) => continue,
                    }
                }
            };
            let what = || format!("making a {} probe socket in {ns} to {dst}", a.proto);
            if raw_sctp(a) {
                let client = sctp::Client::start(a.bind, dst).with_context(what)?;
                out.src_ports[i] = Some(client.src_port());
                pending.push(Pending {
                    index: i,
                    sock: Sock::RawSctp(client),
                });
                continue;
            }
            let s = open(a, dst).with_context(what)?;
            if a.lookup.is_some() {
                // At once: the answer was just given.
                pending.extend(start(i, a.proto, dst, s, out));
            } else {
                sockets.push((i, dst, s));
            }
        }
    }
    for (i, dst, s) in sockets {
        pending.extend(start(i, attempts[i].proto, dst, s, out));
    }
    Ok(pending)
}

/// Starts one socket's connection (TCP, SCTP) or sends its datagram (UDP); `Some` when
/// it waits for an answer.
fn start(
    index: usize,
    proto: Proto,
    dst: SocketAddr,
    s: Socket,
    out: &mut Probed,
) -> Option<Pending> {
    let token = format!("probe {index} {dst}").into_bytes();
    let local_port = |s: &Socket| {
        s.local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
    };
    match proto {
        Proto::Tcp | Proto::Sctp => match s.connect(&dst.into()) {
            Ok(()) => {
                out.src_ports[index] = local_port(&s);
                out.connected[index] = true;
                None
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {
                out.src_ports[index] = local_port(&s);
                Some(Pending {
                    index,
                    sock: Sock::Stream(s),
                })
            }
            Err(_) => None,
        },
        Proto::Udp => {
            let u: UdpSocket = s.into();
            if u.connect(dst).is_ok() && u.send(&token).is_ok() {
                out.src_ports[index] = u.local_addr().ok().map(|a| a.port());
                Some(Pending {
                    index,
                    sock: Sock::Dgram(u, token),
                })
            } else {
                None
            }
        }
    }
}

/// Waits for the pending attempts' answers until [`TIMEOUT`], resending datagrams every
/// [`UDP_RESEND`].
fn wait_all(mut pending: Vec<Pending>, results: &mut [bool]) -> Result<()> {
    let start = Instant::now();
    let deadline = start + TIMEOUT;
    let mut next_resend = start + UDP_RESEND;
    while !pending.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_resend {
            resend(&pending);
            next_resend += UDP_RESEND;
        }
        let wait = deadline.min(next_resend).saturating_duration_since(now);
        let wait_ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds: Vec<PollFd> = pending
            .iter()
            .map(|p| {
                let events = match p.sock {
                    Sock::Stream(_) => PollFlags::POLLOUT,
                    Sock::Dgram(..) | Sock::RawSctp(_) => PollFlags::POLLIN,
                };
                PollFd::new(p.sock.fd(), events)
            })
            .collect();
        match poll(&mut fds, wait_ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for probes"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut still = Vec::with_capacity(pending.len());
        for (p, ready) in pending.into_iter().zip(ready) {
            if !ready {
                still.push(p);
                continue;
            }
            match finish(&p.sock) {
                Some(ok) => results[p.index] = ok,
                None => still.push(p),
            }
        }
        pending = still;
    }
    Ok(())
}

/// Sends the pending datagrams (and raw SCTP INITs) again: a lost one is no refusal.
fn resend(pending: &[Pending]) {
    for p in pending {
        match &p.sock {
            Sock::Dgram(u, token) => {
                let _ = u.send(token);
            }
            Sock::RawSctp(c) => {
                let _ = c.send();
            }
            Sock::Stream(_) => {}
        }
    }
}

/// The outcome of a socket poll reported ready, or `None` to keep waiting.
fn finish(sock: &Sock) -> Option<bool> {
    match sock {
        Sock::Stream(s) => match s.take_error() {
            Ok(None) => Some(s.peer_addr().is_ok()),
            _ => Some(false),
        },
        Sock::RawSctp(c) => c.poll_reply(),
        Sock::Dgram(u, token) => {
            let mut buf = [0u8; 512];
            loop {
                match u.recv(&mut buf) {
                    Ok(n) if buf[..n] == token[..] => return Some(true),
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                    Err(_) => return Some(false),
                }
            }
        }
    }
}
