//! The Grafana probe against the fake Grafana: writes go through Grafana's HTTP API, as a
//! user or a provisioning tool makes them.

use std::time::Duration;

use serde_json::{json, Value};
use stoa_backup::core::change::{ChangeProbe, ChangeToken};
use stoa_backup::core::{ErrorKind, MemorySink, Pipeline, RetryPolicy};
use stoa_backup::providers::grafana::{
    GrafanaAuth, GrafanaChangeProbe, GrafanaConnection, GrafanaSource,
};
use stoa_backup_test_support::grafana_fake::{FakeGrafana, GfFault, TOKEN};

use super::names_probe;

fn connection(g: &FakeGrafana) -> GrafanaConnection {
    GrafanaConnection::new(&g.url(), GrafanaAuth::Token(TOKEN.into()))
        .unwrap()
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(10))
}

fn probe_of(g: &FakeGrafana) -> GrafanaChangeProbe {
    GrafanaSource::builder(connection(g))
        .build()
        .unwrap()
        .change_probe()
}

async fn token(probe: &GrafanaChangeProbe) -> ChangeToken {
    probe.probe().await.unwrap()
}

/// Sends a write to the fake as a Grafana client would; returns the answer's body.
async fn write(g: &FakeGrafana, method: reqwest::Method, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", g.url()))
        .bearer_auth(TOKEN)
        .header("X-Disable-Provenance", "true")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

async fn read(g: &FakeGrafana, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", g.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn grafana_probe_is_stable_and_a_backup_is_no_change() {
    let g = FakeGrafana::start().await;
    let probe = probe_of(&g);
    assert!(
        probe.describe().starts_with("Grafana dashboards"),
        "{}",
        probe.describe()
    );
    assert!(probe.describe().contains(&g.url()), "{}", probe.describe());
    assert!(!probe.describe().contains(TOKEN));
    let first = token(&probe).await;
    assert_eq!(token(&probe).await, first, "nothing changed");

    // A backup only reads: the next probe sees no change.
    let report = Pipeline::builder()
        .source(GrafanaSource::builder(connection(&g)).build().unwrap())
        .sink(MemorySink::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.manifest.failures);
    assert_eq!(token(&probe).await, first);
    // The token is a digest: no secret of the datasources or contact points in it.
    assert!(first.as_str().starts_with("sha256:"), "{first}");
}

#[tokio::test]
async fn grafana_probe_sees_each_kind_of_change() {
    let g = FakeGrafana::start().await;
    let probe = probe_of(&g);
    let mut last = token(&probe).await;
    let mut changed = |what: &str, now: ChangeToken| {
        assert_ne!(now, last, "{what} is a change");
        last = now;
    };

    // A dashboard saved: its version is bumped.
    let d = read(&g, "/api/dashboards/uid/stoa-mcp-tools").await;
    let before = d["meta"]["version"].as_u64().unwrap();
    let mut dash = d["dashboard"].clone();
    dash["title"] = json!("MCP Tools (edited)");
    let saved = write(
        &g,
        reqwest::Method::POST,
        "/api/dashboards/db",
        json!({"dashboard": dash, "folderUid": d["meta"]["folderUid"], "overwrite": false}),
    )
    .await;
    assert_eq!(saved["version"].as_u64(), Some(before + 1));
    changed("a saved dashboard", token(&probe).await);

    // The same save again (nothing edited): Grafana bumps the version all the same.
    let d = read(&g, "/api/dashboards/uid/stoa-mcp-tools").await;
    write(
        &g,
        reqwest::Method::POST,
        "/api/dashboards/db",
        json!({"dashboard": d["dashboard"], "folderUid": d["meta"]["folderUid"]}),
    )
    .await;
    changed("a re-saved dashboard", token(&probe).await);

    g.add_dashboards(1, "");
    changed("a new dashboard", token(&probe).await);

    write(
        &g,
        reqwest::Method::PUT,
        "/api/folders/ops",
        json!({"title": "Operations", "overwrite": true}),
    )
    .await;
    changed("a renamed folder", token(&probe).await);
    write(
        &g,
        reqwest::Method::POST,
        "/api/folders/ops/move",
        json!({"parentUid": ""}),
    )
    .await;
    changed("a moved folder", token(&probe).await);

    let mut loki = read(&g, "/api/datasources/uid/loki").await;
    loki["url"] = json!("http://loki-gateway:3100");
    write(&g, reqwest::Method::PUT, "/api/datasources/uid/loki", loki).await;
    changed("an updated datasource", token(&probe).await);

    let panel = read(&g, "/api/library-elements/lp-latency").await;
    write(
        &g,
        reqwest::Method::PATCH,
        "/api/library-elements/lp-latency",
        json!({"name": "Latency p99", "model": panel["result"]["model"], "kind": 1,
               "folderUid": "ops", "version": panel["result"]["version"]}),
    )
    .await;
    changed("an updated library panel", token(&probe).await);

    let mut rule = read(&g, "/api/v1/provisioning/alert-rules/stoa-high-error-rate").await;
    rule["for"] = json!("10m");
    write(
        &g,
        reqwest::Method::PUT,
        "/api/v1/provisioning/alert-rules/stoa-high-error-rate",
        rule,
    )
    .await;
    changed("an updated alert rule", token(&probe).await);

    write(
        &g,
        reqwest::Method::PUT,
        "/api/v1/provisioning/templates/stoa",
        json!({"template": "{{ define \"stoa\" }}STOA!{{ end }}"}),
    )
    .await;
    changed("an updated template", token(&probe).await);

    let policies = json!({"receiver": "grafana-default-email", "group_by": ["alertname"]});
    write(
        &g,
        reqwest::Method::PUT,
        "/api/v1/provisioning/policies",
        policies,
    )
    .await;
    changed("a new policy tree", token(&probe).await);

    assert_eq!(token(&probe).await, last, "and stable again");
}

#[tokio::test]
async fn grafana_probe_errors_keep_their_kind() {
    let g = FakeGrafana::start().await;
    let probe = probe_of(&g);

    g.fault(GfFault::new("/api/datasources", 403).times(1));
    let e = probe.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    names_probe(&e, "grafana");

    g.fault(GfFault::new("/api/search", 503).times(1));
    let e = probe.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    names_probe(&e, "grafana");

    g.fault(GfFault::new("/api/dashboards/uid/", 500).times(1));
    let e = probe.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.context_value("dashboard").is_some(), "{e}");

    let wrong = GrafanaSource::builder(
        GrafanaConnection::new(&g.url(), GrafanaAuth::Token("glsa_wrong".into()))
            .unwrap()
            .retry(RetryPolicy::none()),
    )
    .component("grafana-ops")
    .build()
    .unwrap()
    .change_probe();
    let e = wrong.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    names_probe(&e, "grafana-ops");
    assert!(!e.to_string().contains("glsa_wrong"), "{e}");

    // A dashboard the legacy API cannot read (406) does not fail the probe.
    let first = token(&probe).await;
    g.fault(GfFault::new("/api/dashboards/uid/stoa-mcp-tools", 406));
    let unreadable = token(&probe).await;
    assert_ne!(unreadable, first);
    assert_eq!(token(&probe).await, unreadable);
}
