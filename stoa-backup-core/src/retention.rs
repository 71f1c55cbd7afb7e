//! Retention: which runs to keep, as a pure function of run summaries and `now`.
//!
//! Calendar buckets (daily, ISO-weekly, monthly, yearly) are computed in UTC.
//! `keep_within` is measured backwards from `now`, not from the newest run.
//!
//! # Semantics of [`KeepRules`]
//!
//! Planning is a pure function: the same runs and the same `now` always give the same plan,
//! whatever the order the runs are given in. Nothing is deleted here; applying a plan is a
//! separate step.
//!
//! * Only runs with status [`RunStatus::Complete`] are backups. Failed, partial and
//!   incomplete runs never count toward any keep rule (they never take a "last N" place nor a
//!   calendar bucket) and are never kept as backups. They are kept with
//!   [`KeepReason::GracePeriod`] while `now - started_at < incomplete_grace` (they may still be
//!   running or being cleaned up, and runs dated after `now` are always inside the grace
//!   period); afterwards they are forgotten.
//! * `last: Some(n)` keeps the `n` newest complete runs ([`KeepReason::Last`]).
//! * `within: Some(d)` keeps complete runs with `started_at >= now - d`
//!   ([`KeepReason::Within`]); runs dated after `now` are inside the window.
//! * `daily`, `weekly`, `monthly`, `yearly` (restic semantics): complete runs are walked
//!   newest first and put into buckets: the UTC calendar day, the ISO week (ISO year and
//!   ISO week number, so 2024-12-30 belongs to 2025-W01), the calendar month, the calendar
//!   year. The newest run of each bucket is kept, for the newest `N` buckets that have
//!   complete runs ([`KeepCount::Last`]) or for every bucket ([`KeepCount::Unlimited`]).
//!   Buckets without runs do not use up the count.
//! * `forever: true` keeps every complete run ([`KeepReason::Forever`]).
//! * Always, whatever the rules: pinned runs are kept ([`KeepReason::Pinned`]), whatever their
//!   status; the newest run that is complete *and* verified is kept
//!   ([`KeepReason::NewestVerified`]).
//! * A kept run lists every reason that applies, sorted and without duplicates.
//! * Decisions come newest first: by `started_at` descending, then `run_id` descending.
//!   Every input run gets exactly one decision.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{RunId, RunStatus, RunSummary};

/// A retention policy: a pure plan from run summaries and the current time.
pub trait RetentionPolicy: Send + Sync + fmt::Debug {
    /// Decides, for every run given, whether to keep it (and why) or forget it.
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan;
}

macro_rules! forward_retention_policy {
    ($($ptr:ident),+) => {$(
        /// Forwards to the wrapped policy, so a shared or boxed policy (also
        /// `Arc<dyn RetentionPolicy>`, `Box<dyn RetentionPolicy>`) is a policy itself.
        impl<P: RetentionPolicy + ?Sized> RetentionPolicy for $ptr<P> {
            fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
                (**self).plan(runs, now)
            }
        }
    )+};
}

forward_retention_policy!(Arc, Box);

/// How many calendar buckets a GFS rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepCount {
    /// The newest run of each of the last N buckets that have runs.
    Last(u32),
    /// The newest run of every bucket, forever.
    Unlimited,
}

impl KeepCount {
    /// How many buckets this keeps (`usize::MAX` for [`KeepCount::Unlimited`]).
    fn limit(self) -> usize {
        match self {
            KeepCount::Last(n) => usize::try_from(n).unwrap_or(usize::MAX),
            KeepCount::Unlimited => usize::MAX,
        }
    }
}

impl fmt::Display for KeepCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepCount::Last(n) => write!(f, "last {n}"),
            KeepCount::Unlimited => f.write_str("unlimited"),
        }
    }
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
            KeepReason::Forever => "forever",
            KeepReason::Pinned => "pinned",
            KeepReason::NewestVerified => "newest_verified",
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
    fn from_reasons(reasons: BTreeSet<KeepReason>) -> Self {
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
}

impl RunDecision {
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
/// keep or forget, and the reasons. Used by examples and dry runs.
pub fn summarize(plan: &RetentionPlan) -> String {
    plan.to_string()
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
            let (action, reasons) = match &d.action {
                RetentionAction::Keep(r) => (
                    "keep",
                    r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                ),
                RetentionAction::Forget => ("forget", String::from("-")),
            };
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

/// Keep rules, restic/GFS style. A run is kept if any rule keeps it.
///
/// See the [module documentation](self) for the exact semantics. Only complete runs are
/// backups; pinned runs and the newest complete, verified run are always kept; failed,
/// partial and incomplete runs are kept only during `incomplete_grace`.
///
/// [`KeepRules::default()`] keeps nothing beyond those always-rules, with a grace period of
/// 24 hours. Build rules with the `keep_*` methods and check them with
/// [`KeepRules::validate`]:
///
/// ```
/// use chrono::Duration;
/// use stoa_backup_core::retention::{KeepCount, KeepRules};
///
/// let rules = KeepRules::new()
///     .keep_last(3)
///     .keep_within(Duration::days(2))
///     .keep_daily(KeepCount::Last(7))
///     .keep_weekly(KeepCount::Last(4))
///     .keep_monthly(KeepCount::Unlimited);
/// rules.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeepRules {
    /// Keep the last N complete runs.
    pub last: Option<u32>,
    /// Keep complete runs that started within this duration before `now`
    /// (`started_at >= now - within`).
    #[serde(with = "duration_secs_opt", default)]
    pub within: Option<Duration>,
    /// Keep the newest complete run of each UTC calendar day.
    pub daily: Option<KeepCount>,
    /// Keep the newest complete run of each ISO week (ISO year and week number, UTC).
    pub weekly: Option<KeepCount>,
    /// Keep the newest complete run of each UTC calendar month.
    pub monthly: Option<KeepCount>,
    /// Keep the newest complete run of each UTC calendar year.
    pub yearly: Option<KeepCount>,
    /// Keep every complete run forever.
    pub forever: bool,
    /// Failed, partial and incomplete runs younger than this are kept with
    /// [`KeepReason::GracePeriod`] (they may still be running); older ones are forgotten.
    #[serde(with = "duration_secs")]
    pub incomplete_grace: Duration,
}

/// The default grace period for failed and incomplete runs: 24 hours.
const DEFAULT_INCOMPLETE_GRACE_SECS: i64 = 24 * 60 * 60;

impl Default for KeepRules {
    /// Keeps nothing beyond the always-rules (pinned runs, the newest verified run, failed or
    /// incomplete runs younger than 24 hours).
    fn default() -> Self {
        KeepRules {
            last: None,
            within: None,
            daily: None,
            weekly: None,
            monthly: None,
            yearly: None,
            forever: false,
            incomplete_grace: Duration::seconds(DEFAULT_INCOMPLETE_GRACE_SECS),
        }
    }
}

impl KeepRules {
    /// The same as [`KeepRules::default()`]: nothing kept beyond the always-rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the `n` newest complete runs.
    pub fn keep_last(mut self, n: u32) -> Self {
        self.last = Some(n);
        self
    }

    /// Keeps complete runs that started at or after `now - d`.
    pub fn keep_within(mut self, d: Duration) -> Self {
        self.within = Some(d);
        self
    }

    /// Keeps the newest complete run of each UTC day, for `count` days that have runs.
    pub fn keep_daily(mut self, count: KeepCount) -> Self {
        self.daily = Some(count);
        self
    }

    /// Keeps the newest complete run of each ISO week, for `count` weeks that have runs.
    pub fn keep_weekly(mut self, count: KeepCount) -> Self {
        self.weekly = Some(count);
        self
    }

    /// Keeps the newest complete run of each month, for `count` months that have runs.
    pub fn keep_monthly(mut self, count: KeepCount) -> Self {
        self.monthly = Some(count);
        self
    }

    /// Keeps the newest complete run of each year, for `count` years that have runs.
    pub fn keep_yearly(mut self, count: KeepCount) -> Self {
        self.yearly = Some(count);
        self
    }

    /// Keeps every complete run.
    pub fn keep_forever(mut self) -> Self {
        self.forever = true;
        self
    }

    /// Sets how long failed, partial and incomplete runs are left alone (default 24 hours).
    pub fn incomplete_grace(mut self, grace: Duration) -> Self {
        self.incomplete_grace = grace;
        self
    }

    /// Whether the rules keep nothing beyond the always-rules (pinned runs, the newest
    /// verified run, runs inside the grace period).
    pub fn keeps_only_always_rules(&self) -> bool {
        self.last.is_none()
            && self.within.is_none()
            && self.daily.is_none()
            && self.weekly.is_none()
            && self.monthly.is_none()
            && self.yearly.is_none()
            && !self.forever
    }

    /// Checks the rules without looking at any run: counts of zero (`keep_last(0)`,
    /// `KeepCount::Last(0)`), a zero or negative `within`, and a negative
    /// `incomplete_grace` are refused with a [`crate::ErrorKind::Config`] error and a hint.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String, hint: &str| {
            Err(Error::config(message)
                .with_component("retention")
                .with_operation("validate keep rules")
                .with_hint(hint))
        };
        if self.last == Some(0) {
            return invalid(
                "keep last is 0: it would keep no run".into(),
                "set keep last to at least 1, or leave it unset to disable the rule",
            );
        }
        for (name, count) in [
            ("keep daily", self.daily),
            ("keep weekly", self.weekly),
            ("keep monthly", self.monthly),
            ("keep yearly", self.yearly),
        ] {
            if count == Some(KeepCount::Last(0)) {
                return invalid(
                    format!("{name} is last 0: it would keep no run"),
                    "use a count of at least 1, `unlimited`, or leave the rule unset to disable it",
                );
            }
        }
        if let Some(d) = self.within {
            if d <= Duration::zero() {
                return invalid(
                    format!(
                        "keep within is {} seconds: it must be positive",
                        d.num_seconds()
                    ),
                    "give a positive duration (e.g. 7 days), or leave it unset to disable the rule",
                );
            }
        }
        if self.incomplete_grace < Duration::zero() {
            return invalid(
                format!(
                    "incomplete grace is {} seconds: it must not be negative",
                    self.incomplete_grace.num_seconds()
                ),
                "give a duration of zero or more; the default is 24 hours",
            );
        }
        Ok(())
    }
}

/// The runs sorted newest first: indices into `runs`, by `started_at` desc then `run_id` desc.
fn newest_first(runs: &[RunSummary]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&runs[a], &runs[b]);
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.run_id.cmp(&a.run_id))
    });
    order
}

/// Adds the rules every policy honours: pinned runs, and the newest complete verified run.
/// `reasons[i]` belongs to `runs[order[i]]`.
fn apply_always_rules(runs: &[RunSummary], order: &[usize], reasons: &mut [BTreeSet<KeepReason>]) {
    for (pos, &i) in order.iter().enumerate() {
        if runs[i].pinned {
            reasons[pos].insert(KeepReason::Pinned);
        }
    }
    if let Some(pos) = order
        .iter()
        .position(|&i| runs[i].status == RunStatus::Complete && runs[i].verified)
    {
        reasons[pos].insert(KeepReason::NewestVerified);
    }
}

/// Builds the plan from per-position reasons.
fn build_plan(
    runs: &[RunSummary],
    order: &[usize],
    reasons: Vec<BTreeSet<KeepReason>>,
    now: DateTime<Utc>,
) -> RetentionPlan {
    let decisions = order
        .iter()
        .zip(reasons)
        .map(|(&i, reasons)| RunDecision {
            run_id: runs[i].run_id.clone(),
            started_at: runs[i].started_at,
            status: runs[i].status,
            action: RetentionAction::from_reasons(reasons),
        })
        .collect();
    RetentionPlan { now, decisions }
}

/// A calendar bucket key; runs with equal keys share a bucket.
type BucketKey = (i32, u32);

/// Maps a start time to its bucket.
type BucketFn = fn(&DateTime<Utc>) -> BucketKey;

fn day_key(t: &DateTime<Utc>) -> BucketKey {
    (t.year(), t.ordinal())
}

fn iso_week_key(t: &DateTime<Utc>) -> BucketKey {
    let w = t.iso_week();
    (w.year(), w.week())
}

fn month_key(t: &DateTime<Utc>) -> BucketKey {
    (t.year(), t.month())
}

fn year_key(t: &DateTime<Utc>) -> BucketKey {
    (t.year(), 0)
}

impl RetentionPolicy for KeepRules {
    /// Plans retention with the semantics described in the [module documentation](self).
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
        let order = newest_first(runs);
        let mut reasons = vec![BTreeSet::new(); order.len()];
        // Positions (in `order`) of complete runs, newest first: the only backups.
        let complete: Vec<usize> = (0..order.len())
            .filter(|&pos| runs[order[pos]].status == RunStatus::Complete)
            .collect();

        if let Some(n) = self.last {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            for &pos in complete.iter().take(n) {
                reasons[pos].insert(KeepReason::Last);
            }
        }

        if let Some(d) = self.within {
            // A window reaching before the earliest representable time covers everything.
            let cutoff = now.checked_sub_signed(d);
            for &pos in &complete {
                if cutoff.is_none_or(|c| runs[order[pos]].started_at >= c) {
                    reasons[pos].insert(KeepReason::Within);
                }
            }
        }

        let calendar: [(Option<KeepCount>, BucketFn, KeepReason); 4] = [
            (self.daily, day_key, KeepReason::Daily),
            (self.weekly, iso_week_key, KeepReason::Weekly),
            (self.monthly, month_key, KeepReason::Monthly),
            (self.yearly, year_key, KeepReason::Yearly),
        ];
        for (count, key, reason) in calendar {
            let Some(count) = count else { continue };
            let limit = count.limit();
            let mut buckets = 0usize;
            let mut current: Option<BucketKey> = None;
            // Newest first, so the first run seen in a bucket is its newest.
            for &pos in &complete {
                let k = key(&runs[order[pos]].started_at);
                if current == Some(k) {
                    continue;
                }
                if buckets >= limit {
                    break;
                }
                buckets += 1;
                current = Some(k);
                reasons[pos].insert(reason);
            }
        }

        if self.forever {
            for &pos in &complete {
                reasons[pos].insert(KeepReason::Forever);
            }
        }

        for (pos, &i) in order.iter().enumerate() {
            let run = &runs[i];
            if run.status != RunStatus::Complete
                && now.signed_duration_since(run.started_at) < self.incomplete_grace
            {
                reasons[pos].insert(KeepReason::GracePeriod);
            }
        }

        apply_always_rules(runs, &order, &mut reasons);
        build_plan(runs, &order, reasons, now)
    }
}

/// A union of policies: a run is kept if any member keeps it (with the reasons of every
/// member that keeps it, merged, sorted and deduplicated), and forgotten only if every member
/// forgets it.
///
/// The always-rules hold for the union too, whatever the members do: pinned runs and the
/// newest complete, verified run are kept. An `AnyOf` with no members behaves like
/// [`KeepRules::default()`].
///
/// Members' decisions are matched to runs by run id and start time. A member decision
/// `Keep` with no reasons breaks the [`RetentionAction::Keep`] contract and counts as no vote.
///
/// ```
/// use stoa_backup_core::retention::{AnyOf, KeepCount, KeepRules};
///
/// let policy = AnyOf::new()
///     .or(KeepRules::new().keep_last(7))
///     .or(KeepRules::new().keep_monthly(KeepCount::Unlimited));
/// assert_eq!(policy.0.len(), 2);
/// ```
#[derive(Debug, Default)]
pub struct AnyOf(pub Vec<Box<dyn RetentionPolicy>>);

impl AnyOf {
    /// An empty union (behaves like [`KeepRules::default()`] until members are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a member policy.
    #[allow(clippy::should_implement_trait)]
    pub fn or(mut self, policy: impl RetentionPolicy + 'static) -> Self {
        self.0.push(Box::new(policy));
        self
    }

    /// Adds a boxed member policy.
    pub fn push(&mut self, policy: Box<dyn RetentionPolicy>) {
        self.0.push(policy);
    }
}

impl From<Vec<Box<dyn RetentionPolicy>>> for AnyOf {
    fn from(policies: Vec<Box<dyn RetentionPolicy>>) -> Self {
        AnyOf(policies)
    }
}

impl RetentionPolicy for AnyOf {
    /// Plans each member and merges their decisions, then applies the always-rules.
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
        if self.0.is_empty() {
            return KeepRules::default().plan(runs, now);
        }
        let order = newest_first(runs);
        let mut position: HashMap<(&RunId, DateTime<Utc>), Vec<usize>> = HashMap::new();
        for (pos, &i) in order.iter().enumerate() {
            position
                .entry((&runs[i].run_id, runs[i].started_at))
                .or_default()
                .push(pos);
        }
        let mut reasons = vec![BTreeSet::new(); order.len()];
        for member in &self.0 {
            let plan = member.plan(runs, now);
            for d in &plan.decisions {
                if let Some(positions) = position.get(&(&d.run_id, d.started_at)) {
                    for &pos in positions {
                        reasons[pos].extend(d.reasons().iter().copied());
                    }
                }
            }
        }
        apply_always_rules(runs, &order, &mut reasons);
        build_plan(runs, &order, reasons, now)
    }
}

mod duration_secs {
    use chrono::Duration;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_seconds())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = i64::deserialize(d)?;
        Duration::try_seconds(secs)
            .ok_or_else(|| D::Error::custom(format!("duration of {secs} seconds is out of range")))
    }
}

mod duration_secs_opt {
    use chrono::Duration;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.num_seconds()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<i64>::deserialize(d)? {
            None => Ok(None),
            Some(secs) => Duration::try_seconds(secs).map(Some).ok_or_else(|| {
                D::Error::custom(format!("duration of {secs} seconds is out of range"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::{NaiveDate, TimeZone, Weekday};
    use proptest::prelude::*;

    use super::*;
    use crate::ErrorKind;

    use KeepReason::*;
    use RunStatus::{Complete, Failed, Incomplete, Partial};

    /// `YYYY-MM-DDTHH:MM:SSZ` → time.
    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_else(|e| panic!("bad time {s}: {e}"))
    }

    /// A run id from a time and a tag, in the standard shape.
    fn id_at(at: DateTime<Utc>, tag: &str) -> RunId {
        RunId::parse(format!("{}-{tag}", at.format("%Y%m%dT%H%M%SZ"))).unwrap()
    }

    fn run_with(at: &str, status: RunStatus, verified: bool, pinned: bool) -> RunSummary {
        let started_at = t(at);
        let tag = match status {
            Complete => "c",
            Partial => "p",
            Failed => "f",
            Incomplete => "i",
        };
        RunSummary {
            run_id: id_at(started_at, tag),
            started_at,
            status,
            verified,
            pinned,
            components: vec!["postgres".into()],
            labels: BTreeMap::new(),
            stored_bytes: 1024,
        }
    }

    fn complete(at: &str) -> RunSummary {
        run_with(at, Complete, false, false)
    }

    fn failed(at: &str) -> RunSummary {
        run_with(at, Failed, false, false)
    }

    /// The ids of the kept runs, as strings, newest first.
    fn kept_ids(plan: &RetentionPlan) -> Vec<String> {
        plan.kept().map(|d| d.run_id.to_string()).collect()
    }

    /// The expected id of a run (see `run_with`).
    fn cid(at: &str) -> String {
        id_at(t(at), "c").to_string()
    }

    fn reasons_of(plan: &RetentionPlan, id: &str) -> Vec<KeepReason> {
        plan.decisions
            .iter()
            .find(|d| d.run_id.as_str() == id)
            .unwrap_or_else(|| panic!("no decision for {id}"))
            .reasons()
            .to_vec()
    }

    fn assert_one_decision_per_run(runs: &[RunSummary], plan: &RetentionPlan) {
        assert_eq!(plan.decisions.len(), runs.len());
        let mut want: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        let mut got: Vec<&str> = plan.decisions.iter().map(|d| d.run_id.as_str()).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(want, got);
    }

    #[test]
    fn shared_and_boxed_policies_forward_plan() {
        let runs = vec![
            complete("2026-03-01T02:00:00Z"),
            complete("2026-03-02T02:00:00Z"),
            complete("2026-03-03T02:00:00Z"),
        ];
        let now = t("2026-03-04T00:00:00Z");
        let keep_one = || KeepRules::new().keep_last(1);
        let want = keep_one().plan(&runs, now);
        assert_eq!(kept_ids(&want), vec![cid("2026-03-03T02:00:00Z")]);
        let policies: Vec<Box<dyn RetentionPolicy>> = vec![
            Box::new(Arc::new(keep_one())),
            Box::new(Arc::new(keep_one()) as Arc<dyn RetentionPolicy>),
            Box::new(Box::new(keep_one())),
            Box::new(keep_one()),
        ];
        for p in &policies {
            assert_eq!(p.plan(&runs, now), want);
        }
    }

    // ---- calendar facts the bucket tests rely on (checked against chrono, by hand) ----

    #[test]
    fn iso_week_facts_used_below() {
        let w = |s: &str| {
            let w = t(s).iso_week();
            (w.year(), w.week())
        };
        assert_eq!(w("2026-12-28T12:00:00Z"), (2026, 53)); // Monday
        assert_eq!(w("2026-12-31T12:00:00Z"), (2026, 53)); // Thursday
        assert_eq!(w("2027-01-03T12:00:00Z"), (2026, 53)); // Sunday
        assert_eq!(w("2027-01-04T00:00:00Z"), (2027, 1)); // Monday
        assert_eq!(w("2024-12-29T12:00:00Z"), (2024, 52)); // Sunday
        assert_eq!(w("2024-12-30T00:00:00Z"), (2025, 1)); // Monday
    }

    // ---- calendar buckets ----

    #[test]
    fn daily_keeps_newest_complete_run_of_each_day() {
        let runs = vec![
            complete("2026-03-01T01:00:00Z"),
            complete("2026-03-01T13:00:00Z"),
            complete("2026-03-01T23:59:59Z"),
            complete("2026-03-02T00:00:00Z"),
            complete("2026-03-02T06:00:00Z"),
            complete("2026-03-04T06:00:00Z"),
        ];
        let now = t("2026-03-10T00:00:00Z");
        let plan = KeepRules::new()
            .keep_daily(KeepCount::Last(2))
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![cid("2026-03-04T06:00:00Z"), cid("2026-03-02T06:00:00Z")]
        );
        // Days without runs (03-03) do not use up the count.
        let plan = KeepRules::new()
            .keep_daily(KeepCount::Last(3))
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![
                cid("2026-03-04T06:00:00Z"),
                cid("2026-03-02T06:00:00Z"),
                cid("2026-03-01T23:59:59Z"),
            ]
        );
        let plan = KeepRules::new()
            .keep_daily(KeepCount::Unlimited)
            .plan(&runs, now);
        assert_eq!(plan.kept().count(), 3);
        assert!(plan.kept().all(|d| d.reasons() == [Daily]));
    }

    #[test]
    fn monthly_boundary_jan31_feb1() {
        let runs = vec![
            complete("2026-01-30T12:00:00Z"),
            complete("2026-01-31T10:00:00Z"),
            complete("2026-01-31T23:59:59Z"),
            complete("2026-02-01T00:00:00Z"),
            complete("2026-02-01T09:00:00Z"),
        ];
        let now = t("2026-02-02T00:00:00Z");
        let plan = KeepRules::new()
            .keep_monthly(KeepCount::Last(2))
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![cid("2026-02-01T09:00:00Z"), cid("2026-01-31T23:59:59Z")]
        );
        let plan = KeepRules::new()
            .keep_monthly(KeepCount::Last(1))
            .plan(&runs, now);
        assert_eq!(kept_ids(&plan), vec![cid("2026-02-01T09:00:00Z")]);
        assert_eq!(
            reasons_of(&plan, &cid("2026-02-01T09:00:00Z")),
            vec![Monthly]
        );
    }

    #[test]
    fn leap_day_2028_is_its_own_day_in_february() {
        let runs = vec![
            complete("2028-02-28T02:00:00Z"),
            complete("2028-02-29T02:00:00Z"),
            complete("2028-02-29T22:00:00Z"),
            complete("2028-03-01T00:30:00Z"),
        ];
        let now = t("2028-03-02T00:00:00Z");
        let plan = KeepRules::new()
            .keep_daily(KeepCount::Unlimited)
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![
                cid("2028-03-01T00:30:00Z"),
                cid("2028-02-29T22:00:00Z"),
                cid("2028-02-28T02:00:00Z"),
            ]
        );
        let plan = KeepRules::new()
            .keep_monthly(KeepCount::Unlimited)
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![cid("2028-03-01T00:30:00Z"), cid("2028-02-29T22:00:00Z")]
        );
    }

    #[test]
    fn iso_week_53_spans_new_year_2027() {
        let runs = vec![
            complete("2026-12-27T12:00:00Z"), // Sunday, 2026-W52
            complete("2026-12-28T12:00:00Z"), // Monday, 2026-W53
            complete("2026-12-31T12:00:00Z"), // Thursday, 2026-W53
            complete("2027-01-03T12:00:00Z"), // Sunday, 2026-W53
            complete("2027-01-04T12:00:00Z"), // Monday, 2027-W01
            complete("2027-01-10T12:00:00Z"), // Sunday, 2027-W01
        ];
        let now = t("2027-01-11T00:00:00Z");
        let plan = KeepRules::new()
            .keep_weekly(KeepCount::Unlimited)
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![
                cid("2027-01-10T12:00:00Z"),
                cid("2027-01-03T12:00:00Z"),
                cid("2026-12-27T12:00:00Z"),
            ]
        );
        // The week 2026-W53 is one bucket although it spans two calendar years.
        let plan = KeepRules::new()
            .keep_weekly(KeepCount::Last(2))
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![cid("2027-01-10T12:00:00Z"), cid("2027-01-03T12:00:00Z")]
        );
        // Yearly uses calendar years, not ISO years: 2026-12-31 is the newest of 2026.
        let plan = KeepRules::new()
            .keep_yearly(KeepCount::Unlimited)
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![cid("2027-01-10T12:00:00Z"), cid("2026-12-31T12:00:00Z")]
        );
    }

    #[test]
    fn dec_30_2024_belongs_to_2025_w01() {
        let runs = vec![
            complete("2024-12-29T12:00:00Z"), // Sunday, 2024-W52
            complete("2024-12-30T12:00:00Z"), // Monday, 2025-W01
            complete("2024-12-31T12:00:00Z"), // Tuesday, 2025-W01
            complete("2025-01-05T12:00:00Z"), // Sunday, 2025-W01
        ];
        let now = t("2025-01-06T00:00:00Z");
        let plan = KeepRules::new()
            .keep_weekly(KeepCount::Unlimited)
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![cid("2025-01-05T12:00:00Z"), cid("2024-12-29T12:00:00Z")]
        );
        let plan = KeepRules::new()
            .keep_yearly(KeepCount::Unlimited)
            .plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![cid("2025-01-05T12:00:00Z"), cid("2024-12-31T12:00:00Z")]
        );
    }

    #[test]
    fn yearly_keeps_last_n_years_with_runs() {
        let runs = vec![
            complete("2022-06-01T00:00:00Z"),
            complete("2023-12-31T23:59:59Z"),
            complete("2024-01-01T00:00:00Z"),
            complete("2024-07-01T00:00:00Z"),
            complete("2026-01-01T00:00:00Z"),
        ];
        let now = t("2026-06-01T00:00:00Z");
        let plan = KeepRules::new()
            .keep_yearly(KeepCount::Last(3))
            .plan(&runs, now);
        // 2025 has no run and does not use up the count.
        assert_eq!(
            kept_ids(&plan),
            vec![
                cid("2026-01-01T00:00:00Z"),
                cid("2024-07-01T00:00:00Z"),
                cid("2023-12-31T23:59:59Z"),
            ]
        );
        assert!(plan.kept().all(|d| d.reasons() == [Yearly]));
    }

    // ---- last, within, forever ----

    #[test]
    fn keep_last_counts_only_complete_runs() {
        let runs = vec![
            complete("2026-05-01T00:00:00Z"),
            complete("2026-05-02T00:00:00Z"),
            complete("2026-05-03T00:00:00Z"),
            complete("2026-05-04T00:00:00Z"),
            failed("2026-05-05T00:00:00Z"),
            run_with("2026-05-05T01:00:00Z", Partial, false, false),
        ];
        let now = t("2026-06-01T00:00:00Z");
        let plan = KeepRules::new().keep_last(3).plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![
                cid("2026-05-04T00:00:00Z"),
                cid("2026-05-03T00:00:00Z"),
                cid("2026-05-02T00:00:00Z"),
            ]
        );
        assert!(plan.kept().all(|d| d.reasons() == [Last]));
        // More than there are: all complete runs, still no failed one.
        let plan = KeepRules::new().keep_last(10).plan(&runs, now);
        assert_eq!(plan.kept().count(), 4);
        assert!(plan.kept().all(|d| d.status == Complete));
    }

    #[test]
    fn keep_within_is_measured_from_now_not_from_newest_run() {
        let runs = vec![
            complete("2026-01-01T00:00:00Z"),
            complete("2026-02-27T00:00:00Z"),
            complete("2026-02-27T00:00:01Z"),
            complete("2026-02-28T12:00:00Z"),
        ];
        let now = t("2026-03-01T00:00:00Z");
        let plan = KeepRules::new()
            .keep_within(Duration::days(2))
            .plan(&runs, now);
        // The cutoff is 2026-02-27T00:00:00Z and is inclusive.
        assert_eq!(
            kept_ids(&plan),
            vec![
                cid("2026-02-28T12:00:00Z"),
                cid("2026-02-27T00:00:01Z"),
                cid("2026-02-27T00:00:00Z"),
            ]
        );
        assert!(plan.kept().all(|d| d.reasons() == [Within]));
        // Long after the newest run, the window is empty.
        let plan = KeepRules::new()
            .keep_within(Duration::days(2))
            .plan(&runs, t("2026-06-01T00:00:00Z"));
        assert_eq!(plan.kept().count(), 0);
    }

    #[test]
    fn keep_forever_keeps_every_complete_run_only() {
        let runs = vec![
            complete("2020-01-01T00:00:00Z"),
            complete("2021-01-01T00:00:00Z"),
            failed("2021-01-02T00:00:00Z"),
            run_with("2021-01-03T00:00:00Z", Partial, true, false),
            run_with("2021-01-04T00:00:00Z", Incomplete, false, false),
        ];
        let plan = KeepRules::new()
            .keep_forever()
            .plan(&runs, t("2026-01-01T00:00:00Z"));
        assert_eq!(
            kept_ids(&plan),
            vec![cid("2021-01-01T00:00:00Z"), cid("2020-01-01T00:00:00Z")]
        );
        assert!(plan.kept().all(|d| d.reasons() == [Forever]));
    }

    // ---- failed, partial and incomplete runs ----

    #[test]
    fn failed_run_newest_in_day_does_not_take_the_days_slot() {
        let runs = vec![
            complete("2026-04-01T02:00:00Z"),
            failed("2026-04-01T03:00:00Z"),
            complete("2026-04-02T02:00:00Z"),
            run_with("2026-04-02T05:00:00Z", Partial, true, false),
            run_with("2026-04-02T06:00:00Z", Incomplete, false, false),
        ];
        let now = t("2026-04-10T00:00:00Z");
        let plan = KeepRules::new()
            .keep_daily(KeepCount::Last(2))
            .keep_weekly(KeepCount::Last(1))
            .keep_last(1)
            .plan(&runs, now);
        assert_one_decision_per_run(&runs, &plan);
        assert_eq!(
            kept_ids(&plan),
            vec![cid("2026-04-02T02:00:00Z"), cid("2026-04-01T02:00:00Z")]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2026-04-02T02:00:00Z")),
            vec![Last, Daily, Weekly]
        );
        assert_eq!(reasons_of(&plan, &cid("2026-04-01T02:00:00Z")), vec![Daily]);
        assert!(plan.forgotten().all(|d| d.status != Complete));
        assert_eq!(plan.forgotten().count(), 3);
    }

    #[test]
    fn non_complete_runs_are_kept_only_inside_the_grace_period() {
        let now = t("2026-04-10T12:00:00Z");
        let runs = vec![
            run_with("2026-04-09T13:00:00Z", Incomplete, false, false), // 23h old
            run_with("2026-04-09T12:00:01Z", Failed, false, false),     // just under 24h
            run_with("2026-04-09T12:00:00Z", Partial, false, false),    // exactly 24h
            run_with("2026-04-09T11:00:00Z", Incomplete, false, false), // 25h old
            run_with("2026-04-11T00:00:00Z", Failed, false, false),     // in the future
        ];
        let plan = KeepRules::default().keep_forever().plan(&runs, now);
        let by_time: Vec<(String, Vec<KeepReason>)> = plan
            .decisions
            .iter()
            .map(|d| (d.started_at.to_rfc3339(), d.reasons().to_vec()))
            .collect();
        assert_eq!(
            by_time,
            vec![
                ("2026-04-11T00:00:00+00:00".to_string(), vec![GracePeriod]),
                ("2026-04-09T13:00:00+00:00".to_string(), vec![GracePeriod]),
                ("2026-04-09T12:00:01+00:00".to_string(), vec![GracePeriod]),
                ("2026-04-09T12:00:00+00:00".to_string(), vec![]),
                ("2026-04-09T11:00:00+00:00".to_string(), vec![]),
            ]
        );
        // A shorter grace period.
        let plan = KeepRules::new()
            .incomplete_grace(Duration::hours(1))
            .plan(&runs, now);
        assert_eq!(plan.kept().count(), 1);
        assert_eq!(
            plan.kept().next().unwrap().started_at,
            t("2026-04-11T00:00:00Z")
        );
    }

    // ---- always-rules ----

    #[test]
    fn pinned_runs_are_kept_whatever_their_status() {
        let runs = vec![
            run_with("2020-01-01T00:00:00Z", Complete, false, true),
            run_with("2020-01-02T00:00:00Z", Failed, false, true),
            run_with("2020-01-03T00:00:00Z", Incomplete, false, true),
            complete("2020-01-04T00:00:00Z"),
            run_with("2026-01-01T00:00:00Z", Complete, false, true),
        ];
        let now = t("2026-01-02T00:00:00Z");
        let plan = KeepRules::new().keep_last(1).plan(&runs, now);
        assert_one_decision_per_run(&runs, &plan);
        let reasons: Vec<(String, Vec<KeepReason>)> = plan
            .decisions
            .iter()
            .map(|d| (d.run_id.to_string(), d.reasons().to_vec()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (cid("2026-01-01T00:00:00Z"), vec![Last, Pinned]),
                (cid("2020-01-04T00:00:00Z"), vec![]),
                (
                    id_at(t("2020-01-03T00:00:00Z"), "i").to_string(),
                    vec![Pinned]
                ),
                (
                    id_at(t("2020-01-02T00:00:00Z"), "f").to_string(),
                    vec![Pinned]
                ),
                (cid("2020-01-01T00:00:00Z"), vec![Pinned]),
            ]
        );
    }

    #[test]
    fn newest_verified_complete_run_is_kept_even_when_rules_keep_nothing() {
        let runs = vec![
            run_with("2025-01-01T00:00:00Z", Complete, true, false),
            run_with("2025-02-01T00:00:00Z", Complete, true, false),
            run_with("2025-03-01T00:00:00Z", Complete, false, false),
            // Verified flags on non-complete runs do not count.
            run_with("2025-04-01T00:00:00Z", Partial, true, false),
            run_with("2025-05-01T00:00:00Z", Failed, true, false),
        ];
        let now = t("2026-01-01T00:00:00Z");
        let plan = KeepRules::default().plan(&runs, now);
        assert_eq!(kept_ids(&plan), vec![cid("2025-02-01T00:00:00Z")]);
        assert_eq!(
            reasons_of(&plan, &cid("2025-02-01T00:00:00Z")),
            vec![NewestVerified]
        );
        // No verified complete run: nothing is kept.
        let plan = KeepRules::default().plan(&runs[2..], now);
        assert_eq!(plan.kept().count(), 0);
        // Empty input: empty plan.
        let plan = KeepRules::default().plan(&[], now);
        assert!(plan.decisions.is_empty());
        assert_eq!(plan.now, now);
    }

    #[test]
    fn kept_run_lists_all_reasons_sorted_once() {
        let runs = vec![
            complete("2026-06-29T10:00:00Z"),
            run_with("2026-06-30T10:00:00Z", Complete, true, true),
        ];
        let now = t("2026-06-30T12:00:00Z");
        let rules = KeepRules::new()
            .keep_yearly(KeepCount::Last(1))
            .keep_monthly(KeepCount::Last(1))
            .keep_weekly(KeepCount::Last(1))
            .keep_daily(KeepCount::Last(1))
            .keep_within(Duration::days(1))
            .keep_last(1)
            .keep_forever();
        let plan = rules.plan(&runs, now);
        assert_eq!(
            reasons_of(&plan, &cid("2026-06-30T10:00:00Z")),
            vec![
                Last,
                Within,
                Daily,
                Weekly,
                Monthly,
                Yearly,
                Forever,
                Pinned,
                NewestVerified
            ]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2026-06-29T10:00:00Z")),
            vec![Forever]
        );
    }

    // ---- ordering, future runs ----

    #[test]
    fn decisions_are_newest_first_with_run_id_tiebreak_and_input_order_does_not_matter() {
        let at = t("2026-01-01T00:00:00Z");
        let mk = |tag: &str| RunSummary {
            run_id: id_at(at, tag),
            ..complete("2026-01-01T00:00:00Z")
        };
        let runs = vec![
            mk("a"),
            complete("2025-12-31T00:00:00Z"),
            mk("c"),
            complete("2026-01-02T00:00:00Z"),
            mk("b"),
        ];
        let now = t("2026-02-01T00:00:00Z");
        let rules = KeepRules::new().keep_daily(KeepCount::Unlimited);
        let plan = rules.plan(&runs, now);
        let ids: Vec<String> = plan
            .decisions
            .iter()
            .map(|d| d.run_id.to_string())
            .collect();
        assert_eq!(
            ids,
            vec![
                cid("2026-01-02T00:00:00Z"),
                id_at(at, "c").to_string(),
                id_at(at, "b").to_string(),
                id_at(at, "a").to_string(),
                cid("2025-12-31T00:00:00Z"),
            ]
        );
        // The greatest run id wins a tie for the day's slot.
        assert_eq!(reasons_of(&plan, &id_at(at, "c").to_string()), vec![Daily]);
        assert!(reasons_of(&plan, &id_at(at, "b").to_string()).is_empty());
        let mut reversed = runs.clone();
        reversed.reverse();
        assert_eq!(rules.plan(&reversed, now), plan);
    }

    #[test]
    fn runs_in_the_future_are_treated_normally() {
        let runs = vec![
            complete("2030-01-01T00:00:00Z"),
            complete("2026-01-01T00:00:00Z"),
            failed("2031-01-01T00:00:00Z"),
        ];
        let now = t("2026-01-02T00:00:00Z");
        let plan = KeepRules::new()
            .keep_last(1)
            .keep_within(Duration::days(7))
            .keep_daily(KeepCount::Last(1))
            .plan(&runs, now);
        assert_one_decision_per_run(&runs, &plan);
        assert_eq!(
            reasons_of(&plan, &cid("2030-01-01T00:00:00Z")),
            vec![Last, Within, Daily]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2026-01-01T00:00:00Z")),
            vec![Within]
        );
        assert_eq!(
            reasons_of(&plan, &id_at(t("2031-01-01T00:00:00Z"), "f").to_string()),
            vec![GracePeriod]
        );
        // Extreme durations do not panic either.
        let plan = KeepRules::new()
            .keep_within(Duration::MAX)
            .incomplete_grace(Duration::MAX)
            .plan(&runs, now);
        assert_eq!(plan.kept().count(), 3);
    }

    // ---- construction, validation, serde, display ----

    #[test]
    fn default_keeps_only_always_rules_with_24h_grace() {
        let d = KeepRules::default();
        assert_eq!(d, KeepRules::new());
        assert!(d.keeps_only_always_rules());
        assert_eq!(d.incomplete_grace, Duration::hours(24));
        assert!(d.validate().is_ok());
        assert!(!KeepRules::new().keep_last(1).keeps_only_always_rules());
    }

    #[test]
    fn validate_rejects_nonsense_with_a_hint() {
        let bad = [
            KeepRules::new().keep_last(0),
            KeepRules::new().keep_daily(KeepCount::Last(0)),
            KeepRules::new().keep_weekly(KeepCount::Last(0)),
            KeepRules::new().keep_monthly(KeepCount::Last(0)),
            KeepRules::new().keep_yearly(KeepCount::Last(0)),
            KeepRules::new().keep_within(Duration::zero()),
            KeepRules::new().keep_within(Duration::hours(-1)),
            KeepRules::new().incomplete_grace(Duration::seconds(-1)),
        ];
        for rules in bad {
            let err = rules
                .validate()
                .expect_err(&format!("{rules:?} must be rejected"));
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(err.hint().is_some_and(|h| !h.is_empty()), "{err}");
        }
        let good = KeepRules::new()
            .keep_last(1)
            .keep_within(Duration::seconds(1))
            .keep_daily(KeepCount::Last(1))
            .keep_weekly(KeepCount::Unlimited)
            .keep_monthly(KeepCount::Last(12))
            .keep_yearly(KeepCount::Unlimited)
            .keep_forever()
            .incomplete_grace(Duration::zero());
        assert!(good.validate().is_ok());
    }

    #[test]
    fn keep_rules_serde_round_trip_and_defaults() {
        let rules = KeepRules::new()
            .keep_last(3)
            .keep_within(Duration::days(2))
            .keep_weekly(KeepCount::Last(4))
            .keep_monthly(KeepCount::Unlimited);
        let json = serde_json::to_string(&rules).unwrap();
        let back: KeepRules = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rules);
        // Missing fields take the defaults.
        let parsed: KeepRules = serde_json::from_str(r#"{"daily": {"last": 7}}"#).unwrap();
        assert_eq!(parsed, KeepRules::new().keep_daily(KeepCount::Last(7)));
        let parsed: KeepRules =
            serde_json::from_str(r#"{"within": 3600, "incomplete_grace": 60}"#).unwrap();
        assert_eq!(parsed.within, Some(Duration::hours(1)));
        assert_eq!(parsed.incomplete_grace, Duration::minutes(1));
        // Out-of-range durations are an error, not a panic.
        assert!(serde_json::from_str::<KeepRules>(r#"{"within": 9223372036854775807}"#).is_err());
    }

    #[test]
    fn summary_table_lists_every_run() {
        let runs = vec![
            run_with("2026-01-02T00:00:00Z", Complete, true, false),
            complete("2026-01-01T00:00:00Z"),
            failed("2025-12-01T00:00:00Z"),
        ];
        let plan = KeepRules::new()
            .keep_last(1)
            .plan(&runs, t("2026-01-03T00:00:00Z"));
        let text = summarize(&plan);
        assert_eq!(text, plan.to_string());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + runs.len(), "{text}");
        assert!(lines[0].contains("3 runs, 1 kept, 2 forgotten"), "{text}");
        assert!(lines[1].starts_with("RUN ID"), "{text}");
        assert!(lines[2].starts_with(&cid("2026-01-02T00:00:00Z")), "{text}");
        assert!(
            lines[2].contains("complete") && lines[2].contains("keep"),
            "{text}"
        );
        assert!(lines[2].ends_with("last, newest_verified"), "{text}");
        assert!(lines[3].contains("forget"), "{text}");
        assert!(
            lines[4].contains("failed") && lines[4].contains("forget"),
            "{text}"
        );
    }

    // ---- AnyOf ----

    /// A member that forgets everything.
    #[derive(Debug)]
    struct ForgetAll;

    impl RetentionPolicy for ForgetAll {
        fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
            RetentionPlan {
                now,
                decisions: runs
                    .iter()
                    .map(|r| RunDecision {
                        run_id: r.run_id.clone(),
                        started_at: r.started_at,
                        status: r.status,
                        action: RetentionAction::Forget,
                    })
                    .collect(),
            }
        }
    }

    #[test]
    fn any_of_is_a_union_with_merged_reasons() {
        let runs = vec![
            complete("2026-01-15T00:00:00Z"),
            complete("2026-01-31T00:00:00Z"),
            complete("2026-02-10T00:00:00Z"),
            complete("2026-02-20T00:00:00Z"),
            failed("2026-02-21T00:00:00Z"),
        ];
        let now = t("2026-03-01T00:00:00Z");
        let policy = AnyOf::new()
            .or(KeepRules::new().keep_last(2))
            .or(KeepRules::new().keep_monthly(KeepCount::Unlimited))
            .or(ForgetAll);
        let plan = policy.plan(&runs, now);
        assert_one_decision_per_run(&runs, &plan);
        let reasons: Vec<(String, Vec<KeepReason>)> = plan
            .decisions
            .iter()
            .map(|d| (d.run_id.to_string(), d.reasons().to_vec()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (id_at(t("2026-02-21T00:00:00Z"), "f").to_string(), vec![]),
                (cid("2026-02-20T00:00:00Z"), vec![Last, Monthly]),
                (cid("2026-02-10T00:00:00Z"), vec![Last]),
                (cid("2026-01-31T00:00:00Z"), vec![Monthly]),
                (cid("2026-01-15T00:00:00Z"), vec![]),
            ]
        );
    }

    #[test]
    fn any_of_preserves_newest_verified_and_pinned() {
        let runs = vec![
            run_with("2026-01-01T00:00:00Z", Complete, true, false),
            run_with("2026-01-02T00:00:00Z", Failed, false, true),
            complete("2026-01-03T00:00:00Z"),
        ];
        let now = t("2026-03-01T00:00:00Z");
        let plan = AnyOf::new().or(ForgetAll).plan(&runs, now);
        assert_eq!(
            kept_ids(&plan),
            vec![
                id_at(t("2026-01-02T00:00:00Z"), "f").to_string(),
                cid("2026-01-01T00:00:00Z"),
            ]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2026-01-01T00:00:00Z")),
            vec![NewestVerified]
        );
        // An empty union behaves like the default rules.
        assert_eq!(
            AnyOf::new().plan(&runs, now),
            KeepRules::default().plan(&runs, now)
        );
    }

    // ---- acceptance: two years of daily backups ----

    #[test]
    fn acceptance_two_years_daily_weekly_monthly() {
        let first = NaiveDate::from_ymd_opt(2024, 11, 25).unwrap();
        let last = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let at = |d: NaiveDate, h: u32| Utc.from_utc_datetime(&d.and_hms_opt(h, 0, 0).unwrap());
        let days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= last).collect();
        assert_eq!(days.len(), 730);

        let is_last_of_month = |d: NaiveDate| d.succ_opt().unwrap().month() != d.month();
        let mut runs = Vec::new();
        let mut failed_runs = 0;
        for &d in &days {
            runs.push(RunSummary {
                run_id: id_at(at(d, 2), "c"),
                started_at: at(d, 2),
                status: Complete,
                verified: true,
                pinned: false,
                components: vec!["postgres".into()],
                labels: BTreeMap::new(),
                stored_bytes: 1 << 20,
            });
            // Failed runs at 03:00, newer than the day's backup, on days that hold daily,
            // weekly and monthly slots. None on the last day: it would still be in its
            // grace period.
            if d != last && (d.day() % 3 == 0 || d.weekday() == Weekday::Sun || is_last_of_month(d))
            {
                failed_runs += 1;
                runs.push(RunSummary {
                    run_id: id_at(at(d, 3), "f"),
                    started_at: at(d, 3),
                    status: Failed,
                    verified: false,
                    pinned: false,
                    components: vec!["postgres".into()],
                    labels: BTreeMap::new(),
                    stored_bytes: 0,
                });
            }
        }
        assert!(failed_runs > 250);

        let now = t("2026-11-24T12:00:00Z");
        let rules = KeepRules::new()
            .keep_daily(KeepCount::Last(30))
            .keep_weekly(KeepCount::Last(12))
            .keep_monthly(KeepCount::Unlimited);
        rules.validate().unwrap();
        let plan = rules.plan(&runs, now);
        assert_one_decision_per_run(&runs, &plan);

        // Expected, computed directly from the calendar (there is one backup per day, so the
        // newest run of a bucket is the last day of it that is in the history).
        let newest_first: Vec<NaiveDate> = days.iter().rev().copied().collect();
        let daily: BTreeSet<NaiveDate> = newest_first.iter().take(30).copied().collect();
        // ISO weeks end on Sunday; the newest week is cut short by the end of the history.
        let weekly: BTreeSet<NaiveDate> = newest_first
            .iter()
            .filter(|d| **d == last || d.weekday() == Weekday::Sun)
            .take(12)
            .copied()
            .collect();
        let monthly: BTreeSet<NaiveDate> = newest_first
            .iter()
            .filter(|d| **d == last || is_last_of_month(**d))
            .copied()
            .collect();
        assert_eq!(
            daily.first(),
            Some(&NaiveDate::from_ymd_opt(2026, 10, 26).unwrap())
        );
        assert_eq!(
            weekly.first(),
            Some(&NaiveDate::from_ymd_opt(2026, 9, 13).unwrap())
        );
        assert_eq!(monthly.len(), 25); // Nov 2024 ..= Nov 2026
        let expected: BTreeSet<String> = daily
            .iter()
            .chain(&weekly)
            .chain(&monthly)
            .map(|d| id_at(at(*d, 2), "c").to_string())
            .collect();
        // By hand: 30 daily (Oct 26 – Nov 24), 7 Sundays Sep 13 – Oct 25 not in those,
        // 23 month ends Nov 2024 – Sep 2026 not in either.
        assert_eq!(expected.len(), 60);

        let kept: BTreeSet<String> = plan.kept().map(|d| d.run_id.to_string()).collect();
        assert_eq!(kept, expected);
        assert_eq!(plan.kept().count(), 60);
        assert_eq!(plan.forgotten().count(), runs.len() - 60);
        assert!(plan.kept().all(|d| d.status == Complete));
        assert!(plan
            .decisions
            .iter()
            .filter(|d| d.status == Failed)
            .all(|d| !d.is_kept()));

        assert_eq!(
            reasons_of(&plan, &cid("2026-11-24T02:00:00Z")),
            vec![Daily, Weekly, Monthly, NewestVerified]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2026-11-22T02:00:00Z")),
            vec![Daily, Weekly]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2026-10-31T02:00:00Z")),
            vec![Daily, Monthly]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2026-10-25T02:00:00Z")),
            vec![Weekly]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2026-09-13T02:00:00Z")),
            vec![Weekly]
        );
        assert!(reasons_of(&plan, &cid("2026-09-06T02:00:00Z")).is_empty());
        assert_eq!(
            reasons_of(&plan, &cid("2026-09-30T02:00:00Z")),
            vec![Monthly]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2024-11-30T02:00:00Z")),
            vec![Monthly]
        );
        assert_eq!(
            reasons_of(&plan, &cid("2025-02-28T02:00:00Z")),
            vec![Monthly]
        );
        assert!(reasons_of(&plan, &cid("2024-11-25T02:00:00Z")).is_empty());
    }

    // ---- properties ----

    fn arb_status() -> impl Strategy<Value = RunStatus> {
        prop_oneof![
            4 => Just(Complete),
            1 => Just(Failed),
            1 => Just(Partial),
            1 => Just(Incomplete),
        ]
    }

    fn arb_count() -> impl Strategy<Value = Option<KeepCount>> {
        prop_oneof![
            Just(None),
            Just(Some(KeepCount::Unlimited)),
            (1u32..6).prop_map(|n| Some(KeepCount::Last(n))),
        ]
    }

    fn arb_rules() -> impl Strategy<Value = KeepRules> {
        (
            proptest::option::of(1u32..8),
            proptest::option::of(1i64..(60 * 24 * 30)),
            arb_count(),
            arb_count(),
            arb_count(),
            arb_count(),
            any::<bool>(),
            0i64..(60 * 24 * 3),
        )
            .prop_map(
                |(last, within, daily, weekly, monthly, yearly, forever, grace)| KeepRules {
                    last,
                    within: within.map(Duration::minutes),
                    daily,
                    weekly,
                    monthly,
                    yearly,
                    forever,
                    incomplete_grace: Duration::minutes(grace),
                },
            )
    }

    /// Runs within about two years before and a few days after `now`.
    fn arb_runs() -> impl Strategy<Value = Vec<RunSummary>> {
        proptest::collection::vec(
            (
                -(60 * 24 * 3)..(60 * 24 * 800i64),
                arb_status(),
                any::<bool>(),
                proptest::bool::weighted(0.1),
            ),
            0..60,
        )
        .prop_map(|specs| {
            let now = prop_now();
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (age_min, status, verified, pinned))| {
                    let started_at = now - Duration::minutes(age_min);
                    RunSummary {
                        run_id: id_at(started_at, &format!("{i:04}")),
                        started_at,
                        status,
                        verified,
                        pinned,
                        components: Vec::new(),
                        labels: BTreeMap::new(),
                        stored_bytes: 0,
                    }
                })
                .collect()
        })
    }

    fn prop_now() -> DateTime<Utc> {
        t("2027-01-02T09:30:00Z")
    }

    fn check_invariants(runs: &[RunSummary], rules: &KeepRules, plan: &RetentionPlan) {
        let now = prop_now();
        assert_one_decision_per_run(runs, plan);
        for w in plan.decisions.windows(2) {
            assert!(
                (w[0].started_at, &w[0].run_id) >= (w[1].started_at, &w[1].run_id),
                "not newest first"
            );
        }
        for d in &plan.decisions {
            if let RetentionAction::Keep(r) = &d.action {
                assert!(!r.is_empty());
                assert!(
                    r.windows(2).all(|w| w[0] < w[1]),
                    "reasons not sorted/unique"
                );
            }
        }
        let by_id: BTreeMap<&RunId, &RunSummary> = runs.iter().map(|r| (&r.run_id, r)).collect();
        for d in &plan.decisions {
            let run = by_id[&d.run_id];
            if run.status != Complete {
                // Never kept as a backup.
                assert!(
                    d.reasons()
                        .iter()
                        .all(|r| matches!(r, GracePeriod | Pinned)),
                    "{d:?}"
                );
                if !run.pinned && now - run.started_at >= rules.incomplete_grace {
                    assert!(!d.is_kept(), "{d:?}");
                }
            }
            if run.pinned {
                assert!(d.reasons().contains(&Pinned));
            }
        }
        let newest_verified = runs
            .iter()
            .filter(|r| r.status == Complete && r.verified)
            .max_by_key(|r| (r.started_at, &r.run_id));
        if let Some(nv) = newest_verified {
            let d = plan.decision(&nv.run_id).unwrap();
            assert!(d.reasons().contains(&NewestVerified), "{d:?}");
        }
        assert!(
            plan.decisions
                .iter()
                .filter(|d| d.reasons().contains(&NewestVerified))
                .count()
                <= 1
        );
        if let Some(n) = rules.last {
            let complete = runs.iter().filter(|r| r.status == Complete).count();
            let kept_complete = plan.kept().filter(|d| d.status == Complete).count();
            assert!(kept_complete >= complete.min(n as usize));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_keep_rules_invariants(runs in arb_runs(), rules in arb_rules()) {
            let plan = rules.plan(&runs, prop_now());
            check_invariants(&runs, &rules, &plan);
            // Input order does not matter.
            let mut reversed = runs.clone();
            reversed.reverse();
            prop_assert_eq!(&rules.plan(&reversed, prop_now()), &plan);
        }

        #[test]
        fn prop_any_of_is_the_union(runs in arb_runs(), a in arb_rules(), b in arb_rules()) {
            let now = prop_now();
            let pa = a.plan(&runs, now);
            let pb = b.plan(&runs, now);
            let union = AnyOf::new().or(a.clone()).or(b.clone()).plan(&runs, now);
            assert_one_decision_per_run(&runs, &union);
            for d in &union.decisions {
                let ra = pa.decision(&d.run_id).unwrap().reasons();
                let rb = pb.decision(&d.run_id).unwrap().reasons();
                let want: BTreeSet<KeepReason> = ra.iter().chain(rb).copied().collect();
                let got: BTreeSet<KeepReason> = d.reasons().iter().copied().collect();
                prop_assert_eq!(got, want);
            }
            // A non-complete run is kept while inside either member's grace period, so the
            // union obeys the longer one.
            let looser = if a.incomplete_grace >= b.incomplete_grace { &a } else { &b };
            check_invariants(&runs, looser, &union);
        }
    }
}
