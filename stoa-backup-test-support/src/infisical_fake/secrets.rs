//! Secrets of the fake: listing (v4 and v3 raw) and batch writes.

use std::collections::BTreeMap;

use hyper::Response;
use serde_json::{json, Value};

use super::http::{error, invalid, respond, Body};
use super::{norm_path, FakeSecret, Project, State, HIDDEN};

fn secret_json(p: &Project, env: &str, path: &str, sec: &FakeSecret, hidden: bool) -> Value {
    let tags: Vec<Value> = sec
        .tag_ids
        .iter()
        .filter_map(|id| p.tags.iter().find(|t| t["id"] == *id).cloned())
        .collect();
    json!({"id": sec.id, "_id": sec.id, "workspace": p.id, "environment": env, "version": sec.version,
           "type": sec.kind, "secretKey": sec.key,
           "secretValue": if hidden { HIDDEN.to_string() } else { sec.value.clone() },
           "secretValueHidden": hidden, "secretComment": sec.comment, "secretPath": path,
           "skipMultilineEncoding": sec.skip_multiline, "secretReminderNote": null, "secretReminderRepeatDays": null,
           "tags": tags, "secretMetadata": sec.metadata,
           "createdAt": "2025-05-01T10:00:00.000Z", "updatedAt": "2025-05-02T08:00:00.000Z"})
}

pub(super) fn list_secrets(
    s: &State,
    pid: &str,
    env: &str,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let Some(p) = s.projects.get(pid) else {
        return error(404, "NotFound", "Project not found");
    };
    if !p.envs.iter().any(|e| e.2 == env) {
        return error(
            404,
            "NotFound",
            &format!("Environment with slug '{env}' not found"),
        );
    }
    let base = norm_path(q.get("secretPath").map_or("/", String::as_str));
    let folders = p.folders.get(env).cloned().unwrap_or_default();
    if base != "/" && !folders.contains(&base) {
        return error(
            404,
            "NotFound",
            &format!("Folder with path '{base}' in environment '{env}' not found"),
        );
    }
    let recursive = q.get("recursive").is_some_and(|r| r == "true");
    let in_scope = |path: &str| {
        path == base || (recursive && (base == "/" || path.starts_with(&format!("{base}/"))))
    };
    let mut secrets = Vec::new();
    if let Some(map) = p.secrets.get(env) {
        for ((path, _), sec) in map {
            if in_scope(path) {
                secrets.push(secret_json(
                    p,
                    env,
                    path,
                    sec,
                    s.hidden_keys.contains(&sec.key),
                ));
            }
        }
    }
    let mut imports = Vec::new();
    if q.get("include_imports").is_some_and(|v| v == "true") {
        for (path, from_env, from_path) in p.imports.get(env).into_iter().flatten() {
            if !in_scope(path) {
                continue;
            }
            let inner: Vec<Value> = p
                .secrets
                .get(from_env)
                .into_iter()
                .flatten()
                .filter(|((sp, _), _)| sp == from_path)
                .map(|((sp, _), sec)| secret_json(p, from_env, sp, sec, false))
                .collect();
            imports.push(json!({"secretPath": from_path, "environment": from_env, "folderId": "fld-import", "secrets": inner}));
        }
    }
    respond(200, json!({"secrets": secrets, "imports": imports}))
}

pub(super) fn batch(s: &mut State, method: &str, body: &Value) -> Response<Body> {
    let pid = body["projectId"]
        .as_str()
        .or_else(|| body["workspaceId"].as_str());
    let (Some(pid), Some(env)) = (pid, body["environment"].as_str()) else {
        return invalid("projectId", "Required: projectId and environment");
    };
    let items = body["secrets"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return invalid("secrets", "Array must contain at least 1 element(s)");
    }
    let default_path = norm_path(body["secretPath"].as_str().unwrap_or("/"));
    let mode = body["mode"]
        .as_str()
        .unwrap_or("failOnNotFound")
        .to_string();
    let ids: Vec<String> = (0..items.len()).map(|_| s.id()).collect();
    let approval = s
        .approval_paths
        .contains(&(env.to_string(), default_path.clone()));
    let Some(p) = s.projects.get_mut(pid) else {
        return error(404, "NotFound", "Project not found");
    };
    let folders = p.folders.get(env).cloned().unwrap_or_default();
    if default_path != "/" && !folders.contains(&default_path) {
        return error(
            404,
            "NotFound",
            &format!("Folder with path '{default_path}' in environment '{env}' not found"),
        );
    }
    if approval {
        return respond(
            200,
            json!({"approval": {"id": "apr-1", "policyId": "pol-1", "status": "open", "slug": "req-1",
                                "folderId": "fld", "hasMerged": false, "secretPath": default_path}}),
        );
    }
    let map = p.secrets.entry(env.into()).or_default();
    let tags = p.tags.clone();
    // Validate first: a batch is all or nothing.
    for it in &items {
        let path = it["secretPath"]
            .as_str()
            .map(norm_path)
            .unwrap_or(default_path.clone());
        let key = it["secretKey"].as_str().unwrap_or_default().to_string();
        if key.is_empty() {
            return invalid("secrets", "secretKey is required");
        }
        let exists = map.contains_key(&(path, key.clone()));
        if method == "POST" && exists {
            return error(
                400,
                "BadRequest",
                &format!("Secret with key '{key}' already exists"),
            );
        }
        if method == "PATCH" && !exists && mode == "failOnNotFound" {
            return error(
                404,
                "NotFound",
                &format!("Secret with key '{key}' not found"),
            );
        }
        for t in it["tagIds"].as_array().into_iter().flatten() {
            if !tags.iter().any(|x| x["id"] == *t) {
                return error(404, "NotFound", "Tag not found");
            }
        }
    }
    let mut out = Vec::new();
    for (it, id) in items.iter().zip(ids) {
        let path = it["secretPath"]
            .as_str()
            .map(norm_path)
            .unwrap_or(default_path.clone());
        let key = it["secretKey"].as_str().unwrap_or_default().to_string();
        let k = (path.clone(), key.clone());
        if method == "PATCH" && !map.contains_key(&k) && mode == "ignore" {
            continue;
        }
        let prev = map.get(&k).cloned();
        let value = it["secretValue"].as_str().map(|v| {
            // Server-side normalisation: trimmed, a single trailing newline survives.
            let t = v.trim();
            if v.ends_with('\n') {
                format!("{t}\n")
            } else {
                t.to_string()
            }
        });
        let sec = FakeSecret {
            id: prev.as_ref().map_or(id, |p| p.id.clone()),
            key: key.clone(),
            value: value
                .or_else(|| prev.as_ref().map(|p| p.value.clone()))
                .unwrap_or_default(),
            comment: it["secretComment"]
                .as_str()
                .map(str::to_string)
                .or_else(|| prev.as_ref().map(|p| p.comment.clone()))
                .unwrap_or_default(),
            kind: "shared".into(),
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            tag_ids: it["tagIds"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .or_else(|| prev.as_ref().map(|p| p.tag_ids.clone()))
                .unwrap_or_default(),
            metadata: it["secretMetadata"]
                .as_array()
                .cloned()
                .or_else(|| prev.as_ref().map(|p| p.metadata.clone()))
                .unwrap_or_default(),
            skip_multiline: it["skipMultilineEncoding"].as_bool().unwrap_or(false),
        };
        map.insert(k, sec.clone());
        out.push(
            json!({"id": sec.id, "secretKey": sec.key, "version": sec.version, "secretPath": path}),
        );
    }
    respond(200, json!({ "secrets": out }))
}
