//! A watcher's events as the sync loop's messages: the one translation both the
//! built-in kinds' watchers (`watch`) and the ClusterNetworkPolicy watcher (`cnp_watch`)
//! use. Knows nothing of any kind's fields.

use kube::runtime::watcher::{self, Event};

use super::sync::Msg;
use crate::input::{Kind, Object};

/// The message for one watcher event; `None` for an error (logged; kube's watcher
/// retries with backoff) or an object `wrap` could not convert (it logs why).
pub(super) fn message<K>(
    kind: Kind,
    event: watcher::Result<Event<K>>,
    wrap: impl Fn(K) -> Option<Object>,
) -> Option<Msg>
where
    K: kube::Resource,
{
    Some(match event {
        Ok(Event::Init) => Msg::Init(kind),
        Ok(Event::InitApply(o)) => Msg::InitApply(wrap(o)?),
        Ok(Event::InitDone) => Msg::InitDone(kind),
        Ok(Event::Apply(o)) => Msg::Apply(wrap(o)?),
        Ok(Event::Delete(o)) => {
            let meta = o.meta();
            let ns = if kind.cluster_scoped() {
                None
            } else {
                meta.namespace.clone()
            };
            Msg::Delete(kind, ns, meta.name.clone().unwrap_or_default())
        }
        Err(e) => {
            tracing::warn!(kind = kind.name(), error = %crate::error::Chain(&e), "watch error; retrying with backoff");
            return None;
        }
    })
}
