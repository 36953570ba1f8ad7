//! From a file's bytes to documents: encoding (UTF-8, an optional byte order mark), YAML or
//! JSON syntax, and the parser's limits. The limits guard against expansion attacks (alias
//! bombs, deep nesting), not against size: they grow with the input, so any dump kubectl
//! prints is read. Documents come out slimmed as `slim` reads them.

use crate::error::{Error, Result};

pub use super::slim::Document;

/// The structural nesting a Kubernetes object needs is about 15 levels; Lists of Lists add
/// two per level. Deeper input is refused as an attack on the parser's stack.
pub const MAX_DEPTH: usize = 64;

/// Checks the encoding: UTF-8, with a byte order mark allowed (and dropped) at the start,
/// as kubectl accepts. Invalid UTF-8 is reported with its byte offset, line and column.
pub fn decode<'a>(bytes: &'a [u8], source: &str) -> Result<&'a str> {
    let bom = if bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let bytes = &bytes[bom..];
    std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        // Valid up to `offset`, so the column counts characters.
        let column =
            std::str::from_utf8(&before[line_start..]).map_or(0, |s| s.chars().count()) as u64 + 1;
        Error::Encoding {
            source_name: source.into(),
            // Counted in the file, as `cmp` or a hex editor would.
            offset: bom + e.valid_up_to(),
            line,
            column,
        }
    })
}

/// The documents of one file, YAML (any number of `---` documents) or JSON (one or more
/// values), each slimmed as the module says. Null documents are dropped.
pub fn documents(text: &str, source: &str) -> Result<Vec<Document>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start().chars().next();
    let docs = if matches!(first, Some('{') | Some('[')) {
        json_documents(text, source)?
    } else {
        yaml_documents(text, source)?
    };
    Ok(docs.into_iter().filter(|d| !d.value.is_null()).collect())
}

fn json_documents(text: &str, source: &str) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Document>() {
        match value {
            Ok(v) => docs.push(v),
            Err(e) => {
                let (line, column) = (e.line() as u64, e.column() as u64);
                let message = e.to_string();
                // serde_json appends " at line L column C"; the location is our prefix.
                let message = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(m, _)| m)
                    .to_string();
                if message.starts_with("recursion limit exceeded") {
                    return Err(Error::Limit {
                        source_name: source.into(),
                        line,
                        column,
                        message: "nested more than 128 levels deep (the limit guards the parser against deep-nesting attacks; no Kubernetes object nests so deep)".into(),
                    });
                }
                return Err(Error::Syntax {
                    source_name: source.into(),
                    line,
                    column,
                    message,
                });
            }
        }
    }
    Ok(docs)
}

/// Limits that grow with the input. Without aliases a YAML text cannot produce more
/// events, nodes, documents or scalar bytes than it has bytes, so these never refuse a
/// plain file of any size; with aliases the expansion is held to the size of the text.
fn budget(len: usize) -> serde_saphyr::Budget {
    let mut b = serde_saphyr::Budget::default();
    b.max_reader_input_bytes = None;
    b.max_events = b.max_events.max(len.saturating_add(1024));
    b.max_nodes = b.max_nodes.max(len.saturating_add(1024));
    b.max_documents = b.max_documents.max(len.saturating_add(1024));
    b.max_total_scalar_bytes = b.max_total_scalar_bytes.max(len.saturating_add(1024));
    b.max_recorded_anchor_events = b.max_recorded_anchor_events.max(len.saturating_add(1024));
    b.max_recorded_anchor_bytes = b.max_recorded_anchor_bytes.max(len.saturating_add(1024));
    b.max_depth = MAX_DEPTH;
    b
}

fn yaml_documents(text: &str, source: &str) -> Result<Vec<Document>> {
    let mut options = serde_saphyr::Options::default();
    // YAML 1.2 booleans only: `y`, `yes`, `on` stay strings (label values like `ns: y`).
    options.strict_booleans = true;
    options.budget = Some(budget(text.len()));
    match serde_saphyr::from_multiple_with_options::<Option<Document>>(text, options) {
        Ok(docs) => Ok(docs.into_iter().flatten().collect()),
        Err(e) => Err(yaml_error(e, source)),
    }
}

fn yaml_error(e: serde_saphyr::Error, source: &str) -> Error {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let mut inner = &e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    if let serde_saphyr::Error::Budget { breach, .. } = inner {
        return Error::Limit {
            source_name: source.into(),
            line,
            column,
            message: breach_words(breach),
        };
    }
    // The first line of the message carries the problem; the rest is a snippet that
    // would repeat the location.
    let message = e.to_string();
    let mut message = message.lines().next().unwrap_or("").trim().to_string();
    // The location is printed once, in our own prefix.
    for prefix in ["error:", &format!("line {line} column {column}:")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            message = rest.trim().to_string();
        }
    }
    Error::Syntax {
        source_name: source.into(),
        line,
        column,
        message,
    }
}

/// A budget breach in words: which limit, and why it is there.
fn breach_words(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let expansion = "more than the file's size allows: aliases (*name) expand the text (the limit grows with the file's size and guards against alias expansion attacks)";
    match breach {
        B::Depth { depth } => format!(
            "nested {depth} levels deep, more than the {MAX_DEPTH} allowed (the limit guards the parser against deep-nesting attacks; no Kubernetes object nests so deep)"
        ),
        B::Nodes { nodes } => format!("{nodes} values, {expansion}"),
        B::Events { events } => format!("{events} parser events, {expansion}"),
        B::ScalarBytes { total_scalar_bytes } => {
            format!("{total_scalar_bytes} bytes of strings, {expansion}")
        }
        B::Documents { documents } => format!("{documents} documents, {expansion}"),
        B::RecordedAnchorEvents { .. } | B::RecordedAnchorBytes { .. } => {
            format!("anchors (&name) retain {expansion}")
        }
        B::Aliases { aliases } => format!(
            "{aliases} aliases (*name), more than the limit that guards against alias expansion attacks"
        ),
        B::Anchors { anchors } => format!(
            "{anchors} anchors (&name), more than the limit that guards against alias expansion attacks"
        ),
        B::AliasAnchorRatio { aliases, anchors } => format!(
            "{aliases} aliases (*name) for {anchors} anchors (&name): more than 10 uses per anchor, the shape of an alias expansion attack"
        ),
        B::MergeKeys { merge_keys } => format!(
            "{merge_keys} merge keys (<<), more than the limit that guards against expansion attacks"
        ),
        other => format!("a limit of the YAML parser was hit ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The documents' values, each with its items put back.
    fn values(text: &str, source: &str) -> Vec<Value> {
        documents(text, source)
            .unwrap()
            .into_iter()
            .map(|d| {
                let mut v = d.value;
                if let Some(items) = d.items {
                    let items = items.iter().map(|t| serde_json::from_str(t).unwrap());
                    v["items"] = Value::Array(items.collect());
                }
                v
            })
            .collect()
    }

    #[test]
    fn byte_order_mark_is_dropped() {
        for text in ["\u{feff}{\"a\": 1}", "\u{feff}a: 1\n"] {
            let docs = values(decode(text.as_bytes(), "t").unwrap(), "t");
            assert_eq!(docs, [serde_json::json!({"a": 1})], "{text:?}");
        }
    }

    #[test]
    fn invalid_utf8_has_its_offset() {
        let err = decode(b"a: 1\nbb: \xff\n", "t").unwrap_err().to_string();
        assert!(err.contains("byte offset 9"), "{err}");
        assert!(err.contains("t:2:5"), "{err}");
        let err = decode(b"\xEF\xBB\xBFa: \xff\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t:1:4") && err.contains("byte offset 6"),
            "{err}"
        );
    }

    #[test]
    fn metadata_bulk_is_skipped_elsewhere_kept() {
        let text = r#"{"metadata": {"name": "a", "annotations": {"x": "y"}, "managedFields": [{}]},
                       "spec": {"annotations": 1}}"#;
        let docs = values(text, "t");
        assert_eq!(
            docs,
            [
                serde_json::json!({"metadata": {"name": "a", "annotations": {}}, "spec": {"annotations": 1}})
            ]
        );
        // A policy's mode is the one annotation kept.
        let text = r#"{"metadata": {"annotations": {"x": "y", "nftpol.io/mode": "audit"}}}"#;
        assert_eq!(
            values(text, "t"),
            [serde_json::json!({"metadata": {"annotations": {"nftpol.io/mode": "audit"}}})]
        );
    }

    #[test]
    fn pods_and_nodes_keep_what_enforcement_reads() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "x", "labels": {"k": "v"}, "uid": "u"},
            "spec": {"nodeName": "n", "volumes": [{}], "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
                     "initContainers": [{"name": "s", "env": [], "ports": []}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}], "conditions": []}});
        let want = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "x", "labels": {"k": "v"}},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "ports": [{"containerPort": 80}]}],
                     "initContainers": [{"name": "s", "ports": []}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]}});
        assert_eq!(values(&pod.to_string(), "t"), [want]);
        // Other kinds, and a Pod of another apiVersion, are kept whole.
        let other = serde_json::json!({"apiVersion": "v2", "kind": "Pod", "spec": {"volumes": []}});
        assert_eq!(values(&other.to_string(), "t"), [other]);
    }

    #[test]
    fn duplicate_json_keys_are_refused() {
        let err = documents("{\"a\": 1,\n \"a\": 2}", "t.json")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.json:2:"), "{err}");
        assert!(err.contains("duplicate key \"a\""), "{err}");
    }

    #[test]
    fn large_input_is_within_the_limits() {
        // 300,000 values: over serde-saphyr's default of 250,000 nodes.
        let text = "items:\n".to_string() + &"- {a: 1}\n".repeat(100_000);
        let docs = documents(&text, "t").unwrap();
        let items = docs[0].items.as_ref().unwrap();
        assert_eq!(items.len(), 100_000);
        assert_eq!(&*items[0], r#"{"a":1}"#);
    }

    #[test]
    fn alias_bomb_is_refused_in_words() {
        let mut text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_string();
        for i in 0..9u8 {
            let prev = (b'a' + i) as char;
            let next = (b'a' + i + 1) as char;
            let refs = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("{next}: &{next} [{refs}]\n"));
        }
        let err = documents(&text, "bomb.yaml").unwrap_err();
        assert_eq!(err.label(), "limit", "{err}");
        let msg = err.to_string();
        assert!(msg.contains("aliases"), "{msg}");
        assert!(!msg.contains("syntax") && !msg.contains('{'), "{msg}");
    }

    #[test]
    fn deep_nesting_is_refused_in_words() {
        let yaml = "[".repeat(200) + &"]".repeat(200);
        let err = documents(&format!("a: {yaml}"), "deep.yaml").unwrap_err();
        assert_eq!(err.label(), "limit", "{err}");
        assert!(err.to_string().contains("levels deep"), "{err}");
        let err = documents(&yaml, "deep.json").unwrap_err();
        assert_eq!(err.label(), "limit", "{err}");
        assert!(err.to_string().contains("levels deep"), "{err}");
    }
}
