//! The values documents are read into: JSON values, slimmed while parsing. Metadata fields
//! nothing downstream reads (`managedFields`, `annotations`, most of a kubectl dump's
//! bytes) are skipped; a Pod or Node keeps only what enforcement reads; a key given twice is
//! refused (the API server refuses it; serde_json would keep the last one silently); and a
//! document's top-level `items` are kept as compact JSON text, one item at a time, so that a
//! List of 100,000 pods never exists as one tree of values.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::policy::MODE_ANNOTATION;

/// One document: its value and, when it has a top-level `items` sequence, those items as
/// compact JSON text (and no `items` in `value`).
#[derive(Debug, Default)]
pub struct Document {
    pub value: Value,
    pub items: Option<Vec<Box<str>>>,
}

impl<'de> serde::Deserialize<'de> for Document {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let items = RefCell::new(None);
        let value = ValueSeed {
            metadata: false,
            items: Some(&items),
        }
        .deserialize(d)?;
        Ok(Document {
            value,
            items: items.into_inner(),
        })
    }
}

/// Reads one value; `metadata` when it is an object's `metadata` (whose bulky fields are
/// skipped); `items` at a document's root, where its `items` go.
#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    metadata: bool,
    items: Option<&'a RefCell<Option<Vec<Box<str>>>>>,
}

const PLAIN: ValueSeed<'static> = ValueSeed {
    metadata: false,
    items: None,
};

/// Metadata fields nothing downstream reads: kubectl's dumps carry them for every object,
/// and they are most of its bytes.
const SKIPPED_METADATA: [&str; 1] = ["managedFields"];

/// Reads `metadata.annotations` keeping only [`MODE_ANNOTATION`] (a policy's mode): the
/// rest (the last-applied configuration above all) is most of a dump's bytes and nothing
/// downstream reads it. The result is an object, empty when the mode is not there.
struct Annotations;

impl<'de> DeserializeSeed<'de> for Annotations {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Annotations {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of annotations")
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key != MODE_ANNOTATION {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = map.next_value_seed(PLAIN)?;
            if out.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
        }
        Ok(Value::Object(out))
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> std::result::Result<Value, E> {
        Ok(i64::try_from(v).map_or_else(|_| float(v as f64), |i| Value::Number(i.into())))
    }
    fn visit_u128<E>(self, v: u128) -> std::result::Result<Value, E> {
        Ok(u64::try_from(v).map_or_else(|_| float(v as f64), |i| Value::Number(i.into())))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(float(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(PLAIN)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.metadata && SKIPPED_METADATA.contains(&key.as_str()) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if self.metadata && key == "annotations" {
                let value = map.next_value_seed(Annotations)?;
                if out.insert(key.clone(), value).is_some() {
                    return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                }
                continue;
            }
            let value = match self.items {
                Some(items) if key == "items" => match map.next_value_seed(CompactItems)? {
                    Compact::Items(list) => {
                        *items.borrow_mut() = Some(list);
                        continue;
                    }
                    Compact::Value(v) => v,
                },
                _ => map.next_value_seed(ValueSeed {
                    metadata: key == "metadata",
                    items: None,
                })?,
            };
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            out.insert(key, value);
        }
        if out.get("apiVersion").and_then(Value::as_str) == Some("v1") {
            match out.get("kind").and_then(Value::as_str) {
                Some("Pod") => prune(&mut out, POD_KEEPS),
                Some("Node") => prune(&mut out, NODE_KEEPS),
                _ => {}
            }
        }
        Ok(Value::Object(out))
    }
}

/// What a Pod keeps (a field path, then the fields kept under it; `[]` marks a list's
/// items): what enforcement reads, as the controller's watch keeps it. A pod of a kubectl
/// dump is mostly other things (volumes, conditions, container statuses), and a reader that
/// kept them would need gigabytes for a large cluster. Pods accept unknown fields, so
/// nothing dropped here could have been refused.
const POD_KEEPS: &[(&str, &[&str])] = &[
    ("", &["apiVersion", "kind", "metadata", "spec", "status"]),
    ("metadata", &["name", "namespace", "labels"]),
    (
        "spec",
        &["nodeName", "hostNetwork", "containers", "initContainers"],
    ),
    ("spec.containers[]", &["name", "ports"]),
    ("spec.initContainers[]", &["name", "ports"]),
    ("status", &["phase", "podIP", "podIPs", "hostIP", "hostIPs"]),
];

/// What a Node keeps: its labels, addresses and pod CIDRs (not its images and conditions).
const NODE_KEEPS: &[(&str, &[&str])] = &[
    ("", &["apiVersion", "kind", "metadata", "spec", "status"]),
    ("metadata", &["name", "labels"]),
    ("spec", &["podCIDR", "podCIDRs"]),
    ("status", &["addresses"]),
];

/// Drops every field of `object` that `keeps` does not list (only where the value has the
/// listed shape: a wrongly typed field is left for the typed reader to report).
fn prune(object: &mut Map<String, Value>, keeps: &[(&str, &[&str])]) {
    for (path, keep) in keeps {
        let mut targets: Vec<&mut Map<String, Value>> = vec![&mut *object];
        for step in path.split('.').filter(|s| !s.is_empty()) {
            let (key, each) = match step.strip_suffix("[]") {
                Some(k) => (k, true),
                None => (step, false),
            };
            targets = targets
                .into_iter()
                .filter_map(|m| m.get_mut(key))
                .flat_map(|v| match (v, each) {
                    (Value::Array(items), true) => {
                        items.iter_mut().filter_map(Value::as_object_mut).collect()
                    }
                    (Value::Object(m), false) => vec![m],
                    _ => Vec::new(),
                })
                .collect();
        }
        for m in targets {
            m.retain(|k, _| keep.contains(&k.as_str()));
        }
    }
}

/// A number serde_json can hold; NaN and infinities become null, as in serde_json.
fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// A document's `items`: a sequence as compact JSON text per item, anything else as is.
enum Compact {
    Items(Vec<Box<str>>),
    Value(Value),
}

struct CompactItems;

impl<'de> DeserializeSeed<'de> for CompactItems {
    type Value = Compact;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Compact, D::Error> {
        d.deserialize_any(self)
    }
}

/// Everything but a sequence is read as [`ValueSeed`] reads it.
macro_rules! as_value {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name<E: de::Error>(self, $($arg: $ty),*) -> std::result::Result<Compact, E> {
            PLAIN.$name($($arg),*).map(Compact::Value)
        })*
    };
}

impl<'de> Visitor<'de> for CompactItems {
    type Value = Compact;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    as_value! {
        visit_bool(v: bool);
        visit_i64(v: i64);
        visit_u64(v: u64);
        visit_i128(v: i128);
        visit_u128(v: u128);
        visit_f64(v: f64);
        visit_str(v: &str);
        visit_string(v: String);
        visit_none();
        visit_unit();
    }
    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Compact, D::Error> {
        self.deserialize(d)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Compact, A::Error> {
        PLAIN.visit_map(map).map(Compact::Value)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Compact, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(PLAIN)? {
            out.push(v.to_string().into_boxed_str());
        }
        Ok(Compact::Items(out))
    }
}
