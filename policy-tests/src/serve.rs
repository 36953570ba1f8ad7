//! Servers: every pod, node and ext answers on its ports. One thread per endpoint polls
//! its sockets (made inside the endpoint's namespace): TCP and SCTP connections are
//! accepted and closed (or handed over, when they are long-lived connections the harness
//! holds, see [`crate::longlived`]), UDP datagrams are echoed. Without kernel SCTP sockets, one raw
//! socket per address answers INITs to the served SCTP ports ([`crate::sctp`]). Sockets
//! are bound to the endpoint's own addresses so replies leave from the address the
//! probe was sent to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags};
use socket2::Socket;

use crate::longlived::Handoff;
use crate::netns;
use crate::proto::{sctp_mode, socket_for, Proto, SctpMode};
use crate::sctp;

/// What one endpoint serves, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub netns: String,
    pub addrs: Vec<IpAddr>,
    pub listen: BTreeSet<(Proto, u16)>,
}

enum Listener {
    Stream(Socket),
    Dgram(UdpSocket),
    RawSctp(sctp::Listener),
}

impl Listener {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listener::Stream(s) => s.as_fd(),
            Listener::Dgram(s) => s.as_fd(),
            Listener::RawSctp(l) => l.socket().as_fd(),
        }
    }

    /// Handles whatever is ready, without blocking.
    fn serve(&self, handoff: &Handoff) {
        match self {
            Listener::RawSctp(l) => l.serve(),
            Listener::Stream(s) => {
                // Accept and close: the probe already counted the handshake. A long-lived
                // connection the registry expects is handed over instead.
                while let Ok((conn, peer)) = s.accept() {
                    handoff.offer(peer.as_socket(), conn);
                }
            }
            Listener::Dgram(s) => {
                let mut buf = [0u8; 512];
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        }
    }
}

/// A running server; stops when dropped.
pub struct Server {
    pub spec: Spec,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn listen(proto: Proto, addr: SocketAddr) -> std::io::Result<Listener> {
    let s = socket_for(proto, addr.ip())?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    if proto == Proto::Udp {
        Ok(Listener::Dgram(s.into()))
    } else {
        s.listen(1024)?;
        Ok(Listener::Stream(s))
    }
}

/// Starts serving `spec` (SCTP ports only when `sctp`); TCP connections from peers
/// `handoff` expects are handed over to it.
pub fn start(spec: Spec, sctp: bool, handoff: Handoff) -> Result<Server> {
    let mut listeners = Vec::new();
    let raw = *sctp_mode() == SctpMode::Raw;
    {
        let _in = netns::enter(&spec.netns)?;
        let raw_ports: BTreeSet<u16> = spec
            .listen
            .iter()
            .filter(|(proto, _)| raw && *proto == Proto::Sctp)
            .map(|&(_, port)| port)
            .collect();
        if sctp && !raw_ports.is_empty() {
            for &ip in &spec.addrs {
                let l = sctp::Listener::bind(ip, raw_ports.clone())
                    .with_context(|| format!("serving raw sctp on {ip} in {}", spec.netns))?;
                listeners.push(Listener::RawSctp(l));
            }
        }
        for &(proto, port) in &spec.listen {
            if proto == Proto::Sctp && (!sctp || raw) {
                continue;
            }
            for &ip in &spec.addrs {
                let addr = SocketAddr::new(ip, port);
                let l = listen(proto, addr)
                    .with_context(|| format!("serving {proto} on {addr} in {}", spec.netns))?;
                listeners.push(l);
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("serve {}", spec.netns))
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let mut fds: Vec<PollFd> = listeners
                    .iter()
                    .map(|l| PollFd::new(l.fd(), PollFlags::POLLIN))
                    .collect();
                if poll(&mut fds, 100u16).unwrap_or(0) <= 0 {
                    continue;
                }
                let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
                drop(fds);
                for (l, r) in listeners.iter().zip(ready) {
                    if r {
                        l.serve(&handoff);
                    }
                }
            }
        })
        .context("starting a server thread")?;
    Ok(Server {
        spec,
        stop,
        thread: Some(thread),
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The servers of a topology, by endpoint (`n1`, `ext`, `x/a`).
#[derive(Default)]
pub struct Servers {
    running: BTreeMap<String, Server>,
    handoff: Handoff,
}

impl Servers {
    /// Stops servers no longer wanted or whose spec changed or whose namespace was
    /// rebuilt (`rebuilt`), and starts the missing ones.
    pub fn reconcile(
        &mut self,
        want: &BTreeMap<String, Spec>,
        rebuilt: &[String],
        sctp: bool,
    ) -> Result<()> {
        self.running
            .retain(|name, server| want.get(name) == Some(&server.spec) && !rebuilt.contains(name));
        for (name, spec) in want {
            if !self.running.contains_key(name) {
                let server = start(spec.clone(), sctp, self.handoff.clone())
                    .with_context(|| format!("starting the server of {name}"))?;
                self.running.insert(name.clone(), server);
            }
        }
        Ok(())
    }

    /// Where the servers hand over the long-lived connections they accept.
    pub fn handoff(&self) -> &Handoff {
        &self.handoff
    }

    pub fn stop_all(&mut self) {
        self.running.clear();
    }
}
