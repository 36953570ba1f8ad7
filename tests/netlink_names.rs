#![cfg(feature = "netlink")]
//! Names at the API's length limits, and names the API refuses, made to fit: the netlink
//! backend sends the model's names as they are, and the kernel takes them; `nft list`
//! after a netlink full sync equals `nft list` after `nft -f` of the rendered script
//! (each in its own fresh network namespace). See also tests/api_names.rs.

mod common;
#[path = "common/netlink.rs"]
mod util;

use common::*;
use serde_json::json;
use util::*;

fn cluster(namespace: &str, pod_name: &str, policy: &str) -> Vec<Obj> {
    vec![
        ns(namespace).label("team", "a"),
        pod(namespace, pod_name)
            .label("app", "a")
            .node("n1")
            .ip("10.244.1.11")
            .ip6("fd00:10:244:1::11"),
        pod(namespace, "b").label("app", "b").node("n1").ip("10.244.1.12"),
        netpol(namespace, policy)
            .selecting("app", "a")
            .policy_types(&["Ingress", "Egress"])
            .ingress(json!([{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"port": 80}]}]))
            .egress(json!([{"to": [{"namespaceSelector": {}}]}])),
        Obj(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "c".repeat(253)},
            "spec": {
                "tier": "Admin",
                "priority": 1,
                "subject": {"namespaces": {"matchLabels": {"team": "a"}}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"team": "b"}}}]}],
            },
        })),
    ]
}

#[test]
#[ignore = "needs root: programs nftables over netlink in scratch network namespaces"]
fn long_and_odd_names_load_alike_by_netlink_and_nft() {
    require_root_and_nft("long_and_odd_names_load_alike_by_netlink_and_nft");
    let cases = [
        ("n".repeat(40), "p".repeat(222), "r".repeat(253)),
        (
            "n".repeat(63),
            format!("{}.q", "p".repeat(250)),
            "policy".into(),
        ),
        ("x".into(), "web 0".into(), "p\n\"evil\"".into()),
    ];
    for (namespace, pod_name, policy) in cases {
        let Ok(idx) = try_index(cluster(&namespace, &pod_name, &policy)) else {
            continue; // refused on input: nothing reaches the kernel
        };
        let rs = nftpol::compile(&idx, Some("n1"));
        assert!(rs.chains().iter().any(|c| c.name.ends_with("/drop")));
        let script = nftpol::script::render(&rs);
        let by_script = Netns::create();
        by_script
            .load_script(&script)
            .unwrap_or_else(|e| panic!("{pod_name:?}: nft -f failed:\n{e}\n{script}"));
        let by_netlink = Netns::create();
        by_netlink
            .with(|b| b.full_sync(&rs))
            .unwrap_or_else(|e| panic!("{pod_name:?}: netlink full sync failed: {e}"));
        let (want, got) = (by_script.listing("nftpol"), by_netlink.listing("nftpol"));
        assert!(want.contains("chain ingress/"), "{want}");
        assert_eq!(got, want, "{pod_name:?}");
        let live = by_netlink
            .with(|b| b.read_table("nftpol"))
            .expect("read back");
        assert_eq!(
            nftpol::netlink::drift(&rs, live.as_ref()),
            None,
            "{pod_name:?}"
        );
    }
}
