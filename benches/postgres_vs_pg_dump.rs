//! PostgreSQL backup benchmark, run by hand (not in CI):
//!
//! ```sh
//! cargo bench --bench postgres_vs_pg_dump
//! STOA_BENCH_SIZES_MB=256,1024,2048 cargo bench --bench postgres_vs_pg_dump
//! ```
//!
//! For each database size it prints, side by side:
//! - `pg_dump -Fc -Z9 > file` — the documented method;
//! - `pg_dump -Fc -Z0 > file` — the ceiling (no compression at all);
//! - our pipeline: `pg_dump -Z0` → zstd(3) → sha256 → local sink, with the exact row counts
//!   of the default configuration (and once without them), and its peak RSS;
//! - with `--features s3`, the same pipeline into an in-process S3 server (s3s-fs);
//! - the archive check of the stored artifact (zstd decode → `pg_restore --list` and a full
//!   read of every data block, in one pass).
//!
//! Each pipeline run happens in a fresh child process (this binary, re-executed), so the
//! peak RSS printed is that run's own, not memory earlier runs left in the allocator.
//!
//! Targets (issue 3): pipeline ≥ 3× faster than `-Z9`, output ≤ 1.1× its size, peak RSS
//! under 64 MiB and flat as the database grows.
//!
//! Settings: `STOA_BENCH_DATABASE_URL` (default: `STOA_TEST_DATABASE_URL`, then
//! `postgres://postgres@127.0.0.1:5432/postgres`), `STOA_BENCH_SIZES_MB` (default
//! `256,1024`), `STOA_BENCH_REPEAT` (runs of our local pipeline per size, median reported;
//! default 3), `STOA_BENCH_DIR` (default `target/bench-postgres`), `STOA_BENCH_DROP=1` to
//! drop the generated databases afterwards (they are reused by later runs otherwise).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stoa_backup::core::{Catalog, Keyring, Pipeline, Sink, Verifier, VerifyContext, ZstdCodec};
use stoa_backup::providers::postgres::{PgArchiveVerifier, PgConnection, PostgresSource};
use stoa_backup::storage::LocalSink;

mod support;

const MIB: u64 = 1024 * 1024;

struct Row {
    method: &'static str,
    wall: Duration,
    bytes: u64,
    peak_rss: Option<u64>,
}

fn url() -> String {
    std::env::var("STOA_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("STOA_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

async fn client(conn: &PgConnection, db: &str) -> tokio_postgres::Client {
    conn.connect(db)
        .await
        .expect("connect to the benchmark server")
}

/// Creates (or reuses) a database of about `mb` MiB of STOA-like audit events.
async fn ensure_database(conn: &PgConnection, mb: u64) -> String {
    let name = format!("stoa_bench_{mb}mb");
    let admin = client(conn, conn.get_dbname()).await;
    let exists = !admin
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_empty();
    if exists {
        let c = client(conn, &name).await;
        let ready: bool = c
            .query_one("SELECT to_regclass('bench.done') IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0);
        if ready {
            return name;
        }
        drop(c);
        admin
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let c = client(conn, &name).await;
    c.batch_execute(
        "CREATE SCHEMA bench;
         CREATE TYPE bench.kind AS ENUM ('api.call', 'subscribe', 'login', 'révoquer');
         CREATE TABLE bench.events (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             tenant uuid NOT NULL,
             kind bench.kind NOT NULL,
             payload jsonb NOT NULL,
             body text NOT NULL,
             at timestamptz NOT NULL,
             amount numeric(12, 2) NOT NULL
         );",
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    let batch = 250_000i64;
    let mut start = 0i64;
    loop {
        let size: i64 = c
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .unwrap()
            .get(0);
        if size as u64 >= mb * MIB {
            break;
        }
        c.execute(
            "INSERT INTO bench.events (tenant, kind, payload, body, at, amount)
             SELECT md5((g % 500)::text)::uuid,
                    (ARRAY['api.call', 'subscribe', 'login', 'révoquer']::bench.kind[])[1 + g % 4],
                    jsonb_build_object('path', '/v1/apis/' || (g % 10000), 'status', 200 + (g % 5),
                                       'latency_ms', (g * 7) % 1000, 'ua', 'Mozilla/5.0 (X11; Linux)'),
                    'tenant ' || (g % 500) || ' called ' || md5(g::text) || ' — ok',
                    timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second',
                    (g % 100000) / 100.0
             FROM generate_series($1::bigint, $2::bigint) g",
            &[&start, &(start + batch - 1)],
        )
        .await
        .unwrap();
        start += batch;
    }
    c.batch_execute("ANALYZE; CREATE TABLE bench.done ();")
        .await
        .unwrap();
    eprintln!("generated {name} ({start} rows) in {:.1?}", t0.elapsed());
    name
}

async fn pg_dump_to_file(conn: &PgConnection, db: &str, level: u8, out: &Path) -> Row {
    let spec = conn.apply_env(stoa_backup::core::CommandSpec::new("pg_dump"));
    let file = std::fs::File::create(out).unwrap();
    let mut cmd = tokio::process::Command::new("pg_dump");
    cmd.args([
        "--format=custom",
        &format!("--compress={level}"),
        "--no-owner",
        "--no-privileges",
    ])
    .arg(format!("--dbname={}", conn.conninfo(db)))
    .stdout(file);
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let status = cmd.status().await.expect("run pg_dump");
    let wall = t0.elapsed();
    assert!(status.success(), "pg_dump failed");
    Row {
        method: if level == 0 {
            "pg_dump -Fc -Z0 > file (ceiling)"
        } else {
            "pg_dump -Fc -Z9 > file (documented)"
        },
        wall,
        bytes: std::fs::metadata(out).unwrap().len(),
        peak_rss: None,
    }
}

/// What one measured pipeline run does; each runs in a fresh child process (this binary,
/// re-executed) so its peak RSS is its own and not what earlier runs left in the allocator.
#[derive(Clone, Copy)]
enum Run {
    Local,
    LocalWithoutCounts,
    S3,
    /// The archive check (`pg_restore --list` + a full read) of the artifact the previous
    /// local run left in the sink directory.
    ArchiveCheck,
}

impl Run {
    fn label(self) -> &'static str {
        match self {
            Run::Local => "stoa-backup: pg_dump -Z0|zstd(3)|sha256|local (median)",
            Run::LocalWithoutCounts => "  same, without exact row counts",
            Run::S3 => "  same, into S3 (in-process s3s-fs)",
            Run::ArchiveCheck => "archive check of the stored dump (TOC + all data)",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Run::Local => "local",
            Run::LocalWithoutCounts => "local-nocount",
            Run::S3 => "s3",
            Run::ArchiveCheck => "archive-check",
        }
    }
    fn parse(s: &str) -> Option<Run> {
        [
            Run::Local,
            Run::LocalWithoutCounts,
            Run::S3,
            Run::ArchiveCheck,
        ]
        .into_iter()
        .find(|r| r.name() == s)
    }
}

/// Runs `run` in a child process `n` times and reads back the median wall time and peak
/// RSS, and the stored size.
fn measure_in_child(run: Run, db: &str, dir: &Path, n: usize) -> Row {
    let m = support::measure_median(
        &format!("{}:{db}", run.name()),
        &[("STOA_BENCH_DIR", dir.as_os_str())],
        n,
    );
    Row {
        method: run.label(),
        wall: m.wall,
        bytes: m.stored,
        peak_rss: m.peak_rss,
    }
}

/// Child side: one pipeline run, then one result line on stdout.
fn child_main(spec: &str) {
    let (run, db) = spec
        .split_once(':')
        .expect("STOA_BENCH_CHILD=<run>:<database>");
    let run = Run::parse(run).expect("known run kind");
    let dir = PathBuf::from(std::env::var("STOA_BENCH_DIR").expect("STOA_BENCH_DIR"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (wall, bytes) = rt.block_on(async {
        if let Run::ArchiveCheck = run {
            return archive_check(&dir.join("sink")).await;
        }
        let conn = PgConnection::from_url(&url()).expect("benchmark database URL");
        // The S3 server lives as long as this value.
        let (sink, _server): (Arc<dyn Sink>, Box<dyn std::any::Any>) = match run {
            Run::Local | Run::LocalWithoutCounts => {
                let sink_dir = dir.join("sink");
                let _ = std::fs::remove_dir_all(&sink_dir);
                let sink = LocalSink::builder(&sink_dir).create_root(true).build();
                (Arc::new(sink.unwrap()), Box::new(()))
            }
            Run::S3 => s3_sink().await,
            Run::ArchiveCheck => unreachable!("handled above"),
        };
        let source = PostgresSource::builder(conn.with_dbname(db))
            .database(db)
            .exact_row_counts(!matches!(run, Run::LocalWithoutCounts))
            .build()
            .unwrap();
        let pipeline = Pipeline::builder()
            .source(source)
            .sink(sink)
            .compression(ZstdCodec::new(3).unwrap())
            .build()
            .unwrap();
        let t0 = Instant::now();
        let report = pipeline.run().await.unwrap().into_result().unwrap();
        (t0.elapsed(), report.manifest.artifacts[0].stored_size)
    });
    drop(rt);
    support::report(wall, bytes);
}

/// Times the archive check of the newest run's artifact in `dir` (stored size, as read).
async fn archive_check(dir: &Path) -> (Duration, u64) {
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(dir).unwrap());
    let catalog = Catalog::new(sink.clone());
    let newest = catalog
        .list_all()
        .await
        .unwrap()
        .pop()
        .expect("a run to check");
    let manifest = catalog.read_manifest(&newest.run_id).await.unwrap();
    let artifact = &manifest.artifacts[0];
    let ctx = VerifyContext {
        sink: sink.as_ref(),
        artifact,
        keyring: &Keyring::default(),
    };
    let t0 = Instant::now();
    let record = PgArchiveVerifier::new().verify(&ctx).await.unwrap();
    let wall = t0.elapsed();
    assert!(record.ok, "archive check failed: {}", record.detail);
    (wall, artifact.stored_size)
}

/// An in-process s3s-fs server and a sink on it: its work and memory count in the child,
/// so the RSS figure is an upper bound for the sink alone.
#[cfg(feature = "s3")]
async fn s3_sink() -> (Arc<dyn Sink>, Box<dyn std::any::Any>) {
    use stoa_backup::storage::{S3Credentials, S3Sink};
    let t = stoa_backup_test_support::s3::s3s_fs_target().await;
    let sink = Arc::new(
        S3Sink::builder(&t.bucket)
            .endpoint(&t.endpoint)
            .region(&t.region)
            .allow_http(true)
            .prefix("bench")
            .credentials(S3Credentials::new(&t.access_key, &t.secret_key))
            .build()
            .unwrap(),
    );
    (sink, Box::new(t))
}

#[cfg(not(feature = "s3"))]
async fn s3_sink() -> (Arc<dyn Sink>, Box<dyn std::any::Any>) {
    unreachable!("the S3 run is only requested with the s3 feature")
}

fn print_rows(mb: u64, db_bytes: i64, rows: &[Row]) {
    println!();
    println!(
        "database ~{mb} MiB (pg_database_size {:.0} MiB)",
        db_bytes as f64 / MIB as f64
    );
    println!(
        "{:<56} {:>10} {:>12} {:>10} {:>14}",
        "method", "wall (s)", "size (MiB)", "MiB/s", "peak RSS (MiB)"
    );
    for r in rows {
        println!(
            "{:<56} {:>10.2} {:>12.1} {:>10.1} {:>14}",
            r.method,
            r.wall.as_secs_f64(),
            r.bytes as f64 / MIB as f64,
            db_bytes as f64 / MIB as f64 / r.wall.as_secs_f64(),
            r.peak_rss
                .map(|b| format!("{:.1}", b as f64 / MIB as f64))
                .unwrap_or_else(|| "-".into()),
        );
    }
    let (z9, ours) = (&rows[0], &rows[2]);
    if let Some(s3) = rows.iter().find(|r| r.method == Run::S3.label()) {
        let ratio = s3.wall.as_secs_f64() / ours.wall.as_secs_f64();
        println!(
            "S3: {ratio:.2}x the local-sink time (<= 1.3: {})",
            if ratio <= 1.3 { "ok" } else { "MISSED" }
        );
    }
    let speedup = z9.wall.as_secs_f64() / ours.wall.as_secs_f64();
    let size_ratio = ours.bytes as f64 / z9.bytes as f64;
    let ok = |b: bool| if b { "ok" } else { "MISSED" };
    println!(
        "targets: {speedup:.1}x faster than -Z9 (>= 3: {}), size {size_ratio:.2}x of -Z9 (<= 1.1: {}), peak RSS {} (< 64 MiB: {})",
        ok(speedup >= 3.0),
        ok(size_ratio <= 1.1),
        ours.peak_rss.map(|b| format!("{:.1} MiB", b as f64 / MIB as f64)).unwrap_or_else(|| "unknown".into()),
        ours.peak_rss.map(|b| ok(b < 64 * MIB)).unwrap_or("unknown"),
    );
}

/// Memory must not grow with the database: the largest peak within 10% of the smallest.
fn print_flatness(peaks: &[(u64, u64)]) {
    if peaks.len() < 2 {
        return;
    }
    let mib = |b: u64| b as f64 / MIB as f64;
    let min = peaks.iter().map(|p| p.1).min().unwrap_or(1).max(1);
    let max = peaks.iter().map(|p| p.1).max().unwrap_or(0);
    let list: Vec<String> = peaks
        .iter()
        .map(|(mb, p)| format!("{mb} MiB: {:.1}", mib(*p)))
        .collect();
    let ratio = max as f64 / min as f64;
    println!();
    println!(
        "memory: pipeline peak RSS by database size ({}) -> largest/smallest {ratio:.3} (flat: <= 1.10: {})",
        list.join(", "),
        if ratio <= 1.10 { "ok" } else { "MISSED" }
    );
}

fn main() {
    if let Some(spec) = support::child_job() {
        return child_main(&spec);
    }
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let sizes: Vec<u64> = std::env::var("STOA_BENCH_SIZES_MB")
        .unwrap_or_else(|_| "256,1024".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = PathBuf::from(
        std::env::var("STOA_BENCH_DIR").unwrap_or_else(|_| "target/bench-postgres".to_string()),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = PgConnection::from_url(&url()).expect("benchmark database URL");
        let mut peaks = Vec::new();
        for mb in &sizes {
            let db = ensure_database(&conn, *mb).await;
            let size: i64 = client(&conn, &db)
                .await
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await
                .unwrap()
                .get(0);
            // Warm the OS cache so the first method is not penalized.
            // Its timing is discarded: this run only fills the caches.
            pg_dump_to_file(&conn, &db, 0, &dir.join("warmup.dump")).await;
            #[allow(unused_mut)]
            let mut rows = vec![
                pg_dump_to_file(&conn, &db, 9, &dir.join("z9.dump")).await,
                pg_dump_to_file(&conn, &db, 0, &dir.join("z0.dump")).await,
                measure_in_child(Run::Local, &db, &dir, support::repeat()),
                measure_in_child(Run::LocalWithoutCounts, &db, &dir, 1),
            ];
            #[cfg(feature = "s3")]
            rows.push(measure_in_child(Run::S3, &db, &dir, 1));
            rows.push(measure_in_child(Run::ArchiveCheck, &db, &dir, 1));
            print_rows(*mb, size, &rows);
            peaks.extend(rows[2].peak_rss.map(|p| (*mb, p)));
            for f in ["warmup.dump", "z9.dump", "z0.dump"] {
                let _ = std::fs::remove_file(dir.join(f));
            }
            let _ = std::fs::remove_dir_all(dir.join("sink"));
            if std::env::var("STOA_BENCH_DROP").as_deref() == Ok("1") {
                let admin = client(&conn, conn.get_dbname()).await;
                admin
                    .batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
                    .await
                    .unwrap();
            }
        }
        print_flatness(&peaks);
    });
}
