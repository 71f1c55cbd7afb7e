//! [`HelmValuesRestorer`] writing the values of two releases, backed up by
//! [`HelmValuesSource`] from Helm's release Secrets in the fake API server (encrypted), as
//! values files into a directory.
//!
//! The state is every file under a fresh root, the values files parsed (so that the
//! comparison is of values, not of YAML layout), anything else as it is; the writes a
//! fingerprint of the root's tree. Each release is restored in turn, so a cancellation or
//! damage found in the second leaves the first restored (the plan reads both first).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_backup::core::{MemorySink, Pipeline, Restorer, RunStatus};
use stoa_backup::providers::kubernetes::{HelmValuesRestorer, HelmValuesSource};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::kube_fake::FakeKube;
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, CancelOutcome, Capabilities, DigestCheck, HarnessBackup,
    RestorerHarness, TargetState,
};

use super::{canonical, fingerprint};
use crate::kubernetes::helm::{fixture_values, three_revisions};

const NS: &str = "stoa-system";

/// Every file under `dir` by relative path: `.values.yaml` files as their parsed values,
/// others (leftovers) as text.
fn tree(dir: &Path) -> TargetState {
    fn walk(dir: &Path, rel: &str, out: &mut TargetState) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = format!("{rel}{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &format!("{name}/"), out);
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap();
            let v = if name.ends_with(".values.yaml") {
                serde_saphyr::from_str::<Value>(&text)
                    .map(|v| canonical(&v))
                    .unwrap_or_else(|e| format!("unparsable: {e}"))
            } else {
                text
            };
            out.insert(name, v);
        }
    }
    let mut out = TargetState::new();
    walk(dir, "", &mut out);
    out
}

struct HelmHarness {
    kube: FakeKube,
    root: Mutex<tempfile::TempDir>,
}

impl HelmHarness {
    async fn new() -> Self {
        let kube = FakeKube::start().await;
        // `stoa` (revision 2 deployed, with values) and `other` (no values of its own).
        three_revisions(&kube);
        HelmHarness {
            kube,
            root: Mutex::new(tempfile::tempdir().unwrap()),
        }
    }

    fn root(&self) -> PathBuf {
        self.root.lock().unwrap().path().to_path_buf()
    }
}

#[async_trait]
impl RestorerHarness for HelmHarness {
    fn name(&self) -> String {
        "helm values".into()
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
            .source(
                HelmValuesSource::builder(self.kube.client())
                    .namespace(NS)
                    .build()
                    .unwrap(),
            )
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
        assert_eq!(report.manifest.artifacts.len(), 2, "one per release");
        HarnessBackup {
            sink,
            manifest: report.manifest,
            keyring,
        }
    }

    async fn source_state(&self) -> TargetState {
        [
            (
                format!("{NS}/stoa.values.yaml"),
                canonical(&fixture_values()),
            ),
            (format!("{NS}/other.values.yaml"), canonical(&json!({}))),
        ]
        .into()
    }

    async fn fresh_target(&self) {
        *self.root.lock().unwrap() = tempfile::tempdir().unwrap();
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        Arc::new(HelmValuesRestorer::new(self.root()).print_command(false))
    }

    async fn target_state(&self) -> TargetState {
        tree(&self.root())
    }

    async fn populate_target_differently(&self) {
        let dir = self.root().join(NS);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stoa.values.yaml"),
            "gateway:\n  image:\n    tag: changed-since\n",
        )
        .unwrap();
    }

    async fn writes(&self) -> u64 {
        fingerprint(&self.root())
    }
}

#[tokio::test]
async fn the_helm_values_restorer_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&HelmHarness::new().await).await;
}
