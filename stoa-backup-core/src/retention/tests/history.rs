//! The two-year acceptance set and the property tests of retention planning.

use super::*;

// ---- acceptance: two years of daily backups ----

#[test]
fn acceptance_two_years_daily_weekly_monthly() {
    let first = NaiveDate::from_ymd_opt(2024, 11, 25).unwrap();
    let last = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let at = |d: NaiveDate, h: u32| Utc.from_utc_datetime(&d.and_hms_opt(h, 0, 0).unwrap());
    let days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= last).collect();
    assert_eq!(days.len(), 730);

    let is_last_of_month = |d: NaiveDate| d.succ_opt().unwrap().month() != d.month();
    let mut runs = Vec::new();
    let mut failed_runs = 0;
    for &d in &days {
        runs.push(RunSummary {
            run_id: id_at(at(d, 2), "c"),
            started_at: at(d, 2),
            status: Complete,
            verified: true,
            verified_at: None,
            pinned: false,
            components: vec!["postgres".into()],
            labels: BTreeMap::new(),
            stored_bytes: 1 << 20,
            last_activity: None,
            storage_now: None,
            damage: None,
        });
        // Failed runs at 03:00, newer than the day's backup, on days that hold daily,
        // weekly and monthly slots. None on the last day: it would still be in its
        // grace period.
        if d != last && (d.day() % 3 == 0 || d.weekday() == Weekday::Sun || is_last_of_month(d)) {
            failed_runs += 1;
            runs.push(RunSummary {
                run_id: id_at(at(d, 3), "f"),
                started_at: at(d, 3),
                status: Failed,
                verified: false,
                verified_at: None,
                pinned: false,
                components: vec!["postgres".into()],
                labels: BTreeMap::new(),
                stored_bytes: 0,
                last_activity: None,
                storage_now: None,
                damage: None,
            });
        }
    }
    assert!(failed_runs > 250);

    let now = t("2026-11-24T12:00:00Z");
    let rules = KeepRules::new()
        .keep_daily(KeepCount::Last(30))
        .keep_weekly(KeepCount::Last(12))
        .keep_monthly(KeepCount::Unlimited);
    rules.validate().unwrap();
    let plan = rules.plan(&runs, now);
    assert_one_decision_per_run(&runs, &plan);

    // Expected, computed directly from the calendar (there is one backup per day, so the
    // newest run of a bucket is the last day of it that is in the history).
    let newest_first: Vec<NaiveDate> = days.iter().rev().copied().collect();
    let daily: BTreeSet<NaiveDate> = newest_first.iter().take(30).copied().collect();
    // ISO weeks end on Sunday; the newest week is cut short by the end of the history.
    let weekly: BTreeSet<NaiveDate> = newest_first
        .iter()
        .filter(|d| **d == last || d.weekday() == Weekday::Sun)
        .take(12)
        .copied()
        .collect();
    let monthly: BTreeSet<NaiveDate> = newest_first
        .iter()
        .filter(|d| **d == last || is_last_of_month(**d))
        .copied()
        .collect();
    assert_eq!(
        daily.first(),
        Some(&NaiveDate::from_ymd_opt(2026, 10, 26).unwrap())
    );
    assert_eq!(
        weekly.first(),
        Some(&NaiveDate::from_ymd_opt(2026, 9, 13).unwrap())
    );
    assert_eq!(monthly.len(), 25); // Nov 2024 ..= Nov 2026
    let expected: BTreeSet<String> = daily
        .iter()
        .chain(&weekly)
        .chain(&monthly)
        .map(|d| id_at(at(*d, 2), "c").to_string())
        .collect();
    // By hand: 30 daily (Oct 26 – Nov 24), 7 Sundays Sep 13 – Oct 25 not in those,
    // 23 month ends Nov 2024 – Sep 2026 not in either.
    assert_eq!(expected.len(), 60);

    let kept: BTreeSet<String> = plan.kept().map(|d| d.run_id.to_string()).collect();
    assert_eq!(kept, expected);
    assert_eq!(plan.kept().count(), 60);
    assert_eq!(plan.forgotten().count(), runs.len() - 60);
    assert!(plan.kept().all(|d| d.status == Complete));
    assert!(plan
        .decisions
        .iter()
        .filter(|d| d.status == Failed)
        .all(|d| !d.is_kept()));

    assert_eq!(
        reasons_of(&plan, &cid("2026-11-24T02:00:00Z")),
        vec![Daily, Weekly, Monthly, NewestVerified, NewestComplete]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2026-11-22T02:00:00Z")),
        vec![Daily, Weekly]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2026-10-31T02:00:00Z")),
        vec![Daily, Monthly]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2026-10-25T02:00:00Z")),
        vec![Weekly]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2026-09-13T02:00:00Z")),
        vec![Weekly]
    );
    assert!(reasons_of(&plan, &cid("2026-09-06T02:00:00Z")).is_empty());
    assert_eq!(
        reasons_of(&plan, &cid("2026-09-30T02:00:00Z")),
        vec![Monthly]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2024-11-30T02:00:00Z")),
        vec![Monthly]
    );
    assert_eq!(
        reasons_of(&plan, &cid("2025-02-28T02:00:00Z")),
        vec![Monthly]
    );
    assert!(reasons_of(&plan, &cid("2024-11-25T02:00:00Z")).is_empty());
}

// ---- properties ----

fn arb_status() -> impl Strategy<Value = RunStatus> {
    prop_oneof![
        8 => Just(Complete),
        2 => Just(Failed),
        2 => Just(Partial),
        2 => Just(Incomplete),
        1 => Just(RunStatus::Damaged),
    ]
}

fn arb_count() -> impl Strategy<Value = Option<KeepCount>> {
    prop_oneof![
        Just(None),
        Just(Some(KeepCount::Unlimited)),
        (1u32..6).prop_map(|n| Some(KeepCount::Last(n))),
    ]
}

/// An optional duration of up to 400 days, in minutes.
fn arb_window() -> impl Strategy<Value = Option<Duration>> {
    proptest::option::of((1i64..(60 * 24 * 400)).prop_map(Duration::minutes))
}

fn arb_rules() -> impl Strategy<Value = KeepRules> {
    (
        proptest::option::of(1u32..8),
        proptest::option::of(1i64..(60 * 24 * 30)),
        (arb_count(), arb_count(), arb_count(), arb_count()),
        (arb_window(), arb_window(), arb_window(), arb_window()),
        any::<bool>(),
        0i64..(60 * 24 * 3),
    )
        .prop_map(
            |(last, within, (daily, weekly, monthly, yearly), windows, forever, grace)| KeepRules {
                last,
                within: within.map(Duration::minutes),
                daily,
                weekly,
                monthly,
                yearly,
                within_daily: windows.0,
                within_weekly: windows.1,
                within_monthly: windows.2,
                within_yearly: windows.3,
                forever,
                incomplete_grace: Duration::minutes(grace),
            },
        )
}

const COMPONENTS: [&str; 3] = ["postgres", "keycloak", "helm-values"];

/// Runs within about two years before and a few days after `now`, holding up to three
/// components (or none), some with a last write after their start; `storage_now` is the
/// newest write of all, as in a listing.
fn arb_runs() -> impl Strategy<Value = Vec<RunSummary>> {
    proptest::collection::vec(
        (
            -(60 * 24 * 3)..(60 * 24 * 800i64),
            arb_status(),
            any::<bool>(),
            proptest::bool::weighted(0.1),
            proptest::sample::subsequence(COMPONENTS.to_vec(), 0..=3),
            proptest::option::of(0i64..(60 * 24 * 4)),
        ),
        0..60,
    )
    .prop_map(|specs| {
        let now = prop_now();
        let mut runs: Vec<RunSummary> = specs
            .into_iter()
            .enumerate()
            .map(
                |(i, (age_min, status, verified, pinned, components, active))| {
                    let started_at = now - Duration::minutes(age_min);
                    RunSummary {
                        verified,
                        pinned,
                        components: components.into_iter().map(String::from).collect(),
                        last_activity: active.map(|m| started_at + Duration::minutes(m)),
                        ..RunSummary::new(id_at(started_at, &format!("{i:04}")), started_at, status)
                    }
                },
            )
            .collect();
        let storage_now = runs.iter().filter_map(|r| r.last_activity).max();
        for r in &mut runs {
            r.storage_now = storage_now;
        }
        runs
    })
}

fn prop_now() -> DateTime<Utc> {
    t("2027-01-02T09:30:00Z")
}

/// Per component (`""`: runs naming none), the newest complete and the newest complete
/// verified run.
fn newest_per_component(runs: &[RunSummary]) -> Vec<(String, Option<RunId>, Option<RunId>)> {
    let mut groups: BTreeMap<&str, Vec<&RunSummary>> = BTreeMap::new();
    for r in runs {
        if r.components.is_empty() {
            groups.entry("").or_default().push(r);
        }
        for c in &r.components {
            groups.entry(c).or_default().push(r);
        }
    }
    groups
        .into_iter()
        .map(|(c, rs)| {
            let newest = |f: &dyn Fn(&RunSummary) -> bool| {
                rs.iter()
                    .filter(|r| f(r))
                    .max_by_key(|r| (r.started_at, &r.run_id))
                    .map(|r| r.run_id.clone())
            };
            (
                c.to_string(),
                newest(&|r| r.status == Complete),
                newest(&|r| r.status == Complete && r.verified),
            )
        })
        .collect()
}

/// What every plan must satisfy, whatever the policy; `grace` is the longest grace period
/// the policy gives any run.
fn check_invariants(runs: &[RunSummary], grace: Duration, plan: &RetentionPlan) {
    let now = prop_now();
    assert_one_decision_per_run(runs, plan);
    for w in plan.decisions.windows(2) {
        assert!(
            (w[0].started_at, &w[0].run_id) >= (w[1].started_at, &w[1].run_id),
            "not newest first"
        );
    }
    for d in &plan.decisions {
        if let RetentionAction::Keep(r) = &d.action {
            assert!(!r.is_empty());
            assert!(
                r.windows(2).all(|w| w[0] < w[1]),
                "reasons not sorted/unique"
            );
        }
    }
    let by_id: BTreeMap<&RunId, &RunSummary> = runs.iter().map(|r| (&r.run_id, r)).collect();
    for d in &plan.decisions {
        let run = by_id[&d.run_id];
        if run.status == Complete {
            assert!(
                !d.reasons().contains(&GracePeriod) && !d.reasons().contains(&Damaged),
                "{d:?}"
            );
        } else {
            // Never kept as a backup.
            assert!(
                d.reasons()
                    .iter()
                    .all(|r| matches!(r, GracePeriod | Pinned | Damaged)),
                "{d:?}"
            );
            let inactive = run.inactive_for(now);
            if !run.pinned && run.status != RunStatus::Damaged && inactive >= grace {
                assert!(!d.is_kept(), "{d:?} inactive for {inactive}");
            }
        }
        // Damaged runs are never forgotten, nor pinned ones.
        if run.status == RunStatus::Damaged {
            assert!(d.reasons().contains(&Damaged), "{d:?}");
        }
        if run.pinned {
            assert!(d.reasons().contains(&Pinned));
        }
    }
    // No component is pruned to nothing; its newest verified run stays too.
    let mut newest_runs = BTreeSet::new();
    for (component, complete, verified) in newest_per_component(runs) {
        if let Some(id) = &complete {
            let d = plan.decision(id).unwrap();
            assert!(d.reasons().contains(&NewestComplete), "{component}: {d:?}");
            newest_runs.insert(id.clone());
        }
        if let Some(id) = &verified {
            let d = plan.decision(id).unwrap();
            assert!(d.reasons().contains(&NewestVerified), "{component}: {d:?}");
            newest_runs.insert(id.clone());
        }
    }
    for d in plan.decisions.iter().filter(|d| {
        d.reasons()
            .iter()
            .any(|r| matches!(r, NewestComplete | NewestVerified))
    }) {
        assert!(newest_runs.contains(&d.run_id), "{d:?}");
    }
}

fn check_keep_rules(runs: &[RunSummary], rules: &KeepRules, plan: &RetentionPlan) {
    check_invariants(runs, rules.incomplete_grace, plan);
    if let Some(n) = rules.last {
        let complete = runs.iter().filter(|r| r.status == Complete).count();
        let kept_complete = plan.kept().filter(|d| d.status == Complete).count();
        assert!(kept_complete >= complete.min(n as usize));
    }
    // A within-bucket rule never keeps a run from before its window.
    let windows = [
        (rules.within_daily, WithinDaily),
        (rules.within_weekly, WithinWeekly),
        (rules.within_monthly, WithinMonthly),
        (rules.within_yearly, WithinYearly),
    ];
    for (window, reason) in windows {
        for d in plan
            .decisions
            .iter()
            .filter(|d| d.reasons().contains(&reason))
        {
            let w = window.expect("reason without its rule");
            assert!(d.started_at >= prop_now() - w, "{d:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_keep_rules_invariants(runs in arb_runs(), rules in arb_rules()) {
        let plan = rules.plan(&runs, prop_now());
        check_keep_rules(&runs, &rules, &plan);
        // Input order does not matter.
        let mut reversed = runs.clone();
        reversed.reverse();
        prop_assert_eq!(&rules.plan(&reversed, prop_now()), &plan);
    }

    #[test]
    fn prop_any_of_is_the_union(runs in arb_runs(), a in arb_rules(), b in arb_rules()) {
        let now = prop_now();
        let pa = a.plan(&runs, now);
        let pb = b.plan(&runs, now);
        let union = AnyOf::new().or(a.clone()).or(b.clone()).plan(&runs, now);
        assert_one_decision_per_run(&runs, &union);
        for d in &union.decisions {
            let ra = pa.decision(&d.run_id).unwrap().reasons();
            let rb = pb.decision(&d.run_id).unwrap().reasons();
            let want: BTreeSet<KeepReason> = ra.iter().chain(rb).copied().collect();
            let got: BTreeSet<KeepReason> = d.reasons().iter().copied().collect();
            prop_assert_eq!(got, want);
        }
        // A non-complete run is kept while inside either member's grace period, so the
        // union obeys the longer one.
        check_invariants(&runs, a.incomplete_grace.max(b.incomplete_grace), &union);
    }

    #[test]
    fn prop_component_rules_plan_each_component_by_its_rules(
        runs in arb_runs(),
        postgres in arb_rules(),
        keycloak in arb_rules(),
        other in proptest::option::of(arb_rules()),
    ) {
        let now = prop_now();
        let mut policy = ComponentRules::new()
            .component("postgres", postgres.clone())
            .component("keycloak", keycloak.clone());
        policy.default = other.clone();
        let plan = policy.plan(&runs, now);
        let longest_grace = [&postgres, &keycloak, &policy.rules_for("helm-values")]
            .iter()
            .map(|r| r.incomplete_grace)
            .max()
            .unwrap();
        check_invariants(&runs, longest_grace, &plan);
        let by_id: BTreeMap<&RunId, &RunSummary> = runs.iter().map(|r| (&r.run_id, r)).collect();
        for d in &plan.decisions {
            let run = by_id[&d.run_id];
            // One entry per component of the run; the run's reasons are their union plus
            // the run-wide ones.
            let named: BTreeSet<&str> = run.components.iter().map(String::as_str).collect();
            let listed: BTreeSet<&str> = d.components.keys().map(String::as_str).collect();
            prop_assert_eq!(&listed, &named);
            let mut union: BTreeSet<KeepReason> =
                d.components.values().flatten().copied().collect();
            if run.pinned {
                union.insert(Pinned);
            }
            if run.status == RunStatus::Damaged {
                union.insert(Damaged);
            }
            let got: BTreeSet<KeepReason> = d.reasons().iter().copied().collect();
            if !run.components.is_empty() {
                prop_assert_eq!(got, union);
            }
        }
        // Each component's reasons are what its rules say over the runs holding it alone.
        for component in COMPONENTS {
            let holding: Vec<RunSummary> = runs
                .iter()
                .filter(|r| r.components.iter().any(|c| c == component))
                .map(|r| RunSummary { components: vec![component.into()], pinned: false, ..r.clone() })
                .collect();
            let alone = policy.rules_for(component).plan(&holding, now);
            for d in &alone.decisions {
                let mut want: Vec<KeepReason> = d.reasons().to_vec();
                want.retain(|r| *r != Damaged);
                let got = &plan.decision(&d.run_id).unwrap().components[component];
                prop_assert_eq!(got, &want, "{}", component);
            }
        }
    }
}
