//! nftpol: Kubernetes NetworkPolicy compiled to nftables.
//!
//! Data flows one way, and each module imports only those before it:
//!
//! ```text
//! input (YAML/JSON -> Object)
//!   -> index   (what the cluster holds, reduced to what policy needs; policy and cnp
//!               validate NetworkPolicies and ClusterNetworkPolicies on the way in)
//!   -> graph   (what is allowed: pods, isolation, peers, ports, CNP tiers; no nftables)
//!   -> ruleset (tables, chains, sets, maps as plain data)
//!   -> script  (nft -f text)            | netlink (one atomic batch)
//! explain reads the graph; it never looks at the ruleset.
//! change (`nftpol diff`) compares two states' verdicts, through explain's.
//! text (escaping of object strings shown to people) is below them all.
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
pub mod tiers;
pub mod verdict_log;

pub use error::Error;

/// Compile the ruleset for `node` (every pod when `None`) from what the index holds.
pub fn compile(index: &index::Index, node: Option<&str>) -> ruleset::Ruleset {
    let graph = graph::PolicyGraph::build_for(index, node);
    ruleset::build(&graph)
}
