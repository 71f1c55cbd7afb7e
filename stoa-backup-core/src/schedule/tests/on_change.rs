//! On-change jobs: a scripted probe whose token depends on the (paused) time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{minutes, run_for, utc, BoxedRun};
use crate::change::{ChangeProbe, ChangeToken};
use crate::error::{Error, Result};
use crate::schedule::{
    Clock, Job, JobContext, JobOutput, OnChange, RunReason, SchedulerEvent, TokioClock, Trigger,
};

/// Gives, at each time, the token of the newest script line at or before it; `None` lines
/// fail as unavailable.
#[derive(Debug)]
struct Scripted {
    clock: TokioClock,
    script: Vec<(DateTime<Utc>, Option<&'static str>)>,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl ChangeProbe for Scripted {
    fn describe(&self) -> String {
        "scripted releases".into()
    }
    async fn probe(&self) -> Result<ChangeToken> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.clock.now();
        let line = self.script.iter().rev().find(|(from, _)| *from <= now);
        match line.and_then(|(_, token)| *token) {
            Some(token) => Ok(ChangeToken::new(token)),
            None => Err(Error::new(
                crate::ErrorKind::Unavailable,
                "the releases API did not answer",
            )),
        }
    }
}

fn at(m: u32, s: u32) -> DateTime<Utc> {
    utc(2026, 3, 1, 0, m, s)
}

fn watch(
    clock: &TokioClock,
    script: Vec<(DateTime<Utc>, Option<&'static str>)>,
    debounce: Duration,
) -> (OnChange, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let probe = Scripted {
        clock: clock.clone(),
        script,
        calls: calls.clone(),
    };
    let change = OnChange::new(probe)
        .poll_every(minutes(1))
        .debounce(debounce)
        .failure_backoff(minutes(5));
    (change, calls)
}

/// The tokens runs of `job` started from, with their start times.
fn changed_runs(events: &super::Recorder, job: &str) -> Vec<(DateTime<Utc>, String)> {
    events
        .starts(job)
        .into_iter()
        .map(|(at, reason)| match reason {
            RunReason::Changed { token } => (at, token.to_string()),
            other => panic!("an on-change run started for {other}"),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn one_run_per_settled_change() {
    let clock = TokioClock::starting_at(at(0, 0));
    let script = vec![
        (at(0, 0), Some("a")),
        (at(10, 0), Some("b")), // replaced within the debounce window: never backed up alone
        (at(11, 0), Some("c")),
        (at(40, 0), Some("d")),
        (at(44, 0), Some("e")), // while d's run goes on: one more run after it
    ];
    let (change, _) = watch(&clock, script, minutes(2));
    let run = |ctx: JobContext| -> BoxedRun {
        let took = match ctx.change_token().map(ChangeToken::as_str) {
            Some("d") => Duration::from_secs(270),
            _ => Duration::from_secs(30),
        };
        Box::pin(async move {
            tokio::time::sleep(took).await;
            Ok(JobOutput::new("exported"))
        })
    };
    let job = Job::new("helm", Trigger::on_change(change), run).last_token(ChangeToken::new("a"));
    let (report, events) = run_for(clock, minutes(90), vec![job]).await;
    assert_eq!(
        changed_runs(&events, "helm"),
        [
            (at(13, 0), "c".to_string()), // c first seen at 00:11, stable for 2 minutes
            (at(42, 0), "d".to_string()),
            (at(47, 0), "e".to_string()), // seen at 00:44, started once d's run ended (00:46:30)
        ]
    );
    let stats = report.stats["helm"];
    assert_eq!(
        (stats.runs, stats.failures, stats.skipped_while_running),
        (3, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn no_run_when_nothing_changed() {
    let clock = TokioClock::starting_at(at(0, 0));
    let done = |_: JobContext| async { Ok(JobOutput::new("exported")) };
    // The backed-up token all day long.
    let (same, same_calls) = watch(&clock, vec![(at(0, 0), Some("a"))], minutes(2));
    // A change that goes back before it settled.
    let (reverted, _) = watch(
        &clock,
        vec![
            (at(0, 0), Some("a")),
            (at(10, 0), Some("b")),
            (at(11, 0), Some("a")),
        ],
        minutes(2),
    );
    // Nothing known of the last run: the first token seen is a change, once.
    let (unknown, _) = watch(&clock, vec![(at(0, 0), Some("a"))], minutes(2));
    let jobs = vec![
        Job::new("same", Trigger::on_change(same), done).last_token(ChangeToken::new("a")),
        Job::new("reverted", Trigger::on_change(reverted), done).last_token(ChangeToken::new("a")),
        Job::new("unknown", Trigger::on_change(unknown), done),
    ];
    let (report, events) = run_for(clock, minutes(24 * 60) - Duration::from_secs(30), jobs).await;
    // Polled every minute of the day (00:00 to 23:59), never run.
    assert_eq!(same_calls.load(Ordering::SeqCst), 24 * 60);
    assert!(events.starts("same").is_empty());
    assert!(events.starts("reverted").is_empty());
    assert_eq!(
        changed_runs(&events, "unknown"),
        [(at(2, 0), "a".to_string())]
    );
    assert_eq!(report.stats["unknown"].runs, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_run_keeps_the_change_and_retries_after_the_backoff() {
    let clock = TokioClock::starting_at(at(0, 0));
    let script = vec![(at(0, 0), Some("a")), (at(10, 0), Some("b"))];
    let (change, _) = watch(&clock, script, Duration::ZERO);
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    let run = move |_: JobContext| -> BoxedRun {
        let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
        Box::pin(async move {
            if first {
                Err(Error::storage("the bucket is full"))
            } else {
                Ok(JobOutput::new("exported"))
            }
        })
    };
    let job =
        Job::new("grafana", Trigger::on_change(change), run).last_token(ChangeToken::new("a"));
    let (report, events) = run_for(clock, minutes(60), vec![job]).await;
    assert_eq!(
        changed_runs(&events, "grafana"),
        [(at(10, 0), "b".to_string()), (at(15, 0), "b".to_string())]
    );
    let stats = report.stats["grafana"];
    assert_eq!((stats.runs, stats.failures), (2, 1));
    let failed = events.events().into_iter().find_map(|e| match e {
        SchedulerEvent::Finished {
            outcome: Err(e), ..
        } => Some(e.to_string()),
        _ => None,
    });
    assert!(failed.unwrap().contains("the bucket is full"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_is_no_change_and_keeps_what_is_pending() {
    let clock = TokioClock::starting_at(at(0, 0));
    let script = vec![
        (at(0, 0), Some("a")),
        (at(4, 0), Some("b")),
        (at(5, 0), None), // 00:05, 00:06, 00:07 fail
        (at(8, 0), Some("b")),
    ];
    let (change, _) = watch(&clock, script, minutes(5));
    let done = |_: JobContext| async { Ok(JobOutput::new("exported")) };
    let job = Job::new("crds", Trigger::on_change(change), done).last_token(ChangeToken::new("a"));
    let (report, events) = run_for(clock, minutes(30), vec![job]).await;
    // b first seen at 00:04: five minutes later, failures in between, it runs.
    assert_eq!(changed_runs(&events, "crds"), [(at(9, 0), "b".to_string())]);
    let failures: Vec<_> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SchedulerEvent::ProbeFailed { probe, error, .. } => {
                Some((probe, error.kind(), error.message().to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 3);
    assert_eq!(
        failures[0],
        (
            "scripted releases".to_string(),
            crate::ErrorKind::Unavailable,
            "the releases API did not answer".to_string()
        )
    );
    assert_eq!(report.stats["crds"].probe_failures, 3);
}
