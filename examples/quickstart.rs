//! Quickstart: back up the local PostgreSQL into `./stoa-backups`, verify, apply the
//! seed's retention (daily backups kept 30 days), and print the catalog.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//! `DATABASE_URL` (or libpq's `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`)
//! picks the database (default `localhost:5432`, user and database `postgres`),
//! `STOA_BACKUP_DIR` the target directory (default `./stoa-backups`).

use std::sync::Arc;

use chrono::Duration;
use stoa_backup::core::format_runs_table;
use stoa_backup::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
        .compression(ZstdCodec::new(3)?)
        // pg_restore --list (TOC count as recorded) and a full read of every data block.
        .verifier(PgArchiveVerifier::new())
        .retention(retention)
        .apply_retention(true)
        .observer(TracingObserver)
        .label("job", "quickstart")
        .build()?;

    let report = pipeline.run().await?.into_result()?;
    for a in &report.manifest.artifacts {
        println!(
            "stored {} ({} bytes plain, {} bytes stored, sha256 {})",
            a.key, a.plain_size, a.stored_size, a.stored_sha256
        );
        for v in &a.verification {
            println!("  verified by {}: {}", v.verifier, v.detail);
        }
    }
    if let Some(plan) = &report.retention {
        println!("\nretention plan:\n{plan}");
    }
    let catalog = Catalog::new(sink);
    println!(
        "catalog of {dir}:\n{}",
        format_runs_table(&catalog.list_runs(&RunFilter::default()).await?)
    );
    Ok(())
}
