//! A real `kubectl` against the fake API server: what the controller backend changes
//! between steps, and how. [`plan`] turns the objects served so far and the objects of the
//! next step into kubectl commands (pure, unit tested); [`Kubectl`] runs them.
//!
//! ```text
//! served, wanted ──plan──▶ create -f -   (one List: new namespaces, pods, policies)
//!                          replace -f -  (one List: changed beyond their labels)
//!                          label ...     (one per object whose labels alone changed)
//!                          delete -f -   (one List: policies, pods, then namespaces)
//! ```
//!
//! This module owns the commands and the kubeconfig; it knows nothing of controllers or
//! nodes (controller.rs does).

use std::path::Path;

use anyhow::{Context, Result};
use nftpol::input::Kind;
use serde_json::{json, Map, Value};

use crate::objects::Objects;

/// The kubectl commands that bring a server holding `served` to holding `wanted`.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New objects, namespaces first (creation order: a pod's namespace exists first).
    pub create: Vec<Value>,
    /// Objects that changed in more than their labels.
    pub replace: Vec<Value>,
    /// `kubectl label` argument lists, for objects whose labels alone changed.
    pub label: Vec<Vec<String>>,
    /// Objects gone, policies first and namespaces last (the reverse of creation).
    pub delete: Vec<Value>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.replace.is_empty()
            && self.label.is_empty()
            && self.delete.is_empty()
    }
}

/// kubectl's resource name for a kind.
fn resource(kind: Kind) -> &'static str {
    match kind {
        Kind::Namespace => "namespace",
        Kind::Pod => "pod",
        Kind::NetworkPolicy => "networkpolicy",
        Kind::ClusterNetworkPolicy => "clusternetworkpolicy",
        Kind::Node => "node",
    }
}

fn labels(v: &Value) -> Map<String, Value> {
    v["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// `v` with its labels taken out, to see whether anything else changed.
fn without_labels(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("labels");
    }
    v
}

/// `kubectl label` arguments turning labels `old` into `new`: `k=v` for new or changed
/// values (with `--overwrite`), `k-` for removed keys.
fn label_args(kind: Kind, ns: Option<&str>, name: &str, old: &Value, new: &Value) -> Vec<String> {
    let (old, new) = (labels(old), labels(new));
    let mut args = vec![
        "label".to_string(),
        resource(kind).to_string(),
        name.to_string(),
    ];
    if let Some(ns) = ns {
        args.extend(["--namespace".to_string(), ns.to_string()]);
    }
    args.push("--overwrite".to_string());
    for (k, v) in &new {
        if old.get(k) != Some(v) {
            args.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    args.extend(
        old.keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| format!("{k}-")),
    );
    args
}

/// What changes from `served` to `wanted`.
pub fn plan(served: &Objects, wanted: &Objects) -> Plan {
    let mut p = Plan::default();
    for (key, value) in wanted {
        match served.get(key) {
            None => p.create.push(value.clone()),
            Some(old) if old == value => {}
            Some(old) if without_labels(old) == without_labels(value) => {
                p.label
                    .push(label_args(key.0, key.1.as_deref(), &key.2, old, value));
            }
            Some(_) => p.replace.push(value.clone()),
        }
    }
    let mut gone: Vec<_> = served
        .iter()
        .filter(|(k, _)| !wanted.contains_key(*k))
        .collect();
    gone.sort_by_key(|(k, _)| std::cmp::Reverse(k.0));
    p.delete = gone
        .into_iter()
        .map(|((_, ns, name), v)| {
            let mut meta = json!({ "name": name });
            if let Some(ns) = ns {
                meta["namespace"] = json!(ns);
            }
            json!({ "apiVersion": v["apiVersion"], "kind": v["kind"], "metadata": meta })
        })
        .collect();
    p
}

fn list(items: &[Value]) -> Vec<u8> {
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": items });
    serde_json::to_vec(&list).expect("JSON values always serialize")
}

/// `kubectl` with a kubeconfig pointing at one server and a discovery cache of its own
/// (the fake API server's runner, [`fake_apiserver::kubectl::Kubectl`]).
pub struct Kubectl(fake_apiserver::kubectl::Kubectl);

impl Kubectl {
    /// Writes `kubeconfig` (the YAML text) into `dir` and checks that kubectl runs.
    pub fn new(dir: &Path, kubeconfig: &str) -> Result<Kubectl> {
        let k = Kubectl(fake_apiserver::kubectl::Kubectl::with_kubeconfig(
            dir, kubeconfig,
        )?);
        k.run(&["version", "--client"], None)
            .context("kubectl is needed on PATH")?;
        Ok(k)
    }

    /// Runs `kubectl ARGS` (stdin fed from `input`), returning its stdout; a non-zero
    /// exit is an error carrying kubectl's stderr.
    pub fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<String> {
        Ok(self.0.run(args, input)?)
    }

    /// Runs a plan: create, replace, label, then delete (without waiting for the objects
    /// to be gone: the fake server removes them at once).
    pub fn apply(&self, plan: &Plan) -> Result<()> {
        if !plan.create.is_empty() {
            self.run(
                &["create", "-f", "-", "-o", "name"],
                Some(&list(&plan.create)),
            )?;
        }
        if !plan.replace.is_empty() {
            self.run(
                &["replace", "-f", "-", "-o", "name"],
                Some(&list(&plan.replace)),
            )?;
        }
        for args in &plan.label {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.run(&args, None)?;
        }
        if !plan.delete.is_empty() {
            self.run(
                &["delete", "-f", "-", "--wait=false", "-o", "name"],
                Some(&list(&plan.delete)),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, labels: Value) -> ((Kind, Option<String>, String), Value) {
        (
            (Kind::Namespace, None, name.to_string()),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
        )
    }

    fn pod(ns: &str, name: &str, node: &str) -> ((Kind, Option<String>, String), Value) {
        (
            (Kind::Pod, Some(ns.to_string()), name.to_string()),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
                   "spec": {"nodeName": node}}),
        )
    }

    fn policy(ns: &str, name: &str) -> ((Kind, Option<String>, String), Value) {
        (
            (Kind::NetworkPolicy, Some(ns.to_string()), name.to_string()),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": name, "namespace": ns}, "spec": {"podSelector": {}}}),
        )
    }

    #[test]
    fn first_step_creates_everything_namespaces_first() {
        let wanted: Objects = [policy("x", "p"), pod("x", "a", "n1"), ns("x", json!({}))]
            .into_iter()
            .collect();
        let p = plan(&Objects::new(), &wanted);
        let kinds: Vec<&str> = p
            .create
            .iter()
            .map(|v| v["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Namespace", "Pod", "NetworkPolicy"]);
        assert!(p.replace.is_empty() && p.label.is_empty() && p.delete.is_empty());
        assert!(plan(&wanted, &wanted).is_empty());
    }

    #[test]
    fn label_only_changes_become_kubectl_label() {
        let served: Objects = [ns("x", json!({"a": "1", "b": "2", "c": "3"}))]
            .into_iter()
            .collect();
        let wanted: Objects = [ns("x", json!({"a": "1", "b": "9", "d": "4"}))]
            .into_iter()
            .collect();
        let p = plan(&served, &wanted);
        assert!(p.create.is_empty() && p.replace.is_empty() && p.delete.is_empty());
        assert_eq!(
            p.label,
            [
                vec!["label", "namespace", "x", "--overwrite", "b=9", "d=4", "c-"]
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>()
            ]
        );
    }

    #[test]
    fn other_changes_are_replaced_and_gone_objects_deleted_policies_first() {
        let served: Objects = [
            ns("x", json!({})),
            pod("x", "a", "n1"),
            pod("x", "b", "n1"),
            policy("x", "p"),
        ]
        .into_iter()
        .collect();
        let wanted: Objects = [pod("x", "a", "n2")].into_iter().collect();
        let p = plan(&served, &wanted);
        assert_eq!(p.replace.len(), 1);
        assert_eq!(p.replace[0]["spec"]["nodeName"], "n2");
        let gone: Vec<(&str, &str)> = p
            .delete
            .iter()
            .map(|v| {
                (
                    v["kind"].as_str().unwrap(),
                    v["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            gone,
            [("NetworkPolicy", "p"), ("Pod", "b"), ("Namespace", "x")]
        );
        assert_eq!(p.delete[1]["metadata"]["namespace"], "x");
        assert!(p.delete[2]["metadata"].get("namespace").is_none());
    }

    /// Compiles objects as `nftpol compile` does (parse, index, compile, render).
    fn compile(text: &str, node: Option<&str>) -> String {
        let objects = nftpol::input::parse_str(text, "input").expect("parses");
        let index = nftpol::index::Index::from_objects(objects).expect("indexes");
        nftpol::script::render(&nftpol::compile(&index, node))
    }

    /// Every step of every case: the objects loaded into the fake server, read back with
    /// `kubectl get ns,nodes,pods,networkpolicies,clusternetworkpolicies -A -o yaml`, compile to the same script as
    /// the objects themselves, for each node and for the whole cluster.
    #[test]
    fn every_case_step_round_trips_through_kubectl_get() {
        assert!(
            fake_apiserver::kubectl::Kubectl::on_path(),
            "needs kubectl on PATH (every machine this project runs on has one)"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(fake_apiserver::FakeApiServer::start());
        let dir =
            std::env::temp_dir().join(format!("policy-tests-{}-kubectl-test", std::process::id()));
        let k = Kubectl::new(&dir, &server.kubeconfig_yaml()).unwrap();
        let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
        let mut steps = 0;
        for file in crate::case::case_files(&cases).unwrap() {
            let case =
                crate::case::load(&file).unwrap_or_else(|e| panic!("{}: {}", e.name, e.reason));
            for (i, step) in case.steps.iter().enumerate() {
                for kind in [
                    "ClusterNetworkPolicy",
                    "NetworkPolicy",
                    "Pod",
                    "Node",
                    "Namespace",
                ] {
                    for o in server.list(kind) {
                        let meta = &o["metadata"];
                        server.delete(
                            kind,
                            meta["namespace"].as_str(),
                            meta["name"].as_str().unwrap(),
                        );
                    }
                }
                let objects = step.objects();
                for o in &objects {
                    server.apply(o.clone());
                }
                let direct = serde_json::to_string(
                    &json!({"apiVersion": "v1", "kind": "List", "items": step.nftpol_objects()}),
                )
                .unwrap();
                let got = k
                    .run(
                        &[
                            "get",
                            "ns,nodes,pods,networkpolicies,clusternetworkpolicies",
                            "-A",
                            "-o",
                            "yaml",
                        ],
                        None,
                    )
                    .unwrap();
                for node in [None, Some("n1"), Some("n2")] {
                    assert_eq!(
                        compile(&got, node),
                        compile(&direct, node),
                        "{} step {} node {node:?}",
                        case.name,
                        i + 1
                    );
                }
                steps += 1;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(steps > 90, "only {steps} steps found");
    }
}
