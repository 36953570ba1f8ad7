//! What each subcommand does: read the inputs, call the library, write the output, and
//! turn problems into exit statuses (2 for bad input, [`Exit`] for a status that is no
//! error). The flags are `cli_args`'s; the output's plumbing is `cli_output`'s.

use std::io::Read;

use nftpol::fqdn::facts::Listing;
use nftpol::graph::{PolicyGraph, WithLearned};
use nftpol::{explain, index::Index, input, script};

use crate::cli_args::*;
use crate::cli_output;

pub(crate) fn compile(a: CompileArgs) -> anyhow::Result<()> {
    let ScriptFormat::Nft = a.output;
    let index = load(&a.inputs, &a.read)?;
    let options = nftpol::ruleset::Options {
        pod_cidrs: if a.default_deny_unknown {
            a.pod_cidr
        } else {
            Vec::new()
        },
        log: a.log.options(),
        max_elements: a.budget.max_elements(),
        counters: a.counters,
        dns: a.dns.steering(),
        ..Default::default()
    };
    warn_if_no_pod_on(
        &index,
        a.node.as_deref(),
        "the script has no pod chains, and loading it removes all enforcement on that node",
    );
    let graph = PolicyGraph::build_for(&index, a.node.as_deref());
    check_budget(&graph, &options)?;
    let ruleset = nftpol::ruleset::build_with(&graph, &options);
    let text = script::render(&ruleset);
    cli_output::emit(a.output_file.as_deref(), text.as_bytes())
}

pub(crate) fn explain(a: ExplainArgs) -> anyhow::Result<()> {
    let index = load(&a.inputs, &a.read)?;
    let graph = PolicyGraph::build(&index);
    check_budget(&graph, &a.budget.options())?;
    let family = a.family.map(|f| match f {
        FamilyArg::Ipv4 => explain::Family::V4,
        FamilyArg::Ipv6 => explain::Family::V6,
    });
    let query = explain_query(&a.from, &a.to, &a.port, family)?;
    let resolved = parse_resolved(&a.resolved)?;
    let e = explain::explain_resolved(&index, &graph, &query, &resolved).map_err(explain_usage)?;
    let text = match a.output {
        OutputFormat::Text => e.to_string(),
        OutputFormat::Json => serde_json::to_string_pretty(&e)? + "\n",
    };
    cli_output::emit(a.output_file.as_deref(), text.as_bytes())
}

pub(crate) fn synth(a: SynthArgs) -> anyhow::Result<()> {
    let params = nftpol::synth::Params {
        pods: a.pods,
        policies: a.policies,
        pods_per_node: a.pods_per_node,
        seed: a.seed,
    };
    cli_output::to_stdout(|out| {
        for obj in nftpol::synth::cluster(&params) {
            serde_json::to_writer(&mut *out, &obj)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })
}

pub(crate) fn graph(a: GraphArgs) -> anyhow::Result<()> {
    let index = load(&a.inputs, &a.read)?;
    warn_if_no_pod_on(&index, a.node.as_deref(), "the graph has no pods");
    let graph = PolicyGraph::build_for(&index, a.node.as_deref());
    check_budget(&graph, &a.budget.options())?;
    if let (DiffFormat::Dot, Some(flag)) = (a.output, learned_flag(&a)) {
        return Err(usage(
            "--output dot",
            format!("draws no domainNames rules; it takes no {flag}"),
        )
        .into());
    }
    let learned = graph_learned(&a, &graph)?;
    let text = match a.output {
        DiffFormat::Text => match &learned {
            Some(learned) => WithLearned {
                graph: &graph,
                learned,
            }
            .to_string(),
            None => graph.to_string(),
        },
        DiffFormat::Json => nftpol::graph_json::render_with(&graph, learned.as_ref()),
        DiffFormat::Dot if a.node.is_some() => {
            return Err(usage(
                "--output dot",
                "draws the whole cluster; it takes no --node",
            )
            .into())
        }
        DiffFormat::Dot => nftpol::change::allowed(&index, &graph).to_dot_allowed(),
    };
    cli_output::emit(a.output_file.as_deref(), text.as_bytes())
}

/// The flag that asks `graph` for the addresses of the domainNames rules, if one does.
fn learned_flag(a: &GraphArgs) -> Option<&'static str> {
    #[cfg(feature = "netlink")]
    if a.learned {
        return Some("--learned");
    }
    (!a.resolved.is_empty()).then_some("--resolved")
}

/// What `graph` lists under each domainNames rule: the `--resolved` facts, or
/// (`--learned`) what this node's kernel holds; `None` without either.
fn graph_learned(a: &GraphArgs, graph: &PolicyGraph) -> anyhow::Result<Option<Listing>> {
    #[cfg(feature = "netlink")]
    if a.learned {
        return kernel_learned(graph).map(Some);
    }
    if a.resolved.is_empty() {
        return Ok(None);
    }
    let resolved = parse_resolved(&a.resolved)?;
    let facts = explain::domains::learned_in(graph, &resolved);
    Ok(Some(Listing::resolved(&facts)))
}

/// `graph --learned`: the learned sets of the graph's domainNames rules as the kernel of
/// this network namespace holds them, in table `inet nftpol`.
#[cfg(feature = "netlink")]
fn kernel_learned(graph: &PolicyGraph) -> anyhow::Result<Listing> {
    use anyhow::Context;
    let table = nftpol::ruleset::names::TABLE;
    let rules = nftpol::graph::domains::in_graph(graph);
    let listing = nftpol::netlink::Backend::open()
        .and_then(|mut b| b.learned_listing(table, &rules))
        .with_context(|| {
            format!("--learned: reading the learned sets of table inet {table} (needs root, on the node)")
        })?;
    listing.ok_or_else(|| {
        anyhow::anyhow!("--learned: there is no table inet {table} here: no controller programs this node's network namespace")
    })
}

/// `--resolved NAME=ADDR` values (`explain`, `graph`); a bad one is a usage error naming
/// the flag.
pub(crate) fn parse_resolved(
    values: &[String],
) -> Result<Vec<explain::domains::Resolution>, BadInput> {
    values
        .iter()
        .map(|r| explain::domains::Resolution::parse(r).map_err(|e| usage("--resolved", e)))
        .collect()
}

#[cfg(feature = "controller")]
pub(crate) fn run_controller(args: RunArgs) -> anyhow::Result<()> {
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
        let dns = dns_config(&args);
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
                max_elements: args.budget.max_elements(),
                counters: args.counters,
                dns: args.dns.steering(),
                ..Default::default()
            },
            pod_cidrs_from_node,
            liveness: std::time::Duration::from_secs(args.liveness_timeout_seconds),
            discovery_every: std::time::Duration::from_secs(30),
            board: None,
            metrics_listener: None,
            dns,
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

/// The DNS proxy `run` starts, unless `--no-dns-proxy`.
#[cfg(feature = "controller")]
fn dns_config(args: &RunArgs) -> Option<nftpol::controller::dns_node::DnsConfig> {
    let steering = args.dns.steering()?;
    if steering.servers.is_empty() {
        tracing::warn!("no --dns-server: the DNS proxy learns from no answer, so domainNames rules admit nothing");
    }
    Some(nftpol::controller::dns_node::DnsConfig {
        steering,
        ttl: nftpol::fqdn::Ttl {
            min: args.dns_min_ttl,
            max: nftpol::fqdn::Ttl::DEFAULT_MAX,
        },
        route_table: args.dns_route_table,
    })
}

/// `--max-elements`: the same flag for `compile` and `run`.
/// Refuses a NetworkPolicy over `--max-elements` on the node, naming the first one (by
/// name) that the controller would enforce fail-closed.
pub(crate) fn check_budget(
    graph: &PolicyGraph,
    options: &nftpol::ruleset::Options,
) -> anyhow::Result<()> {
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
pub(crate) struct BadInput(pub(crate) nftpol::Error);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BadInput {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// `--from`, `--to` and `--port` read as an `explain` query; a problem names its flag.
pub(crate) fn explain_query(
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
pub(crate) fn explain_usage(e: explain::ExplainError) -> BadInput {
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

pub(crate) fn usage(flag: &str, problem: impl std::fmt::Display) -> BadInput {
    BadInput(nftpol::Error::Usage {
        what: flag.into(),
        problem: problem.to_string(),
    })
}

/// An exit status that is no error (`diff`'s 1: there are changes): nothing is printed.
#[derive(Debug)]
pub(crate) struct Exit(pub(crate) u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

pub(crate) fn load(inputs: &[String], read: &InputArgs) -> anyhow::Result<Index> {
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
pub(crate) fn warn_if_no_pod_on(index: &Index, node: Option<&str>, what: &str) {
    let Some(node) = node else { return };
    if !index.pods().any(|p| p.node.as_deref() == Some(node)) {
        tracing::warn!(node = %node, "no pod has spec.nodeName {node}: {what}");
    }
}
