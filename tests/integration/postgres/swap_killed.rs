//! A restore killed (SIGKILL, a real child process) in the middle of its swap: the live name
//! still resolves to a whole database, and a rerun finishes the swap (same run) or undoes it
//! (another run) and says which.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use stoa_backup::core::{Catalog, RunId};
use stoa_backup::storage::LocalSink;
use stoa_backup_test_support::child::ChildTest;

use super::support::{
    allows_connections, backup_into, database_comments, database_oid, databases_like, dry_run,
    restore, rows_in, set_rows, swap_restorer, wait_gone, waiting_on, LockHolder, Scenario,
};

/// Environment of the child process that runs the restore the parent test kills.
const CHILD_DIR: &str = "STOA_TEST_SWAP_CHILD_DIR";
const CHILD_RUN: &str = "STOA_TEST_SWAP_CHILD_RUN";
const CHILD_LIVE: &str = "STOA_TEST_SWAP_CHILD_LIVE";

/// In the child process (the test binary run again on one test, with the environment
/// above): restores the run into the live database with a swap, then reports how it ended
/// (it should not end: the parent kills it while the swap waits on a lock).
async fn child_restore() -> bool {
    let (Ok(dir), Ok(run), Ok(live)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_RUN),
        std::env::var(CHILD_LIVE),
    ) else {
        return false;
    };
    let dir = PathBuf::from(dir);
    let manifest = Catalog::new(LocalSink::new(&dir).unwrap())
        .read_manifest(&RunId::parse(run).unwrap())
        .await
        .unwrap();
    // A lock timeout longer than the parent needs to see the swap wait and kill this process.
    let restorer = swap_restorer(&live).lock_timeout(Duration::from_secs(120));
    let result = restore(&dir, &manifest, &restorer).await;
    println!("child restore ended: {result:?}");
    true
}

/// Runs the restore of `s`'s run in a child process while another session locks the live
/// database, SIGKILLs the child once its swap waits on that lock, then releases the lock
/// and waits until the server is done with the child's session.
async fn kill_restore_mid_swap(s: &Scenario, test: &str) {
    let holder = LockHolder::hold(s.live()).await;
    let name = format!("{}::{test}", module_path!().split_once("::").unwrap().1);
    let mut child = ChildTest::spawn(
        &name,
        &[
            (CHILD_DIR, s.dir.path().display().to_string()),
            (CHILD_RUN, s.manifest.run_id.to_string()),
            (CHILD_LIVE, s.live().to_string()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let waiter = loop {
        if let Some(pid) = waiting_on(s.live()).await.first() {
            break *pid;
        }
        if let Some(status) = child.exited() {
            panic!(
                "the child restore ended ({status}) before its swap waited on the lock:\n{}",
                child.output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the child's swap never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Asserts the child died of SIGKILL.
    child.kill().await;
    // With the lock free, the server runs what the dead client's session was waiting for.
    holder.release().await;
    wait_gone(waiter).await;
}

/// After the kill: the live name still resolves, to the very database it named before
/// (same oid: the swap rolled back whole), and the staging copy carries the swap's marker.
async fn assert_whole_live_and_swap_recorded(s: &Scenario) {
    let names = databases_like(s.live()).await;
    assert_eq!(
        database_oid(s.live()).await,
        Some(s.live_oid),
        "the live name no longer names the live database after the kill: {names:?}"
    );
    let marked = database_comments(s.live()).await;
    assert_eq!(marked.len(), 1, "{marked:?}");
    assert!(marked[0].0.contains("_restore_"), "{marked:?}");
    assert!(
        marked[0].1.contains(s.manifest.run_id.as_str()),
        "{marked:?}"
    );
}

#[tokio::test]
async fn swap_killed_mid_way_leaves_a_whole_database_and_a_rerun_finishes_it() {
    if child_restore().await {
        return;
    }
    let s = Scenario::new("pgsw_kill", 40).await;
    kill_restore_mid_swap(
        &s,
        "swap_killed_mid_way_leaves_a_whole_database_and_a_rerun_finishes_it",
    )
    .await;
    assert_whole_live_and_swap_recorded(&s).await;

    // A dry run says it would finish the swap, and changes nothing.
    let dry = dry_run(s.dir.path(), &s.manifest, &swap_restorer(s.live())).await;
    assert!(
        dry.notes
            .iter()
            .any(|n| n.starts_with("would finish the swap")),
        "{dry:?}"
    );
    assert_whole_live_and_swap_recorded(&s).await;

    // The rerun of the same run finishes the swap and says so, with the counts planned.
    let report = restore(s.dir.path(), &s.manifest, &swap_restorer(s.live()))
        .await
        .unwrap();
    assert_eq!(
        (report.created, report.updated, report.skipped),
        (dry.created, dry.updated, dry.skipped),
        "the plan counts what the restore did: {dry:?}"
    );
    let notes = report.notes.join("\n");
    assert_eq!(
        report.facts["interrupted_swaps"][0]["action"], "finished",
        "{report:?}"
    );
    assert!(notes.contains("finished"), "{notes}");
    assert_eq!(rows_in(s.live(), "src").await, 40);
    let old = report.facts["previous_database"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        rows_in(&old, "live").await,
        3,
        "the previous database is kept"
    );
    assert_eq!(allows_connections(s.live()).await, Some(true));
    assert_eq!(allows_connections(&old).await, Some(true));
    assert_eq!(
        databases_like(s.live()).await,
        vec![s.live().to_string(), old.clone()],
        "no staging database left"
    );
    assert!(
        database_comments(s.live()).await.is_empty(),
        "no swap marker left"
    );
    s.cleanup().await;
}

#[tokio::test]
async fn a_rerun_with_another_run_undoes_an_interrupted_swap_then_restores() {
    if child_restore().await {
        return;
    }
    let s = Scenario::new("pgsw_undo", 40).await;
    kill_restore_mid_swap(
        &s,
        "a_rerun_with_another_run_undoes_an_interrupted_swap_then_restores",
    )
    .await;
    assert_whole_live_and_swap_recorded(&s).await;

    // A newer backup: the operator restores that one instead.
    set_rows(&s.src, "src", 45).await;
    let newer = backup_into(s.dir.path(), &s.src).await;
    let dry = dry_run(s.dir.path(), &newer, &swap_restorer(s.live())).await;
    assert!(
        dry.notes
            .iter()
            .any(|n| n.starts_with("would undo the swap")),
        "{dry:?}"
    );
    assert_whole_live_and_swap_recorded(&s).await;
    let report = restore(s.dir.path(), &newer, &swap_restorer(s.live()))
        .await
        .unwrap();
    assert_eq!(
        (report.created, report.updated, report.skipped),
        (dry.created, dry.updated, dry.skipped),
        "the plan counts what the restore did: {dry:?}"
    );
    let notes = report.notes.join("\n");
    assert_eq!(
        report.facts["interrupted_swaps"][0]["action"], "undone",
        "{report:?}"
    );
    assert_eq!(
        report.facts["interrupted_swaps"][0]["run"],
        s.manifest.run_id.as_str()
    );
    assert!(notes.contains("undid"), "{notes}");
    assert_eq!(rows_in(s.live(), "src").await, 45, "the newer run is live");
    let old = report.facts["previous_database"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rows_in(&old, "live").await, 3);
    assert_eq!(
        databases_like(s.live()).await,
        vec![s.live().to_string(), old],
        "the first run's staging database was dropped"
    );
    assert!(database_comments(s.live()).await.is_empty());
    s.cleanup().await;
}
