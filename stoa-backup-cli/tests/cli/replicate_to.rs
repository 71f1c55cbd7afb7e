//! `replicate_to:` through the built command: `backup` copies each run to the component's
//! replicas (a directory and the in-process S3 server) and says so per target; a copy that
//! fails makes the result partial (exit 3) and leaves the backup complete on its target;
//! with the primary directory gone, `restore` and `recover` read the replica, say so, and
//! succeed without a change of configuration.

use std::path::{Path, PathBuf};

use serde_json::Value;
use stoa_backup_test_support::s3::{s3s_fs_target, S3Target};

use crate::support::{
    connect, database_state, restore_target, small_database, stoa, token, Workspace,
};

/// An S3 storage target `name` on `s3`'s server, in bucket `bucket`.
fn s3_target(name: &str, s3: &S3Target, bucket: &str) -> String {
    format!(
        "  {name}:\n    type: s3\n    bucket: {bucket}\n    prefix: dr\n    endpoint: {}\n    region: {}\n    allow_http: true\n    credentials:\n      access_key_id: ${{S3_ACCESS}}\n      secret_access_key: ${{S3_SECRET}}\n",
        s3.endpoint, s3.region
    )
}

/// A local storage target `name` at `path`.
fn local_target(name: &str, path: &Path, create: bool) -> String {
    format!(
        "  {name}:\n    type: local\n    path: {}\n    create: {create}\n",
        path.display()
    )
}

const APP: &str =
    "components:\n  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n    storage: primary\n";

/// The files under `dir`, relative, with their bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn replication(doc: &Value) -> Vec<(String, String)> {
    doc["components"][0]["replication"]
        .as_array()
        .unwrap_or_else(|| panic!("no replication in {doc}"))
        .iter()
        .map(|r| {
            (
                r["target"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn backup_copies_each_run_to_every_replicate_to_target() {
    let db = small_database("cli_repl_to", 40).await;
    let s3 = s3s_fs_target().await;
    let ws = Workspace::new();
    let dr = ws.path().join("dr");
    ws.write(
        "stoa-backup.yaml",
        &format!(
            "storage:\n{}{}{}replicate_to: [dr, offsite]\n{APP}",
            local_target("primary", &ws.backups(), true),
            local_target("dr", &dr, true),
            s3_target("offsite", &s3, &s3.bucket),
        ),
    );
    let env = [
        ("TEST_PG_URL", db.url()),
        ("S3_ACCESS", s3.access_key.as_str()),
        ("S3_SECRET", s3.secret_key.as_str()),
    ];
    let check = stoa(ws.path(), &["config", "check"], &env).await.expect(0);
    assert!(
        check.stdout.contains("replicate to: dr, offsite"),
        "{check}"
    );

    let out = stoa(ws.path(), &["backup", "--json"], &env).await.expect(0);
    let doc = out.json();
    assert_eq!(doc["verdict"], "succeeded", "{out}");
    assert_eq!(doc["components"][0]["status"], "complete");
    assert_eq!(
        replication(&doc),
        [
            ("dr".into(), "copied".into()),
            ("offsite".into(), "copied".into())
        ],
        "{out}"
    );
    let run_id = doc["components"][0]["run_id"].as_str().unwrap().to_string();
    let copied = doc["components"][0]["replication"][0]["bytes_copied"]
        .as_u64()
        .unwrap();
    assert!(copied > 0, "{out}");

    // The directory replica holds the run byte for byte, manifest included.
    let run_dir = |root: &Path| root.join("runs").join(&run_id);
    let primary_files = files(&run_dir(&ws.backups()));
    assert!(primary_files
        .iter()
        .any(|(p, _)| p.ends_with("manifest.json")));
    assert_eq!(files(&run_dir(&dr)), primary_files);
    // So does the bucket.
    let bucket = s3.server().unwrap().storage_dir().join(&s3.bucket);
    assert_eq!(files(&bucket.join("dr/runs").join(&run_id)), primary_files);

    // Each replica lists it as a verified backup.
    for target in ["dr", "offsite"] {
        let list = stoa(ws.path(), &["list", "--target", target, "--json"], &env)
            .await
            .expect(0);
        let listed = list.json();
        assert_eq!(
            listed["storage"][0]["runs"][0]["run_id"],
            run_id.as_str(),
            "{list}"
        );
        assert_eq!(listed["storage"][0]["runs"][0]["verified"], true, "{list}");
    }

    // `list --component` shows its target and its replicas.
    let list = stoa(ws.path(), &["list", "--component", "app", "--json"], &env)
        .await
        .expect(0);
    let listed = list.json();
    let names: Vec<&str> = listed["storage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["primary", "dr", "offsite"], "{list}");

    // The text output says where each copy went.
    let text = stoa(ws.path(), &["backup"], &env).await.expect(0);
    assert!(text.stdout.contains("replicated to dr: copied"), "{text}");
    assert!(
        text.stdout.contains("replicated to offsite: copied"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(dr.join("runs")).unwrap().count(), 2);
    db.drop_db().await;
}

#[tokio::test]
async fn a_failed_copy_is_a_partial_result_and_the_backup_stays_complete() {
    let db = small_database("cli_repl_fail", 30).await;
    let s3 = s3s_fs_target().await;
    let ws = Workspace::new();
    // A bucket that does not exist (the copy fails on the server), and a directory replica
    // whose path is a file (the target does not open).
    let not_a_dir = ws.write("not-a-dir", "");
    ws.write(
        "stoa-backup.yaml",
        &format!(
            "storage:\n{}{}{}{APP}    replicate_to: [gone, file]\n",
            local_target("primary", &ws.backups(), true),
            s3_target("gone", &s3, &token("no-such-bucket")),
            local_target("file", &not_a_dir, false),
        ),
    );
    let env = [
        ("TEST_PG_URL", db.url()),
        ("S3_ACCESS", s3.access_key.as_str()),
        ("S3_SECRET", s3.secret_key.as_str()),
    ];
    let out = stoa(ws.path(), &["backup", "--json"], &env).await.expect(3);
    let doc = out.json();
    assert_eq!(doc["verdict"], "partially_failed", "{out}");
    let app = &doc["components"][0];
    // The backup itself is stored, complete and verified.
    assert_eq!(app["status"], "complete", "{out}");
    assert_eq!(
        replication(&doc),
        [
            ("gone".into(), "failed".into()),
            ("file".into(), "failed".into())
        ],
        "{out}"
    );
    for r in app["replication"].as_array().unwrap() {
        assert!(!r["error"].as_str().unwrap().is_empty(), "{out}");
    }
    assert!(
        app["replication"][1]["error"]
            .as_str()
            .unwrap()
            .contains("cannot be opened"),
        "{out}"
    );
    assert_eq!(app["errors"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(ws.manifests().len(), 1);
    let run_id = app["run_id"].as_str().unwrap();
    let list = stoa(ws.path(), &["list", "--target", "primary", "--json"], &env)
        .await
        .expect(0);
    let listed = list.json();
    assert_eq!(listed["storage"][0]["runs"][0]["run_id"], run_id, "{list}");
    assert_eq!(listed["storage"][0]["runs"][0]["verified"], true, "{list}");
    // And it restores.
    stoa(
        ws.path(),
        &["restore", "app", "--to", "cli_repl_unused"],
        &env,
    )
    .await
    .expect(0);

    // Text: the failure is named, the exit status is partial too.
    let text = stoa(ws.path(), &["backup"], &env).await.expect(3);
    assert!(text.stdout.contains("replication to gone FAILED"), "{text}");
    assert!(text.stderr.contains("replication to file"), "{text}");
    db.drop_db().await;
}

#[tokio::test]
async fn with_the_primary_gone_restore_and_recover_read_the_replica_and_say_so() {
    let db = small_database("cli_repl_dr", 25).await;
    let ws = Workspace::new();
    let dr = ws.path().join("dr");
    // `create: false`: a primary that is not there is an unmounted volume, not a new one.
    std::fs::create_dir(ws.backups()).unwrap();
    ws.write(
        "stoa-backup.yaml",
        &format!(
            "storage:\n{}{}{APP}    replicate_to: dr\n",
            local_target("primary", &ws.backups(), false),
            local_target("dr", &dr, true),
        ),
    );
    let env = [("TEST_PG_URL", db.url())];
    let backup = stoa(ws.path(), &["backup", "--json"], &env).await.expect(0);
    let run_id = backup.json()["components"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let source = database_state(db.url()).await;

    // Both reachable: the primary serves.
    let plan = stoa(
        ws.path(),
        &["restore", "app", "--to", "unused", "--json"],
        &env,
    )
    .await
    .expect(0);
    assert_eq!(plan.json()["origin"], "primary", "{plan}");
    assert!(plan.json().get("unreachable").is_none(), "{plan}");
    // `--from` reads the one named.
    let from = stoa(
        ws.path(),
        &["restore", "app", "--from", "dr", "--to", "unused", "--json"],
        &env,
    )
    .await
    .expect(0);
    assert_eq!(from.json()["origin"], "dr", "{from}");

    // The primary's volume is gone.
    std::fs::rename(ws.backups(), ws.path().join("primary-away")).unwrap();
    let target = restore_target("cli_repl_dr_restored").await;
    let restored = stoa(
        ws.path(),
        &["restore", "app", "--to", target.name(), "--apply", "--json"],
        &env,
    )
    .await
    .expect(0);
    let doc = restored.json();
    assert_eq!(doc["verdict"], "succeeded", "{restored}");
    assert_eq!(doc["run_id"], run_id.as_str());
    assert_eq!(doc["origin"], "dr", "{restored}");
    assert_eq!(doc["restored"]["origin"], "dr", "{restored}");
    let unreachable = doc["unreachable"].as_array().expect("unreachable");
    assert_eq!(unreachable.len(), 1, "{restored}");
    assert!(
        unreachable[0].as_str().unwrap().starts_with("primary: "),
        "{restored}"
    );
    assert_eq!(database_state(target.url()).await, source);
    target.drop_db().await;

    // The named run is found there too, and the text says where it comes from.
    let text = stoa(
        ws.path(),
        &["restore", "app", "--run", &run_id, "--to", "unused"],
        &env,
    )
    .await
    .expect(0);
    assert!(
        text.stdout
            .contains(&format!("restore of run {run_id} from dr")),
        "{text}"
    );
    assert!(
        text.stderr.contains("warning: storage target primary: "),
        "{text}"
    );
    // Only the primary: it cannot be read.
    let only = stoa(
        ws.path(),
        &["restore", "app", "--from", "primary", "--to", "unused"],
        &env,
    )
    .await
    .expect(1);
    assert!(only.stderr.contains("storage target primary"), "{only}");

    // A whole recovery, into the configured database: rows lost since the backup come back,
    // the journal is kept in the replica.
    connect(db.url())
        .await
        .batch_execute("DELETE FROM items WHERE id > 10")
        .await
        .unwrap();
    let recovered = stoa(
        ws.path(),
        &[
            "recover",
            "app",
            "--existing",
            "overwrite",
            "--apply",
            "--json",
        ],
        &env,
    )
    .await
    .expect(0);
    let doc = recovered.json();
    assert_eq!(doc["verdict"], "succeeded", "{recovered}");
    let recovery = &doc["recoveries"][0];
    assert_eq!(recovery["storage"], "primary");
    assert_eq!(
        recovery["replicas"],
        serde_json::json!(["dr"]),
        "{recovered}"
    );
    assert!(
        recovery["unreachable"][0]
            .as_str()
            .unwrap()
            .starts_with("primary: "),
        "{recovered}"
    );
    let runs = &recovery["report"]["point"]["runs"];
    assert_eq!(runs[0]["run_id"], run_id.as_str(), "{recovered}");
    assert_eq!(runs[0]["origin"], "dr", "{recovered}");
    let id = recovery["report"]["recovery_id"].as_str().unwrap();
    assert!(dr.join(format!("recoveries/{id}/journal.json")).is_file());
    assert_eq!(database_state(db.url()).await, source);
    drop_copies(&db).await;
    db.drop_db().await;
}

/// Drops the copies a PostgreSQL swap keeps beside `db` (`<name>_old_<run>`).
async fn drop_copies(db: &stoa_backup_test_support::TestDatabase) {
    let client = connect(db.admin_url()).await;
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1 || '%' AND datname <> $1",
            &[&db.name()],
        )
        .await
        .unwrap();
    for r in rows {
        let name: String = r.get(0);
        client
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
}
