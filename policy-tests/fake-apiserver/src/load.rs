//! Loading objects from files for the `fake-apiserver` binary: YAML (multi-document,
//! `kind: List` or any `*List` with `items`) or JSON (one or more values, e.g. one object
//! per line as `nftpol synth` prints them, or JSON arrays).

use serde_json::Value;
use std::path::Path;

/// Parses every object in `text`; `source` names it in errors.
pub fn objects_from_str(text: &str, source: &str) -> Result<Vec<Value>, String> {
    let first = text.trim_start().chars().next();
    let docs: Vec<Value> = if matches!(first, Some('{') | Some('[')) {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{source}:{}:{}: {e}", e.line(), e.column()))?
    } else {
        serde_saphyr::from_multiple::<Option<Value>>(text)
            .map_err(|e| {
                let msg = e.to_string();
                format!("{source}: {}", msg.lines().next().unwrap_or(""))
            })?
            .into_iter()
            .flatten()
            .collect()
    };
    let mut out = Vec::new();
    for doc in docs {
        flatten(doc, source, &mut out)?;
    }
    Ok(out)
}

fn flatten(doc: Value, source: &str, out: &mut Vec<Value>) -> Result<(), String> {
    match doc {
        Value::Null => Ok(()),
        Value::Array(items) => items.into_iter().try_for_each(|v| flatten(v, source, out)),
        Value::Object(mut map) => {
            let is_list = map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"));
            if is_list {
                match map.remove("items") {
                    Some(Value::Array(items)) => {
                        items.into_iter().try_for_each(|v| flatten(v, source, out))
                    }
                    Some(Value::Null) | None => Ok(()),
                    Some(_) => Err(format!("{source}: a List whose items is not an array")),
                }
            } else {
                out.push(Value::Object(map));
                Ok(())
            }
        }
        other => Err(format!("{source}: expected an object, got {other}")),
    }
}

/// Reads and parses one file.
pub fn objects_from_file(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    objects_from_str(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_list_and_documents() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: Namespace\n  metadata: {name: a}\n---\nkind: Pod\nmetadata:\n  name: p\n---\n";
        let objs = objects_from_str(text, "t").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["metadata"]["name"], "p");
    }

    #[test]
    fn json_lines() {
        let text = "{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\"}}\n{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"}}\n";
        assert_eq!(objects_from_str(text, "t").unwrap().len(), 2);
        assert!(objects_from_str("{\"kind\":", "t").is_err());
    }
}
