//! [`InfisicalRestorer`] restoring two environments of a project (one artifact each),
//! backed up by [`InfisicalSource`] from the fake Infisical, into a fresh fake with the same
//! project and tags.
//!
//! The state is every backed-up secret (value, comment, tags, metadata, multiline flag);
//! the writes are the target's requests other than reads and logins. Each environment is
//! restored in turn, so a cancellation or damage found in the second leaves the first
//! restored (the plan reads both first).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;
use stoa_backup::core::{MemorySink, Pipeline, Restorer, RunStatus};
use stoa_backup::providers::infisical::{InfisicalConnection, InfisicalRestorer, InfisicalSource};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::infisical_fake::{FakeInfisical, CLIENT_ID};
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, CancelOutcome, Capabilities, DigestCheck, HarnessBackup,
    RestorerHarness, TargetState,
};

use super::canonical;

/// (environment, folder, key, tags) of every secret the source holds.
const SECRETS: [(&str, &str, &str, &[&str]); 6] = [
    ("dev", "/", "ROOT_URL", &["pci"]),
    ("dev", "/app", "API_KEY", &[]),
    ("dev", "/app", "DB_PASSWORD", &["pci"]),
    ("dev", "/app/worker", "QUEUE_TOKEN", &[]),
    ("prod", "/", "ROOT_URL", &["pci"]),
    ("prod", "/shared", "SMTP_PASSWORD", &[]),
];

struct Target {
    fake: FakeInfisical,
    project: String,
}

/// A server holding the project (its environments and tags) with no secret.
async fn server() -> Target {
    let fake = FakeInfisical::start().await;
    let project = fake.add_project("stoa", &["dev", "prod"]);
    fake.add_tag(&project, "pci");
    Target { fake, project }
}

fn conn(fake: &FakeInfisical) -> InfisicalConnection {
    InfisicalConnection::new(&fake.url(), CLIENT_ID, fake.client_secret()).unwrap()
}

fn state_of(t: &Target) -> TargetState {
    SECRETS
        .iter()
        .filter_map(|(env, path, key, _)| {
            let s = t.fake.get(&t.project, env, path, key)?;
            let v = json!({"value": s.value, "comment": s.comment, "tags": s.tag_ids,
                           "metadata": s.metadata, "skipMultiline": s.skip_multiline});
            Some((format!("{env}:{path}/{key}"), canonical(&v)))
        })
        .collect()
}

struct InfisicalHarness {
    source: Target,
    target: Mutex<Arc<Target>>,
}

impl InfisicalHarness {
    async fn new() -> Self {
        let source = server().await;
        for (i, (env, path, key, tags)) in SECRETS.iter().enumerate() {
            source.fake.put(
                &source.project,
                env,
                path,
                key,
                &format!("inf-s3cr3t-{i:02}"),
                &format!("comment {i}"),
                tags,
            );
        }
        InfisicalHarness {
            source,
            target: Mutex::new(Arc::new(server().await)),
        }
    }

    fn target(&self) -> Arc<Target> {
        self.target.lock().unwrap().clone()
    }
}

#[async_trait]
impl RestorerHarness for InfisicalHarness {
    fn name(&self) -> String {
        "infisical".into()
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
        let source = InfisicalSource::builder(
            conn(&self.source.fake),
            &self.source.project,
            ["dev", "prod"],
        )
        .build()
        .unwrap();
        let report = Pipeline::builder()
            .source(source)
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
        assert_eq!(report.manifest.artifacts.len(), 2, "one per environment");
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
        *self.target.lock().unwrap() = Arc::new(server().await);
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        let t = self.target();
        Arc::new(
            InfisicalRestorer::new(conn(&t.fake))
                .unwrap()
                .target_project(&self.source.project, &t.project),
        )
    }

    async fn target_state(&self) -> TargetState {
        state_of(&self.target())
    }

    async fn populate_target_differently(&self) {
        let t = self.target();
        t.fake.put(
            &t.project,
            "dev",
            "/app",
            "API_KEY",
            "changed-since",
            "",
            &[],
        );
        t.fake.put(
            &t.project,
            "prod",
            "/",
            "ROOT_URL",
            "changed-too",
            "",
            &["pci"],
        );
    }

    async fn writes(&self) -> u64 {
        self.target()
            .fake
            .requests()
            .iter()
            .filter(|(m, p)| m != "GET" && !p.starts_with("/api/v1/auth/"))
            .count() as u64
    }
}

#[tokio::test]
async fn the_infisical_restorer_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&InfisicalHarness::new().await).await;
}
