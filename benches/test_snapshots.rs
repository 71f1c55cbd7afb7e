//! Test snapshots benchmark of issue #17, run by hand (not in CI): how much faster a
//! `PgSnapshot` takes and puts back a database than `pg_dump -Fc` + `pg_restore`, and how
//! long a `TestDatabases` checkout takes.
//!
//! ```sh
//! cargo bench --bench test_snapshots --features postgres,local
//! STOA_BENCH_SNAPSHOT_SIZES_MB=200,1024 STOA_BENCH_REPEAT=3 cargo bench --bench test_snapshots --features postgres,local
//! # the machine's server and a test server (scripts/test-postgres.sh), one after the other:
//! STOA_BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres,$(scripts/test-postgres.sh start)" \
//!     cargo bench --bench test_snapshots --features postgres,local
//! ```
//!
//! **Servers.** `STOA_BENCH_DATABASE_URL` (default `STOA_TEST_DATABASE_URL`, then the local
//! server) may list several, comma-separated; each is measured in full and printed with its
//! durability settings and the filesystem of its data directory, since a template clone
//! costs what writing the database's files costs that server. On the 2-core machine of
//! 2026-12-03 that was not `fsync`: a 1.1 GB `FILE_COPY` clone took 0.5-0.7 s in most
//! rounds and 2.3-2.7 s in others, on ext4 with `fsync` on and on a tmpfs with it off alike,
//! one core in the kernel meanwhile.
//!
//! **Data.** The STOA-like databases of `benches/support/data.rs` (about 200 MiB and
//! 1 GiB of raw dump by default), generated once and reused; each size is first cloned
//! (untimed) into a work database, so the generated one is never changed.
//!
//! **Cases**, interleaved `STOA_BENCH_REPEAT` times (default 3) per size; between the
//! snapshot and the restore every case changes the same rows (untimed). "Waits" is what
//! the caller waits for; "work" adds the background work the case left (the spare copy,
//! the drops), waited for with `settle()` after the case so that it never leaks into the
//! next one. Before each case (baselines too): `CHECKPOINT`, `sync` and a 200 ms pause;
//! each round starts from a fresh clone of the generated database.
//! 1. `take+restore()`: `PgSnapshot::take`, then `restore()` (the changed database
//!    dropped, the copy cloned in), then the snapshot dropped;
//! 2. the same with `spare_at_once(true)`: the spare is cloned while the test changes the
//!    data, and the restore renames it in (waiting for it if it is not done);
//! 3. `take+restore_once()`: the copy itself renamed in;
//! 4. one snapshot restored four times, each after the change and `STOA_BENCH_TEST_MS`
//!    (default 500 ms) of "test": the first restore clones, the later ones rename the
//!    spare in — what each test of a suite waits;
//! 5. `pg_dump -Fc` (its default compression) to a file, then the database dropped,
//!    created empty and `pg_restore`d from the file; and the same with `-Z0`.
//!
//! **Pool.** A `TestDatabases` over the STOA-like schema (tables, keys, the fill function),
//! then `STOA_BENCH_CHECKOUTS` (default 50) checkouts one after the other, each dropped
//! before the next, and the same number 4 at a time.
//!
//! **Output**: per size the median wall time of each case and the ratios, with the
//! targets (`pg_dump -Fc` + `pg_restore` / `take+restore()` waits >= 20, and the same for
//! the guard's `take+restore_once()`; checkout median < 50 ms), and with several servers a
//! last line per server.

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
// The shell commands' CPU figures come from there.
mod support;

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

/// The servers to measure, one after the other: `STOA_BENCH_DATABASE_URL` may list several
/// (comma-separated), e.g. the machine's stock server and a non-durable test server from
/// `scripts/test-postgres.sh`.
fn server_urls() -> Vec<String> {
    std::env::var("STOA_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("STOA_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect()
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
/// created empty and `pg_restore`d: the time of the dump and the time of the restore.
fn baseline(server: &data::Server, file: &Path, compress: &str) -> (Duration, Duration) {
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
    (dumped, t1.elapsed())
}

/// Before every case: a checkpoint, then `sync` and a short pause, so that no case pays for
/// the writes of the one before it (the 1 GiB `pg_restore` of the baselines left the next
/// snapshot's clone at 2.5 s instead of 0.5 s with a checkpoint alone).
fn quiesce(server: &data::Server) {
    server.checkpoint();
    match Command::new("sync").status() {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("note: sync failed ({other:?}); a case may pay for the last one's writes")
        }
    }
    std::thread::sleep(Duration::from_millis(200));
}

/// What each size measured, per round.
#[derive(Default)]
struct Cases {
    again: Vec<Duration>,
    again_work: Vec<Duration>,
    eager: Vec<Duration>,
    eager_work: Vec<Duration>,
    once: Vec<Duration>,
    once_work: Vec<Duration>,
    change: Vec<Duration>,
    first_restore: Vec<Duration>,
    repeated: Vec<Duration>,
    fc: Vec<Duration>,
    pg_restore: Vec<Duration>,
    z0: Vec<Duration>,
}

/// Waits for the background work the last case left (drops, a spare) and returns how
/// long that took, so that it neither leaks into the next case nor goes uncounted.
fn settle(rt: &tokio::runtime::Runtime) -> Duration {
    let t = Instant::now();
    rt.block_on(stoa_backup_testing::settle());
    t.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes = env_list("STOA_BENCH_SNAPSHOT_SIZES_MB", "200,1024");
    let repeat = env_usize("STOA_BENCH_REPEAT", 3).max(1);
    let test_time = Duration::from_millis(env_usize("STOA_BENCH_TEST_MS", 500) as u64);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut verdicts = Vec::new();
    for url in server_urls() {
        verdicts.push(run_server(&rt, &url, &sizes, repeat, test_time));
    }
    if verdicts.len() > 1 {
        println!("\n== every server");
        for v in &verdicts {
            println!("{v}");
        }
    }
}

/// The server's durability settings and where its files are, printed with its figures: a
/// template clone costs what writing the database's files costs that server.
fn durability(rt: &tokio::runtime::Runtime, server: &data::Server) -> String {
    let admin = rt.block_on(server.conn.connect("postgres")).unwrap();
    let mut parts = Vec::new();
    for name in ["fsync", "full_page_writes", "synchronous_commit"] {
        let row = rt
            .block_on(admin.query_one(&format!("SHOW {name}"), &[]))
            .unwrap();
        parts.push(format!("{name}={}", row.get::<_, String>(0)));
    }
    // Only a superuser may read it; where it is (a disk, a tmpfs) matters as much.
    if let Ok(row) = rt.block_on(admin.query_one("SHOW data_directory", &[])) {
        let dir: String = row.get(0);
        parts.push(format!("data_directory={dir} ({})", filesystem_of(&dir)));
    }
    parts.join(" ")
}

/// The type of the local filesystem `path` is on (the longest mount point above it in
/// `/proc/mounts`), or "filesystem unknown" when the server is not on this machine.
fn filesystem_of(path: &str) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            // "/" trims to "", so it is above every absolute path.
            let under =
                path == point || path.starts_with(&format!("{}/", point.trim_end_matches('/')));
            under.then(|| (point.len(), kind.to_string()))
        })
        .max()
        .map(|(_, kind)| kind)
        .filter(|_| Path::new(path).exists())
        .unwrap_or_else(|| "filesystem unknown".into())
}

fn verdict_word(nothing: bool, ok: bool) -> &'static str {
    match (nothing, ok) {
        (true, _) => "not measured",
        (false, true) => "met",
        (false, false) => "MISSED",
    }
}

/// Every case and the pool on one server; prints its figures and returns its verdict line.
fn run_server(
    rt: &tokio::runtime::Runtime,
    url: &str,
    sizes: &[u64],
    repeat: usize,
    test_time: Duration,
) -> String {
    let server = data::Server::connect(url);
    let settings = durability(rt, &server);
    println!(
        "\n#### server {} ({settings})",
        server.conn.redacted_url("postgres")
    );
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("work.dump");
    let mut summary = Vec::new();
    for &mb in sizes {
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
        let mut cases = Cases::default();
        for round in 0..repeat {
            if round > 0 {
                // Every round starts from a clone of the generated database, not from what
                // the last round's `pg_restore` left. (That alone does not make rounds alike
                // at 1.1 GB: after the baselines' sustained writes this disk takes ~3 s
                // instead of ~0.6 s for a 1.1 GB clone, for longer than 20 s — reproduced
                // with psql alone.)
                server.drop_database(WORK_DB);
                rt.block_on(admin.batch_execute(&format!(
                    "CREATE DATABASE {WORK_DB} TEMPLATE {source} STRATEGY FILE_COPY"
                )))
                .unwrap();
            }
            // 1. take, change, restore(), drop: the spare made after the restore is
            //    background work (settled, and counted apart).
            quiesce(&server);
            let t = Instant::now();
            let snap = rt.block_on(PgSnapshot::take(url, WORK_DB)).unwrap();
            let took = t.elapsed();
            change(&server);
            let t = Instant::now();
            rt.block_on(snap.restore()).unwrap();
            drop(snap);
            let waited = took + t.elapsed();
            cases.again.push(waited);
            cases.again_work.push(waited + settle(rt));

            // 2. the same with the spare made at once (while the test changes the data).
            quiesce(&server);
            let t = Instant::now();
            let snap = rt
                .block_on(PgSnapshot::builder(url, WORK_DB).spare_at_once(true).take())
                .unwrap();
            let took = t.elapsed();
            let t_change = Instant::now();
            change(&server);
            cases.change.push(t_change.elapsed());
            let t = Instant::now();
            rt.block_on(snap.restore()).unwrap();
            drop(snap);
            let waited = took + t.elapsed();
            cases.eager.push(waited);
            cases.eager_work.push(waited + settle(rt));

            // 3. take, change, restore_once.
            quiesce(&server);
            let t = Instant::now();
            let snap = rt.block_on(PgSnapshot::take(url, WORK_DB)).unwrap();
            let took = t.elapsed();
            change(&server);
            let restored = rt.block_on(snap.restore_once()).unwrap();
            cases.once.push(took + restored);
            cases.once_work.push(took + restored + settle(rt));

            // 4. one snapshot restored again and again, the test taking `STOA_BENCH_TEST_MS`
            //    (default 500) between restores: what each test of a suite waits.
            quiesce(&server);
            let snap = rt.block_on(PgSnapshot::take(url, WORK_DB)).unwrap();
            for i in 0..4 {
                change(&server);
                std::thread::sleep(test_time);
                let restored = rt.block_on(snap.restore()).unwrap();
                if i > 0 {
                    cases.repeated.push(restored);
                } else {
                    cases.first_restore.push(restored);
                }
            }
            drop(snap);
            settle(rt);

            quiesce(&server);
            let (dumped, restored) = baseline(&server, &file, "");
            cases.fc.push(dumped + restored);
            cases.pg_restore.push(restored);
            quiesce(&server);
            let (dumped, restored) = baseline(&server, &file, "-Z0");
            cases.z0.push(dumped + restored);
            println!(
                "  round {}: take+restore {:.3} s (+{:.3} s background), spare at once {:.3} s, \
                 take+restore_once {:.3} s, repeated restore {:.3} s; pg_dump -Fc + pg_restore {:.2} s, -Z0 {:.2} s",
                round + 1,
                cases.again[round].as_secs_f64(),
                (cases.again_work[round] - cases.again[round]).as_secs_f64(),
                cases.eager[round].as_secs_f64(),
                cases.once[round].as_secs_f64(),
                median(cases.repeated[round * 3..].to_vec()).as_secs_f64(),
                cases.fc[round].as_secs_f64(),
                cases.z0[round].as_secs_f64()
            );
        }
        summary.push((mb, size, cases));
        server.drop_database(WORK_DB);
    }

    // The pool: the STOA-like schema as the migration, after the last case's writes.
    quiesce(&server);
    let checkouts = env_usize("STOA_BENCH_CHECKOUTS", 50).max(1);
    let pool = rt
        .block_on(TestDatabases::new(
            url,
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

    println!("\n== test snapshots (medians; \"waits\": the caller's wait, \"work\": with the background work)");
    let mut all_ok = true;
    let mut ratios = Vec::new();
    // The guard's way (take + restore_once), printed beside the reusable one.
    let mut guard_ok = true;
    let mut guard_ratios = Vec::new();
    for (mb, size, c) in &summary {
        let fc = median(c.fc.clone()).as_secs_f64();
        let pr = median(c.pg_restore.clone()).as_secs_f64();
        let z0 = median(c.z0.clone()).as_secs_f64();
        println!(
            "{mb} MiB raw, {:.0} MiB on disk: pg_dump -Fc + pg_restore {fc:.2} s, -Z0 {z0:.2} s; the test's change {:.3} s",
            *size as f64 / 1048576.0,
            median(c.change.clone()).as_secs_f64()
        );
        let rows: [(&str, &Vec<Duration>, &Vec<Duration>); 3] = [
            ("take+restore()", &c.again, &c.again_work),
            ("take (spare at once)+restore()", &c.eager, &c.eager_work),
            ("take+restore_once()", &c.once, &c.once_work),
        ];
        for (name, waits, work) in rows {
            let (w, k) = (
                median(waits.clone()).as_secs_f64(),
                median(work.clone()).as_secs_f64(),
            );
            println!(
                "  {name:<32} waits {w:.3} s ({:.1}x -Fc, {:.1}x -Z0), work {k:.3} s ({:.1}x -Fc)",
                fc / w,
                z0 / w,
                fc / k
            );
        }
        let first = median(c.first_restore.clone()).as_secs_f64();
        let again = median(c.repeated.clone()).as_secs_f64();
        println!(
            "  one snapshot, restored after each {} ms test: first restore {first:.3} s, later ones {again:.4} s (median of {}; pg_restore alone {pr:.2} s: {:.0}x)",
            test_time.as_millis(),
            c.repeated.len(),
            pr / again
        );
        let ratio = fc / median(c.again.clone()).as_secs_f64();
        ratios.push(format!("{ratio:.1}x at {mb} MiB"));
        all_ok &= ratio >= RATIO_TARGET;
        let guard = fc / median(c.once.clone()).as_secs_f64();
        guard_ratios.push(format!("{guard:.1}x at {mb} MiB"));
        guard_ok &= guard >= RATIO_TARGET;
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
    let verdict = format!(
        "targets ({settings}): pg_dump -Fc + pg_restore / (take+restore(), waits) >= {RATIO_TARGET}x at every size: {} ({}); the same for take+restore_once() (the guard): {} ({}); checkout median < {} ms: {} ({:.1} ms)",
        verdict_word(summary.is_empty(), all_ok),
        ratios.join(", "),
        verdict_word(summary.is_empty(), guard_ok),
        guard_ratios.join(", "),
        CHECKOUT_TARGET.as_millis(),
        if m1 < CHECKOUT_TARGET { "met" } else { "MISSED" },
        m1.as_secs_f64() * 1e3,
    );
    println!("{verdict}");
    verdict
}
