//! The scheduler: its builder (jobs checked before anything runs), the run loop of every job
//! at once, and the graceful shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::clock::{Clock, TokioClock};
use super::driver::{Driver, Running};
use super::events::{Events, JobStats, SchedulerEvent, SchedulerObserver, SchedulerStats};
use super::job::Job;
use crate::error::{Error, Result};

/// How long a shutdown waits for runs going on, unless told otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs jobs on their triggers until cancelled; see the [module documentation](super).
pub struct Scheduler {
    jobs: Vec<Job>,
    clock: Option<Arc<dyn Clock>>,
    events: Events,
    grace: Duration,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("jobs", &self.jobs)
            .field("clock", &self.clock)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Scheduler`].
#[derive(Default)]
pub struct SchedulerBuilder {
    jobs: Vec<Job>,
    clock: Option<Arc<dyn Clock>>,
    observer: Option<Arc<dyn SchedulerObserver>>,
    grace: Option<Duration>,
}

impl fmt::Debug for SchedulerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerBuilder")
            .field("jobs", &self.jobs)
            .field("clock", &self.clock)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl SchedulerBuilder {
    /// Adds a job.
    pub fn job(mut self, job: Job) -> Self {
        self.jobs.push(job);
        self
    }

    /// Adds jobs.
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = Job>) -> Self {
        self.jobs.extend(jobs);
        self
    }

    /// The clock ticks are computed and waited for with ([`TokioClock`], created when
    /// [`Scheduler::run`] starts, by default).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Receives every [`SchedulerEvent`] (they also go to `tracing`).
    pub fn observer(mut self, observer: impl SchedulerObserver + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// How long a shutdown waits for cancelled runs to end before aborting them
    /// ([`DEFAULT_SHUTDOWN_GRACE`] by default).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Checks the jobs: names non-empty and unique, triggers that advance. The error is a
    /// configuration error naming the job.
    pub fn build(self) -> Result<Scheduler> {
        let mut names = BTreeSet::new();
        for job in &self.jobs {
            if job.name.trim().is_empty() {
                return Err(Error::config("a scheduled job has an empty name")
                    .with_operation("schedule job")
                    .with_hint("name every job (the component it backs up, e.g. \"postgres\")"));
            }
            if !names.insert(job.name.as_str()) {
                return Err(
                    Error::config(format!("two scheduled jobs are named {:?}", job.name))
                        .with_operation("schedule job")
                        .with_hint(
                            "give each job its own name: it tells runs apart and seeds the jitter",
                        ),
                );
            }
            job.trigger.check(&job.name)?;
        }
        let stats = SchedulerStats::with_jobs(names);
        Ok(Scheduler {
            jobs: self.jobs,
            clock: self.clock,
            events: Events {
                stats,
                observer: self.observer,
            },
            grace: self.grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        })
    }
}

/// How a scheduler ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// When it was cancelled.
    pub started_at: DateTime<Utc>,
    /// When it returned.
    pub finished_at: DateTime<Utc>,
    /// Jobs whose run was going on at cancellation and ended within the grace period.
    pub stopped: Vec<String>,
    /// Jobs whose run was still going on at the deadline, aborted.
    pub abandoned: Vec<String>,
    /// The counters of every job.
    pub stats: BTreeMap<String, JobStats>,
}

impl ShutdownReport {
    /// Whether every run ended on its own within the grace period.
    pub fn is_clean(&self) -> bool {
        self.abandoned.is_empty()
    }
}

impl Scheduler {
    /// Starts building a scheduler.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    /// The jobs, in the order they were added.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The live counters of every job (they keep counting while [`run`](Scheduler::run)
    /// goes on).
    pub fn stats(&self) -> SchedulerStats {
        self.events.stats.clone()
    }

    /// Runs every job until `cancel` is cancelled, then shuts down: no run starts any more,
    /// runs going on see their context's token cancelled and are waited for up to the grace
    /// period, then aborted. Runs are tokio tasks: call it inside a tokio runtime.
    pub async fn run(self, cancel: CancellationToken) -> ShutdownReport {
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(TokioClock::new()) as Arc<dyn Clock>);
        let drivers = self.jobs.into_iter().map(|job| {
            Driver {
                job,
                clock: clock.clone(),
                events: self.events.clone(),
                cancel: cancel.clone(),
            }
            .drive()
        });
        // Without jobs, the cancellation is what ends it.
        let (running, ()) = tokio::join!(join_all(drivers), cancel.cancelled());
        let running: Vec<Running> = running.into_iter().flatten().collect();
        shutdown(running, clock, self.events, self.grace).await
    }
}

/// Waits for the runs going on (their tokens are children of the cancelled one) until the
/// deadline, and aborts the rest.
async fn shutdown(
    running: Vec<Running>,
    clock: Arc<dyn Clock>,
    events: Events,
    grace: Duration,
) -> ShutdownReport {
    let started_at = clock.now();
    let deadline = started_at
        .checked_add_signed(TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    events.emit(SchedulerEvent::ShutdownStarted {
        at: started_at,
        running: running.iter().map(|r| r.job.clone()).collect(),
        deadline,
    });
    let waits = running.into_iter().map(|mut run| {
        let (clock, events) = (clock.clone(), events.clone());
        async move {
            tokio::select! {
                outcome = run.outcome() => {
                    let job = run.job.clone();
                    run.finish(outcome, &*clock, &events);
                    Ok(job)
                }
                () = clock.sleep_until(deadline) => {
                    // Best effort: a task stuck in blocking code cannot be stopped.
                    run.handle.abort();
                    events.emit(SchedulerEvent::Abandoned {
                        job: run.job.clone(),
                        started_at: run.started_at,
                    });
                    Err(run.job)
                }
            }
        }
    });
    let (stopped, abandoned) = join_all(waits).await.into_iter().fold(
        (Vec::new(), Vec::new()),
        |(mut stopped, mut abandoned), ended| {
            match ended {
                Ok(job) => stopped.push(job),
                Err(job) => abandoned.push(job),
            }
            (stopped, abandoned)
        },
    );
    ShutdownReport {
        started_at,
        finished_at: clock.now(),
        stopped,
        abandoned,
        stats: events.stats.snapshot(),
    }
}
