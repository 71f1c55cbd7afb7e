//! Quickstart: back up the local PostgreSQL into `./stoa-backups`, verify, apply the
//! seed's retention (daily backups kept 30 days), and print the catalog.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//! `DATABASE_URL` picks the database (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! `STOA_BACKUP_DIR` the target directory (default `./stoa-backups`).

use std::sync::Arc;

use chrono::Duration;
use stoa_backup::core::{
    format_runs_table, Catalog, KeepCount, KeepRules, Pipeline, RunFilter, TracingObserver,
    ZstdCodec,
};
use stoa_backup::providers::postgres::{PgArchiveVerifier, PostgresSource};
use stoa_backup::storage::LocalSink;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let dir = std::env::var("STOA_BACKUP_DIR").unwrap_or_else(|_| "./stoa-backups".to_string());

    let sink = Arc::new(LocalSink::new(&dir)?);
    // pg_dump -Fc -Z0 streamed into our zstd stage; the password (if any) reaches pg_dump
    // through its environment, never its command line.
    let source = PostgresSource::builder().url(&url).build()?;
    // The seed keeps daily dumps for 30 days.
    let retention = KeepRules::new()
        .keep_daily(KeepCount::Last(30))
        .keep_within(Duration::days(30));

    let pipeline = Pipeline::builder()
        .source(Arc::new(source))
        .sink(sink.clone())
        .compression(ZstdCodec::new(3)?)
        // pg_restore --list (TOC count as recorded) and a full read of every data block.
        .verifier(Arc::new(PgArchiveVerifier::new()))
        .retention(Arc::new(retention))
        .apply_retention(true)
        .observer(Arc::new(TracingObserver))
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
