#![cfg(feature = "controller")]
//! The controller under the amplification shape of issue 25: one NetworkPolicy admitting
//! a namespace's 400 pods on 2,000 listed ports once took `nftpol run` to a peak RSS of
//! 610 MiB, over its DaemonSet limit of 512 MiB. Here the real binary runs as a child
//! process (so its /proc status is the controller's alone, not the test harness's) against
//! the fake API server, programming a routed node's network namespace (`--netns`). It must
//! converge to the model compiled offline, be ready, stay under 512 MiB, and carry a later
//! change of the policy's ports to the kernel: the live port sets hold the new ports and
//! none of the old, and real packets between two of the pods follow. Needs root:
//! `#[ignore]`d, run with `--include-ignored` as root (see common/root.rs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use nftpol::index::Index;
use nftpol::input::object_from_value;
use nftpol::ruleset::Ruleset;
use serde_json::{json, Value};

mod common;
#[path = "common/root.rs"]
mod needs_root;
#[path = "common/routed.rs"]
mod routed;
#[path = "common/controller.rs"]
mod util;
use needs_root::require_root_and_nft;
use util::{get, ns, pod, policy};

/// The namespace's pods, all on this node.
const PODS: usize = 400;
/// The ports the policy lists.
const PORTS: u16 = 2000;
/// The controller DaemonSet's memory limit (manifests/), in KiB as /proc reports.
const LIMIT_KIB: u64 = 512 * 1024;
/// Generous: the first full sync takes well under a second in a release build.
const DEADLINE: Duration = Duration::from_secs(60);
const NODE: &str = "n1";

/// Pod `i`'s address, outside the gateway's /24 (the node holds 10.244.1.1). Every other
/// address: scattered pods, whose addresses do not merge into ranges, are what multiplies.
fn addr(i: usize) -> String {
    format!("10.244.{}.{}", 2 + i / 100, 10 + 2 * (i % 100))
}

/// The listed ports: even ones from 10000 first, then the odd ones after the change.
fn ports(odd: bool) -> Vec<u16> {
    (0..PORTS).map(|i| 10000 + 2 * i + u16::from(odd)).collect()
}

/// Every pod of namespace `amp` may reach every other on `ports`, TCP.
fn amplifying_policy(ports: &[u16]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"protocol": "TCP", "port": p}))
        .collect();
    policy(
        "amp",
        "all-ports",
        json!({"podSelector": {}, "policyTypes": ["Ingress"],
               "ingress": [{"from": [{"podSelector": {}}], "ports": ports}]}),
    )
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("nftpol-amp-{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }
    fn path(&self) -> PathBuf {
        routed::path(&self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `nftpol run` as a child process, killed and reaped on drop; its log goes to a file.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    /// Started with `--metrics-addr 127.0.0.1:0`: the controller binds a free port itself
    /// (none chosen here that another process could take first); see [`Self::port`].
    fn start(kubeconfig: &Path, netns: &Netns, log: PathBuf) -> Controller {
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nftpol"))
            .args(["run", "--node-name", NODE])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--netns")
            .arg(netns.path())
            .args(["--coalesce-ms", "10", "--resync-seconds", "3600"])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting nftpol run");
        Controller { child, log }
    }

    /// `key` of /proc/PID/status (`VmHWM:`, `VmRSS:`) in KiB.
    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the controller's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc status:\n{status}"))
    }

    /// Panics, with the controller's log, if it has exited.
    fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{what}: nftpol run exited ({status}):\n{}", self.log_text());
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The port of /healthz, /readyz and /metrics, from the line the controller logs
    /// once it has bound it (`serving /healthz /readyz /metrics addr=127.0.0.1:PORT`).
    async fn port(&mut self) -> u16 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.assert_running("binding the metrics endpoint");
            let log = self.log_text();
            let bound = log
                .lines()
                .filter(|l| l.contains("serving /healthz /readyz /metrics"))
                .find_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("addr=")))
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
            if let Some(addr) = bound {
                return addr.port();
            }
            assert!(
                Instant::now() < deadline,
                "no metrics address logged:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Peak and current RSS now, printed; the peak must be under the limit.
    fn check_memory(&mut self, when: &str) {
        self.assert_running(when);
        let (hwm, rss) = (self.status_kib("VmHWM:"), self.status_kib("VmRSS:"));
        eprintln!(
            "nftpol run {when}: peak RSS (VmHWM) {:.1} MiB, RSS {:.1} MiB",
            hwm as f64 / 1024.0,
            rss as f64 / 1024.0
        );
        assert!(
            hwm < LIMIT_KIB,
            "{when}: peak RSS {hwm} KiB is over the DaemonSet limit of {LIMIT_KIB} KiB"
        );
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The model the node should hold for what the server holds now.
fn expected(server: &FakeApiServer) -> Ruleset {
    let mut index = Index::new();
    for kind in ["Namespace", "Pod", "NetworkPolicy"] {
        for v in server.list(kind) {
            if let Ok(Some(o)) = object_from_value(v, "server") {
                index.apply(o).expect("the test's objects are valid");
            }
        }
    }
    nftpol::compile(&index, Some(NODE))
}

/// Why the live table differs from `model`, if it does.
fn drift(node: &Netns, model: &Ruleset) -> Option<String> {
    nftpol::netlink::in_netns(&node.path(), || {
        let live = nftpol::netlink::read_table(&model.name).ok().flatten();
        nftpol::netlink::drift(model, live.as_ref())
    })
    .unwrap()
}

/// Waits until the live table equals the model of what the server holds. With
/// `stay_ready`, /readyz must answer 200 at every poll (it only drops when a kernel
/// batch fails).
async fn converge(
    node: &Netns,
    server: &FakeApiServer,
    ctl: &mut Controller,
    port: u16,
    stay_ready: bool,
    what: &str,
) {
    let model = expected(server);
    let deadline = Instant::now() + DEADLINE;
    loop {
        ctl.assert_running(what);
        if stay_ready {
            let (code, body) = get(port, "/readyz").await;
            assert_eq!(code, 200, "{what}: /readyz went {code}: {body}");
        }
        match drift(node, &model) {
            None => return,
            Some(d) => assert!(
                Instant::now() < deadline,
                "{what}: did not converge: {d}\n{}",
                ctl.log_text()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until /readyz answers 200.
async fn until_ready(ctl: &mut Controller, port: u16) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        ctl.assert_running("waiting for /readyz");
        let (code, body) = get(port, "/readyz").await;
        if code == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never ready: {code} {body}\n{}",
            ctl.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The TCP ports of every `protocol . port` element in the live table's sets, read with
/// `nft -j` in the node namespace.
fn live_ports(node: &Netns) -> BTreeSet<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &node.0])
        .args(["nft", "-j", "list", "table", "inet", "nftpol"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft -j list table: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ports = BTreeSet::new();
    let sets = v["nftables"].as_array().unwrap().iter();
    for set in sets.filter_map(|o| o.get("set")) {
        for e in set["elem"].as_array().into_iter().flatten() {
            // An element with a counter is `{"elem": {"val": ..., "counter": ...}}`.
            let e = e.get("elem").map_or(e, |x| &x["val"]);
            if let Some([proto, port]) = e["concat"].as_array().map(Vec::as_slice) {
                if proto == "tcp" {
                    ports.insert(port.as_u64().expect("a single port"));
                }
            }
        }
    }
    ports
}

/// Checks that the live port sets hold exactly the `odd` (or even) ports. Two-field
/// `protocol . port` elements are the pair lookup's: the concatenated form would hold
/// `address . protocol . port` ones (400 x 2,000 of them) and none of these.
fn assert_live_ports(node: &Netns, odd: bool, what: &str) {
    let live = live_ports(node);
    let want: BTreeSet<u64> = ports(odd).into_iter().map(u64::from).collect();
    let missing = want.difference(&live).count();
    let stale: Vec<_> = live.difference(&want).take(5).collect();
    assert_eq!(
        missing, 0,
        "{what}: {missing} listed ports not in the kernel"
    );
    assert!(stale.is_empty(), "{what}: ports left over: {stale:?}...");
}

/// A routed node whose pods 0 and 1 have namespaces of their own, attached by veths;
/// pod 1 listens on an even (first allowed) and an odd (allowed after the change) port.
/// Fields drop in declaration order: the listeners, then the namespaces.
struct Topology {
    _listeners: [std::net::TcpListener; 2],
    node: Netns,
    client: Netns,
    _server: Netns,
    even: u16,
    odd: u16,
}

impl Topology {
    fn new() -> Topology {
        let node = Netns::new("node");
        let (client, server) = (Netns::new("p0"), Netns::new("p1"));
        routed::attach(&node.0, &client.0, "vp0", &addr(0));
        routed::attach(&node.0, &server.0, "vp1", &addr(1));
        routed::forwarding(&node.0);
        let mid = PORTS as usize / 2;
        let (even, odd) = (ports(false)[mid], ports(true)[mid]);
        let listeners = [
            routed::listen(&server.0, even),
            routed::listen(&server.0, odd),
        ];
        let t = Topology {
            _listeners: listeners,
            node,
            client,
            _server: server,
            even,
            odd,
        };
        assert!(
            t.connects(even),
            "without rules the pods must reach each other"
        );
        t
    }

    /// Whether a TCP connection from pod 0 to pod 1 on `port` completes. A dropped SYN
    /// is never answered, and an allowed one is answered by a local veth in well under
    /// a millisecond: the timeout only bounds the wait for a refusal.
    fn connects(&self, port: u16) -> bool {
        routed::connects(&self.client.0, &addr(1), port, Duration::from_millis(500))
    }
}

/// The namespace, its pods (all on this node) and the policy on the even ports.
fn cluster(api: &FakeApiServer) {
    api.apply(ns("amp", json!({"ns": "amp"})));
    for i in 0..PODS {
        let name = format!("p{i}");
        api.apply(pod("amp", &name, 1, &addr(i), json!({"app": "amp"})));
    }
    api.apply(amplifying_policy(&ports(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: runs nftpol run against nftables in network namespaces, with real packets"]
async fn controller_stays_under_its_limit_on_the_amplification_shape() {
    require_root_and_nft("controller_stays_under_its_limit_on_the_amplification_shape");
    let began = Instant::now();
    let net = Topology::new();
    let api = FakeApiServer::start().await;
    cluster(&api);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig_yaml()).unwrap();
    let log = dir.path().join("nftpol.log");
    let mut ctl = Controller::start(&kubeconfig, &net.node, log);
    let port = ctl.port().await;

    converge(&net.node, &api, &mut ctl, port, false, "first full sync").await;
    until_ready(&mut ctl, port).await;
    eprintln!("converged and ready after {:.2?}", began.elapsed());
    ctl.check_memory("after the first full sync");
    assert_live_ports(&net.node, false, "first full sync");
    assert!(net.connects(net.even), "an allowed port must connect");
    assert!(
        !net.connects(net.odd),
        "a port the policy does not list must not"
    );

    // The policy moves to the odd ports: an incremental batch, which must reach the kernel.
    let changed = Instant::now();
    api.apply(amplifying_policy(&ports(true)));
    converge(&net.node, &api, &mut ctl, port, true, "ports changed").await;
    eprintln!("the port change converged in {:.2?}", changed.elapsed());
    assert_live_ports(&net.node, true, "ports changed");
    assert!(net.connects(net.odd), "the newly listed port must connect");
    assert!(
        !net.connects(net.even),
        "the port no longer listed must not"
    );
    ctl.check_memory("after the port change");
    let metrics = get(port, "/metrics").await.1;
    assert!(
        metrics.contains("nftpol_sync_errors_total 0\n"),
        "a kernel batch failed:\n{metrics}"
    );
    assert_eq!(get(port, "/readyz").await.0, 200, "ready at the end");
    eprintln!("total {:.2?}", began.elapsed());
}
