//! `cargo bench --features controller --bench dns_proxy`: the latency the DNS proxy adds
//! to a lookup, under a steady 1,000 lookups/s (issue 29).
//!
//! A DNS server built on hickory-proto and the proxy on loopback (the proxy forwards to
//! the server: no tproxy needed to measure it); every lookup asks a new name covered by
//! a `*.dyn.example` rule, so every answer teaches a new address: the worst case. As
//! root the learner writes to the kernel (a scratch network namespace with the rule's
//! timeout set), and each answer waits for the kernel's acknowledgement as in
//! production; otherwise to a recording sink, and the figures leave the kernel out.
//!
//! Reports the lookup time seen by the client, direct to the server and through the
//! proxy, p50 and p99, and the proxy's own measure of what it adds (its histogram's
//! bucket bounds). The last line is `added_p50_us=<x> added_p99_us=<y>` (through the
//! proxy minus direct), for scripts. `NFTPOL_BENCH_SMOKE=1`: one second instead of ten.

#[path = "../tests/dns/server.rs"]
mod server;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nftpol::controller::dns_proxy::learner::{DomainRule, KernelSink, LearnSink, SetLearner};
use nftpol::controller::dns_proxy::{
    Destination, LearnError, ProxyConfig, ProxyStats, TcpProxy, UdpProxy,
};
use nftpol::fqdn::{DomainPattern, Ttl};
use nftpol::netlink::LearnedElem;
use server::{Reply, TestServer};
use tokio::net::UdpSocket;

const RATE: u32 = 1_000;

struct Recording(Arc<Mutex<usize>>);

impl LearnSink for Recording {
    fn add(&mut self, elems: &[LearnedElem]) -> Result<(), LearnError> {
        *self.0.lock().unwrap() += elems.len();
        Ok(())
    }
}

fn zone() -> server::Zone {
    Arc::new(|q: &Query| {
        let n = q.name.to_ascii();
        let i: u32 = n
            .strip_prefix('h')
            .and_then(|r| r.split('.').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        let addr = Ipv4Addr::from(0x0a63_0000 + i);
        Reply::Records(vec![Record::from_rdata(
            q.name.clone(),
            300,
            RData::A(A(addr)),
        )])
    })
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `n` lookups at RATE per second to `to`, names from `first`; the client-side times.
async fn load(to: SocketAddr, first: u32, n: u32) -> Vec<Duration> {
    let times = Arc::new(Mutex::new(Vec::with_capacity(n as usize)));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    let mut tasks = Vec::new();
    for i in first..first + n {
        tick.tick().await;
        let times = times.clone();
        tasks.push(tokio::spawn(async move {
            let mut m = Message::query();
            m.metadata.id = i as u16;
            let name = Name::from_ascii(format!("h{i}.dyn.example.")).unwrap();
            m.add_query(Query::query(name, RecordType::A));
            let q = m.to_vec().unwrap();
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let start = Instant::now();
            sock.send_to(&q, to).await.unwrap();
            let mut buf = vec![0u8; 1500];
            let got = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await;
            assert!(got.is_ok(), "lookup {i} not answered");
            times.lock().unwrap().push(start.elapsed());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut v = times.lock().unwrap().clone();
    v.sort();
    v
}

fn sink(root: bool) -> (Box<dyn LearnSink>, &'static str) {
    if !root {
        let n = Arc::new(Mutex::new(0));
        return (
            Box::new(Recording(n)),
            "recording sink (not root: no kernel)",
        );
    }
    // This thread is in the scratch namespace; `nft` inherits it.
    for cmd in [
        "add table inet nftpol_dns",
        "add set inet nftpol_dns learned4 { type ipv4_addr; flags timeout; }",
    ] {
        let ok = Command::new("nft").args([cmd]).status().unwrap().success();
        assert!(ok, "nft {cmd}");
    }
    let backend = nftpol::netlink::Backend::open().unwrap();
    let table = "nftpol_dns".to_string();
    (
        Box::new(KernelSink { table, backend }),
        "kernel (each answer waits for its netlink acknowledgement)",
    )
}

async fn bench(root: bool, secs: u32) {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = TestServer::start(lo, zone()).await;
    let (sink, what) = sink(root);
    let learner = Arc::new(SetLearner::new(
        vec!["127.0.0.1/32".parse().unwrap()],
        Ttl::default(),
        sink,
    ));
    learner.set_rules(vec![DomainRule {
        id: "bench/0".into(),
        patterns: vec![DomainPattern::parse("*.dyn.example").unwrap()],
        set4: "learned4".into(),
        set6: "learned6".into(),
    }]);
    let config = ProxyConfig {
        destination: Destination::Fixed(server.addr),
        transparent: false,
        ..ProxyConfig::default()
    };
    let stats = Arc::new(ProxyStats::default());
    let u = UdpProxy::bind(lo, config.clone(), learner.clone(), stats.clone()).unwrap();
    let t = TcpProxy::bind(lo, config, learner, stats.clone()).unwrap();
    let proxy = u.local_addr().unwrap();
    tokio::spawn(u.run());
    tokio::spawn(t.run());
    let n = RATE * secs;
    println!("dns_proxy: {n} lookups at {RATE}/s, each a new name; learner: {what}");
    let direct = load(server.addr, 0, n).await;
    let via = load(proxy, n, n).await;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (label, v) in [("direct", &direct), ("through the proxy", &via)] {
        println!(
            "  {label:18} p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            ms(quantile(v, 0.5)),
            ms(quantile(v, 0.99)),
            ms(*v.last().unwrap())
        );
    }
    use std::sync::atomic::Ordering::Relaxed;
    println!(
        "  proxy's own measure: added p50 <= {:?}, p99 <= {:?}; answers {}, learned {}, learn failures {}",
        stats.added_quantile(0.5),
        stats.added_quantile(0.99),
        stats.answers.load(Relaxed),
        stats.learned.load(Relaxed),
        stats.learn_failures.load(Relaxed)
    );
    let us = |q| {
        quantile(&via, q)
            .saturating_sub(quantile(&direct, q))
            .as_micros()
    };
    println!("added_p50_us={} added_p99_us={}", us(0.5), us(0.99));
}

fn main() {
    let secs = if std::env::var_os("NFTPOL_BENCH_SMOKE").is_some() {
        1
    } else {
        10
    };
    let root = nftpol::netlink::is_root();
    let run = move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(bench(root, secs));
    };
    if !root {
        run();
        return;
    }
    let ns = format!("nftpol-dnsbench-{}", std::process::id());
    let ip = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success());
    ip(&["netns", "add", &ns]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    let path = std::path::PathBuf::from(format!("/run/netns/{ns}"));
    let result = std::panic::catch_unwind(|| nftpol::netlink::in_netns(&path, run).unwrap());
    ip(&["netns", "del", &ns]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
