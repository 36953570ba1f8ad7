//! `run`: every case in every topology, each case step by step ([`crate::step`]), and
//! the summary.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use nftpol::index::Index;

use crate::backend::{self, Backend};
use crate::case::{self, BadCase, Case};
use crate::longlived::{Report, Tally};
use crate::netns;
use crate::proto::{sctp_mode, Probe, Proto, SctpMode};
use crate::serve::Servers;
use crate::service::{self, Nat};
use crate::step::{run_step, Counts, Ctx, LongLived};
use crate::topology::{self, Topology};

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
    /// Every case's policies in audit mode (`--audit`).
    pub audit: bool,
}

/// Counts of case × topology runs, and of long-lived connection checks apart.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub long_lived: Tally,
    pub verdicts: Tally,
    /// The verdict-record checks of an `--audit` run (would-deny, would-allow).
    pub audit: Tally,
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
    let prefix = own_namespaces()?;
    let cases: Vec<Result<Case, BadCase>> = files.iter().map(|f| case::load(f)).collect();
    let sctp = sctp_mode().probes();
    let mut summary = Summary::default();
    let started = Instant::now();
    for &kind in &opts.topologies {
        let run = TopologyRun {
            opts,
            kind,
            prefix: &prefix,
            sctp,
        };
        run.cases(backend.as_mut(), &cases, &mut summary)?;
    }
    let (ll, vr, au) = (summary.long_lived, summary.verdicts, summary.audit);
    println!(
        "{} passed, {} failed, {} skipped; long-lived connections: {} passed, {} failed, {} skipped; verdict records: {} passed, {} failed, {} skipped; audit records: {} passed, {} failed, {} skipped",
        summary.passed, summary.failed, summary.skipped, ll.passed, ll.failed, ll.skipped,
        vr.passed, vr.failed, vr.skipped, au.passed, au.failed, au.skipped
    );
    eprintln!("wall time {:.1}s", started.elapsed().as_secs_f64());
    Ok(summary)
}

/// Removes the network namespaces earlier runs left, and has an interrupt remove this
/// run's; returns this run's prefix.
fn own_namespaces() -> Result<String> {
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
    Ok(prefix)
}

/// Every case in one topology.
struct TopologyRun<'a> {
    opts: &'a Options,
    kind: topology::Kind,
    prefix: &'a str,
    sctp: bool,
}

impl TopologyRun<'_> {
    /// Builds the topology, runs every case in it, prints each verdict, tears it down.
    fn cases(
        &self,
        backend: &mut dyn Backend,
        cases: &[Result<Case, BadCase>],
        summary: &mut Summary,
    ) -> Result<()> {
        let (opts, kind) = (self.opts, self.kind);
        let tag = if opts.topologies.len() > 1 {
            format!(" [{kind}]")
        } else {
            String::new()
        };
        let short = &kind.to_string()[..1];
        let mut topo = Topology::build(kind, format!("{}{short}-", self.prefix), &opts.cni_dir)
            .map_err(|e| cannot(format!("cannot build the cluster: {e:#}")))?;
        if let Some(reason) = topo.hand_wired() {
            eprintln!("warning: pods wired by hand, every run is a SKIP: {reason}");
        }
        let dns = crate::dns_server::Server::start(&topo.dns_ns())
            .map_err(|e| cannot(format!("cannot start the cluster DNS: {e:#}")))?;
        let mut servers = Servers::default();
        let mut nat = Nat::default();
        for case in cases {
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
                backend: &mut *backend,
                sctp: self.sctp,
                verbose: opts.verbose,
                service: opts.service,
                nat: &mut nat,
                dns: &dns,
                // Nothing is enforced under --audit, so nothing is revoked either.
                long_lived: if opts.audit { 0 } else { opts.long_lived },
                verdict_records: opts.verdict_records,
                verdicts: Report::default(),
                audit: opts.audit,
            };
            let result = run_case(&mut ctx, case);
            let took = if opts.verbose {
                format!(" ({:.1}s)", t0.elapsed().as_secs_f64())
            } else {
                String::new()
            };
            let shown = Shown {
                name: &case.name,
                tag: &tag,
                took: &took,
                hand_wired: topo.hand_wired(),
                audit: opts.audit,
            };
            shown.print(result, summary);
        }
        servers.stop_all();
        drop(dns);
        topo.teardown();
        Ok(())
    }
}

/// How a case's verdict is printed.
struct Shown<'a> {
    name: &'a str,
    /// ` [topology]` when more than one runs.
    tag: &'a str,
    /// ` (1.2s)` when verbose.
    took: &'a str,
    /// Why pods were wired by hand, if they were.
    hand_wired: Option<&'a str>,
    /// The record checks count as audit records.
    audit: bool,
}

impl Shown<'_> {
    /// Prints the verdict's line (and its details when it failed) and counts it.
    fn print(&self, result: Verdict, summary: &mut Summary) {
        let (name, tag, took) = (self.name, self.tag, self.took);
        let (details, sctp_skipped, masqueraded, long_lived, verdicts) = match result {
            Verdict::Skip(reason) => {
                println!("SKIP {name}{tag}: {reason}");
                summary.skipped += 1;
                return;
            }
            Verdict::Done {
                details,
                sctp_skipped,
                masqueraded,
                long_lived,
                verdicts,
            } => (details, sctp_skipped, masqueraded, long_lived, verdicts),
        };
        summary.long_lived.add(long_lived.tally);
        match self.audit {
            true => summary.audit.add(verdicts.tally),
            false => summary.verdicts.add(verdicts.tally),
        }
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
        note.push_str(&verdicts.note(if self.audit {
            "audit-record"
        } else {
            "verdict-record"
        }));
        if let (true, Some(reason)) = (details.is_empty(), &self.hand_wired) {
            // It passed, but not on what a node running the plugins builds.
            println!("SKIP {name}{tag}: passed with pods wired by hand: {reason}");
            summary.skipped += 1;
        } else if details.is_empty() {
            println!("PASS {name}{tag}{note}{took}");
            summary.passed += 1;
        } else {
            println!("FAIL {name}{tag}{note}{took}");
            print!("{details}");
            summary.failed += 1;
        }
    }
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

/// Why this run cannot judge a case with ClusterNetworkPolicies, if it holds any.
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

/// Why this run cannot judge a case that probes DNS names under `domainNames` rules, if
/// it does (names probed under other policies need no proxy: every backend judges them).
fn dns_skip(backend: &dyn Backend, case: &Case) -> Option<String> {
    let cells = case.name_cells();
    if cells == 0 || !case.has_domain_names() {
        return None;
    }
    let why = backend.learns_names().err()?;
    Some(format!("{cells} name probes skipped: {why}"))
}

fn run_case(ctx: &mut Ctx, case: &Case) -> Verdict {
    if let Some(why) = cnp_skip(ctx.backend, case).or_else(|| dns_skip(ctx.backend, case)) {
        return Verdict::Skip(why);
    }
    let probes = case
        .steps
        .iter()
        .flat_map(|s| &s.expect)
        .flat_map(|e| &e.probes);
    let (sctp, other): (Vec<&Probe>, Vec<&Probe>) =
        probes.partition(|p| p.proto == Proto::Sctp && !ctx.sctp);
    let sctp_skipped = sctp.len();
    if other.is_empty() {
        return Verdict::Skip(format!("only sctp probes, and {}", no_sctp()));
    }
    let mut long_lived = LongLived::default();
    let (
        details,
        Counts {
            probed,
            masqueraded,
        },
    ) = run_steps(ctx, case, &mut long_lived);
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

/// Runs the steps of `case` in order, until one cannot be run; returns what disagreed
/// (each line labelled with its step when there are several) and the counts.
fn run_steps<'c>(
    ctx: &mut Ctx,
    case: &'c Case,
    long_lived: &mut LongLived<'c>,
) -> (String, Counts) {
    let mut index = Index::default();
    let mut applied = BTreeMap::new();
    let mut details = String::new();
    let (mut probed, mut masqueraded) = (0, 0);
    let many = case.steps.len() > 1;
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
            long_lived,
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
    (
        details,
        Counts {
            probed,
            masqueraded,
        },
    )
}
