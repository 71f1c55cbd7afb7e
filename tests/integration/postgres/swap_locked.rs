//! A restore's swap (`RestoreTarget::NewDatabase { swap: true }`) while another session holds
//! a lock on the live database: it fails fast, names the session, and leaves the live
//! database under its name, whole and accepting connections.

use std::time::{Duration, Instant};

use stoa_backup::core::ErrorKind;

use super::support::{
    allows_connections, database_comments, databases_like, restore, rows_in, swap_restorer,
    waiting_on, LockHolder, Scenario,
};

#[tokio::test]
async fn swap_blocked_by_a_lock_fails_fast_and_leaves_the_live_database_reachable() {
    let s = Scenario::new("pgsw_lock", 50).await;
    let holder = LockHolder::hold(s.live()).await;
    let holder_pid = holder.pid;
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(40),
        restore(s.dir.path(), &s.manifest, &swap_restorer(s.live())),
    )
    .await;
    let blocked = waiting_on(s.live()).await;
    holder.release().await;
    let Ok(result) = outcome else {
        s.cleanup().await;
        panic!("the restore waited 40 s on the lock instead of failing fast (blocked sessions: {blocked:?})");
    };
    let err = result.expect_err("the swap cannot take the lock");
    assert!(started.elapsed() < Duration::from_secs(40));
    let text = format!("{err} {}", err.hint().unwrap_or_default());
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{text}");
    assert!(text.contains("lock timeout"), "{text}");
    assert!(text.contains(s.live()), "{text}");
    assert!(
        text.contains(&format!("pid {holder_pid}")),
        "names the session holding the lock: {text}"
    );

    // The live database is there under its name, whole, and accepts connections again; the
    // restored copy is kept, marked, for a rerun.
    assert_eq!(allows_connections(s.live()).await, Some(true));
    assert_eq!(rows_in(s.live(), "live").await, 3);
    let names = databases_like(s.live()).await;
    assert_eq!(names.len(), 2, "live and the kept staging copy: {names:?}");
    assert!(names[1].contains("_restore_"), "{names:?}");
    assert!(text.contains(&format!("kept as '{}'", names[1])), "{text}");
    let marked = database_comments(s.live()).await;
    assert_eq!(marked.len(), 1, "{marked:?}");
    assert_eq!(marked[0].0, names[1]);

    // With the lock gone, rerunning the same restore swaps the kept copy in.
    let report = restore(s.dir.path(), &s.manifest, &swap_restorer(s.live()))
        .await
        .unwrap();
    assert_eq!(report.facts["interrupted_swaps"][0]["action"], "finished");
    assert_eq!(rows_in(s.live(), "src").await, 50);
    let old = report.facts["previous_database"].as_str().unwrap();
    assert_eq!(rows_in(old, "live").await, 3);
    assert!(database_comments(s.live()).await.is_empty());
    s.cleanup().await;
}
