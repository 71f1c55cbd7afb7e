//! The catalog: what runs a sink holds, read from the sink itself (no index to lose).
//!
//! One listing of `runs/` is the truth: a run is complete when its manifest is there (and
//! every artifact it names is listed at its recorded size), failed or partial when its
//! report is, incomplete otherwise. `runs/<id>/heartbeat.json` and the other objects of an
//! unfinished run only date its last activity, by which retention ages it. A run whose
//! records cannot be read is damaged: reported with the reason, never a restore candidate,
//! never deleted by retention, and never in the way of the other runs.
//!
//! Retention leaves alone the runs of a component whose run lock is held
//! ([`Catalog::apply_retention`]): the leases in the sink (`locks/`, [`SinkLock`]) by
//! default, or those of the lock given to [`Catalog::with_lock`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::Keyring;
use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::lock::{RunLock, SinkLock};
use crate::manifest::{
    Manifest, RunId, RunStatus, RunSummary, VerificationRecord, VERIFICATIONS_DIR,
};
use crate::sink::{Sink, SinkExt};
use crate::verify::{Verifier, VerifyContext};

mod apply;
mod scan;

const PIN_FILE: &str = "pin.json";

/// Selects runs by component and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs that stored this component.
    pub component: Option<String>,
    /// Only runs carrying all these labels.
    pub labels: BTreeMap<String, String>,
}

impl RunFilter {
    /// Runs holding `component`.
    pub fn component(component: impl Into<String>) -> Self {
        RunFilter {
            component: Some(component.into()),
            ..Default::default()
        }
    }

    /// Also requires a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Whether a run matches.
    pub fn matches(&self, run: &RunSummary) -> bool {
        self.component
            .as_ref()
            .is_none_or(|c| run.components.iter().any(|x| x == c))
            && self
                .labels
                .iter()
                .all(|(k, v)| run.labels.get(k) == Some(v))
    }
}

/// A later verification of a whole run, stored under `runs/<id>/verifications/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunVerification {
    /// The run verified.
    pub run_id: RunId,
    /// When.
    pub at: DateTime<Utc>,
    /// Whether every artifact passed every applicable verifier.
    pub ok: bool,
    /// Per-artifact results: (artifact key, record).
    pub results: Vec<(ObjectKey, VerificationRecord)>,
}

/// Reads runs from a sink.
#[derive(Debug, Clone)]
pub struct Catalog {
    sink: Arc<dyn Sink>,
    /// Whose leases retention respects.
    leases: Leases,
}

/// Where retention looks for run locks.
#[derive(Debug, Clone)]
enum Leases {
    /// A [`SinkLock`] on the catalog's own sink, when the sink has conditional puts.
    InSink,
    /// The lock given.
    Lock(Arc<dyn RunLock>),
}

impl Catalog {
    /// A catalog over `sink`: any [`Sink`], also an `Arc` or `Box` of one (a clone of the
    /// `Arc` the pipeline writes to, typically).
    pub fn new(sink: impl Sink + 'static) -> Self {
        Catalog::shared(Arc::new(sink))
    }

    /// A catalog over an already shared sink (no further wrapping).
    pub(crate) fn shared(sink: Arc<dyn Sink>) -> Self {
        Catalog {
            sink,
            leases: Leases::InSink,
        }
    }

    /// Retention respects the leases of `lock` (a Kubernetes Lease lock, say) instead of
    /// those in the sink: any [`RunLock`], also an `Arc` of the one the pipeline takes.
    pub fn with_lock(self, lock: impl RunLock + 'static) -> Self {
        self.with_shared_lock(Some(Arc::new(lock)))
    }

    /// [`with_lock`](Self::with_lock) for a shared lock; `None` keeps the sink's leases.
    pub(crate) fn with_shared_lock(mut self, lock: Option<Arc<dyn RunLock>>) -> Self {
        if let Some(lock) = lock {
            self.leases = Leases::Lock(lock);
        }
        self
    }

    /// The lock whose leases retention respects, if any can be held on this catalog's sink.
    pub(crate) fn lease_lock(&self) -> Option<Arc<dyn RunLock>> {
        match &self.leases {
            Leases::Lock(l) => Some(l.clone()),
            Leases::InSink if self.sink.capabilities().conditional_put => {
                Some(Arc::new(SinkLock::shared(self.sink.clone())))
            }
            Leases::InSink => None,
        }
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    /// Every run in the sink — complete, failed, partial, incomplete and damaged — newest
    /// first. A run whose manifest or report cannot be read (not JSON, truncated, a newer
    /// format) or whose manifest names an artifact the listing lacks or holds at another
    /// size is listed as [`RunStatus::Damaged`] with the reason; it does not hide the other
    /// runs. Fails when listing the sink or reading from it fails.
    pub async fn list_all(&self) -> Result<Vec<RunSummary>> {
        let listing = self.scan().await?;
        self.summaries(&listing).await
    }

    /// Complete runs matching `filter`, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        Ok(self
            .list_all()
            .await?
            .into_iter()
            .filter(|r| r.status == RunStatus::Complete && filter.matches(r))
            .collect())
    }

    /// Runs that did not complete (failed, partial, or never finished), newest first.
    /// Damaged runs are listed by [`Catalog::damaged_runs`].
    pub async fn incomplete_runs(&self) -> Result<Vec<RunSummary>> {
        Ok(self
            .list_all()
            .await?
            .into_iter()
            .filter(|r| !matches!(r.status, RunStatus::Complete | RunStatus::Damaged))
            .collect())
    }

    /// Damaged runs ([`RunStatus::Damaged`], each with its [`RunSummary::damage`]), newest
    /// first: never restore candidates, never deleted by retention.
    pub async fn damaged_runs(&self) -> Result<Vec<RunSummary>> {
        Ok(self
            .list_all()
            .await?
            .into_iter()
            .filter(|r| r.status == RunStatus::Damaged)
            .collect())
    }

    /// Reads the manifest of a complete run.
    pub async fn read_manifest(&self, run: &RunId) -> Result<Manifest> {
        let key = run.manifest_key();
        let bytes = self.sink.get_bytes(&key).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!("run {run} has no manifest: it does not exist or is not complete"),
                )
                .with_component("catalog")
                .with_operation("read manifest")
                .with_artifact(key.to_string())
                .with_hint("list complete runs with the catalog")
            } else {
                e
            }
        })?;
        Manifest::from_json(&bytes)
            .map_err(|e| e.with_component("catalog").with_artifact(key.to_string()))
    }

    /// The newest complete, verified run holding `component` (damaged runs are never
    /// candidates).
    pub async fn latest_verified(&self, component: &str) -> Result<Option<Manifest>> {
        let runs = self.list_runs(&RunFilter::component(component)).await?;
        match runs.into_iter().find(|r| r.verified) {
            Some(r) => Ok(Some(self.read_manifest(&r.run_id).await?)),
            None => Ok(None),
        }
    }

    /// Pins or unpins a run (pinned runs survive every retention rule).
    pub async fn set_pinned(&self, run: &RunId, pinned: bool) -> Result<()> {
        let key = ObjectKey::new(format!("{}/{PIN_FILE}", run.prefix()))?;
        if pinned {
            self.read_manifest(run).await?;
            self.sink
                .put_bytes(&key, bytes::Bytes::from_static(b"{\"pinned\":true}\n"))
                .await?;
        } else {
            self.sink.delete(&key).await?;
        }
        Ok(())
    }

    /// Copies run `run` from this catalog's sink to `target`'s, stored bytes unchanged and
    /// the manifest last, as [`Replicator::copy_run`](crate::replicate::Replicator::copy_run)
    /// does with its defaults (the target's run lock in the target sink, no full
    /// verification): a run already there with the same digests is left alone, a partly
    /// copied one is completed. Use a [`Replicator`](crate::replicate::Replicator) for the
    /// options and for whole passes.
    pub async fn copy_run(
        &self,
        run: &RunId,
        target: &Catalog,
    ) -> Result<crate::replicate::RunCopy> {
        crate::replicate::Replicator::new(self, target)
            .copy_run(run)
            .await
    }

    /// Verifies every artifact of a run again and records the result under
    /// `runs/<id>/verifications/`. Returns the record. `verifiers` are any [`Verifier`]s of one
    /// type: `&[ChecksumVerifier::deep()]`, or `Arc<dyn Verifier>`s / `Box<dyn Verifier>`s to
    /// mix kinds.
    pub async fn verify_run(
        &self,
        run: &RunId,
        verifiers: &[impl Verifier],
        keyring: &Keyring,
    ) -> Result<RunVerification> {
        if verifiers.is_empty() {
            return Err(Error::config("no verifier given").with_operation("verify run"));
        }
        let manifest = self.read_manifest(run).await?;
        let mut results = Vec::new();
        for artifact in &manifest.artifacts {
            for v in verifiers.iter().filter(|v| v.applies_to(artifact)) {
                let ctx = VerifyContext {
                    sink: self.sink.as_ref(),
                    artifact,
                    keyring,
                };
                let record = v.verify(&ctx).await.map_err(|e| {
                    e.or_component(artifact.component.clone())
                        .or_operation("verify")
                        .or_artifact(artifact.key.to_string())
                })?;
                results.push((artifact.key.clone(), record));
            }
        }
        let at = Utc::now();
        let verification = RunVerification {
            run_id: run.clone(),
            ok: !results.is_empty() && results.iter().all(|(_, r)| r.ok),
            at,
            results,
        };
        let key = ObjectKey::new(format!(
            "{}/{VERIFICATIONS_DIR}/{}.json",
            run.prefix(),
            at.format("%Y%m%dT%H%M%S%.6fZ")
        ))?;
        let body = serde_json::to_vec_pretty(&verification)
            .map_err(|e| Error::internal("serialize verification").with_source(e))?;
        self.sink.put_bytes(&key, body.into()).await?;
        Ok(verification)
    }
}

/// Formats runs as a plain-text table for terminals (a damaged run's line ends with why).
pub fn format_runs_table(runs: &[RunSummary]) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "{:<26} {:<20} {:<10} {:<8} {:>12}  components",
        "run", "started (UTC)", "status", "verified", "bytes"
    )
    .ok();
    for r in runs {
        let damage = r
            .damage
            .as_ref()
            .map(|d| format!("  (damaged: {d})"))
            .unwrap_or_default();
        writeln!(
            out,
            "{:<26} {:<20} {:<10} {:<8} {:>12}  {}{damage}",
            r.run_id.as_str(),
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.status.to_string(),
            if r.verified { "yes" } else { "no" },
            r.stored_bytes,
            r.components.join(",")
        )
        .ok();
    }
    out
}

#[cfg(test)]
mod tests;
