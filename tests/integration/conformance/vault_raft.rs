//! [`RaftSnapshotRestorer`] (with `force`: the target is another cluster, sealed with other
//! keys) restoring a raft snapshot taken by [`RaftSnapshotSource`] from one fake Vault into
//! another.
//!
//! A cluster always holds a state, which a snapshot replaces whole: the restore into a
//! fresh cluster is made under `Overwrite`, `Fail` conflicts, `Skip` leaves the cluster
//! alone. The state is the digest of the snapshot the cluster's state came from (its own
//! until one is installed); the writes are the snapshots it installed. An upload that
//! breaks off (the artifact damaged, the restore cancelled) reaches the server but is not
//! installed: the fake, like Vault, checks the whole archive first.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use stoa_backup::core::{ExistingDataPolicy, MemorySink, Pipeline, Restorer, RunStatus};
use stoa_backup::providers::vault::{
    RaftSnapshotRestorer, RaftSnapshotSource, RaftSnapshotVerifier, VaultAuth, VaultConnection,
};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, Capabilities, ExistingData, HarnessBackup, RestorerHarness,
    TargetState,
};
use stoa_backup_test_support::vault_fake::FakeVault;

fn conn(fake: &FakeVault) -> VaultConnection {
    VaultConnection::new(&fake.url(), VaultAuth::token(fake.root_token())).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh cluster with a small state (snapshots of 64 KiB).
async fn cluster() -> FakeVault {
    let fake = FakeVault::start().await;
    fake.set_snapshot_size(64 << 10);
    fake
}

fn state_of(fake: &FakeVault) -> TargetState {
    let digest = match fake.restores().last() {
        Some(r) => r.sha256.clone(),
        None => hex(&Sha256::digest(fake.snapshot_bytes())),
    };
    [("cluster state".to_string(), digest)].into()
}

struct VaultRaftHarness {
    source: FakeVault,
    target: Mutex<Arc<FakeVault>>,
}

impl VaultRaftHarness {
    async fn new() -> Self {
        VaultRaftHarness {
            source: cluster().await,
            target: Mutex::new(Arc::new(cluster().await)),
        }
    }

    fn target(&self) -> Arc<FakeVault> {
        self.target.lock().unwrap().clone()
    }
}

#[async_trait]
impl RestorerHarness for VaultRaftHarness {
    fn name(&self) -> String {
        "vault-raft-snapshot".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            empty_target_policy: ExistingDataPolicy::Overwrite,
            existing: ExistingData::Whole,
            ..Capabilities::default()
        }
    }

    async fn backup(&self) -> HarnessBackup {
        let (encryption, keyring) = age_keys();
        let sink = Arc::new(MemorySink::new());
        let report = Pipeline::builder()
            .source(RaftSnapshotSource::new(conn(&self.source)).unwrap())
            .sink(sink.clone())
            .encryption(encryption)
            .keyring(keyring.clone())
            .verifier(RaftSnapshotVerifier)
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
        *self.target.lock().unwrap() = Arc::new(cluster().await);
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        Arc::new(
            RaftSnapshotRestorer::new(conn(&self.target()))
                .unwrap()
                .force(true),
        )
    }

    async fn target_state(&self) -> TargetState {
        state_of(&self.target())
    }

    async fn populate_target_differently(&self) {
        // A cluster holds its own state from the start, which differs from the source's.
    }

    async fn writes(&self) -> u64 {
        self.target().restores().len() as u64
    }
}

#[tokio::test]
async fn the_raft_snapshot_restorer_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&VaultRaftHarness::new().await).await;
}
