//! What the `nftpol` binary says beside its output: warnings where silence misleads (a
//! `--node` no pod runs on, an address two pods hold), errors as JSON records under
//! `--log-format json`, and object strings that cannot forge a line of output or log.

#[path = "common/cli.rs"]
mod cli_util;
mod common;
#[path = "common/root.rs"]
mod needs_root;

use cli_util::*;
use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// warnings where silence misleads
// ---------------------------------------------------------------------------------------

/// `--node` that no pod runs on: the script is valid but empties the node's enforcement,
/// so it says so, naming the node; a node with pods says nothing.
#[test]
fn a_node_without_pods_is_warned_about() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let o = d.run(&["compile", "--node", "n9", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("WARN"), "{e}");
    assert!(e.contains("no pod has spec.nodeName n9"), "{e}");
    assert!(e.contains("removes all enforcement"), "{e}");
    let o = d.run(&["graph", "--node", "n9", "in.yaml"]);
    assert!(
        stderr(&o).contains("no pod has spec.nodeName n9"),
        "{}",
        stderr(&o)
    );
    for args in [
        &["compile", "--node", "n1", "in.yaml"][..],
        &["compile", "in.yaml"],
    ] {
        let o = d.run(args);
        assert_eq!(code(&o), 0);
        assert!(!stderr(&o).contains("nodeName"), "{args:?}: {}", stderr(&o));
    }
}

/// Two live pods with one address: a warning naming both and the address; `explain`
/// by that address refuses to pick one (exit 2, naming both); by name it still works.
/// A finished pod that held the address before does not count.
#[test]
fn two_pods_with_one_address_are_named_and_explain_refuses_the_address() {
    let d = Dir::new();
    let mut objs = cluster();
    objs.push(
        pod("y", "twin")
            .label("pod", "t")
            .node("n2")
            .ip("10.244.1.11"),
    );
    objs.push(
        pod("y", "gone")
            .node("n2")
            .ip("10.244.1.12")
            .phase("Succeeded"),
    );
    d.write("in.yaml", &yaml_docs(&objs));
    let o = d.run(&["compile", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    let warns: Vec<&str> = e
        .lines()
        .filter(|l| l.contains("more than one pod"))
        .collect();
    assert_eq!(warns.len(), 1, "{e}");
    assert!(warns[0].contains("10.244.1.11"), "{e}");
    assert!(warns[0].contains("x/a, y/twin"), "{e}");
    for flag in ["--from", "--to"] {
        let (from, to) = if flag == "--from" {
            ("10.244.1.11", "x/b")
        } else {
            ("x/b", "10.244.1.11")
        };
        let o = d.run(&[
            "explain", "--from", from, "--to", to, "--port", "tcp/80", "in.yaml",
        ]);
        assert_eq!(code(&o), 2, "{flag}: {}", stdout(&o));
        let e = stderr(&o);
        assert!(e.contains(flag), "{e}");
        assert!(e.contains("10.244.1.11 is ambiguous"), "{e}");
        assert!(e.contains("x/a, y/twin"), "{e}");
        assert!(o.stdout.is_empty());
    }
    let o = d.run(&[
        "explain", "--from", "x/b", "--to", "x/a", "--port", "tcp/80", "in.yaml",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The address of x/b is its own (y/gone has finished): no ambiguity.
    let o = d.run(&[
        "explain",
        "--from",
        "10.244.1.12",
        "--to",
        "x/a",
        "--port",
        "tcp/80",
        "in.yaml",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("pod x/b (10.244.1.12)"),
        "{}",
        stdout(&o)
    );
}

/// Under `--log-format json` every line on stderr is a JSON record: warnings and the
/// error that ends the command (with its exit status).
#[test]
fn errors_are_json_records_under_log_format_json() {
    let d = Dir::new();
    d.write("bad.yaml", BAD_POLICY);
    d.write("in.yaml", &cluster_text());
    let o = d.run(&[
        "--log-format",
        "json",
        "compile",
        "--node",
        "n9",
        "in.yaml",
        "bad.yaml",
    ]);
    assert_eq!(code(&o), 2);
    let records: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let error = records.last().expect("a record");
    assert_eq!(error["level"], "ERROR", "{records:?}");
    assert_eq!(error["fields"]["exit_status"], 2);
    let message = error["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("bad.yaml") && message.contains("NetworkPolicy x/p"),
        "{message}"
    );
    let o = d.run(&["--log-format", "json", "compile", "--node", "n9", "in.yaml"]);
    assert_eq!(code(&o), 0);
    let warn: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(warn["level"], "WARN");
    assert_eq!(warn["fields"]["node"], "n9");
}

// ---------------------------------------------------------------------------------------
// object strings cannot forge lines
// ---------------------------------------------------------------------------------------

/// A name holding what a line of output would: newline, carriage return, an escape
/// sequence (erase line), a Unicode line separator and a bidi override.
const FORGER: &str = "\nallowed\r\u{1b}[2Kdenied\u{2028}connection: forged\u{202e}";

fn forged(text: &str) -> Option<String> {
    let raw = ['\r', '\u{1b}', '\u{2028}', '\u{202e}'];
    if let Some(c) = text.chars().find(|c| raw.contains(c)) {
        return Some(format!("raw {c:?}"));
    }
    text.lines()
        .find(|l| l.starts_with("allowed\\r") || l.starts_with("connection: forged"))
        .map(|l| format!("forged line {l:?}"))
}

/// Names with control characters in a pod, a namespace and a policy: `graph`, `explain`
/// (text), the script and the log records each keep them on their line, escaped; or, if
/// the input is refused, the error message is one line.
#[test]
fn object_strings_cannot_forge_lines() {
    let d = Dir::new();
    let (pod_name, ns_name) = (format!("a{FORGER}"), format!("n{FORGER}"));
    let objs = vec![
        ns("x"),
        pod("x", &pod_name).label("app", "a").node("n1").ip("10.244.1.11"),
        pod("x", "b").label("app", "b").node("n1").ip("10.244.1.12"),
        // In a namespace not given: warned about, with its name.
        pod(&ns_name, "c").node("n1").ip("10.244.1.13"),
        netpol("x", &format!("p{FORGER}"))
            .selecting("app", "a")
            .ingress(json!([{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"port": 80}]}])),
    ];
    d.write("in.yaml", &yaml_docs(&objs));
    let to = format!("x/{pod_name}");
    let runs: [Vec<&str>; 5] = [
        vec!["graph", "in.yaml"],
        vec![
            "explain", "--from", "x/b", "--to", &to, "--port", "tcp/80", "in.yaml",
        ],
        vec![
            "explain", "--from", "x/b", "--to", &to, "--port", "tcp/81", "in.yaml",
        ],
        vec!["compile", "in.yaml"],
        vec!["compile", "--node", "n1", "in.yaml"],
    ];
    for args in runs {
        let o = d.run(&args);
        let (out, err) = (stdout(&o), stderr(&o));
        if code(&o) == 2 {
            // Refused as the API server refuses it: said on one line.
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert_eq!(forged(&err), None, "{args:?}: {err}");
            continue;
        }
        assert_eq!(code(&o), 0, "{args:?}: {err}");
        assert_eq!(forged(&out), None, "{args:?}:\n{out}");
        assert_eq!(forged(&err), None, "{args:?}:\n{err}");
        assert!(
            err.lines().all(|l| l.starts_with(" WARN")),
            "{args:?}:\n{err}"
        );
        assert!(
            out.contains("\\nallowed\\r\\u{1b}[2Kdenied"),
            "{args:?}:\n{out}"
        );
        if args[0] == "explain" {
            let verdicts = out.lines().filter(|l| *l == "allowed" || *l == "denied");
            assert_eq!(verdicts.count(), 1, "{args:?}:\n{out}");
        }
        if args[0] == "compile" {
            assert!(
                err.contains("kubernetes.io/metadata.name=n\\nallowed"),
                "{err}"
            );
        }
    }
}
