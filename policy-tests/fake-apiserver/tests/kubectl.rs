//! A real `kubectl` (v1.32 here) against the fake server: discovery with short names,
//! `get` as a table and as `-o yaml`, `create`, `replace`, `label` (a merge patch),
//! `delete`, and server-side errors as Status objects that kubectl prints. Each test
//! fails, saying so, when `kubectl` is not on PATH. kubectl runs through the crate's own
//! runner ([`fake_apiserver::kubectl::Kubectl`]).

mod common;

use common::*;
use fake_apiserver::kubectl::Kubectl;
use fake_apiserver::FakeApiServer;
use serde_json::Value;
use std::path::PathBuf;

/// Runs kubectl off the async runtime (the server answers on it meanwhile).
async fn ok(k: &Kubectl, args: &[&str], stdin: Option<&str>) -> String {
    tokio::task::block_in_place(|| k.run(args, stdin.map(str::as_bytes)))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs kubectl expecting failure; returns its stderr.
async fn fails(k: &Kubectl, args: &[&str], stdin: Option<&str>) -> String {
    let out = tokio::task::block_in_place(|| k.output(args, stdin.map(str::as_bytes)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success(), "kubectl {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

fn kubectl_on_path() -> bool {
    let ok = Kubectl::on_path();
    assert!(
        ok,
        "needs kubectl on PATH (every machine this project runs on has one)"
    );
    ok
}

fn load(server: &FakeApiServer) {
    server.apply(namespace("x"));
    server.apply(pod("x", "a", "web", "n1"));
    server.apply(netpol("x", "deny"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_by_short_names_as_table_and_as_a_yaml_list() {
    if !kubectl_on_path() {
        return;
    }
    let server = FakeApiServer::start().await;
    load(&server);
    let dir = tempfile_dir("get");
    let k = Kubectl::new(&dir, &server).unwrap();
    let table = ok(&k, &["get", "ns,po,netpol", "-A"], None).await;
    for want in [
        "namespace/x",
        "pod/a",
        "networkpolicy.networking.k8s.io/deny",
        "NAMESPACE",
        "CREATED AT",
    ] {
        assert!(table.contains(want), "{want} missing in\n{table}");
    }
    assert!(
        server
            .request_log()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/pods")),
        "{:?}",
        server.request_log()
    );
    let yaml = ok(
        &k,
        &["get", "ns,pods,networkpolicies", "-A", "-o", "json"],
        None,
    )
    .await;
    let list: Value = serde_json::from_str(&yaml).unwrap();
    assert_eq!(list["kind"], "List");
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Namespace", "Pod", "NetworkPolicy"]);
    assert_eq!(list["items"][1]["status"]["podIP"], "10.0.0.1");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_replace_label_delete_and_errors() {
    if !kubectl_on_path() {
        return;
    }
    let server = FakeApiServer::start().await;
    let dir = tempfile_dir("write");
    let k = Kubectl::new(&dir, &server).unwrap();
    let objects = serde_json::json!({"apiVersion": "v1", "kind": "List",
        "items": [namespace("x"), pod("x", "a", "web", "n1")]})
    .to_string();
    let created = ok(&k, &["create", "-f", "-", "-o", "name"], Some(&objects)).await;
    assert_eq!(created, "namespace/x\npod/a\n");
    let again = fails(&k, &["create", "-f", "-"], Some(&objects)).await;
    assert!(again.contains(r#"Error from server (AlreadyExists): error when creating "STDIN": namespaces "x" already exists"#), "{again}");

    let moved = pod("x", "a", "web", "n2").to_string();
    ok(&k, &["replace", "-f", "-"], Some(&moved)).await;
    assert_eq!(
        server.get("Pod", Some("x"), "a").unwrap()["spec"]["nodeName"],
        "n2"
    );

    server.clear_request_log();
    ok(&k, &["label", "namespace", "x", "team=red"], None).await;
    ok(
        &k,
        &[
            "label",
            "namespace",
            "x",
            "--overwrite",
            "team=blue",
            "kubernetes.io/metadata.name-",
        ],
        None,
    )
    .await;
    let labels = server.get("Namespace", None, "x").unwrap()["metadata"]["labels"].clone();
    assert_eq!(labels, serde_json::json!({"team": "blue"}));
    assert!(
        server
            .request_log()
            .iter()
            .any(|r| r.starts_with("PATCH /api/v1/namespaces/x")),
        "{:?}",
        server.request_log()
    );
    let clash = fails(&k, &["label", "namespace", "x", "team=green"], None).await;
    assert!(clash.contains("already has a value (blue)"), "{clash}");

    ok(&k, &["delete", "pod", "a", "--namespace", "x"], None).await;
    assert!(server.get("Pod", Some("x"), "a").is_none());
    let gone = fails(&k, &["delete", "pod", "a", "--namespace", "x"], None).await;
    assert!(
        gone.contains(r#"Error from server (NotFound): pods "a" not found"#),
        "{gone}"
    );
    let missing = fails(
        &k,
        &["get", "networkpolicy", "nope", "--namespace", "x"],
        None,
    )
    .await;
    assert!(
        missing.contains(r#"networkpolicies.networking.k8s.io "nope" not found"#),
        "{missing}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn cnp(version: &str, name: &str, priority: u32) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/{version}
kind: ClusterNetworkPolicy
metadata: {{name: {name}}}
spec:
  tier: Admin
  priority: {priority}
  subject: {{namespaces: {{matchLabels: {{ns: x}}}}}}
  ingress:
    - {{name: deny-y, action: Deny, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}
"
    )
}

/// The ClusterNetworkPolicy CRD at both served versions, as discovery shows it after
/// the network-policy-api CRD is installed: `kubectl apply` of a v1alpha2 and of a
/// v1beta1 object, `get cnp` and `get clusternetworkpolicies` list both, one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_network_policies_at_both_versions_and_nodes() {
    if !kubectl_on_path() {
        return;
    }
    let server = FakeApiServer::start().await;
    let dir = tempfile_dir("cnp");
    let k = Kubectl::new(&dir, &server).unwrap();
    let out = ok(&k, &["apply", "-f", "-"], Some(&cnp("v1alpha2", "old", 10))).await;
    assert!(
        out.contains("clusternetworkpolicy.policy.networking.k8s.io/old created"),
        "{out}"
    );
    let out = ok(&k, &["apply", "-f", "-"], Some(&cnp("v1beta1", "new", 20))).await;
    assert!(out.contains("/new created"), "{out}");
    // Applied again with a change: a patch of the stored object through v1alpha2.
    let out = ok(&k, &["apply", "-f", "-"], Some(&cnp("v1alpha2", "old", 30))).await;
    assert!(out.contains("/old configured"), "{out}");
    let table = ok(&k, &["get", "cnp"], None).await;
    for want in ["NAME", "old", "new"] {
        assert!(table.contains(want), "{want} missing in\n{table}");
    }
    let list: Value =
        serde_json::from_str(&ok(&k, &["get", "clusternetworkpolicies", "-o", "json"], None).await)
            .unwrap();
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new", "old"]);
    // kubectl reads the preferred version; the store keeps one copy of each.
    for i in items {
        assert_eq!(i["apiVersion"], "policy.networking.k8s.io/v1beta1");
        assert!(i["metadata"].get("namespace").is_none());
    }
    assert_eq!(items[1]["spec"]["priority"], 30);
    let alpha: Value = serde_json::from_str(
        &ok(
            &k,
            &[
                "get",
                "clusternetworkpolicies.v1alpha2.policy.networking.k8s.io",
                "old",
                "-o",
                "json",
            ],
            None,
        )
        .await,
    )
    .unwrap();
    assert_eq!(alpha["apiVersion"], "policy.networking.k8s.io/v1alpha2");
    assert_eq!(alpha["spec"]["priority"], 30);
    assert_eq!(server.list("ClusterNetworkPolicy").len(), 2);
    server.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "labels": {"node-role": "worker"}},
    }));
    let nodes = ok(&k, &["get", "nodes", "--show-labels"], None).await;
    assert!(
        nodes.contains("n1") && nodes.contains("node-role=worker"),
        "{nodes}"
    );
    let out = ok(&k, &["delete", "cnp", "old"], None).await;
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(server.list("ClusterNetworkPolicy").len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh directory for one test's kubeconfig and discovery cache.
fn tempfile_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fake-apiserver-{}-kubectl-{what}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
