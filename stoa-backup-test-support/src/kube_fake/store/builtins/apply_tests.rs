//! Server-side apply of the built-in kinds through the store: dry runs answer what would
//! be stored and store nothing, invalid objects get 422 `Invalid` with one cause per
//! violation, worded as the API server words it.

use serde_json::{json, Value};

use super::super::{ApiError, Store, WriteOutcome};

fn store() -> Store {
    let mut s = Store::new(None);
    let ns = s.find_type("", "v1", "namespaces").expect("builtin");
    s.put_raw(
        &ns,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stoa-system"}}),
        "test",
        false,
    );
    s
}

/// Applies `body` (dry run or not) as `stoa-backup`.
fn apply(s: &mut Store, body: Value, dry_run: bool) -> Result<(Value, WriteOutcome), ApiError> {
    let av = body["apiVersion"].as_str().unwrap_or_default();
    let kind = body["kind"].as_str().unwrap_or_default();
    let rt = s.find_type_by_kind(av, kind).expect("a served kind");
    let ns = if rt.namespaced { "stoa-system" } else { "" };
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    s.apply(&rt, ns, &name, body, "stoa-backup", false, dry_run)
}

fn cron_job() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "stoa-backup-postgres", "namespace": "stoa-system",
                     "labels": {"app.kubernetes.io/name": "stoa-backup"}},
        "spec": {
            "schedule": "0 2 * * *", "timeZone": "Europe/Paris", "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "jobTemplate": {"spec": {
                "backoffLimit": 2,
                "podFailurePolicy": {"rules": [
                    {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
                ]},
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "stoa-backup",
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "stoa-backup", "image": "stoa-backup:dev",
                        "command": ["stoa-backup", "backup", "postgres"],
                        "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef":
                                 {"name": "stoa-backup-postgres", "key": "DATABASE_URL"}}}],
                        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                                      "limits": {"cpu": "2", "memory": "1Gi"}},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/stoa-backup", "readOnly": true},
                                         {"name": "secrets-0", "mountPath": "/run/secrets/pg", "readOnly": true}]
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "stoa-backup-config"}},
                        {"name": "secrets-0", "projected": {"defaultMode": 288, "sources": [
                            {"secret": {"name": "stoa-backup-postgres", "items": [{"key": "password", "path": "password"}]}}
                        ]}}
                    ]
                }}
            }}
        }
    })
}

fn causes(e: &ApiError) -> Vec<(String, String)> {
    assert_eq!((e.code, e.reason), (422, "Invalid"), "{}", e.message);
    e.details.as_ref().expect("details")["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_dry_run_apply_of_each_kind_answers_the_object_and_stores_nothing() {
    let mut s = store();
    let docs = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "stoa-backup", "namespace": "stoa-system"},
               "automountServiceAccountToken": false}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "stoa-backup-config", "namespace": "stoa-system"},
               "data": {"stoa-backup.yaml": "components: {}\n"}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "stoa-backup-local", "namespace": "stoa-system"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}}),
        cron_job(),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "stoa-backup:stoa-system:crds"},
               "rules": [{"apiGroups": ["gostoa.dev"], "resources": ["*"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "stoa-backup:stoa-system:crds"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "stoa-backup:stoa-system:crds"},
               "subjects": [{"kind": "ServiceAccount", "name": "stoa-backup", "namespace": "stoa-system"}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "stoa-backup:stoa-system:helm", "namespace": "stoa-system"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "stoa-backup:stoa-system:helm", "namespace": "stoa-system"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "stoa-backup:stoa-system:helm"},
               "subjects": [{"kind": "ServiceAccount", "name": "stoa-backup", "namespace": "stoa-system"}]}),
    ];
    for doc in docs {
        let (answered, outcome) = apply(&mut s, doc.clone(), true)
            .unwrap_or_else(|e| panic!("{} refused: {}", doc["kind"], e.message));
        assert_eq!(outcome, WriteOutcome::Created);
        assert_eq!(answered["metadata"]["name"], doc["metadata"]["name"]);
        assert_eq!(answered["kind"], doc["kind"]);
        let rt = s
            .find_type_by_kind(
                doc["apiVersion"].as_str().unwrap(),
                doc["kind"].as_str().unwrap(),
            )
            .unwrap();
        assert!(
            s.list(&rt, None).is_empty(),
            "{} was stored by a dry run",
            doc["kind"]
        );
        // The same apply for real is stored.
        apply(&mut s, doc.clone(), false).expect("applied");
        assert_eq!(s.list(&rt, None).len(), 1);
    }
}

#[test]
fn invalid_cron_jobs_are_refused_with_one_cause_per_violation() {
    let mut s = store();
    let mut bad = cron_job();
    bad["spec"]["schedule"] = json!("0 0 * * 7");
    bad["spec"]["timeZone"] = json!("Mars/Olympus");
    bad["spec"]["concurrencyPolicy"] = json!("Sometimes");
    let pod = &mut bad["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    pod["restartPolicy"] = json!("Always");
    pod["containers"][0]["volumeMounts"][1]["name"] = json!("missing");
    pod["containers"][0]["resources"]["requests"]["cpu"] = json!("4");
    pod["containers"][0]["env"][0]["name"] = json!("1BAD");
    let e = apply(&mut s, bad, true).unwrap_err();
    let pod_at = "spec.jobTemplate.spec.template.spec";
    assert_eq!(
        causes(&e),
        [
            ("spec.concurrencyPolicy".to_string(), "Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"".to_string()),
            (format!("{pod_at}.containers[0].env[0].name"), "Invalid value: \"1BAD\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')".to_string()),
            (format!("{pod_at}.containers[0].resources.requests"), "Invalid value: \"4\": must be less than or equal to cpu limit of 2".to_string()),
            (format!("{pod_at}.containers[0].volumeMounts[1].name"), "Not found: \"missing\"".to_string()),
            (format!("{pod_at}.restartPolicy"), "Required value: valid values: \"OnFailure\", \"Never\"".to_string()),
            (format!("{pod_at}.restartPolicy"), "Invalid value: \"Always\": only \"Never\" is supported when podFailurePolicy is specified".to_string()),
            ("spec.schedule".to_string(), "Invalid value: \"0 0 * * 7\": end of range (7) above maximum (6): 7".to_string()),
            ("spec.timeZone".to_string(), "Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus".to_string()),
        ]
    );
    assert!(
        e.message
            .starts_with("CronJob.batch \"stoa-backup-postgres\" is invalid: ["),
        "{}",
        e.message
    );
    let mut nameless = cron_job();
    nameless["metadata"]["name"] = json!("x".repeat(53));
    let e = apply(&mut s, nameless, true).unwrap_err();
    assert_eq!(
        causes(&e)[0].1,
        format!(
            "Invalid value: \"{}\": must be no more than 52 characters",
            "x".repeat(53)
        )
    );
    let mut empty = cron_job();
    empty["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] = json!([]);
    empty["spec"].as_object_mut().unwrap().remove("schedule");
    let fields: Vec<String> = causes(&apply(&mut s, empty, true).unwrap_err())
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(
        fields,
        [format!("{pod_at}.containers"), "spec.schedule".to_string()]
    );
}

#[test]
fn invalid_rbac_claims_and_config_maps_are_refused() {
    let mut s = store();
    let e = apply(
        &mut s,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "r", "namespace": "stoa-system"},
               "rules": [{"resources": ["secrets"], "verbs": []},
                         {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}),
        true,
    )
    .unwrap_err();
    assert_eq!(
        causes(&e),
        [
            (
                "rules[0].apiGroups".to_string(),
                "Required value: resource rules must supply at least one api group".to_string()
            ),
            (
                "rules[0].verbs".to_string(),
                "Required value: verbs must contain at least one value".to_string()
            ),
            (
                "rules[1].nonResourceURLs".to_string(),
                "Invalid value: \"array\": namespaced rules cannot apply to non-resource URLs"
                    .to_string()
            ),
        ]
    );
    let e = apply(
        &mut s,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "b"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
               "subjects": [{"kind": "ServiceAccount", "name": "stoa-backup"}]}),
        true,
    )
    .unwrap_err();
    assert_eq!(
        causes(&e),
        [
            (
                "roleRef.kind".to_string(),
                "Unsupported value: \"Role\": supported values: \"ClusterRole\"".to_string()
            ),
            (
                "subjects[0].namespace".to_string(),
                "Required value".to_string()
            ),
        ]
    );
    let e = apply(
        &mut s,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "c", "namespace": "stoa-system"},
               "spec": {"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "0"}}}}),
        true,
    )
    .unwrap_err();
    assert_eq!(
        causes(&e).into_iter().map(|c| c.0).collect::<Vec<_>>(),
        ["spec.accessModes[0]", "spec.resources[storage]"]
    );
    let e = apply(
        &mut s,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "Config", "namespace": "stoa-system", "labels": {"a": "-x"}},
               "data": {"a b": "x"}}),
        true,
    )
    .unwrap_err();
    assert_eq!(
        causes(&e).into_iter().map(|c| c.0).collect::<Vec<_>>(),
        ["data[a b]", "metadata.labels[a]", "metadata.name"]
    );
}
