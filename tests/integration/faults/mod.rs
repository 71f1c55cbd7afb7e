//! Fault injection on real PostgreSQL backups (issue #12).
//!
//! `kill`: a real backup process — this test binary re-run as a child ([`child`]), running a
//! real pipeline (PostgresSource with the real pg_dump, LocalSink, zstd, the checksum and
//! pg_restore archive verifiers) — is killed with SIGKILL at one point of its run: during the
//! dump, while pg_dump waits on a table lock, after the artifact's rename into place, during
//! verification, during the manifest write ([`hooks`] pauses it there). Then a backup and a retention pass run in-process, and
//! [`checks`] holds the sink to what a crash may leave: no run that looks complete without
//! its data, no change to the previous complete run, no child process outliving the killed
//! one, no stale temporary file.
//!
//! `damaged`: one old manifest is damaged (not JSON, truncated, a newer format); listing,
//! restoring a newer run into a fresh database, backing up and retention keep working, and
//! the damaged run is reported as damaged.

mod checks;
mod child;
mod damaged;
mod hooks;
mod kill;

use std::path::Path;
use std::sync::Arc;

use chrono::Duration;
use stoa_backup::core::{
    ChecksumVerifier, KeepRules, Observer, Pipeline, RunReport, Sink, ZstdCodec,
};
use stoa_backup::providers::postgres::{PgArchiveVerifier, PgConnection, PostgresSource};
use stoa_backup::storage::LocalSink;
use stoa_backup_test_support::TestDatabase;
use tokio_postgres::NoTls;

/// The tables of a fault-test database, with their row counts.
const TABLES: [&str; 2] = ["faults.tenants", "faults.events"];

/// A database `<prefix>_<random>` with `events` rows of ~300 bytes of hex each (zstd halves
/// them, no more), so that a dump of 20,000 rows is several MB: enough that pg_dump is still
/// writing when the sink has taken the first part of the stream.
async fn fault_database(prefix: &str, events: u32) -> TestDatabase {
    let db = TestDatabase::create(prefix).await;
    client(db.url())
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA faults;
             CREATE TABLE faults.tenants (id int PRIMARY KEY, name text NOT NULL);
             CREATE TABLE faults.events (
                 id bigint PRIMARY KEY,
                 tenant_id int NOT NULL REFERENCES faults.tenants (id),
                 payload text NOT NULL
             );
             INSERT INTO faults.tenants SELECT g, 'tenant-' || g FROM generate_series(1, 40) g;
             INSERT INTO faults.events
                 SELECT g, 1 + g % 40, md5(g::text) || md5((g * 3)::text) || md5((g * 5)::text)
                     || md5((g * 7)::text) || md5((g * 11)::text) || md5((g * 13)::text)
                     || md5((g * 17)::text) || md5((g * 19)::text) || md5((g * 23)::text)
                 FROM generate_series(1, {events}) g;"
        ))
        .await
        .expect("fill the fault-test database");
    db
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(conn);
    c
}

/// `count(*)` of every table of [`TABLES`] in the database at `url`.
async fn row_counts(url: &str) -> Vec<(String, i64)> {
    let c = client(url).await;
    let mut out = Vec::new();
    for t in TABLES {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .unwrap_or_else(|e| panic!("count the rows of {t}: {e}"))
            .get(0);
        out.push((t.to_string(), n));
    }
    out
}

/// A local sink at `root`, created first: the sink is given an existing directory, as a
/// mounted volume would be.
fn local_sink(root: &Path) -> Arc<dyn Sink> {
    std::fs::create_dir_all(root).expect("create the sink's root");
    Arc::new(LocalSink::new(root).expect("a local sink"))
}

/// Retention of every run of these tests: the two newest complete runs are kept, and runs
/// that did not complete are forgotten at once (they were killed: nothing is still running).
fn retention() -> KeepRules {
    KeepRules::new()
        .keep_last(2)
        .incomplete_grace(Duration::zero())
}

/// The backup every run of these tests makes — the killed child's and the parent's alike:
/// the database at `database_url` with the real pg_dump into `sink`, zstd-compressed,
/// checked by the checksum verifier and the pg_restore archive verifier (inline, on the dump
/// as it streams, unless `inline` is off: then it reads the stored dump back), with
/// [`retention`] applied after a complete run. One attempt: a retry would hide a fault.
fn pipeline(
    database_url: &str,
    sink: Arc<dyn Sink>,
    observer: Arc<dyn Observer>,
    retention: KeepRules,
    inline: bool,
) -> Pipeline {
    let source = PostgresSource::builder(PgConnection::from_url(database_url).expect("a URL"))
        .build()
        .expect("a PostgreSQL source");
    Pipeline::builder()
        .source(source)
        .sink(sink)
        // No zstd worker threads: they take in megabytes before the first compressed byte,
        // and the kill points "during the dump" need pg_dump still running when the sink
        // has the first 64 KiB of this small dump.
        .compression(ZstdCodec::default().workers(0))
        .verifier(ChecksumVerifier::new())
        // Every data block read by a pg_restore of its own (not walked in process): the
        // kill tests check that this child process, running beside pg_dump, dies with the
        // run too.
        .verifier(PgArchiveVerifier::new().full_read_by_pg_restore(true))
        .inline_verification(inline)
        .retention(retention)
        .apply_retention(true)
        .observer(observer)
        .attempts(1)
        .build()
        .expect("a pipeline")
}

/// Runs [`pipeline`] in this process and returns its report, which must be a success: the
/// backup complete and its retention applied without error.
async fn complete_backup(
    database_url: &str,
    sink: Arc<dyn Sink>,
    retention: KeepRules,
) -> RunReport {
    let report = pipeline(
        database_url,
        sink,
        Arc::new(stoa_backup::core::NoopObserver),
        retention,
        true,
    )
    .run()
    .await
    .expect("the backup runs");
    report
        .into_result()
        .unwrap_or_else(|e| panic!("the backup or its retention failed: {e}"))
}
