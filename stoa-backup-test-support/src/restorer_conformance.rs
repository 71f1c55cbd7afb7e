//! The restorer conformance suite: every [`Restorer`] runs it, through the [`Restore`]
//! driver, to prove it keeps the contract of the trait and of [`ExistingDataPolicy`], as
//! every sink runs the [sink suite](crate::conformance).
//!
//! A per-restorer harness ([`RestorerHarness`]) makes a real backup of a populated source,
//! gives restorers that write to a target system, and says what that target holds
//! ([`TargetState`]) and how many writes it took. [`run_restorer_conformance`] then checks:
//!
//! 1. into an empty target, the plan writes nothing and counts what the apply that follows
//!    does, and the apply makes the target hold what the source held;
//! 2. over differing data: `Fail` is refused (a conflict in the plan or a `Conflict` error)
//!    without a write, `Skip` replaces nothing, `Overwrite` brings the backup back;
//! 3. a stored artifact with one byte flipped (same size) fails with
//!    [`ErrorKind::Integrity`] before the target takes a write, whether it was damaged
//!    before the plan or between the plan and the apply;
//! 4. a restore cancelled as it starts, or after the first chunk of any of its reads, fails
//!    with [`ErrorKind::Cancelled`] and does not leave the target looking complete; a
//!    rerun completes it.
//!
//! Where a restorer by design cannot do one of these (a raft snapshot replaces a whole
//! cluster and has no per-object `Skip`), its harness says so in its [`Capabilities`] and
//! the suite checks the documented behaviour instead, never nothing. Checks panic with a
//! message naming the harness and the broken rule.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::manifest::{ArtifactRecord, Manifest};
use stoa_backup_core::observer::{Event, Observer};
use stoa_backup_core::restore::{
    ExistingDataPolicy, Restore, RestorePlan, RestoreReport, Restorer, RunRestored,
};
use stoa_backup_core::sink::{ObjectMeta, PutResult, Sink, SinkCapabilities};
use stoa_backup_core::stream::ByteStream;
use stoa_backup_core::Keyring;
use tokio_util::sync::CancellationToken;

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
    /// refused with [`ErrorKind::Conflict`] before any write (PostgreSQL into a new
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
    let reads = cx.into_empty_target().await;
    cx.over_existing_data().await;
    cx.digest_mismatch(&reads).await;
    cx.cancellation(&reads).await;
}

struct Cx<'a, H: ?Sized> {
    h: &'a H,
    caps: Capabilities,
    probe: Arc<ProbeSink>,
    backup: HarnessBackup,
    name: String,
    component: String,
    artifacts: Vec<ArtifactRecord>,
    source: TargetState,
}

/// The counts a plan and a restore must agree on.
fn counts(r: &RestoreReport) -> (u64, u64, u64, u64) {
    (r.created, r.updated, r.skipped, r.conflicts)
}

/// What the artifacts read during the clean restore were, in order.
struct Reads {
    /// Keys read by the plan or the apply.
    all: Vec<ObjectKey>,
    /// How many reads the apply made.
    apply: usize,
}

impl<H: RestorerHarness + ?Sized> Cx<'_, H> {
    // ----- helpers -----

    async fn restore(&self, policy: ExistingDataPolicy, cancel: Option<Cancel>) -> Restore {
        let mut b = Restore::builder()
            .sink(self.probe.clone())
            .keyring(self.backup.keyring.clone())
            .restorer(self.h.restorer().await)
            .existing(policy);
        if let Some(c) = cancel {
            b = b.cancel(c.token.clone());
            if c.on_start {
                b = b.observer(CancelOnStart(c.token));
            }
        }
        b.build()
            .unwrap_or_else(|e| self.fail("building the restore failed", &e))
    }

    async fn plan(&self, restore: &Restore) -> Result<RestorePlan> {
        restore.plan(&self.backup.manifest).await
    }

    fn report_of<'p>(&self, plan: &'p RestorePlan) -> &'p RestoreReport {
        match plan
            .components
            .iter()
            .find(|c| c.component == self.component)
        {
            Some(c) => &c.report,
            None => panic!(
                "restorer conformance ({}): the plan holds no '{}' component:\n{}",
                self.name,
                self.component,
                plan.table()
            ),
        }
    }

    fn applied_report<'p>(&self, done: &'p RunRestored) -> &'p RestoreReport {
        match done
            .components
            .iter()
            .find(|c| c.component == self.component)
        {
            Some(c) => &c.report,
            None => panic!(
                "restorer conformance ({}): the restore reports no '{}' component",
                self.name, self.component
            ),
        }
    }

    fn fail(&self, what: &str, err: &Error) -> ! {
        panic!(
            "restorer conformance ({}): {what}: {err} ({:?})",
            self.name,
            err.kind()
        )
    }

    fn expect_kind<T>(&self, r: Result<T>, kind: ErrorKind, what: &str) -> Error {
        match r {
            Ok(_) => panic!(
                "restorer conformance ({}): {what}: expected a {kind:?} error, it succeeded",
                self.name
            ),
            Err(e) if e.kind() == kind => e,
            Err(e) => self.fail(&format!("{what}: expected a {kind:?} error"), &e),
        }
    }

    async fn assert_state(&self, want: &TargetState, what: &str) {
        let got = self.h.target_state().await;
        if got != *want {
            panic!(
                "restorer conformance ({}): {what}: the target does not hold what it should\n{}",
                self.name,
                state_diff(want, &got)
            );
        }
    }

    async fn assert_no_write(&self, before: u64, what: &str) {
        let after = self.h.writes().await;
        assert_eq!(
            after, before,
            "restorer conformance ({}): {what}: the target took writes",
            self.name
        );
    }

    /// Plans under `policy`, checks the plan writes nothing, applies it and checks the
    /// counts agree; returns what the apply reported.
    async fn plan_then_apply(&self, policy: ExistingDataPolicy, what: &str) -> RestoreReport {
        let restore = self.restore(policy, None).await;
        let (state, w) = (self.h.target_state().await, self.h.writes().await);
        let plan = self
            .plan(&restore)
            .await
            .unwrap_or_else(|e| self.fail(&format!("{what}: the plan failed"), &e));
        self.assert_no_write(w, &format!("{what}: the plan")).await;
        self.assert_state(&state, &format!("{what}: after the plan"))
            .await;
        let planned = self.report_of(&plan).clone();
        assert!(
            planned.dry_run,
            "restorer conformance ({}): {what}: the plan's report is not marked dry_run",
            self.name
        );
        let done = restore
            .apply(&plan)
            .await
            .unwrap_or_else(|e| self.fail(&format!("{what}: the apply failed"), &e));
        let applied = self.applied_report(&done).clone();
        assert!(
            !applied.dry_run,
            "restorer conformance ({}): {what}: the apply's report is marked dry_run",
            self.name
        );
        let blind = !self.caps.plan_sees_target && policy != self.caps.empty_target_policy;
        if !blind || state.is_empty() {
            assert_eq!(
                counts(&planned),
                counts(&applied),
                "restorer conformance ({}): {what}: the plan counts (created, updated, skipped, \
                 conflicts) other than the apply does\nplan:  {planned:?}\napply: {applied:?}",
                self.name
            );
        }
        applied
    }

    // ----- checks -----

    /// Check 1: a dry run into the empty target writes nothing and counts what the apply
    /// that follows does; the apply brings the source back.
    async fn into_empty_target(&self) -> Reads {
        let policy = self.caps.empty_target_policy;
        self.h.fresh_target().await;
        let empty = self.h.target_state().await;
        if policy == ExistingDataPolicy::Fail {
            assert!(
                empty.is_empty(),
                "restorer conformance ({}): a fresh target must be empty, it holds {:?}",
                self.name,
                empty.keys().collect::<Vec<_>>()
            );
        } else {
            assert!(
                empty != self.source,
                "restorer conformance ({}): a fresh target already holds the source's state",
                self.name
            );
        }
        let w0 = self.h.writes().await;
        self.probe.clear_reads();
        let restore = self.restore(policy, None).await;
        let plan = self
            .plan(&restore)
            .await
            .unwrap_or_else(|e| self.fail("plan into the empty target failed", &e));
        let planned = self.report_of(&plan).clone();
        self.assert_no_write(w0, "the plan into the empty target")
            .await;
        self.assert_state(&empty, "after the plan into the empty target")
            .await;
        let plan_reads = self.probe.reads();
        let done = restore
            .apply(&plan)
            .await
            .unwrap_or_else(|e| self.fail("restore into the empty target failed", &e));
        let all = self.probe.reads();
        let applied = self.applied_report(&done).clone();
        assert_eq!(
            counts(&planned),
            counts(&applied),
            "restorer conformance ({}): the plan into the empty target counts (created, \
             updated, skipped, conflicts) other than the restore does\nplan:    \
             {planned:?}\nrestore: {applied:?}",
            self.name
        );
        assert!(
            applied.created + applied.updated > 0,
            "restorer conformance ({}): a restore into the empty target counts nothing \
             created or updated: {applied:?}",
            self.name
        );
        assert_ne!(
            self.h.writes().await,
            w0,
            "restorer conformance ({}): the harness saw no write during a restore that \
             changed the target: its writes() cannot tell",
            self.name
        );
        self.assert_state(&self.source, "after the restore into the empty target")
            .await;
        Reads {
            apply: all.len() - plan_reads.len(),
            all,
        }
    }

    /// Check 2: over differing data, per policy.
    async fn over_existing_data(&self) {
        // Each policy starts from a fresh target populated the same way.
        self.existing_fail().await;
        self.existing_skip().await;
        self.existing_overwrite().await;
    }

    /// A fresh target populated differently; checks the harness made it differ as needed.
    async fn differing_target(&self) -> TargetState {
        self.h.fresh_target().await;
        self.h.populate_target_differently().await;
        let d = self.h.target_state().await;
        assert!(
            d != self.source,
            "restorer conformance ({}): populate_target_differently left the target equal to \
             the source",
            self.name
        );
        if self.caps.existing == ExistingData::PerObject {
            let changed = d
                .iter()
                .filter(|(k, v)| self.source.get(*k).is_some_and(|s| s != *v))
                .count();
            let missing = self.source.keys().filter(|k| !d.contains_key(*k)).count();
            assert!(
                changed > 0 && missing > 0,
                "restorer conformance ({}): populate_target_differently must change some \
                 objects of the backup ({changed} changed) and leave some out ({missing} \
                 missing)",
                self.name
            );
        }
        d
    }

    /// `Fail` over differing data: refused without a write (per the capabilities).
    async fn existing_fail(&self) {
        let d = self.differing_target().await;
        let what = "Fail over differing data";
        if self.caps.existing == ExistingData::ReplacedKeepingPrevious {
            self.plan_then_apply(ExistingDataPolicy::Fail, what).await;
            self.assert_replaced_keeping_previous(&d, what).await;
            return;
        }
        let w = self.h.writes().await;
        let restore = self.restore(ExistingDataPolicy::Fail, None).await;
        match self.plan(&restore).await {
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => self.fail(&format!("{what}: the plan failed, not with a conflict"), &e),
            Ok(plan) => {
                let planned = self.report_of(&plan).clone();
                assert!(
                    self.caps.existing != ExistingData::AbsentOnly,
                    "restorer conformance ({}): {what}: a restorer into an absent target only \
                     must refuse the plan with a conflict, it planned {planned:?}",
                    self.name
                );
                if self.caps.plan_sees_target {
                    assert!(
                        planned.conflicts > 0,
                        "restorer conformance ({}): {what}: the plan neither fails with a \
                         conflict nor counts one: {planned:?}",
                        self.name
                    );
                }
                self.assert_no_write(w, &format!("{what}: the plan")).await;
                self.expect_kind(
                    restore.apply(&plan).await,
                    ErrorKind::Conflict,
                    &format!("{what}: the apply"),
                );
            }
        }
        self.assert_no_write(w, what).await;
        self.assert_state(&d, what).await;
    }

    /// `Skip` over differing data: nothing replaced, missing objects created (per object).
    async fn existing_skip(&self) {
        let d = self.differing_target().await;
        let what = "Skip over differing data";
        match self.caps.existing {
            ExistingData::PerObject => {
                let done = self.plan_then_apply(ExistingDataPolicy::Skip, what).await;
                assert!(
                    done.skipped > 0 && done.updated == 0,
                    "restorer conformance ({}): {what}: the restore must count the objects it \
                     kept as skipped and update none: {done:?}",
                    self.name
                );
                let mut want = self.source.clone();
                want.extend(d.clone());
                self.assert_state(
                    &want,
                    &format!("{what} (kept what existed, created what was missing)"),
                )
                .await;
            }
            ExistingData::Whole => {
                let w = self.h.writes().await;
                let done = self.plan_then_apply(ExistingDataPolicy::Skip, what).await;
                assert!(
                    done.skipped >= 1 && done.created + done.updated == 0,
                    "restorer conformance ({}): {what}: a restore replacing the whole target \
                     must leave it alone under Skip, counted skipped: {done:?}",
                    self.name
                );
                self.assert_no_write(w, what).await;
                self.assert_state(&d, what).await;
            }
            ExistingData::AbsentOnly => self.refused_everywhere(ExistingDataPolicy::Skip, &d).await,
            ExistingData::ReplacedKeepingPrevious => {
                self.plan_then_apply(ExistingDataPolicy::Skip, what).await;
                self.assert_replaced_keeping_previous(&d, what).await;
            }
        }
    }

    /// `Overwrite` over differing data: the backup comes back.
    async fn existing_overwrite(&self) {
        let d = self.differing_target().await;
        let what = "Overwrite over differing data";
        match self.caps.existing {
            ExistingData::PerObject => {
                let done = self
                    .plan_then_apply(ExistingDataPolicy::Overwrite, what)
                    .await;
                assert!(
                    done.updated > 0,
                    "restorer conformance ({}): {what}: the restore must count the objects it \
                     replaced as updated: {done:?}",
                    self.name
                );
                let mut want = d.clone();
                want.extend(self.source.clone());
                self.assert_state(&want, what).await;
            }
            ExistingData::Whole => {
                let done = self
                    .plan_then_apply(ExistingDataPolicy::Overwrite, what)
                    .await;
                assert!(
                    done.updated >= 1,
                    "restorer conformance ({}): {what}: replacing the whole target counts it \
                     updated: {done:?}",
                    self.name
                );
                self.assert_state(&self.source, what).await;
            }
            ExistingData::AbsentOnly => {
                self.refused_everywhere(ExistingDataPolicy::Overwrite, &d)
                    .await
            }
            ExistingData::ReplacedKeepingPrevious => {
                self.plan_then_apply(ExistingDataPolicy::Overwrite, what)
                    .await;
                self.assert_replaced_keeping_previous(&d, what).await;
            }
        }
    }

    /// [`ExistingData::AbsentOnly`]: the plan under `policy` is refused with a conflict and
    /// the target keeps `d`.
    async fn refused_everywhere(&self, policy: ExistingDataPolicy, d: &TargetState) {
        let what = format!("{policy:?} over existing data (absent targets only)");
        let w = self.h.writes().await;
        let restore = self.restore(policy, None).await;
        let e = self.expect_kind(self.plan(&restore).await, ErrorKind::Conflict, &what);
        assert!(
            e.hint().is_some(),
            "restorer conformance ({}): {what}: the refusal must say what to do instead: {e}",
            self.name
        );
        self.assert_no_write(w, &what).await;
        self.assert_state(d, &what).await;
    }

    /// [`ExistingData::ReplacedKeepingPrevious`]: the source's objects are back, and every
    /// object the differing target held is still there under a name of its own.
    async fn assert_replaced_keeping_previous(&self, d: &TargetState, what: &str) {
        let got = self.h.target_state().await;
        let restored: TargetState = got
            .iter()
            .filter(|(k, _)| self.source.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if restored != self.source {
            panic!(
                "restorer conformance ({}): {what}: the backup did not come back\n{}",
                self.name,
                state_diff(&self.source, &restored)
            );
        }
        let kept: Vec<&String> = got
            .values()
            .filter(|v| d.values().any(|dv| dv == *v))
            .collect();
        let previous: Vec<&String> = d
            .values()
            .filter(|v| !self.source.values().any(|s| s == *v))
            .collect();
        assert!(
            previous.iter().all(|p| kept.contains(p)),
            "restorer conformance ({}): {what}: the previous data was not kept aside\n{}",
            self.name,
            state_diff(d, &got)
        );
    }

    /// Check 3: one flipped byte in any artifact the restore reads, before the plan and
    /// between the plan and the apply.
    async fn digest_mismatch(&self, reads: &Reads) {
        let policy = self.caps.empty_target_policy;
        for a in &self.artifacts {
            if !reads.all.contains(&a.key) {
                eprintln!(
                    "restorer conformance ({}): the restore never reads '{}', so damage to it \
                     cannot matter; not corrupted",
                    self.name, a.key
                );
                continue;
            }
            if a.stored_size == 0 {
                eprintln!(
                    "restorer conformance ({}): '{}' is empty: no byte to flip",
                    self.name, a.key
                );
                continue;
            }
            // Damaged before the plan: the plan (or, if it does not read it, the apply)
            // refuses it, and the target takes no write.
            self.h.fresh_target().await;
            let (s, w) = (self.h.target_state().await, self.h.writes().await);
            let what = format!("'{}' damaged before the plan", a.key);
            self.probe.corrupt(Some(a));
            let restore = self.restore(policy, None).await;
            let r = match self.plan(&restore).await {
                Ok(plan) => restore.apply(&plan).await.map(|_| ()),
                Err(e) => Err(e),
            };
            self.probe.corrupt(None);
            self.expect_kind(r, ErrorKind::Integrity, &what);
            if self.caps.digest_check != DigestCheck::WhileRestoringUndone {
                self.assert_no_write(w, &what).await;
            }
            self.assert_state(&s, &what).await;

            // Damaged between the plan and the apply: the apply refuses it.
            self.h.fresh_target().await;
            let (s, w) = (self.h.target_state().await, self.h.writes().await);
            let what = format!("'{}' damaged between the plan and the apply", a.key);
            let restore = self.restore(policy, None).await;
            let plan = self
                .plan(&restore)
                .await
                .unwrap_or_else(|e| self.fail(&format!("{what}: the plan failed"), &e));
            self.probe.corrupt(Some(a));
            let r = restore.apply(&plan).await;
            self.probe.corrupt(None);
            self.expect_kind(r, ErrorKind::Integrity, &what);
            match self.caps.digest_check {
                DigestCheck::BeforeFirstWrite => {
                    self.assert_no_write(w, &what).await;
                    self.assert_state(&s, &what).await;
                }
                DigestCheck::WhileRestoringUndone => self.assert_state(&s, &what).await,
                DigestCheck::PerArtifact => self.rerun_completes(&what).await,
            }
        }
    }

    /// Check 4: cancelled as the restore starts, and after the first chunk of each read.
    async fn cancellation(&self, reads: &Reads) {
        let policy = self.caps.empty_target_policy;
        self.h.fresh_target().await;
        let (s, w) = (self.h.target_state().await, self.h.writes().await);
        let what = "cancelled as the restore starts";
        let token = CancellationToken::new();
        let restore = self
            .restore(
                policy,
                Some(Cancel {
                    token: token.clone(),
                    on_start: true,
                }),
            )
            .await;
        let plan = self
            .plan(&restore)
            .await
            .unwrap_or_else(|e| self.fail(&format!("{what}: the plan failed"), &e));
        assert!(
            !token.is_cancelled(),
            "restorer conformance ({}): the plan fired the token",
            self.name
        );
        self.expect_kind(restore.apply(&plan).await, ErrorKind::Cancelled, what);
        self.assert_no_write(w, what).await;
        self.assert_state(&s, what).await;

        assert!(
            reads.apply > 0,
            "restorer conformance ({}): the restore into the empty target read nothing",
            self.name
        );
        for n in read_positions(reads.apply) {
            self.h.fresh_target().await;
            let s = self.h.target_state().await;
            let what = format!(
                "cancelled after the first chunk of read {} of {}",
                n + 1,
                reads.apply
            );
            let token = CancellationToken::new();
            let restore = self
                .restore(
                    policy,
                    Some(Cancel {
                        token: token.clone(),
                        on_start: false,
                    }),
                )
                .await;
            let plan = self
                .plan(&restore)
                .await
                .unwrap_or_else(|e| self.fail(&format!("{what}: the plan failed"), &e));
            self.probe.cancel_on_read(n, token.clone());
            let r = restore.apply(&plan).await;
            self.probe.disarm_cancel();
            assert!(
                token.is_cancelled(),
                "restorer conformance ({}): {what}: the apply made fewer reads than the first \
                 clean restore ({})",
                self.name,
                reads.apply
            );
            self.expect_kind(r, ErrorKind::Cancelled, &what);
            match self.caps.cancel {
                CancelOutcome::Atomic => self.assert_state(&s, &what).await,
                CancelOutcome::Partial => {
                    let got = self.h.target_state().await;
                    assert!(
                        got != self.source,
                        "restorer conformance ({}): {what}: the cancelled restore left the \
                         target complete, yet it reported a cancellation",
                        self.name
                    );
                }
            }
            self.rerun_completes(&what).await;
        }
    }

    /// After a failed restore: a rerun (`Overwrite`, or the empty-target policy when the
    /// target was left as it was and takes only absent targets) brings the source back.
    async fn rerun_completes(&self, what: &str) {
        let policy = match self.caps.existing {
            ExistingData::AbsentOnly => self.caps.empty_target_policy,
            _ => ExistingDataPolicy::Overwrite,
        };
        let restore = self.restore(policy, None).await;
        let r = match self.plan(&restore).await {
            Ok(plan) => restore.apply(&plan).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            self.fail(&format!("{what}: the rerun under {policy:?} failed"), &e);
        }
        let got = self.h.target_state().await;
        let restored: TargetState = got
            .iter()
            .filter(|(k, _)| self.source.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if restored != self.source {
            panic!(
                "restorer conformance ({}): {what}: the rerun under {policy:?} did not bring \
                 the backup back\n{}",
                self.name,
                state_diff(&self.source, &restored)
            );
        }
    }
}

/// Which reads of an apply of `n` reads to cancel in: all of a few, else the first, the
/// second and the last.
fn read_positions(n: usize) -> Vec<usize> {
    if n <= 4 {
        (0..n).collect()
    } else {
        vec![0, 1, n - 1]
    }
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

/// A token and whether to fire it as the apply starts.
struct Cancel {
    token: CancellationToken,
    on_start: bool,
}

/// Fires its token when a component's restore (not its plan) starts.
#[derive(Debug)]
struct CancelOnStart(CancellationToken);

impl Observer for CancelOnStart {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::RestoreStarted { dry_run: false, .. } = event {
            self.0.cancel();
        }
    }
}

/// Size of the chunks the probe hands out, so that "after the first chunk" is mid-read.
const PROBE_CHUNK: usize = 1024;

#[derive(Default)]
struct ProbeState {
    reads: Vec<ObjectKey>,
    /// The artifact whose stored bytes get one byte flipped, and where.
    corrupt: Option<(ObjectKey, u64)>,
    /// Fire the token after the first chunk of the read with this index (counted from
    /// when it was armed).
    cancel: Option<(usize, CancellationToken)>,
    reads_since_armed: usize,
}

/// The suite's view of the backup's sink: records reads, flips a byte of one object as it
/// is read (same size), and fires a token after the first chunk of a chosen read. Every
/// read comes in small chunks.
struct ProbeSink {
    inner: Arc<dyn Sink>,
    state: Mutex<ProbeState>,
}

impl fmt::Debug for ProbeSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeSink")
            .field("inner", &self.inner.describe())
            .finish_non_exhaustive()
    }
}

impl ProbeSink {
    fn new(inner: Arc<dyn Sink>) -> Self {
        ProbeSink {
            inner,
            state: Mutex::new(ProbeState::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut ProbeState) -> R) -> R {
        f(&mut self.state.lock().expect("probe state"))
    }

    fn clear_reads(&self) {
        self.with(|s| s.reads.clear());
    }

    fn reads(&self) -> Vec<ObjectKey> {
        self.with(|s| s.reads.clone())
    }

    fn corrupt(&self, artifact: Option<&ArtifactRecord>) {
        self.with(|s| s.corrupt = artifact.map(|a| (a.key.clone(), a.stored_size / 2)));
    }

    fn cancel_on_read(&self, n: usize, token: CancellationToken) {
        self.with(|s| {
            s.cancel = Some((n, token));
            s.reads_since_armed = 0;
        });
    }

    fn disarm_cancel(&self) {
        self.with(|s| s.cancel = None);
    }
}

#[async_trait]
impl Sink for ProbeSink {
    fn describe(&self) -> String {
        format!("probe({})", self.inner.describe())
    }

    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }

    async fn preflight(&self) -> Result<()> {
        self.inner.preflight().await
    }

    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        self.inner.put(key, stream).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let (flip, cancel) = self.with(|s| {
            s.reads.push(key.clone());
            let flip = s
                .corrupt
                .as_ref()
                .filter(|(k, _)| k == key)
                .map(|(_, at)| *at);
            let n = s.reads_since_armed;
            s.reads_since_armed += 1;
            let cancel = s
                .cancel
                .as_ref()
                .filter(|(at, _)| *at == n)
                .map(|(_, t)| t.clone());
            (flip, cancel)
        });
        let inner = self.inner.get(key).await?;
        let mut offset = 0u64;
        let mut first = true;
        let chunks = inner.flat_map(move |item| {
            let pieces: Vec<Result<Bytes>> = match item {
                Err(e) => vec![Err(e)],
                Ok(b) => {
                    let mut b = b.to_vec();
                    if let Some(at) = flip {
                        let end = offset + b.len() as u64;
                        if (offset..end).contains(&at) {
                            b[(at - offset) as usize] ^= 0x01;
                        }
                    }
                    offset += b.len() as u64;
                    b.chunks(PROBE_CHUNK)
                        .map(|c| Ok(Bytes::copy_from_slice(c)))
                        .collect()
                }
            };
            futures::stream::iter(pieces)
        });
        let out = chunks.map(move |item| {
            if first {
                first = false;
                if let Some(t) = &cancel {
                    t.cancel();
                }
            }
            item
        });
        Ok(Box::pin(out))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }
}
