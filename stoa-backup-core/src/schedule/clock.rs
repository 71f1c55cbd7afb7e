//! The scheduler's clock: wall time to compute ticks from, and a way to sleep until one.
//! Replaceable, so that tests run a day of schedule under tokio's paused clock in no time.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;

/// Wall time for the scheduler, and sleeping until a wall time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall time.
    fn now(&self) -> DateTime<Utc>;

    /// Completes once [`now`](Clock::now) is at or past `at` (at once if it already is).
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The default clock: the wall time when it was created, plus the time tokio's clock has
/// advanced since. Under a paused tokio clock (`#[tokio::test(start_paused = true)]`,
/// `tokio::time::advance`) wall time advances with it, so schedules are tested without real
/// waiting.
///
/// It follows the monotonic clock: a step of the system clock after it was created (a manual
/// change, an NTP step) is not seen until the process restarts. Create it inside the tokio
/// runtime that drives the scheduler (the scheduler's default one is created when
/// [`Scheduler::run`](super::Scheduler::run) starts).
#[derive(Debug, Clone)]
pub struct TokioClock {
    base: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that starts at the system's current wall time.
    pub fn new() -> Self {
        Self::starting_at(Utc::now())
    }

    /// A clock whose wall time is `base` now (tests start a schedule at a chosen date).
    pub fn starting_at(base: DateTime<Utc>) -> Self {
        TokioClock {
            base,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = TimeDelta::from_std(self.origin.elapsed()).unwrap_or(TimeDelta::MAX);
        self.base
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        // A time before the base is already past: `to_std` refuses negative spans.
        let offset = (at - self.base).to_std().unwrap_or(Duration::ZERO);
        let deadline = self
            .origin
            .checked_add(offset)
            // Beyond what an Instant holds: as good as never, within a century.
            .unwrap_or_else(|| {
                tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400)
            });
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_the_paused_tokio_clock() {
        let base = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let clock = TokioClock::starting_at(base);
        assert_eq!(clock.now(), base);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), base + TimeDelta::seconds(90));

        let at = base + TimeDelta::hours(5);
        clock.sleep_until(at).await;
        assert_eq!(clock.now(), at);
        // A time already past completes at once.
        clock.sleep_until(base).await;
        assert_eq!(clock.now(), at);
    }
}
