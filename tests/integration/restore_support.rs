//! Restores one component of a run through the [`Restore`] driver, as an application does:
//! plan (preflight and plan, no writes), then, unless it is a dry run, apply the plan.

use std::sync::Arc;

use stoa_backup::core::{
    Error, ErrorKind, ExistingDataPolicy, Keyring, Manifest, Restore, RestoreReport, Restorer,
    Result, Sink,
};

/// Restores `restorer`'s component of the run `manifest` describes (all its artifacts in the
/// run) with the `existing` policy and returns what it did; with `dry_run`, only plans and
/// returns what the plan says it would do. Errors come out as the driver gives them: a
/// failure found while planning has the operation `plan restore` (or the more specific one
/// the restorer set), a plan with conflicts under [`ExistingDataPolicy::Fail`] is refused
/// with [`ErrorKind::Conflict`] before any write.
pub async fn restore_component(
    sink: Arc<dyn Sink>,
    manifest: &Manifest,
    keyring: &Keyring,
    restorer: impl Restorer + 'static,
    existing: ExistingDataPolicy,
    dry_run: bool,
) -> Result<RestoreReport> {
    let component = restorer.component().to_string();
    let restore = Restore::builder()
        .sink(sink)
        .keyring(keyring.clone())
        .restorer(restorer)
        .existing(existing)
        .build()?;
    let plan = restore.plan(manifest).await?;
    let Some(planned) = plan.components.first() else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("run {} holds no '{component}' artifact", manifest.run_id),
        )
        .with_component(component));
    };
    if dry_run {
        return Ok(planned.report.clone());
    }
    let mut done = restore.apply(&plan).await?;
    Ok(done.components.remove(0).report)
}
