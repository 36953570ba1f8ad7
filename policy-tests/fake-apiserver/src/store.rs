//! The object store: every object by resource type and namespace/name, the global
//! resourceVersion counter, the retained change history (the "watch window") with its
//! compaction point, and the registry of open watches that changes are fanned out to.

use crate::object;
use crate::resources::{storage, RESOURCES};
use crate::watch::{Msg, Subscriber, WatchFilter};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects. Ordered like
/// the real server's etcd keys, so lists come out sorted by namespace then name.
pub type Key = (String, String);

/// How many changes are retained for watches resuming from an older resourceVersion.
pub const DEFAULT_HISTORY_LIMIT: usize = 100_000;

/// A stored object and its creation order.
#[derive(Debug, Clone)]
pub struct Entry {
    pub obj: Arc<Value>,
    pub seq: u64,
}

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

/// One change in the history. For deletions `new` is the last state of the object,
/// carrying the resourceVersion of the deletion.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub rv: u64,
    pub res: usize,
    pub change: Change,
    pub old: Option<Arc<Value>>,
    pub new: Arc<Value>,
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    NotFound(String),
    AlreadyExists(String),
    Conflict(String),
    Invalid(String),
}

/// How a write treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail if it exists (POST).
    Create,
    /// Fail if it does not exist (PUT, PATCH).
    Update,
    /// Either (the test API's `apply`, server-side apply).
    Upsert,
}

/// Where a new watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// From now on, nothing replayed.
    Now,
    /// `ADDED` for every current object first; with `end_bookmark`, then the
    /// `k8s.io/initial-events-end` bookmark (streaming lists).
    InitialState { end_bookmark: bool },
    /// Replay retained changes after this resourceVersion.
    After(u64),
}

/// All state behind the lock.
#[derive(Debug)]
pub struct Store {
    rv: u64,
    seq: u64,
    objects: Vec<BTreeMap<Key, Entry>>,
    history: VecDeque<HistoryEntry>,
    history_limit: usize,
    /// Watches and continue tokens from before this resourceVersion get 410.
    compacted: u64,
    watches: Vec<Subscriber>,
    next_watch_id: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            rv: 1,
            seq: 0,
            objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
            history: VecDeque::new(),
            history_limit: DEFAULT_HISTORY_LIMIT,
            compacted: 0,
            watches: Vec::new(),
            next_watch_id: 0,
        }
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

impl Store {
    /// The current (latest) resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The compaction point: resuming from an older resourceVersion gets 410 Gone.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit.max(1);
        self.trim_history();
    }

    pub fn open_watches(&self) -> usize {
        self.watches.iter().filter(|w| !w.tx.is_closed()).count()
    }

    pub fn get(&self, res: usize, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let key = (namespace.to_string(), name.to_string());
        self.objects[storage(res)].get(&key).map(|e| e.obj.clone())
    }

    /// Objects of a type in key order, starting after `after`, only in `namespace`.
    pub fn range<'a>(
        &'a self,
        res: usize,
        namespace: Option<&'a str>,
        after: Option<Key>,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<Value>)> + 'a {
        use std::ops::Bound;
        let lower = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        self.objects[storage(res)]
            .range((lower, Bound::Unbounded))
            .filter(move |(k, _)| namespace.is_none_or(|ns| k.0 == ns))
            .map(|(k, e)| (k, &e.obj))
    }

    /// Every Event object (both API groups) in creation order.
    pub fn events(&self) -> Vec<Value> {
        let mut all: Vec<&Entry> = RESOURCES
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_event())
            .flat_map(|(i, _)| self.objects[i].values())
            .collect();
        all.sort_by_key(|e| e.seq);
        all.into_iter().map(|e| (*e.obj).clone()).collect()
    }

    /// Stores an object of type `res` (its apiVersion/kind are overwritten), filling in
    /// namespace, uid, creationTimestamp, a generated name and a new resourceVersion.
    /// A `metadata.resourceVersion` in an update is a precondition.
    pub fn write(
        &mut self,
        res: usize,
        obj: Value,
        mode: WriteMode,
    ) -> Result<Arc<Value>, StoreError> {
        // Kept at the storage version; readers see it at theirs.
        let res = storage(res);
        let r = &RESOURCES[res];
        let Value::Object(mut map) = obj else {
            return Err(StoreError::Invalid(
                "the object is not a JSON object".into(),
            ));
        };
        map.insert("apiVersion".into(), json!(r.api_version()));
        map.insert("kind".into(), json!(r.kind));
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        let Value::Object(meta) = meta else {
            return Err(StoreError::Invalid("metadata is not an object".into()));
        };
        if r.namespaced {
            let ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
            if ns.is_empty() {
                meta.insert("namespace".into(), json!("default"));
            }
        } else {
            meta.remove("namespace");
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() && mode == WriteMode::Create => {
                    let generated = format!("{prefix}{}", object::name_suffix(self.seq + self.rv));
                    meta.insert("name".into(), json!(generated));
                }
                _ => {
                    return Err(StoreError::Invalid(
                        "metadata.name: Required value: name or generateName is required".into(),
                    ))
                }
            }
        }
        let mut obj = Value::Object(map);
        let key: Key = (
            meta_str(&obj, "namespace").unwrap_or("").to_string(),
            meta_str(&obj, "name").unwrap_or("").to_string(),
        );
        let existing = self.objects[res].get(&key).cloned();
        let described = format!("{} \"{}\"", r.qualified_plural(), key.1);
        match (&existing, mode) {
            (Some(_), WriteMode::Create) => {
                return Err(StoreError::AlreadyExists(format!(
                    "{described} already exists"
                )))
            }
            (None, WriteMode::Update) => {
                return Err(StoreError::NotFound(format!("{described} not found")))
            }
            _ => {}
        }
        if let (Some(old), WriteMode::Update) = (&existing, mode) {
            let want = meta_str(&obj, "resourceVersion").unwrap_or("");
            let have = meta_str(&old.obj, "resourceVersion").unwrap_or("");
            if !want.is_empty() && want != have {
                return Err(StoreError::Conflict(format!(
                    "Operation cannot be fulfilled on {described}: the object has been modified; \
                     please apply your changes to the latest version and try again"
                )));
            }
        }
        self.rv += 1;
        self.seq += 1;
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("metadata checked above");
        let old_meta = existing.as_ref().and_then(|e| e.obj.get("metadata"));
        for (field, fresh) in [
            ("uid", object::uid(self.seq)),
            ("creationTimestamp", object::now_rfc3339()),
        ] {
            let kept = old_meta
                .and_then(|m| m.get(field))
                .filter(|v| v.is_string())
                .cloned();
            let given = meta.get(field).filter(|v| v.is_string()).cloned();
            meta.insert(field.into(), kept.or(given).unwrap_or_else(|| json!(fresh)));
        }
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        let obj = Arc::new(obj);
        let seq = existing.as_ref().map_or(self.seq, |e| e.seq);
        self.objects[res].insert(
            key,
            Entry {
                obj: obj.clone(),
                seq,
            },
        );
        let change = if existing.is_some() {
            Change::Modified
        } else {
            Change::Added
        };
        self.record(HistoryEntry {
            rv: self.rv,
            res,
            change,
            old: existing.map(|e| e.obj),
            new: obj.clone(),
        });
        Ok(obj)
    }

    /// Removes an object; returns its last state, at the deletion's resourceVersion.
    pub fn remove(&mut self, res: usize, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let res = storage(res);
        let key = (namespace.to_string(), name.to_string());
        let old = self.objects[res].remove(&key)?;
        self.rv += 1;
        let mut gone = (*old.obj).clone();
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let gone = Arc::new(gone);
        self.record(HistoryEntry {
            rv: self.rv,
            res,
            change: Change::Deleted,
            old: Some(old.obj),
            new: gone.clone(),
        });
        Some(gone)
    }

    fn record(&mut self, entry: HistoryEntry) {
        self.watches.retain(|w| w.offer(&entry));
        self.history.push_back(entry);
        self.trim_history();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = self.compacted.max(e.rv);
            }
        }
    }

    /// Opens a watch: queues the replayed events, then registers it for live ones.
    /// `Err` carries the 410 message when `After(rv)` is older than the window.
    pub fn register(
        &mut self,
        filter: WatchFilter,
        start: WatchStart,
    ) -> Result<(u64, mpsc::UnboundedReceiver<Msg>), String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let send = |line: Bytes| {
            let _ = tx.send(Msg::Line(line));
        };
        match start {
            WatchStart::Now => {}
            WatchStart::InitialState { end_bookmark } => {
                for (_, obj) in self.range(filter.res, filter.namespace.as_deref(), None) {
                    if filter.matches(obj) {
                        send(filter.line("ADDED", obj));
                    }
                }
                if end_bookmark {
                    send(filter.bookmark(self.rv, true));
                }
            }
            WatchStart::After(rv) => {
                if rv < self.compacted {
                    return Err(format!(
                        "too old resource version: {rv} ({})",
                        self.compacted
                    ));
                }
                for e in self.history.iter().filter(|e| e.rv > rv) {
                    if let Some(line) = filter.encode(e) {
                        send(line);
                    }
                }
            }
        }
        self.next_watch_id += 1;
        let id = self.next_watch_id;
        self.watches.push(Subscriber { id, filter, tx });
        Ok((id, rx))
    }

    pub fn unregister(&mut self, id: u64) {
        self.watches.retain(|w| w.id != id);
    }

    /// Compacts the history at the current resourceVersion and ends every watch with a
    /// 410 `ERROR` event.
    pub fn expire(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
        let line = crate::watch::gone_line(&format!(
            "The resourceVersion for the provided watch is too old. Compacted at {}",
            self.rv
        ));
        for w in self.watches.drain(..) {
            let _ = w.tx.send(Msg::Line(line.clone()));
            let _ = w.tx.send(Msg::End);
        }
    }

    /// Aborts every watch connection.
    pub fn abort_watches(&mut self) {
        for w in self.watches.drain(..) {
            let _ = w.tx.send(Msg::Abort);
        }
    }

    /// Sends a bookmark at the current resourceVersion to watches that allow them.
    pub fn bookmarks(&mut self) {
        let rv = self.rv;
        self.watches.retain(|w| {
            if w.filter.bookmarks {
                w.tx.send(Msg::Line(w.filter.bookmark(rv, false))).is_ok()
            } else {
                !w.tx.is_closed()
            }
        });
    }
}
