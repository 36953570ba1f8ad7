//! The sync loop's tests: a scripted watcher on a made-up clock drives the real loop.
use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;
use crate::controller::dataplane::BatchStats;
use crate::ruleset::{Ruleset, View};

/// The messages still to come, shared by the source and the dataplane.
type Queue = Arc<Mutex<VecDeque<Stamped>>>;

/// A scripted watcher on a made-up clock: each message arrives at its stamp, and
/// handling one costs `cost` of the loop's time. The loop sees nothing else of time.
struct Scripted {
    clock: Instant,
    queue: Queue,
    cost: Duration,
    turns: usize,
}

impl Scripted {
    fn pop(&mut self) -> Stamped {
        let m = self.queue.lock().unwrap().pop_front().unwrap();
        self.clock = self.clock.max(m.at) + self.cost;
        m
    }
    fn front(&self) -> Option<Instant> {
        self.queue.lock().unwrap().front().map(|m| m.at)
    }
}

impl Source for Scripted {
    fn now(&mut self) -> Instant {
        self.clock
    }
    fn recv_until(&mut self, deadline: Instant) -> Result<Stamped, RecvTimeoutError> {
        self.turns += 1;
        assert!(self.turns < 100_000, "the loop spins");
        match self.front() {
            None => Err(RecvTimeoutError::Disconnected),
            Some(at) if at <= deadline.max(self.clock) => Ok(self.pop()),
            Some(_) => {
                self.clock = self.clock.max(deadline);
                Err(RecvTimeoutError::Timeout)
            }
        }
    }
    fn try_next(&mut self) -> Option<Stamped> {
        match self.front() {
            Some(at) if at <= self.clock => Some(self.pop()),
            _ => None,
        }
    }
}

/// Counts batches (full syncs and updates), noting how many messages were still to
/// come at each; never fails.
struct Counting {
    queue: Queue,
    batches: Arc<Mutex<Vec<usize>>>,
}

impl Counting {
    fn batch(&mut self) -> Result<BatchStats, DataplaneError> {
        let left = self.queue.lock().unwrap().len();
        self.batches.lock().unwrap().push(left);
        Ok(BatchStats::default())
    }
}

impl Dataplane for Counting {
    fn full_sync(&mut self, _: &Ruleset) -> Result<BatchStats, DataplaneError> {
        self.batch()
    }
    fn update(&mut self, _: &View, _: &View) -> Result<BatchStats, DataplaneError> {
        self.batch()
    }
    fn drifted(&mut self, _: &Ruleset) -> Result<bool, DataplaneError> {
        Ok(false)
    }
}

fn object(v: Value) -> Object {
    crate::input::object_from_value(v, "test").unwrap().unwrap()
}

/// Pod x/a on node n1; `db` decides whether policy `only-web` isolates it.
fn pod(db: bool) -> Object {
    let labels = if db {
        json!({"pod": "a", "role": "db"})
    } else {
        json!({"pod": "a"})
    };
    object(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "x", "name": "a", "labels": labels},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.11", "podIPs": [{"ip": "10.244.1.11"}]}}))
}

fn at(at: Instant, msg: Msg) -> Stamped {
    Stamped { at, msg }
}

fn list(out: &mut VecDeque<Stamped>, t: Instant, kind: Kind, objects: Vec<Object>) {
    out.push_back(at(t, Msg::Init(kind)));
    for o in objects {
        out.push_back(at(t, Msg::InitApply(o)));
    }
    out.push_back(at(t, Msg::InitDone(kind)));
}

fn settings() -> Settings {
    Settings {
        node: "n1".into(),
        coalesce: Duration::from_millis(5),
        resync: Duration::from_secs(3600),
        options: Default::default(),
        pod_cidrs_from_node: false,
        keep_established: true,
    }
}

/// Runs a loop over `script` on a clock starting at `t0`, handling each message in
/// `cost`; returns the messages left at each batch, and the loop's turns.
fn run(t0: Instant, script: VecDeque<Stamped>, cost: Duration) -> (Vec<usize>, u64) {
    let queue: Queue = Arc::new(Mutex::new(script));
    let batches = Arc::new(Mutex::new(Vec::new()));
    let metrics = Arc::new(Metrics::default());
    let dataplane = Counting {
        queue: queue.clone(),
        batches: batches.clone(),
    };
    let sync = SyncLoop::new(settings(), dataplane, metrics.clone(), Box::new(|_| {}));
    let mut src = Scripted {
        clock: t0,
        queue,
        cost,
        turns: 0,
    };
    sync.run_from(&mut src);
    let batches = batches.lock().unwrap().clone();
    (batches, metrics.wakeups())
}

/// A list that is slow to complete (a large cluster decoding on a busy node) must not
/// make the loop spin: the window its first objects opened is past long before the
/// list ends, and nothing may be synced until it does. Then the batch comes at once.
#[test]
fn a_list_in_progress_does_not_spin_the_loop() {
    let t0 = Instant::now();
    let mut script = VecDeque::new();
    list(&mut script, t0, Kind::Namespace, vec![]);
    script.push_back(at(t0, Msg::Init(Kind::Pod)));
    script.push_back(at(t0, Msg::InitApply(pod(false))));
    // The pod list ends 300 ms later: sixty windows, well under the heartbeat.
    let t1 = t0 + Duration::from_millis(300);
    script.push_back(at(t1, Msg::InitDone(Kind::Pod)));
    list(&mut script, t1, Kind::NetworkPolicy, vec![]);
    list(&mut script, t1, Kind::ClusterNetworkPolicy, vec![]);
    list(&mut script, t1, Kind::Node, vec![]);
    script.push_back(at(t1 + Duration::from_millis(100), Msg::Shutdown));
    let sent = script.len() as u64;
    let (batches, turns) = run(t0, script, Duration::ZERO);
    // A loop that waits wakes at most once per message; one that spins never ends
    // (the source panics).
    assert!(
        turns <= sent,
        "{turns} turns of the loop for {sent} messages"
    );
    assert_eq!(
        batches,
        vec![1],
        "the first sync, once listed, before Shutdown"
    );
}

/// Events arriving faster than the loop handles them (a rollout, a drain, the relist
/// of a large cluster: the channel never empties) must reach the kernel window by
/// window while they keep coming, not once the stream stops. Here the producer sends
/// an event every millisecond and each costs the loop two: the channel never empties
/// until the stream ends, so a loop that syncs only on an empty channel makes one
/// batch, at the end.
#[test]
fn a_stream_faster_than_the_loop_is_batched_while_it_lasts() {
    let t0 = Instant::now();
    let mut script = VecDeque::new();
    let ns = object(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "x", "labels": {"ns": "x"}}}));
    list(&mut script, t0, Kind::Namespace, vec![ns]);
    list(&mut script, t0, Kind::Pod, vec![pod(false)]);
    let policy = object(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": "x", "name": "only-web"},
        "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"]}}));
    list(&mut script, t0, Kind::NetworkPolicy, vec![policy]);
    list(&mut script, t0, Kind::ClusterNetworkPolicy, vec![]);
    list(&mut script, t0, Kind::Node, vec![]);
    // Every event is a new pod the policy isolates: each batch has a change.
    let start = t0 + Duration::from_secs(1);
    let events = 2000u32;
    for i in 0..events {
        let t = start + Duration::from_millis(i.into());
        let ip = format!("10.244.{}.{}", 100 + i / 200, 10 + i % 200);
        let db = object(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "x", "name": format!("db-{i}"), "labels": {"role": "db"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}));
        script.push_back(at(t, Msg::Apply(db)));
    }
    let end = start + Duration::from_millis(events.into());
    script.push_back(at(end, Msg::Shutdown));
    let (batches, _) = run(t0, script, Duration::from_millis(2));
    assert_eq!(
        batches.first(),
        Some(&(events as usize + 1)),
        "the first sync, before the stream"
    );
    // Each batch stops taking in at the events that arrived after it was due, or after
    // the catch-up's time: 2000 events of 2 ms, about 125 a batch.
    let during = batches[1..].iter().filter(|left| **left > 1).count();
    assert!(
        during >= 10,
        "{during} batches while {events} events streamed in (5 ms windows): {batches:?}"
    );
    assert!(
        batches.len() < 40,
        "a batch per handful of events, not per backlog: {batches:?}"
    );
}
