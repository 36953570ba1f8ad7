//! nftpol: Kubernetes NetworkPolicy compiled to nftables.
//!
//! Data flows one way, and each module imports only from the layers before it (checked
//! by `tests/layers.rs`, whose list is the order; `docs/design.md` explains it):
//!
//! ```text
//! leaves      text, error, addr, labels, host, flow, fqdn, synth
//! objects     selector, policy, cnp, input, dump
//! cluster     index   (what the cluster holds, reduced to what policy needs)
//! allowed     graph   (what is allowed: pods, isolation, peers, ports, CNP tiers; no
//!                      nftables), impact, graph_json, explain (reads the graph, never
//!                      the ruleset), change
//! nftables    ruleset (tables, chains, sets, maps as plain data), script (nft -f text),
//!             netlink (one atomic batch)
//! node        state (NodeState), revoke, verdict_log
//! controller  controller (nftpol run: controller-only state lives here)
//! ```
#![deny(unsafe_code)]

pub mod addr;
pub mod change;
pub mod cnp;
#[cfg(feature = "controller")]
pub mod controller;
pub mod dump;
pub mod error;
pub mod explain;
pub mod flow;
pub mod fqdn;
pub mod graph;
pub mod graph_json;
pub mod host;
pub mod impact;
pub mod index;
pub mod input;
pub mod labels;
#[cfg(feature = "netlink")]
pub mod netlink;
pub mod policy;
pub mod revoke;
pub mod ruleset;
pub mod script;
pub mod selector;
pub mod state;
pub mod synth;
pub mod text;
pub mod verdict_log;

pub use error::Error;

/// Compile the ruleset for `node` (every pod when `None`) from what the index holds.
pub fn compile(index: &index::Index, node: Option<&str>) -> ruleset::Ruleset {
    let graph = graph::PolicyGraph::build_for(index, node);
    ruleset::build(&graph)
}
