//! [`PrometheusUp`]: Prometheus scrapes every target of a job again (`up == 1`).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use serde_json::Value;
use stoa_backup_core::recovery::{Check, CheckContext, CheckOutcome};
use stoa_backup_core::{Error, ErrorKind, Result};

use super::{body_snippet, parse_probe_url, send_once, shown_url, DEFAULT_HTTP_TIMEOUT};

/// The component recorded on this check's errors.
const COMPONENT: &str = "prometheus";

/// Asks Prometheus' query API for `up{job="<job>"}` (`GET {base}/api/v1/query`): passes
/// when the job has at least one series and every one is 1; fails naming the targets
/// (`instance` labels) that are 0, or saying the job has no series (Prometheus does not
/// scrape it: scraping was not resumed, or the job is named otherwise). An error answer
/// (`{"status":"error","errorType":…}` with 400, 422 or 503) or an unreachable server is an
/// error naming the query.
#[derive(Debug, Clone)]
pub struct PrometheusUp {
    name: String,
    base: Url,
    job: String,
    timeout: Duration,
    client: reqwest::Client,
}

impl PrometheusUp {
    /// The check of `job` (e.g. `stoa-gateway`) on the Prometheus at `base_url` (e.g.
    /// `http://prometheus.monitoring:9090`, or with a sub-path behind a proxy). Named
    /// `prometheus up{job="<job>"}` unless [`named`](Self::named) says otherwise.
    pub fn new(base_url: &str, job: impl Into<String>) -> Result<Self> {
        let job = job.into();
        if job.is_empty() {
            return Err(Error::config("the Prometheus job to check is empty")
                .with_component(COMPONENT)
                .with_operation("configure check"));
        }
        let mut base = parse_probe_url(base_url, COMPONENT, "http://prometheus:9090")?;
        if base.query().is_some() {
            return Err(Error::config("the Prometheus URL has a query")
                .with_component(COMPONENT)
                .with_operation("configure check")
                .with_hint("give the server's base URL, e.g. http://prometheus:9090"));
        }
        base.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(["api", "v1", "query"]);
        Ok(PrometheusUp {
            name: format!("prometheus {}", up_query(&job)),
            base,
            job,
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

    /// The PromQL query sent: `up{job="<job>"}`.
    pub fn query(&self) -> String {
        up_query(&self.job)
    }

    fn error(&self, kind: ErrorKind, message: String) -> Error {
        Error::new(kind, message)
            .with_component(COMPONENT)
            .with_operation(super::operation(&self.name))
    }
}

/// `up{job="<job>"}`, the job quoted as a PromQL string.
fn up_query(job: &str) -> String {
    let mut quoted = String::with_capacity(job.len());
    for c in job.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    format!("up{{job=\"{quoted}\"}}")
}

/// One series of the answer: its target (the `instance` label, else every label) and value.
fn series(item: &Value) -> Option<(String, f64)> {
    let metric = item.get("metric")?.as_object()?;
    let target = match metric.get("instance").and_then(Value::as_str) {
        Some(i) => i.to_string(),
        None => {
            let labels: Vec<String> = metric
                .iter()
                .filter(|(k, _)| k.as_str() != "__name__")
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            format!("{{{}}}", labels.join(","))
        }
    };
    // Prometheus renders sample values as strings ("1", "0", "NaN").
    let value = item.get("value")?.get(1)?.as_str()?.parse().ok()?;
    Some((target, value))
}

#[async_trait]
impl Check for PrometheusUp {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, _ctx: &CheckContext) -> Result<CheckOutcome> {
        let query = self.query();
        let request = self
            .client
            .get(self.base.clone())
            .timeout(self.timeout)
            .query(&[("query", query.as_str())]);
        let what = format!("query {query} on {}", shown_url(&self.base));
        let answer = send_once(request, &what, COMPONENT, &self.name).await?;
        let status = answer.status.as_u16();
        let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
        let envelope = body.as_ref().filter(|b| b.get("status").is_some());
        let Some(envelope) = envelope else {
            // Not the API's answer (a proxy in between, or not Prometheus at all).
            let kind = if answer.status.is_server_error() {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Source
            };
            return Err(self
                .error(
                    kind,
                    format!(
                        "{what}: HTTP {status}, not a Prometheus API answer: {}",
                        body_snippet(&answer.body)
                    ),
                )
                .with_http_status(status)
                .with_hint("check that the URL is Prometheus' (the API is under /api/v1)"));
        };
        if envelope["status"] != "success" {
            let error_type = envelope["errorType"].as_str().unwrap_or("unknown");
            let message = envelope["error"].as_str().unwrap_or_default();
            let (kind, hint) = match status {
                503 => (
                    ErrorKind::Unavailable,
                    "the query timed out or was aborted: check Prometheus' load and retry",
                ),
                _ => (
                    ErrorKind::Source,
                    "Prometheus refused the query: check the job name",
                ),
            };
            return Err(self
                .error(
                    kind,
                    format!("{what}: HTTP {status}: {error_type}: {message}"),
                )
                .with_http_status(status)
                .with_hint(hint));
        }
        let data = &envelope["data"];
        if data["resultType"] != "vector" {
            return Err(self.error(
                ErrorKind::Source,
                format!(
                    "{what}: the answer's resultType is {}, not vector",
                    data["resultType"]
                ),
            ));
        }
        let items = data["result"].as_array().cloned().unwrap_or_default();
        let mut targets = Vec::with_capacity(items.len());
        for item in &items {
            let Some(s) = series(item) else {
                return Err(self.error(
                    ErrorKind::Source,
                    format!("{what}: a series of the answer has no readable value: {item}"),
                ));
            };
            targets.push(s);
        }
        if targets.is_empty() {
            return Ok(CheckOutcome::failed(format!(
                "no series for job \"{}\": Prometheus does not scrape it (scraping not resumed?)",
                self.job
            )));
        }
        targets.sort_by(|a, b| a.0.cmp(&b.0));
        let down: Vec<&str> = targets
            .iter()
            .filter(|(_, v)| *v != 1.0)
            .map(|(t, _)| t.as_str())
            .collect();
        let total = targets.len();
        if down.is_empty() {
            Ok(CheckOutcome::passed(format!(
                "{total}/{total} targets of job \"{}\" up",
                self.job
            )))
        } else {
            Ok(CheckOutcome::failed(format!(
                "{}/{total} targets of job \"{}\" down: {}",
                down.len(),
                self.job,
                down.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_job_is_quoted_as_a_promql_string() {
        assert_eq!(up_query("stoa-gateway"), r#"up{job="stoa-gateway"}"#);
        assert_eq!(up_query(r#"a"b\c"#), r#"up{job="a\"b\\c"}"#);
    }

    #[test]
    fn the_query_url_keeps_a_sub_path() {
        let c = PrometheusUp::new("http://p:9090/prom", "gw").unwrap();
        assert_eq!(c.base.as_str(), "http://p:9090/prom/api/v1/query");
        assert_eq!(c.name(), r#"prometheus up{job="gw"}"#);
    }

    #[test]
    fn series_are_read_by_instance_or_labels() {
        let s =
            series(&json!({"metric": {"__name__": "up", "instance": "a:1"}, "value": [1.5, "0"]}));
        assert_eq!(s, Some(("a:1".into(), 0.0)));
        let s = series(&json!({"metric": {"job": "j"}, "value": [1.5, "1"]}));
        assert_eq!(s, Some(("{job=j}".into(), 1.0)));
        assert_eq!(series(&json!({"metric": {}, "value": [1.5, 1]})), None);
    }
}
