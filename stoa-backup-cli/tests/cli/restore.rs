//! The operator's round trip through the built command: `backup` → `list --json` →
//! `verify` → `restore postgres --to <new database>` (a plan, then `--apply`), into a local
//! directory, into S3 (the in-process s3s-fs server) and with age encryption. The restored
//! database must equal the source: schema, every row, every sequence.

use std::path::Path;

use stoa_backup::core::codec::age::{generate_identity, ExposeSecret as _};
use stoa_backup_test_support::s3::s3s_fs_target;

use crate::support::{
    database_exists, database_state, local_config, restore_target, rich_database, stoa, Workspace,
};

const COMPONENT: &str = "  app:\n    type: postgres\n    url: ${TEST_PG_URL}\n";

/// backup, list, verify (then again within --max-age: skipped), restore plan, restore
/// apply; the restored database equals the source. Returns the run id.
async fn round_trip(dir: &Path, env: &[(&str, &str)], source_url: &str) -> String {
    let backup = stoa(dir, &["backup", "--json"], env).await.expect(0);
    let run_id = backup.json()["components"][0]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();

    let list = stoa(dir, &["list", "--json"], env).await.expect(0);
    let listing = list.json();
    let run = &listing["storage"][0]["runs"][0];
    assert_eq!(run["run_id"], run_id.as_str(), "{list}");
    assert_eq!(run["verified"], true, "{list}");

    let verify = stoa(dir, &["verify", "--json"], env).await.expect(0);
    let doc = verify.json();
    assert_eq!(doc["verdict"], "succeeded", "{verify}");
    let checked = &doc["runs"][0];
    assert_eq!(checked["run_id"], run_id.as_str());
    assert_eq!(checked["status"], "verified", "{verify}");
    let verifiers: Vec<&str> = checked["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["verifier"].as_str().unwrap_or_default())
        .collect();
    assert!(verifiers.contains(&"checksum-deep"), "{verify}");
    assert!(
        verifiers
            .iter()
            .any(|v| v.contains("postgres") || v.contains("pg")),
        "the dump is read by pg_restore again: {verify}"
    );
    let again = stoa(dir, &["verify", "--max-age", "1h", "--json"], env)
        .await
        .expect(0);
    assert_eq!(again.json()["runs"][0]["status"], "skipped", "{again}");

    let target = restore_target("cli_restored").await;
    let plan = stoa(
        dir,
        &["restore", "app", "--to", target.name(), "--json"],
        env,
    )
    .await
    .expect(0);
    let doc = plan.json();
    assert_eq!(doc["verdict"], "planned", "{plan}");
    assert_eq!(doc["run_id"], run_id.as_str());
    assert_eq!(
        doc["plan"]["components"][0]["report"]["created"], 1,
        "{plan}"
    );
    assert!(
        !database_exists(target.name()).await,
        "a plan must not create the database"
    );

    let applied = stoa(
        dir,
        &["restore", "app", "--to", target.name(), "--apply", "--json"],
        env,
    )
    .await
    .expect(0);
    assert_eq!(applied.json()["verdict"], "succeeded", "{applied}");
    assert_eq!(
        database_state(target.url()).await,
        database_state(source_url).await,
        "the restored database differs from its source"
    );

    // Restoring again into the same name is refused: it exists now.
    let refused = stoa(
        dir,
        &["restore", "app", "--to", target.name(), "--apply"],
        env,
    )
    .await
    .expect(1);
    assert!(refused.stderr.contains("already exists"), "{refused}");
    target.drop_db().await;
    run_id
}

#[tokio::test]
async fn a_local_backup_is_listed_verified_and_restored_equal_to_its_source() {
    let db = rich_database("cli_rt_local", 300).await;
    let ws = Workspace::new();
    ws.write("stoa-backup.yaml", &local_config(&ws, COMPONENT));
    round_trip(ws.path(), &[("TEST_PG_URL", db.url())], db.url()).await;
}

#[tokio::test]
async fn an_s3_backup_is_listed_verified_and_restored_equal_to_its_source() {
    let db = rich_database("cli_rt_s3", 300).await;
    let s3 = s3s_fs_target().await;
    let ws = Workspace::new();
    ws.write(
        "stoa-backup.yaml",
        &format!(
            "storage:\n  offsite:\n    type: s3\n    bucket: {}\n    prefix: cli\n    endpoint: {}\n    region: {}\n    allow_http: true\n    credentials:\n      access_key_id: ${{S3_ACCESS}}\n      secret_access_key: ${{S3_SECRET}}\ncomponents:\n{COMPONENT}",
            s3.bucket, s3.endpoint, s3.region
        ),
    );
    let env = [
        ("TEST_PG_URL", db.url()),
        ("S3_ACCESS", s3.access_key.as_str()),
        ("S3_SECRET", s3.secret_key.as_str()),
    ];
    let run_id = round_trip(ws.path(), &env, db.url()).await;
    // The run is in the bucket, not in the working directory.
    let stored = s3
        .server()
        .expect("in-process")
        .storage_dir()
        .join(&s3.bucket);
    assert!(
        stored
            .join(format!("cli/runs/{run_id}/manifest.json"))
            .is_file(),
        "no manifest under {}",
        stored.display()
    );
    assert!(!ws.path().join("stoa-backups").exists());
}

#[tokio::test]
async fn an_encrypted_backup_is_stored_encrypted_and_restored_with_the_identity() {
    let db = rich_database("cli_rt_age", 300).await;
    let (identity, recipient) = generate_identity();
    let ws = Workspace::new();
    let identity_file = ws.write("identity.txt", identity.expose_secret());
    ws.write(
        "stoa-backup.yaml",
        &format!(
            "{}encryption:\n  recipients:\n    - ${{AGE_RECIPIENT}}\n  identities_file: {}\n",
            local_config(&ws, COMPONENT),
            identity_file.display()
        ),
    );
    let env = [
        ("TEST_PG_URL", db.url()),
        ("AGE_RECIPIENT", recipient.as_str()),
    ];
    let run_id = round_trip(ws.path(), &env, db.url()).await;

    // Stored encrypted: no custom-format dump magic in the run's artifacts.
    let run_dir = ws.backups().join("runs").join(&run_id).join("app");
    let mut artifacts = 0;
    for entry in std::fs::read_dir(&run_dir).expect("run dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(
            bytes.starts_with(b"age-encryption.org/"),
            "an artifact is not age-encrypted"
        );
        artifacts += 1;
    }
    assert!(artifacts > 0);

    // Without the identity, the restore plan fails before writing, naming the recipient.
    let no_key = Workspace::new();
    no_key.write(
        "stoa-backup.yaml",
        &format!(
            "storage:\n  local:\n    type: local\n    path: {}\ncomponents:\n{COMPONENT}encryption:\n  recipients:\n    - ${{AGE_RECIPIENT}}\n",
            ws.backups().display()
        ),
    );
    let target = restore_target("cli_nokey").await;
    let refused = stoa(
        no_key.path(),
        &["restore", "app", "--to", target.name(), "--apply"],
        &env,
    )
    .await
    .expect(1);
    assert!(refused.stderr.contains(&recipient), "{refused}");
    assert!(!database_exists(target.name()).await);
}
