//! The whole platform: PostgreSQL, Vault KV, Keycloak, CRDs + custom resources, Helm values
//! and Grafana, each backed up in its own run into one sink (as scheduled in production),
//! then restored into a new, empty platform (the full-cluster-loss case) by one `Recovery`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_backup::core::observer::{Event, Observer};
use stoa_backup::core::recovery::{
    CheckOutcome, Checklist, CustomStep, FnCheck, Recovery, Step, StepContext, StepStatus, Verdict,
};
use stoa_backup::core::{Check, RestoreReport};
use stoa_backup::core::{ErrorKind, Keyring, Pipeline, RetryPolicy, Sink, Source};
use stoa_backup::prelude::*;
use stoa_backup::providers::checks::{HttpHealth, OidcLogin, PodsReady, PrometheusUp, RowCounts};
use stoa_backup::providers::grafana::{
    GrafanaAuth, GrafanaConnection, GrafanaRestorer, GrafanaSource,
};
use stoa_backup::providers::keycloak::{
    KeycloakAuth, KeycloakConnection, KeycloakExportVerifier, KeycloakRestorer, KeycloakSource,
};
use stoa_backup::providers::kubernetes::{
    CustomResourcesRestorer, CustomResourcesSource, HelmValuesRestorer, HelmValuesSource,
};
use stoa_backup::providers::postgres::{PostgresRestorer, PostgresSource, RestoreTarget};
use stoa_backup::providers::vault::{VaultAuth, VaultConnection, VaultKvRestorer, VaultKvSource};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::grafana_fake::{FakeGrafana, TOKEN};
use stoa_backup_test_support::health_fake::FakeHealth;
use stoa_backup_test_support::keycloak_fake::{fixture_realm, FakeKeycloak};
use stoa_backup_test_support::kube_fake::{FakeKube, FaultRule, RequestRecord};
use stoa_backup_test_support::prometheus_fake::FakePrometheus;
use stoa_backup_test_support::vault_fake::FakeVault;
use stoa_backup_test_support::TestDatabase;

use crate::kubernetes::helm::{fixture_values, three_revisions};
use crate::postgres::backup_restore::{
    database_exists, fingerprint, fresh_target, server, stoa_database,
};

const STEPS: [&str; 8] = [
    "postgres",
    "vault-kv",
    "keycloak",
    "crds",
    "helm",
    "install chart",
    "grafana",
    "checks",
];
const RESTORE_STEPS: [&str; 6] = [
    "postgres", "vault-kv", "keycloak", "crds", "helm", "grafana",
];

/// Stands in for the operator's `helm upgrade --install` with the restored values: the
/// chart's pods appear in `stoa-system`, and Prometheus scrapes the gateway again.
#[derive(Debug)]
struct InstallChart {
    kube: Arc<FakeKube>,
    prometheus_up: Arc<FakePrometheus>,
}

fn ready_pod(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "stoa-system", "labels": {"app": app}},
        "spec": {"containers": [{"name": app, "image": format!("{app}:1")}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": app, "ready": true,
            "restartCount": 0, "image": format!("{app}:1"), "imageID": "",
            "state": {"running": {"startedAt": "2026-12-01T09:00:00Z"}}}]},
    })
}

#[async_trait]
impl CustomStep for InstallChart {
    async fn plan(&self, _: &StepContext<'_>) -> stoa_backup::core::Result<RestoreReport> {
        Ok(RestoreReport {
            created: 2,
            notes: vec!["runs the chart install the helm step returns".into()],
            ..RestoreReport::default()
        })
    }
    async fn apply(&self, ctx: &StepContext<'_>) -> stoa_backup::core::Result<RestoreReport> {
        // A resumed recovery may have done the helm step in an earlier call.
        if let Some(helm) = ctx.earlier().iter().find(|s| s.name == "helm") {
            assert!(helm.report.as_ref().unwrap().facts.contains_key("command"));
        }
        self.kube
            .put(ready_pod("control-plane-api-0", "control-plane"));
        self.kube.put(ready_pod("stoa-gateway-0", "gateway"));
        self.prometheus_up
            .set_up("stoa-gateway", "10.0.0.1:8080", true);
        Ok(RestoreReport {
            created: 2,
            ..RestoreReport::default()
        })
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

fn vault(v: &FakeVault) -> VaultConnection {
    VaultConnection::new(&v.url(), VaultAuth::token(v.root_token())).unwrap()
}

fn keycloak(kc: &FakeKeycloak) -> KeycloakConnection {
    let (client_id, client_secret) = kc.client_credentials();
    KeycloakConnection::new(
        &kc.url(),
        KeycloakAuth::ClientCredentials {
            client_id,
            client_secret,
        },
    )
    .unwrap()
    .retry(fast())
}

fn grafana(g: &FakeGrafana) -> GrafanaConnection {
    GrafanaConnection::new(&g.url(), GrafanaAuth::Token(TOKEN.into()))
        .unwrap()
        .retry(fast())
}

/// The production platform, backed up.
struct Production {
    db: TestDatabase,
    vault: FakeVault,
    keycloak: FakeKeycloak,
    kube: FakeKube,
    grafana: FakeGrafana,
}

/// The platform the recovery restores into: provisioned, empty.
struct Fresh {
    database: String,
    _database_guard: TestDatabase,
    vault: Arc<FakeVault>,
    keycloak: Arc<FakeKeycloak>,
    kube: Arc<FakeKube>,
    grafana: Arc<FakeGrafana>,
    values_dir: tempfile::TempDir,
    gateway: FakeHealth,
    control_plane: FakeHealth,
    prometheus: Arc<FakePrometheus>,
}

async fn production() -> Production {
    let db = stoa_database("plat_src").await;
    let vault = FakeVault::start().await;
    for i in 0..12 {
        vault.put(
            "secret",
            &format!("stoa/tenant-{}/api-{i}", i % 3),
            json!({"client_secret": format!("s3cret-{i}"), "port": 8000 + i}),
        );
    }
    let keycloak = FakeKeycloak::start_empty().await;
    keycloak.load_realm(fixture_realm());
    let kube = FakeKube::start().await;
    kube.load_fixture_crds();
    kube.load_fixture_resources();
    three_revisions(&kube);
    let grafana = FakeGrafana::start().await;
    Production {
        db,
        vault,
        keycloak,
        kube,
        grafana,
    }
}

async fn fresh() -> Fresh {
    let (database, guard) = fresh_target("plat_dst").await;
    Fresh {
        database,
        _database_guard: guard,
        vault: Arc::new(FakeVault::start().await),
        keycloak: Arc::new(FakeKeycloak::start_empty().await),
        kube: Arc::new(FakeKube::start().await),
        grafana: Arc::new(FakeGrafana::start_empty().await),
        values_dir: tempfile::tempdir().unwrap(),
        gateway: FakeHealth::start().await,
        control_plane: FakeHealth::start().await,
        prometheus: Arc::new(FakePrometheus::start().await),
    }
}

/// Each component in its own run, encrypted where it holds secrets.
async fn back_up(p: &Production, sink: Arc<dyn Sink>, enc: &AgeEncryption, keyring: &Keyring) {
    let sources: Vec<(Box<dyn Source>, bool)> = vec![
        (
            Box::new(
                PostgresSource::builder(PgConnection::from_url(p.db.url()).unwrap())
                    .build()
                    .unwrap(),
            ),
            false,
        ),
        (
            Box::new(VaultKvSource::builder(vault(&p.vault)).build().unwrap()),
            true,
        ),
        (
            Box::new(
                KeycloakSource::builder(keycloak(&p.keycloak))
                    .realm("stoa")
                    .build()
                    .unwrap(),
            ),
            true,
        ),
        (
            Box::new(
                CustomResourcesSource::builder(p.kube.client())
                    .build()
                    .unwrap(),
            ),
            false,
        ),
        (
            Box::new(
                HelmValuesSource::builder(p.kube.client())
                    .release("stoa-system", "stoa")
                    .build()
                    .unwrap(),
            ),
            true,
        ),
        (
            Box::new(GrafanaSource::builder(grafana(&p.grafana)).build().unwrap()),
            false,
        ),
    ];
    for (source, secret) in sources {
        let component = source.component().to_string();
        let mut b = Pipeline::builder()
            .source(source)
            .sink(sink.clone())
            .compression(ZstdCodec::new(1).unwrap())
            .verifier(ChecksumVerifier::new());
        if component == "postgres" {
            b = b.verifier(PgArchiveVerifier::new());
        }
        if component == "keycloak" {
            b = b.verifier(KeycloakExportVerifier::new());
        }
        if secret {
            b = b.encryption(enc.clone()).keyring(keyring.clone());
        }
        let report = b.build().unwrap().run().await.unwrap();
        assert!(
            report.is_complete(),
            "{component}: {:?}",
            report.manifest.failures
        );
    }
}

/// Production backed up (each component in its own run, into one local sink), and the new
/// platform to recover it into.
struct Scene {
    prod: Production,
    _tmp: tempfile::TempDir,
    sink: Arc<dyn Sink>,
    keyring: Keyring,
    fresh: Fresh,
    windows: Arc<Windows>,
}

async fn scene() -> Scene {
    let prod = production().await;
    let tmp = tempfile::tempdir().unwrap();
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(tmp.path()).unwrap());
    let (enc, keyring) = age_keys();
    back_up(&prod, sink.clone(), &enc, &keyring).await;
    Scene {
        prod,
        _tmp: tmp,
        sink,
        keyring,
        fresh: fresh().await,
        windows: Arc::new(Windows::default()),
    }
}

/// How many requests each fake of the fresh platform has received, at each step's start and
/// end: a write inside a step's window was made by that step.
#[derive(Debug, Default)]
struct Windows {
    marks: Mutex<Vec<(String, bool, [usize; 4])>>,
}

#[derive(Debug)]
struct Marker {
    fresh: [FakeHandle; 4],
    windows: Arc<Windows>,
}

#[derive(Debug, Clone)]
enum FakeHandle {
    Vault(Arc<FakeVault>),
    Keycloak(Arc<FakeKeycloak>),
    Kube(Arc<FakeKube>),
    Grafana(Arc<FakeGrafana>),
}

impl FakeHandle {
    /// Every request received, as (method, path, is a write).
    fn requests(&self) -> Vec<(String, String, bool)> {
        match self {
            FakeHandle::Vault(v) => v
                .requests()
                .into_iter()
                .map(|r| {
                    let w = r.method != "GET" && r.method != "HEAD" && r.method != "LIST";
                    (r.method, r.path, w)
                })
                .collect(),
            FakeHandle::Keycloak(k) => k
                .requests()
                .into_iter()
                .map(|r| {
                    let w = r.method != "GET" && !r.path.ends_with("/openid-connect/token");
                    (r.method, r.path, w)
                })
                .collect(),
            FakeHandle::Kube(k) => k
                .requests()
                .into_iter()
                .map(|r: RequestRecord| {
                    let w = r.method != "GET" && !r.has_param("dryRun", "All");
                    (r.method, r.path, w)
                })
                .collect(),
            FakeHandle::Grafana(g) => g
                .requests()
                .into_iter()
                .map(|r| {
                    let w = r.method != "GET";
                    (r.method, r.path, w)
                })
                .collect(),
        }
    }
}

impl Marker {
    fn counts(&self) -> [usize; 4] {
        let mut out = [0; 4];
        for (i, f) in self.fresh.iter().enumerate() {
            out[i] = f.requests().len();
        }
        out
    }
}

impl Observer for Marker {
    fn on_event(&self, event: &Event<'_>) {
        let (step, start) = match event {
            Event::RecoveryStepStarted { step, .. } => (*step, true),
            Event::RecoveryStepDone { step, .. } => (*step, false),
            _ => return,
        };
        let counts = self.counts();
        self.windows
            .marks
            .lock()
            .unwrap()
            .push((step.to_string(), start, counts));
    }
}

impl Fresh {
    fn handles(&self) -> [FakeHandle; 4] {
        [
            FakeHandle::Vault(self.vault.clone()),
            FakeHandle::Keycloak(self.keycloak.clone()),
            FakeHandle::Kube(self.kube.clone()),
            FakeHandle::Grafana(self.grafana.clone()),
        ]
    }

    /// Writes each fake received, in order.
    fn writes(&self) -> Vec<Vec<(String, String)>> {
        self.handles()
            .iter()
            .map(|h| {
                h.requests()
                    .into_iter()
                    .filter(|r| r.2)
                    .map(|r| (r.0, r.1))
                    .collect()
            })
            .collect()
    }

    fn recovery(
        &self,
        sink: Arc<dyn Sink>,
        keyring: &Keyring,
        windows: &Arc<Windows>,
        prod_db: &str,
    ) -> Recovery {
        Recovery::stoa()
            .sink(sink)
            .keyring(keyring.clone())
            .observer(Marker {
                fresh: self.handles(),
                windows: windows.clone(),
            })
            // Given out of order on purpose: STOA's order comes from the components.
            .restore(GrafanaRestorer::new(grafana(&self.grafana)).unwrap())
            .restore(
                HelmValuesRestorer::new(self.values_dir.path())
                    .chart("stoa/stoa-platform")
                    .print_command(false),
            )
            .restore(
                CustomResourcesRestorer::builder(self.kube.client())
                    .establish_timeout(Duration::from_secs(10))
                    .poll_interval(Duration::from_millis(50))
                    .build()
                    .unwrap(),
            )
            .restore(KeycloakRestorer::new(keycloak(&self.keycloak)).unwrap())
            .restore(VaultKvRestorer::new(vault(&self.vault)).unwrap())
            .restore(PostgresRestorer::new(
                server(),
                RestoreTarget::NewDatabase {
                    name: self.database.clone(),
                    swap: false,
                },
            ))
            // What the operator runs with the restored values (the library returns the
            // command, it does not run helm): here, the chart's pods come up.
            .step(
                Step::custom(
                    "install chart",
                    InstallChart {
                        kube: self.kube.clone(),
                        prometheus_up: self.prometheus.clone(),
                    },
                )
                .after("helm"),
            )
            .checks(self.checklist(prod_db))
            .rpo(Duration::from_secs(24 * 3600))
            .rto(Duration::from_secs(30 * 60))
            .build()
            .unwrap()
    }

    /// The guide's checklist after a restore.
    fn checklist(&self, prod_db: &str) -> Checklist {
        let keycloak = self.keycloak.clone();
        let url = self.keycloak.url();
        Checklist::new()
            .check(PodsReady::new(self.kube.client()))
            .check(
                HttpHealth::new("control plane /health", &self.control_plane.health_url()).unwrap(),
            )
            .check(HttpHealth::new("gateway /health", &self.gateway.health_url()).unwrap())
            // The export masks client secrets: the restored client has a new one, which the
            // operator reads from Keycloak (or sets) after the restore.
            .check(FnCheck::new(
                "Keycloak login stoa/control-plane-api",
                move |ctx| {
                    let (keycloak, url) = (keycloak.clone(), url.clone());
                    async move {
                        let Some(secret) = keycloak.client_secret("stoa", "control-plane-api")
                        else {
                            return Ok(CheckOutcome::failed(
                                "no client control-plane-api in realm stoa",
                            ));
                        };
                        OidcLogin::new(&url, "stoa", "control-plane-api", &secret)?
                            .run(&ctx)
                            .await
                    }
                },
            ))
            .check(
                RowCounts::new(server(), ["stoa.apis", "stoa.subscriptions"])
                    .unwrap()
                    .database(&self.database)
                    .backed_up_as(prod_db)
                    .named("API catalog and subscriptions"),
            )
            .check(PrometheusUp::new(&self.prometheus.url(), "stoa-gateway").unwrap())
            .timeout(Duration::from_secs(30))
    }
}

/// The fake (index into `Fresh::handles`) each step writes to; PostgreSQL and Helm values
/// (a values file) write to none.
fn fake_of(step: &str) -> Option<usize> {
    match step {
        "vault-kv" => Some(0),
        "keycloak" => Some(1),
        "crds" => Some(2),
        "grafana" => Some(3),
        _ => None,
    }
}

/// Asserts every write each fake received fell inside the window of the step that restores
/// it: the request logs show the dependency order.
fn assert_writes_in_their_steps(fresh: &Fresh, windows: &Windows) {
    let marks = windows.marks.lock().unwrap().clone();
    let logs: Vec<Vec<(String, String, bool)>> =
        fresh.handles().iter().map(|h| h.requests()).collect();
    for (fake, log) in logs.iter().enumerate() {
        for (i, (method, path, write)) in log.iter().enumerate() {
            if !write {
                continue;
            }
            let step = marks
                .windows(2)
                .find(|w| {
                    w[0].1 && !w[1].1 && w[0].0 == w[1].0 && w[0].2[fake] <= i && i < w[1].2[fake]
                })
                .map(|w| w[0].0.clone());
            let step =
                step.unwrap_or_else(|| panic!("{method} {path} outside every step: {marks:?}"));
            assert_eq!(
                fake_of(&step),
                Some(fake),
                "{method} {path} was written during step {step}"
            );
        }
    }
}

fn realm_summary(kc: &FakeKeycloak) -> (usize, Vec<String>) {
    let rep = kc.realm_representation("stoa").unwrap();
    let mut clients: Vec<String> = rep["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clientId"].as_str().unwrap().to_string())
        .collect();
    clients.sort();
    (kc.user_count("stoa"), clients)
}

#[tokio::test]
async fn the_whole_platform_is_planned_without_writes_then_recovered_in_stoa_order() {
    let Scene {
        prod,
        _tmp,
        sink,
        keyring,
        fresh,
        windows,
    } = scene().await;
    let recovery = fresh.recovery(sink.clone(), &keyring, &windows, prod.db.name());
    assert_eq!(recovery.step_names(), STEPS);

    // The plan: every step, its run and counts; nothing written anywhere.
    let plan = recovery.plan().await.unwrap();
    let table = plan.table();
    for step in STEPS {
        assert!(table.contains(step), "{table}");
    }
    assert_eq!(plan.steps[7].checks.len(), 6, "{table}");
    assert_eq!(plan.point.runs.len(), 6, "one run per component");
    let runs: std::collections::BTreeSet<_> = plan.point.runs.iter().map(|r| &r.run_id).collect();
    assert_eq!(runs.len(), 6, "each component from its own run");
    for s in plan
        .steps
        .iter()
        .filter(|s| RESTORE_STEPS.contains(&s.name.as_str()))
    {
        assert!(
            s.report.created + s.report.updated > 0,
            "{}: {:?}",
            s.name,
            s.report
        );
        assert_eq!(s.report.conflicts, 0, "{}: {:?}", s.name, s.report);
    }
    assert!(
        plan.keys.iter().any(|k| k.name.starts_with("age1")),
        "{:?}",
        plan.keys
    );
    assert!(
        fresh.writes().iter().all(Vec::is_empty),
        "{:?}",
        fresh.writes()
    );
    assert!(
        !database_exists(&fresh.database).await,
        "the plan created no database"
    );
    assert!(std::fs::read_dir(fresh.values_dir.path())
        .unwrap()
        .next()
        .is_none());

    // Apply: every component equal to what was backed up, each written in its step.
    let report = recovery.apply(&plan).await.unwrap();
    assert_eq!(report.verdict, Verdict::Passed, "{}", report.table());
    assert_eq!(report.within_rto, Some(true));
    let checks = report.checks.as_ref().unwrap();
    assert_eq!(checks.results.len(), 6);
    assert!(
        checks
            .results
            .iter()
            .all(|c| c.status == stoa_backup::core::CheckStatus::Passed),
        "{}",
        checks.table()
    );
    assert_writes_in_their_steps(&fresh, &windows);
    let order: Vec<String> = windows
        .marks
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.1)
        .map(|m| m.0.clone())
        .collect();
    assert_eq!(order, STEPS);

    assert_eq!(
        fingerprint(prod.db.name()).await,
        fingerprint(&fresh.database).await
    );
    for i in 0..12 {
        let path = format!("stoa/tenant-{}/api-{i}", i % 3);
        assert_eq!(
            fresh.vault.get("secret", &path),
            prod.vault.get("secret", &path),
            "{path}"
        );
    }
    assert_eq!(
        realm_summary(&fresh.keycloak),
        realm_summary(&prod.keycloak)
    );
    assert_eq!(
        crate::kubernetes::support::snapshot(&fresh.kube),
        crate::kubernetes::support::snapshot(&prod.kube)
    );
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(fresh.values_dir.path().join("stoa-system/stoa.values.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(values, fixture_values());
    assert_eq!(fresh.grafana.counts(), prod.grafana.counts());
    let helm = report.steps.iter().find(|s| s.name == "helm").unwrap();
    let command = helm.report.as_ref().unwrap().facts["command"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        command.starts_with("helm upgrade --install stoa stoa/stoa-platform"),
        "{command}"
    );
    let json: BTreeMap<String, Value> =
        serde_json::from_value(serde_json::to_value(&report).unwrap()).unwrap();
    assert_eq!(json["verdict"], "passed");
}

#[tokio::test]
async fn a_failure_at_the_fourth_step_is_resumed_without_redoing_the_first_three() {
    let Scene {
        prod,
        _tmp,
        sink,
        keyring,
        fresh,
        windows,
    } = scene().await;
    let recovery = fresh.recovery(sink.clone(), &keyring, &windows, prod.db.name());
    let plan = recovery.plan().await.unwrap();

    // The new cluster refuses CRDs (an admission webhook, RBAC…): the fourth step fails.
    fresh.kube.inject(
        FaultRule::forbidden("system:serviceaccount:stoa-system:stoa-backup")
            .path_contains("customresourcedefinitions")
            .method("PATCH"),
    );
    let e = recovery.apply(&plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let ctx: BTreeMap<String, String> = e.context().iter().cloned().collect();
    assert_eq!(ctx["step"], "crds", "{e}");
    assert_eq!(ctx["steps done"], "postgres, vault-kv, keycloak");
    let id = ctx["recovery"].clone();
    let journal = recovery.journal(&id).await.unwrap();
    assert_eq!(journal.failed_step().unwrap().name, "crds");
    for done in ["postgres", "vault-kv", "keycloak"] {
        assert_eq!(journal.step(done).unwrap().status, StepStatus::Done);
    }
    // The earlier steps' results stay.
    assert!(database_exists(&fresh.database).await);
    assert!(fresh.keycloak.has_realm("stoa"));
    let vault_before = fresh.vault.requests().len();
    // Besides the checklist's login into the restored realm.
    let admin_requests = |kc: &FakeKeycloak| {
        kc.requests()
            .into_iter()
            .filter(|r| !r.path.starts_with("/realms/stoa/"))
            .count()
    };
    let keycloak_before = admin_requests(&fresh.keycloak);

    fresh.kube.clear_faults();
    let report = recovery.resume(&id).await.unwrap();
    assert_eq!(report.verdict, Verdict::Passed, "{}", report.table());
    let earlier: Vec<bool> = report.steps.iter().map(|s| s.done_earlier).collect();
    assert_eq!(
        earlier,
        [true, true, true, false, false, false, false, false]
    );
    // Steps one to three were not run again: Vault and Keycloak's admin API saw no request.
    assert_eq!(fresh.vault.requests().len(), vault_before);
    assert_eq!(admin_requests(&fresh.keycloak), keycloak_before);
    assert_eq!(
        fingerprint(prod.db.name()).await,
        fingerprint(&fresh.database).await
    );
    assert_eq!(
        crate::kubernetes::support::snapshot(&fresh.kube),
        crate::kubernetes::support::snapshot(&prod.kube)
    );
    assert_eq!(fresh.grafana.counts(), prod.grafana.counts());
}

#[tokio::test]
async fn a_missing_identity_or_run_fails_before_the_first_write() {
    let Scene {
        prod,
        _tmp,
        sink,
        keyring: _,
        fresh,
        windows,
    } = scene().await;

    // Without the age identity: the plan names the encrypted artifact and its recipient.
    let e = fresh
        .recovery(sink.clone(), &Keyring::new(), &windows, prod.db.name())
        .plan()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("no key to decrypt"), "{e}");
    assert_eq!(
        e.component(),
        Some("vault-kv"),
        "the first encrypted component: {e}"
    );
    assert!(fresh.writes().iter().all(Vec::is_empty));
    assert!(!database_exists(&fresh.database).await);

    // A component whose only run is not verified (its run's report says so): named.
    let unverified = tempfile::tempdir().unwrap();
    let sink2: Arc<dyn Sink> = Arc::new(LocalSink::new(unverified.path()).unwrap());
    Pipeline::builder()
        .source(
            GrafanaSource::builder(grafana(&prod.grafana))
                .build()
                .unwrap(),
        )
        .sink(sink2.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let e = Recovery::stoa()
        .sink(sink2)
        .restore(GrafanaRestorer::new(grafana(&fresh.grafana)).unwrap())
        .build()
        .unwrap()
        .plan()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("grafana"), "{e}");
    assert!(fresh.writes().iter().all(Vec::is_empty));
}
