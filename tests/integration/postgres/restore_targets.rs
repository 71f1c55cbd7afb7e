//! Restores into a live name: the swap that moves the live database aside, and the clean
//! restore over an existing database in one transaction.

use std::sync::Arc;

use super::backup_restore::{
    client, database_exists, export_plain, fingerprint, server, stoa_database, store_plain, url_for,
};
use super::pg;
use crate::restore_support::restore_component;
use stoa_backup::core::{
    ErrorKind, ExistingDataPolicy, Keyring, MemorySink, PerArtifact, Pipeline, RestoreOptions,
    Sink, ZstdCodec,
};
use stoa_backup::providers::postgres::verify::drop_database_force;
use stoa_backup::providers::postgres::{PostgresRestorer, PostgresSource, RestoreTarget};
use stoa_backup_test_support::TestDatabase;

#[tokio::test]
async fn swap_restore_moves_the_live_database_aside() {
    let src = stoa_database("pgrt_swap_src").await;
    let live = TestDatabase::create("pgrt_swap_live").await;
    client(live.url())
        .await
        .batch_execute("CREATE TABLE old_stuff (x int); INSERT INTO old_stuff VALUES (1);")
        .await
        .unwrap();
    // An open connection to the live database is terminated by the swap.
    let holder = client(live.url()).await;

    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(PostgresSource::builder(pg(src.url())).build().unwrap())
        .sink(sink.clone())
        .compression(ZstdCodec::new(1).unwrap())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.manifest.failures);
    let restorer = PostgresRestorer::new(
        // Connected to the very database it replaces: the restorer administers from another.
        server().with_dbname(live.name()),
        RestoreTarget::NewDatabase {
            name: live.name().to_string(),
            swap: true,
        },
    );
    let dry = restore_component(
        sink.clone(),
        &report.manifest,
        &Keyring::default(),
        restorer.clone(),
        ExistingDataPolicy::Fail,
        true,
    )
    .await
    .unwrap();
    assert!(
        dry.dry_run && dry.notes.iter().any(|n| n.contains("would rename")),
        "{dry:?}"
    );

    let r = restore_component(
        sink.clone(),
        &report.manifest,
        &Keyring::default(),
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    let old = r.facts["previous_database"].as_str().unwrap().to_string();
    let run = report
        .run_id
        .as_str()
        .to_ascii_lowercase()
        .replace('-', "_");
    assert_eq!(old, format!("{}_old_{run}", live.name()));
    assert!(
        holder.query_one("SELECT 1", &[]).await.is_err(),
        "the old connection was terminated"
    );

    let (want, _) = fingerprint(src.name()).await;
    let (got, _) = fingerprint(live.name()).await;
    assert_eq!(got, want);
    let n: i64 = client(&url_for(&old))
        .await
        .query_one("SELECT count(*) FROM old_stuff", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the previous database is kept intact");
    assert!(
        !database_exists(&format!("{}_restore_{run}", live.name())).await,
        "no staging database left"
    );

    drop_database_force(&server(), &old).await.unwrap();
    src.drop_db().await;
    live.drop_db().await;
}

#[tokio::test]
async fn clean_restore_needs_overwrite_and_replaces_contents_in_one_transaction() {
    let src = stoa_database("pgrt_clean_src").await;
    let source = PostgresSource::builder(pg(src.url())).build().unwrap();
    let (bytes, facts) = export_plain(&source).await;
    let sink = MemorySink::new();
    let record = store_plain(&sink, "clean.dump", bytes, facts).await;

    let target = stoa_database("pgrt_clean_dst").await;
    client(target.url())
        .await
        .batch_execute("INSERT INTO stoa.audit_events (actor, action) VALUES ('extra', 'x');")
        .await
        .unwrap();
    let restorer = PostgresRestorer::new(
        server(),
        RestoreTarget::Clean {
            database: target.name().to_string(),
        },
    );

    let err = restorer
        .restore_one(
            &record,
            sink.get(&record.key).await.unwrap(),
            &RestoreOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.hint().unwrap().contains("Overwrite"), "{err}");

    let opts = RestoreOptions {
        existing: ExistingDataPolicy::Overwrite,
        ..Default::default()
    };
    restorer
        .restore_one(&record, sink.get(&record.key).await.unwrap(), &opts)
        .await
        .unwrap();
    let (want, _) = fingerprint(src.name()).await;
    let (got, _) = fingerprint(target.name()).await;
    assert_eq!(got, want);

    // Parallel restores are refused over a live database.
    let err = restorer
        .clone()
        .jobs(4)
        .restore_one(&record, sink.get(&record.key).await.unwrap(), &opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    src.drop_db().await;
    target.drop_db().await;
}
