//! Quickstart: back up the local PostgreSQL into `./stoa-backups`, verify, apply the
//! seed's retention (daily backups kept 30 days), and print the catalog.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//! `DATABASE_URL` (or libpq's `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`)
//! picks the database (default `localhost:5432`, user and database `postgres`),
//! `STOA_BACKUP_DIR` the target directory (default `./stoa-backups`).
//!
//! Exit status: 0 when the backup is stored and retention ran; 1 when the backup failed
//! (every failure is printed; the previous complete backup is untouched); 2 when the backup
//! is stored but retention failed (the error says why; old runs were not all pruned);
//! 130 / 143 when SIGINT / SIGTERM cancelled the run (its partial files are removed and no
//! manifest is written; a second signal exits at once).

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Duration;
use stoa_backup::core::format_runs_table;
use stoa_backup::prelude::*;

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let shutdown = stoa_backup::signals::listen()?;
    let dir = std::env::var("STOA_BACKUP_DIR").unwrap_or_else(|_| "./stoa-backups".to_string());

    // An Arc, so the catalog below reads the same sink.
    let sink = Arc::new(LocalSink::builder(&dir).create_root(true).build()?);
    // pg_dump -Fc -Z0 streamed into our zstd stage; the password (if any) reaches pg_dump
    // through its environment, never its command line.
    let source = PostgresSource::builder(PgConnection::from_env()?).build()?;
    // The seed keeps daily dumps for 30 days.
    let retention = KeepRules::new()
        .keep_daily(KeepCount::Last(30))
        .keep_within(Duration::days(30));

    let pipeline = Pipeline::builder()
        .source(source)
        .sink(sink.clone())
        .compression(ZstdCodec::default())
        // pg_restore --list (TOC count as recorded) and a full read of every data block (a
        // walk in process), on the dump as it streams in; then the stored bytes are checked
        // against its digest.
        .verifier(PgArchiveVerifier::new())
        .retention(retention)
        .apply_retention(true)
        .observer(TracingObserver)
        .label("job", "quickstart")
        .cancel(shutdown.token())
        .build()?;

    let report = pipeline.run().await;
    shutdown.exit_if_received("the run was cancelled and nothing of it was kept");
    let report = report?;
    if !report.is_complete() {
        // `into_result` names every failure of an incomplete run.
        return Err(report.into_result().unwrap_err().into());
    }
    for a in &report.manifest.artifacts {
        println!(
            "stored {} ({} bytes plain, {} bytes stored, sha256 {})",
            a.key, a.plain_size, a.stored_size, a.stored_sha256
        );
        for v in &a.verification {
            let how = v.method.map(|m| format!(" ({m})")).unwrap_or_default();
            println!("  verified by {}{how}: {}", v.verifier, v.detail);
        }
        if let Some(t) = &a.timings {
            println!(
                "  took {} ms: dump {} ms, stored after {} ms, verified {} ms later ({} MiB/s plain)",
                t.total_ms,
                t.dump_ms,
                t.store_ms,
                t.verify_ms,
                t.plain_bytes_per_sec / (1024 * 1024)
            );
        }
    }
    if let Some(plan) = &report.retention {
        println!("\nretention plan:\n{plan}");
    }
    if let Some(e) = &report.retention_error {
        // Not a plain success: old runs were not (all) pruned, and the storage may be why.
        eprintln!("\nerror: {e}");
        eprintln!(
            "the backup itself is stored: run {} is complete and verified; only retention failed",
            report.run_id
        );
        return Ok(ExitCode::from(2));
    }
    let catalog = Catalog::new(sink);
    println!(
        "catalog of {dir}:\n{}",
        format_runs_table(&catalog.list_runs(&RunFilter::default()).await?)
    );
    // Damaged runs are no backups, but an operator must hear of them.
    for run in catalog.damaged_runs().await? {
        if let Some(damage) = &run.damage {
            eprintln!("warning: run {} is damaged: {damage}", run.run_id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
