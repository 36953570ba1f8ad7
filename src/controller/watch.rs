//! One watcher per kind (Pods, Namespaces, NetworkPolicies, Nodes, cluster-wide; and
//! ClusterNetworkPolicies, found by discovery: [`super::cnp_watch`]), each feeding the
//! sync loop objects slimmed to what enforcement reads. kube's watcher relists on 410
//! Gone and reconnects with backoff; every (re)list arrives as Init .. InitDone, so the
//! sync loop can replace that kind whole. The Node watcher also says this node's pod
//! CIDRs (from its own Node object). Every message is stamped when its watcher yields
//! it, for the stage metrics. Nothing here interprets an object.

use std::sync::mpsc::Sender;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, Namespace, Node, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::events::message;
use super::sync::{Msg, Stamped};
use crate::input::{Kind, Object, ObjectData};

pub(super) fn object(kind: Kind, data: ObjectData) -> Object {
    Object::new(format!("api:{}", kind.name()), data)
}

/// Name, namespace, labels, and of the annotations only a policy's mode (the rest, the
/// last-applied configuration above all, is most of an object's bytes).
fn slim_meta(m: ObjectMeta) -> ObjectMeta {
    let annotations = m.annotations.and_then(|mut a| {
        let mode = a.remove_entry(crate::policy::MODE_ANNOTATION)?;
        Some(std::iter::once(mode).collect())
    });
    ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        labels: m.labels,
        annotations,
        ..Default::default()
    }
}

/// Keeps only what enforcement reads (labels, node, addresses, phase, hostNetwork,
/// container ports), so a large cluster costs little memory on the way to the index.
fn slim_pod(p: Pod) -> ObjectData {
    let containers = |cs: Vec<Container>| -> Vec<Container> {
        cs.into_iter()
            .map(|c| Container {
                name: c.name,
                ports: c.ports,
                ..Default::default()
            })
            .collect()
    };
    ObjectData::Pod(Box::new(Pod {
        metadata: slim_meta(p.metadata),
        spec: p.spec.map(|s| PodSpec {
            node_name: s.node_name,
            host_network: s.host_network,
            containers: containers(s.containers),
            init_containers: s.init_containers.map(containers),
            ..Default::default()
        }),
        status: p.status.map(|s| PodStatus {
            phase: s.phase,
            pod_ip: s.pod_ip,
            pod_ips: s.pod_ips,
            host_ip: s.host_ip,
            host_ips: s.host_ips,
            ..Default::default()
        }),
    }))
}

fn slim_namespace(n: Namespace) -> ObjectData {
    ObjectData::Namespace(Namespace {
        metadata: slim_meta(n.metadata),
        ..Default::default()
    })
}

fn slim_policy(p: NetworkPolicy) -> ObjectData {
    ObjectData::NetworkPolicy(NetworkPolicy {
        metadata: slim_meta(p.metadata),
        spec: p.spec,
    })
}

async fn watch<K>(api: Api<K>, kind: Kind, wrap: fn(K) -> ObjectData, tx: Sender<Stamped>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let Some(msg) = message(kind, event, |o| Some(object(kind, wrap(o)))) else {
            continue;
        };
        if tx.send(Stamped::now(msg)).is_err() {
            return;
        }
    }
}

/// Keeps what enforcement reads of a Node: its name and labels (`nodes` peers select
/// by them), `status.addresses` (what such a peer matches) and its pod CIDRs. A Node's
/// status (conditions, images, volumes) is most of its size: 5,000 of them whole would
/// cost far more than the index keeps.
fn slim_node(n: Node) -> ObjectData {
    ObjectData::Node(Box::new(Node {
        metadata: slim_meta(n.metadata),
        spec: n.spec.map(|s| NodeSpec {
            pod_cidr: s.pod_cidr,
            pod_cidrs: s.pod_cidrs,
            ..Default::default()
        }),
        status: n.status.map(|s| NodeStatus {
            addresses: s.addresses,
            ..Default::default()
        }),
    }))
}

/// `spec.podCIDRs` (or the older `spec.podCIDR`) of a Node; unparsable entries are
/// logged and left out.
fn pod_cidrs(node: &Node) -> Vec<ipnet::IpNet> {
    let spec = node.spec.as_ref();
    let texts: Vec<&String> = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
        Some(list) if !list.is_empty() => list.iter().collect(),
        _ => spec.and_then(|s| s.pod_cidr.as_ref()).into_iter().collect(),
    };
    let mut cidrs: Vec<ipnet::IpNet> = texts
        .into_iter()
        .filter_map(|t| match t.parse::<ipnet::IpNet>() {
            Ok(c) => Some(c.trunc()),
            Err(e) => {
                tracing::warn!(node = node.metadata.name.as_deref().unwrap_or(""), field = "spec.podCIDRs", value = %t, error = %crate::error::Chain(&e), "invalid pod CIDR; ignored");
                None
            }
        })
        .collect();
    cidrs.sort();
    cidrs.dedup();
    cidrs
}

/// Watches every Node, for the index (`nodes` peers), and says this node's pod CIDRs
/// after each (re)list completes and whenever they change. A deleted Node keeps the
/// last CIDRs (fail closed).
async fn watch_nodes(api: Api<Node>, own: String, tx: Sender<Stamped>) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // This node's CIDRs in the list under way, and the ones last said.
    let mut listed: Vec<ipnet::IpNet> = Vec::new();
    let mut said: Option<Vec<ipnet::IpNet>> = None;
    while let Some(event) = stream.next().await {
        let is_own = |n: &Node| n.metadata.name.as_deref() == Some(own.as_str());
        let mut cidrs = None;
        match &event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(n)) if is_own(n) => listed = pod_cidrs(n),
            Ok(Event::InitDone) => cidrs = Some(listed.clone()),
            Ok(Event::Apply(n)) if is_own(n) => {
                let now = pod_cidrs(n);
                if said.as_ref() != Some(&now) {
                    cidrs = Some(now);
                }
            }
            _ => {}
        }
        let Some(msg) = message(Kind::Node, event, |n| {
            Some(object(Kind::Node, slim_node(n)))
        }) else {
            continue;
        };
        // After the list's InitDone: the sync loop has every Node when it takes them.
        let mut out = vec![msg];
        if let Some(c) = cidrs {
            said = Some(c.clone());
            out.push(Msg::NodeCidrs(c));
        }
        for msg in out {
            if tx.send(Stamped::now(msg)).is_err() {
                return;
            }
        }
    }
}

/// Spawns the watchers on the current tokio runtime.
pub fn spawn(
    client: Client,
    node: &str,
    discovery_every: std::time::Duration,
    tx: Sender<Stamped>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(super::cnp_watch::watch(
            client.clone(),
            discovery_every,
            tx.clone(),
        )),
        tokio::spawn(watch_nodes(
            Api::<Node>::all(client.clone()),
            node.to_string(),
            tx.clone(),
        )),
        tokio::spawn(watch(
            Api::<Namespace>::all(client.clone()),
            Kind::Namespace,
            slim_namespace,
            tx.clone(),
        )),
        tokio::spawn(watch(
            Api::<Pod>::all(client.clone()),
            Kind::Pod,
            slim_pod,
            tx.clone(),
        )),
        tokio::spawn(watch(
            Api::<NetworkPolicy>::all(client),
            Kind::NetworkPolicy,
            slim_policy,
            tx,
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Node as a kubelet reports it: most of it is status nftpol never reads.
    fn kubelet_node() -> Node {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "labels": {"role": "infra"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "providerID": "x://n1",
                "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.1"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "images": [{"names": ["registry.example/app:1"], "sizeBytes": 1}],
                "nodeInfo": {"kubeletVersion": "v1.34.0", "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "",
                    "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux", "osImage": "", "systemUUID": ""}}
        }))
        .unwrap()
    }

    #[test]
    fn a_slim_node_keeps_what_enforcement_reads_only() {
        let full = kubelet_node();
        let ObjectData::Node(slim) = slim_node(full.clone()) else {
            panic!("not a Node")
        };
        assert_eq!(slim.metadata.name, full.metadata.name);
        assert_eq!(slim.metadata.labels, full.metadata.labels);
        assert!(slim.metadata.annotations.is_none() && slim.metadata.managed_fields.is_none());
        let (spec, status) = (slim.spec.clone().unwrap(), slim.status.clone().unwrap());
        assert_eq!(spec.pod_cidrs, full.spec.as_ref().unwrap().pod_cidrs);
        assert!(spec.taints.is_none() && spec.provider_id.is_none());
        assert_eq!(status.addresses, full.status.as_ref().unwrap().addresses);
        assert!(
            status.conditions.is_none() && status.images.is_none() && status.node_info.is_none()
        );
        // The index reads the same from either.
        let mut whole = crate::index::Index::new();
        let mut slimmed = crate::index::Index::new();
        whole
            .apply(object(Kind::Node, ObjectData::Node(Box::new(full))))
            .unwrap();
        slimmed
            .apply(object(Kind::Node, ObjectData::Node(slim)))
            .unwrap();
        assert_eq!(whole.node("n1"), slimmed.node("n1"));
        assert!(whole.node("n1").is_some());
    }
}
