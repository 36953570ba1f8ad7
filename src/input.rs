//! Reading Kubernetes objects: YAML or JSON text (multi-document, `kind: List`) into
//! [`Object`]s. Owns syntax and typing errors; semantic checks of policies live in
//! `policy`, and nothing here knows what an object means for enforcement.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use crate::cnp::CnpObject;
use crate::error::{Error, ObjectRef, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Pod,
    NetworkPolicy,
    /// `policy.networking.k8s.io` v1alpha2 or v1beta1; cluster-scoped.
    ClusterNetworkPolicy,
    /// Cluster-scoped; read for labels and addresses (ClusterNetworkPolicy `nodes` peers).
    Node,
}

impl Kind {
    /// Whether objects of the kind have no namespace.
    pub fn cluster_scoped(self) -> bool {
        matches!(
            self,
            Kind::Namespace | Kind::ClusterNetworkPolicy | Kind::Node
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            Kind::Node => "Node",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ObjectData {
    Namespace(Namespace),
    Pod(Box<Pod>),
    NetworkPolicy(NetworkPolicy),
    ClusterNetworkPolicy(Box<CnpObject>),
    Node(Box<Node>),
}

/// One object of a kind nftpol reads, with where it came from (for error messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub source: String,
    pub data: ObjectData,
}

impl Object {
    pub fn new(source: impl Into<String>, data: ObjectData) -> Self {
        Object {
            source: source.into(),
            data,
        }
    }

    pub fn kind(&self) -> Kind {
        match &self.data {
            ObjectData::Namespace(_) => Kind::Namespace,
            ObjectData::Pod(_) => Kind::Pod,
            ObjectData::NetworkPolicy(_) => Kind::NetworkPolicy,
            ObjectData::ClusterNetworkPolicy(_) => Kind::ClusterNetworkPolicy,
            ObjectData::Node(_) => Kind::Node,
        }
    }

    fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match &self.data {
            ObjectData::Namespace(o) => &o.metadata,
            ObjectData::Pod(o) => &o.metadata,
            ObjectData::NetworkPolicy(o) => &o.metadata,
            ObjectData::ClusterNetworkPolicy(o) => &o.metadata,
            ObjectData::Node(o) => &o.metadata,
        }
    }

    /// `None` for cluster-scoped kinds (Namespace, ClusterNetworkPolicy, Node).
    pub fn namespace(&self) -> Option<&str> {
        if self.kind().cluster_scoped() {
            return None;
        }
        self.metadata().namespace.as_deref()
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind().name().to_string(),
            namespace: self.namespace().map(str::to_string),
            name: self.name().to_string(),
        }
    }
}

/// Parses one file's text: YAML (any number of `---` documents) or JSON (one or more
/// values). `source` names the file in errors.
pub fn parse_str(text: &str, source: &str) -> Result<Vec<Object>> {
    let docs = documents(text, source)?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        collect(doc, source, i + 1, &mut out)?;
    }
    Ok(out)
}

fn documents(text: &str, source: &str) -> Result<Vec<Value>> {
    let first = text.trim_start().chars().next();
    if matches!(first, Some('{') | Some('[')) {
        let mut docs = Vec::new();
        for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            match value {
                Ok(v) => docs.push(v),
                Err(e) => {
                    return Err(Error::Syntax {
                        source_name: source.to_string(),
                        line: e.line() as u64,
                        column: e.column() as u64,
                        message: e.to_string(),
                    })
                }
            }
        }
        return Ok(docs);
    }
    // YAML 1.2 booleans only: `y`, `yes`, `on` stay strings (label values like `ns: y`).
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    match serde_saphyr::from_multiple_with_options::<Option<Value>>(text, options) {
        Ok(docs) => Ok(docs.into_iter().flatten().collect()),
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            // The first line of the message carries the problem; the rest is a snippet
            // that would repeat the location.
            let message = e.to_string();
            let mut message = message.lines().next().unwrap_or("").trim().to_string();
            // The location is printed once, in our own prefix.
            for prefix in ["error:", &format!("line {line} column {column}:")] {
                if let Some(rest) = message.strip_prefix(prefix) {
                    message = rest.trim().to_string();
                }
            }
            Err(Error::Syntax {
                source_name: source.to_string(),
                line,
                column,
                message,
            })
        }
    }
}

fn collect(doc: Value, source: &str, document: usize, out: &mut Vec<Object>) -> Result<()> {
    if doc.is_null() {
        return Ok(());
    }
    if doc
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
    {
        let Some(items) = doc.get("items").and_then(Value::as_array) else {
            return Err(Error::Document {
                source_name: source.into(),
                document,
                message: "a List without an items array".into(),
            });
        };
        for item in items {
            if let Some(obj) = object_from_value_in(item.clone(), source, document)? {
                out.push(obj);
            }
        }
        return Ok(());
    }
    if let Some(obj) = object_from_value_in(doc, source, document)? {
        out.push(obj);
    }
    Ok(())
}

/// Turns one Kubernetes object into an [`Object`]; `Ok(None)` for a kind nftpol does not
/// read (one warning names it).
pub fn object_from_value(value: Value, source: &str) -> Result<Option<Object>> {
    object_from_value_in(value, source, 0)
}

fn object_from_value_in(value: Value, source: &str, document: usize) -> Result<Option<Object>> {
    let doc_err = |message: String| Error::Document {
        source_name: source.into(),
        document,
        message,
    };
    if !value.is_object() {
        return Err(doc_err(
            "not a Kubernetes object (expected a mapping)".into(),
        ));
    }
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let api = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let object = ObjectRef {
        kind: if kind.is_empty() {
            "object".into()
        } else {
            kind.clone()
        },
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let invalid = |field: &str, problem: String| Error::Invalid {
        source_name: source.into(),
        object: Box::new(object.clone()),
        field: field.into(),
        problem,
    };
    let known = match (kind.as_str(), api.as_str()) {
        ("Namespace", "v1") => Kind::Namespace,
        ("Pod", "v1") => Kind::Pod,
        ("NetworkPolicy", "networking.k8s.io/v1") => Kind::NetworkPolicy,
        ("ClusterNetworkPolicy", v) if crate::cnp::types::API_VERSIONS.contains(&v) => {
            Kind::ClusterNetworkPolicy
        }
        ("Node", "v1") => Kind::Node,
        ("", _) => return Err(invalid("kind", "missing".into())),
        _ => {
            tracing::warn!(source, kind = %kind, api_version = %api, name = %name, "skipping object of a kind nftpol does not read");
            return Ok(None);
        }
    };
    match value.pointer("/metadata/name") {
        None => return Err(invalid("metadata.name", "missing".into())),
        Some(Value::String(s)) if s.is_empty() => return Err(invalid("metadata.name", "empty".into())),
        Some(Value::String(_)) => {}
        Some(other) => {
            return Err(invalid(
                "metadata.name",
                format!("must be a string, got {other} (quote it: YAML reads y, n, yes, no, on, off as booleans)"),
            ))
        }
    }
    if !known.cluster_scoped() && namespace.as_deref().unwrap_or("").is_empty() {
        return Err(invalid("metadata.namespace", "missing".into()));
    }
    fn typed<T: serde::de::DeserializeOwned>(v: Value) -> std::result::Result<T, (String, String)> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            (path, e.into_inner().to_string())
        })
    }
    let data = match known {
        Kind::Namespace => typed(value).map(ObjectData::Namespace),
        Kind::Pod => typed(value).map(|p| ObjectData::Pod(Box::new(p))),
        Kind::NetworkPolicy => typed(value).map(ObjectData::NetworkPolicy),
        Kind::Node => typed(value).map(|n| ObjectData::Node(Box::new(n))),
        // Validated by the index, so that an invalid one is still enforced fail-closed.
        Kind::ClusterNetworkPolicy => CnpObject::from_value(value)
            .map(|c| ObjectData::ClusterNetworkPolicy(Box::new(c)))
            .map_err(|e| (e.field, e.problem)),
    }
    .map_err(|(path, problem)| invalid(&path, problem))?;
    let obj = Object::new(source, data);
    // The API server refuses such labels on any object; a file may still hold them.
    if let Some(labels) = &obj.metadata().labels {
        crate::labels::check_labels(labels).map_err(|p| invalid("metadata.labels", p))?;
    }
    Ok(Some(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_list_and_skip() {
        let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: x}
- apiVersion: v1
  kind: Service
  metadata: {name: s, namespace: x}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec: {podSelector: {}}
"#;
        let objs = parse_str(text, "t.yaml").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].kind(), Kind::Namespace);
        assert_eq!(objs[1].kind(), Kind::NetworkPolicy);
        assert_eq!(objs[1].namespace(), Some("x"));
    }

    #[test]
    fn json_stream() {
        let text = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}
{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}"#;
        let objs = parse_str(text, "t.json").unwrap();
        assert_eq!(
            objs.iter().map(|o| o.name()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn syntax_error_has_location() {
        let err = parse_str("kind: Pod\nmetadata: {name: [\n", "bad.yaml").unwrap_err();
        match err {
            Error::Syntax {
                line, source_name, ..
            } => {
                assert_eq!(source_name, "bad.yaml");
                assert!(line >= 2, "line {line}");
            }
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn type_error_names_field() {
        let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: [1]}]}]}\n";
        let err = parse_str(text, "t.yaml").unwrap_err().to_string();
        assert!(err.contains("NetworkPolicy x/p"), "{err}");
        assert!(err.contains("spec.ingress[0].ports[0].port"), "{err}");
    }
}
