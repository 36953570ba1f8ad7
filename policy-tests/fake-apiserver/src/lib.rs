//! A fake Kubernetes API server for tests: it speaks the real list and watch protocol
//! over plain HTTP/1.1 to an unmodified kube client, answers what a real `kubectl` needs
//! for `get` (tables and `-o yaml`), `create`, `replace`, `label` and `delete` (discovery
//! with short names, merge patches, Status errors; `tests/kubectl.rs`), and lets the
//! test drive the cluster state and the failure modes (expired watches, dropped
//! connections, an unavailable server, bookmarks).
//!
//! This module owns the public handle [`FakeApiServer`]: starting the server (the accept
//! loop), building client configurations, and the test-side operations on the state.
//!
//! ```no_run
//! # async fn demo() {
//! use fake_apiserver::FakeApiServer;
//! let server = FakeApiServer::start().await;
//! server.apply(serde_json::json!({
//!     "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}
//! }));
//! let client = kube::Client::try_from(server.client_config()).unwrap();
//! # let _ = client;
//! # }
//! ```

mod handlers;
mod http;
pub mod kubectl;
pub mod load;
mod object;
pub mod resources;
mod selector;
mod store;
mod watch;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use store::{Store, WriteMode};
use tokio::net::TcpListener;

pub use store::DEFAULT_HISTORY_LIMIT;
pub use watch::INITIAL_EVENTS_END;

/// Locks a mutex, ignoring poisoning (a panicking test thread must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by the handle and every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<Mutex<Store>>,
    pub(crate) available: AtomicBool,
    pub(crate) log: Mutex<Vec<String>>,
    /// Group versions hidden from discovery and answering 404, as when a CRD is not
    /// installed (or does not serve that version).
    pub(crate) unserved: Mutex<std::collections::BTreeSet<String>>,
    /// Resources (by plural) the client may not read or write, as when its RBAC role
    /// lacks them: every request for them answers 403.
    pub(crate) forbidden: Mutex<std::collections::BTreeSet<String>>,
    pub(crate) addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn is_available(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }

    /// Whether `group`/`version` is served (core is always).
    pub(crate) fn serves(&self, group: &str, version: &str) -> bool {
        group.is_empty() || !lock(&self.unserved).contains(&format!("{group}/{version}"))
    }

    /// The API groups other than core with the versions served, groups with none left out.
    pub(crate) fn served_groups(&self) -> Vec<resources::Group> {
        resources::groups()
            .into_iter()
            .filter_map(|(g, v)| {
                let v: Vec<&'static str> = v.into_iter().filter(|v| self.serves(g, v)).collect();
                (!v.is_empty()).then_some((g, v))
            })
            .collect()
    }
}

/// Why [`FakeApiServer::try_apply`] refused an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError(pub String);

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ApplyError {}

/// A running fake API server. Cloning gives another handle to the same server; the
/// server runs until [`FakeApiServer::shutdown`] or until its tokio runtime ends.
#[derive(Debug, Clone)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
}

/// Resolves `kind` (`Pod`, `pods`, or `events.k8s.io/v1/Event` to pick an API group)
/// to an index into [`resources::RESOURCES`].
fn resolve_kind(kind: &str) -> Option<usize> {
    match kind.rsplit_once('/') {
        Some((api_version, kind)) => resources::by_kind(Some(api_version), kind),
        None => resources::by_kind(None, kind),
    }
}

impl FakeApiServer {
    /// Starts a server on `127.0.0.1` at a free port.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start() -> FakeApiServer {
        FakeApiServer::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("binding 127.0.0.1:0")
    }

    /// Starts a server on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeApiServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            store: Arc::new(Mutex::new(Store::default())),
            available: AtomicBool::new(true),
            log: Mutex::new(Vec::new()),
            unserved: Mutex::new(Default::default()),
            forbidden: Mutex::new(Default::default()),
            addr,
            shutdown,
        });
        tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FakeApiServer { shared })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kube client configuration for this server: plain HTTP, no authentication,
    /// default namespace `default`.
    pub fn client_config(&self) -> kube::Config {
        kube::Config::new(self.url().parse().expect("the server URL is a valid URI"))
    }

    /// A kube client for this server (needs a tokio runtime).
    ///
    /// # Panics
    /// If kube cannot build a client from [`Self::client_config`].
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.client_config()).expect("building a kube client")
    }

    /// A kubeconfig file's contents pointing at this server, for a separate process.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Creates or replaces an object (by kind, namespace and name), bumping the global
    /// resourceVersion and sending `ADDED` or `MODIFIED` to matching watches. A namespaced
    /// object without a namespace goes to `default`; uid and creationTimestamp are
    /// filled in (and kept across replacements). Returns the stored object.
    ///
    /// # Panics
    /// On an object [`Self::try_apply`] refuses (unknown kind, no name, not an object).
    pub fn apply(&self, obj: Value) -> Value {
        self.try_apply(obj)
            .unwrap_or_else(|e| panic!("FakeApiServer::apply: {e}"))
    }

    /// [`Self::apply`] returning an error for objects that cannot be stored.
    pub fn try_apply(&self, obj: Value) -> Result<Value, ApplyError> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = obj.get("apiVersion").and_then(Value::as_str);
        let res = resources::by_kind(api_version, kind).ok_or_else(|| {
            ApplyError(format!(
                "unsupported kind {kind:?} (apiVersion {:?})",
                api_version.unwrap_or("")
            ))
        })?;
        lock(&self.shared.store)
            .write(res, obj, WriteMode::Upsert)
            .map(|o| (*o).clone())
            .map_err(|e| ApplyError(format!("{e:?}")))
    }

    fn key(kind: &str, namespace: Option<&str>) -> Option<(usize, String)> {
        let res = resolve_kind(kind)?;
        let ns = if resources::RESOURCES[res].namespaced {
            namespace.unwrap_or("default").to_string()
        } else {
            String::new()
        };
        Some((res, ns))
    }

    /// Deletes an object, sending `DELETED` to matching watches. `kind` is a kind
    /// (`Pod`), a plural (`pods`) or `apiVersion/Kind`; a namespaced kind without a
    /// namespace means `default`. False if there was no such object.
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) -> bool {
        let Some((res, ns)) = Self::key(kind, namespace) else {
            return false;
        };
        lock(&self.shared.store).remove(res, &ns, name).is_some()
    }

    /// The stored object, if any (same `kind` rules as [`Self::delete`]).
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let (res, ns) = Self::key(kind, namespace)?;
        lock(&self.shared.store)
            .get(res, &ns, name)
            .map(|o| (*o).clone())
    }

    /// Every stored object of a kind, in namespace/name order.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let Some(res) = resolve_kind(kind) else {
            return Vec::new();
        };
        let store = lock(&self.shared.store);
        store
            .range(res, None, None)
            .map(|(_, o)| (**o).clone())
            .collect()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).rv()
    }

    /// Compacts the history at the current resourceVersion: every open watch gets an
    /// `ERROR` event with a 410 Status and ends; later watches or continue tokens from
    /// an older resourceVersion get 410 too, so clients must relist.
    pub fn expire_watches(&self) {
        lock(&self.shared.store).expire();
    }

    /// Aborts every open watch connection (no terminating chunk).
    pub fn drop_connections(&self) {
        lock(&self.shared.store).abort_watches();
    }

    /// Down: every request answers 503 and open watches are dropped. Up: back to normal.
    pub fn set_available(&self, up: bool) {
        self.shared.available.store(up, Ordering::SeqCst);
        if !up {
            self.drop_connections();
        }
    }

    pub fn is_available(&self) -> bool {
        self.shared.is_available()
    }

    /// Serves `group_version` (`policy.networking.k8s.io/v1beta1`) or not: unserved, it
    /// is missing from discovery and its paths answer 404, as when its CRD is not
    /// installed. The objects stay stored (every version shares one store) and the open
    /// watches of it are dropped. Everything is served at start.
    pub fn set_served(&self, group_version: &str, served: bool) {
        let changed = {
            let mut unserved = lock(&self.shared.unserved);
            if served {
                unserved.remove(group_version)
            } else {
                unserved.insert(group_version.to_string())
            }
        };
        if changed && !served {
            self.drop_connections();
        }
    }

    /// Forbids every request for the resource `plural` (`clusternetworkpolicies`) or
    /// allows it again, as an RBAC role without it or with it would: 403 Forbidden,
    /// discovery unchanged, open watches of it dropped.
    pub fn set_forbidden(&self, plural: &str, forbidden: bool) {
        let changed = {
            let mut set = lock(&self.shared.forbidden);
            if forbidden {
                set.insert(plural.to_string())
            } else {
                set.remove(plural)
            }
        };
        if changed && forbidden {
            self.drop_connections();
        }
    }

    /// Sends a `BOOKMARK` at the current resourceVersion to every watch that asked for
    /// bookmarks.
    pub fn send_bookmarks(&self) {
        lock(&self.shared.store).bookmarks();
    }

    /// How many changes are retained for resuming watches (default
    /// [`DEFAULT_HISTORY_LIMIT`]); older resourceVersions get 410.
    pub fn set_history_limit(&self, limit: usize) {
        lock(&self.shared.store).set_history_limit(limit);
    }

    /// The Events clients created (core `v1` and `events.k8s.io/v1`), in creation order,
    /// each in its latest state (after any PATCH).
    pub fn events(&self) -> Vec<Value> {
        lock(&self.shared.store).events()
    }

    /// Every request so far as `"METHOD /path?query"`.
    pub fn request_log(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_request_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// How many watch streams are open.
    pub fn open_watches(&self) -> usize {
        lock(&self.shared.store).open_watches()
    }

    /// Stops accepting connections, closes the open ones and aborts every watch.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        self.drop_connections();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc_shared = shared.clone();
        let mut stop = shared.shutdown.subscribe();
        tokio::spawn(async move {
            let svc = service_fn(move |req| http::handle(svc_shared.clone(), req));
            // No timer, hence no header read timeout: idle keep-alive connections stay
            // open as long as the client wants, like the real server's.
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
}
