//! DNS over TCP: each pod connection is served by its own task, with one connection to
//! the server, queries answered in order. Transparent, the accepted socket's local
//! address is the connection's original destination (tproxy keeps it).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use super::exchange::{answer_query, forward_tcp, read_framed, write_framed};
use super::{Delivery, Learner, ProxyConfig, ProxyStats, Shared};

/// A bound TCP listener; [`TcpProxy::run`] serves it.
pub struct TcpProxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl TcpProxy {
    pub fn bind(
        listen: SocketAddr,
        config: ProxyConfig,
        learner: Arc<dyn Learner>,
        stats: Arc<ProxyStats>,
    ) -> io::Result<TcpProxy> {
        let sock = Socket::new(
            Domain::for_address(listen),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        sock.set_reuse_address(true)?;
        if let Delivery::Bridge(dev) = &config.delivery {
            sock.bind_device(Some(dev.as_bytes()))?;
        }
        // The IPv4 and IPv6 listeners share the port: each takes its own family only.
        if listen.is_ipv6() {
            sock.set_only_v6(true)?;
        }
        if config.transparent {
            match listen {
                SocketAddr::V4(_) => sock.set_ip_transparent_v4(true)?,
                SocketAddr::V6(_) => sock.set_ip_transparent_v6(true)?,
            }
        }
        sock.set_nonblocking(true)?;
        sock.bind(&listen.into())?;
        sock.listen(1024)?;
        let listener = TcpListener::from_std(sock.into())?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::new(config, learner, stats, port));
        Ok(TcpProxy { listener, shared })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the listener fails.
    pub async fn run(self) -> io::Result<()> {
        loop {
            let (stream, client) = self.listener.accept().await?;
            let Some(permit) = self.shared.slot() else {
                continue;
            };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = serve(stream, client, &shared).await {
                    tracing::debug!(%client, error = %crate::error::Chain(&e), "DNS over TCP connection ended");
                }
            });
        }
    }
}

async fn serve(mut stream: TcpStream, client: SocketAddr, shared: &Shared) -> io::Result<()> {
    let Some(server) = shared.server(Some(stream.local_addr()?)) else {
        return Err(io::Error::other("not steered here: closed"));
    };
    let mut upstream = None;
    loop {
        let query = match read_framed(&mut stream).await {
            Ok(q) => q,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let timeout = shared.config.upstream_timeout;
        let forward = forward_tcp(&mut upstream, &query, server, timeout);
        let Some(answer) = answer_query(shared, &query, client, server, forward).await else {
            // The server failed this query; the pod's resolver sees the connection close
            // and retries, as it would with the server itself.
            return Ok(());
        };
        write_framed(&mut stream, &answer).await?;
    }
}
