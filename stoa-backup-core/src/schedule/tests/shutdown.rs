//! Graceful shutdown: runs going on are cancelled and waited for up to the grace period,
//! then aborted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{minutes, utc, BoxedRun, Recorder};
use crate::error::Error;
use crate::schedule::{
    Clock, Job, JobContext, JobOutput, Scheduler, SchedulerEvent, ShutdownReport, TokioClock,
    Trigger,
};

/// Starts a scheduler whose job starts at 00:01 and runs `run`, cancels it at 00:02, and
/// returns its report and events.
async fn cancel_during_a_run(
    run: impl Fn(JobContext) -> BoxedRun + Send + Sync + 'static,
    grace: Duration,
) -> (ShutdownReport, Recorder) {
    let clock = TokioClock::starting_at(utc(2026, 3, 1, 0, 0, 0));
    let recorder = Recorder::default();
    let seen = recorder.clone();
    let scheduler = Scheduler::builder()
        .clock(clock)
        .job(Job::new("postgres", Trigger::every(minutes(1)), run))
        .shutdown_grace(grace)
        .observer(move |e: &SchedulerEvent| seen.0.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(scheduler.run(cancel.clone()));
    tokio::time::sleep(minutes(2)).await;
    cancel.cancel();
    (running.await.unwrap(), recorder)
}

#[tokio::test(start_paused = true)]
async fn a_run_that_stops_when_cancelled_ends_the_shutdown_early() {
    // The run takes an hour, and 3 seconds to wind down once cancelled.
    let run = |ctx: JobContext| -> BoxedRun {
        Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep(minutes(60)) => Ok(JobOutput::new("done")),
                () = ctx.cancel.cancelled() => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Err(Error::cancelled("run cancelled; nothing kept"))
                }
            }
        })
    };
    let (report, events) = cancel_during_a_run(run, Duration::from_secs(30)).await;
    assert_eq!(report.started_at, utc(2026, 3, 1, 0, 2, 0));
    assert_eq!(report.finished_at, utc(2026, 3, 1, 0, 2, 3));
    assert_eq!(report.stopped, ["postgres"]);
    assert!(report.is_clean());
    // The 00:02 tick was skipped or not reached; no second run started.
    let stats = report.stats["postgres"];
    assert_eq!((stats.runs, stats.cancelled, stats.abandoned), (1, 1, 0));
    let events = events.events();
    assert!(matches!(
        &events[events.len() - 2],
        SchedulerEvent::ShutdownStarted { running, deadline, .. }
            if running == &["postgres"] && *deadline == utc(2026, 3, 1, 0, 2, 30)
    ));
    assert!(matches!(
        events.last(),
        Some(SchedulerEvent::Finished { outcome: Err(e), finished_at, .. })
            if e.kind() == crate::ErrorKind::Cancelled && *finished_at == utc(2026, 3, 1, 0, 2, 3)
    ));
}

/// Sets its flag when dropped: tells that an aborted run's future was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_that_ignores_cancellation_is_aborted_at_the_deadline() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let run = move |_: JobContext| -> BoxedRun {
        let guard = DropFlag(flag.clone());
        Box::pin(async move {
            let _guard = guard;
            tokio::time::sleep(minutes(60)).await;
            Ok(JobOutput::new("done"))
        })
    };
    let (report, events) = cancel_during_a_run(run, Duration::from_secs(10)).await;
    assert_eq!(report.finished_at, utc(2026, 3, 1, 0, 2, 10));
    assert_eq!(report.abandoned, ["postgres"]);
    assert!(report.stopped.is_empty());
    assert!(!report.is_clean());
    assert_eq!(report.stats["postgres"].abandoned, 1);
    assert!(matches!(
        events.events().last(),
        Some(SchedulerEvent::Abandoned { job, started_at })
            if job == "postgres" && *started_at == utc(2026, 3, 1, 0, 1, 0)
    ));
    // The aborted task is dropped the next time the runtime gets to it.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_scheduler_without_runs_going_on_stops_at_once() {
    let clock = TokioClock::starting_at(utc(2026, 3, 1, 0, 0, 0));
    let scheduler = Scheduler::builder().clock(clock.clone()).build().unwrap();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(scheduler.run(cancel.clone()));
    tokio::time::sleep(minutes(5)).await;
    // Still running with no job: only the cancellation ends it.
    assert!(!running.is_finished());
    cancel.cancel();
    let report = running.await.unwrap();
    assert_eq!(report.started_at, clock.now());
    assert_eq!(report.finished_at, report.started_at);
    assert!(report.is_clean() && report.stopped.is_empty() && report.stats.is_empty());
}
