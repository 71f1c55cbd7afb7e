//! Vault providers against the fake Vault over real HTTP: KV export/restore round trips,
//! dry runs and policies, auth methods and namespaces, raft snapshots (streamed, verified,
//! restored), health errors, and no secret or token in traces.

use std::io::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_backup::core::manifest::{ArtifactRecord, Manifest};
use stoa_backup::core::{
    ArtifactPlan, ErrorKind, ExistingDataPolicy, Export, ExportContext, Pipeline, PreflightReport,
    RunStatus, Source, ZstdCodec,
};
use stoa_backup::providers::vault::{
    RaftSnapshotRestorer, RaftSnapshotSource, RaftSnapshotVerifier, VaultAuth, VaultConnection,
    VaultKvRestorer, VaultKvSource, KV_FORMAT,
};
use stoa_backup_test_support::artifacts::{assert_no_plaintext, plain_bytes};
use stoa_backup_test_support::trace::TraceCapture;
use stoa_backup_test_support::vault_fake::{FakeVault, HealthState, SnapshotFault};

pub(crate) use crate::encrypted_dir::{env, Env};
use crate::restore_support::restore_component;

fn token_conn(fake: &FakeVault) -> VaultConnection {
    VaultConnection::new(&fake.url(), VaultAuth::token(fake.root_token())).unwrap()
}

fn secret_value(i: usize) -> String {
    format!("s3cr3t-{i:04}-{:08x}", 0x5eed_0000u32 + i as u32)
}

/// 300 secrets in nested paths over a KV v2 and a KV v1 mount, with metadata, non-string
/// values and a key with a space.
fn populate(fake: &FakeVault) -> Vec<String> {
    fake.enable_kv("legacy", 1);
    let mut values = Vec::new();
    for i in 0..260 {
        let path = format!("apps/team-{}/svc-{}/env-{}/cfg-{i}", i % 5, i % 13, i % 3);
        let v = secret_value(i);
        fake.put(
            "secret",
            &path,
            json!({"password": v, "port": 5432 + i, "tls": i % 2 == 0}),
        );
        values.push(v);
    }
    fake.put(
        "secret",
        "top level key",
        json!({"api key": "sp@ce-v@lue-77aa"}),
    );
    values.push("sp@ce-v@lue-77aa".into());
    fake.put("secret", "apps/team-0/rotated", json!({"v": "old-value-1"}));
    fake.put(
        "secret",
        "apps/team-0/rotated",
        json!({"v": "rotated-value-2bb"}),
    );
    values.push("rotated-value-2bb".into());
    fake.set_metadata(
        "secret",
        "apps/team-0/rotated",
        json!({"owner": "platform", "rotation": "monthly"}),
        5,
        true,
    );
    for i in 0..40 {
        let v = format!("legacy-{i}-c0ffee{i:03}");
        fake.put(
            "legacy",
            &format!("svc/{}/key-{i}", i % 4),
            json!({"api_key": v}),
        );
        values.push(v);
    }
    values
}

async fn plain_of(e: &Env, a: &ArtifactRecord) -> Value {
    let b = plain_bytes(e.sink.as_ref(), a, &e.keyring).await;
    serde_json::from_slice(&b).expect("KV document is JSON")
}

/// The restorable content of a document: path → (data, settings).
fn restorable(doc: &Value) -> Value {
    let secrets: serde_json::Map<String, Value> = doc["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                json!({"data": s["data"], "settings": s["settings"]}),
            )
        })
        .collect();
    json!({"mount": doc["mount"], "kv_version": doc["kv_version"], "secrets": secrets})
}

async fn kv_backup(e: &Env, source: VaultKvSource) -> Manifest {
    let report = Pipeline::builder()
        .source(source)
        .sink(e.sink.clone())
        .compression(ZstdCodec::new(3).unwrap())
        .encryption(e.encryption.clone())
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
    report.manifest
}

#[tokio::test]
async fn kv_round_trip_with_hundreds_of_nested_secrets() {
    let fake = FakeVault::start().await;
    let values = populate(&fake);
    let e = env();
    let source = || VaultKvSource::builder(token_conn(&fake)).build().unwrap();
    let m1 = kv_backup(&e, source()).await;
    assert_eq!(m1.artifacts.len(), 2);
    let kv2 = m1
        .artifacts
        .iter()
        .find(|a| a.name == "kv/secret.json")
        .unwrap();
    assert!(kv2.sensitive);
    assert_eq!(kv2.facts["vault_version"], "1.17.2");
    assert_eq!(kv2.facts["storage_type"], "raft");
    assert_eq!(kv2.facts["mount"], "secret/");
    assert_eq!(kv2.facts["kv_version"], 2);
    assert_eq!(kv2.facts["secrets"], 262);
    let kv1 = m1
        .artifacts
        .iter()
        .find(|a| a.name == "kv/legacy.json")
        .unwrap();
    assert_eq!(kv1.facts["kv_version"], 1);
    assert_eq!(kv1.facts["secrets"], 40);

    // Encrypted at rest: no secret value in any stored byte.
    assert_no_plaintext(&e.dir, &values);

    let docs1: Vec<Value> = futures_docs(&e, &m1).await;
    let d = docs1.iter().find(|d| d["mount"] == "secret/").unwrap();
    assert_eq!(d["format"], KV_FORMAT);
    let rotated = d["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "apps/team-0/rotated")
        .unwrap();
    assert_eq!(rotated["version"], 2);
    assert_eq!(rotated["settings"]["custom_metadata"]["owner"], "platform");
    assert_eq!(rotated["settings"]["cas_required"], true);
    assert_eq!(rotated["settings"]["max_versions"], 5);

    // Wipe, restore the run (both mounts), export again: equal.
    fake.wipe("secret");
    fake.wipe("legacy");
    let restorer = VaultKvRestorer::new(token_conn(&fake)).unwrap();
    let restore = || {
        restore_component(
            e.sink.clone(),
            &m1,
            &e.keyring,
            restorer.clone(),
            ExistingDataPolicy::Fail,
            false,
        )
    };
    let r = restore().await.unwrap();
    assert_eq!(r.created, 262 + 40, "{r:?}");
    assert_eq!(r.updated, 0);
    assert_eq!(fake.count("secret"), 262);
    assert_eq!(
        fake.get("secret", "top level key").unwrap()["api key"],
        "sp@ce-v@lue-77aa"
    );

    let m2 = kv_backup(&e, source()).await;
    let docs2 = futures_docs(&e, &m2).await;
    for (a, b) in docs1.iter().zip(&docs2) {
        assert_eq!(restorable(a), restorable(b));
    }

    // Restoring again changes nothing.
    let r = restore().await.unwrap();
    assert_eq!((r.created, r.updated, r.conflicts), (0, 0, 0), "{r:?}");
    assert_eq!(r.skipped, 262 + 40);
}

async fn futures_docs(e: &Env, m: &Manifest) -> Vec<Value> {
    let mut out = Vec::new();
    for a in &m.artifacts {
        out.push(plain_of(e, a).await);
    }
    out
}

#[tokio::test]
async fn kv_restore_dry_run_fail_skip_and_overwrite_with_cas() {
    let fake = FakeVault::start().await;
    for i in 0..20 {
        fake.put(
            "secret",
            &format!("a/s{i}"),
            json!({"v": format!("orig-{i}")}),
        );
    }
    let e = env();
    let m = kv_backup(
        &e,
        VaultKvSource::builder(token_conn(&fake))
            .mount("secret")
            .build()
            .unwrap(),
    )
    .await;
    // Drift: one changed, two removed, one new.
    fake.put("secret", "a/s0", json!({"v": "changed-later"}));
    fake.wipe("secret");
    for i in 2..20 {
        fake.put(
            "secret",
            &format!("a/s{i}"),
            json!({"v": format!("orig-{i}")}),
        );
    }
    fake.put("secret", "a/s2", json!({"v": "newer-value"}));
    fake.put("secret", "a/extra", json!({"v": "x"}));
    let before = fake.requests().len();
    let restorer = VaultKvRestorer::new(token_conn(&fake)).unwrap();
    let restore = |existing, dry_run| {
        restore_component(
            e.sink.clone(),
            &m,
            &e.keyring,
            restorer.clone(),
            existing,
            dry_run,
        )
    };

    let r = restore(ExistingDataPolicy::Overwrite, true).await.unwrap();
    assert!(r.dry_run);
    assert_eq!((r.created, r.updated, r.skipped), (2, 1, 17), "{r:?}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("2 to create, 1 to update, 17 unchanged")),
        "{:?}",
        r.notes
    );
    assert!(
        fake.requests()[before..].iter().all(|q| q.method == "GET"),
        "a dry run only reads"
    );

    // Fail (default): refuses before writing anything.
    let err = restore(ExistingDataPolicy::Fail, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(fake.get("secret", "a/s0").is_none());

    // Skip: creates missing, keeps the newer value.
    let planned = restore(ExistingDataPolicy::Skip, true).await.unwrap();
    let r = restore(ExistingDataPolicy::Skip, false).await.unwrap();
    assert_eq!((r.created, r.updated, r.skipped), (2, 0, 18));
    assert_eq!(
        (planned.created, planned.updated, planned.skipped),
        (r.created, r.updated, r.skipped),
        "the plan counts what the restore does"
    );
    assert_eq!(fake.get("secret", "a/s2").unwrap()["v"], "newer-value");

    // Overwrite: replaces it with check-and-set on the version it read.
    let v = fake.current_version("secret", "a/s2").unwrap();
    let planned = restore(ExistingDataPolicy::Overwrite, true).await.unwrap();
    let r = restore(ExistingDataPolicy::Overwrite, false).await.unwrap();
    assert_eq!((r.created, r.updated), (0, 1));
    assert_eq!(
        (planned.created, planned.updated, planned.skipped),
        (r.created, r.updated, r.skipped),
        "the plan counts what the restore does"
    );
    assert_eq!(fake.get("secret", "a/s2").unwrap()["v"], "orig-2");
    assert_eq!(fake.current_version("secret", "a/s2"), Some(v + 1));
    assert!(fake
        .requests()
        .iter()
        .any(|q| q.method == "POST" && q.path.ends_with("/secret/data/a/s2")));
    // The extra secret is left alone.
    assert_eq!(fake.get("secret", "a/extra").unwrap()["v"], "x");
}

#[tokio::test]
async fn kv_reports_deleted_versions_and_denied_paths() {
    let fake = FakeVault::start().await;
    fake.put("secret", "ok/a", json!({"v": 1}));
    fake.put("secret", "gone/b", json!({"v": "deleted-value-9f"}));
    fake.delete_current("secret", "gone/b");
    fake.put("secret", "locked/c", json!({"v": "locked-value"}));
    fake.deny("secret/locked/");
    let e = env();
    let m = kv_backup(
        &e,
        VaultKvSource::builder(token_conn(&fake))
            .list_page_size(1)
            .build()
            .unwrap(),
    )
    .await;
    let a = &m.artifacts[0];
    assert_eq!(a.facts["secrets"], 2);
    assert_eq!(a.facts["current_deleted"], 1);
    assert_eq!(a.facts["unlistable_paths"], 1);
    let doc = plain_of(&e, a).await;
    let gone = doc["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "gone/b")
        .unwrap();
    assert_eq!(gone["current_deleted"], true);
    assert!(gone.get("data").is_none());
    assert_eq!(doc["unlistable"], json!(["locked/"]));
    // Paging was used (limit=1 with after=).
    assert!(fake.requests().iter().any(|r| r.path.contains("after=")));

    fake.wipe("secret");
    let r = restore_component(
        e.sink.clone(),
        &m,
        &e.keyring,
        VaultKvRestorer::new(token_conn(&fake)).unwrap(),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.created, 1);
    assert!(
        r.notes.iter().any(|n| n.contains("deleted at backup time")),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes.iter().any(|n| n.contains("unlistable")),
        "{:?}",
        r.notes
    );
    assert!(fake.get("secret", "gone/b").is_none());
}

#[tokio::test]
async fn kv_with_approle_kubernetes_and_namespace() {
    let fake = FakeVault::start().await;
    fake.enable_approle("role-id-1", "secret-id-topsecret");
    fake.enable_kubernetes("backup", "eyJhbGciOiJSUzI1NiJ9.sa-jwt.sig");
    fake.enable_kv_in("team-a", "kv", 2);
    fake.put_in(
        "team-a",
        "kv",
        "db/creds",
        json!({"password": "ns-secret-value"}),
    );
    let e = env();

    let approle = VaultConnection::new(
        &fake.url(),
        VaultAuth::approle("role-id-1", "secret-id-topsecret"),
    )
    .unwrap()
    .namespace("team-a");
    let m = kv_backup(&e, VaultKvSource::builder(approle.clone()).build().unwrap()).await;
    assert_eq!(m.artifacts.len(), 1);
    assert_eq!(m.artifacts[0].name, "kv/kv.json");
    assert_eq!(m.artifacts[0].facts["namespace"], "team-a/");
    assert_eq!(m.artifacts[0].facts["secrets"], 1);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.namespace.as_deref() == Some("team-a/")));
    assert_eq!(fake.logins(), 1);

    // A revoked login token is replaced by logging in again.
    fake.revoke_login_tokens();
    kv_backup(&e, VaultKvSource::builder(approle).build().unwrap()).await;
    assert!(fake.logins() >= 2);

    let tmp = tempfile::tempdir().unwrap();
    let jwt = tmp.path().join("token");
    std::fs::write(&jwt, "eyJhbGciOiJSUzI1NiJ9.sa-jwt.sig\n").unwrap();
    let kube = VaultConnection::new(
        &fake.url(),
        VaultAuth::kubernetes("backup").with_jwt_path(&jwt),
    )
    .unwrap();
    let m = kv_backup(&e, VaultKvSource::builder(kube).build().unwrap()).await;
    assert_eq!(m.artifacts[0].name, "kv/secret.json");

    // Without read on sys/mounts: configured mounts are looked up one by one; a policy 403
    // on a path is not taken for an expired token (no extra login).
    fake.deny_mount_table();
    fake.deny("secret/private/");
    fake.put("secret", "private/x", json!({"v": "p"}));
    fake.put("secret", "public/y", json!({"v": "q"}));
    let logins = fake.logins();
    let approle = VaultConnection::new(
        &fake.url(),
        VaultAuth::approle("role-id-1", "secret-id-topsecret"),
    )
    .unwrap();
    let m = kv_backup(
        &e,
        VaultKvSource::builder(approle)
            .mount("secret")
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(m.artifacts[0].facts["secrets"], 1);
    assert_eq!(m.artifacts[0].facts["unlistable_paths"], 1);
    assert_eq!(fake.logins(), logins + 1);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path == "/v1/sys/internal/ui/mounts/secret"));

    // Wrong credentials: a clear unauthenticated error, no run.
    let bad = VaultConnection::new(&fake.url(), VaultAuth::approle("role-id-1", "wrong")).unwrap();
    let report = Pipeline::builder()
        .source(VaultKvSource::builder(bad).build().unwrap())
        .sink(e.sink.clone())
        .encryption(e.encryption.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let f = &report.manifest.failures[0].error;
    assert!(f.contains("unauthenticated"), "{f}");
    assert!(!f.contains("wrong"), "{f}");
}

#[tokio::test]
async fn kv_export_refuses_to_store_unencrypted_unless_opted_out() {
    let fake = FakeVault::start().await;
    fake.put("secret", "a", json!({"v": "plain-risk"}));
    let e = env();
    let build = |opt_out: bool| {
        Pipeline::builder()
            .source(VaultKvSource::builder(token_conn(&fake)).build().unwrap())
            .sink(e.sink.clone())
            .store_secrets_unencrypted(opt_out)
            .build()
            .unwrap()
    };
    let r = build(false).run().await.unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.manifest.failures[0].error.contains("no encryption"));
    let r = build(true).run().await.unwrap();
    assert_eq!(r.status, RunStatus::Complete);
}

#[tokio::test]
async fn sealed_standby_or_uninitialised_vault_gives_a_clear_error_and_no_run() {
    for (state, expect) in [
        (HealthState::Sealed, "Vault is sealed"),
        (HealthState::Standby, "standby"),
        (HealthState::Uninitialized, "not initialised"),
    ] {
        let fake = FakeVault::start().await;
        fake.set_health(state);
        let e = env();
        for source in [
            Arc::new(RaftSnapshotSource::new(token_conn(&fake)).unwrap()) as Arc<dyn Source>,
            Arc::new(VaultKvSource::builder(token_conn(&fake)).build().unwrap()),
        ] {
            let report = Pipeline::builder()
                .source(source)
                .sink(e.sink.clone())
                .encryption(e.encryption.clone())
                .build()
                .unwrap()
                .run()
                .await
                .unwrap();
            assert_eq!(report.status, RunStatus::Failed, "{state:?}");
            assert!(report.manifest.artifacts.is_empty());
            let f = &report.manifest.failures[0];
            assert_eq!(f.operation, "preflight");
            assert!(f.error.contains(expect), "{state:?}: {}", f.error);
            assert!(f.error.contains("hint:"), "{}", f.error);
            assert!(!e.dir.join(report.run_id.manifest_key().as_str()).exists());
        }
        // No snapshot was ever requested.
        assert!(!fake
            .requests()
            .iter()
            .any(|r| r.path.contains("raft/snapshot")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_or_token_in_trace_output() {
    let capture = TraceCapture::install();
    let fake = FakeVault::start().await;
    let values = populate(&fake);
    fake.enable_approle("role-id-trace", "secret-id-trace-0xdeadbeef");
    let e = env();
    let approle = VaultConnection::new(
        &fake.url(),
        VaultAuth::approle("role-id-trace", "secret-id-trace-0xdeadbeef"),
    )
    .unwrap();
    let m = kv_backup(&e, VaultKvSource::builder(approle.clone()).build().unwrap()).await;
    let snap = snapshot_run(&e, &fake).await;
    assert!(snap.is_complete());
    fake.wipe("secret");
    fake.wipe("legacy");
    restore_component(
        e.sink.clone(),
        &m,
        &e.keyring,
        VaultKvRestorer::new(approle).unwrap(),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    // A failing call too (errors are traced).
    let bad =
        VaultConnection::new(&fake.url(), VaultAuth::token("hvs.bad-token-never-log")).unwrap();
    let _ = Pipeline::builder()
        .source(VaultKvSource::builder(bad).build().unwrap())
        .sink(e.sink.clone())
        .encryption(e.encryption.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    std::io::stdout().flush().ok();
    let mut needles = values;
    needles.extend(fake.valid_tokens());
    needles.push("secret-id-trace-0xdeadbeef".into());
    needles.push("hvs.bad-token-never-log".into());
    capture.assert_free_of(&needles);
}

/// KV mounts and versions seeded through the fake's API as a Vault client would: mounts
/// enabled with `sys/mounts`, versions soft-deleted and destroyed.
mod kv_api;

/// Raft snapshots: streamed, verified, restored; failed and foreign snapshots.
mod keys;
mod snapshots;

use snapshots::snapshot_run;
