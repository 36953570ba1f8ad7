//! The HTTP front: request logging, the availability switch, URL routing to resource
//! collections and items, discovery documents (`/version`, `/api`, `/apis`, ...), and
//! response helpers (JSON bodies, `metav1.Status` errors).

use crate::handlers;
use crate::object::status;
use crate::resources::{self, RESOURCES};
use crate::watch::WatchBody;
use crate::Shared;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

/// The media type the real server answers for the OpenAPI v2 document in protobuf
/// (kubectl asks for `...spec.v2@v1.0+protobuf`; Go cannot parse an `@` in a Content-Type).
const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// A response body: a whole JSON document, or a watch stream.
pub type ResBody = Either<Full<Bytes>, WatchBody>;

/// Everything a handler needs from the request, already read.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub query: HashMap<String, String>,
    pub accept: String,
    pub content_type: String,
    pub body: Bytes,
}

impl Req {
    /// A query parameter, empty when absent.
    pub fn param(&self, name: &str) -> &str {
        self.query.get(name).map_or("", String::as_str)
    }

    /// Whether the client asked for `PartialObjectMetadata[List]`.
    pub fn metadata_only(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }

    /// Whether the client asked for a `meta.k8s.io` `Table` (what `kubectl get` asks for
    /// when it prints columns rather than `-o yaml`).
    pub fn table(&self) -> bool {
        self.accept.contains("as=Table")
    }
}

/// A JSON response.
pub fn json(code: u16, v: &Value) -> Response<ResBody> {
    let body = serde_json::to_vec(v).expect("JSON values always serialize");
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Either::Left(Full::new(Bytes::from(body))))
        .expect("static response parts are valid")
}

/// A `metav1.Status` error response.
pub fn error(code: u16, reason: &str, message: &str) -> Response<ResBody> {
    json(code, &status(code, reason, message, None))
}

pub fn not_found() -> Response<ResBody> {
    json(
        404,
        &status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        ),
    )
}

pub fn bad_request(message: &str) -> Response<ResBody> {
    error(400, "BadRequest", message)
}

fn method_not_allowed(method: &Method) -> Response<ResBody> {
    error(
        405,
        "MethodNotAllowed",
        &format!("the server does not allow this method on the requested resource: {method}"),
    )
}

/// The service function: logs, checks availability, reads the body and routes.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.to_string());
    crate::lock(&shared.log).push(format!("{method} {target}"));
    if !shared.is_available() {
        return Ok(error(
            503,
            "ServiceUnavailable",
            "the fake API server is unavailable",
        ));
    }
    let header_str = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let accept = header_str(header::ACCEPT);
    let content_type = header_str(header::CONTENT_TYPE);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(bad_request(&format!("reading the request body: {e}"))),
    };
    let query = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let req = Req {
        method,
        query,
        accept,
        content_type,
        body,
    };
    Ok(route(&shared, uri.path(), &req))
}

fn route(shared: &Arc<Shared>, path: &str, req: &Req) -> Response<ResBody> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get_only = |r: Response<ResBody>| {
        if req.method == Method::GET {
            r
        } else {
            method_not_allowed(&req.method)
        }
    };
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return get_only(json(200, &version_info())),
        ["healthz" | "readyz" | "livez"] => {
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Either::Left(Full::new(Bytes::from_static(b"ok"))))
                .expect("static response parts are valid")
        }
        // kubectl's client-side validation (`--validate=strict`, its default) fetches the
        // OpenAPI v2 document as protobuf before create/replace. An empty protobuf
        // message is a valid, empty `openapi_v2.Document`: no schema knows the kinds,
        // and kubectl skips validation of kinds its schema lacks. The fake server
        // validates no schema either.
        ["openapi", "v2"] => {
            return get_only(
                Response::builder()
                    .header(header::CONTENT_TYPE, OPENAPI_V2_PROTOBUF)
                    .body(Either::Left(Full::new(Bytes::new())))
                    .expect("static response parts are valid"),
            )
        }
        // kubectl asks for aggregated discovery (apidiscovery.k8s.io/v2) first; the
        // legacy documents, sent as plain `application/json`, make it fall back to one
        // APIResourceList per group version, which is what is served.
        ["api"] => return get_only(json(200, &api_versions(shared))),
        ["apis"] => return get_only(json(200, &api_group_list(shared))),
        ["apis", group] => {
            return match shared.served_groups().into_iter().find(|(g, _)| g == group) {
                Some((g, v)) => get_only(json(200, &api_group(g, &v))),
                None => not_found(),
            }
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return not_found(),
    };
    if !shared.serves(group, version) {
        return not_found();
    }
    let lookup = |plural: &str| resources::by_path(group, version, plural);
    match rest {
        [] => {
            let list = api_resource_list(group, version);
            if list["resources"].as_array().is_some_and(|a| a.is_empty()) {
                not_found()
            } else {
                get_only(json(200, &list))
            }
        }
        ["namespaces", ns, plural] => match lookup(plural) {
            Some(res) if RESOURCES[res].namespaced => collection(shared, res, Some(ns), req),
            _ => not_found(),
        },
        ["namespaces", ns, plural, name] => match lookup(plural) {
            Some(res) if RESOURCES[res].namespaced => item(shared, res, ns, name, req),
            _ => not_found(),
        },
        [plural] => match lookup(plural) {
            Some(res) => collection(shared, res, None, req),
            None => not_found(),
        },
        [plural, name] => match lookup(plural) {
            Some(res) if !RESOURCES[res].namespaced => item(shared, res, "", name, req),
            _ => not_found(),
        },
        _ => not_found(),
    }
}

/// The 403 an RBAC role without `res` gets, or `None` when it may.
fn forbidden(shared: &Shared, res: usize, req: &Req) -> Option<Response<ResBody>> {
    let plural = RESOURCES[res].plural;
    crate::lock(&shared.forbidden).contains(plural).then(|| {
        error(
            403,
            "Forbidden",
            &format!(
                "{plural} is forbidden: User \"system:serviceaccount:kube-system:nftpol\" cannot {} resource \"{plural}\"",
                req.method.as_str().to_lowercase()
            ),
        )
    })
}

fn collection(shared: &Arc<Shared>, res: usize, ns: Option<&str>, req: &Req) -> Response<ResBody> {
    if let Some(denied) = forbidden(shared, res, req) {
        return denied;
    }
    let watching = matches!(req.param("watch"), "true" | "1");
    match req.method {
        Method::GET if watching => handlers::watch(shared, res, ns, req),
        Method::GET => handlers::list(shared, res, ns, req),
        Method::POST if ns.is_some() || !RESOURCES[res].namespaced => {
            handlers::create(shared, res, ns, req)
        }
        _ => method_not_allowed(&req.method),
    }
}

fn item(shared: &Arc<Shared>, res: usize, ns: &str, name: &str, req: &Req) -> Response<ResBody> {
    if let Some(denied) = forbidden(shared, res, req) {
        return denied;
    }
    match req.method {
        Method::GET => handlers::get(shared, res, ns, name, req),
        Method::PUT => handlers::replace(shared, res, ns, name, req),
        Method::PATCH => handlers::patch(shared, res, ns, name, req),
        Method::DELETE => handlers::delete(shared, res, ns, name, req),
        _ => method_not_allowed(&req.method),
    }
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn api_versions(shared: &Shared) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string() }],
    })
}

/// An APIGroup: `versions` in order, the first preferred (as the real server lists a
/// CRD's served versions, the storage version first here).
fn api_group(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "preferredVersion": gvs[0].clone(),
        "versions": gvs,
    })
}

fn api_group_list(shared: &Shared) -> Value {
    let groups: Vec<Value> = shared
        .served_groups()
        .into_iter()
        .map(|(g, v)| {
            let mut g = api_group(g, &v);
            if let Value::Object(m) = &mut g {
                m.remove("kind");
                m.remove("apiVersion");
            }
            g
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn api_resource_list(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.singular(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "shortNames": r.short_names,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })
        })
        .collect();
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}
