//! Our side of the comparison: the quickstart's backup pipeline and the restorer, each run
//! in a fresh child process (this binary, re-executed) so its peak RSS is its own.
//!
//! A job is one line of words: `backup local <db>`, `backup s3 <db>` or
//! `restore <jobs> <source db> <target db>`; the directories come in the environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stoa_backup::prelude::*;

use crate::support;

/// The local sink's directory (backups) or the one to restore from.
const SINK_ENV: &str = "STOA_BENCH_SINK";
/// Where a parallel restore spools the decoded dump.
const SPOOL_ENV: &str = "STOA_BENCH_SPOOL";

/// Parent side: runs `job` in a child process (which inherits the settings).
pub fn measure(job: &str, sink_dir: &Path, spool_dir: &Path) -> support::Measured {
    support::measure_in_child(
        job,
        &[
            (SINK_ENV, sink_dir.as_os_str()),
            (SPOOL_ENV, spool_dir.as_os_str()),
        ],
    )
}

/// Child side: runs the job, then prints its notes and figures for the parent.
pub fn child_main(job: &str) {
    let words: Vec<&str> = job.split_whitespace().collect();
    let conn = PgConnection::from_url(&database_url()).expect("benchmark database URL");
    let sink_dir = PathBuf::from(std::env::var_os(SINK_ENV).expect("STOA_BENCH_SINK"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (wall, stored, notes) = rt.block_on(async {
        match words.as_slice() {
            ["backup", "local", db] => {
                let sink = LocalSink::builder(&sink_dir).create_root(true).build();
                backup(&conn, db, Arc::new(sink.expect("the local sink"))).await
            }
            ["backup", "s3", db] => {
                let (sink, _server) = s3_sink().await;
                backup(&conn, db, sink).await
            }
            ["restore", jobs, source, target] => {
                let jobs = jobs.parse().expect("a number of restore jobs");
                let spool = PathBuf::from(std::env::var_os(SPOOL_ENV).expect("STOA_BENCH_SPOOL"));
                restore(&conn, &sink_dir, source, target, jobs, &spool).await
            }
            _ => panic!("unknown benchmark job {job:?}"),
        }
    });
    drop(rt);
    for line in &notes {
        support::note(line);
    }
    support::report(wall, stored);
}

/// `STOA_BENCH_DATABASE_URL`, else `STOA_TEST_DATABASE_URL`, else the local server.
pub fn database_url() -> String {
    std::env::var("STOA_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("STOA_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The quickstart's pipeline (examples/quickstart.rs): exact row counts, default zstd, the
/// archive verifier, the seed's retention applied. Returns the wall time of the run, the
/// bytes stored and what the manifest says was stored and checked.
async fn backup(
    conn: &PgConnection,
    db: &str,
    sink: Arc<dyn Sink>,
) -> (Duration, u64, Vec<String>) {
    // STOA_BENCH_EXACT_COUNTS=0 measures what the default exact row counts cost.
    let counts = std::env::var("STOA_BENCH_EXACT_COUNTS").as_deref() != Ok("0");
    let source = PostgresSource::builder(conn.with_dbname(db))
        .database(db)
        .exact_row_counts(counts)
        .build()
        .expect("the PostgreSQL source");
    let retention = KeepRules::new()
        .keep_daily(KeepCount::Last(30))
        .keep_within(chrono::Duration::days(30));
    let pipeline = Pipeline::builder()
        .source(source)
        .sink(sink)
        .compression(zstd())
        .verifier(PgArchiveVerifier::new())
        .retention(retention)
        .apply_retention(true)
        .build()
        .expect("the pipeline");
    let t0 = Instant::now();
    let report = pipeline.run().await.expect("the backup run");
    let wall = t0.elapsed();
    let report = report
        .into_result()
        .expect("a complete run, retention applied");
    let artifacts = &report.manifest.artifacts;
    let mut notes = Vec::new();
    for a in artifacts {
        notes.push(format!(
            "{}: {:.1} MiB plain, {:.1} MiB stored",
            a.name,
            mib(a.plain_size),
            mib(a.stored_size),
        ));
        if let Some(t) = &a.timings {
            notes.push(format!(
                "  phases: dump {} ms, store {} ms, verify after store {} ms, total {} ms; {:.0} MiB/s plain",
                t.dump_ms,
                t.store_ms,
                t.verify_ms,
                t.total_ms,
                mib(t.plain_bytes_per_sec)
            ));
        }
        for v in &a.verification {
            let ok = if v.ok { "ok" } else { "FAILED" };
            let how = v.method.map(|m| m.to_string()).unwrap_or_default();
            let ms = v.duration_ms.unwrap_or_default();
            notes.push(format!(
                "  verified by {} ({ok}, {how}, {ms} ms after the store): {}",
                v.verifier, v.detail
            ));
        }
    }
    (wall, artifacts.iter().map(|a| a.stored_size).sum(), notes)
}

/// Restores the newest dump of `source` in the sink at `sink_dir` into the new database
/// `target` (the restorer creates it and checks the row counts, as by default).
async fn restore(
    conn: &PgConnection,
    sink_dir: &Path,
    source: &str,
    target: &str,
    jobs: u32,
    spool: &Path,
) -> (Duration, u64, Vec<String>) {
    let sink = Arc::new(LocalSink::new(sink_dir).expect("the sink of the backup case"));
    let found = find_dump(&Catalog::new(sink.clone()), &DumpQuery::database(source))
        .await
        .expect("a dump left by the local backup case");
    let into = RestoreTarget::NewDatabase {
        name: target.to_string(),
        swap: false,
    };
    let mut restorer = PostgresRestorer::new(conn.clone(), into);
    if jobs > 1 {
        restorer = restorer.jobs(jobs).spool_dir(spool);
    }
    // The dump's run through the driver, as an application restores: plan (no writes),
    // then apply; both are timed.
    let t0 = Instant::now();
    let restore = Restore::builder()
        .sink(sink)
        .restorer(restorer.from_database(source))
        .build()
        .expect("a restore");
    let plan = restore
        .plan(&found.manifest)
        .await
        .expect("the restore plan");
    let mut restored = restore.apply(&plan).await.expect("the restore");
    let wall = t0.elapsed();
    let report = restored.components.remove(0).report;
    let tables = report
        .facts
        .get("row_counts")
        .and_then(|v| v.as_object())
        .map_or(0, |m| m.len());
    let mut notes = vec![format!(
        "restored with {jobs} job(s); row counts of {tables} tables checked"
    )];
    if let Some(parallel) = report.facts.get("parallel") {
        notes.push(format!("parallel restore: {parallel}"));
    }
    (wall, 0, notes)
}

/// The default codec, or `STOA_BENCH_ZSTD_LEVEL` / `STOA_BENCH_ZSTD_WORKERS` to compare
/// settings on the same data.
fn zstd() -> ZstdCodec {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<i64>().ok());
    let mut codec = match env("STOA_BENCH_ZSTD_LEVEL") {
        Some(l) => ZstdCodec::new(l as i32).expect("STOA_BENCH_ZSTD_LEVEL: a zstd level"),
        None => ZstdCodec::default(),
    };
    if let Some(n) = env("STOA_BENCH_ZSTD_WORKERS") {
        codec = codec.workers(n as u32);
    }
    codec
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// An in-process s3s-fs server and a sink on it: the server's work and memory count in the
/// child, so its RSS is an upper bound for the sink alone.
#[cfg(feature = "s3")]
async fn s3_sink() -> (Arc<dyn Sink>, Box<dyn std::any::Any>) {
    let t = stoa_backup_test_support::s3::s3s_fs_target().await;
    let sink = S3Sink::builder(&t.bucket)
        .endpoint(&t.endpoint)
        .region(&t.region)
        .allow_http(true)
        .prefix("bench")
        .credentials(S3Credentials::new(&t.access_key, &t.secret_key))
        .build()
        .expect("the S3 sink");
    (Arc::new(sink), Box::new(t))
}

#[cfg(not(feature = "s3"))]
async fn s3_sink() -> (Arc<dyn Sink>, Box<dyn std::any::Any>) {
    unreachable!("the S3 case runs only with the s3 feature")
}
