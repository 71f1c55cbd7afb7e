//! The backup pipeline: sources → codec stages → sink, then verification, manifest and
//! retention.
//!
//! One run has one run id and produces one manifest covering every artifact (a backup
//! set). Artifacts go to `runs/<id>/<component>/<name>`; `runs/<id>/manifest.json` is
//! written last, and only when every artifact was stored and verified and the sink still
//! lists each of them with the size stored. A run with a failed artifact gets
//! `runs/<id>/report.json` instead, so it is never taken for a backup and the previous good
//! run is untouched. While a run goes on, `runs/<id>/heartbeat.json` ([`Heartbeat`]) shows
//! it is alive. With a run lock ([`PipelineBuilder::lock`]) a run first takes the lease of
//! each of its components, renews it while it runs, and gives it up once its manifest is
//! written (`locked`).
//!
//! Artifacts run `concurrency` at a time, in no guaranteed order — except
//! [summaries](crate::source::ArtifactPlan::summary) (indexes), which run after all the
//! others and are built from the records of what their source stored.
//!
//! With replicas ([`PipelineBuilder::replicate_to`]) a complete and verified run is then
//! copied to each ([`Replicator`](crate::replicate::Replicator)); a failed copy is in the
//! report ([`RunReport::replication`]), never a failure of the run.
//!
//! The parts: [`PipelineBuilder`] (options, checked before anything connects), the data path
//! of one artifact (`store`), the end of a run (`finish`: verification, the check of what is
//! stored, the manifest, retention), the heartbeat and the [`RunReport`].

mod builder;
mod finish;
mod heartbeat;
mod locked;
mod report;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use self::builder::{PipelineBuilder, DEFAULT_HEARTBEAT_INTERVAL};
pub use self::heartbeat::{Heartbeat, HEARTBEAT_FILE};
pub use self::report::{ReplicaResult, RunReport};

use self::finish::Stored;
use self::heartbeat::HeartbeatWriter;
use self::store::Job;
use crate::codec::{Codec, Keyring};
use crate::error::{Error, Result};
use crate::key::ObjectKey;
use crate::lock::{LeaseKeeper, LeaseOwner, RunLock};
use crate::manifest::{ArtifactFailure, ArtifactRecord, RunId};
use crate::observer::{Event, Observer};
use crate::retention::RetentionPolicy;
use crate::retry::RetryPolicy;
use crate::sink::Sink;
use crate::source::{ExportContext, Source};
use crate::verify::Verifier;

/// A configured backup pipeline; [`Pipeline::run`] performs one run. Reusable.
pub struct Pipeline {
    sources: Vec<Arc<dyn Source>>,
    sink: Arc<dyn Sink>,
    codecs: Vec<Arc<dyn Codec>>,
    encrypted: bool,
    verifiers: Vec<Arc<dyn Verifier>>,
    retention: Option<Arc<dyn RetentionPolicy>>,
    apply_retention: bool,
    observer: Arc<dyn Observer>,
    concurrency: usize,
    cancel: CancellationToken,
    labels: BTreeMap<String, String>,
    keyring: Keyring,
    allow_unencrypted_secrets: bool,
    retry: RetryPolicy,
    preflight: bool,
    heartbeat_interval: Option<Duration>,
    inline_verification: bool,
    lock: Option<Arc<dyn RunLock>>,
    lock_ttl: Duration,
    lock_owner: Option<LeaseOwner>,
    replicas: Vec<(String, Arc<dyn Sink>)>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("sources", &self.sources)
            .field("sink", &self.sink.describe())
            .field("codecs", &self.codecs)
            .field("concurrency", &self.concurrency)
            .field("lock", &self.lock.as_ref().map(|l| l.describe()))
            .field(
                "replicas",
                &self.replicas.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts building a pipeline.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    /// The sink this pipeline writes to.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    /// Runs one backup. Returns `Err` only when the run could not happen at all (sink
    /// unusable, cancelled, manifest not writable); per-artifact failures are in the report,
    /// whose status is then `Partial` or `Failed`.
    ///
    /// Cancellation (the builder's token) undoes the run until every artifact is stored and
    /// verified; from then on the run writes its manifest and the report says so, with only
    /// retention skipped.
    ///
    /// With a run lock, a lease held by another run fails this one before it writes
    /// anything ([`ErrorKind::Conflict`](crate::ErrorKind), naming the holder), and a lease
    /// lost while it runs stops it without a manifest (see [`PipelineBuilder::lock`]).
    pub async fn run(&self) -> Result<RunReport> {
        let started_at = Utc::now();
        let run_id = RunId::generate(started_at);
        let span =
            tracing::info_span!("backup_run", run_id = %run_id, sink = %self.sink.describe());
        async {
            let Some(keeper) = self.take_locks(&run_id).await? else {
                return self.run_locked(&run_id, started_at, None).await;
            };
            let stop = CancellationToken::new();
            let work = async {
                let r = self.run_locked(&run_id, started_at, Some(&keeper)).await;
                stop.cancel();
                r
            };
            let (result, ()) = tokio::join!(work, keeper.keep(&stop));
            // Done already after a manifest; here after a failure or a cancellation.
            keeper.release().await;
            result
        }
        .instrument(span)
        .await
    }

    /// One run, its leases (if any) held by `keeper`.
    async fn run_locked(
        &self,
        run_id: &RunId,
        started_at: chrono::DateTime<Utc>,
        keeper: Option<&LeaseKeeper>,
    ) -> Result<RunReport> {
        self.observer.on_event(&Event::RunStarted {
            run_id,
            sources: self.sources.len(),
        });
        let heartbeat = HeartbeatWriter::new(
            self.sink.as_ref(),
            run_id,
            started_at,
            self.heartbeat_interval
                .filter(|_| self.sink.capabilities().cheap_small_writes),
        );
        let stop_heartbeat = CancellationToken::new();
        let store = async {
            let stored = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    // Dropping the store future kills children and discards partial
                    // writes.
                    Err(Error::cancelled(format!("run {run_id} was cancelled; nothing of it was kept as a backup"))
                        .with_operation("backup run"))
                }
                e = locked::lost(keeper) => Err(e),
                r = self.store_and_verify(run_id, started_at) => r,
            };
            stop_heartbeat.cancel();
            stored
        };
        let (stored, ()) = tokio::join!(store, heartbeat.run(&stop_heartbeat));
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                heartbeat.remove().await;
                self.announce_done(run_id, started_at, Err(&e));
                return Err(e);
            }
        };
        let report = self.finish(run_id, stored, &heartbeat, keeper).await;
        self.announce_done(run_id, started_at, report.as_ref());
        report
    }

    /// Everything up to the manifest: stores every artifact (summaries last) and verifies
    /// what was stored. Cancelled by dropping it.
    async fn store_and_verify(
        &self,
        run_id: &RunId,
        started_at: chrono::DateTime<Utc>,
    ) -> Result<Stored> {
        self.sink.preflight().await.map_err(|e| {
            e.or_operation("sink preflight")
                .or_component(format!("storage ({})", self.sink.describe()))
        })?;

        let mut failures = Vec::new();
        let jobs = self.plan_jobs(run_id, &mut failures).await;
        let ctx = ExportContext {
            cancel: self.cancel.child_token(),
            run_id: run_id.clone(),
            stored: Vec::new(),
        };

        // Summaries (indexes) go last, once everything they summarise has been stored or
        // has failed, with the records of their source's stored artifacts.
        let (summaries, jobs): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| j.plan.summary);
        let mut results = self
            .store_jobs(jobs.into_iter().map(|j| (j, ctx.clone())).collect())
            .await;
        let summaries: Vec<(Job, ExportContext)> = summaries
            .into_iter()
            .map(|job| {
                let component = job.source.component();
                let mut stored: Vec<ArtifactRecord> = results
                    .iter()
                    .filter_map(|(_, r)| r.as_ref().ok())
                    .map(|s| &s.record)
                    .filter(|r| r.component == component)
                    .cloned()
                    .collect();
                stored.sort_by(|a, b| a.key.cmp(&b.key));
                let ctx = ExportContext {
                    stored,
                    ..ctx.clone()
                };
                (job, ctx)
            })
            .collect();
        results.extend(self.store_jobs(summaries).await);

        // In key order, so that the report (and the error of `into_result`) does not depend
        // on which export finished first.
        results.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        let mut artifacts = Vec::new();
        for (job, result) in results {
            match result {
                Ok(record) => artifacts.push(record),
                Err(e) => {
                    let failure = ArtifactFailure::from_error(
                        job.source.component(),
                        Some(job.plan.name.clone()),
                        e.operation().unwrap_or("export"),
                        &e,
                    );
                    self.observer.on_event(&Event::ArtifactFailed {
                        component: &failure.component,
                        name: failure.name.as_deref(),
                        error: &failure.error,
                    });
                    tracing::warn!(component = %failure.component, artifact = ?failure.name, error = %failure.error, "artifact failed");
                    failures.push(failure);
                }
            }
        }

        // Verify before the manifest exists, so a complete run is a verified run.
        let artifacts = self.verify_all(artifacts, &mut failures).await;
        Ok(Stored {
            started_at,
            artifacts,
            failures,
        })
    }

    async fn plan_jobs(&self, run_id: &RunId, failures: &mut Vec<ArtifactFailure>) -> Vec<Job> {
        let mut jobs = Vec::new();
        let mut keys = BTreeSet::new();
        for source in &self.sources {
            let component = source.component().to_string();
            let mut fail = |operation: &str, e: Error, name: Option<String>| {
                let e = e
                    .or_component(component.clone())
                    .or_operation(operation.to_string());
                self.observer.on_event(&Event::ArtifactFailed {
                    component: &component,
                    name: name.as_deref(),
                    error: &e.to_string(),
                });
                failures.push(ArtifactFailure::from_error(&component, name, operation, &e));
            };
            if self.preflight {
                if let Err(e) = source.preflight().await {
                    fail("preflight", e, None);
                    continue;
                }
            }
            let plans = match source.discover().await {
                Ok(p) => p,
                Err(e) => {
                    fail("discover", e, None);
                    continue;
                }
            };
            for plan in plans {
                if plan.sensitive && !self.encrypted && !self.allow_unencrypted_secrets {
                    #[cfg(feature = "age")]
                    let hint = "add .encryption(...) to the pipeline, or opt out explicitly with .store_secrets_unencrypted(true)";
                    #[cfg(not(feature = "age"))]
                    let hint = "this build has no encryption: enable the `age` feature of stoa-backup and add .encryption(...) to the pipeline, or opt out explicitly with .store_secrets_unencrypted(true)";
                    fail(
                        "export",
                        Error::config(
                            "this artifact holds secrets and the pipeline has no encryption",
                        )
                        .with_hint(hint),
                        Some(plan.name.clone()),
                    );
                    continue;
                }
                match ObjectKey::new(format!("{}/{}/{}", run_id.prefix(), component, plan.name)) {
                    Ok(key) if !keys.insert(key.clone()) => {
                        // The second would overwrite the first, and the manifest would record
                        // two artifacts where one is stored.
                        let e = Error::config(format!(
                            "the source planned '{}' twice; the second is refused, as it would overwrite the first",
                            plan.name
                        ))
                        .with_artifact(key.to_string())
                        .with_hint("give each artifact of a source a distinct name (two objects whose names map to the same file?)");
                        fail("export", e, Some(plan.name.clone()));
                    }
                    Ok(key) => jobs.push(Job {
                        source: source.clone(),
                        plan,
                        key,
                    }),
                    Err(e) => {
                        let name = plan.name.clone();
                        fail("export", e, Some(name));
                    }
                }
            }
        }
        jobs
    }
}

#[cfg(test)]
mod tests;
