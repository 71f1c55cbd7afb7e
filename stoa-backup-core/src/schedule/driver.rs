//! The loop of one job: waits for its ticks (or polls its probe), starts runs as tasks,
//! never two at once, and hands the run going on back when the scheduler is cancelled.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::events::{Events, SchedulerEvent};
use super::job::{Job, JobContext, JobOutput, RunReason};
use super::policy::{missed_ticks, Missed};
use super::trigger::{OnChange, Trigger};
use crate::change::ChangeToken;
use crate::error::{Error, Result};

/// A run going on.
pub(crate) struct Running {
    pub job: String,
    pub started_at: DateTime<Utc>,
    pub handle: JoinHandle<Result<JobOutput>>,
    /// The token an on-change run started from.
    token: Option<ChangeToken>,
}

impl Running {
    /// Waits for the run to end.
    pub async fn outcome(&mut self) -> Result<JobOutput> {
        let joined = (&mut self.handle).await;
        outcome_of(&self.job, joined)
    }

    /// Reports the end of the run.
    pub fn finish(self, outcome: Result<JobOutput>, clock: &dyn Clock, events: &Events) {
        events.emit(SchedulerEvent::Finished {
            job: self.job,
            started_at: self.started_at,
            finished_at: clock.now(),
            outcome,
        });
    }
}

fn outcome_of(job: &str, joined: Result<Result<JobOutput>, JoinError>) -> Result<JobOutput> {
    match joined {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => Err(Error::internal(format!("the run of job {job:?} panicked"))
            .with_operation("scheduled run")
            .with_hint("a bug in the job: report it with the log; the next tick runs it again")),
        Err(_) => Err(
            Error::cancelled(format!("the run of job {job:?} was aborted"))
                .with_operation("scheduled run"),
        ),
    }
}

/// What a job's loop needs.
pub(crate) struct Driver {
    pub job: Job,
    pub clock: Arc<dyn Clock>,
    pub events: Events,
    pub cancel: CancellationToken,
}

impl Driver {
    /// Runs the job's loop until the scheduler is cancelled; returns the run going on then.
    pub async fn drive(self) -> Option<Running> {
        match self.job.trigger.clone() {
            Trigger::OnChange(change) => self.on_change(&change).await,
            Trigger::Cron(_) | Trigger::Interval(_) => self.timed().await,
        }
    }

    fn start(&self, reason: RunReason) -> Running {
        let at = self.clock.now();
        let token = match &reason {
            RunReason::Changed { token } => Some(token.clone()),
            _ => None,
        };
        self.events.emit(SchedulerEvent::Started {
            job: self.job.name.clone(),
            reason: reason.clone(),
            at,
        });
        let ctx = JobContext {
            job: self.job.name.clone(),
            reason,
            // A child: cancelling the scheduler cancels the run.
            cancel: self.cancel.child_token(),
        };
        Running {
            job: self.job.name.clone(),
            started_at: at,
            handle: tokio::spawn(self.job.run.run(ctx)),
            token,
        }
    }

    /// Cron and interval jobs: catch-up at start, then each tick (jitter included) starts a
    /// run unless one is going on.
    async fn timed(self) -> Option<Running> {
        let job = &self.job;
        let mut running = None;
        let now = self.clock.now();
        if let Some(last_run) = job.last_run {
            match missed_ticks(|t| job.next_run_after(t), last_run, now, job.catch_up) {
                Missed::Nothing => {}
                Missed::CatchUp { missed } => {
                    running = Some(self.start(RunReason::CatchUp { missed }))
                }
                Missed::TooLate { missed } => {
                    self.events.emit(SchedulerEvent::MissedBeyondDeadline {
                        job: job.name.clone(),
                        missed,
                    })
                }
            }
        }
        let mut due = job.next_run_after(now);
        loop {
            let tick = sleep_until(&*self.clock, due);
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return running,
                outcome = ended(&mut running) => {
                    if let Some(run) = running.take() {
                        run.finish(outcome, &*self.clock, &self.events);
                    }
                }
                at = tick => {
                    if running.is_some() {
                        self.events.emit(SchedulerEvent::SkippedWhileRunning {
                            job: job.name.clone(),
                            tick: at,
                        });
                    } else {
                        running = Some(self.start(RunReason::Scheduled { at }));
                    }
                    // Ticks passed while the process was stalled are not run one by one.
                    due = job.next_run_after(at.max(self.clock.now()));
                }
            }
        }
    }

    /// On-change jobs: poll, debounce, run when the token differs from the baseline; see
    /// [`OnChange`].
    async fn on_change(self, change: &OnChange) -> Option<Running> {
        let clock = &*self.clock;
        let poll = delta(change.poll);
        let debounce = delta(change.debounce);
        let backoff = delta(change.failure_backoff);
        let mut baseline = self.job.last_token.clone();
        // A token different from the baseline, and when it was first seen.
        let mut pending: Option<(ChangeToken, DateTime<Utc>)> = None;
        let mut not_before: Option<DateTime<Utc>> = None;
        let mut running: Option<Running> = None;
        let mut next_poll = clock.now();
        loop {
            let wake = sleep_until(clock, Some(next_poll));
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return running,
                outcome = ended(&mut running) => {
                    let Some(run) = running.take() else { continue };
                    if outcome.is_ok() {
                        baseline = run.token.clone();
                        if pending.as_ref().map(|(t, _)| t) == baseline.as_ref() {
                            pending = None;
                        }
                    } else {
                        not_before = clock.now().checked_add_signed(backoff);
                    }
                    run.finish(outcome, clock, &self.events);
                }
                _ = wake => {
                    let probed = tokio::select! {
                        biased;
                        () = self.cancel.cancelled() => return running,
                        probed = change.probe.probe() => probed,
                    };
                    let now = clock.now();
                    next_poll = next_poll
                        .checked_add_signed(poll)
                        .filter(|next| *next > now)
                        .or_else(|| now.checked_add_signed(poll))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC);
                    match probed {
                        Err(error) => self.events.emit(SchedulerEvent::ProbeFailed {
                            job: self.job.name.clone(),
                            probe: change.probe.describe(),
                            error,
                        }),
                        Ok(token) if Some(&token) == baseline.as_ref() => pending = None,
                        Ok(token) => {
                            if pending.as_ref().map(|(t, _)| t) != Some(&token) {
                                pending = Some((token, now));
                            }
                        }
                    }
                    let settled = pending
                        .as_ref()
                        .is_some_and(|(_, since)| now - *since >= debounce);
                    let may_start = running.is_none() && not_before.is_none_or(|t| now >= t);
                    if settled && may_start {
                        if let Some((token, _)) = pending.take() {
                            running = Some(self.start(RunReason::Changed { token }));
                        }
                    }
                }
            }
        }
    }
}

/// Completes with the time slept until, or never for no time.
async fn sleep_until(clock: &dyn Clock, at: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match at {
        Some(at) => {
            clock.sleep_until(at).await;
            at
        }
        None => std::future::pending().await,
    }
}

/// Completes when the run going on ends, or never without one.
async fn ended(running: &mut Option<Running>) -> Result<JobOutput> {
    match running {
        Some(run) => run.outcome().await,
        None => std::future::pending().await,
    }
}

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}
