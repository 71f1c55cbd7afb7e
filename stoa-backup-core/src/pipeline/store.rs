//! The data path of one artifact: source → hash → (tee to the inline checks) → codecs →
//! hash → sink, retried as a whole, and accepted only when the sink took every byte it was
//! handed.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use tracing::Instrument;

use super::Pipeline;
use crate::codec::hash::hashing_with_progress;
use crate::error::{Error, Result};
use crate::key::ObjectKey;
use crate::manifest::{ArtifactRecord, CodecStep, VerificationRecord};
use crate::observer::Event;
use crate::source::{ArtifactPlan, Export, ExportContext, Source};
use crate::stream::ByteStream;
use crate::verify::{InlineContext, StoredRecord, Verifier};

/// Chunks read ahead between stages (each up to [`crate::stream::CHUNK_SIZE`]). Four are
/// enough to keep the source going while the sink writes; more only raise the peak memory
/// when the sink stalls (kernel write-back), with no gain in throughput.
const PREFETCH_CHUNKS: usize = 4;

/// Smallest chunk handed from the source to the codecs: small pipe reads are gathered, so
/// that per-chunk costs (task wake-ups, hashing and compression calls, sink writes) stay
/// small next to the work on the bytes themselves.
const MIN_SOURCE_CHUNK: usize = 128 * 1024;

/// Chunks each inline check may lag behind the store before it holds the store back.
const INLINE_CHECK_CHUNKS: usize = 4;

/// An artifact the sink holds, with what the end of the run needs to verify it.
pub(super) struct StoredArtifact {
    /// Its record; verification records and timings are added at the end of the run.
    pub record: ArtifactRecord,
    /// The verdicts of the inline checks, in the pipeline's verifier order.
    pub inline: Vec<InlineOutcome>,
    /// How the store checked what it received, when it did ([`crate::sink::PutResult`]).
    pub store_checked: Option<String>,
    /// When the artifact started.
    pub started: Instant,
    /// Milliseconds from the start until the source's last byte.
    pub dump_ms: u64,
    /// When the sink confirmed the last byte.
    pub stored_at: Instant,
}

/// The verdict of one inline check, and when it came.
pub(super) struct InlineOutcome {
    pub verifier: Arc<dyn Verifier>,
    pub result: Result<VerificationRecord>,
    pub finished_at: Instant,
}

/// One artifact to store: its source, its plan and the key it goes to.
pub(super) struct Job {
    pub source: Arc<dyn Source>,
    pub plan: ArtifactPlan,
    pub key: ObjectKey,
}

impl Pipeline {
    /// Stores the jobs, `concurrency` at a time, in no particular order.
    pub(super) async fn store_jobs(
        &self,
        jobs: Vec<(Job, ExportContext)>,
    ) -> Vec<(Job, Result<StoredArtifact>)> {
        futures::stream::iter(jobs)
            .map(|(job, ctx)| async move {
                let r = self.store_artifact(&job, &ctx).await;
                (job, r)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    async fn store_artifact(&self, job: &Job, ctx: &ExportContext) -> Result<StoredArtifact> {
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

    /// The verifiers that check this artifact inline, in the pipeline's order.
    fn inline_verifiers(&self, planned: &ArtifactRecord) -> Vec<Arc<dyn Verifier>> {
        if !self.inline_verification {
            return Vec::new();
        }
        self.verifiers
            .iter()
            .filter(|v| v.inline() && v.applies_to(planned))
            .cloned()
            .collect()
    }

    async fn store_once(&self, job: &Job, ctx: &ExportContext) -> Result<StoredArtifact> {
        let component = job.source.component();
        let name = job.plan.name.as_str();
        let started = Instant::now();
        self.observer
            .on_event(&Event::ArtifactStarted { component, name });
        let export = job
            .source
            .export(&job.plan, ctx)
            .await
            .map_err(|e| e.or_operation("export"))?;
        let Export { stream, finish } = export;

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
            crate::stream::prefetch_batched(stream, PREFETCH_CHUNKS, MIN_SOURCE_CHUNK);
        let (plain, plain_digest) = hashing_with_progress(source_stream, Some(progress));
        let dumped_at = Arc::new(Mutex::new(None));
        let plain = mark_end(plain, dumped_at.clone());

        // The inline checks read a copy of the plain bytes while they are stored.
        let planned = planned_record(job);
        let inline = self.inline_verifiers(&planned);
        let (plain, copies) = crate::stream::tee(plain, inline.len(), INLINE_CHECK_CHUNKS);
        let mut senders = Vec::with_capacity(inline.len());
        let checks = inline.into_iter().zip(copies).map(|(verifier, copy)| {
            let (tx, stored) = StoredRecord::channel();
            senders.push(tx);
            let ctx = InlineContext {
                planned: planned.clone(),
                plain: copy,
                stored,
            };
            async move {
                let result = verifier.verify_inline(ctx).await;
                InlineOutcome {
                    verifier,
                    result,
                    finished_at: Instant::now(),
                }
            }
        });
        let checks: Vec<_> = checks.collect();
        let store = async {
            let stored = self.store_plain(job, plain, finish, plain_digest).await;
            if let Ok((record, _)) = &stored {
                for tx in senders {
                    // A check that gave up early needs no record.
                    let _ = tx.send(record.clone());
                }
            }
            (stored, Instant::now())
        };
        let ((stored, stored_at), inline) = tokio::join!(store, futures::future::join_all(checks));
        let (mut record, store_checked) = stored?;
        let dump_ms = dumped_at
            .lock()
            .expect("dump end lock")
            .map(|t: Instant| t.duration_since(started).as_millis() as u64)
            .unwrap_or_default();
        record.duration_ms = stored_at.duration_since(started).as_millis() as u64;
        self.observer.on_event(&Event::ArtifactDone {
            component,
            name,
            plain_size: record.plain_size,
            stored_size: record.stored_size,
            stored_sha256: &record.stored_sha256,
            duration: stored_at.duration_since(started),
        });
        Ok(StoredArtifact {
            record,
            inline,
            store_checked,
            started,
            dump_ms,
            stored_at,
        })
    }

    /// Plain bytes → codecs → sink, then the source's verdict: the record of the stored
    /// artifact, and how the store checked what it received.
    async fn store_plain(
        &self,
        job: &Job,
        plain: ByteStream,
        finish: Option<futures::future::BoxFuture<'static, Result<crate::source::Facts>>>,
        plain_digest: crate::codec::hash::DigestHandle,
    ) -> Result<(ArtifactRecord, Option<String>)> {
        let mut stream = plain;
        let skip_compression = job.plan.text && self.sink.capabilities().prefers_plain_text;
        let mut steps = Vec::new();
        for codec in &self.codecs {
            let step = codec.step();
            if skip_compression && matches!(step, CodecStep::Zstd { .. }) {
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
        let put = self
            .sink
            .put(&job.key, stream)
            .await
            .map_err(|e| e.or_operation("put"))?;
        // Checked before the source's verdict: a sink that stopped reading early would
        // otherwise show up as the source's failure (its output cut off).
        let stored = match stored_digest.get() {
            Some(d) if d.size == put.size => d,
            Some(d) => {
                self.remove_rejected(&job.key).await;
                return Err(Error::integrity(format!(
                    "the sink reports {} bytes stored where {} were sent",
                    put.size, d.size
                ))
                .with_operation("put")
                .with_hint(SINK_BUG_HINT));
            }
            None => {
                self.remove_rejected(&job.key).await;
                return Err(Error::integrity(
                    "the sink reported the artifact stored before the end of its stream",
                )
                .with_operation("put")
                .with_hint(SINK_BUG_HINT));
            }
        };

        let mut record = planned_record(job);
        if let Some(finish) = finish {
            match finish.await {
                Ok(extra) => record.facts.extend(extra),
                Err(e) => {
                    // The bytes are stored but the source says they are bad: remove them.
                    self.remove_rejected(&job.key).await;
                    return Err(e.or_operation("export"));
                }
            }
        }
        let plain = plain_digest.get().ok_or_else(|| {
            Error::internal("stream ended without a digest").with_operation("put")
        })?;
        record.plain_size = plain.size;
        record.plain_sha256 = plain.sha256;
        record.stored_size = stored.size;
        record.stored_sha256 = stored.sha256;
        record.codecs = steps;
        Ok((record, put.store_checked))
    }

    /// Deletes bytes stored under `key` that the run does not accept. Best effort: the run
    /// is incomplete anyway, so leftovers are never read as a backup; a failure is logged.
    async fn remove_rejected(&self, key: &ObjectKey) {
        if let Err(e) = self.sink.delete(key).await {
            tracing::warn!(key = %key, error = %e, "could not delete a rejected artifact");
        }
    }
}

const SINK_BUG_HINT: &str = "the sink did not store every byte it was handed (a bug in the \
     sink or a layer around it); the artifact was removed and the run is not a backup";

/// The record of a job as planned, for [`Verifier::applies_to`] and the inline checks:
/// sizes, digests, codecs and the source's closing facts are not known yet (`store_plain`
/// fills them in once the artifact is stored).
fn planned_record(job: &Job) -> ArtifactRecord {
    ArtifactRecord {
        component: job.source.component().to_string(),
        provider: job.source.provider().to_string(),
        name: job.plan.name.clone(),
        key: job.key.clone(),
        content_type: job.plan.content_type.clone(),
        plain_size: 0,
        plain_sha256: String::new(),
        stored_size: 0,
        stored_sha256: String::new(),
        codecs: Vec::new(),
        sensitive: job.plan.sensitive,
        facts: job.plan.facts.clone(),
        duration_ms: 0,
        verification: Vec::new(),
        timings: None,
    }
}

/// Passes a stream through and notes when it ended well (the source's last byte).
fn mark_end(stream: ByteStream, at: Arc<Mutex<Option<Instant>>>) -> ByteStream {
    let tail = futures::stream::once(async move {
        *at.lock().expect("dump end lock") = Some(Instant::now());
        None
    })
    .filter_map(|x: Option<Result<bytes::Bytes>>| async move { x });
    Box::pin(stream.chain(tail))
}
