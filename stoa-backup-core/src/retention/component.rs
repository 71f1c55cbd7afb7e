//! [`ComponentRules`]: keep rules per component, for sinks that hold several components.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    add_always_rules, add_component_always_rules, build_plan, component_groups, newest_first,
    KeepReason, KeepRules, RetentionPlan, RetentionPolicy,
};
use crate::error::Result;
use crate::manifest::RunSummary;

/// Keep rules per component: each component's runs are planned by that component's rules,
/// and a run is forgotten only when every component in it is forgotten.
///
/// The guide's storage target, where one sink holds every component:
///
/// ```
/// use chrono::Duration;
/// use stoa_backup_core::retention::{ComponentRules, KeepRules};
///
/// let policy = ComponentRules::new()
///     .component("postgres", KeepRules::new().keep_within(Duration::days(30)))
///     .component("keycloak", KeepRules::new().keep_within(Duration::days(90)))
///     .component("crds", KeepRules::new().keep_within(Duration::days(30)))
///     .component("helm-values", KeepRules::new().keep_forever())
///     .default_rules(KeepRules::new().keep_last(7));
/// policy.validate().unwrap();
///
/// // The same policy as configuration (durations in seconds).
/// let config: ComponentRules = serde_json::from_str(r#"{
///     "components": {
///         "postgres": {"within": 2592000},
///         "keycloak": {"within": 7776000},
///         "crds": {"within": 2592000},
///         "helm-values": {"forever": true}
///     },
///     "default": {"last": 7}
/// }"#).unwrap();
/// assert_eq!(config, policy);
/// ```
///
/// Semantics, per component `c` (a run belongs to each component it lists):
///
/// * the runs holding `c` are planned by `c`'s rules, exactly as [`KeepRules`] plans whole
///   runs: `keep_last(3)` keeps the three newest complete runs *holding `c`*, buckets are
///   filled by those runs only, and `incomplete_grace` ages unfinished runs of `c`;
/// * the newest complete run and the newest complete, verified run holding `c` are always
///   kept, whatever `c`'s rules;
/// * components without rules of their own use [`ComponentRules::default_rules`]; when none
///   are set, they are kept forever (a component the configuration forgot is never pruned),
///   and their unfinished runs get the default grace period of 24 hours;
/// * runs listing no component (an unfinished run that has written nothing yet) are planned
///   by the default rules, as one group.
///
/// A run is kept if any of its components keeps it, with the union of the reasons, and the
/// plan lists each component's reasons in [`super::RunDecision::components`]. Pinned and
/// damaged runs are kept whatever every component says.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ComponentRules {
    /// The rules of each named component.
    pub components: BTreeMap<String, KeepRules>,
    /// The rules of every other component (`None`: keep their complete runs forever).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<KeepRules>,
}

impl ComponentRules {
    /// No rules yet: every component kept forever until rules are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rules of `component` (replacing earlier ones).
    pub fn component(mut self, component: impl Into<String>, rules: KeepRules) -> Self {
        self.components.insert(component.into(), rules);
        self
    }

    /// Sets the rules of components not named with [`ComponentRules::component`].
    pub fn default_rules(mut self, rules: KeepRules) -> Self {
        self.default = Some(rules);
        self
    }

    /// The rules that plan `component`'s runs (`""`: runs naming no component).
    pub fn rules_for(&self, component: &str) -> KeepRules {
        self.components
            .get(component)
            .or(self.default.as_ref())
            .cloned()
            .unwrap_or_else(|| KeepRules::new().keep_forever())
    }

    /// Checks every component's rules and the default ones (see [`KeepRules::validate`]);
    /// the error names the component.
    pub fn validate(&self) -> Result<()> {
        for (component, rules) in &self.components {
            rules.validate().map_err(|e| {
                e.with_operation(format!("validate keep rules of component '{component}'"))
                    .with_context("component", component.clone())
            })?;
        }
        if let Some(rules) = &self.default {
            rules
                .validate()
                .map_err(|e| e.with_operation("validate default keep rules"))?;
        }
        Ok(())
    }
}

impl RetentionPolicy for ComponentRules {
    /// Plans each component's runs by its rules and merges them per run.
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
        let sorted = newest_first(runs);
        let mut reasons = vec![BTreeSet::new(); sorted.len()];
        let mut components: Vec<BTreeMap<String, BTreeSet<KeepReason>>> =
            vec![BTreeMap::new(); sorted.len()];
        for (component, positions) in component_groups(&sorted) {
            let group: Vec<&RunSummary> = positions.iter().map(|&p| sorted[p]).collect();
            let mut group_reasons = self.rules_for(component).rule_reasons(&group, now);
            add_component_always_rules(&group, &mut group_reasons);
            for (&pos, r) in positions.iter().zip(group_reasons) {
                reasons[pos].extend(r.iter().copied());
                if !component.is_empty() {
                    components[pos].insert(component.to_string(), r);
                }
            }
        }
        add_always_rules(&sorted, &mut reasons);
        build_plan(&sorted, reasons, Some(components), now)
    }
}
