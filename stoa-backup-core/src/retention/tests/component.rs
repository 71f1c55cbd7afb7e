//! `ComponentRules`: each component's runs planned by its own rules in one sink.

use super::*;

/// A complete run holding `components`, tagged with their initials.
fn holding(at: &str, components: &[&str]) -> RunSummary {
    let tag: String = components.iter().map(|c| &c[..1]).collect();
    RunSummary {
        components: components.iter().map(|c| c.to_string()).collect(),
        ..RunSummary::new(id_at(t(at), &tag), t(at), Complete)
    }
}

/// The guide's policy: PostgreSQL 30 days, Keycloak 90 days, CRDs 30 days, Helm values
/// forever.
fn guide() -> ComponentRules {
    ComponentRules::new()
        .component("postgres", KeepRules::new().keep_within(Duration::days(30)))
        .component("keycloak", KeepRules::new().keep_within(Duration::days(90)))
        .component("crds", KeepRules::new().keep_within(Duration::days(30)))
        .component("helm-values", KeepRules::new().keep_forever())
}

fn components_of(plan: &RetentionPlan, run: &RunSummary) -> Vec<(String, Vec<KeepReason>)> {
    plan.decision(&run.run_id)
        .unwrap()
        .components
        .iter()
        .map(|(c, r)| (c.clone(), r.clone()))
        .collect()
}

#[test]
fn each_component_is_planned_by_its_own_rules_in_one_sink() {
    let now = t("2026-06-01T00:00:00Z");
    let all = ["postgres", "keycloak", "crds", "helm-values"];
    let runs = vec![
        holding("2026-05-31T02:00:00Z", &all),
        holding("2026-05-20T02:00:00Z", &all),
        // 40 days old: only Keycloak (90 days) and Helm values (forever) still want it.
        holding("2026-04-22T02:00:00Z", &all),
        // 40 days old, PostgreSQL and CRDs only: forgotten.
        holding("2026-04-22T03:00:00Z", &["postgres", "crds"]),
        // 100 days old: Helm values alone keep it.
        holding("2026-02-21T02:00:00Z", &["keycloak", "helm-values"]),
        holding("2026-02-21T03:00:00Z", &["keycloak"]),
    ];
    let plan = guide().plan(&runs, now);
    assert_one_decision_per_run(&runs, &plan);

    assert_eq!(
        components_of(&plan, &runs[2]),
        vec![
            ("crds".to_string(), vec![]),
            ("helm-values".to_string(), vec![Forever]),
            ("keycloak".to_string(), vec![Within]),
            ("postgres".to_string(), vec![]),
        ]
    );
    assert_eq!(
        reasons_of(&plan, runs[2].run_id.as_str()),
        vec![Within, Forever]
    );
    assert!(!plan.decision(&runs[3].run_id).unwrap().is_kept(), "{plan}");
    assert_eq!(
        components_of(&plan, &runs[3]),
        vec![
            ("crds".to_string(), vec![]),
            ("postgres".to_string(), vec![])
        ]
    );
    assert_eq!(
        components_of(&plan, &runs[4]),
        vec![
            ("helm-values".to_string(), vec![Forever]),
            ("keycloak".to_string(), vec![]),
        ]
    );
    assert!(!plan.decision(&runs[5].run_id).unwrap().is_kept());
    // The newest run is every component's newest complete run.
    assert_eq!(
        components_of(&plan, &runs[0]),
        all.iter()
            .map(|c| (c.to_string(), vec![Within, NewestComplete]))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .map(|(c, mut r)| {
                if c == "helm-values" {
                    r = vec![Forever, NewestComplete];
                }
                (c, r)
            })
            .collect::<Vec<_>>()
    );
    // The table says per component why.
    let text = summarize(&plan);
    let line = text
        .lines()
        .find(|l| l.starts_with(runs[2].run_id.as_str()))
        .unwrap();
    assert!(
        line.ends_with(
            "within, forever [crds: -; helm-values: forever; keycloak: within; postgres: -]"
        ),
        "{text}"
    );
}

#[test]
fn last_n_counts_the_runs_holding_the_component() {
    let now = t("2026-06-01T00:00:00Z");
    let runs = vec![
        holding("2026-05-01T02:00:00Z", &["postgres"]),
        holding("2026-05-02T02:00:00Z", &["postgres"]),
        holding("2026-05-03T02:00:00Z", &["grafana"]),
        holding("2026-05-04T02:00:00Z", &["grafana"]),
        holding("2026-05-05T02:00:00Z", &["grafana"]),
    ];
    let policy = ComponentRules::new()
        .component("postgres", KeepRules::new().keep_last(2))
        .default_rules(KeepRules::new().keep_last(1));
    let plan = policy.plan(&runs, now);
    // Whole-run keep_last(2) would keep two Grafana runs and no PostgreSQL one but its newest.
    assert_eq!(
        kept_ids(&plan),
        vec![
            runs[4].run_id.to_string(),
            runs[1].run_id.to_string(),
            runs[0].run_id.to_string(),
        ]
    );
    assert_eq!(reasons_of(&plan, runs[0].run_id.as_str()), vec![Last]);
    assert_eq!(
        reasons_of(&plan, runs[4].run_id.as_str()),
        vec![Last, NewestComplete]
    );
}

#[test]
fn components_without_rules_are_kept_forever_unless_a_default_is_set() {
    let now = t("2027-06-01T00:00:00Z");
    let runs = vec![
        holding("2026-01-01T02:00:00Z", &["grafana"]),
        holding("2026-01-02T02:00:00Z", &["grafana"]),
        holding("2026-01-03T02:00:00Z", &["postgres"]),
        holding("2026-01-04T02:00:00Z", &["postgres"]),
    ];
    let policy = ComponentRules::new().component("postgres", KeepRules::new());
    let plan = policy.plan(&runs, now);
    assert_eq!(
        kept_ids(&plan),
        vec![
            runs[3].run_id.to_string(),
            runs[1].run_id.to_string(),
            runs[0].run_id.to_string(),
        ]
    );
    assert_eq!(reasons_of(&plan, runs[0].run_id.as_str()), vec![Forever]);
    let plan = policy.default_rules(KeepRules::new()).plan(&runs, now);
    assert_eq!(
        kept_ids(&plan),
        vec![runs[3].run_id.to_string(), runs[1].run_id.to_string()]
    );
}

#[test]
fn unfinished_runs_age_by_their_components_grace_periods() {
    let now = t("2026-06-01T12:00:00Z");
    let run = |at: &str, status, components: &[&str]| RunSummary {
        status,
        ..holding(at, components)
    };
    let runs = vec![
        holding("2026-05-01T02:00:00Z", &["postgres", "keycloak"]),
        // 36 hours old: past PostgreSQL's 24 hours, inside Keycloak's 48.
        run("2026-05-31T00:00:00Z", Failed, &["postgres", "keycloak"]),
        run("2026-05-31T00:00:01Z", Partial, &["postgres"]),
        // Nothing written yet but a heartbeat: no component, the default grace.
        RunSummary {
            components: vec![],
            ..run("2026-05-31T00:00:02Z", Incomplete, &[])
        },
    ];
    let policy = ComponentRules::new()
        .component("postgres", KeepRules::new())
        .component(
            "keycloak",
            KeepRules::new().incomplete_grace(Duration::hours(48)),
        )
        .default_rules(KeepRules::new().incomplete_grace(Duration::hours(72)));
    let plan = policy.plan(&runs, now);
    assert_eq!(
        components_of(&plan, &runs[1]),
        vec![
            ("keycloak".to_string(), vec![GracePeriod]),
            ("postgres".to_string(), vec![]),
        ]
    );
    assert!(!plan.decision(&runs[2].run_id).unwrap().is_kept());
    let d = plan.decision(&runs[3].run_id).unwrap();
    assert_eq!(d.reasons(), [GracePeriod]);
    assert!(d.components.is_empty());
}

#[test]
fn component_rules_validate_naming_the_component_and_deserialize() {
    let bad = ComponentRules::new()
        .component("postgres", KeepRules::new().keep_last(1))
        .component("keycloak", KeepRules::new().keep_last(0));
    let err = bad.validate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.context_value("component"), Some("keycloak"));
    assert!(err.to_string().contains("'keycloak'"), "{err}");
    assert!(err.hint().is_some());
    let err = ComponentRules::new()
        .default_rules(KeepRules::new().keep_within(Duration::zero()))
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("default"), "{err}");
    guide().validate().unwrap();

    let parsed: ComponentRules = serde_json::from_str(
        r#"{"components": {"postgres": {"within": 2592000, "within_daily": 604800}},
            "default": {"last": 3}}"#,
    )
    .unwrap();
    assert_eq!(
        parsed,
        ComponentRules::new()
            .component(
                "postgres",
                KeepRules::new()
                    .keep_within(Duration::days(30))
                    .keep_within_daily(Duration::days(7))
            )
            .default_rules(KeepRules::new().keep_last(3))
    );
    let back: ComponentRules =
        serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
    assert_eq!(back, parsed);
    let empty: ComponentRules = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, ComponentRules::new());
    assert_eq!(empty.rules_for("anything"), KeepRules::new().keep_forever());
}

#[test]
fn one_component_everywhere_plans_like_keep_rules() {
    let runs = vec![
        complete("2026-01-01T02:00:00Z"),
        complete("2026-01-15T02:00:00Z"),
        failed("2026-01-16T02:00:00Z"),
        complete("2026-02-01T02:00:00Z"),
        run_with("2026-02-02T02:00:00Z", Complete, true, true),
    ];
    let now = t("2026-03-01T00:00:00Z");
    let rules = KeepRules::new()
        .keep_monthly(KeepCount::Last(1))
        .keep_last(1);
    let whole = rules.plan(&runs, now);
    let per = ComponentRules::new()
        .component("postgres", rules)
        .plan(&runs, now);
    for (a, b) in whole.decisions.iter().zip(&per.decisions) {
        assert_eq!((&a.run_id, a.reasons()), (&b.run_id, b.reasons()));
    }
}
