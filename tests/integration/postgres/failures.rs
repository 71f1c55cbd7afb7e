//! PostgreSQL provider failure modes: each gives a clear error of the right kind and, when
//! it happens in a pipeline run, no complete run is recorded.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use super::pg;
use crate::restore_support::restore_component;
use async_trait::async_trait;
use futures::StreamExt;
use stoa_backup::core::error::Error;
use stoa_backup::core::manifest::VerifyMethod;
use stoa_backup::core::sink::{ObjectMeta, PutResult};
use stoa_backup::core::stream::ByteStream;
use stoa_backup::core::{
    Catalog, ErrorKind, ExistingDataPolicy, Keyring, MemorySink, ObjectKey, Pipeline, RunFilter,
    RunReport, Sink, Source, Verifier, VerifyContext, ZstdCodec,
};
use stoa_backup::providers::postgres::{
    PgArchiveVerifier, PgConnection, PostgresRestorer, PostgresSource, RestoreTarget,
};
use stoa_backup_test_support::{test_database_url, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::NoTls;

async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to test database");
    tokio::spawn(conn);
    c
}

fn server() -> PgConnection {
    PgConnection::from_url(&test_database_url()).unwrap()
}

/// A database with enough data (a few MB of dump) to be cut in the middle.
async fn filled_database(prefix: &str) -> TestDatabase {
    let db = TestDatabase::create(prefix).await;
    client(db.url())
        .await
        .batch_execute(
            "CREATE SCHEMA stoa;
             CREATE TABLE stoa.events (id bigint PRIMARY KEY, tenant text, payload jsonb);
             INSERT INTO stoa.events SELECT g, 'tenant-' || (g % 97) || '-ü',
                 jsonb_build_object('n', g, 'text', repeat(md5(g::text), 4))
             FROM generate_series(1, 30000) g;",
        )
        .await
        .unwrap();
    db
}

/// An unused local port (bound, then released).
fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Runs a pipeline of one source into `sink` and returns the report.
async fn run(source: PostgresSource, sink: Arc<dyn Sink>) -> RunReport {
    Pipeline::builder()
        .source(source)
        .sink(sink)
        .compression(ZstdCodec::new(3).unwrap())
        .verifier(PgArchiveVerifier::new())
        .attempts(1)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
}

/// No complete run in the catalog, and no artifact bytes left in the sink.
async fn assert_no_complete_run(report: &RunReport, sink: Arc<dyn Sink>) {
    assert!(!report.is_complete(), "{report:?}");
    let catalog = Catalog::new(sink.clone());
    assert!(catalog
        .list_runs(&RunFilter::default())
        .await
        .unwrap()
        .is_empty());
    assert!(catalog.latest_verified("postgres").await.unwrap().is_none());
    let objects: Vec<String> = sink
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect();
    assert!(
        objects.iter().all(|k| k.ends_with("report.json")),
        "{objects:?}"
    );
}

fn failure_text(report: &RunReport) -> String {
    report
        .manifest
        .failures
        .iter()
        .map(|f| f.error.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn unreachable_server_is_unavailable_with_host_and_port() {
    let port = unused_port();
    let conn = pg(format!(
        "postgres://postgres:pw-never-shown@127.0.0.1:{port}/stoa"
    ));
    let source = PostgresSource::builder(conn.connect_timeout(Duration::from_secs(2)))
        .build()
        .unwrap();
    let err = source.preflight().await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("[postgres]"), "{msg}");
    assert!(err.hint().unwrap().contains("server is running"), "{msg}");
    assert!(!msg.contains("pw-never-shown"), "{msg}");

    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = run(source, sink.clone()).await;
    assert!(
        failure_text(&report).contains("cannot reach PostgreSQL"),
        "{}",
        failure_text(&report)
    );
    assert_no_complete_run(&report, sink).await;
}

/// A minimal PostgreSQL wire-protocol server that asks for a cleartext password and
/// refuses it with SQLSTATE 28P01, like a server with `password`/`scram` auth in pg_hba.
async fn fake_password_server() -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let Ok((mut sock, _)) = listener.accept().await else {
                break;
            };
            loop {
                let len = sock.read_i32().await.unwrap() as usize;
                let mut body = vec![0u8; len - 4];
                sock.read_exact(&mut body).await.unwrap();
                let code = i32::from_be_bytes(body[..4].try_into().unwrap());
                if code == 80877103 {
                    sock.write_all(b"N").await.unwrap(); // no TLS
                    continue;
                }
                break; // startup message
            }
            // AuthenticationCleartextPassword
            sock.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])
                .await
                .unwrap();
            let mut tag = [0u8; 1];
            if sock.read_exact(&mut tag).await.is_err() {
                seen.push("<closed>".to_string());
                continue;
            }
            let len = sock.read_i32().await.unwrap() as usize;
            let mut pw = vec![0u8; len - 4];
            sock.read_exact(&mut pw).await.unwrap();
            seen.push(
                String::from_utf8_lossy(&pw)
                    .trim_end_matches('\0')
                    .to_string(),
            );
            let mut fields = Vec::new();
            for (t, v) in [
                (b'S', "FATAL"),
                (b'V', "FATAL"),
                (b'C', "28P01"),
                (b'M', "password authentication failed for user \"backup\""),
            ] {
                fields.push(t);
                fields.extend_from_slice(v.as_bytes());
                fields.push(0);
            }
            fields.push(0);
            let mut msg = vec![b'E'];
            msg.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
            msg.extend_from_slice(&fields);
            sock.write_all(&msg).await.unwrap();
        }
        seen
    });
    (port, task)
}

#[tokio::test]
async fn bad_password_is_unauthenticated_and_never_echoed() {
    // The local server trusts 127.0.0.1 (pg_hba `trust`), so any password works there; the
    // refusal is played by a wire-protocol fake speaking to the real client library.
    let (port, server_task) = fake_password_server().await;
    let source = PostgresSource::builder(pg(format!(
        "postgres://backup:Wr0ng-Passw0rd@127.0.0.1:{port}/stoa"
    )))
    .build()
    .unwrap();
    let err = source.preflight().await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(msg.contains("'backup'"), "{msg}");
    assert!(!msg.contains("Wr0ng-Passw0rd"), "{msg}");
    assert!(err.hint().unwrap().contains("password"), "{msg}");

    // No password configured at all, and the server asks for one.
    let source = PostgresSource::builder(pg(format!("postgres://backup@127.0.0.1:{port}/stoa")))
        .build()
        .unwrap();
    let err = source.preflight().await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.to_string().contains("none is configured"), "{err}");
    let seen = server_task.await.unwrap();
    assert_eq!(
        seen[0], "Wr0ng-Passw0rd",
        "the password went over the wire, not anywhere else"
    );
}

/// A configured password never reaches the logs at TRACE level: not through a backup with
/// the archive check, a restore into a new database, nor a refused login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_never_in_trace_output() {
    let capture = stoa_backup_test_support::trace::TraceCapture::install();
    let password = "pg-Passw0rd-must-not-be-logged";
    let db = filled_database("pgtrace").await;
    // The local server trusts loopback, so any password is accepted and still travels.
    let conn = server().password(password);
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(
            PostgresSource::builder(conn.with_dbname(db.name()))
                .database(db.name())
                .build()
                .unwrap(),
        )
        .sink(sink.clone())
        .compression(ZstdCodec::default())
        .verifier(PgArchiveVerifier::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete(), "{}", failure_text(&report));
    let target = format!("{}_r", db.name());
    let restorer = PostgresRestorer::new(
        conn.clone(),
        RestoreTarget::NewDatabase {
            name: target.clone(),
            swap: false,
        },
    );
    restore_component(
        sink.clone(),
        &report.manifest,
        &Keyring::default(),
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    client(&test_database_url())
        .await
        .batch_execute(&format!("DROP DATABASE \"{target}\" WITH (FORCE)"))
        .await
        .unwrap();
    db.drop_db().await;

    let (port, server_task) = fake_password_server().await;
    let refused = PostgresSource::builder(pg(format!(
        "postgres://backup:{password}@127.0.0.1:{port}/stoa"
    )))
    .build()
    .unwrap();
    assert_eq!(
        refused.preflight().await.unwrap_err().kind(),
        ErrorKind::Unauthenticated
    );
    server_task.abort();
    capture.assert_free_of(&[password]);
}

#[tokio::test]
async fn missing_database_is_not_found() {
    let missing = "stoa_does_not_exist_4711";
    let url = test_database_url();
    // Connecting to it.
    let source = PostgresSource::builder(pg(&url))
        .database(missing)
        .build()
        .unwrap();
    let err = source.preflight().await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("database '{missing}' does not exist")),
        "{err}"
    );

    // Listed next to an existing one: preflight and discovery name it.
    let source = PostgresSource::builder(pg(&url))
        .databases(["postgres", missing])
        .build()
        .unwrap();
    let err = source.discover().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.hint().unwrap().contains("postgres"), "{err}");

    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = run(source, sink.clone()).await;
    assert!(
        failure_text(&report).contains("does not exist"),
        "{}",
        failure_text(&report)
    );
    assert_no_complete_run(&report, sink).await;
}

#[tokio::test]
async fn missing_pg_dump_is_a_config_error_saying_what_to_install() {
    let db = TestDatabase::create("pgfail_nodump").await;
    let source = PostgresSource::builder(pg(db.url()))
        .pg_dump_path("/nonexistent/bin/pg_dump")
        .build()
        .unwrap();
    let err = source.preflight().await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("/nonexistent/bin/pg_dump"),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("install"), "{err}");

    // Even without preflight, the export fails the same way and nothing is kept.
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(source)
        .sink(sink.clone())
        .skip_preflight(true)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(
        failure_text(&report).contains("/nonexistent/bin/pg_dump"),
        "{}",
        failure_text(&report)
    );
    assert_no_complete_run(&report, sink).await;
    db.drop_db().await;
}

fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn pg_dump_older_than_the_server_is_refused() {
    let db = TestDatabase::create("pgfail_olddump").await;
    let tmp = tempfile::tempdir().unwrap();
    let fake = script(tmp.path(), "pg_dump", "echo 'pg_dump (PostgreSQL) 11.22'");
    let source = PostgresSource::builder(pg(db.url()))
        .pg_dump_path(&fake)
        .build()
        .unwrap();
    let err = source.preflight().await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string()
            .contains("pg_dump 11 is older than server 15: install postgresql-client-15"),
        "{err}"
    );

    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = run(source, sink.clone()).await;
    assert!(
        failure_text(&report).contains("older than server"),
        "{}",
        failure_text(&report)
    );
    assert_no_complete_run(&report, sink).await;
    db.drop_db().await;
}

/// A pg_dump whose output is cut short while it still exits 0 (a broken pipe wrapper, a
/// full disk on a spool between) is caught by the archive check that reads the dump as it
/// streams, before any manifest: the full read (a walk of the blocks) fails on the missing
/// data blocks.
#[tokio::test]
async fn a_dump_cut_short_with_exit_status_0_fails_the_inline_archive_check() {
    let db = filled_database("pgfail_cutshort").await;
    let tmp = tempfile::tempdir().unwrap();
    // The header and table of contents fit in the first 16 KiB; the data does not.
    let fake = script(tmp.path(), "pg_dump", "pg_dump \"$@\" | head -c 16384");
    let source = PostgresSource::builder(pg(db.url()))
        .pg_dump_path(&fake)
        .build()
        .unwrap();
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = run(source, sink.clone()).await;
    assert!(!report.is_complete(), "{report:?}");
    let failure = &report.manifest.failures[0];
    assert_eq!(failure.operation, "verify", "{failure:?}");
    assert!(failure.error.contains("full read"), "{}", failure.error);
    let record = &report.manifest.artifacts[0];
    let archive = &record.verification[0];
    assert_eq!(archive.method, Some(VerifyMethod::Inline), "{archive:?}");
    assert!(!archive.ok);
    let catalog = Catalog::new(sink);
    assert!(catalog.latest_verified("postgres").await.unwrap().is_none());
    db.drop_db().await;
}

/// Connections to `db` other than our own probe.
async fn other_connections(db: &str) -> i64 {
    let c = client(&test_database_url()).await;
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        &[&db],
    )
    .await
    .unwrap()
    .get(0)
}

async fn wait_no_connections(db: &str) {
    for _ in 0..50 {
        if other_connections(db).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pg_dump or the snapshot connection is still connected to {db}");
}

#[tokio::test]
async fn pg_dump_killed_mid_stream_fails_the_artifact() {
    let db = filled_database("pgfail_killed").await;
    let tmp = tempfile::tempdir().unwrap();
    let wrapper = script(
        tmp.path(),
        "pg_dump",
        "if [ \"$1\" = \"--version\" ]; then exec pg_dump --version; fi\npg_dump \"$@\" | head -c 100000\nkill -9 $$",
    );
    let source = PostgresSource::builder(pg(db.url()))
        .pg_dump_path(&wrapper)
        .build()
        .unwrap();
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = run(source, sink.clone()).await;
    let text = failure_text(&report);
    eprintln!("{text}");
    assert!(text.contains("killed by signal 9"), "{text}");
    assert!(text.contains("[postgres]"), "{text}");
    assert_no_complete_run(&report, sink).await;
    wait_no_connections(db.name()).await;
    db.drop_db().await;
}

/// A sink whose disk fills up after `limit` bytes (ENOSPC), like a full PVC.
#[derive(Debug)]
struct FullDiskSink {
    inner: MemorySink,
    limit: usize,
}

#[async_trait]
impl Sink for FullDiskSink {
    fn describe(&self) -> String {
        "full-disk".into()
    }
    async fn preflight(&self) -> stoa_backup::core::Result<()> {
        Ok(())
    }
    async fn put(
        &self,
        key: &ObjectKey,
        mut stream: ByteStream,
    ) -> stoa_backup::core::Result<PutResult> {
        if key.as_str().ends_with(".json") {
            return self.inner.put(key, stream).await;
        }
        let mut written = 0;
        while let Some(chunk) = stream.next().await {
            written += chunk?.len();
            if written > self.limit {
                return Err(Error::from_io(
                    std::io::Error::from_raw_os_error(28),
                    "writing the artifact failed",
                )
                .with_component("storage/full-disk")
                .with_operation("put"));
            }
        }
        Err(Error::internal(
            "the test dump was expected to exceed the limit",
        ))
    }
    async fn get(&self, key: &ObjectKey) -> stoa_backup::core::Result<ByteStream> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> stoa_backup::core::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> stoa_backup::core::Result<()> {
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn full_disk_in_the_sink_fails_the_run_and_stops_pg_dump() {
    let db = filled_database("pgfail_disk").await;
    let source = PostgresSource::builder(pg(db.url())).build().unwrap();
    let sink: Arc<dyn Sink> = Arc::new(FullDiskSink {
        inner: MemorySink::new(),
        limit: 64 * 1024,
    });
    let report = run(source, sink.clone()).await;
    let text = failure_text(&report);
    eprintln!("{text}");
    assert!(text.contains("storage is full"), "{text}");
    assert_no_complete_run(&report, sink).await;
    // pg_dump was killed and the snapshot transaction closed.
    wait_no_connections(db.name()).await;
    db.drop_db().await;
}

#[tokio::test]
async fn truncated_or_corrupted_artifact_fails_restore_and_leaves_nothing_live() {
    let db = filled_database("pgfail_damaged").await;
    let memory = MemorySink::new();
    let sink: Arc<dyn Sink> = Arc::new(memory.clone());
    let report = run(
        PostgresSource::builder(pg(db.url())).build().unwrap(),
        sink.clone(),
    )
    .await;
    assert!(report.is_complete(), "{:?}", report.manifest.failures);
    let a = report.manifest.artifacts[0].clone();
    let good = stoa_backup::core::stream::collect(sink.get(&a.key).await.unwrap())
        .await
        .unwrap();

    let live = TestDatabase::create("pgfail_damaged_live").await;
    client(live.url())
        .await
        .batch_execute("CREATE TABLE precious (x int); INSERT INTO precious VALUES (42);")
        .await
        .unwrap();
    let run_part = report
        .run_id
        .as_str()
        .to_ascii_lowercase()
        .replace('-', "_");

    let truncated = good[..good.len() * 40 / 100].to_vec();
    let mut corrupted = good.clone();
    let mid = corrupted.len() / 2;
    for b in &mut corrupted[mid..mid + 64] {
        *b ^= 0x5a;
    }
    for (what, bytes) in [("truncated", truncated), ("corrupted", corrupted)] {
        memory.overwrite_raw(&a.key, bytes.into()).await;

        // The archive verifier reports it (a failed check, not an error).
        let ctx = VerifyContext {
            sink: sink.as_ref(),
            artifact: &a,
            keyring: &Keyring::default(),
        };
        let v = PgArchiveVerifier::new().verify(&ctx).await.unwrap();
        assert!(!v.ok, "{what}: {v:?}");

        // Restoring it as a swap over the live database fails and leaves the live one as it was.
        let restorer = PostgresRestorer::new(
            server(),
            RestoreTarget::NewDatabase {
                name: live.name().to_string(),
                swap: true,
            },
        );
        let err = restore_component(
            sink.clone(),
            &report.manifest,
            &Keyring::default(),
            restorer,
            ExistingDataPolicy::Fail,
            false,
        )
        .await
        .unwrap_err();
        eprintln!("{what}: {err}");
        assert_eq!(err.kind(), ErrorKind::Integrity, "{what}: {err}");
        assert!(err.hint().is_some(), "{what}: {err}");
        let n: i64 = client(live.url())
            .await
            .query_one("SELECT x FROM precious", &[])
            .await
            .unwrap()
            .get::<_, i32>(0)
            .into();
        assert_eq!(n, 42, "{what}: the live database is untouched");
        let c = client(&test_database_url()).await;
        let staged: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
                &[&format!("%{run_part}")],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(staged, 0, "{what}: no staging or old database left");

        // A plain new-database restore leaves no database behind either.
        let target = format!("{}_new", &live.name()[..live.name().len().min(50)]);
        let restorer = PostgresRestorer::new(
            server(),
            RestoreTarget::NewDatabase {
                name: target.clone(),
                swap: false,
            },
        );
        let err = restore_component(
            sink.clone(),
            &report.manifest,
            &Keyring::default(),
            restorer,
            ExistingDataPolicy::Fail,
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "{what}: {err}");
        let exists = !c
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
            .await
            .unwrap()
            .is_empty();
        assert!(!exists, "{what}: the half-restored database was dropped");
    }
    live.drop_db().await;
    db.drop_db().await;
}

#[tokio::test]
async fn pg_restore_failure_is_a_restore_error_and_drops_the_new_database() {
    // A dump whose restore fails in pg_restore itself (not in our integrity checks): it
    // needs a schema the target cannot create because a conflicting extension object is
    // missing. Simulated by a pg_restore wrapper that exits non-zero after partial work.
    let db = filled_database("pgfail_pgrestore").await;
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = run(
        PostgresSource::builder(pg(db.url())).build().unwrap(),
        sink.clone(),
    )
    .await;
    assert!(report.is_complete());
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("{}_x", db.name());
    let restorer = restorer_with_pg_restore(
        tmp.path(),
        "pg_restore \"$@\"\necho 'pg_restore: error: simulated failure' >&2\nexit 1",
        &target,
    );
    let err = restore_component(
        sink.clone(),
        &report.manifest,
        &Keyring::default(),
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.kind(), ErrorKind::Restore, "{err}");
    assert!(err.to_string().contains("simulated failure"), "{err}");
    assert_no_database(&target).await;
    db.drop_db().await;
}

/// A restorer into the new database `target` whose pg_restore is the shell script `body`.
fn restorer_with_pg_restore(dir: &std::path::Path, body: &str, target: &str) -> PostgresRestorer {
    PostgresRestorer::new(
        server(),
        RestoreTarget::NewDatabase {
            name: target.to_string(),
            swap: false,
        },
    )
    .pg_restore_path(script(dir, "pg_restore", body))
}

async fn assert_no_database(name: &str) {
    let c = client(&test_database_url()).await;
    assert!(
        c.query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .unwrap()
            .is_empty(),
        "database {name} was left behind"
    );
}

/// pg_restore may give up on a damaged archive before reading it to the end, where the
/// digest check would have spoken: the damage is still what gets reported.
#[tokio::test]
async fn damage_is_reported_even_when_pg_restore_stops_reading_first() {
    let db = filled_database("pgfail_early").await;
    let memory = MemorySink::new();
    let sink: Arc<dyn Sink> = Arc::new(memory.clone());
    let report = run(
        PostgresSource::builder(pg(db.url())).build().unwrap(),
        sink.clone(),
    )
    .await;
    assert!(report.is_complete());
    let a = report.manifest.artifacts[0].clone();
    let good = stoa_backup::core::stream::collect(sink.get(&a.key).await.unwrap())
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("{}_x", db.name());
    // Reads nothing and fails, like pg_restore meeting a garbled length field.
    let restorer = restorer_with_pg_restore(
        tmp.path(),
        "echo 'pg_restore: error: out of memory' >&2\nexit 1",
        &target,
    );
    let keyring = Keyring::default();
    let restore = || {
        restore_component(
            sink.clone(),
            &report.manifest,
            &keyring,
            restorer.clone(),
            ExistingDataPolicy::Fail,
            false,
        )
    };

    // Intact artifact: pg_restore's own failure is reported.
    let err = restore().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Restore, "{err}");
    assert!(err.to_string().contains("out of memory"), "{err}");

    // Damaged in its last part: the integrity error wins.
    let mut damaged = good.clone();
    let n = damaged.len();
    damaged[n - 10] ^= 0xff;
    memory.overwrite_raw(&a.key, damaged.into()).await;
    let err = restore().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.hint().is_some(), "{err}");
    assert_no_database(&target).await;
    db.drop_db().await;
}
