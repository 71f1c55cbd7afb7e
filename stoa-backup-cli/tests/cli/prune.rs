//! `prune`: the plan by default (nothing deleted), `--apply` deletes exactly the runs the
//! plan forgets, and never a component's newest run.

use std::collections::BTreeSet;

use crate::support::{local_config, small_database, stoa, Workspace};

fn ids(value: &serde_json::Value) -> BTreeSet<String> {
    value
        .as_array()
        .expect("an array of run ids")
        .iter()
        .map(|v| v.as_str().expect("a run id").to_string())
        .collect()
}

fn run_dirs(ws: &Workspace) -> BTreeSet<String> {
    ws.run_dirs()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn prune_plans_by_default_and_deletes_exactly_the_planned_runs_with_apply() {
    let db = small_database("cli_prune", 20).await;
    let ws = Workspace::new();
    // No retention while the runs are made: every run is kept.
    let keep_all = "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n";
    ws.write("stoa-backup.yaml", &local_config(&ws, keep_all));
    let env = [("TEST_PG_URL", db.url())];
    for _ in 0..4 {
        stoa(ws.path(), &["backup"], &env).await.expect(0);
    }
    let before = run_dirs(&ws);
    assert_eq!(before.len(), 4);

    // Nothing to forget under the rules the runs were made with.
    let nothing = stoa(ws.path(), &["prune", "--json"], &env).await.expect(0);
    assert!(
        ids(&nothing.json()["storage"][0]["forget"]).is_empty(),
        "{nothing}"
    );

    // Keep the last 2: the plan forgets the 2 oldest, and deletes nothing.
    ws.write(
        "stoa-backup.yaml",
        &local_config(&ws, &format!("{keep_all}    retention: {{last: 2}}\n")),
    );
    let plan = stoa(ws.path(), &["prune", "--json"], &env).await.expect(0);
    let doc = plan.json();
    assert_eq!(doc["verdict"], "planned", "{plan}");
    assert_eq!(doc["applied"], false);
    let target = &doc["storage"][0];
    let forget = ids(&target["forget"]);
    assert_eq!(forget.len(), 2, "{plan}");
    // The catalog lists newest first, by start time (run ids of one second need not sort).
    let list = stoa(ws.path(), &["list", "--json"], &env).await.expect(0);
    let listed: Vec<String> = list.json()["storage"][0]["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["run_id"].as_str().expect("run id").to_string())
        .collect();
    let oldest: BTreeSet<String> = listed.iter().skip(2).cloned().collect();
    assert_eq!(forget, oldest, "the two oldest runs are forgotten");
    for d in target["decisions"].as_array().expect("decisions") {
        let id = d["run_id"].as_str().unwrap();
        let expected = if forget.contains(id) {
            "forget"
        } else {
            "keep"
        };
        assert_eq!(d["action"], expected, "{plan}");
        if expected == "keep" {
            assert!(!d["reasons"].as_array().unwrap().is_empty(), "{plan}");
        }
    }
    assert!(target["removed"].as_array().unwrap().is_empty());
    assert_eq!(run_dirs(&ws), before, "a plan deletes nothing");

    // The text plan names every run and says how to act on it.
    let text = stoa(ws.path(), &["prune"], &env).await.expect(0);
    for id in &before {
        assert!(text.stdout.contains(id.as_str()), "{text}");
    }
    assert!(text.stdout.contains("--apply"), "{text}");
    assert_eq!(run_dirs(&ws), before);

    let applied = stoa(ws.path(), &["prune", "--apply", "--json"], &env)
        .await
        .expect(0);
    let doc = applied.json();
    assert_eq!(doc["verdict"], "succeeded", "{applied}");
    assert_eq!(ids(&doc["storage"][0]["removed"]), forget, "{applied}");
    let after = run_dirs(&ws);
    assert_eq!(
        after,
        before.difference(&forget).cloned().collect::<BTreeSet<_>>(),
        "exactly the planned runs are gone"
    );

    // Again: nothing left to forget.
    let again = stoa(ws.path(), &["prune", "--apply", "--json"], &env)
        .await
        .expect(0);
    assert!(ids(&again.json()["storage"][0]["removed"]).is_empty());
    assert_eq!(run_dirs(&ws), after);
}

#[tokio::test]
async fn prune_of_an_unreadable_target_fails_and_an_unknown_one_is_a_usage_error() {
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &format!(
            "storage:\n  gone:\n    type: local\n    path: {}/missing\ncomponents:\n  app:\n    type: postgres\n    url: postgres://postgres@127.0.0.1:5432/postgres\n    storage: gone\n",
            ws.path().display()
        ),
    );
    let failed = stoa(ws.path(), &["prune", "--apply"], &[]).await.expect(1);
    assert!(failed.stderr.contains("gone"), "{failed}");
    stoa(ws.path(), &["prune", "--storage", "elsewhere"], &[])
        .await
        .expect(2);
}
