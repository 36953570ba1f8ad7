//! One watcher per kind (Pods, Namespaces, NetworkPolicies, cluster-wide), each feeding
//! the sync loop. kube's watcher relists on 410 Gone and reconnects with backoff; every
//! (re)list arrives as Init .. InitDone, so the sync loop can replace that kind whole.

use std::sync::mpsc::Sender;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::sync::Msg;
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

async fn watch<K>(api: Api<K>, kind: Kind, wrap: fn(K) -> ObjectData, tx: Sender<Msg>)
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
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Spawns the three watchers on the current tokio runtime.
pub fn spawn(client: Client, tx: Sender<Msg>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
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
