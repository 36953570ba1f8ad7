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

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
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
    let weights: Vec<usize> = (0..count).map(|i| 1 + 60 / (i + 1) + rng.below(5)).collect();
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
            let host4 = format!("192.168.{}.{}", node / 256, node % 256 + 1);
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
        6 => json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [app(rng), app(rng)]}]},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"tier": "data"}}}], "ports": [{"port": "db"}]},
                               {"to": [{"ipBlock": {"cidr": format!("203.0.{}.0/24", rng.below(256))}}], "ports": [{"port": 443}]}]}),
        7 => json!({"podSelector": {"matchLabels": {"tier": "data"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["team-0", "team-1"]}]},
                                           "podSelector": {"matchLabels": {"tier": "backend"}}}],
                                 "ports": [{"port": "db"}]}]}),
        8 => json!({"podSelector": {"matchExpressions": [{"key": "version", "operator": "Exists"}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ns-0000"}},
                                           "podSelector": {"matchLabels": {"app": "app-0"}}}],
                                 "ports": [{"port": "metrics"}]}]}),
        _ => json!({"podSelector": {"matchLabels": {"app": app(rng)}},
                    "ingress": [{"from": [{"podSelector": {}}, {"ipBlock": {"cidr": "fd00:10::/32", "except": ["fd00:10:1::/48"]}}]}]}),
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}
