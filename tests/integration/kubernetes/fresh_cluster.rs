//! Custom resources restored into a fresh cluster as an operator would (issue #14, item 7):
//! the backup holds STOA's CRDs, the namespaces with their labels and annotations, valid
//! objects and a few that the CRD schemas reject (stored before the schemas were tightened:
//! the API server does not re-validate stored objects). The plan validates what the server
//! can check with `dryRun=All` and says "cannot validate yet" for the rest without asking
//! about them; the apply creates namespaces, CRDs, waits for them, applies the objects, and
//! reports exactly what was applied, what failed and why, stopping or continuing by policy.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoa_backup::core::{Error, ErrorKind, ExistingDataPolicy, Keyring, MemorySink, RunReport};
use stoa_backup::providers::kubernetes::{
    CustomResourcesRestoreFacts, CustomResourcesSource, FailurePolicy, Layout, ObjectOutcome,
};
use stoa_backup_test_support::kube_fake::{FakeKube, FakeKubeOptions};

use super::support::{
    backup, driver, is_read_or_dry_run, labels_with, planned, plural_of, restore_run, restorer,
    tool_spec, V,
};

/// The objects the schemas reject, in restore order, with the field each breaks.
const INVALID: &[(&str, &str)] = &[
    ("Tool tenant-acme/legacy-fetch", "spec.method"),
    ("Tool tenant-globex/no-endpoint", "spec.endpoint"),
    ("Skill tenant-globex/loud", "spec.priority"),
    ("GatewayBinding tenant-acme/unbound", "spec.gatewayRef"),
];

fn namespace(fake: &FakeKube, name: &str, tenant: &str) {
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"gostoa.dev/tenant": tenant, "app.kubernetes.io/part-of": "stoa-platform"},
                     "annotations": {"gostoa.dev/owner": format!("{tenant}-platform-team")}}}));
}

/// STOA's CRDs and example resources, two labelled tenants, and for each a gateway, tools,
/// a skill and a binding; plus the four objects of [`INVALID`]. Returns the number of
/// custom resources.
fn stoa_cluster(fake: &FakeKube) -> usize {
    namespace(fake, "tenant-acme", "acme");
    namespace(fake, "tenant-globex", "globex");
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    let mut n = 2;
    for ns in ["tenant-acme", "tenant-globex"] {
        fake.put_as(
            json!({"apiVersion": V, "kind": "GatewayInstance",
            "metadata": {"name": "gw-0", "namespace": ns},
            "spec": {"displayName": "Gateway", "gatewayType": "stoa", "environment": "prod",
                     "baseUrl": format!("http://gw-0.{ns}:8080")}}),
            "kopf",
        );
        for t in 0..3 {
            fake.put_as(json!({"apiVersion": V, "kind": "Tool",
                "metadata": {"name": format!("tool-{t:02}"), "namespace": ns}, "spec": tool_spec(t)}), "kopf");
        }
        fake.put_as(
            json!({"apiVersion": V, "kind": "Skill",
            "metadata": {"name": "concise", "namespace": ns},
            "spec": {"name": "Concise", "scope": "tenant", "priority": 40}}),
            "kopf",
        );
        fake.put_as(
            json!({"apiVersion": V, "kind": "GatewayBinding",
            "metadata": {"name": "bind-0", "namespace": ns},
            "spec": {"apiRef": {"name": "weather"}, "gatewayRef": {"name": "gw-0"}}}),
            "kopf",
        );
        n += 6;
    }
    let mut fetch = tool_spec(9);
    fetch["method"] = json!("FETCH");
    fake.put_as(
        json!({"apiVersion": V, "kind": "Tool",
        "metadata": {"name": "legacy-fetch", "namespace": "tenant-acme"}, "spec": fetch}),
        "kopf",
    );
    let mut no_endpoint = tool_spec(8);
    no_endpoint.as_object_mut().unwrap().remove("endpoint");
    fake.put_as(
        json!({"apiVersion": V, "kind": "Tool",
        "metadata": {"name": "no-endpoint", "namespace": "tenant-globex"}, "spec": no_endpoint}),
        "kopf",
    );
    fake.put_as(
        json!({"apiVersion": V, "kind": "Skill",
        "metadata": {"name": "loud", "namespace": "tenant-globex"},
        "spec": {"name": "Loud", "scope": "tenant", "priority": "high"}}),
        "kopf",
    );
    fake.put_as(
        json!({"apiVersion": V, "kind": "GatewayBinding",
        "metadata": {"name": "unbound", "namespace": "tenant-acme"},
        "spec": {"apiRef": {"name": "weather"}}}),
        "kopf",
    );
    n + INVALID.len()
}

/// A backup of [`stoa_cluster`]; returns it with the number of objects it holds
/// (namespaces, CRDs, custom resources).
async fn stoa_backup(sink: Arc<MemorySink>) -> (RunReport, usize) {
    let source = FakeKube::start().await;
    let resources = stoa_cluster(&source);
    let report = backup(
        CustomResourcesSource::builder(source.client())
            .build()
            .unwrap(),
        sink,
    )
    .await;
    (report, 2 + 5 + resources)
}

async fn fresh_cluster() -> FakeKube {
    FakeKube::start_with(FakeKubeOptions {
        established_delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await
}

fn split(list: Option<&str>) -> Vec<String> {
    match list {
        None | Some("none") => Vec::new(),
        Some(l) => l.split(", ").map(str::to_string).collect(),
    }
}

/// `Kind ns/name` → whether the fake holds it.
fn present(fake: &FakeKube, label: &str) -> bool {
    let (kind, rest) = label.split_once(' ').unwrap();
    let (ns, name) = match rest.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, rest),
    };
    let av = match kind {
        "Namespace" => "v1",
        "CustomResourceDefinition" => "apiextensions.k8s.io/v1",
        _ => V,
    };
    fake.get(av, kind, ns, name).is_some()
}

fn assert_names_field(e: &Error, label: &str, field: &str) {
    let msg = e.to_string();
    let at = msg
        .find(&format!("{label}:"))
        .unwrap_or_else(|| panic!("{label} not named in {msg}"));
    assert!(
        msg[at..].contains("is invalid") && msg[at..].contains(field),
        "{label}: {field} not in {msg}"
    );
}

#[tokio::test]
async fn fresh_cluster_plan_says_what_it_cannot_validate_and_the_apply_reports_every_object() {
    let sink = Arc::new(MemorySink::new());
    let (report, total) = stoa_backup(sink.clone()).await;
    let names: BTreeSet<&str> = report
        .manifest
        .artifacts
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert!(names.contains("namespaces.yaml"), "{names:?}");

    let target = fresh_cluster().await;
    let keys = Keyring::default();
    let restore = driver(
        sink.clone(),
        &keys,
        restorer(&target)
            .on_failure(FailurePolicy::Continue)
            .build()
            .unwrap(),
        ExistingDataPolicy::Fail,
    );
    let plan = restore.plan(&report.manifest).await.unwrap();
    let p = planned(&plan);
    let facts = CustomResourcesRestoreFacts::of(p).unwrap();
    assert_eq!(facts.objects.len(), total);
    // Namespaces and CRDs are checked by the server; every custom resource waits for its
    // CRD, and says so.
    let validated = labels_with(p, ObjectOutcome::Validated);
    assert_eq!(
        validated,
        [
            "Namespace tenant-acme",
            "Namespace tenant-globex",
            "CustomResourceDefinition gatewaybindings.gostoa.dev",
            "CustomResourceDefinition gatewayinstances.gostoa.dev",
            "CustomResourceDefinition skills.gostoa.dev",
            "CustomResourceDefinition tools.gostoa.dev",
            "CustomResourceDefinition toolsets.gostoa.dev",
        ]
    );
    let waiting: Vec<_> = facts.with_outcome(ObjectOutcome::CannotValidate).collect();
    assert_eq!(waiting.len(), total - 7);
    for o in &waiting {
        let plural = format!("{}s", o.kind.to_ascii_lowercase());
        assert_eq!(
            o.reason.as_deref().unwrap(),
            format!(
                "cannot validate yet: CRD {plural}.gostoa.dev not installed, namespace {} does not exist",
                o.namespace.as_deref().unwrap()
            ),
            "{o:?}"
        );
    }
    assert!(p.notes.contains(
        &"create Tool tenant-acme/legacy-fetch (cannot validate yet: CRD tools.gostoa.dev not installed, namespace tenant-acme does not exist)".to_string()
    ), "{:?}", p.notes);
    assert_eq!((p.created, p.updated, p.conflicts), (total as u64, 0, 0));
    // The plan wrote nothing and asked nothing about the custom resources.
    let log = target.requests();
    assert!(log.iter().all(is_read_or_dry_run), "{log:?}");
    assert!(log.iter().all(|r| !r.path.starts_with("/apis/gostoa.dev")));
    assert!(!present(&target, "Namespace tenant-acme"));
    assert!(target.pending_crds().is_empty() && !target.serves("gostoa.dev", "v1alpha1"));

    // The apply: namespaces, CRDs, the wait, the objects; every rejected one named with
    // the field the server named, everything else applied.
    target.clear_requests();
    let e = restore.apply(&plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Restore, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("4 of {total} objects failed: ")),
        "{msg}"
    );
    for (label, field) in INVALID {
        assert_names_field(&e, label, field);
        assert!(!present(&target, label), "{label} was applied");
    }
    let applied = split(e.context_value("applied"));
    assert_eq!(applied.len(), total - INVALID.len());
    for label in &applied {
        assert!(present(&target, label), "{label} reported applied, absent");
    }
    assert!(e.hint().unwrap().contains("restore again"), "{e:?}");
    // The namespaces came back with their labels and annotations, before anything else.
    let acme = target.get("v1", "Namespace", None, "tenant-acme").unwrap();
    assert_eq!(acme["metadata"]["labels"]["gostoa.dev/tenant"], "acme");
    assert_eq!(
        acme["metadata"]["annotations"]["gostoa.dev/owner"],
        "acme-platform-team"
    );
    let log = target.requests();
    let writes: Vec<&str> = log
        .iter()
        .filter(|r| !is_read_or_dry_run(r))
        .map(|r| plural_of(r).unwrap())
        .collect();
    assert_eq!(&writes[..2], ["namespaces", "namespaces"]);
    assert!(writes[2..7]
        .iter()
        .all(|p| *p == "customresourcedefinitions"));
    // Each object is checked by a dry run before its apply; the invalid ones get no write.
    let first_cr = log
        .iter()
        .position(|r| r.path.starts_with("/apis/gostoa.dev/") && r.path.contains("/namespaces/"))
        .unwrap();
    assert!(log[..first_cr].iter().any(|r| r
        .path
        .ends_with("/customresourcedefinitions/tools.gostoa.dev")
        && r.method == "GET"));
    assert!(log
        .iter()
        .filter(|r| r.path.ends_with("/tools/legacy-fetch"))
        .all(is_read_or_dry_run));
}

#[tokio::test]
async fn fresh_cluster_apply_stops_at_the_first_rejected_object_by_default() {
    let sink = Arc::new(MemorySink::new());
    let (report, total) = stoa_backup(sink.clone()).await;
    let target = fresh_cluster().await;
    let e = restore_run(
        sink,
        &report,
        &Keyring::default(),
        restorer(&target).build().unwrap(),
        ExistingDataPolicy::Fail,
    )
    .await
    .unwrap_err();
    assert_eq!((e.kind(), e.http_status()), (ErrorKind::Restore, Some(422)));
    let (first, field) = INVALID[0];
    assert_eq!(e.context_value("failed"), Some(first));
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("apply {first}: Tool.gostoa.dev \"legacy-fetch\" is invalid: {field}: Unsupported value: \"FETCH\"")),
        "{msg}"
    );
    let applied = split(e.context_value("applied"));
    let not_attempted = split(e.context_value("not attempted"));
    // Namespaces, CRDs, both gateways; the Tools of tenant-acme sort after legacy-fetch.
    assert_eq!(applied.len(), 2 + 5 + 2, "{applied:?}");
    assert_eq!(applied.len() + 1 + not_attempted.len(), total);
    assert!(
        msg.contains(&format!(
            "the restore stopped there: 9 of {total} objects applied before it, 0 left as they were, {} not attempted",
            not_attempted.len()
        )),
        "{msg}"
    );
    for label in &applied {
        assert!(present(&target, label), "{label}");
    }
    for label in not_attempted.iter().chain([first.to_string()].iter()) {
        assert!(!present(&target, label), "{label} was written");
    }
    assert!(not_attempted.contains(&"Tool tenant-acme/weather-forecast".to_string()));
}

#[tokio::test]
async fn with_crds_present_the_plan_reports_every_invalid_object_and_the_apply_follows_the_policy()
{
    let sink = Arc::new(MemorySink::new());
    let (report, total) = stoa_backup(sink.clone()).await;
    // A target with the CRDs and the namespaces, none of the objects.
    let prepared = || async {
        let target = fresh_cluster().await;
        target.load_fixture_crds();
        namespace(&target, "tenant-acme", "acme");
        namespace(&target, "tenant-globex", "globex");
        target.clear_requests();
        target
    };
    let target = prepared().await;
    let keys = Keyring::default();
    let restore = driver(
        sink.clone(),
        &keys,
        restorer(&target).build().unwrap(),
        ExistingDataPolicy::Fail,
    );
    let plan = restore.plan(&report.manifest).await.unwrap();
    let p = planned(&plan);
    let facts = CustomResourcesRestoreFacts::of(p).unwrap();
    let rejected: Vec<_> = facts.with_outcome(ObjectOutcome::Rejected).collect();
    let got: Vec<(String, &str)> = rejected
        .iter()
        .map(|o| (o.label(), o.causes[0].field.as_str()))
        .collect();
    let want: Vec<(String, &str)> = INVALID.iter().map(|(l, f)| (l.to_string(), *f)).collect();
    assert_eq!(got, want);
    for o in &rejected {
        assert_eq!(o.http_status, Some(422));
        assert!(o.reason.as_deref().unwrap().contains("is invalid"), "{o:?}");
        assert!(
            p.notes
                .iter()
                .any(|n| n.starts_with(&format!("rejected {}: ", o.label()))),
            "{:?}",
            p.notes
        );
    }
    assert_eq!(
        facts.with_outcome(ObjectOutcome::CannotValidate).count(),
        0,
        "CRDs and namespaces are there: everything can be validated"
    );
    let skipped = 2 + 5; // the namespaces and CRDs, unchanged
    assert_eq!(
        (p.created as usize, p.skipped as usize),
        (total - skipped - INVALID.len(), skipped)
    );
    // The plan wrote nothing.
    assert!(target.requests().iter().all(is_read_or_dry_run));
    assert!(target.objects(V, "Tool").is_empty());

    // Stop (the default): the first invalid Tool ends it, after the gateways.
    let e = restore.apply(&plan).await.unwrap_err();
    assert_eq!(e.context_value("failed"), Some(INVALID[0].0));
    assert_eq!(
        split(e.context_value("applied")),
        [
            "GatewayInstance tenant-acme/gw-0",
            "GatewayInstance tenant-globex/gw-0"
        ]
    );
    assert_eq!(target.objects(V, "Tool").len(), 0);

    // Continue: every failure listed with its reason, everything else applied.
    let target = prepared().await;
    let e = restore_run(
        sink,
        &report,
        &keys,
        restorer(&target)
            .on_failure(FailurePolicy::Continue)
            .build()
            .unwrap(),
        ExistingDataPolicy::Fail,
    )
    .await
    .unwrap_err();
    for (label, field) in INVALID {
        assert_names_field(&e, label, field);
    }
    assert!(
        e.to_string()
            .contains(&format!("4 of {total} objects failed")),
        "{e}"
    );
    let applied = split(e.context_value("applied"));
    assert_eq!(applied.len(), total - skipped - INVALID.len());
    assert_eq!(target.objects(V, "Tool").len(), 2 * 3 + 1);
}

#[tokio::test]
async fn configmaps_included_by_selector_round_trip_with_their_namespace() {
    let fake = FakeKube::start().await;
    namespace(&fake, "tenant-acme", "acme");
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    let part_of = json!({"app.kubernetes.io/part-of": "stoa-platform"});
    fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "weather-forecast-docs", "namespace": "tenant-acme", "labels": part_of},
        "data": {"README.md": "# Weather\nForecasts for a city.\n", "limits": "100/min"}}));
    fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-root-ca.crt", "namespace": "tenant-acme"}, "data": {"ca.crt": "x"}}));
    // Labelled, but in a namespace no custom resource lives in.
    fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "elsewhere", "namespace": "monitoring", "labels": part_of}, "data": {}}));
    let source = |layout| {
        CustomResourcesSource::builder(fake.client())
            .layout(layout)
            .include_kind("v1", "ConfigMap", "app.kubernetes.io/part-of=stoa-platform")
            .build()
            .unwrap()
    };
    let sink = Arc::new(MemorySink::new());
    let report = backup(source(Layout::PerKind), sink.clone()).await;
    let included = report
        .manifest
        .artifacts
        .iter()
        .find(|a| a.name == "included/configmaps.yaml")
        .unwrap();
    assert_eq!(included.facts["objects"], json!(1));
    assert_eq!(
        included.facts["label_selector"],
        "app.kubernetes.io/part-of=stoa-platform"
    );
    let per_object = backup(source(Layout::PerObject), Arc::new(MemorySink::new())).await;
    let names: Vec<&str> = per_object
        .manifest
        .artifacts
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert!(names.contains(&"included/configmaps/tenant-acme/weather-forecast-docs.yaml"));
    assert!(names.contains(&"namespaces/tenant-acme.yaml"));
    assert!(!names
        .iter()
        .any(|n| n.contains("elsewhere") || n.contains("kube-root")));

    let before = fake.get("v1", "Namespace", None, "tenant-acme").unwrap();
    fake.wipe();
    fake.clear_requests();
    let r = restore_run(
        sink,
        &report,
        &Keyring::default(),
        restorer(&fake).build().unwrap(),
        ExistingDataPolicy::Fail,
    )
    .await
    .unwrap();
    // Namespace, 5 CRDs, the ConfigMap, the Tool and the ToolSet.
    assert_eq!(r.created, 1 + 5 + 1 + 2);
    let cm = fake
        .get(
            "v1",
            "ConfigMap",
            Some("tenant-acme"),
            "weather-forecast-docs",
        )
        .unwrap();
    assert_eq!(
        cm["data"]["README.md"],
        "# Weather\nForecasts for a city.\n"
    );
    assert_eq!(cm["metadata"]["labels"], part_of);
    assert!(fake
        .get("v1", "ConfigMap", Some("monitoring"), "elsewhere")
        .is_none());
    let after = fake.get("v1", "Namespace", None, "tenant-acme").unwrap();
    for field in ["labels", "annotations"] {
        assert_eq!(
            after["metadata"][field], before["metadata"][field],
            "namespace {field}"
        );
    }
    // The ConfigMap is applied before the custom resources that use it.
    let writes: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| !is_read_or_dry_run(r))
        .filter_map(|r| plural_of(r).map(str::to_string))
        .collect();
    let pos = |p: &str| writes.iter().position(|w| w == p).unwrap();
    assert!(pos("namespaces") < pos("configmaps"), "{writes:?}");
    assert!(pos("configmaps") < pos("tools"), "{writes:?}");
}
