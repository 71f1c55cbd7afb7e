//! StateSnapshot: PostgreSQL, custom resources and a Keycloak realm (fakes over real HTTP)
//! in one production-format run; every part changed, then put back by `restore()`. And a
//! stored run loaded as a fixture into another database.

use std::time::Duration;

use serde_json::Value;
use stoa_backup_core::sink::MemorySink;
use stoa_backup_providers::keycloak::{
    KeycloakAuth, KeycloakConnection, KeycloakRestorer, KeycloakSource,
};
use stoa_backup_providers::kubernetes::{
    ConflictPolicy, CustomResourcesRestorer, CustomResourcesSource,
};
use stoa_backup_storage::LocalSink;
use stoa_backup_test_support::keycloak_fake::{fixture_realm, FakeKeycloak};
use stoa_backup_test_support::kube_fake::FakeKube;
use stoa_backup_test_support::{test_database_url, TestDatabase};
use stoa_backup_testing::StateSnapshot;

use crate::compare::{databases_like, fingerprint, mutate, seed};

fn keycloak(kc: &FakeKeycloak) -> KeycloakConnection {
    let (client_id, client_secret) = kc.client_credentials();
    KeycloakConnection::new(
        &kc.url(),
        KeycloakAuth::ClientCredentials {
            client_id,
            client_secret,
        },
    )
    .unwrap()
}

/// The objects the test compares: (kind, namespace/name) → spec and labels.
fn resources(kube: &FakeKube) -> Vec<(String, String, Value, Value)> {
    let mut out = Vec::new();
    for kind in ["Tool", "ToolSet"] {
        for o in kube.objects("gostoa.dev/v1alpha1", kind) {
            let m = &o["metadata"];
            out.push((
                kind.to_string(),
                format!(
                    "{}/{}",
                    m["namespace"].as_str().unwrap_or(""),
                    m["name"].as_str().unwrap()
                ),
                o["spec"].clone(),
                m["labels"].clone(),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// The realm as the test compares it: users (name, email, names, enabled) and clients
/// (id, name, description, redirect URIs), sorted.
fn realm(kc: &FakeKeycloak) -> (Vec<Value>, Vec<Value>) {
    let rep = kc.realm_representation("stoa").expect("realm stoa");
    let mut users: Vec<Value> = rep["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u.get("serviceAccountClientId").is_none())
        .map(|u| {
            serde_json::json!([
                u["username"],
                u["email"],
                u["firstName"],
                u["lastName"],
                u["enabled"]
            ])
        })
        .collect();
    users.sort_by_key(|v| v.to_string());
    let mut clients: Vec<Value> = rep["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::json!([
                c["clientId"],
                c["name"],
                c["description"],
                c["redirectUris"]
            ])
        })
        .collect();
    clients.sort_by_key(|v| v.to_string());
    (users, clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_custom_resources_and_a_realm_are_all_put_back() {
    let db = TestDatabase::create("state_snap").await;
    seed(db.name()).await;
    let kube = FakeKube::start().await;
    kube.load_fixture_crds();
    kube.load_fixture_resources();
    let kc = FakeKeycloak::start_empty().await;
    kc.load_realm(fixture_realm());

    let pg_before = fingerprint(db.name()).await;
    let crs_before = resources(&kube);
    let realm_before = realm(&kc);
    assert_eq!(crs_before.len(), 2, "{crs_before:?}");
    assert!(!realm_before.0.is_empty() && !realm_before.1.is_empty());

    let snapshot = StateSnapshot::builder()
        .postgres(&test_database_url(), db.name())
        .part(
            CustomResourcesSource::builder(kube.client())
                .build()
                .unwrap(),
            // The test edits objects as another field manager; the snapshot takes them back.
            CustomResourcesRestorer::builder(kube.client())
                .conflicts(ConflictPolicy::Force)
                .establish_timeout(Duration::from_secs(10))
                .poll_interval(Duration::from_millis(50))
                .build()
                .unwrap(),
        )
        .part(
            KeycloakSource::builder(keycloak(&kc))
                .realm("stoa")
                .build()
                .unwrap(),
            KeycloakRestorer::new(keycloak(&kc)).unwrap(),
        )
        .take()
        .await
        .unwrap();
    let mut components = snapshot.components();
    components.sort();
    components.dedup();
    assert_eq!(components.len(), 3, "{components:?}");

    // Change every part: rows and DDL; one resource edited, the other deleted; a user
    // deleted and a client edited.
    mutate(db.name()).await;
    let tools = kube.objects("gostoa.dev/v1alpha1", "Tool");
    let mut tool = tools[0].clone();
    tool["spec"]["description"] = Value::String("changed by the test".into());
    kube.put(tool);
    let set = kube.objects("gostoa.dev/v1alpha1", "ToolSet")[0].clone();
    let m = &set["metadata"];
    assert!(kube.remove(
        "gostoa.dev/v1alpha1",
        "ToolSet",
        m["namespace"].as_str(),
        m["name"].as_str().unwrap()
    ));
    let mut rep = fixture_realm();
    rep["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u.get("serviceAccountClientId").is_some());
    for c in rep["clients"].as_array_mut().unwrap() {
        c["description"] = Value::String("edited".into());
    }
    kc.load_realm(rep);
    assert_ne!(fingerprint(db.name()).await, pg_before);
    assert_ne!(resources(&kube), crs_before);
    assert_ne!(realm(&kc), realm_before);

    snapshot.restore().await.unwrap();
    assert_eq!(fingerprint(db.name()).await, pg_before, "postgres");
    assert_eq!(resources(&kube), crs_before, "custom resources");
    assert_eq!(realm(&kc), realm_before, "realm");
    assert_eq!(databases_like(db.name()).await, vec![db.name().to_string()]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_stored_run_loads_as_a_fixture_into_another_database() {
    // "Production": a run in the library's format, in a directory.
    let prod = TestDatabase::create("state_prod").await;
    seed(prod.name()).await;
    let expected = fingerprint(prod.name()).await;
    let dir = tempfile::tempdir().unwrap();
    let taken = StateSnapshot::builder()
        .postgres(&test_database_url(), prod.name())
        .sink(LocalSink::new(dir.path()).unwrap())
        .take()
        .await
        .unwrap();
    let run = taken.manifest().run_id.clone();
    drop(taken);

    // The test: a database of its own, loaded from the stored run.
    let target = format!("{}_replay", prod.name());
    let fixture = StateSnapshot::load(LocalSink::new(dir.path()).unwrap())
        .postgres(&test_database_url(), &target, None)
        .load()
        .await
        .unwrap();
    assert_eq!(fixture.manifest().run_id, run, "the newest complete run");
    fixture.restore().await.unwrap();
    let replayed = fingerprint(&target).await;
    assert_eq!(replayed.schema, expected.schema);
    assert_eq!(replayed.tables, expected.tables);
    assert_eq!(replayed.sequences, expected.sequences);
    // Loading again over it puts it back after a change.
    mutate(&target).await;
    fixture.restore().await.unwrap();
    assert_eq!(fingerprint(&target).await.tables, expected.tables);
    let admin = stoa_backup_test_support::connect(&test_database_url()).await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{target}\" WITH (FORCE)"))
        .await
        .unwrap();
    prod.drop_db().await;

    // An empty fixture is a clear error.
    let err = StateSnapshot::load(MemorySink::new())
        .load()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no complete run"), "{err}");
}
