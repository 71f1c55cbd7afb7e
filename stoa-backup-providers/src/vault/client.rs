//! The Vault HTTP client: authentication (token, Kubernetes, AppRole), namespace header,
//! health, error mapping. Tokens are held privately and never printed.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stoa_backup_core::{Error, ErrorKind, Result, RetryPolicy};

use crate::http::{default_retry, read_body, send_with_retry, Answer};

use super::DEFAULT_SERVICE_ACCOUNT_TOKEN_PATH;

/// How the client authenticates to Vault. `Debug` never shows credentials.
#[derive(Clone)]
pub enum VaultAuth {
    /// A Vault token (`X-Vault-Token`).
    Token(String),
    /// Kubernetes auth: the service-account JWT read from `jwt_path` is exchanged for a token
    /// at `POST /v1/auth/<mount>/login` with `role`.
    Kubernetes {
        /// The Vault role bound to the service account.
        role: String,
        /// Where the JWT is read (on every login: projected tokens rotate).
        jwt_path: PathBuf,
        /// Mount path of the auth method (default `kubernetes`).
        mount: String,
    },
    /// AppRole: `role_id` and `secret_id` exchanged at `POST /v1/auth/<mount>/login`.
    AppRole {
        /// The role id.
        role_id: String,
        /// The secret id.
        secret_id: String,
        /// Mount path of the auth method (default `approle`).
        mount: String,
    },
}

impl VaultAuth {
    /// A static token.
    pub fn token(token: impl Into<String>) -> Self {
        VaultAuth::Token(token.into())
    }

    /// Kubernetes auth with `role`, the JWT at the pod's default service-account token path
    /// (`/var/run/secrets/kubernetes.io/serviceaccount/token`) and the mount `kubernetes`.
    pub fn kubernetes(role: impl Into<String>) -> Self {
        VaultAuth::Kubernetes {
            role: role.into(),
            jwt_path: PathBuf::from(DEFAULT_SERVICE_ACCOUNT_TOKEN_PATH),
            mount: "kubernetes".into(),
        }
    }

    /// AppRole auth at the mount `approle`.
    pub fn approle(role_id: impl Into<String>, secret_id: impl Into<String>) -> Self {
        VaultAuth::AppRole {
            role_id: role_id.into(),
            secret_id: secret_id.into(),
            mount: "approle".into(),
        }
    }

    /// Reads the Kubernetes JWT from another file (no effect on other methods).
    pub fn with_jwt_path(mut self, path: impl Into<PathBuf>) -> Self {
        if let VaultAuth::Kubernetes { jwt_path, .. } = &mut self {
            *jwt_path = path.into();
        }
        self
    }

    /// Uses another auth mount path (no effect on tokens).
    pub fn with_mount(mut self, path: impl Into<String>) -> Self {
        match &mut self {
            VaultAuth::Kubernetes { mount, .. } | VaultAuth::AppRole { mount, .. } => {
                *mount = path.into().trim_matches('/').to_string()
            }
            VaultAuth::Token(_) => {}
        }
        self
    }

    fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token(_) => "token",
            VaultAuth::Kubernetes { .. } => "kubernetes",
            VaultAuth::AppRole { .. } => "approle",
        }
    }
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(***)"),
            VaultAuth::Kubernetes {
                role,
                jwt_path,
                mount,
            } => f
                .debug_struct("Kubernetes")
                .field("role", role)
                .field("jwt_path", jwt_path)
                .field("mount", mount)
                .finish(),
            VaultAuth::AppRole { mount, .. } => f
                .debug_struct("AppRole")
                .field("role_id", &"***")
                .field("secret_id", &"***")
                .field("mount", mount)
                .finish(),
        }
    }
}

/// Where Vault is and how to talk to it.
#[derive(Debug, Clone)]
pub struct VaultConnection {
    address: Url,
    auth: VaultAuth,
    namespace: Option<String>,
    timeout: Duration,
    snapshot_timeout: Duration,
    retry: RetryPolicy,
}

impl VaultConnection {
    /// A connection to `address` (e.g. `https://vault.stoa.svc:8200`; `VAULT_ADDR` or
    /// `BAO_ADDR`) authenticating with `auth`.
    pub fn new(address: &str, auth: VaultAuth) -> Result<Self> {
        let url = crate::http::parse_base_url(
            address,
            "Vault",
            super::KV_COMPONENT,
            "https://vault.example:8200",
        )?;
        if let VaultAuth::Token(t) = &auth {
            if t.trim().is_empty() {
                return Err(Error::config("the Vault token is empty")
                    .with_hint("pass a token, or use Kubernetes or AppRole auth"));
            }
        }
        Ok(VaultConnection {
            address: url,
            auth,
            namespace: None,
            timeout: Duration::from_secs(30),
            snapshot_timeout: Duration::from_secs(3600),
            retry: default_retry(),
        })
    }

    /// A connection configured the way the `vault` (and OpenBao's `bao`) CLI is: the address
    /// from `VAULT_ADDR` (or `BAO_ADDR`), a token from `VAULT_TOKEN` (or `BAO_TOKEN`), and a
    /// namespace from `VAULT_NAMESPACE` (or `BAO_NAMESPACE`) when set. Address and token are
    /// required (no default address, no `~/.vault-token`); for Kubernetes or AppRole auth
    /// use [`VaultConnection::new`]. Errors name the variable, never the token.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`VaultConnection::from_env`] reading each variable through `lookup` instead of the
    /// process environment (a configuration map, or a test).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = crate::http::EnvVars::new(&lookup, super::KV_COMPONENT);
        let address = env.require(
            &["VAULT_ADDR", "BAO_ADDR"],
            "export VAULT_ADDR=https://vault.example:8200 (BAO_ADDR for OpenBao)",
        )?;
        let token = env.require(
            &["VAULT_TOKEN", "BAO_TOKEN"],
            "export VAULT_TOKEN, or build the connection with VaultConnection::new(address, VaultAuth::kubernetes(role))",
        )?;
        let conn = VaultConnection::new(&address, VaultAuth::token(token))
            .map_err(env.blame("VAULT_ADDR"))?;
        Ok(match env.first(&["VAULT_NAMESPACE", "BAO_NAMESPACE"]) {
            Some(ns) => conn.namespace(ns),
            None => conn,
        })
    }

    /// Sends `X-Vault-Namespace: <ns>` (Vault Enterprise, OpenBao ≥ 2.3). Raft snapshots are
    /// always taken and restored in the root namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        let ns = namespace.into();
        let ns = ns.trim_matches('/');
        self.namespace = (!ns.is_empty()).then(|| format!("{ns}/"));
        self
    }

    /// Timeout of one API call (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout of a whole snapshot download or upload (default 1 h).
    pub fn snapshot_timeout(mut self, timeout: Duration) -> Self {
        self.snapshot_timeout = timeout;
        self
    }

    /// How calls are retried on 429, 5xx and connection errors (default: 6 attempts, 200 ms
    /// doubling up to 30 s, equal jitter; a server's `Retry-After` is honoured up to 30 s).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The namespace requests are sent in (with a trailing `/`), if any.
    pub fn namespace_name(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The base address.
    pub fn address(&self) -> &Url {
        &self.address
    }
}

/// The answer of `GET /v1/sys/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultHealth {
    /// HTTP status the endpoint answered (200 active, 429 standby, 501 uninitialised, 503
    /// sealed, 472/473 Enterprise secondaries).
    #[serde(default)]
    pub status: u16,
    /// Whether the cluster is initialised.
    #[serde(default)]
    pub initialized: bool,
    /// Whether this node is sealed.
    #[serde(default)]
    pub sealed: bool,
    /// Whether this node is a standby.
    #[serde(default)]
    pub standby: bool,
    /// Whether this node is a performance standby (Enterprise).
    #[serde(default)]
    pub performance_standby: bool,
    /// Server version.
    #[serde(default)]
    pub version: String,
    /// Cluster name.
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// Cluster id.
    #[serde(default)]
    pub cluster_id: Option<String>,
}

impl VaultHealth {
    /// `Ok` when the node is initialised, unsealed and active; otherwise an error that says
    /// what state the node is in and what to do.
    pub fn require_active(&self, operation: &str) -> Result<()> {
        let (kind, msg, hint) = match self.status {
            200 => return Ok(()),
            503 => (
                ErrorKind::Unavailable,
                "Vault is sealed",
                "unseal Vault (vault operator unseal) or wait for auto-unseal, then re-run",
            ),
            501 => (
                ErrorKind::Config,
                "Vault is not initialised",
                "initialise the cluster (vault operator init) or point at an initialised one",
            ),
            429 => (
                ErrorKind::Config,
                "this Vault node is an unsealed standby",
                "point the address at the active node (or the service that routes to it)",
            ),
            472 => (
                ErrorKind::Config,
                "this Vault node is a disaster-recovery secondary",
                "point the address at the primary cluster",
            ),
            473 => (
                ErrorKind::Config,
                "this Vault node is a performance standby",
                "point the address at the active node",
            ),
            _ => (
                ErrorKind::Source,
                "Vault's health endpoint answered an unexpected status",
                "check the address points at Vault",
            ),
        };
        Err(Error::new(
            kind,
            format!("{msg} (health status {}); nothing was done", self.status),
        )
        .with_retryable(false)
        .with_operation(operation.to_string())
        .with_hint(hint))
    }
}

/// A secret string that never prints.
#[derive(Clone)]
pub(crate) struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// The HTTP client with its cached token.
#[derive(Clone)]
pub(crate) struct VaultClient {
    conn: VaultConnection,
    http: reqwest::Client,
    token: Arc<tokio::sync::Mutex<Option<Token>>>,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.conn.address.as_str())
            .field("auth", &self.conn.auth)
            .field("namespace", &self.conn.namespace)
            .finish_non_exhaustive()
    }
}

impl VaultClient {
    pub(crate) fn new(conn: VaultConnection) -> Result<Self> {
        let http = crate::http::build_client(
            reqwest::Client::builder().connect_timeout(Duration::from_secs(10)),
            super::KV_COMPONENT,
        )?;
        let token = match &conn.auth {
            VaultAuth::Token(t) => Some(Token(t.clone())),
            _ => None,
        };
        Ok(VaultClient {
            conn,
            http,
            token: Arc::new(tokio::sync::Mutex::new(token)),
        })
    }

    pub(crate) fn connection(&self) -> &VaultConnection {
        &self.conn
    }

    /// `<address>/v1/<segments…>`, each segment split on `/` and escaped.
    pub(crate) fn url(&self, parts: &[&str]) -> Url {
        let mut url = self.conn.address.clone();
        {
            let mut segs = url.path_segments_mut().expect("checked http(s) base");
            segs.pop_if_empty();
            segs.push("v1");
            for part in parts {
                for s in part.split('/').filter(|s| !s.is_empty()) {
                    segs.push(s);
                }
            }
        }
        url
    }

    /// `GET /v1/sys/health` without a token; any status with a health body is an answer.
    pub(crate) async fn health(&self) -> Result<VaultHealth> {
        let url = self.url(&["sys", "health"]);
        let resp = send_with_retry(&RetryPolicy::none(), "Vault health check", || {
            self.http.get(url.clone()).timeout(self.conn.timeout)
        })
        .await?;
        let status = resp.status().as_u16();
        let body = read_body(resp, "Vault health check").await?;
        let mut h: VaultHealth = serde_json::from_slice(&body).map_err(|e| {
            Error::source_failed(format!(
                "the Vault health endpoint answered HTTP {status} without a health body"
            ))
            .with_source(e)
            .with_hint("check the address points at Vault (…/v1/sys/health)")
        })?;
        h.status = status;
        Ok(h)
    }

    /// Health, then an error unless the node is active.
    pub(crate) async fn require_active(&self, operation: &str) -> Result<VaultHealth> {
        let h = self.health().await?;
        h.require_active(operation)?;
        Ok(h)
    }

    async fn current_token(&self) -> Result<Token> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            return Ok(t.clone());
        }
        let t = self.login().await?;
        *guard = Some(t.clone());
        Ok(t)
    }

    async fn forget_token(&self) {
        if !matches!(self.conn.auth, VaultAuth::Token(_)) {
            *self.token.lock().await = None;
        }
    }

    async fn login(&self) -> Result<Token> {
        let (mount, body) = match &self.conn.auth {
            VaultAuth::Token(t) => return Ok(Token(t.clone())),
            VaultAuth::Kubernetes {
                role,
                jwt_path,
                mount,
            } => {
                let jwt = tokio::fs::read_to_string(jwt_path).await.map_err(|e| {
                    Error::from_io(
                        e,
                        format!(
                            "cannot read the service-account token at {}",
                            jwt_path.display()
                        ),
                    )
                    .with_operation("vault login")
                    .with_hint(
                        "run in a pod with a mounted service-account token, or set the JWT path",
                    )
                })?;
                (mount, json!({"role": role, "jwt": jwt.trim()}))
            }
            VaultAuth::AppRole {
                role_id,
                secret_id,
                mount,
            } => (mount, json!({"role_id": role_id, "secret_id": secret_id})),
        };
        let url = self.url(&["auth", mount, "login"]);
        let what = format!("Vault {} login", self.conn.auth.method());
        let resp = send_with_retry(&self.conn.retry, &what, || {
            self.with_namespace(self.http.post(url.clone()))
                .timeout(self.conn.timeout)
                .json(&body)
        })
        .await?;
        let answer = Answer::read(resp, &what).await?;
        if !answer.status.is_success() {
            let e = vault_error(&answer, &what);
            let e = if matches!(answer.status.as_u16(), 400 | 403) {
                e.with_kind(ErrorKind::Unauthenticated).with_hint(
                    "check the role and credentials of the auth method (and that the method is enabled at that mount)",
                )
            } else {
                e
            };
            return Err(e.with_operation("vault login"));
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| Error::source_failed(format!("{what}: invalid JSON")).with_source(e))?;
        let token = v["auth"]["client_token"].as_str().ok_or_else(|| {
            Error::source_failed(format!("{what}: the answer holds no auth.client_token"))
        })?;
        tracing::debug!(method = self.conn.auth.method(), "logged in to Vault");
        Ok(Token(token.to_string()))
    }

    /// Adds the namespace header (snapshot endpoints never call this: root namespace only).
    fn with_namespace(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.conn.namespace {
            Some(n) => rb.header("X-Vault-Namespace", n),
            None => rb,
        }
    }

    /// After a 403: whether the token itself is no longer valid (`lookup-self` refused), so
    /// a login-based method should log in again. Static tokens are never replaced, and a
    /// 403 from a policy (token still valid) is returned as is.
    async fn token_expired(&self, token: &Token) -> bool {
        if matches!(self.conn.auth, VaultAuth::Token(_)) {
            return false;
        }
        let url = self.url(&["auth", "token", "lookup-self"]);
        let rb = self
            .http
            .get(url)
            .timeout(self.conn.timeout)
            .header("X-Vault-Token", &token.0);
        match self.with_namespace(rb).send().await {
            Ok(r) => r.status() == StatusCode::FORBIDDEN || r.status() == StatusCode::UNAUTHORIZED,
            Err(_) => false,
        }
    }

    /// Sends an authenticated request and returns the answer. A 403 with a login-based
    /// method whose token has expired or been revoked logs in again once.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer> {
        let mut relogged = false;
        loop {
            let token = self.current_token().await?;
            let resp = send_with_retry(&self.conn.retry, what, || {
                let rb = self
                    .http
                    .request(method.clone(), url.clone())
                    .timeout(self.conn.timeout)
                    .header("X-Vault-Token", &token.0);
                let rb = self.with_namespace(rb);
                match body {
                    Some(b) => rb.json(b),
                    None => rb,
                }
            })
            .await?;
            let answer = Answer::read(resp, what).await?;
            if answer.status == StatusCode::FORBIDDEN
                && !relogged
                && self.token_expired(&token).await
            {
                relogged = true;
                self.forget_token().await;
                continue;
            }
            return Ok(answer);
        }
    }

    /// GET returning the JSON body, `None` on 404.
    pub(crate) async fn get_json(&self, url: Url, what: &str) -> Result<Option<Value>> {
        let answer = self.call(Method::GET, url, None, what).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(vault_error(&answer, what));
        }
        serde_json::from_slice(&answer.body)
            .map(Some)
            .map_err(|e| Error::source_failed(format!("{what}: invalid JSON")).with_source(e))
    }

    /// A write (POST) expecting 200 or 204; returns the JSON body if any.
    pub(crate) async fn post_json(&self, url: Url, body: &Value, what: &str) -> Result<Value> {
        let answer = self.call(Method::POST, url, Some(body), what).await?;
        if !answer.status.is_success() {
            return Err(vault_error(&answer, what));
        }
        if answer.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| Error::source_failed(format!("{what}: invalid JSON")).with_source(e))
    }

    /// The raw snapshot response (root namespace, long timeout), status already checked.
    pub(crate) async fn snapshot_download(&self) -> Result<reqwest::Response> {
        let what = "downloading the raft snapshot";
        let url = self.url(&["sys", "storage", "raft", "snapshot"]);
        let mut relogged = false;
        loop {
            let token = self.current_token().await?;
            let resp = send_with_retry(&self.conn.retry, what, || {
                self.http
                    .get(url.clone())
                    .timeout(self.conn.snapshot_timeout)
                    .header("X-Vault-Token", &token.0)
            })
            .await?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::FORBIDDEN && !relogged && self.token_expired(&token).await {
                relogged = true;
                self.forget_token().await;
                continue;
            }
            let answer = Answer::read(resp, what).await?;
            let mut e = vault_error(&answer, what);
            // Vault answers a plain 400 (invalid request); only its message tells this case.
            if answer.status == StatusCode::BAD_REQUEST
                && vault_messages(&answer.body).contains("raft storage is not in use")
            {
                e = e.with_hint(
                    "this Vault does not use integrated (raft) storage: back up its storage backend instead, and use the KV export",
                );
            }
            return Err(e);
        }
    }

    /// Posts a snapshot (root namespace, long timeout), streaming `body`.
    pub(crate) async fn snapshot_upload(&self, body: reqwest::Body, force: bool) -> Result<Answer> {
        let what = "restoring the raft snapshot";
        let endpoint = if force { "snapshot-force" } else { "snapshot" };
        let url = self.url(&["sys", "storage", "raft", endpoint]);
        let token = self.current_token().await?;
        // Not retried: the body is a one-shot stream, and a restore is not idempotent in time.
        let resp = self
            .http
            .post(url)
            .timeout(self.conn.snapshot_timeout)
            .header("X-Vault-Token", &token.0)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("{what}: request failed ({})", transport_reason(&e)),
                )
            })?;
        Answer::read(resp, what).await
    }

    /// `GET /v1/sys/seal-status` → `storage_type` when the server reports it.
    pub(crate) async fn storage_type(&self) -> Option<String> {
        self.seal_status().await?["storage_type"]
            .as_str()
            .map(str::to_string)
    }

    /// `GET /v1/sys/seal-status` (no token needed), `None` when it cannot be read.
    pub(crate) async fn seal_status(&self) -> Option<Value> {
        let url = self.url(&["sys", "seal-status"]);
        let resp = self
            .http
            .get(url)
            .timeout(self.conn.timeout)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }
}

fn transport_reason(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    }
}

/// The messages of a Vault error body (`{"errors":[…]}`), shortened.
pub(crate) fn vault_messages(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let msgs: Vec<String> = v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| {
                    s.replace("1 error occurred:", "")
                        .replace("\n\t* ", " ")
                        .trim()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    msgs.join("; ").chars().take(300).collect()
}

/// Maps a Vault error answer to an [`Error`] (see [`Answer::error`]).
pub(crate) fn vault_error(answer: &Answer, what: &str) -> Error {
    let msg = vault_messages(&answer.body);
    let (kind, hint) = match answer.status.as_u16() {
        401 | 403 if msg.contains("permission denied") || msg.is_empty() => (
            ErrorKind::PermissionDenied,
            "check the token is valid and its policy grants this path (list/read for backups, create/update for restores)",
        ),
        401 | 403 => (ErrorKind::PermissionDenied, "check the token and its policy"),
        404 => (ErrorKind::NotFound, "check the mount and path exist"),
        429 => (ErrorKind::Unavailable, "Vault is rate limiting: retry later"),
        503 if msg.contains("sealed") => (
            ErrorKind::Unavailable,
            "unseal Vault (vault operator unseal) or wait for auto-unseal, then re-run",
        ),
        s if s >= 500 => (ErrorKind::Unavailable, "Vault failed: check its logs and retry"),
        _ => (ErrorKind::Source, "Vault refused the request"),
    };
    answer.error(kind, what, &msg, hint)
}

#[cfg(test)]
mod tests;
