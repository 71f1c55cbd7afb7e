//! A fake Prometheus query API over real HTTP on `127.0.0.1` (feature `prometheus`).
//!
//! Serves `GET` and `POST` (form) `/api/v1/query` for instant vector selectors over series
//! the test sets: `up`, `up{job="stoa-gateway"}`, `{job="x", instance!="y"}` (label
//! matchers `=` and `!=`; strings in double, single or back quotes). Answers follow the
//! HTTP API's envelope: `{"status":"success","data":{"resultType":"vector","result":[{"metric":
//! {…},"value":[<unix seconds>,"<value>"]}]}}`, and for a query it cannot parse (or a missing
//! one) 400 `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\":
//! 1:<col>: parse error: …"}`; regex matchers and any other PromQL are refused the same way
//! (the fake does not evaluate them). The test can make every query fail instead (e.g. 503
//! `timeout`, 422 `execution`). Other paths answer 404 `404 page not found` (text), as
//! Prometheus' router does. Every request is logged with its decoded query.
//!
//! ```no_run
//! # async fn demo() {
//! use stoa_backup_test_support::prometheus_fake::FakePrometheus;
//! let prom = FakePrometheus::start().await;
//! prom.set_up("stoa-gateway", "10.0.0.1:8080", true);
//! prom.set_up("stoa-gateway", "10.0.0.2:8080", false);
//! # let _ = prom.url();
//! # }
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use crate::http_fake::FakeRequest;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// The `query` parameter, decoded (from the URL, or the form of a POST).
    pub query: Option<String>,
    /// Status answered.
    pub status: u16,
}

/// A series: its labels (`__name__` included) and its current value.
type Series = (BTreeMap<String, String>, f64);

struct State {
    series: Vec<Series>,
    failure: Option<(u16, String, String)>,
    log: Vec<PromRequest>,
}

/// The fake server; stops when dropped.
pub struct FakePrometheus {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakePrometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakePrometheus")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePrometheus {
    /// Starts a server holding no series.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            series: Vec::new(),
            failure: None,
            log: Vec::new(),
        }));
        let task = crate::http_fake::spawn_server(listener, state.clone(), handle);
        FakePrometheus { state, addr, task }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("prometheus state"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the series `name{labels}` to `value` (creating it, or replacing its value).
    pub fn set_series(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut key: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        key.insert("__name__".into(), name.into());
        self.with(|s| match s.series.iter_mut().find(|(l, _)| *l == key) {
            Some(existing) => existing.1 = value,
            None => s.series.push((key, value)),
        });
    }

    /// Sets `up{job, instance}` to 1 (`up`) or 0 (a target Prometheus cannot scrape).
    pub fn set_up(&self, job: &str, instance: &str, up: bool) {
        self.set_series(
            "up",
            &[("job", job), ("instance", instance)],
            if up { 1.0 } else { 0.0 },
        );
    }

    /// Removes every series of `job` (Prometheus no longer scrapes it).
    pub fn remove_job(&self, job: &str) {
        self.with(|s| {
            s.series
                .retain(|(l, _)| l.get("job").map(String::as_str) != Some(job))
        });
    }

    /// Removes every series.
    pub fn clear(&self) {
        self.with(|s| s.series.clear());
    }

    /// Answers every query with this error envelope from now on (e.g. `503`, `timeout`,
    /// `query timed out in expression evaluation`).
    pub fn fail_queries(&self, status: u16, error_type: &str, error: &str) {
        self.with(|s| s.failure = Some((status, error_type.into(), error.into())));
    }

    /// Answers queries again.
    pub fn clear_failure(&self) {
        self.with(|s| s.failure = None);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<PromRequest> {
        self.with(|s| s.log.clone())
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

fn json_answer(status: u16, v: &Value) -> Response<Full<Bytes>> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(v).expect("json"),
    )
}

fn error_envelope(error_type: &str, error: &str) -> Value {
    json!({"status": "error", "errorType": error_type, "error": error})
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let r = FakeRequest::read(req).await;
    let mut params: Vec<(String, String)> = crate::percent::form_pairs(&r.query).collect();
    if r.method == "POST" {
        params.extend(crate::percent::form_pairs(&String::from_utf8_lossy(
            &r.body,
        )));
    }
    let query = params
        .iter()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.clone());
    let mut s = state.lock().expect("prometheus state");
    let resp = if r.path != "/api/v1/query" {
        respond(
            404,
            "text/plain; charset=utf-8",
            b"404 page not found\n".to_vec(),
        )
    } else if r.method != "GET" && r.method != "POST" {
        respond(
            405,
            "text/plain; charset=utf-8",
            b"Method Not Allowed\n".to_vec(),
        )
    } else if let Some((status, error_type, error)) = &s.failure {
        json_answer(*status, &error_envelope(error_type, error))
    } else {
        match parse_selector(query.as_deref().unwrap_or("")) {
            Err((col, msg)) => json_answer(
                400,
                &error_envelope(
                    "bad_data",
                    &format!("invalid parameter \"query\": 1:{col}: parse error: {msg}"),
                ),
            ),
            Ok(selector) => json_answer(200, &answer(&s.series, &selector)),
        }
    };
    s.log.push(PromRequest {
        method: r.method.clone(),
        path: r.path.clone(),
        query,
        status: resp.status().as_u16(),
    });
    Ok(resp)
}

/// A label matcher: name, whether it must equal (`=`) or differ (`!=`), the value.
type Matcher = (String, bool, String);

fn answer(series: &[Series], matchers: &[Matcher]) -> Value {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0);
    let result: Vec<Value> = series
        .iter()
        .filter(|(labels, _)| {
            matchers.iter().all(|(name, eq, want)| {
                // An absent label matches the empty string, as in PromQL.
                let have = labels.get(name).map(String::as_str).unwrap_or("");
                (have == want) == *eq
            })
        })
        .map(|(labels, v)| json!({"metric": labels, "value": [ts, format_value(*v)]}))
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}})
}

/// Sample values as Prometheus renders them (`1`, `0.5`, `NaN`, `+Inf`).
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Parses `name`, `name{matchers}` or `{matchers}` into matchers on the labels (the name
/// as `__name__`); `Err((column, message))` as Prometheus' parser words it.
fn parse_selector(q: &str) -> Result<Vec<Matcher>, (usize, String)> {
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let ident = |i: &mut usize, metric: bool| -> String {
        let start = *i;
        while *i < chars.len() {
            let c = chars[*i];
            let ok = c == '_'
                || c.is_ascii_alphabetic()
                || (metric && c == ':')
                || (*i > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    skip_ws(&mut i);
    if i == chars.len() {
        return Err((1, "no expression found in input".into()));
    }
    let mut matchers = Vec::new();
    let name = ident(&mut i, true);
    if !name.is_empty() {
        matchers.push(("__name__".to_string(), true, name));
    }
    skip_ws(&mut i);
    if i < chars.len() && chars[i] == '{' {
        i += 1;
        loop {
            skip_ws(&mut i);
            if i < chars.len() && chars[i] == '}' {
                i += 1;
                break;
            }
            let label = ident(&mut i, false);
            if label.is_empty() {
                return Err((i + 1, "unexpected character inside braces".into()));
            }
            skip_ws(&mut i);
            let eq = match (chars.get(i), chars.get(i + 1)) {
                (Some('='), Some('~')) | (Some('!'), Some('~')) => {
                    return Err((
                        i + 1,
                        "regular-expression matchers are not supported by this fake".into(),
                    ))
                }
                (Some('!'), Some('=')) => {
                    i += 2;
                    false
                }
                (Some('='), _) => {
                    i += 1;
                    true
                }
                _ => return Err((i + 1, format!("unexpected end of label matcher {label}"))),
            };
            skip_ws(&mut i);
            let value = string(&chars, &mut i)?;
            matchers.push((label, eq, value));
            skip_ws(&mut i);
            match chars.get(i) {
                Some(',') => i += 1,
                Some('}') => {}
                _ => return Err((i + 1, "unexpected character inside braces".into())),
            }
        }
    }
    skip_ws(&mut i);
    if i < chars.len() {
        return Err((i + 1, format!("unexpected character: '{}'", chars[i])));
    }
    if !matchers.iter().any(|(_, eq, v)| *eq && !v.is_empty()) {
        return Err((
            1,
            "vector selector must contain at least one non-empty matcher".into(),
        ));
    }
    Ok(matchers)
}

/// A PromQL string literal at `i` (double or single quotes with `\` escapes, or back quotes
/// raw).
fn string(chars: &[char], i: &mut usize) -> Result<String, (usize, String)> {
    let Some(&quote) = chars.get(*i).filter(|c| matches!(c, '"' | '\'' | '`')) else {
        return Err((*i + 1, "unexpected character inside braces".into()));
    };
    let start = *i;
    *i += 1;
    let mut out = String::new();
    while let Some(&c) = chars.get(*i) {
        *i += 1;
        if c == quote {
            return Ok(out);
        }
        if c == '\\' && quote != '`' {
            let Some(&e) = chars.get(*i) else { break };
            *i += 1;
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                other => other,
            });
        } else {
            out.push(c);
        }
    }
    Err((start + 1, "unterminated quoted string".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, eq: bool, v: &str) -> Matcher {
        (name.into(), eq, v.into())
    }

    #[test]
    fn parses_vector_selectors() {
        assert_eq!(parse_selector("up").unwrap(), [m("__name__", true, "up")]);
        assert_eq!(
            parse_selector(r#" up{job="stoa-gateway", instance!='a:1'} "#).unwrap(),
            [
                m("__name__", true, "up"),
                m("job", true, "stoa-gateway"),
                m("instance", false, "a:1")
            ]
        );
        assert_eq!(
            parse_selector(r#"{job="a\"b"}"#).unwrap(),
            [m("job", true, "a\"b")]
        );
        for bad in [
            "",
            "up{",
            "up{job}",
            r#"up{job="x"#,
            r#"up{job=~"x"}"#,
            "up +",
            "{}",
            r#"{job=""}"#,
        ] {
            assert!(parse_selector(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_selector("").unwrap_err(),
            (1, "no expression found in input".to_string())
        );
    }

    #[test]
    fn answers_the_series_matching() {
        let series = vec![
            (
                BTreeMap::from([
                    ("__name__".to_string(), "up".to_string()),
                    ("job".to_string(), "gw".to_string()),
                    ("instance".to_string(), "a".to_string()),
                ]),
                1.0,
            ),
            (
                BTreeMap::from([
                    ("__name__".to_string(), "up".to_string()),
                    ("job".to_string(), "cp".to_string()),
                    ("instance".to_string(), "b".to_string()),
                ]),
                0.0,
            ),
        ];
        let a = answer(&series, &parse_selector(r#"up{job="gw"}"#).unwrap());
        assert_eq!(a["status"], "success");
        assert_eq!(a["data"]["resultType"], "vector");
        let r = a["data"]["result"].as_array().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["metric"]["instance"], "a");
        assert_eq!(r[0]["value"][1], "1");
        assert!(r[0]["value"][0].is_f64());
        let a = answer(&series, &parse_selector("up").unwrap());
        assert_eq!(a["data"]["result"].as_array().unwrap().len(), 2);
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
