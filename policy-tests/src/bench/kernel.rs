//! `bench kernel`: what nftpol's rulesets cost the kernel, through netlink in a scratch
//! namespace. For one node (100 local pods) of each generated cluster: full-sync apply
//! time next to `nft -f` of the same script, incremental batches for single changes made
//! with `NodeState` and applied with `netlink::diff` + `apply_ops`, and the kernel memory
//! the ruleset holds (see [`super::memory`]).

use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nftpol::index::Index;
use nftpol::input::object_from_value;
use nftpol::netlink::{self, SyncStats};
use nftpol::ruleset::Ruleset;
use nftpol::state::{Batch, NodeState};
use nftpol::synth::{cluster, Params};
use serde_json::{json, Value};

use super::memory::{Delta, Sample};
use super::net::Scratch;
use super::stats::{median, median_ms, mib};
use crate::netns;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster sizes in pods (comma-separated); every size is run with every --policies.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000])]
    pods: Vec<usize>,
    /// Policy counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1_000])]
    policies: Vec<usize>,
    /// Repetitions of each timing (medians).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Load/unload cycles for the memory measurement (medians).
    #[arg(long, default_value_t = 5)]
    memory_cycles: usize,
    /// One small cluster, 2 repetitions: proves the benchmark still works (CI).
    #[arg(long)]
    smoke: bool,
}

/// How long nf_tables gets to free an unloaded table (its destroy work is asynchronous).
const SETTLE: Duration = Duration::from_millis(500);

fn elements(rs: &Ruleset) -> usize {
    rs.sets().iter().map(|s| s.elements.len()).sum::<usize>()
        + rs.maps().iter().map(|m| m.elements.len()).sum::<usize>()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `f` in the scratch namespace's thread; returns its value and its wall time.
fn timed_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<(T, Duration)> {
    let (value, took) = netlink::in_netns(path, || {
        let t = Instant::now();
        let v = f();
        (v, t.elapsed())
    })?;
    Ok((value, took))
}

fn full_sync(path: &Path, model: &Ruleset) -> Result<(SyncStats, Duration)> {
    let (stats, took) = timed_in(path, || netlink::full_sync(model))?;
    Ok((stats.context("netlink full sync")?, took))
}

struct Sizes {
    pods: usize,
    policies: usize,
}

/// One row of the full-sync table, and the incremental table of its cluster.
fn measure(args: &Args, scratch: &Scratch, size: &Sizes, out: &mut String) -> Result<String> {
    let (runs, cycles) = if args.smoke {
        (2, 2)
    } else {
        (args.runs.max(1), args.memory_cycles.max(1))
    };
    let params = Params::new(size.pods, size.policies);
    let values = cluster(&params);
    let node = format!("node-{}", params.nodes() / 2);
    let mut objects = Vec::with_capacity(values.len());
    for v in &values {
        objects.push(object_from_value(v.clone(), "synth")?.context("a kind nftpol reads")?);
    }
    let t = Instant::now();
    let mut state = NodeState::new(Index::from_objects(objects)?, Some(&node));
    let build = t.elapsed();
    let model = state.model().clone();
    let script = nftpol::script::render(&model);
    let path = scratch.path();
    eprintln!(
        "{} pods, {} policies: node {node} built in {:.0} ms; {} elements, script {:.1} MB",
        size.pods,
        size.policies,
        ms(build),
        elements(&model),
        script.len() as f64 / 1e6
    );

    let (mut sync_times, mut nft_times) = (Vec::new(), Vec::new());
    let mut stats = None;
    for _ in 0..runs {
        netns::nft(&scratch.name, "flush ruleset\n")?;
        let (s, took) = full_sync(&path, &model)?;
        sync_times.push(took);
        stats = Some(s);
        netns::nft(&scratch.name, "flush ruleset\n")?;
        let t = Instant::now();
        netns::nft(&scratch.name, &script).context("nft -f of the rendered script")?;
        nft_times.push(t.elapsed());
    }
    let stats = stats.context("no run")?;

    // Memory: load on an empty namespace, median of the deltas; the same interval
    // without a load gives the noise.
    let (mut deltas, mut noise) = (Vec::new(), Vec::new());
    for _ in 0..cycles {
        netns::nft(&scratch.name, "flush ruleset\n")?;
        std::thread::sleep(SETTLE);
        let before = Sample::now()?;
        let t = Instant::now();
        full_sync(&path, &model)?;
        std::thread::sleep(Duration::from_millis(100));
        deltas.push(Sample::now()?.since(&before));
        let idle = Sample::now()?;
        std::thread::sleep(t.elapsed());
        noise.push(Sample::now()?.since(&idle).total().abs());
    }
    let med =
        |f: fn(&Delta) -> f64| median(&deltas.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
    let mem_med = med(Delta::total);
    let _ = writeln!(
        out,
        "{:>7} {:>8} {:>9} {:>6} {:>7.2} {:>10.1} {:>9.1} {:>6.2} {:>8} {:>7} {:>7} {:>7} {:>8} {:>6} {:>7.0}",
        size.pods,
        size.policies,
        elements(&model),
        stats.messages,
        stats.bytes as f64 / 1e6,
        median_ms(&sync_times).unwrap_or(0.0),
        median_ms(&nft_times).unwrap_or(0.0),
        median_ms(&nft_times).unwrap_or(0.0) / median_ms(&sync_times).unwrap_or(1.0),
        mib(mem_med),
        mib(med(|d| d.slab)),
        mib(med(|d| d.vmalloc)),
        mib(med(|d| d.percpu)),
        mib(med(|d| d.slab_objects)),
        mib(median(&noise).unwrap_or(0.0)),
        mem_med / elements(&model).max(1) as f64
    );
    incremental(&mut state, &values, &node, scratch, runs, size)
}

/// A change to make for repetition `i`, as the object to apply.
type Change<'a> = (&'a str, Box<dyn Fn(usize) -> Value + 'a>);

fn changes<'a>(values: &'a [Value], node: &str, local: &'a [Value]) -> Result<Vec<Change<'a>>> {
    let first = local.first().context("the node has no pods")?;
    let home_ns = first["metadata"]["namespace"].clone();
    let policy = values
        .iter()
        .filter(|v| v["kind"] == "NetworkPolicy" && v["spec"]["ingress"][0]["ports"].is_array())
        .find(|v| v["metadata"]["namespace"] == home_ns)
        .or_else(|| {
            values.iter().find(|v| {
                v["kind"] == "NetworkPolicy" && v["spec"]["ingress"][0]["ports"].is_array()
            })
        })
        .context("no policy with ingress ports")?;
    let namespace = values
        .iter()
        .find(|v| v["kind"] == "Namespace" && v["metadata"]["name"] == home_ns)
        .context("the namespace of the node's first pod")?;
    let subnet = first["status"]["podIP"]
        .as_str()
        .and_then(|ip| ip.rsplit_once('.'))
        .map(|(net, _)| net.to_string())
        .context("the node's pod subnet")?;
    let node = node.to_string();
    Ok(vec![
        (
            "pod added (local)",
            Box::new(move |i| {
                let mut p = first.clone();
                let ip = format!("{subnet}.{}", 150 + i);
                p["metadata"]["name"] = json!(format!("bench-add-{i}"));
                p["spec"]["nodeName"] = json!(node);
                p["status"]["podIP"] = json!(ip);
                p["status"]["podIPs"] = json!([{ "ip": ip }]);
                p
            }),
        ),
        (
            "pod added (remote)",
            Box::new(move |i| {
                let mut p = first.clone();
                let ip = format!("10.255.0.{}", 1 + i);
                p["metadata"]["name"] = json!(format!("bench-remote-{i}"));
                p["spec"]["nodeName"] = json!("node-remote");
                p["status"]["podIP"] = json!(ip);
                p["status"]["podIPs"] = json!([{ "ip": ip }]);
                p
            }),
        ),
        (
            "pod relabelled (local)",
            Box::new(move |i| {
                let mut p = local[i % local.len()].clone();
                let app = p["metadata"]["labels"]["app"].as_str().unwrap_or("app-0");
                let n: usize = app.trim_start_matches("app-").parse().unwrap_or(0);
                p["metadata"]["labels"]["app"] = json!(format!("app-{}", (n + 1) % 8));
                p
            }),
        ),
        (
            "policy changed",
            Box::new(move |i| {
                let mut p = policy.clone();
                p["spec"]["ingress"][0]["ports"] = json!([{"port": 1000 + i}]);
                p
            }),
        ),
        (
            "namespace relabelled",
            Box::new(move |i| {
                let mut n = namespace.clone();
                n["metadata"]["labels"]["team"] = json!(format!("team-{}", (i + 1) % 20));
                n["metadata"]["labels"]["env"] = json!(["prod", "dev"][i % 2]);
                n
            }),
        ),
    ])
}

/// One change at a time: `NodeState::apply`, `diff(old, new)`, `apply_ops` in the kernel.
fn incremental(
    state: &mut NodeState,
    values: &[Value],
    node: &str,
    scratch: &Scratch,
    runs: usize,
    size: &Sizes,
) -> Result<String> {
    let path = scratch.path();
    netns::nft(&scratch.name, "flush ruleset\n")?;
    full_sync(&path, state.model())?;
    state.acknowledged(true);
    let local: Vec<Value> = values
        .iter()
        .filter(|v| v["kind"] == "Pod" && v["spec"]["nodeName"] == json!(node))
        .cloned()
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nincremental: {} pods, {} policies, node {node}; one change at a time, medians of {runs}",
        size.pods, size.policies
    );
    let _ = writeln!(
        out,
        "{:<24} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "change", "recomputed", "state_ms", "diff_ms", "apply_ms", "kernel_ms", "messages", "bytes"
    );
    for (name, make) in changes(values, node, &local)? {
        let (mut st, mut df, mut ap, mut kn) = (vec![], vec![], vec![], vec![]);
        let (mut msgs, mut bytes, mut recomputed) = (vec![], vec![], vec![]);
        for i in 0..runs {
            let obj = object_from_value(make(i), "bench")?.context("a kind nftpol reads")?;
            let t = Instant::now();
            let update = state.apply(obj)?;
            st.push(t.elapsed());
            // As the controller does: the state's batch, from what the kernel holds.
            let t = Instant::now();
            let ops = match state.batch() {
                Batch::Nothing => Vec::new(),
                Batch::Update { before, after } => match netlink::diff_views(&before, &after) {
                    Some(ops) => ops,
                    // An object's type or flags changed: the whole models' difference.
                    None => netlink::diff(state.kernel().context("a kernel model")?, state.model()),
                },
                Batch::Full(_) => bail!("{name}: one change asked for a full sync"),
            };
            df.push(t.elapsed());

            let table = state.model().name.clone();
            let (s, took) = timed_in(&path, || netlink::apply_ops(&table, &ops))?;
            let s = s.with_context(|| format!("{name}: netlink apply_ops"))?;
            state.acknowledged(false);
            ap.push(took);
            kn.push(s.elapsed);
            msgs.push(s.messages as f64);
            bytes.push(s.bytes as f64);
            recomputed.push(update.recomputed.len() as f64);
        }
        let _ = writeln!(
            out,
            "{name:<24} {:>10.0} {:>9.2} {:>8.2} {:>9.2} {:>9.2} {:>9.0} {:>9.0}",
            median(&recomputed).unwrap_or(0.0),
            median_ms(&st).unwrap_or(0.0),
            median_ms(&df).unwrap_or(0.0),
            median_ms(&ap).unwrap_or(0.0),
            median_ms(&kn).unwrap_or(0.0),
            median(&msgs).unwrap_or(0.0),
            median(&bytes).unwrap_or(0.0)
        );
    }
    // The kernel must now hold exactly the model.
    let live = netlink::in_netns(&path, || netlink::read_table(&state.model().name))?
        .context("reading the table back")?;
    if let Some(d) = netlink::drift(state.model(), live.as_ref()) {
        bail!("after the incremental changes the kernel differs from the model: {d}");
    }
    let _ = writeln!(
        out,
        "read back after the changes: the kernel matches the model"
    );
    Ok(out)
}

/// Runs the benchmark and prints its tables.
pub fn run(args: &Args, prefix: &str) -> Result<()> {
    let sizes: Vec<Sizes> = if args.smoke {
        vec![Sizes {
            pods: 500,
            policies: 50,
        }]
    } else {
        let mut v = Vec::new();
        for &pods in &args.pods {
            for &policies in &args.policies {
                v.push(Sizes { pods, policies });
            }
        }
        v
    };
    if sizes.iter().any(|s| s.pods == 0) {
        bail!("--pods must be positive");
    }
    let scratch = Scratch::new(format!("{prefix}k"))?;
    let mut table = String::new();
    let mut incremental = Vec::new();
    for size in &sizes {
        incremental.push(measure(args, &scratch, size, &mut table)?);
    }
    println!(
        "kernel: one node (100 local pods) of each generated cluster, scratch namespace; medians"
    );
    println!(
        "{:>7} {:>8} {:>9} {:>6} {:>7} {:>10} {:>9} {:>6} {:>8} {:>7} {:>7} {:>7} {:>8} {:>6} {:>7}",
        "pods",
        "policies",
        "elements",
        "msgs",
        "MB",
        "netlink_ms",
        "nft_f_ms",
        "nft/nl",
        "mem_MiB",
        "slab",
        "vmalloc",
        "percpu",
        "objects",
        "noise",
        "B/elem"
    );
    print!("{table}");
    println!("mem_MiB = slab + vmalloc + percpu: /proc/meminfo after a full sync into the empty namespace minus before (MiB);");
    println!("objects: live slab object bytes (/proc/slabinfo); noise: |mem| over the same interval with no load; B/elem = mem / elements");
    for t in incremental {
        print!("{t}");
    }
    netns::nft(&scratch.name, "flush ruleset\n")?;
    Ok(())
}
