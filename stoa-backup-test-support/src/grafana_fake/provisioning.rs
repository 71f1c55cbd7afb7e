//! The fake's datasources, library elements and alerting provisioning routes.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::http::{msg, page, redact_settings, respond, Body};
use super::State;
use hyper::Response;

/// Routes of datasources, library elements and alerting provisioning (after folders and
/// dashboards); `Not found` for anything else. Alerting writes store `provenance` (`api`,
/// or empty when the request carried `X-Disable-Provenance: true`).
pub(super) fn route(
    st: &mut State,
    method: &str,
    segs: &[&str],
    q: &HashMap<String, String>,
    parsed: Option<Value>,
    provenance: &str,
) -> Response<Body> {
    match (method, segs) {
        ("GET", ["api", "datasources"]) => {
            let list: Vec<Value> = st
                .datasources
                .iter()
                .map(|d| {
                    let mut d = d.clone();
                    if let Some(m) = d.as_object_mut() {
                        m.remove("secureJsonData");
                        m.remove("version");
                    }
                    d
                })
                .collect();
            respond(200, &json!(list))
        }
        ("GET", ["api", "datasources", "uid", uid]) => {
            match st
                .datasources
                .iter()
                .find(|d| d["uid"].as_str() == Some(*uid))
            {
                Some(d) => {
                    let mut d = d.clone();
                    let fields: Map<String, Value> = d["secureJsonData"]
                        .as_object()
                        .map(|m| m.keys().map(|k| (k.clone(), json!(true))).collect())
                        .unwrap_or_default();
                    d.as_object_mut().map(|m| m.remove("secureJsonData"));
                    d["secureJsonFields"] = Value::Object(fields);
                    respond(200, &d)
                }
                None => msg(404, "Data source not found"),
            }
        }
        ("POST", ["api", "datasources"]) => {
            let Some(mut v) = parsed else {
                return msg(400, "bad request data");
            };
            if st.datasources.iter().any(|d| d["name"] == v["name"]) {
                return msg(409, "data source with the same name already exists");
            }
            if st.datasources.iter().any(|d| d["uid"] == v["uid"]) {
                return msg(409, "data source with the same uid already exists");
            }
            let id = st.id();
            v["id"] = json!(id);
            v["orgId"] = json!(1);
            v["version"] = json!(1);
            v.as_object_mut()
                .map(|m| m.entry("readOnly").or_insert(json!(false)));
            st.datasources.push(v.clone());
            v.as_object_mut().map(|m| m.remove("secureJsonData"));
            respond(
                200,
                &json!({"datasource": v, "id": id, "message": "Datasource added", "name": v["name"]}),
            )
        }
        ("PUT", ["api", "datasources", "uid", uid]) => {
            let Some(mut v) = parsed else {
                return msg(400, "bad request data");
            };
            let Some(d) = st
                .datasources
                .iter_mut()
                .find(|d| d["uid"].as_str() == Some(*uid))
            else {
                return msg(404, "Data source not found");
            };
            if d["readOnly"].as_bool() == Some(true) {
                return msg(403, "Cannot update read-only data source");
            }
            let mut secure = d["secureJsonData"].as_object().cloned().unwrap_or_default();
            if let Some(s) = v.get("secureJsonData").and_then(Value::as_object) {
                secure.extend(s.clone());
            }
            v["id"] = d["id"].clone();
            v["orgId"] = json!(1);
            v["version"] = json!(d["version"].as_u64().unwrap_or(1) + 1);
            v["secureJsonData"] = Value::Object(secure);
            *d = v.clone();
            v.as_object_mut().map(|m| m.remove("secureJsonData"));
            respond(
                200,
                &json!({"datasource": v, "id": v["id"], "message": "Datasource updated", "name": v["name"]}),
            )
        }
        ("GET", ["api", "library-elements"]) => {
            let all: Vec<Value> = st.library.values().cloned().collect();
            let per: usize = q.get("perPage").and_then(|s| s.parse().ok()).unwrap_or(100);
            let p: usize = q.get("page").and_then(|s| s.parse().ok()).unwrap_or(1);
            let elements = page(&all, q, "perPage", 100);
            respond(
                200,
                &json!({"result": {"totalCount": all.len(), "page": p, "perPage": per, "elements": elements}}),
            )
        }
        ("GET", ["api", "library-elements", uid]) => match st.library.get(*uid) {
            Some(e) => respond(200, &json!({"result": e})),
            None => msg(404, "library element could not be found"),
        },
        ("POST", ["api", "library-elements"]) => {
            let Some(mut v) = parsed else {
                return msg(400, "bad request data");
            };
            let uid = v["uid"].as_str().unwrap_or("").to_string();
            if st.library.contains_key(&uid)
                || st
                    .library
                    .values()
                    .any(|e| e["name"] == v["name"] && e["folderUid"] == v["folderUid"])
            {
                return msg(400, "library element with that name or UID already exists");
            }
            let id = st.id();
            v["id"] = json!(id);
            v["version"] = json!(1);
            v["type"] = v["model"]["type"].clone();
            st.library.insert(uid, v.clone());
            respond(200, &json!({"result": v}))
        }
        ("PATCH", ["api", "library-elements", uid]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let Some(e) = st.library.get_mut(*uid) else {
                return msg(404, "library element could not be found");
            };
            if v["version"] != e["version"] {
                return msg(412, "the library element has been changed by someone else");
            }
            for k in ["name", "model", "folderUid", "kind"] {
                if let Some(x) = v.get(k) {
                    e[k] = x.clone();
                }
            }
            e["version"] = json!(e["version"].as_u64().unwrap_or(1) + 1);
            let e = e.clone();
            respond(200, &json!({"result": e}))
        }
        ("GET", ["api", "v1", "provisioning", "alert-rules"]) => {
            respond(200, &json!(st.rules.values().collect::<Vec<_>>()))
        }
        ("GET", ["api", "v1", "provisioning", "alert-rules", uid]) => match st.rules.get(*uid) {
            Some(r) => respond(200, r),
            None => respond(404, &Value::Null),
        },
        ("POST", ["api", "v1", "provisioning", "alert-rules"])
        | ("PUT", ["api", "v1", "provisioning", "alert-rules", _]) => {
            let Some(mut v) = parsed.filter(Value::is_object) else {
                return msg(400, "bad request data");
            };
            let uid = match segs.get(4) {
                Some(u) => u.to_string(),
                None => v["uid"].as_str().unwrap_or("").to_string(),
            };
            let folder = v["folderUID"].as_str().unwrap_or("");
            if !st.folders.contains_key(folder) {
                return msg(400, "invalid alert rule: folder does not exist");
            }
            let exists = st.rules.contains_key(&uid);
            if method == "POST" && exists {
                return msg(409, "a conflicting alert rule is found: rule UID under the same organisation should be unique");
            }
            if method == "PUT" && !exists {
                return respond(404, &Value::Null);
            }
            v["uid"] = json!(uid);
            v["orgID"] = json!(1);
            v["updated"] = json!("2026-01-01T00:00:00Z");
            v["provenance"] = json!(provenance);
            st.rules.insert(uid, v.clone());
            respond(if method == "POST" { 201 } else { 200 }, &v)
        }
        ("GET", ["api", "v1", "provisioning", "contact-points"]) => {
            let list: Vec<Value> = st.contact_points.iter().map(redact_settings).collect();
            respond(200, &json!(list))
        }
        ("POST", ["api", "v1", "provisioning", "contact-points"]) => {
            let Some(v) = parsed.filter(Value::is_object) else {
                return msg(400, "bad request data");
            };
            if v.to_string().contains("[REDACTED]") {
                return msg(400, "redacted value sent back");
            }
            if st.contact_points.iter().any(|c| c["uid"] == v["uid"]) {
                return msg(409, "contact point with the same uid already exists");
            }
            let mut v = v;
            v["provenance"] = json!(provenance);
            st.contact_points.push(v.clone());
            respond(202, &redact_settings(&v))
        }
        ("PUT", ["api", "v1", "provisioning", "contact-points", uid]) => {
            let Some(v) = parsed.filter(Value::is_object) else {
                return msg(400, "bad request data");
            };
            if v.to_string().contains("[REDACTED]") {
                return msg(400, "redacted value sent back");
            }
            let Some(c) = st
                .contact_points
                .iter_mut()
                .find(|c| c["uid"].as_str() == Some(*uid))
            else {
                return msg(404, "contact point not found");
            };
            *c = v;
            c["provenance"] = json!(provenance);
            respond(202, &json!({"message": "contactpoint updated"}))
        }
        ("GET", ["api", "v1", "provisioning", "policies"]) => respond(200, &st.policies),
        ("PUT", ["api", "v1", "provisioning", "policies"]) => {
            let Some(v) = parsed.filter(Value::is_object) else {
                return msg(400, "bad request data");
            };
            let names: Vec<&str> = st
                .contact_points
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            let mut receivers = vec![v["receiver"].as_str().unwrap_or("")];
            for r in v["routes"].as_array().into_iter().flatten() {
                receivers.push(r["receiver"].as_str().unwrap_or(""));
            }
            if let Some(missing) = receivers
                .iter()
                .find(|r| !r.is_empty() && !names.contains(r))
            {
                return msg(
                    400,
                    &format!("invalid object specification: receiver '{missing}' does not exist"),
                );
            }
            st.policies = v;
            st.policies["provenance"] = json!(provenance);
            respond(202, &json!({"message": "policies updated"}))
        }
        ("GET", ["api", "v1", "provisioning", "templates"]) => {
            respond(200, &json!(st.templates.values().collect::<Vec<_>>()))
        }
        ("PUT", ["api", "v1", "provisioning", "templates", name]) => {
            let Some(v) = parsed else {
                return msg(400, "bad request data");
            };
            let t = json!({"name": name, "template": v["template"], "provenance": provenance});
            st.templates.insert(name.to_string(), t.clone());
            respond(202, &t)
        }
        _ => msg(404, "Not found"),
    }
}
