//! Unfinished runs are aged by their newest write, by the slower of two clocks: the
//! planner's and the storage's (the newest write in the listing).

use super::*;

struct ActivityCase {
    name: &'static str,
    started: &'static str,
    /// The run's newest write and the newest write in the whole listing (storage clock).
    active: Option<&'static str>,
    storage: Option<&'static str>,
    /// How long the run counts as inactive at the planner's `now`.
    inactive: Duration,
    kept: bool,
}

#[test]
fn unfinished_runs_age_by_their_newest_write_by_the_slower_clock() {
    // The planner's clock; the storage's clock is the `storage` of each row.
    let now = t("2026-04-10T12:00:00Z");
    let minute = Duration::minutes(1);
    let cases = [
        ActivityCase {
            name: "running for 30 hours, heartbeat a minute ago",
            started: "2026-04-09T06:00:00Z",
            active: Some("2026-04-10T11:59:00Z"),
            storage: Some("2026-04-10T12:00:00Z"),
            inactive: minute,
            kept: true,
        },
        ActivityCase {
            name: "the planner's clock is 25 hours ahead of the storage's",
            started: "2026-04-09T10:00:00Z",
            active: Some("2026-04-09T10:59:00Z"),
            storage: Some("2026-04-09T11:00:00Z"),
            inactive: minute,
            kept: true,
        },
        ActivityCase {
            name: "the storage's clock is 25 hours ahead of the planner's",
            started: "2026-04-11T12:00:00Z",
            active: Some("2026-04-11T12:59:00Z"),
            storage: Some("2026-04-11T13:00:00Z"),
            inactive: Duration::minutes(-(24 * 60 + 59)),
            kept: true,
        },
        ActivityCase {
            name: "crashed 26 hours ago",
            started: "2026-04-09T09:00:00Z",
            active: Some("2026-04-09T10:00:00Z"),
            storage: Some("2026-04-10T12:00:00Z"),
            inactive: Duration::hours(26),
            kept: false,
        },
        ActivityCase {
            name: "crashed 26 hours ago by the storage's clock, the planner's 25 hours ahead",
            started: "2026-04-08T08:00:00Z",
            active: Some("2026-04-08T09:00:00Z"),
            storage: Some("2026-04-09T11:00:00Z"),
            inactive: Duration::hours(26),
            kept: false,
        },
        ActivityCase {
            name: "crashed, but nothing was written since: the storage's clock has not moved",
            started: "2026-04-09T06:00:00Z",
            active: Some("2026-04-09T06:00:00Z"),
            storage: Some("2026-04-09T06:00:00Z"),
            inactive: Duration::zero(),
            kept: true,
        },
        ActivityCase {
            name: "no write times (a backend without them): the age since the start",
            started: "2026-04-09T11:00:00Z",
            active: None,
            storage: None,
            inactive: Duration::hours(25),
            kept: false,
        },
    ];
    for case in cases {
        let run = RunSummary {
            last_activity: case.active.map(t),
            storage_now: case.storage.map(t),
            ..run_with(case.started, Incomplete, false, false)
        };
        assert_eq!(run.inactive_for(now), case.inactive, "{}", case.name);
        let plan = KeepRules::new().plan(std::slice::from_ref(&run), now);
        let want: &[KeepReason] = if case.kept { &[GracePeriod] } else { &[] };
        assert_eq!(plan.decisions[0].reasons(), want, "{}", case.name);
        assert_eq!(plan.decisions[0].last_activity, run.last_activity);
    }
}
