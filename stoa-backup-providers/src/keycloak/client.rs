//! A Keycloak admin REST client: token handling (client credentials or password grant,
//! refreshed before expiry and re-obtained after a 401) and retried JSON calls.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use stoa_backup_core::{Error, ErrorKind, Result, RetryPolicy};
use tokio::sync::Mutex;

use super::COMPONENT;
use crate::http::{self, default_retry, Answer};

/// How the provider authenticates against the token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum KeycloakAuth {
    /// `grant_type=client_credentials` with a confidential client whose service account holds
    /// the admin roles.
    ClientCredentials {
        /// Client id (e.g. `stoa-backup`).
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
    /// `grant_type=password` (e.g. `admin-cli` with an admin user).
    Password {
        /// Client id (usually the public `admin-cli`).
        client_id: String,
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl fmt::Debug for KeycloakAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeycloakAuth::ClientCredentials { client_id, .. } => f
                .debug_struct("ClientCredentials")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
            KeycloakAuth::Password {
                client_id,
                username,
                ..
            } => f
                .debug_struct("Password")
                .field("client_id", client_id)
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Connection settings shared by the source, restorer and verifier.
#[derive(Debug, Clone)]
pub struct KeycloakConnection {
    pub(crate) base: Url,
    pub(crate) auth: KeycloakAuth,
    pub(crate) auth_realm: String,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
}

impl KeycloakConnection {
    /// Settings for the server at `base_url` (e.g. `https://keycloak.example.org`, no `/auth`
    /// on Keycloak 17+), authenticating with `auth` against the `master` realm.
    pub fn new(base_url: &str, auth: KeycloakAuth) -> Result<Self> {
        let base = crate::http::parse_base_url(
            base_url,
            "Keycloak",
            COMPONENT,
            "https://keycloak.example.org (no /auth on Keycloak 17+)",
        )?;
        let empty = match &auth {
            KeycloakAuth::ClientCredentials {
                client_id,
                client_secret,
            } => client_id.is_empty() || client_secret.is_empty(),
            KeycloakAuth::Password {
                client_id,
                username,
                ..
            } => client_id.is_empty() || username.is_empty(),
        };
        if empty {
            return Err(
                Error::config("the Keycloak client id and credentials must not be empty")
                    .with_component(COMPONENT),
            );
        }
        Ok(KeycloakConnection {
            base,
            auth,
            auth_realm: "master".into(),
            retry: default_retry(),
            timeout: Duration::from_secs(60),
        })
    }

    /// Settings from the environment variables of Keycloak's Terraform provider (also read by
    /// Pulumi and terraformer): `KEYCLOAK_URL` (plus `KEYCLOAK_BASE_PATH`, e.g. `/auth` on
    /// Keycloak before 17), `KEYCLOAK_CLIENT_ID`, then either `KEYCLOAK_CLIENT_SECRET`
    /// (client credentials grant) or `KEYCLOAK_USER` and `KEYCLOAK_PASSWORD` (password
    /// grant, e.g. with `admin-cli`), and `KEYCLOAK_REALM` for the realm to authenticate
    /// against (default `master`). Errors name the variable, never a secret.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`KeycloakConnection::from_env`] reading each variable through `lookup` instead of the
    /// process environment (a configuration map, or a test).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = crate::http::EnvVars::new(&lookup, COMPONENT);
        let mut url = env.require(
            &["KEYCLOAK_URL"],
            "export KEYCLOAK_URL=https://keycloak.example.org",
        )?;
        if let Some(base_path) = env.first(&["KEYCLOAK_BASE_PATH"]) {
            url = format!(
                "{}/{}",
                url.trim_end_matches('/'),
                base_path.trim_matches('/')
            );
        }
        let client_id = env.require(
            &["KEYCLOAK_CLIENT_ID"],
            "export KEYCLOAK_CLIENT_ID (a confidential client with a service account, or admin-cli with KEYCLOAK_USER)",
        )?;
        let auth = match (env.first(&["KEYCLOAK_USER"]), env.first(&["KEYCLOAK_CLIENT_SECRET"])) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "both KEYCLOAK_USER and KEYCLOAK_CLIENT_SECRET are set",
                )
                .with_component(COMPONENT)
                .with_operation("read environment")
                .with_context("variable", "KEYCLOAK_USER")
                .with_hint("set KEYCLOAK_CLIENT_SECRET for the client credentials grant, or KEYCLOAK_USER and KEYCLOAK_PASSWORD for the password grant, not both"))
            }
            (Some(username), None) => KeycloakAuth::Password {
                client_id,
                username,
                password: env.require(
                    &["KEYCLOAK_PASSWORD"],
                    "export KEYCLOAK_PASSWORD with KEYCLOAK_USER (password grant)",
                )?,
            },
            (None, Some(client_secret)) => KeycloakAuth::ClientCredentials {
                client_id,
                client_secret,
            },
            (None, None) => {
                return Err(env.missing(
                    &["KEYCLOAK_CLIENT_SECRET"],
                    "export KEYCLOAK_CLIENT_SECRET (client credentials grant), or KEYCLOAK_USER and KEYCLOAK_PASSWORD (password grant)",
                ))
            }
        };
        let conn = KeycloakConnection::new(&url, auth).map_err(env.blame("KEYCLOAK_URL"))?;
        Ok(match env.first(&["KEYCLOAK_REALM"]) {
            Some(realm) => conn.auth_realm(realm),
            None => conn,
        })
    }

    /// Realm whose token endpoint is used (default `master`; a token from realm X can only
    /// manage X).
    pub fn auth_realm(mut self, realm: impl Into<String>) -> Self {
        self.auth_realm = realm.into();
        self
    }

    /// How calls are retried on 429, 5xx and connection errors (default: 6 attempts, 200 ms
    /// doubling up to 30 s, equal jitter; a server's `Retry-After` is honoured up to 30 s).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Timeout of one HTTP request (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server URL (for messages; carries no credentials).
    pub fn url(&self) -> &str {
        self.base.as_str()
    }
}

struct Token {
    access: String,
    refresh: Option<String>,
    expires_at: Instant,
    refresh_expires_at: Option<Instant>,
    lifetime: Duration,
}

/// An authenticated admin client. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AdminClient {
    conn: Arc<KeycloakConnection>,
    http: reqwest::Client,
    token: Arc<Mutex<Option<Token>>>,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("url", &self.conn.base.as_str())
            .field("auth", &self.conn.auth)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    pub(crate) fn new(conn: KeycloakConnection) -> Result<Self> {
        let http =
            crate::http::build_client(reqwest::Client::builder().timeout(conn.timeout), COMPONENT)?;
        Ok(AdminClient {
            conn: Arc::new(conn),
            http,
            token: Arc::new(Mutex::new(None)),
        })
    }

    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.conn.base.clone();
        {
            let mut p = u.path_segments_mut().expect("http URL");
            p.pop_if_empty();
            for s in segments {
                p.push(s);
            }
        }
        u
    }

    /// A valid access token: cached, refreshed shortly before expiry, or obtained anew.
    async fn access_token(&self) -> Result<String> {
        let mut guard = self.token.lock().await;
        let now = Instant::now();
        if let Some(t) = guard.as_ref() {
            // Refresh when less than a third of the lifetime (at most 10 s) is left.
            let margin = (t.lifetime / 3).min(Duration::from_secs(10));
            if now + margin < t.expires_at {
                return Ok(t.access.clone());
            }
        }
        let refresh = guard.as_ref().and_then(|t| {
            let ok = t
                .refresh_expires_at
                .is_none_or(|e| now + Duration::from_secs(2) < e);
            t.refresh.clone().filter(|_| ok)
        });
        let token = match refresh {
            Some(r) => match self.grant(Some(&r)).await {
                Ok(t) => t,
                Err(_) => self.grant(None).await?,
            },
            None => self.grant(None).await?,
        };
        let access = token.access.clone();
        *guard = Some(token);
        Ok(access)
    }

    async fn invalidate(&self, used: &str) {
        let mut guard = self.token.lock().await;
        if guard.as_ref().is_some_and(|t| t.access == used) {
            *guard = None;
        }
    }

    async fn grant(&self, refresh: Option<&str>) -> Result<Token> {
        let url = self.url(&[
            "realms",
            &self.conn.auth_realm,
            "protocol",
            "openid-connect",
            "token",
        ]);
        let mut form: Vec<(&str, &str)> = Vec::new();
        let (client_id, secret) = match &self.conn.auth {
            KeycloakAuth::ClientCredentials {
                client_id,
                client_secret,
            } => (client_id, Some(client_secret)),
            KeycloakAuth::Password { client_id, .. } => (client_id, None),
        };
        form.push(("client_id", client_id));
        if let Some(s) = secret {
            form.push(("client_secret", s));
        }
        match (refresh, &self.conn.auth) {
            (Some(r), _) => {
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", r));
            }
            (None, KeycloakAuth::ClientCredentials { .. }) => {
                form.push(("grant_type", "client_credentials"))
            }
            (
                None,
                KeycloakAuth::Password {
                    username, password, ..
                },
            ) => {
                form.push(("grant_type", "password"));
                form.push(("username", username));
                form.push(("password", password));
            }
        }
        let what = "obtaining a Keycloak access token";
        let resp = http::send_with_retry(&self.conn.retry, what, || {
            self.http.post(url.clone()).form(&form)
        })
        .await?;
        let answer = Answer::read(resp, what).await?;
        if !answer.status.is_success() {
            let mut e = http::status_error(&answer, what);
            if matches!(
                answer.status,
                StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST
            ) {
                e = e.with_kind(ErrorKind::Unauthenticated).with_hint(
                    "check the client id/secret or user/password, and that the grant is \
                         enabled for the client (service accounts for client credentials)",
                );
            }
            return Err(e);
        }
        let v: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            Error::source_failed("the token endpoint answered invalid JSON").with_source(e)
        })?;
        let access = v["access_token"]
            .as_str()
            .ok_or_else(|| Error::source_failed("the token endpoint answered no access_token"))?;
        let lifetime = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(60).max(1));
        let now = Instant::now();
        let refresh = v["refresh_token"].as_str().map(str::to_string);
        let refresh_expires_at = match v["refresh_expires_in"].as_u64() {
            Some(0) | None => None,
            Some(s) => Some(now + Duration::from_secs(s)),
        };
        Ok(Token {
            access: access.to_string(),
            refresh,
            expires_at: now + lifetime,
            refresh_expires_at,
            lifetime,
        })
    }

    /// Sends an authenticated request; on 401 the token is dropped and the call re-sent with
    /// a fresh one (a few times: tokens may expire again while many calls are in flight).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        what: &str,
    ) -> Result<reqwest::Response> {
        const ROUNDS: usize = 4;
        for round in 0..ROUNDS {
            let token = self.access_token().await?;
            let resp = http::send_with_retry(&self.conn.retry, what, || {
                let mut rb = self
                    .http
                    .request(method.clone(), url.clone())
                    .bearer_auth(&token);
                if let Some(b) = body {
                    rb = rb
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(b.to_vec());
                }
                rb
            })
            .await?;
            if resp.status() == StatusCode::UNAUTHORIZED && round + 1 < ROUNDS {
                tracing::debug!(
                    what,
                    "401: the token expired or was revoked; re-authenticating"
                );
                self.invalidate(&token).await;
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns")
    }

    /// GET returning JSON (error statuses mapped).
    pub(crate) async fn get_json(&self, url: Url, what: &str) -> Result<Value> {
        let resp = self.send(Method::GET, url, None, what).await?;
        http::json_ok(resp, what).await
    }

    /// The answer to a request, unmapped.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        what: &str,
    ) -> Result<Answer> {
        let resp = self.send(method, url, body, what).await?;
        Answer::read(resp, what).await
    }

    /// The server version from `/admin/serverinfo`, when the token may read it.
    pub(crate) async fn server_version(&self) -> Option<String> {
        let v = self
            .get_json(
                self.url(&["admin", "serverinfo"]),
                "reading the server info",
            )
            .await
            .ok()?;
        v["systemInfo"]["version"].as_str().map(str::to_string)
    }

    /// Whether `realm` exists.
    pub(crate) async fn realm_exists(&self, realm: &str) -> Result<bool> {
        let what = format!("looking up realm '{realm}'");
        let answer = self
            .call(
                Method::GET,
                self.url(&["admin", "realms", realm]),
                None,
                &what,
            )
            .await?;
        match answer.status.as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(http::status_error(&answer, &what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: (&str, &str) = ("KEYCLOAK_URL", "https://keycloak.stoa.svc");
    const CLIENT: (&str, &str) = ("KEYCLOAK_CLIENT_ID", "stoa-backup");

    #[test]
    fn env_reads_the_terraform_provider_variables() {
        let c = KeycloakConnection::from_lookup(crate::test_env(&[
            URL,
            CLIENT,
            ("KEYCLOAK_CLIENT_SECRET", "cs-ENVSECRET"),
            ("KEYCLOAK_REALM", "stoa"),
        ]))
        .unwrap();
        assert_eq!(c.url(), "https://keycloak.stoa.svc/");
        assert_eq!(c.auth_realm, "stoa");
        assert_eq!(
            c.auth,
            KeycloakAuth::ClientCredentials {
                client_id: "stoa-backup".into(),
                client_secret: "cs-ENVSECRET".into()
            }
        );
        assert!(!format!("{c:?}").contains("ENVSECRET"));

        let c = KeycloakConnection::from_lookup(crate::test_env(&[
            ("KEYCLOAK_URL", "http://keycloak:8080/"),
            ("KEYCLOAK_BASE_PATH", "/auth"),
            ("KEYCLOAK_CLIENT_ID", "admin-cli"),
            ("KEYCLOAK_USER", "admin"),
            ("KEYCLOAK_PASSWORD", "pw-ENVSECRET"),
        ]))
        .unwrap();
        assert_eq!(c.url(), "http://keycloak:8080/auth/");
        assert_eq!(c.auth_realm, "master");
        assert!(
            matches!(&c.auth, KeycloakAuth::Password { username, password, .. }
            if username == "admin" && password == "pw-ENVSECRET")
        );
    }

    #[test]
    fn env_errors_name_the_variable_and_never_a_secret() {
        let missing = |vars: &[(&str, &str)]| {
            let e = KeycloakConnection::from_lookup(crate::test_env(vars)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(!format!("{e:?}").contains("ENVSECRET"), "{e:?}");
            e.context_value("variable").map(str::to_string)
        };
        assert_eq!(missing(&[CLIENT]).as_deref(), Some("KEYCLOAK_URL"));
        assert_eq!(missing(&[URL]).as_deref(), Some("KEYCLOAK_CLIENT_ID"));
        assert_eq!(
            missing(&[URL, CLIENT]).as_deref(),
            Some("KEYCLOAK_CLIENT_SECRET")
        );
        assert_eq!(
            missing(&[URL, CLIENT, ("KEYCLOAK_USER", "admin")]).as_deref(),
            Some("KEYCLOAK_PASSWORD")
        );
        assert_eq!(
            missing(&[
                URL,
                CLIENT,
                ("KEYCLOAK_USER", "admin"),
                ("KEYCLOAK_PASSWORD", "pw-ENVSECRET"),
                ("KEYCLOAK_CLIENT_SECRET", "cs-ENVSECRET"),
            ])
            .as_deref(),
            Some("KEYCLOAK_USER")
        );
        assert_eq!(
            missing(&[
                ("KEYCLOAK_URL", "keycloak without scheme"),
                CLIENT,
                ("KEYCLOAK_CLIENT_SECRET", "cs-ENVSECRET"),
            ])
            .as_deref(),
            Some("KEYCLOAK_URL")
        );
    }
}
