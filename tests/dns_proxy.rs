#![cfg(feature = "controller")]
//! The DNS proxy on loopback, against a DNS server built on hickory-proto (no root, no
//! tproxy: the proxy forwards to a fixed server here; the transparent path is tested in
//! network namespaces). What holds: the pod gets the server's answer byte for byte, and
//! only after the learner completed; UDP and TCP alike; a reply that does not parse or
//! does not answer the query passes through unlearned; a failing or hanging learner
//! delays the answer at most by the learn timeout and never loses it.

#[path = "dns/server.rs"]
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nftpol::controller::dns_proxy::{
    Destination, LearnError, Learner, Lookup, ProxyConfig, ProxyStats, TcpProxy, UdpProxy,
};
use nftpol::fqdn;
use server::{Reply, TestServer, Zone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// What the learner was taught, in order: (question, addresses).
type Log = Arc<Mutex<Vec<(String, Vec<IpAddr>)>>>;

#[derive(Clone, Copy)]
enum Mode {
    /// Completes after a pause (long enough that an answer returned before it would be
    /// seen before the log entry: the check does not depend on it being long).
    Slow,
    Fail,
    Hang,
}

/// Records what it was taught, then completes (or fails, or never completes).
#[derive(Clone)]
struct Recorder {
    log: Log,
    mode: Mode,
}

impl Learner for Recorder {
    fn learn(&self, lookup: Lookup) -> BoxFuture<'static, Result<usize, LearnError>> {
        let (log, mode) = (self.log.clone(), self.mode);
        async move {
            let r = fqdn::read(
                &lookup.answer,
                fqdn::Limits::default(),
                fqdn::Ttl::default(),
            )
            .map_err(|_| LearnError::Gone)?;
            match mode {
                Mode::Slow => tokio::time::sleep(Duration::from_millis(20)).await,
                Mode::Fail => return Err(LearnError::Gone),
                Mode::Hang => futures::future::pending::<()>().await,
            }
            let addrs: Vec<IpAddr> = r.addrs.iter().map(|l| l.addr).collect();
            let n = addrs.len();
            log.lock().unwrap().push((r.name.to_string(), addrs));
            Ok(n)
        }
        .boxed()
    }
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// `www.example.com` CNAME `edge.example.net` A 192.0.2.10 / AAAA 2001:db8::10;
/// `garbage.example.com` gets bytes that are no DNS message (but carry the id);
/// `liar.example.com` gets an answer to another question; `silent.example.com` nothing.
fn zone() -> Zone {
    Arc::new(|q: &Query| {
        let n = q.name.to_ascii().to_lowercase();
        let www = name("www.example.com.");
        let edge = name("edge.example.net.");
        match n.as_str() {
            "www.example.com." => {
                let mut recs = vec![Record::from_rdata(
                    www,
                    60,
                    RData::CNAME(CNAME(edge.clone())),
                )];
                recs.push(match q.query_type {
                    RecordType::AAAA => Record::from_rdata(
                        edge,
                        60,
                        RData::AAAA(AAAA("2001:db8::10".parse().unwrap())),
                    ),
                    _ => Record::from_rdata(edge, 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 10)))),
                });
                Reply::Records(recs)
            }
            "garbage.example.com." => Reply::Raw(vec![0, 0, 0xff, 0xff, 1, 2, 3]),
            "liar.example.com." => Reply::OtherQuestion(
                Query::query(name("www.example.com."), RecordType::A),
                vec![Record::from_rdata(
                    name("www.example.com."),
                    60,
                    RData::A(A(Ipv4Addr::new(203, 0, 113, 66))),
                )],
            ),
            "silent.example.com." => Reply::Silent,
            _ => Reply::Records(vec![]),
        }
    })
}

fn query(id: u16, n: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(n), t));
    m.to_vec().unwrap()
}

struct Setup {
    udp: SocketAddr,
    tcp: SocketAddr,
    server: TestServer,
    stats: Arc<ProxyStats>,
    log: Log,
}

async fn setup(mode: Mode) -> Setup {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = TestServer::start(lo, zone()).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let learner = Arc::new(Recorder {
        log: log.clone(),
        mode,
    });
    let config = ProxyConfig {
        destination: Destination::Fixed(server.addr),
        transparent: false,
        upstream_timeout: Duration::from_millis(300),
        learn_timeout: Duration::from_millis(200),
        max_in_flight: 64,
        ..ProxyConfig::default()
    };
    let stats = Arc::new(ProxyStats::default());
    let u = UdpProxy::bind(lo, config.clone(), learner.clone(), stats.clone()).unwrap();
    let t = TcpProxy::bind(lo, config, learner, stats.clone()).unwrap();
    let (udp, tcp) = (u.local_addr().unwrap(), t.local_addr().unwrap());
    tokio::spawn(u.run());
    tokio::spawn(t.run());
    Setup {
        udp,
        tcp,
        server,
        stats,
        log,
    }
}

async fn udp_lookup(proxy: SocketAddr, q: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(q, proxy).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(from, proxy);
    buf.truncate(n);
    buf
}

async fn tcp_lookup(conn: &mut TcpStream, q: &[u8]) -> Vec<u8> {
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(q);
    conn.write_all(&out).await.unwrap();
    let len = conn.read_u16().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    conn.read_exact(&mut buf).await.unwrap();
    buf
}

fn learned(log: &Log) -> Vec<(String, Vec<IpAddr>)> {
    log.lock().unwrap().clone()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn udp_answers_wait_for_the_learner_and_come_back_unchanged() {
    let s = setup(Mode::Slow).await;
    for i in 0..20u16 {
        let (t, want) = if i % 2 == 0 {
            (RecordType::A, ip("192.0.2.10"))
        } else {
            (RecordType::AAAA, ip("2001:db8::10"))
        };
        let q = query(1000 + i, "WWW.example.com.", t);
        let answer = udp_lookup(s.udp, &q).await;
        // Already learned when the answer arrives.
        let log = learned(&s.log);
        assert_eq!(log.len(), i as usize + 1);
        assert_eq!(
            log[i as usize],
            ("www.example.com.".to_string(), vec![want])
        );
        let m = Message::from_vec(&answer).unwrap();
        assert_eq!(m.metadata.id, 1000 + i);
        assert_eq!(m.answers.len(), 2);
    }
    assert_eq!(s.stats.queries.load(Ordering::SeqCst), 20);
    assert_eq!(s.stats.answers.load(Ordering::SeqCst), 20);
    assert_eq!(s.stats.learned.load(Ordering::SeqCst), 20);
    assert_eq!(s.stats.learn_failures.load(Ordering::SeqCst), 0);
    assert_eq!(s.server.served.load(Ordering::SeqCst), 20);
    assert_eq!(s.stats.added_counts().iter().sum::<u64>(), 20);
}

#[tokio::test]
async fn tcp_answers_wait_for_the_learner_several_on_one_connection() {
    let s = setup(Mode::Slow).await;
    let mut conn = TcpStream::connect(s.tcp).await.unwrap();
    for i in 0..5u16 {
        let answer = tcp_lookup(&mut conn, &query(i, "www.example.com.", RecordType::A)).await;
        assert_eq!(learned(&s.log).len(), i as usize + 1);
        assert_eq!(Message::from_vec(&answer).unwrap().metadata.id, i);
    }
    assert_eq!(s.stats.answers.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn unreadable_replies_pass_through_unlearned() {
    let s = setup(Mode::Slow).await;
    let answer = udp_lookup(s.udp, &query(0, "garbage.example.com.", RecordType::A)).await;
    assert_eq!(answer, [0, 0, 0xff, 0xff, 1, 2, 3]);
    let answer = udp_lookup(s.udp, &query(7, "liar.example.com.", RecordType::A)).await;
    let m = Message::from_vec(&answer).unwrap();
    assert_eq!(m.queries[0].name, name("www.example.com."));
    let mut conn = TcpStream::connect(s.tcp).await.unwrap();
    let answer = tcp_lookup(&mut conn, &query(0, "garbage.example.com.", RecordType::A)).await;
    assert_eq!(answer, [0, 0, 0xff, 0xff, 1, 2, 3]);
    assert_eq!(learned(&s.log), []);
    assert_eq!(s.stats.unreadable.load(Ordering::SeqCst), 3);
    assert_eq!(s.stats.answers.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failing_or_hanging_learner_never_loses_the_answer() {
    for mode in [Mode::Fail, Mode::Hang] {
        let s = setup(mode).await;
        let answer = udp_lookup(s.udp, &query(3, "www.example.com.", RecordType::A)).await;
        assert_eq!(Message::from_vec(&answer).unwrap().answers.len(), 2);
        let mut conn = TcpStream::connect(s.tcp).await.unwrap();
        let answer = tcp_lookup(&mut conn, &query(4, "www.example.com.", RecordType::A)).await;
        assert_eq!(Message::from_vec(&answer).unwrap().answers.len(), 2);
        assert_eq!(learned(&s.log), []);
        assert_eq!(s.stats.learn_failures.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn a_silent_server_is_counted() {
    let s = setup(Mode::Slow).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&query(9, "silent.example.com.", RecordType::A), s.udp)
        .await
        .unwrap();
    // The proxy gives up after its upstream timeout; wait for the count, not a time.
    for _ in 0..100 {
        if s.stats.upstream_failures.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.stats.upstream_failures.load(Ordering::SeqCst), 1);
    assert_eq!(s.stats.answers.load(Ordering::SeqCst), 0);
}

/// A query sent to the proxy's own port (not steered by tproxy) is never forwarded:
/// forwarding it to its "original destination", the proxy itself, would loop.
#[tokio::test]
async fn queries_to_the_proxy_itself_are_not_forwarded() {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let log: Log = Arc::default();
    let learner = Arc::new(Recorder {
        log: log.clone(),
        mode: Mode::Slow,
    });
    let config = ProxyConfig {
        destination: Destination::Original,
        transparent: false,
        ..ProxyConfig::default()
    };
    let stats = Arc::new(ProxyStats::default());
    let udp = UdpProxy::bind(lo, config.clone(), learner.clone(), stats.clone()).unwrap();
    let tcp = TcpProxy::bind(lo, config, learner, stats.clone()).unwrap();
    let (u, t) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    tokio::spawn(udp.run());
    tokio::spawn(tcp.run());
    let mut conn = TcpStream::connect(t).await.unwrap();
    let q = query(1, "www.example.com.", RecordType::A);
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    // Closed without an answer (a reset, when the query was still unread).
    let _ = conn.write_all(&out).await;
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf).await;
    assert!(buf.is_empty());
    // Without a transparent socket UDP has no original destination: dropped too.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&q, u).await.unwrap();
    for _ in 0..100 {
        if stats.refused.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats.refused.load(Ordering::SeqCst), 2);
    assert_eq!(stats.queries.load(Ordering::SeqCst), 0);
    assert_eq!(learned(&log), []);
}

/// Past `max_in_flight` queries being served, a query is dropped (and counted), not
/// queued: a flood costs the pod its retries, not the node its memory.
#[tokio::test]
async fn queries_past_the_limit_are_dropped() {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = TestServer::start(lo, zone()).await;
    let learner = Arc::new(Recorder {
        log: Log::default(),
        mode: Mode::Hang,
    });
    let config = ProxyConfig {
        destination: Destination::Fixed(server.addr),
        transparent: false,
        learn_timeout: Duration::from_secs(3),
        max_in_flight: 1,
        ..ProxyConfig::default()
    };
    let stats = Arc::new(ProxyStats::default());
    let udp = UdpProxy::bind(lo, config, learner, stats.clone()).unwrap();
    let proxy = udp.local_addr().unwrap();
    tokio::spawn(udp.run());
    let q1 = query(1, "www.example.com.", RecordType::A);
    let first = tokio::spawn(async move { udp_lookup(proxy, &q1).await });
    // The first is held by the hanging learner (its answer is in) when the second comes.
    while stats.answers.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&query(2, "www.example.com.", RecordType::A), proxy)
        .await
        .unwrap();
    for _ in 0..100 {
        if stats.overloaded.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The first still gets its answer, after the learn timeout.
    let answer = first.await.unwrap();
    assert_eq!(Message::from_vec(&answer).unwrap().metadata.id, 1);
    assert_eq!(stats.overloaded.load(Ordering::SeqCst), 1);
    assert_eq!(stats.queries.load(Ordering::SeqCst), 1);
}
