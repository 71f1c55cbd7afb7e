//! Shared by the custom resources tests: STOA data in the fake API server, snapshots to
//! compare clusters, backups, and restores through the core `Restore` driver (plan, then
//! apply), as an application does.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use stoa_backup::core::{
    ExistingDataPolicy, Keyring, MemorySink, Pipeline, Restore, RestorePlan, RestoreReport, Result,
    RunReport,
};
use stoa_backup::providers::kubernetes::{
    strip_object, CustomResourcesRestoreFacts, CustomResourcesRestorer, CustomResourcesSource,
    ObjectOutcome, StripRules,
};
use stoa_backup_test_support::kube_fake::{FakeKube, FakeKubeOptions, RequestRecord};

pub const V: &str = "gostoa.dev/v1alpha1";
pub const KINDS: &[(&str, &str)] = &[
    ("GatewayInstance", "gatewayinstances"),
    ("Tool", "tools"),
    ("ToolSet", "toolsets"),
    ("Skill", "skills"),
    ("GatewayBinding", "gatewaybindings"),
];
pub const NAMESPACES: usize = 4;
pub const TOOLS_PER_NS: usize = 60;

/// What the operator leaves on objects: status, kopf marks, kubectl's annotation.
pub fn operator_marks(mut o: Value) -> Value {
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

/// A Tool spec valid against the fixture CRD's schema.
pub fn tool_spec(t: usize) -> Value {
    json!({"displayName": format!("Tool {t}"), "description": "generated\nwith two lines",
           "endpoint": format!("https://api.example/{t}"), "method": "POST",
           "rateLimit": "100/min", "annotations": {"readOnly": t.is_multiple_of(2)},
           "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}})
}

/// Fixture CRDs and resources, plus hundreds of generated objects in several namespaces.
/// Returns the number of custom resources.
pub fn populate(fake: &FakeKube) -> usize {
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
            fake.put_as(
                operator_marks(json!({"apiVersion": V, "kind": "Tool",
                "metadata": {"name": format!("tool-{t:03}"), "namespace": ns}, "spec": tool_spec(t)})),
                "kopf",
            );
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
pub fn snapshot(fake: &FakeKube) -> BTreeMap<String, Value> {
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

pub async fn backup(source: CustomResourcesSource, sink: Arc<MemorySink>) -> RunReport {
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

pub fn shas(report: &RunReport) -> BTreeMap<String, String> {
    report
        .manifest
        .artifacts
        .iter()
        .map(|a| (a.name.clone(), a.plain_sha256.clone()))
        .collect()
}

/// The resource plural a request is about (`tools`, `namespaces`…).
pub fn plural_of(r: &RequestRecord) -> Option<&str> {
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

/// Whether a request changed nothing: a read, or a server-side dry run.
pub fn is_read_or_dry_run(r: &RequestRecord) -> bool {
    r.method == "GET" || r.has_param("dryRun", "All")
}

/// A restorer for the fake that polls CRDs every 50 ms for up to 10 s.
pub fn restorer(
    fake: &FakeKube,
) -> stoa_backup::providers::kubernetes::CustomResourcesRestorerBuilder {
    CustomResourcesRestorer::builder(fake.client())
        .establish_timeout(std::time::Duration::from_secs(10))
        .poll_interval(std::time::Duration::from_millis(50))
}

/// The restore driver over `sink` with one restorer.
pub fn driver(
    sink: Arc<MemorySink>,
    keyring: &Keyring,
    restorer: CustomResourcesRestorer,
    existing: ExistingDataPolicy,
) -> Restore {
    Restore::builder()
        .sink(sink)
        .keyring(keyring.clone())
        .restorer(restorer)
        .existing(existing)
        .build()
        .unwrap()
}

/// The plan's report of the (only) component.
pub fn planned(plan: &RestorePlan) -> &RestoreReport {
    &plan.components[0].report
}

/// Plans, then applies, the restore of `report`'s run; returns what the apply did.
pub async fn restore_run(
    sink: Arc<MemorySink>,
    report: &RunReport,
    keyring: &Keyring,
    restorer: CustomResourcesRestorer,
    existing: ExistingDataPolicy,
) -> Result<RestoreReport> {
    crate::restore_support::restore_component(
        sink,
        &report.manifest,
        keyring,
        restorer,
        existing,
        false,
    )
    .await
}

/// The objects of a report's facts with an outcome, as `Kind namespace/name`.
pub fn labels_with(report: &RestoreReport, outcome: ObjectOutcome) -> Vec<String> {
    CustomResourcesRestoreFacts::of(report)
        .unwrap()
        .with_outcome(outcome)
        .map(|o| o.label())
        .collect()
}

/// A fake API server that wants the token "right", and a source sending another one.
pub async fn wrong_token_source() -> (FakeKube, CustomResourcesSource) {
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
