//! Grafana provider over real HTTP against the fake Grafana: round trip (folders,
//! dashboards in their folders, datasources, alert rules), redaction, retries, policies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoa_backup::core::{
    stream, ErrorKind, ExistingDataPolicy, Keyring, Manifest, MemorySink, Pipeline, RetryPolicy,
    RunReport, Sink, Source,
};
use stoa_backup::providers::grafana::{
    GrafanaAuth, GrafanaConnection, GrafanaIndexFacts, GrafanaRestorer, GrafanaSource,
};
use stoa_backup_test_support::grafana_fake::{FakeGrafana, GfFault, BASIC, TOKEN};
use stoa_backup_test_support::trace::TraceCapture;

use crate::restore_support::restore_component;

fn conn(g: &FakeGrafana) -> GrafanaConnection {
    GrafanaConnection::new(&g.url(), GrafanaAuth::Token(TOKEN.into()))
        .unwrap()
        .retry(RetryPolicy {
            attempts: 8,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            ..RetryPolicy::default()
        })
}

async fn backup(g: &FakeGrafana, page_size: usize) -> (Arc<MemorySink>, Manifest) {
    let sink = Arc::new(MemorySink::new());
    let src = GrafanaSource::builder(conn(g))
        .page_size(page_size)
        .build()
        .unwrap();
    let report = Pipeline::builder()
        .source(src)
        .sink(sink.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    (sink, report.manifest)
}

/// name → parsed content, per artifact.
async fn files(sink: &MemorySink, m: &Manifest) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for a in &m.artifacts {
        let bytes = stream::collect(sink.get(&a.key).await.unwrap())
            .await
            .unwrap();
        // Stable formatting: sorted keys, pretty, trailing newline.
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("}\n"), "{}", a.name);
        out.insert(a.name.clone(), serde_json::from_slice(&bytes).unwrap());
    }
    out
}

fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in ["id", "version", "updated"] {
                m.remove(k);
            }
            m.values_mut().for_each(normalize);
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

#[tokio::test]
async fn round_trip_folders_dashboards_datasources_and_alerting() {
    let a = FakeGrafana::start().await;
    let (sink, manifest) = backup(&a, 2).await;
    let names: Vec<&str> = manifest.artifacts.iter().map(|x| x.name.as_str()).collect();
    for n in [
        "folders/platform.json",
        "folders/ops.json",
        "folders/tenants.json",
        "datasources/prometheus.json",
        "datasources/loki.json",
        "library-panels/lp-latency.json",
        "dashboards/platform/stoa-platform-overview.json",
        "dashboards/ops/stoa-mcp-tools.json",
        "dashboards/general/stoa-multi-tenant-overview.json",
        "alerting/alert-rules/stoa-high-error-rate.json",
        "alerting/contact-points/stoa-oncall.json",
        "alerting/templates/stoa.json",
        "alerting/policies.json",
        "index.json",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("sharedwithme")));
    let index = manifest
        .artifacts
        .iter()
        .find(|x| x.name == "index.json")
        .unwrap();
    assert_eq!(index.facts["grafana_version"], "11.3.0");
    assert_eq!(index.facts["counts"]["dashboard"], 3);
    assert_eq!(index.facts["counts"]["folder"], 3);
    assert_eq!(
        index.facts["redaction"]["datasources_secure_json_fields"]["prometheus"][0],
        "basicAuthPassword"
    );
    assert_eq!(
        index.facts["redaction"]["contact_points_redacted_settings"]["stoa-oncall"][0],
        "settings.password"
    );
    let before = files(&sink, &manifest).await;
    let text = serde_json::to_string(&before).unwrap();
    for s in ["prom-secret", "loki-secret", "hook-secret"] {
        assert!(!text.contains(s), "{s} leaked");
    }
    assert_eq!(before["folders/ops.json"]["parentUid"], "platform");
    assert_eq!(
        before["dashboards/ops/stoa-mcp-tools.json"]["folderUid"],
        "ops"
    );
    assert!(before["dashboards/ops/stoa-mcp-tools.json"]["dashboard"]
        .get("id")
        .is_none());

    // Restore into an empty Grafana: one datasource secret supplied, one missing.
    let b = FakeGrafana::start_empty().await;
    let restorer = GrafanaRestorer::new(conn(&b)).unwrap().datasource_secret(
        "prometheus",
        "basicAuthPassword",
        "from-vault",
    );
    let keyring = Keyring::new();
    let restore = |existing, dry_run| {
        restore_component(
            sink.clone(),
            &manifest,
            &keyring,
            restorer.clone(),
            existing,
            dry_run,
        )
    };
    // Dry run (the plan) first: nothing written.
    let dry = restore(ExistingDataPolicy::Fail, true).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(b.counts(), (0, 0, 0, 0));
    let r = restore(ExistingDataPolicy::Fail, false).await.unwrap();
    assert_eq!(
        (dry.created, dry.updated, dry.skipped, dry.conflicts),
        (r.created, r.updated, r.skipped, r.conflicts)
    );
    assert_eq!(b.counts(), (3, 3, 2, 1));
    assert_eq!(b.dashboard_folder("stoa-mcp-tools").as_deref(), Some("ops"));
    assert_eq!(
        b.dashboard_folder("stoa-platform-overview").as_deref(),
        Some("platform")
    );
    assert_eq!(
        b.dashboard_folder("stoa-multi-tenant-overview").as_deref(),
        Some("")
    );
    assert_eq!(b.folder_parent("ops").as_deref(), Some("platform"));
    assert_eq!(
        b.datasource_secrets("prometheus").unwrap()["basicAuthPassword"],
        "from-vault"
    );
    let warnings: Vec<&String> = r
        .notes
        .iter()
        .filter(|n| n.starts_with("warning"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("datasource 'loki'") && w.contains("httpHeaderValue1")),
        "{warnings:?}"
    );
    assert!(warnings
        .iter()
        .any(|w| w.contains("stoa-oncall") && w.contains("password")));
    assert!(!warnings.iter().any(|w| w.contains("prometheus")));

    // Export again: equal after removing server-regenerated ids and versions (and the
    // contact point's redacted secret, which was not restorable).
    let (sink2, manifest2) = backup(&b, 1000).await;
    let mut after = files(&sink2, &manifest2).await;
    let mut before = before;
    for m in [&mut before, &mut after] {
        m.remove("index.json");
        m.values_mut().for_each(normalize);
        m.get_mut("alerting/contact-points/stoa-oncall.json")
            .and_then(|c| c["settings"].as_object_mut())
            .map(|s| s.remove("password"));
    }
    // Datasource secret flags differ by what was supplied (loki got none).
    before.get_mut("datasources/loki.json").unwrap()["secureJsonFields"] = serde_json::json!({});
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in &before {
        assert_eq!(v, &after[k], "{k} differs after the round trip");
    }

    // Restoring again under FAIL is refused (before anything is written); SKIP skips all.
    let err = restore(ExistingDataPolicy::Fail, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string().contains("folder 'platform' already exists"),
        "{err}"
    );
    let counts = |r: &stoa_backup::core::RestoreReport| (r.created, r.updated, r.skipped);
    let planned = restore(ExistingDataPolicy::Skip, true).await.unwrap();
    let r = restore(ExistingDataPolicy::Skip, false).await.unwrap();
    assert_eq!(r.created, 0);
    assert_eq!(r.updated, 0);
    assert_eq!(counts(&planned), counts(&r), "{planned:?}");
    let planned = restore(ExistingDataPolicy::Overwrite, true).await.unwrap();
    let r = restore(ExistingDataPolicy::Overwrite, false).await.unwrap();
    assert!(r.updated >= 10, "{r:?}");
    assert_eq!(counts(&planned), counts(&r), "{planned:?}");
    assert_eq!(b.dashboard_folder("stoa-mcp-tools").as_deref(), Some("ops"));
}

#[tokio::test]
async fn dashboard_search_is_paged_and_basic_auth_works() {
    let g = FakeGrafana::start().await;
    g.add_dashboards(25, "tenants");
    let sink = Arc::new(MemorySink::new());
    let src = GrafanaSource::builder(
        GrafanaConnection::new(
            &g.url(),
            GrafanaAuth::Basic {
                user: BASIC.0.into(),
                password: BASIC.1.into(),
            },
        )
        .unwrap()
        .org_id(1),
    )
    .page_size(10)
    .build()
    .unwrap();
    let m = Pipeline::builder()
        .source(src)
        .sink(sink)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap()
        .manifest;
    let dashboards = m
        .artifacts
        .iter()
        .filter(|a| a.name.starts_with("dashboards/tenants/bulk-"))
        .count();
    assert_eq!(dashboards, 25);
    let searches = g
        .requests()
        .iter()
        .filter(|r| r.path == "/api/search" && r.query.contains("type=dash-db"))
        .count();
    // 28 dashboards, 10 per page: 3 pages per discover.
    assert_eq!(searches % 3, 0);
}

/// A backup reads each object once: the index is built from the records of what the run
/// stored (not by discovering and reading everything a second time), and lists exactly
/// those objects with their recorded sizes and digests.
#[tokio::test]
async fn a_backup_reads_each_object_once_and_indexes_what_it_stored() {
    let g = FakeGrafana::start().await;
    g.add_dashboards(60, "tenants");
    let src = GrafanaSource::builder(conn(&g))
        .page_size(10)
        .build()
        .unwrap();
    src.discover().await.unwrap();
    let discovery = g.requests().len();

    let (sink, m) = backup(&g, 10).await;
    let requests = g.requests().split_off(discovery);
    let objects: Vec<_> = m
        .artifacts
        .iter()
        .filter(|a| a.name != "index.json")
        .collect();
    assert!(objects.len() > 70, "{}", objects.len());
    // Preflight (health, a credentials check), one discovery, one read per object and the
    // version for the index: N objects cost about N requests, not 2N.
    assert_eq!(
        requests.len(),
        2 + discovery + objects.len() + 1,
        "{} objects, {discovery} discovery requests: {:?}",
        objects.len(),
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for (prefix, dir) in [
        ("/api/dashboards/uid/", "dashboards/"),
        ("/api/datasources/uid/", "datasources/"),
        ("/api/library-elements/", "library-panels/"),
    ] {
        let reads = requests
            .iter()
            .filter(|r| r.path.starts_with(prefix) && r.path.len() > prefix.len())
            .count();
        let stored = objects.iter().filter(|a| a.name.starts_with(dir)).count();
        assert_eq!(reads, stored, "{prefix}");
    }

    let index = m.artifacts.iter().find(|a| a.name == "index.json").unwrap();
    let body: Value = serde_json::from_slice(
        &stream::collect(sink.get(&index.key).await.unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    let listed: Vec<(String, u64, String)> = body["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_string(),
                o["plain_size"].as_u64().unwrap(),
                o["plain_sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let recorded: Vec<(String, u64, String)> = objects
        .iter()
        .map(|a| (a.name.clone(), a.plain_size, a.plain_sha256.clone()))
        .collect();
    assert_eq!(listed, recorded);
    let facts: GrafanaIndexFacts = index.facts_as().unwrap();
    let counts = facts.counts.unwrap();
    assert_eq!(counts["dashboard"], 63);
    assert_eq!(counts.values().sum::<u64>(), objects.len() as u64);
    assert!(!counts.contains_key("index"), "{counts:?}");
    assert_eq!(body["counts"], serde_json::json!(counts));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_but_not_403() {
    let g = FakeGrafana::start().await;
    g.fault(GfFault::new("/api/search", 429).retry_after(0).times(5));
    g.fault(GfFault::new("/api/dashboards/uid/", 503).times(3));
    let (_, m) = backup(&g, 1000).await;
    assert_eq!(
        m.artifacts
            .iter()
            .filter(|a| a.name.starts_with("dashboards/"))
            .count(),
        3
    );
    assert_eq!(g.requests().iter().filter(|r| r.status == 429).count(), 5);

    let g = FakeGrafana::start().await;
    g.fault(GfFault::new("/api/datasources", 403));
    let src = GrafanaSource::builder(conn(&g)).build().unwrap();
    let err = src.discover().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        g.requests()
            .iter()
            .filter(|r| r.path == "/api/datasources")
            .count(),
        1
    );

    let bad = GrafanaSource::builder(
        GrafanaConnection::new(&g.url(), GrafanaAuth::Token("glsa_wrong".into())).unwrap(),
    )
    .build()
    .unwrap();
    let err = bad.preflight().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert!(!format!("{err:?} {bad:?}").contains("glsa_wrong"));
}

/// The token, the basic-auth password (plain or base64-encoded as in the header) and a
/// datasource secret supplied at restore time never reach the logs, at TRACE level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_or_datasource_secret_in_trace_output() {
    use base64::Engine as _;
    let capture = TraceCapture::install();
    let g = FakeGrafana::start().await;
    g.fault(GfFault::new("/api/search", 429).retry_after(0).times(2));
    let (sink, manifest) = backup(&g, 2).await;

    let target = FakeGrafana::start_empty().await;
    let basic = GrafanaConnection::new(
        &target.url(),
        GrafanaAuth::Basic {
            user: BASIC.0.into(),
            password: BASIC.1.into(),
        },
    )
    .unwrap();
    let supplied = "from-vault-must-not-be-logged";
    let restorer = GrafanaRestorer::new(basic).unwrap().datasource_secret(
        "prometheus",
        "basicAuthPassword",
        supplied,
    );
    restore_component(
        sink.clone(),
        &manifest,
        &Keyring::new(),
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        target.datasource_secrets("prometheus").unwrap()["basicAuthPassword"],
        supplied
    );

    let wrong = "glsa_wrong_token_must_not_be_logged";
    let bad = GrafanaSource::builder(
        GrafanaConnection::new(&g.url(), GrafanaAuth::Token(wrong.into())).unwrap(),
    )
    .build()
    .unwrap();
    assert_eq!(
        bad.preflight().await.unwrap_err().kind(),
        ErrorKind::Unauthenticated
    );

    let header =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", BASIC.0, BASIC.1));
    capture.assert_free_of(&[TOKEN, BASIC.1, header.as_str(), supplied, wrong]);
}

/// One run of `src` that is expected to fail (no artifact retries).
async fn failing_run(src: GrafanaSource) -> RunReport {
    let report = Pipeline::builder()
        .source(Arc::new(src))
        .sink(Arc::new(MemorySink::new()))
        .attempts(1)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(!report.is_complete());
    report
}

/// A rate limit that outlasts the retries fails with the status and the server's
/// `Retry-After` as fields, and the run's error keeps them and its kind.
#[tokio::test]
async fn an_exhausted_rate_limit_keeps_its_status_and_retry_after() {
    let g = FakeGrafana::start().await;
    g.fault(GfFault::new("/api/search", 429).retry_after(3));
    let src = GrafanaSource::builder(conn(&g).retry(RetryPolicy::none()))
        .build()
        .unwrap();
    let err = src.discover().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(err.http_status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));

    let report = failing_run(src).await;
    let f = &report.manifest.failures[0];
    assert_eq!((f.kind, f.http_status), (ErrorKind::Unavailable, Some(429)));
    let err = report.into_result().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.http_status(), Some(429));
    assert_eq!(
        (err.component(), err.operation()),
        (Some("grafana"), Some("discover"))
    );
}

/// Grafana 12 answers 406 for v2-schema dashboards on the legacy API: told by the status,
/// the export fails as unsupported (not as a generic source failure).
#[tokio::test]
async fn v2_dashboards_are_unsupported() {
    let g = FakeGrafana::start().await;
    g.fault(GfFault::new("/api/dashboards/uid/", 406));
    let src = GrafanaSource::builder(conn(&g)).build().unwrap();
    let report = failing_run(src).await;
    let dashboards: Vec<_> = report
        .manifest
        .failures
        .iter()
        .filter(|f| {
            f.name
                .as_deref()
                .is_some_and(|n| n.starts_with("dashboards/"))
        })
        .collect();
    assert!(!dashboards.is_empty(), "{:?}", report.manifest.failures);
    for f in dashboards {
        assert_eq!(f.kind, ErrorKind::Unsupported, "{}", f.error);
        assert_eq!(f.http_status, Some(406));
        assert!(f.error.contains("v2 schema"), "{}", f.error);
        assert!(f
            .artifact
            .as_deref()
            .unwrap()
            .ends_with(f.name.as_deref().unwrap()));
    }
    assert_eq!(
        report.into_result().unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

/// One call to the fake's API with the service-account token: the status and the JSON
/// body.
async fn api(g: &FakeGrafana, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", g.url()))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Another dashboard with the backed-up uid appears in the target after the restorer
/// looked (a GET answering 404 once stands in for the race): Grafana refuses the save
/// without `overwrite` with 412, so the restore fails instead of replacing it silently.
#[tokio::test]
async fn a_dashboard_with_the_same_uid_is_never_replaced_without_overwrite() {
    let a = FakeGrafana::start().await;
    let (sink, manifest) = backup(&a, 1000).await;
    let b = FakeGrafana::start_empty().await;
    for (uid, title, parent) in [
        ("platform", "Platform", None),
        ("ops", "Ops", Some("platform")),
    ] {
        let (status, f) = api(
            &b,
            "POST",
            "/api/folders",
            Some(json!({"uid": uid, "title": title, "parentUid": parent})),
        )
        .await;
        assert_eq!(status, 200, "{f}");
    }
    let theirs = json!({"dashboard": {"id": null, "uid": "stoa-mcp-tools", "title": "Someone else's tools", "panels": []},
                        "folderUid": "ops", "overwrite": false});
    let (status, saved) = api(&b, "POST", "/api/dashboards/db", Some(theirs.clone())).await;
    assert_eq!((status, &saved["version"]), (200, &json!(1)), "{saved}");
    // The contract's answers to saves without overwrite: a new dashboard whose uid is
    // taken, and an update from a stale version.
    let (status, clash) = api(&b, "POST", "/api/dashboards/db", Some(theirs)).await;
    assert_eq!(status, 412);
    assert_eq!(
        clash,
        json!({"status": "name-exists", "message": "A dashboard with the same uid already exists"})
    );
    let stale = json!({"dashboard": {"id": saved["id"], "uid": "stoa-mcp-tools", "title": "Edit", "version": 0},
                       "folderUid": "ops", "overwrite": false});
    let (status, mismatch) = api(&b, "POST", "/api/dashboards/db", Some(stale)).await;
    assert_eq!(status, 412);
    assert_eq!(
        mismatch,
        json!({"status": "version-mismatch", "message": "The dashboard has been changed by someone else"})
    );
    let same_title = json!({"dashboard": {"uid": "other-uid", "title": "Someone else's tools"},
                            "folderUid": "ops", "overwrite": false});
    let (status, name) = api(&b, "POST", "/api/dashboards/db", Some(same_title)).await;
    assert_eq!(status, 412);
    assert_eq!(
        name,
        json!({"status": "name-exists", "message": "A dashboard with the same name in the folder already exists"})
    );

    // Twice: the plan looks once, then the restore.
    b.fault(
        GfFault::new("/api/dashboards/uid/stoa-mcp-tools", 404)
            .method("GET")
            .times(2),
    );
    let err = restore_component(
        sink.clone(),
        &manifest,
        &Keyring::new(),
        GrafanaRestorer::new(conn(&b)).unwrap(),
        ExistingDataPolicy::Skip,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("same uid already exists"), "{err}");
    let (_, kept) = api(&b, "GET", "/api/dashboards/uid/stoa-mcp-tools", None).await;
    assert_eq!(kept["dashboard"]["title"], "Someone else's tools");
    assert_eq!(kept["dashboard"]["version"], 1);
}

/// Alerting writes get provenance `api` (locked in the UI) unless they carry
/// `X-Disable-Provenance: true` (contract §2.5): the restorer sends it, so what it restores
/// stays editable.
#[tokio::test]
async fn restored_alerting_objects_are_not_locked_by_provenance() {
    let a = FakeGrafana::start().await;
    let (sink, manifest) = backup(&a, 1000).await;
    let b = FakeGrafana::start_empty().await;
    restore_component(
        sink.clone(),
        &manifest,
        &Keyring::new(),
        GrafanaRestorer::new(conn(&b)).unwrap(),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    let (_, rule) = api(
        &b,
        "GET",
        "/api/v1/provisioning/alert-rules/stoa-high-error-rate",
        None,
    )
    .await;
    assert_eq!(rule["provenance"], "", "{rule}");
    let (_, points) = api(&b, "GET", "/api/v1/provisioning/contact-points", None).await;
    let oncall = points
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["uid"] == "stoa-oncall")
        .unwrap()
        .clone();
    assert_eq!(oncall["provenance"], "", "{oncall}");
    let (_, policies) = api(&b, "GET", "/api/v1/provisioning/policies", None).await;
    assert_eq!(policies["provenance"], "", "{policies}");

    // The same write without the header: locked.
    let mut other = rule.clone();
    other["uid"] = json!("written-without-header");
    other["title"] = json!("Another rule");
    let (status, written) = api(&b, "POST", "/api/v1/provisioning/alert-rules", Some(other)).await;
    assert_eq!(status, 201, "{written}");
    assert_eq!(written["provenance"], "api");
    let (_, read) = api(
        &b,
        "GET",
        "/api/v1/provisioning/alert-rules/written-without-header",
        None,
    )
    .await;
    assert_eq!(read["provenance"], "api");
}
