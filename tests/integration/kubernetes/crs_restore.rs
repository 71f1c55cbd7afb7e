//! Restoring STOA custom resources through the `Restore` driver into the fake API server:
//! the ordered round trip (namespaces, CRDs and the wait for them, then kinds in STOA's
//! order), plans with per-object actions, existing-data and conflict policies, a missing
//! CRD group, a CRD never Established, referenced Secrets, and nothing secret in the logs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoa_backup::core::stream;
use stoa_backup::core::{
    ErrorKind, ExistingDataPolicy, Keyring, MemorySink, Pipeline, Sink, Source,
};
use stoa_backup::providers::kubernetes::{
    ConflictPolicy, CustomResourcesRestoreFacts, CustomResourcesRestorer, CustomResourcesSource,
    ObjectOutcome,
};
use stoa_backup_test_support::kube_fake::{FakeKube, FakeKubeOptions};

use super::support::{
    backup, driver, is_read_or_dry_run, labels_with, planned, plural_of, populate, restore_run,
    restorer, snapshot, tool_spec, NAMESPACES, TOOLS_PER_NS, V,
};

#[tokio::test]
async fn backup_wipe_restore_round_trip_in_order() {
    let fake = FakeKube::start_with(FakeKubeOptions {
        established_delay: Duration::from_millis(1000),
        ..Default::default()
    })
    .await;
    let total = populate(&fake);
    assert!(total > 250, "{total}");
    // One Tool owned by a GatewayInstance that will be restored, one by a ConfigMap that won't.
    let gw = fake
        .get(V, "GatewayInstance", Some("tenant-0"), "gw-0")
        .unwrap();
    fake.put_as(json!({"apiVersion": V, "kind": "Tool",
        "metadata": {"name": "owned", "namespace": "tenant-0", "ownerReferences": [
            {"apiVersion": V, "kind": "GatewayInstance", "name": "gw-0", "uid": gw["metadata"]["uid"], "controller": true},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "00000000-dead-beef-0000-000000000000"}]},
        "spec": tool_spec(7)}), "kopf");
    let before = snapshot(&fake);

    let sink = Arc::new(MemorySink::new());
    let source = CustomResourcesSource::builder(fake.client())
        .page_size(50)
        .build()
        .unwrap();
    let report = backup(source, sink.clone()).await;
    let names: Vec<&str> = report
        .manifest
        .artifacts
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "crds.yaml",
            "gostoa.dev/gatewaybindings.yaml",
            "gostoa.dev/gatewayinstances.yaml",
            "gostoa.dev/skills.yaml",
            "gostoa.dev/tools.yaml",
            "gostoa.dev/toolsets.yaml",
            "namespaces.yaml"
        ]
    );
    let tools = report
        .manifest
        .artifacts
        .iter()
        .find(|a| a.name == "gostoa.dev/tools.yaml")
        .unwrap();
    assert_eq!(tools.facts["objects"], json!(NAMESPACES * TOOLS_PER_NS + 2));
    assert_eq!(tools.facts["kind"], "Tool");
    assert_eq!(tools.facts["version"], "v1alpha1");
    // Paging: the tools list took several pages.
    let tool_pages = fake
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path == "/apis/gostoa.dev/v1alpha1/tools"
                && r.query.contains("limit=50")
        })
        .count();
    assert!(tool_pages >= 5, "{tool_pages} list requests for tools");
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/tools") && r.query.contains("continue=")));

    // The backup holds no server fields, no status, no kopf marks.
    let key = &tools.key;
    let text =
        String::from_utf8(stream::collect(sink.get(key).await.unwrap()).await.unwrap()).unwrap();
    for banned in [
        "\n  uid:",
        "resourceVersion",
        "managedFields",
        "creationTimestamp",
        "\n  generation:",
        "\nstatus:",
        "kopf.zalando.org",
        "last-applied-configuration",
    ] {
        assert!(!text.contains(banned), "{banned} in the backup");
    }
    assert!(text.contains("gostoa.dev/owner-team: gateway"));
    assert!(
        text.starts_with("---\napiVersion: gostoa.dev/v1alpha1\n"),
        "{}",
        &text[..80]
    );

    // Wipe, restore, compare.
    fake.wipe();
    fake.clear_requests();
    assert!(fake.objects(V, "Tool").is_empty());
    let r = restore_run(
        sink.clone(),
        &report,
        &Keyring::default(),
        restorer(&fake).build().unwrap(),
        ExistingDataPolicy::Fail,
    )
    .await
    .unwrap();
    // The CRs and CRDs, and the five namespaces they live in.
    assert_eq!(r.created as usize, before.len() + NAMESPACES + 1);
    assert_eq!(
        labels_with(&r, ObjectOutcome::Applied).len() as u64,
        r.created
    );
    assert_eq!((r.updated, r.skipped), (0, 0));
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("dropped ownerReference to ConfigMap gone")
                && n.contains("Tool tenant-0/owned")),
        "{:?}",
        r.notes
            .iter()
            .filter(|n| n.contains("warning"))
            .collect::<Vec<_>>()
    );
    let mut after = snapshot(&fake);
    // The kept owner reference points at the restored owner (new UID); the other is gone.
    let owned = fake.get(V, "Tool", Some("tenant-0"), "owned").unwrap();
    let new_gw = fake
        .get(V, "GatewayInstance", Some("tenant-0"), "gw-0")
        .unwrap();
    assert_eq!(
        owned["metadata"]["ownerReferences"][0]["uid"],
        new_gw["metadata"]["uid"]
    );
    assert_eq!(
        owned["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let mut expected = before.clone();
    expected.get_mut("Tool tenant-0/owned").unwrap()["metadata"]["ownerReferences"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    // Restored objects carry no kopf marks (stripped in the backup): compare stripped.
    for (k, v) in expected.iter_mut().chain(after.iter_mut()) {
        if k.starts_with("CRD ") {
            continue;
        }
        v["metadata"].as_object_mut().unwrap().remove("finalizers");
    }
    assert_eq!(expected.len(), after.len());
    for (k, v) in &expected {
        assert_eq!(after.get(k), Some(v), "{k} differs after restore");
    }

    // Order: namespaces, then CRDs, then — once each CRD is polled Established — kinds in
    // STOA's order.
    let log = fake.requests();
    let applies: Vec<(usize, &str)> = log
        .iter()
        .enumerate()
        .filter(|(_, r)| r.method == "PATCH" && !r.query.contains("dryRun=All"))
        .map(|(i, r)| (i, plural_of(r).unwrap()))
        .collect();
    let mut phases: Vec<&str> = applies.iter().map(|(_, p)| *p).collect();
    phases.dedup();
    assert_eq!(
        phases,
        [
            "namespaces",
            "customresourcedefinitions",
            "gatewayinstances",
            "tools",
            "toolsets",
            "skills",
            "gatewaybindings"
        ]
    );
    let last_crd_apply = applies
        .iter()
        .rfind(|(_, p)| *p == "customresourcedefinitions")
        .unwrap()
        .0;
    // The first request about a custom resource (its GET before the dry run).
    let first_cr = log
        .iter()
        .position(|r| r.path.starts_with("/apis/gostoa.dev/") && r.path.contains("/namespaces/"))
        .unwrap();
    assert!(first_cr > last_crd_apply);
    // Each CRD is polled; the first one long enough for the 1 s delay to pass (the
    // others, applied at the same time, are Established by then).
    for (name, min) in [
        ("gatewaybindings.gostoa.dev", 2),
        ("gatewayinstances.gostoa.dev", 1),
        ("skills.gostoa.dev", 1),
        ("tools.gostoa.dev", 1),
        ("toolsets.gostoa.dev", 1),
    ] {
        let polls = log[last_crd_apply..first_cr]
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && r.path
                        .ends_with(&format!("/customresourcedefinitions/{name}"))
            })
            .count();
        assert!(
            polls >= min,
            "{name} polled {polls} times before resources (delay 1 s, poll 50 ms)"
        );
    }
    assert!(
        log.iter().all(|r| r.status != 404 || r.method == "GET"),
        "a write hit 404"
    );
}

fn weather_restorer(fake: &FakeKube, conflicts: ConflictPolicy) -> CustomResourcesRestorer {
    CustomResourcesRestorer::builder(fake.client())
        .conflicts(conflicts)
        .build()
        .unwrap()
}

#[tokio::test]
async fn dry_run_reports_per_object_and_conflicts_fail_or_force() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    let sink = Arc::new(MemorySink::new());
    let report = backup(
        CustomResourcesSource::builder(fake.client())
            .build()
            .unwrap(),
        sink.clone(),
    )
    .await;

    // Drift: the operator changes one Tool; someone deletes the ToolSet.
    let mut w = fake
        .get(V, "Tool", Some("tenant-acme"), "weather-forecast")
        .unwrap();
    w["spec"]["endpoint"] = json!("https://drifted.example/v1");
    fake.put_as(w, "kopf");
    assert!(fake.remove(V, "ToolSet", Some("tenant-acme"), "openai-tools"));
    let before = snapshot(&fake);
    fake.clear_requests();

    // The plan: the server's dry run of every apply, per object; nothing written.
    let keys = Keyring::default();
    let restore = driver(
        sink.clone(),
        &keys,
        weather_restorer(&fake, ConflictPolicy::Force),
        ExistingDataPolicy::Overwrite,
    );
    let plan = restore.plan(&report.manifest).await.unwrap();
    let r = planned(&plan);
    assert!(r.dry_run);
    let actions: BTreeMap<String, String> = r.facts["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                format!(
                    "{} {}",
                    o["kind"].as_str().unwrap(),
                    o["name"].as_str().unwrap()
                ),
                o["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(actions["Tool weather-forecast"], "update");
    assert_eq!(actions["ToolSet openai-tools"], "create");
    assert_eq!(
        actions["CustomResourceDefinition tools.gostoa.dev"],
        "unchanged"
    );
    assert_eq!(actions["Namespace tenant-acme"], "unchanged");
    assert_eq!((r.created, r.updated, r.skipped), (1, 1, 6));
    assert_eq!(
        labels_with(r, ObjectOutcome::Validated).len(),
        8,
        "every object is checked by the server"
    );
    assert!(
        r.notes
            .contains(&"update Tool tenant-acme/weather-forecast".to_string()),
        "{:?}",
        r.notes
    );
    assert_eq!(snapshot(&fake), before, "a dry run changed the cluster");
    assert!(fake.requests().iter().all(is_read_or_dry_run));

    // Fail policy on existing data: the plan counts the drifted Tool as a conflict, by name,
    // and the driver refuses to apply it.
    let restore = driver(
        sink.clone(),
        &keys,
        weather_restorer(&fake, ConflictPolicy::Force),
        ExistingDataPolicy::Fail,
    );
    let plan = restore.plan(&report.manifest).await.unwrap();
    assert_eq!(planned(&plan).conflicts, 1);
    assert!(
        planned(&plan).notes.contains(
            &"conflict Tool tenant-acme/weather-forecast (exists in the target and differs from the backup)"
                .to_string()
        ),
        "{:?}",
        planned(&plan).notes
    );
    let e = restore.apply(&plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(snapshot(&fake), before);

    // Overwrite with conflicts failing: the operator owns the field. The plan says so for
    // that Tool; the apply stops there, naming it and the field.
    let restore = driver(
        sink.clone(),
        &keys,
        weather_restorer(&fake, ConflictPolicy::Fail),
        ExistingDataPolicy::Overwrite,
    );
    let plan = restore.plan(&report.manifest).await.unwrap();
    assert_eq!(
        labels_with(planned(&plan), ObjectOutcome::Rejected),
        ["Tool tenant-acme/weather-forecast"]
    );
    let e = restore.apply(&plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let msg = e.to_string();
    assert!(
        msg.contains("apply Tool tenant-acme/weather-forecast"),
        "{msg}"
    );
    assert!(
        msg.contains("conflict with \"kopf\"") && msg.contains(".spec.endpoint"),
        "{msg}"
    );
    assert!(e.hint().unwrap().contains("Force"), "{e:?}");
    assert_eq!(
        e.context_value("failed"),
        Some("Tool tenant-acme/weather-forecast")
    );
    assert_eq!(
        e.context_value("not attempted"),
        Some("ToolSet tenant-acme/openai-tools")
    );

    // Force takes the fields over.
    let r = restore_run(
        sink.clone(),
        &report,
        &keys,
        weather_restorer(&fake, ConflictPolicy::Force),
        ExistingDataPolicy::Overwrite,
    )
    .await
    .unwrap();
    assert_eq!((r.created, r.updated), (1, 1));
    let w = fake
        .get(V, "Tool", Some("tenant-acme"), "weather-forecast")
        .unwrap();
    assert_eq!(
        w["spec"]["endpoint"],
        "https://api.weather.example/v1/forecast"
    );
    assert!(fake
        .get(V, "ToolSet", Some("tenant-acme"), "openai-tools")
        .is_some());

    // Skip leaves existing objects alone.
    let r = restore_run(
        sink.clone(),
        &report,
        &keys,
        weather_restorer(&fake, ConflictPolicy::Fail),
        ExistingDataPolicy::Skip,
    )
    .await
    .unwrap();
    assert_eq!((r.created, r.updated, r.skipped), (0, 0, 8));
}

#[tokio::test]
async fn missing_crd_group_is_reported_on_backup_and_restore() {
    let fake = FakeKube::start().await;
    let src = CustomResourcesSource::builder(fake.client())
        .build()
        .unwrap();
    let e = src.discover().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.to_string().contains("serves no API group gostoa.dev"),
        "{e}"
    );

    // A backup without its CRDs, restored into a cluster without them: the plan says the
    // kind is served by nothing, the apply creates the namespace, then fails on the Tool.
    let source = FakeKube::start().await;
    source.load_fixture_crds();
    source.load_fixture_resources();
    let sink = Arc::new(MemorySink::new());
    let report = backup(
        CustomResourcesSource::builder(source.client())
            .kinds(["Tool"])
            .include_crds(false)
            .build()
            .unwrap(),
        sink.clone(),
    )
    .await;
    let restore = driver(
        sink,
        &Keyring::default(),
        weather_restorer(&fake, ConflictPolicy::Fail),
        ExistingDataPolicy::Fail,
    );
    let plan = restore.plan(&report.manifest).await.unwrap();
    let facts = CustomResourcesRestoreFacts::of(planned(&plan)).unwrap();
    let tool = &facts.objects[1];
    assert_eq!(
        (tool.label().as_str(), tool.outcome),
        ("Tool tenant-acme/weather-forecast", ObjectOutcome::Rejected)
    );
    assert!(
        tool.reason.as_deref().unwrap().contains(
            "the cluster serves no gostoa.dev/v1alpha1 Tool (missing CRD group gostoa.dev)"
        ),
        "{tool:?}"
    );
    let e = restore.apply(&plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let msg = e.to_string();
    assert!(
        msg.contains("gostoa.dev/v1alpha1 Tool") && msg.contains("missing CRD group gostoa.dev"),
        "{msg}"
    );
    assert!(
        e.hint()
            .unwrap()
            .contains("CustomResourceDefinitions first"),
        "{e:?}"
    );
    assert_eq!(e.context_value("applied"), Some("Namespace tenant-acme"));
}

#[tokio::test]
async fn a_crd_that_never_becomes_established_times_out_by_name() {
    let source_fake = FakeKube::start().await;
    source_fake.load_fixture_crds();
    source_fake.load_fixture_resources();
    let sink = Arc::new(MemorySink::new());
    let report = backup(
        CustomResourcesSource::builder(source_fake.client())
            .build()
            .unwrap(),
        sink.clone(),
    )
    .await;

    let target = FakeKube::start_with(FakeKubeOptions {
        never_establish: true,
        ..Default::default()
    })
    .await;
    let restorer = CustomResourcesRestorer::builder(target.client())
        .establish_timeout(Duration::from_millis(400))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let t0 = std::time::Instant::now();
    let e = restore_run(
        sink,
        &report,
        &Keyring::default(),
        restorer,
        ExistingDataPolicy::Fail,
    )
    .await
    .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(5));
    let msg = e.to_string();
    assert!(
        msg.contains(
            "CustomResourceDefinition gatewaybindings.gostoa.dev did not become Established"
        ),
        "{msg}"
    );
    assert!(msg.contains("Established=False"), "{msg}");
    // What was written before is named; no resource was attempted.
    let applied = e.context_value("applied before it").unwrap();
    assert!(
        applied.starts_with(
            "Namespace tenant-acme, CustomResourceDefinition gatewaybindings.gostoa.dev"
        ),
        "{applied}"
    );
    assert!(target
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/apis/gostoa.dev/")));
}

#[tokio::test]
async fn referenced_secrets_are_encrypted_and_restored_first() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    // The fixture ToolSet references `secretRef: openai-api-key`.
    fake.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "openai-api-key", "namespace": "tenant-acme"},
        "data": {"token": "c2stdGVzdC0xMjM0"}}),
    );
    fake.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "unrelated", "namespace": "tenant-acme"}, "data": {"x": "eA=="}}),
    );
    let sink = Arc::new(MemorySink::new());
    let src = || {
        CustomResourcesSource::builder(fake.client())
            .referenced_secrets(true)
            .build()
            .unwrap()
    };
    // Without encryption the pipeline refuses the secrets artifact.
    let refused = Pipeline::builder()
        .source(src())
        .sink(sink.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(!refused.is_complete());
    let (enc, keyring) = stoa_backup_test_support::artifacts::age_keys();
    let report = Pipeline::builder()
        .source(src())
        .sink(sink.clone())
        .encryption(enc)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let secrets = report
        .manifest
        .artifacts
        .iter()
        .find(|a| a.name == "secrets.yaml")
        .unwrap();
    assert!(secrets.sensitive);
    assert_eq!(secrets.facts["objects"], json!(1));

    fake.wipe();
    fake.clear_requests();
    let r = restore_run(
        sink.clone(),
        &report,
        &keyring,
        restorer(&fake).build().unwrap(),
        ExistingDataPolicy::Fail,
    )
    .await
    .unwrap();
    // CRDs, the Tool and the ToolSet, their namespace, the Secret.
    assert_eq!(r.created, 5 + 2 + 1 + 1);
    let s = fake
        .get("v1", "Secret", Some("tenant-acme"), "openai-api-key")
        .unwrap();
    assert_eq!(s["data"]["token"], "c2stdGVzdC0xMjM0");
    assert!(fake
        .get("v1", "Secret", Some("tenant-acme"), "unrelated")
        .is_none());
    let applies: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && !r.query.contains("dryRun"))
        .filter_map(|r| plural_of(r).map(str::to_string))
        .collect();
    let pos = |p: &str| applies.iter().position(|a| a == p).unwrap();
    assert!(
        pos("secrets") < pos("tools") && pos("secrets") < pos("toolsets"),
        "{applies:?}"
    );
}

/// The bearer token and the data of referenced Secrets (base64 as the API sends it, and
/// decoded) never reach the logs, at TRACE level, through a backup, a restore and a
/// rejected token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_secret_data_in_trace_output() {
    use base64::Engine as _;
    let capture = stoa_backup_test_support::trace::TraceCapture::install();
    let token = "eyJhbGciOi.kube-token-must-not-be-logged";
    let fake = FakeKube::start_with(FakeKubeOptions {
        token: Some(token.to_string()),
        ..Default::default()
    })
    .await;
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    let value = "sk-live-openai-key-must-not-be-logged";
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    fake.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "openai-api-key", "namespace": "tenant-acme"},
        "data": {"token": encoded}}),
    );
    let (encryption, keyring) = stoa_backup_test_support::artifacts::age_keys();
    let sink = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(
            CustomResourcesSource::builder(fake.client())
                .referenced_secrets(true)
                .build()
                .unwrap(),
        )
        .sink(sink.clone())
        .encryption(encryption)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    fake.wipe();
    restore_run(
        sink.clone(),
        &report,
        &keyring,
        restorer(&fake).build().unwrap(),
        ExistingDataPolicy::Fail,
    )
    .await
    .unwrap();
    let s = fake
        .get("v1", "Secret", Some("tenant-acme"), "openai-api-key")
        .unwrap();
    assert_eq!(s["data"]["token"], json!(encoded));

    let wrong = "eyJhbGciOi.wrong-token-must-not-be-logged";
    let err = CustomResourcesSource::builder(fake.client_with_token(wrong))
        .build()
        .unwrap()
        .discover()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    capture.assert_free_of(&[token, wrong, value, encoded.as_str()]);
}
