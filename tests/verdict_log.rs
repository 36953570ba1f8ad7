#![cfg(feature = "controller")]
//! Verdict logs (issue 14) with real packets through the controller. A node namespace
//! routes pod namespaces x/a (10.244.1.10), x/b (.20) and x/c (.30) as a routed CNI does;
//! the controller (fake API server, real netlink, `--log-allowed`) programs it and reads
//! its NFLOG group. x/b admits x/a on tcp/8080 only.
//!
//! - One SYN from c to b:8080 (a connect that gives up before the first retransmission)
//!   gives exactly one denied record naming pod x/b, peer x/c, port 8080 and the
//!   isolating policy; one connection from a gives exactly one allowed record naming the
//!   rule `nftpol explain` names for that side. The per-pod metric counts both.
//! - A flood of 10,000 denied SYNs gives at most rate x time + burst records; one more
//!   SYN after the bucket refilled gives a record whose `suppressed_before`, summed with
//!   those of the flood's records, accounts for every SYN: records + suppressed (+ any
//!   connect that drew a recently recorded source port, a repeat) = SYNs.
//! - Three resends of one UDP datagram give one record and two repeats.
//!
//! Records are captured from `tracing` (target `nftpol::verdict`) by a layer installed as
//! the global subscriber: the reader writes them on its own thread. Needs root:
//! `#[ignore]`d, run with `--include-ignored` as root (see common/root.rs).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use nftpol::controller::{self, dataplane::NetlinkDataplane};
use nftpol::index::Index;
use nftpol::input::object_from_value;
use nftpol::ruleset::{LogOptions, Options};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

mod common;
#[path = "common/root.rs"]
mod needs_root;
#[path = "common/routed.rs"]
mod routed;
use common::{admit_only, routed_pod};
use needs_root::require_root;

const A: &str = "10.244.1.10";
const B: &str = "10.244.1.20";
const C: &str = "10.244.1.30";
const LOG: LogOptions = LogOptions {
    allowed: true,
    ..LogOptions::DEFAULT
};

type Fields = BTreeMap<String, String>;

/// Every verdict record written in this process, as field name -> value.
fn records() -> Arc<Mutex<Vec<Fields>>> {
    static RECORDS: OnceLock<Arc<Mutex<Vec<Fields>>>> = OnceLock::new();
    RECORDS
        .get_or_init(|| {
            let all = Arc::new(Mutex::new(Vec::new()));
            // The records as `--log-format json` prints them, on stderr (--nocapture).
            let json = tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                    m.target() == controller::nflog::TARGET && *m.level() == tracing::Level::INFO
                }));
            let subscriber = tracing_subscriber::registry()
                .with(Capture(all.clone()))
                .with(json);
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            all
        })
        .clone()
}

struct Capture(Arc<Mutex<Vec<Fields>>>);

struct Visit<'a>(&'a mut Fields);

impl tracing::field::Visit for Visit<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.to_string());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != controller::nflog::TARGET
            || *event.metadata().level() != tracing::Level::INFO
        {
            return;
        }
        let mut fields = Fields::new();
        event.record(&mut Visit(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn topology(tag: &str) -> (Namespaces, String, [String; 3]) {
    let prefix = format!("nftpol-vlog-{}-{tag}", std::process::id());
    let node = format!("{prefix}-n");
    let mut all = Namespaces(vec![node.clone()]);
    routed::ip(&["netns", "add", &node]);
    let mut pods = Vec::new();
    for (name, addr) in [("a", A), ("b", B), ("c", C)] {
        let ns = format!("{prefix}-{name}");
        routed::ip(&["netns", "add", &ns]);
        all.0.push(ns.clone());
        routed::attach(&node, &ns, &format!("v{name}"), addr);
        pods.push(ns);
    }
    routed::forwarding(&node);
    (all, node, pods.try_into().unwrap())
}

/// x/b admits x/a on tcp/8080.
fn b_from_a() -> Value {
    admit_only("b", "a")
        .ingress(
            json!([{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                         "ports": [{"protocol": "TCP", "port": 8080}]}]),
        )
        .value()
}

async fn cluster() -> FakeApiServer {
    let server = FakeApiServer::start().await;
    server.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}));
    for (name, ip) in [("a", A), ("b", B), ("c", C)] {
        server.apply(routed_pod(name, ip).value());
    }
    server.apply(b_from_a());
    server
}

fn index(server: &FakeApiServer) -> Index {
    let mut index = Index::new();
    for kind in ["Namespace", "Pod", "NetworkPolicy"] {
        for v in server.list(kind) {
            if let Ok(Some(o)) = object_from_value(v, "server") {
                let _ = index.apply(o);
            }
        }
    }
    index
}

fn options() -> Options {
    Options {
        log: LOG,
        ..Default::default()
    }
}

/// Waits until the node's table is the model of the server's objects.
async fn converge(node: &str, server: &FakeApiServer) {
    let path = routed::path(node);
    let model = nftpol::ruleset::build_with(
        &nftpol::graph::PolicyGraph::build_for(&index(server), Some("n1")),
        &options(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let drift = nftpol::netlink::in_netns(&path, || {
            let live = nftpol::netlink::read_table(&model.name).ok().flatten();
            nftpol::netlink::drift(&model, live.as_ref())
        })
        .unwrap();
        match drift {
            None => return,
            Some(d) if Instant::now() > deadline => panic!("did not converge: {d}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn metrics_text(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    buf
}

/// The value of the series `series` (name and labels, as rendered).
async fn metric(port: u16, series: &str) -> u64 {
    metrics_text(port)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), controller::ControllerError>>,
    port: u16,
}

impl Running {
    fn start(node: &str, server: &FakeApiServer) -> Running {
        // Bound here and handed over bound: no other process can take the port between.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = controller::Config {
            metrics_addr: listener.local_addr().unwrap(),
            metrics_listener: Some(std::sync::Arc::new(listener)),
            coalesce: Duration::from_millis(10),
            resync: Duration::from_secs(60),
            netns: Some(routed::path(node)),
            options: options(),
            ..controller::Config::new("n1")
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(
            config,
            server.client(),
            NetlinkDataplane::open,
            async {
                let _ = rx.await;
            },
        ));
        Running {
            stop: Some(tx),
            task,
            port,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Records of pod x/<pod> from `peer_ip` to `port`. Both tests' topologies use the same
/// names and addresses (in their own namespaces), so each probes its own port.
fn of(pod: &str, verdict: &str, peer_ip: &str, port: u16) -> Vec<Fields> {
    let port = port.to_string();
    records()
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            r.get("pod").map(String::as_str) == Some(pod)
                && r.get("verdict").map(String::as_str) == Some(verdict)
                && r.get("peer_ip").map(String::as_str) == Some(peer_ip)
                && r.get("port") == Some(&port)
        })
        .cloned()
        .collect()
}

/// Waits (up to 5 s) until `f` gives at least `n` records, then 1 s more for any extra.
async fn settle(n: usize, f: impl Fn() -> Vec<Fields>) -> Vec<Fields> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while f().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    f()
}

/// One SYN: the connect gives up long before the first retransmission (1 s).
fn one_syn(ns: &str, to: SocketAddr) -> bool {
    nftpol::netlink::in_netns(&routed::path(ns), || {
        TcpStream::connect_timeout(&to, Duration::from_millis(300)).is_ok()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and nftables"]
async fn a_denied_and_an_allowed_connection_give_one_record_each() {
    require_root("a_denied_and_an_allowed_connection_give_one_record_each");
    let _ = records();
    let (_guard, node, [a, b, c]) = topology("probe");
    let server = cluster().await;
    let ctl = Running::start(&node, &server);
    converge(&node, &server).await;
    let _listener = routed::listen(&b, 8080);
    let to_b: SocketAddr = format!("{B}:8080").parse().unwrap();

    assert!(!one_syn(&c, to_b), "c -> b:8080 must be denied");
    let denied = settle(1, || of("b", "denied", C, 8080)).await;
    assert_eq!(denied.len(), 1, "one denied record: {denied:#?}");
    let r = &denied[0];
    eprintln!("denied record: {r:?}");
    for (field, want) in [
        ("direction", "ingress"),
        ("namespace", "x"),
        ("peer", "x/c"),
        ("protocol", "tcp"),
        ("port", "8080"),
        ("isolated_by", "x/b-from-a"),
        ("judged_by", "current"),
        ("suppressed_before", "0"),
    ] {
        assert_eq!(
            r.get(field).map(String::as_str),
            Some(want),
            "{field}: {r:?}"
        );
    }

    assert!(one_syn(&a, to_b), "a -> b:8080 must be allowed");
    let allowed = settle(1, || of("b", "allowed", A, 8080)).await;
    assert_eq!(allowed.len(), 1, "one allowed record: {allowed:#?}");
    let r = &allowed[0];
    eprintln!("allowed record: {r:?}");
    let index = index(&server);
    let graph = nftpol::graph::PolicyGraph::build_for(&index, Some("n1"));
    let query = nftpol::explain::Query::parse("x/a", "x/b", "tcp/8080", None).unwrap();
    let explained = nftpol::explain::explain_in(&index, &graph, &query).unwrap();
    let nftpol::explain::Side::Allowed { isolated_by, by } = &explained.ingress else {
        panic!("explain must allow the ingress of x/b: {explained}");
    };
    assert_eq!(r.get("allowed_by"), Some(&by.join("; ")), "{r:?}");
    assert_eq!(r.get("isolated_by"), Some(&isolated_by.join(", ")));
    assert_eq!(
        (
            r.get("peer").unwrap().as_str(),
            r.get("port").unwrap().as_str()
        ),
        ("x/a", "8080")
    );

    // A UDP client resending its first datagram (no answer: denied) is one connection:
    // one record; the resends are counted as repeats.
    let to_b_udp: SocketAddr = format!("{B}:8081").parse().unwrap();
    nftpol::netlink::in_netns(&routed::path(&c), || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3 {
            sock.send_to(b"probe", to_b_udp).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .unwrap();
    let udp = settle(1, || of("b", "denied", C, 8081)).await;
    assert_eq!(udp.len(), 1, "one record for three resends: {udp:#?}");
    assert_eq!(udp[0].get("protocol").map(String::as_str), Some("udp"));
    assert_eq!(
        metric(ctl.port, "nftpol_verdict_records_repeated_total").await,
        2
    );

    for (verdict, want) in [("denied", 2), ("allowed", 1)] {
        let series = format!("nftpol_connections_total{{namespace=\"x\",pod=\"b\",direction=\"ingress\",verdict=\"{verdict}\"}}");
        assert_eq!(metric(ctl.port, &series).await, want, "{series}");
    }
    ctl.stop().await;
    replay_records(&server, [&denied[0], &allowed[0], &udp[0]]);
}

/// `nftpol replay` on the records this real traffic gave, as `--log-format json` writes
/// them: under the state they were made in nothing changes; with b-from-a allowing
/// nothing, the recorded a -> b:8080 is listed as closed, and only it.
fn replay_records(server: &FakeApiServer, recorded: [&Fields; 3]) {
    use nftpol::change::replay::{parse_line, replay, TARGET};
    use nftpol::change::Verdict;
    let lines: Vec<_> = recorded
        .iter()
        .map(|f| json!({"target": TARGET, "fields": f}).to_string())
        .map(|line| parse_line(&line).unwrap_or_else(|| panic!("replay cannot read {line}")))
        .collect();
    let same = replay(&index(server), lines.clone());
    assert!(
        same.changes.is_empty() && same.unjudged.is_empty(),
        "{same:?}"
    );
    let mut nothing = b_from_a();
    nothing["spec"]["ingress"] = json!([]);
    let mut closed = index(server);
    closed
        .apply(object_from_value(nothing, "test").unwrap().unwrap())
        .unwrap();
    let r = replay(&closed, lines);
    assert!(r.unjudged.is_empty(), "{r:?}");
    let got: Vec<_> = r
        .changes
        .iter()
        .map(|c| (c.pod.as_str(), c.peer.as_str(), c.port, c.before, c.after))
        .collect();
    let want = (
        "x/b",
        "x/a",
        Some(8080),
        Verdict::Allowed,
        Some(Verdict::Denied),
    );
    assert_eq!(got, [want], "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and nftables"]
async fn a_flood_of_denied_syns_gives_at_most_rate_times_time_plus_burst_records() {
    require_root("a_flood_of_denied_syns_gives_at_most_rate_times_time_plus_burst_records");
    let _ = records();
    let (_guard, node, [_a, _b, c]) = topology("flood");
    let server = cluster().await;
    let ctl = Running::start(&node, &server);
    converge(&node, &server).await;
    const SYNS: usize = 10_000;
    const THREADS: usize = 8;
    let to_b: SocketAddr = format!("{B}:9999").parse().unwrap();
    let start = Instant::now();
    let path = routed::path(&c);
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                nftpol::netlink::in_netns(&path, || {
                    for _ in 0..SYNS / THREADS {
                        let _ = TcpStream::connect_timeout(&to_b, Duration::from_millis(1));
                    }
                })
                .unwrap()
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let took = start.elapsed();
    let flood = || of("b", "denied", C, 9999);
    let got = settle(LOG.burst as usize, flood).await.len() as u64;
    // The bucket starts full (burst) and refills at `rate` a second while the flood lasts.
    let bound = u64::from(LOG.rate) * (took.as_secs() + 1) + u64::from(LOG.burst);
    let lost = metric(ctl.port, "nftpol_verdict_records_lost_total").await;
    eprintln!(
        "flood: {SYNS} SYNs in {} ms gave {got} records (bound {bound}: rate {} burst {}), {lost} lost",
        took.as_millis(),
        LOG.rate,
        LOG.burst
    );
    assert!(got >= u64::from(LOG.burst), "the burst is logged: {got}");
    assert!(got <= bound, "{got} records, bound {bound}");

    // The bucket refills (burst / rate seconds); one more SYN reports what was kept out.
    tokio::time::sleep(Duration::from_millis(
        u64::from(LOG.burst) * 1000 / u64::from(LOG.rate) + 200,
    ))
    .await;
    assert!(!one_syn(&c, to_b));
    let all = settle(got as usize + 1, flood).await;
    let suppressed: u64 = all
        .iter()
        .map(|r| {
            r.get("suppressed_before")
                .and_then(|s| s.parse::<u64>().ok())
                .expect("suppressed_before on every denied record")
        })
        .sum();
    let metric_total = metric(ctl.port, "nftpol_verdict_records_suppressed_total").await;
    eprintln!(
        "flood: then one more SYN: {} records, {suppressed} suppressed reported ({metric_total} in the metric), {} SYNs sent",
        all.len(),
        SYNS + 1
    );
    assert_eq!(all.len() as u64, got + 1, "one record for the last SYN");
    // A connect that drew a source port a recent one had is a repeat to the reader.
    let repeated = metric(ctl.port, "nftpol_verdict_records_repeated_total").await;
    eprintln!("flood: {repeated} SYNs repeated a recorded 5-tuple");
    assert_eq!(
        all.len() as u64 + suppressed + repeated,
        SYNS as u64 + 1,
        "records + suppressed + repeated = SYNs"
    );
    assert_eq!(metric_total, suppressed);
    ctl.stop().await;
}

/// x/a's egress isolated with nothing allowed, in audit mode unless `enforce`.
fn a_egress_quarantine(enforce: bool) -> Value {
    let mut p = common::netpol("x", "a-quarantine")
        .selecting("app", "a")
        .policy_types(&["Egress"])
        .egress(json!([]))
        .value();
    if !enforce {
        p["metadata"]["annotations"] = json!({"nftpol.io/mode": "audit", "team": "x"});
    }
    p
}

/// x/b admits x/c on tcp/8082, in audit mode (each test of this binary probes its own
/// ports: their records meet in one capture).
fn b_from_c_audit() -> Value {
    let mut p = admit_only("b", "c")
        .ingress(
            json!([{"from": [{"podSelector": {"matchLabels": {"app": "c"}}}],
                         "ports": [{"protocol": "TCP", "port": 8082}]}]),
        )
        .value();
    p["metadata"]["name"] = json!("b-from-c");
    p["metadata"]["annotations"] = json!({"nftpol.io/mode": "audit"});
    p
}

/// Whether `from` (a connected stream) still reaches `to` (its accepted end).
fn passes(from: &mut TcpStream, to: &mut TcpStream) -> bool {
    use std::io::{Read, Write};
    to.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1];
    from.write_all(b"x").is_ok() && matches!(to.read(&mut buf), Ok(1))
}

/// Audit mode (issue 27) with real packets: a policy in audit mode lets through what the
/// enforced ruleset allows, and each connection it would deny gives one `would-deny`
/// record naming it (one it would allow, one `would-allow`); removing the annotation
/// denies exactly those connections and cuts an established one; adding it back lets
/// them in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and nftables"]
async fn an_audited_policy_logs_what_it_would_change_and_enforces_when_told() {
    require_root("an_audited_policy_logs_what_it_would_change_and_enforces_when_told");
    let _ = records();
    let (_guard, node, [a, b, c]) = topology("audit");
    let server = cluster().await;
    server.apply(a_egress_quarantine(false));
    server.apply(b_from_c_audit());
    let ctl = Running::start(&node, &server);
    converge(&node, &server).await;
    let listener = routed::listen(&b, 8090);
    let to_b: SocketAddr = format!("{B}:8090").parse().unwrap();
    // b-from-a admits a on 8080 only: audit 8090 through a second enforced policy.
    let mut b_8090 = b_from_a();
    b_8090["metadata"]["name"] = json!("b-8090");
    b_8090["spec"]["ingress"][0]["ports"] = json!([{"protocol": "TCP", "port": 8090}]);
    b_8090["spec"]["ingress"][0]["from"] = json!([{"podSelector": {}}]);
    server.apply(b_8090);
    converge(&node, &server).await;

    // Enforced, a -> b:8090 is allowed; the quarantine would deny it.
    let mut established = nftpol::netlink::in_netns(&routed::path(&a), || {
        TcpStream::connect_timeout(&to_b, Duration::from_secs(2))
    })
    .unwrap()
    .expect("a -> b:8090 is allowed while the quarantine is audited");
    let (mut accepted, _) = listener.accept().unwrap();
    assert!(
        passes(&mut established, &mut accepted),
        "the connection carries data"
    );
    let would_deny = settle(1, || of("a", "would-deny", B, 8090)).await;
    assert_eq!(
        would_deny.len(),
        1,
        "one would-deny record: {would_deny:#?}"
    );
    let r = &would_deny[0];
    for (field, want) in [
        ("direction", "egress"),
        ("namespace", "x"),
        ("peer", "x/b"),
        ("audit_policies", "x/a-quarantine"),
        ("isolated_by", "x/a-quarantine"),
        ("judged_by", "current"),
    ] {
        assert_eq!(
            r.get(field).map(String::as_str),
            Some(want),
            "{field}: {r:?}"
        );
    }
    // b's ingress: enforced, c -> b:8082 is denied; b-from-c would allow it.
    assert!(!one_syn(&c, format!("{B}:8082").parse().unwrap()));
    let would_allow = settle(1, || of("b", "would-allow", C, 8082)).await;
    assert_eq!(
        would_allow.len(),
        1,
        "one would-allow record: {would_allow:#?}"
    );
    assert_eq!(
        would_allow[0].get("audit_policies").map(String::as_str),
        Some("x/b-from-c")
    );
    assert_eq!(
        of("b", "denied", C, 8082).len(),
        1,
        "and the enforced deny's record"
    );
    for (pod, dir, outcome) in [
        ("a", "egress", "would-deny"),
        ("b", "ingress", "would-allow"),
    ] {
        let series = format!("nftpol_audit_connections_total{{namespace=\"x\",pod=\"{pod}\",direction=\"{dir}\",outcome=\"{outcome}\"}}");
        assert_eq!(metric(ctl.port, &series).await, 1, "{series}");
    }

    // Enforced: the new connection is denied and the established one cut.
    server.apply(a_egress_quarantine(true));
    converge(&node, &server).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while passes(&mut established, &mut accepted) {
        assert!(
            Instant::now() < deadline,
            "the established connection was not cut"
        );
    }
    assert!(!one_syn(&a, to_b), "a -> b:8090 is denied once enforced");
    // Audited again: let in.
    server.apply(a_egress_quarantine(false));
    converge(&node, &server).await;
    assert!(
        one_syn(&a, to_b),
        "a -> b:8090 is allowed once audited again"
    );
    ctl.stop().await;
}
