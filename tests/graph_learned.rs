//! `nftpol graph` lists the addresses of each ClusterNetworkPolicy `domainNames` rule:
//! `--resolved NAME=ADDR` (offline, as explain's: an address goes under the rules whose
//! patterns match NAME, and no other), and `--learned` (root: this node's kernel sets, with
//! the time each address has left and no name), on `examples/domain-names.yaml` with a
//! second domain rule whose pattern is another name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/root.rs"]
mod needs_root;

const BIN: &str = env!("CARGO_BIN_EXE_nftpol");

/// A second policy with a `domainNames` rule: its own learned sets, its own addresses.
const STATUS: &str = "
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: status-egress}
spec:
  tier: Admin
  priority: 20
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: shop}}}
  egress:
  - name: status
    action: Accept
    to: [{domainNames: [status.example.org]}]
";

const VENDORS: &str = "shop-egress egress[2] vendors to[0]";
const STATUS_RULE: &str = "status-egress egress[0] status to[0]";

/// The cluster file, in a scratch directory kept while the test runs.
fn cluster() -> (tempfile::TempDir, PathBuf) {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/domain-names.yaml");
    let text = std::fs::read_to_string(example).unwrap() + STATUS;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn nftpol(prefix: &[&str], args: &[&str], file: &Path) -> Output {
    let (program, before) = match prefix.split_first() {
        Some((p, rest)) => (*p, rest),
        None => (BIN, &[][..]),
    };
    let mut cmd = Command::new(program);
    cmd.args(before);
    if !prefix.is_empty() {
        cmd.arg(BIN);
    }
    cmd.args(args).arg(file).env_remove("RUST_LOG");
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// The `learned:` lines under each domain rule of pod `pod`'s enforced view, by the
/// rule's origin (what follows `<- Admin: `).
fn learned_lines(out: &str, pod: &str) -> Vec<(String, Vec<String>)> {
    let start = format!("pod {pod}:\n");
    let body = &out[out.find(&start).unwrap_or_else(|| panic!("{out}")) + start.len()..];
    let body = &body[..body.find("\npod ").unwrap_or(body.len())];
    let mut rules: Vec<(String, Vec<String>)> = Vec::new();
    for line in body.lines() {
        if let Some((_, origin)) = line
            .split_once("accept domainNames ")
            .and_then(|(_, rest)| rest.split_once(" <- Admin: "))
        {
            rules.push((origin.to_string(), Vec::new()));
        } else if let Some(l) = line.trim_start().strip_prefix("learned: ") {
            let last = rules.last_mut().expect("a learned line under a rule");
            assert_eq!(line.find('l'), Some(6), "indented under its rule: {line:?}");
            last.1.push(l.to_string());
        }
    }
    rules
}

/// The `learned` lists of the domain rules of `pod` in the JSON graph, by policy.
fn learned_json(out: &str, pod: &str) -> Vec<(String, serde_json::Value)> {
    let json: serde_json::Value = serde_json::from_str(out).unwrap();
    let (ns, name) = pod.split_once('/').unwrap();
    let p = json["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["namespace"] == ns && p["name"] == name)
        .unwrap();
    p["tiers"]["egress"]["admin"]["domain_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["policy"].as_str().unwrap().to_string(),
                d["learned"].clone(),
            )
        })
        .collect()
}

#[test]
fn resolved_addresses_go_under_the_matching_rules_only() {
    let (_dir, file) = cluster();
    let args = [
        "graph",
        "--node",
        "node-1",
        "--resolved",
        "api.example.com=93.184.216.34",
        "--resolved",
        "img.cdn.example.net=2001:db8::5",
        "--resolved",
        "status.example.org=192.0.2.77",
        "--resolved",
        "example.com=198.51.100.9",
        "--resolved",
        "api.example.com=10.1.1.1",
    ];
    let out = nftpol(&[], &args, &file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = text(&out.stdout);
    let got = learned_lines(&out, "shop/web-0");
    let want = vec![
        (
            VENDORS.to_string(),
            vec![
                "10.1.1.1 from api.example.com".to_string(),
                "93.184.216.34 from api.example.com".to_string(),
                "2001:db8::5 from img.cdn.example.net".to_string(),
            ],
        ),
        (
            STATUS_RULE.to_string(),
            vec!["192.0.2.77 from status.example.org".to_string()],
        ),
    ];
    assert_eq!(got, want, "{out}");
    assert_eq!(learned_lines(&out, "shop/batch-0"), want, "{out}");
    assert!(
        !out.contains("198.51.100.9"),
        "no rule matches example.com: {out}"
    );

    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    let out = nftpol(&[], &json_args, &file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let resolved = |addr: &str, name: &str| serde_json::json!({"address": addr, "source": "resolved", "name": name, "expires_in_ms": null});
    assert_eq!(
        learned_json(&text(&out.stdout), "shop/web-0"),
        vec![
            (
                "shop-egress".to_string(),
                serde_json::json!([
                    resolved("10.1.1.1", "api.example.com"),
                    resolved("93.184.216.34", "api.example.com"),
                    resolved("2001:db8::5", "img.cdn.example.net"),
                ])
            ),
            (
                "status-egress".to_string(),
                serde_json::json!([resolved("192.0.2.77", "status.example.org")])
            ),
        ]
    );
}

/// A rule no name matches says so (only when addresses were asked for); without the
/// flags nothing is listed and the JSON has no `learned` key.
#[test]
fn a_rule_without_addresses_says_none_and_no_flag_lists_nothing() {
    let (_dir, file) = cluster();
    let base = ["graph", "--node", "node-1"];
    let out = nftpol(
        &[],
        &[&base[..], &["--resolved", "status.example.org=192.0.2.77"]].concat(),
        &file,
    );
    assert_eq!(out.status.code(), Some(0));
    let got = learned_lines(&text(&out.stdout), "shop/web-0");
    assert_eq!(got[0], (VENDORS.to_string(), vec!["none".to_string()]));

    let plain = text(&nftpol(&[], &base, &file).stdout);
    assert!(!plain.contains("learned:"), "{plain}");
    assert_eq!(
        learned_lines(&plain, "shop/web-0"),
        vec![
            (VENDORS.to_string(), vec![]),
            (STATUS_RULE.to_string(), vec![])
        ]
    );
    let json = text(&nftpol(&[], &[&base[..], &["-o", "json"]].concat(), &file).stdout);
    assert!(
        learned_json(&json, "shop/web-0")
            .iter()
            .all(|(_, l)| l.is_null()),
        "{json}"
    );
    assert!(!json.contains("\"learned\""), "{json}");
}

/// A bad `--resolved` exits 2 with explain's message, naming the flag; `-o dot`, which
/// draws no domain rules, refuses it.
#[test]
fn a_bad_resolved_value_exits_2_as_in_explain() {
    let (_dir, file) = cluster();
    for bad in ["api.example.com", "api.example.com=not-an-ip", "=192.0.2.1"] {
        let graph = nftpol(&[], &["graph", "--resolved", bad], &file);
        let explain = ["explain", "--from", "shop/web-0", "--to", "192.0.2.1"];
        let explain = nftpol(
            &[],
            &[&explain[..], &["--port", "tcp/443", "--resolved", bad]].concat(),
            &file,
        );
        assert_eq!(graph.status.code(), Some(2), "{bad}");
        assert!(graph.stdout.is_empty(), "{bad}");
        let err = |o: &Output| {
            let e = text(&o.stderr);
            e.lines()
                .find(|l| l.starts_with("nftpol: error: "))
                .unwrap_or_else(|| panic!("{e}"))
                .to_string()
        };
        let said = err(&graph);
        assert!(said.starts_with("nftpol: error: --resolved: "), "{said}");
        assert!(said.contains("expected NAME=ADDR"), "{said}");
        assert_eq!(said, err(&explain), "the same message as explain's");
    }
    let dot = nftpol(
        &[],
        &["graph", "--resolved", "a.example=192.0.2.1", "-o", "dot"],
        &file,
    );
    assert_eq!(dot.status.code(), Some(2));
    assert!(text(&dot.stderr).contains("--output dot: draws no domainNames rules"));
}

#[cfg(feature = "netlink")]
mod kernel {
    use super::*;
    use std::net::IpAddr;
    use std::time::Duration;

    use nftpol::graph::PolicyGraph;
    use nftpol::index::Index;
    use nftpol::netlink::{Backend, LearnedElem};
    use nftpol::ruleset::{self, names, DnsSteering, Options};

    /// A scratch network namespace `gl-<pid>`, deleted on drop.
    struct Netns(String);

    impl Netns {
        fn create() -> Netns {
            let name = format!("gl-{}", std::process::id());
            let ok = Command::new("ip").args(["netns", "add", &name]).status();
            assert!(ok.is_ok_and(|s| s.success()), "ip netns add {name}");
            Netns(name)
        }

        fn with<T: Send>(&self, f: impl FnOnce(&mut Backend) -> T + Send) -> T {
            let path = PathBuf::from(format!("/run/netns/{}", self.0));
            nftpol::netlink::in_netns(&path, || f(&mut Backend::open().unwrap())).unwrap()
        }

        fn graph(&self, args: &[&str], file: &Path) -> Output {
            let base = ["graph", "--learned", "--node", "node-1"];
            nftpol(
                &["ip", "netns", "exec", &self.0],
                &[&base[..], args].concat(),
                file,
            )
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    #[test]
    #[ignore = "needs root: loads a table into a scratch network namespace and runs nftpol there"]
    fn learned_lists_the_kernel_sets_with_the_time_left() {
        needs_root::require_root_and_nft("learned_lists_the_kernel_sets_with_the_time_left");
        let (_dir, file) = cluster();
        let ns = Netns::create();

        // No table here yet: an error saying so, nothing on stdout.
        let out = ns.graph(&[], &file);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty());
        assert!(
            text(&out.stderr).contains("no table inet nftpol"),
            "{}",
            text(&out.stderr)
        );

        let objects =
            nftpol::input::parse_str(&std::fs::read_to_string(&file).unwrap(), "c").unwrap();
        let graph = PolicyGraph::build_for(&Index::from_objects(objects).unwrap(), Some("node-1"));
        let opts = Options {
            dns: Some(DnsSteering {
                servers: vec!["10.96.0.10/32".parse().unwrap()],
                ..Default::default()
            }),
            ..Options::default()
        };
        let rs = ruleset::build_with(&graph, &opts);
        let addr: IpAddr = "93.184.216.34".parse().unwrap();
        let timeout = Duration::from_secs(600);
        ns.with(|be| {
            be.full_sync(&rs).unwrap();
            let set = names::learned_set("shop-egress", 2, false);
            be.learn(names::TABLE, &[LearnedElem { set, addr, timeout }])
                .unwrap();
        });

        let out = ns.graph(&[], &file);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let out = text(&out.stdout);
        let got = learned_lines(&out, "shop/web-0");
        assert_eq!(got.len(), 2, "{out}");
        assert_eq!(got[0].0, VENDORS);
        let [line] = &got[0].1[..] else {
            panic!("{out}")
        };
        let left = line
            .strip_prefix("93.184.216.34 from an unknown name (the kernel keeps none), ")
            .and_then(|l| l.strip_suffix("s left"))
            .unwrap_or_else(|| panic!("{line}"));
        let left: u64 = left.parse().unwrap();
        assert!(left <= timeout.as_secs(), "{line}");
        assert_eq!(got[1], (STATUS_RULE.to_string(), vec!["none".to_string()]));

        let out = ns.graph(&["-o", "json"], &file);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let got = learned_json(&text(&out.stdout), "shop/web-0");
        let vendors = &got[0].1;
        assert_eq!(got[0].0, "shop-egress");
        assert_eq!(vendors.as_array().unwrap().len(), 1, "{vendors}");
        let e = &vendors[0];
        assert_eq!(e["address"], "93.184.216.34");
        assert_eq!(e["source"], "kernel");
        assert!(e["name"].is_null());
        let ms = e["expires_in_ms"].as_u64().unwrap();
        assert!(ms > 0 && ms <= 600_000, "{ms}");
        assert_eq!(got[1], ("status-egress".to_string(), serde_json::json!([])));

        // A rule the node's table has no sets for (the input is not the node's state):
        // none, with a warning naming the sets.
        let other = STATUS.replace("status-egress", "other-egress");
        let other_file = file.with_file_name("other.yaml");
        std::fs::write(
            &other_file,
            std::fs::read_to_string(&file).unwrap() + &other,
        )
        .unwrap();
        let out = ns.graph(&[], &other_file);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let got = learned_lines(&text(&out.stdout), "shop/web-0");
        let rule = "other-egress egress[0] status to[0]".to_string();
        assert!(got.contains(&(rule, vec!["none".to_string()])), "{got:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("has no set fqdn/other-egress/0/4, fqdn/other-egress/0/6"),
            "{err}"
        );
    }
}
