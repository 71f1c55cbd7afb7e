//! Raft snapshots against the fake Vault: streamed, verified and restored; truncated,
//! empty-sealed and foreign snapshots; a Vault without raft storage.

use super::*;

pub(super) async fn snapshot_run(e: &Env, fake: &FakeVault) -> stoa_backup::core::RunReport {
    Pipeline::builder()
        .source(RaftSnapshotSource::new(token_conn(fake)).unwrap())
        .sink(e.sink.clone())
        .encryption(e.encryption.clone())
        .keyring(e.keyring.clone())
        .verifier(RaftSnapshotVerifier)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
}

#[tokio::test]
async fn snapshot_backup_verify_and_restore() {
    let fake = FakeVault::start().await;
    let e = env();
    let report = snapshot_run(&e, &fake).await;
    assert_eq!(
        report.status,
        RunStatus::Complete,
        "{:?}",
        report.manifest.failures
    );
    let a = &report.manifest.artifacts[0];
    assert_eq!(a.name, "raft.snap");
    assert!(a.sensitive);
    let snap = fake.snapshot_bytes();
    assert!(snap.len() > 2 << 20);
    assert_eq!(a.plain_size, snap.len() as u64);
    assert!(a.facts["keys_needed"]
        .as_str()
        .unwrap()
        .contains("unseal keys"));
    assert!(a.facts["keys_needed"]
        .as_str()
        .unwrap()
        .contains("recovery keys"));
    assert_eq!(a.facts["vault_version"], "1.17.2");
    assert_eq!(a.facts["storage_type"], "raft");
    assert_eq!(a.facts["state_bytes"], 3 << 20);
    assert!(a
        .verification
        .iter()
        .any(|v| v.verifier == "vault-raft-snapshot" && v.ok));

    let restorer = RaftSnapshotRestorer::new(token_conn(&fake)).unwrap();
    let restore = |existing, dry_run| {
        restore_component(
            e.sink.clone(),
            &report.manifest,
            &e.keyring,
            restorer.clone(),
            existing,
            dry_run,
        )
    };
    let counts =
        |r: &stoa_backup::core::RestoreReport| (r.created, r.updated, r.skipped, r.conflicts);
    // Fail: the plan counts the cluster's state as a conflict, and the restore is refused.
    let planned = restore(ExistingDataPolicy::Fail, true).await.unwrap();
    assert_eq!(counts(&planned), (0, 0, 0, 1), "{planned:?}");
    let err = restore(ExistingDataPolicy::Fail, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(fake.restores().is_empty());
    // Skip: the cluster's state is left alone, in the plan as in the restore.
    let planned = restore(ExistingDataPolicy::Skip, true).await.unwrap();
    let r = restore(ExistingDataPolicy::Skip, false).await.unwrap();
    assert_eq!(counts(&planned), (0, 0, 1, 0), "{planned:?}");
    assert_eq!(counts(&r), counts(&planned), "{r:?}");
    assert!(fake.restores().is_empty());
    // Overwrite: the plan checks, sends nothing, and counts what the restore does.
    let planned = restore(ExistingDataPolicy::Overwrite, true).await.unwrap();
    assert!(planned.dry_run && fake.restores().is_empty());
    let r = restore(ExistingDataPolicy::Overwrite, false).await.unwrap();
    assert_eq!(r.updated, 1);
    assert_eq!(
        counts(&planned),
        counts(&r),
        "the plan counts what the restore did: {planned:?} / {r:?}"
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("initialised and unsealed")),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes.iter().any(|n| n.contains("may stop working")),
        "{:?}",
        r.notes
    );
    let restores = fake.restores();
    assert_eq!(restores.len(), 1);
    assert!(!restores[0].force);
    assert_eq!(restores[0].size, snap.len());
    assert_eq!(
        restores[0].sha256,
        stoa_backup::core::codec::sha256_hex(&snap)
    );

    // A sealed target: clear error, nothing sent.
    fake.set_health(HealthState::Sealed);
    let err = restore(ExistingDataPolicy::Overwrite, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sealed"), "{err}");
    assert_eq!(fake.restores().len(), 1);
}

/// A source serving fixed bytes as if they were a raft snapshot (to test the verifier alone).
#[derive(Debug)]
struct FixedSnapshot(bytes::Bytes);

#[async_trait]
impl Source for FixedSnapshot {
    fn component(&self) -> &str {
        "vault-snapshot"
    }
    fn provider(&self) -> &str {
        "vault-raft-snapshot"
    }
    async fn preflight(&self) -> stoa_backup::core::Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> stoa_backup::core::Result<Vec<ArtifactPlan>> {
        Ok(vec![
            ArtifactPlan::new("raft.snap", "application/gzip").sensitive(true)
        ])
    }
    async fn export(
        &self,
        _: &ArtifactPlan,
        _: &ExportContext,
    ) -> stoa_backup::core::Result<Export> {
        Ok(Export::new(stoa_backup::core::stream::once(self.0.clone())))
    }
}

#[tokio::test]
async fn snapshot_verifier_rejects_truncated_and_empty_sealed() {
    let fake = FakeVault::start().await;
    fake.set_snapshot_size(256 << 10);
    let good = fake.snapshot_bytes();
    for (bytes, expect) in [
        (good.slice(..good.len() * 3 / 4), "truncated"),
        (good.slice(..good.len() - 3), "truncated"),
        (
            fake.snapshot_with_empty_seal(),
            "SHA256SUMS.sealed is empty",
        ),
    ] {
        let report = verified_snapshot_run(bytes).await;
        assert_ne!(report.status, RunStatus::Complete);
        let f = &report.manifest.failures[0];
        assert_eq!(f.operation, "verify");
        assert!(f.error.contains(expect), "{}", f.error);
    }
    // The good one passes.
    let report = verified_snapshot_run(good).await;
    assert_eq!(report.status, RunStatus::Complete);
}

/// Backs up `bytes` as a snapshot, verified by the snapshot verifier, into a fresh sink.
async fn verified_snapshot_run(bytes: bytes::Bytes) -> stoa_backup::core::RunReport {
    let e = env();
    Pipeline::builder()
        .source(FixedSnapshot(bytes))
        .sink(e.sink.clone())
        .encryption(e.encryption.clone())
        .keyring(e.keyring.clone())
        .verifier(RaftSnapshotVerifier)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_snapshots_from_vault_never_make_a_run() {
    for (fault, expect) in [
        (SnapshotFault::Truncated, "truncated"),
        (SnapshotFault::EmptySealed, "SHA256SUMS.sealed is empty"),
        (SnapshotFault::NotRaft, "raft storage is not in use"),
    ] {
        let fake = FakeVault::start().await;
        fake.set_snapshot_size(512 << 10);
        fake.set_snapshot_fault(fault);
        let e = env();
        let report = snapshot_run(&e, &fake).await;
        assert_ne!(report.status, RunStatus::Complete, "{fault:?}");
        let err = &report.manifest.failures[0].error;
        assert!(err.contains(expect), "{fault:?}: {err}");
        assert!(!e.dir.join(report.run_id.manifest_key().as_str()).exists());
    }
}

/// A Vault without raft storage answers a plain 400: the status (kept on the failure) and
/// Vault's own message tell this case apart, and the failure says what to back up instead.
#[tokio::test]
async fn a_vault_without_raft_storage_gets_a_hint() {
    let fake = FakeVault::start().await;
    fake.set_snapshot_fault(SnapshotFault::NotRaft);
    let e = env();
    let report = snapshot_run(&e, &fake).await;
    let f = &report.manifest.failures[0];
    assert_eq!(f.http_status, Some(400), "{}", f.error);
    assert!(
        f.hint
            .as_deref()
            .is_some_and(|h| h.contains("integrated (raft) storage")),
        "{:?}",
        f.hint
    );
    assert_eq!(
        (f.component.as_str(), f.operation.as_str()),
        ("vault-snapshot", "export")
    );
}

#[tokio::test]
async fn foreign_snapshot_needs_force() {
    let fake = FakeVault::start().await;
    let e = env();
    let report = Pipeline::builder()
        .source(FixedSnapshot(fake.foreign_snapshot()))
        .sink(e.sink.clone())
        .encryption(e.encryption.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let restore = |restorer| {
        restore_component(
            e.sink.clone(),
            &report.manifest,
            &e.keyring,
            restorer,
            ExistingDataPolicy::Overwrite,
            false,
        )
    };
    let plain = RaftSnapshotRestorer::new(token_conn(&fake)).unwrap();
    let err = restore(plain).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Restore);
    assert!(err.hint().unwrap().contains("force"), "{err}");
    assert!(fake.restores().is_empty());
    let forced = RaftSnapshotRestorer::new(token_conn(&fake))
        .unwrap()
        .force(true);
    restore(forced).await.unwrap();
    assert!(fake.restores()[0].force);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path.ends_with("snapshot-force")));
}
