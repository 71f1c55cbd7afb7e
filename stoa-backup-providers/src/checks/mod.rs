//! The checklist, automated (feature `checks`): [`Check`](stoa_backup_core::Check)s to run
//! after a recovery and on demand, each answering pass, fail or skipped with a detail for
//! the operator.
//!
//! - [`HttpHealth`]: `GET` a health URL (the control plane's or the gateway's `/health`);
//!   passes on 2xx, fails naming the status and the start of the body.
//! - [`OidcLogin`]: a client-credentials token from a (restored) Keycloak realm for a
//!   confidential client; fails naming the realm, the client and the OAuth error.
//! - [`PrometheusUp`]: `up{job="…"} == 1` for every target of a job through Prometheus'
//!   query API; fails naming the targets down, or that the job has no series at all.
//! - [`PodsReady`] (with `kubernetes`): every pod of a namespace (default `stoa-system`,
//!   optionally by label selector) is `Running` with every container ready.
//! - [`RowCounts`] (with `postgres`): `count(*)` of the tables named equals the count the
//!   PostgreSQL backup recorded in its manifest (the runs the check context holds).
//!
//! A check that cannot reach its system returns an error (component, operation and a
//! hint); the [`Checklist`](stoa_backup_core::Checklist) reports it as a failure with that
//! error as detail. Secrets (bearer tokens, client secrets, database passwords) never
//! appear in `Debug`, details or errors.
//!
//! ```no_run
//! # async fn demo() -> stoa_backup_core::Result<()> {
//! use stoa_backup_core::recovery::{CheckContext, Checklist};
//! use stoa_backup_providers::checks::{HttpHealth, OidcLogin, PrometheusUp};
//!
//! // With `kubernetes` and `postgres` too: .check(PodsReady::new(kube_client)),
//! // .check(RowCounts::new(pg_connection, ["public.apis", "public.subscriptions"])?).
//! let checklist = Checklist::new()
//!     .check(HttpHealth::new("gateway /health", "http://stoa-gateway:8080/health")?)
//!     .check(OidcLogin::new("http://keycloak:8080", "stoa", "control-plane-api", "…")?)
//!     .check(PrometheusUp::new("http://prometheus:9090", "stoa-gateway")?);
//! let report = checklist.run(&CheckContext::default()).await;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```

mod http_health;
mod oidc_login;
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
mod pods_ready;
mod prometheus_up;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
mod row_counts;

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use stoa_backup_core::{Error, Result};

pub use http_health::HttpHealth;
pub use oidc_login::OidcLogin;
#[cfg(feature = "kubernetes")]
pub use pods_ready::{PodsReady, DEFAULT_NAMESPACE};
pub use prometheus_up::PrometheusUp;
#[cfg(feature = "postgres")]
pub use row_counts::RowCounts;

/// How long an HTTP check waits for an answer unless told otherwise.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error body a detail quotes.
const BODY_SNIPPET_BYTES: usize = 200;

/// A secret kept out of `Debug` (and out of everything else: only the request sees it).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret masked: a server may echo what it was sent.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The first [`BODY_SNIPPET_BYTES`] bytes of a body as text (cut on a character boundary,
/// `…` when cut), for a failure's detail; `(empty body)` when there is none.
pub(crate) fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    if text.len() <= BODY_SNIPPET_BYTES {
        return text.to_string();
    }
    let mut end = BODY_SNIPPET_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Parses the URL a check probes: http(s), no credentials embedded (they would end up in
/// details and errors). Errors never repeat the input.
pub(crate) fn parse_probe_url(input: &str, component: &str, example: &str) -> Result<Url> {
    let invalid = |why: String| {
        Error::config(format!("invalid URL to check: {why}"))
            .with_component(component)
            .with_operation("configure check")
            .with_hint(format!("give the full URL, e.g. {example}"))
    };
    let url = Url::parse(input.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(invalid(format!(
            "the scheme is {:?}, not http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            Error::config("credentials are embedded in the URL to check")
                .with_component(component)
                .with_operation("configure check")
                .with_hint("remove them from the URL and give a bearer token instead"),
        );
    }
    if url.fragment().is_some() {
        return Err(invalid("it has a fragment".into()));
    }
    Ok(url)
}

/// `url` without its query (which may carry a token), for details and errors.
pub(crate) fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// The operation recorded on a check's errors: `check '<name>'`.
pub(crate) fn operation(name: &str) -> String {
    format!("check '{name}'")
}

/// The HTTP client of a check (no client-wide timeout: each request carries the check's).
pub(crate) fn http_client(component: &str) -> Result<reqwest::Client> {
    crate::http::build_client(reqwest::Client::builder(), component)
}

/// Sends one request (no retry: a check reports what it sees now), mapping a transport
/// failure to an [`ErrorKind::Unavailable`](stoa_backup_core::ErrorKind::Unavailable)
/// error naming `what`, the component and the check.
pub(crate) async fn send_once(
    request: reqwest::RequestBuilder,
    what: &str,
    component: &str,
    check: &str,
) -> Result<crate::http::Answer> {
    let policy = stoa_backup_core::RetryPolicy::none();
    let resp = crate::http::send_with_retry(&policy, what, || {
        request
            .try_clone()
            .expect("check requests have no streaming body")
    })
    .await
    .map_err(|e| e.with_component(component).with_operation(operation(check)))?;
    crate::http::Answer::read(resp, what)
        .await
        .map_err(|e| e.with_component(component).with_operation(operation(check)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_cut_on_a_character_boundary() {
        assert_eq!(body_snippet(b"  "), "(empty body)");
        assert_eq!(
            body_snippet(b" {\"status\":\"DOWN\"}\n"),
            "{\"status\":\"DOWN\"}"
        );
        let long = "é".repeat(150); // 300 bytes
        let s = body_snippet(long.as_bytes());
        assert!(s.ends_with('…'), "{s}");
        assert_eq!(s.trim_end_matches('…').len(), 200);
    }

    #[test]
    fn secrets_stay_out_of_debug_and_are_scrubbed() {
        let s = Secret::new("tok-123");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.scrub("got tok-123 back"), "got *** back");
        assert_eq!(Secret::new("").scrub("x"), "x");
    }

    #[test]
    fn probe_urls_refuse_credentials_and_other_schemes() {
        let u = parse_probe_url("http://gw:8080/health?full=1", "c", "x").unwrap();
        assert_eq!(shown_url(&u), "http://gw:8080/health");
        for bad in ["gw:8080/health", "ftp://gw/", "not a url", "http://gw/#x"] {
            let e = parse_probe_url(bad, "c", "x").unwrap_err();
            assert!(e.to_string().contains("invalid URL"), "{bad}: {e}");
        }
        let e = parse_probe_url("http://u:pa55word@gw/health", "c", "x").unwrap_err();
        assert!(!format!("{e} {e:?}").contains("pa55word"), "{e}");
    }
}
