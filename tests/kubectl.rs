//! A real `kubectl` against the fake API server, piped into the `nftpol` binary: the
//! README's "compile a real cluster" example,
//! `kubectl get ns,pods,networkpolicies -A -o yaml | nftpol compile --node NODE -`,
//! gives byte for byte the script that compiling the objects' own file gives. The
//! objects reach the server through kubectl too (`create`, `label`, `replace`,
//! `delete`), so this also checks that the fake server answers what kubectl sends.
//!
//! Fails, saying so, when `kubectl` is not on PATH (every machine here has one).

use std::path::{Path, PathBuf};
use std::process::Command;

use fake_apiserver::kubectl::Kubectl;
use fake_apiserver::FakeApiServer;

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster.yaml")
}

/// Runs kubectl, feeding `stdin`; panics with its stderr when it fails.
fn run(k: &Kubectl, args: &[&str], stdin: Option<&str>) -> String {
    k.run(args, stdin.map(str::as_bytes))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `kubectl get ns,pods,networkpolicies -A -o yaml | nftpol compile [--node N] -`, as a
/// shell pipe.
fn pipe_into_compile(k: &Kubectl, node: Option<&str>) -> String {
    let node_arg = node.map(|n| format!("--node {n} ")).unwrap_or_default();
    let line = format!(
        "set -o pipefail; kubectl --kubeconfig '{}' --cache-dir '{}' get ns,pods,networkpolicies -A -o yaml | '{BIN}' compile {node_arg}-",
        k.kubeconfig().display(),
        k.cache().display()
    );
    let out = Command::new("bash")
        .args(["-c", &line])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn compile_file(path: &Path, node: Option<&str>) -> String {
    let mut c = Command::new(BIN);
    c.arg("compile").env_remove("RUST_LOG");
    if let Some(n) = node {
        c.args(["--node", n]);
    }
    let out = c.arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fake server on its own runtime (kept alive by the returned value) and kubectl
/// pointed at it.
fn start(dir: &Path) -> (tokio::runtime::Runtime, FakeApiServer, Kubectl) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(FakeApiServer::start());
    let k = Kubectl::new(dir, &server).unwrap();
    (rt, server, k)
}

#[test]
fn kubectl_get_piped_into_compile_equals_compiling_the_file() {
    assert!(
        Kubectl::on_path(),
        "needs kubectl on PATH (every machine this project runs on has one)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_rt, server, k) = start(dir.path());
    let created = run(
        &k,
        &["create", "-f", example().to_str().unwrap(), "-o", "name"],
        None,
    );
    assert!(
        created.contains("networkpolicy.networking.k8s.io/"),
        "{created}"
    );
    assert!(!server.list("Pod").is_empty());
    for node in [None, Some("node-1"), Some("node-2")] {
        let direct = compile_file(&example(), node);
        assert!(direct.contains("table inet nftpol"), "{direct}");
        let piped = pipe_into_compile(&k, node);
        assert!(
            piped == direct,
            "node {node:?}: kubectl | nftpol compile - differs from compiling the file\n--- piped\n{piped}\n--- direct\n{direct}"
        );
    }
}

#[test]
fn kubectl_label_replace_and_delete_reach_the_compiler() {
    assert!(
        Kubectl::on_path(),
        "needs kubectl on PATH (every machine this project runs on has one)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_rt, server, k) = start(dir.path());
    let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a, labels: {team: red}}
- apiVersion: v1
  kind: Pod
  metadata: {name: p, namespace: a, labels: {app: web}}
  spec: {nodeName: n1, containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
  status: {phase: Running, podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: q, namespace: a, labels: {app: db}}
  spec: {nodeName: n1, containers: [{name: c, image: i}]}
  status: {phase: Running, podIP: 10.0.0.2, podIPs: [{ip: 10.0.0.2}]}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: db, namespace: a}
  spec:
    podSelector: {matchLabels: {app: db}}
    ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
"#;
    run(&k, &["create", "-f", "-"], Some(text));
    let file = dir.path().join("objects.yaml");
    let check = |yaml: &str, what: &str| {
        std::fs::write(&file, yaml).unwrap();
        let direct = compile_file(&file, Some("n1"));
        assert_eq!(pipe_into_compile(&k, Some("n1")), direct, "after {what}");
        direct
    };
    let before = check(text, "create");
    assert!(
        before.contains("10.0.0.1"),
        "web is a peer of db:\n{before}"
    );

    // label: web is no longer app=web, so db allows nobody.
    run(
        &k,
        &[
            "label",
            "pod",
            "p",
            "--namespace",
            "a",
            "--overwrite",
            "app=api",
        ],
        None,
    );
    assert_eq!(
        server.get("Pod", Some("a"), "p").unwrap()["metadata"]["labels"]["app"],
        "api"
    );
    let relabelled = check(
        &text.replace("labels: {app: web}}", "labels: {app: api}}"),
        "label",
    );
    assert_ne!(relabelled, before);

    // replace: the policy now allows app=api.
    let replaced_text = text
        .replace("labels: {app: web}}", "labels: {app: api}}")
        .replace("matchLabels: {app: web}", "matchLabels: {app: api}");
    let policy = &replaced_text[replaced_text.find("- apiVersion: networking").unwrap()..];
    let policy = policy
        .replacen("- apiVersion", "apiVersion", 1)
        .replace("\n  ", "\n");
    run(&k, &["replace", "-f", "-"], Some(&policy));
    let replaced = check(&replaced_text, "replace");
    assert!(
        replaced.contains("10.0.0.1"),
        "api is a peer of db:\n{replaced}"
    );

    // delete, with kubectl's default wait for the object to be gone.
    run(
        &k,
        &["delete", "networkpolicy", "db", "--namespace", "a"],
        None,
    );
    assert!(server.get("NetworkPolicy", Some("a"), "db").is_none());
    let without = &replaced_text[..replaced_text.find("- apiVersion: networking").unwrap()];
    let deleted = check(without, "delete");
    assert_ne!(deleted, replaced);

    // Errors come back as Status objects, which kubectl prints.
    let out = k
        .command(&["get", "pod", "nope", "--namespace", "a"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"pods "nope" not found"#),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
