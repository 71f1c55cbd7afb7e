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
use stoa_backup::core::process::CommandSpec;
use stoa_backup::core::verify::ChecksumVerifier;
use stoa_backup::core::{
    format_runs_table, Catalog, CommandSource, KeepCount, KeepRules, Pipeline, RunFilter,
    TracingObserver, ZstdCodec,
};
use stoa_backup::storage::LocalSink;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let dir = std::env::var("STOA_BACKUP_DIR").unwrap_or_else(|_| "./stoa-backups".to_string());

    let sink = Arc::new(LocalSink::new(&dir)?);
    let source = CommandSource::new(
        "postgres",
        "database.dump",
        CommandSpec::new("pg_dump").args([
            "--format=custom",
            "--compress=0",
            "--no-owner",
            "--no-privileges",
            "--dbname",
            &url,
        ]),
    )
    .content_type("application/x-postgres-custom-dump");
    // The seed keeps daily dumps for 30 days.
    let retention = KeepRules::new()
        .keep_daily(KeepCount::Last(30))
        .keep_within(Duration::days(30));

    let pipeline = Pipeline::builder()
        .source(Arc::new(source))
        .sink(sink.clone())
        .compression(ZstdCodec::new(3)?)
        .verifier(Arc::new(ChecksumVerifier::deep()))
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
