//! What the sync loop needs from the kernel side, as a trait: replace the table, move it
//! from one model to the next, and tell whether the live table drifted. The netlink
//! backend implements it for real; tests may implement it to inject failures.

use crate::ruleset::{Ruleset, View};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Netlink messages in the batch (begin and end markers excluded).
    pub messages: usize,
    pub bytes: usize,
    /// From handing the batch to the kernel to its last acknowledgement; the rest of a
    /// call is diffing and encoding.
    pub kernel: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The kernel refused the batch; nothing of it applied.
    #[error("kernel refused the batch: {0}")]
    Refused(String),
    /// The outcome is unknown (ENOBUFS, a lost acknowledgement): read back and resync.
    #[error("batch outcome unknown: {0}")]
    Unknown(String),
    #[error("netlink: {0}")]
    Io(String),
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
}

/// The real dataplane: netlink batches in the network namespace of the thread that opens it.
pub struct NetlinkDataplane {
    backend: crate::netlink::Backend,
}

impl NetlinkDataplane {
    pub fn open() -> Result<Self, DataplaneError> {
        crate::netlink::Backend::open()
            .map(|backend| NetlinkDataplane { backend })
            .map_err(map_err)
    }
}

fn map_err(e: crate::netlink::NetlinkError) -> DataplaneError {
    use crate::netlink::NetlinkError as E;
    match e {
        E::Kernel { .. } | E::BatchRejected { .. } => DataplaneError::Refused(e.to_string()),
        E::OutcomeUnknown | E::MissingAcks { .. } | E::Timeout => {
            DataplaneError::Unknown(e.to_string())
        }
        other => DataplaneError::Io(other.to_string()),
    }
}

impl Dataplane for NetlinkDataplane {
    fn full_sync(&mut self, model: &Ruleset) -> Result<BatchStats, DataplaneError> {
        let s = self.backend.full_sync(model).map_err(map_err)?;
        Ok(BatchStats {
            messages: s.messages,
            bytes: s.bytes,
            kernel: s.elapsed,
        })
    }

    fn update(&mut self, old: &View, new: &View) -> Result<BatchStats, DataplaneError> {
        // `None`: the change cannot be made in place; a table-level replacement of a view
        // would drop everything outside it, so ask for a real full sync instead.
        let ops = crate::netlink::diff_views(old, new).ok_or(DataplaneError::NeedsFullSync)?;
        if ops.is_empty() {
            return Ok(BatchStats::default());
        }
        let s = self.backend.apply_ops(new.name, &ops).map_err(map_err)?;
        Ok(BatchStats {
            messages: s.messages,
            bytes: s.bytes,
            kernel: s.elapsed,
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
}
