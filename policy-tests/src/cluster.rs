//! The standard cluster of the case format, the changes a case makes to it, and the
//! Kubernetes objects (Namespaces, Nodes, Pods) that describe the result to nftpol.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::proto::{Family, Probe, Proto};

pub type Labels = BTreeMap<String, String>;

/// The label the API server puts on every namespace.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The nodes of the cluster, in order.
pub const NODES: [&str; 2] = ["n1", "n2"];

/// The label every Node carries with its name, kept when a case replaces its labels.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// A host-network endpoint: a node or the external host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: &'static str,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl Host {
    pub fn addr(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(self.v4),
            Family::V6 => IpAddr::V6(self.v6),
        }
    }
}

/// n1, n2 and ext with their underlay addresses.
pub fn hosts() -> [Host; 3] {
    [
        Host {
            name: "n1",
            v4: Ipv4Addr::new(192, 168, 100, 1),
            v6: "fd00:100::1".parse().unwrap(),
        },
        Host {
            name: "n2",
            v4: Ipv4Addr::new(192, 168, 100, 2),
            v6: "fd00:100::2".parse().unwrap(),
        },
        Host {
            name: "ext",
            v4: Ipv4Addr::new(192, 168, 100, 100),
            v6: "fd00:100::100".parse().unwrap(),
        },
    ]
}

/// The host named `name` (`n1`, `n2`, `ext`).
pub fn host(name: &str) -> Option<Host> {
    hosts().into_iter().find(|h| h.name == name)
}

/// The number of a node (`n1` -> 1), which is also the third octet of its pod CIDR.
pub fn node_number(node: &str) -> Option<u8> {
    match node {
        "n1" => Some(1),
        "n2" => Some(2),
        _ => None,
    }
}

/// Whether `ip` is a usable pod address in `node`'s pod CIDRs (not the network, the
/// gateway `.1`/`::1` or the broadcast address).
pub fn in_pod_cidr(node: &str, ip: IpAddr) -> bool {
    let Some(n) = node_number(node) else {
        return false;
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 10 && o[1] == 244 && o[2] == n && !matches!(o[3], 0 | 1 | 255)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let host = u64::from(s[4]) << 48
                | u64::from(s[5]) << 32
                | u64::from(s[6]) << 16
                | u64::from(s[7]);
            s[..4] == [0xfd00, 0x10, 0x244, u16::from(n)] && host > 1
        }
    }
}

/// A container port a pod declares and serves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "TCP".into()
}

impl PortSpec {
    pub fn proto(&self) -> Option<Proto> {
        Proto::parse_any_case(&self.protocol)
    }
}

/// The six ports every standard pod serves.
pub fn standard_ports() -> Vec<PortSpec> {
    let mut out = Vec::new();
    for port in [80u16, 81] {
        for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
            out.push(PortSpec {
                name: Some(format!("serve-{port}-{proto}")),
                port,
                protocol: proto.k8s().into(),
            });
        }
    }
    out
}

/// The probes nodes and ext answer.
pub fn host_serves(probe: Probe) -> bool {
    matches!(probe.port, 80 | 81)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Labels,
    /// At most one address per family.
    pub ips: Vec<IpAddr>,
    pub ports: Vec<PortSpec>,
}

impl Pod {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn addr(&self, family: Family) -> Option<IpAddr> {
        self.ips
            .iter()
            .copied()
            .find(|ip| Family::of(*ip) == family)
    }

    pub fn serves(&self, probe: Probe) -> bool {
        self.ports
            .iter()
            .any(|p| p.port == probe.port && p.proto() == Some(probe.proto))
    }

    /// The (protocol, port) pairs the pod's server listens on.
    pub fn listen(&self) -> BTreeSet<(Proto, u16)> {
        self.ports
            .iter()
            .filter_map(|p| Some((p.proto()?, p.port)))
            .collect()
    }
}

/// Changes a case makes to the standard cluster (`cluster:`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterChanges {
    /// Add a namespace or replace its labels; `null` removes it and its pods.
    #[serde(default)]
    pub namespaces: BTreeMap<String, Option<NamespaceChange>>,
    /// Add a pod or change one (`ns/name`); `null` removes it.
    #[serde(default)]
    pub pods: BTreeMap<String, Option<PodChange>>,
    /// Replace a node's labels (`n1`, `n2`); its hostname label is kept.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeChange>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeChange {
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceChange {
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodChange {
    pub node: Option<String>,
    pub labels: Option<Labels>,
    pub ip: Option<Vec<String>>,
    pub ports: Option<Vec<PortSpec>>,
}

/// Namespaces, nodes and pods: the standard cluster with a case's changes applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub namespaces: BTreeMap<String, Labels>,
    /// The labels of each node's Node object, keyed by node name.
    pub nodes: BTreeMap<String, Labels>,
    /// Keyed by `ns/name`.
    pub pods: BTreeMap<String, Pod>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Cluster {
    /// Namespaces x, y, z with pods a, b (on n1) and c (on n2) in each.
    pub fn standard() -> Cluster {
        let mut namespaces = BTreeMap::new();
        let mut pods = BTreeMap::new();
        for (d, ns) in ["x", "y", "z"].into_iter().enumerate() {
            namespaces.insert(ns.to_string(), labels(&[("ns", ns), (NAME_LABEL, ns)]));
            for (p, name) in ["a", "b", "c"].into_iter().enumerate() {
                let node = if name == "c" { 2 } else { 1 };
                let (d, p) = (d + 1, p + 1);
                let v4 = Ipv4Addr::new(10, 244, node, (d * 10 + p) as u8);
                let v6: Ipv6Addr = format!("fd00:10:244:{node}::{d}{p}").parse().unwrap();
                let pod = Pod {
                    namespace: ns.into(),
                    name: name.into(),
                    node: format!("n{node}"),
                    labels: labels(&[("pod", name)]),
                    ips: vec![IpAddr::V4(v4), IpAddr::V6(v6)],
                    ports: standard_ports(),
                };
                pods.insert(pod.id(), pod);
            }
        }
        let nodes = NODES
            .iter()
            .map(|n| {
                let labels = labels(&[(HOSTNAME_LABEL, n), ("node-role", "worker")]);
                (n.to_string(), labels)
            })
            .collect();
        Cluster {
            namespaces,
            nodes,
            pods,
        }
    }

    /// The standard cluster with `changes` applied, checked against the format's rules.
    pub fn with_changes(changes: &ClusterChanges) -> Result<Cluster, String> {
        let mut cluster = Cluster::standard();
        cluster.change_namespaces(&changes.namespaces)?;
        cluster.change_nodes(&changes.nodes)?;
        for (key, change) in &changes.pods {
            cluster.change_pod(key, change.as_ref())?;
        }
        cluster.check_unique_addresses()?;
        Ok(cluster)
    }

    fn change_namespaces(
        &mut self,
        namespaces: &BTreeMap<String, Option<NamespaceChange>>,
    ) -> Result<(), String> {
        let cluster = self;
        for (ns, change) in namespaces {
            check_name(ns, "namespace")?;
            match change {
                None => {
                    if cluster.namespaces.remove(ns).is_none() {
                        return Err(format!(
                            "cluster.namespaces.{ns}: removes a namespace that does not exist"
                        ));
                    }
                    cluster.pods.retain(|_, p| &p.namespace != ns);
                }
                Some(c) => {
                    let mut labels = c.labels.clone();
                    labels.insert(NAME_LABEL.into(), ns.clone());
                    cluster.namespaces.insert(ns.clone(), labels);
                }
            }
        }
        Ok(())
    }

    fn change_nodes(&mut self, nodes: &BTreeMap<String, NodeChange>) -> Result<(), String> {
        let cluster = self;
        for (node, change) in nodes {
            if node_number(node).is_none() {
                return Err(format!(
                    "cluster.nodes.{node}: {node:?} is not a node (n1 or n2)"
                ));
            }
            let mut labels = change.labels.clone();
            labels.insert(HOSTNAME_LABEL.into(), node.clone());
            cluster.nodes.insert(node.clone(), labels);
        }
        Ok(())
    }

    /// Adds, changes (`Some`) or removes (`None`) pod `key` (`ns/name`).
    fn change_pod(&mut self, key: &str, change: Option<&PodChange>) -> Result<(), String> {
        let field = format!("cluster.pods.{key}");
        let Some((ns, name)) = key.split_once('/') else {
            return Err(format!("{field}: a pod is named ns/name"));
        };
        check_name(ns, "namespace")
            .and_then(|_| check_name(name, "pod"))
            .map_err(|e| format!("{field}: {e}"))?;
        let Some(change) = change else {
            if self.pods.remove(key).is_none() {
                return Err(format!("{field}: removes a pod that does not exist"));
            }
            return Ok(());
        };
        if !self.namespaces.contains_key(ns) {
            return Err(format!("{field}: namespace {ns} does not exist"));
        }
        let existing = self.pods.get(key).cloned();
        let is_new = existing.is_none();
        let mut pod = existing.unwrap_or_else(|| Pod {
            namespace: ns.into(),
            name: name.into(),
            node: String::new(),
            labels: Labels::new(),
            ips: Vec::new(),
            ports: standard_ports(),
        });
        if let Some(node) = &change.node {
            if node_number(node).is_none() {
                return Err(format!("{field}.node: {node:?} is not a node (n1 or n2)"));
            }
            if !is_new && *node != pod.node && change.ip.is_none() {
                return Err(format!("{field}: moving a pod to another node requires ip"));
            }
            pod.node = node.clone();
        } else if is_new {
            return Err(format!("{field}: a new pod needs node"));
        }
        if let Some(labels) = &change.labels {
            pod.labels = labels.clone();
        }
        match &change.ip {
            Some(ips) => {
                pod.ips = parse_ips(ips, &pod.node).map_err(|e| format!("{field}.ip: {e}"))?
            }
            None if is_new => return Err(format!("{field}: a new pod needs ip")),
            None => {}
        }
        if let Some(ports) = &change.ports {
            check_ports(ports).map_err(|e| format!("{field}.ports: {e}"))?;
            pod.ports = ports.clone();
        }
        self.pods.insert(key.to_string(), pod);
        Ok(())
    }

    /// No two pods share an address.
    fn check_unique_addresses(&self) -> Result<(), String> {
        let cluster = self;
        let mut seen = BTreeMap::new();
        for pod in cluster.pods.values() {
            for ip in &pod.ips {
                if let Some(other) = seen.insert(*ip, pod.id()) {
                    return Err(format!(
                        "pods {other} and {} both have address {ip}",
                        pod.id()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Namespaces, Nodes, then Pods, as the API server would return them.
    pub fn objects(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (name, labels) in &self.namespaces {
            out.push(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": labels},
            }));
        }
        for (name, labels) in &self.nodes {
            out.push(node_object(name, labels));
        }
        for pod in self.pods.values() {
            let node = host(&pod.node).expect("pods run on known nodes");
            let ports: Vec<Value> = pod
                .ports
                .iter()
                .map(|p| {
                    let mut v = json!({"containerPort": p.port, "protocol": p.protocol.to_ascii_uppercase()});
                    if let Some(name) = &p.name {
                        v["name"] = json!(name);
                    }
                    v
                })
                .collect();
            let pod_ips: Vec<Value> = pod
                .ips
                .iter()
                .map(|ip| json!({"ip": ip.to_string()}))
                .collect();
            let mut status = json!({
                "phase": "Running",
                "podIPs": pod_ips,
                "hostIP": node.v4.to_string(),
                "hostIPs": [{"ip": node.v4.to_string()}, {"ip": node.v6.to_string()}],
            });
            if let Some(ip) = pod.ips.first() {
                status["podIP"] = json!(ip.to_string());
            }
            out.push(json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": pod.labels},
                "spec": {
                    "nodeName": pod.node,
                    "containers": [{"name": "serve", "image": "policy-tests/serve", "ports": ports}],
                },
                "status": status,
            }));
        }
        out
    }

    /// A matrix name: `ns/pod`, `n1`, `n2` or `ext`.
    pub fn endpoint(&self, name: &str) -> Option<Endpoint<'_>> {
        if name.contains('/') {
            self.pods.get(name).map(Endpoint::Pod)
        } else {
            host(name).map(Endpoint::Host)
        }
    }
}

/// A Node as the API server shows it: both underlay addresses as InternalIP (what a
/// ClusterNetworkPolicy `nodes` peer matches), its pod CIDRs, Ready.
fn node_object(name: &str, labels: &Labels) -> Value {
    let h = host(name).expect("nodes are known hosts");
    let n = node_number(name).expect("nodes are numbered");
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "podCIDR": format!("10.244.{n}.0/24"),
            "podCIDRs": [format!("10.244.{n}.0/24"), format!("fd00:10:244:{n}::/64")],
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": h.v4.to_string()},
                {"type": "InternalIP", "address": h.v6.to_string()},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

/// One row or column of a matrix.
#[derive(Debug, Clone)]
pub enum Endpoint<'a> {
    Pod(&'a Pod),
    Host(Host),
}

impl Endpoint<'_> {
    pub fn addr(&self, family: Family) -> Option<IpAddr> {
        match self {
            Endpoint::Pod(p) => p.addr(family),
            Endpoint::Host(h) => Some(h.addr(family)),
        }
    }

    pub fn serves(&self, probe: Probe) -> bool {
        match self {
            Endpoint::Pod(p) => p.serves(probe),
            Endpoint::Host(_) => host_serves(probe),
        }
    }

    /// How `nftpol explain` names it: `ns/pod`, or a host's underlay address.
    pub fn explain_name(&self, family: Family) -> String {
        match self {
            Endpoint::Pod(p) => p.id(),
            Endpoint::Host(h) => h.addr(family).to_string(),
        }
    }
}

fn check_name(name: &str, what: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid {what} name"))
    }
}

fn parse_ips(texts: &[String], node: &str) -> Result<Vec<IpAddr>, String> {
    if texts.is_empty() || texts.len() > 2 {
        return Err("one IPv4 and/or one IPv6 address".into());
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for t in texts {
        let ip: IpAddr = t
            .parse()
            .map_err(|_| format!("{t:?} is not an IP address"))?;
        if ips.iter().any(|x| x.is_ipv4() == ip.is_ipv4()) {
            return Err("at most one address per family".into());
        }
        if !in_pod_cidr(node, ip) {
            return Err(format!(
                "{ip} is not a usable address in the pod CIDRs of {node}"
            ));
        }
        ips.push(ip);
    }
    Ok(ips)
}

fn check_ports(ports: &[PortSpec]) -> Result<(), String> {
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for p in ports {
        let proto = p
            .proto()
            .ok_or_else(|| format!("unknown protocol {:?}", p.protocol))?;
        if p.port == 0 {
            return Err("port 0".into());
        }
        if !seen.insert((proto, p.port)) {
            return Err(format!("{}/{} declared twice", proto, p.port));
        }
        if let Some(name) = &p.name {
            if !names.insert(name.clone()) {
                return Err(format!("port name {name:?} declared twice"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(yaml: &str) -> ClusterChanges {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn standard_addresses() {
        let c = Cluster::standard();
        assert_eq!(c.pods.len(), 9);
        let xa = &c.pods["x/a"];
        assert_eq!(xa.node, "n1");
        assert_eq!(
            xa.ips,
            vec![
                "10.244.1.11".parse::<IpAddr>().unwrap(),
                "fd00:10:244:1::11".parse().unwrap()
            ]
        );
        assert_eq!(
            c.pods["z/c"].ips[0],
            "10.244.2.33".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            c.pods["y/b"].ips[1],
            "fd00:10:244:1::22".parse::<IpAddr>().unwrap()
        );
        assert_eq!(c.namespaces["y"][NAME_LABEL], "y");
        assert!(xa.serves("sctp/81".parse().unwrap()));
        assert!(!xa.serves("tcp/82".parse().unwrap()));
    }

    #[test]
    fn apply_changes() {
        let c = Cluster::with_changes(&changes(
            r#"
namespaces:
  w: {labels: {ns: w, team: blue}}
  y: {labels: {other: "1"}}
pods:
  w/d: {node: n2, labels: {pod: d}, ip: [10.244.2.44, "fd00:10:244:2::44"]}
  x/b: {labels: {pod: b, tier: db}}
  y/b: {ports: [{name: web, port: 8080, protocol: TCP}]}
  z/c: null
"#,
        ))
        .unwrap();
        assert_eq!(c.namespaces["w"][NAME_LABEL], "w");
        assert_eq!(c.namespaces["y"].get("ns"), None);
        assert_eq!(c.namespaces["y"][NAME_LABEL], "y");
        assert_eq!(c.pods["w/d"].node, "n2");
        assert_eq!(c.pods["x/b"].labels["tier"], "db");
        assert!(c.pods["y/b"].serves("tcp/8080".parse().unwrap()));
        assert!(!c.pods["y/b"].serves("tcp/80".parse().unwrap()));
        assert!(!c.pods.contains_key("z/c"));
        assert_eq!(c.nodes["n1"]["node-role"], "worker");
        let c = Cluster::with_changes(&changes("nodes: {n2: {labels: {zone: b}}}")).unwrap();
        assert_eq!(
            c.nodes["n2"],
            labels(&[(HOSTNAME_LABEL, "n2"), ("zone", "b")])
        );
        assert_eq!(c.nodes["n1"].len(), 2);
    }

    #[test]
    fn bad_changes() {
        for (yaml, want) in [
            (
                "pods: {w/d: {node: n1, ip: [10.244.1.44]}}",
                "namespace w does not exist",
            ),
            (
                "pods: {x/d: {node: n1, ip: [10.244.2.44]}}",
                "not a usable address",
            ),
            (
                "pods: {x/d: {node: n1, ip: [10.244.1.1]}}",
                "not a usable address",
            ),
            ("pods: {x/d: {node: n1}}", "needs ip"),
            ("pods: {x/d: {ip: [10.244.1.44]}}", "needs node"),
            ("pods: {x/a: {node: n2}}", "requires ip"),
            ("pods: {x/d: {node: n3, ip: [10.244.1.44]}}", "not a node"),
            (
                "pods: {x/d: {node: n1, ip: [10.244.1.11]}}",
                "both have address",
            ),
            ("pods: {x/q: null}", "does not exist"),
            ("nodes: {n3: {labels: {a: b}}}", "cluster.nodes.n3"),
            (
                "pods: {x/a: {ports: [{port: 80, protocol: ICMP}]}}",
                "unknown protocol",
            ),
        ] {
            let err = Cluster::with_changes(&changes(yaml)).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn objects_for_nftpol() {
        let objs = Cluster::standard().objects();
        assert_eq!(objs.len(), 14);
        let node = objs
            .iter()
            .find(|o| o["kind"] == "Node" && o["metadata"]["name"] == "n2")
            .unwrap();
        assert_eq!(node["metadata"]["labels"][HOSTNAME_LABEL], "n2");
        assert_eq!(node["status"]["addresses"][1]["address"], "fd00:100::2");
        assert_eq!(node["status"]["addresses"][0]["type"], "InternalIP");
        assert_eq!(node["spec"]["podCIDRs"][1], "fd00:10:244:2::/64");
        let pod = objs
            .iter()
            .find(|o| o["kind"] == "Pod" && o["metadata"]["name"] == "c")
            .unwrap();
        assert_eq!(pod["spec"]["nodeName"], "n2");
        assert_eq!(pod["status"]["hostIP"], "192.168.100.2");
        assert_eq!(pod["status"]["hostIPs"][1]["ip"], "fd00:100::2");
        assert_eq!(
            pod["spec"]["containers"][0]["ports"][0]["name"],
            "serve-80-tcp"
        );
        for o in objs.into_iter().filter(crate::kinds::for_nftpol) {
            let obj = nftpol::input::object_from_value(o, "test")
                .unwrap()
                .unwrap();
            assert!(!obj.name().is_empty());
        }
    }

    #[test]
    fn pod_cidrs() {
        assert!(in_pod_cidr("n1", "10.244.1.11".parse().unwrap()));
        assert!(!in_pod_cidr("n1", "10.244.1.255".parse().unwrap()));
        assert!(in_pod_cidr("n2", "fd00:10:244:2::44".parse().unwrap()));
        assert!(!in_pod_cidr("n2", "fd00:10:244:2::1".parse().unwrap()));
        assert!(!in_pod_cidr("n1", "fd00:10:244:2::44".parse().unwrap()));
    }
}
