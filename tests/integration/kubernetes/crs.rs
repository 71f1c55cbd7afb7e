//! STOA custom resources and CRDs with the real kube client against the fake API server:
//! backup (paging, stripping, determinism), wipe, ordered restore, dry run, conflicts, and
//! the error cases (401/403, missing CRD group, CRD never Established). Also `PodExec`
//! over the exec websocket.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoa_backup::core::stream;
use stoa_backup::core::{
    ErrorKind, ExistingDataPolicy, Keyring, MemorySink, Pipeline, RestoreOptions, RunReport, Sink,
    Source,
};
use stoa_backup::providers::kubernetes::{
    strip_object, ConflictPolicy, CustomResourcesRestorer, CustomResourcesSource, Layout, PodExec,
    StripRules,
};
use stoa_backup_test_support::kube_fake::{FakeKube, FakeKubeOptions, FaultRule, RequestRecord};

const V: &str = "gostoa.dev/v1alpha1";
const KINDS: &[(&str, &str)] = &[
    ("GatewayInstance", "gatewayinstances"),
    ("Tool", "tools"),
    ("ToolSet", "toolsets"),
    ("Skill", "skills"),
    ("GatewayBinding", "gatewaybindings"),
];
const NAMESPACES: usize = 4;
const TOOLS_PER_NS: usize = 60;

/// What the operator leaves on objects: status, kopf marks, kubectl's annotation.
fn operator_marks(mut o: Value) -> Value {
    o["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{}}",
        "kopf.zalando.org/last-handled-configuration": "{\"spec\":{}}",
        "gostoa.dev/owner-team": "gateway",
    });
    o["metadata"]["finalizers"] = json!(["kopf.zalando.org/KopfFinalizerMarker"]);
    o["metadata"]["labels"] = json!({"app.kubernetes.io/part-of": "stoa-platform"});
    o["status"] = json!({"registered": true, "phase": "online"});
    o
}

/// Fixture CRDs and resources, plus hundreds of generated objects in several namespaces.
fn populate(fake: &FakeKube) -> usize {
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    let mut n = 2;
    for i in 0..NAMESPACES {
        let ns = format!("tenant-{i}");
        for g in 0..2 {
            fake.put_as(operator_marks(json!({"apiVersion": V, "kind": "GatewayInstance",
                "metadata": {"name": format!("gw-{g}"), "namespace": ns},
                "spec": {"displayName": format!("Gateway {g}"), "gatewayType": "stoa", "environment": "prod",
                         "baseUrl": format!("http://gw-{g}.{ns}:8080"), "capabilities": ["rest", "mcp"]}})), "kopf");
            n += 1;
        }
        for t in 0..TOOLS_PER_NS {
            fake.put_as(operator_marks(json!({"apiVersion": V, "kind": "Tool",
                "metadata": {"name": format!("tool-{t:03}"), "namespace": ns},
                "spec": {"displayName": format!("Tool {t}"), "description": "generated\nwith two lines",
                         "endpoint": format!("https://api.example/{t}"), "method": "POST",
                         "rateLimit": "100/min", "annotations": {"readOnly": t % 2 == 0},
                         "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}}})), "kopf");
            n += 1;
        }
        for k in 0..5 {
            fake.put_as(operator_marks(json!({"apiVersion": V, "kind": "ToolSet",
                "metadata": {"name": format!("set-{k}"), "namespace": ns},
                "spec": {"upstream": {"url": format!("https://mcp{k}.example"), "transport": "sse"}, "tools": [], "prefix": format!("s{k}_")}})), "kopf");
            fake.put_as(operator_marks(json!({"apiVersion": V, "kind": "Skill",
                "metadata": {"name": format!("skill-{k}"), "namespace": ns},
                "spec": {"name": format!("Skill {k}"), "scope": "tenant", "priority": 50 + k, "enabled": true,
                         "instructions": "Be concise.\nCite sources.\n"}})), "kopf");
            fake.put_as(operator_marks(json!({"apiVersion": V, "kind": "GatewayBinding",
                "metadata": {"name": format!("bind-{k}"), "namespace": ns},
                "spec": {"apiRef": {"name": format!("api-{k}")}, "gatewayRef": {"name": "gw-0"},
                         "policies": [{"name": "rl", "type": "rate_limit", "config": {"rpm": 100}}]}})), "kopf");
            n += 3;
        }
    }
    n
}

/// Every gostoa.dev object and the CRDs, stripped, keyed by kind/namespace/name.
fn snapshot(fake: &FakeKube) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let rules = StripRules::default();
    for (kind, _) in KINDS {
        for mut o in fake.objects(V, kind) {
            strip_object(&mut o, &rules);
            if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                for r in refs {
                    r.as_object_mut().unwrap().remove("uid");
                }
            }
            let key = format!(
                "{kind} {}/{}",
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            );
            out.insert(key, o);
        }
    }
    for mut o in fake.objects("apiextensions.k8s.io/v1", "CustomResourceDefinition") {
        strip_object(&mut o, &rules);
        out.insert(
            format!("CRD {}", o["metadata"]["name"].as_str().unwrap()),
            o,
        );
    }
    out
}

async fn backup(source: CustomResourcesSource, sink: Arc<MemorySink>) -> RunReport {
    let report = Pipeline::builder()
        .source(source)
        .sink(sink)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    report.into_result().unwrap()
}

fn shas(report: &RunReport) -> BTreeMap<String, String> {
    report
        .manifest
        .artifacts
        .iter()
        .map(|a| (a.name.clone(), a.plain_sha256.clone()))
        .collect()
}

fn plural_of(r: &RequestRecord) -> Option<&str> {
    let segs: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let rest = if segs.first() == Some(&"api") {
        &segs[2..]
    } else if segs.len() > 3 {
        &segs[3..]
    } else {
        return None;
    };
    let rest = if rest.len() >= 3 && rest[0] == "namespaces" {
        &rest[2..]
    } else {
        rest
    };
    rest.first().copied()
}

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
        "spec": {"displayName": "Owned"}}), "kopf");
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
            "gostoa.dev/toolsets.yaml"
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
    let restorer = CustomResourcesRestorer::builder(fake.client())
        .establish_timeout(Duration::from_secs(10))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let r = restorer
        .restore_run(
            sink.as_ref(),
            &report.manifest,
            &Keyring::default(),
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.created as usize, before.len());
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

    // Order: CRDs applied, then waited for (polled until Established), then namespaces,
    // then kinds in STOA's order.
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
            "customresourcedefinitions",
            "namespaces",
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
    let first_ns_apply = applies.iter().find(|(_, p)| *p == "namespaces").unwrap().0;
    // Each CRD is polled; the first one long enough for the 1 s delay to pass (the
    // others, applied at the same time, are Established by then).
    for (name, min) in [
        ("gatewaybindings.gostoa.dev", 2),
        ("gatewayinstances.gostoa.dev", 1),
        ("skills.gostoa.dev", 1),
        ("tools.gostoa.dev", 1),
        ("toolsets.gostoa.dev", 1),
    ] {
        let polls = log[last_crd_apply..first_ns_apply]
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
    assert!(log[..first_ns_apply]
        .iter()
        .all(|r| !(r.path.starts_with("/apis/gostoa.dev/") && r.path.contains("/namespaces/"))));
    assert!(
        log.iter().all(|r| r.status != 404 || r.method == "GET"),
        "a write hit 404"
    );
}

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
    let r = CustomResourcesRestorer::builder(fake.client())
        .build()
        .unwrap()
        .restore_run(
            sink.as_ref(),
            &three.manifest,
            &Keyring::default(),
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.created as usize, three.manifest.artifacts.len());
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
    assert_eq!(counts.len(), 2);
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

    let dry = RestoreOptions {
        existing: ExistingDataPolicy::Overwrite,
        dry_run: true,
    };
    let r = weather_restorer(&fake, ConflictPolicy::Force)
        .restore_run(sink.as_ref(), &report.manifest, &Keyring::default(), &dry)
        .await
        .unwrap();
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
    assert_eq!((r.created, r.updated, r.skipped), (1, 1, 5));
    assert!(
        r.notes
            .contains(&"update Tool tenant-acme/weather-forecast".to_string()),
        "{:?}",
        r.notes
    );
    assert_eq!(snapshot(&fake), before, "a dry run changed the cluster");
    assert!(fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .all(|r| r.has_param("dryRun", "All")));

    // Fail policy on existing data: the drifted Tool is refused, by name.
    let e = weather_restorer(&fake, ConflictPolicy::Force)
        .restore_run(
            sink.as_ref(),
            &report.manifest,
            &Keyring::default(),
            &RestoreOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(
        e.to_string()
            .contains("Tool tenant-acme/weather-forecast exists in the target and differs"),
        "{e}"
    );

    // Overwrite with conflicts failing: the operator owns the field.
    let overwrite = RestoreOptions {
        existing: ExistingDataPolicy::Overwrite,
        dry_run: false,
    };
    let e = weather_restorer(&fake, ConflictPolicy::Fail)
        .restore_run(
            sink.as_ref(),
            &report.manifest,
            &Keyring::default(),
            &overwrite,
        )
        .await
        .unwrap_err();
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

    // Force takes the fields over.
    let r = weather_restorer(&fake, ConflictPolicy::Force)
        .restore_run(
            sink.as_ref(),
            &report.manifest,
            &Keyring::default(),
            &overwrite,
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
    let skip = RestoreOptions {
        existing: ExistingDataPolicy::Skip,
        dry_run: false,
    };
    let r = weather_restorer(&fake, ConflictPolicy::Fail)
        .restore_run(sink.as_ref(), &report.manifest, &Keyring::default(), &skip)
        .await
        .unwrap();
    assert_eq!((r.created, r.updated, r.skipped), (0, 0, 7));
}

/// A fake API server that wants the token "right", and a source sending another one.
async fn wrong_token_source() -> (FakeKube, CustomResourcesSource) {
    let fake = FakeKube::start_with(FakeKubeOptions {
        token: Some("right".into()),
        ..Default::default()
    })
    .await;
    fake.load_fixture_crds();
    let src = CustomResourcesSource::builder(fake.client_with_token("wrong"))
        .build()
        .unwrap();
    (fake, src)
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

    // The pipeline records it as a failed artifact; the others are stored.
    let report = Pipeline::builder()
        .source(src)
        .sink(MemorySink::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(!report.is_complete());
    assert_eq!(report.manifest.failures.len(), 1);
    assert!(report.manifest.failures[0]
        .error
        .contains("tools.gostoa.dev"));
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

    let restorer = weather_restorer(&fake, ConflictPolicy::Fail);
    let doc = stoa_backup_test_support::kube_fake::parse_yaml_documents(
        &std::fs::read_to_string(
            stoa_backup_test_support::kube_fake::fixtures_dir().join("crds/tool-weather.yaml"),
        )
        .unwrap(),
    );
    let e = restorer
        .restore_documents(doc, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let msg = e.to_string();
    assert!(
        msg.contains("gostoa.dev/v1alpha1 Tool") && msg.contains("missing CRD group gostoa.dev"),
        "{msg}"
    );
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
    let e = restorer
        .restore_run(
            sink.as_ref(),
            &report.manifest,
            &Keyring::default(),
            &RestoreOptions::default(),
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
    // No resource was attempted.
    assert!(target
        .requests()
        .iter()
        .all(|r| !r.path.contains("/tenant-acme/")));
}

#[tokio::test]
async fn pod_exec_streams_stdout_and_fails_with_stderr_tail() {
    let fake = FakeKube::start().await;
    fake.add_pod("db", "pg-0", &["postgres"]);
    let exec = PodExec::new(fake.client(), "db", "pg-0")
        .container("postgres")
        .component("postgres");
    let cmd = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];

    // A few MB of binary stdout, streamed.
    let es = exec
        .spawn(
            &cmd("head -c 3000000 /dev/zero | tr '\\0' '\\377'; echo done >&2"),
            None,
        )
        .await
        .unwrap();
    let out = stream::collect(es.stream).await.unwrap();
    assert_eq!(out.len(), 3_000_000);
    assert!(out.iter().all(|b| *b == 0xff));
    let o = es.outcome.await.unwrap();
    assert_eq!(
        (o.exit_code, o.stdout_bytes, o.stderr_tail.as_str()),
        (0, 3_000_000, "done")
    );

    // Non-zero exit: the same wording as local processes, with the stderr tail.
    let es = exec
        .spawn(
            &cmd("printf partial; echo 'pg_dump: error: connection refused' >&2; exit 2"),
            None,
        )
        .await
        .unwrap();
    let e = stream::collect(es.stream).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Source);
    let msg = e.to_string();
    assert!(
        msg.contains("exited with code 2")
            && msg.contains("connection refused")
            && msg.contains("pod db/pg-0"),
        "{msg}"
    );
    assert_eq!(e.component(), Some("postgres"));

    // stdin is fed, then closed (v5).
    let (o, out) = exec
        .run_collect(&cmd("wc -c"), Some(stream::once(vec![b'x'; 100_000])), 64)
        .await
        .unwrap();
    assert_eq!(o.exit_code, 0);
    assert_eq!(String::from_utf8(out).unwrap().trim(), "100000");

    // Servers that only speak v4.channel.k8s.io work too (without stdin half-close).
    fake.set_exec_protocols(&["v4.channel.k8s.io"]);
    let (o, out) = exec
        .run_collect(&cmd("printf v4; exit 0"), None, 64)
        .await
        .unwrap();
    assert_eq!((o.exit_code, out.as_slice()), (0, &b"v4"[..]));
    fake.set_exec_protocols(&["v5.channel.k8s.io", "v4.channel.k8s.io"]);

    // A missing pod is a clear NotFound.
    let e = PodExec::new(fake.client(), "db", "nope")
        .spawn(&cmd("true"), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("pods \"nope\" not found"), "{e}");
    let reqs = fake.exec_requests();
    assert_eq!(reqs[0].container.as_deref(), Some("postgres"));
    assert_eq!(reqs[0].command[0], "sh");
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
    let r = CustomResourcesRestorer::builder(fake.client())
        .build()
        .unwrap()
        .restore_run(
            sink.as_ref(),
            &report.manifest,
            &keyring,
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.created, 5 + 2 + 1);
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
    CustomResourcesRestorer::builder(fake.client())
        .build()
        .unwrap()
        .restore_run(
            sink.as_ref(),
            &report.manifest,
            &keyring,
            &RestoreOptions::default(),
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
