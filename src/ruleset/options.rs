//! The operator's choices that shape a ruleset (flags, not policies): unknown-pod
//! default deny, verdict logging, set-size budgets; and the per-policy element budget
//! they imply. Plain data, read by the builders below `build`.

use std::collections::BTreeMap;

use crate::graph::PolicyGraph;

/// Choices that are the operator's, not the policies'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--default-deny-unknown`: traffic to or from an address in these CIDRs (this node's
    /// pod CIDRs) that is not a known pod is dropped until its rules are in place.
    pub pod_cidrs: Vec<ipnet::IpNet>,
    /// Verdict logs: which first packets the pod chains send to an NFLOG group.
    pub log: LogOptions,
    /// The most elements one pod direction's concatenated NetworkPolicy sets may take
    /// before its allows with ports are looked up as pairs (`np_elements`); `None` for
    /// the default, which follows the allows' own size. Tests set it low to make every
    /// pod direction take pairs.
    pub concat_budget: Option<usize>,
    /// The most set elements one NetworkPolicy may come to on this node
    /// ([`PolicyGraph::policy_elements`]); a policy over it is enforced fail-closed (it
    /// isolates the pods it selects and allows nothing: see [`over_budget`]). `None`: no
    /// limit.
    pub max_elements: Option<usize>,
    /// Count what each NetworkPolicy rule allows, what each ClusterNetworkPolicy rule
    /// decides and what each isolated pod chain drops (off by default; `--counters` turns
    /// it on): the NetworkPolicy allow sets (and the ports half of pairs) carry a counter
    /// per element, cut where each allow starts and ends; the enforced tier sets too, cut
    /// so each element lies in one rule's region; the default deny is `counter drop`.
    /// See `ruleset::traffic`.
    pub counters: bool,
    /// The node's DNS proxy for ClusterNetworkPolicy `domainNames` rules (`nftpol run`
    /// starts it unless `--no-dns-proxy`): where the steering chain sends the DNS of the
    /// pods those rules select. `None`: no steering chain (learned sets and their lookups
    /// are still compiled; nothing fills them).
    pub dns: Option<DnsSteering>,
}

/// Where the steering rules send DNS, and how the proxy's packets are marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSteering {
    /// `--dns-server`: the servers whose answers teach. Only queries addressed to them
    /// are steered, matched before kube-proxy's DNAT (the Service address the pod
    /// asked, not the endpoint DNAT chooses); none: nothing is steered.
    pub servers: Vec<ipnet::IpNet>,
    /// The DNS port the steering rules match (53), the element of the liveness set.
    pub dns_port: u16,
    /// The proxy's port on the node (`tproxy to :port`), UDP and TCP.
    pub proxy_port: u16,
    /// The bit set on steered packets (`meta mark set meta mark or mark`), which the
    /// controller's policy route (`ip rule fwmark mark/mark lookup <table>`, a `local`
    /// default route) delivers to the proxy's socket.
    pub mark: u32,
}

impl Default for DnsSteering {
    fn default() -> DnsSteering {
        DnsSteering {
            servers: Vec::new(),
            dns_port: 53,
            proxy_port: 9353,
            // A bit kube-proxy (0x4000, 0x8000), flannel (0x4000) and Cilium (0x0f00)
            // leave alone; `--dns-proxy-mark` for a node where it is taken.
            mark: 0x0020_0000,
        }
    }
}

/// The NetworkPolicies (`namespace/name`) whose allows come to more than
/// [`Options::max_elements`] set elements in this graph ([`PolicyGraph::policy_elements`]),
/// with their size. The budget is the last line against a policy whose compiled form would
/// take the node's memory (a tenant's, say), and it fails closed.
pub fn over_budget(graph: &PolicyGraph, opts: &Options) -> BTreeMap<String, usize> {
    let Some(max) = opts.max_elements else {
        return BTreeMap::new();
    };
    graph
        .policy_elements()
        .into_iter()
        .filter(|&(_, n)| n > max)
        .map(|(p, n)| (p.to_string(), n))
        .collect()
}

/// `--log-denied`, `--log-allowed`, `--log-rate`, `--log-burst`, `--log-group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Log the first packet of each denied connection (rate limited per chain).
    pub denied: bool,
    /// Log the first packet of every allowed connection (not rate limited).
    pub allowed: bool,
    /// Denied records per second and chain (pod and direction), after `burst`.
    pub rate: u32,
    pub burst: u32,
    /// The NFLOG group (nfnetlink_log) the controller reads.
    pub group: u16,
}

impl LogOptions {
    /// No logging rules at all.
    pub const OFF: LogOptions = LogOptions {
        denied: false,
        allowed: false,
        ..LogOptions::DEFAULT
    };
    pub const DEFAULT: LogOptions = LogOptions {
        denied: true,
        allowed: false,
        rate: 10,
        burst: 20,
        // Not 0 (the default of tools that log) nor 100 (kube-router's): a group has one
        // reader, and binding one another tool reads takes its records away.
        group: 9309,
    };
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions::DEFAULT
    }
}
