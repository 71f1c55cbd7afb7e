//! HTTP routing of the fake API server: discovery, CRUD, server-side apply, paging,
//! selectors, auth and fault injection.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::store::{
    field_selector_matches, ApiError, ApiResult, ResourceType, Selector, WriteOutcome,
};
use super::{RequestRecord, Shared};

/// The Accept media type kube sends for aggregated discovery.
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub(crate) type Body = Full<Bytes>;

struct Ctx {
    method: String,
    query: Vec<(String, String)>,
    accept: String,
    content_type: String,
}

impl Ctx {
    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(qk, _)| qk == k)
            .map(|(_, v)| v.as_str())
    }

    fn params(&self, k: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(qk, _)| qk == k)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.param(k), Some("true") | Some("1"))
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or_default().to_string();
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let ctx = Ctx {
        method: method.clone(),
        query: crate::percent::form_pairs(&raw_query).collect(),
        accept: header(hyper::header::ACCEPT),
        content_type: header(hyper::header::CONTENT_TYPE),
    };
    let authorization = header(hyper::header::AUTHORIZATION);
    let index = {
        let mut log = shared.log.lock().expect("log");
        log.push(RequestRecord {
            method: method.clone(),
            path: path.clone(),
            query: raw_query.clone(),
            content_type: (!ctx.content_type.is_empty()).then(|| ctx.content_type.clone()),
            status: 0,
        });
        log.len() - 1
    };
    let finish = |resp: Response<Body>| {
        if let Some(r) = shared.log.lock().expect("log").get_mut(index) {
            r.status = resp.status().as_u16();
        }
        Ok(resp)
    };

    // Authentication, then injected faults.
    if let Some(token) = shared.token.lock().expect("token").clone() {
        if authorization != format!("Bearer {token}") {
            return finish(error_response(&ApiError::new(
                401,
                "Unauthorized",
                "Unauthorized",
            )));
        }
    }
    if let Some(err) = shared.take_fault(&method, &path, &raw_query) {
        return finish(error_response(&err));
    }

    let route = parse_path(&path);
    // Pod exec / attach is a websocket upgrade: handled before the body is read.
    if let Route::Resource(r) = &route {
        if r.group.is_empty()
            && r.plural == "pods"
            && r.name.is_some()
            && matches!(r.sub.as_deref(), Some("exec") | Some("attach"))
        {
            let ns = r.ns.clone().unwrap_or_default();
            let name = r.name.clone().unwrap_or_default();
            let pod = {
                let mut store = shared.store.lock().expect("store");
                store.tick();
                let rt = store.find_type("", "v1", "pods").expect("builtin");
                store
                    .get(&rt, &ns, &name)
                    .ok_or_else(|| ApiError::not_found(&rt, &name))
            };
            let resp = match pod {
                Ok(pod) => {
                    let command = ctx.params("command");
                    super::exec::upgrade(shared.clone(), req, ns, pod, command, &ctx.query)
                }
                Err(e) => error_response(&e),
            };
            return finish(resp);
        }
    }

    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return finish(error_response(&ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            ))))
        }
    };
    let port = shared.port;
    let result = {
        let mut store = shared.store.lock().expect("store");
        store.tick();
        dispatch(&mut store, &ctx, route, &body, port)
    };
    finish(match result {
        Ok((code, body, ct)) => json_response(code, &body, ct),
        Err(e) => error_response(&e),
    })
}

/// The API server's RBAC denial message and details for a request.
pub(crate) fn forbidden_message(method: &str, path: &str, user: &str) -> (String, Value) {
    match parse_path(path) {
        Route::Resource(r) => {
            let verb = match (method, r.name.is_some()) {
                ("GET", true) => "get",
                ("GET", false) => "list",
                ("POST", _) => "create",
                ("PUT", _) => "update",
                ("PATCH", _) => "patch",
                ("DELETE", true) => "delete",
                ("DELETE", false) => "deletecollection",
                _ => "access",
            };
            let resource = match &r.sub {
                Some(sub) => format!("{}/{sub}", r.plural),
                None => r.plural.clone(),
            };
            let qualified = if r.group.is_empty() {
                r.plural.clone()
            } else {
                format!("{}.{}", r.plural, r.group)
            };
            let subject = match &r.name {
                Some(n) => format!("{qualified} \"{n}\""),
                None => qualified,
            };
            let scope = match &r.ns {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_string(),
            };
            let mut details = json!({"group": r.group, "kind": r.plural});
            if let Some(n) = &r.name {
                details["name"] = json!(n);
            }
            (
                format!(
                    "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
                    r.group
                ),
                details,
            )
        }
        _ => (
            format!("forbidden: User \"{user}\" cannot get path \"{path}\""),
            json!({}),
        ),
    }
}

enum Route {
    Version,
    CoreVersions,
    CoreResources(String),
    Groups,
    Group(String),
    GroupResources(String, String),
    Resource(ResReq),
    Unknown,
}

struct ResReq {
    group: String,
    version: String,
    ns: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Route {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(crate::percent::decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (group, version, rest) = match s.as_slice() {
        ["version"] => return Route::Version,
        ["api"] => return Route::CoreVersions,
        ["api", v] => return Route::CoreResources(v.to_string()),
        ["apis"] => return Route::Groups,
        ["apis", g] => return Route::Group(g.to_string()),
        ["apis", g, v] => return Route::GroupResources(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return Route::Unknown,
    };
    let (ns, rest) = if rest.len() >= 3 && rest[0] == "namespaces" {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 {
        return Route::Unknown;
    }
    Route::Resource(ResReq {
        group,
        version,
        ns,
        plural: rest[0].to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

type Answer = (u16, Value, &'static str);

fn dispatch(
    store: &mut super::store::Store,
    ctx: &Ctx,
    route: Route,
    body: &[u8],
    port: u16,
) -> ApiResult<Answer> {
    let wants_aggregated = ctx.accept.contains("as=APIGroupDiscoveryList")
        && ctx.accept.contains("g=apidiscovery.k8s.io");
    if !matches!(route, Route::Resource(_)) && ctx.method != "GET" {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({})",
                ctx.method
            ),
        ));
    }
    match route {
        Route::Version => Ok((
            200,
            json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-stoa-fake",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
                "platform": "linux/amd64"
            }),
            "application/json",
        )),
        Route::CoreVersions => {
            if wants_aggregated {
                let versions = vec![aggregated_version(store, "", "v1")];
                Ok((
                    200,
                    aggregated_list(vec![
                        json!({"metadata": {"name": ""}, "versions": versions}),
                    ]),
                    AGGREGATED,
                ))
            } else {
                Ok((
                    200,
                    json!({"kind": "APIVersions", "versions": ["v1"],
                           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}]}),
                    "application/json",
                ))
            }
        }
        Route::CoreResources(v) => {
            if v != "v1" {
                return Err(ApiError::no_resource());
            }
            Ok((200, resource_list(store, "", "v1"), "application/json"))
        }
        Route::Groups => {
            let groups = store.groups();
            if wants_aggregated {
                let items = groups
                    .iter()
                    .map(|(g, vs)| {
                        json!({"metadata": {"name": g},
                               "versions": vs.iter().map(|v| aggregated_version(store, g, v)).collect::<Vec<_>>()})
                    })
                    .collect();
                Ok((200, aggregated_list(items), AGGREGATED))
            } else {
                let groups: Vec<Value> = groups.iter().map(|(g, vs)| api_group(g, vs)).collect();
                Ok((
                    200,
                    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                    "application/json",
                ))
            }
        }
        Route::Group(g) => {
            let groups = store.groups();
            let (g, vs) = groups
                .iter()
                .find(|(n, _)| *n == g)
                .ok_or_else(ApiError::no_resource)?;
            let mut v = api_group(g, vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            Ok((200, v, "application/json"))
        }
        Route::GroupResources(g, v) => {
            if store.types_of(&g, &v).is_empty() {
                return Err(ApiError::no_resource());
            }
            Ok((200, resource_list(store, &g, &v), "application/json"))
        }
        Route::Resource(r) => resource(store, ctx, r, body),
        Route::Unknown => Err(ApiError::no_resource()),
    }
}

fn api_group(g: &str, vs: &[String]) -> Value {
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": versions, "preferredVersion": versions[0].clone()})
}

fn verbs(rt: &ResourceType) -> Vec<&'static str> {
    let _ = rt;
    vec![
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
}

fn resource_list(store: &super::store::Store, g: &str, v: &str) -> Value {
    let mut resources = Vec::new();
    for t in store.types_of(g, v) {
        let mut r = json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": verbs(&t),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        resources.push(r);
        for sub in &t.subresources {
            let (kind, verbs) = match sub.as_str() {
                "exec" => ("PodExecOptions", vec!["create", "get"]),
                "scale" => ("Scale", vec!["get", "patch", "update"]),
                _ => (t.kind.as_str(), vec!["get", "patch", "update"]),
            };
            resources.push(json!({
                "name": format!("{}/{sub}", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": kind, "verbs": verbs,
            }));
        }
    }
    let gv = if g.is_empty() {
        v.to_string()
    } else {
        format!("{g}/{v}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn aggregated_version(store: &super::store::Store, g: &str, v: &str) -> Value {
    let resources: Vec<Value> = store
        .types_of(g, v)
        .iter()
        .map(|t| {
            let subs: Vec<Value> = t
                .subresources
                .iter()
                .map(|s| {
                    json!({"subresource": s, "responseKind": {"group": g, "version": v, "kind": t.kind},
                           "verbs": ["get", "patch", "update"]})
                })
                .collect();
            json!({
                "resource": t.plural,
                "responseKind": {"group": g, "version": v, "kind": t.kind},
                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": t.singular,
                "verbs": verbs(t),
                "shortNames": t.short_names,
                "subresources": subs,
            })
        })
        .collect();
    json!({"version": v, "resources": resources, "freshness": "Current"})
}

fn aggregated_list(items: Vec<Value>) -> Value {
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_json::from_slice(body)
        .or_else(|_| serde_saphyr::from_slice::<Value>(body))
        .map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON or YAML: {e}"))
        })
}

fn resource(
    store: &mut super::store::Store,
    ctx: &Ctx,
    r: ResReq,
    body: &[u8],
) -> ApiResult<Answer> {
    let rt = store
        .find_type(&r.group, &r.version, &r.plural)
        .ok_or_else(ApiError::no_resource)?;
    if !rt.namespaced && r.ns.is_some() {
        return Err(ApiError::no_resource());
    }
    let ns = r.ns.clone().unwrap_or_default();
    let manager = ctx.param("fieldManager").unwrap_or("unknown").to_string();
    let dry_run = ctx.dry_run();
    if let Some(d) = ctx.param("dryRun") {
        if d != "All" {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: \"{d}\": supported values: \"All\""
            )));
        }
    }
    let status_only = match r.sub.as_deref() {
        None => false,
        Some("status") if rt.has_status_subresource() => true,
        Some(_) => return Err(ApiError::no_resource()),
    };
    let needs_ns = |name: &Option<String>| rt.namespaced && r.ns.is_none() && name.is_some();
    if needs_ns(&r.name) {
        return Err(ApiError::no_resource());
    }
    const JSON: &str = "application/json";
    match (ctx.method.as_str(), r.name.as_deref()) {
        ("GET", None) => {
            if ctx.flag("watch") {
                return Err(ApiError::bad_request(
                    "watch is not supported by this fake API server; poll instead",
                ));
            }
            list(store, &rt, r.ns.as_deref(), ctx).map(|v| (200, metadata_view(ctx, v), JSON))
        }
        ("GET", Some(name)) => store
            .get(&rt, &ns, name)
            .map(|v| (200, metadata_view(ctx, v), JSON))
            .ok_or_else(|| ApiError::not_found(&rt, name)),
        ("POST", None) => {
            if rt.namespaced && r.ns.is_none() {
                return Err(ApiError::no_resource());
            }
            let body = parse_body(body)?;
            store
                .create(&rt, &ns, body, &manager, dry_run)
                .map(|v| (201, v, JSON))
        }
        ("PUT", Some(name)) => {
            let body = parse_body(body)?;
            if !status_only && body["metadata"]["name"].as_str() != Some(name) {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            store
                .replace(&rt, &ns, name, body, &manager, dry_run, status_only)
                .map(|v| (200, v, JSON))
        }
        ("PATCH", Some(name)) => {
            let ct = ctx
                .content_type
                .split(';')
                .next()
                .unwrap_or_default()
                .trim();
            let force = ctx.flag("force");
            if force && ct != "application/apply-patch+yaml" {
                return Err(ApiError::bad_request(
                    "force: Forbidden: may not be specified for non-apply patch",
                ));
            }
            let body = parse_body(body)?;
            match ct {
                "application/apply-patch+yaml" => {
                    let Some(manager) = ctx.param("fieldManager") else {
                        return Err(ApiError::new(422, "Invalid",
                            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"));
                    };
                    if manager.len() > 128 {
                        return Err(ApiError::new(422, "Invalid", "fieldManager: Too long: may not be longer than 128"));
                    }
                    if status_only {
                        return store
                            .merge_patch(&rt, &ns, name, body, manager, dry_run, true)
                            .map(|v| (200, v, JSON));
                    }
                    let (v, outcome) = store.apply(&rt, &ns, name, body, manager, force, dry_run)?;
                    Ok((if outcome == WriteOutcome::Created { 201 } else { 200 }, v, JSON))
                }
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => store
                    .merge_patch(&rt, &ns, name, body, &manager, dry_run, status_only)
                    .map(|v| (200, v, JSON)),
                other => Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format - accepted media types include: application/apply-patch+yaml, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"),
                )),
            }
        }
        ("DELETE", Some(name)) => store
            .delete(&rt, &ns, name, dry_run)
            .map(|v| (200, v, JSON)),
        ("DELETE", None) => {
            let items = list(store, &rt, r.ns.as_deref(), ctx)?;
            if !dry_run {
                for item in items["items"].as_array().cloned().unwrap_or_default() {
                    let ins = item["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let name = item["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    store.delete(&rt, &ins, &name, false)?;
                }
            }
            Ok((200, items, JSON))
        }
        (m, _) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({m})"),
        )),
    }
}

/// What a GET answers when the client asks for metadata only (kube's `list_metadata` /
/// `get_metadata`: `Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`,
/// or `as=PartialObjectMetadata`): the objects' `metadata` alone, typed
/// `meta.k8s.io/v1` `PartialObjectMetadata(List)`, as the API server answers. Any other
/// Accept gets the full objects.
fn metadata_view(ctx: &Ctx, value: Value) -> Value {
    let wants = |what: &str| {
        ctx.accept.split(',').any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&format!("as={what}").as_str()) && params.contains(&"g=meta.k8s.io")
        })
    };
    let partial = |o: &Value| {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
               "metadata": o["metadata"]})
    };
    if value.get("items").is_some() && wants("PartialObjectMetadataList") {
        let items: Vec<Value> = value["items"]
            .as_array()
            .map(|a| a.iter().map(partial).collect())
            .unwrap_or_default();
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
               "metadata": value["metadata"], "items": items})
    } else if value.get("items").is_none() && wants("PartialObjectMetadata") {
        partial(&value)
    } else {
        value
    }
}

fn list(
    store: &super::store::Store,
    rt: &ResourceType,
    ns: Option<&str>,
    ctx: &Ctx,
) -> ApiResult<Value> {
    let selector = Selector::parse(ctx.param("labelSelector").unwrap_or_default())?;
    let fields = ctx.param("fieldSelector").unwrap_or_default().to_string();
    let limit: usize = match ctx.param("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
        None => 0,
    };
    let start = match ctx.param("continue") {
        Some(t) if !t.is_empty() => Some(store.parse_continue(t)?),
        _ => None,
    };
    let mut matching = Vec::new();
    for (key, obj) in store.list(rt, ns) {
        if start.as_ref().is_some_and(|s| &key <= s) {
            continue;
        }
        let empty = serde_json::Map::new();
        let labels = obj["metadata"]["labels"].as_object().unwrap_or(&empty);
        if !selector.matches(labels) || !field_selector_matches(&fields, &obj)? {
            continue;
        }
        matching.push((key, obj));
    }
    let total = matching.len();
    let take = if limit == 0 { total } else { limit.min(total) };
    let remaining = total - take;
    let page: Vec<((String, String), Value)> = matching.into_iter().take(take).collect();
    let mut metadata = json!({"resourceVersion": store.resource_version().to_string()});
    if remaining > 0 {
        let last = page.last().map(|(k, _)| k.clone()).unwrap_or_default();
        metadata["continue"] = json!(store.continue_token(&last));
        metadata["remainingItemCount"] = json!(remaining);
    }
    let builtin = rt.crd.is_none();
    let items: Vec<Value> = page
        .into_iter()
        .map(|(_, mut v)| {
            if builtin {
                // Typed lists of built-in resources carry no per-item apiVersion/kind.
                if let Some(m) = v.as_object_mut() {
                    m.remove("apiVersion");
                    m.remove("kind");
                }
            }
            v
        })
        .collect();
    Ok(json!({
        "apiVersion": rt.api_version(),
        "kind": format!("{}List", rt.kind),
        "metadata": metadata,
        "items": items,
    }))
}

pub(crate) fn json_response(code: u16, body: &Value, content_type: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("json"),
        )))
        .expect("response")
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = json_response(e.code, &e.to_status(), "application/json");
    if let Some(secs) = e.retry_after {
        resp.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_str(&secs.to_string()).expect("number"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let q: Vec<(String, String)> = crate::percent::form_pairs(
            "limit=5&labelSelector=tier+in+%28a%2Cb%29&command=%2Fbin%2Fsh&command=-c",
        )
        .collect();
        assert_eq!(q[1], ("labelSelector".into(), "tier in (a,b)".into()));
        assert_eq!(q[2].1, "/bin/sh");
        assert_eq!(q[3].1, "-c");
        assert_eq!(crate::percent::decode("a%2"), "a%2");
    }

    #[test]
    fn parses_paths() {
        match parse_path("/apis/gostoa.dev/v1alpha1/namespaces/t/tools/w") {
            Route::Resource(r) => {
                assert_eq!(
                    (
                        r.group.as_str(),
                        r.ns.as_deref(),
                        r.plural.as_str(),
                        r.name.as_deref()
                    ),
                    ("gostoa.dev", Some("t"), "tools", Some("w"))
                )
            }
            _ => panic!(),
        }
        match parse_path("/api/v1/namespaces/t") {
            Route::Resource(r) => assert_eq!(
                (r.plural.as_str(), r.name.as_deref(), r.ns),
                ("namespaces", Some("t"), None)
            ),
            _ => panic!(),
        }
        match parse_path("/api/v1/namespaces/t/pods/p/exec") {
            Route::Resource(r) => assert_eq!(r.sub.as_deref(), Some("exec")),
            _ => panic!(),
        }
    }
}
