//! Shared by the DNS tests (included with `#[path = "dns/client.rs"]`): a pod's lookup
//! (one query over UDP or TCP, its first address), and a runtime inside a network
//! namespace for servers and proxies.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

pub fn query(id: u16, name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

/// Resolves `name` (record type `t`) at `server` (UDP, or TCP), returning the answer's
/// first address; `None` when no answer came or it holds none.
pub fn resolve_at(
    server: SocketAddr,
    name: &str,
    id: u16,
    tcp: bool,
    t: RecordType,
) -> Option<IpAddr> {
    let q = query(id, name, t);
    let answer = if tcp {
        let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut out = (q.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&q);
        s.write_all(&out).ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).ok()?;
        buf
    } else {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.send_to(&q, server).ok()?;
        let mut buf = vec![0u8; 4096];
        let (n, from) = s.recv_from(&mut buf).ok()?;
        assert_eq!(from, server, "the answer comes from where the query went");
        buf.truncate(n);
        buf
    };
    let m = Message::from_vec(&answer).ok()?;
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    })
}

/// Starts `f`'s runtime on a thread inside the namespace at `netns`, until the returned
/// sender is used or dropped.
pub fn spawn_in<F>(
    netns: PathBuf,
    f: F,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
)
where
    F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        nftpol::netlink::in_netns(&netns, move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                f().await;
                ready_tx.send(()).unwrap();
                let _ = rx.await;
            });
        })
        .unwrap();
    });
    ready_rx.recv().unwrap();
    (tx, h)
}
