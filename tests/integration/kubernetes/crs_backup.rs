//! Backing up STOA custom resources and CRDs with the real kube client against the fake API
//! server: paging, stripping, determinism, per-object layout, narrowing by kind, namespace
//! and label, and the errors (401/403, unknown kinds) keeping what the server said.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use stoa_backup::core::{ErrorKind, ExistingDataPolicy, Keyring, MemorySink, Pipeline, Source};
use stoa_backup::providers::kubernetes::{CustomResourcesSource, Layout};
use stoa_backup_test_support::kube_fake::{FakeKube, FaultRule};

use super::support::{
    backup, populate, restore_run, restorer, shas, snapshot, wrong_token_source, NAMESPACES,
    TOOLS_PER_NS, V,
};

#[tokio::test]
async fn output_is_deterministic_and_one_change_changes_one_file() {
    let fake = FakeKube::start().await;
    populate(&fake);
    let sink = Arc::new(MemorySink::new());
    let per_kind = || {
        CustomResourcesSource::builder(fake.client())
            .page_size(40)
            .build()
            .unwrap()
    };
    let a = backup(per_kind(), sink.clone()).await;
    let b = backup(per_kind(), sink.clone()).await;
    assert_eq!(shas(&a), shas(&b), "two backups of the same state differ");

    let per_object = || {
        CustomResourcesSource::builder(fake.client())
            .layout(Layout::PerObject)
            .page_size(100)
            .build()
            .unwrap()
    };
    let one = backup(per_object(), sink.clone()).await;
    assert!(one.manifest.artifacts.len() > 250);
    assert!(shas(&one).contains_key("gostoa.dev/tools/tenant-acme/weather-forecast.yaml"));
    assert!(shas(&one).contains_key("crds/tools.gostoa.dev.yaml"));
    // The operator touching status or its own annotations changes nothing.
    let mut w = fake
        .get(V, "Tool", Some("tenant-acme"), "weather-forecast")
        .unwrap();
    w["status"] = json!({"registered": false, "lastSeen": "2026-11-24T08:00:00Z"});
    w["metadata"]["annotations"] =
        json!({"kopf.zalando.org/last-handled-configuration": "{\"x\":1}"});
    fake.put_as(w.clone(), "kopf");
    let two = backup(per_object(), sink.clone()).await;
    assert_eq!(shas(&one), shas(&two));
    // One real change changes exactly one file.
    w["spec"]["rateLimit"] = json!("200/min");
    fake.put_as(w, "kopf");
    let three = backup(per_object(), sink.clone()).await;
    let (s2, s3) = (shas(&two), shas(&three));
    let changed: Vec<&String> = s3.keys().filter(|k| s2.get(*k) != s3.get(*k)).collect();
    assert_eq!(
        changed,
        ["gostoa.dev/tools/tenant-acme/weather-forecast.yaml"]
    );

    // A per-object run restores like a per-kind one: one ordered set.
    let before = snapshot(&fake);
    fake.wipe();
    let r = restore_run(
        sink.clone(),
        &three,
        &Keyring::default(),
        restorer(&fake).build().unwrap(),
        ExistingDataPolicy::Fail,
    )
    .await
    .unwrap();
    // One object per artifact: CRDs, namespaces, resources.
    assert_eq!(r.created as usize, three.manifest.artifacts.len());
    assert!(shas(&three).contains_key("namespaces/tenant-acme.yaml"));
    let mut after = snapshot(&fake);
    let mut expected = before;
    for v in expected.values_mut().chain(after.values_mut()) {
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    }
    assert_eq!(after, expected);
}

#[tokio::test]
async fn namespaces_and_label_selector_narrow_the_backup() {
    let fake = FakeKube::start().await;
    populate(&fake);
    let mut t = fake.get(V, "Tool", Some("tenant-1"), "tool-007").unwrap();
    t["metadata"]["labels"]["tier"] = json!("gold");
    fake.put_as(t, "kopf");
    let sink = Arc::new(MemorySink::new());
    let src = CustomResourcesSource::builder(fake.client())
        .kinds(["Tool", "skills"])
        .namespaces(["tenant-1", "tenant-2"])
        .include_crds(false)
        .build()
        .unwrap();
    let r = backup(src, sink.clone()).await;
    let counts: BTreeMap<String, Value> = r
        .manifest
        .artifacts
        .iter()
        .map(|a| (a.name.clone(), a.facts["objects"].clone()))
        .collect();
    assert_eq!(counts["gostoa.dev/tools.yaml"], json!(2 * TOOLS_PER_NS));
    assert_eq!(counts["gostoa.dev/skills.yaml"], json!(10));
    // The namespaces the objects backed up live in, and no other.
    assert_eq!(counts["namespaces.yaml"], json!(2));
    assert_eq!(counts.len(), 3);
    let src = CustomResourcesSource::builder(fake.client())
        .kinds(["Tool"])
        .label_selector("tier=gold")
        .build()
        .unwrap();
    let r = backup(src, sink).await;
    let tools = r
        .manifest
        .artifacts
        .iter()
        .find(|a| a.name == "gostoa.dev/tools.yaml")
        .unwrap();
    assert_eq!(tools.facts["objects"], json!(1));
    // A continue token that expires mid-list (410 Expired) restarts the list.
    fake.inject(
        FaultRule::status(410, "Expired", "The provided continue parameter is too old")
            .path_is("/apis/gostoa.dev/v1alpha1/tools")
            .query_contains("continue=")
            .times(1),
    );
    let src = CustomResourcesSource::builder(fake.client())
        .kinds(["Tool"])
        .page_size(100)
        .build()
        .unwrap();
    let r = backup(src, Arc::new(MemorySink::new())).await;
    assert_eq!(
        r.manifest.artifacts[1].facts["objects"],
        json!(NAMESPACES * TOOLS_PER_NS + 1)
    );
    assert!(fake.requests().iter().any(|r| r.status == 410));
    // A kind that does not exist is a clear error.
    let src = CustomResourcesSource::builder(fake.client())
        .kinds(["Gadget"])
        .build()
        .unwrap();
    let e = src.discover().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("no kind Gadget"), "{e}");
}

/// API errors keep the status the server answered, through the pipeline too, and come out
/// named after the source's component.
#[tokio::test]
async fn api_errors_keep_their_http_status() {
    let (_fake, src) = wrong_token_source().await;
    let e = src.preflight().await.unwrap_err();
    assert_eq!(e.http_status(), Some(401), "{e}");
    let component = src.component().to_string();
    let report = Pipeline::builder()
        .source(Arc::new(src))
        .sink(Arc::new(MemorySink::new()))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let f = &report.manifest.failures[0];
    assert_eq!(
        (f.kind, f.http_status),
        (ErrorKind::Unauthenticated, Some(401))
    );
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert_eq!(
        (e.component(), e.operation()),
        (Some(component.as_str()), Some("preflight"))
    );
}

#[tokio::test]
async fn unauthorized_and_forbidden_name_what_failed() {
    let (fake, src) = wrong_token_source().await;
    let e = src.preflight().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    assert!(e.to_string().contains("401"), "{e}");
    assert!(e.hint().unwrap().contains("token"), "{e:?}");

    let src = CustomResourcesSource::builder(fake.client())
        .build()
        .unwrap();
    let plans = src.discover().await.unwrap();
    fake.inject(
        FaultRule::forbidden("system:serviceaccount:stoa:backup")
            .method("GET")
            .path_is("/apis/gostoa.dev/v1alpha1/tools"),
    );
    let plan = plans
        .iter()
        .find(|p| p.name == "gostoa.dev/tools.yaml")
        .unwrap();
    let ctx = stoa_backup::core::ExportContext {
        cancel: Default::default(),
        run_id: stoa_backup::core::RunId::generate(chrono::Utc::now()),
        stored: Vec::new(),
    };
    let e = src.export(plan, &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let msg = e.to_string();
    assert!(
        msg.contains("list Tool (tools.gostoa.dev): tools.gostoa.dev is forbidden: User \"system:serviceaccount:stoa:backup\" cannot list resource \"tools\" in API group \"gostoa.dev\" at the cluster scope (403 Forbidden)"),
        "{msg}"
    );
    assert!(e.hint().unwrap().contains("RBAC"), "{e:?}");

    // The pipeline records the failed artifacts — the Tools, and the namespaces (found by
    // listing every kind) — and stores the others.
    let report = Pipeline::builder()
        .source(src)
        .sink(MemorySink::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(!report.is_complete());
    let mut failed: Vec<&str> = report
        .manifest
        .failures
        .iter()
        .filter_map(|f| f.name.as_deref())
        .collect();
    failed.sort();
    assert_eq!(failed, ["gostoa.dev/tools.yaml", "namespaces.yaml"]);
    assert!(report
        .manifest
        .failures
        .iter()
        .all(|f| f.error.contains("tools.gostoa.dev")));
    assert_eq!(report.manifest.artifacts.len(), 5);
}

/// With the Git sink: an unchanged cluster makes no commit; one changed object is a
/// one-file commit.
#[cfg(feature = "git")]
#[tokio::test]
async fn git_history_shows_one_file_per_changed_object() {
    use stoa_backup::storage::GitSink;
    let git = |dir: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let remote = tmp.path().join("remote.git");
    std::fs::create_dir_all(&remote).unwrap();
    git(
        &remote,
        &["init", "--bare", "--quiet", "--initial-branch=main"],
    );
    let sink = Arc::new(
        GitSink::builder(
            format!("file://{}", remote.display()),
            tmp.path().join("clone"),
        )
        .author("stoa-backup-test", "backup@example.com")
        .build()
        .await
        .unwrap(),
    );
    let fake = FakeKube::start().await;
    populate(&fake);
    let run = || async {
        let src = CustomResourcesSource::builder(fake.client())
            .layout(Layout::PerObject)
            .build()
            .unwrap();
        Pipeline::builder()
            .source(src)
            .sink(sink.clone())
            .build()
            .unwrap()
            .run()
            .await
            .unwrap()
            .into_result()
            .unwrap();
        sink.head_commit().await.unwrap().unwrap()
    };
    let c1 = run().await;
    let files = git(&remote, &["ls-tree", "-r", "--name-only", &c1]);
    assert!(
        files
            .lines()
            .any(|l| l == "crds/gostoa.dev/tools/tenant-acme/weather-forecast.yaml"),
        "{files}"
    );
    assert!(
        files
            .lines()
            .any(|l| l == "crds/crds/tools.gostoa.dev.yaml"),
        "{files}"
    );
    let c2 = run().await;
    assert_eq!(c1, c2, "an unchanged cluster made a commit");
    let mut w = fake.get(V, "Tool", Some("tenant-2"), "tool-042").unwrap();
    w["spec"]["endpoint"] = json!("https://moved.example/42");
    fake.put_as(w, "kopf");
    let c3 = run().await;
    assert_ne!(c2, c3);
    let changed = git(&remote, &["diff", "--name-only", &c2, &c3]);
    assert_eq!(
        changed.trim(),
        "crds/gostoa.dev/tools/tenant-2/tool-042.yaml"
    );
}
