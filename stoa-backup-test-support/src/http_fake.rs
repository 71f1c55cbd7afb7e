//! Plumbing shared by the HTTP fakes: the accept loop serving one handler per connection,
//! the request reader, and (Keycloak, Grafana) the request log and injected faults.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serves HTTP/1.1 on `listener` until the returned task is aborted, calling
/// `handle(state, request)` for every request.
pub(crate) fn spawn_server<S, F, Fut>(listener: TcpListener, state: S, handle: F) -> JoinHandle<()>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            // A failed accept (e.g. the client gave up) only loses that connection.
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
                // A connection error ends that connection only; the client sees it.
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %e, "fake server connection ended with an error");
                }
            });
        }
    })
}

/// The parts of a request the fakes route on, read whole (fake bodies are small).
pub(crate) struct FakeRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Bytes,
}

impl FakeRequest {
    /// Reads method, path, raw query, headers and the whole body; an unreadable body is empty.
    pub(crate) async fn read(req: Request<Incoming>) -> Self {
        use http_body_util::BodyExt;
        let (parts, body) = req.into_parts();
        FakeRequest {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            headers: parts.headers,
            body: body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default(),
        }
    }

    /// A header's value, if present and valid text.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// One request a fake received, and what it answered.
#[cfg(any(feature = "grafana", feature = "keycloak"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query.
    pub query: String,
    /// Status answered.
    pub status: u16,
}

/// Logs `r`, answers it with `route`, and records the status answered.
#[cfg(any(feature = "grafana", feature = "keycloak"))]
pub(crate) fn answer_logged(
    log: &std::sync::Mutex<Vec<LoggedRequest>>,
    r: &FakeRequest,
    route: impl FnOnce() -> Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let idx = {
        let mut log = log.lock().expect("log");
        log.push(LoggedRequest {
            method: r.method.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            status: 0,
        });
        log.len() - 1
    };
    let resp = route();
    log.lock().expect("log")[idx].status = resp.status().as_u16();
    resp
}

/// An injected fault: requests whose path contains a given text answer a given status
/// (with the fake's own error body for it).
#[cfg(any(feature = "grafana", feature = "keycloak"))]
#[derive(Debug, Clone)]
pub struct HttpFault {
    method: Option<String>,
    path_contains: String,
    status: u16,
    retry_after: Option<u64>,
    remaining: Option<usize>,
}

#[cfg(any(feature = "grafana", feature = "keycloak"))]
impl HttpFault {
    /// Requests whose path contains `path_contains` answer `status`.
    pub fn new(path_contains: &str, status: u16) -> Self {
        HttpFault {
            method: None,
            path_contains: path_contains.into(),
            status,
            retry_after: None,
            remaining: None,
        }
    }

    /// Only for this method.
    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_uppercase());
        self
    }

    /// Adds `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }
}

/// The answer of the first fault matching `method` and `path`, counted down, with its
/// `Retry-After`; `body(status)` makes the fake's error response.
#[cfg(any(feature = "grafana", feature = "keycloak"))]
pub(crate) fn injected_fault(
    faults: &std::sync::Mutex<Vec<HttpFault>>,
    method: &str,
    path: &str,
    body: impl FnOnce(u16) -> Response<Full<Bytes>>,
) -> Option<Response<Full<Bytes>>> {
    let (status, retry_after) = {
        let mut faults = faults.lock().expect("faults");
        let f = faults.iter_mut().find(|f| {
            path.contains(&f.path_contains)
                && f.method.as_deref().is_none_or(|m| m == method)
                && f.remaining != Some(0)
        })?;
        if let Some(n) = f.remaining.as_mut() {
            *n -= 1;
        }
        (f.status, f.retry_after)
    };
    let mut r = body(status);
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().expect("header"));
    }
    Some(r)
}
