//! Helm values from Helm 3 release storage, against the fake API server: the latest
//! deployed revision's user-supplied values, encrypted at rest, restored to a values file
//! with the `helm upgrade --install` command.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use stoa_backup::core::{
    stream, AgeEncryption, ErrorKind, ExistingDataPolicy, MemorySink, Pipeline, RunReport, Sink,
    Source,
};
use stoa_backup::providers::kubernetes::{HelmDriver, HelmValuesRestorer, HelmValuesSource};
use stoa_backup_test_support::kube_fake::{fixtures_dir, FakeKube, FaultRule};

use crate::restore_support::restore_component;

const NS: &str = "stoa-system";

pub(crate) fn fixture_values() -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join("helm/values.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn chart_metadata() -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join("helm/Chart.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// Helm's encoding of a release: JSON → gzip (best) → base64.
fn helm_encode(release: &Value) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(release.to_string().as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

fn release_json(name: &str, revision: u64, status: &str, config: Option<Value>) -> Value {
    let mut r = json!({
        "name": name, "namespace": NS, "version": revision,
        "info": {"first_deployed": "2026-05-01T10:00:00Z", "last_deployed": "2026-06-02T08:30:00Z",
                 "deleted": "", "description": "Upgrade complete", "status": status},
        "chart": {"metadata": chart_metadata(), "values": {"replicaCount": 1},
                  "templates": [{"name": "templates/deployment.yaml", "data": "YXBpVmVyc2lvbjogYXBwcy92MQ=="}],
                  "files": [], "schema": null, "lock": null},
        "manifest": "---\n# Source: stoa-platform/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\n",
        "hooks": [],
    });
    if let Some(c) = config {
        r["config"] = c;
    }
    r
}

/// One release revision in the Secret driver's format (the API base64-encodes the
/// Secret's bytes once more).
fn put_secret_revision(
    fake: &FakeKube,
    name: &str,
    revision: u64,
    status: &str,
    config: Option<Value>,
) {
    let stored = helm_encode(&release_json(name, revision, status, config));
    fake.put_as(
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": format!("sh.helm.release.v1.{name}.v{revision}"), "namespace": NS,
                         "labels": {"owner": "helm", "name": name, "status": status,
                                    "version": revision.to_string(), "modifiedAt": "1717000000"}},
            "data": {"release": base64::engine::general_purpose::STANDARD.encode(stored)},
        }),
        "helm",
    );
}

/// Three revisions: 1 superseded, 2 deployed (the fixture values), 3 failed.
pub(crate) fn three_revisions(fake: &FakeKube) {
    let mut old = fixture_values();
    old["gateway"]["image"]["tag"] = json!("1.9.0");
    put_secret_revision(fake, "stoa", 1, "superseded", Some(old));
    put_secret_revision(fake, "stoa", 2, "deployed", Some(fixture_values()));
    put_secret_revision(
        fake,
        "stoa",
        3,
        "failed",
        Some(json!({"gateway": {"image": {"tag": "broken"}}})),
    );
    // Another release in the namespace, not configured.
    put_secret_revision(fake, "other", 1, "deployed", None);
}

async fn run(
    source: HelmValuesSource,
    sink: Arc<MemorySink>,
    encryption: Option<AgeEncryption>,
) -> RunReport {
    let mut b = Pipeline::builder().source(source).sink(sink);
    if let Some(e) = encryption {
        b = b.encryption(e);
    }
    b.build().unwrap().run().await.unwrap()
}

#[tokio::test]
async fn backs_up_the_latest_deployed_values_encrypted_and_restores_them() {
    let fake = FakeKube::start().await;
    three_revisions(&fake);
    let sink = Arc::new(MemorySink::new());
    let source = || {
        HelmValuesSource::builder(fake.client())
            .release(NS, "stoa")
            .build()
            .unwrap()
    };

    // Values may hold passwords: without encryption the pipeline refuses.
    let refused = run(source(), sink.clone(), None).await;
    assert!(!refused.is_complete());
    assert!(
        refused.manifest.failures[0].error.contains("holds secrets"),
        "{:?}",
        refused.manifest.failures
    );

    let (enc, keyring) = stoa_backup_test_support::artifacts::age_keys();
    let report = run(source(), sink.clone(), Some(enc))
        .await
        .into_result()
        .unwrap();
    assert_eq!(report.manifest.artifacts.len(), 1);
    let a = &report.manifest.artifacts[0];
    assert_eq!(a.name, "stoa-system/stoa.values.yaml");
    assert!(a.sensitive);
    assert_eq!(a.facts["revision"], json!(2));
    assert_eq!(a.facts["status"], "deployed");
    assert_eq!(a.facts["chart"], "stoa-platform");
    assert_eq!(a.facts["chart_version"], "0.1.0");
    assert_eq!(a.facts["app_version"], "2.0.0");
    // Encrypted at rest: the stored bytes are not the YAML.
    let stored = stream::collect(sink.get(&a.key).await.unwrap())
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("gateway"));

    // Restore: a values file equal to the fixture, and the command.
    let dir = tempfile::tempdir().unwrap();
    let restorer = HelmValuesRestorer::new(dir.path())
        .chart("stoa/stoa-platform")
        .print_command(false);
    let restore = |existing, dry_run| {
        restore_component(
            sink.clone(),
            &report.manifest,
            &keyring,
            restorer.clone(),
            existing,
            dry_run,
        )
    };
    let planned = restore(ExistingDataPolicy::Fail, true).await.unwrap();
    assert_eq!((planned.created, planned.dry_run), (1, true), "{planned:?}");
    let r = restore(ExistingDataPolicy::Fail, false).await.unwrap();
    assert_eq!(r.created, 1);
    let file = dir.path().join("stoa-system/stoa.values.yaml");
    let restored: Value = serde_saphyr::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        restored,
        fixture_values(),
        "restored values differ from the fixture"
    );
    assert_eq!(
        r.facts["command"],
        json!(format!(
            "helm upgrade --install stoa stoa/stoa-platform --namespace stoa-system --create-namespace --version 0.1.0 -f {}",
            file.display()
        ))
    );
    assert!(r
        .notes
        .iter()
        .any(|n| n.starts_with("re-create the release with: helm upgrade --install stoa")));

    // Again: unchanged. A local edit: refused by default, replaced with overwrite. Dry
    // runs write nothing.
    let r = restore(ExistingDataPolicy::Fail, false).await.unwrap();
    assert_eq!((r.created, r.updated, r.skipped), (0, 0, 1));
    std::fs::write(&file, "edited: true\n").unwrap();
    let e = restore(ExistingDataPolicy::Fail, false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let planned = restore(ExistingDataPolicy::Overwrite, true).await.unwrap();
    assert_eq!(planned.updated, 1);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "edited: true\n");
    let r = restore(ExistingDataPolicy::Overwrite, false).await.unwrap();
    assert_eq!(
        (r.created, r.updated, r.skipped),
        (planned.created, planned.updated, planned.skipped),
        "{r:?}"
    );
    assert_eq!((r.created, r.updated), (0, 1), "{r:?}");
    let restored: Value = serde_saphyr::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(restored, fixture_values());
}

#[tokio::test]
async fn whole_namespace_and_configmap_driver() {
    let fake = FakeKube::start().await;
    three_revisions(&fake);
    let sink = Arc::new(MemorySink::new());
    let src = HelmValuesSource::builder(fake.client())
        .namespace(NS)
        .sensitive(false)
        .build()
        .unwrap();
    let plans = src.discover().await.unwrap();
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "stoa-system/other.values.yaml",
            "stoa-system/stoa.values.yaml"
        ]
    );
    let report = run(src, sink.clone(), None).await.into_result().unwrap();
    let other = report
        .manifest
        .artifacts
        .iter()
        .find(|a| a.name.contains("other"))
        .unwrap();
    let text = String::from_utf8(
        stream::collect(sink.get(&other.key).await.unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        text.trim(),
        "{}",
        "a release without user values backs up as an empty map"
    );

    // ConfigMap driver: data.release holds the single-base64 string.
    let cm_fake = FakeKube::start().await;
    for (rev, status, tag) in [(4u64, "deployed", "2.0.1"), (5, "pending-upgrade", "2.0.2")] {
        cm_fake.put(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("sh.helm.release.v1.stoa.v{rev}"), "namespace": NS,
                         "labels": {"owner": "helm", "name": "stoa", "status": status, "version": rev.to_string()}},
            "data": {"release": helm_encode(&release_json("stoa", rev, status, Some(json!({"image": {"tag": tag}}))))},
        }));
    }
    let src = HelmValuesSource::builder(cm_fake.client())
        .release(NS, "stoa")
        .driver(HelmDriver::ConfigMap)
        .sensitive(false)
        .build()
        .unwrap();
    let report = run(src, sink.clone(), None).await.into_result().unwrap();
    let a = &report.manifest.artifacts[0];
    assert_eq!(a.facts["revision"], json!(4));
    let text = String::from_utf8(
        stream::collect(sink.get(&a.key).await.unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    let values: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(values, json!({"image": {"tag": "2.0.1"}}));
}

#[tokio::test]
async fn errors_name_the_release() {
    let fake = FakeKube::start().await;
    put_secret_revision(&fake, "stoa", 1, "failed", Some(json!({})));
    let src = HelmValuesSource::builder(fake.client())
        .release(NS, "stoa")
        .build()
        .unwrap();
    let e = src.discover().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.to_string().contains(
            "Helm release stoa-system/stoa has no deployed revision (latest revision 1 is failed)"
        ),
        "{e}"
    );

    let src = HelmValuesSource::builder(fake.client())
        .release(NS, "absent")
        .build()
        .unwrap();
    let e = src.discover().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("stoa-system/absent has no deployed revision (no revision found)"),
        "{e}"
    );

    fake.inject(
        FaultRule::forbidden("system:serviceaccount:stoa:backup").path_contains("/secrets"),
    );
    let src = HelmValuesSource::builder(fake.client())
        .release(NS, "stoa")
        .build()
        .unwrap();
    let e = src.discover().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(
        e.to_string()
            .contains("list the revisions of Helm release stoa-system/stoa"),
        "{e}"
    );

    // A corrupt release payload is an integrity error naming the revision.
    let fake = FakeKube::start().await;
    fake.put(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": "sh.helm.release.v1.stoa.v1", "namespace": NS,
                     "labels": {"owner": "helm", "name": "stoa", "status": "deployed", "version": "1"}},
        "data": {"release": base64::engine::general_purpose::STANDARD.encode("not base64 at all!")},
    }));
    let src = HelmValuesSource::builder(fake.client())
        .release(NS, "stoa")
        .build()
        .unwrap();
    let e = src.discover().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity);
    assert!(e.to_string().contains("stoa-system/stoa revision 1"), "{e}");
}
