//! The restore driver over the real PostgreSQL: a run planned (nothing created), then
//! applied into a new database, equal to the source.

use std::sync::Arc;

use stoa_backup::core::{ErrorKind, MemorySink, Pipeline, Restore, RestoreReport, Sink, ZstdCodec};
use stoa_backup::providers::postgres::{
    PgArchiveVerifier, PostgresRestorer, PostgresSource, RestoreTarget,
};

use super::backup_restore::{database_exists, fingerprint, fresh_target, server, stoa_database};
use super::pg;

#[tokio::test]
async fn a_planned_run_creates_nothing_then_applies_into_a_new_database() {
    let src = stoa_database("pgdrv").await;
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(PostgresSource::builder(pg(src.url())).build().unwrap())
        .sink(sink.clone())
        .compression(ZstdCodec::new(3).unwrap())
        .verifier(PgArchiveVerifier::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete(), "{report:?}");
    let (target, _guard) = fresh_target("pgdrv_dst").await;
    let restore = Restore::builder()
        .sink(sink.clone())
        .restorer(PostgresRestorer::new(
            server(),
            RestoreTarget::NewDatabase {
                name: target.clone(),
                swap: false,
            },
        ))
        .build()
        .unwrap();

    let plan = restore.plan(&report.manifest).await.unwrap();
    assert_eq!(plan.components.len(), 1);
    let planned: &RestoreReport = &plan.components[0].report;
    assert_eq!((planned.created, planned.dry_run), (1, true), "{planned:?}");
    assert!(!database_exists(&target).await, "the plan created nothing");

    let done = restore.apply(&plan).await.unwrap();
    assert_eq!(done.components[0].report.created, 1);
    let (want, wseq) = fingerprint(src.name()).await;
    let (got, gseq) = fingerprint(&target).await;
    assert_eq!(got, want);
    assert_eq!(gseq, wseq);

    // Applied again, the database exists: refused, as the target is a new database.
    let again = restore.plan(&report.manifest).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict, "{again}");
    assert_eq!(again.component(), Some("postgres"));
    src.drop_db().await;
}
