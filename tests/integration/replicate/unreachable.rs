//! The primary is S3 (in-process) and every run is replicated to a local directory as part
//! of the run (`replicate_to`); with the S3 server answering nothing but 503s, the same
//! restore configuration picks the replica's run and restores the database from it.

use std::sync::Arc;

use stoa_backup::core::replicate::CopyOutcome;
use stoa_backup::core::{Keyring, PointQuery, Restore, Sink};
use stoa_backup::providers::postgres::{PgConnection, PostgresRestorer, RestoreTarget};
use stoa_backup_test_support::s3::{self as s3t, FaultScope};
use stoa_backup_test_support::test_database_url;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_unreachable_the_replica_serves_the_recovery_point_and_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(20_000).await;
    let file = config_file(tmp.path());
    let t = s3t::s3s_fs_target().await;
    let server = t.server().unwrap();
    let s3: Arc<dyn Sink> = Arc::new(s3_sink(&t, "primary"));
    let local: Arc<dyn Sink> = Arc::new(local_sink(tmp.path().join("dr")));
    let report = pipeline(&db, &file, s3.clone())
        .replicate_to_named("dr", local.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(
        report.replication[0].copy.as_ref().unwrap().outcome,
        CopyOutcome::Copied
    );

    let target = format!("{}_dr", db.name());
    let restore = Restore::builder()
        .sink(s3.clone())
        .replica("dr", local.clone())
        .keyring(Keyring::new())
        .restorer(PostgresRestorer::new(
            PgConnection::from_url(&test_database_url()).unwrap(),
            RestoreTarget::NewDatabase {
                name: target.clone(),
                swap: false,
            },
        ))
        .build()
        .unwrap();
    // Both answer: the primary serves.
    let point = restore
        .find_point(&PointQuery::latest(["postgres"]))
        .await
        .unwrap();
    assert_eq!(point.origin_of("postgres"), Some(s3.describe().as_str()));

    // The region of the primary is down.
    server.faults().fail_always(503, FaultScope::All);
    let point = restore
        .find_point(&PointQuery::latest(["postgres"]))
        .await
        .unwrap();
    assert_eq!(point.run_of("postgres"), Some(&report.run_id));
    assert_eq!(point.origin_of("postgres"), Some("dr"));
    assert_eq!(point.unreachable.len(), 1, "{:?}", point.unreachable);
    let plan = restore.plan_run(&report.run_id).await.unwrap();
    assert_eq!(plan.origin, "dr");
    assert_eq!(rows_restored(&restore, &plan, &target).await, 20_000);
    server.faults().clear();
    db.drop_db().await;
}
