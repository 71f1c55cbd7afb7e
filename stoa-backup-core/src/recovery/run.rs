//! [`Recovery`]: plan every step, then apply them in order with a journal; resume; drill.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::codec::Keyring;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{Manifest, RunId};
use crate::observer::{Event, Observer};
use crate::restore::{
    ExistingDataPolicy, KeyNeeded, PointQuery, PointSelector, RecoveryPoint, Restore,
    RestoreReport, Restorer,
};
use crate::sink::Sink;

use super::journal::{JournalStep, RecoveryJournal, RecoveryStatus, StepStatus};
use super::report::{CleanedUp, DrillReport, RecoveryPlan, RecoveryReport, StepPlan, StepReport};
use super::{millis, Action, CheckContext, ChecklistReport, Step, StepContext, StepKind, Verdict};

/// A platform recovery: steps in dependency order, each planned before any is applied, a
/// journal in the sink, a checklist at the end. With [replicas](super::RecoveryBuilder::replica)
/// the runs are picked and read across the sink and them, and the journal is kept in the first
/// that takes it.
///
/// ```no_run
/// # async fn demo(
/// #     sink: std::sync::Arc<dyn stoa_backup_core::Sink>,
/// #     postgres: impl stoa_backup_core::Restorer + 'static,
/// #     keycloak: impl stoa_backup_core::Restorer + 'static,
/// # ) -> stoa_backup_core::Result<()> {
/// use std::time::Duration;
/// use stoa_backup_core::recovery::{Checklist, Recovery};
/// let recovery = Recovery::stoa()
///     .sink(sink)
///     .restore(keycloak) // STOA order puts PostgreSQL first whatever the order given
///     .restore(postgres)
///     .checks(Checklist::new())
///     .rpo(Duration::from_secs(24 * 3600))
///     .rto(Duration::from_secs(30 * 60))
///     .build()?;
/// let plan = recovery.plan().await?; // picks the runs, plans every step, writes nothing
/// println!("{}", plan.table());
/// let report = recovery.apply(&plan).await?; // or, after a failure: recovery.resume(id)
/// println!("{}", report.table());
/// # Ok(()) }
/// ```
pub struct Recovery {
    /// The sink, then the replicas, with their names.
    pub(super) sinks: Vec<(String, Arc<dyn Sink>)>,
    pub(super) keyring: Keyring,
    pub(super) observer: Arc<dyn Observer>,
    pub(super) cancel: CancellationToken,
    pub(super) existing: ExistingDataPolicy,
    pub(super) selector: Option<PointSelector>,
    pub(super) rpo: Option<Duration>,
    pub(super) rto: Option<Duration>,
    pub(super) steps: Vec<Step>,
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field(
                "sinks",
                &self.sinks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("steps", &self.step_names())
            .field("existing", &self.existing)
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl Recovery {
    /// A builder that keeps the steps in the order given (dependencies aside).
    pub fn builder() -> super::RecoveryBuilder {
        super::RecoveryBuilder::new(false)
    }

    /// A builder that orders restore steps as STOA's recovery procedure does (see
    /// [`stoa_rank`](super::stoa_rank)), custom steps right after the step added before
    /// them, and the checks last.
    pub fn stoa() -> super::RecoveryBuilder {
        super::RecoveryBuilder::new(true)
    }

    /// The steps' names, in running order.
    pub fn step_names(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.name()).collect()
    }

    /// Picks the runs to restore: per restore step's component, as the builder's point
    /// says. Fails naming a component without a complete, verified run.
    pub async fn point(&self) -> Result<RecoveryPoint> {
        let components: Vec<String> = self
            .steps
            .iter()
            .filter_map(|s| s.component().map(str::to_string))
            .collect();
        if components.is_empty() {
            return Ok(RecoveryPoint {
                at: Utc::now(),
                runs: Vec::new(),
                skew_secs: 0,
                skew_within_rpo: None,
                unreachable: Vec::new(),
            });
        }
        let mut query = PointQuery::latest(components);
        if let Some(s) = &self.selector {
            query = query.selector(s.clone());
        }
        if let Some(rpo) = self.rpo {
            query = query.rpo(rpo);
        }
        self.find_point(&query).await.map_err(|e| {
            e.or_component("recovery")
                .or_operation("pick recovery point")
        })
    }

    /// Plans the recovery, writing nothing: picks the runs, reads their manifests, checks
    /// every key is at hand, and runs every step's preflight and plan in order. Fails before
    /// any write, naming the step, when one cannot run (a component without a verified
    /// run, a missing key, a preflight that failed).
    pub async fn plan(&self) -> Result<RecoveryPlan> {
        let mut point = self.point().await?;
        let runs = self.read_runs(&mut point).await?;
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let planned = self
                .plan_step(step, &point, &runs)
                .await
                .map_err(|e| e.with_context("step", step.name()))?;
            steps.push(planned);
        }
        let mut keys: Vec<KeyNeeded> = Vec::new();
        let mut totals = RestoreReport {
            dry_run: true,
            ..RestoreReport::default()
        };
        for s in &steps {
            for k in &s.keys {
                if !keys.iter().any(|o| o.kind == k.kind && o.name == k.name) {
                    keys.push(k.clone());
                }
            }
            totals.add_counts(&s.report);
        }
        Ok(RecoveryPlan {
            point,
            steps,
            keys,
            totals,
            rto_secs: self.rto.map(|d| d.as_secs()),
            runs,
        })
    }

    /// Applies `plan` (from [`plan`](Self::plan) of this recovery): starts a journal in the
    /// sink, then runs the steps in order. Stops at the first failed step with its error,
    /// which names the step and the recovery id to [`resume`](Self::resume); the steps
    /// before it stay done. A failed check does not stop it: it fails the verdict.
    pub async fn apply(&self, plan: &RecoveryPlan) -> Result<RecoveryReport> {
        let (mut journal, home) = self.start_journal(plan, false).await?;
        self.execute(&mut journal, home, &plan.runs, Some(plan))
            .await
    }

    /// Continues the journalled recovery `recovery_id` after its last completed step: every
    /// step not done (the failed one, the checks when a check failed, the rest) is planned
    /// again and applied; done steps are not run again. The recovery must have the same
    /// steps as the one that started it.
    pub async fn resume(&self, recovery_id: &str) -> Result<RecoveryReport> {
        let (home, mut journal) = self.find_journal(recovery_id).await?;
        let theirs: Vec<&str> = journal.steps.iter().map(|s| s.name.as_str()).collect();
        if theirs != self.step_names() {
            return Err(Error::config(format!(
                "recovery {recovery_id} has the steps {}, this recovery {}",
                theirs.join(" → "),
                self.step_names().join(" → ")
            ))
            .with_component("recovery")
            .with_operation("resume recovery")
            .with_hint("resume with a recovery built with the same steps"));
        }
        let runs = self.read_runs(&mut journal.point).await?;
        self.execute(&mut journal, home, &runs, None).await
    }

    /// A drill: plans and applies the recovery (whose restorers restore into scratch
    /// targets: a new database name, another realm, another namespace), runs its checks,
    /// then cleans up every step's scratch target ([`Step::clean_up`]), also when a step or
    /// a check failed. The report records the time to restore as RTO evidence; its verdict
    /// fails when anything did, and what stopped it (no verified run, a missing key, a failed
    /// step, an unwritable journal) is in its `error`: clean-up runs in every case.
    pub async fn drill(&self) -> Result<DrillReport> {
        let mut journal = None;
        let outcome = match self.plan().await {
            Ok(plan) => match self.start_journal(&plan, true).await {
                Ok((mut j, home)) => {
                    let r = self.execute(&mut j, home, &plan.runs, Some(&plan)).await;
                    journal = Some(j);
                    r
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let cleaned_up = self.clean_up().await;
        let time_to_restore_ms = journal
            .as_ref()
            .map(|j| {
                j.steps
                    .iter()
                    .filter(|s| s.kind == StepKind::Restore)
                    .map(|s| s.duration_ms)
                    .sum()
            })
            .unwrap_or(0);
        let (recovery, error) = match outcome {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let verdict = match &recovery {
            Some(r) if r.verdict == Verdict::Passed && cleaned_up.iter().all(|c| c.ok) => {
                Verdict::Passed
            }
            _ => Verdict::Failed,
        };
        Ok(DrillReport {
            recovery,
            error,
            time_to_restore_ms,
            cleaned_up,
            verdict,
        })
    }

    /// The ids of the recoveries journalled in the sink (and its replicas), newest first.
    pub async fn journals(&self) -> Result<Vec<String>> {
        self.list_journals().await
    }

    /// The journal of recovery `recovery_id` (from the first of the sink and its replicas
    /// that holds it).
    pub async fn journal(&self, recovery_id: &str) -> Result<RecoveryJournal> {
        self.find_journal(recovery_id).await.map(|(_, j)| j)
    }

    async fn clean_up(&self) -> Vec<CleanedUp> {
        let mut out = Vec::new();
        for step in self.steps.iter().rev() {
            let Some(c) = &step.clean_up else { continue };
            let (ok, detail) = match c.clean_up().await {
                Ok(what) => (true, what),
                Err(e) => (false, e.to_string()),
            };
            out.push(CleanedUp {
                step: step.name().to_string(),
                ok,
                detail,
            });
        }
        out.reverse();
        out
    }

    /// The restore driver of `restorer`'s step, reading from the target named `origin` (where
    /// its run was found), else from the sink.
    fn restore_for(&self, restorer: &Arc<dyn Restorer>, origin: Option<&str>) -> Result<Restore> {
        let (name, sink) = self.target(origin);
        Restore::builder()
            .sink_named(name.clone(), sink.clone())
            .keyring(self.keyring.clone())
            .restorer(restorer.clone())
            .observer(self.observer.clone())
            .cancel(self.cancel.clone())
            .existing(self.existing)
            .build()
    }

    fn manifest_of<'a>(
        point: &RecoveryPoint,
        runs: &'a BTreeMap<RunId, Manifest>,
        component: &str,
    ) -> Result<&'a Manifest> {
        point
            .run_of(component)
            .and_then(|id| runs.get(id))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("the recovery point holds no run of '{component}'"),
                )
                .with_component(component)
                .with_operation("plan recovery")
                .with_hint("back the component up, or remove its step")
            })
    }

    async fn plan_step(
        &self,
        step: &Step,
        point: &RecoveryPoint,
        runs: &BTreeMap<RunId, Manifest>,
    ) -> Result<StepPlan> {
        let started = Instant::now();
        let mut planned = StepPlan {
            name: step.name().to_string(),
            kind: step.kind(),
            component: step.component().map(str::to_string),
            run_id: None,
            artifacts: 0,
            report: RestoreReport {
                dry_run: true,
                ..RestoreReport::default()
            },
            keys: Vec::new(),
            checks: Vec::new(),
            after: step.after.clone(),
            duration_ms: 0,
            restore_plan: None,
        };
        match &step.action {
            Action::Restore(restorer) => {
                let manifest = Self::manifest_of(point, runs, restorer.component())?;
                let restore = self.restore_for(restorer, point.origin_of(restorer.component()))?;
                let plan = restore.plan(manifest).await?;
                if let Some(c) = plan.components.first() {
                    planned.artifacts = c.artifacts.len();
                    planned.report = c.report.clone();
                    planned.keys = c.keys.clone();
                }
                planned.run_id = Some(manifest.run_id.clone());
                planned.restore_plan = Some(plan);
            }
            Action::Custom(custom) => {
                let ctx = StepContext {
                    point,
                    runs,
                    earlier: &[],
                    dry_run: true,
                    cancel: &self.cancel,
                };
                custom
                    .preflight(&ctx)
                    .await
                    .map_err(|e| e.or_operation("preflight step"))?;
                planned.report = custom
                    .plan(&ctx)
                    .await
                    .map_err(|e| e.or_operation("plan step"))?;
                planned.report.dry_run = true;
            }
            Action::Checks(list) => {
                planned.checks = list.names().into_iter().map(str::to_string).collect();
                planned
                    .report
                    .notes
                    .push(format!("runs {} checks", planned.checks.len()));
            }
        }
        planned.duration_ms = millis(started.elapsed());
        Ok(planned)
    }

    /// A new journal of `plan`, written; with where it is kept (an index in `sinks`).
    async fn start_journal(
        &self,
        plan: &RecoveryPlan,
        drill: bool,
    ) -> Result<(RecoveryJournal, usize)> {
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        if names != self.step_names() {
            return Err(Error::config(
                "the plan was made by a recovery with other steps".to_string(),
            )
            .with_component("recovery")
            .with_operation("apply recovery")
            .with_hint("plan with this recovery and apply that plan"));
        }
        let now = Utc::now();
        let mut journal = RecoveryJournal {
            format: RecoveryJournal::format(),
            recovery_id: RecoveryJournal::new_id(now),
            drill,
            started_at: now,
            updated_at: now,
            status: RecoveryStatus::Running,
            existing: self.existing,
            point: plan.point.clone(),
            steps: plan
                .steps
                .iter()
                .map(|s| JournalStep {
                    name: s.name.clone(),
                    kind: s.kind,
                    run_id: s.run_id.as_ref().map(|r| r.to_string()),
                    status: StepStatus::Pending,
                    started_at: None,
                    finished_at: None,
                    duration_ms: 0,
                    report: None,
                    checks: None,
                    error: None,
                    attempts: 0,
                })
                .collect(),
        };
        // Nothing is restored unless the journal can be kept: a recovery that cannot be
        // resumed or audited is not started.
        let home = self.keep_new_journal(&mut journal).await?;
        Ok((journal, home))
    }

    /// Runs the steps not done, writing `journal` to `sinks[home]` before and after each.
    async fn execute(
        &self,
        journal: &mut RecoveryJournal,
        home: usize,
        runs: &BTreeMap<RunId, Manifest>,
        plan: Option<&RecoveryPlan>,
    ) -> Result<RecoveryReport> {
        let id = journal.recovery_id.clone();
        let mut reports: Vec<StepReport> = Vec::new();
        let mut checks: Option<ChecklistReport> = None;
        let total = self.steps.len();
        for (index, step) in self.steps.iter().enumerate() {
            let name = step.name();
            let entry = journal.step_mut(name);
            if entry.status == StepStatus::Done {
                if entry.checks.is_some() {
                    checks = entry.checks.clone();
                }
                reports.push(step_report(entry, true));
                continue;
            }
            let failed = |e: Error, journal: &RecoveryJournal| {
                let done: Vec<&str> = journal
                    .steps
                    .iter()
                    .filter(|s| s.status == StepStatus::Done)
                    .map(|s| s.name.as_str())
                    .collect();
                let e = e
                    .or_component(step.component().unwrap_or("recovery").to_string())
                    .with_context("step", name)
                    .with_context("recovery", id.clone())
                    .with_context(
                        "resume",
                        format!("Recovery::resume(\"{id}\") once the cause is fixed"),
                    );
                if done.is_empty() {
                    e
                } else {
                    e.with_context("steps done", done.join(", "))
                }
            };
            if let Err(e) = check_cancelled(&self.cancel) {
                return Err(self
                    .record_failure(journal, home, name, e, 0, &failed)
                    .await);
            }
            self.observer.on_event(&Event::RecoveryStepStarted {
                recovery_id: &id,
                step: name,
                index,
                steps: total,
            });
            {
                let entry = journal.step_mut(name);
                entry.status = StepStatus::Running;
                entry.attempts += 1;
                entry.started_at = Some(Utc::now());
                entry.finished_at = None;
                entry.error = None;
            }
            journal
                .write(self.home(home))
                .await
                .map_err(|e| failed(e, journal))?;
            let t0 = Instant::now();
            let outcome = self
                .run_step(step, index, &journal.point, runs, plan, &reports)
                .await;
            let elapsed = t0.elapsed();
            let (report, step_checks) = match outcome {
                Ok(done) => done,
                Err(e) => {
                    let e = self
                        .record_failure(journal, home, name, e, millis(elapsed), &failed)
                        .await;
                    self.observer.on_event(&Event::RecoveryStepDone {
                        recovery_id: &id,
                        step: name,
                        status: StepStatus::Failed,
                        duration: elapsed,
                    });
                    return Err(e);
                }
            };
            let status = match &step_checks {
                Some(c) if c.verdict == Verdict::Failed => StepStatus::Failed,
                _ => StepStatus::Done,
            };
            {
                let entry = journal.step_mut(name);
                entry.status = status;
                entry.finished_at = Some(Utc::now());
                entry.duration_ms = millis(elapsed);
                entry.report = Some(report);
                if let Some(c) = &step_checks {
                    entry.checks = Some(c.clone());
                    if c.verdict == Verdict::Failed {
                        entry.error = Some(format!("checks failed: {}", c.failed().join(", ")));
                    }
                }
                reports.push(step_report(entry, false));
            }
            if step_checks.is_some() {
                checks = step_checks;
            }
            journal
                .write(self.home(home))
                .await
                .map_err(|e| failed(e, journal))?;
            self.observer.on_event(&Event::RecoveryStepDone {
                recovery_id: &id,
                step: name,
                status,
                duration: elapsed,
            });
        }
        let verdict = if journal.steps.iter().all(|s| s.status == StepStatus::Done) {
            Verdict::Passed
        } else {
            Verdict::Failed
        };
        journal.status = match verdict {
            Verdict::Passed => RecoveryStatus::Completed,
            Verdict::Failed => RecoveryStatus::Failed,
        };
        journal.write(self.home(home)).await?;
        let elapsed_ms =
            u64::try_from((Utc::now() - journal.started_at).num_milliseconds().max(0)).unwrap_or(0);
        let rto_secs = self.rto.map(|d| d.as_secs());
        Ok(RecoveryReport {
            recovery_id: id,
            point: journal.point.clone(),
            steps: reports,
            checks,
            verdict,
            steps_ms: journal.steps.iter().map(|s| s.duration_ms).sum(),
            elapsed_ms,
            rto_secs,
            within_rto: self.rto.map(|rto| elapsed_ms <= millis(rto)),
        })
    }

    /// Records a step's failure in the journal and returns the error to give the caller
    /// (with a note when the journal could not be written either).
    async fn record_failure(
        &self,
        journal: &mut RecoveryJournal,
        home: usize,
        name: &str,
        error: Error,
        duration_ms: u64,
        failed: &impl Fn(Error, &RecoveryJournal) -> Error,
    ) -> Error {
        {
            let entry = journal.step_mut(name);
            entry.status = StepStatus::Failed;
            entry.finished_at = Some(Utc::now());
            entry.duration_ms = duration_ms;
            entry.error = Some(error.to_string());
        }
        journal.status = RecoveryStatus::Failed;
        let written = journal.write(self.home(home)).await;
        let e = failed(error, journal);
        match written {
            Ok(()) => e,
            Err(w) => e.with_context("journal not updated", w.to_string()),
        }
    }

    async fn run_step(
        &self,
        step: &Step,
        index: usize,
        point: &RecoveryPoint,
        runs: &BTreeMap<RunId, Manifest>,
        plan: Option<&RecoveryPlan>,
        earlier: &[StepReport],
    ) -> Result<(RestoreReport, Option<ChecklistReport>)> {
        match &step.action {
            Action::Restore(restorer) => {
                let restore = self.restore_for(restorer, point.origin_of(restorer.component()))?;
                let planned = plan
                    .and_then(|p| p.steps.get(index))
                    .and_then(|s| s.restore_plan.clone());
                let restore_plan = match planned {
                    Some(p) => p,
                    None => {
                        let manifest = Self::manifest_of(point, runs, restorer.component())?;
                        restore.plan(manifest).await?
                    }
                };
                let done = restore.apply(&restore_plan).await?;
                Ok((
                    done.components
                        .into_iter()
                        .next()
                        .map(|c| c.report)
                        .unwrap_or_default(),
                    None,
                ))
            }
            Action::Custom(custom) => {
                let ctx = StepContext {
                    point,
                    runs,
                    earlier,
                    dry_run: false,
                    cancel: &self.cancel,
                };
                Ok((custom.apply(&ctx).await?, None))
            }
            Action::Checks(list) => {
                let ctx =
                    CheckContext::new(runs.values().cloned()).with_cancel(self.cancel.clone());
                let report = list.run(&ctx).await;
                let mut r = RestoreReport::default();
                r.notes.push(format!(
                    "{} of {} checks passed",
                    report
                        .results
                        .iter()
                        .filter(|c| c.status == super::CheckStatus::Passed)
                        .count(),
                    report.results.len()
                ));
                Ok((r, Some(report)))
            }
        }
    }
}

fn step_report(entry: &JournalStep, done_earlier: bool) -> StepReport {
    StepReport {
        name: entry.name.clone(),
        kind: entry.kind,
        run_id: entry.run_id.clone(),
        status: entry.status,
        done_earlier,
        report: entry.report.clone(),
        duration_ms: entry.duration_ms,
    }
}

fn check_cancelled(token: &CancellationToken) -> Result<()> {
    if token.is_cancelled() {
        return Err(
            Error::cancelled("the recovery was cancelled before this step")
                .with_operation("recover"),
        );
    }
    Ok(())
}
