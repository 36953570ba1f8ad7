//! The `nftpol` command: parses arguments and runs one subcommand. Everything it does is
//! in the library; this file only wires input, output and exit status.

mod cli_output;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use nftpol::{explain, graph::PolicyGraph, index::Index, input, script};

#[derive(Parser)]
#[command(
    name = "nftpol",
    version,
    about = "Kubernetes NetworkPolicy compiled to nftables"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// What `explain` and `graph` print: text for people, JSON (same content) for tools.
/// `-o/--output` is a format in every command, as in kubectl; the file is `--output-file`.
#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

/// What `compile` prints: an `nft -f` script (the one format so far).
#[derive(Clone, Copy, ValueEnum)]
enum ScriptFormat {
    Nft,
}

#[derive(Clone, Copy, ValueEnum)]
enum FamilyArg {
    Ipv4,
    Ipv6,
}

#[derive(Subcommand)]
enum Command {
    /// Compile policies and cluster state into an `nft -f` script.
    Compile {
        /// Only the pods whose spec.nodeName is NAME (peers still span the cluster).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = ScriptFormat::Nft)]
        output: ScriptFormat,
        /// Write to FILE instead of stdout (`-`): a regular file is replaced whole or not
        /// at all and keeps its mode, a symlink is followed, a device is written to.
        #[arg(long, value_name = "FILE")]
        output_file: Option<PathBuf>,
        /// As the controller's flag: drop traffic of addresses in --pod-cidr that are not
        /// known pods.
        #[arg(long, requires = "pod_cidr")]
        default_deny_unknown: bool,
        /// The node's pod CIDR (repeatable), for --default-deny-unknown.
        #[arg(long, value_name = "CIDR")]
        pod_cidr: Vec<ipnet::IpNet>,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        budget: BudgetArgs,
        #[command(flatten)]
        read: InputArgs,
        /// YAML or JSON files (`kubectl get ns,pods,netpol -A -o yaml`), `-` for stdin.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<String>,
    },
    /// Say whether a connection is allowed, and which policies and rules decide it.
    Explain {
        /// Client: `ns/pod` or an IP address.
        #[arg(long)]
        from: String,
        /// Server: `ns/pod` or an IP address.
        #[arg(long)]
        to: String,
        /// PROTO/PORT, like tcp/80, udp/53, sctp/81.
        #[arg(long)]
        port: String,
        /// Address family when both sides are pods (default: IPv4 when both have it).
        #[arg(long, value_enum)]
        family: Option<FamilyArg>,
        /// Text, or JSON with the same content.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// Write to FILE instead of stdout (`-`), as `compile --output-file`.
        #[arg(long, value_name = "FILE")]
        output_file: Option<PathBuf>,
        #[command(flatten)]
        read: InputArgs,
        #[command(flatten)]
        budget: BudgetArgs,
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<String>,
    },
    /// Run the controller: watch the cluster and program this node's nftables.
    #[cfg(feature = "controller")]
    Run(RunArgs),
    /// Print a synthetic cluster (JSON, one object per line) for benchmarks.
    #[command(hide = true)]
    Synth {
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        #[arg(long, default_value_t = 1_000)]
        policies: usize,
        #[arg(long, default_value_t = 100)]
        pods_per_node: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print the policy graph: isolation and allowed peers of every pod, with origins.
    Graph {
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// Text, or JSON with the same content.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// Write to FILE instead of stdout (`-`), as `compile --output-file`.
        #[arg(long, value_name = "FILE")]
        output_file: Option<PathBuf>,
        #[command(flatten)]
        read: InputArgs,
        #[command(flatten)]
        budget: BudgetArgs,
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<String>,
    },
}

/// How input files are read: the same flags for `compile`, `explain` and `graph`.
#[derive(clap::Args)]
struct InputArgs {
    /// The namespace of namespaced objects that give none (as kubectl's).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    /// strict: an unknown NetworkPolicy field, or a near miss of a kind or apiVersion
    /// nftpol reads, is an error (exit 2); warn: a warning (as kubectl's --validate).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ValidateArg::Strict)]
    validate: ValidateArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ValidateArg {
    Strict,
    Warn,
}

impl InputArgs {
    fn options(&self) -> input::ParseOptions {
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
struct LogArgs {
    /// Send the first packet of each denied connection to the NFLOG group
    /// (`--log-denied=false` to turn off).
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    log_denied: bool,
    /// Also send the first packet of every allowed connection (not rate limited).
    #[arg(long)]
    log_allowed: bool,
    /// Denied records per second, per pod and direction, after the burst.
    #[arg(long, value_name = "N", default_value_t = nftpol::ruleset::LogOptions::DEFAULT.rate, value_parser = clap::value_parser!(u32).range(1..))]
    log_rate: u32,
    /// Denied records a pod and direction may send at once before the rate applies.
    #[arg(long, value_name = "N", default_value_t = nftpol::ruleset::LogOptions::DEFAULT.burst, value_parser = clap::value_parser!(u32).range(1..))]
    log_burst: u32,
    /// The NFLOG group the rules log to (and the controller reads).
    #[arg(long, value_name = "N", default_value_t = nftpol::ruleset::LogOptions::DEFAULT.group)]
    log_group: u16,
}

impl LogArgs {
    fn options(&self) -> nftpol::ruleset::LogOptions {
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
struct RunArgs {
    /// This node's name (the pods whose spec.nodeName it is get enforced here).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Kubeconfig file; default: in-cluster configuration, then $KUBECONFIG, then ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Address for /healthz, /readyz and /metrics (port 0: any free port; the address
    /// bound is logged at start, in the "serving /healthz /readyz /metrics" line).
    #[arg(long, default_value = "0.0.0.0:9309")]
    metrics_addr: std::net::SocketAddr,
    /// How long to gather watch events into one kernel batch.
    #[arg(long, default_value_t = 20)]
    coalesce_ms: u64,
    /// How often to read the live table back and repair drift.
    #[arg(long, default_value_t = 300)]
    resync_seconds: u64,
    /// Drop traffic to and from addresses in this node's pod CIDRs that are not yet known
    /// as pods, until their rules are in place. The CIDRs are --pod-cidr, else the Node
    /// object's spec.podCIDRs.
    #[arg(long)]
    default_deny_unknown: bool,
    /// This node's pod CIDR (repeat for dual-stack), for --default-deny-unknown; overrides
    /// the Node object's spec.podCIDRs.
    #[arg(long, value_name = "CIDR")]
    pod_cidr: Vec<ipnet::IpNet>,
    /// /healthz fails when the sync loop has made no progress for this long.
    #[arg(long, default_value_t = 60)]
    liveness_timeout_seconds: u64,
    /// Leave established connections alone when policy revokes them (by default their
    /// conntrack entries are deleted after each batch, so revoked access ends at once).
    #[arg(long)]
    keep_established: bool,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    budget: BudgetArgs,
    /// Program the nftables of this network namespace (a path like /run/netns/NAME)
    /// instead of the controller's own; for tests.
    #[arg(long, hide = true)]
    netns: Option<PathBuf>,
}

#[cfg(feature = "controller")]
fn run_controller(args: RunArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use nftpol::controller::{self, dataplane::NetlinkDataplane};
    match nftpol::host::ensure_br_netfilter() {
        nftpol::host::BrNetfilter::Enabled => {
            tracing::info!("br_netfilter is on: bridged pod traffic is filtered")
        }
        nftpol::host::BrNetfilter::Disabled(why) => tracing::error!("{why}"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let kube_config = match &args.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(
                    kc,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await?
            }
            None => kube::Config::infer().await?,
        };
        let client = kube::Client::try_from(kube_config)?;
        let pod_cidrs_from_node = args.default_deny_unknown && args.pod_cidr.is_empty();
        let config = controller::Config {
            node: args.node_name,
            metrics_addr: args.metrics_addr,
            metrics_listener: None,
            coalesce: std::time::Duration::from_millis(args.coalesce_ms),
            resync: std::time::Duration::from_secs(args.resync_seconds),
            netns: args.netns,
            keep_established: args.keep_established,
            options: nftpol::ruleset::Options {
                pod_cidrs: if args.default_deny_unknown {
                    args.pod_cidr
                } else {
                    Vec::new()
                },
                log: args.log.options(),
                max_elements: args.budget.max_elements(),
                ..Default::default()
            },
            pod_cidrs_from_node,
            liveness: std::time::Duration::from_secs(args.liveness_timeout_seconds),
            discovery_every: std::time::Duration::from_secs(30),
            board: None,
        };
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
            }
        };
        controller::run(config, client, NetlinkDataplane::open, shutdown).await?;
        anyhow::Ok(())
    })
}

/// `--max-elements`: the same flag for `compile` and `run`.
#[derive(clap::Args)]
struct BudgetArgs {
    /// The most set elements one NetworkPolicy may come to on this node (for each
    /// distinct rule peer, its address ranges plus its port ranges); a policy over it is
    /// enforced fail-closed (`run`) or refused (`compile`, `explain`, `graph`: exit 2).
    /// 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 500_000)]
    max_elements: usize,
}

impl BudgetArgs {
    fn max_elements(&self) -> Option<usize> {
        (self.max_elements != 0).then_some(self.max_elements)
    }

    /// For `explain` and `graph`, which judge by the graph: a policy over the budget is
    /// refused there too, rather than explained as allowing what the node would not.
    fn options(&self) -> nftpol::ruleset::Options {
        nftpol::ruleset::Options {
            max_elements: self.max_elements(),
            ..Default::default()
        }
    }
}

/// Refuses a NetworkPolicy over `--max-elements` on the node, naming the first one (by
/// name) that the controller would enforce fail-closed.
fn check_budget(graph: &PolicyGraph, options: &nftpol::ruleset::Options) -> anyhow::Result<()> {
    let over = nftpol::ruleset::over_budget(graph, options);
    let Some((policy, &elements)) = over.iter().next() else {
        return Ok(());
    };
    let (namespace, name) = policy.split_once('/').unwrap_or(("", policy));
    Err(BadInput(nftpol::Error::OverBudget {
        policy: Box::new(nftpol::error::ObjectRef {
            kind: "NetworkPolicy".into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }),
        elements,
        max: options.max_elements.unwrap_or(usize::MAX),
    })
    .into())
}

/// Bad input: exit status 2.
#[derive(Debug)]
struct BadInput(nftpol::Error);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BadInput {}

/// `--from`, `--to` and `--port` read as an `explain` query; a problem names its flag.
fn explain_query(
    from: &str,
    to: &str,
    port: &str,
    family: Option<explain::Family>,
) -> Result<explain::Query, BadInput> {
    let parsed = |flag: &str, text: &str| text.parse().map_err(|e| usage(flag, e));
    let (protocol, port) = explain::parse_port(port).map_err(|e| usage("--port", e))?;
    Ok(explain::Query {
        from: parsed("--from", from)?,
        to: parsed("--to", to)?,
        protocol,
        port,
        family,
    })
}

/// A question `explain` cannot answer, as a usage error naming the flag of the end it is
/// about.
fn explain_usage(e: explain::ExplainError) -> BadInput {
    use explain::{ExplainError, Which};
    let flag = match &e {
        ExplainError::NotAPort { .. } => "--port",
        ExplainError::End {
            which: Which::From, ..
        } => "--from",
        ExplainError::NotATarget { .. }
        | ExplainError::End { .. }
        | ExplainError::Families { .. } => "--to",
    };
    usage(flag, e)
}

fn usage(flag: &str, problem: impl std::fmt::Display) -> BadInput {
    BadInput(nftpol::Error::Usage {
        what: flag.into(),
        problem: problem.to_string(),
    })
}

fn load(inputs: &[String], read: &InputArgs) -> anyhow::Result<Index> {
    let options = read.options();
    if let Some(ns) = &options.namespace {
        nftpol::labels::check_dns_label(ns).map_err(|problem| {
            BadInput(nftpol::Error::Usage {
                what: "--namespace".into(),
                problem,
            })
        })?;
    }
    let mut objects = Vec::new();
    for path in inputs {
        let (bytes, name) = if path == "-" {
            let mut s = Vec::new();
            std::io::stdin().read_to_end(&mut s).map_err(|error| {
                BadInput(nftpol::Error::Read {
                    source_name: "<stdin>".into(),
                    error,
                })
            })?;
            (s, "<stdin>".to_string())
        } else {
            let s = std::fs::read(path).map_err(|error| {
                BadInput(nftpol::Error::Read {
                    source_name: path.clone(),
                    error,
                })
            })?;
            (s, path.clone())
        };
        objects.extend(input::parse_bytes(&bytes, &name, &options).map_err(BadInput)?);
    }
    if objects.is_empty() {
        tracing::warn!(inputs = %inputs.join(" "), "the input holds no Namespace, Pod or NetworkPolicy: nothing to compile, the table will be empty");
    }
    let index = Index::from_objects(objects).map_err(BadInput)?;
    for ns in index.implied_namespaces() {
        tracing::warn!(namespace = %ns, "namespace not in the input; assuming it exists with only the label kubernetes.io/metadata.name={ns}");
    }
    for (ip, pods) in explain::shared_addresses(&index) {
        let pods = pods.join(", ");
        tracing::warn!(address = %ip, pods = %pods, "address {ip} is held by more than one pod ({pods}): only one of them gets the traffic to it, and `explain` refuses it as ambiguous");
    }
    Ok(index)
}

/// `--node NAME` that no pod runs on gives an empty table: loaded, it removes all
/// enforcement on that node, which is worth a word (a typo, or the wrong cluster).
fn warn_if_no_pod_on(index: &Index, node: Option<&str>, what: &str) {
    let Some(node) = node else { return };
    if !index.pods().any(|p| p.node.as_deref() == Some(node)) {
        tracing::warn!(node = %node, "no pod has spec.nodeName {node}: {what}");
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compile {
            node,
            output: ScriptFormat::Nft,
            output_file,
            default_deny_unknown,
            pod_cidr,
            log,
            budget,
            read,
            inputs,
        } => {
            let index = load(&inputs, &read)?;
            let options = nftpol::ruleset::Options {
                pod_cidrs: if default_deny_unknown {
                    pod_cidr
                } else {
                    Vec::new()
                },
                log: log.options(),
                max_elements: budget.max_elements(),
                ..Default::default()
            };
            warn_if_no_pod_on(
                &index,
                node.as_deref(),
                "the script has no pod chains, and loading it removes all enforcement on that node",
            );
            let graph = PolicyGraph::build_for(&index, node.as_deref());
            check_budget(&graph, &options)?;
            let ruleset = nftpol::ruleset::build_with(&graph, &options);
            let text = script::render(&ruleset);
            cli_output::emit(output_file.as_deref(), text.as_bytes())?;
        }
        Command::Explain {
            from,
            to,
            port,
            family,
            output,
            output_file,
            read,
            budget,
            inputs,
        } => {
            let index = load(&inputs, &read)?;
            let graph = PolicyGraph::build(&index);
            check_budget(&graph, &budget.options())?;
            let family = family.map(|f| match f {
                FamilyArg::Ipv4 => explain::Family::V4,
                FamilyArg::Ipv6 => explain::Family::V6,
            });
            let query = explain_query(&from, &to, &port, family)?;
            let e = explain::explain_in(&index, &graph, &query).map_err(explain_usage)?;
            let text = match output {
                OutputFormat::Text => e.to_string(),
                OutputFormat::Json => serde_json::to_string_pretty(&e)? + "\n",
            };
            cli_output::emit(output_file.as_deref(), text.as_bytes())?;
        }
        #[cfg(feature = "controller")]
        Command::Run(args) => run_controller(args)?,
        Command::Synth {
            pods,
            policies,
            pods_per_node,
            seed,
        } => {
            let params = nftpol::synth::Params {
                pods,
                policies,
                pods_per_node,
                seed,
            };
            cli_output::to_stdout(|out| {
                for obj in nftpol::synth::cluster(&params) {
                    serde_json::to_writer(&mut *out, &obj)?;
                    out.write_all(b"\n")?;
                }
                Ok(())
            })?;
        }
        Command::Graph {
            node,
            output,
            output_file,
            read,
            budget,
            inputs,
        } => {
            let index = load(&inputs, &read)?;
            warn_if_no_pod_on(&index, node.as_deref(), "the graph has no pods");
            let graph = PolicyGraph::build_for(&index, node.as_deref());
            check_budget(&graph, &budget.options())?;
            let text = match output {
                OutputFormat::Text => graph.to_string(),
                OutputFormat::Json => nftpol::graph_json::render(&graph),
            };
            cli_output::emit(output_file.as_deref(), text.as_bytes())?;
        }
    }
    Ok(())
}

/// Colour codes only on a terminal, and never when `NO_COLOR` is set to anything but the
/// empty string (<https://no-color.org>): logs piped to a file or CI stay plain text.
fn use_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The text log's fields, with the control characters of object strings escaped (see
/// `nftpol::text`): a record stays one line whatever a name holds. (The JSON log is one
/// line already: JSON escapes them.)
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = nftpol::text::Escaped(&text);
        match field.name() {
            "message" => write!(w, "{text}"),
            name => write!(w, "{name}={text}"),
        }
    })
    .delimited(" ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => builder
            .without_time()
            .with_target(false)
            .fmt_fields(escaped_fields())
            .init(),
        LogFormat::Json => builder.json().init(),
    }
    let log_format = cli.log_format;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads on: end quietly, as a process SIGPIPE ended (see cli_output).
        Err(e) if e.is::<cli_output::StdoutClosed>() => {
            ExitCode::from(cli_output::STDOUT_CLOSED_STATUS)
        }
        Err(e) => {
            let status = if e.is::<BadInput>() { 2 } else { 1 };
            match log_format {
                // A closed stderr cannot be told either; never panic for it.
                LogFormat::Text => {
                    let text = format!("{e:#}");
                    let text = nftpol::text::Escaped(&text);
                    let _ = writeln!(std::io::stderr(), "nftpol: error: {text}");
                }
                LogFormat::Json => tracing::error!(exit_status = status, "{e:#}"),
            }
            ExitCode::from(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(
            use_colour(true, Some("".into())),
            "NO_COLOR empty counts as unset"
        );
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some("1".into())));
    }
}
