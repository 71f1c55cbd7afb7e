//! Self-tests of the fake with the real kube client.

use super::*;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, AttachParams, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use tokio::io::AsyncReadExt;

fn tools_ar() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gostoa.dev", "v1alpha1", "Tool"),
        "tools",
    )
}

fn status_of(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_plain_and_aggregated() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    let client = fake.client();
    let d = Discovery::new(client.clone())
        .filter(&["gostoa.dev"])
        .run()
        .await
        .unwrap();
    let g = d.get("gostoa.dev").expect("group");
    let mut kinds: Vec<String> = g
        .recommended_resources()
        .into_iter()
        .map(|(ar, _)| ar.kind)
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "GatewayBinding",
            "GatewayInstance",
            "Skill",
            "Tool",
            "ToolSet"
        ]
    );
    let d = Discovery::new(client)
        .filter(&["gostoa.dev", ""])
        .run_aggregated()
        .await
        .unwrap();
    assert!(d.has_group("gostoa.dev"));
    let (ar, caps) = d
        .resolve_gvk(&GroupVersionKind::gvk("gostoa.dev", "v1alpha1", "Tool"))
        .expect("tool");
    assert_eq!(ar.plural, "tools");
    assert!(caps.supports_operation("list"));
    assert!(fake.requests().iter().any(|r| r.path == "/apis"));
}

#[tokio::test]
async fn paging_selectors_and_errors() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    for i in 0..25 {
        fake.put(json!({"apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool",
            "metadata": {"name": format!("t{i:02}"), "namespace": if i % 2 == 0 { "a" } else { "b" },
                         "labels": {"parity": if i % 2 == 0 { "even" } else { "odd" }}},
            "spec": {"displayName": "x"}}));
    }
    let api: Api<DynamicObject> = Api::all_with(fake.client(), &tools_ar());
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|o| o.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    let odd = api
        .list(&ListParams::default().labels("parity=odd"))
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 12);
    let ns_api: Api<DynamicObject> = Api::namespaced_with(fake.client(), "a", &tools_ar());
    assert_eq!(
        ns_api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        13
    );

    let s = status_of(ns_api.get("nope").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, "tools.gostoa.dev \"nope\" not found");

    let mut obj = DynamicObject::new("t00", &tools_ar()).within("a");
    obj.data = json!({"spec": {"displayName": "y"}});
    let s = status_of(
        ns_api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));

    // Stale continue token.
    let first = api.list(&ListParams::default().limit(5)).await.unwrap();
    fake.expire_continue_tokens();
    let s = status_of(
        api.list(
            &ListParams::default()
                .limit(5)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));

    // A missing namespace.
    let missing: Api<DynamicObject> = Api::namespaced_with(fake.client(), "nowhere", &tools_ar());
    let obj = DynamicObject::new("x", &tools_ar()).within("nowhere");
    let s = status_of(
        missing
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_err(),
    );
    assert_eq!(s.message, "namespaces \"nowhere\" not found");
}

#[tokio::test]
async fn server_side_apply_conflicts_force_and_dry_run() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    let spec = |endpoint: &str| {
        json!({"displayName": "W", "description": "w", "endpoint": endpoint, "method": "GET",
               "inputSchema": {"type": "object"}})
    };
    fake.put_as(
        json!({"apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool",
        "metadata": {"name": "w", "namespace": "t"}, "spec": spec("http://a"),
        "status": {"registered": true}}),
        "kopf",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(fake.client(), "t", &tools_ar());
    let mut desired = DynamicObject::new("w", &tools_ar()).within("t");
    desired.data = json!({"spec": spec("http://b"), "status": {"registered": false}});
    let err = api
        .patch(
            "w",
            &PatchParams::apply("stoa-backup"),
            &Patch::Apply(&desired),
        )
        .await
        .unwrap_err();
    let s = status_of(err);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("conflict with \"kopf\""),
        "{}",
        s.message
    );
    assert!(s.message.contains(".spec.endpoint"), "{}", s.message);

    let before = fake
        .get("gostoa.dev/v1alpha1", "Tool", Some("t"), "w")
        .unwrap();
    let dry = api
        .patch(
            "w",
            &PatchParams::apply("stoa-backup").force().dry_run(),
            &Patch::Apply(&desired),
        )
        .await
        .unwrap();
    assert_eq!(dry.data["spec"]["endpoint"], "http://b");
    assert_eq!(
        fake.get("gostoa.dev/v1alpha1", "Tool", Some("t"), "w")
            .unwrap(),
        before
    );
    assert!(fake.requests().last().unwrap().has_param("dryRun", "All"));

    let applied = api
        .patch(
            "w",
            &PatchParams::apply("stoa-backup").force(),
            &Patch::Apply(&desired),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["endpoint"], "http://b");
    // status is a subresource: apply leaves it alone.
    assert_eq!(applied.data["status"]["registered"], true);
    let rv = applied.metadata.resource_version.clone();
    // Re-applying the same thing is a no-op.
    let again = api
        .patch(
            "w",
            &PatchParams::apply("stoa-backup"),
            &Patch::Apply(&desired),
        )
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, rv);
    let managers: Vec<String> = again
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"stoa-backup".to_string()),
        "{managers:?}"
    );

    // Apply creates (201) and deletes honour finalizers.
    let mut fresh = DynamicObject::new("n", &tools_ar()).within("t");
    fresh.metadata.finalizers = Some(vec!["kopf.zalando.org/KopfFinalizerMarker".into()]);
    api.patch(
        "n",
        &PatchParams::apply("stoa-backup"),
        &Patch::Apply(&fresh),
    )
    .await
    .unwrap();
    assert_eq!(fake.requests().last().unwrap().status, 201);
    api.delete("n", &DeleteParams::default()).await.unwrap();
    let n = fake
        .get("gostoa.dev/v1alpha1", "Tool", Some("t"), "n")
        .unwrap();
    assert!(n["metadata"]["deletionTimestamp"].is_string());
}

/// Custom resources are checked against their CRD's schema on every write, dry runs
/// included, and rejected with one 422 `Invalid` Status listing every violation.
#[tokio::test]
async fn custom_resources_are_validated_against_the_crd_schema() {
    let fake = FakeKube::start().await;
    fake.load_fixture_crds();
    fake.load_fixture_resources();
    let api: Api<DynamicObject> = Api::namespaced_with(fake.client(), "tenant-acme", &tools_ar());
    let good = api.get("weather-forecast").await.unwrap();
    let mut bad = DynamicObject::new("broken", &tools_ar()).within("tenant-acme");
    bad.data = good.data.clone();
    bad.data["spec"]["method"] = json!("FETCH");
    bad.data["spec"].as_object_mut().unwrap().remove("endpoint");
    bad.data.as_object_mut().unwrap().remove("status");
    fake.clear_requests();
    for params in [
        PatchParams::apply("stoa-backup").dry_run(),
        PatchParams::apply("stoa-backup"),
    ] {
        let s = status_of(
            api.patch("broken", &params, &Patch::Apply(&bad))
                .await
                .unwrap_err(),
        );
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
        assert_eq!(
            s.message,
            "Tool.gostoa.dev \"broken\" is invalid: [spec.endpoint: Required value, \
             spec.method: Unsupported value: \"FETCH\": supported values: \"GET\", \"POST\", \"PUT\", \"DELETE\", \"PATCH\"]"
        );
        let causes: Vec<(String, String)> = s
            .details
            .unwrap()
            .causes
            .into_iter()
            .map(|c| (c.field, c.reason))
            .collect();
        assert_eq!(
            causes,
            [
                (
                    "spec.endpoint".to_string(),
                    "FieldValueRequired".to_string()
                ),
                (
                    "spec.method".to_string(),
                    "FieldValueNotSupported".to_string()
                )
            ]
        );
    }
    assert!(api.get_opt("broken").await.unwrap().is_none());
    // A create and an update that would break the schema are refused too.
    let s = status_of(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(s.code, 422);
    let mut typed = good.clone();
    typed.metadata.managed_fields = None;
    typed.data["spec"]["annotations"]["readOnly"] = json!("yes");
    let s = status_of(
        api.patch(
            "weather-forecast",
            &PatchParams::apply("stoa-backup").force(),
            &Patch::Apply(&typed),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        s.message,
        "Tool.gostoa.dev \"weather-forecast\" is invalid: spec.annotations.readOnly: Invalid value: \"yes\": spec.annotations.readOnly in body must be of type boolean: \"yes\""
    );
    assert_eq!(
        fake.get(
            "gostoa.dev/v1alpha1",
            "Tool",
            Some("tenant-acme"),
            "weather-forecast"
        )
        .unwrap()["spec"]["annotations"]["readOnly"],
        true
    );
    // The valid object passes a dry run, which writes nothing.
    let mut ok = bad.clone();
    ok.data["spec"] = good.data["spec"].clone();
    api.patch(
        "broken",
        &PatchParams::apply("stoa-backup").dry_run(),
        &Patch::Apply(&ok),
    )
    .await
    .unwrap();
    assert!(api.get_opt("broken").await.unwrap().is_none());
}

/// Namespaces carry what the API server adds; writes into a missing namespace and requests
/// for a type no CRD serves are 404s with the server's messages.
#[tokio::test]
async fn namespaces_and_unknown_types() {
    let fake = FakeKube::start().await;
    let ns_api: Api<Namespace> = Api::all(fake.client());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("tenant-a".into());
    ns.metadata.labels = Some([("team".to_string(), "gw".to_string())].into());
    let created = ns_api
        .patch("tenant-a", &PatchParams::apply("t"), &Patch::Apply(&ns))
        .await
        .unwrap();
    let labels = created.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/metadata.name"], "tenant-a");
    assert_eq!(labels["team"], "gw");
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));

    // No CRD yet: the group is not served, its resources are 404 NotFound.
    let tools: Api<DynamicObject> = Api::namespaced_with(fake.client(), "tenant-a", &tools_ar());
    let s = status_of(tools.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "the server could not find the requested resource")
    );
    fake.load_fixture_crds();
    let cm = kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    let missing: Api<DynamicObject> = Api::namespaced_with(fake.client(), "tenant-b", &cm);
    let mut obj = DynamicObject::new("x", &cm).within("tenant-b");
    obj.data = json!({"data": {"a": "b"}});
    let s = status_of(
        missing
            .patch("x", &PatchParams::apply("t").dry_run(), &Patch::Apply(&obj))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "namespaces \"tenant-b\" not found")
    );
}

#[tokio::test]
async fn crds_become_established_after_the_delay() {
    let fake = FakeKube::start_with(FakeKubeOptions {
        established_delay: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let text = std::fs::read_to_string(fixtures_dir().join("crds/tools.gostoa.dev.yaml")).unwrap();
    let crd: CustomResourceDefinition =
        serde_json::from_value(parse_yaml_documents(&text).remove(0)).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(fake.client());
    api.patch(
        "tools.gostoa.dev",
        &PatchParams::apply("t"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let established = |c: &CustomResourceDefinition| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    };
    assert!(!established(&api.get("tools.gostoa.dev").await.unwrap()));
    assert!(!fake.serves("gostoa.dev", "v1alpha1"));
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(established(&api.get("tools.gostoa.dev").await.unwrap()));
    assert!(fake.serves("gostoa.dev", "v1alpha1"));
}

#[tokio::test]
async fn auth_and_faults() {
    let fake = FakeKube::start_with(FakeKubeOptions {
        token: Some("good".into()),
        ..Default::default()
    })
    .await;
    let ok: Api<Namespace> = Api::all(fake.client());
    ok.list(&ListParams::default()).await.unwrap();
    let bad: Api<Namespace> = Api::all(fake.client_with_token("bad"));
    let s = status_of(bad.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"));

    fake.inject(
        FaultRule::forbidden("system:serviceaccount:stoa:backup")
            .path_contains("/secrets")
            .times(1),
    );
    let secrets: Api<Secret> = Api::namespaced(fake.client(), "default");
    let s = status_of(secrets.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "secrets is forbidden: User \"system:serviceaccount:stoa:backup\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    secrets.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        fake.requests().iter().filter(|r| r.status == 403).count(),
        1
    );
}

#[tokio::test]
async fn exec_streams_stdout_stderr_and_status() {
    let fake = FakeKube::start().await;
    fake.add_pod("db", "pg-0", &["postgres"]);
    let pods: Api<Pod> = Api::namespaced(fake.client(), "db");
    for protocols in [
        &["v5.channel.k8s.io", "v4.channel.k8s.io"][..],
        &["v4.channel.k8s.io"][..],
    ] {
        fake.set_exec_protocols(protocols);
        let mut p = pods
            .exec(
                "pg-0",
                ["sh", "-c", "printf out; printf err >&2; exit 3"],
                &AttachParams::default().container("postgres"),
            )
            .await
            .unwrap();
        let mut out = String::new();
        let mut err = String::new();
        let (mut so, mut se) = (p.stdout().unwrap(), p.stderr().unwrap());
        let status = p.take_status().unwrap();
        let (a, b) = tokio::join!(so.read_to_string(&mut out), se.read_to_string(&mut err));
        a.unwrap();
        b.unwrap();
        let status = status.await.unwrap();
        assert_eq!((out.as_str(), err.as_str()), ("out", "err"));
        assert_eq!(status.status.as_deref(), Some("Failure"));
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    }
    let Err(e) = pods
        .exec("pg-0", ["true"], &AttachParams::default().container("nope"))
        .await
    else {
        panic!("exec into a missing container succeeded");
    };
    assert!(
        format!("{e:?}").contains("400") || format!("{e}").contains("400"),
        "{e:?}"
    );
}

#[tokio::test]
async fn metadata_only_lists_and_gets() {
    let fake = FakeKube::start().await;
    fake.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "s1", "namespace": "n", "labels": {"a": "b"}},
        "data": {"k": "dmFsdWU="}}),
    );
    let api: Api<Secret> = Api::namespaced(fake.client(), "n");
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.types.kind, "PartialObjectMetadataList");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("s1"));
    assert!(list.items[0].metadata.resource_version.is_some());
    let one = api.get_metadata("s1").await.unwrap();
    assert_eq!(
        one.types.map(|t| t.kind).as_deref(),
        Some("PartialObjectMetadata")
    );
    assert_eq!(one.metadata.labels.unwrap()["a"], "b");
    // Without the media type: the full objects.
    let full = api.list(&ListParams::default()).await.unwrap();
    assert!(full.items[0].data.is_some());
    let raw = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/namespaces/n/secrets")
        .count();
    assert_eq!(raw, 2);
}
