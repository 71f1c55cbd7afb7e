//! `verify`: re-reads stored runs, records the result beside each run, skips runs verified
//! within `--max-age`, and exits 4 when a stored backup fails its checks.

use crate::support::{local_config, restore_target, small_database, stoa, Workspace};

const COMPONENT: &str = "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n";

fn run_id_of(backup: &crate::support::Run) -> String {
    backup.json()["components"][0]["run_id"]
        .as_str()
        .expect("run id")
        .to_string()
}

#[tokio::test]
async fn a_damaged_artifact_fails_verification_with_exit_4_and_demotes_the_run() {
    let db = small_database("cli_verify_bad", 2000).await;
    let ws = Workspace::new();
    ws.write("stoa-backup.yaml", &local_config(&ws, COMPONENT));
    let env = [("TEST_PG_URL", db.url())];
    let first = run_id_of(&stoa(ws.path(), &["backup", "--json"], &env).await.expect(0));
    let second = run_id_of(&stoa(ws.path(), &["backup", "--json"], &env).await.expect(0));

    // --latest checks the newest run of each component only.
    let latest = stoa(ws.path(), &["verify", "--latest", "--json"], &env)
        .await
        .expect(0);
    let runs = latest.json()["runs"].as_array().expect("runs").clone();
    assert_eq!(runs.len(), 1, "{latest}");
    assert_eq!(runs[0]["run_id"], second.as_str());

    // Flip one byte in the middle of the newest run's dump.
    let dir = ws.backups().join("runs").join(&second).join("app");
    let dump = std::fs::read_dir(&dir)
        .expect("run dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().contains(".dump"))
        .expect("a dump artifact");
    let mut bytes = std::fs::read(&dump).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&dump, &bytes).expect("write");

    let failed = stoa(ws.path(), &["verify", "--json"], &env).await.expect(4);
    let doc = failed.json();
    assert_eq!(doc["verdict"], "verification_failed", "{failed}");
    let by_id = |id: &str| {
        doc["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .find(|r| r["run_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("run {id} not verified: {failed}"))
    };
    assert_eq!(by_id(&second)["status"], "failed");
    assert_eq!(by_id(&first)["status"], "verified");
    let bad = by_id(&second);
    let failing: Vec<&serde_json::Value> = bad["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert!(!failing.is_empty(), "{failed}");
    assert!(
        failing[0]["artifact"]
            .as_str()
            .unwrap_or_default()
            .contains(".dump"),
        "{failed}"
    );
    // The result is recorded beside the run, and the catalog believes it.
    assert!(ws
        .backups()
        .join("runs")
        .join(&second)
        .join("verifications")
        .is_dir());
    let list = stoa(ws.path(), &["list", "--json"], &env).await.expect(0);
    let listed = list.json();
    let runs = listed["storage"][0]["runs"].as_array().expect("runs");
    let listed_second = runs
        .iter()
        .find(|r| r["run_id"] == second.as_str())
        .expect("listed");
    assert_eq!(listed_second["verified"], false, "{list}");

    // A failed run is never skipped by --max-age: it is checked again (and fails again).
    let again = stoa(ws.path(), &["verify", "--max-age", "7d", "--json"], &env)
        .await
        .expect(4);
    let doc = again.json();
    let statuses: Vec<(&str, &str)> = doc["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert!(statuses.contains(&(second.as_str(), "failed")), "{again}");
    assert!(statuses.contains(&(first.as_str(), "skipped")), "{again}");

    // The default restore now picks the older, still verified run.
    let target = restore_target("cli_verify_restore").await;
    let plan = stoa(
        ws.path(),
        &["restore", "app", "--to", target.name(), "--json"],
        &env,
    )
    .await
    .expect(0);
    assert_eq!(plan.json()["run_id"], first.as_str(), "{plan}");
    // Named explicitly, the damaged run is refused.
    let refused = stoa(
        ws.path(),
        &["restore", "app", "--run", &second, "--to", target.name()],
        &env,
    )
    .await
    .expect(1);
    assert!(refused.stderr.contains(&second), "{refused}");
}

#[tokio::test]
async fn a_run_that_is_not_there_is_an_error_and_a_bad_id_a_usage_error() {
    let db = small_database("cli_verify_missing", 10).await;
    let ws = Workspace::new();
    ws.write("stoa-backup.yaml", &local_config(&ws, COMPONENT));
    let env = [("TEST_PG_URL", db.url())];
    stoa(ws.path(), &["backup"], &env).await.expect(0);
    let missing = stoa(ws.path(), &["verify", "20200101T000000Z-000000"], &env)
        .await
        .expect(1);
    assert!(
        missing.stderr.contains("20200101T000000Z-000000"),
        "{missing}"
    );
    stoa(ws.path(), &["verify", "../runs"], &env)
        .await
        .expect(2);
    stoa(ws.path(), &["verify", "--max-age", "soon"], &env)
        .await
        .expect(2);
}
