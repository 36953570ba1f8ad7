//! Shared builders for the integration tests: Kubernetes objects as `serde_json::Value`,
//! built by chaining, then turned into `nftpol` objects, an `Index`, a graph, a verdict.
//!
//! ```ignore
//! let idx = index(vec![
//!     ns("x").label("team", "a"),
//!     pod("x", "a").label("pod", "a").node("n1").ip("10.244.1.11").port("http", 80, "TCP"),
//!     netpol("x", "p").pod_selector(json!({"matchLabels": {"pod": "a"}})).ingress(json!([{}])),
//! ]);
//! assert!(allowed(&idx, "x/b", "x/a", "tcp/80"));
//! ```
// Not every test crate uses every helper; `nftpol::Error` is the library's, its size is
// not the tests' to change.
#![allow(dead_code, clippy::result_large_err)]

use nftpol::explain::{explain_in, Explanation, Family, Query};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::{object_from_value, Object};
use serde_json::{json, Map, Value};

/// The source name every builder object carries (what errors name as the file).
pub const SOURCE: &str = "test-input";

/// One Kubernetes object under construction. Every setter returns the object, so calls
/// chain; setters that make no sense for a kind simply add the field anyway.
#[derive(Debug, Clone, PartialEq)]
pub struct Obj(pub Value);

/// A Namespace.
pub fn ns(name: &str) -> Obj {
    Obj(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
    }))
}

/// A running Pod with one container and no address yet.
pub fn pod(namespace: &str, name: &str) -> Obj {
    Obj(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]},
        "status": {"phase": "Running"},
    }))
}

/// Pod x/`name` labelled `app=<name>` at `ip`, on node n1 (192.168.100.1): a pod of the
/// routed topology the kernel tests build (common/routed.rs).
pub fn routed_pod(name: &str, ip: &str) -> Obj {
    pod("x", name)
        .label("app", name)
        .node("n1")
        .ip(ip)
        .host_ip("192.168.100.1")
}

/// NetworkPolicy x/`<target>-from-<from>`: pods labelled `app=<target>` admit only pods
/// labelled `app=<from>` (the routed topology's policy, with [`routed_pod`]).
pub fn admit_only(target: &str, from: &str) -> Obj {
    netpol("x", &format!("{target}-from-{from}"))
        .selecting("app", target)
        .policy_types(&["Ingress"])
        .ingress(json!([{"from": [{"podSelector": {"matchLabels": {"app": from}}}]}]))
}

/// A NetworkPolicy selecting every pod of its namespace, with no rules and no policyTypes
/// (so, as the API server defaults it, isolating ingress only).
pub fn netpol(namespace: &str, name: &str) -> Obj {
    Obj(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {}},
    }))
}

fn object_at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = v;
    for key in path {
        let map = cur.as_object_mut().expect("a mapping");
        cur = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    cur.as_object_mut().expect("a mapping")
}

fn array_at<'a>(v: &'a mut Value, path: &[&str], key: &str) -> &'a mut Vec<Value> {
    object_at(v, path)
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .expect("an array")
}

impl Obj {
    /// Sets any field below the object's root, e.g. `set(&["spec"], "hostNetwork", true)`.
    pub fn set(mut self, path: &[&str], key: &str, value: impl Into<Value>) -> Self {
        object_at(&mut self.0, path).insert(key.to_string(), value.into());
        self
    }

    /// Removes a field below the object's root.
    pub fn unset(mut self, path: &[&str], key: &str) -> Self {
        object_at(&mut self.0, path).remove(key);
        self
    }

    // ---- metadata (any kind) ----

    pub fn label(self, key: &str, value: &str) -> Self {
        self.set(&["metadata", "labels"], key, value)
    }

    pub fn labels(mut self, pairs: &[(&str, &str)]) -> Self {
        for (k, v) in pairs {
            self = self.label(k, v);
        }
        self
    }

    /// Replaces every label (for relabelling tests).
    pub fn only_labels(self, pairs: &[(&str, &str)]) -> Self {
        self.unset(&["metadata"], "labels").labels(pairs)
    }

    // ---- Pod ----

    pub fn node(self, node: &str) -> Self {
        self.set(&["spec"], "nodeName", node)
    }

    /// Adds an address to status.podIPs (and sets status.podIP to the first one).
    pub fn ip(mut self, ip: &str) -> Self {
        array_at(&mut self.0, &["status"], "podIPs").push(json!({"ip": ip}));
        let status = object_at(&mut self.0, &["status"]);
        status.entry("podIP").or_insert_with(|| json!(ip));
        self
    }

    /// The same as [`Obj::ip`]; reads better for the second, IPv6 address.
    pub fn ip6(self, ip: &str) -> Self {
        self.ip(ip)
    }

    /// The address of the node the pod runs on (status.hostIP and status.hostIPs).
    pub fn host_ip(mut self, ip: &str) -> Self {
        array_at(&mut self.0, &["status"], "hostIPs").push(json!({"ip": ip}));
        let status = object_at(&mut self.0, &["status"]);
        status.entry("hostIP").or_insert_with(|| json!(ip));
        self
    }

    /// A named container port on the first container.
    pub fn port(mut self, name: &str, number: u16, protocol: &str) -> Self {
        let containers = self.0["spec"]["containers"]
            .as_array_mut()
            .expect("containers");
        let ports = containers[0]
            .as_object_mut()
            .expect("container")
            .entry("ports")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("ports");
        ports.push(json!({"name": name, "containerPort": number, "protocol": protocol}));
        self
    }

    pub fn host_network(self) -> Self {
        self.set(&["spec"], "hostNetwork", true)
    }

    pub fn phase(self, phase: &str) -> Self {
        self.set(&["status"], "phase", phase)
    }

    // ---- NetworkPolicy ----

    pub fn pod_selector(self, selector: Value) -> Self {
        self.set(&["spec"], "podSelector", selector)
    }

    /// `podSelector: {matchLabels: {key: value}}`.
    pub fn selecting(self, key: &str, value: &str) -> Self {
        self.pod_selector(json!({"matchLabels": {key: value}}))
    }

    pub fn ingress(self, rules: Value) -> Self {
        self.set(&["spec"], "ingress", rules)
    }

    pub fn egress(self, rules: Value) -> Self {
        self.set(&["spec"], "egress", rules)
    }

    pub fn policy_types(self, types: &[&str]) -> Self {
        self.set(&["spec"], "policyTypes", json!(types))
    }

    // ---- conversions ----

    pub fn value(&self) -> Value {
        self.0.clone()
    }

    /// The object as nftpol reads it; panics on an error (use `try_object` to see it).
    pub fn object(&self) -> Object {
        self.try_object()
            .expect("the builder made a valid object")
            .expect("a kind nftpol reads")
    }

    pub fn try_object(&self) -> nftpol::error::Result<Option<Object>> {
        object_from_value(self.0.clone(), SOURCE)
    }

    pub fn yaml(&self) -> String {
        // JSON is YAML; a flow mapping per document keeps the text exact.
        serde_json::to_string(&self.0).expect("serializable")
    }
}

impl From<Obj> for Value {
    fn from(o: Obj) -> Value {
        o.0
    }
}

/// An index of the objects, in order; panics if any is refused.
pub fn index(objects: Vec<Obj>) -> Index {
    try_index(objects).expect("the objects form a valid index")
}

pub fn try_index(objects: Vec<Obj>) -> nftpol::error::Result<Index> {
    let objs = objects
        .iter()
        .map(|o| o.try_object().map(|x| x.expect("a kind nftpol reads")))
        .collect::<nftpol::error::Result<Vec<_>>>()?;
    Index::from_objects(objs)
}

/// The objects as one multi-document YAML text (for CLI and parse tests).
pub fn yaml_docs(objects: &[Obj]) -> String {
    objects
        .iter()
        .map(|o| format!("---\n{}\n", o.yaml()))
        .collect()
}

/// The whole-cluster policy graph.
pub fn graph(idx: &Index) -> PolicyGraph {
    PolicyGraph::build(idx)
}

/// Explains `from -> to` on `port` (`tcp/80`); panics on a usage error.
pub fn explain(idx: &Index, from: &str, to: &str, port: &str) -> Explanation {
    Query::parse(from, to, port, None)
        .and_then(|q| explain_in(idx, &graph(idx), &q))
        .unwrap_or_else(|e| panic!("explain {from} -> {to} {port}: {e}"))
}

pub fn explain_family(
    idx: &Index,
    from: &str,
    to: &str,
    port: &str,
    family: Family,
) -> Explanation {
    Query::parse(from, to, port, Some(family))
        .and_then(|q| explain_in(idx, &graph(idx), &q))
        .unwrap_or_else(|e| panic!("explain {from} -> {to} {port}: {e}"))
}

/// Whether the connection is allowed (both egress of `from` and ingress of `to`).
pub fn allowed(idx: &Index, from: &str, to: &str, port: &str) -> bool {
    explain(idx, from, to, port).allowed
}

/// Asserts that each `(from, to, port, expected)` is allowed exactly when expected, and
/// reports every mismatch at once with the explanation.
pub fn assert_verdicts(idx: &Index, cases: &[(&str, &str, &str, bool)]) {
    let mut wrong = Vec::new();
    for &(from, to, port, want) in cases {
        let e = explain(idx, from, to, port);
        if e.allowed != want {
            wrong.push(format!(
                "{from} -> {to} {port}: expected {}, got:\n{e}",
                if want { "allowed" } else { "denied" }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Three namespaces x, y, z (y labelled team=y) and pods:
/// x/a 10.244.1.11 (n1), x/b 10.244.1.12 (n1), y/c 10.244.2.21 (n2), z/d 10.244.2.31 (n2);
/// labels `pod=<name>`; node n1 is 192.168.100.1, n2 is 192.168.100.2.
pub fn cluster() -> Vec<Obj> {
    vec![
        ns("x"),
        ns("y").label("team", "y"),
        ns("z"),
        pod("x", "a")
            .label("pod", "a")
            .node("n1")
            .ip("10.244.1.11")
            .host_ip("192.168.100.1"),
        pod("x", "b")
            .label("pod", "b")
            .node("n1")
            .ip("10.244.1.12")
            .host_ip("192.168.100.1"),
        pod("y", "c")
            .label("pod", "c")
            .node("n2")
            .ip("10.244.2.21")
            .host_ip("192.168.100.2"),
        pod("z", "d")
            .label("pod", "d")
            .node("n2")
            .ip("10.244.2.31")
            .host_ip("192.168.100.2"),
    ]
}

/// [`cluster`] plus the given objects.
pub fn cluster_with(extra: Vec<Obj>) -> Index {
    let mut all = cluster();
    all.extend(extra);
    index(all)
}

/// An address literal.
pub fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// Ingress from pods labelled `pod=<who>` of the policy's namespace.
pub fn from_pod(who: &str) -> Value {
    json!({"podSelector": {"matchLabels": {"pod": who}}})
}

/// Two pods of x on n1, each with an IPv4 and an IPv6 address.
pub fn dual_stack() -> Vec<Obj> {
    vec![
        ns("x"),
        pod("x", "a")
            .label("pod", "a")
            .node("n1")
            .ip("10.244.1.11")
            .ip6("fd00:10:244:1::11")
            .host_ip("192.168.100.1"),
        pod("x", "b")
            .label("pod", "b")
            .node("n1")
            .ip("10.244.1.12")
            .ip6("fd00:10:244:1::12")
            .host_ip("192.168.100.1"),
    ]
}
