//! DNS over UDP: one listening socket; each datagram is answered by its own task.
//!
//! Transparent, the socket receives the tproxied datagrams of every destination and
//! learns each one's original destination from the IP_ORIGDSTADDR control message; the
//! answer leaves from a socket bound (IP_TRANSPARENT) to that destination, so the pod
//! sees the reply come from where it sent the query.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::socket::{SockaddrIn, SockaddrIn6, SockaddrStorage};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::exchange::{answer_query, forward_udp, MAX_MESSAGE};
use super::{Delivery, Learner, ProxyConfig, ProxyStats, Shared};

/// A bound UDP listener; [`UdpProxy::run`] serves it.
pub struct UdpProxy {
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
}

fn udp_socket(addr: SocketAddr, transparent: bool) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The transparent reply socket binds the query's destination while the listener
    // holds the port: both need it.
    sock.set_reuse_address(true)?;
    // The IPv4 and IPv6 listeners share the port: each takes its own family only.
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if transparent {
        match addr {
            SocketAddr::V4(_) => sock.set_ip_transparent_v4(true)?,
            SocketAddr::V6(_) => sock.set_ip_transparent_v6(true)?,
        }
    }
    sock.set_nonblocking(true)?;
    Ok(sock)
}

impl UdpProxy {
    /// Binds `listen` (in production the port the tproxy rule names, on the unspecified
    /// address of one family).
    pub fn bind(
        listen: SocketAddr,
        config: ProxyConfig,
        learner: Arc<dyn Learner>,
        stats: Arc<ProxyStats>,
    ) -> io::Result<UdpProxy> {
        let sock = udp_socket(listen, config.transparent)?;
        if let Delivery::Bridge(dev) = &config.delivery {
            sock.bind_device(Some(dev.as_bytes()))?;
        }
        if config.transparent {
            match listen {
                SocketAddr::V4(_) => setsockopt(&sock, sockopt::Ipv4OrigDstAddr, &true)?,
                SocketAddr::V6(_) => setsockopt(&sock, sockopt::Ipv6OrigDstAddr, &true)?,
            }
        }
        sock.bind(&listen.into())?;
        let sock = Arc::new(UdpSocket::from_std(sock.into())?);
        let port = sock.local_addr()?.port();
        let shared = Arc::new(Shared::new(config, learner, stats, port));
        Ok(UdpProxy { sock, shared })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Serves until the socket fails.
    pub async fn run(self) -> io::Result<()> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let (n, client, original) = if self.shared.config.transparent {
                let sock = &self.sock;
                sock.async_io(Interest::READABLE, || recv_original(sock, &mut buf))
                    .await?
            } else {
                let (n, client) = self.sock.recv_from(&mut buf).await?;
                (n, client, None)
            };
            let Some(permit) = self.shared.slot() else {
                continue;
            };
            let query = buf[..n].to_vec();
            let (sock, shared) = (self.sock.clone(), self.shared.clone());
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = serve(&sock, &shared, query, client, original).await {
                    tracing::debug!(%client, error = %crate::error::Chain(&e), "DNS answer not returned");
                }
            });
        }
    }
}

/// One datagram: its length, sender and original destination (when the kernel gave it).
fn recv_original(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SocketAddr>)> {
    use std::os::fd::AsRawFd;
    let mut cmsg = nix::cmsg_space!(nix::libc::sockaddr_in6);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let client = msg
        .address
        .as_ref()
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|s| SocketAddr::from(*s))
                .or_else(|| a.as_sockaddr_in6().map(|s| SocketAddr::from(*s)))
        })
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let mut original = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4OrigDstAddr(a) => {
                original = Some(SocketAddr::from(SockaddrIn::from(a)));
            }
            ControlMessageOwned::Ipv6OrigDstAddr(a) => {
                original = Some(SocketAddr::from(SockaddrIn6::from(a)));
            }
            _ => {}
        }
    }
    Ok((msg.bytes, client, original))
}

async fn serve(
    listener: &UdpSocket,
    shared: &Shared,
    query: Vec<u8>,
    client: SocketAddr,
    original: Option<SocketAddr>,
) -> io::Result<()> {
    let Some(server) = shared.server(original) else {
        return Err(io::Error::other("not steered here: dropped"));
    };
    let timeout = shared.config.upstream_timeout;
    let forward = forward_udp(&query, server, timeout);
    let Some(answer) = answer_query(shared, &query, client, server, forward).await else {
        return Ok(());
    };
    match (shared.config.transparent, original) {
        (true, Some(from)) if matches!(shared.config.delivery, Delivery::Bridge(_)) => {
            listener
                .async_io(Interest::WRITABLE, || {
                    send_from(listener, &answer, from, client)
                })
                .await?;
        }
        (true, Some(from)) => {
            let sock = udp_socket(from, true)?;
            sock.bind(&from.into())?;
            let sock = UdpSocket::from_std(sock.into())?;
            sock.send_to(&answer, client).await?;
        }
        _ => {
            listener.send_to(&answer, client).await?;
        }
    }
    Ok(())
}

/// Sends `answer` to `client` from the listener with `from`'s address as its source
/// (IP_PKTINFO; the listener is transparent, so it may be an address of another host).
/// The source port is the listener's: a bridge listener's is the query's destination
/// port.
fn send_from(
    sock: &UdpSocket,
    answer: &[u8],
    from: SocketAddr,
    client: SocketAddr,
) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::os::fd::AsRawFd;
    let iov = [io::IoSlice::new(answer)];
    let fd = sock.as_raw_fd();
    let sent = match (from, client) {
        (SocketAddr::V4(f), SocketAddr::V4(c)) => {
            let info = nix::libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: nix::libc::in_addr {
                    s_addr: u32::from(*f.ip()).to_be(),
                },
                ipi_addr: nix::libc::in_addr { s_addr: 0 },
            };
            let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
            sendmsg(
                fd,
                &iov,
                &cmsg,
                MsgFlags::empty(),
                Some(&SockaddrIn::from(c)),
            )
        }
        (SocketAddr::V6(f), SocketAddr::V6(c)) => {
            let info = nix::libc::in6_pktinfo {
                ipi6_addr: nix::libc::in6_addr {
                    s6_addr: f.ip().octets(),
                },
                ipi6_ifindex: 0,
            };
            let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
            sendmsg(
                fd,
                &iov,
                &cmsg,
                MsgFlags::empty(),
                Some(&SockaddrIn6::from(c)),
            )
        }
        _ => return Err(io::Error::other("query and answer of different families")),
    };
    sent.map(|_| ()).map_err(io::Error::from)
}
