//! Configuration of an [`S3Sink`]: the builder, its validation (no I/O), reading the
//! standard AWS environment ([`S3SinkBuilder::from_env`]) and the object_store client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::{Attribute, Attributes, BackoffConfig, ClientOptions, RetryConfig};
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::key::validate_prefix;

use super::checksum::{is_aws_endpoint, Checksums, EchoConnector};
use super::download::{MAX_RANGES_IN_FLIGHT, MIN_RANGE_SIZE};
use super::{
    Inner, S3Sink, S3SinkMetrics, COMPONENT, DEFAULT_MAX_PARTS_IN_FLIGHT, DEFAULT_PART_SIZE,
    DEFAULT_RANGES_IN_FLIGHT, DEFAULT_RANGE_SIZE, MAX_PART_SIZE, MIN_PART_SIZE,
};

/// Variables of the AWS credential providers besides static keys, read by
/// [`S3SinkBuilder::from_env`] and handed to object_store as they are: web identity (IRSA on
/// EKS), ECS task and EKS Pod Identity container credentials. None of them holds a secret
/// (they name files, roles and local endpoints).
const CREDENTIAL_PROVIDER_VARS: &[&str] = &[
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

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

/// Configures an [`S3Sink`]. [`S3SinkBuilder::new`] starts from explicit settings only,
/// [`S3SinkBuilder::from_env`] from the standard AWS environment; settings made on the
/// builder afterwards win. [`S3SinkBuilder::build`] validates the configuration without
/// connecting; [`Sink::preflight`](stoa_backup_core::Sink::preflight) checks the bucket is
/// reachable and writable. `Debug` shows no secret (see [`S3Credentials`]).
#[derive(Debug, Clone)]
pub struct S3SinkBuilder {
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    virtual_hosted_style: bool,
    allow_http: bool,
    allow_loopback_http: bool,
    /// Credential-provider variables from the environment (name, value).
    credential_env: Vec<(&'static str, String)>,
    credentials: Option<S3Credentials>,
    part_size: usize,
    max_parts_in_flight: usize,
    read_range_size: usize,
    ranges_in_flight: usize,
    retry: S3Retry,
    request_timeout: Duration,
    connect_timeout: Duration,
    encryption: Option<S3Encryption>,
    storage_class: Option<String>,
    write_checksums: bool,
    /// `None`: decided by the endpoint ([`is_aws_endpoint`]).
    store_verifies_checksums: Option<bool>,
    etag_checks: bool,
}

impl S3SinkBuilder {
    /// A builder for a sink on `bucket` that reads nothing from the environment: give the
    /// region, endpoint and [`credentials`](Self::credentials) here. Without credentials,
    /// the client asks the EC2 instance metadata service for them. To use the standard AWS
    /// environment (static keys, IRSA, container credentials), start with
    /// [`S3SinkBuilder::from_env`] instead.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3SinkBuilder {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            virtual_hosted_style: false,
            allow_http: false,
            allow_loopback_http: false,
            credential_env: Vec::new(),
            credentials: None,
            part_size: DEFAULT_PART_SIZE,
            max_parts_in_flight: DEFAULT_MAX_PARTS_IN_FLIGHT,
            read_range_size: DEFAULT_RANGE_SIZE,
            ranges_in_flight: DEFAULT_RANGES_IN_FLIGHT,
            retry: S3Retry::default(),
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            encryption: None,
            storage_class: None,
            write_checksums: true,
            store_verifies_checksums: None,
            etag_checks: true,
        }
    }

    /// A builder for a sink on `bucket` configured from the standard AWS environment, as
    /// the AWS SDKs and CLI read it (empty variables count as unset):
    ///
    /// | variable | sets |
    /// |----------|------|
    /// | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | static [`credentials`](Self::credentials) (the token is optional) |
    /// | `AWS_REGION`, else `AWS_DEFAULT_REGION` | the [`region`](Self::region) |
    /// | `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (else the older `AWS_ENDPOINT`) | the [`endpoint`](Self::endpoint) |
    /// | `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`, `AWS_ENDPOINT_URL_STS` | web identity credentials (IRSA on EKS), used without static keys |
    /// | `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, `AWS_CONTAINER_CREDENTIALS_FULL_URI`, `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` | ECS task or EKS Pod Identity credentials, used without static keys or web identity |
    ///
    /// With none of these credentials, the EC2 instance metadata service is asked. The
    /// bucket is always the argument; shared config files (`~/.aws`) are not read. Settings
    /// made on the builder afterwards win over the environment, and everything is validated
    /// by [`build`](Self::build) like explicit settings: a plain `http://` endpoint from the
    /// environment still needs [`allow_http`](Self::allow_http).
    pub fn from_env(bucket: impl Into<String>) -> Self {
        Self::from_env_with(bucket, |name| std::env::var(name).ok())
    }

    /// [`S3SinkBuilder::from_env`] with the variables looked up through `var` (a name to its
    /// value) instead of the process environment, e.g. from a configuration map.
    pub fn from_env_with(bucket: impl Into<String>, var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let first = |names: &[&str]| names.iter().find_map(|n| var(n));
        let mut b = S3SinkBuilder::new(bucket);
        b.region = first(&["AWS_REGION", "AWS_DEFAULT_REGION"]);
        b.endpoint = first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]);
        let key_id = var("AWS_ACCESS_KEY_ID");
        let secret = var("AWS_SECRET_ACCESS_KEY");
        if key_id.is_some() || secret.is_some() {
            // Only one of the two is a mistake that validation reports (never a silent
            // fall-back to other credentials).
            let mut c = S3Credentials::new(key_id.unwrap_or_default(), secret.unwrap_or_default());
            if let Some(token) = var("AWS_SESSION_TOKEN") {
                c = c.with_session_token(token);
            }
            b.credentials = Some(c);
        }
        b.credential_env = CREDENTIAL_PROVIDER_VARS
            .iter()
            .filter_map(|&name| var(name).map(|v| (name, v)))
            .collect();
        b
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

    /// Allows plain `http://` only when the endpoint's host is a loopback address
    /// (`localhost`, `127.0.0.0/8`, `::1`): a local MinIO or moto, never a remote server.
    pub fn allow_loopback_http(mut self, yes: bool) -> Self {
        self.allow_loopback_http = yes;
        self
    }

    /// Whether a plain-http endpoint is allowed, after [`allow_http`](Self::allow_http) and
    /// [`allow_loopback_http`](Self::allow_loopback_http).
    fn http_allowed(&self) -> bool {
        self.allow_http
            || (self.allow_loopback_http && self.endpoint.as_deref().is_some_and(is_loopback_url))
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

    /// Reads of objects larger than two ranges fetch byte ranges of this size in parallel
    /// (at least 64 KiB; default 8 MiB, AWS's recommendation); see
    /// [`ranges_in_flight`](Self::ranges_in_flight).
    pub fn read_range_size(mut self, bytes: usize) -> Self {
        self.read_range_size = bytes;
        self
    }

    /// How many ranges of one read may be in flight at once (1 to 64; default 4). One
    /// connection to S3 carries about 100 MB/s; read-backs and restores of large artifacts
    /// go as fast as the ranges in flight together. A read holds at most
    /// `ranges_in_flight * read_range_size` bytes; 1 reads every object with a single
    /// request.
    pub fn ranges_in_flight(mut self, n: usize) -> Self {
        self.ranges_in_flight = n;
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

    /// Sends `x-amz-checksum-sha256`, the SHA-256 of the request body, with every
    /// `PutObject` and `UploadPart` (and `x-amz-checksum-algorithm: SHA256` when creating a
    /// multipart upload), so a store that verifies it refuses a body changed on the way
    /// (default on). Some S3-compatible stores reject the header or ignore it: off sends
    /// uploads without it, and no put reports
    /// [`store_checked`](stoa_backup_core::sink::PutResult::store_checked).
    pub fn write_checksums(mut self, yes: bool) -> Self {
        self.write_checksums = yes;
        self
    }

    /// Whether the store is known to refuse an upload whose body does not match its
    /// `x-amz-checksum-sha256`, so a put may report
    /// [`store_checked`](stoa_backup_core::sink::PutResult::store_checked) and spare the pipeline
    /// reading the object back. Default: yes for AWS S3's own endpoints (no
    /// [`endpoint`](Self::endpoint), or a host under `amazonaws.com`), which document that
    /// check (`BadDigest`); no for any other endpoint. Say yes only for a store known to
    /// check: some merely accept the header (moto ignores it; s3s-fs checks a single
    /// `PutObject`, after storing it, and no part). Even then a put reports the check only
    /// when the answer to every upload request echoed the checksum sent; without
    /// [`write_checksums`](Self::write_checksums) this has no effect.
    pub fn store_verifies_checksums(mut self, yes: bool) -> Self {
        self.store_verifies_checksums = Some(yes);
        self
    }

    /// What this configuration does with checksums.
    fn checksums(&self) -> Checksums {
        Checksums {
            send: self.write_checksums,
            store_verifies: self
                .store_verifies_checksums
                .unwrap_or_else(|| is_aws_endpoint(self.endpoint.as_deref())),
        }
    }

    /// Whether uploads to a store not known to verify `x-amz-checksum-sha256` compare the
    /// ETag the store answers with the MD5s of what the sink sent (default on). S3-compatible
    /// stores name objects by such MD5s; when the ETag matches, the put reports
    /// [`PutResult::store_checked`](stoa_backup_core::sink::PutResult::store_checked) and
    /// the pipeline does not read the object back, sparing a download of every artifact.
    /// When it does not, nothing is claimed and the object is read back as without it. It
    /// costs one MD5 pass over the upload, off the upload's own path; it is never made on
    /// stores whose checksum claim holds already, nor with SSE-KMS (whose ETags are not MD5s).
    pub fn etag_checks(mut self, yes: bool) -> Self {
        self.etag_checks = yes;
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
                "http" if self.http_allowed() => {}
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
        if self.read_range_size < MIN_RANGE_SIZE {
            return Err(cfg(
                format!("read range size {} is too small", self.read_range_size),
                "read ranges of at least 64 KiB (8 MiB or more suits S3)",
            ));
        }
        if self.ranges_in_flight == 0 || self.ranges_in_flight > MAX_RANGES_IN_FLIGHT {
            return Err(cfg(
                format!("ranges_in_flight {} is out of range", self.ranges_in_flight),
                "allow between 1 and 64 ranges in flight (1 reads with a single request)",
            ));
        }
        if let Some(c) = &self.credentials {
            if c.access_key_id.is_empty() || c.secret_access_key.0.is_empty() {
                return Err(cfg(
                    "empty access key id or secret access key".to_string(),
                    "give both the access key id and the secret access key (S3Credentials::new, \
                     or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY with S3SinkBuilder::from_env)",
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
        let checksums = self.checksums();
        let store = self.store_builder()?.build().map_err(|e| {
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
        let http = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|e| {
                Error::config("cannot configure the HTTP client of the S3 sink")
                    .with_component(COMPONENT)
                    .with_operation("configure")
                    .with_source(e.without_url())
                    .with_hint("check the TLS setup of this machine")
            })?;
        Ok(S3Sink {
            inner: Arc::new(Inner {
                checksums,
                // Not where the checksum claim holds already, nor where ETags are not MD5s.
                etag_checks: self.etag_checks
                    && !checksums.may_claim()
                    && !matches!(self.encryption, Some(S3Encryption::Kms { .. })),
                store,
                bucket: self.bucket,
                prefix: self.prefix.trim_matches('/').to_string(),
                endpoint: self.endpoint,
                region: self.region,
                part_size: self.part_size,
                max_parts_in_flight: self.max_parts_in_flight,
                read_range_size: self.read_range_size,
                ranges_in_flight: self.ranges_in_flight,
                attributes,
                metrics: Arc::new(S3SinkMetrics::default()),
                http,
                retry: self.retry,
            }),
        })
    }

    /// The object_store client's configuration.
    fn store_builder(&self) -> Result<AmazonS3Builder> {
        let config_key = |name: &str| -> Result<AmazonS3ConfigKey> {
            name.to_ascii_lowercase()
                .parse()
                .map_err(|e| Error::internal(format!("{e}")).with_component(COMPONENT))
        };
        let mut b = AmazonS3Builder::new().with_bucket_name(&self.bucket);
        for (name, value) in &self.credential_env {
            b = b.with_config(config_key(name)?, value);
        }
        if let Some(ep) = &self.endpoint {
            b = b.with_endpoint(ep.trim_end_matches('/'));
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        b = b
            .with_virtual_hosted_style_request(self.virtual_hosted_style)
            .with_allow_http(self.http_allowed());
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
                    .with_allow_http(self.http_allowed())
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
        let checksums = self.checksums();
        if checksums.send {
            b = b.with_checksum_algorithm(Checksum::SHA256);
        }
        if checksums.may_claim() {
            b = b.with_http_connector(EchoConnector);
        }
        match &self.encryption {
            None => {}
            Some(S3Encryption::S3Managed) => {
                // object_store does not export the encryption key enum; its string form does.
                b = b.with_config(config_key("aws_server_side_encryption")?, "AES256");
            }
            Some(S3Encryption::Kms { key_id, bucket_key }) => {
                b = b.with_sse_kms_encryption(key_id);
                if let Some(k) = bucket_key {
                    b = b.with_bucket_key(*k);
                }
            }
        }
        Ok(b)
    }
}

/// Whether `url`'s host is `localhost` or a loopback IP address.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
