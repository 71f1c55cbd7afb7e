//! The lease logic of [`SinkLock`] and [`LeaseKeeper`] over the memory sink.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::error::{Error, ErrorKind};
use crate::key::ObjectKey;
use crate::manifest::RunId;
use crate::sink::{
    MemorySink, ObjectMeta, PutCondition, PutOutcome, PutResult, Sink, SinkCapabilities, SinkExt,
    VersionedObject,
};
use crate::stream::ByteStream;

const TTL: Duration = Duration::from_secs(60);

fn scope() -> LockScope {
    LockScope::new("postgres", "memory")
}

async fn stored(sink: &MemorySink) -> Lease {
    let bytes = sink
        .get_bytes(&SinkLock::key("postgres").unwrap())
        .await
        .expect("the lease is stored under locks/postgres.json");
    Lease::from_json(&bytes).unwrap()
}

/// Writes `lease` as the stored lease, as another process would have.
async fn store(sink: &MemorySink, lease: &Lease) {
    sink.put_bytes(&SinkLock::key("postgres").unwrap(), lease.to_json().into())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_free_lock_is_acquired_and_stored() {
    let sink = MemorySink::new();
    let lock = SinkLock::new(sink.clone());
    let run = RunId::parse("20260101T000000Z-abcdef").unwrap();
    let owner = LeaseOwner::named("host-a/1/x").for_run(run.clone());
    let before = Utc::now();
    let held = lock.acquire(&scope(), &owner, TTL).await.unwrap();
    let lease = held.lease();
    assert_eq!(lease.holder, "host-a/1/x");
    assert_eq!(lease.run_id.as_ref(), Some(&run));
    assert_eq!(
        (lease.component.as_str(), lease.target.as_str()),
        ("postgres", "memory")
    );
    assert!(lease.acquired_at >= before && lease.renewed_at == lease.acquired_at);
    assert_eq!(lease.expires_at - lease.acquired_at, TimeDelta::seconds(60));
    assert_eq!(lease.transitions, 0);
    assert!(lease.is_held_at(Utc::now()));
    assert_eq!(&stored(&sink).await, lease);
    assert_eq!(lock.current(&scope()).await.unwrap().as_ref(), Some(lease));
    // Leases are not runs.
    assert!(sink.list("runs").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_held_lock_is_refused_naming_the_holder_and_when_it_expires() {
    let sink = MemorySink::new();
    let lock = SinkLock::new(sink.clone());
    let first = lock
        .acquire(&scope(), &LeaseOwner::named("host-a/1/x"), TTL)
        .await
        .unwrap();
    let e = lock
        .acquire(&scope(), &LeaseOwner::named("host-b/2/y"), TTL)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(is_lock_conflict(&e), "{e}");
    assert_eq!(e.component(), Some("postgres"));
    let text = e.to_string();
    let since = lease::time(first.lease().acquired_at);
    let expires = lease::time(first.lease().expires_at);
    for part in ["host-a/1/x", since.as_str(), expires.as_str(), "memory"] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
    assert!(e.hint().unwrap().contains(&expires), "{:?}", e.hint());
    // The holder's lease is untouched.
    assert_eq!(&stored(&sink).await, first.lease());
}

#[tokio::test]
async fn the_holder_acquires_its_own_lease_again_keeping_when_it_took_it() {
    let lock = SinkLock::new(MemorySink::new());
    let owner = LeaseOwner::named("host-a/1/x");
    let first = lock.acquire(&scope(), &owner, TTL).await.unwrap();
    let again = lock.acquire(&scope(), &owner, TTL).await.unwrap();
    assert_eq!(again.lease().acquired_at, first.lease().acquired_at);
    assert!(again.lease().renewed_at >= first.lease().renewed_at);
    assert_eq!(again.lease().transitions, 0);
    assert_ne!(again.token(), first.token());
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let sink = MemorySink::new();
    let lock = SinkLock::new(sink.clone());
    let dead = LeaseOwner::named("host-a/1/dead");
    let then = Utc::now() - TimeDelta::seconds(120);
    store(&sink, &Lease::new(&scope(), &dead, then, TTL, 4)).await;
    let held = lock
        .acquire(&scope(), &LeaseOwner::named("host-b/2/y"), TTL)
        .await
        .unwrap();
    assert_eq!(held.lease().holder, "host-b/2/y");
    assert_eq!(held.lease().transitions, 5);
    assert!(held.lease().acquired_at > then);
    assert_eq!(&stored(&sink).await, held.lease());
}

#[tokio::test]
async fn a_released_lease_is_free_and_a_release_never_removes_a_newer_holder() {
    let sink = MemorySink::new();
    let lock = SinkLock::new(sink.clone());
    let a = lock
        .acquire(&scope(), &LeaseOwner::named("a"), TTL)
        .await
        .unwrap();
    lock.release(&a).await.unwrap();
    let released = stored(&sink).await;
    assert!(released.released_at.is_some());
    assert!(!released.is_held_at(Utc::now()));
    let b = lock
        .acquire(&scope(), &LeaseOwner::named("b"), TTL)
        .await
        .unwrap();
    assert_eq!(b.lease().transitions, 1);
    // `a` releasing (again) does not touch `b`'s lease.
    lock.release(&a).await.unwrap();
    assert_eq!(&stored(&sink).await, b.lease());
}

#[tokio::test]
async fn renewing_a_lease_taken_over_fails_naming_the_new_holder() {
    let sink = MemorySink::new();
    let lock = SinkLock::new(sink.clone());
    let a = lock
        .acquire(&scope(), &LeaseOwner::named("host-a/1/x"), TTL)
        .await
        .unwrap();
    let renewed = lock.renew(&a, TTL).await.unwrap();
    assert_eq!(renewed.lease().acquired_at, a.lease().acquired_at);
    assert!(renewed.lease().renewed_at >= a.lease().renewed_at);
    store(
        &sink,
        &Lease::new(
            &scope(),
            &LeaseOwner::named("host-b/2/y"),
            Utc::now(),
            TTL,
            1,
        ),
    )
    .await;
    let e = lock.renew(&renewed, TTL).await.unwrap_err();
    assert!(is_lock_conflict(&e), "{e}");
    assert_eq!(e.operation(), Some("renew run lock"));
    assert!(e.to_string().contains("taken over by host-b/2/y"), "{e}");
    assert_eq!(stored(&sink).await.holder, "host-b/2/y");
}

#[tokio::test]
async fn of_many_owners_racing_for_a_free_lock_exactly_one_gets_it() {
    let lock = Arc::new(SinkLock::new(MemorySink::new()));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let lock = lock.clone();
            tokio::spawn(async move {
                lock.acquire(&scope(), &LeaseOwner::named(format!("owner-{i}")), TTL)
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(h) => won.push(h),
            Err(e) => assert!(is_lock_conflict(&e), "{e}"),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let current = lock.current(&scope()).await.unwrap().unwrap();
    assert_eq!(&current, won[0].lease());
}

#[tokio::test]
async fn unreadable_and_newer_lease_records_are_errors_not_free_locks() {
    let sink = MemorySink::new();
    let lock = SinkLock::new(sink.clone());
    let key = SinkLock::key("postgres").unwrap();
    sink.put_bytes(&key, Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let e = lock
        .acquire(&scope(), &LeaseOwner::named("a"), TTL)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity);
    assert_eq!(e.artifact(), Some("locks/postgres.json"));
    let newer = String::from_utf8(
        Lease::new(&scope(), &LeaseOwner::named("x"), Utc::now(), TTL, 0).to_json(),
    )
    .unwrap()
    .replace("\"format_version\": 1", "\"format_version\": 9");
    sink.put_bytes(&key, newer.into()).await.unwrap();
    let e = lock.current(&scope()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.hint().unwrap().contains("upgrade"));
}

#[tokio::test]
async fn a_sink_without_conditional_puts_cannot_hold_a_lease() {
    let lock = SinkLock::new(NoConditional(MemorySink::new()));
    let e = lock
        .acquire(&scope(), &LeaseOwner::named("a"), TTL)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(e.operation(), Some("get versioned"));
    assert!(e.to_string().contains("no-conditional"), "{e}");
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_recognised_as_ours() {
    let sink = Scripted {
        lose: AtomicU32::new(1),
        ..Scripted::default()
    };
    let lock = SinkLock::new(sink);
    let held = lock
        .acquire(&scope(), &LeaseOwner::named("a"), TTL)
        .await
        .unwrap();
    assert_eq!(held.lease().holder, "a");
    // The token is the stored version: renewing works.
    lock.renew(&held, TTL).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_keeper_renews_every_third_of_the_ttl_and_stops_when_taken_over() {
    let sink = MemorySink::new();
    let lock: Arc<dyn RunLock> = Arc::new(SinkLock::new(sink.clone()));
    let held = lock
        .acquire(&scope(), &LeaseOwner::named("a"), TTL)
        .await
        .unwrap();
    let keeper = LeaseKeeper::new(lock.clone(), vec![held.clone()], TTL);
    assert_eq!(keeper.renew_interval(), Duration::from_secs(20));
    let stop = CancellationToken::new();
    // Two renewals, then another owner takes the lease over.
    let watch = async {
        while keeper.leases().await[0].token() == held.token() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let once = keeper.leases().await[0].clone();
        while keeper.leases().await[0].token() == once.token() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        store(
            &sink,
            &Lease::new(&scope(), &LeaseOwner::named("b"), Utc::now(), TTL, 1),
        )
        .await;
    };
    let started = tokio::time::Instant::now();
    tokio::join!(keeper.keep(&stop), watch);
    assert!(keeper.lost().is_cancelled());
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    let e = keeper.lost_error().unwrap();
    assert!(is_lock_conflict(&e));
    assert!(e.to_string().contains("taken over by b"), "{e}");
    assert!(keeper.renew_now().await.is_err());
}

#[tokio::test]
async fn the_keeper_gives_up_when_renewals_fail_until_the_lease_would_expire() {
    let failing = Arc::new(AtomicU32::new(0));
    let sink = Scripted {
        failing: failing.clone(),
        ..Scripted::default()
    };
    let lock: Arc<dyn RunLock> = Arc::new(SinkLock::new(sink));
    let ttl = Duration::from_millis(1500);
    let held = lock
        .acquire(&scope(), &LeaseOwner::named("a"), ttl)
        .await
        .unwrap();
    failing.store(1, Ordering::SeqCst);
    let keeper = LeaseKeeper::new(lock, vec![held], ttl);
    let started = std::time::Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        keeper.keep(&CancellationToken::new()),
    )
    .await
    .expect("the keeper gives up before the lease expires");
    let elapsed = started.elapsed();
    // The first failure (at 0.5 s) leaves time; the second (at 1 s) would be retried at
    // 1.5 s, when the lease expires.
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < ttl,
        "{elapsed:?}"
    );
    let e = keeper.lost_error().unwrap();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(
        e.to_string()
            .contains("could not be renewed before it expires"),
        "{e}"
    );
}

#[tokio::test]
async fn the_keeper_releases_once_and_no_renewal_follows() {
    let sink = MemorySink::new();
    let lock: Arc<dyn RunLock> = Arc::new(SinkLock::new(sink.clone()));
    let held = lock
        .acquire(&scope(), &LeaseOwner::named("a"), TTL)
        .await
        .unwrap();
    let keeper = LeaseKeeper::new(lock, vec![held], TTL);
    keeper.release().await;
    let released = stored(&sink).await;
    assert!(released.released_at.is_some());
    keeper.release().await;
    keeper.renew_now().await.unwrap();
    assert_eq!(stored(&sink).await, released);
}

/// Forwards to a memory sink, without conditional puts.
#[derive(Debug)]
struct NoConditional(MemorySink);

#[async_trait]
impl Sink for NoConditional {
    fn describe(&self) -> String {
        "no-conditional".into()
    }
    async fn preflight(&self) -> crate::Result<()> {
        Ok(())
    }
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> crate::Result<PutResult> {
        self.0.put(key, stream).await
    }
    async fn get(&self, key: &ObjectKey) -> crate::Result<ByteStream> {
        self.0.get(key).await
    }
    async fn list(&self, prefix: &str) -> crate::Result<Vec<ObjectMeta>> {
        self.0.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> crate::Result<()> {
        self.0.delete(key).await
    }
}

/// A memory sink whose conditional puts misbehave as told: the first `lose` write, then
/// answer "condition failed" (a retried request whose first attempt wrote); while `failing`
/// is not 0 they fail as unreachable.
#[derive(Debug, Default)]
struct Scripted {
    inner: MemorySink,
    lose: AtomicU32,
    failing: Arc<AtomicU32>,
}

#[async_trait]
impl Sink for Scripted {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }
    async fn preflight(&self) -> crate::Result<()> {
        Ok(())
    }
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> crate::Result<PutResult> {
        self.inner.put(key, stream).await
    }
    async fn get(&self, key: &ObjectKey) -> crate::Result<ByteStream> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> crate::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> crate::Result<()> {
        self.inner.delete(key).await
    }
    async fn get_versioned(&self, key: &ObjectKey) -> crate::Result<Option<VersionedObject>> {
        self.inner.get_versioned(key).await
    }
    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: PutCondition,
    ) -> crate::Result<PutOutcome> {
        if self.failing.load(Ordering::SeqCst) != 0 {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the storage is unreachable",
            ));
        }
        let outcome = self.inner.put_if(key, bytes, condition).await?;
        let lose = self
            .lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        Ok(if lose {
            PutOutcome::ConditionFailed
        } else {
            outcome
        })
    }
}
