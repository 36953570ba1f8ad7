//! `bench datapath`: the new-connection rate through one node, in real namespaces with
//! real packets, under five configurations loaded in turn into the node's namespace:
//!
//! ```text
//! (a0) no ruleset                 (a) conntrack only: ct state established,related accept
//! (b) nftpol's ruleset (netlink)  (c) naive: one rule per (peer, port), clients' rules last
//! (b2) nftpol with --log-allowed: every connection logged to NFLOG, a reader draining it
//! (b3) nftpol with 200 ClusterNetworkPolicies (both tiers, mixed actions) beside the same
//!      NetworkPolicies: the server's ingress walks its Admin lookups before NetworkPolicy
//! (b4) nftpol --counters: the same ruleset with the per-rule traffic counters (a
//!      `counter` on the allow sets' elements, `counter drop`); (b4)/(b) is what counting costs
//! ```
//!
//! `--counters` runs only (a), (b) and (b4), for a closer look at that ratio.
//! (b5) nftpol with audited policies (`nftpol.io/mode: audit`): one selecting the server
//!      (every measured connection walks the audit chain after its allow) and every tenth
//!      generated policy; (b6) the same policies enforced. (b5)/(b6) is what auditing
//!      costs an audited pod's new connections (goal at least 0.95); `--audit` runs only
//!      (a), (b5) and (b6).
//! (b7) nftpol with the clients under a ClusterNetworkPolicy `domainNames` rule for the
//!      server's name (its address in the rule's learned set, as the DNS proxy puts it);
//!      (b8) the same rule naming the server's address. (b7)/(b8) is what a learned
//!      lookup costs; `--domains` runs only (a), (b7) and (b8).
//!
//! (b) has the default `--log-denied` rules, which an allowed connection never reaches;
//! (b2) is what verdict logging costs at most: every new connection is copied to the
//! group and read (the controller's reader also explains it; that is off the data path).
//!
//! Rounds interleave the five (rotating their order), each a fixed window of TCP connect
//! and close from the client pods to the server pod across the node's bridge; medians
//! are reported. The last line is `ratio=<median(b)/median(a)>`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nftpol::policy::Direction;
use nftpol::ruleset::eval::Packet;
use nftpol::ruleset::Ruleset;

use super::load::{self, Window};
use super::naive::{self, Naive};
use super::net::Net;
use super::scenario::{self, Scenario, PORT};
use super::stats::{median, range, ratio_text};
use super::traverse;
use crate::{conntrack, netns};

#[derive(clap::Args)]
pub struct Args {
    /// Policies in the cluster (50 of them select the server).
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Pods in the generated cluster (100 per node).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Rounds of the four configurations (medians over rounds).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Length of one measurement window.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Client pods (one connecting thread each), at least 2.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Tiny sizes, 2 short rounds: proves the benchmark still works (CI).
    #[arg(long)]
    smoke: bool,
    /// Only (a), (b5) and (b6): what audit mode costs, alone.
    #[arg(long, conflicts_with = "counters")]
    audit: bool,
    /// Only (a), (b) and (b4): what the traffic counters cost, alone.
    #[arg(long, conflicts_with = "domains")]
    counters: bool,
    /// Only (a), (b7) and (b8): what a `domainNames` rule costs, alone.
    #[arg(long, conflicts_with = "audit")]
    domains: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    None,
    Conntrack,
    Nftpol,
    Naive,
    NftpolLogged,
    NftpolTiers,
    NftpolCounted,
    NftpolAudited,
    NftpolAuditEnforced,
    NftpolDomain,
    NftpolDomainCidr,
}

const CONFIGS: [Config; 11] = [
    Config::None,
    Config::Conntrack,
    Config::Nftpol,
    Config::Naive,
    Config::NftpolLogged,
    Config::NftpolTiers,
    Config::NftpolCounted,
    Config::NftpolAudited,
    Config::NftpolAuditEnforced,
    Config::NftpolDomain,
    Config::NftpolDomainCidr,
];

/// ClusterNetworkPolicies of (b3).
const CLUSTER_POLICIES: usize = 200;

impl Config {
    fn tag(self) -> &'static str {
        match self {
            Config::None => "a0",
            Config::Conntrack => "a",
            Config::Nftpol => "b",
            Config::Naive => "c",
            Config::NftpolLogged => "b2",
            Config::NftpolTiers => "b3",
            Config::NftpolCounted => "b4",
            Config::NftpolAudited => "b5",
            Config::NftpolAuditEnforced => "b6",
            Config::NftpolDomain => "b7",
            Config::NftpolDomainCidr => "b8",
        }
    }

    fn enforces(self) -> bool {
        !matches!(self, Config::None | Config::Conntrack)
    }
}

const CONNTRACK_ONLY: &str = "flush ruleset
table inet bench-conntrack {
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t}
}
";

/// (b2)'s logging: every allowed connection, to its own group.
const LOGGED: nftpol::ruleset::LogOptions = nftpol::ruleset::LogOptions {
    allowed: true,
    group: 9310,
    ..nftpol::ruleset::LogOptions::DEFAULT
};

/// A thread in the node's namespace that binds (b2)'s group and reads every record, as
/// the controller's reader does (less the explaining, which is off the data path).
struct Drain {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<u64>>,
}

impl Drain {
    fn start(node: &str) -> Result<Drain> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = std::path::PathBuf::from(format!("/run/netns/{node}"));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || -> Result<u64> {
            nftpol::netlink::in_netns(&path, || -> Result<u64> {
                let mut nflog = nftpol::netlink::Nflog::open(LOGGED.group)
                    .context("binding the NFLOG group of (b2)")?;
                let _ = ready_tx.send(());
                let mut records = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    records += nflog.recv()?.packets.len() as u64;
                }
                Ok(records)
            })?
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        Ok(Drain { stop, thread })
    }

    /// Records read.
    fn stop(self) -> Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the NFLOG drain panicked"))?
    }
}

/// What the rounds compare, built once.
struct Setup {
    scenario: Scenario,
    model: Ruleset,
    /// `model` with `--log-allowed`.
    logged: Ruleset,
    /// The scenario with [`CLUSTER_POLICIES`] ClusterNetworkPolicies, and its model.
    tiered: Scenario,
    tiers: Ruleset,
    /// `model` with `--counters`.
    counted: Ruleset,
    /// (b5) and (b6): the scenario with audited policies, and the same enforced.
    audited: (Scenario, Ruleset),
    audit_enforced: (Scenario, Ruleset),
    /// (b7) and (b8): the clients under a `domainNames` rule, and under the same rule
    /// naming the server's address.
    domain: (Scenario, Ruleset),
    domain_cidr: (Scenario, Ruleset),
    naive: Naive,
    naive_script: String,
}

impl Setup {
    fn load(&self, net: &Net, config: Config) -> Result<Duration> {
        let t = Instant::now();
        match config {
            Config::None => netns::nft(&net.node, "flush ruleset\n")?,
            Config::Conntrack => netns::nft(&net.node, CONNTRACK_ONLY)?,
            Config::Nftpol
            | Config::NftpolLogged
            | Config::NftpolTiers
            | Config::NftpolCounted
            | Config::NftpolAudited
            | Config::NftpolAuditEnforced
            | Config::NftpolDomain
            | Config::NftpolDomainCidr => {
                let model = match config {
                    Config::Nftpol => &self.model,
                    Config::NftpolLogged => &self.logged,
                    Config::NftpolCounted => &self.counted,
                    Config::NftpolAudited => &self.audited.1,
                    Config::NftpolAuditEnforced => &self.audit_enforced.1,
                    Config::NftpolDomain => &self.domain.1,
                    Config::NftpolDomainCidr => &self.domain_cidr.1,
                    _ => &self.tiers,
                };
                netns::nft(&net.node, "flush ruleset\n")?;
                let t = Instant::now();
                let path = std::path::PathBuf::from(format!("/run/netns/{}", net.node));
                nftpol::netlink::in_netns(&path, || nftpol::netlink::full_sync(model))?
                    .context("netlink full sync of nftpol's ruleset")?;
                let took = t.elapsed();
                if config == Config::NftpolDomain {
                    self.learn_server(&path)?;
                }
                return Ok(took);
            }
            Config::Naive => {
                netns::nft(&net.node, &format!("flush ruleset\n{}", self.naive_script))?;
            }
        }
        Ok(t.elapsed())
    }
}

impl Setup {
    /// (b7): the server's address in the `domainNames` rule's learned set, as the DNS
    /// proxy puts it after an answer (an hour's timeout: longer than any run).
    fn learn_server(&self, netns: &std::path::Path) -> Result<()> {
        let elem = nftpol::netlink::LearnedElem {
            set: nftpol::ruleset::names::learned_set(scenario::DOMAIN_POLICY, 0, false),
            addr: self.scenario.server.into(),
            timeout: Duration::from_secs(3600),
        };
        nftpol::netlink::in_netns(netns, || {
            nftpol::netlink::Backend::open()?.learn(nftpol::ruleset::names::TABLE, &[elem])
        })?
        .context("(b7): adding the learned address")?;
        Ok(())
    }
}

fn packet(from: Ipv4Addr, to: Ipv4Addr) -> Packet {
    Packet {
        saddr: from.into(),
        daddr: to.into(),
        l4proto: 6,
        dport: PORT,
    }
}

fn elements(rs: &Ruleset) -> usize {
    rs.sets().iter().map(|s| s.elements.len()).sum::<usize>()
        + rs.maps().iter().map(|m| m.elements.len()).sum::<usize>()
}

/// Rules a client's first packet traverses in nftpol's ruleset, for `policies`.
fn nftpol_rules(s: &Scenario, rs: &Ruleset) -> Result<usize> {
    let mut most = 0;
    for c in &s.clients {
        let w = traverse::forward(rs, &packet(*c, s.server))?;
        if !w.accepted {
            bail!("nftpol's model does not accept client {c}");
        }
        most = most.max(w.rules);
    }
    if traverse::forward(rs, &packet(s.intruder, s.server))?.accepted {
        bail!("nftpol's model accepts the intruder");
    }
    Ok(most)
}

fn setup(pods: usize, policies: usize, clients: usize) -> Result<(Setup, String)> {
    let t = Instant::now();
    let scenario = scenario::build(pods, policies, clients);
    let (graph, model) = scenario.compile()?;
    let compile_s = t.elapsed().as_secs_f64();
    let server = graph
        .pod(scenario::NAMESPACE, "server")
        .and_then(|p| p.isolation(Direction::Ingress))
        .context("the server is not isolated")?;
    let naive = Naive::ingress(&graph, scenario.server, server, &scenario.pod_ips());
    let mut notes = String::new();
    let b_rules = nftpol_rules(&scenario, &model)?;
    // The same count with only the policies selecting the server: it must not grow.
    let reference = scenario::build(pods, scenario.selecting, clients);
    let (_, ref_model) = reference.compile()?;
    let b_ref = nftpol_rules(&reference, &ref_model)?;
    let mut c_rules = Vec::new();
    for c in &scenario.clients {
        let at = naive
            .first_match(*c, 6, PORT)
            .with_context(|| format!("the naive ruleset drops client {c}"))?;
        c_rules.push(naive::BEFORE + at);
    }
    if naive.first_match(scenario.intruder, 6, PORT).is_some() {
        bail!("the naive ruleset accepts the intruder");
    }
    let c_text = match (c_rules.iter().min(), c_rules.iter().max()) {
        (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
        (Some(a), _) => a.to_string(),
        _ => "?".into(),
    };
    use std::fmt::Write;
    let _ = writeln!(
        notes,
        "rules a new connection's first packet traverses (model; client -> server tcp/{PORT}):"
    );
    let _ = writeln!(
        notes,
        "  (b) nftpol: {b_rules} at N={policies}, {b_ref} at N={} (forward: ct, jump; dispatch up to the ingress vmap; pod chain up to the accepting lookup; an established packet: 1)",
        scenario.selecting
    );
    let _ = writeln!(
        notes,
        "  (c) naive:  {c_text} ({} forward rules + position of the client's rule among {} rules of the server's chain)",
        naive::BEFORE,
        naive.rules.len()
    );
    eprintln!(
        "cluster of {pods} pods and {policies} policies compiled in {compile_s:.1}s: node {} has {} generated pods + {} bench pods; {} set and map elements; naive chain {} rules",
        scenario.node,
        scenario.local_pods(),
        scenario.pods().len(),
        elements(&model),
        naive.rules.len()
    );
    let naive_script = naive.render();
    let tiered = scenario.with_cluster_policies(CLUSTER_POLICIES);
    let (tiered_graph, tiers) = tiered.compile()?;
    let tiered_server = tiered_graph
        .pod(scenario::NAMESPACE, "server")
        .context("the server pod")?;
    let _ = writeln!(
        notes,
        "  (b3) {CLUSTER_POLICIES} ClusterNetworkPolicies: {} Admin and {} Baseline tier entries on the server's ingress; rules walked {} (with 20 of them: {}; the tier lookups are at most 12 per family, whatever the count)",
        tiered_server.tiers.ingress.admin.rules.len(),
        tiered_server.tiers.ingress.baseline.rules.len(),
        nftpol_rules(&tiered, &tiers)?,
        {
            let one = scenario.with_cluster_policies(20);
            let (_, m) = one.compile()?;
            nftpol_rules(&one, &m)?
        }
    );
    let logged = nftpol::ruleset::build_with(
        &graph,
        &nftpol::ruleset::Options {
            log: LOGGED,
            ..Default::default()
        },
    );
    let counted = nftpol::ruleset::build_with(
        &graph,
        &nftpol::ruleset::Options {
            counters: true,
            ..Default::default()
        },
    );
    if model.sets().iter().any(|s| s.counter) || !counted.sets().iter().any(|s| s.counter) {
        bail!("(b4) must count and (b) must not");
    }
    let (audited, audit_enforced) = audit_configs(&scenario, &mut notes)?;
    let domain = scenario.with_domain_policy(true);
    let domain = (domain.clone(), domain.compile()?.1);
    let domain_cidr = scenario.with_domain_policy(false);
    let domain_cidr = (domain_cidr.clone(), domain_cidr.compile()?.1);
    Ok((
        Setup {
            scenario,
            model,
            logged,
            tiered,
            tiers,
            counted,
            audited,
            audit_enforced,
            domain,
            domain_cidr,
            naive,
            naive_script,
        },
        notes,
    ))
}

/// (b5) and (b6): the scenario with audited policies, and the same enforced; notes how
/// many of the node's pods have audit chains and the rules each walks.
fn audit_configs(
    scenario: &Scenario,
    notes: &mut String,
) -> Result<((Scenario, Ruleset), (Scenario, Ruleset))> {
    let audited = scenario.with_audit(true);
    let (graph, model) = audited.compile()?;
    let enforced = scenario.with_audit(false);
    let (_, enforced_model) = enforced.compile()?;
    let server = graph
        .pod(scenario::NAMESPACE, "server")
        .context("the server pod")?;
    if server.audited_in(Direction::Ingress).is_none() {
        bail!("(b5): the audited policy does not change the server");
    }
    let with_chains = graph.pods.values().filter(|p| p.audited.is_some()).count();
    use std::fmt::Write;
    let _ = writeln!(
        notes,
        "  (b5) audited: {with_chains} of the node's {} pods have audit chains; rules walked {} ((b6) enforced: {})",
        graph.pods.len(),
        nftpol_rules(&audited, &model)?,
        nftpol_rules(&enforced, &enforced_model)?
    );
    Ok(((audited, model), (enforced, enforced_model)))
}

/// Runs the benchmark; prints the table and, last, the `ratio=` line.
pub fn run(args: &Args, prefix: &str) -> Result<()> {
    let (pods, policies, rounds, seconds) = if args.smoke {
        (300, 60, 2, 0.5)
    } else {
        (args.pods, args.policies, args.rounds.max(1), args.seconds)
    };
    if !(0.05..=60.0).contains(&seconds) {
        bail!("--seconds must be between 0.05 and 60");
    }
    let clients = args.clients.clamp(2, scenario::MAX_CLIENTS);
    let (setup, notes) = setup(pods, policies, clients)?;
    let s = &setup.scenario;
    let net = Net::build(prefix, s.gateway(), &s.pods())?;
    let server_ns = net
        .pod_ns("server")
        .context("server namespace")?
        .to_string();
    let client_ns: Vec<&str> = (0..clients)
        .map(|i| {
            net.pod_ns(&format!("client-{i}"))
                .context("client namespace")
        })
        .collect::<Result<_>>()?;
    let intruder_ns = net.pod_ns("intruder").context("intruder namespace")?;
    let dst = SocketAddr::new(s.server.into(), PORT);
    let _server = load::serve(&server_ns, dst)?;

    // Warm-up (neighbour caches, code paths), not counted.
    setup.load(&net, Config::None)?;
    if !load::probe(client_ns[0], dst, Duration::from_secs(2))? {
        bail!("client-0 cannot reach the server with no ruleset: the network is broken");
    }
    load::run_window(&client_ns, dst, seconds.min(0.5))?;

    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    let mut load_ms: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    let mut failures = [0u64; CONFIGS.len()];
    let drain = Drain::start(&net.node)?;
    println!(
        "datapath: new TCP connections/s, {clients} client pods -> 1 server pod across one node's bridge (br_netfilter), {rounds} rounds x {seconds} s, configurations interleaved"
    );
    let active: Vec<usize> = if args.counters {
        vec![1, 2, 6]
    } else if args.audit {
        vec![1, 7, 8]
    } else if args.domains {
        vec![1, 9, 10]
    } else {
        (0..CONFIGS.len()).collect()
    };
    for round in 0..rounds {
        let mut line = format!("round {}:", round + 1);
        for k in 0..active.len() {
            let ci = active[(k + round) % active.len()];
            let config = CONFIGS[ci];
            let took = setup.load(&net, config)?;
            conntrack::flush(&net.node)?;
            if !load::probe(client_ns[0], dst, Duration::from_secs(1))? {
                bail!("({}) client-0 cannot connect to the server", config.tag());
            }
            if config.enforces() && load::probe(intruder_ns, dst, Duration::from_millis(300))? {
                bail!(
                    "({}) the intruder got through: the ruleset is not enforced",
                    config.tag()
                );
            }
            conntrack::flush(&net.node)?;
            let w: Window = load::run_window(&client_ns, dst, seconds)?;
            if w.connections == 0 {
                bail!("({}) no connection completed in the window", config.tag());
            }
            rates[ci].push(w.rate());
            load_ms[ci].push(took.as_secs_f64() * 1e3);
            failures[ci] += w.failures;
            line.push_str(&format!("  {}={:.0}", config.tag(), w.rate()));
        }
        println!("{line}");
    }
    setup.load(&net, Config::None)?;
    let logged = drain.stop()?;
    print_table(&setup, policies, &rates, &load_ms, &failures, &notes);
    println!("(b2) records read from the NFLOG group: {logged}");
    let per_round: Vec<f64> = rates[4].iter().zip(&rates[2]).map(|(l, b)| l / b).collect();
    println!(
        "per-round (b2)/(b): median {} (logging every allowed connection vs the default)",
        median(&per_round).map_or("n/a".into(), |r| format!("{r:.3}"))
    );
    let per_round: Vec<f64> = rates[6].iter().zip(&rates[2]).map(|(c, b)| c / b).collect();
    println!(
        "per-round (b4)/(b): median {}, overall median(b4)/median(b) {} (the traffic counters vs none; goal at least 0.97)",
        median(&per_round).map_or("n/a".into(), |r| format!("{r:.3}")),
        ratio_text(
            median(&rates[6]).unwrap_or(0.0),
            median(&rates[2]).unwrap_or(0.0)
        )
    );
    let per_round: Vec<f64> = rates[7].iter().zip(&rates[8]).map(|(a, e)| a / e).collect();
    println!(
        "per-round (b5)/(b6): median {}, overall median(b5)/median(b6) {} (audited policies vs the same enforced; goal at least 0.95)",
        median(&per_round).map_or("n/a".into(), |r| format!("{r:.3}")),
        ratio_text(
            median(&rates[7]).unwrap_or(0.0),
            median(&rates[8]).unwrap_or(0.0)
        )
    );
    let per_round: Vec<f64> = rates[9]
        .iter()
        .zip(&rates[10])
        .map(|(d, c)| d / c)
        .collect();
    println!(
        "per-round (b7)/(b8): median {}, overall median(b7)/median(b8) {} (a domainNames rule's learned lookup vs the same rule naming the address)",
        median(&per_round).map_or("n/a".into(), |r| format!("{r:.3}")),
        ratio_text(
            median(&rates[9]).unwrap_or(0.0),
            median(&rates[10]).unwrap_or(0.0)
        )
    );
    let per_round: Vec<f64> = rates[5].iter().zip(&rates[2]).map(|(t, b)| t / b).collect();
    let per_round_a: Vec<f64> = rates[5].iter().zip(&rates[1]).map(|(t, a)| t / a).collect();
    println!(
        "per-round (b3)/(b): median {}, (b3)/(a): median {} ({CLUSTER_POLICIES} ClusterNetworkPolicies beside the NetworkPolicies)",
        median(&per_round).map_or("n/a".into(), |r| format!("{r:.3}")),
        median(&per_round_a).map_or("n/a".into(), |r| format!("{r:.3}"))
    );
    println!(
        "ratio={}",
        ratio_text(
            median(&rates[2]).unwrap_or(0.0),
            median(&rates[1]).unwrap_or(0.0)
        )
    );
    Ok(())
}

/// The rules a connection's first packet walks, per config: none, the conntrack rule,
/// nftpol's, the naive ruleset's up to the last client's match, and nftpol's with logs
/// and with tiers.
fn rules_per_connection(setup: &Setup) -> [usize; CONFIGS.len()] {
    let s = &setup.scenario;
    let b_rules = nftpol_rules(s, &setup.model).unwrap_or(0);
    let c_last = s
        .clients
        .iter()
        .filter_map(|c| setup.naive.first_match(*c, 6, PORT))
        .max()
        .map_or(0, |i| i + naive::BEFORE);
    let b2_rules = nftpol_rules(s, &setup.logged).unwrap_or(0);
    let b3_rules = nftpol_rules(&setup.tiered, &setup.tiers).unwrap_or(0);
    let b4_rules = nftpol_rules(s, &setup.counted).unwrap_or(0);
    let (a, e) = (&setup.audited, &setup.audit_enforced);
    let b5_rules = nftpol_rules(&a.0, &a.1).unwrap_or(0);
    let b6_rules = nftpol_rules(&e.0, &e.1).unwrap_or(0);
    // The evaluator judges (b7) without learned facts: it would not accept; count the
    // rules of (b8), which has the same chain shape with the address in place.
    let b8_rules = nftpol_rules(&setup.domain_cidr.0, &setup.domain_cidr.1).unwrap_or(0);
    [
        0, 1, b_rules, c_last, b2_rules, b3_rules, b4_rules, b5_rules, b6_rules, b8_rules, b8_rules,
    ]
}

fn print_table(
    setup: &Setup,
    policies: usize,
    rates: &[Vec<f64>],
    load_ms: &[Vec<f64>],
    failures: &[u64; CONFIGS.len()],
    notes: &str,
) {
    let s = &setup.scenario;
    let med: Vec<f64> = rates.iter().map(|r| median(r).unwrap_or(0.0)).collect();
    println!(
        "cluster: {} pods, {policies} policies ({} select the server), node {}; (b) has {} set/map elements ((b4) {}), (c) {} rules",
        s.params.pods,
        s.selecting,
        s.node,
        elements(&setup.model),
        elements(&setup.counted),
        setup.naive.rules.len() + naive::BEFORE
    );
    println!(
        "{:<34} {:>10} {:>12} {:>10} {:>10} {:>8} {:>8} {:>9}",
        "config", "rules/conn", "median/s", "min/s", "max/s", "vs (a0)", "vs (a)", "load_ms"
    );
    let labels = [
        "(a0) no ruleset",
        "(a)  conntrack only",
        "(b)  nftpol (netlink full sync)",
        "(c)  naive, one rule per peer+port",
        "(b2) nftpol --log-allowed, reader on",
        "(b3) nftpol + 200 CNPs, both tiers",
        "(b4) nftpol --counters",
        "(b5) nftpol, audited policies",
        "(b6) nftpol, the same enforced",
        "(b7) nftpol, domainNames rule",
        "(b8) nftpol, the same rule by address",
    ];
    let rules = rules_per_connection(setup);
    for i in (0..CONFIGS.len()).filter(|&i| !rates[i].is_empty()) {
        let (lo, hi) = range(&rates[i]).unwrap_or((0.0, 0.0));
        println!(
            "{:<34} {:>10} {:>12.0} {:>10.0} {:>10.0} {:>8} {:>8} {:>9.1}",
            labels[i],
            rules[i],
            med[i],
            lo,
            hi,
            ratio_text(med[i], med[0]),
            ratio_text(med[i], med[1]),
            median(&load_ms[i]).unwrap_or(0.0)
        );
    }
    let failed: u64 = failures.iter().sum();
    if failed > 0 {
        let each: Vec<String> = CONFIGS
            .iter()
            .zip(failures)
            .map(|(c, n)| format!("{} {n}", c.tag()))
            .collect();
        println!("failed or timed-out connects: {}", each.join(" "));
    }
    // Rounds are close in time: their own ratios cancel slow drift of the machine.
    let per_round: Vec<f64> = rates[2].iter().zip(&rates[1]).map(|(b, a)| b / a).collect();
    println!(
        "per-round (b)/(a): median {} (each round's (b) over its own (a))",
        median(&per_round).map_or("n/a".into(), |r| format!("{r:.3}"))
    );
    print!("{notes}");
}
