//! The data path of one artifact: source → hash → codecs → hash → sink, retried as a
//! whole, and accepted only when the sink took every byte it was handed.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tracing::Instrument;

use super::Pipeline;
use crate::codec::hash::hashing_with_progress;
use crate::error::{Error, Result};
use crate::key::ObjectKey;
use crate::manifest::{ArtifactRecord, CodecStep};
use crate::observer::Event;
use crate::source::{ArtifactPlan, ExportContext, Source};

/// Chunks read ahead between stages (each up to [`crate::stream::CHUNK_SIZE`]). Four are
/// enough to keep the source going while the sink writes; more only raise the peak memory
/// when the sink stalls (kernel write-back), with no gain in throughput.
const PREFETCH_CHUNKS: usize = 4;

/// Smallest chunk handed from the source to the codecs: small pipe reads are gathered, so
/// that per-chunk costs (task wake-ups, hashing and compression calls, sink writes) stay
/// small next to the work on the bytes themselves.
const MIN_SOURCE_CHUNK: usize = 128 * 1024;

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

        let mut facts = job.plan.facts.clone();
        if let Some(finish) = export.finish {
            match finish.await {
                Ok(extra) => facts.extend(extra),
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
