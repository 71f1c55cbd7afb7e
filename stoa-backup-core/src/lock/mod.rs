//! The run lock: never two runs of one component into one storage target at once, across
//! processes, pods and replicas, and no retention of a component while a run of it writes.
//!
//! A [`RunLock`] hands out [`Lease`]s: a holder ([`LeaseOwner`]: host, process id and a
//! random part by default), when it acquired the lease, when it last renewed it and when it
//! expires. A second owner asking for a lease that is held gets [`ErrorKind::Conflict`]
//! naming the holder, since when, and when the lease expires ([`Lease::held_error`]). A
//! lease whose holder died (killed, OOM, node lost) is not renewed and is taken over by the
//! next owner once it expired; a holder renews its lease while it runs ([`LeaseKeeper`],
//! every third of the TTL) and stops when a renewal finds another holder or cannot be made
//! before the lease expires.
//!
//! Two implementations:
//! - [`SinkLock`]: the lease as `locks/<component>.json` in the sink itself, written with
//!   the sink's conditional puts ([`Sink::put_if`](crate::sink::Sink::put_if)): an atomic
//!   create-if-absent to acquire a free lock, a compare-and-swap against the version read
//!   to renew, take over an expired lease or release one. Local directories, S3 (and S3
//!   compatible stores with conditional writes), Git (a ref per lock, updated as a
//!   compare-and-swap) and the memory sink have them.
//! - the Kubernetes `coordination.k8s.io/v1` Lease of stoa-backup-providers (feature
//!   `kubernetes`): create, then replace with the `resourceVersion` read.
//!
//! Expiry is judged on the clock of whoever reads the lease: hosts sharing a lock need
//! clocks in step (NTP) to well within the TTL.
//!
//! [`PipelineBuilder::lock`](crate::PipelineBuilder::lock) makes a pipeline take the lease
//! of each of its components before it writes anything and give it up once its manifest is
//! written (or the run failed or was cancelled); [`Catalog::apply_retention`](crate::Catalog)
//! leaves alone the runs of a component whose lease is held.

mod keeper;
mod lease;
mod sink_lock;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use keeper::LeaseKeeper;
pub use lease::{lost_error, Lease, LEASE_FORMAT_VERSION};
pub use sink_lock::{SinkLock, LOCKS_PREFIX};

use crate::error::{ErrorKind, Result};
use crate::manifest::RunId;

/// How long a lease lasts unless renewed, when not told otherwise: 2 minutes. A holder
/// renews every third of it; a killed holder keeps others out for at most this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(120);

/// The shortest TTL a lease may have (renewals every third of it must have time to happen).
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

/// What a lease guards: the runs of one component into one storage target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockScope {
    component: String,
    target: String,
}

impl LockScope {
    /// The runs of `component` into `target` (a sink's
    /// [`describe`](crate::sink::Sink::describe), e.g. `s3://backups/prod`).
    pub fn new(component: impl Into<String>, target: impl Into<String>) -> Self {
        LockScope {
            component: component.into(),
            target: target.into(),
        }
    }

    /// The component.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The storage target.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl fmt::Display for LockScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "component {} into {}", self.component, self.target)
    }
}

/// Who asks for a lease: an identity (unique per holder) and, optionally, the run it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOwner {
    identity: String,
    run_id: Option<RunId>,
}

impl LeaseOwner {
    /// This process, once: `<hostname>/<pid>/<random>`. Two values made by two calls are two
    /// owners, even in one process.
    pub fn this_process() -> Self {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".to_string());
        LeaseOwner::named(format!(
            "{host}/{}/{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    /// An identity of the caller's choosing (a pod name, a replica id). Owners with the same
    /// identity are one holder: each may acquire and renew the other's lease.
    pub fn named(identity: impl Into<String>) -> Self {
        LeaseOwner {
            identity: identity.into(),
            run_id: None,
        }
    }

    /// The same owner, making run `run` (recorded in the lease, so that retention knows
    /// which unfinished run is going on).
    pub fn for_run(mut self, run: RunId) -> Self {
        self.run_id = Some(run);
        self
    }

    /// The identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The run, if given.
    pub fn run_id(&self) -> Option<&RunId> {
        self.run_id.as_ref()
    }
}

/// A lease as its holder has it: the record and the token (an object version, a
/// `resourceVersion`) its lock compares against to renew or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    lease: Lease,
    token: String,
}

impl HeldLease {
    /// A lease held with `token` (for [`RunLock`] implementations).
    pub fn new(lease: Lease, token: impl Into<String>) -> Self {
        HeldLease {
            lease,
            token: token.into(),
        }
    }

    /// The record.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The lock's token for this version of the lease.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The scope.
    pub fn scope(&self) -> LockScope {
        self.lease.scope()
    }
}

/// A lock handing out leases per [`LockScope`]: small, like object_store's traits, with
/// every decision in the lease record.
///
/// Contract (the unit tests of [`SinkLock`] and the integration tests run it for every
/// implementation):
/// - `acquire` gives the lease to `owner` when nobody holds it (never held, released, or
///   expired: taken over, [`Lease::transitions`] counting it) or `owner` holds it already;
///   otherwise it fails with [`ErrorKind::Conflict`] from [`Lease::held_error`]. Of
///   concurrent `acquire`s of a free lease exactly one succeeds.
/// - `renew` extends a held lease by `ttl` from now, if it is still the one handed out;
///   if another owner took it over (or it is gone) it fails with [`ErrorKind::Conflict`]
///   from [`lost_error`]. A lease that expired but that nobody took over is renewed.
/// - `release` gives the lease up if it is still the one handed out, and does nothing
///   otherwise (it is someone else's now).
/// - `current` reads the lease of a scope, held or not.
#[async_trait]
pub trait RunLock: Send + Sync + fmt::Debug {
    /// A short, secret-free description (`sink local:/backups`, `Kubernetes Lease in
    /// namespace stoa`).
    fn describe(&self) -> String;

    /// Takes the lease of `scope` for `owner` for `ttl`.
    async fn acquire(
        &self,
        scope: &LockScope,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<HeldLease>;

    /// Extends `held` by `ttl` from now.
    async fn renew(&self, held: &HeldLease, ttl: Duration) -> Result<HeldLease>;

    /// Gives `held` up.
    async fn release(&self, held: &HeldLease) -> Result<()>;

    /// The lease of `scope` as stored, if there is one (held, expired or released).
    async fn current(&self, scope: &LockScope) -> Result<Option<Lease>>;
}

macro_rules! forward_lock {
    ($($ptr:ident),+) => {$(
        /// Forwards every method, so a shared or boxed lock (also `Arc<dyn RunLock>`) is a
        /// lock itself.
        #[async_trait]
        impl<L: RunLock + ?Sized> RunLock for $ptr<L> {
            fn describe(&self) -> String {
                (**self).describe()
            }
            async fn acquire(
                &self,
                scope: &LockScope,
                owner: &LeaseOwner,
                ttl: Duration,
            ) -> Result<HeldLease> {
                (**self).acquire(scope, owner, ttl).await
            }
            async fn renew(&self, held: &HeldLease, ttl: Duration) -> Result<HeldLease> {
                (**self).renew(held, ttl).await
            }
            async fn release(&self, held: &HeldLease) -> Result<()> {
                (**self).release(held).await
            }
            async fn current(&self, scope: &LockScope) -> Result<Option<Lease>> {
                (**self).current(scope).await
            }
        }
    )+};
}

forward_lock!(Arc, Box);

/// Whether an error means "another holder": the lease is held, or was taken over.
pub fn is_lock_conflict(e: &crate::error::Error) -> bool {
    e.kind() == ErrorKind::Conflict
        && matches!(e.operation(), Some("acquire run lock" | "renew run lock"))
}
