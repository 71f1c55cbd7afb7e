//! Helpers of the restore-safety tests: small databases, backups into a local directory, and
//! what the server says about a database (exists, accepts connections, who locks it).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use stoa_backup::core::{
    ExistingDataPolicy, Keyring, Manifest, Pipeline, RestoreReport, Result, Sink, ZstdCodec,
};
use stoa_backup::providers::postgres::{
    PgArchiveVerifier, PgConnection, PostgresRestorer, PostgresSource, RestoreTarget,
};
use stoa_backup::storage::LocalSink;
use stoa_backup_test_support::{test_database_url, TestDatabase};
use tokio_postgres::NoTls;

use super::pg;
use crate::restore_support::restore_component;

pub(super) async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    c
}

/// A client of the server's admin database.
pub(super) async fn admin() -> tokio_postgres::Client {
    client(&test_database_url()).await
}

pub(super) fn server() -> PgConnection {
    PgConnection::from_url(&test_database_url()).unwrap()
}

pub(super) fn url_for(db: &str) -> String {
    let c = server();
    format!(
        "postgres://{}@{}:{}/{}",
        c.get_user(),
        c.get_host(),
        c.get_port(),
        db
    )
}

/// A database holding `rows` rows in `t_<tag>`, so that restored databases can be told apart.
pub(super) async fn tagged_database(prefix: &str, tag: &str, rows: i64) -> TestDatabase {
    let db = TestDatabase::create(prefix).await;
    client(db.url())
        .await
        .batch_execute(&format!(
            "CREATE TABLE t_{tag} (id bigint PRIMARY KEY, note text);
             INSERT INTO t_{tag} SELECT g, 'row ' || g FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
    db
}

/// Sets the row count of `t_<tag>` in `db` to `rows`.
pub(super) async fn set_rows(db: &TestDatabase, tag: &str, rows: i64) {
    client(db.url())
        .await
        .batch_execute(&format!(
            "DELETE FROM t_{tag};
             INSERT INTO t_{tag} SELECT g, 'row ' || g FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
}

/// Backs `db` up into the local directory `dir` (verified with pg_restore) and returns the
/// run's manifest.
pub(super) async fn backup_into(dir: &Path, db: &TestDatabase) -> Manifest {
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(dir).unwrap());
    let report = Pipeline::builder()
        .source(PostgresSource::builder(pg(db.url())).build().unwrap())
        .sink(sink)
        .compression(ZstdCodec::new(1).unwrap())
        .verifier(PgArchiveVerifier::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.manifest.failures);
    report.manifest
}

/// `datallowconn` of a database, `None` when there is no database of that name.
pub(super) async fn allows_connections(name: &str) -> Option<bool> {
    admin()
        .await
        .query_opt(
            "SELECT datallowconn FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// The oid of a database (which a rename keeps), `None` when there is none of that name.
pub(super) async fn database_oid(name: &str) -> Option<u32> {
    admin()
        .await
        .query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// Names of the databases starting with `prefix`.
pub(super) async fn databases_like(prefix: &str) -> Vec<String> {
    admin()
        .await
        .query(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Comments on the databases starting with `prefix`, as (database, comment).
pub(super) async fn database_comments(prefix: &str) -> Vec<(String, String)> {
    admin()
        .await
        .query(
            "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
             WHERE starts_with(datname, $1) AND shobj_description(oid, 'pg_database') IS NOT NULL",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Rows of `t_<tag>` in `db`, connecting to it (so it must accept connections).
pub(super) async fn rows_in(db: &str, tag: &str) -> i64 {
    client(&url_for(db))
        .await
        .query_one(&format!("SELECT count(*) FROM t_{tag}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// A session of the admin database holding a lock on the database object of `db` (as any
/// `COMMENT ON DATABASE`, `GRANT … ON DATABASE` or `ALTER DATABASE … RENAME` in an open
/// transaction does) until [`LockHolder::release`].
pub(super) struct LockHolder {
    client: tokio_postgres::Client,
    pub(super) pid: i32,
}

impl LockHolder {
    pub(super) async fn hold(db: &str) -> LockHolder {
        let client = admin().await;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        client
            .batch_execute(&format!(
                "BEGIN; COMMENT ON DATABASE \"{db}\" IS 'locked by a test'"
            ))
            .await
            .unwrap();
        LockHolder { client, pid }
    }

    pub(super) async fn release(self) {
        self.client.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// Sessions waiting for a lock on the database object of `db`.
pub(super) async fn waiting_on(db: &str) -> Vec<i32> {
    admin()
        .await
        .query(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.objid \
             WHERE l.locktype = 'object' AND l.classid = 'pg_database'::regclass \
               AND d.datname = $1 AND NOT l.granted",
            &[&db],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits until no session has process id `pid` (its transaction is over).
pub(super) async fn wait_gone(pid: i32) {
    for _ in 0..300 {
        let alive = admin()
            .await
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .is_some();
        if !alive {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("session {pid} is still there after 30 s");
}

/// Drops every database whose name starts with `prefix` (a test's live, old and staging
/// databases), whatever state the test left them in.
pub(super) async fn drop_all_like(prefix: &str) {
    let c = admin().await;
    for name in databases_like(prefix).await {
        c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
}

/// Drops every database starting with its prefix when dropped, also when the test panics
/// (on a thread with its own runtime: Drop may run inside a runtime).
pub(super) struct DropAllLike(pub(super) String);

impl Drop for DropAllLike {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(drop_all_like(&prefix))
        })
        .join();
        if done.is_err() {
            eprintln!(
                "warning: could not drop the databases starting with {}",
                self.0
            );
        }
    }
}

pub(super) fn swap_restorer(live: &str) -> PostgresRestorer {
    PostgresRestorer::new(
        server(),
        RestoreTarget::NewDatabase {
            name: live.to_string(),
            swap: true,
        },
    )
}

/// Restores the run `manifest` describes (out of `dir`) with `restorer`: planned, then
/// applied.
pub(super) async fn restore(
    dir: &Path,
    manifest: &Manifest,
    restorer: &PostgresRestorer,
) -> Result<RestoreReport> {
    restore_with(dir, manifest, restorer, false).await
}

/// A dry run of [`restore`]: the plan only.
pub(super) async fn dry_run(
    dir: &Path,
    manifest: &Manifest,
    restorer: &PostgresRestorer,
) -> RestoreReport {
    restore_with(dir, manifest, restorer, true).await.unwrap()
}

async fn restore_with(
    dir: &Path,
    manifest: &Manifest,
    restorer: &PostgresRestorer,
    dry_run: bool,
) -> Result<RestoreReport> {
    restore_component(
        Arc::new(LocalSink::new(dir).unwrap()),
        manifest,
        &Keyring::default(),
        restorer.clone(),
        ExistingDataPolicy::Fail,
        dry_run,
    )
    .await
}

/// Live `t_live` (3 rows), source `t_src` (`rows` rows) backed up into a local directory.
pub(super) struct Scenario {
    /// Drops the live, old and staging databases, whatever the test left (declared first:
    /// dropped first, before the live database's own guard).
    _databases: DropAllLike,
    pub(super) live: TestDatabase,
    pub(super) src: TestDatabase,
    pub(super) dir: tempfile::TempDir,
    pub(super) manifest: Manifest,
    /// The oid of the live database as created (a rename keeps it).
    pub(super) live_oid: u32,
}

impl Scenario {
    pub(super) async fn new(tag: &str, rows: i64) -> Scenario {
        let src = tagged_database(&format!("{tag}_s"), "src", rows).await;
        let live = tagged_database(&format!("{tag}_l"), "live", 3).await;
        let dir = tempfile::tempdir().unwrap();
        let manifest = backup_into(dir.path(), &src).await;
        let live_oid = database_oid(live.name()).await.unwrap();
        Scenario {
            _databases: DropAllLike(live.name().to_string()),
            live,
            src,
            dir,
            manifest,
            live_oid,
        }
    }

    pub(super) fn live(&self) -> &str {
        self.live.name()
    }

    pub(super) async fn cleanup(self) {
        drop_all_like(self.live.name()).await;
    }
}
