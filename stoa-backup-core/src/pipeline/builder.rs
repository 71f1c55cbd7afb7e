//! [`PipelineBuilder`]: every option of a pipeline, checked by [`PipelineBuilder::build`]
//! before anything connects.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Pipeline;
#[cfg(feature = "age")]
use crate::codec::{AgeCodec, AgeEncryption};
use crate::codec::{Codec, Keyring, ZstdCodec};
use crate::error::{Error, Result};
use crate::key::ObjectKey;
use crate::lock::{LeaseOwner, RunLock, SinkLock, DEFAULT_LEASE_TTL, MIN_LEASE_TTL};
use crate::manifest::VERIFICATIONS_DIR;
use crate::observer::{NoopObserver, Observer};
use crate::retention::RetentionPolicy;
use crate::retry::RetryPolicy;
use crate::sink::Sink;
use crate::source::Source;
use crate::verify::Verifier;

/// How often a run in progress refreshes its heartbeat unless told otherwise: 5 minutes,
/// far below any sensible grace period for incomplete runs, and one small write per period.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Builds a [`Pipeline`].
pub struct PipelineBuilder {
    sources: Vec<Arc<dyn Source>>,
    sink: Option<Arc<dyn Sink>>,
    compression: Option<ZstdCodec>,
    #[cfg(feature = "age")]
    encryption: Option<AgeEncryption>,
    verifiers: Vec<Arc<dyn Verifier>>,
    retention: Option<Arc<dyn RetentionPolicy>>,
    apply_retention: bool,
    observer: Option<Arc<dyn Observer>>,
    concurrency: Option<usize>,
    cancel: Option<CancellationToken>,
    labels: BTreeMap<String, String>,
    keyring: Option<Keyring>,
    allow_unencrypted_secrets: bool,
    retry: RetryPolicy,
    skip_preflight: bool,
    heartbeat_interval: Option<Duration>,
    inline_verification: bool,
    lock: Option<LockChoice>,
    lock_ttl: Duration,
    lock_owner: Option<LeaseOwner>,
    replicas: Vec<(String, Arc<dyn Sink>)>,
}

/// The run lock a builder was given.
enum LockChoice {
    Given(Arc<dyn RunLock>),
    InSink,
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        PipelineBuilder {
            sources: Vec::new(),
            sink: None,
            compression: None,
            #[cfg(feature = "age")]
            encryption: None,
            verifiers: Vec::new(),
            retention: None,
            apply_retention: false,
            observer: None,
            concurrency: None,
            cancel: None,
            labels: BTreeMap::new(),
            keyring: None,
            allow_unencrypted_secrets: false,
            retry: RetryPolicy::default(),
            skip_preflight: false,
            heartbeat_interval: Some(DEFAULT_HEARTBEAT_INTERVAL),
            inline_verification: true,
            lock: None,
            lock_ttl: DEFAULT_LEASE_TTL,
            lock_owner: None,
            replicas: Vec::new(),
        }
    }
}

impl fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("PipelineBuilder");
        f.field("sources", &self.sources)
            .field("sink", &self.sink)
            .field("compression", &self.compression);
        #[cfg(feature = "age")]
        f.field("encryption", &self.encryption);
        f.field("heartbeat_interval", &self.heartbeat_interval)
            .field(
                "lock",
                &self.lock.as_ref().map(|l| match l {
                    LockChoice::Given(l) => l.describe(),
                    LockChoice::InSink => "in the sink".to_string(),
                }),
            )
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// Adds a source: any [`Source`], also an `Arc` or `Box` of one (or of `dyn Source`).
    pub fn source(mut self, source: impl Source + 'static) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// Sets the sink (required): any [`Sink`], also an `Arc` or `Box` of one. Pass a clone of
    /// an `Arc` to keep a handle (e.g. for a [`crate::Catalog`] over the same sink).
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Compresses artifacts with zstd.
    pub fn compression(mut self, zstd: ZstdCodec) -> Self {
        self.compression = Some(zstd);
        self
    }

    /// Encrypts artifacts with age.
    #[cfg(feature = "age")]
    #[cfg_attr(docsrs, doc(cfg(feature = "age")))]
    pub fn encryption(mut self, encryption: AgeEncryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// Adds a verifier run on every stored artifact it applies to, before the manifest is
    /// written. A failed verification fails the run. Any [`Verifier`], also an `Arc` or `Box`
    /// of one. A verifier that checks inline ([`Verifier::inline`]) reads a copy of the plain
    /// bytes while they are stored (see [`inline_verification`](Self::inline_verification));
    /// one that reads the stored plain bytes back ([`Verifier::needs_plain_bytes`]) of
    /// artifacts encrypted to recipients needs a [`keyring`](Self::keyring).
    pub fn verifier(mut self, verifier: impl Verifier + 'static) -> Self {
        self.verifiers.push(Arc::new(verifier));
        self
    }

    /// Plans retention after a complete run (the plan is in the report). Any
    /// [`RetentionPolicy`], also an `Arc` or `Box` of one.
    pub fn retention(mut self, policy: impl RetentionPolicy + 'static) -> Self {
        self.retention = Some(Arc::new(policy));
        self
    }

    /// Also applies the retention plan (deletes forgotten runs). Off by default: a plan is
    /// only reported.
    pub fn apply_retention(mut self, apply: bool) -> Self {
        self.apply_retention = apply;
        self
    }

    /// Receives progress events: any [`Observer`], also an `Arc` of one the caller keeps to
    /// read what it saw.
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// How many artifacts are exported at once (default 2).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Cancels the run when this token is cancelled: children are killed, partial writes
    /// discarded, no manifest written. A cancellation that comes once every artifact is
    /// stored and verified no longer undoes the run: its manifest is written, and only
    /// retention is skipped (see [`RunReport::retention_error`](super::RunReport)).
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Adds a label recorded in the manifest (cluster, environment, schedule…).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Keys verifiers use to read plain bytes of encrypted artifacts. With passphrase
    /// encryption the passphrase is used automatically.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Stores artifacts that hold secrets without encryption. Off by default; only for
    /// callers that encrypt elsewhere (e.g. an encrypted volume) and say so.
    pub fn store_secrets_unencrypted(mut self, yes: bool) -> Self {
        self.allow_unencrypted_secrets = yes;
        self
    }

    /// How many times an artifact is attempted when a retryable error occurs (default 3).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.retry.attempts = attempts;
        self
    }

    /// How an artifact is retried when a retryable error occurs (the whole export runs
    /// again): attempts, back-off and jitter. Default: [`RetryPolicy::default`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Skips sources' preflight checks (they run by default).
    pub fn skip_preflight(mut self, skip: bool) -> Self {
        self.skip_preflight = skip;
        self
    }

    /// How often a run in progress writes `runs/<id>/heartbeat.json` (a
    /// [`Heartbeat`](super::Heartbeat)), so that retention elsewhere sees the run is alive
    /// however long one artifact takes; `None` disables it. Default
    /// [`DEFAULT_HEARTBEAT_INTERVAL`]. The first heartbeat is written one interval after the
    /// start (a shorter run writes none), and it is deleted once the run's manifest or report
    /// is written. Sinks whose small writes are expensive
    /// ([`SinkCapabilities::cheap_small_writes`](crate::sink::SinkCapabilities) `false`, e.g.
    /// Git, where each is a commit) get none. Keep retention's grace period for incomplete runs
    /// well above this interval.
    pub fn heartbeat_interval(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Whether verifiers that can check inline do so (default on): they read a copy of the
    /// plain bytes while the artifact is stored — no second read, no decompression or
    /// decryption of the stored artifact, no key needed — and the pipeline then checks that
    /// the store holds exactly the bytes it was sent: it reads them back and compares their
    /// SHA-256 with the one computed while writing, unless the store checked them on write
    /// ([`PutResult::store_checked`](crate::sink::PutResult)). The manifest records how each
    /// check ran ([`VerifyMethod`](crate::manifest::VerifyMethod)).
    ///
    /// Off, every verifier reads the stored artifact back after it is stored and decodes it:
    /// slower, and it also catches a codec that wrote bytes that do not decode to what it
    /// was given.
    pub fn inline_verification(mut self, on: bool) -> Self {
        self.inline_verification = on;
        self
    }

    /// Takes a run lock before each run, so that no two runs of one component into this
    /// pipeline's sink write at once, whatever process, pod or replica makes them: any
    /// [`RunLock`] (a Kubernetes Lease, a [`SinkLock`] on another sink), also an `Arc` of
    /// one. See [`lock_in_sink`](Self::lock_in_sink) for the lease in the sink itself.
    ///
    /// Each run takes the lease of each of its components (scope: the component and the
    /// sink's [`describe`](Sink::describe)) before it writes anything; when one is held,
    /// [`Pipeline::run`] fails with [`ErrorKind::Conflict`](crate::ErrorKind) naming the
    /// holder, since when and when the lease expires, and nothing of the run is written.
    /// While the run goes on it renews its leases every third of [`lock_ttl`](Self::lock_ttl);
    /// when a renewal finds another holder, or cannot be made before the lease expires, the
    /// run stops (no manifest) with that error. The leases are renewed once more right
    /// before the manifest and released right after it (before retention), or when the run
    /// fails or is cancelled. A run whose future is dropped, or whose process dies, leaves
    /// its leases to expire: the next run takes them over after the TTL.
    pub fn lock(mut self, lock: impl RunLock + 'static) -> Self {
        self.lock = Some(LockChoice::Given(Arc::new(lock)));
        self
    }

    /// Takes the run lock as a lease in the pipeline's own sink (`locks/<component>.json`, a
    /// [`SinkLock`]): the sink needs conditional puts
    /// ([`SinkCapabilities::conditional_put`](crate::sink::SinkCapabilities): local
    /// directories, S3, Git), [`build`](Self::build) says so otherwise. See
    /// [`lock`](Self::lock) for what a run does with it.
    pub fn lock_in_sink(mut self) -> Self {
        self.lock = Some(LockChoice::InSink);
        self
    }

    /// How long a run's lease lasts unless renewed (default
    /// [`DEFAULT_LEASE_TTL`](crate::lock::DEFAULT_LEASE_TTL), 2 minutes; at least 1 s): how
    /// long a killed run keeps others out. Renewed every third of it.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Who holds the leases (default: a new [`LeaseOwner::this_process`] per run, so two
    /// runs in one process exclude each other too). Each run records its id in the lease.
    pub fn lock_owner(mut self, owner: LeaseOwner) -> Self {
        self.lock_owner = Some(owner);
        self
    }

    /// Copies every complete and verified run to `sink` as well, once its manifest is
    /// written: stored bytes unchanged, checked on the target, manifest last, under the
    /// target's run lock ([`Replicator`](crate::replicate::Replicator)). Call it once per
    /// target. The target is named by its [`describe`](Sink::describe); see
    /// [`replicate_to_named`](Self::replicate_to_named). A failed copy does not make the run
    /// fail: it is in [`RunReport::replication`](super::RunReport), sent to the observer
    /// ([`Event::ReplicationDone`](crate::Event)) and makes
    /// [`RunReport::into_result`](super::RunReport::into_result) an error saying the backup
    /// is stored. Needs at least one verifier (only verified runs are copied).
    pub fn replicate_to(self, sink: impl Sink + 'static) -> Self {
        let sink: Arc<dyn Sink> = Arc::new(sink);
        let name = sink.describe();
        self.replicate_to_named(name, sink)
    }

    /// [`replicate_to`](Self::replicate_to) with the target's name for reports, events and
    /// metrics (short, fixed, secret-free: the configuration's name of the storage target).
    pub fn replicate_to_named(
        mut self,
        name: impl Into<String>,
        sink: impl Sink + 'static,
    ) -> Self {
        self.replicas.push((name.into(), Arc::new(sink)));
        self
    }

    /// Validates the configuration and builds the pipeline.
    pub fn build(self) -> Result<Pipeline> {
        let sink = self.sink.ok_or_else(|| {
            Error::config("no sink configured").with_hint("call .sink(...) on the pipeline builder")
        })?;
        if self.sources.is_empty() {
            return Err(Error::config("no source configured")
                .with_hint("add at least one source with .source(...)"));
        }
        check_components(&self.sources)?;
        let concurrency = self.concurrency.unwrap_or(2);
        if concurrency == 0 {
            return Err(Error::config("concurrency must be at least 1"));
        }
        let lock: Option<Arc<dyn RunLock>> = match self.lock {
            None => None,
            Some(LockChoice::Given(l)) => Some(l),
            Some(LockChoice::InSink) => {
                if !sink.capabilities().conditional_put {
                    return Err(Error::config(format!(
                        "the sink {} has no conditional puts, so it cannot hold a run lock",
                        sink.describe()
                    ))
                    .with_operation("build pipeline")
                    .with_hint(
                        "use a local directory, S3 or Git sink, or pass another lock with .lock(...) (a Kubernetes Lease)",
                    ));
                }
                Some(Arc::new(SinkLock::shared(sink.clone())))
            }
        };
        if lock.is_some() && self.lock_ttl < MIN_LEASE_TTL {
            return Err(Error::config(format!(
                "the lock TTL must be at least {} s",
                MIN_LEASE_TTL.as_secs()
            ))
            .with_operation("build pipeline")
            .with_hint("pass a longer TTL to .lock_ttl(...)"));
        }
        if !self.replicas.is_empty() && self.verifiers.is_empty() {
            return Err(Error::config(
                "the pipeline replicates its runs but has no verifier: only verified runs are copied",
            )
            .with_operation("build pipeline")
            .with_hint("add .verifier(ChecksumVerifier::new()) (or a provider's verifier)"));
        }
        let mut names = BTreeSet::new();
        for (name, _) in &self.replicas {
            if !names.insert(name.as_str()) {
                return Err(Error::config(format!("the replica {name} is given twice"))
                    .with_operation("build pipeline")
                    .with_hint("give each replica target once, each under its own name"));
            }
        }
        if self.heartbeat_interval == Some(Duration::ZERO) {
            return Err(Error::config("the heartbeat interval must not be zero")
                .with_hint("pass a positive interval, or None to disable the heartbeat"));
        }
        #[cfg_attr(not(feature = "age"), allow(unused_mut))]
        let mut keyring = self.keyring.unwrap_or_default();
        #[cfg(feature = "age")]
        if keyring.is_empty() {
            if let Some(enc) = &self.encryption {
                keyring = Keyring::for_encryption(enc);
            }
        }
        let mut codecs: Vec<Arc<dyn Codec>> = Vec::new();
        if let Some(z) = self.compression {
            codecs.push(Arc::new(z));
        }
        #[cfg(feature = "age")]
        let encrypted = self.encryption.is_some();
        #[cfg(not(feature = "age"))]
        let encrypted = false;
        if encrypted && keyring.is_empty() {
            check_verifiers_need_no_key(&self.verifiers, self.inline_verification)?;
        }
        #[cfg(feature = "age")]
        if let Some(e) = self.encryption {
            codecs.push(Arc::new(AgeCodec::new(e)));
        }
        Ok(Pipeline {
            sources: self.sources,
            sink,
            codecs,
            encrypted,
            verifiers: self.verifiers,
            retention: self.retention,
            apply_retention: self.apply_retention,
            observer: self.observer.unwrap_or_else(|| Arc::new(NoopObserver)),
            concurrency,
            cancel: self.cancel.unwrap_or_default(),
            labels: self.labels,
            keyring,
            allow_unencrypted_secrets: self.allow_unencrypted_secrets,
            retry: self.retry,
            preflight: !self.skip_preflight,
            heartbeat_interval: self.heartbeat_interval,
            inline_verification: self.inline_verification,
            lock,
            lock_ttl: self.lock_ttl,
            lock_owner: self.lock_owner,
            replicas: self.replicas,
        })
    }
}

/// Component names must be distinct, single key segments, and not names a run keeps for
/// its own files (`manifest.json`, `report.json`, `heartbeat.json`, `pin.json`,
/// `verifications/`): an artifact there would shadow them, or turn the manifest's path into
/// a directory on a filesystem.
fn check_components(sources: &[Arc<dyn Source>]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for s in sources {
        let c = s.component();
        ObjectKey::new(c).map_err(|e| e.with_component(c.to_string()))?;
        if c.contains('/') {
            return Err(Error::config(format!("component name '{c}' contains '/'")));
        }
        if c == VERIFICATIONS_DIR || c.ends_with(".json") {
            return Err(Error::config(format!(
                "component name '{c}' is reserved: a run keeps its own records under it"
            ))
            .with_component(c.to_string())
            .with_hint(format!(
                "give the source another component name (not '{VERIFICATIONS_DIR}', not ending in .json)"
            )));
        }
        if !seen.insert(c.to_string()) {
            return Err(
                Error::config(format!("two sources share the component name '{c}'"))
                    .with_hint("give each source a distinct component name"),
            );
        }
    }
    Ok(())
}

/// With encryption and no key to decrypt, a verifier reading plain bytes back could only
/// fail on every artifact, at the end of the run: say so now. Inline checks read the plain
/// bytes before encryption and need no key.
fn check_verifiers_need_no_key(verifiers: &[Arc<dyn Verifier>], inline: bool) -> Result<()> {
    let need: Vec<&str> = verifiers
        .iter()
        .filter(|v| v.needs_plain_bytes() && !(inline && v.inline()))
        .map(|v| v.name())
        .collect();
    if need.is_empty() {
        return Ok(());
    }
    Err(Error::config(format!(
        "the verifiers {} read decrypted bytes, but the pipeline encrypts to recipients and holds no key to decrypt them",
        need.join(", ")
    ))
    .with_operation("build pipeline")
    .with_hint(
        "add .keyring(Keyring::new().with_identity(...)) with the identity of one of the recipients, \
         or check stored bytes only (ChecksumVerifier::new())",
    ))
}
