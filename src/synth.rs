//! Synthetic clusters for benchmarks and property tests: namespaces of varying size, pods
//! with a few labels and named ports, and a realistic mix of policies (default deny,
//! same-namespace app rules, namespace selectors, both combined, ipBlocks with except,
//! named ports, port ranges, DNS egress). Deterministic: the same parameters always give
//! the same objects.

use serde_json::{json, Value};

/// A small deterministic PRNG (xorshift64*), so generated clusters are stable everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub pods: usize,
    pub policies: usize,
    /// Pods per node; nodes are named `node-0`, `node-1`, ...
    pub pods_per_node: usize,
    pub seed: u64,
}

impl Params {
    pub fn new(pods: usize, policies: usize) -> Self {
        Params {
            pods,
            policies,
            pods_per_node: 100,
            seed: 1,
        }
    }

    pub fn nodes(&self) -> usize {
        self.pods.div_ceil(self.pods_per_node).max(1)
    }
}

const TEAMS: usize = 20;
const APPS: usize = 8;
const TIERS: [&str; 3] = ["frontend", "backend", "data"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

/// The namespace names and sizes: a few large namespaces and many small ones.
fn namespace_sizes(p: &Params, rng: &mut Rng) -> Vec<usize> {
    let count = (p.pods / 40).clamp(1, 2000);
    let weights: Vec<usize> = (0..count)
        .map(|i| 1 + 60 / (i + 1) + rng.below(5))
        .collect();
    let total: usize = weights.iter().sum();
    let mut sizes: Vec<usize> = weights.iter().map(|w| w * p.pods / total).collect();
    let mut left = p.pods - sizes.iter().sum::<usize>();
    let mut i = 0;
    while left > 0 {
        sizes[i % count] += 1;
        left -= 1;
        i += 1;
    }
    sizes
}

/// The cluster as Kubernetes objects (JSON values, as the API server would serve them).
pub fn cluster(p: &Params) -> Vec<Value> {
    let mut rng = Rng::new(p.seed);
    let sizes = namespace_sizes(p, &mut rng);
    let mut out = Vec::with_capacity(p.pods + p.policies + sizes.len());
    let mut pod_index = 0usize;
    let ns_name = |i: usize| format!("ns-{i:04}");
    for (n, &size) in sizes.iter().enumerate() {
        let name = ns_name(n);
        out.push(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/metadata.name": name,
                "team": format!("team-{}", n % TEAMS),
                "env": ENVS[n % ENVS.len()],
            }}
        }));
        for k in 0..size {
            let node = pod_index / p.pods_per_node;
            let slot = pod_index % p.pods_per_node + 2;
            pod_index += 1;
            let app = format!("app-{}", (k * 7 + n) % APPS);
            let tier = TIERS[(k + n) % TIERS.len()];
            let ip4 = format!("10.{}.{}.{}", 64 + node / 256, node % 256, slot);
            let ip6 = format!("fd00:10:{:x}::{:x}", node, slot);
            let host4 = format!("192.168.{}.{}", (node + 1) / 256, (node + 1) % 256);
            let mut ports = vec![
                json!({"name": "http", "containerPort": 8080 + (k % 3) as i32, "protocol": "TCP"}),
                json!({"name": "metrics", "containerPort": 9090, "protocol": "TCP"}),
            ];
            if tier == "data" {
                ports.push(json!({"name": "db", "containerPort": 5432, "protocol": "TCP"}));
            }
            out.push(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{app}-{k:05}"), "namespace": name,
                             "labels": {"app": app, "tier": tier, "version": format!("v{}", k % 3)}},
                "spec": {"nodeName": format!("node-{node}"),
                         "containers": [{"name": "main", "image": "registry.example/app:1", "ports": ports}]},
                "status": {"phase": "Running", "podIP": ip4, "podIPs": [{"ip": ip4}, {"ip": ip6}],
                           "hostIP": host4, "hostIPs": [{"ip": host4}]}
            }));
        }
    }
    // Policies go to namespaces in proportion to their size.
    let total: usize = sizes.iter().sum::<usize>().max(1);
    for i in 0..p.policies {
        let mut target = rng.below(total);
        let mut n = 0;
        while n + 1 < sizes.len() && target >= sizes[n] {
            target -= sizes[n];
            n += 1;
        }
        out.push(policy(i, &ns_name(n), sizes.len(), &mut rng));
    }
    out
}

fn policy(i: usize, ns: &str, namespaces: usize, rng: &mut Rng) -> Value {
    let app = |rng: &mut Rng| format!("app-{}", rng.below(APPS));
    let name = format!("policy-{i:05}");
    let spec = match i % 10 {
        0 => json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        1 => json!({"podSelector": {"matchLabels": {"app": app(rng)}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": app(rng)}}}],
                                 "ports": [{"port": "http"}]}]}),
        2 => json!({"podSelector": {"matchLabels": {"tier": "backend"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("team-{}", rng.below(TEAMS))}}}],
                                 "ports": [{"port": 8080, "endPort": 8082}]}]}),
        3 => json!({"podSelector": {"matchLabels": {"app": app(rng)}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                                           "podSelector": {"matchLabels": {"tier": "frontend"}}}],
                                 "ports": [{"port": 8080}, {"port": 8081}]}]}),
        4 => json!({"podSelector": {}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": format!("ns-{:04}", rng.below(namespaces))}}}],
                                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
        5 => json!({"podSelector": {"matchLabels": {"tier": "frontend"}},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "192.168.0.0/16"]}}],
                                 "ports": [{"port": "http"}]}]}),
        6 => {
            json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [app(rng), app(rng)]}]},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"tier": "data"}}}], "ports": [{"port": "db"}]},
                               {"to": [{"ipBlock": {"cidr": format!("203.0.{}.0/24", rng.below(256))}}], "ports": [{"port": 443}]}]})
        }
        7 => json!({"podSelector": {"matchLabels": {"tier": "data"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["team-0", "team-1"]}]},
                                           "podSelector": {"matchLabels": {"tier": "backend"}}}],
                                 "ports": [{"port": "db"}]}]}),
        8 => {
            json!({"podSelector": {"matchExpressions": [{"key": "version", "operator": "Exists"}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ns-0000"}},
                                           "podSelector": {"matchLabels": {"app": "app-0"}}}],
                                 "ports": [{"port": "metrics"}]}]})
        }
        _ => json!({"podSelector": {"matchLabels": {"app": app(rng)}},
                    "ingress": [{"from": [{"podSelector": {}}, {"ipBlock": {"cidr": "fd00:10::/32", "except": ["fd00:10:1::/48"]}}]}]}),
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Small random clusters for property tests: two namespaces (x, y), up to five pods on
/// two nodes (n1: 10.0.0.0/24, n2: 10.0.1.0/24, hosts 192.168.100.1 and .2), up to three
/// policies mixing every kind of peer and port.
pub mod small {
    use super::Rng;
    use serde_json::{json, Value};

    pub const LABELS: [&str; 2] = ["app", "tier"];
    pub const VALUES: [&str; 3] = ["a", "b", "c"];
    pub const PORT_NAMES: [&str; 2] = ["web", "dns"];
    pub const EXT: [&str; 2] = ["192.168.100.100", "fd00:100::100"];

    pub fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
        xs[rng.below(xs.len())]
    }

    pub fn labels(rng: &mut Rng) -> Value {
        let mut m = serde_json::Map::new();
        for k in LABELS {
            if rng.chance(60) {
                m.insert(k.into(), json!(pick(rng, &VALUES)));
            }
        }
        Value::Object(m)
    }

    pub fn selector(rng: &mut Rng) -> Value {
        match rng.below(5) {
            0 => json!({}),
            1 | 2 => json!({"matchLabels": {pick(rng, &LABELS): pick(rng, &VALUES)}}),
            _ => {
                let op = pick(rng, &["In", "NotIn", "Exists", "DoesNotExist"]);
                let key = pick(rng, &LABELS);
                if op == "In" || op == "NotIn" {
                    json!({"matchExpressions": [{"key": key, "operator": op, "values": [pick(rng, &VALUES)]}]})
                } else {
                    json!({"matchExpressions": [{"key": key, "operator": op}]})
                }
            }
        }
    }

    pub fn peer(rng: &mut Rng) -> Value {
        match rng.below(5) {
            0 => json!({"podSelector": selector(rng)}),
            1 => json!({"namespaceSelector": selector(rng)}),
            2 => json!({"namespaceSelector": selector(rng), "podSelector": selector(rng)}),
            3 => json!({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}),
            _ => {
                json!({"ipBlock": {"cidr": pick(rng, &["fd00::/16", "192.168.100.0/24", "0.0.0.0/0"])}})
            }
        }
    }

    pub fn port(rng: &mut Rng) -> Value {
        let proto = pick(rng, &["TCP", "UDP"]);
        match rng.below(4) {
            0 => json!({"protocol": proto, "port": 80}),
            1 => json!({"protocol": proto, "port": 80, "endPort": 81}),
            2 => json!({"protocol": proto, "port": pick(rng, &PORT_NAMES)}),
            _ => json!({"protocol": proto}),
        }
    }

    pub fn rules(rng: &mut Rng, peers_key: &str) -> Value {
        let n = rng.below(3);
        Value::Array(
            (0..n)
                .map(|_| {
                    let mut r = serde_json::Map::new();
                    if rng.chance(70) {
                        r.insert(
                            peers_key.into(),
                            Value::Array((0..1 + rng.below(2)).map(|_| peer(rng)).collect()),
                        );
                    }
                    if rng.chance(60) {
                        r.insert(
                            "ports".into(),
                            Value::Array((0..1 + rng.below(2)).map(|_| port(rng)).collect()),
                        );
                    }
                    Value::Object(r)
                })
                .collect(),
        )
    }

    pub struct Cluster {
        pub objects: Vec<Value>,
        /// (id, node, ips) of the running pods.
        pub pods: Vec<(String, String, Vec<String>)>,
    }

    pub fn cluster(seed: u64) -> Cluster {
        let mut rng = Rng::new(seed);
        let mut objects = Vec::new();
        let namespaces = ["x", "y"];
        for ns in namespaces {
            objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels(&mut rng)}}));
        }
        let mut pods = Vec::new();
        for i in 0..1 + rng.below(5) {
            let ns = pick(&mut rng, &namespaces);
            let node = 1 + rng.below(2);
            let ip4 = format!("10.0.{}.{}", node - 1, 10 + i);
            let ip6 = format!("fd00::{}:{}", node, 10 + i);
            let mut ports = Vec::new();
            for (k, name) in PORT_NAMES.iter().enumerate() {
                if rng.chance(50) {
                    let proto = pick(&mut rng, &["TCP", "UDP"]);
                    ports.push(json!({"name": name, "containerPort": 80 + k as i32 + rng.below(2) as i32 * 10, "protocol": proto}));
                }
            }
            let name = format!("p{i}");
            let host4 = format!("192.168.100.{node}");
            let finished = rng.chance(10);
            objects.push(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": labels(&mut rng)},
                "spec": {"nodeName": format!("n{node}"), "containers": [{"name": "c", "ports": ports}]},
                "status": {"phase": if finished { "Succeeded" } else { "Running" }, "podIPs": [{"ip": ip4}, {"ip": ip6}],
                           "hostIP": host4, "hostIPs": [{"ip": host4}, {"ip": format!("fd00:100::{node}")}]}
            }));
            if !finished {
                pods.push((format!("{ns}/{name}"), format!("n{node}"), vec![ip4, ip6]));
            }
        }
        for i in 0..rng.below(4) {
            objects.push(policy(&mut rng, &format!("np{i}")));
        }
        Cluster { objects, pods }
    }

    /// A random policy in namespace x or y.
    pub fn policy(rng: &mut Rng, name: &str) -> Value {
        {
            let ns = pick(rng, &["x", "y"]);
            let mut spec = serde_json::Map::new();
            spec.insert("podSelector".into(), selector(rng));
            match rng.below(4) {
                0 => {}
                1 => {
                    spec.insert("policyTypes".into(), json!(["Ingress"]));
                }
                2 => {
                    spec.insert("policyTypes".into(), json!(["Egress"]));
                }
                _ => {
                    spec.insert("policyTypes".into(), json!(["Ingress", "Egress"]));
                }
            }
            spec.insert("ingress".into(), rules(rng, "from"));
            spec.insert("egress".into(), rules(rng, "to"));
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": name, "namespace": ns}, "spec": spec})
        }
    }

    /// A random selector over the small label domain.
    fn cnp_selector(rng: &mut Rng) -> Value {
        selector(rng)
    }

    fn cnp_peer(rng: &mut Rng, egress: bool) -> Value {
        match rng.below(if egress { 6 } else { 3 }) {
            0 => json!({"namespaces": cnp_selector(rng)}),
            1 => json!({"pods": {"podSelector": cnp_selector(rng)}}),
            2 => {
                json!({"pods": {"namespaceSelector": cnp_selector(rng), "podSelector": cnp_selector(rng)}})
            }
            3 => {
                json!({"networks": [pick(rng, &["10.0.0.0/24", "10.0.1.0/24", "0.0.0.0/0", "fd00::/16"])]})
            }
            4 => json!({"nodes": cnp_selector(rng)}),
            _ => json!({"networks": ["192.168.100.0/24"]}),
        }
    }

    fn cnp_protocols(rng: &mut Rng, named_ok: bool) -> Option<Value> {
        let proto = pick(rng, &["tcp", "udp"]);
        match rng.below(if named_ok { 4 } else { 3 }) {
            0 => None,
            1 => Some(json!([{proto: {"destinationPort": {"number": 80}}}])),
            2 => Some(json!([{proto: {"destinationPort": {"range": {"start": 80, "end": 90}}}}])),
            _ => Some(json!([{"destinationNamedPort": pick(rng, &PORT_NAMES)}])),
        }
    }

    /// A random ClusterNetworkPolicy over the small domain (both tiers, every peer kind,
    /// named ports); with `invalid_percent`, that share is invalid (priority out of range,
    /// enforced fail-closed).
    pub fn cluster_policy(rng: &mut Rng, name: &str, invalid_percent: u64) -> Value {
        let rules = |rng: &mut Rng, egress: bool| -> Value {
            Value::Array(
                (0..rng.below(3))
                    .map(|_| {
                        let peers: Vec<Value> = (0..1 + rng.below(2))
                            .map(|_| cnp_peer(rng, egress))
                            .collect();
                        let named_ok = peers
                            .iter()
                            .all(|p| p.get("namespaces").is_some() || p.get("pods").is_some());
                        let key = if egress { "to" } else { "from" };
                        let mut r =
                            json!({"action": pick(rng, &["Accept", "Deny", "Pass"]), key: peers});
                        if let Some(p) = cnp_protocols(rng, named_ok) {
                            r["protocols"] = p;
                        }
                        r
                    })
                    .collect(),
            )
        };
        let subject = if rng.chance(50) {
            json!({"namespaces": cnp_selector(rng)})
        } else {
            json!({"pods": {"namespaceSelector": cnp_selector(rng), "podSelector": cnp_selector(rng)}})
        };
        let mut v = json!({
            "apiVersion": pick(rng, &["policy.networking.k8s.io/v1alpha2", "policy.networking.k8s.io/v1beta1"]),
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"tier": pick(rng, &["Admin", "Baseline"]), "priority": rng.below(3) as i64,
                     "subject": subject, "ingress": rules(rng, false), "egress": rules(rng, true)},
        });
        if rng.chance(invalid_percent) {
            v["spec"]["priority"] = json!(5000);
        }
        v
    }

    /// Node `n<n>` with random labels; one in five has an address no host has.
    pub fn node(rng: &mut Rng, n: usize) -> Value {
        let addr = format!("192.168.100.{}", if rng.chance(80) { n } else { 10 + n });
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("n{n}"), "labels": labels(rng)},
               "status": {"addresses": [{"type": "InternalIP", "address": addr}]}})
    }
}
