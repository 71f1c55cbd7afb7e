//! A fake Grafana (11.x HTTP API) over real HTTP on loopback, for tests of the Grafana
//! provider.
//!
//! It follows `shared/api-contracts.md` §2: bearer (service-account token) or basic auth on
//! every call but `/api/health`; dashboard search paged with `limit`/`page`; nested folders
//! (`parentUid` lists direct children only; `sharedwithme` virtual folder); dashboards by uid
//! with `meta.folderUid`, saved with the server's rules (unknown non-null `id` → 404, version
//! mismatch without `overwrite` → 412, unknown folder → 400, provisioned → 400);
//! datasources whose `secureJsonData` is never returned (only `secureJsonFields`); library
//! elements paged; alerting provisioning (rules, contact points with `[REDACTED]` secure
//! settings, policies, templates); error bodies `{"message": …}`; injected faults.
//!
//! [`FakeGrafana::start`] serves the three fixture dashboards from
//! the carried STOA fixtures (`grafana/`) in nested folders, two datasources (one with a secret),
//! a library panel, a contact point, a template, a policy tree and an alert rule.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

/// Token accepted by default.
pub const TOKEN: &str = "glsa_stoa_backup_test_token";

/// Basic-auth user and password accepted by default.
pub const BASIC: (&str, &str) = ("admin", "admin-password");

/// Directory of the fixture dashboards.
pub fn fixtures_dir() -> std::path::PathBuf {
    crate::fixtures::path("grafana")
}

/// One fixture dashboard by file stem (`mcp-tools`, `platform-overview`,
/// `multi-tenant-overview`).
pub fn fixture_dashboard(stem: &str) -> Value {
    let text = crate::fixtures::read(&format!("grafana/{stem}.json"));
    serde_json::from_str(&text).expect("fixture dashboard is JSON")
}

/// One request the fake received.
pub use crate::http_fake::LoggedRequest as GfRequest;

/// An injected fault (answered with Grafana's `{"message": …}` body).
pub use crate::http_fake::HttpFault as GfFault;

#[derive(Default)]
struct State {
    next_id: u64,
    folders: BTreeMap<String, Value>,
    dashboards: BTreeMap<String, Value>,
    datasources: Vec<Value>,
    library: BTreeMap<String, Value>,
    rules: BTreeMap<String, Value>,
    contact_points: Vec<Value>,
    policies: Value,
    templates: BTreeMap<String, Value>,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

struct Shared {
    state: Mutex<State>,
    log: Mutex<Vec<GfRequest>>,
    faults: Mutex<Vec<GfFault>>,
    version: String,
}

/// A running fake Grafana; stops when dropped.
pub struct FakeGrafana {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGrafana {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeGrafana {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGrafana")
            .field("addr", &self.addr)
            .finish()
    }
}

const SECURE_SETTINGS: [&str; 5] = [
    "password",
    "token",
    "apiKey",
    "integrationKey",
    "authorization_credentials",
];

fn default_policies() -> Value {
    json!({"receiver": "grafana-default-email", "group_by": ["grafana_folder", "alertname"]})
}

impl FakeGrafana {
    /// Starts a fake seeded with the fixtures.
    pub async fn start() -> Self {
        let g = Self::start_empty().await;
        g.seed();
        g
    }

    /// Starts an empty fake (the default contact point and policy tree only).
    pub async fn start_empty() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = State {
            policies: default_policies(),
            contact_points: vec![
                json!({"uid": "default-email", "name": "grafana-default-email", "type": "email", "settings": {"addresses": "<example@email.com>"}, "disableResolveMessage": false}),
            ],
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            version: "11.3.0".into(),
        });
        let task = crate::http_fake::spawn_server(listener, shared.clone(), handle);
        FakeGrafana { shared, addr, task }
    }

    fn seed(&self) {
        let mut st = self.shared.state.lock().expect("state");
        for (uid, title, parent) in [
            ("platform", "Platform", None),
            ("ops", "Ops", Some("platform")),
            ("tenants", "Tenants", None),
        ] {
            let id = st.id();
            let mut f = json!({"id": id, "uid": uid, "title": title, "version": 1});
            if let Some(p) = parent {
                f["parentUid"] = json!(p);
            }
            st.folders.insert(uid.into(), f);
        }
        for (stem, folder) in [
            ("platform-overview", "platform"),
            ("mcp-tools", "ops"),
            ("multi-tenant-overview", ""),
        ] {
            let mut d = fixture_dashboard(stem);
            let id = st.id();
            d["id"] = json!(id);
            let uid = d["uid"].as_str().expect("uid").to_string();
            st.dashboards.insert(
                uid,
                json!({"dashboard": d, "folderUid": folder, "provisioned": false}),
            );
        }
        let (a, b) = (st.id(), st.id());
        st.datasources = vec![
            json!({"id": a, "uid": "prometheus", "orgId": 1, "name": "Prometheus", "type": "prometheus",
                   "access": "proxy", "url": "http://prometheus:9090", "basicAuth": true,
                   "basicAuthUser": "grafana", "isDefault": true, "jsonData": {"httpMethod": "POST"},
                   "readOnly": false, "version": 3,
                   "secureJsonData": {"basicAuthPassword": "prom-secret"}}),
            json!({"id": b, "uid": "loki", "orgId": 1, "name": "Loki", "type": "loki",
                   "access": "proxy", "url": "http://loki:3100", "basicAuth": false,
                   "isDefault": false, "jsonData": {"maxLines": 1000}, "readOnly": false, "version": 1,
                   "secureJsonData": {"httpHeaderValue1": "Bearer loki-secret"}}),
        ];
        let id = st.id();
        st.library.insert(
            "lp-latency".into(),
            json!({"id": id, "uid": "lp-latency", "name": "Latency", "kind": 1, "type": "timeseries",
                   "folderUid": "ops", "version": 1,
                   "model": {"type": "timeseries", "title": "Latency", "datasource": {"type": "prometheus", "uid": "prometheus"}}}),
        );
        st.contact_points.push(
            json!({"uid": "stoa-oncall", "name": "stoa-oncall", "type": "webhook",
            "settings": {"url": "https://hooks.example.org/stoa", "password": "hook-secret"},
            "disableResolveMessage": false}),
        );
        st.templates.insert(
            "stoa".into(),
            json!({"name": "stoa", "template": "{{ define \"stoa\" }}STOA {{ .Status }}{{ end }}"}),
        );
        st.policies = json!({"receiver": "grafana-default-email", "group_by": ["grafana_folder", "alertname"],
            "routes": [{"receiver": "stoa-oncall", "object_matchers": [["team", "=", "stoa"]]}]});
        st.rules.insert(
            "stoa-high-error-rate".into(),
            json!({"uid": "stoa-high-error-rate", "orgID": 1, "folderUID": "ops", "ruleGroup": "stoa",
                   "title": "High error rate", "condition": "C",
                   "data": [{"refId": "A", "datasourceUid": "prometheus", "relativeTimeRange": {"from": 600, "to": 0},
                             "model": {"expr": "sum(rate(stoa_errors_total[5m]))", "refId": "A"}}],
                   "for": "5m", "labels": {"team": "stoa"}, "annotations": {"summary": "errors"},
                   "noDataState": "NoData", "execErrState": "Error", "isPaused": false,
                   "updated": "2025-06-01T09:00:00Z", "provenance": ""}),
        );
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds `n` dashboards `bulk-00000`… in folder `folder` (empty: root).
    pub fn add_dashboards(&self, n: usize, folder: &str) {
        let mut st = self.shared.state.lock().expect("state");
        for i in 0..n {
            let id = st.id();
            let uid = format!("bulk-{i:05}");
            st.dashboards.insert(
                uid.clone(),
                json!({"dashboard": {"id": id, "uid": uid, "title": format!("Bulk {i}"), "version": 1, "panels": [], "schemaVersion": 39},
                       "folderUid": folder, "provisioned": false}),
            );
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<GfRequest> {
        self.shared.log.lock().expect("log").clone()
    }

    /// Injects a fault.
    pub fn fault(&self, f: GfFault) {
        self.shared.faults.lock().expect("faults").push(f);
    }

    /// The folder uid a dashboard is in (`""` for the root), if it exists.
    pub fn dashboard_folder(&self, uid: &str) -> Option<String> {
        let st = self.shared.state.lock().expect("state");
        st.dashboards
            .get(uid)
            .map(|d| d["folderUid"].as_str().unwrap_or("").to_string())
    }

    /// The stored secure values of a datasource (what a restore set).
    pub fn datasource_secrets(&self, uid: &str) -> Option<Map<String, Value>> {
        let st = self.shared.state.lock().expect("state");
        st.datasources
            .iter()
            .find(|d| d["uid"].as_str() == Some(uid))
            .map(|d| d["secureJsonData"].as_object().cloned().unwrap_or_default())
    }

    /// Number of objects: (folders, dashboards, datasources, alert rules).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let st = self.shared.state.lock().expect("state");
        (
            st.folders.len(),
            st.dashboards.len(),
            st.datasources.len(),
            st.rules.len(),
        )
    }

    /// The parent of a folder.
    pub fn folder_parent(&self, uid: &str) -> Option<String> {
        let st = self.shared.state.lock().expect("state");
        st.folders
            .get(uid)
            .and_then(|f| f["parentUid"].as_str().map(str::to_string))
    }
}

// ---------------------------------------------------------------------------------------

type Body = Full<Bytes>;

fn respond(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("json"),
        )))
        .expect("response")
}

fn msg(status: u16, m: &str) -> Response<Body> {
    respond(status, &json!({"message": m}))
}

fn authorized(auth: Option<&str>) -> bool {
    match auth {
        Some(a) if a.strip_prefix("Bearer ") == Some(TOKEN) => true,
        Some(a) => a.strip_prefix("Basic ").is_some_and(|b| {
            decode_b64(b).as_deref() == Some(format!("{}:{}", BASIC.0, BASIC.1).as_bytes())
        }),
        None => false,
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = A.iter().position(|x| *x == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let r = crate::http_fake::FakeRequest::read(req).await;
    let auth = r.header("authorization");
    Ok(crate::http_fake::answer_logged(&shared.log, &r, || {
        route(
            &shared,
            &r.method,
            &r.path,
            &r.query,
            auth.as_deref(),
            &r.body,
        )
    }))
}

fn injected(shared: &Shared, method: &str, path: &str) -> Option<Response<Body>> {
    crate::http_fake::injected_fault(&shared.faults, method, path, |status| {
        let text = match status {
            401 => "Unauthorized",
            403 => "You'll need additional permissions to perform this action",
            404 => "Not found",
            409 => "Conflict",
            412 => "The dashboard has been changed by someone else",
            429 => "Too many requests",
            _ => "Internal server error",
        };
        msg(status, text)
    })
}

fn page<T: Clone>(
    items: &[T],
    q: &HashMap<String, String>,
    limit_key: &str,
    default: usize,
) -> Vec<T> {
    let limit: usize = q
        .get(limit_key)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        .clamp(1, 5000);
    let page: usize = q
        .get("page")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    items
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .cloned()
        .collect()
}

fn folder_view(f: &Value, all: &BTreeMap<String, Value>) -> Value {
    let mut v = f.clone();
    let uid = f["uid"].as_str().unwrap_or("");
    v["url"] = json!(format!("/dashboards/f/{uid}/"));
    let mut parents = Vec::new();
    let mut cur = f["parentUid"].as_str();
    while let Some(p) = cur {
        let Some(pf) = all.get(p) else { break };
        parents.insert(0, json!({"uid": p, "title": pf["title"]}));
        cur = pf["parentUid"].as_str();
    }
    if !parents.is_empty() {
        v["parents"] = json!(parents);
    }
    v
}

fn redact_settings(c: &Value) -> Value {
    let mut c = c.clone();
    if let Some(s) = c.get_mut("settings").and_then(Value::as_object_mut) {
        for k in SECURE_SETTINGS {
            if s.contains_key(k) {
                s.insert(k.into(), json!("[REDACTED]"));
            }
        }
    }
    c
}

fn route(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Response<Body> {
    if let Some(r) = injected(shared, method, path) {
        return r;
    }
    let q: HashMap<String, String> = crate::percent::form_pairs(query).collect();
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(crate::percent::decode_form)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if method == "GET" && segs == ["api", "health"] {
        return respond(
            200,
            &json!({"commit": "5c4f1e2", "database": "ok", "version": shared.version}),
        );
    }
    if !authorized(auth) {
        return msg(401, "Unauthorized");
    }
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let mut st = shared.state.lock().expect("state");
    let st = &mut *st;
    match (method, segs.as_slice()) {
        ("GET", ["api", "search"]) => {
            let ty = q.get("type").map(String::as_str).unwrap_or("dash-db");
            let hits: Vec<Value> = if ty == "dash-folder" {
                st.folders
                    .values()
                    .map(|f| json!({"id": f["id"], "uid": f["uid"], "title": f["title"], "type": "dash-folder"}))
                    .collect()
            } else {
                st.dashboards
                    .values()
                    .map(|d| {
                        let uid = d["dashboard"]["uid"].clone();
                        let mut h = json!({"id": d["dashboard"]["id"], "uid": uid, "title": d["dashboard"]["title"],
                                           "type": "dash-db", "tags": d["dashboard"]["tags"], "isStarred": false});
                        if let Some(f) = d["folderUid"].as_str().filter(|f| !f.is_empty()) {
                            h["folderUid"] = json!(f);
                            h["folderTitle"] = st.folders.get(f).map(|x| x["title"].clone()).unwrap_or(Value::Null);
                        }
                        h
                    })
                    .collect()
            };
            respond(200, &json!(page(&hits, &q, "limit", 1000)))
        }
        ("GET", ["api", "folders"]) => {
            let parent = q.get("parentUid").map(String::as_str).unwrap_or("");
            let list: Vec<Value> = st
                .folders
                .values()
                .filter(|f| f["parentUid"].as_str().unwrap_or("") == parent)
                .map(|f| json!({"id": f["id"], "uid": f["uid"], "title": f["title"]}))
                .collect();
            let mut out = page(&list, &q, "limit", 1000);
            if parent.is_empty() && q.get("page").is_none_or(|p| p == "1") {
                out.push(json!({"id": 0, "uid": "sharedwithme", "title": "Shared with me"}));
            }
            respond(200, &json!(out))
        }
        ("GET", ["api", "folders", uid]) => match st.folders.get(*uid) {
            Some(f) => respond(200, &folder_view(f, &st.folders)),
            None => msg(404, "folder not found"),
        },
        ("POST", ["api", "folders"]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let uid = v["uid"].as_str().unwrap_or("").to_string();
            if uid.is_empty() {
                return msg(400, "uid required");
            }
            if st.folders.contains_key(&uid) {
                return msg(409, "a folder with the same uid already exists");
            }
            let parent = v["parentUid"].as_str().filter(|p| !p.is_empty());
            if let Some(p) = parent {
                if !st.folders.contains_key(p) {
                    return msg(404, "parent folder not found");
                }
            }
            let id = st.id();
            let mut f = json!({"id": id, "uid": uid, "title": v["title"], "version": 1});
            if let Some(p) = parent {
                f["parentUid"] = json!(p);
            }
            st.folders.insert(uid, f.clone());
            respond(200, &folder_view(&f, &st.folders))
        }
        ("PUT", ["api", "folders", uid]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let Some(f) = st.folders.get_mut(*uid) else {
                return msg(404, "folder not found");
            };
            if v["overwrite"].as_bool() != Some(true) && v["version"] != f["version"] {
                return respond(
                    412,
                    &json!({"status": "version-mismatch", "message": "the folder has been changed by someone else"}),
                );
            }
            f["title"] = v["title"].clone();
            f["version"] = json!(f["version"].as_u64().unwrap_or(1) + 1);
            let f = f.clone();
            respond(200, &folder_view(&f, &st.folders))
        }
        ("POST", ["api", "folders", uid, "move"]) => {
            let p = parsed
                .as_ref()
                .and_then(|v| v["parentUid"].as_str())
                .unwrap_or("")
                .to_string();
            if !p.is_empty() && !st.folders.contains_key(&p) {
                return msg(404, "parent folder not found");
            }
            let Some(f) = st.folders.get_mut(*uid) else {
                return msg(404, "folder not found");
            };
            if p.is_empty() {
                f.as_object_mut().map(|m| m.remove("parentUid"));
            } else {
                f["parentUid"] = json!(p);
            }
            let f = f.clone();
            respond(200, &folder_view(&f, &st.folders))
        }
        ("GET", ["api", "dashboards", "uid", uid]) => match st.dashboards.get(*uid) {
            Some(d) => {
                let folder = d["folderUid"].as_str().unwrap_or("");
                let mut meta = json!({"version": d["dashboard"]["version"], "provisioned": d["provisioned"],
                                      "slug": uid, "url": format!("/d/{uid}/{uid}"),
                                      "created": "2025-04-01T10:00:00Z", "updated": "2025-06-01T09:00:00Z"});
                if !folder.is_empty() {
                    meta["folderUid"] = json!(folder);
                    meta["folderTitle"] = st
                        .folders
                        .get(folder)
                        .map(|f| f["title"].clone())
                        .unwrap_or(Value::Null);
                }
                respond(200, &json!({"dashboard": d["dashboard"], "meta": meta}))
            }
            None => msg(404, "Dashboard not found"),
        },
        ("POST", ["api", "dashboards", "db"]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let mut dash = v["dashboard"].clone();
            let Some(uid) = dash["uid"].as_str().map(str::to_string) else {
                return msg(400, "dashboard uid required");
            };
            let folder = v["folderUid"].as_str().unwrap_or("").to_string();
            if !folder.is_empty() && !st.folders.contains_key(&folder) {
                return msg(400, "folder not found");
            }
            let overwrite = v["overwrite"].as_bool() == Some(true);
            let existing = st.dashboards.get(&uid).cloned();
            if let Some(id) = dash["id"].as_u64() {
                let same = existing
                    .as_ref()
                    .is_some_and(|e| e["dashboard"]["id"].as_u64() == Some(id));
                if !same {
                    return msg(404, "Dashboard not found");
                }
            }
            let id = match &existing {
                Some(e) => {
                    if e["provisioned"].as_bool() == Some(true) {
                        return msg(400, "Cannot save provisioned dashboard");
                    }
                    if !overwrite && dash["version"] != e["dashboard"]["version"] {
                        return respond(
                            412,
                            &json!({"status": "version-mismatch", "message": "The dashboard has been changed by someone else"}),
                        );
                    }
                    e["dashboard"]["id"].as_u64().unwrap_or(0)
                }
                None => st.id(),
            };
            let version = existing
                .as_ref()
                .and_then(|e| e["dashboard"]["version"].as_u64())
                .map_or(1, |v| v + 1);
            dash["id"] = json!(id);
            dash["version"] = json!(version);
            st.dashboards.insert(
                uid.clone(),
                json!({"dashboard": dash, "folderUid": folder, "provisioned": false}),
            );
            respond(
                200,
                &json!({"id": id, "uid": uid, "url": format!("/d/{uid}/{uid}"), "status": "success", "version": version, "slug": uid}),
            )
        }
        ("GET", ["api", "datasources"]) => {
            let list: Vec<Value> = st
                .datasources
                .iter()
                .map(|d| {
                    let mut d = d.clone();
                    if let Some(m) = d.as_object_mut() {
                        m.remove("secureJsonData");
                        m.remove("version");
                    }
                    d
                })
                .collect();
            respond(200, &json!(list))
        }
        ("GET", ["api", "datasources", "uid", uid]) => {
            match st
                .datasources
                .iter()
                .find(|d| d["uid"].as_str() == Some(*uid))
            {
                Some(d) => {
                    let mut d = d.clone();
                    let fields: Map<String, Value> = d["secureJsonData"]
                        .as_object()
                        .map(|m| m.keys().map(|k| (k.clone(), json!(true))).collect())
                        .unwrap_or_default();
                    d.as_object_mut().map(|m| m.remove("secureJsonData"));
                    d["secureJsonFields"] = Value::Object(fields);
                    respond(200, &d)
                }
                None => msg(404, "Data source not found"),
            }
        }
        ("POST", ["api", "datasources"]) => {
            let Some(mut v) = parsed else {
                return msg(400, "bad request data");
            };
            if st.datasources.iter().any(|d| d["name"] == v["name"]) {
                return msg(409, "data source with the same name already exists");
            }
            if st.datasources.iter().any(|d| d["uid"] == v["uid"]) {
                return msg(409, "data source with the same uid already exists");
            }
            let id = st.id();
            v["id"] = json!(id);
            v["orgId"] = json!(1);
            v["version"] = json!(1);
            v.as_object_mut()
                .map(|m| m.entry("readOnly").or_insert(json!(false)));
            st.datasources.push(v.clone());
            v.as_object_mut().map(|m| m.remove("secureJsonData"));
            respond(
                200,
                &json!({"datasource": v, "id": id, "message": "Datasource added", "name": v["name"]}),
            )
        }
        ("PUT", ["api", "datasources", "uid", uid]) => {
            let Some(mut v) = parsed else {
                return msg(400, "bad request data");
            };
            let Some(d) = st
                .datasources
                .iter_mut()
                .find(|d| d["uid"].as_str() == Some(*uid))
            else {
                return msg(404, "Data source not found");
            };
            if d["readOnly"].as_bool() == Some(true) {
                return msg(403, "Cannot update read-only data source");
            }
            let mut secure = d["secureJsonData"].as_object().cloned().unwrap_or_default();
            if let Some(s) = v.get("secureJsonData").and_then(Value::as_object) {
                secure.extend(s.clone());
            }
            v["id"] = d["id"].clone();
            v["orgId"] = json!(1);
            v["version"] = json!(d["version"].as_u64().unwrap_or(1) + 1);
            v["secureJsonData"] = Value::Object(secure);
            *d = v.clone();
            v.as_object_mut().map(|m| m.remove("secureJsonData"));
            respond(
                200,
                &json!({"datasource": v, "id": v["id"], "message": "Datasource updated", "name": v["name"]}),
            )
        }
        ("GET", ["api", "library-elements"]) => {
            let all: Vec<Value> = st.library.values().cloned().collect();
            let per: usize = q.get("perPage").and_then(|s| s.parse().ok()).unwrap_or(100);
            let p: usize = q.get("page").and_then(|s| s.parse().ok()).unwrap_or(1);
            let elements = page(&all, &q, "perPage", 100);
            respond(
                200,
                &json!({"result": {"totalCount": all.len(), "page": p, "perPage": per, "elements": elements}}),
            )
        }
        ("GET", ["api", "library-elements", uid]) => match st.library.get(*uid) {
            Some(e) => respond(200, &json!({"result": e})),
            None => msg(404, "library element could not be found"),
        },
        ("POST", ["api", "library-elements"]) => {
            let Some(mut v) = parsed else {
                return msg(400, "bad request data");
            };
            let uid = v["uid"].as_str().unwrap_or("").to_string();
            if st.library.contains_key(&uid)
                || st
                    .library
                    .values()
                    .any(|e| e["name"] == v["name"] && e["folderUid"] == v["folderUid"])
            {
                return msg(400, "library element with that name or UID already exists");
            }
            let id = st.id();
            v["id"] = json!(id);
            v["version"] = json!(1);
            v["type"] = v["model"]["type"].clone();
            st.library.insert(uid, v.clone());
            respond(200, &json!({"result": v}))
        }
        ("PATCH", ["api", "library-elements", uid]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let Some(e) = st.library.get_mut(*uid) else {
                return msg(404, "library element could not be found");
            };
            if v["version"] != e["version"] {
                return msg(412, "the library element has been changed by someone else");
            }
            for k in ["name", "model", "folderUid", "kind"] {
                if let Some(x) = v.get(k) {
                    e[k] = x.clone();
                }
            }
            e["version"] = json!(e["version"].as_u64().unwrap_or(1) + 1);
            let e = e.clone();
            respond(200, &json!({"result": e}))
        }
        ("GET", ["api", "v1", "provisioning", "alert-rules"]) => {
            respond(200, &json!(st.rules.values().collect::<Vec<_>>()))
        }
        ("GET", ["api", "v1", "provisioning", "alert-rules", uid]) => match st.rules.get(*uid) {
            Some(r) => respond(200, r),
            None => respond(404, &Value::Null),
        },
        ("POST", ["api", "v1", "provisioning", "alert-rules"])
        | ("PUT", ["api", "v1", "provisioning", "alert-rules", _]) => {
            let Some(mut v) = parsed else {
                return msg(400, "bad request data");
            };
            let uid = match segs.get(4) {
                Some(u) => u.to_string(),
                None => v["uid"].as_str().unwrap_or("").to_string(),
            };
            let folder = v["folderUID"].as_str().unwrap_or("");
            if !st.folders.contains_key(folder) {
                return msg(400, "invalid alert rule: folder does not exist");
            }
            let exists = st.rules.contains_key(&uid);
            if method == "POST" && exists {
                return msg(409, "a conflicting alert rule is found: rule UID under the same organisation should be unique");
            }
            if method == "PUT" && !exists {
                return respond(404, &Value::Null);
            }
            v["uid"] = json!(uid);
            v["orgID"] = json!(1);
            v["updated"] = json!("2026-01-01T00:00:00Z");
            v["provenance"] = json!("");
            st.rules.insert(uid, v.clone());
            respond(if method == "POST" { 201 } else { 200 }, &v)
        }
        ("GET", ["api", "v1", "provisioning", "contact-points"]) => {
            let list: Vec<Value> = st.contact_points.iter().map(redact_settings).collect();
            respond(200, &json!(list))
        }
        ("POST", ["api", "v1", "provisioning", "contact-points"]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            if v.to_string().contains("[REDACTED]") {
                return msg(400, "redacted value sent back");
            }
            if st.contact_points.iter().any(|c| c["uid"] == v["uid"]) {
                return msg(409, "contact point with the same uid already exists");
            }
            st.contact_points.push(v.clone());
            respond(202, &redact_settings(&v))
        }
        ("PUT", ["api", "v1", "provisioning", "contact-points", uid]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            if v.to_string().contains("[REDACTED]") {
                return msg(400, "redacted value sent back");
            }
            let Some(c) = st
                .contact_points
                .iter_mut()
                .find(|c| c["uid"].as_str() == Some(*uid))
            else {
                return msg(404, "contact point not found");
            };
            *c = v;
            respond(202, &json!({"message": "contactpoint updated"}))
        }
        ("GET", ["api", "v1", "provisioning", "policies"]) => respond(200, &st.policies),
        ("PUT", ["api", "v1", "provisioning", "policies"]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let names: Vec<&str> = st
                .contact_points
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            let mut receivers = vec![v["receiver"].as_str().unwrap_or("")];
            for r in v["routes"].as_array().into_iter().flatten() {
                receivers.push(r["receiver"].as_str().unwrap_or(""));
            }
            if let Some(missing) = receivers
                .iter()
                .find(|r| !r.is_empty() && !names.contains(r))
            {
                return msg(
                    400,
                    &format!("invalid object specification: receiver '{missing}' does not exist"),
                );
            }
            st.policies = v;
            respond(202, &json!({"message": "policies updated"}))
        }
        ("GET", ["api", "v1", "provisioning", "templates"]) => {
            respond(200, &json!(st.templates.values().collect::<Vec<_>>()))
        }
        ("PUT", ["api", "v1", "provisioning", "templates", name]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let t = json!({"name": name, "template": v["template"]});
            st.templates.insert(name.to_string(), t.clone());
            respond(202, &t)
        }
        _ => msg(404, "Not found"),
    }
}
