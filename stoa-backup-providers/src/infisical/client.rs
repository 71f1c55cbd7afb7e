//! The Infisical HTTP client: universal-auth login with refresh, 403 `TokenError` re-login,
//! 429 back-off, v3/v4 paths, error mapping. Credentials and tokens never print.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};
use stoa_backup_core::{Error, ErrorKind, Result, RetryPolicy};

use crate::http::{default_retry, send_with_retry, Answer};

use super::COMPONENT;

/// Which secrets API the server speaks (recorded as the `api` fact: `v4`, `v3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfisicalApi {
    /// `/api/v4/secrets`, `/api/v4/secrets/batch`, `/api/v2/folders` with `projectId`,
    /// `/api/v1/projects` (current servers; the default).
    #[default]
    V4,
    /// `/api/v3/secrets/raw`, `/api/v3/secrets/batch/raw`, `/api/v1/folders` with
    /// `workspaceId`, `/api/v1/workspace` (older servers).
    V3,
}

impl InfisicalApi {
    pub(crate) fn name(self) -> &'static str {
        match self {
            InfisicalApi::V4 => "v4",
            InfisicalApi::V3 => "v3",
        }
    }

    /// Query/body name of the project id.
    pub(crate) fn project_param(self) -> &'static str {
        match self {
            InfisicalApi::V4 => "projectId",
            InfisicalApi::V3 => "workspaceId",
        }
    }

    pub(crate) fn secrets_path(self) -> &'static [&'static str] {
        match self {
            InfisicalApi::V4 => &["api", "v4", "secrets"],
            InfisicalApi::V3 => &["api", "v3", "secrets", "raw"],
        }
    }

    pub(crate) fn batch_path(self) -> &'static [&'static str] {
        match self {
            InfisicalApi::V4 => &["api", "v4", "secrets", "batch"],
            InfisicalApi::V3 => &["api", "v3", "secrets", "batch", "raw"],
        }
    }

    pub(crate) fn folders_path(self) -> &'static [&'static str] {
        match self {
            InfisicalApi::V4 => &["api", "v2", "folders"],
            InfisicalApi::V3 => &["api", "v1", "folders"],
        }
    }

    pub(crate) fn project_path(self) -> &'static str {
        match self {
            InfisicalApi::V4 => "projects",
            InfisicalApi::V3 => "workspace",
        }
    }
}

/// Where Infisical is and the machine identity (universal auth) to use. `Debug` never shows
/// the client secret.
#[derive(Clone)]
pub struct InfisicalConnection {
    url: Url,
    client_id: String,
    client_secret: String,
    api: InfisicalApi,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for InfisicalConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfisicalConnection")
            .field("url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("api", &self.api)
            .finish()
    }
}

impl InfisicalConnection {
    /// A connection to `url` (e.g. `https://infisical.stoa.svc:8080`) with a universal-auth
    /// machine identity.
    pub fn new(
        url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Result<Self> {
        let u =
            crate::http::parse_base_url(url, "Infisical", COMPONENT, "https://app.infisical.com")?;
        let (client_id, client_secret) = (client_id.into(), client_secret.into());
        if client_id.trim().is_empty() || client_secret.trim().is_empty() {
            return Err(
                Error::config("the universal-auth client id or secret is empty")
                    .with_component(COMPONENT),
            );
        }
        Ok(InfisicalConnection {
            url: u,
            client_id,
            client_secret,
            api: InfisicalApi::V4,
            timeout: Duration::from_secs(60),
            retry: default_retry(),
        })
    }

    /// A connection configured the way the `infisical` CLI and SDKs are: the server from
    /// `INFISICAL_API_URL` (with or without its `/api` suffix; default
    /// `https://app.infisical.com`) and the universal-auth machine identity from
    /// `INFISICAL_UNIVERSAL_AUTH_CLIENT_ID` and `INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET`.
    /// Errors name the variable, never the secret.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`InfisicalConnection::from_env`] reading each variable through `lookup` instead of
    /// the process environment (a configuration map, or a test).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = crate::http::EnvVars::new(&lookup, COMPONENT);
        let hint = "export INFISICAL_UNIVERSAL_AUTH_CLIENT_ID and INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET of a machine identity";
        let client_id = env.require(&["INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"], hint)?;
        let client_secret = env.require(&["INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"], hint)?;
        let url = env
            .first(&["INFISICAL_API_URL"])
            .unwrap_or_else(|| "https://app.infisical.com".to_string());
        let url = url.trim_end_matches('/');
        let url = url.strip_suffix("/api").unwrap_or(url);
        InfisicalConnection::new(url, client_id, client_secret)
            .map_err(env.blame("INFISICAL_API_URL"))
    }

    /// Uses the older v3 paths.
    pub fn api(mut self, api: InfisicalApi) -> Self {
        self.api = api;
        self
    }

    /// Timeout of one call (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How calls are retried on 429, 5xx and connection errors (default: 6 attempts, 200 ms
    /// doubling up to 30 s, equal jitter; a server's `Retry-After` is honoured up to 30 s).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

struct AccessToken {
    token: String,
    refresh_at: Instant,
}

/// The client with its cached access token.
#[derive(Clone)]
pub(crate) struct InfisicalClient {
    conn: InfisicalConnection,
    http: reqwest::Client,
    token: Arc<tokio::sync::Mutex<Option<AccessToken>>>,
}

impl fmt::Debug for InfisicalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfisicalClient")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl InfisicalClient {
    pub(crate) fn new(conn: InfisicalConnection) -> Result<Self> {
        let http = crate::http::build_client(
            reqwest::Client::builder().connect_timeout(Duration::from_secs(10)),
            COMPONENT,
        )?;
        Ok(InfisicalClient {
            conn,
            http,
            token: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    pub(crate) fn api(&self) -> InfisicalApi {
        self.conn.api
    }

    pub(crate) fn url(&self, parts: &[&str]) -> Url {
        let mut u = self.conn.url.clone();
        {
            let mut s = u.path_segments_mut().expect("checked base");
            s.pop_if_empty();
            for p in parts {
                s.push(p);
            }
        }
        u
    }

    async fn token(&self, force: bool) -> Result<String> {
        let mut guard = self.token.lock().await;
        if !force {
            if let Some(t) = guard.as_ref() {
                if Instant::now() < t.refresh_at {
                    return Ok(t.token.clone());
                }
            }
        }
        let t = self.login().await?;
        let token = t.token.clone();
        *guard = Some(t);
        Ok(token)
    }

    async fn login(&self) -> Result<AccessToken> {
        let what = "Infisical universal-auth login";
        let url = self.url(&["api", "v1", "auth", "universal-auth", "login"]);
        let body =
            json!({"clientId": self.conn.client_id, "clientSecret": self.conn.client_secret});
        let resp = send_with_retry(&self.conn.retry, what, || {
            self.http
                .post(url.clone())
                .timeout(self.conn.timeout)
                .json(&body)
        })
        .await?;
        let answer = Answer::read(resp, what).await?;
        if !answer.status.is_success() {
            let e = infisical_error(&answer, what);
            return Err(if matches!(answer.status.as_u16(), 400 | 401 | 403) {
                e.with_kind(ErrorKind::Unauthenticated).with_hint(
                    "check the machine identity's client id and secret (universal auth) and that it may access the project",
                )
            } else {
                e
            });
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| Error::source_failed(format!("{what}: invalid JSON")).with_source(e))?;
        let token = v["accessToken"]
            .as_str()
            .ok_or_else(|| Error::source_failed(format!("{what}: no accessToken in the answer")))?
            .to_string();
        let ttl = v["expiresIn"].as_u64().unwrap_or(300);
        // Refresh a little before expiry (or at half-life for very short tokens).
        let margin = (ttl / 2).min(60);
        tracing::debug!(expires_in = ttl, "logged in to Infisical");
        Ok(AccessToken {
            token,
            refresh_at: Instant::now() + Duration::from_secs(ttl.saturating_sub(margin)),
        })
    }

    /// An authenticated call; re-logs in once on 403 `TokenError` (expired token).
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<(StatusCode, Value)> {
        let mut relogged = false;
        loop {
            let token = self.token(relogged).await?;
            let resp = send_with_retry(&self.conn.retry, what, || {
                let rb = self
                    .http
                    .request(method.clone(), url.clone())
                    .timeout(self.conn.timeout)
                    .bearer_auth(&token);
                match body {
                    Some(b) => rb.json(b),
                    None => rb,
                }
            })
            .await?;
            let answer = Answer::read(resp, what).await?;
            let (status, bytes) = (answer.status, &answer.body);
            if status == StatusCode::FORBIDDEN && !relogged && error_name(bytes) == "TokenError" {
                tracing::debug!(what, "Infisical token expired; logging in again");
                relogged = true;
                continue;
            }
            if !status.is_success() {
                return Err(infisical_error(&answer, what));
            }
            let v = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(bytes).map_err(|e| {
                    Error::source_failed(format!("{what}: invalid JSON")).with_source(e)
                })?
            };
            return Ok((status, v));
        }
    }

    pub(crate) async fn get(&self, url: Url, what: &str) -> Result<Value> {
        self.call(Method::GET, url, None, what)
            .await
            .map(|(_, v)| v)
    }
}

fn error_name(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Maps an Infisical error answer (`{"statusCode","message","error"}`) to an [`Error`] (see
/// [`Answer::error`]).
pub(crate) fn infisical_error(answer: &Answer, what: &str) -> Error {
    let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let name = v["error"].as_str().unwrap_or_default();
    let msg: String = match &v["message"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
    .chars()
    .take(300)
    .collect();
    let (kind, hint) = match (answer.status.as_u16(), name) {
        (403, "TokenError") | (401, _) => (
            ErrorKind::Unauthenticated,
            "the access token is invalid or expired: check the machine identity",
        ),
        (403, _) => (
            ErrorKind::PermissionDenied,
            "give the machine identity a role that may read (backup) or write (restore) secrets in this project and environment",
        ),
        (404, _) => (ErrorKind::NotFound, "check the project id, environment slug and folder path"),
        (429, _) => (ErrorKind::Unavailable, "Infisical is rate limiting: retry later or raise its limits"),
        (s, _) if s >= 500 => (ErrorKind::Unavailable, "Infisical failed: check its logs and retry"),
        _ => (ErrorKind::Source, "Infisical refused the request"),
    };
    let detail = match (name.is_empty(), msg.is_empty()) {
        (true, true) => String::new(),
        (false, true) => name.to_string(),
        (true, false) => msg,
        (false, false) => format!("{name}: {msg}"),
    };
    answer.error(kind, what, &detail, hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let c = InfisicalConnection::new("http://127.0.0.1:1", "id-1", "cs-TOPSECRET").unwrap();
        assert!(!format!("{c:?}").contains("TOPSECRET"));
    }

    #[test]
    fn env_reads_the_cli_variables() {
        let id = ("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "id-env");
        let secret = ("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", "cs-ENVSECRET");
        let c = InfisicalConnection::from_lookup(crate::test_env(&[id, secret])).unwrap();
        assert_eq!(c.url.as_str(), "https://app.infisical.com/");
        assert_eq!(
            (c.client_id.as_str(), c.client_secret.as_str()),
            ("id-env", "cs-ENVSECRET")
        );
        assert!(!format!("{c:?}").contains("ENVSECRET"));
        for api_url in [
            "https://infisical.stoa.svc/api",
            "https://infisical.stoa.svc/api/",
        ] {
            let c = InfisicalConnection::from_lookup(crate::test_env(&[
                ("INFISICAL_API_URL", api_url),
                id,
                secret,
            ]))
            .unwrap();
            assert_eq!(c.url.as_str(), "https://infisical.stoa.svc/");
        }
        let err = InfisicalConnection::from_lookup(crate::test_env(&[id])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(
            err.context_value("variable"),
            Some("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")
        );
        let err = InfisicalConnection::from_lookup(crate::test_env(&[
            ("INFISICAL_API_URL", "not a url"),
            id,
            secret,
        ]))
        .unwrap_err();
        assert_eq!(err.context_value("variable"), Some("INFISICAL_API_URL"));
        assert!(!format!("{err:?}").contains("ENVSECRET"));
    }

    #[test]
    fn maps_token_errors() {
        let e = infisical_error(
            &Answer::new(
                StatusCode::FORBIDDEN,
                r#"{"statusCode":403,"message":"expired","error":"TokenError"}"#,
            ),
            "x",
        );
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        let e = infisical_error(
            &Answer::new(
                StatusCode::FORBIDDEN,
                r#"{"statusCode":403,"message":"You are not allowed to read on secrets","error":"PermissionDenied"}"#,
            ),
            "x",
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.message().contains("not allowed"));
    }
}
