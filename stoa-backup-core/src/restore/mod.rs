//! The restore side: the [`Restorer`] trait, the [`RestoreContext`] a restorer works in,
//! and the [`Restore`] driver that plans, then applies, the restore of a run.
//!
//! Restore mirrors backup. A [`Pipeline`](crate::Pipeline) runs sources into a sink; a
//! [`Restore`] reads a run's manifest, gives each component's artifacts to the restorer of
//! that component, and asks it first what it would do ([`Restore::plan`]: preflight, then
//! every restorer's [`Restorer::plan`], in the same counts) and only then to do it
//! ([`Restore::apply`]). A restorer reads its artifacts through
//! [`RestoreContext::open_plain`]: decrypted, decompressed and checked against the recorded
//! digest and size as they are read.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manifest::ArtifactRecord;
use crate::stream::ByteStream;

mod context;
mod driver;
mod point;

pub use context::RestoreContext;
pub use driver::{
    ComponentPlan, ComponentRestored, Restore, RestoreBuilder, RestorePlan, RunRestored,
};
pub use point::{PickedRun, PointQuery, PointSelector, RecoveryPoint};

/// What to do when the target already holds data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExistingDataPolicy {
    /// Refuse to touch existing data (the default).
    #[default]
    Fail,
    /// Leave existing objects alone, restore only missing ones.
    Skip,
    /// Replace existing data.
    Overwrite,
}

/// Options common to every restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// What to do with existing data.
    pub existing: ExistingDataPolicy,
    /// Report what would change without changing anything.
    pub dry_run: bool,
}

/// What a restore did (or would do, in a dry run), counted by object the same way by every
/// restorer, so that the plans of several components add up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Objects created.
    pub created: u64,
    /// Objects updated or overwritten.
    pub updated: u64,
    /// Objects left alone: unchanged, or skipped by the existing-data policy.
    pub skipped: u64,
    /// Objects that exist and differ, which the policy refuses to touch
    /// ([`ExistingDataPolicy::Fail`]): a plan with conflicts fails to apply.
    #[serde(default)]
    pub conflicts: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Notes and warnings for the operator.
    pub notes: Vec<String>,
    /// Provider facts (e.g. the database restored into, row counts).
    pub facts: crate::source::Facts,
}

impl RestoreReport {
    /// An empty report for a restore in `ctx` (dry or not).
    pub fn for_context(ctx: &RestoreContext<'_>) -> Self {
        RestoreReport {
            dry_run: ctx.dry_run(),
            ..RestoreReport::default()
        }
    }

    /// Adds `other`'s counts (created, updated, skipped, conflicts) alone: the totals of a
    /// plan or a recovery.
    pub fn add_counts(&mut self, other: &RestoreReport) {
        self.created += other.created;
        self.updated += other.updated;
        self.skipped += other.skipped;
        self.conflicts += other.conflicts;
    }

    /// Adds `other`'s counts, notes and facts (a later fact of the same name wins).
    pub fn merge(&mut self, other: RestoreReport) {
        self.add_counts(&other);
        self.dry_run |= other.dry_run;
        self.notes.extend(other.notes);
        self.facts.extend(other.facts);
    }
}

/// What a key is, in a [`KeyNeeded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// The age identity of a recipient an artifact is encrypted to.
    AgeIdentity,
    /// The passphrase a passphrase-encrypted artifact needs.
    Passphrase,
    /// Key shares that unseal a restored system (Vault's unseal or recovery key shares).
    UnsealShares,
    /// A key held by a key management service the restored system seals with (Vault's
    /// auto-unseal): it must still exist and be reachable.
    KmsKey,
    /// A key the restored system itself needs to read its own data (e.g. Infisical's
    /// `ENCRYPTION_KEY`).
    ServiceKey,
}

/// A key a restore needs, as its plan reports it: what it is, what it is for, and whether
/// it is at hand. A plan with a key known to be missing fails before any write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyNeeded {
    /// What kind of key.
    pub kind: KeyKind,
    /// Which one: an age recipient, `passphrase`, a KMS key id, a variable name. Never the
    /// key itself.
    pub name: String,
    /// What it is for and where it comes from (e.g. `3 of 5 shares of the cluster that took
    /// the snapshot`).
    pub detail: String,
    /// Whether it is at hand: `Some(true)` held, `Some(false)` missing (the plan fails),
    /// `None` when the library cannot tell (an operator must make sure).
    pub held: Option<bool>,
}

/// Takes a component's artifacts back into the system they came from.
///
/// A restore gets all the artifacts of its component in one run at once (some restores need
/// several: CRDs before the objects that use them, Grafana folders before dashboards), each
/// read through [`RestoreContext::open_plain`]. [`plan`](Self::plan) says what
/// [`restore`](Self::restore) would do, in the same counts, without writing; by default it
/// is `restore` in a dry-run context, so a dry run is the apply path without the writes.
#[async_trait]
pub trait Restorer: Send + Sync + fmt::Debug {
    /// The component this restorer handles.
    fn component(&self) -> &str;

    /// Checks, without writing, that the restore can run: the target reachable, the
    /// credentials and tools in place, the room it needs. [`Restore::plan`] runs it for
    /// every component before any plan. The default checks nothing.
    async fn preflight(&self, ctx: &RestoreContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// The keys, besides the age identities of encrypted artifacts (the driver finds those
    /// itself), that the restore of the context's artifacts needs: Vault's unseal shares or
    /// KMS seal, a service's own encryption key. One with `held: Some(false)` fails the plan
    /// before any write. The default needs none.
    async fn keys_needed(&self, ctx: &RestoreContext<'_>) -> Result<Vec<KeyNeeded>> {
        let _ = ctx;
        Ok(Vec::new())
    }

    /// What [`restore`](Self::restore) would do, without writing.
    async fn plan(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        self.restore(&ctx.as_dry_run()).await
    }

    /// Restores the context's artifacts (in a dry-run context: reports what it would do).
    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport>;
}

macro_rules! forward_restorer {
    ($($ptr:ident),+) => {$(
        /// Forwards every method to the wrapped restorer, so a shared or boxed restorer (also
        /// `Arc<dyn Restorer>`, `Box<dyn Restorer>`) is a restorer itself.
        #[async_trait]
        impl<R: Restorer + ?Sized> Restorer for $ptr<R> {
            fn component(&self) -> &str {
                (**self).component()
            }
            async fn preflight(&self, ctx: &RestoreContext<'_>) -> Result<()> {
                (**self).preflight(ctx).await
            }
            async fn keys_needed(&self, ctx: &RestoreContext<'_>) -> Result<Vec<KeyNeeded>> {
                (**self).keys_needed(ctx).await
            }
            async fn plan(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
                (**self).plan(ctx).await
            }
            async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
                (**self).restore(ctx).await
            }
        }
    )+};
}

forward_restorer!(Arc, Box);

/// The part of a restorer that restores one artifact at a time, for the many restorers whose
/// artifacts are independent (a database dump, a realm export, a secrets export): their
/// [`Restorer::restore`] is [`restore_each`].
#[async_trait]
pub trait PerArtifact: Send + Sync {
    /// Restores one artifact from its plain bytes (read through
    /// [`RestoreContext::open_plain`]: decoded and digest-checked as they are read).
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport>;
}

/// Restores the context's artifacts one after the other with `restorer`, each read through
/// [`RestoreContext::open_plain`], and adds their reports up. Stops at the first failure,
/// whose error names the artifact.
pub async fn restore_each<R: PerArtifact + ?Sized>(
    restorer: &R,
    ctx: &RestoreContext<'_>,
) -> Result<RestoreReport> {
    let mut report = RestoreReport::for_context(ctx);
    for artifact in ctx.artifacts() {
        ctx.check_cancelled()?;
        let plain = ctx.open_plain(artifact).await?;
        let one = restorer
            .restore_one(artifact, plain, ctx.options())
            .await
            .map_err(|e| e.or_artifact(artifact.key.to_string()))?;
        report.merge(one);
    }
    Ok(report)
}

/// Opens an artifact's plaintext as it was before the pipeline's codecs: decrypted with
/// `keyring`, decompressed, and checked against the recorded digest and size as it is read
/// (a mismatch ends the stream with an integrity error). For restorers that need the
/// content of several artifacts before they act (e.g. CRDs before the objects).
pub async fn open_artifact(
    sink: &dyn crate::sink::Sink,
    artifact: &ArtifactRecord,
    keyring: &crate::codec::Keyring,
) -> Result<ByteStream> {
    crate::verify::VerifyContext {
        sink,
        artifact,
        keyring,
    }
    .open_plain()
    .await
    .map_err(|e| {
        e.or_component(artifact.component.clone())
            .or_operation("restore")
            .or_artifact(artifact.key.to_string())
    })
}

#[cfg(test)]
mod tests;
