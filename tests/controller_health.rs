#![cfg(feature = "controller")]
//! The controller's honesty about itself, with a scripted dataplane (no root, no kernel):
//! `/healthz` goes red when the sync loop is wedged and green again when it moves;
//! `/readyz` is not ready while kernel batches keep failing; the pod CIDRs of
//! `--default-deny-unknown` come from this node's Node object, are in the very first
//! sync, and follow a change of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use nftpol::controller::{
    self,
    dataplane::{BatchStats, Dataplane, DataplaneError},
};
use nftpol::netlink::{KernelError, NetlinkError};
use nftpol::ruleset::{Ruleset, View};
use serde_json::{json, Value};

mod common;
#[path = "common/controller.rs"]
mod util;
use util::{config, get, metrics_listener, ns, pod, policy};

/// What the scripted dataplane does, shared with the test.
#[derive(Default)]
struct Script {
    /// Batches block here while set (a wedged netlink socket).
    wedged: Mutex<bool>,
    unwedge: Condvar,
    /// Batches are refused while set.
    refuse: AtomicBool,
    /// Every model given to a full sync.
    full_syncs: Mutex<Vec<Ruleset>>,
}

struct Scripted(Arc<Script>);

impl Scripted {
    fn batch(&self) -> Result<BatchStats, DataplaneError> {
        let mut wedged = self.0.wedged.lock().unwrap();
        while *wedged {
            wedged = self.0.unwedge.wait(wedged).unwrap();
        }
        if self.0.refuse.load(Ordering::SeqCst) {
            return Err(DataplaneError::Refused(NetlinkError::Kernel {
                first: Box::new(KernelError {
                    seq: 1,
                    object: "scripted refusal".into(),
                    errno: 1, // EPERM
                    message: None,
                    offset: None,
                }),
                others: Vec::new(),
            }));
        }
        Ok(BatchStats::default())
    }
}

impl Dataplane for Scripted {
    fn full_sync(&mut self, model: &Ruleset) -> Result<BatchStats, DataplaneError> {
        let r = self.batch();
        if r.is_ok() {
            self.0.full_syncs.lock().unwrap().push(model.clone());
        }
        r
    }
    fn update(&mut self, _: &View, _: &View) -> Result<BatchStats, DataplaneError> {
        self.batch()
    }
    fn drifted(&mut self, _: &Ruleset) -> Result<bool, DataplaneError> {
        Ok(false)
    }
}

fn cluster(server: &FakeApiServer) {
    server.apply(ns("x", json!({"ns": "x"})));
    server.apply(pod("x", "a", 1, "10.244.1.11", json!({"pod": "a"})));
    server.apply(policy(
        "x",
        "db-only",
        json!({"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"]}),
    ));
}

/// Polls `path` until its status is `code`; panics after `within`.
async fn until(port: u16, path: &str, code: u16, within: Duration, what: &str) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = get(port, path).await;
        if got == code {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {path} stayed {got}, not {code}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), controller::ControllerError>>,
);

fn start(config: controller::Config, server: &FakeApiServer, script: &Arc<Script>) -> Running {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let script = script.clone();
    let handle = tokio::spawn(controller::run(
        config,
        server.client(),
        move || Ok(Scripted(script)),
        async {
            let _ = stop_rx.await;
        },
    ));
    (stop_tx, handle)
}

fn relabel(server: &FakeApiServer, db: bool) {
    let labels = if db {
        json!({"pod": "a", "role": "db"})
    } else {
        json!({"pod": "a"})
    };
    server.apply(pod("x", "a", 1, "10.244.1.11", labels));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_goes_red_while_the_sync_loop_is_wedged() {
    let server = FakeApiServer::start().await;
    cluster(&server);
    let script = Arc::new(Script::default());
    let (listener, port) = metrics_listener();
    let mut cfg = config("n1", listener, Duration::from_secs(300), None);
    cfg.liveness = Duration::from_secs(1);
    let (stop, handle) = start(cfg, &server, &script);
    let wait = Duration::from_secs(20);
    until(port, "/readyz", 200, wait, "first sync").await;
    until(port, "/healthz", 200, wait, "idle loop").await;
    // An idle loop beats on its own: still healthy after several liveness periods.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        get(port, "/healthz").await.0,
        200,
        "an idle loop is healthy"
    );

    *script.wedged.lock().unwrap() = true;
    relabel(&server, true); // isolates x/a: a batch, which blocks
    let body = until(port, "/healthz", 503, wait, "wedged batch").await;
    assert!(body.contains("no progress"), "{body}");

    *script.wedged.lock().unwrap() = false;
    script.unwedge.notify_all();
    until(port, "/healthz", 200, wait, "unwedged").await;
    // The relabel's batch went through: every stage of its latency was measured.
    let metrics = get(port, "/metrics").await.1;
    for stage in ["watch", "state", "wait", "diff", "kernel"] {
        let count = format!("nftpol_event_stage_seconds_count{{stage=\"{stage}\"}} ");
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&count))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(n >= 1, "stage {stage} never measured:\n{metrics}");
    }
    let _ = stop.send(());
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_while_batches_keep_failing() {
    let server = FakeApiServer::start().await;
    cluster(&server);
    let script = Arc::new(Script::default());
    let (listener, port) = metrics_listener();
    let (stop, handle) = start(
        config("n1", listener, Duration::from_secs(300), None),
        &server,
        &script,
    );
    let wait = Duration::from_secs(20);
    until(port, "/readyz", 200, wait, "first sync").await;

    script.refuse.store(true, Ordering::SeqCst);
    relabel(&server, true);
    let body = until(port, "/readyz", 503, wait, "refused batches").await;
    assert!(body.contains("failed"), "{body}");
    // Liveness is a different question: the loop keeps retrying, it is not stuck.
    assert_eq!(get(port, "/healthz").await.0, 200);

    script.refuse.store(false, Ordering::SeqCst);
    // The retry (a full sync, with backoff) succeeds: ready again.
    until(port, "/readyz", 200, wait, "batches succeed again").await;
    let _ = stop.send(());
    handle.await.unwrap().unwrap();
}

fn node(cidrs: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}})
}

/// The script of the last full sync, once it contains `needle`.
async fn full_sync_with(script: &Script, needle: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(model) = script.full_syncs.lock().unwrap().last() {
            let text = nftpol::script::render(model);
            if text.contains(needle) {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no full sync with {needle}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_cidrs_come_from_the_node_object_and_follow_it() {
    let server = FakeApiServer::start().await;
    cluster(&server);
    server.apply(node(&["10.244.1.0/24", "fd00:10:244:1::/64"]));
    let script = Arc::new(Script::default());
    let mut cfg = config("n1", metrics_listener().0, Duration::from_secs(300), None);
    cfg.pod_cidrs_from_node = true;
    let (stop, handle) = start(cfg, &server, &script);

    let first = full_sync_with(&script, "10.244.1.0/24", "first sync").await;
    assert!(first.contains("fd00:10:244:1::/64"), "{first}");
    // The very first table already drops unknown pods: no window before the Node arrives.
    assert_eq!(
        script.full_syncs.lock().unwrap().len(),
        1,
        "the first full sync had the Node's CIDRs"
    );

    server.apply(node(&["10.244.9.0/24"]));
    let moved = full_sync_with(&script, "10.244.9.0/24", "CIDR change").await;
    assert!(!moved.contains("10.244.1.0/24"), "old CIDR kept:\n{moved}");
    let _ = stop.send(());
    handle.await.unwrap().unwrap();
}
