//! The `nftpol` command: parses arguments and runs one subcommand. Everything it does is
//! in the library; this file only wires input, output and exit status.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
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
#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
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
        /// Write the script to FILE (whole, or not at all) instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
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
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        #[command(flatten)]
        read: InputArgs,
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
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        #[command(flatten)]
        read: InputArgs,
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
    /// Address for /healthz, /readyz and /metrics.
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
    /// Program the nftables of this network namespace (a path like /run/netns/NAME)
    /// instead of the controller's own; for tests.
    #[arg(long, hide = true)]
    netns: Option<PathBuf>,
}

#[cfg(feature = "controller")]
fn run_controller(args: RunArgs) -> anyhow::Result<()> {
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
            },
            pod_cidrs_from_node,
            liveness: std::time::Duration::from_secs(args.liveness_timeout_seconds),
            discovery_every: std::time::Duration::from_secs(30),
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

/// Bad input: exit status 2.
#[derive(Debug)]
struct BadInput(nftpol::Error);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BadInput {}

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
    Ok(index)
}

/// Writes `data` to `path` whole or not at all: a temporary file beside it, then rename.
fn write_whole(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .context("output path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.nftpol-{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compile {
            node,
            output,
            default_deny_unknown,
            pod_cidr,
            log,
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
            };
            let graph = PolicyGraph::build_for(&index, node.as_deref());
            let ruleset = nftpol::ruleset::build_with(&graph, &options);
            let text = script::render(&ruleset);
            match output {
                Some(path) => write_whole(&path, text.as_bytes())?,
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
        }
        Command::Explain {
            from,
            to,
            port,
            family,
            output,
            read,
            inputs,
        } => {
            let index = load(&inputs, &read)?;
            let graph = PolicyGraph::build(&index);
            let family = family.map(|f| match f {
                FamilyArg::Ipv4 => explain::Family::V4,
                FamilyArg::Ipv6 => explain::Family::V6,
            });
            let e =
                explain::explain_in(&index, &graph, &from, &to, &port, family).map_err(BadInput)?;
            match output {
                OutputFormat::Text => print!("{e}"),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&e)?),
            }
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
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for obj in nftpol::synth::cluster(&params) {
                serde_json::to_writer(&mut out, &obj)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        Command::Graph {
            node,
            output,
            read,
            inputs,
        } => {
            let index = load(&inputs, &read)?;
            let graph = PolicyGraph::build_for(&index, node.as_deref());
            match output {
                OutputFormat::Text => print!("{graph}"),
                OutputFormat::Json => print!("{}", nftpol::graph_json::render(&graph)),
            }
        }
    }
    Ok(())
}

/// Colour codes only on a terminal, and never when `NO_COLOR` is set to anything but the
/// empty string (<https://no-color.org>): logs piped to a file or CI stay plain text.
fn use_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
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
        LogFormat::Text => builder.without_time().with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let bad_input = e.downcast_ref::<BadInput>().is_some();
            eprintln!("nftpol: error: {e:#}");
            ExitCode::from(if bad_input { 2 } else { 1 })
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
