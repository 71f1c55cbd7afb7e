//! PostgreSQL exec mode: `pg_dump` runs "inside a pod" through the real kube client and the
//! fake API server's exec websocket (which runs the command on this machine, against the
//! real local PostgreSQL).

use std::sync::Arc;

use super::pg;
use crate::restore_support::restore_component;
use stoa_backup::core::{ExistingDataPolicy, Keyring, Pipeline, RunStatus, Sink, ZstdCodec};
use stoa_backup::providers::postgres::{
    PgArchiveVerifier, PgConnection, PodRef, PodTarget, PostgresPodSource, PostgresRestorer,
    PostgresSource, RestoreTarget,
};
use stoa_backup::storage::LocalSink;
use stoa_backup_test_support::kube_fake::FakeKube;
use stoa_backup_test_support::{test_database_url, TestDatabase};
use tokio_postgres::NoTls;

async fn seed(url: &str) {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE SCHEMA stoa;
             CREATE TABLE stoa.tenants (id serial PRIMARY KEY, name text NOT NULL);
             INSERT INTO stoa.tenants (name) SELECT 'tenant-' || g || ' é' FROM generate_series(1, 1500) g;",
        )
        .await
        .expect("seed");
}

async fn count(url: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
        .query_one("SELECT count(*) FROM stoa.tenants", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn pg_dump_runs_in_the_pod_and_the_dump_restores() {
    let db = TestDatabase::create("pgexec").await;
    seed(db.url()).await;
    let fake = FakeKube::start().await;
    fake.add_pod("stoa-system", "postgres-0", &["postgres"]);

    let inner = PostgresSource::builder(pg(db.url())).build().unwrap();
    let target = PodTarget::new(
        fake.client(),
        "stoa-system",
        PodRef::Name("postgres-0".into()),
    )
    .container("postgres");
    let source = PostgresPodSource::new(inner, target).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(tmp.path()).unwrap());
    let report = Pipeline::builder()
        .source(source)
        .sink(sink.clone())
        .compression(ZstdCodec::new(3).unwrap())
        .verifier(PgArchiveVerifier::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let a = &report.manifest.artifacts[0];
    assert_eq!(a.provider, "pg_dump (pod exec)");
    assert!(
        a.facts["toc_entries"].as_u64().unwrap() >= 3,
        "{:?}",
        a.facts
    );
    assert!(a.is_verified());

    // The command went through the exec API, into the named container, with no password.
    let reqs = fake.exec_requests();
    let dump = reqs
        .iter()
        .find(|r| r.command.iter().any(|a| a == "--format=custom"))
        .expect("pg_dump exec request");
    assert_eq!(
        (dump.namespace.as_str(), dump.pod.as_str()),
        ("stoa-system", "postgres-0")
    );
    assert_eq!(dump.container.as_deref(), Some("postgres"));
    assert_eq!(dump.command[0], "pg_dump");
    assert!(!dump.command.iter().any(|a| a.contains("password")));

    // The dump restores into a new database with every row.
    let restored = format!("{}_restored", db.name());
    let restorer = PostgresRestorer::new(
        PgConnection::from_url(&test_database_url()).unwrap(),
        RestoreTarget::NewDatabase {
            name: restored.clone(),
            swap: false,
        },
    );
    restore_component(
        sink.clone(),
        &report.manifest,
        &Keyring::new(),
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    let restored_url = db.url().replace(db.name(), &restored);
    assert_eq!(count(&restored_url).await, 1500);
    stoa_backup::providers::postgres::verify::drop_database_force(
        &PgConnection::from_url(&test_database_url()).unwrap(),
        &restored,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn failing_pg_dump_in_the_pod_fails_the_run_with_its_stderr() {
    let fake = FakeKube::start().await;
    fake.add_pod("stoa-system", "postgres-0", &["postgres"]);
    let url = test_database_url();
    let missing = url
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/stoa_no_such_db_exec"))
        .unwrap();
    let inner = PostgresSource::builder(pg(&missing)).build().unwrap();
    let source = PostgresPodSource::new(
        inner,
        PodTarget::new(
            fake.client(),
            "stoa-system",
            PodRef::Name("postgres-0".into()),
        ),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let report = Pipeline::builder()
        .source(source)
        .sink(LocalSink::new(tmp.path()).unwrap())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let err = &report.manifest.failures[0].error;
    assert!(err.contains("stoa_no_such_db_exec"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("postgres-0"), "{err}");
}

#[tokio::test]
async fn exec_mode_refuses_passwords_and_missing_pods() {
    let fake = FakeKube::start().await;
    let inner = PostgresSource::builder(pg("postgres://postgres:s3cret@127.0.0.1:5432/stoa"))
        .build()
        .unwrap();
    let err = PostgresPodSource::new(
        inner,
        PodTarget::new(
            fake.client(),
            "stoa-system",
            PodRef::Name("postgres-0".into()),
        ),
    )
    .unwrap_err();
    assert!(err.to_string().contains("password"), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");

    let inner = PostgresSource::builder(pg("postgres://postgres@127.0.0.1:5432/stoa"))
        .build()
        .unwrap();
    let source = PostgresPodSource::new(
        inner,
        PodTarget::new(
            fake.client(),
            "stoa-system",
            PodRef::Selector("app=postgres".into()),
        ),
    )
    .unwrap();
    use stoa_backup::core::Source;
    let err = source.preflight().await.unwrap_err();
    assert!(
        err.to_string().contains("no pod matches 'app=postgres'"),
        "{err}"
    );
}
