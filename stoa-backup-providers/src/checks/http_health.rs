//! [`HttpHealth`]: a health URL answers 2xx.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use stoa_backup_core::recovery::{Check, CheckContext, CheckOutcome};
use stoa_backup_core::Result;

use super::{body_snippet, parse_probe_url, send_once, shown_url, Secret, DEFAULT_HTTP_TIMEOUT};

/// `GET`s a health URL (the control plane's or the gateway's `/health`): passes on 2xx,
/// fails naming the status and the first 200 bytes of the body. An unreachable server is
/// an error (the checklist reports it as a failure). The optional bearer token is sent in
/// `Authorization` and never shown (`Debug`, details and errors mask it).
///
/// Errors carry the check's name as their component (`[gateway /health] check 'gateway
/// /health': unavailable: …`).
#[derive(Debug, Clone)]
pub struct HttpHealth {
    name: String,
    url: Url,
    token: Option<Secret>,
    timeout: Duration,
    client: reqwest::Client,
}

impl HttpHealth {
    /// A check named `name` (e.g. `gateway /health`) of `url` (e.g.
    /// `http://stoa-gateway.stoa-system:8080/health`). The URL must be http(s) and carry no
    /// credentials; a query is sent but never shown.
    pub fn new(name: impl Into<String>, url: &str) -> Result<Self> {
        let name = name.into();
        let url = parse_probe_url(url, &name, "http://stoa-gateway:8080/health")?;
        let client = super::http_client(&name)?;
        Ok(HttpHealth {
            name,
            url,
            token: None,
            timeout: DEFAULT_HTTP_TIMEOUT,
            client,
        })
    }

    /// Sends `Authorization: Bearer <token>` (for a health endpoint behind authentication).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret::new(token));
        self
    }

    /// How long to wait for the answer (default 10 s); longer counts as unreachable.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL checked, without its query.
    pub fn url(&self) -> String {
        shown_url(&self.url)
    }
}

#[async_trait]
impl Check for HttpHealth {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, _ctx: &CheckContext) -> Result<CheckOutcome> {
        let shown = shown_url(&self.url);
        let mut request = self.client.get(self.url.clone()).timeout(self.timeout);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t.expose());
        }
        let answer = send_once(request, &format!("GET {shown}"), &self.name, &self.name).await?;
        let status = answer.status.as_u16();
        if answer.status.is_success() {
            return Ok(CheckOutcome::passed(format!("HTTP {status} from {shown}")));
        }
        // Scrubbed before it is cut, so that no part of an echoed token survives.
        let body = match &self.token {
            Some(t) => body_snippet(t.scrub(&String::from_utf8_lossy(&answer.body)).as_bytes()),
            None => body_snippet(&answer.body),
        };
        Ok(CheckOutcome::failed(format!(
            "HTTP {status} from {shown}: {body}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let c = HttpHealth::new("gw", "http://gw/health")
            .unwrap()
            .bearer_token("s3cr3t-token");
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t-token"), "{d}");
        assert!(d.contains("<redacted>"), "{d}");
        assert_eq!(c.url(), "http://gw/health");
        assert_eq!(c.name(), "gw");
    }
}
