//! `nftpol diff` on the command line: the bundled example before and after a policy edit,
//! read from files and from directories; the exit statuses (0 no change, 1 changes, 2
//! error) and `--fail-on`; the JSON shape tools read, each change checked against
//! `nftpol explain` before and after.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");

fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster.yaml"))
        .unwrap()
}

/// The example with payments/allow-metrics-scrape admitting port 8443 instead of the
/// named port `metrics` (9090): prometheus loses 9090 on the payments pods it reached.
fn edited() -> String {
    let s = example();
    let at = s
        .find("name: allow-metrics-scrape\n      namespace: payments")
        .unwrap();
    let port = at + s[at..].find("- port: metrics").unwrap();
    format!(
        "{}- port: 8443{}",
        &s[..port],
        &s[port + "- port: metrics".len()..]
    )
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn no_change_exits_0() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a.yaml", &example());
    let o = run(
        d.path(),
        &["diff", "--before", "a.yaml", "--after", "a.yaml"],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "no connection changes its verdict\n"
    );
    let o = run(
        d.path(),
        &[
            "diff", "--before", "a.yaml", "--after", "a.yaml", "-o", "json",
        ],
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"changes": []}));
}

#[test]
fn a_closed_port_is_listed_and_agrees_with_explain() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "before.yaml", &example());
    write(d.path(), "after.yaml", &edited());
    let args = [
        "diff",
        "--before",
        "before.yaml",
        "--after",
        "after.yaml",
        "-o",
        "json",
    ];
    let o = run(d.path(), &args);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let changes = v["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    let mut saw_9090 = false;
    for c in changes {
        for key in [
            "sources",
            "destinations",
            "protocol",
            "ports",
            "families",
            "before",
            "after",
            "because",
        ] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
        let from = c["sources"][0].as_str().unwrap();
        let to = c["destinations"][0].as_str().unwrap();
        let port = c["ports"][0][0].as_u64().unwrap();
        let proto = c["protocol"].as_str().unwrap().to_ascii_lowercase();
        saw_9090 |= port == 9090 && from == "monitoring/prometheus-0" && c["after"] == "denied";
        // explain, before and after, says what the change says (pods only here).
        for (file, want) in [("before.yaml", &c["before"]), ("after.yaml", &c["after"])] {
            let family = c["families"][0].as_str().unwrap();
            let e = run(
                d.path(),
                &[
                    "explain",
                    "--from",
                    from,
                    "--to",
                    to,
                    "--port",
                    &format!("{proto}/{port}"),
                    "--family",
                    family,
                    "-o",
                    "json",
                    file,
                ],
            );
            assert_eq!(code(&e), 0, "{}", String::from_utf8_lossy(&e.stderr));
            let e: Value = serde_json::from_slice(&e.stdout).unwrap();
            let got = if e["allowed"] == true {
                "allowed"
            } else {
                "denied"
            };
            assert_eq!(got, want, "{file}: {from} -> {to} {proto}/{port}");
        }
    }
    assert!(saw_9090, "{v}");
    // It only closes: CI gating on openings passes, on closings fails.
    let mut gate = args.to_vec();
    gate.extend(["--fail-on", "opened"]);
    assert_eq!(code(&run(d.path(), &gate)), 0);
    gate.pop();
    gate.push("closed");
    assert_eq!(code(&run(d.path(), &gate)), 1);
    // Text: the closed change with its reasons.
    let o = run(
        d.path(),
        &["diff", "--before", "before.yaml", "--after", "after.yaml"],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("closed: TCP 9090"), "{text}");
    assert!(text.contains("from: monitoring/prometheus-0"), "{text}");
    assert!(
        text.contains("before: ingress of payments/") && text.contains("allow-metrics-scrape"),
        "{text}"
    );
}

#[test]
fn directories_and_shared_cluster_files() {
    let d = tempfile::tempdir().unwrap();
    // The whole example as the shared part; after it, ingress-nginx (no policy before)
    // may send nothing.
    write(d.path(), "shared/cluster.yaml", &example());
    write(d.path(), "shared/notes.txt", "not read");
    write(d.path(), "before/empty.yml", "");
    let deny = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-egress", "namespace": "ingress-nginx"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]}
    });
    write(d.path(), "after/deny.json", &deny.to_string());
    let o = run(
        d.path(),
        &[
            "diff",
            "--cluster",
            "shared",
            "--before",
            "before",
            "--after",
            "after",
            "-o",
            "json",
        ],
    );
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let changes = v["changes"].as_array().unwrap();
    assert!(
        changes.iter().all(|c| c["after"] == "denied"
            && c["sources"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s.as_str().unwrap().starts_with("ingress-nginx/"))),
        "{v}"
    );
    assert!(!changes.is_empty());
}

#[test]
fn bad_input_exits_2_and_prints_nothing() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a.yaml", &example());
    write(
        d.path(),
        "bad.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: y}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: nonsense}}]}]}\n",
    );
    let o = run(
        d.path(),
        &["diff", "--before", "a.yaml", "--after", "bad.yaml"],
    );
    assert_eq!(code(&o), 2);
    assert!(o.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.yaml"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(
        d.path(),
        &["diff", "--before", "a.yaml", "--after", "missing.yaml"],
    );
    assert_eq!(code(&o), 2);
}

/// `-o dot` renders with Graphviz's `dot` (Debian's graphviz; `.ci/deps` installs it), and
/// its edges are the JSON's changes: one per change, between the nodes of its sources and
/// destinations, green when it opens, red when it closes.
#[test]
fn dot_renders_and_its_edges_are_the_changes() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "before.yaml", &example());
    // ingress-nginx may send nothing, and the payments metrics port moves.
    let deny = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-egress, namespace: ingress-nginx}\nspec: {podSelector: {}, policyTypes: [Egress]}\n";
    write(d.path(), "after.yaml", &format!("{}{deny}", edited()));
    let args = |fmt: &'static str| {
        [
            "diff",
            "--before",
            "before.yaml",
            "--after",
            "after.yaml",
            "-o",
            fmt,
        ]
    };
    let json: Value = serde_json::from_slice(&run(d.path(), &args("json")).stdout).unwrap();
    let changes = json["changes"].as_array().unwrap();
    assert!(changes.len() > 3, "{json}");
    let o = run(d.path(), &args("dot"));
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    write(d.path(), "diff.dot", &String::from_utf8(o.stdout).unwrap());
    let plain = Command::new("dot")
        .args(["-Tplain", "diff.dot"])
        .current_dir(d.path())
        .output()
        .unwrap_or_else(|e| panic!("dot (graphviz) is needed: .ci/deps installs it: {e}"));
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    // Expected: lists numbered in order of first appearance, as the dot output names them.
    let mut ids: Vec<Value> = Vec::new();
    let mut expected: Vec<(String, String, String)> = Vec::new();
    for c in changes {
        let mut node = |list: &Value| -> String {
            let i = ids.iter().position(|x| x == list).unwrap_or_else(|| {
                ids.push(list.clone());
                ids.len() - 1
            });
            format!("g{i}")
        };
        let (s, t) = (node(&c["sources"]), node(&c["destinations"]));
        let colour = if c["after"] == "allowed" {
            "green"
        } else {
            "red"
        };
        expected.push((s, t, colour.to_string()));
    }
    let text = String::from_utf8(plain.stdout).unwrap();
    let mut got: Vec<(String, String, String)> = text
        .lines()
        .filter(|l| l.starts_with("edge "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (
                words[1].to_string(),
                words[2].to_string(),
                words[words.len() - 1].to_string(),
            )
        })
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "{text}");
    let nodes = text.lines().filter(|l| l.starts_with("node ")).count();
    assert_eq!(nodes, ids.len(), "{text}");
}
