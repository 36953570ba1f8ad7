#![cfg(feature = "netlink")]
//! Long-lived flows between pod namespaces, for tests that check what still gets through
//! after a policy change (included with `#[path = "common/flows.rs"]`). Every sender counts
//! what it sends and every receiver what it gets, so a test tells what was sent after an
//! event (a cut seen in the metrics) and whether any of it arrived by counts, not clocks.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper waits for what must happen before it calls it a hang.
const PATIENCE: Duration = Duration::from_secs(30);

/// How many bytes (TCP) or datagrams (UDP) a receiving thread has read.
#[derive(Clone, Default)]
pub struct Received(Arc<AtomicUsize>);

impl Received {
    fn add(&self, n: usize) {
        self.0.fetch_add(n, Ordering::SeqCst);
    }
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// How many bytes (TCP) or datagrams (UDP) a sending thread has handed to the kernel,
/// counted before each send: whatever arrives beyond the count taken at an instant was
/// sent after that instant (TCP delivers each byte once and in order; a datagram is
/// received at most once), with no clock involved.
#[derive(Clone, Default)]
pub struct Sent(Arc<AtomicUsize>);

impl Sent {
    fn add(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Stops and joins its threads when dropped.
pub struct Flows {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Default for Flows {
    fn default() -> Self {
        Flows {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }
}

impl Drop for Flows {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    nftpol::netlink::in_netns(&std::path::PathBuf::from(format!("/run/netns/{ns}")), f).unwrap()
}

impl Flows {
    fn spawn(&mut self, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || f(stop)));
    }

    /// A TCP server in `ns` on `port`: the bytes received are counted per client address.
    pub fn tcp_sink(&mut self, ns: &str, port: u16) -> Arc<Mutex<Vec<(IpAddr, Received)>>> {
        let listener = in_ns(ns, || TcpListener::bind(("0.0.0.0", port))).unwrap();
        listener.set_nonblocking(true).unwrap();
        let clients: Arc<Mutex<Vec<(IpAddr, Received)>>> = Arc::default();
        let list = clients.clone();
        let stop_all = self.stop.clone();
        self.spawn(move |stop| {
            let mut readers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let received = Received::default();
                        list.lock().unwrap().push((peer.ip(), received.clone()));
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                        let stop = stop_all.clone();
                        readers.push(std::thread::spawn(move || {
                            let mut buf = [0u8; 4096];
                            while !stop.load(Ordering::SeqCst) {
                                match s.read(&mut buf) {
                                    Ok(0) => return,
                                    Ok(n) => received.add(n),
                                    Err(_) => {}
                                }
                            }
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for r in readers {
                let _ = r.join();
            }
        });
        clients
    }

    /// A TCP client in `ns` connected to `to`, sending one byte every `every`; returns the
    /// count of bytes it sent.
    pub fn tcp_feed(&mut self, ns: &str, to: SocketAddr, every: Duration) -> Sent {
        let mut s = in_ns(ns, || {
            TcpStream::connect_timeout(&to, Duration::from_secs(2))
        })
        .unwrap_or_else(|e| panic!("{ns} -> {to}: {e}"));
        s.set_nodelay(true).unwrap();
        let sent = Sent::default();
        let counted = sent.clone();
        self.spawn(move |stop| {
            while !stop.load(Ordering::SeqCst) {
                counted.add();
                let _ = s.write(b"x");
                std::thread::sleep(every);
            }
        });
        sent
    }

    /// A UDP echo server in `ns` on `port`; returns the count of datagrams it got and that
    /// of the echoes it sent.
    pub fn udp_echo(&mut self, ns: &str, port: u16) -> (Received, Sent) {
        let sock = in_ns(ns, || UdpSocket::bind(("0.0.0.0", port))).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (got, echoed) = (Received::default(), Sent::default());
        let (g, e) = (got.clone(), echoed.clone());
        self.spawn(move |stop| {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    g.add(1);
                    e.add();
                    let _ = sock.send_to(&buf[..n], peer);
                }
            }
        });
        (got, echoed)
    }

    /// A UDP client in `ns` sending a datagram to `to` every `every` from one port;
    /// returns the count of datagrams sent and that of the echoes received.
    pub fn udp_ping(&mut self, ns: &str, to: SocketAddr, every: Duration) -> (Sent, Received) {
        let sock = in_ns(ns, || UdpSocket::bind(("0.0.0.0", 0))).unwrap();
        sock.connect(to).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let rx = sock.try_clone().unwrap();
        let (sent, echoes) = (Sent::default(), Received::default());
        let (s, e) = (sent.clone(), echoes.clone());
        self.spawn(move |stop| {
            while !stop.load(Ordering::SeqCst) {
                s.add();
                let _ = sock.send(b"ping");
                std::thread::sleep(every);
            }
        });
        self.spawn(move |stop| {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::SeqCst) {
                if rx.recv(&mut buf).is_ok() {
                    e.add(1);
                }
            }
        });
        (sent, echoes)
    }
}

/// The bytes received from the first client with address `ip` at a TCP sink.
pub fn client(sink: &Arc<Mutex<Vec<(IpAddr, Received)>>>, ip: &str) -> Received {
    let ip: IpAddr = ip.parse().unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some((_, a)) = sink.lock().unwrap().iter().find(|(p, _)| *p == ip) {
            return a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no connection from {ip} at the sink"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
