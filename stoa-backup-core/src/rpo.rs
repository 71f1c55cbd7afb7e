//! RPO status: per component, how old its newest complete, verified backup is against its
//! recovery point objective (the most data, in time, a restore may lose).
//!
//! The age is counted from the run's **start**, as [`RecoveryPoint`](crate::RecoveryPoint)
//! counts it: a restore of the run brings back the data as it was then. Only complete,
//! verified runs count — a failed, partial, incomplete, damaged or unverified run is no
//! backup to recover from. [`RpoStatus::evaluate`] is a pure function of a catalog listing
//! and `now`, so a caller (or a test) chooses the clock; [`Catalog::rpo_status`] lists the
//! catalog once and judges every component.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::catalog::{Catalog, RunFilter};
use crate::error::Result;
use crate::manifest::{RunId, RunStatus, RunSummary};

/// Where a component stands against its RPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpoState {
    /// Its newest verified backup is within the target (an age equal to it is within).
    Ok,
    /// Its newest verified backup is older than the target.
    Late,
    /// It has no complete, verified backup at all.
    Never,
}

impl RpoState {
    /// `ok`, `late` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            RpoState::Ok => "ok",
            RpoState::Late => "late",
            RpoState::Never => "never",
        }
    }
}

impl fmt::Display for RpoState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The backup an [`RpoStatus`] judges: the newest complete, verified run of the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBackup {
    /// The run.
    pub run_id: RunId,
    /// When it started: what a restore of it loses is counted from here.
    pub started_at: DateTime<Utc>,
    /// When the verification that makes it verified ran ([`RunSummary::verified_at`]).
    pub verified_at: Option<DateTime<Utc>>,
}

/// One component's RPO status at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpoStatus {
    /// The component.
    pub component: String,
    /// The RPO it is judged by.
    pub target: Duration,
    /// The time it was judged at.
    pub now: DateTime<Utc>,
    /// Its newest complete, verified backup; `None` when it has none.
    pub newest_verified: Option<VerifiedBackup>,
    /// That backup's age at `now`, from its start (a run stamped after `now`, clocks
    /// apart, is taken as brand new: zero); `None` without a backup.
    pub age: Option<Duration>,
    /// `target - age`, negative once the backup is older than the target; `None` without
    /// a backup.
    pub remaining: Option<TimeDelta>,
    /// Ok, late or never.
    pub state: RpoState,
}

impl RpoStatus {
    /// The status of `component` against `target` at `now`, from `runs` (a catalog
    /// listing, in any order; runs that are not complete and verified are ignored).
    pub fn evaluate(
        runs: &[RunSummary],
        component: &str,
        target: Duration,
        now: DateTime<Utc>,
    ) -> RpoStatus {
        let Some(run) = newest_verified(runs, component) else {
            return RpoStatus {
                component: component.to_string(),
                target,
                now,
                newest_verified: None,
                age: None,
                remaining: None,
                state: RpoState::Never,
            };
        };
        let age = (now - run.started_at).to_std().unwrap_or(Duration::ZERO);
        let remaining = signed(target) - signed(age);
        RpoStatus {
            component: component.to_string(),
            target,
            now,
            newest_verified: Some(VerifiedBackup {
                run_id: run.run_id.clone(),
                started_at: run.started_at,
                verified_at: run.verified_at,
            }),
            age: Some(age),
            remaining: Some(remaining),
            state: if age <= target {
                RpoState::Ok
            } else {
                RpoState::Late
            },
        }
    }

    /// The status of each `(component, target)`, in the order given, from one listing.
    pub fn evaluate_all<C: AsRef<str>>(
        runs: &[RunSummary],
        targets: impl IntoIterator<Item = (C, Duration)>,
        now: DateTime<Utc>,
    ) -> Vec<RpoStatus> {
        targets
            .into_iter()
            .map(|(c, target)| RpoStatus::evaluate(runs, c.as_ref(), target, now))
            .collect()
    }

    /// Whether the component is within its RPO.
    pub fn is_met(&self) -> bool {
        self.state == RpoState::Ok
    }

    /// [`remaining`](Self::remaining) in seconds (fractions kept); `None` without a backup.
    pub fn remaining_secs(&self) -> Option<f64> {
        self.remaining.map(|r| r.num_milliseconds() as f64 / 1000.0)
    }
}

/// The newest complete, verified run holding `component` in `runs` (any order): the latest
/// start, the greater run id between two started at once.
pub fn newest_verified<'a>(runs: &'a [RunSummary], component: &str) -> Option<&'a RunSummary> {
    runs.iter()
        .filter(|r| r.status == RunStatus::Complete && r.verified)
        .filter(|r| r.components.iter().any(|c| c == component))
        .max_by_key(|r| (r.started_at, r.run_id.clone()))
}

impl Catalog {
    /// Lists the complete runs once and judges each `(component, target)` at `now` (pass
    /// `Utc::now()` in a service, any time in a test). Fails when the sink cannot be listed
    /// or a run's records cannot be read.
    pub async fn rpo_status<C: AsRef<str>>(
        &self,
        targets: impl IntoIterator<Item = (C, Duration)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RpoStatus>> {
        let runs = self
            .list_runs(&RunFilter::default())
            .await
            .map_err(|e| e.or_operation("read RPO status"))?;
        Ok(RpoStatus::evaluate_all(&runs, targets, now))
    }
}

/// A duration as a signed one (saturating at chrono's bounds, far beyond any RPO).
fn signed(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;
    use std::sync::Arc;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn run(id: &str, components: &[&str], status: RunStatus, verified: bool) -> RunSummary {
        let run_id = RunId::parse(id).unwrap();
        let started = run_id.timestamp().unwrap();
        RunSummary {
            verified,
            verified_at: verified.then_some(started + TimeDelta::minutes(5)),
            components: components.iter().map(|c| c.to_string()).collect(),
            ..RunSummary::new(run_id, started, status)
        }
    }

    fn listing() -> Vec<RunSummary> {
        vec![
            run(
                "20260102T000000Z-000003",
                &["app"],
                RunStatus::Failed,
                false,
            ),
            run(
                "20260101T220000Z-000002",
                &["app"],
                RunStatus::Complete,
                false,
            ),
            run(
                "20260101T210000Z-000009",
                &["app"],
                RunStatus::Damaged,
                true,
            ),
            run(
                "20260101T100000Z-000000",
                &["app"],
                RunStatus::Complete,
                true,
            ),
            run(
                "20260101T200000Z-000001",
                &["app", "db"],
                RunStatus::Complete,
                true,
            ),
        ]
    }

    #[test]
    fn the_newest_complete_verified_run_is_judged_from_its_start() {
        let now = at("2026-01-02T01:00:00Z");
        let s = RpoStatus::evaluate(&listing(), "app", 24 * HOUR, now);
        assert_eq!(s.state, RpoState::Ok);
        assert!(s.is_met());
        let backup = s.newest_verified.as_ref().unwrap();
        assert_eq!(backup.run_id.as_str(), "20260101T200000Z-000001");
        assert_eq!(backup.started_at, at("2026-01-01T20:00:00Z"));
        assert_eq!(backup.verified_at, Some(at("2026-01-01T20:05:00Z")));
        assert_eq!(s.age, Some(5 * HOUR));
        assert_eq!(s.remaining, Some(TimeDelta::hours(19)));
        assert_eq!(s.remaining_secs(), Some(19.0 * 3600.0));
        assert_eq!(
            (s.component.as_str(), s.target, s.now),
            ("app", 24 * HOUR, now)
        );
    }

    #[test]
    fn remaining_crosses_zero_as_now_passes_the_target() {
        let runs = listing();
        let started = at("2026-01-01T20:00:00Z");
        let target = 6 * HOUR;
        let before = RpoStatus::evaluate(&runs, "db", target, started + TimeDelta::hours(5));
        assert_eq!(
            (before.state, before.remaining),
            (RpoState::Ok, Some(TimeDelta::hours(1)))
        );
        // Exactly at the target is still within it.
        let edge = RpoStatus::evaluate(&runs, "db", target, started + TimeDelta::hours(6));
        assert_eq!(
            (edge.state, edge.remaining),
            (RpoState::Ok, Some(TimeDelta::zero()))
        );
        let after = RpoStatus::evaluate(
            &runs,
            "db",
            target,
            started + TimeDelta::hours(6) + TimeDelta::seconds(1),
        );
        assert_eq!(after.state, RpoState::Late);
        assert!(!after.is_met());
        assert_eq!(after.remaining, Some(TimeDelta::seconds(-1)));
        assert_eq!(after.remaining_secs(), Some(-1.0));
    }

    #[test]
    fn no_complete_verified_run_is_never() {
        let runs = listing();
        let now = at("2026-01-02T00:00:00Z");
        // "other" has no run; only a damaged, a failed and an unverified run would do for
        // nothing else.
        let s = RpoStatus::evaluate(&runs, "other", HOUR, now);
        assert_eq!(s.state, RpoState::Never);
        assert_eq!((s.newest_verified, s.age, s.remaining), (None, None, None));
        let only_unusable = &runs[..3];
        assert_eq!(
            RpoStatus::evaluate(only_unusable, "app", HOUR, now).state,
            RpoState::Never
        );
        assert_eq!(
            RpoStatus::evaluate(&[], "app", HOUR, now).state,
            RpoState::Never
        );
        assert_eq!(RpoState::Never.to_string(), "never");
    }

    #[test]
    fn a_run_from_the_future_is_brand_new() {
        let runs = [run(
            "20260101T120000Z-000000",
            &["app"],
            RunStatus::Complete,
            true,
        )];
        let s = RpoStatus::evaluate(&runs, "app", HOUR, at("2026-01-01T11:59:00Z"));
        assert_eq!((s.state, s.age), (RpoState::Ok, Some(Duration::ZERO)));
        assert_eq!(s.remaining, Some(TimeDelta::hours(1)));
    }

    #[test]
    fn every_target_is_judged_in_order() {
        let now = at("2026-01-02T01:00:00Z");
        let all = RpoStatus::evaluate_all(
            &listing(),
            [("db", 2 * HOUR), ("app", 24 * HOUR), ("other", HOUR)],
            now,
        );
        let states: Vec<(&str, RpoState)> = all
            .iter()
            .map(|s| (s.component.as_str(), s.state))
            .collect();
        assert_eq!(
            states,
            [
                ("db", RpoState::Late),
                ("app", RpoState::Ok),
                ("other", RpoState::Never)
            ]
        );
    }

    #[tokio::test]
    async fn the_catalog_judges_its_complete_verified_runs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.dump");
        std::fs::write(&file, b"dump").unwrap();
        let sink = Arc::new(MemorySink::new());
        let report = crate::Pipeline::builder()
            .source(crate::FileSource::new("db", &file, "db.dump"))
            .sink(sink.clone())
            .verifier(crate::ChecksumVerifier::new())
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(report.status, RunStatus::Complete);
        let started = report.manifest.started_at;
        let catalog = Catalog::new(sink);
        let now = started + TimeDelta::hours(3);
        let all = catalog
            .rpo_status([("db", 2 * HOUR), ("web", HOUR)], now)
            .await
            .unwrap();
        assert_eq!(all[0].state, RpoState::Late);
        let backup = all[0].newest_verified.as_ref().unwrap();
        assert_eq!(backup.run_id, report.run_id);
        assert_eq!(backup.started_at, started);
        assert_eq!(all[0].remaining, Some(TimeDelta::hours(-1)));
        assert_eq!(all[1].state, RpoState::Never);
    }
}
