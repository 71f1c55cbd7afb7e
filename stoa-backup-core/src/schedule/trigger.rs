//! What starts a job: a cron expression in UTC or a named zone, a fixed interval, or a
//! change seen by a [`ChangeProbe`].
//!
//! # Cron and daylight saving time
//!
//! Expressions have five fields (minute hour day-of-month month day-of-week) and are parsed
//! by croner. They are read in UTC unless an IANA zone is named. Every wall clock time the
//! expression names runs **once**:
//!
//! - a time in a gap (the clock jumps forward: `02:30` on the night to summer time in
//!   Europe/Paris) runs once at the first instant after the gap (`03:00` local); several
//!   times in one gap (`*/15` between `02:00` and `02:45`) are that one run, and a time at
//!   the end of the gap (`03:00`) is the same run too;
//! - a time in an overlap (the clock goes back: `02:30` happens twice on the night to winter
//!   time) runs once, on its first pass; the second pass through the repeated hour runs
//!   nothing.
//!
//! croner applies this rule itself only to fixed-time patterns (one minute and one hour);
//! for other patterns (`*/30 * * * *`, `0 2,14 * * *`) it runs both passes of an overlap and
//! skips times in a gap that no later time covers. So croner finds the wall clock times in
//! a zone without daylight saving time, and [`CronSchedule::next_after`] maps each to its
//! instant with the rule above, for every pattern alike.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::change::ChangeProbe;
use crate::error::{Error, Result};

/// How often an on-change trigger asks its probe, unless told otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// How long a change must stay unchanged before its backup starts, unless told otherwise.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(60);
/// How long an on-change job waits after a failed run before it tries again.
pub const DEFAULT_FAILURE_BACKOFF: Duration = Duration::from_secs(300);

/// Wall clock minutes searched for the end of a gap or an overlap: two days covers every
/// transition there has been (Samoa skipped a whole day in 2011).
const TRANSITION_SEARCH_MINUTES: u32 = 2 * 24 * 60;

/// What starts a job.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// At the times of a cron expression.
    Cron(CronSchedule),
    /// Every period, at multiples of it since the Unix epoch (every 6 h: 00:00, 06:00, 12:00
    /// and 18:00 UTC), so that a restart does not move the ticks.
    Interval(Duration),
    /// When a probe's token changed.
    OnChange(OnChange),
}

impl Trigger {
    /// A cron expression read in UTC; see the [module documentation](self).
    pub fn cron(expression: &str) -> Result<Trigger> {
        CronSchedule::parse(expression, None).map(Trigger::Cron)
    }

    /// A cron expression read in an IANA time zone (`Europe/Paris`).
    pub fn cron_in(expression: &str, time_zone: &str) -> Result<Trigger> {
        CronSchedule::parse(expression, Some(time_zone)).map(Trigger::Cron)
    }

    /// Every `period` (at least a millisecond; checked when the scheduler is built).
    pub fn every(period: Duration) -> Trigger {
        Trigger::Interval(period)
    }

    /// When `change`'s probe sees a change.
    pub fn on_change(change: OnChange) -> Trigger {
        Trigger::OnChange(change)
    }

    /// The first tick strictly after `after` (no jitter); `None` for an on-change trigger and
    /// for an expression that never fires again (`0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Cron(cron) => cron.next_after(after),
            Trigger::Interval(period) => next_interval_tick(*period, after),
            Trigger::OnChange(_) => None,
        }
    }

    /// Refuses a trigger that would never advance: a zero interval or poll interval.
    pub(crate) fn check(&self, job: &str) -> Result<()> {
        let zero = match self {
            Trigger::Cron(_) => None,
            Trigger::Interval(period) => (period.as_millis() == 0).then_some("interval"),
            Trigger::OnChange(change) => (change.poll.as_millis() == 0).then_some("poll interval"),
        };
        match zero {
            None => Ok(()),
            Some(what) => Err(Error::config(format!(
                "job {job:?}: the {what} is shorter than a millisecond, so it would never advance"
            ))
            .with_operation("schedule job")
            .with_hint("give an interval of at least a second (e.g. 15 minutes)")),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Cron(cron) => write!(f, "{cron}"),
            Trigger::Interval(period) => write!(f, "every {}", format_duration(*period)),
            Trigger::OnChange(change) => write!(f, "{change}"),
        }
    }
}

/// The next multiple of `period` since the Unix epoch strictly after `after`.
fn next_interval_tick(period: Duration, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let period = i64::try_from(period.as_millis()).ok().filter(|p| *p > 0)?;
    let next = after
        .timestamp_millis()
        .div_euclid(period)
        .checked_add(1)?
        .checked_mul(period)?;
    DateTime::from_timestamp_millis(next)
}

/// A checked cron expression and the zone it is read in.
#[derive(Clone)]
pub struct CronSchedule {
    expression: String,
    zone: Tz,
    // Shared: a parsed pattern is large, and a trigger is cloned for each job loop.
    cron: Arc<Cron>,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?} {})", self.expression, self.zone)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron {:?} in {}", self.expression, self.zone)
    }
}

impl CronSchedule {
    /// Parses `expression` (exactly five fields; names such as `MON` or `JAN` allowed) in
    /// `time_zone` (an IANA name; `None` is UTC). The error is a configuration error saying
    /// which part is wrong.
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<CronSchedule> {
        let invalid = |why: String| {
            Error::config(why)
                .with_operation("parse schedule")
                .with_hint(
                    "write five fields: minute hour day-of-month month day-of-week, \
                 e.g. \"0 2 * * *\" for 02:00 every day",
                )
        };
        let fields = expression.split_whitespace().count();
        if fields != 5 {
            return Err(invalid(format!(
                "cron expression {expression:?} has {fields} field(s), not 5"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| invalid(format!("cron expression {expression:?}: {e}")))?;
        let zone = match time_zone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                Error::config(format!("{name:?} is not an IANA time zone"))
                    .with_operation("parse schedule")
                    .with_hint("name a zone such as UTC, Europe/Paris or America/New_York")
            })?,
        };
        Ok(CronSchedule {
            expression: expression.split_whitespace().collect::<Vec<_>>().join(" "),
            zone,
            cron: Arc::new(cron),
        })
    }

    /// The expression, fields separated by one space.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA name of the zone the expression is read in (`UTC` by default).
    pub fn time_zone(&self) -> &'static str {
        self.zone.name()
    }

    /// The first tick strictly after `after`, with the daylight saving rule of the [module
    /// documentation](self); `None` if the expression never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut wall = after.with_timezone(&self.zone).naive_local();
        // A wall time whose instant is not after `after` is passed over: on the second pass
        // through a repeated hour, its times ran on the first; the end of a gap that
        // already ran. At most an hour of minutes in a real zone.
        for _ in 0..TRANSITION_SEARCH_MINUTES {
            let next = self
                .cron
                .find_next_occurrence(&wall.and_utc(), false)
                .ok()?
                .naive_utc();
            let at = self.instant_of(next)?;
            if at > after {
                return Some(at);
            }
            wall = next;
        }
        None
    }

    /// The instant a wall clock time runs at: itself, the first of its two instants in an
    /// overlap, the first instant after the gap it falls in.
    fn instant_of(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        let mut wall = floor_minute(wall)?;
        for _ in 0..TRANSITION_SEARCH_MINUTES {
            match self.zone.from_local_datetime(&wall) {
                LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => {
                    return Some(at.with_timezone(&Utc))
                }
                LocalResult::None => wall += TimeDelta::minutes(1),
            }
        }
        None
    }
}

fn floor_minute(wall: NaiveDateTime) -> Option<NaiveDateTime> {
    wall.with_second(0)?.with_nanosecond(0)
}

/// An on-change trigger: a probe asked every poll interval; a backup when its token differs
/// from the one the last successful run started from.
///
/// - **Debounce**: a run starts at the first poll at least `debounce` after a new token was
///   first seen, provided every poll since saw that same token (a Helm upgrade that touches
///   several Secrets is one backup, once it settled). A token that goes back to the backed
///   up one cancels the pending change.
/// - **Baseline**: the token the last successful run started from
///   ([`Job::last_token`](super::Job::last_token) gives it at start, e.g. from a label the
///   job's pipeline recorded; without it the first token seen counts as a change). A failed
///   run leaves the baseline, so the change is tried again, after `failure_backoff`.
/// - A change seen while a run is going on waits for that run; it is never a second,
///   concurrent run, and is not counted as a skipped tick.
/// - A failed probe is no change (and an event); a change pending before it stays pending.
#[derive(Clone)]
pub struct OnChange {
    pub(crate) probe: Arc<dyn ChangeProbe>,
    pub(crate) poll: Duration,
    pub(crate) debounce: Duration,
    pub(crate) failure_backoff: Duration,
}

impl OnChange {
    /// Watches `probe`, polled every [`DEFAULT_POLL_INTERVAL`], debounced by
    /// [`DEFAULT_DEBOUNCE`], [`DEFAULT_FAILURE_BACKOFF`] after a failed run.
    pub fn new(probe: impl ChangeProbe + 'static) -> OnChange {
        Self::shared(Arc::new(probe))
    }

    /// Watches a probe shared with others.
    pub fn shared(probe: Arc<dyn ChangeProbe>) -> OnChange {
        OnChange {
            probe,
            poll: DEFAULT_POLL_INTERVAL,
            debounce: DEFAULT_DEBOUNCE,
            failure_backoff: DEFAULT_FAILURE_BACKOFF,
        }
    }

    /// How often the probe is asked.
    pub fn poll_every(mut self, interval: Duration) -> Self {
        self.poll = interval;
        self
    }

    /// How long a new token must stay the same before its backup starts (zero: at the poll
    /// that sees it).
    pub fn debounce(mut self, window: Duration) -> Self {
        self.debounce = window;
        self
    }

    /// How long to wait after a failed run before starting another for the same change.
    pub fn failure_backoff(mut self, delay: Duration) -> Self {
        self.failure_backoff = delay;
        self
    }

    /// The probe watched.
    pub fn probe(&self) -> &Arc<dyn ChangeProbe> {
        &self.probe
    }
}

impl fmt::Debug for OnChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnChange")
            .field("probe", &self.probe.describe())
            .field("poll", &self.poll)
            .field("debounce", &self.debounce)
            .field("failure_backoff", &self.failure_backoff)
            .finish()
    }
}

impl fmt::Display for OnChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "on change of {} (polled every {}, debounced {})",
            self.probe.describe(),
            format_duration(self.poll),
            format_duration(self.debounce)
        )
    }
}

/// `1h30m`, `45s`, `250ms`: durations in logs and messages.
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// The first `n` ticks strictly after `from`.
    fn ticks(trigger: &Trigger, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = from;
        while out.len() < n {
            at = trigger.next_after(at).expect("the schedule fires again");
            out.push(at);
        }
        out
    }

    fn croner_ticks(expr: &str, zone: Tz, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(expr)
            .unwrap();
        let mut at = from.with_timezone(&zone);
        (0..n)
            .map(|_| {
                at = cron.find_next_occurrence(&at, false).unwrap();
                at.with_timezone(&Utc)
            })
            .collect()
    }

    #[test]
    fn daily_in_paris_runs_once_over_spring_forward_and_fall_back() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let daily = Trigger::cron_in("0 2 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            ticks(&daily, utc(2026, 3, 27, 12, 0), 3),
            [
                utc(2026, 3, 28, 1, 0), // 02:00 CET
                utc(2026, 3, 29, 1, 0), // 02:00 does not exist: 03:00 CEST
                utc(2026, 3, 30, 0, 0), // 02:00 CEST
            ]
        );
        let half_past = Trigger::cron_in("30 2 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            ticks(&half_past, utc(2026, 3, 27, 12, 0), 3),
            [
                utc(2026, 3, 28, 1, 30),
                utc(2026, 3, 29, 1, 0), // 02:30 does not exist: 03:00 CEST
                utc(2026, 3, 30, 0, 30),
            ]
        );
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:00 and 02:30 happen
        // twice and run on the first pass only.
        assert_eq!(
            ticks(&daily, utc(2026, 10, 23, 12, 0), 3),
            [
                utc(2026, 10, 24, 0, 0),
                utc(2026, 10, 25, 0, 0), // 02:00 CEST, not again at 02:00 CET
                utc(2026, 10, 26, 1, 0), // 02:00 CET
            ]
        );
        assert_eq!(
            ticks(&half_past, utc(2026, 10, 24, 12, 0), 2),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
        );
    }

    #[test]
    fn interval_patterns_run_each_wall_time_once_across_dst() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let half_hourly = Trigger::cron_in("*/30 * * * *", "Europe/Paris").unwrap();
        // Spring forward: 02:00 and 02:30 are in the gap: one run at 03:00 CEST, which is
        // also 03:00's own run.
        let from = utc(2026, 3, 29, 0, 0); // 01:00 CET
        let expected = [
            utc(2026, 3, 29, 0, 30), // 01:30 CET
            utc(2026, 3, 29, 1, 0),  // 03:00 CEST (02:00, 02:30 and 03:00)
            utc(2026, 3, 29, 1, 30), // 03:30 CEST
        ];
        assert_eq!(ticks(&half_hourly, from, 3), expected);
        // croner alone gives the same here: 03:00 matches anyway.
        assert_eq!(croner_ticks("*/30 * * * *", paris, from, 3), expected);

        // Fall back: 02:00 and 02:30 run on the first pass only; croner runs both passes.
        let from = utc(2026, 10, 24, 23, 30); // 01:30 CEST
        assert_eq!(
            ticks(&half_hourly, from, 3),
            [
                utc(2026, 10, 25, 0, 0),  // 02:00 CEST
                utc(2026, 10, 25, 0, 30), // 02:30 CEST
                utc(2026, 10, 25, 2, 0),  // 03:00 CET
            ]
        );
        assert_eq!(
            croner_ticks("*/30 * * * *", paris, from, 5),
            [
                utc(2026, 10, 25, 0, 0),
                utc(2026, 10, 25, 0, 30),
                utc(2026, 10, 25, 1, 0), // 02:00 CET: a second run
                utc(2026, 10, 25, 1, 30),
                utc(2026, 10, 25, 2, 0),
            ]
        );
        // Asked from inside the second pass, the next run is after the overlap.
        assert_eq!(
            half_hourly.next_after(utc(2026, 10, 25, 1, 10)), // 02:10 CET
            Some(utc(2026, 10, 25, 2, 0))
        );

        // Two hours a day: croner skips 02:00 in the gap; the rule runs it at 03:00 CEST.
        let twice = Trigger::cron_in("0 2,14 * * *", "Europe/Paris").unwrap();
        let from = utc(2026, 3, 28, 22, 0);
        assert_eq!(
            ticks(&twice, from, 2),
            [utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 12, 0)]
        );
        assert_eq!(
            croner_ticks("0 2,14 * * *", paris, from, 1),
            [utc(2026, 3, 29, 12, 0)]
        );
    }

    #[test]
    fn cron_in_utc_and_intervals_tick_at_exact_times() {
        let six_hourly = Trigger::cron("0 */6 * * *").unwrap();
        assert_eq!(
            ticks(&six_hourly, utc(2026, 3, 1, 0, 0), 4),
            [
                utc(2026, 3, 1, 6, 0),
                utc(2026, 3, 1, 12, 0),
                utc(2026, 3, 1, 18, 0),
                utc(2026, 3, 2, 0, 0),
            ]
        );
        let weekly = Trigger::cron("0  3 * *   SUN").unwrap();
        let Trigger::Cron(schedule) = &weekly else {
            unreachable!()
        };
        assert_eq!(schedule.expression(), "0 3 * * SUN");
        assert_eq!(schedule.time_zone(), "UTC");
        assert_eq!(
            weekly.next_after(utc(2026, 3, 1, 12, 0)),
            Some(utc(2026, 3, 8, 3, 0))
        );

        let every_90_min = Trigger::every(Duration::from_secs(90 * 60));
        assert_eq!(
            ticks(&every_90_min, utc(2026, 3, 1, 0, 10), 3),
            [
                utc(2026, 3, 1, 1, 30),
                utc(2026, 3, 1, 3, 0),
                utc(2026, 3, 1, 4, 30),
            ]
        );
        // Strictly after: a tick is not its own next.
        assert_eq!(
            every_90_min.next_after(utc(2026, 3, 1, 1, 30)),
            Some(utc(2026, 3, 1, 3, 0))
        );
        assert_eq!(
            Trigger::cron("0 0 30 2 *")
                .unwrap()
                .next_after(utc(2026, 1, 1, 0, 0)),
            None
        );
    }

    #[test]
    fn bad_expressions_zones_and_intervals_are_configuration_errors() {
        for bad in [
            "0 2 * *",
            "0 0 2 * * *",
            "@daily",
            "",
            "0 25 * * *",
            "x * * * *",
        ] {
            let e = Trigger::cron(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{bad:?}");
            assert!(e.hint().unwrap().contains("five fields"), "{bad:?}");
        }
        assert!(Trigger::cron("0 2 * *")
            .unwrap_err()
            .to_string()
            .contains("4 field(s)"));
        let e = Trigger::cron_in("0 2 * * *", "Mars/Olympus").unwrap_err();
        assert!(e
            .to_string()
            .contains("\"Mars/Olympus\" is not an IANA time zone"));

        let e = Trigger::every(Duration::ZERO).check("pg").unwrap_err();
        assert!(e.to_string().contains("job \"pg\": the interval"), "{e}");
        assert!(Trigger::every(Duration::from_secs(1)).check("pg").is_ok());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(
            Trigger::every(Duration::from_secs(3600)).to_string(),
            "every 1h"
        );
        assert_eq!(
            Trigger::cron_in("0 2 * * *", "Europe/Paris")
                .unwrap()
                .to_string(),
            "cron \"0 2 * * *\" in Europe/Paris"
        );
    }
}
