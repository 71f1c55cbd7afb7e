//! Reading configurations: every component and target type, and the errors, each with the
//! line and key it names (without a server: nothing here connects).

use std::collections::HashMap;

use super::model::{
    GitCredentialsView, S3CredentialsView, Settings, TargetKind, Trigger, VaultMode,
};
use super::{parse, Config, ConfigError, DEFAULT, EMBEDDED, EXAMPLE};

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

fn env() -> HashMap<&'static str, String> {
    HashMap::from([
        ("RECIPIENT", RECIPIENT.to_string()),
        ("PG_URL", "postgres://app:pw@db:5432/stoa".to_string()),
        ("SECRET", "s3cr3t".to_string()),
    ])
}

fn read(text: &str) -> Result<Config, ConfigError> {
    let vars = env();
    parse("t.yaml", text, &|name| vars.get(name).cloned())
}

fn ok(text: &str) -> Config {
    read(text).unwrap_or_else(|e| panic!("{e}"))
}

/// The error, which must name the line holding `needle`, `key`, and contain `message`.
fn refused(text: &str, needle: &str, key: &str, message: &str) -> ConfigError {
    let line = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in the text")) as u64
        + 1;
    let e = read(text).expect_err("refused");
    assert_eq!((e.line, e.key.as_deref()), (Some(line), Some(key)), "{e}");
    assert!(e.message.contains(message), "{e}");
    e
}

const LOCAL: &str = "storage:\n  local: {type: local, path: /b}\n";
const ENCRYPTED: &str = "encryption:\n  recipients: [\"${RECIPIENT}\"]\n";

#[test]
fn the_embedded_default_is_the_quickstart() {
    let c = parse(EMBEDDED, DEFAULT, &|_| None).unwrap();
    let [target] = &c.storage[..] else { panic!() };
    let TargetKind::Local(l) = &target.kind else {
        panic!()
    };
    assert_eq!((l.path.to_str(), l.create), (Some("./stoa-backups"), true));
    let [pg] = &c.components[..] else { panic!() };
    let Settings::Postgres(p) = &pg.settings else {
        panic!()
    };
    assert_eq!(p.connection, "postgres://postgres@127.0.0.1:5432/postgres");
    assert!(pg.verify && pg.verifier.is_some());
    let rules = pg.retention.rules();
    assert_eq!(rules.daily, Some(stoa_backup::core::KeepCount::Last(30)));
    assert_eq!(rules.within, Some(chrono::Duration::days(30)));
    // DATABASE_URL wins over the default.
    let c = parse(EMBEDDED, DEFAULT, &|n| {
        (n == "DATABASE_URL").then(|| "postgres://u@h:6543/x".into())
    })
    .unwrap();
    let Settings::Postgres(p) = &c.components[0].settings else {
        panic!()
    };
    assert_eq!(p.connection, "postgres://u@h:6543/x");
}

#[test]
fn the_example_holds_every_component_type() {
    let vars: HashMap<&str, String> = HashMap::from([
        ("STOA_BACKUP_AGE_RECIPIENT", RECIPIENT.to_string()),
        ("STOA_BACKUP_GIT_TOKEN", "t".into()),
        ("DATABASE_URL", "postgres://u:p@db/stoa".into()),
        ("KEYCLOAK_CLIENT_SECRET", "k".into()),
        ("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "i".into()),
        ("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", "s".into()),
        ("INFISICAL_PROJECT_ID", "p".into()),
        ("GRAFANA_TOKEN", "g".into()),
    ]);
    let c = parse("example.yaml", EXAMPLE, &|n| vars.get(n).cloned()).unwrap();
    let kinds: Vec<&str> = c.components.iter().map(|c| c.kind().name()).collect();
    assert_eq!(
        kinds,
        [
            "postgres",
            "keycloak",
            "vault",
            "infisical",
            "crds",
            "helm",
            "grafana"
        ]
    );
    let TargetKind::S3(s3) = &c.target("offsite").unwrap().kind else {
        panic!()
    };
    assert!(matches!(s3.credentials, S3CredentialsView::Environment));
    // Every run but Grafana's is copied to the second region.
    assert_eq!(c.replicate_to, ["offsite-dr"]);
    let replicated: Vec<&str> = c
        .components
        .iter()
        .filter(|c| c.replicate_to == ["offsite-dr"])
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        replicated,
        ["postgres", "keycloak", "vault", "infisical", "crds", "helm"]
    );
    assert!(c.component("grafana").unwrap().replicate_to.is_empty());
    let TargetKind::Git(git) = &c.target("platform-git").unwrap().kind else {
        panic!()
    };
    assert!(
        matches!(&git.credentials, GitCredentialsView::HttpsToken { username, .. } if username == "x-access-token")
    );
    let Trigger::Schedule(s) = &c.component("keycloak").unwrap().trigger else {
        panic!()
    };
    assert_eq!(s.expression(), "0 3 * * SUN");
    let Settings::Vault(v) = &c.component("vault").unwrap().settings else {
        panic!()
    };
    assert_eq!((v.mode, v.auth), (VaultMode::Kv, "kubernetes"));
    assert!(matches!(
        c.component("helm").unwrap().trigger,
        Trigger::OnChange
    ));
    assert_eq!(
        c.component("postgres")
            .unwrap()
            .rpo
            .as_ref()
            .unwrap()
            .duration()
            .as_secs(),
        86_400
    );
    // A component without retention keeps every run.
    assert!(c.component("grafana").unwrap().retention.rules().forever);
    let json = serde_json::to_string(&c).unwrap();
    for secret in ["\"t\"", "u:p@", "\"k\"", "\"s\"", "\"g\""] {
        assert!(!json.contains(secret), "{secret} in {json}");
    }
}

#[test]
fn s3_and_git_targets_with_their_credentials() {
    let c = ok("storage:
  s3:
    type: s3
    bucket: backups
    endpoint: http://127.0.0.1:9000
    allow_http: true
    credentials:
      access_key_id: AKIA
      secret_access_key: ${SECRET}
  git:
    type: git
    remote: /srv/repo.git
    workdir: /tmp/clone
    credentials: {ssh_agent: true}
components:
  pg: {type: postgres, url: \"${PG_URL}\", storage: s3}
");
    let TargetKind::S3(s3) = &c.target("s3").unwrap().kind else {
        panic!()
    };
    assert!(
        matches!(&s3.credentials, S3CredentialsView::Static { access_key_id, .. } if access_key_id == "AKIA")
    );
    assert!(!format!("{c:?}").contains("s3cr3t"), "{c:?}");
    let TargetKind::Git(g) = &c.target("git").unwrap().kind else {
        panic!()
    };
    assert_eq!(
        (g.branch.as_str(), g.workdir.to_str()),
        ("main", Some("/tmp/clone"))
    );
    assert!(
        matches!(&g.credentials, GitCredentialsView::SshAgent { username } if username == "git")
    );
}

#[test]
fn target_errors_name_their_keys() {
    refused(
        "storage:\n  l: {type: local}\ncomponents:\n  pg: {type: postgres, host: db}\n",
        "l: {type: local}",
        "storage.l.path",
        "is missing",
    );
    refused("storage:\n  s:\n    type: s3\n    bucket: b\n    credentials:\n      access_key_id: A\ncomponents:\n  pg: {type: postgres, host: db}\n", "access_key_id: A", "storage.s.credentials.secret_access_key", "is missing");
    refused("storage:\n  g:\n    type: git\n    remote: /r\n    credentials:\n      token: ${SECRET}\n      ssh_agent: true\ncomponents:\n  pg: {type: postgres, host: db}\n", "token: ${SECRET}", "storage.g.credentials", "give one of");
    refused("storage:\n  g:\n    type: git\n    remote: https://u:pw@git.example/r.git\ncomponents:\n  pg: {type: postgres, host: db}\n", "remote:", "storage.g.remote", "password written in the file");
    refused("storage:\n  bad name: {type: local, path: /b}\ncomponents:\n  pg: {type: postgres, host: db}\n", "bad name:", "storage.bad name", "not a valid name");
    refused(
        "storage:\n  x: {type: ftp}\ncomponents:\n  pg: {type: postgres, host: db}\n",
        "x: {type: ftp}",
        "storage.x.type",
        "unknown type `ftp`",
    );
}

#[test]
fn trigger_and_retention_errors_name_their_keys() {
    let c = |extra: &str| {
        format!("{LOCAL}components:\n  pg:\n    type: postgres\n    host: db\n{extra}")
    };
    refused(
        &c("    schedule: \"0 2 * * *\"\n    on_change: true\n"),
        "on_change: true",
        "components.pg.on_change",
        "not both",
    );
    refused(
        &c("    time_zone: Europe/Paris\n"),
        "time_zone:",
        "components.pg.time_zone",
        "belongs to a `schedule`",
    );
    refused(
        &c("    retention:\n      hourly: 24\n"),
        "hourly:",
        "components.pg.retention.hourly",
        "not supported",
    );
    refused(
        &c("    retention: {}\n"),
        "retention: {}",
        "components.pg.retention",
        "keeps nothing",
    );
    refused(
        &c("    retention: {weekly: lots}\n"),
        "weekly: lots",
        "components.pg.retention.weekly",
        "not a count",
    );
    refused(
        &c("    retention: {within: 0d}\n"),
        "within: 0d",
        "components.pg.retention.within",
        "positive",
    );
    refused(
        &c("    rpo: soon\n"),
        "rpo: soon",
        "components.pg.rpo",
        "not a duration",
    );
    let ok = ok(&c("    schedule: \"30 1 * * 1-5\"\n    time_zone: Europe/Paris\n    retention: {monthly: unlimited, last: 3}\n"));
    let pg = &ok.components[0];
    assert_eq!(pg.retention.summary(), "last 3, monthly unlimited");
    let Trigger::Schedule(s) = &pg.trigger else {
        panic!()
    };
    assert_eq!(s.time_zone().name(), "Europe/Paris");
}

#[test]
fn storage_names_are_checked() {
    let two = "storage:\n  a: {type: local, path: /a}\n  b: {type: local, path: /b}\n";
    refused(
        &format!("{two}components:\n  pg: {{type: postgres, host: db}}\n"),
        "  pg:",
        "components.pg.storage",
        "several storage targets",
    );
    refused(
        "components:\n  pg: {type: postgres, host: db}\n",
        "  pg:",
        "components.pg.storage",
        "no storage target is defined",
    );
    let one = ok(&format!(
        "{LOCAL}components:\n  pg: {{type: postgres, host: db}}\n"
    ));
    assert_eq!(one.components[0].storage, "local");
}

#[test]
fn secrets_come_from_the_environment_or_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-the-file\n").unwrap();
    let c = ok(&format!(
        "{LOCAL}{ENCRYPTED}components:\n  g:\n    type: grafana\n    url: https://grafana.example\n    token_file: {}\n  k:\n    type: keycloak\n    url: https://kc.example\n    client_id: backup\n    client_secret: ${{SECRET}}\n",
        file.display()
    ));
    let Settings::Grafana(g) = &c.components[0].settings else {
        panic!()
    };
    assert_eq!(g.secret.expose(), "from-the-file");
    let Settings::Keycloak(k) = &c.components[1].settings else {
        panic!()
    };
    assert_eq!(
        (k.secret.expose(), k.grant),
        ("s3cr3t", "client_credentials")
    );
    assert!(!format!("{c:?}").contains("s3cr3t") && !format!("{c:?}").contains("from-the-file"));

    let kc = |auth: &str| {
        format!("{LOCAL}{ENCRYPTED}components:\n  k:\n    type: keycloak\n    url: https://kc.example\n    client_id: backup\n{auth}")
    };
    refused(
        &kc("    client_secret: plain-text\n"),
        "client_secret: plain-text",
        "components.k.client_secret",
        "secret written in the file",
    );
    refused(
        &kc("    client_secret: ${SECRET}\n    client_secret_file: /x\n"),
        "client_secret_file:",
        "components.k.client_secret_file",
        "not both",
    );
    refused(
        &kc("    client_secret_file: /nonexistent/secret\n"),
        "client_secret_file:",
        "components.k.client_secret_file",
        "cannot read /nonexistent/secret",
    );
    refused(&kc(""), "  k:", "components.k", "give `client_secret`");
    refused(
        &kc("    client_secret: ${UNSET_HERE}\n"),
        "client_secret:",
        "components.k.client_secret",
        "${UNSET_HERE} is not set",
    );
}

#[test]
fn provider_settings_are_checked_without_connecting() {
    let v = |body: &str| {
        format!("{LOCAL}{ENCRYPTED}components:\n  v:\n    type: vault\n    address: https://vault.example:8200\n{body}")
    };
    let c = ok(&v("    mode: snapshot\n    token: ${SECRET}\n"));
    let Settings::Vault(s) = &c.components[0].settings else {
        panic!()
    };
    assert_eq!((s.mode, s.auth), (VaultMode::Snapshot, "token"));
    assert!(
        c.components[0].verifier.is_some(),
        "raft snapshots are verified"
    );
    refused(
        &v("    token: ${SECRET}\n    role: backup\n"),
        "  v:",
        "components.v",
        "one way to authenticate",
    );
    refused(
        &v("    mode: snapshot\n    role: backup\n    mounts: [secret]\n"),
        "mounts:",
        "components.v.mounts",
        "belong to `mode: kv`",
    );
    refused(
        &v("    mode: raft\n"),
        "mode: raft",
        "components.v.mode",
        "unknown mode",
    );
    refused(&format!("{LOCAL}{ENCRYPTED}components:\n  v:\n    type: vault\n    address: not a url\n    role: r\n"), "address: not a url", "components.v.address", "");
    // Secret-holding components need encryption.
    refused(
        &format!("{LOCAL}components:\n  h: {{type: helm, namespace: stoa-system}}\n"),
        "  h:",
        "components.h",
        "no `encryption:`",
    );
    let crds = ok(&format!(
        "{LOCAL}components:\n  c: {{type: crds, layout: per_object}}\n"
    ));
    let Settings::Crds(s) = &crds.components[0].settings else {
        panic!()
    };
    assert_eq!(
        (s.groups.as_slice(), s.layout),
        (&["gostoa.dev".to_string()][..], "per_object")
    );
    refused(&format!("{LOCAL}components:\n  pg:\n    type: postgres\n    url: ${{PG_URL}}\n    host: other\n"), "host: other", "components.pg.host", "not both");
    refused(
        &format!("{LOCAL}components:\n  pg:\n    type: postgres\n    host: db\n    bucket: b\n"),
        "bucket: b",
        "components.pg.bucket",
        "unknown field `bucket`",
    );
    refused(&format!("{LOCAL}{ENCRYPTED}components:\n  i:\n    type: infisical\n    client_id: c\n    client_secret: ${{SECRET}}\n"), "  i:", "components.i.project", "is missing");
}

#[test]
fn encryption_is_checked() {
    let pg = "components:\n  pg: {type: postgres, host: db}\n";
    refused(
        &format!("{LOCAL}encryption:\n  recipients: [age1nope]\n{pg}"),
        "recipients: [age1nope]",
        "encryption.recipients",
        "invalid age recipient",
    );
    refused(
        &format!("{LOCAL}encryption:\n  identity: ${{SECRET}}\n{pg}"),
        "  identity:",
        "encryption.recipients",
        "is missing",
    );
    refused(
        &format!("{LOCAL}{ENCRYPTED}  identity: ${{SECRET}}\n{pg}"),
        "  identity:",
        "encryption.identity",
        "invalid age identity",
    );
    use stoa_backup::core::codec::age::{generate_identity, ExposeSecret};
    let (identity, recipient) = generate_identity();
    let vars: HashMap<&str, String> = HashMap::from([
        ("ID", identity.expose_secret().to_string()),
        ("R", recipient),
    ]);
    let c = parse(
        "t.yaml",
        &format!("{LOCAL}encryption:\n  recipients: [\"${{R}}\"]\n  identity: ${{ID}}\n{pg}"),
        &|n| vars.get(n).cloned(),
    )
    .unwrap();
    let json = serde_json::to_string(&c).unwrap();
    assert!(!json.contains("AGE-SECRET-KEY"), "{json}");
}

#[test]
fn files_without_components_and_odd_documents() {
    let e = read("").expect_err("empty");
    assert!(e.message.contains("no components"), "{e}");
    refused(&format!("{LOCAL}components:\n  pg: {{type: postgres, host: db}}\n  pg: {{type: postgres, host: db2}}\n"), "db2", "components.pg", "duplicate");
    let e = read("- a\n- b\n").expect_err("a list");
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn the_readme_sample_is_valid() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("## Command line").expect("the section")..];
    let start = section.find("```yaml\n").expect("a YAML sample") + "```yaml\n".len();
    let sample = &section[start..start + section[start..].find("```").expect("its end")];
    let vars: HashMap<&str, &str> = HashMap::from([
        ("S3_ACCESS_KEY_ID", "AKIA"),
        ("S3_SECRET_ACCESS_KEY", "secret"),
        ("GIT_TOKEN", "token"),
        ("DATABASE_URL", "postgres://stoa@db:5432/stoa"),
    ]);
    let c = parse("README.md", sample, &|n| vars.get(n).map(|v| v.to_string()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.storage.len(), 3);
    assert_eq!(c.components.len(), 2);
}

mod replicas;
