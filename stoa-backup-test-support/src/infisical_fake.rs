//! A fake Infisical server over real HTTP on `127.0.0.1` (feature `infisical`).
//!
//! Follows `api-contracts.md` §4: universal-auth login (`expiresIn` seconds; an expired or
//! unknown token answers **403 `TokenError`**, a missing one 401), error bodies
//! `{"reqId","statusCode","message","error"}`, projects (`/api/v1/projects`, older
//! `/api/v1/workspace`) with environments and tags, folders (`/api/v2/folders` with
//! `projectId`, `/api/v1/folders` with `workspaceId`; parents must exist), secrets listing
//! (`/api/v4/secrets`, `/api/v3/secrets/raw`) with `recursive`, `include_imports` and
//! hidden values (`<hidden-by-infisical>`), batch create/update (`/api/v4/secrets/batch`,
//! `/api/v3/secrets/batch/raw`; an existing key fails a create with 400; `mode` `upsert`),
//! approval policies (200 `{"approval":…}`, nothing written) and 429 rate limiting.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

type Body = Full<Bytes>;

/// The value Infisical returns instead of a secret the identity may not read.
pub const HIDDEN: &str = "<hidden-by-infisical>";

/// One secret as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeSecret {
    /// Id.
    pub id: String,
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Comment.
    pub comment: String,
    /// `shared` or `personal`.
    pub kind: String,
    /// Version (starts at 1).
    pub version: u64,
    /// Tag ids.
    pub tag_ids: Vec<String>,
    /// `secretMetadata` items.
    pub metadata: Vec<Value>,
    /// `skipMultilineEncoding`.
    pub skip_multiline: bool,
}

#[derive(Debug, Clone)]
struct Project {
    id: String,
    name: String,
    slug: String,
    envs: Vec<(String, String, String)>, // id, name, slug
    tags: Vec<Value>,
    /// env slug → folder paths (without "/").
    folders: BTreeMap<String, BTreeSet<String>>,
    /// env slug → (path, key) → secret.
    secrets: BTreeMap<String, BTreeMap<(String, String), FakeSecret>>,
    /// env slug → (path, imported env, imported path).
    imports: BTreeMap<String, Vec<(String, String, String)>>,
}

struct State {
    client_id: String,
    client_secret: String,
    token_ttl: Duration,
    tokens: BTreeMap<String, Instant>,
    logins: u64,
    projects: BTreeMap<String, Project>,
    hidden_keys: BTreeSet<String>,
    approval_paths: BTreeSet<(String, String)>,
    rate_limited: u64,
    rate_limit_hits: u64,
    requests: Vec<(String, String)>,
    next_id: u64,
}

impl State {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{:08x}-0000-4000-8000-{:012x}", self.next_id, self.next_id)
    }
}

/// The fake server; stops when dropped.
pub struct FakeInfisical {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeInfisical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeInfisical")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeInfisical {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Client id the fake accepts.
pub const CLIENT_ID: &str = "4c1f0a55-fake-4a11-9c1e-5d3b9f0e7a21";

fn norm_path(p: &str) -> String {
    let t = p.trim_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        format!("/{t}")
    }
}

fn parent_of(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].to_string(),
    }
}

impl FakeInfisical {
    /// Starts a fake with one identity (client id [`CLIENT_ID`], a random client secret).
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            client_id: CLIENT_ID.into(),
            client_secret: format!("cs-{:032x}", rand::random::<u128>()),
            token_ttl: Duration::from_secs(7200),
            tokens: BTreeMap::new(),
            logins: 0,
            projects: BTreeMap::new(),
            hidden_keys: BTreeSet::new(),
            approval_paths: BTreeSet::new(),
            rate_limited: 0,
            rate_limit_hits: 0,
            requests: Vec::new(),
            next_id: 0,
        }));
        let task = crate::http_fake::spawn_server(listener, state.clone(), handle);
        FakeInfisical { state, addr, task }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("infisical state"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The client secret of the identity.
    pub fn client_secret(&self) -> String {
        self.with(|s| s.client_secret.clone())
    }

    /// Lifetime of new access tokens (default 2 h).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.with(|s| s.token_ttl = ttl);
    }

    /// Expires every issued token now (the next call answers 403 `TokenError`).
    pub fn expire_tokens(&self) {
        self.with(|s| {
            let past = Instant::now() - Duration::from_secs(1);
            for t in s.tokens.values_mut() {
                *t = past;
            }
        });
    }

    /// Every token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|s| s.tokens.keys().cloned().collect())
    }

    /// Logins so far.
    pub fn logins(&self) -> u64 {
        self.with(|s| s.logins)
    }

    /// Creates a project with environments (slugs); returns its id.
    pub fn add_project(&self, name: &str, envs: &[&str]) -> String {
        self.with(|s| {
            let id = s.id();
            let envs = envs
                .iter()
                .map(|e| (s.id(), e.to_uppercase(), e.to_string()))
                .collect();
            s.projects.insert(
                id.clone(),
                Project {
                    id: id.clone(),
                    name: name.into(),
                    slug: format!("{name}-x9k2"),
                    envs,
                    tags: Vec::new(),
                    folders: BTreeMap::new(),
                    secrets: BTreeMap::new(),
                    imports: BTreeMap::new(),
                },
            );
            id
        })
    }

    /// Adds a tag; returns its id.
    pub fn add_tag(&self, project: &str, slug: &str) -> String {
        self.with(|s| {
            let id = s.id();
            s.projects
                .get_mut(project)
                .expect("project")
                .tags
                .push(json!({"id": id, "slug": slug, "name": slug, "color": "#d9534f"}));
            id
        })
    }

    /// Creates a folder and its parents.
    pub fn add_folder(&self, project: &str, env: &str, path: &str) {
        self.with(|s| {
            let p = s.projects.get_mut(project).expect("project");
            let set = p.folders.entry(env.into()).or_default();
            let mut cur = String::new();
            for seg in path.split('/').filter(|x| !x.is_empty()) {
                cur = format!("{cur}/{seg}");
                set.insert(cur.clone());
            }
        });
    }

    /// Writes a secret (creating folders); `tags` are tag slugs.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        project: &str,
        env: &str,
        path: &str,
        key: &str,
        value: &str,
        comment: &str,
        tags: &[&str],
    ) {
        self.add_folder(project, env, path);
        self.with(|s| {
            let id = s.id();
            let p = s.projects.get_mut(project).expect("project");
            let tag_ids = tags
                .iter()
                .map(|t| {
                    p.tags
                        .iter()
                        .find(|x| x["slug"] == *t)
                        .and_then(|x| x["id"].as_str())
                        .expect("tag exists")
                        .to_string()
                })
                .collect();
            let map = p.secrets.entry(env.into()).or_default();
            let k = (norm_path(path), key.to_string());
            let version = map.get(&k).map_or(1, |x| x.version + 1);
            map.insert(
                k,
                FakeSecret {
                    id,
                    key: key.into(),
                    value: value.into(),
                    comment: comment.into(),
                    kind: "shared".into(),
                    version,
                    tag_ids,
                    metadata: vec![json!({"key": "owner", "value": "team-a"})],
                    skip_multiline: false,
                },
            );
        });
    }

    /// Adds a personal override (machine identities should not see these; the fake lists
    /// them anyway to test that backups skip them).
    pub fn put_personal(&self, project: &str, env: &str, path: &str, key: &str, value: &str) {
        self.put(project, env, path, key, value, "", &[]);
        self.with(|s| {
            let p = s.projects.get_mut(project).expect("project");
            let map = p.secrets.get_mut(env).expect("env");
            let mut sec = map
                .remove(&(norm_path(path), key.to_string()))
                .expect("just put");
            sec.kind = "personal".into();
            map.insert((norm_path(path), format!("{key}\u{0}personal")), sec);
        });
    }

    /// A secret import at `path`: `(env, secretPath)` of the imported folder.
    pub fn add_import(
        &self,
        project: &str,
        env: &str,
        path: &str,
        from_env: &str,
        from_path: &str,
    ) {
        self.with(|s| {
            s.projects
                .get_mut(project)
                .expect("project")
                .imports
                .entry(env.into())
                .or_default()
                .push((norm_path(path), from_env.into(), norm_path(from_path)));
        });
    }

    /// Hides the values of secrets with this key from the identity.
    pub fn hide_values_of(&self, key: &str) {
        self.with(|s| {
            s.hidden_keys.insert(key.into());
        });
    }

    /// Puts `path` of `env` under an approval policy: batch writes there are only requested.
    pub fn require_approval(&self, env: &str, path: &str) {
        self.with(|s| {
            s.approval_paths.insert((env.into(), norm_path(path)));
        });
    }

    /// Answers the next `n` reads of secrets or folders with 429.
    pub fn rate_limit_next(&self, n: u64) {
        self.with(|s| s.rate_limited = n);
    }

    /// How many 429s were sent.
    pub fn rate_limit_hits(&self) -> u64 {
        self.with(|s| s.rate_limit_hits)
    }

    /// Removes every secret and folder of an environment.
    pub fn wipe(&self, project: &str, env: &str) {
        self.with(|s| {
            let p = s.projects.get_mut(project).expect("project");
            p.secrets.remove(env);
            p.folders.remove(env);
        });
    }

    /// The stored secret at (`path`, `key`).
    pub fn get(&self, project: &str, env: &str, path: &str, key: &str) -> Option<FakeSecret> {
        self.with(|s| {
            s.projects
                .get(project)?
                .secrets
                .get(env)?
                .get(&(norm_path(path), key.to_string()))
                .cloned()
        })
    }

    /// Number of secrets in an environment.
    pub fn count(&self, project: &str, env: &str) -> usize {
        self.with(|s| {
            s.projects
                .get(project)
                .and_then(|p| p.secrets.get(env))
                .map_or(0, |m| m.len())
        })
    }

    /// Folder paths of an environment.
    pub fn folders(&self, project: &str, env: &str) -> Vec<String> {
        self.with(|s| {
            s.projects
                .get(project)
                .and_then(|p| p.folders.get(env))
                .map(|f| f.iter().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// `(method, path?query)` of every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.with(|s| s.requests.clone())
    }
}

fn respond(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn error(status: u16, error: &str, message: &str) -> Response<Body> {
    respond(
        status,
        json!({"reqId": format!("req-{:08x}", rand::random::<u32>()), "statusCode": status, "message": message, "error": error}),
    )
}

async fn handle(
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
                return error(
                    422,
                    "ValidationFailure",
                    "projectId and environment are required",
                );
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
                return error(
                    422,
                    "ValidationFailure",
                    "projectId, environment and name are required",
                );
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return error(
                    422,
                    "ValidationFailure",
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
                return error(
                    422,
                    "ValidationFailure",
                    "projectId and environment are required",
                );
            };
            list_secrets(s, pid, env, q)
        }
        (m @ ("POST" | "PATCH"), ["api", "v4", "secrets", "batch"])
        | (m @ ("POST" | "PATCH"), ["api", "v3", "secrets", "batch", "raw"]) => batch(s, m, body),
        _ => error(404, "NotFound", &format!("Route {method}:{path} not found")),
    }
}

fn project_json(p: &Project) -> Value {
    json!({"id": p.id, "name": p.name, "slug": p.slug, "orgId": "org-fake",
           "environments": p.envs.iter().map(|(id, name, slug)| json!({"id": id, "name": name, "slug": slug})).collect::<Vec<_>>()})
}

fn secret_json(p: &Project, env: &str, path: &str, sec: &FakeSecret, hidden: bool) -> Value {
    let tags: Vec<Value> = sec
        .tag_ids
        .iter()
        .filter_map(|id| p.tags.iter().find(|t| t["id"] == *id).cloned())
        .collect();
    json!({"id": sec.id, "_id": sec.id, "workspace": p.id, "environment": env, "version": sec.version,
           "type": sec.kind, "secretKey": sec.key,
           "secretValue": if hidden { HIDDEN.to_string() } else { sec.value.clone() },
           "secretValueHidden": hidden, "secretComment": sec.comment, "secretPath": path,
           "skipMultilineEncoding": sec.skip_multiline, "secretReminderNote": null, "secretReminderRepeatDays": null,
           "tags": tags, "secretMetadata": sec.metadata,
           "createdAt": "2025-05-01T10:00:00.000Z", "updatedAt": "2025-05-02T08:00:00.000Z"})
}

fn list_secrets(s: &State, pid: &str, env: &str, q: &BTreeMap<String, String>) -> Response<Body> {
    let Some(p) = s.projects.get(pid) else {
        return error(404, "NotFound", "Project not found");
    };
    if !p.envs.iter().any(|e| e.2 == env) {
        return error(
            404,
            "NotFound",
            &format!("Environment with slug '{env}' not found"),
        );
    }
    let base = norm_path(q.get("secretPath").map_or("/", String::as_str));
    let folders = p.folders.get(env).cloned().unwrap_or_default();
    if base != "/" && !folders.contains(&base) {
        return error(
            404,
            "NotFound",
            &format!("Folder with path '{base}' in environment '{env}' not found"),
        );
    }
    let recursive = q.get("recursive").is_some_and(|r| r == "true");
    let in_scope = |path: &str| {
        path == base || (recursive && (base == "/" || path.starts_with(&format!("{base}/"))))
    };
    let mut secrets = Vec::new();
    if let Some(map) = p.secrets.get(env) {
        for ((path, _), sec) in map {
            if in_scope(path) {
                secrets.push(secret_json(
                    p,
                    env,
                    path,
                    sec,
                    s.hidden_keys.contains(&sec.key),
                ));
            }
        }
    }
    let mut imports = Vec::new();
    if q.get("include_imports").is_some_and(|v| v == "true") {
        for (path, from_env, from_path) in p.imports.get(env).into_iter().flatten() {
            if !in_scope(path) {
                continue;
            }
            let inner: Vec<Value> = p
                .secrets
                .get(from_env)
                .into_iter()
                .flatten()
                .filter(|((sp, _), _)| sp == from_path)
                .map(|((sp, _), sec)| secret_json(p, from_env, sp, sec, false))
                .collect();
            imports.push(json!({"secretPath": from_path, "environment": from_env, "folderId": "fld-import", "secrets": inner}));
        }
    }
    respond(200, json!({"secrets": secrets, "imports": imports}))
}

fn batch(s: &mut State, method: &str, body: &Value) -> Response<Body> {
    let pid = body["projectId"]
        .as_str()
        .or_else(|| body["workspaceId"].as_str());
    let (Some(pid), Some(env)) = (pid, body["environment"].as_str()) else {
        return error(
            422,
            "ValidationFailure",
            "projectId and environment are required",
        );
    };
    let items = body["secrets"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return error(
            422,
            "ValidationFailure",
            "secrets: Array must contain at least 1 element(s)",
        );
    }
    let default_path = norm_path(body["secretPath"].as_str().unwrap_or("/"));
    let mode = body["mode"]
        .as_str()
        .unwrap_or("failOnNotFound")
        .to_string();
    let ids: Vec<String> = (0..items.len()).map(|_| s.id()).collect();
    let approval = s
        .approval_paths
        .contains(&(env.to_string(), default_path.clone()));
    let Some(p) = s.projects.get_mut(pid) else {
        return error(404, "NotFound", "Project not found");
    };
    let folders = p.folders.get(env).cloned().unwrap_or_default();
    if default_path != "/" && !folders.contains(&default_path) {
        return error(
            404,
            "NotFound",
            &format!("Folder with path '{default_path}' in environment '{env}' not found"),
        );
    }
    if approval {
        return respond(
            200,
            json!({"approval": {"id": "apr-1", "policyId": "pol-1", "status": "open", "slug": "req-1",
                                "folderId": "fld", "hasMerged": false, "secretPath": default_path}}),
        );
    }
    let map = p.secrets.entry(env.into()).or_default();
    let tags = p.tags.clone();
    // Validate first: a batch is all or nothing.
    for it in &items {
        let path = it["secretPath"]
            .as_str()
            .map(norm_path)
            .unwrap_or(default_path.clone());
        let key = it["secretKey"].as_str().unwrap_or_default().to_string();
        if key.is_empty() {
            return error(422, "ValidationFailure", "secretKey is required");
        }
        let exists = map.contains_key(&(path, key.clone()));
        if method == "POST" && exists {
            return error(
                400,
                "BadRequest",
                &format!("Secret with key '{key}' already exists"),
            );
        }
        if method == "PATCH" && !exists && mode == "failOnNotFound" {
            return error(
                404,
                "NotFound",
                &format!("Secret with key '{key}' not found"),
            );
        }
        for t in it["tagIds"].as_array().into_iter().flatten() {
            if !tags.iter().any(|x| x["id"] == *t) {
                return error(404, "NotFound", "Tag not found");
            }
        }
    }
    let mut out = Vec::new();
    for (it, id) in items.iter().zip(ids) {
        let path = it["secretPath"]
            .as_str()
            .map(norm_path)
            .unwrap_or(default_path.clone());
        let key = it["secretKey"].as_str().unwrap_or_default().to_string();
        let k = (path.clone(), key.clone());
        if method == "PATCH" && !map.contains_key(&k) && mode == "ignore" {
            continue;
        }
        let prev = map.get(&k).cloned();
        let value = it["secretValue"].as_str().map(|v| {
            // Server-side normalisation: trimmed, a single trailing newline survives.
            let t = v.trim();
            if v.ends_with('\n') {
                format!("{t}\n")
            } else {
                t.to_string()
            }
        });
        let sec = FakeSecret {
            id: prev.as_ref().map_or(id, |p| p.id.clone()),
            key: key.clone(),
            value: value
                .or_else(|| prev.as_ref().map(|p| p.value.clone()))
                .unwrap_or_default(),
            comment: it["secretComment"]
                .as_str()
                .map(str::to_string)
                .or_else(|| prev.as_ref().map(|p| p.comment.clone()))
                .unwrap_or_default(),
            kind: "shared".into(),
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            tag_ids: it["tagIds"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .or_else(|| prev.as_ref().map(|p| p.tag_ids.clone()))
                .unwrap_or_default(),
            metadata: it["secretMetadata"]
                .as_array()
                .cloned()
                .or_else(|| prev.as_ref().map(|p| p.metadata.clone()))
                .unwrap_or_default(),
            skip_multiline: it["skipMultilineEncoding"].as_bool().unwrap_or(false),
        };
        map.insert(k, sec.clone());
        out.push(
            json!({"id": sec.id, "secretKey": sec.key, "version": sec.version, "secretPath": path}),
        );
    }
    respond(200, json!({ "secrets": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(norm_path(""), "/");
        assert_eq!(norm_path("a/b/"), "/a/b");
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a"), "/");
        assert_eq!(crate::percent::decode_form("%2Fa+b"), "/a b");
    }
}
