//! A fake health endpoint over real HTTP on `127.0.0.1` (feature `health`), standing in for
//! the STOA control plane's or gateway's health probes (`/health`, `/health/ready`, …).
//!
//! The default bodies are those of STOA's services: the gateway's `{"status":"ok"}`, and
//! the control plane's readiness failure, a FastAPI `HTTPException` (503 with the health
//! report under `detail`).
//!
//! The test sets the status it answers (200 healthy, 503 unhealthy, anything else) and the
//! body; `HEAD` and `GET` of the health path are served, other paths answer 404 and other
//! methods 405. With a token required, a request without `Authorization: Bearer <token>`
//! answers 401. Every request is logged with whether it carried the right token (the
//! header itself is not kept, so a log printed in a failing test shows no secret).
//!
//! ```no_run
//! # async fn demo() {
//! use stoa_backup_test_support::health_fake::FakeHealth;
//! let gw = FakeHealth::start().await; // 200 {"status":"ok"} on /health
//! gw.set_unhealthy(); // 503 {"detail":{"status":"degraded",…,"checks":{"kafka":"disconnected",…}}}
//! # let _ = gw.health_url();
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::http_fake::FakeRequest;

/// The body answered while healthy, unless set otherwise.
pub const HEALTHY_BODY: &str = r#"{"status":"ok"}"#;

/// The body [`FakeHealth::set_unhealthy`] answers (the control plane's `/health/ready` with
/// a critical dependency down).
pub const UNHEALTHY_BODY: &str = r#"{"detail":{"status":"degraded","version":"1.0.0","timestamp":"2025-06-01T09:00:00+00:00","checks":{"kafka":"disconnected","keycloak":"ok"}}}"#;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Whether an `Authorization` header was sent at all.
    pub authorization: bool,
    /// Whether it was `Bearer <the token required>` (false when none is required).
    pub token_ok: bool,
    /// Status answered.
    pub status: u16,
}

struct State {
    path: String,
    status: u16,
    body: String,
    token: Option<String>,
    log: Vec<HealthRequest>,
}

/// The fake server; stops when dropped.
pub struct FakeHealth {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHealth")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeHealth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeHealth {
    /// Starts a healthy endpoint on `/health` (200 [`HEALTHY_BODY`]), no token required.
    pub async fn start() -> Self {
        Self::start_on("/health").await
    }

    /// Starts a healthy endpoint on another path (e.g. `/health/ready`).
    pub async fn start_on(path: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            path: path.to_string(),
            status: 200,
            body: HEALTHY_BODY.to_string(),
            token: None,
            log: Vec::new(),
        }));
        let task = crate::http_fake::spawn_server(listener, state.clone(), handle);
        FakeHealth { state, addr, task }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("health state"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The health URL, `http://127.0.0.1:<port>/health`.
    pub fn health_url(&self) -> String {
        format!("{}{}", self.url(), self.with(|s| s.path.clone()))
    }

    /// Answers `status` with `body` from now on.
    pub fn set(&self, status: u16, body: &str) {
        StatusCode::from_u16(status).expect("a valid HTTP status");
        self.with(|s| {
            s.status = status;
            s.body = body.to_string();
        });
    }

    /// Answers 200 [`HEALTHY_BODY`].
    pub fn set_healthy(&self) {
        self.set(200, HEALTHY_BODY);
    }

    /// Answers 503 [`UNHEALTHY_BODY`].
    pub fn set_unhealthy(&self) {
        self.set(503, UNHEALTHY_BODY);
    }

    /// Requires `Authorization: Bearer <token>` (401 otherwise); `None`: no authentication.
    pub fn require_token(&self, token: Option<&str>) {
        self.with(|s| s.token = token.map(str::to_string));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<HealthRequest> {
        self.with(|s| s.log.clone())
    }
}

fn respond(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let r = FakeRequest::read(req).await;
    let auth = r.header("authorization");
    let mut s = state.lock().expect("health state");
    let token_ok = match (&s.token, &auth) {
        (Some(t), Some(a)) => a.strip_prefix("Bearer ") == Some(t.as_str()),
        _ => false,
    };
    let (status, body) = if r.path != s.path {
        (404, r#"{"detail":"Not Found"}"#.to_string())
    } else if r.method != "GET" && r.method != "HEAD" {
        (405, r#"{"detail":"Method Not Allowed"}"#.to_string())
    } else if s.token.is_some() && !token_ok {
        (401, r#"{"detail":"Not authenticated"}"#.to_string())
    } else {
        (s.status, s.body.clone())
    };
    s.log.push(HealthRequest {
        method: r.method.clone(),
        path: r.path.clone(),
        authorization: auth.is_some(),
        token_ok,
        status,
    });
    let body = if r.method == "HEAD" {
        String::new()
    } else {
        body
    };
    Ok(respond(status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One raw HTTP/1.1 request, answered as (status, body).
    async fn get(url: &str, path: &str, auth: Option<&str>) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = auth
            .map(|a| format!("authorization: {a}\r\n"))
            .unwrap_or_default();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        (status, body)
    }

    #[tokio::test]
    async fn answers_the_status_set_and_logs_requests() {
        let h = FakeHealth::start().await;
        assert_eq!(
            get(&h.url(), "/health", None).await,
            (200, HEALTHY_BODY.into())
        );
        h.set_unhealthy();
        assert_eq!(
            get(&h.url(), "/health", None).await,
            (503, UNHEALTHY_BODY.into())
        );
        assert_eq!(get(&h.url(), "/other", None).await.0, 404);
        h.require_token(Some("t0k"));
        h.set_healthy();
        assert_eq!(get(&h.url(), "/health", None).await.0, 401);
        assert_eq!(get(&h.url(), "/health", Some("Bearer nope")).await.0, 401);
        assert_eq!(get(&h.url(), "/health", Some("Bearer t0k")).await.0, 200);
        let log = h.requests();
        let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 503, 404, 401, 401, 200]);
        assert!(log[5].token_ok && log[4].authorization && !log[4].token_ok);
        assert!(!format!("{log:?}").contains("t0k"));
    }
}
