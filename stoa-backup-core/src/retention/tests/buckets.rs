//! The calendar-bucket table: keep last / hourly / daily / weekly / monthly / yearly,
//! within and forever, around month, ISO-week and year boundaries.

use super::*;

/// One planning case: complete runs at the given times, planned at `now` by `rules`.
pub(super) struct BucketCase {
    /// The behaviour the row checks (the names of the tests this table replaced).
    pub(super) name: &'static str,
    pub(super) runs: Vec<RunSummary>,
    pub(super) now: &'static str,
    pub(super) rules: KeepRules,
    /// Start times of the runs kept, newest first.
    pub(super) kept: &'static [&'static str],
    /// The reasons every kept run must have, exactly (`None`: not checked by this row).
    pub(super) reasons: Option<&'static [KeepReason]>,
}

pub(super) fn completes(times: &[&str]) -> Vec<RunSummary> {
    times.iter().map(|at| complete(at)).collect()
}

fn bucket_cases() -> Vec<BucketCase> {
    let days = || {
        completes(&[
            "2026-03-01T01:00:00Z",
            "2026-03-01T13:00:00Z",
            "2026-03-01T23:59:59Z",
            "2026-03-02T00:00:00Z",
            "2026-03-02T06:00:00Z",
            "2026-03-04T06:00:00Z",
        ])
    };
    let month_end = || {
        completes(&[
            "2026-01-30T12:00:00Z",
            "2026-01-31T10:00:00Z",
            "2026-01-31T23:59:59Z",
            "2026-02-01T00:00:00Z",
            "2026-02-01T09:00:00Z",
        ])
    };
    let leap = || {
        completes(&[
            "2028-02-28T02:00:00Z",
            "2028-02-29T02:00:00Z",
            "2028-02-29T22:00:00Z",
            "2028-03-01T00:30:00Z",
        ])
    };
    let week_53 = || {
        completes(&[
            "2026-12-27T12:00:00Z", // Sunday, 2026-W52
            "2026-12-28T12:00:00Z", // Monday, 2026-W53
            "2026-12-31T12:00:00Z", // Thursday, 2026-W53
            "2027-01-03T12:00:00Z", // Sunday, 2026-W53
            "2027-01-04T12:00:00Z", // Monday, 2027-W01
            "2027-01-10T12:00:00Z", // Sunday, 2027-W01
        ])
    };
    let dec_30 = || {
        completes(&[
            "2024-12-29T12:00:00Z", // Sunday, 2024-W52
            "2024-12-30T12:00:00Z", // Monday, 2025-W01
            "2024-12-31T12:00:00Z", // Tuesday, 2025-W01
            "2025-01-05T12:00:00Z", // Sunday, 2025-W01
        ])
    };
    let with_failures = || {
        let mut runs = completes(&[
            "2026-05-01T00:00:00Z",
            "2026-05-02T00:00:00Z",
            "2026-05-03T00:00:00Z",
            "2026-05-04T00:00:00Z",
        ]);
        runs.push(failed("2026-05-05T00:00:00Z"));
        runs.push(run_with("2026-05-05T01:00:00Z", Partial, false, false));
        runs
    };
    let within = || {
        completes(&[
            "2026-01-01T00:00:00Z",
            "2026-02-27T00:00:00Z",
            "2026-02-27T00:00:01Z",
            "2026-02-28T12:00:00Z",
        ])
    };
    let forever = || {
        let mut runs = completes(&["2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"]);
        runs.push(failed("2021-01-02T00:00:00Z"));
        runs.push(run_with("2021-01-03T00:00:00Z", Partial, true, false));
        runs.push(run_with("2021-01-04T00:00:00Z", Incomplete, false, false));
        runs
    };
    let rules = KeepRules::new;
    vec![
        BucketCase {
            name: "daily_keeps_newest_complete_run_of_each_day",
            runs: days(),
            now: "2026-03-10T00:00:00Z",
            rules: rules().keep_daily(KeepCount::Last(2)),
            kept: &["2026-03-04T06:00:00Z", "2026-03-02T06:00:00Z"],
            reasons: None,
        },
        BucketCase {
            name: "daily_keeps_newest_complete_run_of_each_day: days without runs (03-03) do not use up the count",
            runs: days(),
            now: "2026-03-10T00:00:00Z",
            rules: rules().keep_daily(KeepCount::Last(3)),
            kept: &[
                "2026-03-04T06:00:00Z",
                "2026-03-02T06:00:00Z",
                "2026-03-01T23:59:59Z",
            ],
            reasons: None,
        },
        BucketCase {
            name: "daily_keeps_newest_complete_run_of_each_day: unlimited",
            runs: days(),
            now: "2026-03-10T00:00:00Z",
            rules: rules().keep_daily(KeepCount::Unlimited),
            kept: &[
                "2026-03-04T06:00:00Z",
                "2026-03-02T06:00:00Z",
                "2026-03-01T23:59:59Z",
            ],
            reasons: Some(&[Daily]),
        },
        BucketCase {
            name: "monthly_boundary_jan31_feb1",
            runs: month_end(),
            now: "2026-02-02T00:00:00Z",
            rules: rules().keep_monthly(KeepCount::Last(2)),
            kept: &["2026-02-01T09:00:00Z", "2026-01-31T23:59:59Z"],
            reasons: None,
        },
        BucketCase {
            name: "monthly_boundary_jan31_feb1: last 1",
            runs: month_end(),
            now: "2026-02-02T00:00:00Z",
            rules: rules().keep_monthly(KeepCount::Last(1)),
            kept: &["2026-02-01T09:00:00Z"],
            reasons: Some(&[Monthly]),
        },
        BucketCase {
            name: "leap_day_2028_is_its_own_day_in_february: daily",
            runs: leap(),
            now: "2028-03-02T00:00:00Z",
            rules: rules().keep_daily(KeepCount::Unlimited),
            kept: &[
                "2028-03-01T00:30:00Z",
                "2028-02-29T22:00:00Z",
                "2028-02-28T02:00:00Z",
            ],
            reasons: None,
        },
        BucketCase {
            name: "leap_day_2028_is_its_own_day_in_february: monthly",
            runs: leap(),
            now: "2028-03-02T00:00:00Z",
            rules: rules().keep_monthly(KeepCount::Unlimited),
            kept: &["2028-03-01T00:30:00Z", "2028-02-29T22:00:00Z"],
            reasons: None,
        },
        BucketCase {
            name: "iso_week_53_spans_new_year_2027",
            runs: week_53(),
            now: "2027-01-11T00:00:00Z",
            rules: rules().keep_weekly(KeepCount::Unlimited),
            kept: &[
                "2027-01-10T12:00:00Z",
                "2027-01-03T12:00:00Z",
                "2026-12-27T12:00:00Z",
            ],
            reasons: None,
        },
        BucketCase {
            name: "iso_week_53_spans_new_year_2027: 2026-W53 is one bucket across two calendar years",
            runs: week_53(),
            now: "2027-01-11T00:00:00Z",
            rules: rules().keep_weekly(KeepCount::Last(2)),
            kept: &["2027-01-10T12:00:00Z", "2027-01-03T12:00:00Z"],
            reasons: None,
        },
        BucketCase {
            name: "iso_week_53_spans_new_year_2027: yearly uses calendar years, not ISO years",
            runs: week_53(),
            now: "2027-01-11T00:00:00Z",
            rules: rules().keep_yearly(KeepCount::Unlimited),
            kept: &["2027-01-10T12:00:00Z", "2026-12-31T12:00:00Z"],
            reasons: None,
        },
        BucketCase {
            name: "dec_30_2024_belongs_to_2025_w01: weekly",
            runs: dec_30(),
            now: "2025-01-06T00:00:00Z",
            rules: rules().keep_weekly(KeepCount::Unlimited),
            kept: &["2025-01-05T12:00:00Z", "2024-12-29T12:00:00Z"],
            reasons: None,
        },
        BucketCase {
            name: "dec_30_2024_belongs_to_2025_w01: yearly",
            runs: dec_30(),
            now: "2025-01-06T00:00:00Z",
            rules: rules().keep_yearly(KeepCount::Unlimited),
            kept: &["2025-01-05T12:00:00Z", "2024-12-31T12:00:00Z"],
            reasons: None,
        },
        BucketCase {
            name: "yearly_keeps_last_n_years_with_runs: 2025 has no run and does not use up the count",
            runs: completes(&[
                "2022-06-01T00:00:00Z",
                "2023-12-31T23:59:59Z",
                "2024-01-01T00:00:00Z",
                "2024-07-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
            ]),
            now: "2026-06-01T00:00:00Z",
            rules: rules().keep_yearly(KeepCount::Last(3)),
            kept: &[
                "2026-01-01T00:00:00Z",
                "2024-07-01T00:00:00Z",
                "2023-12-31T23:59:59Z",
            ],
            reasons: Some(&[Yearly]),
        },
        BucketCase {
            name: "keep_last_counts_only_complete_runs",
            runs: with_failures(),
            now: "2026-06-01T00:00:00Z",
            rules: rules().keep_last(3),
            kept: &[
                "2026-05-04T00:00:00Z",
                "2026-05-03T00:00:00Z",
                "2026-05-02T00:00:00Z",
            ],
            reasons: Some(&[Last]),
        },
        BucketCase {
            name: "keep_last_counts_only_complete_runs: more than there are, still no failed one",
            runs: with_failures(),
            now: "2026-06-01T00:00:00Z",
            rules: rules().keep_last(10),
            kept: &[
                "2026-05-04T00:00:00Z",
                "2026-05-03T00:00:00Z",
                "2026-05-02T00:00:00Z",
                "2026-05-01T00:00:00Z",
            ],
            reasons: Some(&[Last]),
        },
        BucketCase {
            name: "keep_within_is_measured_from_now_not_from_newest_run: the cutoff is inclusive",
            runs: within(),
            now: "2026-03-01T00:00:00Z",
            rules: rules().keep_within(Duration::days(2)),
            kept: &[
                "2026-02-28T12:00:00Z",
                "2026-02-27T00:00:01Z",
                "2026-02-27T00:00:00Z",
            ],
            reasons: Some(&[Within]),
        },
        BucketCase {
            name: "keep_within_is_measured_from_now_not_from_newest_run: long after, the window is empty",
            runs: within(),
            now: "2026-06-01T00:00:00Z",
            rules: rules().keep_within(Duration::days(2)),
            kept: &[],
            reasons: None,
        },
        BucketCase {
            name: "keep_forever_keeps_every_complete_run_only",
            runs: forever(),
            now: "2026-01-01T00:00:00Z",
            rules: rules().keep_forever(),
            kept: &["2021-01-01T00:00:00Z", "2020-01-01T00:00:00Z"],
            reasons: Some(&[Forever]),
        },
    ]
}

#[test]
fn bucket_and_count_rules_keep_what_the_table_says() {
    let cases = bucket_cases();
    assert_eq!(cases.len(), 18);
    for case in cases {
        check_bucket_case(case);
    }
}

/// Plans one table row and checks what it says.
pub(super) fn check_bucket_case(case: BucketCase) {
    let plan = case.rules.plan(&case.runs, t(case.now));
    assert_one_decision_per_run(&case.runs, &plan);
    // The newest complete run is kept whatever the rules (no component is pruned to
    // nothing); the rows say what the rules keep besides.
    let newest = plan
        .decisions
        .iter()
        .find(|d| d.status == Complete)
        .unwrap();
    assert!(newest.reasons().contains(&NewestComplete), "{}", case.name);
    let by_rules = |d: &&RunDecision| d.reasons() != [NewestComplete];
    let want: Vec<String> = case.kept.iter().map(|at| cid(at)).collect();
    let kept: Vec<String> = plan
        .kept()
        .filter(by_rules)
        .map(|d| d.run_id.to_string())
        .collect();
    assert_eq!(kept, want, "{}", case.name);
    assert!(
        plan.kept().all(|d| d.status == Complete),
        "{}: a non-complete run was kept",
        case.name
    );
    if let Some(reasons) = case.reasons {
        for d in plan.kept().filter(by_rules) {
            let mut got = d.reasons().to_vec();
            got.retain(|r| *r != NewestComplete);
            assert_eq!(got, reasons, "{}: {}", case.name, d.run_id);
        }
    }
}
