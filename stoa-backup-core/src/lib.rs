//! Core of stoa-backup: traits, the streaming pipeline, codecs, manifest, catalog and
//! retention. Providers and storage backends live in their own crates and plug in through
//! the [`Source`], [`Restorer`], [`Sink`] and [`Verifier`] traits.
//!
//! Cargo features: `age` (on by default) adds age encryption ([`AgeEncryption`],
//! identities and passphrases in the [`Keyring`]).
//! `scheduler` adds [`schedule`]: cron, interval and on-change jobs run by a
//! [`Scheduler`](schedule::Scheduler).
//! `metrics` adds [`metrics`]: Prometheus metrics fed by observer events, in a registry the
//! caller owns ([`MetricsObserver`](metrics::MetricsObserver)).
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod catalog;
pub mod change;
pub mod codec;
pub mod error;
pub mod key;
pub mod layers;
pub mod lock;
pub mod manifest;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod observer;
pub mod pipeline;
pub mod prelude;
pub mod process;
pub mod recovery;
pub mod replicate;
pub mod restore;
pub mod retention;
pub mod retry;
pub mod rpo;
#[cfg(feature = "scheduler")]
#[cfg_attr(docsrs, doc(cfg(feature = "scheduler")))]
pub mod schedule;
pub mod sink;
pub mod source;
pub mod sources;
pub mod stream;
pub mod verify;

pub use change::{ChangeDigest, ChangeProbe, ChangeToken, FnProbe};
#[cfg(feature = "age")]
#[cfg_attr(docsrs, doc(cfg(feature = "age")))]
pub use codec::AgeEncryption;
pub use codec::{Keyring, ZstdCodec};
pub use error::{Error, ErrorKind, Result};
pub use key::ObjectKey;
pub use lock::{HeldLease, Lease, LeaseKeeper, LeaseOwner, LockScope, RunLock, SinkLock};
pub use manifest::{
    ArtifactRecord, ArtifactTimings, Manifest, RunDamage, RunId, RunStatus, RunSummary,
    VerificationRecord, VerifyMethod,
};
pub use observer::{Event, NoopObserver, Observer, ObserverSet, TracingObserver};
pub use recovery::{
    Check, CheckContext, CheckOutcome, CheckStatus, Checklist, CustomStep, Recovery, RecoveryPlan,
    RecoveryReport, Step, Verdict,
};
pub use replicate::{
    CopyOutcome, ReplicaFilter, ReplicationLag, ReplicationReport, Replicator, RunCopy,
};
pub use restore::{
    ComponentPlan, ComponentRestored, ExistingDataPolicy, KeyKind, KeyNeeded, PickedRun,
    PointQuery, PointSelector, RecoveryPoint, Restore, RestoreBuilder, RestoreContext,
    RestoreOptions, RestorePlan, RestoreReport, Restorer, RunRestored,
};
pub use retention::{
    AnyOf, ComponentRules, KeepCount, KeepReason, KeepRules, RetentionAction, RetentionPlan,
    RetentionPolicy, RunDecision,
};
pub use retry::{Jitter, RetryPolicy};
pub use rpo::{RpoState, RpoStatus, VerifiedBackup};
pub use sink::{
    CleanupFailure, CleanupReport, MemorySink, ObjectMeta, ObjectVersion, PutCondition, PutOutcome,
    Sink, SinkCapabilities, SinkExt, VersionedObject,
};
pub use source::{ArtifactPlan, Export, ExportContext, Facts, PreflightReport, Source};
pub use stream::ByteStream;

/// Version of this library, recorded in every manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub use catalog::{format_runs_table, Catalog, RunFilter, RunVerification};
pub use pipeline::{Pipeline, PipelineBuilder, ReplicaResult, RunReport};
pub use process::CommandSpec;
pub use restore::{open_artifact, restore_each, PerArtifact};
pub use sources::{CommandSource, FileRestorer, FileSource};
pub use verify::{ChecksumVerifier, InlineContext, StoredRecord, Verifier, VerifyContext};
