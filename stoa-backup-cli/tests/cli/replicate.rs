//! `replicate`: a second target brought up to date (exit 0), a second pass that writes
//! nothing, `list --target` showing the copies, and a damaged run on the source that is
//! refused while the others are there (exit 3).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use crate::support::{small_database, stoa, Workspace};

fn config(ws: &Workspace) -> String {
    format!(
        "storage:\n  primary:\n    type: local\n    path: {}\n    create: true\n  secondary:\n    type: local\n    path: {}\n    create: true\ncomponents:\n  app:\n    type: postgres\n    url: ${{TEST_PG_URL}}\n    storage: primary\n",
        ws.backups().display(),
        ws.path().join("dr").display()
    )
}

fn file_times(dir: &Path) -> BTreeMap<String, SystemTime> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path().display().to_string(),
                    e.metadata().unwrap().modified().unwrap(),
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn replicate_copies_what_the_target_lacks_once_and_refuses_a_damaged_run() {
    let db = small_database("cli_replicate", 50).await;
    let ws = Workspace::new();
    ws.write("stoa-backup.yaml", &config(&ws));
    let env = [("TEST_PG_URL", db.url())];
    for _ in 0..2 {
        stoa(ws.path(), &["backup"], &env).await.expect(0);
    }

    let out = stoa(
        ws.path(),
        &["replicate", "--to", "secondary", "--json"],
        &env,
    )
    .await
    .expect(0);
    let doc = out.json();
    assert_eq!(doc["verdict"], "succeeded", "{out}");
    assert_eq!(doc["from"], "primary");
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{out}");
    assert!(runs.iter().all(|r| r["outcome"] == "copied"), "{out}");

    let list = stoa(
        ws.path(),
        &[
            "list",
            "--target",
            "secondary",
            "--component",
            "app",
            "--json",
        ],
        &env,
    )
    .await
    .expect(0);
    let listed = list.json();
    assert_eq!(listed["storage"][0]["name"], "secondary", "{list}");
    assert_eq!(
        listed["storage"][0]["runs"].as_array().unwrap().len(),
        2,
        "{list}"
    );

    // A second pass: nothing written.
    let times = file_times(&ws.path().join("dr"));
    let again = stoa(
        ws.path(),
        &["replicate", "--to", "secondary", "--json"],
        &env,
    )
    .await
    .expect(0);
    let doc = again.json();
    assert!(
        doc["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "already_present"),
        "{again}"
    );
    assert_eq!(
        file_times(&ws.path().join("dr")),
        times,
        "the second pass wrote"
    );

    // A new run whose dump is damaged on the primary: refused, the others present: exit 3.
    stoa(ws.path(), &["backup"], &env).await.expect(0);
    let newest = ws
        .run_dirs()
        .into_iter()
        .find(|d| {
            !ws.path()
                .join("dr/runs")
                .join(d.file_name().unwrap())
                .exists()
        })
        .unwrap();
    let dump = std::fs::read_dir(newest.join("app"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let partial = stoa(
        ws.path(),
        &["replicate", "--to", "secondary", "--json"],
        &env,
    )
    .await
    .expect(3);
    let doc = partial.json();
    assert_eq!(doc["verdict"], "partially_failed", "{partial}");
    let failed = doc["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{partial}");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("SHA-256") && error.contains("app"),
        "{error}"
    );
    assert!(!ws
        .path()
        .join("dr/runs")
        .join(newest.file_name().unwrap())
        .join("manifest.json")
        .exists());

    // Unknown target: a usage error.
    stoa(ws.path(), &["replicate", "--to", "nowhere"], &env)
        .await
        .expect(2);
    db.drop_db().await;
}
