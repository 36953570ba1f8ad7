//! One query's way through the proxy, whatever the transport: forward it to the server,
//! then learn from the answer (bounded) before it is returned.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{Lookup, Shared};

/// The largest DNS message (over TCP; UDP's is smaller).
pub(crate) const MAX_MESSAGE: usize = 65_535;

/// Sends `query` to `server` from a fresh port and waits for the reply carrying the same
/// message id (a connected socket only hears `server`).
pub(crate) async fn forward_udp(
    query: &[u8],
    server: SocketAddr,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let any: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((any, 0)).await?;
    sock.connect(server).await?;
    sock.send(query).await?;
    let wait = async {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let n = sock.recv(&mut buf).await?;
            if query.len() < 2 || (n >= 2 && buf[..2] == query[..2]) {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
}

/// Sends `query` over `conn` (opened to `server` on first use) and reads one reply, both
/// with the two-byte length prefix of DNS over TCP.
pub(crate) async fn forward_tcp(
    conn: &mut Option<TcpStream>,
    query: &[u8],
    server: SocketAddr,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let exchange = async {
        if conn.is_none() {
            *conn = Some(TcpStream::connect(server).await?);
        }
        let stream = conn.as_mut().expect("connected above");
        write_framed(stream, query).await?;
        read_framed(stream).await
    };
    let result = tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")));
    if result.is_err() {
        // A half-read stream cannot be trusted for the next query.
        *conn = None;
    }
    result
}

pub(crate) async fn read_framed<R: AsyncReadExt + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let len = r.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

pub(crate) async fn write_framed<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    msg: &[u8],
) -> io::Result<()> {
    let len = u16::try_from(msg.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 64 KiB"))?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    w.write_all(&framed).await
}

/// Whether `answer` answers `query`: same id, same questions (names compared as DNS
/// compares them). A server's reply to something else teaches nothing.
fn answers(query: &Message, answer: &Message) -> bool {
    query.metadata.id == answer.metadata.id && query.queries == answer.queries
}

/// Hands a readable answer to the learner and waits for it (bounded); counts. The
/// answer's bytes are returned to the pod by the caller as they came, whatever happens
/// here.
pub(crate) async fn learn(
    shared: &Shared,
    query: &[u8],
    answer: &[u8],
    client: SocketAddr,
    server: SocketAddr,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &shared.stats;
    let parsed = Message::from_vec(query)
        .ok()
        .zip(Message::from_vec(answer).ok())
        .filter(|(q, a)| answers(q, a));
    let Some((_, answer)) = parsed else {
        stats.unreadable.fetch_add(1, Relaxed);
        tracing::debug!(%client, %server, "DNS reply not read: passed through unlearned");
        return;
    };
    stats.answers.fetch_add(1, Relaxed);
    let lookup = Lookup {
        client,
        server,
        answer,
    };
    let learning = shared.learner.learn(lookup);
    match tokio::time::timeout(shared.config.learn_timeout, learning).await {
        Ok(Ok(n)) => {
            stats.learned.fetch_add(n as u64, Relaxed);
        }
        Ok(Err(e)) => {
            stats.learn_failures.fetch_add(1, Relaxed);
            tracing::warn!(%client, %server, error = %crate::error::Chain(&e), "learning from a DNS answer failed");
        }
        Err(_) => {
            stats.learn_failures.fetch_add(1, Relaxed);
            tracing::warn!(%client, %server, timeout = ?shared.config.learn_timeout,
                "learning from a DNS answer timed out; answer returned unlearned");
        }
    }
}

/// Forwards one query with `forward`, learns, and says what to return: the answer's
/// bytes, or nothing when the server gave none (the pod's resolver retries).
pub(crate) async fn answer_query<F>(
    shared: &Shared,
    query: &[u8],
    client: SocketAddr,
    server: SocketAddr,
    forward: F,
) -> Option<Vec<u8>>
where
    F: std::future::Future<Output = io::Result<Vec<u8>>>,
{
    use std::sync::atomic::Ordering::Relaxed;
    let start = Instant::now();
    shared.stats.queries.fetch_add(1, Relaxed);
    let sent = Instant::now();
    let answer = match forward.await {
        Ok(a) => a,
        Err(e) => {
            shared.stats.upstream_failures.fetch_add(1, Relaxed);
            tracing::debug!(%client, %server, error = %crate::error::Chain(&e), "DNS query not answered");
            return None;
        }
    };
    let upstream = sent.elapsed();
    learn(shared, query, &answer, client, server).await;
    shared.stats.added(start.elapsed().saturating_sub(upstream));
    Some(answer)
}
