//! Runs with a run lock over the memory sink: one run per component at a time, nothing
//! written by a refused run, a run stopped when its lease is taken over, leases given up
//! after the manifest or a failure, and retention leaving a locked component alone.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::support::{Fixed, Hooked};
use crate::catalog::Catalog;
use crate::error::{ErrorKind, Result};
use crate::lock::{is_lock_conflict, Lease, LeaseOwner, LockScope, RunLock, SinkLock};
use crate::manifest::RunStatus;
use crate::pipeline::Pipeline;
use crate::retention::KeepRules;
use crate::sink::{MemorySink, Sink, SinkExt};
use crate::source::{ArtifactPlan, Export, ExportContext, PreflightReport, Source};

/// One artifact of `component` whose stream yields a first chunk, says so, and ends only
/// once the gate opens: a long dump, holding its run's lease.
#[derive(Debug, Clone)]
struct Gate {
    component: &'static str,
    started: Arc<Notify>,
    open: CancellationToken,
}

impl Gate {
    fn new(component: &'static str) -> Self {
        Gate {
            component,
            started: Arc::new(Notify::new()),
            open: CancellationToken::new(),
        }
    }
}

#[async_trait]
impl Source for Gate {
    fn component(&self) -> &str {
        self.component
    }
    fn provider(&self) -> &str {
        "gate"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan::new(
            "dump.bin",
            "application/octet-stream",
        )])
    }
    async fn export(&self, _: &ArtifactPlan, _: &ExportContext) -> Result<Export> {
        let (started, open) = (self.started.clone(), self.open.clone());
        let first = futures::stream::once(async move {
            started.notify_one();
            Ok(Bytes::from_static(b"rows"))
        });
        let rest = futures::stream::once(async move {
            open.cancelled().await;
            Ok(Bytes::from_static(b" and more"))
        });
        Ok(Export::new(Box::pin(first.chain(rest))))
    }
}

fn locked(sink: &MemorySink, source: impl Source + 'static, owner: &str) -> Pipeline {
    Pipeline::builder()
        .source(source)
        .sink(sink.clone())
        .lock_in_sink()
        .lock_owner(LeaseOwner::named(owner))
        .build()
        .unwrap()
}

async fn lease_of(sink: &MemorySink, component: &str) -> Lease {
    let bytes = sink
        .get_bytes(&SinkLock::key(component).unwrap())
        .await
        .unwrap();
    Lease::from_json(&bytes).unwrap()
}

async fn keys(sink: &MemorySink) -> Vec<String> {
    sink.list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect()
}

#[tokio::test]
async fn a_second_run_of_a_component_is_refused_while_the_first_runs_and_writes_nothing() {
    let sink = MemorySink::new();
    let gate = Gate::new("db");
    let first = locked(&sink, gate.clone(), "replica-a");
    let running = tokio::spawn(async move { first.run().await });
    gate.started.notified().await;
    let held = lease_of(&sink, "db").await;
    assert_eq!(held.holder, "replica-a");
    let first_run = held.run_id.clone().expect("the lease names its run");

    let before = keys(&sink).await;
    let e = locked(&sink, Fixed::one("db", "dump.bin", b"x"), "replica-b")
        .run()
        .await
        .unwrap_err();
    assert!(is_lock_conflict(&e), "{e}");
    assert_eq!(e.component(), Some("db"));
    let text = e.to_string();
    assert!(
        text.contains("replica-a") && text.contains(first_run.as_str()),
        "{text}"
    );
    let refused_run = e
        .context_value("run")
        .expect("the refused run is named")
        .to_string();
    assert_ne!(refused_run, first_run.as_str());
    // Nothing of the refused run, and the lease untouched.
    assert_eq!(keys(&sink).await, before);
    assert_eq!(lease_of(&sink, "db").await, held);

    // Another component is not in the way.
    let other = locked(&sink, Fixed::one("web", "site.tar", b"y"), "replica-b")
        .run()
        .await
        .unwrap();
    assert!(other.is_complete());

    gate.open.cancel();
    let report = running.await.unwrap().unwrap();
    assert!(report.is_complete());
    assert_eq!(report.run_id, first_run);
    let released = lease_of(&sink, "db").await;
    assert!(released.released_at.is_some(), "{released:?}");
    // Free again: the next run takes it.
    let next = locked(&sink, Fixed::one("db", "dump.bin", b"x"), "replica-b")
        .run()
        .await
        .unwrap();
    assert!(next.is_complete());
    let lease = lease_of(&sink, "db").await;
    assert_eq!(
        (
            lease.holder.as_str(),
            lease.transitions,
            lease.run_id.as_ref()
        ),
        ("replica-b", 1, Some(&next.run_id))
    );
}

#[tokio::test]
async fn a_run_whose_lease_is_taken_over_stops_without_a_manifest() {
    let sink = MemorySink::new();
    let gate = Gate::new("db");
    let pipeline = Pipeline::builder()
        .source(gate.clone())
        .sink(sink.clone())
        .lock_in_sink()
        .lock_ttl(Duration::from_millis(1500))
        .build()
        .unwrap();
    let running = tokio::spawn(async move { pipeline.run().await });
    gate.started.notified().await;
    let mine = lease_of(&sink, "db").await;
    // Another process decided the lease had expired (a paused holder, a skewed clock).
    let intruder = Lease::new(
        &LockScope::new("db", "memory"),
        &LeaseOwner::named("intruder"),
        Utc::now(),
        Duration::from_secs(600),
        mine.transitions + 1,
    );
    sink.put_bytes(&SinkLock::key("db").unwrap(), intruder.to_json().into())
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the run stops at its next renewal")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(e.operation(), Some("renew run lock"));
    assert!(e.to_string().contains("taken over by intruder"), "{e}");
    let run = mine.run_id.unwrap();
    assert!(!sink.exists(&run.manifest_key()).await.unwrap());
    // The intruder's lease is left alone.
    assert_eq!(lease_of(&sink, "db").await, intruder);
}

#[tokio::test]
async fn failed_and_cancelled_runs_give_their_leases_up() {
    let sink = MemorySink::new();
    let failing = Pipeline::builder()
        .source(super::Bare::failing(
            "db",
            super::At::Discover,
            ErrorKind::Source,
            false,
        ))
        .sink(sink.clone())
        .lock_in_sink()
        .build()
        .unwrap();
    let report = failing.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(lease_of(&sink, "db").await.released_at.is_some());

    let gate = Gate::new("db");
    let cancel = CancellationToken::new();
    let pipeline = Pipeline::builder()
        .source(gate.clone())
        .sink(sink.clone())
        .lock_in_sink()
        .cancel(cancel.clone())
        .build()
        .unwrap();
    let running = tokio::spawn(async move { pipeline.run().await });
    gate.started.notified().await;
    assert!(lease_of(&sink, "db").await.is_held_at(Utc::now()));
    cancel.cancel();
    let e = running.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert!(lease_of(&sink, "db").await.released_at.is_some());
}

#[tokio::test]
async fn a_run_takes_all_its_components_or_none() {
    let sink = MemorySink::new();
    let lock = SinkLock::new(sink.clone());
    let target = sink.describe();
    lock.acquire(
        &LockScope::new("b", target.clone()),
        &LeaseOwner::named("other"),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let e = Pipeline::builder()
        .source(Fixed::one("a", "a.bin", b"a"))
        .source(Fixed::one("b", "b.bin", b"b"))
        .sink(sink.clone())
        .lock_in_sink()
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(is_lock_conflict(&e), "{e}");
    assert_eq!(e.component(), Some("b"));
    // `a` was taken first (name order) and given back.
    assert!(lease_of(&sink, "a").await.released_at.is_some());
    assert!(sink.list("runs").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lock_in_the_sink_needs_conditional_puts() {
    let e = Pipeline::builder()
        .source(Fixed::one("a", "a.bin", b"a"))
        .sink(Hooked::plain())
        .lock_in_sink()
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("conditional puts"), "{e}");
    let e = Pipeline::builder()
        .source(Fixed::one("a", "a.bin", b"a"))
        .sink(MemorySink::new())
        .lock_in_sink()
        .lock_ttl(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn retention_leaves_a_locked_component_alone_and_prunes_the_others() {
    let sink = MemorySink::new();
    for component in ["db", "web"] {
        for _ in 0..3 {
            let r = locked(&sink, Fixed::one(component, "x.bin", b"x"), "cron")
                .run()
                .await
                .unwrap();
            assert!(r.is_complete());
        }
    }
    let catalog = Catalog::new(sink.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), Utc::now())
        .await
        .unwrap();
    assert_eq!(plan.forgotten().count(), 4);

    // A run of db is going on elsewhere.
    let lock = SinkLock::new(sink.clone());
    let held = lock
        .acquire(
            &LockScope::new("db", sink.describe()),
            &LeaseOwner::named("replica-a"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let removed = catalog.apply_retention(&plan).await.unwrap();
    let runs = catalog.list_all().await.unwrap();
    let of = |c: &str| runs.iter().filter(|r| r.components == [c]).count();
    assert_eq!(removed.len(), 2, "only web's two old runs: {removed:?}");
    assert_eq!((of("db"), of("web")), (3, 1));

    // Once the lease is given up, db is pruned too.
    lock.release(&held).await.unwrap();
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), Utc::now())
        .await
        .unwrap();
    assert_eq!(catalog.apply_retention(&plan).await.unwrap().len(), 2);
    let runs = catalog.list_all().await.unwrap();
    assert_eq!(runs.len(), 2);
}
