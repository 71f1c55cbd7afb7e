//! The checks of the suite, through the [`Restore`] driver.

use std::sync::Arc;

use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::manifest::ArtifactRecord;
use stoa_backup_core::restore::{
    ExistingDataPolicy, Restore, RestorePlan, RestoreReport, RunRestored,
};
use tokio_util::sync::CancellationToken;

use super::probe::{Cancel, CancelOnStart, ProbeSink};
use super::{
    state_diff, CancelOutcome, Capabilities, DigestCheck, ExistingData, HarnessBackup,
    RestorerHarness, TargetState,
};

/// One run of the suite: the harness, what it declared, the backup and what it holds.
pub(super) struct Cx<'a, H: ?Sized> {
    pub(super) h: &'a H,
    pub(super) caps: Capabilities,
    pub(super) probe: Arc<ProbeSink>,
    pub(super) backup: HarnessBackup,
    pub(super) name: String,
    pub(super) component: String,
    pub(super) artifacts: Vec<ArtifactRecord>,
    pub(super) source: TargetState,
}

/// The counts a plan and a restore must agree on.
fn counts(r: &RestoreReport) -> (u64, u64, u64, u64) {
    (r.created, r.updated, r.skipped, r.conflicts)
}

/// What the artifacts read during the clean restore were, in order.
pub(super) struct Reads {
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

    /// Says which check runs (shown with the output of a failing test).
    fn step(&self, what: &str) {
        eprintln!("restorer conformance ({}): {what}", self.name);
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
    pub(super) async fn restore_into_empty_target(&self) -> Reads {
        self.step("plan, then restore, into the empty target");
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
    pub(super) async fn over_existing_data(&self) {
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
        self.step(what);
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
        self.step(what);
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
        self.step(what);
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
    pub(super) async fn digest_mismatch(&self, reads: &Reads) {
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
            self.step(&what);
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
            self.step(&what);
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
    pub(super) async fn cancellation(&self, reads: &Reads) {
        let policy = self.caps.empty_target_policy;
        self.h.fresh_target().await;
        let (s, w) = (self.h.target_state().await, self.h.writes().await);
        let what = "cancelled as the restore starts";
        self.step(what);
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
            self.step(&what);
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
