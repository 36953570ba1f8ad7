//! The data-path scenario: a generated cluster (`nftpol::synth::cluster`) plus namespace
//! `bench` on the middle node, holding the server pod, the client pods and one intruder
//! pod (allowed by nothing, to prove the rules are enforced). Of the cluster's N
//! policies, the last `selecting` (at most 50) select the server: the first ones allow
//! other peers (pods picked by team and app labels across the cluster, and one ipBlock
//! each) on other ports or the same one, the last one allows the clients, so the clients
//! are allowed by the last rule a linear ruleset would look at. Pure.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::object_from_value;
use nftpol::ruleset::Ruleset;
use nftpol::synth::{cluster, Params};
use serde_json::{json, Value};

/// The namespace of the bench pods.
pub const NAMESPACE: &str = "bench";
/// The port the server listens on and the clients connect to.
pub const PORT: u16 = 8080;
/// How many policies select the server, at most.
pub const SELECTING: usize = 50;
/// Pod addresses the generator never uses on a node (its slots end at 101).
const SERVER_SLOT: u8 = 200;
const INTRUDER_SLOT: u8 = 250;
/// Client slots are 201..=249.
pub const MAX_CLIENTS: usize = 49;

#[derive(Debug, Clone)]
pub struct Scenario {
    /// Every object of the cluster, as the API server would serve it.
    pub values: Vec<Value>,
    pub params: Params,
    pub node: String,
    /// The node's pod /24 (`10.64.K.0`), as the generator assigns it.
    pub subnet: Ipv4Addr,
    pub server: Ipv4Addr,
    pub clients: Vec<Ipv4Addr>,
    pub intruder: Ipv4Addr,
    /// Policies selecting the server; the last of them allows the clients.
    pub selecting: usize,
}

/// The generator's IPv4 address of slot `slot` on node number `node`.
fn node_addr(node: usize, slot: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, (64 + node / 256) as u8, (node % 256) as u8, slot)
}

/// The name (b7)'s `domainNames` rule admits, and its policy.
pub const DOMAIN: &str = "server.bench.example";
pub const DOMAIN_POLICY: &str = "bench-fqdn";

fn pod(name: &str, role: &str, node: &str, ip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"role": role}},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "registry.example/bench:1",
                 "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}
    })
}

/// The name of the `i`th policy selecting the server (sorts in creation order).
pub fn policy_name(i: usize) -> String {
    format!("bench-allow-{i:02}")
}

/// Policy `i` of `selecting`: the last one allows the clients, the others other peers.
fn policy(i: usize, selecting: usize) -> Value {
    let ingress = if i + 1 == selecting {
        json!([{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                "ports": [{"protocol": "TCP", "port": PORT}]}])
    } else {
        // Half on the clients' port, half on a port of their own.
        let ports = if i.is_multiple_of(2) {
            json!([{"protocol": "TCP", "port": PORT}, {"protocol": "TCP", "port": 9000 + i}])
        } else {
            json!([{"protocol": "TCP", "port": 9000 + i}])
        };
        json!([{"from": [
                    {"namespaceSelector": {"matchLabels": {"team": format!("team-{}", i % 20)}},
                     "podSelector": {"matchLabels": {"app": format!("app-{}", i % 8)}}},
                    {"ipBlock": {"cidr": format!("172.16.{i}.0/24")}}],
                "ports": ports}])
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": policy_name(i), "namespace": NAMESPACE},
           "spec": {"podSelector": {"matchLabels": {"role": "server"}}, "policyTypes": ["Ingress"],
                    "ingress": ingress}})
}

/// ClusterNetworkPolicy `i` of the (b3) row: Admin for even `i`, Baseline for odd,
/// priorities spread over 0..1000, actions and peers mixed. Half select the bench
/// namespace (the server's ingress then carries their rules, both tiers), the others
/// generated pods by team and app. None matches the clients or the intruder on the clients' port, so
/// NetworkPolicy still decides the server's ingress: the clients allowed, the intruder
/// denied; what the row measures is the tier lookups each new connection walks first.
pub fn cluster_policy(i: usize) -> Value {
    let tier = if i.is_multiple_of(2) {
        "Admin"
    } else {
        "Baseline"
    };
    let action = ["Deny", "Accept", "Pass"][i % 3];
    let subject = if i % 4 < 2 {
        json!({"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}})
    } else {
        json!({"pods": {"namespaceSelector": {"matchLabels": {"team": format!("team-{}", i % 20)}},
                        "podSelector": {"matchLabels": {"app": format!("app-{}", i % 8)}}}})
    };
    let ingress = json!([
        {"name": "from-a-team", "action": action,
         "from": [{"namespaces": {"matchLabels": {"team": format!("team-{}", (i + 3) % 20)}}}],
         "protocols": [{"tcp": {"destinationPort": {"number": PORT}}},
                       {"tcp": {"destinationPort": {"range": {"start": 9000, "end": 9000 + (i % 50) as i32 + 1}}}}]},
        {"name": "from-an-app", "action": "Deny",
         "from": [{"pods": {"podSelector": {"matchLabels": {"app": format!("app-{}", i % 8)}}}}]}
    ]);
    let egress = json!([
        {"name": "to-a-network", "action": if i.is_multiple_of(3) { "Deny" } else { "Accept" },
         "to": [{"networks": [format!("203.0.{}.0/24", i % 256)]}],
         "protocols": [{"udp": {"destinationPort": {"number": 53}}}]}
    ]);
    json!({"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
           "metadata": {"name": format!("bench-cnp-{i:03}")},
           "spec": {"tier": tier, "priority": (i * 5) % 1000, "subject": subject,
                    "ingress": ingress, "egress": egress}})
}

impl Scenario {
    /// The same scenario with more policies for audit mode (issue 27): one more policy
    /// selecting the server and allowing the clients on [`PORT`] (so each measured
    /// connection is judged twice), and every tenth generated policy. With `audited` they
    /// carry `nftpol.io/mode: audit`; without, the same policies are enforced.
    pub fn with_audit(&self, audited: bool) -> Scenario {
        let mut out = self.clone();
        let mut extra = policy(self.selecting - 1, self.selecting);
        extra["metadata"]["name"] = json!("bench-audited");
        out.values.push(extra);
        let mut generated = 0;
        for v in &mut out.values {
            let name = v["metadata"]["name"].as_str().unwrap_or("");
            if v["kind"] != "NetworkPolicy" {
                continue;
            }
            let pick = name == "bench-audited"
                || (!name.starts_with("bench-") && {
                    generated += 1;
                    generated % 10 == 0
                });
            if pick && audited {
                v["metadata"]["annotations"] = json!({"nftpol.io/mode": "audit"});
            }
        }
        out
    }

    /// The same scenario with the ClusterNetworkPolicy of (b7) and (b8) (issue 29): the
    /// clients' egress to the server on [`PORT`] accepted by a `domainNames` rule for
    /// [`DOMAIN`] (`by_name`; the bench puts the server's address in its learned set) or
    /// by the server's address, and everything else denied: each measured connection is
    /// decided by that rule.
    pub fn with_domain_policy(&self, by_name: bool) -> Scenario {
        let mut out = self.clone();
        let to = if by_name {
            json!([{"domainNames": [DOMAIN]}])
        } else {
            json!([{"networks": [format!("{}/32", self.server)]}])
        };
        out.values.push(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": DOMAIN_POLICY},
            "spec": {"tier": "Admin", "priority": 1,
                "subject": {"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                                     "podSelector": {"matchLabels": {"role": "client"}}}},
                "egress": [
                    {"action": "Accept", "to": to, "protocols": [{"tcp": {"destinationPort": {"number": PORT}}}]},
                    {"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}]}}));
        out
    }

    /// The same scenario with `n` ClusterNetworkPolicies ([`cluster_policy`]) added.
    pub fn with_cluster_policies(&self, n: usize) -> Scenario {
        let mut out = self.clone();
        out.values.extend((0..n).map(cluster_policy));
        out
    }
}

/// The cluster of `pods` generated pods and `policies` policies in all, with `clients`
/// client pods (1..=49).
pub fn build(pods: usize, policies: usize, clients: usize) -> Scenario {
    let selecting = policies.clamp(1, SELECTING);
    let params = Params::new(pods.max(1), policies - selecting.min(policies));
    let mut values = cluster(&params);
    let k = params.nodes() / 2;
    let node = format!("node-{k}");
    let server = node_addr(k, SERVER_SLOT);
    let clients: Vec<Ipv4Addr> = (0..clients.clamp(1, MAX_CLIENTS))
        .map(|i| node_addr(k, SERVER_SLOT + 1 + i as u8))
        .collect();
    let intruder = node_addr(k, INTRUDER_SLOT);
    values.push(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"kubernetes.io/metadata.name": NAMESPACE,
                     "team": "team-bench", "env": "bench"}}}));
    values.push(pod("server", "server", &node, server));
    for (i, ip) in clients.iter().enumerate() {
        values.push(pod(&format!("client-{i}"), "client", &node, *ip));
    }
    values.push(pod("intruder", "intruder", &node, intruder));
    values.extend((0..selecting).map(|i| policy(i, selecting)));
    Scenario {
        values,
        params,
        node,
        subnet: node_addr(k, 0),
        server,
        clients,
        intruder,
        selecting,
    }
}

impl Scenario {
    /// The namespace name and address of every bench pod: server, clients, intruder.
    pub fn pods(&self) -> Vec<(String, Ipv4Addr)> {
        let mut out = vec![("server".to_string(), self.server)];
        out.extend(
            self.clients
                .iter()
                .enumerate()
                .map(|(i, ip)| (format!("client-{i}"), *ip)),
        );
        out.push(("intruder".into(), self.intruder));
        out
    }

    /// The node's bridge address (`.1` of its pod /24).
    pub fn gateway(&self) -> Ipv4Addr {
        let o = self.subnet.octets();
        Ipv4Addr::new(o[0], o[1], o[2], 1)
    }

    /// The index of the whole cluster.
    pub fn index(&self) -> Result<Index> {
        let mut objects = Vec::with_capacity(self.values.len());
        for v in &self.values {
            objects.push(object_from_value(v.clone(), "bench")?.context("a kind nftpol reads")?);
        }
        Ok(Index::from_objects(objects)?)
    }

    /// The node's policy graph and ruleset (what `nftpol::compile` gives).
    pub fn compile(&self) -> Result<(PolicyGraph, Ruleset)> {
        let index = self.index()?;
        let graph = PolicyGraph::build_for(&index, Some(&self.node));
        let ruleset = nftpol::ruleset::build(&graph);
        Ok((graph, ruleset))
    }

    /// Every pod's IPv4 address in the cluster, as numbers.
    pub fn pod_ips(&self) -> std::collections::BTreeSet<u32> {
        self.values
            .iter()
            .filter(|v| v["kind"] == "Pod")
            .flat_map(|v| {
                v["status"]["podIPs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|ip| ip["ip"].as_str()?.parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .collect()
    }

    /// How many generated pods run on the node (the bench pods not counted).
    pub fn local_pods(&self) -> usize {
        let node = json!(self.node);
        self.values
            .iter()
            .filter(|v| v["kind"] == "Pod" && v["spec"]["nodeName"] == node)
            .filter(|v| v["metadata"]["namespace"] != NAMESPACE)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftpol::policy::Direction;
    use nftpol::ruleset::eval::{forward_accepts, Packet};

    fn packet(from: Ipv4Addr, to: Ipv4Addr, port: u16) -> Packet {
        Packet {
            saddr: from.into(),
            daddr: to.into(),
            l4proto: 6,
            dport: port,
        }
    }

    #[test]
    fn server_is_selected_by_the_bench_policies_only() {
        let s = build(300, 80, 2);
        assert_eq!(s.selecting, 50);
        let policies = s
            .values
            .iter()
            .filter(|v| v["kind"] == "NetworkPolicy")
            .count();
        assert_eq!(policies, 80);
        let (graph, rs) = s.compile().unwrap();
        let server = graph.pod(NAMESPACE, "server").unwrap();
        assert!(server.ips.contains(&s.server.into()));
        let iso = server.isolation(Direction::Ingress).unwrap();
        assert_eq!(iso.isolated_by.len(), 50);
        assert!(server.isolation(Direction::Egress).is_none());
        for c in &s.clients {
            assert!(forward_accepts(&rs, &packet(*c, s.server, PORT)).unwrap());
            assert!(!forward_accepts(&rs, &packet(*c, s.server, PORT + 1)).unwrap());
            // Clients are not isolated: replies and other traffic pass.
            assert!(graph.pod(NAMESPACE, "client-0").unwrap().egress.is_none());
        }
        assert!(!forward_accepts(&rs, &packet(s.intruder, s.server, PORT)).unwrap());
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 64, 1, 1));
        assert!(s.local_pods() > 0);
    }

    #[test]
    fn few_policies_still_allow_the_clients() {
        let s = build(100, 1, 3);
        assert_eq!(s.selecting, 1);
        assert_eq!(s.clients.len(), 3);
        let (_, rs) = s.compile().unwrap();
        assert!(forward_accepts(&rs, &packet(s.clients[2], s.server, PORT)).unwrap());
    }
}
