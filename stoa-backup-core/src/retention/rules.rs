//! [`KeepRules`]: restic/GFS keep rules, as data, and how they plan.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{add_always_rules, build_plan, newest_first, RetentionPlan, RetentionPolicy};
use crate::error::{Error, Result};
use crate::manifest::{RunStatus, RunSummary};
use crate::retention::KeepReason;

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

/// Keep rules, restic/GFS style. A run is kept if any rule keeps it.
///
/// See the [module documentation](super) for the exact semantics. Only complete runs are
/// backups; pinned runs, damaged runs, and the newest complete run and the newest complete,
/// verified run of each component are always kept; failed, partial and incomplete runs are
/// kept only while they were active within `incomplete_grace`.
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
///     .keep_monthly(KeepCount::Unlimited)
///     .keep_within_yearly(Duration::days(5 * 365));
/// rules.validate().unwrap();
/// ```
///
/// Durations are seconds in serialized form (`{"within": 172800, "daily": {"last": 7}}`).
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
    /// Keep the newest complete run of each UTC day, among the runs that started within this
    /// duration before `now` (restic's `--keep-within-daily`).
    #[serde(with = "duration_secs_opt", default)]
    pub within_daily: Option<Duration>,
    /// Keep the newest complete run of each ISO week, among the runs that started within
    /// this duration before `now`.
    #[serde(with = "duration_secs_opt", default)]
    pub within_weekly: Option<Duration>,
    /// Keep the newest complete run of each month, among the runs that started within this
    /// duration before `now`.
    #[serde(with = "duration_secs_opt", default)]
    pub within_monthly: Option<Duration>,
    /// Keep the newest complete run of each year, among the runs that started within this
    /// duration before `now`.
    #[serde(with = "duration_secs_opt", default)]
    pub within_yearly: Option<Duration>,
    /// Keep every complete run forever.
    pub forever: bool,
    /// Failed, partial and incomplete runs inactive for less than this
    /// ([`RunSummary::inactive_for`]) are kept with [`KeepReason::GracePeriod`] (they may
    /// still be running); older ones are forgotten.
    #[serde(with = "duration_secs")]
    pub incomplete_grace: Duration,
}

/// The default grace period for failed and incomplete runs: 24 hours.
const DEFAULT_INCOMPLETE_GRACE_SECS: i64 = 24 * 60 * 60;

impl Default for KeepRules {
    /// Keeps nothing beyond the always-rules (pinned and damaged runs, the newest complete
    /// and newest verified run of each component, failed or incomplete runs active within
    /// the last 24 hours).
    fn default() -> Self {
        KeepRules {
            last: None,
            within: None,
            daily: None,
            weekly: None,
            monthly: None,
            yearly: None,
            within_daily: None,
            within_weekly: None,
            within_monthly: None,
            within_yearly: None,
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

    /// Keeps the newest complete run of each UTC day that started at or after `now - d`.
    /// Unlike [`KeepRules::keep_daily`], days before the window keep nothing, however few
    /// days inside it have runs.
    pub fn keep_within_daily(mut self, d: Duration) -> Self {
        self.within_daily = Some(d);
        self
    }

    /// Keeps the newest complete run of each ISO week, among runs started at or after
    /// `now - d`.
    pub fn keep_within_weekly(mut self, d: Duration) -> Self {
        self.within_weekly = Some(d);
        self
    }

    /// Keeps the newest complete run of each month, among runs started at or after `now - d`.
    pub fn keep_within_monthly(mut self, d: Duration) -> Self {
        self.within_monthly = Some(d);
        self
    }

    /// Keeps the newest complete run of each year, among runs started at or after `now - d`.
    pub fn keep_within_yearly(mut self, d: Duration) -> Self {
        self.within_yearly = Some(d);
        self
    }

    /// Keeps every complete run.
    pub fn keep_forever(mut self) -> Self {
        self.forever = true;
        self
    }

    /// Sets how long failed, partial and incomplete runs are left alone after their last
    /// activity (default 24 hours).
    pub fn incomplete_grace(mut self, grace: Duration) -> Self {
        self.incomplete_grace = grace;
        self
    }

    /// Whether the rules keep nothing beyond the always-rules (pinned and damaged runs, the
    /// newest complete and newest verified run of each component, runs inside the grace
    /// period).
    pub fn keeps_only_always_rules(&self) -> bool {
        self.last.is_none()
            && self.within.is_none()
            && self.daily.is_none()
            && self.weekly.is_none()
            && self.monthly.is_none()
            && self.yearly.is_none()
            && self.within_buckets().iter().all(|(d, _, _)| d.is_none())
            && !self.forever
    }

    /// Checks the rules without looking at any run: counts of zero (`keep_last(0)`,
    /// `KeepCount::Last(0)`), a zero or negative `within` or `within_*`, and a negative
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
        let durations = [
            ("keep within", self.within),
            ("keep within daily", self.within_daily),
            ("keep within weekly", self.within_weekly),
            ("keep within monthly", self.within_monthly),
            ("keep within yearly", self.within_yearly),
        ];
        for (name, d) in durations {
            if let Some(d) = d.filter(|d| *d <= Duration::zero()) {
                return invalid(
                    format!("{name} is {} seconds: it must be positive", d.num_seconds()),
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

    fn within_buckets(&self) -> [(Option<Duration>, BucketFn, KeepReason); 4] {
        [
            (self.within_daily, day_key, KeepReason::WithinDaily),
            (self.within_weekly, iso_week_key, KeepReason::WithinWeekly),
            (self.within_monthly, month_key, KeepReason::WithinMonthly),
            (self.within_yearly, year_key, KeepReason::WithinYearly),
        ]
    }

    /// The reasons these rules alone keep each run (no always-rules). `runs` are newest
    /// first; the result is aligned with them.
    pub(super) fn rule_reasons(
        &self,
        runs: &[&RunSummary],
        now: DateTime<Utc>,
    ) -> Vec<BTreeSet<KeepReason>> {
        let mut reasons = vec![BTreeSet::new(); runs.len()];
        // Positions of complete runs, newest first: the only backups.
        let complete: Vec<usize> = (0..runs.len())
            .filter(|&pos| runs[pos].status == RunStatus::Complete)
            .collect();
        // A window reaching before the earliest representable time covers everything.
        let inside = |d: Duration, pos: usize| {
            now.checked_sub_signed(d)
                .is_none_or(|cutoff| runs[pos].started_at >= cutoff)
        };

        if let Some(n) = self.last {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            for &pos in complete.iter().take(n) {
                reasons[pos].insert(KeepReason::Last);
            }
        }

        if let Some(d) = self.within {
            for &pos in complete.iter().filter(|&&pos| inside(d, pos)) {
                reasons[pos].insert(KeepReason::Within);
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
            newest_per_bucket(runs, &complete, key, count.limit(), &mut reasons, reason);
        }

        for (window, key, reason) in self.within_buckets() {
            let Some(d) = window else { continue };
            // Newest first: the runs inside the window are a prefix of `complete`.
            let inside: Vec<usize> = complete
                .iter()
                .copied()
                .take_while(|&pos| inside(d, pos))
                .collect();
            newest_per_bucket(runs, &inside, key, usize::MAX, &mut reasons, reason);
        }

        if self.forever {
            for &pos in &complete {
                reasons[pos].insert(KeepReason::Forever);
            }
        }

        for (pos, run) in runs.iter().enumerate() {
            let unfinished = !matches!(run.status, RunStatus::Complete | RunStatus::Damaged);
            if unfinished && run.inactive_for(now) < self.incomplete_grace {
                reasons[pos].insert(KeepReason::GracePeriod);
            }
        }
        reasons
    }
}

/// Marks the newest run of each bucket, for the newest `limit` buckets that have runs.
/// `candidates` are positions into `runs`, newest first.
fn newest_per_bucket(
    runs: &[&RunSummary],
    candidates: &[usize],
    key: BucketFn,
    limit: usize,
    reasons: &mut [BTreeSet<KeepReason>],
    reason: KeepReason,
) {
    let mut buckets = 0usize;
    let mut current: Option<BucketKey> = None;
    // Newest first, so the first run seen in a bucket is its newest.
    for &pos in candidates {
        let k = key(&runs[pos].started_at);
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
    /// Plans retention with the semantics described in the [module documentation](super).
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
        let sorted = newest_first(runs);
        let mut reasons = self.rule_reasons(&sorted, now);
        add_always_rules(&sorted, &mut reasons);
        build_plan(&sorted, reasons, None, now)
    }
}

pub(super) mod duration_secs {
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

pub(super) mod duration_secs_opt {
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
