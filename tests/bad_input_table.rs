//! Bad input through the binary, one case per class (issue 25): each exits with status 2,
//! its message names the file, the object and the field (or, for a file that cannot be
//! read as text at all, the file, the line and what is wrong), and the output file that was
//! there before is left as it was. Also the flags that relax or complete the input
//! (`--validate=warn`, `--namespace`) and the List shapes kubectl prints.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
const BEFORE: &str = "# the script of an earlier run\n";

/// `nftpol compile --output-file OUT EXTRA... INPUT` in `dir`: the one place that spells the
/// compile invocation and its output flag.
fn compile_into(dir: &Path, out: &str, extra: &[&str], input: &str) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .arg("compile")
        .arg("--output-file")
        .arg(out)
        .args(extra)
        .arg(input)
        .env("NO_COLOR", "1")
        .output()
        .expect("run nftpol")
}

/// Writes `text` to `bad.yaml` (or `bad.json`) beside an existing `out.nft`, compiles, and
/// returns stderr after checking the exit status and that `out.nft` is untouched.
fn refused(file: &str, text: &[u8], extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), text).unwrap();
    std::fs::write(dir.path().join("out.nft"), BEFORE).unwrap();
    let out = compile_into(dir.path(), "out.nft", extra, file);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.nft")).unwrap(),
        BEFORE,
        "{stderr}"
    );
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut want = vec![file.to_string(), "out.nft".to_string()];
    want.sort();
    assert_eq!(left, want, "no file is left behind: {stderr}");
    stderr
}

fn np(name_ns: &str, spec: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{{name_ns}}}\nspec: {spec}\n")
}

fn pod(meta: &str, spec: &str, status: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{{meta}}}\nspec: {spec}\nstatus: {status}\n")
}

const RUNNING: &str = "{phase: Running, podIPs: [{ip: 10.0.0.1}]}";

/// (class, file text, the object as named, the field path, words of the problem).
fn cases() -> Vec<(
    &'static str,
    String,
    &'static str,
    &'static str,
    &'static str,
)> {
    let web = "{containers: [{name: c, image: i}]}";
    vec![
        (
            "unknown nftpol.io/mode",
            np("name: p, namespace: x, annotations: {nftpol.io/mode: dry-run}", "{podSelector: {}}"),
            "NetworkPolicy x/p",
            "metadata.annotations[\"nftpol.io/mode\"]",
            "unknown mode \"dry-run\" (expected enforce or audit)",
        ),
        (
            "misspelt matchLabels",
            np("name: p, namespace: x", "{podSelector: {}, ingress: [{from: [{podSelector: {matchLabel: {app: a}}}]}]}"),
            "NetworkPolicy x/p",
            "spec.ingress[0].from[0].podSelector.matchLabel",
            "unknown field",
        ),
        (
            "misspelt except",
            np("name: p, namespace: x", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, excepts: [10.1.0.0/16]}}]}]}"),
            "NetworkPolicy x/p",
            "spec.ingress[0].from[0].ipBlock.excepts",
            "unknown field",
        ),
        (
            "unknown top-level spec field",
            np("name: p, namespace: x", "{podSelector: {}, ingres: []}"),
            "NetworkPolicy x/p",
            "spec.ingres",
            "unknown field",
        ),
        (
            "old apiVersion networking.k8s.io/v1beta1",
            np("name: p, namespace: x", "{podSelector: {}}").replace("networking.k8s.io/v1", "networking.k8s.io/v1beta1"),
            "NetworkPolicy x/p",
            "apiVersion",
            "networking.k8s.io/v1",
        ),
        (
            "old apiVersion extensions/v1beta1",
            np("name: p, namespace: x", "{podSelector: {}}").replace("networking.k8s.io/v1", "extensions/v1beta1"),
            "NetworkPolicy x/p",
            "apiVersion",
            "extensions/v1beta1",
        ),
        (
            "kind in the wrong case",
            np("name: p, namespace: x", "{podSelector: {}}").replace("kind: NetworkPolicy", "kind: Networkpolicy"),
            "Networkpolicy x/p",
            "kind",
            "NetworkPolicy",
        ),
        (
            "kind in lower case",
            np("name: p, namespace: x", "{podSelector: {}}").replace("kind: NetworkPolicy", "kind: networkpolicy"),
            "networkpolicy x/p",
            "kind",
            "NetworkPolicy",
        ),
        (
            "no namespace",
            np("name: p", "{podSelector: {}}"),
            "NetworkPolicy p",
            "metadata.namespace",
            "--namespace",
        ),
        (
            "three policyTypes",
            np("name: p, namespace: x", "{podSelector: {}, policyTypes: [Ingress, Egress, Ingress]}"),
            "NetworkPolicy x/p",
            "spec.policyTypes",
            "at most two",
        ),
        (
            "repeated policyType",
            np("name: p, namespace: x", "{podSelector: {}, policyTypes: [Egress, Egress]}"),
            "NetworkPolicy x/p",
            "spec.policyTypes[1]",
            "twice",
        ),
        (
            "duplicate container port name",
            pod("name: web, namespace: x", "{containers: [{name: c, image: i, ports: [{name: http, containerPort: 80}, {name: http, containerPort: 81}]}]}", RUNNING),
            "Pod x/web",
            "spec.containers[0].ports[1].name",
            "\"http\" is given twice",
        ),
        (
            "namespace name with capitals",
            pod("name: web, namespace: Shop_Prod", web, RUNNING),
            "Pod Shop_Prod/web",
            "metadata.namespace",
            "DNS-1123 label",
        ),
        (
            "namespace name with a slash",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a/b}\n".into(),
            "Namespace a/b",
            "metadata.name",
            "DNS-1123 label",
        ),
        (
            "pod name with a space",
            pod("name: web 0, namespace: x", web, RUNNING),
            "Pod x/web 0",
            "metadata.name",
            "DNS-1123 subdomain",
        ),
        (
            "policy name with a quote",
            np("name: 'web\"0', namespace: x", "{podSelector: {}}"),
            "NetworkPolicy x/web\"0",
            "metadata.name",
            "DNS-1123 subdomain",
        ),
        (
            "policy name with a newline",
            np("name: \"web\\n0\", namespace: x", "{podSelector: {}}"),
            // Escaped: a name cannot forge a line of the message.
            "NetworkPolicy x/web\\n0",
            "metadata.name",
            "DNS-1123 subdomain",
        ),
        (
            "second IPv4 pod address",
            pod("name: web, namespace: x", web, "{phase: Running, podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]}"),
            "Pod x/web",
            "status.podIPs[1].ip",
            "second IPv4",
        ),
        (
            "initContainer port out of range",
            pod("name: web, namespace: x", "{containers: [{name: c, image: i}], initContainers: [{name: s, image: i, ports: [{name: m, containerPort: 70000}]}]}", RUNNING),
            "Pod x/web",
            "spec.initContainers[0].ports[0].containerPort",
            "70000 is not a port number",
        ),
        (
            "23-digit policy port",
            np("name: p, namespace: x", "{podSelector: {}, ingress: [{ports: [{port: 10000000000000000000000}]}]}"),
            "NetworkPolicy x/p",
            "spec.ingress[0].ports[0].port",
            "out of range (a port number is 1-65535)",
        ),
        (
            "23-digit container port",
            pod("name: web, namespace: x", "{containers: [{name: c, image: i, ports: [{containerPort: 10000000000000000000000}]}]}", RUNNING),
            "Pod x/web",
            "spec.containers[0].ports[0].containerPort",
            "out of range (a port number is 1-65535)",
        ),
    ]
}

#[test]
fn every_class_is_refused_naming_file_object_and_field() {
    for (class, text, object, field, words) in cases() {
        for (file, text) in [
            ("bad.yaml", text.clone()),
            ("bad.json", yaml_to_json(&text)),
        ] {
            let stderr = refused(file, text.as_bytes(), &[]);
            let want = format!("{file}: {object}: {field}: ");
            assert!(
                stderr.contains(&want),
                "{class} ({file}): want {want:?} in:\n{stderr}"
            );
            assert!(
                stderr.contains(words),
                "{class} ({file}): want {words:?} in:\n{stderr}"
            );
        }
    }
}

/// The same object as JSON, so every case runs through both readers (read with the YAML
/// library alone, without nftpol's checks).
fn yaml_to_json(text: &str) -> String {
    let value: serde_json::Value = serde_saphyr::from_str(text).expect("the case is YAML");
    serde_json::to_string_pretty(&value).unwrap()
}

/// Text that cannot be read as objects at all: named by file and line (no object exists
/// yet), and said in words.
#[test]
fn unreadable_text_is_refused_naming_file_and_line() {
    let mut deep = "a: ".to_string() + &"[".repeat(100) + &"]".repeat(100) + "\n";
    deep.insert_str(0, "b: 1\n");
    let mut bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_string();
    for i in 0..9u8 {
        let (prev, next) = ((b'a' + i) as char, (b'a' + i + 1) as char);
        bomb.push_str(&format!(
            "{next}: &{next} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
    }
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "invalid UTF-8",
            b"apiVersion: v1\nkind: \xffNamespace\n".to_vec(),
            "bad.yaml:2:7: ",
            "byte offset 21",
        ),
        (
            "duplicate JSON key",
            b"{\"apiVersion\": \"v1\",\n \"kind\": \"Namespace\",\n \"kind\": \"Pod\"}".to_vec(),
            "bad.json:3:",
            "duplicate key \"kind\"",
        ),
        (
            "deep nesting",
            deep.into_bytes(),
            "bad.yaml:2:",
            "levels deep",
        ),
        (
            "alias bomb",
            bomb.into_bytes(),
            "bad.yaml:",
            "aliases (*name) expand the text",
        ),
    ];
    for (class, text, at, words) in cases {
        let file = if at.starts_with("bad.json") {
            "bad.json"
        } else {
            "bad.yaml"
        };
        let stderr = refused(file, &text, &[]);
        assert!(stderr.contains(at), "{class}: want {at:?} in:\n{stderr}");
        assert!(
            stderr.contains(words),
            "{class}: want {words:?} in:\n{stderr}"
        );
        assert!(
            !stderr.contains("syntax error: budget") && !stderr.contains("Nodes {"),
            "{class}: {stderr}"
        );
    }
}

fn compile_ok(file: &str, text: &[u8], extra: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), text).unwrap();
    let out = compile_into(dir.path(), "out.nft", extra, file);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (
        std::fs::read_to_string(dir.path().join("out.nft")).unwrap(),
        stderr,
    )
}

const POD_X: &str = "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"web\", \"namespace\": \"x\", \"labels\": {\"app\": \"web\"}}, \"spec\": {\"nodeName\": \"n1\", \"containers\": []}, \"status\": {\"phase\": \"Running\", \"podIPs\": [{\"ip\": \"10.0.0.1\"}]}}";

#[test]
fn validate_warn_turns_strict_refusals_into_warnings() {
    let typo = np(
        "name: p, namespace: x",
        "{podSelector: {matchLabel: {app: a}}}",
    );
    refused("p.yaml", typo.as_bytes(), &["--validate=strict"]);
    let (script, stderr) = compile_ok("p.yaml", typo.as_bytes(), &["--validate=warn"]);
    assert!(stderr.contains("spec.podSelector.matchLabel"), "{stderr}");
    assert!(script.contains("table inet nftpol"));
    let old = np("name: p, namespace: x", "{podSelector: {}}")
        .replace("networking.k8s.io/v1", "extensions/v1beta1");
    let (_, stderr) = compile_ok("p.yaml", old.as_bytes(), &["--validate", "warn"]);
    assert!(
        stderr.contains("skipping") && stderr.contains("apiVersion"),
        "{stderr}"
    );
}

#[test]
fn namespace_flag_completes_objects_without_one() {
    let text = format!(
        "{}---\n{}",
        np("name: deny-all", "{podSelector: {}}"),
        POD_X.replace(", \"namespace\": \"x\"", "")
    );
    let (script, _) = compile_ok("doc.yaml", text.as_bytes(), &["--namespace", "x"]);
    let (short, _) = compile_ok("doc.yaml", text.as_bytes(), &["-n", "x"]);
    assert_eq!(script, short);
    assert!(script.contains("x/deny-all"), "{script}");
    assert!(script.contains("x/web"), "{script}");
    // A namespace in the file wins over the flag.
    let given = format!(
        "{}---\n{POD_X}",
        np("name: deny-all, namespace: x", "{podSelector: {}}")
    );
    let (other, _) = compile_ok("doc.yaml", given.as_bytes(), &["-n", "y"]);
    assert_eq!(other, script);
}

#[test]
fn typed_and_nested_lists_are_read() {
    let policy = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": "x"}, "spec": {"podSelector": {}}}"#;
    let flat =
        format!("{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{POD_X}, {policy}]}}");
    let (want, _) = compile_ok("flat.json", flat.as_bytes(), &[]);
    assert!(want.contains("x/deny"), "{want}");
    let typed = format!(
        "{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\
           {{\"apiVersion\": \"v1\", \"kind\": \"PodList\", \"items\": [{POD_X}]}},\
           {{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicyList\", \"items\": [{policy}]}}]}}"
    );
    let (got, _) = compile_ok("typed.json", typed.as_bytes(), &[]);
    assert_eq!(got, want);
    // With a byte order mark, as YAML.
    let mut bom = b"\xEF\xBB\xBF# a YAML comment\n".to_vec();
    bom.extend_from_slice(typed.as_bytes());
    let (got, _) = compile_ok("typed.yaml", &bom, &[]);
    assert_eq!(got, want);
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(flat.as_bytes());
    let (got, _) = compile_ok("flat.json", &bom, &[]);
    assert_eq!(got, want);
    // Lists nest at most eight deep.
    let mut nested = POD_X.to_string();
    for _ in 0..9 {
        nested = format!("{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{nested}]}}");
    }
    let stderr = refused("nested.json", nested.as_bytes(), &[]);
    assert!(
        stderr.contains("nested.json: document 1: Lists nested more than 8 deep"),
        "{stderr}"
    );
}

/// `explain` and `graph` read input as `compile` does, with the same flags.
#[test]
fn explain_and_graph_take_the_same_input_flags() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\n{}",
        np("name: deny-all", "{podSelector: {matchLabel: {app: web}}}"),
        POD_X.replace(", \"namespace\": \"x\"", "")
    );
    std::fs::write(dir.path().join("doc.yaml"), text).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args(args)
            .arg("doc.yaml")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let explain = [
        "explain", "--from", "10.9.9.9", "--to", "x/web", "--port", "tcp/80",
    ];
    for args in [&["graph"][..], &explain[..]] {
        let (code, _, stderr) = run(&[args, &["-n", "x"]].concat());
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(
                "doc.yaml: NetworkPolicy x/deny-all: spec.podSelector.matchLabel: unknown field"
            ),
            "{stderr}"
        );
        let (code, _, stderr) = run(&[args, &["--validate=warn"]].concat());
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("metadata.namespace: missing") && stderr.contains("--namespace"),
            "{stderr}"
        );
        let (code, stdout, stderr) = run(&[args, &["-n", "x", "--validate=warn"]].concat());
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(stdout.contains("x/deny-all"), "{args:?}: {stdout}");
    }
}
