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
//! - **Retries.** Every request is retried on 5xx, throttling, connection errors and
//!   timeouts with exponential backoff and jitter, bounded in count and time
//!   ([`S3SinkBuilder::retry`]). Errors that remain are mapped to [`ErrorKind`]s: 404 →
//!   `NotFound`, 403 → `PermissionDenied`, 401 → `Unauthenticated`, transient →
//!   `Unavailable` (retryable).
//! - **Credentials** come from the standard AWS environment by default
//!   (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, web identity /
//!   IRSA via `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, ECS container credentials,
//!   then EC2 instance metadata), or are given explicitly with [`S3SinkBuilder::credentials`].
//!   Secrets never appear in `Debug` output, [`Sink::describe`], errors or logs.
//! - Optional server-side encryption ([`S3Encryption`]: SSE-S3 or SSE-KMS with a key id)
//!   and storage class.
//!
//! ```no_run
//! # fn main() -> stoa_backup_core::Result<()> {
//! use stoa_backup_storage::S3Sink;
//! let sink = S3Sink::builder("stoa-backups")
//!     .prefix("prod")
//!     .region("eu-west-1")
//!     .build()?;
//! # let _ = sink; Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, MultipartUpload, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, RetryConfig, UploadPart,
    WriteMultipart,
};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::{validate_prefix, ObjectKey};
use stoa_backup_core::sink::{ObjectMeta, PutResult, Sink, SinkCapabilities};
use stoa_backup_core::stream::ByteStream;
use tokio_util::task::TaskTracker;

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

/// A secret string: compared and used, never printed.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Explicit S3 credentials. `Debug` shows the access key id only; the secret key and the
/// session token are redacted everywhere.
#[derive(Clone)]
pub struct S3Credentials {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
}

impl S3Credentials {
    /// Static credentials: an access key id and its secret key.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        S3Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: Secret(secret_access_key.into()),
            session_token: None,
        }
    }

    /// Adds a session token (temporary credentials from STS).
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(Secret(token.into()));
        self
    }

    /// The access key id (not a secret).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Server-side encryption of stored objects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum S3Encryption {
    /// SSE-S3: keys managed by S3 (`x-amz-server-side-encryption: AES256`).
    S3Managed,
    /// SSE-KMS with the given KMS key id or ARN (`aws:kms`).
    Kms {
        /// The KMS key id, alias or ARN.
        key_id: String,
        /// Use an S3 Bucket Key to reduce KMS requests (`None`: the bucket's default).
        bucket_key: Option<bool>,
    },
}

/// Retry policy for S3 requests: exponential backoff with jitter, bounded in attempts and
/// total time per request.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Retry {
    /// Retries after the first attempt (0 disables retries).
    pub max_retries: usize,
    /// First backoff delay.
    pub initial_backoff: Duration,
    /// Largest backoff delay.
    pub max_backoff: Duration,
    /// No retry starts later than this after a request's first attempt.
    pub retry_timeout: Duration,
}

impl Default for S3Retry {
    fn default() -> Self {
        S3Retry {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            retry_timeout: Duration::from_secs(180),
        }
    }
}

/// Configures an [`S3Sink`]. [`S3SinkBuilder::build`] validates the configuration without
/// connecting; [`Sink::preflight`] checks the bucket is reachable and writable.
#[derive(Clone)]
pub struct S3SinkBuilder {
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    virtual_hosted_style: bool,
    allow_http: bool,
    from_env: bool,
    credentials: Option<S3Credentials>,
    part_size: usize,
    max_parts_in_flight: usize,
    retry: S3Retry,
    request_timeout: Duration,
    connect_timeout: Duration,
    encryption: Option<S3Encryption>,
    storage_class: Option<String>,
}

impl fmt::Debug for S3SinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3SinkBuilder")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("allow_http", &self.allow_http)
            .field("from_env", &self.from_env)
            .field("credentials", &self.credentials)
            .field("part_size", &self.part_size)
            .field("max_parts_in_flight", &self.max_parts_in_flight)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("encryption", &self.encryption)
            .field("storage_class", &self.storage_class)
            .finish()
    }
}

impl S3SinkBuilder {
    /// A builder for a sink on `bucket`, reading the standard AWS environment (see
    /// [`S3SinkBuilder::from_env`]).
    pub fn new(bucket: impl Into<String>) -> Self {
        S3SinkBuilder {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            virtual_hosted_style: false,
            allow_http: false,
            from_env: true,
            credentials: None,
            part_size: DEFAULT_PART_SIZE,
            max_parts_in_flight: DEFAULT_MAX_PARTS_IN_FLIGHT,
            retry: S3Retry::default(),
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            encryption: None,
            storage_class: None,
        }
    }

    /// Stores every key under `prefix/` in the bucket (no leading or trailing `/` needed).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// A custom endpoint (MinIO, Ceph, a test server), e.g. `https://minio.example:9000`.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The bucket's region (default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Virtual-hosted-style requests (`https://<bucket>.s3.<region>.amazonaws.com/key`)
    /// instead of path-style (`https://<endpoint>/<bucket>/key`, the default). With a custom
    /// [`S3SinkBuilder::endpoint`], that endpoint must then already name the bucket (e.g.
    /// `https://stoa-backups.minio.example`): it is used as given.
    pub fn virtual_hosted_style(mut self, yes: bool) -> Self {
        self.virtual_hosted_style = yes;
        self
    }

    /// Allows plain `http://` endpoints. For tests and loopback servers only: credentials
    /// and data cross the network unencrypted.
    pub fn allow_http(mut self, yes: bool) -> Self {
        self.allow_http = yes;
        self
    }

    /// Whether to read the standard AWS environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, container credentials, …); on by
    /// default. Values set on this builder win over the environment. Without explicit or
    /// environment credentials, web identity (IRSA) and instance metadata are used.
    pub fn from_env(mut self, yes: bool) -> Self {
        self.from_env = yes;
        self
    }

    /// Explicit credentials (they override the environment's).
    pub fn credentials(mut self, credentials: S3Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Size of multipart parts (at least 5 MiB, at most 5 GiB; default 8 MiB). Objects
    /// smaller than one part are stored with a single request.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// How many parts of one upload may be in flight at once (default 4).
    pub fn max_parts_in_flight(mut self, n: usize) -> Self {
        self.max_parts_in_flight = n;
        self
    }

    /// The retry policy for transient failures.
    pub fn retry(mut self, retry: S3Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Timeout of one HTTP request (default 5 minutes: a whole part must fit in it).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Timeout for establishing a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Server-side encryption of stored objects (default: the bucket's own setting).
    pub fn encryption(mut self, encryption: S3Encryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// Storage class of stored objects, e.g. `STANDARD_IA` (default: the bucket's).
    pub fn storage_class(mut self, class: impl Into<String>) -> Self {
        self.storage_class = Some(class.into());
        self
    }

    /// Checks the configuration without connecting anywhere.
    pub fn validate(&self) -> Result<()> {
        let cfg = |msg: String, hint: &str| {
            Error::config(msg)
                .with_component(COMPONENT)
                .with_operation("configure")
                .with_hint(hint.to_string())
        };
        let b = &self.bucket;
        let bucket_ok = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
            && b.as_bytes()[0].is_ascii_alphanumeric()
            && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric();
        if !bucket_ok {
            return Err(cfg(
                format!("invalid bucket name {b:?}"),
                "bucket names have 3 to 63 characters: lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit",
            ));
        }
        let p = self.prefix.trim_matches('/');
        if !p.is_empty() {
            validate_prefix(p).map_err(|e| {
                cfg(
                    format!("invalid key prefix {:?}: {}", self.prefix, e.message()),
                    "the prefix is a relative path like 'stoa/prod' without '..' or empty segments",
                )
            })?;
        }
        if let Some(ep) = &self.endpoint {
            let (scheme, rest) = ep.split_once("://").ok_or_else(|| {
                cfg(
                    format!("invalid endpoint {ep:?}: no scheme"),
                    "write the endpoint as a URL such as https://minio.example:9000",
                )
            })?;
            if rest.is_empty() || rest.starts_with('/') {
                return Err(cfg(
                    format!("invalid endpoint {ep:?}: no host"),
                    "write the endpoint as a URL such as https://minio.example:9000",
                ));
            }
            if rest
                .split('/')
                .next()
                .is_some_and(|auth| auth.contains('@'))
            {
                return Err(cfg(
                    "the endpoint URL must not contain user information".to_string(),
                    "give credentials with S3SinkBuilder::credentials or the AWS environment, \
                     not in the endpoint URL",
                ));
            }
            match scheme {
                "https" => {}
                "http" if self.allow_http => {}
                "http" => {
                    return Err(cfg(
                        format!("the endpoint {ep} uses plain http"),
                        "use an https endpoint; allow_http(true) is meant for tests on loopback",
                    ))
                }
                other => {
                    return Err(cfg(
                        format!("unsupported endpoint scheme {other:?}"),
                        "the endpoint must be an http(s) URL",
                    ))
                }
            }
        }
        if let Some(r) = &self.region {
            if r.is_empty() || !r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
                return Err(cfg(
                    format!("invalid region {r:?}"),
                    "regions look like 'eu-west-1'",
                ));
            }
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(cfg(
                format!("part size {} is out of range", self.part_size),
                "S3 parts must be between 5 MiB and 5 GiB",
            ));
        }
        if self.max_parts_in_flight == 0 || self.max_parts_in_flight > 64 {
            return Err(cfg(
                format!(
                    "max_parts_in_flight {} is out of range",
                    self.max_parts_in_flight
                ),
                "allow between 1 and 64 parts in flight",
            ));
        }
        if let Some(c) = &self.credentials {
            if c.access_key_id.is_empty() || c.secret_access_key.0.is_empty() {
                return Err(cfg(
                    "empty access key id or secret access key".to_string(),
                    "give both the access key id and the secret access key, or neither to \
                     use the environment",
                ));
            }
        }
        if let Some(S3Encryption::Kms { key_id, .. }) = &self.encryption {
            if key_id.trim().is_empty() {
                return Err(cfg(
                    "SSE-KMS needs a key id".to_string(),
                    "give the KMS key id or ARN, or use S3Encryption::S3Managed",
                ));
            }
        }
        if let Some(sc) = &self.storage_class {
            if sc.is_empty() || !sc.bytes().all(|c| c.is_ascii_uppercase() || c == b'_') {
                return Err(cfg(
                    format!("invalid storage class {sc:?}"),
                    "storage classes look like STANDARD, STANDARD_IA, INTELLIGENT_TIERING",
                ));
            }
        }
        Ok(())
    }

    /// Validates the configuration and builds the sink (no request is sent).
    pub fn build(self) -> Result<S3Sink> {
        self.validate()?;
        let mut b = if self.from_env {
            AmazonS3Builder::from_env()
        } else {
            AmazonS3Builder::new()
        };
        b = b.with_bucket_name(&self.bucket);
        if let Some(ep) = &self.endpoint {
            b = b.with_endpoint(ep.trim_end_matches('/'));
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        b = b
            .with_virtual_hosted_style_request(self.virtual_hosted_style)
            .with_allow_http(self.allow_http);
        if let Some(c) = &self.credentials {
            b = b
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key.0);
            if let Some(t) = &c.session_token {
                b = b.with_token(&t.0);
            }
        }
        b = b
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(self.allow_http)
                    .with_timeout(self.request_timeout)
                    .with_connect_timeout(self.connect_timeout),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: self.retry.initial_backoff,
                    max_backoff: self.retry.max_backoff,
                    base: 2.0,
                },
                max_retries: self.retry.max_retries,
                retry_timeout: self.retry.retry_timeout,
            });
        match &self.encryption {
            None => {}
            Some(S3Encryption::S3Managed) => {
                // object_store does not export the encryption key enum; its string form does.
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .map_err(|e| Error::internal(format!("{e}")).with_component(COMPONENT))?;
                b = b.with_config(key, "AES256");
            }
            Some(S3Encryption::Kms { key_id, bucket_key }) => {
                b = b.with_sse_kms_encryption(key_id);
                if let Some(k) = bucket_key {
                    b = b.with_bucket_key(*k);
                }
            }
        }
        let store = b.build().map_err(|e| {
            Error::config(format!(
                "cannot configure the S3 client for bucket {}",
                self.bucket
            ))
            .with_component(COMPONENT)
            .with_operation("configure")
            .with_source(e)
            .with_hint("check the endpoint, region and AWS_* environment variables")
        })?;
        let mut attributes = Attributes::new();
        if let Some(sc) = &self.storage_class {
            attributes.insert(Attribute::StorageClass, sc.clone().into());
        }
        Ok(S3Sink {
            inner: Arc::new(Inner {
                store,
                bucket: self.bucket,
                prefix: self.prefix.trim_matches('/').to_string(),
                endpoint: self.endpoint,
                region: self.region,
                part_size: self.part_size,
                max_parts_in_flight: self.max_parts_in_flight,
                attributes,
                metrics: Arc::new(S3SinkMetrics::default()),
            }),
        })
    }
}

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
struct Held {
    metrics: Arc<S3SinkMetrics>,
    outstanding: AtomicU64,
}

impl Held {
    fn new(metrics: Arc<S3SinkMetrics>) -> Arc<Self> {
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
struct HeldGuard(Arc<Held>);

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
        let fut = inner.put_part(data);
        let task = self.parts.spawn(async move {
            let r = fut.await;
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
        let r = inner.complete().await;
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

struct Inner {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    part_size: usize,
    max_parts_in_flight: usize,
    attributes: Attributes,
    metrics: Arc<S3SinkMetrics>,
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
            .finish_non_exhaustive()
    }
}

impl S3Sink {
    /// A builder for a sink on `bucket`.
    pub fn builder(bucket: impl Into<String>) -> S3SinkBuilder {
        S3SinkBuilder::new(bucket)
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

    fn multipart_options(&self) -> PutMultipartOptions {
        PutMultipartOptions {
            attributes: self.inner.attributes.clone(),
            ..Default::default()
        }
    }

    async fn put_inner(
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
                    let payload = PutPayload::from_iter(std::mem::take(&mut first));
                    self.inner
                        .store
                        .put_opts(&path, payload, self.put_options())
                        .await
                        .map_err(|e| self.err(e, "put", Some(key.as_str())))?;
                    self.inner
                        .metrics
                        .single_puts
                        .fetch_add(1, Ordering::SeqCst);
                    return Ok(PutResult { size });
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
        writer
            .finish()
            .await
            .map_err(|e| self.err(e, "put", Some(key.as_str())))?;
        Ok(PutResult { size })
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
        let result = self
            .inner
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| self.err(e, "get", Some(key.as_str())))?;
        let (bucket, full, k) = (
            self.inner.bucket.clone(),
            self.full(key.as_str()),
            key.as_str().to_string(),
        );
        Ok(Box::pin(result.into_stream().map_err(move |e| {
            map_error(&bucket, &full, e, "get", Some(&k))
        })))
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
}

/// Maps an `object_store` error to ours, naming the bucket and object key (never
/// credentials: object_store's messages carry the request URL and the server's answer).
fn map_error(
    bucket: &str,
    full_key: &str,
    e: object_store::Error,
    op: &str,
    artifact: Option<&str>,
) -> Error {
    use object_store::Error as E;
    let target = format!("s3://{bucket}/{full_key}");
    let (kind, retryable, what, hint): (ErrorKind, bool, String, String) = match &e {
        E::NotFound { .. } => (
            ErrorKind::NotFound,
            false,
            format!("no object at {target}"),
            "list the catalog to see which runs and artifacts exist".into(),
        ),
        E::PermissionDenied { .. } => (
            ErrorKind::PermissionDenied,
            false,
            format!("access to {target} was denied (403)"),
            format!(
                "check the credentials (access key, secret, session token or role) and that the \
                 bucket policy and any KMS key allow s3:PutObject, s3:GetObject, s3:ListBucket, \
                 s3:DeleteObject and s3:AbortMultipartUpload on bucket {bucket}"
            ),
        ),
        E::Unauthenticated { .. } => (
            ErrorKind::Unauthenticated,
            false,
            format!("the request for {target} was not authenticated (401)"),
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the web identity (IRSA) role or \
             the instance profile"
                .into(),
        ),
        E::Precondition { .. } | E::AlreadyExists { .. } | E::NotModified { .. } => (
            ErrorKind::Conflict,
            false,
            format!("a concurrent change to {target} got in the way"),
            "run the operation again".into(),
        ),
        E::NotSupported { .. } | E::NotImplemented { .. } => (
            ErrorKind::Unsupported,
            false,
            format!("the S3 server does not support this operation on {target}"),
            "use an S3 implementation with multipart uploads and ListObjectsV2".into(),
        ),
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => (
            ErrorKind::Config,
            false,
            format!("invalid request for {target}"),
            "check the sink's configuration".into(),
        ),
        E::JoinError { .. } => (
            ErrorKind::Internal,
            false,
            format!("an upload task for {target} failed"),
            "report this as a bug in stoa-backup".into(),
        ),
        _ => classify_generic(&e, &target),
    };
    let mut err = Error::new(kind, what)
        .with_retryable(retryable)
        .with_component(COMPONENT)
        .with_operation(op)
        .with_hint(hint)
        .with_source(e);
    if let Some(a) = artifact {
        err = err.with_artifact(a);
    }
    err
}

/// Sorts `Generic` errors (retries exhausted, transport failures, credential providers).
fn classify_generic(e: &object_store::Error, target: &str) -> (ErrorKind, bool, String, String) {
    // Transport errors (connect, timeout, reset) keep their kind through the source chain.
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            if matches!(
                h.kind(),
                K::Connect | K::Request | K::Timeout | K::Interrupted
            ) {
                return (
                    ErrorKind::Unavailable,
                    true,
                    format!("the S3 server could not be reached for {target}"),
                    "check the endpoint, the network and the server's health; retrying may help"
                        .into(),
                );
            }
        }
        src = s.source();
    }
    let text = e.to_string();
    let status = status_in(&text);
    match status {
        Some(s) if s >= 500 || s == 429 => (
            ErrorKind::Unavailable,
            true,
            format!("the S3 server kept failing ({s}) for {target}, retries exhausted"),
            "the server is overloaded or failing; retrying later may help".into(),
        ),
        Some(400)
            if [
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "ExpiredToken",
                "InvalidToken",
            ]
            .iter()
            .any(|c| text.contains(c)) =>
        {
            (
                ErrorKind::Unauthenticated,
                false,
                format!("the credentials were refused for {target}"),
                "check the access key, secret key and session token".into(),
            )
        }
        _ if text.contains("SlowDown") || text.contains("Throttl") => (
            ErrorKind::Unavailable,
            true,
            format!("the S3 server throttled requests for {target}"),
            "lower the concurrency or retry later".into(),
        ),
        _ if status.is_none() && text.to_ascii_lowercase().contains("credential") => (
            ErrorKind::Unauthenticated,
            false,
            format!("no usable credentials for {target}"),
            "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, configure web identity (IRSA), \
             or give the credentials explicitly"
                .into(),
        ),
        _ => (
            ErrorKind::Storage,
            false,
            format!("the S3 request for {target} failed"),
            "see the cause; check the bucket, endpoint and region".into(),
        ),
    }
}

/// The HTTP status in object_store's "non-2xx status code: 503 ..." messages.
fn status_in(text: &str) -> Option<u16> {
    let marker = "status code: ";
    let i = text.find(marker)? + marker.len();
    text[i..].get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> S3SinkBuilder {
        S3Sink::builder("stoa-backups")
            .from_env(false)
            .region("eu-west-1")
    }

    #[test]
    fn validates_configuration_purely() {
        builder().validate().unwrap();
        for bad in ["", "ab", "Upper", "-x-", "a_b", &"x".repeat(64)] {
            let e = S3Sink::builder(bad).validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}");
        }
        assert!(builder().prefix("a/../b").validate().is_err());
        assert!(builder().prefix("/a/b/").validate().is_ok());
        assert!(builder()
            .endpoint("http://127.0.0.1:9000")
            .validate()
            .is_err());
        assert!(builder()
            .endpoint("http://127.0.0.1:9000")
            .allow_http(true)
            .validate()
            .is_ok());
        assert!(builder().endpoint("ftp://x").validate().is_err());
        assert!(builder().endpoint("https://u:p@x").validate().is_err());
        assert!(builder().part_size(1 << 20).validate().is_err());
        assert!(builder().max_parts_in_flight(0).validate().is_err());
        assert!(builder().storage_class("standard").validate().is_err());
        assert!(builder()
            .encryption(S3Encryption::Kms {
                key_id: " ".into(),
                bucket_key: None
            })
            .validate()
            .is_err());
        assert!(builder()
            .credentials(S3Credentials::new("AKIA", ""))
            .validate()
            .is_err());
    }

    #[test]
    fn secrets_never_reach_debug_or_describe() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let b = builder()
            .endpoint("https://minio.example:9000")
            .credentials(S3Credentials::new("AKIDEXAMPLE", secret).with_session_token("tok-secret"))
            .encryption(S3Encryption::S3Managed)
            .storage_class("STANDARD_IA");
        let dbg = format!("{b:?}");
        assert!(
            !dbg.contains(secret) && !dbg.contains("tok-secret"),
            "{dbg}"
        );
        assert!(dbg.contains("AKIDEXAMPLE"));
        let sink = b.prefix("stoa/prod").build().unwrap();
        for s in [format!("{sink:?}"), sink.describe()] {
            assert!(!s.contains(secret) && !s.contains("tok-secret"), "{s}");
        }
        assert_eq!(
            sink.describe(),
            "s3://stoa-backups/stoa/prod at https://minio.example:9000"
        );
        assert_eq!(
            sink.object_key(&ObjectKey::new("runs/x/m.json").unwrap()),
            "stoa/prod/runs/x/m.json"
        );
        assert_eq!(sink.max_buffered_bytes(), 5 * DEFAULT_PART_SIZE as u64);
    }

    #[test]
    fn keys_map_to_and_from_the_prefix() {
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

    #[test]
    fn maps_errors_to_kinds() {
        let src = || -> Box<dyn std::error::Error + Send + Sync> { "x".into() };
        let e = map_error(
            "b",
            "p/k",
            object_store::Error::PermissionDenied {
                path: "p/k".into(),
                source: src(),
            },
            "put",
            Some("k"),
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("s3://b/p/k"), "{e}");
        assert_eq!(e.artifact(), Some("k"));
        assert_eq!(e.component(), Some(COMPONENT));
        let e = map_error(
            "b",
            "k",
            object_store::Error::Generic {
                store: "S3",
                source: "Error performing PUT http://h/b/k in 1s, after 3 retries - Server \
                         returned non-2xx status code: 503 Service Unavailable: <Error/>"
                    .into(),
            },
            "put",
            None,
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert_eq!(status_in("status code: 404 Not Found"), Some(404));
        assert_eq!(status_in("nothing"), None);
    }
}
