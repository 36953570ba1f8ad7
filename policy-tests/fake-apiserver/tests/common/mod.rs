//! Helpers shared by the integration tests: object builders and bounded waits on kube
//! watcher streams.
#![allow(dead_code)]

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{Error, Event};
use kube::ResourceExt;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The bound on any single wait in these tests.
pub const T: Duration = Duration::from_secs(20);

/// Runs `f` or fails the test after [`T`].
pub async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(T, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {T:?} waiting for {what}"))
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}})
}

pub fn pod(ns: &str, name: &str, app: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]},
    })
}

pub fn netpol(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    })
}

/// A short description of a watcher event, for assertions.
pub fn describe<K: ResourceExt>(e: &Event<K>) -> String {
    match e {
        Event::Init => "Init".into(),
        Event::InitApply(o) => format!("InitApply({})", o.name_any()),
        Event::InitDone => "InitDone".into(),
        Event::Apply(o) => format!("Apply({})", o.name_any()),
        Event::Delete(o) => format!("Delete({})", o.name_any()),
    }
}

/// A watcher driven by its own task (so it keeps watching while the test does other
/// things), its events forwarded to the test.
pub struct Watch<K> {
    rx: mpsc::UnboundedReceiver<Result<Event<K>, String>>,
    task: JoinHandle<()>,
}

impl<K> Drop for Watch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K: ResourceExt + Send + 'static> Watch<K> {
    pub fn spawn<S>(stream: S) -> Self
    where
        S: Stream<Item = Result<Event<K>, Error>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                if tx.send(item.map_err(|e| e.to_string())).is_err() {
                    return;
                }
            }
        });
        Watch { rx, task }
    }

    /// The next item, bounded by [`T`].
    pub async fn next(&mut self) -> Result<Event<K>, String> {
        bounded("a watcher event", self.rx.recv())
            .await
            .expect("watcher streams never end")
    }

    /// The next successful event, and the errors skipped on the way.
    pub async fn next_ok(&mut self) -> (Event<K>, Vec<String>) {
        let mut errors = Vec::new();
        loop {
            match self.next().await {
                Ok(e) => return (e, errors),
                Err(e) => errors.push(e),
            }
        }
    }

    /// The next successful event, described.
    pub async fn next_desc(&mut self) -> String {
        describe(&self.next_ok().await.0)
    }

    /// Consumes `Init`, the `InitApply` events and `InitDone` (skipping errors before
    /// `Init`); returns the names seen, sorted.
    pub async fn initial_names(&mut self) -> Vec<String> {
        let (first, _) = self.next_ok().await;
        assert!(
            matches!(first, Event::Init),
            "expected Init, got {}",
            describe(&first)
        );
        let mut names = Vec::new();
        loop {
            match self
                .next()
                .await
                .expect("no errors during the initial list")
            {
                Event::InitApply(o) => names.push(o.name_any()),
                Event::InitDone => break,
                other => panic!("unexpected {} during the initial list", describe(&other)),
            }
        }
        names.sort();
        names
    }

    /// Nothing arrives within `d`.
    pub async fn assert_quiet(&mut self, d: Duration) {
        if let Ok(Some(item)) = tokio::time::timeout(d, self.rx.recv()).await {
            let what = match item {
                Ok(e) => describe(&e),
                Err(e) => format!("error {e}"),
            };
            panic!("expected no watcher event, got {what}");
        }
    }
}

/// Waits until the server has `n` open watches (the watcher reached its watch phase).
pub async fn wait_watches(server: &fake_apiserver::FakeApiServer, n: usize) {
    bounded("open watches", async {
        while server.open_watches() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}
