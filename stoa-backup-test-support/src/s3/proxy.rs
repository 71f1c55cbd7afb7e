//! [`S3Proxy`]: an HTTP proxy between an S3 client and a test server that changes what
//! passes through it, to see what the server checks and what the client then claims.
//!
//! - [`S3Proxy::corrupt_nth`] flips one byte of an upload body on the way to the server,
//!   as a broken link or middlebox would: the request's headers (its signature, its
//!   `x-amz-content-sha256` and `x-amz-checksum-sha256`) still describe the bytes the client
//!   sent.
//! - [`S3Proxy::emulate_aws_checksums`] handles `x-amz-checksum-sha256` the way AWS S3
//!   documents it, in front of a server that does not (s3s-fs, moto): an upload whose body
//!   does not match is refused with `400 BadDigest` before it reaches the server, and a
//!   matching one's answer echoes the checksum back.
//!
//! The client signs for the proxy's address; the proxy forwards the `Host` header as it
//! came, so the server's signature check still passes.

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{classify, Op};

const CHECKSUM_HEADER: &str = "x-amz-checksum-sha256";

/// Hop-by-hop headers: not forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
];

/// Which upload requests [`S3Proxy::corrupt_nth`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// `PutObject` and `UploadPart`.
    Any,
    /// `PutObject` (a single-request upload).
    PutObject,
    /// `UploadPart`.
    UploadPart,
}

impl Upload {
    fn matches(self, op: Op) -> bool {
        match self {
            Upload::Any => matches!(op, Op::PutObject | Op::UploadPart),
            Upload::PutObject => op == Op::PutObject,
            Upload::UploadPart => op == Op::UploadPart,
        }
    }
}

/// What an [`S3Proxy`] saw and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Upload requests with a body (`PutObject`, `UploadPart`).
    pub uploads: u64,
    /// Upload requests that carried `x-amz-checksum-sha256`.
    pub uploads_with_checksum: u64,
    /// Bodies changed on the way ([`S3Proxy::corrupt_nth`]).
    pub corrupted: u64,
    /// Uploads refused with `BadDigest` ([`S3Proxy::emulate_aws_checksums`]).
    pub refused: u64,
    /// `GET` requests (object reads and listings).
    pub gets: u64,
    /// `GET` requests with a `Range` header (ranged object reads).
    pub ranged_gets: u64,
}

#[derive(Debug)]
struct State {
    upstream: String,
    client: reqwest::Client,
    /// The kind of upload to corrupt, and how many more of them pass before one is.
    corrupt: Mutex<Option<(Upload, u64)>>,
    aws_checksums: AtomicBool,
    uploads: AtomicU64,
    with_checksum: AtomicU64,
    corrupted: AtomicU64,
    refused: AtomicU64,
    gets: AtomicU64,
    ranged_gets: AtomicU64,
}

/// A proxy on a random loopback port in front of an S3 server. Stopped when dropped.
pub struct S3Proxy {
    endpoint: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl fmt::Debug for S3Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Proxy")
            .field("endpoint", &self.endpoint)
            .field("upstream", &self.state.upstream)
            .finish_non_exhaustive()
    }
}

impl S3Proxy {
    /// Starts a proxy forwarding everything, unchanged, to `upstream`
    /// (`http://127.0.0.1:<port>`).
    ///
    /// # Panics
    /// If it cannot listen on loopback.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the S3 proxy cannot listen on 127.0.0.1");
        let addr = listener.local_addr().expect("no local address");
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            corrupt: Mutex::new(None),
            aws_checksums: AtomicBool::new(false),
            uploads: AtomicU64::new(0),
            with_checksum: AtomicU64::new(0),
            corrupted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            ranged_gets: AtomicU64::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| forward(st.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), svc)
                        .await;
                });
            }
        });
        S3Proxy {
            endpoint: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`: give this to the client instead of the server's.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Flips one byte (the middle one) of the body of the `nth` upload request of `kind`
    /// from now (`1`: the next); empty bodies do not count.
    pub fn corrupt_nth(&self, nth: u64, kind: Upload) {
        assert!(nth >= 1);
        *self.lock() = Some((kind, nth));
    }

    /// Handles `x-amz-checksum-sha256` like AWS S3 (see the module documentation), or stops.
    pub fn emulate_aws_checksums(&self, yes: bool) {
        self.state.aws_checksums.store(yes, Ordering::SeqCst);
    }

    /// What the proxy saw and did so far.
    pub fn counts(&self) -> ProxyCounts {
        let l = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyCounts {
            uploads: l(&self.state.uploads),
            uploads_with_checksum: l(&self.state.with_checksum),
            corrupted: l(&self.state.corrupted),
            refused: l(&self.state.refused),
            gets: l(&self.state.gets),
            ranged_gets: l(&self.state.ranged_gets),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Upload, u64)>> {
        self.state.corrupt.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    /// Whether this upload is the one to corrupt (and counts it).
    fn take_corruption(&self, op: Op) -> bool {
        let mut guard = self.corrupt.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some((kind, n)) if kind.matches(op) => {
                *n -= 1;
                if *n == 0 {
                    *guard = None;
                    return true;
                }
                false
            }
            _ => false,
        }
    }
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

async fn forward(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let op = classify(req.method(), req.uri().query().unwrap_or(""));
    if req.method() == hyper::Method::GET {
        state.gets.fetch_add(1, Ordering::SeqCst);
        if req.headers().contains_key(hyper::header::RANGE) {
            state.ranged_gets.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (parts, body) = req.into_parts();
    let mut body = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => {
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                format!("<Error><Code>IncompleteBody</Code><Message>{e}</Message></Error>"),
            ))
        }
    };
    let upload = matches!(op, Op::PutObject | Op::UploadPart) && !body.is_empty();
    let sent = parts
        .headers
        .get(CHECKSUM_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if upload {
        state.uploads.fetch_add(1, Ordering::SeqCst);
        if sent.is_some() {
            state.with_checksum.fetch_add(1, Ordering::SeqCst);
        }
        if state.take_corruption(op) {
            let mid = body.len() / 2;
            body[mid] ^= 0xff;
            state.corrupted.fetch_add(1, Ordering::SeqCst);
        }
    }
    let aws = upload && state.aws_checksums.load(Ordering::SeqCst);
    if let (true, Some(sent)) = (aws, &sent) {
        if &checksum_sha256(&body) != sent {
            state.refused.fetch_add(1, Ordering::SeqCst);
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>BadDigest</Code>\
                 <Message>The SHA256 you specified did not match the calculated checksum.\
                 </Message></Error>"
                    .to_string(),
            ));
        }
    }

    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path_and_query}", state.upstream);
    let mut out = state.client.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        // The forwarding client sets the length of the body it sends.
        if !HOP_BY_HOP.contains(&name.as_str()) && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return Ok(respond(
                StatusCode::BAD_GATEWAY,
                format!("<Error><Code>BadGateway</Code><Message>{e}</Message></Error>"),
            ))
        }
    };
    let status = resp.status();
    // The length stays: a HEAD answer's is the object's size.
    let mut builder = Response::builder().status(status.as_u16());
    for (name, value) in resp.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut answer = builder.body(Full::new(bytes)).expect("valid response");
    if let (true, true, Some(sent)) = (aws, status.is_success(), sent) {
        let value = sent.parse().expect("a header value stays one");
        answer.headers_mut().insert(CHECKSUM_HEADER, value);
    }
    Ok(answer)
}

/// The `x-amz-checksum-sha256` value of `body`: its SHA-256, base64.
pub fn checksum_sha256(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
}
