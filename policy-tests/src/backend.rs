//! How a node gets its rules. The harness keeps the [`Index`] (applying each step's
//! differences the way watch events would arrive); a backend turns it into the node's
//! kernel state.

use anyhow::Result;
use nftpol::index::Index;

use crate::netns;

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

    /// The conntrack entries cut so far on `node`, if the backend counts them.
    fn entries_cut(&self, _node: &str) -> Option<u64> {
        None
    }
}

/// The objects in force, keyed by kind, namespace and name.
pub type Objects = std::collections::BTreeMap<crate::run::ObjectKey, serde_json::Value>;

/// The backend `kind` names, or why this build cannot provide it (exit status 2).
/// `keep_established` is the controller's `--keep-established` (controller only).
pub fn open(kind: Kind, keep_established: bool) -> Result<Box<dyn Backend>, String> {
    if keep_established && kind != Kind::Controller {
        return Err("--keep-established is a flag of the controller backend only".into());
    }
    match kind {
        Kind::Script => Ok(Box::new(Script)),
        Kind::Netlink => Ok(Box::new(Netlink::default())),
        Kind::Controller => crate::controller::Controller::start(keep_established)
            .map(|c| Box::new(c) as Box<dyn Backend>)
            .map_err(|e| format!("cannot start the controller backend: {e:#}")),
    }
}

/// nftpol's netlink backend, as the controller uses it: the first step of a case is a
/// full sync (one atomic batch replacing the table), every later step the smallest batch
/// from the node's previous model to the new one.
#[derive(Default)]
pub struct Netlink {
    applied: std::collections::HashMap<String, nftpol::ruleset::Ruleset>,
}

impl Backend for Netlink {
    fn program(
        &mut self,
        node: &str,
        netns: &str,
        index: &Index,
        fresh: bool,
        _objects: &Objects,
    ) -> Result<String> {
        let ruleset = nftpol::compile(index, Some(node));
        let path = std::path::PathBuf::from(format!("/run/netns/{netns}"));
        let previous = if fresh { None } else { self.applied.get(netns) };
        let (what, result) = match previous {
            None => {
                // Whatever an earlier case left goes, as `flush ruleset` does for the script
                // backend; the full sync then replaces table inet nftpol in one batch.
                netns::nft(netns, "flush ruleset\n")?;
                (
                    "full sync",
                    nftpol::netlink::in_netns(&path, || nftpol::netlink::full_sync(&ruleset)),
                )
            }
            Some(old) => {
                let ops = nftpol::netlink::diff(old, &ruleset);
                (
                    "incremental",
                    nftpol::netlink::in_netns(&path, || {
                        nftpol::netlink::apply_ops(&ruleset.name, &ops)
                    }),
                )
            }
        };
        let stats = result
            .map_err(|e| anyhow::anyhow!("{node}: entering {netns}: {e}"))?
            .map_err(|e| anyhow::anyhow!("{node}: netlink {what}: {e}"))?;
        self.applied.insert(netns.to_string(), ruleset.clone());
        Ok(format!(
            "# netlink {what}: {} messages, {} bytes\n{}",
            stats.messages,
            stats.bytes,
            nftpol::script::render(&ruleset)
        ))
    }

    fn cuts_revoked(&self) -> Result<(), &'static str> {
        Err("the netlink backend only applies each step's rules; cutting revoked connections is the controller's")
    }
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
