//! A real backup process killed with SIGKILL at one point of its run, then a backup and a
//! retention pass: nothing the killed run left may look like a backup, touch the previous
//! one, outlive it as a process, or stay behind as a stale temporary file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stoa_backup::core::{Catalog, RunId, RunStatus};
use stoa_backup_test_support::child::{kill_all, wait_gone, ChildTest, Process};
use stoa_backup_test_support::test_database_url;

use super::checks::{
    age_files, assert_complete_runs_have_their_data, assert_no_session_left,
    assert_no_stale_temp_files, run_digests, sessions, temp_files,
};
use super::child::{child_test_name, ChildParams, PARAMS_ENV};
use super::hooks::{
    FaultPoint, DUMP_PAUSE_BYTES, MANIFEST_PAUSE_BYTES, RUN_MARKER, VERIFY_PAUSE_BYTES,
};
use super::{client, complete_backup, fault_database, local_sink, retention};

/// Rows of the database the kill tests back up (a dump of about 6 MB).
const EVENTS: u32 = 20_000;

/// How long the child may take to reach its point (it builds nothing: the binary is built).
const REACH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an effect may take to show: the bytes a hook let through reaching the sink's
/// file, the processes and database sessions of a killed child going away.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How far back the leftover temporary files are dated before the last backup: beyond any
/// grace period a sweep of stale temporary files may give them.
const LEFTOVER_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The grace period after which no temporary file may be left: a day, the default grace of
/// unfinished runs.
const TEMP_GRACE: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn kill_during_the_dump() {
    kill_backup_at(FaultPoint::DuringDump).await;
}

#[tokio::test]
async fn kill_while_pg_dump_waits_on_a_lock() {
    kill_backup_at(FaultPoint::DumpWaitingOnLock).await;
}

#[tokio::test]
async fn kill_after_the_artifact_rename() {
    kill_backup_at(FaultPoint::AfterArtifactRename).await;
}

#[tokio::test]
async fn kill_during_verification() {
    kill_backup_at(FaultPoint::DuringVerification).await;
}

#[tokio::test]
async fn kill_during_the_manifest_write() {
    kill_backup_at(FaultPoint::DuringManifestWrite).await;
}

/// Waits until a temporary file under the run's directory for `file_name` holds `size`
/// bytes: the bytes the hook let through reached the sink's file.
async fn wait_for_temp_file(root: &Path, run: &RunId, file_name: &str, size: u64) -> PathBuf {
    let dir = root.join(run.prefix());
    let prefix = format!(".{file_name}.tmp-");
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let found = temp_files(&dir).into_iter().find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
                && std::fs::metadata(p).is_ok_and(|m| m.len() == size)
        });
        if let Some(p) = found {
            return p;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "no temporary file {prefix}* of {size} bytes under {}: {:?}",
                dir.display(),
                temp_files(&dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has(procs: &[Process], comm: &str) -> bool {
    procs.iter().any(|p| p.comm == comm)
}

/// Whether the dump of a run killed at `point` was already renamed into place.
fn dump_in_place(point: FaultPoint) -> bool {
    match point {
        FaultPoint::DuringDump | FaultPoint::DumpWaitingOnLock => false,
        FaultPoint::AfterArtifactRename
        | FaultPoint::DuringVerification
        | FaultPoint::DuringManifestWrite => true,
    }
}

/// Whether a run killed at `point` was killed in the middle of writing an object to the sink
/// (the dump or the manifest), so that a temporary file is left.
fn mid_write(point: FaultPoint) -> bool {
    match point {
        FaultPoint::DuringDump
        | FaultPoint::DumpWaitingOnLock
        | FaultPoint::DuringManifestWrite => true,
        FaultPoint::AfterArtifactRename | FaultPoint::DuringVerification => false,
    }
}

/// Holds an ACCESS EXCLUSIVE lock on `faults.events` until dropped: pg_dump, which takes
/// ACCESS SHARE locks on every table it dumps, waits for it without writing a byte.
async fn lock_events_table(url: &str) -> tokio_postgres::Client {
    let c = client(url).await;
    c.batch_execute("BEGIN; LOCK TABLE faults.events IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock faults.events");
    c
}

/// Waits until pg_dump's session on `database` waits for the lock.
async fn wait_for_pg_dump_lock_wait(database: &str) {
    let admin = client(&test_database_url()).await;
    let deadline = tokio::time::Instant::now() + REACH_TIMEOUT;
    loop {
        let now = sessions(&admin, database).await;
        // pg_dump's `LOCK TABLE … IN ACCESS SHARE MODE`, queued behind the test's lock.
        if now.iter().any(|s| {
            s.state == "active" && s.wait_event_type == "Lock" && s.query.contains("ACCESS SHARE")
        }) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pg_dump did not wait for the lock on {database} within {REACH_TIMEOUT:?}: {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn kill_backup_at(point: FaultPoint) {
    let db = fault_database(&format!("faults_{}", point.name()), EVENTS).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let sink = local_sink(&root);
    let root = std::fs::canonicalize(&root).unwrap();
    let catalog = Catalog::new(sink.clone());
    let dump_name = format!("{}.dump", db.name());

    // The previous good backup, and what its files hold.
    let previous = complete_backup(db.url(), sink.clone(), retention())
        .await
        .run_id;
    let previous_files = run_digests(&root, &previous);

    // The backup that is killed, in a process of its own.
    let lock = match point {
        FaultPoint::DumpWaitingOnLock => Some(lock_events_table(db.url()).await),
        _ => None,
    };
    let params = ChildParams {
        point,
        database_url: db.url().to_string(),
        sink_root: root.clone(),
    };
    let mut child = ChildTest::spawn(&child_test_name(), &[(PARAMS_ENV, params.encode())]);
    let killed = RunId::parse(child.wait_for(RUN_MARKER, REACH_TIMEOUT).await).unwrap();
    let reached = child.wait_for(point.name(), REACH_TIMEOUT).await;
    match point {
        FaultPoint::DuringDump => {
            let passed: u64 = reached.parse().unwrap();
            assert_eq!(passed, DUMP_PAUSE_BYTES, "the dump is longer");
            wait_for_temp_file(&root, &killed, &dump_name, passed).await;
        }
        FaultPoint::DumpWaitingOnLock => {
            assert_eq!(reached, "0");
            wait_for_pg_dump_lock_wait(db.name()).await;
        }
        FaultPoint::DuringManifestWrite => {
            let passed: u64 = reached.parse().unwrap();
            assert_eq!(passed, MANIFEST_PAUSE_BYTES, "the manifest is longer");
            wait_for_temp_file(&root, &killed, "manifest.json", passed).await;
        }
        FaultPoint::AfterArtifactRename => assert_eq!(reached, dump_name),
        FaultPoint::DuringVerification => assert_eq!(reached, VERIFY_PAUSE_BYTES.to_string()),
    }
    let procs = child.descendants();
    match point {
        FaultPoint::DuringDump | FaultPoint::DumpWaitingOnLock => {
            assert!(
                has(&procs, "pg_dump"),
                "pg_dump is not running at the pause: {procs:?}\n{}",
                child.output()
            );
            // The inline archive check reads the dump as it streams: its pg_restore runs
            // beside pg_dump, and must die with the run too.
            assert!(
                point == FaultPoint::DumpWaitingOnLock || has(&procs, "pg_restore"),
                "the inline check's pg_restore is not running at the pause: {procs:?}\n{}",
                child.output()
            );
        }
        FaultPoint::DuringVerification => {
            // The stored dump is read ahead: the pause can come before the verifier has
            // started its pg_restore processes on what was read.
            let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
            let mut procs = procs.clone();
            while !has(&procs, "pg_restore") && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                procs = child.descendants();
            }
            assert!(
                has(&procs, "pg_restore"),
                "pg_restore is not running at the pause: {procs:?}\n{}",
                child.output()
            );
        }
        _ => {}
    }
    child.kill().await;

    // The killed backup's own processes die with it (pg_dump too, while it waits for the
    // lock), and so do its database sessions.
    let lingering = wait_gone(&procs, SETTLE_TIMEOUT).await;
    if !lingering.is_empty() {
        let cleanup = kill_all(&lingering);
        panic!(
            "processes of the backup killed {point} outlived it by {SETTLE_TIMEOUT:?}: \
             {lingering:?} (killed now{})",
            cleanup
                .map(|e| format!("; kill failed: {e}"))
                .unwrap_or_default()
        );
    }
    drop(lock);
    assert_no_session_left(db.name(), SETTLE_TIMEOUT).await;

    // Right after the kill: the killed run is no backup, the previous one is whole.
    let runs = catalog.list_all().await.expect("list the runs");
    let killed_summary = runs.iter().find(|r| r.run_id == killed);
    if let Some(r) = killed_summary {
        assert_eq!(r.status, RunStatus::Incomplete, "{r:?}");
    }
    if dump_in_place(point) {
        // Its dump was renamed into place: the run is listed, by that object at least.
        assert!(killed_summary.is_some(), "{runs:#?}");
    }
    assert_eq!(
        assert_complete_runs_have_their_data(&sink).await,
        vec![previous.clone()]
    );
    assert_eq!(run_digests(&root, &previous), previous_files);

    // What the kill left mid-write, dated back beyond any grace period.
    let leftovers = temp_files(&root);
    assert_eq!(
        !leftovers.is_empty(),
        mid_write(point),
        "temporary files after a kill {point}: {leftovers:?}"
    );
    age_files(&leftovers, LEFTOVER_AGE);

    // The next backup, with retention: the killed run goes, the previous one stays as it was.
    let next = complete_backup(db.url(), sink.clone(), retention()).await;
    let expect_removed: Vec<RunId> = killed_summary
        .map(|r| r.run_id.clone())
        .into_iter()
        .collect();
    assert_eq!(next.removed_runs, expect_removed);
    assert_eq!(
        assert_complete_runs_have_their_data(&sink).await,
        vec![next.run_id.clone(), previous.clone()]
    );
    let runs = catalog.list_all().await.expect("list the runs");
    assert!(
        runs.iter().all(|r| r.run_id != killed),
        "the killed run is still listed after retention: {runs:#?}"
    );
    assert_eq!(run_digests(&root, &previous), previous_files);

    // needs the stale-temp sweep (issue #12 bug 2)
    assert_no_stale_temp_files(&root, TEMP_GRACE);
    db.drop_db().await;
}
