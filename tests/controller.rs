#![cfg(feature = "controller")]
//! The controller end to end: an unmodified kube client against the fake API server
//! (real list/watch over HTTP), programming a real nftables table in a scratch network
//! namespace through netlink. After every change and every fault, the live table must
//! equal the model compiled offline from the same objects, and an isolated pod's chain
//! must never have left the dispatch map (fail closed). Needs root: `#[ignore]`d, run with
//! `--include-ignored` as root (see common/root.rs).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use nftpol::controller::{self, dataplane::NetlinkDataplane};
use nftpol::index::Index;
use nftpol::input::object_from_value;
use nftpol::ruleset::Ruleset;
use serde_json::json;

mod common;
#[path = "common/root.rs"]
mod needs_root;
#[path = "common/routed.rs"]
mod routed;

#[path = "common/controller.rs"]
mod util;
use needs_root::require_root;
use util::{config, get, metrics_listener, ns, pod, policy};

/// Sends new TCP connections from an outside host to an isolated pod, through the node
/// namespace the controller programs, every few milliseconds while armed, and counts the
/// ones that got through: packets, not tables, say whether the pod was ever reachable.
struct Prober {
    armed: Arc<AtomicBool>,
    /// Bumped by every disarm: a probe counts only if no disarm fell while it ran, so a
    /// probe that began before a disarm and ended after a re-arm (a thread descheduled on
    /// a loaded machine across an opening made on purpose) is discarded, however long it
    /// took, instead of being counted against the phase it ended in.
    disarms: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    breaches: Arc<std::sync::Mutex<Vec<String>>>,
    phase: Arc<std::sync::Mutex<String>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(from_ns: String, to: &'static str, port: u16) -> Prober {
        let armed = Arc::new(AtomicBool::new(false));
        let disarms = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicUsize::new(0));
        let breaches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let phase = Arc::new(std::sync::Mutex::new(String::new()));
        let (a, d, s, n, b, p) = (
            armed.clone(),
            disarms.clone(),
            stop.clone(),
            attempts.clone(),
            breaches.clone(),
            phase.clone(),
        );
        // A refused connection costs its whole timeout, so several probe at once; on a
        // local veth a SYN-ACK takes well under a millisecond, 60 ms is ample.
        let threads = (0..3)
            .map(|_| {
                let (a, d, s, n, b, p) = (
                    a.clone(),
                    d.clone(),
                    s.clone(),
                    n.clone(),
                    b.clone(),
                    p.clone(),
                );
                let from_ns = from_ns.clone();
                std::thread::spawn(move || {
                    while !s.load(Ordering::SeqCst) {
                        // The disarm count is read before `armed`: a disarm that lands
                        // after this read changes it, whatever the order of the rest.
                        let epoch = d.load(Ordering::SeqCst);
                        if a.load(Ordering::SeqCst) {
                            let open =
                                routed::connects(&from_ns, to, port, Duration::from_millis(60));
                            // Counted only if armed the whole time: a probe straddling a
                            // disarm is moot.
                            if d.load(Ordering::SeqCst) == epoch {
                                n.fetch_add(1, Ordering::SeqCst);
                                if open {
                                    b.lock().unwrap().push(p.lock().unwrap().clone());
                                }
                            }
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Prober {
            armed,
            disarms,
            stop,
            attempts,
            breaches,
            phase,
            threads,
        }
    }

    fn arm(&self, phase: &str) {
        *self.phase.lock().unwrap() = phase.to_string();
        self.armed.store(true, Ordering::SeqCst);
    }

    /// No probe that runs across this call is counted (see `disarms`); nothing waits.
    fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.disarms.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        let name = format!("nftpol-ctl-{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .ok()?
            .success();
        ok.then_some(Netns(name))
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
    fn nft(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The model the node should hold for what the server holds now.
fn expected(server: &FakeApiServer) -> Ruleset {
    let mut index = Index::new();
    for kind in ["Namespace", "Pod", "NetworkPolicy"] {
        for v in server.list(kind) {
            if let Ok(Some(o)) = object_from_value(v, "server") {
                let _ = index.apply(o);
            }
        }
    }
    nftpol::compile(&index, Some("n1"))
}

fn drift(netns: &Netns, model: &Ruleset) -> Option<String> {
    nftpol::netlink::in_netns(&netns.path(), || {
        let live = nftpol::netlink::read_table(&model.name).ok().flatten();
        nftpol::netlink::drift(model, live.as_ref())
    })
    .unwrap()
}

/// Waits until the live table equals the model of what the server holds; while waiting,
/// checks that `isolated` (an address) never loses its ingress chain.
async fn converge(netns: &Netns, server: &FakeApiServer, isolated: Option<&str>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(ip) = isolated {
            let map = netns.nft(&["list", "map", "inet", "nftpol", "ingress4"]);
            if map.contains("elements") || map.contains("ingress4") {
                assert!(
                    map.contains(&format!("{ip} : jump")),
                    "{what}: {ip} lost its ingress chain:\n{map}"
                );
            }
        }
        let model = expected(server);
        match drift(netns, &model) {
            None => return,
            Some(d) if Instant::now() > deadline => panic!("{what}: did not converge: {d}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), controller::ControllerError>>,
);

/// Starts the controller against `server` over real netlink; send on the sender to stop it
/// (as SIGTERM does).
fn start(config: controller::Config, server: &FakeApiServer) -> Running {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(controller::run(
        config,
        server.client(),
        NetlinkDataplane::open,
        async {
            let _ = stop_rx.await;
        },
    ));
    (stop_tx, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: runs the controller against nftables in network namespaces, with real packets"]
async fn controller_end_to_end() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    require_root("controller_end_to_end");
    let netns = Netns::new("e2e").expect("ip netns add");
    // Real packets: pod x/a (10.244.1.11, isolated from the first sync on) listens on
    // port 80; an outside host (10.99.0.5, allowed by no policy) keeps trying to reach it.
    let pod_a = Netns::new("e2e-a").expect("ip netns add");
    let outside = Netns::new("e2e-ext").expect("ip netns add");
    routed::attach(&netns.0, &pod_a.0, "va", "10.244.1.11");
    routed::attach(&netns.0, &outside.0, "vext", "10.99.0.5");
    routed::forwarding(&netns.0);
    let _listener = routed::listen(&pod_a.0, 80);
    assert!(
        routed::connects(&outside.0, "10.244.1.11", 80, Duration::from_secs(1)),
        "without rules the outside host must reach x/a (the topology works)"
    );
    let prober = Prober::start(outside.0.clone(), "10.244.1.11", 80);
    let server = FakeApiServer::start().await;
    for n in ["x", "y"] {
        server.apply(ns(n, json!({"ns": n})));
    }
    server.apply(pod("x", "a", 1, "10.244.1.11", json!({"pod": "a"})));
    server.apply(pod("x", "b", 1, "10.244.1.12", json!({"pod": "b"})));
    server.apply(pod("y", "a", 1, "10.244.1.21", json!({"pod": "a"})));
    server.apply(pod("y", "c", 2, "10.244.2.23", json!({"pod": "c"})));
    server.apply(policy(
        "x",
        "deny",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]}),
    ));

    // An earlier instance's rules must stay until the first full sync.
    netns.nft(&["add", "table", "inet", "nftpol"]);
    let (listener, port) = metrics_listener();
    let (stop_tx, handle) = start(
        config(
            "n1",
            listener,
            Duration::from_millis(300),
            Some(netns.path()),
        ),
        &server,
    );

    converge(&netns, &server, None, "first full sync").await;
    prober.arm("after the first full sync");
    ready(port).await;
    assert_eq!(get(port, "/healthz").await.0, 200);
    let metrics = get(port, "/metrics").await.1;
    assert!(
        metrics.contains("nftpol_sync_duration_seconds_count{kind=\"full\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nftpol_watched_objects{kind=\"pods\"} 4"),
        "{metrics}"
    );

    // Changes arrive as watch events and become incremental batches.
    server.apply(policy("x", "allow-y", json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})));
    converge(&netns, &server, Some("10.244.1.11"), "policy added").await;
    server.apply(pod("x", "b", 1, "10.244.1.12", json!({"pod": "a"})));
    converge(
        &netns,
        &server,
        Some("10.244.1.11"),
        "pod relabelled into the policy",
    )
    .await;
    server.apply(ns("y", json!({"ns": "elsewhere"})));
    converge(&netns, &server, Some("10.244.1.11"), "namespace relabelled").await;

    // Faults: an expired watch (410), dropped connections, the API server going away.
    prober.arm("410 Gone");
    server.expire_watches();
    server.apply(pod("y", "d", 1, "10.244.1.24", json!({"pod": "d"})));
    converge(&netns, &server, Some("10.244.1.11"), "after 410 Gone").await;
    prober.arm("dropped connections");
    server.drop_connections();
    server.delete("Pod", Some("y"), "d");
    converge(
        &netns,
        &server,
        Some("10.244.1.11"),
        "after dropped connections",
    )
    .await;
    prober.arm("API server away and back");
    server.set_available(false);
    server.apply(policy("y", "deny", json!({"podSelector": {}})));
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.set_available(true);
    converge(
        &netns,
        &server,
        Some("10.244.1.11"),
        "after the API server came back",
    )
    .await;

    // Drift: someone flushes the ruleset; the periodic resync repairs it. (The flush itself
    // opens everything, so the prober rests until the repair.)
    prober.disarm();
    netns.nft(&["flush", "ruleset"]);
    converge(&netns, &server, None, "after nft flush ruleset").await;
    prober.arm("after the drift repair");
    let m = get(port, "/metrics").await.1;
    assert!(m.contains("nftpol_drift_repairs_total 1\n"), "{m}");

    // A restart: SIGTERM (here: the shutdown future) leaves the rules in place, and the
    // pod stays isolated until the next instance's first full sync replaces them.
    prober.arm("restart");
    stop(stop_tx, handle, &netns, &server, "the first instance").await;
    // The next instance never resyncs on its own, so that nothing but the batches the
    // test causes reads or writes the table (see the refused batch below).
    let (listener, port) = metrics_listener();
    let (stop_tx, handle) = start(
        config(
            "n1",
            listener,
            Duration::from_secs(3600),
            Some(netns.path()),
        ),
        &server,
    );
    ready(port).await;
    converge(&netns, &server, Some("10.244.1.11"), "after the restart").await;

    // A kernel batch that fails: a planted dispatch element for the address the next
    // update gives a new pod, with another verdict; the kernel refuses the clashing
    // element and so the batch whole; the retry, a full sync, repairs. With a periodic
    // resync (the first instance's, every 300 ms) this raced the pod's batch: a resync
    // that read the table between the planting and the batch repaired the planted element
    // as drift, the batch went through, and no batch ever failed (one CI run in two on a
    // fresh machine). This instance has no periodic resync, and its first full sync is
    // done (`ready` waits for it): the pod's batch is the first thing to reach the
    // table after the planting, every time.
    prober.arm("refused batch and its repair");
    let out = netns.nft(&[
        "add",
        "element",
        "inet",
        "nftpol",
        "ingress4",
        "{ 10.244.1.100 : jump ingress/x/a }",
    ]);
    assert!(out.trim().is_empty(), "planting: {out}");
    server.apply(pod("x", "c", 1, "10.244.1.100", json!({"pod": "a"})));
    converge(
        &netns,
        &server,
        Some("10.244.1.11"),
        "after a refused batch",
    )
    .await;
    // The failure is counted before the retry that repairs it; the repair's kernel batch
    // is in the table, and `ready` waits until it is counted too (a failed batch makes
    // `/readyz` fail until a batch succeeds). The first full sync, then the repair.
    ready(port).await;
    assert_eq!(metric(port, "nftpol_sync_errors_total").await, 1);
    assert_eq!(metric(port, "nftpol_drift_repairs_total").await, 0);
    let m = get(port, "/metrics").await.1;
    assert!(
        m.contains("nftpol_sync_duration_seconds_count{kind=\"full\"} 2\n"),
        "{m}"
    );

    // A policy that cannot be compiled: reported as an Event, its pods stay isolated.
    server.apply(policy("x", "broken", json!({"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]})));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = server.events();
        if events.iter().any(|e| {
            e.to_string().contains("CompileError") && e.to_string().contains("10.0.0.0/33")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Event for the broken policy: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    converge(
        &netns,
        &server,
        Some("10.244.1.12"),
        "broken policy enforced fail-closed",
    )
    .await;

    // SIGTERM (here: the shutdown future) leaves the rules in place.
    prober.arm("shutdown");
    stop(stop_tx, handle, &netns, &server, "the second instance").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    prober.disarm();
    let attempts = prober.attempts.load(Ordering::SeqCst);
    let breaches = prober.breaches.lock().unwrap().clone();
    eprintln!(
        "prober: {attempts} connection attempts to the isolated pod, {} got through",
        breaches.len()
    );
    assert!(
        attempts >= 30,
        "the prober must have run through the faults: {attempts} attempts"
    );
    assert!(
        breaches.is_empty(),
        "the isolated pod was reachable during: {breaches:?}"
    );
}

/// Waits until `/readyz` answers 200: the first full sync is in the kernel and counted
/// (the sync metrics and readiness change together).
async fn ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops a controller as SIGTERM does and checks that its rules stayed.
async fn stop(
    stop_tx: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), controller::ControllerError>>,
    netns: &Netns,
    server: &FakeApiServer,
    what: &str,
) {
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap_or_else(|_| panic!("{what} did not stop"))
        .unwrap()
        .unwrap();
    assert!(
        drift(netns, &expected(server)).is_none(),
        "{what}: rules must stay after shutdown"
    );
}

/// The value of an unlabelled counter or gauge on `/metrics`.
async fn metric(port: u16, name: &str) -> u64 {
    let text = get(port, "/metrics").await.1;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// SIGTERM (the shutdown future) while the first full sync of a large cluster is under way:
/// the table is either untouched or complete (batches are atomic), never half-written, and
/// a new instance converges from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: runs the controller against nftables in network namespaces, with real packets"]
async fn shutdown_during_a_sync_leaves_a_whole_table() {
    require_root("shutdown_during_a_sync_leaves_a_whole_table");
    let netns = Netns::new("term").expect("ip netns add");
    let server = FakeApiServer::start().await;
    let params = nftpol::synth::Params {
        pods: 3000,
        policies: 300,
        pods_per_node: 100,
        seed: 7,
    };
    for o in nftpol::synth::cluster(&params) {
        server.apply(o);
    }
    let node = "node-10";
    let expected_for = |server: &FakeApiServer| {
        let mut index = Index::new();
        for kind in ["Namespace", "Pod", "NetworkPolicy"] {
            for v in server.list(kind) {
                if let Ok(Some(o)) = object_from_value(v, "server") {
                    let _ = index.apply(o);
                }
            }
        }
        nftpol::compile(&index, Some(node))
    };
    let want = expected_for(&server);
    for delay_ms in [0u64, 30, 120, 400] {
        let (stop_tx, handle) = start(
            config(
                node,
                metrics_listener().0,
                Duration::from_secs(60),
                Some(netns.path()),
            ),
            &server,
        );
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("stops")
            .unwrap()
            .unwrap();
        // Whole or untouched: no table at all (first rounds), or exactly the model.
        let live = nftpol::netlink::in_netns(&netns.path(), || {
            nftpol::netlink::read_table(&want.name).unwrap()
        })
        .unwrap();
        if let Some(live) = live {
            assert_eq!(
                nftpol::netlink::drift(&want, Some(&live)),
                None,
                "stopped after {delay_ms} ms: a partial table"
            );
        }
    }
    // A new instance converges.
    let (stop_tx, handle) = start(
        config(
            node,
            metrics_listener().0,
            Duration::from_secs(60),
            Some(netns.path()),
        ),
        &server,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while drift(&netns, &want).is_some() {
        assert!(Instant::now() < deadline, "did not converge after restarts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
}

/// A controller that cannot program anything must not look alive: `run` returns an error
/// (and `nftpol run` exits non-zero, so the DaemonSet restarts it) instead of serving
/// probes forever. Needs no root: neither dataplane ever opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_when_the_dataplane_cannot_open() {
    let server = FakeApiServer::start().await;
    for (what, netns) in [
        ("no netlink socket", None),
        (
            "no such network namespace",
            Some(PathBuf::from("/run/netns/nftpol-does-not-exist")),
        ),
    ] {
        let run = controller::run(
            config(
                "n1",
                metrics_listener().0,
                Duration::from_secs(300),
                netns.clone(),
            ),
            server.client(),
            move || -> Result<NetlinkDataplane, controller::dataplane::DataplaneError> {
                if netns.is_some() {
                    // Reached only if entering the namespace wrongly succeeded.
                    NetlinkDataplane::open()
                } else {
                    Err(controller::dataplane::DataplaneError::Io(
                        nftpol::netlink::NetlinkError::Socket(std::io::Error::from(
                            std::io::ErrorKind::PermissionDenied,
                        )),
                    ))
                }
            },
            std::future::pending::<()>(),
        );
        let result = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap_or_else(|_| panic!("{what}: run kept going without a dataplane"));
        match result {
            Err(
                e @ (controller::ControllerError::Dataplane(_)
                | controller::ControllerError::Netns { .. }),
            ) => {
                let msg = e.to_string();
                eprintln!("{what}: {msg}");
                assert!(
                    msg.contains("dataplane") || msg.contains("namespace"),
                    "{what}: {msg}"
                );
                // The cause is kept as a source, not flattened into the text.
                assert!(std::error::Error::source(&e).is_some(), "{what}: no source");
            }
            other => panic!("{what}: expected a dataplane error, got {other:?}"),
        }
    }
}
