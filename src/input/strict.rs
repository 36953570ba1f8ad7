//! Strict reading, as kubectl's default `--validate=strict`: where a typo would change
//! what a policy allows, it is refused (or, under `--validate=warn`, warned about).
//!
//! Two checks: a field of the input that the typed object does not hold (an unknown or
//! misspelt field: `matchLabel:` would otherwise read as an empty selector, selecting
//! every pod), found by serializing the typed object back and comparing key sets, so no
//! schema is written by hand; and an object whose kind or apiVersion is a near miss of one
//! nftpol reads (`kind: Networkpolicy`, `extensions/v1beta1`), which would otherwise be
//! skipped and leave its pods unisolated.

use serde_json::Value;

/// The first path (`spec.ingress[0].from[0].podSelector.matchLabel`) present in `input`
/// but absent from `typed`, the same object read into its type and serialized back. Null
/// values in the input are absent fields, as the API server reads them.
pub fn unknown_field(input: &Value, typed: &Value) -> Option<String> {
    let mut path = String::new();
    walk(input, typed, &mut path)
}

fn walk(input: &Value, typed: &Value, path: &mut String) -> Option<String> {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (key, value) in i {
                if value.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let found = match t.get(key) {
                    None => Some(path.clone()),
                    Some(tv) => walk(value, tv, path),
                };
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                let found = walk(iv, tv, path);
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        _ => None,
    }
}

/// The kinds nftpol reads, with the apiVersions it reads them under.
const KNOWN: [(&str, &[&str]); 5] = [
    ("Namespace", &["v1"]),
    ("Pod", &["v1"]),
    ("NetworkPolicy", &["networking.k8s.io/v1"]),
    ("ClusterNetworkPolicy", &crate::cnp::types::API_VERSIONS),
    ("Node", &["v1"]),
];

/// For an object of a kind nftpol does not read: when it is a near miss of one it does
/// (the kind spelt in another case, or an apiVersion nftpol does not read), the field and
/// the problem.
pub fn near_miss(kind: &str, api_version: &str) -> Option<(&'static str, String)> {
    let (known, versions) = KNOWN.iter().find(|(k, _)| k.eq_ignore_ascii_case(kind))?;
    if *known != kind {
        return Some((
            "kind",
            format!("{kind:?} is not a kind nftpol reads; the kind is spelt {known:?}"),
        ));
    }
    let versions = versions
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(" or ");
    Some((
        "apiVersion",
        format!(
            "{api_version:?} is not an apiVersion nftpol reads {kind} under (expected {versions})"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_unknown_path() {
        let input =
            json!({"spec": {"ingress": [{"from": [{"podSelector": {"matchLabel": {"a": "b"}}}]}]}});
        let typed = json!({"spec": {"ingress": [{"from": [{"podSelector": {}}]}]}});
        assert_eq!(
            unknown_field(&input, &typed).as_deref(),
            Some("spec.ingress[0].from[0].podSelector.matchLabel")
        );
        assert_eq!(unknown_field(&typed, &typed), None);
        assert_eq!(unknown_field(&json!({"spec": null}), &json!({})), None);
    }

    #[test]
    fn near_misses() {
        assert_eq!(
            near_miss("Networkpolicy", "networking.k8s.io/v1")
                .unwrap()
                .0,
            "kind"
        );
        assert_eq!(
            near_miss("networkpolicy", "networking.k8s.io/v1")
                .unwrap()
                .0,
            "kind"
        );
        let (field, problem) = near_miss("NetworkPolicy", "extensions/v1beta1").unwrap();
        assert_eq!(field, "apiVersion");
        assert!(problem.contains("networking.k8s.io/v1"), "{problem}");
        assert_eq!(near_miss("Service", "v1"), None);
    }
}
