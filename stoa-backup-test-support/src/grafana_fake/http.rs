//! The fake's HTTP plumbing (auth, errors, paging, faults) and its search, folder and
//! dashboard routes.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::{provisioning, Shared, State, BASIC, SECURE_SETTINGS, TOKEN};

// ---------------------------------------------------------------------------------------

pub(super) type Body = Full<Bytes>;

pub(super) fn respond(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("json"),
        )))
        .expect("response")
}

pub(super) fn msg(status: u16, m: &str) -> Response<Body> {
    respond(status, &json!({"message": m}))
}

fn authorized(auth: Option<&str>) -> bool {
    match auth {
        Some(a) if a.strip_prefix("Bearer ") == Some(TOKEN) => true,
        Some(a) => a.strip_prefix("Basic ").is_some_and(|b| {
            decode_b64(b).as_deref() == Some(format!("{}:{}", BASIC.0, BASIC.1).as_bytes())
        }),
        None => false,
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = A.iter().position(|x| *x == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let r = crate::http_fake::FakeRequest::read(req).await;
    let auth = r.header("authorization");
    // Alerting objects written without the header are locked in the UI (provenance `api`).
    let provenance = match r.header("x-disable-provenance").as_deref() {
        Some("true") => "",
        _ => "api",
    };
    Ok(crate::http_fake::answer_logged(&shared.log, &r, || {
        route(
            &shared,
            &r.method,
            &r.path,
            &r.query,
            auth.as_deref(),
            &r.body,
            provenance,
        )
    }))
}

fn injected(shared: &Shared, method: &str, path: &str) -> Option<Response<Body>> {
    crate::http_fake::injected_fault(&shared.faults, method, path, |status| {
        let text = match status {
            401 => "Unauthorized",
            403 => "You'll need additional permissions to perform this action",
            404 => "Not found",
            409 => "Conflict",
            412 => "The dashboard has been changed by someone else",
            429 => "Too many requests",
            _ => "Internal server error",
        };
        msg(status, text)
    })
}

pub(super) fn page<T: Clone>(
    items: &[T],
    q: &HashMap<String, String>,
    limit_key: &str,
    default: usize,
) -> Vec<T> {
    let limit: usize = q
        .get(limit_key)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        .clamp(1, 5000);
    let page: usize = q
        .get("page")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    items
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .cloned()
        .collect()
}

fn folder_view(f: &Value, all: &BTreeMap<String, Value>) -> Value {
    let mut v = f.clone();
    let uid = f["uid"].as_str().unwrap_or("");
    v["url"] = json!(format!("/dashboards/f/{uid}/"));
    let mut parents = Vec::new();
    let mut cur = f["parentUid"].as_str();
    while let Some(p) = cur {
        let Some(pf) = all.get(p) else { break };
        parents.insert(0, json!({"uid": p, "title": pf["title"]}));
        cur = pf["parentUid"].as_str();
    }
    if !parents.is_empty() {
        v["parents"] = json!(parents);
    }
    v
}

pub(super) fn redact_settings(c: &Value) -> Value {
    let mut c = c.clone();
    if let Some(s) = c.get_mut("settings").and_then(Value::as_object_mut) {
        for k in SECURE_SETTINGS {
            if s.contains_key(k) {
                s.insert(k.into(), json!("[REDACTED]"));
            }
        }
    }
    c
}

fn route(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<&str>,
    body: &[u8],
    provenance: &str,
) -> Response<Body> {
    if let Some(r) = injected(shared, method, path) {
        return r;
    }
    let q: HashMap<String, String> = crate::percent::form_pairs(query).collect();
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(crate::percent::decode_form)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if method == "GET" && segs == ["api", "health"] {
        return respond(
            200,
            &json!({"commit": "5c4f1e2", "database": "ok", "version": shared.version}),
        );
    }
    if !authorized(auth) {
        return msg(401, "Unauthorized");
    }
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let mut st = shared.state.lock().expect("state");
    let st = &mut *st;
    match (method, segs.as_slice()) {
        ("GET", ["api", "search"]) => {
            let ty = q.get("type").map(String::as_str).unwrap_or("dash-db");
            let hits: Vec<Value> = if ty == "dash-folder" {
                st.folders
                    .values()
                    .map(|f| json!({"id": f["id"], "uid": f["uid"], "title": f["title"], "type": "dash-folder"}))
                    .collect()
            } else {
                st.dashboards
                    .values()
                    .map(|d| {
                        let uid = d["dashboard"]["uid"].clone();
                        let mut h = json!({"id": d["dashboard"]["id"], "uid": uid, "title": d["dashboard"]["title"],
                                           "type": "dash-db", "tags": d["dashboard"]["tags"], "isStarred": false});
                        if let Some(f) = d["folderUid"].as_str().filter(|f| !f.is_empty()) {
                            h["folderUid"] = json!(f);
                            h["folderTitle"] = st.folders.get(f).map(|x| x["title"].clone()).unwrap_or(Value::Null);
                        }
                        h
                    })
                    .collect()
            };
            respond(200, &json!(page(&hits, &q, "limit", 1000)))
        }
        ("GET", ["api", "folders"]) => {
            let parent = q.get("parentUid").map(String::as_str).unwrap_or("");
            let list: Vec<Value> = st
                .folders
                .values()
                .filter(|f| f["parentUid"].as_str().unwrap_or("") == parent)
                .map(|f| json!({"id": f["id"], "uid": f["uid"], "title": f["title"]}))
                .collect();
            let mut out = page(&list, &q, "limit", 1000);
            if parent.is_empty() && q.get("page").is_none_or(|p| p == "1") {
                out.push(json!({"id": 0, "uid": "sharedwithme", "title": "Shared with me"}));
            }
            respond(200, &json!(out))
        }
        ("GET", ["api", "folders", uid]) => match st.folders.get(*uid) {
            Some(f) => respond(200, &folder_view(f, &st.folders)),
            None => msg(404, "folder not found"),
        },
        ("POST", ["api", "folders"]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let uid = v["uid"].as_str().unwrap_or("").to_string();
            if uid.is_empty() {
                return msg(400, "uid required");
            }
            if st.folders.contains_key(&uid) {
                return msg(409, "a folder with the same uid already exists");
            }
            let parent = v["parentUid"].as_str().filter(|p| !p.is_empty());
            if let Some(p) = parent {
                if !st.folders.contains_key(p) {
                    return msg(404, "parent folder not found");
                }
            }
            let id = st.id();
            let mut f = json!({"id": id, "uid": uid, "title": v["title"], "version": 1});
            if let Some(p) = parent {
                f["parentUid"] = json!(p);
            }
            st.folders.insert(uid, f.clone());
            respond(200, &folder_view(&f, &st.folders))
        }
        ("PUT", ["api", "folders", uid]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let Some(f) = st.folders.get_mut(*uid) else {
                return msg(404, "folder not found");
            };
            if v["overwrite"].as_bool() != Some(true) && v["version"] != f["version"] {
                return respond(
                    412,
                    &json!({"status": "version-mismatch", "message": "the folder has been changed by someone else"}),
                );
            }
            f["title"] = v["title"].clone();
            f["version"] = json!(f["version"].as_u64().unwrap_or(1) + 1);
            let f = f.clone();
            respond(200, &folder_view(&f, &st.folders))
        }
        ("POST", ["api", "folders", uid, "move"]) => {
            let p = parsed
                .as_ref()
                .and_then(|v| v["parentUid"].as_str())
                .unwrap_or("")
                .to_string();
            if !p.is_empty() && !st.folders.contains_key(&p) {
                return msg(404, "parent folder not found");
            }
            let Some(f) = st.folders.get_mut(*uid) else {
                return msg(404, "folder not found");
            };
            if p.is_empty() {
                f.as_object_mut().map(|m| m.remove("parentUid"));
            } else {
                f["parentUid"] = json!(p);
            }
            let f = f.clone();
            respond(200, &folder_view(&f, &st.folders))
        }
        ("GET", ["api", "dashboards", "uid", uid]) => match st.dashboards.get(*uid) {
            Some(d) => {
                let folder = d["folderUid"].as_str().unwrap_or("");
                let mut meta = json!({"version": d["dashboard"]["version"], "provisioned": d["provisioned"],
                                      "slug": uid, "url": format!("/d/{uid}/{uid}"),
                                      "created": "2025-04-01T10:00:00Z", "updated": "2025-06-01T09:00:00Z"});
                if !folder.is_empty() {
                    meta["folderUid"] = json!(folder);
                    meta["folderTitle"] = st
                        .folders
                        .get(folder)
                        .map(|f| f["title"].clone())
                        .unwrap_or(Value::Null);
                }
                respond(200, &json!({"dashboard": d["dashboard"], "meta": meta}))
            }
            None => msg(404, "Dashboard not found"),
        },
        ("POST", ["api", "dashboards", "db"]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let mut dash = v["dashboard"].clone();
            let Some(uid) = dash["uid"].as_str().map(str::to_string) else {
                return msg(400, "dashboard uid required");
            };
            let folder = v["folderUid"].as_str().unwrap_or("").to_string();
            if !folder.is_empty() && !st.folders.contains_key(&folder) {
                return msg(400, "folder not found");
            }
            let overwrite = v["overwrite"].as_bool() == Some(true);
            let existing = st.dashboards.get(&uid).cloned();
            if let Some(id) = dash["id"].as_u64() {
                let same = existing
                    .as_ref()
                    .is_some_and(|e| e["dashboard"]["id"].as_u64() == Some(id));
                if !same {
                    return msg(404, "Dashboard not found");
                }
            }
            if let Some(e) = &existing {
                if e["provisioned"].as_bool() == Some(true) {
                    return msg(400, "Cannot save provisioned dashboard");
                }
            }
            if !overwrite {
                if let Some(refusal) = save_refusal(st, &dash, &folder, existing.as_ref()) {
                    return respond(412, &refusal);
                }
            }
            let id = match &existing {
                Some(e) => e["dashboard"]["id"].as_u64().unwrap_or(0),
                None => st.id(),
            };
            let version = existing
                .as_ref()
                .and_then(|e| e["dashboard"]["version"].as_u64())
                .map_or(1, |v| v + 1);
            dash["id"] = json!(id);
            dash["version"] = json!(version);
            st.dashboards.insert(
                uid.clone(),
                json!({"dashboard": dash, "folderUid": folder, "provisioned": false}),
            );
            respond(
                200,
                &json!({"id": id, "uid": uid, "url": format!("/d/{uid}/{uid}"), "status": "success", "version": version, "slug": uid}),
            )
        }
        _ => provisioning::route(st, method, &segs, &q, parsed, provenance),
    }
}

/// The 412 body Grafana answers a save without `overwrite` with (contract §2.2), if any: a
/// new dashboard (no `id`) whose uid is taken, an update from another version than the
/// stored one, or another dashboard of the same title in the folder.
fn save_refusal(st: &State, dash: &Value, folder: &str, existing: Option<&Value>) -> Option<Value> {
    if let Some(e) = existing {
        if dash["id"].as_u64().is_none() {
            return Some(
                json!({"status": "name-exists", "message": "A dashboard with the same uid already exists"}),
            );
        }
        if dash["version"] != e["dashboard"]["version"] {
            return Some(
                json!({"status": "version-mismatch", "message": "The dashboard has been changed by someone else"}),
            );
        }
    }
    let title = dash["title"].as_str().unwrap_or_default().to_lowercase();
    let clash = st.dashboards.values().any(|d| {
        d["dashboard"]["uid"] != dash["uid"]
            && d["folderUid"].as_str().unwrap_or_default() == folder
            && d["dashboard"]["title"].as_str().map(str::to_lowercase) == Some(title.clone())
    });
    clash.then(|| {
        json!({"status": "name-exists", "message": "A dashboard with the same name in the folder already exists"})
    })
}
