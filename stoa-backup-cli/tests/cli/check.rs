//! `check`: storage targets listed, sources preflighted, each component's RPO status from
//! the catalog (never before a backup, ok after it, late once older than its RPO), nothing
//! written, and an unreachable target or server failing by name.

use std::time::Duration;

use serde_json::Value;

use crate::support::{local_config, small_database, stoa, Workspace};

/// The component entry named `name` of a `check --json` document.
fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["component"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {doc}"))
}

#[tokio::test]
async fn never_before_a_backup_then_ok_after_it() {
    let db = small_database("cli_check", 5).await;
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n    rpo: 1d\n",
        ),
    );
    let env = [("TEST_PG_URL", db.url())];

    let fresh = stoa(ws.path(), &["check", "--json"], &env).await.expect(1);
    let doc = fresh.json();
    assert_eq!(doc["verdict"], "failed", "{fresh}");
    assert_eq!(doc["storage"][0]["name"], "local");
    assert_eq!(doc["storage"][0]["status"], "ok", "{fresh}");
    assert_eq!(doc["storage"][0]["complete_runs"], 0);
    let app = component(&doc, "app");
    assert_eq!(app["preflight"]["status"], "ok", "{fresh}");
    assert!(
        app["preflight"]["server_version"].is_string(),
        "the preflight reached the server: {fresh}"
    );
    assert_eq!(app["rpo"]["state"], "never");
    assert_eq!(app["rpo"]["rpo_secs"], 86_400);
    assert_eq!(app["status"], "failed");
    assert!(
        !ws.backups().exists(),
        "check writes nothing, not even the target's directory"
    );
    let human = stoa(ws.path(), &["check"], &env).await.expect(1);
    assert!(human.stdout.contains("NEVER"), "{human}");
    assert!(
        human.stdout.contains("stoa-backup backup app"),
        "it says what to do: {human}"
    );

    let backup = stoa(ws.path(), &["backup", "--json"], &env)
        .await
        .expect(0)
        .json();
    let run_id = backup["components"][0]["run_id"].clone();
    let after = stoa(ws.path(), &["check", "--json"], &env).await.expect(0);
    let doc = after.json();
    assert_eq!(doc["verdict"], "succeeded", "{after}");
    assert_eq!(doc["storage"][0]["complete_runs"], 1);
    let app = component(&doc, "app");
    assert_eq!(app["status"], "ok", "{after}");
    assert_eq!(app["rpo"]["state"], "ok");
    assert_eq!(app["rpo"]["run_id"], run_id);
    assert!(app["rpo"]["verified_at"].is_string(), "{after}");
    assert!(app["rpo"]["age_secs"].as_u64().expect("age") < 600);
    let human = stoa(ws.path(), &["check", "app"], &env).await.expect(0);
    assert!(
        human.stdout.contains(run_id.as_str().expect("run id")),
        "{human}"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_backup_older_than_its_rpo_is_late_and_a_mixed_result_exits_3() {
    let db = small_database("cli_check_late", 3).await;
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            "  daily:\n    type: postgres\n    url: ${TEST_PG_URL}\n    rpo: 1d\n  \
             tight:\n    type: postgres\n    url: ${TEST_PG_URL}\n    rpo: 1s\n  \
             unjudged:\n    type: postgres\n    url: ${TEST_PG_URL}\n",
        ),
    );
    let env = [("TEST_PG_URL", db.url())];
    stoa(ws.path(), &["backup"], &env).await.expect(0);
    // Runs are timed to the second: two seconds make the newest one older than 1s.
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let run = stoa(ws.path(), &["check", "--json"], &env).await.expect(3);
    let doc = run.json();
    assert_eq!(doc["verdict"], "partially_failed", "{run}");
    assert_eq!(component(&doc, "daily")["rpo"]["state"], "ok");
    assert_eq!(component(&doc, "tight")["rpo"]["state"], "late", "{run}");
    assert_eq!(component(&doc, "tight")["status"], "failed");
    assert_eq!(component(&doc, "unjudged")["rpo"]["state"], "no_rpo");
    assert_eq!(component(&doc, "unjudged")["status"], "ok");

    // Only the late one: nothing of what was asked is ok.
    let only = stoa(ws.path(), &["check", "tight"], &env).await.expect(1);
    assert!(only.stdout.contains("LATE"), "{only}");
    assert!(only.stdout.contains("older than the RPO of 1s"), "{only}");
    db.drop_db().await;
}

#[tokio::test]
async fn an_unreachable_target_or_server_fails_naming_it() {
    let db = small_database("cli_check_down", 1).await;
    let ws = Workspace::new();
    let missing = ws.path().join("not-mounted");
    ws.write(
        "stoa-backup.yaml",
        &format!(
            "storage:\n  \
               vanished:\n    type: local\n    path: {}\n    create: false\n  \
               here:\n    type: local\n    path: {}\n    create: true\n\
             components:\n  \
               app:\n    type: postgres\n    url: ${{TEST_PG_URL}}\n    storage: here\n  \
               closed:\n    type: postgres\n    url: postgres://postgres@127.0.0.1:1/postgres\n    storage: here\n",
            missing.display(),
            ws.backups().display()
        ),
    );
    let env = [("TEST_PG_URL", db.url())];
    stoa(ws.path(), &["backup", "app"], &env).await.expect(0);

    // Every target: the one that cannot be listed fails the check whatever the components.
    let run = stoa(ws.path(), &["check", "--json"], &env).await.expect(1);
    let doc = run.json();
    assert_eq!(doc["verdict"], "failed");
    let vanished = &doc["storage"][0];
    assert_eq!(vanished["name"], "vanished");
    assert_eq!(vanished["status"], "unreachable", "{run}");
    let error = vanished["error"].as_str().expect("error");
    assert!(error.contains("vanished"), "{error}");
    assert!(error.contains("not-mounted"), "{error}");
    assert!(
        !missing.exists(),
        "a target not created on demand stays absent"
    );
    assert_eq!(doc["storage"][1]["status"], "ok");
    let closed = component(&doc, "closed");
    assert_eq!(closed["preflight"]["status"], "failed", "{run}");
    let error = closed["preflight"]["error"].as_str().expect("error");
    assert!(
        error.contains("closed"),
        "the error names the component: {error}"
    );
    assert!(error.contains("127.0.0.1"), "and the server: {error}");
    assert_eq!(component(&doc, "app")["status"], "ok", "{run}");

    // Naming components checks only their targets: a reachable component beside one whose
    // server is down is a partial result.
    let named = stoa(ws.path(), &["check", "--json", "app", "closed"], &env)
        .await
        .expect(3);
    let doc = named.json();
    assert_eq!(doc["storage"].as_array().expect("storage").len(), 1);
    assert_eq!(doc["storage"][0]["name"], "here");

    let human = stoa(ws.path(), &["check", "closed"], &env).await.expect(1);
    assert!(human.stdout.contains("FAILED"), "{human}");
    assert!(human.stdout.contains("error: closed: "), "{human}");
    db.drop_db().await;
}
