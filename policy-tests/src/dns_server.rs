//! The cluster's DNS: a server in its own namespace on the underlay ([`SERVER_V4`] and
//! [`SERVER_V6`], UDP and TCP port 53) answering from the running step's records ([`crate::dns::Dns`]), and
//! the lookup a probe makes from inside a pod's namespace before it connects. Messages
//! are hickory-proto's; the loops are ours (one thread for UDP, one per TCP connection).
//!
//! The pods need no `/etc/resolv.conf`: the probe asks [`SERVER_V4`] itself, so what
//! reaches the node is one query per probe, over UDP or TCP as the case says.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::dns::{Data, Dns, SERVER_V4, SERVER_V6};
use crate::netns;
use crate::proto::Family;

/// How long a lookup waits for its answer (the proxy may hold it while the node learns).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often an unanswered UDP query is sent again.
const RESEND: Duration = Duration::from_millis(1000);

/// The running server; stops when dropped.
pub struct Server {
    zone: Arc<RwLock<Dns>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Serves UDP and TCP on port 53 of [`SERVER_V4`] and [`SERVER_V6`] inside namespace
    /// `netns`.
    pub fn start(netns: &str) -> Result<Server> {
        let mut sockets = Vec::new();
        {
            let _in = netns::enter(netns)?;
            for ip in [IpAddr::V4(SERVER_V4), IpAddr::V6(SERVER_V6)] {
                let addr = SocketAddr::new(ip, 53);
                let udp = UdpSocket::bind(addr).with_context(|| format!("DNS on udp {addr}"))?;
                let tcp = TcpListener::bind(addr).with_context(|| format!("DNS on tcp {addr}"))?;
                udp.set_read_timeout(Some(Duration::from_millis(100)))?;
                tcp.set_nonblocking(true)?;
                sockets.push((udp, tcp));
            }
        }
        let zone = Arc::new(RwLock::new(Dns::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            zone: zone.clone(),
            stop: stop.clone(),
        };
        let mut threads = Vec::new();
        for (udp, tcp) in sockets {
            let (s1, s2) = (shared.clone(), shared.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("dns udp".into())
                    .spawn(move || serve_udp(&udp, &s1))?,
            );
            threads.push(
                std::thread::Builder::new()
                    .name("dns tcp".into())
                    .spawn(move || serve_tcp(&tcp, &s2))?,
            );
        }
        Ok(Server {
            zone,
            stop,
            threads,
        })
    }

    /// Serves `dns` from now on.
    pub fn set(&self, dns: &Dns) {
        *self.zone.write().unwrap_or_else(|e| e.into_inner()) = dns.clone();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
struct Shared {
    zone: Arc<RwLock<Dns>>,
    stop: Arc<AtomicBool>,
}

fn serve_udp(udp: &UdpSocket, s: &Shared) {
    let mut buf = vec![0u8; 65_535];
    while !s.stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = udp.recv_from(&mut buf) else {
            continue;
        };
        let zone = s.zone.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(r) = respond(&zone, &buf[..n]) {
            let _ = udp.send_to(&r, from);
        }
    }
}

fn serve_tcp(tcp: &TcpListener, s: &Shared) {
    while !s.stop.load(Ordering::Relaxed) {
        match tcp.accept() {
            Ok((conn, _)) => {
                let s = s.clone();
                let _ = std::thread::Builder::new()
                    .name("dns tcp conn".into())
                    .spawn(move || serve_conn(conn, &s));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Answers length-prefixed queries on one connection until it closes (or goes quiet).
fn serve_conn(mut conn: TcpStream, s: &Shared) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if conn.read_exact(&mut q).is_err() {
            return;
        }
        let zone = s.zone.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(r) = respond(&zone, &q) else {
            return;
        };
        let Ok(n) = u16::try_from(r.len()) else {
            return;
        };
        let mut out = n.to_be_bytes().to_vec();
        out.extend_from_slice(&r);
        if conn.write_all(&out).is_err() {
            return;
        }
    }
}

/// The response to one query message; `None` for what is not a query.
fn respond(zone: &Dns, query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?.clone();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = true;
    let family = match question.query_type {
        RecordType::A => Some(Family::V4),
        RecordType::AAAA => Some(Family::V6),
        _ => None,
    };
    let asked = question.name.to_ascii();
    match zone.answer(&asked, family.unwrap_or(Family::V4)) {
        None => m.metadata.response_code = ResponseCode::NXDomain,
        Some(answers) => {
            for a in answers {
                let keep = family.is_some() || matches!(a.data, Data::Cname(_));
                if let (true, Some(r)) = (keep, record(&a)) {
                    m.add_answer(r);
                }
            }
        }
    }
    m.add_query(question);
    m.to_vec().ok()
}

fn fqdn(name: &str) -> Option<Name> {
    let n = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(n).ok()
}

fn record(a: &crate::dns::Answer) -> Option<Record> {
    let data = match &a.data {
        Data::Addr(IpAddr::V4(v4)) => RData::A(A(*v4)),
        Data::Addr(IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
        Data::Cname(t) => RData::CNAME(CNAME(fqdn(t)?)),
    };
    Some(Record::from_rdata(fqdn(&a.name)?, a.ttl, data))
}

/// Resolves `name` (A for IPv4, AAAA for IPv6) at the cluster DNS from the current
/// thread's namespace, over TCP or UDP; the first address of the answer. `Err` says why
/// there is none (no answer in [`LOOKUP_TIMEOUT`], NXDOMAIN, no address).
pub fn lookup(name: &str, family: Family, tcp: bool, id: u16) -> Result<IpAddr, String> {
    let qtype = match family {
        Family::V4 => RecordType::A,
        Family::V6 => RecordType::AAAA,
    };
    let qname = fqdn(name).ok_or_else(|| format!("{name:?} is not a DNS name"))?;
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(qname, qtype));
    let q = m.to_vec().map_err(|e| format!("encoding the query: {e}"))?;
    let server = SocketAddr::new(IpAddr::V4(SERVER_V4), 53);
    let answer = if tcp {
        ask_tcp(server, &q)
    } else {
        ask_udp(server, &q, id)
    }
    .map_err(|e| format!("{} lookup: {e}", if tcp { "tcp" } else { "udp" }))?;
    let r = Message::from_vec(&answer).map_err(|e| format!("bad answer: {e}"))?;
    if r.metadata.response_code != ResponseCode::NoError {
        return Err(format!("answer {}", r.metadata.response_code));
    }
    r.answers
        .iter()
        .find_map(|rec| match &rec.data {
            RData::A(a) if qtype == RecordType::A => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) if qtype == RecordType::AAAA => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .ok_or_else(|| format!("no {qtype} address in the answer"))
}

fn ask_udp(server: SocketAddr, q: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))?;
    s.connect(server)?;
    let deadline = Instant::now() + LOOKUP_TIMEOUT;
    let mut buf = vec![0u8; 65_535];
    loop {
        s.send(q)?;
        let resend = Instant::now() + RESEND;
        while Instant::now() < resend.min(deadline) {
            let wait = resend
                .min(deadline)
                .saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            match s.recv(&mut buf) {
                // Only the answer to this query (its id): a late answer to an earlier
                // one is no answer to this one.
                Ok(n) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                    return Ok(buf[..n].to_vec())
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer in {LOOKUP_TIMEOUT:?}"),
            ));
        }
    }
}

fn ask_tcp(server: SocketAddr, q: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, LOOKUP_TIMEOUT)?;
    s.set_read_timeout(Some(LOOKUP_TIMEOUT))?;
    let len = u16::try_from(q.len()).map_err(std::io::Error::other)?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(q);
    s.write_all(&out)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Dns {
        let raw: crate::dns::RawDns = serde_saphyr::from_str(
            "external: [198.51.100.10, \"2001:db8:51::10\"]\nrecords:\n  - {name: api.example.com, type: A, value: 198.51.100.10, ttl: 7}\n  - {name: v6.example.com, type: CNAME, value: edge.cdn.example}\n  - {name: edge.cdn.example, type: AAAA, value: \"2001:db8:51::10\"}\n",
        )
        .unwrap();
        raw.validate().unwrap()
    }

    fn ask(zone: &Dns, name: &str, t: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.id = 77;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        Message::from_vec(&respond(zone, &m.to_vec().unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn responses() {
        let z = zone();
        let r = ask(&z, "API.Example.com.", RecordType::A);
        assert_eq!(r.metadata.id, 77);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].name.to_ascii(), "API.Example.com.");
        assert_eq!(r.answers[0].ttl, 7);
        assert_eq!(r.queries[0].name.to_ascii(), "API.Example.com.");
        let r = ask(&z, "v6.example.com.", RecordType::AAAA);
        let kinds: Vec<RecordType> = r.answers.iter().map(|a| a.record_type()).collect();
        assert_eq!(kinds, [RecordType::CNAME, RecordType::AAAA]);
        assert_eq!(r.answers[1].name.to_ascii(), "edge.cdn.example.");
        let r = ask(&z, "v6.example.com.", RecordType::A);
        assert_eq!(r.answers.len(), 1, "the CNAME alone");
        let r = ask(&z, "nope.example.com.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }
}
