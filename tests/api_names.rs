//! Names the API server accepts, at their length limits, give scripts `nft` loads.
//!
//! The property test draws a namespace (DNS-1123 label, up to 63), pod and policy names
//! (DNS-1123 subdomains, up to 253), label keys (prefix up to 253, name up to 63) and
//! values (up to 63) near their limits, compiles the cluster they make (a NetworkPolicy
//! and a ClusterNetworkPolicy, so the tier sets and drop chains are there too) and checks
//! the script with `nft -c -f` (root: `#[ignore]`d, see common/root.rs). A quick test
//! without root checks the names alone: every chain and set fits the kernel's limit.

mod common;
#[path = "common/root.rs"]
mod needs_root;

use common::*;
use proptest::prelude::*;
use serde_json::json;

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A DNS-1123 label of exactly `len` bytes: alphanumeric ends, `-` allowed inside.
fn label_of(len: usize) -> impl Strategy<Value = String> {
    let inner = prop::collection::vec(
        prop::sample::select(b"abcdefghijklmnopqrstuvwxyz0123456789-".to_vec()),
        len.saturating_sub(2),
    );
    (
        prop::sample::select(ALNUM.to_vec()),
        inner,
        prop::sample::select(ALNUM.to_vec()),
    )
        .prop_map(move |(a, mid, b)| {
            let mut s = vec![a];
            s.extend(mid);
            if len > 1 {
                s.push(b);
            }
            String::from_utf8(s).unwrap()
        })
}

/// A DNS-1123 label of `lo..=hi` bytes.
fn dns_label(lo: usize, hi: usize) -> impl Strategy<Value = String> {
    (lo..=hi).prop_flat_map(label_of)
}

/// A DNS-1123 subdomain of `lo..=hi` bytes: labels joined by `.`.
fn dns_subdomain(lo: usize, hi: usize) -> impl Strategy<Value = String> {
    (lo..=hi, prop::collection::vec(dns_label(1, 63), 1..8)).prop_map(|(len, labels)| {
        let mut s = labels.join(".");
        while s.len() < len {
            let more = (len - s.len()).min(62);
            s.push_str(".z");
            s.push_str(&"a".repeat(more));
        }
        s.truncate(len);
        // A cut may end on `.` or `-`, which a subdomain may not.
        if s.ends_with(['.', '-']) {
            s.pop();
            s.push('z');
        }
        s
    })
}

/// A label key (`[prefix/]name`) and value at their limits. Names and values also allow
/// `_`, `.` and upper case inside.
fn label_pair() -> impl Strategy<Value = (String, String)> {
    let name_chars = b"abcXYZ0189-_.".to_vec();
    let part = move |lo: usize, hi: usize| {
        (
            prop::sample::select(ALNUM.to_vec()),
            prop::collection::vec(prop::sample::select(name_chars.clone()), lo - 2..=hi - 2),
            prop::sample::select(b"ABCxyz019".to_vec()),
        )
            .prop_map(|(a, mid, b)| {
                let mut s = vec![a];
                s.extend(mid);
                s.push(b);
                String::from_utf8(s).unwrap()
            })
    };
    (dns_subdomain(240, 253), part(55, 63), part(55, 63))
        .prop_map(|(prefix, name, value)| (format!("{prefix}/{name}"), value))
}

#[derive(Debug)]
struct Names {
    namespace: String,
    pod: String,
    peer: String,
    policy: String,
    cnp: String,
    label: (String, String),
}

fn names() -> impl Strategy<Value = Names> {
    (
        dns_label(55, 63),
        dns_subdomain(150, 253),
        dns_subdomain(240, 253),
        dns_subdomain(240, 253),
        dns_subdomain(240, 253),
        label_pair(),
    )
        .prop_filter("two pods", |t| t.1 != t.2)
        .prop_map(|(namespace, pod, peer, policy, cnp, label)| Names {
            namespace,
            pod,
            peer,
            policy,
            cnp,
            label,
        })
}

/// One node: the pod, a peer the NetworkPolicy admits, and a ClusterNetworkPolicy with
/// a rule name at its limit on the namespace (so the tier sets and drop chains exist).
fn cluster(n: &Names) -> Vec<Obj> {
    let (k, v) = (&n.label.0, &n.label.1);
    vec![
        ns(&n.namespace).label(k, v),
        pod(&n.namespace, &n.pod)
            .label(k, v)
            .node("n1")
            .ip("10.244.1.11")
            .ip6("fd00:10:244:1::11")
            .port("http-alt-port01", 8080, "TCP"),
        pod(&n.namespace, &n.peer)
            .label("peer", v)
            .node("n1")
            .ip("10.244.1.12"),
        netpol(&n.namespace, &n.policy)
            .pod_selector(json!({"matchLabels": {k: v}}))
            .policy_types(&["Ingress", "Egress"])
            .ingress(
                json!([{"from": [{"podSelector": {"matchLabels": {"peer": v}}}],
                             "ports": [{"port": "http-alt-port01"}, {"port": 443}]}]),
            )
            .egress(json!([{"to": [{"namespaceSelector": {"matchLabels": {k: v}}}]}])),
        Obj(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": n.cnp},
            "spec": {
                "tier": "Admin",
                "priority": 1,
                "subject": {"namespaces": {"matchLabels": {k: v}}},
                "ingress": [{"name": "r".repeat(100), "action": "Deny",
                             "from": [{"namespaces": {"matchLabels": {k: v}}}]}],
            },
        })),
    ]
}

fn script(objs: Vec<Obj>) -> String {
    nftpol::script::render(&nftpol::compile(&index(objs), Some("n1")))
}

/// Every chain and set name the script declares, and the longest.
fn declared(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix("chain ").or(l.strip_prefix("set "))?;
            rest.strip_suffix(" {")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Without root: the names fit and are nft identifiers.
    #[test]
    fn names_at_the_api_limits_fit(n in names()) {
        let s = script(cluster(&n));
        let names = declared(&s);
        prop_assert!(names.len() > 10, "{s}");
        for name in names {
            prop_assert!(name.len() <= 255, "{} bytes: {name}", name.len());
            prop_assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)),
                "{name}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    #[ignore = "needs root: nft -c opens a netlink socket (CAP_NET_ADMIN)"]
    fn nft_loads_names_at_the_api_limits(n in names()) {
        needs_root::require_root_and_nft("nft_loads_names_at_the_api_limits");
        let s = script(cluster(&n));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &s).unwrap();
        let o = std::process::Command::new("nft")
            .arg("-c")
            .arg("-f")
            .arg(file.path())
            .output()
            .expect("run nft");
        prop_assert!(
            o.status.success(),
            "nft -c -f refused the script:\n{}\n{s}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// The issue's case: a 40-character namespace and a 222-character pod name.
#[test]
#[ignore = "needs root: nft -c opens a netlink socket (CAP_NET_ADMIN)"]
fn nft_loads_the_issue_case() {
    needs_root::require_root_and_nft("nft_loads_the_issue_case");
    let n = Names {
        namespace: "n".repeat(40),
        pod: "p".repeat(222),
        peer: "q".repeat(253),
        policy: "r".repeat(253),
        cnp: "c".repeat(253),
        label: ("app".into(), "web".into()),
    };
    let s = script(cluster(&n));
    assert!(
        s.contains(&format!("chain ingress/{}/ppp", n.namespace)),
        "{s}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &s).unwrap();
    let o = std::process::Command::new("nft")
        .arg("-c")
        .arg("-f")
        .arg(file.path())
        .output()
        .expect("run nft");
    assert!(
        o.status.success(),
        "{}\n{s}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Names the API server refuses (a space, a quote, a newline, non-ASCII) are refused on
/// input or made into identifiers; a policy name's newline and quote stay inside their
/// comment. Either way no such string reaches the script as it was.
#[test]
#[ignore = "needs root: nft -c opens a netlink socket (CAP_NET_ADMIN)"]
fn nft_loads_or_nftpol_refuses_names_the_api_refuses() {
    needs_root::require_root_and_nft("nft_loads_or_nftpol_refuses_names_the_api_refuses");
    for odd in ["web 0", "web\"0", "web\n0", "wéb", "a}b", "x;flush ruleset"] {
        let objs = vec![
            ns("x"),
            pod("x", odd).label("app", "a").node("n1").ip("10.244.1.11"),
            netpol("x", &format!("p{odd}\n\tchain evil {{"))
                .selecting("app", "a")
                .ingress(json!([{}])),
        ];
        let Ok(idx) = try_index(objs) else { continue };
        let s = nftpol::script::render(&nftpol::compile(&idx, Some("n1")));
        // Outside the quoted comments, no trace of the name as it was.
        for line in s.lines() {
            let code = line.split("comment \"").next().unwrap();
            assert!(!code.contains(odd), "{odd:?}: {line}\n{s}");
            assert!(
                !line.trim_start().starts_with("chain evil"),
                "{odd:?}:\n{s}"
            );
        }
        assert!(!s.contains(odd) || !odd.contains('\n'), "{odd:?}:\n{s}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &s).unwrap();
        let o = std::process::Command::new("nft")
            .arg("-c")
            .arg("-f")
            .arg(file.path())
            .output()
            .expect("run nft");
        assert!(
            o.status.success(),
            "{odd:?}: {}\n{s}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
