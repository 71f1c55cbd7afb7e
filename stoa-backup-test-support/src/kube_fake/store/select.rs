//! Label and field selectors of list requests.

use serde_json::{Map, Value};

use super::{ApiError, ApiResult};

/// A parsed label selector.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selector {
    reqs: Vec<Requirement>,
}

#[derive(Debug, Clone)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let bad = || ApiError::bad_request(format!("unable to parse requirement: {part}"));
            let req = if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), parse_set(rest).ok_or_else(bad)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), parse_set(rest).ok_or_else(bad)?)
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(part.to_string())
            } else {
                return Err(bad());
            };
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let s = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
    )
}

/// A field selector (`metadata.name=x`, `metadata.namespace!=y`).
pub(crate) fn field_selector_matches(selector: &str, obj: &Value) -> ApiResult<bool> {
    for part in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, want, negate) = if let Some((f, v)) = part.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, v, false)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, v, false)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid field selector: {part}"
            )));
        };
        let actual = match field.trim() {
            "metadata.name" => obj["metadata"]["name"].as_str().unwrap_or_default(),
            "metadata.namespace" => obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            "type" => obj["type"].as_str().unwrap_or_default(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {other}"
                )))
            }
        };
        if (actual == want.trim()) == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors() {
        let labels: Map<String, Value> =
            serde_json::from_value(json!({"app": "stoa", "tier": "gw"})).unwrap();
        for (s, want) in [
            ("app=stoa", true),
            ("app==stoa,tier=gw", true),
            ("app!=stoa", false),
            ("tier in (gw, db)", true),
            ("tier notin (gw)", false),
            ("app", true),
            ("!missing", true),
            ("missing", false),
        ] {
            assert_eq!(Selector::parse(s).unwrap().matches(&labels), want, "{s}");
        }
    }
}
