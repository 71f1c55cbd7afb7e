//! `AnyOf`: the union of policies, and the always-rules it keeps.

use super::*;

/// A member that forgets everything.
#[derive(Debug)]
struct ForgetAll;

impl RetentionPolicy for ForgetAll {
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
        RetentionPlan {
            now,
            decisions: runs
                .iter()
                .map(|r| RunDecision::new(r, RetentionAction::Forget))
                .collect(),
        }
    }
}

#[test]
fn any_of_is_a_union_with_merged_reasons() {
    let runs = vec![
        complete("2026-01-15T00:00:00Z"),
        complete("2026-01-31T00:00:00Z"),
        complete("2026-02-10T00:00:00Z"),
        complete("2026-02-20T00:00:00Z"),
        failed("2026-02-21T00:00:00Z"),
    ];
    let now = t("2026-03-01T00:00:00Z");
    let policy = AnyOf::new()
        .or(KeepRules::new().keep_last(2))
        .or(KeepRules::new().keep_monthly(KeepCount::Unlimited))
        .or(ForgetAll);
    let plan = policy.plan(&runs, now);
    assert_one_decision_per_run(&runs, &plan);
    let reasons: Vec<(String, Vec<KeepReason>)> = plan
        .decisions
        .iter()
        .map(|d| (d.run_id.to_string(), d.reasons().to_vec()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (id_at(t("2026-02-21T00:00:00Z"), "f").to_string(), vec![]),
            (
                cid("2026-02-20T00:00:00Z"),
                vec![Last, Monthly, NewestComplete]
            ),
            (cid("2026-02-10T00:00:00Z"), vec![Last]),
            (cid("2026-01-31T00:00:00Z"), vec![Monthly]),
            (cid("2026-01-15T00:00:00Z"), vec![]),
        ]
    );
}

#[test]
fn any_of_preserves_newest_verified_and_pinned() {
    let runs = vec![
        run_with("2026-01-01T00:00:00Z", Complete, true, false),
        run_with("2026-01-02T00:00:00Z", Failed, false, true),
        complete("2026-01-03T00:00:00Z"),
    ];
    let now = t("2026-03-01T00:00:00Z");
    let plan = AnyOf::new().or(ForgetAll).plan(&runs, now);
    assert_eq!(
        kept_ids(&plan),
        vec![
            cid("2026-01-03T00:00:00Z"),
            id_at(t("2026-01-02T00:00:00Z"), "f").to_string(),
            cid("2026-01-01T00:00:00Z"),
        ]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2026-01-01T00:00:00Z")),
        vec![NewestVerified]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2026-01-03T00:00:00Z")),
        vec![NewestComplete]
    );
    // An empty union behaves like the default rules.
    assert_eq!(
        AnyOf::new().plan(&runs, now),
        KeepRules::default().plan(&runs, now)
    );
}
