//! `prune [--apply] [--storage TARGET]`: each storage target's retention (every configured
//! component by its own rules; runs of components no longer configured are kept), as a
//! plan that says why each run is kept or forgotten. With `--apply` the library applies the
//! plan: it lists the target again first and deletes nothing when that fails, never
//! deletes a component's newest complete or newest verified run, and leaves alone a run
//! pinned or written to since the plan.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use stoa_backup::core::{Catalog, KeepReason, RetentionPlan, RunDecision};

use super::backup::target_rules;
use super::{load_config, print_json, sinks, usage_error};
use crate::cli::Cli;
use crate::config::model::{Config, Target};
use crate::outcome::Outcome;

/// One run's decision, as `--json` shows it.
#[derive(Debug, Serialize)]
struct DecisionView {
    run_id: String,
    started_at: DateTime<Utc>,
    status: String,
    /// `keep` or `forget`.
    action: &'static str,
    reasons: Vec<KeepReason>,
    /// Per component, the reasons its own rules keep the run (empty: they forget it).
    components: BTreeMap<String, Vec<KeepReason>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    damage: Option<String>,
}

impl From<&RunDecision> for DecisionView {
    fn from(d: &RunDecision) -> Self {
        DecisionView {
            run_id: d.run_id.as_str().to_string(),
            started_at: d.started_at,
            status: d.status.to_string(),
            action: if d.is_kept() { "keep" } else { "forget" },
            reasons: d.reasons().to_vec(),
            components: d.components.clone(),
            damage: d.damage.as_ref().map(ToString::to_string),
        }
    }
}

/// One target's plan and what applying it removed.
#[derive(Debug, Serialize)]
struct TargetPruned {
    storage: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    decisions: Vec<DecisionView>,
    /// Runs the plan forgets.
    forget: Vec<String>,
    /// Runs deleted (with --apply).
    removed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Plans, and with `apply` applies, the retention of every target (or of one).
pub async fn run(cli: &Cli, apply: bool, storage: Option<&str>) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let targets: Vec<&Target> = match storage {
        Some(name) => match config.target(name) {
            Some(t) => vec![t],
            None => {
                return usage_error(
                    cli,
                    &format!("no storage target is named `{name}` in {}", config.file),
                )
            }
        },
        None => config.storage.iter().collect(),
    };
    let now = Utc::now();
    let mut results = Vec::new();
    for target in targets {
        let (pruned, plan) = prune_target(&config, target, apply, now).await;
        if !cli.json {
            print_target(target, &pruned, plan.as_ref(), apply);
        }
        results.push(pruned);
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    let outcome = match failed {
        0 => Outcome::Success,
        n if n == results.len() => Outcome::Failed,
        _ => Outcome::Partial,
    };
    if cli.json {
        #[derive(Serialize)]
        struct Pruned<'a> {
            applied: bool,
            storage: &'a [TargetPruned],
        }
        let verdict = if outcome == Outcome::Success && !apply {
            "planned"
        } else {
            outcome.verdict()
        };
        print_json(
            verdict,
            Pruned {
                applied: apply,
                storage: &results,
            },
        );
    } else if !apply && outcome == Outcome::Success {
        println!("This is the plan: nothing was deleted. Run again with --apply to delete the forgotten runs.");
    }
    outcome
}

async fn prune_target(
    config: &Config,
    target: &Target,
    apply: bool,
    now: DateTime<Utc>,
) -> (TargetPruned, Option<RetentionPlan>) {
    let mut pruned = TargetPruned {
        storage: target.name.clone(),
        decisions: Vec::new(),
        forget: Vec::new(),
        removed: Vec::new(),
        error: None,
    };
    let sink = match sinks::open(target).await {
        Ok(s) => s,
        Err(e) => {
            pruned.error = Some(format!("storage target {}: {e}", target.name));
            return (pruned, None);
        }
    };
    let catalog = Catalog::new(sink);
    let rules = target_rules(config, &target.name);
    let plan = match catalog.plan_retention(&rules, now).await {
        Ok(p) => p,
        Err(e) => {
            pruned.error = Some(format!(
                "cannot plan the retention of {}: {e} (nothing was deleted)",
                target.name
            ));
            return (pruned, None);
        }
    };
    pruned.decisions = plan.decisions.iter().map(DecisionView::from).collect();
    pruned.forget = plan
        .forgotten()
        .map(|d| d.run_id.as_str().to_string())
        .collect();
    if apply && !pruned.forget.is_empty() {
        tracing::info!(storage = %target.name, runs = pruned.forget.len(), "deleting forgotten runs");
        match catalog.apply_retention(&plan).await {
            Ok(removed) => {
                pruned.removed = removed.iter().map(|id| id.as_str().to_string()).collect();
            }
            Err(e) => pruned.error = Some(e.to_string()),
        }
    }
    (pruned, Some(plan))
}

fn print_target(target: &Target, pruned: &TargetPruned, plan: Option<&RetentionPlan>, apply: bool) {
    println!("{}: {}", target.name, sinks::describe(target));
    if let Some(plan) = plan {
        print!("{plan}");
    }
    if apply {
        println!(
            "removed {} run(s){}",
            pruned.removed.len(),
            if pruned.removed.is_empty() {
                String::new()
            } else {
                format!(": {}", pruned.removed.join(", "))
            }
        );
        let left: Vec<&String> = pruned
            .forget
            .iter()
            .filter(|id| !pruned.removed.contains(id))
            .collect();
        if !left.is_empty() && pruned.error.is_none() {
            println!(
                "left alone (changed since the plan, see the log): {}",
                left.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if let Some(e) = &pruned.error {
        eprintln!("error: {e}");
    }
    println!();
}
