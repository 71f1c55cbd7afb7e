//! A real process holding the lease of `db` (the child) is killed with SIGKILL, so it never
//! gives the lease up. While it held it, a second run was refused naming it and retention
//! deleted nothing of `db` (the other component was pruned); once the lease expired, a new
//! run took it over, and retention pruned `db` again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use stoa_backup::core::lock::{is_lock_conflict, LeaseOwner, LockScope, SinkLock};
use stoa_backup::core::process::CommandSpec;
use stoa_backup::core::{
    Catalog, CommandSource, KeepRules, RunLock, RunReport, RunStatus, RunSummary, Sink,
};
use stoa_backup_test_support::child::ChildTest;

use super::child::{child_test_name, params, HOLDING, PARAMS_ENV};
use super::{backends, locked, run_keys, Backend, TTL};

/// How long the child may take to reach its point (the binary is built).
const REACH: Duration = Duration::from_secs(60);

fn echo(component: &str) -> CommandSource {
    CommandSource::new(
        component,
        "echo.txt",
        CommandSpec::new("echo").arg(component.to_string()),
    )
}

async fn run(
    sink: &Arc<dyn Sink>,
    component: &str,
    owner: &str,
) -> stoa_backup::core::Result<RunReport> {
    locked(sink.clone(), echo(component), LeaseOwner::named(owner))
        .run()
        .await
}

/// Every run of `component`, complete or not, newest first.
async fn runs_of(catalog: &Catalog, component: &str) -> Vec<RunSummary> {
    catalog
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.components.iter().any(|c| c == component))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_keeps_others_out_until_its_lease_expires() {
    let tmp = tempfile::tempdir().unwrap();
    for backend in backends(tmp.path()).await {
        killed_holder(&backend, &tmp.path().join(backend.name())).await;
    }
}

async fn killed_holder(backend: &Backend, dir: &Path) {
    let name = backend.name();
    let sink = backend.sink(&dir.join("parent")).await;
    for component in ["db", "web"] {
        for _ in 0..2 {
            assert!(run(&sink, component, "seed").await.unwrap().is_complete());
        }
    }
    let catalog = Catalog::new(sink.clone());
    let lock = SinkLock::shared(sink.clone());
    let scope = LockScope::new("db", sink.describe());

    let mut child = ChildTest::spawn(
        &child_test_name(),
        &[(PARAMS_ENV, params(backend, &dir.join("child")))],
    );
    let child_run = child.wait_for(HOLDING, REACH).await;
    let held = lock
        .current(&scope)
        .await
        .unwrap()
        .expect("the child's lease");
    assert!(held.is_held_at(Utc::now()), "{name}: {held:?}");
    assert!(
        held.holder.contains(&format!("/{}/", child.pid())),
        "{name}: the holder is not the child (pid {}): {held:?}",
        child.pid()
    );
    assert_eq!(
        held.run_id.as_ref().map(|r| r.as_str()),
        Some(child_run.as_str())
    );
    let first = format!("runs/{child_run}/db/first.bin");
    if backend.shows_unfinished_runs() {
        let deadline = tokio::time::Instant::now() + REACH;
        while !run_keys(sink.as_ref()).await.contains(&first) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {first} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A second run is refused, naming the child and its run; it writes nothing.
    let keys_before = run_keys(sink.as_ref()).await;
    let e = match run(&sink, "db", "parent").await {
        Err(e) => e,
        Ok(r) => panic!(
            "{name}: a second run got the lease of the running child: {r:?}\nlease now: {:?}\n{}",
            lock.current(&scope).await,
            child.output()
        ),
    };
    assert!(is_lock_conflict(&e), "{name}: {e}");
    assert!(
        e.to_string().contains(&held.holder) && e.to_string().contains(&child_run),
        "{name}: {e}"
    );
    assert_eq!(run_keys(sink.as_ref()).await, keys_before, "{name}");

    // Retention while the lease is held: nothing of db, web pruned as planned.
    let rules = KeepRules::new()
        .keep_last(1)
        .incomplete_grace(chrono::Duration::zero());
    let plan = catalog.plan_retention(&rules, Utc::now()).await.unwrap();
    let db_before = runs_of(&catalog, "db").await;
    let web_before = runs_of(&catalog, "web").await;
    let forgotten: Vec<_> = plan.forgotten().map(|d| d.run_id.clone()).collect();
    assert!(
        forgotten.contains(&db_before.last().unwrap().run_id),
        "{name}: {forgotten:?}"
    );
    if backend.shows_unfinished_runs() {
        assert!(
            forgotten.iter().any(|r| r.as_str() == child_run),
            "{name}: the plan keeps the running run anyway"
        );
    }
    let removed = catalog.apply_retention(&plan).await.unwrap();
    assert_eq!(removed, vec![web_before[1].run_id.clone()], "{name}");
    assert_eq!(
        runs_of(&catalog, "db").await,
        db_before,
        "{name}: retention touched db"
    );
    if backend.shows_unfinished_runs() {
        assert!(
            run_keys(sink.as_ref()).await.contains(&first),
            "{name}: {first} was deleted"
        );
    }

    // Killed: the lease stays, unreleased, until it expires.
    child.kill().await;
    let left = lock.current(&scope).await.unwrap().unwrap();
    assert_eq!(
        (left.holder.as_str(), left.released_at),
        (held.holder.as_str(), None),
        "{name}"
    );
    let deadline = tokio::time::Instant::now() + 5 * TTL;
    let report = loop {
        match run(&sink, "db", "parent").await {
            Ok(report) => break report,
            Err(e) if is_lock_conflict(&e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name}: never taken over: {e}"
                );
                assert!(e.to_string().contains(&held.holder), "{name}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{name}: {e}"),
        }
    };
    assert!(
        Utc::now() >= left.expires_at,
        "{name}: taken over before the lease expired"
    );
    assert!(report.is_complete(), "{name}: {report:?}");
    let taken = lock.current(&scope).await.unwrap().unwrap();
    assert_eq!(taken.holder, "parent", "{name}");
    assert_eq!(taken.transitions, left.transitions + 1, "{name}");
    assert_eq!(taken.run_id.as_ref(), Some(&report.run_id), "{name}");

    // Free again: retention prunes db, the killed run's leftovers included.
    let plan = catalog.plan_retention(&rules, Utc::now()).await.unwrap();
    catalog.apply_retention(&plan).await.unwrap();
    let db = runs_of(&catalog, "db").await;
    assert_eq!(db.len(), 1, "{name}: {db:?}");
    assert_eq!(
        (db[0].run_id.clone(), db[0].status),
        (report.run_id.clone(), RunStatus::Complete)
    );
    assert!(
        !run_keys(sink.as_ref())
            .await
            .iter()
            .any(|k| k.contains(&child_run)),
        "{name}"
    );
}
