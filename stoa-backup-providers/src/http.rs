//! Shared HTTP plumbing for the REST providers (Keycloak, Grafana, Vault, Infisical): base URL
//! checks, retries with backoff on 429 (honouring `Retry-After`) and 5xx, no retry on other
//! 4xx, error mapping to the public [`Error`] (never with credentials in it), and stable JSON
//! formatting for Git-friendly files.

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;
use stoa_backup_core::retry::{RetryDecision, RetryPolicy};
use stoa_backup_core::{Error, ErrorKind, Result};

/// Parses the base URL of `service` (e.g. "Vault"): http(s) only, no credentials embedded
/// (they would end up in logs and errors), and a trailing slash so that joining relative API
/// paths keeps a sub-path such as `/grafana/`. Errors never repeat the input, which may hold
/// a password.
pub fn parse_base_url(input: &str, service: &str, component: &str, example: &str) -> Result<Url> {
    let invalid = |why: String| {
        Error::config(format!("invalid {service} URL: {why}"))
            .with_component(component)
            .with_operation("configure")
            .with_hint(format!("give the base URL, e.g. {example}"))
    };
    let mut url = Url::parse(input.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(invalid(format!(
            "the scheme is {:?}, not http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            Error::config(format!("credentials are embedded in the {service} URL"))
                .with_component(component)
                .with_operation("configure")
                .with_hint("remove them from the URL and pass them as the connection's auth"),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it has a query or fragment".into()));
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// The variables a `from_env` constructor reads, through a lookup (the process environment,
/// or a map in tests). Empty values count as unset; errors name the variable, never a value.
pub(crate) struct EnvVars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    component: &'a str,
}

impl<'a> EnvVars<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>, component: &'a str) -> Self {
        EnvVars { lookup, component }
    }

    /// The value of the first of `names` that is set.
    pub(crate) fn first(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find_map(|n| (self.lookup)(n).filter(|v| !v.trim().is_empty()))
    }

    /// Like [`EnvVars::first`], failing with [`EnvVars::missing`] when none is set.
    pub(crate) fn require(&self, names: &[&str], hint: &str) -> Result<String> {
        self.first(names).ok_or_else(|| self.missing(names, hint))
    }

    /// The config error for unset `names`, with `hint`.
    pub(crate) fn missing(&self, names: &[&str], hint: &str) -> Error {
        Error::config(format!("{} is not set", names.join(" or ")))
            .with_component(self.component)
            .with_operation("read environment")
            .with_context("variable", names[0])
            .with_hint(hint)
    }

    /// Marks an error from building the connection as coming from the variable `name`.
    pub(crate) fn blame(&self, name: &str) -> impl FnOnce(Error) -> Error + '_ {
        let name = name.to_string();
        move |e| {
            e.with_context("variable", name)
                .or_operation("read environment")
        }
    }
}

/// Builds the HTTP client configured by `builder`, with an error that names `component`.
pub fn build_client(builder: reqwest::ClientBuilder, component: &str) -> Result<reqwest::Client> {
    builder.build().map_err(|e| {
        Error::config("cannot build the HTTP client")
            .with_component(component)
            .with_operation("configure")
            .with_hint("check this machine's TLS set-up (root certificates)")
            .with_source(e)
    })
}

/// How the HTTP providers retry by default: 6 attempts, 200 ms doubling up to 30 s (which
/// also caps a server's `Retry-After`), equal jitter.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 6,
        ..RetryPolicy::default()
    }
}

/// Whether a status is worth retrying (429 and 5xx).
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: f64 = v.to_str().ok()?.trim().parse().ok()?;
    (secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Sends the request built by `build` (called again for every attempt), retrying on
/// connection errors, 429 (waiting `Retry-After` when given) and 5xx. Any other status is
/// returned as is for the caller to interpret; after the last attempt the last retryable
/// response is returned too.
pub async fn send_with_retry(
    policy: &RetryPolicy,
    what: &str,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response> {
    let outcome = policy
        .retry_when(
            what,
            || build().send(),
            |outcome| match outcome {
                Ok(resp) if is_retryable_status(resp.status()) => RetryDecision::Retry {
                    after: retry_after(resp),
                    reason: format!("HTTP {}", resp.status().as_u16()),
                },
                Err(e) if e.is_connect() || e.is_timeout() => RetryDecision::Retry {
                    after: None,
                    reason: without_url(e),
                },
                _ => RetryDecision::Done,
            },
        )
        .await;
    outcome.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("{what}: request failed: {}", without_url(&e)),
        )
        .with_retryable(true)
        .with_hint("check the server URL and that the server is reachable")
    })
}

/// reqwest errors print the URL, which may carry query parameters; keep just the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.without_url_ref().to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let _ = write!(msg, ": {s}");
        src = s.source();
    }
    msg
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        if self.is_timeout() {
            "timed out".into()
        } else if self.is_connect() {
            "cannot connect".into()
        } else if self.is_body() || self.is_decode() {
            "bad response body".into()
        } else {
            "HTTP error".into()
        }
    }
}

/// Reads a response body, mapping transport failures.
pub async fn read_body(resp: Response, what: &str) -> Result<bytes::Bytes> {
    resp.bytes().await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("{what}: reading the response failed: {}", without_url(&e)),
        )
        .with_retryable(true)
    })
}

/// A response read whole: its status, the wait it asked for and its body; what mapping an
/// error answer needs once the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// How long the server asked to wait before a retry (`Retry-After`, in seconds).
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: bytes::Bytes,
}

impl Answer {
    /// An answer with this status and body and no `Retry-After`.
    #[cfg(test)]
    pub fn new(status: StatusCode, body: impl Into<bytes::Bytes>) -> Self {
        Answer {
            status,
            retry_after: None,
            body: body.into(),
        }
    }

    /// Reads `resp` whole, mapping transport failures as [`read_body`] does.
    pub async fn read(resp: Response, what: &str) -> Result<Answer> {
        let status = resp.status();
        let retry_after = retry_after(&resp);
        let body = read_body(resp, what).await?;
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// The error for this (error) answer: of `kind`, saying `what` was attempted, the status
    /// and the server's `detail` (may be empty), with `hint`. The status and `Retry-After`
    /// are recorded ([`Error::http_status`], [`Error::retry_after`]) so callers match on
    /// them, not on the message; 429 and 5xx are retryable.
    pub fn error(&self, kind: ErrorKind, what: &str, detail: &str, hint: &str) -> Error {
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        let e = Error::new(
            kind,
            format!("{what}: HTTP {}{detail}", self.status.as_u16()),
        )
        .with_retryable(is_retryable_status(self.status))
        .with_http_status(self.status.as_u16())
        .with_hint(hint);
        match self.retry_after {
            Some(delay) => e.with_retry_after(delay),
            None => e,
        }
    }
}

/// Reads a successful JSON response, or maps an error status with [`status_error`].
pub async fn json_ok(resp: Response, what: &str) -> Result<Value> {
    let answer = Answer::read(resp, what).await?;
    if !answer.status.is_success() {
        return Err(status_error(&answer, what));
    }
    if answer.body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&answer.body).map_err(|e| {
        Error::source_failed(format!("{what}: the server answered invalid JSON")).with_source(e)
    })
}

/// The error message a server put in its error body (`errorMessage`, `error_description`,
/// `error`, `message`), shortened; never the whole body.
pub fn server_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let pick = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let msg = pick("errorMessage")
        .or_else(|| pick("error_description"))
        .or_else(|| pick("message"))
        .or_else(|| pick("error"))?;
    Some(msg.chars().take(300).collect())
}

/// Maps an HTTP error answer to an [`Error`] of the fitting kind (see [`Answer::error`]).
pub fn status_error(answer: &Answer, what: &str) -> Error {
    let (kind, hint) = match answer.status.as_u16() {
        401 => (
            ErrorKind::Unauthenticated,
            "check the credentials (or token lifetime) the provider was configured with",
        ),
        403 => (
            ErrorKind::PermissionDenied,
            "grant the backup identity the admin roles the operation needs",
        ),
        404 => (ErrorKind::NotFound, "check the name or uid exists"),
        409 | 412 => (
            ErrorKind::Conflict,
            "the object already exists or changed: choose another existing-data policy",
        ),
        429 => (
            ErrorKind::Unavailable,
            "the server is rate limiting: retry later",
        ),
        s if s >= 500 => (
            ErrorKind::Unavailable,
            "the server failed: check its logs and retry",
        ),
        _ => (ErrorKind::Source, "the server refused the request"),
    };
    let detail = server_message(&answer.body).unwrap_or_default();
    answer.error(kind, what, &detail, hint)
}

/// Serializes a JSON value with sorted keys and two-space indentation, ending in a newline:
/// the same object always gives the same bytes (clean Git diffs).
pub fn to_stable_json(value: &Value) -> String {
    let mut out = String::new();
    write_stable(&mut out, value, 0);
    out.push('\n');
    out
}

/// Writes `value` in the stable format at an indentation `level` (no trailing newline).
pub fn write_stable(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                indent(out, level + 1);
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push_str(": ");
                write_stable(out, &m[k.as_str()], level + 1);
                if i + 1 < keys.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, level);
            out.push('}');
        }
        Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, v) in a.iter().enumerate() {
                indent(out, level + 1);
                write_stable(out, v, level + 1);
                if i + 1 < a.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, level);
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Two spaces per level.
pub fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stable_json_sorts_keys_and_is_parseable() {
        let v = json!({"b": [1, {"z": null, "a": "x"}], "a": {}, "c": []});
        let s = to_stable_json(&v);
        assert_eq!(
            s,
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    {\n      \"a\": \"x\",\n      \"z\": null\n    }\n  ],\n  \"c\": []\n}\n"
        );
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), v);
    }

    #[test]
    fn maps_statuses() {
        let e = status_error(
            &Answer::new(
                StatusCode::CONFLICT,
                &br#"{"errorMessage":"User 'alice' already exists."}"#[..],
            ),
            "partial import",
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("alice"));
        assert!(!e.is_retryable());
        let e = status_error(&Answer::new(StatusCode::SERVICE_UNAVAILABLE, ""), "x");
        assert!(e.is_retryable());
        assert_eq!(
            status_error(&Answer::new(StatusCode::UNAUTHORIZED, "{}"), "x").kind(),
            ErrorKind::Unauthenticated
        );
    }

    #[test]
    fn errors_record_the_status_and_retry_after() {
        let mut answer = Answer::new(StatusCode::TOO_MANY_REQUESTS, r#"{"message":"slow down"}"#);
        answer.retry_after = Some(Duration::from_secs(7));
        let e = status_error(&answer, "listing dashboards");
        assert_eq!(e.http_status(), Some(429));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.message(), "listing dashboards: HTTP 429: slow down");
        let e = status_error(&Answer::new(StatusCode::NOT_ACCEPTABLE, ""), "x");
        assert_eq!((e.http_status(), e.retry_after()), (Some(406), None));
    }

    #[test]
    fn base_urls_are_checked_and_keep_their_sub_path() {
        let u = parse_base_url("https://g.example/grafana", "Grafana", "grafana", "x").unwrap();
        assert_eq!(u.join("api/search").unwrap().path(), "/grafana/api/search");
        let u = parse_base_url(" http://v:8200/ ", "Vault", "vault", "x").unwrap();
        assert_eq!(u.as_str(), "http://v:8200/");
        for bad in [
            "vault:8200",
            "ftp://v/",
            "mailto:a@b",
            "http://v/?x=1",
            "not a url",
        ] {
            let e = parse_base_url(bad, "Vault", "vault", "https://vault:8200").unwrap_err();
            assert_eq!(e.component(), Some("vault"), "{bad}");
            assert!(e.to_string().contains("invalid Vault URL"), "{bad}: {e}");
        }
        let e = parse_base_url("https://admin:s3cret-pw@v/", "Vault", "vault", "x").unwrap_err();
        assert!(e.to_string().contains("credentials are embedded"), "{e}");
        assert!(!format!("{e} {e:?}").contains("s3cret-pw"));
    }
}
