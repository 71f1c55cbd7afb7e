//! The token endpoint (`POST /realms/{realm}/protocol/openid-connect/token`, contract §1.1):
//! client credentials, password and refresh-token grants.
//!
//! Client credentials are granted to the fake's admin client (options `client_id` /
//! `client_secret`) in `master`, and to the confidential clients a realm holds with their
//! secret (a realm loaded, created or imported: a restored realm's clients log in). Only
//! admin-client and password-grant tokens authenticate admin calls; a realm client's token
//! is a login, not an admin identity. Refusals follow Keycloak: unknown client or wrong
//! secret 401 `invalid_client`; a public or bearer-only client, or one without service
//! accounts, 400 `unauthorized_client`; a realm that does not exist 404.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hyper::Response;
use serde_json::{json, Value};

use super::http::{respond, Body};
use super::{new_id, Realm, Shared};

/// Who a client-credentials grant is for.
enum Grantee {
    /// The fake's admin client: its token authenticates admin calls.
    Admin,
    /// A client of the realm: its token is a login only.
    RealmClient,
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response<Body> {
    respond(
        status,
        Some(&json!({"error": error, "error_description": description})),
    )
}

fn invalid_client() -> Response<Body> {
    oauth_error(
        401,
        "invalid_client",
        "Invalid client or Invalid client credentials",
    )
}

/// Checks a client-credentials grant for `client_id` / `secret` against the clients `realm`
/// holds, as Keycloak authenticates the client and then checks the grant: the refusal, or
/// `None` when the grant is allowed.
fn realm_client_refusal(realm: &Realm, client_id: &str, secret: &str) -> Option<Response<Body>> {
    let Some(c) = realm
        .clients
        .iter()
        .find(|c| c["clientId"].as_str() == Some(client_id))
    else {
        return Some(invalid_client());
    };
    let flag = |k: &str| c[k].as_bool().unwrap_or(false);
    if c["enabled"].as_bool() == Some(false) {
        return Some(invalid_client());
    }
    if flag("bearerOnly") {
        return Some(oauth_error(
            400,
            "unauthorized_client",
            "Bearer-only client not allowed to retrieve service account",
        ));
    }
    if flag("publicClient") {
        return Some(oauth_error(
            400,
            "unauthorized_client",
            "Public client not allowed to retrieve service account",
        ));
    }
    if c["secret"].as_str() != Some(secret) || secret.is_empty() {
        return Some(invalid_client());
    }
    if !flag("serviceAccountsEnabled") {
        return Some(oauth_error(
            400,
            "unauthorized_client",
            "Client not enabled to retrieve service account",
        ));
    }
    None
}

pub(super) fn token(shared: &Shared, realm: &str, body: &[u8]) -> Response<Body> {
    let form: HashMap<String, String> =
        crate::percent::form_pairs(&String::from_utf8_lossy(body)).collect();
    let o = &shared.opts;
    let mut st = shared.state.lock().expect("state");
    let Some(held) = st.realms.get(realm) else {
        return respond(404, Some(&json!({"error": "Realm does not exist"})));
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let (grantee, with_refresh) = match get("grant_type") {
        "client_credentials" => {
            let (id, secret) = (get("client_id"), get("client_secret"));
            if realm == "master" && id == o.client_id && secret == o.client_secret {
                (Grantee::Admin, false)
            } else if let Some(refused) = realm_client_refusal(held, id, secret) {
                return refused;
            } else {
                (Grantee::RealmClient, false)
            }
        }
        "password" => {
            if get("client_id") != "admin-cli" {
                return invalid_client();
            }
            if get("username") != o.admin_user || get("password") != o.admin_password {
                return oauth_error(401, "invalid_grant", "Invalid user credentials");
            }
            (Grantee::Admin, true)
        }
        "refresh_token" => {
            let ok = st
                .refresh
                .get(get("refresh_token"))
                .is_some_and(|e| Instant::now() < *e);
            if !ok {
                return oauth_error(400, "invalid_grant", "Invalid refresh token");
            }
            (Grantee::Admin, true)
        }
        _ => {
            return oauth_error(400, "unsupported_grant_type", "Unsupported grant_type");
        }
    };
    let access = format!("eyJ.{}", new_id());
    if let Grantee::Admin = grantee {
        st.tokens
            .insert(access.clone(), Instant::now() + o.token_lifespan);
    }
    st.issued.push(access.clone());
    let mut resp: Value = json!({
        "access_token": access, "expires_in": o.token_lifespan.as_secs(),
        "refresh_expires_in": 0, "token_type": "Bearer", "not-before-policy": 0,
        "scope": "profile email",
    });
    if with_refresh {
        let r = format!("eyR.{}", new_id());
        st.issued.push(r.clone());
        st.refresh
            .insert(r.clone(), Instant::now() + Duration::from_secs(1800));
        resp["refresh_token"] = json!(r);
        resp["refresh_expires_in"] = json!(1800);
    }
    respond(200, Some(&resp))
}

#[cfg(test)]
mod tests {
    use super::super::FakeKeycloak;
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes()
    }

    async fn grant(kc: &FakeKeycloak, realm: &str, id: &str, secret: &str) -> (u16, Value) {
        let body = form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ]);
        let r = token(&kc.shared, realm, &body);
        let status = r.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(r.into_body())
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&bytes).expect("JSON body"))
    }

    #[tokio::test]
    async fn realm_clients_log_in_with_their_secret_only() {
        let kc = FakeKeycloak::start().await;
        let (s, v) = grant(&kc, "stoa", "control-plane-api", "api-dev-secret").await;
        assert_eq!(s, 200, "{v}");
        let access = v["access_token"].as_str().unwrap().to_string();
        // A realm client's token is a login, not an admin identity.
        assert!(!kc.shared.state.lock().unwrap().tokens.contains_key(&access));
        assert!(kc.issued_tokens().contains(&access));

        let (s, v) = grant(&kc, "stoa", "control-plane-api", "wrong").await;
        assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
        let (s, v) = grant(&kc, "stoa", "no-such-client", "x").await;
        assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
        let (s, v) = grant(&kc, "stoa", "control-plane-ui", "").await;
        assert_eq!((s, v["error"].as_str()), (400, Some("unauthorized_client")));
        // Confidential, but without service accounts.
        let (s, v) = grant(
            &kc,
            "stoa",
            "stoa-observability",
            "observability-dev-secret",
        )
        .await;
        assert_eq!((s, v["error"].as_str()), (400, Some("unauthorized_client")));
        let (s, v) = grant(&kc, "gone", "control-plane-api", "api-dev-secret").await;
        assert_eq!(
            (s, v["error"].as_str()),
            (404, Some("Realm does not exist"))
        );
        // The admin client is master's: it does not log in to another realm.
        let (id, secret) = kc.client_credentials();
        assert_eq!(grant(&kc, "stoa", &id, &secret).await.0, 401);
        assert_eq!(grant(&kc, "master", &id, &secret).await.0, 200);
    }

    #[tokio::test]
    async fn a_realm_created_later_issues_tokens_to_its_clients() {
        let kc = FakeKeycloak::start_empty().await;
        assert_eq!(
            grant(&kc, "stoa", "control-plane-api", "api-dev-secret")
                .await
                .0,
            404
        );
        kc.load_realm(super::super::fixture_realm());
        assert_eq!(
            kc.client_secret("stoa", "control-plane-api").as_deref(),
            Some("api-dev-secret")
        );
        assert_eq!(
            grant(&kc, "stoa", "control-plane-api", "api-dev-secret")
                .await
                .0,
            200
        );
        // A confidential client stored without a secret gets one, and logs in with it.
        let mut realm = super::super::fixture_realm();
        realm["realm"] = json!("other");
        for c in realm["clients"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("secret");
        }
        kc.load_realm(realm);
        let secret = kc.client_secret("other", "control-plane-api").unwrap();
        assert_eq!(
            grant(&kc, "other", "control-plane-api", &secret).await.0,
            200
        );
        assert_eq!(
            grant(&kc, "other", "control-plane-api", "api-dev-secret")
                .await
                .0,
            401
        );
    }
}
