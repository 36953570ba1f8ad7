//! The verbs on a resource: list (with selectors, `limit`/`continue` pagination and
//! resourceVersion semantics), watch (start point, bookmarks, timeout, streaming
//! lists), get, create, replace, patch and delete.

use crate::http::{bad_request, error, json, Req, ResBody};
use crate::object::{self, merge_patch, status};
use crate::resources::RESOURCES;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Key, StoreError, WatchStart, WriteMode};
use crate::watch::{WatchBody, WatchFilter, WatchGuard};
use crate::Shared;
use http::{header, Response};
use http_body_util::Either;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// An error response from a parsing step (boxed: responses are large).
type Rejected = Box<Response<ResBody>>;

fn reject(message: &str) -> Rejected {
    Box::new(bad_request(message))
}

fn selectors(req: &Req) -> Result<(LabelSelector, FieldSelector), Rejected> {
    let labels = LabelSelector::parse(req.param("labelSelector"))
        .map_err(|e| reject(&format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(req.param("fieldSelector"))
        .map_err(|e| reject(&format!("invalid field selector: {e}")))?;
    Ok((labels, fields))
}

fn parse_rv(s: &str) -> Result<u64, Rejected> {
    s.parse::<u64>()
        .map_err(|_| reject(&format!("invalid resource version: {s:?}")))
}

fn invalid(message: &str) -> Response<ResBody> {
    error(422, "Invalid", message)
}

fn store_error(e: StoreError) -> Response<ResBody> {
    match e {
        StoreError::NotFound(m) => error(404, "NotFound", &m),
        StoreError::AlreadyExists(m) => error(409, "AlreadyExists", &m),
        StoreError::Conflict(m) => error(409, "Conflict", &m),
        StoreError::Invalid(m) => invalid(&m),
    }
}

fn expired_continue() -> Response<ResBody> {
    error(
        410,
        "Expired",
        "The provided continue parameter is too old to display a consistent list result. \
         You can start a new list without the continue parameter.",
    )
}

/// An object as the request's version of `res` shows it: stored at the storage
/// version, served at the version asked for (the versions share one schema, so the
/// conversion is the `apiVersion` alone).
fn render(obj: &Value, res: usize, req: &Req) -> Value {
    let obj = object::at_version(obj, res);
    if req.metadata_only() {
        object::partial_metadata(&obj)
    } else {
        obj
    }
}

fn parse_continue(token: &str) -> Option<(u64, Key)> {
    let (rv, key) = token.split_once(':')?;
    let (ns, name) = key.split_once('/')?;
    Some((rv.parse().ok()?, (ns.to_string(), name.to_string())))
}

/// `GET` on a collection without `watch`.
pub fn list(shared: &Arc<Shared>, res: usize, ns: Option<&str>, req: &Req) -> Response<ResBody> {
    let r = &RESOURCES[res];
    let (labels, fields) = match selectors(req) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let limit: usize = req.param("limit").parse().unwrap_or(0);
    let rv_param = req.param("resourceVersion");
    let rv_match = req.param("resourceVersionMatch");
    let token = req.param("continue");
    if !token.is_empty() && !rv_param.is_empty() {
        return bad_request("specifying resource version is not allowed when using continue");
    }
    if !rv_match.is_empty() && rv_param.is_empty() {
        return invalid("resourceVersionMatch is forbidden unless resourceVersion is provided");
    }
    if !matches!(rv_match, "" | "NotOlderThan" | "Exact") {
        return invalid(&format!(
            "resourceVersionMatch: unsupported value {rv_match:?}"
        ));
    }
    let store = crate::lock(&shared.store);
    let requested = if rv_param.is_empty() {
        None
    } else {
        match parse_rv(rv_param) {
            Ok(v) => Some(v),
            Err(resp) => return *resp,
        }
    };
    if rv_match == "Exact" && requested.is_some_and(|v| v < store.compacted()) {
        return error(
            410,
            "Expired",
            &format!(
                "too old resource version: {rv_param} ({})",
                store.compacted()
            ),
        );
    }
    let (list_rv, after) = if token.is_empty() {
        (store.rv(), None)
    } else {
        match parse_continue(token) {
            Some((rv, _)) if rv < store.compacted() => return expired_continue(),
            Some((rv, key)) => (rv, Some(key)),
            None => return bad_request("continue key is not valid"),
        }
    };
    let mut items = Vec::new();
    let mut last_key = None;
    let mut remaining = 0usize;
    for (key, obj) in store.range(res, ns, after) {
        if !(labels.matches(obj) && fields.matches(obj)) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            remaining += 1;
            continue;
        }
        items.push(render(obj, res, req));
        last_key = Some(key.clone());
    }
    drop(store);
    let mut meta = json!({ "resourceVersion": list_rv.to_string() });
    if remaining > 0 {
        let (kns, kname) = last_key.expect("a full page has a last key");
        meta["continue"] = json!(format!("{list_rv}:{kns}/{kname}"));
        meta["remainingItemCount"] = json!(remaining);
    }
    if req.table() {
        return json(200, &object::table(&items, meta));
    }
    let (api_version, kind) = if req.metadata_only() {
        (
            "meta.k8s.io/v1".to_string(),
            "PartialObjectMetadataList".to_string(),
        )
    } else {
        (r.api_version(), r.list_kind())
    };
    json(
        200,
        &json!({ "apiVersion": api_version, "kind": kind, "metadata": meta, "items": items }),
    )
}

/// `GET` on a collection with `watch=true`.
pub fn watch(shared: &Arc<Shared>, res: usize, ns: Option<&str>, req: &Req) -> Response<ResBody> {
    let (labels, fields) = match selectors(req) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let bookmarks = req.param("allowWatchBookmarks") == "true";
    let rv_param = req.param("resourceVersion");
    let rv_match = req.param("resourceVersionMatch");
    let send_initial = req.param("sendInitialEvents");
    let timeout = req
        .param("timeoutSeconds")
        .parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let start = match send_initial {
        "true" => {
            if rv_match != "NotOlderThan" {
                return invalid("sendInitialEvents requires resourceVersionMatch=NotOlderThan");
            }
            if !bookmarks {
                return invalid("sendInitialEvents requires allowWatchBookmarks=true");
            }
            if !matches!(rv_param, "" | "0") {
                if let Err(resp) = parse_rv(rv_param) {
                    return *resp;
                }
            }
            WatchStart::InitialState { end_bookmark: true }
        }
        "" | "false" => {
            if !rv_match.is_empty() {
                return invalid("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided");
            }
            match (rv_param, send_initial) {
                ("" | "0", "false") => WatchStart::Now,
                ("" | "0", _) => WatchStart::InitialState {
                    end_bookmark: false,
                },
                (v, _) => match parse_rv(v) {
                    Ok(rv) => WatchStart::After(rv),
                    Err(resp) => return *resp,
                },
            }
        }
        other => return bad_request(&format!("invalid sendInitialEvents value {other:?}")),
    };
    let filter = WatchFilter {
        res,
        namespace: ns.map(str::to_string),
        labels,
        fields,
        bookmarks,
        metadata_only: req.metadata_only(),
    };
    let registered = crate::lock(&shared.store).register(filter, start);
    let body = match registered {
        Ok((id, rx)) => {
            let guard = WatchGuard {
                store: Arc::downgrade(&shared.store),
                id,
            };
            WatchBody::new(rx, timeout, Some(guard))
        }
        // The real server answers 200 and sends the 410 as the first event.
        Err(message) => WatchBody::fixed(vec![crate::watch::gone_line(&message)]),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Either::Right(body))
        .expect("static response parts are valid")
}

fn not_found_item(res: usize, name: &str) -> Response<ResBody> {
    let r = &RESOURCES[res];
    let message = format!("{} \"{name}\" not found", r.qualified_plural());
    json(
        404,
        &status(
            404,
            "NotFound",
            &message,
            Some(object::details(name, r.group, r.plural)),
        ),
    )
}

/// `GET` on an item.
pub fn get(shared: &Arc<Shared>, res: usize, ns: &str, name: &str, req: &Req) -> Response<ResBody> {
    match crate::lock(&shared.store).get(res, ns, name) {
        Some(obj) if req.table() => json(
            200,
            &object::table(&[object::at_version(&obj, res)], json!({})),
        ),
        Some(obj) => json(200, &render(&obj, res, req)),
        None => not_found_item(res, name),
    }
}

/// Parses a request body as a JSON object and checks its kind and name/namespace
/// against the URL, filling them in when absent.
fn body_object(
    res: usize,
    ns: Option<&str>,
    name: Option<&str>,
    req: &Req,
) -> Result<Value, Rejected> {
    let mut obj: Value = serde_json::from_slice(&req.body)
        .map_err(|e| reject(&format!("the request body is not valid JSON: {e}")))?;
    check_object(res, ns, name, &mut obj)?;
    Ok(obj)
}

fn check_object(
    res: usize,
    ns: Option<&str>,
    name: Option<&str>,
    obj: &mut Value,
) -> Result<(), Rejected> {
    let r = &RESOURCES[res];
    if !obj.is_object() {
        return Err(reject("the request body is not a JSON object"));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != r.kind {
            return Err(reject(&format!(
                "the kind in the data ({kind}) does not match {}",
                r.kind
            )));
        }
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        if av != r.api_version() {
            return Err(reject(&format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                r.api_version()
            )));
        }
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = &mut obj["metadata"];
    for (field, want, what) in [("namespace", ns, "namespace"), ("name", name, "name")] {
        let Some(want) = want.filter(|w| !w.is_empty()) else {
            continue;
        };
        match meta.get(field).and_then(Value::as_str) {
            None | Some("") => meta[field] = json!(want),
            Some(have) if have == want => {}
            Some(_) => {
                return Err(reject(&format!(
                "the {what} of the provided object does not match the {what} sent on the request"
            )))
            }
        }
    }
    Ok(())
}

/// `POST` on a collection.
pub fn create(shared: &Arc<Shared>, res: usize, ns: Option<&str>, req: &Req) -> Response<ResBody> {
    let obj = match body_object(res, ns, None, req) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    match crate::lock(&shared.store).write(res, obj, WriteMode::Create) {
        Ok(stored) => json(201, &render(&stored, res, req)),
        Err(e) => store_error(e),
    }
}

/// `PUT` on an item.
pub fn replace(
    shared: &Arc<Shared>,
    res: usize,
    ns: &str,
    name: &str,
    req: &Req,
) -> Response<ResBody> {
    let obj = match body_object(res, Some(ns), Some(name), req) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    match crate::lock(&shared.store).write(res, obj, WriteMode::Update) {
        Ok(stored) => json(200, &render(&stored, res, req)),
        Err(e) => store_error(e),
    }
}

/// `PATCH` on an item: JSON merge patch (strategic merge patches are applied as merge
/// patches) or server-side apply (merged into the object, created if absent).
pub fn patch(
    shared: &Arc<Shared>,
    res: usize,
    ns: &str,
    name: &str,
    req: &Req,
) -> Response<ResBody> {
    let ct = req.content_type.split(';').next().unwrap_or("").trim();
    let apply = ct == "application/apply-patch+yaml";
    let patch: Value = match ct {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            match serde_json::from_slice(&req.body) {
                Ok(p) => p,
                Err(e) => return bad_request(&format!("the patch is not valid JSON: {e}")),
            }
        }
        "application/apply-patch+yaml" => {
            let text = String::from_utf8_lossy(&req.body);
            match serde_saphyr::from_str(&text) {
                Ok(p) => p,
                Err(e) => return bad_request(&format!("the apply patch is not valid YAML: {e}")),
            }
        }
        other => {
            return error(
                415,
                "UnsupportedMediaType",
                &format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {other:?})"),
            )
        }
    };
    let ns_opt = Some(ns).filter(|n| !n.is_empty());
    let mut store = crate::lock(&shared.store);
    let (mut obj, mode) = match store.get(res, ns, name) {
        Some(existing) => ((*existing).clone(), WriteMode::Update),
        None if apply => (json!({}), WriteMode::Upsert),
        None => return not_found_item(res, name),
    };
    let mut patch = patch;
    if let Err(resp) = check_object(res, ns_opt, Some(name), &mut patch) {
        return *resp;
    }
    merge_patch(&mut obj, &patch);
    match store.write(res, obj, mode) {
        Ok(stored) => json(200, &render(&stored, res, req)),
        Err(e) => store_error(e),
    }
}

/// `DELETE` on an item: removes it at once (no finalizers, no grace period).
pub fn delete(
    shared: &Arc<Shared>,
    res: usize,
    ns: &str,
    name: &str,
    req: &Req,
) -> Response<ResBody> {
    match crate::lock(&shared.store).remove(res, ns, name) {
        Some(gone) => json(200, &render(&gone, res, req)),
        None => not_found_item(res, name),
    }
}
