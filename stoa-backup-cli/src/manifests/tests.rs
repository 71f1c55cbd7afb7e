//! Rendering: the example configuration and small ones, every document parsed back into its
//! k8s-openapi type, the Secrets and volumes the references become, and what is refused.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::batch::v1::CronJob;
use serde_json::Value;
use stoa_backup::core::codec::age::generate_identity;

use super::{render, to_yaml, Document, Manifests, Options};
use crate::config::references::{Reference, Referenced};
use crate::config::{parse, Config, ConfigError, EXAMPLE};

const OPTIONS: Options<'static> = Options {
    namespace: "stoa-system",
    image: "registry.example/stoa-backup:test",
};

/// Values no output may hold.
fn secret_value(name: &str) -> String {
    format!("secret-value-of-{name}")
}

fn load(text: &str, vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
    parse("stoa-backup.yaml", text, &|name| vars.get(name).cloned())
}

/// The example with every variable it names set to a value of its own.
fn example() -> (Config, HashMap<String, String>) {
    let (_, recipient) = generate_identity();
    let mut vars = HashMap::new();
    for name in [
        "DATABASE_URL",
        "STOA_BACKUP_GIT_TOKEN",
        "KEYCLOAK_CLIENT_SECRET",
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID",
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET",
        "INFISICAL_PROJECT_ID",
        "GRAFANA_TOKEN",
    ] {
        vars.insert(name.to_string(), secret_value(name));
    }
    vars.insert(
        "DATABASE_URL".into(),
        format!(
            "postgres://stoa:{}@db.stoa-system.svc:5432/stoa",
            secret_value("PASSWORD")
        ),
    );
    vars.insert("STOA_BACKUP_AGE_RECIPIENT".into(), recipient);
    let config = load(EXAMPLE, &vars).unwrap_or_else(|e| panic!("{e}"));
    (config, vars)
}

fn rendered(config: &Config, source: &str) -> Manifests {
    render(config, source, OPTIONS).unwrap_or_else(|e| panic!("{e}"))
}

/// Every document of the YAML text, each parsed into the k8s-openapi type of its kind (and
/// equal to the rendered object).
fn parse_back(text: &str, manifests: &Manifests) -> Vec<Document> {
    let values: Vec<Value> = serde_saphyr::from_multiple(text).expect("the output is YAML");
    let docs: Vec<Value> = values.into_iter().filter(|v| !v.is_null()).collect();
    assert_eq!(docs.len(), manifests.documents.len());
    fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("a {} that is not one: {e}", v["kind"]))
    }
    let typed = |v: &Value| -> Document {
        match v["kind"].as_str().expect("a kind") {
            "ServiceAccount" => Document::ServiceAccount(typed(v)),
            "ConfigMap" => Document::ConfigMap(typed(v)),
            "PersistentVolumeClaim" => Document::PersistentVolumeClaim(Box::new(typed(v))),
            "ClusterRole" => Document::ClusterRole(typed(v)),
            "ClusterRoleBinding" => Document::ClusterRoleBinding(typed(v)),
            "Role" => Document::Role(typed(v)),
            "RoleBinding" => Document::RoleBinding(typed(v)),
            "CronJob" => Document::CronJob(Box::new(typed(v))),
            other => panic!("unexpected kind {other}"),
        }
    };
    let parsed: Vec<Document> = docs.iter().map(typed).collect();
    assert_eq!(
        parsed, manifests.documents,
        "the YAML does not read back as rendered"
    );
    parsed
}

fn cron_jobs(m: &Manifests) -> Vec<&CronJob> {
    m.documents
        .iter()
        .filter_map(|d| match d {
            Document::CronJob(c) => Some(c.as_ref()),
            _ => None,
        })
        .collect()
}

fn cron_job<'a>(m: &'a Manifests, name: &str) -> &'a CronJob {
    cron_jobs(m)
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no CronJob {name}"))
}

fn pod_of(c: &CronJob) -> &k8s_openapi::api::core::v1::PodSpec {
    c.spec
        .job_template
        .spec
        .as_ref()
        .and_then(|j| j.template.spec.as_ref())
        .expect("a pod template")
}

#[test]
fn the_example_renders_a_cron_job_per_scheduled_component() {
    let (config, vars) = example();
    let m = rendered(&config, EXAMPLE);
    let text = to_yaml(&m, "stoa-backup.yaml").expect("YAML");
    let docs = parse_back(&text, &m);
    let kinds: Vec<String> = docs.iter().map(Document::label).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount stoa-system/stoa-backup",
            "ConfigMap stoa-system/stoa-backup-config",
            "ClusterRole stoa-backup:stoa-system:crds",
            "ClusterRoleBinding stoa-backup:stoa-system:crds",
            "CronJob stoa-system/stoa-backup-postgres",
            "CronJob stoa-system/stoa-backup-keycloak",
            "CronJob stoa-system/stoa-backup-vault",
            "CronJob stoa-system/stoa-backup-infisical",
            "CronJob stoa-system/stoa-backup-crds",
        ]
    );
    for (name, schedule) in [
        ("postgres", "0 2 * * *"),
        ("keycloak", "0 3 * * SUN"),
        ("vault", "30 3 * * SUN"),
        ("infisical", "45 3 * * SUN"),
        ("crds", "0 1 * * *"),
    ] {
        let c = cron_job(&m, &format!("stoa-backup-{name}"));
        let spec = &c.spec;
        assert_eq!(spec.schedule, schedule);
        assert_eq!(spec.time_zone.as_deref(), Some("UTC"));
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(spec.starting_deadline_seconds, Some(3600));
        let job = spec.job_template.spec.as_ref().expect("job");
        assert_eq!(job.backoff_limit, Some(2));
        let pod = pod_of(c);
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some("stoa-backup"));
        let psc = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(
            (psc.run_as_non_root, psc.run_as_user, psc.fs_group),
            (Some(true), Some(10001), Some(10001))
        );
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        let [container] = &pod.containers[..] else {
            panic!("one container")
        };
        assert_eq!(container.image.as_deref(), Some(OPTIONS.image));
        assert_eq!(
            container.command.as_deref(),
            Some(
                &[
                    "stoa-backup".to_string(),
                    "backup".into(),
                    name.into(),
                    "--config".into(),
                    "/etc/stoa-backup/stoa-backup.yaml".into()
                ][..]
            )
        );
        let sc = container
            .security_context
            .as_ref()
            .expect("security context");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        let resources = container.resources.as_ref().expect("resources");
        assert!(resources
            .requests
            .as_ref()
            .is_some_and(|r| r.contains_key("memory")));
        assert!(resources
            .limits
            .as_ref()
            .is_some_and(|r| r.contains_key("memory")));
        // Every variable the configuration names comes from a Secret key.
        let env = container.env.as_deref().unwrap_or_default();
        for var in vars.keys() {
            let e = env
                .iter()
                .find(|e| &e.name == var)
                .unwrap_or_else(|| panic!("{name} lacks {var}"));
            let r = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("a secretKeyRef");
            assert_eq!(r.key, *var);
            assert!(e.value.is_none());
        }
        // Only the pods that call the Kubernetes API or log in to Vault with it get the
        // token.
        let token = matches!(name, "crds" | "vault");
        assert_eq!(pod.automount_service_account_token, Some(token), "{name}");
    }
    let secret_of = |var: &str| {
        m.secrets
            .iter()
            .find(|(_, keys)| keys.contains_key(var))
            .map(|(s, _)| s.as_str())
    };
    assert_eq!(secret_of("DATABASE_URL"), Some("stoa-backup-postgres"));
    assert_eq!(
        secret_of("KEYCLOAK_CLIENT_SECRET"),
        Some("stoa-backup-keycloak")
    );
    assert_eq!(
        secret_of("STOA_BACKUP_GIT_TOKEN"),
        Some("stoa-backup-storage-platform-git")
    );
    assert_eq!(
        secret_of("STOA_BACKUP_AGE_RECIPIENT"),
        Some("stoa-backup-encryption")
    );
    // The S3 target reads the AWS environment: optional, so that IRSA works without them.
    let aws = &m.secrets["stoa-backup-storage-offsite"]["AWS_ACCESS_KEY_ID"];
    assert!(aws.optional);
    assert!(!m.secrets["stoa-backup-postgres"]["DATABASE_URL"].optional);

    // The configuration as written, with its references.
    let Document::ConfigMap(cm) = &m.documents[1] else {
        panic!()
    };
    assert_eq!(
        cm.data
            .as_ref()
            .and_then(|d| d.get("stoa-backup.yaml"))
            .map(String::as_str),
        Some(EXAMPLE)
    );
    // The crds component reads gostoa.dev resources and the CRDs, cluster-wide; nothing
    // execs into pods.
    let Document::ClusterRole(role) = &m.documents[2] else {
        panic!()
    };
    let rules = role.rules.as_deref().unwrap_or_default();
    assert_eq!(
        rules[0].api_groups.as_deref(),
        Some(&["gostoa.dev".to_string()][..])
    );
    assert!(rules
        .iter()
        .any(|r| r.resources.as_deref() == Some(&["customresourcedefinitions".to_string()][..])));
    assert!(rules
        .iter()
        .all(|r| r.verbs.iter().all(|v| v == "get" || v == "list")));
    assert!(!text.contains("pods/exec"));
    // on_change components are named, not deployed.
    let skipped: Vec<(&str, &str)> = m
        .not_deployed
        .iter()
        .map(|n| (n.component.as_str(), n.trigger))
        .collect();
    assert_eq!(skipped, [("helm", "on_change"), ("grafana", "on_change")]);
    assert!(text.contains("#   helm (on_change): a CronJob cannot watch"));
    // No value of a variable in the YAML or the JSON.
    let json = serde_json::to_string(&m).expect("JSON");
    for (var, value) in &vars {
        if var == "STOA_BACKUP_AGE_RECIPIENT" {
            continue;
        }
        assert!(!text.contains(value.as_str()), "{var}'s value in the YAML");
        assert!(!json.contains(value.as_str()), "{var}'s value in the JSON");
    }
    assert!(!text.contains(&secret_value("PASSWORD")));
}

#[test]
fn rendering_is_deterministic() {
    let (config, _) = example();
    let a = to_yaml(&rendered(&config, EXAMPLE), "stoa-backup.yaml").unwrap();
    let (config, _) = example();
    let b = to_yaml(&rendered(&config, EXAMPLE), "stoa-backup.yaml").unwrap();
    assert_eq!(a, b);
}

const SMALL: &str = "\
storage:
  nas:
    type: local
    path: ./stoa-backups
    create: true
  git:
    type: git
    remote: ssh://git@git.example.org/stoa/state.git
    workdir: /var/lib/stoa-git
    credentials:
      ssh_key: /run/secrets/git/id_ed25519
encryption:
  recipients: [\"${RECIPIENT}\"]
components:
  main_db:
    type: postgres
    host: ${PGHOST:-postgres.stoa-system.svc}
    user: stoa
    passfile: /run/secrets/postgres/pgpass
    schedule: \"*/15 * * * 7\"
    time_zone: Europe/Paris
    storage: nas
  helm:
    type: helm
    namespace: stoa-apps
    schedule: \"0 4 * * *\"
    storage: git
  crds:
    type: crds
    referenced_secrets: true
    include_crds: false
    storage: git
";

fn small() -> Config {
    let (_, recipient) = generate_identity();
    let vars = HashMap::from([("RECIPIENT".to_string(), recipient)]);
    load(SMALL, &vars).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn local_targets_secret_files_and_namespaced_grants() {
    let config = small();
    let m = rendered(&config, SMALL);
    let text = to_yaml(&m, "stoa-backup.yaml").unwrap();
    let docs = parse_back(&text, &m);
    let labels: Vec<String> = docs.iter().map(Document::label).collect();
    assert_eq!(
        labels,
        [
            "ServiceAccount stoa-system/stoa-backup",
            "ConfigMap stoa-system/stoa-backup-config",
            "PersistentVolumeClaim stoa-system/stoa-backup-nas",
            "Role stoa-apps/stoa-backup:stoa-system:helm",
            "RoleBinding stoa-apps/stoa-backup:stoa-system:helm",
            "CronJob stoa-system/stoa-backup-main-db",
            "CronJob stoa-system/stoa-backup-helm",
        ]
    );
    // Kubernetes reads days of week 0-6: Sunday is 0; the zone is the configuration's.
    let db = cron_job(&m, "stoa-backup-main-db");
    assert_eq!(db.spec.schedule, "*/15 * * * 0");
    assert_eq!(db.spec.time_zone.as_deref(), Some("Europe/Paris"));
    assert_eq!(db.spec.starting_deadline_seconds, Some(450));
    let pod = pod_of(db);
    let container = &pod.containers[0];
    assert_eq!(container.command.as_ref().unwrap()[2], "main_db");
    let mounts: Vec<(String, String)> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|v| (v.name.clone(), v.mount_path.clone()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("config".to_string(), "/etc/stoa-backup".to_string()),
            ("tmp".into(), "/tmp".into()),
            ("cache".into(), "/var/cache/stoa-backup".into()),
            (
                "storage-nas".into(),
                "/var/lib/stoa-backup/stoa-backups".into()
            ),
            ("workdir-git".into(), "/var/lib/stoa-git".into()),
            ("secrets-0".into(), "/run/secrets/git".into()),
            ("secrets-1".into(), "/run/secrets/postgres".into()),
        ]
    );
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let projected = |name: &str| {
        let v = volumes.iter().find(|v| v.name == name).expect("volume");
        let p = v.projected.as_ref().expect("projected");
        assert_eq!(p.default_mode, Some(0o440));
        p.sources
            .iter()
            .flatten()
            .map(|s| {
                let s = s.secret.as_ref().expect("secret source");
                let items: Vec<String> = s.items.iter().flatten().map(|i| i.key.clone()).collect();
                (s.name.clone(), items)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        projected("secrets-0"),
        [(
            "stoa-backup-storage-git".to_string(),
            vec!["id_ed25519".to_string()]
        )]
    );
    assert_eq!(
        projected("secrets-1"),
        [(
            "stoa-backup-main-db".to_string(),
            vec!["pgpass".to_string()]
        )]
    );
    let claim = volumes
        .iter()
        .find(|v| v.name == "storage-nas")
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .expect("the claim");
    assert_eq!(claim.claim_name, "stoa-backup-nas");
    // A variable with a default is optional.
    let env = container.env.as_deref().unwrap_or_default();
    let pghost = env.iter().find(|e| e.name == "PGHOST").expect("PGHOST");
    let r = pghost
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .unwrap();
    assert_eq!(
        (r.name.as_str(), r.optional),
        ("stoa-backup-main-db", Some(true))
    );
    // Helm's grant is a Role in the releases' namespace for the ServiceAccount of ours.
    let Some(Document::Role(role)) = docs.iter().find(|d| d.kind() == "Role") else {
        panic!()
    };
    let rule = &role.rules.as_deref().unwrap()[0];
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["secrets".to_string()][..])
    );
    let Some(Document::RoleBinding(binding)) = docs.iter().find(|d| d.kind() == "RoleBinding")
    else {
        panic!()
    };
    let subject = &binding.subjects.as_deref().unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("stoa-backup", Some("stoa-system"))
    );
    assert_eq!(
        pod_of(cron_job(&m, "stoa-backup-helm")).automount_service_account_token,
        Some(true)
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    // crds has no schedule: no CronJob, no grant (its secrets rule is not rendered).
    assert_eq!(m.not_deployed[0].component, "crds");
    assert!(!text.contains("ClusterRole"));
}

#[test]
fn the_crds_grant_follows_its_settings() {
    let text = SMALL.replace(
        "    include_crds: false\n    storage: git\n",
        "    include_crds: false\n    storage: git\n    schedule: \"0 1 * * *\"\n",
    );
    let (_, recipient) = generate_identity();
    let vars = HashMap::from([("RECIPIENT".to_string(), recipient)]);
    let config = load(&text, &vars).unwrap_or_else(|e| panic!("{e}"));
    let m = rendered(&config, &text);
    let Some(Document::ClusterRole(role)) = m.documents.iter().find(|d| d.kind() == "ClusterRole")
    else {
        panic!("no ClusterRole")
    };
    let resources: Vec<Vec<String>> = role
        .rules
        .iter()
        .flatten()
        .map(|r| r.resources.clone().unwrap_or_default())
        .collect();
    // Referenced Secrets are read; CRDs are not (include_crds: false).
    assert_eq!(
        resources,
        [
            vec!["*".to_string()],
            vec!["namespaces".into()],
            vec!["secrets".into()]
        ]
    );
}

fn refused(config: &Config, key: &str, message: &str) {
    let e = render(config, "x", OPTIONS).expect_err("refused");
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    assert!(e.message.contains(message), "{e}");
}

#[test]
fn what_a_pod_cannot_do_is_refused_naming_the_key() {
    let with = |from: &str, to: &str| {
        let text = SMALL.replace(from, to);
        assert_ne!(text, SMALL, "{from:?} is not in the configuration");
        let (_, recipient) = generate_identity();
        let vars = HashMap::from([("RECIPIENT".to_string(), recipient)]);
        load(&text, &vars).unwrap_or_else(|e| panic!("{e}"))
    };
    refused(
        &with(
            "      ssh_key: /run/secrets/git/id_ed25519",
            "      ssh_agent: true",
        ),
        "storage.git.credentials.ssh_agent",
        "no SSH agent",
    );
    refused(
        &with(
            "ssh://git@git.example.org/stoa/state.git",
            "/srv/git/state.git",
        ),
        "storage.git.remote",
        "path on this machine",
    );
    refused(
        &with("${PGHOST:-postgres.stoa-system.svc}", "/var/run/postgresql"),
        "components.main_db.host",
        "Unix socket",
    );
    refused(
        &with("/run/secrets/postgres/pgpass", "/tmp/pgpass"),
        "components.main_db.passfile",
        "is inside /tmp",
    );
    refused(
        &with("/run/secrets/postgres/pgpass", "/etc/pgpass"),
        "components.main_db.passfile",
        "over a directory of the image",
    );
    refused(
        &with("path: ./stoa-backups", "path: /run/secrets"),
        "storage.git.credentials.ssh_key",
        "is inside /run/secrets",
    );
    refused(
        &with("  main_db:", "  _db:"),
        "components._db",
        "cannot name",
    );
    refused(
        &with("  main_db:", &format!("  {}:", "d".repeat(41))),
        &format!("components.{}", "d".repeat(41)),
        "longer than Kubernetes allows",
    );
    refused(
        &with("  helm:", "  main-db:"),
        "components.main-db",
        "would both be CronJob",
    );
    refused(
        &with("*/15 * * * 7", "0 0 L * *"),
        "components.main_db.schedule",
        "do not support",
    );
}

#[test]
fn files_of_one_secret_need_names_of_their_own() {
    let mut config = small();
    for (key, path) in [
        ("components.main_db.password_file", "/run/secrets/a/token"),
        ("components.main_db.passfile", "/run/secrets/b/token"),
    ] {
        config.references.push(Reference {
            key: key.into(),
            what: Referenced::File(PathBuf::from(path)),
        });
    }
    refused(
        &config,
        "components.main_db.passfile",
        "already gives the file /run/secrets/a/token",
    );
    // The same file read by two keys is one Secret key.
    let mut config = small();
    for key in [
        "components.main_db.password_file",
        "components.main_db.passfile",
    ] {
        config.references.push(Reference {
            key: key.into(),
            what: Referenced::File(PathBuf::from("/run/secrets/pg/password")),
        });
    }
    let m = rendered(&config, SMALL);
    assert_eq!(
        m.secrets["stoa-backup-main-db"]["password"].used_by,
        [
            "components.main_db.password_file",
            "components.main_db.passfile"
        ]
    );
}

#[test]
fn yaml_quotes_what_would_read_otherwise() {
    let text = SMALL.replace("*/15 * * * 7", "* * * * *");
    let (_, recipient) = generate_identity();
    let vars = HashMap::from([("RECIPIENT".to_string(), recipient)]);
    let config = load(&text, &vars).unwrap();
    let m = rendered(&config, &text);
    let yaml = to_yaml(&m, "stoa-backup.yaml").unwrap();
    let docs = parse_back(&yaml, &m);
    let Some(Document::CronJob(c)) = docs.iter().find(|d| d.kind() == "CronJob") else {
        panic!()
    };
    assert_eq!(c.spec.schedule, "* * * * *");
}
