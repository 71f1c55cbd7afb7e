//! Restores STOA's custom resources from a backup with the restore driver: a plan first (the
//! API server's dry run of every apply: what would be created, updated or left unchanged,
//! what it rejects and why, and what cannot be validated before its CRD or namespace
//! exists), then — with `STOA_APPLY=1` — the apply of that plan.
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
//! - `STOA_CONTINUE=1`: apply every object the server accepts and fail at the end listing
//!   each rejected one (default: stop at the first).
//! - `STOA_AGE_IDENTITY` / `STOA_PASSPHRASE`: the key for encrypted backups.
//!
//! The cluster comes from the environment (in-cluster, or `KUBECONFIG`). Namespaces are
//! applied first (with the labels and annotations backed up), then definitions, waited for
//! until Established, then Secrets, ConfigMaps, GatewayInstance → Tool → ToolSet → Skill →
//! GatewayBinding. A failed apply names every object applied, each one that failed with
//! the API server's reason, and what was not attempted.

use stoa_backup::core::{ExistingDataPolicy, RunId, RunStatus};
use stoa_backup::prelude::*;
use stoa_backup::providers::kubernetes::{
    self, ConflictPolicy, CustomResourcesRestoreFacts, FailurePolicy, ObjectOutcome,
};

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
    let on_failure = if env("STOA_CONTINUE").as_deref() == Some("1") {
        FailurePolicy::Continue
    } else {
        FailurePolicy::Stop
    };
    let restorer = CustomResourcesRestorer::builder(kubernetes::connect().await?)
        .conflicts(conflicts)
        .on_failure(on_failure)
        .build()?;

    // The restore driver: a plan (the restorer's server-side dry run, no writes), then the
    // apply of that plan. Existing objects are overwritten, as `kubectl apply` would.
    let restore = Restore::builder()
        .sink(catalog.sink().clone())
        .keyring(keyring)
        .restorer(restorer)
        .existing(ExistingDataPolicy::Overwrite)
        .build()?;
    println!("run {run_id}: dry run");
    let plan = restore.plan(&manifest).await?;
    for c in &plan.components {
        for note in &c.report.notes {
            println!("  {note}");
        }
    }
    print!("{}", plan.table());
    for c in &plan.components {
        let facts = CustomResourcesRestoreFacts::of(&c.report)?;
        let rejected: Vec<_> = facts.with_outcome(ObjectOutcome::Rejected).collect();
        let waiting = facts.with_outcome(ObjectOutcome::CannotValidate).count();
        if waiting > 0 {
            println!("{waiting} objects cannot be validated before the restore creates their CRD or namespace");
        }
        if !rejected.is_empty() {
            println!("the API server rejects {} objects:", rejected.len());
            for o in rejected {
                println!(
                    "  {}: {}",
                    o.label(),
                    o.reason.as_deref().unwrap_or_default()
                );
            }
        }
    }
    if env("STOA_APPLY").as_deref() != Some("1") {
        println!("set STOA_APPLY=1 to apply");
        return Ok(());
    }
    let restored = match restore.apply(&plan).await {
        Ok(r) => r,
        Err(e) => {
            // The error lists what was applied, each failure with its reason, and what was
            // not attempted: one line each.
            eprintln!("restore failed: {}", e.message());
            for (what, objects) in e.context() {
                eprintln!("  {what}: {objects}");
            }
            if let Some(hint) = e.hint() {
                eprintln!("  hint: {hint}");
            }
            std::process::exit(1);
        }
    };
    for c in &restored.components {
        println!(
            "applied {}: created {}, updated {}, unchanged {}",
            c.component, c.report.created, c.report.updated, c.report.skipped
        );
    }
    Ok(())
}
