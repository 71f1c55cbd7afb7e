//! `manifests`: the output is what `deploy/stoa-backup.yaml` holds for the example, holds no
//! secret value, and applies (server-side, dry run) to the fake Kubernetes API server, which
//! refuses what the API server refuses.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use serde_json::{json, Value};
use stoa_backup::core::codec::age::generate_identity;
use stoa_backup_test_support::kube_fake::FakeKube;

use crate::support::{stoa, token, Workspace};

/// The rendered example, kept in the repository.
fn deploy_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/stoa-backup.yaml")
}

/// The example configuration in `ws`, and a value of its own for every variable it names.
async fn example(ws: &Workspace) -> BTreeMap<String, String> {
    let text = stoa(ws.path(), &["config", "example"], &[])
        .await
        .expect(0)
        .stdout;
    ws.write("stoa-backup.yaml", &text);
    let (_, recipient) = generate_identity();
    let mut values = BTreeMap::new();
    for name in [
        "DATABASE_URL",
        "STOA_BACKUP_GIT_TOKEN",
        "KEYCLOAK_CLIENT_SECRET",
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID",
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET",
        "INFISICAL_PROJECT_ID",
        "GRAFANA_TOKEN",
    ] {
        values.insert(name.to_string(), token(&name.to_lowercase()));
    }
    values.insert(
        "DATABASE_URL".into(),
        format!(
            "postgres://stoa:{}@db.stoa-system.svc:5432/stoa",
            token("pw")
        ),
    );
    values.insert("STOA_BACKUP_AGE_RECIPIENT".into(), recipient);
    values
}

fn env(values: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("the output is YAML");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

#[tokio::test]
async fn deploy_holds_the_manifests_of_the_example() {
    let ws = Workspace::new();
    let values = example(&ws).await;
    let run = stoa(ws.path(), &["manifests"], &env(&values))
        .await
        .expect(0);
    for (name, value) in &values {
        assert!(
            !run.stdout.contains(value.as_str()),
            "the value of {name} is in the manifests"
        );
    }
    let kept = std::fs::read_to_string(deploy_file()).unwrap_or_default();
    assert!(
        kept == run.stdout,
        "deploy/stoa-backup.yaml is not what `stoa-backup manifests` prints for the example \
         configuration: regenerate it with `deploy/render.sh` (from the repository root) and \
         commit it.\n--- printed now\n{}",
        run.stdout
    );
}

/// Applies every document with `dryRun=All` (server-side apply, as `kubectl apply
/// --server-side --dry-run=server`), each through the resource discovery finds for its kind.
async fn apply_all(fake: &FakeKube, docs: &[Value], dry_run: bool) -> Vec<Result<(), String>> {
    let client = fake.client();
    let mut params = PatchParams::apply("stoa-backup");
    if dry_run {
        params = params.dry_run();
    }
    let mut out = Vec::new();
    for doc in docs {
        let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("an object");
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("a group/version/kind");
        let (ar, caps) = pinned_kind(&client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("the fake serves no {types:?}: {e}"));
        let name = obj.metadata.name.clone().expect("a name");
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                obj.metadata.namespace.as_deref().expect("a namespace"),
                &ar,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        out.push(
            api.patch(&name, &params, &Patch::Apply(&obj))
                .await
                .map(|answered| {
                    assert_eq!(answered.metadata.name.as_deref(), Some(name.as_str()));
                })
                .map_err(|e| format!("{} {name}: {e}", types.kind)),
        );
    }
    out
}

fn namespace(fake: &FakeKube, name: &str) {
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
}

/// Every kind of `docs`, as (apiVersion, kind).
fn kinds(docs: &[Value]) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = docs
        .iter()
        .map(|d| {
            (
                d["apiVersion"].as_str().unwrap_or_default().to_string(),
                d["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

#[tokio::test]
async fn the_example_applies_with_a_dry_run_and_nothing_is_stored() {
    let ws = Workspace::new();
    let values = example(&ws).await;
    let run = stoa(ws.path(), &["manifests"], &env(&values))
        .await
        .expect(0);
    let docs = documents(&run.stdout);
    let fake = FakeKube::start().await;
    namespace(&fake, "stoa-system");
    for result in apply_all(&fake, &docs, true).await {
        result.unwrap_or_else(|e| panic!("refused: {e}"));
    }
    let kinds = kinds(&docs);
    assert!(kinds.len() >= 5, "{kinds:?}");
    for (api_version, kind) in &kinds {
        assert!(
            fake.objects(api_version, kind).is_empty(),
            "a dry run stored a {kind}"
        );
    }
    let patches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), docs.len());
    for p in &patches {
        assert!(p.has_param("dryRun", "All"), "{}", p.line());
        assert!(p.has_param("fieldManager", "stoa-backup"), "{}", p.line());
        assert_eq!(
            p.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(p.status, 201, "{}", p.line());
    }
    // Applied for real, the same documents are stored: the dry run was one.
    for result in apply_all(&fake, &docs, false).await {
        result.unwrap_or_else(|e| panic!("refused: {e}"));
    }
    let cron_jobs = fake.objects("batch/v1", "CronJob");
    assert_eq!(cron_jobs.len(), 5);
    assert_eq!(cron_jobs[0]["spec"]["concurrencyPolicy"], "Forbid");
}

#[tokio::test]
async fn a_document_the_api_server_would_refuse_is_refused() {
    let ws = Workspace::new();
    let values = example(&ws).await;
    let run = stoa(ws.path(), &["manifests"], &env(&values))
        .await
        .expect(0);
    let mut docs = documents(&run.stdout);
    let cron = docs
        .iter_mut()
        .find(|d| d["kind"] == "CronJob")
        .expect("a CronJob");
    // Sunday as 7 and no restart policy: what a hand-written CronJob gets wrong.
    cron["spec"]["schedule"] = json!("0 3 * * 7");
    let pod = &mut cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    pod.as_object_mut()
        .expect("a pod spec")
        .remove("restartPolicy");
    let fake = FakeKube::start().await;
    namespace(&fake, "stoa-system");
    let results = apply_all(&fake, &docs, true).await;
    let refused: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let [refusal] = refused[..] else {
        panic!("expected one refusal, got {refused:?}")
    };
    assert!(refusal.contains("is invalid"), "{refusal}");
    assert!(refusal.contains("spec.schedule"), "{refusal}");
    assert!(refusal.contains("restartPolicy"), "{refusal}");
}

/// A configuration with a local target, a secret file, a scheduled Helm component in
/// another namespace and a custom-resources one.
fn small_config(ws: &Workspace) -> String {
    std::fs::create_dir_all(ws.path().join("secrets/postgres")).expect("mkdir");
    ws.write("secrets/postgres/password", "pg-password-value\n");
    format!(
        "storage:
  local:
    type: local
    path: ./stoa-backups
    create: true
encryption:
  recipients: [\"{}\"]
components:
  db:
    type: postgres
    host: ${{PGHOST:-postgres.stoa-system.svc}}
    user: stoa
    password_file: secrets/postgres/password
    schedule: \"*/30 * * * *\"
  helm:
    type: helm
    namespace: stoa-apps
    schedule: \"0 4 * * *\"
  crds:
    type: crds
    schedule: \"0 1 * * 7\"
  grafana:
    type: grafana
    url: https://grafana.example.org
    token: ${{GRAFANA_TOKEN}}
",
        generate_identity().1
    )
}

#[tokio::test]
async fn a_small_configuration_applies_with_json_output() {
    let ws = Workspace::new();
    let config = small_config(&ws);
    ws.write("stoa-backup.yaml", &config);
    let grafana = token("grafana");
    let vars = [("GRAFANA_TOKEN", grafana.as_str())];
    let run = stoa(
        ws.path(),
        &[
            "manifests",
            "--json",
            "--namespace",
            "backups",
            "--image",
            "stoa-backup:dev",
        ],
        &vars,
    )
    .await
    .expect(0);
    assert!(!run.stdout.contains(&grafana));
    assert!(!run.stdout.contains("pg-password-value"));
    let doc = run.json();
    assert_eq!(doc["verdict"], "succeeded");
    assert_eq!(doc["namespace"], "backups");
    let docs = doc["documents"].as_array().expect("documents").clone();
    let labels: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        labels,
        [
            "ServiceAccount stoa-backup",
            "ConfigMap stoa-backup-config",
            "PersistentVolumeClaim stoa-backup-local",
            "ClusterRole stoa-backup:backups:crds",
            "ClusterRoleBinding stoa-backup:backups:crds",
            "Role stoa-backup:backups:helm",
            "RoleBinding stoa-backup:backups:helm",
            "CronJob stoa-backup-db",
            "CronJob stoa-backup-helm",
            "CronJob stoa-backup-crds",
        ]
    );
    // Sunday as Kubernetes writes it; the password file from a Secret, under the working
    // directory the relative path is relative to.
    let crds = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "stoa-backup-crds")
        .unwrap();
    assert_eq!(crds["spec"]["schedule"], "0 1 * * 0");
    let db = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "stoa-backup-db")
        .unwrap();
    let pod = &db["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"] == "/var/lib/stoa-backup/secrets/postgres"));
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"] == "/var/lib/stoa-backup/stoa-backups"));
    assert_eq!(
        doc["secrets"]["stoa-backup-db"]["password"]["provides"],
        "file /var/lib/stoa-backup/secrets/postgres/password"
    );
    assert_eq!(
        doc["secrets"]["stoa-backup-grafana"]["GRAFANA_TOKEN"]["optional"],
        false
    );
    assert_eq!(doc["not_deployed"][0]["component"], "grafana");
    assert_eq!(doc["not_deployed"][0]["trigger"], "manual");

    let fake = FakeKube::start().await;
    namespace(&fake, "backups");
    // The Role of the Helm component is in the releases' namespace.
    let results = apply_all(&fake, &docs, true).await;
    let refused: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        refused.len() == 2 && refused.iter().all(|r| r.contains("stoa-apps")),
        "without the namespace stoa-apps only the Role and its binding are refused: {refused:?}"
    );
    namespace(&fake, "stoa-apps");
    for result in apply_all(&fake, &docs, true).await {
        result.unwrap_or_else(|e| panic!("refused: {e}"));
    }
    for (api_version, kind) in kinds(&docs) {
        assert!(
            fake.objects(&api_version, &kind).is_empty(),
            "a dry run stored a {kind}"
        );
    }
}

#[tokio::test]
async fn bad_flags_and_undeployable_settings_exit_2() {
    let ws = Workspace::new();
    let config = small_config(&ws);
    ws.write("stoa-backup.yaml", &config);
    let vars = [("GRAFANA_TOKEN", "x")];
    let bad = stoa(
        ws.path(),
        &["manifests", "--namespace", "Stoa_System"],
        &vars,
    )
    .await
    .expect(2);
    assert!(bad.stderr.contains("--namespace"), "{bad}");
    assert!(bad.stdout.is_empty(), "{bad}");
    // A secret file inside the temporary directory the pod mounts.
    ws.write(
        "stoa-backup.yaml",
        &config.replace(
            "password_file: secrets/postgres/password",
            "passfile: /tmp/pgpass",
        ),
    );
    let refused = stoa(ws.path(), &["manifests", "--json"], &vars)
        .await
        .expect(2);
    let doc = refused.json();
    assert_eq!(doc["verdict"], "invalid");
    assert_eq!(doc["error"]["key"], "components.db.passfile", "{refused}");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("/tmp"),
        "{refused}"
    );
    // A configuration error of the file itself is one too.
    let unset = stoa(ws.path(), &["manifests"], &[]).await.expect(2);
    assert!(unset.stderr.contains("GRAFANA_TOKEN"), "{unset}");
}
