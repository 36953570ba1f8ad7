//! The cluster's network, built from namespaces: an underlay bridge joining n1, n2 and
//! ext, and each pod wired into its node either through a Linux bridge (`bridge`, like
//! flannel) or through a routed veth (`routed`, like Calico). Pods are added, removed or
//! rebuilt to match each step's cluster; everything is removed on drop.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use anyhow::{bail, Context, Result};

use crate::cluster::{hosts, node_number, Cluster, Pod, NODES};
use crate::netns;

/// How pods are attached to their node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Bridge,
    Routed,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Bridge => "bridge",
            Kind::Routed => "routed",
        })
    }
}

/// What a pod's network was built from; a change in any of it rebuilds the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodNet {
    node: String,
    ips: Vec<IpAddr>,
}

/// A pod's interface in its node, and the network it was built for.
#[derive(Debug, Clone)]
struct Built {
    net: PodNet,
    veth: String,
}

/// The MAC address of a pod, derived from its addresses: a pod that gets the address
/// of a deleted one also gets its MAC, so no neighbour cache keeps a stale entry.
fn pod_mac(ips: &[IpAddr], node: u8) -> String {
    let bytes = match ips.iter().find(|ip| ip.is_ipv4()).or(ips.first()) {
        Some(IpAddr::V4(v4)) => {
            let o = v4.octets();
            [0x02, 0x00, o[0], o[1], o[2], o[3]]
        }
        Some(IpAddr::V6(v6)) => {
            let o = v6.octets();
            [0x02, node, o[12], o[13], o[14], o[15]]
        }
        None => [0x02, 0xff, 0, 0, 0, node],
    };
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A built cluster network. Namespace names start with `prefix`.
pub struct Topology {
    pub kind: Kind,
    prefix: String,
    pods: BTreeMap<String, Built>,
    next_veth: u32,
    torn_down: bool,
}

fn dad_off() -> Vec<(String, &'static str)> {
    vec![
        ("net.ipv6.conf.all.accept_dad".into(), "0"),
        ("net.ipv6.conf.default.accept_dad".into(), "0"),
    ]
}

impl Topology {
    /// Builds the underlay, the nodes and ext (no pods yet).
    pub fn build(kind: Kind, prefix: String) -> Result<Topology> {
        let mut topo = Topology {
            kind,
            prefix,
            pods: BTreeMap::new(),
            next_veth: 0,
            torn_down: false,
        };
        topo.build_hosts()
            .with_context(|| format!("building the {kind} topology"))?;
        Ok(topo)
    }

    /// The namespace of `n1`, `n2` or `ext`.
    pub fn host_ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// The namespace of pod `ns/name`.
    pub fn pod_ns(&self, id: &str) -> String {
        format!("{}p-{}", self.prefix, id.replace('/', "-"))
    }

    fn build_hosts(&mut self) -> Result<()> {
        let _lock = netns::lock();
        let underlay = format!("{}u", self.prefix);
        let mut names = vec![underlay.clone()];
        names.extend(hosts().iter().map(|h| self.host_ns(h.name)));
        netns::ip_batch(
            None,
            &names
                .iter()
                .map(|n| format!("netns add {n}"))
                .collect::<Vec<_>>(),
        )?;
        for name in &names {
            netns::sysctl(name, &dad_off())?;
        }
        for node in NODES {
            let ns = self.host_ns(node);
            let mut keys = vec![
                ("net.ipv4.ip_forward".to_string(), "1"),
                ("net.ipv6.conf.all.forwarding".into(), "1"),
            ];
            if self.kind == Kind::Bridge {
                if !std::path::Path::new("/proc/sys/net/bridge").exists() {
                    bail!("br_netfilter is not loaded and `modprobe br_netfilter` did not load it: bridged traffic would bypass nftables");
                }
                keys.push(("net.bridge.bridge-nf-call-iptables".into(), "1"));
                keys.push(("net.bridge.bridge-nf-call-ip6tables".into(), "1"));
            }
            netns::sysctl(&ns, &keys)
                .context("bridged traffic must go through the inet forward hook (br_netfilter)")?;
        }
        let mut u = vec![
            "link set lo up".to_string(),
            "link add br0 address 02:fe:00:00:00:ff type bridge".into(),
        ];
        for h in hosts() {
            let v = format!("v{}", h.name);
            u.push(format!(
                "link add {v} type veth peer name eth0 netns {}",
                self.host_ns(h.name)
            ));
            u.push(format!("link set {v} master br0 up"));
        }
        u.push("link set br0 up".into());
        netns::ip_batch(Some(&underlay), &u)?;
        for h in hosts() {
            let mut cmds = vec![
                "link set lo up".to_string(),
                format!("addr add {}/24 dev eth0", h.v4),
                format!("addr add {}/64 dev eth0 nodad", h.v6),
                "link set eth0 up".into(),
            ];
            for node in NODES {
                if node == h.name {
                    continue;
                }
                let n = node_number(node).unwrap();
                let gw = crate::cluster::host(node).unwrap();
                cmds.push(format!("route add 10.244.{n}.0/24 via {}", gw.v4));
                cmds.push(format!("route add fd00:10:244:{n}::/64 via {}", gw.v6));
            }
            if node_number(h.name).is_some() {
                // Nodes reach the rest of the world through ext. In `routed` this is also
                // what makes proxy ARP answer for the pods' gateway 169.254.1.1: the node
                // must have a route to it through another interface.
                let ext = crate::cluster::host("ext").unwrap();
                cmds.push(format!("route add default via {}", ext.v4));
                cmds.push(format!("route add default via {}", ext.v6));
            }
            if self.kind == Kind::Bridge {
                if let Some(n) = node_number(h.name) {
                    // A fixed MAC: by default a bridge takes the lowest MAC of its ports,
                    // so removing a pod would change the pods' gateway under their
                    // neighbour caches.
                    cmds.push(format!(
                        "link add cni0 address 02:fe:00:00:00:{n:02x} type bridge"
                    ));
                    cmds.push(format!("addr add 10.244.{n}.1/24 dev cni0"));
                    cmds.push(format!("addr add fd00:10:244:{n}::1/64 dev cni0 nodad"));
                    cmds.push("link set cni0 up".into());
                }
            }
            netns::ip_batch(Some(&self.host_ns(h.name)), &cmds)?;
        }
        Ok(())
    }

    /// Adds, removes and rebuilds pods so the network matches `cluster`. Returns the pods
    /// (`ns/name`) whose namespace was created anew, so their servers must restart.
    pub fn reconcile(&mut self, cluster: &Cluster) -> Result<Vec<String>> {
        let _lock = netns::lock();
        let want: BTreeMap<&String, PodNet> = cluster
            .pods
            .iter()
            .map(|(id, p)| {
                (
                    id,
                    PodNet {
                        node: p.node.clone(),
                        ips: p.ips.clone(),
                    },
                )
            })
            .collect();
        let remove: Vec<String> = self
            .pods
            .iter()
            .filter(|(id, built)| want.get(id) != Some(&built.net))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &remove {
            let built = self.pods.remove(id).expect("listed above");
            // Deleting the node's end first removes the pair and its routes at once; the
            // namespace itself may outlive `netns del` while sockets still hold it.
            let node_ns = self.host_ns(&built.net.node);
            netns::ip_batch(Some(&node_ns), &[format!("link del {}", built.veth)])?;
        }
        netns::delete(&remove.iter().map(|id| self.pod_ns(id)).collect::<Vec<_>>());
        let add: Vec<&Pod> = cluster
            .pods
            .values()
            .filter(|p| !self.pods.contains_key(&p.id()))
            .collect();
        if add.is_empty() {
            return Ok(Vec::new());
        }
        if let Err(e) = self.add_pods(&add) {
            // Leave nothing half-built: a later step would take it for a working pod.
            for p in &add {
                if let Some(built) = self.pods.remove(&p.id()) {
                    let node_ns = self.host_ns(&built.net.node);
                    let _ = netns::ip_batch(Some(&node_ns), &[format!("link del {}", built.veth)]);
                }
            }
            netns::delete(&add.iter().map(|p| self.pod_ns(&p.id())).collect::<Vec<_>>());
            return Err(e.context("adding pods"));
        }
        Ok(add.iter().map(|p| p.id()).collect())
    }

    fn add_pods(&mut self, pods: &[&Pod]) -> Result<()> {
        let names: Vec<String> = pods.iter().map(|p| self.pod_ns(&p.id())).collect();
        netns::ip_batch(
            None,
            &names
                .iter()
                .map(|n| format!("netns add {n}"))
                .collect::<Vec<_>>(),
        )?;
        for ns in &names {
            netns::sysctl(ns, &dad_off())?;
        }
        let mut per_node: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut proxy_arp: BTreeMap<&str, Vec<(String, &str)>> = BTreeMap::new();
        let mut pod_cmds = Vec::new();
        for (p, ns) in pods.iter().zip(&names) {
            self.next_veth += 1;
            let veth = format!("veth{}", self.next_veth);
            let net = PodNet {
                node: p.node.clone(),
                ips: p.ips.clone(),
            };
            self.pods.insert(
                p.id(),
                Built {
                    net,
                    veth: veth.clone(),
                },
            );
            let node_cmds = per_node.entry(p.node.as_str()).or_default();
            node_cmds.push(format!(
                "link add {veth} type veth peer name eth0 netns {ns}"
            ));
            let n = node_number(&p.node).unwrap();
            let mut cmds = vec![
                "link set lo up".to_string(),
                format!("link set eth0 address {}", pod_mac(&p.ips, n)),
            ];
            match self.kind {
                Kind::Bridge => {
                    node_cmds.push(format!("link set {veth} master cni0 up"));
                    for ip in &p.ips {
                        let len = if ip.is_ipv4() { 24 } else { 64 };
                        cmds.push(format!("addr add {ip}/{len} dev eth0 nodad"));
                    }
                    cmds.push("link set eth0 up".into());
                    for ip in &p.ips {
                        match ip {
                            IpAddr::V4(_) => {
                                cmds.push(format!("route add default via 10.244.{n}.1"))
                            }
                            IpAddr::V6(_) => {
                                cmds.push(format!("route add default via fd00:10:244:{n}::1"))
                            }
                        }
                    }
                }
                Kind::Routed => {
                    node_cmds.push(format!("link set {veth} up"));
                    node_cmds.push(format!("addr add fe80::1/64 dev {veth} nodad"));
                    proxy_arp.entry(p.node.as_str()).or_default().extend([
                        (format!("net.ipv4.conf.{veth}.proxy_arp"), "1"),
                        (format!("net.ipv6.conf.{veth}.accept_dad"), "0"),
                    ]);
                    for ip in &p.ips {
                        match ip {
                            IpAddr::V4(_) => {
                                node_cmds.push(format!("route add {ip}/32 dev {veth}"))
                            }
                            IpAddr::V6(_) => {
                                node_cmds.push(format!("route add {ip}/128 dev {veth}"))
                            }
                        }
                    }
                    for ip in &p.ips {
                        let len = if ip.is_ipv4() { 32 } else { 128 };
                        cmds.push(format!("addr add {ip}/{len} dev eth0 nodad"));
                    }
                    cmds.push("link set eth0 up".into());
                    for ip in &p.ips {
                        match ip {
                            IpAddr::V4(_) => {
                                cmds.push("route add 169.254.1.1 dev eth0 scope link".into());
                                cmds.push("route add default via 169.254.1.1 dev eth0".into());
                            }
                            IpAddr::V6(_) => {
                                cmds.push("route add default via fe80::1 dev eth0".into())
                            }
                        }
                    }
                }
            }
            pod_cmds.push((ns.clone(), cmds));
        }
        for (node, cmds) in &per_node {
            netns::ip_batch(Some(&self.host_ns(node)), cmds)?;
        }
        for (node, keys) in &proxy_arp {
            netns::sysctl(&self.host_ns(node), keys)?;
        }
        for (ns, cmds) in &pod_cmds {
            netns::ip_batch(Some(ns), cmds)?;
        }
        Ok(())
    }

    /// Removes every namespace of this topology.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        let _lock = netns::lock();
        netns::delete_prefixed(&self.prefix);
        self.pods.clear();
        self.torn_down = true;
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_follow_addresses() {
        let v4: IpAddr = "10.244.1.12".parse().unwrap();
        let v6: IpAddr = "fd00:10:244:2::44".parse().unwrap();
        assert_eq!(pod_mac(&[v4, v6], 1), "02:00:0a:f4:01:0c");
        assert_eq!(pod_mac(&[v6], 2), "02:02:00:00:00:44");
    }
}
