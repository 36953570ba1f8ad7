#![cfg(feature = "netlink")]
//! Long-lived flows between pod namespaces, for tests that check what still gets through
//! after a policy change (included with `#[path = "common/flows.rs"]`). Every receiver records the arrival
//! time of what it gets, so a test can count what arrived after a given instant.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Arrival times, shared between a receiving thread and the test.
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Mutex<Vec<Instant>>>);

impl Arrivals {
    fn push(&self, t: Instant) {
        self.0.lock().unwrap().push(t);
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    /// How many arrived after `t`.
    pub fn after(&self, t: Instant) -> usize {
        self.0.lock().unwrap().iter().filter(|a| **a > t).count()
    }
    /// The longest silence between `from` and `to` (arrivals and both ends counted).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut times: Vec<Instant> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t > from && *t < to)
            .collect();
        times.insert(0, from);
        times.push(to);
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
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

    /// A TCP server in `ns` on `port`: every byte received is recorded per client address.
    pub fn tcp_sink(&mut self, ns: &str, port: u16) -> Arc<Mutex<Vec<(IpAddr, Arrivals)>>> {
        let listener = in_ns(ns, || TcpListener::bind(("0.0.0.0", port))).unwrap();
        listener.set_nonblocking(true).unwrap();
        let clients: Arc<Mutex<Vec<(IpAddr, Arrivals)>>> = Arc::default();
        let list = clients.clone();
        let stop_all = self.stop.clone();
        self.spawn(move |stop| {
            let mut readers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let arrivals = Arrivals::default();
                        list.lock().unwrap().push((peer.ip(), arrivals.clone()));
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                        let stop = stop_all.clone();
                        readers.push(std::thread::spawn(move || {
                            let mut buf = [0u8; 4096];
                            while !stop.load(Ordering::SeqCst) {
                                match s.read(&mut buf) {
                                    Ok(0) => return,
                                    Ok(n) => (0..n).for_each(|_| arrivals.push(Instant::now())),
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

    /// A TCP client in `ns` connected to `to`, sending one byte every `every`.
    pub fn tcp_feed(&mut self, ns: &str, to: SocketAddr, every: Duration) {
        let mut s = in_ns(ns, || {
            TcpStream::connect_timeout(&to, Duration::from_secs(2))
        })
        .unwrap_or_else(|e| panic!("{ns} -> {to}: {e}"));
        s.set_nodelay(true).unwrap();
        self.spawn(move |stop| {
            while !stop.load(Ordering::SeqCst) {
                let _ = s.write(b"x");
                std::thread::sleep(every);
            }
        });
    }

    /// A UDP echo server in `ns` on `port`; returns the arrival times of what it got.
    pub fn udp_echo(&mut self, ns: &str, port: u16) -> Arrivals {
        let sock = in_ns(ns, || UdpSocket::bind(("0.0.0.0", port))).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let got = Arrivals::default();
        let g = got.clone();
        self.spawn(move |stop| {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    g.push(Instant::now());
                    let _ = sock.send_to(&buf[..n], peer);
                }
            }
        });
        got
    }

    /// A UDP client in `ns` sending a datagram to `to` every `every` from one port;
    /// returns the arrival times of the echoes.
    pub fn udp_ping(&mut self, ns: &str, to: SocketAddr, every: Duration) -> Arrivals {
        let sock = in_ns(ns, || UdpSocket::bind(("0.0.0.0", 0))).unwrap();
        sock.connect(to).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let rx = sock.try_clone().unwrap();
        let echoes = Arrivals::default();
        let e = echoes.clone();
        self.spawn(move |stop| {
            while !stop.load(Ordering::SeqCst) {
                let _ = sock.send(b"ping");
                std::thread::sleep(every);
            }
        });
        self.spawn(move |stop| {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::SeqCst) {
                if rx.recv(&mut buf).is_ok() {
                    e.push(Instant::now());
                }
            }
        });
        echoes
    }
}

/// The arrivals of the first client with address `ip` at a TCP sink.
pub fn client(sink: &Arc<Mutex<Vec<(IpAddr, Arrivals)>>>, ip: &str) -> Arrivals {
    let ip: IpAddr = ip.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
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
