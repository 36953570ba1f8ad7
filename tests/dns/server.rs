//! A DNS server for tests, on hickory-proto: UDP and TCP on one address, answering from a
//! function of the question (records, raw bytes, or silence), counting what it served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// What the server does with one question.
#[allow(dead_code)]
pub enum Reply {
    /// A NOERROR answer with these records.
    Records(Vec<Record>),
    /// These bytes as they are.
    Raw(Vec<u8>),
    /// A well-formed answer to another question, with the query's id.
    OtherQuestion(Query, Vec<Record>),
    /// Nothing.
    Silent,
}

pub type Zone = Arc<dyn Fn(&Query) -> Reply + Send + Sync>;

#[allow(dead_code)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub served: Arc<AtomicUsize>,
}

fn reply(zone: &Zone, query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?.clone();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    match zone(&question) {
        Reply::Records(records) => {
            m.add_query(question);
            m.add_answers(records);
        }
        Reply::OtherQuestion(other, records) => {
            m.add_query(other);
            m.add_answers(records);
        }
        Reply::Raw(bytes) => return Some(bytes),
        Reply::Silent => return None,
    }
    m.to_vec().ok()
}

impl TestServer {
    /// Serves UDP and TCP on `addr` (port 0: any) until the runtime ends.
    pub async fn start(addr: SocketAddr, zone: Zone) -> TestServer {
        let udp = UdpSocket::bind(addr).await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let (z, s) = (zone.clone(), served.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if let Some(r) = reply(&z, &buf[..n]) {
                    s.fetch_add(1, Ordering::SeqCst);
                    let _ = udp.send_to(&r, from).await;
                }
            }
        });
        let s = served.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = tcp.accept().await {
                let (z, s) = (zone.clone(), s.clone());
                tokio::spawn(async move {
                    while let Ok(len) = conn.read_u16().await {
                        let mut q = vec![0u8; len as usize];
                        if conn.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        let Some(r) = reply(&z, &q) else { continue };
                        s.fetch_add(1, Ordering::SeqCst);
                        let mut out = (r.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&r);
                        if conn.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TestServer { addr, served }
    }
}
