//! The fallback when the CNI plugins are missing: pods wired by hand with `ip`, in the
//! shapes the plugins would give (a veth into `cni0` with the gateway on the bridge, or
//! a routed veth with a /32 route and proxy ARP). Runs made this way are reported as
//! SKIP, never PASS: they do not test what a node running the plugins does.
//!
//! This module only produces commands; `topology.rs` runs them and tracks the pods.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// What hand-wiring one batch of pods takes.
#[derive(Debug, Default)]
pub struct Commands {
    /// `ip -batch` lines per node namespace.
    pub node: BTreeMap<String, Vec<String>>,
    /// sysctls per node namespace (proxy ARP on routed veths).
    pub node_sysctls: BTreeMap<String, Vec<(String, &'static str)>>,
    /// `ip -batch` lines per pod namespace.
    pub pod: Vec<(String, Vec<String>)>,
}

/// One pod to wire: its namespace, the node's namespace and number, the node-side veth
/// name, its addresses and MAC.
pub struct Pod<'a> {
    pub netns: &'a str,
    pub node_ns: &'a str,
    pub node: u8,
    pub veth: &'a str,
    pub ips: &'a [IpAddr],
    pub mac: &'a str,
}

/// The node's `cni0` gateway addresses, which the bridge plugin would otherwise add.
pub fn bridge_gateway(n: u8) -> Vec<String> {
    vec![
        format!("addr add 10.244.{n}.1/24 dev cni0"),
        format!("addr add fd00:10:244:{n}::1/64 dev cni0 nodad"),
    ]
}

/// Adds the commands for `pod` to `out`; `bridged` picks the bridge shape over the
/// routed one.
pub fn wire(out: &mut Commands, pod: &Pod, bridged: bool) {
    let (n, veth) = (pod.node, pod.veth);
    let node_cmds = out.node.entry(pod.node_ns.to_string()).or_default();
    node_cmds.push(format!(
        "link add {veth} type veth peer name eth0 netns {}",
        pod.netns
    ));
    let mut cmds = vec![
        "link set lo up".to_string(),
        format!("link set eth0 address {}", pod.mac),
    ];
    if bridged {
        node_cmds.push(format!("link set {veth} master cni0 up"));
        for ip in pod.ips {
            let len = if ip.is_ipv4() { 24 } else { 64 };
            cmds.push(format!("addr add {ip}/{len} dev eth0 nodad"));
        }
        cmds.push("link set eth0 up".into());
        for ip in pod.ips {
            cmds.push(match ip {
                IpAddr::V4(_) => format!("route add default via 10.244.{n}.1"),
                IpAddr::V6(_) => format!("route add default via fd00:10:244:{n}::1"),
            });
        }
    } else {
        node_cmds.push(format!("link set {veth} up"));
        node_cmds.push(format!("addr add fe80::1/64 dev {veth} nodad"));
        out.node_sysctls
            .entry(pod.node_ns.to_string())
            .or_default()
            .extend([
                (format!("net.ipv4.conf.{veth}.proxy_arp"), "1"),
                (format!("net.ipv6.conf.{veth}.accept_dad"), "0"),
            ]);
        for ip in pod.ips {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            node_cmds.push(format!("route add {ip}/{len} dev {veth}"));
            cmds.push(format!("addr add {ip}/{len} dev eth0 nodad"));
        }
        cmds.push("link set eth0 up".into());
        for ip in pod.ips {
            match ip {
                IpAddr::V4(_) => {
                    cmds.push("route add 169.254.1.1 dev eth0 scope link".into());
                    cmds.push("route add default via 169.254.1.1 dev eth0".into());
                }
                IpAddr::V6(_) => cmds.push("route add default via fe80::1 dev eth0".into()),
            }
        }
    }
    out.pod.push((pod.netns.to_string(), cmds));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_pod_gets_a_host_route_and_proxy_arp() {
        let ips: Vec<IpAddr> = vec!["10.244.1.11".parse().unwrap()];
        let mut out = Commands::default();
        wire(
            &mut out,
            &Pod {
                netns: "p",
                node_ns: "n",
                node: 1,
                veth: "veth1",
                ips: &ips,
                mac: "02:00:0a:f4:01:0b",
            },
            false,
        );
        assert!(out.node["n"].contains(&"route add 10.244.1.11/32 dev veth1".to_string()));
        assert_eq!(out.node_sysctls["n"][0].0, "net.ipv4.conf.veth1.proxy_arp");
        assert!(out.pod[0]
            .1
            .contains(&"route add default via 169.254.1.1 dev eth0".to_string()));
    }
}
