//! Uploads: a single `PutObject` for small objects, a multipart upload with bounded memory
//! and backpressure for the others, aborted on failure or when the `put` is dropped; the
//! counters and the buffer gauge of [`S3SinkMetrics`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    MultipartUpload, ObjectStore, PutMultipartOptions, PutPayload, UploadPart, WriteMultipart,
};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::sink::PutResult;
use stoa_backup_core::stream::ByteStream;
use tokio_util::task::TaskTracker;

use super::checksum::{ChecksumEchoed, Checksums};
use super::etag::{self, EtagMatched, PartMd5s};
use super::{S3Sink, COMPONENT, MAX_PARTS};

/// Counters and the buffer gauge of an [`S3Sink`], shared by all its puts.
#[derive(Debug, Default)]
pub struct S3SinkMetrics {
    buffered: AtomicU64,
    peak_buffered: AtomicU64,
    single_puts: AtomicU64,
    multipart_started: AtomicU64,
    multipart_completed: AtomicU64,
    multipart_aborted: AtomicU64,
    parts_uploaded: AtomicU64,
}

impl S3SinkMetrics {
    /// Bytes the sink holds right now: buffered for the next part or uploading.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered.load(Ordering::SeqCst)
    }

    /// The most bytes held at once since the sink was built or [`Self::reset_peak`].
    pub fn peak_buffered_bytes(&self) -> u64 {
        self.peak_buffered.load(Ordering::SeqCst)
    }

    /// Resets the high-water mark to the current value.
    pub fn reset_peak(&self) {
        self.peak_buffered
            .store(self.buffered.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Objects stored with a single `PutObject`.
    pub fn single_puts(&self) -> u64 {
        self.single_puts.load(Ordering::SeqCst)
    }

    /// Multipart uploads created.
    pub fn multipart_started(&self) -> u64 {
        self.multipart_started.load(Ordering::SeqCst)
    }

    /// Multipart uploads completed (objects stored through multipart).
    pub fn multipart_completed(&self) -> u64 {
        self.multipart_completed.load(Ordering::SeqCst)
    }

    /// Multipart uploads aborted (or whose abort was started, for dropped puts).
    pub fn multipart_aborted(&self) -> u64 {
        self.multipart_aborted.load(Ordering::SeqCst)
    }

    /// Parts uploaded successfully.
    pub fn parts_uploaded(&self) -> u64 {
        self.parts_uploaded.load(Ordering::SeqCst)
    }

    fn add(&self, n: u64) {
        let now = self.buffered.fetch_add(n, Ordering::SeqCst) + n;
        self.peak_buffered.fetch_max(now, Ordering::SeqCst);
    }
}

/// Bytes held by one `put`, released when parts finish or the put ends (however it ends).
#[derive(Debug)]
pub(super) struct Held {
    metrics: Arc<S3SinkMetrics>,
    outstanding: AtomicU64,
}

impl Held {
    pub(super) fn new(metrics: Arc<S3SinkMetrics>) -> Arc<Self> {
        Arc::new(Held {
            metrics,
            outstanding: AtomicU64::new(0),
        })
    }

    fn add(&self, n: u64) {
        self.outstanding.fetch_add(n, Ordering::SeqCst);
        self.metrics.add(n);
    }

    /// Releases up to `n` bytes (never more than this put still holds).
    fn release(&self, n: u64) {
        let mut taken = 0;
        let _ = self
            .outstanding
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                taken = cur.min(n);
                Some(cur - taken)
            });
        if taken > 0 {
            self.metrics.buffered.fetch_sub(taken, Ordering::SeqCst);
        }
    }

    fn release_all(&self) {
        let rest = self.outstanding.swap(0, Ordering::SeqCst);
        if rest > 0 {
            self.metrics.buffered.fetch_sub(rest, Ordering::SeqCst);
        }
    }
}

/// Releases what a `put` still holds when the put ends or its future is dropped.
pub(super) struct HeldGuard(pub(super) Arc<Held>);

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.0.release_all();
    }
}

/// A multipart upload that counts parts, releases their bytes from the gauge when they
/// finish, and aborts itself when dropped unfinished (a dropped `put` future).
///
/// Each part uploads in a task of its own, tracked but not cancelled when the `put` is
/// dropped: an abort sent while a part is still uploading can be overtaken by that part,
/// which would then linger. So aborting first waits for the parts in flight to end.
#[derive(Debug)]
struct GuardedUpload {
    inner: Option<Box<dyn MultipartUpload>>,
    held: Arc<Held>,
    metrics: Arc<S3SinkMetrics>,
    parts: TaskTracker,
    location: String,
    /// The parts' MD5s, for the ETag check (`None`: not made).
    md5s: Option<PartMd5s>,
}

/// Releases a part's bytes when its upload ends, also when the task is cancelled.
struct PartRelease {
    held: Arc<Held>,
    len: u64,
}

impl Drop for PartRelease {
    fn drop(&mut self) {
        self.held.release(self.len);
    }
}

#[async_trait]
impl MultipartUpload for GuardedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length() as u64;
        let release = PartRelease {
            held: self.held.clone(),
            len,
        };
        let metrics = self.metrics.clone();
        let Some(inner) = self.inner.as_mut() else {
            return futures::future::ready(Err(object_store::Error::Generic {
                store: "S3",
                source: "the multipart upload was already finished".into(),
            }))
            .boxed();
        };
        // The MD5 is computed on a blocking thread while the part uploads.
        let md5 = self.md5s.clone().map(|md5s| {
            let (index, payload) = (md5s.next(), data.clone());
            tokio::task::spawn_blocking(move || md5s.set(index, etag::md5_of(&payload)))
        });
        let fut = inner.put_part(data);
        let task = self.parts.spawn(async move {
            let r = fut.await;
            if let Some(md5) = md5 {
                // Only waited for: an MD5 task that failed leaves its part's slot empty, so
                // the ETag check finds no match and claims nothing; the upload does not
                // depend on it.
                let _ = md5.await;
            }
            drop(release);
            if r.is_ok() {
                metrics.parts_uploaded.fetch_add(1, Ordering::SeqCst);
            }
            r
        });
        async move {
            task.await
                .map_err(|e| object_store::Error::JoinError { source: e })?
        }
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| object_store::Error::Generic {
                store: "S3",
                source: "the multipart upload was already finished".into(),
            })?;
        let mut r = inner.complete().await;
        if let (Ok(done), Some(md5s)) = (r.as_mut(), &self.md5s) {
            if let Some(parts) = md5s.matches(done.e_tag.as_deref()) {
                done.extensions.insert(EtagMatched(parts));
            }
        }
        if r.is_ok() {
            self.inner = None;
            self.metrics
                .multipart_completed
                .fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        match self.inner.take() {
            Some(mut inner) => {
                self.metrics
                    .multipart_aborted
                    .fetch_add(1, Ordering::SeqCst);
                self.parts.close();
                self.parts.wait().await;
                inner.abort().await
            }
            None => Ok(()),
        }
    }
}

impl Drop for GuardedUpload {
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        self.metrics
            .multipart_aborted
            .fetch_add(1, Ordering::SeqCst);
        let location = std::mem::take(&mut self.location);
        let parts = self.parts.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    parts.close();
                    parts.wait().await;
                    match inner.abort().await {
                        Ok(()) => tracing::debug!(%location, "aborted the multipart upload of a cancelled put"),
                        Err(e) => tracing::warn!(
                            %location,
                            error = %e,
                            "cannot abort the multipart upload of a cancelled put; a bucket lifecycle rule \
                             (AbortIncompleteMultipartUpload) will remove its parts"
                        ),
                    }
                });
            }
            Err(_) => tracing::warn!(
                %location,
                "a put was dropped outside a tokio runtime: its multipart upload cannot be aborted; \
                 a bucket lifecycle rule (AbortIncompleteMultipartUpload) will remove its parts"
            ),
        }
    }
}

impl S3Sink {
    fn multipart_options(&self) -> PutMultipartOptions {
        PutMultipartOptions {
            attributes: self.inner.attributes.clone(),
            ..Default::default()
        }
    }

    pub(super) async fn put_inner(
        &self,
        key: &ObjectKey,
        path: Path,
        mut stream: ByteStream,
        held: Arc<Held>,
    ) -> Result<PutResult> {
        let part_size = self.inner.part_size;
        let stream_err = |e: Error| e.or_operation("put").or_artifact(key.as_str());

        // Buffer up to one part: small objects go in one request.
        let mut first: Vec<Bytes> = Vec::new();
        let mut size: u64 = 0;
        loop {
            match stream.next().await {
                None => {
                    let md5 = self.inner.etag_checks.then(|| etag::md5_of(&first));
                    let payload = PutPayload::from_iter(std::mem::take(&mut first));
                    let stored = self
                        .inner
                        .store
                        .put_opts(&path, payload, self.put_options())
                        .await
                        .map_err(|e| self.err(e, "put", Some(key.as_str())))?;
                    self.inner
                        .metrics
                        .single_puts
                        .fetch_add(1, Ordering::SeqCst);
                    let claim = match stored.extensions.get::<ChecksumEchoed>() {
                        Some(ChecksumEchoed::Body) => Some(Checksums::single_put_claim()),
                        _ => None,
                    };
                    let etag_claim = md5
                        .filter(|md5| etag::single_matches(stored.e_tag.as_deref(), md5))
                        .map(|_| etag::single_claim());
                    return Ok(self.put_result(size, claim, etag_claim));
                }
                Some(Err(e)) => return Err(stream_err(e)),
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    held.add(chunk.len() as u64);
                    size += chunk.len() as u64;
                    first.push(chunk);
                    if size >= part_size as u64 {
                        break;
                    }
                }
            }
        }

        // Multipart: at most max_parts_in_flight parts uploading, one more filling.
        let upload = self
            .inner
            .store
            .put_multipart_opts(&path, self.multipart_options())
            .await
            .map_err(|e| self.err(e, "put", Some(key.as_str())))?;
        self.inner
            .metrics
            .multipart_started
            .fetch_add(1, Ordering::SeqCst);
        let guarded = GuardedUpload {
            inner: Some(upload),
            held: held.clone(),
            metrics: self.inner.metrics.clone(),
            parts: TaskTracker::new(),
            location: format!("s3://{}/{}", self.inner.bucket, path.as_ref()),
            md5s: self.inner.etag_checks.then(PartMd5s::default),
        };
        let mut writer = WriteMultipart::new_with_chunk_size(Box::new(guarded), part_size);

        let mut pending = first.into_iter();
        loop {
            let chunk = match pending.next() {
                Some(c) => c,
                None => match stream.next().await {
                    None => break,
                    Some(Err(e)) => {
                        self.abort(writer, key).await;
                        return Err(stream_err(e));
                    }
                    Some(Ok(c)) => {
                        if c.is_empty() {
                            continue;
                        }
                        held.add(c.len() as u64);
                        size += c.len() as u64;
                        c
                    }
                },
            };
            if size.div_ceil(part_size as u64) > MAX_PARTS {
                self.abort(writer, key).await;
                return Err(Error::new(
                    ErrorKind::Storage,
                    format!(
                        "the object is too large for s3://{}/{}: more than {MAX_PARTS} parts of {part_size} bytes",
                        self.inner.bucket,
                        path.as_ref()
                    ),
                )
                .with_component(COMPONENT)
                .with_operation("put")
                .with_artifact(key.as_str())
                .with_hint("raise the part size of the S3 sink"));
            }
            let mut chunk = chunk;
            while !chunk.is_empty() {
                let piece = chunk.split_to(chunk.len().min(part_size));
                // Fewer than max_parts_in_flight uploading, so this piece starts at most one more.
                if let Err(e) = writer
                    .wait_for_capacity(self.inner.max_parts_in_flight)
                    .await
                {
                    self.abort(writer, key).await;
                    return Err(self.err(e, "put", Some(key.as_str())));
                }
                writer.put(piece);
            }
        }
        // `finish` aborts the upload itself if a part or the completion fails.
        let stored = writer
            .finish()
            .await
            .map_err(|e| self.err(e, "put", Some(key.as_str())))?;
        let claim = match stored.extensions.get::<ChecksumEchoed>() {
            Some(ChecksumEchoed::AllParts(n)) => Some(Checksums::multipart_claim(*n)),
            _ => None,
        };
        let etag_claim = stored
            .extensions
            .get::<EtagMatched>()
            .map(|m| etag::multipart_claim(m.0));
        Ok(self.put_result(size, claim, etag_claim))
    }

    /// The result of a put of `size` bytes, with the store's check when `claim` describes
    /// one and the store is trusted to make it, else with the ETag check's when it held.
    fn put_result(
        &self,
        size: u64,
        claim: Option<String>,
        etag_claim: Option<String>,
    ) -> PutResult {
        match (claim, etag_claim) {
            (Some(how), _) if self.inner.checksums.may_claim() => {
                PutResult::new(size).store_checked(how)
            }
            (_, Some(how)) => PutResult::new(size).store_checked(how),
            _ => PutResult::new(size),
        }
    }

    async fn abort(&self, writer: WriteMultipart, key: &ObjectKey) {
        if let Err(e) = writer.abort().await {
            tracing::warn!(
                bucket = %self.inner.bucket,
                key = %self.full(key.as_str()),
                error = %e,
                "cannot abort a failed multipart upload; a bucket lifecycle rule \
                 (AbortIncompleteMultipartUpload) will remove its parts"
            );
        }
    }
}
