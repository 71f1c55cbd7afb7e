//! A scheduler for backups inside a service (cargo feature `scheduler`): what a CronJob
//! gives — a schedule, never two runs of a job at once, missed-run handling — and what it
//! does not: on-change triggers.
//!
//! - [`Job`]: a name, a [`Trigger`] and what one run does, usually a fresh [`Pipeline`]
//!   per run ([`Job::pipeline`]).
//! - [`Trigger`]: cron in UTC or an IANA zone ([`CronSchedule`]; the daylight saving rule
//!   is in the [`trigger`] module: a time in a gap runs once at the first instant after it,
//!   a time in an overlap runs once), a fixed interval, or [`OnChange`] (a
//!   [`ChangeProbe`](crate::ChangeProbe) polled, debounced, a backup only when its token
//!   differs from the one the last successful run started from).
//! - Policies ([`policy`]): a tick that comes while the job runs is skipped and counted;
//!   ticks missed while the scheduler was down are caught up once at start, within a
//!   starting deadline ([`CatchUp`]); deterministic per-job [jitter](jitter_offset).
//! - [`Scheduler::run`] runs until its `CancellationToken` is cancelled, then cancels the
//!   runs going on and waits for them up to a grace period ([`ShutdownReport`]).
//! - [`SchedulerEvent`]s go to an observer and to `tracing`; [`JobStats`] count them.
//! - [`Clock`]: the default [`TokioClock`] follows tokio's clock, so a paused test clock
//!   runs a day of schedule without waiting.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use async_trait::async_trait;
//! use stoa_backup_core::schedule::{Job, JobOutput, OnChange, Scheduler, Trigger};
//! use stoa_backup_core::{ChangeProbe, ChangeToken, FileSource, MemorySink, Pipeline, Result};
//! use tokio_util::sync::CancellationToken;
//!
//! #[derive(Debug)]
//! struct DashboardVersions;
//!
//! #[async_trait]
//! impl ChangeProbe for DashboardVersions {
//!     fn describe(&self) -> String {
//!         "grafana dashboards".into()
//!     }
//!     async fn probe(&self) -> Result<ChangeToken> {
//!         Ok(ChangeToken::new("uid-a:7,uid-b:3"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let sink = Arc::new(MemorySink::new());
//! // PostgreSQL-like: every night at 02:00 in Paris, spread over 10 minutes, caught up
//! // once after an outage; the catalog would give the last run.
//! let nightly = Job::pipeline(
//!     "config",
//!     Trigger::cron_in("0 2 * * *", "Europe/Paris")?,
//!     move |ctx| {
//!         Pipeline::builder()
//!             .source(FileSource::new("config", "/etc/stoa/config.yaml", "config.yaml"))
//!             .sink(sink.clone())
//!             .cancel(ctx.cancel.clone())
//!             .build()
//!     },
//! )
//! .jitter(Duration::from_secs(600));
//! // Grafana-like: when the dashboards changed, once they settled for a minute.
//! let dashboards = Job::new(
//!     "grafana",
//!     Trigger::on_change(
//!         OnChange::new(DashboardVersions)
//!             .poll_every(Duration::from_secs(30))
//!             .debounce(Duration::from_secs(60)),
//!     ),
//!     |ctx: stoa_backup_core::schedule::JobContext| async move {
//!         Ok(JobOutput::new(format!("exported at {:?}", ctx.change_token())))
//!     },
//! );
//! let scheduler = Scheduler::builder()
//!     .job(nightly)
//!     .job(dashboards)
//!     .shutdown_grace(Duration::from_secs(30))
//!     .build()?;
//! let stats = scheduler.stats();
//!
//! let cancel = CancellationToken::new();
//! let service = tokio::spawn(scheduler.run(cancel.clone()));
//! // … serve requests; on Ctrl-C or SIGTERM:
//! cancel.cancel();
//! let report = service.await.expect("the scheduler does not panic");
//! assert!(report.is_clean());
//! assert_eq!(stats.get("config").unwrap().runs, 0);
//! # Ok(()) }
//! ```
//!
//! [`Pipeline`]: crate::Pipeline

mod clock;
mod driver;
mod events;
mod job;
pub mod policy;
mod scheduler;
pub mod trigger;

#[cfg(test)]
mod tests;

pub use self::clock::{Clock, TokioClock};
pub use self::events::{JobStats, SchedulerEvent, SchedulerObserver, SchedulerStats};
pub use self::job::{Job, JobContext, JobOutput, JobRun, RunReason};
pub use self::policy::{jitter_offset, CatchUp, DEFAULT_STARTING_DEADLINE};
pub use self::scheduler::{Scheduler, SchedulerBuilder, ShutdownReport, DEFAULT_SHUTDOWN_GRACE};
pub use self::trigger::{CronSchedule, OnChange, Trigger};
