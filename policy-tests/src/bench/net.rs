//! The data-path benchmark's network: one node namespace with a Linux bridge `cni0`
//! (like the harness's `bridge` topology: flannel/bridge CNI, `br_netfilter` on, so
//! bridged pod traffic crosses the node's inet forward hook) and one namespace per bench
//! pod, wired to the bridge by a veth. IPv4 only. Everything goes on drop.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};

use crate::netns;

pub struct Net {
    prefix: String,
    pub node: String,
    /// Pod name -> (namespace, address).
    pub pods: Vec<(String, String, Ipv4Addr)>,
}

impl Net {
    /// Builds the node (bridge address `gateway`/24) and `pods` (name, address/24).
    pub fn build(prefix: &str, gateway: Ipv4Addr, pods: &[(String, Ipv4Addr)]) -> Result<Net> {
        if !std::path::Path::new("/proc/sys/net/bridge").exists() {
            // Loading it is the one change outside our namespaces; the harness needs it too.
            let _ = std::process::Command::new("modprobe")
                .arg("br_netfilter")
                .status();
        }
        if !std::path::Path::new("/proc/sys/net/bridge").exists() {
            bail!("br_netfilter is not loaded and `modprobe br_netfilter` did not load it");
        }
        let _lock = netns::lock();
        let mut net = Net {
            prefix: prefix.to_string(),
            node: format!("{prefix}node"),
            pods: Vec::new(),
        };
        for (i, (name, ip)) in pods.iter().enumerate() {
            net.pods.push((name.clone(), format!("{prefix}p{i}"), *ip));
        }
        let mut all = vec![format!("netns add {}", net.node)];
        all.extend(net.pods.iter().map(|(_, ns, _)| format!("netns add {ns}")));
        netns::ip_batch(None, &all).context("creating the namespaces")?;
        netns::sysctl(
            &net.node,
            &[
                ("net.ipv4.ip_forward".into(), "1"),
                ("net.bridge.bridge-nf-call-iptables".into(), "1"),
            ],
        )?;
        let mut node = vec![
            "link set lo up".to_string(),
            "link add cni0 address 02:fe:00:00:00:01 type bridge".into(),
            format!("addr add {gateway}/24 dev cni0"),
            "link set cni0 up".into(),
        ];
        for (i, (_, ns, _)) in net.pods.iter().enumerate() {
            node.push(format!(
                "link add vb{i} type veth peer name eth0 netns {ns}"
            ));
            node.push(format!("link set vb{i} master cni0 up"));
        }
        netns::ip_batch(Some(&net.node), &node).context("building the node")?;
        for (_, ns, ip) in &net.pods {
            netns::ip_batch(
                Some(ns),
                &[
                    "link set lo up".to_string(),
                    format!("addr add {ip}/24 dev eth0"),
                    "link set eth0 up".into(),
                    format!("route add default via {gateway}"),
                ],
            )
            .with_context(|| format!("building pod namespace {ns}"))?;
        }
        Ok(net)
    }

    /// The namespace of bench pod `name`.
    pub fn pod_ns(&self, name: &str) -> Option<&str> {
        self.pods
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, ns, _)| ns.as_str())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _lock = netns::lock();
        netns::delete_prefixed(&self.prefix);
    }
}

/// A scratch namespace (nothing in it but `lo`), removed on drop.
pub struct Scratch {
    pub name: String,
}

impl Scratch {
    pub fn new(name: String) -> Result<Scratch> {
        let _lock = netns::lock();
        netns::ip_batch(None, &[format!("netns add {name}")])?;
        Ok(Scratch { name })
    }

    pub fn path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/run/netns/{}", self.name))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _lock = netns::lock();
        netns::delete(std::slice::from_ref(&self.name));
    }
}
