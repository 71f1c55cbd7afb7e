//! `recover` and `drill` against the real PostgreSQL: the plan writes nothing; applying into
//! the configured database conflicts with it unless `--existing overwrite` swaps the backup
//! in; a failed recovery names its id and resumes; targets whose STOA order interleaves are
//! refused; a drill restores into a scratch database, checks it and leaves none behind.

use serde_json::Value;
use stoa_backup_test_support::TestDatabase;

use crate::support::{connect, local_config, small_database, stoa, Workspace};

/// An age recipient (the configuration needs one for components holding secrets).
const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// The databases on the server, sorted.
async fn databases(admin_url: &str) -> Vec<String> {
    let client = connect(admin_url).await;
    let rows = client
        .query("SELECT datname FROM pg_database ORDER BY datname", &[])
        .await
        .expect("list databases");
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// The ids of `items`, in order.
async fn item_ids(url: &str) -> Vec<i32> {
    let client = connect(url).await;
    let rows = client
        .query("SELECT id FROM items ORDER BY id", &[])
        .await
        .expect("read items");
    rows.iter().map(|r| r.get::<_, i32>(0)).collect()
}

/// Drops the databases whose name starts with `db`'s (the copies a swap keeps), then `db`.
async fn drop_with_copies(db: TestDatabase) {
    let client = connect(db.admin_url()).await;
    for name in databases(db.admin_url()).await {
        if name != db.name() && name.starts_with(db.name()) {
            client
                .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                .await
                .expect("drop a kept copy");
        }
    }
    db.drop_db().await;
}

fn app_config(ws: &Workspace) -> String {
    local_config(ws, "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n")
}

#[tokio::test]
async fn the_plan_writes_nothing() {
    let db = small_database("cli_recover_plan", 20).await;
    let ws = Workspace::new();
    ws.write("stoa-backup.yaml", &app_config(&ws));
    let env = [("TEST_PG_URL", db.url())];
    stoa(ws.path(), &["backup"], &env).await.expect(0);
    // Other tests create databases meanwhile: only those a restore of this one would make
    // (a staging copy, a kept copy) are compared.
    let own = |all: Vec<String>| -> Vec<String> {
        all.into_iter()
            .filter(|d| d.starts_with(db.name()))
            .collect()
    };
    let before = own(databases(db.admin_url()).await);
    assert_eq!(before, [db.name()]);

    // The configured database exists: restoring into it is refused when planned, before
    // anything is written, with what to do about it.
    let refused = stoa(ws.path(), &["recover", "app", "--json"], &env)
        .await
        .expect(1);
    let doc = refused.json();
    assert_eq!(doc["verdict"], "failed", "{refused}");
    let error = &doc["recoveries"][0]["error"];
    assert_eq!(error["step"], "app", "{refused}");
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("already exists"),
        "{refused}"
    );
    assert!(
        error["hint"]
            .as_str()
            .expect("hint")
            .contains("--existing overwrite"),
        "{refused}"
    );
    assert!(error["recovery_id"].is_null(), "no recovery was started");

    let run = stoa(
        ws.path(),
        &["recover", "app", "--existing", "overwrite", "--json"],
        &env,
    )
    .await
    .expect(0);
    let doc = run.json();
    assert_eq!(doc["verdict"], "planned", "{run}");
    assert_eq!(doc["applied"], false);
    let recovery = &doc["recoveries"][0];
    assert_eq!(recovery["storage"], "local");
    assert_eq!(recovery["status"], "planned");
    let steps: Vec<&str> = recovery["plan"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(steps, ["app", "checks"], "{run}");
    assert_eq!(
        recovery["plan"]["steps"][1]["checks"][0],
        format!("app: row counts of {}", db.name())
    );

    let human = stoa(ws.path(), &["recover", "--existing", "overwrite"], &env)
        .await
        .expect(0);
    assert!(human.stdout.contains("nothing was written"), "{human}");
    assert!(human.stdout.contains("checks"), "{human}");

    assert_eq!(
        own(databases(db.admin_url()).await),
        before,
        "no database created"
    );
    assert!(
        !ws.backups().join("recoveries").exists(),
        "no journal written"
    );
    assert_eq!(item_ids(db.url()).await, (1..=20).collect::<Vec<_>>());
    db.drop_db().await;
}

#[tokio::test]
async fn a_failed_step_names_the_recovery_that_resumes_and_overwrite_swaps_the_backup_in() {
    let db = small_database("cli_recover", 30).await;
    let ws = Workspace::new();
    // Two components restoring into one database: both plan (it is not there), the second
    // finds it created by the first when it runs.
    ws.write(
        "stoa-backup.yaml",
        &local_config(
            &ws,
            "  first:\n    type: postgres\n    url: ${TEST_PG_URL}\n  \
             second:\n    type: postgres\n    url: ${TEST_PG_URL}\n",
        ),
    );
    let env = [("TEST_PG_URL", db.url())];
    stoa(ws.path(), &["backup"], &env).await.expect(0);
    let backed_up: Vec<i32> = (1..=30).collect();
    let admin = connect(db.admin_url()).await;
    let drop_it = format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name());
    admin
        .batch_execute(&drop_it)
        .await
        .expect("drop the database");

    let run = stoa(ws.path(), &["recover", "--apply", "--json"], &env)
        .await
        .expect(1);
    let doc = run.json();
    assert_eq!(doc["verdict"], "failed", "{run}");
    let recovery = &doc["recoveries"][0];
    assert_eq!(recovery["status"], "failed");
    let error = &recovery["error"];
    assert_eq!(error["step"], "second", "{run}");
    assert_eq!(error["steps_done"], serde_json::json!(["first"]), "{run}");
    let id = error["recovery_id"]
        .as_str()
        .expect("recovery id")
        .to_string();
    assert_eq!(
        error["resume"],
        format!("stoa-backup recover first second --resume {id}")
    );
    assert!(
        ws.backups()
            .join(format!("recoveries/{id}/journal.json"))
            .is_file(),
        "the journal is kept"
    );
    assert_eq!(
        item_ids(db.url()).await,
        backed_up,
        "the first step restored"
    );

    // The journal records the policy it started with: resuming with another is refused.
    let other = stoa(
        ws.path(),
        &["recover", "--resume", "--existing", "overwrite"],
        &env,
    )
    .await
    .expect(2);
    assert!(
        other.stderr.contains("--existing fail (not overwrite)"),
        "{other}"
    );
    // A recovery of other components has other steps.
    let fewer = stoa(ws.path(), &["recover", "first", "--resume", &id], &env)
        .await
        .expect(2);
    assert!(fewer.stderr.contains("first → second → checks"), "{fewer}");

    // The cause removed, the newest unfinished recovery resumes at its failed step.
    admin
        .batch_execute(&drop_it)
        .await
        .expect("drop the database");
    let resumed = stoa(ws.path(), &["recover", "--resume", "--json"], &env)
        .await
        .expect(0);
    let doc = resumed.json();
    assert_eq!(doc["verdict"], "succeeded", "{resumed}");
    let report = &doc["recoveries"][0]["report"];
    assert_eq!(report["recovery_id"], id.as_str(), "the same recovery");
    assert_eq!(report["verdict"], "passed");
    assert_eq!(report["steps"][0]["done_earlier"], true, "{resumed}");
    assert_eq!(report["steps"][1]["done_earlier"], false);
    let checks = report["checks"]["results"].as_array().expect("checks");
    assert_eq!(checks.len(), 2, "{resumed}");
    assert!(checks.iter().all(|c| c["status"] == "passed"), "{resumed}");
    assert_eq!(item_ids(db.url()).await, backed_up);
    let again = stoa(ws.path(), &["recover", "--resume", &id], &env)
        .await
        .expect(2);
    assert!(again.stderr.contains("is complete"), "{again}");
    let none = stoa(ws.path(), &["recover", "--resume"], &env)
        .await
        .expect(2);
    assert!(none.stderr.contains("nothing to resume"), "{none}");

    // Changed since the backup: --existing overwrite swaps the restored copy in.
    connect(db.url())
        .await
        .batch_execute("DELETE FROM items WHERE id > 20; INSERT INTO items VALUES (99, 'new');")
        .await
        .expect("change the data");
    let run = stoa(
        ws.path(),
        &["recover", "first", "--apply", "--existing", "overwrite"],
        &env,
    )
    .await
    .expect(0);
    assert!(run.stdout.contains("verdict: passed"), "{run}");
    assert!(run.stdout.contains("row counts of"), "{run}");
    assert_eq!(item_ids(db.url()).await, backed_up, "the backup's rows");
    drop_with_copies(db).await;
}

#[tokio::test]
async fn targets_that_interleave_in_stoa_order_are_refused() {
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &format!(
            "encryption:\n  recipients: [{RECIPIENT}]\n\
             storage:\n  \
               a:\n    type: local\n    path: {0}/a\n    create: true\n  \
               b:\n    type: local\n    path: {0}/b\n    create: true\n\
             components:\n  \
               db:\n    type: postgres\n    url: postgres://postgres@127.0.0.1:1/stoa\n    storage: a\n  \
               values:\n    type: helm\n    namespace: stoa-system\n    on_change: true\n    storage: b\n  \
               dashboards:\n    type: grafana\n    url: http://127.0.0.1:1\n    token: ${{GRAFANA_TOKEN}}\n    on_change: true\n    storage: a\n",
            ws.path().display()
        ),
    );
    let run = stoa(ws.path(), &["recover"], &[("GRAFANA_TOKEN", "t0ken")])
        .await
        .expect(2);
    assert!(
        run.stderr
            .contains("db (postgres, in a) → values (helm, in b) → dashboards (grafana, in a)"),
        "{run}"
    );
    assert!(
        run.stderr.contains(
            "`stoa-backup recover db`, then `stoa-backup recover values`, then `stoa-backup recover dashboards`"
        ),
        "{run}"
    );
}

/// The scratch databases of drills on the server.
fn scratch(databases: &[String]) -> Vec<String> {
    databases
        .iter()
        .filter(|d| d.starts_with("stoa_drill_"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_drill_restores_into_a_scratch_database_checks_it_and_drops_it() {
    let db = small_database("cli_drill", 25).await;
    let ws = Workspace::new();
    ws.write("stoa-backup.yaml", &app_config(&ws));
    let env = [("TEST_PG_URL", db.url())];
    stoa(ws.path(), &["backup"], &env).await.expect(0);
    // Only drills make `stoa_drill_` databases.
    let before = scratch(&databases(db.admin_url()).await);

    let run = stoa(ws.path(), &["drill", "app", "--json"], &env)
        .await
        .expect(0);
    let doc: Value = run.json();
    assert_eq!(doc["verdict"], "succeeded", "{run}");
    let drill = &doc["drills"][0];
    assert_eq!(drill["status"], "passed", "{run}");
    let scratch_db = drill["scratch"][0]["name"].as_str().expect("scratch name");
    assert!(scratch_db.starts_with("stoa_drill_"), "{scratch_db}");
    let report = &drill["report"];
    assert_eq!(report["verdict"], "passed");
    let check = &report["recovery"]["checks"]["results"][0];
    assert_eq!(check["status"], "passed", "{run}");
    let detail = check["detail"].as_str().expect("detail");
    assert!(detail.contains("items: 25"), "{detail}");
    assert!(
        detail.contains(scratch_db),
        "counted in the scratch database: {detail}"
    );
    assert_eq!(report["cleaned_up"][0]["ok"], true, "{run}");
    assert!(
        report["time_to_restore_ms"].as_u64().is_some(),
        "the time to restore is reported: {run}"
    );

    let after = databases(db.admin_url()).await;
    assert!(
        !after.iter().any(|d| d == scratch_db),
        "{scratch_db} is dropped"
    );
    assert_eq!(scratch(&after), before, "no scratch database left");
    assert_eq!(item_ids(db.url()).await, (1..=25).collect::<Vec<_>>());

    let human = stoa(ws.path(), &["drill"], &env).await.expect(0);
    assert!(human.stdout.contains("drill verdict: passed"), "{human}");
    assert!(human.stdout.contains("dropped database"), "{human}");
    assert_eq!(scratch(&databases(db.admin_url()).await), before);
    db.drop_db().await;
}
