//! Take a Vault raft snapshot (plus a KV export) into an S3 bucket, encrypted with age, and
//! verify the stored snapshot.
//!
//! ```sh
//! VAULT_ADDR=https://vault.stoa.svc:8200 VAULT_TOKEN=... \
//! STOA_AGE_RECIPIENT=age1... \
//! STOA_S3_BUCKET=stoa-backups STOA_S3_PREFIX=prod/vault \
//! AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
//! cargo run --example vault_snapshot_to_s3 --features vault,s3
//! ```
//!
//! - `VAULT_ADDR` (or `BAO_ADDR` for OpenBao, required): the **active** node (a sealed,
//!   standby or uninitialised node gives a clear error and no run).
//! - Auth: `VAULT_TOKEN` (read with `VAULT_ADDR` and `VAULT_NAMESPACE` by
//!   `VaultConnection::from_env`); or Kubernetes auth with `STOA_VAULT_K8S_ROLE` (the pod's
//!   service-account token at `/var/run/secrets/kubernetes.io/serviceaccount/token`); or
//!   AppRole with `STOA_VAULT_ROLE_ID` and `STOA_VAULT_SECRET_ID`. `VAULT_NAMESPACE` applies
//!   to the KV export (snapshots are always taken in the root namespace).
//! - `STOA_AGE_RECIPIENT` (required): both artifacts hold secrets and the pipeline refuses to
//!   store them unencrypted. Keep the matching identity away from the bucket.
//! - `STOA_S3_BUCKET` (required), `STOA_S3_PREFIX`, `AWS_ENDPOINT_URL` (S3-compatible
//!   endpoint; plain `http://` only for loopback), credentials from the AWS environment.
//!
//! The snapshot is only usable with the cluster's unseal keys (Shamir) or its recovery keys
//! and KMS/HSM seal (auto-unseal): the manifest says so under `keys_needed`. Escrow them.

use std::process::ExitCode;

use stoa_backup::prelude::*;

/// The CLI's variables when there is a token; Kubernetes or AppRole auth otherwise.
fn vault_connection() -> Result<VaultConnection, Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if var("VAULT_TOKEN").or_else(|| var("BAO_TOKEN")).is_some() {
        return Ok(VaultConnection::from_env()?);
    }
    let auth = match (
        var("STOA_VAULT_K8S_ROLE"),
        var("STOA_VAULT_ROLE_ID"),
        var("STOA_VAULT_SECRET_ID"),
    ) {
        (Some(role), _, _) => VaultAuth::kubernetes(role),
        (None, Some(r), Some(s)) => VaultAuth::approle(r, s),
        _ => return Err(
            "set VAULT_TOKEN, STOA_VAULT_K8S_ROLE, or STOA_VAULT_ROLE_ID and STOA_VAULT_SECRET_ID"
                .into(),
        ),
    };
    let addr = var("VAULT_ADDR")
        .or_else(|| var("BAO_ADDR"))
        .ok_or("set VAULT_ADDR to the active Vault node")?;
    let conn = VaultConnection::new(&addr, auth)?;
    Ok(match var("VAULT_NAMESPACE") {
        Some(ns) => conn.namespace(ns),
        None => conn,
    })
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    // SIGINT / SIGTERM cancel the run: its partial writes are removed, no manifest is
    // written, and the program exits 130 / 143 (a second signal exits at once).
    let shutdown = stoa_backup::signals::listen()?;
    let conn = vault_connection()?;
    let recipient = std::env::var("STOA_AGE_RECIPIENT")
        .map_err(|_| "set STOA_AGE_RECIPIENT (age1...): Vault backups are always encrypted")?;
    let bucket = std::env::var("STOA_S3_BUCKET")
        .map_err(|_| "set STOA_S3_BUCKET to the bucket to back up into")?;
    // Region, endpoint and credentials: the standard AWS environment.
    let builder = S3Sink::from_env(&bucket)
        .prefix(std::env::var("STOA_S3_PREFIX").unwrap_or_default())
        .allow_loopback_http(true);
    let sink = builder.build()?;

    let pipeline = Pipeline::builder()
        // The snapshot streams from Vault straight into S3 (multipart), never held whole.
        .source(RaftSnapshotSource::new(conn.clone())?)
        .source(VaultKvSource::builder(conn).build()?)
        .sink(sink)
        .compression(ZstdCodec::new(3)?)
        .encryption(AgeEncryption::recipients([recipient])?)
        // Reads the snapshot back (needs the age identity to decrypt): set STOA_AGE_IDENTITY
        // to verify here; without it the structural check already ran during the download.
        .keyring(match std::env::var("STOA_AGE_IDENTITY") {
            Ok(id) => Keyring::new().with_identity(&id)?,
            Err(_) => Keyring::new(),
        })
        .verifier(RaftSnapshotVerifier)
        .observer(TracingObserver)
        .label("job", "vault_snapshot_to_s3")
        .cancel(shutdown.token())
        .build()?;

    let report = pipeline.run().await;
    shutdown.exit_if_received("the run was cancelled and nothing of it was kept");
    let report = report?.into_result()?;
    for a in &report.manifest.artifacts {
        println!(
            "stored {} ({} bytes plain, {} stored, facts: {})",
            a.key,
            a.plain_size,
            a.stored_size,
            serde_json::Value::Object(a.facts.clone())
        );
    }
    Ok(ExitCode::SUCCESS)
}
