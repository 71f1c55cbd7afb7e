//! The rules no policy can switch off: no component is ever pruned to nothing.

use super::*;
use crate::manifest::RunDamage;

/// A complete, unverified run of `component`.
fn complete_of(at: &str, component: &str) -> RunSummary {
    RunSummary {
        run_id: id_at(t(at), &format!("c{component}")),
        components: vec![component.to_string()],
        ..complete(at)
    }
}

#[test]
fn unverified_runs_are_never_all_forgotten() {
    let runs = vec![
        complete("2026-01-01T02:00:00Z"),
        complete("2026-01-02T02:00:00Z"),
    ];
    // 40 days later, keep_within(30 days) keeps none of them by itself.
    let now = t("2026-02-11T02:00:00Z");
    let plan = KeepRules::new()
        .keep_within(Duration::days(30))
        .plan(&runs, now);
    assert_eq!(kept_ids(&plan), vec![cid("2026-01-02T02:00:00Z")], "{plan}");
    assert_eq!(
        reasons_of(&plan, &cid("2026-01-02T02:00:00Z")),
        vec![NewestComplete]
    );
    assert!(summarize(&plan).contains("newest_complete"));
}

#[test]
fn every_component_keeps_its_newest_complete_run() {
    let runs = vec![
        complete_of("2026-01-01T02:00:00Z", "keycloak"),
        complete_of("2026-01-02T02:00:00Z", "keycloak"),
        complete_of("2026-01-03T02:00:00Z", "postgres"),
        complete_of("2026-01-04T02:00:00Z", "postgres"),
        run_with("2026-01-05T02:00:00Z", Failed, false, false),
    ];
    let now = t("2026-06-01T00:00:00Z");
    let plan = KeepRules::new().keep_last(1).plan(&runs, now);
    let kept: Vec<String> = kept_ids(&plan);
    assert_eq!(
        kept,
        vec![
            id_at(t("2026-01-04T02:00:00Z"), "cpostgres").to_string(),
            id_at(t("2026-01-02T02:00:00Z"), "ckeycloak").to_string(),
        ],
        "{plan}"
    );
    let keycloak = id_at(t("2026-01-02T02:00:00Z"), "ckeycloak").to_string();
    assert_eq!(reasons_of(&plan, &keycloak), vec![NewestComplete]);
}

#[test]
fn every_component_keeps_its_newest_verified_run() {
    let verified = |at: &str, component: &str| RunSummary {
        verified: true,
        ..complete_of(at, component)
    };
    let runs = vec![
        verified("2026-01-01T02:00:00Z", "keycloak"),
        complete_of("2026-01-02T02:00:00Z", "keycloak"),
        verified("2026-01-03T02:00:00Z", "postgres"),
        verified("2026-01-04T02:00:00Z", "postgres"),
    ];
    let plan = KeepRules::new().plan(&runs, t("2026-06-01T00:00:00Z"));
    let reasons: Vec<(String, Vec<KeepReason>)> = plan
        .decisions
        .iter()
        .map(|d| (d.run_id.to_string(), d.reasons().to_vec()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                id_at(t("2026-01-04T02:00:00Z"), "cpostgres").to_string(),
                vec![NewestVerified, NewestComplete]
            ),
            (
                id_at(t("2026-01-03T02:00:00Z"), "cpostgres").to_string(),
                vec![]
            ),
            (
                id_at(t("2026-01-02T02:00:00Z"), "ckeycloak").to_string(),
                vec![NewestComplete]
            ),
            (
                id_at(t("2026-01-01T02:00:00Z"), "ckeycloak").to_string(),
                vec![NewestVerified]
            ),
        ]
    );
}

fn damaged(at: &str) -> RunSummary {
    let started_at = t(at);
    RunSummary {
        components: vec!["postgres".into()],
        damage: Some(RunDamage {
            kind: ErrorKind::Integrity,
            key: crate::ObjectKey::new(format!("runs/{}/manifest.json", id_at(started_at, "d")))
                .unwrap(),
            reason: "its manifest cannot be read".into(),
            hint: "restore from another run".into(),
        }),
        ..RunSummary::new(id_at(started_at, "d"), started_at, RunStatus::Damaged)
    }
}

#[test]
fn damaged_runs_are_kept_and_never_count_as_backups() {
    let runs = vec![
        complete("2026-01-01T02:00:00Z"),
        complete("2026-01-02T02:00:00Z"),
        damaged("2026-01-03T02:00:00Z"),
        damaged("2025-01-01T02:00:00Z"),
    ];
    let now = t("2026-03-01T00:00:00Z");
    let plan = KeepRules::new()
        .keep_last(1)
        .keep_daily(KeepCount::Unlimited)
        .incomplete_grace(Duration::zero())
        .plan(&runs, now);
    let reasons: Vec<(String, Vec<KeepReason>)> = plan
        .decisions
        .iter()
        .map(|d| (d.run_id.to_string(), d.reasons().to_vec()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                id_at(t("2026-01-03T02:00:00Z"), "d").to_string(),
                vec![Damaged]
            ),
            (
                cid("2026-01-02T02:00:00Z"),
                vec![Last, Daily, NewestComplete]
            ),
            (cid("2026-01-01T02:00:00Z"), vec![Daily]),
            (
                id_at(t("2025-01-01T02:00:00Z"), "d").to_string(),
                vec![Damaged]
            ),
        ]
    );
    let d = plan.decisions[0].damage.as_ref().unwrap();
    assert_eq!(d.kind, ErrorKind::Integrity);
    let text = summarize(&plan);
    assert!(
        text.contains("damaged: its manifest cannot be read"),
        "{text}"
    );
    // Every policy keeps them: the union, and per component.
    let forget_all = AnyOf::new().or(KeepRules::new());
    assert!(forget_all
        .plan(&runs, now)
        .decision(&runs[3].run_id)
        .unwrap()
        .is_kept());
    let per_component = ComponentRules::new().component("postgres", KeepRules::new());
    let plan = per_component.plan(&runs, now);
    assert_eq!(plan.decision(&runs[3].run_id).unwrap().reasons(), [Damaged]);
}
