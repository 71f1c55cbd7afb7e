//! Keycloak provider over real HTTP against the fake Keycloak: round trips, paging, token
//! expiry, 429 storms, partialImport conflicts, redaction reports.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoa_backup::core::{
    ArtifactRecord, ErrorKind, ExistingDataPolicy, Keyring, Manifest, MemorySink, Pipeline,
    RestoreOptions, RestoreReport, Result, RetryPolicy, Source,
};
use stoa_backup::providers::keycloak::{
    KeycloakAuth, KeycloakConnection, KeycloakExportVerifier, KeycloakFacts, KeycloakRestorer,
    KeycloakSource, MASK,
};
use stoa_backup_test_support::artifacts::{age_keys, plain_bytes};
use stoa_backup_test_support::keycloak_fake::{fixture_realm, FakeKeycloak, KcFault};
use stoa_backup_test_support::trace::TraceCapture;

use crate::restore_support::restore_component;

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 8,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
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
    .retry(fast_retry())
}

fn password_conn(kc: &FakeKeycloak) -> KeycloakConnection {
    let (user, password) = kc.admin_password();
    KeycloakConnection::new(
        &kc.url(),
        KeycloakAuth::Password {
            client_id: "admin-cli".into(),
            username: user,
            password,
        },
    )
    .unwrap()
    .retry(fast_retry())
}

/// The fixture realm plus what it lacks to exercise every redaction: nested groups with
/// roles, a client role, SMTP with a password, an LDAP provider with a bind credential (and
/// a vault reference that must stay), a key provider with key material, a federated
/// identity and group membership.
fn rich_realm() -> Value {
    let mut r = fixture_realm();
    r["groups"] = json!([
        {"name": "operators", "realmRoles": ["devops"], "attributes": {"team": ["ops"]},
         "subGroups": [{"name": "oncall", "realmRoles": ["viewer"], "subGroups": []}]},
        {"name": "tenants", "subGroups": []}
    ]);
    r["roles"]["client"] =
        json!({"control-plane-api": [{"name": "invoke", "description": "call the API"}]});
    r["smtpServer"] = json!({"host": "smtp.example.org", "from": "noreply@example.org", "password": "smtp-secret"});
    r["components"] = json!({
        "org.keycloak.storage.UserStorageProvider": [{
            "name": "corp-ldap", "providerId": "ldap",
            "config": {"bindDn": ["cn=admin"], "bindCredential": ["ldap-secret"], "connectionUrl": ["${vault.ldap_url}"]}
        }],
        "org.keycloak.keys.KeyProvider": [{
            "name": "rsa-generated", "providerId": "rsa-generated",
            "config": {"priority": ["100"], "privateKey": ["MIIEv..."], "certificate": ["MIIC..."]}
        }]
    });
    let users = r["users"].as_array_mut().unwrap();
    users[0]["groups"] = json!(["/operators/oncall"]);
    users[0]["clientRoles"] = json!({"control-plane-api": ["invoke"]});
    users[1]["federatedIdentities"] =
        json!([{"identityProvider": "google", "userId": "g-123", "userName": "morrow@gmail.com"}]);
    r
}

struct Backup {
    sink: Arc<MemorySink>,
    /// The run's manifest (one realm export: `artifact`).
    manifest: Manifest,
    artifact: ArtifactRecord,
    keyring: Keyring,
}

impl Backup {
    /// Restores the run with `restorer` through the driver (a dry run: the plan only).
    async fn restore(
        &self,
        restorer: &KeycloakRestorer,
        existing: ExistingDataPolicy,
        dry_run: bool,
    ) -> Result<RestoreReport> {
        restore_component(
            self.sink.clone(),
            &self.manifest,
            &self.keyring,
            restorer.clone(),
            existing,
            dry_run,
        )
        .await
    }
}

async fn backup(source: KeycloakSource) -> Backup {
    let (encryption, keyring) = age_keys();
    let sink = Arc::new(MemorySink::new());
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
    let report = report.into_result().unwrap();
    assert_eq!(report.manifest.artifacts.len(), 1);
    Backup {
        sink,
        artifact: report.manifest.artifacts[0].clone(),
        manifest: report.manifest,
        keyring,
    }
}

async fn plain_json(b: &Backup) -> Value {
    serde_json::from_slice(&plain_bytes(b.sink.as_ref(), &b.artifact, &b.keyring).await).unwrap()
}

/// Removes what a server regenerates (ids, timestamps) and masked values (not in the
/// backup by definition, so the restored server holds other or no values).
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in ["id", "internalId", "containerId", "createdTimestamp"] {
                m.remove(k);
            }
            m.retain(|_, x| {
                x.as_str() != Some(MASK)
                    && !x
                        .as_array()
                        .is_some_and(|a| a.iter().any(|y| y.as_str() == Some(MASK)))
            });
            m.values_mut().for_each(normalize);
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn source(kc: &FakeKeycloak) -> KeycloakSource {
    KeycloakSource::builder(conn(kc))
        .realm("stoa")
        .page_size(3)
        .build()
        .unwrap()
}

#[tokio::test]
async fn round_trip_through_the_fakes_keeps_users_groups_roles_and_client_scopes() {
    let a = FakeKeycloak::start_empty().await;
    a.load_realm(rich_realm());
    let first = backup(source(&a)).await;

    // Facts: version, realm, counts, redaction report.
    let f = &first.artifact.facts;
    assert_eq!(first.artifact.provider, "keycloak-rest");
    assert!(first.artifact.sensitive);
    assert!(
        !first.artifact.codecs.is_empty(),
        "sensitive export must be encrypted"
    );
    assert_eq!(f["keycloak_version"], "26.0.5");
    assert_eq!(f["realm"], "stoa");
    assert_eq!(f["clients"], 8);
    assert_eq!(f["users"], 7);
    assert_eq!(f["service_account_users"], 4);
    assert_eq!(f["groups"], 3);
    assert_eq!(f["roles"], 6); // 4 + default-roles-stoa + 1 client role
    let report = first
        .artifact
        .facts_as::<KeycloakFacts>()
        .unwrap()
        .redaction
        .unwrap();
    let mut expected = vec![
        "clients[control-plane-api].secret",
        "clients[opensearch-dashboards].secret",
        "clients[stoa-e2e-dpop].secret",
        "clients[stoa-identity-governance].secret",
        "clients[stoa-mcp-gateway].secret",
        "clients[stoa-observability].secret",
        "components.org.keycloak.storage.UserStorageProvider[corp-ldap].config.bindCredential",
        "identityProviders[google].config.clientSecret",
        "smtpServer.password",
    ];
    expected.sort();
    assert_eq!(report.masked, expected);
    assert!(report.absent.iter().any(|a| a.contains("rsa-generated")));
    assert!(report.absent.iter().any(|a| a.contains("password: 7")));
    // The verifier passed, with a warning per redaction.
    let ver = &first.artifact.verification;
    let kv = ver
        .iter()
        .find(|v| v.verifier == "keycloak-export")
        .unwrap();
    assert!(kv.ok, "{}", kv.detail);
    assert!(kv.warnings.len() >= expected.len() + 2, "{:?}", kv.warnings);

    let exported = plain_json(&first).await;
    let text = exported.to_string();
    for secret in [
        "api-dev-secret",
        "smtp-secret",
        "ldap-secret",
        "MIIEv",
        "ReadyPlayer1!rpo",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into the export");
    }
    assert!(text.contains("${vault.ldap_url}"));
    let alice = exported["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "halliday")
        .unwrap();
    assert_eq!(alice["groups"], json!(["/operators/oncall"]));
    assert_eq!(alice["realmRoles"], json!(["cpi-admin"]));
    assert_eq!(
        alice["clientRoles"],
        json!({"control-plane-api": ["invoke"]})
    );
    assert_eq!(alice["attributes"]["tenant"], json!(["oasis"]));

    // Restore into an empty Keycloak.
    let b = FakeKeycloak::start_empty().await;
    let restorer = KeycloakRestorer::new(conn(&b)).unwrap();
    let rr = first
        .restore(&restorer, ExistingDataPolicy::Fail, false)
        .await
        .unwrap();
    assert!(b.has_realm("stoa"));
    assert_eq!(rr.facts["realm_created"], true);
    for p in &expected {
        assert!(
            rr.notes.iter().any(|n| n.starts_with(p)),
            "restore report does not mention {p}: {:?}",
            rr.notes
        );
    }
    assert!(rr
        .notes
        .iter()
        .any(|n| n.contains("7 users have no credentials")));

    // Export again and compare.
    let second = backup(source(&b)).await;
    let mut again = plain_json(&second).await;
    let mut before = exported.clone();
    normalize(&mut before);
    normalize(&mut again);
    assert_eq!(before["users"], again["users"]);
    assert_eq!(before["groups"], again["groups"]);
    assert_eq!(before["roles"], again["roles"]);
    assert_eq!(before["clientScopes"], again["clientScopes"]);
    assert_eq!(before["clients"], again["clients"]);
    assert_eq!(before, again);
    assert_eq!(second.artifact.facts["users"], 7);
    assert_eq!(second.artifact.facts["groups"], 3);
}

#[tokio::test]
async fn exports_2500_users_page_by_page() {
    let kc = FakeKeycloak::start().await;
    kc.add_users("stoa", 2500);
    let src = KeycloakSource::builder(conn(&kc))
        .realm("stoa")
        .page_size(100)
        .concurrency(16)
        .build()
        .unwrap();
    let b = backup(src).await;
    assert_eq!(b.artifact.facts["users"], 2507);
    assert_eq!(kc.user_count("stoa"), 2507);
    let v = plain_json(&b).await;
    let regular = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u.get("serviceAccountClientId").is_none())
        .count();
    assert_eq!(regular, 2507);
    let pages = kc
        .requests()
        .iter()
        .filter(|r| r.path == "/admin/realms/stoa/users" && r.query.contains("first="))
        .count();
    assert_eq!(pages, 26);
    assert!(b.artifact.facts["redaction"]
        .to_string()
        .contains("password: 2507"));
}

#[tokio::test]
async fn tokens_expiring_mid_export_are_renewed() {
    let kc = FakeKeycloak::start().await;
    kc.add_users("stoa", 200);
    kc.expire_tokens_every(40);
    let src = KeycloakSource::builder(conn(&kc))
        .realm("stoa")
        .page_size(50)
        .build()
        .unwrap();
    let b = backup(src).await;
    assert_eq!(b.artifact.facts["users"], 207);
    assert!(kc.token_grants() > 5, "grants: {}", kc.token_grants());
    assert!(kc.requests().iter().any(|r| r.status == 401));

    // Password grant: the refresh token is used.
    let kc = FakeKeycloak::start().await;
    kc.expire_tokens_every(25);
    let src = KeycloakSource::builder(password_conn(&kc))
        .realm("stoa")
        .build()
        .unwrap();
    backup(src).await;
    assert!(kc.token_grants() > 1);
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_during_a_slow_export() {
    use stoa_backup_test_support::keycloak_fake::FakeKeycloakOptions;
    let kc = FakeKeycloak::start_with(FakeKeycloakOptions {
        token_lifespan: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    // Rate limiting slows the export past the tokens' lifetime.
    kc.fault(KcFault::new("/role-mappings", 429).retry_after(1).times(3));
    let slow = conn(&kc).retry(RetryPolicy {
        attempts: 8,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(2),
        ..RetryPolicy::default()
    });
    let src = KeycloakSource::builder(slow).realm("stoa").build().unwrap();
    let b = backup(src).await;
    assert_eq!(b.artifact.facts["users"], 7);
    assert!(kc.token_grants() >= 2, "grants: {}", kc.token_grants());
}

#[tokio::test]
async fn a_429_storm_and_500s_are_retried_but_403_is_not() {
    let kc = FakeKeycloak::start().await;
    kc.fault(KcFault::new("/users", 429).retry_after(0).times(6));
    kc.fault(KcFault::new("/partial-export", 500).times(2));
    let b = backup(source(&kc)).await;
    assert_eq!(b.artifact.facts["users"], 7);
    let reqs = kc.requests();
    assert_eq!(reqs.iter().filter(|r| r.status == 429).count(), 6);
    assert_eq!(reqs.iter().filter(|r| r.status == 500).count(), 2);

    let kc = FakeKeycloak::start().await;
    kc.fault(KcFault::new("/partial-export", 403));
    let src = source(&kc);
    let plan = src.discover().await.unwrap();
    let ctx = stoa_backup::core::ExportContext {
        cancel: Default::default(),
        run_id: stoa_backup::core::RunId::generate(chrono::Utc::now()),
        stored: Vec::new(),
    };
    let err = src.export(&plan[0], &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        kc.requests()
            .iter()
            .filter(|r| r.path.ends_with("/partial-export"))
            .count(),
        1,
        "no retry on 403"
    );
    assert!(!format!("{err:?}").contains("backup-client-secret"));
}

#[tokio::test]
async fn partial_import_conflict_under_fail_writes_nothing() {
    let kc = FakeKeycloak::start().await;
    let b = backup(source(&kc)).await;
    // Add a user the target lacks, so a write would be visible.
    let mut rep = plain_json(&b).await;
    rep["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"username": "newcomer", "enabled": true}));
    let before = kc.realm_representation("stoa").unwrap();
    let restorer = KeycloakRestorer::new(conn(&kc)).unwrap();
    let err = restorer
        .restore_realm(rep.clone(), None, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.message().contains("already exists"), "{err}");
    assert!(err.hint().unwrap().contains("nothing was written"));
    assert_eq!(kc.realm_representation("stoa").unwrap(), before);

    // Dry run under FAIL counts every existing resource as a conflict, without writing.
    let r = restorer
        .restore_realm(
            rep.clone(),
            None,
            &RestoreOptions {
                existing: ExistingDataPolicy::Fail,
                dry_run: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.created, 1, "{r:?}");
    assert!(r.conflicts > 10, "{r:?}");
    assert!(
        r.notes.iter().any(|n| n.contains("would fail")),
        "{:?}",
        r.notes
    );
    assert_eq!(kc.realm_representation("stoa").unwrap(), before);

    // Dry run under SKIP: one user would be added.
    let r = restorer
        .restore_realm(
            rep.clone(),
            None,
            &RestoreOptions {
                existing: ExistingDataPolicy::Skip,
                dry_run: true,
            },
        )
        .await
        .unwrap();
    assert!(r.dry_run);
    assert_eq!(r.created, 1);
    assert!(r.skipped > 10);
    assert_eq!(kc.realm_representation("stoa").unwrap(), before);

    // SKIP adds only the new user.
    let r = restorer
        .restore_realm(
            rep.clone(),
            None,
            &RestoreOptions {
                existing: ExistingDataPolicy::Skip,
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.created, 1);
    assert_eq!(r.updated, 0);
    assert!(r.skipped > 10);
    assert_eq!(kc.user_count("stoa"), 8);

    // OVERWRITE replaces everything present.
    let r = restorer
        .restore_realm(
            rep,
            None,
            &RestoreOptions {
                existing: ExistingDataPolicy::Overwrite,
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.created, 0);
    assert!(r.updated > 10);
    assert_eq!(kc.user_count("stoa"), 8);
}

#[tokio::test]
async fn user_profile_is_restored_before_users_under_overwrite() {
    let profile = json!({"attributes": [{"name": "username"}, {"name": "email"}, {"name": "tenant"}], "groups": []});
    let mut realm = fixture_realm();
    realm["components"] = json!({"org.keycloak.userprofile.UserProfileProvider": [{
        "providerId": "declarative-user-profile", "subComponents": {},
        "config": {"kc.user.profile.config": [profile.to_string()]}}]});
    let a = FakeKeycloak::start_empty().await;
    a.load_realm(realm);
    let b = backup(source(&a)).await;
    let rep = plain_json(&b).await;

    let target = FakeKeycloak::start().await; // same realm, default profile
    let restorer = KeycloakRestorer::new(conn(&target)).unwrap();
    let skip = RestoreOptions {
        existing: ExistingDataPolicy::Skip,
        dry_run: false,
    };
    let r = restorer
        .restore_realm(rep.clone(), None, &skip)
        .await
        .unwrap();
    assert!(
        r.notes.iter().any(|n| n.contains("user profile differs")),
        "{:?}",
        r.notes
    );
    let over = RestoreOptions {
        existing: ExistingDataPolicy::Overwrite,
        dry_run: false,
    };
    let r = restorer.restore_realm(rep, None, &over).await.unwrap();
    assert!(r
        .notes
        .iter()
        .any(|n| n == "user profile restored before the users"));
    let stored = target.realm_representation("stoa").unwrap();
    let text = stored["components"]["org.keycloak.userprofile.UserProfileProvider"][0]["config"]
        ["kc.user.profile.config"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), profile);
}

#[tokio::test]
async fn dry_run_into_an_empty_server_creates_nothing() {
    let a = FakeKeycloak::start().await;
    let b = backup(source(&a)).await;
    let empty = FakeKeycloak::start_empty().await;
    let restorer = KeycloakRestorer::new(conn(&empty)).unwrap();
    let r = b
        .restore(&restorer, ExistingDataPolicy::Fail, true)
        .await
        .unwrap();
    assert!(r.dry_run);
    assert!(r.created > 0);
    assert!(!empty.has_realm("stoa"));
}

#[tokio::test]
async fn bad_credentials_and_missing_realms_fail_clearly() {
    let kc = FakeKeycloak::start().await;
    let bad = KeycloakConnection::new(
        &kc.url(),
        KeycloakAuth::ClientCredentials {
            client_id: "stoa-backup".into(),
            client_secret: "wrong-secret".into(),
        },
    )
    .unwrap();
    let src = KeycloakSource::builder(bad).realm("stoa").build().unwrap();
    let err = src.preflight().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert!(!err.to_string().contains("wrong-secret"));
    assert!(!format!("{err:?}").contains("wrong-secret"));
    assert!(!format!("{src:?}").contains("wrong-secret"));

    let src = KeycloakSource::builder(conn(&kc))
        .realm("nope")
        .build()
        .unwrap();
    assert_eq!(
        src.preflight().await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let ok = KeycloakSource::builder(conn(&kc)).build().unwrap();
    let names: Vec<String> = ok
        .discover()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["master-realm.json", "stoa-realm.json"]);
    assert_eq!(
        ok.preflight().await.unwrap().server_version.as_deref(),
        Some("26.0.5")
    );
}

/// Credentials and tokens never reach the logs, at TRACE level, through token renewal,
/// retries, a restore with the password grant and a failed login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_or_token_in_trace_output() {
    let capture = TraceCapture::install();
    let kc = FakeKeycloak::start().await;
    kc.expire_tokens_every(10);
    kc.fault(KcFault::new("/users", 429).retry_after(0).times(2));
    let b = backup(source(&kc)).await;

    let target = FakeKeycloak::start().await;
    target.expire_tokens_every(10);
    let restorer = KeycloakRestorer::new(password_conn(&target)).unwrap();
    b.restore(&restorer, ExistingDataPolicy::Overwrite, false)
        .await
        .unwrap();

    let wrong = "wrong-secret-must-not-be-logged";
    let bad = KeycloakConnection::new(
        &kc.url(),
        KeycloakAuth::ClientCredentials {
            client_id: "stoa-backup".into(),
            client_secret: wrong.into(),
        },
    )
    .unwrap();
    let src = KeycloakSource::builder(bad).realm("stoa").build().unwrap();
    assert_eq!(
        src.preflight().await.unwrap_err().kind(),
        ErrorKind::Unauthenticated
    );

    let mut secrets = vec![
        kc.client_credentials().1,
        target.admin_password().1,
        wrong.to_string(),
    ];
    secrets.extend(kc.issued_tokens());
    secrets.extend(target.issued_tokens());
    assert!(secrets.len() > 5, "tokens were renewed: {}", secrets.len());
    capture.assert_free_of(&secrets);
}

/// kc.sh mode through the fake Kubernetes API server's pod exec and the test-support kc.sh
/// stand-in.
#[cfg(feature = "kubernetes")]
mod kcsh;

/// The fake held to the contract; the restorer's notes.
mod contract;

/// Plans and restores count the same objects.
mod counts;
