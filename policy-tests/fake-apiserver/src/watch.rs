//! Watch streams: who is watching what (filter and channel per open watch), how a store
//! change becomes a newline-delimited JSON watch event for one watcher, and the chunked
//! response body that streams those events, ends cleanly (timeout, 410) or aborts (a
//! dropped connection).

use crate::object;
use crate::resources::RESOURCES;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, HistoryEntry, Store};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Sleep;

/// The annotation on the bookmark that ends the initial events of a streaming list.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// What one watch asked for.
#[derive(Debug, Clone)]
pub struct WatchFilter {
    /// Index into [`RESOURCES`].
    pub res: usize,
    /// Only objects of this namespace (a namespaced watch URL).
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// The client asked for `PartialObjectMetadata`.
    pub metadata_only: bool,
}

impl WatchFilter {
    /// Whether an object of this filter's type is in the watched set.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns) {
                return false;
            }
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// One `{"type": .., "object": ..}` line.
    pub fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let obj = object::at_version(obj, self.res);
        let object = if self.metadata_only {
            object::partial_metadata(&obj)
        } else {
            obj
        };
        event_line(kind, &object)
    }

    /// The watch event this change produces for this watcher, if any. A modification
    /// that moves an object into (out of) the selected set is `ADDED` (`DELETED`), as
    /// the real server does.
    pub fn encode(&self, e: &HistoryEntry) -> Option<Bytes> {
        if e.res != crate::resources::storage(self.res) {
            return None;
        }
        let now = self.matches(&e.new);
        let kind = match e.change {
            Change::Added if now => "ADDED",
            Change::Deleted if now => "DELETED",
            Change::Modified => {
                let before = e.old.as_deref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        Some(self.line(kind, &e.new))
    }

    /// A `BOOKMARK` event at `rv`, optionally marking the end of the initial events.
    pub fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let r = &RESOURCES[self.res];
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            meta["annotations"] = json!({ INITIAL_EVENTS_END: "true" });
        }
        let (api_version, kind) = if self.metadata_only {
            ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata")
        } else {
            (r.api_version(), r.kind)
        };
        event_line(
            "BOOKMARK",
            &json!({ "apiVersion": api_version, "kind": kind, "metadata": meta }),
        )
    }
}

/// Serializes one watch event followed by a newline.
pub fn event_line(kind: &str, object: &Value) -> Bytes {
    // Written by hand to keep the real server's field order: type, then object.
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(b"{\"type\":\"");
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(b"\",\"object\":");
    serde_json::to_writer(&mut v, object).expect("JSON values always serialize");
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

/// The `ERROR` event telling a watcher its resourceVersion is gone (410).
pub fn gone_line(message: &str) -> Bytes {
    event_line("ERROR", &object::status(410, "Expired", message, None))
}

/// What the store sends down a watch's channel.
#[derive(Debug)]
pub enum Msg {
    /// One serialized event.
    Line(Bytes),
    /// End the response cleanly (terminating chunk).
    End,
    /// Abort the connection without the terminating chunk.
    Abort,
}

/// An open watch, as registered in the store.
#[derive(Debug)]
pub struct Subscriber {
    pub id: u64,
    pub filter: WatchFilter,
    pub tx: mpsc::UnboundedSender<Msg>,
}

impl Subscriber {
    /// Sends the event for this change, if any; false when the watch is gone.
    pub fn offer(&self, e: &HistoryEntry) -> bool {
        match self.filter.encode(e) {
            Some(line) => self.tx.send(Msg::Line(line)).is_ok(),
            None => !self.tx.is_closed(),
        }
    }
}

/// Unregisters a watch from the store when its response body is dropped (the client
/// went away or the stream ended).
#[derive(Debug)]
pub struct WatchGuard {
    pub store: Weak<Mutex<Store>>,
    pub id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(store) = self.store.upgrade() {
            crate::lock(&store).unregister(self.id);
        }
    }
}

/// The streaming body of a watch response.
#[derive(Debug)]
pub struct WatchBody {
    rx: mpsc::UnboundedReceiver<Msg>,
    deadline: Option<Pin<Box<Sleep>>>,
    done: bool,
    _guard: Option<WatchGuard>,
}

impl WatchBody {
    /// A body fed by `rx`, ending cleanly after `timeout`.
    pub fn new(
        rx: mpsc::UnboundedReceiver<Msg>,
        timeout: Option<Duration>,
        guard: Option<WatchGuard>,
    ) -> Self {
        WatchBody {
            rx,
            deadline: timeout.map(|t| Box::pin(tokio::time::sleep(t))),
            done: false,
            _guard: guard,
        }
    }

    /// A body of the given lines and then the end.
    pub fn fixed(lines: Vec<Bytes>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        for l in lines {
            let _ = tx.send(Msg::Line(l));
        }
        let _ = tx.send(Msg::End);
        WatchBody::new(rx, None, None)
    }
}

impl Body for WatchBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Msg::Line(line))) => return Poll::Ready(Some(Ok(Frame::data(line)))),
            Poll::Ready(Some(Msg::End)) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Msg::Abort)) | Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "watch connection dropped by the fake API server",
                ))));
            }
            Poll::Pending => {}
        }
        if let Some(deadline) = self.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                self.done = true;
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
