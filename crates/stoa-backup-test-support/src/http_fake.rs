//! Plumbing shared by the HTTP fakes: the accept loop serving one handler per connection.

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
