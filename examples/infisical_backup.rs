//! Back up Infisical projects into a local directory (a PVC), encrypted with age, then show
//! what a restore would do (dry run).
//!
//! ```sh
//! INFISICAL_API_URL=https://infisical.stoa.svc:8080 \
//! INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=... INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET=... \
//! STOA_INFISICAL_PROJECT=6f1c... STOA_INFISICAL_ENVS=dev,prod \
//! STOA_AGE_IDENTITY=AGE-SECRET-KEY-1... STOA_BACKUP_DIR=/backups \
//! cargo run --example infisical_backup --features infisical,local
//! ```
//!
//! - The server and a machine identity, as the `infisical` CLI reads them
//!   (`InfisicalConnection::from_env`): `INFISICAL_API_URL` (default
//!   `https://app.infisical.com`), `INFISICAL_UNIVERSAL_AUTH_CLIENT_ID` and
//!   `INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET`. The access token is refreshed as it expires;
//!   429 answers are retried with back-off.
//! - `STOA_INFISICAL_PROJECT` (required) and `STOA_INFISICAL_ENVS` (comma-separated slugs;
//!   empty = every environment). `STOA_INFISICAL_API=v3` for older servers.
//! - `STOA_AGE_IDENTITY` (required): exports hold secret values and are always encrypted;
//!   the identity is used to encrypt (its recipient) and to read back for the dry run.
//!   Values the identity may not read (`<hidden-by-infisical>`) are reported, never stored.
//! - `STOA_BACKUP_DIR` (default `./backups`, created if missing; a directory named here must
//!   exist, since a missing one may be a volume that is not mounted).

use std::process::ExitCode;
use std::sync::Arc;

use stoa_backup::core::ExistingDataPolicy;
use stoa_backup::prelude::*;
use stoa_backup::providers::infisical::{InfisicalApi, InfisicalFacts};

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    // SIGINT / SIGTERM cancel the run: its partial writes are removed, no manifest is
    // written, and the program exits 130 / 143 (a second signal exits at once).
    let shutdown = stoa_backup::signals::listen()?;
    let project =
        std::env::var("STOA_INFISICAL_PROJECT").map_err(|_| "set STOA_INFISICAL_PROJECT")?;
    let envs: Vec<String> = std::env::var("STOA_INFISICAL_ENVS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let identity = std::env::var("STOA_AGE_IDENTITY").map_err(|_| {
        "set STOA_AGE_IDENTITY (AGE-SECRET-KEY-1...): Infisical backups are always encrypted"
    })?;
    let configured_dir = std::env::var("STOA_BACKUP_DIR").ok();
    let dir = configured_dir
        .clone()
        .unwrap_or_else(|| "./backups".to_string());

    let mut conn = InfisicalConnection::from_env()?;
    if std::env::var("STOA_INFISICAL_API").as_deref() == Ok("v3") {
        conn = conn.api(InfisicalApi::V3);
    }
    let keyring = Keyring::new().with_identity(&identity)?;
    let recipient = identity_to_recipient(&identity)?;
    // The default directory is created; a configured one must exist (it may be a volume).
    let sink = LocalSink::builder(&dir).create_root(configured_dir.is_none());
    let sink = Arc::new(sink.build()?);
    let pipeline = Pipeline::builder()
        .source(InfisicalSource::builder(conn.clone(), &project, envs).build()?)
        .sink(sink.clone())
        .compression(ZstdCodec::new(3)?)
        .encryption(AgeEncryption::recipients([recipient])?)
        .keyring(keyring.clone())
        .observer(TracingObserver)
        .label("job", "infisical_backup")
        .cancel(shutdown.token())
        .build()?;
    let report = pipeline.run().await;
    shutdown.exit_if_received("the run was cancelled and nothing of it was kept");
    let report = report?.into_result()?;

    for a in &report.manifest.artifacts {
        let f: InfisicalFacts = a.facts_as()?;
        println!(
            "stored {}: {} secrets, {} folders, {} hidden values (not backed up)",
            a.key,
            f.secrets.unwrap_or(0),
            f.folders.unwrap_or(0),
            f.hidden_values.unwrap_or(0)
        );
    }
    // What restoring the run would do, overwriting what differs: the plan writes nothing.
    let restore = Restore::builder()
        .sink(sink)
        .keyring(keyring)
        .restorer(InfisicalRestorer::new(conn)?)
        .existing(ExistingDataPolicy::Overwrite)
        .build()?;
    let plan = restore.plan(&report.manifest).await?;
    print!("{}", plan.table());
    for c in &plan.components {
        for n in &c.report.notes {
            println!("  {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The public recipient of an age identity.
fn identity_to_recipient(identity: &str) -> Result<String, Box<dyn std::error::Error>> {
    use std::str::FromStr as _;
    let id = age::x25519::Identity::from_str(identity.trim())
        .map_err(|e| format!("STOA_AGE_IDENTITY is not an age identity: {e}"))?;
    Ok(id.to_public().to_string())
}
