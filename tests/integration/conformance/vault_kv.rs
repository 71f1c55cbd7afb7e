//! [`VaultKvRestorer`] restoring a KV v2 mount and a KV v1 mount (one artifact each),
//! backed up by [`VaultKvSource`] from the fake Vault, into a fresh fake Vault with the same
//! mounts enabled.
//!
//! The state is every backed-up secret's current data; the writes are the write requests
//! (`POST`, `PUT`, `PATCH`, `DELETE`, logins aside) the target's log holds. Each mount is
//! restored in turn, so a cancellation or damage found in the second leaves the first
//! restored (the plan reads both first).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;
use stoa_backup::core::{MemorySink, Pipeline, Restorer, RunStatus};
use stoa_backup::providers::vault::{VaultAuth, VaultConnection, VaultKvRestorer, VaultKvSource};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, CancelOutcome, Capabilities, DigestCheck, HarnessBackup,
    RestorerHarness, TargetState,
};
use stoa_backup_test_support::vault_fake::FakeVault;

use super::canonical;

/// (mount, path) of every secret the source holds.
const SECRETS: [(&str, &str); 6] = [
    ("secret", "apps/api/db"),
    ("secret", "apps/api/tls"),
    ("secret", "apps/worker/queue"),
    ("secret", "top level"),
    ("legacy", "svc/a/key"),
    ("legacy", "svc/b/key"),
];

fn data(i: usize) -> serde_json::Value {
    json!({"password": format!("kv-s3cr3t-{i:02}"), "port": 5400 + i, "tls": i.is_multiple_of(2)})
}

fn conn(fake: &FakeVault) -> VaultConnection {
    VaultConnection::new(&fake.url(), VaultAuth::token(fake.root_token())).unwrap()
}

/// A fresh node with the mounts the backup restores into.
async fn target() -> FakeVault {
    let fake = FakeVault::start().await;
    fake.enable_kv("legacy", 1);
    fake
}

fn state_of(fake: &FakeVault) -> TargetState {
    SECRETS
        .iter()
        .filter_map(|(m, p)| Some((format!("{m}/{p}"), canonical(&fake.get(m, p)?))))
        .collect()
}

struct VaultKvHarness {
    source: FakeVault,
    target: Mutex<Arc<FakeVault>>,
}

impl VaultKvHarness {
    async fn new() -> Self {
        let source = target().await;
        for (i, (m, p)) in SECRETS.iter().enumerate() {
            source.put(m, p, data(i));
        }
        VaultKvHarness {
            source,
            target: Mutex::new(Arc::new(target().await)),
        }
    }

    fn target(&self) -> Arc<FakeVault> {
        self.target.lock().unwrap().clone()
    }
}

#[async_trait]
impl RestorerHarness for VaultKvHarness {
    fn name(&self) -> String {
        "vault-kv".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            digest_check: DigestCheck::PerArtifact,
            cancel: CancelOutcome::Partial,
            ..Capabilities::default()
        }
    }

    async fn backup(&self) -> HarnessBackup {
        let (encryption, keyring) = age_keys();
        let sink = Arc::new(MemorySink::new());
        let report = Pipeline::builder()
            .source(VaultKvSource::builder(conn(&self.source)).build().unwrap())
            .sink(sink.clone())
            .encryption(encryption)
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
        assert_eq!(report.manifest.artifacts.len(), 2, "one artifact per mount");
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
        *self.target.lock().unwrap() = Arc::new(target().await);
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        Arc::new(VaultKvRestorer::new(conn(&self.target())).unwrap())
    }

    async fn target_state(&self) -> TargetState {
        state_of(&self.target())
    }

    async fn populate_target_differently(&self) {
        let t = self.target();
        t.put(
            "secret",
            "apps/api/db",
            json!({"password": "changed-since"}),
        );
        t.put("legacy", "svc/a/key", json!({"api_key": "changed-too"}));
    }

    async fn writes(&self) -> u64 {
        self.target()
            .requests()
            .iter()
            .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
            .filter(|r| !r.path.starts_with("/v1/auth/"))
            .count() as u64
    }
}

#[tokio::test]
async fn the_vault_kv_restorer_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&VaultKvHarness::new().await).await;
}
