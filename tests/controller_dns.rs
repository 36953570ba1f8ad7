#![cfg(feature = "controller")]
//! ClusterNetworkPolicy `domainNames` end to end through the controller `nftpol run`
//! starts: the fake API server serves the policies, the controller compiles the steering
//! and learned sets, starts its DNS proxy (policy routing over rtnetlink, tproxy) in the
//! node's namespace, and learns from a real DNS server's answers; pods resolve and
//! connect at once.
//!
//! ```text
//! pod a (10.244.1.2, app=a) --+                      +-- server (10.244.1.53: DNS :53,
//! pod b (10.244.1.3, app=b) --+-- node (controller) --+   TCP 8443 on 10.99.0.0/16)
//! a: Admin 10 Accept *.dyn.example tcp/8443; Admin 20 Deny 10.99.0.0/16. b: no policy.
//! ```
//!
//! Twice: attached by routes (a veth each, as ptp does), and on a bridge `cni0` that
//! br_netfilter filters (as flannel's), the server on the same bridge, the pods attached
//! after the controller started (as the CNI attaches them), so that the proxy's bridge
//! listeners come from its link watch.
//!
//! Pods resolve at the cluster DNS Service address (10.96.0.10), DNATed kube-proxy-style
//! to the server; the controller trusts that address (`--dns-server`).
//!
//! Checked: the first connection after each answer succeeds, every round (zero races); a
//! name outside the policy and the wildcard's base are refused; an answer from a server
//! the pod chose (not the trusted address) admits nothing; the unselected pod's DNS
//! is not steered; an open connection to a learned address survives a batch that revokes
//! for its pod; removing the policy takes the learned addresses away and cuts it.
//!
//! Needs root: `#[ignore]`d, run with `--include-ignored` as root.

#[path = "dns/client.rs"]
mod client;
mod common;
#[path = "common/root.rs"]
mod needs_root;
#[path = "common/routed.rs"]
mod routed;
#[path = "dns/server.rs"]
mod server;
#[path = "common/controller.rs"]
mod util;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use hickory_proto::op::Query;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use nftpol::controller::dataplane::NetlinkDataplane;
use nftpol::controller::{self, dns_node::DnsConfig};
use serde_json::{json, Value};
use server::{Reply, TestServer};

const DNS: &str = "10.244.1.53";
/// The cluster DNS Service: the node DNATs it to `DNS`, as kube-proxy does.
const CLUSTER_DNS: &str = "10.96.0.10";
const POD_A: &str = "10.244.1.2";
const POD_B: &str = "10.244.1.3";
const PORT: u16 = 8443;
const ROUNDS: u16 = 100;
const ALPHA: &str = "policy.networking.k8s.io/v1alpha2";

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attach {
    Routed,
    Bridged,
    /// Bridged, filtered by the bridge's own `nf_call_iptables` option (the namespace's
    /// `bridge-nf-call-iptables` 0).
    BridgedOwnOption,
}

/// Node, pods a and b, and the server; the server holds 10.99.0.0/16. Bridged, only the
/// node's bridge (with br_netfilter on): [`attach`] then connects the pods.
fn topology(how: Attach) -> (Namespaces, [String; 4]) {
    let tag = match how {
        Attach::Routed => "r",
        Attach::Bridged => "b",
        Attach::BridgedOwnOption => "o",
    };
    let prefix = format!("nftpol-cdns{tag}-{}", std::process::id());
    let names = ["n", "a", "b", "s"].map(|s| format!("{prefix}-{s}"));
    let guard = Namespaces(names.to_vec());
    for ns in &names {
        routed::ip(&["netns", "add", ns]);
    }
    let node = &names[0];
    routed::ip(&["-n", node, "link", "set", "lo", "up"]);
    routed::forwarding(node);
    if how != Attach::Routed {
        let own = if how == Attach::BridgedOwnOption {
            "1"
        } else {
            "0"
        };
        routed::ip(&[
            "-n",
            node,
            "link",
            "add",
            "cni0",
            "type",
            "bridge",
            "nf_call_iptables",
            own,
        ]);
        routed::ip(&["-n", node, "addr", "add", "10.244.1.1/24", "dev", "cni0"]);
        routed::ip(&["-n", node, "link", "set", "cni0", "up"]);
        let all = if how == Attach::Bridged { "1" } else { "0" };
        sysctl(node, &format!("net.bridge.bridge-nf-call-iptables={all}"));
    }
    kube_proxy(node);
    (guard, names)
}

fn sysctl(ns: &str, setting: &str) {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", setting])
        .status()
        .unwrap()
        .success();
    assert!(ok, "sysctl {setting} in {ns}");
}

/// Attaches pods a and b and the server: by routes, or as ports of `cni0`.
fn attach(how: Attach, names: &[String; 4]) {
    let [node, a, b, srv] = names;
    for (ns, veth, addr) in [(a, "va", POD_A), (b, "vb", POD_B), (srv, "vsrv", DNS)] {
        match how {
            Attach::Routed => routed::attach(node, ns, veth, addr),
            _ => bridge_port(node, ns, veth, addr),
        }
    }
    routed::ip(&[
        "-n",
        srv,
        "route",
        "add",
        "local",
        "10.99.0.0/16",
        "dev",
        "lo",
    ]);
    routed::ip(&[
        "-n",
        node,
        "route",
        "add",
        "10.99.0.0/16",
        "via",
        DNS,
        "dev",
        match how {
            Attach::Routed => "vsrv",
            _ => "cni0",
        },
    ]);
}

/// `pod` on `cni0` of `node` (10.244.1.0/24, the bridge's address its gateway).
fn bridge_port(node: &str, pod: &str, veth: &str, addr: &str) {
    routed::ip(&[
        "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod,
    ]);
    routed::ip(&["-n", node, "link", "set", veth, "master", "cni0", "up"]);
    routed::ip(&["-n", pod, "link", "set", "lo", "up"]);
    routed::ip(&[
        "-n",
        pod,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "eth0",
    ]);
    routed::ip(&["-n", pod, "link", "set", "eth0", "up"]);
    routed::ip(&["-n", pod, "route", "add", "default", "via", "10.244.1.1"]);
}

/// `h<N>.dyn.example` is 10.99.<N/256>.<N%256>; `dyn.example` 10.99.255.2;
/// `x.other.example` 10.99.255.1. TTL 60.
fn zone() -> server::Zone {
    Arc::new(|q: &Query| {
        let n = q.name.to_ascii().to_lowercase();
        let addr = if let Some(h) = n
            .strip_prefix('h')
            .and_then(|r| r.strip_suffix(".dyn.example."))
        {
            let Ok(i) = h.parse::<u16>() else {
                return Reply::Records(vec![]);
            };
            Ipv4Addr::new(10, 99, (i >> 8) as u8, i as u8)
        } else {
            match n.as_str() {
                "dyn.example." => Ipv4Addr::new(10, 99, 255, 2),
                "x.other.example." => Ipv4Addr::new(10, 99, 255, 1),
                _ => return Reply::Records(vec![]),
            }
        };
        if q.query_type != RecordType::A {
            return Reply::Records(vec![]);
        }
        Reply::Records(vec![Record::from_rdata(
            q.name.clone(),
            60,
            RData::A(A(addr)),
        )])
    })
}

/// The cluster DNS Service, kube-proxy-shaped: DNAT at `dstnat`, after the steering.
fn kube_proxy(node: &str) {
    let script = format!(
        "table ip kube-proxy {{\n chain pre {{\n type nat hook prerouting priority dstnat; policy accept;\n ip daddr {CLUSTER_DNS} meta l4proto {{ tcp, udp }} th dport 53 dnat to {DNS}:53\n }}\n}}\n"
    );
    let mut c = Command::new("ip")
        .args(["netns", "exec", node, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success(), "{script}");
}

fn cnp(name: &str, priority: i64, egress: Value) -> Value {
    json!({"apiVersion": ALPHA, "kind": "ClusterNetworkPolicy", "metadata": {"name": name},
        "spec": {"tier": "Admin", "priority": priority,
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "a"}}}},
            "egress": egress}})
}

fn objects() -> Vec<Value> {
    vec![
        util::ns("x", json!({})),
        util::pod("x", "a", 1, POD_A, json!({"app": "a"})),
        util::pod("x", "b", 1, POD_B, json!({"app": "b"})),
        cnp(
            "fqdn",
            10,
            json!([{"action": "Accept", "to": [{"domainNames": ["*.dyn.example"]}],
                "protocols": [{"tcp": {"destinationPort": {"number": PORT}}}]}]),
        ),
        cnp(
            "wall",
            20,
            json!([{"action": "Deny", "to": [{"networks": ["10.99.0.0/16"]}]}]),
        ),
    ]
}

fn nft(node: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", node, "nft"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nft_list_set(node: &str, set: &str) -> String {
    nft(node, &["list", "set", "inet", "nftpol", set])
}

/// An echo service on `PORT` of every address of the server namespace.
fn echo(srv: &str) {
    let l = routed::listen(srv, PORT);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// A connection from `pod` to `to`:`PORT`, reads timing out after 2 s.
fn stream(pod: &str, to: IpAddr) -> TcpStream {
    let s = nftpol::netlink::in_netns(&routed::path(pod), move || {
        TcpStream::connect_timeout(&SocketAddr::new(to, PORT), Duration::from_secs(2))
    })
    .unwrap()
    .expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Whether `s` still carries data both ways.
fn echoes(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4];
    s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

/// Waits for `cond`, at most 20 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of every unlabelled `name` sample on the metrics page.
async fn metric(port: u16, name: &str) -> u64 {
    metric_if_any(port, name)
        .await
        .unwrap_or_else(|| panic!("no {name} on /metrics"))
}

/// Waits until the unlabelled sample `name` is `want`, at most 20 s.
async fn until_metric(port: u16, name: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric_if_any(port, name).await != Some(want) {
        if Instant::now() >= deadline {
            let got = metric_if_any(port, name).await;
            panic!("timed out waiting for {name} {want}: {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric_if_any(port: u16, name: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).await.unwrap();
    let values: BTreeMap<&str, u64> = page
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k, v.trim().parse().ok()?)))
        .collect();
    values.get(name).copied()
}

/// Resolves `name` from `pod` at the cluster DNS Service.
fn resolve(pod: &str, name: &str, id: u16) -> Option<IpAddr> {
    resolve_at(pod, CLUSTER_DNS, name, id)
}

/// Resolves `name` from `pod` at the cluster DNS Service, over TCP.
fn tcp_resolve(pod: &str, name: &str, id: u16) -> Option<IpAddr> {
    let server: SocketAddr = format!("{CLUSTER_DNS}:53").parse().unwrap();
    let name = name.to_string();
    nftpol::netlink::in_netns(&routed::path(pod), move || {
        client::resolve_at(server, &name, id, true, RecordType::A)
    })
    .unwrap()
}

fn resolve_at(pod: &str, server: &str, name: &str, id: u16) -> Option<IpAddr> {
    let server: SocketAddr = format!("{server}:53").parse().unwrap();
    let name = name.to_string();
    nftpol::netlink::in_netns(&routed::path(pod), move || {
        client::resolve_at(server, &name, id, false, RecordType::A)
    })
    .unwrap()
}

fn connects(pod: &str, to: IpAddr) -> bool {
    nftpol::netlink::in_netns(&routed::path(pod), move || {
        TcpStream::connect_timeout(&SocketAddr::new(to, PORT), Duration::from_secs(2)).is_ok()
    })
    .unwrap()
}

/// Resolve then connect at once, `ROUNDS` times, each a new name and address: the
/// failures.
fn rounds(pod: &str) -> Vec<(String, Option<IpAddr>)> {
    let mut failures = Vec::new();
    for i in 1..=ROUNDS {
        let name = format!("h{i}.dyn.example.");
        match resolve(pod, &name, i) {
            Some(a) if connects(pod, a) => {}
            got => failures.push((name, got)),
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces, nftables, tproxy, policy routing"]
async fn domain_names_through_the_controller() {
    needs_root::require_root_and_nft("domain_names_through_the_controller");
    through_the_controller(Attach::Routed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces, bridges, br_netfilter, tproxy, policy routing"]
async fn domain_names_through_the_controller_on_a_filtered_bridge() {
    needs_root::require_root_and_nft("domain_names_through_the_controller_on_a_filtered_bridge");
    through_the_controller(Attach::Bridged).await;
}

/// The running controller of node `n1` (in namespace `node`), its API server and
/// metrics port.
struct Running {
    server: FakeApiServer,
    port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    ctl: tokio::task::JoinHandle<Result<(), nftpol::controller::ControllerError>>,
}

async fn start(node: &str, objects: Vec<Value>) -> Running {
    let server = FakeApiServer::start().await;
    for o in objects {
        server.apply(o);
    }
    let (listener, port) = util::metrics_listener();
    let steering = nftpol::ruleset::DnsSteering {
        // The cluster DNS Service's address, which kube-proxy DNATs to the server.
        servers: vec![format!("{CLUSTER_DNS}/32").parse().unwrap()],
        ..Default::default()
    };
    let mut config = util::config(
        "n1",
        listener,
        Duration::from_secs(60),
        Some(routed::path(node)),
    );
    config.options.dns = Some(steering.clone());
    config.dns = Some(DnsConfig {
        steering,
        ttl: nftpol::fqdn::Ttl { min: 1, max: 3600 },
        route_table: 9353,
    });
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let ctl = tokio::spawn(controller::run(
        config,
        server.client(),
        NetlinkDataplane::open,
        async {
            let _ = rx.await;
        },
    ));
    Running {
        server,
        port,
        stop,
        ctl,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces, bridges, br_netfilter, tproxy, policy routing"]
async fn domain_names_on_a_bridge_filtered_by_its_own_option() {
    needs_root::require_root_and_nft("domain_names_on_a_bridge_filtered_by_its_own_option");
    through_the_controller(Attach::BridgedOwnOption).await;
}

/// Attaches the pods and the server, starts the server's DNS and echo service, and waits
/// for the proxy's liveness element; the DNS server runs while the result is held.
async fn attach_and_serve(
    how: Attach,
    names: &[String; 4],
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    attach(how, names);
    let [node, _, _, srv] = names;
    let dns: SocketAddr = format!("{DNS}:53").parse().unwrap();
    let server = client::spawn_in(routed::path(srv), move || {
        Box::pin(async move {
            TestServer::start(dns, zone()).await;
        })
    });
    echo(srv);
    until("the proxy's liveness element", || {
        nft_list_set(node, "dns/alive").contains("53")
    })
    .await;
    server
}

async fn through_the_controller(how: Attach) {
    let (_guard, names) = topology(how);
    let Running {
        server,
        port,
        stop,
        ctl,
    } = start(&names[0], objects()).await;
    // The pods come after the proxy listens, as a CNI attaches them: on the bridge, the
    // proxy's link watch opens its listeners there.
    until_metric(port, "nftpol_dns_bridges", 0).await;
    let _dns = attach_and_serve(how, &names).await;
    let [node, a, b, _] = names.clone();
    until_metric(port, "nftpol_dns_bridges", u64::from(how != Attach::Routed)).await;
    let rules = Command::new("ip")
        .args(["-n", &node, "rule", "show"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    assert!(
        rules.contains("fwmark 0x200000/0x200000 lookup 9353"),
        "{rules}"
    );

    // Zero races, and only the policy's names.
    assert_eq!(
        rounds(&a),
        [],
        "first connections refused after their answer"
    );
    // Over TCP too, through the Service address: the connection's later segments reach
    // the proxy's socket by the address DNAT chose.
    for i in 1..=20u16 {
        let name = format!("h{}.dyn.example.", 200 + i);
        let got = tcp_resolve(&a, &name, i);
        assert!(
            got.is_some_and(|addr| connects(&a, addr)),
            "{name} over TCP: {got:?}"
        );
    }
    for name in ["x.other.example.", "dyn.example."] {
        let addr = resolve(&a, name, 1).expect("DNS answers every name");
        assert!(!connects(&a, addr), "{name} admitted");
    }
    assert!(metric(port, "nftpol_dns_answers_total").await >= u64::from(ROUNDS) + 2);
    // A server of the pod's choosing (here the same server, by its own address, which is
    // not the trusted Service address) teaches nothing: the query is not even steered.
    let queries = metric(port, "nftpol_dns_queries_total").await;
    let addr = resolve_at(&a, DNS, "h400.dyn.example.", 3).expect("DNS answers");
    assert!(!connects(&a, addr), "an untrusted server's answer admitted");
    assert_eq!(metric(port, "nftpol_dns_queries_total").await, queries);
    assert_eq!(metric(port, "nftpol_dns_learn_failures_total").await, 0);

    // Pod b is no subject: its DNS goes straight to the server, its traffic is free.
    let queries = metric(port, "nftpol_dns_queries_total").await;
    let addr = resolve(&b, "x.other.example.", 7).unwrap();
    assert!(connects(&b, addr));
    assert_eq!(metric(port, "nftpol_dns_queries_total").await, queries);

    // An open connection to a learned address survives a batch that revokes for pod a
    // (a NetworkPolicy now isolates its ingress): the revoker knows what was learned.
    let learned: IpAddr = "10.99.0.1".parse().unwrap();
    let mut open = stream(&a, learned);
    assert!(echoes(&mut open), "the connection works before");
    server.apply(util::policy(
        "x",
        "a-ingress",
        json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"]}),
    ));
    until("a's ingress chain", || {
        nft(&node, &["list", "chain", "inet", "nftpol", "ingress/x/a"]).contains("chain")
    })
    .await;
    assert!(
        echoes(&mut open),
        "a connection to a learned address was cut"
    );

    // The domainNames policy removed: what it learned admits nothing any more, and the
    // open connection is cut.
    server.delete("ClusterNetworkPolicy", None, "fqdn");
    let a2 = a.clone();
    until("the learned address to be refused", || {
        !connects(&a2, learned)
    })
    .await;
    assert!(
        !echoes(&mut open),
        "a revoked connection still carries data"
    );
    // No domainNames rule left: the bridge listeners close (port 53 is free again).
    until_metric(port, "nftpol_dns_bridges", 0).await;

    stop.send(()).unwrap();
    ctl.await.unwrap().unwrap();
}

/// A domainNames policy in audit mode learns as an enforced one does (its pods' DNS is
/// steered, its learned set filled), so that its would-allow and would-deny records, and
/// enforcing it later, count what it learned; it enforces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces, nftables, tproxy, policy routing"]
async fn an_audited_domain_rule_learns_and_enforces_nothing() {
    needs_root::require_root_and_nft("an_audited_domain_rule_learns_and_enforces_nothing");
    let (_guard, names) = topology(Attach::Routed);
    let audited: Vec<Value> = objects()
        .into_iter()
        .map(|mut o| {
            if o["kind"] == "ClusterNetworkPolicy" {
                o["metadata"]["annotations"] = json!({"nftpol.io/mode": "audit"});
            }
            o
        })
        .collect();
    let Running {
        port, stop, ctl, ..
    } = start(&names[0], audited).await;
    until_metric(port, "nftpol_dns_bridges", 0).await;
    let _dns = attach_and_serve(Attach::Routed, &names).await;
    let [node, a, ..] = names.clone();
    let learned = nftpol::ruleset::names::learned_set("fqdn", 0, false);
    let addr = resolve(&a, "h5.dyn.example.", 5).expect("DNS answers");
    assert!(
        nft_list_set(&node, &learned).contains(&addr.to_string()),
        "the audited rule learned nothing: {}",
        nft_list_set(&node, &learned)
    );
    let other = resolve(&a, "x.other.example.", 6).expect("DNS answers");
    assert!(!nft_list_set(&node, &learned).contains(&other.to_string()));
    // Nothing is enforced: the audited Deny of 10.99.0.0/16 drops nothing.
    assert!(connects(&a, addr) && connects(&a, other));
    stop.send(()).unwrap();
    ctl.await.unwrap().unwrap();
}
