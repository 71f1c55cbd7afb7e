//! Drills over the real PostgreSQL: a run restored into a scratch database, checked, and the
//! scratch database dropped afterwards, also when a check fails; an existing database of the
//! scratch name is refused and left alone.

use std::time::Duration;

use stoa_backup::core::recovery::{CheckOutcome, Checklist, FnCheck, Recovery, Verdict};
use stoa_backup::core::ErrorKind;
use stoa_backup::providers::postgres::{PostgresRestorer, RestoreTarget, ScratchDatabase};
use stoa_backup::storage::LocalSink;

use super::backup_restore::{database_exists, fingerprint, fresh_target, server, stoa_database};
use super::support::backup_into;

fn drill(dir: &std::path::Path, scratch: &ScratchDatabase, source: String, pass: bool) -> Recovery {
    let scratch_name = scratch.name().to_string();
    Recovery::stoa()
        .sink(LocalSink::new(dir).unwrap())
        // The production restorer as configured; the drill replaces its target.
        .step(scratch.step(PostgresRestorer::new(
            server(),
            RestoreTarget::NewDatabase {
                name: "stoa".into(),
                swap: true,
            },
        )))
        .checks(
            Checklist::new()
                .check(FnCheck::new("rows equal the source", move |_| {
                    let (source, scratch) = (source.clone(), scratch_name.clone());
                    async move {
                        let equal = fingerprint(&source).await == fingerprint(&scratch).await;
                        Ok(if equal && pass {
                            CheckOutcome::passed("every table equal")
                        } else {
                            CheckOutcome::failed("tables differ")
                        })
                    }
                }))
                .timeout(Duration::from_secs(60)),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_drill_restores_into_a_scratch_database_checks_it_and_drops_it() {
    let src = stoa_database("pgdrill").await;
    let dir = tempfile::tempdir().unwrap();
    backup_into(dir.path(), &src).await;
    let (name, _guard) = fresh_target("pgdrill_scratch").await;
    let scratch = ScratchDatabase::new(server(), &name).unwrap();

    let report = drill(dir.path(), &scratch, src.name().to_string(), true)
        .drill()
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Passed, "{}", report.table());
    assert!(report.time_to_restore_ms > 0);
    assert!(report.cleaned_up[0].ok && report.cleaned_up[0].detail.contains(&name));
    assert!(
        !database_exists(&name).await,
        "the scratch database is gone"
    );

    // A failing check fails the drill, and the scratch database is dropped all the same.
    let scratch = ScratchDatabase::new(server(), &name).unwrap();
    let report = drill(dir.path(), &scratch, src.name().to_string(), false)
        .drill()
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Failed);
    let checks = report.recovery.as_ref().unwrap().checks.as_ref().unwrap();
    assert_eq!(checks.failed(), ["rows equal the source"]);
    assert!(!database_exists(&name).await);
}

#[tokio::test]
async fn a_drill_never_restores_into_nor_drops_an_existing_database() {
    let src = stoa_database("pgdrill_live").await;
    let dir = tempfile::tempdir().unwrap();
    backup_into(dir.path(), &src).await;
    // The scratch name is taken by a live database: the drill stops before any write.
    let scratch = ScratchDatabase::new(server(), src.name()).unwrap();
    let report = drill(dir.path(), &scratch, src.name().to_string(), true)
        .drill()
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Failed);
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("exists already"), "{error}");
    assert!(report.cleaned_up[0].detail.contains("nothing to drop"));
    assert!(
        database_exists(src.name()).await,
        "the live database is untouched"
    );

    // System databases and the connection's own cannot be scratch databases.
    for bad in ["postgres", "template1", ""] {
        let e = ScratchDatabase::new(server(), bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}
