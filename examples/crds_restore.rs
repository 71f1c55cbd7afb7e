//! Restores STOA's custom resources from a backup: a server-side dry run first (what would
//! be created, updated or left unchanged), then — with `STOA_APPLY=1` — the real apply.
//!
//! ```text
//! STOA_BACKUP_DIR=/backups cargo run --example crds_restore --features kubernetes,local
//! STOA_BACKUP_DIR=/backups STOA_APPLY=1 cargo run --example crds_restore --features kubernetes,local
//! ```
//!
//! Environment:
//! - `STOA_BACKUP_DIR` (required): the backup directory (a PVC) holding `runs/`.
//! - `STOA_RUN_ID` (default: the newest complete run with a `crds` component).
//! - `STOA_APPLY=1`: apply after the dry run (existing objects are overwritten).
//! - `STOA_FORCE_CONFLICTS=1`: take over fields owned by other field managers (e.g. the
//!   operator) instead of failing.
//! - `STOA_AGE_IDENTITY` / `STOA_PASSPHRASE`: the key for encrypted backups.
//!
//! The cluster comes from the environment (in-cluster, or `KUBECONFIG`). Definitions are
//! applied first and waited for until Established, then missing namespaces, then
//! GatewayInstance → Tool → ToolSet → Skill → GatewayBinding.

use stoa_backup::core::{ExistingDataPolicy, RunId, RunStatus};
use stoa_backup::prelude::*;
use stoa_backup::providers::kubernetes::{self, ConflictPolicy};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = env("STOA_BACKUP_DIR").ok_or_else(|| Error::config("STOA_BACKUP_DIR is not set"))?;
    let catalog = Catalog::new(LocalSink::new(dir)?);
    let run_id = match env("STOA_RUN_ID") {
        Some(id) => RunId::parse(id)?,
        None => catalog
            .list_runs(&RunFilter::component("crds"))
            .await?
            .into_iter()
            .filter(|r| r.status == RunStatus::Complete)
            .max_by(|a, b| a.run_id.cmp(&b.run_id))
            .map(|r| r.run_id)
            .ok_or_else(|| {
                Error::config("no complete run with a 'crds' component in the backup directory")
            })?,
    };
    let manifest = catalog.read_manifest(&run_id).await?;
    let mut keyring = Keyring::new();
    if let Some(identity) = env("STOA_AGE_IDENTITY") {
        keyring = keyring.with_identity(&identity)?;
    }
    if let Some(p) = env("STOA_PASSPHRASE") {
        keyring = keyring.with_passphrase(p);
    }

    let conflicts = if env("STOA_FORCE_CONFLICTS").as_deref() == Some("1") {
        ConflictPolicy::Force
    } else {
        ConflictPolicy::Fail
    };
    let restorer = CustomResourcesRestorer::builder(kubernetes::connect().await?)
        .conflicts(conflicts)
        .build()?;

    println!("run {run_id}: dry run");
    let dry = RestoreOptions {
        existing: ExistingDataPolicy::Overwrite,
        dry_run: true,
    };
    let report = restorer
        .restore_run(catalog.sink().as_ref(), &manifest, &keyring, &dry)
        .await?;
    for note in &report.notes {
        println!("  {note}");
    }
    println!(
        "would create {}, update {}, leave {} unchanged",
        report.created, report.updated, report.skipped
    );
    if env("STOA_APPLY").as_deref() != Some("1") {
        println!("set STOA_APPLY=1 to apply");
        return Ok(());
    }
    let apply = RestoreOptions {
        existing: ExistingDataPolicy::Overwrite,
        dry_run: false,
    };
    let report = restorer
        .restore_run(catalog.sink().as_ref(), &manifest, &keyring, &apply)
        .await?;
    println!(
        "applied: created {}, updated {}, unchanged {}",
        report.created, report.updated, report.skipped
    );
    Ok(())
}
