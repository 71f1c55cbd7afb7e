//! What a recovery would do ([`RecoveryPlan`]) and what it did ([`RecoveryReport`],
//! [`DrillReport`]), as tables for people and as JSON (serde) for tools.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, RunId};
use crate::restore::{KeyNeeded, RecoveryPoint, RestorePlan, RestoreReport};

use super::{ChecklistReport, StepKind, StepStatus, Verdict};

/// One step of a [`RecoveryPlan`].
#[derive(Debug, Clone, Serialize)]
pub struct StepPlan {
    /// The step's name.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// The component a restore step restores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The run it restores from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// How many artifacts it restores.
    pub artifacts: usize,
    /// What it would change, in the counts every restorer uses (for the checks step: none,
    /// with the checks listed in the notes).
    pub report: RestoreReport,
    /// The keys it needs.
    pub keys: Vec<KeyNeeded>,
    /// The checks a checks step runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// The steps it runs after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// How long its preflight and plan took, in milliseconds.
    pub duration_ms: u64,
    /// The restore driver's plan (restore steps), applied as planned.
    #[serde(skip)]
    pub(super) restore_plan: Option<RestorePlan>,
}

/// What a [`Recovery`](super::Recovery) would do, step by step, with no write made.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryPlan {
    /// The runs it restores.
    pub point: RecoveryPoint,
    /// Per step, in running order.
    pub steps: Vec<StepPlan>,
    /// Every key needed, over all steps, once each.
    pub keys: Vec<KeyNeeded>,
    /// The counts of every step added up.
    pub totals: RestoreReport,
    /// The RTO the recovery is judged by, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_secs: Option<u64>,
    /// The manifests of the picked runs.
    #[serde(skip)]
    pub(super) runs: BTreeMap<RunId, Manifest>,
}

impl RecoveryPlan {
    /// The plan as a table: step, run, artifacts, what would change, keys; then the point's
    /// skew against the RPO.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<3} {:<18} {:<24} {:>9} {:>7} {:>7} {:>7} {:>9}  keys\n",
            "#", "step", "run", "artifacts", "create", "update", "skip", "conflict"
        );
        for (i, s) in self.steps.iter().enumerate() {
            let keys = if s.keys.is_empty() {
                "-".to_string()
            } else {
                s.keys
                    .iter()
                    .map(|k| match k.held {
                        Some(true) => k.name.clone(),
                        Some(false) => format!("{} (MISSING)", k.name),
                        None => format!("{} (check)", k.name),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let run = match (&s.run_id, s.kind) {
                (Some(r), _) => r.to_string(),
                (None, StepKind::Checks) => format!("{} checks", s.checks.len()),
                (None, _) => "-".into(),
            };
            out.push_str(&format!(
                "{:<3} {:<18} {:<24} {:>9} {:>7} {:>7} {:>7} {:>9}  {}\n",
                i + 1,
                s.name,
                run,
                s.artifacts,
                s.report.created,
                s.report.updated,
                s.report.skipped,
                s.report.conflicts,
                keys
            ));
        }
        out.push_str(&format!(
            "{:<3} {:<18} {:<24} {:>9} {:>7} {:>7} {:>7} {:>9}\n",
            "",
            "total",
            "",
            self.steps.iter().map(|s| s.artifacts).sum::<usize>(),
            self.totals.created,
            self.totals.updated,
            self.totals.skipped,
            self.totals.conflicts
        ));
        out.push_str(&format!(
            "runs up to {} s apart{}\n",
            self.point.skew_secs,
            match self.point.skew_within_rpo {
                Some(true) => " (within the RPO)",
                Some(false) => " (BEYOND the RPO)",
                None => "",
            }
        ));
        out
    }
}

/// One step of a [`RecoveryReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// The run it restored from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// How it ended.
    pub status: StepStatus,
    /// Whether it was done by an earlier call (a resumed recovery skips it).
    pub done_earlier: bool,
    /// What it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<RestoreReport>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// The recovery's id (its journal: `recoveries/<id>/journal.json`).
    pub recovery_id: String,
    /// The runs it restored.
    pub point: RecoveryPoint,
    /// Per step, in running order (also those done by an earlier call).
    pub steps: Vec<StepReport>,
    /// What the checks found, when there was a checks step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecklistReport>,
    /// Failed when a check failed.
    pub verdict: Verdict,
    /// The steps' durations added up (over every call), in milliseconds.
    pub steps_ms: u64,
    /// From the recovery's start (its first call) to now, in milliseconds: what the RTO is
    /// judged by.
    pub elapsed_ms: u64,
    /// The RTO given, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_secs: Option<u64>,
    /// Whether `elapsed_ms` is within the RTO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_rto: Option<bool>,
}

impl RecoveryReport {
    /// The report as a table: one line per step with its duration, then the checks, then
    /// the total against the RTO and the verdict.
    pub fn table(&self) -> String {
        let mut out = format!(
            "recovery {}\n{:<3} {:<18} {:<9} {:>7} {:>7} {:>7} {:>9} {:>10}\n",
            self.recovery_id, "#", "step", "status", "create", "update", "skip", "conflict", "ms"
        );
        for (i, s) in self.steps.iter().enumerate() {
            let r = s.report.clone().unwrap_or_default();
            let status = match (s.status, s.done_earlier) {
                (StepStatus::Done, true) => "earlier",
                (StepStatus::Done, false) => "done",
                (StepStatus::Failed, _) => "FAILED",
                (StepStatus::Running, _) => "running",
                (StepStatus::Pending, _) => "pending",
            };
            out.push_str(&format!(
                "{:<3} {:<18} {:<9} {:>7} {:>7} {:>7} {:>9} {:>10}\n",
                i + 1,
                s.name,
                status,
                r.created,
                r.updated,
                r.skipped,
                r.conflicts,
                s.duration_ms
            ));
        }
        if let Some(c) = &self.checks {
            out.push('\n');
            out.push_str(&c.table());
        }
        out.push_str(&format!(
            "time to recover: {:.1} s{}\nverdict: {}\n",
            self.elapsed_ms as f64 / 1000.0,
            match (self.rto_secs, self.within_rto) {
                (Some(rto), Some(true)) => format!(" (within the RTO of {rto} s)"),
                (Some(rto), Some(false)) => format!(" (BEYOND the RTO of {rto} s)"),
                _ => String::new(),
            },
            match self.verdict {
                Verdict::Passed => "passed",
                Verdict::Failed => "FAILED",
            }
        ));
        out
    }
}

/// What a drill did: the recovery into scratch targets, and the clean-up that followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The recovery (its checks included); `None` when it stopped at a step (see `error`).
    pub recovery: Option<RecoveryReport>,
    /// Why the recovery stopped, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The restore steps' durations added up, in milliseconds: the measured time to
    /// restore, the RTO evidence.
    pub time_to_restore_ms: u64,
    /// Per step with a scratch target: what its clean-up removed, or why it could not.
    pub cleaned_up: Vec<CleanedUp>,
    /// Passed when the recovery ran to its end, every check passed and every clean-up
    /// succeeded.
    pub verdict: Verdict,
}

/// One clean-up of a [`DrillReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanedUp {
    /// The step whose scratch target it removed.
    pub step: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it removed, or the error.
    pub detail: String,
}

impl DrillReport {
    /// The drill as a table: the recovery's, then the clean-ups.
    pub fn table(&self) -> String {
        let mut out = match (&self.recovery, &self.error) {
            (Some(r), _) => r.table(),
            (None, Some(e)) => format!("recovery stopped: {e}\n"),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "time to restore (restore steps): {:.1} s\n",
            self.time_to_restore_ms as f64 / 1000.0
        ));
        for c in &self.cleaned_up {
            out.push_str(&format!(
                "clean-up {:<18} {}  {}\n",
                c.step,
                if c.ok { "ok" } else { "FAILED" },
                c.detail
            ));
        }
        out.push_str(&format!(
            "drill verdict: {}\n",
            match self.verdict {
                Verdict::Passed => "passed",
                Verdict::Failed => "FAILED",
            }
        ));
        out
    }
}
