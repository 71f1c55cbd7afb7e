//! What a retention policy decides: reasons, per-run decisions, the plan and its table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::manifest::{RunDamage, RunId, RunStatus, RunSummary};

/// Why a run is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// Among the last N complete runs.
    Last,
    /// Started within the keep-within duration before `now`.
    Within,
    /// Newest run of its day.
    Daily,
    /// Newest run of its ISO week.
    Weekly,
    /// Newest run of its month.
    Monthly,
    /// Newest run of its year.
    Yearly,
    /// Newest run of its day, among the runs inside the keep-within-daily duration.
    WithinDaily,
    /// Newest run of its ISO week, among the runs inside the keep-within-weekly duration.
    WithinWeekly,
    /// Newest run of its month, among the runs inside the keep-within-monthly duration.
    WithinMonthly,
    /// Newest run of its year, among the runs inside the keep-within-yearly duration.
    WithinYearly,
    /// The policy keeps every complete run forever.
    Forever,
    /// The run is pinned.
    Pinned,
    /// The newest complete, verified run of one of its components.
    NewestVerified,
    /// The newest complete run of one of its components, verified or not: no component is
    /// ever pruned to nothing.
    NewestComplete,
    /// The catalog found the run damaged: never deleted automatically (see
    /// [`RunDecision::damage`] for why it is damaged).
    Damaged,
    /// A failed or incomplete run still inside its grace period (it may still be running).
    GracePeriod,
}

impl KeepReason {
    /// A short snake_case name (`last`, `newest_verified`, …), as in serialized form.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::Last => "last",
            KeepReason::Within => "within",
            KeepReason::Daily => "daily",
            KeepReason::Weekly => "weekly",
            KeepReason::Monthly => "monthly",
            KeepReason::Yearly => "yearly",
            KeepReason::WithinDaily => "within_daily",
            KeepReason::WithinWeekly => "within_weekly",
            KeepReason::WithinMonthly => "within_monthly",
            KeepReason::WithinYearly => "within_yearly",
            KeepReason::Forever => "forever",
            KeepReason::Pinned => "pinned",
            KeepReason::NewestVerified => "newest_verified",
            KeepReason::NewestComplete => "newest_complete",
            KeepReason::Damaged => "damaged",
            KeepReason::GracePeriod => "grace_period",
        }
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionAction {
    /// Keep it, for these reasons (never empty).
    Keep(Vec<KeepReason>),
    /// Forget it: delete its manifest first, then its artifacts.
    Forget,
}

impl RetentionAction {
    /// The reasons a run is kept (empty when it is forgotten).
    pub fn reasons(&self) -> &[KeepReason] {
        match self {
            RetentionAction::Keep(r) => r,
            RetentionAction::Forget => &[],
        }
    }

    /// `Keep` with the reasons sorted and deduplicated, or `Forget` when there are none.
    pub(super) fn from_reasons(reasons: BTreeSet<KeepReason>) -> Self {
        if reasons.is_empty() {
            RetentionAction::Forget
        } else {
            RetentionAction::Keep(reasons.into_iter().collect())
        }
    }
}

/// The decision for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDecision {
    /// The run.
    pub run_id: RunId,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its status.
    pub status: RunStatus,
    /// Keep or forget.
    pub action: RetentionAction,
    /// Per component, the reasons the component's own rules keep the run (empty: they
    /// forget it). Filled by per-component policies ([`super::ComponentRules`]); whole-run
    /// policies leave it empty. Run-wide reasons (pinned, damaged) are only in `action`.
    pub components: BTreeMap<String, Vec<KeepReason>>,
    /// Why the run is damaged, when it is (it is then kept with [`KeepReason::Damaged`]).
    pub damage: Option<RunDamage>,
    /// The run's newest activity the decision saw ([`RunSummary::last_activity`]):
    /// applying the plan leaves an unfinished run alone if it has been active since (or if
    /// this is `None` and the sink reports times: build decisions with [`RunDecision::new`]).
    pub last_activity: Option<DateTime<Utc>>,
}

impl RunDecision {
    /// The decision `action` for `run`, with no per-component reasons.
    pub fn new(run: &RunSummary, action: RetentionAction) -> Self {
        RunDecision {
            run_id: run.run_id.clone(),
            started_at: run.started_at,
            status: run.status,
            action,
            components: BTreeMap::new(),
            damage: run.damage.clone(),
            last_activity: run.last_activity,
        }
    }

    /// Whether the run is kept.
    pub fn is_kept(&self) -> bool {
        matches!(self.action, RetentionAction::Keep(_))
    }

    /// The reasons the run is kept (empty when it is forgotten).
    pub fn reasons(&self) -> &[KeepReason] {
        self.action.reasons()
    }
}

/// A plan: one decision per run, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPlan {
    /// The time the plan was made for.
    pub now: DateTime<Utc>,
    /// Decisions, newest run first.
    pub decisions: Vec<RunDecision>,
}

impl RetentionPlan {
    /// Runs to keep.
    pub fn kept(&self) -> impl Iterator<Item = &RunDecision> {
        self.decisions.iter().filter(|d| d.is_kept())
    }

    /// Runs to forget.
    pub fn forgotten(&self) -> impl Iterator<Item = &RunDecision> {
        self.decisions.iter().filter(|d| !d.is_kept())
    }

    /// The decision for a run, if the plan has one.
    pub fn decision(&self, run_id: &RunId) -> Option<&RunDecision> {
        self.decisions.iter().find(|d| &d.run_id == run_id)
    }
}

/// A readable table of a plan, one line per run (newest first): run id, start time, status,
/// keep or forget, and the reasons (per component too, for per-component policies, and why a
/// damaged run is damaged). Used by examples and dry runs.
pub fn summarize(plan: &RetentionPlan) -> String {
    plan.to_string()
}

fn join(reasons: &[KeepReason]) -> String {
    if reasons.is_empty() {
        return String::from("-");
    }
    reasons
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for RetentionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = self.kept().count();
        writeln!(
            f,
            "retention plan at {}: {} runs, {} kept, {} forgotten",
            self.now.format("%Y-%m-%dT%H:%M:%SZ"),
            self.decisions.len(),
            kept,
            self.decisions.len() - kept
        )?;
        let id_width = self
            .decisions
            .iter()
            .map(|d| d.run_id.as_str().len())
            .chain(std::iter::once("RUN ID".len()))
            .max()
            .unwrap_or(0);
        writeln!(
            f,
            "{:<id_width$}  {:<20}  {:<10}  {:<6}  REASONS",
            "RUN ID", "STARTED", "STATUS", "ACTION"
        )?;
        for d in &self.decisions {
            let action = if d.is_kept() { "keep" } else { "forget" };
            let mut reasons = join(d.reasons());
            if !d.components.is_empty() {
                let per: Vec<String> = d
                    .components
                    .iter()
                    .map(|(c, r)| format!("{c}: {}", join(r)))
                    .collect();
                reasons.push_str(&format!(" [{}]", per.join("; ")));
            }
            if let Some(damage) = &d.damage {
                reasons.push_str(&format!(" (damaged: {damage})"));
            }
            writeln!(
                f,
                "{:<id_width$}  {:<20}  {:<10}  {:<6}  {}",
                d.run_id.as_str(),
                d.started_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                d.status.to_string(),
                action,
                reasons
            )?;
        }
        Ok(())
    }
}
