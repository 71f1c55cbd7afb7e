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
mod tests;
