//! [`SinkLock`]: leases stored in the sink itself, as `locks/<component>.json`, written only
//! with the sink's conditional puts.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;

use super::{lost_error, HeldLease, Lease, LeaseOwner, LockScope, RunLock};
use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::sink::{ObjectVersion, PutCondition, PutOutcome, Sink};

/// Where [`SinkLock`] keeps its leases: `locks/<component>.json`, beside `runs/` (the
/// catalog lists only `runs/`, so a lease is never taken for a run, and retention never
/// deletes one).
pub const LOCKS_PREFIX: &str = "locks";

/// How often `acquire` reads and writes again after losing a race for a free lease, before
/// it reports the lease as contended.
const ACQUIRE_ATTEMPTS: usize = 3;

/// A [`RunLock`] keeping each lease as `locks/<component>.json` in a sink with conditional
/// puts ([`SinkCapabilities::conditional_put`](crate::sink::SinkCapabilities)): a free lock
/// (no object) is taken with a create-if-absent; renewing, taking over an expired lease and
/// releasing are compare-and-swaps against the version read, so of two owners racing for
/// one lease exactly one writes it. A released lease stays as a record with
/// [`Lease::released_at`] (a plain delete could remove a newer holder's lease).
///
/// A write whose answer was lost (a retried request that the store refuses because the
/// first attempt already wrote) is recognised by reading the lease back: the store holds
/// exactly the record this lock wrote.
#[derive(Debug, Clone)]
pub struct SinkLock {
    sink: Arc<dyn Sink>,
}

impl SinkLock {
    /// Leases in `sink`: any [`Sink`], also an `Arc` of the one a pipeline writes to.
    pub fn new(sink: impl Sink + 'static) -> Self {
        SinkLock::shared(Arc::new(sink))
    }

    /// Leases in an already shared sink.
    pub fn shared(sink: Arc<dyn Sink>) -> Self {
        SinkLock { sink }
    }

    /// The key of the lease of `component`: `locks/<component>.json`.
    pub fn key(component: &str) -> Result<ObjectKey> {
        ObjectKey::new(format!("{LOCKS_PREFIX}/{component}.json")).map_err(|e| {
            e.with_component(component.to_string())
                .with_operation("acquire run lock")
                .with_hint("a component name must be one safe key segment")
        })
    }

    fn context(&self, e: Error, scope: &LockScope, operation: &str, key: &ObjectKey) -> Error {
        e.or_component(scope.component().to_string())
            .or_operation(operation.to_string())
            .or_artifact(key.as_str())
            .with_context("lock", self.describe())
    }

    /// The lease under `key` and its version, if any.
    async fn read(&self, key: &ObjectKey) -> Result<Option<(Lease, ObjectVersion)>> {
        let Some(object) = self.sink.get_versioned(key).await? else {
            return Ok(None);
        };
        let lease = Lease::from_json(&object.bytes).map_err(|e| e.with_artifact(key.as_str()))?;
        Ok(Some((lease, object.version)))
    }

    /// Writes `record` if `condition` holds; `None` when it did not (someone else wrote).
    async fn write(
        &self,
        key: &ObjectKey,
        record: Lease,
        condition: PutCondition,
    ) -> Result<Option<HeldLease>> {
        let bytes = Bytes::from(record.to_json());
        match self.sink.put_if(key, bytes.clone(), condition).await? {
            PutOutcome::Written(version) => Ok(Some(HeldLease::new(record, version.as_str()))),
            PutOutcome::ConditionFailed => {
                // A request retried after its answer was lost finds its own write.
                Ok(match self.sink.get_versioned(key).await? {
                    Some(now) if now.bytes == bytes => {
                        Some(HeldLease::new(record, now.version.as_str()))
                    }
                    _ => None,
                })
            }
        }
    }

    async fn try_acquire(
        &self,
        key: &ObjectKey,
        scope: &LockScope,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<HeldLease> {
        for attempt in 0..ACQUIRE_ATTEMPTS {
            if attempt > 0 {
                // Lost a race: let the winner's write land (a Git push, an S3 request)
                // before reading again.
                let wait = 20 + rand::random::<u64>() % 80;
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            let now = Utc::now();
            let current = self.read(key).await?;
            let record = Lease::claim(current.as_ref().map(|(l, _)| l), scope, owner, now, ttl)?;
            let condition = match current {
                None => PutCondition::Absent,
                Some((_, version)) => PutCondition::Matches(version),
            };
            if let Some(held) = self.write(key, record, condition).await? {
                tracing::info!(
                    component = scope.component(),
                    target = scope.target(),
                    holder = owner.identity(),
                    "run lock acquired"
                );
                return Ok(held);
            }
        }
        // Lost every race: whoever won holds it now.
        match self.read(key).await? {
            Some((lease, _)) if lease.is_held_at(Utc::now()) => Err(lease.held_error(Utc::now())),
            _ => Err(Error::new(
                ErrorKind::Conflict,
                format!("the run lock of {scope} is contended: {ACQUIRE_ATTEMPTS} attempts to take it lost to other writers"),
            )
            .with_operation("acquire run lock")
            .with_hint("several runs of this component start at once: run again")),
        }
    }
}

#[async_trait]
impl RunLock for SinkLock {
    fn describe(&self) -> String {
        format!("sink {}", self.sink.describe())
    }

    async fn acquire(
        &self,
        scope: &LockScope,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<HeldLease> {
        let key = SinkLock::key(scope.component())?;
        self.try_acquire(&key, scope, owner, ttl)
            .await
            .map_err(|e| self.context(e, scope, "acquire run lock", &key))
    }

    async fn renew(&self, held: &HeldLease, ttl: Duration) -> Result<HeldLease> {
        let scope = held.scope();
        let key = SinkLock::key(scope.component())?;
        let record = held.lease().renewed(Utc::now(), ttl);
        let version = ObjectVersion::new(held.token());
        let renewed = async {
            match self
                .write(&key, record, PutCondition::Matches(version))
                .await?
            {
                Some(h) => Ok(h),
                None => {
                    let now_held = self.read(&key).await.ok().flatten().map(|(l, _)| l);
                    Err(lost_error(&scope, held.lease(), now_held.as_ref()))
                }
            }
        };
        renewed
            .await
            .map_err(|e| self.context(e, &scope, "renew run lock", &key))
    }

    async fn release(&self, held: &HeldLease) -> Result<()> {
        let scope = held.scope();
        let key = SinkLock::key(scope.component())?;
        let record = held.lease().released(Utc::now());
        let version = ObjectVersion::new(held.token());
        match self
            .write(&key, record, PutCondition::Matches(version))
            .await
            .map_err(|e| self.context(e, &scope, "release run lock", &key))?
        {
            Some(_) => {
                tracing::info!(component = scope.component(), holder = %held.lease().holder, "run lock released")
            }
            None => {
                tracing::info!(component = scope.component(), holder = %held.lease().holder, "run lock not released: another owner holds it now")
            }
        }
        Ok(())
    }

    async fn current(&self, scope: &LockScope) -> Result<Option<Lease>> {
        let key = SinkLock::key(scope.component())?;
        Ok(self
            .read(&key)
            .await
            .map_err(|e| self.context(e, scope, "read run lock", &key))?
            .map(|(lease, _)| lease))
    }
}
