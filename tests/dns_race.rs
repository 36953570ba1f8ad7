#![cfg(feature = "controller")]
//! ClusterNetworkPolicy `domainNames` with real packets: a pod resolves a name and
//! connects at once, through the node's transparent DNS proxy (tproxy), many times, and
//! the first connection after each answer must succeed every time (zero races).
//!
//! ```text
//! pod ns (10.244.1.2) --veth-- node ns (router) --veth-- server ns (10.244.1.53: DNS on
//!                              tproxy udp/tcp 53 -> :5353     hickory; TCP 8443 on every
//!                              while @alive holds 53          address of 10.99.0.0/16)
//!                              forward: tcp 8443 to @learned4 accept, else reset
//! ```
//!
//! The node's table is written by hand here, in the shape the compiler is to generate
//! (the steering rules, the liveness set, a rule's learned set); the proxy, the learner,
//! the netlink batches and the liveness refresher are the production ones. Also checked: a name outside the
//! policy and the wildcard's own base are refused; TCP DNS; an AAAA answer through a CNAME
//! admits its IPv6 address (and no other); an address expires after its
//! TTL (minimum TTL 1 s); with the proxy stopped (its liveness element expired) the pod
//! still resolves and nothing new is admitted.
//!
//! Needs root: `#[ignore]`d, run with `--include-ignored` as root (see common/root.rs).

#[path = "dns/client.rs"]
mod client;
#[path = "common/root.rs"]
mod needs_root;
#[path = "common/routed.rs"]
mod routed;
#[path = "dns/server.rs"]
mod server;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::Query;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nftpol::controller::dns_proxy::learner::{DomainRule, KernelSink, LearnSink, SetLearner};
use nftpol::controller::dns_proxy::liveness::{keep_alive, Liveness};
use nftpol::controller::dns_proxy::{LearnError, ProxyConfig, ProxyStats, TcpProxy, UdpProxy};
use nftpol::fqdn::{DomainPattern, Ttl};
use nftpol::netlink::LearnedElem;
use routed::{attach, forwarding, ip, path};
use server::{Reply, TestServer};

const DNS: &str = "10.244.1.53";
const POD: &str = "10.244.1.2";
const PORT: u16 = 8443;
const ROUNDS: u32 = 300;

/// The kernel, 3 ms late: a busy node's batch takes milliseconds, and the answer must
/// wait for it whatever it takes. Without the wait (the proxy returning the answer at
/// once), the pod's first SYN overtakes the element in most rounds here.
struct SlowSink(KernelSink);

impl LearnSink for SlowSink {
    fn add(&mut self, elems: &[LearnedElem]) -> Result<(), LearnError> {
        std::thread::sleep(Duration::from_millis(3));
        self.0.add(elems)
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

fn nft(ns: &str, script: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f in {ns}:\n{script}");
}

fn nft_out(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const TABLE: &str = r#"
table inet nftpol_dns {
  set alive { type inet_service; flags timeout; }
  set learned4 { type ipv4_addr; flags timeout; }
  set learned6 { type ipv6_addr; flags timeout; }
  chain steer {
    type filter hook prerouting priority mangle; policy accept;
    iifname "vpod" meta l4proto tcp socket transparent 1 meta mark set 1 accept
    iifname "vpod" ip daddr 10.244.1.53 udp dport @alive tproxy ip to :5353 meta mark set 1 accept
    iifname "vpod" ip daddr 10.244.1.53 tcp dport @alive tproxy ip to :5353 meta mark set 1 accept
  }
  chain guard {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    iifname "vpod" tcp dport 8443 ip daddr @learned4 accept
    iifname "vpod" tcp dport 8443 ip6 daddr @learned6 accept
    iifname "vpod" tcp dport 8443 reject with tcp reset
  }
}
"#;

/// `h<N>.dyn.example` is 10.99.<N/256>.<N%256> (TTL 60); `short.dyn.example` is
/// 10.99.254.1 (TTL 1); `dyn.example` 10.99.255.2; `x.other.example` 10.99.255.1.
fn zone() -> server::Zone {
    Arc::new(|q: &Query| {
        let n = q.name.to_ascii().to_lowercase();
        let (addr, ttl) = if let Some(h) = n
            .strip_prefix('h')
            .and_then(|r| r.strip_suffix(".dyn.example."))
        {
            let Ok(i) = h.parse::<u16>() else {
                return Reply::Records(vec![]);
            };
            (Ipv4Addr::new(10, 99, (i >> 8) as u8, i as u8), 60)
        } else {
            match n.as_str() {
                "short.dyn.example." => (Ipv4Addr::new(10, 99, 254, 1), 1),
                "late.dyn.example." => (Ipv4Addr::new(10, 99, 254, 2), 60),
                "dyn.example." => (Ipv4Addr::new(10, 99, 255, 2), 60),
                "v6.dyn.example." => (Ipv4Addr::new(10, 99, 254, 3), 60),
                "x.other.example." => (Ipv4Addr::new(10, 99, 255, 1), 60),
                _ => return Reply::Records(vec![]),
            }
        };
        if n == "v6.dyn.example." && q.query_type == RecordType::AAAA {
            // An alias outside the policy's names: what counts is the question.
            let edge = Name::from_ascii("edge6.cdn.example.").unwrap();
            let v6: std::net::Ipv6Addr = "2001:db8:99::7".parse().unwrap();
            return Reply::Records(vec![
                Record::from_rdata(q.name.clone(), 60, RData::CNAME(CNAME(edge.clone()))),
                Record::from_rdata(edge, 60, RData::AAAA(AAAA(v6))),
            ]);
        }
        if q.query_type != RecordType::A {
            return Reply::Records(vec![]);
        }
        Reply::Records(vec![Record::from_rdata(
            q.name.clone(),
            ttl,
            RData::A(A(addr)),
        )])
    })
}

/// Resolves `name` from the pod (UDP, or TCP), returning its first A address.
fn resolve(name: &str, id: u16, tcp: bool) -> Option<IpAddr> {
    resolve_as(name, id, tcp, RecordType::A)
}

/// Resolves `name` (record type `t`) from the pod, returning its first address.
fn resolve_as(name: &str, id: u16, tcp: bool, t: RecordType) -> Option<IpAddr> {
    client::resolve_at(format!("{DNS}:53").parse().unwrap(), name, id, tcp, t)
}

fn connects(to: IpAddr) -> bool {
    TcpStream::connect_timeout(&SocketAddr::new(to, PORT), Duration::from_secs(2)).is_ok()
}

fn in_pod<T: Send>(pod: &str, f: impl FnOnce() -> T + Send) -> T {
    nftpol::netlink::in_netns(&path(pod), f).unwrap()
}

/// Starts `f`'s runtime inside `ns` (see `client::spawn_in`).
fn spawn_in<F>(
    ns: &str,
    f: F,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
)
where
    F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + 'static,
{
    client::spawn_in(path(ns), f)
}

/// IPv6 beside the routed IPv4: the pod and the server namespace each hold one /128
/// routed by the node, and the server answers on every address of 2001:db8:99::/64.
fn ipv6(node: &str, pod: &str, srv: &str) {
    // `ip -n NS -6 WORDS...`, WORDS split on spaces.
    let ip6 = |ns: &str, words: &str| {
        let args: Vec<&str> = ["-n", ns, "-6"]
            .into_iter()
            .chain(words.split(' '))
            .collect();
        ip(&args);
    };
    for (ns, me) in [(pod, "fd77::2"), (srv, "fd77::53")] {
        ip6(ns, &format!("addr add {me}/128 dev eth0 nodad"));
        ip6(ns, "route add fd77::1 dev eth0");
        ip6(ns, "route add default via fd77::1 dev eth0");
    }
    for (dev, peer) in [("vpod", "fd77::2"), ("vsrv", "fd77::53")] {
        ip6(node, &format!("addr add fd77::1/128 dev {dev} nodad"));
        ip6(node, &format!("route add {peer}/128 dev {dev}"));
    }
    ip6(srv, "route add local 2001:db8:99::/64 dev lo");
    ip6(node, "route add 2001:db8:99::/64 via fd77::53 dev vsrv");
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            node,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "ipv6 forwarding in {node}");
}

/// A TCP listener on every IPv6 address (IPv6 only: the IPv4 one holds the port too).
fn listener_v6() -> tokio::net::TcpListener {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.set_only_v6(true).unwrap();
    s.set_nonblocking(true).unwrap();
    let any: SocketAddr = format!("[::]:{PORT}").parse().unwrap();
    s.bind(&any.into()).unwrap();
    s.listen(128).unwrap();
    tokio::net::TcpListener::from_std(s.into()).unwrap()
}

/// The three namespaces, routed, with the node's policy routing for tproxy and its table.
fn topology() -> (Namespaces, String, String, String) {
    let prefix = format!("nftpol-dns-{}", std::process::id());
    let [node, pod, srv] = ["n", "p", "s"].map(|s| format!("{prefix}-{s}"));
    let guard = Namespaces(vec![node.clone(), pod.clone(), srv.clone()]);
    for ns in [&node, &pod, &srv] {
        ip(&["netns", "add", ns]);
    }
    attach(&node, &pod, "vpod", POD);
    attach(&node, &srv, "vsrv", DNS);
    forwarding(&node);
    ipv6(&node, &pod, &srv);
    let targets = "10.99.0.0/16";
    ip(&["-n", &srv, "route", "add", "local", targets, "dev", "lo"]);
    ip(&[
        "-n", &node, "route", "add", targets, "via", DNS, "dev", "vsrv",
    ]);
    // tproxied packets are marked; marked packets are delivered locally.
    ip(&["-n", &node, "rule", "add", "fwmark", "1", "lookup", "100"]);
    let local = [
        "route",
        "add",
        "local",
        "0.0.0.0/0",
        "dev",
        "lo",
        "table",
        "100",
    ];
    ip(&[&["-n", node.as_str()][..], &local[..]].concat());
    nft(&node, TABLE);
    (guard, node, pod, srv)
}

/// The server namespace: DNS and the TCP service on every address.
fn start_server(
    srv: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    spawn_in(srv, || {
        Box::pin(async {
            let dns: SocketAddr = format!("{DNS}:53").parse().unwrap();
            TestServer::start(dns, zone()).await;
            let l = tokio::net::TcpListener::bind(("0.0.0.0", PORT))
                .await
                .unwrap();
            tokio::spawn(async move { while l.accept().await.is_ok() {} });
            let l6 = listener_v6();
            tokio::spawn(async move { while l6.accept().await.is_ok() {} });
        })
    })
}

/// The node: the proxy (UDP and TCP on :5353), the learner on the rule `*.dyn.example`
/// (sets learned4/learned6), the liveness refresher (53 for 2 s, every 500 ms).
fn start_node(
    node: &str,
    stats: Arc<ProxyStats>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    spawn_in(node, move || {
        Box::pin(async move {
            let backend = nftpol::netlink::Backend::open().unwrap();
            let table = "nftpol_dns".to_string();
            let sink = KernelSink { table, backend };
            let learner = Arc::new(SetLearner::new(
                vec![format!("{DNS}/32").parse().unwrap()],
                Ttl { min: 1, max: 3600 },
                Box::new(SlowSink(sink)),
            ));
            learner.set_rules(vec![DomainRule {
                id: "allow-dyn/0".into(),
                patterns: vec![DomainPattern::parse("*.dyn.example").unwrap()],
                set4: "learned4".into(),
                set6: "learned6".into(),
            }]);
            let listen: SocketAddr = "0.0.0.0:5353".parse().unwrap();
            let cfg = ProxyConfig::default();
            let u = UdpProxy::bind(listen, cfg.clone(), learner.clone(), stats.clone()).unwrap();
            let t = TcpProxy::bind(listen, cfg, learner, stats).unwrap();
            tokio::spawn(u.run());
            tokio::spawn(t.run());
            let liveness = Liveness {
                table: "nftpol_dns".into(),
                set: "alive".into(),
                port: 53,
                timeout: Duration::from_secs(2),
                every: Duration::from_millis(500),
            };
            let backend = nftpol::netlink::Backend::open().unwrap();
            tokio::spawn(keep_alive(backend, liveness));
        })
    })
}

fn alive(node: &str) -> bool {
    nft_out(node, &["list", "set", "inet", "nftpol_dns", "alive"]).contains("53")
}

/// Zero races: each round a new name and a new address, connected to at once; every
/// tenth lookup over TCP.
fn rounds(node: &str, pod: &str, stats: &ProxyStats) {
    let failures = in_pod(pod, || {
        let mut failures = Vec::new();
        for i in 0..ROUNDS {
            let name = format!("h{i}.dyn.example.");
            let tcp = i % 10 == 9;
            match resolve(&name, i as u16, tcp) {
                Some(a) if connects(a) => {}
                got => failures.push((name, tcp, got)),
            }
        }
        failures
    });
    assert_eq!(failures, [], "first connections refused after their answer");
    let learned = nft_out(node, &["list", "set", "inet", "nftpol_dns", "learned4"]);
    assert!(learned.contains("10.99.1.43"), "{learned}");
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.answers.load(Relaxed), u64::from(ROUNDS));
    assert_eq!(stats.learned.load(Relaxed), u64::from(ROUNDS));
    assert_eq!(stats.learn_failures.load(Relaxed), 0);
    eprintln!(
        "added latency over {ROUNDS} lookups: p50 <= {:?}, p99 <= {:?}",
        stats.added_quantile(0.5),
        stats.added_quantile(0.99)
    );
}

/// Names outside the policy and the wildcard's own base are resolved, never admitted; an
/// AAAA answer through a CNAME admits its IPv6 address at once, and no neighbour; an
/// address with a 1 s TTL (minimum TTL 1 s) is admitted, then expired by the kernel.
fn semantics(pod: &str) {
    in_pod(pod, || {
        for name in ["x.other.example.", "dyn.example."] {
            let a = resolve(name, 1, false).expect("DNS still answers");
            assert!(!connects(a), "{name} admitted");
        }
        let a = resolve_as("v6.dyn.example.", 4, false, RecordType::AAAA).unwrap();
        assert_eq!(a, "2001:db8:99::7".parse::<IpAddr>().unwrap());
        assert!(connects(a), "AAAA through a CNAME not admitted");
        assert!(!connects("2001:db8:99::8".parse().unwrap()));
        let a = resolve("short.dyn.example.", 2, false).unwrap();
        assert!(connects(a));
        let deadline = Instant::now() + Duration::from_secs(10);
        while connects(a) {
            assert!(Instant::now() < deadline, "short.dyn.example never expired");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

/// With the proxy stopped, once its liveness element expired: the pod resolves (UDP and
/// TCP, straight to the server), nothing new is admitted, what was learned still holds.
fn fails_open(node: &str, pod: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(node) {
        assert!(Instant::now() < deadline, "liveness never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    in_pod(pod, || {
        for tcp in [false, true] {
            let a = resolve("late.dyn.example.", 3, tcp).expect("DNS works without the proxy");
            assert!(!connects(a), "admitted without the proxy (tcp dns: {tcp})");
        }
        assert!(connects(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 5))));
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables, tproxy, real packets"]
fn resolve_then_connect_never_races() {
    needs_root::require_root_and_nft("resolve_then_connect_never_races");
    let (_guard, node, pod, srv) = topology();
    let (_srv_stop, _srv) = start_server(&srv);
    let stats = Arc::new(ProxyStats::default());
    let (node_stop, node_thread) = start_node(&node, stats.clone());
    while !alive(&node) {
        std::thread::sleep(Duration::from_millis(50));
    }
    rounds(&node, &pod, &stats);
    semantics(&pod);
    node_stop.send(()).unwrap();
    node_thread.join().unwrap();
    fails_open(&node, &pod);
}
