//! A replication pass (every complete run of the source the target lacks) and the lag of a
//! target behind its source.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::report::{ReplicationFailure, ReplicationReport, SkippedRun};
use super::Replicator;
use crate::catalog::RunFilter;
use crate::error::{ErrorKind, Result};
use crate::manifest::{RunId, RunStatus, RunSummary};

/// Which runs of the source a pass considers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaFilter {
    /// Component and labels, as for the catalog.
    pub runs: RunFilter,
    /// Only runs started at or after this time: keep it within what the target's retention
    /// keeps, or each pass copies again the runs the target forgot.
    pub since: Option<DateTime<Utc>>,
    /// At most this many runs copied (or completed) per pass, the newest first.
    pub limit: Option<usize>,
}

impl ReplicaFilter {
    /// Every complete run.
    pub fn all() -> Self {
        ReplicaFilter::default()
    }

    /// The runs holding `component`.
    pub fn component(component: impl Into<String>) -> Self {
        ReplicaFilter {
            runs: RunFilter::component(component),
            ..Default::default()
        }
    }

    /// Only runs started at or after `since`.
    pub fn since(mut self, since: DateTime<Utc>) -> Self {
        self.since = Some(since);
        self
    }

    /// At most `n` runs written per pass.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    fn matches(&self, run: &RunSummary) -> bool {
        self.runs.matches(run) && self.since.is_none_or(|t| run.started_at >= t)
    }
}

/// How far a target is behind its source for one component.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicationLag {
    /// The component.
    pub component: String,
    /// The target's name.
    pub target: String,
    /// The newest complete, verified run of the component on the source that the target
    /// does not hold complete.
    pub newest_missing: Option<RunId>,
    /// How many such runs there are.
    pub missing_runs: usize,
    /// The age of `newest_missing` at the time asked (from its start); zero when the target
    /// holds every run.
    #[serde(with = "secs")]
    pub lag: Duration,
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

impl Replicator {
    /// The complete runs of the source matching `filter` that the target does not list as
    /// complete, in the order a pass copies them, and the runs left out with why (not
    /// verified on the source, damaged there). Reads only.
    pub async fn missing(
        &self,
        filter: &ReplicaFilter,
    ) -> Result<(Vec<RunSummary>, Vec<SkippedRun>)> {
        let (candidates, skipped) = self.candidates(filter).await?;
        let missing = candidates
            .into_iter()
            .filter(|(_, there)| !there)
            .map(|(r, _)| r)
            .collect();
        Ok((missing, skipped))
    }

    /// Every complete, verified run of the source matching `filter`, in the order a pass
    /// handles them, with whether the target lists it as complete; and the runs left out.
    async fn candidates(
        &self,
        filter: &ReplicaFilter,
    ) -> Result<(Vec<(RunSummary, bool)>, Vec<SkippedRun>)> {
        let source = self.source.list_all().await?;
        let on_target = self.target_statuses().await?;
        let mut skipped = Vec::new();
        let mut candidates = Vec::new();
        for run in source.into_iter().filter(|r| filter.matches(r)) {
            match run.status {
                RunStatus::Complete if !run.verified => skipped.push(SkippedRun {
                    run_id: run.run_id.clone(),
                    reason: "not verified on the source (its latest verification failed): a damaged backup is not copied".into(),
                }),
                RunStatus::Complete => {
                    let there = on_target.get(&run.run_id) == Some(&RunStatus::Complete);
                    candidates.push((run, there));
                }
                RunStatus::Damaged => skipped.push(SkippedRun {
                    run_id: run.run_id.clone(),
                    reason: format!(
                        "damaged on the source: {}",
                        run.damage.as_ref().map_or_else(String::new, |d| d.reason.clone())
                    ),
                }),
                // Incomplete, failed and partial runs are never backups: nothing to say.
                _ => {}
            }
        }
        // Newest first (the catalog's order); oldest first into history-keeping targets.
        if self.target_sink().capabilities().versioned {
            candidates.reverse();
        }
        Ok((candidates, skipped))
    }

    /// Brings the target up to date: copies every complete, verified run of the source
    /// matching `filter` that the target lacks (see [`missing`](Self::missing) for the
    /// order), and checks the runs it lists as complete by digest (nothing is written for
    /// those that match). A run whose copy fails is in the report's `failed` and the pass goes
    /// on, except after a cancellation. `Err` only when a catalog cannot be listed.
    ///
    /// With [`retention`](Self::retention), the target's retention runs after a pass that
    /// wrote anything.
    pub async fn replicate(&self, filter: &ReplicaFilter) -> Result<ReplicationReport> {
        let mut report = ReplicationReport::new(&self.name);
        let (candidates, skipped) = self.candidates(filter).await?;
        report.skipped = skipped;
        let mut budget = filter.limit.unwrap_or(usize::MAX);
        for (run, there) in candidates {
            if budget == 0 && !there {
                report.skipped.push(SkippedRun {
                    run_id: run.run_id.clone(),
                    reason: "over the pass's limit: the next pass copies it".into(),
                });
                continue;
            }
            match self.copy_run(&run.run_id).await {
                Ok(copy) => {
                    if copy.outcome.wrote() {
                        budget -= 1;
                    }
                    report.runs.push(copy);
                }
                Err(e) => {
                    let cancelled = e.kind() == ErrorKind::Cancelled;
                    report.failed.push(ReplicationFailure {
                        run_id: run.run_id.clone(),
                        error: e,
                    });
                    if cancelled {
                        break;
                    }
                }
            }
        }
        if report.written().next().is_some() {
            self.target_retention(&mut report).await;
        }
        Ok(report)
    }

    /// How far the target is behind the source at `now`, per component (in the order
    /// given): the age of the newest complete, verified run of the component on the source
    /// that the target does not list as complete. Reads only.
    pub async fn lag<C: AsRef<str>>(
        &self,
        components: impl IntoIterator<Item = C>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReplicationLag>> {
        let source = self.source.list_all().await?;
        let on_target = self.target_statuses().await?;
        Ok(components
            .into_iter()
            .map(|c| {
                let c = c.as_ref();
                let missing: Vec<&RunSummary> = source
                    .iter()
                    .filter(|r| r.status == RunStatus::Complete && r.verified)
                    .filter(|r| r.components.iter().any(|x| x == c))
                    .filter(|r| on_target.get(&r.run_id) != Some(&RunStatus::Complete))
                    .collect();
                let newest = missing
                    .iter()
                    .max_by_key(|r| (r.started_at, r.run_id.clone()));
                ReplicationLag {
                    component: c.to_string(),
                    target: self.name.clone(),
                    newest_missing: newest.map(|r| r.run_id.clone()),
                    missing_runs: missing.len(),
                    lag: newest
                        .and_then(|r| (now - r.started_at).to_std().ok())
                        .unwrap_or(Duration::ZERO),
                }
            })
            .collect())
    }

    async fn target_statuses(&self) -> Result<HashMap<RunId, RunStatus>> {
        Ok(self
            .target
            .list_all()
            .await
            .map_err(|e| e.with_context("target", self.name.clone()))?
            .into_iter()
            .map(|r| (r.run_id, r.status))
            .collect())
    }

    /// The target's own retention, after a pass that copied runs.
    async fn target_retention(&self, report: &mut ReplicationReport) {
        let Some((policy, apply)) = &self.retention else {
            return;
        };
        let plan = match self
            .target
            .plan_retention(policy.as_ref(), Utc::now())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                report.retention_error = Some(e.or_operation("plan retention"));
                return;
            }
        };
        if *apply {
            match self.target.apply_retention(&plan).await {
                Ok(removed) => report.removed_runs = removed,
                Err(e) => report.retention_error = Some(e.or_operation("apply retention")),
            }
        }
        report.retention = Some(plan);
    }
}
