//! SCTP over raw IP sockets, for kernels without SCTP sockets (no `CONFIG_IP_SCTP`).
//!
//! Netfilter tracks SCTP without the SCTP module (`nf_conntrack_proto_sctp` is built into
//! conntrack), so the first two packets of an association are enough to probe a policy:
//!
//! ```text
//! client raw socket                      server raw socket (bound to the pod's address)
//!   INIT      vtag 0, init tag T  ──────▶  seen on a served port?
//!   match ports and vtag T  ◀──────────  INIT ACK  vtag T, init tag U, state cookie
//! ```
//!
//! Conntrack creates the entry on the INIT (reply vtag := T) and accepts the INIT ACK in
//! the reply direction only if its vtag is T, so the INIT ACK is `ct state established`
//! exactly as a kernel SCTP stack's would be: verdicts are those of real SCTP. The
//! checksum is SCTP's CRC32c (RFC 9260 appendix A) over the SCTP packet alone, with no
//! pseudo-header, in IPv4 and IPv6 alike; conntrack drops packets whose CRC is wrong as
//! invalid, so it must be right.
//!
//! ICMP: a kernel without an SCTP handler answers a protocol-132 packet with "protocol
//! unreachable" (IPv6: parameter problem, unknown next header) only when *no raw socket*
//! took it (`ip_protocol_deliver_rcu`, `ip6_protocol_deliver_rcu`). Both ends here hold a
//! raw socket bound to (server) or connected to (client) the right address, so neither
//! side sends one; a destination that serves no SCTP has no raw socket and sends one,
//! which counts as blocked, as a real stack's ABORT would.
//!
//! This module owns the packet encoding and the raw sockets; it does not decide verdicts
//! (probe.rs does) nor which ports an endpoint serves (serve.rs does).

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

/// The IP protocol number of SCTP.
pub const IPPROTO_SCTP: i32 = 132;

/// Chunk types (RFC 9260 section 3.2).
const CHUNK_INIT: u8 = 1;
const CHUNK_INIT_ACK: u8 = 2;
/// INIT ACK parameter carrying the state cookie (RFC 9260 section 3.3.3).
const PARAM_STATE_COOKIE: u16 = 7;
/// Common header: source port, destination port, verification tag, checksum.
const COMMON_HEADER: usize = 12;
/// Chunk header (type, flags, length) and the fixed part of INIT / INIT ACK: initiate
/// tag, a_rwnd, outbound streams, inbound streams, initial TSN.
const INIT_FIXED: usize = 4 + 16;
/// What the probe announces: a receive window, one stream each way.
const A_RWND: u32 = 65_535;
const STREAMS: u16 = 1;

/// One SCTP packet with a single INIT or INIT ACK chunk, as far as the probe reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src_port: u16,
    pub dst_port: u16,
    pub vtag: u32,
    pub chunk: u8,
    /// The chunk's initiate tag.
    pub init_tag: u32,
}

/// The CRC32c of an SCTP packet whose checksum field holds zero, as the field stores it.
/// RFC 9260 appendix A transmits the reflected CRC least significant byte first, which
/// is the little-endian encoding of the usual CRC32c value (Linux: `cpu_to_le32`).
fn checksum(packet: &[u8]) -> [u8; 4] {
    crc32c::crc32c(packet).to_le_bytes()
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Encodes a packet of one INIT or INIT ACK chunk, with its checksum.
fn encode(
    src_port: u16,
    dst_port: u16,
    vtag: u32,
    chunk: u8,
    init_tag: u32,
    params: &[u8],
) -> Vec<u8> {
    let chunk_len = INIT_FIXED + params.len();
    let mut p = Vec::with_capacity(COMMON_HEADER + chunk_len.next_multiple_of(4));
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.push(chunk);
    p.push(0);
    p.extend_from_slice(&u16::try_from(chunk_len).expect("small chunk").to_be_bytes());
    p.extend_from_slice(&init_tag.to_be_bytes());
    p.extend_from_slice(&A_RWND.to_be_bytes());
    p.extend_from_slice(&STREAMS.to_be_bytes());
    p.extend_from_slice(&STREAMS.to_be_bytes());
    // Initial TSN: any value; the tag is as good as any.
    p.extend_from_slice(&init_tag.to_be_bytes());
    p.extend_from_slice(params);
    p.resize(p.len().next_multiple_of(4), 0);
    let sum = checksum(&p);
    p[8..12].copy_from_slice(&sum);
    p
}

/// An INIT opening an association from `src_port` to `dst_port` with initiate tag `tag`
/// (its verification tag is 0, as RFC 9260 section 8.5.1 requires).
pub fn init(src_port: u16, dst_port: u16, tag: u32) -> Vec<u8> {
    encode(src_port, dst_port, 0, CHUNK_INIT, tag, &[])
}

/// The INIT ACK answering `init`: ports swapped, verification tag = the INIT's initiate
/// tag, our own initiate tag `tag`, and a state cookie parameter.
pub fn init_ack(init: &Packet, tag: u32) -> Vec<u8> {
    let cookie = [init.init_tag.to_be_bytes(), tag.to_be_bytes()].concat();
    let mut param = Vec::with_capacity(4 + cookie.len());
    param.extend_from_slice(&PARAM_STATE_COOKIE.to_be_bytes());
    param.extend_from_slice(
        &u16::try_from(4 + cookie.len())
            .expect("small")
            .to_be_bytes(),
    );
    param.extend_from_slice(&cookie);
    encode(
        init.dst_port,
        init.src_port,
        init.init_tag,
        CHUNK_INIT_ACK,
        tag,
        &param,
    )
}

/// Parses an SCTP packet whose first chunk is INIT or INIT ACK; `None` for anything
/// else, for a truncated packet or a wrong checksum (a real stack drops those too).
pub fn parse(p: &[u8]) -> Option<Packet> {
    if p.len() < COMMON_HEADER + INIT_FIXED {
        return None;
    }
    let mut zeroed = p.to_vec();
    zeroed[8..12].fill(0);
    if checksum(&zeroed) != p[8..12] {
        return None;
    }
    let chunk = p[COMMON_HEADER];
    if !matches!(chunk, CHUNK_INIT | CHUNK_INIT_ACK)
        || usize::from(be16(p, COMMON_HEADER + 2)) < INIT_FIXED
    {
        return None;
    }
    Some(Packet {
        src_port: be16(p, 0),
        dst_port: be16(p, 2),
        vtag: be32(p, 4),
        chunk,
        init_tag: be32(p, COMMON_HEADER + 4),
    })
}

/// The payload of what an IPv4 raw socket received (it includes the IP header; an IPv6
/// raw socket's does not).
fn ipv4_payload(b: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(b.first()? & 0x0f) * 4;
    b.get(ihl..)
}

/// A raw protocol-132 socket in the current thread's namespace, non-blocking, driven
/// through std's datagram calls (`recvfrom`/`sendto` are the same system calls for raw
/// sockets; the port of an address is ignored, and must be 0 for IPv6).
pub fn raw_socket(ipv4: bool) -> std::io::Result<UdpSocket> {
    let domain = if ipv4 { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_SCTP)))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Receives one datagram without blocking: `Ok(None)` when nothing is queued, else the
/// packet if it is an INIT or INIT ACK, and the sender.
fn recv(s: &UdpSocket, ipv4: bool) -> std::io::Result<Option<(Option<Packet>, IpAddr)>> {
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => {
            let data = &buf[..n];
            let payload = if ipv4 { ipv4_payload(data) } else { Some(data) };
            Ok(Some((payload.and_then(parse), from.ip())))
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Unique source ports and fresh tags for the probes of this process.
fn next_port_and_tag() -> (u16, u32) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Ports 32768..61000 (Linux's ephemeral range); a step flushes conntrack, so a port
    // reused after 28232 probes meets no stale entry that matters.
    let port = 32_768 + u16::try_from(n % 28_232).expect("below 28232");
    (port, random_tag(u64::from(n)))
}

/// A random non-zero tag (RFC 9260: the initiate tag must not be 0).
fn random_tag(seed: u64) -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(seed);
    let v = (h.finish() >> 32) as u32;
    v.max(1)
}

/// The client end of one SCTP probe: a raw socket connected to the destination (so it
/// only receives from there), the INIT it sends, and what the reply must match.
pub struct Client {
    sock: UdpSocket,
    ipv4: bool,
    dst_port: u16,
    src_port: u16,
    tag: u32,
    init: Vec<u8>,
}

impl Client {
    /// The source port its INIT carries.
    pub fn src_port(&self) -> u16 {
        self.src_port
    }

    /// Opens the socket in the current thread's namespace (bound to `bind` if given)
    /// and sends the INIT.
    pub fn start(bind: Option<IpAddr>, dst: SocketAddr) -> std::io::Result<Client> {
        let ipv4 = dst.is_ipv4();
        let sock = raw_socket(ipv4)?;
        if let Some(ip) = bind {
            sock_ref(&sock).bind(&SocketAddr::new(ip, 0).into())?;
        }
        sock.connect(SocketAddr::new(dst.ip(), 0))?;
        let (src_port, tag) = next_port_and_tag();
        let client = Client {
            sock,
            ipv4,
            dst_port: dst.port(),
            src_port,
            tag,
            init: init(src_port, dst.port(), tag),
        };
        client.send()?;
        Ok(client)
    }

    /// Sends the INIT (again: a real stack retransmits it too).
    pub fn send(&self) -> std::io::Result<()> {
        self.sock.send(&self.init).map(|_| ())
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// After poll said readable: `Some(true)` once the INIT ACK of this association
    /// arrived, `None` to keep waiting. Other packets (other probes' replies, our own
    /// INIT looped back) are skipped; so are ICMP errors reported on the socket, which
    /// may belong to another probe to the same address: only the INIT ACK decides.
    pub fn poll_reply(&self) -> Option<bool> {
        loop {
            match recv(&self.sock, self.ipv4) {
                Ok(None) => return None,
                Ok(Some((Some(p), _))) if self.is_reply(&p) => return Some(true),
                Ok(Some(_)) | Err(_) => continue,
            }
        }
    }

    fn is_reply(&self, p: &Packet) -> bool {
        p.chunk == CHUNK_INIT_ACK
            && p.src_port == self.dst_port
            && p.dst_port == self.src_port
            && p.vtag == self.tag
    }
}

fn sock_ref(s: &UdpSocket) -> socket2::SockRef<'_> {
    socket2::SockRef::from(s)
}

/// The server end for one address: answers every INIT to one of `ports` with an INIT
/// ACK, and ignores everything else (a real stack would ABORT an INIT to a closed port;
/// either way the client sees no INIT ACK).
pub struct Listener {
    sock: UdpSocket,
    ipv4: bool,
    ports: BTreeSet<u16>,
}

impl Listener {
    /// Binds a raw socket to `ip` in the current thread's namespace.
    pub fn bind(ip: IpAddr, ports: BTreeSet<u16>) -> std::io::Result<Listener> {
        let sock = raw_socket(ip.is_ipv4())?;
        sock_ref(&sock).bind(&SocketAddr::new(ip, 0).into())?;
        Ok(Listener {
            sock,
            ipv4: ip.is_ipv4(),
            ports,
        })
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Answers whatever INITs are queued, without blocking.
    pub fn serve(&self) {
        while let Ok(Some((packet, from))) = recv(&self.sock, self.ipv4) {
            let Some(p) = packet else { continue };
            if p.chunk != CHUNK_INIT || p.vtag != 0 || !self.ports.contains(&p.dst_port) {
                continue;
            }
            let reply = init_ack(&p, random_tag(u64::from(p.init_tag)));
            let _ = self.sock.send_to(&reply, SocketAddr::new(from, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_rfc_3720_vector_in_sctp_byte_order() {
        // RFC 3720 B.4: 32 bytes of zeros give CRC 0x8a9136aa, sent as aa 36 91 8a.
        assert_eq!(checksum(&[0u8; 32]), [0xaa, 0x36, 0x91, 0x8a]);
    }

    #[test]
    fn init_and_init_ack_round_trip() {
        let i = init(40_000, 80, 0x1122_3344);
        assert_eq!(i.len() % 4, 0);
        let p = parse(&i).expect("a valid INIT");
        assert_eq!(
            p,
            Packet {
                src_port: 40_000,
                dst_port: 80,
                vtag: 0,
                chunk: CHUNK_INIT,
                init_tag: 0x1122_3344
            }
        );
        let a = init_ack(&p, 0x5566_7788);
        let q = parse(&a).expect("a valid INIT ACK");
        assert_eq!((q.src_port, q.dst_port), (80, 40_000));
        assert_eq!(q.vtag, 0x1122_3344, "the INIT ACK carries the INIT's tag");
        assert_eq!((q.chunk, q.init_tag), (CHUNK_INIT_ACK, 0x5566_7788));
        // The state cookie parameter follows the fixed part.
        let at = COMMON_HEADER + INIT_FIXED;
        assert_eq!(be16(&a, at), PARAM_STATE_COOKIE);
        assert_eq!(usize::from(be16(&a, at + 2)), 4 + 8);
    }

    #[test]
    fn corrupted_packets_are_refused() {
        let mut i = init(40_000, 80, 7);
        i[13] ^= 1;
        assert_eq!(parse(&i), None, "bad checksum");
        assert_eq!(parse(&init(1, 2, 3)[..20]), None, "truncated");
    }

    #[test]
    fn ipv4_header_is_skipped() {
        let mut b = vec![0x45u8];
        b.extend_from_slice(&[0; 19]);
        b.extend_from_slice(&init(1, 2, 3));
        assert_eq!(parse(ipv4_payload(&b).unwrap()).unwrap().init_tag, 3);
    }

    #[test]
    fn tags_are_never_zero_and_ports_differ() {
        let (p1, _) = next_port_and_tag();
        let (p2, t2) = next_port_and_tag();
        assert_ne!(p1, p2);
        assert_ne!(t2, 0);
        assert!((0..10_000).all(|seed| random_tag(seed) != 0));
    }

    /// Root only: two namespaces joined by a veth, a raw INIT each way of both families.
    /// The INIT ACK comes back for a served port, not for another port; the kernel sends
    /// no ICMP while a raw socket takes the packets, and sends "protocol unreachable" /
    /// "unknown next header" for an address no raw socket is bound to.
    mod netns {
        use super::super::*;
        use crate::netns;
        use nix::poll::{poll, PollFd, PollFlags};
        use std::os::fd::AsFd;
        use std::time::{Duration, Instant};

        /// `(IPv4 ICMP dest-unreachable sent, IPv6 ICMP parameter-problem sent)` in `ns`.
        fn icmp_errors_sent(ns: &str) -> (u64, u64) {
            let _in = netns::enter(ns).unwrap();
            let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
            let lines: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Icmp:")).collect();
            let col = lines[0]
                .split_whitespace()
                .position(|c| c == "OutDestUnreachs")
                .unwrap();
            let v4 = lines[1]
                .split_whitespace()
                .nth(col)
                .unwrap()
                .parse()
                .unwrap();
            let snmp6 = std::fs::read_to_string("/proc/thread-self/net/snmp6").unwrap();
            let v6 = snmp6
                .lines()
                .find_map(|l| l.strip_prefix("Icmp6OutParmProblems"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            (v4, v6)
        }

        /// Waits (up to 10 s) until `dev` in `ns` has a carrier: a veth comes up a little
        /// after both its ends are set up, and packets sent before are lost.
        fn wait_for_carrier(ns: &str, dev: &str) {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                // Not /sys: entering a namespace does not change which one sysfs shows.
                let out = std::process::Command::new("ip")
                    .args(["-n", ns, "-o", "link", "show", "dev", dev])
                    .output()
                    .unwrap();
                let line = String::from_utf8_lossy(&out.stdout).into_owned();
                if line.contains("state UP") {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{dev} in {ns} has no carrier: {line}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        /// Serves and waits until the client has its INIT ACK or 500 ms pass, sending
        /// the INIT again every round (as the probe does every 300 ms).
        fn exchange(client: &Client, servers: &[Listener]) -> bool {
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                client.send().unwrap();
                let mut fds: Vec<PollFd> = servers
                    .iter()
                    .map(|l| PollFd::new(l.socket().as_fd(), PollFlags::POLLIN))
                    .chain([PollFd::new(client.socket().as_fd(), PollFlags::POLLIN)])
                    .collect();
                let _ = poll(&mut fds, 50u16);
                drop(fds);
                servers.iter().for_each(Listener::serve);
                if client.poll_reply() == Some(true) {
                    return true;
                }
            }
            false
        }

        #[test]
        #[ignore = "needs root: network namespaces, raw sockets"]
        fn raw_init_gets_its_init_ack_without_icmp() {
            assert!(
                nix::unistd::Uid::effective().is_root(),
                "raw_init_gets_its_init_ack_without_icmp needs root (network namespaces, raw sockets)"
            );
            let prefix = format!("{}sctpt-", netns::run_prefix());
            let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
            let setup = [
                format!("netns add {a}"),
                format!("netns add {b}"),
                format!("link add va netns {a} type veth peer name vb netns {b}"),
                format!("-n {a} addr add 10.99.0.1/24 dev va"),
                format!("-n {b} addr add 10.99.0.2/24 dev vb"),
                format!("-n {b} addr add 10.99.0.3/24 dev vb"),
                format!("-n {a} addr add fd99::1/64 dev va nodad"),
                format!("-n {b} addr add fd99::2/64 dev vb nodad"),
                format!("-n {b} addr add fd99::3/64 dev vb nodad"),
                format!("-n {a} link set va up"),
                format!("-n {b} link set vb up"),
            ];
            let result = std::panic::catch_unwind(|| {
                for line in &setup {
                    let ok = std::process::Command::new("ip")
                        .args(line.split_whitespace())
                        .status()
                        .is_ok_and(|s| s.success());
                    assert!(ok, "ip {line}");
                }
                wait_for_carrier(&a, "va");
                wait_for_carrier(&b, "vb");
                let servers: Vec<Listener> = {
                    let _in = netns::enter(&b).unwrap();
                    ["10.99.0.2", "fd99::2"]
                        .iter()
                        .map(|ip| Listener::bind(ip.parse().unwrap(), [80].into()).unwrap())
                        .collect()
                };
                let client = |dst: &str| {
                    let _in = netns::enter(&a).unwrap();
                    Client::start(None, dst.parse().unwrap()).unwrap()
                };
                let before = icmp_errors_sent(&b);
                for dst in ["10.99.0.2:80", "[fd99::2]:80"] {
                    assert!(exchange(&client(dst), &servers), "{dst}: no INIT ACK");
                }
                for dst in ["10.99.0.2:81", "[fd99::2]:81"] {
                    assert!(
                        !exchange(&client(dst), &servers),
                        "{dst}: an INIT ACK for a port not served"
                    );
                }
                assert_eq!(
                    icmp_errors_sent(&b),
                    before,
                    "ICMP sent although raw sockets took the packets"
                );
                for dst in ["10.99.0.3:80", "[fd99::3]:80"] {
                    assert!(!exchange(&client(dst), &servers), "{dst}: nobody serves it");
                }
                let after = icmp_errors_sent(&b);
                // At least one each (ICMP errors are rate limited per destination).
                assert!(
                    after.0 > before.0 && after.1 > before.1,
                    "protocol unreachable (IPv4) and unknown next header (IPv6) for the addresses without a raw socket: {before:?} -> {after:?}"
                );
            });
            netns::delete(&[a, b]);
            if let Err(e) = result {
                std::panic::resume_unwind(e);
            }
        }
    }
}
