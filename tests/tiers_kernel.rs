#![cfg(feature = "netlink")]
//! ClusterNetworkPolicy tiers with real packets. A node namespace routes three pod
//! namespaces (a veth and a /32 route each, as a routed CNI does) and is programmed over
//! netlink with a hand-tiered graph (`tier_util::scenario`):
//!
//! - c's ingress Admin Deny from a drops TCP and ICMP echo (b still reaches c both ways);
//! - b's ingress Admin Pass from c hands c to NetworkPolicy, which allows only a;
//! - b's ingress Baseline Deny from a never applies (NetworkPolicy isolates b's ingress);
//! - a's ingress Baseline Deny from b applies (nothing isolates a): b -> a dropped;
//! - a's egress Admin Deny to the node on TCP 8080 drops a -> node (the input hook),
//!   while b -> node passes and a reaches the node over ICMP.
//!
//! Needs root (network namespaces, nftables): `#[ignore]`d, run with `--include-ignored` as
//! root (see common/root.rs).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

mod common;
#[path = "common/root.rs"]
mod needs_root;
#[path = "common/routed.rs"]
mod routed;
#[path = "common/tiers.rs"]
mod tier_util;
use needs_root::require_root_and_nft;
use routed::{attach, forwarding, ip, path};
use tier_util::{addr, NODE_ADDR, PORT};

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// The node namespace and one per pod; each pod's namespace is named after the pod.
fn topology() -> (Namespaces, String, Vec<(String, String)>) {
    let prefix = format!("nftpol-cnp-{}", std::process::id());
    let node = format!("{prefix}-n");
    let mut all = Namespaces(vec![node.clone()]);
    ip(&["netns", "add", &node]);
    let mut pods = Vec::new();
    for name in ["a", "b", "c"] {
        let ns = format!("{prefix}-{name}");
        ip(&["netns", "add", &ns]);
        all.0.push(ns.clone());
        attach(&node, &ns, &format!("v{name}"), &addr(name));
        pods.push((ns, addr(name)));
    }
    forwarding(&node);
    (all, node, pods)
}

fn tcp(from_ns: &str, to: &str) -> bool {
    routed::connects(from_ns, to, PORT, Duration::from_millis(400))
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether an ICMP echo request from `from_ns` to `to` gets its reply within 400 ms
/// (a raw socket: root, and no `ping` binary needed).
fn echo(from_ns: &str, to: &str) -> bool {
    let to: Ipv4Addr = to.parse().unwrap();
    nftpol::netlink::in_netns(&path(from_ns), || {
        let mut s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
        let id = (std::process::id() & 0xffff) as u16;
        let mut req = vec![8u8, 0, 0, 0];
        req.extend_from_slice(&id.to_be_bytes());
        req.extend_from_slice(&1u16.to_be_bytes());
        req.extend_from_slice(b"nftpol-cnp");
        let sum = checksum(&req);
        req[2..4].copy_from_slice(&sum.to_be_bytes());
        s.send_to(&req, &SocketAddrV4::new(to, 0).into()).unwrap();
        let deadline = Instant::now() + Duration::from_millis(400);
        let mut buf = [0u8; 1500];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            s.set_read_timeout(Some(left)).unwrap();
            let Ok(n) = s.read(&mut buf) else {
                return false;
            };
            // A raw IPv4 socket reads the IP header too.
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            if n >= ihl + 8
                && buf[12..16] == to.octets()
                && buf[ihl] == 0
                && buf[ihl + 4..ihl + 6] == id.to_be_bytes()
            {
                return true;
            }
        }
        false
    })
    .unwrap()
}

fn listen(ns: &str) -> TcpListener {
    routed::listen(ns, PORT)
}

#[test]
#[ignore = "needs root: network namespaces, nftables, real packets"]
fn tiers_decide_real_packets() {
    require_root_and_nft("tiers_decide_real_packets");
    let (_guard, node, pods) = topology();
    let ns = |name: &str| pods[(name.as_bytes()[0] - b'a') as usize].0.clone();
    let _listeners: Vec<TcpListener> = pods
        .iter()
        .map(|(n, _)| listen(n))
        .chain([listen(&node)])
        .collect();
    let (a, b, c) = (ns("a"), ns("b"), ns("c"));

    // Without a table every path is open: the topology works.
    for (from, to) in [(&a, addr("c")), (&c, addr("b")), (&b, addr("a"))] {
        assert!(tcp(from, &to), "{from} -> {to} before any rule");
    }
    assert!(tcp(&a, NODE_ADDR) && echo(&a, &addr("c")));

    let rs = nftpol::ruleset::build(&tier_util::scenario());
    nftpol::netlink::in_netns(&path(&node), || nftpol::netlink::full_sync(&rs))
        .unwrap()
        .unwrap();

    // (what, from, to, TCP connects)
    let tcp_cases = [
        ("Admin Deny a -> c", &a, addr("c"), false),
        ("b -> c: no tier decides", &b, addr("c"), true),
        (
            "Admin Pass c -> b, NetworkPolicy denies",
            &c,
            addr("b"),
            false,
        ),
        (
            "a -> b: NetworkPolicy allows, Baseline not consulted",
            &a,
            addr("b"),
            true,
        ),
        (
            "Baseline Deny b -> a (a not isolated)",
            &b,
            addr("a"),
            false,
        ),
        ("c -> a: no tier decides", &c, addr("a"), true),
        (
            "Admin Deny a -> own node on TCP 8080",
            &a,
            NODE_ADDR.to_string(),
            false,
        ),
        (
            "b -> own node: no egress tiers",
            &b,
            NODE_ADDR.to_string(),
            true,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, from, to, want) in &tcp_cases {
        if tcp(from, to) != *want {
            wrong.push(format!("TCP {what}: want {want}"));
        }
    }
    // (what, from, to, echo answered)
    let icmp_cases = [
        ("Admin Deny a -> c, ICMP", &a, addr("c"), false),
        ("b -> c, ICMP", &b, addr("c"), true),
        (
            "a -> own node, ICMP (the deny is TCP 8080 only)",
            &a,
            NODE_ADDR.to_string(),
            true,
        ),
    ];
    for (what, from, to, want) in &icmp_cases {
        if echo(from, to) != *want {
            wrong.push(format!("ICMP {what}: want {want}"));
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}
