//! `cargo bench --bench compile`: how compile time grows with pods and policies, and what
//! one change costs through the incremental path. Prints a table; times are medians of
//! several runs in this one process, so compare rows as ratios, not absolute numbers.
//!
//! Set `NFTPOL_BENCH_SMOKE=1` for a quick run on small sizes (CI uses it), and
//! `NFTPOL_BENCH_ONLY=compile`, `=incremental` or `=<words of a row name>` to run one half
//! or one incremental row, e.g. under a profiler.

use std::time::{Duration, Instant};

use nftpol::index::Index;
use nftpol::input::{object_from_value, Kind, Object};
use nftpol::state::{Batch, NodeState};
use nftpol::synth::{cluster, Params};
use serde_json::{json, Value};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn objects(values: &[Value]) -> Vec<Object> {
    values
        .iter()
        .map(|v| object_from_value(v.clone(), "synth").unwrap().unwrap())
        .collect()
}

/// Netlink messages of the batch for a change (0 without the netlink feature).
#[cfg(feature = "netlink")]
fn batch_messages(state: &mut NodeState) -> usize {
    // As the controller does: the state's batch, from what the kernel holds.
    let ops = match state.batch() {
        Batch::Nothing => return 0,
        Batch::Full(_) => panic!("one change needs no full sync"),
        Batch::Update { before, after } => {
            nftpol::netlink::diff_views(&before, &after).expect("an in-place change")
        }
    };
    nftpol::netlink::encode_ops(&state.model().name, &ops, 1).messages
}

#[cfg(not(feature = "netlink"))]
fn batch_messages(state: &mut NodeState) -> usize {
    let _ = state.batch();
    0
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn main() {
    let smoke = std::env::var_os("NFTPOL_BENCH_SMOKE").is_some();
    // `cargo bench` passes --bench; ignore arguments.
    let scales: Vec<(usize, usize)> = if smoke {
        vec![(1_000, 100)]
    } else {
        vec![
            (1_000, 100),
            (10_000, 100),
            (10_000, 1_000),
            (10_000, 5_000),
            (50_000, 1_000),
            (50_000, 5_000),
        ]
    };
    let only = std::env::var("NFTPOL_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "compile" {
        compile_rows(smoke, &scales);
    }
    if only != "compile" {
        let row = if only == "incremental" { "" } else { &only };
        incremental_rows(smoke, row);
    }
}

fn compile_rows(smoke: bool, scales: &[(usize, usize)]) {
    let runs = if smoke { 3 } else { 5 };
    println!("compile: one node (100 local pods) of a generated cluster; median of {runs} runs");
    println!(
        "{:>7} {:>8} {:>12} {:>12} {:>12} {:>10} {:>12}",
        "pods", "policies", "index_ms", "compile_ms", "render_ms", "script_MB", "elements"
    );
    let mut base: Option<f64> = None;
    for &(pods, policies) in scales {
        let params = Params::new(pods, policies);
        let values = cluster(&params);
        let node = format!("node-{}", params.nodes() / 2);
        let (mut t_index, mut t_compile, mut t_render) = (vec![], vec![], vec![]);
        let mut size = 0;
        let mut elements = 0;
        for _ in 0..runs {
            let objs = objects(&values);
            let t = Instant::now();
            let index = Index::from_objects(objs).unwrap();
            t_index.push(t.elapsed());
            let t = Instant::now();
            let model = nftpol::compile(&index, Some(&node));
            t_compile.push(t.elapsed());
            let t = Instant::now();
            let script = nftpol::script::render(&model);
            t_render.push(t.elapsed());
            size = script.len();
            elements = model.sets().iter().map(|s| s.elements.len()).sum::<usize>();
        }
        let c = median(t_compile);
        let ratio = base.map(|b| c.as_secs_f64() / b).unwrap_or(1.0);
        base.get_or_insert(c.as_secs_f64());
        println!(
            "{pods:>7} {policies:>8} {:>12} {:>12} {:>12} {:>10.2} {:>12}   x{ratio:.1} of the first row",
            ms(median(t_index)),
            ms(c),
            ms(median(t_render)),
            size as f64 / 1e6,
            elements
        );
    }
    println!("peak RSS of the whole run: {} MiB", peak_rss_kib() / 1024);
}

fn incremental_rows(smoke: bool, only_row: &str) {
    // Incremental: one change at a time on a 10,000-pod, 1,000-policy cluster.
    let (pods, policies) = if smoke { (1_000, 100) } else { (10_000, 1_000) };
    let params = Params::new(pods, policies);
    let values = cluster(&params);
    let node = format!("node-{}", params.nodes() / 2);
    let index = Index::from_objects(objects(&values)).unwrap();
    let t = Instant::now();
    let mut state = NodeState::new(index, Some(&node));
    let full = t.elapsed();
    let local: Vec<Value> = values
        .iter()
        .filter(|v| v["kind"] == "Pod" && v["spec"]["nodeName"] == json!(node))
        .cloned()
        .collect();
    let local_ns: std::collections::BTreeSet<&str> = local
        .iter()
        .filter_map(|p| p["metadata"]["namespace"].as_str())
        .collect();
    let some_policy = values
        .iter()
        // A policy in a namespace with pods on this node: its changes reach the node.
        .find(|v| {
            v["kind"] == "NetworkPolicy"
                && v["spec"]["ingress"].is_array()
                && v["metadata"]["namespace"]
                    .as_str()
                    .is_some_and(|ns| local_ns.contains(ns))
        })
        .unwrap()
        .clone();
    let some_ns = values
        .iter()
        .find(|v| v["kind"] == "Namespace")
        .unwrap()
        .clone();
    println!(
        "\nincremental: {pods} pods, {policies} policies, node {node}; full build {} ms",
        ms(full)
    );
    println!(
        "{:<22} {:>12} {:>14} {:>12} {:>10}",
        "change", "median_ms", "pods_recomputed", "batch_msgs", "x_full"
    );
    println!(
        "(median_ms: the change applied to the node state, plus, with --features netlink, the"
    );
    println!(
        " diff of the touched pods' objects and its encoding as a netlink batch: batch ready;"
    );
    println!(" pods_recomputed and batch_msgs: least..most over the runs)");
    // A remote pod whose address some local pod's allow list holds.
    let peer_template = {
        let graph = state.graph();
        let allowed = |ip: std::net::IpAddr| {
            graph.pods.values().any(|n| {
                [n.ingress.as_ref(), n.egress.as_ref()]
                    .into_iter()
                    .flatten()
                    .flat_map(|iso| &iso.allows)
                    .any(|a| {
                        a.peer != nftpol::graph::PeerRef::Any && graph.peer_contains(a.peer, ip)
                    })
            })
        };
        values
            .iter()
            .find(|v| {
                v["kind"] == "Pod"
                    && v["spec"]["nodeName"] != json!(node)
                    && v["status"]["podIP"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .is_some_and(allowed)
            })
            .expect("a remote peer")
            .clone()
    };
    let reps = if smoke { 5 } else { 21 };
    // The kernel holds the first build: each change's batch is measured from there.
    state.acknowledged(true);
    // A change is prepared (parsed into an object, as the controller receives it from its
    // watch) outside the timed part; the timed part is what the controller does with it.
    enum Change {
        Apply(Box<Object>),
        Delete(Kind, String, String),
    }
    let mut row = |name: &str, prepare: &mut dyn FnMut(usize) -> Change| {
        let mut times = Vec::new();
        let mut recomputed = Vec::new();
        let mut messages = Vec::new();
        if !name.contains(only_row) {
            return;
        }
        for i in 0..reps {
            let change = prepare(i);
            let t = Instant::now();
            let touched = match change {
                Change::Apply(o) => state.apply(*o).unwrap().recomputed,
                Change::Delete(kind, ns, name) => state.delete(kind, Some(&ns), &name).recomputed,
            };
            messages.push(batch_messages(&mut state));
            times.push(t.elapsed());
            recomputed.push(touched.len());
            state.acknowledged(false);
        }
        let m = median(times);
        let range = |mut v: Vec<usize>| {
            v.sort();
            format!("{}..{}", v[0], v[v.len() - 1])
        };
        println!(
            "{name:<22} {:>12} {:>14} {:>12} {:>10.4}",
            ms(m),
            range(recomputed),
            range(messages),
            m.as_secs_f64() / full.as_secs_f64()
        );
    };
    let parse = |v: Value| Change::Apply(Box::new(object_from_value(v, "bench").unwrap().unwrap()));
    row("pod add (remote)", &mut |i| {
        // A twin of a remote pod that some local pod's policy allows: a new peer.
        let mut p = peer_template.clone();
        p["metadata"]["name"] = json!(format!("bench-{i}"));
        p["spec"]["nodeName"] = json!("node-0");
        p["status"]["podIPs"] = json!([{"ip": format!("10.255.0.{}", i + 1)}]);
        parse(p)
    });
    row("pod delete (remote)", &mut |i| {
        let ns = peer_template["metadata"]["namespace"].as_str().unwrap();
        Change::Delete(Kind::Pod, ns.to_string(), format!("bench-{i}"))
    });
    row("pod relabel (local)", &mut |i| {
        let mut p = local[i % local.len()].clone();
        // Selection changes: the tier decides which policies select it and whose peer it is.
        p["metadata"]["labels"]["app"] = json!(format!("app-{}", i % 8));
        p["metadata"]["labels"]["tier"] = json!(["frontend", "backend", "data"][i % 3]);
        parse(p)
    });
    row("namespace relabel", &mut |i| {
        let mut n = some_ns.clone();
        n["metadata"]["labels"]["team"] = json!(format!("team-{}", i % 20));
        parse(n)
    });
    row("policy add", &mut |i| {
        let mut p = some_policy.clone();
        p["metadata"]["name"] = json!(format!("bench-policy-{i}"));
        parse(p)
    });
    row("policy change", &mut |i| {
        let mut p = some_policy.clone();
        p["spec"]["ingress"][0]["ports"] = json!([{"port": 1000 + i}]);
        parse(p)
    });
}
