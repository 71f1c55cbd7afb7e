//! Two pipelines of one component, two replicas with sinks of their own on one storage
//! target, started at the same instant: exactly one runs; the other fails with the lock
//! error naming the holder and writes nothing.

use std::sync::Arc;
use std::time::Duration;

use futures::future::Either;

use stoa_backup::core::lock::{is_lock_conflict, LeaseOwner, LockScope, SinkLock};
use stoa_backup::core::{RunLock, RunReport};
use tokio::sync::Barrier;

use super::{backends, fresh_keys, locked, Backend, Gate};

/// How long the winner may take to finish once the gate opens.
const FINISH: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_component_started_at_once_on_every_backend() {
    let tmp = tempfile::tempdir().unwrap();
    for backend in backends(tmp.path()).await {
        for round in 0..3 {
            two_at_once(
                &backend,
                &tmp.path().join(format!("{}-{round}", backend.name())),
            )
            .await;
        }
    }
}

async fn two_at_once(backend: &Backend, dir: &std::path::Path) {
    let name = backend.name();
    let replicas = ["replica-a", "replica-b"];
    let mut sinks = Vec::new();
    for r in replicas {
        sinks.push(backend.sink(&dir.join(r)).await);
    }
    let before = fresh_keys(backend, dir).await;
    let gates = [Gate::new(), Gate::new()];
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|i| {
            let pipeline = locked(
                sinks[i].clone(),
                gates[i].clone(),
                LeaseOwner::named(replicas[i]),
            );
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                pipeline.run().await
            })
        })
        .collect();
    let [a, b]: [_; 2] = runs.try_into().unwrap();
    // The refused one returns at once; the winner waits at its gate.
    let (first, other, other_gate) = match futures::future::select(a, b).await {
        Either::Left((r, b)) => (r.unwrap(), b, 1),
        Either::Right((r, a)) => (r.unwrap(), a, 0),
    };
    let e = match first {
        Err(e) => e,
        Ok(report) => panic!("{name}: a run ended while the other held its gate: {report:?}"),
    };
    assert!(is_lock_conflict(&e), "{name}: {e}");
    let winner = replicas[other_gate];
    let winner_run = tokio::time::timeout(FINISH, gates[other_gate].started())
        .await
        .unwrap_or_else(|_| panic!("{name}: the other run never started its dump"));
    let text = e.to_string();
    assert!(
        text.contains(winner) && text.contains(&winner_run),
        "{name}: the error names neither the holder nor its run: {text}"
    );
    assert!(e.hint().unwrap().contains("expires at"), "{name}: {e:?}");
    let refused_run = e.context_value("run").expect("the refused run is named");

    // The lease is the winner's, and nothing of the refused run was written.
    let lock = SinkLock::shared(sinks[0].clone());
    let lease = lock
        .current(&LockScope::new("db", sinks[0].describe()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.holder, winner, "{name}");
    assert!(
        !fresh_keys(backend, dir)
            .await
            .iter()
            .any(|k| k.contains(refused_run)),
        "{name}: the refused run {refused_run} wrote something"
    );

    gates[other_gate].open.cancel();
    let report: RunReport = tokio::time::timeout(FINISH, other)
        .await
        .unwrap_or_else(|_| panic!("{name}: the winner did not finish"))
        .unwrap()
        .unwrap_or_else(|e| panic!("{name}: the winner failed: {e}"));
    assert!(report.is_complete(), "{name}: {report:?}");
    assert_eq!(report.run_id.as_str(), winner_run);
    let after = fresh_keys(backend, dir).await;
    let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert!(
        !new.is_empty() && new.iter().all(|k| k.contains(&winner_run)),
        "{name}: runs written: {new:?}"
    );
    let lease = lock
        .current(&LockScope::new("db", sinks[0].describe()))
        .await
        .unwrap()
        .unwrap();
    assert!(lease.released_at.is_some(), "{name}: {lease:?}");
}
