//! The restorer conformance suite: every [`Restorer`] runs it, through the
//! [`Restore`](stoa_backup_core::Restore) driver, to prove it keeps the contract of the
//! trait and of [`ExistingDataPolicy`], as every sink runs the
//! [sink suite](crate::conformance).
//!
//! A per-restorer harness ([`RestorerHarness`]) makes a real backup of a populated source,
//! gives restorers that write to a target system, and says what that target holds
//! ([`TargetState`]) and how many writes it took. [`run_restorer_conformance`] then checks:
//!
//! 1. into an empty target, the plan writes nothing and counts what the apply that follows
//!    does, and the apply makes the target hold what the source held;
//! 2. over differing data: `Fail` is refused (a conflict in the plan or a `Conflict` error)
//!    without a write, `Skip` replaces nothing, `Overwrite` brings the backup back;
//! 3. a stored artifact with one byte flipped (same size) fails with an `Integrity` error
//!    before the target takes a write, whether it was damaged before the plan or between
//!    the plan and the apply;
//! 4. a restore cancelled as it starts, or after the first chunk of any of its reads, fails
//!    with a `Cancelled` error and does not leave the target looking complete; a rerun
//!    completes it.
//!
//! Where a restorer by design cannot do one of these (a raft snapshot replaces a whole
//! cluster and has no per-object `Skip`), its harness says so in its [`Capabilities`] and
//! the suite checks the documented behaviour instead, never nothing. Checks panic with a
//! message naming the harness and the broken rule; each check says on stderr that it runs.
//!
//! ```no_run
//! # async fn demo(harness: impl stoa_backup_test_support::restorer_conformance::RestorerHarness) {
//! stoa_backup_test_support::restorer_conformance::run_restorer_conformance(&harness).await;
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use stoa_backup_core::manifest::{ArtifactRecord, Manifest};
use stoa_backup_core::restore::{ExistingDataPolicy, Restorer};
use stoa_backup_core::sink::Sink;
use stoa_backup_core::Keyring;

use checks::Cx;
use probe::ProbeSink;

mod checks;
mod probe;

/// What a target holds, as the suite compares it: one entry per object the backup covers
/// (a table, a secret, a realm's client, a file), its content canonicalised by the harness
/// (server-made ids, timestamps and what a restore cannot bring back left out), so that a
/// restored target equals the source it was backed up from.
pub type TargetState = BTreeMap<String, String>;

/// A run the harness backed up: where it is stored and how to open it.
#[derive(Clone)]
pub struct HarnessBackup {
    /// The sink holding the run.
    pub sink: Arc<dyn Sink>,
    /// The run's manifest.
    pub manifest: Manifest,
    /// The keys of its encrypted artifacts (empty when none is).
    pub keyring: Keyring,
}

impl fmt::Debug for HarnessBackup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HarnessBackup")
            .field("sink", &self.sink.describe())
            .field("run", &self.manifest.run_id)
            .finish_non_exhaustive()
    }
}

/// How a restorer treats a target that already holds data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingData {
    /// Object by object: one the target holds differently is a conflict under `Fail`, kept
    /// under `Skip`, replaced under `Overwrite`; one it lacks is created under `Skip` and
    /// `Overwrite`.
    PerObject,
    /// The target is one object that a restore replaces whole (a raft snapshot, a kc.sh
    /// realm import): a conflict under `Fail`, left alone (counted skipped) under `Skip`,
    /// replaced under `Overwrite`.
    Whole,
    /// The restorer restores only into an absent target: over existing data every policy is
    /// refused with a `Conflict` error before any write (PostgreSQL into a new
    /// database without swap).
    AbsentOnly,
    /// The restorer replaces existing data whole under every policy and keeps the previous
    /// data aside (PostgreSQL's swap, which keeps `<name>_old_<run>`): the objects of the
    /// backup come back, the previous data shows up as objects of its own.
    ReplacedKeepingPrevious,
}

/// When a restorer checks what it reads against the recorded digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestCheck {
    /// Every artifact is read to its end, and so checked, before the target takes its
    /// first write.
    BeforeFirstWrite,
    /// Each artifact is read to its end before the target takes a write for it; artifacts
    /// restored before it stay. The plan reads them all, so a damaged artifact found there
    /// is refused before any write; one damaged between the plan and the apply leaves the
    /// target partly restored, which a rerun completes.
    PerArtifact,
    /// The data is checked while it is restored into the target, which is undone when the
    /// check fails (PostgreSQL into a new database): the target ends as it was, though it
    /// took writes meanwhile.
    WhileRestoringUndone,
}

/// What a cancelled restore leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The target as it was.
    Atomic,
    /// What was restored before the cancellation stays; the target is not complete, and a
    /// rerun under `Overwrite` completes it.
    Partial,
}

/// What a harness declares about its restorer, read by the suite to pick the checks that
/// apply (each exception is checked as documented, never skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The policy a restore into the empty target is made with: `Fail` for most restorers,
    /// `Overwrite` for those whose target always holds a state a restore replaces (a Vault
    /// cluster).
    pub empty_target_policy: ExistingDataPolicy,
    /// How existing data is treated.
    pub existing: ExistingData,
    /// Whether the plan sees the target's data. `false` (kc.sh: nothing can be asked of the
    /// pod without importing): the plan counts as into an empty target, and conflicts are
    /// found by the apply, which refuses them under `Fail` without a write.
    pub plan_sees_target: bool,
    /// When digests are checked.
    pub digest_check: DigestCheck,
    /// What a cancelled restore leaves.
    pub cancel: CancelOutcome,
}

impl Default for Capabilities {
    /// The full contract: `Fail` into the empty target, per object, a plan that sees the
    /// target, every artifact checked before the first write, atomic cancellation.
    fn default() -> Self {
        Capabilities {
            empty_target_policy: ExistingDataPolicy::Fail,
            existing: ExistingData::PerObject,
            plan_sees_target: true,
            digest_check: DigestCheck::BeforeFirstWrite,
            cancel: CancelOutcome::Atomic,
        }
    }
}

/// What the suite needs of one restorer and its target system.
#[async_trait]
pub trait RestorerHarness: Send + Sync {
    /// A short name for messages (`postgres`, `vault-kv`).
    fn name(&self) -> String;

    /// What the restorer does where the contract allows a choice.
    fn capabilities(&self) -> Capabilities;

    /// Backs up the populated source with its real source and the pipeline. Called once.
    async fn backup(&self) -> HarnessBackup;

    /// What the populated source holds, as a restore must bring it back.
    async fn source_state(&self) -> TargetState;

    /// Replaces the target with an empty one (a fresh fake, a new database name, an empty
    /// directory); [`restorer`](Self::restorer) and the observations then refer to it.
    async fn fresh_target(&self);

    /// A restorer of the backed-up component writing to the current target.
    async fn restorer(&self) -> Arc<dyn Restorer>;

    /// What the current target holds.
    async fn target_state(&self) -> TargetState;

    /// Makes the current target hold data that differs from the backup: objects of the
    /// backup with other content, and (unless the target is one object) without some of
    /// its objects, so that `Fail` conflicts, `Skip` keeps and creates, `Overwrite`
    /// replaces.
    async fn populate_target_differently(&self);

    /// A reading of the writes the current target took: a count of its write requests, or
    /// where nothing counts them, a fingerprint that changes with every write. The suite
    /// only compares two readings: equal means no write in between.
    async fn writes(&self) -> u64;
}

/// Runs the whole suite against `harness`; panics naming the first broken rule.
pub async fn run_restorer_conformance<H: RestorerHarness + ?Sized>(harness: &H) {
    let backup = harness.backup().await;
    let restorer = harness.restorer().await;
    let component = restorer.component().to_string();
    let artifacts: Vec<ArtifactRecord> = backup
        .manifest
        .artifacts
        .iter()
        .filter(|a| a.component == component)
        .cloned()
        .collect();
    let name = harness.name();
    assert!(
        !artifacts.is_empty(),
        "restorer conformance ({name}): the backup holds no '{component}' artifact"
    );
    let source = harness.source_state().await;
    assert!(
        !source.is_empty(),
        "restorer conformance ({name}): the source state is empty: a harness must back up data"
    );
    let cx = Cx {
        h: harness,
        caps: harness.capabilities(),
        probe: Arc::new(ProbeSink::new(backup.sink.clone())),
        backup,
        name,
        component,
        artifacts,
        source,
    };
    let reads = cx.restore_into_empty_target().await;
    cx.over_existing_data().await;
    cx.digest_mismatch(&reads).await;
    cx.cancellation(&reads).await;
}

/// The entries of two states that differ, for messages (values cut short: they may be
/// long, though never secret-bearing in the harnesses' canonical forms).
pub fn state_diff(want: &TargetState, got: &TargetState) -> String {
    let cut = |s: &str| {
        if s.len() > 300 {
            let mut end = 300;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &s[..end])
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    for (k, w) in want {
        match got.get(k) {
            None => out.push_str(&format!("  missing  {k}: {}\n", cut(w))),
            Some(g) if g != w => out.push_str(&format!(
                "  differs  {k}:\n    want {}\n    got  {}\n",
                cut(w),
                cut(g)
            )),
            _ => {}
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            out.push_str(&format!("  extra    {k}: {}\n", cut(g)));
        }
    }
    out
}
