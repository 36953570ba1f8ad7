//! `cargo bench --bench diff`: `nftpol diff` on a generated 10,000-pod, 1,000-policy
//! cluster (issue 28's row): one policy changed (a kind-3 rule loses a port) and one
//! namespace relabelled (another team, `env: prod`; `relabel_namespace` says which), both at once and each alone. Prints,
//! per row, the median time of the graphs of both states and of the diff itself, the
//! changes found and the connections' port ranges they hold, and at the end the peak RSS
//! of the whole process (the generated objects, both indexes and graphs included).
//!
//! `NFTPOL_BENCH_SMOKE=1`: 1,000 pods / 100 policies, one run (CI).
//! `NFTPOL_BENCH_RUNS`: runs per row (default 3).

use std::time::{Duration, Instant};

use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::{object_from_value, Object};
use nftpol::synth::{cluster, Params};
use serde_json::{json, Value};

fn objects(values: &[Value]) -> Vec<Object> {
    values
        .iter()
        .map(|v| object_from_value(v.clone(), "synth").unwrap().unwrap())
        .collect()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The first kind-3 policy (ingress from prod frontends on 8080 and 8081) keeps 8080.
fn change_policy(values: &mut [Value]) {
    let p = values
        .iter_mut()
        .find(|v| v["kind"] == "NetworkPolicy" && v["metadata"]["name"] == "policy-00003")
        .expect("policy-00003");
    p["spec"]["ingress"][0]["ports"] = json!([{"port": 8080}]);
}

/// Namespace ns-0029 (39 pods, no policy isolates them for egress) moves from team-9 and
/// dev to team-0 (which kind-7 policies exclude from their data pods) and prod (which
/// kind-3 policies admit). The smoke cluster has 25 namespaces: its last one moves.
fn relabel_namespace(values: &mut [Value]) {
    let is_ns = |v: &Value| v["kind"] == "Namespace";
    let at = values
        .iter()
        .position(|v| is_ns(v) && v["metadata"]["name"] == "ns-0029")
        .or_else(|| values.iter().rposition(is_ns))
        .expect("a namespace");
    let ns = &mut values[at];
    ns["metadata"]["labels"]["team"] = json!("team-0");
    ns["metadata"]["labels"]["env"] = json!("prod");
}

fn main() {
    let smoke = std::env::var_os("NFTPOL_BENCH_SMOKE").is_some();
    let runs: usize = std::env::var("NFTPOL_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if smoke { 1 } else { 3 });
    let (pods, policies) = if smoke { (1_000, 100) } else { (10_000, 1_000) };
    let before_values = cluster(&Params::new(pods, policies));
    let before = Index::from_objects(objects(&before_values)).unwrap();
    println!("diff: {pods} pods / {policies} policies, whole cluster; median of {runs} runs");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "change", "graphs_ms", "diff_ms", "total_ms", "changes", "port_sets"
    );
    type Edit = fn(&mut [Value]);
    let rows: [(&str, &[Edit]); 3] = [
        (
            "policy + namespace relabel",
            &[change_policy, relabel_namespace],
        ),
        ("policy changed", &[change_policy]),
        ("namespace relabelled", &[relabel_namespace]),
    ];
    for (name, edits) in rows {
        let mut after_values = before_values.clone();
        for edit in edits {
            edit(&mut after_values);
        }
        let after = Index::from_objects(objects(&after_values)).unwrap();
        let (mut t_graphs, mut t_diff) = (Vec::new(), Vec::new());
        let mut found = (0, 0);
        for _ in 0..runs {
            let t = Instant::now();
            let graphs = [PolicyGraph::build(&before), PolicyGraph::build(&after)];
            t_graphs.push(t.elapsed());
            let t = Instant::now();
            let d = nftpol::change::diff_graphs([&before, &after], [&graphs[0], &graphs[1]]);
            t_diff.push(t.elapsed());
            found = (
                d.changes.len(),
                d.changes.iter().map(|c| c.ports.len()).sum::<usize>(),
            );
        }
        let (g, d) = (median(t_graphs), median(t_diff));
        println!(
            "{name:<28} {:>10.1} {:>10.1} {:>10.1} {:>8} {:>10}",
            g.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3,
            (g + d).as_secs_f64() * 1e3,
            found.0,
            found.1
        );
    }
    println!("peak RSS of the whole run: {} MiB", peak_rss_kib() / 1024);
}
