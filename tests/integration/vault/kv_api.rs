//! The fake Vault seeded through its HTTP API (`sys/mounts/<path>`, KV v2 `delete/` and
//! `destroy/`), then backed up and restored with the real providers: the documented handling
//! of deleted and destroyed current versions, and hints that follow the recorded KV version.

use serde_json::{json, Value};
use stoa_backup::core::{ErrorKind, ExistingDataPolicy, Manifest};
use stoa_backup::providers::vault::{VaultKvRestorer, VaultKvSource};
use stoa_backup_test_support::vault_fake::FakeVault;

use super::{env, kv_backup, plain_of, token_conn};
use crate::restore_support::restore_component;

/// One call to the fake's API with the root token: the status and the JSON body (`Null`
/// when empty).
async fn api(fake: &FakeVault, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", fake.url()))
        .header("X-Vault-Token", fake.root_token());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

/// `vault secrets enable -path=<path> -version=<version> kv`.
async fn enable_kv(fake: &FakeVault, path: &str, version: &str) {
    let body = json!({"type": "kv", "description": "", "options": {"version": version}});
    let (status, answer) = api(fake, "POST", &format!("sys/mounts/{path}"), Some(body)).await;
    assert_eq!(status, 204, "enabling {path}: {answer}");
}

async fn write_v2(fake: &FakeVault, mount: &str, path: &str, data: Value) -> u64 {
    let body = json!({"data": data});
    let (status, answer) = api(fake, "POST", &format!("{mount}/data/{path}"), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    answer["data"]["version"].as_u64().unwrap()
}

#[tokio::test]
async fn mounts_enabled_through_the_api_are_found_with_their_version() {
    let fake = FakeVault::start().await;
    enable_kv(&fake, "apps", "2").await;
    enable_kv(&fake, "legacy", "1").await;
    // `kv-v2` is the server-side alias of kv with version 2.
    let (status, _) = api(
        &fake,
        "POST",
        "sys/mounts/team/kv",
        Some(json!({"type": "kv-v2"})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, answer) = api(
        &fake,
        "POST",
        "sys/mounts/apps",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        json!({"errors": ["path is already in use at apps/"]})
    );
    let (status, answer) = api(
        &fake,
        "POST",
        "sys/mounts/pki",
        Some(json!({"type": "pki"})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");

    let (_, mounts) = api(&fake, "GET", "sys/mounts", None).await;
    assert_eq!(mounts["data"]["apps/"]["options"]["version"], "2");
    assert_eq!(mounts["data"]["team/kv/"]["options"]["version"], "2");
    assert_eq!(mounts["data"]["legacy/"]["options"]["version"], "1");

    let e = env();
    let m = kv_backup(
        &e,
        VaultKvSource::builder(token_conn(&fake)).build().unwrap(),
    )
    .await;
    let mut versions: Vec<(String, u64)> = m
        .artifacts
        .iter()
        .map(|a| {
            (
                a.facts["mount"].as_str().unwrap().to_string(),
                a.facts["kv_version"].as_u64().unwrap(),
            )
        })
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        [
            ("apps/".to_string(), 2),
            ("legacy/".to_string(), 1),
            ("secret/".to_string(), 2),
            ("team/kv/".to_string(), 2)
        ]
    );
}

/// `current_deleted` as [`VaultKvSource`] documents it: a secret whose current version was
/// soft-deleted (`delete/`) or destroyed (`destroy/`) is listed without data, its history
/// says which, the manifest counts it, and the restorer leaves it out.
#[tokio::test]
async fn deleted_and_destroyed_current_versions_are_recorded_and_not_restored() {
    let fake = FakeVault::start().await;
    enable_kv(&fake, "apps", "2").await;
    write_v2(&fake, "apps", "alive", json!({"v": "alive-value-1a"})).await;
    for path in ["deleted", "destroyed"] {
        write_v2(&fake, "apps", path, json!({"v": "old-value-2b"})).await;
        assert_eq!(
            write_v2(&fake, "apps", path, json!({"v": "current-value-3c"})).await,
            2
        );
    }
    let (status, _) = api(
        &fake,
        "POST",
        "apps/delete/deleted",
        Some(json!({"versions": [2]})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = api(
        &fake,
        "PUT",
        "apps/destroy/destroyed",
        Some(json!({"versions": [2]})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, answer) = api(&fake, "POST", "apps/delete/alive", Some(json!({}))).await;
    assert_eq!(status, 400);
    assert_eq!(answer, json!({"errors": ["no version number provided"]}));

    // What a Vault client reads now: 404 with the envelope and `data: null`; the older
    // versions are still there.
    let (status, deleted) = api(&fake, "GET", "apps/data/deleted", None).await;
    assert_eq!(status, 404);
    assert_eq!(deleted["data"]["data"], Value::Null);
    assert_ne!(deleted["data"]["metadata"]["deletion_time"], "");
    assert_eq!(deleted["data"]["metadata"]["destroyed"], false);
    let (status, destroyed) = api(&fake, "GET", "apps/data/destroyed", None).await;
    assert_eq!(status, 404);
    assert_eq!(destroyed["data"]["data"], Value::Null);
    assert_eq!(destroyed["data"]["metadata"]["destroyed"], true);
    for path in ["deleted", "destroyed"] {
        let (status, old) = api(&fake, "GET", &format!("apps/data/{path}?version=1"), None).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(old["data"]["data"]["v"], "old-value-2b");
    }

    let e = env();
    let m = kv_backup(
        &e,
        VaultKvSource::builder(token_conn(&fake))
            .mount("apps")
            .build()
            .unwrap(),
    )
    .await;
    let a = &m.artifacts[0];
    assert_eq!(a.facts["secrets"], 3);
    assert_eq!(a.facts["current_deleted"], 2);
    let doc = plain_of(&e, a).await;
    let entry = |path: &str| {
        doc["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"] == path)
            .cloned()
            .unwrap()
    };
    assert_eq!(entry("alive")["data"]["v"], "alive-value-1a");
    assert!(entry("alive").get("current_deleted").is_none());
    for path in ["deleted", "destroyed"] {
        let s = entry(path);
        assert_eq!(s["current_deleted"], true, "{path}: {s}");
        assert!(s.get("data").is_none(), "{path}: {s}");
        assert_eq!(s["history"]["current_version"], 2, "{path}");
    }
    let history = |path: &str| entry(path)["history"]["versions"]["2"].clone();
    assert_ne!(history("deleted")["deletion_time"], "");
    assert_eq!(history("deleted")["destroyed"], false);
    assert_eq!(history("destroyed")["destroyed"], true);
    let text = doc.to_string();
    assert!(!text.contains("current-value-3c") && !text.contains("old-value-2b"));

    // Restore into a new Vault: only the live secret comes back.
    let target = FakeVault::start().await;
    enable_kv(&target, "apps", "2").await;
    let r = restore_component(
        e.sink.clone(),
        &m,
        &e.keyring,
        VaultKvRestorer::new(token_conn(&target)).unwrap(),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    assert_eq!((r.created, r.updated), (1, 0), "{r:?}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("2 secrets had their current version deleted")),
        "{:?}",
        r.notes
    );
    assert_eq!(target.get("apps", "alive").unwrap()["v"], "alive-value-1a");
    for path in ["deleted", "destroyed"] {
        let (status, _) = api(&target, "GET", &format!("apps/metadata/{path}"), None).await;
        assert_eq!(status, 404, "{path} must not be restored");
    }
}

/// The hint for a missing target mount follows the KV version the document records.
#[tokio::test]
async fn a_missing_mount_is_hinted_with_the_recorded_kv_version() {
    let fake = FakeVault::start().await;
    enable_kv(&fake, "legacy", "1").await;
    enable_kv(&fake, "apps", "2").await;
    let (status, _) = api(
        &fake,
        "POST",
        "legacy/api-keys",
        Some(json!({"key": "v1-value-4d"})),
    )
    .await;
    assert_eq!(status, 204);
    write_v2(&fake, "apps", "db", json!({"v": "v2-value-5e"})).await;
    let e = env();
    let m = kv_backup(
        &e,
        VaultKvSource::builder(token_conn(&fake))
            .mount("legacy")
            .mount("apps")
            .build()
            .unwrap(),
    )
    .await;
    let target = FakeVault::start().await;
    let restorer = VaultKvRestorer::new(token_conn(&target)).unwrap();
    for (mount, hint, wrong) in [
        (
            "legacy/",
            "vault secrets enable -path=legacy -version=1 kv",
            "kv-v2",
        ),
        (
            "apps/",
            "vault secrets enable -path=apps -version=2 kv",
            "-version=1",
        ),
    ] {
        // The run restricted to this mount's document, to see each mount's hint.
        let a = m
            .artifacts
            .iter()
            .find(|a| a.facts["mount"] == mount)
            .unwrap();
        let one = Manifest {
            artifacts: vec![a.clone()],
            ..m.clone()
        };
        let restore = || {
            restore_component(
                e.sink.clone(),
                &one,
                &e.keyring,
                restorer.clone(),
                ExistingDataPolicy::Fail,
                false,
            )
        };
        let err = restore().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let given = err.hint().unwrap_or_default().to_string();
        assert!(given.contains(hint), "{mount}: {given}");
        assert!(!given.contains(wrong), "{mount}: {given}");
        // Following the hint (through the API) makes the restore work.
        let version = if mount == "legacy/" { "1" } else { "2" };
        enable_kv(&target, mount.trim_end_matches('/'), version).await;
        let r = restore().await.unwrap();
        assert_eq!(r.created, 1, "{mount}: {r:?}");
    }
    assert_eq!(
        target.get("legacy", "api-keys").unwrap()["key"],
        "v1-value-4d"
    );
    assert_eq!(target.get("apps", "db").unwrap()["v"], "v2-value-5e");
}
