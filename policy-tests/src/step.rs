//! One step of a case: rebuild what differs in the network, apply the difference of
//! objects to the index, program each node, probe every cell, ask `explain` about every
//! cell, and compare all three; open and check the long-lived connections and verdict
//! records of the step.
//!
//! ```text
//! run_step: program (network, objects, nodes, Services, held connections, conntrack)
//!        -> plan (cells, attempts) -> probe -> check_records, hold -> judge -> report
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use nftpol::explain::domains::Resolution;
use nftpol::explain::{explain_resolved, Family as ExplainFamily, Query};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use serde_json::Value;

use crate::backend::Backend;
use crate::case::Step;
use crate::cluster::{hosts, Cluster, Endpoint, NODES};
use crate::conntrack;
use crate::longlived::{self, CutCounter, Held, Report};
use crate::matrix::{mark, render_diff, Outcome};
use crate::objects::{self, Objects};
use crate::probe::{self, Attempt};
use crate::proto::{Family, Probe, Proto};
use crate::serve::{self, Servers};
use crate::service::{self, Nat, Services};
use crate::topology::Topology;
use crate::verdicts as verdict_records;

/// What every step of a run shares.
pub(crate) struct Ctx<'a> {
    pub(crate) topo: &'a mut Topology,
    pub(crate) servers: &'a mut Servers,
    pub(crate) backend: &'a mut dyn Backend,
    pub(crate) sctp: bool,
    pub(crate) verbose: bool,
    pub(crate) service: service::Mode,
    pub(crate) nat: &'a mut Nat,
    /// The cluster DNS, serving each step's records.
    pub(crate) dns: &'a crate::dns_server::Server,
    /// Long-lived connections held per step.
    pub(crate) long_lived: usize,
    /// Cells per step whose verdict records are checked.
    pub(crate) verdict_records: usize,
    /// The case's verdict-record checks so far.
    pub(crate) verdicts: Report,
    /// Every policy in audit mode (`--audit`): every probed cell must connect.
    pub(crate) audit: bool,
}

/// The long-lived connections of a case as its steps go by ([`longlived`]).
#[derive(Default)]
pub(crate) struct LongLived<'c> {
    /// Opened after the previous step's probes, checked once this step is in the kernel.
    pub(crate) held: Option<Held>,
    /// The step after the one running, whose verdicts the connections opened now face.
    pub(crate) next: Option<&'c Step>,
    /// The running step, 1-based.
    pub(crate) number: usize,
    pub(crate) report: Report,
}

/// Cut conntrack entries over every node, if the backend counts them.
fn entries_cut(backend: &dyn Backend) -> Option<u64> {
    NODES.iter().map(|n| backend.entries_cut(n)).sum()
}

/// What a step probed, and what it left out because kube-proxy would masquerade it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) probed: usize,
    pub(crate) masqueraded: usize,
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

fn server_specs(
    topo: &Topology,
    cluster: &Cluster,
    dns: &crate::dns::Dns,
) -> BTreeMap<String, serve::Spec> {
    let mut want = BTreeMap::new();
    let standard = crate::cluster::standard_ports();
    if !dns.external.is_empty() {
        // The external hosts serve the six standard ports, as ext does.
        want.insert(
            "outside".to_string(),
            serve::Spec {
                netns: topo.outside_ns(),
                addrs: dns.external.iter().copied().collect(),
                listen: standard
                    .iter()
                    .filter_map(|p| Some((p.proto()?, p.port)))
                    .collect(),
            },
        );
    }
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
    /// What the kernel must do: the case's verdict, or connect under `--audit`.
    expected: bool,
    /// The case's verdict as written.
    written: bool,
}

/// One step of a case: the network and every node brought to the step, every cell
/// probed, explained and compared; returns what disagreed (empty when all agreed).
pub(crate) fn run_step(
    ctx: &mut Ctx,
    name: &str,
    step: &Step,
    first: bool,
    index: &mut Index,
    applied: &mut Objects,
    long_lived: &mut LongLived,
) -> Result<(String, Counts)> {
    let (scripts, services) = program(ctx, name, step, first, index, applied, long_lived)?;
    let plan = plan(ctx, step, &services)?;
    let records_from = verdict_records::mark();
    let probed = probe::run(&plan.attempts)?;
    let wrong_lookups = check_lookups(step, &plan, &probed.resolved);
    let (kernel, src_ports) = (probed.connected, probed.src_ports);
    let wrong_records = check_records(
        ctx,
        step,
        &plan.cells,
        &kernel,
        &src_ports,
        index,
        records_from,
    )?;
    if let Some(next) = long_lived.next {
        hold(
            ctx,
            step,
            next,
            &plan.cells,
            &plan.attempts,
            &kernel,
            long_lived,
        )?;
    }
    let judged = judge(ctx.verbose, step, index, &plan.cells, kernel)?;
    let mut out = report(ctx.verbose, step, judged, &scripts, wrong_records);
    out.push_str(&wrong_lookups);
    if !out.is_empty() && plan.attempts.is_empty() {
        bail!("nothing was probed");
    }
    Ok((out, plan.counts))
}

/// Brings the network, each node's rules and Services to the step; checks the held
/// connections against it; flushes conntrack. Returns what each node loaded.
fn program(
    ctx: &mut Ctx,
    name: &str,
    step: &Step,
    first: bool,
    index: &mut Index,
    applied: &mut Objects,
    long_lived: &mut LongLived,
) -> Result<(Vec<(&'static str, String)>, Services)> {
    let cut_before = long_lived
        .held
        .as_ref()
        .and_then(|_| entries_cut(ctx.backend));
    let rebuilt = ctx
        .topo
        .reconcile(&step.cluster)
        .context("rebuilding the network")?;
    let dns = step.dns.clone().unwrap_or_default();
    ctx.topo
        .set_external(&dns.external)
        .context("the outside network")?;
    ctx.dns.set(&dns);
    ctx.servers.reconcile(
        &server_specs(ctx.topo, &step.cluster, &dns),
        &rebuilt,
        ctx.sctp,
    )?;
    let mut objects = step.nftpol_objects();
    if ctx.audit {
        objects.iter_mut().for_each(objects::audit);
    }
    apply_objects(index, applied, objects, name)?;
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
    Ok((scripts, services))
}

/// What a step probes: each cell, its connection attempt, and the counts.
struct Plan {
    cells: Vec<Cell>,
    attempts: Vec<Attempt>,
    counts: Counts,
}

fn endpoint<'s>(step: &'s Step, n: &str) -> Result<Endpoint<'s>> {
    step.cluster
        .endpoint(n)
        .with_context(|| format!("{n} is not in the cluster"))
}

/// Every cell of the step's expectations to probe (SCTP ones only where SCTP works).
fn plan(ctx: &Ctx, step: &Step, services: &Services) -> Result<Plan> {
    let mut plan = Plan {
        cells: Vec::new(),
        attempts: Vec::new(),
        counts: Counts::default(),
    };
    for (ei, e) in step.expect.iter().enumerate() {
        for (pi, p) in e.probes.iter().enumerate() {
            if p.proto == Proto::Sctp && !ctx.sctp {
                continue;
            }
            for (row, col, expected) in e.matrix.probed() {
                let from = endpoint(step, &e.matrix.rows[row])?;
                let col_name = &e.matrix.cols[col];
                let attempt = if crate::dns::is_name(col_name) {
                    Some(name_attempt(ctx, step, &from, col_name, e, *p)?)
                } else {
                    let to = endpoint(step, col_name)?;
                    attempt(ctx, services, &from, &to, e.family, *p)?
                };
                let Some(attempt) = attempt else {
                    plan.counts.masqueraded += 1;
                    continue;
                };
                plan.attempts.push(attempt);
                plan.cells.push(Cell {
                    expect: ei,
                    probe: pi,
                    row,
                    col,
                    expected: expected || ctx.audit,
                    written: expected,
                });
            }
        }
    }
    plan.counts.probed = plan.attempts.len();
    Ok(plan)
}

/// The connection attempt of one cell: to the pod's address, or its Service's with
/// `--service`; `None` when kube-proxy would masquerade it (not probed).
fn attempt(
    ctx: &Ctx,
    services: &Services,
    from: &Endpoint,
    to: &Endpoint,
    family: Family,
    p: Probe,
) -> Result<Option<Attempt>> {
    let dst = match (to, ctx.service) {
        (Endpoint::Pod(_), service::Mode::None) | (Endpoint::Host(_), _) => to
            .addr(family)
            .context("validated: the server has an address")?,
        (Endpoint::Pod(_), _) if service::masqueraded(from, family) => return Ok(None),
        (Endpoint::Pod(pod), _) => services
            .address(&pod.id(), family)
            .context("validated: the server has an address")?,
    };
    let (netns, bind) = match from {
        Endpoint::Pod(pod) => (ctx.topo.pod_ns(&pod.id()), None),
        Endpoint::Host(h) => (ctx.topo.host_ns(h.name), Some(h.addr(family))),
    };
    Ok(Some(Attempt {
        netns,
        bind,
        dst: std::net::SocketAddr::new(dst, p.port),
        proto: p.proto,
        lookup: None,
    }))
}

/// The attempt of a cell whose column is a DNS name: the pod resolves it, then connects
/// to the first address (validated: an external address, the pod has the family).
fn name_attempt(
    ctx: &Ctx,
    step: &Step,
    from: &Endpoint,
    name: &str,
    e: &crate::case::Expect,
    p: Probe,
) -> Result<Attempt> {
    let Endpoint::Pod(pod) = from else {
        bail!("validated: only pods probe names");
    };
    let dns = step.dns.as_ref().context("validated: the step has dns")?;
    let want = dns
        .check_probe(name, e.family)
        .map_err(|err| anyhow::anyhow!("validated: {err}"))?;
    Ok(Attempt {
        netns: ctx.topo.pod_ns(&pod.id()),
        bind: None,
        dst: std::net::SocketAddr::new(want, p.port),
        proto: p.proto,
        lookup: Some(probe::Lookup {
            name: name.to_string(),
            family: e.family,
            tcp: e.resolve == crate::case::Resolve::Tcp,
        }),
    })
}

/// The lookups of the step's name probes that failed or gave another address than the
/// case's records: each an error of the step, whatever the cell expects (a blocked
/// connection is only judged once the name resolved as the case says).
fn check_lookups(step: &Step, plan: &Plan, resolved: &[Option<Result<IpAddr, String>>]) -> String {
    let mut out = String::new();
    for ((cell, attempt), got) in plan.cells.iter().zip(&plan.attempts).zip(resolved) {
        let Some(lookup) = &attempt.lookup else {
            continue;
        };
        let e = &step.expect[cell.expect];
        let what = format!(
            "lookup: {} -> {} {} {} over {}",
            e.matrix.rows[cell.row],
            lookup.name,
            e.probes[cell.probe],
            e.family,
            if lookup.tcp { "tcp" } else { "udp" }
        );
        match got {
            Some(Ok(ip)) if *ip == attempt.dst.ip() => {}
            Some(Ok(ip)) => {
                let _ = writeln!(
                    out,
                    "{what}: resolved to {ip}, the case's records give {}",
                    attempt.dst.ip()
                );
            }
            Some(Err(why)) => {
                let _ = writeln!(out, "{what}: failed: {why}");
            }
            None => {
                let _ = writeln!(out, "{what}: not made");
            }
        }
    }
    out
}

/// The outcomes of a step's cells, by (expect entry, probe), and `explain`'s words for
/// the wrong ones (when verbose).
struct Judged {
    groups: BTreeMap<(usize, usize), Vec<Outcome>>,
    explanations: String,
}

/// Puts each cell's expected verdict, the kernel's and `explain`'s side by side.
fn judge(
    verbose: bool,
    step: &Step,
    index: &Index,
    cells: &[Cell],
    kernel: Vec<bool>,
) -> Result<Judged> {
    let graph = PolicyGraph::build(index);
    let mut judged = Judged {
        groups: BTreeMap::new(),
        explanations: String::new(),
    };
    for (cell, kernel) in cells.iter().zip(kernel) {
        let e = &step.expect[cell.expect];
        let explained = explain_cell(step, index, &graph, cell)?;
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
        if let (true, false, Ok(x)) = (verbose, outcome.ok(), &explained) {
            let _ = writeln!(
                judged.explanations,
                "explain {} -> {} {} {} (kernel: {}):",
                e.matrix.rows[cell.row],
                e.matrix.cols[cell.col],
                e.probes[cell.probe],
                e.family,
                mark(kernel)
            );
            for line in x.to_string().lines() {
                let _ = writeln!(judged.explanations, "  {line}");
            }
        }
        judged
            .groups
            .entry((cell.expect, cell.probe))
            .or_default()
            .push(outcome);
    }
    Ok(judged)
}

/// What `explain` says of one cell: between pods or hosts; for a name, of the pod and
/// the address the case's records give, with the pod having resolved the name to it
/// (`explain --resolved NAME=ADDR`).
fn explain_cell(
    step: &Step,
    index: &Index,
    graph: &PolicyGraph,
    cell: &Cell,
) -> Result<Result<nftpol::explain::Explanation, nftpol::explain::ExplainError>> {
    let e = &step.expect[cell.expect];
    let from = endpoint(step, &e.matrix.rows[cell.row])?;
    let family = match e.family {
        Family::V4 => ExplainFamily::V4,
        Family::V6 => ExplainFamily::V6,
    };
    let probe: Probe = e.probes[cell.probe];
    let col = &e.matrix.cols[cell.col];
    let (to_name, resolved) = if crate::dns::is_name(col) {
        let addr = step
            .dns
            .as_ref()
            .and_then(|d| d.first_address(col, e.family))
            .context("validated: the name resolves")?;
        let name = col.clone();
        (addr.to_string(), vec![Resolution { name, addr }])
    } else {
        (endpoint(step, col)?.explain_name(e.family), Vec::new())
    };
    Ok(Query::parse(
        &from.explain_name(e.family),
        &to_name,
        &probe.to_string(),
        Some(family),
    )
    .and_then(|q| explain_resolved(index, graph, &q, &resolved)))
}

/// The step's report: each wrong matrix as a diff, then (verbose) `explain`'s words and
/// the rules each node loaded, then the wrong verdict records.
fn report(
    verbose: bool,
    step: &Step,
    judged: Judged,
    scripts: &[(&str, String)],
    wrong_records: Vec<String>,
) -> String {
    let mut out = String::new();
    for ((ei, pi), outcomes) in &judged.groups {
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
    if verbose && !out.is_empty() {
        out.push_str(&judged.explanations);
        for (node, script) in scripts {
            let _ = writeln!(out, "rules loaded on {node}:");
            for line in script.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    for line in wrong_records {
        let _ = writeln!(out, "verdict record: {line}");
    }
    out
}

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
            denied_as_written: !cell.written,
        });
    }
    let candidates = verdict_records::distinguishable(candidates);
    let sample = verdict_records::sample(&candidates, ctx.verdict_records);
    if let Err(why) = ctx.backend.logs_verdicts() {
        ctx.verdicts.skip(why, sample.len());
        return Ok(Vec::new());
    }
    let (tally, mut failures) = verdict_records::check(mark, index, &sample);
    ctx.verdicts.tally.add(tally);
    if !failures.is_empty() {
        if let Some(losses) = ctx.backend.verdict_losses() {
            failures.push(format!("the readers so far: {losses}"));
        }
    }
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
        // Names are probed at their address of the moment; nothing to hold them to.
        if !(cell.expected && connected && attempt.proto == Proto::Tcp) || attempt.lookup.is_some()
        {
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
        let mut applied = Objects::new();
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
