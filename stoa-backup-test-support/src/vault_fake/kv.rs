//! KV engines of the fake: secrets with versions (v2) or plain maps (v1), and their routes.

use std::collections::{BTreeMap, BTreeSet};

use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::http::{envelope, errors, no_content, ok, respond, Body};
use super::State;

#[derive(Debug, Clone)]
pub(super) struct Version {
    pub(super) data: Option<Value>,
    pub(super) created_time: String,
    pub(super) deletion_time: String,
    pub(super) destroyed: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Secret {
    pub(super) versions: BTreeMap<u64, Version>,
    pub(super) current: u64,
    pub(super) max_versions: u64,
    pub(super) cas_required: bool,
    pub(super) delete_version_after: String,
    pub(super) custom_metadata: Map<String, Value>,
    pub(super) created_time: String,
    pub(super) updated_time: String,
}

impl Secret {
    pub(super) fn new(now: &str) -> Self {
        Secret {
            versions: BTreeMap::new(),
            current: 0,
            max_versions: 0,
            cas_required: false,
            delete_version_after: "0s".into(),
            custom_metadata: Map::new(),
            created_time: now.into(),
            updated_time: now.into(),
        }
    }

    pub(super) fn version_meta(&self, n: u64) -> Value {
        let v = &self.versions[&n];
        json!({"version": n, "created_time": v.created_time, "deletion_time": v.deletion_time,
               "destroyed": v.destroyed, "custom_metadata": if self.custom_metadata.is_empty() { Value::Null } else { Value::Object(self.custom_metadata.clone()) }})
    }

    pub(super) fn metadata(&self) -> Value {
        let versions: Map<String, Value> = self
            .versions
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    json!({"created_time": v.created_time, "deletion_time": v.deletion_time, "destroyed": v.destroyed}),
                )
            })
            .collect();
        json!({
            "current_version": self.current,
            "oldest_version": self.versions.keys().next().copied().unwrap_or(0),
            "max_versions": self.max_versions,
            "cas_required": self.cas_required,
            "delete_version_after": self.delete_version_after,
            "custom_metadata": if self.custom_metadata.is_empty() { Value::Null } else { Value::Object(self.custom_metadata.clone()) },
            "created_time": self.created_time,
            "updated_time": self.updated_time,
            "versions": versions,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Mount {
    pub(super) kv_version: u8,
    /// The options given when the engine was enabled through the API (`None`: seeded).
    pub(super) options: Option<Map<String, Value>>,
    pub(super) description: String,
    pub(super) v1: BTreeMap<String, Value>,
    pub(super) v2: BTreeMap<String, Secret>,
}

pub(super) fn write_version(sec: &mut Secret, data: Value, now: &str) -> u64 {
    sec.current += 1;
    let n = sec.current;
    sec.versions.insert(
        n,
        Version {
            data: Some(data),
            created_time: now.into(),
            deletion_time: String::new(),
            destroyed: false,
        },
    );
    let keep = if sec.max_versions == 0 {
        10
    } else {
        sec.max_versions
    };
    while sec.versions.len() as u64 > keep {
        let first = *sec.versions.keys().next().expect("non-empty");
        sec.versions.remove(&first);
    }
    sec.updated_time = now.into();
    n
}

/// A request under a KV mount of namespace `ns` (the longest mount that prefixes `path`),
/// `list` for LIST / `?list=true`.
pub(super) fn route(
    s: &mut State,
    ns: &str,
    method: &str,
    path: &str,
    list: bool,
    q: &BTreeMap<String, String>,
    json_body: &Value,
) -> Response<Body> {
    let now = s.now();
    let denied = s.denied.clone();
    let Some(mounts) = s.namespaces.get_mut(ns) else {
        return errors(404, &[]);
    };
    let Some(mpath) = mounts
        .keys()
        .filter(|m| path.starts_with(m.as_str()) || format!("{path}/") == **m)
        .max_by_key(|m| m.len())
        .cloned()
    else {
        return errors(
            404,
            &[&format!(
                "no handler for route \"{path}\". route entry not found."
            )],
        );
    };
    let mount = mounts.get_mut(&mpath).expect("found");
    let rest = path.get(mpath.len()..).unwrap_or_default().to_string();
    let is_denied = |p: &str| {
        denied
            .iter()
            .any(|d| format!("{mpath}{p}").starts_with(d.as_str()))
    };
    if mount.kv_version == 1 {
        if is_denied(&rest) {
            return errors(403, &["1 error occurred:\n\t* permission denied\n\n"]);
        }
        return kv1(mount, method, list, &rest, q, json_body);
    }
    let (kind, sub) = match rest.split_once('/') {
        Some((k, p)) => (k.to_string(), p.to_string()),
        None => (rest.clone(), String::new()),
    };
    if is_denied(&sub) && (list || method == "GET") {
        return errors(403, &["1 error occurred:\n\t* permission denied\n\n"]);
    }
    match (kind.as_str(), method, list) {
        ("metadata", _, true) => {
            let keys: Vec<String> = list_keys(mount.v2.keys(), &sub);
            page(keys, q)
        }
        ("metadata", "GET", false) => match mount.v2.get(&sub) {
            Some(sec) => ok(sec.metadata()),
            None => errors(404, &[]),
        },
        ("metadata", "POST" | "PUT", _) => {
            let sec = mount.v2.entry(sub).or_insert_with(|| Secret::new(&now));
            if let Some(n) = json_body["max_versions"].as_u64() {
                sec.max_versions = n;
            }
            if let Some(b) = json_body["cas_required"].as_bool() {
                sec.cas_required = b;
            }
            if let Some(d) = json_body["delete_version_after"].as_str() {
                sec.delete_version_after = d.into();
            }
            if let Some(c) = json_body["custom_metadata"].as_object() {
                sec.custom_metadata = c.clone();
            }
            sec.updated_time = now;
            no_content()
        }
        ("metadata", "DELETE", _) => {
            mount.v2.remove(&sub);
            no_content()
        }
        ("data", "GET", false) => {
            let Some(sec) = mount.v2.get(&sub) else {
                return errors(404, &[]);
            };
            let n = q
                .get("version")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(sec.current);
            let Some(v) = sec.versions.get(&n) else {
                return errors(404, &[]);
            };
            let meta = sec.version_meta(n);
            if !v.deletion_time.is_empty() || v.destroyed {
                return respond(
                    StatusCode::NOT_FOUND,
                    envelope(json!({"data": null, "metadata": meta})),
                );
            }
            ok(json!({"data": v.data, "metadata": meta}))
        }
        ("data", "POST" | "PUT", _) => {
            let Some(data) = json_body.get("data").filter(|d| d.is_object()).cloned() else {
                return errors(400, &["no data provided"]);
            };
            let cas = json_body["options"]["cas"].as_u64();
            let sec = mount.v2.entry(sub).or_insert_with(|| Secret::new(&now));
            match cas {
                None if sec.cas_required => {
                    return errors(400, &["check-and-set parameter required for this call"])
                }
                Some(c) if c != sec.current => {
                    return errors(
                        400,
                        &["check-and-set parameter did not match the current version"],
                    )
                }
                _ => {}
            }
            let n = write_version(sec, data, &now);
            ok(sec.version_meta(n))
        }
        (op @ ("delete" | "undelete" | "destroy"), "POST" | "PUT", _) => {
            let Some(versions) = version_numbers(&json_body["versions"]) else {
                return errors(400, &["no version number provided"]);
            };
            // An unknown secret or version is no error: Vault answers 204 too.
            if let Some(sec) = mount.v2.get_mut(&sub) {
                for n in versions {
                    let Some(v) = sec.versions.get_mut(&n) else {
                        continue;
                    };
                    match op {
                        "delete" if !v.destroyed && v.deletion_time.is_empty() => {
                            v.deletion_time = now.clone()
                        }
                        "undelete" if !v.destroyed => v.deletion_time.clear(),
                        "destroy" => {
                            v.destroyed = true;
                            v.data = None;
                        }
                        _ => {}
                    }
                }
            }
            no_content()
        }
        ("data", "DELETE", _) => {
            if let Some(sec) = mount.v2.get_mut(&sub) {
                let cur = sec.current;
                if let Some(v) = sec.versions.get_mut(&cur) {
                    v.deletion_time = now;
                }
            }
            no_content()
        }
        _ => errors(405, &["unsupported operation"]),
    }
}

/// The `versions` of a delete, undelete or destroy call (numbers, numeric strings, or one
/// comma-separated string, as Vault accepts); `None` when there are none.
fn version_numbers(v: &Value) -> Option<Vec<u64>> {
    let items: Vec<Value> = match v {
        Value::Array(a) => a.clone(),
        Value::String(s) => s
            .split(',')
            .map(|x| Value::String(x.trim().into()))
            .collect(),
        Value::Number(_) => vec![v.clone()],
        _ => Vec::new(),
    };
    let numbers: Vec<u64> = items
        .iter()
        .filter_map(|x| x.as_u64().or_else(|| x.as_str()?.parse().ok()))
        .collect();
    (!numbers.is_empty()).then_some(numbers)
}

/// The `options` `sys/mounts` reports for a mount.
pub(super) fn mount_options(m: &Mount) -> Value {
    match &m.options {
        Some(o) => Value::Object(o.clone()),
        None if m.kv_version == 2 => json!({"version": "2"}),
        None => Value::Null,
    }
}

fn list_keys<'a>(paths: impl Iterator<Item = &'a String>, prefix: &str) -> Vec<String> {
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let set: BTreeSet<String> = paths
        .filter_map(|p| p.strip_prefix(prefix.as_str()))
        .map(|rest| match rest.find('/') {
            Some(i) => rest[..=i].to_string(),
            None => rest.to_string(),
        })
        .collect();
    set.into_iter().collect()
}

fn page(keys: Vec<String>, q: &BTreeMap<String, String>) -> Response<Body> {
    let after = q.get("after").cloned().unwrap_or_default();
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok());
    let keys: Vec<String> = keys
        .into_iter()
        .filter(|k| after.is_empty() || *k > after)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    if keys.is_empty() {
        return errors(404, &[]);
    }
    ok(json!({ "keys": keys }))
}

fn kv1(
    mount: &mut Mount,
    method: &str,
    list: bool,
    rest: &str,
    q: &BTreeMap<String, String>,
    body: &Value,
) -> Response<Body> {
    if list {
        return page(list_keys(mount.v1.keys(), rest), q);
    }
    match method {
        "GET" => match mount.v1.get(rest) {
            Some(v) => respond(
                StatusCode::OK,
                json!({"request_id": "fake", "lease_id": "", "renewable": false, "lease_duration": 2_764_800,
                       "data": v, "wrap_info": null, "warnings": null, "auth": null}),
            ),
            None => errors(404, &[]),
        },
        "POST" | "PUT" => {
            if !body.is_object() {
                return errors(400, &["no data provided"]);
            }
            mount.v1.insert(rest.to_string(), body.clone());
            no_content()
        }
        "DELETE" => {
            mount.v1.remove(rest);
            no_content()
        }
        _ => errors(405, &["unsupported operation"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_one_level() {
        let paths: Vec<String> = ["a/b/c", "a/d", "e", "a b/x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(list_keys(paths.iter(), ""), vec!["a b/", "a/", "e"]);
        assert_eq!(list_keys(paths.iter(), "a/"), vec!["b/", "d"]);
        assert_eq!(crate::percent::decode("a%20b/c"), "a b/c");
    }
}
