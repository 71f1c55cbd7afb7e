//! PgSnapshot's spare copy: repeated restores rename it in (the live database is the
//! spare itself afterwards), every restore still equals the snapshot, and nothing is left
//! on the server after the snapshot, also when the process exits with the spare's refill
//! and the drops still running in the background.

use std::process::Command;

use stoa_backup_test_support::{test_database_url, TestDatabase};
use stoa_backup_testing::PgSnapshot;

use crate::compare::{
    database_oid, databases_like, databases_now, fingerprint, mutate, seed, Fingerprint,
};

fn is_spare(db: &str, name: &str) -> bool {
    name.strip_prefix(db)
        .is_some_and(|rest| rest.starts_with("_spare_"))
}

/// The spare among the databases of `db`'s prefix, once the background work has ended.
async fn spare_of(db: &str) -> String {
    let all = databases_like(db).await;
    let spares: Vec<&String> = all.iter().filter(|n| is_spare(db, n)).collect();
    assert_eq!(spares.len(), 1, "one spare of {db}: {all:?}");
    spares[0].clone()
}

/// A seeded test database, its fingerprint, a snapshot taken with its spare at once, and
/// that spare's name once it is made.
async fn seeded_with_spare(tag: &str) -> (TestDatabase, Fingerprint, PgSnapshot, String) {
    let db = TestDatabase::create(tag).await;
    seed(db.name()).await;
    let before = fingerprint(db.name()).await;
    let snapshot = PgSnapshot::builder(&test_database_url(), db.name())
        .spare_at_once(true)
        .take()
        .await
        .unwrap();
    let spare = spare_of(db.name()).await;
    (db, before, snapshot, spare)
}

#[tokio::test]
async fn repeated_restores_rename_the_spare_in_and_equal_the_snapshot_every_time() {
    let db = TestDatabase::create("snapsp").await;
    seed(db.name()).await;
    let before = fingerprint(db.name()).await;
    let snapshot = PgSnapshot::take(&test_database_url(), db.name())
        .await
        .unwrap();
    // No spare before the first restore(): a guard-only snapshot never pays for one.
    stoa_backup_testing::settle().await;
    assert!(
        !databases_now(db.name())
            .await
            .iter()
            .any(|n| is_spare(db.name(), n)),
        "no spare yet"
    );

    mutate(db.name()).await;
    snapshot.restore().await.unwrap();
    assert_eq!(
        fingerprint(db.name()).await,
        before,
        "first restore (a clone)"
    );
    for round in 0..2 {
        let spare = spare_of(db.name()).await;
        let spare_oid = database_oid(&spare).await;
        mutate(db.name()).await;
        snapshot.restore().await.unwrap();
        assert_eq!(
            database_oid(db.name()).await,
            spare_oid,
            "round {round}: the spare {spare} itself is the database now"
        );
        assert_eq!(fingerprint(db.name()).await, before, "round {round}");
        assert_ne!(
            spare_of(db.name()).await,
            spare,
            "round {round}: a new spare"
        );
    }
    drop(snapshot);
    assert_eq!(databases_like(db.name()).await, vec![db.name().to_string()]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_spare_made_at_once_serves_the_first_restore_and_the_guard_removes_it() {
    let (db, before, snapshot, spare) = seeded_with_spare("snapsp_now").await;
    let spare_oid = database_oid(&spare).await;
    mutate(db.name()).await;
    snapshot.restore().await.unwrap();
    assert_eq!(database_oid(db.name()).await, spare_oid);
    assert_eq!(fingerprint(db.name()).await, before);

    // The guard renames the copy itself in; the refill in flight is stopped and dropped.
    let guard = snapshot.guard();
    mutate(db.name()).await;
    drop(guard);
    assert_eq!(fingerprint(db.name()).await, before);
    assert_eq!(databases_like(db.name()).await, vec![db.name().to_string()]);
    db.drop_db().await;
}

const CHILD_DB: &str = "STOA_TESTING_EXIT_CHILD_DB";

/// Run by the next test in a process of its own: leaves a spare's refill and two
/// snapshots' removal running in the background and returns at once.
#[tokio::test]
#[ignore = "run by exiting_with_background_work_running_leaves_nothing_behind"]
async fn exiting_process_child() {
    let db = std::env::var(CHILD_DB).expect("run by the parent test");
    let url = test_database_url();
    let snapshot = PgSnapshot::take(&url, &db).await.unwrap();
    mutate(&db).await;
    snapshot.restore().await.unwrap();
    let eager = PgSnapshot::builder(&url, &db)
        .spare_at_once(true)
        .take()
        .await
        .unwrap();
    drop(snapshot);
    drop(eager);
}

#[tokio::test]
async fn exiting_with_background_work_running_leaves_nothing_behind() {
    let db = TestDatabase::create("snap_exit").await;
    seed(db.name()).await;
    let before = fingerprint(db.name()).await;
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "spare::exiting_process_child",
            "--nocapture",
        ])
        .env(CHILD_DB, db.name())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "the child test ran: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    // Not settled here: the child's process waited for its own background work.
    assert_eq!(databases_now(db.name()).await, vec![db.name().to_string()]);
    assert_eq!(fingerprint(db.name()).await, before);
    db.drop_db().await;
}

#[tokio::test]
async fn a_spare_dropped_behind_the_snapshots_back_is_replaced_by_a_clone() {
    let (db, before, snapshot, spare) = seeded_with_spare("snapsp_gone").await;
    let admin = stoa_backup_test_support::connect(&test_database_url()).await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{spare}\""))
        .await
        .unwrap();
    for round in 0..2 {
        mutate(db.name()).await;
        snapshot.restore().await.unwrap();
        assert_eq!(fingerprint(db.name()).await, before, "round {round}");
    }
    drop(snapshot);
    assert_eq!(databases_like(db.name()).await, vec![db.name().to_string()]);
    db.drop_db().await;
}
