//! The fake's HTTP API: auth, errors, rate limits, projects, environments, tags, folders;
//! secrets are in `secrets`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::projects;
use super::secrets::{batch, list_secrets};
use super::{norm_path, parent_of, Project, State};

pub(super) type Body = Full<Bytes>;

pub(super) fn respond(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

pub(super) fn error(status: u16, error: &str, message: &str) -> Response<Body> {
    respond(
        status,
        json!({"reqId": format!("req-{:08x}", rand::random::<u32>()), "statusCode": status, "message": message, "error": error}),
    )
}

/// A schema error as Infisical answers it: 422 `ValidationFailure` whose `message` is the
/// list of zod issues (here one, at `field`).
pub(super) fn invalid(field: &str, message: &str) -> Response<Body> {
    respond(
        422,
        json!({"reqId": format!("req-{:08x}", rand::random::<u32>()), "statusCode": 422,
               "message": [{"code": "custom", "path": [field], "message": message}],
               "error": "ValidationFailure"}),
    )
}

pub(super) async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let r = crate::http_fake::FakeRequest::read(req).await;
    let auth = r.header("authorization");
    let (method, path, raw_q, body) = (r.method, r.path, r.query, r.body);
    let mut s = state.lock().expect("infisical state");
    s.requests.push((method.clone(), format!("{path}?{raw_q}")));
    let q: BTreeMap<String, String> = crate::percent::form_pairs(&raw_q).collect();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(route(&mut s, &method, &path, &q, auth, &body))
}

fn route(
    s: &mut State,
    method: &str,
    path: &str,
    q: &BTreeMap<String, String>,
    auth: Option<String>,
    body: &Value,
) -> Response<Body> {
    if path == "/api/status" {
        return respond(
            200,
            json!({"date": "2025-05-01T00:00:00.000Z", "message": "Ok", "emailConfigured": false}),
        );
    }
    if method == "POST" && path == "/api/v1/auth/universal-auth/login" {
        if body["clientId"] != s.client_id.as_str()
            || body["clientSecret"] != s.client_secret.as_str()
        {
            return error(401, "UnauthorizedError", "Invalid credentials");
        }
        s.logins += 1;
        let token = format!("eyJhbGciOiJIUzI1NiJ9.fake{:032x}", rand::random::<u128>());
        s.tokens.insert(token.clone(), Instant::now() + s.token_ttl);
        return respond(
            200,
            json!({"accessToken": token, "expiresIn": s.token_ttl.as_secs(), "accessTokenMaxTTL": 2_592_000, "tokenType": "Bearer"}),
        );
    }
    let Some(token) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) else {
        return error(401, "UnauthorizedError", "Missing Authorization header");
    };
    match s.tokens.get(token) {
        Some(exp) if *exp > Instant::now() => {}
        _ => {
            return error(
                403,
                "TokenError",
                "Your token has expired. Please re-authenticate.",
            )
        }
    }
    let reads_limited = method == "GET" && (path.contains("/secrets") || path.contains("/folders"));
    if reads_limited && s.rate_limited > 0 {
        s.rate_limited -= 1;
        s.rate_limit_hits += 1;
        return error(
            429,
            "RateLimitExceeded",
            "Rate limit exceeded. Please try again in 60 seconds",
        );
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let Some(answer) = projects::create(s, method, &segs, body) {
        return answer;
    }
    match (method, segs.as_slice()) {
        ("GET", ["api", "v1", "projects"]) | ("GET", ["api", "v1", "workspace"]) => {
            let list: Vec<Value> = s.projects.values().map(project_json).collect();
            let key = if segs[2] == "projects" {
                "projects"
            } else {
                "workspaces"
            };
            respond(200, json!({ key: list }))
        }
        ("GET", ["api", "v1", kind @ ("projects" | "workspace"), id]) => {
            match s.projects.get(*id) {
                Some(p) => respond(
                    200,
                    json!({ if *kind == "projects" { "project" } else { "workspace" }: project_json(p) }),
                ),
                None => error(
                    404,
                    "NotFound",
                    &format!("Project with ID '{id}' not found"),
                ),
            }
        }
        ("GET", ["api", "v1", "projects" | "workspace", id, "tags"]) => match s.projects.get(*id) {
            Some(p) => respond(200, json!({"workspaceTags": p.tags})),
            None => error(404, "NotFound", "Project not found"),
        },
        ("GET", ["api", v @ ("v1" | "v2"), "folders"]) => {
            let pid = if *v == "v2" {
                q.get("projectId")
            } else {
                q.get("workspaceId")
            };
            let (Some(pid), Some(env)) = (pid, q.get("environment")) else {
                return invalid("projectId", "Required: projectId and environment");
            };
            let Some(p) = s.projects.get(pid) else {
                return error(404, "NotFound", "Project not found");
            };
            let base = norm_path(q.get("path").map_or("/", String::as_str));
            let folders = p.folders.get(env).cloned().unwrap_or_default();
            if base != "/" && !folders.contains(&base) {
                return error(
                    404,
                    "NotFound",
                    &format!("Folder with path '{base}' in environment '{env}' not found"),
                );
            }
            let recursive = q.get("recursive").is_some_and(|r| r == "true");
            let env_id = p
                .envs
                .iter()
                .find(|e| e.2 == *env)
                .map(|e| e.0.clone())
                .unwrap_or_default();
            let list: Vec<Value> = folders
                .iter()
                .filter(|f| {
                    let under = if base == "/" { true } else { f.starts_with(&format!("{base}/")) };
                    under && (recursive || parent_of(f) == base)
                })
                .map(|f| json!({"id": format!("fld-{}", f.len()), "name": f.rsplit('/').next().unwrap_or_default(),
                                "parentId": null, "envId": env_id, "description": null, "relativePath": f}))
                .collect();
            respond(200, json!({ "folders": list }))
        }
        ("POST", ["api", v @ ("v1" | "v2"), "folders"]) => {
            let pid = if *v == "v2" {
                &body["projectId"]
            } else {
                &body["workspaceId"]
            };
            let (Some(pid), Some(env), Some(name)) = (
                pid.as_str(),
                body["environment"].as_str(),
                body["name"].as_str(),
            ) else {
                return invalid("name", "Required: projectId, environment and name");
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return invalid(
                    "name",
                    "Folder name can only contain letters, digits, - and _",
                );
            }
            let parent = norm_path(body["path"].as_str().unwrap_or("/"));
            let Some(p) = s.projects.get_mut(pid) else {
                return error(404, "NotFound", "Project not found");
            };
            let set = p.folders.entry(env.into()).or_default();
            if parent != "/" && !set.contains(&parent) {
                return error(
                    404,
                    "NotFound",
                    &format!("Folder with path '{parent}' in environment '{env}' not found"),
                );
            }
            let full = if parent == "/" {
                format!("/{name}")
            } else {
                format!("{parent}/{name}")
            };
            set.insert(full.clone());
            respond(
                200,
                json!({"folder": {"id": format!("fld-{}", full.len()), "name": name, "relativePath": full}}),
            )
        }
        ("GET", ["api", "v4", "secrets"]) | ("GET", ["api", "v3", "secrets", "raw"]) => {
            let pid = q.get("projectId").or_else(|| q.get("workspaceId"));
            let (Some(pid), Some(env)) = (pid, q.get("environment")) else {
                return invalid("projectId", "Required: projectId and environment");
            };
            list_secrets(s, pid, env, q)
        }
        (m @ ("POST" | "PATCH"), ["api", "v4", "secrets", "batch"])
        | (m @ ("POST" | "PATCH"), ["api", "v3", "secrets", "batch", "raw"]) => batch(s, m, body),
        _ => error(404, "NotFound", &format!("Route {method}:{path} not found")),
    }
}

pub(super) fn project_json(p: &Project) -> Value {
    json!({"id": p.id, "name": p.name, "slug": p.slug, "orgId": "org-fake",
           "environments": p.envs.iter().map(|(id, name, slug)| json!({"id": id, "name": name, "slug": slug})).collect::<Vec<_>>()})
}
