//! A job: a name, a trigger, its policies, and what one run does (usually: build a fresh
//! [`Pipeline`] and run it).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::policy::{jitter_offset, CatchUp};
use super::trigger::Trigger;
use crate::change::ChangeToken;
use crate::error::Result;
use crate::manifest::RunId;
use crate::pipeline::{Pipeline, RunReport};

/// What one run of a job does. Implemented for every
/// `Fn(JobContext) -> impl Future<Output = Result<JobOutput>>`; [`Job::pipeline`] builds
/// one from a pipeline factory.
pub trait JobRun: Send + Sync + 'static {
    /// Starts one run. It should end soon after `ctx.cancel` is cancelled (pass the token
    /// to [`PipelineBuilder::cancel`](crate::PipelineBuilder::cancel)); a run still going
    /// at the shutdown deadline is aborted.
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput>>;
}

impl<F, Fut> JobRun for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<JobOutput>> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput>> {
        Box::pin(self(ctx))
    }
}

/// What a run is told.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's name.
    pub job: String,
    /// Why it runs.
    pub reason: RunReason,
    /// Cancelled when the scheduler shuts down.
    pub cancel: CancellationToken,
}

impl JobContext {
    /// The token the run started from, for an on-change run (record it, e.g. as a pipeline
    /// label, to give it back as [`Job::last_token`] after a restart).
    pub fn change_token(&self) -> Option<&ChangeToken> {
        match &self.reason {
            RunReason::Changed { token } => Some(token),
            _ => None,
        }
    }
}

/// Why a run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunReason {
    /// A tick of its schedule (jitter included).
    Scheduled {
        /// The tick.
        at: DateTime<Utc>,
    },
    /// At start, for the newest tick missed while the scheduler was not running.
    CatchUp {
        /// That tick.
        missed: DateTime<Utc>,
    },
    /// Its probe's token changed (and stayed for the debounce window).
    Changed {
        /// The token the run starts from.
        token: ChangeToken,
    },
}

impl fmt::Display for RunReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunReason::Scheduled { at } => write!(f, "scheduled for {}", at.to_rfc3339()),
            RunReason::CatchUp { missed } => {
                write!(f, "catching up the run missed at {}", missed.to_rfc3339())
            }
            RunReason::Changed { token } => write!(f, "changed (token {token})"),
        }
    }
}

/// What a successful run reports back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobOutput {
    /// The backup run it made, if it ran a pipeline.
    pub run_id: Option<RunId>,
    /// One line for logs (`run … complete: 3 artifact(s), 1024 bytes stored`).
    pub summary: String,
}

impl JobOutput {
    /// An output with a summary and no run id.
    pub fn new(summary: impl Into<String>) -> Self {
        JobOutput {
            run_id: None,
            summary: summary.into(),
        }
    }

    /// The output of a pipeline run: `Ok` when the run is a complete backup whose retention
    /// (if any) succeeded, the error of [`RunReport::into_result`] otherwise.
    pub fn from_report(report: RunReport) -> Result<JobOutput> {
        let report = report.into_result()?;
        let stored: u64 = report
            .manifest
            .artifacts
            .iter()
            .map(|a| a.stored_size)
            .sum();
        Ok(JobOutput {
            summary: format!(
                "run {} complete: {} artifact(s), {stored} bytes stored",
                report.run_id,
                report.manifest.artifacts.len()
            ),
            run_id: Some(report.run_id),
        })
    }
}

/// A scheduled job. Built with [`Job::new`] or [`Job::pipeline`], then policies:
/// [`jitter`](Job::jitter), [`catch_up`](Job::catch_up), and what the caller knows of past
/// runs ([`last_run`](Job::last_run), [`last_token`](Job::last_token)).
#[derive(Clone)]
pub struct Job {
    pub(crate) name: String,
    pub(crate) trigger: Trigger,
    pub(crate) run: Arc<dyn JobRun>,
    pub(crate) jitter: Duration,
    pub(crate) catch_up: CatchUp,
    pub(crate) last_run: Option<DateTime<Utc>>,
    pub(crate) last_token: Option<ChangeToken>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("trigger", &self.trigger)
            .field("jitter", &self.jitter)
            .field("catch_up", &self.catch_up)
            .field("last_run", &self.last_run)
            .field("last_token", &self.last_token)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job named `name` (unique in its scheduler; it seeds the jitter), started by
    /// `trigger`, doing `run`. No jitter, [`CatchUp::default`], no known past run.
    pub fn new(name: impl Into<String>, trigger: Trigger, run: impl JobRun) -> Job {
        Job {
            name: name.into(),
            trigger,
            run: Arc::new(run),
            jitter: Duration::ZERO,
            catch_up: CatchUp::default(),
            last_run: None,
            last_token: None,
        }
    }

    /// A job that builds a fresh pipeline for each run with `build` and runs it; the run
    /// succeeds when [`JobOutput::from_report`] does. `build` must hand the context's
    /// `cancel` token to [`PipelineBuilder::cancel`](crate::PipelineBuilder::cancel), or a
    /// shutdown can only abort the run at its deadline.
    pub fn pipeline<F>(name: impl Into<String>, trigger: Trigger, build: F) -> Job
    where
        F: Fn(&JobContext) -> Result<Pipeline> + Send + Sync + 'static,
    {
        let build = Arc::new(build);
        Job::new(name, trigger, move |ctx: JobContext| {
            let build = build.clone();
            async move {
                let pipeline = build(&ctx)?;
                JobOutput::from_report(pipeline.run().await?)
            }
        })
    }

    /// Moves every tick by the job's offset within `window` ([`jitter_offset`]): jobs named
    /// alike spread over the window, the same job always lands at the same offset. Applies
    /// to cron and interval triggers.
    pub fn jitter(mut self, window: Duration) -> Self {
        self.jitter = window;
        self
    }

    /// What to do at start about ticks missed while the scheduler was not running.
    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// When the job last started a run (e.g. the catalog's newest run of its component):
    /// what catch-up counts missed ticks from.
    pub fn last_run(mut self, at: impl Into<Option<DateTime<Utc>>>) -> Self {
        self.last_run = at.into();
        self
    }

    /// The token the last successful run of an on-change job started from: a probe that
    /// still gives it is no change.
    pub fn last_token(mut self, token: impl Into<Option<ChangeToken>>) -> Self {
        self.last_token = token.into();
        self
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What starts it.
    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// The offset its ticks are moved by.
    pub fn jitter_offset(&self) -> Duration {
        jitter_offset(&self.name, self.jitter)
    }

    /// Its first tick strictly after `after`, jitter included; `None` for an on-change job.
    pub fn next_run_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = chrono::TimeDelta::from_std(self.jitter_offset()).ok()?;
        let tick = self.trigger.next_after(after.checked_sub_signed(offset)?)?;
        tick.checked_add_signed(offset)
    }
}
