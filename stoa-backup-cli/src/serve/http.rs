//! The `serve` command's HTTP endpoints: `GET /metrics` (the registry in the OpenMetrics
//! text format Prometheus scrapes) and `GET /healthz` (200 while the scheduler runs, 503
//! once it shuts down), on a plain HTTP/1 listener (put TLS, if any, in front).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What `/healthz` says.
#[derive(Debug, Clone)]
pub struct Health {
    /// Whether the service is healthy (200) or not (503).
    pub ok: bool,
    /// The JSON body.
    pub body: String,
}

/// The content of the two endpoints, computed on each request.
#[derive(Clone)]
pub struct Endpoints {
    /// The metrics text.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// The health.
    pub health: Arc<dyn Fn() -> Health + Send + Sync>,
}

/// The content type of the OpenMetrics text format prometheus-client encodes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answers one request.
pub fn answer(endpoints: &Endpoints, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    match path {
        "/metrics" | "/healthz" if method != Method::GET && method != Method::HEAD => {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "only GET\n".into(),
            );
            r.headers_mut()
                .insert(ALLOW, "GET, HEAD".parse().expect("a valid header"));
            r
        }
        "/metrics" => reply(StatusCode::OK, METRICS_CONTENT_TYPE, (endpoints.metrics)()),
        "/healthz" => {
            let h = (endpoints.health)();
            let status = if h.ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", h.body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: GET /metrics or /healthz\n".into(),
        ),
    }
}

/// Serves the endpoints on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, endpoints: Endpoints, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                continue;
            }
        };
        let endpoints = endpoints.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = answer(&endpoints, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn endpoints(ok: bool) -> Endpoints {
        Endpoints {
            metrics: Arc::new(|| "# EOF\n".to_string()),
            health: Arc::new(move || Health {
                ok,
                body: format!("{{\"ok\":{ok}}}"),
            }),
        }
    }

    async fn body(r: Response<Full<Bytes>>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn metrics_health_and_everything_else() {
        let e = endpoints(true);
        let m = answer(&e, &Method::GET, "/metrics");
        assert_eq!(m.status(), StatusCode::OK);
        assert_eq!(m.headers()[CONTENT_TYPE], METRICS_CONTENT_TYPE);
        assert_eq!(body(m).await, "# EOF\n");
        let h = answer(&e, &Method::GET, "/healthz");
        assert_eq!(h.status(), StatusCode::OK);
        assert_eq!(body(h).await, "{\"ok\":true}");
        let down = answer(&endpoints(false), &Method::GET, "/healthz");
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer(&e, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            answer(&e, &Method::GET, "/").status(),
            StatusCode::NOT_FOUND
        );
    }
}
