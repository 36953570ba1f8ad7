//! What the sync loop needs from the kernel side, as a trait: replace the table, move it
//! from one model to the next, tell whether the live table drifted; and for the revoker
//! ([`super::revoker`]), which decides what to cut: dump the tracked connections of some
//! addresses, hold and delete them. The netlink backend implements it for real; tests may
//! implement it to inject failures. It knows nothing of the index, and remembers nothing
//! between batches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::flow::Held;
use crate::netlink::{CtEntry, NetlinkError};
use crate::ruleset::{Element, Ruleset, Set, View};

/// What cutting revoked connections did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutStats {
    /// Conntrack entries dumped and judged.
    pub examined: usize,
    /// Entries deleted.
    pub cut: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Netlink messages in the batch (begin and end markers excluded).
    pub messages: usize,
    pub bytes: usize,
    /// From handing the batch to the kernel to its last acknowledgement; the rest of a
    /// call is diffing and encoding.
    pub kernel: std::time::Duration,
    /// The batch only added elements to sets whose elements allow (see
    /// [`only_allows_more`]): it revoked nothing. False when unknown.
    pub only_allows_more: bool,
    /// What an incremental batch removed or replaced (whose kernel counters it ended);
    /// `None` when not known.
    pub replaced: Option<Replaced>,
}

/// The objects whose kernel counters an incremental batch ended: sets deleted (or
/// deleted and created again), elements deleted, chains flushed or deleted (their
/// `counter drop` with them). Read off the batch's operations, so exactly what it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replaced {
    pub sets: BTreeSet<String>,
    pub elements: BTreeMap<String, Vec<crate::ruleset::model::Key>>,
    pub chains: BTreeSet<String>,
}

impl Replaced {
    fn of(ops: &[crate::netlink::Op]) -> Replaced {
        use crate::netlink::Op;
        let mut out = Replaced::default();
        for op in ops {
            match op {
                Op::DelSet(name) => {
                    out.sets.insert(name.clone());
                }
                Op::DelSetElements { set, elements, .. } => out
                    .elements
                    .entry(set.clone())
                    .or_default()
                    .extend(elements.iter().map(|e| e.key)),
                Op::SetRules { chain, flush: true } => {
                    out.chains.insert(chain.name.clone());
                }
                Op::DelChain(name) => {
                    out.chains.insert(name.clone());
                }
                _ => {}
            }
        }
        out
    }
}

/// A dataplane failure, sorted by what the sync loop must do next; each carries the
/// netlink error that caused it, so the chain reaches the log whole.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The kernel refused the batch; nothing of it applied.
    #[error("kernel refused the batch")]
    Refused(#[source] NetlinkError),
    /// The outcome is unknown (ENOBUFS, a lost acknowledgement): read back and resync.
    #[error("batch outcome unknown")]
    Unknown(#[source] NetlinkError),
    /// Anything else: the socket, a dump, the namespace's addresses.
    #[error("netlink")]
    Io(#[source] NetlinkError),
    /// The change cannot be made in place (an object's type or flags changed): the caller
    /// must replace the table whole. Nothing was sent.
    #[error("the change needs a full sync")]
    NeedsFullSync,
}

pub trait Dataplane: Send {
    /// Replaces the table whole with `model`, in one atomic batch.
    fn full_sync(&mut self, model: &Ruleset) -> Result<BatchStats, DataplaneError>;
    /// Moves the kernel from `old` (what it holds) to `new` in one atomic batch, touching
    /// only what differs: two views of the same kind (the same pods' parts of two models).
    fn update(&mut self, old: &View, new: &View) -> Result<BatchStats, DataplaneError>;
    /// Whether the live table differs from `model` (a missing table differs).
    fn drifted(&mut self, model: &Ruleset) -> Result<bool, DataplaneError>;
    /// The conntrack entries that involve any of `addresses`. The default has none (test
    /// fakes have no connections).
    fn flows(&mut self, _addresses: &BTreeSet<IpAddr>) -> Result<Vec<CtEntry>, DataplaneError> {
        Ok(Vec::new())
    }
    /// The node's own addresses (of the network namespace the dataplane programs).
    fn host_addresses(&mut self) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(BTreeSet::new())
    }
    /// Adds `held` to table `table`'s held sets, in one batch; with `add` false, lets them
    /// go (every one must be held: the kernel refuses the batch for one it does not have).
    fn hold(&mut self, _table: &str, _held: &[Held], _add: bool) -> Result<(), DataplaneError> {
        Ok(())
    }
    /// Deletes `entries`; returns how many went.
    fn delete_flows(&mut self, _entries: &[&CtEntry]) -> Result<usize, DataplaneError> {
        Ok(0)
    }
    /// The counters of table `table`: each element of `sets` with its packets, and the
    /// packets of every `counter drop` rule by chain (of `chains` only, when given). The
    /// default has none.
    fn counters(
        &mut self,
        _table: &str,
        _sets: &[&Set],
        _chains: Option<&BTreeSet<String>>,
    ) -> Result<Readings, DataplaneError> {
        Ok(Readings::default())
    }
    /// The addresses the learned sets `sets` (ClusterNetworkPolicy `domainNames`) of
    /// table `table` hold, by set. The default has none.
    fn learned(
        &mut self,
        _table: &str,
        _sets: &[String],
    ) -> Result<Vec<(String, IpAddr)>, DataplaneError> {
        Ok(Vec::new())
    }
}

/// What [`Dataplane::counters`] read: packets counted so far, as the kernel holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readings {
    /// Set name -> its elements and their packets.
    pub sets: BTreeMap<String, Vec<(Element, u64)>>,
    /// Chain name -> the packets of its `counter drop`.
    pub drops: BTreeMap<String, u64>,
}

/// Up to this many chains, drop counters are read chain by chain (one small dump each)
/// rather than by one dump of every rule of the table.
const PER_CHAIN_READS: usize = 32;

/// The real dataplane: netlink batches in the network namespace of the thread that opens it.
pub struct NetlinkDataplane {
    backend: crate::netlink::Backend,
    /// Opened with the backend, so it lives in the same network namespace.
    conntrack: crate::netlink::Conntrack,
    /// Likewise.
    counters: crate::netlink::Counters,
}

/// Whether applying `op` can only allow more: adding elements to a set whose elements
/// allow (every set but the tiers' Deny regions and the pod CIDRs of
/// `--default-deny-unknown`, [`crate::ruleset::SetRole::denies`]). A batch of nothing
/// else (a pod elsewhere starting: its address joins its peers' sets) revokes nothing, so
/// its connections need no judging.
fn only_allows_more(op: &crate::netlink::Op) -> bool {
    match op {
        crate::netlink::Op::AddSetElements { role, .. } => !role.denies(),
        _ => false,
    }
}

impl NetlinkDataplane {
    pub fn open() -> Result<Self, DataplaneError> {
        Ok(NetlinkDataplane {
            backend: crate::netlink::Backend::open().map_err(map_err)?,
            conntrack: crate::netlink::Conntrack::open().map_err(map_err)?,
            counters: crate::netlink::Counters::open().map_err(map_err)?,
        })
    }
}

/// Sorts a netlink error by what the sync loop must do next, keeping it as the source.
fn map_err(e: NetlinkError) -> DataplaneError {
    use NetlinkError as E;
    match e {
        E::Kernel { .. } | E::BatchRejected { .. } => DataplaneError::Refused(e),
        E::OutcomeUnknown | E::MissingAcks { .. } | E::Timeout => DataplaneError::Unknown(e),
        other => DataplaneError::Io(other),
    }
}

impl Dataplane for NetlinkDataplane {
    fn full_sync(&mut self, model: &Ruleset) -> Result<BatchStats, DataplaneError> {
        let s = self.backend.full_sync(model).map_err(map_err)?;
        Ok(BatchStats {
            messages: s.messages,
            bytes: s.bytes,
            kernel: s.elapsed,
            only_allows_more: false,
            replaced: None,
        })
    }

    fn update(&mut self, old: &View, new: &View) -> Result<BatchStats, DataplaneError> {
        // `None`: the change cannot be made in place; a table-level replacement of a view
        // would drop everything outside it, so ask for a real full sync instead.
        let ops = crate::netlink::diff_views(old, new).ok_or(DataplaneError::NeedsFullSync)?;
        let allows_more = ops.iter().all(only_allows_more);
        let replaced = Some(Replaced::of(&ops));
        if ops.is_empty() {
            return Ok(BatchStats {
                only_allows_more: allows_more,
                replaced,
                ..BatchStats::default()
            });
        }
        let s = self.backend.apply_ops(new.name, &ops).map_err(map_err)?;
        Ok(BatchStats {
            messages: s.messages,
            bytes: s.bytes,
            kernel: s.elapsed,
            only_allows_more: allows_more,
            replaced,
        })
    }

    fn drifted(&mut self, model: &Ruleset) -> Result<bool, DataplaneError> {
        let live = self.backend.read_table(&model.name).map_err(map_err)?;
        match crate::netlink::drift(model, live.as_ref()) {
            None => Ok(false),
            Some(what) => {
                tracing::warn!(drift = %what, "live table differs from the model");
                Ok(true)
            }
        }
    }

    fn flows(&mut self, addresses: &BTreeSet<IpAddr>) -> Result<Vec<CtEntry>, DataplaneError> {
        // Asks the kernel's count first: no walk at all when the namespace holds nothing.
        self.conntrack.dump_involving(addresses).map_err(map_err)
    }

    fn host_addresses(&mut self) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(crate::netlink::local_addrs()
            .map_err(map_err)?
            .into_iter()
            .collect())
    }

    fn hold(&mut self, table: &str, held: &[Held], add: bool) -> Result<(), DataplaneError> {
        self.backend.hold(table, held, add).map_err(map_err)?;
        Ok(())
    }

    fn delete_flows(&mut self, entries: &[&CtEntry]) -> Result<usize, DataplaneError> {
        self.conntrack.delete(entries).map_err(map_err)
    }

    fn learned(
        &mut self,
        table: &str,
        sets: &[String],
    ) -> Result<Vec<(String, IpAddr)>, DataplaneError> {
        self.backend.learned_addresses(table, sets).map_err(map_err)
    }

    fn counters(
        &mut self,
        table: &str,
        sets: &[&Set],
        chains: Option<&BTreeSet<String>>,
    ) -> Result<Readings, DataplaneError> {
        let mut out = Readings::default();
        match chains {
            // A few chains: a dump of each one's rules, not of the whole table's.
            Some(chains) if chains.len() <= PER_CHAIN_READS => {
                for chain in chains {
                    let read = self.counters.drop_packets(table, Some(chain));
                    out.drops.extend(read.map_err(map_err)?);
                }
            }
            _ => out.drops = self.counters.drop_packets(table, None).map_err(map_err)?,
        }
        for set in sets {
            let elements = self.counters.element_packets(table, set).map_err(map_err)?;
            out.sets.insert(set.name.clone(), elements);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Op;
    use crate::ruleset::model::KeyType;
    use crate::ruleset::{SetKind, SetRole, TierSet};

    fn add(role: SetRole) -> Op {
        Op::AddSetElements {
            set: "s".into(),
            role,
            key: vec![KeyType::Ipv4Addr],
            interval: true,
            elements: vec![],
            from_empty: false,
        }
    }

    /// Only element additions to allowing sets skip the judge; anything that can take
    /// something away (a deletion, a rule, a dispatch entry, a pod CIDR) does not.
    #[test]
    fn only_additions_to_allowing_sets_revoke_nothing() {
        assert!(only_allows_more(&add(SetRole::NpAllow(SetKind::Any4))));
        assert!(only_allows_more(&add(SetRole::KnownPods)));
        assert!(!only_allows_more(&add(SetRole::PodCidrs)));
        // A ClusterNetworkPolicy's Deny regions restrict; its Accept regions allow.
        let tier = |t, k| add(SetRole::Tier(t, k));
        assert!(!only_allows_more(&tier(TierSet::AdminDeny, SetKind::Any4)));
        assert!(!only_allows_more(&tier(
            TierSet::BaselineDeny,
            SetKind::Ports6
        )));
        assert!(only_allows_more(&tier(
            TierSet::AdminAccept,
            SetKind::Exact4
        )));
        assert!(!only_allows_more(&Op::DelSetElements {
            set: "ingress/x/a/any4".into(),
            key: vec![KeyType::Ipv4Addr],
            interval: true,
            elements: vec![],
        }));
        assert!(!only_allows_more(&Op::AddMapElements {
            map: "ingress4".into(),
            elements: vec![],
        }));
        assert!(!only_allows_more(&Op::DelChain("ingress/x/a".into())));
    }
}
