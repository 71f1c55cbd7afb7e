//! What the scheduler tells: events to a caller-supplied observer (and to `tracing`), and
//! counters per job kept from the same events, so the two always agree.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::job::{JobOutput, RunReason};
use crate::error::{Error, ErrorKind, Result};

/// Something the scheduler did or saw.
#[derive(Debug)]
#[non_exhaustive]
pub enum SchedulerEvent {
    /// A run started (a catch-up run has [`RunReason::CatchUp`]).
    Started {
        /// The job.
        job: String,
        /// Why.
        reason: RunReason,
        /// When.
        at: DateTime<Utc>,
    },
    /// A tick came while the job's previous run was still going on: no second run.
    SkippedWhileRunning {
        /// The job.
        job: String,
        /// The tick skipped.
        tick: DateTime<Utc>,
    },
    /// Ticks were missed before the scheduler started, too long ago to catch up (or the job
    /// never catches up).
    MissedBeyondDeadline {
        /// The job.
        job: String,
        /// The oldest tick missed.
        missed: DateTime<Utc>,
    },
    /// A run ended.
    Finished {
        /// The job.
        job: String,
        /// When it started.
        started_at: DateTime<Utc>,
        /// When it ended.
        finished_at: DateTime<Utc>,
        /// What it reported, or why it failed.
        outcome: Result<JobOutput>,
    },
    /// An on-change job's probe failed (no change is assumed).
    ProbeFailed {
        /// The job.
        job: String,
        /// What the probe watches.
        probe: String,
        /// Why it failed.
        error: Error,
    },
    /// The scheduler was cancelled: no more runs start; running ones were cancelled and are
    /// waited for until `deadline`.
    ShutdownStarted {
        /// When.
        at: DateTime<Utc>,
        /// The jobs with a run going on.
        running: Vec<String>,
        /// Until when they are waited for.
        deadline: DateTime<Utc>,
    },
    /// A run was still going on at the shutdown deadline and was aborted.
    Abandoned {
        /// The job.
        job: String,
        /// When it started.
        started_at: DateTime<Utc>,
    },
}

impl SchedulerEvent {
    /// The job the event is about (`None` for [`SchedulerEvent::ShutdownStarted`]).
    pub fn job(&self) -> Option<&str> {
        match self {
            SchedulerEvent::Started { job, .. }
            | SchedulerEvent::SkippedWhileRunning { job, .. }
            | SchedulerEvent::MissedBeyondDeadline { job, .. }
            | SchedulerEvent::Finished { job, .. }
            | SchedulerEvent::ProbeFailed { job, .. }
            | SchedulerEvent::Abandoned { job, .. } => Some(job),
            SchedulerEvent::ShutdownStarted { .. } => None,
        }
    }
}

impl Clone for SchedulerEvent {
    fn clone(&self) -> Self {
        use SchedulerEvent::*;
        match self {
            Started { job, reason, at } => Started {
                job: job.clone(),
                reason: reason.clone(),
                at: *at,
            },
            SkippedWhileRunning { job, tick } => SkippedWhileRunning {
                job: job.clone(),
                tick: *tick,
            },
            MissedBeyondDeadline { job, missed } => MissedBeyondDeadline {
                job: job.clone(),
                missed: *missed,
            },
            Finished {
                job,
                started_at,
                finished_at,
                outcome,
            } => Finished {
                job: job.clone(),
                started_at: *started_at,
                finished_at: *finished_at,
                outcome: match outcome {
                    Ok(output) => Ok(output.clone()),
                    Err(e) => Err(e.duplicate()),
                },
            },
            ProbeFailed { job, probe, error } => ProbeFailed {
                job: job.clone(),
                probe: probe.clone(),
                error: error.duplicate(),
            },
            ShutdownStarted {
                at,
                running,
                deadline,
            } => ShutdownStarted {
                at: *at,
                running: running.clone(),
                deadline: *deadline,
            },
            Abandoned { job, started_at } => Abandoned {
                job: job.clone(),
                started_at: *started_at,
            },
        }
    }
}

/// Receives the scheduler's events. Implemented for every `Fn(&SchedulerEvent)`; forward
/// to a channel with `move |e| { let _ = tx.send(e.clone()); }`.
pub trait SchedulerObserver: Send + Sync {
    /// Called for every event, from the scheduler's task: return quickly.
    fn on_event(&self, event: &SchedulerEvent);
}

impl<F: Fn(&SchedulerEvent) + Send + Sync> SchedulerObserver for F {
    fn on_event(&self, event: &SchedulerEvent) {
        self(event)
    }
}

/// Counters of one job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct JobStats {
    /// Runs started (catch-up runs included).
    pub runs: u64,
    /// Runs that ended in failure (an error or a panic).
    pub failures: u64,
    /// Runs that ended cancelled (by a shutdown).
    pub cancelled: u64,
    /// Ticks skipped because the previous run was still going on.
    pub skipped_while_running: u64,
    /// Catch-up runs started.
    pub caught_up: u64,
    /// Starts at which missed ticks were too old to catch up.
    pub missed_beyond_deadline: u64,
    /// Failed probes of an on-change job.
    pub probe_failures: u64,
    /// Runs aborted at the shutdown deadline.
    pub abandoned: u64,
}

/// The counters of every job of a scheduler, live (cheap to clone; all clones share them).
#[derive(Debug, Clone, Default)]
pub struct SchedulerStats {
    jobs: Arc<Mutex<BTreeMap<String, JobStats>>>,
}

impl SchedulerStats {
    pub(crate) fn with_jobs<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let jobs = names
            .into_iter()
            .map(|n| (n.to_string(), JobStats::default()))
            .collect();
        SchedulerStats {
            jobs: Arc::new(Mutex::new(jobs)),
        }
    }

    /// The counters of `job`, if the scheduler has it.
    pub fn get(&self, job: &str) -> Option<JobStats> {
        self.lock().get(job).copied()
    }

    /// The counters of every job, by name.
    pub fn snapshot(&self) -> BTreeMap<String, JobStats> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, JobStats>> {
        // Counters stay meaningful after a panic elsewhere: each update is one increment.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, event: &SchedulerEvent) {
        let Some(name) = event.job() else { return };
        let mut jobs = self.lock();
        let stats = jobs.entry(name.to_string()).or_default();
        match event {
            SchedulerEvent::Started { reason, .. } => {
                stats.runs += 1;
                if matches!(reason, RunReason::CatchUp { .. }) {
                    stats.caught_up += 1;
                }
            }
            SchedulerEvent::SkippedWhileRunning { .. } => stats.skipped_while_running += 1,
            SchedulerEvent::MissedBeyondDeadline { .. } => stats.missed_beyond_deadline += 1,
            SchedulerEvent::Finished { outcome, .. } => match outcome {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Cancelled => stats.cancelled += 1,
                Err(_) => stats.failures += 1,
            },
            SchedulerEvent::ProbeFailed { .. } => stats.probe_failures += 1,
            SchedulerEvent::Abandoned { .. } => stats.abandoned += 1,
            SchedulerEvent::ShutdownStarted { .. } => {}
        }
    }
}

/// Where events go: the counters, `tracing`, then the observer.
#[derive(Clone)]
pub(crate) struct Events {
    pub stats: SchedulerStats,
    pub observer: Option<Arc<dyn SchedulerObserver>>,
}

impl Events {
    pub fn emit(&self, event: SchedulerEvent) {
        self.stats.count(&event);
        trace(&event);
        if let Some(observer) = &self.observer {
            observer.on_event(&event);
        }
    }
}

fn trace(event: &SchedulerEvent) {
    match event {
        SchedulerEvent::Started { job, reason, .. } => {
            tracing::info!(job = %job, reason = %reason, "scheduled job started")
        }
        SchedulerEvent::SkippedWhileRunning { job, tick } => tracing::warn!(
            job = %job, tick = %tick.to_rfc3339(),
            "tick skipped: the previous run of the job is still going on"
        ),
        SchedulerEvent::MissedBeyondDeadline { job, missed } => tracing::warn!(
            job = %job, missed = %missed.to_rfc3339(),
            "runs missed while the scheduler was not running are too old to catch up"
        ),
        SchedulerEvent::Finished {
            job,
            outcome: Ok(output),
            ..
        } => tracing::info!(job = %job, summary = %output.summary, "scheduled job finished"),
        SchedulerEvent::Finished {
            job,
            outcome: Err(error),
            ..
        } => tracing::warn!(job = %job, error = %error, "scheduled job failed"),
        SchedulerEvent::ProbeFailed { job, probe, error } => tracing::warn!(
            job = %job, probe = %probe, error = %error,
            "change probe failed; taken as no change"
        ),
        SchedulerEvent::ShutdownStarted {
            running, deadline, ..
        } => tracing::info!(
            running = ?running, deadline = %deadline.to_rfc3339(),
            "scheduler shutting down"
        ),
        SchedulerEvent::Abandoned { job, .. } => tracing::warn!(
            job = %job,
            "run still going on at the shutdown deadline: aborted"
        ),
    }
}
