//! The ClusterNetworkPolicy watcher: which version of the CRD to watch (discovery), the
//! watch itself as `DynamicObject`s read through [`crate::input::object_from_value`], and
//! re-checking discovery so that a CRD installed, upgraded or removed later is followed.
//! Owns no state of the cluster and decides nothing about a policy: validation (and
//! fail-closed for a policy that fails it) is the index's.
//!
//! ```text
//! discovery --none--> empty list (said once) ... every `every`: discovery again
//!           --v1beta1 (else v1alpha2)--> watch; every `every`: discovery again,
//!                                        another answer --> watch that (a relist)
//! ```

use std::sync::mpsc::Sender;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::discovery::Discovery;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::{json, Value};

use super::events::message;
use super::sync::{Msg, Stamped};
use crate::input::{Kind, Object};

/// The network-policy-api group.
pub const GROUP: &str = "policy.networking.k8s.io";
const KIND: &str = "ClusterNetworkPolicy";
/// The versions read, most preferred first (v1beta1 is the storage version from v0.3.0;
/// the schemas are the same).
pub const VERSIONS: [&str; 2] = ["v1beta1", "v1alpha2"];
/// The most time between two attempts when discovery itself fails.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The resource to watch: the first of [`VERSIONS`] the API server serves; `None` when
/// it serves neither (the CRD is not installed).
async fn discover(client: &Client) -> Result<Option<ApiResource>, kube::Error> {
    let discovery = Discovery::new(client.clone())
        .filter(&[GROUP])
        .run()
        .await?;
    let Some(group) = discovery.get(GROUP) else {
        return Ok(None);
    };
    Ok(VERSIONS.iter().find_map(|v| {
        group
            .versioned_resources(v)
            .into_iter()
            .map(|(ar, _)| ar)
            .find(|ar| ar.kind == KIND)
    }))
}

/// A watched object as nftpol reads it: the served apiVersion and kind (list items need
/// not carry them), the name and the mode annotation (all of the metadata enforcement
/// reads) and the spec. A policy whose spec is invalid still converts: the index enforces
/// it fail-closed.
fn to_object(ar: &ApiResource, o: DynamicObject) -> Option<Object> {
    let name = o.metadata.name.clone().unwrap_or_default();
    let mut metadata = json!({"name": name});
    let mode = o
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::policy::MODE_ANNOTATION));
    if let Some(mode) = mode {
        metadata["annotations"] = json!({crate::policy::MODE_ANNOTATION: mode});
    }
    let mut value = json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": metadata,
    });
    if let (Value::Object(v), Value::Object(mut data)) = (&mut value, o.data) {
        if let Some(spec) = data.remove("spec") {
            v.insert("spec".into(), spec);
        }
    }
    match crate::input::object_from_value(value, "api:ClusterNetworkPolicy") {
        Ok(Some(obj)) => Some(obj),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(kind = KIND, name = %name, error = %crate::error::Chain(&e), "cannot read the object; ignored");
            None
        }
    }
}

/// What the watcher last told the sync loop.
#[derive(Debug, Clone, PartialEq)]
enum Served {
    /// Nothing yet.
    Unknown,
    /// Not served: an empty list was sent.
    Missing,
    /// This apiVersion is watched.
    Watching(String),
}

/// Watches ClusterNetworkPolicies for as long as the sync loop listens. When the CRD is
/// not installed, the kind is listed empty (so the sync loop does not wait for it and
/// forgets the policies of a CRD that was removed), said once at info level, and
/// discovery is asked again every `every`.
pub async fn watch(client: Client, every: Duration, tx: Sender<Stamped>) {
    let mut served = Served::Unknown;
    // The sync loop has had a list of the kind (possibly empty): it waits for nothing.
    let mut listed = false;
    let mut retry = Duration::from_millis(250);
    loop {
        match discover(&client).await {
            Ok(Some(ar)) => {
                retry = Duration::from_millis(250);
                served = Served::Watching(ar.api_version.clone());
                tracing::info!(kind = KIND, api_version = %ar.api_version, "watching ClusterNetworkPolicies");
                if !watch_version(&client, &ar, every, &tx, &mut listed).await {
                    return;
                }
            }
            Ok(None) => {
                retry = Duration::from_millis(250);
                if served != Served::Missing {
                    tracing::info!(group = GROUP, versions = ?VERSIONS, recheck_s = every.as_secs_f64(), "the API server does not serve ClusterNetworkPolicies (CRD not installed): enforcing without them; discovery is asked again periodically");
                    if !send_empty_list(&tx) {
                        return;
                    }
                    listed = true;
                    served = Served::Missing;
                }
                tokio::time::sleep(every).await;
            }
            Err(e) => {
                tracing::warn!(group = GROUP, error = %crate::error::Chain(&e), "ClusterNetworkPolicy discovery failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX).min(every);
            }
        }
    }
}

/// Tells the sync loop the kind holds nothing (a list with no items); false when the
/// sync loop is gone.
fn send_empty_list(tx: &Sender<Stamped>) -> bool {
    [
        Msg::Init(Kind::ClusterNetworkPolicy),
        Msg::InitDone(Kind::ClusterNetworkPolicy),
    ]
    .into_iter()
    .all(|msg| tx.send(Stamped::now(msg)).is_ok())
}

/// Whether a watcher error is the API server refusing the list for want of RBAC.
fn is_forbidden(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 403)
}

/// Watches `ar` until discovery answers something else (returns true) or the sync loop
/// is gone (false). A failed discovery keeps the watch: only an answer changes it.
///
/// A list refused with 403 (the ClusterRole lacks ClusterNetworkPolicies) before the
/// kind was ever listed is taken as an empty list, said once: NetworkPolicies are then
/// enforced rather than nothing at all while the sync loop would wait for the kind; the
/// watcher keeps retrying, and the list it gets once the role is fixed replaces it.
/// After a list, a 403 keeps the policies the sync loop has (the watcher retries).
async fn watch_version(
    client: &Client,
    ar: &ApiResource,
    every: Duration,
    tx: &Sender<Stamped>,
    listed: &mut bool,
) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = stream.next() => {
                let Some(event) = event else { return true };
                match &event {
                    Err(e) if is_forbidden(e) && !*listed => {
                        tracing::warn!(kind = KIND, api_version = %ar.api_version, error = %crate::error::Chain(&e), "not allowed to list ClusterNetworkPolicies (RBAC: list and watch on clusternetworkpolicies.policy.networking.k8s.io): enforcing without them until allowed");
                        if !send_empty_list(tx) {
                            return false;
                        }
                        *listed = true;
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => *listed = true,
                    _ => {}
                }
                let Some(msg) = message(Kind::ClusterNetworkPolicy, event, |o| to_object(ar, o)) else {
                    continue;
                };
                if tx.send(Stamped::now(msg)).is_err() {
                    return false;
                }
            }
            _ = recheck.tick() => match discover(client).await {
                Ok(Some(now)) if now.api_version == ar.api_version => {}
                Ok(now) => {
                    tracing::info!(kind = KIND, was = %ar.api_version, now = now.as_ref().map(|a| a.api_version.as_str()), "ClusterNetworkPolicy API changed");
                    return true;
                }
                Err(e) => tracing::debug!(group = GROUP, error = %crate::error::Chain(&e), "ClusterNetworkPolicy discovery failed; keeping the watch"),
            },
        }
    }
}
