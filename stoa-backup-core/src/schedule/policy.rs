//! Policies of timed jobs: catching up after downtime, and deterministic jitter.
//!
//! - **Catch-up**: when the scheduler starts, a job that knows when it last ran
//!   ([`Job::last_run`](super::Job::last_run)) and missed ticks since then runs **once** at
//!   start, however many ticks it missed, provided the newest missed tick is within the
//!   starting deadline. Missed ticks older than the deadline are reported, not run. A job
//!   that does not know its last run catches nothing up.
//! - **Jitter**: a job's ticks are moved by an offset within its jitter window, taken from a
//!   hash of its name: the same name gets the same offset in every process and on every
//!   restart (so catch-up and last runs agree), names alike get offsets far apart.
//! - **Never two runs at once**: a tick that comes while the job's run is going on is
//!   skipped and counted ([`JobStats::skipped_while_running`](super::JobStats)), not queued.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

/// The starting deadline unless told otherwise: long enough to cover a night's outage of a
/// daily 02:00 backup, short enough not to start a nightly backup in the afternoon.
pub const DEFAULT_STARTING_DEADLINE: Duration = Duration::from_secs(6 * 3600);

/// Ticks examined when looking for the newest missed one (a minutely schedule with a
/// deadline of two months).
const MAX_MISSED_TICKS: usize = 100_000;

/// What a timed job does at start about ticks it missed while the scheduler was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing: the next tick is the next run.
    Never,
    /// One run at start when the newest missed tick is at most this old.
    Within(Duration),
}

impl Default for CatchUp {
    /// [`CatchUp::Within`] the [`DEFAULT_STARTING_DEADLINE`].
    fn default() -> Self {
        CatchUp::Within(DEFAULT_STARTING_DEADLINE)
    }
}

/// The offset within `window` that a job named `job_name` is moved by: the first eight
/// bytes of the SHA-256 of the name, modulo the window in milliseconds. Zero for a zero
/// window; always less than the window otherwise.
pub fn jitter_offset(job_name: &str, window: Duration) -> Duration {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    if window_ms == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(job_name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Duration::from_millis(u64::from_be_bytes(first) % window_ms)
}

/// What became of the ticks a job missed before the scheduler started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missed {
    /// None missed.
    Nothing,
    /// Run once now, for the newest missed tick.
    CatchUp { missed: DateTime<Utc> },
    /// Missed, but too long ago (or the job never catches up): the oldest missed tick.
    TooLate { missed: DateTime<Utc> },
}

/// The ticks `next_due` gives strictly after `last_run` and at or before `now`, judged by
/// `catch_up`.
pub(crate) fn missed_ticks(
    next_due: impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>>,
    last_run: DateTime<Utc>,
    now: DateTime<Utc>,
    catch_up: CatchUp,
) -> Missed {
    let Some(first) = next_due(last_run).filter(|t| *t <= now) else {
        return Missed::Nothing;
    };
    let CatchUp::Within(deadline) = catch_up else {
        return Missed::TooLate { missed: first };
    };
    let deadline = TimeDelta::from_std(deadline).unwrap_or(TimeDelta::MAX);
    let earliest = now
        .checked_sub_signed(deadline)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    // Ticks have millisecond precision: a tick exactly at the deadline still counts.
    let mut tick = if first >= earliest {
        Some(first)
    } else {
        next_due(earliest - TimeDelta::milliseconds(1))
    };
    let mut newest = None;
    for _ in 0..MAX_MISSED_TICKS {
        match tick.filter(|t| *t <= now) {
            Some(t) => {
                newest = Some(t);
                tick = next_due(t);
            }
            None => break,
        }
    }
    match newest {
        Some(missed) => Missed::CatchUp { missed },
        None => Missed::TooLate { missed: first },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Trigger;
    use chrono::TimeZone;
    use std::collections::BTreeSet;

    fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap()
    }

    #[test]
    fn jitter_stays_within_its_window_and_is_the_same_for_the_same_name() {
        let window = Duration::from_secs(600);
        let offsets: Vec<Duration> = (0..200)
            .map(|i| jitter_offset(&format!("postgres-{i}"), window))
            .collect();
        assert!(offsets.iter().all(|o| *o < window), "{offsets:?}");
        // Names alike are spread: at least one offset in each tenth of the window.
        let tenths: BTreeSet<u128> = offsets
            .iter()
            .map(|o| o.as_millis() * 10 / window.as_millis())
            .collect();
        assert_eq!(tenths.len(), 10, "{tenths:?}");
        // Deterministic: the same name gives the same offset, here and in any process (the
        // value is pinned so that a change of hash shows).
        assert_eq!(jitter_offset("postgres-7", window), offsets[7]);
        assert_eq!(
            jitter_offset("postgres", window),
            jitter_offset("postgres", window)
        );
        assert_eq!(
            jitter_offset("postgres", Duration::from_secs(3600)),
            // SHA-256("postgres")'s first eight bytes, big-endian, modulo 3 600 000.
            Duration::from_millis(16_769)
        );
        assert_eq!(jitter_offset("postgres", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn missed_ticks_are_caught_up_once_within_the_deadline() {
        let hourly = Trigger::cron("0 * * * *").unwrap();
        let next = |t| hourly.next_after(t);
        // Down from 01:10 to 09:30: eight ticks missed, one catch-up for the newest (09:00).
        assert_eq!(
            missed_ticks(next, utc(1, 1, 10), utc(1, 9, 30), CatchUp::default()),
            Missed::CatchUp {
                missed: utc(1, 9, 0)
            }
        );
        // Nothing missed.
        assert_eq!(
            missed_ticks(next, utc(1, 9, 0), utc(1, 9, 30), CatchUp::default()),
            Missed::Nothing
        );
        // A tick exactly at now counts; a tick exactly at the deadline too.
        assert_eq!(
            missed_ticks(next, utc(1, 8, 30), utc(1, 9, 0), CatchUp::default()),
            Missed::CatchUp {
                missed: utc(1, 9, 0)
            }
        );
        let daily = Trigger::cron("0 2 * * *").unwrap();
        let next = |t| daily.next_after(t);
        let within = |h: u64| CatchUp::Within(Duration::from_secs(h * 3600));
        assert_eq!(
            missed_ticks(next, utc(1, 2, 0), utc(2, 8, 0), within(6)),
            Missed::CatchUp {
                missed: utc(2, 2, 0)
            }
        );
        // Too late: the newest missed 02:00 is ten hours old; the oldest missed is reported.
        assert_eq!(
            missed_ticks(next, utc(1, 2, 0), utc(3, 12, 0), within(6)),
            Missed::TooLate {
                missed: utc(2, 2, 0)
            }
        );
        assert_eq!(
            missed_ticks(next, utc(1, 2, 0), utc(2, 8, 0), CatchUp::Never),
            Missed::TooLate {
                missed: utc(2, 2, 0)
            }
        );
    }
}
