//! Replication: complete runs copied from one storage target to another, byte for byte, so
//! that a backup outlives the loss of the region (or the bucket) that holds it.
//!
//! A [`Replicator`] copies from a source [`Catalog`] to a target one. [`copy_run`]
//! (also [`Catalog::copy_run`]) copies one run; [`replicate`] brings the target up to date
//! (every complete run of the source it lacks); [`lag`] says how far behind it is.
//!
//! # What a copy does
//!
//! - It copies *stored* bytes: each artifact is read from the source ([`Sink::get`]) and
//!   streamed into the target ([`Sink::put`]) without decoding (no decompression, no
//!   decryption, no key needed); the manifest is copied as it is, so sizes, digests and codec
//!   chains are unchanged and a restore from the copy is a restore of the same run.
//! - While it streams, it hashes the bytes and compares their size and SHA-256 with the
//!   source manifest: a source artifact that is damaged fails the copy with
//!   [`ErrorKind::Integrity`] naming the run, the component and the key, and the stream
//!   ends in that error, so the target's atomic put keeps nothing of it.
//! - Each copied artifact is then checked on the target, cheaply: the size the target
//!   reports, and its SHA-256 — taken as checked when the store checked what it received
//!   ([`PutResult::store_checked`](crate::sink::PutResult): S3), read back and hashed once
//!   otherwise (a directory, Git). Before the manifest, the target's listing must hold every
//!   artifact at its recorded size (what [`Catalog`] checks to call a run complete).
//! - The manifest goes last, as in a backup: until it is written the run is incomplete on
//!   the target, never listed as a backup, and aged (then removed) by the target's
//!   retention. An interrupted copy (a killed process, a dropped future, a lost lease)
//!   never looks complete; the next copy finishes it.
//! - A run already complete on the target is left alone when its manifest there records the
//!   same artifacts with the same sizes and digests and the listing holds each of them at its
//!   size: no write at all, not even a lease. A run with a manifest that records other
//!   digests is refused ([`ErrorKind::Conflict`]): one id, two contents is damage to
//!   inspect, never something to overwrite. A run partly present (artifacts, no manifest) is
//!   completed: an artifact listed at its recorded size is read back and hashed, and kept when
//!   its digest matches; the others are copied again.
//! - While it writes, the copy holds the target's run lock for each component of the run
//!   (by default a [`SinkLock`] in the target, when it has conditional puts; the scope is the
//!   component and the target's [`describe`](Sink::describe), the one a pipeline writing to
//!   that target takes), so a copy never races a backup into the same target, and the
//!   target's retention leaves the half-copied run alone.
//! - Full verification (providers' verifiers, decoding) is on demand:
//!   [`Replicator::verify_with`] runs [`Catalog::verify_run`] on the target after each copy
//!   and records it there.
//!
//! # What is not copied
//!
//! The source's later verification records (`runs/<id>/verifications/`) and its pin
//! (`pin.json`) stay the source's: they are statements about that target (its bytes, its
//! retention). A run whose latest verification on the source failed is not copied at all
//! (a corrupt backup must not become a good-looking one elsewhere); pin runs on each target
//! that must keep them ([`Catalog::set_pinned`]). Heartbeats, reports of failed runs and
//! leases (`locks/`) are not copied either.
//!
//! # Order, filters and retention
//!
//! [`replicate`] copies newest first (the run that matters most after a loss is the newest),
//! except into a target that keeps history of its own ([`SinkCapabilities::versioned`]: Git),
//! where it copies oldest first so that the branch ends at the newest content. Retention runs
//! on each target on its own ([`Replicator::retention`], or [`Catalog::apply_retention`]); a
//! target that keeps fewer runs than the source would be refilled by every pass with the runs
//! it forgot, so give the pass a window ([`ReplicaFilter::since`]) no longer than what the
//! target keeps.
//!
//! # Git targets
//!
//! A Git target takes any run: each artifact becomes a blob (binary dumps too, compressed or
//! encrypted as they were stored: byte for byte, so digests are unchanged), and the
//! manifest's put is the commit. Binary artifacts are not diffable there, and the Git sink
//! reads an object whole into memory: keep large binary dumps on directories or object
//! storage; the replicator logs a warning for each non-text artifact it copies into a target
//! that prefers plain text, and refuses artifacts above the target's
//! [`max_object_size`](crate::sink::SinkCapabilities::max_object_size).
//!
//! [`copy_run`]: Replicator::copy_run
//! [`replicate`]: Replicator::replicate
//! [`lag`]: Replicator::lag
//! [`Sink::get`]: crate::sink::Sink::get
//! [`Sink::put`]: crate::sink::Sink::put
//! [`ErrorKind::Integrity`]: crate::ErrorKind::Integrity
//! [`ErrorKind::Conflict`]: crate::ErrorKind::Conflict
//! [`SinkCapabilities::versioned`]: crate::sink::SinkCapabilities
//! [`SinkCapabilities`]: crate::sink::SinkCapabilities

mod copy;
mod pass;
mod report;
mod verifying;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use self::pass::{ReplicaFilter, ReplicationLag};
pub use self::report::{CopyOutcome, ReplicationFailure, ReplicationReport, RunCopy, SkippedRun};

use crate::catalog::Catalog;
use crate::codec::Keyring;
use crate::lock::{LeaseOwner, RunLock, SinkLock, DEFAULT_LEASE_TTL};
use crate::observer::{NoopObserver, Observer};
use crate::retention::RetentionPolicy;
use crate::sink::Sink;
use crate::verify::Verifier;

/// Copies complete runs from a source catalog to a target one (see the [module docs](self)).
///
/// ```
/// # async fn demo() -> stoa_backup_core::Result<()> {
/// use stoa_backup_core::replicate::{ReplicaFilter, Replicator};
/// use stoa_backup_core::{Catalog, MemorySink};
/// let primary = Catalog::new(MemorySink::new());
/// let secondary = Catalog::new(MemorySink::new());
/// let report = Replicator::new(&primary, &secondary)
///     .named("secondary")
///     .replicate(&ReplicaFilter::all())
///     .await?;
/// assert!(report.is_success());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Replicator {
    source: Catalog,
    target: Catalog,
    name: String,
    lock: LockChoice,
    lock_ttl: Duration,
    owner: Option<LeaseOwner>,
    observer: Arc<dyn Observer>,
    cancel: CancellationToken,
    full: Option<FullVerification>,
    retention: Option<(Arc<dyn RetentionPolicy>, bool)>,
}

/// Which run lock a copy takes on the target.
#[derive(Clone)]
enum LockChoice {
    /// A [`SinkLock`] in the target, when it has conditional puts; none otherwise.
    InTarget,
    /// The lock given.
    Given(Arc<dyn RunLock>),
    /// None (the caller excludes other writers itself).
    None,
}

/// The verifiers and keys of a full verification on the target.
#[derive(Clone)]
struct FullVerification {
    verifiers: Vec<Arc<dyn Verifier>>,
    keyring: Keyring,
}

impl fmt::Debug for Replicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replicator")
            .field("source", &self.source.sink().describe())
            .field("target", &self.target.sink().describe())
            .field("name", &self.name)
            .field("lock_ttl", &self.lock_ttl)
            .field(
                "full_verification",
                &self
                    .full
                    .as_ref()
                    .map(|f| f.verifiers.iter().map(|v| v.name()).collect::<Vec<_>>()),
            )
            .finish_non_exhaustive()
    }
}

impl Replicator {
    /// Copies from `source` to `target`. The target is named by its sink's
    /// [`describe`](Sink::describe) until [`named`](Self::named).
    pub fn new(source: &Catalog, target: &Catalog) -> Self {
        Replicator {
            source: source.clone(),
            target: target.clone(),
            name: target.sink().describe(),
            lock: LockChoice::InTarget,
            lock_ttl: DEFAULT_LEASE_TTL,
            owner: None,
            observer: Arc::new(NoopObserver),
            cancel: CancellationToken::new(),
            full: None,
            retention: None,
        }
    }

    /// The target's name in reports, events and metrics (the configuration's name for the
    /// storage target, say `secondary`): keep it short, fixed and free of secrets.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Takes `lock` (a Kubernetes Lease lock, say) on the target instead of a lease in the
    /// target sink: any [`RunLock`], also an `Arc` of one.
    pub fn lock(mut self, lock: impl RunLock + 'static) -> Self {
        self.lock = LockChoice::Given(Arc::new(lock));
        self
    }

    /// Takes no run lock on the target: only when nothing else writes the same components
    /// into it (the target's retention then does not know a copy is going on).
    pub fn without_lock(mut self) -> Self {
        self.lock = LockChoice::None;
        self
    }

    /// How long a copy's leases last unless renewed (default
    /// [`DEFAULT_LEASE_TTL`]); renewed every third of it while the copy runs.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Who holds the leases (default: a new [`LeaseOwner::this_process`] per copy).
    pub fn lock_owner(mut self, owner: LeaseOwner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Receives [`Event::ReplicationDone`](crate::Event::ReplicationDone) for every run
    /// copied, found present, or failed: any [`Observer`], also an `Arc` of one.
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observer = Arc::new(observer);
        self
    }

    /// Stops the copy when `token` is cancelled: the artifact being written is discarded and
    /// no manifest is written (the run stays incomplete on the target).
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// After each copy, verifies the run on the target with `verifiers` (providers'
    /// verifiers, [`ChecksumVerifier::deep`](crate::ChecksumVerifier::deep)) and records it
    /// there ([`Catalog::verify_run`]). A failed verification demotes the copy, not the
    /// source's run. `keyring` decrypts for verifiers that read plain bytes.
    pub fn verify_with<V: Verifier + 'static>(
        mut self,
        verifiers: impl IntoIterator<Item = V>,
        keyring: Keyring,
    ) -> Self {
        self.full = Some(FullVerification {
            verifiers: verifiers
                .into_iter()
                .map(|v| Arc::new(v) as Arc<dyn Verifier>)
                .collect(),
            keyring,
        });
        self
    }

    /// After a [`replicate`](Self::replicate) pass that copied anything, plans the target's
    /// retention with `policy` (its own, whatever the source keeps) and, with `apply`,
    /// applies it. The plan is in [`ReplicationReport::retention`].
    pub fn retention(mut self, policy: impl RetentionPolicy + 'static, apply: bool) -> Self {
        self.retention = Some((Arc::new(policy), apply));
        self
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source catalog.
    pub fn source(&self) -> &Catalog {
        &self.source
    }

    /// The target catalog.
    pub fn target(&self) -> &Catalog {
        &self.target
    }

    /// The lock a copy takes on the target, if any.
    fn target_lock(&self) -> Option<Arc<dyn RunLock>> {
        match &self.lock {
            LockChoice::Given(l) => Some(l.clone()),
            LockChoice::None => None,
            LockChoice::InTarget if self.target.sink().capabilities().conditional_put => {
                Some(Arc::new(SinkLock::shared(self.target.sink().clone())))
            }
            LockChoice::InTarget => None,
        }
    }

    fn target_sink(&self) -> &Arc<dyn Sink> {
        self.target.sink()
    }

    fn source_sink(&self) -> &Arc<dyn Sink> {
        self.source.sink()
    }
}
