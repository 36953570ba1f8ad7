//! Protocols, address families and probe names (`tcp/80`), shared by the case format,
//! the servers and the probes.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::IpAddr;

/// A transport protocol a probe or a container port uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The same protocol as nftpol's policy model names it.
    pub fn protocol(self) -> nftpol::policy::Protocol {
        match self {
            Proto::Tcp => nftpol::policy::Protocol::Tcp,
            Proto::Udp => nftpol::policy::Protocol::Udp,
            Proto::Sctp => nftpol::policy::Protocol::Sctp,
        }
    }

    /// Lower case, as in probe names and `nft`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// Upper case, as in Kubernetes objects.
    pub fn k8s(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        }
    }

    /// Parses `TCP`/`UDP`/`SCTP` (Kubernetes spelling; case-insensitive).
    pub fn parse_any_case(text: &str) -> Option<Proto> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address family of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize)]
pub enum Family {
    #[default]
    #[serde(rename = "ipv4")]
    V4,
    #[serde(rename = "ipv6")]
    V6,
}

impl Family {
    pub fn of(ip: std::net::IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// One probe kind: protocol and destination port, written `tcp/80`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    pub proto: Proto,
    pub port: u16,
}

impl FromStr for Probe {
    type Err = String;

    fn from_str(text: &str) -> Result<Probe, String> {
        let bad =
            || format!("bad probe {text:?}: expected PROTO/PORT like tcp/80, udp/81, sctp/80");
        let (proto, port) = text.split_once('/').ok_or_else(bad)?;
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            _ => return Err(bad()),
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(Probe { proto, port })
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.proto, self.port)
    }
}

/// A new socket for `proto` in the family of `ip`, created in the current thread's
/// network namespace (where it stays).
pub fn socket_for(proto: Proto, ip: IpAddr) -> std::io::Result<Socket> {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let (ty, protocol) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
        Proto::Sctp => (Type::STREAM, Protocol::from(crate::sctp::IPPROTO_SCTP)),
    };
    let socket = Socket::new(domain, ty, Some(protocol))?;
    if ip.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// How SCTP is probed on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SctpMode {
    /// The kernel has SCTP sockets: probes connect and servers accept, as for TCP.
    Sockets,
    /// No SCTP sockets, but raw protocol-132 sockets: INIT and INIT ACK by hand
    /// ([`crate::sctp`]).
    Raw,
    /// Neither: SCTP probes are skipped, for this reason.
    Unavailable(String),
}

impl SctpMode {
    /// Whether SCTP probes run at all.
    pub fn probes(&self) -> bool {
        !matches!(self, SctpMode::Unavailable(_))
    }
}

/// How this kernel lets SCTP be probed, found once (in the namespace the process started
/// in; every namespace shares the kernel's protocols and the process's capabilities).
pub fn sctp_mode() -> &'static SctpMode {
    static MODE: std::sync::OnceLock<SctpMode> = std::sync::OnceLock::new();
    MODE.get_or_init(|| {
        if socket_for(Proto::Sctp, IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).is_ok() {
            return SctpMode::Sockets;
        }
        match crate::sctp::raw_socket(true).and_then(|_| crate::sctp::raw_socket(false)) {
            Ok(_) => SctpMode::Raw,
            Err(e) => SctpMode::Unavailable(format!(
                "kernel has no SCTP sockets and raw sockets are refused ({e})"
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names() {
        let p: Probe = "udp/81".parse().unwrap();
        assert_eq!(
            p,
            Probe {
                proto: Proto::Udp,
                port: 81
            }
        );
        assert_eq!(p.to_string(), "udp/81");
        for bad in ["tcp", "tcp/0", "tcp/65536", "TCP/80", "icmp/1", "tcp/x", ""] {
            assert!(bad.parse::<Probe>().is_err(), "{bad}");
        }
    }

    #[test]
    fn k8s_protocols() {
        assert_eq!(Proto::parse_any_case("SCTP"), Some(Proto::Sctp));
        assert_eq!(Proto::parse_any_case("Udp"), Some(Proto::Udp));
        assert_eq!(Proto::parse_any_case("ICMP"), None);
    }
}
