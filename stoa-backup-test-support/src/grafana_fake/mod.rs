//! A fake Grafana (11.x HTTP API) over real HTTP on loopback, for tests of the Grafana
//! provider.
//!
//! It follows `shared/api-contracts.md` §2: bearer (service-account token) or basic auth on
//! every call but `/api/health`; dashboard search paged with `limit`/`page`; nested folders
//! (`parentUid` lists direct children only; `sharedwithme` virtual folder); dashboards by uid
//! with `meta.folderUid`, saved with the server's rules (unknown non-null `id` → 404; without
//! `overwrite`: a new dashboard whose uid is taken → 412 `name-exists`, a stale version → 412
//! `version-mismatch`, the same title in the folder → 412 `name-exists`; unknown folder →
//! 400, provisioned → 400);
//! datasources whose `secureJsonData` is never returned (only `secureJsonFields`); library
//! elements paged; alerting provisioning (rules, contact points with `[REDACTED]` secure
//! settings, policies, templates; writes get provenance `api` unless they carry
//! `X-Disable-Provenance: true`); error bodies `{"message": …}`; injected faults.
//!
//! [`FakeGrafana::start`] serves the three fixture dashboards from
//! the carried STOA fixtures (`grafana/`) in nested folders, two datasources (one with a secret),
//! a library panel, a contact point, a template, a policy tree and an alert rule.

mod http;
mod provisioning;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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
        let task = crate::http_fake::spawn_server(listener, shared.clone(), http::handle);
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
