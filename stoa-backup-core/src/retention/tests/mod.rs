//! Retention planning: calendar buckets around month, ISO-week and year boundaries (as
//! tables, in `buckets`), the always-rules, ordering, validation, serde; in submodules: aging by activity,
//! the per-component always-rules, `ComponentRules`, `AnyOf`, the keep-within-bucket rules,
//! the two-year acceptance set and property tests.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use proptest::prelude::*;

use super::*;
use crate::ErrorKind;

use KeepReason::*;
use RunStatus::{Complete, Failed, Incomplete, Partial};

/// `YYYY-MM-DDTHH:MM:SSZ` → time.
fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("bad time {s}: {e}"))
}

/// A run id from a time and a tag, in the standard shape.
fn id_at(at: DateTime<Utc>, tag: &str) -> RunId {
    RunId::parse(format!("{}-{tag}", at.format("%Y%m%dT%H%M%SZ"))).unwrap()
}

fn run_with(at: &str, status: RunStatus, verified: bool, pinned: bool) -> RunSummary {
    let started_at = t(at);
    let tag = match status {
        Complete => "c",
        Partial => "p",
        Failed => "f",
        Incomplete => "i",
        RunStatus::Damaged => "d",
    };
    RunSummary {
        run_id: id_at(started_at, tag),
        started_at,
        status,
        verified,
        verified_at: None,
        pinned,
        components: vec!["postgres".into()],
        labels: BTreeMap::new(),
        stored_bytes: 1024,
        last_activity: None,
        storage_now: None,
        damage: None,
    }
}

fn complete(at: &str) -> RunSummary {
    run_with(at, Complete, false, false)
}

fn failed(at: &str) -> RunSummary {
    run_with(at, Failed, false, false)
}

/// The ids of the kept runs, as strings, newest first.
fn kept_ids(plan: &RetentionPlan) -> Vec<String> {
    plan.kept().map(|d| d.run_id.to_string()).collect()
}

/// The expected id of a run (see `run_with`).
fn cid(at: &str) -> String {
    id_at(t(at), "c").to_string()
}

fn reasons_of(plan: &RetentionPlan, id: &str) -> Vec<KeepReason> {
    plan.decisions
        .iter()
        .find(|d| d.run_id.as_str() == id)
        .unwrap_or_else(|| panic!("no decision for {id}"))
        .reasons()
        .to_vec()
}

fn assert_one_decision_per_run(runs: &[RunSummary], plan: &RetentionPlan) {
    assert_eq!(plan.decisions.len(), runs.len());
    let mut want: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    let mut got: Vec<&str> = plan.decisions.iter().map(|d| d.run_id.as_str()).collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(want, got);
}

#[test]
fn shared_and_boxed_policies_forward_plan() {
    let runs = vec![
        complete("2026-03-01T02:00:00Z"),
        complete("2026-03-02T02:00:00Z"),
        complete("2026-03-03T02:00:00Z"),
    ];
    let now = t("2026-03-04T00:00:00Z");
    let keep_one = || KeepRules::new().keep_last(1);
    let want = keep_one().plan(&runs, now);
    assert_eq!(kept_ids(&want), vec![cid("2026-03-03T02:00:00Z")]);
    let policies: Vec<Box<dyn RetentionPolicy>> = vec![
        Box::new(Arc::new(keep_one())),
        Box::new(Arc::new(keep_one()) as Arc<dyn RetentionPolicy>),
        Box::new(Box::new(keep_one())),
        Box::new(keep_one()),
    ];
    for p in &policies {
        assert_eq!(p.plan(&runs, now), want);
    }
}

// ---- calendar facts the bucket tests rely on (checked against chrono, by hand) ----

#[test]
fn iso_week_facts_used_below() {
    let w = |s: &str| {
        let w = t(s).iso_week();
        (w.year(), w.week())
    };
    assert_eq!(w("2026-12-28T12:00:00Z"), (2026, 53)); // Monday
    assert_eq!(w("2026-12-31T12:00:00Z"), (2026, 53)); // Thursday
    assert_eq!(w("2027-01-03T12:00:00Z"), (2026, 53)); // Sunday
    assert_eq!(w("2027-01-04T00:00:00Z"), (2027, 1)); // Monday
    assert_eq!(w("2024-12-29T12:00:00Z"), (2024, 52)); // Sunday
    assert_eq!(w("2024-12-30T00:00:00Z"), (2025, 1)); // Monday
}

// ---- failed, partial and incomplete runs ----

#[test]
fn failed_run_newest_in_day_does_not_take_the_days_slot() {
    let runs = vec![
        complete("2026-04-01T02:00:00Z"),
        failed("2026-04-01T03:00:00Z"),
        complete("2026-04-02T02:00:00Z"),
        run_with("2026-04-02T05:00:00Z", Partial, true, false),
        run_with("2026-04-02T06:00:00Z", Incomplete, false, false),
    ];
    let now = t("2026-04-10T00:00:00Z");
    let plan = KeepRules::new()
        .keep_daily(KeepCount::Last(2))
        .keep_weekly(KeepCount::Last(1))
        .keep_last(1)
        .plan(&runs, now);
    assert_one_decision_per_run(&runs, &plan);
    assert_eq!(
        kept_ids(&plan),
        vec![cid("2026-04-02T02:00:00Z"), cid("2026-04-01T02:00:00Z")]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2026-04-02T02:00:00Z")),
        vec![Last, Daily, Weekly, NewestComplete]
    );
    assert_eq!(reasons_of(&plan, &cid("2026-04-01T02:00:00Z")), vec![Daily]);
    assert!(plan.forgotten().all(|d| d.status != Complete));
    assert_eq!(plan.forgotten().count(), 3);
}

#[test]
fn non_complete_runs_are_kept_only_inside_the_grace_period() {
    let now = t("2026-04-10T12:00:00Z");
    let runs = vec![
        run_with("2026-04-09T13:00:00Z", Incomplete, false, false), // 23h old
        run_with("2026-04-09T12:00:01Z", Failed, false, false),     // just under 24h
        run_with("2026-04-09T12:00:00Z", Partial, false, false),    // exactly 24h
        run_with("2026-04-09T11:00:00Z", Incomplete, false, false), // 25h old
        run_with("2026-04-11T00:00:00Z", Failed, false, false),     // in the future
    ];
    let plan = KeepRules::default().keep_forever().plan(&runs, now);
    let by_time: Vec<(String, Vec<KeepReason>)> = plan
        .decisions
        .iter()
        .map(|d| (d.started_at.to_rfc3339(), d.reasons().to_vec()))
        .collect();
    assert_eq!(
        by_time,
        vec![
            ("2026-04-11T00:00:00+00:00".to_string(), vec![GracePeriod]),
            ("2026-04-09T13:00:00+00:00".to_string(), vec![GracePeriod]),
            ("2026-04-09T12:00:01+00:00".to_string(), vec![GracePeriod]),
            ("2026-04-09T12:00:00+00:00".to_string(), vec![]),
            ("2026-04-09T11:00:00+00:00".to_string(), vec![]),
        ]
    );
    // A shorter grace period.
    let plan = KeepRules::new()
        .incomplete_grace(Duration::hours(1))
        .plan(&runs, now);
    assert_eq!(plan.kept().count(), 1);
    assert_eq!(
        plan.kept().next().unwrap().started_at,
        t("2026-04-11T00:00:00Z")
    );
}

// ---- always-rules ----

#[test]
fn pinned_runs_are_kept_whatever_their_status() {
    let runs = vec![
        run_with("2020-01-01T00:00:00Z", Complete, false, true),
        run_with("2020-01-02T00:00:00Z", Failed, false, true),
        run_with("2020-01-03T00:00:00Z", Incomplete, false, true),
        complete("2020-01-04T00:00:00Z"),
        run_with("2026-01-01T00:00:00Z", Complete, false, true),
    ];
    let now = t("2026-01-02T00:00:00Z");
    let plan = KeepRules::new().keep_last(1).plan(&runs, now);
    assert_one_decision_per_run(&runs, &plan);
    let reasons: Vec<(String, Vec<KeepReason>)> = plan
        .decisions
        .iter()
        .map(|d| (d.run_id.to_string(), d.reasons().to_vec()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                cid("2026-01-01T00:00:00Z"),
                vec![Last, Pinned, NewestComplete]
            ),
            (cid("2020-01-04T00:00:00Z"), vec![]),
            (
                id_at(t("2020-01-03T00:00:00Z"), "i").to_string(),
                vec![Pinned]
            ),
            (
                id_at(t("2020-01-02T00:00:00Z"), "f").to_string(),
                vec![Pinned]
            ),
            (cid("2020-01-01T00:00:00Z"), vec![Pinned]),
        ]
    );
}

#[test]
fn newest_verified_complete_run_is_kept_even_when_rules_keep_nothing() {
    let runs = vec![
        run_with("2025-01-01T00:00:00Z", Complete, true, false),
        run_with("2025-02-01T00:00:00Z", Complete, true, false),
        run_with("2025-03-01T00:00:00Z", Complete, false, false),
        // Verified flags on non-complete runs do not count.
        run_with("2025-04-01T00:00:00Z", Partial, true, false),
        run_with("2025-05-01T00:00:00Z", Failed, true, false),
    ];
    let now = t("2026-01-01T00:00:00Z");
    let plan = KeepRules::default().plan(&runs, now);
    // The newest complete run is kept too, verified or not (no component pruned to nothing).
    assert_eq!(
        kept_ids(&plan),
        vec![cid("2025-03-01T00:00:00Z"), cid("2025-02-01T00:00:00Z")]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2025-02-01T00:00:00Z")),
        vec![NewestVerified]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2025-03-01T00:00:00Z")),
        vec![NewestComplete]
    );
    // No verified complete run: only the newest complete one is kept.
    let plan = KeepRules::default().plan(&runs[2..], now);
    assert_eq!(kept_ids(&plan), vec![cid("2025-03-01T00:00:00Z")]);
    // Empty input: empty plan.
    let plan = KeepRules::default().plan(&[], now);
    assert!(plan.decisions.is_empty());
    assert_eq!(plan.now, now);
}

#[test]
fn kept_run_lists_all_reasons_sorted_once() {
    let runs = vec![
        complete("2026-06-29T10:00:00Z"),
        run_with("2026-06-30T10:00:00Z", Complete, true, true),
    ];
    let now = t("2026-06-30T12:00:00Z");
    let rules = KeepRules::new()
        .keep_yearly(KeepCount::Last(1))
        .keep_monthly(KeepCount::Last(1))
        .keep_weekly(KeepCount::Last(1))
        .keep_daily(KeepCount::Last(1))
        .keep_within(Duration::days(1))
        .keep_last(1)
        .keep_forever();
    let plan = rules.plan(&runs, now);
    assert_eq!(
        reasons_of(&plan, &cid("2026-06-30T10:00:00Z")),
        vec![
            Last,
            Within,
            Daily,
            Weekly,
            Monthly,
            Yearly,
            Forever,
            Pinned,
            NewestVerified,
            NewestComplete
        ]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2026-06-29T10:00:00Z")),
        vec![Forever]
    );
}

// ---- ordering, future runs ----

#[test]
fn decisions_are_newest_first_with_run_id_tiebreak_and_input_order_does_not_matter() {
    let at = t("2026-01-01T00:00:00Z");
    let mk = |tag: &str| RunSummary {
        run_id: id_at(at, tag),
        ..complete("2026-01-01T00:00:00Z")
    };
    let runs = vec![
        mk("a"),
        complete("2025-12-31T00:00:00Z"),
        mk("c"),
        complete("2026-01-02T00:00:00Z"),
        mk("b"),
    ];
    let now = t("2026-02-01T00:00:00Z");
    let rules = KeepRules::new().keep_daily(KeepCount::Unlimited);
    let plan = rules.plan(&runs, now);
    let ids: Vec<String> = plan
        .decisions
        .iter()
        .map(|d| d.run_id.to_string())
        .collect();
    assert_eq!(
        ids,
        vec![
            cid("2026-01-02T00:00:00Z"),
            id_at(at, "c").to_string(),
            id_at(at, "b").to_string(),
            id_at(at, "a").to_string(),
            cid("2025-12-31T00:00:00Z"),
        ]
    );
    // The greatest run id wins a tie for the day's slot.
    assert_eq!(reasons_of(&plan, &id_at(at, "c").to_string()), vec![Daily]);
    assert!(reasons_of(&plan, &id_at(at, "b").to_string()).is_empty());
    let mut reversed = runs.clone();
    reversed.reverse();
    assert_eq!(rules.plan(&reversed, now), plan);
}

#[test]
fn runs_in_the_future_are_treated_normally() {
    let runs = vec![
        complete("2030-01-01T00:00:00Z"),
        complete("2026-01-01T00:00:00Z"),
        failed("2031-01-01T00:00:00Z"),
    ];
    let now = t("2026-01-02T00:00:00Z");
    let plan = KeepRules::new()
        .keep_last(1)
        .keep_within(Duration::days(7))
        .keep_daily(KeepCount::Last(1))
        .plan(&runs, now);
    assert_one_decision_per_run(&runs, &plan);
    assert_eq!(
        reasons_of(&plan, &cid("2030-01-01T00:00:00Z")),
        vec![Last, Within, Daily, NewestComplete]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2026-01-01T00:00:00Z")),
        vec![Within]
    );
    assert_eq!(
        reasons_of(&plan, &id_at(t("2031-01-01T00:00:00Z"), "f").to_string()),
        vec![GracePeriod]
    );
    // Extreme durations do not panic either.
    let plan = KeepRules::new()
        .keep_within(Duration::MAX)
        .incomplete_grace(Duration::MAX)
        .plan(&runs, now);
    assert_eq!(plan.kept().count(), 3);
}

// ---- construction, validation, serde, display ----

#[test]
fn default_keeps_only_always_rules_with_24h_grace() {
    let d = KeepRules::default();
    assert_eq!(d, KeepRules::new());
    assert!(d.keeps_only_always_rules());
    assert_eq!(d.incomplete_grace, Duration::hours(24));
    assert!(d.validate().is_ok());
    assert!(!KeepRules::new().keep_last(1).keeps_only_always_rules());
}

#[test]
fn validate_rejects_nonsense_with_a_hint() {
    let bad = [
        KeepRules::new().keep_last(0),
        KeepRules::new().keep_daily(KeepCount::Last(0)),
        KeepRules::new().keep_weekly(KeepCount::Last(0)),
        KeepRules::new().keep_monthly(KeepCount::Last(0)),
        KeepRules::new().keep_yearly(KeepCount::Last(0)),
        KeepRules::new().keep_within(Duration::zero()),
        KeepRules::new().keep_within(Duration::hours(-1)),
        KeepRules::new().incomplete_grace(Duration::seconds(-1)),
    ];
    for rules in bad {
        let err = rules
            .validate()
            .expect_err(&format!("{rules:?} must be rejected"));
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.hint().is_some_and(|h| !h.is_empty()), "{err}");
    }
    let good = KeepRules::new()
        .keep_last(1)
        .keep_within(Duration::seconds(1))
        .keep_daily(KeepCount::Last(1))
        .keep_weekly(KeepCount::Unlimited)
        .keep_monthly(KeepCount::Last(12))
        .keep_yearly(KeepCount::Unlimited)
        .keep_forever()
        .incomplete_grace(Duration::zero());
    assert!(good.validate().is_ok());
}

#[test]
fn keep_rules_serde_round_trip_and_defaults() {
    let rules = KeepRules::new()
        .keep_last(3)
        .keep_within(Duration::days(2))
        .keep_weekly(KeepCount::Last(4))
        .keep_monthly(KeepCount::Unlimited);
    let json = serde_json::to_string(&rules).unwrap();
    let back: KeepRules = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rules);
    // Missing fields take the defaults.
    let parsed: KeepRules = serde_json::from_str(r#"{"daily": {"last": 7}}"#).unwrap();
    assert_eq!(parsed, KeepRules::new().keep_daily(KeepCount::Last(7)));
    let parsed: KeepRules =
        serde_json::from_str(r#"{"within": 3600, "incomplete_grace": 60}"#).unwrap();
    assert_eq!(parsed.within, Some(Duration::hours(1)));
    assert_eq!(parsed.incomplete_grace, Duration::minutes(1));
    // Out-of-range durations are an error, not a panic.
    assert!(serde_json::from_str::<KeepRules>(r#"{"within": 9223372036854775807}"#).is_err());
}

#[test]
fn summary_table_lists_every_run() {
    let runs = vec![
        run_with("2026-01-02T00:00:00Z", Complete, true, false),
        complete("2026-01-01T00:00:00Z"),
        failed("2025-12-01T00:00:00Z"),
    ];
    let plan = KeepRules::new()
        .keep_last(1)
        .plan(&runs, t("2026-01-03T00:00:00Z"));
    let text = summarize(&plan);
    assert_eq!(text, plan.to_string());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 + runs.len(), "{text}");
    assert!(lines[0].contains("3 runs, 1 kept, 2 forgotten"), "{text}");
    assert!(lines[1].starts_with("RUN ID"), "{text}");
    assert!(lines[2].starts_with(&cid("2026-01-02T00:00:00Z")), "{text}");
    assert!(
        lines[2].contains("complete") && lines[2].contains("keep"),
        "{text}"
    );
    assert!(
        lines[2].ends_with("last, newest_verified, newest_complete"),
        "{text}"
    );
    assert!(lines[3].contains("forget"), "{text}");
    assert!(
        lines[4].contains("failed") && lines[4].contains("forget"),
        "{text}"
    );
}

mod activity;
mod always;
mod any_of;
mod buckets;
mod component;
mod history;
mod within;
