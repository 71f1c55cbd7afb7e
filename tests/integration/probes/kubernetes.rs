//! Helm release storage and custom resources probes against the fake API server.

use base64::Engine;
use serde_json::{json, Value};
use stoa_backup::core::change::{ChangeProbe, ChangeToken};
use stoa_backup::core::ErrorKind;
use stoa_backup::providers::kubernetes::{CustomResourcesSource, HelmDriver, HelmValuesSource};
use stoa_backup_test_support::kube_fake::{FakeKube, FaultRule};

use super::names_probe;

const NS: &str = "stoa-system";
const V: &str = "gostoa.dev/v1alpha1";

/// A release revision as Helm's Secret driver stores it (the payload does not matter to
/// the probe).
fn release_secret(fake: &FakeKube, ns: &str, name: &str, revision: u64, status: &str) {
    let payload = base64::engine::general_purpose::STANDARD.encode(format!("{name}.v{revision}"));
    fake.put_as(
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": format!("sh.helm.release.v1.{name}.v{revision}"), "namespace": ns,
                         "labels": {"owner": "helm", "name": name, "status": status,
                                    "version": revision.to_string()}},
            "data": {"release": base64::engine::general_purpose::STANDARD.encode(payload)},
        }),
        "helm",
    );
}

fn helm_source(fake: &FakeKube) -> HelmValuesSource {
    HelmValuesSource::builder(fake.client())
        .release(NS, "stoa")
        .build()
        .unwrap()
}

async fn token(probe: &dyn ChangeProbe) -> ChangeToken {
    probe.probe().await.unwrap()
}

#[tokio::test]
async fn helm_probe_is_stable_and_ignores_unrelated_writes() {
    let fake = FakeKube::start().await;
    release_secret(&fake, NS, "stoa", 1, "superseded");
    release_secret(&fake, NS, "stoa", 2, "deployed");
    let probe = helm_source(&fake).change_probe();
    assert_eq!(probe.describe(), "Helm release Secrets of stoa-system/stoa");
    let first = token(&probe).await;
    assert_eq!(token(&probe).await, first, "nothing changed");

    // Another release of the namespace, the same release name in another namespace, an
    // Opaque Secret, and a Secret labelled owner=helm that is no release storage.
    release_secret(&fake, NS, "other", 1, "deployed");
    release_secret(&fake, "elsewhere", "stoa", 7, "deployed");
    fake.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "db-password", "namespace": NS}, "data": {"p": "cHc="}}),
    );
    fake.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "not-a-release", "namespace": NS,
                     "labels": {"owner": "helm", "name": "stoa"}}, "data": {}}),
    );
    assert_eq!(token(&probe).await, first, "unrelated writes are no change");

    // Metadata only: the release payloads never travel.
    let lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == format!("/api/v1/namespaces/{NS}/secrets"))
        .collect();
    assert_eq!(lists.len(), 3);
    for r in &lists {
        assert!(
            r.query.contains("labelSelector=owner%3Dhelm%2Cname%3Dstoa"),
            "{}",
            r.line()
        );
        assert!(
            r.query
                .contains("fieldSelector=type%3Dhelm.sh%2Frelease.v1"),
            "{}",
            r.line()
        );
    }
}

#[tokio::test]
async fn helm_probe_sees_new_revisions_and_uninstalls() {
    let fake = FakeKube::start().await;
    release_secret(&fake, NS, "stoa", 1, "deployed");
    let probe = helm_source(&fake).change_probe();
    let first = token(&probe).await;

    // `helm upgrade`: revision 2 deployed, revision 1 superseded.
    release_secret(&fake, NS, "stoa", 2, "pending-upgrade");
    let pending = token(&probe).await;
    assert_ne!(pending, first, "a new revision Secret is a change");
    release_secret(&fake, NS, "stoa", 1, "superseded");
    release_secret(&fake, NS, "stoa", 2, "deployed");
    let upgraded = token(&probe).await;
    assert_ne!(upgraded, pending, "the status labels moved");
    assert_eq!(token(&probe).await, upgraded);

    // `helm uninstall`: the release Secrets go away.
    for rev in [1, 2] {
        assert!(fake.remove(
            "v1",
            "Secret",
            Some(NS),
            &format!("sh.helm.release.v1.stoa.v{rev}")
        ));
    }
    let gone = token(&probe).await;
    assert_ne!(gone, upgraded, "an uninstall is a change");
    assert_ne!(gone, first);
}

#[tokio::test]
async fn helm_probe_of_a_namespace_and_the_configmap_driver() {
    let fake = FakeKube::start().await;
    release_secret(&fake, NS, "stoa", 1, "deployed");
    let probe = HelmValuesSource::builder(fake.client())
        .namespace(NS)
        .build()
        .unwrap()
        .change_probe();
    assert_eq!(
        probe.describe(),
        "Helm release Secrets of stoa-system (every release)"
    );
    let first = token(&probe).await;
    release_secret(&fake, NS, "keycloak", 1, "deployed");
    assert_ne!(
        token(&probe).await,
        first,
        "a new release of the namespace is a change"
    );

    let cm = |rev: u64, status: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("sh.helm.release.v1.stoa.v{rev}"), "namespace": NS,
                         "labels": {"owner": "helm", "name": "stoa", "status": status, "version": rev.to_string()}},
            "data": {"release": "H4sIAAAA"}})
    };
    let fake = FakeKube::start().await;
    fake.put(cm(1, "deployed"));
    let probe = HelmValuesSource::builder(fake.client())
        .release(NS, "stoa")
        .driver(HelmDriver::ConfigMap)
        .build()
        .unwrap()
        .change_probe();
    assert_eq!(
        probe.describe(),
        "Helm release ConfigMaps of stoa-system/stoa"
    );
    let first = token(&probe).await;
    release_secret(&fake, NS, "stoa", 9, "deployed");
    assert_eq!(
        token(&probe).await,
        first,
        "the ConfigMap driver ignores Secrets"
    );
    fake.put(cm(2, "deployed"));
    assert_ne!(token(&probe).await, first);
}

#[tokio::test]
async fn helm_probe_errors_keep_their_kind() {
    let fake = FakeKube::start().await;
    release_secret(&fake, NS, "stoa", 1, "deployed");
    let probe = helm_source(&fake).change_probe();

    fake.inject(
        FaultRule::forbidden("system:serviceaccount:stoa:backup")
            .path_contains("/secrets")
            .times(1),
    );
    let e = probe.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    names_probe(&e, "helm");
    assert!(
        e.to_string()
            .contains("list the revisions of Helm release stoa-system/stoa"),
        "{e}"
    );

    fake.inject(
        FaultRule::status(503, "ServiceUnavailable", "etcd leader changed")
            .path_contains("/secrets")
            .times(1),
    );
    let e = probe.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    names_probe(&e, "helm");

    fake.set_token(Some("right"));
    let e = probe.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    names_probe(&e, "helm");
    fake.set_token(None);
    probe.probe().await.unwrap();
}

/// A CRD of another group, Established at once, and one object of it.
fn other_group(fake: &FakeKube) {
    fake.put(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}));
    fake.put(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "tenant-acme"}, "spec": {"size": 1}}));
}

fn tool(ns: &str, name: &str, display: &str) -> Value {
    json!({"apiVersion": V, "kind": "Tool", "metadata": {"name": name, "namespace": ns},
           "spec": {"displayName": display, "description": "a tool", "endpoint": "https://api.example/x", "method": "POST"}})
}

/// The resourceVersion of a list of Tools, as the API server serves it.
async fn tools_list_rv(fake: &FakeKube) -> String {
    let v: Value = reqwest::get(format!("{}/apis/{V}/tools", fake.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn crs_probe_ignores_unrelated_writes_that_move_the_list_resource_version() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    let probe = CustomResourcesSource::builder(fake.client())
        .build()
        .unwrap()
        .change_probe();
    assert_eq!(
        probe.describe(),
        "custom resources of gostoa.dev (every kind), with their CRDs, namespaces"
    );
    let first = token(&probe).await;
    assert_eq!(token(&probe).await, first, "nothing changed");
    let list_rv = tools_list_rv(&fake).await;

    // Writes the source does not back up: another group's CRD and object, an unreferenced
    // Secret, a ConfigMap, another namespace.
    other_group(&fake);
    fake.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "unrelated", "namespace": "tenant-acme"}, "data": {}}),
    );
    fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "kube-system"}, "data": {"a": "b"}}));
    fake.put(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "unrelated-ns"}}),
    );
    assert_eq!(token(&probe).await, first, "unrelated writes are no change");
    // What a list's resourceVersion would have said: it is the store's revision.
    assert_ne!(
        tools_list_rv(&fake).await,
        list_rv,
        "the list resourceVersion moved with writes elsewhere"
    );

    // The three probes listed Tools in pages (the two other lists are this test's own).
    let paged = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == format!("/apis/{V}/tools") && r.has_param("limit", "500"))
        .count();
    assert_eq!(paged, 3);
}

#[tokio::test]
async fn crs_probe_sees_updates_creations_and_deletions() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    let probe = CustomResourcesSource::builder(fake.client())
        .build()
        .unwrap()
        .change_probe();
    let first = token(&probe).await;

    let mut weather = fake
        .get(V, "Tool", Some("tenant-acme"), "weather-forecast")
        .unwrap();
    weather["spec"]["displayName"] = json!("Weather (v2)");
    fake.put(weather);
    let updated = token(&probe).await;
    assert_ne!(updated, first, "an updated Tool is a change");

    fake.put(tool("tenant-beta", "search", "Search"));
    let created = token(&probe).await;
    assert_ne!(created, updated, "a new Tool is a change");

    assert!(fake.remove(V, "Tool", Some("tenant-beta"), "search"));
    let deleted = token(&probe).await;
    assert_ne!(deleted, created, "a deleted Tool is a change");
    // The namespace tenant-beta stays, but no resource lives there any more: it is not
    // backed up, and the token is the one before the creation.
    assert_eq!(
        deleted, updated,
        "the same objects at the same versions: the same token"
    );

    // The namespaces the resources live in are backed up with their labels: a label is a
    // change. A new CRD in the group is one too.
    let mut ns = fake.get("v1", "Namespace", None, "tenant-acme").unwrap();
    ns["metadata"]["labels"]["gostoa.dev/tenant"] = json!("acme");
    fake.put(ns);
    let labelled = token(&probe).await;
    assert_ne!(
        labelled, deleted,
        "a label on a related namespace is a change"
    );
    let mut crd = fake
        .get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "skills.gostoa.dev",
        )
        .unwrap();
    crd["metadata"]["labels"]["gostoa.dev/reviewed"] = json!("yes");
    fake.put(crd);
    assert_ne!(token(&probe).await, labelled, "a changed CRD is a change");
}

#[tokio::test]
async fn crs_probe_follows_the_source_configuration() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    for i in 0..7 {
        fake.put(tool("tenant-acme", &format!("t-{i}"), "T"));
    }
    // Paging does not change the token.
    let paged = CustomResourcesSource::builder(fake.client())
        .page_size(2)
        .build()
        .unwrap()
        .change_probe();
    let whole = CustomResourcesSource::builder(fake.client())
        .build()
        .unwrap()
        .change_probe();
    fake.clear_requests();
    assert_eq!(token(&paged).await, token(&whole).await);
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path == format!("/apis/{V}/tools") && r.query.contains("continue=")),
        "the small pages were followed"
    );

    // Configured namespaces and kinds: writes outside them are no change.
    let acme_tools = CustomResourcesSource::builder(fake.client())
        .namespaces(["tenant-acme"])
        .kinds(["Tool"])
        .build()
        .unwrap()
        .change_probe();
    assert_eq!(
        acme_tools.describe(),
        "custom resources of gostoa.dev (Tool), with their CRDs, namespaces"
    );
    let first = token(&acme_tools).await;
    fake.put(tool("tenant-beta", "elsewhere", "E"));
    let mut set = fake
        .get(V, "ToolSet", Some("tenant-acme"), "openai-tools")
        .unwrap();
    set["spec"]["prefix"] = json!("oa_");
    fake.put(set);
    let mut crd = fake
        .get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "toolsets.gostoa.dev",
        )
        .unwrap();
    crd["metadata"]["labels"]["x"] = json!("y");
    fake.put(crd);
    assert_eq!(
        token(&acme_tools).await,
        first,
        "other namespaces and kinds"
    );
    fake.put(tool("tenant-acme", "t-0", "T changed"));
    assert_ne!(token(&acme_tools).await, first);

    // Another group configured: the first group's writes are no change.
    other_group(&fake);
    let widgets = CustomResourcesSource::builder(fake.client())
        .group("example.com")
        .build()
        .unwrap()
        .change_probe();
    let first = token(&widgets).await;
    fake.put(tool("tenant-acme", "t-1", "T changed"));
    assert_eq!(token(&widgets).await, first, "another group");
    fake.put(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "tenant-acme"}, "spec": {"size": 2}}));
    assert_ne!(token(&widgets).await, first);
}

#[tokio::test]
async fn crs_probe_watches_referenced_secrets_and_included_kinds() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    let secret = |value: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "openai-api-key", "namespace": "tenant-acme"},
               "data": {"key": base64::engine::general_purpose::STANDARD.encode(value)}})
    };
    fake.put(secret("sk-1"));
    let config_map = |ns: &str, name: &str, v: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": ns,
                            "labels": {"app.kubernetes.io/part-of": "stoa-platform"}},
               "data": {"v": v}})
    };
    fake.put(config_map("tenant-acme", "tool-config", "1"));
    let probe = CustomResourcesSource::builder(fake.client())
        .referenced_secrets(true)
        .include_kind("v1", "ConfigMap", "app.kubernetes.io/part-of=stoa-platform")
        .build()
        .unwrap()
        .change_probe();
    let first = token(&probe).await;

    // Unreferenced Secrets, unlabelled ConfigMaps and labelled ones in namespaces without
    // resources are not backed up.
    fake.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "other", "namespace": "tenant-acme"}, "data": {}}),
    );
    fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-root-ca.crt", "namespace": "tenant-acme"}, "data": {}}));
    fake.put(config_map("tenant-none", "tool-config", "1"));
    assert_eq!(token(&probe).await, first);

    fake.put(secret("sk-2"));
    let rotated = token(&probe).await;
    assert_ne!(rotated, first, "a rotated referenced Secret is a change");
    fake.put(config_map("tenant-acme", "tool-config", "2"));
    let configured = token(&probe).await;
    assert_ne!(configured, rotated, "an included ConfigMap changed");
    assert!(fake.remove("v1", "Secret", Some("tenant-acme"), "openai-api-key"));
    assert_ne!(
        token(&probe).await,
        configured,
        "a referenced Secret deleted"
    );
}

#[tokio::test]
async fn crs_probe_errors_keep_their_kind() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    let probe = CustomResourcesSource::builder(fake.client())
        .component("stoa-crs")
        .build()
        .unwrap()
        .change_probe();
    token(&probe).await;

    fake.inject(
        FaultRule::forbidden("system:serviceaccount:stoa:backup")
            .path_contains("/tools")
            .times(1),
    );
    let e = probe.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    names_probe(&e, "stoa-crs");
    assert!(
        e.to_string().contains("list Tool (tools.gostoa.dev)"),
        "{e}"
    );

    fake.inject(
        FaultRule::status(503, "ServiceUnavailable", "etcd leader changed")
            .path_contains("customresourcedefinitions")
            .times(1),
    );
    let e = probe.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    names_probe(&e, "stoa-crs");

    fake.set_token(Some("right"));
    let e = probe.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    names_probe(&e, "stoa-crs");
}
