//! `run`: every case in every topology. Per step: rebuild what differs in the network,
//! apply the difference of objects to the index, program each node, probe every cell,
//! ask `explain` about every cell, and compare all three.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nftpol::explain::{explain_in, Family as ExplainFamily};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use serde_json::Value;

use crate::backend::{self, Backend};
use crate::case::{self, BadCase, Case, Step};
use crate::cluster::{hosts, Cluster, Endpoint, NODES};
use crate::conntrack;
use crate::longlived::{self, CutCounter, Held, Report, Tally};
use crate::matrix::{mark, render_diff, Outcome};
use crate::netns;
use crate::objects::{self, Objects};
use crate::probe::{self, Attempt};
use crate::proto::{sctp_mode, Family, Probe, Proto, SctpMode};
use crate::serve::{self, Servers};
use crate::service::{self, Nat, Services};
use crate::topology::{self, Topology};
use crate::verdicts as verdict_records;

pub struct Options {
    pub backend: backend::Kind,
    pub topologies: Vec<topology::Kind>,
    /// Probes to pods through a ClusterIP Service, and kube-proxy's NAT shape.
    pub service: service::Mode,
    /// Where the CNI plugins are (`/usr/lib/cni`).
    pub cni_dir: PathBuf,
    pub paths: Vec<PathBuf>,
    pub verbose: bool,
    /// Long-lived connections held per step of a multi-step case (`--long-lived`).
    pub long_lived: usize,
    /// The controller's `--keep-established` (`--backend controller` only).
    pub keep_established: bool,
    /// Cells per step whose verdict records are checked (`--verdict-records`).
    pub verdict_records: usize,
}

/// Counts of case × topology runs, and of long-lived connection checks apart.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub long_lived: Tally,
    pub verdicts: Tally,
}

/// The harness cannot run at all (exit status 2).
#[derive(Debug)]
pub struct CannotRun(pub String);

impl std::fmt::Display for CannotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CannotRun {}

fn cannot(msg: impl Into<String>) -> anyhow::Error {
    CannotRun(msg.into()).into()
}

/// Root, `nft` and `ip`: without them nothing can run.
pub(crate) fn preflight() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(cannot("must run as root (network namespaces, nftables)"));
    }
    for (tool, arg) in [("nft", "--version"), ("ip", "-V")] {
        let ok = std::process::Command::new(tool)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(cannot(format!(
                "`{tool} {arg}` does not run: is {tool} installed?"
            )));
        }
    }
    Ok(())
}

/// Why SCTP probes are skipped, when they are.
fn no_sctp() -> &'static str {
    match sctp_mode() {
        SctpMode::Unavailable(why) => why,
        SctpMode::Sockets | SctpMode::Raw => "",
    }
}

/// Runs the cases; prints one line per case × topology and the summary line.
pub fn run(opts: &Options) -> Result<Summary> {
    preflight()?;
    service::preflight(opts.service).map_err(cannot)?;
    let mut backend = open_backend(opts.backend, opts.keep_established).map_err(cannot)?;
    let mut files = Vec::new();
    for p in &opts.paths {
        files.extend(case::case_files(p).map_err(|e| cannot(format!("{e:#}")))?);
    }
    let stale = netns::delete_stale();
    if stale > 0 {
        eprintln!("removed {stale} network namespaces left by earlier runs");
    }
    let prefix = netns::run_prefix();
    let handler_prefix = prefix.clone();
    ctrlc::set_handler(move || {
        let _lock = netns::lock();
        netns::delete_prefixed(&handler_prefix);
        eprintln!("interrupted: network namespaces removed");
        std::process::exit(130);
    })
    .map_err(|e| cannot(format!("cannot install the signal handler: {e}")))?;
    let sctp = sctp_mode().probes();
    let cases: Vec<Result<Case, BadCase>> = files.iter().map(|f| case::load(f)).collect();
    let both = opts.topologies.len() > 1;
    let mut summary = Summary::default();
    let started = Instant::now();
    for &kind in &opts.topologies {
        let tag = if both {
            format!(" [{kind}]")
        } else {
            String::new()
        };
        let short = &kind.to_string()[..1];
        let mut topo = Topology::build(kind, format!("{prefix}{short}-"), &opts.cni_dir)
            .map_err(|e| cannot(format!("cannot build the cluster: {e:#}")))?;
        if let Some(reason) = topo.hand_wired() {
            eprintln!("warning: pods wired by hand, every run is a SKIP: {reason}");
        }
        let mut servers = Servers::default();
        let mut nat = Nat::default();
        for case in &cases {
            let case = match case {
                Ok(c) => c,
                Err(bad) => {
                    println!("FAIL {}{tag}: {}", bad.name, bad.reason);
                    summary.failed += 1;
                    continue;
                }
            };
            let t0 = Instant::now();
            let mut ctx = Ctx {
                topo: &mut topo,
                servers: &mut servers,
                backend: backend.as_mut(),
                sctp,
                verbose: opts.verbose,
                service: opts.service,
                nat: &mut nat,
                long_lived: opts.long_lived,
                verdict_records: opts.verdict_records,
                verdicts: Report::default(),
            };
            let result = run_case(&mut ctx, case);
            let took = if opts.verbose {
                format!(" ({:.1}s)", t0.elapsed().as_secs_f64())
            } else {
                String::new()
            };
            match result {
                Verdict::Skip(reason) => {
                    println!("SKIP {}{tag}: {reason}", case.name);
                    summary.skipped += 1;
                }
                Verdict::Done {
                    details,
                    sctp_skipped,
                    masqueraded,
                    long_lived,
                    verdicts,
                } => {
                    summary.long_lived.add(long_lived.tally);
                    summary.verdicts.add(verdicts.tally);
                    let mut note = if sctp_skipped > 0 {
                        format!(" ({sctp_skipped} sctp probes skipped: {})", no_sctp())
                    } else {
                        String::new()
                    };
                    if masqueraded > 0 {
                        let _ = write!(
                            note,
                            " ({masqueraded} host-to-pod probes not made: {})",
                            service::MASQUERADED
                        );
                    }
                    note.push_str(&long_lived.note("long-lived"));
                    note.push_str(&verdicts.note("verdict-record"));
                    if details.is_empty() && topo.hand_wired().is_some() {
                        // It passed, but not on what a node running the plugins builds.
                        let reason = topo.hand_wired().unwrap_or_default();
                        println!(
                            "SKIP {}{tag}: passed with pods wired by hand: {reason}",
                            case.name
                        );
                        summary.skipped += 1;
                    } else if details.is_empty() {
                        println!("PASS {}{tag}{note}{took}", case.name);
                        summary.passed += 1;
                    } else {
                        println!("FAIL {}{tag}{note}{took}", case.name);
                        print!("{details}");
                        summary.failed += 1;
                    }
                }
            }
        }
        servers.stop_all();
        topo.teardown();
    }
    let (ll, vr) = (summary.long_lived, summary.verdicts);
    println!(
        "{} passed, {} failed, {} skipped; long-lived connections: {} passed, {} failed, {} skipped; verdict records: {} passed, {} failed, {} skipped",
        summary.passed, summary.failed, summary.skipped, ll.passed, ll.failed, ll.skipped,
        vr.passed, vr.failed, vr.skipped
    );
    eprintln!("wall time {:.1}s", started.elapsed().as_secs_f64());
    Ok(summary)
}

struct Ctx<'a> {
    topo: &'a mut Topology,
    servers: &'a mut Servers,
    backend: &'a mut dyn Backend,
    sctp: bool,
    verbose: bool,
    service: service::Mode,
    nat: &'a mut Nat,
    /// Long-lived connections held per step.
    long_lived: usize,
    /// Cells per step whose verdict records are checked.
    verdict_records: usize,
    /// The case's verdict-record checks so far.
    verdicts: Report,
}

enum Verdict {
    Skip(String),
    /// `details` is empty when everything agreed.
    Done {
        details: String,
        sctp_skipped: usize,
        /// Cells kube-proxy would masquerade (`--service`), not probed.
        masqueraded: usize,
        /// The long-lived connection checks; their failures are in `details` too.
        long_lived: Report,
        /// The verdict-record checks; their failures are in `details` too.
        verdicts: Report,
    },
}

/// Why this run cannot judge a case with ClusterNetworkPolicies, if it holds any.
/// The backend `kind` names, or why this build cannot provide it (exit status 2).
/// `keep_established` is the controller's `--keep-established` (controller only).
fn open_backend(kind: backend::Kind, keep_established: bool) -> Result<Box<dyn Backend>, String> {
    if keep_established && kind != backend::Kind::Controller {
        return Err("--keep-established is a flag of the controller backend only".into());
    }
    match kind {
        backend::Kind::Script => Ok(Box::new(backend::Script)),
        backend::Kind::Netlink => Ok(Box::new(backend::Netlink::default())),
        backend::Kind::Controller => crate::controller::Controller::start(keep_established)
            .map(|c| Box::new(c) as Box<dyn Backend>)
            .map_err(|e| format!("cannot start the controller backend: {e:#}")),
    }
}

fn cnp_skip(backend: &dyn Backend, case: &Case) -> Option<String> {
    if !case.has_cnp() {
        return None;
    }
    let why = if crate::kinds::NFTPOL_READS_CNP {
        backend.judges_cnp().err()?
    } else {
        crate::kinds::NOT_READ_YET
    };
    let cells: usize = case
        .steps
        .iter()
        .flat_map(|s| &s.expect)
        .map(|e| e.probes.len() * e.matrix.probed().count())
        .sum();
    Some(format!("{cells} cells skipped: {why}"))
}

fn run_case(ctx: &mut Ctx, case: &Case) -> Verdict {
    if let Some(why) = cnp_skip(ctx.backend, case) {
        return Verdict::Skip(why);
    }
    let mut sctp_skipped = 0;
    let mut other = 0;
    for step in &case.steps {
        for e in &step.expect {
            for p in &e.probes {
                if p.proto == Proto::Sctp && !ctx.sctp {
                    sctp_skipped += 1;
                } else {
                    other += 1;
                }
            }
        }
    }
    if other == 0 {
        return Verdict::Skip(format!("only sctp probes, and {}", no_sctp()));
    }
    let mut index = Index::default();
    let mut applied = BTreeMap::new();
    let mut details = String::new();
    let (mut probed, mut masqueraded) = (0, 0);
    let many = case.steps.len() > 1;
    let mut long_lived = LongLived::default();
    for (i, step) in case.steps.iter().enumerate() {
        let label = if many {
            format!("step {}: ", i + 1)
        } else {
            String::new()
        };
        long_lived.next = case.steps.get(i + 1);
        long_lived.number = i + 1;
        let failed_before = long_lived.report.failures.len();
        let result = run_step(
            ctx,
            &case.name,
            step,
            i == 0,
            &mut index,
            &mut applied,
            &mut long_lived,
        );
        for line in &long_lived.report.failures[failed_before..] {
            let _ = writeln!(details, "  {line}");
        }
        match result {
            Ok((text, counts)) => {
                probed += counts.probed;
                masqueraded += counts.masqueraded;
                for line in text.lines() {
                    let _ = writeln!(details, "  {label}{line}");
                }
            }
            Err(e) => {
                let _ = writeln!(details, "  {label}error: {e:#}");
                // Later steps build on this one; their results would mislead.
                break;
            }
        }
    }
    if probed == 0 && masqueraded > 0 && details.is_empty() {
        return Verdict::Skip(format!(
            "every probe is from a host to a pod: {}",
            service::MASQUERADED
        ));
    }
    Verdict::Done {
        details,
        sctp_skipped,
        masqueraded,
        long_lived: long_lived.report,
        verdicts: std::mem::take(&mut ctx.verdicts),
    }
}

/// The long-lived connections of a case as its steps go by ([`longlived`]).
#[derive(Default)]
struct LongLived<'c> {
    /// Opened after the previous step's probes, checked once this step is in the kernel.
    held: Option<Held>,
    /// The step after the one running, whose verdicts the connections opened now face.
    next: Option<&'c Step>,
    /// The running step, 1-based.
    number: usize,
    report: Report,
}

/// Cut conntrack entries over every node, if the backend counts them.
fn entries_cut(backend: &dyn Backend) -> Option<u64> {
    NODES.iter().map(|n| backend.entries_cut(n)).sum()
}

/// What a step probed, and what it left out because kube-proxy would masquerade it.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    probed: usize,
    masqueraded: usize,
}

/// Brings the index to the step's objects: changed or new ones through `apply`, gone
/// ones through `delete`, as watch events would arrive.
fn apply_objects(
    index: &mut Index,
    applied: &mut Objects,
    objects: Vec<Value>,
    source: &str,
) -> Result<()> {
    let now = objects::keyed(objects, source)?;
    objects::follow(index, applied, now.iter().map(|(k, v)| (k, v)), source)?;
    *applied = now.into_iter().collect();
    Ok(())
}

fn server_specs(topo: &Topology, cluster: &Cluster) -> BTreeMap<String, serve::Spec> {
    let mut want = BTreeMap::new();
    let standard = crate::cluster::standard_ports();
    for h in hosts() {
        want.insert(
            h.name.to_string(),
            serve::Spec {
                netns: topo.host_ns(h.name),
                addrs: vec![h.addr(Family::V4), h.addr(Family::V6)],
                listen: standard
                    .iter()
                    .filter_map(|p| Some((p.proto()?, p.port)))
                    .collect(),
            },
        );
    }
    for (id, pod) in &cluster.pods {
        want.insert(
            id.clone(),
            serve::Spec {
                netns: topo.pod_ns(id),
                addrs: pod.ips.clone(),
                listen: pod.listen(),
            },
        );
    }
    want
}

/// One probed cell of one probe of one expect entry.
struct Cell {
    expect: usize,
    probe: usize,
    row: usize,
    col: usize,
    expected: bool,
}

fn run_step(
    ctx: &mut Ctx,
    name: &str,
    step: &Step,
    first: bool,
    index: &mut Index,
    applied: &mut Objects,
    long_lived: &mut LongLived,
) -> Result<(String, Counts)> {
    let cut_before = long_lived
        .held
        .as_ref()
        .and_then(|_| entries_cut(ctx.backend));
    let rebuilt = ctx
        .topo
        .reconcile(&step.cluster)
        .context("rebuilding the network")?;
    ctx.servers
        .reconcile(&server_specs(ctx.topo, &step.cluster), &rebuilt, ctx.sctp)?;
    apply_objects(index, applied, step.nftpol_objects(), name)?;
    let mut scripts = Vec::new();
    for node in NODES {
        let loaded = ctx
            .backend
            .program(node, &ctx.topo.host_ns(node), index, first, applied)
            .with_context(|| format!("programming {node}"))?;
        scripts.push((node, loaded));
    }
    // After the backend, which may have flushed the whole ruleset on a first step.
    let services = Services::for_cluster(&step.cluster);
    for node in NODES {
        ctx.nat
            .install(ctx.service, &services, &ctx.topo.host_ns(node), first)
            .with_context(|| format!("programming {node}'s Services"))?;
    }
    // Before the flush below, which would end the held connections' entries itself.
    if let Some(held) = long_lived.held.take() {
        let backend = &*ctx.backend;
        let mut now = || entries_cut(backend);
        let cut = CutCounter {
            before: cut_before,
            now: &mut now,
        };
        held.check(&rebuilt, cut, &mut long_lived.report);
    }
    for node in NODES {
        conntrack::flush(&ctx.topo.host_ns(node))
            .with_context(|| format!("flushing conntrack on {node}"))?;
    }
    let endpoint = |n: &str| -> Result<Endpoint<'_>> {
        step.cluster
            .endpoint(n)
            .with_context(|| format!("{n} is not in the cluster"))
    };
    let mut cells = Vec::new();
    let mut attempts = Vec::new();
    let mut counts = Counts::default();
    for (ei, e) in step.expect.iter().enumerate() {
        for (pi, p) in e.probes.iter().enumerate() {
            if p.proto == Proto::Sctp && !ctx.sctp {
                continue;
            }
            for (row, col, expected) in e.matrix.probed() {
                let (from, to) = (
                    endpoint(&e.matrix.rows[row])?,
                    endpoint(&e.matrix.cols[col])?,
                );
                let dst = match (&to, ctx.service) {
                    (Endpoint::Pod(_), service::Mode::None) | (Endpoint::Host(_), _) => to
                        .addr(e.family)
                        .context("validated: the server has an address")?,
                    (Endpoint::Pod(_), _) if service::masqueraded(&from, e.family) => {
                        counts.masqueraded += 1;
                        continue;
                    }
                    (Endpoint::Pod(pod), _) => services
                        .address(&pod.id(), e.family)
                        .context("validated: the server has an address")?,
                };
                let (netns, bind) = match &from {
                    Endpoint::Pod(pod) => (ctx.topo.pod_ns(&pod.id()), None),
                    Endpoint::Host(h) => (ctx.topo.host_ns(h.name), Some(h.addr(e.family))),
                };
                attempts.push(Attempt {
                    netns,
                    bind,
                    dst: std::net::SocketAddr::new(dst, p.port),
                    proto: p.proto,
                });
                cells.push(Cell {
                    expect: ei,
                    probe: pi,
                    row,
                    col,
                    expected,
                });
            }
        }
    }
    counts.probed = attempts.len();
    let records_from = verdict_records::mark();
    let (kernel, src_ports) = probe::run(&attempts)?;
    let wrong_records = check_records(ctx, step, &cells, &kernel, &src_ports, index, records_from)?;
    if let Some(next) = long_lived.next {
        hold(ctx, step, next, &cells, &attempts, &kernel, long_lived)?;
    }
    let graph = PolicyGraph::build(index);
    let mut groups: BTreeMap<(usize, usize), Vec<Outcome>> = BTreeMap::new();
    let mut explanations = String::new();
    for (cell, kernel) in cells.iter().zip(kernel) {
        let e = &step.expect[cell.expect];
        let probe: Probe = e.probes[cell.probe];
        let (from, to) = (
            endpoint(&e.matrix.rows[cell.row])?,
            endpoint(&e.matrix.cols[cell.col])?,
        );
        let family = match e.family {
            Family::V4 => ExplainFamily::V4,
            Family::V6 => ExplainFamily::V6,
        };
        let explained = explain_in(
            index,
            &graph,
            &from.explain_name(e.family),
            &to.explain_name(e.family),
            &probe.to_string(),
            Some(family),
        );
        let outcome = Outcome {
            row: cell.row,
            col: cell.col,
            expected: cell.expected,
            kernel,
            explain: explained
                .as_ref()
                .map(|x| x.allowed)
                .map_err(|err| err.to_string()),
        };
        if ctx.verbose && !outcome.ok() {
            if let Ok(x) = &explained {
                let _ = writeln!(
                    explanations,
                    "explain {} -> {} {probe} {} (kernel: {}):",
                    e.matrix.rows[cell.row],
                    e.matrix.cols[cell.col],
                    e.family,
                    mark(kernel)
                );
                for line in x.to_string().lines() {
                    let _ = writeln!(explanations, "  {line}");
                }
            }
        }
        groups
            .entry((cell.expect, cell.probe))
            .or_default()
            .push(outcome);
    }
    let mut out = String::new();
    for ((ei, pi), outcomes) in &groups {
        let e = &step.expect[*ei];
        if let Some(diff) = render_diff(&e.matrix, outcomes, "  ") {
            let wrong = outcomes.iter().filter(|o| !o.ok()).count();
            let _ = writeln!(
                out,
                "{} {}: {wrong} cells wrong (each cell: expected, kernel, explain)",
                e.probes[*pi], e.family
            );
            out.push_str(&diff);
        }
    }
    if ctx.verbose && !out.is_empty() {
        out.push_str(&explanations);
        for (node, script) in &scripts {
            let _ = writeln!(out, "rules loaded on {node}:");
            for line in script.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    for line in wrong_records {
        let _ = writeln!(out, "verdict record: {line}");
    }
    if !out.is_empty() && attempts.is_empty() {
        bail!("nothing was probed");
    }
    Ok((out, counts))
}

/// Checks the verdict records of a sample of the cells whose outcome was the case's
/// ([`verdict_records`]); returns one line per wrong side.
fn check_records(
    ctx: &mut Ctx,
    step: &Step,
    cells: &[Cell],
    kernel: &[bool],
    src_ports: &[Option<u16>],
    index: &Index,
    mark: usize,
) -> Result<Vec<String>> {
    if ctx.verdict_records == 0 {
        return Ok(Vec::new());
    }
    let mut candidates = Vec::new();
    for ((cell, &connected), &src_port) in cells.iter().zip(kernel).zip(src_ports) {
        if cell.expected != connected {
            continue;
        }
        let e = &step.expect[cell.expect];
        let (from, to) = (&e.matrix.rows[cell.row], &e.matrix.cols[cell.col]);
        let probe = e.probes[cell.probe];
        let pod_of = |name: &str| match step.cluster.endpoint(name) {
            Some(Endpoint::Pod(p)) => Some(p.id()),
            _ => None,
        };
        let (Some(src), Some(dst)) = (
            step.cluster.endpoint(from).and_then(|f| f.addr(e.family)),
            step.cluster.endpoint(to).and_then(|t| t.addr(e.family)),
        ) else {
            continue;
        };
        candidates.push(verdict_records::Candidate {
            label: format!("{from} -> {to} {probe} {}", e.family),
            from_pod: pod_of(from),
            to_pod: pod_of(to),
            src,
            dst,
            protocol: probe.proto.protocol(),
            port: probe.port,
            src_port,
            connected,
        });
    }
    let candidates = verdict_records::distinguishable(candidates);
    let sample = verdict_records::sample(&candidates, ctx.verdict_records);
    if let Err(why) = ctx.backend.logs_verdicts() {
        ctx.verdicts.skip(why, sample.len());
        return Ok(Vec::new());
    }
    let (tally, failures) = verdict_records::check(mark, index, &sample);
    ctx.verdicts.tally.add(tally);
    Ok(failures)
}

/// Opens the long-lived connections of a sample of the cells this step allowed (and
/// the kernel connected), to be checked once `next` is in the kernel.
fn hold(
    ctx: &mut Ctx,
    step: &Step,
    next: &Step,
    cells: &[Cell],
    attempts: &[Attempt],
    kernel: &[bool],
    long_lived: &mut LongLived,
) -> Result<()> {
    let mut candidates = Vec::new();
    for ((cell, attempt), &connected) in cells.iter().zip(attempts).zip(kernel) {
        let e = &step.expect[cell.expect];
        let (from, to) = (&e.matrix.rows[cell.row], &e.matrix.cols[cell.col]);
        if !(cell.expected && connected && attempt.proto == Proto::Tcp) {
            continue;
        }
        let bind = step
            .cluster
            .endpoint(from)
            .and_then(|f| f.addr(e.family))
            .with_context(|| format!("validated: {from} has an {} address", e.family))?;
        candidates.push(longlived::Candidate {
            from: from.clone(),
            to: to.clone(),
            probe: e.probes[cell.probe],
            family: e.family,
            netns: attempt.netns.clone(),
            bind,
            dst: attempt.dst,
        });
    }
    let sample = longlived::sample(&candidates, &step.cluster, next, ctx.long_lived);
    match ctx.backend.cuts_revoked() {
        Err(why) => long_lived.report.skip(why, sample.len()),
        Ok(()) => {
            let held = longlived::open(
                sample,
                long_lived.number,
                ctx.servers.handoff(),
                &mut long_lived.report,
            );
            long_lived.held = (!held.is_empty()).then_some(held);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allowed(index: &Index, from: &str, to: &str) -> bool {
        nftpol::explain::explain(index, from, to, "tcp/80")
            .unwrap()
            .allowed
    }

    #[test]
    fn steps_reach_the_index_as_differences() {
        let deny = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": "x"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        });
        let mut index = Index::default();
        let mut applied = BTreeMap::new();
        let mut objects = Cluster::standard().objects();
        objects.retain(crate::kinds::for_nftpol);
        objects.push(deny);
        apply_objects(&mut index, &mut applied, objects, "t").unwrap();
        assert!(!allowed(&index, "y/a", "x/a"));
        assert!(allowed(&index, "x/a", "y/a"));
        // The policy goes, and so does pod z/c.
        let mut changes = crate::cluster::ClusterChanges::default();
        changes.pods.insert("z/c".into(), None);
        let cluster = Cluster::with_changes(&changes).unwrap();
        let mut objects = cluster.objects();
        objects.retain(crate::kinds::for_nftpol);
        apply_objects(&mut index, &mut applied, objects, "t").unwrap();
        assert!(allowed(&index, "y/a", "x/a"));
        assert!(nftpol::explain::explain(&index, "z/c", "x/a", "tcp/80").is_err());
        let nodes = if crate::kinds::NFTPOL_READS_CNP { 2 } else { 0 };
        assert_eq!(applied.len(), 3 + 8 + nodes);
    }
}
