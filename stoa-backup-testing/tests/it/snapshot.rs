//! PgSnapshot: take, change, restore, compared whole; sessions; the guard on a panic; the
//! dump way, asked for and as the fallback of a role that cannot clone.

use stoa_backup_test_support::{connect, test_database_url, TestDatabase};
use stoa_backup_testing::{ErrorKind, MethodChoice, PgSnapshot, SnapshotMethod};

use crate::compare::{databases_like, fingerprint, mutate, seed, with_database};

/// Only the database itself is left under its name's prefix: no copy, no staging, no old.
async fn assert_only(db: &str) {
    assert_eq!(databases_like(db).await, vec![db.to_string()]);
}

#[tokio::test]
async fn a_template_snapshot_puts_schema_data_sequences_and_database_settings_back_every_time() {
    let db = TestDatabase::create("snap_tpl").await;
    seed(db.name()).await;
    let before = fingerprint(db.name()).await;

    let snapshot = PgSnapshot::take(&test_database_url(), db.name())
        .await
        .unwrap();
    assert!(
        matches!(snapshot.method(), SnapshotMethod::Template { .. }),
        "{}",
        snapshot.method()
    );
    for round in 0..2 {
        mutate(db.name()).await;
        assert_ne!(
            fingerprint(db.name()).await,
            before,
            "round {round}: the change shows"
        );
        snapshot.restore().await.unwrap();
        assert_eq!(fingerprint(db.name()).await, before, "round {round}");
    }
    // The guard restores once more, by taking the copy itself.
    let guard = snapshot.guard();
    mutate(db.name()).await;
    drop(guard);
    assert_eq!(fingerprint(db.name()).await, before);
    assert_only(db.name()).await;
    db.drop_db().await;
}

#[tokio::test]
async fn other_sessions_are_named_unless_the_caller_asks_to_terminate_them() {
    let db = TestDatabase::create("snap_sessions").await;
    seed(db.name()).await;
    let url = with_database(&test_database_url(), db.name());
    let (holder, connection) = tokio_postgres::connect(
        &format!("{url}?application_name=svc-pool"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let driver = tokio::spawn(connection);
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let err = PgSnapshot::take(&test_database_url(), db.name())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {pid}")) && text.contains("svc-pool"),
        "{text}"
    );
    assert!(
        format!("{err:#}").contains("terminate_connections"),
        "{err:#}"
    );
    assert_only(db.name()).await;

    let snapshot = PgSnapshot::builder(&test_database_url(), db.name())
        .terminate_connections(true)
        .take()
        .await
        .unwrap();
    assert!(
        holder.query_one("SELECT 1", &[]).await.is_err(),
        "the session was terminated"
    );
    let _ = driver.await;
    let before = fingerprint(db.name()).await;
    mutate(db.name()).await;
    // The option holds for the snapshot's restores too.
    let (again, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    snapshot.restore().await.unwrap();
    assert!(
        again.query_one("SELECT 1", &[]).await.is_err(),
        "terminated by the restore"
    );
    assert_eq!(fingerprint(db.name()).await, before);
    drop(snapshot);
    assert_only(db.name()).await;
    db.drop_db().await;
}

#[tokio::test]
async fn the_guard_puts_the_database_back_when_the_test_panics() {
    let db = TestDatabase::create("snap_panic").await;
    seed(db.name()).await;
    let before = fingerprint(db.name()).await;
    let name = db.name().to_string();
    let outcome = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let _guard = PgSnapshot::take(&test_database_url(), &name)
                    .await
                    .unwrap()
                    .guard();
                mutate(&name).await;
                panic!("the test under the guard fails");
            })
    })
    .join();
    assert!(outcome.is_err(), "the test panicked");
    assert_eq!(fingerprint(db.name()).await, before);
    assert_only(db.name()).await;
    db.drop_db().await;
}

#[tokio::test]
async fn the_dump_way_when_asked_restores_exactly_and_says_so() {
    let db = TestDatabase::create("snap_dump").await;
    seed(db.name()).await;
    let before = fingerprint(db.name()).await;
    let snapshot = PgSnapshot::builder(&test_database_url(), db.name())
        .method(MethodChoice::Dump)
        .take()
        .await
        .unwrap();
    assert_eq!(
        snapshot.method(),
        &SnapshotMethod::Dump {
            reason: "asked for".into()
        }
    );
    mutate(db.name()).await;
    snapshot.restore().await.unwrap();
    assert_eq!(fingerprint(db.name()).await, before);
    mutate(db.name()).await;
    snapshot.restore_once().await.unwrap();
    assert_eq!(fingerprint(db.name()).await, before);
    assert_only(db.name()).await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_role_that_cannot_create_databases_falls_back_to_the_dump_and_restores_in_place() {
    let admin = connect(&test_database_url()).await;
    let role = format!("stoa_nocreatedb_{:08x}", rand_u32());
    let db = format!("{role}_db");
    admin
        .batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN NOCREATEDB"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\" OWNER \"{role}\""))
        .await
        .unwrap();
    // The role owns its database and everything in it, as on a managed service.
    let role_url = test_database_url().replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(
        role_url,
        test_database_url(),
        "the test URL names user postgres"
    );
    let as_role = connect(&with_database(&role_url, &db)).await;
    as_role
        .batch_execute(
            "CREATE TABLE items (id serial PRIMARY KEY, body jsonb);
             INSERT INTO items (body) SELECT jsonb_build_object('ü', g) FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    drop(as_role);
    let before = fingerprint(&db).await;

    let snapshot = PgSnapshot::take(&role_url, &db).await.unwrap();
    match snapshot.method() {
        SnapshotMethod::Dump { reason } => {
            assert!(reason.contains("permission denied"), "{reason}")
        }
        other => panic!("expected the dump way, got {other}"),
    }
    let as_role = connect(&with_database(&role_url, &db)).await;
    as_role
        .batch_execute("DELETE FROM items WHERE id > 10; CREATE TABLE extra (x int); SELECT setval('items_id_seq', 5000);")
        .await
        .unwrap();
    drop(as_role);
    assert_ne!(fingerprint(&db).await, before);
    snapshot.restore().await.unwrap();
    assert_eq!(fingerprint(&db).await, before);
    drop(snapshot);
    admin
        .batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_database_and_an_unreachable_server_are_clear_errors() {
    let err = PgSnapshot::take(&test_database_url(), "stoa_no_such_database_here")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains("stoa_no_such_database_here"),
        "{err}"
    );
    let err = PgSnapshot::take("postgres://postgres@127.0.0.1:1/postgres", "app")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        format!("{err:#}").contains("never skip")
            || format!("{err:#}").contains("rather than skip"),
        "{err:#}"
    );
}

fn rand_u32() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}
