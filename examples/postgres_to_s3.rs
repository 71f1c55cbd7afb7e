//! Back up a PostgreSQL database into an S3 bucket, verify the stored dump, and print the
//! bucket's catalog of runs.
//!
//! ```sh
//! DATABASE_URL=postgres://backup@db:5432/stoa \
//! STOA_S3_BUCKET=stoa-backups STOA_S3_PREFIX=prod/postgres \
//! AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
//! cargo run --example postgres_to_s3 --features s3
//! ```
//!
//! - `DATABASE_URL` (or libpq's `PGHOST`, `PGUSER`, `PGPASSWORD`…): the database (default
//!   `localhost:5432`, user and database `postgres`).
//! - `STOA_S3_BUCKET` (required), `STOA_S3_PREFIX` (optional key prefix).
//! - `AWS_ENDPOINT_URL`: an S3-compatible endpoint (MinIO, Ceph, moto…); unset for AWS.
//!   Plain `http://` is accepted only for loopback endpoints (local test servers).
//! - Credentials and region come from the standard AWS environment: `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`; or web identity (IRSA) and
//!   instance metadata when no keys are set.

use std::process::ExitCode;
use std::sync::Arc;

use stoa_backup::core::format_runs_table;
use stoa_backup::prelude::*;

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    // SIGINT / SIGTERM cancel the run: its partial writes are removed, no manifest is
    // written, and the program exits 130 / 143 (a second signal exits at once).
    let shutdown = stoa_backup::signals::listen()?;
    let bucket = std::env::var("STOA_S3_BUCKET")
        .map_err(|_| "set STOA_S3_BUCKET to the bucket to back up into")?;
    // Region, endpoint and credentials: the standard AWS environment.
    let builder = S3Sink::from_env(&bucket)
        .prefix(std::env::var("STOA_S3_PREFIX").unwrap_or_default())
        .allow_loopback_http(true);
    let s3 = builder.build()?;
    println!("backing up into {}", s3.describe());
    // Abort the multipart uploads of runs killed more than a day ago (never one still
    // running); the bucket's lifecycle rule is the safety net when this cannot run.
    match s3
        .cleanup(chrono::Utc::now() - chrono::Duration::days(1))
        .await
    {
        Ok(r) => {
            if r.multipart_uploads_aborted > 0 {
                println!(
                    "aborted {} multipart upload(s) of interrupted runs",
                    r.multipart_uploads_aborted
                );
            }
            for f in &r.errors {
                eprintln!("warning: cannot abort {}: {}", f.item, f.error);
            }
        }
        // Some S3 implementations cannot list multipart uploads: not a reason not to back up.
        Err(e) => eprintln!("warning: {e}"),
    }
    let sink = Arc::new(s3);

    let source = PostgresSource::builder(PgConnection::from_env()?).build()?;
    let pipeline = Pipeline::builder()
        .source(source)
        .sink(sink.clone())
        .compression(ZstdCodec::new(3)?)
        // Reads the stored dump back from S3 through pg_restore: the whole archive must parse.
        .verifier(PgArchiveVerifier::new())
        .observer(TracingObserver)
        .label("job", "postgres_to_s3")
        .cancel(shutdown.token())
        .build()?;

    let report = pipeline.run().await;
    shutdown.exit_if_received("the run was cancelled and nothing of it was kept");
    let report = report?.into_result()?;
    for a in &report.manifest.artifacts {
        println!(
            "stored {} ({} bytes plain, {} bytes stored, sha256 {}, verified: {})",
            a.key,
            a.plain_size,
            a.stored_size,
            a.stored_sha256,
            a.is_verified()
        );
    }
    let catalog = Catalog::new(sink);
    println!(
        "\ncatalog of {}:\n{}",
        catalog.sink().describe(),
        format_runs_table(&catalog.list_runs(&RunFilter::default()).await?)
    );
    Ok(ExitCode::SUCCESS)
}
