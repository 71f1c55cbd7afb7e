//! [`KeycloakRestorer`] (REST: the realm created when absent, `partialImport` otherwise)
//! restoring a realm exported by [`KeycloakSource`] from the fake Keycloak into a fresh,
//! empty fake.
//!
//! The state is the realm's objects as partialImport counts them (clients, realm and client
//! roles, top-level groups, users, identity providers and their mappers) and its top-level
//! settings, without what a server makes up (ids, timestamps) or a backup cannot hold
//! (secrets, credentials); the writes are the requests other than reads, token grants and
//! the partial export a plan reads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_backup::core::{MemorySink, Pipeline, Restorer, RetryPolicy, RunStatus};
use stoa_backup::providers::keycloak::{
    KeycloakAuth, KeycloakConnection, KeycloakExportVerifier, KeycloakRestorer, KeycloakSource,
    MASK,
};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::keycloak_fake::FakeKeycloak;
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, Capabilities, HarnessBackup, RestorerHarness, TargetState,
};

use super::canonical;

const REALM: &str = "stoa";

/// One of every kind partialImport counts: a client with a service account and a client
/// role, a realm role, a group with a subgroup, an identity provider with a mapper, users.
fn realm() -> Value {
    json!({
        "realm": REALM,
        "enabled": true,
        "displayName": "STOA",
        "clients": [{"clientId": "app", "publicClient": false, "secret": "app-secret",
                     "serviceAccountsEnabled": true, "description": "the app"},
                    {"clientId": "console", "publicClient": true,
                     "redirectUris": ["https://console.example/*"]}],
        "roles": {"realm": [{"name": "reader", "description": "reads"}],
                  "client": {"app": [{"name": "invoke"}]}},
        "groups": [{"name": "ops", "subGroups": [{"name": "oncall"}]}],
        "identityProviders": [{"alias": "corp", "providerId": "oidc",
                               "config": {"clientId": "kc", "clientSecret": "idp-secret"}}],
        "identityProviderMappers": [{"name": "email", "identityProviderAlias": "corp",
                                     "identityProviderMapper": "oidc-user-attribute-idp-mapper",
                                     "config": {"claim": "email", "user.attribute": "email"}}],
        "users": [user("alice", Some("alice@example.org")), user("bob", None)],
    })
}

/// A user as a server holds it (with the defaults it fills in).
fn user(name: &str, email: Option<&str>) -> Value {
    let mut u = json!({"username": name, "enabled": true, "emailVerified": false, "notBefore": 0,
                       "requiredActions": [], "totp": false});
    if let Some(e) = email {
        u["email"] = json!(e);
    }
    u
}

fn conn(kc: &FakeKeycloak) -> KeycloakConnection {
    let (id, secret) = kc.client_credentials();
    KeycloakConnection::new(
        &kc.url(),
        KeycloakAuth::ClientCredentials {
            client_id: id,
            client_secret: secret,
        },
    )
    .unwrap()
    .retry(RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    })
}

/// `v` without what a server makes up or a backup cannot hold.
fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in [
                "id",
                "internalId",
                "containerId",
                "createdTimestamp",
                "secret",
                "clientSecret",
                "credentials",
            ] {
                m.remove(k);
            }
            m.retain(|_, x| x.as_str() != Some(MASK));
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

fn state_of(kc: &FakeKeycloak) -> TargetState {
    let Some(mut rep) = kc.realm_representation(REALM) else {
        return TargetState::new();
    };
    strip(&mut rep);
    let mut out = TargetState::new();
    let mut add = |kind: &str, list: &Value, name: &dyn Fn(&Value) -> String| {
        for o in list.as_array().into_iter().flatten() {
            out.insert(format!("{kind}:{}", name(o)), canonical(o));
        }
    };
    let field = |f: &'static str| move |o: &Value| o[f].as_str().unwrap_or_default().to_string();
    add("client", &rep["clients"], &field("clientId"));
    add("realm-role", &rep["roles"]["realm"], &field("name"));
    for (client, roles) in rep["roles"]["client"].as_object().into_iter().flatten() {
        add(&format!("client-role:{client}"), roles, &field("name"));
    }
    add("group", &rep["groups"], &field("name"));
    add("user", &rep["users"], &field("username"));
    add(
        "identity-provider",
        &rep["identityProviders"],
        &field("alias"),
    );
    add(
        "idp-mapper",
        &rep["identityProviderMappers"],
        &|o: &Value| {
            format!(
                "{}/{}",
                o["identityProviderAlias"].as_str().unwrap_or_default(),
                o["name"].as_str().unwrap_or_default()
            )
        },
    );
    let mut settings = rep.clone();
    if let Some(m) = settings.as_object_mut() {
        m.retain(|_, v| !v.is_array() && !v.is_object());
    }
    out.insert("realm settings".into(), canonical(&settings));
    out
}

struct KeycloakHarness {
    source: FakeKeycloak,
    target: Mutex<Arc<FakeKeycloak>>,
}

impl KeycloakHarness {
    async fn new() -> Self {
        let source = FakeKeycloak::start_empty().await;
        source.load_realm(realm());
        KeycloakHarness {
            source,
            target: Mutex::new(Arc::new(FakeKeycloak::start_empty().await)),
        }
    }

    fn target(&self) -> Arc<FakeKeycloak> {
        self.target.lock().unwrap().clone()
    }
}

#[async_trait]
impl RestorerHarness for KeycloakHarness {
    fn name(&self) -> String {
        "keycloak (REST)".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn backup(&self) -> HarnessBackup {
        let (encryption, keyring) = age_keys();
        let sink = Arc::new(MemorySink::new());
        let source = KeycloakSource::builder(conn(&self.source))
            .realm(REALM)
            .build()
            .unwrap();
        let report = Pipeline::builder()
            .source(source)
            .sink(sink.clone())
            .encryption(encryption)
            .keyring(keyring.clone())
            .verifier(KeycloakExportVerifier::new())
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(
            report.status,
            RunStatus::Complete,
            "{:?}",
            report.manifest.failures
        );
        HarnessBackup {
            sink,
            manifest: report.manifest,
            keyring,
        }
    }

    async fn source_state(&self) -> TargetState {
        state_of(&self.source)
    }

    async fn fresh_target(&self) {
        *self.target.lock().unwrap() = Arc::new(FakeKeycloak::start_empty().await);
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        Arc::new(KeycloakRestorer::new(conn(&self.target())).unwrap())
    }

    async fn target_state(&self) -> TargetState {
        state_of(&self.target())
    }

    async fn populate_target_differently(&self) {
        // The realm exists with other settings, a client and a user that differ, and
        // without the rest.
        self.target().load_realm(json!({
            "realm": REALM,
            "enabled": true,
            "displayName": "STOA (changed since)",
            "clients": [{"clientId": "console", "publicClient": true,
                         "redirectUris": ["https://elsewhere.example/*"]}],
            "users": [user("alice", Some("alice@elsewhere.org"))],
        }));
    }

    async fn writes(&self) -> u64 {
        self.target()
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .filter(|r| !r.path.ends_with("/openid-connect/token"))
            .filter(|r| !r.path.ends_with("/partial-export"))
            .count() as u64
    }
}

#[tokio::test]
async fn the_keycloak_rest_restorer_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&KeycloakHarness::new().await).await;
}
