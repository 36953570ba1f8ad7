//! What the cluster holds, reduced to what policy needs.
//!
//! The index changes only through [`Index::apply`] and [`Index::delete`], each of which
//! says whether anything changed, so callers recompute nothing needlessly. Every object is
//! reduced on the way in to the fields enforcement reads (labels, addresses, node, phase,
//! hostNetwork, named ports; a validated [`Policy`] or [`ClusterPolicy`]; a Node's labels
//! and addresses). No async code, no nftables.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::cnp::ClusterPolicy;
use crate::error::{Error, ObjectRef, Result};
use crate::input::{Kind, Object, ObjectData};
use crate::policy::{Policy, Protocol};
use crate::selector::{Labels, Selector};

/// A pod as the cluster names it: (namespace, name).
pub type PodKey = (String, String);

/// The label the API server sets on every namespace.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A container port that has a name (only named ones matter: numbered rule ports need no
/// lookup).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub node: Option<String>,
    /// At most one per family, in the order the pod lists them.
    pub ips: Vec<IpAddr>,
    /// The addresses of the node the pod runs on (status.hostIPs).
    pub host_ips: Vec<IpAddr>,
    pub host_network: bool,
    /// Succeeded or Failed.
    pub finished: bool,
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    /// Enforced and usable as a peer: has an address, is not finished, not hostNetwork.
    pub fn is_policy_pod(&self) -> bool {
        !self.ips.is_empty() && !self.finished && !self.host_network
    }

    pub fn key(&self) -> PodKey {
        (self.namespace.clone(), self.name.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntry {
    /// The policy as enforced: the validated one, or its fail-closed remainder.
    pub policy: Policy,
    /// Why the policy could not be compiled, when it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CnpEntry {
    /// The policy as enforced: the validated one, or its fail-closed remainder.
    pub policy: ClusterPolicy,
    /// Why the policy could not be compiled, when it could not.
    pub error: Option<String>,
}

/// A Node, reduced to what policy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    /// The InternalIP and ExternalIP entries of `status.addresses`, sorted: what a
    /// ClusterNetworkPolicy `nodes` peer matches.
    pub addresses: Vec<IpAddr>,
    /// `spec.podCIDRs` (or `spec.podCIDR`).
    pub pod_cidrs: Vec<IpNet>,
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    cnps: BTreeMap<String, CnpEntry>,
    nodes: BTreeMap<String, NodeInfo>,
    namespaces: BTreeMap<String, Labels>,
    pods: BTreeMap<PodKey, PodInfo>,
    policies: BTreeMap<(String, String), PolicyEntry>,
    /// How many pods claim each address (more than one while an address is being
    /// reused). A count, not a list: it is kept for every pod of the cluster.
    claims: HashMap<IpAddr, u32>,
}

fn invalid(obj: &Object, field: impl Into<String>, problem: impl Into<String>) -> Error {
    Error::Invalid {
        source_name: obj.source.clone(),
        object: Box::new(obj.object_ref()),
        field: field.into(),
        problem: problem.into(),
    }
}

/// The labels of a namespace that was never given: only its name label, as the API
/// server sets it on every namespace.
pub fn implied_labels(namespace: &str) -> Labels {
    [(NAME_LABEL.to_string(), namespace.to_string())].into()
}

/// The distinct namespaces of a map keyed by (namespace, name), one seek per namespace.
fn distinct_namespaces<V>(map: &BTreeMap<(String, String), V>) -> impl Iterator<Item = &str> + '_ {
    let mut next = map.keys().next();
    std::iter::from_fn(move || {
        let (ns, _) = next?;
        // `ns + "\0"` is the least string above `ns`: the first key of the next namespace.
        let mut above = ns.clone();
        above.push('\0');
        next = map.range((above, String::new())..).next().map(|(k, _)| k);
        Some(ns.as_str())
    })
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// A NetworkPolicy as the index keeps it: parsed, or when it does not compile enforced
/// fail-closed (its pods isolated, nothing allowed), with the error to report.
fn policy_entry(
    obj: &Object,
    np: &k8s_openapi::api::networking::v1::NetworkPolicy,
) -> (PolicyEntry, Result<()>) {
    match Policy::parse(np) {
        Ok((policy, warnings)) => {
            for w in warnings {
                tracing::warn!(source = %obj.source, object = %obj.object_ref(), field = %w.field, "{}", w.problem);
            }
            (
                PolicyEntry {
                    policy,
                    error: None,
                },
                Ok(()),
            )
        }
        Err(e) => {
            let error = invalid(obj, e.field, e.problem);
            let policy = Policy::fail_closed(np).unwrap_or_else(|| Policy {
                namespace: obj.namespace().unwrap_or("").to_string(),
                name: obj.name().to_string(),
                pod_selector: Selector::everything(),
                ingress: Some(Vec::new()),
                egress: Some(Vec::new()),
                mode: crate::policy::Mode::Enforce,
            });
            let entry = PolicyEntry {
                policy,
                error: Some(error.to_string()),
            };
            (entry, Err(error))
        }
    }
}

/// A ClusterNetworkPolicy as the index keeps it, failing closed like [`policy_entry`].
fn cnp_entry(obj: &Object, value: &serde_json::Value) -> (CnpEntry, Result<()>) {
    match crate::cnp::parse(value) {
        Ok(policy) => (
            CnpEntry {
                policy,
                error: None,
            },
            Ok(()),
        ),
        Err(e) => {
            let error = invalid(obj, e.field, e.problem);
            let entry = CnpEntry {
                policy: crate::cnp::fail_closed(value),
                error: Some(error.to_string()),
            };
            (entry, Err(error))
        }
    }
}

/// `status.podIPs` (at most one address per family, as dual-stack gives), else the
/// older `status.podIP`.
fn pod_ips(obj: &Object, status: &k8s_openapi::api::core::v1::PodStatus) -> Result<Vec<IpAddr>> {
    let mut ips = Vec::new();
    for (i, p) in status.pod_ips.iter().flatten().enumerate() {
        let ip = parse_ip(&p.ip).ok_or_else(|| {
            invalid(
                obj,
                format!("status.podIPs[{i}].ip"),
                format!("{:?} is not an IP address", p.ip),
            )
        })?;
        if let Some(first) = ips.iter().find(|x: &&IpAddr| x.is_ipv4() == ip.is_ipv4()) {
            return Err(invalid(
                obj,
                format!("status.podIPs[{i}].ip"),
                format!(
                    "{ip} is a second {} address (after {first}); a pod has at most one per family",
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
            ));
        }
        ips.push(ip);
    }
    if let Some(ip) = status
        .pod_ip
        .as_deref()
        .filter(|s| !s.is_empty() && ips.is_empty())
    {
        ips.push(
            parse_ip(ip).ok_or_else(|| {
                invalid(obj, "status.podIP", format!("{ip:?} is not an IP address"))
            })?,
        );
    }
    Ok(ips)
}

/// `status.hostIPs`, then `status.hostIP` when it is not among them.
fn host_ips(obj: &Object, status: &k8s_openapi::api::core::v1::PodStatus) -> Result<Vec<IpAddr>> {
    let mut host_ips = Vec::new();
    for (i, h) in status.host_ips.iter().flatten().enumerate() {
        host_ips.push(parse_ip(&h.ip).ok_or_else(|| {
            invalid(
                obj,
                format!("status.hostIPs[{i}].ip"),
                format!("{:?} is not an IP address", h.ip),
            )
        })?);
    }
    if let Some(h) = status.host_ip.as_deref().filter(|s| !s.is_empty()) {
        let ip = parse_ip(h)
            .ok_or_else(|| invalid(obj, "status.hostIP", format!("{h:?} is not an IP address")))?;
        if !host_ips.contains(&ip) {
            host_ips.push(ip);
        }
    }
    Ok(host_ips)
}

fn reduce_pod(obj: &Object, pod: &k8s_openapi::api::core::v1::Pod) -> Result<PodInfo> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let ips = status
        .map(|s| pod_ips(obj, s))
        .transpose()?
        .unwrap_or_default();
    let host_ips = status
        .map(|s| host_ips(obj, s))
        .transpose()?
        .unwrap_or_default();
    let ports = spec
        .map(|s| named_ports(obj, s))
        .transpose()?
        .unwrap_or_default();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    Ok(PodInfo {
        namespace: obj.namespace().unwrap_or("").to_string(),
        name: obj.name().to_string(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        node: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        ips,
        host_ips,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        finished: matches!(phase, "Succeeded" | "Failed"),
        ports,
    })
}

/// The named ports of a pod's containers and init containers (sidecars serve too), each
/// field path as the user wrote it. A name given twice in one container is refused, as the
/// API server does.
fn named_ports(obj: &Object, spec: &k8s_openapi::api::core::v1::PodSpec) -> Result<Vec<NamedPort>> {
    let mut ports = Vec::new();
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.containers[{i}]"), c));
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    for (field, c) in containers.chain(init) {
        let mut names = BTreeSet::new();
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let field = format!("{field}.ports[{pi}]");
            let protocol = match p.protocol.as_deref() {
                None => Protocol::Tcp,
                Some(s) => Protocol::parse_k8s(s).ok_or_else(|| {
                    invalid(
                        obj,
                        format!("{field}.protocol"),
                        format!("unknown protocol {s:?}"),
                    )
                })?,
            };
            if !(1..=65535).contains(&p.container_port) {
                return Err(invalid(
                    obj,
                    format!("{field}.containerPort"),
                    format!("{} is not a port number (1-65535)", p.container_port),
                ));
            }
            let Some(name) = p.name.as_ref().filter(|n| !n.is_empty()) else {
                continue;
            };
            if !names.insert(name.as_str()) {
                return Err(invalid(
                    obj,
                    format!("{field}.name"),
                    format!("port name {name:?} is given twice in this container"),
                ));
            }
            ports.push(NamedPort {
                name: name.clone(),
                protocol,
                port: p.container_port as u16,
            });
        }
    }
    ports.sort();
    ports.dedup();
    Ok(ports)
}

fn reduce_node(obj: &Object, node: &k8s_openapi::api::core::v1::Node) -> Result<NodeInfo> {
    let mut addresses = Vec::new();
    let list = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    for (i, a) in list.into_iter().flatten().enumerate() {
        if !matches!(a.type_.as_str(), "InternalIP" | "ExternalIP") {
            continue;
        }
        addresses.push(parse_ip(&a.address).ok_or_else(|| {
            invalid(
                obj,
                format!("status.addresses[{i}].address"),
                format!(
                    "{:?} is not an IP address ({} must be one)",
                    a.address, a.type_
                ),
            )
        })?);
    }
    addresses.sort();
    addresses.dedup();
    let spec = node.spec.as_ref();
    let mut pod_cidrs = Vec::new();
    let cidrs = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    let single = spec.and_then(|s| s.pod_cidr.clone());
    let (field, cidrs) = if cidrs.is_empty() {
        ("spec.podCIDR", single.into_iter().collect())
    } else {
        ("spec.podCIDRs", cidrs)
    };
    for (i, c) in cidrs.iter().enumerate() {
        let net: IpNet = c.parse().map_err(|_| {
            invalid(
                obj,
                format!("{field}[{i}]"),
                format!("{c:?} is not a valid CIDR"),
            )
        })?;
        pod_cidrs.push(net);
    }
    Ok(NodeInfo {
        name: obj.name().to_string(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        addresses,
        pod_cidrs,
    })
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index from a whole input, refusing duplicates and any invalid object.
    pub fn from_objects(objects: Vec<Object>) -> Result<Index> {
        let mut seen: BTreeMap<(Kind, Option<String>, String), String> = BTreeMap::new();
        let mut index = Index::new();
        for obj in objects {
            let key = (
                obj.kind(),
                obj.namespace().map(str::to_string),
                obj.name().to_string(),
            );
            if let Some(first) = seen.get(&key) {
                return Err(Error::Duplicate {
                    object: Box::new(obj.object_ref()),
                    first: first.clone(),
                    second: obj.source.clone(),
                });
            }
            seen.insert(key, obj.source.clone());
            index.apply(obj)?;
        }
        Ok(index)
    }

    /// Adds or replaces an object. Returns whether anything enforcement reads changed.
    ///
    /// A NetworkPolicy that fails validation is still recorded, as its fail-closed
    /// remainder (the pods it selects stay isolated, nothing is allowed), and the error is
    /// returned. A Pod with an unreadable address is not recorded.
    pub fn apply(&mut self, obj: Object) -> Result<bool> {
        match &obj.data {
            ObjectData::Namespace(ns) => {
                let mut labels = ns.metadata.labels.clone().unwrap_or_default();
                labels.insert(NAME_LABEL.to_string(), obj.name().to_string());
                let old = self
                    .namespaces
                    .insert(obj.name().to_string(), labels.clone());
                Ok(old.as_ref() != Some(&labels))
            }
            ObjectData::Pod(pod) => {
                let info = reduce_pod(&obj, pod)?;
                let old = self.pods.insert(info.key(), info.clone());
                let old_ips = old.as_ref().map(|o| o.ips.as_slice()).unwrap_or(&[]);
                self.claim(&info.ips, old_ips);
                self.unclaim(old_ips, &info.ips);
                Ok(old.as_ref() != Some(&info))
            }
            ObjectData::NetworkPolicy(np) => {
                let key = (
                    obj.namespace().unwrap_or("").to_string(),
                    obj.name().to_string(),
                );
                let (entry, result) = policy_entry(&obj, np);
                let old = self.policies.insert(key, entry.clone());
                let changed = old.as_ref() != Some(&entry);
                result.map(|()| changed)
            }
            ObjectData::ClusterNetworkPolicy(cnp) => {
                let (entry, result) = cnp_entry(&obj, &cnp.value);
                let old = self.cnps.insert(obj.name().to_string(), entry.clone());
                let changed = old.as_ref() != Some(&entry);
                // Said once per version of the policy, not on every resync.
                if changed && entry.policy.has_domain_names() {
                    tracing::warn!(source = %obj.source, object = %obj.object_ref(), "domainNames peers admit only the addresses a node's DNS proxy learns at run time (nftpol run); offline they match nothing");
                }
                result.map(|()| changed)
            }
            ObjectData::Node(node) => {
                let info = reduce_node(&obj, node)?;
                let old = self.nodes.insert(info.name.clone(), info.clone());
                Ok(old.as_ref() != Some(&info))
            }
        }
    }

    /// Removes an object; `namespace` is ignored for Namespaces. Returns whether it was there.
    pub fn delete(&mut self, kind: Kind, namespace: Option<&str>, name: &str) -> bool {
        let key = || (namespace.unwrap_or("").to_string(), name.to_string());
        match kind {
            Kind::Namespace => self.namespaces.remove(name).is_some(),
            Kind::Pod => match self.pods.remove(&key()) {
                Some(old) => {
                    self.unclaim(&old.ips, &[]);
                    true
                }
                None => false,
            },
            Kind::NetworkPolicy => self.policies.remove(&key()).is_some(),
            Kind::ClusterNetworkPolicy => self.cnps.remove(name).is_some(),
            Kind::Node => self.nodes.remove(name).is_some(),
        }
    }

    /// The objects of `kind` that `seen` (keys as [`Index::keys`] gives them) does not
    /// name, as [`Index::delete`] takes them: what the end of a relist removes.
    pub fn stale(
        &self,
        kind: Kind,
        seen: &BTreeSet<(String, String)>,
    ) -> Vec<(Option<String>, String)> {
        self.keys(kind)
            .into_iter()
            .filter(|key| !seen.contains(key))
            .map(|(ns, name)| ((!kind.cluster_scoped()).then_some(ns), name))
            .collect()
    }

    /// The end of a relist of `kind` whose objects were applied as they came: deletes
    /// every object of `kind` it did not name ([`Index::stale`]).
    pub fn reset(&mut self, kind: Kind, seen: &BTreeSet<(String, String)>) {
        for (ns, name) in self.stale(kind, seen) {
            self.delete(kind, ns.as_deref(), &name);
        }
    }

    /// ClusterNetworkPolicies by name.
    pub fn cnps(&self) -> impl Iterator<Item = &CnpEntry> {
        self.cnps.values()
    }

    pub fn cnp(&self, name: &str) -> Option<&CnpEntry> {
        self.cnps.get(name)
    }

    /// Nodes by name.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    /// Counts a pod's claim on each of `ips` it did not already hold (`had`).
    fn claim(&mut self, ips: &[IpAddr], had: &[IpAddr]) {
        for ip in ips.iter().filter(|ip| !had.contains(ip)) {
            *self.claims.entry(*ip).or_default() += 1;
        }
    }

    /// Drops a pod's claim on each of `ips` it no longer holds (not in `keep`).
    fn unclaim(&mut self, ips: &[IpAddr], keep: &[IpAddr]) {
        for ip in ips.iter().filter(|ip| !keep.contains(ip)) {
            if let Some(n) = self.claims.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    self.claims.remove(ip);
                }
            }
        }
    }

    /// How many pods claim `ip`.
    pub fn claims(&self, ip: IpAddr) -> usize {
        self.claims.get(&ip).map_or(0, |n| *n as usize)
    }

    /// The pod, enforced and usable as a peer, that holds `ip`, if any; the whole
    /// cluster's, whichever node asks.
    pub fn policy_pod_with_ip(&self, ip: IpAddr) -> Option<&PodInfo> {
        if self.claims(ip) == 0 {
            return None;
        }
        self.pods
            .values()
            .find(|p| p.is_policy_pod() && p.ips.contains(&ip))
    }

    pub fn pods(&self) -> impl Iterator<Item = &PodInfo> {
        self.pods.values()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodInfo> {
        self.pods.get(&(namespace.to_string(), name.to_string()))
    }

    pub fn policies(&self) -> impl Iterator<Item = &PolicyEntry> {
        self.policies.values()
    }

    /// Pods of one namespace, sorted by name.
    pub fn pods_in_namespace<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a PodInfo> + 'a {
        let namespace = namespace.to_string();
        self.pods
            .range((namespace.clone(), String::new())..)
            .take_while(move |((ns, _), _)| *ns == namespace)
            .map(|(_, p)| p)
    }

    /// Policies of one namespace, sorted by name.
    pub fn policies_in_namespace<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a PolicyEntry> + 'a {
        let namespace = namespace.to_string();
        self.policies
            .range((namespace.clone(), String::new())..)
            .take_while(move |((ns, _), _)| *ns == namespace)
            .map(|(_, p)| p)
    }

    pub fn policy(&self, namespace: &str, name: &str) -> Option<&PolicyEntry> {
        self.policies
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// The labels of a namespace as given (without the implied ones).
    pub fn namespace_labels(&self, name: &str) -> Option<&Labels> {
        self.namespaces.get(name)
    }

    /// The labels selectors see on namespace `name`: its own, or the implied ones when it
    /// was never given.
    pub fn effective_labels(&self, name: &str) -> Cow<'_, Labels> {
        match self.namespaces.get(name) {
            Some(l) => Cow::Borrowed(l),
            None => Cow::Owned(implied_labels(name)),
        }
    }

    /// How many objects of `kind` the index holds (as [`Index::keys`] would list, without
    /// the copy).
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Namespace => self.namespaces.len(),
            Kind::Pod => self.pods.len(),
            Kind::NetworkPolicy => self.policies.len(),
            Kind::ClusterNetworkPolicy => self.cnps.len(),
            Kind::Node => self.nodes.len(),
        }
    }

    /// Keys of every object of a kind: (namespace, name); namespace is empty for Namespaces.
    pub fn keys(&self, kind: Kind) -> Vec<(String, String)> {
        match kind {
            Kind::Namespace => self
                .namespaces
                .keys()
                .map(|n| (String::new(), n.clone()))
                .collect(),
            Kind::Pod => self.pods.keys().cloned().collect(),
            Kind::NetworkPolicy => self.policies.keys().cloned().collect(),
            Kind::ClusterNetworkPolicy => self
                .cnps
                .keys()
                .map(|n| (String::new(), n.clone()))
                .collect(),
            Kind::Node => self
                .nodes
                .keys()
                .map(|n| (String::new(), n.clone()))
                .collect(),
        }
    }

    /// Every namespace given, plus those only referred to by a pod or policy; the latter
    /// carry only the name label, as the API server would set it.
    pub fn namespaces(&self) -> BTreeMap<String, Labels> {
        self.namespaces_borrowed()
            .map(|(name, labels)| (name.to_string(), labels.into_owned()))
            .collect()
    }

    /// [`Index::namespaces`] without copying the given ones, sorted by name. Peers with a
    /// namespaceSelector walk this on every refresh, so it costs one step per namespace,
    /// not one per pod.
    pub fn namespaces_borrowed(&self) -> impl Iterator<Item = (&str, Cow<'_, Labels>)> + '_ {
        let given = self
            .namespaces
            .iter()
            .map(|(n, l)| (n.as_str(), Cow::Borrowed(l)));
        let implied = self
            .implied_namespace_names()
            .map(|name| (name, Cow::Owned(implied_labels(name))));
        let mut all: Vec<(&str, Cow<'_, Labels>)> = given.chain(implied).collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// Namespaces that pods or policies live in but that were never given.
    pub fn implied_namespace_names(&self) -> impl Iterator<Item = &str> + '_ {
        let mut names: Vec<&str> = distinct_namespaces(&self.pods)
            .chain(distinct_namespaces(&self.policies))
            .filter(|ns| !self.namespaces.contains_key(*ns))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }

    /// Namespaces that pods or policies live in but that were never given.
    pub fn implied_namespaces(&self) -> BTreeSet<String> {
        self.implied_namespace_names().map(str::to_string).collect()
    }

    /// Policies (NetworkPolicies, then ClusterNetworkPolicies) that could not be
    /// compiled, with their errors.
    pub fn policy_errors(&self) -> Vec<(ObjectRef, String)> {
        let cnps = self.cnps.values().filter_map(|e| {
            e.error.as_ref().map(|err| {
                (
                    ObjectRef {
                        kind: "ClusterNetworkPolicy".into(),
                        namespace: None,
                        name: e.policy.name.clone(),
                    },
                    err.clone(),
                )
            })
        });
        self.policies
            .values()
            .filter_map(|e| {
                e.error.as_ref().map(|err| {
                    (
                        ObjectRef {
                            kind: "NetworkPolicy".into(),
                            namespace: Some(e.policy.namespace.clone()),
                            name: e.policy.name.clone(),
                        },
                        err.clone(),
                    )
                })
            })
            .chain(cnps)
            .collect()
    }
}
