//! A real PostgreSQL run copied local → S3 → local and local → Git: stored digests
//! unchanged, every artifact decodes to the bytes the source exported, and the database
//! restores from each copy; a second pass writes nothing (S3 request log, file times).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use stoa_backup::core::replicate::{CopyOutcome, ReplicaFilter, Replicator};
use stoa_backup::core::{Catalog, ExistingDataPolicy, Keyring, Restore, Sink};
use stoa_backup::providers::postgres::{PgConnection, PostgresRestorer, RestoreTarget};
use stoa_backup_test_support::s3 as s3t;
use stoa_backup_test_support::test_database_url;

use super::*;

/// Every file under `dir` with its modification time.
fn file_times(dir: &Path) -> BTreeMap<String, SystemTime> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path().display().to_string(), meta.modified().unwrap());
            }
        }
    }
    out
}

fn restorer(target: &str) -> PostgresRestorer {
    PostgresRestorer::new(
        PgConnection::from_url(&test_database_url()).unwrap(),
        RestoreTarget::NewDatabase {
            name: target.to_string(),
            swap: false,
        },
    )
}

/// Restores run `run` of `db` from `sink` (planned there) into a new database: its rows.
async fn restore_from(
    sink: Arc<dyn Sink>,
    name: &str,
    run: &stoa_backup::core::RunId,
    target: &str,
) -> i64 {
    let restore = Restore::builder()
        .sink(sink)
        .keyring(Keyring::new())
        .restorer(restorer(target))
        .existing(ExistingDataPolicy::Fail)
        .build()
        .unwrap();
    let plan = restore.plan_run(run).await.unwrap();
    assert_eq!(plan.components.len(), 1, "{name}: {}", plan.table());
    rows_restored(&restore, &plan, target).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_copied_to_s3_back_to_local_and_to_git_restores_identically_from_each() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(200_000).await;
    let file = config_file(tmp.path());
    let local: Arc<dyn Sink> = Arc::new(local_sink(tmp.path().join("local")));
    let report = pipeline(&db, &file, local.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.manifest.failures);
    let run = report.run_id.clone();
    let original = stored(&report.manifest);
    let dump = report
        .manifest
        .artifacts
        .iter()
        .find(|a| a.component == "postgres")
        .unwrap();
    // Several S3 parts (5 MiB each).
    assert!(
        dump.stored_size > 5 * MIB as u64,
        "a dump of {} bytes",
        dump.stored_size
    );

    // local → S3 (in-process s3s-fs, checking signatures and SHA-256 checksums).
    let t = s3t::s3s_fs_target().await;
    let server = t.server().unwrap();
    let s3: Arc<dyn Sink> = Arc::new(s3_sink(&t, "dr"));
    let (c_local, c_s3) = (Catalog::new(local.clone()), Catalog::new(s3.clone()));
    let copy = c_local.copy_run(&run, &c_s3).await.unwrap();
    assert_eq!(copy.outcome, CopyOutcome::Copied);
    assert_eq!(
        copy.store_checked, 2,
        "S3 checked every copied artifact on write"
    );
    assert!(
        server.requests().upload_part >= 2,
        "the dump went multipart"
    );
    let on_s3 = c_s3.read_manifest(&run).await.unwrap();
    assert_eq!(stored(&on_s3), original, "stored digests unchanged");
    assert!(c_s3.list_runs(&Default::default()).await.unwrap()[0].verified);
    assert_plain_bytes_intact(s3.as_ref(), &on_s3, "on S3").await;
    let target = format!("{}_from_s3", db.name());
    assert_eq!(restore_from(s3.clone(), "s3", &run, &target).await, 200_000);

    // S3 → another local directory.
    let back: Arc<dyn Sink> = Arc::new(local_sink(tmp.path().join("back")));
    let c_back = Catalog::new(back.clone());
    let copy = c_s3.copy_run(&run, &c_back).await.unwrap();
    assert_eq!((copy.outcome, copy.read_back), (CopyOutcome::Copied, 2));
    assert_eq!(stored(&c_back.read_manifest(&run).await.unwrap()), original);
    for a in &report.manifest.artifacts {
        assert_eq!(
            std::fs::read(tmp.path().join("local").join(a.key.as_str())).unwrap(),
            std::fs::read(tmp.path().join("back").join(a.key.as_str())).unwrap(),
            "{} byte for byte",
            a.key
        );
    }
    let target = format!("{}_from_back", db.name());
    assert_eq!(
        restore_from(back.clone(), "back", &run, &target).await,
        200_000
    );

    // local → Git: the binary dump becomes a blob, as stored (zstd), digests unchanged.
    let git: Arc<dyn Sink> = Arc::new(git_sink(tmp.path()).await);
    let c_git = Catalog::new(git.clone());
    let copy = c_local.copy_run(&run, &c_git).await.unwrap();
    assert_eq!(copy.outcome, CopyOutcome::Copied);
    let on_git = c_git.read_manifest(&run).await.unwrap();
    assert_eq!(stored(&on_git), original);
    assert_plain_bytes_intact(git.as_ref(), &on_git, "in Git").await;
    // A fresh clone elsewhere reads the run from the remote's history.
    let fresh = Catalog::new(git_sink_of(tmp.path()).await);
    assert_eq!(fresh.list_runs(&Default::default()).await.unwrap().len(), 1);
    let target = format!("{}_from_git", db.name());
    assert_eq!(
        restore_from(git.clone(), "git", &run, &target).await,
        200_000
    );

    // A second pass copies nothing: no object written to S3, no file touched locally.
    let before = server.requests();
    let times = file_times(&tmp.path().join("back"));
    let again = Replicator::new(&c_local, &c_s3)
        .replicate(&ReplicaFilter::all())
        .await
        .unwrap();
    assert_eq!(again.runs.len(), 1);
    assert_eq!(again.runs[0].outcome, CopyOutcome::AlreadyPresent);
    let after = server.requests();
    assert_eq!(
        (after.put_object, after.create_multipart, after.upload_part),
        (
            before.put_object,
            before.create_multipart,
            before.upload_part
        ),
        "the second pass wrote to S3"
    );
    let again = Replicator::new(&c_s3, &c_back)
        .replicate(&ReplicaFilter::all())
        .await
        .unwrap();
    assert_eq!(again.written().count(), 0);
    assert_eq!(
        file_times(&tmp.path().join("back")),
        times,
        "files were rewritten"
    );
    db.drop_db().await;
}

/// A second clone of the test's Git remote, in a directory of its own.
async fn git_sink_of(tmp: &Path) -> GitSink {
    GitSink::builder(
        format!("file://{}", tmp.join("remote.git").display()),
        tmp.join("git-work-2"),
    )
    .author("stoa-backup-test", "backup@example.com")
    .build()
    .await
    .unwrap()
}
