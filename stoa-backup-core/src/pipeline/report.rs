//! [`RunReport`]: what a run did, and the one error it amounts to when it was not a clean
//! success.

use chrono::{DateTime, Utc};

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{ArtifactFailure, Manifest, RunId, RunStatus};
use crate::observer::Event;
use crate::replicate::RunCopy;
use crate::retention::RetentionPlan;

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    /// The run id.
    pub run_id: RunId,
    /// How the backup ended (the manifest's status): a run whose retention failed is still
    /// `Complete`, since its backup is stored; see [`RunReport::is_success`].
    pub status: RunStatus,
    /// The manifest (written as `manifest.json` when complete, `report.json` otherwise).
    pub manifest: Manifest,
    /// The retention plan, when a policy is configured and the run completed.
    pub retention: Option<RetentionPlan>,
    /// Runs deleted by applying the plan.
    pub removed_runs: Vec<RunId>,
    /// Why retention could not be planned or applied, or why it was skipped (the run was
    /// cancelled after its manifest was written). The backup itself is stored; the error
    /// keeps the kind of the cause, names the run (context `run`) and says so.
    pub retention_error: Option<Error>,
    /// The copies to the pipeline's replicas ([`PipelineBuilder::replicate_to`]), one per
    /// target in the order given, after a complete and verified run. A failed copy leaves
    /// the run complete here (its manifest is written): the error says so and the target's
    /// next copy (or a `replicate` pass) finishes it.
    ///
    /// [`PipelineBuilder::replicate_to`]: super::PipelineBuilder::replicate_to
    pub replication: Vec<ReplicaResult>,
}

/// The copy of a run to one replica target.
#[derive(Debug)]
pub struct ReplicaResult {
    /// The target's name.
    pub target: String,
    /// What the copy did, when it succeeded.
    pub copy: Option<RunCopy>,
    /// Why it failed (kind and context kept; context `run` and `target`).
    pub error: Option<Error>,
}

impl Clone for ReplicaResult {
    fn clone(&self) -> Self {
        ReplicaResult {
            target: self.target.clone(),
            copy: self.copy.clone(),
            error: self.error.as_ref().map(Error::duplicate),
        }
    }
}

impl Clone for RunReport {
    fn clone(&self) -> Self {
        RunReport {
            run_id: self.run_id.clone(),
            status: self.status,
            manifest: self.manifest.clone(),
            retention: self.retention.clone(),
            removed_runs: self.removed_runs.clone(),
            retention_error: self.retention_error.as_ref().map(Error::duplicate),
            replication: self.replication.clone(),
        }
    }
}

impl RunReport {
    /// Whether the run is a complete backup (whatever became of retention).
    pub fn is_complete(&self) -> bool {
        self.status == RunStatus::Complete
    }

    /// Whether everything asked for was done: the backup is complete, retention (if
    /// configured) ran without error, and every replica holds the run. What
    /// [`RunReport::into_result`] returns `Ok` for.
    pub fn is_success(&self) -> bool {
        self.is_complete()
            && self.retention_error.is_none()
            && self.replication_errors().next().is_none()
    }

    /// The replicas whose copy failed, with why.
    pub fn replication_errors(&self) -> impl Iterator<Item = (&str, &Error)> {
        self.replication
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| (r.target.as_str(), e)))
    }

    /// `Ok(self)` for a complete run whose retention (if any) succeeded; otherwise an error.
    ///
    /// For a complete run whose retention failed or was skipped, the error is
    /// [`RunReport::retention_error`]: it says the backup is stored and keeps the cause's
    /// kind, so a caller never takes the run for a plain success nor for a lost backup. A
    /// complete run whose copy to a replica failed gives the same kind of error, naming the
    /// target (context `target`).
    ///
    /// For an incomplete run, the error lists every failure and keeps what they say: its
    /// kind is the failures' kind when they agree and otherwise the kind of the first failure
    /// in the report (preflight and discovery failures in source order, then artifacts by
    /// key, then verifications by key); it is retryable only when every failure is.
    /// Component, operation, artifact, HTTP status, hint and context pairs are kept when
    /// every failure has the same one; without a common operation it is `backup run`,
    /// without a common hint it says to fix the failures listed.
    pub fn into_result(self) -> Result<Self> {
        if self.is_complete() {
            if let Some(e) = self.retention_error {
                return Err(e);
            }
            let failed = self.replication_errors().next();
            return match failed {
                None => Ok(self),
                Some((target, e)) => Err(retention_failed(
                    &self.run_id,
                    "replicate",
                    &format!("its copy to {target} failed"),
                    e.duplicate(),
                )
                .with_context("target", target)
                .with_hint("the backup itself is stored (its manifest is written); fix the cause, then run `stoa-backup replicate` (Replicator::replicate) or let the next run copy it")),
            };
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

impl super::Pipeline {
    /// Tells the observer the run ended, however it did (metrics count failed runs too).
    pub(super) fn announce_done(
        &self,
        run_id: &RunId,
        started_at: DateTime<Utc>,
        outcome: std::result::Result<&RunReport, &Error>,
    ) {
        let mut components: Vec<String> = Vec::new();
        for s in &self.sources {
            if !components.iter().any(|c| c == s.component()) {
                components.push(s.component().to_string());
            }
        }
        let (status, verified, error) = match outcome {
            Ok(r) => (
                r.status,
                r.status == RunStatus::Complete && r.manifest.is_verified(),
                None,
            ),
            Err(e) => (RunStatus::Failed, false, Some(e)),
        };
        self.observer.on_event(&Event::RunDone {
            run_id,
            status,
            components: &components,
            duration: (Utc::now() - started_at).to_std().unwrap_or_default(),
            verified,
            error,
        });
    }
}

/// The error of retention after run `run_id` was stored (`operation`: `plan retention`,
/// `apply retention` or `retention`; `what` says what became of it): the cause's kind,
/// retryability, component and HTTP status, a message that says the backup is safe, and the
/// run's id as context `run`.
pub(super) fn retention_failed(run_id: &RunId, operation: &str, what: &str, cause: Error) -> Error {
    let mut e = Error::new(
        cause.kind(),
        format!("run {run_id} is stored and complete, but {what}"),
    )
    .with_retryable(cause.is_retryable())
    .with_operation(operation)
    .with_context("run", run_id.as_str())
    .with_hint(
        "the backup itself is stored (its manifest is written); fix the cause, then prune old \
         runs with the catalog or let the next run do it",
    );
    if let Some(c) = cause.component() {
        e = e.with_component(c);
    }
    if let Some(s) = cause.http_status() {
        e = e.with_http_status(s);
    }
    e.with_source(cause)
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
