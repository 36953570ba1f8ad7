//! What `explain` is asked, as typed data: the two ends, the protocol and port, the
//! family; and why a question cannot be answered. Parsing the `ns/pod`, address and
//! `tcp/80` notations lives here so that tests and tools share it; which command-line
//! flag a problem belongs to is the binary's business ([`Which`] says which end).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::policy::Protocol;

/// Which address family to use when both sides are named as pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// One end as the caller names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Pod { namespace: String, name: String },
    Addr(IpAddr),
}

impl FromStr for Target {
    type Err = ExplainError;

    /// `ns/pod` or an IP address.
    fn from_str(text: &str) -> Result<Self, ExplainError> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Target::Addr(ip));
        }
        match text.split_once('/') {
            Some((ns, name)) => Ok(Target::Pod {
                namespace: ns.into(),
                name: name.into(),
            }),
            None => Err(ExplainError::NotATarget { text: text.into() }),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pod { namespace, name } => write!(f, "{namespace}/{name}"),
            Target::Addr(ip) => write!(f, "{ip}"),
        }
    }
}

/// A connection to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub from: Target,
    pub to: Target,
    pub protocol: Protocol,
    pub port: u16,
    /// The family for ends named as pods; `None`: an address's, else IPv4 when both
    /// pods have it.
    pub family: Option<Family>,
}

impl Query {
    /// From the notations `ns/pod` or an address, and `tcp/80`.
    pub fn parse(
        from: &str,
        to: &str,
        port: &str,
        family: Option<Family>,
    ) -> Result<Self, ExplainError> {
        let (protocol, port) = parse_port(port)?;
        Ok(Query {
            from: from.parse()?,
            to: to.parse()?,
            protocol,
            port,
            family,
        })
    }
}

/// Parses `tcp/80`.
pub fn parse_port(text: &str) -> Result<(Protocol, u16), ExplainError> {
    let bad = || ExplainError::NotAPort { text: text.into() };
    let (proto, port) = text.split_once('/').ok_or_else(bad)?;
    let proto = Protocol::parse_lower(proto).ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok((proto, port))
}

/// The end of the connection a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    From,
    To,
}

/// Why a question cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("{text:?} is neither ns/pod nor an IP address")]
    NotATarget { text: String },
    #[error("{text:?} is not PROTO/PORT like tcp/80, udp/53 or sctp/81")]
    NotAPort { text: String },
    #[error("{problem}")]
    End { which: Which, problem: EndProblem },
    #[error("{from} and {to} are of different address families")]
    Families { from: IpAddr, to: IpAddr },
}

/// What is wrong with one end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndProblem {
    #[error("address {ip} is ambiguous: pods {} hold it; name one as ns/pod", pods.join(", "))]
    Ambiguous { ip: IpAddr, pods: Vec<String> },
    #[error("no pod {target} in the input")]
    NoPod { target: Target },
    #[error("pod {target} has no address of that family")]
    NoAddressOfFamily { target: Target },
    #[error("hostNetwork pod {target} has no address")]
    HostNetworkWithoutAddress { target: Target },
    #[error("pod {target} has finished; policy no longer applies to it")]
    Finished { target: Target },
    #[error("pod {target} has no IP address yet")]
    NoAddressYet { target: Target },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notations_parse_and_bad_ones_say_why() {
        let q = Query::parse("x/a", "10.0.0.1", "udp/53", None).unwrap();
        assert_eq!(
            q.from,
            Target::Pod {
                namespace: "x".into(),
                name: "a".into()
            }
        );
        assert_eq!(q.to, Target::Addr("10.0.0.1".parse().unwrap()));
        assert_eq!((q.protocol, q.port), (Protocol::Udp, 53));
        for port in ["tcp", "tcp/0", "tcp/65536", "icmp/1", "80"] {
            let e = Query::parse("x/a", "x/b", port, None).unwrap_err();
            assert_eq!(e, ExplainError::NotAPort { text: port.into() });
        }
        let e = Query::parse("a", "x/b", "tcp/80", None).unwrap_err();
        assert_eq!(e.to_string(), "\"a\" is neither ns/pod nor an IP address");
    }
}
