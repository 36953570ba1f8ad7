//! `bench conntrack`: what cutting revoked connections costs, and how fast it is.
//!
//! - judge and delete: a scratch namespace holds N conntrack entries (UDP, created over
//!   ctnetlink) between the 100 local pods of a generated node (10,000 pods, 1,000
//!   policies) and pods across the cluster; times the controller's path (filtered dump,
//!   judge against the node's model, delete) for a batch touching one pod, and for a full
//!   sync (every local pod), plus the judge alone.
//! - revoking event to last byte: a routed node programmed by the controller (fake API
//!   server); pod a sends a byte to b every 2 ms over TCP; a policy isolating b is applied;
//!   the time from that API write to the last byte b received, over many runs (p50, p99).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fake_apiserver::FakeApiServer;
use nftpol::controller::{self, dataplane::NetlinkDataplane};
use nftpol::flow::{Flow, Tuple};
use nftpol::index::Index;
use nftpol::input::object_from_value;
use nftpol::netlink::{self, Conntrack};
use nftpol::revoke::{Judge, Scope};
use nftpol::synth::{cluster, Params};
use serde_json::json;

use super::net::Scratch;
use super::stats::median_ms;
use crate::netns;

#[derive(clap::Args)]
pub struct Args {
    /// Conntrack entries on the node (comma-separated sizes).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 100_000])]
    entries: Vec<usize>,
    /// Repetitions of each judge-and-delete timing (medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Revocations timed for the event-to-last-byte figure.
    #[arg(long, default_value_t = 40)]
    revocations: usize,
    /// 1,000 entries on a 1,000-pod cluster, one run, 3 revocations (CI).
    #[arg(long)]
    smoke: bool,
}

pub fn run(args: &Args, prefix: &str) -> Result<()> {
    let (sizes, runs, revocations, params) = if args.smoke {
        (vec![1_000], 1, 3, Params::new(1_000, 100))
    } else {
        (
            args.entries.clone(),
            args.runs.max(1),
            args.revocations.max(2),
            Params::new(10_000, 1_000),
        )
    };
    judge_and_delete(&sizes, runs, &params, prefix)?;
    event_to_last_byte(revocations, prefix)
}

/// A deterministic generator (the bench must not depend on a random seed per run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

fn udp(client: IpAddr, server: IpAddr, sport: u16, dport: u16) -> Flow {
    Flow {
        l4proto: 17,
        orig: Tuple {
            src: client,
            dst: server,
            sport,
            dport,
        },
        reply: Tuple {
            src: server,
            dst: client,
            sport: dport,
            dport: sport,
        },
    }
}

fn judge_and_delete(sizes: &[usize], runs: usize, params: &Params, prefix: &str) -> Result<()> {
    let objects = cluster(params)
        .into_iter()
        .filter_map(|v| object_from_value(v, "synth").ok().flatten())
        .collect();
    let index = Index::from_objects(objects).context("generated cluster")?;
    let node = "node-1";
    let model = nftpol::compile(&index, Some(node));
    let v4 = |p: &nftpol::index::PodInfo| p.ips.iter().copied().find(IpAddr::is_ipv4);
    let local: Vec<IpAddr> = index
        .pods()
        .filter(|p| p.is_policy_pod() && p.node.as_deref() == Some(node))
        .filter_map(v4)
        .collect();
    let all: Vec<IpAddr> = index
        .pods()
        .filter(|p| p.is_policy_pod())
        .filter_map(v4)
        .collect();
    if local.is_empty() {
        bail!("the generated node has no local pods");
    }
    println!(
        "judge and delete: {} pods, {} policies, {node}: {} local pods",
        params.pods,
        params.policies,
        local.len()
    );
    let scratch = Scratch::new(format!("{prefix}ct"))?;
    for &n in sizes {
        let mut rng = Lcg(n as u64);
        let flows: Vec<Flow> = (0..n)
            .map(|i| {
                let (l, r) = (local[rng.below(local.len())], all[rng.below(all.len())]);
                let (sport, dport) = (10_000 + (i % 50_000) as u16, 1 + rng.below(1024) as u16);
                if i % 2 == 0 {
                    udp(l, r, sport, dport)
                } else {
                    udp(r, l, sport, dport)
                }
            })
            .collect();
        let one: Scope = Scope {
            judge: [local[0]].into(),
            gone: BTreeSet::new(),
        };
        let every = Scope {
            judge: local.iter().copied().collect(),
            gone: BTreeSet::new(),
        };
        for (what, scope) in [("one pod touched", &one), ("full sync", &every)] {
            let mut took = Vec::new();
            let mut judged = Vec::new();
            let (mut examined, mut cut) = (0, 0);
            for _ in 0..runs {
                let r = netlink::in_netns(&scratch.path(), || -> Result<_> {
                    let mut ct = Conntrack::open()?;
                    let existing = ct.dump_all()?.len();
                    if existing < flows.len() {
                        ct.create(&flows, 3600)?;
                    }
                    let host = BTreeSet::new();
                    let t = Instant::now();
                    let entries = ct.dump_involving(&scope.addresses())?;
                    let j = Instant::now();
                    let mut judge = Judge::new(&model, scope, &host);
                    let doomed: Vec<_> = entries
                        .iter()
                        .filter(|e| judge.decide(&e.flow).cut())
                        .collect();
                    let judge_time = j.elapsed();
                    let deleted = ct.delete(&doomed)?;
                    Ok((t.elapsed(), judge_time, entries.len(), deleted))
                })??;
                took.push(r.0);
                judged.push(r.1);
                (examined, cut) = (r.2, r.3);
            }
            println!(
                "  {n} entries, {what}: {examined} dumped, {cut} cut; dump+judge+delete {:.1} ms (judge alone {:.1} ms), median of {runs}",
                median_ms(&took).unwrap_or(0.0),
                median_ms(&judged).unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// The p-th percentile (nearest rank) of sorted `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn ip_cmd(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Pod `ns` routed from `node` through veth `veth` with `addr`/32 (as a routed CNI does).
fn attach(node: &str, ns: &str, veth: &str, addr: &str) -> Result<()> {
    ip_cmd(&["netns", "add", ns])?;
    for line in [
        format!("link add {veth} type veth peer name eth0 netns {ns}"),
        format!("link set {veth} up"),
        "link set lo up".to_string(),
        format!("addr add 10.244.1.1/32 dev {veth}"),
        format!("route add {addr}/32 dev {veth}"),
    ] {
        netns::ip_batch(Some(node), &[line])?;
    }
    netns::ip_batch(
        Some(ns),
        &[
            "link set lo up".into(),
            "link set eth0 up".into(),
            format!("addr add {addr}/32 dev eth0"),
            "route add 10.244.1.1 dev eth0".into(),
            "route add default via 10.244.1.1 dev eth0".into(),
        ],
    )
}

fn metric(port: u16, name: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn event_to_last_byte(runs: usize, prefix: &str) -> Result<()> {
    let node = format!("{prefix}ev-n");
    let (a, b) = (format!("{prefix}ev-a"), format!("{prefix}ev-b"));
    ip_cmd(&["netns", "add", &node])?;
    attach(&node, &a, "va", "10.244.1.10")?;
    attach(&node, &b, "vb", "10.244.1.20")?;
    netns::sysctl(&node, &[("net.ipv4.ip_forward".to_string(), "1")])?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let server = rt.block_on(FakeApiServer::start());
    server.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}));
    for (name, ip) in [("a", "10.244.1.10"), ("b", "10.244.1.20")] {
        server.apply(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "x", "labels": {"app": name}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}));
    }
    // Bound here and handed over bound: no other process can take the port between.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let config = controller::Config {
        metrics_addr: listener.local_addr()?,
        metrics_listener: Some(std::sync::Arc::new(listener)),
        netns: Some(PathBuf::from(format!("/run/netns/{node}"))),
        ..controller::Config::new("n1")
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let client = {
        let _g = rt.enter();
        server.client()
    };
    let task = rt.spawn(controller::run(
        config,
        client,
        NetlinkDataplane::open,
        async {
            let _ = stop_rx.await;
        },
    ));
    let listener = netlink::in_netns(&PathBuf::from(format!("/run/netns/{b}")), || {
        TcpListener::bind(("0.0.0.0", 8080))
    })??;
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "isolate-b", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"]}});
    let mut latencies = Vec::new();
    let cut_name = "nftpol_conntrack_entries_cut_total";
    // Ready once the first full sync is in.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(port, "nftpol_last_sync_timestamp_seconds") == 0.0 {
        if Instant::now() > deadline {
            bail!("the controller never synced");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for run in 0..runs {
        // A fresh connection each run: the last one was cut.
        let mut tx = netlink::in_netns(&PathBuf::from(format!("/run/netns/{a}")), || {
            TcpStream::connect_timeout(&"10.244.1.20:8080".parse().unwrap(), Duration::from_secs(2))
        })?
        .with_context(|| format!("run {run}: a -> b"))?;
        tx.set_nodelay(true)?;
        let (mut rx, _) = listener.accept()?;
        rx.set_read_timeout(Some(Duration::from_millis(20)))?;
        let last: Arc<Mutex<Option<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (last.clone(), stop.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = rx.read(&mut buf) {
                    if n > 0 {
                        *l.lock().unwrap() = Some(Instant::now());
                    }
                }
            }
        });
        let s2 = stop.clone();
        let writer = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                let _ = tx.write(b"x");
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let before = metric(port, cut_name);
        let event = Instant::now();
        server.apply(policy.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(port, cut_name) <= before {
            if Instant::now() > deadline {
                bail!("run {run}: the connection was never cut");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Anything still in flight arrives well within this.
        std::thread::sleep(Duration::from_millis(300));
        let last_byte = last.lock().unwrap().unwrap_or(event);
        latencies.push(last_byte.saturating_duration_since(event).as_secs_f64() * 1e3);
        stop.store(true, Ordering::SeqCst);
        let _ = reader.join();
        let _ = writer.join();
        server.delete("NetworkPolicy", Some("x"), "isolate-b");
        std::thread::sleep(Duration::from_millis(150));
    }
    let _ = stop_tx.send(());
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
    {
        let _lock = netns::lock();
        netns::delete(&[node, a, b]);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "revoking event (API write) to the revoked connection's last byte delivered, coalesce 20 ms, {} runs: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
