//! Back a file up into a local directory (the primary, a PVC) and replicate every run to an
//! S3 bucket in a second region: the run is copied once it is complete and verified, a
//! pass then copies whatever the bucket still lacks, the lag is printed, and the newest
//! run is restored from whichever target answers.
//!
//! ```sh
//! STOA_BACKUP_DIR=/var/backups/stoa STOA_S3_BUCKET=stoa-dr STOA_S3_PREFIX=prod \
//! AWS_REGION=eu-central-1 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
//! cargo run --example replicate_to_s3 --features local,s3 -- /etc/stoa/config.yaml
//! ```
//!
//! - the argument: the file to back up (default `Cargo.toml`).
//! - `STOA_BACKUP_DIR`: the primary directory (default a fresh temporary one).
//! - `STOA_S3_BUCKET` (required), `STOA_S3_PREFIX` (optional); `AWS_ENDPOINT_URL` for an
//!   S3-compatible endpoint (plain `http://` only on loopback), credentials and region from
//!   the standard AWS environment.

use std::path::PathBuf;
use std::sync::Arc;

use stoa_backup::core::replicate::{ReplicaFilter, Replicator};
use stoa_backup::core::{FileRestorer, PointQuery, Restore};
use stoa_backup::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "Cargo.toml".into()),
    );
    let tmp = tempfile::tempdir()?;
    let dir = std::env::var("STOA_BACKUP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("primary"));
    let bucket = std::env::var("STOA_S3_BUCKET")
        .map_err(|_| "set STOA_S3_BUCKET to the bucket of the second region")?;
    let primary: Arc<dyn Sink> = Arc::new(LocalSink::builder(&dir).create_root(true).build()?);
    let secondary: Arc<dyn Sink> = Arc::new(
        S3Sink::from_env(&bucket)
            .prefix(std::env::var("STOA_S3_PREFIX").unwrap_or_default())
            .allow_loopback_http(true)
            .build()?,
    );

    // 1. A backup, replicated as part of the run.
    let report = Pipeline::builder()
        .source(FileSource::new("config", &file, "config"))
        .sink(primary.clone())
        .compression(ZstdCodec::new(3)?)
        .verifier(ChecksumVerifier::new())
        .replicate_to_named("secondary", secondary.clone())
        .build()?
        .run()
        .await?;
    println!("run {} is {}", report.run_id, report.status);
    for r in &report.replication {
        match (&r.copy, &r.error) {
            (Some(c), _) => println!(
                "  {}: {} ({} bytes in {} ms)",
                r.target,
                c.outcome.as_str(),
                c.bytes_copied,
                c.duration_ms
            ),
            (None, Some(e)) => println!("  {}: not copied: {e}", r.target),
            (None, None) => {}
        }
    }

    // 2. The job of the second region: every complete run the bucket still lacks.
    let replicator = Replicator::new(
        &Catalog::new(primary.clone()),
        &Catalog::new(secondary.clone()),
    )
    .named("secondary");
    let pass = replicator.replicate(&ReplicaFilter::all()).await?;
    println!(
        "replicate: {} run(s) written, {} already there, {} failed",
        pass.written().count(),
        pass.runs.len() - pass.written().count(),
        pass.failed.len()
    );
    for lag in replicator.lag(["config"], chrono::Utc::now()).await? {
        println!(
            "lag of {} on {}: {} s ({} run(s) missing)",
            lag.component,
            lag.target,
            lag.lag.as_secs(),
            lag.missing_runs
        );
    }

    // 3. Restore from either: the newest verified run, wherever it is.
    let restored = tmp.path().join("restored");
    let restore = Restore::builder()
        .sink(primary)
        .replica("secondary", secondary)
        .restorer(FileRestorer::new("config", &restored))
        .build()?;
    let point = restore.find_point(&PointQuery::latest(["config"])).await?;
    let run = point.run_of("config").expect("picked").clone();
    let plan = restore.plan_run(&run).await?;
    restore.apply(&plan).await?;
    println!(
        "restored run {run} from {} into {}",
        plan.origin,
        restored.display()
    );
    Ok(())
}
