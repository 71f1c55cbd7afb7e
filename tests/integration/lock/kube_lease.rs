//! The run lock as `coordination.k8s.io/v1` Leases against the fake API server over real
//! HTTP (the real kube client): one of two runs started at once, racing takeovers of an
//! expired Lease with exactly one winner (409 on a stale `resourceVersion`), a holder that
//! stopped renewing taken over after expiry, and retention respecting the Lease.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::Either;
use serde_json::json;
use stoa_backup::core::lock::{is_lock_conflict, LeaseOwner, LockScope};
use stoa_backup::core::process::CommandSpec;
use stoa_backup::core::{Catalog, CommandSource, KeepRules, RunLock, Sink};
use stoa_backup::providers::kubernetes::KubeLeaseLock;
use stoa_backup::storage::LocalSink;
use stoa_backup_test_support::kube_fake::FakeKube;
use tokio::sync::Barrier;

use super::{locked_with, Gate, TTL};

const NAMESPACE: &str = "stoa";

async fn fake() -> FakeKube {
    let fake = FakeKube::start().await;
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}));
    fake
}

fn lock(fake: &FakeKube) -> Arc<dyn RunLock> {
    Arc::new(KubeLeaseLock::new(fake.client(), NAMESPACE))
}

fn local(dir: &std::path::Path) -> Arc<dyn Sink> {
    std::fs::create_dir_all(dir).unwrap();
    Arc::new(LocalSink::new(dir).unwrap())
}

fn echo(component: &str) -> CommandSource {
    CommandSource::new(
        component,
        "echo.txt",
        CommandSpec::new("echo").arg(component.to_string()),
    )
}

/// The Lease object of `db` into `sink`, as the API serves it.
fn lease_object(fake: &FakeKube, sink: &dyn Sink) -> serde_json::Value {
    let name = KubeLeaseLock::new(fake.client(), NAMESPACE)
        .lease_name(&LockScope::new("db", sink.describe()));
    fake.get("coordination.k8s.io/v1", "Lease", Some(NAMESPACE), &name)
        .unwrap_or_else(|| panic!("no Lease {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_runs_started_at_once_holds_the_kubernetes_lease() {
    let fake = fake().await;
    let tmp = tempfile::tempdir().unwrap();
    let sink = local(tmp.path());
    let gates = [Gate::new(), Gate::new()];
    let replicas = ["pod-a", "pod-b"];
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|i| {
            let p = locked_with(
                sink.clone(),
                gates[i].clone(),
                lock(&fake),
                LeaseOwner::named(replicas[i]),
            );
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                p.run().await
            })
        })
        .collect();
    let [a, b]: [_; 2] = runs.try_into().unwrap();
    let (first, other, w) = match futures::future::select(a, b).await {
        Either::Left((r, b)) => (r.unwrap(), b, 1),
        Either::Right((r, a)) => (r.unwrap(), a, 0),
    };
    let e = first.expect_err("one run must be refused");
    assert!(is_lock_conflict(&e), "{e}");
    let winner_run = gates[w].started().await;
    assert!(
        e.to_string().contains(replicas[w]) && e.to_string().contains(&winner_run),
        "{e}"
    );
    let held = lease_object(&fake, sink.as_ref());
    assert_eq!(held["spec"]["holderIdentity"], json!(replicas[w]));
    assert_eq!(held["spec"]["leaseDurationSeconds"], json!(TTL.as_secs()));
    assert_eq!(
        held["metadata"]["annotations"]["backup.gostoa.dev/run-id"],
        json!(winner_run)
    );
    let refused = e.context_value("run").unwrap().to_string();
    assert!(!std::fs::read_dir(tmp.path().join("runs"))
        .map(|d| d
            .flatten()
            .any(|e| e.file_name().to_string_lossy() == refused))
        .unwrap_or(false));

    gates[w].open.cancel();
    let report = other.await.unwrap().unwrap();
    assert!(report.is_complete());
    let released = lease_object(&fake, sink.as_ref());
    assert!(released["spec"]["holderIdentity"].is_null(), "{released}");
    assert_eq!(
        released["metadata"]["annotations"]["backup.gostoa.dev/released-by"],
        json!(replicas[w])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_takeovers_of_an_expired_lease_have_one_winner() {
    let fake = fake().await;
    let scope = LockScope::new("db", "local:/backups");
    let dead = lock(&fake)
        .acquire(&scope, &LeaseOwner::named("dead"), Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (lock, scope) = (lock(&fake), scope.clone());
            tokio::spawn(async move {
                lock.acquire(&scope, &LeaseOwner::named(format!("pod-{i}")), TTL)
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(h) => winners.push(h),
            Err(e) => assert!(is_lock_conflict(&e), "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0].lease().transitions, 1);
    // One replace went through (with the resourceVersion it read); any other met a 409.
    let puts: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts.iter().filter(|s| **s == 200).count(), 1, "{puts:?}");
    assert!(puts.iter().all(|s| [200, 409].contains(s)), "{puts:?}");
    // The old holder cannot renew any more, and learns who took over.
    let e = lock(&fake).renew(&dead, TTL).await.unwrap_err();
    assert!(is_lock_conflict(&e), "{e}");
    assert!(e.to_string().contains(&winners[0].lease().holder), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_stopped_renewing_is_taken_over_and_retention_waits_for_it() {
    let fake = fake().await;
    let tmp = tempfile::tempdir().unwrap();
    let sink = local(tmp.path());
    let kube = lock(&fake);
    for _ in 0..2 {
        let r = locked_with(
            sink.clone(),
            echo("db"),
            kube.clone(),
            LeaseOwner::named("cron"),
        )
        .run()
        .await
        .unwrap();
        assert!(r.is_complete());
    }
    // A pod took the lease and died: nobody renews it.
    let scope = LockScope::new("db", sink.describe());
    let dead = kube
        .acquire(&scope, &LeaseOwner::named("pod-dead"), TTL)
        .await
        .unwrap();
    let e = locked_with(
        sink.clone(),
        echo("db"),
        kube.clone(),
        LeaseOwner::named("pod-b"),
    )
    .run()
    .await
    .unwrap_err();
    assert!(
        is_lock_conflict(&e) && e.to_string().contains("pod-dead"),
        "{e}"
    );

    // Retention over the same Leases leaves db alone while it is held.
    let catalog = Catalog::new(sink.clone()).with_lock(kube.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), Utc::now())
        .await
        .unwrap();
    assert_eq!(plan.forgotten().count(), 1);
    assert!(catalog.apply_retention(&plan).await.unwrap().is_empty());
    assert_eq!(catalog.list_all().await.unwrap().len(), 2);

    // Taken over once it expired.
    let deadline = tokio::time::Instant::now() + 5 * TTL;
    let report = loop {
        match locked_with(
            sink.clone(),
            echo("db"),
            kube.clone(),
            LeaseOwner::named("pod-b"),
        )
        .run()
        .await
        {
            Ok(r) => break r,
            Err(e) if is_lock_conflict(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(Utc::now() >= dead.lease().expires_at);
    assert!(report.is_complete());
    let lease = kube.current(&scope).await.unwrap().unwrap();
    assert_eq!(lease.holder, "pod-b");
    assert_eq!(lease.transitions, dead.lease().transitions + 1);
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), Utc::now())
        .await
        .unwrap();
    assert_eq!(catalog.apply_retention(&plan).await.unwrap().len(), 2);
}
