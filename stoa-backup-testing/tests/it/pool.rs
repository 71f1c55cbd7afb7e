//! TestDatabases: templates by migration hash, concurrent isolated clones, nothing left
//! behind (also after a panic), stale leftovers removed, loud failures.

use std::time::Duration;

use stoa_backup_test_support::{connect, test_database_url};
use stoa_backup_testing::{ErrorKind, Migrations, StalePolicy, TestDatabases};

use crate::compare::databases_like;

/// Migrations of their own per test (a random table name), so that tests running at once
/// do not share a template unless they mean to.
fn migrations(tag: &str) -> Migrations {
    Migrations::new()
        .sql(
            "0001_tenants.sql",
            format!(
                "CREATE TABLE tenants_{tag} (id serial PRIMARY KEY, name text NOT NULL UNIQUE);"
            ),
        )
        .sql(
            "0002_seed.sql",
            format!("INSERT INTO tenants_{tag} (name) VALUES ('seeded');"),
        )
}

fn tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

async fn drop_template(pool: &TestDatabases) {
    let admin = connect(&test_database_url()).await;
    // ALTER and DROP DATABASE cannot share a multi-statement string.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" IS_TEMPLATE false",
            pool.template()
        ))
        .await
        .ok();
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            pool.template()
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tests_each_get_their_own_database_and_none_is_left() {
    let tag = tag();
    let pool = TestDatabases::new(&test_database_url(), migrations(&tag))
        .await
        .unwrap();
    assert!(pool.built_template());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let pool = pool.clone();
        let tag = tag.clone();
        tasks.push(tokio::spawn(async move {
            let db = pool.checkout().await.unwrap();
            let client = db.connect().await.unwrap();
            client
                .execute(
                    &format!("INSERT INTO tenants_{tag} (name) VALUES ($1)"),
                    &[&format!("test-{i}")],
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let names: Vec<String> = client
                .query(&format!("SELECT name FROM tenants_{tag} ORDER BY id"), &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(names, vec!["seeded".to_string(), format!("test-{i}")]);
            db.name().to_string()
        }));
    }
    let mut names = Vec::new();
    for t in tasks {
        names.push(t.await.unwrap());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 16, "every test had a database of its own");
    let prefix = format!("stoa_t_{}", &migrations(&tag).hash()[..8]);
    assert_eq!(
        databases_like(&prefix).await,
        Vec::<String>::new(),
        "every clone is dropped"
    );
    drop_template(&pool).await;
}

#[tokio::test]
async fn the_template_is_reused_for_the_same_migrations_and_rebuilt_for_changed_ones() {
    let tag = tag();
    let first = TestDatabases::new(&test_database_url(), migrations(&tag))
        .await
        .unwrap();
    let again = TestDatabases::new(&test_database_url(), migrations(&tag))
        .await
        .unwrap();
    assert!(first.built_template());
    assert!(
        !again.built_template(),
        "an unchanged migration set reuses the template"
    );
    assert_eq!(first.template(), again.template());
    let changed = migrations(&tag).sql("0003_more.sql", "CREATE TABLE more (x int);");
    let third = TestDatabases::new(&test_database_url(), changed)
        .await
        .unwrap();
    assert!(third.built_template());
    assert_ne!(third.template(), first.template());
    let db = third.checkout().await.unwrap();
    let client = db.connect().await.unwrap();
    client
        .query_one("SELECT count(*) FROM more", &[])
        .await
        .unwrap();
    drop(client);
    drop(db);
    drop_template(&first).await;
    drop_template(&third).await;
}

#[tokio::test]
async fn a_failing_migration_names_its_file_and_leaves_no_template() {
    let tag = tag();
    let broken = migrations(&tag).sql("0003_broken.sql", "CREATE TABLE oops (x nosuchtype);");
    let err = TestDatabases::new(&test_database_url(), broken.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let text = format!("{err:#}");
    assert!(
        text.contains("0003_broken.sql") && text.contains("nosuchtype"),
        "{text}"
    );
    let template = format!("stoa_tpl_{}", &broken.hash()[..16]);
    assert_eq!(databases_like(&template).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_panicking_test_still_drops_its_database() {
    let tag = tag();
    let pool = TestDatabases::new(&test_database_url(), migrations(&tag))
        .await
        .unwrap();
    let p = pool.clone();
    let name = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let db = p.checkout().await.unwrap();
                let client = db.connect().await.unwrap();
                client.execute("SELECT 1", &[]).await.unwrap();
                let name = db.name().to_string();
                // The panic unwinds through `db` (and the still-open client).
                std::panic::panic_any(name);
            })
    })
    .join()
    .unwrap_err()
    .downcast::<String>()
    .unwrap();
    assert_eq!(
        databases_like(&name).await,
        Vec::<String>::new(),
        "{name} was dropped"
    );
    drop_template(&pool).await;
}

#[tokio::test]
async fn leftovers_of_a_crashed_run_are_removed_by_the_next_pool() {
    let tag = tag();
    let pool = TestDatabases::new(&test_database_url(), migrations(&tag))
        .await
        .unwrap();
    // A clone whose process died: made by hand with the marker of a dead pid.
    let admin = connect(&test_database_url()).await;
    let orphan = format!("stoa_t_orphan_{tag}");
    let old = format!("stoa_t_old_{tag}");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{orphan}\""))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{old}\""))
        .await
        .unwrap();
    let host = hostname::get().unwrap().into_string().unwrap();
    let dead = format!(
        r#"stoa-backup-testing: {{"kind":"clone","created_at":"{}","host":"{host}","pid":{}}}"#,
        chrono::Utc::now().to_rfc3339(),
        u32::MAX - 7
    );
    let aged = r#"stoa-backup-testing: {"kind":"clone","created_at":"2026-01-01T00:00:00Z","host":"another-host","pid":1}"#.to_string();
    for (db, comment) in [(&orphan, &dead), (&old, &aged)] {
        admin
            .batch_execute(&format!("COMMENT ON DATABASE \"{db}\" IS '{comment}'"))
            .await
            .unwrap();
    }
    let next = TestDatabases::new(&test_database_url(), migrations(&tag))
        .await
        .unwrap();
    let dropped = &next.cleaned_up().dropped;
    assert!(
        dropped.contains(&orphan) && dropped.contains(&old),
        "{dropped:?}"
    );
    assert!(databases_like(&orphan).await.is_empty() && databases_like(&old).await.is_empty());
    assert!(
        !dropped.iter().any(|d| d == pool.template()),
        "the current template stays"
    );
    let report = next.cleanup_stale(StalePolicy::default()).await.unwrap();
    assert!(report.dropped.is_empty(), "{report:?}");
    drop_template(&pool).await;
}

#[tokio::test]
async fn an_unreachable_server_or_no_url_is_a_loud_error() {
    let err = TestDatabases::new(
        "postgres://postgres@127.0.0.1:1/postgres",
        Migrations::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = format!("{err:#}");
    assert!(
        text.contains("127.0.0.1:1") && text.contains("skip"),
        "{text}"
    );
}
