//! The restore driver over the real PostgreSQL: a run planned (nothing created), then
//! applied into a new database, equal to the source.

use stoa_backup::core::{ErrorKind, Restore, RestoreReport};
use stoa_backup::providers::postgres::{PostgresRestorer, RestoreTarget};
use stoa_backup::storage::LocalSink;

use super::backup_restore::{database_exists, fingerprint, fresh_target, server, stoa_database};
use super::support::backup_into;

#[tokio::test]
async fn a_planned_run_creates_nothing_then_applies_into_a_new_database() {
    let src = stoa_database("pgdrv").await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = backup_into(dir.path(), &src).await;
    let (target, _guard) = fresh_target("pgdrv_dst").await;
    let restore = Restore::builder()
        .sink(LocalSink::new(dir.path()).unwrap())
        .restorer(PostgresRestorer::new(
            server(),
            RestoreTarget::NewDatabase {
                name: target.clone(),
                swap: false,
            },
        ))
        .build()
        .unwrap();

    let plan = restore.plan(&manifest).await.unwrap();
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
    let again = restore.plan(&manifest).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict, "{again}");
    assert_eq!(again.component(), Some("postgres"));
    src.drop_db().await;
}
