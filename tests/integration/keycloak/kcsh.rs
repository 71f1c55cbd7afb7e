//! kc.sh mode through the fake Kubernetes API server's pod exec: the test-support stand-in
//! answers `/opt/keycloak/bin/kc.sh export|import` from (into) an in-memory realm; `tar`, `sh`
//! and `rm` run for real.

use std::sync::{Arc, Mutex};

use stoa_backup::core::verify::VerifyContext;
use stoa_backup::core::{
    ArtifactRecord, ErrorKind, ExistingDataPolicy, Keyring, Manifest, MemorySink, Pipeline,
    SinkExt, Verifier,
};
use stoa_backup::providers::keycloak::{KcShExportVerifier, KcShRestorer, KcShSource, UsersMode};
use stoa_backup::providers::kubernetes::PodExec;
use stoa_backup_test_support::keycloak_fake::FakeKeycloak;
use stoa_backup_test_support::kube_fake::kcsh::{KcShDb, KcShStandIn, CONTAINER, NAMESPACE, POD};
use stoa_backup_test_support::kube_fake::FakeKube;

use crate::restore_support::restore_component;

type Db = KcShDb;

/// A fake kube whose `keycloak/keycloak-0` pod runs the kc.sh stand-in over `db`.
async fn kube_with_kcsh(db: Db, drop_file: Option<usize>) -> FakeKube {
    let mut kcsh = KcShStandIn::new(db);
    if let Some(i) = drop_file {
        kcsh = kcsh.drop_users_file(i);
    }
    kcsh.start_kube().await
}

fn exec(kube: &FakeKube) -> PodExec {
    PodExec::new(kube.client(), NAMESPACE, POD).container(CONTAINER)
}

async fn source_db(users: usize) -> Db {
    let kc = FakeKeycloak::start().await;
    kc.add_users("stoa", users);
    Arc::new(Mutex::new(kc.realm_representation("stoa")))
}

fn repack_without(plain: &[u8], remove: &str) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("x");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(tmp.path().join("a.tar"), plain).unwrap();
    let ok = std::process::Command::new("tar")
        .args(["xf", "a.tar", "-C", "x"])
        .current_dir(tmp.path())
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::remove_file(dir.join(remove)).unwrap();
    let ok = std::process::Command::new("tar")
        .args(["cf", "b.tar", "-C", "x", "."])
        .current_dir(tmp.path())
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::read(tmp.path().join("b.tar")).unwrap()
}

#[tokio::test]
async fn kcsh_export_of_2500_users_in_different_files_restores_and_verifies() {
    let db = source_db(2500).await;
    let total = db.lock().unwrap().as_ref().unwrap()["users"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(total, 2511); // 7 + 2500 + 4 service accounts
    let kube = kube_with_kcsh(db.clone(), None).await;
    let src = KcShSource::new(exec(&kube), "stoa")
        .unwrap()
        .users(UsersMode::DifferentFiles, 500);
    let (encryption, keyring) = stoa_backup_test_support::artifacts::age_keys();
    let sink = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(src)
        .sink(sink.clone())
        .encryption(encryption)
        .keyring(keyring.clone())
        .verifier(KcShExportVerifier)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let a = &report.manifest.artifacts[0];
    assert_eq!(a.name, "stoa-kcsh.tar");
    assert!(a.sensitive);
    assert_eq!(a.facts["users"], 2507);
    assert_eq!(a.facts["service_account_users"], 4);
    let files: Vec<&str> = a.facts["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 7, "{files:?}");
    for i in 0..6 {
        assert!(files.contains(&format!("stoa-users-{i}.json").as_str()));
    }
    assert!(a.verification.iter().all(|v| v.ok), "{:?}", a.verification);
    // The temporary directory was removed in the pod.
    assert!(kube
        .exec_requests()
        .iter()
        .any(|r| r.command.first().map(String::as_str) == Some("rm")));

    // Import into an empty Keycloak "database": every user comes back.
    let target: Db = Arc::new(Mutex::new(None));
    let kube2 = kube_with_kcsh(target.clone(), None).await;
    let restorer = KcShRestorer::new(exec(&kube2));
    let run = |existing, dry_run| {
        restore_component(
            sink.clone(),
            &report.manifest,
            &keyring,
            restorer.clone(),
            existing,
            dry_run,
        )
    };
    let restore = |existing| run(existing, false);
    let counts = |r: &stoa_backup::core::RestoreReport| (r.created, r.updated, r.skipped);
    let planned = run(ExistingDataPolicy::Fail, true).await.unwrap();
    let r = restore(ExistingDataPolicy::Fail).await.unwrap();
    assert_eq!(r.created, 1);
    assert_eq!(counts(&planned), counts(&r), "{planned:?}");
    let restored = target.lock().unwrap().clone().unwrap();
    assert_eq!(restored["users"].as_array().unwrap().len(), 2511);
    // Credentials (hashes) survive in kc.sh mode, unlike over REST.
    let with_creds = restored["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["credentials"].to_string().contains("hashedSaltedValue"))
        .count();
    assert_eq!(with_creds, 2507);
    // Existing realm: FAIL refuses, SKIP skips, OVERWRITE replaces.
    let err = restore(ExistingDataPolicy::Fail).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let r = restore(ExistingDataPolicy::Skip).await.unwrap();
    assert_eq!(r.skipped, 1);
    let planned = run(ExistingDataPolicy::Overwrite, true).await.unwrap();
    let r = restore(ExistingDataPolicy::Overwrite).await.unwrap();
    assert_eq!(r.updated, 1);
    assert_eq!(
        counts(&planned),
        counts(&r),
        "the plan counts the realm replaced"
    );
    let cmds: Vec<String> = kube2
        .exec_requests()
        .iter()
        .map(|r| r.command.join(" "))
        .collect();
    assert!(cmds
        .iter()
        .any(|c| c.contains("import --dir") && c.ends_with("--override true")));
    assert!(cmds.iter().filter(|c| c.starts_with("rm -rf")).count() >= 4);
}

/// A kc.sh backup (50 users per file) of `db`, stored unencrypted in a memory sink so
/// that tests can edit the archive.
async fn kcsh_backup(db: Db) -> (Arc<MemorySink>, Manifest) {
    let kube = kube_with_kcsh(db, None).await;
    let src = KcShSource::new(exec(&kube), "stoa")
        .unwrap()
        .users(UsersMode::DifferentFiles, 50);
    let sink = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(src)
        .sink(sink.clone())
        .store_secrets_unencrypted(true)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert!(report.manifest.artifacts[0].codecs.is_empty());
    (sink, report.manifest)
}

/// Replaces the stored archive by one without `remove`, with the record's hashes and sizes
/// updated, so that only a check of the content against the recorded facts can tell.
async fn remove_from_archive(sink: &MemorySink, a: &mut ArtifactRecord, remove: &str) {
    let plain = sink.get_bytes(&a.key).await.unwrap();
    let broken = repack_without(&plain, remove);
    sink.put_bytes(&a.key, broken.clone().into()).await.unwrap();
    let sha = stoa_backup::core::codec::sha256_hex(&broken);
    a.stored_sha256 = sha.clone();
    a.plain_sha256 = sha;
    a.stored_size = broken.len() as u64;
    a.plain_size = broken.len() as u64;
}

#[tokio::test]
async fn verifier_fails_when_a_users_file_is_missing() {
    let (sink, mut m) = kcsh_backup(source_db(120).await).await;
    let a = &mut m.artifacts[0];
    let ctx = VerifyContext {
        sink: sink.as_ref(),
        artifact: a,
        keyring: &Keyring::new(),
    };
    assert!(KcShExportVerifier.verify(&ctx).await.unwrap().ok);

    remove_from_archive(&sink, a, "stoa-users-1.json").await;
    let ctx = VerifyContext {
        sink: sink.as_ref(),
        artifact: a,
        keyring: &Keyring::new(),
    };
    let rec = KcShExportVerifier.verify(&ctx).await.unwrap();
    assert!(!rec.ok);
    assert!(
        rec.detail.contains("stoa-users-1.json is missing"),
        "{}",
        rec.detail
    );
}

/// 7 fixture users + 591 + 4 service accounts: 602 users in 13 files of 50 (`-users-0` to
/// `-users-12`), 598 of them regular users.
async fn backup_of_602_users() -> (Db, Arc<MemorySink>, Manifest) {
    let db = source_db(591).await;
    let (sink, m) = kcsh_backup(db.clone()).await;
    let a = &m.artifacts[0];
    assert_eq!(a.facts["users"], 598);
    assert_eq!(a.facts["service_account_users"], 4);
    assert_eq!(
        a.facts["files"].as_array().unwrap().len(),
        14,
        "{:?}",
        a.facts
    );
    (db, sink, m)
}

/// Restores an archive repacked without `remove` with every policy, dry and real: each
/// must refuse with an integrity error naming the missing file before anything is
/// imported (bug 8: the real restore imported 552 of 602 users and said "imported"). The
/// driver's plan reads and checks the archive first, so even a real restore is refused
/// before any command reaches the pod.
async fn every_restore_refuses_an_archive_without(remove: &str, users_left: u64) {
    let (original, sink, mut m) = backup_of_602_users().await;
    remove_from_archive(&sink, &mut m.artifacts[0], remove).await;
    let a = &m.artifacts[0];
    let existing = original.lock().unwrap().clone();
    let cases = [
        ("dry run", true, ExistingDataPolicy::Fail, None),
        ("default", false, ExistingDataPolicy::Fail, None),
        ("skip", false, ExistingDataPolicy::Skip, None),
        (
            "overwrite",
            false,
            ExistingDataPolicy::Overwrite,
            existing.clone(),
        ),
        (
            "overwrite dry run",
            true,
            ExistingDataPolicy::Overwrite,
            existing,
        ),
    ];
    // Every case is checked, then all failures are reported together.
    let mut failures = Vec::new();
    for (case, dry_run, existing, before) in cases {
        let target: Db = Arc::new(Mutex::new(before.clone()));
        let kube = kube_with_kcsh(target.clone(), None).await;
        let restorer = KcShRestorer::new(exec(&kube));
        let outcome = restore_component(
            sink.clone(),
            &m,
            &Keyring::new(),
            restorer,
            existing,
            dry_run,
        )
        .await;
        let users_now = target
            .lock()
            .unwrap()
            .as_ref()
            .map(|r| r["users"].as_array().map_or(0, Vec::len));
        let cmds: Vec<String> = kube
            .exec_requests()
            .iter()
            .map(|r| r.command.join(" "))
            .collect();
        let mut problems = Vec::new();
        match &outcome {
            Ok(report) => problems.push(format!("restored: {report:?}")),
            Err(err) => {
                let text = err.to_string();
                if err.kind() != ErrorKind::Integrity {
                    problems.push(format!("kind {:?}", err.kind()));
                }
                if !text.contains(&format!("{remove} is missing")) {
                    problems.push("the missing file is not named".into());
                }
                if !text.contains(&format!("{users_left} users in the archive, 598 recorded")) {
                    problems.push("the user counts are not given".into());
                }
                if err.component() != Some("keycloak") || err.operation() != Some("restore") {
                    problems.push("component or operation missing".into());
                }
                if err.artifact() != Some(a.key.to_string().as_str()) {
                    problems.push("artifact missing".into());
                }
            }
        }
        // Nothing was imported: the target holds what it held before.
        if *target.lock().unwrap() != before {
            problems.push(format!("the target changed: {users_now:?} users now"));
        }
        if cmds.iter().any(|c| c.contains("kc.sh import")) {
            problems.push("kc.sh import ran".into());
        }
        if !cmds.is_empty() {
            problems.push(format!("the refused restore touched the pod: {cmds:?}"));
        }
        if !problems.is_empty() {
            let said = outcome.map_or_else(|e| e.to_string(), |_| "Ok".into());
            failures.push(format!("{case}: {} ({said})", problems.join(", ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_restore_refuses_an_archive_missing_a_middle_users_file() {
    every_restore_refuses_an_archive_without("stoa-users-5.json", 548).await;
}

/// The last file leaves no gap in the numbering: only the recorded facts show it is gone.
#[tokio::test]
async fn every_restore_refuses_an_archive_missing_the_last_users_file() {
    every_restore_refuses_an_archive_without("stoa-users-12.json", 596).await;
}

#[tokio::test]
async fn an_export_missing_a_users_file_fails_the_run() {
    let db = source_db(120).await;
    let kube = kube_with_kcsh(db, Some(1)).await;
    let src = KcShSource::new(exec(&kube), "stoa")
        .unwrap()
        .users(UsersMode::DifferentFiles, 50);
    let report = Pipeline::builder()
        .source(src)
        .sink(MemorySink::new())
        .store_secrets_unencrypted(true)
        .attempts(1)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(!report.is_complete());
    let err = report.into_result().unwrap_err().to_string();
    assert!(err.contains("stoa-users-1.json is missing"), "{err}");
}
