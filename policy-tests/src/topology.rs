//! The cluster's network, built from namespaces: an underlay bridge joining n1, n2 and
//! ext, pods attached to their node by the real CNI plugins (`cni.rs`), and between the
//! nodes either host-gw routes over the underlay (`bridge`, `routed`) or flannel's VXLAN
//! overlay (`vxlan`, `vxlan.rs`). When the plugins are missing, pods are wired by hand
//! (`handwire.rs`) and the run says so. Pods are added, removed or rebuilt to match each
//! step's cluster; everything is removed on drop.
//!
//! This module decides what exists and runs the commands; it does not program nftables
//! (backends do) nor the Service NAT (`service.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::cluster::{hosts, node_number, Cluster, Pod, NODES};
use crate::cni::{self, Attachment, Plugins};
use crate::handwire;
use crate::netns;
use crate::vxlan;

/// How pods are attached to their node, and how nodes reach each other's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `bridge` plugin (cni0), host-gw routes between nodes (flannel host-gw).
    Bridge,
    /// `ptp` plugin (a veth per pod, /32 routes), host-gw routes (routed CNIs).
    Routed,
    /// `bridge` plugin, flannel's VXLAN overlay between nodes.
    Vxlan,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Bridge, Kind::Routed, Kind::Vxlan];

    fn bridged(self) -> bool {
        matches!(self, Kind::Bridge | Kind::Vxlan)
    }

    fn plugin(self) -> cni::Main {
        match self {
            Kind::Bridge => cni::Main::Bridge { mtu: 1500 },
            Kind::Vxlan => cni::Main::Bridge {
                mtu: vxlan::POD_MTU,
            },
            Kind::Routed => cni::Main::Ptp,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Bridge => "bridge",
            Kind::Routed => "routed",
            Kind::Vxlan => "vxlan",
        })
    }
}

/// What a pod's network was built from; a change in any of it rebuilds the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodNet {
    node: String,
    ips: Vec<IpAddr>,
}

/// A pod as built: its network and, when wired by hand, its veth in the node.
#[derive(Debug, Clone)]
struct Built {
    net: PodNet,
    veth: Option<String>,
}

/// How pods get attached.
enum Wiring {
    Cni(Plugins),
    /// The plugins are missing: `reason` says which.
    Hand {
        reason: String,
        next_veth: u32,
    },
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
    wiring: Wiring,
    /// The external addresses on the outside namespace's `lo` ([`Self::set_external`]).
    external: BTreeSet<IpAddr>,
    torn_down: bool,
}

fn dad_off() -> Vec<(String, &'static str)> {
    vec![
        ("net.ipv6.conf.all.accept_dad".into(), "0"),
        ("net.ipv6.conf.default.accept_dad".into(), "0"),
    ]
}

/// The Service CIDRs, which ext routes via n1 (`service.rs` allocates from them).
pub const SERVICE_CIDRS: [&str; 2] = ["10.96.0.0/16", "fd00:96::/112"];

impl Topology {
    /// Builds the underlay, the nodes and ext (no pods yet). Pods will be attached by the
    /// plugins in `cni_dir`, or by hand when they are missing (see [`Self::hand_wired`]).
    pub fn build(kind: Kind, prefix: String, cni_dir: &Path) -> Result<Topology> {
        let wiring = match Plugins::find(cni_dir, kind.plugin()) {
            Ok(p) => Wiring::Cni(p),
            Err(reason) => Wiring::Hand {
                reason,
                next_veth: 0,
            },
        };
        let mut topo = Topology {
            kind,
            prefix,
            pods: BTreeMap::new(),
            wiring,
            external: BTreeSet::new(),
            torn_down: false,
        };
        topo.build_hosts()
            .with_context(|| format!("building the {kind} topology"))?;
        Ok(topo)
    }

    /// Why pods are wired by hand (the CNI plugins are missing), if they are.
    pub fn hand_wired(&self) -> Option<&str> {
        match &self.wiring {
            Wiring::Cni(_) => None,
            Wiring::Hand { reason, .. } => Some(reason),
        }
    }

    /// The namespace of `n1`, `n2` or `ext`.
    pub fn host_ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// The namespace of the cluster DNS server ([`crate::dns::SERVER_V4`]).
    pub fn dns_ns(&self) -> String {
        format!("{}dns", self.prefix)
    }

    /// The namespace of the outside network: the external addresses of a case's `dns`.
    pub fn outside_ns(&self) -> String {
        format!("{}out", self.prefix)
    }

    /// Puts exactly `want` on the outside namespace's `lo` (each a /32 or /128), so the
    /// external hosts answer there; the nodes route the external ranges to it.
    pub fn set_external(&mut self, want: &BTreeSet<IpAddr>) -> Result<()> {
        let len = |ip: &IpAddr| if ip.is_ipv4() { 32 } else { 128 };
        let mut cmds: Vec<String> = self
            .external
            .difference(want)
            .map(|ip| format!("addr del {ip}/{} dev lo", len(ip)))
            .collect();
        cmds.extend(want.difference(&self.external).map(|ip| match ip {
            IpAddr::V4(_) => format!("addr add {ip}/32 dev lo"),
            IpAddr::V6(_) => format!("addr add {ip}/128 dev lo nodad"),
        }));
        if cmds.is_empty() {
            return Ok(());
        }
        netns::ip_batch(Some(&self.outside_ns()), &cmds).context("external addresses")?;
        self.external = want.clone();
        Ok(())
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
        names.extend([self.dns_ns(), self.outside_ns()]);
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
            self.node_sysctls(node)?;
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
        for (v, ns) in [("vdns", self.dns_ns()), ("vout", self.outside_ns())] {
            u.push(format!("link add {v} type veth peer name eth0 netns {ns}"));
            u.push(format!("link set {v} master br0 up"));
        }
        u.push("link set br0 up".into());
        netns::ip_batch(Some(&underlay), &u)?;
        use crate::dns::{OUTSIDE_V4, OUTSIDE_V6, SERVER_V4, SERVER_V6};
        for (ns, v4, v6) in [
            (self.dns_ns(), SERVER_V4, SERVER_V6),
            (self.outside_ns(), OUTSIDE_V4, OUTSIDE_V6),
        ] {
            netns::ip_batch(Some(&ns), &beyond_commands(v4.into(), v6.into()))?;
        }
        for h in hosts() {
            let cmds = self.host_commands(h.name);
            netns::ip_batch(Some(&self.host_ns(h.name)), &cmds)?;
            if self.kind == Kind::Vxlan && node_number(h.name).is_some() {
                netns::bridge_batch(&self.host_ns(h.name), &vxlan::fdb_commands(h.name))?;
            }
        }
        Ok(())
    }

    fn node_sysctls(&self, node: &str) -> Result<()> {
        let ns = self.host_ns(node);
        let mut keys = vec![
            ("net.ipv4.ip_forward".to_string(), "1"),
            ("net.ipv6.conf.all.forwarding".into(), "1"),
        ];
        if self.kind.bridged() {
            if !std::path::Path::new("/proc/sys/net/bridge").exists() {
                bail!("br_netfilter is not loaded and `modprobe br_netfilter` did not load it: bridged traffic would bypass nftables");
            }
            keys.push(("net.bridge.bridge-nf-call-iptables".into(), "1"));
            keys.push(("net.bridge.bridge-nf-call-ip6tables".into(), "1"));
        }
        netns::sysctl(&ns, &keys)
            .context("bridged traffic must go through the inet forward hook (br_netfilter)")
    }

    /// Addresses, routes and devices of a host: the underlay, the routes to the other
    /// node's pods (host-gw or VXLAN), default routes via ext, and cni0.
    fn host_commands(&self, name: &str) -> Vec<String> {
        let h = crate::cluster::host(name).expect("a host");
        let mut cmds = vec![
            "link set lo up".to_string(),
            format!("addr add {}/24 dev eth0", h.v4),
            format!("addr add {}/64 dev eth0 nodad", h.v6),
            "link set eth0 up".into(),
        ];
        let Some(n) = node_number(name) else {
            // ext: the pod CIDRs via their nodes, host-gw style, and the Service CIDRs
            // via n1, as an external router would have them.
            for node in NODES {
                let m = node_number(node).unwrap();
                let gw = crate::cluster::host(node).unwrap();
                cmds.push(format!("route add 10.244.{m}.0/24 via {}", gw.v4));
                cmds.push(format!("route add fd00:10:244:{m}::/64 via {}", gw.v6));
            }
            let n1 = crate::cluster::host("n1").unwrap();
            cmds.push(format!("route add {} via {}", SERVICE_CIDRS[0], n1.v4));
            cmds.push(format!("route add {} via {}", SERVICE_CIDRS[1], n1.v6));
            return cmds;
        };
        if self.kind == Kind::Vxlan {
            cmds.extend(vxlan::ip_commands(name).expect("a node"));
        } else {
            for node in NODES.iter().filter(|o| **o != name) {
                let m = node_number(node).unwrap();
                let gw = crate::cluster::host(node).unwrap();
                cmds.push(format!("route add 10.244.{m}.0/24 via {}", gw.v4));
                cmds.push(format!("route add fd00:10:244:{m}::/64 via {}", gw.v6));
            }
        }
        // The external ranges of the cases' DNS live in the outside namespace.
        use crate::dns::{EXTERNAL_V4, EXTERNAL_V6, OUTSIDE_V4, OUTSIDE_V6};
        cmds.push(format!(
            "route add {}/{} via {OUTSIDE_V4}",
            EXTERNAL_V4.0, EXTERNAL_V4.1
        ));
        cmds.push(format!(
            "route add {}/{} via {OUTSIDE_V6}",
            EXTERNAL_V6.0, EXTERNAL_V6.1
        ));
        // Nodes reach the rest of the world through ext. For hand-wired routed pods this
        // is also what makes proxy ARP answer for their gateway 169.254.1.1: the node
        // must have a route to it through another interface.
        let ext = crate::cluster::host("ext").unwrap();
        cmds.push(format!("route add default via {}", ext.v4));
        cmds.push(format!("route add default via {}", ext.v6));
        if self.kind.bridged() {
            // Created before the plugin runs, with a fixed MAC: by default a bridge takes
            // the lowest MAC of its ports, so removing a pod would change the pods'
            // gateway under their neighbour caches. The plugin finds it and adds the
            // gateway addresses (isGateway).
            let mtu = match self.kind.plugin() {
                cni::Main::Bridge { mtu } => mtu,
                cni::Main::Ptp => 1500,
            };
            cmds.push(format!(
                "link add cni0 address 02:fe:00:00:00:{n:02x} mtu {mtu} type bridge"
            ));
            if self.hand_wired().is_some() {
                cmds.extend(handwire::bridge_gateway(n));
            }
            cmds.push("link set cni0 up".into());
        }
        cmds
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
            self.detach(id, &built)?;
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
                    let _ = self.detach(&p.id(), &built);
                }
            }
            netns::delete(&add.iter().map(|p| self.pod_ns(&p.id())).collect::<Vec<_>>());
            return Err(e.context("adding pods"));
        }
        Ok(add.iter().map(|p| p.id()).collect())
    }

    fn attachment(net: &PodNet) -> Attachment {
        let node = node_number(&net.node).expect("pods run on nodes");
        Attachment {
            ips: net.ips.clone(),
            node,
            mac: pod_mac(&net.ips, node),
        }
    }

    /// Takes a pod off its node: CNI DEL, or deleting the hand-made veth (which removes
    /// the pair and its routes at once). The namespace itself goes afterwards; it may
    /// outlive `netns del` while sockets still hold it.
    fn detach(&self, id: &str, built: &Built) -> Result<()> {
        let node_ns = self.host_ns(&built.net.node);
        match (&self.wiring, &built.veth) {
            (Wiring::Cni(plugins), _) => {
                plugins.del(&node_ns, &self.pod_ns(id), &Self::attachment(&built.net))
            }
            (Wiring::Hand { .. }, Some(veth)) => {
                netns::ip_batch(Some(&node_ns), &[format!("link del {veth}")])
            }
            (Wiring::Hand { .. }, None) => Ok(()),
        }
    }

    /// Makes the pods' namespaces and wires each to its node: through the CNI plugins, or
    /// by hand (the commands gathered, then run node by node).
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
        let mut hand = handwire::Commands::default();
        for (p, ns) in pods.iter().zip(&names) {
            let net = PodNet {
                node: p.node.clone(),
                ips: p.ips.clone(),
            };
            let node_ns = self.host_ns(&p.node);
            let attachment = Self::attachment(&net);
            let bridged = self.kind.bridged();
            let veth = match &mut self.wiring {
                Wiring::Cni(plugins) => {
                    // Recorded before ADD, so a failed ADD is still undone with DEL.
                    self.pods.insert(p.id(), Built { net, veth: None });
                    plugins.add(&node_ns, ns, &attachment)?;
                    continue;
                }
                Wiring::Hand { next_veth, .. } => {
                    *next_veth += 1;
                    format!("veth{next_veth}")
                }
            };
            handwire::wire(
                &mut hand,
                &handwire::Pod {
                    netns: ns,
                    node_ns: &node_ns,
                    node: attachment.node,
                    veth: &veth,
                    ips: &p.ips,
                    mac: &attachment.mac,
                },
                bridged,
            );
            self.pods.insert(
                p.id(),
                Built {
                    net,
                    veth: Some(veth),
                },
            );
        }
        run_hand(&hand)
    }

    /// Takes every pod off its node (CNI DEL, as a node does when pods go) and removes
    /// every namespace of this topology.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        let pods = std::mem::take(&mut self.pods);
        for (id, built) in &pods {
            if let Err(e) = self.detach(id, built) {
                eprintln!("warning: {e:#}");
            }
        }
        let _lock = netns::lock();
        netns::delete_prefixed(&self.prefix);
        self.torn_down = true;
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The addresses and routes of a namespace beyond the cluster on the underlay (the DNS
/// server, the outside network): its underlay addresses, and the pod CIDRs via their
/// nodes, as ext has them.
fn beyond_commands(v4: IpAddr, v6: IpAddr) -> Vec<String> {
    let mut cmds = vec![
        "link set lo up".to_string(),
        format!("addr add {v4}/24 dev eth0"),
        format!("addr add {v6}/64 dev eth0 nodad"),
        "link set eth0 up".into(),
    ];
    for node in NODES {
        let m = node_number(node).expect("a node");
        let gw = crate::cluster::host(node).expect("a node");
        cmds.push(format!("route add 10.244.{m}.0/24 via {}", gw.v4));
        cmds.push(format!("route add fd00:10:244:{m}::/64 via {}", gw.v6));
    }
    cmds
}

/// Runs the gathered hand-wiring commands: the nodes' links and sysctls, then the pods'.
fn run_hand(hand: &handwire::Commands) -> Result<()> {
    for (node_ns, cmds) in &hand.node {
        netns::ip_batch(Some(node_ns), cmds)?;
    }
    for (node_ns, keys) in &hand.node_sysctls {
        netns::sysctl(node_ns, keys)?;
    }
    for (ns, cmds) in &hand.pod {
        netns::ip_batch(Some(ns), cmds)?;
    }
    Ok(())
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
