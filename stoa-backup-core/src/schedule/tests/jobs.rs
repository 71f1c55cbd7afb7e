//! Jobs that run real pipelines, and the checks of the builder.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{minutes, run_for, utc};
use crate::error::{Error, ErrorKind, Result};
use crate::schedule::{Job, JobOutput, Scheduler, SchedulerEvent, TokioClock, Trigger};
use crate::sink::MemorySink;
use crate::source::{ArtifactPlan, Export, ExportContext, PreflightReport, Source};
use crate::{Catalog, Pipeline, RunFilter};

/// One small artifact, or a failing export.
#[derive(Debug)]
struct Settings {
    fail: bool,
}

#[async_trait]
impl Source for Settings {
    fn component(&self) -> &str {
        "settings"
    }
    fn provider(&self) -> &str {
        "test"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan::new("settings.json", "application/json")])
    }
    async fn export(&self, _: &ArtifactPlan, _: &ExportContext) -> Result<Export> {
        if self.fail {
            return Err(Error::source_failed("the settings API answered 500"));
        }
        Ok(Export::new(crate::stream::once(Bytes::from_static(
            b"{\"theme\":\"dark\"}",
        ))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_job_builds_a_fresh_pipeline_per_run() {
    let sink = Arc::new(MemorySink::new());
    let job = |name: &str, fail: bool| {
        let sink = sink.clone();
        Job::pipeline(name, Trigger::every(minutes(60)), move |ctx| {
            Pipeline::builder()
                .source(Settings { fail })
                .sink(sink.clone())
                .label("job", ctx.job.clone())
                .cancel(ctx.cancel.clone())
                .build()
        })
    };
    let jobs = vec![job("settings", false), job("broken", true)];
    let clock = TokioClock::starting_at(utc(2026, 3, 1, 0, 30, 0));
    let (report, events) = run_for(clock, minutes(150), jobs).await;
    assert_eq!(
        events.start_times("settings"),
        [utc(2026, 3, 1, 1, 0, 0), utc(2026, 3, 1, 2, 0, 0)]
    );
    let outputs: Vec<JobOutput> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SchedulerEvent::Finished {
                job,
                outcome: Ok(out),
                ..
            } if job == "settings" => Some(out),
            _ => None,
        })
        .collect();
    assert_eq!(outputs.len(), 2);
    assert_ne!(outputs[0].run_id, outputs[1].run_id);
    assert!(
        outputs[0]
            .summary
            .ends_with("complete: 1 artifact(s), 16 bytes stored"),
        "{}",
        outputs[0].summary
    );
    // Both runs are complete backups in the catalog.
    let runs = Catalog::new(sink)
        .list_runs(&RunFilter::default())
        .await
        .unwrap();
    let complete: Vec<_> = runs
        .iter()
        .filter(|r| r.status == crate::RunStatus::Complete)
        .collect();
    assert_eq!(complete.len(), 2, "{runs:?}");

    // A run whose export fails is a failure, with the pipeline's error.
    assert_eq!(report.stats["broken"].runs, 2);
    assert_eq!(report.stats["broken"].failures, 2);
    let failure = events.events().into_iter().find_map(|e| match e {
        SchedulerEvent::Finished {
            job,
            outcome: Err(e),
            ..
        } if job == "broken" => Some(e),
        _ => None,
    });
    let failure = failure.unwrap();
    assert_eq!(failure.kind(), ErrorKind::Source);
    assert!(
        failure
            .to_string()
            .contains("the settings API answered 500"),
        "{failure}"
    );
}

#[test]
fn the_builder_refuses_empty_or_duplicate_names_and_triggers_that_never_advance() {
    let run = |_| async { Ok(JobOutput::new("done")) };
    let hourly = || Trigger::every(minutes(60));
    let e = Scheduler::builder()
        .job(Job::new("postgres", hourly(), run))
        .job(Job::new("postgres", hourly(), run))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string()
            .contains("two scheduled jobs are named \"postgres\""),
        "{e}"
    );

    let e = Scheduler::builder()
        .job(Job::new(" ", hourly(), run))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("empty name"), "{e}");

    let e = Scheduler::builder()
        .job(Job::new(
            "vault",
            Trigger::every(std::time::Duration::ZERO),
            run,
        ))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("job \"vault\": the interval"), "{e}");

    let scheduler = Scheduler::builder()
        .job(Job::new("postgres", hourly(), run))
        .job(Job::new("keycloak", hourly(), run))
        .build()
        .unwrap();
    let names: Vec<_> = scheduler.jobs().iter().map(Job::name).collect();
    assert_eq!(names, ["postgres", "keycloak"]);
    assert_eq!(scheduler.stats().get("keycloak").unwrap().runs, 0);
    assert!(scheduler.stats().get("grafana").is_none());
}
