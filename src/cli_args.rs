//! The command line as clap reads it: subcommands, their flags, and the shared flag
//! groups (input, logs, budget). Plain definitions; what each command does is in
//! `cli_commands`.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use nftpol::input;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// What `explain` and `graph` print: text for people, JSON (same content) for tools.
/// `-o/--output` is a format in every command, as in kubectl; the file is `--output-file`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    Text,
    Json,
}

/// What `compile` prints: an `nft -f` script (the one format so far).
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ScriptFormat {
    Nft,
}

/// What `diff` and `graph` print: text, JSON, or Graphviz.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum DiffFormat {
    Text,
    Json,
    Dot,
}

/// Which changes make `diff` exit 1.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FailOn {
    Closed,
    Opened,
    Any,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FamilyArg {
    Ipv4,
    Ipv6,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Compile policies and cluster state into an `nft -f` script.
    Compile(CompileArgs),
    /// Say whether a connection is allowed, and which policies and rules decide it.
    Explain(ExplainArgs),
    /// Which connections a change opens and closes: every connection whose verdict
    /// differs between two states. Exit status 0: none, 1: some (see --fail-on), 2: error.
    Diff(DiffArgs),
    /// Which recorded connections (verdict records of `nftpol run --log-format json`) a
    /// state would judge differently. Exit status as `diff`.
    Replay(ReplayArgs),
    /// Run the controller: watch the cluster and program this node's nftables.
    #[cfg(feature = "controller")]
    Run(RunArgs),
    /// Print a synthetic cluster (JSON, one object per line) for benchmarks.
    #[command(hide = true)]
    Synth(SynthArgs),
    /// Print the policy graph: isolation and allowed peers of every pod, with origins.
    Graph(GraphArgs),
}

#[derive(clap::Args)]
pub(crate) struct CompileArgs {
    /// Only the pods whose spec.nodeName is NAME (peers still span the cluster).
    #[arg(long, value_name = "NAME")]
    pub(crate) node: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = ScriptFormat::Nft)]
    pub(crate) output: ScriptFormat,
    /// Write to FILE instead of stdout (`-`): a regular file is replaced whole or not
    /// at all and keeps its mode, a symlink is followed, a device is written to.
    #[arg(long, value_name = "FILE")]
    pub(crate) output_file: Option<PathBuf>,
    /// As the controller's flag: drop traffic of addresses in --pod-cidr that are not
    /// known pods.
    #[arg(long, requires = "pod_cidr")]
    pub(crate) default_deny_unknown: bool,
    /// The node's pod CIDR (repeatable), for --default-deny-unknown.
    #[arg(long, value_name = "CIDR")]
    pub(crate) pod_cidr: Vec<ipnet::IpNet>,
    /// As the controller's flag: traffic counters (a `counter` on each allow set's and
    /// tier set's elements, `counter drop` at the end of isolated pod chains).
    #[arg(long)]
    pub(crate) counters: bool,
    #[command(flatten)]
    pub(crate) dns: DnsSteerArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(flatten)]
    pub(crate) budget: BudgetArgs,
    #[command(flatten)]
    pub(crate) read: InputArgs,
    /// YAML or JSON files (`kubectl get ns,pods,netpol -A -o yaml`), `-` for stdin.
    #[arg(required = true, value_name = "INPUT")]
    pub(crate) inputs: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct ExplainArgs {
    /// Client: `ns/pod` or an IP address.
    #[arg(long)]
    pub(crate) from: String,
    /// Server: `ns/pod` or an IP address.
    #[arg(long)]
    pub(crate) to: String,
    /// PROTO/PORT, like tcp/80, udp/53, sctp/81.
    #[arg(long)]
    pub(crate) port: String,
    /// Address family when both sides are pods (default: IPv4 when both have it).
    #[arg(long, value_enum)]
    pub(crate) family: Option<FamilyArg>,
    /// The source pod resolved NAME and got ADDR: ADDR counts as learned for each of its
    /// ClusterNetworkPolicy domainNames rules whose patterns match NAME (repeatable).
    #[arg(long, value_name = "NAME=ADDR")]
    pub(crate) resolved: Vec<String>,
    /// Text, or JSON with the same content.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) output: OutputFormat,
    /// Write to FILE instead of stdout (`-`), as `compile --output-file`.
    #[arg(long, value_name = "FILE")]
    pub(crate) output_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) read: InputArgs,
    #[command(flatten)]
    pub(crate) budget: BudgetArgs,
    #[arg(required = true, value_name = "INPUT")]
    pub(crate) inputs: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct DiffArgs {
    /// The state before: files or directories (their *.yaml, *.yml, *.json).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub(crate) before: Vec<String>,
    /// The state after.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub(crate) after: Vec<String>,
    /// Files both states share (`kubectl get ns,pods -A -o yaml`).
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub(crate) cluster: Vec<String>,
    /// Exit 1 on these changes only: closed, opened or any.
    #[arg(long, value_enum, default_value_t = FailOn::Any)]
    pub(crate) fail_on: FailOn,
    /// Text, JSON ({"changes": [...]}) for tools, or Graphviz (dot).
    #[arg(long, short, value_enum, default_value_t = DiffFormat::Text)]
    pub(crate) output: DiffFormat,
    /// Write to FILE instead of stdout (`-`), as `compile --output-file`.
    #[arg(long, value_name = "FILE")]
    pub(crate) output_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) read: InputArgs,
    #[command(flatten)]
    pub(crate) budget: BudgetArgs,
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// The records: a file of JSON log lines, or `-` for stdin.
    #[arg(long, required = true, value_name = "FILE")]
    pub(crate) records: String,
    /// Exit 1 on these changes only: closed, opened or any.
    #[arg(long, value_enum, default_value_t = FailOn::Any)]
    pub(crate) fail_on: FailOn,
    /// Text, or JSON ({"changes": [...], "unjudged": [...]}).
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) output: OutputFormat,
    /// Write to FILE instead of stdout (`-`), as `compile --output-file`.
    #[arg(long, value_name = "FILE")]
    pub(crate) output_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) read: InputArgs,
    /// The state: files or directories, as for `diff`.
    #[arg(required = true, value_name = "INPUT")]
    pub(crate) inputs: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct SynthArgs {
    #[arg(long, default_value_t = 10_000)]
    pub(crate) pods: usize,
    #[arg(long, default_value_t = 1_000)]
    pub(crate) policies: usize,
    #[arg(long, default_value_t = 100)]
    pub(crate) pods_per_node: usize,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

#[derive(clap::Args)]
pub(crate) struct GraphArgs {
    #[arg(long, value_name = "NAME")]
    pub(crate) node: Option<String>,
    /// Text, JSON with the same content, or Graphviz (dot: pods treated alike and
    /// outside CIDRs as nodes, allowed protocols and ports as edges; whole cluster).
    #[arg(long, short, value_enum, default_value_t = DiffFormat::Text)]
    pub(crate) output: DiffFormat,
    /// A pod resolved NAME and got ADDR: each ClusterNetworkPolicy domainNames rule whose
    /// patterns match NAME lists ADDR, learned from NAME (repeatable; as explain's).
    #[arg(long, value_name = "NAME=ADDR")]
    pub(crate) resolved: Vec<String>,
    /// List, under each domainNames rule, the addresses this node's kernel holds in its
    /// learned sets (table inet nftpol) and the time each has left; the kernel keeps no
    /// names. Run as root on the node --node names.
    #[cfg(feature = "netlink")]
    #[arg(long, requires = "node", conflicts_with = "resolved")]
    pub(crate) learned: bool,
    /// Write to FILE instead of stdout (`-`), as `compile --output-file`.
    #[arg(long, value_name = "FILE")]
    pub(crate) output_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) read: InputArgs,
    #[command(flatten)]
    pub(crate) budget: BudgetArgs,
    #[arg(required = true, value_name = "INPUT")]
    pub(crate) inputs: Vec<String>,
}

/// How input files are read: the same flags for `compile`, `explain` and `graph`.
#[derive(clap::Args)]
pub(crate) struct InputArgs {
    /// The namespace of namespaced objects that give none (as kubectl's).
    #[arg(long, short = 'n', value_name = "NS")]
    pub(crate) namespace: Option<String>,
    /// strict: an unknown NetworkPolicy field, or a near miss of a kind or apiVersion
    /// nftpol reads, is an error (exit 2); warn: a warning (as kubectl's --validate).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ValidateArg::Strict)]
    pub(crate) validate: ValidateArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ValidateArg {
    Strict,
    Warn,
}

impl InputArgs {
    pub(crate) fn options(&self) -> input::ParseOptions {
        input::ParseOptions {
            namespace: self.namespace.clone(),
            validate: match self.validate {
                ValidateArg::Strict => input::Validate::Strict,
                ValidateArg::Warn => input::Validate::Warn,
            },
        }
    }
}

/// Verdict logs (NFLOG): the same flags for `compile` and `run`, so the script equals
/// what the controller programs.
#[derive(clap::Args)]
pub(crate) struct LogArgs {
    /// Send the first packet of each denied connection to the NFLOG group
    /// (`--log-denied=false` to turn off).
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub(crate) log_denied: bool,
    /// Also send the first packet of every allowed connection (not rate limited).
    #[arg(long)]
    pub(crate) log_allowed: bool,
    /// Denied records per second, per pod and direction, after the burst.
    #[arg(long, value_name = "N", default_value_t = nftpol::ruleset::LogOptions::DEFAULT.rate, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) log_rate: u32,
    /// Denied records a pod and direction may send at once before the rate applies.
    #[arg(long, value_name = "N", default_value_t = nftpol::ruleset::LogOptions::DEFAULT.burst, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) log_burst: u32,
    /// The NFLOG group the rules log to (and the controller reads).
    #[arg(long, value_name = "N", default_value_t = nftpol::ruleset::LogOptions::DEFAULT.group)]
    pub(crate) log_group: u16,
}

impl LogArgs {
    pub(crate) fn options(&self) -> nftpol::ruleset::LogOptions {
        nftpol::ruleset::LogOptions {
            denied: self.log_denied,
            allowed: self.log_allowed,
            rate: self.log_rate,
            burst: self.log_burst,
            group: self.log_group,
        }
    }
}

#[cfg(feature = "controller")]
#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// This node's name (the pods whose spec.nodeName it is get enforced here).
    #[arg(long, env = "NODE_NAME")]
    pub(crate) node_name: String,
    /// Kubeconfig file; default: in-cluster configuration, then $KUBECONFIG, then ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Address for /healthz, /readyz and /metrics (port 0: any free port; the address
    /// bound is logged at start, in the "serving /healthz /readyz /metrics" line).
    #[arg(long, default_value = "0.0.0.0:9309")]
    pub(crate) metrics_addr: std::net::SocketAddr,
    /// How long to gather watch events into one kernel batch.
    #[arg(long, default_value_t = 20)]
    pub(crate) coalesce_ms: u64,
    /// How often to read the live table back and repair drift.
    #[arg(long, default_value_t = 300)]
    pub(crate) resync_seconds: u64,
    /// Drop traffic to and from addresses in this node's pod CIDRs that are not yet known
    /// as pods, until their rules are in place. The CIDRs are --pod-cidr, else the Node
    /// object's spec.podCIDRs.
    #[arg(long)]
    pub(crate) default_deny_unknown: bool,
    /// This node's pod CIDR (repeat for dual-stack), for --default-deny-unknown; overrides
    /// the Node object's spec.podCIDRs.
    #[arg(long, value_name = "CIDR")]
    pub(crate) pod_cidr: Vec<ipnet::IpNet>,
    /// /healthz fails when the sync loop has made no progress for this long.
    #[arg(long, default_value_t = 60)]
    pub(crate) liveness_timeout_seconds: u64,
    /// Leave established connections alone when policy revokes them (by default their
    /// conntrack entries are deleted after each batch, so revoked access ends at once).
    #[arg(long)]
    pub(crate) keep_established: bool,
    /// Count which rules carry traffic: per-rule connection counts
    /// (`nftpol_rule_connections_total`) and default-deny counts
    /// (`nftpol_policy_denied_connections_total`), of NetworkPolicy and
    /// ClusterNetworkPolicy rules, from a counter on each allow set's and tier set's
    /// elements and `counter drop` at the end of isolated pod chains. Off by default: the
    /// counter reads around each batch make a 10,000-pod node's batches about 4x slower
    /// (docs/benchmarks.md).
    #[arg(long)]
    pub(crate) counters: bool,
    #[command(flatten)]
    pub(crate) dns: DnsSteerArgs,
    /// The shortest time a learned address is held, whatever the answer's TTL: clients
    /// cache answers longer than their TTLs.
    #[arg(long, value_name = "SECONDS", default_value_t = nftpol::fqdn::Ttl::DEFAULT_MIN)]
    pub(crate) dns_min_ttl: u32,
    /// The routing table of the `local` default route that delivers steered DNS (the
    /// packets with --dns-proxy-mark) to the proxy.
    #[arg(long, value_name = "ID", default_value_t = 9353)]
    pub(crate) dns_route_table: u32,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(flatten)]
    pub(crate) budget: BudgetArgs,
    /// Program the nftables of this network namespace (a path like /run/netns/NAME)
    /// instead of the controller's own; for tests.
    #[arg(long, hide = true)]
    pub(crate) netns: Option<PathBuf>,
}

/// The DNS proxy's steering rules (ClusterNetworkPolicy `domainNames`): the same flags
/// for `compile` and `run`, as they shape the script.
#[derive(clap::Args)]
pub(crate) struct DnsSteerArgs {
    /// Run no DNS proxy and steer no DNS: `domainNames` rules then admit nothing.
    #[arg(long)]
    pub(crate) no_dns_proxy: bool,
    /// The DNS proxy's port on the node, UDP and TCP (`tproxy to :PORT`).
    #[arg(long, value_name = "PORT", default_value_t = 9353)]
    pub(crate) dns_proxy_port: u16,
    /// The packet mark bit of steered DNS, decimal or 0x-hex; pick one no other
    /// component of the node uses.
    #[arg(long, value_name = "MARK", default_value = "0x200000", value_parser = parse_mark)]
    pub(crate) dns_proxy_mark: u32,
    /// A DNS server whose answers teach `domainNames` rules their addresses (repeatable):
    /// the cluster DNS Service's ClusterIP. Only queries addressed to one are steered
    /// through the proxy (matched before kube-proxy's DNAT): a pod chooses where its
    /// queries go, and a server of its choosing teaches nothing. Without one, nothing is.
    #[arg(long, value_name = "CIDR")]
    pub(crate) dns_server: Vec<ipnet::IpNet>,
}

impl DnsSteerArgs {
    pub(crate) fn steering(&self) -> Option<nftpol::ruleset::DnsSteering> {
        (!self.no_dns_proxy).then(|| nftpol::ruleset::DnsSteering {
            servers: self.dns_server.clone(),
            proxy_port: self.dns_proxy_port,
            mark: self.dns_proxy_mark,
            ..Default::default()
        })
    }
}

fn parse_mark(s: &str) -> Result<u32, String> {
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?} is not a mark (decimal or 0x-hex u32): {e}"))?;
    if n == 0 {
        return Err("the mark must have a bit set".into());
    }
    Ok(n)
}

#[derive(clap::Args)]
pub(crate) struct BudgetArgs {
    /// The most set elements one NetworkPolicy may come to on this node (for each
    /// distinct rule peer, its address ranges plus its port ranges); a policy over it is
    /// enforced fail-closed (`run`) or refused (`compile`, `explain`, `graph`: exit 2).
    /// 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 500_000)]
    pub(crate) max_elements: usize,
}

impl BudgetArgs {
    pub(crate) fn max_elements(&self) -> Option<usize> {
        (self.max_elements != 0).then_some(self.max_elements)
    }

    /// For `explain` and `graph`, which judge by the graph: a policy over the budget is
    /// refused there too, rather than explained as allowing what the node would not.
    pub(crate) fn options(&self) -> nftpol::ruleset::Options {
        nftpol::ruleset::Options {
            max_elements: self.max_elements(),
            ..Default::default()
        }
    }
}
