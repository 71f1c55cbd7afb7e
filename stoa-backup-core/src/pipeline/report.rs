//! [`RunReport`]: what a run did, and the one error it amounts to when it is incomplete.

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{ArtifactFailure, Manifest, RunId, RunStatus};
use crate::retention::RetentionPlan;

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run id.
    pub run_id: RunId,
    /// How it ended.
    pub status: RunStatus,
    /// The manifest (written as `manifest.json` when complete, `report.json` otherwise).
    pub manifest: Manifest,
    /// The retention plan, when a policy is configured and the run completed.
    pub retention: Option<RetentionPlan>,
    /// Runs deleted by applying the plan.
    pub removed_runs: Vec<RunId>,
    /// Why retention could not be planned or applied, if it failed (the backup itself is
    /// still good).
    pub retention_error: Option<String>,
}

impl RunReport {
    /// Whether the run is a complete backup.
    pub fn is_complete(&self) -> bool {
        self.status == RunStatus::Complete
    }

    /// `Ok(self)` for a complete run; otherwise an error listing every failure.
    ///
    /// The error keeps what the failures say: its kind is the failures' kind when they agree
    /// and otherwise the kind of the first failure in the report (preflight and discovery
    /// failures in source order, then artifacts by key, then verifications by key); it is
    /// retryable only when every failure is. Component, operation, artifact, HTTP status,
    /// hint and context pairs are kept when every failure has the same one; without a
    /// common operation it is `backup run`, without a common hint it says to fix the
    /// failures listed.
    pub fn into_result(self) -> Result<Self> {
        if self.is_complete() {
            return Ok(self);
        }
        let failures = &self.manifest.failures;
        let hint = common(failures, |f| f.hint.as_deref());
        let listed: Vec<&str> = failures
            .iter()
            .map(|f| {
                // The common hint is said once, on the whole error.
                let own = hint.map(|h| format!(" (hint: {h})"));
                own.and_then(|h| f.error.strip_suffix(h.as_str()))
                    .unwrap_or(&f.error)
            })
            .collect();
        let kind = failures.first().map_or(ErrorKind::Source, |f| f.kind);
        let mut e = Error::new(
            kind,
            format!(
                "run {} is {}: {}",
                self.run_id,
                self.status,
                listed.join("; ")
            ),
        )
        .with_retryable(!failures.is_empty() && failures.iter().all(|f| f.retryable))
        .with_operation(common(failures, |f| Some(f.operation.as_str())).unwrap_or("backup run"))
        .with_hint(
            hint.unwrap_or("fix the failures listed; the previous complete run is untouched"),
        );
        if let Some(c) = common(failures, |f| Some(f.component.as_str())) {
            e = e.with_component(c);
        }
        if let Some(a) = common(failures, |f| f.artifact.as_deref()) {
            e = e.with_artifact(a);
        }
        if let Some(s) = common(failures, |f| f.http_status) {
            e = e.with_http_status(s);
        }
        if let Some((first, rest)) = failures.split_first() {
            for (k, v) in &first.context {
                if rest.iter().all(|f| f.context.get(k) == Some(v)) {
                    e = e.with_context(k, v);
                }
            }
        }
        Err(e)
    }
}

/// The value every failure has, if they all have the same one.
fn common<'a, T: PartialEq>(
    failures: &'a [ArtifactFailure],
    field: impl Fn(&'a ArtifactFailure) -> Option<T>,
) -> Option<T> {
    let (first, rest) = failures.split_first()?;
    let value = field(first)?;
    rest.iter()
        .all(|f| field(f).as_ref() == Some(&value))
        .then_some(value)
}
