//! [`KcShRestorer`] importing a kc.sh export (taken by [`KcShSource`] through the fake API
//! server's pod exec and the test-support kc.sh stand-in) into another stand-in's empty
//! Keycloak "database".
//!
//! `kc.sh import` takes a realm whole: an existing realm is left alone (`--override false`:
//! a conflict under `Fail`, skipped under `Skip`) or replaced (`Overwrite`). Nothing can be
//! asked of the pod without importing, so the plan counts as into an empty Keycloak and the
//! apply finds an existing realm. The state is the realm (users and their credential hashes
//! included); the writes a fingerprint of the database.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_backup::core::{MemorySink, Pipeline, Restorer, RunStatus};
use stoa_backup::providers::keycloak::{KcShExportVerifier, KcShRestorer, KcShSource};
use stoa_backup::providers::kubernetes::PodExec;
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::keycloak_fake::FakeKeycloak;
use stoa_backup_test_support::kube_fake::kcsh::{KcShDb, KcShStandIn, CONTAINER, NAMESPACE, POD};
use stoa_backup_test_support::kube_fake::FakeKube;
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, Capabilities, ExistingData, HarnessBackup, RestorerHarness,
    TargetState,
};

use super::canonical;

const REALM: &str = "stoa";

fn exec(kube: &FakeKube) -> PodExec {
    PodExec::new(kube.client(), NAMESPACE, POD).container(CONTAINER)
}

fn state_of(db: &KcShDb) -> TargetState {
    match db.lock().unwrap().as_ref() {
        Some(realm) => [(format!("realm {REALM}"), canonical(realm))].into(),
        None => TargetState::new(),
    }
}

/// A Keycloak (its database) and the pod whose kc.sh works on it.
struct Keycloak {
    db: KcShDb,
    kube: FakeKube,
}

async fn keycloak(realm: Option<Value>) -> Keycloak {
    let db: KcShDb = Arc::new(Mutex::new(realm));
    let kube = KcShStandIn::new(db.clone()).start_kube().await;
    Keycloak { db, kube }
}

struct KcShHarness {
    source: Keycloak,
    target: Mutex<Arc<Keycloak>>,
}

impl KcShHarness {
    async fn new() -> Self {
        // The fixture realm: 7 users with credentials, 4 service accounts.
        let realm = FakeKeycloak::start()
            .await
            .realm_representation(REALM)
            .unwrap();
        KcShHarness {
            source: keycloak(Some(realm)).await,
            target: Mutex::new(Arc::new(keycloak(None).await)),
        }
    }

    fn target(&self) -> Arc<Keycloak> {
        self.target.lock().unwrap().clone()
    }
}

#[async_trait]
impl RestorerHarness for KcShHarness {
    fn name(&self) -> String {
        "keycloak (kc.sh)".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            existing: ExistingData::Whole,
            plan_sees_target: false,
            ..Capabilities::default()
        }
    }

    async fn backup(&self) -> HarnessBackup {
        let (encryption, keyring) = age_keys();
        let sink = Arc::new(MemorySink::new());
        let report = Pipeline::builder()
            .source(KcShSource::new(exec(&self.source.kube), REALM).unwrap())
            .sink(sink.clone())
            .encryption(encryption)
            .keyring(keyring.clone())
            .verifier(KcShExportVerifier)
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
        state_of(&self.source.db)
    }

    async fn fresh_target(&self) {
        *self.target.lock().unwrap() = Arc::new(keycloak(None).await);
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        Arc::new(KcShRestorer::new(exec(&self.target().kube)))
    }

    async fn target_state(&self) -> TargetState {
        state_of(&self.target().db)
    }

    async fn populate_target_differently(&self) {
        *self.target().db.lock().unwrap() = Some(json!({
            "realm": REALM, "enabled": true, "displayName": "changed since",
            "users": [{"username": "someone-else", "enabled": true}],
        }));
    }

    async fn writes(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.target()
            .db
            .lock()
            .unwrap()
            .as_ref()
            .map(|v| v.to_string())
            .hash(&mut h);
        h.finish()
    }
}

#[tokio::test]
async fn the_kcsh_restorer_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&KcShHarness::new().await).await;
}
