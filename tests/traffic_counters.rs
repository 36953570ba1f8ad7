#![cfg(feature = "controller")]
//! Which rules carry traffic (issue 27): per-rule connection counts and default-deny
//! counts, from the kernel's own counters.
//!
//! x/b (10.244.1.20) is isolated for ingress by two policies:
//! - `x/b-any`: rule 0 admits x/a (10.244.1.10), rule 1 x/c (10.244.1.11), on any port.
//!   a and c are neighbours: one address range unless the set is cut at each rule's edge.
//! - `x/b-web`: rule 0 admits x/d (10.244.1.12) on tcp/8080, rule 1 x/d on tcp/8080-8081.
//!
//! Attribution (`ruleset::traffic`): every rule of the lookup that allowed a connection
//! whose peer and ports cover it. So a -> b:9000 moves b-any rule 0 only; c -> b:9000
//! b-any rule 1 only; d -> b:8080 both b-web rules; d -> b:8081 b-web rule 1 only; and
//! d -> b:9000, denied, moves the denied count of both isolating policies.
//!
//! The pure test checks the attribution of every element of the compiled sets; the root
//! test sends real connections through a controller (fake API server, real netlink) and
//! reads `/metrics`, across an incremental batch that replaces b's sets and chain.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use nftpol::controller::{self, dataplane::NetlinkDataplane};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::input::object_from_value;
use nftpol::policy::Direction;
use nftpol::ruleset::traffic::{PolicyKind, RuleId, Traffic};
use nftpol::ruleset::{Options, SetRole};
use serde_json::{json, Value};

mod common;
#[path = "common/root.rs"]
mod needs_root;
#[path = "common/routed.rs"]
mod routed;
use common::{netpol, routed_pod, Obj};
use needs_root::require_root;

const A: &str = "10.244.1.10";
const C: &str = "10.244.1.11";
const D: &str = "10.244.1.12";
const B: &str = "10.244.1.20";

fn b_any() -> Obj {
    netpol("x", "b-any")
        .selecting("app", "b")
        .policy_types(&["Ingress"])
        .ingress(json!([
            {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]},
            {"from": [{"podSelector": {"matchLabels": {"app": "c"}}}]},
        ]))
}

/// With `extra`, a third rule (d on tcp/7000): another allow list, so other sets and a
/// rewritten chain for b.
fn b_web(extra: bool) -> Obj {
    let mut rules = vec![
        json!({"from": [{"podSelector": {"matchLabels": {"app": "d"}}}],
               "ports": [{"protocol": "TCP", "port": 8080}]}),
        json!({"from": [{"podSelector": {"matchLabels": {"app": "d"}}}],
               "ports": [{"protocol": "TCP", "port": 8080, "endPort": 8081}]}),
    ];
    if extra {
        rules.push(
            json!({"from": [{"podSelector": {"matchLabels": {"app": "d"}}}],
                          "ports": [{"protocol": "TCP", "port": 7000}]}),
        );
    }
    netpol("x", "b-web")
        .selecting("app", "b")
        .policy_types(&["Ingress"])
        .ingress(Value::Array(rules))
}

fn objects(extra: bool) -> Vec<Obj> {
    let mut out = vec![common::ns("x")];
    for (name, ip) in [("a", A), ("b", B), ("c", C), ("d", D)] {
        out.push(routed_pod(name, ip));
    }
    out.push(b_any());
    out.push(b_web(extra));
    out
}

fn rule(policy: &str, i: usize) -> RuleId {
    RuleId {
        kind: PolicyKind::NetworkPolicy,
        policy: format!("x/{policy}"),
        direction: Direction::Ingress,
        rule: i,
    }
}

/// `--counters` (off by default).
fn counted() -> Options {
    Options {
        counters: true,
        ..Options::default()
    }
}

/// Every element of every counted set of b's chain stands for exactly the rules that
/// cover it; a and c, neighbours, are separate elements.
#[test]
fn every_counted_element_stands_for_the_rules_that_cover_it() {
    let index = common::index(objects(false));
    let graph = PolicyGraph::build_for(&index, Some("n1"));
    let opts = counted();
    let model = nftpol::ruleset::build_with(&graph, &opts);
    let traffic = Traffic::new(&graph, &model, &opts);
    let mut got: BTreeMap<String, Vec<RuleId>> = BTreeMap::new();
    for name in traffic.sets() {
        let set = model.set(name).unwrap();
        assert!(set.counter, "{name} counts");
        assert!(matches!(set.role, SetRole::NpAllow(_) | SetRole::NpPair(_)));
        for e in &set.elements {
            let text = format!("{:?}", e.key);
            got.insert(text, traffic.rules_of(&graph, name, e));
        }
    }
    let want: BTreeMap<String, Vec<RuleId>> = [
        (format!("[Ipv4({A}, {A})]"), vec![rule("b-any", 0)]),
        (format!("[Ipv4({C}, {C})]"), vec![rule("b-any", 1)]),
        (
            format!("[Ipv4({D}, {D}), Proto(6, 6), Port(8080, 8080)]"),
            vec![rule("b-web", 0), rule("b-web", 1)],
        ),
        (
            format!("[Ipv4({D}, {D}), Proto(6, 6), Port(8081, 8081)]"),
            vec![rule("b-web", 1)],
        ),
    ]
    .into();
    assert_eq!(got, want);
    let chain = nftpol::ruleset::names::pod_chain(Direction::Ingress, "x", "b");
    let (dir, by) = traffic.isolating(&chain).expect("b's chain drops, counted");
    assert_eq!(
        (dir, by),
        (
            Direction::Ingress,
            &["x/b-any".to_string(), "x/b-web".to_string()][..]
        )
    );
    // Without counting: no counter, and a and c are one range again.
    let off = Options::default();
    let plain = nftpol::ruleset::build_with(&graph, &off);
    assert!(plain.sets().iter().all(|s| !s.counter));
    let script = nftpol::script::render(&plain);
    assert!(script.contains(&format!("{A}/31")), "{script}");
    assert!(!script.contains("counter drop"));
    let counted = nftpol::script::render(&model);
    assert!(counted.contains("counter drop"));
    assert!(!counted.contains(&format!("{A}/31")), "{counted}");
}

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A node namespace routing pod namespaces a, b, c, d; names start with
/// `nftpol-<tag>-<pid>` (each test its own).
fn topology(tag: &str) -> (Namespaces, String, BTreeMap<&'static str, String>) {
    let prefix = format!("nftpol-{tag}-{}", std::process::id());
    let node = format!("{prefix}-n");
    let mut all = Namespaces(vec![node.clone()]);
    routed::ip(&["netns", "add", &node]);
    let mut pods = BTreeMap::new();
    for (name, addr) in [("a", A), ("b", B), ("c", C), ("d", D)] {
        let ns = format!("{prefix}-{name}");
        routed::ip(&["netns", "add", &ns]);
        all.0.push(ns.clone());
        routed::attach(&node, &ns, &format!("v{name}"), addr);
        pods.insert(name, ns);
    }
    routed::forwarding(&node);
    (all, node, pods)
}

fn server_index(server: &FakeApiServer) -> Index {
    let mut index = Index::new();
    for kind in ["Namespace", "Pod", "NetworkPolicy", "ClusterNetworkPolicy"] {
        for v in server.list(kind) {
            if let Ok(Some(o)) = object_from_value(v, "server") {
                let _ = index.apply(o);
            }
        }
    }
    index
}

/// Waits until the node's table is the model of the server's objects.
async fn converge(node: &str, server: &FakeApiServer) {
    let path = routed::path(node);
    let model = nftpol::ruleset::build_with(
        &PolicyGraph::build_for(&server_index(server), Some("n1")),
        &counted(),
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

/// Every series of `name` on the page, by its labels.
async fn series(port: u16, name: &str) -> BTreeMap<String, u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).await.unwrap();
    page.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|l| {
            let (labels, v) = l.rsplit_once("} ")?;
            Some((labels.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn rule_labels(policy: &str, i: usize) -> String {
    format!("kind=\"NetworkPolicy\",namespace=\"x\",policy=\"{policy}\",direction=\"ingress\",rule=\"{i}\"")
}

fn policy_labels(policy: &str) -> String {
    format!("kind=\"NetworkPolicy\",namespace=\"x\",policy=\"{policy}\",direction=\"ingress\"")
}

/// A ClusterNetworkPolicy's rule: cluster-scoped, so no namespace.
fn cnp_rule_labels(policy: &str, i: usize) -> String {
    format!("kind=\"ClusterNetworkPolicy\",namespace=\"\",policy=\"{policy}\",direction=\"ingress\",rule=\"{i}\"")
}

fn cnp_policy_labels(policy: &str) -> String {
    format!(
        "kind=\"ClusterNetworkPolicy\",namespace=\"\",policy=\"{policy}\",direction=\"ingress\""
    )
}

/// `n` connections from pod namespace `from` to b:`port`, each allowed.
fn allowed(from: &str, port: u16, n: usize) {
    for _ in 0..n {
        assert!(
            routed::connects(from, B, port, Duration::from_secs(2)),
            "{from} -> b:{port} must be allowed"
        );
    }
}

/// `n` connections from `from` to b:`port`, each denied: one SYN each (the connect
/// gives up long before the first retransmission, after 1 s).
fn denied(from: &str, port: u16, n: usize) {
    for _ in 0..n {
        assert!(
            !routed::connects(from, B, port, Duration::from_millis(300)),
            "{from} -> b:{port} must be denied"
        );
    }
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), controller::ControllerError>>,
    port: u16,
}

fn start(node: &str, server: &FakeApiServer) -> Running {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = controller::Config {
        metrics_addr: listener.local_addr().unwrap(),
        metrics_listener: Some(std::sync::Arc::new(listener)),
        coalesce: Duration::from_millis(10),
        resync: Duration::from_secs(60),
        netns: Some(routed::path(node)),
        options: counted(),
        ..controller::Config::new("n1")
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller::run(
        config,
        server.client(),
        NetlinkDataplane::open,
        async {
            let _ = rx.await;
        },
    ));
    Running { stop, task, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and nftables"]
async fn connections_move_the_counters_of_their_rules_and_only_theirs() {
    require_root("connections_move_the_counters_of_their_rules_and_only_theirs");
    let (_guard, node, pods) = topology("cnt");
    let server = FakeApiServer::start().await;
    for o in objects(false) {
        server.apply(o.value());
    }
    let ctl = start(&node, &server);
    converge(&node, &server).await;
    let _listeners: Vec<_> = [9000, 8080, 8081, 7000]
        .into_iter()
        .map(|p| routed::listen(&pods["b"], p))
        .collect();

    // Every rule and isolating policy shows from the start, at 0.
    let zero: BTreeMap<String, u64> = [
        (rule_labels("b-any", 0), 0),
        (rule_labels("b-any", 1), 0),
        (rule_labels("b-web", 0), 0),
        (rule_labels("b-web", 1), 0),
    ]
    .into();
    assert_eq!(
        series(ctl.port, "nftpol_rule_connections_total").await,
        zero
    );

    allowed(&pods["a"], 9000, 3);
    allowed(&pods["c"], 9000, 2);
    allowed(&pods["d"], 8080, 4);
    allowed(&pods["d"], 8081, 1);
    denied(&pods["d"], 9000, 2);
    let mut want: BTreeMap<String, u64> = [
        (rule_labels("b-any", 0), 3),
        (rule_labels("b-any", 1), 2),
        (rule_labels("b-web", 0), 4),
        (rule_labels("b-web", 1), 5),
    ]
    .into();
    let mut want_denied: BTreeMap<String, u64> =
        [(policy_labels("b-any"), 2), (policy_labels("b-web"), 2)].into();
    assert_eq!(
        series(ctl.port, "nftpol_rule_connections_total").await,
        want
    );
    assert_eq!(
        series(ctl.port, "nftpol_policy_denied_connections_total").await,
        want_denied
    );

    // More traffic, not scraped, then a batch that replaces b's sets and rewrites its
    // chain (the kernel's counters of the old ones die with them): the totals keep it.
    allowed(&pods["a"], 9000, 1);
    allowed(&pods["d"], 8081, 2);
    denied(&pods["d"], 7000, 1);
    server.apply(b_web(true).value());
    converge(&node, &server).await;
    *want.get_mut(&rule_labels("b-any", 0)).unwrap() += 1;
    *want.get_mut(&rule_labels("b-web", 1)).unwrap() += 2;
    want.insert(rule_labels("b-web", 2), 0);
    want_denied.values_mut().for_each(|n| *n += 1);
    assert_eq!(
        series(ctl.port, "nftpol_rule_connections_total").await,
        want
    );
    assert_eq!(
        series(ctl.port, "nftpol_policy_denied_connections_total").await,
        want_denied
    );

    // And counting goes on in the new sets (from 0) and the chain's drop (more denials
    // than it had counted before the batch, 3: each one is new). The unit test of
    // `controller::traffic` covers a drop rewritten by the batch, restarting at 0.
    allowed(&pods["d"], 7000, 2);
    allowed(&pods["d"], 8080, 1);
    denied(&pods["d"], 9000, 4);
    *want.get_mut(&rule_labels("b-web", 2)).unwrap() += 2;
    *want.get_mut(&rule_labels("b-web", 0)).unwrap() += 1;
    *want.get_mut(&rule_labels("b-web", 1)).unwrap() += 1;
    want_denied.values_mut().for_each(|n| *n += 4);
    assert_eq!(
        series(ctl.port, "nftpol_rule_connections_total").await,
        want
    );
    assert_eq!(
        series(ctl.port, "nftpol_policy_denied_connections_total").await,
        want_denied
    );

    let _ = ctl.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), ctl.task).await;
}

// ClusterNetworkPolicy rules. b is selected, for ingress, by
// - `b-pass` (Admin, priority 5): [0] Pass d on tcp/7000;
// - `b-admin` (Admin, priority 10): [0] Accept a on tcp/9000 (9000-9100 when widened),
//   [1] Deny c, [2] Accept a and c (every protocol; c is shadowed by [1]);
// - `b-base` (Baseline): [0] Deny d;
// and, once isolated, by the NetworkPolicy `x/b-np` (no rules).
// The first matching rule decides, so: a -> b:9000 moves b-admin [0] only; a -> b:8080
// b-admin [2]; c -> b:9000 b-admin [1] and b-admin's denied count; d -> b:8080 (and
// d -> b:7000, passed by b-pass) b-base [0] and its denied count while NetworkPolicy does
// not isolate b; once it does, NetworkPolicy decides d (b-np's denied count).

const CNP_API: &str = "policy.networking.k8s.io/v1beta1";

fn pods_peer(apps: &[&str]) -> Value {
    json!({"pods": {"namespaceSelector": {},
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": apps}]}}})
}

fn tcp_ports(lo: u16, hi: u16) -> Value {
    match lo == hi {
        true => json!([{"tcp": {"destinationPort": {"number": lo}}}]),
        false => json!([{"tcp": {"destinationPort": {"range": {"start": lo, "end": hi}}}}]),
    }
}

fn cnp(name: &str, tier: &str, priority: u32, ingress: Value) -> Obj {
    Obj(
        json!({"apiVersion": CNP_API, "kind": "ClusterNetworkPolicy", "metadata": {"name": name},
        "spec": {"tier": tier, "priority": priority,
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "b"}}}},
            "ingress": ingress}}),
    )
}

/// `b-admin`; `wide`: its rule 0 on tcp/9000-9100 (a range: other elements, in another
/// set, than tcp/9000).
fn b_admin(wide: bool) -> Obj {
    let hi = if wide { 9100 } else { 9000 };
    cnp(
        "b-admin",
        "Admin",
        10,
        json!([
            {"name": "accept-a", "action": "Accept", "from": [pods_peer(&["a"])], "protocols": tcp_ports(9000, hi)},
            {"name": "deny-c", "action": "Deny", "from": [pods_peer(&["c"])]},
            {"name": "accept-a-c", "action": "Accept", "from": [pods_peer(&["a", "c"])]},
        ]),
    )
}

/// `isolated`: with the NetworkPolicy `x/b-np` isolating b (so Baseline no longer
/// applies) and `b-admin` widened: a batch that deletes counted elements of b's Admin
/// sets and b's Baseline sets whole, and rewrites b's chain.
fn cnp_objects(isolated: bool) -> Vec<Obj> {
    let mut out = vec![common::ns("x")];
    for (name, ip) in [("a", A), ("b", B), ("c", C), ("d", D)] {
        out.push(routed_pod(name, ip));
    }
    out.push(b_admin(isolated));
    out.push(cnp(
        "b-pass",
        "Admin",
        5,
        json!([{"action": "Pass", "from": [pods_peer(&["d"])], "protocols": tcp_ports(7000, 7000)}]),
    ));
    out.push(cnp(
        "b-base",
        "Baseline",
        10,
        json!([{"action": "Deny", "from": [pods_peer(&["d"])]}]),
    ));
    if isolated {
        out.push(
            netpol("x", "b-np")
                .selecting("app", "b")
                .policy_types(&["Ingress"]),
        );
    }
    out
}

fn cnp_rule(policy: &str, i: usize) -> RuleId {
    RuleId {
        kind: PolicyKind::ClusterNetworkPolicy,
        policy: policy.to_string(),
        direction: Direction::Ingress,
        rule: i,
    }
}

/// Every element of b's counted tier sets is credited to exactly one rule, the one that
/// decides its connections; Deny elements also to their policy's denied count. Pass
/// rules count nothing.
#[test]
fn every_counted_tier_element_stands_for_the_rule_that_decides_it() {
    let index = common::index(cnp_objects(false));
    let graph = PolicyGraph::build_for(&index, Some("n1"));
    let opts = counted();
    let model = nftpol::ruleset::build_with(&graph, &opts);
    let traffic = Traffic::new(&graph, &model, &opts);
    let cnp_denied = |p: &str| {
        (
            PolicyKind::ClusterNetworkPolicy,
            p.to_string(),
            Direction::Ingress,
        )
    };
    let mut by_rule: BTreeMap<RuleId, Vec<String>> = BTreeMap::new();
    for name in traffic.sets() {
        let set = model.set(name).unwrap();
        assert!(set.counter, "{name} counts");
        assert!(matches!(set.role, SetRole::Tier(..)), "{name}");
        for e in &set.elements {
            let credit = traffic.credit(&graph, name, e);
            assert_eq!(credit.rules.len(), 1, "{name} {e:?}: {credit:?}");
            let r = credit.rules[0].clone();
            let want_denied = match name.contains("-deny-") {
                true => vec![cnp_denied(&r.policy)],
                false => vec![],
            };
            assert_eq!(credit.denied, want_denied, "{name} {e:?}");
            let short = name.rsplit('/').next().unwrap();
            by_rule
                .entry(r)
                .or_default()
                .push(format!("{short} {:?}", e.key));
        }
    }
    assert_eq!(
        by_rule[&cnp_rule("b-admin", 0)],
        vec![format!(
            "admin-accept-exact4 [Ipv4({A}, {A}), Proto(6, 6), Port(9000, 9000)]"
        )]
    );
    assert_eq!(
        by_rule[&cnp_rule("b-admin", 1)],
        vec![format!("admin-deny-any4 [Ipv4({C}, {C})]")]
    );
    assert_eq!(
        by_rule[&cnp_rule("b-base", 0)],
        vec![format!("baseline-deny-any4 [Ipv4({D}, {D})]")]
    );
    // The rest of a's plane: every other port and protocol, all rule 2's.
    let rest = &by_rule[&cnp_rule("b-admin", 2)];
    assert!(rest.len() > 4, "{rest:?}");
    assert!(rest.iter().all(|e| e.contains(&format!("Ipv4({A}, {A})"))));
    assert_eq!(by_rule.len(), 4, "{by_rule:?}");
    // The series shown from the start: b-pass has none.
    let (rules, denied) = traffic.tier_rules();
    assert_eq!(
        rules,
        [
            cnp_rule("b-admin", 0),
            cnp_rule("b-admin", 1),
            cnp_rule("b-admin", 2),
            cnp_rule("b-base", 0)
        ]
        .into()
    );
    assert_eq!(denied, [cnp_denied("b-admin"), cnp_denied("b-base")].into());
    // Uncounted, a's whole plane is one address-only element (two rules' regions).
    let plain = nftpol::ruleset::build_with(&graph, &Options::default());
    let any4 = nftpol::ruleset::names::pod_set(
        Direction::Ingress,
        "x",
        "b",
        nftpol::ruleset::TierSet::AdminAccept,
        nftpol::ruleset::SetKind::Any4,
    );
    let plain_any4 = plain.set(&any4).unwrap();
    assert!(!plain_any4.counter);
    assert_eq!(plain_any4.elements.len(), 1, "{:?}", plain_any4.elements);
    assert!(model.set(&any4).unwrap().elements.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and nftables"]
async fn connections_move_the_counters_of_the_cluster_rules_that_decide_them() {
    require_root("connections_move_the_counters_of_the_cluster_rules_that_decide_them");
    let (_guard, node, pods) = topology("cntc");
    let server = FakeApiServer::start().await;
    for o in cnp_objects(false) {
        server.apply(o.value());
    }
    let ctl = start(&node, &server);
    converge(&node, &server).await;
    let _listeners: Vec<_> = [9000, 9050, 8080, 7000]
        .into_iter()
        .map(|p| routed::listen(&pods["b"], p))
        .collect();
    let rules = |m: &[(&str, usize, u64)]| -> BTreeMap<String, u64> {
        m.iter()
            .map(|&(p, i, n)| (cnp_rule_labels(p, i), n))
            .collect()
    };
    let mut want = rules(&[
        ("b-admin", 0, 0),
        ("b-admin", 1, 0),
        ("b-admin", 2, 0),
        ("b-base", 0, 0),
    ]);
    let mut want_denied: BTreeMap<String, u64> = [
        (cnp_policy_labels("b-admin"), 0),
        (cnp_policy_labels("b-base"), 0),
    ]
    .into();
    assert_eq!(
        series(ctl.port, "nftpol_rule_connections_total").await,
        want
    );
    assert_eq!(
        series(ctl.port, "nftpol_policy_denied_connections_total").await,
        want_denied
    );

    allowed(&pods["a"], 9000, 3);
    allowed(&pods["a"], 8080, 2);
    denied(&pods["c"], 9000, 2);
    denied(&pods["d"], 8080, 1);
    denied(&pods["d"], 7000, 1);
    want = rules(&[
        ("b-admin", 0, 3),
        ("b-admin", 1, 2),
        ("b-admin", 2, 2),
        ("b-base", 0, 2),
    ]);
    want_denied = [
        (cnp_policy_labels("b-admin"), 2),
        (cnp_policy_labels("b-base"), 2),
    ]
    .into();
    assert_eq!(
        series(ctl.port, "nftpol_rule_connections_total").await,
        want
    );
    assert_eq!(
        series(ctl.port, "nftpol_policy_denied_connections_total").await,
        want_denied
    );

    // More traffic, not scraped; then a batch that deletes a's tcp/9000 element (its
    // rule now takes a range), deletes b's Baseline sets whole (NetworkPolicy isolates b
    // now) and rewrites b's chain: the totals keep what the kernel's counters had.
    allowed(&pods["a"], 9000, 1);
    denied(&pods["d"], 8080, 2);
    for o in cnp_objects(true) {
        server.apply(o.value());
    }
    converge(&node, &server).await;
    want = rules(&[
        ("b-admin", 0, 4),
        ("b-admin", 1, 2),
        ("b-admin", 2, 2),
        ("b-base", 0, 4),
    ]);
    want_denied = [
        (cnp_policy_labels("b-admin"), 2),
        (cnp_policy_labels("b-base"), 4),
        (policy_labels("b-np"), 0),
    ]
    .into();
    assert_eq!(
        series(ctl.port, "nftpol_rule_connections_total").await,
        want
    );
    assert_eq!(
        series(ctl.port, "nftpol_policy_denied_connections_total").await,
        want_denied
    );

    // After it: the new range element counts, Admin still decides before NetworkPolicy,
    // and d is now NetworkPolicy's to deny (b-base no longer moves).
    allowed(&pods["a"], 9050, 2);
    allowed(&pods["a"], 8080, 1);
    denied(&pods["c"], 9000, 1);
    denied(&pods["d"], 8080, 3);
    want = rules(&[
        ("b-admin", 0, 6),
        ("b-admin", 1, 3),
        ("b-admin", 2, 3),
        ("b-base", 0, 4),
    ]);
    want_denied = [
        (cnp_policy_labels("b-admin"), 3),
        (cnp_policy_labels("b-base"), 4),
        (policy_labels("b-np"), 3),
    ]
    .into();
    assert_eq!(
        series(ctl.port, "nftpol_rule_connections_total").await,
        want
    );
    assert_eq!(
        series(ctl.port, "nftpol_policy_denied_connections_total").await,
        want_denied
    );

    let _ = ctl.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), ctl.task).await;
}
