#![cfg(feature = "netlink")]
//! Shared helpers for tests that send real packets (included with
//! `#[path = "common/routed.rs"]`): pod namespaces attached to a node namespace the way
//! a routed CNI attaches them (a veth, a /32 on each side's route, no bridge), so their
//! traffic crosses the node's forward hook; TCP listeners and connection probes.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The gateway address every pod routes through; the node holds it on each pod's veth.
pub const GATEWAY: &str = "10.244.1.1";

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn path(ns: &str) -> PathBuf {
    PathBuf::from(format!("/run/netns/{ns}"))
}

/// Turns on IPv4 forwarding in the node namespace.
pub fn forwarding(node: &str) {
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "sysctl in {node}");
}

/// Connects existing namespace `pod` to existing namespace `node` through a veth named
/// `veth` on the node side, the pod holding `addr`/32.
pub fn attach(node: &str, pod: &str, veth: &str, addr: &str) {
    ip(&["-n", node, "link", "set", "lo", "up"]);
    ip(&[
        "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod,
    ]);
    ip(&["-n", node, "link", "set", veth, "up"]);
    ip(&[
        "-n",
        node,
        "addr",
        "add",
        &format!("{GATEWAY}/32"),
        "dev",
        veth,
    ]);
    ip(&[
        "-n",
        node,
        "route",
        "add",
        &format!("{addr}/32"),
        "dev",
        veth,
    ]);
    ip(&["-n", pod, "link", "set", "lo", "up"]);
    ip(&["-n", pod, "link", "set", "eth0", "up"]);
    ip(&[
        "-n",
        pod,
        "addr",
        "add",
        &format!("{addr}/32"),
        "dev",
        "eth0",
    ]);
    ip(&["-n", pod, "route", "add", GATEWAY, "dev", "eth0"]);
    ip(&[
        "-n", pod, "route", "add", "default", "via", GATEWAY, "dev", "eth0",
    ]);
}

/// A TCP listener in `ns`; the kernel completes handshakes without accept().
pub fn listen(ns: &str, port: u16) -> TcpListener {
    nftpol::netlink::in_netns(&path(ns), || TcpListener::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap()
}

/// Whether a new TCP connection from `ns` to `addr:port` completes within `timeout`.
pub fn connects(ns: &str, addr: &str, port: u16, timeout: Duration) -> bool {
    let to: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    nftpol::netlink::in_netns(&path(ns), || {
        TcpStream::connect_timeout(&to, timeout).is_ok()
    })
    .unwrap()
}
