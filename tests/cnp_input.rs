//! ClusterNetworkPolicy and Node input: both apiVersions, and every validation rule of
//! the digest (../shared/clusternetworkpolicy.md section 2) refused with the file, the
//! object, the field and the problem; through the binary, exit status 2.

mod common;

use std::process::Command;

use nftpol::index::Index;
use nftpol::input::parse_str;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");

/// A valid Admin policy for namespace x with one ingress and one egress rule.
fn valid() -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "tier": "Admin",
            "priority": 10,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}},
            "ingress": [{"name": "in", "action": "Deny", "from": [{"namespaces": {}}],
                         "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]}],
            "egress": [{"action": "Accept", "to": [{"networks": ["10.0.0.0/8"]}],
                        "protocols": [{"udp": {"destinationPort": {"range": {"start": 1000, "end": 2000}}}}]}],
        },
    })
}

/// `valid()` with the member at `path` (slash-separated, array indexes as numbers) set to
/// `value`, or removed when `value` is null.
fn with(path: &str, value: Value) -> Value {
    let mut v = valid();
    let (parent, key) = path.rsplit_once('/').unwrap_or(("", path));
    let mut cur = &mut v;
    for k in parent.split('/').filter(|k| !k.is_empty()) {
        cur = match k.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[k],
        };
    }
    if value.is_null() {
        cur.as_object_mut().unwrap().remove(key);
    } else if let Ok(i) = key.parse::<usize>() {
        cur[i] = value;
    } else {
        cur[key] = value;
    }
    v
}

fn load(v: &Value) -> Result<Index, String> {
    let objs = parse_str(&v.to_string(), "cnp.json").map_err(|e| e.to_string())?;
    Index::from_objects(objs).map_err(|e| e.to_string())
}

#[test]
fn valid_policy_reads_in_both_api_versions() {
    let a = load(&valid()).unwrap();
    let b = load(&with(
        "apiVersion",
        json!("policy.networking.k8s.io/v1beta1"),
    ))
    .unwrap();
    assert_eq!(a.cnp("p").unwrap(), b.cnp("p").unwrap());
    assert!(a.cnp("p").unwrap().error.is_none());
    // An explicit null is an absent field, as the API server prunes it.
    let c = load(&with("spec/ingress/0/name", Value::Null)).unwrap();
    let mut v = valid();
    v["spec"]["ingress"][0]["protocols"] = Value::Null;
    v["spec"]["egress"][0]["name"] = Value::Null;
    let d = load(&v).unwrap();
    assert_eq!(c.cnp("p").unwrap().policy.ingress[0].name, None);
    assert_eq!(d.cnp("p").unwrap().policy.ingress[0].ports, None);
}

#[test]
fn every_validation_rule_names_its_field() {
    let long_name = "r".repeat(101);
    let many: Vec<Value> = (0..26).map(|_| json!({"namespaces": {}})).collect();
    let cases: Vec<(Value, &str, &str)> = vec![
        (with("spec/tier", Value::Null), "spec.tier", "required"),
        (
            with("spec/tier", json!("Middle")),
            "spec.tier",
            "unknown tier",
        ),
        (
            with("spec/priority", json!(1001)),
            "spec.priority",
            "outside 0..1000",
        ),
        (with("spec/priority", json!(-1)), "spec.priority", "outside"),
        (
            with("spec/priority", Value::Null),
            "spec.priority",
            "required",
        ),
        (
            with("spec/subject", json!({})),
            "spec.subject",
            "exactly one of namespaces or pods",
        ),
        (
            with(
                "spec/subject",
                json!({"namespaces": {}, "pods": {"podSelector": {}}}),
            ),
            "spec.subject",
            "exactly one",
        ),
        (
            with("spec/subject", json!({"pods": {}})),
            "spec.subject.pods.podSelector",
            "required",
        ),
        (
            with(
                "spec/subject/namespaces",
                json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}),
            ),
            "spec.subject.namespaces.matchExpressions[0].operator",
            "unknown operator",
        ),
        (
            with("spec/ingress/0/name", json!(long_name)),
            "spec.ingress[0].name",
            "longer than 100",
        ),
        (
            with("spec/ingress/0/action", json!("Allow")),
            "spec.ingress[0].action",
            "unknown action",
        ),
        (
            with("spec/ingress/0/action", Value::Null),
            "spec.ingress[0].action",
            "required",
        ),
        (
            with("spec/ingress/0/from", json!([])),
            "spec.ingress[0].from",
            "at least one",
        ),
        (
            with("spec/ingress/0/from", json!(many)),
            "spec.ingress[0].from",
            "at most 25",
        ),
        (
            with("spec/ingress/0/from", Value::Null),
            "spec.ingress[0].from",
            "required",
        ),
        (
            with("spec/ingress/0/from/0", json!({"networks": ["10.0.0.0/8"]})),
            "spec.ingress[0].from[0].networks",
            "ingress peers can only be namespaces or pods",
        ),
        (
            with(
                "spec/ingress/0/from/0",
                json!({"namespaces": {}, "pods": {"podSelector": {}}}),
            ),
            "spec.ingress[0].from[0]",
            "exactly one of namespaces or pods",
        ),
        (
            with("spec/ingress/0/from/0", json!({})),
            "spec.ingress[0].from[0]",
            "(got none)",
        ),
        (
            with("spec/ingress/0/to", json!([])),
            "spec.ingress[0].to",
            "ingress rules have from",
        ),
        (
            with("spec/ingress/0/protocols", json!([])),
            "spec.ingress[0].protocols",
            "at least one",
        ),
        (
            with("spec/ingress/0/protocols/0", json!({"tcp": {}})),
            "spec.ingress[0].protocols[0].tcp.destinationPort",
            "required",
        ),
        (
            with(
                "spec/ingress/0/protocols/0",
                json!({"tcp": {"destinationPort": {"number": 1}}, "udp": {"destinationPort": {"number": 1}}}),
            ),
            "spec.ingress[0].protocols[0]",
            "exactly one of tcp, udp, sctp or destinationNamedPort",
        ),
        (
            with(
                "spec/ingress/0/protocols/0/tcp/destinationPort/number",
                json!(0),
            ),
            "spec.ingress[0].protocols[0].tcp.destinationPort.number",
            "not a port number",
        ),
        (
            with(
                "spec/ingress/0/protocols/0/tcp/destinationPort/number",
                json!(65536),
            ),
            "spec.ingress[0].protocols[0].tcp.destinationPort.number",
            "not a port number",
        ),
        (
            with(
                "spec/ingress/0/protocols/0/tcp/destinationPort",
                json!({"number": 1, "range": {"start": 1, "end": 2}}),
            ),
            "spec.ingress[0].protocols[0].tcp.destinationPort",
            "exactly one of number or range",
        ),
        (
            with(
                "spec/egress/0/protocols/0/udp/destinationPort/range/end",
                json!(1000),
            ),
            "spec.egress[0].protocols[0].udp.destinationPort.range",
            "must be below end",
        ),
        (
            with(
                "spec/egress/0/protocols/0/udp/destinationPort/range/start",
                Value::Null,
            ),
            "spec.egress[0].protocols[0].udp.destinationPort.range.start",
            "required",
        ),
        (
            with(
                "spec/ingress/0/protocols/0",
                json!({"destinationNamedPort": ""}),
            ),
            "spec.ingress[0].protocols[0].destinationNamedPort",
            "must not be empty",
        ),
        (
            with(
                "spec/egress/0/protocols/0",
                json!({"destinationNamedPort": "web"}),
            ),
            "spec.egress[0].protocols[0].destinationNamedPort",
            "networks, nodes or domainNames",
        ),
        (
            with("spec/egress/0/to/0/networks/0", json!("10.0.0.1/8")),
            "spec.egress[0].to[0].networks[0]",
            "host bits set (write 10.0.0.0/8)",
        ),
        (
            with("spec/egress/0/to/0/networks/0", json!("10.0.0.0/33")),
            "spec.egress[0].to[0].networks[0]",
            "not a valid CIDR",
        ),
        (
            with(
                "spec/egress/0/to/0/networks",
                json!(["10.0.0.0/8", "10.0.0.0/8"]),
            ),
            "spec.egress[0].to[0].networks[1]",
            "duplicate",
        ),
        (
            with("spec/egress/0/to/0/networks", json!([])),
            "spec.egress[0].to[0].networks",
            "at least one",
        ),
        (
            with("spec/egress/0/to/0", json!({"domainNames": ["bad_name"]})),
            "spec.egress[0].to[0].domainNames[0]",
            "not a domain name",
        ),
        (
            with("spec/egress/0/action", json!("Deny")).pipe(|mut v| {
                v["spec"]["egress"][0]["to"][0] = json!({"domainNames": ["example.com"]});
                v
            }),
            "spec.egress[0].to",
            "only allowed in Accept rules",
        ),
        (
            with("spec/tier", json!("Baseline")).pipe(|mut v| {
                let to = v["spec"]["egress"][0]["to"].as_array_mut().unwrap();
                to.push(json!({"domainNames": ["example.com"]}));
                v
            }),
            "spec.egress[0].to[1].domainNames",
            "only allowed in Admin-tier policies",
        ),
        (
            with(
                "spec/egress/0/to/0",
                json!({"nodes": {"matchLabels": {"bad key!": "x"}}}),
            ),
            "spec.egress[0].to[0].nodes.matchLabels",
            "",
        ),
        (
            with("spec/ingress/0/protocol", json!([])),
            "spec.ingress[0].protocol",
            "unknown field `protocol`",
        ),
        (
            with("spec/priority", json!("high")),
            "spec.priority",
            "invalid type",
        ),
        (
            with("metadata/name", json!("Not_A_Name")),
            "metadata.name",
            "not a DNS subdomain",
        ),
    ];
    let mut wrong = Vec::new();
    for (i, (v, field, problem)) in cases.iter().enumerate() {
        match load(v) {
            Ok(_) => wrong.push(format!("case {i} ({field}): accepted")),
            Err(e) => {
                let ok = e.starts_with("cnp.json: ClusterNetworkPolicy ")
                    && e.contains(&format!(": {field}: "))
                    && e.contains(problem);
                if !ok {
                    wrong.push(format!("case {i}: expected {field}: {problem}, got {e}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

trait Pipe: Sized {
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }
}
impl Pipe for Value {}

#[test]
fn nodes_are_read_for_their_internal_and_external_addresses() {
    let text = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"role": "w"}},
         "spec": {"podCIDRs": ["10.244.1.0/24"]},
         "status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                  {"type": "ExternalIP", "address": "203.0.113.1"},
                                  {"type": "InternalIP", "address": "192.168.100.1"}]}}]})
    .to_string();
    let idx = Index::from_objects(parse_str(&text, "nodes.json").unwrap()).unwrap();
    let n = idx.node("n1").unwrap();
    assert_eq!(
        n.addresses,
        [
            "192.168.100.1".parse::<std::net::IpAddr>().unwrap(),
            "203.0.113.1".parse().unwrap()
        ]
    );
    assert_eq!(
        n.pod_cidrs,
        ["10.244.1.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
    let bad = text.replace("192.168.100.1", "not-an-ip");
    let e = Index::from_objects(parse_str(&bad, "nodes.json").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nodes.json: Node n1: status.addresses[2].address"),
        "{e}"
    );
}

#[test]
fn the_binary_exits_2_naming_file_object_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = with("spec/priority", json!(5000));
    let path = dir.path().join("bad-cnp.json");
    std::fs::write(&path, bad.to_string()).unwrap();
    let path = path.to_str().unwrap();
    for args in [
        vec!["compile", path],
        vec!["graph", path],
        vec![
            "explain", "--from", "x/a", "--to", "x/b", "--port", "tcp/80", path,
        ],
    ] {
        let o = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "{path}: ClusterNetworkPolicy p: spec.priority: 5000 is outside 0..1000"
            )),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn the_binary_reads_both_api_versions() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "x"}, "spec": {"containers": []}, "status": {"podIPs": [{"ip": "10.0.0.1"}]}}
"#;
    for version in ["v1alpha2", "v1beta1"] {
        let v = with(
            "apiVersion",
            json!(format!("policy.networking.k8s.io/{version}")),
        );
        let path = dir.path().join(format!("{version}.json"));
        std::fs::write(&path, format!("{cluster}{v}\n")).unwrap();
        let o = Command::new(BIN)
            .args(["graph", path.to_str().unwrap()])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{version}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains("  ingress Admin: p\n"), "{version}: {out}");
        assert!(out.contains("  egress Admin: p\n"), "{version}: {out}");
    }
}

/// The API's DomainName pattern, label by label: a letter or digit first and last, `-`
/// and `_` inside; two labels at least, after an optional `*.`; a trailing dot allowed.
#[test]
fn domain_names_follow_the_apis_pattern() {
    let domain = |d: &str| {
        let v = with("spec/egress/0/to/0", json!({"domainNames": [d]}));
        load(&v).err()
    };
    for good in [
        "example.com",
        "example.com.",
        "*.example.com",
        "a_b.example.com",
        "x-1.Example.COM",
        "1.2",
    ] {
        assert_eq!(domain(good), None, "{good}");
    }
    for bad in [
        "com",
        "*.com",
        "_a.example.com",
        "a_.example.com",
        "-a.example.com",
        "a..example.com",
        "a.*.example.com",
        "**.example.com",
        "exa mple.com",
    ] {
        let e = domain(bad);
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("not a domain name")),
            "{bad}: {e:?}"
        );
    }
}
