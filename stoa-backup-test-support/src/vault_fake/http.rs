//! The fake's HTTP API: envelope and error bodies, health, logins, `sys/*` routes; KV
//! routes are in `kv`, snapshots in `snapshot`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::snapshot::{build_snapshot, check_posted, hex, snapshot_of, snapshot_response};
use super::{
    kv, mount_key, ns_key, random_hex, HealthState, LoggedRequest, RestoreRecord, SnapshotFault,
    State,
};

pub(super) type Body = Full<Bytes>;

pub(super) fn respond(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

pub(super) fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

pub(super) fn errors(status: u16, msgs: &[&str]) -> Response<Body> {
    respond(
        StatusCode::from_u16(status).expect("status"),
        json!({ "errors": msgs }),
    )
}

pub(super) fn envelope(data: Value) -> Value {
    json!({"request_id": format!("{:08x}-fake", rand::random::<u32>()), "lease_id": "", "renewable": false,
           "lease_duration": 0, "data": data, "wrap_info": null, "warnings": null, "auth": null, "mount_type": "kv"})
}

pub(super) fn ok(data: Value) -> Response<Body> {
    respond(StatusCode::OK, envelope(data))
}

pub(super) async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let r = crate::http_fake::FakeRequest::read(req).await;
    let q: BTreeMap<String, String> = crate::percent::form_pairs(&r.query).collect();
    let namespace = r.header("x-vault-namespace");
    let token = r.header("x-vault-token").or_else(|| {
        r.header("authorization")
            .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
    });
    let (method, raw_path, body) = (r.method, r.path, r.body);
    let mut s = state.lock().expect("vault state");
    s.requests.push(LoggedRequest {
        method: method.clone(),
        path: match q.is_empty() {
            true => raw_path.clone(),
            false => format!(
                "{raw_path}?{}",
                q.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            ),
        },
        namespace: namespace.clone(),
    });
    Ok(route(
        &mut s, &method, &raw_path, &q, namespace, token, &body,
    ))
}

fn route(
    s: &mut State,
    method: &str,
    raw_path: &str,
    q: &BTreeMap<String, String>,
    namespace: Option<String>,
    token: Option<String>,
    body: &[u8],
) -> Response<Body> {
    let Some(path) = raw_path.strip_prefix("/v1/") else {
        return errors(404, &[]);
    };
    let path = crate::percent::decode(path);
    if path == "sys/health" {
        return health(s, q);
    }
    if path == "sys/seal-status" {
        let sealed = matches!(s.health, HealthState::Sealed | HealthState::Uninitialized);
        return respond(
            StatusCode::OK,
            json!({"type": s.seal.0, "initialized": s.health != HealthState::Uninitialized, "sealed": sealed,
                   "t": s.seal.1, "n": s.seal.2, "progress": 0, "nonce": "", "version": s.version, "build_date": "2024-07-01T00:00:00Z",
                   "migration": false, "recovery_seal": s.seal.3, "storage_type": "raft"}),
        );
    }
    if matches!(s.health, HealthState::Sealed | HealthState::Uninitialized) {
        return errors(503, &["Vault is sealed"]);
    }
    let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // Logins need no token.
    if method == "POST" && path == "auth/approle/login" {
        let ok_creds = s
            .approle
            .as_ref()
            .is_some_and(|(r, sid)| json_body["role_id"] == *r && json_body["secret_id"] == *sid);
        if !ok_creds {
            return errors(400, &["invalid role or secret ID"]);
        }
        return login(s, "approle");
    }
    if method == "POST" && path == "auth/kubernetes/login" {
        let ok_creds = s
            .kubernetes
            .as_ref()
            .is_some_and(|(r, jwt)| json_body["role"] == *r && json_body["jwt"] == *jwt);
        if !ok_creds {
            return errors(403, &["permission denied"]);
        }
        return login(s, "kubernetes");
    }
    if !token.as_ref().is_some_and(|t| s.tokens.contains(t)) {
        return errors(403, &["permission denied"]);
    }
    if path == "auth/token/lookup-self" {
        return ok(json!({"policies": ["backup"], "ttl": 3600, "renewable": true}));
    }
    if path == "sys/storage/raft/snapshot" && method == "GET" {
        return match s.snapshot_fault {
            SnapshotFault::NotRaft => errors(400, &["raft storage is not in use"]),
            SnapshotFault::None => snapshot_response(snapshot_of(s)),
            SnapshotFault::Truncated => {
                let full = snapshot_of(s);
                snapshot_response(full.slice(..full.len() * 6 / 10))
            }
            SnapshotFault::EmptySealed => {
                let key = s.seal_key.clone();
                snapshot_response(Bytes::from(build_snapshot(s.snapshot_size, &key, true)))
            }
        };
    }
    if (path == "sys/storage/raft/snapshot" || path == "sys/storage/raft/snapshot-force")
        && method == "POST"
    {
        let force = path.ends_with("-force");
        return match check_posted(body, &s.seal_key) {
            Err(e) => errors(400, &[&format!("failed to read snapshot file: {e}")]),
            Ok(false) if !force => errors(
                400,
                &["could not verify hash file, possibly the snapshot is using a different set of unseal keys; use the snapshot-force API to bypass this check"],
            ),
            Ok(_) => {
                s.restores.push(RestoreRecord {
                    force,
                    size: body.len(),
                    sha256: hex(&Sha256::digest(body)),
                });
                no_content()
            }
        };
    }
    let ns = ns_key(namespace.as_deref().unwrap_or_default());
    if path == "sys/mounts" && method == "GET" && s.deny_mount_table {
        return errors(403, &["1 error occurred:\n\t* permission denied\n\n"]);
    }
    if path == "sys/mounts" && method == "GET" {
        let Some(mounts) = s.namespaces.get(&ns) else {
            return errors(404, &[]);
        };
        let mut table = Map::new();
        for (p, m) in mounts {
            table.insert(p.clone(), mount_entry(p, m));
        }
        table.insert("sys/".into(), json!({"type": "system", "options": null}));
        table.insert(
            "cubbyhole/".into(),
            json!({"type": "cubbyhole", "options": null}),
        );
        let mut env = envelope(Value::Object(table.clone()));
        for (k, v) in table {
            env[k] = v;
        }
        return respond(StatusCode::OK, env);
    }
    if let Some(m) = path.strip_prefix("sys/internal/ui/mounts/") {
        let key = mount_key(m);
        return match s.namespaces.get(&ns).and_then(|n| n.get(&key)) {
            Some(mt) => ok(json!({"type": "kv", "path": key, "options": kv::mount_options(mt)})),
            None => errors(400, &[&format!("preflight capability check returned 403, please ensure client's policies grant access to path \"{key}\"")]),
        };
    }
    if let Some(m) = path.strip_prefix("sys/mounts/") {
        return mount_call(s, &ns, method, m, &json_body);
    }
    let list = method == "LIST" || (method == "GET" && q.get("list").is_some_and(|v| v == "true"));
    kv::route(s, &ns, method, &path, list, q, &json_body)
}

/// Paths Vault mounts itself: nothing may be enabled there.
const RESERVED_MOUNTS: [&str; 4] = ["sys/", "auth/", "cubbyhole/", "identity/"];

/// A mount's entry in `sys/mounts`.
fn mount_entry(path: &str, m: &kv::Mount) -> Value {
    json!({"type": "kv", "options": kv::mount_options(m),
           "accessor": format!("kv_{:08x}", path.len()), "description": m.description, "local": false,
           "seal_wrap": false, "config": {"default_lease_ttl": 0, "max_lease_ttl": 0}})
}

/// `sys/mounts/<path>`: enable (`POST`/`PUT` with `type` `kv`/`generic` and
/// `options.version`, or `kv-v1`/`kv-v2`), read (`GET`) or disable (`DELETE`) a KV engine in
/// namespace `ns`.
fn mount_call(s: &mut State, ns: &str, method: &str, path: &str, body: &Value) -> Response<Body> {
    let key = mount_key(path);
    let Some(mounts) = s.namespaces.get_mut(ns) else {
        return errors(404, &[]);
    };
    match method {
        "GET" => match mounts.get(&key) {
            Some(m) => ok(mount_entry(&key, m)),
            None => errors(400, &[&format!("No secret engine mount at {key}")]),
        },
        "DELETE" => {
            mounts.remove(&key);
            no_content()
        }
        "POST" | "PUT" => {
            let Some(ty) = body["type"].as_str() else {
                return errors(400, &["backend type must be specified as a string"]);
            };
            let mut options = body["options"].as_object().cloned().unwrap_or_default();
            let asked = match &options.get("version") {
                Some(Value::String(v)) => Some(v.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let version = match (ty, asked.as_deref()) {
                ("kv" | "generic", None | Some("1")) | ("kv-v1", _) => 1,
                ("kv" | "generic", Some("2")) | ("kv-v2", _) => 2,
                ("kv" | "generic", Some(v)) => {
                    return errors(
                        400,
                        &[&format!("invalid version {v:?}: only 1 and 2 exist")],
                    )
                }
                _ => return errors(400, &[&format!("plugin not found in the catalog: {ty}")]),
            };
            if ty.starts_with("kv-") || asked.is_some() {
                options.insert("version".into(), json!(version.to_string()));
            }
            let taken = RESERVED_MOUNTS
                .iter()
                .map(|r| r.to_string())
                .chain(mounts.keys().cloned())
                .find(|m| key.starts_with(m.as_str()) || m.starts_with(key.as_str()));
            if let Some(m) = taken {
                return errors(400, &[&format!("path is already in use at {m}")]);
            }
            mounts.insert(
                key,
                kv::Mount {
                    kv_version: version,
                    options: Some(options),
                    description: body["description"].as_str().unwrap_or_default().into(),
                    ..Default::default()
                },
            );
            no_content()
        }
        _ => errors(405, &["unsupported operation"]),
    }
}

fn login(s: &mut State, method: &str) -> Response<Body> {
    s.logins += 1;
    let t = format!("hvs.fakelogin{}", random_hex(24));
    s.tokens.insert(t.clone());
    respond(
        StatusCode::OK,
        json!({"request_id": "fake", "lease_id": "", "renewable": false, "lease_duration": 0, "data": null,
               "wrap_info": null, "warnings": null,
               "auth": {"client_token": t, "accessor": random_hex(24), "policies": ["backup"], "token_policies": ["backup"],
                        "metadata": {"method": method}, "lease_duration": 3600, "renewable": true}}),
    )
}

fn health(s: &State, q: &BTreeMap<String, String>) -> Response<Body> {
    let code = |k: &str, d: u16| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let status = match s.health {
        HealthState::Active => code("activecode", 200),
        HealthState::Standby if q.get("standbyok").is_some_and(|v| v == "true") => {
            code("activecode", 200)
        }
        HealthState::Standby => code("standbycode", 429),
        HealthState::Sealed => code("sealedcode", 503),
        HealthState::Uninitialized => code("uninitcode", 501),
    };
    respond(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        json!({"initialized": s.health != HealthState::Uninitialized,
               "sealed": matches!(s.health, HealthState::Sealed | HealthState::Uninitialized),
               "standby": s.health == HealthState::Standby, "performance_standby": false,
               "replication_dr_mode": "disabled", "replication_performance_mode": "disabled",
               "server_time_utc": 1_717_000_000, "version": s.version, "enterprise": false,
               "cluster_name": "vault-cluster-fake", "cluster_id": "2b1c0000-fake-4000-8000-000000000001",
               "echo_duration_ms": 0, "clock_skew_ms": 0}),
    )
}
