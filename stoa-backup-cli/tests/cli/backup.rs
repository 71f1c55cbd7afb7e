//! `backup` into a local target, then `list`: the run is in the catalog, filters work,
//! retention prunes by the component's rules; the embedded default backs up DATABASE_URL.

use serde_json::Value;

use crate::support::{local_config, small_database, stoa, Workspace};

fn run_ids(listing: &Value) -> Vec<String> {
    listing["storage"]
        .as_array()
        .expect("storage")
        .iter()
        .flat_map(|t| t["runs"].as_array().cloned().unwrap_or_default())
        .map(|r| r["run_id"].as_str().expect("run_id").to_string())
        .collect()
}

#[tokio::test]
async fn backup_with_a_config_file_then_list_shows_the_run() {
    let db = small_database("cli_backup", 50).await;
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n    retention: {daily: 7}\n    labels:\n      env: test\n",
        ),
    );
    let env = [("TEST_PG_URL", db.url())];

    let backup = stoa(ws.path(), &["backup", "--json"], &env).await.expect(0);
    let doc = backup.json();
    assert_eq!(doc["verdict"], "succeeded", "{backup}");
    let result = &doc["components"][0];
    assert_eq!(result["component"], "app");
    assert_eq!(result["status"], "complete");
    let run_id = result["run_id"].as_str().expect("run id").to_string();
    let artifact = &result["artifacts"][0];
    assert_eq!(artifact["verified"], true, "{backup}");
    assert!(
        artifact["verifications"][0]
            .as_str()
            .unwrap_or_default()
            .contains("TOC entries"),
        "the dump is checked by pg_restore: {backup}"
    );
    // The catalog printed at the end holds the run.
    assert_eq!(
        run_ids(&serde_json::json!({ "storage": doc["catalog"] })),
        std::slice::from_ref(&run_id)
    );
    assert_eq!(ws.manifests().len(), 1);

    let list = stoa(ws.path(), &["list", "--json"], &env).await.expect(0);
    let listing = list.json();
    assert_eq!(listing["verdict"], "ok");
    assert_eq!(run_ids(&listing), std::slice::from_ref(&run_id), "{list}");
    let run = &listing["storage"][0]["runs"][0];
    assert_eq!(run["components"], serde_json::json!(["app"]));
    assert_eq!(run["labels"]["env"], "test");
    assert_eq!(run["verified"], true);
    assert_eq!(run["status"], "complete");

    let by_label = stoa(
        ws.path(),
        &["snapshots", "--json", "--label", "env=test"],
        &env,
    )
    .await
    .expect(0);
    assert_eq!(run_ids(&by_label.json()), std::slice::from_ref(&run_id));
    let other_label = stoa(ws.path(), &["list", "--json", "--label", "env=prod"], &env)
        .await
        .expect(0);
    assert!(run_ids(&other_label.json()).is_empty(), "{other_label}");
    let other_component = stoa(
        ws.path(),
        &["list", "--json", "--component", "elsewhere"],
        &env,
    )
    .await
    .expect(0);
    assert!(
        run_ids(&other_component.json()).is_empty(),
        "{other_component}"
    );

    let human = stoa(ws.path(), &["list"], &env).await.expect(0);
    assert!(human.stdout.contains(&run_id), "{human}");
    assert!(human.stdout.contains("complete"), "{human}");
    db.drop_db().await;
}

#[tokio::test]
async fn retention_prunes_by_the_component_rules_after_each_backup() {
    let db = small_database("cli_retention", 10).await;
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n    retention:\n      last: 1\n",
        ),
    );
    let env = [("TEST_PG_URL", db.url())];
    let first = stoa(ws.path(), &["backup", "--json"], &env)
        .await
        .expect(0)
        .json();
    let first_id = first["components"][0]["run_id"]
        .as_str()
        .expect("id")
        .to_string();
    let second = stoa(ws.path(), &["backup", "--json"], &env)
        .await
        .expect(0)
        .json();
    let second_id = second["components"][0]["run_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        second["components"][0]["retention"]["removed"],
        serde_json::json!([first_id]),
        "{second}"
    );
    let listing = stoa(ws.path(), &["list", "--json"], &env)
        .await
        .expect(0)
        .json();
    assert_eq!(run_ids(&listing), [second_id]);
    assert_eq!(ws.manifests().len(), 1);
    db.drop_db().await;
}

#[tokio::test]
async fn the_embedded_default_backs_up_database_url_into_stoa_backups() {
    let db = small_database("cli_default", 20).await;
    let ws = Workspace::new();
    // No stoa-backup.yaml, no --config, no STOA_BACKUP_CONFIG: the embedded default.
    let run = stoa(ws.path(), &["backup"], &[("DATABASE_URL", db.url())])
        .await
        .expect(0);
    assert!(run.stdout.contains("postgres -> local: complete"), "{run}");
    assert!(run.stdout.contains("catalog of local"), "{run}");
    let runs: Vec<_> = std::fs::read_dir(ws.path().join("stoa-backups/runs"))
        .expect("./stoa-backups/runs")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(runs.len(), 1);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(runs[0].join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let artifact = &manifest["artifacts"][0];
    assert_eq!(artifact["component"], "postgres");
    // zstd, as the quickstart.
    assert!(
        artifact["codecs"].to_string().contains("zstd"),
        "{artifact}"
    );
    let run_id = manifest["run_id"].as_str().expect("run id");
    assert!(
        run.stdout.contains(run_id),
        "the catalog ends the output: {run}"
    );

    let check = stoa(
        ws.path(),
        &["config", "check", "--json"],
        &[("DATABASE_URL", db.url())],
    )
    .await
    .expect(0)
    .json();
    assert_eq!(check["config"]["file"], "<embedded default>");
    assert_eq!(check["config"]["components"][0]["retention"]["daily"], 30);
    assert_eq!(
        check["config"]["components"][0]["retention"]["within"],
        "30d"
    );
    db.drop_db().await;
}
