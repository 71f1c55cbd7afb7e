//! Test snapshots benchmark of issue #17, run by hand (not in CI): how much faster a
//! `PgSnapshot` takes and puts back a database than `pg_dump -Fc` + `pg_restore`, and how
//! long a `TestDatabases` checkout takes.
//!
//! ```sh
//! cargo bench --bench test_snapshots --features postgres,local
//! STOA_BENCH_SNAPSHOT_SIZES_MB=200,1024 STOA_BENCH_REPEAT=3 cargo bench --bench test_snapshots --features postgres,local
//! ```
//!
//! **Data.** The STOA-like databases of `benches/support/data.rs` (about 200 MiB and
//! 1 GiB of raw dump by default), generated once and reused; each size is first cloned
//! (untimed) into a work database, so the generated one is never changed.
//!
//! **Cases**, interleaved `STOA_BENCH_REPEAT` times (default 3) per size; between the
//! snapshot and the restore every case changes the same rows (untimed):
//! 1. `snapshot+restore`: `PgSnapshot::take`, then `restore()` (a fresh copy swapped in;
//!    the snapshot stays for the next restore), then the snapshot dropped;
//! 2. `snapshot+restore_once`: `take`, then `restore_once()` (the copy itself swapped in);
//! 3. `pg_dump -Fc + pg_restore`: `pg_dump -Fc` (its default compression) to a file, then
//!    the database dropped, created empty and `pg_restore`d from the file;
//! 4. the same with `pg_dump -Fc -Z0`, for a baseline without compression.
//!
//! **Pool.** A `TestDatabases` over the STOA-like schema (tables, keys, the fill function),
//! then `STOA_BENCH_CHECKOUTS` (default 50) checkouts one after the other, each dropped
//! before the next, and the same number 4 at a time.
//!
//! **Output**: per size the median wall time of each case and the ratios, with the
//! targets (baseline / ours >= 20; checkout median < 50 ms).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stoa_backup::core::CommandSpec;
use stoa_backup::providers::postgres::PgConnection;
use stoa_backup_testing::{Migrations, PgSnapshot, TestDatabases};

#[allow(dead_code)]
#[path = "support/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "support/shell.rs"]
mod shell;

const STOA_LIKE_SQL: &str = include_str!("support/stoa_like.sql");
const WORK_DB: &str = "stoa_bench_snapshot_work";
const RATIO_TARGET: f64 = 20.0;
const CHECKOUT_TARGET: Duration = Duration::from_millis(50);

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn server_url() -> String {
    std::env::var("STOA_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("STOA_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A shell command with the server's connection settings, run to completion.
fn shell(conn: &PgConnection, db: &str, body: &str, what: &str) {
    let mut cmd = Command::new("bash");
    cmd.args(["-e", "-o", "pipefail", "-c", body])
        .env("STOA_DB", conn.conninfo(db))
        .stdin(Stdio::null());
    let spec = conn.apply_env(CommandSpec::new("pg_dump"));
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("start {what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// The same change before every restore: rows updated and deleted, a table added.
fn change(server: &data::Server) {
    server.session(WORK_DB).sql(
        "UPDATE stoa.tenants SET name = name || '-x' WHERE slug LIKE '%7%';
         DELETE FROM stoa.audit_events WHERE id % 97 = 0;
         CREATE TABLE IF NOT EXISTS stoa.bench_extra (x int);",
    );
}

/// `pg_dump -Fc [compress]` to a file, the change (untimed), then the database dropped,
/// created empty and `pg_restore`d: the time of the dump plus the time of the restore.
fn baseline(server: &data::Server, file: &Path, compress: &str) -> Duration {
    let conn = &server.conn;
    let t0 = Instant::now();
    shell(
        conn,
        WORK_DB,
        &format!(
            r#"pg_dump -Fc {compress} --dbname="$STOA_DB" > "{}""#,
            file.display()
        ),
        "pg_dump",
    );
    let dumped = t0.elapsed();
    change(server);
    let t1 = Instant::now();
    server.drop_database(WORK_DB);
    server.create_database(WORK_DB);
    shell(
        conn,
        WORK_DB,
        &format!(
            r#"pg_restore --exit-on-error --dbname="$STOA_DB" "{}""#,
            file.display()
        ),
        "pg_restore",
    );
    dumped + t1.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes = env_list("STOA_BENCH_SNAPSHOT_SIZES_MB", "200,1024");
    let repeat = env_usize("STOA_BENCH_REPEAT", 3).max(1);
    let url = server_url();
    let server = data::Server::connect(&url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("work.dump");
    let mut summary = Vec::new();
    for &mb in &sizes {
        let source = data::ensure_database(&server, mb);
        if server.database_exists(WORK_DB) {
            server.drop_database(WORK_DB);
        }
        let admin = rt.block_on(server.conn.connect("postgres")).unwrap();
        rt.block_on(admin.batch_execute(&format!(
            "CREATE DATABASE {WORK_DB} TEMPLATE {source} STRATEGY FILE_COPY"
        )))
        .unwrap();
        let size: i64 = rt
            .block_on(admin.query_one("SELECT pg_database_size($1::text)", &[&WORK_DB]))
            .unwrap()
            .get(0);
        println!(
            "\n== about {mb} MiB of raw dump: database {:.0} MiB on disk, {repeat} rounds",
            size as f64 / 1048576.0
        );
        let (mut again, mut once, mut fc, mut z0) = (vec![], vec![], vec![], vec![]);
        for round in 0..repeat {
            server.checkpoint();
            let t = Instant::now();
            let snap = rt.block_on(PgSnapshot::take(&url, WORK_DB)).unwrap();
            let took = t.elapsed();
            change(&server);
            let restored = rt.block_on(snap.restore()).unwrap();
            let t_drop = Instant::now();
            drop(snap);
            again.push(took + restored + t_drop.elapsed());

            server.checkpoint();
            let t = Instant::now();
            let snap = rt.block_on(PgSnapshot::take(&url, WORK_DB)).unwrap();
            let took = t.elapsed();
            change(&server);
            let restored = rt.block_on(snap.restore_once()).unwrap();
            once.push(took + restored);

            server.checkpoint();
            fc.push(baseline(&server, &file, ""));

            server.checkpoint();
            z0.push(baseline(&server, &file, "-Z0"));
            println!(
                "  round {}: snapshot+restore {:.2} s, +restore_once {:.2} s, pg_dump -Fc + pg_restore {:.2} s, -Z0 {:.2} s",
                round + 1,
                again[round].as_secs_f64(),
                once[round].as_secs_f64(),
                fc[round].as_secs_f64(),
                z0[round].as_secs_f64()
            );
        }
        let (again, once, fc, z0) = (median(again), median(once), median(fc), median(z0));
        summary.push((mb, size, again, once, fc, z0));
        server.drop_database(WORK_DB);
    }

    // The pool: the STOA-like schema as the migration.
    let checkouts = env_usize("STOA_BENCH_CHECKOUTS", 50).max(1);
    let pool = rt
        .block_on(TestDatabases::new(
            &url,
            Migrations::new().sql("stoa_like.sql", STOA_LIKE_SQL),
        ))
        .unwrap();
    let mut one_by_one = Vec::new();
    for _ in 0..checkouts {
        let db = rt.block_on(pool.checkout()).unwrap();
        one_by_one.push(db.took());
        drop(db);
    }
    let mut four_at_once = Vec::new();
    for _ in 0..checkouts.div_ceil(4) {
        let dbs =
            rt.block_on(async { futures::future::join_all((0..4).map(|_| pool.checkout())).await });
        for db in dbs {
            let db = db.unwrap();
            four_at_once.push(db.took());
        }
    }

    println!("\n== test snapshots (medians)");
    println!(
        "{:>9} {:>9} {:>18} {:>22} {:>16} {:>12} {:>10} {:>10}",
        "raw MiB",
        "disk MiB",
        "snapshot+restore",
        "snapshot+restore_once",
        "dump -Fc+restore",
        "-Z0+restore",
        "ratio",
        "ratio once"
    );
    let mut all_ok = true;
    for (mb, size, again, once, fc, z0) in &summary {
        let ratio = fc.as_secs_f64() / again.as_secs_f64();
        let ratio_once = fc.as_secs_f64() / once.as_secs_f64();
        all_ok &= ratio >= RATIO_TARGET;
        println!(
            "{:>9} {:>9.0} {:>17.3}s {:>21.3}s {:>15.2}s {:>11.2}s {:>9.1}x {:>9.1}x",
            mb,
            *size as f64 / 1048576.0,
            again.as_secs_f64(),
            once.as_secs_f64(),
            fc.as_secs_f64(),
            z0.as_secs_f64(),
            ratio,
            ratio_once
        );
        println!(
            "          against -Z0 + pg_restore: {:.1}x (restore), {:.1}x (restore_once)",
            z0.as_secs_f64() / again.as_secs_f64(),
            z0.as_secs_f64() / once.as_secs_f64()
        );
    }
    let m1 = median(one_by_one.clone());
    let m4 = median(four_at_once.clone());
    println!(
        "pool checkout (template {} ): one at a time median {:.1} ms (p90 {:.1} ms, n={}), 4 at once median {:.1} ms (p90 {:.1} ms)",
        pool.template(),
        m1.as_secs_f64() * 1e3,
        percentile(one_by_one, 0.9).as_secs_f64() * 1e3,
        checkouts,
        m4.as_secs_f64() * 1e3,
        percentile(four_at_once, 0.9).as_secs_f64() * 1e3,
    );
    println!(
        "targets: pg_dump -Fc + pg_restore / snapshot+restore >= {RATIO_TARGET}x: {}; checkout median < {} ms: {}",
        if all_ok { "met" } else { "MISSED" },
        CHECKOUT_TARGET.as_millis(),
        if m1 < CHECKOUT_TARGET { "met" } else { "MISSED" }
    );
}
