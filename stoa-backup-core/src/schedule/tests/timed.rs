//! Cron and interval jobs: exact tick times, skip-while-running, catch-up, jitter.

use std::time::Duration;

use chrono::TimeDelta;

use super::{minutes, run_for, takes, utc};
use crate::schedule::{
    jitter_offset, CatchUp, Job, RunReason, SchedulerEvent, TokioClock, Trigger,
};

#[tokio::test(start_paused = true)]
async fn cron_ticks_over_a_day_in_utc() {
    let start = utc(2026, 3, 1, 0, 0, 0);
    let jobs = vec![
        Job::new(
            "six-hourly",
            Trigger::cron("0 */6 * * *").unwrap(),
            takes(minutes(1)),
        ),
        Job::new(
            "nightly",
            Trigger::cron("15 2 * * *").unwrap(),
            takes(minutes(1)),
        ),
    ];
    let (report, events) =
        run_for(TokioClock::starting_at(start), minutes(24 * 60 + 1), jobs).await;
    // Strictly after the start: 00:00 itself is not a tick of a scheduler started then.
    assert_eq!(
        events.start_times("six-hourly"),
        [
            utc(2026, 3, 1, 6, 0, 0),
            utc(2026, 3, 1, 12, 0, 0),
            utc(2026, 3, 1, 18, 0, 0),
            utc(2026, 3, 2, 0, 0, 0),
        ]
    );
    assert_eq!(events.start_times("nightly"), [utc(2026, 3, 1, 2, 15, 0)]);
    assert!(matches!(
        events.starts("nightly")[0].1,
        RunReason::Scheduled { at } if at == utc(2026, 3, 1, 2, 15, 0)
    ));
    let finished: Vec<_> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SchedulerEvent::Finished {
                job,
                started_at,
                finished_at,
                outcome,
            } if job == "nightly" => Some((started_at, finished_at, outcome.unwrap().summary)),
            _ => None,
        })
        .collect();
    assert_eq!(
        finished,
        [(
            utc(2026, 3, 1, 2, 15, 0),
            utc(2026, 3, 1, 2, 16, 0),
            "nightly done".to_string()
        )]
    );
    let six = report.stats["six-hourly"];
    assert_eq!(
        (six.runs, six.failures, six.skipped_while_running),
        (4, 0, 0)
    );
    assert!(report.is_clean());
}

#[tokio::test(start_paused = true)]
async fn cron_across_spring_forward_in_paris() {
    // 2026-03-29 02:00 CET jumps to 03:00 CEST, at 01:00 UTC.
    let paris = |expr| Trigger::cron_in(expr, "Europe/Paris").unwrap();
    let jobs = vec![
        Job::new("two", paris("0 2 * * *"), takes(minutes(5))),
        Job::new("half-past-two", paris("30 2 * * *"), takes(minutes(5))),
        Job::new("half-hourly", paris("*/30 1-3 * * *"), takes(minutes(5))),
    ];
    let start = utc(2026, 3, 27, 12, 0, 0);
    let (_, events) = run_for(TokioClock::starting_at(start), minutes(3 * 24 * 60), jobs).await;
    assert_eq!(
        events.start_times("two"),
        [
            utc(2026, 3, 28, 1, 0, 0), // 02:00 CET
            utc(2026, 3, 29, 1, 0, 0), // no 02:00: once at 03:00 CEST
            utc(2026, 3, 30, 0, 0, 0), // 02:00 CEST
        ]
    );
    assert_eq!(
        events.start_times("half-past-two"),
        [
            utc(2026, 3, 28, 1, 30, 0),
            utc(2026, 3, 29, 1, 0, 0), // no 02:30: once at 03:00 CEST
            utc(2026, 3, 30, 0, 30, 0),
        ]
    );
    // On the night itself: 01:00, 01:30 CET, then 02:00, 02:30 and 03:00 are one run at
    // 03:00 CEST, then 03:30.
    let night: Vec<_> = events
        .start_times("half-hourly")
        .into_iter()
        .filter(|t| *t >= utc(2026, 3, 28, 23, 0, 0) && *t < utc(2026, 3, 29, 12, 0, 0))
        .collect();
    assert_eq!(
        night,
        [
            utc(2026, 3, 29, 0, 0, 0),
            utc(2026, 3, 29, 0, 30, 0),
            utc(2026, 3, 29, 1, 0, 0),
            utc(2026, 3, 29, 1, 30, 0),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn cron_across_fall_back_in_paris() {
    // 2026-10-25 03:00 CEST goes back to 02:00 CET, at 01:00 UTC: 02:xx happens twice.
    let paris = |expr| Trigger::cron_in(expr, "Europe/Paris").unwrap();
    let jobs = vec![
        Job::new("two", paris("0 2 * * *"), takes(minutes(5))),
        Job::new("half-hourly", paris("*/30 1-3 * * *"), takes(minutes(5))),
    ];
    let start = utc(2026, 10, 23, 12, 0, 0);
    let (_, events) = run_for(TokioClock::starting_at(start), minutes(3 * 24 * 60), jobs).await;
    assert_eq!(
        events.start_times("two"),
        [
            utc(2026, 10, 24, 0, 0, 0), // 02:00 CEST
            utc(2026, 10, 25, 0, 0, 0), // the first 02:00 (CEST) only
            utc(2026, 10, 26, 1, 0, 0), // 02:00 CET
        ]
    );
    let night: Vec<_> = events
        .start_times("half-hourly")
        .into_iter()
        .filter(|t| *t >= utc(2026, 10, 24, 22, 0, 0) && *t < utc(2026, 10, 25, 12, 0, 0))
        .collect();
    assert_eq!(
        night,
        [
            utc(2026, 10, 24, 23, 0, 0),  // 01:00 CEST
            utc(2026, 10, 24, 23, 30, 0), // 01:30 CEST
            utc(2026, 10, 25, 0, 0, 0),   // 02:00 CEST
            utc(2026, 10, 25, 0, 30, 0),  // 02:30 CEST; not again at 02:00 and 02:30 CET
            utc(2026, 10, 25, 2, 0, 0),   // 03:00 CET
            utc(2026, 10, 25, 2, 30, 0),  // 03:30 CET
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn ticks_while_running_are_skipped_and_counted() {
    // Every 10 minutes, each run takes 25: the two ticks during a run are skipped.
    let start = utc(2026, 3, 1, 0, 0, 0);
    let job = Job::new("slow", Trigger::every(minutes(10)), takes(minutes(25)));
    let (report, events) = run_for(TokioClock::starting_at(start), minutes(62), vec![job]).await;
    assert_eq!(
        events.start_times("slow"),
        [utc(2026, 3, 1, 0, 10, 0), utc(2026, 3, 1, 0, 40, 0)]
    );
    let skipped: Vec<_> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SchedulerEvent::SkippedWhileRunning { tick, .. } => Some(tick),
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        [
            utc(2026, 3, 1, 0, 20, 0),
            utc(2026, 3, 1, 0, 30, 0),
            utc(2026, 3, 1, 0, 50, 0),
            utc(2026, 3, 1, 1, 0, 0),
        ]
    );
    let stats = report.stats["slow"];
    assert_eq!((stats.runs, stats.skipped_while_running), (2, 4));
    // The second run was going on at 01:02 and stopped when cancelled.
    assert_eq!(report.stopped, ["slow"]);
    assert_eq!((stats.cancelled, stats.failures), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn one_catch_up_after_downtime_within_the_deadline() {
    // Down from 01:10 to 09:30: eight hourly ticks missed, one run at start for 09:00.
    let start = utc(2026, 3, 1, 9, 30, 0);
    let hourly = || Trigger::cron("0 * * * *").unwrap();
    let jobs = vec![
        Job::new("hourly", hourly(), takes(minutes(1))).last_run(utc(2026, 3, 1, 1, 10, 0)),
        // The newest missed 02:00 is 7.5 hours old: beyond the 6-hour deadline.
        Job::new(
            "nightly",
            Trigger::cron("0 2 * * *").unwrap(),
            takes(minutes(1)),
        )
        .last_run(utc(2026, 2, 28, 2, 0, 0))
        .catch_up(CatchUp::Within(Duration::from_secs(6 * 3600))),
        Job::new("never", hourly(), takes(minutes(1)))
            .last_run(utc(2026, 3, 1, 1, 10, 0))
            .catch_up(CatchUp::Never),
        // Ran at 09:00 already: nothing missed.
        Job::new("on-time", hourly(), takes(minutes(1))).last_run(utc(2026, 3, 1, 9, 0, 0)),
        // No known last run: nothing to catch up.
        Job::new("unknown", hourly(), takes(minutes(1))),
    ];
    let (report, events) = run_for(TokioClock::starting_at(start), minutes(61), jobs).await;
    assert_eq!(
        events.starts("hourly"),
        [
            (
                start,
                RunReason::CatchUp {
                    missed: utc(2026, 3, 1, 9, 0, 0)
                }
            ),
            (
                utc(2026, 3, 1, 10, 0, 0),
                RunReason::Scheduled {
                    at: utc(2026, 3, 1, 10, 0, 0)
                }
            ),
        ]
    );
    for job in ["never", "on-time", "unknown"] {
        assert_eq!(
            events.start_times(job),
            [utc(2026, 3, 1, 10, 0, 0)],
            "{job}"
        );
    }
    assert!(events.start_times("nightly").is_empty());
    let missed: Vec<_> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SchedulerEvent::MissedBeyondDeadline { job, missed } => Some((job, missed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        missed,
        [
            ("nightly".to_string(), utc(2026, 3, 1, 2, 0, 0)),
            ("never".to_string(), utc(2026, 3, 1, 2, 0, 0)),
        ]
    );
    let stats = &report.stats;
    assert_eq!((stats["hourly"].runs, stats["hourly"].caught_up), (2, 1));
    assert_eq!(stats["nightly"].missed_beyond_deadline, 1);
    assert_eq!(stats["never"].caught_up, 0);
    assert_eq!(stats["unknown"].caught_up + stats["on-time"].caught_up, 0);
}

#[tokio::test(start_paused = true)]
async fn jitter_moves_ticks_within_the_window_the_same_way_each_start() {
    let window = minutes(10);
    let jobs = || {
        ["postgres", "postgres-replica", "keycloak"].map(|name| {
            Job::new(name, Trigger::every(minutes(60)), takes(minutes(1))).jitter(window)
        })
    };
    let offsets = jobs().map(|j| j.jitter_offset());
    assert!(offsets.iter().all(|o| *o < window), "{offsets:?}");
    assert_eq!(offsets[0], jitter_offset("postgres", window));
    // Names alike land apart (the values are fixed by the hash: not a matter of luck).
    assert_ne!(offsets[0], offsets[1]);
    assert_ne!(offsets[0], offsets[2]);

    let mut seen = Vec::new();
    for _restart in 0..2 {
        let start = utc(2026, 3, 1, 0, 0, 0);
        let (_, events) = run_for(
            TokioClock::starting_at(start),
            minutes(2 * 60 + 11),
            jobs().into(),
        )
        .await;
        let starts = ["postgres", "postgres-replica", "keycloak"].map(|n| events.start_times(n));
        for (times, offset) in starts.iter().zip(offsets) {
            let offset = TimeDelta::from_std(offset).unwrap();
            assert_eq!(
                *times,
                [
                    // 00:00 is a tick too: its jittered time is after the start.
                    utc(2026, 3, 1, 0, 0, 0) + offset,
                    utc(2026, 3, 1, 1, 0, 0) + offset,
                    utc(2026, 3, 1, 2, 0, 0) + offset,
                ]
            );
        }
        seen.push(starts);
    }
    // The same names start at the same times after a restart.
    assert_eq!(seen[0], seen[1]);
}
