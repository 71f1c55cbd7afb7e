//! A Keycloak restore counts by object the same way in its plan and in its restore, and
//! the same way whether it creates the realm or imports into an existing one (issue #14
//! item 8): clients, realm roles, client roles, identity providers and their mappers,
//! top-level groups (a subgroup travels with its parent, as in partialImport) and users.

use serde_json::{json, Value};
use stoa_backup::core::{ErrorKind, ExistingDataPolicy, RestoreReport};
use stoa_backup::providers::keycloak::KeycloakRestorer;
use stoa_backup_test_support::keycloak_fake::FakeKeycloak;

use super::{backup, conn, source, Backup};

/// A realm with one of every kind partialImport counts: a client with a service account
/// and a client role, a realm role, a group with a subgroup, an identity provider with a
/// mapper, two users.
fn small_realm() -> Value {
    json!({
        "realm": "stoa",
        "enabled": true,
        "clients": [{"clientId": "app", "publicClient": false, "secret": "app-secret",
                     "serviceAccountsEnabled": true}],
        "roles": {"realm": [{"name": "reader"}], "client": {"app": [{"name": "invoke"}]}},
        "groups": [{"name": "ops", "subGroups": [{"name": "oncall"}]}],
        "identityProviders": [{"alias": "corp", "providerId": "oidc",
                               "config": {"clientId": "kc", "clientSecret": "idp-secret"}}],
        "identityProviderMappers": [{"name": "email", "identityProviderAlias": "corp",
                                     "identityProviderMapper": "oidc-user-attribute-idp-mapper",
                                     "config": {"claim": "email", "user.attribute": "email"}}],
        "users": [{"username": "alice", "enabled": true}, {"username": "bob", "enabled": true}],
    })
}

fn counts(r: &RestoreReport) -> (u64, u64, u64, u64) {
    (r.created, r.updated, r.skipped, r.conflicts)
}

/// The plan's counts, then the restore's, of `b` into `target` under `policy`.
async fn plan_then_restore(
    b: &Backup,
    target: &FakeKeycloak,
    policy: ExistingDataPolicy,
) -> (RestoreReport, RestoreReport) {
    let restorer = KeycloakRestorer::new(conn(target)).unwrap();
    let planned = b.restore(&restorer, policy, true).await.unwrap();
    let done = b.restore(&restorer, policy, false).await.unwrap();
    (planned, done)
}

#[tokio::test]
async fn plans_count_what_the_restore_does_whether_it_creates_the_realm_or_imports() {
    let a = FakeKeycloak::start_empty().await;
    a.load_realm(small_realm());
    let b = backup(source(&a)).await;
    let rep = super::plain_json(&b).await;
    let exported = rep["users"].as_array().unwrap().len() as u64;
    // The export holds the client's service-account user beside alice and bob, and the
    // realm's default roles beside "reader".
    assert_eq!(exported, 3, "{}", rep["users"]);
    let realm_roles = rep["roles"]["realm"].as_array().unwrap().len() as u64;
    // clients, realm roles, client role, identity provider, mapper, top-level group, users
    let objects = 1 + realm_roles + 1 + 1 + 1 + 1 + exported;

    // Into an empty server: the realm is created.
    let empty = FakeKeycloak::start_empty().await;
    let (planned, created) = plan_then_restore(&b, &empty, ExistingDataPolicy::Fail).await;
    assert!(empty.has_realm("stoa"));
    assert_eq!(
        counts(&planned),
        counts(&created),
        "{planned:?}\n{created:?}"
    );
    assert_eq!(counts(&created), (objects, 0, 0, 0), "{created:?}");

    // Into a server whose realm exists but holds none of it (partialImport): the same
    // objects, counted the same.
    let bare = FakeKeycloak::start_empty().await;
    bare.load_realm(json!({"realm": "stoa", "enabled": true}));
    let restorer = KeycloakRestorer::new(conn(&bare)).unwrap();
    let planned = b
        .restore(&restorer, ExistingDataPolicy::Skip, true)
        .await
        .unwrap();
    let imported = b
        .restore(&restorer, ExistingDataPolicy::Skip, false)
        .await
        .unwrap();
    assert_eq!(
        counts(&planned),
        counts(&imported),
        "{planned:?}\n{imported:?}"
    );
    let (added, _, skipped, _) = counts(&imported);
    assert_eq!(added + skipped, objects, "{imported:?}");

    // Again, everything exists: skipped, overwritten, or conflicts that refuse the restore.
    let (planned, skipped) = plan_then_restore(&b, &bare, ExistingDataPolicy::Skip).await;
    assert_eq!(
        counts(&planned),
        counts(&skipped),
        "{planned:?}\n{skipped:?}"
    );
    assert_eq!(counts(&skipped), (0, 0, objects, 0), "{skipped:?}");
    let (planned, overwritten) = plan_then_restore(&b, &bare, ExistingDataPolicy::Overwrite).await;
    assert_eq!(
        counts(&planned),
        counts(&overwritten),
        "{planned:?}\n{overwritten:?}"
    );
    assert_eq!(counts(&overwritten), (0, objects, 0, 0), "{overwritten:?}");
    let planned = b
        .restore(&restorer, ExistingDataPolicy::Fail, true)
        .await
        .unwrap();
    assert_eq!(counts(&planned), (0, 0, 0, objects), "{planned:?}");
    let before = bare.realm_representation("stoa");
    let err = b
        .restore(&restorer, ExistingDataPolicy::Fail, false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(bare.realm_representation("stoa"), before, "nothing written");
}
