//! `config example` prints the guide's tables, and `config check` accepts it once the
//! variables it names are set.

use std::collections::BTreeMap;

use stoa_backup::core::codec::age::generate_identity;

use crate::support::{stoa, token, Workspace};

/// The `${NAME}` references of a YAML text, outside comments.
fn variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let text: String = text
        .lines()
        .map(|l| l.split(" #").next().unwrap_or_default())
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = text.as_str();
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let end = after.find('}').expect("closed reference");
        let name = after[..end]
            .split(":-")
            .next()
            .unwrap_or_default()
            .to_string();
        if !names.contains(&name) {
            names.push(name);
        }
        rest = &after[end..];
    }
    names
}

#[tokio::test]
async fn the_example_passes_config_check_when_its_variables_are_set() {
    let ws = Workspace::new();
    let example = stoa(ws.path(), &["config", "example"], &[]).await.expect(0);
    let text = example.stdout.clone();
    // The guide's tables.
    for line in [
        "schedule: \"0 2 * * *\"",
        "within: 30d",
        "within: 90d",
        "on_change: true",
        "forever: true",
        "type: git",
        "type: s3",
    ] {
        assert!(text.contains(line), "the example lacks {line:?}");
    }
    let (_identity, recipient) = generate_identity();
    let mut values = BTreeMap::new();
    for name in variables(&text) {
        let value = match name.as_str() {
            "STOA_BACKUP_AGE_RECIPIENT" => recipient.clone(),
            "DATABASE_URL" => format!(
                "postgres://stoa:{}@db.stoa-system.svc:5432/stoa",
                token("pw")
            ),
            _ => token(&name.to_lowercase()),
        };
        values.insert(name, value);
    }
    assert!(
        values.len() >= 5,
        "the example names its secrets as variables: {values:?}"
    );
    ws.write("stoa-backup.yaml", &text);
    let env: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let check = stoa(ws.path(), &["config", "check", "--json"], &env)
        .await
        .expect(0);
    let doc = check.json();
    assert_eq!(doc["verdict"], "valid");
    let components: Vec<&str> = doc["config"]["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        components,
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
    let by_name = |n: &str| {
        doc["config"]["components"]
            .as_array()
            .expect("components")
            .iter()
            .find(|c| c["name"] == n)
            .expect("component")
            .clone()
    };
    assert_eq!(
        by_name("postgres")["trigger"]["schedule"]["cron"],
        "0 2 * * *"
    );
    assert_eq!(
        by_name("postgres")["trigger"]["schedule"]["time_zone"],
        "UTC"
    );
    assert_eq!(by_name("postgres")["retention"]["within"], "30d");
    assert_eq!(by_name("keycloak")["retention"]["within"], "90d");
    assert_eq!(by_name("crds")["storage"], "platform-git");
    assert_eq!(by_name("helm")["trigger"], "on_change");
    assert_eq!(by_name("helm")["retention"]["forever"], true);
    assert_eq!(by_name("grafana")["trigger"], "on_change");
    assert_eq!(by_name("grafana")["storage"], "platform-git");

    let human = stoa(ws.path(), &["config", "check"], &env).await.expect(0);
    for run in [&check, &human] {
        for (name, value) in &values {
            if name != "STOA_BACKUP_AGE_RECIPIENT"
                && name != "INFISICAL_PROJECT_ID"
                && name != "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"
            {
                assert!(
                    !run.stdout.contains(value.as_str()),
                    "{name} printed:\n{run}"
                );
            }
        }
    }
    // Without the variables, the first one missing is named.
    let unset = stoa(ws.path(), &["config", "check"], &[]).await.expect(2);
    assert!(unset.stderr.contains("is not set"), "{unset}");
}
