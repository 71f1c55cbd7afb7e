//! The recovery journal: one JSON document per recovery in the sink, beside the runs
//! (`recoveries/<id>/journal.json`), rewritten (atomically, as every put) before and after
//! each step, so an interrupted or failed recovery can be resumed and audited.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::restore::{ExistingDataPolicy, RecoveryPoint, RestoreReport};
use crate::sink::{Sink, SinkExt};

use super::{ChecklistReport, StepKind};

/// Where journals live in a sink: `recoveries/<id>/journal.json`. The catalog lists only
/// `runs/`, so journals are never taken for runs nor touched by retention.
pub const JOURNALS_PREFIX: &str = "recoveries";

const FORMAT: u32 = 1;

/// Where a step of a journalled recovery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Started and not finished: the process running it stopped, or is still running.
    Running,
    /// Done (for the checks step: every check passed or was skipped).
    Done,
    /// Failed (for the checks step: a check failed); a resume runs it again.
    Failed,
}

/// Where a journalled recovery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStatus {
    /// Steps are running, or the process stopped mid-way.
    Running,
    /// Every step is done and the checks passed.
    Completed,
    /// A step failed, or a check did: see the steps.
    Failed,
}

/// One step in a [`RecoveryJournal`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalStep {
    /// The step's name.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// The run it restores from (restore steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Where it stands.
    pub status: StepStatus,
    /// When it last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it last finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// How long its last attempt took, in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
    /// What it did (restore and custom steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<RestoreReport>,
    /// What the checks found (the checks step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecklistReport>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many times it was started.
    #[serde(default)]
    pub attempts: u32,
}

/// The record of one recovery, kept in the sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryJournal {
    /// Format version of this document.
    pub format: u32,
    /// The recovery's id (`<UTC time>-<random>`).
    pub recovery_id: String,
    /// Whether it is a drill (into scratch targets).
    #[serde(default)]
    pub drill: bool,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When the journal was last written.
    pub updated_at: DateTime<Utc>,
    /// Where it stands.
    pub status: RecoveryStatus,
    /// The existing-data policy it runs with.
    pub existing: ExistingDataPolicy,
    /// The runs it restores, per component.
    pub point: RecoveryPoint,
    /// Its steps, in running order.
    pub steps: Vec<JournalStep>,
}

impl RecoveryJournal {
    /// A new id for a recovery starting at `at`.
    pub(super) fn new_id(at: DateTime<Utc>) -> String {
        let suffix: u32 = rand::random::<u32>() & 0x00ff_ffff;
        format!("{}-{suffix:06x}", at.format("%Y%m%dT%H%M%SZ"))
    }

    /// The journal's key for recovery `id`; fails for an id that is not one.
    pub fn key(id: &str) -> Result<ObjectKey> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error::config(format!("'{id}' is not a recovery id"))
                .with_operation("read recovery journal")
                .with_hint("use the id a recovery's report or error gave"));
        }
        ObjectKey::new(format!("{JOURNALS_PREFIX}/{id}/journal.json"))
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&JournalStep> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The first step not done (where a resume starts).
    pub fn first_not_done(&self) -> Option<&JournalStep> {
        self.steps.iter().find(|s| s.status != StepStatus::Done)
    }

    /// The failed step, if any.
    pub fn failed_step(&self) -> Option<&JournalStep> {
        self.steps.iter().find(|s| s.status == StepStatus::Failed)
    }

    pub(super) fn step_mut(&mut self, name: &str) -> &mut JournalStep {
        self.steps
            .iter_mut()
            .find(|s| s.name == name)
            .expect("the journal holds every step of its recovery")
    }

    /// Writes the journal to `sink` (replacing the previous version atomically).
    pub async fn write(&mut self, sink: &dyn Sink) -> Result<()> {
        self.updated_at = Utc::now();
        let key = Self::key(&self.recovery_id)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot encode the journal: {e}"),
            )
        })?;
        sink.put_bytes(&key, Bytes::from(json))
            .await
            .map(|_| ())
            .map_err(|e| {
                e.or_component("recovery")
                    .or_operation("write recovery journal")
                    .or_artifact(key.to_string())
            })
    }

    /// Reads the journal of recovery `id` from `sink`.
    pub async fn read(sink: &dyn Sink, id: &str) -> Result<RecoveryJournal> {
        let key = Self::key(id)?;
        let named = |e: Error| {
            e.or_component("recovery")
                .or_operation("read recovery journal")
                .or_artifact(key.to_string())
        };
        let bytes = sink.get_bytes(&key).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                named(
                    Error::new(ErrorKind::NotFound, format!("no journal of recovery {id}"))
                        .with_hint("list the journals with Recovery::journals"),
                )
            } else {
                named(e)
            }
        })?;
        let journal: RecoveryJournal = serde_json::from_slice(&bytes).map_err(|e| {
            named(Error::new(
                ErrorKind::Integrity,
                format!("the journal is not valid JSON of a recovery journal: {e}"),
            ))
        })?;
        if journal.format > FORMAT {
            return Err(named(
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "the journal has format {}, newer than this library's {FORMAT}",
                        journal.format
                    ),
                )
                .with_hint("resume with the version of the library that started it"),
            ));
        }
        Ok(journal)
    }

    /// The ids of the recoveries journalled in `sink`, newest first.
    pub async fn list(sink: &dyn Sink) -> Result<Vec<String>> {
        let objects = sink.list(JOURNALS_PREFIX).await.map_err(|e| {
            e.or_component("recovery")
                .or_operation("list recovery journals")
        })?;
        let mut ids: Vec<String> = objects
            .iter()
            .filter_map(|o| {
                let mut seg = o.key.segments();
                match (seg.next(), seg.next(), seg.next(), seg.next()) {
                    (Some(JOURNALS_PREFIX), Some(id), Some("journal.json"), None) => {
                        Some(id.to_string())
                    }
                    _ => None,
                }
            })
            .collect();
        ids.sort();
        ids.reverse();
        Ok(ids)
    }

    pub(super) fn format() -> u32 {
        FORMAT
    }
}
