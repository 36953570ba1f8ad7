//! One watcher per kind (Pods, Namespaces, NetworkPolicies, cluster-wide), each feeding
//! the sync loop. kube's watcher relists on 410 Gone and reconnects with backoff; every
//! (re)list arrives as Init .. InitDone, so the sync loop can replace that kind whole.
//! One more watches this node's own Node object (by field selector), for its pod CIDRs.
//! Every message is stamped when its watcher yields it, for the stage metrics.

use std::sync::mpsc::Sender;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Namespace, Node, Pod, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::sync::{Msg, Stamped};
use crate::input::{Kind, Object, ObjectData};

fn object(kind: Kind, data: ObjectData) -> Object {
    Object::new(format!("api:{}", kind.name()), data)
}

fn slim_meta(m: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        labels: m.labels,
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
        let msg = match event {
            Ok(Event::Init) => Msg::Init(kind),
            Ok(Event::InitApply(o)) => Msg::InitApply(object(kind, wrap(o))),
            Ok(Event::InitDone) => Msg::InitDone(kind),
            Ok(Event::Apply(o)) => Msg::Apply(object(kind, wrap(o))),
            Ok(Event::Delete(o)) => {
                let meta = o.meta();
                let ns = if kind == Kind::Namespace {
                    None
                } else {
                    meta.namespace.clone()
                };
                Msg::Delete(kind, ns, meta.name.clone().unwrap_or_default())
            }
            Err(e) => {
                tracing::warn!(kind = kind.name(), error = %e, "watch error; retrying with backoff");
                continue;
            }
        };
        if tx.send(Stamped::now(msg)).is_err() {
            return;
        }
    }
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
                tracing::warn!(node = node.metadata.name.as_deref().unwrap_or(""), field = "spec.podCIDRs", value = %t, error = %e, "invalid pod CIDR; ignored");
                None
            }
        })
        .collect();
    cidrs.sort();
    cidrs.dedup();
    cidrs
}

/// Watches this node's Node object; says its pod CIDRs when the (re)list completes and
/// whenever they change. A deleted Node keeps the last CIDRs (fail closed).
async fn watch_node(api: Api<Node>, name: String, tx: Sender<Stamped>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listed: Vec<ipnet::IpNet> = Vec::new();
    while let Some(event) = stream.next().await {
        let msg = match event {
            Ok(Event::Init) => {
                listed.clear();
                continue;
            }
            Ok(Event::InitApply(n)) => {
                listed = pod_cidrs(&n);
                continue;
            }
            Ok(Event::InitDone) => Msg::NodeCidrs(listed.clone()),
            Ok(Event::Apply(n)) => Msg::NodeCidrs(pod_cidrs(&n)),
            Ok(Event::Delete(_)) => continue,
            Err(e) => {
                tracing::warn!(kind = "Node", error = %e, "watch error; retrying with backoff");
                continue;
            }
        };
        if tx.send(Stamped::now(msg)).is_err() {
            return;
        }
    }
}

/// Spawns the watchers on the current tokio runtime.
pub fn spawn(client: Client, node: &str, tx: Sender<Stamped>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(watch_node(
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
