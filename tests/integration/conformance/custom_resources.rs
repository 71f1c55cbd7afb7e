//! [`CustomResourcesRestorer`] (server-side apply; field-manager conflicts forced, as an
//! operator restoring over a cluster does) restoring the STOA CRDs and custom resources
//! backed up by [`CustomResourcesSource`] from the fake API server into a fresh one.
//!
//! The state is every gostoa.dev object and CRD, stripped of what the server keeps for
//! itself (as the backup is); the writes are the requests other than reads and server-side
//! dry runs. Every artifact is read before the first request about an object.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use stoa_backup::core::{Keyring, MemorySink, Pipeline, Restorer, RunStatus};
use stoa_backup::providers::kubernetes::{
    ConflictPolicy, CustomResourcesRestorer, CustomResourcesSource,
};
use stoa_backup_test_support::kube_fake::FakeKube;
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, Capabilities, HarnessBackup, RestorerHarness, TargetState,
};

use super::canonical;
use crate::kubernetes::support::{is_read_or_dry_run, operator_marks, snapshot, tool_spec, V};

const NS: &str = "tenant-0";

fn state_of(fake: &FakeKube) -> TargetState {
    snapshot(fake)
        .into_iter()
        .map(|(k, v)| (k, canonical(&v)))
        .collect()
}

struct CustomResourcesHarness {
    source: FakeKube,
    target: Mutex<Arc<FakeKube>>,
}

impl CustomResourcesHarness {
    async fn new() -> Self {
        let source = FakeKube::start().await;
        source.load_fixture_crds();
        source.load_fixture_resources();
        source.put_as(
            operator_marks(json!({"apiVersion": V, "kind": "GatewayInstance",
                "metadata": {"name": "gw-0", "namespace": NS},
                "spec": {"displayName": "Gateway 0", "gatewayType": "stoa", "environment": "prod",
                         "baseUrl": "http://gw-0.tenant-0:8080", "capabilities": ["rest", "mcp"]}})),
            "kopf",
        );
        for t in 0..3 {
            source.put_as(
                operator_marks(json!({"apiVersion": V, "kind": "Tool",
                    "metadata": {"name": format!("tool-{t}"), "namespace": NS},
                    "spec": tool_spec(t)})),
                "kopf",
            );
        }
        CustomResourcesHarness {
            source,
            target: Mutex::new(Arc::new(FakeKube::start().await)),
        }
    }

    fn target(&self) -> Arc<FakeKube> {
        self.target.lock().unwrap().clone()
    }
}

#[async_trait]
impl RestorerHarness for CustomResourcesHarness {
    fn name(&self) -> String {
        "kubernetes custom resources".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn backup(&self) -> HarnessBackup {
        let sink = Arc::new(MemorySink::new());
        let report = Pipeline::builder()
            .source(
                CustomResourcesSource::builder(self.source.client())
                    .build()
                    .unwrap(),
            )
            .sink(sink.clone())
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
            keyring: Keyring::new(),
        }
    }

    async fn source_state(&self) -> TargetState {
        state_of(&self.source)
    }

    async fn fresh_target(&self) {
        *self.target.lock().unwrap() = Arc::new(FakeKube::start().await);
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        Arc::new(
            CustomResourcesRestorer::builder(self.target().client())
                .conflicts(ConflictPolicy::Force)
                .establish_timeout(Duration::from_secs(10))
                .poll_interval(Duration::from_millis(20))
                .build()
                .unwrap(),
        )
    }

    async fn target_state(&self) -> TargetState {
        state_of(&self.target())
    }

    async fn populate_target_differently(&self) {
        // The CRDs, and one Tool of the backup with another spec; the other objects absent.
        let t = self.target();
        t.load_fixture_crds();
        let mut spec = tool_spec(0);
        spec["displayName"] = json!("Changed since");
        t.put_as(
            json!({"apiVersion": V, "kind": "Tool",
                   "metadata": {"name": "tool-0", "namespace": NS}, "spec": spec}),
            "kopf",
        );
    }

    async fn writes(&self) -> u64 {
        self.target()
            .requests()
            .iter()
            .filter(|r| !is_read_or_dry_run(r))
            .count() as u64
    }
}

#[tokio::test]
async fn the_custom_resources_restorer_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&CustomResourcesHarness::new().await).await;
}
