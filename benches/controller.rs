//! `cargo bench --features controller --bench controller` (root): the controller as a
//! separate process, fed by the fake API server with a generated cluster, programming a
//! scratch network namespace. Reports the controller's resident memory after the first
//! full sync, and the time from a pod relabel event's arrival to its kernel batch being
//! acknowledged (p50, p99 over many events), with and without coalescing.
//!
//! `NFTPOL_BENCH_SMOKE=1` runs a small cluster and few events.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use nftpol::synth::{cluster, Params};
use serde_json::{json, Value};

fn rss_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn isolated_template(objects: &[Value], node: &str, local: &[Value]) -> Value {
    let objs = objects
        .iter()
        .filter_map(|v| {
            nftpol::input::object_from_value(v.clone(), "b")
                .ok()
                .flatten()
        })
        .collect();
    let index = nftpol::index::Index::from_objects(objs).unwrap();
    let model = nftpol::compile(&index, Some(node));
    local
        .iter()
        .find(|p| {
            let chain = format!(
                "ingress/{}/{}",
                p["metadata"]["namespace"].as_str().unwrap_or(""),
                p["metadata"]["name"].as_str().unwrap_or("")
            );
            model.chain(&chain).is_some()
        })
        .unwrap_or(&local[0])
        .clone()
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if nftpol::netlink::is_root() {
        run();
    } else {
        println!("SKIP controller bench: needs root (network namespaces, nftables)");
    }
}

fn run() {
    let smoke = std::env::var_os("NFTPOL_BENCH_SMOKE").is_some();
    let (pods, policies, events) = if smoke {
        (1_000, 100, 20)
    } else {
        (10_000, 1_000, 200)
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(FakeApiServer::start());
    let params = Params::new(pods, policies);
    let objects = cluster(&params);
    for o in &objects {
        server.apply(o.clone());
    }
    let node = format!("node-{}", params.nodes() / 2);
    let local: Vec<Value> = objects
        .iter()
        .filter(|v| v["kind"] == "Pod" && v["spec"]["nodeName"] == json!(node))
        .cloned()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
    println!("controller: {pods} pods, {policies} policies in the fake API server; node {node} has {} pods", local.len());
    println!(
        "{:<12} {:>10} {:>10} {:>12} {:>12} {:>12} {:>8} {:>16}",
        "coalesce_ms",
        "rss_MiB",
        "hwm_MiB",
        "full_sync_ms",
        "p50_us",
        "p99_us",
        "batches",
        "new_pod_p50_us"
    );
    println!("(p50/p99: pod relabel event -> kernel batch acknowledged; new_pod: a new local pod -> its rules in place)");
    println!(
        "(an event that changes nothing this node enforces gives no batch and is not counted)"
    );
    for (round, coalesce) in [20u64, 1].into_iter().enumerate() {
        let netns = format!("nftpol-bench-{}-{coalesce}", std::process::id());
        assert!(Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .unwrap()
            .success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nftpol"))
            .args([
                "--log-format",
                "json",
                "run",
                "--node-name",
                &node,
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--netns",
                &format!("/run/netns/{netns}"),
                "--coalesce-ms",
                &coalesce.to_string(),
                "--resync-seconds",
                "3600",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nftpol run");
        let (tx, rx) = mpsc::channel::<Value>();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["fields"]["message"] == "synced" && tx.send(v["fields"].clone()).is_err() {
                        return;
                    }
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("first full sync");
        let full_ms = first["took_us"].as_u64().unwrap_or(0) as f64 / 1000.0;
        std::thread::sleep(Duration::from_millis(300));
        let (rss, hwm) = (rss_kib(child.id(), "VmRSS:"), rss_kib(child.id(), "VmHWM:"));
        let mut latencies = Vec::new();
        let start = Instant::now();
        for i in 0..events {
            let mut p = local[i % local.len()].clone();
            // Every event changes labels that selectors look at (and differs from the
            // previous round's value).
            p["metadata"]["labels"]["app"] = json!(format!("app-{}", (i * 3 + round * 5) % 8));
            p["metadata"]["labels"]["tier"] =
                json!(["frontend", "backend", "data"][(i + round) % 3]);
            server.apply(p);
            // One event at a time: wait for its batch (or for nothing to change).
            if let Ok(v) = rx.recv_timeout(Duration::from_millis(1000)) {
                if let Some(us) = v["event_to_batch_us"].as_u64() {
                    latencies.push(us);
                }
            }
        }
        let _ = start;
        // New pods on this node: from the pod (with its address) reaching the controller to
        // its rules in the kernel. Without --default-deny-unknown the pod is reachable as if
        // unselected for this long; with it, the window is closed (its address is dropped).
        let mut adds = Vec::new();
        // A pod some policy isolates: pods with its labels get chains of their own.
        let template = isolated_template(&objects, &node, &local);
        let base = template["status"]["podIP"]
            .as_str()
            .unwrap_or("10.64.0.2")
            .rsplit_once('.')
            .map(|(a, _)| a.to_string())
            .unwrap_or_default();
        for i in 0..events.min(100) {
            let mut p = template.clone();
            p["metadata"]["name"] = json!(format!("new-{round}-{i}"));
            let ip = format!("{base}.{}", 150 + i % 100);
            p["status"]["podIP"] = json!(ip);
            p["status"]["podIPs"] = json!([{"ip": ip}]);
            server.apply(p);
            if let Ok(v) = rx.recv_timeout(Duration::from_millis(1000)) {
                if let Some(us) = v["event_to_batch_us"].as_u64() {
                    adds.push(us);
                }
            }
            server.delete(
                "Pod",
                template["metadata"]["namespace"].as_str(),
                &format!("new-{round}-{i}"),
            );
            let _ = rx.recv_timeout(Duration::from_millis(1000));
        }
        let add_p50 = if adds.is_empty() {
            0
        } else {
            percentile(&mut adds, 0.5)
        };
        let _ = child.kill();
        let _ = child.wait();
        let _ = Command::new("ip").args(["netns", "del", &netns]).status();
        let n = latencies.len();
        let (p50, p99) = if n > 0 {
            (
                percentile(&mut latencies, 0.5),
                percentile(&mut latencies, 0.99),
            )
        } else {
            (0, 0)
        };
        println!(
            "{coalesce:<12} {:>10.1} {:>10.1} {full_ms:>12.1} {p50:>12} {p99:>12} {n:>8} {add_p50:>16}",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
}
