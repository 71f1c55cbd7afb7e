//! The scheduler under tokio's paused clock: every test runs hours or days of schedule
//! without waiting, and asserts the exact times runs started at.
//!
//! | behaviour                                   | test                                          |
//! |---------------------------------------------|-----------------------------------------------|
//! | cron ticks over a day (UTC)                 | `timed::cron_ticks_over_a_day_in_utc`         |
//! | cron across spring forward, Europe/Paris    | `timed::cron_across_spring_forward_in_paris`  |
//! | cron across fall back, Europe/Paris         | `timed::cron_across_fall_back_in_paris`       |
//! | skip-while-running                          | `timed::ticks_while_running_are_skipped_and_counted` |
//! | one catch-up after downtime                 | `timed::one_catch_up_after_downtime_within_the_deadline` |
//! | jitter within its window, same per name     | `timed::jitter_moves_ticks_within_the_window_the_same_way_each_start` |
//! | on-change: once per change                  | `on_change::one_run_per_settled_change`       |
//! | on-change: never when nothing changed       | `on_change::no_run_when_nothing_changed`      |
//! | shutdown within its deadline                | `shutdown::*`                                 |

mod jobs;
mod on_change;
mod shutdown;
mod timed;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use super::{Job, JobContext, JobOutput, Scheduler, SchedulerEvent, ShutdownReport, TokioClock};
use crate::error::{Error, Result};

pub(super) fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

pub(super) fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// Every event, in order.
#[derive(Clone, Default)]
pub(super) struct Recorder(Arc<Mutex<Vec<SchedulerEvent>>>);

impl Recorder {
    pub fn events(&self) -> Vec<SchedulerEvent> {
        self.0.lock().unwrap().clone()
    }

    /// When each run of `job` started, and why.
    pub fn starts(&self, job: &str) -> Vec<(DateTime<Utc>, super::RunReason)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                SchedulerEvent::Started { job: j, reason, at } if j == job => Some((at, reason)),
                _ => None,
            })
            .collect()
    }

    /// When each run of `job` started.
    pub fn start_times(&self, job: &str) -> Vec<DateTime<Utc>> {
        self.starts(job).into_iter().map(|(at, _)| at).collect()
    }
}

/// A run that takes `duration` and stops early (as cancelled) when told to.
pub(super) fn takes(duration: Duration) -> impl Fn(JobContext) -> BoxedRun + Send + Sync {
    move |ctx: JobContext| -> BoxedRun {
        Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep(duration) => Ok(JobOutput::new(format!("{} done", ctx.job))),
                () = ctx.cancel.cancelled() => Err(Error::cancelled(format!("{} cancelled", ctx.job))),
            }
        })
    }
}

pub(super) type BoxedRun = futures::future::BoxFuture<'static, Result<JobOutput>>;

/// Runs `jobs` on `clock` (its wall time is the start) for `span` of paused time, then
/// cancels the scheduler and returns its report and every event.
pub(super) async fn run_for(
    clock: TokioClock,
    span: Duration,
    jobs: Vec<Job>,
) -> (ShutdownReport, Recorder) {
    let recorder = Recorder::default();
    let seen = recorder.clone();
    let scheduler = Scheduler::builder()
        .clock(clock)
        .jobs(jobs)
        .observer(move |e: &SchedulerEvent| seen.0.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(scheduler.run(cancel.clone()));
    tokio::time::sleep(span).await;
    cancel.cancel();
    (running.await.unwrap(), recorder)
}
