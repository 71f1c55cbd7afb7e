//! What a copy and a replication pass did.

use serde::Serialize;

use crate::catalog::RunVerification;
use crate::error::Error;
use crate::manifest::RunId;
use crate::retention::RetentionPlan;

/// How a run came to be complete on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyOutcome {
    /// It was not there: every artifact, then the manifest, was copied.
    Copied,
    /// Part of it was there (an interrupted copy): what was missing or wrong was copied,
    /// then the manifest.
    Completed,
    /// It was there already with the same digests: nothing was written.
    AlreadyPresent,
}

impl CopyOutcome {
    /// Whether the copy wrote anything.
    pub fn wrote(self) -> bool {
        self != CopyOutcome::AlreadyPresent
    }

    /// `copied`, `completed` or `already_present`.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyOutcome::Copied => "copied",
            CopyOutcome::Completed => "completed",
            CopyOutcome::AlreadyPresent => "already_present",
        }
    }
}

/// One run made complete (or found complete) on the target.
#[derive(Debug, Clone, Serialize)]
pub struct RunCopy {
    /// The run.
    pub run_id: RunId,
    /// The target's name.
    pub target: String,
    /// The components of the run.
    pub components: Vec<String>,
    /// What the copy did.
    pub outcome: CopyOutcome,
    /// Artifacts copied.
    pub artifacts_copied: usize,
    /// Artifacts found on the target with the recorded size and digest, and left alone.
    pub artifacts_present: usize,
    /// Stored bytes copied (artifacts only).
    pub bytes_copied: u64,
    /// Copied artifacts the target's store checked on write (S3's SHA-256 checksums).
    pub store_checked: usize,
    /// Copied artifacts read back from the target and hashed.
    pub read_back: usize,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The full verification on the target, when asked for
    /// ([`Replicator::verify_with`](super::Replicator::verify_with)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<RunVerification>,
}

/// A run a pass did not copy, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedRun {
    /// The run.
    pub run_id: RunId,
    /// Why (not verified on the source, damaged there).
    pub reason: String,
}

/// A run whose copy failed.
#[derive(Debug)]
pub struct ReplicationFailure {
    /// The run.
    pub run_id: RunId,
    /// Why (kind, component, artifact, hint kept).
    pub error: Error,
}

impl Clone for ReplicationFailure {
    fn clone(&self) -> Self {
        ReplicationFailure {
            run_id: self.run_id.clone(),
            error: self.error.duplicate(),
        }
    }
}

/// What a [`replicate`](super::Replicator::replicate) pass did.
#[derive(Debug)]
pub struct ReplicationReport {
    /// The target's name.
    pub target: String,
    /// Runs copied, completed or found present, in the order handled.
    pub runs: Vec<RunCopy>,
    /// Runs of the source left out, with why.
    pub skipped: Vec<SkippedRun>,
    /// Runs whose copy failed (the pass goes on with the others, except after a
    /// cancellation).
    pub failed: Vec<ReplicationFailure>,
    /// The target's retention plan, when asked for
    /// ([`Replicator::retention`](super::Replicator::retention)) and the pass copied anything.
    pub retention: Option<RetentionPlan>,
    /// Runs the target's retention deleted.
    pub removed_runs: Vec<RunId>,
    /// Why the target's retention could not be planned or applied.
    pub retention_error: Option<Error>,
}

impl Clone for ReplicationReport {
    fn clone(&self) -> Self {
        ReplicationReport {
            target: self.target.clone(),
            runs: self.runs.clone(),
            skipped: self.skipped.clone(),
            failed: self.failed.clone(),
            retention: self.retention.clone(),
            removed_runs: self.removed_runs.clone(),
            retention_error: self.retention_error.as_ref().map(Error::duplicate),
        }
    }
}

impl ReplicationReport {
    pub(super) fn new(target: &str) -> Self {
        ReplicationReport {
            target: target.to_string(),
            runs: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
            retention: None,
            removed_runs: Vec::new(),
            retention_error: None,
        }
    }

    /// Whether every run to copy is complete on the target now (nothing failed).
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.retention_error.is_none()
    }

    /// Whether some runs were copied (or present) and some failed.
    pub fn is_partial(&self) -> bool {
        !self.failed.is_empty() && !self.runs.is_empty()
    }

    /// Runs the pass wrote (copied or completed).
    pub fn written(&self) -> impl Iterator<Item = &RunCopy> {
        self.runs.iter().filter(|r| r.outcome.wrote())
    }

    /// Stored bytes copied by the pass.
    pub fn bytes_copied(&self) -> u64 {
        self.runs.iter().map(|r| r.bytes_copied).sum()
    }
}
