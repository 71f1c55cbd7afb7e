//! A Grafana HTTP API client: service-account token or basic auth, org header, retries.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use stoa_backup_core::{Error, Result, RetryPolicy};

use super::COMPONENT;
use crate::http::{self, default_retry, Answer};

/// How the provider authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum GrafanaAuth {
    /// A service-account token (`glsa_…`), sent as `Authorization: Bearer`.
    Token(String),
    /// Basic auth with a user and password.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

impl fmt::Debug for GrafanaAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrafanaAuth::Token(_) => f.write_str("Token(<redacted>)"),
            GrafanaAuth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Server, credentials and HTTP settings.
#[derive(Debug, Clone)]
pub struct GrafanaConnection {
    base: Url,
    auth: GrafanaAuth,
    org_id: Option<u64>,
    retry: RetryPolicy,
    timeout: Duration,
}

impl GrafanaConnection {
    /// Settings for the Grafana at `base_url` (a sub-path such as `/grafana` is kept).
    pub fn new(base_url: &str, auth: GrafanaAuth) -> Result<Self> {
        let base = crate::http::parse_base_url(
            base_url,
            "Grafana",
            COMPONENT,
            "https://grafana.example.org (a sub-path such as /grafana is kept)",
        )?;
        let empty = match &auth {
            GrafanaAuth::Token(t) => t.is_empty(),
            GrafanaAuth::Basic { user, .. } => user.is_empty(),
        };
        if empty {
            return Err(Error::config("the Grafana credentials must not be empty")
                .with_component(COMPONENT));
        }
        Ok(GrafanaConnection {
            base,
            auth,
            org_id: None,
            retry: default_retry(),
            timeout: Duration::from_secs(60),
        })
    }

    /// Organisation to work in (`X-Grafana-Org-Id`; a token is already org-scoped).
    pub fn org_id(mut self, org: u64) -> Self {
        self.org_id = Some(org);
        self
    }

    /// How calls are retried on 429, 5xx and connection errors (default: 6 attempts, 200 ms
    /// doubling up to 30 s, equal jitter; a server's `Retry-After` is honoured up to 30 s).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Timeout of one request (default 60 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

/// An authenticated client. Cheap to clone.
#[derive(Clone)]
pub(crate) struct GrafanaClient {
    conn: std::sync::Arc<GrafanaConnection>,
    http: reqwest::Client,
}

impl fmt::Debug for GrafanaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrafanaClient")
            .field("url", &self.conn.base.as_str())
            .field("auth", &self.conn.auth)
            .finish()
    }
}

impl GrafanaClient {
    pub(crate) fn new(conn: GrafanaConnection) -> Result<Self> {
        let http =
            crate::http::build_client(reqwest::Client::builder().timeout(conn.timeout), COMPONENT)?;
        Ok(GrafanaClient {
            conn: std::sync::Arc::new(conn),
            http,
        })
    }

    /// The server's base URL (it carries no credentials: `GrafanaConnection::new` refuses
    /// a user or password in it).
    pub(crate) fn base_url(&self) -> &str {
        self.conn.base.as_str()
    }

    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut u = self.conn.base.clone();
        {
            let mut p = u.path_segments_mut().expect("http URL");
            p.pop_if_empty();
            for s in segments {
                p.push(s);
            }
        }
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        u
    }

    /// Sends a request (JSON body if any); returns the answer, whatever its status.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let resp = http::send_with_retry(&self.conn.retry, what, || {
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            rb = match &self.conn.auth {
                GrafanaAuth::Token(t) => rb.bearer_auth(t),
                GrafanaAuth::Basic { user, password } => rb.basic_auth(user, Some(password)),
            };
            if let Some(o) = self.conn.org_id {
                rb = rb.header("X-Grafana-Org-Id", o.to_string());
            }
            if method != Method::GET {
                rb = rb.header("X-Disable-Provenance", "true");
            }
            if let Some(b) = &body {
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            rb
        })
        .await?;
        Answer::read(resp, what).await
    }

    /// Sends and requires a 2xx; returns the JSON body (`Null` when empty).
    pub(crate) async fn json(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value> {
        let answer = self.call(method, url, body, what).await?;
        if !answer.status.is_success() {
            return Err(http::status_error(&answer, what));
        }
        if answer.body.is_empty() {
            return Ok(Value::Null);
        }
        parse(&answer, what)
    }

    /// GET returning JSON.
    pub(crate) async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<Value> {
        self.json(Method::GET, self.url(segments, query), None, what)
            .await
    }

    /// GET returning `None` on 404.
    pub(crate) async fn get_opt(&self, segments: &[&str], what: &str) -> Result<Option<Value>> {
        let answer = self
            .call(Method::GET, self.url(segments, &[]), None, what)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(http::status_error(&answer, what));
        }
        parse(&answer, what).map(Some)
    }

    /// `GET /api/health` → version.
    pub(crate) async fn version(&self) -> Result<Option<String>> {
        let v = self
            .get(&["api", "health"], &[], "reading Grafana health")
            .await?;
        if v["database"].as_str().is_some_and(|d| d != "ok") {
            return Err(Error::new(
                stoa_backup_core::ErrorKind::Unavailable,
                "Grafana reports its database as failing",
            )
            .with_retryable(true));
        }
        Ok(v["version"].as_str().map(str::to_string))
    }
}

fn parse(answer: &Answer, what: &str) -> Result<Value> {
    serde_json::from_slice(&answer.body)
        .map_err(|e| Error::source_failed(format!("{what}: invalid JSON")).with_source(e))
}
