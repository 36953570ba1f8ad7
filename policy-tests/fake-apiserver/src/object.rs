//! Object shapes the server produces: `metav1.Status` errors, `PartialObjectMetadata`
//! projections, `Table`s, JSON merge patches (RFC 7386), generated names and RFC 3339
//! timestamps.

use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// A `metav1.Status` failure, the body of every error response and of watch `ERROR`
/// events.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

/// `details` of a Status about one named object.
pub fn details(name: &str, group: &str, plural: &str) -> Value {
    let mut d = json!({ "name": name, "kind": plural });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

/// The `PartialObjectMetadata` projection of an object (what metadata-only clients ask
/// for with `Accept: ...;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`).
/// `obj` with the `apiVersion` of resource row `res` (see [`crate::resources::storage`]).
pub fn at_version(obj: &Value, res: usize) -> Value {
    let mut out = obj.clone();
    let want = crate::resources::RESOURCES[res].api_version();
    if out.get("apiVersion").and_then(Value::as_str) != Some(want.as_str()) {
        out["apiVersion"] = json!(want);
    }
    out
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A `meta.k8s.io/v1` `Table` of `objects` with the columns the real server's default
/// table convertor gives types without printers (Name, Created At), each row carrying
/// the object's `PartialObjectMetadata` (the default `includeObject=Metadata`), which
/// `kubectl get -A` reads the namespace column from.
pub fn table(objects: &[Value], metadata: Value) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let meta = |f: &str| o["metadata"][f].as_str().unwrap_or("").to_string();
            json!({
                "cells": [meta("name"), meta("creationTimestamp")],
                "object": partial_metadata(o),
            })
        })
        .collect();
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "Table",
        "metadata": metadata,
        "columnDefinitions": [
            { "name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0 },
            { "name": "Created At", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0 },
        ],
        "rows": rows,
    })
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(obj) = target else {
        unreachable!("made an object above")
    };
    for (k, v) in patch {
        if v.is_null() {
            obj.remove(k);
        } else {
            merge_patch(obj.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Five lowercase alphanumerics derived from `seed`, like the suffix of `generateName`.
pub fn name_suffix(seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D;
    (0..5)
        .map(|_| {
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// A deterministic UUID-shaped uid for the `n`th stored object.
pub fn uid(n: u64) -> String {
    format!("fa4e0000-0000-4000-8000-{n:012x}")
}

/// The current time as `2006-01-02T15:04:05Z`.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Formats seconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn merge() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        merge_patch(
            &mut t,
            &json!({"a": null, "b": {"c": 5}, "l": [3], "n": "x"}),
        );
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "l": [3], "n": "x"}));
    }

    #[test]
    fn suffixes() {
        assert_eq!(name_suffix(1).len(), 5);
        assert_ne!(name_suffix(1), name_suffix(2));
    }
}
