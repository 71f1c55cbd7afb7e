//! The crate documentation's example, run: a service's tests sharing one pool kept in a
//! `static` (each `#[tokio::test]` has a runtime of its own), a fresh database per test,
//! and a guard putting seeded data back.

use stoa_backup_testing::{Migrations, PgSnapshot, TestDatabases};
use tokio::sync::OnceCell;

static POOL: OnceCell<TestDatabases> = OnceCell::const_new();

async fn pool() -> &'static TestDatabases {
    POOL.get_or_init(|| async {
        let migrations = Migrations::new()
            .sql(
                "0001_tenants.sql",
                "CREATE TABLE tenants (id serial PRIMARY KEY, name text NOT NULL UNIQUE)",
            )
            .sql(
                "0002_apis.sql",
                "CREATE TABLE apis (id serial PRIMARY KEY, tenant int REFERENCES tenants, path text)",
            );
        // A service's suite calls `TestDatabases::from_env(migrations)`, which fails loudly
        // (never skips) when STOA_TEST_DATABASE_URL / DATABASE_URL is unset; this suite
        // follows the repository's convention instead: the variable, else the local server.
        TestDatabases::new(&stoa_backup_test_support::test_database_url(), migrations)
            .await
            .expect("test PostgreSQL")
    })
    .await
}

#[tokio::test]
async fn a_tenant_gets_an_api() {
    let db = pool().await.checkout().await.unwrap();
    let client = db.connect().await.unwrap();
    client
        .execute("INSERT INTO tenants (name) VALUES ('acme')", &[])
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO apis (tenant, path) VALUES (1, '/weather')",
            &[],
        )
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM apis", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn another_test_sees_none_of_it() {
    let db = pool().await.checkout().await.unwrap();
    let client = db.connect().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn seeded_data_is_put_back_by_the_guard() {
    let db = pool().await.checkout().await.unwrap();
    let seed = db.connect().await.unwrap();
    seed.execute("INSERT INTO tenants (name) VALUES ('seeded')", &[])
        .await
        .unwrap();
    drop(seed);
    {
        let _guard = PgSnapshot::take(db.url(), db.name()).await.unwrap().guard();
        let client = db.connect().await.unwrap();
        client.execute("DELETE FROM tenants", &[]).await.unwrap();
        // The client is still open here: the guard terminates it and restores.
    }
    let client = db.connect().await.unwrap();
    let names: Vec<String> = client
        .query("SELECT name FROM tenants", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, vec!["seeded".to_string()]);
}
