//! The end of a run: verification, the check that every artifact is still there, the
//! manifest (or the failure report), and retention.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::heartbeat::HeartbeatWriter;
use super::report::{retention_failed, ReplicaResult, RunReport};
use super::store::{InlineOutcome, StoredArtifact};
use super::Pipeline;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::lock::LeaseKeeper;
use crate::manifest::{
    ArtifactFailure, ArtifactRecord, ArtifactTimings, Manifest, RunId, RunStatus, RunSummary,
    VerificationRecord, VerifyMethod, MANIFEST_FORMAT_VERSION,
};
use crate::observer::Event;
use crate::replicate::Replicator;
use crate::retention::{RetentionPlan, RetentionPolicy};
use crate::sink::SinkExt;
use crate::verify::{ChecksumVerifier, Verifier, VerifyContext};
use chrono::Utc;

/// What a run has before its manifest: when it started, what it stored, what failed.
pub(super) struct Stored {
    pub started_at: chrono::DateTime<Utc>,
    pub artifacts: Vec<ArtifactRecord>,
    pub failures: Vec<ArtifactFailure>,
}

impl Pipeline {
    /// Verifies every stored artifact: the verdicts of its inline checks, then every other
    /// verifier that applies (reading the artifact back) and, after inline checks, the check
    /// that the store holds what was sent. A failed check becomes a failure of the run. The
    /// records come back with their verifications and timings.
    pub(super) async fn verify_all(
        &self,
        artifacts: Vec<StoredArtifact>,
        failures: &mut Vec<ArtifactFailure>,
    ) -> Vec<ArtifactRecord> {
        let mut records = Vec::with_capacity(artifacts.len());
        for artifact in artifacts {
            let (record, failure) = self.verify_artifact(artifact).await;
            failures.extend(failure);
            records.push(record);
        }
        records
    }

    async fn verify_artifact(
        &self,
        artifact: StoredArtifact,
    ) -> (ArtifactRecord, Option<ArtifactFailure>) {
        let StoredArtifact {
            mut record,
            inline,
            store_checked,
            started,
            dump_ms,
            stored_at,
        } = artifact;
        let checked = self
            .run_checks(&mut record, inline, store_checked.as_deref(), stored_at)
            .await;
        let done = Instant::now();
        let store_ms = stored_at.duration_since(started).as_millis() as u64;
        let timings = ArtifactTimings {
            dump_ms,
            store_ms,
            verify_ms: done.duration_since(stored_at).as_millis() as u64,
            total_ms: done.duration_since(started).as_millis() as u64,
            plain_bytes_per_sec: ArtifactTimings::rate(record.plain_size, store_ms),
            stored_bytes_per_sec: ArtifactTimings::rate(record.stored_size, store_ms),
        };
        record.timings = Some(timings);
        self.observer.on_event(&Event::ArtifactTimings {
            component: &record.component,
            name: &record.name,
            timings: &timings,
        });
        (record, checked.err().map(|f| *f))
    }

    /// Every check of one artifact, in the pipeline's verifier order; stops at the first
    /// that fails.
    async fn run_checks(
        &self,
        record: &mut ArtifactRecord,
        inline: Vec<InlineOutcome>,
        store_checked: Option<&str>,
        stored_at: Instant,
    ) -> std::result::Result<(), Box<ArtifactFailure>> {
        let ran_inline = !inline.is_empty();
        let mut inline = inline.into_iter().peekable();
        for verifier in &self.verifiers {
            let outcome = match inline.next_if(|o| Arc::ptr_eq(&o.verifier, verifier)) {
                Some(o) => o.result.map(|mut v| {
                    v.method.get_or_insert(VerifyMethod::Inline);
                    v.duration_ms.get_or_insert(
                        o.finished_at
                            .saturating_duration_since(stored_at)
                            .as_millis() as u64,
                    );
                    v
                }),
                None if verifier.applies_to(record) => {
                    self.read_back(verifier.as_ref(), record).await
                }
                None => continue,
            };
            self.accept(record, verifier.name(), outcome)?;
        }
        // A checksum verifier that read the stored bytes back has compared them already.
        let digest_checked = record.verification.iter().any(|v| {
            v.method == Some(VerifyMethod::ReadBack)
                && [
                    ChecksumVerifier::new().name(),
                    ChecksumVerifier::deep().name(),
                ]
                .contains(&v.verifier.as_str())
        });
        if ran_inline && !digest_checked {
            // The inline checks read the bytes as produced: the stored ones must be those.
            let outcome = match store_checked {
                Some(how) => Ok(VerificationRecord::now(
                    ChecksumVerifier::new().name(),
                    true,
                    format!(
                        "{} bytes, sha256 {}: checked by the store on write ({how})",
                        record.stored_size, record.stored_sha256
                    ),
                )
                .with_method(VerifyMethod::StoreChecksum)),
                None => self.read_back(&ChecksumVerifier::new(), record).await,
            };
            self.accept(record, ChecksumVerifier::new().name(), outcome)?;
        }
        Ok(())
    }

    /// Runs `verifier` on the stored artifact, timed.
    async fn read_back(
        &self,
        verifier: &dyn Verifier,
        record: &ArtifactRecord,
    ) -> Result<VerificationRecord> {
        let t0 = Instant::now();
        let ctx = VerifyContext {
            sink: self.sink.as_ref(),
            artifact: record,
            keyring: &self.keyring,
        };
        let mut v = verifier.verify(&ctx).await?;
        v.method.get_or_insert(VerifyMethod::ReadBack);
        v.duration_ms.get_or_insert(t0.elapsed().as_millis() as u64);
        Ok(v)
    }

    /// Records a check's verdict on the artifact; a failed or impossible check is the
    /// artifact's failure.
    fn accept(
        &self,
        record: &mut ArtifactRecord,
        verifier: &str,
        outcome: Result<VerificationRecord>,
    ) -> std::result::Result<(), Box<ArtifactFailure>> {
        let v = outcome.map_err(|e| {
            let e = e
                .or_component(record.component.clone())
                .or_operation("verify")
                .or_artifact(record.key.to_string());
            Box::new(verify_failure(record, e))
        })?;
        self.observer.on_event(&Event::Verified {
            component: &record.component,
            name: &record.name,
            record: &v,
        });
        let ok = v.ok;
        let detail = v.detail.clone();
        record.verification.push(v);
        if ok {
            return Ok(());
        }
        let e = Error::integrity(format!("verifier '{verifier}' failed: {detail}"))
            .with_component(record.component.clone())
            .with_operation("verify")
            .with_artifact(record.key.to_string())
            .with_hint("the stored artifact does not pass its check: re-run the backup");
        Err(Box::new(verify_failure(record, e)))
    }

    /// Writes the manifest (or the failure report) and runs retention. Not undone by a
    /// cancellation: once the manifest may be stored, the report must say what is stored.
    /// With a run lock (`keeper`), the leases are renewed right before a manifest (a run
    /// whose lease is lost writes none) and released right after it, before retention.
    pub(super) async fn finish(
        &self,
        run_id: &RunId,
        mut stored: Stored,
        heartbeat: &HeartbeatWriter<'_>,
        keeper: Option<&LeaseKeeper>,
    ) -> Result<RunReport> {
        self.check_still_stored(run_id, &mut stored).await;
        let Stored {
            started_at,
            artifacts,
            failures,
        } = stored;
        let status = if failures.is_empty() {
            RunStatus::Complete
        } else if artifacts.is_empty() {
            RunStatus::Failed
        } else {
            RunStatus::Partial
        };
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            run_id: run_id.clone(),
            status,
            started_at,
            finished_at: Utc::now(),
            library_version: crate::VERSION.to_string(),
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            labels: self.labels.clone(),
            artifacts,
            failures,
            pinned: false,
        };
        if let (Some(k), RunStatus::Complete) = (keeper, status) {
            if let Err(e) = k.renew_now().await {
                heartbeat.remove().await;
                return Err(e.with_context("run", run_id.as_str()));
            }
        }
        let written = self.write_manifest(&manifest).await;
        heartbeat.remove().await;
        if let Some(k) = keeper {
            k.release().await;
        }
        written?;

        let mut report = RunReport {
            run_id: run_id.clone(),
            status,
            manifest,
            retention: None,
            removed_runs: Vec::new(),
            retention_error: None,
            replication: Vec::new(),
        };
        if status == RunStatus::Complete {
            self.replicate(&mut report).await;
            self.run_retention(&mut report).await;
        }
        Ok(report)
    }

    /// Lists the run's objects and drops (as integrity failures) the artifacts that are no
    /// longer there or no longer hold what was stored: a check that read an open file of a
    /// deleted artifact passed, and only the sink's listing tells.
    async fn check_still_stored(&self, run_id: &RunId, stored: &mut Stored) {
        if stored.artifacts.is_empty() {
            return;
        }
        let listed = match self.sink.list(&run_id.prefix()).await {
            Ok(l) => l,
            Err(e) => {
                // Without a listing nothing shows the artifacts are there: no manifest.
                let component = format!("storage ({})", self.sink.describe());
                let e = e
                    .or_component(component.clone())
                    .or_operation("check stored artifacts")
                    .or_hint("the storage could not list the run before its manifest: re-run the backup once it lists again");
                stored.failures.push(ArtifactFailure::from_error(
                    component,
                    None,
                    "check stored artifacts",
                    &e,
                ));
                return;
            }
        };
        let sizes: HashMap<&str, u64> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
        let mut gone = Vec::new();
        stored.artifacts.retain(|a| {
            let problem = match sizes.get(a.key.as_str()) {
                Some(&size) if size == a.stored_size => return true,
                Some(&size) => format!(
                    "holds {size} bytes now where {} were stored and checked",
                    a.stored_size
                ),
                None => "is missing from the storage although it was stored and checked".into(),
            };
            let e = Error::integrity(problem)
                .with_component(a.component.clone())
                .with_operation("check stored artifacts")
                .with_artifact(a.key.to_string())
                .with_hint(
                    "something changed or deleted it while the run was going on (retention \
                     elsewhere with a grace period shorter than the run?): re-run the backup",
                );
            gone.push(ArtifactFailure::from_error(
                &a.component,
                Some(a.name.clone()),
                "check stored artifacts",
                &e,
            ));
            false
        });
        for f in &gone {
            tracing::warn!(component = %f.component, artifact = ?f.name, error = %f.error, "stored artifact gone before the manifest");
            self.observer.on_event(&Event::ArtifactFailed {
                component: &f.component,
                name: f.name.as_deref(),
                error: &f.error,
            });
        }
        stored.failures.extend(gone);
    }

    /// The manifest of a complete run, last: its presence is what makes the run complete.
    /// Another run gets `report.json`, best effort (without it the run still reads as
    /// incomplete, which is just as safe).
    async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let body = bytes::Bytes::from(manifest.to_json()?);
        let run_id = &manifest.run_id;
        if manifest.status == RunStatus::Complete {
            self.sink
                .put_bytes(&run_id.manifest_key(), body)
                .await
                .map_err(|e| {
                    e.or_operation("write manifest")
                        .or_artifact(run_id.manifest_key().to_string())
                })?;
        } else if let Err(e) = self.sink.put_bytes(&run_id.report_key(), body).await {
            tracing::warn!(error = %e, "could not write the failure report");
        }
        Ok(())
    }

    /// Copies a complete, verified run to each replica, in turn (before retention here, which
    /// never forgets the run just made anyway). A cancelled run, or one not verified, is not
    /// copied: the report says why for each target.
    async fn replicate(&self, report: &mut RunReport) {
        if self.replicas.is_empty() {
            return;
        }
        let source = Catalog::shared(self.sink.clone());
        for (name, sink) in &self.replicas {
            let skipped = |why: Error| ReplicaResult {
                target: name.clone(),
                copy: None,
                error: Some(
                    why.with_operation("replicate")
                        .with_context("run", report.run_id.as_str())
                        .with_context("target", name.clone()),
                ),
            };
            if self.cancel.is_cancelled() {
                report.replication.push(skipped(Error::cancelled(
                    "the run was cancelled after its manifest was written: it was not copied",
                )));
                continue;
            }
            if !report.manifest.is_verified() {
                report.replication.push(skipped(
                    Error::integrity("the run is not verified: it was not copied")
                        .with_hint("give the pipeline verifiers that check every artifact"),
                ));
                continue;
            }
            let replicator = Replicator::new(&source, &Catalog::shared(sink.clone()))
                .named(name.clone())
                .observer(self.observer.clone())
                .cancel(self.cancel.clone())
                .lock_ttl(self.lock_ttl);
            let replicator = match &self.lock_owner {
                Some(owner) => replicator.lock_owner(owner.clone()),
                None => replicator,
            };
            let result = match replicator.copy_run(&report.run_id).await {
                Ok(copy) => ReplicaResult {
                    target: name.clone(),
                    copy: Some(copy),
                    error: None,
                },
                Err(e) => ReplicaResult {
                    target: name.clone(),
                    copy: None,
                    error: Some(e),
                },
            };
            report.replication.push(result);
        }
    }

    /// Plans (and applies, if asked) retention after a complete run, unless the run was
    /// cancelled; what goes wrong is in `report.retention_error`.
    async fn run_retention(&self, report: &mut RunReport) {
        let Some(policy) = &self.retention else {
            return;
        };
        let run_id = report.run_id.clone();
        let outcome = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(retention_failed(
                &run_id,
                "retention",
                "its retention was skipped",
                Error::cancelled("the run was cancelled after its manifest was written"),
            )),
            r = self.plan_and_apply(policy.as_ref(), &run_id) => r,
        };
        match outcome {
            Ok((plan, applied)) => {
                report.retention = Some(plan);
                match applied {
                    Ok(removed) => report.removed_runs = removed,
                    Err(e) => report.retention_error = Some(e),
                }
            }
            Err(e) => report.retention_error = Some(e),
        }
        if let Some(e) = &report.retention_error {
            tracing::warn!(error = %e, "retention failed after a complete run");
        }
    }

    /// The retention plan, and the runs removed by applying it (none when not asked to) or
    /// why it could not be applied.
    async fn plan_and_apply(
        &self,
        policy: &dyn RetentionPolicy,
        run_id: &RunId,
    ) -> Result<(RetentionPlan, Result<Vec<RunId>>)> {
        let catalog = Catalog::shared(self.sink.clone()).with_shared_lock(self.lock.clone());
        // What `Catalog::plan_retention` does, keeping the listing: it names the components
        // of the runs removed, for the observer.
        let runs = catalog
            .list_all()
            .await
            .map_err(|e| retention_failed(run_id, "plan retention", PLAN_FAILED, e))?;
        let plan = policy.plan(&runs, Utc::now());
        self.observer
            .on_event(&Event::RetentionPlanned { plan: &plan });
        if !self.apply_retention {
            return Ok((plan, Ok(Vec::new())));
        }
        let applied = if plan.decision(run_id).is_some_and(|d| !d.is_kept()) {
            // Whatever the policy says, a run never deletes the backup it just wrote.
            Err(Error::internal(
                "the retention plan forgets the run it follows, so it was not applied: nothing was deleted",
            )
            .with_hint("this is a bug in the retention policy"))
        } else {
            // Each forgotten run loses its manifest first: stopped half-way, a run is
            // incomplete, never half complete.
            catalog.apply_retention(&plan).await
        };
        match &applied {
            Ok(removed) if !removed.is_empty() => {
                let removed: Vec<RunSummary> = runs
                    .into_iter()
                    .filter(|r| removed.contains(&r.run_id))
                    .collect();
                self.observer
                    .on_event(&Event::RetentionApplied { removed: &removed });
            }
            _ => {}
        }
        let applied =
            applied.map_err(|e| retention_failed(run_id, "apply retention", APPLY_FAILED, e));
        Ok((plan, applied))
    }
}

const PLAN_FAILED: &str = "its retention could not be planned";
const APPLY_FAILED: &str = "its retention could not be applied";

fn verify_failure(record: &ArtifactRecord, e: Error) -> ArtifactFailure {
    ArtifactFailure::from_error(&record.component, Some(record.name.clone()), "verify", &e)
}
