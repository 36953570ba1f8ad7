//! `policy-tests bench`: kernel and data-path benchmarks of nftpol, in real network
//! namespaces.
//!
//! ```text
//! bench datapath  new TCP connections/s through one node's bridge with no ruleset,
//!                 conntrack only, nftpol's ruleset and a naive one-rule-per-peer ruleset
//! bench kernel    netlink full sync vs `nft -f`, incremental batches, kernel memory
//! bench conntrack cutting revoked connections: judge and delete with many entries,
//!                 revoking event to last byte delivered
//! ```
//!
//! Pure parts (statistics, the scenario's cluster, the naive ruleset, rule counting,
//! `/proc` parsing) are unit tested without root; everything else needs root.
//! Namespaces are named `npt<pid>-bench-...`, so the harness's stale-namespace cleanup also
//! removes those of a killed benchmark.

mod conntrack;
mod datapath;
mod kernel;
mod load;
mod memory;
mod naive;
mod net;
mod scenario;
mod stats;
mod traverse;

use std::process::ExitCode;

use clap::Subcommand;

use crate::netns;

#[derive(Subcommand)]
pub enum Command {
    /// New-connection rate through one node: no ruleset, conntrack only, nftpol, naive.
    /// The last line printed is `ratio=<median(b)/median(a)>`.
    Datapath(datapath::Args),
    /// Full-sync and incremental apply times, batch sizes and kernel memory of rulesets
    /// of generated clusters.
    Kernel(kernel::Args),
    /// Cutting revoked connections: judge-and-delete time with many conntrack entries,
    /// and the revoking event to the last byte delivered (p50, p99).
    Conntrack(conntrack::Args),
}

/// Runs one benchmark. Exit status: 0 done, 1 the benchmark failed, 2 cannot run here.
pub fn main(cmd: Command) -> ExitCode {
    if let Err(e) = crate::run::preflight() {
        eprintln!("policy-tests bench: cannot run: {e:#}");
        return ExitCode::from(2);
    }
    let stale = netns::delete_stale();
    if stale > 0 {
        eprintln!("removed {stale} network namespaces left by earlier runs");
    }
    let prefix = format!("{}bench-", netns::run_prefix());
    let handler_prefix = prefix.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        let _lock = netns::lock();
        netns::delete_prefixed(&handler_prefix);
        eprintln!("interrupted: network namespaces removed");
        std::process::exit(130);
    }) {
        eprintln!("policy-tests bench: cannot install the signal handler: {e}");
        return ExitCode::from(2);
    }
    let result = match cmd {
        Command::Datapath(args) => datapath::run(&args, &prefix),
        Command::Kernel(args) => kernel::run(&args, &prefix),
        Command::Conntrack(args) => conntrack::run(&args, &prefix),
    };
    // Whatever a benchmark left (it cleans up on drop; this also covers a panic path).
    {
        let _lock = netns::lock();
        netns::delete_prefixed(&prefix);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("policy-tests bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
