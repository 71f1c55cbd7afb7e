//! The backup pipeline: sources → codec stages → sink, then verification, manifest and
//! retention.
//!
//! One run has one run id and produces one manifest covering every artifact (a backup
//! set). Artifacts go to `runs/<id>/<component>/<name>`; `runs/<id>/manifest.json` is
//! written last, and only when every artifact was stored and verified. A run with a failed
//! artifact gets `runs/<id>/report.json` instead, so it is never taken for a backup and the
//! previous good run is untouched.
//!
//! Artifacts run `concurrency` at a time, in no guaranteed order — except
//! [summaries](crate::source::ArtifactPlan::summary) (indexes), which run after all the
//! others and are built from the records of what their source stored.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog::Catalog;
use crate::codec::{hash::hashing_with_progress, Codec, Keyring, ZstdCodec};
#[cfg(feature = "age")]
use crate::codec::{AgeCodec, AgeEncryption};
use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::manifest::{
    ArtifactFailure, ArtifactRecord, Manifest, RunId, RunStatus, MANIFEST_FORMAT_VERSION,
};
use crate::observer::{Event, NoopObserver, Observer};
use crate::retention::{RetentionPlan, RetentionPolicy};
use crate::retry::RetryPolicy;
use crate::sink::{Sink, SinkExt};
use crate::source::{ArtifactPlan, ExportContext, Source};
use crate::verify::{Verifier, VerifyContext};

/// Builds a [`Pipeline`].
#[derive(Default)]
pub struct PipelineBuilder {
    sources: Vec<Arc<dyn Source>>,
    sink: Option<Arc<dyn Sink>>,
    compression: Option<ZstdCodec>,
    #[cfg(feature = "age")]
    encryption: Option<AgeEncryption>,
    verifiers: Vec<Arc<dyn Verifier>>,
    retention: Option<Arc<dyn RetentionPolicy>>,
    apply_retention: bool,
    observer: Option<Arc<dyn Observer>>,
    concurrency: Option<usize>,
    cancel: Option<CancellationToken>,
    labels: BTreeMap<String, String>,
    keyring: Option<Keyring>,
    allow_unencrypted_secrets: bool,
    retry: RetryPolicy,
    skip_preflight: bool,
}

impl fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("PipelineBuilder");
        f.field("sources", &self.sources)
            .field("sink", &self.sink)
            .field("compression", &self.compression);
        #[cfg(feature = "age")]
        f.field("encryption", &self.encryption);
        f.finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// Adds a source: any [`Source`], also an `Arc` or `Box` of one (or of `dyn Source`).
    pub fn source(mut self, source: impl Source + 'static) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// Sets the sink (required): any [`Sink`], also an `Arc` or `Box` of one. Pass a clone of
    /// an `Arc` to keep a handle (e.g. for a [`Catalog`] over the same sink).
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Compresses artifacts with zstd.
    pub fn compression(mut self, zstd: ZstdCodec) -> Self {
        self.compression = Some(zstd);
        self
    }

    /// Encrypts artifacts with age.
    #[cfg(feature = "age")]
    #[cfg_attr(docsrs, doc(cfg(feature = "age")))]
    pub fn encryption(mut self, encryption: AgeEncryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// Adds a verifier run on every stored artifact it applies to, before the manifest is
    /// written. A failed verification fails the run. Any [`Verifier`], also an `Arc` or `Box`
    /// of one.
    pub fn verifier(mut self, verifier: impl Verifier + 'static) -> Self {
        self.verifiers.push(Arc::new(verifier));
        self
    }

    /// Plans retention after a complete run (the plan is in the report). Any
    /// [`RetentionPolicy`], also an `Arc` or `Box` of one.
    pub fn retention(mut self, policy: impl RetentionPolicy + 'static) -> Self {
        self.retention = Some(Arc::new(policy));
        self
    }

    /// Also applies the retention plan (deletes forgotten runs). Off by default: a plan is
    /// only reported.
    pub fn apply_retention(mut self, apply: bool) -> Self {
        self.apply_retention = apply;
        self
    }

    /// Receives progress events: any [`Observer`], also an `Arc` of one the caller keeps to
    /// read what it saw.
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// How many artifacts are exported at once (default 2).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Cancels the run when this token is cancelled: children are killed, partial writes
    /// discarded, no manifest written.
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Adds a label recorded in the manifest (cluster, environment, schedule…).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Keys verifiers use to read plain bytes of encrypted artifacts. With passphrase
    /// encryption the passphrase is used automatically.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Stores artifacts that hold secrets without encryption. Off by default; only for
    /// callers that encrypt elsewhere (e.g. an encrypted volume) and say so.
    pub fn store_secrets_unencrypted(mut self, yes: bool) -> Self {
        self.allow_unencrypted_secrets = yes;
        self
    }

    /// How many times an artifact is attempted when a retryable error occurs (default 3).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.retry.attempts = attempts;
        self
    }

    /// How an artifact is retried when a retryable error occurs (the whole export runs
    /// again): attempts, back-off and jitter. Default: [`RetryPolicy::default`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Skips sources' preflight checks (they run by default).
    pub fn skip_preflight(mut self, skip: bool) -> Self {
        self.skip_preflight = skip;
        self
    }

    /// Validates the configuration and builds the pipeline.
    pub fn build(self) -> Result<Pipeline> {
        let sink = self.sink.ok_or_else(|| {
            Error::config("no sink configured").with_hint("call .sink(...) on the pipeline builder")
        })?;
        if self.sources.is_empty() {
            return Err(Error::config("no source configured")
                .with_hint("add at least one source with .source(...)"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.sources {
            let c = s.component();
            ObjectKey::new(c).map_err(|e| e.with_component(c.to_string()))?;
            if c.contains('/') {
                return Err(Error::config(format!("component name '{c}' contains '/'")));
            }
            if !seen.insert(c.to_string()) {
                return Err(
                    Error::config(format!("two sources share the component name '{c}'"))
                        .with_hint("give each source a distinct component name"),
                );
            }
        }
        let concurrency = self.concurrency.unwrap_or(2);
        if concurrency == 0 {
            return Err(Error::config("concurrency must be at least 1"));
        }
        #[cfg_attr(not(feature = "age"), allow(unused_mut))]
        let mut keyring = self.keyring.unwrap_or_default();
        #[cfg(feature = "age")]
        if keyring.is_empty() {
            if let Some(enc) = &self.encryption {
                keyring = Keyring::for_encryption(enc);
            }
        }
        let mut codecs: Vec<Arc<dyn Codec>> = Vec::new();
        if let Some(z) = self.compression {
            codecs.push(Arc::new(z));
        }
        #[cfg(feature = "age")]
        let encrypted = self.encryption.is_some();
        #[cfg(not(feature = "age"))]
        let encrypted = false;
        #[cfg(feature = "age")]
        if let Some(e) = self.encryption {
            codecs.push(Arc::new(AgeCodec::new(e)));
        }
        Ok(Pipeline {
            sources: self.sources,
            sink,
            codecs,
            encrypted,
            verifiers: self.verifiers,
            retention: self.retention,
            apply_retention: self.apply_retention,
            observer: self.observer.unwrap_or_else(|| Arc::new(NoopObserver)),
            concurrency,
            cancel: self.cancel.unwrap_or_default(),
            labels: self.labels,
            keyring,
            allow_unencrypted_secrets: self.allow_unencrypted_secrets,
            retry: self.retry,
            preflight: !self.skip_preflight,
        })
    }
}

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
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("sources", &self.sources)
            .field("sink", &self.sink.describe())
            .field("codecs", &self.codecs)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

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

fn verify_failure(record: &ArtifactRecord, e: Error) -> ArtifactFailure {
    ArtifactFailure::from_error(&record.component, Some(record.name.clone()), "verify", &e)
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

/// Chunks read ahead between stages (each up to [`crate::stream::CHUNK_SIZE`]). Four are
/// enough to keep the source going while the sink writes; more only raise the peak memory
/// when the sink stalls (kernel write-back), with no gain in throughput.
const PREFETCH_CHUNKS: usize = 4;

/// Smallest chunk handed from the source to the codecs: small pipe reads are gathered, so
/// that per-chunk costs (task wake-ups, hashing and compression calls, sink writes) stay
/// small next to the work on the bytes themselves.
const MIN_SOURCE_CHUNK: usize = 128 * 1024;

struct Job {
    source: Arc<dyn Source>,
    plan: ArtifactPlan,
    key: ObjectKey,
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
    /// unusable, cancelled); per-artifact failures are in the report, whose status is then
    /// `Partial` or `Failed`.
    pub async fn run(&self) -> Result<RunReport> {
        let started_at = Utc::now();
        let run_id = RunId::generate(started_at);
        let span =
            tracing::info_span!("backup_run", run_id = %run_id, sink = %self.sink.describe());
        let cancel = self.cancel.clone();
        let fut = self.run_inner(run_id.clone(), started_at).instrument(span);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                // Dropping the run future kills children and discards partial writes.
                Err(Error::cancelled(format!("run {run_id} was cancelled; nothing of it was kept as a backup"))
                    .with_operation("backup run"))
            }
            r = fut => r,
        }
    }

    async fn run_inner(
        &self,
        run_id: RunId,
        started_at: chrono::DateTime<Utc>,
    ) -> Result<RunReport> {
        self.observer.on_event(&Event::RunStarted {
            run_id: &run_id,
            sources: self.sources.len(),
        });
        self.sink.preflight().await.map_err(|e| {
            e.or_operation("sink preflight")
                .or_component(format!("storage ({})", self.sink.describe()))
        })?;

        let mut failures = Vec::new();
        let jobs = self.plan_jobs(&run_id, &mut failures).await;
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
        for record in artifacts.iter_mut() {
            if let Err(failure) = self.verify_artifact(record).await {
                failures.push(failure);
            }
        }

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
        let body = bytes::Bytes::from(manifest.to_json()?);
        if status == RunStatus::Complete {
            // The manifest goes last: its presence is what makes the run complete.
            self.sink
                .put_bytes(&run_id.manifest_key(), body)
                .await
                .map_err(|e| {
                    e.or_operation("write manifest")
                        .or_artifact(run_id.manifest_key().to_string())
                })?;
        } else if let Err(e) = self.sink.put_bytes(&run_id.report_key(), body).await {
            // Without a report the run still reads as incomplete, which is just as safe.
            tracing::warn!(error = %e, "could not write the failure report");
        }

        let mut report = RunReport {
            run_id: run_id.clone(),
            status,
            manifest,
            retention: None,
            removed_runs: Vec::new(),
            retention_error: None,
        };
        if status == RunStatus::Complete {
            self.run_retention(&mut report).await;
        }
        self.observer.on_event(&Event::RunDone {
            run_id: &run_id,
            status,
        });
        Ok(report)
    }

    async fn plan_jobs(&self, run_id: &RunId, failures: &mut Vec<ArtifactFailure>) -> Vec<Job> {
        let mut jobs = Vec::new();
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

    /// Stores the jobs, `concurrency` at a time, in no particular order.
    async fn store_jobs(
        &self,
        jobs: Vec<(Job, ExportContext)>,
    ) -> Vec<(Job, Result<ArtifactRecord>)> {
        futures::stream::iter(jobs)
            .map(|(job, ctx)| async move {
                let r = self.store_artifact(&job, &ctx).await;
                (job, r)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    async fn store_artifact(&self, job: &Job, ctx: &ExportContext) -> Result<ArtifactRecord> {
        let component = job.source.component();
        let span =
            tracing::info_span!("artifact", component, artifact = %job.plan.name, key = %job.key);
        self.retry
            .retry("store artifact", || self.store_once(job, ctx))
            .instrument(span)
            .await
            .map_err(|e| {
                e.or_component(component.to_string())
                    .or_artifact(job.key.to_string())
            })
    }

    async fn store_once(&self, job: &Job, ctx: &ExportContext) -> Result<ArtifactRecord> {
        let component = job.source.component();
        let name = job.plan.name.as_str();
        let t0 = Instant::now();
        self.observer
            .on_event(&Event::ArtifactStarted { component, name });
        let export = job
            .source
            .export(&job.plan, ctx)
            .await
            .map_err(|e| e.or_operation("export"))?;

        let observer = self.observer.clone();
        let (c, n) = (component.to_string(), name.to_string());
        let progress: crate::codec::hash::ProgressFn = Arc::new(move |bytes| {
            observer.on_event(&Event::BytesWritten {
                component: &c,
                name: &n,
                plain_bytes: bytes,
            });
        });
        // Read the source ahead so it keeps producing while codecs and the sink work.
        let source_stream =
            crate::stream::prefetch_batched(export.stream, PREFETCH_CHUNKS, MIN_SOURCE_CHUNK);
        let (mut stream, plain_digest) = hashing_with_progress(source_stream, Some(progress));
        let skip_compression = job.plan.text && self.sink.capabilities().prefers_plain_text;
        let mut steps = Vec::new();
        for codec in &self.codecs {
            let step = codec.step();
            if skip_compression && matches!(step, crate::manifest::CodecStep::Zstd { .. }) {
                continue;
            }
            stream = codec.encode(stream).map_err(|e| e.or_operation("encode"))?;
            steps.push(step);
        }
        let (stream, stored_digest) = crate::codec::hashing(stream);
        // And compress/encrypt ahead of the sink, so hashing and compression overlap I/O.
        let stream = if steps.is_empty() {
            stream
        } else {
            crate::stream::prefetch(stream, PREFETCH_CHUNKS)
        };
        self.sink
            .put(&job.key, stream)
            .await
            .map_err(|e| e.or_operation("put"))?;

        let mut facts = job.plan.facts.clone();
        if let Some(finish) = export.finish {
            match finish.await {
                Ok(extra) => facts.extend(extra),
                Err(e) => {
                    // The bytes are stored but the source says they are bad: remove them.
                    self.sink.delete(&job.key).await.ok();
                    return Err(e.or_operation("export"));
                }
            }
        }
        let (plain, stored) = match (plain_digest.get(), stored_digest.get()) {
            (Some(p), Some(s)) => (p, s),
            _ => return Err(Error::internal("stream ended without a digest").with_operation("put")),
        };
        let duration = t0.elapsed();
        self.observer.on_event(&Event::ArtifactDone {
            component,
            name,
            stored_size: stored.size,
            stored_sha256: &stored.sha256,
            duration,
        });
        Ok(ArtifactRecord {
            component: component.to_string(),
            provider: job.source.provider().to_string(),
            name: name.to_string(),
            key: job.key.clone(),
            content_type: job.plan.content_type.clone(),
            plain_size: plain.size,
            plain_sha256: plain.sha256,
            stored_size: stored.size,
            stored_sha256: stored.sha256,
            codecs: steps,
            sensitive: job.plan.sensitive,
            facts,
            duration_ms: duration.as_millis() as u64,
            verification: Vec::new(),
        })
    }

    async fn verify_artifact(
        &self,
        record: &mut ArtifactRecord,
    ) -> std::result::Result<(), ArtifactFailure> {
        for verifier in &self.verifiers {
            if !verifier.applies_to(record) {
                continue;
            }
            let ctx = VerifyContext {
                sink: self.sink.as_ref(),
                artifact: record,
                keyring: &self.keyring,
            };
            let outcome = verifier.verify(&ctx).await.map_err(|e| {
                e.or_component(record.component.clone())
                    .or_operation("verify")
                    .or_artifact(record.key.to_string())
            });
            let v = match outcome {
                Ok(v) => v,
                Err(e) => return Err(verify_failure(record, e)),
            };
            self.observer.on_event(&Event::Verified {
                component: &record.component,
                name: &record.name,
                record: &v,
            });
            let ok = v.ok;
            let detail = v.detail.clone();
            record.verification.push(v);
            if !ok {
                let e =
                    Error::integrity(format!("verifier '{}' failed: {detail}", verifier.name()))
                        .with_component(record.component.clone())
                        .with_operation("verify")
                        .with_artifact(record.key.to_string())
                        .with_hint(
                            "the stored artifact does not pass its check: re-run the backup",
                        );
                return Err(verify_failure(record, e));
            }
        }
        Ok(())
    }

    async fn run_retention(&self, report: &mut RunReport) {
        let Some(policy) = &self.retention else {
            return;
        };
        let catalog = Catalog::shared(self.sink.clone());
        let plan = match catalog.plan_retention(policy.as_ref(), Utc::now()).await {
            Ok(p) => p,
            Err(e) => {
                report.retention_error = Some(e.to_string());
                return;
            }
        };
        self.observer
            .on_event(&Event::RetentionPlanned { plan: &plan });
        if self.apply_retention {
            match catalog.apply_retention(&plan).await {
                Ok(removed) => report.removed_runs = removed,
                Err(e) => report.retention_error = Some(e.to_string()),
            }
        }
        report.retention = Some(plan);
    }
}

#[cfg(test)]
mod tests;
