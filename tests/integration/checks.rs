//! The checklist's checks against the fake servers (health endpoint, Keycloak, Prometheus,
//! Kubernetes API) over real HTTP and against the real local PostgreSQL: each passes on a
//! healthy system and fails, naming what failed, once that system is broken in turn; a
//! checklist of all five gives its verdict; secrets never show in `Debug`, details or
//! errors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoa_backup::core::recovery::{Check, CheckContext, CheckOutcome, CheckStatus, Checklist};
use stoa_backup::core::{ErrorKind, Manifest, MemorySink, Pipeline, Verdict};
use stoa_backup::prelude::{HttpHealth, OidcLogin, PodsReady, PrometheusUp, RowCounts};
use stoa_backup::providers::postgres::{PgConnection, PostgresSource};
use stoa_backup_test_support::health_fake::FakeHealth;
use stoa_backup_test_support::keycloak_fake::FakeKeycloak;
use stoa_backup_test_support::kube_fake::FakeKube;
use stoa_backup_test_support::prometheus_fake::FakePrometheus;
use stoa_backup_test_support::TestDatabase;
use tokio_postgres::NoTls;

const TOKEN: &str = "health-t0ken-9f3a";
const NS: &str = "stoa-system";

async fn run(check: &impl Check, ctx: &CheckContext) -> CheckOutcome {
    check.run(ctx).await.expect("the check runs")
}

fn none() -> CheckContext {
    CheckContext::default()
}

fn assert_status(o: &CheckOutcome, status: CheckStatus) {
    assert_eq!(o.status, status, "{}", o.detail);
}

/// A port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------
// HTTP health

#[tokio::test]
async fn http_health_passes_on_2xx_and_fails_naming_the_status_and_the_body() {
    let gw = FakeHealth::start().await;
    let check = HttpHealth::new("gateway /health", &gw.health_url()).unwrap();
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Passed);
    assert_eq!(o.detail, format!("HTTP 200 from {}", gw.health_url()));

    gw.set_unhealthy();
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(o.detail.starts_with("HTTP 503 from "), "{}", o.detail);
    assert!(
        o.detail.contains(r#""kafka":"disconnected""#),
        "{}",
        o.detail
    );

    // Only the first 200 bytes of a long body are quoted.
    gw.set(500, &format!("{}TAIL", "x".repeat(300)));
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(o.detail.contains(&"x".repeat(200)), "{}", o.detail);
    assert!(!o.detail.contains("TAIL") && !o.detail.contains(&"x".repeat(201)));
    assert_eq!(gw.requests().len(), 3);
}

#[tokio::test]
async fn http_health_sends_its_bearer_token_and_never_shows_it() {
    let cp = FakeHealth::start().await;
    cp.require_token(Some(TOKEN));
    let without = HttpHealth::new("control plane /health", &cp.health_url()).unwrap();
    let o = run(&without, &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(o.detail.starts_with("HTTP 401"), "{}", o.detail);

    let check = without.clone().bearer_token(TOKEN);
    assert_status(&run(&check, &none()).await, CheckStatus::Passed);
    let log = cp.requests();
    assert!(!log[0].authorization && log[1].token_ok, "{log:?}");

    // A server echoing what it was sent: the token is masked in the detail.
    cp.set(503, &format!("{{\"echo\":\"Bearer {TOKEN}\"}}"));
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(o.detail.contains("Bearer ***"), "{}", o.detail);
    for shown in [format!("{check:?}"), o.detail] {
        assert!(!shown.contains(TOKEN), "{shown}");
    }
}

#[tokio::test]
async fn an_unreachable_health_endpoint_is_an_error_naming_the_check() {
    let url = format!("http://127.0.0.1:{}/health", closed_port().await);
    let check = HttpHealth::new("gateway /health", &url)
        .unwrap()
        .bearer_token(TOKEN)
        .timeout(Duration::from_secs(2));
    let e = check.run(&none()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(e.component(), Some("gateway /health"));
    assert_eq!(e.operation(), Some("check 'gateway /health'"));
    assert!(e.hint().is_some(), "{e}");
    assert!(e.to_string().contains(&url), "{e}");
    assert!(!format!("{e} {e:?}").contains(TOKEN));

    // In a checklist the error is the failure's detail.
    let report = Checklist::new().check(check).run(&none()).await;
    assert_eq!(report.verdict, Verdict::Failed);
    assert!(
        report.results[0].detail.contains("unavailable"),
        "{}",
        report.table()
    );
}

// ---------------------------------------------------------------------------------------
// OIDC login

const API_SECRET: &str = "api-dev-secret";

#[tokio::test]
async fn oidc_login_passes_for_a_confidential_client_and_fails_naming_the_oauth_error() {
    let kc = FakeKeycloak::start().await;
    let login = |realm: &str, client: &str, secret: &str| {
        OidcLogin::new(&kc.url(), realm, client, secret).unwrap()
    };
    let check = login("stoa", "control-plane-api", API_SECRET);
    assert_eq!(check.name(), "OIDC login stoa/control-plane-api");
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Passed);
    assert!(
        o.detail
            .starts_with("realm 'stoa', client 'control-plane-api' got an access token"),
        "{}",
        o.detail
    );
    let issued = kc.issued_tokens();
    assert!(!issued.is_empty() && !issued.iter().any(|t| o.detail.contains(t)));

    let wrong = login("stoa", "control-plane-api", "not-the-s3cret");
    let o = run(&wrong, &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(
        o.detail
            .contains("realm 'stoa', client 'control-plane-api'")
            && o.detail.contains("HTTP 401")
            && o.detail.contains("invalid_client"),
        "{}",
        o.detail
    );
    for shown in [format!("{wrong:?}"), o.detail] {
        assert!(!shown.contains("not-the-s3cret"), "{shown}");
    }

    let o = run(&login("stoa", "control-plane-ui", "x"), &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(o.detail.contains("unauthorized_client"), "{}", o.detail);

    let o = run(&login("gone", "control-plane-api", API_SECRET), &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(
        o.detail
            .starts_with("realm 'gone' does not exist (HTTP 404"),
        "{}",
        o.detail
    );

    // Keycloak down: an error naming the realm.
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    let e = OidcLogin::new(&url, "stoa", "control-plane-api", API_SECRET)
        .unwrap()
        .run(&none())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.component()),
        (ErrorKind::Unavailable, Some("keycloak"))
    );
    assert_eq!(e.context_value("realm"), Some("stoa"));
    assert!(!format!("{e} {e:?}").contains(API_SECRET), "{e}");
}

/// The realm backed up from one Keycloak and restored into an empty one logs its
/// confidential clients in (with the secret the restored realm holds: exports mask them).
#[cfg(feature = "keycloak")]
#[tokio::test]
async fn a_restored_realm_issues_tokens_to_its_clients() {
    use stoa_backup::core::ExistingDataPolicy;
    use stoa_backup::providers::keycloak::{
        KeycloakAuth, KeycloakConnection, KeycloakRestorer, KeycloakSource,
    };
    use stoa_backup_test_support::artifacts::age_keys;

    let conn = |kc: &FakeKeycloak| {
        let (client_id, client_secret) = kc.client_credentials();
        KeycloakConnection::new(
            &kc.url(),
            KeycloakAuth::ClientCredentials {
                client_id,
                client_secret,
            },
        )
        .unwrap()
    };
    let (source, target) = (
        FakeKeycloak::start().await,
        FakeKeycloak::start_empty().await,
    );
    let (encryption, keyring) = age_keys();
    let sink = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(
            KeycloakSource::builder(conn(&source))
                .realm("stoa")
                .build()
                .unwrap(),
        )
        .sink(sink.clone())
        .encryption(encryption)
        .keyring(keyring.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let check = OidcLogin::new(&target.url(), "stoa", "control-plane-api", API_SECRET).unwrap();
    let o = run(&check, &none()).await;
    assert!(
        o.detail.starts_with("realm 'stoa' does not exist"),
        "{}",
        o.detail
    );

    crate::restore_support::restore_component(
        sink,
        &report.manifest,
        &keyring,
        KeycloakRestorer::new(conn(&target)).unwrap(),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    let restored = target
        .client_secret("stoa", "control-plane-api")
        .expect("the restored client has a secret");
    let check = OidcLogin::new(&target.url(), "stoa", "control-plane-api", &restored).unwrap();
    assert_status(&run(&check, &none()).await, CheckStatus::Passed);
    // The export masked the secret, so the restored client has a new one: the old secret
    // no longer logs in (set the client's secret again after a restore).
    assert_ne!(restored, API_SECRET);
    let old = OidcLogin::new(&target.url(), "stoa", "control-plane-api", API_SECRET).unwrap();
    let o = run(&old, &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(o.detail.contains("invalid_client"), "{}", o.detail);
}

// ---------------------------------------------------------------------------------------
// Prometheus

#[tokio::test]
async fn prometheus_up_passes_when_every_target_is_up_and_names_those_down() {
    let prom = FakePrometheus::start().await;
    prom.set_up("stoa-gateway", "10.0.0.1:8080", true);
    prom.set_up("stoa-gateway", "10.0.0.2:8080", true);
    prom.set_up("other", "10.0.0.9:9100", false);
    let check = PrometheusUp::new(&prom.url(), "stoa-gateway").unwrap();
    assert_eq!(check.name(), r#"prometheus up{job="stoa-gateway"}"#);
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Passed);
    assert_eq!(o.detail, r#"2/2 targets of job "stoa-gateway" up"#);
    assert_eq!(
        prom.requests()[0].query.as_deref(),
        Some(r#"up{job="stoa-gateway"}"#)
    );

    prom.set_up("stoa-gateway", "10.0.0.2:8080", false);
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert_eq!(
        o.detail,
        r#"1/2 targets of job "stoa-gateway" down: 10.0.0.2:8080"#
    );

    prom.remove_job("stoa-gateway");
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(
        o.detail.starts_with(r#"no series for job "stoa-gateway""#),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn prometheus_error_answers_and_an_unreachable_server_are_errors() {
    let prom = FakePrometheus::start().await;
    prom.set_up("stoa-gateway", "10.0.0.1:8080", true);
    let check = PrometheusUp::new(&prom.url(), "stoa-gateway").unwrap();

    prom.fail_queries(503, "timeout", "query timed out in expression evaluation");
    let e = check.run(&none()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(
        (e.component(), e.http_status()),
        (Some("prometheus"), Some(503))
    );
    assert!(e.to_string().contains("timeout: query timed out"), "{e}");
    assert!(e.to_string().contains(r#"up{job="stoa-gateway"}"#), "{e}");

    prom.fail_queries(422, "execution", "expanding series: too many samples");
    let e = check.run(&none()).await.unwrap_err();
    assert_eq!((e.kind(), e.http_status()), (ErrorKind::Source, Some(422)));
    assert!(e.to_string().contains("execution: expanding series"), "{e}");
    prom.clear_failure();
    assert_status(&run(&check, &none()).await, CheckStatus::Passed);

    // The fake answers a query it cannot parse with the API's error envelope.
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prom.url()))
        .query(&[("query", "up{job=")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid parameter \"query\": 1:"));

    let url = format!("http://127.0.0.1:{}", closed_port().await);
    let e = PrometheusUp::new(&url, "stoa-gateway")
        .unwrap()
        .run(&none())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.component()),
        (ErrorKind::Unavailable, Some("prometheus"))
    );
}

// ---------------------------------------------------------------------------------------
// Pods

fn pod(name: &str, app: &str, phase: &str, containers: &[(&str, bool, Option<&str>)]) -> Value {
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(c, ready, waiting)| {
            let state = match waiting {
                Some(reason) => json!({"waiting": {"reason": reason}}),
                None => json!({"running": {"startedAt": "2025-06-01T09:00:00Z"}}),
            };
            json!({"name": c, "ready": ready, "restartCount": if *ready { 0 } else { 5 },
                   "image": format!("{c}:1"), "imageID": "", "state": state})
        })
        .collect();
    let specs: Vec<Value> = containers
        .iter()
        .map(|(c, _, _)| json!({"name": c, "image": format!("{c}:1")}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
        "spec": {"containers": specs},
        "status": {"phase": phase, "containerStatuses": statuses},
    })
}

fn healthy_pods(kube: &FakeKube) {
    kube.put(pod(
        "control-plane-api-0",
        "control-plane",
        "Running",
        &[("api", true, None)],
    ));
    kube.put(pod(
        "stoa-gateway-0",
        "gateway",
        "Running",
        &[("gateway", true, None), ("envoy", true, None)],
    ));
    kube.put(pod(
        "stoa-gateway-1",
        "gateway",
        "Running",
        &[("gateway", true, None)],
    ));
    // Another namespace's pods are not looked at.
    let mut other = pod(
        "broken",
        "x",
        "Pending",
        &[("x", false, Some("ErrImagePull"))],
    );
    other["metadata"]["namespace"] = json!("default");
    kube.put(other);
}

#[tokio::test]
async fn pods_ready_passes_when_every_pod_runs_ready_and_names_those_that_do_not() {
    let kube = FakeKube::start().await;
    healthy_pods(&kube);
    let check = PodsReady::new(kube.client());
    assert_eq!(check.name(), "pods in stoa-system");
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Passed);
    assert_eq!(o.detail, "3/3 pods Running and Ready in stoa-system");

    kube.put(pod(
        "stoa-gateway-1",
        "gateway",
        "Running",
        &[("gateway", false, Some("CrashLoopBackOff"))],
    ));
    kube.put(pod(
        "keycloak-0",
        "keycloak",
        "Pending",
        &[("keycloak", false, Some("ContainerCreating"))],
    ));
    let o = run(&check, &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert_eq!(
        o.detail,
        "2/4 pods not Running and Ready in stoa-system: \
         keycloak-0: phase Pending, container keycloak not ready (waiting: ContainerCreating, 5 restarts); \
         stoa-gateway-1: container gateway not ready (waiting: CrashLoopBackOff, 5 restarts)"
    );

    // A selector narrows the pods checked.
    let cp = PodsReady::new(kube.client()).selector("app=control-plane");
    assert_eq!(cp.name(), "pods in stoa-system (app=control-plane)");
    let o = run(&cp, &none()).await;
    assert_eq!(
        o.detail,
        "1/1 pods Running and Ready in stoa-system (app=control-plane)"
    );
    assert!(kube
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/namespaces/stoa-system/pods"
            && r.query.contains("labelSelector=app")));

    let o = run(&PodsReady::new(kube.client()).namespace("empty"), &none()).await;
    assert_status(&o, CheckStatus::Failed);
    assert_eq!(o.detail, "no pods in empty");
}

#[tokio::test]
async fn an_api_server_that_refuses_or_is_gone_is_an_error() {
    let kube = FakeKube::start().await;
    healthy_pods(&kube);
    kube.inject(stoa_backup_test_support::kube_fake::FaultRule::forbidden(
        "system:serviceaccount:stoa-system:checks",
    ));
    let e = PodsReady::new(kube.client())
        .run(&none())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.component()),
        (ErrorKind::PermissionDenied, Some("kubernetes"))
    );
    assert_eq!(e.operation(), Some("check 'pods in stoa-system'"));
    assert!(e.to_string().contains("list pods in stoa-system"), "{e}");

    let client = kube.client();
    drop(kube);
    let e = PodsReady::new(client).run(&none()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

// ---------------------------------------------------------------------------------------
// Row counts (real PostgreSQL)

const CATALOG: &str = "
CREATE TABLE apis (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE subscriptions (id bigint PRIMARY KEY, api_id bigint NOT NULL REFERENCES apis (id));
INSERT INTO apis SELECT g, 'api ' || g FROM generate_series(1, 12) g;
INSERT INTO subscriptions SELECT g, 1 + g % 12 FROM generate_series(1, 40) g;
";

const TABLES: [&str; 2] = ["public.apis", "public.subscriptions"];

async fn sql(db: &TestDatabase, text: &str) {
    let (c, conn) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(text).await.unwrap();
}

fn pg(db: &TestDatabase) -> PgConnection {
    PgConnection::from_url(db.url()).unwrap()
}

/// A database holding the API catalog, backed up with the real PostgresSource pipeline:
/// the run's manifest holds the counts pg_dump's snapshot had.
async fn backed_up_catalog(prefix: &str) -> (TestDatabase, Manifest) {
    let db = TestDatabase::create(prefix).await;
    sql(&db, CATALOG).await;
    let report = Pipeline::builder()
        .source(PostgresSource::builder(pg(&db)).build().unwrap())
        .sink(Arc::new(MemorySink::new()))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.manifest.failures);
    (db, report.manifest)
}

#[tokio::test]
async fn row_counts_match_the_backup_and_fail_naming_each_table_that_differs() {
    let (db, manifest) = backed_up_catalog("checks_rows").await;
    let ctx = CheckContext::new([manifest]);
    let check = RowCounts::new(pg(&db), TABLES).unwrap();
    assert_eq!(check.name(), format!("row counts of {}", db.name()));
    let o = run(&check, &ctx).await;
    assert_status(&o, CheckStatus::Passed);
    assert_eq!(
        o.detail,
        format!(
            "public.apis: 12, public.subscriptions: 40 in '{}', as backed up",
            db.name()
        )
    );

    sql(
        &db,
        "DELETE FROM subscriptions WHERE id > 37; DROP TABLE IF EXISTS nothing;",
    )
    .await;
    let o = run(&check, &ctx).await;
    assert_status(&o, CheckStatus::Failed);
    assert_eq!(
        o.detail,
        format!(
            "row counts in '{}' differ from the backup: public.subscriptions: 37 rows, backup had 40",
            db.name()
        )
    );
    sql(
        &db,
        "DROP TABLE subscriptions; DELETE FROM apis WHERE id = 1;",
    )
    .await;
    let o = run(&check, &ctx).await;
    assert_status(&o, CheckStatus::Failed);
    assert!(
        o.detail.ends_with(
            "public.apis: 11 rows, backup had 12; public.subscriptions: missing (backup had 40 rows)"
        ),
        "{}",
        o.detail
    );
    db.drop_db().await;
}

#[tokio::test]
async fn row_counts_are_skipped_without_a_recorded_count_and_compare_a_drill_copy() {
    let (db, manifest) = backed_up_catalog("checks_rows_skip").await;
    let ctx = CheckContext::new([manifest]);

    // No PostgreSQL run in the context: nothing to compare with.
    let o = run(&RowCounts::new(pg(&db), TABLES).unwrap(), &none()).await;
    assert_status(&o, CheckStatus::Skipped);
    assert!(o.detail.contains("no PostgreSQL dump"), "{}", o.detail);

    // A table created after the backup has no recorded count.
    sql(&db, "CREATE TABLE public.audit (id int);").await;
    let o = run(
        &RowCounts::new(pg(&db), ["public.apis", "public.audit"]).unwrap(),
        &ctx,
    )
    .await;
    assert_status(&o, CheckStatus::Skipped);
    assert_eq!(
        o.detail,
        format!(
            "the dump of '{}' recorded no count for public.audit; the others match (public.apis: 12)",
            db.name()
        )
    );

    // A drill's copy under another name is compared with the dump of the original.
    let copy = TestDatabase::create("checks_rows_copy").await;
    sql(&copy, CATALOG).await;
    let drill = RowCounts::new(pg(&db), TABLES)
        .unwrap()
        .database(copy.name())
        .backed_up_as(db.name());
    let o = run(&drill, &ctx).await;
    assert_status(&o, CheckStatus::Passed);
    assert!(
        o.detail.ends_with(&format!(
            "in '{}' (backed up as '{}'), as backed up",
            copy.name(),
            db.name()
        )),
        "{}",
        o.detail
    );
    // Without saying which dump, the copy has none of its own name.
    let o = run(&RowCounts::new(pg(&copy), TABLES).unwrap(), &ctx).await;
    assert_status(&o, CheckStatus::Skipped);
    assert!(
        o.detail.contains(&format!("only of {}", db.name())),
        "{}",
        o.detail
    );
    copy.drop_db().await;
    db.drop_db().await;
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_without_the_password() {
    let (db, manifest) = backed_up_catalog("checks_rows_down").await;
    let ctx = CheckContext::new([manifest]);
    let port = closed_port().await;
    let conn = PgConnection::new("127.0.0.1", port, "postgres")
        .password("pg-s3cret-pw")
        .dbname(db.name());
    let check = RowCounts::new(conn, TABLES).unwrap();
    let e = check.run(&ctx).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.component()),
        (ErrorKind::Unavailable, Some("postgres"))
    );
    assert_eq!(
        e.operation(),
        Some(format!("check 'row counts of {}'", db.name()).as_str())
    );
    for shown in [format!("{e} {e:?}"), format!("{check:?}")] {
        assert!(!shown.contains("pg-s3cret-pw"), "{shown}");
    }
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// The whole checklist

#[tokio::test]
async fn a_checklist_of_all_five_passes_then_fails_naming_the_check_that_failed() {
    let (db, manifest) = backed_up_catalog("checks_list").await;
    let (gw, kc, prom, kube) = (
        FakeHealth::start().await,
        FakeKeycloak::start().await,
        FakePrometheus::start().await,
        FakeKube::start().await,
    );
    gw.require_token(Some(TOKEN));
    prom.set_up("stoa-gateway", "10.0.0.1:8080", true);
    healthy_pods(&kube);
    let checklist = Checklist::new()
        .check(PodsReady::new(kube.client()))
        .check(
            HttpHealth::new("gateway /health", &gw.health_url())
                .unwrap()
                .bearer_token(TOKEN),
        )
        .check(OidcLogin::new(&kc.url(), "stoa", "control-plane-api", API_SECRET).unwrap())
        .check(
            RowCounts::new(pg(&db), TABLES)
                .unwrap()
                .named("API catalog rows"),
        )
        .check(PrometheusUp::new(&prom.url(), "stoa-gateway").unwrap())
        .timeout(Duration::from_secs(30));
    checklist.validate().unwrap();
    let ctx = CheckContext::new([manifest]);

    let report = checklist.run(&ctx).await;
    assert_eq!(report.verdict, Verdict::Passed, "{}", report.table());
    assert_eq!(report.results.len(), 5);
    assert!(report
        .results
        .iter()
        .all(|r| r.status == CheckStatus::Passed));

    gw.set_unhealthy();
    let report = checklist.run(&ctx).await;
    assert_eq!(report.verdict, Verdict::Failed, "{}", report.table());
    assert_eq!(report.failed(), ["gateway /health"]);
    let table = report.table();
    assert!(table.contains("HTTP 503 from"), "{table}");
    let e = checklist.run_strict(&ctx).await.unwrap_err();
    assert!(e.to_string().contains("gateway /health"), "{e}");

    gw.set_healthy();
    sql(&db, "DELETE FROM subscriptions WHERE id = 1;").await;
    prom.set_up("stoa-gateway", "10.0.0.1:8080", false);
    let report = checklist.run(&ctx).await;
    assert_eq!(
        report.failed(),
        ["API catalog rows", r#"prometheus up{job="stoa-gateway"}"#],
        "{}",
        report.table()
    );

    // Secrets never show: not in the checks' Debug, the details, the table or the JSON.
    let shown = format!(
        "{checklist:?} {report:?} {} {}",
        report.table(),
        serde_json::to_string(&report).unwrap()
    );
    for secret in [TOKEN, API_SECRET] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
    db.drop_db().await;
}
