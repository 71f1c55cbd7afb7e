//! A restore's swap (`RestoreTarget::NewDatabase { swap: true }`) while another session holds
//! a lock on the live database: it fails fast, names the session, and leaves the live
//! database under its name, whole and accepting connections.

use std::time::{Duration, Instant};

use stoa_backup::core::ErrorKind;

use super::support::{
    allows_connections, databases_like, dump_of, restore, rows_in, swap_restorer, waiting_on,
    LockHolder, Scenario,
};

#[tokio::test]
async fn swap_blocked_by_a_lock_fails_fast_and_leaves_the_live_database_reachable() {
    let s = Scenario::new("pgsw_lock", 50).await;
    let holder = LockHolder::hold(s.live()).await;
    let holder_pid = holder.pid;
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(40),
        restore(s.dir.path(), dump_of(&s.manifest), &swap_restorer(s.live())),
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

    // The live database is there under its name, whole, and accepts connections again.
    assert_eq!(allows_connections(s.live()).await, Some(true));
    assert_eq!(rows_in(s.live(), "live").await, 3);
    assert_eq!(
        databases_like(s.live()).await,
        vec![s.live().to_string()],
        "no staging or old database left"
    );
    s.cleanup().await;
}
