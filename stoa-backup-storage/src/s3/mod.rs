//! A sink on S3-compatible object storage (AWS S3, MinIO, Ceph RGW, …), built on
//! `object_store`'s AWS backend.
//!
//! Objects live in one bucket under an optional key prefix: the key `runs/<id>/x` of a sink
//! with prefix `stoa/prod` is stored as `stoa/prod/runs/<id>/x`.
//!
//! - **Streaming uploads with bounded memory.** A `put` buffers at most one part
//!   ([`S3SinkBuilder::part_size`], 8 MiB by default, at least 5 MiB); a stream that ends
//!   before that is stored with a single `PutObject`. Longer streams go through a multipart
//!   upload with at most [`S3SinkBuilder::max_parts_in_flight`] parts uploading at once; the
//!   stream is not polled while that many are in flight (backpressure). One `put` therefore
//!   holds at most [`S3Sink::max_buffered_bytes`] (`(max_parts_in_flight + 1) * part_size`)
//!   plus the chunk the stream just yielded. [`S3Sink::metrics`] exposes a gauge of the bytes
//!   held and its high-water mark.
//! - **Atomic puts.** S3 shows an object only once its upload completes. If the stream
//!   fails, an upload request fails, or the `put` future is dropped, the multipart upload is
//!   aborted (awaited on failure, spawned on the runtime on drop), so no parts are left to be
//!   billed and no partial object appears. An existing object under the key stays as it was.
//! - **Killed uploads.** A process killed mid-upload (SIGKILL, OOM, node loss) cannot abort:
//!   its multipart upload stays in progress, invisible, its parts stored and billed.
//!   [`Sink::cleanup`] lists the uploads under the sink's prefix (`ListMultipartUploads`)
//!   and aborts those started before its cutoff. As a safety net that needs no running
//!   process, give the bucket a lifecycle rule that aborts incomplete uploads after a day
//!   (longer than any upload takes):
//!
//!   ```json
//!   {
//!     "Rules": [
//!       {
//!         "ID": "abort-incomplete-multipart-uploads",
//!         "Status": "Enabled",
//!         "Filter": { "Prefix": "" },
//!         "AbortIncompleteMultipartUpload": { "DaysAfterInitiation": 1 }
//!       }
//!     ]
//!   }
//!   ```
//!
//!   applied with `aws s3api put-bucket-lifecycle-configuration --bucket <bucket>
//!   --lifecycle-configuration file://lifecycle.json`. Set `Prefix` to the sink's prefix to
//!   limit it to the backups. The credentials need
//!   `s3:ListBucketMultipartUploads` and `s3:AbortMultipartUpload` for `cleanup`.
//! - **Checksums.** Every `PutObject` and `UploadPart` carries `x-amz-checksum-sha256`, the
//!   SHA-256 that object_store computes of the very bytes the request sends (the bytes `put`
//!   was handed), and multipart uploads are created for SHA-256 parts; the completion lists
//!   each part's checksum ([`S3SinkBuilder::write_checksums`], on by default; off for stores
//!   that reject the header). A store that verifies the header refuses a body changed on the
//!   way (`400 BadDigest`): the put fails and, S3 showing only finished uploads, nothing new
//!   becomes visible. A put reports
//!   [`PutResult::store_checked`](stoa_backup_core::sink::PutResult::store_checked), which
//!   spares the pipeline reading the object back, only when both hold:
//!   1. the store is known to verify the header
//!      ([`S3SinkBuilder::store_verifies_checksums`]: AWS S3's own endpoints by default, any
//!      other endpoint only when the caller says so), and
//!   2. the answer to the `PutObject`, or to every `UploadPart`, echoed the exact checksum
//!      sent, so a store or middlebox that ignored the header earns no claim.
//!
//!   Neither is enough alone. Of the servers the tests run against, moto checks nothing and
//!   even echoes an unchecked checksum when asked with the AWS SDKs' headers; s3s-fs checks a
//!   single `PutObject`'s checksum only after storing the object, and no part's. Requests are
//!   also signed with the body's SHA-256 (`x-amz-content-sha256`), which AWS S3 and s3s check
//!   too; the sink claims nothing from that.
//! - **The ETag check.** Where the checksum claim cannot be made (custom endpoints by
//!   default), a put compares the ETag the store answers with the MD5 of what it sent (for a
//!   multipart upload: the MD5 of the parts' MD5s, then `-<parts>`), which is what
//!   S3-compatible stores put in ETags; a match reports
//!   [`PutResult::store_checked`](stoa_backup_core::sink::PutResult::store_checked) and
//!   spares the read-back, a mismatch claims nothing ([`S3SinkBuilder::etag_checks`]; never
//!   with SSE-KMS).
//! - **Parallel ranged reads.** A `get` of an object larger than two
//!   [`read_range_size`](S3SinkBuilder::read_range_size)s (8 MiB) fetches its ranges
//!   [`ranges_in_flight`](S3SinkBuilder::ranges_in_flight) (4) at a time and yields them in
//!   order; every range must come from the version the first answer named (`If-Match`, and
//!   the answer's ETag), so an object replaced while it is read fails the read
//!   (`Conflict`) instead of mixing versions.
//! - **Retries.** Every request is retried on 5xx, throttling, connection errors and
//!   timeouts with exponential backoff and jitter, bounded in count and time
//!   ([`S3SinkBuilder::retry`]). Errors that remain are mapped to
//!   [`ErrorKind`](stoa_backup_core::ErrorKind)s: 404 → `NotFound`, 403 →
//!   `PermissionDenied`, 401 → `Unauthenticated`, transient → `Unavailable` (retryable).
//! - **Credentials** are given explicitly ([`S3Sink::builder`] with
//!   [`S3SinkBuilder::credentials`]) or come from the standard AWS environment
//!   ([`S3Sink::from_env`]: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//!   `AWS_SESSION_TOKEN`, web identity / IRSA via `AWS_WEB_IDENTITY_TOKEN_FILE` and
//!   `AWS_ROLE_ARN`, ECS and EKS Pod Identity container credentials); without either, EC2
//!   instance metadata. Secrets never appear in `Debug` output, [`Sink::describe`], errors
//!   or logs.
//! - **Conditional puts** ([`Sink::put_if`], for a run lock in the bucket): `If-None-Match:
//!   *` to create, `If-Match` with the ETag read to replace; versions are ETags. AWS S3,
//!   MinIO, Ceph RGW and moto evaluate them atomically.
//! - Optional server-side encryption ([`S3Encryption`]: SSE-S3 or SSE-KMS with a key id)
//!   and storage class.
//!
//! ```no_run
//! # fn main() -> stoa_backup_core::Result<()> {
//! use stoa_backup_storage::S3Sink;
//! // Region, endpoint and credentials from AWS_REGION, AWS_ENDPOINT_URL_S3, IRSA, …
//! let sink = S3Sink::from_env("stoa-backups").prefix("prod").build()?;
//! # let _ = sink; Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::key::{validate_prefix, ObjectKey};
use stoa_backup_core::sink::{
    CleanupReport, ObjectMeta, PutCondition, PutOutcome, PutResult, Sink, SinkCapabilities,
    VersionedObject,
};
use stoa_backup_core::stream::ByteStream;

mod builder;
mod checksum;
mod cleanup;
mod conditional;
mod download;
mod errors;
mod etag;
mod upload;

pub use builder::{S3Credentials, S3Encryption, S3Retry, S3SinkBuilder};
pub use download::{DEFAULT_RANGES_IN_FLIGHT, DEFAULT_RANGE_SIZE};
pub use upload::S3SinkMetrics;

use errors::map_error;
use upload::{Held, HeldGuard};

const COMPONENT: &str = "storage/s3";

/// Smallest part S3 accepts in a multipart upload (except the last one).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// Default part size: 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Default number of parts uploading at once per `put`.
pub const DEFAULT_MAX_PARTS_IN_FLIGHT: usize = 4;

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: u64 = 10_000;

struct Inner {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    part_size: usize,
    max_parts_in_flight: usize,
    read_range_size: usize,
    ranges_in_flight: usize,
    attributes: Attributes,
    metrics: Arc<S3SinkMetrics>,
    /// For the requests object_store does not offer (ListMultipartUploads).
    http: reqwest::Client,
    retry: S3Retry,
    checksums: checksum::Checksums,
    /// Compare the ETags of uploads with the MD5s of what was sent ([`etag`]).
    etag_checks: bool,
}

/// A [`Sink`] on an S3 bucket (see the module documentation). Cheap to clone: clones
/// share the client and the metrics.
#[derive(Clone)]
pub struct S3Sink {
    inner: Arc<Inner>,
}

impl fmt::Debug for S3Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("S3Sink")
            .field("bucket", &i.bucket)
            .field("prefix", &i.prefix)
            .field("endpoint", &i.endpoint)
            .field("region", &i.region)
            .field("part_size", &i.part_size)
            .field("max_parts_in_flight", &i.max_parts_in_flight)
            .field("read_range_size", &i.read_range_size)
            .field("ranges_in_flight", &i.ranges_in_flight)
            .field("write_checksums", &i.checksums.send)
            .field("store_verifies_checksums", &i.checksums.store_verifies)
            .field("etag_checks", &i.etag_checks)
            .finish_non_exhaustive()
    }
}

impl S3Sink {
    /// A builder for a sink on `bucket`, from explicit settings only
    /// ([`S3SinkBuilder::new`]).
    pub fn builder(bucket: impl Into<String>) -> S3SinkBuilder {
        S3SinkBuilder::new(bucket)
    }

    /// A builder for a sink on `bucket`, configured from the standard AWS environment
    /// ([`S3SinkBuilder::from_env`]).
    pub fn from_env(bucket: impl Into<String>) -> S3SinkBuilder {
        S3SinkBuilder::from_env(bucket)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// The key prefix inside the bucket (empty for none).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The multipart part size.
    pub fn part_size(&self) -> usize {
        self.inner.part_size
    }

    /// Parts of one upload allowed in flight at once.
    pub fn max_parts_in_flight(&self) -> usize {
        self.inner.max_parts_in_flight
    }

    /// The most bytes one `put` buffers and has in flight, not counting the one chunk the
    /// source stream just yielded: `(max_parts_in_flight + 1) * part_size`.
    pub fn max_buffered_bytes(&self) -> u64 {
        (self.inner.max_parts_in_flight as u64 + 1) * self.inner.part_size as u64
    }

    /// Upload counters and the gauge of buffered bytes (shared by all puts of this sink).
    pub fn metrics(&self) -> Arc<S3SinkMetrics> {
        self.inner.metrics.clone()
    }

    /// The full object key in the bucket for a sink key.
    pub fn object_key(&self, key: &ObjectKey) -> String {
        self.full(key.as_str())
    }

    fn full(&self, rel: &str) -> String {
        match (self.inner.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_string(),
            (false, true) => self.inner.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.inner.prefix),
        }
    }

    fn path(&self, op: &str, key: &ObjectKey) -> Result<Path> {
        let full = self.full(key.as_str());
        Path::parse(&full).map_err(|e| {
            Error::config(format!(
                "the key cannot be stored in s3://{}/{full}",
                self.inner.bucket
            ))
            .with_component(COMPONENT)
            .with_operation(op)
            .with_artifact(key.as_str())
            .with_source(e)
        })
    }

    /// The sink key of a stored object, if it lies under the prefix and is a valid key.
    fn key_of(&self, location: &Path) -> Option<ObjectKey> {
        let loc: &str = location.as_ref();
        let rel = if self.inner.prefix.is_empty() {
            loc
        } else {
            loc.strip_prefix(self.inner.prefix.as_str())?
                .strip_prefix('/')?
        };
        match ObjectKey::new(rel) {
            Ok(k) => Some(k),
            Err(_) => {
                tracing::warn!(bucket = %self.inner.bucket, key = %loc, "skipping an object whose key is not a valid storage key");
                None
            }
        }
    }

    fn err(&self, e: object_store::Error, op: &str, key: Option<&str>) -> Error {
        map_error(
            &self.inner.bucket,
            &self.full(key.unwrap_or("")),
            e,
            op,
            key,
        )
    }

    fn put_options(&self) -> PutOptions {
        PutOptions {
            attributes: self.inner.attributes.clone(),
            ..Default::default()
        }
    }
}

#[async_trait]
impl Sink for S3Sink {
    fn describe(&self) -> String {
        let mut s = format!("s3://{}", self.inner.bucket);
        if !self.inner.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.inner.prefix);
        }
        if let Some(ep) = &self.inner.endpoint {
            s.push_str(&format!(" at {}", ep.trim_end_matches('/')));
        }
        s
    }

    fn capabilities(&self) -> SinkCapabilities {
        let mut c = SinkCapabilities::default();
        c.max_object_size = Some(MAX_PARTS * self.inner.part_size as u64);
        c.conditional_put = true;
        c
    }

    async fn preflight(&self) -> Result<()> {
        let probe = format!(".stoa-preflight/{:016x}", rand::random::<u64>());
        let key = ObjectKey::new(probe.as_str())?;
        let path = self.path("preflight", &key)?;
        let hint = |e: Error| {
            e.or_hint(format!(
                "check that the bucket {} exists, the endpoint and region are right, and the \
                 credentials may put, get, list and delete objects under its prefix",
                self.inner.bucket
            ))
        };
        self.inner
            .store
            .put_opts(
                &path,
                PutPayload::from_static(b"stoa-backup preflight\n"),
                self.put_options(),
            )
            .await
            .map_err(|e| hint(self.err(e, "preflight", Some(&probe))))?;
        let listed = self
            .inner
            .store
            .list(Some(&path))
            .try_collect::<Vec<_>>()
            .await;
        let deleted = self.inner.store.delete(&path).await;
        listed.map_err(|e| hint(self.err(e, "preflight", Some(&probe))))?;
        match deleted {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(hint(self.err(e, "preflight", Some(&probe)))),
        }
    }

    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        let path = self.path("put", key)?;
        let held = Held::new(self.inner.metrics.clone());
        let _guard = HeldGuard(held.clone());
        self.put_inner(key, path, stream, held).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let path = self.path("get", key)?;
        self.get_inner(key, path).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix).map_err(|e| e.or_component(COMPONENT).or_operation("list"))?;
        let rel = prefix.trim_end_matches('/');
        let full = self.full(rel);
        let list_err =
            |e: object_store::Error| map_error(&self.inner.bucket, &full, e, "list", Some(prefix));
        let base = if full.is_empty() {
            None
        } else {
            Some(Path::parse(&full).map_err(|e| {
                Error::config(format!("invalid list prefix {prefix:?}"))
                    .with_component(COMPONENT)
                    .with_operation("list")
                    .with_source(e)
            })?)
        };
        // object_store lists strictly below `base/`; an object named exactly like the prefix
        // is found with a HEAD request.
        let mut metas: Vec<object_store::ObjectMeta> = self
            .inner
            .store
            .list(base.as_ref())
            .try_collect()
            .await
            .map_err(list_err)?;
        if let (false, Some(base)) = (rel.is_empty(), base.as_ref()) {
            match self.inner.store.head(base).await {
                Ok(m) => metas.push(m),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(list_err(e)),
            }
        }
        let mut out: Vec<ObjectMeta> = metas
            .into_iter()
            .filter_map(|m| {
                let key = self.key_of(&m.location)?;
                key.starts_with_prefix(rel).then_some(ObjectMeta {
                    key,
                    size: m.size,
                    last_modified: Some(m.last_modified),
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let path = self.path("delete", key)?;
        match self.inner.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e, "delete", Some(key.as_str()))),
        }
    }

    /// Aborts the multipart uploads under the sink's prefix (the whole bucket for a sink
    /// without one) that were started before `older_than` and never completed nor aborted:
    /// those of puts whose process was killed.
    /// Fails with [`ErrorKind::Unsupported`](stoa_backup_core::ErrorKind::Unsupported) on a
    /// server that cannot list multipart uploads (the bucket lifecycle rule of the module
    /// documentation then does the job).
    async fn cleanup(&self, older_than: DateTime<Utc>) -> Result<CleanupReport> {
        self.cleanup_uploads(older_than).await
    }

    async fn get_versioned(&self, key: &ObjectKey) -> Result<Option<VersionedObject>> {
        self.get_versioned_inner(key).await
    }

    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: bytes::Bytes,
        condition: PutCondition,
    ) -> Result<PutOutcome> {
        self.put_if_inner(key, bytes, condition).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_and_from_the_prefix() {
        let builder = || S3Sink::builder("stoa-backups").region("eu-west-1");
        let sink = builder().prefix("p/q").build().unwrap();
        assert_eq!(
            sink.key_of(&Path::parse("p/q/runs/a").unwrap())
                .unwrap()
                .as_str(),
            "runs/a"
        );
        assert!(sink.key_of(&Path::parse("p/qq/runs/a").unwrap()).is_none());
        assert!(sink.key_of(&Path::parse("other/a").unwrap()).is_none());
        let sink = builder().build().unwrap();
        assert_eq!(sink.object_key(&ObjectKey::new("a/b").unwrap()), "a/b");
    }
}
