//! Reading Kubernetes objects: YAML or JSON text (multi-document, `kind: List`) into
//! [`Object`]s. Owns syntax and typing errors; semantic checks of policies live in
//! `policy`, and nothing here knows what an object means for enforcement.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use crate::cnp::CnpObject;
use crate::error::{Error, ObjectRef, Result};

mod slim;
mod strict;
mod text;

pub use text::MAX_DEPTH;

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

/// How strictly a NetworkPolicy is read, as kubectl's `--validate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Validate {
    /// An unknown field of a NetworkPolicy, or an object whose kind or apiVersion is a near
    /// miss of one nftpol reads, is refused.
    #[default]
    Strict,
    /// The same are warned about; the unknown field is ignored, the near miss skipped.
    Warn,
}

/// How to read a file.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// The namespace of namespaced objects that give none (kubectl's `--namespace`).
    pub namespace: Option<String>,
    pub validate: Validate,
}

/// Lists nest at most this deep (a List inside a List inside ...).
const MAX_LIST_DEPTH: usize = 8;

/// Parses one file's text: YAML (any number of `---` documents) or JSON (one or more
/// values), strictly and with no default namespace. `source` names the file in errors.
pub fn parse_str(text: &str, source: &str) -> Result<Vec<Object>> {
    parse_str_with(text, source, &ParseOptions::default())
}

/// [`parse_str`] of a file's bytes: UTF-8, with an optional byte order mark.
pub fn parse_bytes(bytes: &[u8], source: &str, options: &ParseOptions) -> Result<Vec<Object>> {
    parse_str_with(text::decode(bytes, source)?, source, options)
}

/// [`parse_str`] with options.
pub fn parse_str_with(text: &str, source: &str, options: &ParseOptions) -> Result<Vec<Object>> {
    let docs = text::documents(text, source)?;
    let mut out = Vec::new();
    let reader = Reader { source, options };
    for (i, doc) in docs.into_iter().enumerate() {
        reader.document(doc, i + 1, &mut out)?;
    }
    Ok(out)
}

/// Turns one Kubernetes object into an [`Object`]; `Ok(None)` for a kind nftpol does not
/// read (one warning names it). Reads as `--validate=warn` does: the objects the controller
/// passes here come from the API server, which has validated them against a schema that may
/// be newer than nftpol's.
pub fn object_from_value(value: Value, source: &str) -> Result<Option<Object>> {
    let options = ParseOptions {
        namespace: None,
        validate: Validate::Warn,
    };
    Reader {
        source,
        options: &options,
    }
    .object(value, 0)
}

struct Reader<'a> {
    source: &'a str,
    options: &'a ParseOptions,
}

impl Reader<'_> {
    /// A document's objects. The items of a List are read one at a time from their text, so
    /// a large List never exists whole as values.
    fn document(&self, doc: text::Document, document: usize, out: &mut Vec<Object>) -> Result<()> {
        let text::Document { mut value, items } = doc;
        let Some(items) = items else {
            return self.collect(value, document, 0, out);
        };
        let item = |text: &str| {
            serde_json::from_str::<Value>(text).map_err(|e| Error::Document {
                source_name: self.source.into(),
                document,
                message: format!("an item of a List: {e}"),
            })
        };
        if !is_list(&value) {
            let items = items.iter().map(|t| item(t)).collect::<Result<_>>()?;
            value["items"] = Value::Array(items);
            return self.collect(value, document, 0, out);
        }
        for text in items {
            self.collect(item(&text)?, document, 1, out)?;
        }
        Ok(())
    }

    fn collect(
        &self,
        doc: Value,
        document: usize,
        depth: usize,
        out: &mut Vec<Object>,
    ) -> Result<()> {
        if doc.is_null() {
            return Ok(());
        }
        if !is_list(&doc) {
            if let Some(obj) = self.object(doc, document)? {
                out.push(obj);
            }
            return Ok(());
        }
        let doc_err = |message: &str| Error::Document {
            source_name: self.source.into(),
            document,
            message: message.into(),
        };
        if depth >= MAX_LIST_DEPTH {
            return Err(doc_err(&format!(
                "Lists nested more than {MAX_LIST_DEPTH} deep"
            )));
        }
        let Value::Object(mut map) = doc else {
            unreachable!("a value with a kind is an object")
        };
        let Some(Value::Array(items)) = map.remove("items") else {
            return Err(doc_err("a List without an items array"));
        };
        for item in items {
            self.collect(item, document, depth + 1, out)?;
        }
        Ok(())
    }

    fn invalid(&self, object: &ObjectRef, field: &str, problem: String) -> Error {
        Error::Invalid {
            source_name: self.source.into(),
            object: Box::new(object.clone()),
            field: field.into(),
            problem,
        }
    }

    fn object(&self, mut value: Value, document: usize) -> Result<Option<Object>> {
        if !value.is_object() {
            return Err(Error::Document {
                source_name: self.source.into(),
                document,
                message: "not a Kubernetes object (expected a mapping)".into(),
            });
        }
        let str_at = |v: &Value, p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (kind, api) = (str_at(&value, "/kind"), str_at(&value, "/apiVersion"));
        // What errors call the object until it is typed.
        let mut named = ObjectRef {
            kind: if kind.is_empty() {
                "object".into()
            } else {
                kind.clone()
            },
            namespace: value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
            name: str_at(&value, "/metadata/name"),
        };
        let Some(known) = self.known_kind(&kind, &api, &named)? else {
            return Ok(None);
        };
        self.check_metadata(&mut value, known, &mut named)?;
        let data = self.typed(value, known, &named)?;
        let obj = Object::new(self.source, data);
        // The API server refuses such labels on any object; a file may still hold them.
        if let Some(labels) = &obj.metadata().labels {
            crate::labels::check_labels(labels)
                .map_err(|p| self.invalid(&named, "metadata.labels", p))?;
        }
        Ok(Some(obj))
    }

    /// The kind, `None` for one nftpol does not read (after a warning); a near miss of a
    /// kind it reads is an error under `--validate=strict`.
    fn known_kind(&self, kind: &str, api: &str, named: &ObjectRef) -> Result<Option<Kind>> {
        let known = match (kind, api) {
            ("Namespace", "v1") => Kind::Namespace,
            ("Pod", "v1") => Kind::Pod,
            ("NetworkPolicy", "networking.k8s.io/v1") => Kind::NetworkPolicy,
            ("ClusterNetworkPolicy", v) if crate::cnp::types::API_VERSIONS.contains(&v) => {
                Kind::ClusterNetworkPolicy
            }
            ("Node", "v1") => Kind::Node,
            ("", _) => return Err(self.invalid(named, "kind", "missing".into())),
            _ => {
                let source = self.source;
                let name = &named.name;
                match strict::near_miss(kind, api) {
                    Some((field, problem)) if self.options.validate == Validate::Strict => {
                        return Err(self.invalid(
                            named,
                            field,
                            format!("{problem} (--validate=warn skips it with a warning)"),
                        ))
                    }
                    Some((field, problem)) => {
                        tracing::warn!(source, object = %named, field, "skipping the object: {problem}")
                    }
                    None => {
                        tracing::warn!(source, kind = %kind, api_version = %api, name = %name, "skipping object of a kind nftpol does not read")
                    }
                }
                return Ok(None);
            }
        };
        Ok(Some(known))
    }

    /// Name and namespace: present, of the right type and syntax; the namespace given by
    /// `--namespace` when the object has none.
    fn check_metadata(&self, value: &mut Value, known: Kind, named: &mut ObjectRef) -> Result<()> {
        let invalid = |field: &str, problem: String| self.invalid(named, field, problem);
        match value.pointer("/metadata/name") {
            None => return Err(invalid("metadata.name", "missing".into())),
            Some(Value::String(s)) if s.is_empty() => return Err(invalid("metadata.name", "empty".into())),
            Some(Value::String(s)) => {
                let check = if known == Kind::Namespace {
                    crate::labels::check_dns_label(s)
                } else {
                    crate::labels::check_dns_subdomain(s)
                };
                // A ClusterNetworkPolicy's name is checked with the rest of it, fail closed.
                if known != Kind::ClusterNetworkPolicy {
                    check.map_err(|p| invalid("metadata.name", p))?;
                }
            }
            Some(other) => {
                return Err(invalid(
                    "metadata.name",
                    format!("must be a string, got {other} (quote it: YAML reads y, n, yes, no, on, off as booleans)"),
                ))
            }
        }
        if known.cluster_scoped() {
            return Ok(());
        }
        let given = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let namespace = match (given, &self.options.namespace) {
            (Some(ns), _) => ns.to_string(),
            (None, Some(ns)) => {
                value["metadata"]["namespace"] = Value::String(ns.clone());
                named.namespace = Some(ns.clone());
                ns.clone()
            }
            (None, None) => return Err(invalid(
                "metadata.namespace",
                "missing (give it in the file, or with --namespace NS for objects that have none)"
                    .into(),
            )),
        };
        crate::labels::check_dns_label(&namespace)
            .map_err(|p| self.invalid(named, "metadata.namespace", p))
    }

    fn typed(&self, value: Value, known: Kind, named: &ObjectRef) -> Result<ObjectData> {
        let invalid = |(path, problem): (String, String)| self.invalid(named, &path, problem);
        match known {
            Kind::Namespace => typed(value).map(ObjectData::Namespace).map_err(invalid),
            Kind::Pod => typed(value)
                .map(|p| ObjectData::Pod(Box::new(p)))
                .map_err(invalid),
            Kind::Node => typed(value)
                .map(|n| ObjectData::Node(Box::new(n)))
                .map_err(invalid),
            Kind::NetworkPolicy => self.network_policy(value, named),
            // Validated by the index, so that an invalid one is still enforced fail-closed.
            Kind::ClusterNetworkPolicy => CnpObject::from_value(value)
                .map(|c| ObjectData::ClusterNetworkPolicy(Box::new(c)))
                .map_err(|e| invalid((e.field, e.problem))),
        }
    }

    /// A NetworkPolicy, with its unknown fields refused (or warned about).
    fn network_policy(&self, value: Value, named: &ObjectRef) -> Result<ObjectData> {
        let np: NetworkPolicy =
            typed_ref(&value).map_err(|(path, problem)| self.invalid(named, &path, problem))?;
        let mut back = serde_json::to_value(&np).unwrap_or(Value::Null);
        // NetworkPolicy had a status once (always empty); dumps of older clusters carry it.
        if let (Some(b), Some(status)) = (back.as_object_mut(), value.get("status")) {
            b.insert("status".into(), status.clone());
        }
        if let Some(field) = strict::unknown_field(&value, &back) {
            let problem =
                "unknown field (misspelt? it would be ignored, which can allow more than meant)";
            match self.options.validate {
                Validate::Strict => {
                    return Err(self.invalid(
                        named,
                        &field,
                        format!("{problem}; --validate=warn ignores it with a warning"),
                    ))
                }
                Validate::Warn => {
                    tracing::warn!(source = self.source, object = %named, field, "{problem}: ignored")
                }
            }
        }
        Ok(ObjectData::NetworkPolicy(np))
    }
}

/// Whether `doc` is a List (`kind: List`, or a typed one: `PodList`, ...) by its kind.
fn is_list(doc: &Value) -> bool {
    doc.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
}

/// Reads a typed object; on error, the field path and the problem in words.
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> std::result::Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(type_error)
}

fn typed_ref<T: serde::de::DeserializeOwned>(
    v: &Value,
) -> std::result::Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(type_error)
}

fn type_error(e: serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let path = e.path().to_string();
    let problem = e.into_inner().to_string();
    let problem = out_of_range(&path, &problem).unwrap_or(problem);
    (path, problem)
}

/// A number too large for an integer field (JSON reads 23 digits as a float, `1e23`) is
/// out of range, not a float.
fn out_of_range(path: &str, problem: &str) -> Option<String> {
    let number = problem
        .strip_prefix("invalid type: floating point `")
        .or_else(|| problem.strip_prefix("invalid value: integer `"))?
        .split('`')
        .next()?;
    let n: f64 = number.parse().ok()?;
    if n.fract() != 0.0 && n.abs() < 1e15 {
        return None;
    }
    let is_port = path.ends_with("port") || path.ends_with("Port");
    let range = if is_port {
        "a port number is 1-65535"
    } else {
        "the field holds a 32-bit integer"
    };
    Some(format!("{n} is out of range ({range})"))
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
    fn items_of_a_document_that_is_no_list_stay_in_place() {
        let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}}\nitems: [{a: 1}]\n";
        let err = parse_str(text, "t.yaml").unwrap_err().to_string();
        assert!(
            err.contains("NetworkPolicy x/p: items: unknown field"),
            "{err}"
        );
        let text = "{\"kind\": \"List\", \"items\": [{\"kind\": \"NamespaceList\", \"items\": [{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}]}]}";
        let objs = parse_str(text, "t.json").unwrap();
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].name(), "a");
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
