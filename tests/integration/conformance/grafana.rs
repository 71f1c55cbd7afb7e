//! [`GrafanaRestorer`] restoring what [`GrafanaSource`] exported from the seeded fake
//! Grafana (folders, datasources, a library panel, dashboards, alerting: one artifact per
//! object) into a fresh, empty fake.
//!
//! The state is what the source exports from the target, per artifact, without what a
//! server makes up (ids, versions, update times) or a backup cannot hold (datasource
//! secrets, redacted settings), and without what an empty Grafana holds already (its
//! default contact point and notification policy); the writes are the requests other than
//! reads. Objects are restored one after the other, each read just before it is written,
//! so a cancellation or damage found after the first leaves those before it restored (the
//! plan reads them all first).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_backup::core::{Keyring, MemorySink, Pipeline, Restorer, RetryPolicy, RunStatus};
use stoa_backup::providers::grafana::{
    GrafanaAuth, GrafanaConnection, GrafanaRestorer, GrafanaSource,
};
use stoa_backup_test_support::artifacts::plain_bytes;
use stoa_backup_test_support::grafana_fake::{FakeGrafana, TOKEN};
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, CancelOutcome, Capabilities, DigestCheck, HarnessBackup,
    RestorerHarness, TargetState,
};

use super::canonical;

fn conn(g: &FakeGrafana) -> GrafanaConnection {
    GrafanaConnection::new(&g.url(), GrafanaAuth::Token(TOKEN.into()))
        .unwrap()
        .retry(RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        })
}

async fn export(g: &FakeGrafana) -> HarnessBackup {
    let sink = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(GrafanaSource::builder(conn(g)).build().unwrap())
        .sink(sink.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(
        report.status,
        RunStatus::Complete,
        "{:?}",
        report.manifest.failures
    );
    HarnessBackup {
        sink,
        manifest: report.manifest,
        keyring: Keyring::new(),
    }
}

/// `v` without what a server makes up or a backup cannot hold.
fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in [
                "id",
                "version",
                "updated",
                "secureJsonFields",
                "secureJsonData",
            ] {
                m.remove(k);
            }
            m.retain(|_, x| x.as_str() != Some("[REDACTED]"));
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// What an empty Grafana holds: its default contact point, a policy tree without routes.
fn is_default(name: &str, v: &Value) -> bool {
    name == "alerting/contact-points/default-email.json"
        || (name == "alerting/policies.json" && v["routes"].as_array().is_none_or(Vec::is_empty))
}

async fn state_of(g: &FakeGrafana) -> TargetState {
    let b = export(g).await;
    let mut out = TargetState::new();
    for a in &b.manifest.artifacts {
        if a.name == "index.json" {
            continue;
        }
        let mut v: Value =
            serde_json::from_slice(&plain_bytes(b.sink.as_ref(), a, &b.keyring).await).unwrap();
        if is_default(&a.name, &v) {
            continue;
        }
        strip(&mut v);
        out.insert(a.name.clone(), canonical(&v));
    }
    out
}

/// One call to the fake's API, as a Grafana client makes it; panics unless it succeeds.
async fn api(g: &FakeGrafana, path: &str, body: Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", g.url()))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
}

struct GrafanaHarness {
    source: FakeGrafana,
    target: Mutex<Arc<FakeGrafana>>,
}

impl GrafanaHarness {
    async fn new() -> Self {
        GrafanaHarness {
            source: FakeGrafana::start().await,
            target: Mutex::new(Arc::new(FakeGrafana::start_empty().await)),
        }
    }

    fn target(&self) -> Arc<FakeGrafana> {
        self.target.lock().unwrap().clone()
    }
}

#[async_trait]
impl RestorerHarness for GrafanaHarness {
    fn name(&self) -> String {
        "grafana".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            digest_check: DigestCheck::PerArtifact,
            cancel: CancelOutcome::Partial,
            ..Capabilities::default()
        }
    }

    async fn backup(&self) -> HarnessBackup {
        export(&self.source).await
    }

    async fn source_state(&self) -> TargetState {
        state_of(&self.source).await
    }

    async fn fresh_target(&self) {
        *self.target.lock().unwrap() = Arc::new(FakeGrafana::start_empty().await);
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        Arc::new(GrafanaRestorer::new(conn(&self.target())).unwrap())
    }

    async fn target_state(&self) -> TargetState {
        state_of(&self.target()).await
    }

    async fn populate_target_differently(&self) {
        // A folder and a dashboard of the backup, changed since; the rest absent.
        let g = self.target();
        api(
            &g,
            "/api/folders",
            json!({"uid": "platform", "title": "Platform (renamed)"}),
        )
        .await;
        api(
            &g,
            "/api/dashboards/db",
            json!({"dashboard": {"uid": "stoa-platform-overview", "title": "Changed since",
                                 "panels": [], "schemaVersion": 39},
                   "folderUid": "platform", "overwrite": false}),
        )
        .await;
    }

    async fn writes(&self) -> u64 {
        self.target()
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count() as u64
    }
}

#[tokio::test]
async fn the_grafana_restorer_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&GrafanaHarness::new().await).await;
}
