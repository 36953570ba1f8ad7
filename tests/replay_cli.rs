//! `nftpol replay` on verdict records in the JSON the controller logs (`nftpol run
//! --log-format json`, target `nftpol::verdict`, fields as `controller::nflog` writes
//! them): a policy change that revokes a recorded connection lists it, counted, with its
//! first and last time; one that does not lists nothing; a record of a pod that is gone is
//! reported as not judged, and so is one whose peer's address
//! is now another pod's; other log lines are skipped. The records here are written by
//! the test, not captured from traffic (tests/verdict_log.rs captures real ones as root).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster.yaml"))
        .unwrap()
}

/// payments/allow-metrics-scrape admits 8443 instead of `metrics` (9090).
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

#[allow(clippy::too_many_arguments)]
fn record(
    time: &str,
    verdict: &str,
    direction: &str,
    pod: &str,
    pod_ip: &str,
    peer: &str,
    peer_ip: &str,
    proto: &str,
    port: u16,
) -> String {
    let (namespace, name) = pod.split_once('/').unwrap();
    json!({"timestamp": time, "level": "INFO", "target": "nftpol::verdict", "fields": {
        "message": format!("connection {verdict} ({direction} of {pod})"),
        "verdict": verdict, "direction": direction, "namespace": namespace, "pod": name,
        "pod_ip": pod_ip, "peer": peer, "peer_ip": peer_ip, "protocol": proto,
        "port": port.to_string(), "src_port": "40000", "isolated_by": "", "allowed_by": "",
        "tiers": "", "generation": 3, "judged_by": "current", "lost_before": 0,
        "suppressed_before": ""}})
    .to_string()
}

fn records() -> String {
    let scrape = |t| {
        record(
            t,
            "allowed",
            "ingress",
            "payments/gateway-0",
            "10.244.1.40",
            "monitoring/prometheus-0",
            "10.244.2.60",
            "tcp",
            9090,
        )
    };
    [
        scrape("2026-12-06T10:00:00Z"),
        scrape("2026-12-06T10:05:00Z"),
        scrape("2026-12-06T10:01:00Z"),
        record(
            "2026-12-06T10:02:00Z",
            "allowed",
            "egress",
            "shop/web-0",
            "10.244.1.20",
            "kube-system/coredns-7d9f",
            "10.244.1.2",
            "udp",
            53,
        ),
        record(
            "2026-12-06T10:03:00Z",
            "denied",
            "ingress",
            "shop/gone-0",
            "10.244.1.99",
            "10.9.9.9",
            "10.9.9.9",
            "tcp",
            80,
        ),
        // The peer's address is another pod's now.
        record(
            "2026-12-06T10:03:30Z",
            "allowed",
            "egress",
            "shop/web-1",
            "10.244.1.21",
            "shop/api-9",
            "10.244.1.20",
            "tcp",
            8000,
        ),
        r#"{"timestamp":"2026-12-06T10:04:00Z","level":"INFO","fields":{"message":"reading verdict logs"},"target":"nftpol::controller::nflog"}"#.into(),
    ]
    .join("\n")
}

fn run(dir: &Path, state: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nftpol"))
        .args(["replay", "--records", "records.json", "-o", "json", state])
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn a_revoked_connection_is_listed_and_an_untouched_one_is_not() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("records.json"), records()).unwrap();
    std::fs::write(d.path().join("same.yaml"), example()).unwrap();
    std::fs::write(d.path().join("edited.yaml"), edited()).unwrap();

    let o = run(d.path(), "edited.yaml");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{v}");
    let c = &changes[0];
    assert_eq!(c["pod"], "payments/gateway-0");
    assert_eq!(c["direction"], "ingress");
    assert_eq!(c["peer"], "monitoring/prometheus-0");
    assert_eq!(c["port"], 9090);
    assert_eq!(c["count"], 3);
    assert_eq!(c["first"], "2026-12-06T10:00:00Z");
    assert_eq!(c["last"], "2026-12-06T10:05:00Z");
    assert_eq!(
        (&c["before"], &c["after"]),
        (&json!("allowed"), &json!("denied"))
    );
    let unjudged = v["unjudged"].as_array().unwrap();
    assert_eq!(unjudged.len(), 2, "{v}");
    let why = |pod: &str| {
        let u = unjudged.iter().find(|u| u["pod"] == pod).unwrap();
        u["because"][0].as_str().unwrap().to_string()
    };
    assert!(why("shop/gone-0").contains("shop/gone-0"), "{v}");
    assert!(why("shop/web-1").contains("now shop/web-0's"), "{v}");

    // The state the records were made in: nothing changes (the gone pod still unjudged).
    let o = run(d.path(), "same.yaml");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["changes"], json!([]), "{v}");
    assert_eq!(v["unjudged"].as_array().unwrap().len(), 2, "{v}");
}
