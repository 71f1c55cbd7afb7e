//! The fake Keycloak held to the contract where the restorer depends on it, and the
//! restorer's notes: what partialImport and the settings update leave alone, and how each
//! kind of masked value is set again.

use serde_json::{json, Value};
use stoa_backup::core::{ExistingDataPolicy, RestoreOptions};
use stoa_backup::providers::keycloak::KeycloakRestorer;
use stoa_backup_test_support::keycloak_fake::FakeKeycloak;

use super::{backup, conn, rich_realm, source};

/// One admin call with a fresh token: the status and the JSON body (`Null` when empty).
async fn admin(kc: &FakeKeycloak, method: &str, path: &str, body: Value) -> (u16, Value) {
    let http = reqwest::Client::new();
    let (id, secret) = kc.client_credentials();
    let token: Value = http
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            kc.url()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = http
        .request(method, format!("{}/admin/{path}", kc.url()))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A representation the server cannot take (no realm name, a user or group that is not an
/// object) gets the contract's 400 `{"errorMessage": …}`, never a dropped connection, and
/// the fake keeps serving. Through the restorer it is one 400, not retried.
#[tokio::test]
async fn a_bad_representation_gets_a_400_with_an_error_message() {
    let kc = FakeKeycloak::start().await;
    for body in [
        json!({"enabled": true}),
        json!({"realm": ""}),
        json!("stoa"),
        json!({"realm": "x", "users": ["alice"]}),
        json!({"realm": "x", "groups": [{"name": "g", "subGroups": ["s"]}]}),
        json!({"realm": "x", "clients": [7]}),
        json!({"realm": "x", "roles": {"realm": ["r"]}}),
        json!({"realm": "x", "roles": {"client": {"c": [null]}}}),
        json!({"realm": "x", "users": [{"username": "u", "credentials": ["pw"]}]}),
    ] {
        let (status, answer) = admin(&kc, "POST", "realms", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["errorMessage"].is_string(), "{body}: {answer}");
    }
    assert!(!kc.has_realm("x") && !kc.has_realm(""));
    let (status, answer) = admin(
        &kc,
        "POST",
        "realms/stoa/partialImport",
        json!({"ifResourceExists": "SKIP", "users": ["alice"]}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["errorMessage"].is_string(), "{answer}");

    let restorer = KeycloakRestorer::new(conn(&kc)).unwrap();
    for (rep, call) in [
        (
            json!({"realm": "broken", "users": ["alice"]}),
            "/admin/realms",
        ),
        (
            json!({"realm": "stoa", "users": [{"username": "ok"}, "bob"]}),
            "/admin/realms/stoa/partialImport",
        ),
    ] {
        let before = kc.requests().len();
        let err = restorer
            .restore_realm(
                rep,
                None,
                &RestoreOptions {
                    existing: ExistingDataPolicy::Skip,
                    dry_run: false,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.http_status(), Some(400), "{err}");
        assert!(
            err.to_string().contains("users[1]") || err.to_string().contains("users[0]"),
            "{err}"
        );
        let posts = kc.requests()[before..]
            .iter()
            .filter(|r| r.method == "POST" && r.path == call)
            .count();
        assert_eq!(posts, 1, "{call} sent {posts} times");
    }
    assert!(!kc.has_realm("broken"));
    // Nothing of the refused import was written, and the fake still answers.
    assert_eq!(kc.user_count("stoa"), 7);
    let (status, _) = admin(&kc, "GET", "realms/stoa", Value::Null).await;
    assert_eq!(status, 200);
}

/// An Overwrite restore of a realm fragment into an existing realm: partialImport ignores
/// authentication flows and client scopes, and `PUT /admin/realms/{realm}` updates the
/// top-level settings only (contract §1.4). So the users and top-level settings land, the
/// flows and client scopes do not — as the restorer's note says.
#[tokio::test]
async fn an_overwrite_restore_updates_settings_but_not_flows_or_client_scopes() {
    let kc = FakeKeycloak::start().await;
    let scopes_before = kc.realm_representation("stoa").unwrap()["clientScopes"].clone();
    assert!(scopes_before.as_array().is_some_and(|a| !a.is_empty()));
    let fragment = json!({
        "realm": "stoa",
        "accessTokenLifespan": 900,
        "authenticationFlows": [{"alias": "stoa-browser", "providerId": "basic-flow",
                                 "topLevel": true, "builtIn": false, "authenticationExecutions": []}],
        "authenticatorConfig": [{"alias": "stoa-otp", "config": {"otpType": "totp"}}],
        "clientScopes": [{"name": "fragment-scope", "protocol": "openid-connect"}],
        "users": [{"username": "fragment-user", "enabled": true}],
    });
    let rr = KeycloakRestorer::new(conn(&kc))
        .unwrap()
        .restore_realm(
            fragment,
            None,
            &RestoreOptions {
                existing: ExistingDataPolicy::Overwrite,
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(rr.created, 1, "{rr:?}");
    let rep = kc.realm_representation("stoa").unwrap();
    assert_eq!(rep["accessTokenLifespan"], 900);
    assert!(rep["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["username"] == "fragment-user"));
    let text = rep.to_string();
    assert!(
        !text.contains("stoa-browser"),
        "flows were imported: {text}"
    );
    assert!(
        !text.contains("stoa-otp"),
        "authenticator config was imported"
    );
    assert_eq!(rep["clientScopes"], scopes_before);
    let note = rr
        .notes
        .iter()
        .find(|n| n.contains("authentication flows"))
        .unwrap_or_else(|| panic!("no note on flows: {:?}", rr.notes));
    assert!(note.contains("not restored"), "{note}");
    assert!(note.contains("1 authentication flows"), "{note}");
    assert!(note.contains("1 client scopes"), "{note}");
}

/// Each kind of masked value gets its own remedy: a client secret is regenerated, an
/// identity provider's secret is copied from the provider, the LDAP bind credential comes
/// from the LDAP administrator, the SMTP password from the mail provider.
#[tokio::test]
async fn each_masked_field_kind_gets_its_own_remedy() {
    let a = FakeKeycloak::start_empty().await;
    a.load_realm(rich_realm());
    let first = backup(source(&a)).await;
    let b = FakeKeycloak::start_empty().await;
    let rr = first
        .restore(
            &KeycloakRestorer::new(conn(&b)).unwrap(),
            ExistingDataPolicy::Fail,
            false,
        )
        .await
        .unwrap();
    let note = |path: &str| -> String {
        rr.notes
            .iter()
            .find(|n| n.starts_with(path))
            .unwrap_or_else(|| panic!("no note for {path}: {:?}", rr.notes))
            .clone()
    };
    let client = note("clients[control-plane-api].secret");
    assert!(client.contains("regenerate"), "{client}");
    assert!(
        client.contains("POST /admin/realms/stoa/clients/{id}/client-secret"),
        "{client}"
    );
    let idp = note("identityProviders[google].config.clientSecret");
    assert!(!idp.contains("regenerate"), "{idp}");
    assert!(
        idp.contains("copy the client secret from the identity provider 'google'"),
        "{idp}"
    );
    assert!(
        idp.contains("PUT /admin/realms/stoa/identity-provider/instances/google"),
        "{idp}"
    );
    let ldap = note(
        "components.org.keycloak.storage.UserStorageProvider[corp-ldap].config.bindCredential",
    );
    assert!(!ldap.contains("regenerate"), "{ldap}");
    assert!(
        ldap.contains("bind credential of user federation 'corp-ldap'")
            && ldap.contains("LDAP administrator"),
        "{ldap}"
    );
    let smtp = note("smtpServer.password");
    assert!(!smtp.contains("regenerate"), "{smtp}");
    assert!(smtp.contains("SMTP password"), "{smtp}");
    // The verifier's warnings say the same.
    let warnings = &first
        .artifact
        .verification
        .iter()
        .find(|v| v.verifier == "keycloak-export")
        .unwrap()
        .warnings;
    assert!(
        warnings.iter().any(
            |w| w.starts_with("identityProviders[google].config.clientSecret")
                && w.contains("copy the client secret from the identity provider")
        ),
        "{warnings:?}"
    );
}
