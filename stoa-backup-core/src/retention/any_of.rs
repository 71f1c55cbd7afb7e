//! [`AnyOf`]: the union of several policies.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::{
    add_always_rules, build_plan, newest_first, KeepReason, KeepRules, RetentionPlan,
    RetentionPolicy,
};
use crate::manifest::{RunId, RunSummary};

/// A union of policies: a run is kept if any member keeps it (with the reasons of every
/// member that keeps it, merged, sorted and deduplicated), and forgotten only if every member
/// forgets it. Members' per-component reasons are merged the same way.
///
/// The always-rules hold for the union too, whatever the members do: pinned and damaged
/// runs, and the newest complete and newest verified run of each component, are kept. An
/// `AnyOf` with no members behaves like [`KeepRules::default()`].
///
/// Members' decisions are matched to runs by run id and start time. A member decision
/// `Keep` with no reasons breaks the [`super::RetentionAction::Keep`] contract and counts as
/// no vote.
///
/// ```
/// use stoa_backup_core::retention::{AnyOf, KeepCount, KeepRules};
///
/// let policy = AnyOf::new()
///     .or(KeepRules::new().keep_last(7))
///     .or(KeepRules::new().keep_monthly(KeepCount::Unlimited));
/// assert_eq!(policy.0.len(), 2);
/// ```
#[derive(Debug, Default)]
pub struct AnyOf(pub Vec<Box<dyn RetentionPolicy>>);

impl AnyOf {
    /// An empty union (behaves like [`KeepRules::default()`] until members are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a member policy.
    #[allow(clippy::should_implement_trait)]
    pub fn or(mut self, policy: impl RetentionPolicy + 'static) -> Self {
        self.0.push(Box::new(policy));
        self
    }

    /// Adds a boxed member policy.
    pub fn push(&mut self, policy: Box<dyn RetentionPolicy>) {
        self.0.push(policy);
    }
}

impl From<Vec<Box<dyn RetentionPolicy>>> for AnyOf {
    fn from(policies: Vec<Box<dyn RetentionPolicy>>) -> Self {
        AnyOf(policies)
    }
}

impl RetentionPolicy for AnyOf {
    /// Plans each member and merges their decisions, then applies the always-rules.
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
        if self.0.is_empty() {
            return KeepRules::default().plan(runs, now);
        }
        let sorted = newest_first(runs);
        let mut position: HashMap<(&RunId, DateTime<Utc>), Vec<usize>> = HashMap::new();
        for (pos, run) in sorted.iter().enumerate() {
            position
                .entry((&run.run_id, run.started_at))
                .or_default()
                .push(pos);
        }
        let mut reasons = vec![BTreeSet::new(); sorted.len()];
        let mut components: Vec<BTreeMap<String, BTreeSet<KeepReason>>> =
            vec![BTreeMap::new(); sorted.len()];
        for member in &self.0 {
            let plan = member.plan(runs, now);
            for d in &plan.decisions {
                let Some(positions) = position.get(&(&d.run_id, d.started_at)) else {
                    continue;
                };
                for &pos in positions {
                    reasons[pos].extend(d.reasons().iter().copied());
                    for (component, r) in &d.components {
                        components[pos]
                            .entry(component.clone())
                            .or_default()
                            .extend(r.iter().copied());
                    }
                }
            }
        }
        add_always_rules(&sorted, &mut reasons);
        build_plan(&sorted, reasons, Some(components), now)
    }
}
