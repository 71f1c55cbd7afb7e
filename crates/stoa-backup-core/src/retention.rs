//! Retention: which runs to keep, as a pure function of run summaries and `now`.
//!
//! Calendar buckets (daily, ISO-weekly, monthly, yearly) are computed in UTC.
//! `keep_within` is measured backwards from `now`, not from the newest run.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::manifest::{RunId, RunStatus, RunSummary};

/// A retention policy: a pure plan from run summaries and the current time.
pub trait RetentionPolicy: Send + Sync + fmt::Debug {
    /// Decides, for every run given, whether to keep it (and why) or forget it.
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan;
}

/// How many calendar buckets a GFS rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepCount {
    /// The newest run of each of the last N buckets that have runs.
    Last(u32),
    /// The newest run of every bucket, forever.
    Unlimited,
}

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
    /// The policy keeps every complete run forever.
    Forever,
    /// The run is pinned.
    Pinned,
    /// The newest verified run is always kept.
    NewestVerified,
    /// A failed or incomplete run still inside its grace period (it may still be running).
    GracePeriod,
}

/// What to do with one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionAction {
    /// Keep it, for these reasons (never empty).
    Keep(Vec<KeepReason>),
    /// Forget it: delete its manifest first, then its artifacts.
    Forget,
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
}

impl RunDecision {
    /// Whether the run is kept.
    pub fn is_kept(&self) -> bool {
        matches!(self.action, RetentionAction::Keep(_))
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
}

/// Keep rules, restic/GFS style. A run is kept if any rule keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepRules {
    /// Keep the last N complete runs.
    pub last: Option<u32>,
    /// Keep complete runs that started within this duration before `now`.
    #[serde(with = "duration_secs_opt", default)]
    pub within: Option<Duration>,
    /// Keep the newest complete run of each day.
    pub daily: Option<KeepCount>,
    /// Keep the newest complete run of each ISO week.
    pub weekly: Option<KeepCount>,
    /// Keep the newest complete run of each month.
    pub monthly: Option<KeepCount>,
    /// Keep the newest complete run of each year.
    pub yearly: Option<KeepCount>,
    /// Keep every complete run forever.
    pub forever: bool,
    /// Failed and incomplete runs younger than this are left alone (they may still be running).
    #[serde(with = "duration_secs")]
    pub incomplete_grace: Duration,
}

mod duration_secs {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_seconds())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::seconds(i64::deserialize(d)?))
    }
}

mod duration_secs_opt {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.num_seconds()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(Duration::seconds))
    }
}
