#![cfg(feature = "controller")]
//! The controller's ClusterNetworkPolicy and Node watches against the fake API server,
//! with a scripted dataplane (no root, no kernel) that reports drift at every resync, and
//! the node's state as the sync loop publishes it on the controller's board after every
//! batch: what reached the node's state.
//!
//! One story, in order: the CRD is not installed (NetworkPolicies are enforced, said once
//! however often discovery is asked again); v1alpha2 is installed later (picked up); then
//! v1beta1 as well (the watch moves to it); a Node relabel arrives; a policy that cannot
//! be compiled gives a Warning Event and the metric and is held fail-closed; one with
//! domainNames gives an Unsupported Event; the CRD removed empties the
//! ClusterNetworkPolicies. A second story: the role may not list them (403).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use nftpol::controller::board::Board;
use nftpol::controller::dataplane::{BatchStats, Dataplane, DataplaneError};
use nftpol::controller::{self, ControllerError};
use nftpol::index::Index;
use nftpol::ruleset::{Ruleset, View};
use serde_json::{json, Value};

mod common;
#[path = "common/controller.rs"]
mod util;
use util::{config, get, metrics_listener, ns, pod, policy};

const BETA: &str = "policy.networking.k8s.io/v1beta1";
const ALPHA: &str = "policy.networking.k8s.io/v1alpha2";
const NOT_SERVED: &str = "does not serve ClusterNetworkPolicies";

/// Accepts every batch. It reports drift whenever asked, so that every resync is a full
/// sync, published on the board: a change that alters no pod's rules (a Node relabel)
/// makes no batch of its own.
struct Keeping;

impl Dataplane for Keeping {
    fn full_sync(&mut self, _: &Ruleset) -> Result<BatchStats, DataplaneError> {
        Ok(BatchStats::default())
    }
    fn update(&mut self, _: &View, _: &View) -> Result<BatchStats, DataplaneError> {
        Ok(BatchStats::default())
    }
    fn drifted(&mut self, _: &Ruleset) -> Result<bool, DataplaneError> {
        Ok(true)
    }
}

/// The log lines of the whole test binary (one test: no other writer).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

fn node(name: &str, role: &str, address: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "role": role}},
        "spec": {"podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
                   "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn cnp(api_version: &str, name: &str, priority: i64) -> Value {
    json!({"apiVersion": api_version, "kind": "ClusterNetworkPolicy", "metadata": {"name": name},
        "spec": {"tier": "Admin", "priority": priority,
            "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
            "egress": [{"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]}})
}

type Kept = Arc<Board>;
type Running = tokio::task::JoinHandle<Result<(), ControllerError>>;

/// A controller on `server` whose sync loop publishes its state on a board (see
/// [`Keeping`]): the board, the sender that stops it, and its task.
fn start(
    server: &FakeApiServer,
    cfg: controller::Config,
) -> (Kept, tokio::sync::oneshot::Sender<()>, Running) {
    let kept: Kept = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cfg = controller::Config {
        board: Some(kept.clone()),
        ..cfg
    };
    let handle = tokio::spawn(controller::run(
        cfg,
        server.client(),
        || Ok(Keeping),
        async {
            let _ = stop_rx.await;
        },
    ));
    (kept, stop_tx, handle)
}

/// Polls the published index until `ok` holds; panics after 10 s with `what`. Asking
/// ([`Board::fresh`]) keeps the sync loop publishing after every batch.
async fn until(kept: &Kept, what: &str, ok: impl Fn(&Index) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        kept.fresh(Duration::ZERO);
        if kept.newest().is_some_and(|s| ok(s.index())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not in the state in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn watches(server: &FakeApiServer, api_version: &str) -> usize {
    let path = format!("GET /apis/{api_version}/clusternetworkpolicies?");
    server
        .request_log()
        .iter()
        .filter(|l| l.starts_with(&path) && l.contains("watch=true"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_network_policies_and_nodes_follow_discovery() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .with_env_filter("info")
        .init();

    let server = FakeApiServer::start().await;
    server.set_served(BETA, false);
    server.set_served(ALPHA, false);
    server.apply(ns("x", json!({"ns": "x"})));
    server.apply(pod("x", "a", 1, "10.244.1.11", json!({"pod": "a"})));
    server.apply(policy(
        "x",
        "deny-in",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    ));
    server.apply(node("n1", "worker", "192.168.100.1"));
    server.apply(node("n2", "worker", "192.168.100.2"));

    let (listener, port) = metrics_listener();
    let cfg = controller::Config {
        discovery_every: Duration::from_millis(200),
        ..config("n1", listener, Duration::from_millis(100), None)
    };
    let (kept, stop_tx, handle) = start(&server, cfg);

    // Not installed: the NetworkPolicy and both Nodes are enforced all the same.
    until(&kept, "NetworkPolicy and Nodes without the CRD", |i| {
        i.policy("x", "deny-in").is_some() && i.nodes().count() == 2
    })
    .await;
    let asked = |s: &FakeApiServer| {
        s.request_log()
            .iter()
            .filter(|l| l.starts_with("GET /apis?") || l.as_str() == "GET /apis")
            .count()
    };
    let before = asked(&server);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        asked(&server) >= before + 2,
        "discovery not asked again: {} then {}",
        before,
        asked(&server)
    );
    assert_eq!(log.count(NOT_SERVED), 1, "said once, however often asked");

    // v1alpha2 installed later: picked up by the periodic discovery.
    server.apply(cnp(ALPHA, "no-infra", 10));
    server.set_served(ALPHA, true);
    until(&kept, "the CNP once v1alpha2 is served", |i| {
        i.cnp("no-infra").is_some_and(|e| e.error.is_none())
    })
    .await;
    assert!(watches(&server, ALPHA) >= 1, "{:?}", server.request_log());
    assert_eq!(watches(&server, BETA), 0);

    // v1beta1 too: the watch moves to the preferred version.
    server.set_served(BETA, true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while watches(&server, BETA) == 0 {
        assert!(Instant::now() < deadline, "never watched v1beta1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.apply(cnp(BETA, "no-infra", 20));
    until(&kept, "the CNP's change through v1beta1", |i| {
        i.cnp("no-infra").is_some_and(|e| e.policy.priority == 20)
    })
    .await;

    // A Node relabel is an update of the Node in the state.
    server.apply(node("n2", "infra", "192.168.100.2"));
    until(&kept, "n2 relabelled", |i| {
        i.node("n2")
            .is_some_and(|n| n.labels.get("role").map(String::as_str) == Some("infra"))
    })
    .await;

    // A policy that cannot be compiled: Event, metric, and held fail-closed.
    server.apply(cnp(BETA, "too-low", 5000));
    until(&kept, "the invalid CNP, fail-closed", |i| {
        i.cnp("too-low")
            .is_some_and(|e| e.error.is_some() && e.policy.fail_closed)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = server.events();
        let found = events.iter().any(|e| {
            let t = e.to_string();
            t.contains("CompileError")
                && t.contains("Warning")
                && t.contains("\"ClusterNetworkPolicy\"")
                && t.contains("too-low")
                && t.contains("spec.priority")
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no Warning Event: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, metrics) = get(port, "/metrics").await;
    assert!(
        metrics.contains("nftpol_compile_errors_total{kind=\"ClusterNetworkPolicy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nftpol_watched_objects{kind=\"clusternetworkpolicies\"} 2")
            && metrics.contains("nftpol_watched_objects{kind=\"nodes\"} 2"),
        "{metrics}"
    );

    // domainNames peers match nothing here: a Warning Event says so.
    server.apply(
        json!({"apiVersion": BETA, "kind": "ClusterNetworkPolicy", "metadata": {"name": "dns"},
        "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
            "egress": [{"action": "Accept", "to": [{"domainNames": ["example.com"]}]}]}}),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = server.events();
        let found = events.iter().any(|e| {
            let t = e.to_string();
            t.contains("\"Unsupported\"") && t.contains("\"dns\"") && t.contains("domainNames")
        });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Unsupported Event: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The CRD removed: its policies go (the API server deletes them with it), said again.
    server.set_served(BETA, false);
    server.set_served(ALPHA, false);
    until(&kept, "no CNPs once the CRD is gone", |i| {
        i.cnps().count() == 0
    })
    .await;
    assert_eq!(log.count(NOT_SERVED), 2);

    let _ = stop_tx.send(());
    handle.await.unwrap().unwrap();
}

/// A ClusterRole without ClusterNetworkPolicies: their list answers 403. The sync loop
/// must not wait for the kind (that would leave the node unprogrammed): NetworkPolicies
/// are enforced all the same, and once the role allows the kind its policies arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_cluster_network_policies_do_not_hold_back_enforcement() {
    let server = FakeApiServer::start().await;
    server.set_forbidden("clusternetworkpolicies", true);
    server.apply(ns("x", json!({"ns": "x"})));
    server.apply(pod("x", "a", 1, "10.244.1.11", json!({"pod": "a"})));
    server.apply(policy(
        "x",
        "deny-in",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    ));
    server.apply(node("n1", "worker", "192.168.100.1"));
    server.apply(cnp(BETA, "no-infra", 10));

    let cfg = config("n1", metrics_listener().0, Duration::from_millis(100), None);
    let (kept, stop_tx, handle) = start(&server, cfg);
    until(&kept, "the NetworkPolicy, while CNPs are forbidden", |i| {
        i.policy("x", "deny-in").is_some() && i.cnps().count() == 0
    })
    .await;
    server.set_forbidden("clusternetworkpolicies", false);
    until(&kept, "the CNP once the role allows it", |i| {
        i.cnp("no-infra").is_some()
    })
    .await;
    let _ = stop_tx.send(());
    handle.await.unwrap().unwrap();
}
