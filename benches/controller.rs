//! `cargo bench --features controller --bench controller` (root): the controller as a
//! separate process, fed by the fake API server with a generated cluster, programming a
//! scratch network namespace. For each coalescing setting it reports:
//!
//! - the resident memory after the first full sync, and that sync's time;
//! - one pod relabel at a time: event to kernel acknowledgement, p50 and p99, as the
//!   controller measures it (from the event reaching its sync loop) and as this bench sees
//!   it (from the API server write to the controller's `synced` line), with the median of
//!   each stage (watch, state, wait, diff, kernel);
//! - a new local pod to its rules in place (p50);
//! - a steady stream of mixed events (relabels, local and remote pod adds and deletes):
//!   the latency of the oldest event of every batch (p50, p99, max: no event of a batch
//!   waited longer), and the number of batches;
//! - a rollout burst: new local and remote pods within one second, and the time from the
//!   first of them to the last one's batch.
//!
//! The last line is `p99_ms=<x> stream_p99_ms=<y>` (one relabel at a time with 5 ms
//! coalescing, and the stream), for scripts. `NFTPOL_BENCH_SMOKE=1` runs a small cluster
//! and few events; `NFTPOL_BENCH_PODS`/`NFTPOL_BENCH_POLICIES` set the cluster size
//! (default 10,000 / 1,000), `NFTPOL_BENCH_COALESCE` the settings (default `5,1`) and
//! `NFTPOL_BENCH_ARGS` extra flags for `nftpol run`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
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

fn percentile(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `synced` log line of the controller, and when this bench read it.
struct Synced {
    at: Instant,
    fields: Value,
}

impl Synced {
    fn us(&self, key: &str) -> Option<u64> {
        self.fields[key].as_u64()
    }
}

/// `nftpol run` in its own process and network namespace.
struct Controller {
    child: Child,
    netns: String,
    rx: mpsc::Receiver<Synced>,
}

impl Controller {
    fn start(kubeconfig: &std::path::Path, node: &str, coalesce: u64) -> Controller {
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
            .args(["--log-format", "json", "run", "--node-name", node])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--netns", &format!("/run/netns/{netns}")])
            .args(["--coalesce-ms", &coalesce.to_string()])
            .args(["--resync-seconds", "3600"])
            // Extra flags for `nftpol run`, e.g. `--keep-established` to see what cutting
            // revoked connections costs each batch.
            .args(
                std::env::var("NFTPOL_BENCH_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nftpol run");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["fields"]["message"] == "synced" {
                        let synced = Synced {
                            at: Instant::now(),
                            fields: v["fields"].clone(),
                        };
                        if tx.send(synced).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Controller { child, netns, rx }
    }

    /// Every `synced` line until none comes for `quiet`.
    fn drain(&self, quiet: Duration) -> Vec<Synced> {
        std::iter::from_fn(|| self.rx.recv_timeout(quiet).ok()).collect()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// A pod some policy isolates on `node`: its copies get chains of their own.
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

/// A copy of `template` named `name` on node number `node` with the address `.slot` of
/// that node's /24 (as `synth` lays them out; slots above 101 are free).
fn new_pod(template: &Value, name: &str, node: usize, slot: usize) -> Value {
    let mut p = template.clone();
    p["metadata"]["name"] = json!(name);
    p["spec"]["nodeName"] = json!(format!("node-{node}"));
    let ip = format!("10.{}.{}.{slot}", 64 + node / 256, node % 256);
    p["status"]["podIP"] = json!(ip);
    p["status"]["podIPs"] = json!([{"ip": ip}]);
    p
}

/// The nodes of the cluster: ours, and the others in turn for remote pods.
struct Nodes {
    local: usize,
    count: usize,
}

impl Nodes {
    /// The `i`-th remote node (never ours).
    fn remote(&self, i: usize) -> usize {
        let k = i % (self.count - 1).max(1);
        (self.local + 1 + k) % self.count
    }
}

fn relabelled(pod: &Value, i: usize, round: usize) -> Value {
    let mut p = pod.clone();
    // Labels that selectors look at, different from the previous round's.
    p["metadata"]["labels"]["app"] = json!(format!("app-{}", (i * 3 + round * 5) % 8));
    p["metadata"]["labels"]["tier"] = json!(["frontend", "backend", "data"][(i + round) % 3]);
    p
}

fn ns_of(p: &Value) -> Option<&str> {
    p["metadata"]["namespace"].as_str()
}

/// One relabel at a time: (controller's event_to_batch, bench's apply-to-synced, stages).
struct OneAtATime {
    controller_us: Vec<u64>,
    bench_us: Vec<u64>,
    stages: Vec<[u64; 5]>,
}

fn one_at_a_time(
    server: &FakeApiServer,
    ctl: &Controller,
    local: &[Value],
    events: usize,
    round: usize,
) -> OneAtATime {
    let mut out = OneAtATime {
        controller_us: Vec::new(),
        bench_us: Vec::new(),
        stages: Vec::new(),
    };
    for i in 0..events {
        let sent = Instant::now();
        server.apply(relabelled(&local[i % local.len()], i, round));
        // Wait for its batch (or for nothing to change: not counted).
        if let Ok(s) = ctl.rx.recv_timeout(Duration::from_millis(1000)) {
            if let Some(us) = s.us("event_to_batch_us") {
                out.controller_us.push(us);
                out.bench_us
                    .push(s.at.duration_since(sent).as_micros() as u64);
                out.stages.push([
                    s.us("watch_us").unwrap_or(0),
                    s.us("state_us").unwrap_or(0),
                    s.us("wait_us").unwrap_or(0),
                    s.us("diff_us").unwrap_or(0),
                    s.us("kernel_us").unwrap_or(0),
                ]);
            }
        }
    }
    out
}

/// New local pods, one at a time: from the write to its rules in place.
fn new_pods(
    server: &FakeApiServer,
    ctl: &Controller,
    template: &Value,
    nodes: &Nodes,
    n: usize,
    round: usize,
) -> Vec<u64> {
    let mut adds = Vec::new();
    for i in 0..n {
        let name = format!("new-{round}-{i}");
        server.apply(new_pod(template, &name, nodes.local, 150 + i % 100));
        if let Ok(s) = ctl.rx.recv_timeout(Duration::from_millis(1000)) {
            adds.extend(s.us("event_to_batch_us"));
        }
        server.delete("Pod", ns_of(template), &name);
        let _ = ctl.rx.recv_timeout(Duration::from_millis(1000));
    }
    adds
}

/// `rate` events a second for `secs`: relabels of local pods, adds and deletes of local
/// and remote pods. Returns the batches' oldest-event latencies and the batch count.
#[allow(clippy::too_many_arguments)]
fn stream(
    server: &FakeApiServer,
    ctl: &Controller,
    local: &[Value],
    template: &Value,
    nodes: &Nodes,
    rate: usize,
    secs: usize,
    round: usize,
) -> Vec<u64> {
    let period = Duration::from_secs(1) / rate as u32;
    let start = Instant::now();
    let mut live: Vec<(Option<String>, String)> = Vec::new();
    for i in 0..rate * secs {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match i % 4 {
            0 | 1 => {
                server.apply(relabelled(&local[i % local.len()], i, round + 7));
            }
            2 => {
                let node = if i % 8 == 2 {
                    nodes.local
                } else {
                    nodes.remote(i / 8)
                };
                let name = format!("stream-{round}-{i}");
                server.apply(new_pod(template, &name, node, 150 + (i / 8) % 100));
                live.push((ns_of(template).map(str::to_string), name));
            }
            _ => {
                if live.len() > 20 {
                    let (ns, name) = live.remove(0);
                    server.delete("Pod", ns.as_deref(), &name);
                }
            }
        }
    }
    let batches = ctl.drain(Duration::from_millis(500));
    println!(
        "  stream batches, median per batch: {}",
        stage_medians(&batches)
    );
    for (ns, name) in live {
        server.delete("Pod", ns.as_deref(), &name);
    }
    ctl.drain(Duration::from_millis(300));
    batches
        .iter()
        .filter_map(|s| s.us("event_to_batch_us"))
        .collect()
}

/// `n` new pods (every tenth local) written within one second: from the first write to
/// the last batch's acknowledgement.
fn burst(
    server: &FakeApiServer,
    ctl: &Controller,
    template: &Value,
    nodes: &Nodes,
    n: usize,
    round: usize,
) -> (Duration, usize) {
    let period = Duration::from_secs(1) / n as u32;
    let start = Instant::now();
    let mut names = Vec::new();
    for i in 0..n {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (node, slot) = if i % 10 == 0 {
            (nodes.local, 150 + (i / 10) % 100)
        } else {
            (nodes.remote(i / 100), 150 + i % 100)
        };
        let name = format!("burst-{round}-{i}");
        server.apply(new_pod(template, &name, node, slot));
        names.push((ns_of(template).map(str::to_string), name));
    }
    let batches = ctl.drain(Duration::from_millis(1000));
    let took = batches
        .last()
        .map(|s| s.at.duration_since(start))
        .unwrap_or_default();
    println!(
        "  burst batches, median per batch: {}",
        stage_medians(&batches)
    );
    for (ns, name) in names {
        server.delete("Pod", ns.as_deref(), &name);
    }
    ctl.drain(Duration::from_millis(500));
    (took, batches.len())
}

/// The median of each stage and of the batch size over `batches`, as one line.
fn stage_medians(batches: &[Synced]) -> String {
    [
        "watch_us",
        "state_us",
        "wait_us",
        "diff_us",
        "kernel_us",
        "messages",
        "pods",
    ]
    .iter()
    .map(|k| {
        let v: Vec<u64> = batches.iter().filter_map(|s| s.us(k)).collect();
        format!("{k}={}", percentile(&v, 0.5))
    })
    .collect::<Vec<_>>()
    .join(" ")
}

fn median_stage(stages: &[[u64; 5]], i: usize) -> u64 {
    percentile(&stages.iter().map(|s| s[i]).collect::<Vec<_>>(), 0.5)
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
    let pods = env_usize("NFTPOL_BENCH_PODS", if smoke { 1_000 } else { 10_000 });
    let policies = env_usize("NFTPOL_BENCH_POLICIES", if smoke { 100 } else { 1_000 });
    let (events, stream_rate, stream_secs, burst_pods) = if smoke {
        (20, 200, 2, 100)
    } else {
        (200, 500, 20, 1_000)
    };
    let coalesces: Vec<u64> = std::env::var("NFTPOL_BENCH_COALESCE")
        .unwrap_or_else(|_| "5,1".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(FakeApiServer::start());
    let params = Params::new(pods, policies);
    let objects = cluster(&params);
    for o in &objects {
        server.apply(o.clone());
    }
    let nodes = Nodes {
        local: params.nodes() / 2,
        count: params.nodes(),
    };
    let node = format!("node-{}", nodes.local);
    let local: Vec<Value> = objects
        .iter()
        .filter(|v| v["kind"] == "Pod" && v["spec"]["nodeName"] == json!(node))
        .cloned()
        .collect();
    let template = isolated_template(&objects, &node, &local);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
    println!(
        "controller: {pods} pods, {policies} policies in the fake API server; node {node} has {} pods",
        local.len()
    );
    println!("one relabel at a time ({events} events): event -> kernel ack, p50/p99 in us, as the controller measures it (ctl) and from the API write (api); median stages in us");
    println!("stream: {stream_rate} events/s for {stream_secs} s, relabels and pod adds/deletes; latency of each batch's oldest event");
    println!("burst: {burst_pods} new pods (every tenth local) within 1 s; from the first write to the last batch");
    println!(
        "{:<9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>9} {:>9} {:>9} {:>7} {:>9} {:>7}",
        "coalesce", "rss_MiB", "hwm_MiB", "full_ms", "ctl_p50", "ctl_p99", "api_p50", "api_p99",
        "watch", "state", "wait", "diff", "kernel", "newpod", "strm_p50", "strm_p99", "strm_max",
        "batches", "burst_ms", "bursts"
    );
    let mut summary = (None, None);
    for (round, coalesce) in coalesces.into_iter().enumerate() {
        let ctl = Controller::start(&kubeconfig, &node, coalesce);
        let first = ctl
            .rx
            .recv_timeout(Duration::from_secs(600))
            .expect("first full sync");
        let full_ms = first.us("took_us").unwrap_or(0) as f64 / 1000.0;
        std::thread::sleep(Duration::from_millis(300));
        let pid = ctl.child.id();
        let (rss, hwm) = (rss_kib(pid, "VmRSS:"), rss_kib(pid, "VmHWM:"));
        let one = one_at_a_time(&server, &ctl, &local, events, round);
        let adds = new_pods(&server, &ctl, &template, &nodes, events.min(100), round);
        let streamed = stream(
            &server,
            &ctl,
            &local,
            &template,
            &nodes,
            stream_rate,
            stream_secs,
            round,
        );
        let (burst_took, bursts) = burst(&server, &ctl, &template, &nodes, burst_pods, round);
        let p99 = percentile(&one.controller_us, 0.99);
        let stream_p99 = percentile(&streamed, 0.99);
        println!(
            "{coalesce:<9} {:>7.1} {:>7.1} {full_ms:>8.1} {:>8} {p99:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>9} {stream_p99:>9} {:>9} {:>7} {:>9.1} {bursts:>7}",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            percentile(&one.controller_us, 0.5),
            percentile(&one.bench_us, 0.5),
            percentile(&one.bench_us, 0.99),
            median_stage(&one.stages, 0),
            median_stage(&one.stages, 1),
            median_stage(&one.stages, 2),
            median_stage(&one.stages, 3),
            median_stage(&one.stages, 4),
            percentile(&adds, 0.5),
            percentile(&streamed, 0.5),
            streamed.iter().max().copied().unwrap_or(0),
            streamed.len(),
            burst_took.as_secs_f64() * 1000.0,
        );
        if coalesce == 5 || summary.0.is_none() {
            summary = (Some(p99), Some(stream_p99));
        }
    }
    let ms = |us: Option<u64>| us.unwrap_or(0) as f64 / 1000.0;
    println!(
        "p99_ms={:.1} stream_p99_ms={:.1}",
        ms(summary.0),
        ms(summary.1)
    );
}
