//! [`RecoveryPoint`]: which run to restore each component from.
//!
//! Components keep their own runs, on their own schedules and retention (PostgreSQL daily,
//! Keycloak weekly, Helm values on every change), so a platform restore picks one run per
//! component: the newest complete and verified one at or before a time, or the runs of one
//! multi-source run, or the newest carrying a label. The point says how far apart the picked
//! runs are (their skew) and how old each is at the point's time, against the RPO.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{RunId, RunStatus, RunSummary};

/// Which runs a [`RecoveryPoint`] picks from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointSelector {
    /// Per component, the newest complete and verified run started at or before this time.
    AtOrBefore(DateTime<Utc>),
    /// The one run given, for every component (a run of several sources).
    Run(RunId),
    /// Per component, the newest complete and verified run carrying this label.
    Label(String, String),
}

/// What to pick: the components that must be there, and the RPO to judge the point by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointQuery {
    /// Which runs to pick from.
    pub selector: PointSelector,
    /// Components the point must cover; each without a candidate fails the pick.
    pub components: Vec<String>,
    /// The recovery point objective: the most data, in time, a restore may lose.
    pub rpo: Option<Duration>,
}

impl PointQuery {
    /// The newest runs of `components` at or before now.
    pub fn latest(components: impl IntoIterator<Item = impl Into<String>>) -> Self {
        PointQuery {
            selector: PointSelector::AtOrBefore(Utc::now()),
            components: components.into_iter().map(Into::into).collect(),
            rpo: None,
        }
    }

    /// Picks with `selector` instead.
    pub fn selector(mut self, selector: PointSelector) -> Self {
        self.selector = selector;
        self
    }

    /// Judges the point by this RPO.
    pub fn rpo(mut self, rpo: Duration) -> Self {
        self.rpo = Some(rpo);
        self
    }
}

/// One component's run in a [`RecoveryPoint`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickedRun {
    /// The component.
    pub component: String,
    /// Its run.
    pub run_id: RunId,
    /// When that run started.
    pub started_at: DateTime<Utc>,
    /// How old the run is at the point's time, in seconds: the data a restore of it loses.
    pub age_secs: u64,
    /// Whether that age is within the RPO (`None` without one).
    pub within_rpo: Option<bool>,
    /// Where the run was found, when the point was picked across several storage targets
    /// ([`RecoveryPoint::find_across`]): the first, in the order given, that holds it
    /// complete and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// The runs to restore, one per component, with their skew and ages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    /// The time the point stands for (the selector's time, or the newest picked run's start).
    pub at: DateTime<Utc>,
    /// Per component, in the query's order.
    pub runs: Vec<PickedRun>,
    /// How far apart the oldest and newest picked runs started, in seconds.
    pub skew_secs: u64,
    /// Whether the skew is within the RPO (`None` without one).
    pub skew_within_rpo: Option<bool>,
    /// The storage targets that could not be listed when the point was picked across
    /// several ([`RecoveryPoint::find_across`]), each with why: the point was picked from
    /// the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

impl RecoveryPoint {
    /// Picks from `runs` (a catalog listing) as `query` says. Fails, naming the component,
    /// when a required component has no complete and verified candidate (and says when
    /// newer runs of it exist that are not), or when the selected run is not usable.
    pub fn pick(runs: &[RunSummary], query: &PointQuery) -> Result<RecoveryPoint> {
        if query.components.is_empty() {
            return Err(
                Error::config("a recovery point needs at least one component")
                    .with_operation("pick recovery point")
                    .with_hint("name the components to restore"),
            );
        }
        let usable = |r: &RunSummary| r.status == RunStatus::Complete && r.verified;
        let mut picked: BTreeMap<&str, &RunSummary> = BTreeMap::new();
        for component in &query.components {
            let holds = |r: &&RunSummary| r.components.iter().any(|c| c == component);
            let candidate = match &query.selector {
                PointSelector::Run(id) => {
                    let run = runs.iter().find(|r| &r.run_id == id).ok_or_else(|| {
                        Error::new(ErrorKind::NotFound, format!("no run {id} in the catalog"))
                            .with_operation("pick recovery point")
                            .with_hint("list the catalog to see which runs exist")
                    })?;
                    if !usable(run) {
                        return Err(Error::new(
                            ErrorKind::Integrity,
                            format!(
                                "run {id} is {:?}{}: it is not a usable backup",
                                run.status,
                                if run.verified {
                                    ""
                                } else {
                                    " and not verified"
                                }
                            ),
                        )
                        .with_operation("pick recovery point")
                        .with_hint("verify the run, or pick another one"));
                    }
                    Some(run).filter(holds)
                }
                PointSelector::AtOrBefore(t) => runs
                    .iter()
                    .filter(holds)
                    .filter(|r| usable(r) && r.started_at <= *t)
                    .max_by_key(|r| (r.started_at, r.run_id.clone())),
                PointSelector::Label(k, v) => runs
                    .iter()
                    .filter(holds)
                    .filter(|r| usable(r) && r.labels.get(k) == Some(v))
                    .max_by_key(|r| (r.started_at, r.run_id.clone())),
            };
            let Some(run) = candidate else {
                return Err(no_candidate(runs, component, &query.selector));
            };
            picked.insert(component.as_str(), run);
        }
        let at = match &query.selector {
            PointSelector::AtOrBefore(t) => *t,
            _ => picked
                .values()
                .map(|r| r.started_at)
                .max()
                .expect("at least one component"),
        };
        let within = |secs: u64| query.rpo.map(|rpo| secs <= rpo.as_secs());
        let runs_out: Vec<PickedRun> = query
            .components
            .iter()
            .map(|c| {
                let r = picked[c.as_str()];
                let age_secs = secs_between(r.started_at, at);
                PickedRun {
                    component: c.clone(),
                    run_id: r.run_id.clone(),
                    started_at: r.started_at,
                    age_secs,
                    within_rpo: within(age_secs),
                    origin: None,
                }
            })
            .collect();
        let oldest = runs_out.iter().map(|r| r.started_at).min().expect("one");
        let newest = runs_out.iter().map(|r| r.started_at).max().expect("one");
        let skew_secs = secs_between(oldest, newest);
        Ok(RecoveryPoint {
            at,
            runs: runs_out,
            skew_secs,
            skew_within_rpo: within(skew_secs),
            unreachable: Vec::new(),
        })
    }

    /// Lists the catalog and [`pick`](Self::pick)s from it.
    pub async fn find(catalog: &Catalog, query: &PointQuery) -> Result<RecoveryPoint> {
        let runs = catalog.list_all().await?;
        Self::pick(&runs, query)
    }

    /// Lists every catalog (`(name, catalog)`: the primary first, then its replicas) and
    /// picks across them, as [`pick`](Self::pick) does over one: per component the newest
    /// complete, verified run in any of them, or the one named. Each picked run says where
    /// it was found ([`PickedRun::origin`]: the first catalog, in the order given, holding it
    /// complete and verified). A catalog that cannot be listed (a region that is down) is
    /// left out and named in [`unreachable`](Self::unreachable); the pick fails only when
    /// none can be listed (with the first one's error) or, as `pick`, when a component has no
    /// candidate in those that answered.
    pub async fn find_across(
        catalogs: &[(&str, &Catalog)],
        query: &PointQuery,
    ) -> Result<RecoveryPoint> {
        let listings = futures::future::join_all(catalogs.iter().map(|(_, c)| c.list_all())).await;
        let mut unreachable = Vec::new();
        let mut first_error = None;
        let mut runs: Vec<RunSummary> = Vec::new();
        let mut origin: BTreeMap<RunId, (usize, bool)> = BTreeMap::new();
        for (i, ((name, _), listed)) in catalogs.iter().zip(listings).enumerate() {
            let listed = match listed {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(target_name = %name, error = %e, "a storage target cannot be listed; picking from the others");
                    unreachable.push(format!("{name}: {e}"));
                    first_error.get_or_insert(e.with_context("target", name.to_string()));
                    continue;
                }
            };
            for run in listed {
                let usable = run.status == RunStatus::Complete && run.verified;
                match origin.get(&run.run_id) {
                    // The first holding it usable wins; a usable copy replaces an unusable one.
                    Some((_, true)) => {}
                    Some((_, false)) if !usable => {}
                    found => {
                        if found.is_some() {
                            runs.retain(|r| r.run_id != run.run_id);
                        }
                        origin.insert(run.run_id.clone(), (i, usable));
                        runs.push(run);
                    }
                }
            }
        }
        if unreachable.len() == catalogs.len() {
            return Err(first_error.unwrap_or_else(|| {
                Error::config("a recovery point needs at least one catalog")
                    .with_operation("pick recovery point")
                    .with_hint("give the primary storage target (and its replicas)")
            }));
        }
        let mut point = Self::pick(&runs, query)?;
        for picked in &mut point.runs {
            picked.origin = origin
                .get(&picked.run_id)
                .map(|(i, _)| catalogs[*i].0.to_string());
        }
        point.unreachable = unreachable;
        Ok(point)
    }

    /// Where the run picked for `component` was found, when picked across several catalogs.
    pub fn origin_of(&self, component: &str) -> Option<&str> {
        self.runs
            .iter()
            .find(|r| r.component == component)
            .and_then(|r| r.origin.as_deref())
    }

    /// The run picked for `component`.
    pub fn run_of(&self, component: &str) -> Option<&RunId> {
        self.runs
            .iter()
            .find(|r| r.component == component)
            .map(|r| &r.run_id)
    }

    /// Whether every picked run's age and the skew are within the RPO (true without one).
    pub fn meets_rpo(&self) -> bool {
        self.skew_within_rpo != Some(false) && self.runs.iter().all(|r| r.within_rpo != Some(false))
    }
}

fn secs_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    u64::try_from((to - from).num_seconds()).unwrap_or(0)
}

/// The error for a component without a candidate, saying what there is instead.
fn no_candidate(runs: &[RunSummary], component: &str, selector: &PointSelector) -> Error {
    let of_component: Vec<&RunSummary> = runs
        .iter()
        .filter(|r| r.components.iter().any(|c| c == component))
        .collect();
    let where_ = match selector {
        PointSelector::AtOrBefore(t) => format!("at or before {}", t.to_rfc3339()),
        PointSelector::Run(id) => format!("in run {id}"),
        PointSelector::Label(k, v) => format!("labelled {k}={v}"),
    };
    let unusable = of_component
        .iter()
        .filter(|r| !(r.status == RunStatus::Complete && r.verified))
        .count();
    let hint = if of_component.is_empty() {
        format!("no run holds '{component}': back it up first")
    } else if unusable > 0 {
        format!(
            "{} run(s) of '{component}' exist but {unusable} are not complete and verified: verify one, or pick another time",
            of_component.len()
        )
    } else {
        format!(
            "pick a later time or another selector; '{component}' has {} run(s)",
            of_component.len()
        )
    };
    Error::new(
        ErrorKind::NotFound,
        format!("no complete, verified run of '{component}' {where_}"),
    )
    .with_component(component)
    .with_operation("pick recovery point")
    .with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, components: &[&str], status: RunStatus, verified: bool) -> RunSummary {
        let run_id = RunId::parse(id).unwrap();
        let started = run_id.timestamp().unwrap();
        RunSummary {
            verified,
            components: components.iter().map(|c| c.to_string()).collect(),
            ..RunSummary::new(run_id, started, status)
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// PostgreSQL daily at 02:00, Keycloak weekly, Helm values on a change.
    fn catalog() -> Vec<RunSummary> {
        use RunStatus::*;
        vec![
            run("20261124T020000Z-000001", &["postgres"], Complete, true),
            run("20261125T020000Z-000001", &["postgres"], Complete, true),
            run("20261126T020000Z-000001", &["postgres"], Complete, false),
            run("20261127T020000Z-000001", &["postgres"], Partial, false),
            run("20261122T030000Z-000001", &["keycloak"], Complete, true),
            run("20261125T120000Z-000001", &["helm", "crds"], Complete, true),
        ]
    }

    #[test]
    fn each_component_gets_its_newest_usable_run_at_or_before_the_time() {
        let q = PointQuery::latest(["postgres", "keycloak", "helm"])
            .selector(PointSelector::AtOrBefore(at("2026-11-27T12:00:00Z")))
            .rpo(Duration::from_secs(24 * 3600));
        let p = RecoveryPoint::pick(&catalog(), &q).unwrap();
        // The 26th is not verified and the 27th partial: the 25th is the newest usable.
        assert_eq!(
            p.run_of("postgres").unwrap().as_str(),
            "20261125T020000Z-000001"
        );
        assert_eq!(
            p.run_of("keycloak").unwrap().as_str(),
            "20261122T030000Z-000001"
        );
        assert_eq!(
            p.run_of("helm").unwrap().as_str(),
            "20261125T120000Z-000001"
        );
        // Keycloak is five days and nine hours old: outside a 24 h RPO, and so is the skew.
        let kc = &p.runs[1];
        assert_eq!(kc.age_secs, 5 * 86400 + 9 * 3600);
        assert_eq!(kc.within_rpo, Some(false));
        assert_eq!(p.skew_secs, 3 * 86400 + 9 * 3600);
        assert_eq!(p.skew_within_rpo, Some(false));
        assert!(!p.meets_rpo());
        // Earlier in time, an older PostgreSQL run.
        let q = q.selector(PointSelector::AtOrBefore(at("2026-11-24T23:00:00Z")));
        let p = RecoveryPoint::pick(
            &catalog(),
            &PointQuery {
                components: vec!["postgres".into()],
                ..q
            },
        )
        .unwrap();
        assert_eq!(
            p.run_of("postgres").unwrap().as_str(),
            "20261124T020000Z-000001"
        );
        assert_eq!(p.runs[0].age_secs, 21 * 3600);
        assert!(p.meets_rpo());
    }

    #[test]
    fn a_component_without_a_usable_run_fails_naming_it_and_what_exists() {
        let q = PointQuery::latest(["postgres", "grafana"]);
        let e = RecoveryPoint::pick(&catalog(), &q).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.component(), Some("grafana"));
        assert!(e.hint().unwrap().contains("back it up first"), "{e:?}");

        // Before the first verified PostgreSQL run: the unverified ones are mentioned.
        let q = PointQuery::latest(["postgres"])
            .selector(PointSelector::AtOrBefore(at("2026-11-23T00:00:00Z")));
        let e = RecoveryPoint::pick(&catalog(), &q).unwrap_err();
        assert!(e.to_string().contains("at or before 2026-11-23"), "{e}");
        assert!(
            e.hint().unwrap().contains("not complete and verified"),
            "{e:?}"
        );
    }

    #[test]
    fn one_run_serves_every_component_it_holds_and_must_be_usable() {
        let sel = |id: &str| PointSelector::Run(RunId::parse(id).unwrap());
        let q = PointQuery::latest(["helm", "crds"]).selector(sel("20261125T120000Z-000001"));
        let p = RecoveryPoint::pick(&catalog(), &q).unwrap();
        assert_eq!(p.skew_secs, 0);
        assert_eq!(p.at, at("2026-11-25T12:00:00Z"));
        // A component the run does not hold.
        let q = PointQuery::latest(["helm", "postgres"]).selector(sel("20261125T120000Z-000001"));
        assert_eq!(
            RecoveryPoint::pick(&catalog(), &q).unwrap_err().component(),
            Some("postgres")
        );
        // An unverified run, and a missing one.
        let q = PointQuery::latest(["postgres"]).selector(sel("20261126T020000Z-000001"));
        let e = RecoveryPoint::pick(&catalog(), &q).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        assert!(e.to_string().contains("not verified"), "{e}");
        let q = PointQuery::latest(["postgres"]).selector(sel("20261201T000000Z-000001"));
        assert_eq!(
            RecoveryPoint::pick(&catalog(), &q).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn a_label_picks_the_newest_usable_run_carrying_it() {
        let mut runs = catalog();
        for r in runs.iter_mut().take(2) {
            r.labels.insert("release".into(), "2026.11".into());
        }
        let q = PointQuery::latest(["postgres"])
            .selector(PointSelector::Label("release".into(), "2026.11".into()));
        let p = RecoveryPoint::pick(&runs, &q).unwrap();
        assert_eq!(
            p.run_of("postgres").unwrap().as_str(),
            "20261125T020000Z-000001"
        );
        let q = PointQuery::latest(["keycloak"])
            .selector(PointSelector::Label("release".into(), "2026.11".into()));
        assert!(RecoveryPoint::pick(&runs, &q)
            .unwrap_err()
            .to_string()
            .contains("labelled release=2026.11"));
        assert_eq!(
            RecoveryPoint::pick(&runs, &PointQuery::latest(Vec::<String>::new()))
                .unwrap_err()
                .kind(),
            ErrorKind::Config
        );
    }
}
