//! From the policy graph to the nftables ruleset model.
//!
//! ```text
//! table inet nftpol
//!   chain forward  (hook forward)  : ct state established,related accept;
//!                                    ip saddr . ip daddr . meta l4proto . th sport
//!                                      . th dport @held4 drop (ip6: @held6);
//!                                    jump dispatch
//!   chain output   (hook output)   : the same; fib saddr type local accept before the
//!                                    jump
//!   chain dispatch                 : ip  saddr vmap @egress4   -> jump egress/<ns>/<pod>
//!                                    ip  daddr vmap @ingress4  -> jump ingress/<ns>/<pod>
//!                                    icmpv6 neighbour discovery accept
//!                                    ip6 saddr vmap @egress6
//!                                    ip6 daddr vmap @ingress6
//!   chain egress/<ns>/<pod>        : ip daddr @…/any4 return
//!                                    ip daddr . meta l4proto . th dport @…/exact4 return
//!                                    ip daddr . meta l4proto . th dport @…/ports4 return
//!                                    (same for ip6) ; drop
//!   chain ingress/<ns>/<pod>       : same shape with saddr and accept
//! ```
//!
//! Chains hold static rules; what changes (addresses, ports) lives in sets and maps, so an
//! update is mostly set elements. A new connection costs one map lookup per direction
//! plus at most three set lookups in the pod's chain, whatever the number of policies:
//! addresses on any port, single (address, protocol, port) points in a hash set, and
//! ranges in a concatenated interval set (see `np_elements::split_exact` for why two). A peer with many ports may instead
//! be looked up as a pair, addresses then ports (see `np_elements`).

mod audit_chain;
mod base;
mod boxes;
mod build;
mod dispatch;
mod domain_rules;
pub mod eval;
mod input_hook;
mod memo;
pub mod model;
pub mod names;
mod np_elements;
mod options;
mod regions;
pub mod roles;
mod tier_chain;
pub mod traffic;
mod view;

pub use build::{build, build_with, rebuild_pods};
pub use model::*;
pub use options::{over_budget, DnsSteering, LogOptions, Options};
pub use roles::{PairPart, SetKind, SetRole, TierSet};
pub use view::copy_pods;
pub use view::{PodObjects, View};
