//! Configuration of an [`S3Sink`]: the builder, its validation (no I/O), reading the
//! standard AWS environment ([`S3SinkBuilder::from_env`]) and the object_store client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{Attribute, Attributes, BackoffConfig, ClientOptions, RetryConfig};
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::key::validate_prefix;

use super::{
    Inner, S3Sink, S3SinkMetrics, COMPONENT, DEFAULT_MAX_PARTS_IN_FLIGHT, DEFAULT_PART_SIZE,
    MAX_PART_SIZE, MIN_PART_SIZE,
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
    retry: S3Retry,
    request_timeout: Duration,
    connect_timeout: Duration,
    encryption: Option<S3Encryption>,
    storage_class: Option<String>,
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
            retry: S3Retry::default(),
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            encryption: None,
            storage_class: None,
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
                store,
                bucket: self.bucket,
                prefix: self.prefix.trim_matches('/').to_string(),
                endpoint: self.endpoint,
                region: self.region,
                part_size: self.part_size,
                max_parts_in_flight: self.max_parts_in_flight,
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
mod tests {
    use super::*;

    use std::collections::HashMap;

    use stoa_backup_core::error::ErrorKind;
    use stoa_backup_core::key::ObjectKey;
    use stoa_backup_core::sink::Sink;

    fn builder() -> S3SinkBuilder {
        S3Sink::builder("stoa-backups").region("eu-west-1")
    }

    /// A builder from the given variables only (the process environment is not touched).
    fn from_vars(vars: &[(&str, &str)]) -> S3SinkBuilder {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        S3SinkBuilder::from_env_with("stoa-backups", move |name| vars.get(name).cloned())
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
    fn from_env_reads_the_standard_aws_variables() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let b = from_vars(&[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_SESSION_TOKEN", "tok-secret"),
            ("AWS_REGION", "eu-west-3"),
            ("AWS_DEFAULT_REGION", "us-west-2"),
            ("AWS_ENDPOINT_URL_S3", "https://s3.minio.example:9000"),
            ("AWS_ENDPOINT_URL", "https://all.services.example"),
        ]);
        let c = b.credentials.as_ref().expect("static credentials");
        assert_eq!(c.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(c.secret_access_key.0, secret);
        assert_eq!(
            c.session_token.as_ref().map(|t| t.0.as_str()),
            Some("tok-secret")
        );
        assert_eq!(b.region.as_deref(), Some("eu-west-3"));
        assert_eq!(b.endpoint.as_deref(), Some("https://s3.minio.example:9000"));
        assert!(b.credential_env.is_empty());
        let dbg = format!("{b:?}");
        assert!(
            !dbg.contains(secret) && !dbg.contains("tok-secret"),
            "{dbg}"
        );
        let sink = b.build().unwrap();
        assert_eq!(
            sink.describe(),
            "s3://stoa-backups at https://s3.minio.example:9000"
        );

        // The fall-backs, and empty variables counting as unset.
        let b = from_vars(&[
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", "us-west-2"),
            ("AWS_ENDPOINT_URL_S3", " "),
            ("AWS_ENDPOINT_URL", "https://all.services.example"),
        ]);
        assert_eq!(b.region.as_deref(), Some("us-west-2"));
        assert_eq!(b.endpoint.as_deref(), Some("https://all.services.example"));
        assert!(b.credentials.is_none());

        // Settings made afterwards win over the environment.
        let b = from_vars(&[("AWS_REGION", "eu-west-3")])
            .region("ap-south-1")
            .credentials(S3Credentials::new("AKIDOTHER", "other-secret"));
        assert_eq!(b.region.as_deref(), Some("ap-south-1"));
        assert_eq!(b.credentials.as_ref().unwrap().access_key_id(), "AKIDOTHER");

        // Nothing set: nothing configured, like S3SinkBuilder::new.
        let b = from_vars(&[]);
        assert!(b.region.is_none() && b.endpoint.is_none() && b.credentials.is_none());
        assert!(b.credential_env.is_empty());
    }

    #[test]
    fn from_env_validates_what_it_read() {
        // Half a key pair is refused, not silently replaced by other credentials.
        let e = from_vars(&[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")])
            .validate()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.hint().unwrap_or("").contains("AWS_SECRET_ACCESS_KEY"),
            "{e:?}"
        );
        // A plain-http endpoint from the environment needs allow_http like an explicit one.
        let b = from_vars(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")]);
        assert!(b.clone().validate().is_err());
        assert!(b.clone().allow_http(true).validate().is_ok());
        // Loopback-only http: local servers pass, anything else still needs https.
        assert!(b.allow_loopback_http(true).validate().is_ok());
        for ok in [
            "http://localhost:5000",
            "http://[::1]:9000/x",
            "http://127.8.0.1",
        ] {
            let b = S3SinkBuilder::new("stoa-backups")
                .endpoint(ok)
                .allow_loopback_http(true);
            b.validate().unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
        for remote in [
            "http://minio.example:9000",
            "http://10.0.0.1",
            "http://127.0.0.1.nip.io",
        ] {
            let b = S3SinkBuilder::new("stoa-backups")
                .endpoint(remote)
                .allow_loopback_http(true);
            let e = b.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{remote}");
            // Refused for its plain http, not for something else in the configuration.
            assert!(e.message().contains("plain http"), "{remote}: {e}");
        }
    }

    #[test]
    fn from_env_hands_web_identity_and_container_credentials_to_the_client() {
        let b = from_vars(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/stoa-backup"),
            ("AWS_ROLE_SESSION_NAME", "stoa"),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/x",
            ),
            ("AWS_REGION", "eu-west-1"),
        ]);
        let store = b.store_builder().unwrap();
        for (key, value) in [
            (
                AmazonS3ConfigKey::WebIdentityTokenFile,
                "/var/run/secrets/eks/token",
            ),
            (
                AmazonS3ConfigKey::RoleArn,
                "arn:aws:iam::123456789012:role/stoa-backup",
            ),
            (AmazonS3ConfigKey::RoleSessionName, "stoa"),
            (
                AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
                "/v2/credentials/x",
            ),
            (AmazonS3ConfigKey::Region, "eu-west-1"),
        ] {
            assert_eq!(
                store.get_config_value(&key).as_deref(),
                Some(value),
                "{key:?}"
            );
        }
        // Every variable handed over names a key object_store knows.
        let all: Vec<(&str, &str)> = CREDENTIAL_PROVIDER_VARS.iter().map(|&n| (n, "x")).collect();
        assert_eq!(
            from_vars(&all).credential_env.len(),
            CREDENTIAL_PROVIDER_VARS.len()
        );
        from_vars(&all).store_builder().unwrap();
    }
}
