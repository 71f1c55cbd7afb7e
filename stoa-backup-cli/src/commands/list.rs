//! `list` (alias `snapshots`): the complete runs of the storage targets.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use stoa_backup::core::{format_runs_table, Catalog, RunFilter, RunSummary, Sink};

use super::{load_config, print_json, sinks, usage_error};
use crate::cli::Cli;
use crate::config::model::Target;
use crate::outcome::Outcome;

/// A run as `--json` shows it.
#[derive(Debug, Serialize)]
pub struct RunView {
    run_id: String,
    started_at: String,
    status: String,
    verified: bool,
    pinned: bool,
    components: Vec<String>,
    labels: BTreeMap<String, String>,
    stored_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    damage: Option<String>,
}

impl From<&RunSummary> for RunView {
    fn from(r: &RunSummary) -> Self {
        RunView {
            run_id: r.run_id.as_str().to_string(),
            started_at: r.started_at.to_rfc3339(),
            status: r.status.to_string(),
            verified: r.verified,
            pinned: r.pinned,
            components: r.components.clone(),
            labels: r.labels.clone(),
            stored_bytes: r.stored_bytes,
            damage: r.damage.as_ref().map(ToString::to_string),
        }
    }
}

/// One target's runs as `--json` shows them.
#[derive(Debug, Serialize)]
pub struct TargetRuns {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<Vec<RunView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    damaged: Option<Vec<RunView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl TargetRuns {
    /// The runs of target `name`, or why they could not be read.
    pub fn new(name: &str, listing: Result<&Listing, String>) -> Self {
        match listing {
            Ok(l) => TargetRuns {
                name: name.to_string(),
                runs: Some(l.runs.iter().map(RunView::from).collect()),
                damaged: Some(l.damaged.iter().map(RunView::from).collect()),
                error: None,
            },
            Err(e) => TargetRuns {
                name: name.to_string(),
                runs: None,
                damaged: None,
                error: Some(e),
            },
        }
    }
}

/// One target's catalog: its complete runs matching the filter, and its damaged runs (which
/// are no backups, but an operator must hear of them).
pub struct Listing {
    pub runs: Vec<RunSummary>,
    pub damaged: Vec<RunSummary>,
}

/// Reads the catalog of `sink`.
pub async fn catalog(
    sink: Arc<dyn Sink>,
    filter: &RunFilter,
) -> stoa_backup::core::Result<Listing> {
    let catalog = Catalog::new(sink);
    Ok(Listing {
        runs: catalog.list_runs(filter).await?,
        damaged: catalog.damaged_runs().await?,
    })
}

/// Lists the runs of every target (or of the component's target and its replicas, or of one
/// target).
pub async fn run(
    cli: &Cli,
    component: Option<&str>,
    labels: &[(String, String)],
    storage: Option<&str>,
) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let mut filter = RunFilter::default();
    for (k, v) in labels {
        filter = filter.label(k, v);
    }
    let mut targets: Vec<&Target> = config.storage.iter().collect();
    if let Some(name) = storage {
        match config.target(name) {
            Some(t) => targets = vec![t],
            None => {
                return usage_error(
                    cli,
                    &format!("no storage target is named `{name}` in {}", config.file),
                )
            }
        }
    }
    if let Some(name) = component {
        match config.component(name) {
            // Its own target and its replicas, unless one is named.
            Some(c) if storage.is_none() => targets.retain(|t| c.targets().any(|n| n == t.name)),
            Some(_) => {}
            // A component no longer configured may still have runs: look everywhere.
            None => tracing::info!(
                component = name,
                "not in the configuration: looking for its runs in every target"
            ),
        }
        filter.component = Some(name.to_string());
    }
    let mut listed = Vec::new();
    let mut failed = false;
    for target in targets {
        let listing = match sinks::open(target).await {
            Ok(sink) => catalog(sink, &filter).await,
            Err(e) => Err(e),
        };
        match listing {
            Ok(l) => listed.push((target, Ok(l))),
            Err(e) => {
                failed = true;
                listed.push((target, Err(e.to_string())));
            }
        }
    }
    let outcome = if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    };
    if cli.json {
        #[derive(Serialize)]
        struct Listed {
            storage: Vec<TargetRuns>,
        }
        let storage = listed
            .iter()
            .map(|(t, l)| TargetRuns::new(&t.name, l.as_ref().map_err(Clone::clone)))
            .collect();
        print_json(if failed { "failed" } else { "ok" }, Listed { storage });
    } else {
        for (t, l) in &listed {
            println!("{}: {}", t.name, sinks::describe(t));
            match l {
                Ok(l) => {
                    print!("{}", format_runs_table(&l.runs));
                    warn_damaged(&l.damaged);
                }
                Err(e) => eprintln!("error: cannot list {}: {e}", t.name),
            }
            println!();
        }
    }
    outcome
}

/// Damaged runs on stderr: never backups, never pruned, for an operator to look at.
pub fn warn_damaged(damaged: &[RunSummary]) {
    for run in damaged {
        if let Some(damage) = &run.damage {
            eprintln!("warning: run {} is damaged: {damage}", run.run_id);
        }
    }
}
