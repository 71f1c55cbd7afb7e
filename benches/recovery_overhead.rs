//! Recovery overhead benchmark of issue #14, run by hand (not in CI): what a platform
//! `Recovery` costs beyond the provider restores it drives.
//!
//! ```sh
//! cargo bench --bench recovery_overhead --features keycloak,grafana,vault
//! STOA_BENCH_RECOVERY_UNITS=4 STOA_BENCH_REPEAT=5 cargo bench --bench recovery_overhead --features keycloak,grafana,vault
//! ```
//!
//! **Data.** A PostgreSQL database of STOA-like rows (`benches/support/stoa_like.sql`,
//! `STOA_BENCH_RECOVERY_UNITS` units of about 5.8 MiB of raw dump each, default 8), reused
//! by later runs once complete; a Keycloak realm (the STOA fixture), 40 Vault KV secrets and
//! the fixture Grafana, in the in-process fakes. Each is backed up once, in its own run,
//! into one local sink, encrypted where it holds secrets.
//!
//! **Cases**, interleaved `STOA_BENCH_REPEAT` times (default 3), each into a new, empty
//! platform (a new database name, new fakes: created and dropped untimed):
//! 1. direct: for each component, what a caller without `Recovery` does — the newest
//!    verified run from the catalog, then the `Restore` driver's plan and apply;
//! 2. recovery: `Recovery::stoa()` with the same restorers — recovery point, every step's
//!    plan, then apply with the journal written before and after each step.
//!
//! **Output**: the median wall time of each, and recovery / direct with its target
//! (<= 1.05).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stoa_backup::core::recovery::{Recovery, Verdict};
use stoa_backup::core::{Catalog, Keyring, Restore, Restorer, RetryPolicy, Sink};
use stoa_backup::prelude::*;
use stoa_backup::providers::grafana::{
    GrafanaAuth, GrafanaConnection, GrafanaRestorer, GrafanaSource,
};
use stoa_backup::providers::keycloak::{
    KeycloakAuth, KeycloakConnection, KeycloakRestorer, KeycloakSource,
};
use stoa_backup::providers::postgres::verify::drop_database_force;
use stoa_backup::providers::postgres::{PostgresRestorer, PostgresSource, RestoreTarget};
use stoa_backup::providers::vault::{VaultAuth, VaultConnection, VaultKvRestorer, VaultKvSource};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::grafana_fake::{FakeGrafana, TOKEN};
use stoa_backup_test_support::keycloak_fake::{fixture_realm, FakeKeycloak};
use stoa_backup_test_support::vault_fake::FakeVault;

const STOA_LIKE_SQL: &str = include_str!("support/stoa_like.sql");
const TARGET: f64 = 1.05;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn server_url() -> String {
    std::env::var("STOA_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("STOA_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
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

/// The source database, `stoa_bench_recovery_<units>u`: reused once complete.
async fn ensure_database(server: &PgConnection, units: u64) -> String {
    let name = format!("stoa_bench_recovery_{units}u");
    let admin = server.connect(server.get_dbname()).await.unwrap();
    let exists = !admin
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_empty();
    if exists {
        let db = server.connect(&name).await.unwrap();
        let done: bool = db
            .query_one("SELECT to_regclass('stoa_bench.done') IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0);
        if done {
            println!("reusing database {name}");
            return name;
        }
        drop_database_force(server, &name).await.unwrap();
    }
    let t0 = Instant::now();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let db = server.connect(&name).await.unwrap();
    db.batch_execute(STOA_LIKE_SQL).await.unwrap();
    db.batch_execute(&format!(
        "SELECT stoa_bench.fill(1, {units}); ANALYZE; CREATE TABLE stoa_bench.done ()"
    ))
    .await
    .unwrap();
    println!(
        "generated database {name} ({units} units) in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    name
}

/// The empty platform one case restores into.
struct Target {
    database: String,
    vault: FakeVault,
    keycloak: FakeKeycloak,
    grafana: FakeGrafana,
}

impl Target {
    async fn new(case: &str, rep: usize) -> Target {
        Target {
            database: format!("stoa_bench_recovered_{case}_{rep}"),
            vault: FakeVault::start().await,
            keycloak: FakeKeycloak::start_empty().await,
            grafana: FakeGrafana::start_empty().await,
        }
    }

    fn restorers(&self, server: &PgConnection) -> Vec<Arc<dyn Restorer>> {
        vec![
            Arc::new(PostgresRestorer::new(
                server.clone(),
                RestoreTarget::NewDatabase {
                    name: self.database.clone(),
                    swap: false,
                },
            )),
            Arc::new(VaultKvRestorer::new(vault(&self.vault)).unwrap()),
            Arc::new(KeycloakRestorer::new(keycloak(&self.keycloak)).unwrap()),
            Arc::new(GrafanaRestorer::new(grafana(&self.grafana)).unwrap()),
        ]
    }
}

async fn direct(sink: &Arc<dyn Sink>, keyring: &Keyring, restorers: Vec<Arc<dyn Restorer>>) {
    let catalog = Catalog::new(sink.clone());
    for r in restorers {
        let manifest = catalog
            .latest_verified(r.component())
            .await
            .unwrap()
            .expect("a verified run");
        let restore = Restore::builder()
            .sink(sink.clone())
            .keyring(keyring.clone())
            .restorer(r)
            .build()
            .unwrap();
        let plan = restore.plan(&manifest).await.unwrap();
        restore.apply(&plan).await.unwrap();
    }
}

async fn recovery(sink: &Arc<dyn Sink>, keyring: &Keyring, restorers: Vec<Arc<dyn Restorer>>) {
    let mut b = Recovery::stoa().sink(sink.clone()).keyring(keyring.clone());
    for r in restorers {
        b = b.restore(r);
    }
    let recovery = b.build().unwrap();
    let plan = recovery.plan().await.unwrap();
    let report = recovery.apply(&plan).await.unwrap();
    assert_eq!(report.verdict, Verdict::Passed);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let units = env_u64("STOA_BENCH_RECOVERY_UNITS", 8);
    let repeat = env_u64("STOA_BENCH_REPEAT", 3).max(1) as usize;
    let server = PgConnection::from_url(&server_url()).unwrap();
    let db = ensure_database(&server, units).await;

    // Production, backed up once, each component in its own run.
    let tmp = tempfile::tempdir().unwrap();
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(tmp.path()).unwrap());
    let (enc, keyring) = age_keys();
    let prod_vault = FakeVault::start().await;
    for i in 0..40 {
        prod_vault.put(
            "secret",
            &format!("stoa/tenant-{}/api-{i}", i % 4),
            json!({"client_secret": format!("s3cret-{i}")}),
        );
    }
    let prod_keycloak = FakeKeycloak::start_empty().await;
    prod_keycloak.load_realm(fixture_realm());
    let prod_grafana = FakeGrafana::start().await;
    let sources: Vec<(Box<dyn stoa_backup::core::Source>, bool)> = vec![
        (
            Box::new(
                PostgresSource::builder(server.with_dbname(&db))
                    .build()
                    .unwrap(),
            ),
            false,
        ),
        (
            Box::new(VaultKvSource::builder(vault(&prod_vault)).build().unwrap()),
            true,
        ),
        (
            Box::new(
                KeycloakSource::builder(keycloak(&prod_keycloak))
                    .realm("stoa")
                    .build()
                    .unwrap(),
            ),
            true,
        ),
        (
            Box::new(
                GrafanaSource::builder(grafana(&prod_grafana))
                    .build()
                    .unwrap(),
            ),
            false,
        ),
    ];
    for (source, secret) in sources {
        let mut b = Pipeline::builder()
            .source(source)
            .sink(sink.clone())
            .compression(ZstdCodec::default())
            .verifier(ChecksumVerifier::new());
        if secret {
            b = b.encryption(enc.clone());
        }
        let report = b.build().unwrap().run().await.unwrap();
        assert!(report.is_complete(), "{:?}", report.manifest.failures);
    }

    let mut direct_walls = Vec::new();
    let mut recovery_walls = Vec::new();
    for rep in 0..repeat {
        for case in ["direct", "recovery"] {
            let target = Target::new(case, rep).await;
            drop_database_force(&server, &target.database)
                .await
                .unwrap();
            let restorers = target.restorers(&server);
            let t0 = Instant::now();
            if case == "direct" {
                direct(&sink, &keyring, restorers).await;
            } else {
                recovery(&sink, &keyring, restorers).await;
            }
            let wall = t0.elapsed();
            println!("{case:<9} run {}: {:.3} s", rep + 1, wall.as_secs_f64());
            if case == "direct" {
                direct_walls.push(wall);
            } else {
                recovery_walls.push(wall);
            }
            drop_database_force(&server, &target.database)
                .await
                .unwrap();
            let admin = server.connect(server.get_dbname()).await.unwrap();
            // Best effort (it needs superuser or pg_checkpoint): only the next case's speed
            // depends on it.
            if let Err(e) = admin.batch_execute("CHECKPOINT").await {
                eprintln!(
                    "note: CHECKPOINT failed ({e}); a restore's writes may slow the next case"
                );
            }
        }
    }
    let (d, r) = (median(direct_walls), median(recovery_walls));
    let ratio = r.as_secs_f64() / d.as_secs_f64();
    println!(
        "\nmedian of {repeat}: direct restores {:.3} s, recovery {:.3} s",
        d.as_secs_f64(),
        r.as_secs_f64()
    );
    println!(
        "recovery / sum of direct restores: {ratio:.3} (target <= {TARGET:.2}) {}",
        if ratio <= TARGET { "ok" } else { "MISSED" }
    );
}
