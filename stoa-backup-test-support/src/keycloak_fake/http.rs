//! The fake's HTTP API: token endpoint, admin routes, error bodies.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::partial_import::partial_import;
use super::realm::*;
use super::token::token;
use super::{new_id, Shared, MASK};

// ---------------------------------------------------------------------------------------
// HTTP

pub(super) type Body = Full<Bytes>;

pub(super) fn respond(status: u16, body: Option<&Value>) -> Response<Body> {
    let mut b = Response::builder().status(StatusCode::from_u16(status).expect("status"));
    let bytes = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(v).expect("json"))
        }
        None => Bytes::new(),
    };
    b.body(Full::new(bytes)).expect("response")
}

pub(super) fn error_body(status: u16) -> Value {
    match status {
        401 => json!({"error": "HTTP 401 Unauthorized"}),
        403 => json!({"error": "HTTP 403 Forbidden"}),
        404 => json!({"error": "Realm not found."}),
        409 => json!({"errorMessage": "Conflict detected. See logs for details"}),
        429 => json!({"error": "Too Many Requests"}),
        s if s >= 500 => {
            json!({"error": "unknown_error", "error_description": "For more on this error consult the server log."})
        }
        _ => json!({"errorMessage": "Bad request"}),
    }
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let r = crate::http_fake::FakeRequest::read(req).await;
    let auth = r.header("authorization");
    Ok(crate::http_fake::answer_logged(&shared.log, &r, || {
        route(
            &shared,
            &r.method,
            &r.path,
            &r.query,
            auth.as_deref(),
            &r.body,
        )
    }))
}

pub(super) fn injected(shared: &Shared, method: &str, path: &str) -> Option<Response<Body>> {
    crate::http_fake::injected_fault(&shared.faults, method, path, |status| {
        respond(status, Some(&error_body(status)))
    })
}

pub(super) fn route(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<&str>,
    body: &[u8],
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
    match (method, segs.as_slice()) {
        ("GET", ["health" | "health/ready"]) | ("GET", ["health", _]) => {
            return respond(200, Some(&json!({"status": "UP", "checks": []})))
        }
        ("POST", ["realms", realm, "protocol", "openid-connect", "token"]) => {
            return token(shared, realm, body)
        }
        ("GET", ["realms", realm]) => {
            let st = shared.state.lock().expect("state");
            return if st.realms.contains_key(*realm) {
                respond(
                    200,
                    Some(
                        &json!({"realm": realm, "public_key": "MIIB", "token-service": "", "account-service": "", "tokens-not-before": 0}),
                    ),
                )
            } else {
                respond(404, Some(&json!({"error": "Realm does not exist"})))
            };
        }
        _ => {}
    }
    if segs.first() != Some(&"admin") {
        return respond(
            404,
            Some(&json!({"error": "RESTEASY003210: Could not find resource"})),
        );
    }
    // Authentication of admin calls.
    {
        let mut st = shared.state.lock().expect("state");
        let token = auth.and_then(|a| a.strip_prefix("Bearer "));
        let valid = token
            .and_then(|t| st.tokens.get(t))
            .is_some_and(|exp| Instant::now() < *exp);
        if !valid {
            return respond(401, Some(&error_body(401)));
        }
        st.admin_calls += 1;
        if let Some(n) = st.revoke_every {
            if st.admin_calls.is_multiple_of(n) {
                st.tokens.clear();
            }
        }
    }
    admin(shared, method, &segs[1..], &q, body)
}

pub(super) fn not_found(what: &str) -> Response<Body> {
    respond(404, Some(&json!({"error": what})))
}

pub(super) fn admin(
    shared: &Shared,
    method: &str,
    segs: &[&str],
    q: &HashMap<String, String>,
    body: &[u8],
) -> Response<Body> {
    let mut st = shared.state.lock().expect("state");
    let parse = || serde_json::from_slice::<Value>(body).ok();
    match (method, segs) {
        ("GET", ["serverinfo"]) => respond(
            200,
            Some(&json!({"systemInfo": {"version": shared.opts.version, "serverTime": ""}})),
        ),
        ("GET", ["realms"]) => {
            let brief = q.get("briefRepresentation").map(String::as_str) == Some("true");
            let list: Vec<Value> = st
                .realms
                .values()
                .map(|r| {
                    if brief {
                        json!({"id": r.settings["id"], "realm": r.settings["realm"], "enabled": r.settings.get("enabled").cloned().unwrap_or(json!(true))})
                    } else {
                        Value::Object(r.settings.clone())
                    }
                })
                .collect();
            respond(200, Some(&json!(list)))
        }
        ("POST", ["realms"]) => {
            let Some(rep) = parse() else {
                return respond(400, Some(&json!({"errorMessage": "invalid JSON"})));
            };
            let name = match check_representation(&rep, true) {
                Ok(()) => rep["realm"].as_str().unwrap_or_default().to_string(),
                Err(e) => return respond(400, Some(&json!({"errorMessage": e}))),
            };
            if st.realms.contains_key(&name) {
                return respond(409, Some(&error_body(409)));
            }
            if rep.to_string().contains(MASK) {
                // Keycloak would store the literal mask; tests treat sending one as a bug.
                return respond(
                    400,
                    Some(&json!({"errorMessage": "masked value sent back"})),
                );
            }
            match import_realm(rep) {
                Ok(r) => {
                    st.realms.insert(name, r);
                    respond(201, None)
                }
                Err(e) => respond(400, Some(&json!({"errorMessage": e}))),
            }
        }
        (_, [_, realm, ..]) if !st.realms.contains_key(*realm) => not_found("Realm not found."),
        ("GET", ["realms", realm]) => respond(
            200,
            Some(&Value::Object(st.realms[*realm].settings.clone())),
        ),
        ("PUT", ["realms", realm]) => {
            let Some(Value::Object(m)) = parse() else {
                return respond(400, Some(&json!({"errorMessage": "invalid JSON"})));
            };
            let r = st.realms.get_mut(*realm).expect("checked");
            // Top-level settings only (contract §1.4): what the realm holds is left alone.
            for (k, v) in m {
                if !NOT_SETTINGS.contains(&k.as_str()) {
                    r.settings.insert(k, v);
                }
            }
            respond(204, None)
        }
        ("DELETE", ["realms", realm]) => {
            st.realms.remove(*realm);
            respond(204, None)
        }
        ("POST", ["realms", realm, "partial-export"]) => {
            let f = |k: &str| q.get(k).map(String::as_str) == Some("true");
            let r = &st.realms[*realm];
            respond(
                200,
                Some(&partial_export(
                    r,
                    f("exportClients"),
                    f("exportGroupsAndRoles"),
                )),
            )
        }
        ("POST", ["realms", realm, "partialImport"]) => {
            let Some(rep) = parse() else {
                return respond(400, Some(&json!({"errorMessage": "invalid JSON"})));
            };
            if let Err(e) = check_representation(&rep, false) {
                return respond(400, Some(&json!({"errorMessage": e})));
            }
            if rep.to_string().contains(MASK) {
                return respond(
                    400,
                    Some(&json!({"errorMessage": "masked value sent back"})),
                );
            }
            let realm = realm.to_string();
            let r = st.realms.get_mut(&realm).expect("checked");
            match partial_import(r, &realm, &rep) {
                Ok((new, result)) => {
                    *r = new;
                    respond(200, Some(&result))
                }
                Err(msg) => respond(409, Some(&json!({"errorMessage": msg}))),
            }
        }
        ("GET", ["realms", realm, "clients"]) => {
            let list: Vec<Value> = st.realms[*realm].clients.clone();
            respond(200, Some(&json!(list)))
        }
        ("GET", ["realms", realm, "roles"]) => {
            respond(200, Some(&json!(st.realms[*realm].realm_roles)))
        }
        ("GET", ["realms", realm, "groups"]) => {
            respond(200, Some(&json!(st.realms[*realm].groups)))
        }
        ("GET", ["realms", realm, "identity-provider", "instances"]) => {
            let mut idps = st.realms[*realm].idps.clone();
            for i in idps.iter_mut() {
                if i["config"].get("clientSecret").is_some() {
                    mask(&mut i["config"]["clientSecret"]);
                }
            }
            respond(200, Some(&json!(idps)))
        }
        ("GET", ["realms", realm, "users", "profile"]) => respond(
            200,
            Some(&user_profile(&st.realms[*realm]).unwrap_or_else(|| {
                json!({"attributes": [{"name": "username"}, {"name": "email"}, {"name": "firstName"}, {"name": "lastName"}], "groups": []})
            })),
        ),
        ("PUT", ["realms", realm, "users", "profile"]) => {
            let Some(v) = parse() else {
                return respond(400, Some(&json!({"errorMessage": "invalid JSON"})));
            };
            let r = st.realms.get_mut(*realm).expect("checked");
            let comps = r
                .settings
                .entry("components")
                .or_insert_with(|| json!({}));
            comps[PROFILE_TYPE] = json!([{"id": new_id(), "providerId": "declarative-user-profile",
                "subComponents": {}, "config": {"kc.user.profile.config": [v.to_string()]}}]);
            respond(200, Some(&v))
        }
        ("GET", ["realms", realm, "users", "count"]) => {
            let n = st.realms[*realm]
                .users
                .iter()
                .filter(|u| u.get("serviceAccountClientId").is_none())
                .count();
            respond(200, Some(&json!(n)))
        }
        ("GET", ["realms", realm, "users"]) => {
            let first: usize = q.get("first").and_then(|s| s.parse().ok()).unwrap_or(0);
            let max: usize = q.get("max").and_then(|s| s.parse().ok()).unwrap_or(100);
            let brief = q.get("briefRepresentation").map(String::as_str) == Some("true");
            let mut users: Vec<&Value> = st.realms[*realm]
                .users
                .iter()
                .filter(|u| u.get("serviceAccountClientId").is_none())
                .filter(|u| {
                    q.get("username")
                        .is_none_or(|n| u["username"].as_str() == Some(n.as_str()))
                })
                .collect();
            users.sort_by(|a, b| a["username"].as_str().cmp(&b["username"].as_str()));
            let page: Vec<Value> = users
                .into_iter()
                .skip(first)
                .take(max)
                .map(|u| user_view(u, brief))
                .collect();
            respond(200, Some(&json!(page)))
        }
        ("GET", ["realms", realm, "users", id, what]) => {
            let r = &st.realms[*realm];
            let Some(u) = r.users.iter().find(|u| u["id"].as_str() == Some(*id)) else {
                return not_found("User not found");
            };
            match *what {
                "groups" => {
                    let gs: Vec<Value> = u["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| find_group(&r.groups, p.as_str().unwrap_or("")))
                        .map(|g| json!({"id": g["id"], "name": g["name"], "path": g["path"], "subGroups": []}))
                        .collect();
                    respond(200, Some(&json!(gs)))
                }
                "role-mappings" => {
                    let realm_mappings: Vec<Value> = u["realmRoles"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|n| r.realm_roles.iter().find(|x| x["name"] == *n))
                        .map(|x| json!({"id": x["id"], "name": x["name"], "composite": false, "clientRole": false, "containerId": r.settings["id"]}))
                        .collect();
                    let mut client_mappings = Map::new();
                    if let Some(cr) = u["clientRoles"].as_object() {
                        for (c, names) in cr {
                            let roles = r.client_roles.get(c).cloned().unwrap_or_default();
                            let ms: Vec<Value> = names
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|n| roles.iter().find(|x| x["name"] == *n))
                                .map(|x| json!({"id": x["id"], "name": x["name"], "composite": false, "clientRole": true}))
                                .collect();
                            let cid = r
                                .clients
                                .iter()
                                .find(|x| x["clientId"].as_str() == Some(c))
                                .map(|x| x["id"].clone())
                                .unwrap_or(Value::Null);
                            if !ms.is_empty() {
                                client_mappings.insert(
                                    c.clone(),
                                    json!({"id": cid, "client": c, "mappings": ms}),
                                );
                            }
                        }
                    }
                    let mut out = json!({"realmMappings": realm_mappings});
                    if !client_mappings.is_empty() {
                        out["clientMappings"] = Value::Object(client_mappings);
                    }
                    respond(200, Some(&out))
                }
                "federated-identity" => respond(
                    200,
                    Some(&u.get("federatedIdentities").cloned().unwrap_or(json!([]))),
                ),
                "credentials" => {
                    let cs: Vec<Value> = u["credentials"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| json!({"id": c["id"], "type": c["type"], "createdDate": c["createdDate"], "userLabel": c.get("userLabel").cloned().unwrap_or(Value::Null)}))
                        .collect();
                    respond(200, Some(&json!(cs)))
                }
                _ => not_found("RESTEASY003210: Could not find resource"),
            }
        }
        _ => respond(
            404,
            Some(&json!({"error": "RESTEASY003210: Could not find resource"})),
        ),
    }
}
