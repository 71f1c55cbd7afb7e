//! [`OidcLogin`]: a (restored) Keycloak realm issues a client-credentials token.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use serde_json::Value;
use stoa_backup_core::recovery::{Check, CheckContext, CheckOutcome};
use stoa_backup_core::{Error, Result};

use super::{body_snippet, parse_probe_url, send_once, shown_url, Secret, DEFAULT_HTTP_TIMEOUT};

/// The component recorded on this check's errors.
const COMPONENT: &str = "keycloak";

/// Asks a realm's token endpoint for a client-credentials token: `POST
/// {base}/realms/{realm}/protocol/openid-connect/token` with `grant_type=client_credentials`,
/// the client id and its secret. Passes when the answer holds an `access_token` (never
/// shown); fails naming the realm, the client and the OAuth error (`invalid_client`,
/// `unauthorized_client`, …) or that the realm does not exist (404). The secret is sent in
/// the form only: `Debug`, details and errors never hold it.
///
/// The client must be confidential with service accounts enabled (Keycloak refuses the
/// grant otherwise), e.g. STOA's `control-plane-api`.
#[derive(Debug, Clone)]
pub struct OidcLogin {
    name: String,
    base: Url,
    realm: String,
    client_id: String,
    client_secret: Secret,
    timeout: Duration,
    client: reqwest::Client,
}

impl OidcLogin {
    /// A login to `realm` as `client_id` with `client_secret`, on the Keycloak at `base_url`
    /// (e.g. `https://auth.example.org`; Keycloak before 17 needs the `/auth` sub-path).
    /// Named `OIDC login <realm>/<client_id>` unless [`named`](Self::named) says otherwise.
    pub fn new(
        base_url: &str,
        realm: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Result<Self> {
        let (realm, client_id) = (realm.into(), client_id.into());
        let client_secret = Secret::new(client_secret);
        if realm.is_empty() || client_id.is_empty() || client_secret.expose().is_empty() {
            return Err(
                Error::config("the realm, client id and client secret must not be empty")
                    .with_component(COMPONENT)
                    .with_operation("configure check"),
            );
        }
        let mut base = parse_probe_url(base_url, COMPONENT, "https://auth.example.org")?;
        if base.query().is_some() {
            return Err(Error::config("the Keycloak URL has a query")
                .with_component(COMPONENT)
                .with_operation("configure check")
                .with_hint("give the server's base URL, e.g. https://auth.example.org"));
        }
        base.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(["realms", &realm, "protocol", "openid-connect", "token"]);
        Ok(OidcLogin {
            name: format!("OIDC login {realm}/{client_id}"),
            base,
            realm,
            client_id,
            client_secret,
            timeout: DEFAULT_HTTP_TIMEOUT,
            client: super::http_client(COMPONENT)?,
        })
    }

    /// Renames the check (for the report and the journal).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long to wait for the answer (default 10 s); longer counts as unreachable.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The token endpoint asked.
    pub fn token_url(&self) -> &str {
        self.base.as_str()
    }

    fn who(&self) -> String {
        format!("realm '{}', client '{}'", self.realm, self.client_id)
    }
}

#[async_trait]
impl Check for OidcLogin {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, _ctx: &CheckContext) -> Result<CheckOutcome> {
        let request = self
            .client
            .post(self.base.clone())
            .timeout(self.timeout)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose()),
            ]);
        let what = format!("token request to {}", shown_url(&self.base));
        let answer = send_once(request, &what, COMPONENT, &self.name)
            .await
            .map_err(|e| e.with_context("realm", &self.realm))?;
        let status = answer.status.as_u16();
        let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
        let field = |k: &str| {
            body.as_ref()
                .and_then(|b| b.get(k))
                .and_then(Value::as_str)
                .map(|s| self.client_secret.scrub(s))
        };
        if answer.status.is_success() {
            return Ok(match field("access_token").filter(|t| !t.is_empty()) {
                Some(_) => {
                    let expires = body
                        .as_ref()
                        .and_then(|b| b.get("expires_in"))
                        .and_then(Value::as_u64)
                        .map(|s| format!(", expires in {s} s"))
                        .unwrap_or_default();
                    CheckOutcome::passed(format!("{} got an access token{expires}", self.who()))
                }
                None => CheckOutcome::failed(format!(
                    "{}: HTTP {status} without an access_token",
                    self.who()
                )),
            });
        }
        if status == 404 {
            return Ok(CheckOutcome::failed(format!(
                "realm '{}' does not exist (HTTP 404 from {})",
                self.realm,
                shown_url(&self.base)
            )));
        }
        let detail = match (field("error"), field("error_description")) {
            (Some(e), Some(d)) => format!("{e} ({d})"),
            (Some(e), None) => e,
            _ => body_snippet(
                self.client_secret
                    .scrub(&String::from_utf8_lossy(&answer.body))
                    .as_bytes(),
            ),
        };
        Ok(CheckOutcome::failed(format!(
            "{}: HTTP {status}: {detail}",
            self.who()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_url_keeps_a_sub_path_and_encodes_the_realm() {
        let c = OidcLogin::new("https://kc.example/auth/", "st oa", "c", "s").unwrap();
        assert_eq!(
            c.token_url(),
            "https://kc.example/auth/realms/st%20oa/protocol/openid-connect/token"
        );
        assert_eq!(c.name(), "OIDC login st oa/c");
    }

    #[test]
    fn the_secret_stays_out_of_debug_and_config_errors() {
        let c = OidcLogin::new("http://kc:8080", "stoa", "api", "api-s3cret").unwrap();
        assert!(!format!("{c:?}").contains("api-s3cret"));
        for e in [
            OidcLogin::new("http://kc:8080", "stoa", "", "api-s3cret").unwrap_err(),
            OidcLogin::new("ftp://kc", "stoa", "api", "api-s3cret").unwrap_err(),
        ] {
            assert!(!format!("{e} {e:?}").contains("api-s3cret"), "{e}");
            assert_eq!(e.component(), Some("keycloak"));
        }
    }
}
