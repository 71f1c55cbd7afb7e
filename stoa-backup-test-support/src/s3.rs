//! Real S3 servers for tests (feature `s3`).
//!
//! - [`S3sServer`]: an `s3s` + `s3s-fs` server started in-process on `127.0.0.1` with a
//!   random port, storing objects under a temporary directory. It checks AWS Signature V4
//!   with the fixed test credentials [`TEST_ACCESS_KEY`] / [`TEST_SECRET_KEY`], counts the
//!   requests it serves by S3 operation ([`S3sServer::requests`]) and can answer with
//!   injected HTTP errors ([`S3sServer::faults`]: 503 for some requests, 403 for all…).
//! - moto's standalone server (`moto_server`, PyPI `moto[server]`) when
//!   [`S3_ENDPOINT_ENV`] (`STOA_TEST_S3_ENDPOINT`) names it, e.g. `http://127.0.0.1:5123`
//!   (`scripts/moto-server.sh` starts one and prints its endpoint).
//!
//! s3s-fs checks `If-None-Match` / `If-Match` of a `PutObject` before writing, without a
//! lock, so two conditional puts racing for one key could both pass; AWS S3 evaluates them
//! atomically. [`S3sServer`] serves conditional writes one at a time, as S3 does.
//!
//! [`S3Target`] is one bucket, created with a unique name on one of them; [`targets`]
//! returns one on s3s-fs always and one on moto when configured. Buckets are created with
//! signed raw requests ([`signed_request`]), which also serve `ListMultipartUploads`
//! ([`S3Target::pending_uploads`]), an operation object_store does not expose.
//! [`proxy::S3Proxy`] sits between a client and a server to corrupt upload bodies or
//! emulate AWS S3's checksum handling.

use std::convert::Infallible;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub mod proxy;
mod sign;

/// The method type [`signed_request`] takes.
pub use hyper::Method;
pub use sign::{signed_request, signed_request_with_headers};

/// Environment variable naming a moto (or other S3) server for the tests, e.g.
/// `http://127.0.0.1:5123`. Unset: tests run against s3s-fs only.
pub const S3_ENDPOINT_ENV: &str = "STOA_TEST_S3_ENDPOINT";

/// Access key id the in-process server accepts (and moto is sent).
pub const TEST_ACCESS_KEY: &str = "stoa-test-access-key";

/// Secret key the in-process server checks signatures with. Tests assert it never appears
/// in errors or logs.
pub const TEST_SECRET_KEY: &str = "stoa-test-SECRET-d0-n0t-l0g-9f1c";

/// Region the test servers are addressed with.
pub const TEST_REGION: &str = "us-east-1";

/// What kind of server a target runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3ServerKind {
    /// s3s + s3s-fs, in-process.
    S3sFs,
    /// An external server named by [`S3_ENDPOINT_ENV`] (moto in `.ci/run`).
    External,
}

/// Requests served by an [`S3sServer`], by S3 operation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    /// All requests (including answered-with-a-fault ones).
    pub total: u64,
    /// `PutObject` (single-request uploads) and `CreateBucket`.
    pub put_object: u64,
    /// `CreateMultipartUpload`.
    pub create_multipart: u64,
    /// `UploadPart`.
    pub upload_part: u64,
    /// `CompleteMultipartUpload`.
    pub complete_multipart: u64,
    /// `AbortMultipartUpload`.
    pub abort_multipart: u64,
    /// Requests answered with an injected fault.
    pub faults: u64,
}

#[derive(Debug, Default)]
struct Counters {
    total: AtomicU64,
    put_object: AtomicU64,
    create_multipart: AtomicU64,
    upload_part: AtomicU64,
    complete_multipart: AtomicU64,
    abort_multipart: AtomicU64,
    faults: AtomicU64,
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultScope {
    /// Every request.
    All,
    /// Requests on objects (not on the bucket itself: `CreateBucket`, `ListObjects` stay
    /// unharmed).
    Objects,
    /// `UploadPart` requests only.
    UploadParts,
    /// Requests whose path (`/bucket/key`) contains this text, e.g. `/runs/`.
    PathContains(String),
}

#[derive(Debug, Clone)]
struct FaultRule {
    status: u16,
    every: u64,
    scope: FaultScope,
    matched: u64,
}

/// Injected HTTP failures of an [`S3sServer`], reconfigurable while it runs.
#[derive(Debug, Default)]
pub struct HttpFaults {
    rule: Mutex<Option<FaultRule>>,
}

impl HttpFaults {
    /// Answers every `nth` request in `scope` (the nth, 2nth, … from now) with `status`
    /// (503 → `ServiceUnavailable`, 500 → `InternalError`, 403 → `AccessDenied`, …).
    pub fn fail_every(&self, nth: u64, status: u16, scope: FaultScope) {
        assert!(nth >= 1);
        *self.lock() = Some(FaultRule {
            status,
            every: nth,
            scope,
            matched: 0,
        });
    }

    /// Answers every request in `scope` with `status`.
    pub fn fail_always(&self, status: u16, scope: FaultScope) {
        self.fail_every(1, status, scope)
    }

    /// Stops injecting faults.
    pub fn clear(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<FaultRule>> {
        self.rule.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fault_for(&self, op: Op, is_object: bool, path: &str) -> Option<u16> {
        let mut guard = self.lock();
        let rule = guard.as_mut()?;
        let applies = match &rule.scope {
            FaultScope::All => true,
            FaultScope::Objects => is_object,
            FaultScope::UploadParts => op == Op::UploadPart,
            FaultScope::PathContains(text) => path.contains(text.as_str()),
        };
        if !applies {
            return None;
        }
        rule.matched += 1;
        (rule.matched % rule.every == 0).then_some(rule.status)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    PutObject,
    CreateMultipart,
    UploadPart,
    CompleteMultipart,
    AbortMultipart,
    Other,
}

fn classify(method: &Method, query: &str) -> Op {
    let has = |k: &str| {
        query
            .split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    match *method {
        Method::PUT if has("partNumber") && has("uploadId") => Op::UploadPart,
        Method::PUT => Op::PutObject,
        Method::POST if has("uploads") => Op::CreateMultipart,
        Method::POST if has("uploadId") => Op::CompleteMultipart,
        Method::DELETE if has("uploadId") => Op::AbortMultipart,
        _ => Op::Other,
    }
}

fn error_code(status: u16) -> &'static str {
    match status {
        403 => "AccessDenied",
        401 => "Unauthorized",
        404 => "NoSuchKey",
        429 | 503 => "SlowDown",
        500 => "InternalError",
        _ => "ServiceUnavailable",
    }
}

/// An s3s + s3s-fs server running in-process on a random loopback port, with real
/// signature checks. Stopped when dropped.
pub struct S3sServer {
    endpoint: String,
    root: tempfile::TempDir,
    faults: Arc<HttpFaults>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl fmt::Debug for S3sServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3sServer")
            .field("endpoint", &self.endpoint)
            .field("root", &self.root.path())
            .finish_non_exhaustive()
    }
}

impl S3sServer {
    /// Starts a server on `127.0.0.1:<random port>` accepting [`TEST_ACCESS_KEY`] /
    /// [`TEST_SECRET_KEY`].
    ///
    /// # Panics
    /// If the server cannot start (no loopback, no temporary directory).
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("cannot create a directory for s3s-fs");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("cannot start s3s-fs");
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(TEST_ACCESS_KEY, TEST_SECRET_KEY));
        let service = b.build();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot listen on 127.0.0.1");
        let addr = listener.local_addr().expect("no local address");
        let faults = Arc::new(HttpFaults::default());
        let counters = Arc::new(Counters::default());
        let (f, c) = (faults.clone(), counters.clone());
        let storage = Arc::new(root.path().to_path_buf());
        let conditional = Arc::new(tokio::sync::Mutex::new(()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (service, f, c, st) = (service.clone(), f.clone(), c.clone(), storage.clone());
                let cond = conditional.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        handle(
                            service.clone(),
                            st.clone(),
                            f.clone(),
                            c.clone(),
                            cond.clone(),
                            req,
                        )
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), svc)
                        .await;
                });
            }
        });
        S3sServer {
            endpoint: format!("http://{addr}"),
            root,
            faults,
            counters,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The directory s3s-fs stores buckets, objects and upload state in.
    pub fn storage_dir(&self) -> &Path {
        self.root.path()
    }

    /// Fault injection for this server.
    pub fn faults(&self) -> &HttpFaults {
        &self.faults
    }

    /// Requests served so far.
    pub fn requests(&self) -> RequestCounts {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::SeqCst);
        RequestCounts {
            total: l(&c.total),
            put_object: l(&c.put_object),
            create_multipart: l(&c.create_multipart),
            upload_part: l(&c.upload_part),
            complete_multipart: l(&c.complete_multipart),
            abort_multipart: l(&c.abort_multipart),
            faults: l(&c.faults),
        }
    }

    /// Upload state s3s-fs keeps for multipart uploads not completed nor aborted: upload
    /// records (`.upload-<id>.json`) and stored parts (`.upload_id-<id>.part-<n>`).
    pub fn pending_upload_files(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.root.path())
            .expect("cannot read the s3s-fs directory")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                (n.starts_with(".upload-") && n.ends_with(".json")) || n.starts_with(".upload_id-")
            })
            .collect();
        out.sort();
        out
    }
}

impl Drop for S3sServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    service: S3Service,
    storage: Arc<PathBuf>,
    faults: Arc<HttpFaults>,
    counters: Arc<Counters>,
    conditional: Arc<tokio::sync::Mutex<()>>,
    req: Request<Incoming>,
) -> Result<Response<s3s::Body>, Infallible> {
    let op = classify(req.method(), req.uri().query().unwrap_or(""));
    counters.total.fetch_add(1, Ordering::SeqCst);
    // Path-style: "/bucket" is the bucket, "/bucket/key…" an object.
    let is_object = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, k)| !k.is_empty());
    // s3s-fs answers 500 for a key naming a directory (a prefix of other keys): S3 says 404.
    if is_object && (req.method() == Method::GET || req.method() == Method::HEAD) {
        let rel = crate::percent::decode(req.uri().path().trim_start_matches('/'));
        if !rel.split('/').any(|s| s == ".." || s == ".") && storage.join(&rel).is_dir() {
            let body = if req.method() == Method::HEAD {
                String::new()
            } else {
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
                 <Message>The specified key does not exist.</Message></Error>"
                    .to_string()
            };
            let resp = Response::builder()
                .status(StatusCode::NOT_FOUND)
                .header("content-type", "application/xml")
                .body(s3s::Body::from(body))
                .expect("valid response");
            return Ok(resp);
        }
    }
    if let Some(status) = faults.fault_for(op, is_object, req.uri().path()) {
        counters.faults.fetch_add(1, Ordering::SeqCst);
        // Read the request body first, as a real server would, so the client sees the answer.
        // Only draining matters here; a broken body changes nothing in the fault answer.
        req.into_body().collect().await.ok();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code>\
             <Message>injected by stoa-backup-test-support</Message></Error>",
            error_code(status)
        );
        let resp = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
            .header("content-type", "application/xml")
            .body(s3s::Body::from(body))
            .expect("valid response");
        return Ok(resp);
    }
    let counter = match op {
        Op::PutObject => Some(&counters.put_object),
        Op::CreateMultipart => Some(&counters.create_multipart),
        Op::UploadPart => Some(&counters.upload_part),
        Op::CompleteMultipart => Some(&counters.complete_multipart),
        Op::AbortMultipart => Some(&counters.abort_multipart),
        Op::Other => None,
    };
    // One conditional write at a time: s3s-fs checks the condition, then writes.
    let is_conditional = matches!(op, Op::PutObject | Op::CompleteMultipart)
        && (req.headers().contains_key("if-none-match") || req.headers().contains_key("if-match"));
    let _one_at_a_time = match is_conditional {
        true => Some(conditional.lock().await),
        false => None,
    };
    let resp = match service.call(req.map(s3s::Body::from)).await {
        Ok(resp) => resp,
        Err(e) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(s3s::Body::from(format!("s3s error: {e:?}")))
            .expect("valid response"),
    };
    if let Some(c) = counter {
        if resp.status().is_success() {
            c.fetch_add(1, Ordering::SeqCst);
        }
    }
    Ok(resp)
}

/// One bucket with a unique name on a test server, and how to reach it.
#[derive(Debug)]
pub struct S3Target {
    /// Which server.
    pub kind: S3ServerKind,
    /// Endpoint URL (`http://127.0.0.1:<port>`).
    pub endpoint: String,
    /// Region to sign with.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key (a test value; never log it anyway).
    pub secret_key: String,
    /// The bucket, created for this target.
    pub bucket: String,
    server: Option<Arc<S3sServer>>,
}

impl S3Target {
    /// `s3s-fs` or `moto` (external), for messages.
    pub fn name(&self) -> &'static str {
        match self.kind {
            S3ServerKind::S3sFs => "s3s-fs",
            S3ServerKind::External => "moto",
        }
    }

    /// The in-process server, for s3s-fs targets.
    pub fn server(&self) -> Option<&S3sServer> {
        self.server.as_deref()
    }

    /// Another bucket (unique name) on the same server.
    pub async fn another_bucket(&self) -> S3Target {
        let bucket = unique_bucket_name();
        create_bucket(
            &self.endpoint,
            &self.region,
            &self.access_key,
            &self.secret_key,
            &bucket,
        )
        .await;
        S3Target {
            kind: self.kind,
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            bucket,
            server: self.server.clone(),
        }
    }

    /// Keys of the multipart uploads in this bucket that are neither completed nor aborted,
    /// as the server reports them (`ListMultipartUploads`; for s3s-fs, which lacks that
    /// operation, its on-disk upload state, which covers all its buckets).
    pub async fn pending_uploads(&self) -> Vec<String> {
        if let Some(server) = &self.server {
            return server.pending_upload_files();
        }
        let resp = signed_request(
            Method::GET,
            &self.endpoint,
            &self.region,
            &self.access_key,
            &self.secret_key,
            &format!("/{}", self.bucket),
            &[("uploads", "")],
            Bytes::new(),
        )
        .await;
        assert!(
            resp.0.is_success(),
            "ListMultipartUploads on {} failed: {} {}",
            self.endpoint,
            resp.0,
            resp.1
        );
        xml_values(&resp.1, "Upload")
            .iter()
            .flat_map(|u| xml_values(u, "Key"))
            .collect()
    }
}

/// A bucket on a fresh in-process s3s-fs server.
pub async fn s3s_fs_target() -> S3Target {
    let server = Arc::new(S3sServer::start().await);
    let bucket = unique_bucket_name();
    create_bucket(
        server.endpoint(),
        TEST_REGION,
        TEST_ACCESS_KEY,
        TEST_SECRET_KEY,
        &bucket,
    )
    .await;
    S3Target {
        kind: S3ServerKind::S3sFs,
        endpoint: server.endpoint().to_string(),
        region: TEST_REGION.to_string(),
        access_key: TEST_ACCESS_KEY.to_string(),
        secret_key: TEST_SECRET_KEY.to_string(),
        bucket,
        server: Some(server),
    }
}

/// The endpoint in [`S3_ENDPOINT_ENV`], if set and not empty.
pub fn external_endpoint() -> Option<String> {
    std::env::var(S3_ENDPOINT_ENV)
        .ok()
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
}

/// A bucket on the server named by [`S3_ENDPOINT_ENV`] (moto), if it is set.
///
/// # Panics
/// If it is set but the server cannot create a bucket: a configured server must work.
pub async fn external_target() -> Option<S3Target> {
    let endpoint = external_endpoint()?;
    let bucket = unique_bucket_name();
    create_bucket(
        &endpoint,
        TEST_REGION,
        TEST_ACCESS_KEY,
        TEST_SECRET_KEY,
        &bucket,
    )
    .await;
    Some(S3Target {
        kind: S3ServerKind::External,
        endpoint,
        region: TEST_REGION.to_string(),
        access_key: TEST_ACCESS_KEY.to_string(),
        secret_key: TEST_SECRET_KEY.to_string(),
        bucket,
        server: None,
    })
}

/// A target on s3s-fs, and one on moto when [`S3_ENDPOINT_ENV`] is set.
pub async fn targets() -> Vec<S3Target> {
    let mut v = vec![s3s_fs_target().await];
    if let Some(t) = external_target().await {
        v.push(t);
    } else {
        eprintln!("note: {S3_ENDPOINT_ENV} is not set; S3 tests run against s3s-fs only");
    }
    v
}

/// `stoa-test-<16 hex digits>`.
pub fn unique_bucket_name() -> String {
    format!("stoa-test-{:016x}", rand::random::<u64>())
}

/// Creates `bucket` with a signed `CreateBucket` request.
///
/// # Panics
/// If the server refuses or cannot be reached.
pub async fn create_bucket(
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret_key: &str,
    bucket: &str,
) {
    let (status, body) = signed_request(
        Method::PUT,
        endpoint,
        region,
        access_key,
        secret_key,
        &format!("/{bucket}"),
        &[],
        Bytes::new(),
    )
    .await;
    assert!(
        status.is_success(),
        "cannot create the bucket {bucket} on {endpoint}: {status} {body}"
    );
}

/// The text inside each `<tag>…</tag>` of a (simple, unnested-by-the-same-tag) XML text.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests() {
        assert_eq!(
            classify(&Method::PUT, "partNumber=2&uploadId=x"),
            Op::UploadPart
        );
        assert_eq!(classify(&Method::POST, "uploads"), Op::CreateMultipart);
        assert_eq!(classify(&Method::POST, "uploads="), Op::CreateMultipart);
        assert_eq!(classify(&Method::POST, "uploadId=x"), Op::CompleteMultipart);
        assert_eq!(classify(&Method::DELETE, "uploadId=x"), Op::AbortMultipart);
        assert_eq!(classify(&Method::PUT, ""), Op::PutObject);
        assert_eq!(classify(&Method::GET, "list-type=2"), Op::Other);
        assert_eq!(
            xml_values(
                "<a><Upload><Key>k1</Key></Upload><Upload><Key>k2</Key></Upload></a>",
                "Upload"
            )
            .iter()
            .flat_map(|u| xml_values(u, "Key"))
            .collect::<Vec<_>>(),
            vec!["k1", "k2"]
        );
    }

    #[tokio::test]
    async fn server_checks_signatures_and_counts() {
        let t = s3s_fs_target().await;
        let server = t.server().unwrap();
        assert!(server.requests().put_object >= 1, "CreateBucket counted");
        // A wrong secret is refused.
        let (status, _) = signed_request(
            Method::PUT,
            &t.endpoint,
            TEST_REGION,
            TEST_ACCESS_KEY,
            "wrong-secret",
            &format!("/{}/x", t.bucket),
            &[],
            Bytes::from_static(b"x"),
        )
        .await;
        assert_eq!(status.as_u16(), 403);
        let (status, _) = signed_request(
            Method::PUT,
            &t.endpoint,
            TEST_REGION,
            TEST_ACCESS_KEY,
            TEST_SECRET_KEY,
            &format!("/{}/dir/x", t.bucket),
            &[],
            Bytes::from_static(b"x"),
        )
        .await;
        assert!(status.is_success(), "{status}");
        server.faults().fail_always(503, FaultScope::Objects);
        let (status, _) = signed_request(
            Method::GET,
            &t.endpoint,
            TEST_REGION,
            TEST_ACCESS_KEY,
            TEST_SECRET_KEY,
            &format!("/{}/dir/x", t.bucket),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(status.as_u16(), 503);
        server.faults().clear();
        assert!(t.pending_uploads().await.is_empty());
        assert_eq!(server.requests().faults, 1);
    }
}
