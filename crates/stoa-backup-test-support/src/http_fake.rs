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
