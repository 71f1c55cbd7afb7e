//! restic's keep-within-daily/-weekly/-monthly/-yearly: the newest run of each bucket, only
//! among the runs inside the window (as a table, like the calendar rules).

use super::buckets::{check_bucket_case, completes, BucketCase};
use super::*;

/// Daily runs at 02:00 from 06-01 to 06-10 without 06-06..=06-08, a second run early on
/// 06-10, and a failed run after the complete one of 06-05.
fn gap() -> Vec<RunSummary> {
    let mut runs = completes(&[
        "2026-06-01T02:00:00Z",
        "2026-06-02T02:00:00Z",
        "2026-06-03T02:00:00Z",
        "2026-06-04T02:00:00Z",
        "2026-06-05T02:00:00Z",
        "2026-06-09T02:00:00Z",
        "2026-06-10T01:00:00Z",
        "2026-06-10T02:00:00Z",
    ]);
    runs.push(failed("2026-06-05T03:00:00Z"));
    runs
}

fn week_53() -> Vec<RunSummary> {
    completes(&[
        "2026-12-27T12:00:00Z", // Sunday, 2026-W52
        "2026-12-28T12:00:00Z", // Monday, 2026-W53
        "2026-12-31T12:00:00Z", // Thursday, 2026-W53
        "2027-01-03T12:00:00Z", // Sunday, 2026-W53
        "2027-01-04T12:00:00Z", // Monday, 2027-W01
        "2027-01-10T12:00:00Z", // Sunday, 2027-W01
    ])
}

fn month_end() -> Vec<RunSummary> {
    completes(&[
        "2026-01-30T12:00:00Z",
        "2026-01-31T10:00:00Z",
        "2026-01-31T23:59:59Z",
        "2026-02-01T00:00:00Z",
        "2026-02-01T09:00:00Z",
    ])
}

fn years() -> Vec<RunSummary> {
    completes(&[
        "2022-06-01T00:00:00Z",
        "2023-12-31T23:59:59Z",
        "2024-01-01T00:00:00Z",
        "2024-07-01T00:00:00Z",
        "2026-01-01T00:00:00Z",
    ])
}

fn within_cases() -> Vec<BucketCase> {
    let rules = KeepRules::new;
    vec![
        BucketCase {
            name: "keep_daily counts days with runs, so it reaches over the gap",
            runs: gap(),
            now: "2026-06-10T12:00:00Z",
            rules: rules().keep_daily(KeepCount::Last(5)),
            kept: &[
                "2026-06-10T02:00:00Z",
                "2026-06-09T02:00:00Z",
                "2026-06-05T02:00:00Z",
                "2026-06-04T02:00:00Z",
                "2026-06-03T02:00:00Z",
            ],
            reasons: Some(&[Daily]),
        },
        BucketCase {
            name: "keep_within_daily stops at its window, gap or not",
            runs: gap(),
            now: "2026-06-10T12:00:00Z",
            rules: rules().keep_within_daily(Duration::days(5)),
            kept: &["2026-06-10T02:00:00Z", "2026-06-09T02:00:00Z"],
            reasons: Some(&[WithinDaily]),
        },
        BucketCase {
            name: "keep_within_daily: the cutoff is inclusive",
            runs: gap(),
            now: "2026-06-10T02:00:00Z",
            rules: rules().keep_within_daily(Duration::days(5)),
            kept: &[
                "2026-06-10T02:00:00Z",
                "2026-06-09T02:00:00Z",
                "2026-06-05T02:00:00Z",
            ],
            reasons: Some(&[WithinDaily]),
        },
        BucketCase {
            name: "keep_within_daily: runs dated after now are inside the window",
            runs: {
                let mut runs = gap();
                runs.push(complete("2026-06-12T02:00:00Z"));
                runs
            },
            now: "2026-06-10T12:00:00Z",
            rules: rules().keep_within_daily(Duration::days(1)),
            kept: &["2026-06-12T02:00:00Z", "2026-06-10T02:00:00Z"],
            reasons: Some(&[WithinDaily]),
        },
        BucketCase {
            name: "keep_within_daily: long after, the window is empty",
            runs: gap(),
            now: "2026-09-01T00:00:00Z",
            rules: rules().keep_within_daily(Duration::days(30)),
            kept: &[],
            reasons: None,
        },
        BucketCase {
            name: "keep_within_weekly: 2026-W53 is one bucket across two calendar years",
            runs: week_53(),
            now: "2027-01-11T00:00:00Z",
            rules: rules().keep_within_weekly(Duration::days(10)),
            kept: &["2027-01-10T12:00:00Z", "2027-01-03T12:00:00Z"],
            reasons: Some(&[WithinWeekly]),
        },
        BucketCase {
            name: "keep_within_weekly: a wider window reaches 2026-W52",
            runs: week_53(),
            now: "2027-01-11T00:00:00Z",
            rules: rules().keep_within_weekly(Duration::days(20)),
            kept: &[
                "2027-01-10T12:00:00Z",
                "2027-01-03T12:00:00Z",
                "2026-12-27T12:00:00Z",
            ],
            reasons: Some(&[WithinWeekly]),
        },
        BucketCase {
            name: "keep_within_monthly: a window starting on 02-01 keeps nothing of January",
            runs: month_end(),
            now: "2026-02-02T00:00:00Z",
            rules: rules().keep_within_monthly(Duration::days(1)),
            kept: &["2026-02-01T09:00:00Z"],
            reasons: Some(&[WithinMonthly]),
        },
        BucketCase {
            name: "keep_within_monthly: the newest run of January inside the window",
            runs: month_end(),
            now: "2026-02-02T00:00:00Z",
            rules: rules().keep_within_monthly(Duration::days(2)),
            kept: &["2026-02-01T09:00:00Z", "2026-01-31T23:59:59Z"],
            reasons: Some(&[WithinMonthly]),
        },
        BucketCase {
            name: "keep_within_yearly: calendar years, only inside the window",
            runs: years(),
            now: "2026-06-01T00:00:00Z",
            rules: rules().keep_within_yearly(Duration::days(2 * 365)),
            kept: &["2026-01-01T00:00:00Z", "2024-07-01T00:00:00Z"],
            reasons: Some(&[WithinYearly]),
        },
        BucketCase {
            name: "keep_within_yearly: 2023-12-31 is its year's newest run",
            runs: years(),
            now: "2026-06-01T00:00:00Z",
            rules: rules().keep_within_yearly(Duration::days(3 * 365)),
            kept: &[
                "2026-01-01T00:00:00Z",
                "2024-07-01T00:00:00Z",
                "2023-12-31T23:59:59Z",
            ],
            reasons: Some(&[WithinYearly]),
        },
        BucketCase {
            name: "keep_within_daily and keep_within_monthly together",
            runs: gap(),
            now: "2026-06-10T12:00:00Z",
            rules: rules()
                .keep_within_daily(Duration::days(2))
                .keep_within_monthly(Duration::days(30)),
            kept: &["2026-06-10T02:00:00Z", "2026-06-09T02:00:00Z"],
            reasons: None,
        },
    ]
}

#[test]
fn within_bucket_rules_keep_what_the_table_says() {
    let cases = within_cases();
    assert_eq!(cases.len(), 12);
    for case in cases {
        check_bucket_case(case);
    }
}

#[test]
fn with_a_five_day_gap_keep_daily_30_reaches_35_days_back_and_keep_within_daily_does_not() {
    let now = t("2026-06-01T23:00:00Z");
    let day = |ago: i64| now - Duration::days(ago) - Duration::minutes(22 * 60 + 30);
    // A run at 00:30 on each of the last 35 days (today included), none 10 to 14 days ago.
    let runs: Vec<RunSummary> = (0..35)
        .filter(|ago| !(10..15).contains(ago))
        .map(|ago| {
            let at = day(ago);
            RunSummary::new(id_at(at, "c"), at, Complete)
        })
        .collect();
    assert_eq!(runs.len(), 30);
    let oldest = day(34);
    assert!(now - oldest > Duration::days(34), "35 days old, almost");

    let daily = KeepRules::new()
        .keep_daily(KeepCount::Last(30))
        .plan(&runs, now);
    assert_eq!(daily.kept().count(), 30);
    assert!(daily.decision(&id_at(oldest, "c")).unwrap().is_kept());

    let within = KeepRules::new()
        .keep_within_daily(Duration::days(30))
        .plan(&runs, now);
    // Days 0..=29 ago are inside the window (day 30 ago at 00:30 is 30 d 22.5 h old); five
    // of them have no run.
    assert_eq!(within.kept().count(), 25, "{within}");
    for d in within.kept() {
        assert!(now - d.started_at <= Duration::days(30), "{d:?}");
        assert!(d.reasons().contains(&WithinDaily), "{d:?}");
    }
    assert!(!within.decision(&id_at(oldest, "c")).unwrap().is_kept());
}

#[test]
fn within_bucket_rules_validate_and_round_trip() {
    for rules in [
        KeepRules::new().keep_within_daily(Duration::zero()),
        KeepRules::new().keep_within_weekly(Duration::seconds(-1)),
        KeepRules::new().keep_within_monthly(Duration::zero()),
        KeepRules::new().keep_within_yearly(Duration::days(-1)),
    ] {
        let err = rules.validate().expect_err("must be rejected");
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("keep within "), "{err}");
        assert!(err.hint().is_some_and(|h| !h.is_empty()), "{err}");
        assert!(!rules.keeps_only_always_rules());
    }
    let rules = KeepRules::new()
        .keep_within_daily(Duration::days(7))
        .keep_within_weekly(Duration::weeks(8))
        .keep_within_monthly(Duration::days(365))
        .keep_within_yearly(Duration::days(3650));
    rules.validate().unwrap();
    let json = serde_json::to_value(&rules).unwrap();
    assert_eq!(json["within_daily"], 7 * 86_400);
    let back: KeepRules = serde_json::from_value(json).unwrap();
    assert_eq!(back, rules);
    let parsed: KeepRules = serde_json::from_str(r#"{"within_weekly": 604800}"#).unwrap();
    assert_eq!(
        parsed,
        KeepRules::new().keep_within_weekly(Duration::weeks(1))
    );
}
