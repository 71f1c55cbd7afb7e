//! Configuration errors exit 2 and name the file, the line and the key, on stderr and in
//! the `--json` document.

use crate::support::{local_config, stoa, Workspace};

/// The 1-based line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the configuration"))
        + 1
}

/// Writes `config` as ./stoa-backup.yaml, runs `config check` and `backup`: both exit 2
/// naming `stoa-backup.yaml:<line of needle>:`, `key` and `message`.
async fn refused(config: &str, needle: &str, key: &str, message: &str) {
    let ws = Workspace::new();
    ws.write("stoa-backup.yaml", config);
    let line = line_of(config, needle);
    for args in [&["config", "check"][..], &["backup"][..]] {
        let run = stoa(ws.path(), args, &[]).await.expect(2);
        let first = run
            .stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(
            first.starts_with(&format!("error: stoa-backup.yaml:{line}:")),
            "{args:?}: line {line} expected:\n{run}"
        );
        assert!(
            first.contains(&format!(" {key}: ")),
            "{args:?}: key {key} expected:\n{run}"
        );
        assert!(
            first.contains(message),
            "{args:?}: {message:?} expected:\n{run}"
        );
        assert!(run.stdout.is_empty(), "{run}");
    }
    let json = stoa(ws.path(), &["config", "check", "--json"], &[])
        .await
        .expect(2);
    let doc = json.json();
    assert_eq!(doc["verdict"], "invalid");
    assert_eq!(doc["error"]["file"], "stoa-backup.yaml");
    assert_eq!(doc["error"]["line"], line);
    assert_eq!(doc["error"]["key"], key);
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(message),
        "{json}"
    );
    assert!(ws.run_dirs().is_empty(), "nothing ran");
}

const APP: &str = "  app:\n    type: postgres\n    url: postgres://127.0.0.1:5432/postgres\n";

#[tokio::test]
async fn an_unknown_key_is_named_with_its_line() {
    let ws = Workspace::new();
    let config = local_config(&ws, &format!("{APP}    schedul: \"0 2 * * *\"\n"));
    refused(
        &config,
        "schedul:",
        "components.app.schedul",
        "unknown field `schedul`",
    )
    .await;
    let config = local_config(&ws, APP)
        .replace("    create: true\n", "    create: true\n    colour: blue\n");
    refused(
        &config,
        "colour:",
        "storage.local.colour",
        "unknown field `colour`",
    )
    .await;
    let config = format!("retention: {{daily: 3}}\n{}", local_config(&ws, APP));
    refused(
        &config,
        "retention:",
        "retention",
        "unknown field `retention`",
    )
    .await;
}

#[tokio::test]
async fn a_bad_schedule_is_named_with_its_line() {
    let ws = Workspace::new();
    let config = local_config(&ws, &format!("{APP}    schedule: \"0 25 * * *\"\n"));
    refused(
        &config,
        "schedule:",
        "components.app.schedule",
        "hour 25 is out of range 0-23",
    )
    .await;
    let config = local_config(&ws, &format!("{APP}    schedule: \"0 2 * *\"\n"));
    refused(
        &config,
        "schedule:",
        "components.app.schedule",
        "has 4 field(s)",
    )
    .await;
    let config = local_config(
        &ws,
        &format!("{APP}    schedule: \"0 2 * * *\"\n    time_zone: Mars/Olympus\n"),
    );
    refused(
        &config,
        "time_zone:",
        "components.app.time_zone",
        "not an IANA time zone",
    )
    .await;
}

#[tokio::test]
async fn a_missing_storage_target_is_named_with_its_line() {
    let ws = Workspace::new();
    let config = local_config(&ws, &format!("{APP}    storage: offsite\n"));
    refused(
        &config,
        "storage: offsite",
        "components.app.storage",
        "no storage target is named `offsite`",
    )
    .await;
}

#[tokio::test]
async fn an_unset_variable_is_named_with_its_line() {
    let ws = Workspace::new();
    let config = local_config(
        &ws,
        "  app:\n    type: postgres\n    url: ${STOA_TEST_SURELY_UNSET_URL}\n",
    );
    refused(
        &config,
        "url:",
        "components.app.url",
        "${STOA_TEST_SURELY_UNSET_URL} is not set",
    )
    .await;
}

#[tokio::test]
async fn bad_values_are_named_with_their_line() {
    let ws = Workspace::new();
    let config = local_config(&ws, &format!("{APP}    retention: {{daily: 0}}\n"));
    refused(
        &config,
        "retention:",
        "components.app.retention.daily",
        "would keep nothing",
    )
    .await;
    let config = local_config(&ws, &format!("{APP}    rpo: 2 days\n"));
    refused(&config, "rpo:", "components.app.rpo", "is not a duration").await;
    let config = local_config(&ws, &format!("{APP}    verify: maybe\n"));
    refused(
        &config,
        "verify:",
        "components.app.verify",
        "invalid boolean",
    )
    .await;
    let config = local_config(&ws, "  app:\n    type: mysql\n");
    refused(
        &config,
        "type: mysql",
        "components.app.type",
        "unknown type `mysql`",
    )
    .await;
    let config = local_config(
        &ws,
        "  app:\n    type: postgres\n    url: postgres://u:written-here@db/x\n",
    );
    refused(
        &config,
        "url:",
        "components.app.url",
        "holds a password written in the file",
    )
    .await;
    let config = local_config(&ws, &format!("{APP}    password: written-here\n"));
    refused(
        &config,
        "password:",
        "components.app.password",
        "is a secret written in the file",
    )
    .await;
}

#[tokio::test]
async fn a_named_file_that_does_not_exist_is_a_configuration_error() {
    let ws = Workspace::new();
    let run = stoa(
        ws.path(),
        &["config", "check"],
        &[("STOA_BACKUP_CONFIG", "/nonexistent/stoa.yaml")],
    )
    .await
    .expect(2);
    assert!(
        run.stderr
            .contains("/nonexistent/stoa.yaml: cannot read the configuration"),
        "{run}"
    );
}
