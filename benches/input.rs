//! `cargo bench --bench input`: reading kubectl dumps (`kubectl get ns,pods,networkpolicies
//! -A -o yaml` and `-o json`, with managedFields and last-applied annotations) of 10,000
//! and 100,000 pods, as time and peak memory, each also as a ratio to parsing the JSON dump
//! into a `serde_json::Value` alone (the least any reader does). Each row runs in a child
//! process of its own, so its peak RSS (VmHWM) is its own; the file's bytes are in memory
//! in every row.
//!
//! Rows: `json-value` (serde_json to a Value, the reference), `parse` (nftpol's reader:
//! text to objects), `load` (reader and index, what `compile` does before the graph).
//!
//! Times are medians of `NFTPOL_BENCH_RUNS` runs (default 3), peaks the largest.
//! `NFTPOL_BENCH_SMOKE=1`: 500 pods, one run (CI). `NFTPOL_BENCH_DIR=DIR` keeps the dumps in DIR
//! (`DIR/pods-N.yaml`, `.json`) for use with `nftpol compile`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nftpol::dump::{write_list, Format};
use nftpol::index::Index;
use nftpol::input::{parse_bytes, ParseOptions};
use nftpol::synth::{cluster, Params};

const CHILD: &str = "NFTPOL_BENCH_INPUT_CHILD";

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

/// In the child: one row's work on one file; prints `seconds peak_kib objects`.
fn child(row: &str, path: &str) {
    let bytes = std::fs::read(path).expect("read the dump");
    let start = Instant::now();
    let objects = match row {
        "json-value" => {
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            v["items"].as_array().map_or(0, Vec::len)
        }
        "parse" => parse_bytes(&bytes, path, &ParseOptions::default())
            .expect("parse")
            .len(),
        "load" => {
            let objects = parse_bytes(&bytes, path, &ParseOptions::default()).expect("parse");
            let n = objects.len();
            let index = Index::from_objects(objects).expect("index");
            std::hint::black_box(&index);
            n
        }
        other => panic!("unknown row {other}"),
    };
    let secs = start.elapsed().as_secs_f64();
    println!("{secs} {} {objects}", peak_rss_kib());
}

/// The median time and the largest peak of `runs` runs (the machine may be shared).
fn measure(row: &str, path: &Path, runs: usize) -> (f64, u64, usize) {
    let mut results: Vec<_> = (0..runs).map(|_| run_child(row, path)).collect();
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let peak = results.iter().map(|r| r.1).max().unwrap_or(0);
    let (secs, _, n) = results[results.len() / 2];
    (secs, peak, n)
}

fn run_child(row: &str, path: &Path) -> (f64, u64, usize) {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD, format!("{row} {}", path.display()))
        .output()
        .expect("run the child");
    assert!(
        out.status.success(),
        "{row} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let mut next = || it.next().expect("three figures");
    (
        next().parse().unwrap(),
        next().parse().unwrap(),
        next().parse().unwrap(),
    )
}

fn write_dump(dir: &Path, pods: usize, format: Format) -> PathBuf {
    let ext = if format == Format::Yaml {
        "yaml"
    } else {
        "json"
    };
    let path = dir.join(format!("pods-{pods}.{ext}"));
    let objects = cluster(&Params::new(pods, pods / 10));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    write_list(&objects, format, &mut out).expect("write");
    out.flush().expect("flush");
    path
}

fn main() {
    if let Ok(arg) = std::env::var(CHILD) {
        let (row, path) = arg.split_once(' ').expect("row and path");
        return child(row, path);
    }
    let smoke = std::env::var_os("NFTPOL_BENCH_SMOKE").is_some();
    let sizes: &[usize] = if smoke { &[500] } else { &[10_000, 100_000] };
    let runs = std::env::var("NFTPOL_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if smoke { 1 } else { 3 });
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = std::env::var_os("NFTPOL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    println!("pods     format  MB      row         objects  seconds  peak MiB  time/json-value  peak/json-value");
    for &pods in sizes {
        let json = write_dump(&dir, pods, Format::Json);
        let yaml = write_dump(&dir, pods, Format::Yaml);
        let (base_s, base_kib, base_n) = measure("json-value", &json, runs);
        for (format, path) in [("json", &json), ("yaml", &yaml)] {
            let mb = std::fs::metadata(path).map_or(0, |m| m.len()) as f64 / 1e6;
            let rows: &[&str] = if format == "json" {
                &["json-value", "parse", "load"]
            } else {
                &["parse", "load"]
            };
            for row in rows {
                let (s, kib, n) = if *row == "json-value" {
                    (base_s, base_kib, base_n)
                } else {
                    measure(row, path, runs)
                };
                println!(
                    "{pods:<8} {format:<7} {mb:<7.1} {row:<11} {n:<8} {s:<8.2} {:<9} {:<16.2} {:.2}",
                    kib / 1024,
                    s / base_s,
                    kib as f64 / base_kib as f64
                );
            }
        }
    }
}
