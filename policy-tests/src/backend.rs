//! How a node gets its rules. The harness keeps the [`Index`] (applying each step's
//! differences the way watch events would arrive); a backend turns it into the node's
//! kernel state. The script and netlink backends live here; the controller backend
//! (`crate::controller`) implements the same trait, and `run` opens whichever is asked
//! for, so this module imports neither.

use anyhow::Result;
use nftpol::index::Index;
use nftpol::state::{Batch, NodeState};

use crate::netns;
use crate::objects::{self, Objects};

/// Which backend `--backend` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Compile, render an `nft -f` script, load it with `nft`.
    Script,
    /// nftpol's netlink backend (full sync in a namespace, incremental operations).
    Netlink,
    /// The controller itself (`nftpol run`'s code), one per node, fed by a fake API server
    /// over the real list/watch protocol; each step's changes are made with a real
    /// `kubectl` and arrive as watch events.
    Controller,
}

/// Programs one node from the index.
pub trait Backend {
    /// Brings the rules of namespace `netns`, the node `node`, in line with `index`.
    /// `fresh` is set on the first step of a case: whatever an earlier case left must go.
    /// Returns what was loaded, for failure reports.
    /// `objects` are the step's Kubernetes objects, for backends that serve them to a
    /// controller.
    fn program(
        &mut self,
        node: &str,
        netns: &str,
        index: &Index,
        fresh: bool,
        objects: &Objects,
    ) -> Result<String>;

    /// Whether this backend cuts the open connections a step revokes (`Err`: why not),
    /// for the long-lived check ([`crate::longlived`]).
    fn cuts_revoked(&self) -> Result<(), &'static str>;

    /// Whether this backend's nodes write verdict records (`Err`: why not), for the
    /// verdict-record check ([`crate::verdicts`]).
    fn logs_verdicts(&self) -> Result<(), &'static str> {
        Err("only the controller backend reads verdict logs")
    }

    /// Whether this backend enforces ClusterNetworkPolicies (`Err`: why not); a case
    /// holding one is skipped, every cell, with the reason.
    fn judges_cnp(&self) -> Result<(), &'static str> {
        Ok(())
    }

    /// Whether this backend's nodes learn addresses from DNS answers (ClusterNetworkPolicy
    /// `domainNames`: a DNS proxy on each node; `Err`: why not). A case that probes names
    /// is skipped, every cell, with the reason.
    fn learns_names(&self) -> Result<(), String> {
        Err(
            "only the controller backend runs the DNS proxy that learns domainNames addresses"
                .into(),
        )
    }

    /// The conntrack entries cut so far on `node`, if the backend counts them.
    fn entries_cut(&self, _node: &str) -> Option<u64> {
        None
    }

    /// Per node, the verdict records its reader lost (socket overflow) and could not
    /// map to a chain so far, if the backend counts them: said with a failed record
    /// check, so that a missing record tells a loss from a late or wrong one.
    fn verdict_losses(&self) -> Option<String> {
        None
    }
}

/// nftpol's netlink backend, as the controller uses it: each node's [`NodeState`] takes
/// the step's object changes one by one, as watch events would arrive, and its batch goes
/// to the kernel: on the first step of a case a full sync (one atomic batch replacing the
/// table), on every later step the smallest batch from what the kernel holds.
#[derive(Default)]
pub struct Netlink {
    nodes: std::collections::HashMap<String, (NodeState, Objects)>,
}

impl Backend for Netlink {
    fn program(
        &mut self,
        node: &str,
        netns: &str,
        index: &Index,
        fresh: bool,
        objects: &Objects,
    ) -> Result<String> {
        if fresh {
            self.nodes.remove(netns);
        }
        let (state, seen) = match self.nodes.entry(netns.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                // Whatever an earlier case left goes, as `flush ruleset` does for the
                // script backend; the state's first batch replaces table inet nftpol.
                netns::nft(netns, "flush ruleset\n")?;
                e.insert((NodeState::new(Index::new(), Some(node)), Objects::new()))
            }
        };
        objects::follow(state, seen, objects, "case")?;
        *seen = objects.clone();
        // The incremental path must give what a full build of the step gives.
        let full = nftpol::compile(index, Some(node));
        if state.model() != &full {
            anyhow::bail!("{node}: the incremental model differs from a full build of the step");
        }
        let (what, stats) = send(state, node, netns)?;
        state.acknowledged(what == "full sync");
        Ok(format!(
            "# netlink {what}: {} messages, {} bytes\n{}",
            stats.messages,
            stats.bytes,
            nftpol::script::render(state.model())
        ))
    }

    fn cuts_revoked(&self) -> Result<(), &'static str> {
        Err("the netlink backend only applies each step's rules; cutting revoked connections is the controller's")
    }
}

/// Sends `state`'s batch to the kernel of namespace `netns`: what kind of batch it was
/// (`no change`, `full sync`, `incremental`) and what it cost.
fn send(
    state: &mut NodeState,
    node: &str,
    netns: &str,
) -> Result<(&'static str, nftpol::netlink::SyncStats)> {
    let path = std::path::PathBuf::from(format!("/run/netns/{netns}"));
    let (what, result) = match state.batch() {
        Batch::Nothing => ("no change", Ok(Ok(Default::default()))),
        Batch::Full(model) => (
            "full sync",
            nftpol::netlink::in_netns(&path, || nftpol::netlink::full_sync(model)),
        ),
        Batch::Update { before, after } => {
            let ops = match nftpol::netlink::diff_views(&before, &after) {
                Some(ops) => ops,
                // An object's type or flags changed: the whole models' difference.
                None => nftpol::netlink::diff(
                    state.kernel().expect("an update has a kernel model"),
                    state.model(),
                ),
            };
            let table = state.model().name.clone();
            (
                "incremental",
                nftpol::netlink::in_netns(&path, || nftpol::netlink::apply_ops(&table, &ops)),
            )
        }
    };
    let stats: nftpol::netlink::SyncStats = result
        .map_err(|e| anyhow::anyhow!("{node}: entering {netns}: {e}"))?
        .map_err(|e| anyhow::anyhow!("{node}: netlink {what}: {e}"))?;
    Ok((what, stats))
}

/// `nftpol::compile` + `nftpol::script::render`, loaded with `nft -f -` in the node.
pub struct Script;

impl Backend for Script {
    fn program(
        &mut self,
        node: &str,
        netns: &str,
        index: &Index,
        fresh: bool,
        _objects: &Objects,
    ) -> Result<String> {
        let ruleset = nftpol::compile(index, Some(node));
        let mut script = nftpol::script::render(&ruleset);
        if fresh {
            // After the `#!` line, if any, so the script still reads as one.
            let at = if script.starts_with("#!") {
                script.find('\n').map_or(0, |i| i + 1)
            } else {
                0
            };
            script.insert_str(at, "flush ruleset\n");
        }
        netns::nft(netns, &script)?;
        Ok(script)
    }

    fn cuts_revoked(&self) -> Result<(), &'static str> {
        Err("the script backend replaces the table with nft -f per step and cuts no connection")
    }
}
