//! `policy-tests`: the conformance harness of nftpol. Builds a two-node cluster out of
//! network namespaces, programs each node with nftpol, probes every cell of each case's
//! reachability matrices and compares kernel, expectation and `nftpol explain`.
//!
//! ```text
//! policy-tests run [--backend script|netlink|controller] [--topology bridge|routed|vxlan]
//!                  [--service none|nftables|iptables] [--cni-path DIR] [-v]
//!                  [--long-lived N] [--keep-established] [--verdict-records N] PATH...
//! policy-tests bench datapath|kernel [--smoke] ...   (benchmarks; see README.md)
//! ```
//! Exit status: 0 all passed, 1 some case failed, 2 the harness cannot run here.

mod backend;
mod bench;
mod case;
mod cluster;
mod cni;
mod conntrack;
mod controller;
mod diff_steps;
mod dns;
mod dns_server;
mod handwire;
mod kinds;
mod kubectl;
mod longlived;
mod matrix;
mod netns;
mod objects;
mod probe;
mod proto;
mod run;
mod sctp;
mod serve;
mod service;
mod step;
mod topology;
mod verdicts;
mod vxlan;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "policy-tests",
    about = "Conformance harness for nftpol: real namespaces, real packets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run cases: prints PASS/FAIL/SKIP per case and topology, then a summary line.
    Run {
        /// How nodes are programmed.
        #[arg(long, value_enum, default_value_t = backend::Kind::Script)]
        backend: backend::Kind,
        /// Only this topology (default: all three, each case once in each).
        #[arg(long, value_enum)]
        topology: Option<topology::Kind>,
        /// Probe pods through a ClusterIP Service each, NAT shaped like kube-proxy's mode.
        #[arg(long, value_enum, default_value_t = service::Mode::None)]
        service: service::Mode,
        /// Where the CNI plugins are; when they are missing, pods are wired by hand and
        /// every run is reported as a SKIP.
        #[arg(long, value_name = "DIR", default_value = cni::DEFAULT_DIR)]
        cni_path: PathBuf,
        /// On failure, also print explain's reasons and the rules loaded on each node.
        #[arg(long, short)]
        verbose: bool,
        /// Long-lived TCP connections held from each step of a multi-step case into the
        /// next (a stable sample of the cells it allows), checked against the next step.
        #[arg(long, value_name = "N", default_value_t = longlived::DEFAULT_PER_STEP,
              value_parser = clap::value_parser!(u16).range(1..=64))]
        long_lived: u16,
        /// Run the controllers with --keep-established (controller backend only): the
        /// long-lived check then fails on every revoked cell, which shows it can fail.
        #[arg(long)]
        keep_established: bool,
        /// Cells per step whose verdict records are checked against `explain` (controller
        /// backend; its nodes run with --log-allowed). 0 turns the check off.
        #[arg(long, value_name = "N", default_value_t = verdicts::DEFAULT_PER_STEP,
              value_parser = clap::value_parser!(u16).range(0..=64))]
        verdict_records: u16,
        /// Every case with all of its policies annotated `nftpol.io/mode: audit`: every
        /// cell that is not `-` must connect, and the verdict-record sample checks the
        /// would-deny and would-allow records (counted as audit records) against
        /// `explain`. No long-lived check: nothing is enforced, so nothing is revoked.
        #[arg(long)]
        audit: bool,
        /// Case files, or folders whose *.yaml files are run in name order.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Benchmarks: data-path connection rate, kernel apply time and memory.
    #[command(subcommand)]
    Bench(bench::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            backend,
            topology,
            service,
            cni_path,
            verbose,
            long_lived,
            keep_established,
            verdict_records,
            audit,
            paths,
        } => {
            verdicts::install();
            let topologies = match topology {
                Some(t) => vec![t],
                None => topology::Kind::ALL.to_vec(),
            };
            let opts = run::Options {
                backend,
                topologies,
                service,
                cni_dir: cni_path,
                paths,
                verbose,
                long_lived: usize::from(long_lived),
                keep_established,
                verdict_records: usize::from(verdict_records),
                audit,
            };
            match run::run(&opts) {
                Ok(s) if s.failed > 0 => ExitCode::from(1),
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("policy-tests: cannot run: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Bench(cmd) => bench::main(cmd),
    }
}
