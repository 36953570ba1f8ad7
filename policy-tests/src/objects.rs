//! The objects of a step, keyed, and how a step reaches what follows them: the harness's
//! index and each netlink node's state take the step's differences the way watch events
//! would bring them, through the one relist reset of the library
//! ([`Index::reset`], [`NodeState::reset`]).
//!
//! ```text
//! step objects --keyed--> [(ObjectKey, Value)] --follow(before, now)--> apply (changed, new), reset (gone)
//! ```
//!
//! Below `run` and every backend: they all read these types, none through another.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use nftpol::index::Index;
use nftpol::input::{object_from_value, Kind, Object};
use nftpol::state::NodeState;
use serde_json::Value;

/// An object's kind, namespace (none when cluster-scoped) and name.
pub type ObjectKey = (Kind, Option<String>, String);

/// The objects in force, keyed by kind, namespace and name.
pub type Objects = BTreeMap<ObjectKey, Value>;

/// Every kind nftpol reads, in creation order (namespaces first, policies last).
const KINDS: [Kind; 5] = [
    Kind::Namespace,
    Kind::Pod,
    Kind::NetworkPolicy,
    Kind::ClusterNetworkPolicy,
    Kind::Node,
];

/// Puts `v` in audit mode (`nftpol.io/mode: audit`) when it is a policy (`--audit`).
pub fn audit(v: &mut Value) {
    let policy =
        v.get("kind").and_then(Value::as_str) == Some("NetworkPolicy") || crate::kinds::is_cnp(v);
    if !policy {
        return;
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(
                nftpol::policy::MODE_ANNOTATION.to_string(),
                Value::String("audit".into()),
            );
        }
    }
}

/// `objects` with their keys, in their order; `source` names them in errors.
pub fn keyed(objects: Vec<Value>, source: &str) -> Result<Vec<(ObjectKey, Value)>> {
    objects
        .into_iter()
        .map(|value| {
            let obj = object(&value, source)?;
            let key = (
                obj.kind(),
                obj.namespace().map(str::to_string),
                obj.name().to_string(),
            );
            Ok((key, value))
        })
        .collect()
}

fn object(value: &Value, source: &str) -> Result<Object> {
    object_from_value(value.clone(), source)?.context("an object of a kind nftpol skips")
}

/// What a step's objects are applied to.
pub trait Store {
    /// Adds or replaces an object.
    fn apply(&mut self, obj: Object) -> Result<()>;
    /// Deletes every object of `kind` that `seen` does not name.
    fn reset(&mut self, kind: Kind, seen: &BTreeSet<(String, String)>);
}

impl Store for Index {
    fn apply(&mut self, obj: Object) -> Result<()> {
        let what = format!("applying {} {}", obj.kind().name(), obj.name());
        Index::apply(self, obj).context(what)?;
        Ok(())
    }
    fn reset(&mut self, kind: Kind, seen: &BTreeSet<(String, String)>) {
        Index::reset(self, kind, seen)
    }
}

impl Store for NodeState {
    fn apply(&mut self, obj: Object) -> Result<()> {
        // An object that cannot be compiled is enforced fail-closed, as the index of the
        // step holds it: the error was reported when the step was read.
        let _ = self.apply_reporting(obj);
        Ok(())
    }
    fn reset(&mut self, kind: Kind, seen: &BTreeSet<(String, String)>) {
        NodeState::reset(self, kind, seen)
    }
}

/// Brings `store` from the objects `before` to `now` (in the order given), as a relist
/// of every kind would: changed and new objects applied, then what `now` does not name
/// deleted (policies first, namespaces last: the reverse of creation).
pub fn follow<'a>(
    store: &mut impl Store,
    before: &Objects,
    now: impl IntoIterator<Item = (&'a ObjectKey, &'a Value)>,
    source: &str,
) -> Result<()> {
    let mut seen: BTreeMap<Kind, BTreeSet<(String, String)>> = BTreeMap::new();
    for (key, value) in now {
        let (kind, ns, name) = key;
        seen.entry(*kind)
            .or_default()
            .insert((ns.clone().unwrap_or_default(), name.clone()));
        if before.get(key) != Some(value) {
            store.apply(object(value, source)?)?;
        }
    }
    for kind in KINDS.into_iter().rev() {
        store.reset(kind, &seen.remove(&kind).unwrap_or_default());
    }
    Ok(())
}
