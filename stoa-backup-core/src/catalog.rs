//! The catalog: what runs a sink holds, read from the sink itself (no index to lose).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::Keyring;
use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::manifest::{
    Manifest, RunId, RunStatus, RunSummary, VerificationRecord, MANIFEST_FILE, REPORT_FILE,
    RUNS_PREFIX, VERIFICATIONS_DIR,
};
use crate::retention::{RetentionPlan, RetentionPolicy};
use crate::sink::{ObjectMeta, Sink, SinkExt};
use crate::verify::{Verifier, VerifyContext};

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
}

#[derive(Default)]
struct RunObjects {
    manifest: bool,
    report: bool,
    pinned: bool,
    verifications: Vec<ObjectKey>,
    objects: Vec<ObjectMeta>,
}

impl Catalog {
    /// A catalog over `sink`: any [`Sink`], also an `Arc` or `Box` of one (a clone of the
    /// `Arc` the pipeline writes to, typically).
    pub fn new(sink: impl Sink + 'static) -> Self {
        Catalog::shared(Arc::new(sink))
    }

    /// A catalog over an already shared sink (no further wrapping).
    pub(crate) fn shared(sink: Arc<dyn Sink>) -> Self {
        Catalog { sink }
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    async fn scan(&self) -> Result<BTreeMap<RunId, RunObjects>> {
        let objects = self
            .sink
            .list(RUNS_PREFIX)
            .await
            .map_err(|e| e.or_component("catalog").or_operation("list runs"))?;
        let mut runs: BTreeMap<RunId, RunObjects> = BTreeMap::new();
        for o in objects {
            let mut seg = o.key.segments();
            let (Some(_runs), Some(id)) = (seg.next(), seg.next()) else {
                continue;
            };
            let Ok(id) = RunId::parse(id) else { continue };
            let rest: Vec<&str> = seg.collect();
            let entry = runs.entry(id).or_default();
            match rest.as_slice() {
                [f] if *f == MANIFEST_FILE => entry.manifest = true,
                [f] if *f == REPORT_FILE => entry.report = true,
                [f] if *f == PIN_FILE => entry.pinned = true,
                [d, _] if *d == VERIFICATIONS_DIR => entry.verifications.push(o.key.clone()),
                _ => {}
            }
            entry.objects.push(o);
        }
        Ok(runs)
    }

    /// Every run in the sink — complete, failed, partial and incomplete — newest first.
    pub async fn list_all(&self) -> Result<Vec<RunSummary>> {
        let runs = self.scan().await?;
        let mut out = Vec::with_capacity(runs.len());
        for (id, objs) in runs {
            out.push(self.summarize(&id, &objs).await?);
        }
        out.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then(b.run_id.cmp(&a.run_id))
        });
        Ok(out)
    }

    async fn summarize(&self, id: &RunId, objs: &RunObjects) -> Result<RunSummary> {
        let stored_bytes = objs.objects.iter().map(|o| o.size).sum();
        if objs.manifest || objs.report {
            let m = if objs.manifest {
                self.read_manifest(id).await?
            } else {
                let bytes = self.sink.get_bytes(&id.report_key()).await?;
                Manifest::from_json(&bytes)
                    .map_err(|e| e.with_artifact(id.report_key().to_string()))?
            };
            let status = if objs.manifest {
                RunStatus::Complete
            } else {
                m.status
            };
            let mut verified = status == RunStatus::Complete && m.is_verified();
            if let Some(latest) = objs.verifications.iter().max() {
                // A later verification supersedes what the run itself recorded.
                let bytes = self.sink.get_bytes(latest).await?;
                let v: RunVerification = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::integrity("unreadable verification record")
                        .with_artifact(latest.to_string())
                        .with_source(e)
                })?;
                verified = status == RunStatus::Complete && v.ok;
            }
            return Ok(RunSummary {
                run_id: id.clone(),
                started_at: m.started_at,
                status,
                verified,
                pinned: m.pinned || objs.pinned,
                components: m.components(),
                labels: m.labels.clone(),
                stored_bytes,
            });
        }
        // No manifest, no report: crashed or still running. Age from the id, else the objects.
        let started_at = id
            .timestamp()
            .or_else(|| objs.objects.iter().filter_map(|o| o.last_modified).min())
            .unwrap_or_else(Utc::now);
        let components: BTreeSet<String> = objs
            .objects
            .iter()
            .filter_map(|o| o.key.segments().nth(2).map(str::to_string))
            .collect();
        Ok(RunSummary {
            run_id: id.clone(),
            started_at,
            status: RunStatus::Incomplete,
            verified: false,
            pinned: objs.pinned,
            components: components.into_iter().collect(),
            labels: BTreeMap::new(),
            stored_bytes,
        })
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

    /// Runs that are not complete backups (failed, partial, or never finished), newest first.
    pub async fn incomplete_runs(&self) -> Result<Vec<RunSummary>> {
        Ok(self
            .list_all()
            .await?
            .into_iter()
            .filter(|r| r.status != RunStatus::Complete)
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

    /// The newest complete, verified run holding `component`.
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

    /// Plans retention over every run in the sink. Fails (and plans nothing) if the listing
    /// fails.
    pub async fn plan_retention(
        &self,
        policy: &dyn RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<RetentionPlan> {
        let runs = self.list_all().await?;
        Ok(policy.plan(&runs, now))
    }

    /// Applies a plan: for each forgotten run, deletes its manifest first (so a half-deleted
    /// run never reads as complete), then everything else. Re-lists first and refuses to
    /// delete the newest verified run, whatever the plan says. Returns the removed runs.
    pub async fn apply_retention(&self, plan: &RetentionPlan) -> Result<Vec<RunId>> {
        let runs = self.scan().await?;
        let all = self.list_all().await?;
        let newest_verified = all
            .iter()
            .filter(|r| r.status == RunStatus::Complete && r.verified)
            .max_by(|a, b| {
                a.started_at
                    .cmp(&b.started_at)
                    .then(a.run_id.cmp(&b.run_id))
            })
            .map(|r| r.run_id.clone());
        let mut removed = Vec::new();
        for d in plan.forgotten() {
            if Some(&d.run_id) == newest_verified.as_ref() {
                return Err(Error::internal(format!(
                    "retention plan forgets the newest verified run {}",
                    d.run_id
                ))
                .with_component("catalog")
                .with_operation("apply retention")
                .with_hint("this is a bug in the retention policy; nothing more was deleted"));
            }
            let Some(objs) = runs.get(&d.run_id) else {
                continue;
            };
            if objs.manifest {
                self.sink
                    .delete(&d.run_id.manifest_key())
                    .await
                    .map_err(|e| e.or_operation("apply retention"))?;
            }
            for o in &objs.objects {
                if o.key != d.run_id.manifest_key() {
                    self.sink
                        .delete(&o.key)
                        .await
                        .map_err(|e| e.or_operation("apply retention"))?;
                }
            }
            removed.push(d.run_id.clone());
        }
        Ok(removed)
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

/// Formats runs as a plain-text table for terminals.
pub fn format_runs_table(runs: &[RunSummary]) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "{:<26} {:<20} {:<10} {:<8} {:>12}  components",
        "run", "started (UTC)", "status", "verified", "bytes"
    )
    .ok();
    for r in runs {
        writeln!(
            out,
            "{:<26} {:<20} {:<10} {:<8} {:>12}  {}",
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
