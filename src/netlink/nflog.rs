//! nfnetlink_log: bind one NFLOG group, receive the packets the ruleset's `log` rules send
//! it, and decode their addresses, protocol and ports.
//!
//! ```text
//! log ... group G (kernel) --NFULNL_MSG_PACKET--> Nflog::recv --> [LoggedPacket]
//!                                                 (prefix, family, 5-tuple, seq)
//! ```
//!
//! Owns: the config message (bind the group, copy the first bytes of each packet,
//! number the messages), parsing packet messages and the IP and transport headers in
//! them. Must not: know what a prefix means (the verdict reader maps it to a chain) or
//! touch nf_tables.
//!
//! Why not a crate: `netlink-packet-netfilter` 0.4 has nflog config and packet types,
//! but no socket of its own (it wants `netlink-sys` and `netlink-packet-core` beside the
//! mnl socket this project already opens); the messages are a header and a few
//! attributes, built here on the project's netfilter socket (`batch::Conn`) as
//! `conntrack.rs` builds ctnetlink's, with no unsafe code.
//!
//! One socket binds a group; a second binder gets EBUSY, which [`Nflog::open`] reports
//! naming the group. Closing the socket unbinds it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::abi::*;
use super::batch::{attrs, messages, Conn};
use super::NetlinkError;

/// Bytes of each packet the kernel copies: an IPv6 header and a transport header's ports
/// fit with room to spare; the rest of the packet is never needed.
pub const COPY_BYTES: u32 = 128;
/// How long one [`Nflog::recv`] waits, so that the reading thread notices a shutdown.
pub const RECV_TIMEOUT_SECS: u64 = 1;
/// The most datagrams one [`Nflog::recv`] takes, so a flood cannot keep it from returning.
const MAX_DATAGRAMS_PER_RECV: usize = 256;
/// Room for a burst of records between two reads (the kernel drops beyond it: ENOBUFS).
const RECV_BUFFER: usize = 4 << 20;

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPacket {
    /// The `log prefix` of the rule that sent it.
    pub prefix: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 tcp, 17 udp, 132 sctp, ...).
    pub protocol: u8,
    /// Source and destination port, for TCP, UDP and SCTP.
    pub ports: Option<(u16, u16)>,
    /// What tells a resend of a connection's first packet from a new connection on the
    /// same 5-tuple: a TCP segment's sequence number (a retransmitted SYN keeps its
    /// initial one), an SCTP INIT's initiate tag. `None` for UDP and the rest.
    pub opening: Option<u32>,
    /// The instance's message number (`NFULA_SEQ`).
    pub seq: Option<u32>,
}

/// What one [`Nflog::recv`] got.
#[derive(Debug, Default)]
pub struct Received {
    pub packets: Vec<LoggedPacket>,
    /// Messages that were not packets nftpol can decode (not IP, truncated).
    pub undecoded: usize,
    /// The socket's buffer overflowed since the last read: the kernel dropped records.
    pub overflowed: bool,
}

fn attr(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().div_ceil(4) * 4, 0);
}

/// `NFULNL_MSG_CONFIG` for `group`: bind, copy [`COPY_BYTES`] of each packet, number the
/// messages. The group travels in the nfgenmsg resource id, big endian; the family is
/// unspecified (the group receives IPv4 and IPv6 alike).
fn bind_request(group: u16, seq: u32) -> Vec<u8> {
    let mut body = Vec::new();
    attr(&mut body, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
    let mut mode = [0u8; NFULNL_CONFIG_MODE_LEN];
    mode[..4].copy_from_slice(&COPY_BYTES.to_be_bytes());
    mode[4] = NFULNL_COPY_PACKET;
    attr(&mut body, NFULA_CFG_MODE, &mode);
    attr(&mut body, NFULA_CFG_FLAGS, &NFULNL_CFG_F_SEQ.to_be_bytes());
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + body.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(NFPROTO_UNSPEC);
    out.push(NFNETLINK_V0);
    out.extend_from_slice(&group.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Source, destination, IP protocol, (source, destination) ports when it has them, and
/// the [`LoggedPacket::opening`] number.
type Tuple = (IpAddr, IpAddr, u8, Option<(u16, u16)>, Option<u32>);

/// SCTP's chunk type of an INIT (RFC 9260 3.2).
const SCTP_CHUNK_INIT: u8 = 1;

/// [`LoggedPacket::opening`] of a transport header: TCP's sequence number (bytes 4-7),
/// SCTP's initiate tag of a first chunk that is an INIT (after the 12-byte common header
/// and the 4-byte chunk header).
fn opening(protocol: u8, t: &[u8]) -> Option<u32> {
    let be32 = |at: usize| {
        t.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match protocol {
        IPPROTO_TCP => be32(4),
        IPPROTO_SCTP if t.get(12) == Some(&SCTP_CHUNK_INIT) => be32(16),
        _ => None,
    }
}

/// The addresses, protocol and ports of an IP packet (from its network header on).
fn decode_ip(p: &[u8]) -> Option<Tuple> {
    let (src, dst, protocol, transport) = match p.first()? >> 4 {
        4 if p.len() >= IPV4_MIN_HDRLEN => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            // A fragment after the first carries no transport header.
            let offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            let t = (offset == 0).then(|| p.get(ihl..)).flatten();
            (IpAddr::V4(src), IpAddr::V4(dst), p[9], t)
        }
        6 if p.len() >= IPV6_HDRLEN => {
            let src: [u8; 16] = p[8..24].try_into().ok()?;
            let dst: [u8; 16] = p[24..40].try_into().ok()?;
            // Extension headers are not walked: a first packet of TCP, UDP or SCTP has
            // none in practice; with one, the record has no ports rather than wrong ones.
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                p[6],
                p.get(IPV6_HDRLEN..),
            )
        }
        _ => return None,
    };
    let ports = match protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => transport.filter(|t| t.len() >= 4).map(|t| {
            (
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
            )
        }),
        _ => None,
    };
    let opening = transport.and_then(|t| opening(protocol, t));
    Some((src, dst, protocol, ports, opening))
}

/// One `NFULNL_MSG_PACKET` payload (nfgenmsg, then attributes).
fn parse_packet(payload: &[u8]) -> Option<LoggedPacket> {
    let mut prefix = None;
    let mut packet = None;
    let mut seq = None;
    for (ty, v) in attrs(payload.get(NFGENMSG_LEN..)?) {
        match ty {
            NFULA_PREFIX => {
                let s = v.split(|&c| c == 0).next().unwrap_or(&[]);
                prefix = Some(String::from_utf8_lossy(s).into_owned());
            }
            NFULA_PAYLOAD => packet = Some(v),
            NFULA_SEQ if v.len() >= 4 => seq = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            _ => {}
        }
    }
    let (src, dst, protocol, ports, opening) = decode_ip(packet?)?;
    Some(LoggedPacket {
        prefix: prefix.unwrap_or_default(),
        src,
        dst,
        protocol,
        ports,
        opening,
        seq,
    })
}

/// A socket bound to one NFLOG group, in the network namespace of the thread that
/// opened it.
pub struct Nflog {
    conn: Conn,
    group: u16,
}

impl Nflog {
    /// Binds `group`. EBUSY: another socket (another nftpol, ulogd, a tool) holds it.
    pub fn open(group: u16) -> Result<Self, NetlinkError> {
        let mut conn = Conn::open()?;
        conn.size_recv_buffer(RECV_BUFFER);
        let seq = conn.reserve(1);
        conn.dump(&bind_request(group, seq), seq)
            .map_err(|e| match e {
                NetlinkError::Dump { source, message } => NetlinkError::Dump {
                    message: Some(format!(
                        "binding NFLOG group {group}{}{}",
                        if source.raw_os_error() == Some(libc::EBUSY) {
                            " (another process reads this group; choose another with --log-group)"
                        } else {
                            ""
                        },
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    )),
                    source,
                },
                other => other,
            })?;
        conn.set_recv_timeout(RECV_TIMEOUT_SECS);
        Ok(Nflog { conn, group })
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// Every packet queued: waits up to [`RECV_TIMEOUT_SECS`] for the first datagram,
    /// then takes the ones queued behind it without waiting.
    pub fn recv(&mut self) -> Result<Received, NetlinkError> {
        let mut out = Received::default();
        let mut first = true;
        for _ in 0..MAX_DATAGRAMS_PER_RECV {
            let got = if first {
                self.conn.recv_datagram()
            } else {
                self.conn.recv_datagram_nowait()
            };
            first = false;
            let bytes = match got {
                Ok(Some(b)) => b,
                Ok(None) => return Ok(out),
                Err(NetlinkError::OutcomeUnknown) => {
                    out.overflowed = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for m in messages(bytes)? {
                if m.ty != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
                    continue;
                }
                match parse_packet(m.payload) {
                    Some(p) => out.packets.push(p),
                    None => out.undecoded += 1,
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[1, 2, 3, 4]);
        p.extend_from_slice(&[0; 12]);
        p
    }

    #[test]
    fn decodes_ipv4_and_ipv6_tuples() {
        let (s, d, proto, ports, opening) =
            decode_ip(&ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80)).unwrap();
        assert_eq!(opening, Some(0x0102_0304), "the SYN's sequence number");
        assert_eq!(
            (s, d),
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
        );
        assert_eq!((proto, ports), (IPPROTO_TCP, Some((40000, 80))));

        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, IPPROTO_UDP, 64];
        v6.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        let (s, d, proto, ports, opening) = decode_ip(&v6).unwrap();
        assert_eq!(opening, None, "UDP has none");
        assert_eq!(
            (s, d),
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
        );
        assert_eq!((proto, ports), (IPPROTO_UDP, Some((5000, 53))));
    }

    #[test]
    fn a_truncated_or_non_ip_packet_is_not_guessed() {
        let p = ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
        // Ports cut off: addresses, no ports.
        assert_eq!(decode_ip(&p[..22]).unwrap().3, None);
        assert!(decode_ip(&p[..12]).is_none());
        assert!(decode_ip(&[0x10; 40]).is_none());
        // ICMP has no ports.
        let mut icmp = p.clone();
        icmp[9] = 1;
        assert_eq!(decode_ip(&icmp).unwrap().3, None);
    }

    #[test]
    fn packet_messages_give_prefix_tuple_and_seq() {
        let mut payload = vec![NFPROTO_IPV4, NFNETLINK_V0, 0x24, 0x5d];
        attr(&mut payload, NFULA_PREFIX, b"d ingress/x/a\0");
        attr(&mut payload, NFULA_SEQ, &7u32.to_be_bytes());
        attr(
            &mut payload,
            NFULA_PAYLOAD,
            &ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 5, 6),
        );
        let p = parse_packet(&payload).unwrap();
        assert_eq!(p.prefix, "d ingress/x/a");
        assert_eq!(p.seq, Some(7));
        assert_eq!(p.ports, Some((5, 6)));
    }

    #[test]
    fn the_bind_request_names_the_group_big_endian() {
        let m = bind_request(9309, 3);
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(
            &m[NLMSG_HDRLEN + 2..NLMSG_HDRLEN + 4],
            &9309u16.to_be_bytes()
        );
        let a = attrs(&m[NLMSG_HDRLEN + NFGENMSG_LEN..]);
        assert_eq!(a[0], (NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND][..]));
        assert_eq!(a[1].1[..4], COPY_BYTES.to_be_bytes());
        assert_eq!(a[1].1[4], NFULNL_COPY_PACKET);
    }
}
