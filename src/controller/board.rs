//! The verdict board: the last two generations of the node's state, shared by the sync
//! loop (which publishes) and the verdict reader (which explains records with them).
//!
//! ```text
//! sync loop --(after an applied batch, while records are wanted)--> Board::publish: generation g
//! reader --Board::fresh (wakes an idle loop)--> Board::record --> verdict_log::Generations::record
//! ```
//!
//! Owns: the lock and the wake-up between the two threads, and when publishing is worth
//! it. What a record says is [`crate::verdict_log`]'s.
//!
//! Publishing copies the node's index and graph (milliseconds at 10,000 pods), so the
//! sync loop publishes only while records are wanted: the reader asks before it explains
//! a drain of records ([`Board::fresh`]), which wakes an idle loop to publish at once, and
//! for [`DEMAND`] after each ask every applied batch is published, so that a packet judged
//! just before a batch still finds the generation that judged it. A node whose pods see
//! no logged traffic pays nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::graph::PolicyGraph;
use crate::index::{Index, PodKey};
use crate::verdict_log::{Generations, Packet, Record, Snapshot, Unmapped};

/// How long after the reader's last ask the sync loop keeps publishing every batch.
pub const DEMAND: Duration = Duration::from_secs(10);

/// The last two published generations, shared by the sync loop and the reader.
#[derive(Default)]
pub struct Board {
    inner: Mutex<Generations>,
    published: Condvar,
    /// Batches the kernel has acknowledged; a generation is the count when it was published.
    applied: AtomicU64,
    /// When the reader last asked ([`Board::fresh`]).
    asked: Mutex<Option<Instant>>,
    /// Wakes the sync loop to publish (the controller's channel); none in tests.
    wake: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("generation", &self.generation())
            .field("applied", &self.applied.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Board {
    /// A board whose [`Board::fresh`] calls `wake` to ask the sync loop for a generation.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Board {
            wake: Some(Box::new(wake)),
            ..Board::default()
        }
    }

    /// A batch landed (the sync loop, after each one the kernel acknowledged).
    pub fn applied(&self) {
        self.applied.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the reader has asked for state within [`DEMAND`]: the sync loop then
    /// publishes after every batch.
    pub fn wanted(&self) -> bool {
        let asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.is_some_and(|t| t.elapsed() < DEMAND)
    }

    /// `index` and `graph` are what the kernel now enforces (the sync loop, after a batch
    /// or when woken while nothing is pending).
    pub fn publish(&self, index: Index, graph: PolicyGraph) {
        self.publish_learned(index, graph, Default::default());
    }

    /// [`Board::publish`], with what the DNS proxy has learned.
    pub fn publish_learned(
        &self,
        index: Index,
        graph: PolicyGraph,
        learned: crate::fqdn::facts::Learned,
    ) {
        let generation = self.applied.load(Ordering::SeqCst);
        let snap = Snapshot::new(generation, index, graph).with_learned(learned);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.publish(snap);
        self.published.notify_all();
    }

    /// The reader, before it explains what it drained: asks for the generation the
    /// kernel holds and waits up to `timeout` for it (a sync loop in the middle of a
    /// batch publishes when the batch lands). On timeout the records are explained
    /// with what is there, and say so when it disagrees with the kernel.
    pub fn fresh(&self, timeout: Duration) {
        *self.asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let behind = |g: &Generations| {
            let applied = self.applied.load(Ordering::SeqCst);
            g.generation().is_none_or(|n| n < applied)
        };
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !behind(&g) {
            return;
        }
        if let Some(wake) = &self.wake {
            wake();
        }
        let _ = self
            .published
            .wait_timeout_while(g, timeout, |g| behind(g))
            .unwrap_or_else(|e| e.into_inner());
    }

    /// The newest generation, if any.
    pub fn generation(&self) -> Option<u64> {
        self.generations().generation()
    }

    /// The newest published snapshot of the node's state, if any.
    pub fn newest(&self) -> Option<Arc<Snapshot>> {
        self.generations().newest().cloned()
    }

    /// The pods (namespace, name) of the newest generation.
    pub fn pods(&self) -> Vec<PodKey> {
        self.generations().pods()
    }

    /// The record of one logged packet (see [`Generations::record`]).
    pub fn record(&self, pkt: &Packet) -> Result<Record, Unmapped> {
        // A copy of two `Arc`s: explaining does not hold the lock.
        self.generations().record(pkt)
    }

    fn generations(&self) -> Generations {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_str;

    const CLUSTER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: db, labels: {app: db}}
spec: {nodeName: n1}
status: {podIPs: [{ip: 10.0.0.2}]}
"#;

    /// How long `fresh` may wait in a test before the test calls it a hang: never reached
    /// unless a thread is stuck; nothing waits it out.
    const HANG: Duration = Duration::from_secs(60);

    #[test]
    fn asking_wakes_the_loop_until_the_kernel_generation_is_published() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::mpsc;
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        // The wake-up as the controller's: a message to the sync loop, which publishes
        // when it gets it (the board's lock is held while waking, so not in `wake`).
        let (tx, rx) = mpsc::channel::<()>();
        let b = Arc::new(Board::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        }));
        let index = Index::from_objects(parse_str(CLUSTER, "t").unwrap()).unwrap();
        let (b2, i2) = (b.clone(), index.clone());
        let sync_loop = std::thread::spawn(move || {
            // Exactly the two wake-ups the test expects; a third would go unanswered.
            for _ in 0..2 {
                rx.recv().unwrap();
                b2.publish(i2.clone(), PolicyGraph::build_for(&i2, Some("n1")));
            }
        });
        assert!(!b.wanted());
        // Nothing published: asking wakes the loop and returns once it has published
        // (generation 0, no batch applied yet).
        b.fresh(HANG);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(b.generation(), Some(0));
        assert!(b.wanted());
        // Up to date: asking again does not wake the loop.
        b.fresh(HANG);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        // A batch landed: the board is behind the kernel until the loop publishes again.
        b.applied();
        b.fresh(HANG);
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        assert_eq!(b.generation(), Some(1));
        sync_loop.join().unwrap();
    }
}
