//! The `nftpol` binary: output, exit status, warnings, input forms; and that the scripts it
//! writes load (`nft -c -f`: needs root, those tests are `#[ignore]`d, see common/root.rs).

mod common;
#[path = "common/root.rs"]
mod needs_root;

#[path = "common/cli.rs"]
mod cli_util;

use std::path::Path;
use std::process::{Command, Stdio};

use cli_util::*;
use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// compile
// ---------------------------------------------------------------------------------------

#[test]
fn compile_prints_the_script_on_stdout() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let o = d.run(&["compile", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.starts_with("#!/usr/sbin/nft -f\n"), "{s}");
    assert!(s.contains("table inet nftpol {"), "{s}");
    assert!(s.contains("chain ingress/x/a {"), "{s}");
    assert!(s.contains("chain egress/y/c {"), "{s}");
    assert!(!s.contains("chain ingress/x/b"), "x/b is not isolated");
    assert!(s.ends_with("}\n"));
    assert!(!stderr(&o).contains("error"), "{}", stderr(&o));
}

/// The `--log-*` flags shape the logging rules exactly as they reach the controller's
/// kernel; a rate of 0 is refused.
#[test]
fn compile_takes_the_verdict_log_flags() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let default = stdout(&d.run(&["compile", "in.yaml"]));
    assert!(
        default.contains("ct state new counter limit rate 10/second burst 20 packets log prefix \"d ingress/x/a\" group 9309\n"),
        "{default}"
    );
    assert!(
        !default.contains("log prefix \"a "),
        "allowed connections are not logged by default"
    );
    let o = d.run(&[
        "compile",
        "--log-allowed",
        "--log-rate",
        "3",
        "--log-burst",
        "4",
        "--log-group",
        "7",
        "in.yaml",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("limit rate 3/second burst 4 packets log prefix \"d ingress/x/a\" group 7"),
        "{s}"
    );
    assert!(
        s.contains("log prefix \"a ingress/x/a\" group 7 accept"),
        "{s}"
    );
    let off = stdout(&d.run(&["compile", "--log-denied=false", "in.yaml"]));
    assert!(!off.contains(" log "), "{off}");
    let o = d.run(&["compile", "--log-rate", "0", "in.yaml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--log-rate"), "{}", stderr(&o));
}

#[test]
fn compile_for_a_node_keeps_only_its_pods() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let o = d.run(&["compile", "--node", "n2", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("chain egress/y/c {"), "{s}");
    assert!(!s.contains("chain ingress/x/a"), "{s}");
}

#[test]
fn compile_output_writes_the_file_whole() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let expected = stdout(&d.run(&["compile", "in.yaml"]));
    let o = d.run(&["compile", "--output-file", "out.nft", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "nothing on stdout with --output-file");
    assert_eq!(
        std::fs::read_to_string(d.path().join("out.nft")).unwrap(),
        expected
    );
    // No temporary file left beside it.
    assert_eq!(d.files(), ["in.yaml", "out.nft"]);
    // Short form, and replacing an existing file.
    d.write("out.nft", "old\n");
    let o = d.run(&["compile", "--output-file", "out.nft", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(d.path().join("out.nft")).unwrap(),
        expected
    );
    assert_eq!(d.files(), ["in.yaml", "out.nft"]);
}

#[test]
fn compile_bad_input_exits_2_and_writes_no_file() {
    let d = Dir::new();
    d.write("good.yaml", &cluster_text());
    d.write("bad.yaml", BAD_POLICY);
    let o = d.run(&[
        "compile",
        "--output-file",
        "out.nft",
        "good.yaml",
        "bad.yaml",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(!d.path().join("out.nft").exists());
    assert_eq!(d.files(), ["bad.yaml", "good.yaml"]);
    let e = stderr(&o);
    assert!(e.contains("bad.yaml"), "{e}");
    assert!(e.contains("NetworkPolicy x/p"), "{e}");
    assert!(
        e.contains("spec.ingress[0].from[0].ipBlock.except[0]"),
        "{e}"
    );
    assert!(e.contains("11.0.0.0/16"), "{e}");
    assert!(o.stdout.is_empty());
}

#[test]
fn compile_bad_input_leaves_an_existing_output_untouched() {
    let d = Dir::new();
    d.write("bad.yaml", BAD_POLICY);
    d.write("out.nft", "previous ruleset\n");
    let o = d.run(&["compile", "--output-file", "out.nft", "bad.yaml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(d.path().join("out.nft")).unwrap(),
        "previous ruleset\n"
    );
    assert_eq!(d.files(), ["bad.yaml", "out.nft"]);
}

#[test]
fn compile_without_stdout_on_a_syntax_error() {
    let d = Dir::new();
    d.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x: y\n",
    );
    let o = d.run(&["compile", "broken.yaml"]);
    assert_eq!(code(&o), 2);
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("broken.yaml:4:10"), "{}", stderr(&o));
}

#[test]
fn missing_input_file_exits_2_naming_it() {
    let d = Dir::new();
    let o = d.run(&["compile", "--output-file", "out.nft", "nope.yaml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("nope.yaml"), "{}", stderr(&o));
    assert!(!d.path().join("out.nft").exists());
}

#[test]
fn duplicate_objects_across_files_exit_2_naming_both() {
    let d = Dir::new();
    d.write("one.yaml", &cluster_text());
    d.write("two.yaml", &yaml_docs(&[pod("x", "a").ip("10.244.1.50")]));
    let o = d.run(&["compile", "one.yaml", "two.yaml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("Pod x/a") && e.contains("one.yaml") && e.contains("two.yaml"),
        "{e}"
    );
}

#[test]
fn dash_reads_stdin() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let from_file = stdout(&d.run(&["compile", "in.yaml"]));
    let o = run_in(d.path(), &["compile", "-"], Some(&cluster_text()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), from_file);
    // Half from a file, half from stdin.
    let objs = cluster();
    let pols = yaml_docs(&policies());
    d.write("cluster.yaml", &yaml_docs(&objs));
    let o = run_in(d.path(), &["compile", "cluster.yaml", "-"], Some(&pols));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), from_file);
    // Errors name stdin.
    let o = run_in(d.path(), &["compile", "-"], Some(BAD_POLICY));
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("<stdin>"), "{}", stderr(&o));
}

#[test]
fn a_service_is_skipped_with_one_warning_naming_it() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let plain = stdout(&d.run(&["compile", "in.yaml"]));
    let service = "---\napiVersion: v1\nkind: Service\nmetadata: {name: frontend-svc, namespace: x}\nspec: {ports: [{port: 80}]}\n";
    d.write("with-svc.yaml", &format!("{}{service}", cluster_text()));
    let o = d.run(&["compile", "with-svc.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), plain, "the Service changes nothing");
    let e = stderr(&o);
    let lines: Vec<&str> = e.lines().filter(|l| l.contains("Service")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(lines[0].contains("frontend-svc"), "{e}");
    assert_eq!(e.lines().count(), 1, "only that warning: {e}");
}

#[test]
fn a_namespace_referred_to_but_not_given_gives_a_warning() {
    let d = Dir::new();
    // Namespace y is not given.
    let objs: Vec<Obj> = cluster()
        .into_iter()
        .filter(|o| o.0["metadata"]["name"] != "y" || o.0["kind"] != "Namespace")
        .collect();
    d.write("in.yaml", &yaml_docs(&objs));
    let o = d.run(&["compile", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    let lines: Vec<&str> = e.lines().filter(|l| l.contains("namespace")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(lines[0].contains("y"), "{e}");
    // With every namespace given, nothing is said.
    d.write("all.yaml", &cluster_text());
    let o = d.run(&["compile", "all.yaml"]);
    assert_eq!(code(&o), 0);
    assert_eq!(stderr(&o), "");
}

#[test]
fn a_cidr_with_host_bits_compiles_as_its_network_with_a_warning() {
    let d = Dir::new();
    let with = |cidr: &str, except: &str| {
        let mut objs = cluster();
        objs.push(
            netpol("x", "p")
                .selecting("pod", "a")
                .ingress(json!([{"from": [{"ipBlock": {"cidr": cidr, "except": [except]}}]}])),
        );
        yaml_docs(&objs)
    };
    d.write("canonical.yaml", &with("10.0.0.0/16", "10.0.1.0/24"));
    d.write("host-bits.yaml", &with("10.0.0.1/16", "10.0.1.7/24"));
    let canonical = d.run(&["compile", "canonical.yaml"]);
    assert_eq!(code(&canonical), 0, "{}", stderr(&canonical));
    assert_eq!(
        stderr(&canonical),
        "",
        "a canonical CIDR is not warned about"
    );
    let o = d.run(&["compile", "host-bits.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), stdout(&canonical), "read as its network");
    let e = stderr(&o);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 2, "one warning per field: {e}");
    for (line, field, given, read) in [
        (
            lines[0],
            "spec.ingress[0].from[0].ipBlock.cidr",
            "10.0.0.1/16",
            "10.0.0.0/16",
        ),
        (
            lines[1],
            "spec.ingress[0].from[0].ipBlock.except[0]",
            "10.0.1.7/24",
            "10.0.1.0/24",
        ),
    ] {
        assert!(line.contains("WARN"), "{line}");
        for word in ["host-bits.yaml", "NetworkPolicy x/p", field, given, read] {
            assert!(line.contains(word), "should name {word:?}: {line}");
        }
    }
}

#[test]
fn an_invalid_label_key_exits_2_naming_object_and_field() {
    let d = Dir::new();
    let mut objs = cluster();
    objs.push(netpol("x", "p").pod_selector(json!({"matchLabels": {"bad key!": "v"}})));
    d.write("in.yaml", &yaml_docs(&objs));
    let o = d.run(&["compile", "in.yaml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let e = stderr(&o);
    for word in [
        "in.yaml",
        "NetworkPolicy x/p",
        "spec.podSelector.matchLabels",
        "bad key!",
    ] {
        assert!(e.contains(word), "should name {word:?}: {e}");
    }
}

#[test]
fn an_input_without_objects_warns() {
    let d = Dir::new();
    d.write("empty.yaml", "# nothing here\n---\n");
    d.write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\n",
    );
    for file in ["empty.yaml", "svc.yaml"] {
        let o = d.run(&["compile", file]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stdout(&o).contains("table inet nftpol"), "still a script");
        let e = stderr(&o);
        assert!(
            e.lines().any(|l| l.contains("WARN")
                && l.contains("no Namespace, Pod or NetworkPolicy")
                && l.contains(file)),
            "{file}: {e}"
        );
    }
    // One object is enough to say nothing.
    d.write("ns.yaml", &yaml_docs(&[ns("x")]));
    let o = d.run(&["compile", "ns.yaml"]);
    assert_eq!(stderr(&o), "");
}

/// A warning-producing compile run under `script`, which gives it a terminal; `NO_COLOR`
/// as given. Fails when `script` is not installed: Debian's bsdutils (essential, so always
/// there; .ci/deps names it anyway) has it.
fn on_a_terminal(d: &Dir, no_color: Option<&str>) -> String {
    let script = Path::new("/usr/bin/script");
    assert!(
        script.exists(),
        "the terminal half needs /usr/bin/script (Debian package bsdutils, util-linux \
         elsewhere; see .ci/deps)"
    );
    let mut cmd = Command::new(script);
    cmd.args([
        "-qec",
        &format!("{BIN} compile svc.yaml >/dev/null"),
        "/dev/null",
    ])
    .current_dir(d.path())
    .env_remove("RUST_LOG")
    .env_remove("NO_COLOR")
    .stdin(Stdio::null());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let o = cmd.output().expect("run script");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A directory with a Service, which compile warns about (and skips).
fn warning_input() -> Dir {
    let d = Dir::new();
    d.write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\n",
    );
    d
}

#[test]
fn warnings_are_plain_on_a_pipe() {
    let d = warning_input();
    let o = d.run(&["compile", "svc.yaml"]);
    let e = stderr(&o);
    assert!(e.contains("WARN"), "{e}");
    assert!(!e.contains('\x1b'), "no escape codes on a pipe: {e:?}");
}

#[test]
fn warnings_are_coloured_on_a_terminal_unless_no_color() {
    let d = warning_input();
    let tty = on_a_terminal(&d, None);
    assert!(tty.contains("WARN"), "{tty:?}");
    assert!(tty.contains('\x1b'), "colour on a terminal: {tty:?}");
    let plain = on_a_terminal(&d, Some("1"));
    assert!(plain.contains("WARN"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "NO_COLOR set: {plain:?}");
}

#[test]
fn kind_list_input_works() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let expected = stdout(&d.run(&["compile", "in.yaml"]));
    let mut items: Vec<serde_json::Value> = cluster().into_iter().map(Into::into).collect();
    items.extend(policies().into_iter().map(serde_json::Value::from));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    // As YAML (block style, as kubectl writes it) ...
    let mut yaml =
        String::from("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n");
    for item in &items {
        yaml.push_str(&format!("- {}\n", serde_json::to_string(item).unwrap()));
    }
    d.write("list.yaml", &yaml);
    let o = d.run(&["compile", "list.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);
    // ... and as JSON.
    d.write("list.json", &serde_json::to_string_pretty(&list).unwrap());
    let o = d.run(&["compile", "list.json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);
}

#[test]
fn json_input_works() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let expected = stdout(&d.run(&["compile", "in.yaml"]));
    let mut objs = cluster();
    objs.extend(policies());
    let stream: String = objs
        .iter()
        .map(|o| serde_json::to_string_pretty(&o.0).unwrap() + "\n")
        .collect();
    d.write("in.json", &stream);
    let o = d.run(&["compile", "in.json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);
}

#[test]
fn block_style_yaml_as_kubectl_writes_it() {
    let d = Dir::new();
    let text = "apiVersion: v1
kind: Namespace
metadata:
  name: x
---
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels:
    pod: a
spec:
  nodeName: n1
  containers:
  - name: main
    image: app
    ports:
    - name: http
      containerPort: 8080
status:
  phase: Running
  hostIP: 192.168.100.1
  podIP: 10.244.1.11
  podIPs:
  - ip: 10.244.1.11
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
  namespace: x
spec:
  podSelector:
    matchLabels:
      pod: a
  ingress:
  - ports:
    - port: http
";
    d.write("in.yaml", text);
    let o = d.run(&[
        "explain",
        "--from",
        "203.0.113.9",
        "--to",
        "x/a",
        "--port",
        "tcp/8080",
        "in.yaml",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().next(), Some("allowed"), "{}", stdout(&o));
}

// ---------------------------------------------------------------------------------------
// explain, graph
// ---------------------------------------------------------------------------------------

#[test]
fn explain_prints_allowed_first_and_exits_0() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let o = d.run(&[
        "explain", "--from", "x/b", "--to", "x/a", "--port", "tcp/80", "in.yaml",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    assert_eq!(s.lines().next(), Some("allowed"), "{s}");
    assert!(s.contains("x/allow-b"), "names the policy: {s}");
}

#[test]
fn explain_prints_denied_first_and_exits_0() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    for (from, to, port) in [
        ("x/b", "x/a", "tcp/81"),
        ("y/c", "x/a", "tcp/80"),
        ("y/c", "x/b", "tcp/443"),
        ("y/c", "8.8.8.8", "tcp/443"),
    ] {
        let o = d.run(&[
            "explain", "--from", from, "--to", to, "--port", port, "in.yaml",
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let s = stdout(&o);
        assert_eq!(
            s.lines().next(),
            Some("denied"),
            "{from} -> {to} {port}: {s}"
        );
    }
    let o = d.run(&[
        "explain", "--from", "y/c", "--to", "10.9.9.9", "--port", "udp/53", "in.yaml",
    ]);
    assert_eq!(stdout(&o).lines().next(), Some("allowed"), "{}", stdout(&o));
}

#[test]
fn explain_family_flag() {
    let d = Dir::new();
    let objs = vec![
        ns("x"),
        pod("x", "a")
            .label("pod", "a")
            .ip("10.244.1.11")
            .ip6("fd00::11"),
        pod("x", "b")
            .label("pod", "b")
            .ip("10.244.1.12")
            .ip6("fd00::12"),
        netpol("x", "p")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{"ipBlock": {"cidr": "fd00::/64"}}]}])),
    ];
    d.write("in.yaml", &yaml_docs(&objs));
    let args = |fam: &'static str| {
        vec![
            "explain", "--from", "x/b", "--to", "x/a", "--port", "tcp/80", "--family", fam,
            "in.yaml",
        ]
    };
    let o = d.run(&args("ipv6"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().next(), Some("allowed"));
    assert!(stdout(&o).contains("fd00::12"), "{}", stdout(&o));
    let o = d.run(&args("ipv4"));
    assert_eq!(stdout(&o).lines().next(), Some("denied"));
}

#[test]
fn explain_unknown_pod_exits_2() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let o = d.run(&[
        "explain", "--from", "x/nope", "--to", "x/a", "--port", "tcp/80", "in.yaml",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("x/nope"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let o = d.run(&[
        "explain", "--from", "x/b", "--to", "q/a", "--port", "tcp/80", "in.yaml",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn explain_bad_port_exits_2() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    for port in ["tcp/0", "icmp/1", "80", "tcp/70000"] {
        let o = d.run(&[
            "explain", "--from", "x/b", "--to", "x/a", "--port", port, "in.yaml",
        ]);
        assert_eq!(code(&o), 2, "{port}: {}", stderr(&o));
    }
}

#[test]
fn graph_prints_isolation_and_origins() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let o = d.run(&["graph", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("pod x/a:"), "{s}");
    assert!(s.contains("isolated by x/allow-b"), "{s}");
    assert!(s.contains("x/allow-b ingress[0].from[0]"), "{s}");
    let o = d.run(&["graph", "--node", "n1", "in.yaml"]);
    assert!(!stdout(&o).contains("pod y/c:"), "{}", stdout(&o));
}

#[test]
fn explain_says_why_a_denied_direction_is_denied() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let o = d.run(&[
        "explain", "--from", "y/c", "--to", "x/a", "--port", "tcp/81", "in.yaml",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    assert_eq!(s.lines().next(), Some("denied"), "{s}");
    assert!(
        s.contains(
            "x/allow-b ingress[0]: peer does not match; port does not match: it allows tcp/80"
        ),
        "{s}"
    );
    assert!(
        s.contains("pod y/c is in namespace y; a podSelector alone selects pods of x"),
        "{s}"
    );
}

#[test]
fn explain_and_graph_print_json_with_output_json() {
    let d = Dir::new();
    d.write("in.yaml", &cluster_text());
    let o = d.run(&[
        "explain", "--from", "x/b", "--to", "x/a", "--port", "tcp/81", "--output", "json",
        "in.yaml",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["allowed"], false);
    assert_eq!(
        v["from"],
        json!({"kind": "pod", "id": "x/b", "ip": "10.244.1.12"})
    );
    assert_eq!(v["ingress"]["isolated_by"], json!(["x/allow-b"]));
    assert_eq!(
        v["ingress"]["why"][0]["rules"][0]["port"]["allowed"],
        json!([{"protocol": "tcp", "port": "80"}])
    );
    let o = d.run(&["graph", "--output", "json", "in.yaml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let pods = v["pods"].as_array().unwrap();
    let a = pods.iter().find(|p| p["name"] == "a").expect("x/a");
    assert_eq!(a["egress"], serde_json::Value::Null);
    let allow = &a["ingress"]["allows"][0];
    assert_eq!(allow["policy"], "x/allow-b");
    assert_eq!(allow["ports"], json!(["tcp/80"]));
    let peer = allow["peer"].as_u64().unwrap() as usize;
    assert_eq!(v["peers"][peer]["addresses"], json!(["10.244.1.12"]));
    let o = d.run(&["graph", "--output", "yaml", "in.yaml"]);
    assert_eq!(code(&o), 2, "clap refuses an unknown format");
}

// ---------------------------------------------------------------------------------------
// nft -c
// ---------------------------------------------------------------------------------------

/// `nft -c -f file`: Ok, or Err with nft's message.
fn nft_check(file: &Path) -> Result<(), String> {
    let o = Command::new(NFT)
        .arg("-c")
        .arg("-f")
        .arg(file)
        .output()
        .expect("run nft");
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", stderr(&o), stdout(&o)))
    }
}

fn check_scripts(name: &str, objs: Vec<Obj>, nodes: &[Option<&str>]) {
    let d = Dir::new();
    d.write("in.yaml", &yaml_docs(&objs));
    for node in nodes {
        let mut args = vec!["compile", "--output-file", "out.nft"];
        if let Some(n) = node {
            args.extend(["--node", n]);
        }
        args.push("in.yaml");
        let o = d.run(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let file = d.path().join("out.nft");
        if let Err(msg) = nft_check(&file) {
            panic!(
                "{name} (node {node:?}): nft -c -f refused the script:\n{msg}\n{}",
                std::fs::read_to_string(&file).unwrap()
            );
        }
    }
}

#[test]
#[ignore = "needs root: nft -c opens a netlink socket (CAP_NET_ADMIN)"]
fn nft_accepts_compiled_scripts() {
    needs_root::require_root_and_nft("nft_accepts_compiled_scripts");
    let mut objs = cluster();
    objs.extend(policies());
    check_scripts("cluster", objs, &[None, Some("n1"), Some("n2"), Some("n9")]);
}

#[test]
#[ignore = "needs root: nft -c opens a netlink socket (CAP_NET_ADMIN)"]
fn nft_accepts_an_empty_ruleset() {
    needs_root::require_root_and_nft("nft_accepts_an_empty_ruleset");
    check_scripts("empty", vec![ns("x")], &[None]);
}

#[test]
#[ignore = "needs root: nft -c opens a netlink socket (CAP_NET_ADMIN)"]
fn nft_accepts_dual_stack_overlapping_ports_and_named_ports() {
    needs_root::require_root_and_nft("nft_accepts_dual_stack_overlapping_ports_and_named_ports");
    let objs = vec![
        ns("x"),
        ns("y").label("team", "y"),
        pod("x", "a")
            .label("pod", "a")
            .node("n1")
            .ip("10.244.1.11")
            .ip6("fd00:10:244:1::11")
            .host_ip("192.168.100.1")
            .port("http", 8080, "TCP")
            .port("dns", 53, "UDP"),
        pod("x", "b")
            .label("pod", "b")
            .node("n1")
            .ip("10.244.1.12")
            .ip6("fd00:10:244:1::12")
            .port("http", 80, "TCP"),
        pod("y", "c")
            .label("pod", "c")
            .node("n2")
            .ip("10.244.2.21")
            .ip6("fd00:10:244:2::21")
            .port("http", 9090, "TCP"),
        netpol("x", "in").selecting("pod", "a").ingress(json!([
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.244.1.12/32"]}}], "ports": [{"port": 80, "endPort": 90}, {"port": "http"}]},
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/12"}}], "ports": [{"port": 85, "endPort": 100}, {"port": "dns", "protocol": "UDP"}]},
            {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "SCTP"}]},
            {"from": [{"ipBlock": {"cidr": "::/0", "except": ["fd00::/8"]}}], "ports": [{"port": 443}]},
            {"from": [{"namespaceSelector": {}}]},
            {"from": [{"ipBlock": {"cidr": "10.2.3.0/24"}}]},
        ])),
        netpol("x", "out")
            .policy_types(&["Egress"])
            .egress(json!([
                {"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]},
                {"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]},
            ])),
        netpol("y", "deny").policy_types(&["Ingress", "Egress"]),
    ];
    check_scripts("mixed", objs, &[None, Some("n1"), Some("n2")]);
}
