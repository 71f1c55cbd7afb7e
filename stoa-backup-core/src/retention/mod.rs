//! Retention: which runs to keep, as a pure function of run summaries and `now`.
//!
//! Calendar buckets (daily, ISO-weekly, monthly, yearly) are computed in UTC.
//! `keep_within` and the `keep_within_*` rules are measured backwards from `now`, not from
//! the newest run.
//!
//! Two policies plan from data: [`KeepRules`] plans whole runs by one set of rules;
//! [`ComponentRules`] plans each component's runs by that component's rules (PostgreSQL 30
//! days, Helm values forever… in one sink). [`AnyOf`] unites policies.
//!
//! # Semantics of [`KeepRules`]
//!
//! Planning is a pure function: the same runs and the same `now` always give the same plan,
//! whatever the order the runs are given in. Nothing is deleted here; applying a plan is a
//! separate step ([`crate::Catalog::apply_retention`]).
//!
//! * Only runs with status [`RunStatus::Complete`] are backups. Failed, partial and
//!   incomplete runs never count toward any keep rule (they never take a "last N" place nor a
//!   calendar bucket) and are never kept as backups. They are kept with
//!   [`KeepReason::GracePeriod`] while [`RunSummary::inactive_for`]`(now)` is less than
//!   `incomplete_grace`, afterwards they are forgotten. A run's inactivity is measured from
//!   its newest write (a running pipeline refreshes `runs/<id>/heartbeat.json`), not from
//!   the time in its id, so a run lasting longer than the grace period is not deleted while
//!   it runs. It is measured conservatively, by both the planner's clock and the storage's
//!   (the newest write anywhere in the listing), and is the smaller of the two: a pruner
//!   whose clock runs ahead cannot make a live run look old. Without write times (a backend
//!   that reports none), the age since `started_at`; runs dated after `now` are always
//!   inside the grace period.
//! * `last: Some(n)` keeps the `n` newest complete runs ([`KeepReason::Last`]).
//! * `within: Some(d)` keeps complete runs with `started_at >= now - d`
//!   ([`KeepReason::Within`]); runs dated after `now` are inside the window.
//! * `daily`, `weekly`, `monthly`, `yearly` (restic semantics): complete runs are walked
//!   newest first and put into buckets: the UTC calendar day, the ISO week (ISO year and
//!   ISO week number, so 2024-12-30 belongs to 2025-W01), the calendar month, the calendar
//!   year. The newest run of each bucket is kept, for the newest `N` buckets that have
//!   complete runs ([`KeepCount::Last`]) or for every bucket ([`KeepCount::Unlimited`]).
//!   Buckets without runs do not use up the count, so with gaps `keep_daily(30)` reaches
//!   back further than 30 days.
//! * `within_daily`, `within_weekly`, `within_monthly`, `within_yearly` (restic's
//!   `--keep-within-daily` …): the same buckets, but only over the complete runs with
//!   `started_at >= now - d`, every such bucket ([`KeepReason::WithinDaily`] …): a run
//!   older than `d` is never kept by them, whatever the gaps.
//! * `forever: true` keeps every complete run ([`KeepReason::Forever`]).
//! * Always, whatever the rules (the *always-rules*, which every policy of this module
//!   honours and [`crate::Catalog::apply_retention`] checks again):
//!   * pinned runs are kept ([`KeepReason::Pinned`]), whatever their status;
//!   * damaged runs ([`RunStatus::Damaged`]: an unreadable manifest or report, an artifact
//!     missing or of another size) are kept ([`KeepReason::Damaged`]) and never count as
//!     backups: an operator looks at them, retention never deletes them;
//!   * for each component, the newest complete run holding it is kept
//!     ([`KeepReason::NewestComplete`]), verified or not, so no component is ever pruned to
//!     nothing; runs listing no component count as one group;
//!   * for each component, the newest run that is complete *and* verified holding it is
//!     kept ([`KeepReason::NewestVerified`]).
//! * A kept run lists every reason that applies, sorted and without duplicates.
//! * Decisions come newest first: by `started_at` descending, then `run_id` descending.
//!   Every input run gets exactly one decision.
//!
//! [`ComponentRules`] applies these semantics to each component's runs separately (see its
//! documentation); a run is forgotten only when every component in it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::manifest::{RunId, RunStatus, RunSummary};

mod any_of;
mod component;
mod plan;
mod rules;

pub use any_of::AnyOf;
pub use component::ComponentRules;
pub use plan::{summarize, KeepReason, RetentionAction, RetentionPlan, RunDecision};
pub use rules::{KeepCount, KeepRules};

/// A retention policy: a pure plan from run summaries and the current time.
///
/// Implementations should honour the always-rules of the [module documentation](self);
/// [`crate::Catalog::apply_retention`] refuses a plan that forgets a damaged run or the
/// newest complete or verified run of a component, and leaves pinned runs alone.
pub trait RetentionPolicy: Send + Sync + fmt::Debug {
    /// Decides, for every run given, whether to keep it (and why) or forget it.
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan;
}

macro_rules! forward_retention_policy {
    ($($ptr:ident),+) => {$(
        /// Forwards to the wrapped policy, so a shared or boxed policy (also
        /// `Arc<dyn RetentionPolicy>`, `Box<dyn RetentionPolicy>`) is a policy itself.
        impl<P: RetentionPolicy + ?Sized> RetentionPolicy for $ptr<P> {
            fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
                (**self).plan(runs, now)
            }
        }
    )+};
}

forward_retention_policy!(Arc, Box);

/// The runs sorted newest first: by `started_at` desc then `run_id` desc.
fn newest_first(runs: &[RunSummary]) -> Vec<&RunSummary> {
    let mut sorted: Vec<&RunSummary> = runs.iter().collect();
    sorted.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.run_id.cmp(&a.run_id))
    });
    sorted
}

/// The positions (into `runs`, kept in their order) of the runs holding each component;
/// runs naming no component form the group `""`.
fn component_groups<'a>(runs: &[&'a RunSummary]) -> BTreeMap<&'a str, Vec<usize>> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (pos, run) in runs.iter().enumerate() {
        if run.components.is_empty() {
            groups.entry("").or_default().push(pos);
        }
        let mut seen = BTreeSet::new();
        for c in &run.components {
            if seen.insert(c.as_str()) {
                groups.entry(c.as_str()).or_default().push(pos);
            }
        }
    }
    groups
}

/// Within one group of runs (newest first): the newest complete run, and the newest
/// complete and verified one.
fn newest_in_group(runs: &[&RunSummary]) -> [(Option<usize>, KeepReason); 2] {
    let complete = |r: &&RunSummary| r.status == RunStatus::Complete;
    [
        (runs.iter().position(complete), KeepReason::NewestComplete),
        (
            runs.iter().position(|r| complete(r) && r.verified),
            KeepReason::NewestVerified,
        ),
    ]
}

/// Adds the per-component always-rules to one group of runs that all hold the component.
fn add_component_always_rules(group: &[&RunSummary], reasons: &mut [BTreeSet<KeepReason>]) {
    for (pos, reason) in newest_in_group(group) {
        if let Some(pos) = pos {
            reasons[pos].insert(reason);
        }
    }
}

/// Adds the rules every policy honours: pinned and damaged runs, and the newest complete and
/// newest verified run of each component. `runs` are newest first; `reasons` aligned.
fn add_always_rules(runs: &[&RunSummary], reasons: &mut [BTreeSet<KeepReason>]) {
    for (pos, run) in runs.iter().enumerate() {
        if run.pinned {
            reasons[pos].insert(KeepReason::Pinned);
        }
        if run.status == RunStatus::Damaged {
            reasons[pos].insert(KeepReason::Damaged);
        }
    }
    for positions in component_groups(runs).into_values() {
        let group: Vec<&RunSummary> = positions.iter().map(|&p| runs[p]).collect();
        for (pos, reason) in newest_in_group(&group) {
            if let Some(pos) = pos {
                reasons[positions[pos]].insert(reason);
            }
        }
    }
}

/// The runs the per-component always-rules protect, with why: for each, the reasons
/// (newest complete, newest verified) and the components they protect it for (`""`: the
/// runs naming no component).
pub(crate) fn protected_runs(runs: &[RunSummary]) -> BTreeMap<RunId, Vec<(KeepReason, String)>> {
    let sorted = newest_first(runs);
    let mut out: BTreeMap<RunId, Vec<(KeepReason, String)>> = BTreeMap::new();
    for (component, positions) in component_groups(&sorted) {
        let group: Vec<&RunSummary> = positions.iter().map(|&p| sorted[p]).collect();
        for (pos, reason) in newest_in_group(&group) {
            if let Some(pos) = pos {
                out.entry(group[pos].run_id.clone())
                    .or_default()
                    .push((reason, component.to_string()));
            }
        }
    }
    out
}

/// Builds the plan from reasons aligned with `runs` (newest first), and per-component
/// reasons when the policy plans per component.
fn build_plan(
    runs: &[&RunSummary],
    reasons: Vec<BTreeSet<KeepReason>>,
    components: Option<Vec<BTreeMap<String, BTreeSet<KeepReason>>>>,
    now: DateTime<Utc>,
) -> RetentionPlan {
    let mut components = components.map(Vec::into_iter);
    let decisions = runs
        .iter()
        .zip(reasons)
        .map(|(run, reasons)| {
            let mut d = plan::RunDecision::new(run, RetentionAction::from_reasons(reasons));
            if let Some(per) = components.as_mut().and_then(Iterator::next) {
                d.components = per
                    .into_iter()
                    .map(|(c, r)| (c, r.into_iter().collect()))
                    .collect();
            }
            d
        })
        .collect();
    RetentionPlan { now, decisions }
}

#[cfg(test)]
mod tests;
